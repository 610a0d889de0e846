/*
 * test_ore.c
 *		Unit tests of src/ore.c: the CLWW order-revealing terms and the
 *		order-preserving bit strings of int8, date, timestamptz and numeric.
 *
 * Checks, under a fixed test key: compare(enc(a), enc(b)) == sign(a - b) over
 * edge values and many random pairs per domain (numeric against strtold,
 * which is exact for the <= 15-digit decimals generated); the first
 * differing trit is the first differing bit (the scheme's stated leakage,
 * no more); terms are deterministic; malformed terms are refused; numeric
 * limits refused; terms of different keys (the same epoch) and of
 * different epochs compare in one total order, each key's terms a run of
 * their own, never by their trits; and fixed vectors (the term bytes in hex)
 * that test/ore_reference.py, written separately from the paper, reproduces.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ore.h"
#include "unit.h"

static PgckOreKey okey;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rnd(void)
{
	/* splitmix64: reproducible, no libc dependency */
	uint64_t	z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static size_t
term_int64(int domain, int64_t v, uint8_t *out)
{
	uint8_t		bits[8];

	pgck_ore_int64_bits(v, bits);
	return pgck_ore_encrypt(&okey, domain, 1, bits, out);
}

static size_t
term_date(int32_t v, uint8_t *out)
{
	uint8_t		bits[4];

	pgck_ore_int32_bits(v, bits);
	return pgck_ore_encrypt(&okey, PGCK_ORE_DATE, 1, bits, out);
}

static size_t
term_numeric(const char *s, uint8_t *out)
{
	uint8_t		bits[PGCK_ORE_MAX_BIT_BYTES];

	if (pgck_ore_numeric_bits(s, strlen(s), bits) != PGCK_ORE_NUM_OK)
		return 0;
	return pgck_ore_encrypt(&okey, PGCK_ORE_NUMERIC, 1, bits, out);
}

static int
cmp_terms(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int			c;

	if (pgck_ore_compare(a, alen, b, blen, &c) != PGCK_ORE_CMP_OK)
		return 99;
	return c;
}

static int
sign64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int
first_diff_trit(const uint8_t *a, const uint8_t *b, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (((a[PGCK_ORE_HEADER_LEN + i / 4] >> (6 - 2 * (i % 4))) & 3) !=
			((b[PGCK_ORE_HEADER_LEN + i / 4] >> (6 - 2 * (i % 4))) & 3))
			return i;
	return n;
}

static int
first_diff_bit(const uint8_t *a, const uint8_t *b, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (((a[i / 8] >> (7 - i % 8)) & 1) != ((b[i / 8] >> (7 - i % 8)) & 1))
			return i;
	return n;
}

