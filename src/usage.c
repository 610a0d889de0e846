/*-------------------------------------------------------------------------
 *
 * usage.c
 *		Shared per-DEK encryption counters, and which cluster may use them;
 *		see usage.h.
 *
 * Slots are assigned under one LWLock (rare: once per version per backend)
 * and counted with atomics (every encryption).  The slot table is open
 * addressing on the slot key; it never shrinks while the server runs.  A
 * slot key is a version's nonce space (a random uuid stored with the
 * version), or for counts carried over from 0.1.0's file and for a keyring
 * not yet updated, the (database, version id) pair 0.1.0 counted by.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "citus.h"
#include "keyring.h"
#include "pgck_errcodes.h"
#include "usage.h"

#define USAGE_SLOTS		131072	/* 5 MB of shared memory */
#define USAGE_FILE		"pgcrypt_kms_usage.dat"
#define USAGE_MAGIC_V1	0x50474b55	/* "PGKU": 0.1.0, records by (dbid, id) */
#define USAGE_MAGIC_V2	0x50474b32	/* "PGK2": records by UsageKey */
#define USAGE_MAGIC		0x50474b33	/* "PGK3": UsageHeader, then records by
									 * UsageKey */
/*
 * A crash loses at most what was counted since the last save of each slot.
 * Only a file saved at a clean shutdown (USAGE_CLEAN) has exact counts: it
 * is rewritten without the flag as soon as it is loaded, so a crash after
 * that start pads again.
 */
#define USAGE_CRASH_PAD	(2 * PGCK_USAGE_SAVE_EVERY)
#define USAGE_CLEAN		0x1
#define USAGE_LOST_MISSING	0x2	/* lost_before: the file was missing */
/*
 * Any other flag, or a reserved field not zero, is a file this version cannot
 * read (damaged, or written by a newer one): damaged, never trusted.
 */
#define USAGE_KNOWN_FLAGS	(USAGE_CLEAN | USAGE_LOST_MISSING)
#define USAGE_COUNT_CAP	(UINT64CONST(1) << 62)	/* far past every bound, far from wrapping */

/* space all zero: a (dbid, id) key; otherwise dbid and id are zero */
typedef struct UsageKey
{
	uint8		space[16];
	Oid			dbid;
	uint32		id;
} UsageKey;

typedef struct UsageSlot
{
	UsageKey	key;
	uint32		used;			/* 0: free; set last, after the key */
	bool		born_here;		/* version created by this cluster since this
								 * start (pgck_usage_note_created); never
								 * saved */
	pg_atomic_uint64 uses;
} UsageSlot;

typedef struct UsageState
{
	LWLock	   *lock;
	/*
	 * Versions created before this time have lost their counts to a damaged
	 * file, at this start or one before (kept in the file); 0 if none.
	 */
	TimestampTz lost_before;
	bool		lost_missing;	/* ... because the file was missing */
	UsageSlot	slots[USAGE_SLOTS];
} UsageState;

/* after the magic of a "PGK3" file */
typedef struct UsageHeader
{
	uint32		flags;			/* USAGE_CLEAN, USAGE_LOST_MISSING */
	uint32		reserved;		/* zero */
	TimestampTz lost_before;	/* UsageState.lost_before */
} UsageHeader;

typedef struct UsageRecordV1
{
	Oid			dbid;
	uint32		id;
	uint64		uses;
} UsageRecordV1;

typedef struct UsageRecord
{
	UsageKey	key;
	uint64		uses;
} UsageRecord;

/* without preloading: this backend's own counts */
typedef struct LocalCount
{
	UsageKey	key;			/* hash key */
	pg_atomic_uint64 uses;
} LocalCount;

static UsageState *usage = NULL;
static HTAB *local_counts = NULL;
static bool local_warned = false;
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

static bool
key_is_legacy(const UsageKey *k)
{
	static const uint8 zero[16] = {0};

	return memcmp(k->space, zero, sizeof(zero)) == 0;
}

static void
key_legacy(UsageKey *k, Oid dbid, uint32 id)
{
	memset(k, 0, sizeof(*k));
	k->dbid = dbid;
	k->id = id;
}

