-- hostile search_path: shadowing operators and functions are never used by the
-- extension; kms_verify reports per version without returning plaintext
\set VERBOSITY default
CREATE SCHEMA evil;
CREATE TABLE evil.calls (what text);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.log_call(what text) RETURNS bool LANGUAGE sql
    AS $$ INSERT INTO evil.calls VALUES (what) RETURNING true $$;
CREATE FUNCTION evil.texteq(text, text) RETURNS bool LANGUAGE sql AS $$ SELECT evil.log_call('text = text') $$;
CREATE FUNCTION evil.int4eq(int4, int4) RETURNS bool LANGUAGE sql AS $$ SELECT evil.log_call('int4 = int4') $$;
CREATE FUNCTION evil.int8eq(int8, int4) RETURNS bool LANGUAGE sql AS $$ SELECT evil.log_call('int8 = int4') $$;
CREATE FUNCTION evil.int4pl(int4, int4) RETURNS int4 LANGUAGE sql AS $$ SELECT CASE WHEN evil.log_call('int4 + int4') THEN 1 END $$;
CREATE FUNCTION evil.int8pl(int8, int8) RETURNS int8 LANGUAGE sql AS $$ SELECT CASE WHEN evil.log_call('int8 + int8') THEN 1 END $$;
CREATE FUNCTION evil.textcat(text, text) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.log_call('text || text') THEN 'x' END $$;
CREATE FUNCTION evil.int4lt(int4, int4) RETURNS bool LANGUAGE sql AS $$ SELECT evil.log_call('int4 < int4') $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE OPERATOR evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.int4eq);
CREATE OPERATOR evil.= (LEFTARG = int8, RIGHTARG = int4, FUNCTION = evil.int8eq);
CREATE OPERATOR evil.+ (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.int4pl);
CREATE OPERATOR evil.+ (LEFTARG = int8, RIGHTARG = int8, FUNCTION = evil.int8pl);
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.textcat);
CREATE OPERATOR evil.< (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.int4lt);
CREATE FUNCTION evil.max(int4) RETURNS int4 LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.log_call('jsonb_typeof') THEN 'object' END $$;
CREATE FUNCTION evil.format(text, VARIADIC "any") RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.log_call('format') THEN 'SELECT 1' END $$;

