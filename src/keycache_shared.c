/*-------------------------------------------------------------------------
 *
 * keycache_shared.c
 *		The cluster's shared cache of unwrapped keys; see keycache_shared.h
 *		for what it caches and the rules.
 *
 * Locking: one LWLock (tranche "pgcrypt_kms shared cache", in the main
 * shared memory segment) guards every entry; it is held only to find, copy,
 * fill or wipe an entry, never across a KMS call.  Backends that wait for
 * another's unwrap sleep on a condition variable in the region.  Counters
 * are atomics, read without the lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <signal.h>

#include <openssl/evp.h>

#include "access/transam.h"
#include "access/twophase.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "aead.h"
#include "keycache.h"
#include "kms.h"
#include "guc.h"
#include "keycache_shared.h"
#include "keyring.h"
#include "keymem.h"
#include "pgck_errcodes.h"

#define ST_FREE		0
#define ST_LOADING	1
#define ST_VALID	2
#define ST_QUEUED	3			/* claimed for the unwrap workers (kms_warm_cache) */

/* per-database generations; databases that share a slot share its bumps */
#define DB_GEN_SLOTS 64

/* a loader that has not finished in this time (it died?) is taken over */
#define LOAD_STALE_MARGIN_MS 5000
#define WAIT_POLL_MS 100

/*
 * A lookup sweeps every entry (expired and stale ones are wiped) at most this
 * often; in between it only looks for its own entry (and wipes that one if
 * expired or stale), so a cold scan over thousands of keys does not walk the
 * whole cache once per key.  The refresher sweeps once a second as well.
 */
#define SWEEP_INTERVAL_US 100000

typedef struct ShEntry
{
	int			state;
	int			loader_pid;
	int			queued_by;		/* backend that queued it (ST_QUEUED, then ST_LOADING) */
	Oid			dbid;
	uint64		gen;
	pg_atomic_uint64 last_used;
	TimestampTz unwrapped_at;
	TimestampTz load_started;
	TimestampTz last_hit;		/* published or served: "in use" for refresh-ahead */
	bool		refreshing;		/* due for a refresh: queued or being unwrapped again */
	int			refresh_pid;	/* the process unwrapping it again; 0: still queued */
	bool		refresh_failed; /* then it is left to expire, not retried */
	uint8		digest[PGCK_SHCACHE_DIGEST_LEN];
	uint8		check[PGCK_KEY_CHECK_LEN];
	uint8		key[PGCK_KEYMEM_SLOT];
} ShEntry;

/* KMS call latency, cluster-wide: a fixed histogram per operation */
#define LAT_BUCKETS 14
static const double lat_bound_ms[LAT_BUCKETS] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, -1	/* -1: above */
};

typedef struct ShOpStats
{
	pg_atomic_uint64 calls;
	pg_atomic_uint64 errors;
	pg_atomic_uint64 max_us;
	pg_atomic_uint64 bucket[LAT_BUCKETS];
} ShOpStats;

typedef struct ShHeader
{
	LWLock	   *lock;
	ConditionVariable cv;
	pg_atomic_uint64 clock;
	pg_atomic_uint64 flushes;
	pg_atomic_uint64 db_gen[DB_GEN_SLOTS];
	PgckShcacheStats stats;
	ShOpStats	ops[PGCK_NUM_OPS];
	TimestampTz last_sweep;		/* under the lock */
	int			next_queued;	/* where work_one and refresh_claim look first */
	int			nprepared;		/* in prepared[] */
	bool		prepared_scanned;	/* those that survived a restart are in it */
	int			nentries;
	ShEntry		entries[FLEXIBLE_ARRAY_MEMBER];
} ShHeader;

/*
 * What the refresher needs to unwrap an entry again, in the main shared
 * memory segment (no secret while the keyring holds the same), one per
 * entry; wiped with its entry (entry_wipe), so a destroyed key's wrapped key
 * does not outlive it here.
 */
#define MAT_KMS_KEY_MAX		256
#define MAT_CONTEXT_MAX		1024
#define MAT_WRAPPED_MAX		1024

typedef struct ShMaterial
{
	bool		usable;			/* fits and belongs to the entry's current key */
	int32		version;
	int			wrapped_len;
	char		key_name[PGCK_KEY_NAME_MAX + 1];	/* for log lines */
	char		kms_key[MAT_KMS_KEY_MAX];
	char		context[MAT_CONTEXT_MAX];
	uint8		wrapped[MAT_WRAPPED_MAX];
} ShMaterial;

/*
 * A prepared transaction that wrote a database's keyring (its top-level
 * xid), in the main segment, under the lock.  PostgreSQL tells an extension
 * nothing when COMMIT PREPARED (or ROLLBACK PREPARED) runs, maybe in another
 * backend: so while one is in progress the shared cache neither serves nor
 * publishes that database's keys (backends unwrap on their own), and the
 * first lookup that finds it ended bumps the database's generation, wipes its
 * entries and forgets it.  The list does not survive a restart, prepared
 * transactions do: the first lookup after one records every prepared
 * transaction as if it had written its database's keyring.
 */
typedef struct ShPrepared
{
	TransactionId xid;
	Oid			dbid;
} ShPrepared;

static ShHeader *sh = NULL;
static Size sh_size = 0;
static ShMaterial *mat = NULL;
static ShPrepared *prepared = NULL; /* max_prepared_xacts + 1 of them */

static bool prepared_blocks(Oid dbid);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#define COUNT(field) pg_atomic_fetch_add_u64(&sh->stats.field, 1)

static void
shcache_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestNamedLWLockTranche("pgcrypt_kms shared cache", 1);
	RequestAddinShmemSpace(mul_size(pgck_shared_cache_size, sizeof(ShMaterial)));
	RequestAddinShmemSpace(mul_size(max_prepared_xacts + 1, sizeof(ShPrepared)));
}

static void
wipe_region(void)
{
	if (sh != NULL)
		pgck_wipe(sh->entries, (Size) sh->nentries * sizeof(ShEntry));
}

/* postmaster exit, or its reinitialization after a crash: no key survives */
static void
shcache_shmem_exit(int code, Datum arg)
{
	wipe_region();
}

