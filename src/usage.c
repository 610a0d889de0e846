/*-------------------------------------------------------------------------
 *
 * usage.c
 *		Shared per-(database, key version) encryption counters; see usage.h.
 *
 * Slots are assigned under one LWLock (rare: once per version per backend)
 * and counted with atomics (every encryption).  The slot table is open
 * addressing on (dbid, id); it never shrinks while the server runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

#include "usage.h"

#define USAGE_SLOTS		131072	/* 2 MB of shared memory */
#define USAGE_FILE		"pgcrypt_kms_usage.dat"
#define USAGE_MAGIC		0x50474b55	/* "PGKU" */
/* a crash loses at most what was counted since the last save of each slot */
#define USAGE_CRASH_PAD	(2 * PGCK_USAGE_SAVE_EVERY)

typedef struct UsageSlot
{
	Oid			dbid;			/* InvalidOid: free */
	uint32		id;
	pg_atomic_uint64 uses;
} UsageSlot;

typedef struct UsageState
{
	LWLock	   *lock;
	UsageSlot	slots[USAGE_SLOTS];
} UsageState;

typedef struct UsageRecord
{
	Oid			dbid;
	uint32		id;
	uint64		uses;
} UsageRecord;

static UsageState *usage = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
usage_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(UsageState)));
	RequestNamedLWLockTranche("pgcrypt_kms", 1);
}

static uint32
slot_hash(Oid dbid, uint32 id)
{
	return (uint32) ((dbid * 0x9E3779B1u) ^ (id * 0x85EBCA77u)) % USAGE_SLOTS;
}

/* Find or (create) the slot of (dbid, id); caller holds the lock as needed. */
static UsageSlot *
slot_lookup(Oid dbid, uint32 id, bool create)
{
	uint32		h = slot_hash(dbid, id);
	int			i;

	for (i = 0; i < USAGE_SLOTS; i++)
	{
		UsageSlot  *s = &usage->slots[(h + i) % USAGE_SLOTS];

		if (s->dbid == dbid && s->id == id)
			return s;
		if (s->dbid == InvalidOid)
		{
			if (!create)
				return NULL;
			s->id = id;
			pg_atomic_write_u64(&s->uses, 0);
			pg_write_barrier();
			s->dbid = dbid;
			return s;
		}
	}
	return NULL;
}

/* Write every counter to the usage file (temp file + rename). */
static void
usage_save(void)
{
	char		tmp[MAXPGPATH];
	int			fd;
	int			i;
	bool		ok = true;
	uint32		magic = USAGE_MAGIC;

	snprintf(tmp, sizeof(tmp), "%s.tmp", USAGE_FILE);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		ereport(LOG, (errcode_for_file_access(), errmsg("could not write \"%s\": %m", tmp)));
		return;
	}
	ok = write(fd, &magic, sizeof(magic)) == sizeof(magic);
	for (i = 0; ok && i < USAGE_SLOTS; i++)
	{
		UsageSlot  *s = &usage->slots[i];
		UsageRecord r;

		if (s->dbid == InvalidOid)
			continue;
		r.dbid = s->dbid;
		r.id = s->id;
		r.uses = pg_atomic_read_u64(&s->uses);
		ok = write(fd, &r, sizeof(r)) == sizeof(r);
	}
	if (ok)
		ok = pg_fsync(fd) == 0;
	if (CloseTransientFile(fd) != 0)
		ok = false;
	if (!ok || rename(tmp, USAGE_FILE) != 0)
		ereport(LOG, (errcode_for_file_access(), errmsg("could not save \"%s\": %m", USAGE_FILE)));
}

static void
usage_load(void)
{
	int			fd = OpenTransientFile(USAGE_FILE, O_RDONLY | PG_BINARY);
	uint32		magic;
	UsageRecord r;

	if (fd < 0)
		return;
	if (read(fd, &magic, sizeof(magic)) == sizeof(magic) && magic == USAGE_MAGIC)
	{
		while (read(fd, &r, sizeof(r)) == sizeof(r))
		{
			UsageSlot  *s = slot_lookup(r.dbid, r.id, true);

			/* assume the worst about encryptions after the last save */
			if (s != NULL)
				pg_atomic_write_u64(&s->uses, r.uses + USAGE_CRASH_PAD);
		}
	}
	CloseTransientFile(fd);
}

static void
usage_shmem_shutdown(int code, Datum arg)
{
	/* a clean shutdown saves exact counts; after a crash the pad applies */
	if (code == 0 && usage != NULL)
		usage_save();
}

static void
usage_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	usage = ShmemInitStruct("pgcrypt_kms usage", sizeof(UsageState), &found);
	if (!found)
	{
		int			i;

		usage->lock = &(GetNamedLWLockTranche("pgcrypt_kms"))->lock;
		for (i = 0; i < USAGE_SLOTS; i++)
		{
			usage->slots[i].dbid = InvalidOid;
			usage->slots[i].id = 0;
			pg_atomic_init_u64(&usage->slots[i].uses, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
	if (!IsUnderPostmaster)
	{
		if (!found)
			usage_load();
		on_shmem_exit(usage_shmem_shutdown, (Datum) 0);
	}
}

void
pgck_usage_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = usage_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = usage_shmem_startup;
}

bool
pgck_usage_shared(void)
{
	return usage != NULL;
}

uint64
pgck_usage_add(uint32 id, pg_atomic_uint64 **slot_cache)
{
	uint64		n;

	if (usage == NULL)
		return 0;
	if (*slot_cache == NULL)
	{
		UsageSlot  *s;

		LWLockAcquire(usage->lock, LW_EXCLUSIVE);
		s = slot_lookup(MyDatabaseId, id, true);
		LWLockRelease(usage->lock);
		if (s == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("no room to count encryptions of key version id %u", id),
					 errdetail("pgcrypt_kms counts at most %d key versions per cluster.", USAGE_SLOTS),
					 errhint("Remove pgcrypt_kms_usage.dat from the data directory only after destroying or retiring unused keys and restarting.")));
		*slot_cache = &s->uses;
	}
	n = pg_atomic_add_fetch_u64(*slot_cache, 1);
	if (n % PGCK_USAGE_SAVE_EVERY == 0)
	{
		LWLockAcquire(usage->lock, LW_EXCLUSIVE);
		usage_save();
		LWLockRelease(usage->lock);
	}
	return n;
}

uint64
pgck_usage_get(uint32 id, bool *known)
{
	UsageSlot  *s;

	*known = false;
	if (usage == NULL)
		return 0;
	*known = true;
	LWLockAcquire(usage->lock, LW_SHARED);
	s = slot_lookup(MyDatabaseId, id, false);
	LWLockRelease(usage->lock);
	return s ? pg_atomic_read_u64(&s->uses) : 0;
}

/* kms_version_encryptions(version_id): this cluster's count, NULL if not counted. */
PG_FUNCTION_INFO_V1(pgck_kms_version_encryptions);
Datum
pgck_kms_version_encryptions(PG_FUNCTION_ARGS)
{
	bool		known;
	uint64		n = pgck_usage_get((uint32) PG_GETARG_INT32(0), &known);

	if (!known)
		PG_RETURN_NULL();
	PG_RETURN_INT64((int64) n);
}
