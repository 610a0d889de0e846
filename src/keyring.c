/*-------------------------------------------------------------------------
 *
 * keyring.c
 *		The SQL-side key tables: reads for the key cache, and the key
 *		administration functions kms_create_key() and kms_rotate_key().
 *
 * Every query runs as the owner of pgcrypt_kms.key_versions (the extension
 * owner) under SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION,
 * and names every object and operator with its schema, so neither the
 * caller's privileges nor its search_path can change what is read.
 *
 * The tables carry row triggers, and statement triggers for TRUNCATE
 * (pgck_keyring_changed, in keycache.c), that send a relcache invalidation
 * for the table changed; the key cache listens for it.  This file never calls into the cache: keys it generates go back
 * to the caller, which installs them (keycache.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include <limits.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_index.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "aead.h"
#include "enc_typed.h"
#include "guc.h"
#include "keyring.h"
#include "keymem.h"
#include "kms.h"
#include "pgck_errcodes.h"
#include "wrappings.h"

#define KEYRING_SCHEMA "pgcrypt_kms"

/* the keyring tables as last looked up; see pgck_keyring_is_keyring_rel */
static Oid	keys_relid = InvalidOid;
static Oid	versions_relid = InvalidOid;

static const char *const state_names[] = {"active", "decrypt-only", "retired", "destroyed"};
static const char *const transform_names[] = {"none", "exact", "lower", "email", "digits"};

const char *
pgck_state_name(PgckKeyState state)
{
	return state_names[state];
}

const char *
pgck_transform_name(PgckTransform t)
{
	return transform_names[t];
}

bool
pgck_transform_parse(const char *name, PgckTransform *out)
{
	int			i;

	for (i = 0; i < lengthof(transform_names); i++)
	{
		if (strcmp(name, transform_names[i]) == 0)
		{
			*out = (PgckTransform) i;
			return true;
		}
	}
	return false;
}

static PgckKeyState
state_parse(const char *s)
{
	int			i;

	for (i = 0; i < lengthof(state_names); i++)
		if (strcmp(s, state_names[i]) == 0)
			return (PgckKeyState) i;
	elog(ERROR, "unknown key state \"%s\" in the keyring", s);
	return PGCK_STATE_RETIRED;	/* keep compiler quiet */
}

/*
 * The OIDs of the keyring tables (also remembered for
 * pgck_keyring_is_keyring_rel); ereports if the extension's tables are
 * missing.
 */
static void
keyring_rels(Oid *keys_out, Oid *versions_out)
{
	Oid			nsp = get_namespace_oid(KEYRING_SCHEMA, true);
	Oid			keys_oid = InvalidOid;
	Oid			versions_oid = InvalidOid;

	if (OidIsValid(nsp))
	{
		keys_oid = get_relname_relid("keys", nsp);
		versions_oid = get_relname_relid("key_versions", nsp);
	}
	if (!OidIsValid(keys_oid) || !OidIsValid(versions_oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the pgcrypt_kms keyring tables do not exist in this database"),
				 errhint("Run CREATE EXTENSION pgcrypt_kms.")));
	keys_relid = keys_oid;
	versions_relid = versions_oid;
	*keys_out = keys_oid;
	*versions_out = versions_oid;
}

/* The owner of the keyring tables. */
static Oid
keyring_owner(void)
{
	Oid			keys_oid;
	Oid			versions_oid;
	HeapTuple	tup;
	Oid			owner;

	keyring_rels(&keys_oid, &versions_oid);
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(versions_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", versions_oid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

typedef PgckOwnerScope OwnerScope;

bool
pgck_keyring_is_keyring_rel(Oid relid)
{
	return OidIsValid(relid) && (relid == keys_relid || relid == versions_relid);
}

/*
 * The name of an enabled subscription of this database that replicates the
 * keyring (keys or key_versions) into it, or NULL.  A catalog read, for the
 * rare paths that would write the keyring on their own (a rotation before or
 * at the bound of encryption), never per value.
 */
static char *
keyring_subscription(void)
{
	Oid			nsp = get_namespace_oid(KEYRING_SCHEMA, true);
	const char *const tables[] = {"keys", "key_versions"};
	char	   *found = NULL;
	Relation	rel;
	int			i;

	if (!OidIsValid(nsp))
		return NULL;
	rel = table_open(SubscriptionRelRelationId, AccessShareLock);
	for (i = 0; i < lengthof(tables) && found == NULL; i++)
	{
		Oid			relid = get_relname_relid(tables[i], nsp);
		ScanKeyData skey;
		SysScanDesc scan;
		HeapTuple	tup;

		if (!OidIsValid(relid))
			continue;
		ScanKeyInit(&skey, Anum_pg_subscription_rel_srrelid, BTEqualStrategyNumber,
					F_OIDEQ, ObjectIdGetDatum(relid));
		scan = systable_beginscan(rel, SubscriptionRelSrrelidSrsubidIndexId, true, NULL, 1, &skey);
		while (found == NULL && HeapTupleIsValid(tup = systable_getnext(scan)))
		{
			Oid			subid = ((Form_pg_subscription_rel) GETSTRUCT(tup))->srsubid;
			HeapTuple	st = SearchSysCache1(SUBSCRIPTIONOID, ObjectIdGetDatum(subid));
			Form_pg_subscription sub;

			if (!HeapTupleIsValid(st))
				continue;
			sub = (Form_pg_subscription) GETSTRUCT(st);
			if (sub->subenabled && sub->subdbid == MyDatabaseId)
				found = pstrdup(NameStr(sub->subname));
			ReleaseSysCache(st);
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);
	return found;
}

void
pgck_keyring_refuse_if_subscribed(const char *key_name, int32 version, bool foreign)
{
	char	   *sub = keyring_subscription();

	if (sub == NULL)
		return;
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KEY_STATE),
			 errmsg("cannot encrypt with key \"%s\": this database subscribes to the keyring", key_name),
			 foreign ?
			 errdetail("Subscription \"%s\" replicates the keyring into this database. Version %d of the key was created by another cluster (the publisher): encrypting here would first write a new version of the key, which would conflict with the publisher's keyring and stop the subscription.",
					   sub, version) :
			 errdetail("Subscription \"%s\" replicates the keyring into this database. Version %d of the key is due for rotation: a version written here would conflict with the publisher's keyring and stop the subscription.",
					   sub, version),
			 errhint("Encrypt on the publisher. A subscriber's keys are the publisher's, read-only here.")));
}

/*
 * Run as the keyring's owner, as a SECURITY DEFINER function with
 * SET search_path would: every statement inside is written with
 * schema-qualified names and OPERATOR(pg_catalog.x), and the search_path is
 * pinned to pg_catalog, pg_temp as well, so that no object of the caller's
 * schemas (a trojan "=" operator, a function shadowing a built-in) can ever
 * run with the owner's privileges, whatever a future statement forgets.
 */
