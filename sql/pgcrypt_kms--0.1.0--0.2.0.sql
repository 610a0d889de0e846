/* pgcrypt_kms 0.1.0 -> 0.2.0 (ALTER EXTENSION pgcrypt_kms UPDATE; CREATE EXTENSION runs 0.1.0 and then this) */
\echo Use "ALTER EXTENSION pgcrypt_kms UPDATE" to load this file. \quit

-- ---------------------------------------------------------------- function labels and NULL handling (issue 11)
-- A non-NULL plaintext never comes back NULL: kms_encrypt, kms_decrypt and
-- kms_reencrypt are no longer STRICT.  A NULL value still gives NULL; a NULL
-- key name or context is refused with 22004 instead of silently returning NULL.
ALTER FUNCTION @extschema@.kms_encrypt(text, text) CALLED ON NULL INPUT;
ALTER FUNCTION @extschema@.kms_encrypt(text, text, text) CALLED ON NULL INPUT;
ALTER FUNCTION @extschema@.kms_decrypt(@extschema@.enc_text, text) CALLED ON NULL INPUT;
ALTER FUNCTION @extschema@.kms_reencrypt(@extschema@.enc_text, text) CALLED ON NULL INPUT;

-- kms_cache_stats() gains kms_refusals: every unwrap the KMS refused (access
-- denied, key disabled or pending deletion, not found, incorrect key, a
-- returned key that fails its key-check value), each also logged at LOG.
DROP FUNCTION @extschema@.kms_cache_stats();
CREATE FUNCTION @extschema@.kms_cache_stats(
        OUT hits int8, OUT misses int8, OUT unwraps int8, OUT evictions int8,
        OUT expirations int8, OUT cached_versions int4,
        OUT kms_calls int8, OUT kms_errors int8, OUT kms_retries int8,
        OUT kms_ms_avg float8, OUT kms_ms_max float8, OUT decrypt_failures int8,
        OUT kms_access_denials int8, OUT by_operation jsonb, OUT kms_refusals int8)
    AS 'MODULE_PATHNAME', 'pgck_kms_cache_stats' LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.kms_cache_stats() IS 'this backend''s key cache and KMS call counters';
REVOKE ALL ON FUNCTION @extschema@.kms_cache_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_cache_stats() TO pgcrypt_kms_admin, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt;

-- kms_encrypt_column / kms_decrypt_column ran only for superusers: the engine
-- read pgcrypt_kms.keys, a schema the extension's roles have no USAGE on.  It
-- now reads the kms_keys view, which the three roles may SELECT, and no longer
-- echoes a name that names no key.
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
    idx := left(tbl::text, 20) || '_' || left(col, 20) || '_bidx';
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
    -- under the lock: every row's shadow must equal its source.  With the
    -- right to decrypt, verify all of them (decrypting), and fix any that
    -- differ; without it, fill the rows still missing one.
    IF pg_catalog.has_function_privilege('@extschema@.kms_decrypt(@extschema@.enc_text)', 'EXECUTE') THEN
        IF mode = 'encrypt' THEN
            EXECUTE format('UPDATE %s SET %I = %s WHERE %I IS NOT NULL AND @extschema@.kms_decrypt(%I) IS DISTINCT FROM %I::pg_catalog.text',
                           tbl, shadow, expr, col, shadow, col);
        ELSE
            EXECUTE format('UPDATE %s SET %I = %s WHERE %I IS DISTINCT FROM @extschema@.kms_decrypt(%I)',
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

-- The re-check for truncated tags also for values encrypted with a context
-- (the three-argument form decrypts without one, so such values always failed).
CREATE FUNCTION @extschema@.kms_blind_index_match(value @extschema@.enc_text, plaintext text, key_name text, context text) RETURNS bool
    AS 'MODULE_PATHNAME', 'pgck_kms_blind_index_match' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text, text) IS 'kms_blind_index_match for a value encrypted with a context';
REVOKE ALL ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.kms_blind_index_match(@extschema@.enc_text, text, text, text) TO pgcrypt_kms_decrypt;

-- The keyring's triggers fire also when session_replication_role is replica
-- (logical replication apply, some restore tools): a keyring change applied
-- that way still reaches every backend's key cache at once.
ALTER TABLE pgcrypt_kms.keys ENABLE ALWAYS TRIGGER keys_changed;
ALTER TABLE pgcrypt_kms.key_versions ENABLE ALWAYS TRIGGER key_versions_changed;

-- The migration's sync trigger now fires on every INSERT and UPDATE (see
-- kms_migrate_column): an UPDATE that leaves the source column as it was and
-- the shadow filled keeps the shadow (no re-encryption for every write).
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
        NEW := jsonb_populate_record(NEW, jsonb_build_object(dst, @extschema@.kms_encrypt(val, TG_ARGV[2])));
    ELSE
        NEW := jsonb_populate_record(NEW, jsonb_build_object(dst, @extschema@.kms_decrypt(val::@extschema@.enc_text)));
    END IF;
    RETURN NEW;
