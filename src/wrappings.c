/*-------------------------------------------------------------------------
 *
 * wrappings.c
 *		Additional wrappings of a key for disaster recovery (issue 15):
 *		kms_add_wrapping, kms_add_escrow_key, kms_remove_wrapping,
 *		kms_verify_wrappings, and the wrapping of each new secret at its
 *		creation (called by keyring.c's rotations).
 *
 * A wrapping holds one blob of every live secret of its key: each DEK
 * version that is not destroyed and the current and previous index keys
 * (order and named-index keys derive from the index key).  FORMAT.md
 * section 11 is the storage format.  Blobs of a KMS wrapping are made
 * without the plaintext leaving the KMS where the KMS can (the same
 * provider: ReEncrypt); across providers and for escrow keys the secret is
 * unwrapped here into locked memory, wrapped, and wiped.  Deleting blobs
 * (destroy, removal, finished index rotation) is done by the triggers of
 * sql/pgcrypt_kms--0.2.0--0.3.0.sql, so it holds for changes by hand too.
 * Unwrapping through these blobs when the primary refuses is keyring.c's
 * pgck_keyring_unwrap.
 *
 * Every statement runs as the keyring owner (pgck_keyring_scope_enter)
 * with schema-qualified names, as in keyring.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

#include "aead.h"
#include "escrow.h"
#include "keymem.h"
#include "keyring.h"
#include "kms.h"
#include "pgck_errcodes.h"
#include "wrappings.h"

#define KEYRING_SCHEMA "pgcrypt_kms"

/* One additional wrapping of a key (a key_wrappings row). */
typedef struct Wrapping
{
	int32		wrapping;
	bool		escrow;
	char	   *kms_key;		/* kind kms */
	bytea	   *public_key;		/* kind escrow: DER SubjectPublicKeyInfo */
	bytea	   *fingerprint;
} Wrapping;

/* One live secret of a key, as the primary keeps it. */
typedef struct Secret
{
	const char *secret;			/* "dek" or "index" */
	int32		version;		/* key_versions.id, or the index key's number */
	int32		shown_version;	/* for messages: key_versions.version / index number */
	char	   *ref;			/* primary reference for calls (ARN-pinned) */
	bytea	   *wrapped;
	bytea	   *check;
} Secret;

static bool
wrapping_tables_exist(void)
{
	Oid			nsp = get_namespace_oid(KEYRING_SCHEMA, true);

	return OidIsValid(nsp) &&
		OidIsValid(get_relname_relid("key_wrappings", nsp)) &&
		OidIsValid(get_relname_relid("wrapped_keys", nsp));
}

static char *
col_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static bytea *
col_bytea(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : DatumGetByteaPCopy(d);
}

static int32
col_int(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/* "<scheme>:<arn>" when the KMS reported an ARN, else the stored reference. */
static char *
pinned_ref(const char *stored, const char *arn)
{
	const char *colon;

	if (stored == NULL || arn == NULL || (colon = strchr(stored, ':')) == NULL)
		return stored ? pstrdup(stored) : NULL;
	return psprintf("%.*s:%s", (int) (colon - stored), stored, arn);
}

static void
run(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret < 0)
		elog(ERROR, "keyring statement failed: %s", SPI_result_code_string(ret));
}

