/*-------------------------------------------------------------------------
 *
 * test_envelope.c
 *		Unit tests of the pure value-format modules: strict base64
 *		(src/base64.c), the enc_text envelope v1 and its text form
 *		(src/envelope.c), a full seal -> text -> parse -> open round trip with
 *		src/aead.c, and the pooled nonce RNG (pgck_random_bytes).
 *
 * Usage: test_envelope [vectors-folder]   (the argument is accepted for a
 * uniform command line and not used).
 *
 * Every buffer handed to the code under test is malloc'd at exactly the size
 * the API promises to stay within, so an out-of-bounds read or write shows up
 * under AddressSanitizer (the CI runs this file with -fsanitize=address).
 * Bulk loops record results with unit_count and print one summary line.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "aead.h"
#include "base64.h"
#include "envelope.h"
#include "unit.h"

static const char b64_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Failures of the bulk loop in progress; printed as "# ..." lines. */
static int	bulk_failures;

static void
bulk(bool cond, const char *fmt,...)
{
	unit_count(cond);
	if (!cond)
	{
		va_list		ap;

		if (++bulk_failures <= 20)
		{
			printf("# ");
			va_start(ap, fmt);
			vprintf(fmt, ap);
			va_end(ap);
			printf("\n");
		}
	}
}

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

/* A malloc'd copy of exactly n bytes (never NULL). */
static uint8_t *
dup_exact(const void *src, size_t n)
{
	uint8_t    *p = xmalloc(n);

	if (n > 0)
		memcpy(p, src, n);
	return p;
}

static void
fill_random(uint8_t *p, size_t n)
{
	if (n > 0 && RAND_bytes(p, (int) n) != 1)
	{
		fprintf(stderr, "RAND_bytes failed\n");
		exit(2);
	}
}

/* Decode a NUL-terminated string through a buffer of exactly DEC_MAX bytes. */
static bool
b64_decode_str(const char *s, uint8_t *out, size_t outsz, size_t *outlen)
{
	size_t		len = strlen(s);
	char	   *src = (char *) dup_exact(s, len);
	uint8_t    *dst = xmalloc(PGCK_BASE64_DEC_MAX(len));
	bool		ok;

	ok = pgck_base64_decode(src, len, dst, outlen);
	if (ok && out != NULL)
		memcpy(out, dst, *outlen < outsz ? *outlen : outsz);
	free(dst);
	free(src);
	return ok;
}

/* ----------------------------------------------------------------- base64 */

static void
test_base64_roundtrip(void)
{
	size_t		len;

	bulk_failures = 0;
	for (len = 0; len <= 300; len++)
	{
		uint8_t    *src = xmalloc(len);
		char	   *enc = xmalloc(PGCK_BASE64_ENC_LEN(len));
		char	   *ref = xmalloc(PGCK_BASE64_ENC_LEN(len) + 1);
		uint8_t    *dec = xmalloc(PGCK_BASE64_DEC_MAX(PGCK_BASE64_ENC_LEN(len)));
		size_t		n;
		size_t		outlen = 0;
		int			refn;

		fill_random(src, len);
		n = pgck_base64_encode(src, len, enc);
		bulk(n == PGCK_BASE64_ENC_LEN(len), "base64 length %zu: encoded to %zu characters", len, n);
		/* OpenSSL's encoder as an independent reference */
		refn = EVP_EncodeBlock((unsigned char *) ref, src, (int) len);
		bulk(refn >= 0 && (size_t) refn == n && memcmp(enc, ref, n) == 0,
			 "base64 length %zu: encoding differs from OpenSSL's", len);
		bulk(pgck_base64_decode(enc, n, dec, &outlen) && outlen == len &&
			 (len == 0 || memcmp(dec, src, len) == 0),
			 "base64 length %zu: decode(encode(x)) != x", len);
		free(src);
		free(enc);
		free(ref);
		free(dec);
	}
	unit_check(bulk_failures == 0,
			   "base64: encode matches OpenSSL and decode round-trips for every length 0..300");
}

static void
test_base64_rejects(void)
{
	static const struct
	{
		const char *text;
		const char *why;
	}			bad[] = {
		{"QQ", "missing padding (1 byte)"},
		{"QUI", "missing padding (2 bytes)"},
		{"Q", "one character"},
		{"QUJDRA", "missing padding after a full group"},
		{"QQ=", "half padding"},
		{"QQ===", "extra padding"},
		{"QUI==", "extra padding (2 bytes)"},
		{"QUJD=", "padding after a full group"},
		{"QUJD====", "a whole group of padding"},
		{"====", "padding only"},
		{"QR==", "non-zero pad bits (1 byte)"},
		{"QUJ=", "non-zero pad bits (2 bytes)"},
		{"QUJD\n", "trailing newline"},
		{"QUJD\r\n", "trailing CRLF"},
		{" QUJD", "leading space"},
		{"QU JD", "inner space"},
		{"QUJD\tQUJD", "tab"},
		{"QUJ-", "URL-safe '-'"},
		{"QUJ_", "URL-safe '_'"},
		{"QUJ*", "'*'"},
		{"QUJ\x80", "byte 0x80"},
		{"QUJ\xff", "byte 0xff"},
		{"QQ==QUJD", "'=' before the last group"},
		{"Q=JD", "'=' in position 2"},
		{"QU=D", "'=' in position 3 of a group"},
		{"=QJD", "'=' in position 1"},
		{"QUJDQ=JD", "'=' mid-string"},
		{"QQ=A", "'=' followed by data"},
	};
	size_t		i;
	int			failures = 0;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		size_t		outlen;

		if (b64_decode_str(bad[i].text, NULL, 0, &outlen))
		{
			failures++;
			printf("# base64 accepted %s\n", bad[i].why);
		}
	}
	unit_check(failures == 0,
			   "base64 rejects missing/extra padding, non-zero pad bits, whitespace, bad characters and '=' mid-string");

	/* an embedded NUL (length passed explicitly) */
	{
		char	   *src = (char *) dup_exact("QU\0D", 4);
		uint8_t    *dst = xmalloc(3);
		size_t		outlen;

		unit_check(!pgck_base64_decode(src, 4, dst, &outlen), "base64 rejects an embedded NUL");
		free(src);
		free(dst);
	}
	{
		size_t		outlen = 99;
		uint8_t    *dst = xmalloc(0);

		unit_check(pgck_base64_decode("", 0, dst, &outlen) && outlen == 0,
				   "base64 decodes the empty string to zero bytes");
		free(dst);
	}
}

