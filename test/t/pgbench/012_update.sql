-- re-encrypt a random row to a new plaintext, and change the shadow in the same transaction
-- (lock order: shadow, then secrets; nothing locks them the other way round)
SELECT last_value AS maxid FROM secret_ids \gset
\set id random(1, :maxid)
\set r random(1, 1000000000)
BEGIN;
UPDATE shadow SET email = 'Upd' || :r || '@Example.org', account = 'ACU-' || :r WHERE id = :id;
UPDATE secrets SET email = kms_encrypt('Upd' || :r || '@Example.org', 'email'),
                   account = kms_encrypt('ACU-' || :r, 'account')
 WHERE id = :id;
END;