END
$$;

-- kms_verify opens subtransactions (one per key version it loads), which a
-- parallel worker or a Gather's leader cannot: PARALLEL UNSAFE.
ALTER FUNCTION @extschema@.kms_verify(regclass, name, text) PARALLEL UNSAFE;

-- ---------------------------------------------------------------- keyring: KMS key ARNs (issue 11, defect 3)
-- The key ARN the KMS reported (GenerateDataKey / ReEncrypt / Decrypt KeyId)
-- for each wrapped key.  Unwrapping sends it instead of the reference as
-- given, so re-pointing an alias (aws kms update-alias) no longer orphans
-- existing versions.  NULL: not known yet (a row written by 0.1.0, resolved
-- and stored at its first successful unwrap) or a provider without ARNs
-- (local:).  The tables stay extension configuration tables: pg_dump
-- carries the new columns with the rest of each row.
ALTER TABLE pgcrypt_kms.key_versions ADD COLUMN kms_key_arn text;
ALTER TABLE pgcrypt_kms.keys ADD COLUMN index_kms_key_arn text;
-- the previous index key's, meaningful while prev_index_key_wrapped is set
ALTER TABLE pgcrypt_kms.keys ADD COLUMN prev_index_kms_key_arn text;
COMMENT ON COLUMN pgcrypt_kms.key_versions.kms_key_arn IS 'key ARN the KMS reported for wrapped_dek (NULL: not known yet, or local:)';
COMMENT ON COLUMN pgcrypt_kms.keys.index_kms_key_arn IS 'key ARN the KMS reported for index_key_wrapped (NULL: not known yet, or local:)';
COMMENT ON COLUMN pgcrypt_kms.keys.prev_index_kms_key_arn IS 'key ARN the KMS reported for prev_index_key_wrapped (NULL: not known yet, or local:)';

CREATE OR REPLACE VIEW @extschema@.kms_keys AS
    SELECT v.key_name, v.version, v.id AS version_id, v.state,
           v.state OPERATOR(pg_catalog.=) 'active' AS current,
           v.kms_key, k.kms_context, k.blind_index, k.index_bits, v.created,
           @extschema@.kms_version_encryptions(v.id) AS encryptions,
           v.kms_key_arn, k.index_kms_key_arn
      FROM pgcrypt_kms.key_versions v
      JOIN pgcrypt_kms.keys k ON k.key_name OPERATOR(pg_catalog.=) v.key_name;

-- ---------------------------------------------------------------- keyring: nonce counts tied to a cluster (issue 11, defect 7)
-- A data key version's encryption count lives in the shared memory (and the
-- PGDATA pad file) of one cluster.  Each version records the cluster that
-- created it -- its system identifier and the timeline it was on, so a
-- restored copy (new system identifier) and a promoted standby or a
-- point-in-time recovery (new timeline) are told apart -- and a random nonce
-- space that identifies its DEK wherever the row is copied, so a count is
-- kept per DEK, not per reusable version id.  An encryption under a version
-- created elsewhere rotates the key first (or, where it cannot rotate, is
-- refused with 55000).  Existing versions are adopted by the cluster that
-- runs this update.
CREATE FUNCTION pgcrypt_kms.cluster_system_id() RETURNS int8
    AS 'MODULE_PATHNAME', 'pgck_cluster_system_id' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
-- VOLATILE: a promotion changes the timeline under a running server.
CREATE FUNCTION pgcrypt_kms.cluster_timeline() RETURNS int8
    AS 'MODULE_PATHNAME', 'pgck_cluster_timeline' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION pgcrypt_kms.cluster_system_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION pgcrypt_kms.cluster_timeline() FROM PUBLIC;
COMMENT ON FUNCTION pgcrypt_kms.cluster_system_id() IS 'this cluster''s system identifier (pg_control), as recorded with each key version it creates';
COMMENT ON FUNCTION pgcrypt_kms.cluster_timeline() IS 'this cluster''s WAL timeline (replay timeline on a standby), as recorded with each key version it creates';

ALTER TABLE pgcrypt_kms.key_versions
    ADD COLUMN writer_system_id int8 NOT NULL DEFAULT pgcrypt_kms.cluster_system_id(),
    ADD COLUMN writer_timeline int8 NOT NULL DEFAULT pgcrypt_kms.cluster_timeline(),
    ADD COLUMN nonce_space uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid();
