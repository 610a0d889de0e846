/*-------------------------------------------------------------------------
 *
 * keymem.c
 *		Locked memory for raw keys; see keymem.h for the rules.
 *
 * Slots come from 64 kB chunks mapped MAP_PRIVATE | MAP_ANONYMOUS, one
 * chunk list per process.  The bookkeeping (which slots are used) lives in
 * TopMemoryContext; it holds no key bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/mman.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "aead.h"
#include "keymem.h"
#include "keypages.h"

#define SLOT_SIZE		PGCK_KEYMEM_SLOT
#define CHUNK_SIZE		(64 * 1024)
#define CHUNK_SLOTS		(CHUNK_SIZE / SLOT_SIZE)
#define MAX_RELEASE		4

typedef struct LockedChunk
{
	uint8	   *base;
	int			nused;
	bool		used[CHUNK_SLOTS];
	struct LockedChunk *next;
} LockedChunk;

static LockedChunk *chunks = NULL;
static bool lock_warned = false;	/* the key arena */
static bool ctx_lock_warned = false;	/* OpenSSL's keyed contexts: its own
										 * warning, also after the arena's */
static bool dump_warned = false;
static pid_t exit_wipe_pid = 0;	/* process that registered keymem_exit */
static void (*release_fns[MAX_RELEASE]) (void);
static int	nrelease = 0;

static void keymem_exit(int code, Datum arg);

void
pgck_keymem_on_release(void (*fn) (void))
{
	if (nrelease >= MAX_RELEASE)
		elog(ERROR, "too many key memory release functions");
	release_fns[nrelease++] = fn;
}

static LockedChunk *
locked_chunk_new(void)
{
	LockedChunk *c;
	void	   *p;

	/*
	 * Registered per process, here, not in _PG_init: a library preloaded in
	 * the postmaster would register it there, and every forked backend
	 * forgets the postmaster's on_proc_exit list.
	 */
	if (exit_wipe_pid != MyProcPid)
	{
		on_proc_exit(keymem_exit, (Datum) 0);
		exit_wipe_pid = MyProcPid;
	}
	p = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not map memory for the key cache: %m")));
	/* keys never reach a core dump or a forked child (COPY ... TO PROGRAM) */
	(void) madvise(p, CHUNK_SIZE, MADV_DONTDUMP);
	(void) madvise(p, CHUNK_SIZE, MADV_DONTFORK);
	if (mlock(p, CHUNK_SIZE) != 0 && !lock_warned)
	{
		lock_warned = true;
		ereport(WARNING,
				(errmsg("could not lock key cache memory: %m"),
				 errdetail("Unwrapped keys could be written to swap."),
				 errhint("Raise the memory lock limit of the PostgreSQL server (LimitMEMLOCK or ulimit -l) to at least %d kB per backend.",
						 CHUNK_SIZE / 1024)));
	}
	c = MemoryContextAllocZero(TopMemoryContext, sizeof(LockedChunk));
	c->base = p;
	c->next = chunks;
	chunks = c;
	return c;
}

/*
 * After aead.c has built keyed OpenSSL objects (GCM contexts, HMAC states),
 * which live in the heap with their pages locked and left out of core dumps
 * (keypages.c): warn once per backend if that could not be done.
 */
void
pgck_keymem_check_heap_keys(void)
{
	int			bits = pgck_aead_unprotected();

	if ((bits & PGCK_KEYPAGES_NOT_LOCKED) && !ctx_lock_warned)
	{
		ctx_lock_warned = true;
		ereport(WARNING,
				(errmsg("could not lock the memory of OpenSSL's keyed contexts"),
				 errdetail("Key schedules could be written to swap."),
				 errhint("Raise the memory lock limit of the PostgreSQL server (LimitMEMLOCK or ulimit -l).")));
	}
	if ((bits & PGCK_KEYPAGES_DUMPABLE) && !dump_warned)
	{
		dump_warned = true;
		ereport(WARNING,
				(errmsg("could not exclude OpenSSL's keyed contexts from core dumps"),
				 errdetail("Key schedules could be written to a core dump of this backend."),
				 errhint("Disable core dumps of the PostgreSQL server (ulimit -c 0).")));
	}
}

uint8 *
pgck_locked_alloc(void)
{
	LockedChunk *c;
	int			i;

	for (c = chunks; c != NULL; c = c->next)
		if (c->nused < CHUNK_SLOTS)
			break;
	if (c == NULL)
		c = locked_chunk_new();
	for (i = 0; i < CHUNK_SLOTS; i++)
	{
		if (!c->used[i])
		{
			c->used[i] = true;
			c->nused++;
			return c->base + i * SLOT_SIZE;
		}
	}
	elog(ERROR, "key cache arena chunk has no free slot");
	return NULL;				/* keep compiler quiet */
}

void
pgck_locked_free(uint8 *slot)
{
	LockedChunk *c;

	if (slot == NULL)
		return;
	for (c = chunks; c != NULL; c = c->next)
	{
		if (slot >= c->base && slot < c->base + CHUNK_SIZE)
		{
			int			i = (slot - c->base) / SLOT_SIZE;

			pgck_wipe(slot, SLOT_SIZE);
			if (c->used[i])
			{
				c->used[i] = false;
				c->nused--;
			}
			return;
		}
	}
	elog(ERROR, "key slot does not belong to the key cache arena");
}

static void
keymem_exit(int code, Datum arg)
{
	LockedChunk *c;
	int			nchunks = 0;
	int			nslots = 0;
	int			i;

	if (exit_wipe_pid != MyProcPid)
		return;
	for (c = chunks; c != NULL; c = c->next)
		nslots += c->nused;
	for (i = 0; i < nrelease; i++)
		release_fns[i] ();
	for (c = chunks; c != NULL; c = c->next)
	{
		pgck_wipe(c->base, CHUNK_SIZE);
		nchunks++;
	}
	/* no key material: how much was wiped, for tests and audits */
	elog(DEBUG1, "pgcrypt_kms: wiped %d key slots in %d locked chunks at backend exit",
		 nslots, nchunks);
}

void *
pgck_keymem_map_shared(Size size)
{
	void	   *p;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
	{
		ereport(WARNING,
				(errmsg("could not map %zu bytes for the shared key cache: %m", size)));
		return NULL;
	}
	/* inherited by every child: no forked process dumps it either */
	if (madvise(p, size, MADV_DONTDUMP) != 0)
	{
		ereport(WARNING,
				(errmsg("could not exclude the shared key cache from core dumps: %m")));
		(void) munmap(p, size);
		return NULL;
	}
	if (mlock(p, size) != 0)
	{
		ereport(WARNING,
				(errmsg("could not lock %zu kB of memory for the shared key cache: %m", size / 1024),
				 errdetail("Unwrapped keys are never put in memory that could be written to swap; the shared key cache is off."),
				 errhint("Raise the memory lock limit of the PostgreSQL server (LimitMEMLOCK or ulimit -l), or lower pgcrypt_kms.shared_cache_size.")));
		(void) munmap(p, size);
		return NULL;
	}
	memset(p, 0, size);
	return p;
}