/*
 * Canonical means: decode(s) succeeds exactly when s is the encoding of some
 * byte string.  Checked exhaustively for the one-group forms "XY==" over all
 * bytes and "XYZ=" over the alphabet, '=' and a few stray bytes, and for
 * random four-group strings: every accepted string re-encodes to itself.
 */
static void
test_base64_canonical(void)
{
	static const char extra[] = "= -_\n.\x80";
	char		chars[64 + sizeof(extra)];
	size_t		nchars;
	int			accepted2 = 0,
				accepted3 = 0;
	int			a,
				b,
				c;
	int			iter;

	memcpy(chars, b64_alphabet, 64);
	memcpy(chars + 64, extra, sizeof(extra) - 1);
	nchars = 64 + sizeof(extra) - 1;
	bulk_failures = 0;

	for (a = 0; a < 256; a++)
		for (b = 0; b < 256; b++)
		{
			char		s[4] = {(char) a, (char) b, '=', '='};
			uint8_t		dst[3];
			size_t		outlen = 0;
			bool		ok = pgck_base64_decode(s, 4, dst, &outlen);
			char		re[4];

			if (ok)
			{
				accepted2++;
				bulk(outlen == 1 && pgck_base64_encode(dst, 1, re) == 4 &&
					 memcmp(re, s, 4) == 0,
					 "base64 accepted non-canonical \"%c%c==\"", a, b);
			}
		}
	bulk(accepted2 == 256, "base64 accepts %d of 65536 \"XY==\" strings, want 256", accepted2);

	for (a = 0; a < (int) nchars; a++)
		for (b = 0; b < (int) nchars; b++)
			for (c = 0; c < (int) nchars; c++)
			{
				char		s[4] = {chars[a], chars[b], chars[c], '='};
				uint8_t		dst[3];
				size_t		outlen = 0;
				bool		ok = pgck_base64_decode(s, 4, dst, &outlen);
				char		re[4];

				/* "XY==" forms recur here when Z is '='; checked above */
				if (ok && chars[c] != '=')
				{
					accepted3++;
					bulk(outlen == 2 && pgck_base64_encode(dst, 2, re) == 4 &&
						 memcmp(re, s, 4) == 0,
						 "base64 accepted non-canonical \"%.4s\"", s);
				}
				else if (ok)
					bulk(outlen == 1 && pgck_base64_encode(dst, 1, re) == 4 &&
						 memcmp(re, s, 4) == 0,
						 "base64 accepted non-canonical \"%.4s\"", s);
			}
	bulk(accepted3 == 65536, "base64 accepts %d \"XYZ=\" strings, want 65536", accepted3);

	for (iter = 0; iter < 200000; iter++)
	{
		uint8_t		r[16];
		char		s[16];
		uint8_t		dst[12];
		char		re[16];
		size_t		outlen = 0;
		size_t		len;
		int			k;

		fill_random(r, sizeof(r));
		len = 4 * (1 + r[0] % 4);
		for (k = 0; k < (int) len; k++)
			s[k] = (r[k] & 0x80) && k >= (int) len - 3 ? '=' : chars[r[k] % nchars];
		if (pgck_base64_decode(s, len, dst, &outlen))
			bulk(outlen <= PGCK_BASE64_DEC_MAX(len) &&
				 pgck_base64_encode(dst, outlen, re) == len && memcmp(re, s, len) == 0,
				 "base64 accepted non-canonical \"%.*s\"", (int) len, s);
	}
	unit_check(bulk_failures == 0,
			   "base64 is canonical: exactly 256 \"XY==\" and 65536 \"XYZ=\" one-group forms accepted, "
			   "every accepted random string re-encodes to itself");
}

/* --------------------------------------------------------------- envelope */

typedef struct Built
{
	uint8_t    *buf;			/* exactly len bytes */
	size_t		len;
	size_t		header_len;
} Built;

/* Build a structurally valid value with random ciphertext and GCM tag. */
static Built
build_value(uint8_t flags, uint32_t kvid, const uint8_t *blind_tag, size_t tag_len,
			size_t ct_len)
{
	Built		v;
	uint8_t		nonce[PGCK_NONCE_LEN];

	fill_random(nonce, sizeof(nonce));
	v.len = pgck_envelope_size(ct_len, tag_len);
	v.buf = xmalloc(v.len);
	v.header_len = pgck_envelope_write_header(v.buf, flags, kvid, nonce, blind_tag, tag_len);
	fill_random(v.buf + v.header_len, v.len - v.header_len);
	return v;
}