static void
owner_scope_enter(OwnerScope *scope)
{
	Oid			owner = keyring_owner();

	GetUserIdAndSecContext(&scope->save_userid, &scope->save_sec);
	scope->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(owner, scope->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
owner_scope_leave(OwnerScope *scope)
{
	SetUserIdAndSecContext(scope->save_userid, scope->save_sec);
	AtEOXact_GUC(true, scope->save_nestlevel);
}

void
pgck_keyring_scope_enter(PgckOwnerScope *scope)
{
	owner_scope_enter(scope);
}

void
pgck_keyring_scope_leave(PgckOwnerScope *scope)
{
	owner_scope_leave(scope);
}

/*
 * Copy a column into the caller's context (SPI memory and scanned buffers go
 * away): col is a result column of an SPI tuple or an attribute number of a
 * table's tuple, for heap_getattr() both.
 */
static char *
col_text(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, col, desc, &isnull);

	if (isnull)
		return NULL;
	return MemoryContextStrdup(cxt, TextDatumGetCString(d));
}

static bytea *
col_bytea(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, col, desc, &isnull);
	bytea	   *b;
	bytea	   *copy;

	if (isnull)
		return NULL;
	b = DatumGetByteaPP(d);
	copy = MemoryContextAlloc(cxt, VARSIZE_ANY_EXHDR(b) + VARHDRSZ);
	SET_VARSIZE(copy, VARSIZE_ANY_EXHDR(b) + VARHDRSZ);
	memcpy(VARDATA(copy), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
	return copy;
}

static int32
col_int(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, col, desc, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

static SPIPlanPtr
prepare_saved(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * The snapshot keyring reads use, registered: one taken now, whatever the
 * transaction's, so that a key destroyed, retired or rotated and committed
 * is seen at once, also inside a REPEATABLE READ transaction.  The index
 * reads take it after locking the tables, so the invalidations those locks
 * took in are older than it; an SPI read locks while it runs, and
 * keycache.c's fetch_*_stable read again when one arrived meanwhile.
 *
 * In parallel mode (a parallel worker, or the leader while a parallel plan
 * runs) GetLatestSnapshot() is not allowed, and the active snapshot may be
 * the transaction's, taken long before (0.2.0 development read the keyring
 * from it, so a parallel scan in a REPEATABLE READ transaction decrypted with
 * a key destroyed since).  A catalog snapshot is allowed there: it is an
 * ordinary MVCC snapshot, made fresh by invalidating the cached one first.
 */
static Snapshot
keyring_snapshot(void)
{
	if (!IsInParallelMode())
		return RegisterSnapshot(GetLatestSnapshot());
	InvalidateCatalogSnapshot();
	return RegisterSnapshot(GetCatalogSnapshot(InvalidOid));
}

/* Run a saved read-only plan on keyring_snapshot(). */
static int
execute_read(SPIPlanPtr plan, Datum *values)
{
	Snapshot	snap = keyring_snapshot();
	volatile int ret = 0;

	PG_TRY();
	{
		ret = SPI_execute_snapshot(plan, values, NULL, snap, InvalidSnapshot,
								   true, false, 1);
	}
	PG_FINALLY();
	{
		UnregisterSnapshot(snap);
	}
	PG_END_TRY();
	return ret;
}

/* ---------------------------------------------------------------- key ARNs */

/*
 * Does the keyring have the key ARN columns (kms_key_arn and friends, added
 * by the 0.1.0 → 0.2.0 update)?  Until ALTER EXTENSION ... UPDATE this
 * library runs against 0.1.0's tables: nothing is stored then, and every
 * call uses the references as given.
 */
static bool
keyring_has_arns(void)
{
	Oid			nsp = get_namespace_oid(KEYRING_SCHEMA, true);
	Oid			keys_oid;
	Oid			versions_oid;

	if (!OidIsValid(nsp))
		return false;
	keys_oid = get_relname_relid("keys", nsp);
	versions_oid = get_relname_relid("key_versions", nsp);
	return OidIsValid(keys_oid) && OidIsValid(versions_oid) &&
		get_attnum(versions_oid, "kms_key_arn") != InvalidAttrNumber &&
		get_attnum(keys_oid, "index_kms_key_arn") != InvalidAttrNumber &&
		get_attnum(keys_oid, "prev_index_kms_key_arn") != InvalidAttrNumber;
}

/*
 * The reference KMS calls use for a wrapped key: the stored reference's
 * scheme with the key ARN the KMS reported, when known (an alias may point
 * elsewhere by now), else the stored reference.  NULL stored gives NULL.
 */
static char *
call_ref(const char *stored, const char *arn, MemoryContext cxt)
{
	const char *colon;

	if (stored == NULL || arn == NULL || (colon = strchr(stored, ':')) == NULL)
		return stored == NULL ? NULL : MemoryContextStrdup(cxt, stored);
	return MemoryContextStrdup(cxt, psprintf("%.*s:%s", (int) (colon - stored), stored, arn));
}

/* Inside SPI: record the key ARN of a version just written (if any). */
static void
store_version_arn(uint32 id, const char *arn)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];

	if (arn == NULL || !keyring_has_arns())
		return;
	values[0] = Int32GetDatum((int32) id);
	values[1] = CStringGetTextDatum(arn);
	if (SPI_execute_with_args("UPDATE " KEYRING_SCHEMA ".key_versions SET kms_key_arn = $2"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "keyring statement failed");
}

/*
 * Inside SPI: record the key ARN of key name's index key just written (if
 * any); with rotated, the current index key's ARN moves to the previous.
 */
static void
store_index_arn(const char *name, const char *arn, bool rotated)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	if ((arn == NULL && !rotated) || !keyring_has_arns())
		return;
	values[0] = CStringGetTextDatum(name);
	values[1] = arn != NULL ? CStringGetTextDatum(arn) : (Datum) 0;
	if (arn == NULL)
		nulls[1] = 'n';
	if (SPI_execute_with_args(rotated ?
							  "UPDATE " KEYRING_SCHEMA ".keys SET index_kms_key_arn = $2,"
							  "       prev_index_kms_key_arn = index_kms_key_arn"
							  " WHERE key_name OPERATOR(pg_catalog.=) $1" :
							  "UPDATE " KEYRING_SCHEMA ".keys SET index_kms_key_arn = $2"
							  " WHERE key_name OPERATOR(pg_catalog.=) $1",
							  2, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "keyring statement failed");
}

/*
 * Record the ARN a KMS reported for the wrapped key 'wrapped' of key name
 * in whichever keyring column belongs to it and does not hold one yet.  The
 * wrapped blob identifies the row (KMS blobs are unique).  See
 * pgck_keyring_unwrap for when this runs and what a failure means.
 */
static void
record_arn(const char *name, const bytea *wrapped, const char *arn)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	if (arn == NULL || !IsTransactionState() || IsInParallelMode() ||
		RecoveryInProgress() || XactReadOnly || !keyring_has_arns())
		return;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		OwnerScope	scope;
		Oid			types[3] = {TEXTOID, BYTEAOID, TEXTOID};
		Datum		values[3];
		bool		isnull;
		bool		need[3];
		int			i;
		static const char *const updates[3] = {
			"UPDATE " KEYRING_SCHEMA ".key_versions SET kms_key_arn = $3"
			" WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT id FROM " KEYRING_SCHEMA ".key_versions"
			"               WHERE key_name OPERATOR(pg_catalog.=) $1"
			"                 AND wrapped_dek OPERATOR(pg_catalog.=) $2 AND kms_key_arn IS NULL"
			"               FOR UPDATE SKIP LOCKED))",
			"UPDATE " KEYRING_SCHEMA ".keys SET index_kms_key_arn = $3"
			" WHERE key_name OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT key_name FROM " KEYRING_SCHEMA ".keys"
			"                     WHERE key_name OPERATOR(pg_catalog.=) $1"
			"                       AND index_key_wrapped OPERATOR(pg_catalog.=) $2"
			"                       AND index_kms_key_arn IS NULL"
			"                     FOR UPDATE SKIP LOCKED))",
			"UPDATE " KEYRING_SCHEMA ".keys SET prev_index_kms_key_arn = $3"
			" WHERE key_name OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT key_name FROM " KEYRING_SCHEMA ".keys"
			"                     WHERE key_name OPERATOR(pg_catalog.=) $1"
			"                       AND prev_index_key_wrapped OPERATOR(pg_catalog.=) $2"
			"                       AND prev_index_kms_key_arn IS NULL"
			"                     FOR UPDATE SKIP LOCKED))",
		};

		values[0] = CStringGetTextDatum(name);
		values[1] = PointerGetDatum(wrapped);
		values[2] = CStringGetTextDatum(arn);
		owner_scope_enter(&scope);
		SPI_connect();
		/* look first: an UPDATE, even of no row, invalidates every key cache */
		if (SPI_execute_with_args("SELECT EXISTS (SELECT FROM " KEYRING_SCHEMA ".key_versions"
								  "                WHERE key_name OPERATOR(pg_catalog.=) $1"
								  "                  AND wrapped_dek OPERATOR(pg_catalog.=) $2"
								  "                  AND kms_key_arn IS NULL),"
								  "       EXISTS (SELECT FROM " KEYRING_SCHEMA ".keys"
								  "                WHERE key_name OPERATOR(pg_catalog.=) $1"
								  "                  AND index_key_wrapped OPERATOR(pg_catalog.=) $2"
								  "                  AND index_kms_key_arn IS NULL),"
								  "       EXISTS (SELECT FROM " KEYRING_SCHEMA ".keys"
								  "                WHERE key_name OPERATOR(pg_catalog.=) $1"
								  "                  AND prev_index_key_wrapped OPERATOR(pg_catalog.=) $2"
								  "                  AND prev_index_kms_key_arn IS NULL)",
								  2, types, values, NULL, true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "keyring query failed");
		for (i = 0; i < 3; i++)
			need[i] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												 i + 1, &isnull));
		for (i = 0; i < 3; i++)
			if (need[i] &&
				SPI_execute_with_args(updates[i], 3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "keyring statement failed");
		SPI_finish();
		owner_scope_leave(&scope);
		pgck_subxact_release(cxt, owner);
	}
	PG_CATCH();
	{
		/* the subtransaction's abort restores the user id and ends SPI */
		ErrorData  *edata = pgck_subxact_abort(cxt, owner);

		/* a cancel or shutdown goes on; anything else leaves it for later */
		if (pgck_error_ends_statement(edata))
			ReThrowError(edata);
		ereport(DEBUG1,
				(errmsg_internal("pgcrypt_kms: the key ARN of a wrapped key of \"%s\" was not recorded: %s",
								 name, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/* ------------------------------------------------- rows the key cache reads */

/*
 * The two reads behind every key-cache miss, pgck_keyring_fetch_key and
 * pgck_keyring_fetch_version, go through the tables' unique indexes with the
 * access methods PostgreSQL's own catalog code uses, not through SPI: a new
 * session's first decrypt spent most of its instructions planning the two
 * queries and filling the catalog caches the planner consults, for two
 * single-row reads.  An index scan runs no user-written code and checks no
 * privilege, so no owner scope is needed; what the SQL read gave is kept:
 * the same rows, on the same snapshot (see keyring_snapshot), under the
 * same AccessShareLock.
 */

/* attribute number of a column of rel, which must have it */
static AttrNumber
column_needed(Relation rel, const char *name)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), name);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "the pgcrypt_kms keyring table \"%s\" has no column \"%s\"",
			 RelationGetRelationName(rel), name);
	return attnum;
}

/*
 * Begin a scan of rel's rows whose column attnum equals value (text or int4,
 * by eqproc), on a valid, non-partial btree index whose first column is
 * attnum (the primary key, or UNIQUE (key_name, version)).  The scan key
 * carries the index column's collation: the tree is ordered by it.
 */
static SysScanDesc
keyring_scan(Relation rel, AttrNumber attnum, RegProcedure eqproc, Datum value,
			 Snapshot snap, ScanKeyData *key)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;
		bool		usable = form->indisvalid && form->indisready &&
			index->rd_rel->relam == BTREE_AM_OID &&
			form->indkey.values[0] == attnum &&
			heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL);
		Oid			collation = index->rd_indcollation[0];

		index_close(index, NoLock);
		if (usable)
		{
			ScanKeyEntryInitialize(key, 0, attnum, BTEqualStrategyNumber, InvalidOid,
								   collation, eqproc, value);
			return systable_beginscan(rel, lfirst_oid(lc), true, snap, 1, key);
		}
	}
	elog(ERROR, "the pgcrypt_kms keyring table \"%s\" has no index on its column %d",
		 RelationGetRelationName(rel), attnum);
	return NULL;				/* keep compiler quiet */
}

/* The key row of name, by the primary key; NULL when there is none. */
static HeapTuple
key_tuple(Relation keys, const char *name, Snapshot snap)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	scan = keyring_scan(keys, column_needed(keys, "key_name"), F_TEXTEQ,
						CStringGetTextDatum(name), snap, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		tup = heap_copytuple(tup);
	systable_endscan(scan);
	return tup;
}

/* jsonb column as text, as kms_context::text gives it */
static char *
col_jsonb_text(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, col, desc, &isnull);
	MemoryContext old;
	char	   *out;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	out = DatumGetCString(DirectFunctionCall1(jsonb_out, d));
	MemoryContextSwitchTo(old);
	return out;
}

bool
pgck_keyring_fetch_key(const char *name, PgckKeyRow *out)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			keys_oid;
	Oid			versions_oid;
	Relation	keys;
	Relation	versions;
	Snapshot	snap;
	HeapTuple	tup;
	bool		found = false;

	memset(out, 0, sizeof(*out));
	keyring_rels(&keys_oid, &versions_oid);
	keys = table_open(keys_oid, AccessShareLock);
	versions = table_open(versions_oid, AccessShareLock);
	snap = keyring_snapshot();
	tup = key_tuple(keys, name, snap);
	if (HeapTupleIsValid(tup))
	{
		TupleDesc	desc = RelationGetDescr(keys);
		bool		has_arns = keyring_has_arns();
		char	   *transform;
		bool		isnull;
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	vtup;
		AttrNumber	state_col = column_needed(versions, "state");
		AttrNumber	id_col = column_needed(versions, "id");

		found = true;
		out->key_name = MemoryContextStrdup(caller, name);
		out->kms_key = col_text(tup, desc, column_needed(keys, "kms_key"), caller);
		out->kms_context = col_jsonb_text(tup, desc, column_needed(keys, "kms_context"), caller);
		transform = col_text(tup, desc, column_needed(keys, "blind_index"), caller);
		if (transform == NULL || !pgck_transform_parse(transform, &out->transform))
			elog(ERROR, "unknown blind index transform \"%s\" in the keyring",
				 transform ? transform : "");
		out->index_bits = col_int(tup, desc, column_needed(keys, "index_bits"));
		out->index_key_version = col_int(tup, desc, column_needed(keys, "index_key_version"));
		out->index_key_wrapped = col_bytea(tup, desc, column_needed(keys, "index_key_wrapped"), caller);
		out->index_kms_key = col_text(tup, desc, column_needed(keys, "index_kms_key"), caller);
		out->prev_index_key_wrapped = col_bytea(tup, desc, column_needed(keys, "prev_index_key_wrapped"), caller);
		(void) heap_getattr(tup, column_needed(keys, "destroyed"), desc, &isnull);
		out->destroyed = !isnull;
		out->index_key_check = col_bytea(tup, desc, column_needed(keys, "index_key_check"), caller);
		out->prev_index_key_check = col_bytea(tup, desc, column_needed(keys, "prev_index_key_check"), caller);
		if (has_arns)
		{
			char	   *stored = out->index_kms_key;

			out->index_kms_key_arn = col_text(tup, desc, column_needed(keys, "index_kms_key_arn"), caller);
			out->prev_index_kms_key_arn = col_text(tup, desc, column_needed(keys, "prev_index_kms_key_arn"), caller);
			out->index_kms_key = call_ref(stored, out->index_kms_key_arn, caller);
			out->prev_index_kms_key = call_ref(stored, out->prev_index_kms_key_arn, caller);
			/* one reference serves both index keys where they differ */
			if (out->prev_index_key_wrapped != NULL && out->index_kms_key != NULL &&
				strcmp(out->index_kms_key, out->prev_index_kms_key) != 0)
				out->index_kms_key = stored;
		}
		else
			out->prev_index_kms_key = out->index_kms_key;

		/* the active version (at most one: key_versions_one_active) */
		scan = keyring_scan(versions, column_needed(versions, "key_name"), F_TEXTEQ,
							CStringGetTextDatum(name), snap, &key);
		while (HeapTupleIsValid(vtup = systable_getnext(scan)))
		{
			char	   *state = col_text(vtup, RelationGetDescr(versions), state_col, caller);

			if (state != NULL && strcmp(state, "active") == 0)
			{
				out->current_id = (uint32) col_int(vtup, RelationGetDescr(versions), id_col);
				break;
			}
		}
		systable_endscan(scan);
		heap_freetuple(tup);
	}
	UnregisterSnapshot(snap);
	table_close(versions, AccessShareLock);
	table_close(keys, AccessShareLock);
	return found;
}

