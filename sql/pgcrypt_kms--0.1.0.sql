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
    index_key_check   bytea,
    prev_index_key_wrapped bytea,   -- kept while an index key rotation is in progress
    prev_index_key_check   bytea,
    index_kms_key     text,
    created           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    destroyed         timestamptz,     -- crypto-shredded: every wrapped key deleted
    CHECK (destroyed IS NOT NULL OR
           (blind_index OPERATOR(pg_catalog.=) 'none') OPERATOR(pg_catalog.=) (index_key_wrapped IS NULL)),
    CHECK (destroyed IS NULL OR (index_key_wrapped IS NULL AND prev_index_key_wrapped IS NULL))
);
COMMENT ON TABLE pgcrypt_kms.keys IS 'column keys: KMS master key, KMS context, blind index settings and the wrapped index key';

CREATE SEQUENCE pgcrypt_kms.key_version_id_seq AS int4 MINVALUE 1;

CREATE TABLE pgcrypt_kms.key_versions (
    id          int4 PRIMARY KEY DEFAULT pg_catalog.nextval('pgcrypt_kms.key_version_id_seq'),
    key_name    text NOT NULL,
    version     int4 NOT NULL CHECK (version > 0),
    kms_key     text NOT NULL,
    wrapped_dek bytea,          -- NULL only once destroyed
    key_check   bytea NOT NULL, -- HMAC of the DEK under a fixed label: which key, not the key
    state       text NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'decrypt-only', 'retired', 'destroyed')),
    created     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (key_name, version),
    CHECK ((state OPERATOR(pg_catalog.=) 'destroyed') OPERATOR(pg_catalog.=) (wrapped_dek IS NULL))
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

-- Crypto-shredding: asks for the name twice.
CREATE FUNCTION @extschema@.kms_destroy_key(name text, confirm_name text) RETURNS int4
    AS 'MODULE_PATHNAME', 'pgck_kms_destroy_key' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.kms_destroy_key(text, text) IS 'crypto-shredding: delete every wrapped key of a key (pass its name twice); its values never decrypt again';

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


------------------------------------------------------------------ online column migration
-- Keeps the shadow column of a migration in step with every INSERT and every
-- UPDATE of the source column.  TG_ARGV: source, shadow, key, 'encrypt' or
-- 'decrypt'.  SECURITY INVOKER: writers need the matching extension role.
CREATE FUNCTION @extschema@.kms_migration_sync() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src text := TG_ARGV[0];
    dst text := TG_ARGV[1];
    val text := to_jsonb(NEW) ->> src;
BEGIN
    IF TG_ARGV[3] = 'encrypt' THEN
        NEW := jsonb_populate_record(NEW, jsonb_build_object(dst, @extschema@.kms_encrypt(val, TG_ARGV[2])));
    ELSE
        NEW := jsonb_populate_record(NEW, jsonb_build_object(dst, @extschema@.kms_decrypt(val::@extschema@.enc_text)));
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@.kms_migration_sync() IS 'trigger of kms_encrypt_column/kms_decrypt_column: keeps the shadow column in step';

-- The engine of kms_encrypt_column and kms_decrypt_column.  Phases, each
-- resumable (the state is the shadow column and its trigger):
--  1. add the shadow column, the sync trigger, a NOT VALID NOT NULL check and
--     (encrypting under a key with a blind index) the blind index on it;
--  2. backfill in committed batches of block ranges, then a catch-up pass;
--  3. validate the NOT NULL check (no write-blocking lock);
--  4. with finish: swap under ACCESS EXCLUSIVE taken with a lock_timeout (a
--     catch-up, drop the old column and its indexes, rename, SET NOT NULL);
--  5. with purge: rewrite every row in committed batches so no live tuple
--     still carries the dropped column's bytes.
-- Procedures cannot pin search_path with SET and COMMIT, so it is set
-- locally after every COMMIT instead.
CREATE PROCEDURE @extschema@.kms_migrate_column(tbl regclass, col name, key text, mode text,
        batch int4, finish bool, purge bool)
