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
 * pgck_floor_value(text, text) is the floor of a per-row encrypting
 * function (bench/run.sh): it takes a plaintext and a key name as
 * kms_encrypt does, detoasts both, and returns a new value of the size a
 * value under a key with a 256-bit blind-index tag has, the plaintext copied
 * in and the rest zeroed.  Every SQL function that encrypts must at least be
 * called, read its arguments and allocate and fill its result; this does
 * only that, so scan(pgck_floor_value) - scan(count(x)) is what PostgreSQL
 * charges any such function per row, and that plus OpenSSL's primitives
 * (bench/crypto_micro.c) is the floor a per-row figure can reach.
 *
 * Never installed: lookups.sh and run.sh compile it with PGXS into their
 * temporary directory and create the functions from there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgck_floor);

Datum
pgck_floor(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * What a text value under a key with a 256-bit blind-index tag adds to its
 * plaintext (FORMAT.md: the header with nonce and tag, the GCM tag): 68 bytes,
 * as pg_column_size() shows.
 */
#define FLOOR_VALUE_OVERHEAD 68

PG_FUNCTION_INFO_V1(pgck_floor_value);

Datum
pgck_floor_value(PG_FUNCTION_ARGS)
{
	text	   *pt = PG_GETARG_TEXT_PP(0);
	text	   *key = PG_GETARG_TEXT_PP(1);
	size_t		len = VARSIZE_ANY_EXHDR(pt);
	bytea	   *result = palloc(VARHDRSZ + FLOOR_VALUE_OVERHEAD + len);
	char	   *out = VARDATA(result);

	SET_VARSIZE(result, VARHDRSZ + FLOOR_VALUE_OVERHEAD + len);
	memset(out, 0, FLOOR_VALUE_OVERHEAD);
	/* read the key name as any function naming a key must */
	out[0] = VARSIZE_ANY_EXHDR(key) > 0 ? VARDATA_ANY(key)[0] : 0;
	memcpy(out + FLOOR_VALUE_OVERHEAD - 16, VARDATA_ANY(pt), len);
	PG_RETURN_BYTEA_P(result);
}
