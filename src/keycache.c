/*-------------------------------------------------------------------------
 *
 * keycache.c
 *		This backend's cache of unwrapped keys, its locked key memory, and the
 *		counters behind kms_cache_stats(); see keycache.h for the rules.
 *
 * All state is backend-local and lives in the "pgcrypt_kms key cache" memory
 * context under TopMemoryContext, except raw key bytes (locked arena) and
 * OpenSSL objects (malloc'd by OpenSSL, cleansed by it when freed).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "storage/ipc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "access/xlog.h"
#include "citus.h"
#include "guc.h"
#include "enc_typed.h"
#include "keycache.h"
#include "keycache_shared.h"
#include "keymem.h"
#include "usage.h"
#include "pgck_errcodes.h"

PgckCacheStats pgck_stats;

static MemoryContext cache_context = NULL;
static HTAB *version_cache = NULL;
static HTAB *key_cache = NULL;
static dlist_head version_lru = DLIST_STATIC_INIT(version_lru);
static int	version_count = 0;

/* bumped by every invalidation of the keyring; entries re-check their row */
static uint64 cache_gen = 1;

/* bumped whenever a cached version may have gone or gone stale; see keycache.h */
uint64		pgck_keycache_epoch = 1;
static TimestampTz last_statement = 0;
static uint64 flushes_seen = 0;

static void note_kms_refusal(const char *key_name, int32 version, int sqlerrcode);
static void maybe_prefetch(TimestampTz now);
static void sweep_expired(void);

static const char *const op_names[PGCK_NUM_OPS] = {
	"GenerateDataKey", "Decrypt", "ReEncrypt", "Encrypt", "DescribeKey",
	"GenerateRandom", "Credentials"
};

/* ---------------------------------------------------------------- entries */

static void
version_release(PgckCachedVersion *v)
{
	pgck_keycache_epoch++;
	pgck_aead_free(v->aead);
	v->aead = NULL;
	pgck_locked_free(v->dek);
	v->dek = NULL;
	dlist_delete(&v->lru);
	version_count--;
	hash_search(version_cache, &v->id, HASH_REMOVE, NULL);
}

static void
key_release_index_key(PgckCachedKey *k)
{
	pgck_keycache_epoch++;
	pgck_hmac_free(k->hmac);
	k->hmac = NULL;
	pgck_hmac_free(k->hmac_prev);
	k->hmac_prev = NULL;
	pgck_locked_free(k->index_key_prev);
	k->index_key_prev = NULL;
	pgck_locked_free(k->index_key);
	k->index_key = NULL;
}

static void
key_release(PgckCachedKey *k)
{
	pgck_keycache_epoch++;
	key_release_index_key(k);
	hash_search(key_cache, k->name, HASH_REMOVE, NULL);
}

static void
cache_flush_all(void)
{
	HASH_SEQ_STATUS status;
	PgckCachedVersion *v;
	PgckCachedKey *k;

	if (version_cache == NULL)
		return;
	pgck_keycache_epoch++;
	hash_seq_init(&status, version_cache);
	while ((v = hash_seq_search(&status)) != NULL)
	{
		pgck_aead_free(v->aead);
		pgck_locked_free(v->dek);
		hash_search(version_cache, &v->id, HASH_REMOVE, NULL);
	}
	dlist_init(&version_lru);
	version_count = 0;
	hash_seq_init(&status, key_cache);
	while ((k = hash_seq_search(&status)) != NULL)
	{
		key_release_index_key(k);
		hash_search(key_cache, k->name, HASH_REMOVE, NULL);
	}
}

/*
 * At process exit, before key memory wipes its arena: free the keyed OpenSSL
 * contexts (OpenSSL cleanses them) along with the entries.
 */
static void
keycache_release(void)
{
	cache_flush_all();
}

/*
 * Every cached entry re-checks its keyring row before its next use.  Entries
 * are never trusted across such a change, whatever created them.
 */
static void
invalidate_all(void)
{
	cache_gen++;
	pgck_keycache_epoch++;
}

/*
 * A change to the keyring tables (their statement trigger sends a relcache
 * invalidation, delivered here at the next command, at commit in other
 * backends, and again in this backend on abort), or a reset of all relcache
 * entries.  The OIDs are kept: if the tables are dropped, that drop is itself
 * an invalidation, and the next keyring read records the new OIDs.
 */
static bool standby_keyring_changed = false;

static void
keycache_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || pgck_keyring_is_keyring_rel(relid))
	{
		invalidate_all();

		/*
		 * On a standby the keyring changes by WAL replay, where no callback
		 * of ours runs: the invalidation it sends is the only news, so this
		 * backend wipes the shared entries of its database at its next
		 * keyring read (shared_generation), not here, where the shared
		 * cache's lock may not be taken.  On a primary the committing
		 * backend has done so (keycache_xact_cb).
		 */
		if (RecoveryInProgress())
			standby_keyring_changed = true;
	}
}

/*
 * The shared cache's generation for this database, read before keyring
 * rows (see keycache_shared.h); first, on a standby, the shared entries of
 * this database are wiped when a replayed keyring change reached this
 * backend, so that a destroyed key's bytes do not stay until cache_ttl.
 */
static uint64
shared_generation(void)
{
	if (standby_keyring_changed)
	{
		standby_keyring_changed = false;
		pgck_shcache_keyring_committed();
	}
	return pgck_shcache_generation();
}

/*
 * Entries installed by this transaction (kms_create_key, rotations) and rows
 * it read while its own keyring writes were uncommitted must not outlive an
 * abort of the transaction or of the savepoint that made them.  Whenever this
 * backend wrote the keyring or installed an entry in the current top-level
 * transaction, any abort (top-level or subtransaction) invalidates every
 * entry; they re-check their rows, which then no longer show the aborted
 * changes.  Independent of the relcache callback, so it holds even if the
 * keyring OIDs are not known yet.
 */
static bool keyring_touched_in_xact = false;

static void
note_keyring_write(void)
{
	keyring_touched_in_xact = true;
	invalidate_all();
}

/* pgck_keyring_changed's memo: the last table, subtransaction and command */
static Oid	changed_relid = InvalidOid;
static SubTransactionId changed_subid;
static CommandId changed_cid;

