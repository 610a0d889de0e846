/* pgcrypt_kms 0.2.0 → 0.3.0 (ALTER EXTENSION pgcrypt_kms UPDATE; CREATE EXTENSION runs 0.1.0, 0.1.0--0.2.0 and then this) */
\echo Use "ALTER EXTENSION pgcrypt_kms UPDATE" to load this file. \quit

-- ================================================================ issue 14: typed values, ORE, named blind indexes
-- Sections of other issues go before or after this one; nothing here depends on them.

-- A key's extra indexes: an order index ('order': order-revealing terms) and
-- named blind indexes (a transform and a tag length each).  Like the keyring,
-- only the extension reads it (a heap scan in src/enc_typed.c); the roles read
-- the kms_key_indexes view.  Keys derived from the key's index key, never stored.
CREATE TABLE pgcrypt_kms.key_indexes (
    key_name    text NOT NULL,   -- a key of pgcrypt_kms.keys (checked by kms_add_index; no FK, so a restore may load the tables in any order)
    index_name  text NOT NULL
                CHECK (index_name OPERATOR(pg_catalog.~) '^[a-z_][a-z0-9_]{0,62}$'),
    transform   text NOT NULL
                CHECK (transform IN ('order', 'exact', 'lower', 'email', 'digits', 'domain', 'prefix', 'suffix')),
    param       int4 CHECK ((transform IN ('prefix', 'suffix')) OPERATOR(pg_catalog.=) (param IS NOT NULL)
                            AND (param IS NULL OR param BETWEEN 1 AND 1000)),
    index_bits  int4 NOT NULL DEFAULT 256 CHECK (index_bits BETWEEN 8 AND 256),
    created     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (key_name, index_name),
    CHECK ((transform OPERATOR(pg_catalog.=) 'order') OPERATOR(pg_catalog.=) (index_name OPERATOR(pg_catalog.=) 'order'))
);
COMMENT ON TABLE pgcrypt_kms.key_indexes IS 'order and named blind indexes of keys; their keys are derived from the key''s index key';
SELECT pg_catalog.pg_extension_config_dump('pgcrypt_kms.key_indexes', '');

CREATE VIEW @extschema@.kms_key_indexes AS
    SELECT key_name, index_name,
           CASE WHEN param IS NULL THEN transform ELSE transform OPERATOR(pg_catalog.||) '(' OPERATOR(pg_catalog.||) param OPERATOR(pg_catalog.||) ')' END AS transform,
           CASE WHEN transform OPERATOR(pg_catalog.=) 'order' THEN NULL ELSE index_bits END AS index_bits,
           created
      FROM pgcrypt_kms.key_indexes;
COMMENT ON VIEW @extschema@.kms_key_indexes IS 'the order and named blind indexes of each key (no key material)';
GRANT SELECT ON @extschema@.kms_key_indexes TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;

-- kms_add_index(key, index_name, transform, index_bits): SECURITY DEFINER to
-- write the table; EXECUTE only for the admin role.  Values written before get
-- the index when re-encrypted (kms_reencrypt, kms_reencrypt_table).
CREATE FUNCTION @extschema@.kms_add_index(key_name text, index_name text, transform text,
        index_bits int4 DEFAULT 256) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
    p int4;
    m text[];
    bi text;
