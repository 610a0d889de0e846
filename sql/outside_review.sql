-- outside_review: regressions for the defects an outside review found in 0.1
-- (issue 11).  Each block fails on 0.1.
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.sqlstate_of(text) TO PUBLIC;

------------------------------------------------------------------ 1. kms_verify checks its arguments
SELECT kms_create_key('or_v', 'local:regress');
CREATE TABLE or_verify (v enc_text, t text);
INSERT INTO or_verify VALUES (kms_encrypt('a', 'or_v'), 'plain');
CREATE TABLE or_dropped (v enc_text);
SELECT 'or_dropped'::regclass::oid AS dropped_oid \gset
DROP TABLE or_dropped;
SELECT * FROM kms_verify(NULL, 'v');
SELECT * FROM kms_verify('or_verify', NULL);
SELECT * FROM kms_verify(NULL, NULL, NULL);
SELECT pg_temp.sqlstate_of(format('SELECT * FROM kms_verify(%s::oid::regclass, %L)', :dropped_oid, 'v')) AS dropped_table;
SELECT pg_temp.sqlstate_of($$SELECT * FROM kms_verify(0::oid::regclass, 'v')$$) AS oid_zero;
SELECT pg_temp.sqlstate_of($$SELECT * FROM kms_verify(4294967295::oid::regclass, 'v')$$) AS oid_max;
SELECT * FROM kms_verify('or_verify', 'nosuchcol');
SELECT * FROM kms_verify('or_verify', 't');
SELECT key_name, version, decrypted, failed FROM kms_verify('or_verify', 'v');
-- a column of a domain over enc_text (at any depth) is an enc_text column too, for kms_verify
-- (the README's check before a forced kms_finish_index_rotation) and kms_warm_cache
CREATE DOMAIN or_dom AS enc_text;
CREATE DOMAIN or_dom2 AS or_dom;
CREATE TABLE or_verify_dom (d or_dom, d2 or_dom2);
INSERT INTO or_verify_dom VALUES (kms_encrypt('b', 'or_v'), kms_encrypt('c', 'or_v'));
SELECT key_name, version, decrypted, failed FROM kms_verify('or_verify_dom', 'd2');
SELECT kms_warm_cache('or_verify_dom', 'd') >= 0 AS warm_cache_domain;
DROP TABLE or_verify_dom;
DROP DOMAIN or_dom2, or_dom;
-- it opens subtransactions: never inside a parallel query
SELECT proparallel FROM pg_proc WHERE proname = 'kms_verify';

------------------------------------------------------------------ 2. nothing survives its own rollback
-- a key created (with a blind index) and used in a transaction that rolls back
BEGIN;
SELECT kms_create_key('or_g', 'local:regress', blind_index => 'exact');
SELECT kms_encrypt('boo', 'or_g') AS rolled_back_value \gset
SELECT kms_decrypt(:'rolled_back_value') AS inside_the_transaction;
ROLLBACK;
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'or_g')$$) AS encrypt_after_rollback;
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text)', :'rolled_back_value')) AS decrypt_after_rollback;
SELECT pg_temp.sqlstate_of($$SELECT kms_blind_index('x', 'or_g')$$) AS probe_after_rollback;
-- the same in a savepoint
BEGIN;
SAVEPOINT s;
SELECT kms_create_key('or_s', 'local:regress', blind_index => 'lower');
SELECT kms_encrypt('boo', 'or_s') AS rolled_back_sp_value \gset
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'or_s')$$) AS encrypt_after_savepoint_rollback;
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text)', :'rolled_back_sp_value')) AS decrypt_after_savepoint_rollback;
COMMIT;
-- a rotation rolled back: the next encryption uses the committed version
SELECT kms_create_key('or_r', 'local:regress', blind_index => 'exact');
SELECT kms_version_id(kms_encrypt('x', 'or_r')) AS committed_id \gset
BEGIN;
SELECT kms_rotate_key('or_r');
SELECT kms_version_id(kms_encrypt('x', 'or_r')) <> :committed_id AS uses_new_version_inside;
ROLLBACK;
SELECT kms_version_id(kms_encrypt('x', 'or_r')) = :committed_id AS uses_committed_version_after;
-- a key created and committed keeps hearing changes: destroy reaches its creator
SELECT kms_destroy_key('or_r', 'or_r');
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'or_r')$$) AS encrypt_after_destroy;