/* The invariants every successful parse must satisfy. */
static bool
parse_invariants(const uint8_t *buf, size_t len, const PgckEnvelope *e)
{
	bool		blind = (e->flags & PGCK_FLAG_BLIND_TAG) != 0;

	return e->version == PGCK_ENV_VERSION_1 &&
		e->algorithm == PGCK_ALG_AES256_GCM &&
		(e->flags & ~PGCK_FLAG_MASK) == 0 &&
		e->key_version_id >= 1 && e->key_version_id <= INT32_MAX &&
		e->nonce == buf + 7 &&
		(blind ? (e->blind_tag == buf + PGCK_FIXED_HEADER_LEN + 1 &&
				  e->blind_tag_len >= 1 && e->blind_tag_len <= PGCK_BLIND_TAG_MAX &&
				  buf[PGCK_FIXED_HEADER_LEN] == e->blind_tag_len &&
				  e->header_len == PGCK_FIXED_HEADER_LEN + 1 + e->blind_tag_len)
		 : (e->blind_tag == NULL && e->blind_tag_len == 0 &&
			e->header_len == PGCK_FIXED_HEADER_LEN)) &&
		e->ciphertext == buf + e->header_len &&
		e->header_len + e->ciphertext_len + PGCK_GCM_TAG_LEN == len &&
		e->gcm_tag == buf + len - PGCK_GCM_TAG_LEN;
}

static void
test_envelope_roundtrip(void)
{
	static const uint32_t kvids[] = {1, 2, 255, 256, 0x01020304, 0x7fffffff};
	static const size_t ct_lens[] = {0, 1, 15, 16, 17, 100};
	uint8_t		blind[PGCK_BLIND_TAG_MAX];
	size_t		tl;
	size_t		ci;
	size_t		ki;
	int			f;
	int			values = 0;

	fill_random(blind, sizeof(blind));
	bulk_failures = 0;
	for (tl = 0; tl <= PGCK_BLIND_TAG_MAX; tl++)
		for (ci = 0; ci < sizeof(ct_lens) / sizeof(ct_lens[0]); ci++)
			for (ki = 0; ki < sizeof(kvids) / sizeof(kvids[0]); ki++)
				for (f = 0; f <= (PGCK_FLAG_BLIND_TAG | PGCK_FLAG_CONTEXT); f++)
				{
					Built		v = build_value((uint8_t) f, kvids[ki], blind, tl, ct_lens[ci]);
					PgckEnvelope e;
					PgckEnvelopeStatus st = pgck_envelope_parse(v.buf, v.len, &e);
					uint8_t		want_flags = (uint8_t) ((f & ~PGCK_FLAG_BLIND_TAG) |
													   (tl > 0 ? PGCK_FLAG_BLIND_TAG : 0));

					values++;
					bulk(v.len == PGCK_FIXED_HEADER_LEN + (tl ? 1 + tl : 0) + ct_lens[ci] + PGCK_GCM_TAG_LEN &&
						 v.header_len == v.len - ct_lens[ci] - PGCK_GCM_TAG_LEN,
						 "envelope size/header length wrong (tag %zu, ct %zu)", tl, ct_lens[ci]);
					bulk(st == PGCK_ENV_OK, "envelope round trip: status %d (tag %zu, ct %zu, kvid %u, flags %d)",
						 (int) st, tl, ct_lens[ci], kvids[ki], f);
					if (st != PGCK_ENV_OK)
					{
						free(v.buf);
						continue;
					}
					bulk(parse_invariants(v.buf, v.len, &e), "envelope invariants (tag %zu)", tl);
					bulk(e.flags == want_flags,
						 "write_header must set the blind-tag flag exactly when a tag is given (flags %d, tag %zu)", f, tl);
					bulk(e.key_version_id == kvids[ki], "key version id %u read back as %u", kvids[ki], e.key_version_id);
					bulk(e.blind_tag_len == tl && (tl == 0 || memcmp(e.blind_tag, blind, tl) == 0),
						 "blind tag of length %zu not read back", tl);
					bulk(e.ciphertext_len == ct_lens[ci] && e.header_len == v.header_len,
						 "ciphertext length %zu read back as %zu", ct_lens[ci], e.ciphertext_len);
					free(v.buf);
				}
	unit_check(bulk_failures == 0,
			   "envelope: write/parse round trip of %d values (blind tag 0..32, 4 flag combinations, 6 key versions, 6 lengths)",
			   values);
}

static void
test_envelope_key_versions(void)
{
	static const uint32_t bad[] = {0, 0x80000000u, 0x80000001u, 0xffffffffu};
	size_t		i;
	int			failures = 0;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		Built		v = build_value(0, bad[i], NULL, 0, 4);
		PgckEnvelope e;

		if (pgck_envelope_parse(v.buf, v.len, &e) != PGCK_ENV_BAD_KEY_VERSION)
		{
			failures++;
			printf("# key version id %u not rejected\n", bad[i]);
		}
		free(v.buf);
	}
	unit_check(failures == 0, "envelope: key version ids 0 and > INT32_MAX are rejected");
}

/*
 * Every prefix of a valid value either fails to parse or parses to the same
 * header with a shorter ciphertext.  Each prefix is copied to a buffer of
 * exactly its length, so ASan catches any read past it.
 */
