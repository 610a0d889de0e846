/*-------------------------------------------------------------------------
 *
 * enc_text.c
 *		The enc_text type (I/O) and the per-value SQL functions: kms_encrypt,
 *		kms_decrypt, kms_blind_index.
 *
 * The input function only parses envelopes: it is IMMUTABLE, so literals are
 * folded at plan time, which is exactly why plaintext must never go through
 * it.  Its errors never echo the literal (it could be plaintext), and keep
 * PostgreSQL from writing it to the server log: COPY's error context quotes
 * the field ("COPY t, line 1, column v: ...") and the statement may hold
 * it, so both are hidden from the log (errhidecontext, errhidestmt; the
 * client that sent the literal still sees them).
 *
 * Per value: one envelope parse, two hash lookups in the key cache, one
 * AES-GCM call on a keyed context, one palloc for the result.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
#include "libpq/pqformat.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "aead.h"
#include "blind_index.h"
#include "enc_typed.h"
#include "envelope.h"
#include "keycache.h"
#include "keyring.h"
#include "pgck_errcodes.h"

/* Parse an enc_text datum, reporting a stored value that is malformed. */
static void
parse_stored(const struct varlena *v, PgckEnvelope *env)
{
	PgckEnvelopeStatus st = pgck_envelope_parse((const uint8 *) VARDATA_ANY(v),
												VARSIZE_ANY_EXHDR(v), env);

	if (st == PGCK_ENV_UNKNOWN_VERSION)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_LITERAL),
				 errmsg("unsupported enc_text format version %d", env->version),
				 errdetail("%s", pgck_envelope_status_message(st))));
	if (st != PGCK_ENV_OK)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_VALUE_AUTH),
				 errmsg("malformed enc_text value"),
				 errdetail("%s", pgck_envelope_status_message(st))));
}

/*
 * Can an envelope of this many bytes be stored AND written out again?  Its
 * text form (enc_text_out: "pgck:" + base64, for COPY and pg_dump) is about
 * 4/3 of it and must fit one palloc, so values that could be written but
 * never read back are refused at encryption.
 */
static bool
envelope_fits(size_t size)
{
	return size <= MaxAllocSize - VARHDRSZ &&
		pgck_envelope_text_len(size) + 1 <= MaxAllocSize;
}

/* ---------------------------------------------------------------- type I/O */

PG_FUNCTION_INFO_V1(pgck_enc_text_in);
Datum
pgck_enc_text_in(PG_FUNCTION_ARGS)
{
	const char *str = PG_GETARG_CSTRING(0);
	size_t		len = strlen(str);
	struct varlena *result;
	size_t		blen;
	PgckEnvelope env;
	PgckEnvelopeStatus st;

	if (len < PGCK_TEXT_PREFIX_LEN || memcmp(str, PGCK_TEXT_PREFIX, PGCK_TEXT_PREFIX_LEN) != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_LITERAL),
				 errhidestmt(true), errhidecontext(true),
				 errmsg("invalid input syntax for type enc_text"),
				 errdetail("An enc_text literal is ciphertext written by kms_encrypt(): \"%s\" followed by base64. Plaintext is never accepted.",
						   PGCK_TEXT_PREFIX),
				 errhint("Use kms_encrypt(value, key_name) to encrypt a value.")));

	result = palloc(VARHDRSZ + len);
	if (!pgck_envelope_from_text(str, len, (uint8 *) VARDATA(result), &blen))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_LITERAL),
				 errhidestmt(true), errhidecontext(true),
				 errmsg("invalid input syntax for type enc_text"),
				 errdetail("The text after \"%s\" is not canonical base64.", PGCK_TEXT_PREFIX),
				 errhint("Use kms_encrypt(value, key_name) to encrypt a value.")));
	SET_VARSIZE(result, VARHDRSZ + blen);

	st = pgck_envelope_parse((const uint8 *) VARDATA(result), blen, &env);
	if (st == PGCK_ENV_UNKNOWN_VERSION)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_LITERAL),
				 errhidestmt(true), errhidecontext(true),
				 errmsg("unsupported enc_text format version %d", env.version),
				 errdetail("%s", pgck_envelope_status_message(st)),
				 errhint("The value may have been written by a newer version of pgcrypt_kms.")));
	if (st != PGCK_ENV_OK)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_LITERAL),
				 errhidestmt(true), errhidecontext(true),
				 errmsg("invalid input syntax for type enc_text"),
				 errdetail("%s", pgck_envelope_status_message(st))));
	PG_RETURN_POINTER(result);
}

PG_FUNCTION_INFO_V1(pgck_enc_text_out);
Datum
pgck_enc_text_out(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_VARLENA_PP(0);
	size_t		len = VARSIZE_ANY_EXHDR(v);
	char	   *out = palloc(pgck_envelope_text_len(len) + 1);

	pgck_envelope_to_text((const uint8 *) VARDATA_ANY(v), len, out);
	PG_RETURN_CSTRING(out);
}

PG_FUNCTION_INFO_V1(pgck_enc_text_recv);
Datum
pgck_enc_text_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			len = buf->len - buf->cursor;
	struct varlena *result;
	PgckEnvelope env;
	PgckEnvelopeStatus st;

	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	pq_copymsgbytes(buf, VARDATA(result), len);
	if (!envelope_fits(len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("enc_text value is too large"),
				 errdetail("Its text form could not be written by COPY or pg_dump.")));
	st = pgck_envelope_parse((const uint8 *) VARDATA(result), len, &env);
	if (st == PGCK_ENV_UNKNOWN_VERSION)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_BINARY),
				 errmsg("unsupported enc_text format version %d", env.version),
				 errdetail("%s", pgck_envelope_status_message(st))));
	if (st != PGCK_ENV_OK)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_BINARY),
				 errmsg("invalid binary enc_text value"),
				 errdetail("%s", pgck_envelope_status_message(st))));
	PG_RETURN_POINTER(result);
}

