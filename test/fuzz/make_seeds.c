/*-------------------------------------------------------------------------
 *
 * make_seeds.c
 *		Writes the seed corpora test/fuzz/corpus/envelope/ and
 *		test/fuzz/corpus/base64/.
 *
 * Build and run from the repository root:
 *	 cc -std=c11 -D_GNU_SOURCE -Isrc -o /tmp/make_seeds test/fuzz/make_seeds.c \
 *		src/base64.c src/envelope.c src/aead.c -lcrypto
 *	 /tmp/make_seeds test/fuzz/corpus
 *
 * Output is deterministic (fixed nonces, fixed plaintexts), so rerunning it
 * rewrites the same files.  Envelope seeds are real values sealed with
 * AAD = header || context under the key fuzz_envelope.c uses (bytes
 * 0x00..0x1f), each in binary and in "pgck:" text form, plus edge cases each
 * just across one of the parser's checks.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aead.h"
#include "base64.h"
#include "envelope.h"

static const char *outdir;
static PgckAead *aead;

static void
write_file(const char *sub, const char *name, const void *data, size_t len)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
	{
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
	f = fopen(path, "wb");
	if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

/* Write the value as NAME.bin and its text form as NAME.txt. */
static void
write_value(const char *name, const uint8_t *buf, size_t len)
{
	char		fname[256];
	char	   *text = malloc(pgck_envelope_text_len(len) + 1);

	snprintf(fname, sizeof(fname), "%s.bin", name);
	write_file("envelope", fname, buf, len);
	pgck_envelope_to_text(buf, len, text);
	snprintf(fname, sizeof(fname), "%s.txt", name);
	write_file("envelope", fname, text, strlen(text));
	free(text);
}

/* A sealed value; returns a malloc'd buffer of *len bytes. */
static uint8_t *
seal_value(uint8_t nonce_byte, uint32_t kvid, const uint8_t *blind, size_t blind_len,
		   const char *context, const char *pt, size_t *len)
{
	uint8_t		nonce[PGCK_NONCE_LEN];
	size_t		ptlen = strlen(pt);
	size_t		clen = context ? strlen(context) : 0;
	uint8_t    *buf;
	size_t		hlen;

	memset(nonce, nonce_byte, sizeof(nonce));
	*len = pgck_envelope_size(ptlen, blind_len);
	buf = malloc(*len);
	hlen = pgck_envelope_write_header(buf, context ? PGCK_FLAG_CONTEXT : 0, kvid,
									  nonce, blind, blind_len);
	if (!pgck_aead_seal(aead, nonce, buf, hlen, (const uint8_t *) context, clen,
						(const uint8_t *) pt, ptlen, buf + hlen, buf + hlen + ptlen))
	{
		fprintf(stderr, "seal failed\n");
		exit(1);
	}
	return buf;
}

int
main(int argc, char **argv)
{
	uint8_t		key[PGCK_AES256_KEY_LEN];
	uint8_t		blind[PGCK_BLIND_TAG_MAX];
	uint8_t    *v;
	size_t		len;
	int			i;

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s CORPUS-DIR\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	for (i = 0; i < PGCK_AES256_KEY_LEN; i++)
		key[i] = (uint8_t) i;
	for (i = 0; i < PGCK_BLIND_TAG_MAX; i++)
		blind[i] = (uint8_t) (0xb0 + i);
	aead = pgck_aead_new(key);
	if (aead == NULL)
		return 1;

	/* valid values */
	v = seal_value(1, 1, NULL, 0, NULL, "", &len);
	write_value("valid-empty", v, len);
	free(v);
	v = seal_value(2, 1, NULL, 0, NULL, "123-45-6789", &len);
	write_value("valid-plain", v, len);
	free(v);
	v = seal_value(3, 7, NULL, 0, "public.users.ssn", "123-45-6789", &len);
	write_value("valid-context", v, len);
	free(v);
	v = seal_value(4, 2, blind, 1, "public.users.ssn", "a", &len);
	write_value("valid-blind1", v, len);
	free(v);
	v = seal_value(5, 3, blind, 16, NULL, "alice@example.com", &len);
	write_value("valid-blind16", v, len);
	free(v);
	v = seal_value(6, 0x7fffffff, blind, 32, "public.t.c",
				   "The quick brown fox jumps over the lazy dog, twice over: "
				   "the quick brown fox jumps over the lazy dog.", &len);
	write_value("valid-blind32-maxkvid", v, len);

	/* edge cases, derived from the last value (blind tag of 32) */
	{
		uint8_t    *e = malloc(len);

		memcpy(e, v, len);
		e[0] = 2;
		write_value("edge-version2", e, len);
		write_file("envelope", "edge-version2-1byte.bin", e, 1);
		memcpy(e, v, len);
		e[1] = 2;
		write_value("edge-algorithm2", e, len);
		memcpy(e, v, len);
		e[2] = 0x04 | PGCK_FLAG_BLIND_TAG;
		write_value("edge-flag4", e, len);
		memcpy(e, v, len);
		e[3] = e[4] = e[5] = e[6] = 0;
		write_value("edge-kvid0", e, len);
		memcpy(e, v, len);
		e[3] = 0x80;
		e[4] = e[5] = e[6] = 0;
		write_value("edge-kvid-2pow31", e, len);
		memcpy(e, v, len);
		e[PGCK_FIXED_HEADER_LEN] = 0;
		write_value("edge-taglen0", e, len);
		memcpy(e, v, len);
		e[PGCK_FIXED_HEADER_LEN] = PGCK_BLIND_TAG_MAX + 1;
		write_value("edge-taglen33", e, len);
		/* blind tag of 32 and the GCM tag one byte short */
		write_value("edge-blind32-short", v, PGCK_FIXED_HEADER_LEN + 1 + 32 + PGCK_GCM_TAG_LEN - 1);
		/* exactly the blind tag and the GCM tag, no ciphertext */
		write_value("edge-blind32-noct", v, PGCK_FIXED_HEADER_LEN + 1 + 32 + PGCK_GCM_TAG_LEN);
		memcpy(e, v, len);
		e[PGCK_FIXED_HEADER_LEN + 7] ^= 1;
		write_value("edge-tampered-blindtag", e, len);
		free(e);
	}
	free(v);

	/* minimal: header and GCM tag only, and one byte less */
	v = seal_value(7, 1, NULL, 0, NULL, "", &len);
	write_value("edge-minimal-short", v, len - 1);
	v[2] = PGCK_FLAG_BLIND_TAG;
	write_value("edge-minimal-blindflag", v, len);
	free(v);

	/* text-only oddities */
	write_file("envelope", "text-prefix-only.txt", "pgck:", 5);
	write_file("envelope", "text-upper-prefix.txt", "PGCK:AQ==", 9);
	write_file("envelope", "text-padbits.txt", "pgck:AR==", 9);
	write_file("envelope", "text-newline.txt", "pgck:AQ==\n", 10);
	write_file("envelope", "empty", "", 0);

	/* base64 */
	write_file("base64", "empty", "", 0);
	write_file("base64", "one", "QQ==", 4);
	write_file("base64", "two", "QUI=", 4);
	write_file("base64", "three", "QUJD", 4);
	write_file("base64", "all-chars",
			   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 64);
	write_file("base64", "padbits", "QR==", 4);
	write_file("base64", "nopad", "QUI", 3);
	write_file("base64", "midpad", "QQ==QUJD", 8);
	write_file("base64", "space", "QU JD", 5);

	pgck_aead_free(aead);
	return 0;
}
