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
 * tag in it, laid out as FORMAT.md's 2.2) as AAD, into a value of a tagged
 * value's size; the second returns the HMAC.  pgck_floor_seal_plain(text,
 * text) is the seal without the HMAC, into an untagged value's size, and
 * pgck_floor_open(bytea) opens what pgck_floor_seal wrote: it finds the
 * header's length from the flags (as the format says), takes the nonce from
 * it and opens the rest with the header as AAD, tag checked, into a new text.
 * None of the extension's per-row work is in them: no key or version lookup,
 * no nonce bound, no tag normalization, no parsing beyond the header's
 * length, no checks.  So their scans, net of count(x), are the floor a
 * tagged kms_encrypt, an untagged one, a kms_decrypt and a
 * kms_blind_index(text, key) can reach inside PostgreSQL, measured in the
 * same scan as ours (the primitives cost more there than in crypto_micro.c's
 * tight loop).
 *
 * Their keys are fixed bytes of this file, keyed once per backend (as a
 * cached key version is), so that a value sealed by one session opens in
 * another: a benchmark's keys, never a real one.
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
#include "envelope.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgck_floor);

Datum
pgck_floor(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * FORMAT.md 2.2 (src/envelope.h): the header, the AAD of the seal, is the
 * fixed part (version .. nonce, 19 bytes), then with a tag its length byte
 * and the tag; a tagged value adds 68 bytes to its plaintext with the GCM
 * tag, as pg_column_size() shows.
 */
#define FLOOR_NONCE_AT (PGCK_FIXED_HEADER_LEN - PGCK_NONCE_LEN)
#define FLOOR_TAG_AT (PGCK_FIXED_HEADER_LEN + 1)
#define FLOOR_HEADER_TAGGED (FLOOR_TAG_AT + PGCK_BLIND_TAG_MAX)
#define FLOOR_VALUE_OVERHEAD (FLOOR_HEADER_TAGGED + PGCK_GCM_TAG_LEN)

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

static PgckAead *floor_aead = NULL;
static PgckHmac *floor_hmac = NULL;

/*
 * This module's own keys: fixed, so any session opens what another sealed;
 * keyed at a backend's first call, and each later call only tests them.
 */
static void
floor_keys(void)
{
	uint8		key[PGCK_AES256_KEY_LEN];

	if (likely(floor_aead != NULL && floor_hmac != NULL))
		return;
	memset(key, 0x5a, sizeof(key));
	if (floor_aead == NULL && (floor_aead = pgck_aead_new(key)) == NULL)
		elog(ERROR, "floor: could not key AES-256-GCM");
	memset(key, 0xa5, sizeof(key));
	if (floor_hmac == NULL && (floor_hmac = pgck_hmac_new(key, sizeof(key))) == NULL)
		elog(ERROR, "floor: could not key HMAC-SHA-256");
	pgck_wipe(key, sizeof(key));
}

/*
 * A value of the format's layout: the header (version, algorithm, flags, a
 * version id, the nonce, and with tagged the tag's length and the HMAC of the
 * plaintext), the ciphertext, the GCM tag; sealed with the header as AAD.
 */
static bytea *
floor_seal(text *pt, text *key, bool tagged)
{
	size_t		len = VARSIZE_ANY_EXHDR(pt);
	size_t		hlen = tagged ? FLOOR_HEADER_TAGGED : PGCK_FIXED_HEADER_LEN;
	bytea	   *result = palloc(VARHDRSZ + hlen + len + PGCK_GCM_TAG_LEN);
	uint8	   *out = (uint8 *) VARDATA(result);

	floor_keys();
	SET_VARSIZE(result, VARHDRSZ + hlen + len + PGCK_GCM_TAG_LEN);
	memset(out, 0, FLOOR_NONCE_AT);
	out[0] = PGCK_ENV_VERSION_1;
	out[1] = PGCK_ALG_AES256_GCM;
	out[2] = tagged ? PGCK_FLAG_BLIND_TAG : 0;
	/* read the key name as any function naming a key must */
	out[6] = VARSIZE_ANY_EXHDR(key) > 0 ? VARDATA_ANY(key)[0] : 0;
	if (tagged)
	{
		out[PGCK_FIXED_HEADER_LEN] = PGCK_BLIND_TAG_MAX;
		if (!pgck_hmac_sha256(floor_hmac, (const uint8 *) VARDATA_ANY(pt), len, out + FLOOR_TAG_AT))
			elog(ERROR, "floor: HMAC failed");
	}
	if (!pgck_random_bytes(out + FLOOR_NONCE_AT, PGCK_NONCE_LEN) ||
		!pgck_aead_seal(floor_aead, out + FLOOR_NONCE_AT, out, hlen, NULL, 0,
						(const uint8 *) VARDATA_ANY(pt), len, out + hlen, out + hlen + len))
		elog(ERROR, "floor: nonce or seal failed");
	return result;
}

PG_FUNCTION_INFO_V1(pgck_floor_seal);

Datum
pgck_floor_seal(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(floor_seal(PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1), true));
}

PG_FUNCTION_INFO_V1(pgck_floor_seal_plain);

Datum
pgck_floor_seal_plain(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(floor_seal(PG_GETARG_TEXT_PP(0), PG_GETARG_TEXT_PP(1), false));
}

PG_FUNCTION_INFO_V1(pgck_floor_open);

Datum
pgck_floor_open(PG_FUNCTION_ARGS)
{
	bytea	   *value = PG_GETARG_BYTEA_PP(0);
	const uint8 *in = (const uint8 *) VARDATA_ANY(value);
	size_t		vlen = VARSIZE_ANY_EXHDR(value);
	size_t		hlen;
	size_t		len;
	text	   *result;

	floor_keys();
	if (vlen < PGCK_MIN_ENVELOPE_LEN)
		elog(ERROR, "floor: value too short");
	hlen = (in[2] & PGCK_FLAG_BLIND_TAG) ? FLOOR_TAG_AT + in[PGCK_FIXED_HEADER_LEN] : PGCK_FIXED_HEADER_LEN;
	if (vlen < hlen + PGCK_GCM_TAG_LEN)
		elog(ERROR, "floor: value too short");
	len = vlen - hlen - PGCK_GCM_TAG_LEN;
	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	if (!pgck_aead_open(floor_aead, in + FLOOR_NONCE_AT, in, hlen, NULL, 0, in + hlen, len,
						in + hlen + len, (uint8 *) VARDATA(result)))
		elog(ERROR, "floor: open failed");
	PG_RETURN_TEXT_P(result);
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