static void
keycache_xact_cb(XactEvent event, void *arg)
{
	/* pgck_keyring_changed's memo is of this transaction only */
	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PARALLEL_PRE_COMMIT &&
		event != XACT_EVENT_PRE_PREPARE)
		changed_relid = InvalidOid;
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (keyring_touched_in_xact)
				invalidate_all();
			keyring_touched_in_xact = false;
			break;
		case XACT_EVENT_COMMIT:

			/*
			 * Its keyring changes are visible now: what other backends
			 * publish from here on shows them, and the shared entries of
			 * this database from before (a destroyed key's included) are
			 * wiped.
			 */
			if (keyring_touched_in_xact)
				pgck_shcache_keyring_committed();
			keyring_touched_in_xact = false;
			sweep_expired();
			break;
		case XACT_EVENT_PREPARE:

			/*
			 * Its changes become visible at COMMIT PREPARED, maybe in another
			 * backend, where nothing of ours runs: the shared cache wipes
			 * this database's entries now and shares none until the prepared
			 * transaction has ended.
			 */
			if (keyring_touched_in_xact)
				pgck_shcache_keyring_prepared(GetTopTransactionIdIfAny());
			keyring_touched_in_xact = false;
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
			keyring_touched_in_xact = false;
			break;
		default:
			break;
	}
}

static void
keycache_subxact_cb(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && keyring_touched_in_xact)
		invalidate_all();
}

void
pgck_keycache_init(void)
{
	HASHCTL		ctl;

	cache_context = AllocSetContextCreate(TopMemoryContext,
										  "pgcrypt_kms key cache",
										  ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(PgckCachedVersion);
	ctl.hcxt = cache_context;
	version_cache = hash_create("pgcrypt_kms key versions", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = PGCK_KEY_NAME_MAX + 1;
	ctl.entrysize = sizeof(PgckCachedKey);
	ctl.hcxt = cache_context;
	key_cache = hash_create("pgcrypt_kms keys", 64, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	CacheRegisterRelcacheCallback(keycache_relcache_cb, (Datum) 0);
	RegisterXactCallback(keycache_xact_cb, NULL);
	RegisterSubXactCallback(keycache_subxact_cb, NULL);
	pgck_keymem_on_release(keycache_release);
	if (!pgck_crypto_init())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("OpenSSL does not provide AES-256-GCM, SHA-256 and HKDF")));
}

/*
 * The time TTLs are measured against: the start of the current statement, or
 * of the current transaction if that is later.  A procedure that commits
 * (CALL kms_reencrypt_table) runs many transactions in one statement; each of
 * them sees expiry and revocation afresh, while one statement within one
 * transaction never sees a key vanish halfway.
 */
/*
 * ... and, within one long statement, the wall clock once a second: a timer
 * (PostgreSQL's timeout module, SIGALRM) sets a flag at most once a second
 * while keys are in use, and the next call moves "now" to the wall clock.  So
 * a statement that runs for hours (a loop in a function, a slow cursor) still
 * takes in a destroy, retire or rotation committed elsewhere within about a
 * second, and its keys expire at their TTL, revocation included: 0.2.0
 * development showed a decrypt-role session decrypting, in one endless
 * statement, values of a key destroyed minutes before.  Within that second
 * the statement's view is stable.
 */
static volatile sig_atomic_t recheck_due = false;
static pid_t recheck_pid = 0;
static TimeoutId recheck_timeout;
static TimestampTz wall_now = 0;

#define RECHECK_INTERVAL_MS 1000

static void
recheck_timeout_handler(void)
{
	recheck_due = true;
}

static void
arm_recheck(void)
{
	if (recheck_pid != MyProcPid)
	{
		/* per process: a postmaster's registration is not inherited usefully */
		recheck_timeout = RegisterTimeout(USER_TIMEOUT, recheck_timeout_handler);
		recheck_pid = MyProcPid;
	}
	enable_timeout_after(recheck_timeout, RECHECK_INTERVAL_MS);
}

TimestampTz
pgck_keycache_now(void)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();
	TimestampTz xact = GetCurrentTransactionStartTimestamp();

	if (recheck_due)
	{
		recheck_due = false;
		wall_now = GetCurrentTimestamp();
	}

	/*
	 * Re-armed whenever it is not running, never from a flag of ours: error
	 * recovery (disable_all_timeouts) cancels it silently, and a flag left
	 * set then kept it off for the rest of the session.
	 */
	if (recheck_pid != MyProcPid || !get_timeout_active(recheck_timeout))
		arm_recheck();
	return Max(Max(stmt, xact), wall_now);
}

/*
 * Once per statement (and per transaction of a procedure), take in
 * invalidations other sessions committed (a rotation), even inside a
 * transaction that already holds its locks.
 */
static TimestampTz
statement_now(void)
{
	TimestampTz now = pgck_keycache_now();

	if (now != last_statement)
	{
		uint64		flushes = pgck_shcache_flush_count();

		AcceptInvalidationMessages();
		last_statement = now;
		/* an admin flushed the cluster's caches (kms_flush_cache) */
		if (flushes != flushes_seen)
		{
			cache_flush_all();
			flushes_seen = flushes;
		}
	}
	return now;
}

static bool
expired(TimestampTz unwrapped_at, TimestampTz now)
{
	return now - unwrapped_at >= (int64) pgck_cache_ttl * USECS_PER_SEC;
}

/*
 * At commit, at most once a second: wipe every cached version and index key
 * past its TTL, not only those looked up again, so that a backend that goes
 * on with other keys does not keep an expired (or destroyed) key's bytes
 * until it evicts them (an outside review of limits, 2026-12-05).  No
 * function of ours runs at commit, so nothing holds an entry; memos see the
 * epoch change.  Not at abort: the error may have left an entry half made.
 */
static void
sweep_expired(void)
{
	static TimestampTz last_sweep = 0;
	TimestampTz now;
	HASH_SEQ_STATUS status;
	PgckCachedVersion *v;
	PgckCachedKey *k;

	if (version_cache == NULL)
		return;
	now = GetCurrentTimestamp();
	if (now - last_sweep < USECS_PER_SEC)
		return;
	last_sweep = now;
	/* the order and named-index keys derived in the statements before */
	pgck_enc_typed_release_memos();
	hash_seq_init(&status, version_cache);
	while ((v = hash_seq_search(&status)) != NULL)
	{
		if (expired(v->unwrapped_at, now))
		{
			version_release(v);
			pgck_stats.expirations++;
		}
	}
	hash_seq_init(&status, key_cache);
	while ((k = hash_seq_search(&status)) != NULL)
	{
		if (k->index_key != NULL && expired(k->unwrapped_at, now))
		{
			key_release(k);
			pgck_stats.expirations++;
		}
	}
}

static void
evict_to_bound(void)
{
	while (version_count > pgck_cache_max_keys)
	{
		PgckCachedVersion *lru = dlist_container(PgckCachedVersion, lru,
												 dlist_tail_node(&version_lru));

		version_release(lru);
		pgck_stats.evictions++;
	}
}

