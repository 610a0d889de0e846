/*-------------------------------------------------------------------------
 *
 * citus.c
 *		One keyring for a Citus cluster (issue 17); see citus.h and the
 *		README's Citus section.
 *
 * The keyring tables stay ordinary local tables on every node, so a shard
 * query on a worker reads its own copy with no nested distributed query.
 * The coordinator is the only writer: row triggers on the keyring tables
 * (sql/, "Citus") send every row change, with its version id, to every
 * worker through pgck_citus_send(), which hands the command to Citus's
 * SendCommandToWorkersWithMetadata(): it runs on the workers' connections
 * of the coordinated transaction and commits with it by two-phase commit,
 * so a change is on every node or on none.  On a worker a statement
 * trigger refuses any keyring change that does not come that way.
 *
 * Citus's functions are looked up in its already loaded library with
 * load_external_function(); nothing here links against Citus, and nothing
 * is looked up unless the citus extension exists in this database (which
 * requires Citus in shared_preload_libraries).
 *
 * PostgreSQL 16 and later build extensions with -fvisibility=hidden, so a
 * Citus built for them (14.0.1 on 17 and 18) exports only its SQL-callable
 * functions: GetLocalGroupId() and SendCommandToWorkersWithMetadata() are
 * not found there.  On those majors the node's group is read from Citus's
 * catalog pg_dist_local_group (what GetLocalGroupId() reads), and a command
 * goes to the other nodes through Citus's exported UDF
 * execute_command_on_remote_nodes_as_user(command, user), which sends it on
 * the coordinated transaction's connections, marked critical, committed by
 * two-phase commit: the same guarantee.  That UDF requires a superuser: the
 * keyring's owner, who ran CREATE EXTENSION (the extension is not trusted).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "citus.h"
#include "pgck_errcodes.h"

#if PG_VERSION_NUM < 160000
typedef int32 (*GetLocalGroupIdFn) (void);
typedef void (*SendCommandFn) (const char *command);

static GetLocalGroupIdFn citus_get_local_group_id = NULL;
static SendCommandFn citus_send_to_workers = NULL;
#else
static PGFunction citus_send_as_user = NULL;
#endif

#if PG_VERSION_NUM >= 170000
#define CURRENT_LXID (MyProc->vxid.lxid)
#else
#define CURRENT_LXID (MyProc->lxid)
#endif

/* whether the citus extension exists, cached per transaction */
static LocalTransactionId citus_checked_lxid = InvalidLocalTransactionId;
static bool citus_present = false;

static bool
citus_loaded_here(void)
{
	if (MyProc == NULL || !IsTransactionState())
		return false;
	if (citus_checked_lxid == CURRENT_LXID)
		return citus_present;
	/* citus.version exists only once Citus's library has been loaded */
	citus_present = GetConfigOption("citus.version", true, false) != NULL &&
		OidIsValid(get_extension_oid("citus", true));
	citus_checked_lxid = CURRENT_LXID;
#if PG_VERSION_NUM < 160000
	if (citus_present && citus_get_local_group_id == NULL)
		citus_get_local_group_id = (GetLocalGroupIdFn)
			load_external_function("$libdir/citus", "GetLocalGroupId", true, NULL);
#endif
	return citus_present;
}

/* this node's Citus group: 0 on the coordinator */
static int32
local_group_id(void)
{
#if PG_VERSION_NUM < 160000
	return citus_get_local_group_id();
#else
	/* pg_dist_local_group: one row, one column (groupid int4) */
	Oid			relid = get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE);
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	int32		group = 0;

	if (!OidIsValid(relid))
		return 0;
	rel = table_open(relid, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);

		if (!isnull)
			group = DatumGetInt32(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return group;
#endif
}

PgckCitusRole
pgck_citus_role(void)
{
	if (!citus_loaded_here())
		return PGCK_CITUS_NONE;
	/* group 0 is the coordinator (and a node not yet added to a cluster) */
	return local_group_id() == 0 ? PGCK_CITUS_COORDINATOR : PGCK_CITUS_WORKER;
}

bool
pgck_citus_is_worker(void)
{
	return pgck_citus_role() == PGCK_CITUS_WORKER;
}

uint64
pgck_citus_share(uint64 bound)
{
	if (!citus_loaded_here())
		return bound;
	return Max(bound / PGCK_CITUS_MAX_NODES, 1);
}

/* pgcrypt_kms.citus_node_role() → 'none' | 'coordinator' | 'worker' */
PG_FUNCTION_INFO_V1(pgck_citus_node_role);
Datum
pgck_citus_node_role(PG_FUNCTION_ARGS)
{
	switch (pgck_citus_role())
	{
		case PGCK_CITUS_COORDINATOR:
			PG_RETURN_TEXT_P(cstring_to_text("coordinator"));
		case PGCK_CITUS_WORKER:
			PG_RETURN_TEXT_P(cstring_to_text("worker"));
		case PGCK_CITUS_NONE:
			break;
	}
	PG_RETURN_TEXT_P(cstring_to_text("none"));
}

/*
 * pgcrypt_kms.citus_send(command): run command on every worker, as the
 * current user, in this transaction (two-phase commit).  Only on a
 * coordinator; EXECUTE is revoked from PUBLIC (the keyring triggers and
 * kms_citus_sync() call it as the keyring's owner).
 */
PG_FUNCTION_INFO_V1(pgck_citus_send);
Datum
pgck_citus_send(PG_FUNCTION_ARGS)
{
	char	   *command;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the command must not be NULL")));
	if (pgck_citus_role() != PGCK_CITUS_COORDINATOR)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("keyring changes are sent to workers only from a Citus coordinator")));
	command = text_to_cstring(PG_GETARG_TEXT_PP(0));
#if PG_VERSION_NUM < 160000
	if (citus_send_to_workers == NULL)
		citus_send_to_workers = (SendCommandFn)
			load_external_function("$libdir/citus", "SendCommandToWorkersWithMetadata", false, NULL);
#else
	if (citus_send_as_user == NULL)
		citus_send_as_user = load_external_function("$libdir/citus",
													"execute_command_on_remote_nodes_as_user",
													false, NULL);
#endif

	/*
	 * A worker that cannot be reached fails the send with Citus's class 08
	 * error; no error of ours uses class 08 (a connection pool would drop
	 * this session on it, though the session is fine): the change is refused
	 * with 55000 instead, Citus's message as the detail.  The transaction
	 * fails either way, so the change reaches no node.
	 */
	{
		MemoryContext oldcxt = CurrentMemoryContext;

		PG_TRY();
		{
#if PG_VERSION_NUM < 160000
			citus_send_to_workers(command);
#else
			/* the user is the keyring's owner here (see the header) */
			DirectFunctionCall2(citus_send_as_user,
								PointerGetDatum(cstring_to_text(command)),
								PointerGetDatum(cstring_to_text(GetUserNameFromId(GetUserId(), false))));
#endif
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(oldcxt);
			edata = CopyErrorData();
			if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_CONNECTION_EXCEPTION)
			{
				FreeErrorData(edata);
				PG_RE_THROW();
			}
			FlushErrorState();
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KEY_STATE),
					 errmsg("key administration is refused: a Citus worker cannot be reached"),
					 errdetail("The keyring change must reach every worker in the same transaction; nothing was changed. Citus: %s",
							   edata->message ? edata->message : "(no message)"),
					 errhint("Bring the worker back, or remove it from the cluster (citus_remove_node), then run the key administration again.")));
		}
		PG_END_TRY();
	}
	PG_RETURN_VOID();
}
