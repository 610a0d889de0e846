-- rotation by version; aborted key administration leaves nothing behind
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
CREATE FUNCTION pg_temp.version_of(v enc_text) RETURNS int LANGUAGE sql AS $$
    SELECT k.version FROM kms_keys k,
           (SELECT pg_catalog.decode(pg_catalog.substr(v::text, 6), 'base64') AS b) r
     WHERE k.version_id = (get_byte(r.b, 3) << 24) | (get_byte(r.b, 4) << 16) |
                          (get_byte(r.b, 5) << 8) | get_byte(r.b, 6) $$;

SELECT kms_create_key('rot', 'local:regress');
CREATE TABLE rot (id int, plain text, v enc_text);
INSERT INTO rot SELECT g, 'before ' || g, kms_encrypt('before ' || g, 'rot') FROM generate_series(1, 100) g;

SELECT kms_rotate_key('rot') AS new_version;
INSERT INTO rot SELECT g, 'after ' || g, kms_encrypt('after ' || g, 'rot') FROM generate_series(101, 200) g;
SELECT kms_rotate_key('rot') AS new_version;
INSERT INTO rot SELECT g, 'third ' || g, kms_encrypt('third ' || g, 'rot') FROM generate_series(201, 300) g;

-- every value decrypts; each was written under the version current at the time
SELECT pg_temp.version_of(v) AS version, count(*), count(*) FILTER (WHERE kms_decrypt(v) = plain) AS decrypt_ok
  FROM rot GROUP BY 1 ORDER BY 1;
SELECT key_name, version, state, current FROM kms_keys WHERE key_name = 'rot' ORDER BY version;
-- nothing was rewritten: the old rows are byte-identical (rotation touches no row)
SELECT count(*) AS rows_on_v1 FROM rot WHERE pg_temp.version_of(v) = 1;

-- an aborted kms_create_key leaves no usable key and nothing written under it
BEGIN;
SELECT kms_create_key('ghost', 'local:regress');
CREATE TABLE ghost_rows AS SELECT kms_encrypt('boo', 'ghost') AS v;
SELECT kms_decrypt(v) FROM ghost_rows;
SELECT v AS ghost_value FROM ghost_rows \gset
ROLLBACK;
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'ghost')$$) AS encrypt_after_abort;
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text)', :'ghost_value')) AS decrypt_after_abort;
SELECT to_regclass('ghost_rows') IS NULL AS rows_gone, count(*) AS ghost_keys FROM kms_keys WHERE key_name = 'ghost';

-- an aborted kms_rotate_key: the value written under the rolled-back version is unreadable,
-- and encryption goes back to the version that is current
BEGIN;
SELECT kms_rotate_key('rot') AS rolled_back_version;
SELECT kms_encrypt('under rolled back version', 'rot') AS rb_value \gset
SELECT pg_temp.version_of(:'rb_value'::enc_text) AS version_inside_transaction;
ROLLBACK;
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text)', :'rb_value')) AS decrypt_after_rollback;
SELECT pg_temp.version_of(kms_encrypt('x', 'rot')) AS version_used_after_rollback;

-- the same with a savepoint
BEGIN;
SAVEPOINT s;
SELECT kms_rotate_key('rot') AS rolled_back_version;
SELECT kms_encrypt('savepoint', 'rot') AS sp_value \gset
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.version_of(kms_encrypt('x', 'rot')) AS version_after_savepoint_rollback;
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text)', :'sp_value')) AS decrypt_after_savepoint_rollback;
COMMIT;

-- a rotation committed inside a transaction is used by its next statement
BEGIN;
SELECT kms_rotate_key('rot') AS committed_version;
SELECT pg_temp.version_of(kms_encrypt('x', 'rot')) AS version_in_same_transaction;
COMMIT;
SELECT pg_temp.version_of(kms_encrypt('x', 'rot')) AS version_after_commit;

-- a retired version refuses to decrypt, naming key and version; decrypt-only still decrypts
UPDATE pgcrypt_kms.key_versions SET state = 'retired' WHERE key_name = 'rot' AND version = 1;
SELECT kms_decrypt(v) FROM rot WHERE id = 1;
SELECT count(*) AS decrypt_only_rows_ok FROM rot WHERE id > 100 AND kms_decrypt(v) = plain;
UPDATE pgcrypt_kms.key_versions SET state = 'decrypt-only' WHERE key_name = 'rot' AND version = 1;
SELECT kms_decrypt(v) FROM rot WHERE id = 1;
DROP TABLE rot;
