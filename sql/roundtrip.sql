-- values of every shape round-trip; the cache unwraps each version once
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT kms_create_key('rt', 'local:regress');

CREATE TABLE rt (id int PRIMARY KEY, plain text, v enc_text);
INSERT INTO rt VALUES
    (1, '', kms_encrypt('', 'rt')),
    (2, 'plain ASCII text', kms_encrypt('plain ASCII text', 'rt')),
    (3, 'ünïcödé ✓ 𝄞 😀 𠜎', kms_encrypt('ünïcödé ✓ 𝄞 😀 𠜎', 'rt')),
    (4, repeat('0123456789abcdef', 65536), kms_encrypt(repeat('0123456789abcdef', 65536), 'rt')),
    (5, NULL, kms_encrypt(NULL, 'rt')),
    (6, E'nul-free \\x01 \t\n controls', kms_encrypt(E'nul-free \\x01 \t\n controls', 'rt'));
SELECT id, length(plain) AS plain_len, kms_decrypt(v) IS NOT DISTINCT FROM plain AS round_trip,
       v IS NULL AS is_null
  FROM rt ORDER BY id;
SELECT octet_length(kms_decrypt(v)) AS bytes_4byte_utf8 FROM rt WHERE id = 3;

-- the 1 MB value is stored out of line (TOAST, uncompressed: storage external)
SELECT pg_column_size(v) > 1048576 AS stored_uncompressed FROM rt WHERE id = 4;
SELECT (SELECT count(*) FROM pg_class c WHERE c.oid = (SELECT reltoastrelid FROM pg_class WHERE relname = 'rt')) = 1 AS has_toast;
SELECT pg_relation_size((SELECT reltoastrelid FROM pg_class WHERE relname = 'rt')) > 1048576 AS value_in_toast;

-- NULL in, NULL out; STRICT functions
SELECT kms_decrypt(NULL::enc_text) IS NULL AS null_out, kms_encrypt(NULL, 'rt') IS NULL AS null_enc;

-- two encryptions of one plaintext differ (random nonce) and both decrypt
SELECT kms_encrypt('same', 'rt')::text <> kms_encrypt('same', 'rt')::text AS differ;
SELECT count(DISTINCT v::text) AS distinct_ciphertexts, count(DISTINCT kms_decrypt(v)) AS distinct_plaintexts
  FROM (SELECT kms_encrypt('same', 'rt') AS v FROM generate_series(1, 1000)) s;

-- context is bound: right context decrypts, wrong or missing context fails
SELECT kms_encrypt('bound', 'rt', 'users.email:42') AS c \gset
SELECT kms_decrypt(:'c'::enc_text, 'users.email:42') AS right_context;
SELECT kms_decrypt(:'c'::enc_text, 'users.email:43');
SELECT kms_decrypt(:'c'::enc_text);
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text, %L)', kms_encrypt('x', 'rt'), 'ctx')) AS context_on_plain_value;
SELECT kms_decrypt(kms_encrypt('', 'rt', ''), '') = '' AS empty_context;

-- UPDATE ... SET v = kms_encrypt(...) keeps every row decryptable
UPDATE rt SET v = kms_encrypt(plain || ' v2', 'rt'), plain = plain || ' v2' WHERE id IN (1, 2, 3, 6);
UPDATE rt SET v = kms_encrypt(kms_decrypt(v), 'rt') WHERE id = 4;
SELECT id, kms_decrypt(v) IS NOT DISTINCT FROM plain AS round_trip FROM rt ORDER BY id;

-- one session: 10,000 encryptions and 10,000 decryptions unwrap the version once
SELECT kms_flush_cache();
SELECT unwraps AS unwraps_before FROM kms_cache_stats() \gset
CREATE TABLE bulk AS SELECT g AS id, kms_encrypt('value ' || g, 'rt') AS v FROM generate_series(1, 10000) g;
SELECT count(*) FILTER (WHERE kms_decrypt(v) = 'value ' || id) AS decrypted_ok FROM bulk;
SELECT unwraps - :unwraps_before AS unwraps, cached_versions,
       (by_operation -> 'Decrypt' ->> 'calls')::int >= 1 AS counted_kms_decrypt,
       hits >= 20000 AS hits_counted
  FROM kms_cache_stats();

-- after the TTL the next use unwraps again
SET pgcrypt_kms.cache_ttl = 1;
SELECT pg_sleep(1.2);
SELECT count(*) FROM bulk WHERE kms_decrypt(v) IS NOT NULL AND id <= 10;
SELECT unwraps - :unwraps_before AS unwraps_after_ttl, expirations >= 1 AS expired FROM kms_cache_stats();
-- also inside one transaction, where no commit sweeps expired keys in between: the version a
-- point lookup keeps from its previous statement is not served past the TTL
BEGIN;
SELECT kms_decrypt(v) IS NOT NULL AS first_in_xact FROM bulk WHERE id = 1;
SELECT unwraps AS unwraps_in_xact FROM kms_cache_stats() \gset
SELECT pg_sleep(1.2);
SELECT kms_decrypt(v) IS NOT NULL AS after_ttl_in_xact FROM bulk WHERE id = 1;
SELECT unwraps - :unwraps_in_xact >= 1 AS unwrapped_again_in_xact FROM kms_cache_stats();
COMMIT;
RESET pgcrypt_kms.cache_ttl;

-- kms_flush_cache wipes everything
SELECT kms_flush_cache();
SELECT cached_versions FROM kms_cache_stats();
SELECT count(*) FROM bulk WHERE kms_decrypt(v) = 'value ' || id;
DROP TABLE bulk;
