/*-------------------------------------------------------------------------
 *
 * enc_typed.c
 *		Typed values, order-revealing terms and named blind indexes (0.3.0):
 *		what a value carries in its envelope's extension fields besides the
 *		ciphertext, and the SQL functions over them.
 *
 *	 kms_encrypt(int8 | numeric | date | timestamptz | bytea, key [, context])
 *	 kms_decrypt_int8(enc_text [, context]), ..._numeric, _date,
 *		_timestamptz, _bytea; kms_plaintext_type(enc_text)
 *	 kms_ore(enc_text) → kms_ore_term (the stored term, no key: IMMUTABLE)
 *	 kms_ore(value, key) → kms_ore_term (the probe)
 *	 kms_ore_term: its I/O and the B-tree comparison
 *	 kms_blind_tag(enc_text, index) → bytea (the stored tag, no key)
 *	 kms_blind_tag(text | bytea, key, index) → bytea (the probe)
 *
 * A key's extra indexes are rows of pgcrypt_kms.key_indexes (an "order"
 * index makes ORE terms; the others are named blind indexes).  They are read
 * with a heap scan (no SPI, no privilege on the keyring schema needed: like
 * the keyring, the table is the extension's and only read here), once per
 * statement and key; the keys derived from the key's index key for them
 * (ore.h; named_key() below) live as long as that memo, i.e. one statement,
 * and are wiped when it is replaced, so kms_flush_cache() and the cache TTL
 * govern them as they govern the index key they come from.
 *
 * Plaintext bytes of a typed value: int8 and timestamptz 8 bytes, date 4
 * bytes, big-endian two's complement; numeric its numeric_out() text (the
 * scale is kept: 1.50 decrypts as 1.50); bytea its bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "blind_tag.h"
#include "enc_typed.h"
#include "envelope.h"
#include "keycache.h"
#include "keymem.h"
#include "ore.h"
#include "pgck_errcodes.h"

#define MAX_NAMED_INDEXES	16
#define MEMO_SLOTS			8

typedef enum NamedTransform
{
	NT_EXACT,
	NT_LOWER,
	NT_EMAIL,
	NT_DIGITS,
	NT_DOMAIN,
	NT_PREFIX,
	NT_SUFFIX
} NamedTransform;

static const char *const nt_names[] = {"exact", "lower", "email", "digits", "domain", "prefix", "suffix"};

typedef struct NamedIndex
{
	char		name[PGCK_INDEX_NAME_MAX + 1];
	NamedTransform transform;
	int			param;
	int			bits;
	PgckHmac   *mac;			/* under named_key(): NULL until first needed */
	PgckHmac   *mac_prev;		/* of the previous index key, during its rotation */
} NamedIndex;

/* One key's extra indexes, for one statement. */
typedef struct KeyIndexes
{
	bool		used;
	char		key_name[PGCK_KEY_NAME_MAX + 1];
	TimestampTz statement;
	uint64		epoch;
	const uint8 *index_key;		/* the cache slot the derived keys came from */
	int			index_key_version;
	bool		order;
	PgckOreKey	ore;			/* prf NULL until first needed */
	PgckOreKey	ore_prev;		/* of the previous index key, during its rotation */
	int			n;
	NamedIndex	idx[MAX_NAMED_INDEXES];
	uint64		load_id;		/* which load of this slot (a PgckExtHint's check) */
} KeyIndexes;

static KeyIndexes memo[MEMO_SLOTS];
static int	memo_next;
static uint64 memo_loads;

static void
memo_release(KeyIndexes *m)
{
	int			i;

	pgck_ore_key_free(&m->ore);
	pgck_ore_key_free(&m->ore_prev);
	for (i = 0; i < m->n; i++)
	{
		pgck_hmac_free(m->idx[i].mac);
		m->idx[i].mac = NULL;
		pgck_hmac_free(m->idx[i].mac_prev);
		m->idx[i].mac_prev = NULL;
	}
	m->n = 0;
	m->used = false;
}

/*
 * Wipe the keys every memo slot derived (order and named-index keys): at
 * commit with the key cache's sweep of expired keys, and at kms_flush_cache(),
 * so that a derived key does not outlive the index key it came from.  A slot
 * serves one statement, and hints check that their slot is still in use, so
 * nothing refers to a slot between statements.
 */
void
pgck_enc_typed_release_memos(void)
{
	int			i;

	for (i = 0; i < MEMO_SLOTS; i++)
		if (memo[i].used)
			memo_release(&memo[i]);
}

