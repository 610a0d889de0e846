/*-------------------------------------------------------------------------
 *
 * blind_index.c
 *		Blind-index tags: HMAC-SHA-256, under a key's index key, of the value
 *		after the key's transform, truncated to index_bits.
 *
 * Transforms are byte-wise and locale-independent, so a tag computed on one
 * server matches the probe computed on any other (replica, restore):
 *	exact	the bytes as they are
 *	lower	ASCII A-Z folded to a-z; other bytes unchanged
 *	email	leading and trailing white space removed, then as lower
 *			(dots and +tags are not folded: they can name other mailboxes)
 *	digits	only the ASCII digits kept (phone and account numbers)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "blind_index.h"
#include "envelope.h"
#include "pgck_errcodes.h"

static inline char
ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static inline bool
ascii_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * Normalize s[0..len) by transform t.  Returns the normalized bytes: s itself
 * for exact, else *buf (palloc'd when longer than stackbuf, which must hold
 * 256 bytes); *nlen is set.  The caller wipes and frees a palloc'd *buf.
 */
static const char *
normalize(PgckTransform t, const char *s, size_t len, char *stackbuf, char **buf, size_t *nlen)
{
	char	   *out;
	size_t		n = 0;
	size_t		i;

	*buf = NULL;
	if (t == PGCK_BIDX_EXACT)
	{
		*nlen = len;
		return s;
	}
	out = len <= 256 ? stackbuf : (*buf = palloc(len));
	switch (t)
	{
		case PGCK_BIDX_EMAIL:
			while (len > 0 && ascii_space(s[0]))
				s++, len--;
			while (len > 0 && ascii_space(s[len - 1]))
				len--;
			/* FALLTHROUGH */
		case PGCK_BIDX_LOWER:
			for (i = 0; i < len; i++)
				out[n++] = ascii_lower(s[i]);
			break;
		case PGCK_BIDX_DIGITS:
			for (i = 0; i < len; i++)
				if (s[i] >= '0' && s[i] <= '9')
					out[n++] = s[i];
			break;
		default:
			elog(ERROR, "unexpected blind index transform %d", (int) t);
	}
	*nlen = n;
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
	uint8		mac[PGCK_HMAC_SHA256_LEN];
	size_t		tag_len;
	bool		ok;

	Assert(k->transform != PGCK_BIDX_NONE && hmac != NULL);
	msg = normalize(k->transform, s, len, stackbuf, &buf, &mlen);
	ok = pgck_hmac_sha256(hmac, (const uint8 *) msg, mlen, mac);
	if (msg != s)
		release(stackbuf, buf, mlen);
	if (!ok)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not compute a blind index tag for key \"%s\"", k->name)));

	tag_len = (k->index_bits + 7) / 8;
	memcpy(out, mac, tag_len);
	if (k->index_bits % 8 != 0)
		out[tag_len - 1] &= (uint8) (0xFF << (8 - k->index_bits % 8));
	pgck_wipe(mac, sizeof(mac));
	return tag_len;
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
