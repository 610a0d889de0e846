/*-------------------------------------------------------------------------
 *
 * ore.c
 *		Order-revealing encryption terms (Chenette-Lewi-Weis-Wu 2016) and the
 *		order-preserving bit strings they are made of; see ore.h.
 *
 * Pure C.  pgck_ore_compare() handles terms from anywhere (kms_ore_term
 * literals, values restored from a dump): it checks every length first.
 * Plaintext bits pass through the caller's buffers only; the PRF inputs and
 * outputs are wiped here.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "ore.h"

static const char ore_salt[] = "pgcrypt_kms ore v1";
static const char ore_info[] = "order";
static const char ore_id_label[] = "pgcrypt_kms ore key id";

int
pgck_ore_domain_bits(int domain)
{
	switch (domain)
	{
		case PGCK_ORE_INT8:
		case PGCK_ORE_TIMESTAMPTZ:
			return 64;
		case PGCK_ORE_DATE:
			return 32;
		case PGCK_ORE_NUMERIC:
			return PGCK_ORE_MAX_BITS;
	}
	return 0;
}

size_t
pgck_ore_term_len(int domain)
{
	int			n = pgck_ore_domain_bits(domain);

	return n == 0 ? 0 : PGCK_ORE_HEADER_LEN + (size_t) (n + 3) / 4;
}

bool
pgck_ore_derive_key(const uint8_t index_key[32], uint8_t out[PGCK_ORE_KEY_LEN])
{
	return pgck_hkdf_sha256((const uint8_t *) ore_salt, sizeof(ore_salt) - 1,
							index_key, 32,
							(const uint8_t *) ore_info, sizeof(ore_info) - 1,
							out, PGCK_ORE_KEY_LEN);
}

bool
pgck_ore_key_init(PgckOreKey *key, const uint8_t index_key[32])
{
	uint8_t		okey[PGCK_ORE_KEY_LEN];
	uint8_t		mac[PGCK_HMAC_SHA256_LEN];
	bool		ok;

	key->prf = NULL;
	memset(key->id, 0, sizeof(key->id));
	ok = pgck_ore_derive_key(index_key, okey) &&
		(key->prf = pgck_hmac_new(okey, sizeof(okey))) != NULL &&
		pgck_hmac_sha256(key->prf, (const uint8_t *) ore_id_label, sizeof(ore_id_label) - 1, mac);
	pgck_wipe(okey, sizeof(okey));
	if (ok)
		memcpy(key->id, mac, PGCK_ORE_KEY_ID_LEN);
	else
		pgck_ore_key_free(key);
	pgck_wipe(mac, sizeof(mac));
	return ok;
}

void
pgck_ore_key_free(PgckOreKey *key)
{
	pgck_hmac_free(key->prf);
	key->prf = NULL;
	memset(key->id, 0, sizeof(key->id));
}

void
pgck_ore_int64_bits(int64_t v, uint8_t out[8])
{
	uint64_t	u = (uint64_t) v ^ ((uint64_t) 1 << 63);
	int			i;

	for (i = 0; i < 8; i++)
		out[i] = (uint8_t) (u >> (56 - 8 * i));
}

void
pgck_ore_int32_bits(int32_t v, uint8_t out[4])
{
	uint32_t	u = (uint32_t) v ^ ((uint32_t) 1 << 31);
	int			i;

	for (i = 0; i < 4; i++)
		out[i] = (uint8_t) (u >> (24 - 8 * i));
}

/* Append the low nbits of v, most significant first, at bit position *pos. */
static void
put_bits(uint8_t *out, int *pos, unsigned __int128 v, int nbits)
{
	int			i;

	for (i = nbits - 1; i >= 0; i--)
	{
		if ((v >> i) & 1)
			out[*pos / 8] |= (uint8_t) (0x80 >> (*pos % 8));
		(*pos)++;
	}
}

PgckOreNumericStatus
pgck_ore_numeric_bits(const char *s, size_t len, uint8_t out[PGCK_ORE_MAX_BIT_BYTES])
{
	bool		negative = false;
	size_t		i;
	size_t		point = SIZE_MAX;	/* digits before the point */
	size_t		ndigits = 0;
	long		first = -1;		/* index among digits of the first non-zero one */
	long		last = -1;
	unsigned __int128 m = 0;
	long		exp10;
	int			k;
	int			e;
	int			cls;
	int			pos = 0;

	memset(out, 0, PGCK_ORE_MAX_BIT_BYTES);
	if (len == 3 && memcmp(s, "NaN", 3) == 0)
		cls = 5;
	else if (len == 8 && memcmp(s, "Infinity", 8) == 0)
		cls = 4;
	else if (len == 9 && memcmp(s, "-Infinity", 9) == 0)
		cls = 0;
	else
	{
		i = 0;
		if (len > 0 && s[0] == '-')
			negative = true, i = 1;
		if (i >= len)
			return PGCK_ORE_NUM_SYNTAX;
		for (; i < len; i++)
		{
			if (s[i] == '.')
			{
				/* one point, with digits on both sides */
				if (point != SIZE_MAX || ndigits == 0 || i + 1 >= len)
					return PGCK_ORE_NUM_SYNTAX;
				point = ndigits;
				continue;
			}
			if (s[i] < '0' || s[i] > '9')
				return PGCK_ORE_NUM_SYNTAX;
			if (s[i] != '0')
			{
				if (first < 0)
					first = (long) ndigits;
				last = (long) ndigits;
			}
			ndigits++;
		}
		if (ndigits == 0)
			return PGCK_ORE_NUM_SYNTAX;
		if (point == SIZE_MAX)
			point = ndigits;
		if (first < 0)
			cls = 2;			/* zero, "-0" included */
		else
		{
			long		d = 0;

			if (last - first + 1 > PGCK_ORE_NUMERIC_DIGITS)
				return PGCK_ORE_NUM_TOO_PRECISE;
			k = (int) (last - first + 1);
			exp10 = (long) point - first;
			if (exp10 < PGCK_ORE_NUMERIC_EXP_MIN || exp10 > PGCK_ORE_NUMERIC_EXP_MAX)
				return PGCK_ORE_NUM_OUT_OF_RANGE;
			/* m = the significant digits, padded with zeros to 38 digits */
			for (i = (negative ? 1 : 0); i < len; i++)
			{
				if (s[i] == '.')
					continue;
				if (d >= first && d <= last)
					m = m * 10 + (unsigned) (s[i] - '0');
				d++;
			}
			for (; k < PGCK_ORE_NUMERIC_DIGITS; k++)
				m *= 10;
			e = (int) exp10 + 128;
			cls = negative ? 1 : 3;
			if (negative)
			{
				e = 255 - e;
				m = ~m;			/* 2^128 - 1 - m */
			}
			put_bits(out, &pos, (unsigned __int128) cls, 3);
			put_bits(out, &pos, (unsigned __int128) e, 8);
			put_bits(out, &pos, m, 128);
			return PGCK_ORE_NUM_OK;
		}
	}
	put_bits(out, &pos, (unsigned __int128) cls, 3);
	return PGCK_ORE_NUM_OK;
}