/* Inside SPI: the additional wrappings of a key, by number (palloc'd in the caller's context). */
static int
fetch_wrappings(const char *name, Wrapping **out, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	MemoryContext old;
	uint64		i;
	int			n;

	run("SELECT wrapping, kind, kms_key, public_key, fingerprint"
		"  FROM " KEYRING_SCHEMA ".key_wrappings"
		" WHERE key_name OPERATOR(pg_catalog.=) $1 ORDER BY wrapping",
		1, types, values, NULL);
	n = (int) SPI_processed;
	old = MemoryContextSwitchTo(cxt);
	*out = palloc0(sizeof(Wrapping) * Max(n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *kind = col_text(tup, desc, 2);

		(*out)[i].wrapping = col_int(tup, desc, 1);
		(*out)[i].escrow = strcmp(kind, "escrow") == 0;
		(*out)[i].kms_key = col_text(tup, desc, 3);
		(*out)[i].public_key = col_bytea(tup, desc, 4);
		(*out)[i].fingerprint = col_bytea(tup, desc, 5);
	}
	MemoryContextSwitchTo(old);
	return n;
}

/* The region of an "aws-kms:arn:<partition>:kms:<region>:..." reference, or NULL. */
static char *
aws_arn_region(const char *ref)
{
	const char *p;
	const char *end;

	if (strncmp(ref, "aws-kms:arn:", 12) != 0)
		return NULL;
	p = ref + 12;
	if ((p = strchr(p, ':')) == NULL || (p = strchr(p + 1, ':')) == NULL)
		return NULL;
	p++;
	if ((end = strchr(p, ':')) == NULL)
		return NULL;
	return pnstrdup(p, end - p);
}

/* Are two AWS references ARNs of different regions (ReEncrypt cannot cross them)? */
static bool
aws_regions_differ(const char *a, const char *b)
{
	char	   *ra = aws_arn_region(a);
	char	   *rb = aws_arn_region(b);

	return ra != NULL && rb != NULL && strcmp(ra, rb) != 0;
}

/* RSA-OAEP-wrap a 32-byte secret under an escrow public key (palloc'd bytea). */
static bytea *
escrow_wrap(const bytea *der, const uint8 *plaintext)
{
	uint8		out[PGCK_ESCROW_MAX_WRAPPED];
	size_t		len = 0;
	PgckEscrowStatus st;
	bytea	   *b;

	st = pgck_escrow_wrap((const uint8 *) VARDATA_ANY(der), VARSIZE_ANY_EXHDR(der),
						  plaintext, PGCK_DEK_LEN, out, sizeof(out), &len);
	if (st != PGCK_ESCROW_OK)
		ereport(ERROR,
				(errcode(st == PGCK_ESCROW_CRYPTO ? PGCK_ERRCODE_KMS_FAILURE : PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("could not wrap a key under the escrow public key"),
				 errdetail("%s", pgck_escrow_status_text(st))));
	b = palloc(VARHDRSZ + len);
	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), out, len);
	return b;
}

/*
 * Unwrap a secret here (through the primary, with its fallbacks) into locked
 * memory, wrap it under w (escrow: RSA-OAEP; KMS: new_p's wrap_data_key),
 * and wipe it.
 */
static bytea *
unwrap_and_wrap(const Wrapping *w, const char *name, const char *kms_context, const Secret *s,
				const char *what, const PgckKmsProvider *new_p, const char *new_rest,
				char **arn_out)
{
	uint8	   *slot = pgck_locked_alloc();
	bytea	   *volatile blob = NULL;

	PG_TRY();
	{
		pgck_keyring_unwrap(s->ref, kms_context, s->wrapped, s->check, what, name,
							s->shown_version, slot);
		if (w->escrow)
			blob = escrow_wrap(w->public_key, slot);
		else
			blob = pgck_kms_wrap_data_key(new_p, new_rest, kms_context, slot, PGCK_DEK_LEN, arn_out);
	}
	PG_FINALLY();
	{
		pgck_locked_free(slot);
	}
	PG_END_TRY();
	return blob;
}

/*
 * The blob of one secret under one wrapping.  plaintext may be NULL: it is
 * then unwrapped here (through the primary, with its fallbacks) only when
 * needed -- an escrow key, a KMS key of another provider or another AWS
 * region -- into locked memory that is wiped before return.  *arn_out: the
 * ARN the KMS reported.
 */
