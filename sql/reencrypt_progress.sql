-- CALL kms_reencrypt_table always makes progress or stops with a clear error
-- (issue 19): a batch that moves no value off its old key version while
-- values remain raises 55000 instead of looping for ever.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT kms_create_key('rp', 'local:regress');
CREATE TABLE rp (id int PRIMARY KEY, v enc_text);
INSERT INTO rp SELECT g, kms_encrypt('rp ' || g, 'rp') FROM generate_series(1, 30) g;
SELECT kms_rotate_key('rp');

-- Values that cannot be moved: a trigger writes the old value back.  Each
-- UPDATE still reports its rows, so a procedure that only counts updated rows
-- never ends.  Guard: without the progress check this CALL would run until
-- the statement_timeout below, which then shows in the diff as 57014.
CREATE FUNCTION rp_keep_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.v := OLD.v;
    RETURN NEW;
END $$;
CREATE TRIGGER rp_keep_old BEFORE UPDATE ON rp FOR EACH ROW EXECUTE FUNCTION rp_keep_old();
SET statement_timeout = '60s';
CALL kms_reencrypt_table('rp', 'v', batch => 10);
RESET statement_timeout;
SELECT v.version, count(*) FROM rp JOIN kms_keys v ON v.version_id = kms_version_id(rp.v) GROUP BY 1 ORDER BY 1;

-- Some values movable, some not (ids 1..5 kept old): the procedure moves
-- every other value in committed batches, then stops on the five.
CREATE OR REPLACE FUNCTION rp_keep_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id <= 5 THEN
        NEW.v := OLD.v;
    END IF;
    RETURN NEW;
END $$;
SET statement_timeout = '60s';
CALL kms_reencrypt_table('rp', 'v', batch => 10);
RESET statement_timeout;
SELECT v.version, array_agg(rp.id ORDER BY rp.id) FILTER (WHERE v.version = 1) AS left_on_v1, count(*)
  FROM rp JOIN kms_keys v ON v.version_id = kms_version_id(rp.v) GROUP BY 1 ORDER BY 1;

-- without the trigger the rest moves, and a second call has nothing to do
DROP TRIGGER rp_keep_old ON rp;
CALL kms_reencrypt_table('rp', 'v', batch => 10);
CALL kms_reencrypt_table('rp', 'v', batch => 10);
SELECT v.version, count(*), count(*) FILTER (WHERE kms_decrypt(rp.v) = 'rp ' || rp.id) AS decrypt_to_their_plaintext
  FROM rp JOIN kms_keys v ON v.version_id = kms_version_id(rp.v) GROUP BY 1 ORDER BY 1;
-- the procedure kept its grants through CREATE OR REPLACE
SELECT has_function_privilege('pgcrypt_kms_admin', 'kms_reencrypt_table(regclass, name, int4, text)', 'EXECUTE') AS admin,
       has_function_privilege('pgcrypt_kms_encrypt', 'kms_reencrypt_table(regclass, name, int4, text)', 'EXECUTE') AS encrypt,
       has_function_privilege('pgcrypt_kms_decrypt', 'kms_reencrypt_table(regclass, name, int4, text)', 'EXECUTE') AS decrypt;
DROP TABLE rp;
DROP FUNCTION rp_keep_old();