/* Read key_indexes rows of key k into m (heap scan; the table is tiny). */
static void
load_indexes(PgckCachedKey *k, KeyIndexes *m)
{
	Oid			nsp = get_namespace_oid("pgcrypt_kms", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("key_indexes", nsp) : InvalidOid;
	Relation	rel;
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;

	m->order = false;
	m->n = 0;
	if (!OidIsValid(relid))
		return;					/* the 0.2.0 library state: no extra indexes */
	rel = table_open(relid, AccessShareLock);
	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(k->name));
	snap = RegisterSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot());
	scan = systable_beginscan(rel, InvalidOid, false, snap, 1, &skey);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		char	   *iname = TextDatumGetCString(heap_getattr(tup, 2, desc, &isnull));
		char	   *tname = TextDatumGetCString(heap_getattr(tup, 3, desc, &isnull));
		Datum		param = heap_getattr(tup, 4, desc, &isnull);
		bool		param_null = isnull;
		int			bits = DatumGetInt32(heap_getattr(tup, 5, desc, &isnull));
		NamedIndex *ni;
		int			t;

		if (strcmp(tname, "order") == 0)
		{
			m->order = true;
			continue;
		}
		if (m->n >= MAX_NAMED_INDEXES || strlen(iname) > PGCK_INDEX_NAME_MAX)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KEY_STATE),
					 errmsg("key \"%s\" has more named indexes than pgcrypt_kms supports", k->name),
					 errdetail("A key has at most %d named blind indexes, each named with at most %d characters.",
							   MAX_NAMED_INDEXES, PGCK_INDEX_NAME_MAX),
					 errhint("Drop the indexes the key does not need with kms_drop_index().")));
		ni = &m->idx[m->n];
		for (t = 0; t < (int) lengthof(nt_names); t++)
			if (strcmp(tname, nt_names[t]) == 0)
				break;
		if (t == (int) lengthof(nt_names))
			elog(ERROR, "unknown named index transform \"%s\" in the keyring", tname);
		strlcpy(ni->name, iname, sizeof(ni->name));
		ni->transform = (NamedTransform) t;
		ni->param = param_null ? 0 : DatumGetInt32(param);
		ni->bits = bits;
		ni->mac = NULL;
		ni->mac_prev = NULL;
		m->n++;
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
}

/* The extra indexes of k for this statement. */
static KeyIndexes *
indexes_for(PgckCachedKey *k)
{
	TimestampTz now = pgck_keycache_now();
	KeyIndexes *m;
	int			i;

	for (i = 0; i < MEMO_SLOTS; i++)
	{
		m = &memo[i];
		if (m->used && m->statement == now && m->epoch == pgck_keycache_epoch &&
			m->index_key == k->index_key && m->index_key_version == k->index_key_version &&
			strcmp(m->key_name, k->name) == 0)
			return m;
	}
	m = &memo[memo_next];
	memo_next = (memo_next + 1) % MEMO_SLOTS;
	memo_release(m);
	load_indexes(k, m);
	strlcpy(m->key_name, k->name, sizeof(m->key_name));
	m->statement = now;
	m->epoch = pgck_keycache_epoch;
	m->index_key = k->index_key;
	m->index_key_version = k->index_key_version;
	m->load_id = ++memo_loads;
	m->used = true;
	return m;
}

/*
 * indexes_for() through a call site's hint: the slot it found on an earlier
 * row of this statement, if that slot has not been loaded again since (for
 * another key: MEMO_SLOTS keys in one statement) and the cache epoch is the
 * same (so k and its index key are the entries the slot was loaded for).
 */
static KeyIndexes *
indexes_hinted(PgckCachedKey *k, PgckExtHint *hint)
{
	KeyIndexes *m;

	if (hint != NULL && hint->m != NULL)
	{
		m = (KeyIndexes *) hint->m;
		if (m->used && m->load_id == hint->load_id && hint->epoch == pgck_keycache_epoch &&
			m->index_key == k->index_key && m->index_key_version == k->index_key_version)
			return m;
	}
	m = indexes_for(k);
	if (hint != NULL)
	{
		hint->m = m;
		hint->load_id = m->load_id;
		hint->epoch = pgck_keycache_epoch;
	}
	return m;
}

static void
require_index_key(PgckCachedKey *k)
{
	if (k->index_key == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("key \"%s\" has no index key", k->name),
				 errdetail("Order-revealing terms and named blind indexes are derived from the key's index key; the key was created without a blind index or has been destroyed.")));
}

/*
 * The ORE key derived from index_key (its PRF and key id) into *slot, once
 * per memo.
 */
static const PgckOreKey *
ore_prf_of(PgckCachedKey *k, const uint8 *index_key, PgckOreKey *slot)
{
	if (slot->prf == NULL)
	{
		if (!pgck_ore_key_init(slot, index_key))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not derive the order-revealing key of key \"%s\"", k->name)));
		pgck_keymem_check_heap_keys();
	}
	return slot;
}

static const PgckOreKey *
ore_prf(PgckCachedKey *k, KeyIndexes *m)
{
	require_index_key(k);
	return ore_prf_of(k, k->index_key, &m->ore);
}

/*
 * The ORE key of the previous index key while its rotation is in progress
 * (kms_rotate_index_key until kms_finish_index_rotation), else NULL: the
 * terms values still carry from before the rotation are of that key and of
 * epoch index_key_version - 1.
 */