static bytea *
make_blob(const Wrapping *w, const char *name, const char *kms_context, const Secret *s,
		  const uint8 *plaintext, char **arn_out)
{
	const char *what = strcmp(s->secret, "dek") == 0 ? "data key" : "blind-index key";
	const PgckKmsProvider *new_p = NULL;
	const char *new_rest = NULL;

	*arn_out = NULL;
	if (!w->escrow)
	{
		const char *old_rest;
		const PgckKmsProvider *old_p = pgck_kms_provider_for(s->ref, &old_rest);

		new_p = pgck_kms_provider_for(w->kms_key, &new_rest);

		/*
		 * Within one provider the KMS re-wraps (AWS ReEncrypt: no plaintext
		 * here), except between AWS regions: ReEncrypt is regional, so the
		 * secret is decrypted in its region and encrypted in the other.
		 */
		if (old_p == new_p && !aws_regions_differ(s->ref, w->kms_key))
			return pgck_keyring_rewrap_blob(s->ref, w->kms_key, kms_context, s->wrapped,
											s->check, what, name, s->shown_version, arn_out);
		if (new_p->wrap_data_key == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("the %s provider cannot wrap a data key it did not make", new_p->scheme)));
		if (plaintext != NULL)
			return pgck_kms_wrap_data_key(new_p, new_rest, kms_context, plaintext, PGCK_DEK_LEN, arn_out);
	}
	else if (plaintext != NULL)
		return escrow_wrap(w->public_key, plaintext);
	return unwrap_and_wrap(w, name, kms_context, s, what, new_p, new_rest, arn_out);
}

