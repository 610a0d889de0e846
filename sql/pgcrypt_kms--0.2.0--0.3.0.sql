/* pgcrypt_kms 0.2.0 -> 0.3.0 (ALTER EXTENSION pgcrypt_kms UPDATE; CREATE EXTENSION runs 0.1.0, 0.1.0--0.2.0 and then this) */
\echo Use "ALTER EXTENSION pgcrypt_kms UPDATE" to load this file. \quit

-- ================================================================ the roles are the extension's
-- The three roles are cluster-wide: CREATE EXTENSION takes them over when they
-- exist (another database's extension made them, or someone else did first).
-- Since PostgreSQL 16 whoever creates a role keeps ADMIN OPTION on it, so a
-- CREATEROLE user who made pgcrypt_kms_decrypt ahead of the extension could
-- grant decryption to anyone afterwards.  Refuse a role that can log in or is
-- a superuser, and ADMIN OPTION on one held by a role that is not a superuser
-- (the extension grants none), at CREATE EXTENSION and at this update.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT a.rolname FROM pg_catalog.pg_roles a
              WHERE a.rolname OPERATOR(pg_catalog.=) ANY ('{pgcrypt_kms_admin,pgcrypt_kms_encrypt,pgcrypt_kms_decrypt}'::pg_catalog.name[])
                AND (a.rolcanlogin OR a.rolsuper)
              ORDER BY a.rolname LOOP
        RAISE EXCEPTION 'role "%" can log in or is a superuser', r.rolname
            USING ERRCODE = '42501',
                  DETAIL = 'pgcrypt_kms grants its privileges to this role; the extension creates it NOLOGIN, so someone else made or changed it.',
                  HINT = 'Find out who did (ALTER ROLE ... NOLOGIN NOSUPERUSER, or drop it if it is not the extension''s), then try again.';
    END LOOP;
    FOR r IN SELECT g.rolname AS granted, m.rolname AS member
               FROM pg_catalog.pg_auth_members am
               JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) am.roleid
               JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) am.member
              WHERE g.rolname OPERATOR(pg_catalog.=) ANY ('{pgcrypt_kms_admin,pgcrypt_kms_encrypt,pgcrypt_kms_decrypt}'::pg_catalog.name[])
                AND am.admin_option AND NOT m.rolsuper
              ORDER BY 1, 2 LOOP
        RAISE EXCEPTION 'role "%" holds ADMIN OPTION on role "%"', r.member, r.granted
            USING ERRCODE = '42501',
                  DETAIL = 'It can grant that role, and with it what pgcrypt_kms allows the role, to any other role. On PostgreSQL 16 and later a role''s creator holds ADMIN OPTION on it: a role made ahead of the extension is not the extension''s.',
                  HINT = 'REVOKE ADMIN OPTION FOR the role FROM that member (or drop a role made ahead of the extension), then try again.';
    END LOOP;
END
$$;

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

-- The rotation kms_add_index makes, in the extension's own schema: a SECURITY
-- DEFINER body never calls anything by @extschema@'s name, which the owner of
-- that schema (on PostgreSQL 15 the owner of public is the database owner) can
-- rename, and plant a function under the old name that then runs as the
-- extension's owner (an outside review of the extension's lifecycle,
-- 2026-12-05, made a database owner superuser through kms_add_index that way).
-- Only the installing superuser owns pgcrypt_kms, and no other schema can take
-- its name.
CREATE FUNCTION pgcrypt_kms.rotate_key(name text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_rotate_key' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION pgcrypt_kms.rotate_key(text) FROM PUBLIC;
COMMENT ON FUNCTION pgcrypt_kms.rotate_key(text) IS 'kms_rotate_key for the extension''s own SECURITY DEFINER code (kms_add_index); EXECUTE for its owner only';

-- kms_add_index(key, index_name, transform, index_bits): SECURITY DEFINER to
-- write the table; EXECUTE only for the admin role.  Values written before get
-- the index when re-encrypted (kms_reencrypt, kms_reencrypt_table): the key
-- gets a new data key version, as kms_rotate_index_key gives it, so that every
-- value written before is off the current version and kms_reencrypt_table
-- (which re-encrypts exactly those) re-tags it.
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
    -- the key's row locked first: two transactions adding an index each must not both count
    -- the same indexes and together pass the limit below (an outside review of 2026-12-05
    -- committed a 17th that way, after which the key could not encrypt)
    SELECT k.blind_index INTO bi FROM pgcrypt_kms.keys k
     WHERE k.key_name = kms_add_index.key_name AND k.destroyed IS NULL FOR UPDATE;
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
    -- Not when the active version was made by this transaction (now() is its
    -- start; kms_create_key(..., order_index => true)): no other transaction
    -- can have written under it.  Nor without an active version: the admin
    -- made every version decrypt-only, and rotating would undo that.
    IF EXISTS (SELECT FROM pgcrypt_kms.key_versions v
                WHERE v.key_name = kms_add_index.key_name AND v.state = 'active'
                  AND v.created < now()) THEN
        PERFORM pgcrypt_kms.rotate_key(kms_add_index.key_name);
    END IF;
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
-- int4 and int2 are recorded as int8 (kms_decrypt_int8 reads them back), so
-- that kms_encrypt(42, key) and an integer or smallint column resolve to one
-- function: with only int8 and numeric, PostgreSQL finds them equally good.
CREATE FUNCTION @extschema@.kms_encrypt(plaintext int4, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext int4, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext int2, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_typed' LANGUAGE C VOLATILE PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext int2, key_name text, context text) RETURNS @extschema@.enc_text
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
CREATE FUNCTION @extschema@.kms_ore(value int2, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value numeric, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value date, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value timestamptz, key_name text) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
-- previous => true: the probe under the previous index key during an index key
-- rotation (NULL when none is in progress), for ranges over values not yet
-- re-tagged: kms_ore(col) BETWEEN kms_ore(a, k) AND kms_ore(b, k)
--         OR kms_ore(col) BETWEEN kms_ore(a, k, true) AND kms_ore(b, k, true)
CREATE FUNCTION @extschema@.kms_ore(value int8, key_name text, previous bool) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value int4, key_name text, previous bool) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value int2, key_name text, previous bool) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value numeric, key_name text, previous bool) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value date, key_name text, previous bool) RETURNS @extschema@.kms_ore_term
    AS 'MODULE_PATHNAME', 'pgck_kms_ore_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_ore(value timestamptz, key_name text, previous bool) RETURNS @extschema@.kms_ore_term
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
-- previous => true: the probe under the previous index key during an index key rotation
-- (NULL when none is in progress): tag = ANY (ARRAY[kms_blind_tag(v, k, i), kms_blind_tag(v, k, i, true)])
CREATE FUNCTION @extschema@.kms_blind_tag(plaintext text, key_name text, index_name text, previous bool) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_tag_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_blind_tag(plaintext bytea, key_name text, index_name text, previous bool) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_tag_probe' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_tag(text, text, text, bool) IS 'the probe of a named blind index under the previous index key during an index key rotation (NULL when none is in progress)';
COMMENT ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text, bool) IS 'the same for bytea plaintexts';
COMMENT ON FUNCTION @extschema@.kms_blind_tag(text, text, text) IS 'the probe of a named blind index for a lookup';
COMMENT ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text) IS 'the probe of a named blind index for a lookup of bytea values';

