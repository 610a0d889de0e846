-- writers during kms_reencrypt_table: every change also goes to the plaintext shadow
\set id random(1, 110000)
\set r random(1, 1000000000)
\set del random(1, 110000)
UPDATE re_users SET email = kms_encrypt('u' || :id || '.' || :r || '@example.com', 're'), shadow = 'u' || :id || '.' || :r || '@example.com' WHERE id = :id;
INSERT INTO re_users (email, shadow) VALUES (kms_encrypt('n' || :r || '@example.com', 're'), 'n' || :r || '@example.com');
DELETE FROM re_users WHERE id = :del;
