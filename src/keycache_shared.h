/*-------------------------------------------------------------------------
 *
 * keycache_shared.h
 *		The cluster's shared cache of unwrapped keys (shared_preload_libraries
 *		and pgcrypt_kms.shared_cache_size > 0).
 *
 * It caches one thing: what a wrapped key unwrapped to, so that each key is
 * unwrapped once per cluster per pgcrypt_kms.cache_ttl.  An entry is found by
 * a SHA-256 digest of (database, KMS key reference, KMS context, wrapped key)
 * and served only if the key-check value the caller read from the keyring
 * matches and it is younger than the caller's cache_ttl.  It decides nothing
 * about key states: every backend still reads its keyring rows (keycache.c)
 * and asks here only for the bytes of a row it found usable.
 *
 * Memory.  Entries, raw keys included, live in one region mapped
 * MAP_SHARED | MAP_ANONYMOUS by the postmaster before it forks (never the
 * main shared memory segment), mlock'd and MADV_DONTDUMP (keymem.h).  A key
 * is wiped when its entry expires, is evicted (least recently used), is
 * flushed, when a transaction that wrote the keyring commits (that database's
 * entries), and when the postmaster exits or reinitializes after a crash.
 *
 * Coherence.  A cluster-wide generation is bumped by every commit that wrote
 * the keyring, after its changes became visible.  A caller reads the
 * generation before it reads the keyring rows and publishes with it; an
 * entry of an older generation is never published or served.  While a
 * prepared transaction that wrote a database's keyring is in progress,
 * nothing of that database is published or served.  Callers
 * never publish (nor consume) from a transaction that wrote the keyring, nor
 * from a parallel worker (whose leader may have written it).
 *
 * One unwrap for many backends.  The first backend that misses claims the
 * entry (loading); others that miss the same digest wait for it (interrupts
 * are served) and then take its result, or unwrap themselves if it failed.
 * A process gives its claims up when it exits; a claim older than
 * pgcrypt_kms.kms_timeout + 5 s is taken over (loaded and published by the
 * taker) or, by a parallel worker, no longer waited for; an orphaned one is
 * freed by the next sweep.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KEYCACHE_SHARED_H
#define PGCK_KEYCACHE_SHARED_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"

#define PGCK_SHCACHE_DIGEST_LEN 32

/* Cluster-wide counters (kms_shared_cache_stats); never key material. */
typedef struct PgckShcacheStats
{
	pg_atomic_uint64 hits;		/* served from the shared cache */
	pg_atomic_uint64 misses;	/* not there (or not usable) */
	pg_atomic_uint64 unwraps;	/* published after an unwrap */
	pg_atomic_uint64 waits;		/* waited for another backend's unwrap */
	pg_atomic_uint64 evictions; /* least recently used, wiped */
	pg_atomic_uint64 expirations;	/* past cache_ttl, wiped */
	pg_atomic_uint64 stale;		/* of an old generation (keyring changed), wiped */
	pg_atomic_uint64 failures;	/* a claimed unwrap failed */
	pg_atomic_uint64 refreshes; /* re-unwrapped before expiry */
	pg_atomic_uint64 refresh_failures;
} PgckShcacheStats;

/* From _PG_init: maps the region and registers hooks, when preloaded. */
extern void pgck_shcache_init(void);

/* Is the shared cache on in this cluster? */
extern bool pgck_shcache_enabled(void);

/* The generation to read before reading keyring rows (see above). */
extern uint64 pgck_shcache_generation(void);

/* Changes whenever an admin flushed the cluster's caches. */
extern uint64 pgck_shcache_flush_count(void);

/* The digest an entry is found by; palloc-free. */
extern void pgck_shcache_digest(const char *kms_key, const char *kms_context,
								const bytea *wrapped, uint8 digest[PGCK_SHCACHE_DIGEST_LEN]);

/*
 * Look for the key of digest.  On a hit, copies it into key_out (a locked
 * slot), sets *unwrapped_at (when the KMS last unwrapped it) and returns
 * true.  On a miss returns false with *claimed true if the caller now loads
 * the entry: it must then call pgck_shcache_publish or pgck_shcache_abandon
 * (also on error); never with may_claim false (a parallel worker).  Waits
 * while another backend loads the same digest; a caller that waited for a
 * load that failed is not given the claim (it unwraps on its own, so a
 * failing KMS is not asked once per waiter in turn).
 */
extern bool pgck_shcache_get(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], uint64 gen,
							 const uint8 *check, bool may_claim, uint8 *key_out,
							 TimestampTz *unwrapped_at, bool *claimed);

/*
 * Fill the claimed entry (copies key); dropped if gen is no longer current.
 * The wrapped key and its KMS reference and context are kept for the
 * refresher; key_name and version only label its log lines.
 */
extern void pgck_shcache_publish(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], uint64 gen,
								 const uint8 *key, const uint8 *check,
								 TimestampTz unwrapped_at, const char *kms_key,
								 const char *kms_context, const bytea *wrapped,
								 const char *key_name, int32 version);

/* Give up a claimed entry (the unwrap failed); waiters unwrap themselves. */
extern void pgck_shcache_abandon(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], bool failed);

/* A transaction that wrote the keyring committed: bump and wipe the database's entries. */
extern void pgck_shcache_keyring_committed(void);

/*
 * A transaction that wrote the keyring was prepared (xid: its top-level
 * xid): bump and wipe as at commit, and share nothing of this database until
 * it is committed or rolled back (prepared transactions are finished where
 * no callback of ours runs; see keycache_shared.c).
 */
extern void pgck_shcache_keyring_prepared(TransactionId xid);

/* Wipe every entry and make every backend flush its own cache (admin). */
extern void pgck_shcache_flush(void);

/* The counters and the number of entries; NULL when the cache is off. */
extern const PgckShcacheStats *pgck_shcache_stats(int *nentries);

/* Count a KMS call in the cluster-wide latency histograms (op: PgckKmsOp). */
extern void pgck_shcache_note_kms_call(int op, double elapsed_ms, bool ok);

/*
 * Queue a key for the unwrap workers (kms_warm_cache); false if it is shared
 * or being unwrapped already, gen is stale, or there is no room (without
 * may_evict, only a free entry is room: a prefetch never evicts).  The
 * arguments are pgck_shcache_publish's; check is the keyring's key-check.
 */
extern bool pgck_shcache_enqueue(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], uint64 gen,
								 const uint8 *check, const char *kms_key,
								 const char *kms_context, const bytea *wrapped,
								 const char *key_name, int32 version, bool may_evict);

/*
 * Unwrap what this backend queued (digests, nqueued of them), up to
 * pgcrypt_kms.unwrap_concurrency at once (workers plus this backend), and wait
 * until all are done.  Returns how many of them the shared cache then holds
 * (an unwrap that failed is logged by whoever tried it); sorts digests.
 */
extern int	pgck_shcache_drain(uint8 (*digests)[PGCK_SHCACHE_DIGEST_LEN], int nqueued);

/*
 * Wipe what this backend queued and no one took yet (the caller's error
 * cleanup between pgck_shcache_enqueue and the end of pgck_shcache_drain).
 */
extern void pgck_shcache_abandon_queued(void);

/* Entries holding a key now. */
extern int	pgck_shcache_count(void);

#endif							/* PGCK_KEYCACHE_SHARED_H */