PG_FUNCTION_INFO_V1(pgck_enc_text_send);
Datum
pgck_enc_text_send(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_VARLENA_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* ---------------------------------------------------------------- encrypt / decrypt */

/* The largest plaintext that envelope_fits() with a tag of tag_len bytes. */
static size_t
max_plaintext(size_t tag_len)
{
	size_t		lo = 0,
				hi = MaxAllocSize;

	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo + 1) / 2;

		if (envelope_fits(pgck_envelope_size(mid, tag_len)))
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/*
 * A NULL context is refused, never taken as "no context" and never turned
 * into a NULL result: an application binding a nullable context must not
 * lose a value silently (22004, as for any other NULL argument that would).
 */
static void
refuse_null_argument(const char *what, const char *function)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s of %s must not be null", what, function),
			 errhint("Call the form without a context for values that have none.")));
}

/*
 * Per backend: the last key entry a name resolved to and the last version
 * entry an id did, kept across statements while pgck_keycache_epoch is
 * unchanged, and re-validated on each new statement by
 * pgck_keycache_{key,version}_usable() (the checks of the cache's own hit
 * path, invalidations taken in first).  A single-row statement (a point
 * lookup) then skips the name conversion and both hash lookups: its call
 * sites' fn_extra memos below are new in every statement.
 */
static struct
{
	uint64		epoch;
	PgckCachedKey *k;
	int			name_len;
	char		name[PGCK_KEY_NAME_MAX + 1];
}			last_key;

static struct
{
	uint64		epoch;
	PgckCachedVersion *v;
	uint32		id;
}			last_version;

static PgckCachedKey *
cached_key(const text *name, int len)
{
	char	   *cname;
	PgckCachedKey *k;

	/* the epoch first (the pointer is alive), then again after usable() */
	if (last_key.k != NULL && last_key.epoch == pgck_keycache_epoch &&
		last_key.name_len == len && memcmp(last_key.name, VARDATA_ANY(name), len) == 0 &&
		pgck_keycache_key_usable(last_key.k) && last_key.epoch == pgck_keycache_epoch)
		return last_key.k;
	last_key.k = NULL;
	cname = text_to_cstring(name);
	k = pgck_keycache_key(cname);
	pfree(cname);
	if (len <= PGCK_KEY_NAME_MAX)
	{
		last_key.epoch = pgck_keycache_epoch;
		last_key.k = k;
		last_key.name_len = len;
		memcpy(last_key.name, VARDATA_ANY(name), len);
	}
	return k;
}

static PgckCachedVersion *
cached_version(uint32 id)
{
	PgckCachedVersion *v;

	if (last_version.v != NULL && last_version.epoch == pgck_keycache_epoch &&
		last_version.id == id &&
		pgck_keycache_version_usable(last_version.v) && last_version.epoch == pgck_keycache_epoch)
		return last_version.v;
	last_version.v = NULL;
	v = pgck_keycache_version(id);
	last_version.epoch = pgck_keycache_epoch;
	last_version.id = id;
	last_version.v = v;
	return v;
}

/*
 * Per call site (fn_extra): the key entry a key name resolved to, valid while
 * the statement and pgck_keycache_epoch are unchanged.  Saves converting and
 * hashing the name for every row of a scan.
 */
typedef struct KeyMemo
{
	TimestampTz statement;
	uint64		epoch;
	PgckCachedKey *k;
	PgckCachedVersion *current;	/* k's current version, once looked up */
	PgckExtHint ext;			/* k's extra indexes, once looked up */
	const text *const_name;		/* the name's Const in the plan, if it is one */
	int			name_len;
	char		name[PGCK_KEY_NAME_MAX + 1];
} KeyMemo;

/*
 * Is name the very datum of a Const argument of this call site (a key name
 * written in the query)?  Its bytes then stay the same, at that address, for
 * as long as the call site lives, and key_for() need not compare them row by
 * row.  A name computed per row, or one from a parameter (PL/pgSQL re-runs a
 * call site with new parameter values), is compared every time.
 */
static const text *
const_arg(const text *name, FmgrInfo *flinfo)
{
	List	   *args;
	ListCell   *lc;

	if (flinfo->fn_expr == NULL || !IsA(flinfo->fn_expr, FuncExpr))
		return NULL;
	args = ((FuncExpr *) flinfo->fn_expr)->args;
	foreach(lc, args)
	{
		Const	   *c = (Const *) lfirst(lc);

		if (IsA(c, Const) && !c->constisnull && !c->constbyval &&
			DatumGetPointer(c->constvalue) == (const char *) name)
			return name;
	}
	return NULL;
}

static PgckCachedKey *
key_for(const text *name, FmgrInfo *flinfo)
{
	KeyMemo    *memo = flinfo ? (KeyMemo *) flinfo->fn_extra : NULL;
	int			len = VARSIZE_ANY_EXHDR(name);
	TimestampTz stmt = pgck_keycache_now();
	PgckCachedKey *k;

	if (memo != NULL && memo->statement == stmt && memo->epoch == pgck_keycache_epoch &&
		(name == memo->const_name ||
		 (memo->name_len == len && memcmp(memo->name, VARDATA_ANY(name), len) == 0)))
	{
		pgck_stats.hits++;
		return memo->k;
	}
	k = cached_key(name, len);
	if (flinfo != NULL && len <= PGCK_KEY_NAME_MAX)
	{
		if (memo == NULL)
			flinfo->fn_extra = memo = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(KeyMemo));
		memo->statement = stmt;
		memo->epoch = pgck_keycache_epoch;
		memo->k = k;
		memo->current = NULL;
		memset(&memo->ext, 0, sizeof(memo->ext));
		memo->const_name = const_arg(name, flinfo);
		memo->name_len = len;
		memcpy(memo->name, VARDATA_ANY(name), len);
	}
	return k;
}

