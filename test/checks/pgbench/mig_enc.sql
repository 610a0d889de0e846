-- writers of the encrypted phase (before kms_decrypt_column's swap)
\set id random(1, 40000)
\set r random(1, 1000000000)
\set del random(1, 40000)
UPDATE mig_users SET email = kms_encrypt('e' || :id || '.' || :r || '@example.com', 'mig'), shadow = 'e' || :id || '.' || :r || '@example.com' WHERE id = :id;
INSERT INTO mig_users (email, shadow) VALUES (kms_encrypt('m' || :r || '@example.com', 'mig'), 'm' || :r || '@example.com');
DELETE FROM mig_users WHERE id = :del;
