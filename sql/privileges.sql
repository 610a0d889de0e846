-- roles: who may encrypt, decrypt, administer; PUBLIC may do none of it
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.sqlstate_of(text) TO PUBLIC;

SELECT kms_create_key('priv', 'local:regress', blind_index => 'exact');
CREATE TABLE priv_t (v enc_text);
INSERT INTO priv_t VALUES (kms_encrypt('top secret', 'priv'));
GRANT SELECT, INSERT ON priv_t TO PUBLIC;

CREATE ROLE regress_pgck_nobody;
CREATE ROLE regress_pgck_reader IN ROLE pgcrypt_kms_decrypt;
CREATE ROLE regress_pgck_writer IN ROLE pgcrypt_kms_encrypt;
CREATE ROLE regress_pgck_admin IN ROLE pgcrypt_kms_admin;

-- no extension role: nothing that touches keys
SET ROLE regress_pgck_nobody;
SELECT kms_decrypt(v) FROM priv_t;
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'priv')$$) AS encrypt,
       pg_temp.sqlstate_of($$SELECT kms_blind_index('x', 'priv')$$) AS probe,
       pg_temp.sqlstate_of($$SELECT kms_create_key('p2', 'local:regress')$$) AS create_key,
       pg_temp.sqlstate_of($$SELECT kms_rotate_key('priv')$$) AS rotate,
       pg_temp.sqlstate_of($$SELECT * FROM pgcrypt_kms.key_versions$$) AS read_wrapped_keys,
       pg_temp.sqlstate_of($$SELECT * FROM pgcrypt_kms.keys$$) AS read_index_keys,
       pg_temp.sqlstate_of($$SELECT * FROM kms_keys$$) AS keys_view,
       pg_temp.sqlstate_of($$SELECT * FROM kms_cache_stats()$$) AS stats;
-- what needs no key stays open: the type, and reading the tag a value carries
SELECT v IS NOT NULL AS can_read_ciphertext, kms_blind_index(v) IS NOT NULL AS can_read_tag FROM priv_t;
-- revealing settings are superuser-only
-- (the message differs between PostgreSQL majors: the SQLSTATE only)
\set VERBOSITY sqlstate
SHOW pgcrypt_kms.local_key_file;
\set VERBOSITY default
SELECT pg_temp.sqlstate_of($$SET pgcrypt_kms.cache_ttl = 99999$$) AS set_cache_ttl,
       pg_temp.sqlstate_of($$SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:1'$$) AS set_endpoint,
       pg_temp.sqlstate_of($$SET pgcrypt_kms.local_key_file = '/tmp/evil'$$) AS set_key_file;
RESET ROLE;

-- decrypt role: decrypts and probes, cannot encrypt or administer
SET ROLE regress_pgck_reader;
SELECT kms_decrypt(v) FROM priv_t;
SELECT kms_blind_index('top secret', 'priv') = (SELECT kms_blind_index(v) FROM priv_t) AS probe_matches;
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'priv')$$) AS encrypt,
       pg_temp.sqlstate_of($$SELECT kms_rotate_key('priv')$$) AS rotate,
       pg_temp.sqlstate_of($$SELECT * FROM pgcrypt_kms.key_versions$$) AS read_wrapped_keys;
RESET ROLE;

-- encrypt role: encrypts, cannot decrypt
SET ROLE regress_pgck_writer;
INSERT INTO priv_t VALUES (kms_encrypt('written by writer', 'priv'));
SELECT pg_temp.sqlstate_of($$SELECT kms_decrypt(v) FROM priv_t$$) AS decrypt;
RESET ROLE;

-- admin role: creates and rotates keys, cannot decrypt or encrypt
SET ROLE regress_pgck_admin;
SELECT kms_create_key('priv_admin', 'local:regress');
SELECT kms_rotate_key('priv_admin');
SELECT key_name, version, state FROM kms_keys WHERE key_name = 'priv_admin' ORDER BY version;
SELECT pg_temp.sqlstate_of($$SELECT kms_decrypt(v) FROM priv_t$$) AS decrypt,
       pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'priv')$$) AS encrypt;
RESET ROLE;

SELECT count(*) FILTER (WHERE kms_decrypt(v) IS NOT NULL) AS all_rows_decrypt FROM priv_t;

-- The full EXECUTE list of each extension role and of a role with none,
-- generated from the catalog: every function and procedure that belongs to
-- the extension (pg_depend), and whether each role may run it (directly, by
-- membership or through PUBLIC).  The expected output is the explicit list:
-- any grant added or lost anywhere changes it.  What each role must not have,
-- by design: admin neither encrypts nor decrypts; encrypt neither decrypts nor
-- re-checks plaintext (kms_blind_index_match is a plaintext-equality oracle);
-- decrypt neither encrypts nor administers; PUBLIC only what needs no key.
CREATE FUNCTION pg_temp.mark(b bool) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN b THEN 'X' ELSE '' END $$;
SELECT p.oid::regprocedure AS routine, p.prokind AS kind,
       pg_temp.mark(has_function_privilege('pgcrypt_kms_admin', p.oid, 'EXECUTE')) AS admin,
       pg_temp.mark(has_function_privilege('pgcrypt_kms_encrypt', p.oid, 'EXECUTE')) AS encrypt,
       pg_temp.mark(has_function_privilege('pgcrypt_kms_decrypt', p.oid, 'EXECUTE')) AS decrypt,
       pg_temp.mark(has_function_privilege('regress_pgck_nobody', p.oid, 'EXECUTE')) AS nobody
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgcrypt_kms'
 ORDER BY p.oid::regprocedure::text COLLATE "C";
-- the same per role, as one list each (what a reviewer reads)
SELECT r.role, count(*) FILTER (WHERE has_function_privilege(r.role, p.oid, 'EXECUTE')) AS may_execute,
       count(*) AS routines
  FROM (VALUES ('pgcrypt_kms_admin'), ('pgcrypt_kms_encrypt'), ('pgcrypt_kms_decrypt'), ('regress_pgck_nobody')) r(role)
  CROSS JOIN pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgcrypt_kms'
 GROUP BY r.role ORDER BY r.role;
-- the extension's tables, views and sequences: every privilege of each role
SELECT c.oid::regclass AS relation, c.relkind AS kind, r.role,
       array_to_string(ARRAY(SELECT priv FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) priv
                              WHERE c.relkind <> 'S' AND has_table_privilege(r.role, c.oid, priv)
                             UNION ALL
                             SELECT priv FROM unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) priv
                              WHERE c.relkind = 'S' AND has_sequence_privilege(r.role, c.oid, priv)), ',') AS privileges
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgcrypt_kms'
  CROSS JOIN (VALUES ('pgcrypt_kms_admin'), ('pgcrypt_kms_encrypt'), ('pgcrypt_kms_decrypt'), ('regress_pgck_nobody')) r(role)
 ORDER BY c.oid::regclass::text COLLATE "C", r.role;

DROP TABLE priv_t;
DROP ROLE regress_pgck_nobody, regress_pgck_reader, regress_pgck_writer, regress_pgck_admin;