-- ---------------------------------------------------------------- comments and grants
COMMENT ON FUNCTION @extschema@.kms_encrypt(int8, text) IS 'encrypt an int8 (the type is recorded in the value)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(int8, text, text) IS 'encrypt an int8, binding a context (AAD)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(int4, text) IS 'encrypt an int4, recorded as an int8';
COMMENT ON FUNCTION @extschema@.kms_encrypt(int4, text, text) IS 'encrypt an int4 as an int8, binding a context (AAD)';
COMMENT ON FUNCTION @extschema@.kms_encrypt(int2, text) IS 'encrypt an int2, recorded as an int8';
COMMENT ON FUNCTION @extschema@.kms_encrypt(int2, text, text) IS 'encrypt an int2 as an int8, binding a context (AAD)';
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
COMMENT ON FUNCTION @extschema@.kms_ore(int2, text) IS 'the order-revealing probe of an int2, for int8 columns';
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
    FOREACH t IN ARRAY ARRAY['int4', 'int2'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_encrypt(%s, text) FROM PUBLIC', t);
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_encrypt(%s, text, text) FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_encrypt(%s, text) TO pgcrypt_kms_encrypt', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_encrypt(%s, text, text) TO pgcrypt_kms_encrypt', t);
    END LOOP;
    -- probes: whoever encrypts or decrypts may compute them (as kms_blind_index(text, key))
    FOREACH t IN ARRAY ARRAY['int8', 'int4', 'int2', 'numeric', 'date', 'timestamptz'] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_ore(%s, text) FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_ore(%s, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt', t);
        EXECUTE format('REVOKE ALL ON FUNCTION @extschema@.kms_ore(%s, text, bool) FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION @extschema@.kms_ore(%s, text, bool) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt', t);
        EXECUTE format('COMMENT ON FUNCTION @extschema@.kms_ore(%s, text, bool) IS %L', t,
                       'the probe under the previous index key during an index key rotation (NULL when none is in progress)');
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_tag(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_tag(text, text, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_tag(text, text, text, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text, bool) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_tag(text, text, text, bool) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_tag(bytea, text, text, bool) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
-- ================================================================ end of issue 14

------------------------------------------------------------------ Citus (issue 17)
-- One keyring for a Citus cluster: every node keeps the keyring tables as
-- local tables (a shard query reads its own node's copy); the coordinator
-- is the only writer, and its row triggers send each change, with its
-- version id, to every worker inside the same distributed transaction
-- (Citus's two-phase commit).  On a worker, a change that does not come
-- from the coordinator is refused.  Without Citus these triggers do nothing.
CREATE FUNCTION pgcrypt_kms.citus_node_role() RETURNS text
    AS 'MODULE_PATHNAME', 'pgck_citus_node_role' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION pgcrypt_kms.citus_node_role() IS 'none, coordinator or worker: this node''s part in a Citus cluster';
REVOKE ALL ON FUNCTION pgcrypt_kms.citus_node_role() FROM PUBLIC;
CREATE FUNCTION pgcrypt_kms.citus_send(command text) RETURNS void
    AS 'MODULE_PATHNAME', 'pgck_citus_send' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION pgcrypt_kms.citus_send(text) IS 'run a keyring statement on every Citus worker in this transaction (two-phase commit)';
REVOKE ALL ON FUNCTION pgcrypt_kms.citus_send(text) FROM PUBLIC;

-- Citus sends a statement only to active nodes (and, through the function
-- src/citus.c calls on PostgreSQL 15, SendCommandToWorkersWithMetadata, only
-- to those with metadata): a disabled worker, one added with
-- citus_add_inactive_node, or one after stop_metadata_sync_to_node would miss
-- a keyring change, or kms_citus_sync's copy, silently and, once it takes part
-- again, keep its old keyring (say, a destroyed key's version).  The ROW SHARE
-- lock, held to the end of the transaction, makes citus_disable_node and
-- stop_metadata_sync_to_node (both take pg_dist_node EXCLUSIVE) wait until the
-- change is sent and committed, so no worker drops out between this check and
-- the send.  Called on the coordinator only: the callers test the node's role
-- first, in a statement of its own, because pg_dist_node exists only with
-- Citus and PL/pgSQL parses a whole condition before evaluating any of it.
CREATE FUNCTION pgcrypt_kms.citus_refuse_inactive(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    LOCK TABLE pg_catalog.pg_dist_node IN ROW SHARE MODE;
    IF EXISTS (SELECT FROM pg_catalog.pg_dist_node
                WHERE NOT (isactive AND hasmetadata) AND noderole OPERATOR(pg_catalog.=) 'primary'
                  AND groupid OPERATOR(pg_catalog.<>) 0) THEN
        RAISE EXCEPTION '% is refused while a Citus worker is inactive or has no metadata', what
            USING ERRCODE = '55000',
                  DETAIL = 'Citus sends keyring changes only to active workers with metadata: such a worker would keep its old keyring (or none) once it takes part again.',
                  HINT = pg_catalog.format('Activate the worker (citus_activate_node) or sync its metadata (start_metadata_sync_to_node), or remove it (citus_remove_node); then run the %s again. A worker added inactive needs kms_citus_sync() once it is active.', what);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.citus_refuse_inactive(text) FROM PUBLIC;

CREATE FUNCTION pgcrypt_kms.citus_keyring_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF pgcrypt_kms.citus_node_role() OPERATOR(pg_catalog.=) 'worker'
       AND pg_catalog.current_setting('pgcrypt_kms.citus_applying', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'key administration is refused on a Citus worker'
            USING ERRCODE = '55000',
                  DETAIL = 'A worker''s keyring is a copy of the coordinator''s, changed only by the coordinator.',
                  HINT = 'Run key administration on the coordinator; it reaches every worker in the same transaction.';
    END IF;
    -- once per statement, before anything is changed or sent
    IF pgcrypt_kms.citus_node_role() OPERATOR(pg_catalog.=) 'coordinator' THEN
        PERFORM pgcrypt_kms.citus_refuse_inactive('key administration');
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.citus_keyring_guard() FROM PUBLIC;
CREATE TRIGGER citus_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_guard();
CREATE TRIGGER citus_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.key_versions
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_guard();
-- a key's order and named blind indexes (issue 14's table) are part of the keyring too
CREATE TRIGGER citus_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.key_indexes
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_guard();

-- A change travels as one statement (Citus sends it with the extended
-- protocol: one command each): a call of citus_apply on the worker, with
-- the row's new image as jsonb, inserted whole (its id included: version ids
-- are the coordinator's).  An UPDATE is a DELETE and an INSERT of the row, in
-- the coordinator's order, so every unique index holds on the workers as it
-- did there.
CREATE FUNCTION pgcrypt_kms.citus_apply(tbl text, old_key text, new_row jsonb, truncate bool DEFAULT false)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.set_config('pgcrypt_kms.citus_applying', 'on', true);
    IF tbl OPERATOR(pg_catalog.=) 'keys' THEN
        IF truncate THEN
            TRUNCATE pgcrypt_kms.keys;
        END IF;
        IF old_key IS NOT NULL THEN
            DELETE FROM pgcrypt_kms.keys WHERE key_name OPERATOR(pg_catalog.=) old_key;
        END IF;
        IF new_row IS NOT NULL THEN
            INSERT INTO pgcrypt_kms.keys SELECT * FROM pg_catalog.jsonb_populate_record(NULL::pgcrypt_kms.keys, new_row);
        END IF;
    ELSIF tbl OPERATOR(pg_catalog.=) 'key_versions' THEN
        IF truncate THEN
            TRUNCATE pgcrypt_kms.key_versions;
        END IF;
        IF old_key IS NOT NULL THEN
            DELETE FROM pgcrypt_kms.key_versions WHERE id OPERATOR(pg_catalog.=) old_key::int4;
        END IF;
        IF new_row IS NOT NULL THEN
            INSERT INTO pgcrypt_kms.key_versions SELECT * FROM pg_catalog.jsonb_populate_record(NULL::pgcrypt_kms.key_versions, new_row);
        END IF;
    ELSIF tbl OPERATOR(pg_catalog.=) 'key_indexes' THEN
        -- old_key: the primary key as a jsonb array [key_name, index_name]
        IF truncate THEN
            TRUNCATE pgcrypt_kms.key_indexes;
        END IF;
        IF old_key IS NOT NULL THEN
            DELETE FROM pgcrypt_kms.key_indexes
             WHERE key_name OPERATOR(pg_catalog.=) (old_key::jsonb OPERATOR(pg_catalog.->>) 0)
               AND index_name OPERATOR(pg_catalog.=) (old_key::jsonb OPERATOR(pg_catalog.->>) 1);
        END IF;
        IF new_row IS NOT NULL THEN
            INSERT INTO pgcrypt_kms.key_indexes SELECT * FROM pg_catalog.jsonb_populate_record(NULL::pgcrypt_kms.key_indexes, new_row);
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown keyring table' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_catalog.set_config('pgcrypt_kms.citus_applying', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.citus_apply(text, text, jsonb, bool) FROM PUBLIC;

-- the whole keyring at once (kms_citus_sync), the keys' order and named
-- blind indexes included
CREATE FUNCTION pgcrypt_kms.citus_apply_all(keys jsonb, versions jsonb, indexes jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.set_config('pgcrypt_kms.citus_applying', 'on', true);
    DELETE FROM pgcrypt_kms.key_indexes;
    DELETE FROM pgcrypt_kms.key_versions;
    DELETE FROM pgcrypt_kms.keys;
    INSERT INTO pgcrypt_kms.keys SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::pgcrypt_kms.keys, keys);
    INSERT INTO pgcrypt_kms.key_versions SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::pgcrypt_kms.key_versions, versions);
    INSERT INTO pgcrypt_kms.key_indexes SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::pgcrypt_kms.key_indexes, indexes);
    PERFORM pg_catalog.set_config('pgcrypt_kms.citus_applying', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.citus_apply_all(jsonb, jsonb, jsonb) FROM PUBLIC;

CREATE FUNCTION pgcrypt_kms.citus_keyring_propagate() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old_key text;
    new_row jsonb;
BEGIN
    IF pgcrypt_kms.citus_node_role() OPERATOR(pg_catalog.<>) 'coordinator' THEN
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        PERFORM pgcrypt_kms.citus_send(pg_catalog.format('SELECT pgcrypt_kms.citus_apply(%L, NULL, NULL, true)', TG_TABLE_NAME));
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN
        IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'keys' THEN
            old_key := OLD.key_name;
        ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'key_indexes' THEN
            old_key := pg_catalog.jsonb_build_array(OLD.key_name, OLD.index_name)::text;
        ELSE
            old_key := OLD.id::text;
        END IF;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
        new_row := pg_catalog.to_jsonb(NEW);
    END IF;
    PERFORM pgcrypt_kms.citus_send(pg_catalog.format('SELECT pgcrypt_kms.citus_apply(%L, %L, %L)',
                                                     TG_TABLE_NAME, old_key, new_row));
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.citus_keyring_propagate() FROM PUBLIC;
CREATE TRIGGER citus_propagate AFTER INSERT OR UPDATE OR DELETE ON pgcrypt_kms.keys
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.citus_keyring_propagate();
CREATE TRIGGER citus_propagate_truncate AFTER TRUNCATE ON pgcrypt_kms.keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_propagate();
CREATE TRIGGER citus_propagate AFTER INSERT OR UPDATE OR DELETE ON pgcrypt_kms.key_versions
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.citus_keyring_propagate();
CREATE TRIGGER citus_propagate_truncate AFTER TRUNCATE ON pgcrypt_kms.key_versions
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_propagate();
CREATE TRIGGER citus_propagate AFTER INSERT OR UPDATE OR DELETE ON pgcrypt_kms.key_indexes
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.citus_keyring_propagate();
CREATE TRIGGER citus_propagate_truncate AFTER TRUNCATE ON pgcrypt_kms.key_indexes
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_propagate();

-- A worker added after keys exist gets the whole keyring (run after
-- citus_add_node; harmless to run again: every worker's copy is replaced).
CREATE FUNCTION @extschema@.kms_citus_sync() RETURNS int4 LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n int4;
BEGIN
    IF pgcrypt_kms.citus_node_role() OPERATOR(pg_catalog.<>) 'coordinator' THEN
        RAISE EXCEPTION 'kms_citus_sync() runs on a Citus coordinator'
            USING ERRCODE = '55000';
    END IF;
    -- a disabled worker would be skipped, and keep its old keyring once activated
    PERFORM pgcrypt_kms.citus_refuse_inactive('kms_citus_sync()');
    -- no key administration between the copy and its commit
    LOCK TABLE pgcrypt_kms.keys, pgcrypt_kms.key_versions, pgcrypt_kms.key_indexes IN EXCLUSIVE MODE;
    SELECT pg_catalog.count(*) INTO n FROM pgcrypt_kms.key_versions;
    PERFORM pgcrypt_kms.citus_send(pg_catalog.format('SELECT pgcrypt_kms.citus_apply_all(%L, %L, %L)',
        (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(k)), '[]') FROM pgcrypt_kms.keys k),
        (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), '[]') FROM pgcrypt_kms.key_versions v),
        (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(i)), '[]') FROM pgcrypt_kms.key_indexes i)));
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.kms_citus_sync() IS 'Citus: copy the coordinator''s whole keyring to every worker (after citus_add_node); returns the number of key versions';
REVOKE ALL ON FUNCTION @extschema@.kms_citus_sync() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_citus_sync() TO pgcrypt_kms_admin;

-- Re-encryption and the decryption drill of a Citus table, placement by
-- placement: each worker runs kms_reencrypt_table / kms_verify on its own
-- shard tables with its own keyring and KMS access (a distributed UPDATE may
-- not call kms_reencrypt, and FOR UPDATE does not cross shards).  Each
-- placement commits on its own, as kms_reencrypt_table's batches do; run it
-- again to finish after an interruption.  A reference table's copies are
-- each re-encrypted (and verified) on their own node.
CREATE PROCEDURE @extschema@.kms_citus_reencrypt_table(tbl regclass, col name,
        batch int4 DEFAULT 10000, context text DEFAULT NULL)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    failures text;
BEGIN
    -- (the caller may not use schema pgcrypt_kms: no citus_node_role() here)
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'Citus is not in use in this database' USING ERRCODE = '55000';
    END IF;
    IF tbl IS NULL OR col IS NULL OR batch IS NULL THEN
        RAISE EXCEPTION 'the table, column and batch must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) tbl) THEN
        RAISE EXCEPTION '% is not a Citus table', tbl USING ERRCODE = '22023',
            HINT = 'Use kms_reencrypt_table for a local table.';
    END IF;
    SELECT pg_catalog.string_agg(r.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) r.nodeport
                                 OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) r.result, '; ')
      INTO failures
      FROM pg_catalog.run_command_on_placements(tbl,
               pg_catalog.format('CALL @extschema@.kms_reencrypt_table(%%L, %L, %s, %L)',
                                 col, batch, context)) r
     WHERE NOT r.success;
    IF failures IS NOT NULL THEN
        RAISE EXCEPTION 'the re-encryption of %.% failed on some placements', tbl, col
            USING ERRCODE = '55000', DETAIL = failures,
                  HINT = 'The other placements are done; call the procedure again once the cause is fixed.';
    END IF;