/* Find or (create) the slot of key; caller holds the lock as needed. */
static UsageSlot *
slot_lookup(const UsageKey *key, bool create)
{
	uint32		h = hash_bytes((const unsigned char *) key, sizeof(UsageKey)) % USAGE_SLOTS;
	int			i;

	for (i = 0; i < USAGE_SLOTS; i++)
	{
		UsageSlot  *s = &usage->slots[(h + i) % USAGE_SLOTS];

		if (s->used && memcmp(&s->key, key, sizeof(UsageKey)) == 0)
			return s;
		if (!s->used)
		{
			if (!create)
				return NULL;
			s->key = *key;
			s->born_here = false;
			pg_atomic_write_u64(&s->uses, 0);
			pg_write_barrier();
			s->used = 1;
			return s;
		}
	}
	return NULL;
}

/*
 * Write every counter to the usage file (temp file, fsync, rename, fsync of
 * the directory); clean only at a clean shutdown, when no encryption can
 * follow.  False if the file on disk is not this one.
 */
static bool
usage_save(bool clean)
{
	char		tmp[MAXPGPATH];
	int			fd;
	int			i;
	bool		ok = true;
	uint32		magic = USAGE_MAGIC;
	UsageHeader hdr;

	snprintf(tmp, sizeof(tmp), "%s.tmp", USAGE_FILE);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		ereport(LOG, (errcode_for_file_access(), errmsg("pgcrypt_kms: could not write \"%s\": %m", tmp),
					  errhidestmt(true)));
		return false;
	}
	memset(&hdr, 0, sizeof(hdr));
	hdr.flags = (clean ? USAGE_CLEAN : 0) | (usage->lost_missing ? USAGE_LOST_MISSING : 0);
	hdr.lost_before = usage->lost_before;
	ok = write(fd, &magic, sizeof(magic)) == sizeof(magic) &&
		write(fd, &hdr, sizeof(hdr)) == sizeof(hdr);
	for (i = 0; ok && i < USAGE_SLOTS; i++)
	{
		UsageSlot  *s = &usage->slots[i];
		UsageRecord r;

		if (!s->used)
			continue;
		memset(&r, 0, sizeof(r));
		r.key = s->key;
		r.uses = pg_atomic_read_u64(&s->uses);
		ok = write(fd, &r, sizeof(r)) == sizeof(r);
	}
	if (ok)
		ok = pg_fsync(fd) == 0;
	if (CloseTransientFile(fd) != 0)
		ok = false;
	/* durable_rename's own report at DEBUG1: ours hides the statement */
	if (!ok || durable_rename(tmp, USAGE_FILE, DEBUG1) != 0)
	{
		ereport(LOG, (errcode_for_file_access(), errmsg("pgcrypt_kms: could not save \"%s\": %m", USAGE_FILE),
					  errhidestmt(true)));
		return false;
	}
	return true;
}

static void
load_one(const UsageKey *key, uint64 uses, uint64 pad)
{
	UsageSlot  *s = slot_lookup(key, true);

	/*
	 * Unless the file was saved at a clean shutdown, assume the worst about
	 * encryptions after the last save; a count near the top of the range (a
	 * hostile or damaged file) saturates instead of wrapping to a small
	 * number.
	 */
	if (s != NULL)
		pg_atomic_write_u64(&s->uses,
							uses > USAGE_COUNT_CAP - pad ? USAGE_COUNT_CAP : uses + pad);
}

/*
 * A damaged counts file (unknown magic, unknown header flags or a reserved
 * field not zero, a truncated header or record) loses every count: never
 * start them again from zero.  Logged, the file kept aside as
 * .damaged, and every version created before this start must rotate before
 * its next encryption (pgck_usage_lost_before), also after later starts: the
 * time is saved in the file.
 */
static void
usage_damaged(const char *why)
{
	usage->lost_before = GetCurrentTimestamp();
	usage->lost_missing = false;
	ereport(WARNING,
			(errmsg("pgcrypt_kms: the encryption counts file \"%s\" is damaged (%s)", USAGE_FILE, why),
			 errdetail("Every key version created before this start rotates before its next encryption."),
			 errhint("The file is kept as \"%s.damaged\".", USAGE_FILE)));
	(void) rename(USAGE_FILE, USAGE_FILE ".damaged");
}

