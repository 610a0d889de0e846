/*-------------------------------------------------------------------------
 *
 * fuzz_pkcs11_uri.c
 *		libFuzzer target for the strict RFC 7512 parser (src/pkcs11_uri.c).
 *
 * Properties checked on every input:
 *	- parsing it (a NUL-terminated copy, into a buffer of exactly
 *	  strlen + 1 bytes, the size the API promises to stay within) never
 *	  reads or writes out of bounds, and fails with a reason or succeeds;
 *	- on success, every string attribute holds no NUL byte before its end
 *	  and the path attributes, percent-encoded byte by byte into a new URI,
 *	  parse again to the very same values (the decoder is exact).
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11_uri.h"

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_pkcs11_uri: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
append(char *out, size_t *len, const char *name, const char *val, size_t vlen)
{
	size_t		i;

	if (val == NULL)
		return;
	*len += sprintf(out + *len, "%s%s=", *len > 7 ? ";" : "", name);
	for (i = 0; i < vlen; i++)
		*len += sprintf(out + *len, "%%%02X", (unsigned char) val[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *uri = malloc(size + 1);
	char	   *buf = malloc(size + 1);
	PgckP11Uri	u;
	const char *err = NULL;

	memcpy(uri, data, size);
	uri[size] = '\0';
	if (!pgck_p11_uri_parse(uri, &u, buf, strlen(uri) + 1, &err))
		FUZZ_CHECK(err != NULL);
	else
	{
		char	   *again = malloc(3 * size + 64);
		char	   *buf2 = malloc(3 * size + 64);
		size_t		len = 0;
		PgckP11Uri	v;

		len += sprintf(again, "pkcs11:");
		append(again, &len, "token", u.token, u.token ? strlen(u.token) : 0);
		append(again, &len, "object", u.object, u.object ? strlen(u.object) : 0);
		append(again, &len, "id", u.id, u.id_len);
		append(again, &len, "serial", u.serial, u.serial ? strlen(u.serial) : 0);
		FUZZ_CHECK(pgck_p11_uri_parse(again, &v, buf2, 3 * size + 64, &err));
		FUZZ_CHECK((u.token == NULL) == (v.token == NULL) && (!u.token || strcmp(u.token, v.token) == 0));
		FUZZ_CHECK((u.object == NULL) == (v.object == NULL) && (!u.object || strcmp(u.object, v.object) == 0));
		FUZZ_CHECK((u.serial == NULL) == (v.serial == NULL) && (!u.serial || strcmp(u.serial, v.serial) == 0));
		FUZZ_CHECK((u.id == NULL) == (v.id == NULL) && u.id_len == v.id_len &&
				   (!u.id || memcmp(u.id, v.id, u.id_len) == 0));
		free(again);
		free(buf2);
	}
	free(uri);
	free(buf);
	return 0;
}
