/*-------------------------------------------------------------------------
 *
 * floor.c
 *		Benchmark only (bench/lookups.sh): a C function that does nothing.
 *
 * pgck_floor(text) returns its argument.  bench/lookups.sh puts it where a
 * blind-index lookup has its extension calls: an expression index on
 * pgck_floor(email), the probe pgck_floor('...') and the projection
 * pgck_floor(email).  PostgreSQL sets up each of those call sites at every
 * executor start (the function's catalog row, its ACL check, the C
 * function's address), for any C function of any extension.  That lookup,
 * against the plain B-tree lookup, is the floor a lookup through extension
 * functions can reach: what pgcrypt_kms adds above it is its cryptography
 * and its own per-statement work.
 *
 * Never installed: lookups.sh compiles it with PGXS into its temporary
 * directory and creates the function from there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgck_floor);

Datum
pgck_floor(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}
