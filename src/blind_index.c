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

size_t
pgck_blind_index_tag(PgckCachedKey *k, const char *s, size_t len, uint8 *out)
{
	char		stackbuf[256];
	char	   *buf = NULL;
	const char *msg = s;
	size_t		mlen = len;
	uint8		mac[PGCK_HMAC_SHA256_LEN];
	size_t		tag_len;
	size_t		i;

	Assert(k->transform != PGCK_BIDX_NONE && k->hmac != NULL);

	if (k->transform != PGCK_BIDX_EXACT)
	{
		buf = len <= sizeof(stackbuf) ? stackbuf : palloc(len);
		mlen = 0;
		switch (k->transform)
		{
			case PGCK_BIDX_EMAIL:
				while (len > 0 && ascii_space(s[0]))
					s++, len--;
				while (len > 0 && ascii_space(s[len - 1]))
					len--;
				/* FALLTHROUGH */
			case PGCK_BIDX_LOWER:
				for (i = 0; i < len; i++)
					buf[mlen++] = ascii_lower(s[i]);
				break;
			case PGCK_BIDX_DIGITS:
				for (i = 0; i < len; i++)
					if (s[i] >= '0' && s[i] <= '9')
						buf[mlen++] = s[i];
				break;
			default:
				elog(ERROR, "unexpected blind index transform %d", (int) k->transform);
		}
		msg = buf;
	}

	if (!pgck_hmac_sha256(k->hmac, (const uint8 *) msg, mlen, mac))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not compute a blind index tag for key \"%s\"", k->name)));
	if (buf != NULL)
	{
		pgck_wipe(buf, mlen);
		if (buf != stackbuf)
			pfree(buf);
	}

	tag_len = (k->index_bits + 7) / 8;
	memcpy(out, mac, tag_len);
	if (k->index_bits % 8 != 0)
		out[tag_len - 1] &= (uint8) (0xFF << (8 - k->index_bits % 8));
	pgck_wipe(mac, sizeof(mac));
	return tag_len;
}
