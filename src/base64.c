/*-------------------------------------------------------------------------
 *
 * base64.c
 *		Strict standard-alphabet base64; see base64.h.
 *
 * Pure C, no allocation.  The decoder is fed attacker-supplied text (enc_text
 * literals, KMS responses), so every index is bounds-checked against the
 * lengths the caller passes.
 *
 *-------------------------------------------------------------------------
 */
#include "base64.h"

static const char enc_table[64] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* -1 for characters outside the alphabet */
static const int8_t dec_table[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

size_t
pgck_base64_encode(const uint8_t *src, size_t len, char *dst)
{
	size_t		i = 0;
	char	   *p = dst;

	while (i + 3 <= len)
	{
		uint32_t	v = ((uint32_t) src[i] << 16) | ((uint32_t) src[i + 1] << 8) | src[i + 2];

		*p++ = enc_table[(v >> 18) & 63];
		*p++ = enc_table[(v >> 12) & 63];
		*p++ = enc_table[(v >> 6) & 63];
		*p++ = enc_table[v & 63];
		i += 3;
	}
	if (len - i == 1)
	{
		uint32_t	v = (uint32_t) src[i] << 16;

		*p++ = enc_table[(v >> 18) & 63];
		*p++ = enc_table[(v >> 12) & 63];
		*p++ = '=';
		*p++ = '=';
	}
	else if (len - i == 2)
	{
		uint32_t	v = ((uint32_t) src[i] << 16) | ((uint32_t) src[i + 1] << 8);

		*p++ = enc_table[(v >> 18) & 63];
		*p++ = enc_table[(v >> 12) & 63];
		*p++ = enc_table[(v >> 6) & 63];
		*p++ = '=';
	}
	return (size_t) (p - dst);
}

bool
pgck_base64_decode(const char *src, size_t len, uint8_t *dst, size_t *outlen)
{
	size_t		i;
	size_t		o = 0;
	size_t		pad = 0;

	if (len % 4 != 0)
		return false;
	if (len >= 1 && src[len - 1] == '=')
		pad++;
	if (len >= 2 && src[len - 2] == '=')
		pad++;

	for (i = 0; i < len; i += 4)
	{
		bool		last = (i + 4 == len);
		int			a = dec_table[(uint8_t) src[i]];
		int			b = dec_table[(uint8_t) src[i + 1]];
		int			c;
		int			d;

		if (a < 0 || b < 0)
			return false;
		if (last && pad == 2)
		{
			if (src[i + 2] != '=' || src[i + 3] != '=' || (b & 15) != 0)
				return false;
			dst[o++] = (uint8_t) ((a << 2) | (b >> 4));
			break;
		}
		c = dec_table[(uint8_t) src[i + 2]];
		if (c < 0)
			return false;
		if (last && pad == 1)
		{
			if (src[i + 3] != '=' || (c & 3) != 0)
				return false;
			dst[o++] = (uint8_t) ((a << 2) | (b >> 4));
			dst[o++] = (uint8_t) (((b & 15) << 4) | (c >> 2));
			break;
		}
		d = dec_table[(uint8_t) src[i + 3]];
		if (d < 0)
			return false;
		dst[o++] = (uint8_t) ((a << 2) | (b >> 4));
		dst[o++] = (uint8_t) (((b & 15) << 4) | (c >> 2));
		dst[o++] = (uint8_t) (((c & 3) << 6) | d);
	}
	*outlen = o;
	return true;
}