static const PgckOreKey *
ore_prf_prev(PgckCachedKey *k, KeyIndexes *m)
{
	require_index_key(k);
	if (k->index_key_prev == NULL)
		return NULL;
	return ore_prf_of(k, k->index_key_prev, &m->ore_prev);
}

/*
 * The key of a named index: HKDF-SHA-256(IKM = index key, salt = ASCII
 * "pgcrypt_kms named index v1", info = the index name, a zero byte and the
 * transform as kms_key_indexes shows it, e.g. "first3\0prefix(3)"), so tags
 * of two indexes of one key are unlinkable, none is a tag of the key's own
 * blind index, and a name dropped and added again with another transform
 * gets another key: its old values' tags never match the new probes.
 */
static PgckHmac *
named_mac_of(PgckCachedKey *k, NamedIndex *ni, const uint8 *index_key, PgckHmac **slot)
{
	static const char salt[] = "pgcrypt_kms named index v1";

	if (*slot == NULL)
	{
		uint8		nkey[32];
		char		info[PGCK_INDEX_NAME_MAX + 1 + 32];
		size_t		nlen = strlen(ni->name);
		int			tlen;

		memcpy(info, ni->name, nlen);
		info[nlen] = '\0';
		if (ni->transform == NT_PREFIX || ni->transform == NT_SUFFIX)
			tlen = snprintf(info + nlen + 1, sizeof(info) - nlen - 1, "%s(%d)",
							nt_names[ni->transform], ni->param);
		else
			tlen = snprintf(info + nlen + 1, sizeof(info) - nlen - 1, "%s",
							nt_names[ni->transform]);
		Assert(tlen > 0 && (size_t) tlen < sizeof(info) - nlen - 1);
		if (!pgck_hkdf_sha256((const uint8 *) salt, sizeof(salt) - 1, index_key, 32,
							  (const uint8 *) info, nlen + 1 + tlen, nkey, sizeof(nkey)) ||
			(*slot = pgck_hmac_new(nkey, sizeof(nkey))) == NULL)
		{
			pgck_wipe(nkey, sizeof(nkey));
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not derive the key of index \"%s\" of key \"%s\"", ni->name, k->name)));
		}
		pgck_wipe(nkey, sizeof(nkey));
		pgck_keymem_check_heap_keys();
	}
	return *slot;
}

/*
 * The index's key under the current index key or, with previous, under the
 * previous one while its rotation is in progress (the caller checks
 * k->index_key_prev).
 */
static PgckHmac *
named_mac(PgckCachedKey *k, NamedIndex *ni, bool previous)
{
	require_index_key(k);
	if (previous)
		return named_mac_of(k, ni, k->index_key_prev, &ni->mac_prev);
	return named_mac_of(k, ni, k->index_key, &ni->mac);
}

static int
db_char_len(const char *p)
{
	return pg_mblen(p);
}

/*
 * How prefix(n)/suffix(n) count characters: those of text in the database
 * encoding, as left() and right() do (in LATIN1 the bytes 0x80-0xBF are
 * characters); bytea, and text in a UTF-8 database (the same characters),
 * by the UTF-8 rule of blind_tag.h, so those tags do not depend on the
 * database.
 */
static pgck_char_len_fn
affix_char_len(bool text)
{
	return text && GetDatabaseEncoding() != PG_UTF8 ? db_char_len : NULL;
}

/*
 * The tag of s[0..len) for named index ni into out[PGCK_BLIND_TAG_MAX]; its
 * length.  text: s is text (else bytea).
 */
static size_t
named_tag(PgckCachedKey *k, NamedIndex *ni, bool previous, const char *s, size_t len, bool text,
		  uint8 *out)
{
	char	   *buf = palloc(len + 1);
	size_t		n = 0;
	uint8		mac[PGCK_HMAC_SHA256_LEN];
	bool		ok;
	size_t		tag_len;

	switch (ni->transform)
	{
		case NT_EXACT:
			memcpy(buf, s, len);
			n = len;
			break;
		case NT_LOWER:
			n = pgck_normalize_lower(s, len, buf);
			break;
		case NT_EMAIL:
			n = pgck_normalize_email(s, len, buf);
			break;
		case NT_DIGITS:
			n = pgck_normalize_digits(s, len, buf);
			break;
		case NT_DOMAIN:
			n = pgck_normalize_domain(s, len, buf);
			break;
		case NT_PREFIX:
			n = pgck_transform_prefix(s, len, ni->param, affix_char_len(text), buf);
			break;
		case NT_SUFFIX:
			n = pgck_transform_suffix(s, len, ni->param, affix_char_len(text), buf);
			break;
	}
	ok = pgck_hmac_sha256(named_mac(k, ni, previous), (const uint8 *) buf, n, mac);
	pgck_wipe(buf, len + 1);
	pfree(buf);
	if (!ok)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not compute a blind index tag for key \"%s\"", k->name)));
	tag_len = pgck_blind_tag_truncate(mac, ni->bits, out);
	pgck_wipe(mac, sizeof(mac));
	return tag_len;
}