static void
test_envelope_truncation(void)
{
	uint8_t		blind[PGCK_BLIND_TAG_MAX];
	size_t		tl;
	int			prefixes = 0;
	int			parsed_shorter = 0;

	fill_random(blind, sizeof(blind));
	bulk_failures = 0;
	for (tl = 0; tl <= PGCK_BLIND_TAG_MAX; tl += (tl < 2 ? 1 : 15))
	{
		Built		v = build_value(PGCK_FLAG_CONTEXT, 42, blind, tl, 40);
		PgckEnvelope full;
		size_t		n;

		bulk(pgck_envelope_parse(v.buf, v.len, &full) == PGCK_ENV_OK, "untruncated value must parse");
		for (n = 0; n < v.len; n++)
		{
			uint8_t    *p = dup_exact(v.buf, n);
			PgckEnvelope e;
			PgckEnvelopeStatus st = pgck_envelope_parse(p, n, &e);

			prefixes++;
			if (st == PGCK_ENV_OK)
			{
				parsed_shorter++;
				bulk(parse_invariants(p, n, &e) && e.header_len == full.header_len &&
					 e.ciphertext_len < full.ciphertext_len &&
					 e.key_version_id == full.key_version_id && e.flags == full.flags,
					 "truncation to %zu of %zu bytes parsed inconsistently", n, v.len);
			}
			else
				bulk(st == PGCK_ENV_TOO_SHORT,
					 "truncation to %zu of %zu bytes gave status %d, want TOO_SHORT", n, v.len, (int) st);
			free(p);
		}
		free(v.buf);
	}
	unit_check(bulk_failures == 0,
			   "envelope: %d truncations fail with TOO_SHORT or parse with a shorter ciphertext (%d did)",
			   prefixes, parsed_shorter);
}

static void
test_envelope_rejects(void)
{
	Built		v = build_value(0, 7, NULL, 0, 8);
	PgckEnvelope e;
	uint8_t    *p;
	int			b;
	int			failures;
	static const uint8_t versions[] = {0, 2, 3, 0x7f, 0x80, 0xff};
	size_t		i;

	/* empty and one-byte inputs */
	p = xmalloc(0);
	unit_check(pgck_envelope_parse(p, 0, &e) == PGCK_ENV_TOO_SHORT, "envelope: empty input is TOO_SHORT");
	free(p);
	p = dup_exact("\x01", 1);
	unit_check(pgck_envelope_parse(p, 1, &e) == PGCK_ENV_TOO_SHORT, "envelope: a lone version byte is TOO_SHORT");
	free(p);

	/* unknown versions keep the version found, even in a one-byte value */
	failures = 0;
	for (i = 0; i < sizeof(versions); i++)
	{
		uint8_t		saved = v.buf[0];

		v.buf[0] = versions[i];
		if (pgck_envelope_parse(v.buf, v.len, &e) != PGCK_ENV_UNKNOWN_VERSION || e.version != versions[i])
			failures++;
		v.buf[0] = saved;
		p = dup_exact(&versions[i], 1);
		if (pgck_envelope_parse(p, 1, &e) != PGCK_ENV_UNKNOWN_VERSION || e.version != versions[i])
			failures++;
		free(p);
	}
	unit_check(failures == 0, "envelope: unknown versions 0, 2, 3, 127, 128, 255 reported with the version kept");

	failures = 0;
	for (b = 0; b < 256; b++)
	{
		uint8_t		saved = v.buf[1];
		PgckEnvelopeStatus st;

		v.buf[1] = (uint8_t) b;
		st = pgck_envelope_parse(v.buf, v.len, &e);
		if ((b == PGCK_ALG_AES256_GCM) != (st == PGCK_ENV_OK) ||
			(b != PGCK_ALG_AES256_GCM && st != PGCK_ENV_UNKNOWN_ALGORITHM))
			failures++;
		v.buf[1] = saved;
	}
	unit_check(failures == 0, "envelope: every algorithm byte but 1 is UNKNOWN_ALGORITHM");

	failures = 0;
	for (b = 0; b < 8; b++)
	{
		uint8_t		saved = v.buf[2];

		if ((1 << b) & PGCK_FLAG_MASK)
			continue;
		v.buf[2] = (uint8_t) (1 << b);
		if (pgck_envelope_parse(v.buf, v.len, &e) != PGCK_ENV_UNKNOWN_FLAGS)
			failures++;
		v.buf[2] = (uint8_t) (0xff);
		if (pgck_envelope_parse(v.buf, v.len, &e) != PGCK_ENV_UNKNOWN_FLAGS)
			failures++;
		v.buf[2] = saved;
	}
	unit_check(failures == 0, "envelope: every unknown flag bit (0x08..0x80) is UNKNOWN_FLAGS");
	free(v.buf);

	/* blind-tag length byte 0, 33 and 255 with room for any of them */
	{
		static const uint8_t tls[] = {0, PGCK_BLIND_TAG_MAX + 1, 0xff};

		failures = 0;
		for (i = 0; i < sizeof(tls); i++)
		{
			size_t		len = PGCK_FIXED_HEADER_LEN + 1 + 300 + PGCK_GCM_TAG_LEN;
			uint8_t    *buf = xmalloc(len);
			uint8_t		nonce[PGCK_NONCE_LEN] = {0};
			uint8_t		tag[1] = {0};

			memset(buf, 0x5a, len);
			pgck_envelope_write_header(buf, 0, 9, nonce, tag, 1);
			buf[PGCK_FIXED_HEADER_LEN] = tls[i];
			if (pgck_envelope_parse(buf, len, &e) != PGCK_ENV_BAD_TAG_LENGTH)
			{
				failures++;
				printf("# blind-tag length %d accepted\n", tls[i]);
			}
			free(buf);
		}
		unit_check(failures == 0, "envelope: blind-tag length 0, 33 and 255 are BAD_TAG_LENGTH");
	}

	/* blind-tag flag set and a tag length claiming more than the value holds */
	{
		uint8_t		blind[PGCK_BLIND_TAG_MAX];
		Built		t;
		uint8_t    *q;

		memset(blind, 1, sizeof(blind));
		t = build_value(0, 3, blind, 32, 0);	/* exactly 19 + 33 + 16 bytes */
		q = dup_exact(t.buf, t.len - 1);
		unit_check(pgck_envelope_parse(t.buf, t.len, &e) == PGCK_ENV_OK &&
				   pgck_envelope_parse(q, t.len - 1, &e) == PGCK_ENV_TOO_SHORT,
				   "envelope: a 32-byte blind tag with no room for the GCM tag is TOO_SHORT");
		free(q);
		free(t.buf);

		/* a flag-less value whose first ciphertext byte would be read as a length */
		t = build_value(0, 3, NULL, 0, 0);
		t.buf[2] |= PGCK_FLAG_BLIND_TAG;
		unit_check(pgck_envelope_parse(t.buf, t.len, &e) == PGCK_ENV_TOO_SHORT,
				   "envelope: blind-tag flag on a minimal value is TOO_SHORT");
		free(t.buf);
	}

	/* messages: one per status, all sentences, all distinct */
	{
		const char *msgs[7];
		int			s,
					t;

		failures = 0;
		for (s = PGCK_ENV_OK; s <= PGCK_ENV_BAD_KEY_VERSION; s++)
		{
			msgs[s] = pgck_envelope_status_message((PgckEnvelopeStatus) s);
			if (msgs[s] == NULL || msgs[s][0] < 'A' || msgs[s][0] > 'Z' ||
				msgs[s][strlen(msgs[s]) - 1] != '.')
				failures++;
			for (t = 0; t < s; t++)
				if (msgs[s] && msgs[t] && strcmp(msgs[s], msgs[t]) == 0)
					failures++;
		}
		unit_check(failures == 0, "envelope: each status has its own errdetail sentence");
	}
}