------------------------------------------------------------------ 4. a NULL context never turns a value into NULL
SELECT kms_create_key('or_c', 'local:regress');
SELECT kms_encrypt('secret', 'or_c', NULL);
SELECT kms_encrypt('secret', NULL);
SELECT kms_encrypt('secret', NULL, 'ctx');
SELECT kms_decrypt(kms_encrypt('secret', 'or_c', 'ctx'), NULL);
SELECT kms_reencrypt(kms_encrypt('secret', 'or_c', 'ctx'), NULL);
-- NULL values still give NULL
SELECT kms_encrypt(NULL, 'or_c') IS NULL AS null_in_null_out,
       kms_encrypt(NULL, 'or_c', 'ctx') IS NULL AS null_in_null_out_ctx,
       kms_decrypt(NULL::enc_text, 'ctx') IS NULL AS decrypt_null,
       kms_reencrypt(NULL::enc_text, 'ctx') IS NULL AS reencrypt_null;
SELECT kms_decrypt(kms_encrypt('secret', 'or_c', 'ctx'), 'ctx') AS with_context;
SELECT proname, pg_get_function_identity_arguments(oid) AS args, proisstrict
  FROM pg_proc WHERE proname IN ('kms_encrypt', 'kms_decrypt', 'kms_reencrypt') ORDER BY 1, 2;

------------------------------------------------------------------ 5. online migration as the least-privileged role the README names
CREATE ROLE regress_or_owner LOGIN IN ROLE pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT CREATE ON SCHEMA public TO regress_or_owner;
SELECT kms_create_key('or_m', 'local:regress', blind_index => 'email');
SET ROLE regress_or_owner;
CREATE TABLE or_mig (id int PRIMARY KEY, email text NOT NULL);
INSERT INTO or_mig SELECT g, 'u' || g || '@Example.com' FROM generate_series(1, 50) g;
CALL kms_encrypt_column('or_mig', 'email', 'or_m', batch => 7);
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'or_mig'::regclass AND attname = 'email';
SELECT count(*) AS found FROM or_mig WHERE kms_blind_index(email) = kms_blind_index('U7@example.COM', 'or_m');
SELECT key_name, decrypted, failed FROM kms_verify('or_mig', 'email');
CALL kms_reencrypt_table('or_mig', 'email', 20);
CALL kms_decrypt_column('or_mig', 'email', batch => 9);
SELECT count(*) AS plain_again FROM or_mig WHERE email = 'u7@Example.com';
-- an unknown key is refused without repeating the name
CREATE TABLE or_mig2 (e text);
CALL kms_encrypt_column('or_mig2', 'e', 'a plaintext by mistake');
RESET ROLE;
DROP TABLE or_mig, or_mig2;
REVOKE CREATE ON SCHEMA public FROM regress_or_owner;
DROP ROLE regress_or_owner;

------------------------------------------------------------------ 10. a name that is no key is never echoed
SELECT kms_encrypt('or_c', 'my card 4111 1111 1111 1111');
SELECT kms_blind_index('x', 'my card 4111 1111 1111 1111');
SELECT kms_rotate_key('my card 4111 1111 1111 1111');
SELECT kms_set_key_state('my card 4111 1111 1111 1111', 1, 'retired');
SELECT kms_rotate_index_key('my card 4111 1111 1111 1111');
SELECT kms_destroy_key('my card 4111 1111 1111 1111', 'my card 4111 1111 1111 1111');
SELECT kms_create_key('my card 4111 1111 1111 1111', 'local:regress');
SELECT kms_encrypt('x', repeat('4111', 100));

------------------------------------------------------------------ 12. nothing is encrypted that could not be written out again
SELECT kms_encrypt(repeat('x', 768 * 1024 * 1024), 'or_c') IS NOT NULL AS encrypted;

