/*-------------------------------------------------------------------------
 *
 * test_blind_tag.c
 *		Unit tests of src/blind_tag.c (blind-index transforms and tag
 *		truncation) against a reference written independently here: the
 *		transforms from explicit alphabets (the README's table), the
 *		truncation bit by bit.
 *
 * Usage: test_blind_tag [vectors-folder]   (the argument is accepted for a
 * uniform command line and not used).
 *
 * Covered: every byte 0..255 alone, embedded between other bytes, and
 * leading/trailing (email trimming); 20,000 random strings of random bytes
 * (fixed seed, lengths 0..300, some biased to white space and letters);
 * every index_bits 1..256 on an all-ones MAC (a mask keeping one bit too
 * many shows at once), an all-zeros MAC and 200 random MACs each.  Buffers
 * are malloc'd at exactly the size the API promises to stay within (ASan).
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blind_tag.h"
#include "unit.h"

/* ------------------------------------------------------------ reference */

static const char upper_alphabet[26] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
static const char lower_alphabet[26] = "abcdefghijklmnopqrstuvwxyz";
static const char digit_alphabet[10] = "0123456789";
static const char space_alphabet[6] = {' ', '\t', '\n', '\v', '\f', '\r'};

static size_t
ref_lower(const unsigned char *s, size_t len, unsigned char *out)
{
	for (size_t i = 0; i < len; i++)
	{
		const char *p = memchr(upper_alphabet, s[i], sizeof(upper_alphabet));

		out[i] = p ? (unsigned char) lower_alphabet[p - upper_alphabet] : s[i];
	}
	return len;
}

static bool
ref_is_space(unsigned char c)
{
	return memchr(space_alphabet, c, sizeof(space_alphabet)) != NULL;
}

static size_t
ref_email(const unsigned char *s, size_t len, unsigned char *out)
{
	size_t		start = 0;
	size_t		end = len;

	while (start < end && ref_is_space(s[start]))
		start++;
	while (end > start && ref_is_space(s[end - 1]))
		end--;
	return ref_lower(s + start, end - start, out);
}

static size_t
ref_digits(const unsigned char *s, size_t len, unsigned char *out)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
		if (memchr(digit_alphabet, s[i], sizeof(digit_alphabet)) != NULL)
			out[n++] = s[i];
	return n;
}

/* bit i of a byte string, most significant bit of each byte first */
static int
bit_at(const uint8_t *b, int i)
{
	return (b[i / 8] >> (7 - i % 8)) & 1;
}

/* ------------------------------------------------------------ helpers */

typedef size_t (*transform_fn) (const char *, size_t, char *);
typedef size_t (*ref_fn) (const unsigned char *, size_t, unsigned char *);

static const struct
{
	const char *name;
	transform_fn fn;
	ref_fn ref;
}			transforms[] = {
	{"lower", pgck_normalize_lower, ref_lower},
	{"email", pgck_normalize_email, ref_email},
	{"digits", pgck_normalize_digits, ref_digits},
};

#define NTRANSFORMS (sizeof(transforms) / sizeof(transforms[0]))

static int	mismatches_shown;