/* Decode text of exactly srclen bytes into a dst of exactly srclen bytes. */
static bool
from_text_exact(const char *text, size_t srclen, uint8_t **dst, size_t *dstlen)
{
	char	   *src = (char *) dup_exact(text, srclen);
	bool		ok;

	*dst = xmalloc(srclen);
	ok = pgck_envelope_from_text(src, srclen, *dst, dstlen);
	free(src);
	return ok;
}

static void
test_text_form(void)
{
	Built		v = build_value(PGCK_FLAG_CONTEXT, 77, (const uint8_t *) "blindtag", 8, 23);
	size_t		tlen = pgck_envelope_text_len(v.len);
	char	   *text = xmalloc(tlen + 1);
	uint8_t    *dst;
	size_t		dstlen = 0;
	PgckEnvelope e;
	static const char *const bad[] = {
		"", "p", "pgc", "pgck", "PGCK:", "Pgck:", "pgck;", "xgck:", " pgck:",
		"pgck: ", "pgck:pgck:", "pgck:AQ", "pgck:AQ=", "pgck:AR==", "pgck:AQ==\n",
		"pgck :AQ==", "\npgck:AQ==",
	};
	size_t		i;
	int			failures = 0;

	pgck_envelope_to_text(v.buf, v.len, text);
	unit_check(strlen(text) == tlen && strncmp(text, PGCK_TEXT_PREFIX, PGCK_TEXT_PREFIX_LEN) == 0,
			   "text form: \"pgck:\" prefix and text_len() characters plus NUL");
	unit_check(from_text_exact(text, tlen, &dst, &dstlen) && dstlen == v.len &&
			   memcmp(dst, v.buf, v.len) == 0 &&
			   pgck_envelope_parse(dst, dstlen, &e) == PGCK_ENV_OK && e.key_version_id == 77,
			   "text form: to_text/from_text/parse round trip");
	free(dst);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		if (from_text_exact(bad[i], strlen(bad[i]), &dst, &dstlen))
		{
			failures++;
			printf("# text form accepted \"%s\"\n", bad[i]);
		}
		free(dst);
	}
	unit_check(failures == 0,
			   "text form rejects a missing, misspelt, upper-case, doubled or space-padded prefix and non-canonical base64");

	/* the prefix with a whole value's base64 but the prefix cut short */
	unit_check(!from_text_exact(text + 1, tlen - 1, &dst, &dstlen), "text form: \"gck:...\" rejected");
	free(dst);
	unit_check(!from_text_exact(text + PGCK_TEXT_PREFIX_LEN, tlen - PGCK_TEXT_PREFIX_LEN, &dst, &dstlen),
			   "text form: bare base64 without prefix rejected");
	free(dst);

	/* "pgck:" alone decodes to nothing, which then does not parse */
	unit_check(from_text_exact("pgck:", 5, &dst, &dstlen) && dstlen == 0 &&
			   pgck_envelope_parse(dst, dstlen, &e) == PGCK_ENV_TOO_SHORT,
			   "text form: \"pgck:\" alone is an empty value, which is TOO_SHORT");
	free(dst);

	free(text);
	free(v.buf);
}

