/* pgcrypt_kms 0.1.0: encrypted columns with KMS-wrapped data keys */

\echo Use "CREATE EXTENSION pgcrypt_kms" to load this file. \quit

-- Roles.  Cluster-wide, so another database may have made them already; they
-- outlive DROP EXTENSION like any role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgcrypt_kms_admin') THEN
        CREATE ROLE pgcrypt_kms_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgcrypt_kms_encrypt') THEN
        CREATE ROLE pgcrypt_kms_encrypt NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgcrypt_kms_decrypt') THEN
        CREATE ROLE pgcrypt_kms_decrypt NOLOGIN;
    END IF;
END
$$;

------------------------------------------------------------------ keyring
-- Internal schema: the keyring tables.  Only the extension owner reads them;
-- the C functions read them as that owner.
CREATE SCHEMA pgcrypt_kms;
REVOKE ALL ON SCHEMA pgcrypt_kms FROM PUBLIC;
COMMENT ON SCHEMA pgcrypt_kms IS 'pgcrypt_kms keyring (wrapped keys only; internal)';

CREATE TABLE pgcrypt_kms.keys (
    key_name          text PRIMARY KEY
                      CHECK (key_name OPERATOR(pg_catalog.~) '^[A-Za-z0-9_.-][A-Za-z0-9_.:-]{0,127}$'),
    kms_key           text NOT NULL,
    kms_context       jsonb NOT NULL DEFAULT '{}'
                      CHECK (pg_catalog.jsonb_typeof(kms_context) OPERATOR(pg_catalog.=) 'object'),
    blind_index       text NOT NULL DEFAULT 'none'
                      CHECK (blind_index IN ('none', 'exact', 'lower', 'email', 'digits')),
    index_bits        int4 NOT NULL DEFAULT 256 CHECK (index_bits BETWEEN 8 AND 256),
    index_key_version int4 NOT NULL DEFAULT 1,
    index_key_wrapped bytea,
    prev_index_key_wrapped bytea,   -- kept while an index key rotation is in progress
    index_kms_key     text,
    created           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((blind_index OPERATOR(pg_catalog.=) 'none') OPERATOR(pg_catalog.=) (index_key_wrapped IS NULL))
);
COMMENT ON TABLE pgcrypt_kms.keys IS 'column keys: KMS master key, KMS context, blind index settings and the wrapped index key';

CREATE SEQUENCE pgcrypt_kms.key_version_id_seq AS int4 MINVALUE 1;

CREATE TABLE pgcrypt_kms.key_versions (
    id          int4 PRIMARY KEY DEFAULT pg_catalog.nextval('pgcrypt_kms.key_version_id_seq'),
    key_name    text NOT NULL,
    version     int4 NOT NULL CHECK (version > 0),
    kms_key     text NOT NULL,
    wrapped_dek bytea NOT NULL,
    state       text NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'decrypt-only', 'retired')),
    created     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (key_name, version)
);
ALTER SEQUENCE pgcrypt_kms.key_version_id_seq OWNED BY pgcrypt_kms.key_versions.id;
-- at most one version of a key encrypts
CREATE UNIQUE INDEX key_versions_one_active ON pgcrypt_kms.key_versions (key_name)
    WHERE state OPERATOR(pg_catalog.=) 'active';
COMMENT ON TABLE pgcrypt_kms.key_versions IS 'data key versions, each stored only as wrapped by the KMS';

-- pg_dump carries the keyring, so a restore decrypts given KMS access
SELECT pg_catalog.pg_extension_config_dump('pgcrypt_kms.keys', '');
SELECT pg_catalog.pg_extension_config_dump('pgcrypt_kms.key_versions', '');
SELECT pg_catalog.pg_extension_config_dump('pgcrypt_kms.key_version_id_seq', '');

-- Every change to the keyring (ours, by hand, by a restore) invalidates the
-- key cache of every backend at commit, and of this one on abort.
CREATE FUNCTION pgcrypt_kms.keyring_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'pgck_keyring_changed' LANGUAGE C;
REVOKE ALL ON FUNCTION pgcrypt_kms.keyring_changed() FROM PUBLIC;
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.keys
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.keyring_changed();
CREATE TRIGGER key_versions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgcrypt_kms.key_versions
    FOR EACH STATEMENT EXECUTE FUNCTION pgcrypt_kms.keyring_changed();

