/*-------------------------------------------------------------------------
 *
 * ore.h
 *		Order-revealing encryption terms: the "practical ORE" of Chenette,
 *		Lewi, Weis and Wu (FSE 2016, "Practical Order-Revealing Encryption
 *		with Limited Leakage", section 3), over order-preserving bit strings
 *		of int8, date, timestamptz and numeric values.  Pure C: no PostgreSQL
 *		dependency, unit-tested (test/unit/test_ore.c), fuzzed
 *		(test/fuzz/fuzz_ore.c) and checked against an independent Python
 *		implementation (test/ore_reference.py).
 *
 * The scheme, for an n-bit plaintext b_1 .. b_n (most significant first):
 *
 *	 u_i = (F(k, i, b_1 .. b_{i-1}) + b_i) mod 3		i = 1 .. n
 *	 term = (u_1, .., u_n)
 *
 * and compare(u, u') finds the first i with u_i != u'_i: none means equal,
 * u'_i == u_i + 1 (mod 3) means u < u', else u > u'.  It leaks the order and
 * the index of the first bit in which two plaintexts differ, nothing else
 * (the paper's Theorem 3.2, with F a PRF).
 *
 * F here is HMAC-SHA-256 under the ORE key, of
 *	 domain (1 byte) || i - 1 (2 bytes, big-endian) || b_1 .. b_{i-1} packed
 *	 most significant bit first, the unused low bits of the last byte zero
 * (ceil((i-1)/8) bytes), reduced mod 3 from its first 8 bytes read as a
 * big-endian unsigned integer (bias below 2^-62).
 *
 * The ORE key is HKDF-SHA-256(IKM = the key's index key, salt = ASCII
 * "pgcrypt_kms ore v1", info = ASCII "order", L = 32): separate from the
 * blind-index HMAC key (a blind-index tag is HMAC keyed BY the index key;
 * HKDF-Extract keys its HMAC with the salt and hashes the index key as the
 * message, so no tag can equal the ORE key) and from every DEK.
 *
 * The key id is the first 8 bytes of HMAC-SHA-256(ORE key, ASCII
 * "pgcrypt_kms ore key id"): public, computed once per ORE key (with its
 * PRF, see PgckOreKey), and never an input of F (F's messages start with a
 * domain byte, 1 to 4; the label starts with 'p').
 *
 * Term bytes (what kms_ore() returns and values carry):
 *	 0x01 (scheme: CLWW, F as above) | domain (1) | key epoch (1) | key id (8)
 *	 | u_1 .. u_n packed four to a byte, 2 bits each, u_1 in the two high bits,
 *	   unused low bits of the last byte zero
 * The key epoch is the low byte of the key's index_key_version.  Terms of
 * one domain order by their header first: epoch, then key id (bytewise),
 * and only terms of one epoch and one key id compare by value.  The trit
 * comparison means nothing between terms of different ORE keys (it is not
 * even transitive there), so this keeps each ORE key's terms one run of a
 * consistent total order for a B-tree over a column that mixes keys (one key
 * per tenant) or index key versions (during re-tagging, the previous
 * version's run sorts before the current one's, as the epochs do).
 *
 * Bit strings (the order-preserving encodings, all big-endian):
 *	 int8, timestamptz	64 bits: the int64 with its sign bit flipped
 *						(timestamptz -infinity and infinity are PostgreSQL's
 *						INT64_MIN and INT64_MAX, so they sort at the ends)
 *	 date				32 bits: the int32 with its sign bit flipped (the same
 *						for -infinity/infinity = INT32_MIN/INT32_MAX)
 *	 numeric			139 bits, see pgck_ore_numeric_bits()
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_ORE_H
#define PGCK_ORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aead.h"

#define PGCK_ORE_SCHEME_CLWW	1

/* domains: which encoding the bits are; terms of different domains do not compare */
#define PGCK_ORE_INT8			1
#define PGCK_ORE_DATE			2
#define PGCK_ORE_TIMESTAMPTZ	3
#define PGCK_ORE_NUMERIC		4

#define PGCK_ORE_KEY_LEN		32
#define PGCK_ORE_KEY_ID_LEN		8
#define PGCK_ORE_HEADER_LEN		(3 + PGCK_ORE_KEY_ID_LEN)
#define PGCK_ORE_MAX_BITS		139
#define PGCK_ORE_MAX_BIT_BYTES	((PGCK_ORE_MAX_BITS + 7) / 8)
#define PGCK_ORE_TERM_MAX		(PGCK_ORE_HEADER_LEN + (PGCK_ORE_MAX_BITS + 3) / 4)

