/*-------------------------------------------------------------------------
 *
 * fuzz_envelope.c
 *		libFuzzer target for the enc_text value parser (src/envelope.c) and
 *		the AES-GCM open path behind it (src/aead.c).
 *
 * Each input is tried twice: as a binary value (pgck_envelope_parse, what
 * binary recv and the type's internals see) and as text
 * (pgck_envelope_from_text, what a literal or COPY delivers), then the
 * decoded bytes as a binary value.  On a successful parse the structural
 * invariants are asserted, the header is rewritten from the parsed fields
 * and must come out byte for byte, and the value is opened with a fixed key
 * (it must fail unless the input really is a value sealed under that key,
 * and a failed open must leave the plaintext buffer zeroed; the context tried
 * is "public.users.ssn", as in some seeds, or none).  The parsed
 * ciphertext is then re-sealed under the fixed key with the parsed header as
 * AAD and opened again, which must give the ciphertext back: this drives the
 * success path of open with every header shape the fuzzer finds.
 *
 * The fixed key is bytes 0x00..0x1f; test/fuzz/make_seeds.c seals the seed
 * corpus under the same key.  Build and run with test/fuzz/run.sh.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aead.h"
#include "base64.h"
#include "envelope.h"

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_envelope: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

static PgckAead *fuzz_aead = NULL;

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	uint8_t		key[PGCK_AES256_KEY_LEN];
	int			i;

	(void) argc;
	(void) argv;
	for (i = 0; i < PGCK_AES256_KEY_LEN; i++)
		key[i] = (uint8_t) i;
	fuzz_aead = pgck_aead_new(key);
	if (fuzz_aead == NULL)
	{
		fprintf(stderr, "fuzz_envelope: pgck_aead_new failed\n");
		abort();
	}
	return 0;
}

static int
all_zero(const uint8_t *p, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* Parse buf[0..len) (an exact-size allocation) and check what comes back. */
static void
check_binary(const uint8_t *buf, size_t len)
{
	PgckEnvelope e;
	PgckEnvelopeStatus st = pgck_envelope_parse(buf, len, &e);
	const char *msg = pgck_envelope_status_message(st);
	uint8_t    *pt;
	uint8_t    *hdr;
	size_t		base_len;
	size_t		ext_size = 0;
	uint8_t		tag[PGCK_GCM_TAG_LEN];
	int			opened;

	FUZZ_CHECK(msg != NULL && msg[0] != '\0');
	if (st == PGCK_ENV_UNKNOWN_VERSION)
		FUZZ_CHECK(len >= 1 && e.version == buf[0] && e.version != PGCK_ENV_VERSION_1);
	if (st != PGCK_ENV_OK)
		return;

	/* structure: every pointer inside buf, lengths adding up */
	FUZZ_CHECK(len >= PGCK_MIN_ENVELOPE_LEN);
	FUZZ_CHECK(e.version == PGCK_ENV_VERSION_1 && e.algorithm == PGCK_ALG_AES256_GCM);
	FUZZ_CHECK((e.flags & ~PGCK_FLAG_MASK) == 0);
	FUZZ_CHECK(e.key_version_id >= 1 && e.key_version_id <= INT32_MAX);
	FUZZ_CHECK(e.nonce == buf + 7);
	base_len = PGCK_FIXED_HEADER_LEN;
	if (e.flags & PGCK_FLAG_BLIND_TAG)
	{
		FUZZ_CHECK(e.blind_tag == buf + PGCK_FIXED_HEADER_LEN + 1);
		FUZZ_CHECK(e.blind_tag_len >= 1 && e.blind_tag_len <= PGCK_BLIND_TAG_MAX);
		FUZZ_CHECK(buf[PGCK_FIXED_HEADER_LEN] == e.blind_tag_len);
		base_len = PGCK_FIXED_HEADER_LEN + 1 + e.blind_tag_len;
	}
	else
		FUZZ_CHECK(e.blind_tag == NULL && e.blind_tag_len == 0);
	/* extension fields (0.3.0): between the tag and the ciphertext */
	if (e.flags & PGCK_FLAG_EXT)
	{
		FUZZ_CHECK(e.ext_end != NULL && e.ext_end > buf + base_len + 2);
		ext_size = (size_t) (e.ext_end - (buf + base_len));
		FUZZ_CHECK(ext_size - 2 == (((size_t) buf[base_len] << 8) | buf[base_len + 1]));
		FUZZ_CHECK(e.plain_type <= PGCK_PT_MAX);
		if (e.ore_term != NULL)
			FUZZ_CHECK(e.ore_term > buf + base_len && e.ore_term + e.ore_term_len <= e.ext_end);
	}
	else
		FUZZ_CHECK(e.ext_end == NULL && e.plain_type == 0 && e.ore_term == NULL && e.named_tags == NULL);
	FUZZ_CHECK(e.header_len == base_len + ext_size);
	FUZZ_CHECK(e.header_len <= len);
	FUZZ_CHECK(e.ciphertext == buf + e.header_len);
	FUZZ_CHECK(e.ciphertext_len <= len - e.header_len);
	FUZZ_CHECK(e.header_len + e.ciphertext_len + PGCK_GCM_TAG_LEN == len);
	FUZZ_CHECK(e.gcm_tag == buf + len - PGCK_GCM_TAG_LEN);
	FUZZ_CHECK(pgck_envelope_size_ext(e.ciphertext_len, e.blind_tag_len, ext_size) == len);

	/* the writer reproduces the header from the parsed fields */
	hdr = malloc(len);
	FUZZ_CHECK(hdr != NULL);
	FUZZ_CHECK(pgck_envelope_write_header_ext(hdr, e.flags, e.key_version_id, e.nonce,
											  e.blind_tag, e.blind_tag_len,
											  buf + base_len, ext_size) == e.header_len);
	FUZZ_CHECK(memcmp(hdr, buf, e.header_len) == 0);
	free(hdr);

	/*
	 * Open with the fixed key, with and without a context.  Whatever the
	 * outcome, a failure must leave no plaintext behind.
	 */
	pt = malloc(e.ciphertext_len > 0 ? e.ciphertext_len : 1);
	FUZZ_CHECK(pt != NULL);
	memset(pt, 0xA5, e.ciphertext_len);
	opened = pgck_aead_open(fuzz_aead, e.nonce, buf, e.header_len,
							(const uint8_t *) "public.users.ssn", 16,
							e.ciphertext, e.ciphertext_len, e.gcm_tag, pt);
	if (!opened)
		FUZZ_CHECK(all_zero(pt, e.ciphertext_len));
	memset(pt, 0xA5, e.ciphertext_len);
	opened = pgck_aead_open(fuzz_aead, e.nonce, buf, e.header_len, NULL, 0,
							e.ciphertext, e.ciphertext_len, e.gcm_tag, pt);
	if (!opened)
		FUZZ_CHECK(all_zero(pt, e.ciphertext_len));

	/*
	 * Re-seal the parsed ciphertext (as if it were plaintext) under this
	 * header; it must open back to itself and not open with one tag bit off.
	 */
	{
		uint8_t    *ct = malloc(e.ciphertext_len > 0 ? e.ciphertext_len : 1);

		FUZZ_CHECK(ct != NULL);
		FUZZ_CHECK(pgck_aead_seal(fuzz_aead, e.nonce, buf, e.header_len,
								  (const uint8_t *) "ctx", 3,
								  e.ciphertext, e.ciphertext_len, ct, tag));
		FUZZ_CHECK(pgck_aead_open(fuzz_aead, e.nonce, buf, e.header_len,
								  (const uint8_t *) "ctx", 3,
								  ct, e.ciphertext_len, tag, pt));
		FUZZ_CHECK(memcmp(pt, e.ciphertext, e.ciphertext_len) == 0);
		tag[buf[len - 1] % PGCK_GCM_TAG_LEN] ^= (uint8_t) (1u << (buf[len - 1] % 8));
		FUZZ_CHECK(!pgck_aead_open(fuzz_aead, e.nonce, buf, e.header_len,
								   (const uint8_t *) "ctx", 3,
								   ct, e.ciphertext_len, tag, pt));
		FUZZ_CHECK(all_zero(pt, e.ciphertext_len));
		free(ct);
	}
	free(pt);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *dst;
	size_t		dstlen = 0;

	/* libFuzzer's buffer is exactly size bytes: reads past it are caught */
	check_binary(data, size);

	/* the same bytes as text; dst holds exactly srclen bytes, as documented */
	dst = malloc(size > 0 ? size : 1);
	FUZZ_CHECK(dst != NULL);
	if (pgck_envelope_from_text((const char *) data, size, dst, &dstlen))
	{
		char	   *re;
		uint8_t    *exact;

		FUZZ_CHECK(size >= PGCK_TEXT_PREFIX_LEN);
		FUZZ_CHECK(memcmp(data, PGCK_TEXT_PREFIX, PGCK_TEXT_PREFIX_LEN) == 0);
		FUZZ_CHECK(dstlen <= PGCK_BASE64_DEC_MAX(size - PGCK_TEXT_PREFIX_LEN));

		/* canonical: the decoded value prints back to the very same text */
		FUZZ_CHECK(pgck_envelope_text_len(dstlen) == size);
		re = malloc(size + 1);
		FUZZ_CHECK(re != NULL);
		pgck_envelope_to_text(dst, dstlen, re);
		FUZZ_CHECK(memcmp(re, data, size) == 0 && re[size] == '\0');
		free(re);

		/* parse the decoded bytes from an exact-size copy */
		exact = malloc(dstlen > 0 ? dstlen : 1);
		FUZZ_CHECK(exact != NULL);
		memcpy(exact, dst, dstlen);
		check_binary(exact, dstlen);
		free(exact);
	}
	free(dst);
	return 0;
}