/* Where version_row_fill finds a version row's columns (result columns or attribute numbers). */
typedef struct VersionCols
{
	int			key_name;
	int			version;
	int			kms_key;
	int			wrapped_dek;
	int			state;
	int			created;
	int			key_check;
	int			kms_key_arn;	/* 0: the keyring has no ARNs yet */
} VersionCols;

/* A version row from tup's columns cols, with its key's KMS context. */
static void
version_row_fill(HeapTuple tup, TupleDesc desc, const VersionCols *cols, char *kms_context,
				 MemoryContext cxt, PgckVersionRow *out)
{
	bool		isnull;
	char	   *state;

	out->key_name = col_text(tup, desc, cols->key_name, cxt);
	out->version = col_int(tup, desc, cols->version);
	out->kms_key = col_text(tup, desc, cols->kms_key, cxt);
	out->kms_context = kms_context;
	out->wrapped_dek = col_bytea(tup, desc, cols->wrapped_dek, cxt);
	state = col_text(tup, desc, cols->state, cxt);
	out->state = state_parse(state ? state : "");
	out->created = DatumGetTimestampTz(heap_getattr(tup, cols->created, desc, &isnull));
	out->key_check = col_bytea(tup, desc, cols->key_check, cxt);
	if (cols->kms_key_arn != 0)
	{
		out->kms_key_arn = col_text(tup, desc, cols->kms_key_arn, cxt);
		out->kms_key = call_ref(out->kms_key, out->kms_key_arn, cxt);
	}
}

/* The result columns of USABLE_QUERY after its id */
static void
usable_cols(bool has_arns, VersionCols *cols)
{
	cols->key_name = 2;
	cols->version = 3;
	cols->kms_key = 4;
	/* 5: kms_context */
	cols->wrapped_dek = 6;
	cols->state = 7;
	cols->created = 8;
	cols->key_check = 9;
	cols->kms_key_arn = has_arns ? 10 : 0;
}

/*
 * Every active and decrypt-only version row of the keyring, in one query (a
 * prefetch of thousands of keys must not read them one by one); palloc'd in
 * the caller's context.  0 in parallel mode.
 */
int
pgck_keyring_usable_versions(PgckVersionRow **rows_out)
{
	MemoryContext caller = CurrentMemoryContext;
	OwnerScope	scope;
	volatile int n = 0;

	*rows_out = NULL;
	if (IsInParallelMode())
		return 0;				/* GetLatestSnapshot is not allowed there */
	owner_scope_enter(&scope);
	PG_TRY();
	{
		bool		has_arns = keyring_has_arns();
		SPIPlanPtr	plan;
		int			ret;
		uint64		i;
		VersionCols cols;

		usable_cols(has_arns, &cols);
		SPI_connect();
#define USABLE_QUERY(more) \
		"SELECT v.id, v.key_name, v.version, v.kms_key, k.kms_context::pg_catalog.text," \
		"       v.wrapped_dek, v.state, v.created, v.key_check" more \
		"  FROM " KEYRING_SCHEMA ".key_versions v" \
		"  JOIN " KEYRING_SCHEMA ".keys k ON k.key_name OPERATOR(pg_catalog.=) v.key_name" \
		" WHERE v.state OPERATOR(pg_catalog.=) 'active'" \
		"    OR v.state OPERATOR(pg_catalog.=) 'decrypt-only'"
		plan = SPI_prepare(has_arns ? USABLE_QUERY(", v.kms_key_arn") : USABLE_QUERY(""), 0, NULL);
#undef USABLE_QUERY
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		ret = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
								   true, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "keyring query failed: %s", SPI_result_code_string(ret));
		*rows_out = MemoryContextAllocZero(caller, sizeof(PgckVersionRow) * Max(SPI_processed, 1));
		for (i = 0; i < SPI_processed; i++)
		{
			PgckVersionRow *row = &(*rows_out)[n++];

			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			row->id = (uint32) col_int(tup, desc, 1);
			version_row_fill(tup, desc, &cols, col_text(tup, desc, 5, caller), caller, row);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	return n;
}

bool
pgck_keyring_fetch_version(uint32 id, PgckVersionRow *out)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			keys_oid;
	Oid			versions_oid;
	Relation	keys;
	Relation	versions;
	Snapshot	snap;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	memset(out, 0, sizeof(*out));
	if (id == 0 || id > PG_INT32_MAX)
		return false;
	keyring_rels(&keys_oid, &versions_oid);
	keys = table_open(keys_oid, AccessShareLock);
	versions = table_open(versions_oid, AccessShareLock);
	snap = keyring_snapshot();
	scan = keyring_scan(versions, column_needed(versions, "id"), F_INT4EQ,
						Int32GetDatum((int32) id), snap, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		TupleDesc	desc = RelationGetDescr(versions);
		VersionCols cols;
		char	   *name;
		HeapTuple	ktup;

		cols.key_name = column_needed(versions, "key_name");
		cols.version = column_needed(versions, "version");
		cols.kms_key = column_needed(versions, "kms_key");
		cols.wrapped_dek = column_needed(versions, "wrapped_dek");
		cols.state = column_needed(versions, "state");
		cols.created = column_needed(versions, "created");
		cols.key_check = column_needed(versions, "key_check");
		cols.kms_key_arn = keyring_has_arns() ? column_needed(versions, "kms_key_arn") : 0;
		name = col_text(tup, desc, cols.key_name, caller);
		/* joined with its key's row, as the SQL read did: no key row, no version */
		ktup = name ? key_tuple(keys, name, snap) : NULL;
		if (HeapTupleIsValid(ktup))
		{
			found = true;
			version_row_fill(tup, desc, &cols,
							 col_jsonb_text(ktup, RelationGetDescr(keys),
											column_needed(keys, "kms_context"), caller),
							 caller, out);
			out->id = id;
			heap_freetuple(ktup);
		}
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(versions, AccessShareLock);
	table_close(keys, AccessShareLock);
	return found;
}

/*
 * Unwrap a stored key with its provider into dek_out (locked memory of the
 * caller) and check it against its key-check value; on a mismatch dek_out
 * is wiped and 58000 raised.  Returns the key ARN the KMS reported
 * (palloc'd) or NULL; *rest_out points into kms_key, after the scheme.
 */
static char *
unwrap_checked(const char *kms_key, const char *kms_context, const bytea *wrapped,
			   const bytea *check, const char *what, const char *name, int32 version,
			   uint8 *dek_out, const char **rest_out)
{
	const PgckKmsProvider *provider = pgck_kms_provider_for(kms_key, rest_out);
	uint8		got[PGCK_KEY_CHECK_LEN];
	char	   *arn = NULL;

	pgck_kms_decrypt_data_key(provider, *rest_out, kms_context, wrapped, dek_out, PGCK_DEK_LEN, &arn);
	if (!pgck_key_check(dek_out, got) || check == NULL ||
		VARSIZE_ANY_EXHDR(check) != PGCK_KEY_CHECK_LEN ||
		!pgck_equal_ct(got, (const uint8 *) VARDATA_ANY(check), PGCK_KEY_CHECK_LEN))
	{
		pgck_wipe(dek_out, PGCK_DEK_LEN);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("the KMS returned a %s for key \"%s\" version %d that is not the stored one",
						what, name, version),
				 errdetail("The unwrapped key does not match its key-check value; it was not used.")));
	}
	return arn;
}

/*
 * Unwrap a stored key, falling back to the key's additional KMS wrappings
 * (issue 15) when its primary master key refuses.
 *
 * Candidates: the primary (kms_key, wrapped), then every KMS wrapping of the
 * same secret (pgcrypt_kms.wrapped_keys rows of key name with this key-check
 * value), by wrapping number; pgcrypt_kms.wrapping_regions moves the
 * candidates whose key ARN is in a listed region to the front, in the
 * listed order.  A candidate's failure moves on to the next only for what a
 * lost or unreachable key looks like: 55000 (disabled, pending deletion),
 * 42704 (not found), 58000 (unreachable after the retries, KMS internal
 * errors, a damaged blob or a returned key that fails its key-check value).
 * Anything else -- above all 42501, access denied: a policy decision that a
 * fallback must not route around -- is raised at once.  When every candidate
 * fails, the primary's error is raised.
 *
 * A success through another candidate after a refusal is counted
 * (kms_cache_stats().kms_fallbacks) each time and logged once per secret
 * per backend.  The usual path costs nothing: the primary is tried first
 * and the wrappings are read only after it refused (or up front when
 * wrapping_regions is set).  A refusal is caught without a subtransaction,
 * as refresh-ahead does (keycache_shared.c): providers release what they
 * hold in PG_FINALLY and a KMS call takes no lock, buffer or SPI
 * connection; this also works in parallel workers, which cannot start one.
 */
typedef struct UnwrapCandidate
{
	char	   *kms_key;		/* reference for the call (ARN-pinned when known) */
	bytea	   *wrapped;
	int32		wrapping;		/* 0 = primary */
	int			rank;
} UnwrapCandidate;

static List *fallback_logged = NIL;	/* "name/check-hex" already logged, TopMemoryContext */

static bool
unwrap_may_fall_back(int sqlerrcode)
{
	return sqlerrcode == PGCK_ERRCODE_KEY_STATE ||
		sqlerrcode == PGCK_ERRCODE_UNKNOWN_KEY ||
		sqlerrcode == PGCK_ERRCODE_KMS_FAILURE;
}