/* Does transform t give the reference's bytes for s[0..len)? */
static bool
same_as_reference(int t, const unsigned char *s, size_t len, const char *what)
{
	char	   *in = malloc(len ? len : 1);
	char	   *out = malloc(len ? len : 1);
	unsigned char *ref = malloc(len ? len : 1);
	size_t		n;
	size_t		rn;
	bool		ok;

	memcpy(in, s, len);
	n = transforms[t].fn(in, len, out);
	rn = transforms[t].ref(s, len, ref);
	ok = n == rn && memcmp(out, ref, n) == 0 && memcmp(in, s, len) == 0;
	if (!ok && mismatches_shown++ < 10)
	{
		printf("# %s differs from the reference on %s (length %zu):", transforms[t].name, what, len);
		for (size_t i = 0; i < len && i < 16; i++)
			printf(" %02x", s[i]);
		printf("\n");
	}
	free(in);
	free(out);
	free(ref);
	return ok;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;	/* fixed seed */

static uint64_t
rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------ tests */

static void
test_every_byte(void)
{
	for (size_t t = 0; t < NTRANSFORMS; t++)
	{
		int			bad_alone = 0;
		int			bad_embedded = 0;
		int			bad_edges = 0;

		mismatches_shown = 0;
		for (int c = 0; c < 256; c++)
		{
			unsigned char one[1] = {(unsigned char) c};
			unsigned char mid[5] = {'a', 'Z', (unsigned char) c, '7', ' '};
			unsigned char edges[7] = {(unsigned char) c, (unsigned char) c, 'x', 'Q', '5',
			(unsigned char) c, (unsigned char) c};

			bad_alone += !same_as_reference(t, one, 1, "a single byte");
			bad_embedded += !same_as_reference(t, mid, sizeof(mid), "an embedded byte");
			bad_edges += !same_as_reference(t, edges, sizeof(edges), "leading and trailing bytes");
		}
		unit_check(bad_alone == 0, "%s: each byte 0..255 alone as the reference (%d differ)",
				   transforms[t].name, bad_alone);
		unit_check(bad_embedded == 0, "%s: each byte 0..255 embedded as the reference (%d differ)",
				   transforms[t].name, bad_embedded);
		unit_check(bad_edges == 0, "%s: each byte 0..255 leading and trailing as the reference (%d differ)",
				   transforms[t].name, bad_edges);
	}
}

/*
 * Each byte 0..255 at each offset of a 24-byte string (so in every lane of the
 * eight-byte steps of pgck_normalize_lower and in its byte-wise tail), the
 * other bytes upper-case letters, the bytes next to 'A'..'Z' and UTF-8 lead
 * and continuation bytes whose low seven bits are letters.
 */
static void
test_every_byte_every_lane(void)
{
	static const unsigned char fill[] = {'A', 'Z', '@', '[', 0xC1, 0xDA, 0x81, 'q', 'M', '`', '{', 0xFF};

	for (size_t t = 0; t < NTRANSFORMS; t++)
	{
		int			bad = 0;

		mismatches_shown = 0;
		for (int c = 0; c < 256; c++)
			for (size_t pos = 0; pos < 24; pos++)
			{
				unsigned char s[24];

				for (size_t j = 0; j < sizeof(s); j++)
					s[j] = fill[(j + (size_t) c) % sizeof(fill)];
				s[pos] = (unsigned char) c;
				bad += !same_as_reference(t, s, sizeof(s), "a byte at each offset");
			}
		unit_check(bad == 0, "%s: each byte 0..255 at each of 24 offsets as the reference (%d differ)",
				   transforms[t].name, bad);
	}
}

static void
test_random_strings(void)
{
	/* byte pools: anything, or mostly white space, letters and digits */
	static const char biased[] = " \t\n\v\f\rAZaz@.+-09YBbyMm";

	for (size_t t = 0; t < NTRANSFORMS; t++)
	{
		int			bad = 0;
		int			n = 20000;

		mismatches_shown = 0;
		for (int i = 0; i < n; i++)
		{
			size_t		len = rng() % 301;
			unsigned char *s = malloc(len ? len : 1);
			bool		bias = i % 2 == 1;

			for (size_t j = 0; j < len; j++)
				s[j] = bias && rng() % 4 != 0 ? (unsigned char) biased[rng() % (sizeof(biased) - 1)]
					: (unsigned char) (rng() & 0xFF);
			bad += !same_as_reference(t, s, len, "a random string");
			free(s);
		}
		unit_check(bad == 0, "%s: %d random strings (fixed seed) as the reference (%d differ)",
				   transforms[t].name, n, bad);
	}
	/* the empty string, and only white space */
	for (size_t t = 0; t < NTRANSFORMS; t++)
	{
		unit_check(same_as_reference(t, (const unsigned char *) "", 0, "the empty string"),
				   "%s: the empty string", transforms[t].name);
		unit_check(same_as_reference(t, (const unsigned char *) " \t\n\v\f\r", 6, "white space"),
				   "%s: only white space", transforms[t].name);
	}
}

/* One MAC truncated to index_bits against the bit-by-bit reference. */
static bool
truncation_ok(const uint8_t *mac, int bits)
{
	uint8_t    *out = malloc(PGCK_BLIND_MAC_LEN);
	size_t		want_len = (size_t) (bits + 7) / 8;
	size_t		len;
	bool		ok;

	memset(out, 0xA5, PGCK_BLIND_MAC_LEN);
	len = pgck_blind_tag_truncate(mac, bits, out);
	ok = len == want_len;
	for (int i = 0; ok && i < (int) (8 * want_len); i++)
		ok = bit_at(out, i) == (i < bits ? bit_at(mac, i) : 0);

	/* in place (the MAC computed in the tag's buffer): the same tag, the rest wiped */
	memcpy(out, mac, PGCK_BLIND_MAC_LEN);
	len = pgck_blind_tag_truncate(out, bits, out);
	ok = ok && len == want_len;
	for (int i = 0; ok && i < 8 * PGCK_BLIND_MAC_LEN; i++)
		ok = bit_at(out, i) == (i < bits ? bit_at(mac, i) : 0);
	free(out);
	return ok;
}

static void
test_truncation(void)
{
	uint8_t		ones[PGCK_BLIND_MAC_LEN];
	uint8_t		zeros[PGCK_BLIND_MAC_LEN];
	int			bad_ones = 0;
	int			bad_zeros = 0;
	int			bad_random = 0;
	int			first_bad = 0;

	memset(ones, 0xFF, sizeof(ones));
	memset(zeros, 0, sizeof(zeros));
	for (int bits = 1; bits <= 256; bits++)
	{
		int			bad = 0;

		bad_ones += !truncation_ok(ones, bits);
		bad_zeros += !truncation_ok(zeros, bits);
		for (int i = 0; i < 200; i++)
		{
			uint8_t		mac[PGCK_BLIND_MAC_LEN];

			for (int j = 0; j < PGCK_BLIND_MAC_LEN; j++)
				mac[j] = (uint8_t) rng();
			bad += !truncation_ok(mac, bits);
		}
		bad_random += bad;
		if ((bad || !truncation_ok(ones, bits)) && first_bad == 0)
			first_bad = bits;
	}
	unit_check(bad_ones == 0, "truncation of an all-ones MAC, index_bits 1..256: length and every bit as the reference (%d differ, first index_bits %d)",
			   bad_ones, first_bad);
	unit_check(bad_zeros == 0, "truncation of an all-zeros MAC, index_bits 1..256 (%d differ)", bad_zeros);
	unit_check(bad_random == 0, "truncation of 200 random MACs per index_bits 1..256 (%d differ, first index_bits %d)",
			   bad_random, first_bad);
}

/* domain, prefix(n), suffix(n) (0.3.0): fixed cases, UTF-8 counted by character */
static int
same_as(size_t (*f) (const char *, size_t, char *), const char *in, const char *want)
{
	char		out[256];
	size_t		n = f(in, strlen(in), out);

	return n == strlen(want) && memcmp(out, want, n) == 0;
}

static int
affix_with(int prefix, pgck_char_len_fn char_len, const char *in, int n, const char *want)
{
	char		out[256];
	size_t		len = prefix ? pgck_transform_prefix(in, strlen(in), n, char_len, out)
		: pgck_transform_suffix(in, strlen(in), n, char_len, out);

	return len == strlen(want) && memcmp(out, want, len) == 0;
}

static int
affix_is(int prefix, const char *in, int n, const char *want)
{
	return affix_with(prefix, NULL, in, n, want);
}

/* character lengths of a single-byte encoding (LATIN1) and of EUC-JP */
static int
single_byte_len(const char *p)
{
	(void) p;
	return 1;
}

static int
euc_jp_len(const char *p)
{
	unsigned char c = (unsigned char) *p;

	return c == 0x8f ? 3 : (c >= 0x80 ? 2 : 1);
}

static int
zero_len(const char *p)
{
	(void) p;
	return 0;
}

static void
test_named_transforms(void)
{
	unit_check(same_as(pgck_normalize_domain, " Ann@EXAMPLE.com ", "example.com") &&
			   same_as(pgck_normalize_domain, "example.com", "example.com") &&
			   same_as(pgck_normalize_domain, "a@b@Sub.Example.ORG", "sub.example.org") &&
			   same_as(pgck_normalize_domain, "trailing@", "") &&
			   same_as(pgck_normalize_domain, "", ""),
			   "domain: what follows the last @, trimmed and folded; all of it without an @");
	unit_check(affix_is(1, "4242 4242", 4, "4242") && affix_is(0, "4111 1111 1111 4242", 4, "4242") &&
			   affix_is(1, "ab", 4, "ab") && affix_is(0, "ab", 4, "ab") && affix_is(1, "", 3, "") &&
			   affix_is(1, "abc", 3, "abc") && affix_is(0, "abcd", 1, "d"),
			   "prefix(n)/suffix(n) of ASCII, shorter values whole");
	unit_check(affix_is(1, "\xc3\xa9t\xc3\xa9", 2, "\xc3\xa9t") &&
			   affix_is(0, "caf\xc3\xa9", 2, "f\xc3\xa9") &&
			   affix_is(0, "\xe2\x82\xac\xe2\x82\xac", 1, "\xe2\x82\xac") &&
			   affix_is(1, "\xf0\x9f\x98\x80x", 1, "\xf0\x9f\x98\x80"),
			   "prefix(n)/suffix(n) count UTF-8 characters, never splitting one");
	/* LATIN1 "\xb1\xb2\xb3456": 0x80-0xBF are characters there (the UTF-8 rule keeps it all) */
	unit_check(affix_with(1, single_byte_len, "\xb1\xb2\xb3" "456", 3, "\xb1\xb2\xb3") &&
			   affix_with(0, single_byte_len, "12\xb1\xb2\xb3", 3, "\xb1\xb2\xb3") &&
			   affix_with(0, single_byte_len, "\xc3\xa9", 1, "\xa9") &&
			   affix_with(1, single_byte_len, "ab", 4, "ab") && affix_with(0, single_byte_len, "ab", 4, "ab") &&
			   affix_with(0, single_byte_len, "", 2, "") &&
			   affix_is(1, "\xb1\xb2\xb3" "456", 3, "\xb1\xb2\xb3" "456"),
			   "prefix(n)/suffix(n) with a single-byte encoding's lengths count bytes");
	/* EUC-JP: two-byte kana, three-byte 0x8F sequences, ASCII */
	unit_check(affix_with(1, euc_jp_len, "\xa4\xa2\xa4\xa4\xa4\xa6\xa4\xa8", 3, "\xa4\xa2\xa4\xa4\xa4\xa6") &&
			   affix_with(0, euc_jp_len, "\xa4\xa2\xa4\xa4\xa4\xa6\xa4\xa8", 2, "\xa4\xa6\xa4\xa8") &&
			   affix_with(0, euc_jp_len, "a\x8f\xb0\xa1" "b", 2, "\x8f\xb0\xa1" "b") &&
			   affix_with(1, euc_jp_len, "a\x8f\xb0\xa1" "b", 2, "a\x8f\xb0\xa1") &&
			   affix_with(0, euc_jp_len, "\xa4\xa2x", 5, "\xa4\xa2x"),
			   "prefix(n)/suffix(n) with EUC-JP's lengths never split a character");
	/* lengths past the end or below 1: the rest of the value, or one byte */
	unit_check(affix_with(1, euc_jp_len, "ab\xa4", 3, "ab\xa4") && affix_with(0, euc_jp_len, "ab\xa4", 1, "\xa4") &&
			   affix_with(1, euc_jp_len, "\x8f" "a", 1, "\x8f" "a") &&
			   affix_with(1, zero_len, "abc", 2, "ab") && affix_with(0, zero_len, "abc", 2, "bc"),
			   "prefix(n)/suffix(n) clamp a character length to the value and to at least one byte");
}

int
main(int argc, char **argv)
{
	(void) argc;
	(void) argv;
	test_every_byte();
	test_every_byte_every_lane();
	test_random_strings();
	test_truncation();
	test_named_transforms();
	return unit_finish();
}