LANGUAGE plpgsql AS $$
DECLARE
    shadow name := left(col, 40) || '_pgck_new';
    trig name := left(col, 40) || '_pgck_sync';
    idx name := left(tbl::text, 20) || '_' || left(col, 20) || '_bidx';
    col_type oid;
    col_notnull bool;
    has_shadow bool;
    transform text;
    n bigint;
    total bigint := 0;
    blk bigint;
    maxblk bigint;
    step bigint;
    target text := CASE WHEN mode = 'encrypt' THEN '@extschema@.enc_text' ELSE 'pg_catalog.text' END;
    expr text;
    tries int := 0;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
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
        SELECT k.blind_index INTO transform FROM pgcrypt_kms.keys k WHERE k.key_name = key AND k.destroyed IS NULL;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'key "%" does not exist', key USING ERRCODE = '42704';
        END IF;
        IF col_type = '@extschema@.enc_text'::regtype AND NOT has_shadow THEN
            RAISE NOTICE 'column % of % is already enc_text', col, tbl;
            RETURN;
        END IF;
        IF col_type NOT IN ('pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype, 'pg_catalog.bpchar'::regtype) THEN
            RAISE EXCEPTION 'column "%" of relation % is of type %, not text', col, tbl, col_type::regtype
                USING ERRCODE = '42804';
        END IF;
        expr := format('@extschema@.kms_encrypt(%I::pg_catalog.text, %L)', col, key);
    ELSE
        IF col_type <> '@extschema@.enc_text'::regtype THEN
            IF has_shadow THEN
                NULL;       -- resuming: the swap already happened? no: the shadow holds text
            ELSE
                RAISE NOTICE 'column % of % is not enc_text', col, tbl;
                RETURN;
            END IF;
        END IF;
        expr := format('@extschema@.kms_decrypt(%I)', col);
    END IF;

    -- 1. shadow column, trigger, constraint, blind index
    IF NOT has_shadow THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', tbl, shadow, target);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OF %I ON %s FOR EACH ROW '
                       'EXECUTE FUNCTION @extschema@.kms_migration_sync(%L, %L, %L, %L)',
                       trig, col, tbl, col, shadow, coalesce(key, ''), mode);
        IF col_notnull THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I IS NOT NULL) NOT VALID',
                           tbl, shadow || '_nn', shadow);
        END IF;
        IF mode = 'encrypt' AND transform <> 'none' THEN
            -- the shadow column is empty: one scan, no sort, then kept current by the backfill
            EXECUTE format('CREATE INDEX %I ON %s (@extschema@.kms_blind_index(%I))', idx, tbl, shadow);
        END IF;
        RAISE NOTICE 'kms_migrate_column: % %.%: shadow column % and trigger % created', mode, tbl, col, shadow, trig;
    END IF;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

    -- 2. backfill by block ranges (each committed), then catch up what moved
    SELECT greatest(1, batch / greatest(1, (c.reltuples / greatest(c.relpages, 1))::bigint)),
           pg_catalog.pg_relation_size(tbl) / current_setting('block_size')::bigint
      INTO step, maxblk FROM pg_class c WHERE c.oid = tbl;
    blk := 0;
    WHILE blk <= maxblk LOOP
        EXECUTE format('UPDATE %s SET %I = %s WHERE ctid >= $1::tid AND ctid < $2::tid AND %I IS NULL AND %I IS NOT NULL',
                       tbl, shadow, expr, shadow, col)
          USING format('(%s,0)', blk)::tid, format('(%s,0)', blk + step)::tid;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        blk := blk + step;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END LOOP;
    LOOP
        EXECUTE format('UPDATE %s SET %I = %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s WHERE %I IS NULL AND %I IS NOT NULL LIMIT %s FOR UPDATE))',
                       tbl, shadow, expr, tbl, shadow, col, batch);
        GET DIAGNOSTICS n = ROW_COUNT;
        EXIT WHEN n = 0;
        total := total + n;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    END LOOP;
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
    EXECUTE format('UPDATE %s SET %I = %s WHERE %I IS NULL AND %I IS NOT NULL', tbl, shadow, expr, shadow, col);
    EXECUTE format('DROP TRIGGER %I ON %s', trig, tbl);
    EXECUTE format('ALTER TABLE %s DROP COLUMN %I', tbl, col);
    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', tbl, shadow, col);
    IF col_notnull THEN
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, col);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', tbl, shadow || '_nn');
    END IF;
    PERFORM pg_catalog.set_config('lock_timeout', '0', true);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    RAISE NOTICE 'kms_migrate_column: %.% is now %', tbl, col, target;

    -- 5. purge: no live row keeps the dropped column's bytes
    IF purge THEN
        maxblk := pg_catalog.pg_relation_size(tbl) / current_setting('block_size')::bigint;
        blk := 0;
        WHILE blk <= maxblk LOOP
            EXECUTE format('UPDATE %s SET %I = %I WHERE ctid >= $1::tid AND ctid < $2::tid', tbl, col, col)
              USING format('(%s,0)', blk)::tid, format('(%s,0)', blk + step)::tid;
            blk := blk + step;
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        END LOOP;
        RAISE NOTICE 'kms_migrate_column: every row of % rewritten; run VACUUM % and CHECKPOINT to remove the old row versions', tbl, tbl;
    END IF;