BEGIN
    IF key_name IS NULL OR index_name IS NULL OR transform IS NULL OR index_bits IS NULL THEN
        RAISE EXCEPTION 'the arguments of kms_add_index must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT k.blind_index INTO bi FROM pgcrypt_kms.keys k
     WHERE k.key_name = kms_add_index.key_name AND k.destroyed IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such key' USING ERRCODE = '42704';
    END IF;
    IF bi = 'none' THEN
        RAISE EXCEPTION 'key "%" has no index key', kms_add_index.key_name USING ERRCODE = '22023',
            DETAIL = 'Order-revealing terms and named blind indexes are derived from the key''s index key.',
            HINT = 'Create the key with a blind index (kms_create_key(..., blind_index => ''exact'')).';
    END IF;
    m := regexp_match(kms_add_index.transform, '^(order|exact|lower|email|digits|domain)$|^(prefix|suffix)\(([0-9]{1,4})\)$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'unknown index transform' USING ERRCODE = '22023',
            HINT = 'One of order, exact, lower, email, digits, domain, prefix(n), suffix(n).';
    END IF;
    t := coalesce(m[1], m[2]);
    p := m[3]::int4;
    IF p IS NOT NULL AND NOT p BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'prefix and suffix take 1 to 1000 characters' USING ERRCODE = '22023';
    END IF;
    IF (t = 'order') <> (kms_add_index.index_name = 'order') THEN
        RAISE EXCEPTION 'the order index is named "order", and only it' USING ERRCODE = '22023';
    END IF;
    IF kms_add_index.index_name !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'an index name is 1 to 63 lower-case letters, digits and underscores' USING ERRCODE = '22023';
    END IF;
    IF NOT kms_add_index.index_bits BETWEEN 8 AND 256 THEN
        RAISE EXCEPTION 'index_bits must be between 8 and 256' USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(*) FROM pgcrypt_kms.key_indexes i
         WHERE i.key_name = kms_add_index.key_name AND i.transform <> 'order') >= 16 AND t <> 'order' THEN
        RAISE EXCEPTION 'a key has at most 16 named blind indexes' USING ERRCODE = '22023';
    END IF;
    BEGIN
        INSERT INTO pgcrypt_kms.key_indexes (key_name, index_name, transform, param, index_bits)
        VALUES (kms_add_index.key_name, kms_add_index.index_name, t, p, kms_add_index.index_bits);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'key "%" already has an index "%"', kms_add_index.key_name, kms_add_index.index_name
            USING ERRCODE = '42710';
    END;
END
$$;
COMMENT ON FUNCTION @extschema@.kms_add_index(text, text, text, int4) IS 'add an order index (''order'') or a named blind index (exact, lower, email, digits, domain, prefix(n), suffix(n)) to a key';
REVOKE ALL ON FUNCTION @extschema@.kms_add_index(text, text, text, int4) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_add_index(text, text, text, int4) TO pgcrypt_kms_admin;

CREATE FUNCTION @extschema@.kms_drop_index(key_name text, index_name text) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM pgcrypt_kms.key_indexes i
     WHERE i.key_name = kms_drop_index.key_name AND i.index_name = kms_drop_index.index_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'key has no index of that name' USING ERRCODE = '42704';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.kms_drop_index(text, text) IS 'stop writing an index into new values (values keep what they carry)';
