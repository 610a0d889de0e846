/*-------------------------------------------------------------------------
 *
 * keycache.h
 *		This backend's cache of unwrapped keys.
 *
 * Raw key bytes live only in locked key memory (keymem.h), wiped on
 * eviction, expiry, kms_flush_cache() and at backend exit.  The cache asks
 * the keyring (keyring.h) for rows and unwraps; the keyring never calls into
 * the cache: what kms_create_key() and rotations generate, the keyring
 * returns and the cache installs.  Keyed OpenSSL objects (PgckAead, PgckHmac) are built once
 * per cached key.
 *
 * Entries expire pgcrypt_kms.cache_ttl after they were unwrapped (checked
 * against the statement start time, or the transaction's inside a procedure
 * that commits, so one statement never sees a key vanish halfway).  Any
 * change to the keyring tables (trigger → relcache invalidation) makes every
 * entry re-check its row before its next use; invalidation messages are
 * accepted once per statement.  Nothing installed or read while this
 * backend's own keyring changes were uncommitted survives an abort of them
 * (transaction or savepoint).
 *
 * Returned pointers are valid until the next call into this module.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KEYCACHE_H
#define PGCK_KEYCACHE_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "aead.h"
#include "keyring.h"
#include "kms.h"
#include "lib/ilist.h"
#include "port/atomics.h"

typedef struct PgckCachedVersion
{
	uint32		id;				/* hash key */
	int32		version;
	PgckKeyState state;
	char		key_name[PGCK_KEY_NAME_MAX + 1];
	uint8	   *dek;			/* locked slot */
	uint8		check[PGCK_KEY_CHECK_LEN];	/* key-check value of dek */
	PgckAead   *aead;
	TimestampTz unwrapped_at;
	TimestampTz created;		/* of the version, for dek_max_age */
	pg_atomic_uint64 *usage;	/* shared encryption counter, once known */
	TimeLineID	usage_tli;		/* the timeline usage was resolved on */
	TimestampTz rotation_tried;	/* statement that last tried to auto-rotate */
	uint64		validated_gen;
	dlist_node	lru;
} PgckCachedVersion;

typedef struct PgckCachedKey
{
	char		name[PGCK_KEY_NAME_MAX + 1];	/* hash key */
	uint32		current_id;
	PgckTransform transform;
	int			index_bits;
	int			index_key_version;
	uint8	   *index_key;		/* locked slot, NULL without blind index */
	uint8		index_check[PGCK_KEY_CHECK_LEN];
	PgckHmac   *hmac;
	PgckHmac   *hmac_prev;		/* previous index key, during its rotation */
	uint8	   *index_key_prev;	/* locked slot: the previous index key, during its
								 * rotation (order probes of the previous epoch) */
	TimestampTz unwrapped_at;
	uint64		validated_gen;
} PgckCachedKey;

typedef struct PgckCacheStats
{
	int64		hits;
	int64		misses;
	int64		unwraps;
	int64		evictions;
	int64		expirations;
	int64		decrypt_failures;
	int64		access_denials;
	int64		kms_refusals;	/* every refused unwrap, denials included */
	int64		shared_hits;	/* keys taken from the shared cache, not unwrapped */
	int64		kms_fallbacks;	/* unwraps through an additional wrapping (issue 15) */
	int64		calls[PGCK_NUM_OPS];
	int64		errors[PGCK_NUM_OPS];
	int64		retries[PGCK_NUM_OPS];
	double		ms_total[PGCK_NUM_OPS];
	double		ms_max[PGCK_NUM_OPS];
} PgckCacheStats;

extern PgckCacheStats pgck_stats;

/*
 * Changes whenever a cached version or key may have been removed or become
 * stale (eviction, expiry, flush, keyring invalidation).  A caller may keep a
 * PgckCachedVersion or PgckCachedKey pointer for the rest of the same
 * statement as long as this value has not changed (TTLs are measured
 * against the statement start, and invalidations arrive only through calls
 * that bump it).
 */
extern uint64 pgck_keycache_epoch;

extern void pgck_keycache_init(void);

/*
 * The time cache TTLs are measured against: the later of the statement's and
 * the transaction's start (a procedure's COMMIT starts a new period).  Memos
 * that live for "one statement" must key on this value.
 */
extern TimestampTz pgck_keycache_now(void);

/* The key's cache entry, with its current version id and blind-index MAC. */
extern PgckCachedKey *pgck_keycache_key(const char *name);

/* A version usable for decryption (ereports on unknown or retired). */
extern PgckCachedVersion *pgck_keycache_version(uint32 id);

/*
 * Is version id a version of key key_name?  From the cached version or the
 * keyring row, nothing unwrapped; an id not in the keyring answers true (the
 * decrypt that follows reports it).
 */
extern bool pgck_keycache_version_of_key(uint32 id, const char *key_name);

/*
 * The hit path of pgck_keycache_key / pgck_keycache_version for an entry the
 * caller got from them in an earlier statement, without the hash lookup: the
 * same checks (invalidations taken in once per statement, keyring row still
 * validated, TTL not passed).  False: look the entry up again.  Only for a
 * pointer kept while pgck_keycache_epoch stayed unchanged, and the caller
 * re-checks the epoch after the call (taking in invalidations can bump it).
 */
extern bool pgck_keycache_key_usable(PgckCachedKey *k);
extern bool pgck_keycache_version_usable(PgckCachedVersion *v);

/*
 * Put a data key that was just generated (kms_create_key, kms_rotate_key)
 * into the cache, saving an unwrap.  dek is copied.
 */
extern void pgck_keycache_install(uint32 id, const char *key_name, int32 version,
								  const uint8 *dek);

/* Make the next pgck_keycache_key(name) re-read its keyring row. */
extern void pgck_keycache_forget_key(const char *name);

/*
 * Count an encryption under v (across backends when preloaded); rotate the
 * key when v reached pgcrypt_kms.dek_rotate_after encryptions or
 * pgcrypt_kms.dek_max_age, and refuse at twice the count.  Returns true if
 * it rotated (or found the key rotated): the caller must look the key up
 * again, v may be gone and is no longer the active version.
 */
extern bool pgck_keycache_count_encryption(PgckCachedVersion *v);

/*
 * Unwrap the usable ones of n key version ids ahead of use (kms_warm_cache):
 * concurrently into the shared cache when there is one, else into this
 * backend's cache.  Returns how many it unwrapped; *failed is how many the
 * shared cache's workers could not unwrap (without the shared cache a failed
 * unwrap raises its error).
 */
extern int	pgck_keycache_warm(const uint32 *ids, int n, int *failed);

/* The name of a KMS operation (PgckKmsOp), as kms_cache_stats() shows it. */
extern const char *pgck_kms_op_name(int op);

/* Count and log (once per statement) a value that failed to decrypt. */
extern void pgck_note_decrypt_failure(const char *key_name, int32 version, int sqlerrcode);

#endif							/* PGCK_KEYCACHE_H */