COMMENT ON COLUMN pgcrypt_kms.key_versions.writer_system_id IS 'system identifier of the cluster that created the version and counts its encryptions';
COMMENT ON COLUMN pgcrypt_kms.key_versions.writer_timeline IS 'timeline that cluster was on: a promoted standby or a point-in-time recovery is another writer';
COMMENT ON COLUMN pgcrypt_kms.key_versions.nonce_space IS 'random id of the version''s DEK: its encryption counter, whatever the version id';

-- ---------------------------------------------------------------- procedures (issue 11, issue 19)
-- kms_reencrypt_table always makes progress or stops (issue 19).  Each batch
-- must move at least one of the values it re-encrypted off the key versions
-- the batch found them on; a batch that moves none while values remain (a
-- trigger or rule writing the old values back, a key cache that missed an
-- invalidation and re-encrypts under a stale version) raises 55000 instead of
-- looping for ever at full CPU.  So every batch either shrinks the set of
-- values left (which is finite) or ends the call.  Same signature: CREATE OR
-- REPLACE keeps the owner and the grants (admin and encrypt roles), restated
-- below.  The batch is chosen and locked first (sel, evaluated once), then
-- updated by ctid as in 0.1.0, so a row a concurrent writer changed is
-- re-read under the lock and never overwritten.
CREATE OR REPLACE PROCEDURE @extschema@.kms_reencrypt_table(tbl regclass, col name,
        batch int4 DEFAULT 10000, context text DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    current_ids int4[];
    n bigint;
    moved bigint;
    total bigint := 0;
    ctx_expr text := CASE WHEN context IS NULL THEN '' ELSE ', ' OPERATOR(pg_catalog.||) context END;
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
    -- columns, row security policies.  As for REINDEX and VACUUM, only the
    -- table's owner (or a member of its role) may run it: an owner's code
    -- must never run as the admin (or superuser) doing maintenance for them.
    IF NOT pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                    WHERE c.oid OPERATOR(pg_catalog.=) tbl::pg_catalog.oid), 'MEMBER') THEN
        RAISE EXCEPTION 'must be the owner of table % (or a member of its role) to re-encrypt it', tbl
            USING ERRCODE = '42501',
                  DETAIL = 'The table''s triggers, rules, index expressions, constraints and policies would run with your privileges.',
                  HINT = 'Run kms_reencrypt_table as the table''s owner (SET ROLE to it), with the pgcrypt_kms_encrypt role.';
    END IF;
    IF batch IS NULL OR batch OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch must be at least 1' USING ERRCODE = '22023';
    END IF;
    LOOP
        SELECT pg_catalog.array_agg(version_id) INTO current_ids
          FROM @extschema@.kms_keys WHERE current;
        EXECUTE pg_catalog.format(
            'WITH sel AS MATERIALIZED ('
            '  SELECT ctid AS tid, @extschema@.kms_version_id(%I) AS old_id FROM %s WHERE %I IS NOT NULL'
            '     AND NOT (@extschema@.kms_version_id(%I) OPERATOR(pg_catalog.=) ANY ($1))'
            '   LIMIT $2 FOR UPDATE),'
            ' upd AS ('
            '  UPDATE %s SET %I = @extschema@.kms_reencrypt(%I%s)'
            '   WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT tid FROM sel))'
            '  RETURNING @extschema@.kms_version_id(%I) AS new_id)'
            ' SELECT pg_catalog.count(*),'
            '        pg_catalog.count(*) FILTER (WHERE new_id IS NULL OR NOT (new_id OPERATOR(pg_catalog.=) ANY'
            '                                    (ARRAY(SELECT old_id FROM sel))))'
            '   FROM upd',
            col, tbl, col, col, tbl, col, col, ctx_expr, col)
          INTO n, moved
          USING COALESCE(current_ids, '{}'), batch;
        EXIT WHEN n OPERATOR(pg_catalog.=) 0;
        IF moved OPERATOR(pg_catalog.=) 0 THEN
            RAISE EXCEPTION 'could not move the values of %.% onto their keys'' current versions', tbl, col
                USING ERRCODE = '55000',
                      DETAIL = pg_catalog.format('A batch re-encrypted %s values and every one of them is still on the key version it had; %s values were re-encrypted before it.',
                                                 n, total),
                      HINT = 'A trigger or rule on the table may be writing the old values back: disable it during the re-encryption and call the procedure again.';
        END IF;
        total := total OPERATOR(pg_catalog.+) n;
        RAISE NOTICE 'kms_reencrypt_table: % rows of %.% re-encrypted so far', total, tbl, col;
        COMMIT;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE @extschema@.kms_reencrypt_table(regclass, name, int4, text) IS 'move every value of a column onto its key''s current version, one committed batch at a time; stops with an error when a batch moves nothing';
REVOKE ALL ON PROCEDURE @extschema@.kms_reencrypt_table(regclass, name, int4, text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.kms_reencrypt_table(regclass, name, int4, text) TO pgcrypt_kms_admin, pgcrypt_kms_encrypt;