------------------------------------------------------------------ 14. a procedure's transactions each see the cache TTL
SET pgcrypt_kms.cache_ttl = 1;
SELECT kms_create_key('or_t', 'local:regress');
SELECT kms_flush_cache();
CREATE PROCEDURE pg_temp.or_two_transactions(INOUT unwraps_between int8 DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    before int8;
BEGIN
    PERFORM kms_decrypt(kms_encrypt('x', 'or_t'));
    SELECT s.unwraps INTO before FROM kms_cache_stats() s;
    COMMIT;
    PERFORM pg_sleep(1.2);
    COMMIT;     -- a transaction that starts after the TTL has passed
    PERFORM kms_decrypt(kms_encrypt('x', 'or_t'));
    SELECT s.unwraps - before INTO unwraps_between FROM kms_cache_stats() s;
END $$;
CALL pg_temp.or_two_transactions();
RESET pgcrypt_kms.cache_ttl;

------------------------------------------------------------------ found while writing FORMAT.md
-- an encryption context maps strings to strings
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('or_j1', 'local:regress', kms_context => '{"a": 1}')$$) AS number_value,
       pg_temp.sqlstate_of($$SELECT kms_create_key('or_j2', 'local:regress', kms_context => '{"a": {"b": "c"}}')$$) AS nested_value,
       pg_temp.sqlstate_of($$SELECT kms_create_key('or_j3', 'local:regress', kms_context => '{"a": "b", "c": "d"}')$$) AS strings;
-- the truncated-tag re-check works for values encrypted with a context
SELECT kms_create_key('or_bm', 'local:regress', blind_index => 'email', index_bits => 12);
SELECT kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm', 'row 1'), 'ann@example.com', 'or_bm', 'row 1') AS with_context,
       kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm', 'row 1'), 'bob@example.com', 'or_bm', 'row 1') AS other_plaintext;
SELECT kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm', 'row 1'), 'ann@example.com', 'or_bm', 'row 2');
-- a NULL key name or context is refused, never a silent NULL that drops the row (0.3); a NULL
-- value or probe matches nothing
SELECT pg_temp.sqlstate_of($$SELECT kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm', 'row 1'), 'ann@example.com', 'or_bm', NULL)$$) AS null_context,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm'), 'ann@example.com', NULL)$$) AS null_key,
       kms_blind_index_match(NULL, 'ann@example.com', 'or_bm') IS NULL AS null_value,
       kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm'), NULL, 'or_bm') IS NULL AS null_probe;
-- the re-check compares the whole normalized plaintext, and the key: a probe that extends
-- the value, an empty value, a value under another key with the same normalization never
-- match (found by mutation: both checks could be dropped without a test failing)
SELECT kms_create_key('or_bm2', 'local:regress', blind_index => 'email', index_bits => 12);
SELECT kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm'), 'ann@example.com.evil', 'or_bm') AS longer_probe,
       kms_blind_index_match(kms_encrypt('ann@example.com.evil', 'or_bm'), 'ann@example.com', 'or_bm') AS shorter_probe,
       kms_blind_index_match(kms_encrypt('', 'or_bm'), 'ann@example.com', 'or_bm') AS empty_value,
       kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm2'), 'ann@example.com', 'or_bm') AS other_key,
       kms_blind_index_match(kms_encrypt('Ann@Example.com', 'or_bm2'), 'ann@example.com', 'or_bm2') AS own_key;

------------------------------------------------------------------ online migration keeps writes its trigger did not see in 0.1
SELECT kms_create_key('or_mw', 'local:regress');
CREATE TABLE or_m1 (id int PRIMARY KEY, email text, touched int DEFAULT 0);
INSERT INTO or_m1 SELECT g, 'old' || g || '@x' FROM generate_series(1, 3) g;
CREATE FUNCTION or_norm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.touched > 0 THEN NEW.email := 'changed-by-trigger@x'; END IF; RETURN NEW; END $$;
CREATE TRIGGER a_norm BEFORE UPDATE ON or_m1 FOR EACH ROW EXECUTE FUNCTION or_norm();
CALL kms_encrypt_column('or_m1', 'email', 'or_mw', finish => false);
UPDATE or_m1 SET touched = 1 WHERE id = 1;          -- the email changed by a trigger, not in the SET list
SET session_replication_role = replica;             -- as logical replication's apply does
UPDATE or_m1 SET email = 'replica-update@x' WHERE id = 2;
RESET session_replication_role;
CALL kms_encrypt_column('or_m1', 'email', 'or_mw');
SELECT id, kms_decrypt(email) FROM or_m1 ORDER BY id;
DROP TABLE or_m1;
DROP FUNCTION or_norm();