/* ------------------------------------------------- seal -> text -> open */

static const uint8_t test_key[PGCK_AES256_KEY_LEN] = {
	0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
	0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
};

/*
 * Encrypt as the extension does: header written first, then sealed with
 * AAD = header || context.  Returns the text form (malloc'd, NUL-terminated).
 */
static char *
seal_to_text(PgckAead *aead, uint32_t kvid, const uint8_t *blind, size_t blind_len,
			 const char *context, const uint8_t *pt, size_t pt_len)
{
	size_t		len = pgck_envelope_size(pt_len, blind_len);
	uint8_t    *buf = xmalloc(len);
	uint8_t		nonce[PGCK_NONCE_LEN];
	size_t		clen = context ? strlen(context) : 0;
	size_t		hlen;
	char	   *text;

	if (!pgck_random_bytes(nonce, sizeof(nonce)))
		return NULL;
	hlen = pgck_envelope_write_header(buf, context ? PGCK_FLAG_CONTEXT : 0, kvid,
									  nonce, blind, blind_len);
	if (!pgck_aead_seal(aead, nonce, buf, hlen, (const uint8_t *) context, clen,
						pt, pt_len, buf + hlen, buf + hlen + pt_len))
	{
		free(buf);
		return NULL;
	}
	text = xmalloc(pgck_envelope_text_len(len) + 1);
	pgck_envelope_to_text(buf, len, text);
	free(buf);
	return text;
}

typedef enum OpenResult
{
	OPEN_OK,
	OPEN_BAD_TEXT,
	OPEN_BAD_PARSE,
	OPEN_BAD_AUTH
} OpenResult;

/*
 * Decrypt a binary value as the extension does.  On OPEN_OK *pt (malloc'd)
 * holds *pt_len bytes; on failure the output buffer must have been zeroed.
 */
static OpenResult
open_binary(PgckAead *aead, const uint8_t *buf, size_t len, const char *context,
			uint8_t **pt, size_t *pt_len, bool *wiped)
{
	PgckEnvelope e;
	size_t		clen = context ? strlen(context) : 0;
	size_t		i;

	*pt = NULL;
	*wiped = true;
	if (pgck_envelope_parse(buf, len, &e) != PGCK_ENV_OK)
		return OPEN_BAD_PARSE;
	*pt = xmalloc(e.ciphertext_len);
	memset(*pt, 0xA5, e.ciphertext_len);
	*pt_len = e.ciphertext_len;
	if (!pgck_aead_open(aead, e.nonce, buf, e.header_len, (const uint8_t *) context, clen,
						e.ciphertext, e.ciphertext_len, e.gcm_tag, *pt))
	{
		for (i = 0; i < e.ciphertext_len; i++)
			if ((*pt)[i] != 0)
				*wiped = false;
		free(*pt);
		*pt = NULL;
		return OPEN_BAD_AUTH;
	}
	return OPEN_OK;
}

static OpenResult
open_text(PgckAead *aead, const char *text, size_t tlen, const char *context,
		  uint8_t **pt, size_t *pt_len, bool *wiped)
{
	uint8_t    *bin;
	size_t		blen;
	OpenResult	r;

	*pt = NULL;
	*wiped = true;
	if (!from_text_exact(text, tlen, &bin, &blen))
	{
		free(bin);
		return OPEN_BAD_TEXT;
	}
	r = open_binary(aead, bin, blen, context, pt, pt_len, wiped);
	free(bin);
	return r;
}