END
$$;
COMMENT ON PROCEDURE @extschema@.kms_citus_reencrypt_table(regclass, name, int4, text) IS 'Citus: kms_reencrypt_table on every placement of a distributed or reference table, run by the worker that holds it';
REVOKE ALL ON PROCEDURE @extschema@.kms_citus_reencrypt_table(regclass, name, int4, text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.kms_citus_reencrypt_table(regclass, name, int4, text) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt;

CREATE FUNCTION @extschema@.kms_citus_verify(tbl regclass, col name, context text DEFAULT NULL,
        OUT key_name text, OUT version int4, OUT version_id int4,
        OUT decrypted int8, OUT failed int8, OUT error text)
    RETURNS SETOF record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    failures text[];
    results text[];
BEGIN
    -- (the caller may not use schema pgcrypt_kms: no citus_node_role() here)
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'Citus is not in use in this database' USING ERRCODE = '55000';
    END IF;
    IF tbl IS NULL OR col IS NULL THEN
        RAISE EXCEPTION 'the table and column must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) tbl) THEN
        RAISE EXCEPTION '% is not a Citus table', tbl USING ERRCODE = '22023',
            HINT = 'Use kms_verify for a local table.';
    END IF;
    SELECT pg_catalog.array_agg(r.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) r.nodeport
                                OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) r.result) FILTER (WHERE NOT r.success),
           pg_catalog.array_agg(r.result) FILTER (WHERE r.success)
      INTO failures, results
      FROM pg_catalog.run_command_on_placements(tbl,
               pg_catalog.format('SELECT COALESCE(pg_catalog.json_agg(v), ''[]'') FROM @extschema@.kms_verify(%%L, %L, %L) v',
                                 col, context)) r;
    IF failures IS NOT NULL THEN
        RAISE EXCEPTION 'kms_verify of %.% failed on some placements', tbl, col
            USING ERRCODE = '55000', DETAIL = pg_catalog.array_to_string(failures, '; ');
    END IF;
    RETURN QUERY
      SELECT e.key_name, e.version, e.version_id, pg_catalog.sum(e.decrypted)::int8, pg_catalog.sum(e.failed)::int8,
             pg_catalog.min(e.error)
        FROM pg_catalog.unnest(results) AS r(result),
             pg_catalog.json_to_recordset(r.result::json)
               AS e(key_name text, version int4, version_id int4, decrypted int8, failed int8, error text)
       GROUP BY 1, 2, 3 ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION @extschema@.kms_citus_verify(regclass, name, text) IS 'Citus: kms_verify on every placement of a distributed or reference table, summed per key version (a reference table counts once per copy)';