static int64
get_be64(const uint8 *p)
{
	uint64		u = 0;
	int			i;

	for (i = 0; i < 8; i++)
		u = (u << 8) | p[i];
	return (int64) u;
}

static void
put_be64(uint8 *p, int64 v)
{
	int			i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8) ((uint64) v >> (56 - 8 * i));
}

/*
 * The order-preserving bits of a typed plaintext into bits[]; returns the
 * ORE domain, or 0 for a type without order (text, bytea).  Refuses a
 * numeric outside the encoding's range (22003).
 */
static int
ore_bits(uint8 type, const uint8 *pt, size_t len, uint8 *bits, const char *key_name)
{
	switch (type)
	{
		case PGCK_PT_INT8:
		case PGCK_PT_TIMESTAMPTZ:
			if (len != 8)
				break;
			pgck_ore_int64_bits(get_be64(pt), bits);
			return type == PGCK_PT_INT8 ? PGCK_ORE_INT8 : PGCK_ORE_TIMESTAMPTZ;
		case PGCK_PT_DATE:
			if (len != 4)
				break;
			pgck_ore_int32_bits((int32) (uint32) ((pt[0] << 24) | (pt[1] << 16) | (pt[2] << 8) | pt[3]), bits);
			return PGCK_ORE_DATE;
		case PGCK_PT_NUMERIC:
			switch (pgck_ore_numeric_bits((const char *) pt, len, bits))
			{
				case PGCK_ORE_NUM_OK:
					return PGCK_ORE_NUMERIC;
				case PGCK_ORE_NUM_TOO_PRECISE:
					ereport(ERROR,
							(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
							 errmsg("numeric value has too many significant digits for the order index of key \"%s\"", key_name),
							 errdetail("Order-revealing terms hold numerics of at most %d significant digits.",
									   PGCK_ORE_NUMERIC_DIGITS),
							 errhint("Round the value, e.g. with round(value, scale).")));
					break;
				case PGCK_ORE_NUM_OUT_OF_RANGE:
					ereport(ERROR,
							(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
							 errmsg("numeric value is out of range for the order index of key \"%s\"", key_name),
							 errdetail("Order-revealing terms hold numerics of magnitude from 1e-129 to below 1e127.")));
					break;
				case PGCK_ORE_NUM_SYNTAX:
					break;
			}
			break;
		default:
			return 0;
	}
	elog(ERROR, "malformed typed plaintext");
	return 0;					/* keep the compiler quiet */
}

size_t
pgck_value_ext(PgckCachedKey *k, uint8 plain_type, const uint8 *pt, size_t pt_len, uint8 *out,
			   PgckExtHint *hint)
{
	KeyIndexes *m;
	uint8		term[PGCK_ORE_TERM_MAX];
	size_t		term_len = 0;
	uint8		tags[MAX_NAMED_INDEXES][PGCK_BLIND_TAG_MAX];
	PgckNamedTag named[MAX_NAMED_INDEXES];
	int			ntags = 0;
	int			i;

	if (k->transform == PGCK_BIDX_NONE)
		m = NULL;				/* no index key, so no extra index (kms_add_index refuses) */
	else
		m = indexes_hinted(k, hint);
	if (m != NULL && m->order)
	{
		uint8		bits[PGCK_ORE_MAX_BIT_BYTES];
		int			domain = ore_bits(plain_type, pt, pt_len, bits, k->name);

		if (domain != 0)
			term_len = pgck_ore_encrypt(ore_prf(k, m), domain, (uint8) k->index_key_version,
										bits, term);
		pgck_wipe(bits, sizeof(bits));
		if (domain != 0 && term_len == 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not compute an order-revealing term for key \"%s\"", k->name)));
	}
	/* named blind indexes: over the bytes of text and bytea values */
	if (m != NULL && (plain_type == PGCK_PT_TEXT || plain_type == PGCK_PT_BYTEA))
		for (i = 0; i < m->n; i++)
		{
			named[ntags].name = m->idx[i].name;
			named[ntags].name_len = strlen(m->idx[i].name);
			named[ntags].tag = tags[ntags];
			named[ntags].tag_len = named_tag(k, &m->idx[i], false, (const char *) pt, pt_len,
												 plain_type == PGCK_PT_TEXT, tags[ntags]);
			ntags++;
		}
	return pgck_envelope_write_ext(out, plain_type, term, term_len, named, ntags);
}

/* ---------------------------------------------------------------- typed encrypt / decrypt */

static uint8
plain_type_of(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:			/* widened to int8 by the caller */
		case INT8OID:
			return PGCK_PT_INT8;
		case NUMERICOID:
			return PGCK_PT_NUMERIC;
		case DATEOID:
			return PGCK_PT_DATE;
		case TIMESTAMPTZOID:
			return PGCK_PT_TIMESTAMPTZ;
		case BYTEAOID:
			return PGCK_PT_BYTEA;
	}
	elog(ERROR, "kms_encrypt is not defined for type %u", typid);
	return 0;
}