static void
shcache_shmem_startup(void)
{
	int			i;
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	if (IsUnderPostmaster)
		return;					/* the postmaster set it up before forking */
	wipe_region();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	mat = ShmemInitStruct("pgcrypt_kms shared cache material",
						  mul_size(sh->nentries, sizeof(ShMaterial)), &found);
	memset(mat, 0, mul_size(sh->nentries, sizeof(ShMaterial)));
	prepared = ShmemInitStruct("pgcrypt_kms shared cache prepared",
							   mul_size(max_prepared_xacts + 1, sizeof(ShPrepared)), &found);
	LWLockRelease(AddinShmemInitLock);
	sh->lock = &(GetNamedLWLockTranche("pgcrypt_kms shared cache"))->lock;
	ConditionVariableInit(&sh->cv);
	pg_atomic_init_u64(&sh->clock, 1);
	pg_atomic_init_u64(&sh->flushes, 0);
	for (i = 0; i < DB_GEN_SLOTS; i++)
		pg_atomic_init_u64(&sh->db_gen[i], 1);
	memset(&sh->stats, 0, sizeof(sh->stats));
	memset(sh->ops, 0, sizeof(sh->ops));
	sh->last_sweep = 0;
	sh->next_queued = 0;
	sh->nprepared = 0;
	sh->prepared_scanned = false;
	for (i = 0; i < sh->nentries; i++)
		pg_atomic_init_u64(&sh->entries[i].last_used, 0);
	on_shmem_exit(shcache_shmem_exit, (Datum) 0);
}

void
pgck_shcache_init(void)
{
	Size		size;

	if (!process_shared_preload_libraries_in_progress || pgck_shared_cache_size <= 0)
		return;
	size = add_size(offsetof(ShHeader, entries),
					mul_size(pgck_shared_cache_size, sizeof(ShEntry)));
	sh = pgck_keymem_map_shared(size);
	if (sh == NULL)
		return;					/* warned: the shared cache is off */
	sh_size = size;
	sh->nentries = pgck_shared_cache_size;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shcache_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shcache_shmem_startup;
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
		worker.bgw_start_time = BgWorkerStart_PostmasterStart;
		worker.bgw_restart_time = 10;
		strlcpy(worker.bgw_library_name, "pgcrypt_kms", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "pgck_shcache_refresher_main", BGW_MAXLEN);
		strlcpy(worker.bgw_name, "pgcrypt_kms key refresher", BGW_MAXLEN);
		strlcpy(worker.bgw_type, "pgcrypt_kms key refresher", BGW_MAXLEN);
		RegisterBackgroundWorker(&worker);
	}
	ereport(LOG,
			(errmsg("pgcrypt_kms: shared key cache of %d entries (%zu kB, locked, excluded from core dumps)",
					sh->nentries, sh_size / 1024),
			 errhidestmt(true)));
}

bool
pgck_shcache_enabled(void)
{
	return sh != NULL && sh->lock != NULL;
}

const PgckShcacheStats *
pgck_shcache_stats(int *nentries)
{
	if (!pgck_shcache_enabled())
		return NULL;
	*nentries = sh->nentries;
	return &sh->stats;
}

static pg_atomic_uint64 *
db_gen_slot(Oid dbid)
{
	return &sh->db_gen[dbid % DB_GEN_SLOTS];
}

uint64
pgck_shcache_generation(void)
{
	if (!pgck_shcache_enabled())
		return 0;

	/*
	 * A prepared keyring change that ended bumps its database here, before
	 * the caller reads its rows, so that the caller may publish them.
	 */
	if (sh->nprepared > 0 || !sh->prepared_scanned)
	{
		LWLockAcquire(sh->lock, LW_EXCLUSIVE);
		(void) prepared_blocks(MyDatabaseId);
		LWLockRelease(sh->lock);
	}
	pg_memory_barrier();
	return pg_atomic_read_u64(db_gen_slot(MyDatabaseId));
}

uint64
pgck_shcache_flush_count(void)
{
	if (!pgck_shcache_enabled())
		return 0;
	return pg_atomic_read_u64(&sh->flushes);
}