REVOKE ALL ON FUNCTION @extschema@.kms_citus_verify(regclass, name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_citus_verify(regclass, name, text) TO pgcrypt_kms_decrypt;

-- kms_reencrypt_table on a Citus table works placement by placement (the
-- branch at the top of the loop), and otherwise leaf by leaf with a batch
-- retried on a concurrent update (audit F3).
CREATE OR REPLACE PROCEDURE @extschema@.kms_reencrypt_table(tbl regclass, col name,
        batch int4 DEFAULT 10000, context text DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    current_ids int4[];
    n bigint;
    moved bigint;
    total bigint := 0;
    tree pg_catalog.oid[];
    -- (the casts make every call below an exact match of the extension's own
    -- function: an overload for a domain over enc_text, or for the context
    -- expression's type, that another role adds to the extension's schema
    -- never runs)
    ctx_expr text := CASE WHEN context IS NULL THEN ''
                     ELSE ', (' OPERATOR(pg_catalog.||) context OPERATOR(pg_catalog.||) ')::pg_catalog.text' END;
BEGIN
    IF tbl IS NULL OR col IS NULL THEN
        RAISE EXCEPTION 'the table and column must not be null' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) tbl::pg_catalog.oid) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::pg_catalog.oid USING ERRCODE = '42P01';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) col
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl USING ERRCODE = '42703';
    END IF;
    -- The UPDATEs below run the table owner's code with the caller's
    -- privileges: triggers (also on partitions and inheritance children),
    -- rules, index expressions and predicates, CHECK constraints, generated
    -- columns, row security policies.  Only the owner itself may run it (of
    -- the table and of every partition and inheritance child): an owner's
    -- code must never run as the admin or a superuser doing maintenance for
    -- them, nor as another member of the owner's role (on PostgreSQL 15 and
    -- before a login role can make any role a member of itself).  They SET
    -- ROLE to the owner first, as REINDEX runs the owner's code as the owner.
    -- The table, its partitions and inheritance children, read once: the
    -- owner check, the foreign-table warning and the batches use this list.
    tree := ARRAY(WITH RECURSIVE t(oid) AS (
                      SELECT tbl::pg_catalog.oid
                      UNION
                      SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN t
                          ON i.inhparent OPERATOR(pg_catalog.=) t.oid)
                  SELECT t.oid FROM t);
    IF EXISTS (SELECT FROM pg_catalog.unnest(tree) t(oid)
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.oid
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
                WHERE r.rolname IS NULL OR NOT (r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)) THEN
        RAISE EXCEPTION 'must be the owner of table % (and of its partitions and inheritance children) to re-encrypt it', tbl
            USING ERRCODE = '42501',
                  DETAIL = 'The table''s triggers, rules, index expressions, constraints and policies would run with your privileges.',
                  HINT = 'SET ROLE to the table''s owner (a superuser or a member of its role may), which needs the pgcrypt_kms_encrypt role, and call kms_reencrypt_table again.';
    END IF;
    IF batch IS NULL OR batch OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch must be at least 1' USING ERRCODE = '22023';
    END IF;
    -- Citus (issue 17): a distributed or reference table, placement by placement
    IF EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) tbl) THEN
            CALL @extschema@.kms_citus_reencrypt_table(tbl, col, batch, context);
            RETURN;
        END IF;
    END IF;
    DECLARE
        leaves pg_catalog.regclass[];
        leaf pg_catalog.regclass;
        cur int8;
        retries int4;
        done bool;
    BEGIN
        -- Leaf by leaf (audit F3): each batch locks and updates rows of one heap
        -- (ONLY), so it is at most "batch" rows (on a partitioned parent
        -- "ctid = ANY" also matched the rows with the same ctids in every other
        -- partition), and a batch that fails on a concurrent update -- a row
        -- moved to another partition (40001: READ COMMITTED cannot follow it) or
        -- a deadlock -- is retried, halved, up to 10 times in a row; what was
        -- committed before it stays.
        SELECT pg_catalog.array_agg(c.oid::pg_catalog.regclass ORDER BY c.oid) INTO leaves
          FROM pg_catalog.unnest(tree) t(oid)
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.oid
         WHERE c.relkind OPERATOR(pg_catalog.=) 'r'
            -- (a view or a foreign table given itself keeps PostgreSQL's own error)
            OR (c.oid OPERATOR(pg_catalog.=) tbl::pg_catalog.oid AND NOT c.relkind OPERATOR(pg_catalog.=) 'p');
        IF EXISTS (SELECT FROM pg_catalog.unnest(tree) t(oid)
                     JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.oid
                    WHERE c.relkind OPERATOR(pg_catalog.=) 'f') THEN
            RAISE WARNING 'kms_reencrypt_table: the foreign tables among the partitions or children of % are not re-encrypted', tbl
                USING HINT = 'Re-encrypt their rows on the server that holds them.';
        END IF;
        FOREACH leaf IN ARRAY COALESCE(leaves, '{}') LOOP
            cur := batch;
            retries := 0;
            LOOP
                SELECT pg_catalog.array_agg(version_id) INTO current_ids
                  FROM @extschema@.kms_keys WHERE current;
                done := false;
                BEGIN
                    EXECUTE pg_catalog.format(
                        'WITH sel AS MATERIALIZED ('
                        '  SELECT ctid AS tid, @extschema@.kms_version_id(%I::@extschema@.enc_text) AS old_id FROM ONLY %s WHERE %I IS NOT NULL'
                        '     AND NOT (@extschema@.kms_version_id(%I::@extschema@.enc_text) OPERATOR(pg_catalog.=) ANY ($1))'
                        '   LIMIT $2 FOR UPDATE),'
                        ' upd AS ('
                        '  UPDATE ONLY %s SET %I = @extschema@.kms_reencrypt(%I::@extschema@.enc_text%s)'
                        '   WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT tid FROM sel))'
                        '  RETURNING @extschema@.kms_version_id(%I::@extschema@.enc_text) AS new_id)'
                        ' SELECT pg_catalog.count(*),'
                        '        pg_catalog.count(*) FILTER (WHERE new_id IS NULL OR NOT (new_id OPERATOR(pg_catalog.=) ANY'
                        '                                    (ARRAY(SELECT old_id FROM sel))))'
                        '   FROM upd',
                        col, leaf, col, col, leaf, col, col, ctx_expr, col)
                      INTO n, moved
                      USING COALESCE(current_ids, '{}'), cur;
                    done := true;
                EXCEPTION WHEN serialization_failure OR deadlock_detected THEN
                    retries := retries OPERATOR(pg_catalog.+) 1;
                    IF retries OPERATOR(pg_catalog.>=) 10 THEN
                        RAISE EXCEPTION 'kms_reencrypt_table: a batch of %.% failed % times in a row on concurrent updates', tbl, col, retries
                            USING ERRCODE = '40001',
                                  DETAIL = pg_catalog.format('The last attempt: %s (SQLSTATE %s). The %s values re-encrypted before it are committed.',
                                                             SQLERRM, SQLSTATE, total),
                                  HINT = 'Rows moving between partitions, or a deadlock with the application, at this rate: call the procedure again (it resumes), at a quieter time or with a smaller batch.';
                    END IF;
                    RAISE NOTICE 'kms_reencrypt_table: a batch of %.% failed on a concurrent update (SQLSTATE %), retrying', tbl, col, SQLSTATE;
                    cur := pg_catalog.int8larger(1, cur OPERATOR(pg_catalog./) 2);
                END;
                IF done THEN
                    EXIT WHEN n OPERATOR(pg_catalog.=) 0;
                    IF moved OPERATOR(pg_catalog.=) 0 THEN
                        RAISE EXCEPTION 'could not move the values of %.% onto their keys'' current versions', tbl, col
                            USING ERRCODE = '55000',
                                  DETAIL = pg_catalog.format('A batch re-encrypted %s values and every one of them is still on the key version it had; %s values were re-encrypted before it.',
                                                             n, total),
                                  HINT = 'A trigger or rule on the table may be writing the old values back: disable it during the re-encryption and call the procedure again.';
                    END IF;
                    total := total OPERATOR(pg_catalog.+) n;
                    retries := 0;
                    cur := pg_catalog.int8smaller(batch, cur OPERATOR(pg_catalog.*) 2);
                    RAISE NOTICE 'kms_reencrypt_table: % rows of %.% re-encrypted so far', total, tbl, col;
                END IF;
                COMMIT;
            END LOOP;
        END LOOP;
    END;
END
$$;

-- F4: the plaintext an encrypting migration reads from the source column,
-- refused (22023) if it is already an enc_text value in its text form (an
-- application that wrote kms_encrypt(...) into the still-text column: the
-- assignment I/O cast stores the envelope's text, which encrypted again
-- would decrypt to "pgck:..." after the swap).  Used by the sync trigger,
-- the backfill and the swap's final check.
CREATE FUNCTION @extschema@.kms_migration_source(value text, col text) RETURNS text
    AS 'MODULE_PATHNAME', 'pgck_kms_migration_source' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_migration_source(text, text) IS 'internal, of kms_encrypt_column: the source value, refused if it is an enc_text value (never encrypted twice)';
REVOKE ALL ON FUNCTION @extschema@.kms_migration_source(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_migration_source(text, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;

-- The migration's sync trigger as in 0.2.0, but an encrypting migration
-- refuses a source value that is already encrypted (kms_migration_source).
CREATE OR REPLACE FUNCTION @extschema@.kms_migration_sync() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src text := TG_ARGV[0];
    dst text := TG_ARGV[1];
    new_row jsonb := to_jsonb(NEW);
    val text := new_row ->> src;
BEGIN
    IF TG_OP = 'UPDATE' AND new_row -> dst <> 'null'::jsonb
       AND (to_jsonb(OLD) -> src) IS NOT DISTINCT FROM (new_row -> src) THEN
        RETURN NEW;
    END IF;
    IF TG_ARGV[3] = 'encrypt' THEN
        NEW := jsonb_populate_record(NEW, jsonb_build_object(dst,
                   @extschema@.kms_encrypt(@extschema@.kms_migration_source(val, src), TG_ARGV[2])));
    ELSE
        NEW := jsonb_populate_record(NEW, jsonb_build_object(dst, @extschema@.kms_decrypt(val::@extschema@.enc_text)));
    END IF;
    RETURN NEW;
END
$$;

-- kms_migrate_column (the engine of kms_encrypt_column / kms_decrypt_column)
-- as in 0.2.0, but refused unless the caller is the table's owner itself (its
-- UPDATEs run the owner's code, see kms_reencrypt_table), and with every call
-- of the extension's functions on a user column an exact match of the
-- extension's own (cast to enc_text or text): an overload another role adds
-- to the extension's schema for a domain never runs.
CREATE OR REPLACE PROCEDURE @extschema@.kms_migrate_column(tbl regclass, col name, key text, mode text,
        batch int4, finish bool, purge bool)
LANGUAGE plpgsql AS $$
DECLARE
    -- no initialiser may call a function or operator by an unqualified name:
    -- they run before search_path is pinned (a caller's public.left(name, int4)
    -- would run as the caller of this procedure); these are set below
    shadow name;
    trig name;
    idx name;
    col_type oid;
    col_notnull bool;
    has_shadow bool;
    transform text;
    n bigint;
    total bigint := 0;
    blk bigint;
    maxblk bigint;
    step bigint;
    target text;
    expr text;
    tries int := 0;
    leaf regclass;
    leaves int;
    per_blk float8;
    rel_name name;
    rel_ns oid;
    base text;
    suffix text;
    k int;
    keep_q text;
    kept text;
    carry text[];
    stmt text;
    -- the table, its partitions and inheritance children: read at the start
    -- (the owner check, the first check of what the swap would drop), again
    -- after step 1 commits (the backfill) and under the swap's lock (a
    -- partition may have been attached meanwhile: the second check, the
    -- grants, the purge)
    tree_q text;
    tree oid[];
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF tbl IS NULL OR col IS NULL THEN
        RAISE EXCEPTION 'the table and column must not be null' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) tbl::pg_catalog.oid) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::pg_catalog.oid USING ERRCODE = '42P01';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) col
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl USING ERRCODE = '42703';
    END IF;
    -- Its UPDATEs run the table owner's code (triggers, also on partitions
    -- and inheritance children, rules, index expressions, constraints,
    -- policies) with the caller's privileges: as for kms_reencrypt_table,
    -- only the owner itself (of the table and of every partition and
    -- inheritance child), never a superuser or another member of its role.
    tree_q := 'SELECT ARRAY(WITH RECURSIVE t(oid) AS ('
              '    SELECT $1::pg_catalog.oid'
              '    UNION'
              '    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN t ON i.inhparent OPERATOR(pg_catalog.=) t.oid)'
              '  SELECT t.oid FROM t)';
    EXECUTE tree_q INTO tree USING tbl;
    IF EXISTS (SELECT FROM pg_catalog.unnest(tree) t(oid)
                 JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.oid
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
                WHERE r.rolname IS NULL OR NOT (r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)) THEN
        RAISE EXCEPTION 'must be the owner of table % (and of its partitions and inheritance children) to migrate its column', tbl
            USING ERRCODE = '42501',
                  DETAIL = 'The table''s triggers, rules, index expressions, constraints and policies would run with your privileges.',
                  HINT = 'SET ROLE to the table''s owner (a superuser or a member of its role may), which needs the extension''s role for the migration, and call the procedure again.';
    END IF;
    IF mode IS NULL OR mode NOT IN ('encrypt', 'decrypt') THEN
        RAISE EXCEPTION 'mode must be encrypt or decrypt' USING ERRCODE = '22023';
    END IF;
    IF finish IS NULL OR purge IS NULL THEN
        RAISE EXCEPTION 'finish and purge must not be null' USING ERRCODE = '22004';
    END IF;
    shadow := left(col, 40) || '_pgck_new';
    -- "~" sorts after every letter and digit: the sync trigger fires after the
    -- table's own BEFORE triggers and sees the value they leave
    trig := '~pgck_sync_' || left(col, 40);
    target := CASE WHEN mode = 'encrypt' THEN '@extschema@.enc_text' ELSE 'pg_catalog.text' END;
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'batch must be at least 1' USING ERRCODE = '22023';
    END IF;
    SELECT a.atttypid, a.attnotnull INTO col_type, col_notnull
      FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = col AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', col, tbl USING ERRCODE = '42703';
    END IF;
    has_shadow := EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = shadow AND NOT a.attisdropped);
    IF mode = 'encrypt' THEN
        -- through the kms_keys view: the caller holds a role of the extension,
        -- never privileges on the keyring schema
        SELECT k.blind_index INTO transform FROM @extschema@.kms_keys k
         WHERE k.key_name = key AND k.current;
        IF NOT FOUND THEN
            -- the name is not repeated: it may have been a value by mistake
            RAISE EXCEPTION 'the key name does not name a key with an active version in the keyring'
                USING ERRCODE = '42704';
        END IF;
        IF col_type = '@extschema@.enc_text'::regtype AND NOT has_shadow THEN
            RAISE NOTICE 'column % of % is already enc_text', col, tbl;
            RETURN;
        END IF;
        IF col_type NOT IN ('pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype, 'pg_catalog.bpchar'::regtype) THEN
            RAISE EXCEPTION 'column "%" of relation % is of type %, not text', col, tbl, col_type::regtype
                USING ERRCODE = '42804';
        END IF;
        -- never encrypts an enc_text value a second time (F4)
        expr := format('@extschema@.kms_encrypt(@extschema@.kms_migration_source(%I::pg_catalog.text, %L::pg_catalog.text), %L::pg_catalog.text)',
                       col, col, key);
    ELSE
        IF col_type <> '@extschema@.enc_text'::regtype THEN
            IF has_shadow THEN
                NULL;       -- resuming: the swap already happened? no: the shadow holds text
            ELSE
                RAISE NOTICE 'column % of % is not enc_text', col, tbl;
                RETURN;
            END IF;
        END IF;
        expr := format('@extschema@.kms_decrypt(%I::@extschema@.enc_text)', col);
    END IF;

    -- 0. what the swap's DROP COLUMN would drop with the old column and the
    -- new one cannot keep: CHECK constraints and foreign keys over it (also
    -- on other columns, from other tables, on partitions and children), its
    -- DEFAULT.  None can hold on the other type: refused here, before a long
    -- backfill, and again under the swap's lock, never silently dropped.
    keep_q := $q$
        WITH cols AS (
            SELECT a.attrelid, a.attnum, a.atthasdef, a.attgenerated FROM unnest($1::oid[]) t(oid) JOIN pg_attribute a
                ON a.attrelid = t.oid AND a.attname = $2 AND NOT a.attisdropped)
        SELECT string_agg(d, ', ' ORDER BY d) FROM (
            SELECT format('%s constraint %I on %s', CASE c.contype WHEN 'c' THEN 'check' ELSE 'foreign key' END,
                          c.conname, c.conrelid::regclass) AS d
              FROM cols JOIN pg_constraint c
                ON c.contype IN ('c', 'f') AND c.conislocal
               AND ((c.conrelid = cols.attrelid AND cols.attnum = ANY (c.conkey))
                    OR (c.contype = 'f' AND c.confrelid = cols.attrelid AND cols.attnum = ANY (c.confkey)))
            UNION
            SELECT format('the default of %s.%I', cols.attrelid::regclass, $2)
              FROM cols WHERE cols.atthasdef AND cols.attgenerated = '') s
        $q$;
    EXECUTE keep_q INTO kept USING tree, col;
    IF kept IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of relation % has constraints or a default that cannot hold on its new type', col, tbl
            USING ERRCODE = '55000',
                  DETAIL = format('The swap would drop them with the old column: %s.', kept),
                  HINT = 'Drop them (ALTER TABLE ... DROP CONSTRAINT, ALTER TABLE ... ALTER COLUMN ... DROP DEFAULT), enforce these rules in the application, and call the procedure again.';
    END IF;

    -- 1. shadow column, trigger, constraint, blind index.  The trigger fires
    -- on every INSERT and UPDATE (not only UPDATE OF the column: another
    -- trigger may change it), last, and also in replica mode (logical
    -- replication apply): 0.1.0's UPDATE OF trigger missed those and the swap
    -- kept a stale value.  A migration 0.1.0 started is given the new trigger.
    IF has_shadow THEN
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = left(col, 40) || '_pgck_sync') THEN
            EXECUTE format('DROP TRIGGER %I ON %s', left(col, 40) || '_pgck_sync', tbl);
        END IF;
        EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW '
                       'EXECUTE FUNCTION @extschema@.kms_migration_sync(%L, %L, %L, %L)',
                       trig, tbl, col, shadow, coalesce(key, ''), mode);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, trig);
    END IF;
    IF NOT has_shadow THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', tbl, shadow, target);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW '
                       'EXECUTE FUNCTION @extschema@.kms_migration_sync(%L, %L, %L, %L)',
                       trig, tbl, col, shadow, coalesce(key, ''), mode);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, trig);
        IF col_notnull THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID',
                           tbl, shadow || '_nn', shadow);
        END IF;
        IF mode = 'encrypt' AND transform <> 'none' THEN
            -- named <table>_<column>_bidx from the names themselves (never
            -- the qualified, quoted tbl::text: the schema made every name of
            -- it collide), clipped to fit in a name, with a number added
            -- while a relation of the schema already has the name
            SELECT c.relname, c.relnamespace INTO rel_name, rel_ns FROM pg_class c WHERE c.oid = tbl;
            k := 0;
            LOOP
                suffix := '_bidx' || CASE WHEN k > 0 THEN k::text ELSE '' END;
                base := left(rel_name, 20) || '_' || left(col, 20);
                WHILE octet_length(base || suffix) > current_setting('max_identifier_length')::int LOOP
                    base := left(base, -1);
                END LOOP;
                idx := base || suffix;
                EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = rel_ns AND c.relname = idx);
                k := k + 1;
            END LOOP;
            -- the shadow column is empty: one scan, no sort, then kept current by the backfill
            EXECUTE format('CREATE INDEX %I ON %s (@extschema@.kms_blind_index(%I::@extschema@.enc_text))', idx, tbl, shadow);
        END IF;
        RAISE NOTICE 'kms_migrate_column: % %.%: shadow column % and trigger % created', mode, tbl, col, shadow, trig;
    END IF;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- the tree again: step 1's ALTER TABLE may have waited for its lock while
    -- a partition was attached, and the backfill must cover it too
    EXECUTE tree_q INTO tree USING tbl;

    -- 2. backfill by block ranges (each committed), then catch up what moved
    DECLARE
        leaves regclass[];
        leaf regclass;
        lstep bigint;
        lmax bigint;
        cur bigint;
        retries int;
        done bool;
    BEGIN
        -- Leaf by leaf (audit F3): a batch is a block range of one heap (ONLY),
        -- sized from that heap's own density, so on a partitioned table it is
        -- about "batch" rows of one partition, not a block range of every one;
        -- and a batch that fails on a concurrent update -- a row moved to another
        -- partition (40001: READ COMMITTED cannot follow it) or a deadlock -- is
        -- retried, halved, up to 10 times in a row; what was committed stays.
        SELECT array_agg(c.oid::regclass ORDER BY c.oid) INTO leaves
          FROM unnest(tree) t(oid)
          JOIN pg_class c ON c.oid = t.oid
         WHERE c.relkind = 'r' OR (c.oid = tbl AND c.relkind <> 'p');
        FOREACH leaf IN ARRAY coalesce(leaves, '{}') LOOP
            SELECT CASE WHEN c.reltuples > 0 AND c.relpages > 0
                        THEN greatest(1, batch / greatest(1, (c.reltuples / c.relpages)::bigint)) END,
                   pg_catalog.pg_relation_size(leaf) / current_setting('block_size')::bigint
              INTO lstep, lmax FROM pg_class c WHERE c.oid = leaf;
            IF lstep IS NULL THEN
                -- never analyzed: the density of its first blocks
                EXECUTE format('SELECT count(*) FROM ONLY %s WHERE ctid < $1::tid', leaf)
                  INTO n USING format('(%s,0)', least(greatest(lmax, 1), 16))::tid;
                lstep := greatest(1, batch / greatest(1, n / least(greatest(lmax, 1), 16)));
            END IF;
            blk := 0;
            cur := lstep;
            retries := 0;
            WHILE blk <= lmax LOOP
                done := false;
                BEGIN
                    EXECUTE format('UPDATE ONLY %s SET %I = %s WHERE ctid >= $1::tid AND ctid < $2::tid AND %I IS NULL AND %I IS NOT NULL',
                                   leaf, shadow, expr, shadow, col)
                      USING format('(%s,0)', blk)::tid, format('(%s,0)', blk + cur)::tid;
                    GET DIAGNOSTICS n = ROW_COUNT;
                    done := true;
                EXCEPTION WHEN serialization_failure OR deadlock_detected THEN
                    retries := retries + 1;
                    IF retries >= 10 THEN
                        RAISE EXCEPTION 'kms_migrate_column: a batch of %.% failed % times in a row on concurrent updates', tbl, col, retries
                            USING ERRCODE = '40001',
                                  DETAIL = format('The last attempt: %s (SQLSTATE %s). The %s rows backfilled before it are committed.',
                                                  SQLERRM, SQLSTATE, total),
                                  HINT = 'Rows moving between partitions, or a deadlock with the application, at this rate: call the procedure again (it resumes), at a quieter time or with a smaller batch.';
                    END IF;
                    RAISE NOTICE 'kms_migrate_column: a batch of %.% failed on a concurrent update (SQLSTATE %), retrying', tbl, col, SQLSTATE;
                    cur := greatest(1, cur / 2);
                END;
                IF done THEN
                    total := total + n;
                    blk := blk + cur;
                    retries := 0;
                    cur := least(lstep, cur * 2);
                END IF;
                COMMIT;
                PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            END LOOP;
        END LOOP;
        FOREACH leaf IN ARRAY coalesce(leaves, '{}') LOOP
            cur := batch;
            retries := 0;
            LOOP
                done := false;
                BEGIN
                    EXECUTE format('UPDATE ONLY %s SET %I = %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM ONLY %s WHERE %I IS NULL AND %I IS NOT NULL LIMIT %s FOR UPDATE))',
                                   leaf, shadow, expr, leaf, shadow, col, cur);
                    GET DIAGNOSTICS n = ROW_COUNT;
                    done := true;
                EXCEPTION WHEN serialization_failure OR deadlock_detected THEN
                    retries := retries + 1;
                    IF retries >= 10 THEN
                        RAISE EXCEPTION 'kms_migrate_column: a batch of %.% failed % times in a row on concurrent updates', tbl, col, retries
                            USING ERRCODE = '40001',
                                  DETAIL = format('The last attempt: %s (SQLSTATE %s). The %s rows backfilled before it are committed.',
                                                  SQLERRM, SQLSTATE, total),
                                  HINT = 'Rows moving between partitions, or a deadlock with the application, at this rate: call the procedure again (it resumes), at a quieter time or with a smaller batch.';
                    END IF;
                    RAISE NOTICE 'kms_migrate_column: a batch of %.% failed on a concurrent update (SQLSTATE %), retrying', tbl, col, SQLSTATE;
                    cur := greatest(1, cur / 2);
                END;
                IF done THEN
                    EXIT WHEN n = 0;
                    total := total + n;
                    retries := 0;
                    cur := least(batch, cur * 2);
                END IF;
                COMMIT;
                PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            END LOOP;
        END LOOP;
    END;
    RAISE NOTICE 'kms_migrate_column: % %.%: % rows backfilled', mode, tbl, col, total;

    -- 3. the NOT NULL check, validated without blocking writes
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = tbl AND conname = shadow || '_nn' AND NOT convalidated) THEN
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', tbl, shadow || '_nn');
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END IF;

    IF NOT finish THEN
        RAISE NOTICE 'kms_migrate_column: %.% is backfilled and kept in step; call again with finish => true to swap', tbl, col;
        RETURN;
    END IF;

    -- 4. the swap, under a lock that waits at most 3 s at a time for running queries
    LOOP
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', '3s', true);
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            tries := tries + 1;
            IF tries >= 20 THEN
                RAISE;
            END IF;
            RAISE NOTICE 'kms_migrate_column: %.% is busy, trying the swap again', tbl, col;
        END;
    END LOOP;
    -- under the lock, before any change: nothing the swap would drop was
    -- added since, also on a partition attached during the backfill
    EXECUTE tree_q INTO tree USING tbl;
    EXECUTE keep_q INTO kept USING tree, col;
    IF kept IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of relation % has constraints or a default that cannot hold on its new type', col, tbl
            USING ERRCODE = '55000',
                  DETAIL = format('The swap would drop them with the old column: %s.', kept),
                  HINT = 'Drop them (ALTER TABLE ... DROP CONSTRAINT, ALTER TABLE ... ALTER COLUMN ... DROP DEFAULT), enforce these rules in the application, and call the procedure again.';
    END IF;
    -- under the lock: no source value is an enc_text value (one the
    -- trigger or the backfill let through would be encrypted twice: F4)
    IF mode = 'encrypt' THEN
        EXECUTE format('SELECT count(*) FROM %s WHERE %I::pg_catalog.text LIKE ''pgck:%%'''
                       ' AND @extschema@.kms_migration_source(%I::pg_catalog.text, %L::pg_catalog.text) IS NULL',
                       tbl, col, col, col) INTO n;
    END IF;
    -- under the lock: every row's shadow must equal its source.  With the
    -- right to decrypt, verify all of them (decrypting), and fix any that
    -- differ; without it, fill the rows still missing one.
    IF pg_catalog.has_function_privilege('@extschema@.kms_decrypt(@extschema@.enc_text)', 'EXECUTE') THEN
        IF mode = 'encrypt' THEN
            EXECUTE format('UPDATE %s SET %I = %s WHERE %I IS NOT NULL AND @extschema@.kms_decrypt(%I::@extschema@.enc_text) IS DISTINCT FROM %I::pg_catalog.text',
                           tbl, shadow, expr, col, shadow, col);
        ELSE
            EXECUTE format('UPDATE %s SET %I = %s WHERE %I::pg_catalog.text IS DISTINCT FROM @extschema@.kms_decrypt(%I::@extschema@.enc_text)',
                           tbl, shadow, expr, shadow, col);
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            RAISE NOTICE 'kms_migrate_column: %.%: % rows whose shadow differed from the source were recomputed at the swap', tbl, col, n;
        END IF;
        EXECUTE format('UPDATE %s SET %I = NULL WHERE %I IS NULL AND %I IS NOT NULL', tbl, shadow, col, shadow);
    ELSE
        EXECUTE format('UPDATE %s SET %I = %s WHERE %I IS NULL AND %I IS NOT NULL', tbl, shadow, expr, shadow, col);
        RAISE NOTICE 'kms_migrate_column: %.%: the swap did not verify every row (it needs EXECUTE on kms_decrypt)', tbl, col;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = trig) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', trig, tbl);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = left(col, 40) || '_pgck_sync') THEN
        EXECUTE format('DROP TRIGGER %I ON %s', left(col, 40) || '_pgck_sync', tbl);
    END IF;
    -- the old column's privileges (column GRANTs, re-granted by the owner)
    -- and comment, on the table and on each partition and child, go to the new one
    carry := ARRAY(
        WITH cols AS (
            SELECT a.attrelid, a.attnum, a.attacl FROM unnest(tree) t(oid) JOIN pg_attribute a
                ON a.attrelid = t.oid AND a.attname = col AND NOT a.attisdropped)
        SELECT format('GRANT %s (%I) ON %s TO %s%s', x.privilege_type, col, cols.attrelid::regclass,
                      CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,
                      CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
          FROM cols CROSS JOIN LATERAL aclexplode(cols.attacl) x
          LEFT JOIN pg_roles r ON r.oid = x.grantee
         WHERE x.grantee = 0 OR r.rolname IS NOT NULL
        UNION ALL
        SELECT format('COMMENT ON COLUMN %s.%I IS %L', cols.attrelid::regclass, col, d.description)
          FROM cols JOIN pg_description d
            ON d.objoid = cols.attrelid AND d.classoid = 'pg_class'::regclass AND d.objsubid = cols.attnum);
    EXECUTE format('ALTER TABLE %s DROP COLUMN %I', tbl, col);
    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', tbl, shadow, col);
    IF col_notnull THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, col);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, shadow || '_nn');
    END IF;
    FOREACH stmt IN ARRAY carry LOOP
        EXECUTE stmt;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', '0', true);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    RAISE NOTICE 'kms_migrate_column: %.% is now %', tbl, col, target;

    -- 5. purge: no live row keeps the dropped column's bytes.  Every table of
    -- the tree that stores rows (the table itself, each leaf partition, each
    -- inheritance child) by its own block ranges: a partitioned parent has no
    -- blocks, an inheritance parent's size is its own rows only.  The step of
    -- each is about batch rows of it (from its statistics or, without them,
    -- a count of its rows: cheap next to rewriting every one of them).
    IF purge THEN
        leaves := 0;
        -- (the tree as read under the swap's lock: it has every table
        -- attached before the swap; one attached since has the new column's
        -- type already, its rows never held the dropped column)
        FOR leaf IN SELECT c.oid::regclass FROM unnest(tree) t(oid) JOIN pg_class c ON c.oid = t.oid
                     WHERE c.relkind = 'r' ORDER BY c.oid LOOP
            maxblk := pg_catalog.pg_relation_size(leaf) / current_setting('block_size')::bigint;
            SELECT CASE WHEN c.reltuples > 0 AND c.relpages > 0 THEN c.reltuples / c.relpages END
              INTO per_blk FROM pg_class c WHERE c.oid = leaf;
            IF per_blk IS NULL AND maxblk > 0 THEN
                EXECUTE format('SELECT count(*)::float8 / %s FROM ONLY %s', maxblk, leaf) INTO per_blk;
            END IF;
            step := greatest(1, batch / greatest(1, coalesce(per_blk, 1))::bigint);
            blk := 0;
            WHILE blk < maxblk LOOP
                EXECUTE format('UPDATE ONLY %s SET %I = %I WHERE ctid >= $1::tid AND ctid < $2::tid', leaf, col, col)
                  USING format('(%s,0)', blk)::tid, format('(%s,0)', blk + step)::tid;
                blk := blk + step;
                COMMIT;
                PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            END LOOP;
            leaves := leaves + 1;
        END LOOP;
        IF leaves > 1 THEN
            RAISE NOTICE 'kms_migrate_column: every row of % and of its % partitions or inheritance children rewritten; run VACUUM on each of them and CHECKPOINT to remove the old row versions',
                tbl, leaves - (SELECT count(*) FROM pg_class c WHERE c.oid = tbl AND c.relkind = 'r');
        ELSE
            RAISE NOTICE 'kms_migrate_column: every row of % rewritten; run VACUUM % and CHECKPOINT to remove the old row versions', tbl, tbl;
        END IF;
    END IF;