/*
 * The key's current version, kept in the KeyMemo that key_for() has just
 * validated (same statement and epoch): a scan skips the version lookup.
 */
static PgckCachedVersion *
current_version_for(PgckCachedKey *k, FmgrInfo *flinfo)
{
	KeyMemo    *memo = flinfo ? (KeyMemo *) flinfo->fn_extra : NULL;
	PgckCachedVersion *v;

	if (memo != NULL && memo->k == k && memo->epoch == pgck_keycache_epoch &&
		memo->current != NULL && memo->current->id == k->current_id)
	{
		pgck_stats.hits++;
		return memo->current;
	}
	v = cached_version(k->current_id);
	if (memo != NULL && memo->k == k && memo->epoch == pgck_keycache_epoch)
		memo->current = v;
	return v;
}

/* The KeyMemo's hint for pgck_value_ext, when key_for() has just validated it for k. */
static PgckExtHint *
ext_hint_for(PgckCachedKey *k, FmgrInfo *flinfo)
{
	KeyMemo    *memo = flinfo ? (KeyMemo *) flinfo->fn_extra : NULL;

	if (memo != NULL && memo->k == k && memo->epoch == pgck_keycache_epoch)
		return &memo->ext;
	return NULL;
}

static struct varlena *
encrypt_value(const uint8 *pt, size_t pt_len, const text *key_name_text, const text *context,
			  FmgrInfo *flinfo, uint8 plain_type)
{
	uint8		ext[PGCK_EXT_MAX_LEN + 2];
	size_t		ext_size;
	PgckCachedKey *k;
	PgckCachedVersion *v;
	uint8		tag[PGCK_BLIND_TAG_MAX];
	size_t		tag_len = 0;
	uint8		nonce[PGCK_NONCE_LEN];
	size_t		size;
	size_t		hdr_len;
	struct varlena *result;
	uint8	   *out;
	int			attempts;
	int			rotations = 0;

	/*
	 * The active version; again if counting this use rotated the key, or if a
	 * rotation committed meanwhile made the cached current version inactive.
	 */
	for (attempts = 0;; attempts++)
	{
		k = key_for(key_name_text, attempts == 0 ? flinfo : NULL);
		v = current_version_for(k, attempts == 0 ? flinfo : NULL);
		if (v->state != PGCK_STATE_ACTIVE)
		{
			if (attempts >= 3)
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_KEY_STATE),
						 errmsg("key \"%s\" has no usable active version", k->name),
						 errdetail("Version %d is %s.", v->version, pgck_state_name(v->state)),
						 errhint("Retry; if it persists, rotate the key with kms_rotate_key().")));
			AcceptInvalidationMessages();
			pgck_keycache_forget_key(k->name);
			pgck_keycache_epoch++;
			continue;
		}
		if (!pgck_keycache_count_encryption(v))
			break;

		/*
		 * Counting rotated the key (or took up another session's rotation).
		 * Once is the rule, twice a race; a new version that at once needs
		 * rotating again (usage.c taking it for lost, as on a 0.1.0 keyring
		 * after the clock stepped back past a loss, or a test-only
		 * dek_rotate_after of 1) would rotate for ever, a KMS call and a
		 * version each time, until cancelled.
		 */
		if (++rotations >= 4)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KEY_STATE),
					 errmsg("key \"%s\" still has no version to encrypt under after %d rotations", k->name,
							rotations),
					 errdetail("Each new version had to be rotated again at once; the server log says why."),
					 errhint("On a keyring not yet updated from 0.1.0, run ALTER EXTENSION pgcrypt_kms UPDATE.")));
	}

	/*
	 * The key's blind-index tag: text and bytea only.  The transforms are
	 * byte-wise text rules (lower, email, digits), meaningless over an int8's
	 * eight bytes, and a numeric's text keeps its scale, so equal numerics
	 * (1.5, 1.50) would get different tags, telling apart what their equal
	 * order terms do not.  A typed value is found by its order term.
	 */
	if (k->transform != PGCK_BIDX_NONE &&
		(plain_type == PGCK_PT_TEXT || plain_type == PGCK_PT_BYTEA))
		tag_len = pgck_blind_index_tag(k, k->hmac, (const char *) pt, pt_len, tag);
	/* 0.3.0: plaintext type, ORE term, named tags (enc_typed.c) */
	ext_size = pgck_value_ext(k, plain_type, pt, pt_len, ext,
							  ext_hint_for(k, attempts == 0 ? flinfo : NULL));

	size = pgck_envelope_size_ext(pt_len, tag_len, ext_size);
	if (!envelope_fits(size))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too large to encrypt"),
				 errdetail("An encrypted value holds at most %zu bytes of plaintext, so that its text form (COPY, pg_dump) can still be written.",
						   max_plaintext(tag_len))));

	if (!pgck_random_bytes(nonce, sizeof(nonce)))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not generate a random nonce")));

	result = palloc(VARHDRSZ + size);
	SET_VARSIZE(result, VARHDRSZ + size);
	out = (uint8 *) VARDATA(result);
	hdr_len = pgck_envelope_write_header_ext(out, context ? PGCK_FLAG_CONTEXT : 0,
											 v->id, nonce, tag, tag_len, ext, ext_size);
	if (!pgck_aead_seal(v->aead, nonce, out, hdr_len,
						context ? (const uint8 *) VARDATA_ANY(context) : NULL,
						context ? VARSIZE_ANY_EXHDR(context) : 0,
						pt, pt_len, out + hdr_len, out + hdr_len + pt_len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not encrypt a value under key \"%s\" version %d",
						v->key_name, v->version)));
	return result;
}

/*
 * Per call site (fn_extra): the version the previous value used, valid while
 * the statement and pgck_keycache_epoch are unchanged.  A scan of values
 * under one version then skips the cache lookup.
 */
