-- a new row: plaintext in the shadow table and ciphertext in secrets, in one statement
\set r random(1, 1000000000)
WITH s AS (
    INSERT INTO shadow VALUES (nextval('secret_ids'), 'Ins' || :r || '@Example.com', 'ACC-' || :r)
    RETURNING *)
INSERT INTO secrets SELECT id, kms_encrypt(email, 'email'), kms_encrypt(account, 'account') FROM s;
