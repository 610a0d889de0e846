-- any change to a stored value is an error, never a plaintext
CREATE FUNCTION pg_temp.raw(v enc_text) RETURNS bytea LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_catalog.decode(pg_catalog.substr(v::text, 6), 'base64') $$;
CREATE FUNCTION pg_temp.mk(b bytea) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT 'pgck:' || pg_catalog.replace(pg_catalog.encode(b, 'base64'), E'\n', '') $$;
-- try to decrypt every variant; report outcomes by SQLSTATE class
CREATE FUNCTION pg_temp.attack(variants bytea[], ctx text) RETURNS TABLE (outcome text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
    b bytea;
    r text;
    outcome text;
    res text[] := '{}';
BEGIN
    FOREACH b IN ARRAY variants LOOP
        -- Only the decryption runs inside the handler, and the outcome is
        -- recorded outside it with array_append: a mistake in the recording
        -- itself (such as text[] || unknown, which PostgreSQL resolves to an
        -- array concatenation that fails with 22P02) can never be counted as
        -- a refusal.
        BEGIN
            IF ctx IS NULL THEN
                r := kms_decrypt(pg_temp.mk(b)::enc_text);
            ELSE
                r := kms_decrypt(pg_temp.mk(b)::enc_text, ctx);
            END IF;
            outcome := 'DECRYPTED';
        EXCEPTION WHEN OTHERS THEN
            outcome := CASE WHEN SQLSTATE IN ('22P02', '22K01', '42704') THEN 'refused'
                            ELSE 'unexpected ' || SQLSTATE END;
        END;
        res := pg_catalog.array_append(res, outcome);
    END LOOP;
    RETURN QUERY SELECT x, count(*) FROM unnest(res) x GROUP BY x ORDER BY x;
END $$;
CREATE FUNCTION pg_temp.variants(v bytea) RETURNS bytea[] LANGUAGE sql AS $$
    SELECT array_agg(x) FROM (
        -- every byte with its low bit flipped, and with every bit flipped
        SELECT set_byte(v, i, get_byte(v, i) # 1) AS x FROM generate_series(0, length(v) - 1) i
        UNION ALL
        SELECT set_byte(v, i, get_byte(v, i) # 255) FROM generate_series(0, length(v) - 1) i
        UNION ALL
        -- every truncation
        SELECT substr(v, 1, n) FROM generate_series(0, length(v) - 1) n
        UNION ALL
        -- extensions
        SELECT v || '\x00'::bytea UNION ALL SELECT v || '\xdeadbeef'::bytea
    ) s $$;

SELECT kms_create_key('tp', 'local:regress');
SELECT kms_create_key('tp_bidx', 'local:regress', blind_index => 'lower');
SELECT kms_create_key('tp_other', 'local:regress');

-- a plain value: header (version, algorithm, flags, key id), nonce, ciphertext, tag
SELECT pg_temp.raw(kms_encrypt('tamper me', 'tp')) AS v \gset
SELECT length(:'v'::bytea) AS bytes, kms_decrypt(pg_temp.mk(:'v'::bytea)::enc_text) AS original;
SELECT * FROM pg_temp.attack(pg_temp.variants(:'v'::bytea), NULL);
-- positive control: attack() does report a variant that decrypts (the
-- unchanged value, twice)
SELECT * FROM pg_temp.attack(ARRAY[:'v'::bytea, :'v'::bytea], NULL);

-- a value with a blind-index tag: the tag is authenticated too
SELECT pg_temp.raw(kms_encrypt('Tag@Example.com', 'tp_bidx')) AS w \gset
SELECT * FROM pg_temp.attack(pg_temp.variants(:'w'::bytea), NULL);

-- a value with a context
SELECT pg_temp.raw(kms_encrypt('ctx', 'tp', 'row:1')) AS c \gset
SELECT * FROM pg_temp.attack(pg_temp.variants(:'c'::bytea), 'row:1');

-- moving a value to another key version id (same length) fails, naming that key
SELECT kms_encrypt('moved', 'tp_other') AS o \gset
SELECT kms_decrypt(pg_temp.mk(overlay(pg_temp.raw(:'o') PLACING substr(:'v'::bytea, 4, 4) FROM 4))::enc_text);
-- an empty plaintext is protected the same way
SELECT pg_temp.raw(kms_encrypt('', 'tp')) AS e \gset
SELECT * FROM pg_temp.attack(pg_temp.variants(:'e'::bytea), NULL);
SELECT decrypt_failures >= 100 AS decrypt_failures_counted FROM kms_cache_stats();