typedef struct VersionMemo
{
	TimestampTz statement;
	uint64		epoch;
	uint32		id;
	PgckCachedVersion *v;
} VersionMemo;

static PgckCachedVersion *
version_for(uint32 id, FmgrInfo *flinfo)
{
	VersionMemo *memo = flinfo ? (VersionMemo *) flinfo->fn_extra : NULL;
	TimestampTz stmt = pgck_keycache_now();
	PgckCachedVersion *v;

	if (memo != NULL && memo->id == id && memo->statement == stmt &&
		memo->epoch == pgck_keycache_epoch)
	{
		pgck_stats.hits++;
		return memo->v;
	}
	v = cached_version(id);
	if (flinfo != NULL)
	{
		if (memo == NULL)
			flinfo->fn_extra = memo = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(VersionMemo));
		memo->statement = stmt;
		memo->epoch = pgck_keycache_epoch;
		memo->id = id;
		memo->v = v;
	}
	return v;
}

/*
 * Decrypt a value; the result is palloc'd text.  If key_name_out is given it
 * receives the name of the value's key (palloc'd).  flinfo (may be NULL)
 * lends its fn_extra to version_for().
 */
static text *
decrypt_value(struct varlena *value, const text *context, char **key_name_out,
			  FmgrInfo *flinfo, int want_type)
{
	PgckEnvelope env;
	PgckCachedVersion *v;
	text	   *result;

	parse_stored(value, &env);
	v = version_for(env.key_version_id, flinfo);
	if (want_type != PGCK_PT_ANY && env.plain_type != want_type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("a value under key \"%s\" version %d holds %s, not %s",
						v->key_name, v->version, pgck_plain_type_name(env.plain_type),
						pgck_plain_type_name((uint8) want_type)),
				 errhint("Decrypt it with kms_decrypt%s%s().", env.plain_type == PGCK_PT_TEXT ? "" : "_",
						 env.plain_type == PGCK_PT_TEXT ? "" : pgck_plain_type_name(env.plain_type))));
	if (v->state == PGCK_STATE_RETIRED)
	{
		pgck_note_decrypt_failure(v->key_name, v->version, PGCK_ERRCODE_KEY_STATE);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" version %d is retired", v->key_name, v->version),
				 errdetail("A retired key version no longer decrypts."),
				 errhint("Set the version back to decrypt-only to read the value, then re-encrypt it with kms_reencrypt().")));
	}

	if ((env.flags & PGCK_FLAG_CONTEXT) && context == NULL)
	{
		pgck_note_decrypt_failure(v->key_name, v->version, PGCK_ERRCODE_VALUE_AUTH);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_VALUE_AUTH),
				 errmsg("could not decrypt a value under key \"%s\" version %d", v->key_name, v->version),
				 errdetail("The value was encrypted with a context."),
				 errhint("Pass the same context to kms_decrypt(value, context).")));
	}
	if (!(env.flags & PGCK_FLAG_CONTEXT) && context != NULL)
	{
		pgck_note_decrypt_failure(v->key_name, v->version, PGCK_ERRCODE_VALUE_AUTH);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_VALUE_AUTH),
				 errmsg("could not decrypt a value under key \"%s\" version %d", v->key_name, v->version),
				 errdetail("The value was encrypted without a context.")));
	}

	result = palloc(VARHDRSZ + env.ciphertext_len);
	SET_VARSIZE(result, VARHDRSZ + env.ciphertext_len);
	if (!pgck_aead_open(v->aead, env.nonce, (const uint8 *) VARDATA_ANY(value), env.header_len,
						context ? (const uint8 *) VARDATA_ANY(context) : NULL,
						context ? VARSIZE_ANY_EXHDR(context) : 0,
						env.ciphertext, env.ciphertext_len, env.gcm_tag,
						(uint8 *) VARDATA(result)))
	{
		pfree(result);
		pgck_note_decrypt_failure(v->key_name, v->version, PGCK_ERRCODE_VALUE_AUTH);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_VALUE_AUTH),
				 errmsg("could not decrypt a value under key \"%s\" version %d", v->key_name, v->version),
				 errdetail("The value was altered, or it was encrypted under another key or with another context.")));
	}
	if (key_name_out != NULL)
		*key_name_out = pstrdup(v->key_name);
	return result;
}

/*
 * A decrypted plaintext is returned as text only if it is valid in the
 * database encoding: a value encrypted in a database of another encoding (a
 * dump restored elsewhere) would otherwise come back as invalid text.  The
 * error names the key and version, never the bytes (PostgreSQL's own message
 * would quote them).
 */
static text *
checked_encoding(text *plain, const struct varlena *value)
{
	int			len = VARSIZE(plain) - VARHDRSZ;

	if (!pg_verify_mbstr(GetDatabaseEncoding(), VARDATA(plain), len, true))
	{
		PgckEnvelope env;

		parse_stored(value, &env);
		pgck_wipe(VARDATA(plain), len);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("a value under key version id %u is not valid in the database encoding \"%s\"",
						env.key_version_id, GetDatabaseEncodingName()),
				 errdetail("It was encrypted in a database with another encoding; its bytes are not shown."),
				 errhint("Decrypt it in a database with the encoding it was written in, or convert it there and re-encrypt.")));
	}
	return plain;
}

PG_FUNCTION_INFO_V1(pgck_kms_encrypt);
Datum
pgck_kms_encrypt(PG_FUNCTION_ARGS)
{
	text	   *plain;
	text	   *key_name;
	text	   *context = NULL;

	/* not STRICT: NULL encrypts to NULL, but a value is never lost to a NULL key or context */
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the key name of kms_encrypt must not be null")));
	if (PG_NARGS() > 2 && PG_ARGISNULL(2))
		refuse_null_argument("the context", "kms_encrypt");
	plain = PG_GETARG_TEXT_PP(0);
	key_name = PG_GETARG_TEXT_PP(1);
	if (PG_NARGS() > 2)
		context = PG_GETARG_TEXT_PP(2);

	PG_RETURN_POINTER(encrypt_value((const uint8 *) VARDATA_ANY(plain),
									VARSIZE_ANY_EXHDR(plain), key_name, context, fcinfo->flinfo,
									PGCK_PT_TEXT));
}