END
$$;

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

-- ================================================================ issue 15: disaster recovery (additional wrappings)
-- Every key may have more wrappings than its primary KMS key: another KMS key
-- (fallback when the primary refuses) or an offline escrow RSA public key
-- (recovery with tools/pgck_recover.py).  Each wrapping holds a blob of every
-- secret of the key: each DEK version and the current and previous index
-- keys (order and named-index keys are derived from the index key, never
-- stored).  FORMAT.md section 11 specifies both tables byte for byte.  Like
-- key_indexes, no foreign keys: a restore may load the tables in any order.
CREATE TABLE pgcrypt_kms.key_wrappings (
    key_name    text NOT NULL,   -- a key of pgcrypt_kms.keys
    wrapping    int4 NOT NULL CHECK (wrapping > 0),   -- 1, 2, ...: the fallback order (lowest first)
    kind        text NOT NULL CHECK (kind IN ('kms', 'escrow')),
    kms_key     text,            -- kind 'kms': the master key reference (URI, FORMAT.md section 5)
    public_key  bytea,           -- kind 'escrow': DER SubjectPublicKeyInfo of an RSA key of >= 3072 bits
    fingerprint bytea,           -- kind 'escrow': SHA-256 of public_key (32 bytes)
    created     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (key_name, wrapping),
    CHECK ((kind OPERATOR(pg_catalog.=) 'kms') OPERATOR(pg_catalog.=) (kms_key IS NOT NULL)),
    CHECK ((kind OPERATOR(pg_catalog.=) 'escrow') OPERATOR(pg_catalog.=)
           (public_key IS NOT NULL AND fingerprint IS NOT NULL)),
    CHECK (fingerprint IS NULL OR pg_catalog.length(fingerprint) OPERATOR(pg_catalog.=) 32)
);
COMMENT ON TABLE pgcrypt_kms.key_wrappings IS 'additional wrappings of keys: another KMS key or an offline escrow RSA public key';
SELECT pg_catalog.pg_extension_config_dump('pgcrypt_kms.key_wrappings', '');