/* Position of the region of an "aws-kms:arn:aws:kms:<region>:..." reference in the preference list. */
static int
region_rank(const char *ref)
{
	const char *p;
	const char *end;
	char	   *list;
	char	   *tok;
	char	   *save;
	int			i = 0;
	int			rank = INT_MAX;

	if (pgck_wrapping_regions == NULL || pgck_wrapping_regions[0] == '\0' ||
		strncmp(ref, "aws-kms:arn:", 12) != 0)
		return INT_MAX;
	p = ref + 12;
	/* partition, service, region */
	if ((p = strchr(p, ':')) == NULL || (p = strchr(p + 1, ':')) == NULL)
		return INT_MAX;
	p++;
	end = strchr(p, ':');
	if (end == NULL)
		return INT_MAX;
	list = pstrdup(pgck_wrapping_regions);
	for (tok = strtok_r(list, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save), i++)
	{
		if (strlen(tok) == (size_t) (end - p) && strncmp(tok, p, end - p) == 0)
		{
			rank = i;
			break;
		}
	}
	pfree(list);
	return rank;
}

static int
candidate_cmp(const void *a, const void *b)
{
	const UnwrapCandidate *x = a;
	const UnwrapCandidate *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->wrapping < y->wrapping ? -1 : x->wrapping > y->wrapping;
}

/* Are the tables of the additional wrappings there (the keyring is 0.3.0 or later)? */
static bool
wrappings_installed(void)
{
	Oid			nsp = get_namespace_oid(KEYRING_SCHEMA, true);

	return OidIsValid(nsp) &&
		OidIsValid(get_relname_relid("wrapped_keys", nsp)) &&
		OidIsValid(get_relname_relid("key_wrappings", nsp));
}

/* The additional KMS wrappings of a secret; fills cands[1..], returns the total count. */
static int
unwrap_candidates(const char *kms_key, const bytea *wrapped, const bytea *check,
				  const char *name, UnwrapCandidate **cands_out)
{
	MemoryContext caller = CurrentMemoryContext;
	UnwrapCandidate *cands;
	volatile int n = 1;

	cands = palloc0(sizeof(UnwrapCandidate) * 1);
	cands[0].kms_key = pstrdup(kms_key);
	cands[0].wrapped = (bytea *) wrapped;
	cands[0].wrapping = 0;
	*cands_out = cands;
	if (check == NULL || !wrappings_installed())
		return 1;				/* before ALTER EXTENSION ... UPDATE to 0.3.0 */
	{
		OwnerScope	scope;

		owner_scope_enter(&scope);
		PG_TRY();
		{
			Oid			types[2] = {TEXTOID, BYTEAOID};
			Datum		values[2];
			SPIPlanPtr	plan;
			uint64		i;
			int			ret;

			values[0] = CStringGetTextDatum(name);
			values[1] = PointerGetDatum(check);
			SPI_connect();
			plan = SPI_prepare("SELECT w.wrapping, w.kms_key, b.wrapped, b.kms_key_arn"
							   "  FROM " KEYRING_SCHEMA ".wrapped_keys b"
							   "  JOIN " KEYRING_SCHEMA ".key_wrappings w"
							   "    ON w.key_name OPERATOR(pg_catalog.=) b.key_name"
							   "   AND w.wrapping OPERATOR(pg_catalog.=) b.wrapping"
							   " WHERE b.key_name OPERATOR(pg_catalog.=) $1"
							   "   AND b.key_check OPERATOR(pg_catalog.=) $2"
							   "   AND w.kind OPERATOR(pg_catalog.=) 'kms'"
							   " ORDER BY w.wrapping",
							   2, types);
			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			ret = execute_read(plan, values);
			if (ret != SPI_OK_SELECT)
				elog(ERROR, "keyring query failed: %s", SPI_result_code_string(ret));
			if (SPI_processed > 0)
			{
				cands = MemoryContextAllocZero(caller, sizeof(UnwrapCandidate) * (SPI_processed + 1));
				cands[0] = (*cands_out)[0];
				for (i = 0; i < SPI_processed; i++)
				{
					HeapTuple	tup = SPI_tuptable->vals[i];
					TupleDesc	desc = SPI_tuptable->tupdesc;
					char	   *ref = col_text(tup, desc, 2, caller);
					char	   *arn = col_text(tup, desc, 4, caller);

					cands[n].wrapping = col_int(tup, desc, 1);
					cands[n].wrapped = col_bytea(tup, desc, 3, caller);
					cands[n].kms_key = call_ref(ref, arn, caller);
					n++;
				}
				*cands_out = cands;
			}
			SPI_freeplan(plan);
			SPI_finish();
		}
		PG_FINALLY();
		{
			owner_scope_leave(&scope);
		}
		PG_END_TRY();
	}
	return n;
}

/* Log a fallback once per secret per backend; count it every time. */
static void
note_fallback(const char *name, const char *what, int32 version, const bytea *check,
			  const UnwrapCandidate *used, const ErrorData *refusal)
{
	StringInfoData tag;
	ListCell   *lc;
	MemoryContext old;
	int			i;

	pgck_stats_kms_fallback();
	initStringInfo(&tag);
	appendStringInfo(&tag, "%s/", name);
	if (check != NULL)
		for (i = 0; i < VARSIZE_ANY_EXHDR(check); i++)
			appendStringInfo(&tag, "%02x", ((const uint8 *) VARDATA_ANY(check))[i]);
	foreach(lc, fallback_logged)
	{
		if (strcmp((const char *) lfirst(lc), tag.data) == 0)
			return;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	fallback_logged = lappend(fallback_logged, pstrdup(tag.data));
	MemoryContextSwitchTo(old);
	ereport(LOG,
			(errmsg("pgcrypt_kms: the primary KMS key of key \"%s\" refused the %s of version %d (SQLSTATE %s); unwrapped through wrapping %d (\"%s\")",
					name, what, version,
					refusal ? unpack_sql_state(refusal->sqlerrcode) : "none",
					used->wrapping, used->kms_key),
			 refusal && refusal->detail ? errdetail_internal("%s", refusal->detail) : 0,
			 errhidestmt(true)));
}

/*
 * One attempt: unwrap cands[i] into dek_out.  NULL on success (*arn_out, *rest_out
 * set), else the error (copied, the error state flushed, dek_out wiped): a
 * refusal that may fall back.  Any other error is raised at once.
 */
static ErrorData *
unwrap_attempt(const UnwrapCandidate *c, const char *kms_context, const bytea *check,
			   const char *what, const char *name, int32 version, uint8 *dek_out,
			   char **arn_out, const char **rest_out)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile result = NULL;

	PG_TRY();
	{
		*arn_out = unwrap_checked(c->kms_key, kms_context, c->wrapped, check, what, name,
								  version, dek_out, rest_out);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		pgck_wipe(dek_out, PGCK_DEK_LEN);
		edata = CopyErrorData();
		/* a denial (or a cancel, ...) is raised as it is, never routed around */
		if (!unwrap_may_fall_back(edata->sqlerrcode) || edata->elevel > ERROR)
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		result = edata;
	}
	PG_END_TRY();
	return result;
}

void
pgck_keyring_unwrap(const char *kms_key, const char *kms_context,
					const bytea *wrapped, const bytea *check,
					const char *what, const char *name, int32 version,
					uint8 *dek_out)
{
	UnwrapCandidate primary;
	UnwrapCandidate *cands;
	ErrorData  *first_error = NULL;
	int			ncands;
	int			i;
	bool		prefer = pgck_wrapping_regions != NULL && pgck_wrapping_regions[0] != '\0';

	primary.kms_key = (char *) kms_key;
	primary.wrapped = (bytea *) wrapped;
	primary.wrapping = 0;
	primary.rank = 0;
	if (!prefer)
	{
		/* the usual path: the primary alone, no keyring read before it */
		const char *rest = NULL;
		char	   *arn = NULL;

		first_error = unwrap_attempt(&primary, kms_context, check, what, name, version,
									 dek_out, &arn, &rest);
		if (first_error == NULL)
		{
			/* called by another reference than the key's ARN: learn the ARN */
			if (arn != NULL && strcmp(arn, rest) != 0)
				record_arn(name, wrapped, arn);
			return;
		}
	}
	ncands = unwrap_candidates(kms_key, wrapped, check, name, &cands);
	if (prefer)
	{
		for (i = 0; i < ncands; i++)
			cands[i].rank = region_rank(cands[i].kms_key);
		qsort(cands, ncands, sizeof(UnwrapCandidate), candidate_cmp);
	}
	for (i = 0; i < ncands; i++)
	{
		const char *rest = NULL;
		char	   *arn = NULL;
		ErrorData  *err;

		if (!prefer && cands[i].wrapping == 0)
			continue;			/* refused above */
		err = unwrap_attempt(&cands[i], kms_context, check, what, name, version, dek_out,
							 &arn, &rest);
		if (err == NULL)
		{
			if (cands[i].wrapping == 0)
			{
				if (arn != NULL && rest != NULL && strcmp(arn, rest) != 0)
					record_arn(name, wrapped, arn);
			}
			else if (first_error != NULL)
				note_fallback(name, what, version, check, &cands[i], first_error);
			if (first_error != NULL)
				FreeErrorData(first_error);
			return;
		}
		if (first_error == NULL)
			first_error = err;
		else
			FreeErrorData(err);
	}
	/* every candidate refused: the first refusal (the primary's, unless a region came first) */
	ReThrowError(first_error);
}

bool
pgck_keyring_check_matches(const bytea *check, const uint8 *cached)
{
	return check != NULL && VARSIZE_ANY_EXHDR(check) == PGCK_KEY_CHECK_LEN &&
		memcmp(VARDATA_ANY(check), cached, PGCK_KEY_CHECK_LEN) == 0;
}

/* The key-check value of a key, as a bytea. */
static bytea *
key_check_bytea(const uint8 *key)
{
	bytea	   *b = palloc(VARHDRSZ + PGCK_KEY_CHECK_LEN);

	SET_VARSIZE(b, VARHDRSZ + PGCK_KEY_CHECK_LEN);
	if (!pgck_key_check(key, (uint8 *) VARDATA(b)))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not compute a key-check value")));
	return b;
}

/*
 * A new data key from the key's provider; plaintext into dek_out (locked).
 * *arn_out: the key ARN the KMS reported (palloc'd) or NULL; see kms.h.
 */
static bytea *
generate_data_key(const char *kms_key, const char *kms_context, uint8 *dek_out,
				  char **arn_out)
{
	const char *rest;
	const PgckKmsProvider *provider = pgck_kms_provider_for(kms_key, &rest);

	return pgck_kms_generate_data_key(provider, rest, kms_context, dek_out, PGCK_DEK_LEN, arn_out);
}

/* Is every value of a JSON object a string (an encryption context)? */
static bool
jsonb_object_of_strings(Jsonb *jb)
{
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
		{
			if (++depth > 1)
				return false;
		}
		else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
			depth--;
		else if (tok == WJB_VALUE && v.type != jbvString)
			return false;
	}
	return true;
}

/* Errors about a name that names no key never repeat it (it may be a value). */
#define UNKNOWN_NAME_DETAIL "The name is not repeated here: it may have been a value by mistake (check the order of the arguments)."