/* numeric: at most this many significant decimal digits, exponent range below */
#define PGCK_ORE_NUMERIC_DIGITS	38
#define PGCK_ORE_NUMERIC_EXP_MIN (-128)
#define PGCK_ORE_NUMERIC_EXP_MAX 127

/* Bits of a domain (0 for an unknown domain). */
extern int	pgck_ore_domain_bits(int domain);

/* Term length in bytes for a domain (0 for an unknown domain). */
extern size_t pgck_ore_term_len(int domain);

/* The ORE key derived from a 32-byte index key (see above); false on failure. */
extern bool pgck_ore_derive_key(const uint8_t index_key[32], uint8_t out[PGCK_ORE_KEY_LEN]);

/* An ORE key ready to use: F under it and its key id. */
typedef struct PgckOreKey
{
	PgckHmac   *prf;			/* HMAC-SHA-256 keyed with the ORE key; NULL when unset */
	uint8_t		id[PGCK_ORE_KEY_ID_LEN];
} PgckOreKey;

/*
 * Derive the ORE key of a 32-byte index key into *key: its PRF and its key
 * id (the raw ORE key is wiped).  False on failure, *key then unset.
 */
extern bool pgck_ore_key_init(PgckOreKey *key, const uint8_t index_key[32]);

/* Free key's PRF (if set); key is unset after. */
extern void pgck_ore_key_free(PgckOreKey *key);

/* Order-preserving bit strings; out holds the domain's bits, big-endian. */
extern void pgck_ore_int64_bits(int64_t v, uint8_t out[8]);
extern void pgck_ore_int32_bits(int32_t v, uint8_t out[4]);

typedef enum PgckOreNumericStatus
{
	PGCK_ORE_NUM_OK = 0,
	PGCK_ORE_NUM_SYNTAX,		/* not numeric_out's text form */
	PGCK_ORE_NUM_TOO_PRECISE,	/* more than PGCK_ORE_NUMERIC_DIGITS significant digits */
	PGCK_ORE_NUM_OUT_OF_RANGE	/* decimal exponent outside the range */
} PgckOreNumericStatus;

/*
 * The 139-bit encoding of a numeric given as numeric_out() writes it
 * ("-12.340", "0", "NaN", "Infinity", "-Infinity"), into out[18]:
 *
 *	 class (3 bits): 0 -Infinity, 1 negative, 2 zero, 3 positive, 4 Infinity,
 *					 5 NaN (PostgreSQL sorts NaN above Infinity)
 *	 e (8 bits), m (128 bits): zero unless negative or positive.  A finite
 *		non-zero |x| = 0.d_1 d_2 .. d_k * 10^E with d_1 != 0 and d_k != 0
 *		(leading and trailing zeros dropped, so 1.5 and 1.50 are equal);
 *		k <= 38 and -128 <= E <= 127, else refused.  m = the integer
 *		d_1 .. d_k followed by 38 - k zeros (< 10^38 < 2^127), e = E + 128.
 *		Negative: e is replaced by 255 - e and m by 2^128 - 1 - m.
 *
 * Bits are packed most significant first; the 5 low bits of out[17] are zero.
 */
extern PgckOreNumericStatus pgck_ore_numeric_bits(const char *s, size_t len,
												  uint8_t out[PGCK_ORE_MAX_BIT_BYTES]);

/*
 * The term of bits (pgck_ore_domain_bits(domain) of them) under key, into
 * out[pgck_ore_term_len(domain)].  Returns the term length, 0 on an unknown
 * domain or an HMAC failure.
 */
extern size_t pgck_ore_encrypt(const PgckOreKey *key, int domain, uint8_t epoch,
							   const uint8_t *bits, uint8_t *out);

typedef enum PgckOreCompareStatus
{
	PGCK_ORE_CMP_OK = 0,
	PGCK_ORE_CMP_MALFORMED,		/* bad scheme, domain, length or a trit of 3 */
	PGCK_ORE_CMP_DOMAINS		/* terms of different domains */
} PgckOreCompareStatus;

/* Is term[0..len) well formed (scheme, known domain, its length, trits < 3)? */
extern bool pgck_ore_term_valid(const uint8_t *term, size_t len);

/*
 * Compare two terms: *cmp = -1, 0 or 1.  Terms of different epochs order by
 * epoch, then terms of different key ids by key id (bytewise), so any two
 * well-formed terms of one domain compare (a total order).  Never reads
 * outside a[0..alen) and b[0..blen).
 */
extern PgckOreCompareStatus pgck_ore_compare(const uint8_t *a, size_t alen,
											 const uint8_t *b, size_t blen, int *cmp);

#endif							/* PGCK_ORE_H */
