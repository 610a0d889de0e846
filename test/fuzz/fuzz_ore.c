/*-------------------------------------------------------------------------
 *
 * fuzz_ore.c
 *		libFuzzer target for the order-revealing terms (src/ore.c).
 *
 * Properties checked on every input:
 *	- the scheme's correctness: the first 16 bytes are two int64s a and b;
 *	  compare(enc(a), enc(b)) == sign(a - b) for int8, timestamptz and (their
 *	  low halves) date terms under a fixed key;
 *	- the rest, split at its first '|', is two numeric texts: each is either
 *	  refused or encodes, and two that encode compare as strtold orders them
 *	  whenever both have at most 15 significant digits (where strtold is exact
 *	  enough), and equal texts give equal terms;
 *	- the same int64s under a second key at the same epoch: every term of one
 *	  key compares with every term of the other, antisymmetrically, by key
 *	  id alone (never by trits), so the keys' terms form two runs;
 *	- the whole input, split in two, given to pgck_ore_compare() as terms
 *	  never reads out of bounds, a term compares equal to itself, and two
 *	  well-formed terms of one domain compare (either way round, opposite
 *	  signs).
 *
 * Seeds (corpus/ore/): seed-two-keys is the int8 terms of 5 and -3 under
 * test/ore_reference.py's index keys 00 .. 1f and 20 .. 3f, epoch 1.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ore.h"

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_ore: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static PgckOreKey okey;
static PgckOreKey okey2;			/* another key, the same epoch */

static int
term_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int			c;

	FUZZ_CHECK(pgck_ore_compare(a, alen, b, blen, &c) == PGCK_ORE_CMP_OK);
	return c;
}

static int
significant_digits(const char *s)
{
	int			n = 0;
	int			started = 0;
	int			zeros = 0;

	for (; *s; s++)
	{
		if (*s < '0' || *s > '9')
			continue;
		if (*s != '0')
			started = 1, n += zeros + 1, zeros = 0;
		else if (started)
			zeros++;
	}
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t		a[PGCK_ORE_TERM_MAX];
	uint8_t		b[PGCK_ORE_TERM_MAX];
	size_t		alen,
				blen;

	if (okey.prf == NULL)
	{
		uint8_t		ik[32];

		memset(ik, 7, sizeof(ik));
		FUZZ_CHECK(pgck_ore_key_init(&okey, ik));
		memset(ik, 8, sizeof(ik));
		FUZZ_CHECK(pgck_ore_key_init(&okey2, ik));
		FUZZ_CHECK(memcmp(okey.id, okey2.id, PGCK_ORE_KEY_ID_LEN) != 0);
	}

	/* arbitrary bytes as terms */
	{
		int			c;
		size_t		half = size / 2;

		if (pgck_ore_term_valid(data, half) && pgck_ore_term_valid(data + half, size - half) &&
			data[1] == data[half + 1])
		{
			int			r;

			FUZZ_CHECK(pgck_ore_compare(data, half, data + half, size - half, &c) == PGCK_ORE_CMP_OK);
			FUZZ_CHECK(pgck_ore_compare(data + half, size - half, data, half, &r) == PGCK_ORE_CMP_OK);
			FUZZ_CHECK(r == -c);
			if (memcmp(data + 2, data + half + 2, PGCK_ORE_HEADER_LEN - 2) != 0)
				FUZZ_CHECK(c == (memcmp(data + 2, data + half + 2, PGCK_ORE_HEADER_LEN - 2) < 0 ? -1 : 1));
		}
		else
			(void) pgck_ore_compare(data, half, data + half, size - half, &c);
		if (pgck_ore_term_valid(data, size))
			FUZZ_CHECK(pgck_ore_compare(data, size, data, size, &c) == PGCK_ORE_CMP_OK && c == 0);
	}

	if (size >= 16)
	{
		int64_t		x,
					y;
		uint8_t		bx[8],
					by[8];
		int			want;
		int			d;

		memcpy(&x, data, 8);
		memcpy(&y, data + 8, 8);
		want = x < y ? -1 : x > y;
		pgck_ore_int64_bits(x, bx);
		pgck_ore_int64_bits(y, by);
		for (d = PGCK_ORE_INT8; d <= PGCK_ORE_TIMESTAMPTZ; d += 2)
		{
			int			across = memcmp(okey.id, okey2.id, PGCK_ORE_KEY_ID_LEN) < 0 ? -1 : 1;

			alen = pgck_ore_encrypt(&okey, d, 1, bx, a);
			blen = pgck_ore_encrypt(&okey, d, 1, by, b);
			FUZZ_CHECK(alen == pgck_ore_term_len(d) && blen == alen);
			FUZZ_CHECK(term_cmp(a, alen, b, blen) == want);
			FUZZ_CHECK(term_cmp(b, blen, a, alen) == -want);
			/* b under the other key: by key id, whatever x and y */
			blen = pgck_ore_encrypt(&okey2, d, 1, by, b);
			FUZZ_CHECK(blen == alen);
			FUZZ_CHECK(term_cmp(a, alen, b, blen) == across);
			FUZZ_CHECK(term_cmp(b, blen, a, alen) == -across);
		}
		pgck_ore_int32_bits((int32_t) x, bx);
		pgck_ore_int32_bits((int32_t) y, by);
		alen = pgck_ore_encrypt(&okey, PGCK_ORE_DATE, 1, bx, a);
		blen = pgck_ore_encrypt(&okey, PGCK_ORE_DATE, 1, by, b);
		FUZZ_CHECK(term_cmp(a, alen, b, blen) ==
				   ((int32_t) x < (int32_t) y ? -1 : (int32_t) x > (int32_t) y));

		/* numeric texts after the integers */
		{
			const char *rest = (const char *) data + 16;
			size_t		rlen = size - 16;
			const char *bar = memchr(rest, '|', rlen);
			char		sx[200],
						sy[200];
			uint8_t		nx[PGCK_ORE_MAX_BIT_BYTES],
						ny[PGCK_ORE_MAX_BIT_BYTES];
			size_t		lx,
						ly;

			if (bar == NULL)
				return 0;
			lx = (size_t) (bar - rest);
			ly = rlen - lx - 1;
			if (lx >= sizeof(sx) || ly >= sizeof(sy) || memchr(rest, 0, rlen) != NULL)
				return 0;
			memcpy(sx, rest, lx);
			sx[lx] = 0;
			memcpy(sy, bar + 1, ly);
			sy[ly] = 0;
			if (pgck_ore_numeric_bits(sx, lx, nx) != PGCK_ORE_NUM_OK ||
				pgck_ore_numeric_bits(sy, ly, ny) != PGCK_ORE_NUM_OK)
				return 0;
			alen = pgck_ore_encrypt(&okey, PGCK_ORE_NUMERIC, 1, nx, a);
			blen = pgck_ore_encrypt(&okey, PGCK_ORE_NUMERIC, 1, ny, b);
			FUZZ_CHECK(alen == pgck_ore_term_len(PGCK_ORE_NUMERIC) && blen == alen);
			if (strcmp(sx, sy) == 0)
				FUZZ_CHECK(memcmp(a, b, alen) == 0);
			if (significant_digits(sx) <= 15 && significant_digits(sy) <= 15 &&
				strcmp(sx, "NaN") != 0 && strcmp(sy, "NaN") != 0)
			{
				long double vx = strtold(sx, NULL);
				long double vy = strtold(sy, NULL);

				FUZZ_CHECK(term_cmp(a, alen, b, blen) == (vx < vy ? -1 : vx > vy));
			}
		}
	}
	return 0;
}
