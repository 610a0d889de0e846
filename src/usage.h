/*-------------------------------------------------------------------------
 *
 * usage.h
 *		Encryptions per data key, counted across all backends of the cluster
 *		that may write with it.
 *
 * AES-GCM with random 96-bit nonces is good for 2^32 encryptions per key
 * (NIST SP 800-38D).  With pgcrypt_kms in shared_preload_libraries every
 * kms_encrypt adds one to a shared atomic counter of its DEK; the counters
 * are saved to PGDATA/pgcrypt_kms_usage.dat every PGCK_USAGE_SAVE_EVERY
 * encryptions of a DEK and at shutdown, and loaded at startup: exact after
 * a clean shutdown, else plus a pad for what a crash may have lost.
 *
 * A counter belongs to a DEK, not to a version id: it is keyed by the random
 * nonce space stored with the version (key_versions.nonce_space), so a
 * version id reused after DROP/CREATE EXTENSION, or a keyring restored into
 * another database of the same cluster, never restarts or shares a count by
 * accident.  A counter lives in one cluster: each version records the
 * cluster that created it (system identifier and timeline), and no other
 * cluster encrypts with it (see pgck_usage_add).  Without preloading, a
 * backend counts only its own encryptions and warns once that it does.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_USAGE_H
#define PGCK_USAGE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"

#define PGCK_USAGE_SAVE_EVERY	(UINT64CONST(1) << 20)

/*
 * Returned by pgck_usage_add for a version created by another cluster (a
 * restored copy, a promoted standby, a point-in-time recovery): nothing was
 * counted, and the caller must not encrypt under this version; it must
 * rotate the key (waiting for a rotation under way, if any) and encrypt
 * under the new version.  Larger than any rotation threshold.
 */
#define PGCK_USAGE_FOREIGN		PG_UINT64_MAX

/* Register the shared memory hooks; only when preloaded. */
extern void pgck_usage_init(void);

/* Why a version's count is not known (pgck_usage_version_lost) */
typedef enum PgckUsageLoss
{
	PGCK_USAGE_COUNTED = 0,		/* known: not lost */
	PGCK_USAGE_LOST_DAMAGED,	/* lost with a damaged counts file */
	PGCK_USAGE_LOST_MISSING		/* lost with a missing counts file */
} PgckUsageLoss;

/*
 * Did a version created at this time lose its count, to a damaged or missing
 * counts file at this cluster's start or an earlier one?  Then it must be
 * rotated before it encrypts again.  counter is what pgck_usage_add left in
 * the version's *slot_cache (NULL if nothing): a version this cluster created
 * since its start (pgck_usage_note_created) is never lost, even when a clock
 * stepped back makes it look older than the loss.
 */
extern PgckUsageLoss pgck_usage_version_lost(TimestampTz created,
											 const pg_atomic_uint64 *counter);

/*
 * Version id was just created by this transaction (a new key or a rotation):
 * remember that this start counted it from its first encryption, for
 * pgck_usage_version_lost.  Reads the keyring; a rolled-back creation only
 * costs a counter slot.
 */
extern void pgck_usage_note_created(uint32 id);

/* Is usage counted across backends (was the library preloaded)? */
extern bool pgck_usage_shared(void);

/*
 * Count one encryption under version id of this database; returns the count
 * including it.  *slot_cache must start NULL for each cached version (the
 * first call per version reads the version's row through the keyring, later
 * calls only add); the pointer it keeps is valid for the backend's life.
 *
 * The first call for a version created by another cluster returns
 * PGCK_USAGE_FOREIGN (leaving *slot_cache NULL) when this transaction could
 * rotate the key (not in recovery, not read-only, not in parallel mode), and
 * ereports 55000 otherwise.  Without preloading the count is this backend's
 * only, and the first call in a backend warns.
 */
extern uint64 pgck_usage_add(uint32 id, pg_atomic_uint64 **slot_cache);

/*
 * May this cluster encrypt under version id?  False for a version created by
 * another cluster.  Reads the keyring; meant for a caller that checks before
 * it counts (pgck_usage_add does the same check itself).
 */
extern bool pgck_usage_version_writable_here(uint32 id);

/* The count of a version (NULL-able at SQL level: 0 and *known = false). */
extern uint64 pgck_usage_get(uint32 id, bool *known);

#endif							/* PGCK_USAGE_H */