END
$$;
COMMENT ON PROCEDURE @extschema@.kms_migrate_column(regclass, name, text, text, int4, bool, bool) IS 'engine of kms_encrypt_column and kms_decrypt_column';

CREATE PROCEDURE @extschema@.kms_encrypt_column(tbl regclass, col name, key text,
        batch int4 DEFAULT 10000, finish bool DEFAULT true, purge bool DEFAULT false)
LANGUAGE plpgsql AS $$ BEGIN CALL @extschema@.kms_migrate_column(tbl, col, key, 'encrypt', batch, finish, purge); END $$;
COMMENT ON PROCEDURE @extschema@.kms_encrypt_column(regclass, name, text, int4, bool, bool) IS 'online, batched, resumable migration of a text column to enc_text';

CREATE PROCEDURE @extschema@.kms_decrypt_column(tbl regclass, col name,
        batch int4 DEFAULT 10000, finish bool DEFAULT true, purge bool DEFAULT false)
LANGUAGE plpgsql AS $$ BEGIN CALL @extschema@.kms_migrate_column(tbl, col, NULL, 'decrypt', batch, finish, purge); END $$;
COMMENT ON PROCEDURE @extschema@.kms_decrypt_column(regclass, name, int4, bool, bool) IS 'online, batched, resumable migration of an enc_text column back to text';

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
REVOKE ALL ON FUNCTION @extschema@.kms_destroy_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.kms_migration_sync() FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.kms_migrate_column(regclass, name, text, text, int4, bool, bool) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.kms_encrypt_column(regclass, name, text, int4, bool, bool) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.kms_decrypt_column(regclass, name, int4, bool, bool) FROM PUBLIC;
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
GRANT EXECUTE ON FUNCTION @extschema@.kms_destroy_key(text, text) TO pgcrypt_kms_admin;
-- migrations run as the table owner (ALTER TABLE); writers during one need the matching role
GRANT EXECUTE ON FUNCTION @extschema@.kms_migration_sync() TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON PROCEDURE @extschema@.kms_migrate_column(regclass, name, text, text, int4, bool, bool) TO pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON PROCEDURE @extschema@.kms_encrypt_column(regclass, name, text, int4, bool, bool) TO pgcrypt_kms_encrypt;
GRANT EXECUTE ON PROCEDURE @extschema@.kms_decrypt_column(regclass, name, int4, bool, bool) TO pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_finish_index_rotation(text) TO pgcrypt_kms_admin;
GRANT EXECUTE ON FUNCTION @extschema@.kms_set_key_state(text, int4, text) TO pgcrypt_kms_admin;
-- verifying decrypts (without returning plaintext): the decrypt role
GRANT EXECUTE ON FUNCTION @extschema@.kms_verify(regclass, name, text) TO pgcrypt_kms_decrypt;
GRANT EXECUTE ON PROCEDURE @extschema@.kms_reencrypt_table(regclass, name, int4, text) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_flush_cache() TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_cache_stats() TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT SELECT ON @extschema@.kms_keys TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
GRANT EXECUTE ON FUNCTION @extschema@.kms_version_encryptions(int4) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;