/* Inside SPI: store one blob. */
static void
insert_blob(const char *name, int32 wrapping, const Secret *s, bytea *blob, const char *arn)
{
	Oid			types[7] = {TEXTOID, INT4OID, TEXTOID, INT4OID, BYTEAOID, TEXTOID, BYTEAOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(wrapping);
	values[2] = CStringGetTextDatum(s->secret);
	values[3] = Int32GetDatum(s->version);
	values[4] = PointerGetDatum(blob);
	if (arn != NULL)
		values[5] = CStringGetTextDatum(arn);
	else
		nulls[5] = 'n';
	values[6] = PointerGetDatum(s->check);
	run("INSERT INTO " KEYRING_SCHEMA ".wrapped_keys"
		" (key_name, wrapping, secret, version, wrapped, kms_key_arn, key_check)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7)",
		7, types, values, nulls);
}

void
pgck_wrappings_wrap_new(const char *name, const char *kms_context, const char *secret,
						int32 version, const char *primary_ref, const bytea *primary_blob,
						const uint8 *plaintext, const bytea *check)
{
	Wrapping   *ws;
	int			n;
	int			i;
	Secret		s;

	if (!wrapping_tables_exist())
		return;
	n = fetch_wrappings(name, &ws, CurrentMemoryContext);
	s.secret = secret;
	s.version = version;
	s.shown_version = version;
	s.ref = (char *) primary_ref;
	s.wrapped = (bytea *) primary_blob;
	s.check = (bytea *) check;
	for (i = 0; i < n; i++)
	{
		char	   *arn = NULL;
		bytea	   *blob = make_blob(&ws[i], name, kms_context, &s, plaintext, &arn);

		insert_blob(name, ws[i].wrapping, &s, blob, arn);
	}
}

/*
 * Inside SPI: lock key name's row (serializing with rotations), and list its
 * live secrets; ereports 42704 for no such key or a destroyed one.
 */
static int
lock_key_secrets(const char *name, bool lock, MemoryContext cxt,
				 char **kms_context_out, char **kms_key_out, Secret **out)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	HeapTuple	tup;
	TupleDesc	desc;
	MemoryContext old;
	Secret	   *ss;
	int			n = 0;
	uint64		i;
	char	   *index_ref;
	int32		index_version;
	bytea	   *cur;
	bytea	   *prev;
	bytea	   *cur_check;
	bytea	   *prev_check;
	char	   *cur_arn;
	char	   *prev_arn;

	run(lock ?
		"SELECT kms_context::pg_catalog.text, kms_key, index_key_version, index_key_wrapped,"
		"       index_key_check, prev_index_key_wrapped, prev_index_key_check, index_kms_key,"
		"       index_kms_key_arn, prev_index_kms_key_arn"
		"  FROM " KEYRING_SCHEMA ".keys"
		" WHERE key_name OPERATOR(pg_catalog.=) $1 AND destroyed IS NULL FOR UPDATE" :
		"SELECT kms_context::pg_catalog.text, kms_key, index_key_version, index_key_wrapped,"
		"       index_key_check, prev_index_key_wrapped, prev_index_key_check, index_kms_key,"
		"       index_kms_key_arn, prev_index_kms_key_arn"
		"  FROM " KEYRING_SCHEMA ".keys"
		" WHERE key_name OPERATOR(pg_catalog.=) $1 AND destroyed IS NULL",
		1, types, values, NULL);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
				 errmsg("the key name does not name a key in the keyring, or the key was destroyed"),
				 errdetail("The name is not repeated here: it may have been a value by mistake (check the order of the arguments).")));
	old = MemoryContextSwitchTo(cxt);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	*kms_context_out = col_text(tup, desc, 1);
	*kms_key_out = col_text(tup, desc, 2);
	index_version = col_int(tup, desc, 3);
	cur = col_bytea(tup, desc, 4);
	cur_check = col_bytea(tup, desc, 5);
	prev = col_bytea(tup, desc, 6);
	prev_check = col_bytea(tup, desc, 7);
	index_ref = col_text(tup, desc, 8);
	cur_arn = col_text(tup, desc, 9);
	prev_arn = col_text(tup, desc, 10);
	MemoryContextSwitchTo(old);

	run("SELECT id, version, kms_key, kms_key_arn, wrapped_dek, key_check"
		"  FROM " KEYRING_SCHEMA ".key_versions"
		" WHERE key_name OPERATOR(pg_catalog.=) $1 AND wrapped_dek IS NOT NULL ORDER BY id",
		1, types, values, NULL);
	old = MemoryContextSwitchTo(cxt);
	ss = palloc0(sizeof(Secret) * (SPI_processed + 2));
	for (i = 0; i < SPI_processed; i++)
	{
		tup = SPI_tuptable->vals[i];
		desc = SPI_tuptable->tupdesc;
		ss[n].secret = "dek";
		ss[n].version = col_int(tup, desc, 1);
		ss[n].shown_version = col_int(tup, desc, 2);
		ss[n].ref = pinned_ref(col_text(tup, desc, 3), col_text(tup, desc, 4));
		ss[n].wrapped = col_bytea(tup, desc, 5);
		ss[n].check = col_bytea(tup, desc, 6);
		n++;
	}
	if (cur != NULL)
	{
		ss[n].secret = "index";
		ss[n].version = ss[n].shown_version = index_version;
		ss[n].ref = pinned_ref(index_ref, cur_arn);
		ss[n].wrapped = cur;
		ss[n].check = cur_check;
		n++;
	}
	if (prev != NULL)
	{
		ss[n].secret = "index";
		ss[n].version = ss[n].shown_version = index_version - 1;
		ss[n].ref = pinned_ref(index_ref, prev_arn);
		ss[n].wrapped = prev;
		ss[n].check = prev_check;
		n++;
	}
	MemoryContextSwitchTo(old);
	*out = ss;
	return n;
}

static void
require_tables(void)
{
	if (!wrapping_tables_exist())
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("additional wrappings need the pgcrypt_kms 0.3.0 keyring"),
				 errhint("Run ALTER EXTENSION pgcrypt_kms UPDATE.")));
}

