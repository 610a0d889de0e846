/*-------------------------------------------------------------------------
 *
 * fuzz_base64.c
 *		libFuzzer target for the strict base64 codec (src/base64.c).
 *
 * Properties checked on every input:
 *	- decoding it (into a buffer of exactly PGCK_BASE64_DEC_MAX bytes) never
 *	  reads or writes out of bounds, and when it succeeds the bytes encode
 *	  back to the very same text (one text form per value);
 *	- encoding it (into exactly PGCK_BASE64_ENC_LEN bytes) and decoding the
 *	  result gives the input back.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_base64: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		dmax = PGCK_BASE64_DEC_MAX(size);
	uint8_t    *dec = malloc(dmax > 0 ? dmax : 1);
	size_t		declen = 0;
	size_t		elen = PGCK_BASE64_ENC_LEN(size);
	char	   *enc = malloc(elen > 0 ? elen : 1);
	uint8_t    *back;
	size_t		backlen = 0;

	FUZZ_CHECK(dec != NULL && enc != NULL);

	/* input as text */
	if (pgck_base64_decode((const char *) data, size, dec, &declen))
	{
		char	   *re = malloc(PGCK_BASE64_ENC_LEN(declen) + 1);

		FUZZ_CHECK(re != NULL);
		FUZZ_CHECK(declen <= dmax);
		FUZZ_CHECK(pgck_base64_encode(dec, declen, re) == size);
		FUZZ_CHECK(memcmp(re, data, size) == 0);
		free(re);
	}

	/* input as bytes */
	FUZZ_CHECK(pgck_base64_encode(data, size, enc) == elen);
	back = malloc(PGCK_BASE64_DEC_MAX(elen) > 0 ? PGCK_BASE64_DEC_MAX(elen) : 1);
	FUZZ_CHECK(back != NULL);
	FUZZ_CHECK(pgck_base64_decode(enc, elen, back, &backlen));
	FUZZ_CHECK(backlen == size && memcmp(back, data, size) == 0);

	free(back);
	free(enc);
	free(dec);
	return 0;
}
