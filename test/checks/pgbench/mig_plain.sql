-- writers of the plaintext phase: every change also goes to the plaintext shadow
\set id random(1, 40000)
\set r random(1, 1000000000)
\set del random(1, 40000)
UPDATE mig_users SET email = 'u' || :id || '.' || :r || '@example.com', shadow = 'u' || :id || '.' || :r || '@example.com' WHERE id = :id;
INSERT INTO mig_users (email, shadow) VALUES ('n' || :r || '@example.com', 'n' || :r || '@example.com');
DELETE FROM mig_users WHERE id = :del;
