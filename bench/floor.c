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
 * pgck_floor_seal(text, text) and pgck_floor_hmac(text, text) are that
 * function with the primitives in it, called as the extension calls them
 * (src/aead.c, built into this module): the first HMACs the plaintext, takes
 * a nonce from the pool and seals the plaintext with the header (nonce and
 * tag in it) as AAD, into a value of a tagged value's size; the second
 * returns the HMAC.  Both under keys of their own, keyed once per backend.
 * None of the extension's per-row work is in them: no key or version lookup,
 * no nonce bound, no tag normalization, no checks.  So their scans, net of
 * count(x), are the floor a tagged kms_encrypt and a kms_blind_index(text,
 * key) can reach inside PostgreSQL, measured in the same scan as ours (the
 * primitives cost more there than in crypto_micro.c's tight loop).
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

#include "aead.h"

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

/* The header of a tagged value, the AAD of its seal: 52 bytes, the tag and nonce in it. */
#define FLOOR_HEADER_LEN (FLOOR_VALUE_OVERHEAD - PGCK_GCM_TAGLEN)
#define FLOOR_HEADER_NONCE 4
#define FLOOR_HEADER_TAG (FLOOR_HEADER_LEN - PGCK_HMAC_SHA256_LEN)

static PgckAead *floor_aead = NULL;
static PgckHmac *floor_hmac = NULL;

/* Keys of this module's own, random, keyed once per backend (as a cached key version is). */
static void
floor_keys(void)
{
	uint8		key[PGCK_AES256_KEY_LEN];

	if (floor_aead == NULL &&
		(!pgck_random_bytes(key, sizeof(key)) || (floor_aead = pgck_aead_new(key)) == NULL))
		elog(ERROR, "floor: could not key AES-256-GCM");
	if (floor_hmac == NULL &&
		(!pgck_random_bytes(key, sizeof(key)) || (floor_hmac = pgck_hmac_new(key, sizeof(key))) == NULL))
		elog(ERROR, "floor: could not key HMAC-SHA-256");
	pgck_wipe(key, sizeof(key));
}

PG_FUNCTION_INFO_V1(pgck_floor_seal);

Datum
pgck_floor_seal(PG_FUNCTION_ARGS)
{
	text	   *pt = PG_GETARG_TEXT_PP(0);
	text	   *key = PG_GETARG_TEXT_PP(1);
	size_t		len = VARSIZE_ANY_EXHDR(pt);
	bytea	   *result = palloc(VARHDRSZ + FLOOR_VALUE_OVERHEAD + len);
	uint8	   *out = (uint8 *) VARDATA(result);

	floor_keys();
	SET_VARSIZE(result, VARHDRSZ + FLOOR_VALUE_OVERHEAD + len);
	memset(out, 0, FLOOR_HEADER_NONCE);
	out[0] = VARSIZE_ANY_EXHDR(key) > 0 ? VARDATA_ANY(key)[0] : 0;
	if (!pgck_hmac_sha256(floor_hmac, (const uint8 *) VARDATA_ANY(pt), len, out + FLOOR_HEADER_TAG) ||
		!pgck_random_bytes(out + FLOOR_HEADER_NONCE, PGCK_GCM_NONCE_LEN))
		elog(ERROR, "floor: HMAC or nonce failed");
	memset(out + FLOOR_HEADER_NONCE + PGCK_GCM_NONCE_LEN, 0,
		   FLOOR_HEADER_TAG - FLOOR_HEADER_NONCE - PGCK_GCM_NONCE_LEN);
	if (!pgck_aead_seal(floor_aead, out + FLOOR_HEADER_NONCE, out, FLOOR_HEADER_LEN, NULL, 0,
						(const uint8 *) VARDATA_ANY(pt), len, out + FLOOR_HEADER_LEN,
						out + FLOOR_HEADER_LEN + len))
		elog(ERROR, "floor: seal failed");
	PG_RETURN_BYTEA_P(result);
}

PG_FUNCTION_INFO_V1(pgck_floor_hmac);

Datum
pgck_floor_hmac(PG_FUNCTION_ARGS)
{
	text	   *pt = PG_GETARG_TEXT_PP(0);
	text	   *key = PG_GETARG_TEXT_PP(1);
	bytea	   *result = palloc(VARHDRSZ + PGCK_HMAC_SHA256_LEN);

	floor_keys();
	SET_VARSIZE(result, VARHDRSZ + PGCK_HMAC_SHA256_LEN);
	if (VARSIZE_ANY_EXHDR(key) == 0 ||
		!pgck_hmac_sha256(floor_hmac, (const uint8 *) VARDATA_ANY(pt), VARSIZE_ANY_EXHDR(pt),
						  (uint8 *) VARDATA(result)))
		elog(ERROR, "floor: HMAC failed");
	PG_RETURN_BYTEA_P(result);
}