REVOKE ALL ON FUNCTION @extschema@.kms_drop_index(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_drop_index(text, text) TO pgcrypt_kms_admin;

-- kms_create_key(..., order_index => true): the key and its order index in one
-- call.  SECURITY INVOKER: the key is created with the caller's rights.
CREATE FUNCTION @extschema@.kms_create_key(name text, kms_key text, order_index bool,
        blind_index text DEFAULT NULL, index_bits int4 DEFAULT 256, kms_context jsonb DEFAULT '{}')
    RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF order_index IS NULL THEN
        RAISE EXCEPTION 'order_index of kms_create_key must not be null' USING ERRCODE = '22004';
    END IF;
    -- the order key is derived from the index key: with an order index the blind
    -- index defaults to exact; without one nothing is switched on
    PERFORM @extschema@.kms_create_key(name, kms_key,
                                       coalesce(blind_index, CASE WHEN order_index THEN 'exact' ELSE 'none' END),
                                       index_bits, kms_context);
    IF order_index THEN
        PERFORM @extschema@.kms_add_index(name, 'order', 'order');
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.kms_create_key(text, text, bool, text, int4, jsonb) IS 'register a column key; order_index => true adds an order index (order-revealing terms; needs a blind index)';
REVOKE ALL ON FUNCTION @extschema@.kms_create_key(text, text, bool, text, int4, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_create_key(text, text, bool, text, int4, jsonb) TO pgcrypt_kms_admin;

-- ---------------------------------------------------------------- typed values
-- kms_encrypt of int8, numeric, date, timestamptz, bytea: labelled as
-- kms_encrypt(text) (VOLATILE: random nonce; not STRICT: NULL key or context
-- is refused, a NULL value encrypts to NULL).  The type goes into the value.
CREATE FUNCTION @extschema@.kms_encrypt(plaintext int8, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext int8, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext numeric, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext numeric, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext date, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext date, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext timestamptz, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext timestamptz, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext bytea, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext bytea, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;

-- Typed decrypts: STABLE as kms_decrypt (keyring, KMS); a value of another
-- type is refused (42804); not STRICT in the context form (a NULL context is 22004).
CREATE FUNCTION @extschema@.kms_decrypt_int8(value @extschema@.enc_text) RETURNS int8
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_int8' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_int8(value @extschema@.enc_text, context text) RETURNS int8
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_int8' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_numeric(value @extschema@.enc_text) RETURNS numeric
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_numeric' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_numeric(value @extschema@.enc_text, context text) RETURNS numeric
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_numeric' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_date(value @extschema@.enc_text) RETURNS date
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_date' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_date(value @extschema@.enc_text, context text) RETURNS date
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_date' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_timestamptz(value @extschema@.enc_text) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_timestamptz' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_timestamptz(value @extschema@.enc_text, context text) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_timestamptz' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_bytea(value @extschema@.enc_text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_bytea' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt_bytea(value @extschema@.enc_text, context text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_bytea' LANGUAGE C STABLE PARALLEL SAFE;

-- IMMUTABLE: reads the header only.
CREATE FUNCTION @extschema@.kms_plaintext_type(value @extschema@.enc_text) RETURNS text
    AS 'MODULE_PATHNAME', 'pgck_kms_plaintext_type' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_plaintext_type(@extschema@.enc_text) IS 'the plaintext type a value records (text, int8, numeric, date, timestamptz, bytea); needs no key';

-- ---------------------------------------------------------------- order-revealing terms
CREATE TYPE @extschema@.kms_ore_term;
-- I/O only parses and checks a term's structure (no key): IMMUTABLE.
CREATE FUNCTION @extschema@.kms_ore_term_in(cstring) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_ore_term_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_out(@extschema@.kms_ore_term) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pgck_ore_term_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_recv(internal) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_ore_term_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_send(@extschema@.kms_ore_term) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_ore_term_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE TYPE @extschema@.kms_ore_term (
    INPUT = @extschema@.kms_ore_term_in, OUTPUT = @extschema@.kms_ore_term_out,
    RECEIVE = @extschema@.kms_ore_term_recv, SEND = @extschema@.kms_ore_term_send,
    INTERNALLENGTH = VARIABLE, STORAGE = extended, ALIGNMENT = int4);
COMMENT ON TYPE @extschema@.kms_ore_term IS 'an order-revealing term (CLWW 2016): compares like its plaintext, reveals nothing else but the first differing bit';

-- Comparison: the CLWW comparison, no key (IMMUTABLE, for B-trees).
CREATE FUNCTION @extschema@.kms_ore_term_cmp(@extschema@.kms_ore_term, @extschema@.kms_ore_term) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_ore_term_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_lt(@extschema@.kms_ore_term, @extschema@.kms_ore_term) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_ore_term_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_le(@extschema@.kms_ore_term, @extschema@.kms_ore_term) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_ore_term_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_eq(@extschema@.kms_ore_term, @extschema@.kms_ore_term) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_ore_term_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_ne(@extschema@.kms_ore_term, @extschema@.kms_ore_term) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_ore_term_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_ge(@extschema@.kms_ore_term, @extschema@.kms_ore_term) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_ore_term_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore_term_gt(@extschema@.kms_ore_term, @extschema@.kms_ore_term) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_ore_term_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR @extschema@.< (LEFTARG = @extschema@.kms_ore_term, RIGHTARG = @extschema@.kms_ore_term,
    FUNCTION = @extschema@.kms_ore_term_lt, COMMUTATOR = >, NEGATOR = >=,
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR @extschema@.<= (LEFTARG = @extschema@.kms_ore_term, RIGHTARG = @extschema@.kms_ore_term,
    FUNCTION = @extschema@.kms_ore_term_le, COMMUTATOR = >=, NEGATOR = >,
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR @extschema@.= (LEFTARG = @extschema@.kms_ore_term, RIGHTARG = @extschema@.kms_ore_term,
    FUNCTION = @extschema@.kms_ore_term_eq, COMMUTATOR = =, NEGATOR = <>,
    RESTRICT = eqsel, JOIN = eqjoinsel, MERGES);
CREATE OPERATOR @extschema@.<> (LEFTARG = @extschema@.kms_ore_term, RIGHTARG = @extschema@.kms_ore_term,
    FUNCTION = @extschema@.kms_ore_term_ne, COMMUTATOR = <>, NEGATOR = =,
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR @extschema@.>= (LEFTARG = @extschema@.kms_ore_term, RIGHTARG = @extschema@.kms_ore_term,
    FUNCTION = @extschema@.kms_ore_term_ge, COMMUTATOR = <=, NEGATOR = <,
    RESTRICT = scalargesel, JOIN = scalargejoinsel);
CREATE OPERATOR @extschema@.> (LEFTARG = @extschema@.kms_ore_term, RIGHTARG = @extschema@.kms_ore_term,
    FUNCTION = @extschema@.kms_ore_term_gt, COMMUTATOR = <, NEGATOR = <=,
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);

CREATE OPERATOR CLASS @extschema@.kms_ore_term_ops DEFAULT FOR TYPE @extschema@.kms_ore_term USING btree AS
    OPERATOR 1 @extschema@.<, OPERATOR 2 @extschema@.<=, OPERATOR 3 @extschema@.=,
    OPERATOR 4 @extschema@.>=, OPERATOR 5 @extschema@.>,
    FUNCTION 1 @extschema@.kms_ore_term_cmp(@extschema@.kms_ore_term, @extschema@.kms_ore_term);

-- IMMUTABLE: reads the term the value carries, no key; index builds, REINDEX,
-- restores and replicas need no KMS (as kms_blind_index(enc_text)).
CREATE FUNCTION @extschema@.kms_ore(value @extschema@.enc_text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_ore(@extschema@.enc_text) IS 'the order-revealing term a value carries (NULL without one); needs no key';

-- STABLE: depends on the key's index key.  int4 and int2 probe int8 columns.
CREATE FUNCTION @extschema@.kms_ore(value int8, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value int4, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value numeric, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value date, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value timestamptz, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- ---------------------------------------------------------------- named blind indexes
-- IMMUTABLE: the named tag a value carries, no key.
CREATE FUNCTION @extschema@.kms_blind_tag(value @extschema@.enc_text, index_name text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_tag_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_tag(@extschema@.enc_text, text) IS 'the tag of a named blind index a value carries (NULL without one); needs no key';
-- STABLE: depends on the key's index key.
CREATE FUNCTION @extschema@.kms_blind_tag(plaintext text, key_name text, index_name text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_tag_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_blind_tag(plaintext bytea, key_name text, index_name text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_tag_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_tag(text, text, text) IS 'the probe of a named blind index for a lookup';
COMMENT ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text) IS 'the probe of a named blind index for a lookup of bytea values';

-- ---------------------------------------------------------------- comments and grants
COMMENT ON FUNCTION @extschema@.kms_encrypt(int8, text) IS 'encrypt an int8 (the type is recorded in the value)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(int8, text, text) IS 'encrypt an int8, binding a context (AAD)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(numeric, text) IS 'encrypt a numeric (its text form, scale kept)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(numeric, text, text) IS 'encrypt a numeric, binding a context (AAD)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(date, text) IS 'encrypt a date';
COMMENT ON FUNCTION @extschema@.kms_encrypt(date, text, text) IS 'encrypt a date, binding a context (AAD)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(timestamptz, text) IS 'encrypt a timestamptz';
COMMENT ON FUNCTION @extschema@.kms_encrypt(timestamptz, text, text) IS 'encrypt a timestamptz, binding a context (AAD)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(bytea, text) IS 'encrypt a bytea';
COMMENT ON FUNCTION @extschema@.kms_encrypt(bytea, text, text) IS 'encrypt a bytea, binding a context (AAD)';
COMMENT ON FUNCTION @extschema@.kms_decrypt_int8(@extschema@.enc_text) IS 'decrypt a value encrypted from int8';
COMMENT ON FUNCTION @extschema@.kms_decrypt_int8(@extschema@.enc_text, text) IS 'decrypt a value encrypted from int8 with a context';
COMMENT ON FUNCTION @extschema@.kms_decrypt_numeric(@extschema@.enc_text) IS 'decrypt a value encrypted from numeric';
COMMENT ON FUNCTION @extschema@.kms_decrypt_numeric(@extschema@.enc_text, text) IS 'decrypt a value encrypted from numeric with a context';
COMMENT ON FUNCTION @extschema@.kms_decrypt_date(@extschema@.enc_text) IS 'decrypt a value encrypted from date';
COMMENT ON FUNCTION @extschema@.kms_decrypt_date(@extschema@.enc_text, text) IS 'decrypt a value encrypted from date with a context';
COMMENT ON FUNCTION @extschema@.kms_decrypt_timestamptz(@extschema@.enc_text) IS 'decrypt a value encrypted from timestamptz';
COMMENT ON FUNCTION @extschema@.kms_decrypt_timestamptz(@extschema@.enc_text, text) IS 'decrypt a value encrypted from timestamptz with a context';
COMMENT ON FUNCTION @extschema@.kms_decrypt_bytea(@extschema@.enc_text) IS 'decrypt a value encrypted from bytea';
COMMENT ON FUNCTION @extschema@.kms_decrypt_bytea(@extschema@.enc_text, text) IS 'decrypt a value encrypted from bytea with a context';
COMMENT ON FUNCTION @extschema@.kms_ore(int8, text) IS 'the order-revealing probe of an int8 (range and ORDER BY)';
COMMENT ON FUNCTION @extschema@.kms_ore(int4, text) IS 'the order-revealing probe of an int4, for int8 columns';
COMMENT ON FUNCTION @extschema@.kms_ore(numeric, text) IS 'the order-revealing probe of a numeric';
COMMENT ON FUNCTION @extschema@.kms_ore(date, text) IS 'the order-revealing probe of a date';
COMMENT ON FUNCTION @extschema@.kms_ore(timestamptz, text) IS 'the order-revealing probe of a timestamptz';

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['int8', 'numeric', 'date', 'timestamptz', 'bytea'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_encrypt(%s, text) FROM PUBLIC', t);
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_encrypt(%s, text, text) FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_encrypt(%s, text) TO pgcrypt_kms_encrypt', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_encrypt(%s, text, text) TO pgcrypt_kms_encrypt', t);
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_decrypt_%s(@extschema@.enc_text) FROM PUBLIC', t);
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_decrypt_%s(@extschema@.enc_text, text) FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_decrypt_%s(@extschema@.enc_text) TO pgcrypt_kms_decrypt', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_decrypt_%s(@extschema@.enc_text, text) TO pgcrypt_kms_decrypt', t);
    END LOOP;
    -- probes: whoever encrypts or decrypts may compute them (as kms_blind_index(text, key))
    FOREACH t IN ARRAY ARRAY['int8', 'int4', 'numeric', 'date', 'timestamptz'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_ore(%s, text) FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_ore(%s, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt', t);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_tag(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_tag(text, text, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
-- ================================================================ end of issue 14

-- ---------------------------------------------------------------- the shared key cache (issue 13)
-- Cluster-wide counters of the shared key cache (pgcrypt_kms.shared_cache_size)
-- and of every KMS call, with latency percentiles by operation.  Counts only,
-- never key material; enabled is false (and the counters NULL) without the
-- shared cache.  VOLATILE (counters move), PARALLEL SAFE (shared memory only).
CREATE FUNCTION @extschema@.kms_shared_cache_stats(
        OUT enabled bool, OUT entries int4, OUT cached int4,
        OUT hits int8, OUT misses int8, OUT unwraps int8, OUT waits int8,
        OUT refreshes int8, OUT refresh_failures int8, OUT failures int8,
        OUT evictions int8, OUT expirations int8, OUT invalidated int8,
        OUT kms_by_operation jsonb)
    AS 'MODULE_PATHNAME', 'pgck_kms_shared_cache_stats' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_shared_cache_stats() IS 'the cluster''s shared key cache and KMS call counters, latency percentiles by operation';
REVOKE ALL ON FUNCTION @extschema@.kms_shared_cache_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_shared_cache_stats() TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;

COMMENT ON FUNCTION @extschema@.kms_flush_cache() IS 'wipe every unwrapped key cached by this backend; for pgcrypt_kms_admin, also the shared key cache and, at their next statement, every backend''s';

-- Unwrap ahead of a scan the key versions a column's values name: concurrently
-- into the shared key cache (pgcrypt_kms.unwrap_concurrency), else into this
-- backend's cache.  Reads the table as the caller.  PARALLEL UNSAFE: it may
-- start background workers and waits for them.
CREATE FUNCTION @extschema@.kms_warm_cache(tbl regclass, col name) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_warm_cache' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_warm_cache(regclass, name) IS 'unwrap ahead of use the key versions an enc_text column names (concurrently, with the shared key cache); returns how many it unwrapped';
REVOKE ALL ON FUNCTION @extschema@.kms_warm_cache(regclass, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_warm_cache(regclass, name) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