/* Build the cache entry for id from a raw key; the key is copied. */
static PgckCachedVersion *
version_insert(uint32 id, const char *key_name, int32 version, PgckKeyState state,
			   TimestampTz created, const uint8 *dek, TimestampTz unwrapped_at)
{
	PgckCachedVersion *volatile v = NULL;
	bool		found = false;
	uint8	   *volatile slot = NULL;
	PgckAead   *aead;

	aead = pgck_aead_new(dek);
	if (aead == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not set up AES-256-GCM for key \"%s\" version %d", key_name, version)));
	PG_TRY();
	{
		slot = pgck_locked_alloc();
		memcpy(slot, dek, PGCK_DEK_LEN);
		v = hash_search(version_cache, &id, HASH_ENTER, &found);
	}
	PG_CATCH();
	{
		/* out of memory: leave no keyed context or key copy behind */
		pgck_aead_free(aead);
		pgck_locked_free(slot);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!pgck_key_check(dek, v->check))
		memset(v->check, 0, sizeof(v->check));
	if (found)
	{
		pgck_aead_free(v->aead);
		pgck_locked_free(v->dek);
		dlist_delete(&v->lru);
		version_count--;
	}
	v->version = version;
	v->state = state;
	strlcpy(v->key_name, key_name, sizeof(v->key_name));
	v->dek = slot;
	v->aead = aead;
	v->unwrapped_at = unwrapped_at;
	v->created = created;
	v->usage = NULL;
	v->usage_tli = 0;
	v->rotation_tried = 0;
	v->validated_gen = cache_gen;
	dlist_push_head(&version_lru, &v->lru);
	version_count++;
	evict_to_bound();
	/* the entry owns its keyed contexts: a warning cannot leak them */
	pgck_keymem_check_heap_keys();
	return v;
}

/*
 * Fetch keyring rows on a snapshot that no invalidation outdates: the fetch
 * itself may take in invalidations (its table locks do), and one that
 * arrives after the snapshot was taken means the rows may already be stale,
 * so fetch again.  Returns the generation the rows are valid for.
 */
static uint64
fetch_version_stable(uint32 id, PgckVersionRow *row, bool *found, uint64 *shgen)
{
	for (;;)
	{
		uint64		gen = cache_gen;

		*shgen = shared_generation();	/* before the rows: see keycache_shared.h */

		*found = pgck_keyring_fetch_version(id, row);
		if (gen == cache_gen)
			return gen;
	}
}

static uint64
fetch_key_stable(const char *name, PgckKeyRow *row, bool *found, uint64 *shgen)
{
	for (;;)
	{
		uint64		gen = cache_gen;

		*shgen = shared_generation();

		*found = pgck_keyring_fetch_key(name, row);
		if (gen == cache_gen)
			return gen;
	}
}

/*
 * Unwrap a key (pgck_keyring_unwrap's arguments), through the shared cache
 * when there is one and this transaction has not written the keyring (what
 * it reads may be its own uncommitted rows: those stay in this backend, and
 * an abort invalidates them).  shgen is the shared generation read before
 * the row was.  *unwrapped_at is when the KMS last unwrapped the key (for a
 * shared hit, maybe another backend's unwrap): the TTL runs from there, so
 * revocation reaches every backend within cache_ttl.  A parallel worker
 * takes what is shared but publishes nothing (its leader may have written
 * the keyring).
 */
static void
cached_unwrap(const char *kms_key, const char *kms_context, const bytea *wrapped,
			  const bytea *check, const char *what, const char *name, int32 version,
			  uint64 shgen, uint8 *key_out, TimestampTz *unwrapped_at)
{
	uint8		digest[PGCK_SHCACHE_DIGEST_LEN];
	bool		claimed = false;

	if (shgen != 0 && !keyring_touched_in_xact && check != NULL &&
		VARSIZE_ANY_EXHDR(check) == PGCK_KEY_CHECK_LEN)
	{
		pgck_shcache_digest(kms_key, kms_context, wrapped, digest);
		if (pgck_shcache_get(digest, shgen, (const uint8 *) VARDATA_ANY(check),
							 !IsParallelWorker(), key_out, unwrapped_at, &claimed))
		{
			pgck_stats.shared_hits++;
			return;
		}
		/* the KMS is needed: one more cold key in this statement */
		PG_TRY();
		{
			maybe_prefetch(pgck_keycache_now());
		}
		PG_CATCH();
		{
			if (claimed)
				pgck_shcache_abandon(digest, false);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	*unwrapped_at = GetCurrentTimestamp();
	PG_TRY();
	{
		pgck_keyring_unwrap(kms_key, kms_context, wrapped, check, what, name, version, key_out);
	}
	PG_CATCH();
	{
		if (claimed)
			pgck_shcache_abandon(digest, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgck_stats.unwraps++;
	if (claimed)
		pgck_shcache_publish(digest, shgen, key_out, (const uint8 *) VARDATA_ANY(check),
							 *unwrapped_at, kms_key, kms_context, wrapped, name, version);
}

/*
 * Put a data key that was just generated (kms_create_key, kms_rotate_key)
 * into the cache, saving an unwrap.  dek is copied.
 */
static void
keycache_install(uint32 id, const char *key_name, int32 version, const uint8 *dek)
{
	keyring_touched_in_xact = true;
	(void) version_insert(id, key_name, version, PGCK_STATE_ACTIVE, GetCurrentTimestamp(), dek,
						 GetCurrentTimestamp());
}

PgckCachedVersion *
pgck_keycache_version(uint32 id)
{
	TimestampTz now = statement_now();
	PgckCachedVersion *v;
	PgckVersionRow row;
	uint8	   *dek;
	uint64		row_gen;
	uint64		shgen;
	bool		found;

	v = hash_search(version_cache, &id, HASH_FIND, NULL);
	if (v != NULL && !expired(v->unwrapped_at, now))
	{
		if (v->validated_gen == cache_gen)
		{
			pgck_stats.hits++;
			dlist_move_head(&version_lru, &v->lru);
			return v;
		}
	}
	else if (v != NULL)
	{
		/* past its TTL: wipe now, unwrap again below */
		version_release(v);
		pgck_stats.expirations++;
		v = NULL;
	}

	row_gen = fetch_version_stable(id, &row, &found, &shgen);
	if (!found)
	{
		if (v != NULL)
			version_release(v);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
				 errmsg("key version id %u does not exist", id),
				 errdetail("The value was encrypted under a key version that is not in this database's keyring: it was destroyed, its creation was rolled back, or the keyring was not restored.")));
	}

	if (row.state == PGCK_STATE_DESTROYED)
	{
		if (v != NULL)
			version_release(v);
		pgck_note_decrypt_failure(row.key_name, row.version, PGCK_ERRCODE_UNKNOWN_KEY);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
				 errmsg("key \"%s\" version %d was destroyed", row.key_name, row.version),
				 errdetail("Its data key was deleted with kms_destroy_key(); values encrypted under it can never be decrypted again.")));
	}

	if (v != NULL && !pgck_keyring_check_matches(row.key_check, v->check))
	{
		/* the id now names another key (keyring re-created or restored) */
		version_release(v);
		v = NULL;
	}

	if (v != NULL)
	{
		/* re-checked after a keyring change: the key itself is unchanged */
		v->state = row.state;
		v->created = row.created;
		v->validated_gen = row_gen;
		pgck_stats.hits++;
		dlist_move_head(&version_lru, &v->lru);
		return v;
	}

	pgck_stats.misses++;
	dek = pgck_locked_alloc();
	PG_TRY();
	{
		TimestampTz unwrapped_at;

		cached_unwrap(row.kms_key, row.kms_context, row.wrapped_dek, row.key_check,
					  "data key", row.key_name, row.version, shgen, dek, &unwrapped_at);
		v = version_insert(id, row.key_name, row.version, row.state, row.created, dek,
						   unwrapped_at);
		v->validated_gen = row_gen;
	}
	PG_CATCH();
	{
		pgck_locked_free(dek);
		note_kms_refusal(row.key_name, row.version, geterrcode());
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgck_locked_free(dek);
	return v;
}

/*
 * The key a version belongs to never changes while the version is cached and
 * validated (a keyring re-created under the same ids is a keyring change, and
 * changes cache_gen); otherwise the keyring row says, without an unwrap.
 */
bool
pgck_keycache_version_of_key(uint32 id, const char *key_name)
{
	PgckCachedVersion *v = hash_search(version_cache, &id, HASH_FIND, NULL);
	PgckVersionRow row;
	uint64		shgen;
	bool		found;

	if (v != NULL && v->validated_gen == cache_gen)
		return strcmp(v->key_name, key_name) == 0;
	(void) fetch_version_stable(id, &row, &found, &shgen);
	return !found || strcmp(row.key_name, key_name) == 0;
}

/*
 * statement_now() may release every entry (another session's
 * kms_flush_cache() reaches this backend there) or invalidate them: then v
 * (or k below) may be gone, and is not touched; the epoch says so.
 */
bool
pgck_keycache_version_usable(PgckCachedVersion *v)
{
	uint64		epoch = pgck_keycache_epoch;
	TimestampTz now = statement_now();

	if (pgck_keycache_epoch != epoch ||
		v->validated_gen != cache_gen || expired(v->unwrapped_at, now))
		return false;
	pgck_stats.hits++;
	dlist_move_head(&version_lru, &v->lru);
	return true;
}

/*
 * Unwrap an index key into a locked slot and build its HMAC; the caller owns
 * the slot.  On error nothing is left allocated.
 */
static uint8 *
unwrap_index_key(PgckKeyRow *row, const char *kms_key, bytea *wrapped, bytea *check,
				 uint64 shgen, PgckHmac **hmac_out, TimestampTz *unwrapped_at)
{
	uint8	   *ikey = pgck_locked_alloc();

	PG_TRY();
	{
		cached_unwrap(kms_key, row->kms_context, wrapped, check, "blind-index key",
					  row->key_name, row->index_key_version, shgen, ikey, unwrapped_at);
		*hmac_out = pgck_hmac_new(ikey, PGCK_DEK_LEN);
		if (*hmac_out == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not set up HMAC-SHA-256 for key \"%s\"", row->key_name)));
	}
	PG_CATCH();
	{
		pgck_locked_free(ikey);
		note_kms_refusal(row->key_name, row->index_key_version, geterrcode());
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgck_keymem_check_heap_keys();
	return ikey;
}