static void
check_key_name(const char *name)
{
	const char *p;
	size_t		len = strlen(name);

	if (len == 0 || len > PGCK_KEY_NAME_MAX)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("key name must be 1 to %d characters long", PGCK_KEY_NAME_MAX)));
	for (p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.' ||
			  (*p == ':' && p != name)))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("invalid key name"),
					 errdetail("A key name holds letters, digits, \"_\", \"-\", \".\" and \":\"; character %d is not one of them (the name is not repeated: it may have been a value by mistake).",
							   (int) (p - name) + 1)));
	}
}

/* Run an admin statement with arguments; returns SPI's result code. */
static int
execute_admin(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret < 0)
		elog(ERROR, "keyring statement failed: %s", SPI_result_code_string(ret));
	return ret;
}

/*
 * One keyring statement whose only parameter ($1) is a key name, run as the
 * keyring's owner; returns SPI_processed.
 */
static uint64
keyring_exec_named(const char *sql, const char *name)
{
	OwnerScope	scope;
	volatile uint64 processed = 0;

	owner_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};

		SPI_connect();
		execute_admin(sql, 1, types, values, NULL);
		processed = SPI_processed;
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	return processed;
}

/* Refuse a duplicate key name before spending KMS calls on it. */
static void
check_key_absent(const char *name)
{
	if (keyring_exec_named("SELECT 1 FROM " KEYRING_SCHEMA ".keys WHERE key_name OPERATOR(pg_catalog.=) $1",
						   name) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("key \"%s\" already exists", name),
				 errhint("Use kms_rotate_key() for a new data key version.")));
}

/* Insert a new key and its version 1; returns the version id. */
static uint32
insert_new_key(const char *name, const char *kms_key, Datum kms_context_jsonb,
			   const char *transform_name, int32 index_bits,
			   bytea *wrapped, bytea *dek_check, bytea *index_wrapped, bytea *index_check,
			   const char *dek_arn, const char *index_arn)
{
	OwnerScope	scope;
	volatile uint32 id = 0;

	owner_scope_enter(&scope);
	PG_TRY();
	{
		Oid			ktypes[8] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, INT4OID, BYTEAOID, TEXTOID, BYTEAOID};
		Datum		kvalues[8];
		char		knulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
		Oid			vtypes[4] = {TEXTOID, TEXTOID, BYTEAOID, BYTEAOID};
		Datum		vvalues[4];
		bool		isnull;

		kvalues[0] = CStringGetTextDatum(name);
		kvalues[1] = CStringGetTextDatum(kms_key);
		kvalues[2] = kms_context_jsonb;
		kvalues[3] = CStringGetTextDatum(transform_name);
		kvalues[4] = Int32GetDatum(index_bits);
		if (index_wrapped != NULL)
		{
			kvalues[5] = PointerGetDatum(index_wrapped);
			kvalues[6] = CStringGetTextDatum(kms_key);
			kvalues[7] = PointerGetDatum(index_check);
		}
		else
			knulls[5] = knulls[6] = knulls[7] = 'n';
		vvalues[0] = kvalues[0];
		vvalues[1] = kvalues[1];
		vvalues[2] = PointerGetDatum(wrapped);
		vvalues[3] = PointerGetDatum(dek_check);

		SPI_connect();
		execute_admin("INSERT INTO " KEYRING_SCHEMA ".keys"
					  " (key_name, kms_key, kms_context, blind_index, index_bits,"
					  "  index_key_version, index_key_wrapped, index_kms_key, index_key_check)"
					  " VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)",
					  8, ktypes, kvalues, knulls);
		execute_admin("INSERT INTO " KEYRING_SCHEMA ".key_versions"
					  " (key_name, version, kms_key, wrapped_dek, key_check)"
					  " VALUES ($1, 1, $2, $3, $4) RETURNING id",
					  4, vtypes, vvalues, NULL);
		id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
		store_version_arn(id, dek_arn);
		if (index_wrapped != NULL)
			store_index_arn(name, index_arn, false);
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	return id;
}

/*
 * kms_create_key(name, kms_key, blind_index, index_bits, kms_context), minus
 * the cache: see keyring.h.
 *
 * Gets the first data key and, with a blind index, a separate index key from
 * the KMS, and stores both only as the KMS wrapped them.
 */
uint32
pgck_keyring_create_key(const char *name, const char *kms_key, const char *transform_name,
						int32 index_bits, Jsonb *ctx_jsonb, uint8 *dek, uint8 *ikey,
						PgckTransform *transform_out)
{
	char	   *kms_context;
	PgckTransform transform;
	const char *rest;
	bytea	   *wrapped;
	bytea	   *index_wrapped = NULL;
	bytea	   *index_check = NULL;
	char	   *dek_arn = NULL;
	char	   *index_arn = NULL;

	check_key_name(name);
	(void) pgck_kms_provider_for(kms_key, &rest);
	if (!pgck_transform_parse(transform_name, &transform))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("unknown blind index transform \"%s\"", transform_name),
				 errhint("Use one of none, exact, lower, email, digits.")));
	if (index_bits < 8 || index_bits > 256)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("index_bits must be between 8 and 256")));
	if (!JB_ROOT_IS_OBJECT(ctx_jsonb) || JB_ROOT_IS_SCALAR(ctx_jsonb) ||
		!jsonb_object_of_strings(ctx_jsonb))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("kms_context must be a JSON object of strings"),
				 errdetail("AWS KMS encryption contexts map strings to strings.")));
	kms_context = DatumGetCString(DirectFunctionCall1(jsonb_out, JsonbPGetDatum(ctx_jsonb)));
	check_key_absent(name);

	wrapped = generate_data_key(kms_key, kms_context, dek, &dek_arn);
	if (transform != PGCK_BIDX_NONE)
	{
		index_wrapped = generate_data_key(kms_key, kms_context, ikey, &index_arn);
		index_check = key_check_bytea(ikey);
	}
	*transform_out = transform;
	return insert_new_key(name, kms_key, JsonbPGetDatum(ctx_jsonb), transform_name,
						  index_bits, wrapped, key_check_bytea(dek), index_wrapped, index_check,
						  dek_arn, index_arn);
}

/*
 * The id of key name's active version (0 if none) and its highest version
 * number, as last committed (or written by this transaction), whatever this
 * transaction's snapshot: a REPEATABLE READ transaction must neither miss a
 * rotation committed since it began nor number a version twice.  Inside SPI.
 */
static void
latest_versions(Datum name, uint32 *active_id, int32 *max_version)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {name};
	SPIPlanPtr	plan;
	int			ret;

	plan = SPI_prepare("SELECT (SELECT v.id FROM " KEYRING_SCHEMA ".key_versions v"
					   "         WHERE v.key_name OPERATOR(pg_catalog.=) $1"
					   "           AND v.state OPERATOR(pg_catalog.=) 'active'),"
					   "       (SELECT pg_catalog.max(v.version) FROM " KEYRING_SCHEMA ".key_versions v"
					   "         WHERE v.key_name OPERATOR(pg_catalog.=) $1)",
					   1, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	ret = execute_read(plan, values);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "keyring query failed: %s", SPI_result_code_string(ret));
	*active_id = (uint32) col_int(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*max_version = col_int(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	SPI_freeplan(plan);
}

int32
pgck_keyring_rotate(const char *name, uint32 expected_current, bool nowait,
					uint8 *dek, uint32 *id_out)
{
	OwnerScope	scope;
	volatile bool entered = false;
	volatile int32 version = 0;

	*id_out = 0;
	PG_TRY();
	{
		Oid			types[5] = {TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, INT4OID};
		Datum		values[5];
		char	   *kms_key;
		char	   *kms_context;
		bytea	   *wrapped;
		bool		isnull;
		uint32		id;
		MemoryContext caller = CurrentMemoryContext;

		owner_scope_enter(&scope);
		entered = true;
		SPI_connect();
		values[0] = CStringGetTextDatum(name);
		/*
		 * Rotations of one key serialize on its row.  An automatic rotation
		 * (nowait) never waits for it: whoever holds it is rotating already.
		 */
		execute_admin(nowait ?
					  "SELECT k.kms_key, k.kms_context::pg_catalog.text"
					  "  FROM " KEYRING_SCHEMA ".keys k"
					  " WHERE k.key_name OPERATOR(pg_catalog.=) $1 AND k.destroyed IS NULL"
					  " FOR UPDATE OF k SKIP LOCKED" :
					  "SELECT k.kms_key, k.kms_context::pg_catalog.text"
					  "  FROM " KEYRING_SCHEMA ".keys k"
					  " WHERE k.key_name OPERATOR(pg_catalog.=) $1 AND k.destroyed IS NULL"
					  " FOR UPDATE OF k",
					  1, types, values, NULL);
		if (SPI_processed == 0 && nowait)
		{
			/* locked by a rotation under way (or destroyed: the next lookup says so) */
			version = PGCK_ROTATE_BUSY;
			SPI_finish();
		}
		else if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the key to rotate does not exist or was destroyed"),
					 errdetail(UNKNOWN_NAME_DETAIL)));
		else
		{
			uint32		active_id;
			int32		max_version;

			kms_key = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, caller);
			kms_context = col_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, caller);
			latest_versions(values[0], &active_id, &max_version);
			if (expected_current != 0 && active_id != expected_current)
			{
				/* another session rotated (and committed) before us */
				SPI_finish();
			}
			else
			{
				char	   *dek_arn = NULL;

				/* one KMS call, with the key's row locked */
				wrapped = generate_data_key(kms_key, kms_context, dek, &dek_arn);

				execute_admin("UPDATE " KEYRING_SCHEMA ".key_versions SET state = 'decrypt-only'"
							  " WHERE key_name OPERATOR(pg_catalog.=) $1"
							  "   AND state OPERATOR(pg_catalog.=) 'active'",
							  1, types, values, NULL);
				values[1] = CStringGetTextDatum(kms_key);
				values[2] = PointerGetDatum(wrapped);
				values[3] = PointerGetDatum(key_check_bytea(dek));
				values[4] = Int32GetDatum(max_version + 1);
				execute_admin("INSERT INTO " KEYRING_SCHEMA ".key_versions (key_name, version, kms_key, wrapped_dek, key_check)"
							  " VALUES ($1, $5, $2, $3, $4)"
							  " RETURNING id, version",
							  5, types, values, NULL);
				id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
				version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
				store_version_arn(id, dek_arn);
				/* every additional wrapping gets the new version now (issue 15) */
				pgck_wrappings_wrap_new(name, kms_context, "dek", (int32) id, kms_key,
										wrapped, dek, DatumGetByteaPP(values[3]));
				SPI_finish();
				*id_out = id;
			}
		}
	}
	PG_CATCH();
	{
		if (entered)
			owner_scope_leave(&scope);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (entered)
		owner_scope_leave(&scope);
	return version;
}

/*
 * kms_rotate_index_key's keyring part (the SQL function is in keycache.c,
 * which also rotates the data key): a new blind-index key becomes current
 * for probes and new values; the previous one is kept (kms_blind_index_all()
 * still probes with it) until kms_finish_index_rotation(), after the values
 * were re-tagged and the indexes rebuilt.  Returns the new index key version.
 */