PG_FUNCTION_INFO_V1(pgck_kms_decrypt);
Datum
pgck_kms_decrypt(PG_FUNCTION_ARGS)
{
	struct varlena *value;
	text	   *context = NULL;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (PG_NARGS() > 1 && PG_ARGISNULL(1))
		refuse_null_argument("the context", "kms_decrypt");
	value = PG_GETARG_VARLENA_PP(0);
	if (PG_NARGS() > 1)
		context = PG_GETARG_TEXT_PP(1);

	PG_RETURN_TEXT_P(checked_encoding(decrypt_value(value, context, NULL, fcinfo->flinfo,
													PGCK_PT_TEXT), value));
}

/*
 * kms_reencrypt(value [, context]): the same plaintext under its key's current
 * data key version and current index key (so it also re-tags).  The
 * plaintext exists only in this function's memory and is wiped.
 */
PG_FUNCTION_INFO_V1(pgck_kms_reencrypt);
Datum
pgck_kms_reencrypt(PG_FUNCTION_ARGS)
{
	struct varlena *value;
	text	   *volatile context = NULL;
	char	   *key_name;
	text	   *plain;
	struct varlena *volatile result = NULL;
	PgckEnvelope env;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (PG_NARGS() > 1 && PG_ARGISNULL(1))
		refuse_null_argument("the context", "kms_reencrypt");
	value = PG_GETARG_VARLENA_PP(0);
	if (PG_NARGS() > 1)
		context = PG_GETARG_TEXT_PP(1);
	parse_stored(value, &env);	/* the plaintext type is kept */
	plain = decrypt_value(value, context, &key_name, NULL, PGCK_PT_ANY);

	PG_TRY();
	{
		result = encrypt_value((const uint8 *) VARDATA(plain), VARSIZE(plain) - VARHDRSZ,
							   cstring_to_text(key_name), context, NULL, env.plain_type);
	}
	PG_FINALLY();
	{
		pgck_wipe(VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
		pfree(plain);
	}
	PG_END_TRY();
	PG_RETURN_POINTER(result);
}

/* Typed values (enc_typed.c) share the envelope code through these two. */
struct varlena *
pgck_encrypt_value(const uint8 *pt, size_t pt_len, uint8 plain_type, const text *key_name,
				   const text *context, FmgrInfo *flinfo)
{
	return encrypt_value(pt, pt_len, key_name, context, flinfo, plain_type);
}

text *
pgck_decrypt_value(struct varlena *value, const text *context, int want_type, FmgrInfo *flinfo)
{
	return decrypt_value(value, context, NULL, flinfo, want_type);
}

/* ---------------------------------------------------------------- blind index */

/* kms_blind_index(enc_text): the tag the value carries; needs no key. */
PG_FUNCTION_INFO_V1(pgck_kms_blind_index_value);
Datum
pgck_kms_blind_index_value(PG_FUNCTION_ARGS)
{
	struct varlena *value = PG_GETARG_VARLENA_PP(0);
	PgckEnvelope env;
	bytea	   *result;

	parse_stored(value, &env);
	if (env.blind_tag == NULL)
		PG_RETURN_NULL();
	result = palloc(VARHDRSZ + env.blind_tag_len);
	SET_VARSIZE(result, VARHDRSZ + env.blind_tag_len);
	memcpy(VARDATA(result), env.blind_tag, env.blind_tag_len);
	PG_RETURN_BYTEA_P(result);
}

/*
 * kms_blind_index(text | bytea, key): the probe for a lookup.  The bytea form
 * (0.3) is this function too: the tag is pgck_blind_index_tag() of the bytes,
 * the call encrypt_value makes for a text or a bytea value alike (the key's
 * transforms are byte-wise), so a probe of the same bytes equals the stored
 * tag whatever their type.
 */
PG_FUNCTION_INFO_V1(pgck_kms_blind_index_text);
Datum
pgck_kms_blind_index_text(PG_FUNCTION_ARGS)
{
	text	   *plain = PG_GETARG_TEXT_PP(0);
	PgckCachedKey *k = key_for(PG_GETARG_TEXT_PP(1), fcinfo->flinfo);
	uint8		tag[PGCK_BLIND_TAG_MAX];
	size_t		tag_len;
	bytea	   *result;

	if (k->transform == PGCK_BIDX_NONE)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("key \"%s\" has no blind index", k->name),
				 errhint("Create the key with kms_create_key(..., blind_index => 'exact', 'lower', 'email' or 'digits').")));
	tag_len = pgck_blind_index_tag(k, k->hmac, VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain), tag);
	result = palloc(VARHDRSZ + tag_len);
	SET_VARSIZE(result, VARHDRSZ + tag_len);
	memcpy(VARDATA(result), tag, tag_len);
	PG_RETURN_BYTEA_P(result);
}

/*
 * kms_blind_index_all(text | bytea, key) → bytea[]: the probe under the
 * current index key and, while an index key rotation is in progress, under
 * the previous one, for "WHERE kms_blind_index(col) = ANY
 * (kms_blind_index_all(...))".  The bytea form is this function too, as for
 * kms_blind_index.
 */