const char *
pgck_plain_type_name(uint8 t)
{
	static const char *const names[] = {"text", "bytea", "int8", "numeric", "date", "timestamptz"};

	return t <= PGCK_PT_MAX ? names[t] : "unknown";
}

/*
 * The plaintext bytes of a typed datum; *len set.  palloc'd (the caller
 * wipes) except for bytea, whose own bytes are returned.
 */
static const uint8 *
datum_bytes(Datum d, uint8 type, size_t *len, bool *owned)
{
	uint8	   *buf;

	*owned = true;
	switch (type)
	{
		case PGCK_PT_INT8:
		case PGCK_PT_TIMESTAMPTZ:
			buf = palloc(8);
			put_be64(buf, DatumGetInt64(d));
			*len = 8;
			return buf;
		case PGCK_PT_DATE:
			{
				uint32		u = (uint32) DatumGetDateADT(d);

				buf = palloc(4);
				buf[0] = (uint8) (u >> 24);
				buf[1] = (uint8) (u >> 16);
				buf[2] = (uint8) (u >> 8);
				buf[3] = (uint8) u;
				*len = 4;
				return buf;
			}
		case PGCK_PT_NUMERIC:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, d));

				*len = strlen(s);
				return (const uint8 *) s;
			}
		case PGCK_PT_BYTEA:
			{
				bytea	   *b = DatumGetByteaPP(d);

				*owned = false;
				*len = VARSIZE_ANY_EXHDR(b);
				return (const uint8 *) VARDATA_ANY(b);
			}
	}
	elog(ERROR, "unexpected plaintext type %d", type);
	return NULL;
}

/* Encrypt pt and wipe it (when owned) whatever happens.  Not inlined: -Wclobbered. */
static pg_noinline struct varlena *
encrypt_and_wipe(const uint8 *pt, size_t len, bool owned, uint8 type, const text *key,
				 const text *context, FmgrInfo *flinfo)
{
	struct varlena *result = NULL;

	PG_TRY();
	{
		result = pgck_encrypt_value(pt, len, type, key, context, flinfo);
	}
	PG_CATCH();
	{
		if (owned)
			pgck_wipe((void *) pt, len);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (owned)
	{
		pgck_wipe((void *) pt, len);
		pfree((void *) pt);
	}
	return result;
}

PG_FUNCTION_INFO_V1(pgck_kms_encrypt_typed);
Datum
pgck_kms_encrypt_typed(PG_FUNCTION_ARGS)
{
	Oid			argtype;
	Datum		plain;
	uint8		type;
	const uint8 *pt;
	size_t		len;
	bool		owned;
	text	   *context = NULL;

	/* not STRICT, as kms_encrypt(text): NULL encrypts to NULL, a NULL key or context is an error */
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the key name of kms_encrypt must not be null")));
	if (PG_NARGS() > 2)
	{
		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the context of kms_encrypt must not be null"),
					 errhint("Call the form without a context for values that have none.")));
		context = PG_GETARG_TEXT_PP(2);
	}
	argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	type = plain_type_of(argtype);
	/* int2 and int4 are recorded as int8: one tag and one order term per integer */
	if (argtype == INT4OID)
		plain = Int64GetDatum((int64) PG_GETARG_INT32(0));
	else if (argtype == INT2OID)
		plain = Int64GetDatum((int64) PG_GETARG_INT16(0));
	else
		plain = PG_GETARG_DATUM(0);
	pt = datum_bytes(plain, type, &len, &owned);
	PG_RETURN_POINTER(encrypt_and_wipe(pt, len, owned, type, PG_GETARG_TEXT_PP(1), context,
									   fcinfo->flinfo));
}

/* Decrypt value as type want; the plaintext bytes (palloc'd text-like varlena). */
static text *
decrypt_typed(FunctionCallInfo fcinfo, uint8 want)
{
	text	   *context = NULL;

	if (PG_NARGS() > 1)
	{
		if (PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the context of kms_decrypt must not be null"),
					 errhint("Call the form without a context for values that have none.")));
		context = PG_GETARG_TEXT_PP(1);
	}
	return pgck_decrypt_value(PG_GETARG_VARLENA_PP(0), context, want, fcinfo->flinfo);
}

static void
wipe_free(text *plain)
{
	pgck_wipe(VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
	pfree(plain);
}

static void
check_len(text *plain, size_t want)
{
	if (VARSIZE(plain) - VARHDRSZ != want)
	{
		wipe_free(plain);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_VALUE_AUTH),
				 errmsg("malformed typed plaintext"),
				 errdetail("The value authenticated, but its plaintext has the wrong length for its type.")));
	}
}