/* Inside SPI: the next wrapping number of a key. */
static int32
next_wrapping(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	run("SELECT COALESCE(pg_catalog.max(wrapping), 0) OPERATOR(pg_catalog.+) 1"
		"  FROM " KEYRING_SCHEMA ".key_wrappings WHERE key_name OPERATOR(pg_catalog.=) $1",
		1, types, values, NULL);
	return col_int(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Inside SPI: wrap every secret under the wrapping just inserted. */
static void
wrap_existing(const char *name, const char *kms_context, const Wrapping *w,
			  const Secret *ss, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		char	   *arn = NULL;
		bytea	   *blob = make_blob(w, name, kms_context, &ss[i], NULL, &arn);

		insert_blob(name, w->wrapping, &ss[i], blob, arn);
	}
}

/*
 * kms_add_wrapping(key_name, kms_key) → the new wrapping's number
 *
 * Wraps every live secret of the key under another KMS master key (same
 * provider: ReEncrypt, no plaintext here; another provider: unwrapped and
 * wrapped here).  Later secrets get it at their creation.
 */
PG_FUNCTION_INFO_V1(pgck_kms_add_wrapping);
Datum
pgck_kms_add_wrapping(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *kms_key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	PgckOwnerScope scope;
	volatile int32 number = 0;
	const char *rest;
	const PgckKmsProvider *provider;

	require_tables();
	provider = pgck_kms_provider_for(kms_key, &rest);
	pgck_keyring_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[3] = {TEXTOID, INT4OID, TEXTOID};
		Datum		values[3];
		char	   *kms_context;
		char	   *primary;
		Secret	   *ss;
		int			n;
		Wrapping	w;

		SPI_connect();
		n = lock_key_secrets(name, true, CurrentMemoryContext, &kms_context, &primary, &ss);
		if (strcmp(primary, kms_key) == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("\"%s\" is already the primary KMS key of key \"%s\"", kms_key, name),
					 errhint("An additional wrapping is another KMS key (another region or account).")));
		values[0] = CStringGetTextDatum(name);
		values[2] = CStringGetTextDatum(kms_key);
		run("SELECT 1 FROM " KEYRING_SCHEMA ".key_wrappings"
			" WHERE key_name OPERATOR(pg_catalog.=) $1 AND kms_key OPERATOR(pg_catalog.=) $3",
			3, types, values, NULL);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("key \"%s\" already has a wrapping under \"%s\"", name, kms_key)));
		if (provider->check_key != NULL)
			pgck_kms_check_key(provider, rest);
		number = next_wrapping(name);
		values[1] = Int32GetDatum(number);
		run("INSERT INTO " KEYRING_SCHEMA ".key_wrappings (key_name, wrapping, kind, kms_key)"
			" VALUES ($1, $2, 'kms', $3)", 3, types, values, NULL);
		memset(&w, 0, sizeof(w));
		w.wrapping = number;
		w.kms_key = kms_key;
		wrap_existing(name, kms_context, &w, ss, n);
		SPI_finish();
	}
	PG_FINALLY();
	{
		pgck_keyring_scope_leave(&scope);
	}
	PG_END_TRY();
	PG_RETURN_INT32(number);
}

/*
 * kms_add_escrow_key(key_name, public_key_pem) → the new wrapping's number
 *
 * An offline escrow wrapping: RSA-OAEP-SHA-256 under an RSA public key of
 * 3072 bits or more (PEM "PUBLIC KEY").  Every live secret is unwrapped here
 * (locked memory), wrapped, wiped.  The PEM text is never echoed: a private
 * key pasted by mistake must not reach the log.
 */