void
pgck_shcache_digest(const char *kms_key, const char *kms_context, const bytea *wrapped,
					uint8 digest[PGCK_SHCACHE_DIGEST_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;
	Oid			db = MyDatabaseId;
	bool		ok;

	ok = ctx != NULL &&
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		EVP_DigestUpdate(ctx, &db, sizeof(db)) == 1 &&
		EVP_DigestUpdate(ctx, kms_key, strlen(kms_key) + 1) == 1 &&
		EVP_DigestUpdate(ctx, kms_context ? kms_context : "", strlen(kms_context ? kms_context : "") + 1) == 1 &&
		EVP_DigestUpdate(ctx, VARDATA_ANY(wrapped), VARSIZE_ANY_EXHDR(wrapped)) == 1 &&
		EVP_DigestFinal_ex(ctx, digest, &len) == 1 && len == PGCK_SHCACHE_DIGEST_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not compute SHA-256 for the shared key cache")));
}

/*
 * A claimed or queued entry older than this (its loader hung, or a queue
 * nobody works) is taken over by a backend that needs it, and no longer
 * waited for by one that may not claim it (a parallel worker).
 */
static int64
load_stale_us(void)
{
	return (int64) (pgck_kms_timeout + LOAD_STALE_MARGIN_MS) * 1000;
}

static void
entry_wipe(ShEntry *e)
{
	pgck_wipe(e->key, sizeof(e->key));
	pgck_wipe(e->check, sizeof(e->check));
	memset(e->digest, 0, sizeof(e->digest));
	e->state = ST_FREE;
	e->loader_pid = 0;
	e->queued_by = 0;
	e->dbid = InvalidOid;
	e->gen = 0;
	e->refreshing = false;
	e->refresh_pid = 0;
	e->refresh_failed = false;
	pg_atomic_write_u64(&e->last_used, 0);

	/*
	 * The material goes too: after a destroy (and VACUUM) the keyring no
	 * longer holds the wrapped key, so neither may the main segment.
	 */
	if (mat != NULL)
		pgck_wipe(&mat[e - sh->entries], sizeof(ShMaterial));
}

static bool
entry_expired(ShEntry *e, TimestampTz now)
{
	return now - e->unwrapped_at >= (int64) pgck_cache_ttl * USECS_PER_SEC;
}

static bool
entry_stale(ShEntry *e)
{
	return e->gen != pg_atomic_read_u64(db_gen_slot(e->dbid));
}

/*
 * A claimed or queued entry whose process is gone, past the takeover
 * margin.  Processes give their claims up when they exit (release_mine); this
 * catches what that missed, so no entry is lost for the postmaster's life.
 */
static bool
entry_orphaned(ShEntry *e, TimestampTz now)
{
	int			owner;

	if (e->state == ST_LOADING)
		owner = e->loader_pid;
	else if (e->state == ST_QUEUED)
		owner = e->queued_by;
	else
		return false;
	return now - e->load_started >= load_stale_us() &&
		(owner == 0 || (kill(owner, 0) != 0 && errno == ESRCH));
}

/*
 * The entry of digest, under the lock (exclusive).  On the way, every valid
 * entry past its TTL or of an old generation is wiped, and every orphaned
 * claim: any lookup sweeps.
 */
static ShEntry *
find_and_sweep(const uint8 *digest, TimestampTz now)
{
	ShEntry    *found = NULL;
	int			i;

	for (i = 0; i < sh->nentries; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if (e->state == ST_VALID && (entry_expired(e, now) || entry_stale(e)))
		{
			if (entry_stale(e))
				COUNT(stale);
			else
				COUNT(expirations);
			entry_wipe(e);
			continue;
		}
		if (entry_orphaned(e, now))
		{
			entry_wipe(e);
			continue;
		}
		if (e->state != ST_FREE && found == NULL && digest != NULL &&
			memcmp(e->digest, digest, PGCK_SHCACHE_DIGEST_LEN) == 0)
			found = e;
	}
	return found;
}

/*
 * The entry of digest, under the lock (exclusive): find_and_sweep at most
 * every SWEEP_INTERVAL_US, else a search that wipes only the entry found if
 * it is expired or stale.
 */
static ShEntry *
find_entry(const uint8 *digest, TimestampTz now)
{
	int			i;

	if (now - sh->last_sweep >= SWEEP_INTERVAL_US || now < sh->last_sweep)
	{
		sh->last_sweep = now;
		return find_and_sweep(digest, now);
	}
	for (i = 0; i < sh->nentries; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if (e->state == ST_FREE || memcmp(e->digest, digest, PGCK_SHCACHE_DIGEST_LEN) != 0)
			continue;
		if (e->state == ST_VALID && (entry_expired(e, now) || entry_stale(e)))
		{
			if (entry_stale(e))
				COUNT(stale);
			else
				COUNT(expirations);
			entry_wipe(e);
			return NULL;
		}
		return e;
	}
	return NULL;
}

/* A free entry, or NULL. */
static ShEntry *
entry_free(void)
{
	int			i;

	for (i = 0; i < sh->nentries; i++)
		if (sh->entries[i].state == ST_FREE)
			return &sh->entries[i];
	return NULL;
}

/* A free entry, evicting (and wiping) the least recently used valid one. */
static ShEntry *
entry_alloc(void)
{
	ShEntry    *lru = NULL;
	int			i;

	for (i = 0; i < sh->nentries; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if (e->state == ST_FREE)
			return e;
		if (e->state == ST_VALID &&
			(lru == NULL || pg_atomic_read_u64(&e->last_used) < pg_atomic_read_u64(&lru->last_used)))
			lru = e;
	}
	if (lru != NULL)
	{
		entry_wipe(lru);
		COUNT(evictions);
	}
	return lru;					/* NULL: every entry is being loaded */
}

/* Under the lock: a database's keyring changed; bump it and wipe its entries. */
static void
keyring_changed(Oid dbid)
{
	int			i;

	pg_atomic_fetch_add_u64(db_gen_slot(dbid), 1);
	for (i = 0; i < sh->nentries; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if (e->state == ST_VALID && entry_stale(e))
		{
			entry_wipe(e);
			COUNT(stale);
		}
	}
}

/*
 * Under the lock: forget the prepared transactions that ended (committed or
 * rolled back, alike), bumping and wiping their databases.
 */
static void
prepared_settle(void)
{
	int			i = 0;

	while (i < sh->nprepared)
	{
		if (TransactionIdIsInProgress(prepared[i].xid))
			i++;
		else
		{
			keyring_changed(prepared[i].dbid);
			prepared[i] = prepared[--sh->nprepared];
		}
	}
}

/* Under the lock: record a prepared transaction of dbid (once). */
static void
prepared_add(TransactionId xid, Oid dbid)
{
	int			i;

	prepared_settle();
	for (i = 0; i < sh->nprepared; i++)
		if (TransactionIdEquals(prepared[i].xid, xid))
			return;
	if (sh->nprepared > max_prepared_xacts)
	{
		/* can't happen: every one listed is a prepared transaction in progress */
		elog(WARNING, "pgcrypt_kms: more prepared transactions than max_prepared_transactions");
		return;
	}
	prepared[sh->nprepared].xid = xid;
	prepared[sh->nprepared].dbid = dbid;
	sh->nprepared++;
}

/*
 * Under the lock: is the shared cache off for dbid, because a prepared
 * transaction that (may have) written its keyring is in progress?  The first
 * call after the postmaster started (outside recovery) records every
 * prepared transaction there is: one that survived a restart may have
 * written a keyring, and the list of those did not survive.
 */
static bool
prepared_blocks(Oid dbid)
{
	int			i;

	if (!sh->prepared_scanned && !RecoveryInProgress())
	{
		for (i = 0; i < max_prepared_xacts; i++)
		{
			TransactionId xid = PreparedXactProcs[i].xid;

			if (TransactionIdIsValid(xid) && TransactionIdIsInProgress(xid))
				prepared_add(xid, PreparedXactProcs[i].databaseId);
		}
		sh->prepared_scanned = true;
	}
	if (sh->nprepared == 0)
		return false;
	prepared_settle();
	for (i = 0; i < sh->nprepared; i++)
		if (prepared[i].dbid == dbid)
			return true;
	return false;
}

/*
 * When this process leaves shared memory (FATAL, pg_terminate_backend, an
 * unwrap worker's SIGTERM; not a crash, which reinitializes the region), it
 * gives up what it claimed or queued: waiters then unwrap at once instead of
 * waiting for the takeover margin, and no entry stays claimed by nobody.
 */
static void
release_mine(int code, Datum arg)
{
	int			i;

	if (!pgck_shcache_enabled())
		return;
	if (LWLockHeldByMe(sh->lock))
		LWLockRelease(sh->lock);
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	for (i = 0; i < sh->nentries; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if ((e->state == ST_LOADING && e->loader_pid == MyProcPid) ||
			(e->state == ST_QUEUED && e->queued_by == MyProcPid))
			entry_wipe(e);
	}
	LWLockRelease(sh->lock);
	ConditionVariableBroadcast(&sh->cv);
}

/* Before this process first claims or queues an entry. */
static void
ensure_exit_hook(void)
{
	static int	hooked_pid = 0;

	if (hooked_pid == MyProcPid)
		return;
	before_shmem_exit(release_mine, (Datum) 0);
	hooked_pid = MyProcPid;
}

bool
pgck_shcache_get(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], uint64 gen,
				 const uint8 *check, bool may_claim, uint8 *key_out,
				 TimestampTz *unwrapped_at, bool *claimed)
{
	bool		waited = false;
	bool		hit = false;

	*claimed = false;
	if (!pgck_shcache_enabled())
		return false;
	if (may_claim)
		ensure_exit_hook();
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		ShEntry    *e;
		bool		wait = false;

		LWLockAcquire(sh->lock, LW_EXCLUSIVE);
		if (prepared_blocks(MyDatabaseId))
		{
			/* a keyring change is prepared: neither served nor published */
			LWLockRelease(sh->lock);
			break;
		}
		e = find_entry(digest, now);
		if (e != NULL && e->state == ST_VALID)
		{
			if (e->dbid == MyDatabaseId && memcmp(e->check, check, PGCK_KEY_CHECK_LEN) == 0)
			{
				memcpy(key_out, e->key, PGCK_KEYMEM_SLOT);
				*unwrapped_at = e->unwrapped_at;
				e->last_hit = now;
				pg_atomic_write_u64(&e->last_used, pg_atomic_fetch_add_u64(&sh->clock, 1));
				hit = true;
			}
		}
		else if (e != NULL)
		{
			/*
			 * Being loaded (or queued): wait for it, unless it has taken
			 * longer than a KMS call may.  Then a caller that may claim takes
			 * it over (loading: it publishes or abandons it), and one that
			 * may not (a parallel worker) stops waiting and unwraps alone.
			 */
			if (now - e->load_started < load_stale_us())
				wait = true;
			else if (may_claim)
			{
				e->state = ST_LOADING;
				e->loader_pid = MyProcPid;
				e->load_started = now;
				e->gen = gen;
				*claimed = true;
			}
		}
		else if (!waited && may_claim && gen == pg_atomic_read_u64(db_gen_slot(MyDatabaseId)))
		{
			e = entry_alloc();
			if (e != NULL)
			{
				e->state = ST_LOADING;
				e->dbid = MyDatabaseId;
				e->gen = gen;
				e->loader_pid = MyProcPid;
				e->load_started = now;
				memcpy(e->digest, digest, PGCK_SHCACHE_DIGEST_LEN);
				*claimed = true;
			}
		}
		LWLockRelease(sh->lock);
		if (!wait)
			break;
		if (!waited)
			COUNT(waits);
		waited = true;
		(void) ConditionVariableTimedSleep(&sh->cv, WAIT_POLL_MS, PG_WAIT_EXTENSION);
	}
	if (waited)
		ConditionVariableCancelSleep();
	if (hit)
		COUNT(hits);
	else
		COUNT(misses);
	return hit;
}

