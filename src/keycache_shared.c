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

#include <openssl/evp.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
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
#include "keymem.h"

#define ST_FREE		0
#define ST_LOADING	1
#define ST_VALID	2

/* per-database generations; databases that share a slot share its bumps */
#define DB_GEN_SLOTS 64

/* a loader that has not finished in this time (it died?) is taken over */
#define LOAD_STALE_MARGIN_MS 5000
#define WAIT_POLL_MS 100

typedef struct ShEntry
{
	int			state;
	int			loader_pid;
	Oid			dbid;
	uint64		gen;
	pg_atomic_uint64 last_used;
	TimestampTz unwrapped_at;
	TimestampTz load_started;
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
	int			nentries;
	ShEntry		entries[FLEXIBLE_ARRAY_MEMBER];
} ShHeader;

static ShHeader *sh = NULL;
static Size sh_size = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#define COUNT(field) pg_atomic_fetch_add_u64(&sh->stats.field, 1)

static void
shcache_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestNamedLWLockTranche("pgcrypt_kms shared cache", 1);
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

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	if (IsUnderPostmaster)
		return;					/* the postmaster set it up before forking */
	wipe_region();
	sh->lock = &(GetNamedLWLockTranche("pgcrypt_kms shared cache"))->lock;
	ConditionVariableInit(&sh->cv);
	pg_atomic_init_u64(&sh->clock, 1);
	pg_atomic_init_u64(&sh->flushes, 0);
	for (i = 0; i < DB_GEN_SLOTS; i++)
		pg_atomic_init_u64(&sh->db_gen[i], 1);
	memset(&sh->stats, 0, sizeof(sh->stats));
	memset(sh->ops, 0, sizeof(sh->ops));
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
	ereport(LOG,
			(errmsg("pgcrypt_kms: shared key cache of %d entries (%zu kB, locked, excluded from core dumps)",
					sh->nentries, sh_size / 1024)));
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

static void
entry_wipe(ShEntry *e)
{
	pgck_wipe(e->key, sizeof(e->key));
	pgck_wipe(e->check, sizeof(e->check));
	memset(e->digest, 0, sizeof(e->digest));
	e->state = ST_FREE;
	e->loader_pid = 0;
	e->dbid = InvalidOid;
	e->gen = 0;
	pg_atomic_write_u64(&e->last_used, 0);
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
 * The entry of digest, under the lock (exclusive).  On the way, every valid
 * entry past its TTL or of an old generation is wiped: any lookup sweeps.
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
		if (e->state != ST_FREE && found == NULL &&
			memcmp(e->digest, digest, PGCK_SHCACHE_DIGEST_LEN) == 0)
			found = e;
	}
	return found;
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
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		ShEntry    *e;
		bool		wait = false;

		LWLockAcquire(sh->lock, LW_EXCLUSIVE);
		e = find_and_sweep(digest, now);
		if (e != NULL && e->state == ST_VALID)
		{
			if (e->dbid == MyDatabaseId && memcmp(e->check, check, PGCK_KEY_CHECK_LEN) == 0)
			{
				memcpy(key_out, e->key, PGCK_KEYMEM_SLOT);
				*unwrapped_at = e->unwrapped_at;
				pg_atomic_write_u64(&e->last_used, pg_atomic_fetch_add_u64(&sh->clock, 1));
				hit = true;
			}
		}
		else if (e != NULL)
		{
			/* being loaded: wait for it, unless its loader seems gone */
			if (now - e->load_started >=
				(int64) (pgck_kms_timeout + LOAD_STALE_MARGIN_MS) * 1000 && may_claim)
			{
				e->loader_pid = MyProcPid;
				e->load_started = now;
				e->gen = gen;
				*claimed = true;
			}
			else
				wait = true;
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
					 const uint8 *key, const uint8 *check, TimestampTz unwrapped_at)
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
			e->gen = gen;
			pg_atomic_write_u64(&e->last_used, pg_atomic_fetch_add_u64(&sh->clock, 1));
			e->state = ST_VALID;
			COUNT(unwraps);
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
	int			i;

	if (!pgck_shcache_enabled())
		return;
	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	pg_atomic_fetch_add_u64(db_gen_slot(MyDatabaseId), 1);
	for (i = 0; i < sh->nentries; i++)
	{
		ShEntry    *e = &sh->entries[i];

		if (e->state == ST_VALID && entry_stale(e))
		{
			entry_wipe(e);
			COUNT(stale);
		}
	}
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
