/*-------------------------------------------------------------------------
 *
 * blind_index.c
 *		Blind-index tags: HMAC-SHA-256, under a key's index key, of the value
 *		after the key's transform, truncated to index_bits.
 *
 * The transforms (exact, lower, email, digits) and the truncation are pure C
 * in blind_tag.c, unit-tested on their own; this file adds the key, the
 * HMAC, the buffers and the errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "blind_index.h"
#include "blind_tag.h"
#include "envelope.h"
#include "pgck_errcodes.h"

/*
 * Normalize s[0..len) by transform t (the transforms themselves are pure C
 * in blind_tag.c).  Returns the normalized bytes: s itself for exact, else
 * *buf (palloc'd when longer than stackbuf, which must hold 256 bytes); *nlen
 * is set.  The caller wipes and frees a palloc'd *buf.
 */
static const char *
normalize(PgckTransform t, const char *s, size_t len, char *stackbuf, char **buf, size_t *nlen)
{
	char	   *out;

	*buf = NULL;
	if (t == PGCK_BIDX_EXACT)
	{
		*nlen = len;
		return s;
	}
	out = len <= 256 ? stackbuf : (*buf = palloc(len));
	switch (t)
	{
		case PGCK_BIDX_LOWER:
			*nlen = pgck_normalize_lower(s, len, out);
			break;
		case PGCK_BIDX_EMAIL:
			*nlen = pgck_normalize_email(s, len, out);
			break;
		case PGCK_BIDX_DIGITS:
			*nlen = pgck_normalize_digits(s, len, out);
			break;
		default:
			elog(ERROR, "unexpected blind index transform %d", (int) t);
	}
	return out;
}

static void
release(char *stackbuf, char *buf, size_t len)
{
	if (buf != NULL)
	{
		pgck_wipe(buf, len);
		pfree(buf);
	}
	else
		pgck_wipe(stackbuf, Min(len, 256));
}

size_t
pgck_blind_index_tag(PgckCachedKey *k, PgckHmac *hmac, const char *s, size_t len, uint8 *out)
{
	char		stackbuf[256];
	char	   *buf;
	size_t		mlen;
	const char *msg;
	bool		ok;

	Assert(k->transform != PGCK_BIDX_NONE && hmac != NULL);
	StaticAssertStmt(PGCK_BLIND_MAC_LEN == PGCK_HMAC_SHA256_LEN &&
					 PGCK_BLIND_TAG_MAX == PGCK_BLIND_MAC_LEN, "a tag is at most one HMAC-SHA-256");
	msg = normalize(k->transform, s, len, stackbuf, &buf, &mlen);
	/* the MAC goes straight into out (PGCK_BLIND_TAG_MAX bytes), truncated in place */
	ok = pgck_hmac_sha256(hmac, (const uint8 *) msg, mlen, out);
	if (msg != s)
		release(stackbuf, buf, mlen);
	if (!ok)
	{
		pgck_wipe(out, PGCK_BLIND_TAG_MAX);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not compute a blind index tag for key \"%s\"", k->name)));
	}
	return pgck_blind_tag_truncate(out, k->index_bits, out);
}

bool
pgck_blind_index_same(PgckTransform t, const char *a, size_t alen, const char *b, size_t blen)
{
	char		abuf[256];
	char		bbuf[256];
	char	   *apal;
	char	   *bpal;
	size_t		an;
	size_t		bn;
	const char *na = normalize(t, a, alen, abuf, &apal, &an);
	const char *nb = normalize(t, b, blen, bbuf, &bpal, &bn);
	bool		same = an == bn && memcmp(na, nb, an) == 0;

	if (na != a)
		release(abuf, apal, an);
	if (nb != b)
		release(bbuf, bpal, bn);
	return same;
}
