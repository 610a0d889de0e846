-- key administration on the local: provider, and the keys view
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

SELECT kms_create_key('k_plain', 'local:regress');
SELECT kms_create_key('k_email', 'local:regress', blind_index => 'email');
SELECT kms_create_key('k_ctx', 'local:regress-ctx', kms_context => '{"tenant": "42"}');

-- bad arguments: 22023; duplicates: 42710; nulls: 22004
SELECT kms_create_key('k_bad', 'vault:foo');
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('k_bad', 'nocolon')$$) AS no_scheme;
SELECT kms_create_key('k_bad', 'local:regress', blind_index => 'soundex');
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('k_bad', 'local:regress', blind_index => 'exact', index_bits => 7)$$) AS bits_low;
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('k_bad', 'local:regress', blind_index => 'exact', index_bits => 257)$$) AS bits_high;
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('k_bad', 'local:regress', kms_context => '[1]')$$) AS ctx_not_object;
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('bad name', 'local:regress')$$) AS bad_name;
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('', 'local:regress')$$) AS empty_name;
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key(NULL, 'local:regress')$$) AS null_name;
SELECT kms_create_key('k_plain', 'local:regress');
SELECT count(*) AS keys_after_failures FROM kms_keys WHERE key_name LIKE 'k\_%';

-- unknown keys: 42704
SELECT kms_encrypt('x', 'no_such_key');
SELECT pg_temp.sqlstate_of($$SELECT kms_rotate_key('no_such_key')$$) AS rotate_unknown;
SELECT pg_temp.sqlstate_of($$SELECT kms_blind_index('x', 'no_such_key')$$) AS probe_unknown;
-- a key without a blind index has no probe: 22023
SELECT kms_blind_index('x', 'k_plain');

-- the view: versions and settings, never key material
SELECT key_name, version, state, current, kms_key, kms_context, blind_index, index_bits
  FROM kms_keys WHERE key_name LIKE 'k\_%' ORDER BY key_name, version;
SELECT count(*) AS key_material_columns FROM information_schema.columns
 WHERE table_name = 'kms_keys' AND (column_name LIKE '%wrapped%' OR column_name LIKE '%dek%');

-- the keyring tables are extension configuration tables (pg_dump carries them)
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'pgcrypt_kms' ORDER BY 1;
-- DEKs are stored wrapped: 32-byte keys wrapped by the local provider are 63 bytes
SELECT key_name, version, length(wrapped_dek) AS wrapped_len, substr(wrapped_dek, 1, 3) AS wrap_header
  FROM pgcrypt_kms.key_versions WHERE key_name LIKE 'k\_%' ORDER BY 1, 2;
-- keys bound to a context only unwrap with it: the KMS context is part of the wrapping
SELECT kms_decrypt(kms_encrypt('ctx value', 'k_ctx'));
UPDATE pgcrypt_kms.keys SET kms_context = '{"tenant": "43"}' WHERE key_name = 'k_ctx';
SELECT kms_flush_cache();
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('ctx value', 'k_ctx')$$) AS other_kms_context;
UPDATE pgcrypt_kms.keys SET kms_context = '{"tenant": "42"}' WHERE key_name = 'k_ctx';
SELECT kms_decrypt(kms_encrypt('ctx value', 'k_ctx'));

-- settings: ranges and checks
-- (the range message differs between PostgreSQL majors: the SQLSTATE only)
\set VERBOSITY sqlstate
SET pgcrypt_kms.cache_ttl = 0;
\set VERBOSITY default
SET pgcrypt_kms.local_key_file = 'relative/path';
SET pgcrypt_kms.aws_endpoint = 'ftp://example.com';
SET pgcrypt_kms.aws_region = 'US East';
SET pgcrypt_kms.no_such_setting = 1;