PG_FUNCTION_INFO_V1(pgck_kms_decrypt_int8);
Datum
pgck_kms_decrypt_int8(PG_FUNCTION_ARGS)
{
	text	   *plain;
	int64		v;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	plain = decrypt_typed(fcinfo, PGCK_PT_INT8);
	check_len(plain, 8);
	v = get_be64((const uint8 *) VARDATA(plain));
	wipe_free(plain);
	PG_RETURN_INT64(v);
}

PG_FUNCTION_INFO_V1(pgck_kms_decrypt_timestamptz);
Datum
pgck_kms_decrypt_timestamptz(PG_FUNCTION_ARGS)
{
	text	   *plain;
	int64		v;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	plain = decrypt_typed(fcinfo, PGCK_PT_TIMESTAMPTZ);
	check_len(plain, 8);
	v = get_be64((const uint8 *) VARDATA(plain));
	wipe_free(plain);
	PG_RETURN_TIMESTAMPTZ(v);
}

PG_FUNCTION_INFO_V1(pgck_kms_decrypt_date);
Datum
pgck_kms_decrypt_date(PG_FUNCTION_ARGS)
{
	text	   *plain;
	const uint8 *p;
	int32		v;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	plain = decrypt_typed(fcinfo, PGCK_PT_DATE);
	check_len(plain, 4);
	p = (const uint8 *) VARDATA(plain);
	v = (int32) (uint32) ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]);
	wipe_free(plain);
	PG_RETURN_DATEADT(v);
}

PG_FUNCTION_INFO_V1(pgck_kms_decrypt_numeric);
Datum
pgck_kms_decrypt_numeric(PG_FUNCTION_ARGS)
{
	text	   *plain;
	char	   *s;
	Datum		result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	plain = decrypt_typed(fcinfo, PGCK_PT_NUMERIC);
	s = text_to_cstring(plain);
	wipe_free(plain);
	result = DirectFunctionCall3(numeric_in, CStringGetDatum(s), ObjectIdGetDatum(InvalidOid),
								 Int32GetDatum(-1));
	pgck_wipe(s, strlen(s));
	pfree(s);
	PG_RETURN_DATUM(result);
}

PG_FUNCTION_INFO_V1(pgck_kms_decrypt_bytea);
Datum
pgck_kms_decrypt_bytea(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	/* the plaintext varlena is a bytea as it is */
	PG_RETURN_BYTEA_P((bytea *) decrypt_typed(fcinfo, PGCK_PT_BYTEA));
}

static void
parse_value(struct varlena *v, PgckEnvelope *env)
{
	PgckEnvelopeStatus st = pgck_envelope_parse((const uint8 *) VARDATA_ANY(v),
												VARSIZE_ANY_EXHDR(v), env);

	if (st != PGCK_ENV_OK)
		ereport(ERROR,
				(errcode(st == PGCK_ENV_UNKNOWN_VERSION ? PGCK_ERRCODE_BAD_LITERAL : PGCK_ERRCODE_VALUE_AUTH),
				 errmsg("malformed enc_text value"),
				 errdetail("%s", pgck_envelope_status_message(st))));
}

/* kms_plaintext_type(enc_text) → text: the type the value records; needs no key. */
PG_FUNCTION_INFO_V1(pgck_kms_plaintext_type);
Datum
pgck_kms_plaintext_type(PG_FUNCTION_ARGS)
{
	PgckEnvelope env;

	parse_value(PG_GETARG_VARLENA_PP(0), &env);
	PG_RETURN_TEXT_P(cstring_to_text(pgck_plain_type_name(env.plain_type)));
}

/* ---------------------------------------------------------------- kms_ore_term */

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bytea *
term_datum(const uint8 *t, size_t len)
{
	bytea	   *r = palloc(VARHDRSZ + len);

	SET_VARSIZE(r, VARHDRSZ + len);
	memcpy(VARDATA(r), t, len);
	return r;
}

PG_FUNCTION_INFO_V1(pgck_ore_term_in);
Datum
pgck_ore_term_in(PG_FUNCTION_ARGS)
{
	const char *s = PG_GETARG_CSTRING(0);
	size_t		len = strlen(s);
	uint8		t[PGCK_ORE_TERM_MAX];
	size_t		n;
	size_t		i;

	if (len < 4 || memcmp(s, "ore:", 4) != 0 || (len - 4) % 2 != 0 ||
		(n = (len - 4) / 2) > sizeof(t))
		goto bad;
	for (i = 0; i < n; i++)
	{
		int			hi = hex_digit(s[4 + 2 * i]);
		int			lo = hex_digit(s[5 + 2 * i]);

		if (hi < 0 || lo < 0)
			goto bad;
		t[i] = (uint8) (hi << 4 | lo);
	}
	if (!pgck_ore_term_valid(t, n))
		goto bad;
	PG_RETURN_BYTEA_P(term_datum(t, n));
bad:
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_BAD_LITERAL),
			 errhidestmt(true), errhidecontext(true),	/* as enc_text_in */
			 errmsg("invalid input syntax for type kms_ore_term"),
			 errdetail("A kms_ore_term literal is \"ore:\" followed by the lower-case hex of a well-formed term.")));
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(pgck_ore_term_out);
Datum
pgck_ore_term_out(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	size_t		n = VARSIZE_ANY_EXHDR(b);
	const uint8 *p = (const uint8 *) VARDATA_ANY(b);
	char	   *out = palloc(4 + 2 * n + 1);
	size_t		i;

	memcpy(out, "ore:", 4);
	for (i = 0; i < n; i++)
	{
		out[4 + 2 * i] = "0123456789abcdef"[p[i] >> 4];
		out[5 + 2 * i] = "0123456789abcdef"[p[i] & 15];
	}
	out[4 + 2 * n] = '\0';
	PG_RETURN_CSTRING(out);
}