PG_FUNCTION_INFO_V1(pgck_kms_blind_index_all);
Datum
pgck_kms_blind_index_all(PG_FUNCTION_ARGS)
{
	text	   *plain = PG_GETARG_TEXT_PP(0);
	char	   *key_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	PgckCachedKey *k = pgck_keycache_key(key_name);
	PgckHmac   *macs[2];
	Datum		elems[2];
	int			n = 0;
	int			i;

	if (k->transform == PGCK_BIDX_NONE)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("key \"%s\" has no blind index", key_name)));
	macs[0] = k->hmac;
	macs[1] = k->hmac_prev;
	for (i = 0; i < 2; i++)
	{
		uint8		tag[PGCK_BLIND_TAG_MAX];
		size_t		tag_len;
		bytea	   *b;

		if (macs[i] == NULL)
			continue;
		tag_len = pgck_blind_index_tag(k, macs[i], VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain), tag);
		b = palloc(VARHDRSZ + tag_len);
		SET_VARSIZE(b, VARHDRSZ + tag_len);
		memcpy(VARDATA(b), tag, tag_len);
		elems[n++] = PointerGetDatum(b);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, BYTEAOID, -1, false, TYPALIGN_INT));
}

/*
 * kms_blind_index_match(value, plaintext, key [, context]) → bool: does the
 * value decrypt to a plaintext that normalizes like this one under the key's
 * transform?  The re-check for truncated tags, whose lookups return false
 * positives.  want_type is the probe's plaintext type: a value of another
 * type (a text value and a bytea probe, or the other way round) is not that
 * plaintext, so it is false, read from the header before any key version is
 * loaded or anything decrypted: a column holding both types, or a truncated
 * tag shared by values of both, must not make the lookup fail (decrypting as
 * the other type is what kms_decrypt and kms_decrypt_bytea refuse, 42804).
 */
static bool
blind_index_match(FunctionCallInfo fcinfo, int want_type)
{
	struct varlena *value = PG_GETARG_VARLENA_PP(0);
	struct varlena *probe = PG_GETARG_VARLENA_PP(1);
	char	   *key_name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	PgckCachedKey *k;
	PgckTransform transform;
	char	   *value_key;
	text	   *plain;
	bool		same;
	PgckEnvelope env;

	k = pgck_keycache_key(key_name);
	transform = k->transform;
	if (transform == PGCK_BIDX_NONE)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("key \"%s\" has no blind index", key_name)));
	parse_stored(value, &env);
	if (env.plain_type != want_type)
		return false;
	/*
	 * Nor is a value under another key, whatever it decrypts to: false from
	 * the keyring, before that key's version is loaded (no unwrap, no access
	 * check on it), so a retired or destroyed version of another key, or its
	 * value's context, cannot make this key's lookup fail.
	 */
	if (!pgck_keycache_version_of_key(env.key_version_id, key_name))
		return false;
	/* the four-argument form re-checks a value encrypted with a context */
	plain = decrypt_value(value, PG_NARGS() > 3 ? PG_GETARG_TEXT_PP(3) : NULL, &value_key, NULL,
						  want_type);
	same = strcmp(value_key, key_name) == 0 &&
		pgck_blind_index_same(transform, VARDATA(plain), VARSIZE(plain) - VARHDRSZ,
							  VARDATA_ANY(probe), VARSIZE_ANY_EXHDR(probe));
	pgck_wipe(VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
	pfree(plain);
	return same;
}

/*
 * Not STRICT (0.3): a NULL value or probe matches nothing (NULL), but a NULL
 * key name or context is refused, never a silent NULL that drops the row
 * from a re-check, as kms_decrypt refuses them.  Does the call return NULL?
 */
static bool
blind_index_match_nulls(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the key name of kms_blind_index_match must not be null")));
	if (PG_NARGS() > 3 && PG_ARGISNULL(3))
		refuse_null_argument("the context", "kms_blind_index_match");
	return PG_ARGISNULL(0) || PG_ARGISNULL(1);
}

/* kms_blind_index_match(enc_text, text, key [, context]): text values only */
PG_FUNCTION_INFO_V1(pgck_kms_blind_index_match);
Datum
pgck_kms_blind_index_match(PG_FUNCTION_ARGS)
{
	if (blind_index_match_nulls(fcinfo))
		PG_RETURN_NULL();
	PG_RETURN_BOOL(blind_index_match(fcinfo, PGCK_PT_TEXT));
}

/*
 * kms_blind_index_match(enc_text, bytea, key [, context]) (0.3): the re-check
 * of bytea values, whose tags kms_blind_index(bytea, key) probes.
 */
PG_FUNCTION_INFO_V1(pgck_kms_blind_index_match_bytea);
Datum
pgck_kms_blind_index_match_bytea(PG_FUNCTION_ARGS)
{
	if (blind_index_match_nulls(fcinfo))
		PG_RETURN_NULL();
	PG_RETURN_BOOL(blind_index_match(fcinfo, PGCK_PT_BYTEA));
}

/* The key version id a stored value names, as kms_version_id() reads it. */
int32
pgck_stored_version_id(const struct varlena *value)
{
	PgckEnvelope env;

	parse_stored(value, &env);
	return (int32) env.key_version_id;
}

/* kms_version_id(enc_text): the key version id a value names; needs no key. */
PG_FUNCTION_INFO_V1(pgck_kms_version_id);
Datum
pgck_kms_version_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(pgck_stored_version_id(PG_GETARG_VARLENA_PP(0)));
}

/*
 * kms_migration_source(value text, col text): the plaintext a migration to
 * enc_text encrypts (its sync trigger, backfill and swap), refused if it is
 * already an enc_text value in its text form ("pgck:" + canonical base64 of
 * an envelope that parses): an application writing kms_encrypt(...) into the
 * still-text column gets the envelope's text form stored by PostgreSQL's
 * assignment I/O cast, which encrypted again would decrypt to "pgck:..." for
 * ever after the swap.  Never an error for anything else (no soft-error
 * input on PostgreSQL 15: the checks of enc_text_in, without ereport).  The
 * value is never echoed: it may be a plaintext.
 */
