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

size_t
pgck_normalize_lower(const char *s, size_t len, char *out)
{
	size_t		i;

	for (i = 0; i < len; i++)
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
pgck_blind_tag_truncate(const uint8_t *mac, int index_bits, uint8_t *out)
{
	size_t		tag_len;

	assert(index_bits >= 1 && index_bits <= 8 * PGCK_BLIND_MAC_LEN);
	tag_len = (size_t) (index_bits + 7) / 8;
	memcpy(out, mac, tag_len);
	if (index_bits % 8 != 0)
		out[tag_len - 1] &= (uint8_t) (0xFF << (8 - index_bits % 8));
	return tag_len;
}