PgckUsageLoss
pgck_usage_version_lost(TimestampTz created, const pg_atomic_uint64 *counter)
{
	if (usage == NULL || created >= usage->lost_before)
		return PGCK_USAGE_COUNTED;

	/*
	 * A Citus worker that starts without a file is most often a new worker,
	 * which never encrypted under the coordinator's versions, and it cannot
	 * rotate them: it counts its share from zero (README, Citus).
	 */
	if (usage->lost_missing && pgck_citus_is_worker())
		return PGCK_USAGE_COUNTED;

	/*
	 * lost_before and created are wall-clock times.  After the clock steps
	 * back past lost_before (an NTP correction, a restored VM), a version
	 * this cluster creates now looks older than the loss: each rotation
	 * would create another "lost" version, and an encryption would rotate
	 * for ever.  A version created here since this start has counted every
	 * encryption from its first, whatever the clock says; its slot says so
	 * (shared counters are slots' uses: see pgck_usage_add).  The flag is
	 * set under the lock before the version commits, so before any other
	 * backend can resolve its counter.  Lowering lost_before to the clock
	 * instead would also clear versions created before the loss at clock
	 * times after it.  After a restart such a version looks lost again until
	 * the clock passes lost_before, and rotates once more: early, never
	 * unsafe.
	 */
	if (counter != NULL &&
		((const UsageSlot *) ((const char *) counter - offsetof(UsageSlot, uses)))->born_here)
		return PGCK_USAGE_COUNTED;
	return usage->lost_missing ? PGCK_USAGE_LOST_MISSING : PGCK_USAGE_LOST_DAMAGED;
}

static void
usage_load(void)
{
	int			fd = OpenTransientFile(USAGE_FILE, O_RDONLY | PG_BINARY);
	uint32		magic;

	ssize_t		n = 0;
	const char *damage = NULL;
	char		why[128];

	if (fd < 0)
	{
		/*
		 * No file: a new cluster, the library preloaded for the first time,
		 * or the file removed.  Nothing says the last two had no counts, so
		 * every version created before this start must rotate before it
		 * encrypts (as after a damage); in a new cluster there is none.
		 */
		usage->lost_before = GetCurrentTimestamp();
		usage->lost_missing = true;
		ereport(LOG,
				(errmsg("pgcrypt_kms: no encryption counts file \"%s\": key versions created before this start, if any, rotate before their next encryption",
						USAGE_FILE),
				 errhidestmt(true)));
		return;
	}
	if (read(fd, &magic, sizeof(magic)) != sizeof(magic))
		magic = 0;
	if (magic == USAGE_MAGIC || magic == USAGE_MAGIC_V2)
	{
		UsageHeader hdr;
		UsageRecord r;

		memset(&hdr, 0, sizeof(hdr));
		if (magic == USAGE_MAGIC && read(fd, &hdr, sizeof(hdr)) != sizeof(hdr))
			damage = "truncated header";
		else if ((hdr.flags & ~USAGE_KNOWN_FLAGS) != 0)
		{
			snprintf(why, sizeof(why), "unknown header flags 0x%x; a newer pgcrypt_kms may have written it",
					 hdr.flags & ~USAGE_KNOWN_FLAGS);
			damage = why;
		}
		else if (hdr.reserved != 0)
		{
			snprintf(why, sizeof(why), "reserved header field 0x%x, not zero; a newer pgcrypt_kms may have written it",
					 hdr.reserved);
			damage = why;
		}
		else
		{
			usage->lost_before = hdr.lost_before;
			usage->lost_missing = (hdr.flags & USAGE_LOST_MISSING) != 0;
			while ((n = read(fd, &r, sizeof(r))) == sizeof(r))
				load_one(&r.key, r.uses, (hdr.flags & USAGE_CLEAN) ? 0 : USAGE_CRASH_PAD);
		}
	}
	else if (magic == USAGE_MAGIC_V1)
	{
		UsageRecordV1 r;
		UsageKey	k;

		/* 0.1.0's counts, by (database, version id): see slot_for_key */
		while ((n = read(fd, &r, sizeof(r))) == sizeof(r))
		{
			key_legacy(&k, r.dbid, r.id);
			load_one(&k, r.uses, USAGE_CRASH_PAD);
		}
	}
	else
		damage = "unknown header";
	if (damage == NULL && n != 0)
		damage = "truncated record";
	CloseTransientFile(fd);
	if (damage != NULL)
		usage_damaged(damage);
}