static void
material_store(ShMaterial *m, const char *kms_key, const char *kms_context,
			   const bytea *wrapped, const char *key_name, int32 version)
{
	const char *ctx = kms_context ? kms_context : "";

	m->usable = strlen(kms_key) < MAT_KMS_KEY_MAX && strlen(ctx) < MAT_CONTEXT_MAX &&
		VARSIZE_ANY_EXHDR(wrapped) <= MAT_WRAPPED_MAX;
	if (!m->usable)
		return;					/* not refreshed ahead: unwrapped again on use after expiry */
	strlcpy(m->kms_key, kms_key, sizeof(m->kms_key));
	strlcpy(m->context, ctx, sizeof(m->context));
	strlcpy(m->key_name, key_name, sizeof(m->key_name));
	m->version = version;
	m->wrapped_len = VARSIZE_ANY_EXHDR(wrapped);
	memcpy(m->wrapped, VARDATA_ANY(wrapped), m->wrapped_len);
}

static ShEntry *
my_loading_entry(const uint8 *digest)
{
	int			i;

	for (i = 0; i < sh->nentries; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if (e->state == ST_LOADING && e->loader_pid == MyProcPid &&
			memcmp(e->digest, digest, PGCK_SHCACHE_DIGEST_LEN) == 0)
			return e;
	}
	return NULL;
}

void
pgck_shcache_publish(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], uint64 gen,
					 const uint8 *key, const uint8 *check, TimestampTz unwrapped_at,
					 const char *kms_key, const char *kms_context, const bytea *wrapped,
					 const char *key_name, int32 version)
{
	ShEntry    *e;

	if (!pgck_shcache_enabled())
		return;
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	e = my_loading_entry(digest);
	if (e != NULL)
	{
		if (gen == pg_atomic_read_u64(db_gen_slot(MyDatabaseId)))
		{
			memcpy(e->key, key, PGCK_KEYMEM_SLOT);
			memcpy(e->check, check, PGCK_KEY_CHECK_LEN);
			e->unwrapped_at = unwrapped_at;
			e->last_hit = unwrapped_at;
			e->refreshing = false;
			e->refresh_failed = false;
			e->gen = gen;
			pg_atomic_write_u64(&e->last_used, pg_atomic_fetch_add_u64(&sh->clock, 1));
			e->state = ST_VALID;
			COUNT(unwraps);
			material_store(&mat[e - sh->entries], kms_key, kms_context, wrapped, key_name, version);
		}
		else
		{
			/* the keyring changed while we unwrapped: nothing to share */
			entry_wipe(e);
			COUNT(stale);
		}
	}
	LWLockRelease(sh->lock);
	ConditionVariableBroadcast(&sh->cv);
}