/*
 * A key name that names no key is never repeated in the error: an
 * application that swapped kms_encrypt's arguments would log its plaintext.
 */
static void
unknown_key_name(void)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
			 errmsg("the key name does not name a key in the keyring"),
			 errdetail("The name is not repeated here: it may have been a value by mistake (check the order of the arguments)."),
			 errhint("Create the key with kms_create_key(), or restore the keyring tables; kms_keys lists the keys.")));
}

PgckCachedKey *
pgck_keycache_key(const char *name)
{
	TimestampTz now = statement_now();
	PgckCachedKey *k;
	PgckKeyRow	row;
	bool		found;
	uint64		row_gen;
	uint64		shgen;
	char		keybuf[PGCK_KEY_NAME_MAX + 1];

	if (strlen(name) > PGCK_KEY_NAME_MAX)
		unknown_key_name();
	memset(keybuf, 0, sizeof(keybuf));
	strlcpy(keybuf, name, sizeof(keybuf));

	k = hash_search(key_cache, keybuf, HASH_FIND, NULL);
	if (k != NULL && k->validated_gen == cache_gen &&
		(k->transform == PGCK_BIDX_NONE || !expired(k->unwrapped_at, now)))
	{
		pgck_stats.hits++;
		return k;
	}

	row_gen = fetch_key_stable(name, &row, &found, &shgen);
	if (!found)
	{
		if (k != NULL)
			key_release(k);
		unknown_key_name();
	}
	if (row.destroyed)
	{
		if (k != NULL)
			key_release(k);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
				 errmsg("key \"%s\" was destroyed", name),
				 errdetail("Its keys were deleted with kms_destroy_key().")));
	}
	if (row.current_id == 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" has no active version", name),
				 errhint("Rotate the key with kms_rotate_key() to make a new active version.")));

	k = hash_search(key_cache, keybuf, HASH_ENTER, &found);
	if (!found)
	{
		k->index_key = NULL;
		k->index_key_prev = NULL;
		k->hmac = NULL;
		k->hmac_prev = NULL;
	}
	k->current_id = row.current_id;
	k->transform = row.transform;
	k->index_bits = row.index_bits;
	k->validated_gen = 0;		/* not usable until fully set up */

	if (row.transform == PGCK_BIDX_NONE)
		key_release_index_key(k);
	else if (k->hmac == NULL || k->index_key_version != row.index_key_version ||
			 !pgck_keyring_check_matches(row.index_key_check, k->index_check) ||
			 (k->hmac_prev != NULL) != (row.prev_index_key_wrapped != NULL) ||
			 expired(k->unwrapped_at, now))
	{
		TimestampTz unwrapped_at;

		key_release_index_key(k);
		pgck_stats.misses++;
		k->index_key = unwrap_index_key(&row, row.index_kms_key, row.index_key_wrapped,
										row.index_key_check, shgen, &k->hmac, &unwrapped_at);
		memcpy(k->index_check, VARDATA_ANY(row.index_key_check), PGCK_KEY_CHECK_LEN);
		k->unwrapped_at = unwrapped_at;
		if (row.prev_index_key_wrapped != NULL)
		{
			/* kept: the order key of the previous epoch is derived from it */
			k->index_key_prev = unwrap_index_key(&row,
												 row.prev_index_kms_key ? row.prev_index_kms_key : row.index_kms_key,
												 row.prev_index_key_wrapped,
												 row.prev_index_key_check, shgen, &k->hmac_prev,
												 &unwrapped_at);
			k->unwrapped_at = Min(k->unwrapped_at, unwrapped_at);
		}
		k->index_key_version = row.index_key_version;
	}
	else
		pgck_stats.hits++;
	k->validated_gen = row_gen;
	return k;
}

