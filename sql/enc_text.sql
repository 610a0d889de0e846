-- enc_text: the type, its text and binary forms, and what it refuses
CREATE EXTENSION pgcrypt_kms;
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
CREATE FUNCTION pg_temp.raw(v enc_text) RETURNS bytea LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_catalog.decode(pg_catalog.substr(v::text, 6), 'base64') $$;
CREATE FUNCTION pg_temp.mk(b bytea) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT 'pgck:' || pg_catalog.replace(pg_catalog.encode(b, 'base64'), E'\n', '') $$;

-- storage external, variable length, no casts from text
SELECT typname, typlen, typstorage FROM pg_type WHERE typname = 'enc_text';
SELECT count(*) AS casts_to_enc_text FROM pg_cast WHERE casttarget = 'enc_text'::regtype;

-- plaintext is never accepted, and the error does not echo it
SELECT 'hello'::enc_text;
SELECT pg_temp.sqlstate_of($$SELECT 'hello'::enc_text$$);
SELECT 'hello'::text::enc_text;
SELECT pg_temp.sqlstate_of($$SELECT 'pgck:not base64!'::enc_text$$) AS bad_base64;
SELECT pg_temp.sqlstate_of($$SELECT 'pgck:AQ=='::enc_text$$) AS too_short;
SELECT pg_temp.sqlstate_of($$SELECT 'pgck:'::enc_text$$) AS empty_body;

SELECT kms_create_key('t1', 'local:regress');
SELECT kms_encrypt('secret value', 't1') AS v \gset

-- the text form is prefix + canonical base64 and survives a round trip
SELECT left(:'v', 5) AS prefix, :'v'::enc_text::text = :'v' AS text_round_trip;
SELECT position('secret value' IN :'v') = 0 AS no_plaintext_in_text_form;
SELECT kms_decrypt(:'v'::enc_text);

-- header fields: version 1, algorithm 1, no flags, key version id 1
SELECT get_byte(pg_temp.raw(:'v'), 0) AS version, get_byte(pg_temp.raw(:'v'), 1) AS algorithm,
       get_byte(pg_temp.raw(:'v'), 2) AS flags,
       (get_byte(pg_temp.raw(:'v'), 3) << 24) | (get_byte(pg_temp.raw(:'v'), 4) << 16) |
       (get_byte(pg_temp.raw(:'v'), 5) << 8) | get_byte(pg_temp.raw(:'v'), 6) AS key_version_id,
       length(pg_temp.raw(:'v')) = 19 + length('secret value') + 16 AS length_ok;

-- an unknown format version fails clearly, naming the version
SELECT pg_temp.mk(set_byte(pg_temp.raw(:'v'), 0, 2))::enc_text;
SELECT pg_temp.sqlstate_of(format('SELECT %L::enc_text', pg_temp.mk(set_byte(pg_temp.raw(:'v'), 0, 2)))) AS unknown_version;
SELECT pg_temp.sqlstate_of(format('SELECT %L::enc_text', pg_temp.mk(set_byte(pg_temp.raw(:'v'), 1, 9)))) AS unknown_algorithm;
SELECT pg_temp.sqlstate_of(format('SELECT %L::enc_text', pg_temp.mk(set_byte(pg_temp.raw(:'v'), 2, 128)))) AS unknown_flags;
SELECT pg_temp.sqlstate_of(format('SELECT %L::enc_text', :'v' || 'A')) AS non_canonical_base64;

-- binary send is the raw envelope; binary COPY round-trips through recv
SELECT enc_text_send(:'v'::enc_text) = pg_temp.raw(:'v') AS send_is_raw;
CREATE TABLE bin_src (v enc_text);
CREATE TABLE bin_dst (v enc_text);
INSERT INTO bin_src SELECT kms_encrypt('row ' || g, 't1') FROM generate_series(1, 5) g;
SELECT current_setting('data_directory') || '/pgck_regress_copy' AS copyfile \gset
COPY bin_src TO :'copyfile' (FORMAT binary);
COPY bin_dst FROM :'copyfile' (FORMAT binary);
SELECT kms_decrypt(v) FROM bin_dst ORDER BY 1;
SELECT (SELECT array_agg(v::text ORDER BY v::text) FROM bin_src) = (SELECT array_agg(v::text ORDER BY v::text) FROM bin_dst) AS binary_copy_identical;
-- and text COPY carries only ciphertext
COPY (SELECT v FROM bin_src) TO :'copyfile';
SELECT position('row ' IN pg_read_file(:'copyfile')) = 0 AS text_copy_has_no_plaintext,
       position('pgck:' IN pg_read_file(:'copyfile')) = 1 AS text_copy_has_ciphertext;
DROP TABLE bin_src, bin_dst;
