/*-------------------------------------------------------------------------
 *
 * blind_tag.c
 *		Blind-index transforms and tag truncation; see blind_tag.h.
 *
 * Pure C.  The transforms see plaintext: they keep no copy and allocate
 * nothing; the caller owns (and wipes) both buffers.
 *
 *-------------------------------------------------------------------------
 */
#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "blind_tag.h"

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
 * Eight bytes at a time (a blind-index probe and every tagged encryption
 * lower-case their value; the byte loop was 3-5% of a kms_blind_index scan):
 * in each byte, bit 7 of (b & 0x7F) + 0x3F is set from 'A' (0x41) up, bit 7 of
 * (b & 0x7F) + 0x25 from '[' (0x5B) up, and neither sum carries into the next
 * byte; bytes with bit 7 set (UTF-8) are excluded, so only A-Z gain 0x20.
 */
#define BYTES_01	UINT64_C(0x0101010101010101)

size_t
pgck_normalize_lower(const char *s, size_t len, char *out)
{
	size_t		i = 0;

	for (; i + 8 <= len; i += 8)
	{
		uint64_t	x;
		uint64_t	low;
		uint64_t	upper;

		memcpy(&x, s + i, 8);
		low = x & (0x7F * BYTES_01);
		upper = (low + 0x3F * BYTES_01) & ~(low + 0x25 * BYTES_01) & ~x & (0x80 * BYTES_01);
		x |= upper >> 2;
		memcpy(out + i, &x, 8);
	}
	for (; i < len; i++)
		out[i] = ascii_lower(s[i]);
	return len;
}

size_t
pgck_normalize_email(const char *s, size_t len, char *out)
{
	while (len > 0 && ascii_space(s[0]))
		s++, len--;
	while (len > 0 && ascii_space(s[len - 1]))
		len--;
	return pgck_normalize_lower(s, len, out);
}

size_t
pgck_normalize_digits(const char *s, size_t len, char *out)
{
	size_t		n = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		if (s[i] >= '0' && s[i] <= '9')
			out[n++] = s[i];
	return n;
}

size_t
pgck_normalize_domain(const char *s, size_t len, char *out)
{
	size_t		n = pgck_normalize_email(s, len, out);
	size_t		at = n;

	while (at > 0 && out[at - 1] != '@')
		at--;
	if (at > 0)
	{
		memmove(out, out + at, n - at);
		n -= at;
	}
	return n;
}

static inline bool
utf8_continuation(char c)
{
	return ((unsigned char) c & 0xC0) == 0x80;
}

/* the length of the character at s[i], at least 1 and at most what is left */
static inline size_t
char_len_at(const char *s, size_t len, size_t i, pgck_char_len_fn char_len)
{
	int			l = char_len(s + i);

	return l < 1 ? 1 : ((size_t) l > len - i ? len - i : (size_t) l);
}

size_t
pgck_transform_prefix(const char *s, size_t len, int n, pgck_char_len_fn char_len, char *out)
{
	size_t		end = 0;
	int			chars = 0;

	if (char_len != NULL)
		for (; end < len && chars < n; chars++)
			end += char_len_at(s, len, end, char_len);
	else
	{
		/* advance over n character starts; stop before the (n+1)th */
		while (end < len)
		{
			if (!utf8_continuation(s[end]))
			{
				if (chars == n)
					break;
				chars++;
			}
			end++;
		}
	}
	memcpy(out, s, end);
	return end;
}

size_t
pgck_transform_suffix(const char *s, size_t len, int n, pgck_char_len_fn char_len, char *out)
{
	size_t		start = len;
	int			chars = 0;

	if (char_len != NULL)
	{
		/* characters can only be told apart from the start: count, then skip all but n */
		size_t		total = 0;
		size_t		i;

		for (i = 0; i < len; total++)
			i += char_len_at(s, len, i, char_len);
		for (start = 0; total > (size_t) n; total--)
			start += char_len_at(s, len, start, char_len);
	}
	else
	{
		while (start > 0 && chars < n)
		{
			start--;
			if (!utf8_continuation(s[start]))
				chars++;
		}
	}
	memcpy(out, s + start, len - start);
	return len - start;
}

size_t
pgck_blind_tag_truncate(const uint8_t *mac, int index_bits, uint8_t *out)
{
	size_t		tag_len;

	assert(index_bits >= 1 && index_bits <= 8 * PGCK_BLIND_MAC_LEN);
	tag_len = (size_t) (index_bits + 7) / 8;
	if (out != mac)
		memcpy(out, mac, tag_len);
	else if (tag_len < PGCK_BLIND_MAC_LEN)
		explicit_bzero(out + tag_len, PGCK_BLIND_MAC_LEN - tag_len);
	if (index_bits % 8 != 0)
		out[tag_len - 1] &= (uint8_t) (0xFF << (8 - index_bits % 8));
	return tag_len;
}