bool
pgck_keycache_key_usable(PgckCachedKey *k)
{
	uint64		epoch = pgck_keycache_epoch;
	TimestampTz now = statement_now();

	if (pgck_keycache_epoch != epoch || k->validated_gen != cache_gen ||
		(k->transform != PGCK_BIDX_NONE && expired(k->unwrapped_at, now)))
		return false;
	pgck_stats.hits++;
	return true;
}

/*
 * Put a key just created (with its blind-index key, if any) into the cache,
 * saving the unwrap of the index key on first use.  ikey is copied.
 */
static void
keycache_install_key(const char *name, uint32 current_id, PgckTransform transform,
						  int index_bits, const uint8 *ikey)
{
	char		keybuf[PGCK_KEY_NAME_MAX + 1];
	PgckCachedKey *volatile k = NULL;
	PgckHmac   *hmac;
	uint8	   *volatile slot = NULL;
	bool		found = false;

	keyring_touched_in_xact = true;
	if (transform == PGCK_BIDX_NONE || ikey == NULL)
		return;
	hmac = pgck_hmac_new(ikey, PGCK_DEK_LEN);
	if (hmac == NULL)
		return;					/* the first use will unwrap it instead */
	memset(keybuf, 0, sizeof(keybuf));
	strlcpy(keybuf, name, sizeof(keybuf));
	PG_TRY();
	{
		slot = pgck_locked_alloc();
		memcpy(slot, ikey, PGCK_DEK_LEN);
		k = hash_search(key_cache, keybuf, HASH_ENTER, &found);
	}
	PG_CATCH();
	{
		pgck_hmac_free(hmac);
		pgck_locked_free(slot);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (found)
		key_release_index_key(k);
	k->hmac_prev = NULL;
	k->index_key_prev = NULL;
	k->hmac = hmac;
	k->index_key = slot;
	if (!pgck_key_check(ikey, k->index_check))
		memset(k->index_check, 0, sizeof(k->index_check));
	k->current_id = current_id;
	k->transform = transform;
	k->index_bits = index_bits;
	k->index_key_version = 1;
	k->unwrapped_at = GetCurrentTimestamp();
	k->validated_gen = cache_gen;
	pgck_keymem_check_heap_keys();
}

/* Make the next pgck_keycache_key(name) re-read its keyring row. */
void
pgck_keycache_forget_key(const char *name)
{
	char		keybuf[PGCK_KEY_NAME_MAX + 1];
	PgckCachedKey *k;

	memset(keybuf, 0, sizeof(keybuf));
	strlcpy(keybuf, name, sizeof(keybuf));
	k = hash_search(key_cache, keybuf, HASH_FIND, NULL);
	if (k != NULL)
		k->validated_gen = 0;
}

/* ---------------------------------------------------------------- warm-up */

/*
 * Queue for the shared cache's unwrap workers every row not cached here and
 * usable, then unwrap them concurrently; rows were read after shgen.
 * Returns how many the shared cache holds afterwards; *failed (if not NULL)
 * is set to how many of those queued it does not (their unwrap failed).
 */
static int
keycache_warm_rows(const PgckVersionRow *rows, int n, uint64 shgen, bool may_evict, int *failed)
{
	int			done = 0;
	int			shared;
	int			i;
	uint8		(*queued)[PGCK_SHCACHE_DIGEST_LEN] = palloc(PGCK_SHCACHE_DIGEST_LEN * Max(n, 1));

	/*
	 * Cancelled (or failed) before every queued entry was taken: what is
	 * still queued is wiped, else it would wait for workers that may never
	 * come and stall every backend that needs those keys.
	 */
	PG_TRY();
	{
		for (i = 0; i < n; i++)
		{
			const PgckVersionRow *row = &rows[i];
			PgckCachedVersion *v;
			uint8		digest[PGCK_SHCACHE_DIGEST_LEN];

			CHECK_FOR_INTERRUPTS();
			v = hash_search(version_cache, &row->id, HASH_FIND, NULL);
			if (v != NULL && v->validated_gen == cache_gen &&
				!expired(v->unwrapped_at, pgck_keycache_now()))
				continue;		/* cached here */
			if (row->state == PGCK_STATE_DESTROYED || row->state == PGCK_STATE_RETIRED ||
				row->key_check == NULL || VARSIZE_ANY_EXHDR(row->key_check) != PGCK_KEY_CHECK_LEN)
				continue;
			pgck_shcache_digest(row->kms_key, row->kms_context, row->wrapped_dek, digest);
			if (pgck_shcache_enqueue(digest, shgen, (const uint8 *) VARDATA_ANY(row->key_check),
									 row->kms_key, row->kms_context, row->wrapped_dek,
									 row->key_name, row->version, may_evict))
				memcpy(queued[done++], digest, PGCK_SHCACHE_DIGEST_LEN);
		}
		shared = pgck_shcache_drain(queued, done);
	}
	PG_CATCH();
	{
		pgck_shcache_abandon_queued();
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(queued);
	if (failed != NULL)
		*failed = done - shared;
	return shared;
}

/*
 * The rows of every usable version, read in one query on a snapshot no
 * invalidation outdates (as fetch_version_stable); *shgen is the shared
 * generation read before them.
 */
static int
fetch_usable_stable(PgckVersionRow **rows, uint64 *shgen)
{
	for (;;)
	{
		uint64		gen = cache_gen;
		int			n;

		*shgen = shared_generation();
		n = pgck_keyring_usable_versions(rows);
		if (gen == cache_gen)
			return n;
	}
}

static int
cmp_uint32(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	return x < y ? -1 : x > y;
}

static int
keycache_warm(const uint32 *ids, int n, bool may_evict, int *failed)
{
	int			done = 0;
	int			i;
	int			nrows;
	int			nwant = 0;
	uint32	   *sorted;
	PgckVersionRow *rows;
	uint64		shgen;

	(void) statement_now();
	*failed = 0;
	if (!pgck_shcache_enabled() || keyring_touched_in_xact)
	{
		for (i = 0; i < n; i++)
		{
			uint64		before = pgck_stats.unwraps + pgck_stats.shared_hits;

			CHECK_FOR_INTERRUPTS();
			(void) pgck_keycache_version(ids[i]);
			if (pgck_stats.unwraps + pgck_stats.shared_hits != before)
				done++;
		}
		return done;
	}

	/*
	 * Shared: the keyring's usable rows in one query (not one per id), those
	 * of ids kept.  A version that is not usable is not unwrapped anyway.
	 */
	sorted = palloc(sizeof(uint32) * Max(n, 1));
	memcpy(sorted, ids, sizeof(uint32) * n);
	qsort(sorted, n, sizeof(uint32), cmp_uint32);
	nrows = fetch_usable_stable(&rows, &shgen);
	for (i = 0; i < nrows; i++)
		if (bsearch(&rows[i].id, sorted, n, sizeof(uint32), cmp_uint32) != NULL)
			rows[nwant++] = rows[i];
	pfree(sorted);
	return keycache_warm_rows(rows, nwant, shgen, may_evict, failed);
}

int
pgck_keycache_warm(const uint32 *ids, int n, int *failed)
{
	return keycache_warm(ids, n, true, failed);
}

/*
 * A cold multi-key scan: when one statement of this backend has needed the
 * KMS for pgcrypt_kms.prefetch_after key versions the shared cache did not
 * hold, every usable version of this database's keyring that fits in the
 * shared cache's free entries (a prefetch never evicts) is unwrapped
 * concurrently, once per statement, so the rest of the scan finds its keys
 * shared instead of asking the KMS for them one after another.  The rows are
 * read in one query.
 */
static void
maybe_prefetch(TimestampTz now)
{
	static TimestampTz stmt = 0;
	static int	cold = 0;
	PgckVersionRow *rows;
	uint64		shgen;
	int			n;

	if (pgck_prefetch_after <= 0 || !pgck_shcache_enabled() || keyring_touched_in_xact ||
		IsInParallelMode())
		return;
	if (now != stmt)
	{
		stmt = now;
		cold = 0;
	}
	if (++cold != pgck_prefetch_after)
		return;
	n = fetch_usable_stable(&rows, &shgen);
	if (n > 0)
		(void) keycache_warm_rows(rows, n, shgen, false, NULL);
}

/* ---------------------------------------------------------------- key administration */

/*
 * Rotate through the keyring and install the new version, saving its first
 * unwrap; see pgck_keyring_rotate for the arguments.
 */
static int32
keycache_rotate(const char *name, uint32 expected_current, bool nowait)
{
	uint8	   *dek = pgck_locked_alloc();
	volatile int32 version = 0;

	PG_TRY();
	{
		uint32		id;

		version = pgck_keyring_rotate(name, expected_current, nowait, dek, &id);
		if (id != 0)
		{
			pgck_usage_note_created(id);
			keycache_install(id, name, version, dek);
		}
	}
	PG_FINALLY();
	{
		pgck_locked_free(dek);
	}
	PG_END_TRY();
	return version;
}

/*
 * kms_create_key(name, kms_key, blind_index, index_bits, kms_context): the
 * keyring creates the key; its first data key and index key are installed
 * here.
 */
PG_FUNCTION_INFO_V1(pgck_kms_create_key);
Datum
pgck_kms_create_key(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *kms_key;
	char	   *transform_name;
	uint8	   *dek;
	uint8	   *ikey;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("arguments of kms_create_key must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	kms_key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	transform_name = text_to_cstring(PG_GETARG_TEXT_PP(2));

	dek = pgck_locked_alloc();
	ikey = pgck_locked_alloc();
	PG_TRY();
	{
		PgckTransform transform;
		uint32		id;

		id = pgck_keyring_create_key(name, kms_key, transform_name, PG_GETARG_INT32(3),
									 PG_GETARG_JSONB_P(4), dek, ikey, &transform);
		pgck_usage_note_created(id);
		keycache_install(id, name, 1, dek);
		keycache_install_key(name, id, transform, PG_GETARG_INT32(3),
							 transform != PGCK_BIDX_NONE ? ikey : NULL);
	}
	PG_FINALLY();
	{
		pgck_locked_free(dek);
		pgck_locked_free(ikey);
	}
	PG_END_TRY();

	PG_RETURN_VOID();
}

/*
 * kms_rotate_key(name) → new version number
 *
 * A new data key version becomes the active one; the previous active version
 * becomes decrypt-only.  Concurrent rotations of one key serialize on the
 * key's row.
 */
PG_FUNCTION_INFO_V1(pgck_kms_rotate_key);
Datum
pgck_kms_rotate_key(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(keycache_rotate(text_to_cstring(PG_GETARG_TEXT_PP(0)), 0, false));
}

/*
 * kms_rotate_index_key(name) → new index key version
 *
 * A new blind-index key, and with it a new data key version.  Every value
 * tagged under the previous index key was then written under a data key
 * version that is no longer current, so kms_reencrypt_table, which moves
 * exactly those, re-tags every one of them, and a rotation finished after it
 * (kms_finish_index_rotation) leaves no value whose lookups would miss it.
 * Finishing before that still drops the probe for the values not yet
 * re-tagged (kms_verify shows which versions a column still holds).  One
 * transaction: other sessions see the new index key and the new version
 * together.
 */
PG_FUNCTION_INFO_V1(pgck_kms_rotate_index_key);
Datum
pgck_kms_rotate_index_key(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		version = pgck_keyring_rotate_index_key(name);

	(void) keycache_rotate(name, 0, false);
	PG_RETURN_INT32(version);
}

/*
 * Row trigger (and TRUNCATE statement trigger) on the keyring tables: every
 * change, by our functions, by hand, by a restore or by a logical-replication
 * apply worker (which fires row triggers only), invalidates every backend's
 * key cache at commit (and this backend's at once, and again on abort), and
 * wipes the database's shared entries at commit (keycache_xact_cb).
 *
 * Once per statement and table, however many rows it changes: the same
 * table, command and subtransaction since this transaction's last call has
 * nothing to add.  A subtransaction's abort discards the invalidation it
 * registered; what follows runs under another subtransaction id and
 * registers again.
 */
PG_FUNCTION_INFO_V1(pgck_keyring_changed);
Datum
pgck_keyring_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			relid;
	CommandId	cid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "pgck_keyring_changed: not called by trigger manager");
	relid = RelationGetRelid(trigdata->tg_relation);
	cid = GetCurrentCommandId(false);
	if (keyring_touched_in_xact && relid == changed_relid &&
		changed_subid == GetCurrentSubTransactionId() && changed_cid == cid)
		PG_RETURN_POINTER(NULL);
	CacheInvalidateRelcacheByRelid(relid);
	note_keyring_write();
	changed_relid = relid;
	changed_subid = GetCurrentSubTransactionId();
	changed_cid = cid;
	PG_RETURN_POINTER(NULL);
}

/* ---------------------------------------------------------------- usage bound */

#define DEFAULT_ROTATE_AFTER (UINT64CONST(1) << 31)

bool
pgck_keycache_count_encryption(PgckCachedVersion *v)
{
	/* on Citus, each node counts its own share of the bound (citus.h) */
	uint64		rotate_after = pgck_citus_share(pgck_dek_rotate_after > 0 ?
												(uint64) pgck_dek_rotate_after : DEFAULT_ROTATE_AFTER);
	uint64		n;
	TimestampTz stmt;
	bool		too_old;
	bool		foreign;
	PgckUsageLoss lost;

	/*
	 * A standby's encryptions would be counted on the standby only, where
	 * the primary, which writes with the same data key, never sees them.
	 */
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("cannot encrypt during recovery"),
				 errdetail("A standby cannot count its encryptions where the primary counts those under the same data key."),
				 errhint("Encrypt on the primary.")));

	/*
	 * The writer check (usage.c) runs when a version's counter is first
	 * resolved; a promotion since (a new timeline) makes it run again, so a
	 * session that lived through its standby's promotion does not go on
	 * under a version the old primary also writes with.
	 */
	if (v->usage != NULL && v->usage_tli != GetWALInsertionTimeLine())
		v->usage = NULL;
	if (v->usage == NULL)
		v->usage_tli = GetWALInsertionTimeLine();
	n = pgck_usage_add(v->id, &v->usage);
	stmt = pgck_keycache_now();
	too_old = pgck_dek_max_age > 0 &&
		stmt - v->created >= (int64) pgck_dek_max_age * USECS_PER_SEC;

	/*
	 * created by another cluster (usage.h), or its count was lost with a
	 * damaged or missing counts file (a version from before the start that
	 * found it so, this one or an earlier one): never encrypt under v
	 */
	lost = pgck_usage_version_lost(v->created, v->usage);
	foreign = (n == PGCK_USAGE_FOREIGN) || lost != PGCK_USAGE_COUNTED;

	/* another cluster's version (usage.c refused it if it could not rotate) */
	if (n == PGCK_USAGE_FOREIGN && v->rotation_tried == stmt)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" version %d was created by another cluster and could not be rotated here",
						v->key_name, v->version),
				 errdetail("Its nonce count lives in the cluster that created it; encrypting here could repeat a nonce."),
				 errhint("Rotate the key with kms_rotate_key().")));
	/* this cluster's version, whose count a damaged or missing file lost */
	if (foreign && v->rotation_tried == stmt)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" version %d has an unknown encryption count and could not be rotated here",
						v->key_name, v->version),
				 lost == PGCK_USAGE_LOST_MISSING ?
				 errdetail("The version was created before a start of this cluster that found no encryption counts file; encrypting under it could repeat a nonce.") :
				 errdetail("The version was created before a start of this cluster that found the encryption counts file damaged; encrypting under it could repeat a nonce."),
				 errhint("Rotate the key with kms_rotate_key().")));
	if (foreign || ((n >= rotate_after || too_old) && v->rotation_tried != stmt))
	{
		/* once per statement: a rolled-back rotation is tried again later */
		v->rotation_tried = stmt;
		/* a Citus worker's keyring changes only from the coordinator */
		if (!RecoveryInProgress() && !XactReadOnly && !IsInParallelMode() &&
			!pgck_citus_is_worker())
		{
			char		name[PGCK_KEY_NAME_MAX + 1];
			int32		version = v->version;
			int32		newv;

			/*
			 * Never waits for another encryptor: a rotation already under
			 * way (its key row locked) is skipped and this value uses the
			 * current version, up to the hard bound below; one that another
			 * session committed is taken up instead of rotating again.  A
			 * foreign version is the exception: nothing may be encrypted
			 * under it, so this waits for a rotation under way (once per key
			 * per cluster).
			 */
			strlcpy(name, v->key_name, sizeof(name));
			/* a version written here would fork a subscribed keyring */
			pgck_keyring_refuse_if_subscribed(name, version, foreign);
			newv = keycache_rotate(name, v->id, !foreign);	/* may evict v */
			if (newv == PGCK_ROTATE_BUSY)
				return false;
			/* if another session rotated first, take in its invalidation */
			AcceptInvalidationMessages();
			if (newv > 0)
				ereport(LOG,
						(errmsg("pgcrypt_kms: rotated key \"%s\" from version %d to %d (%s)",
								name, version, newv,
								n == PGCK_USAGE_FOREIGN ? "created by another cluster" :
								lost == PGCK_USAGE_LOST_DAMAGED ? "its count was lost with a damaged counts file" :
								lost == PGCK_USAGE_LOST_MISSING ? "its count was lost with a missing counts file" :
								too_old ? "pgcrypt_kms.dek_max_age" : "encryption count"),
						 errhidestmt(true)));
			else
				pgck_keycache_forget_key(name);
			pgck_keycache_epoch++;
			return true;
		}
	}
	/* could not rotate (read-only, standby, parallel worker): refuse at the bound */
	if (n == PGCK_USAGE_FOREIGN)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" version %d was created by another cluster", v->key_name, v->version),
				 errdetail("Its nonce count lives in the cluster that created it; encrypting here could repeat a nonce."),
				 errhint("Rotate the key with kms_rotate_key() in a writable transaction.")));
	if (foreign)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" version %d has an unknown encryption count", v->key_name, v->version),
				 lost == PGCK_USAGE_LOST_MISSING ?
				 errdetail("The version was created before a start of this cluster that found no encryption counts file; encrypting under it could repeat a nonce.") :
				 errdetail("The version was created before a start of this cluster that found the encryption counts file damaged; encrypting under it could repeat a nonce."),
				 errhint("Rotate the key with kms_rotate_key() in a writable transaction.")));
	if (n > 2 * rotate_after)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" version %d has reached its limit of " UINT64_FORMAT " encryptions",
						v->key_name, v->version, 2 * rotate_after),
				 errdetail("AES-GCM with random nonces is safe for 2^32 encryptions per key."),
				 errhint("Rotate the key with kms_rotate_key().")));
	return false;
}