-- every unwrapped key is verified against its stored key-check value before use
SELECT kms_create_key('k_check', 'local:regress');
SELECT kms_encrypt('checked', 'k_check') AS kc \gset
SELECT key_check AS orig_check, wrapped_dek AS orig_wrapped FROM pgcrypt_kms.key_versions WHERE key_name = 'k_check' \gset
UPDATE pgcrypt_kms.key_versions SET key_check = '\x00000000000000000000000000000000' WHERE key_name = 'k_check';
SELECT kms_flush_cache();
SELECT kms_decrypt(:'kc'::enc_text);
-- a wrapped key swapped for another key's (which unwraps fine) is caught the same way
UPDATE pgcrypt_kms.key_versions SET key_check = :'orig_check',
       wrapped_dek = (SELECT wrapped_dek FROM pgcrypt_kms.key_versions WHERE key_name = 'k_plain')
 WHERE key_name = 'k_check';
SELECT kms_decrypt(:'kc'::enc_text);
-- restored, it decrypts again
UPDATE pgcrypt_kms.key_versions SET key_check = :'orig_check', wrapped_dek = :'orig_wrapped' WHERE key_name = 'k_check';
SELECT kms_decrypt(:'kc'::enc_text);

-- the backend's last-key memo, which serves key names that are not constants of the query (a
-- column, a variable), never outlives kms_flush_cache: the flushed entry and its index key are
-- gone, and the next lookup by the same name must not find the memo's pointer to them
CREATE TEMP TABLE memo_names (name text);
INSERT INTO memo_names VALUES ('k_email');
SELECT kms_blind_index('Memo@Example.com', 'k_email') AS memo_probe \gset
SELECT kms_blind_index('Memo@Example.com', name) = :'memo_probe' AS before_flush FROM memo_names;
SELECT kms_flush_cache();
SELECT kms_blind_index('Memo@Example.com', name) = :'memo_probe' AS after_flush FROM memo_names;
SELECT kms_decrypt(kms_encrypt('memo value', name)) AS after_flush_roundtrip FROM memo_names;
DROP TABLE memo_names;

-- the local provider seals each wrapped key under a fresh random GCM nonce (bytes 4-15, after
-- the 3-byte header): the DEK versions of a key and its index key never share one, since they
-- are all sealed under the same key-encryption key (HKDF of the master key and the name)
SELECT kms_create_key('k_nonce', 'local:regress', blind_index => 'exact');
SELECT kms_rotate_key('k_nonce');
SELECT kms_rotate_key('k_nonce');
SELECT count(*) AS wrapped, count(DISTINCT substr(w, 1, 3)) AS headers,
       count(DISTINCT substr(w, 4, 12)) AS nonces
  FROM (SELECT wrapped_dek FROM pgcrypt_kms.key_versions WHERE key_name = 'k_nonce'
        UNION ALL SELECT index_key_wrapped FROM pgcrypt_kms.keys WHERE key_name = 'k_nonce') s(w);

-- a backend wipes every cached key past its TTL at its next commit (at most once a second), not
-- only the keys it uses again: kb, unused after its first statement, is gone (counted as an
-- expiration) although the backend only went on with ka (an outside review of limits,
-- 2026-12-05, found a destroyed key's data key kept that way past its TTL); each pause is a
-- lower bound, so kb is always past its 3 s TTL at the last commit
SELECT kms_create_key('k_sweep_a', 'local:regress'), kms_create_key('k_sweep_b', 'local:regress', blind_index => 'exact');
SET pgcrypt_kms.cache_ttl = 3;
SELECT kms_flush_cache();
SELECT kms_decrypt(kms_encrypt('sweep b', 'k_sweep_b')) AS b;
SELECT expirations AS sweep_e0 FROM kms_cache_stats() \gset
SELECT pg_sleep(2);
SELECT kms_decrypt(kms_encrypt('sweep a', 'k_sweep_a')) AS a;
SELECT pg_sleep(1.5);
SELECT kms_decrypt(kms_encrypt('sweep a', 'k_sweep_a')) AS a_again;
SELECT expirations - :sweep_e0 >= 2 AS b_version_and_index_key_swept FROM kms_cache_stats();
SELECT kms_decrypt(kms_encrypt('sweep b', 'k_sweep_b')) AS b_unwrapped_again;
RESET pgcrypt_kms.cache_ttl;