static void
test_seal_open(void)
{
	PgckAead   *aead = pgck_aead_new(test_key);
	uint8_t		other_key[PGCK_AES256_KEY_LEN];
	PgckAead   *other;
	const char *msg = "123-45-6789";
	size_t		mlen = strlen(msg);
	char	   *text;
	uint8_t    *pt;
	size_t		pt_len;
	bool		wiped;
	OpenResult	r;

	memcpy(other_key, test_key, sizeof(other_key));
	other_key[31] ^= 1;
	other = pgck_aead_new(other_key);
	unit_check(aead != NULL && other != NULL, "pgck_aead_new");
	if (aead == NULL || other == NULL)
		return;

	/* plain round trips: with and without context and blind tag */
	{
		static const char *const contexts[] = {NULL, "", "public.users.ssn"};
		size_t		ci;
		size_t		bl;
		uint8_t		blind[PGCK_BLIND_TAG_MAX];
		int			failures = 0;

		memset(blind, 0xbb, sizeof(blind));
		for (ci = 0; ci < 3; ci++)
			for (bl = 0; bl <= PGCK_BLIND_TAG_MAX; bl += 16)
			{
				text = seal_to_text(aead, 5, blind, bl, contexts[ci], (const uint8_t *) msg, mlen);
				r = open_text(aead, text, strlen(text), contexts[ci], &pt, &pt_len, &wiped);
				if (r != OPEN_OK || pt_len != mlen || memcmp(pt, msg, mlen) != 0)
					failures++;
				free(pt);
				free(text);
			}
		unit_check(failures == 0,
				   "seal -> header -> text -> parse -> open round trip (context none/empty/set, blind tag 0/16/32)");
	}

	/* wrong context, wrong key */
	text = seal_to_text(aead, 5, NULL, 0, "public.users.ssn", (const uint8_t *) msg, mlen);
	{
		static const char *const wrong[] = {NULL, "", "public.users.ss", "public.users.ssn ",
		"public.users.SSN", "public.users.email"};
		size_t		i;
		int			failures = 0;

		for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++)
		{
			r = open_text(aead, text, strlen(text), wrong[i], &pt, &pt_len, &wiped);
			if (r != OPEN_BAD_AUTH || !wiped)
				failures++;
			free(pt);
		}
		unit_check(failures == 0, "open with a wrong or missing context fails and leaves no plaintext");
	}
	r = open_text(other, text, strlen(text), "public.users.ssn", &pt, &pt_len, &wiped);
	unit_check(r == OPEN_BAD_AUTH && wiped, "open with another key fails and leaves no plaintext");
	free(pt);
	free(text);

	/* a value sealed without context does not open under one */
	text = seal_to_text(aead, 5, NULL, 0, NULL, (const uint8_t *) msg, mlen);
	r = open_text(aead, text, strlen(text), "public.users.ssn", &pt, &pt_len, &wiped);
	unit_check(r == OPEN_BAD_AUTH && wiped, "a context-free value does not open with a context");
	free(pt);
	free(text);

	/*
	 * Every single-byte change of the binary value (three XOR masks at each
	 * position) and every single-character change of its text form must
	 * fail somewhere; never a plaintext.
	 */
	{
		uint8_t		blind[8] = {1, 2, 3, 4, 5, 6, 7, 8};
		static const uint8_t masks[] = {0x01, 0x80, 0xff};
		static const char subst[] = "A/+=z0 ";
		const char *ctx = "public.t.c";
		char	   *t2 = seal_to_text(aead, 0x10203, blind, sizeof(blind), ctx,
									  (const uint8_t *) msg, mlen);
		size_t		t2len = strlen(t2);
		uint8_t    *bin;
		size_t		blen;
		size_t		pos;
		size_t		m;
		int			opened = 0,
					tried = 0,
					not_wiped = 0;
		int			by_parse = 0,
					by_text = 0,
					by_auth = 0;

		from_text_exact(t2, t2len, &bin, &blen);
		for (pos = 0; pos < blen; pos++)
			for (m = 0; m < sizeof(masks); m++)
			{
				uint8_t    *mut = dup_exact(bin, blen);

				mut[pos] ^= masks[m];
				tried++;
				r = open_binary(aead, mut, blen, ctx, &pt, &pt_len, &wiped);
				if (r == OPEN_OK)
				{
					opened++;
					printf("# byte %zu ^ 0x%02x still opened\n", pos, masks[m]);
				}
				else if (r == OPEN_BAD_PARSE)
					by_parse++;
				else
					by_auth++;
				if (!wiped)
					not_wiped++;
				free(pt);
				free(mut);
			}
		unit_check(opened == 0 && not_wiped == 0,
				   "every single-byte change of a %zu-byte value fails (%d tries: %d in parse, %d in open)",
				   blen, tried, by_parse, by_auth);

		opened = tried = not_wiped = 0;
		by_parse = by_auth = 0;
		for (pos = 0; pos < t2len; pos++)
			for (m = 0; m < sizeof(subst) - 1; m++)
			{
				char	   *mut;

				if (t2[pos] == subst[m])
					continue;
				mut = (char *) dup_exact(t2, t2len);
				mut[pos] = subst[m];
				tried++;
				r = open_text(aead, mut, t2len, ctx, &pt, &pt_len, &wiped);
				if (r == OPEN_OK)
				{
					opened++;
					printf("# text char %zu -> '%c' still opened\n", pos, subst[m]);
				}
				else if (r == OPEN_BAD_TEXT)
					by_text++;
				else if (r == OPEN_BAD_PARSE)
					by_parse++;
				else
					by_auth++;
				if (!wiped)
					not_wiped++;
				free(pt);
				free(mut);
			}
		unit_check(opened == 0 && not_wiped == 0,
				   "every single-character change of its text form fails (%d tries: %d in base64, %d in parse, %d in open)",
				   tried, by_text, by_parse, by_auth);

		/* truncated or extended text */
		{
			int			failures = 0;

			for (pos = 0; pos < t2len; pos++)
			{
				r = open_text(aead, t2, pos, ctx, &pt, &pt_len, &wiped);
				if (r == OPEN_OK || !wiped)
					failures++;
				free(pt);
			}
			unit_check(failures == 0, "every truncation of the text form fails");
		}
		free(bin);
		free(t2);
	}

	/* empty plaintext */
	{
		uint8_t		none[1] = {0};

		text = seal_to_text(aead, 1, NULL, 0, "ctx", none, 0);
		r = open_text(aead, text, strlen(text), "ctx", &pt, &pt_len, &wiped);
		unit_check(text != NULL && r == OPEN_OK && pt_len == 0 &&
				   strlen(text) == pgck_envelope_text_len(PGCK_MIN_ENVELOPE_LEN),
				   "empty plaintext seals to a minimal value and opens");
		free(pt);
		r = open_text(aead, text, strlen(text), "ctx2", &pt, &pt_len, &wiped);
		unit_check(r == OPEN_BAD_AUTH, "empty plaintext is still authenticated (wrong context fails)");
		free(pt);
		free(text);
	}

	/* 1 MiB plaintext */
	{
		size_t		big = 1024 * 1024;
		uint8_t    *src = xmalloc(big);
		char	   *bigtext;

		fill_random(src, big);
		bigtext = seal_to_text(aead, 2, (const uint8_t *) "0123456789abcdef", 16,
							   "public.docs.body", src, big);
		r = open_text(aead, bigtext, strlen(bigtext), "public.docs.body", &pt, &pt_len, &wiped);
		unit_check(bigtext != NULL && r == OPEN_OK && pt_len == big && memcmp(pt, src, big) == 0,
				   "1 MiB plaintext round trip through the text form");
		free(pt);
		/* flip one bit deep inside the ciphertext */
		bigtext[PGCK_TEXT_PREFIX_LEN + 700000] ^= 0x01;
		r = open_text(aead, bigtext, strlen(bigtext), "public.docs.body", &pt, &pt_len, &wiped);
		unit_check(r != OPEN_OK && wiped, "1 MiB value with one altered character fails and is wiped");
		free(pt);
		free(bigtext);
		free(src);
	}

	pgck_aead_free(aead);
	pgck_aead_free(other);
}