/* ---------------------------------------------------------------- audit */

/*
 * A failed decryption or a KMS access denial is logged once per statement at
 * LOG (key, version, role, SQLSTATE; never the value) and counted, so it can
 * be alerted on without flooding the log during a scan.
 */
static TimestampTz last_failure_logged = 0;
static TimestampTz last_refusal_logged = 0;

void
pgck_note_decrypt_failure(const char *key_name, int32 version, int sqlerrcode)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();

	pgck_stats.decrypt_failures++;
	if (stmt == last_failure_logged)
		return;
	last_failure_logged = stmt;
	ereport(LOG,
			(errmsg("pgcrypt_kms: decryption failed under key \"%s\" version %d for role \"%s\" (SQLSTATE %s)",
					key_name, version, GetUserNameFromId(GetUserId(), true),
					unpack_sql_state(sqlerrcode)),
			 errhidestmt(true)));
}

/*
 * The KMS (or the key-check value) refused to unwrap a key: access denied,
 * key disabled or pending deletion, key not found, incorrect key, an
 * unwrapped key that is not the stored one, the KMS unreachable.  Every one
 * is logged (once per statement) and counted, so alerting on the log or on
 * kms_cache_stats() sees a disabled or deleted key as it sees a denial.  A
 * cancelled query is not a refusal.
 */
