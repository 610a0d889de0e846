/*-------------------------------------------------------------------------
 *
 * fuzz_vault_json.c
 *		libFuzzer target for the Vault response parsing of src/vault_json.c.
 *
 * Properties checked on every input (taken as a response body, and as a
 * kms_context, a ciphertext and a key reference):
 *	- nothing reads or writes out of bounds, leaks or crashes;
 *	- a string member taken is NUL-terminated within its buffer;
 *	- the joined error text is printable ASCII within its buffer;
 *	- a plaintext key is accepted only at exactly the length asked for;
 *	- a canonical context, when one is made, is canonical base64.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "vault_json.h"

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_vault_json: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);
	char		ct[128];
	char		token[64];
	char		errors[96];
	int64_t		lease = 0;
	bool		renewable = false;
	uint8_t		key[32];
	size_t		ml = 0;
	const char *problem;
	char	   *b64;
	size_t		i;
	PgckVjField f[3] = {
		{.name = "ciphertext", .type = 's', .required = true, .str = ct, .strsize = sizeof(ct)},
		{.name = "lease_duration", .type = 'i', .num = &lease},
		{.name = "renewable", .type = 'b', .flag = &renewable},
	};
	PgckVjField a[1] = {
		{.name = "client_token", .type = 's', .required = true, .str = token, .strsize = sizeof(token)},
	};

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	if (pgck_vj_parse_fields(text, size, "data", f, 3) == NULL)
	{
		FUZZ_CHECK(memchr(ct, '\0', sizeof(ct)) != NULL);
		(void) pgck_vj_is_ciphertext(ct, strlen(ct));
	}
	if (pgck_vj_parse_fields(text, size, "auth", a, 1) == NULL)
		FUZZ_CHECK(memchr(token, '\0', sizeof(token)) != NULL);

	pgck_vj_parse_errors(text, size, errors, sizeof(errors));
	FUZZ_CHECK(memchr(errors, '\0', sizeof(errors)) != NULL);
	for (i = 0; errors[i]; i++)
		FUZZ_CHECK(errors[i] >= 0x20 && errors[i] <= 0x7e);

	if (strlen(text) == size)
	{
		if (pgck_vj_decode_key(text, key, sizeof(key)))
			FUZZ_CHECK(size == PGCK_BASE64_ENC_LEN(sizeof(key)));
		b64 = pgck_vj_context_b64(text, &problem);
		if (b64 != NULL)
		{
			uint8_t    *raw = malloc(PGCK_BASE64_DEC_MAX(strlen(b64)) + 1);
			size_t		got = 0;

			FUZZ_CHECK(raw != NULL && pgck_base64_decode(b64, strlen(b64), raw, &got));
			FUZZ_CHECK(got > 0 && raw[0] == '{');
			free(raw);
			free(b64);
		}
		(void) pgck_vj_is_ciphertext(text, size);
		if (pgck_vj_check_ref(text, &ml))
			FUZZ_CHECK(ml < size && text[ml] == '/');
	}
	free(text);
	return 0;
}