void
pgck_shcache_abandon(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], bool failed)
{
	ShEntry    *e;

	if (!pgck_shcache_enabled())
		return;
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	e = my_loading_entry(digest);
	if (e != NULL)
		entry_wipe(e);
	LWLockRelease(sh->lock);
	if (failed)
		COUNT(failures);
	ConditionVariableBroadcast(&sh->cv);
}

void
pgck_shcache_keyring_committed(void)
{
	if (!pgck_shcache_enabled())
		return;
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	keyring_changed(MyDatabaseId);
	LWLockRelease(sh->lock);
	ConditionVariableBroadcast(&sh->cv);
}

void
pgck_shcache_keyring_prepared(TransactionId xid)
{
	if (!pgck_shcache_enabled())
		return;
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	if (TransactionIdIsValid(xid))
		prepared_add(xid, MyDatabaseId);
	keyring_changed(MyDatabaseId);
	LWLockRelease(sh->lock);
	ConditionVariableBroadcast(&sh->cv);
}

void
pgck_shcache_flush(void)
{
	int			i;

	if (!pgck_shcache_enabled())
		return;
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	for (i = 0; i < DB_GEN_SLOTS; i++)
		pg_atomic_fetch_add_u64(&sh->db_gen[i], 1);
	for (i = 0; i < sh->nentries; i++)
		if (sh->entries[i].state == ST_VALID)
			entry_wipe(&sh->entries[i]);
	pg_atomic_fetch_add_u64(&sh->flushes, 1);
	LWLockRelease(sh->lock);
	ConditionVariableBroadcast(&sh->cv);
}

int
pgck_shcache_count(void)
{
	int			i;
	int			n = 0;

	if (!pgck_shcache_enabled())
		return 0;
	LWLockAcquire(sh->lock, LW_SHARED);
	for (i = 0; i < sh->nentries; i++)
		if (sh->entries[i].state == ST_VALID)
			n++;
	LWLockRelease(sh->lock);
	return n;
}

/* ---------------------------------------------------------------- KMS calls, cluster-wide */

void
pgck_shcache_note_kms_call(int op, double elapsed_ms, bool ok)
{
	ShOpStats  *o;
	uint64		us;
	uint64		max;
	int			b;

	if (!pgck_shcache_enabled() || op < 0 || op >= PGCK_NUM_OPS)
		return;
	o = &sh->ops[op];
	pg_atomic_fetch_add_u64(&o->calls, 1);
	if (!ok)
		pg_atomic_fetch_add_u64(&o->errors, 1);
	for (b = 0; b < LAT_BUCKETS - 1; b++)
		if (elapsed_ms <= lat_bound_ms[b])
			break;
	pg_atomic_fetch_add_u64(&o->bucket[b], 1);
	us = elapsed_ms > 0 ? (uint64) (elapsed_ms * 1000.0) : 0;
	max = pg_atomic_read_u64(&o->max_us);
	while (us > max && !pg_atomic_compare_exchange_u64(&o->max_us, &max, us))
		;
}

/* The upper bound (ms) of the bucket holding the p-th percentile; the max above the last bound. */
static double
percentile_ms(ShOpStats *o, uint64 calls, double p)
{
	uint64		want = (uint64) ceil(p * (double) calls);
	uint64		seen = 0;
	int			b;

	if (want == 0)
		want = 1;
	for (b = 0; b < LAT_BUCKETS; b++)
	{
		seen += pg_atomic_read_u64(&o->bucket[b]);
		if (seen >= want)
			return lat_bound_ms[b] >= 0 ? lat_bound_ms[b] : pg_atomic_read_u64(&o->max_us) / 1000.0;
	}
	return pg_atomic_read_u64(&o->max_us) / 1000.0;
}

#define U64(f) Int64GetDatum((int64) pg_atomic_read_u64(&sh->stats.f))

/*
 * kms_shared_cache_stats(): the shared cache's counters and every KMS call
 * this cluster made (while the shared cache is on), with latency percentiles
 * by operation (bucket bounds: 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000,
 * 2000, 5000, 10000 ms).  Counts only; never key material.
 */
PG_FUNCTION_INFO_V1(pgck_kms_shared_cache_stats);
Datum
pgck_kms_shared_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[14];
	bool		nulls[14];
	StringInfoData ops;
	int			i;
	bool		first = true;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(nulls, 0, sizeof(nulls));
	memset(values, 0, sizeof(values));
	initStringInfo(&ops);
	appendStringInfoChar(&ops, '{');
	values[0] = BoolGetDatum(pgck_shcache_enabled());
	if (!pgck_shcache_enabled())
	{
		for (i = 1; i < 13; i++)
			nulls[i] = true;
	}
	else
	{
		values[1] = Int32GetDatum(sh->nentries);
		values[2] = Int32GetDatum(pgck_shcache_count());
		values[3] = U64(hits);
		values[4] = U64(misses);
		values[5] = U64(unwraps);
		values[6] = U64(waits);
		values[7] = U64(refreshes);
		values[8] = U64(refresh_failures);
		values[9] = U64(failures);
		values[10] = U64(evictions);
		values[11] = U64(expirations);
		values[12] = U64(stale);
		for (i = 0; i < PGCK_NUM_OPS; i++)
		{
			ShOpStats  *o = &sh->ops[i];
			uint64		calls = pg_atomic_read_u64(&o->calls);

			if (calls == 0)
				continue;
			appendStringInfo(&ops, "%s\"%s\": {\"calls\": " UINT64_FORMAT ", \"errors\": " UINT64_FORMAT
							 ", \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}",
							 first ? "" : ", ", pgck_kms_op_name(i), calls,
							 pg_atomic_read_u64(&o->errors),
							 percentile_ms(o, calls, 0.50), percentile_ms(o, calls, 0.90),
							 percentile_ms(o, calls, 0.99), pg_atomic_read_u64(&o->max_us) / 1000.0);
			first = false;
		}
	}
	appendStringInfoChar(&ops, '}');
	values[13] = DirectFunctionCall1(jsonb_in, CStringGetDatum(ops.data));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* ---------------------------------------------------------------- refresh-ahead */

