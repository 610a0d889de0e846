-- move a random range of 20 rows onto the current key versions (same plaintext);
-- rows are locked in id order first, so two of these never deadlock
SELECT last_value AS maxid FROM secret_ids \gset
\set lo random(1, :maxid)
BEGIN;
SELECT count(*) FROM (SELECT id FROM secrets WHERE id BETWEEN :lo AND :lo + 19 ORDER BY id FOR UPDATE) l;
UPDATE secrets SET email = kms_reencrypt(email), account = kms_reencrypt(account)
 WHERE id BETWEEN :lo AND :lo + 19;
END;