static void
note_kms_refusal(const char *key_name, int32 version, int sqlerrcode)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();
	const char *what;

	if (sqlerrcode == ERRCODE_QUERY_CANCELED || sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		sqlerrcode == ERRCODE_OUT_OF_MEMORY)
		return;
	pgck_stats.kms_refusals++;
	if (sqlerrcode == PGCK_ERRCODE_PRIVILEGE)
		pgck_stats.access_denials++;
	if (stmt == last_refusal_logged)
		return;
	last_refusal_logged = stmt;
	if (sqlerrcode == PGCK_ERRCODE_PRIVILEGE)
		what = "denied access to";
	else if (sqlerrcode == PGCK_ERRCODE_KEY_STATE)
		what = "refused (key disabled or not in a usable state)";
	else if (sqlerrcode == PGCK_ERRCODE_UNKNOWN_KEY)
		what = "refused (KMS key not found)";
	else
		what = "failed to unwrap";
	ereport(LOG,
			(errmsg("pgcrypt_kms: KMS %s key \"%s\" version %d for role \"%s\" (SQLSTATE %s)",
					what, key_name, version, GetUserNameFromId(GetUserId(), true),
					unpack_sql_state(sqlerrcode)),
			 errhidestmt(true)));
}

/* ---------------------------------------------------------------- stats hooks */