PG_FUNCTION_INFO_V1(pgck_kms_add_escrow_key);
Datum
pgck_kms_add_escrow_key(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *pem = PG_GETARG_TEXT_PP(1);
	PgckOwnerScope scope;
	volatile int32 number = 0;
	uint8	   *der = NULL;
	size_t		der_len = 0;
	int			bits = 0;
	uint8		fp[PGCK_ESCROW_FP_LEN];
	PgckEscrowStatus st;
	bytea	   *der_b;
	bytea	   *fp_b;

	require_tables();
	st = pgck_escrow_parse_pem(VARDATA_ANY(pem), VARSIZE_ANY_EXHDR(pem), &der, &der_len,
							   &bits, fp);
	if (st != PGCK_ESCROW_OK)
		ereport(ERROR,
				(errcode(st == PGCK_ESCROW_CRYPTO ? PGCK_ERRCODE_KMS_FAILURE : PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("the escrow key must be an RSA public key of at least %d bits in PEM form",
						PGCK_ESCROW_MIN_BITS),
				 errdetail("%s", pgck_escrow_status_text(st)),
				 errhint("Make one with \"openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -aes-256-cbc -out escrow.pem\" and pass the output of \"openssl pkey -in escrow.pem -pubout\"; never the private key.")));
	der_b = palloc(VARHDRSZ + der_len);
	SET_VARSIZE(der_b, VARHDRSZ + der_len);
	memcpy(VARDATA(der_b), der, der_len);
	free(der);
	fp_b = palloc(VARHDRSZ + PGCK_ESCROW_FP_LEN);
	SET_VARSIZE(fp_b, VARHDRSZ + PGCK_ESCROW_FP_LEN);
	memcpy(VARDATA(fp_b), fp, PGCK_ESCROW_FP_LEN);

	pgck_keyring_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[4] = {TEXTOID, INT4OID, BYTEAOID, BYTEAOID};
		Datum		values[4];
		char	   *kms_context;
		char	   *primary;
		Secret	   *ss;
		int			n;
		Wrapping	w;

		SPI_connect();
		n = lock_key_secrets(name, true, CurrentMemoryContext, &kms_context, &primary, &ss);
		values[0] = CStringGetTextDatum(name);
		values[3] = PointerGetDatum(fp_b);
		run("SELECT 1 FROM " KEYRING_SCHEMA ".key_wrappings"
			" WHERE key_name OPERATOR(pg_catalog.=) $1 AND fingerprint OPERATOR(pg_catalog.=) $4",
			4, types, values, NULL);
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("key \"%s\" already has a wrapping under this escrow key", name)));
		number = next_wrapping(name);
		values[1] = Int32GetDatum(number);
		values[2] = PointerGetDatum(der_b);
		run("INSERT INTO " KEYRING_SCHEMA ".key_wrappings"
			" (key_name, wrapping, kind, public_key, fingerprint)"
			" VALUES ($1, $2, 'escrow', $3, $4)", 4, types, values, NULL);
		memset(&w, 0, sizeof(w));
		w.wrapping = number;
		w.escrow = true;
		w.public_key = der_b;
		w.fingerprint = fp_b;
		wrap_existing(name, kms_context, &w, ss, n);
		SPI_finish();
	}
	PG_FINALLY();
	{
		pgck_keyring_scope_leave(&scope);
	}
	PG_END_TRY();
	PG_RETURN_INT32(number);
}

/* kms_remove_wrapping(key_name, wrapping): the wrapping and (trigger) its blobs. */
PG_FUNCTION_INFO_V1(pgck_kms_remove_wrapping);
Datum
pgck_kms_remove_wrapping(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		number = PG_GETARG_INT32(1);
	PgckOwnerScope scope;

	require_tables();
	pgck_keyring_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[2] = {TEXTOID, INT4OID};
		Datum		values[2];

		values[0] = CStringGetTextDatum(name);
		values[1] = Int32GetDatum(number);
		SPI_connect();
		/* serialize with rotations, which wrap under every wrapping */
		run("SELECT 1 FROM " KEYRING_SCHEMA ".keys WHERE key_name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
			1, types, values, NULL);
		run("DELETE FROM " KEYRING_SCHEMA ".key_wrappings"
			" WHERE key_name OPERATOR(pg_catalog.=) $1 AND wrapping OPERATOR(pg_catalog.=) $2",
			2, types, values, NULL);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the key has no wrapping number %d", number)));
		SPI_finish();
	}
	PG_FINALLY();
	{
		pgck_keyring_scope_leave(&scope);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}