------------------------------------------------------------------ found by mutation testing
-- the key-check value is compared in full: a change in its last byte is refused
SELECT kms_create_key('or_kc', 'local:regress');
SELECT kms_encrypt('checked', 'or_kc') AS kc_value \gset
UPDATE pgcrypt_kms.key_versions SET key_check = set_byte(key_check, length(key_check) - 1, get_byte(key_check, length(key_check) - 1) # 1)
 WHERE key_name = 'or_kc';
SELECT kms_flush_cache();
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text)', :'kc_value')) AS last_check_byte_changed;
-- a keyring change within a statement reaches the rows after it (the per-call-site memos
-- are dropped with the cache entries): the key destroyed at row 3 decrypts no later row
SELECT kms_create_key('or_ep', 'local:regress');
CREATE TABLE or_ep_t AS SELECT g AS id, kms_encrypt('epoch ' || g, 'or_ep') AS v FROM generate_series(1, 6) g;
SELECT id, CASE WHEN id = 3 THEN (SELECT kms_destroy_key('or_ep', 'or_ep'))::text ELSE kms_decrypt(v) END AS r
  FROM or_ep_t;
DROP TABLE or_ep_t;
-- the cache holds exactly cache_max_keys versions (least recently used evicted)
SET pgcrypt_kms.cache_max_keys = 3;
SELECT kms_flush_cache();
CREATE TABLE or_lru AS SELECT g, kms_encrypt('lru ' || g, 'or_lru' || g) AS v
  FROM generate_series(1, 5) g, LATERAL (SELECT kms_create_key('or_lru' || g, 'local:regress')) c;
SELECT kms_flush_cache();
SELECT count(kms_decrypt(v)) AS decrypted FROM or_lru;
SELECT cached_versions, evictions >= 2 AS evicted FROM kms_cache_stats();
RESET pgcrypt_kms.cache_max_keys;
DROP TABLE or_lru;
-- cache_ttl is in seconds: a key used a second ago is still cached at a TTL of 60
SET pgcrypt_kms.cache_ttl = 60;
SELECT kms_create_key('or_ttl', 'local:regress');
SELECT kms_flush_cache();
SELECT kms_decrypt(kms_encrypt('ttl', 'or_ttl')) AS first_use;
SELECT unwraps AS unwraps_before FROM kms_cache_stats() \gset
SELECT pg_sleep(1.1);
SELECT kms_decrypt(kms_encrypt('ttl', 'or_ttl')) AS a_second_later;
SELECT unwraps - :unwraps_before AS unwraps_after_a_second FROM kms_cache_stats();
RESET pgcrypt_kms.cache_ttl;
-- the keyring's own constraints: one active version per key, index_bits 8..256
SELECT pg_temp.sqlstate_of($$INSERT INTO pgcrypt_kms.key_versions (key_name, version, kms_key, wrapped_dek, key_check)
    SELECT key_name, 99, kms_key, wrapped_dek, key_check FROM pgcrypt_kms.key_versions WHERE key_name = 'or_ttl'$$) AS second_active_version,
       pg_temp.sqlstate_of($$UPDATE pgcrypt_kms.keys SET index_bits = 4 WHERE key_name = 'or_bm'$$) AS index_bits_4;
-- settings: ranges and checks, and the endpoint hidden from non-superusers
SELECT pg_temp.sqlstate_of($$SET pgcrypt_kms.aws_region = 'US-EAST-1'$$) AS uppercase_region,
       pg_temp.sqlstate_of($$SET pgcrypt_kms.kms_max_attempts = 11$$) AS eleven_attempts,
       pg_temp.sqlstate_of($$SET pgcrypt_kms.kms_max_attempts = 10$$) AS ten_attempts;
RESET pgcrypt_kms.kms_max_attempts;
CREATE ROLE regress_or_plain;
SET ROLE regress_or_plain;
SELECT pg_temp.sqlstate_of($$SHOW pgcrypt_kms.aws_endpoint$$) AS show_endpoint,
       (SELECT count(*) FROM pg_settings WHERE name = 'pgcrypt_kms.aws_endpoint') AS endpoint_in_pg_settings;