/*
 * The refresher: a background worker (no database) that, once a second,
 * wipes expired entries and unwraps again, through the key's provider, every
 * entry in use (published or served since its last unwrap) whose TTL ends
 * within the refresh margin (a third of cache_ttl, at least 2 s and at most
 * 5 min, never more than half).  So a steady workload never finds its keys
 * expired.  The entries due are marked (refreshing) and unwrapped again by
 * up to pgcrypt_kms.unwrap_concurrency refresh workers (dynamic background
 * workers, no database) at once, each taking the next marked entry until none
 * is left: a thousand keys due at once take a thousand KMS round trips
 * divided by the concurrency, not one after another.  The refresher itself
 * never waits for the KMS: each second it marks what became due and starts
 * workers up to the bound, counting those of its workers still alive.  A refresh that fails
 * (KMS access revoked, the KMS down) leaves the entry to expire at its TTL:
 * it is logged (once per entry and failure) and counted, and revocation
 * still reaches the cluster within cache_ttl.  A refresh worker that dies
 * leaves its entry marked: it is not refreshed again and expires at its TTL.
 * The refresher's cache_ttl and KMS settings are the server's
 * (postgresql.conf), not a database's or a role's; pgcrypt_kms.refresh_ahead
 * = off stops refreshing (entries then expire and are unwrapped again on
 * use).
 */
typedef struct RefreshJob
{
	int			index;
	uint64		gen;
	uint8		digest[PGCK_SHCACHE_DIGEST_LEN];
	uint8		check[PGCK_KEY_CHECK_LEN];
	ShMaterial	m;
} RefreshJob;

#define REFRESH_WORKER_ARG 1	/* bgw_main_arg of a refresh worker */

static int64
refresh_margin_us(void)
{
	int64		ttl = (int64) pgck_cache_ttl * USECS_PER_SEC;

	return Min(Min(Max(ttl / 3, 2 * USECS_PER_SEC), 300 * USECS_PER_SEC), ttl / 2);
}

/*
 * Sweep, and mark every entry due for a refresh; returns how many wait for a
 * worker.  Nothing is refreshed during recovery: a standby learns of a
 * replayed keyring change (a destroy) only through a backend connected at the
 * replay (keycache.c), so an entry used before it, that no such backend reads
 * again, would be unwrapped again for another TTL; it expires at cache_ttl
 * instead, and the next use unwraps it if its key still exists.
 */
static int
refresh_collect(TimestampTz now)
{
	int			n = 0;
	int			i;
	int64		ttl = (int64) pgck_cache_ttl * USECS_PER_SEC;
	bool		refresh = pgck_refresh_ahead && !RecoveryInProgress();

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	(void) find_and_sweep(NULL, now);
	for (i = 0; i < sh->nentries && refresh; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if (e->state != ST_VALID || e->refreshing || e->refresh_failed || !mat[i].usable ||
			e->last_hit < e->unwrapped_at ||
			now - e->unwrapped_at < ttl - refresh_margin_us())
			continue;
		e->refreshing = true;
		e->refresh_pid = 0;
	}
	for (i = 0; i < sh->nentries; i++)
		if (sh->entries[i].state == ST_VALID && sh->entries[i].refreshing &&
			sh->entries[i].refresh_pid == 0)
			n++;
	LWLockRelease(sh->lock);
	return n;
}

/* Take the next entry marked for a refresh; false when there is none. */
static bool
refresh_claim(RefreshJob *job)
{
	int			i;
	int			n;
	bool		got = false;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	for (n = 0; n < sh->nentries; n++)
	{
		ShEntry    *e;

		i = (sh->next_queued + n) % sh->nentries;
		e = &sh->entries[i];
		if (e->state != ST_VALID || !e->refreshing || e->refresh_pid != 0)
			continue;
		sh->next_queued = (i + 1) % sh->nentries;
		e->refresh_pid = MyProcPid;
		job->index = i;
		job->gen = e->gen;
		memcpy(job->digest, e->digest, sizeof(e->digest));
		memcpy(job->check, e->check, sizeof(e->check));
		memcpy(&job->m, &mat[i], sizeof(ShMaterial));
		got = true;
		break;
	}
	LWLockRelease(sh->lock);
	return got;
}

/* The same entry, still holding the same key of the same generation? */
static ShEntry *
refresh_target(RefreshJob *job)
{
	ShEntry    *e = &sh->entries[job->index];

	if (e->state == ST_VALID && e->gen == job->gen &&
		memcmp(e->digest, job->digest, sizeof(e->digest)) == 0)
		return e;
	return NULL;
}

static void
refresh_one(RefreshJob *job, uint8 *key)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz started = GetCurrentTimestamp();
	volatile bool ok = false;
	ShEntry    *e;

	PG_TRY();
	{
		const char *rest;
		const PgckKmsProvider *provider = pgck_kms_provider_for(job->m.kms_key, &rest);
		bytea	   *wrapped = palloc(VARHDRSZ + job->m.wrapped_len);
		char	   *arn = NULL;
		uint8		got[PGCK_KEY_CHECK_LEN];

		SET_VARSIZE(wrapped, VARHDRSZ + job->m.wrapped_len);
		memcpy(VARDATA(wrapped), job->m.wrapped, job->m.wrapped_len);
		pgck_kms_decrypt_data_key(provider, rest, job->m.context, wrapped, key, PGCK_KEYMEM_SLOT, &arn);
		if (!pgck_key_check(key, got) || !pgck_equal_ct(got, job->check, PGCK_KEY_CHECK_LEN))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("the KMS returned another key than the cached one")));
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		FlushErrorState();
		ereport(LOG,
				(errmsg("pgcrypt_kms: refresh-ahead of key \"%s\" version %d failed (SQLSTATE %s): %s",
						job->m.key_name, job->m.version, unpack_sql_state(err->sqlerrcode),
						err->message),
				 errdetail("The shared entry expires at its TTL; the next use unwraps it again."),
				 errhidestmt(true)));
		FreeErrorData(err);
	}
	PG_END_TRY();
	pgck_wipe(key, PGCK_KEYMEM_SLOT);
	pgck_wipe(&job->m, sizeof(job->m));	/* the process's copy of the material */

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	e = refresh_target(job);
	if (e != NULL && e->refreshing && e->refresh_pid == MyProcPid)
	{
		if (ok)
		{
			/* the same key (key-check value): only its unwrap time moves */
			e->unwrapped_at = started;
			COUNT(refreshes);
		}
		else
			e->refresh_failed = true;
		e->refreshing = false;
		e->refresh_pid = 0;
	}
	LWLockRelease(sh->lock);
	if (!ok)
		COUNT(refresh_failures);
}