int32
pgck_keyring_rotate_index_key(const char *name)
{
	OwnerScope	scope;
	volatile bool entered = false;
	uint8	   *ikey = pgck_locked_alloc();
	volatile int32 version = 0;

	PG_TRY();
	{
		Oid			types[3] = {TEXTOID, BYTEAOID, BYTEAOID};
		Datum		values[3];
		MemoryContext caller = CurrentMemoryContext;
		HeapTuple	tup;
		TupleDesc	desc;
		char	   *kms_key;
		char	   *kms_context;
		char	   *transform;
		bool		in_progress;
		bool		isnull;
		bytea	   *wrapped;
		char	   *index_arn = NULL;

		owner_scope_enter(&scope);
		entered = true;
		SPI_connect();
		values[0] = CStringGetTextDatum(name);
		execute_admin("SELECT kms_key, kms_context::pg_catalog.text, blind_index,"
					  "       prev_index_key_wrapped IS NOT NULL"
					  "  FROM " KEYRING_SCHEMA ".keys"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1 AND destroyed IS NULL FOR UPDATE",
					  1, types, values, NULL);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the key name does not name a key in the keyring, or the key was destroyed"),
					 errdetail(UNKNOWN_NAME_DETAIL)));
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		kms_key = col_text(tup, desc, 1, caller);
		kms_context = col_text(tup, desc, 2, caller);
		transform = col_text(tup, desc, 3, caller);
		in_progress = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		if (strcmp(transform, "none") == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("key \"%s\" has no blind index", name)));
		if (in_progress)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KEY_STATE),
					 errmsg("an index key rotation of key \"%s\" is in progress", name),
					 errhint("Re-tag the values with kms_reencrypt(), rebuild the indexes, then call kms_finish_index_rotation().")));

		wrapped = generate_data_key(kms_key, kms_context, ikey, &index_arn);
		values[1] = PointerGetDatum(wrapped);
		values[2] = PointerGetDatum(key_check_bytea(ikey));
		execute_admin("UPDATE " KEYRING_SCHEMA ".keys"
					  "   SET prev_index_key_wrapped = index_key_wrapped,"
					  "       prev_index_key_check = index_key_check,"
					  "       index_key_wrapped = $2, index_key_check = $3,"
					  "       index_key_version = index_key_version OPERATOR(pg_catalog.+) 1"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1"
					  " RETURNING index_key_version",
					  3, types, values, NULL);
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		store_index_arn(name, index_arn, true);
		/* every additional wrapping gets the new index key now (issue 15) */
		pgck_wrappings_wrap_new(name, kms_context, "index", version, kms_key, wrapped, ikey,
								DatumGetByteaPP(values[2]));
		SPI_finish();
	}
	PG_FINALLY();
	{
		if (entered)
			owner_scope_leave(&scope);
		pgck_locked_free(ikey);
	}
	PG_END_TRY();
	return version;
}

/*
 * Wait until every transaction of this database that is in progress now
 * (other than ours, and vacuum's) has ended, prepared ones included, as
 * CREATE INDEX CONCURRENTLY waits for older transactions.  One that
 * encrypted under the previous index key before the rotation committed may
 * still be about to commit the value; once they have all ended, every value
 * of the key that will ever be committed from a transaction that saw the old
 * version is committed (or gone), and a snapshot taken afterwards counts it.
 * The waits are lock waits: cancel, lock_timeout and statement_timeout end
 * them, the deadlock detector sees them, and pg_stat_activity shows them as
 * wait_event virtualxid.
 */
static void
wait_for_running_transactions(void)
{
	int			n;
	VirtualTransactionId *vxids = GetCurrentVirtualXIDs(InvalidTransactionId, false, false,
														 PROC_IS_AUTOVACUUM | PROC_IN_VACUUM, &n);

	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		(void) VirtualXactLock(vxids[i], true);
	}
	pfree(vxids);
}

/* One statement of refuse_old_tags, read-only under the given snapshot. */
static void
execute_in_snapshot(const char *sql, int nargs, Oid *types, Datum *values, Snapshot snap)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);
	int			ret;

	if (plan == NULL)
		elog(ERROR, "keyring statement failed: %s", SPI_result_code_string(SPI_result));
	ret = SPI_execute_snapshot(plan, values, NULL, snap, InvalidSnapshot, true, false, 0);
	if (ret < 0)
		elog(ERROR, "keyring statement failed: %s", SPI_result_code_string(ret));
	SPI_freeplan(plan);
}

/*
 * The values of a key still tagged under its previous index key, refused
 * before kms_finish_index_rotation forgets that key: lookups would miss them
 * from then on, silently.  kms_rotate_index_key makes a new data key version
 * current, so every value tagged under the previous index key is on an older
 * version; a value on any version older than the active one counts (one
 * moved by a later kms_rotate_key too, which kms_reencrypt_table also moves).
 * older is the int4[] of those versions' ids.  Runs as the caller: every
 * enc_text column (or column of a domain over enc_text) of a table or a
 * populated materialized view of this database, except other sessions' temp
 * tables, is counted in one scan per table; a column the caller cannot read
 * in full (no SELECT, or row security applies) is refused, never skipped.
 * Called after the wait for the transactions in progress (above): the
 * catalog and every table are read under one snapshot taken now, also when
 * the caller's transaction is REPEATABLE READ or SERIALIZABLE, whose own
 * snapshot would not see what the waited-for transactions committed.
 */
static void
refuse_old_tags(const char *name, Datum older, Oid ext_schema)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(ext_schema)};
	MemoryContext caller = CurrentMemoryContext;
	StringInfoData detail;
	StringInfoData sql;
	char	   *unreadable = NULL;
	int			nunreadable = 0;
	int64		total = 0;
	int			nshown = 0;
	uint64		ncols;
	char	  **rels;
	char	  **cols;
	uint64		i;
	Snapshot	snap;
	Datum	   *old_ids;
	int			nold;
	int64	   *counts;
	MemoryContext rowcxt;

	initStringInfo(&detail);	/* in the caller's context: read after SPI_finish */
	snap = RegisterSnapshot(GetLatestSnapshot());
	SPI_connect();
	/* the columns, grouped by table, as the caller sees the catalog */
	/* enc_text and every domain over it, at any depth (a domain over a domain) */
	execute_in_snapshot("WITH RECURSIVE enc(oid) AS ("
						"  SELECT e.oid FROM pg_catalog.pg_type e"
						"   WHERE e.typname OPERATOR(pg_catalog.=) 'enc_text'"
						"     AND e.typnamespace OPERATOR(pg_catalog.=) $1"
						"  UNION"
						"  SELECT d.oid FROM pg_catalog.pg_type d"
						"    JOIN enc ON d.typbasetype OPERATOR(pg_catalog.=) enc.oid"
						"   WHERE d.typtype OPERATOR(pg_catalog.=) 'd')"
						"SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), a.attname::pg_catalog.text,"
						"       pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')"
						"       AND NOT pg_catalog.row_security_active(c.oid)"
						"  FROM pg_catalog.pg_attribute a"
						"  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid"
						"  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
						"  JOIN enc ON enc.oid OPERATOR(pg_catalog.=) a.atttypid"
						" WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
						"   AND (c.relkind OPERATOR(pg_catalog.=) 'r'"
						"        OR (c.relkind OPERATOR(pg_catalog.=) 'm' AND c.relispopulated))"
						"   AND (c.relpersistence OPERATOR(pg_catalog.<>) 't'"
						"        OR c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())"
						" ORDER BY c.oid, a.attnum",
						1, types, values, snap);
	ncols = SPI_processed;
	rels = palloc(sizeof(char *) * Max(ncols, 1));
	cols = palloc(sizeof(char *) * Max(ncols, 1));
	for (i = 0; i < ncols; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		rels[i] = col_text(tup, desc, 1, caller);
		cols[i] = col_text(tup, desc, 2, caller);
		if (!DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
		{
			if (nunreadable++ == 0)
				unreadable = psprintf("%s.%s", rels[i], quote_identifier(cols[i]));
		}
	}
	if (nunreadable > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot check that no value of key \"%s\" still carries a tag of its previous index key", name),
				 errdetail_plural("This role cannot read every row of %d enc_text column (%s).",
								  "This role cannot read every row of %d enc_text columns (the first: %s).",
								  nunreadable, nunreadable, unreadable),
				 errhint("Call kms_finish_index_rotation as a role that can read them, or, once they are re-tagged, with force => true.")));

	/*
	 * One scan per table, a count per column.  The version ids are read here
	 * from the values' headers, never by an SQL call on the column: a call
	 * such as <extschema>.kms_version_id(col) would resolve to whatever
	 * overload matches the column's type best, and a role with CREATE on the
	 * extension's schema could add one for its own domain over enc_text that
	 * would then run with the caller's (admin's, superuser's) privileges.
	 * The scan selects the bare columns: no function or operator is called.
	 */
	deconstruct_array(DatumGetArrayTypeP(older), INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &old_ids, NULL, &nold);
	counts = palloc0(sizeof(int64) * Max(ncols, 1));
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "refuse_old_tags rows", ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&sql);
	for (i = 0; i < ncols;)
	{
		uint64		first = i;
		uint64		j;
		Portal		portal;

		resetStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT ");
		for (j = first; j < ncols && strcmp(rels[j], rels[first]) == 0; j++)
			appendStringInfo(&sql, "%s%s", j > first ? ", " : "", quote_identifier(cols[j]));
		appendStringInfo(&sql, " FROM ONLY %s", rels[first]);
		/* read-only: the cursor runs under the active snapshot, snap */
		PushActiveSnapshot(snap);
		portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);
		for (;;)
		{
			uint64		r;

			SPI_cursor_fetch(portal, true, 1000);
			if (SPI_processed == 0)
				break;
			for (r = 0; r < SPI_processed; r++)
			{
				MemoryContext old = MemoryContextSwitchTo(rowcxt);
				uint64		k;

				for (k = first; k < j; k++)
				{
					bool		isnull;
					Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc,
												  (int) (k - first + 1), &isnull);
					int32		id;
					int			o;

					if (isnull)
						continue;
					id = pgck_stored_version_id(PG_DETOAST_DATUM_PACKED(d));
					for (o = 0; o < nold; o++)
						if (DatumGetInt32(old_ids[o]) == id)
						{
							counts[k]++;
							break;
						}
				}
				MemoryContextSwitchTo(old);
				MemoryContextReset(rowcxt);
			}
			SPI_freetuptable(SPI_tuptable);
		}
		SPI_cursor_close(portal);
		PopActiveSnapshot();
		for (i = first; i < j; i++)
		{
			if (counts[i] == 0)
				continue;
			total += counts[i];
			if (nshown++ < 5)
				appendStringInfo(&detail, "%s%s.%s: " INT64_FORMAT, nshown > 1 ? ", " : "",
								 rels[i], quote_identifier(cols[i]), counts[i]);
		}
	}
	MemoryContextDelete(rowcxt);
	SPI_finish();
	UnregisterSnapshot(snap);
	if (total > 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg_plural("key \"%s\" has " INT64_FORMAT " value not yet re-tagged under its new index key",
							   "key \"%s\" has " INT64_FORMAT " values not yet re-tagged under its new index key",
							   (unsigned long) total, name, total),
				 errdetail("Values on a version older than the active one (%s%s); lookups would no longer find them once the previous index key is forgotten.",
						   detail.data, nshown > 5 ? ", ..." : ""),
				 errhint("Re-tag them with CALL kms_reencrypt_table(table, column) and rebuild the indexes first, or pass force => true to forget the previous index key anyway.")));
}