-- Byte regions of a value, from the format (README "Value format (v1)",
-- src/envelope.h):
--   version(1) @0 | algorithm(1) @1 | flags(1) @2 | key version id(4) @3..6
--   | nonce(12) @7..18 | [tag length(1) @19 | blind-index tag @20..]
--   | ciphertext | GCM tag(16) = the last 16 bytes
-- region_offset() computes a region's first (or, with last, last) byte from
-- the value's own flags byte and tag length byte; NULL for a region the
-- value does not have.
CREATE FUNCTION pg_temp.raw(v enc_text) RETURNS bytea LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_catalog.decode(pg_catalog.substr(v::text, 6), 'base64') $$;
CREATE FUNCTION pg_temp.mk(b bytea) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT 'pgck:' || pg_catalog.replace(pg_catalog.encode(b, 'base64'), E'\n', '') $$;
CREATE FUNCTION pg_temp.flip(b bytea, off int, mask int) RETURNS bytea LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_catalog.set_byte(b, off, pg_catalog.get_byte(b, off) # mask) $$;
CREATE FUNCTION pg_temp.region_offset(v bytea, region text, last bool DEFAULT false) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE region
        WHEN 'version' THEN 0
        WHEN 'algorithm' THEN 1
        WHEN 'flags' THEN 2
        WHEN 'key version id' THEN CASE WHEN last THEN 6 ELSE 3 END
        WHEN 'nonce' THEN CASE WHEN last THEN 18 ELSE 7 END
        WHEN 'blind-index tag length' THEN CASE WHEN has_tag THEN 19 END
        WHEN 'blind-index tag' THEN CASE WHEN has_tag THEN CASE WHEN last THEN 19 + tag_len ELSE 20 END END
        WHEN 'ciphertext' THEN CASE WHEN last THEN length(v) - 17 ELSE ct_start END
        WHEN 'GCM tag' THEN CASE WHEN last THEN length(v) - 1 ELSE length(v) - 16 END
    END
    FROM (SELECT has_tag, tag_len, 19 + CASE WHEN has_tag THEN 1 + tag_len ELSE 0 END AS ct_start
            FROM (SELECT (get_byte(v, 2) & 1) = 1 AS has_tag,
                         CASE WHEN (get_byte(v, 2) & 1) = 1 THEN get_byte(v, 19) END AS tag_len) t) s $$;
-- the outcome of decrypting a byte string: the SQLSTATE of the refusal, or
-- 'decrypts' (expected only for the unchanged value)
CREATE FUNCTION pg_temp.decrypt_outcome(b bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    BEGIN
        r := kms_decrypt(pg_temp.mk(b)::enc_text);
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE;
    END;
    RETURN 'decrypts';
END $$;
-- one value of key k; flip one byte at the first and at the last byte of
-- every region (mask 1, except: flags 2 sets the context bit, key version id
-- 0x40 in its high byte names an id that cannot exist)
CREATE FUNCTION pg_temp.flip_regions(k text) RETURNS TABLE (region text, byte_offset int, flipped text, outcome text)
LANGUAGE sql AS $$
    WITH v AS (SELECT pg_temp.raw(kms_encrypt('one region at a time', k)) AS b),
    spots AS (
        SELECT r.region, r.ord, pg_temp.region_offset(v.b, r.region, l.last) AS off, r.mask, v.b
          FROM v, (VALUES ('version', 1, 1), ('algorithm', 2, 1), ('flags', 3, 2),
                          ('key version id', 4, 64), ('nonce', 5, 1),
                          ('blind-index tag length', 6, 1), ('blind-index tag', 7, 1),
                          ('ciphertext', 8, 1), ('GCM tag', 9, 1)) r(region, ord, mask),
               (VALUES (false), (true)) l(last)
         WHERE r.mask <> 64 OR NOT l.last
    )
    SELECT '(none)', NULL::int, NULL, pg_temp.decrypt_outcome(b) FROM v
    UNION ALL
    SELECT DISTINCT region, off, 'xor ' || mask, pg_temp.decrypt_outcome(pg_temp.flip(b, off, mask))
      FROM spots WHERE off IS NOT NULL
    ORDER BY 2 NULLS FIRST $$;

CREATE TABLE sec (id int PRIMARY KEY, v enc_text);
-- pg_catalog last on the path: evil's objects shadow the built-ins
SET search_path = evil, public, pg_catalog;
SELECT kms_create_key('sec', 'local:regress', blind_index => 'exact');
INSERT INTO sec SELECT g, kms_encrypt('secret ' || g, 'sec') FROM generate_series(1, 50) g;
SELECT kms_rotate_key('sec');
SELECT kms_rotate_index_key('sec');
-- refused (50 values not yet re-tagged): its scan of the enc_text columns runs as the caller,
-- under this search_path, and counts them all the same
SELECT kms_finish_index_rotation('sec');
SELECT kms_set_key_state('sec', 1, 'decrypt-only');
CALL kms_reencrypt_table('sec', 'v', batch => 20);
SELECT kms_finish_index_rotation('sec');
SELECT kms_flush_cache();
SELECT kms_decrypt(v) AS decrypted FROM sec ORDER BY id LIMIT 3;
SELECT key_name, version, state FROM kms_keys WHERE key_name LIKE 'sec' ORDER BY version;
-- positive control: an unqualified operator in our own query does reach evil
SELECT 'a' = 'b' AS shadowed_operator_used;
SELECT key_name, version, decrypted, failed FROM kms_verify('sec', 'v');
RESET search_path;
SELECT array_agg(what) AS calls_into_evil FROM evil.calls;
SELECT version, decrypted, failed, error FROM kms_verify('sec', 'v') ORDER BY version;

-- kms_verify: decrypting, failing, malformed and retired values, with and without context
CREATE TABLE drill (id int, v enc_text, vc enc_text);
INSERT INTO drill SELECT g, kms_encrypt('d' || g, 'sec'), kms_encrypt('c' || g, 'sec', 'drill:' || g) FROM generate_series(1, 30) g;
SELECT kms_rotate_key('sec');
INSERT INTO drill SELECT g, kms_encrypt('d' || g, 'sec'), NULL FROM generate_series(31, 40) g;
-- a tampered value: flip one byte of the ciphertext ('sec' has a full
-- blind-index tag, so the ciphertext starts at byte 19 + 1 + 32 = 52; the
-- offset is computed from the value's own flags and tag length byte)
SELECT pg_temp.region_offset(pg_temp.raw(v), 'ciphertext') AS drill_ciphertext_offset FROM drill WHERE id = 5;
UPDATE drill SET v = pg_temp.mk(pg_temp.flip(pg_temp.raw(v), pg_temp.region_offset(pg_temp.raw(v), 'ciphertext'), 1))::enc_text
 WHERE id = 5;
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'v') ORDER BY version;
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'vc', $$'drill:' || id$$) ORDER BY version;
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'vc') ORDER BY version;
-- (version 2 came with kms_rotate_index_key above; the drill's first 30 values are on 3)
SELECT kms_set_key_state('sec', 3, 'retired');
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'v') ORDER BY version;

-- one byte flipped in each region of the format, each named, under a key
-- without a blind index, with a full 256-bit tag (32 bytes) and with a
-- 12-bit tag (2 bytes): header and nonce and tag bytes move the ciphertext
SELECT kms_create_key('sec_nobidx', 'local:regress');
SELECT kms_create_key('sec_short', 'local:regress', blind_index => 'lower', index_bits => 12);
SELECT * FROM pg_temp.flip_regions('sec_nobidx');
SELECT * FROM pg_temp.flip_regions('sec');
SELECT * FROM pg_temp.flip_regions('sec_short');
DROP TABLE sec, drill;
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