/* Refresh marked entries until none is left (the refresher and its workers). */
static void
refresh_drain(uint8 *key, MemoryContext cxt)
{
	RefreshJob	job;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	while (refresh_claim(&job))
	{
		CHECK_FOR_INTERRUPTS();
		refresh_one(&job, key);
		MemoryContextReset(cxt);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Start up to n background workers of a kind; returns how many were
 * registered, their handles in handles[] when given.
 */
static int
start_workers(int n, const char *function, const char *name, Datum arg,
			  BackgroundWorkerHandle **handles)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		BackgroundWorker worker;
		BackgroundWorkerHandle *handle;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
		worker.bgw_start_time = BgWorkerStart_PostmasterStart;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		worker.bgw_main_arg = arg;
		strlcpy(worker.bgw_library_name, "pgcrypt_kms", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
		strlcpy(worker.bgw_name, name, BGW_MAXLEN);
		strlcpy(worker.bgw_type, name, BGW_MAXLEN);
		if (!RegisterDynamicBackgroundWorker(&worker, &handle))
			break;				/* no slot: fewer in flight */
		if (handles != NULL)
			handles[i] = handle;
		else
			pfree(handle);
	}
	return i;
}

/* How many of the refresher's workers are alive; forgets the others. */
static int
workers_alive(BackgroundWorkerHandle **handles, int *n)
{
	int			i;
	int			alive = 0;

	for (i = 0; i < *n; i++)
	{
		pid_t		pid;
		BgwHandleStatus st = GetBackgroundWorkerPid(handles[i], &pid);

		if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED)
			handles[alive++] = handles[i];
		else
			pfree(handles[i]);
	}
	*n = alive;
	return alive;
}

PGDLLEXPORT void pgck_shcache_refresher_main(Datum arg);

void
pgck_shcache_refresher_main(Datum arg)
{
	BackgroundWorkerHandle **handles;
	int			nhandles = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (!pgck_shcache_enabled())
		proc_exit(0);
	handles = MemoryContextAlloc(TopMemoryContext, sizeof(BackgroundWorkerHandle *) * 256);
	for (;;)
	{
		int			n;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		n = refresh_collect(GetCurrentTimestamp());
		if (n > 0)
		{
			int			room = Min(n, pgck_unwrap_concurrency - workers_alive(handles, &nhandles));

			MemoryContextSwitchTo(TopMemoryContext);
			if (room > 0)
				nhandles += start_workers(room, "pgck_shcache_unwrap_worker_main",
										  "pgcrypt_kms refresh worker",
										  Int32GetDatum(REFRESH_WORKER_ARG), handles + nhandles);
		}
	}
}

/* ---------------------------------------------------------------- many unwraps at once */

/*
 * kms_warm_cache(): the calling backend queues every key it wants shared
 * (entries in state QUEUED, with their material), then starts up to
 * pgcrypt_kms.unwrap_concurrency - 1 unwrap workers (dynamic background
 * workers, no database) and works the queue itself as well, so that many
 * KMS calls are in flight at once (each process has one) and the number in
 * flight stays bounded.  If no worker can be started (max_worker_processes)
 * the backend works alone.  Each unwrap is checked against the key-check
 * value read from the keyring and published only under the generation read
 * before the rows were.
 */
bool
pgck_shcache_enqueue(const uint8 digest[PGCK_SHCACHE_DIGEST_LEN], uint64 gen,
					 const uint8 *check, const char *kms_key, const char *kms_context,
					 const bytea *wrapped, const char *key_name, int32 version,
					 bool may_evict)
{
	TimestampTz now = GetCurrentTimestamp();
	ShEntry    *e = NULL;
	bool		queued = false;
	bool		blocked;

	if (!pgck_shcache_enabled())
		return false;
	ensure_exit_hook();
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	blocked = prepared_blocks(MyDatabaseId);	/* then nothing is shared: see there */
	if (!blocked)
		e = find_entry(digest, now);
	if (!blocked && e == NULL && gen == pg_atomic_read_u64(db_gen_slot(MyDatabaseId)) &&
		(e = (may_evict ? entry_alloc() : entry_free())) != NULL)
	{
		material_store(&mat[e - sh->entries], kms_key, kms_context, wrapped, key_name, version);
		if (mat[e - sh->entries].usable)
		{
			e->state = ST_QUEUED;
			e->dbid = MyDatabaseId;
			e->gen = gen;
			e->queued_by = MyProcPid;
			e->loader_pid = 0;
			e->load_started = now;
			memcpy(e->digest, digest, PGCK_SHCACHE_DIGEST_LEN);
			memcpy(e->check, check, PGCK_KEY_CHECK_LEN);
			queued = true;
		}
		else
			entry_wipe(e);
	}
	LWLockRelease(sh->lock);
	return queued;
}