PG_FUNCTION_INFO_V1(pgck_ore_term_recv);
Datum
pgck_ore_term_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			len = buf->len - buf->cursor;
	bytea	   *r;

	if (len < 0 || len > PGCK_ORE_TERM_MAX ||
		!pgck_ore_term_valid((const uint8 *) buf->data + buf->cursor, (size_t) len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_BINARY),
				 errmsg("invalid binary kms_ore_term value")));
	r = palloc(VARHDRSZ + len);
	SET_VARSIZE(r, VARHDRSZ + len);
	pq_copymsgbytes(buf, VARDATA(r), len);
	PG_RETURN_BYTEA_P(r);
}

PG_FUNCTION_INFO_V1(pgck_ore_term_send);
Datum
pgck_ore_term_send(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

static int
term_cmp(FunctionCallInfo fcinfo)
{
	bytea	   *a = PG_GETARG_BYTEA_PP(0);
	bytea	   *b = PG_GETARG_BYTEA_PP(1);
	int			c;

	switch (pgck_ore_compare((const uint8 *) VARDATA_ANY(a), VARSIZE_ANY_EXHDR(a),
							 (const uint8 *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), &c))
	{
		case PGCK_ORE_CMP_OK:
			return c;
		case PGCK_ORE_CMP_DOMAINS:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("cannot compare order-revealing terms of different plaintext types"),
					 errhint("Probe with a value of the column's type, e.g. kms_ore(x::date, key) for a date column.")));
			break;
		case PGCK_ORE_CMP_MALFORMED:
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_LITERAL),
					 errmsg("malformed kms_ore_term value")));
			break;
	}
	return 0;
}

PG_FUNCTION_INFO_V1(pgck_ore_term_cmp);
Datum
pgck_ore_term_cmp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(term_cmp(fcinfo));
}

PG_FUNCTION_INFO_V1(pgck_ore_term_lt);
Datum
pgck_ore_term_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(term_cmp(fcinfo) < 0);
}

PG_FUNCTION_INFO_V1(pgck_ore_term_le);
Datum
pgck_ore_term_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(term_cmp(fcinfo) <= 0);
}

PG_FUNCTION_INFO_V1(pgck_ore_term_eq);
Datum
pgck_ore_term_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(term_cmp(fcinfo) == 0);
}

PG_FUNCTION_INFO_V1(pgck_ore_term_ne);
Datum
pgck_ore_term_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(term_cmp(fcinfo) != 0);
}

PG_FUNCTION_INFO_V1(pgck_ore_term_ge);
Datum
pgck_ore_term_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(term_cmp(fcinfo) >= 0);
}

PG_FUNCTION_INFO_V1(pgck_ore_term_gt);
Datum
pgck_ore_term_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(term_cmp(fcinfo) > 0);
}

/* kms_ore(enc_text) → kms_ore_term: the term the value carries; NULL without one. */
PG_FUNCTION_INFO_V1(pgck_kms_ore_value);
Datum
pgck_kms_ore_value(PG_FUNCTION_ARGS)
{
	PgckEnvelope env;

	parse_value(PG_GETARG_VARLENA_PP(0), &env);
	if (env.ore_term == NULL)
		PG_RETURN_NULL();
	if (!pgck_ore_term_valid(env.ore_term, env.ore_term_len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_VALUE_AUTH),
				 errmsg("malformed enc_text value"),
				 errdetail("The value's order-revealing term is malformed.")));
	PG_RETURN_BYTEA_P(term_datum(env.ore_term, env.ore_term_len));
}

/*
 * kms_ore(value, key) → kms_ore_term: the probe of a plaintext.
 * kms_ore(value, key, previous => true): the probe under the previous index
 * key while an index key rotation is in progress (NULL when none is), so a
 * range during the transition window is the OR of two index ranges.
 */