PG_FUNCTION_INFO_V1(pgck_kms_migration_source);
Datum
pgck_kms_migration_source(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);
	text	   *col = PG_GETARG_TEXT_PP(1);
	const char *str = VARDATA_ANY(value);
	size_t		len = VARSIZE_ANY_EXHDR(value);
	uint8	   *buf;
	size_t		blen;
	PgckEnvelope env;
	bool		envelope;

	if (len < PGCK_TEXT_PREFIX_LEN || memcmp(str, PGCK_TEXT_PREFIX, PGCK_TEXT_PREFIX_LEN) != 0)
		PG_RETURN_TEXT_P(value);
	buf = palloc(len);
	envelope = pgck_envelope_from_text(str, len, buf, &blen) &&
		pgck_envelope_parse(buf, blen, &env) == PGCK_ENV_OK;
	pfree(buf);
	if (envelope)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("an encrypted value was written into the plaintext column \"%s\" of an online migration",
						text_to_cstring(col)),
				 errdetail("The value is the text form of an enc_text value (\"%s\" + base64), not a plaintext: encrypting it again would store a value that decrypts to ciphertext.",
						   PGCK_TEXT_PREFIX),
				 errhint("Until the swap (kms_encrypt_column without finish => false) commits, the application writes the plaintext into the column; it switches to writing kms_encrypt(...) when the swap has committed.")));
	PG_RETURN_TEXT_P(value);
}

/* ---------------------------------------------------------------- verification */

typedef struct VerifyBucket
{
	uint32		id;				/* 0: malformed values */
	bool		usable;			/* key version could be loaded */
	char	   *key_name;
	int32		version;
	int64		decrypted;
	int64		failed;
	char	   *error;			/* first error, never a value */
} VerifyBucket;

/* Load a version in a subtransaction, so one bad version does not end the drill. */
static void
verify_load_version(VerifyBucket *b, MemoryContext cxt, ResourceOwner owner)
{
	MemoryContext old = CurrentMemoryContext;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(old);
	PG_TRY();
	{
		PgckCachedVersion *v = pgck_keycache_version(b->id);

		b->key_name = MemoryContextStrdup(cxt, v->key_name);
		b->version = v->version;
		b->usable = v->state != PGCK_STATE_RETIRED;
		if (!b->usable)
			b->error = MemoryContextStrdup(cxt, "the key version is retired (SQLSTATE 55000)");
		pgck_subxact_release(old, owner);
	}
	PG_CATCH();
	{
		ErrorData  *ed = pgck_subxact_abort(old, owner);

		/* a cancel ends the drill; it is not one more failed version */
		if (pgck_error_ends_statement(ed))
			ReThrowError(ed);
		b->usable = false;
		b->error = MemoryContextStrdup(cxt, psprintf("%s (SQLSTATE %s)", ed->message,
													 unpack_sql_state(ed->sqlerrcode)));
		FreeErrorData(ed);
	}
	PG_END_TRY();
}

/*
 * The quoted name of kms_verify's table, after checking that the relation
 * exists (a regclass argument may hold any OID, or name a table dropped since)
 * and that col is one of its enc_text columns (or of a domain over enc_text).
 */
static char *
verify_target(Oid relid, const char *col, Oid ext_schema)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname;
	AttrNumber	attnum;
	Oid			atttype;
	Oid			enc_type;

	if (relname == NULL || (nspname = get_namespace_name(get_rel_namespace(relid))) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	attnum = get_attnum(relid, col);
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", col, relname)));
	atttype = get_atttype(relid, attnum);
	enc_type = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							   CStringGetDatum("enc_text"), ObjectIdGetDatum(ext_schema));
	/* a domain over enc_text (at any depth) is an enc_text column too */
	if (!OidIsValid(enc_type) || getBaseType(atttype) != enc_type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation \"%s\" is not of type enc_text", col, relname)));
	return quote_qualified_identifier(nspname, relname);
}

/*
 * kms_verify(tbl, col [, context]) → per key version: values that decrypt and
 * values that fail.  Returns counts only, never a plaintext; runs with the
 * caller's privileges (SELECT on the table, EXECUTE granted like kms_decrypt).
 * context is an SQL expression over the table's columns giving each value's
 * context, as for kms_reencrypt_table.
 */