/* ----------------------------------------------------------------- random */

static int
cmp_nonce(const void *a, const void *b)
{
	return memcmp(a, b, PGCK_NONCE_LEN);
}

static void
test_random(void)
{
	int			n = 20000;
	uint8_t    *nonces = xmalloc((size_t) n * PGCK_NONCE_LEN);
	int			i;
	int			dups = 0;
	bool		ok = true;

	for (i = 0; i < n; i++)
		ok = ok && pgck_random_bytes(nonces + (size_t) i * PGCK_NONCE_LEN, PGCK_NONCE_LEN);
	qsort(nonces, n, PGCK_NONCE_LEN, cmp_nonce);
	for (i = 1; i < n; i++)
		if (memcmp(nonces + (size_t) (i - 1) * PGCK_NONCE_LEN,
				   nonces + (size_t) i * PGCK_NONCE_LEN, PGCK_NONCE_LEN) == 0)
			dups++;
	unit_check(ok && dups == 0, "pgck_random_bytes: %d successive nonces, all distinct (crossing %d pool refills)",
			   n, n * PGCK_NONCE_LEN / 4096);
	free(nonces);

	/* sizes around the pool's direct-RAND_bytes threshold; output not blank */
	{
		static const size_t sizes[] = {0, 1, 31, 1023, 1024, 1025, 4095, 4096, 4097, 100000};
		size_t		s;
		int			failures = 0;

		for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		{
			uint8_t    *a = xmalloc(sizes[s]);
			uint8_t    *b = xmalloc(sizes[s]);
			size_t		zeros = 0;
			size_t		k;

			memset(a, 0, sizes[s]);
			memset(b, 0, sizes[s]);
			if (!pgck_random_bytes(a, sizes[s]) || !pgck_random_bytes(b, sizes[s]))
				failures++;
			for (k = 0; k < sizes[s]; k++)
				zeros += (a[k] == 0);
			/*
			 * ~1/256 zero bytes expected; more than 1/16 (and 8 more, so that
			 * 2 zeros among 31 random bytes, which happens in 0.7% of runs,
			 * is not taken for a blank pool) means a blank pool
			 */
			if (sizes[s] >= 31 && (zeros > sizes[s] / 16 + 8 || memcmp(a, b, sizes[s]) == 0))
				failures++;
			free(a);
			free(b);
		}
		unit_check(failures == 0, "pgck_random_bytes: 0..100000 bytes, not blank, successive draws differ");
	}

	/*
	 * After fork() the child must not hand out the bytes the parent's pool
	 * holds next.  The parent draws once first so its pool is filled.
	 */
	{
		uint8_t		warm[PGCK_NONCE_LEN];
		uint8_t		child_bytes[64];
		uint8_t		parent_bytes[64];
		int			fds[2];
		pid_t		pid;
		int			status = 0;
		ssize_t		got = 0;

		ok = pgck_random_bytes(warm, sizeof(warm)) && pipe(fds) == 0;
		fflush(stdout);
		pid = ok ? fork() : -1;
		if (pid == 0)
		{
			uint8_t		mine[64];

			close(fds[0]);
			if (!pgck_random_bytes(mine, sizeof(mine)))
				_exit(3);
			if (write(fds[1], mine, sizeof(mine)) != (ssize_t) sizeof(mine))
				_exit(4);
			_exit(0);
		}
		if (pid > 0)
		{
			close(fds[1]);
			ok = pgck_random_bytes(parent_bytes, sizeof(parent_bytes));
			while (got < (ssize_t) sizeof(child_bytes))
			{
				ssize_t		r = read(fds[0], child_bytes + got, sizeof(child_bytes) - got);

				if (r <= 0)
					break;
				got += r;
			}
			close(fds[0]);
			waitpid(pid, &status, 0);
		}
		unit_check(pid > 0 && ok && got == (ssize_t) sizeof(child_bytes) &&
				   WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
				   memcmp(child_bytes, parent_bytes, sizeof(child_bytes)) != 0,
				   "pgck_random_bytes: after fork() the child's bytes differ from the parent's next bytes");
	}
}

int
main(int argc, char **argv)
{
	(void) argc;
	(void) argv;
	setvbuf(stdout, NULL, _IOLBF, 0);
	unit_check(pgck_crypto_init(), "pgck_crypto_init");

	test_base64_roundtrip();
	test_base64_rejects();
	test_base64_canonical();
	test_envelope_roundtrip();
	test_envelope_key_versions();
	test_envelope_truncation();
	test_envelope_rejects();
	test_text_form();
	test_seal_open();
	test_random();
	return unit_finish();
}