PG_FUNCTION_INFO_V1(pgck_kms_ore_probe);
Datum
pgck_kms_ore_probe(PG_FUNCTION_ARGS)
{
	Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, 0);
	char	   *key_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		previous = PG_NARGS() > 2 && PG_GETARG_BOOL(2);
	PgckCachedKey *k = pgck_keycache_key(key_name);
	KeyIndexes *m = k->transform == PGCK_BIDX_NONE ? NULL : indexes_for(k);
	const PgckOreKey *prf;
	uint8		epoch;
	uint8		bits[PGCK_ORE_MAX_BIT_BYTES];
	uint8		term[PGCK_ORE_TERM_MAX];
	size_t		term_len;
	int			domain;

	if (m == NULL || !m->order)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("key \"%s\" has no order index", k->name),
				 errhint("Create the key with kms_create_key(..., order_index => true), or add one with kms_add_index(key, 'order', 'order').")));
	if (previous)
	{
		prf = ore_prf_prev(k, m);
		if (prf == NULL)
		{
			pfree(key_name);
			PG_RETURN_NULL();	/* no rotation in progress: nothing to probe */
		}
		epoch = (uint8) (k->index_key_version - 1);
	}
	else
	{
		prf = ore_prf(k, m);
		epoch = (uint8) k->index_key_version;
	}
	switch (typid)
	{
		case INT2OID:
			pgck_ore_int64_bits(PG_GETARG_INT16(0), bits);
			domain = PGCK_ORE_INT8;
			break;
		case INT4OID:
			pgck_ore_int64_bits(PG_GETARG_INT32(0), bits);
			domain = PGCK_ORE_INT8;
			break;
		case INT8OID:
			pgck_ore_int64_bits(PG_GETARG_INT64(0), bits);
			domain = PGCK_ORE_INT8;
			break;
		case TIMESTAMPTZOID:
			pgck_ore_int64_bits(PG_GETARG_TIMESTAMPTZ(0), bits);
			domain = PGCK_ORE_TIMESTAMPTZ;
			break;
		case DATEOID:
			pgck_ore_int32_bits(PG_GETARG_DATEADT(0), bits);
			domain = PGCK_ORE_DATE;
			break;
		case NUMERICOID:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, PG_GETARG_DATUM(0)));

				domain = ore_bits(PGCK_PT_NUMERIC, (const uint8 *) s, strlen(s), bits, k->name);
				pgck_wipe(s, strlen(s));
				pfree(s);
			}
			break;
		default:
			elog(ERROR, "kms_ore is not defined for type %u", typid);
			domain = 0;
	}
	term_len = pgck_ore_encrypt(prf, domain, epoch, bits, term);
	pgck_wipe(bits, sizeof(bits));
	if (term_len == 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not compute an order-revealing term for key \"%s\"", k->name)));
	pfree(key_name);
	PG_RETURN_BYTEA_P(term_datum(term, term_len));
}

/* ---------------------------------------------------------------- named blind indexes */

/* kms_blind_tag(enc_text, index) → bytea: the named tag the value carries; no key. */
PG_FUNCTION_INFO_V1(pgck_kms_blind_tag_value);
Datum
pgck_kms_blind_tag_value(PG_FUNCTION_ARGS)
{
	PgckEnvelope env;
	text	   *name = PG_GETARG_TEXT_PP(1);
	PgckNamedTag t;

	parse_value(PG_GETARG_VARLENA_PP(0), &env);
	if (!pgck_envelope_named_tag(&env, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name), &t))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(term_datum(t.tag, t.tag_len));
}

/*
 * kms_blind_tag(text | bytea, key, index) → bytea: the probe for a lookup.
 * kms_blind_tag(text | bytea, key, index, previous => true): the probe under
 * the previous index key while an index key rotation is in progress (NULL
 * when none is), as kms_blind_index_all's second probe.
 */
PG_FUNCTION_INFO_V1(pgck_kms_blind_tag_probe);
Datum
pgck_kms_blind_tag_probe(PG_FUNCTION_ARGS)
{
	struct varlena *plain = PG_GETARG_VARLENA_PP(0);
	char	   *key_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *index_name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		previous = PG_NARGS() > 3 && PG_GETARG_BOOL(3);
	PgckCachedKey *k = pgck_keycache_key(key_name);
	KeyIndexes *m = k->transform == PGCK_BIDX_NONE ? NULL : indexes_for(k);
	uint8		tag[PGCK_BLIND_TAG_MAX];
	size_t		tag_len;
	int			i;

	for (i = 0; m != NULL && i < m->n; i++)
		if (strcmp(m->idx[i].name, index_name) == 0)
			break;
	if (m == NULL || i >= m->n)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("key \"%s\" has no blind index of that name", k->name),
				 errhint("The key's indexes are listed in kms_key_indexes.")));
	if (previous && k->index_key_prev == NULL)
	{
		pfree(key_name);
		pfree(index_name);
		PG_RETURN_NULL();		/* no rotation in progress: nothing to probe */
	}
	tag_len = named_tag(k, &m->idx[i], previous, VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain),
						get_fn_expr_argtype(fcinfo->flinfo, 0) != BYTEAOID, tag);
	pfree(key_name);
	pfree(index_name);
	PG_RETURN_BYTEA_P(term_datum(tag, tag_len));
}