/*
 * kms_finish_index_rotation's keyring read: checks that an index key rotation
 * of the key is in progress and returns the index key's version.  With lock,
 * it locks the key's row (to the end of the transaction) and sets *older to
 * the int4[] of the key's versions older than the active one (in the
 * caller's memory context; 0 when there are none).
 */
static int32
finish_rotation_read(const char *name, bool lock, Datum *older)
{
	MemoryContext caller = CurrentMemoryContext;
	OwnerScope	scope;
	volatile int32 version = 0;

	if (older != NULL)
		*older = (Datum) 0;
	owner_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};
		bool		isnull;
		Datum		d;

		SPI_connect();
		execute_admin(lock ?
					  "SELECT prev_index_key_wrapped IS NOT NULL, index_key_version FROM " KEYRING_SCHEMA ".keys"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1 FOR UPDATE" :
					  "SELECT prev_index_key_wrapped IS NOT NULL, index_key_version FROM " KEYRING_SCHEMA ".keys"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1",
					  1, types, values, NULL);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the key name does not name a key in the keyring"),
					 errdetail(UNKNOWN_NAME_DETAIL)));
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KEY_STATE),
					 errmsg("no index key rotation of key \"%s\" is in progress", name)));
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (lock && older != NULL)
		{
			execute_admin("SELECT pg_catalog.array_agg(id) FROM " KEYRING_SCHEMA ".key_versions"
						  " WHERE key_name OPERATOR(pg_catalog.=) $1"
						  "   AND state OPERATOR(pg_catalog.<>) 'active' AND wrapped_dek IS NOT NULL",
						  1, types, values, NULL);
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
			{
				MemoryContext spi = MemoryContextSwitchTo(caller);

				*older = PointerGetDatum(DatumGetArrayTypePCopy(d));
				MemoryContextSwitchTo(spi);
			}
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	return version;
}

/* kms_finish_index_rotation's keyring write: forget the previous index key. */
static void
finish_rotation_forget(const char *name)
{
	(void) keyring_exec_named("UPDATE " KEYRING_SCHEMA ".keys SET prev_index_key_wrapped = NULL, prev_index_key_check = NULL"
							  " WHERE key_name OPERATOR(pg_catalog.=) $1", name);
}

/*
 * kms_finish_index_rotation(name [, force]): forget the previous index key,
 * after checking (unless force) that no value still needs it.
 *
 * The wait for the transactions in progress comes before the key's row is
 * locked, so that a session that needs that row (another administrator
 * rotating the key) is not both waited for and waiting.  If the index key
 * rotated again meanwhile, transactions begun during the wait may hold
 * values of the newly superseded index key: wait again, now under the lock.
 */
PG_FUNCTION_INFO_V1(pgck_kms_finish_index_rotation);
Datum
pgck_kms_finish_index_rotation(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		force = PG_NARGS() > 1 && PG_GETARG_BOOL(1);
	Datum		older = (Datum) 0;

	if (force)
		(void) finish_rotation_read(name, true, NULL);
	else
	{
		int32		seen = finish_rotation_read(name, false, NULL);

		for (;;)
		{
			int32		now;

			wait_for_running_transactions();
			now = finish_rotation_read(name, true, &older);
			if (now == seen)
				break;
			seen = now;
		}
		if (older != (Datum) 0)
			refuse_old_tags(name, older, get_func_namespace(fcinfo->flinfo->fn_oid));
	}
	finish_rotation_forget(name);
	PG_RETURN_VOID();
}

/*
 * kms_finish_index_rotation(name, force) (0.3.0) under a symbol of its own: an
 * older library, whose function reads the name only, would run an unforced
 * finish where force was asked for (see "symbols of 0.3.0's own" in
 * pgcrypt_kms--0.2.0--0.3.0.sql).
 */
PG_FUNCTION_INFO_V1(pgck_kms_finish_index_rotation_0_3);
Datum
pgck_kms_finish_index_rotation_0_3(PG_FUNCTION_ARGS)
{
	return pgck_kms_finish_index_rotation(fcinfo);
}

/*
 * kms_set_key_state(name, version, state): move a non-current version between
 * decrypt-only and retired.  The active version changes only by rotation.
 */
PG_FUNCTION_INFO_V1(pgck_kms_set_key_state);
Datum
pgck_kms_set_key_state(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		version = PG_GETARG_INT32(1);
	char	   *state = text_to_cstring(PG_GETARG_TEXT_PP(2));
	OwnerScope	scope;

	if (strcmp(state, "decrypt-only") != 0 && strcmp(state, "retired") != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid key version state \"%s\"", state),
				 errhint("Use \"decrypt-only\" or \"retired\"; kms_rotate_key() makes a new active version, kms_destroy_key() destroys.")));
	owner_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[3] = {TEXTOID, INT4OID, TEXTOID};
		Datum		values[3];
		bool		isnull;
		char	   *old;

		values[0] = CStringGetTextDatum(name);
		values[1] = Int32GetDatum(version);
		values[2] = CStringGetTextDatum(state);
		SPI_connect();
		execute_admin("SELECT state FROM " KEYRING_SCHEMA ".key_versions"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2 FOR UPDATE",
					  2, types, values, NULL);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the key name and version %d do not name a key version in the keyring", version),
					 errdetail(UNKNOWN_NAME_DETAIL)));
		old = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (strcmp(old, "destroyed") == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("key \"%s\" version %d was destroyed", name, version)));
		if (strcmp(old, "active") == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KEY_STATE),
					 errmsg("key \"%s\" version %d is the active version", name, version),
					 errhint("Rotate the key with kms_rotate_key() first.")));
		execute_admin("UPDATE " KEYRING_SCHEMA ".key_versions SET state = $3"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
					  3, types, values, NULL);
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}

/*
 * Re-wrap one stored key (a DEK version or an index key) under new_key.
 * Within one provider: its reencrypt_data_key (AWS: ReEncrypt), so no
 * plaintext key passes through this process.  To another provider: unwrap
 * with the old one into a locked slot, check the key-check value (a key
 * that is not the stored one is never wrapped anew), wrap with the new
 * provider's wrap_data_key, wipe the slot.  *arn_out: the new master key's
 * ARN (palloc'd) or NULL.
 */
static bytea *
rewrap_one(const char *old_ref, const char *new_key, const char *kms_context,
		   const bytea *wrapped, const bytea *check, const char *what,
		   const char *name, int32 version, char **arn_out)
{
	const char *old_rest;
	const char *new_rest;
	const PgckKmsProvider *old_provider = pgck_kms_provider_for(old_ref, &old_rest);
	const PgckKmsProvider *new_provider = pgck_kms_provider_for(new_key, &new_rest);
	uint8	   *dek;
	bytea	   *volatile result = NULL;

	*arn_out = NULL;
	if (old_provider == new_provider)
	{
		if (new_provider->reencrypt_data_key == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("the %s provider cannot re-wrap keys", new_provider->scheme)));
		return pgck_kms_reencrypt_data_key(new_provider, old_rest, new_rest, kms_context,
										   wrapped, arn_out);
	}
	if (new_provider->wrap_data_key == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("cannot move key \"%s\" from %s to %s", name,
						old_provider->scheme, new_provider->scheme),
				 errdetail("The %s provider cannot wrap a data key it did not make.",
						   new_provider->scheme)));
	dek = pgck_locked_alloc();
	PG_TRY();
	{
		(void) unwrap_checked(old_ref, kms_context, wrapped, check, what, name, version, dek,
							  &old_rest);
		result = pgck_kms_wrap_data_key(new_provider, new_rest, kms_context, dek, PGCK_DEK_LEN,
										 arn_out);
	}
	PG_FINALLY();
	{
		pgck_locked_free(dek);
	}
	PG_END_TRY();
	return result;
}

bytea *
pgck_keyring_rewrap_blob(const char *old_ref, const char *new_key, const char *kms_context,
						 const bytea *wrapped, const bytea *check, const char *what,
						 const char *name, int32 version, char **arn_out)
{
	return rewrap_one(old_ref, new_key, kms_context, wrapped, check, what, name, version,
					  arn_out);
}

/*
 * kms_rewrap_key(name, new_kms_key) → number of wrapped keys re-wrapped
 *
 * Re-wraps every stored DEK version and the index keys of a key under another
 * master key; no table row is touched.  Afterwards access to the old master
 * key can be removed.  Within one provider no plaintext key passes through
 * this process (AWS: ReEncrypt); a move to another provider unwraps and
 * wraps here (see rewrap_one).
 */
