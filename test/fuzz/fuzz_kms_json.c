/*-------------------------------------------------------------------------
 *
 * fuzz_kms_json.c
 *		libFuzzer target for the KMS / STS / credential-endpoint parsers
 *		(src/kms_json.c).
 *
 * The input is fed, as a response body, to every parser.  Properties:
 *	- no parser reads or writes out of bounds or leaks (ASan, LSan);
 *	- a successful GenerateDataKey/Decrypt parse produced exactly the key
 *	  length asked for, and a failed one left the key buffer zeroed;
 *	- blobs are within the KMS model's bounds;
 *	- error types and messages are NUL-terminated printable ASCII within
 *	  their limits;
 *	- parsed credentials are non-empty visible ASCII (they go into HTTP
 *	  headers);
 *	- the input as an encryption context either builds a request body that
 *	  is valid JSON, or is rejected as PGCK_KJ_ERR_CONTEXT.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kms_json.h"

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_kms_json: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_printable(const char *s, size_t limit)
{
	size_t		n = strlen(s);
	size_t		i;

	FUZZ_CHECK(n <= limit);
	for (i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char) s[i] >= 0x20 && (unsigned char) s[i] < 0x7f);
}

static void
check_token(const char *s)
{
	FUZZ_CHECK(s != NULL && s[0] != '\0');
	for (; *s; s++)
		FUZZ_CHECK((unsigned char) *s > 0x20 && (unsigned char) *s < 0x7f);
}

static void
check_credentials(bool ok, PgckKjCredentials *c)
{
	if (ok)
	{
		check_token(c->access_key_id);
		check_token(c->secret_access_key);
		check_token(c->session_token);
		FUZZ_CHECK(c->expiration > 0);
		pgck_kj_credentials_free(c);
	}
	FUZZ_CHECK(c->access_key_id == NULL && c->secret_access_key == NULL &&
			   c->session_token == NULL);
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	while (n-- > 0)
		if (*p++ != 0)
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *) data;
	PgckKjError err;
	PgckKjBlob	w;
	PgckKjKeyMetadata md;
	PgckKjAwsError e;
	PgckKjCredentials c;
	uint8_t		dek[64];
	size_t		key_len = size > 0 ? (data[0] % 2 ? 32 : 16) : 32;
	char	   *text;
	char	   *req;
	time_t		t;

	memset(dek, 0xA5, sizeof(dek));
	if (pgck_kj_parse_generate_data_key(body, size, key_len, dek, &w, &err))
	{
		FUZZ_CHECK(w.data != NULL && w.len >= 1 && w.len <= PGCK_KJ_MAX_CIPHERTEXT);
		pgck_kj_blob_free(&w);
	}
	else
	{
		FUZZ_CHECK(w.data == NULL && err.status != PGCK_KJ_OK && err.detail != NULL);
		FUZZ_CHECK(all_zero(dek, key_len) || err.status == PGCK_KJ_ERR_SYNTAX ||
				   err.status == PGCK_KJ_ERR_SIZE);
	}
	FUZZ_CHECK(dek[key_len] == 0xA5);	/* nothing written past key_len */

	memset(dek, 0xA5, sizeof(dek));
	if (!pgck_kj_parse_decrypt(body, size, key_len, dek, &err))
		FUZZ_CHECK(err.status != PGCK_KJ_OK);
	FUZZ_CHECK(dek[key_len] == 0xA5);

	if (pgck_kj_parse_reencrypt(body, size, &w, &err))
	{
		FUZZ_CHECK(w.len >= 1 && w.len <= PGCK_KJ_MAX_CIPHERTEXT);
		pgck_kj_blob_free(&w);
	}

	if (pgck_kj_parse_describe_key(body, size, &md, &err))
	{
		check_printable(md.key_id, PGCK_KJ_MAX_KEY_ID);
		check_printable(md.key_state, PGCK_KJ_MAX_ENUM);
		check_printable(md.key_usage, PGCK_KJ_MAX_ENUM);
		check_printable(md.key_spec, PGCK_KJ_MAX_ENUM);
	}

	pgck_kj_parse_error(NULL, body, size, &e);
	check_printable(e.type, PGCK_KJ_MAX_ERROR_TYPE);
	check_printable(e.message, PGCK_KJ_MAX_ERROR_MESSAGE);
	pgck_kj_parse_sts_error(body, size, &e);
	check_printable(e.type, PGCK_KJ_MAX_ERROR_TYPE);
	check_printable(e.message, PGCK_KJ_MAX_ERROR_MESSAGE);

	check_credentials(pgck_kj_parse_container_credentials(body, size, &c, &err), &c);
	check_credentials(pgck_kj_parse_imds_credentials(body, size, &c, &err), &c);
	check_credentials(pgck_kj_parse_sts_credentials(body, size, &c, &err), &c);
	check_credentials(pgck_kj_parse_sts_assume_role(body, size, &c, &err), &c);
	check_credentials(pgck_kj_parse_sso_role_credentials(body, size, &c, &err), &c);
	if (pgck_kj_parse_process_credentials(body, size, &c, &err))
	{
		/* long-term credentials: no token, no expiration */
		check_token(c.access_key_id);
		check_token(c.secret_access_key);
		if (c.session_token != NULL)
			check_token(c.session_token);
		pgck_kj_credentials_free(&c);
	}
	FUZZ_CHECK(c.access_key_id == NULL && c.secret_access_key == NULL && c.session_token == NULL);
	{
		char	   *tok;

		if (pgck_kj_parse_sso_token(body, size, &tok, &t, &err))
		{
			check_token(tok);
			FUZZ_CHECK(t > 0);
			free(tok);
		}
		else
			FUZZ_CHECK(tok == NULL);
	}
	if (pgck_kj_parse_encrypt(body, size, &w, &err))
	{
		FUZZ_CHECK(w.len >= 1 && w.len <= PGCK_KJ_MAX_CIPHERTEXT);
		pgck_kj_blob_free(&w);
	}

	/* the input as NUL-terminated text: header value, timestamp, context */
	text = malloc(size + 1);
	FUZZ_CHECK(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	pgck_kj_parse_error(text, NULL, 0, &e);
	check_printable(e.type, PGCK_KJ_MAX_ERROR_TYPE);
	(void) pgck_kj_parse_iso8601(text, &t);
	req = pgck_kj_build_generate_data_key("alias/fuzz", text, 32, &err);
	if (req != NULL)
	{
		json_t	   *j = json_loads(req, JSON_REJECT_DUPLICATES, NULL);

		FUZZ_CHECK(j != NULL && json_is_object(j));
		json_decref(j);
		free(req);
	}
	else
		FUZZ_CHECK(err.status == PGCK_KJ_ERR_CONTEXT || err.status == PGCK_KJ_ERR_NOMEM);
	free(text);
	return 0;
}