PG_FUNCTION_INFO_V1(pgck_kms_verify);
Datum
pgck_kms_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	char	   *col;
	char	   *ctx_expr;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	HTAB	   *buckets;
	HASHCTL		ctl;
	char	   *relname;
	StringInfoData sql;
	Portal		portal;
	HASH_SEQ_STATUS status;
	VerifyBucket *b;

	/* not STRICT (context may be NULL): check the others here */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the table and column of kms_verify must not be null")));
	relid = PG_GETARG_OID(0);
	col = NameStr(*PG_GETARG_NAME(1));
	ctx_expr = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	/* enc_text lives in the schema of this function (the extension's) */
	relname = verify_target(relid, col, get_func_namespace(fcinfo->flinfo->fn_oid));

	InitMaterializedSRF(fcinfo, 0);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s%s%s%s FROM %s", quote_identifier(col),
					 ctx_expr ? ", (" : "", ctx_expr ? ctx_expr : "", ctx_expr ? ")::pg_catalog.text" : "",
					 relname);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(VerifyBucket);
	ctl.hcxt = cxt;
	buckets = hash_create("kms_verify buckets", 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	SPI_connect();
	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		isnull;
			Datum		d = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
			struct varlena *value;
			PgckEnvelope env;
			uint32		id;
			bool		found;
			text	   *context = NULL;

			if (isnull)
				continue;
			value = PG_DETOAST_DATUM_PACKED(d);
			if (ctx_expr != NULL)
			{
				Datum		c = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);

				context = isnull ? NULL : DatumGetTextPP(c);
			}
			id = pgck_envelope_parse((const uint8 *) VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
									 &env) == PGCK_ENV_OK ? env.key_version_id : 0;
			b = hash_search(buckets, &id, HASH_ENTER, &found);
			if (!found)
			{
				b->decrypted = b->failed = 0;
				b->key_name = NULL;
				b->version = 0;
				b->error = NULL;
				b->usable = false;
				if (id == 0)
					b->error = MemoryContextStrdup(cxt, "malformed value (SQLSTATE 22K01)");
				else
					verify_load_version(b, cxt, owner);
			}
			if (!b->usable)
			{
				b->failed++;
				continue;
			}
			{
				PgckCachedVersion *v = pgck_keycache_version(id);
				uint8	   *pt = palloc(env.ciphertext_len + 1);
				bool		ctx_ok = ((env.flags & PGCK_FLAG_CONTEXT) != 0) == (context != NULL);

				if (ctx_ok &&
					pgck_aead_open(v->aead, env.nonce, (const uint8 *) VARDATA_ANY(value), env.header_len,
								   context ? (const uint8 *) VARDATA_ANY(context) : NULL,
								   context ? VARSIZE_ANY_EXHDR(context) : 0,
								   env.ciphertext, env.ciphertext_len, env.gcm_tag, pt))
					b->decrypted++;
				else
				{
					b->failed++;
					if (b->error == NULL)
						b->error = MemoryContextStrdup(cxt, ctx_ok ?
													   "value failed authentication (SQLSTATE 22K01)" :
													   "context given for a value without one, or missing (SQLSTATE 22K01)");
				}
				pgck_wipe(pt, env.ciphertext_len);
				pfree(pt);
			}
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();

	hash_seq_init(&status, buckets);
	while ((b = hash_seq_search(&status)) != NULL)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		values[0] = b->key_name ? CStringGetTextDatum(b->key_name) : (Datum) 0;
		nulls[0] = b->key_name == NULL;
		values[1] = Int32GetDatum(b->version);
		nulls[1] = b->key_name == NULL;
		values[2] = Int32GetDatum((int32) b->id);
		values[3] = Int64GetDatum(b->decrypted);
		values[4] = Int64GetDatum(b->failed);
		values[5] = b->error ? CStringGetTextDatum(b->error) : (Datum) 0;
		nulls[5] = b->error == NULL;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * kms_warm_cache(tbl, col) → int: unwrap, before a scan needs them, the key
 * versions the values of an enc_text column name (distinct, as the caller
 * reads the table).  With the shared key cache the unwraps run concurrently
 * (pgcrypt_kms.unwrap_concurrency) into the shared cache; without it they
 * fill this backend's cache one after another.  Returns how many versions it
 * unwrapped; versions already cached, destroyed or retired are skipped.  A
 * shared-cache unwrap that fails is logged by the process that tried it and
 * counted in a WARNING here, never in the result.
 */
PG_FUNCTION_INFO_V1(pgck_kms_warm_cache);
Datum
pgck_kms_warm_cache(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *col = NameStr(*PG_GETARG_NAME(1));
	Oid			ext_schema = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *relname = verify_target(relid, col, ext_schema);
	MemoryContext cxt = CurrentMemoryContext;
	uint32	   *ids;
	int			n = 0;
	int			warmed;
	int			failed;
	uint64		i;
	int			ret;
	char	   *sql;
	const char *nsp;

	/*
	 * the ids, from the envelopes' headers: no key needed to read them.  The
	 * column (enc_text, verify_target checked) is cast to the extension's
	 * enc_text all the same, so that the call is an exact match of the
	 * extension's own kms_version_id whatever overloads others add to its
	 * schema.
	 */
	nsp = quote_identifier(get_namespace_name(ext_schema));
	sql = psprintf("SELECT DISTINCT %s.kms_version_id(%s::%s.enc_text) FROM %s WHERE %s IS NOT NULL",
				   nsp, quote_identifier(col), nsp, relname, quote_identifier(col));
	SPI_connect();
	ret = SPI_execute(sql, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "kms_warm_cache query failed: %s", SPI_result_code_string(ret));
	ids = MemoryContextAlloc(cxt, sizeof(uint32) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			ids[n++] = (uint32) DatumGetInt32(d);
	}
	SPI_finish();
	warmed = pgck_keycache_warm(ids, n, &failed);
	if (failed > 0)
		ereport(WARNING,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("%d of the %d key versions to warm could not be unwrapped into the shared key cache",
						failed, warmed + failed),
				 errdetail("The server log has a line for each, with the key, the version and the error."),
				 errhint("A statement that needs one of them unwraps it itself and reports its error.")));
	PG_RETURN_INT32(warmed);
}

/*
 * The symbols 0.3.0's SQL declares these functions under (see "symbols of
 * 0.3.0's own" in pgcrypt_kms--0.2.0--0.3.0.sql): a session still running an
 * older library finds none of them after ALTER EXTENSION UPDATE (42883),
 * where the older symbols would run code that assumed STRICT, or write values
 * without 0.3.0's named-index tags and order terms.  The older symbols above
 * stay for catalogs of older versions.
 */
PG_FUNCTION_INFO_V1(pgck_kms_encrypt_0_3);
Datum
pgck_kms_encrypt_0_3(PG_FUNCTION_ARGS)
{
	return pgck_kms_encrypt(fcinfo);
}

PG_FUNCTION_INFO_V1(pgck_kms_decrypt_0_3);
Datum
pgck_kms_decrypt_0_3(PG_FUNCTION_ARGS)
{
	return pgck_kms_decrypt(fcinfo);
}

PG_FUNCTION_INFO_V1(pgck_kms_reencrypt_0_3);
Datum
pgck_kms_reencrypt_0_3(PG_FUNCTION_ARGS)
{
	return pgck_kms_reencrypt(fcinfo);
}

PG_FUNCTION_INFO_V1(pgck_kms_blind_index_match_0_3);
Datum
pgck_kms_blind_index_match_0_3(PG_FUNCTION_ARGS)
{
	return pgck_kms_blind_index_match(fcinfo);
}
