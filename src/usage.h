/*-------------------------------------------------------------------------
 *
 * usage.h
 *		Encryptions per data key version, counted across all backends.
 *
 * AES-GCM with random 96-bit nonces is good for 2^32 encryptions per key
 * (NIST SP 800-38D).  With pgcrypt_kms in shared_preload_libraries every
 * kms_encrypt adds one to a shared atomic counter of its (database, key
 * version); the counters are saved to PGDATA/pgcrypt_kms_usage.dat every
 * PGCK_USAGE_SAVE_EVERY encryptions of a version and at shutdown, and loaded
 * (plus a pad for what a crash may have lost) at startup.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_USAGE_H
#define PGCK_USAGE_H

#include "postgres.h"

#include "port/atomics.h"

#define PGCK_USAGE_SAVE_EVERY	(UINT64CONST(1) << 20)

/* Register the shared memory hooks; only when preloaded. */
extern void pgck_usage_init(void);

/* Is usage counted across backends (was the library preloaded)? */
extern bool pgck_usage_shared(void);

/*
 * Count one encryption under version id of this database; returns the count
 * including it, or 0 when usage is not counted across backends.
 */
extern uint64 pgck_usage_add(uint32 id, pg_atomic_uint64 **slot_cache);

/* The count of a version (NULL-able at SQL level: 0 and *known = false). */
extern uint64 pgck_usage_get(uint32 id, bool *known);

#endif							/* PGCK_USAGE_H */