CREATE TABLE pgcrypt_kms.wrapped_keys (
    key_name    text NOT NULL,
    wrapping    int4 NOT NULL,   -- key_wrappings.wrapping of the same key_name
    secret      text NOT NULL CHECK (secret IN ('dek', 'index')),
    version     int4 NOT NULL,   -- 'dek': key_versions.id; 'index': the index key's keys.index_key_version
    wrapped     bytea NOT NULL,  -- 'kms': the blob as the KMS returned it; 'escrow': RSA-OAEP ciphertext
    kms_key_arn text,            -- 'kms': the key ARN the KMS reported (as key_versions.kms_key_arn), else NULL
    key_check   bytea NOT NULL,  -- the key-check value of the wrapped secret (FORMAT.md 4.4), a copy
    created     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (key_name, wrapping, secret, version)
);
COMMENT ON TABLE pgcrypt_kms.wrapped_keys IS 'each secret of a key (DEK versions, index keys) under each additional wrapping';
SELECT pg_catalog.pg_extension_config_dump('pgcrypt_kms.wrapped_keys', '');

-- Crypto-shredding reaches every wrapping: when a version's wrapped_dek goes
-- (kms_destroy_key, state 'destroyed') or its row is deleted, its blobs under
-- every wrapping go too; when an index key is forgotten
-- (kms_finish_index_rotation, kms_destroy_key), so are its blobs; when a
-- wrapping is removed, its blobs.  Triggers, so a change made by hand keeps
-- the rule as well as the extension's functions do.
CREATE FUNCTION pgcrypt_kms.wrapped_keys_prune() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'key_versions' THEN
        IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' OR NEW.wrapped_dek IS NULL THEN
            DELETE FROM pgcrypt_kms.wrapped_keys w
             WHERE w.key_name OPERATOR(pg_catalog.=) OLD.key_name
               AND w.secret OPERATOR(pg_catalog.=) 'dek' AND w.version OPERATOR(pg_catalog.=) OLD.id;
        END IF;
    ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'keys' THEN
        IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
            DELETE FROM pgcrypt_kms.wrapped_keys w WHERE w.key_name OPERATOR(pg_catalog.=) OLD.key_name;
            DELETE FROM pgcrypt_kms.key_wrappings w WHERE w.key_name OPERATOR(pg_catalog.=) OLD.key_name;
        ELSE
            -- keep the index keys the row still holds: current, and previous while set
            DELETE FROM pgcrypt_kms.wrapped_keys w
             WHERE w.key_name OPERATOR(pg_catalog.=) OLD.key_name
               AND w.secret OPERATOR(pg_catalog.=) 'index'
               AND NOT (w.version OPERATOR(pg_catalog.=) NEW.index_key_version AND NEW.index_key_wrapped IS NOT NULL)
               AND NOT (w.version OPERATOR(pg_catalog.=) (NEW.index_key_version OPERATOR(pg_catalog.-) 1)
                        AND NEW.prev_index_key_wrapped IS NOT NULL);
        END IF;
    ELSE
        DELETE FROM pgcrypt_kms.wrapped_keys w
         WHERE w.key_name OPERATOR(pg_catalog.=) OLD.key_name AND w.wrapping OPERATOR(pg_catalog.=) OLD.wrapping;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.wrapped_keys_prune() FROM PUBLIC;