void
pgck_stats_kms_fallback(void)
{
	pgck_stats.kms_fallbacks++;
}

void
pgck_stats_kms_call(PgckKmsOp op, double elapsed_ms, bool ok)
{
	if (op < 0 || op >= PGCK_NUM_OPS)
		return;
	pgck_stats.calls[op]++;
	pgck_shcache_note_kms_call(op, elapsed_ms, ok);
	if (!ok)
		pgck_stats.errors[op]++;
	pgck_stats.ms_total[op] += elapsed_ms;
	if (elapsed_ms > pgck_stats.ms_max[op])
		pgck_stats.ms_max[op] = elapsed_ms;
}

void
pgck_stats_kms_retry(PgckKmsOp op)
{
	if (op >= 0 && op < PGCK_NUM_OPS)
		pgck_stats.retries[op]++;
}

const char *
pgck_kms_op_name(int op)
{
	return op >= 0 && op < PGCK_NUM_OPS ? op_names[op] : "unknown";
}

/* ---------------------------------------------------------------- SQL functions */

PG_FUNCTION_INFO_V1(pgck_kms_flush_cache);
Datum
pgck_kms_flush_cache(PG_FUNCTION_ARGS)
{
	Oid			admin = get_role_oid("pgcrypt_kms_admin", true);

	/*
	 * An administrator flushes the cluster: the shared cache now, every
	 * backend's own cache at its next statement.  Anyone else (and a
	 * cluster without the shared cache) flushes this backend.
	 */
	if (pgck_shcache_enabled() && OidIsValid(admin) && has_privs_of_role(GetUserId(), admin))
	{
		pgck_shcache_flush();
		flushes_seen = pgck_shcache_flush_count();
	}
	cache_flush_all();
	pgck_enc_typed_release_memos();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgck_kms_cache_stats);
Datum
pgck_kms_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[16];
	bool		nulls[16];
	int64		calls = 0,
				errors = 0,
				retries = 0;
	double		ms_total = 0,
				ms_max = 0;
	StringInfoData ops;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	initStringInfo(&ops);
	appendStringInfoChar(&ops, '{');
	for (i = 0; i < PGCK_NUM_OPS; i++)
	{
		calls += pgck_stats.calls[i];
		errors += pgck_stats.errors[i];
		retries += pgck_stats.retries[i];
		ms_total += pgck_stats.ms_total[i];
		ms_max = Max(ms_max, pgck_stats.ms_max[i]);
		appendStringInfo(&ops, "%s\"%s\": {\"calls\": " INT64_FORMAT ", \"errors\": " INT64_FORMAT
						 ", \"retries\": " INT64_FORMAT ", \"ms_total\": %.3f, \"ms_max\": %.3f}",
						 i > 0 ? ", " : "", op_names[i], pgck_stats.calls[i],
						 pgck_stats.errors[i], pgck_stats.retries[i],
						 pgck_stats.ms_total[i], pgck_stats.ms_max[i]);
	}
	appendStringInfoChar(&ops, '}');

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum(pgck_stats.hits);
	values[1] = Int64GetDatum(pgck_stats.misses);
	values[2] = Int64GetDatum(pgck_stats.unwraps);
	values[3] = Int64GetDatum(pgck_stats.evictions);
	values[4] = Int64GetDatum(pgck_stats.expirations);
	values[5] = Int32GetDatum(version_count);
	values[6] = Int64GetDatum(calls);
	values[7] = Int64GetDatum(errors);
	values[8] = Int64GetDatum(retries);
	values[9] = Float8GetDatum(calls > 0 ? ms_total / calls : 0.0);
	values[10] = Float8GetDatum(ms_max);
	values[11] = Int64GetDatum(pgck_stats.decrypt_failures);
	values[12] = Int64GetDatum(pgck_stats.access_denials);
	values[13] = DirectFunctionCall1(jsonb_in, CStringGetDatum(ops.data));
	/* 0.1.0's definition has 14 columns (heap_form_tuple reads natts); 0.2.0 adds kms_refusals */
	values[14] = Int64GetDatum(pgck_stats.kms_refusals);
	/* 0.3.0 adds kms_fallbacks */
	values[15] = Int64GetDatum(pgck_stats.kms_fallbacks);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * 0.3.0's sixteen columns under a symbol of their own (as enc_text.c's
 * *_0_3): an older library, which fills fewer, finds no such function after
 * ALTER EXTENSION UPDATE instead of reading past its arrays.  Catalogs of
 * older versions keep calling pgck_kms_cache_stats, which fills as many
 * columns as their definition has.
 */
PG_FUNCTION_INFO_V1(pgck_kms_cache_stats_0_3);
Datum
pgck_kms_cache_stats_0_3(PG_FUNCTION_ARGS)
{
	return pgck_kms_cache_stats(fcinfo);
}
