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
SHOW pgcrypt_kms.local_key_file;
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

-- EXECUTE is revoked from PUBLIC on everything that touches keys
SELECT p.oid::regprocedure AS function_public_can_execute
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgcrypt_kms'
 WHERE has_function_privilege('regress_pgck_nobody', p.oid, 'EXECUTE')
 ORDER BY 1::text;

DROP TABLE priv_t;
DROP ROLE regress_pgck_nobody, regress_pgck_reader, regress_pgck_writer, regress_pgck_admin;