------------------------------------------------------------------ enc_text
CREATE TYPE @extschema@.enc_text;

-- Type I/O only parses envelopes (no keys): IMMUTABLE STRICT PARALLEL SAFE.
-- Literals are folded at plan time, which is why plaintext never goes
-- through enc_text_in: it accepts only ciphertext.
CREATE FUNCTION @extschema@.enc_text_in(cstring) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_enc_text_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.enc_text_out(@extschema@.enc_text) RETURNS cstring
    AS 'MODULE_PATHNAME', 'pgck_enc_text_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.enc_text_recv(internal) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_enc_text_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.enc_text_send(@extschema@.enc_text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_enc_text_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE @extschema@.enc_text (
    INPUT = @extschema@.enc_text_in,
    OUTPUT = @extschema@.enc_text_out,
    RECEIVE = @extschema@.enc_text_recv,
    SEND = @extschema@.enc_text_send,
    INTERNALLENGTH = VARIABLE,
    STORAGE = external      -- ciphertext does not compress
);
COMMENT ON TYPE @extschema@.enc_text IS 'AES-256-GCM ciphertext under a KMS-wrapped data key; its text form is ciphertext, never plaintext';

------------------------------------------------------------------ values
-- VOLATILE: a random nonce per call.  PARALLEL SAFE: reads the keyring only.
CREATE FUNCTION @extschema@.kms_encrypt(plaintext text, key_name text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_encrypt(plaintext text, key_name text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_encrypt' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_encrypt(text, text) IS 'encrypt under the current data key version of a key';
COMMENT ON FUNCTION @extschema@.kms_encrypt(text, text, text) IS 'encrypt under the current data key version of a key, binding a context (AAD)';

-- STABLE, not IMMUTABLE: the result depends on the keyring and KMS access.
CREATE FUNCTION @extschema@.kms_decrypt(value @extschema@.enc_text) RETURNS text
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_decrypt(value @extschema@.enc_text, context text) RETURNS text
    AS 'MODULE_PATHNAME', 'pgck_kms_decrypt' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_decrypt(@extschema@.enc_text) IS 'decrypt a value (error, never wrong plaintext, if it was altered)';
COMMENT ON FUNCTION @extschema@.kms_decrypt(@extschema@.enc_text, text) IS 'decrypt a value encrypted with a context';

-- IMMUTABLE: reads the tag the value carries, no key; index builds, REINDEX,
-- restores and replicas need no KMS.
CREATE FUNCTION @extschema@.kms_blind_index(value @extschema@.enc_text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index(@extschema@.enc_text) IS 'the blind-index tag carried by a value (NULL if its key has no blind index)';

-- IMMUTABLE: reads the header only.
CREATE FUNCTION @extschema@.kms_version_id(value @extschema@.enc_text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_version_id' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_version_id(@extschema@.enc_text) IS 'the key version id a value was encrypted under (kms_keys.version_id)';

-- STABLE: depends on the key's index key.
CREATE FUNCTION @extschema@.kms_blind_index(plaintext text, key_name text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index(text, text) IS 'the blind-index probe of a plaintext for a lookup';

-- STABLE: depends on the key's index keys.
CREATE FUNCTION @extschema@.kms_blind_index_all(plaintext text, key_name text) RETURNS bytea[]
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_all' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index_all(text, text) IS 'the probes under the current and, during an index key rotation, the previous index key';

CREATE FUNCTION @extschema@.kms_blind_index_match(value @extschema@.enc_text, plaintext text, key_name text) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_match' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text) IS 'does the value decrypt to this plaintext after the key''s normalization (re-check for truncated tags)';

-- VOLATILE: a new random nonce.
CREATE FUNCTION @extschema@.kms_reencrypt(value @extschema@.enc_text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_reencrypt' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.kms_reencrypt(value @extschema@.enc_text, context text) RETURNS @extschema@.enc_text
    AS 'MODULE_PATHNAME', 'pgck_kms_reencrypt' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_reencrypt(@extschema@.enc_text) IS 'the same plaintext under the key''s current data key version and index key';
COMMENT ON FUNCTION @extschema@.kms_reencrypt(@extschema@.enc_text, text) IS 'kms_reencrypt for a value encrypted with a context';

-- A decryption drill: counts per key version, never a plaintext.  STABLE;
-- PARALLEL RESTRICTED (opens subtransactions to survive a bad version).
CREATE FUNCTION @extschema@.kms_verify(tbl regclass, col name, context text DEFAULT NULL,
        OUT key_name text, OUT version int4, OUT version_id int4,
        OUT decrypted int8, OUT failed int8, OUT error text)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'pgck_kms_verify' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.kms_verify(regclass, name, text) IS 'per key version, how many values of a column decrypt and how many fail (no plaintext returned)';

------------------------------------------------------------------ administration
-- Writes the keyring and calls the KMS: VOLATILE PARALLEL UNSAFE.
CREATE FUNCTION @extschema@.kms_create_key(
        name text, kms_key text,
        blind_index text DEFAULT 'none',
        index_bits int4 DEFAULT 256,
        kms_context jsonb DEFAULT '{}')
    RETURNS void
    AS 'MODULE_PATHNAME', 'pgck_kms_create_key' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_create_key(text, text, text, int4, jsonb) IS 'register a column key bound to a KMS master key';

CREATE FUNCTION @extschema@.kms_rotate_key(name text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_rotate_key' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_rotate_key(text) IS 'make a new data key version current; old versions keep decrypting';

CREATE FUNCTION @extschema@.kms_rewrap_key(name text, new_kms_key text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_rewrap_key' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_rewrap_key(text, text) IS 're-wrap every stored key of a key under another KMS master key (KMS ReEncrypt); no row is touched';

CREATE FUNCTION @extschema@.kms_rotate_index_key(name text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_rotate_index_key' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_rotate_index_key(text) IS 'new blind-index key; the previous one keeps probing (kms_blind_index_all) until kms_finish_index_rotation';
CREATE FUNCTION @extschema@.kms_finish_index_rotation(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'pgck_kms_finish_index_rotation' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_finish_index_rotation(text) IS 'forget the previous blind-index key after re-tagging and reindexing';

CREATE FUNCTION @extschema@.kms_set_key_state(name text, version int4, state text) RETURNS void
    AS 'MODULE_PATHNAME', 'pgck_kms_set_key_state' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_set_key_state(text, int4, text) IS 'set a non-current version to decrypt-only or retired';

-- Batched, resumable re-encryption of a column onto its keys' current
-- versions.  Each batch commits (CALL it outside a transaction block), so no
-- long transaction is held; interrupted, it resumes where it stopped.  Rows
-- changed concurrently are never overwritten: an updated row gets a new ctid
-- and is picked up again if it still needs it.  SECURITY INVOKER: the caller
-- needs UPDATE on the table and EXECUTE on kms_reencrypt.  No SET clause (a
-- procedure with one cannot COMMIT): every name is schema-qualified instead.
CREATE PROCEDURE @extschema@.kms_reencrypt_table(tbl regclass, col name,
        batch int4 DEFAULT 10000, context text DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    current_ids int4[];
    n bigint;
    total bigint := 0;
    ctx_expr text := CASE WHEN context IS NULL THEN '' ELSE ', ' OPERATOR(pg_catalog.||) context END;
BEGIN
    IF batch IS NULL OR batch OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch must be at least 1' USING ERRCODE = '22023';
    END IF;
    LOOP
        SELECT pg_catalog.array_agg(version_id) INTO current_ids
          FROM @extschema@.kms_keys WHERE current;
        EXECUTE pg_catalog.format(
            'UPDATE %s SET %I = @extschema@.kms_reencrypt(%I%s) WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY('
            '  SELECT ctid FROM %s WHERE %I IS NOT NULL'
            '     AND NOT (@extschema@.kms_version_id(%I) OPERATOR(pg_catalog.=) ANY ($1))'
            '   LIMIT $2 FOR UPDATE))',
            tbl, col, col, ctx_expr, tbl, col, col)
          USING COALESCE(current_ids, '{}'), batch;
        GET DIAGNOSTICS n = ROW_COUNT;
        EXIT WHEN n OPERATOR(pg_catalog.=) 0;
        total := total OPERATOR(pg_catalog.+) n;
        RAISE NOTICE 'kms_reencrypt_table: % rows of %.% re-encrypted so far', total, tbl, col;
        COMMIT;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE @extschema@.kms_reencrypt_table(regclass, name, int4, text) IS 'move every value of a column onto its key''s current version, one committed batch at a time';

-- Backend-local: PARALLEL RESTRICTED (workers have their own caches).
CREATE FUNCTION @extschema@.kms_flush_cache() RETURNS void
    AS 'MODULE_PATHNAME', 'pgck_kms_flush_cache' LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.kms_flush_cache() IS 'wipe every unwrapped key cached by this backend';

CREATE FUNCTION @extschema@.kms_cache_stats(
        OUT hits int8, OUT misses int8, OUT unwraps int8, OUT evictions int8,
        OUT expirations int8, OUT cached_versions int4,
        OUT kms_calls int8, OUT kms_errors int8, OUT kms_retries int8,
        OUT kms_ms_avg float8, OUT kms_ms_max float8, OUT decrypt_failures int8,
        OUT kms_access_denials int8, OUT by_operation jsonb)
    AS 'MODULE_PATHNAME', 'pgck_kms_cache_stats' LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.kms_cache_stats() IS 'this backend''s key cache and KMS call counters';

-- This cluster's count of encryptions under a version (NULL unless preloaded).
CREATE FUNCTION @extschema@.kms_version_encryptions(version_id int4) RETURNS int8
    AS 'MODULE_PATHNAME', 'pgck_kms_version_encryptions' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_version_encryptions(int4) IS 'encryptions under a key version counted by this cluster (NULL unless pgcrypt_kms is in shared_preload_libraries)';

CREATE VIEW @extschema@.kms_keys AS
    SELECT v.key_name, v.version, v.id AS version_id, v.state,
           v.state OPERATOR(pg_catalog.=) 'active' AS current,
           v.kms_key, k.kms_context, k.blind_index, k.index_bits, v.created,
           @extschema@.kms_version_encryptions(v.id) AS encryptions
      FROM pgcrypt_kms.key_versions v
      JOIN pgcrypt_kms.keys k ON k.key_name OPERATOR(pg_catalog.=) v.key_name;
COMMENT ON VIEW @extschema@.kms_keys IS 'keys and their data key versions (never key material)';

------------------------------------------------------------------ privileges
-- Nothing that touches keys is executable by PUBLIC.
REVOKE ALL ON ALL TABLES IN SCHEMA pgcrypt_kms FROM PUBLIC;
REVOKE ALL ON SEQUENCE pgcrypt_kms.key_version_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_encrypt(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_encrypt(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_decrypt(@extschema@.enc_text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_decrypt(@extschema@.enc_text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_create_key(text, text, text, int4, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_rotate_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_flush_cache() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index_all(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_reencrypt(@extschema@.enc_text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_reencrypt(@extschema@.enc_text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_rotate_index_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_rewrap_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_finish_index_rotation(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_set_key_state(text, int4, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_verify(regclass, name, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.kms_reencrypt_table(regclass, name, int4, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_cache_stats() FROM PUBLIC;
REVOKE ALL ON @extschema@.kms_keys FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_version_encryptions(int4) FROM PUBLIC;

GRANT USAGE ON SCHEMA @extschema@ TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_create_key(text, text, text, int4, jsonb) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_rotate_key(text) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_encrypt(text, text) TO pgcrypt_kms_encrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_encrypt(text, text, text) TO pgcrypt_kms_encrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_decrypt(@extschema@.enc_text) TO pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_decrypt(@extschema@.enc_text, text) TO pgcrypt_kms_decrypt;
-- lookups need the probe: whoever encrypts or decrypts may compute it
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index(text, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index_all(text, text) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text) TO pgcrypt_kms_decrypt;
-- re-encryption returns ciphertext only: maintenance jobs run it
GRANT EXECUTE ON FUNCTION @extschema@.kms_reencrypt(@extschema@.enc_text) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_reencrypt(@extschema@.enc_text, text) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_rotate_index_key(text) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_rewrap_key(text, text) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_finish_index_rotation(text) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_set_key_state(text, int4, text) TO pgcrypt_kms_admin;
-- verifying decrypts (without returning plaintext): the decrypt role
GRANT EXECUTE ON FUNCTION @extschema@.kms_verify(regclass, name, text) TO pgcrypt_kms_decrypt;
GRANT EXECUTE ON PROCEDURE @extschema@.kms_reencrypt_table(regclass, name, int4, text) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_flush_cache() TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_cache_stats() TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT SELECT ON @extschema@.kms_keys TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_version_encryptions(int4) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