PG_FUNCTION_INFO_V1(pgck_kms_rewrap_key);
Datum
pgck_kms_rewrap_key(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *new_key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *new_rest;
	OwnerScope	scope;
	volatile int32 count = 0;

	/* a malformed new reference is refused before anything is read */
	(void) pgck_kms_provider_for(new_key, &new_rest);
	owner_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[5] = {TEXTOID, TEXTOID, BYTEAOID, INT4OID, TEXTOID};
		Datum		values[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
		MemoryContext caller = CurrentMemoryContext;
		bool		has_arns = keyring_has_arns();
		char	   *kms_context;
		char	   *index_kms_key;
		char	   *index_arn;
		char	   *prev_arn;
		bytea	   *index_wrapped;
		bytea	   *prev_wrapped;
		bytea	   *index_check;
		bytea	   *prev_check;
		int32		index_version;
		uint64		nversions;
		uint64		i;
		int32	   *ids;
		int32	   *vnums;
		char	  **refs;
		bytea	  **blobs;
		bytea	  **checks;
		HeapTuple	tup;
		TupleDesc	desc;

		SPI_connect();
		values[0] = CStringGetTextDatum(name);
		execute_admin(has_arns ?
					  "SELECT kms_context::pg_catalog.text, index_kms_key, index_key_wrapped, prev_index_key_wrapped,"
					  "       index_kms_key_arn, prev_index_kms_key_arn,"
					  "       index_key_check, prev_index_key_check, index_key_version"
					  "  FROM " KEYRING_SCHEMA ".keys WHERE key_name OPERATOR(pg_catalog.=) $1"
					  "   AND destroyed IS NULL FOR UPDATE" :
					  "SELECT kms_context::pg_catalog.text, index_kms_key, index_key_wrapped, prev_index_key_wrapped,"
					  "       NULL::pg_catalog.text, NULL::pg_catalog.text,"
					  "       index_key_check, prev_index_key_check, index_key_version"
					  "  FROM " KEYRING_SCHEMA ".keys WHERE key_name OPERATOR(pg_catalog.=) $1"
					  "   AND destroyed IS NULL FOR UPDATE",
					  1, types, values, NULL);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the key name does not name a key in the keyring, or the key was destroyed"),
					 errdetail(UNKNOWN_NAME_DETAIL)));
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		kms_context = col_text(tup, desc, 1, caller);
		index_kms_key = col_text(tup, desc, 2, caller);
		index_wrapped = col_bytea(tup, desc, 3, caller);
		prev_wrapped = col_bytea(tup, desc, 4, caller);
		index_arn = col_text(tup, desc, 5, caller);
		prev_arn = col_text(tup, desc, 6, caller);
		index_check = col_bytea(tup, desc, 7, caller);
		prev_check = col_bytea(tup, desc, 8, caller);
		index_version = index_wrapped != NULL ? col_int(tup, desc, 9) : 0;

		/* each wrapped key is named by the ARN it was wrapped under, when known */
		execute_admin(has_arns ?
					  "SELECT id, kms_key, wrapped_dek, kms_key_arn, key_check, version FROM " KEYRING_SCHEMA ".key_versions"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1 ORDER BY version FOR UPDATE" :
					  "SELECT id, kms_key, wrapped_dek, NULL::pg_catalog.text, key_check, version FROM " KEYRING_SCHEMA ".key_versions"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1 ORDER BY version FOR UPDATE",
					  1, types, values, NULL);
		nversions = SPI_processed;
		ids = palloc(sizeof(int32) * (nversions + 1));
		refs = palloc(sizeof(char *) * (nversions + 1));
		blobs = palloc(sizeof(bytea *) * (nversions + 1));
		checks = palloc(sizeof(bytea *) * (nversions + 1));
		vnums = palloc(sizeof(int32) * (nversions + 1));
		for (i = 0; i < nversions; i++)
		{
			HeapTuple	vtup = SPI_tuptable->vals[i];
			TupleDesc	vdesc = SPI_tuptable->tupdesc;
			char	   *stored = col_text(vtup, vdesc, 2, caller);

			ids[i] = col_int(vtup, vdesc, 1);
			blobs[i] = col_bytea(vtup, vdesc, 3, caller);
			refs[i] = call_ref(stored, col_text(vtup, vdesc, 4, caller), caller);
			checks[i] = col_bytea(vtup, vdesc, 5, caller);
			vnums[i] = col_int(vtup, vdesc, 6);
		}

		/* every data key version, one ReEncrypt (or unwrap and wrap) each */
		for (i = 0; i < nversions; i++)
		{
			bytea	   *rewrapped;
			char	   *new_arn = NULL;

			rewrapped = rewrap_one(refs[i], new_key, kms_context, blobs[i], checks[i],
								   "data key", name, vnums[i], &new_arn);
			values[1] = CStringGetTextDatum(new_key);
			values[2] = PointerGetDatum(rewrapped);
			values[3] = Int32GetDatum(ids[i]);
			values[4] = new_arn != NULL ? CStringGetTextDatum(new_arn) : (Datum) 0;
			nulls[4] = new_arn != NULL ? ' ' : 'n';
			if (has_arns)
				execute_admin("UPDATE " KEYRING_SCHEMA ".key_versions"
							  "   SET kms_key = $2, wrapped_dek = $3, kms_key_arn = $5"
							  " WHERE id OPERATOR(pg_catalog.=) $4",
							  5, types, values, nulls);
			else
				execute_admin("UPDATE " KEYRING_SCHEMA ".key_versions SET kms_key = $2, wrapped_dek = $3"
							  " WHERE id OPERATOR(pg_catalog.=) $4",
							  4, types, values, NULL);
			count++;
		}

		/* the index keys (current, and previous during an index key rotation) */
		if (index_wrapped != NULL)
		{
			bytea	   *new_index = NULL;
			bytea	   *new_prev = NULL;
			char	   *new_index_arn = NULL;
			char	   *new_prev_arn = NULL;
			Oid			itypes[6] = {TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, TEXTOID, TEXTOID};
			Datum		ivalues[6];
			char		inulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

			new_index = rewrap_one(call_ref(index_kms_key, index_arn, caller), new_key, kms_context,
								   index_wrapped, index_check, "blind-index key", name,
								   index_version, &new_index_arn);
			count++;
			if (prev_wrapped != NULL)
			{
				new_prev = rewrap_one(call_ref(index_kms_key, prev_arn, caller), new_key, kms_context,
									  prev_wrapped, prev_check, "blind-index key", name,
									  index_version - 1, &new_prev_arn);
				count++;
			}
			ivalues[0] = CStringGetTextDatum(name);
			ivalues[1] = CStringGetTextDatum(new_key);
			ivalues[2] = PointerGetDatum(new_index);
			ivalues[3] = PointerGetDatum(new_prev);
			ivalues[4] = new_index_arn != NULL ? CStringGetTextDatum(new_index_arn) : (Datum) 0;
			ivalues[5] = new_prev_arn != NULL ? CStringGetTextDatum(new_prev_arn) : (Datum) 0;
			if (new_prev == NULL)
				inulls[3] = 'n';
			if (new_index_arn == NULL)
				inulls[4] = 'n';
			if (new_prev_arn == NULL)
				inulls[5] = 'n';
			if (has_arns)
				execute_admin("UPDATE " KEYRING_SCHEMA ".keys SET kms_key = $2, index_kms_key = $2,"
							  "       index_key_wrapped = $3, prev_index_key_wrapped = $4,"
							  "       index_kms_key_arn = $5, prev_index_kms_key_arn = $6"
							  " WHERE key_name OPERATOR(pg_catalog.=) $1",
							  6, itypes, ivalues, inulls);
			else
				execute_admin("UPDATE " KEYRING_SCHEMA ".keys SET kms_key = $2, index_kms_key = $2,"
							  "       index_key_wrapped = $3, prev_index_key_wrapped = $4"
							  " WHERE key_name OPERATOR(pg_catalog.=) $1",
							  4, itypes, ivalues, inulls);
		}
		else
		{
			values[1] = CStringGetTextDatum(new_key);
			execute_admin("UPDATE " KEYRING_SCHEMA ".keys SET kms_key = $2"
						  " WHERE key_name OPERATOR(pg_catalog.=) $1",
						  2, types, values, NULL);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	PG_RETURN_INT32(count);
}

/*
 * kms_destroy_key(name, confirm_name) → versions destroyed
 *
 * Crypto-shredding: every wrapped DEK and index key of the key is deleted
 * (the rows stay as tombstones, so errors can name the key); every backend's
 * cache drops the key at its next statement (keyring invalidation).  What
 * this cannot reach (earlier backups, dead tuples until VACUUM, the KMS
 * master key) is in the README.
 */
PG_FUNCTION_INFO_V1(pgck_kms_destroy_key);
Datum
pgck_kms_destroy_key(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *confirm = text_to_cstring(PG_GETARG_TEXT_PP(1));
	OwnerScope	scope;
	volatile int32 count = 0;

	if (strcmp(name, confirm) != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("confirmation does not match the key name"),
				 errhint("Pass the name of the key to destroy twice, as both arguments of kms_destroy_key().")));
	owner_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};

		SPI_connect();
		execute_admin("UPDATE " KEYRING_SCHEMA ".keys"
					  "   SET destroyed = pg_catalog.now(), index_key_wrapped = NULL, prev_index_key_wrapped = NULL"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1 AND destroyed IS NULL",
					  1, types, values, NULL);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the key name does not name a key in the keyring, or the key was already destroyed"),
					 errdetail(UNKNOWN_NAME_DETAIL)));
		execute_admin("UPDATE " KEYRING_SCHEMA ".key_versions SET state = 'destroyed', wrapped_dek = NULL"
					  " WHERE key_name OPERATOR(pg_catalog.=) $1",
					  1, types, values, NULL);
		count = (int32) SPI_processed;

		/*
		 * Every secret of the key under every additional wrapping (0.3.0):
		 * the keyring's triggers delete them too, but not if they are
		 * disabled or do not fire (session_replication_role = replica before
		 * they were ENABLE ALWAYS), so never rely on them alone.
		 */
		if (wrappings_installed())
			execute_admin("DELETE FROM " KEYRING_SCHEMA ".wrapped_keys WHERE key_name OPERATOR(pg_catalog.=) $1",
						  1, types, values, NULL);
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	ereport(LOG,
			(errmsg("pgcrypt_kms: key \"%s\" destroyed (%d data key versions) by role \"%s\"",
					name, count, GetUserNameFromId(GetUserId(), true)),
			 errhidestmt(true)));
	PG_RETURN_INT32(count);
}

/*
 * The cluster that created version id and its DEK's nonce space (issue 11,
 * defect 7).  Returns false if there is no such version.  With a keyring not
 * yet updated to 0.2.0 (no writer columns) out->known is false.  Strings in
 * CurrentMemoryContext.
 */
bool
pgck_keyring_fetch_writer(uint32 id, PgckVersionWriter *out)
{
	static SPIPlanPtr plan_writer = NULL;
	MemoryContext caller = CurrentMemoryContext;
	OwnerScope	scope;
	volatile bool found = false;

	memset(out, 0, sizeof(*out));
	if (id == 0 || id > PG_INT32_MAX)
		return false;
	owner_scope_enter(&scope);
	PG_TRY();
	{
		Oid			rel = get_relname_relid("key_versions", get_namespace_oid(KEYRING_SCHEMA, false));
		bool		has_columns = get_attnum(rel, "nonce_space") != InvalidAttrNumber;
		Datum		values[1];
		int			ret;

		SPI_connect();
		if (has_columns && plan_writer == NULL)
		{
			Oid			types[1] = {INT4OID};

			plan_writer = prepare_saved(
										"SELECT v.key_name, v.version, v.writer_system_id, v.writer_timeline,"
										"       v.nonce_space"
										"  FROM " KEYRING_SCHEMA ".key_versions v"
										" WHERE v.id OPERATOR(pg_catalog.=) $1",
										1, types);
		}
		values[0] = Int32GetDatum((int32) id);
		if (has_columns)
			ret = execute_read(plan_writer, values);
		else
		{
			Oid			types[1] = {INT4OID};
			SPIPlanPtr	plan = SPI_prepare("SELECT v.key_name, v.version FROM " KEYRING_SCHEMA ".key_versions v"
										   " WHERE v.id OPERATOR(pg_catalog.=) $1", 1, types);

			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			ret = execute_read(plan, values);
		}
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "keyring query failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 1)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			found = true;
			out->key_name = col_text(tup, desc, 1, caller);
			out->version = col_int(tup, desc, 2);
			if (has_columns)
			{
				bool		isnull;

				out->known = true;
				out->system_id = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
				out->timeline = (uint32) DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
				/* uuid is 16 bytes by reference, no header */
				memcpy(out->nonce_space, DatumGetPointer(SPI_getbinval(tup, desc, 5, &isnull)),
					   sizeof(out->nonce_space));
			}
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		owner_scope_leave(&scope);
	}
	PG_END_TRY();
	return found;
}

void
pgck_subxact_release(MemoryContext cxt, ResourceOwner owner)
{
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
}

ErrorData *
pgck_subxact_abort(MemoryContext cxt, ResourceOwner owner)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

bool
pgck_error_ends_statement(const ErrorData *edata)
{
	return ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION;
}