static void
hex(const uint8_t *b, size_t n, char *out)
{
	size_t		i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* A random decimal of 1..15 significant digits, exponent -100..100, as numeric_out writes it. */
static void
random_decimal(char *out)
{
	int			k = 1 + (int) (rnd() % 15);
	int			scale = (int) (rnd() % 40) - 20;	/* digits after the point */
	char		digits[64];
	int			i;
	int			n = 0;
	int			neg = (int) (rnd() % 2);
	char	   *p = out;

	for (i = 0; i < k; i++)
		digits[i] = (char) ('0' + rnd() % 10);
	digits[k] = 0;
	if (neg)
		*p++ = '-';
	if (scale <= 0)
	{
		/* integer: digits followed by -scale zeros */
		p += sprintf(p, "%s", digits);
		for (i = 0; i < -scale; i++)
			*p++ = '0';
		*p = 0;
	}
	else if (scale >= k)
	{
		p += sprintf(p, "0.");
		for (i = 0; i < scale - k; i++)
			*p++ = '0';
		p += sprintf(p, "%s", digits);
	}
	else
	{
		n = k - scale;
		memcpy(p, digits, n);
		p += n;
		*p++ = '.';
		p += sprintf(p, "%s", digits + n);
	}
	/* strip leading zeros of the integer part, as numeric_out would */
	{
		char	   *q = out + (out[0] == '-');

		while (q[0] == '0' && q[1] >= '0' && q[1] <= '9')
			memmove(q, q + 1, strlen(q));
	}
}

int
main(void)
{
	uint8_t		index_key[32];
	uint8_t		ore_key[32];
	uint8_t		a[PGCK_ORE_TERM_MAX];
	uint8_t		b[PGCK_ORE_TERM_MAX];
	size_t		alen;
	size_t		blen;
	char		hx[2 * PGCK_ORE_TERM_MAX + 1];
	int			i;
	int			bad;

	for (i = 0; i < 32; i++)
		index_key[i] = (uint8_t) i;
	unit_check(pgck_ore_derive_key(index_key, ore_key), "ORE key derived");
	hex(ore_key, 32, hx);
	/* the same value test/ore_reference.py prints for this index key */
	unit_check(strcmp(hx, "95228bf4cb845137c577aad2b6327aa9d54f94c7a1d2249422d9a7b0fcb0c7b3") == 0,
			   "ORE key vector (%s)", hx);
	unit_check(pgck_ore_key_init(&okey, index_key), "PRF keyed, key id computed");
	hex(okey.id, PGCK_ORE_KEY_ID_LEN, hx);
	unit_check(strcmp(hx, "59032eb48391b5dd") == 0, "ORE key id vector (%s)", hx);

	/* sizes: a 64-bit value's term in at most 64 bytes */
	unit_check(pgck_ore_term_len(PGCK_ORE_INT8) == 27, "int8 term is 27 bytes");
	unit_check(pgck_ore_term_len(PGCK_ORE_DATE) == 19, "date term is 19 bytes");
	unit_check(pgck_ore_term_len(PGCK_ORE_NUMERIC) == 46, "numeric term is 46 bytes");
	unit_check(pgck_ore_term_len(9) == 0, "unknown domain has no term");

	/* edge values of int8 (timestamptz: the same encoding, infinities at the ends) */
	{
		static const int64_t edges[] = {INT64_MIN, INT64_MIN + 1, -4294967296LL, -2, -1, 0, 1, 2,
		4294967296LL, INT64_MAX - 1, INT64_MAX};
		size_t		n = sizeof(edges) / sizeof(edges[0]);
		size_t		x,
					y;

		bad = 0;
		for (x = 0; x < n; x++)
			for (y = 0; y < n; y++)
			{
				alen = term_int64(PGCK_ORE_INT8, edges[x], a);
				blen = term_int64(PGCK_ORE_INT8, edges[y], b);
				bad += cmp_terms(a, alen, b, blen) != sign64(edges[x], edges[y]);
				alen = term_int64(PGCK_ORE_TIMESTAMPTZ, edges[x], a);
				blen = term_int64(PGCK_ORE_TIMESTAMPTZ, edges[y], b);
				bad += cmp_terms(a, alen, b, blen) != sign64(edges[x], edges[y]);
			}
		unit_check(bad == 0, "int8/timestamptz edge values: order equals plaintext order (%d wrong)", bad);
	}

	/* random int8 pairs, near pairs (long common prefixes) and the leakage */
	{
		int			wrong = 0;
		int			leak = 0;

		for (i = 0; i < 50000; i++)
		{
			int64_t		x = (int64_t) rnd();
			int64_t		y = (i % 3 == 0) ? x : (i % 3 == 1) ? x + (int64_t) (rnd() % 1000) - 500 : (int64_t) rnd();
			uint8_t		bx[8],
						by[8];

			if (i % 7 == 0)
				y = -x;
			alen = term_int64(PGCK_ORE_INT8, x, a);
			blen = term_int64(PGCK_ORE_INT8, y, b);
			wrong += cmp_terms(a, alen, b, blen) != sign64(x, y);
			pgck_ore_int64_bits(x, bx);
			pgck_ore_int64_bits(y, by);
			leak += first_diff_trit(a, b, 64) != first_diff_bit(bx, by, 64);
		}
		unit_check(wrong == 0, "50000 random int8 pairs: order equals plaintext order (%d wrong)", wrong);
		unit_check(leak == 0, "the first differing trit is the first differing bit (%d not)", leak);
	}

	/* dates, infinities included */
	{
		int			wrong = 0;

		for (i = 0; i < 30000; i++)
		{
			int32_t		x = (i % 50 == 0) ? INT32_MIN : (i % 50 == 1) ? INT32_MAX : (int32_t) rnd();
			int32_t		y = (i % 5 == 0) ? x : (int32_t) rnd();

			if (i % 4 == 0)
				y = x + 1;
			alen = term_date(x, a);
			blen = term_date(y, b);
			wrong += cmp_terms(a, alen, b, blen) != (x < y ? -1 : x > y);
		}
		unit_check(wrong == 0, "30000 date pairs: order equals plaintext order (%d wrong)", wrong);
	}

	/* numeric: fixed cases */
	{
		static const char *const asc[] = {"-Infinity", "-1e", "-99999999999999999999999999999999999999",
			"-1.5", "-1", "-0.000001", "0", "0.0000000000000000000000000000000000001",
			"0.5", "1", "1.0000000000000000000000000000000000001", "1.5",
			"10", "12345678901234567890123456789012345678", "Infinity", "NaN"};
		size_t		n = sizeof(asc) / sizeof(asc[0]);
		size_t		x,
					y;

		bad = 0;
		for (x = 0; x < n; x++)
		{
			if (strcmp(asc[x], "-1e") == 0)
				continue;
			for (y = 0; y < n; y++)
			{
				if (strcmp(asc[y], "-1e") == 0)
					continue;
				alen = term_numeric(asc[x], a);
				blen = term_numeric(asc[y], b);
				bad += alen == 0 || blen == 0 ||
					cmp_terms(a, alen, b, blen) != (x < y ? -1 : x > y);
			}
		}
		unit_check(bad == 0, "numeric edge values in order (%d wrong)", bad);
		alen = term_numeric("1.5", a);
		blen = term_numeric("1.500000", b);
		unit_check(cmp_terms(a, alen, b, blen) == 0 && alen == blen && memcmp(a, b, alen) == 0,
				   "1.5 and 1.500000 give the same term");
		alen = term_numeric("-0", a);
		blen = term_numeric("0.000", b);
		unit_check(cmp_terms(a, alen, b, blen) == 0, "-0 and 0.000 are equal");
	}

	/* numeric: refusals */
	{
		uint8_t		bits[PGCK_ORE_MAX_BIT_BYTES];

#define NUMST(s) pgck_ore_numeric_bits(s, strlen(s), bits)
		unit_check(NUMST("123456789012345678901234567890123456789") == PGCK_ORE_NUM_TOO_PRECISE,
				   "39 significant digits refused");
		unit_check(NUMST("12345678901234567890123456789012345678000000") == PGCK_ORE_NUM_OK,
				   "38 significant digits and trailing zeros accepted");
		unit_check(NUMST("1.00000000000000000000000000000000000001") == PGCK_ORE_NUM_TOO_PRECISE,
				   "39 significant digits after the point refused");
		{
			char		big[200];

			memset(big, '0', sizeof(big));
			big[0] = '1';
			big[127] = 0;		/* 1e126: E = 127 */
			unit_check(NUMST(big) == PGCK_ORE_NUM_OK, "1e126 accepted");
			big[127] = '0';
			big[128] = 0;		/* 1e127: E = 128 */
			unit_check(NUMST(big) == PGCK_ORE_NUM_OUT_OF_RANGE, "1e127 refused");
			strcpy(big, "0.");
			memset(big + 2, '0', 128);
			strcpy(big + 130, "1");	/* 1e-129: E = -128 */
			unit_check(NUMST(big) == PGCK_ORE_NUM_OK, "1e-129 accepted");
			strcpy(big, "0.");
			memset(big + 2, '0', 129);
			strcpy(big + 131, "1");	/* 1e-130: E = -129 */
			unit_check(NUMST(big) == PGCK_ORE_NUM_OUT_OF_RANGE, "1e-130 refused");
		}
		unit_check(NUMST("") == PGCK_ORE_NUM_SYNTAX && NUMST("-") == PGCK_ORE_NUM_SYNTAX &&
				   NUMST("1.") == PGCK_ORE_NUM_SYNTAX && NUMST(".5") == PGCK_ORE_NUM_SYNTAX &&
				   NUMST("1e5") == PGCK_ORE_NUM_SYNTAX && NUMST("1.2.3") == PGCK_ORE_NUM_SYNTAX &&
				   NUMST("nan") == PGCK_ORE_NUM_SYNTAX && NUMST(" 1") == PGCK_ORE_NUM_SYNTAX,
				   "malformed numeric text refused");
#undef NUMST
	}

	/* numeric: random decimals of many scales against strtold */
	{
		int			wrong = 0;
		char		sx[128],
					sy[160];

		for (i = 0; i < 30000; i++)
		{
			long double x,
						y;

			random_decimal(sx);
			if (i % 5 == 0)
				strcpy(sy, sx);
			else if (i % 5 == 1)
			{
				/* the same value with trailing zeros */
				snprintf(sy, sizeof(sy), "%s%s000", sx, strchr(sx, '.') ? "" : ".");
			}
			else
				random_decimal(sy);
			x = strtold(sx, NULL);
			y = strtold(sy, NULL);
			alen = term_numeric(sx, a);
			blen = term_numeric(sy, b);
			if (alen == 0 || blen == 0 || cmp_terms(a, alen, b, blen) != (x < y ? -1 : x > y))
			{
				if (wrong++ < 3)
					printf("# wrong: %s vs %s\n", sx, sy);
			}
		}
		unit_check(wrong == 0, "30000 random numeric pairs of many scales: order equals plaintext order (%d wrong)", wrong);
	}

	/* determinism, domains, epochs, malformed terms */
	alen = term_int64(PGCK_ORE_INT8, 42, a);
	blen = term_int64(PGCK_ORE_INT8, 42, b);
	unit_check(alen == 27 && blen == 27 && memcmp(a, b, alen) == 0, "terms are deterministic");
	blen = term_int64(PGCK_ORE_TIMESTAMPTZ, 42, b);
	{
		int			c;

		unit_check(pgck_ore_compare(a, alen, b, blen, &c) == PGCK_ORE_CMP_DOMAINS,
				   "terms of different domains do not compare");
		unit_check(memcmp(a + PGCK_ORE_HEADER_LEN, b + PGCK_ORE_HEADER_LEN, 16) != 0,
				   "domains use independent PRFs");
		unit_check(memcmp(a + 3, b + 3, PGCK_ORE_KEY_ID_LEN) == 0 &&
				   memcmp(a + 3, okey.id, PGCK_ORE_KEY_ID_LEN) == 0,
				   "a term carries its key id after the epoch, the same in every domain");
		b[2] = 0;				/* epoch 0 < 1 */
		b[1] = PGCK_ORE_INT8;
		unit_check(pgck_ore_compare(a, alen, b, blen, &c) == PGCK_ORE_CMP_OK && c == 1,
				   "a later epoch sorts after an earlier one");
		memcpy(b, a, alen);
		b[PGCK_ORE_HEADER_LEN] |= 0xC0;
		unit_check(pgck_ore_compare(a, alen, b, blen, &c) == PGCK_ORE_CMP_MALFORMED,
				   "a trit of 3 is refused");
		unit_check(pgck_ore_compare(a, alen - 1, a, alen - 1, &c) == PGCK_ORE_CMP_MALFORMED,
				   "a short term is refused");
		memcpy(b, a, alen);
		b[0] = 2;
		unit_check(pgck_ore_compare(b, alen, a, alen, &c) == PGCK_ORE_CMP_MALFORMED,
				   "an unknown scheme is refused");
		alen = term_numeric("1", a);
		memcpy(b, a, alen);
		b[alen - 1] |= 1;
		unit_check(!pgck_ore_term_valid(b, alen), "non-zero padding bits are refused");
	}

	/*
	 * Terms of several ORE keys in one B-tree (outside audit "input" F1):
	 * keys A and B at the same epoch, and A's next index key version (key C,
	 * epoch 2).  Across keys the trit comparison means nothing and is not
	 * transitive; the header must decide: every pair antisymmetric, every
	 * triple transitive, each key's terms one run in plaintext order.
	 */
	{
		enum
		{
			NKEYS = 3, PER_KEY = 40
		};
		PgckOreKey	keys[NKEYS];
		static const uint8_t epochs[NKEYS] = {1, 1, 2};
		uint8_t		t[NKEYS * PER_KEY][PGCK_ORE_TERM_MAX];
		int64_t		v[NKEYS * PER_KEY];
		int			kk[NKEYS * PER_KEY];
		int			n = NKEYS * PER_KEY;
		size_t		len = pgck_ore_term_len(PGCK_ORE_INT8);
		int			x,
					y,
					z,
					c;
		int			asym = 0,
					intrans = 0,
					runs = 0,
					order = 0,
					unmade = 0;

		for (x = 0; x < NKEYS; x++)
		{
			uint8_t		ik[32];

			for (i = 0; i < 32; i++)
				ik[i] = (uint8_t) (32 * (x + 1) + i);
			unit_check(pgck_ore_key_init(&keys[x], ik), "ORE key %d keyed", x);
		}
		unit_check(memcmp(keys[0].id, keys[1].id, PGCK_ORE_KEY_ID_LEN) != 0 &&
				   memcmp(keys[0].id, okey.id, PGCK_ORE_KEY_ID_LEN) != 0,
				   "different ORE keys have different key ids");
		for (x = 0; x < n; x++)
		{
			uint8_t		bits[8];

			kk[x] = x % NKEYS;
			/* small values: long common prefixes, so the trits decide late */
			v[x] = (int64_t) (rnd() % 64) - 32;
			pgck_ore_int64_bits(v[x], bits);
			unmade += pgck_ore_encrypt(&keys[kk[x]], PGCK_ORE_INT8, epochs[kk[x]], bits, t[x]) != len;
		}
		unit_check(unmade == 0, "terms of three keys made (%d not)", unmade);
		for (x = 0; x < n; x++)
			for (y = 0; y < n; y++)
			{
				int			cy = cmp_terms(t[x], len, t[y], len);

				asym += cy == 99 || cy != -cmp_terms(t[y], len, t[x], len);
				if (kk[x] == kk[y])
					order += cy != sign64(v[x], v[y]);
				else
				{
					/* another key's term: by epoch, then key id, whatever the values */
					int			want = epochs[kk[x]] != epochs[kk[y]] ?
						(epochs[kk[x]] < epochs[kk[y]] ? -1 : 1) :
						(memcmp(keys[kk[x]].id, keys[kk[y]].id, PGCK_ORE_KEY_ID_LEN) < 0 ? -1 : 1);

					runs += cy != want;
				}
				if (cy < 0)
					for (z = 0; z < n; z++)
						intrans += cmp_terms(t[y], len, t[z], len) < 0 &&
							cmp_terms(t[x], len, t[z], len) >= 0;
			}
		unit_check(asym == 0, "terms of three keys: every pair compares, antisymmetric (%d not)", asym);
		unit_check(intrans == 0, "terms of three keys: transitive (%d triples not)", intrans);
		unit_check(runs == 0, "terms of another key order by epoch, then key id (%d not)", runs);
		unit_check(order == 0, "terms of one key keep plaintext order among other keys' (%d not)", order);

		/* the whole key id decides: a difference in its last byte orders the terms */
		memcpy(a, t[0], len);
		memcpy(b, t[0], len);
		b[2 + PGCK_ORE_KEY_ID_LEN] ^= 1;
		unit_check(pgck_ore_compare(a, len, b, len, &c) == PGCK_ORE_CMP_OK &&
				   c == (a[2 + PGCK_ORE_KEY_ID_LEN] < b[2 + PGCK_ORE_KEY_ID_LEN] ? -1 : 1),
				   "terms that differ only in the last key id byte order by it");
		b[2 + PGCK_ORE_KEY_ID_LEN] ^= 1;
		b[3] ^= 0x80;
		unit_check(pgck_ore_compare(a, len, b, len, &c) == PGCK_ORE_CMP_OK &&
				   c == (a[3] < b[3] ? -1 : 1),
				   "terms that differ only in the first key id byte order by it");
		/* the epoch before the key id */
		memcpy(b, t[0], len);
		b[2] = (uint8_t) (a[2] + 1);
		b[3] = (uint8_t) (a[3] ^ 0xFF);
		unit_check(pgck_ore_compare(a, len, b, len, &c) == PGCK_ORE_CMP_OK && c == -1,
				   "a later epoch sorts after an earlier one whatever the key ids");
		for (x = 0; x < NKEYS; x++)
			pgck_ore_key_free(&keys[x]);
	}

	/* fixed vectors, also produced by test/ore_reference.py */
	{
		static const struct
		{
			int			domain;
			const char *value;
			const char *term;
		}			vec[] = {
#include "ore_vectors.h"
		};
		size_t		n = sizeof(vec) / sizeof(vec[0]);
		size_t		x;

		bad = 0;
		for (x = 0; x < n; x++)
		{
			if (vec[x].domain == PGCK_ORE_NUMERIC)
				alen = term_numeric(vec[x].value, a);
			else if (vec[x].domain == PGCK_ORE_DATE)
				alen = term_date((int32_t) strtol(vec[x].value, NULL, 10), a);
			else
				alen = term_int64(vec[x].domain, strtoll(vec[x].value, NULL, 10), a);
			hex(a, alen, hx);
			if (strcmp(hx, vec[x].term) != 0)
			{
				bad++;
				printf("# vector %zu (%s): %s\n", x, vec[x].value, hx);
			}
		}
		unit_check(bad == 0 && n >= 20, "%zu fixed vectors match test/ore_reference.py (%d differ)", n, bad);
	}

	pgck_ore_key_free(&okey);
	return unit_finish();
}
