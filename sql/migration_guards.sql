-- migration_guards: the online column migration never encrypts an enc_text
-- value a second time (audit F4).  An application switched to writing
-- kms_encrypt(...) before the swap gets the envelope's text form stored in
-- the still-text column (PostgreSQL's assignment I/O cast); the sync
-- trigger, the backfill and the swap refuse it instead of encrypting it
-- again (which decrypted to "pgck:..." for ever after the swap).
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SELECT kms_create_key('mg', 'local:regress', blind_index => 'email') IS NOT NULL AS created;
CREATE TABLE mg_t (id int PRIMARY KEY, email text NOT NULL);
INSERT INTO mg_t VALUES (1, 'one@x.com'), (2, 'two@x.com'), (3, 'pgck:not base64 at all');
CALL kms_encrypt_column('mg_t', 'email', 'mg', finish => false);
-- the sync trigger: a writer storing ciphertext in the plaintext column is refused
UPDATE mg_t SET email = kms_encrypt('new@x.com', 'mg') WHERE id = 1;
INSERT INTO mg_t VALUES (4, kms_encrypt('four@x.com', 'mg'));
-- plaintext, even one starting with "pgck:", is still accepted
UPDATE mg_t SET email = 'new@x.com' WHERE id = 1;
INSERT INTO mg_t VALUES (4, 'pgck:AQEB');
-- the swap's final check: a value that slipped past the trigger is refused,
-- the swap rolled back and the migration resumable
ALTER TABLE mg_t DISABLE TRIGGER "~pgck_sync_email";
-- (with a shadow that matches it: the swap's recomputation would not see it)
SELECT kms_encrypt('two@x.com', 'mg')::text AS slipped \gset
UPDATE mg_t SET email = :'slipped', email_pgck_new = kms_encrypt(:'slipped', 'mg') WHERE id = 2;
ALTER TABLE mg_t ENABLE ALWAYS TRIGGER "~pgck_sync_email";
CALL kms_encrypt_column('mg_t', 'email', 'mg');
SELECT format_type(atttypid, atttypmod) AS still FROM pg_attribute WHERE attrelid = 'mg_t'::regclass AND attname = 'email';
UPDATE mg_t SET email = 'two@x.com' WHERE id = 2;
CALL kms_encrypt_column('mg_t', 'email', 'mg');
SELECT id, kms_decrypt(email) AS decrypted,
       kms_blind_index(email) = kms_blind_index(kms_decrypt(email), 'mg') AS tagged
  FROM mg_t ORDER BY id;
-- the backfill: a value stored before the migration started is refused, and
-- the migration resumes once it is corrected
CREATE TABLE mg_b (id int, email text);
INSERT INTO mg_b SELECT g, 'u' || g || '@x.com' FROM generate_series(1, 20) g;
UPDATE mg_b SET email = kms_encrypt('u7@x.com', 'mg')::text WHERE id = 7;
CALL kms_encrypt_column('mg_b', 'email', 'mg', batch => 3);
UPDATE mg_b SET email = 'u7@x.com' WHERE id = 7;
CALL kms_encrypt_column('mg_b', 'email', 'mg', batch => 3);
SELECT count(*) AS rows, count(*) FILTER (WHERE kms_decrypt(email) = 'u' || id || '@x.com') AS right
  FROM mg_b;
DROP TABLE mg_t, mg_b;

-- audit F3: a batch that fails on a concurrent update (40001, e.g. a row
-- moved to another partition, or 40P01) is retried, halved, 10 times in a
-- row, then the procedure fails with 40001; what was committed before stays
-- and a second call resumes (a trigger stands in for the application)
CREATE FUNCTION pg_temp.conflict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 15 THEN
        RAISE EXCEPTION 'simulated concurrent update' USING ERRCODE = '40001';
    END IF;
    RETURN NEW;
END $$;
CREATE TABLE mg_r (id int, v enc_text, p text);
INSERT INTO mg_r SELECT g, kms_encrypt('r' || g, 'mg'), 'p' || g FROM generate_series(1, 20) g;
SELECT kms_rotate_key('mg') IS NOT NULL AS rotated;
CREATE TRIGGER conflict BEFORE UPDATE ON mg_r FOR EACH ROW EXECUTE FUNCTION pg_temp.conflict();
CALL kms_reencrypt_table('mg_r', 'v', batch => 5);
SELECT count(*) FILTER (WHERE kms_version_id(v) = (SELECT version_id FROM kms_keys WHERE key_name = 'mg' AND current)) AS current
  FROM mg_r;
CALL kms_encrypt_column('mg_r', 'p', 'mg', batch => 5);
SELECT format_type(atttypid, atttypmod) AS still FROM pg_attribute WHERE attrelid = 'mg_r'::regclass AND attname = 'p';
DROP TRIGGER conflict ON mg_r;
CALL kms_reencrypt_table('mg_r', 'v', batch => 5);
CALL kms_encrypt_column('mg_r', 'p', 'mg', batch => 5);
SELECT count(*) FILTER (WHERE kms_version_id(v) = (SELECT version_id FROM kms_keys WHERE key_name = 'mg' AND current)) AS current,
       count(*) FILTER (WHERE kms_decrypt(p) = 'p' || id) AS encrypted
  FROM mg_r;
DROP TABLE mg_r;