/*
 * Try to unwrap one blob with one KMS reference (no fallback) and compare
 * its key-check value; in a subtransaction, so a refusal is a result.
 * Returns NULL on success, else "SQLSTATE xxxxx: message" (palloc'd).
 */
static char *
try_unwrap(const char *ref, const char *kms_context, const bytea *blob, const bytea *check)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	uint8	   *slot = pgck_locked_alloc();
	char	   *volatile result = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		const char *rest;
		const PgckKmsProvider *p = pgck_kms_provider_for(ref, &rest);
		char	   *arn = NULL;
		uint8		got[PGCK_KEY_CHECK_LEN];

		pgck_kms_decrypt_data_key(p, rest, kms_context, blob, slot, PGCK_DEK_LEN, &arn);
		if (!pgck_key_check(slot, got) || check == NULL ||
			VARSIZE_ANY_EXHDR(check) != PGCK_KEY_CHECK_LEN ||
			!pgck_equal_ct(got, (const uint8 *) VARDATA_ANY(check), PGCK_KEY_CHECK_LEN))
			result = pstrdup("the unwrapped key does not match its key-check value");
		pgck_subxact_release(cxt, owner);
	}
	PG_CATCH();
	{
		ErrorData  *edata = pgck_subxact_abort(cxt, owner);

		if (pgck_error_ends_statement(edata))
		{
			pgck_locked_free(slot);
			ReThrowError(edata);
		}
		result = psprintf("SQLSTATE %s: %s", unpack_sql_state(edata->sqlerrcode), edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgck_locked_free(slot);
	return result;
}

/* An escrow blob's form: NULL if well formed, else why not. */
static const char *
escrow_form(const Wrapping *w, const bytea *blob)
{
	int			bits = 0;
	uint8		fp[PGCK_ESCROW_FP_LEN];
	PgckEscrowStatus st;

	st = pgck_escrow_check_der((const uint8 *) VARDATA_ANY(w->public_key),
							   VARSIZE_ANY_EXHDR(w->public_key), &bits);
	if (st != PGCK_ESCROW_OK)
		return pgck_escrow_status_text(st);
	if (!pgck_escrow_fingerprint((const uint8 *) VARDATA_ANY(w->public_key),
								 VARSIZE_ANY_EXHDR(w->public_key), fp) ||
		w->fingerprint == NULL || VARSIZE_ANY_EXHDR(w->fingerprint) != PGCK_ESCROW_FP_LEN ||
		memcmp(fp, VARDATA_ANY(w->fingerprint), PGCK_ESCROW_FP_LEN) != 0)
		return "The stored fingerprint is not the SHA-256 of the stored public key.";
	if (VARSIZE_ANY_EXHDR(blob) != (size_t) (bits + 7) / 8)
		return "The blob's length is not the public key's modulus length.";
	return NULL;
}

/*
 * kms_verify_wrappings(key_name) → one row per live secret and wrapping
 * (wrapping 0 = the primary): status 'ok' (unwrapped and matched its
 * key-check value), 'failed' (detail: SQLSTATE and message), 'missing' (no
 * blob of the secret under the wrapping), 'unverifiable' (an escrow blob
 * that is well formed and whose public key matches its fingerprint: the
 * private key is offline, so only the drill with tools/pgck_recover.py can
 * show that it decrypts) or 'malformed'.  Makes one KMS call per KMS blob.
 */
PG_FUNCTION_INFO_V1(pgck_kms_verify_wrappings);
Datum
pgck_kms_verify_wrappings(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext cxt;
	PgckOwnerScope scope;
	char	   *kms_context = NULL;
	char	   *primary = NULL;
	Secret	   *ss = NULL;
	Wrapping   *ws = NULL;
	int			nsecrets = 0;
	int			nwrappings = 0;
	bytea	  **blobs = NULL;
	int			i;
	int			j;

	require_tables();
	InitMaterializedSRF(fcinfo, 0);
	cxt = CurrentMemoryContext;
	pgck_keyring_scope_enter(&scope);
	PG_TRY();
	{
		Oid			types[4] = {TEXTOID, INT4OID, TEXTOID, INT4OID};
		Datum		values[4];

		SPI_connect();
		nsecrets = lock_key_secrets(name, false, cxt, &kms_context, &primary, &ss);
		nwrappings = fetch_wrappings(name, &ws, cxt);
		blobs = MemoryContextAllocZero(cxt, sizeof(bytea *) * Max(nsecrets * nwrappings, 1));
		values[0] = CStringGetTextDatum(name);
		for (i = 0; i < nsecrets; i++)
			for (j = 0; j < nwrappings; j++)
			{
				values[1] = Int32GetDatum(ws[j].wrapping);
				values[2] = CStringGetTextDatum(ss[i].secret);
				values[3] = Int32GetDatum(ss[i].version);
				run("SELECT wrapped FROM " KEYRING_SCHEMA ".wrapped_keys"
					" WHERE key_name OPERATOR(pg_catalog.=) $1 AND wrapping OPERATOR(pg_catalog.=) $2"
					"   AND secret OPERATOR(pg_catalog.=) $3 AND version OPERATOR(pg_catalog.=) $4",
					4, types, values, NULL);
				if (SPI_processed == 1)
				{
					MemoryContext old = MemoryContextSwitchTo(cxt);

					blobs[i * nwrappings + j] = col_bytea(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1);
					MemoryContextSwitchTo(old);
				}
			}
		SPI_finish();
	}
	PG_FINALLY();
	{
		pgck_keyring_scope_leave(&scope);
	}
	PG_END_TRY();

	for (i = 0; i < nsecrets; i++)
	{
		for (j = -1; j < nwrappings; j++)
		{
			Datum		values[8];
			bool		nulls[8] = {false, false, false, false, false, false, false, false};
			const char *status;
			char	   *detail = NULL;

			values[0] = CStringGetTextDatum(name);
			values[1] = CStringGetTextDatum(ss[i].secret);
			values[2] = Int32GetDatum(ss[i].shown_version);
			if (j < 0)
			{
				values[3] = Int32GetDatum(0);
				values[4] = CStringGetTextDatum("primary");
				values[5] = CStringGetTextDatum(ss[i].ref);
				detail = try_unwrap(ss[i].ref, kms_context, ss[i].wrapped, ss[i].check);
				status = detail == NULL ? "ok" : "failed";
			}
			else
			{
				const Wrapping *w = &ws[j];
				bytea	   *blob = blobs[i * nwrappings + j];

				values[3] = Int32GetDatum(w->wrapping);
				values[4] = CStringGetTextDatum(w->escrow ? "escrow" : "kms");
				if (w->escrow)
					nulls[5] = true;
				else
					values[5] = CStringGetTextDatum(w->kms_key);
				if (blob == NULL)
				{
					status = "missing";
					detail = pstrdup("No blob of this secret under this wrapping.");
				}
				else if (w->escrow)
				{
					const char *why = escrow_form(w, blob);

					status = why == NULL ? "unverifiable" : "malformed";
					detail = pstrdup(why != NULL ? why :
									 "Well formed and its public key matches the fingerprint; it cannot be checked without the private key, which is offline: run the drill with tools/pgck_recover.py.");
				}
				else
				{
					detail = try_unwrap(w->kms_key, kms_context, blob, ss[i].check);
					status = detail == NULL ? "ok" : "failed";
				}
			}
			values[6] = CStringGetTextDatum(status);
			if (detail != NULL)
				values[7] = CStringGetTextDatum(detail);
			else
				nulls[7] = true;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