static void
usage_shmem_shutdown(int code, Datum arg)
{
	/* a clean shutdown saves exact counts; after a crash the pad applies */
	if (code == 0 && usage != NULL)
		usage_save(true);
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
		usage->lost_before = 0;
		usage->lost_missing = false;
		for (i = 0; i < USAGE_SLOTS; i++)
		{
			memset(&usage->slots[i].key, 0, sizeof(UsageKey));
			usage->slots[i].used = 0;
			pg_atomic_init_u64(&usage->slots[i].uses, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
	if (!IsUnderPostmaster)
	{
		if (!found)
		{
			usage_load();
			/*
			 * Not clean from now on: a crash before the next save pads.  If
			 * the file cannot be rewritten, a clean one must not stay: without
			 * it the next start rotates every older version instead.
			 */
			if (!usage_save(false) && unlink(USAGE_FILE) != 0 && errno != ENOENT)
				ereport(WARNING,
						(errcode_for_file_access(),
						 errmsg("pgcrypt_kms: could not remove \"%s\": %m", USAGE_FILE),
						 errdetail("A crash before the next save of the encryption counts would reload them without the pad for what it lost.")));
		}
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

/* ---------------------------------------------------------------- cluster identity */

/* The timeline this cluster writes on (or, in recovery, replays). */
static uint32
cluster_timeline(void)
{
	TimeLineID	tli;

	if (RecoveryInProgress())
	{
		(void) GetXLogReplayRecPtr(&tli);
		return tli;
	}
	return GetWALInsertionTimeLine();
}

static bool
written_here(const PgckVersionWriter *w)
{
	/* a Citus worker's keyring is the coordinator's copy (citus.h) */
	return !w->known || pgck_citus_is_worker() ||
		(w->system_id == GetSystemIdentifier() && w->timeline == cluster_timeline());
}

/* Can this transaction rotate a key (as pgck_keycache_count_encryption can)? */
static bool
can_rotate_here(void)
{
	return !RecoveryInProgress() && !XactReadOnly && !IsInParallelMode();
}

/*
 * The slot key of version id, after checking that this cluster may encrypt
 * with it: false for a version created by another cluster (ereports where
 * the key cannot be rotated).
 */
static bool
version_usage_key(uint32 id, UsageKey *key)
{
	PgckVersionWriter w;

	if (!pgck_keyring_fetch_writer(id, &w))
	{
		/* gone since the cache read it: the next lookup reports it */
		key_legacy(key, MyDatabaseId, id);
		return true;
	}
	if (!written_here(&w))
	{
		if (!can_rotate_here())
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KEY_STATE),
					 errmsg("key \"%s\" version %d was created by another cluster and cannot encrypt here",
							w.key_name, w.version),
					 errdetail("Its encryption count is kept by the cluster that created it (system identifier " UINT64_FORMAT ", timeline %u), not by this one (system identifier " UINT64_FORMAT ", timeline %u): a restored copy or a promoted standby would reuse its nonce space uncounted.",
							   w.system_id, w.timeline, GetSystemIdentifier(), cluster_timeline()),
					 errhint("Rotate the key with kms_rotate_key() in a writable transaction on this cluster's primary, or encrypt there.")));
		/* a subscriber of the keyring: the rotation would fork it */
		pgck_keyring_refuse_if_subscribed(w.key_name, w.version, true);
		ereport(LOG,
				(errmsg("pgcrypt_kms: key \"%s\" version %d was created by another cluster (system identifier " UINT64_FORMAT ", timeline %u); rotating before this cluster (system identifier " UINT64_FORMAT ", timeline %u) encrypts with it",
						w.key_name, w.version, w.system_id, w.timeline,
						GetSystemIdentifier(), cluster_timeline()),
				 errhidestmt(true)));
		return false;
	}
	if (w.known)
	{
		memset(key, 0, sizeof(*key));
		memcpy(key->space, w.nonce_space, sizeof(key->space));
	}
	else
		key_legacy(key, MyDatabaseId, id);
	return true;
}

void
pgck_usage_note_created(uint32 id)
{
	PgckVersionWriter w;
	UsageSlot  *s;
	UsageKey	key;

	/*
	 * Only by nonce space: a (database, version id) key of a keyring not yet
	 * updated from 0.1.0 is handed out again after DROP/CREATE EXTENSION, to
	 * a version that may come back from a dump with a count this start lost.
	 */
	if (usage == NULL || !pgck_keyring_fetch_writer(id, &w) || !w.known || !written_here(&w))
		return;
	memset(&key, 0, sizeof(key));
	memcpy(key.space, w.nonce_space, sizeof(key.space));
	LWLockAcquire(usage->lock, LW_EXCLUSIVE);
	s = slot_lookup(&key, true);
	if (s != NULL)
		s->born_here = true;
	LWLockRelease(usage->lock);
}

bool
pgck_usage_version_writable_here(uint32 id)
{
	PgckVersionWriter w;

	if (!pgck_keyring_fetch_writer(id, &w))
		return true;
	return written_here(&w);
}

/* The shared counter of key, created (from 0.1.0's count, if any) on first use. */
static pg_atomic_uint64 *
shared_counter(const UsageKey *key, uint32 id)
{
	UsageSlot  *s;

	LWLockAcquire(usage->lock, LW_EXCLUSIVE);
	s = slot_lookup(key, false);
	if (s == NULL)
	{
		UsageSlot  *legacy = NULL;

		if (!key_is_legacy(key))
		{
			UsageKey	lk;

			/*
			 * 0.1.0 counted by (database, version id).  Such a count may be
			 * of another DEK that had the id before (DROP/CREATE EXTENSION):
			 * taking it over only rotates early.
			 */
			key_legacy(&lk, MyDatabaseId, id);
			legacy = slot_lookup(&lk, false);
		}
		s = slot_lookup(key, true);
		if (s != NULL && legacy != NULL)
			pg_atomic_write_u64(&s->uses, pg_atomic_read_u64(&legacy->uses));
	}
	LWLockRelease(usage->lock);
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("no room to count encryptions of key version id %u", id),
				 errdetail("pgcrypt_kms counts at most %d key versions per cluster, over the server's life: the counts of destroyed versions are not freed.", USAGE_SLOTS),
				 errhint("Stop the server and move pgcrypt_kms_usage.dat out of the data directory: at the next start every key version created before it rotates before its next encryption, and only the new versions are counted (on a Citus worker, which counts from zero then, rotate every key from the coordinator).")));
	return &s->uses;
}