static inline int
bit_at(const uint8_t *bits, int i)
{
	return (bits[i / 8] >> (7 - i % 8)) & 1;
}

size_t
pgck_ore_encrypt(const PgckOreKey *key, int domain, uint8_t epoch, const uint8_t *bits, uint8_t *out)
{
	int			n = pgck_ore_domain_bits(domain);
	size_t		term_len = pgck_ore_term_len(domain);
	uint8_t		msg[3 + PGCK_ORE_MAX_BIT_BYTES];
	uint8_t		mac[PGCK_HMAC_SHA256_LEN];
	int			i;
	bool		ok = true;

	if (n == 0 || key->prf == NULL)
		return 0;
	memset(out, 0, term_len);
	out[0] = PGCK_ORE_SCHEME_CLWW;
	out[1] = (uint8_t) domain;
	out[2] = epoch;
	memcpy(out + 3, key->id, PGCK_ORE_KEY_ID_LEN);
	memset(msg, 0, sizeof(msg));
	msg[0] = (uint8_t) domain;
	for (i = 0; i < n && ok; i++)
	{
		uint64_t	f = 0;
		int			j;
		unsigned	u;

		/* msg = domain | i | b_1 .. b_i (0-based: the i bits before this one) */
		msg[1] = (uint8_t) (i >> 8);
		msg[2] = (uint8_t) i;
		if (i > 0 && bit_at(bits, i - 1))
			msg[3 + (i - 1) / 8] |= (uint8_t) (0x80 >> ((i - 1) % 8));
		ok = pgck_hmac_sha256(key->prf, msg, 3 + (size_t) (i + 7) / 8, mac);
		for (j = 0; j < 8; j++)
			f = (f << 8) | mac[j];
		u = (unsigned) ((f % 3 + (uint64_t) bit_at(bits, i)) % 3);
		out[PGCK_ORE_HEADER_LEN + i / 4] |= (uint8_t) (u << (6 - 2 * (i % 4)));
	}
	pgck_wipe(msg, sizeof(msg));
	pgck_wipe(mac, sizeof(mac));
	return ok ? term_len : 0;
}

static inline unsigned
trit_at(const uint8_t *t, int i)
{
	return (t[PGCK_ORE_HEADER_LEN + i / 4] >> (6 - 2 * (i % 4))) & 3;
}

bool
pgck_ore_term_valid(const uint8_t *term, size_t len)
{
	int			n;
	int			i;

	if (len < PGCK_ORE_HEADER_LEN || term[0] != PGCK_ORE_SCHEME_CLWW)
		return false;
	n = pgck_ore_domain_bits(term[1]);
	if (n == 0 || len != pgck_ore_term_len(term[1]))
		return false;
	for (i = 0; i < n; i++)
		if (trit_at(term, i) == 3)
			return false;
	/* the unused low bits of the last byte are zero */
	if (n % 4 != 0 && (term[len - 1] & (0xFF >> (2 * (n % 4)))) != 0)
		return false;
	return true;
}

PgckOreCompareStatus
pgck_ore_compare(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int *cmp)
{
	int			n;
	int			i;
	int			c;

	*cmp = 0;
	if (!pgck_ore_term_valid(a, alen) || !pgck_ore_term_valid(b, blen))
		return PGCK_ORE_CMP_MALFORMED;
	if (a[1] != b[1])
		return PGCK_ORE_CMP_DOMAINS;
	/* epoch, then key id: terms of different ORE keys never reach the trits */
	c = memcmp(a + 2, b + 2, PGCK_ORE_HEADER_LEN - 2);
	if (c != 0)
	{
		*cmp = c < 0 ? -1 : 1;
		return PGCK_ORE_CMP_OK;
	}
	n = pgck_ore_domain_bits(a[1]);
	for (i = 0; i < n; i++)
	{
		unsigned	ua = trit_at(a, i);
		unsigned	ub = trit_at(b, i);

		if (ua != ub)
		{
			*cmp = ub == (ua + 1) % 3 ? -1 : 1;
			return PGCK_ORE_CMP_OK;
		}
	}
	return PGCK_ORE_CMP_OK;
}