/* Take one queued entry and unwrap it; false when the queue is empty. */
static bool
work_one(uint8 *key)
{
	RefreshJob	job;
	ShEntry    *volatile e = NULL;
	int			i;
	int			n;
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = false;
	TimestampTz started = GetCurrentTimestamp();

	ensure_exit_hook();
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	for (n = 0; n < sh->nentries; n++)
	{
		i = (sh->next_queued + n) % sh->nentries;
		if (sh->entries[i].state == ST_QUEUED)
		{
			sh->next_queued = (i + 1) % sh->nentries;
			e = &sh->entries[i];
			e->state = ST_LOADING;
			e->loader_pid = MyProcPid;
			e->load_started = started;
			job.index = i;
			job.gen = e->gen;
			memcpy(job.digest, e->digest, sizeof(e->digest));
			memcpy(job.check, e->check, sizeof(e->check));
			memcpy(&job.m, &mat[i], sizeof(ShMaterial));
			break;
		}
	}
	LWLockRelease(sh->lock);
	if (e == NULL)
		return false;

	PG_TRY();
	{
		const char *rest;
		const PgckKmsProvider *provider = pgck_kms_provider_for(job.m.kms_key, &rest);
		bytea	   *wrapped = palloc(VARHDRSZ + job.m.wrapped_len);
		char	   *arn = NULL;
		uint8		got[PGCK_KEY_CHECK_LEN];

		SET_VARSIZE(wrapped, VARHDRSZ + job.m.wrapped_len);
		memcpy(VARDATA(wrapped), job.m.wrapped, job.m.wrapped_len);
		pgck_kms_decrypt_data_key(provider, rest, job.m.context, wrapped, key, PGCK_KEYMEM_SLOT, &arn);
		if (!pgck_key_check(key, got) || !pgck_equal_ct(got, job.check, PGCK_KEY_CHECK_LEN))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("the KMS returned a data key for key \"%s\" version %d that is not the stored one",
							job.m.key_name, job.m.version)));
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		pgck_wipe(key, PGCK_KEYMEM_SLOT);
		LWLockAcquire(sh->lock, LW_EXCLUSIVE);
		if (e->state == ST_LOADING && e->loader_pid == MyProcPid &&
			memcmp(e->digest, job.digest, sizeof(job.digest)) == 0)
			entry_wipe(e);
		LWLockRelease(sh->lock);
		ConditionVariableBroadcast(&sh->cv);
		COUNT(failures);
		if (pgck_error_ends_statement(err))
		{
			pgck_wipe(&job.m, sizeof(job.m));
			PG_RE_THROW();
		}
		FlushErrorState();
		ereport(LOG,
				(errmsg("pgcrypt_kms: could not unwrap key \"%s\" version %d for the shared cache (SQLSTATE %s): %s",
						job.m.key_name, job.m.version, unpack_sql_state(err->sqlerrcode),
						err->message),
				 errhidestmt(true)));
		FreeErrorData(err);
	}
	PG_END_TRY();
	pgck_wipe(&job.m, sizeof(job.m));	/* this process's copy of the material */
	if (!ok)
		return true;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	if (e->state == ST_LOADING && e->loader_pid == MyProcPid &&
		memcmp(e->digest, job.digest, sizeof(job.digest)) == 0)
	{
		if (job.gen == pg_atomic_read_u64(db_gen_slot(e->dbid)))
		{
			memcpy(e->key, key, PGCK_KEYMEM_SLOT);
			e->unwrapped_at = started;
			e->last_hit = started;
			e->refreshing = false;
			e->refresh_failed = false;
			pg_atomic_write_u64(&e->last_used, pg_atomic_fetch_add_u64(&sh->clock, 1));
			e->state = ST_VALID;
			COUNT(unwraps);
		}
		else
		{
			entry_wipe(e);
			COUNT(stale);
		}
	}
	LWLockRelease(sh->lock);
	pgck_wipe(key, PGCK_KEYMEM_SLOT);
	ConditionVariableBroadcast(&sh->cv);
	return true;
}

PGDLLEXPORT void pgck_shcache_unwrap_worker_main(Datum arg);

void
pgck_shcache_unwrap_worker_main(Datum arg)
{
	uint8	   *key;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (!pgck_shcache_enabled())
		proc_exit(0);
	key = pgck_locked_alloc();
	if (DatumGetInt32(arg) == REFRESH_WORKER_ARG)
	{
		refresh_drain(key, AllocSetContextCreate(TopMemoryContext, "pgcrypt_kms refresh worker",
												 ALLOCSET_DEFAULT_SIZES));
		proc_exit(0);
	}
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (!work_one(key))
			break;
	}
	proc_exit(0);
}

/*
 * Are entries this backend queued still waiting or being unwrapped, and not
 * for longer than a KMS call may take (a worker that hangs or was killed is
 * not waited for beyond that: its entry is then taken over by whoever needs
 * it)?
 */
static bool
my_queue_pending(void)
{
	int			i;
	bool		pending = false;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(sh->lock, LW_SHARED);
	for (i = 0; i < sh->nentries && !pending; i++)
		pending = (sh->entries[i].state == ST_QUEUED || sh->entries[i].state == ST_LOADING) &&
			sh->entries[i].queued_by == MyProcPid &&
			now - sh->entries[i].load_started < load_stale_us();
	LWLockRelease(sh->lock);
	return pending;
}

void
pgck_shcache_abandon_queued(void)
{
	int			i;

	if (!pgck_shcache_enabled())
		return;
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	for (i = 0; i < sh->nentries; i++)
		if (sh->entries[i].state == ST_QUEUED && sh->entries[i].queued_by == MyProcPid)
			entry_wipe(&sh->entries[i]);
	LWLockRelease(sh->lock);
	ConditionVariableBroadcast(&sh->cv);
}

static int
cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, PGCK_SHCACHE_DIGEST_LEN);
}

/* How many of n digests the shared cache holds a key for; sorts digests. */
static int
count_shared(uint8 (*digests)[PGCK_SHCACHE_DIGEST_LEN], int n)
{
	int			shared = 0;
	int			i;

	qsort(digests, n, PGCK_SHCACHE_DIGEST_LEN, cmp_digest);
	LWLockAcquire(sh->lock, LW_SHARED);
	for (i = 0; i < sh->nentries; i++)
		if (sh->entries[i].state == ST_VALID &&
			bsearch(sh->entries[i].digest, digests, n, PGCK_SHCACHE_DIGEST_LEN, cmp_digest) != NULL)
			shared++;
	LWLockRelease(sh->lock);
	return shared;
}

int
pgck_shcache_drain(uint8 (*digests)[PGCK_SHCACHE_DIGEST_LEN], int nqueued)
{
	uint8	   *key;

	if (!pgck_shcache_enabled() || nqueued == 0)
		return 0;
	(void) start_workers(Min(nqueued, pgck_unwrap_concurrency) - 1, "pgck_shcache_unwrap_worker_main",
						 "pgcrypt_kms unwrap worker", Int32GetDatum(0), NULL);
	key = pgck_locked_alloc();
	PG_TRY();
	{
		while (work_one(key))
			CHECK_FOR_INTERRUPTS();
		while (my_queue_pending())
			(void) ConditionVariableTimedSleep(&sh->cv, WAIT_POLL_MS, PG_WAIT_EXTENSION);
		ConditionVariableCancelSleep();
	}
	PG_FINALLY();
	{
		pgck_locked_free(key);
	}
	PG_END_TRY();

	/* which of them hold a key now (a failed unwrap wiped its entry) */
	return count_shared(digests, nqueued);
}