/* This backend's own counter of key (the library is not preloaded). */
static pg_atomic_uint64 *
local_counter(const UsageKey *key)
{
	LocalCount *c;
	bool		found;

	if (local_counts == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(UsageKey);
		ctl.entrysize = sizeof(LocalCount);
		ctl.hcxt = TopMemoryContext;
		local_counts = hash_create("pgcrypt_kms local usage", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (!local_warned)
	{
		local_warned = true;
		ereport(WARNING,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("pgcrypt_kms counts this session's encryptions only: it is not in shared_preload_libraries"),
				 errdetail("AES-GCM with random nonces is safe for 2^32 encryptions per key; without the shared counters no session knows how many the others made."),
				 errhint("Add pgcrypt_kms to shared_preload_libraries and restart the server.")));
	}
	c = hash_search(local_counts, key, HASH_ENTER, &found);
	if (!found)
		pg_atomic_init_u64(&c->uses, 0);
	return &c->uses;
}

uint64
pgck_usage_add(uint32 id, pg_atomic_uint64 **slot_cache)
{
	uint64		n;

	if (*slot_cache == NULL)
	{
		UsageKey	key;

		if (!version_usage_key(id, &key))
			return PGCK_USAGE_FOREIGN;
		*slot_cache = usage != NULL ? shared_counter(&key, id) : local_counter(&key);
	}
	n = pg_atomic_add_fetch_u64(*slot_cache, 1);
	if (usage != NULL && n % PGCK_USAGE_SAVE_EVERY == 0)
	{
		LWLockAcquire(usage->lock, LW_EXCLUSIVE);
		usage_save(false);
		LWLockRelease(usage->lock);
	}
	return n;
}

uint64
pgck_usage_get(uint32 id, bool *known)
{
	PgckVersionWriter w;
	UsageKey	key;
	UsageKey	lk;
	UsageSlot  *s = NULL;

	*known = false;
	if (usage == NULL)
		return 0;
	*known = true;
	key_legacy(&lk, MyDatabaseId, id);
	key = lk;
	if (pgck_keyring_fetch_writer(id, &w) && w.known)
	{
		memset(&key, 0, sizeof(key));
		memcpy(key.space, w.nonce_space, sizeof(key.space));
	}
	LWLockAcquire(usage->lock, LW_SHARED);
	s = slot_lookup(&key, false);
	/* not yet used since 0.1.0's count: that count is what it will start from */
	if (s == NULL && !key_is_legacy(&key))
		s = slot_lookup(&lk, false);
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

/* pgcrypt_kms.cluster_system_id(): recorded with each new key version. */
PG_FUNCTION_INFO_V1(pgck_cluster_system_id);
Datum
pgck_cluster_system_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) GetSystemIdentifier());
}

/* pgcrypt_kms.cluster_timeline(): recorded with each new key version. */
PG_FUNCTION_INFO_V1(pgck_cluster_timeline);
Datum
pgck_cluster_timeline(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) cluster_timeline());
}