CREATE TRIGGER wrapped_keys_prune AFTER UPDATE OR DELETE ON pgcrypt_kms.key_versions
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.wrapped_keys_prune();
CREATE TRIGGER wrapped_keys_prune AFTER UPDATE OR DELETE ON pgcrypt_kms.keys
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.wrapped_keys_prune();
CREATE TRIGGER wrapped_keys_prune AFTER DELETE ON pgcrypt_kms.key_wrappings
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.wrapped_keys_prune();
-- a TRUNCATE of the keyring (kms_citus_sync's copy aside) takes the wrappings along
CREATE FUNCTION pgcrypt_kms.wrapped_keys_truncate() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM pgcrypt_kms.wrapped_keys;
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'keys' THEN
        DELETE FROM pgcrypt_kms.key_wrappings;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.wrapped_keys_truncate() FROM PUBLIC;
CREATE TRIGGER wrapped_keys_truncate AFTER TRUNCATE ON pgcrypt_kms.keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.wrapped_keys_truncate();
CREATE TRIGGER wrapped_keys_truncate AFTER TRUNCATE ON pgcrypt_kms.key_versions
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.wrapped_keys_truncate();
-- Like the keyring's own triggers (0.2.0), they fire also when
-- session_replication_role is replica (logical replication apply, restore
-- tools, a session that set it): a destroy applied that way still takes
-- every wrapping's blobs along.  kms_destroy_key also deletes them itself.
ALTER TABLE pgcrypt_kms.key_versions ENABLE ALWAYS TRIGGER wrapped_keys_prune;
ALTER TABLE pgcrypt_kms.keys ENABLE ALWAYS TRIGGER wrapped_keys_prune;
ALTER TABLE pgcrypt_kms.key_wrappings ENABLE ALWAYS TRIGGER wrapped_keys_prune;
ALTER TABLE pgcrypt_kms.keys ENABLE ALWAYS TRIGGER wrapped_keys_truncate;
ALTER TABLE pgcrypt_kms.key_versions ENABLE ALWAYS TRIGGER wrapped_keys_truncate;
-- On a Citus worker the wrappings are key administration like the rest of the
-- keyring: refused (55000) unless the coordinator is applying a change (its
-- destroy and index-rotation prunes reach the worker that way).  The wrapping
-- tables themselves are not sent to workers (README, Disaster recovery).
CREATE TRIGGER citus_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.key_wrappings
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_guard();
CREATE TRIGGER citus_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.wrapped_keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.citus_keyring_guard();

-- The wrappings of each key, with how many secrets each holds (no key material;
-- the escrow public key's fingerprint is what an officer compares with the
-- offline copy).
CREATE VIEW @extschema@.kms_key_wrappings AS
    SELECT w.key_name, w.wrapping, w.kind, w.kms_key,
           pg_catalog.encode(w.fingerprint, 'hex') AS fingerprint,
           (SELECT pg_catalog.count(*) FROM pgcrypt_kms.wrapped_keys b
             WHERE b.key_name OPERATOR(pg_catalog.=) w.key_name
               AND b.wrapping OPERATOR(pg_catalog.=) w.wrapping
               AND b.secret OPERATOR(pg_catalog.=) 'dek')::int4 AS dek_versions,
           (SELECT pg_catalog.count(*) FROM pgcrypt_kms.wrapped_keys b
             WHERE b.key_name OPERATOR(pg_catalog.=) w.key_name
               AND b.wrapping OPERATOR(pg_catalog.=) w.wrapping
               AND b.secret OPERATOR(pg_catalog.=) 'index')::int4 AS index_keys,
           w.created
      FROM pgcrypt_kms.key_wrappings w;
COMMENT ON VIEW @extschema@.kms_key_wrappings IS 'additional wrappings of each key (another KMS key or an escrow public key, with its SHA-256 fingerprint); no key material';
REVOKE ALL ON @extschema@.kms_key_wrappings FROM PUBLIC;
GRANT SELECT ON @extschema@.kms_key_wrappings TO pgcrypt_kms_admin;

-- Administration of the additional wrappings: admin role only, as the other
-- key administration.  VOLATILE (KMS calls, keyring writes), PARALLEL UNSAFE
-- (they write, and run KMS calls in subtransactions).  C, running as the
-- keyring owner like kms_rotate_key.
CREATE FUNCTION @extschema@.kms_add_wrapping(key_name text, kms_key text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_add_wrapping' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_add_wrapping(text, text) IS 'wrap every data key version and index key of a key under another KMS key too (fallback when the primary refuses); returns the wrapping number';
CREATE FUNCTION @extschema@.kms_add_escrow_key(key_name text, public_key text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_add_escrow_key' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_add_escrow_key(text, text) IS 'wrap every data key version and index key of a key under an offline escrow RSA public key (PEM, 3072 bits or more; RSA-OAEP-SHA-256); returns the wrapping number';
CREATE FUNCTION @extschema@.kms_remove_wrapping(key_name text, wrapping int4) RETURNS void
    AS 'MODULE_PATHNAME', 'pgck_kms_remove_wrapping' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_remove_wrapping(text, int4) IS 'remove an additional wrapping of a key and delete its wrapped keys';
CREATE FUNCTION @extschema@.kms_verify_wrappings(key_name text,
        OUT key_name text, OUT secret text, OUT version int4, OUT wrapping int4,
        OUT kind text, OUT kms_key text, OUT status text, OUT detail text)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'pgck_kms_verify_wrappings' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_verify_wrappings(text) IS 'for every data key version and index key of a key and every wrapping (0 = primary): does it unwrap (KMS), is it well formed (escrow)';
REVOKE ALL ON FUNCTION @extschema@.kms_add_wrapping(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_add_escrow_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_remove_wrapping(text, int4) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_verify_wrappings(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_add_wrapping(text, text) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_add_escrow_key(text, text) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_remove_wrapping(text, int4) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_verify_wrappings(text) TO pgcrypt_kms_admin;

-- kms_cache_stats() gains kms_fallbacks: unwraps that succeeded through an
-- additional KMS wrapping after the primary key refused (each also logged,
-- once per key version and backend).
DROP FUNCTION @extschema@.kms_cache_stats();
CREATE FUNCTION @extschema@.kms_cache_stats(
        OUT hits int8, OUT misses int8, OUT unwraps int8, OUT evictions int8,
        OUT expirations int8, OUT cached_versions int4,
        OUT kms_calls int8, OUT kms_errors int8, OUT kms_retries int8,
        OUT kms_ms_avg float8, OUT kms_ms_max float8, OUT decrypt_failures int8,
        OUT kms_access_denials int8, OUT by_operation jsonb, OUT kms_refusals int8,
        OUT kms_fallbacks int8)
    AS 'MODULE_PATHNAME', 'pgck_kms_cache_stats_0_3' LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.kms_cache_stats() IS 'this backend''s key cache and KMS call counters';
REVOKE ALL ON FUNCTION @extschema@.kms_cache_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_cache_stats() TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
-- ================================================================ end of issue 15

-- kms_finish_index_rotation refuses while a value of the key is still on a
-- version older than the active one (tagged under the previous index key:
-- lookups would miss it once that key is forgotten); it counts them in every
-- enc_text column the caller can read in full, and refuses if it cannot read
-- one.  force => true forgets the previous index key without looking.
COMMENT ON FUNCTION @extschema@.kms_finish_index_rotation(text) IS 'forget the previous blind-index key, once no value of the key is left on an older data key version (re-tagged with kms_reencrypt_table)';
CREATE FUNCTION @extschema@.kms_finish_index_rotation(name text, force bool) RETURNS void
    AS 'MODULE_PATHNAME', 'pgck_kms_finish_index_rotation_0_3' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_finish_index_rotation(text, bool) IS 'as kms_finish_index_rotation(name); force => true skips the check that every value was re-tagged';
REVOKE ALL ON FUNCTION @extschema@.kms_finish_index_rotation(text, bool) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_finish_index_rotation(text, bool) TO pgcrypt_kms_admin;

-- ================================================================ kms_blind_index_match and NULL
-- Like kms_decrypt since 0.2: a NULL key name or context is refused (22004)
-- instead of a silent NULL that drops the row from a re-check; a NULL value
-- or probe still gives NULL.
-- Under a symbol of 0.3.0's own (below).
CREATE OR REPLACE FUNCTION @extschema@.kms_blind_index_match(value @extschema@.enc_text, plaintext text, key_name text) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_match_0_3' LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION @extschema@.kms_blind_index_match(value @extschema@.enc_text, plaintext text, key_name text, context text) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_match_0_3' LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;

-- ================================================================ symbols of 0.3.0's own
-- A function whose NULL handling or result columns differ from an earlier
-- version's SQL, or whose values an earlier library would write without what
-- 0.3.0 adds to them (named-index tags, order terms), is declared here under a
-- C symbol that only the 0.3.0 library has.  A session that loaded an older
-- library (without shared_preload_libraries, before the package upgrade) then
-- gets 42883 "could not find function" after ALTER EXTENSION UPDATE, instead
-- of running code that assumed STRICT or fewer columns: an outside review of
-- 2026-12-05 crashed the server with a NULL that way.  The library keeps the
-- older symbols for older catalogs.  checks/library_symbols holds every
-- version's catalog to this rule.  (CREATE OR REPLACE keeps owner, grants and
-- comments.)
CREATE OR REPLACE FUNCTION @extschema@.kms_encrypt(plaintext text, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_0_3' LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION @extschema@.kms_encrypt(plaintext text, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt_0_3' LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION @extschema@.kms_decrypt(value @extschema@.enc_text, context text) RETURNS text
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt_0_3' LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION @extschema@.kms_reencrypt(value @extschema@.enc_text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_reencrypt_0_3' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE OR REPLACE FUNCTION @extschema@.kms_reencrypt(value @extschema@.enc_text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_reencrypt_0_3' LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL SAFE;

-- ================================================================ the key's blind index over bytea
-- kms_encrypt(bytea, key) stores the key's blind-index tag (its bytes through
-- the key's transform, as for text): its probe, its probes during an index key
-- rotation and its re-check, labelled and granted as the text forms.  The
-- probes are the text forms' C functions (the transforms are byte-wise: the
-- same bytes give the same tag whatever their type).  An unknown-typed
-- argument (a literal, NULL, an untyped parameter) still resolves to the text
-- forms: PostgreSQL prefers the string category (regress/ore checks it).
CREATE FUNCTION @extschema@.kms_blind_index(plaintext bytea, key_name text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index(bytea, text) IS 'the blind-index probe of a bytea plaintext for a lookup';
CREATE FUNCTION @extschema@.kms_blind_index_all(plaintext bytea, key_name text) RETURNS bytea[]
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_all' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index_all(bytea, text) IS 'the probes of a bytea plaintext under the current and, during an index key rotation, the previous index key';
-- not STRICT, as the text form: a NULL key name or context is refused (22004);
-- a text value is not these bytes (false, from its header, nothing decrypted)
CREATE FUNCTION @extschema@.kms_blind_index_match(value @extschema@.enc_text, plaintext bytea, key_name text) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_match_bytea' LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text) IS 'does the bytea value decrypt to these bytes after the key''s normalization (re-check for truncated tags)';
CREATE FUNCTION @extschema@.kms_blind_index_match(value @extschema@.enc_text, plaintext bytea, key_name text, context text) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_match_bytea' LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text, text) IS 'kms_blind_index_match of bytea for a value encrypted with a context';
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index(bytea, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index_all(bytea, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index(bytea, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index_all(bytea, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text) TO pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text, text) TO pgcrypt_kms_decrypt;
-- A re-check decrypts (and may unwrap a key version): it costs far more than
-- the tag comparison beside it.  At the default cost of 1, the planner put it
-- first in a filter, so a sequential scan decrypted every row instead of the
-- few whose tag matches.  100, as PostgreSQL rates its own costly functions.
ALTER FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text) COST 100;
ALTER FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text, text) COST 100;
ALTER FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text) COST 100;
ALTER FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, bytea, text, text) COST 100;

-- ================================================================ logical replication of the keyring
-- A logical-replication apply worker fires row triggers only, never statement
-- triggers: a destroy, a retirement or an index rotation it applies reached no
-- cache through keys_changed/key_versions_changed (0.1.0), whatever their
-- ENABLE ALWAYS (0.2.0).  Row triggers, fired also when
-- session_replication_role is replica, send the invalidation from the apply
-- worker too: every backend of the subscriber re-checks its entries at the
-- worker's commit, and the database's shared cache entries are wiped.
-- keyring_changed does its work once per statement and table however many
-- rows change.  The statement triggers keep what rows do not show: TRUNCATE.
-- (key_indexes is read afresh by every statement, key_wrappings and
-- wrapped_keys only to unwrap: no cache holds them.)
CREATE TRIGGER keys_changed_row AFTER INSERT OR UPDATE OR DELETE ON pgcrypt_kms.keys
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.keyring_changed();
CREATE TRIGGER key_versions_changed_row AFTER INSERT OR UPDATE OR DELETE ON pgcrypt_kms.key_versions
    FOR EACH ROW EXECUTE FUNCTION pgcrypt_kms.keyring_changed();
ALTER TABLE pgcrypt_kms.keys ENABLE ALWAYS TRIGGER keys_changed_row;
ALTER TABLE pgcrypt_kms.key_versions ENABLE ALWAYS TRIGGER key_versions_changed_row;
DROP TRIGGER keys_changed ON pgcrypt_kms.keys;
DROP TRIGGER key_versions_changed ON pgcrypt_kms.key_versions;
CREATE TRIGGER keys_changed AFTER TRUNCATE ON pgcrypt_kms.keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.keyring_changed();
CREATE TRIGGER key_versions_changed AFTER TRUNCATE ON pgcrypt_kms.key_versions
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.keyring_changed();
ALTER TABLE pgcrypt_kms.keys ENABLE ALWAYS TRIGGER keys_changed;
ALTER TABLE pgcrypt_kms.key_versions ENABLE ALWAYS TRIGGER key_versions_changed;

-- A database that subscribes to a keyring table holds the publisher's copy:
-- a key written here (kms_create_key, a rotation, a destroy, a new wrapping,
-- a change by hand) would conflict with the publisher's next change of it
-- (the same version number, ids from another sequence, an update that brings
-- a destroyed key back) and stop the subscription.  So key administration is
-- refused there while the subscription is enabled.  The trigger is enabled
-- for origin sessions only: the apply worker (session_replication_role
-- replica) writes the keyring as before.  Encryption that would rotate is
-- refused before it gets here, with its own message (src/usage.c, src/keycache.c).
CREATE FUNCTION pgcrypt_kms.subscriber_keyring_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sub name;
BEGIN
    SELECT s.subname INTO sub
      FROM pg_catalog.pg_subscription_rel r
      JOIN pg_catalog.pg_subscription s ON s.oid OPERATOR(pg_catalog.=) r.srsubid
     WHERE r.srrelid OPERATOR(pg_catalog.=) TG_RELID AND s.subenabled
       AND s.subdbid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                              WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
     ORDER BY s.subname LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'key administration is refused on a subscriber of the keyring'
            USING ERRCODE = '55000',
                  DETAIL = pg_catalog.format('Subscription "%s" replicates pgcrypt_kms.%s into this database: its keys are the publisher''s, and a change made here would conflict with the publisher''s next one and stop the subscription.', sub, TG_TABLE_NAME),
                  HINT = 'Run key administration on the publisher. To change this copy on its own, disable the subscription first (ALTER SUBSCRIPTION ... DISABLE) or stop publishing the keyring to it.';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pgcrypt_kms.subscriber_keyring_guard() FROM PUBLIC;
CREATE TRIGGER subscriber_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.subscriber_keyring_guard();
CREATE TRIGGER subscriber_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.key_versions
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.subscriber_keyring_guard();
CREATE TRIGGER subscriber_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.key_indexes
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.subscriber_keyring_guard();
CREATE TRIGGER subscriber_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.key_wrappings
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.subscriber_keyring_guard();
CREATE TRIGGER subscriber_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.wrapped_keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.subscriber_keyring_guard();
