-- key lifecycle: version states, batched re-encryption off old versions, parallel decryption
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT kms_create_key('lc', 'local:regress', blind_index => 'exact');
CREATE TABLE lc (id int PRIMARY KEY, plain text, v enc_text, vc enc_text);
INSERT INTO lc SELECT g, 'value ' || g, kms_encrypt('value ' || g, 'lc'), kms_encrypt('ctx ' || g, 'lc', 'lc:' || g)
  FROM generate_series(1, 10000) g;
SELECT kms_rotate_key('lc');
INSERT INTO lc SELECT g, 'value ' || g, kms_encrypt('value ' || g, 'lc'), kms_encrypt('ctx ' || g, 'lc', 'lc:' || g)
  FROM generate_series(10001, 20000) g;
SELECT kms_rotate_key('lc');
SELECT md5(string_agg(kms_decrypt(v) || kms_decrypt(vc, 'lc:' || id), ',' ORDER BY id)) AS checksum_before FROM lc \gset

-- version states: the active one changes only by rotation
SELECT kms_set_key_state('lc', 3, 'retired');
SELECT pg_temp.sqlstate_of($$SELECT kms_set_key_state('lc', 1, 'active')$$) AS make_active,
       pg_temp.sqlstate_of($$SELECT kms_set_key_state('lc', 9, 'retired')$$) AS unknown_version,
       pg_temp.sqlstate_of($$SELECT kms_set_key_state('nope', 1, 'retired')$$) AS unknown_key;

-- move every value off versions 1 and 2 in committed batches
SELECT k.version, count(*) FROM lc JOIN kms_keys k ON k.version_id = kms_version_id(lc.v) GROUP BY 1 ORDER BY 1;
CALL kms_reencrypt_table('lc', 'v', batch => 7000);
CALL kms_reencrypt_table('lc', 'vc', batch => 7000, context => $$'lc:' || id$$);
-- run again: nothing left to do (resumable, idempotent)
CALL kms_reencrypt_table('lc', 'v', batch => 7000);
SELECT kv.version AS v_version, kc.version AS vc_version, count(*)
  FROM lc JOIN kms_keys kv ON kv.version_id = kms_version_id(lc.v) JOIN kms_keys kc ON kc.version_id = kms_version_id(lc.vc)
 GROUP BY 1, 2;
SELECT md5(string_agg(kms_decrypt(v) || kms_decrypt(vc, 'lc:' || id), ',' ORDER BY id)) = :'checksum_before' AS same_plaintexts,
       count(*) AS rows FROM lc;
-- tags survive re-encryption
SELECT count(*) AS tags_match FROM lc WHERE kms_blind_index(v) = kms_blind_index(plain, 'lc');

-- now the old versions can be retired; a value still on them would be refused
SELECT kms_set_key_state('lc', 1, 'retired');
SELECT kms_set_key_state('lc', 2, 'retired');
SELECT version, state, current FROM kms_keys WHERE key_name = 'lc' ORDER BY version;
SELECT count(*) AS all_decrypt FROM lc WHERE kms_decrypt(v) = plain;
-- a version set decrypt-only is never used to encrypt: no active version, no encryption
SELECT kms_create_key('lc2', 'local:regress');
UPDATE pgcrypt_kms.key_versions SET state = 'decrypt-only' WHERE key_name = 'lc2';
SELECT kms_encrypt('x', 'lc2');
SELECT kms_rotate_key('lc2');
SELECT kms_version_id(kms_encrypt('x', 'lc2')) = (SELECT version_id FROM kms_keys WHERE key_name = 'lc2' AND current) AS encrypts_under_new;
CALL kms_reencrypt_table('lc', 'v', batch => 0);

-- parallel query: workers read the keyring and unwrap on their own
-- (force_parallel_mode is debug_parallel_query since PostgreSQL 16)
SELECT CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END AS force_parallel \gset
SET :force_parallel = on;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT count(*) FROM lc WHERE kms_decrypt(v) = plain;
SELECT count(*) AS parallel_decrypt_ok FROM lc WHERE kms_decrypt(v) = plain;
SELECT count(*) AS parallel_probe_ok FROM lc WHERE kms_blind_index(v) = kms_blind_index(plain, 'lc');
RESET :force_parallel;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- every function is labelled on purpose: what writes the keyring is PARALLEL UNSAFE
SELECT p.oid::regprocedure AS function, p.provolatile AS volatility, p.proparallel AS parallel, p.proisstrict AS strict
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgcrypt_kms'
 WHERE p.prokind = 'f'
 ORDER BY 1::text;
DROP TABLE lc;
