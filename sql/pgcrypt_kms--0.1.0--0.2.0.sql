/* pgcrypt_kms 0.1.0 → 0.2.0 (ALTER EXTENSION pgcrypt_kms UPDATE; CREATE EXTENSION runs 0.1.0 and then this) */
\echo Use "ALTER EXTENSION pgcrypt_kms UPDATE" to load this file. \quit

-- ---------------------------------------------------------------- function labels and NULL handling (issue 11)

-- ---------------------------------------------------------------- keyring: KMS key ARNs (issue 11, defect 3)

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