RESET ROLE;
DROP ROLE regress_or_plain;
-- the local provider binds its key name (local:<name>) into what it wraps: a wrapped key
-- moved to a key under another local name (with its key-check value) does not unwrap there
SELECT kms_create_key('or_lw_a', 'local:regress-a'), kms_create_key('or_lw_b', 'local:regress-b');
SELECT kms_encrypt('moved', 'or_lw_a') AS lw_value \gset
UPDATE pgcrypt_kms.key_versions a SET wrapped_dek = b.wrapped_dek, key_check = b.key_check
  FROM pgcrypt_kms.key_versions b WHERE a.key_name = 'or_lw_a' AND b.key_name = 'or_lw_b';
SELECT kms_flush_cache();
SELECT pg_temp.sqlstate_of(format('SELECT kms_decrypt(%L::enc_text)', :'lw_value')) AS moved_wrapped_key;
-- the keyring's writes run as its owner in a security-restricted operation: code that runs
-- inside them (here a trigger a superuser adds to the keyring) can neither create temporary
-- objects nor change role (found by mutation: the restriction could be dropped unnoticed)
CREATE FUNCTION pg_temp.or_in_keyring_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        CREATE TEMP TABLE or_restricted_probe (x int);
        RAISE NOTICE 'inside a keyring write: a temporary table was created';
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'inside a keyring write: no temporary table (%)', SQLSTATE;
    END;
    BEGIN
        SET LOCAL ROLE NONE;
        RAISE NOTICE 'inside a keyring write: SET ROLE allowed';
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'inside a keyring write: no SET ROLE (%)', SQLSTATE;
    END;
    RETURN NULL;
END $$;
CREATE TRIGGER or_in_keyring_write AFTER INSERT ON pgcrypt_kms.keys
    FOR EACH ROW EXECUTE FUNCTION pg_temp.or_in_keyring_write();
SELECT kms_create_key('or_restricted', 'local:regress') IS NOT NULL AS created;
DROP TRIGGER or_in_keyring_write ON pgcrypt_kms.keys;
-- kms_add_index (SECURITY DEFINER) rotates through pgcrypt_kms.rotate_key, never by the name
-- of the extension's schema: that schema's owner (on PostgreSQL 15 public's owner is the
-- database owner) could rename it and plant a function under the old name, which would then
-- run as the extension's owner (an outside review of the extension's lifecycle, 2026-12-05,
-- made a database owner superuser that way). Here the planted function only reports.
SELECT current_database() AS or_db, nspowner::regrole AS or_public_owner
  FROM pg_namespace WHERE nspname = 'public' \gset
CREATE ROLE regress_or_schema_owner;
CREATE ROLE regress_or_keyadmin IN ROLE pgcrypt_kms_admin;
GRANT CREATE ON DATABASE :"or_db" TO regress_or_schema_owner;
SELECT kms_create_key('or_rename', 'local:regress', blind_index => 'exact') IS NOT NULL AS created;
ALTER SCHEMA public OWNER TO regress_or_schema_owner;
SET ROLE regress_or_schema_owner;
ALTER SCHEMA public RENAME TO or_public_moved;
CREATE SCHEMA public;
CREATE FUNCTION public.kms_rotate_key(name text) RETURNS int4 LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'the planted kms_rotate_key ran as %', current_user;
    RETURN 0;
END $$;
GRANT USAGE ON SCHEMA public TO PUBLIC;
RESET ROLE;
SET ROLE regress_or_keyadmin;
SELECT or_public_moved.kms_add_index('or_rename', 'pre', 'prefix(2)');
RESET ROLE;
-- the extension's own rotation ran: a second version
SELECT max(version) AS or_rename_versions FROM pgcrypt_kms.key_versions WHERE key_name = 'or_rename';
SET ROLE regress_or_schema_owner;
DROP SCHEMA public CASCADE;
ALTER SCHEMA or_public_moved RENAME TO public;
RESET ROLE;
ALTER SCHEMA public OWNER TO :"or_public_owner";
REVOKE CREATE ON DATABASE :"or_db" FROM regress_or_schema_owner;
DROP ROLE regress_or_keyadmin;
DROP ROLE regress_or_schema_owner;
