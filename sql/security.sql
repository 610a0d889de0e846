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

CREATE TABLE sec (id int PRIMARY KEY, v enc_text);
-- pg_catalog last on the path: evil's objects shadow the built-ins
SET search_path = evil, public, pg_catalog;
SELECT kms_create_key('sec', 'local:regress', blind_index => 'exact');
INSERT INTO sec SELECT g, kms_encrypt('secret ' || g, 'sec') FROM generate_series(1, 50) g;
SELECT kms_rotate_key('sec');
SELECT kms_rotate_index_key('sec');
SELECT kms_finish_index_rotation('sec');
SELECT kms_set_key_state('sec', 1, 'decrypt-only');
CALL kms_reencrypt_table('sec', 'v', batch => 20);
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
-- a tampered value: flip one byte of the ciphertext
UPDATE drill SET v = ('pgck:' || replace(encode(set_byte(decode(substr(v::text, 6), 'base64'), 25,
                      get_byte(decode(substr(v::text, 6), 'base64'), 25) # 1), 'base64'), E'\n', ''))::enc_text
 WHERE id = 5;
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'v') ORDER BY version;
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'vc', $$'drill:' || id$$) ORDER BY version;
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'vc') ORDER BY version;
SELECT kms_set_key_state('sec', 2, 'retired');
SELECT version, decrypted, failed, error FROM kms_verify('drill', 'v') ORDER BY version;
DROP TABLE sec, drill;
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
