/*-------------------------------------------------------------------------
 *
 * test_kms_json.c
 *		Unit tests of kms_json.c: KMS request bodies, strict KMS response
 *		parsing, KMS and STS error bodies, credential endpoint JSON, STS XML.
 *
 * Usage: test_kms_json [vectors-dir]   (the argument is ignored)
 * Prints "ok N - ..." / "not ok N - ..." and a last line
 * "N passed, N failed"; exits 1 on any failure.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base64.h"
#include "kms_json.h"

static int	n_test = 0;
static int	n_pass = 0;
static int	n_fail = 0;

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n);

	if (p == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return p;
}

static void *
xcalloc(size_t n)
{
	void	   *p = xmalloc(n);

	memset(p, 0, n);
	return p;
}

static char *
xasprintf(const char *fmt,...)
{
	va_list		ap;
	char	   *s = NULL;
	int			rc;

	va_start(ap, fmt);
	rc = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (rc < 0 || s == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	return s;
}

static void
check(int cond, const char *what)
{
	n_test++;
	if (cond)
	{
		n_pass++;
		printf("ok %d - %s\n", n_test, what);
	}
	else
	{
		n_fail++;
		printf("not ok %d - %s\n", n_test, what);
	}
}

static int
is_zero(const uint8_t *p, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* base64 of bytes 0..31 and 0..15 */
#define PT32 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define PT16 "AAECAwQFBgcICQoLDA0ODw=="
/* base64 of "wrapped-blob-0001" */
#define WRAPPED "d3JhcHBlZC1ibG9iLTAwMDE="
#define ARN "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

static char *
repeat(char c, size_t n)
{
	char	   *s = xmalloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ------------------------------------------------------------------ */

static void
test_builders(void)
{
	PgckKjError err;
	char	   *s;
	char	   *big;
	uint8_t		blob[17];
	uint8_t    *huge;

	memcpy(blob, "wrapped-blob-0001", 17);

	s = pgck_kj_build_generate_data_key("alias/x", "{\"tenant\":\"42\"}", 32, &err);
	check(s != NULL && strcmp(s, "{\"EncryptionContext\":{\"tenant\":\"42\"},\"KeyId\":\"alias/x\",\"KeySpec\":\"AES_256\"}") == 0,
		  "GenerateDataKey body with KeySpec AES_256 and context");
	free(s);

	s = pgck_kj_build_generate_data_key("alias/x", NULL, 16, &err);
	check(s != NULL && strcmp(s, "{\"KeyId\":\"alias/x\",\"NumberOfBytes\":16}") == 0,
		  "GenerateDataKey body with NumberOfBytes and no context");
	free(s);

	s = pgck_kj_build_generate_data_key("alias/x", "{}", 32, &err);
	check(s != NULL && strstr(s, "EncryptionContext") == NULL, "empty context object is omitted");
	free(s);

	s = pgck_kj_build_generate_data_key("alias/x", "", 32, &err);
	check(s != NULL && strstr(s, "EncryptionContext") == NULL, "empty context text is omitted");
	free(s);

	s = pgck_kj_build_generate_data_key("alias/x", NULL, 0, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "key length 0 rejected");
	s = pgck_kj_build_generate_data_key("alias/x", NULL, 1025, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "key length 1025 rejected");
	s = pgck_kj_build_generate_data_key("", NULL, 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "empty key id rejected");
	s = pgck_kj_build_generate_data_key(NULL, NULL, 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "NULL key id rejected");
	big = repeat('k', PGCK_KJ_MAX_KEY_ID + 1);
	s = pgck_kj_build_generate_data_key(big, NULL, 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "over-long key id rejected");
	free(big);
	s = pgck_kj_build_generate_data_key("alias/\xff\xfe", NULL, 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "key id not UTF-8 rejected");

	s = pgck_kj_build_generate_data_key("alias/x", "[1,2]", 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_CONTEXT, "context array rejected");
	s = pgck_kj_build_generate_data_key("alias/x", "{\"a\":1}", 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_CONTEXT, "context with number value rejected");
	s = pgck_kj_build_generate_data_key("alias/x", "{\"a\":{\"b\":\"c\"}}", 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_CONTEXT, "context with nested object rejected");
	s = pgck_kj_build_generate_data_key("alias/x", "{\"a\":\"b\"", 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_CONTEXT, "truncated context rejected");
	s = pgck_kj_build_generate_data_key("alias/x", "{\"a\":\"b\",\"a\":\"c\"}", 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_CONTEXT, "context with duplicate keys rejected");
	s = pgck_kj_build_generate_data_key("alias/x", "{\"\":\"b\"}", 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_CONTEXT, "context with empty key rejected");
	big = xmalloc(PGCK_KJ_MAX_CONTEXT_TEXT + 32);
	strcpy(big, "{\"a\":\"");
	memset(big + 6, 'v', PGCK_KJ_MAX_CONTEXT_TEXT);
	strcpy(big + 6 + PGCK_KJ_MAX_CONTEXT_TEXT, "\"}");
	s = pgck_kj_build_generate_data_key("alias/x", big, 32, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_CONTEXT, "huge context rejected");
	free(big);
	check(pgck_kj_check_context("{\"k\":\"v\",\"k2\":\"\"}", &err), "check_context accepts strings");
	check(pgck_kj_check_context(NULL, &err), "check_context accepts NULL");
	check(!pgck_kj_check_context("null", &err) && err.status == PGCK_KJ_ERR_CONTEXT,
		  "check_context rejects null");

	s = pgck_kj_build_decrypt("alias/x", "{\"t\":\"1\"}", blob, sizeof(blob), &err);
	check(s != NULL && strcmp(s, "{\"CiphertextBlob\":\"" WRAPPED "\",\"EncryptionContext\":{\"t\":\"1\"},\"KeyId\":\"alias/x\"}") == 0,
		  "Decrypt body");
	free(s);
	s = pgck_kj_build_decrypt("alias/x", NULL, blob, 0, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "Decrypt with empty blob rejected");
	huge = xcalloc(PGCK_KJ_MAX_CIPHERTEXT + 1);
	s = pgck_kj_build_decrypt("alias/x", NULL, huge, PGCK_KJ_MAX_CIPHERTEXT + 1, &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "Decrypt with over-long blob rejected");
	s = pgck_kj_build_decrypt("alias/x", NULL, huge, PGCK_KJ_MAX_CIPHERTEXT, &err);
	check(s != NULL, "Decrypt with maximal blob accepted");
	free(s);
	free(huge);

	s = pgck_kj_build_reencrypt("alias/old", "alias/new", "{\"t\":\"1\"}", "{\"t\":\"1\"}",
								blob, sizeof(blob), &err);
	check(s != NULL && strcmp(s, "{\"CiphertextBlob\":\"" WRAPPED "\",\"DestinationEncryptionContext\":{\"t\":\"1\"},\"DestinationKeyId\":\"alias/new\",\"SourceEncryptionContext\":{\"t\":\"1\"},\"SourceKeyId\":\"alias/old\"}") == 0,
		  "ReEncrypt body");
	free(s);
	s = pgck_kj_build_reencrypt("alias/old", NULL, NULL, NULL, blob, sizeof(blob), &err);
	check(s == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "ReEncrypt without destination rejected");

	s = pgck_kj_build_describe_key(ARN, &err);
	check(s != NULL && strcmp(s, "{\"KeyId\":\"" ARN "\"}") == 0, "DescribeKey body");
	free(s);
	s = pgck_kj_build_describe_key("a\"b\\c", &err);
	check(s != NULL && strcmp(s, "{\"KeyId\":\"a\\\"b\\\\c\"}") == 0, "key id is JSON-escaped");
	free(s);
}

static void
test_generate_data_key(void)
{
	PgckKjError err;
	PgckKjBlob	w;
	uint8_t		dek[32];
	uint8_t		want[32];
	size_t		i;
	char	   *body;
	char	   *big;
	int			ok;

	for (i = 0; i < 32; i++)
		want[i] = (uint8_t) i;

#define GDK(b) pgck_kj_parse_generate_data_key((b), strlen(b), 32, dek, &w, &err)

	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32 "\",\"KeyId\":\"" ARN "\"}");
	check(ok && memcmp(dek, want, 32) == 0 && w.len == 17 &&
		  memcmp(w.data, "wrapped-blob-0001", 17) == 0 && err.status == PGCK_KJ_OK,
		  "GenerateDataKey response parsed");
	pgck_kj_blob_free(&w);
	check(w.data == NULL && w.len == 0, "blob_free clears");

	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32 "\",\"KeyId\":\"" ARN "\",\"KeyMaterialId\":\"abc\",\"Extra\":[1,{}]}");
	check(ok, "unknown members are ignored");
	pgck_kj_blob_free(&w);

	memset(dek, 0xAA, sizeof(dek));
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT16 "\"}");
	check(!ok && err.status == PGCK_KJ_ERR_KEY_LENGTH && is_zero(dek, 32) && w.data == NULL,
		  "16-byte plaintext when 32 asked: wrong key length, output wiped");

	ok = pgck_kj_parse_generate_data_key("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32 "\"}",
										 strlen("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32 "\"}"),
										 16, dek, &w, &err);
	check(!ok && err.status == PGCK_KJ_ERR_KEY_LENGTH, "32-byte plaintext when 16 asked rejected");

	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\"}");
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "missing Plaintext");
	ok = GDK("{\"Plaintext\":\"" PT32 "\"}");
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "missing CiphertextBlob");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":12345}");
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "Plaintext of wrong type");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":null}");
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "Plaintext null");
	ok = GDK("{\"CiphertextBlob\":[\"" WRAPPED "\"],\"Plaintext\":\"" PT32 "\"}");
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "CiphertextBlob of wrong type");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32 "\",\"KeyId\":7}");
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "KeyId of wrong type");
	ok = GDK("{\"CiphertextBlob\":\"\",\"Plaintext\":\"" PT32 "\"}");
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "empty CiphertextBlob");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"\"}");
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "empty Plaintext");
	/* last data char 'B' has non-zero pad bits */
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\"}");
	check(!ok && err.status == PGCK_KJ_ERR_BASE64, "non-canonical base64 Plaintext");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\"}");
	check(!ok && err.status == PGCK_KJ_ERR_BASE64, "unpadded base64 Plaintext");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"AAECAwQFBgcICQoL DA0ODxAREhMUFRYXGBkaGxwdHh8=\"}");
	check(!ok && err.status == PGCK_KJ_ERR_BASE64, "base64 Plaintext with a blank");
	ok = GDK("{\"CiphertextBlob\":\"d3JhcHBlZC1ibG9i_TAwMDE=\",\"Plaintext\":\"" PT32 "\"}");
	check(!ok && err.status == PGCK_KJ_ERR_BASE64, "base64url CiphertextBlob rejected");

	/* huge Plaintext: over the model's 1024-byte bound */
	big = repeat('A', 8000);
	body = xasprintf("{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", WRAPPED, big);
	ok = GDK(body);
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "huge Plaintext rejected by size");
	free(body);
	free(big);

	/* huge CiphertextBlob */
	big = repeat('A', PGCK_BASE64_ENC_LEN(PGCK_KJ_MAX_CIPHERTEXT) + 4);
	body = xasprintf("{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", big, PT32);
	ok = GDK(body);
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "huge CiphertextBlob rejected");
	free(body);
	free(big);

	/* maximal CiphertextBlob accepted */
	big = repeat('A', PGCK_BASE64_ENC_LEN(PGCK_KJ_MAX_CIPHERTEXT));
	body = xasprintf("{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\"}", big, PT32);
	ok = GDK(body);
	check(ok && w.len == PGCK_KJ_MAX_CIPHERTEXT, "6144-byte CiphertextBlob accepted");
	pgck_kj_blob_free(&w);
	free(body);
	free(big);

	/* huge KeyId */
	big = repeat('k', PGCK_KJ_MAX_KEY_ID + 1);
	body = xasprintf("{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\",\"KeyId\":\"%s\"}", WRAPPED, PT32, big);
	ok = GDK(body);
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "huge KeyId rejected");
	free(body);
	free(big);

	/* body over the limit, even though valid JSON */
	big = repeat('p', PGCK_KJ_MAX_BODY);
	body = xasprintf("{\"CiphertextBlob\":\"%s\",\"Plaintext\":\"%s\",\"Pad\":\"%s\"}", WRAPPED, PT32, big);
	free(big);
	check(strlen(body) > PGCK_KJ_MAX_BODY, "oversized body built");
	ok = GDK(body);
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "body over 1 MiB rejected");
	free(body);

	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "truncated JSON");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32 "\"} trailing");
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "trailing garbage");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"" PT32 "\",\"Plaintext\":\"" PT32 "\"}");
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "duplicate members rejected");
	ok = GDK("[\"" PT32 "\"]");
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "array body");
	ok = GDK("\"" PT32 "\"");
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "string body");
	ok = GDK("<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>");
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "HTML page");
	ok = GDK("");
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "empty body");
	ok = pgck_kj_parse_generate_data_key(NULL, 0, 32, dek, &w, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "NULL body");
	ok = GDK("{\"CiphertextBlob\":\"" WRAPPED "\",\"Plaintext\":\"AA\\u0000A\"}");
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "NUL escape rejected");
	ok = pgck_kj_parse_generate_data_key("{\"CiphertextBlob\":\"" WRAPPED "\"}\0{", 28, 32, dek, &w, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "embedded NUL byte in body");

	/* deep nesting must fail cleanly, not overflow the stack */
	{
		size_t		depth = 100000;

		body = xmalloc(2 * depth + 1);
		memset(body, '[', depth);
		memset(body + depth, ']', depth);
		body[2 * depth] = '\0';
		ok = GDK(body);
		check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "deeply nested JSON rejected");
		free(body);
	}
	ok = pgck_kj_parse_generate_data_key("{}", 2, 0, dek, &w, &err);
	check(!ok && err.status == PGCK_KJ_ERR_ARGUMENT, "key length 0 is an argument error");
#undef GDK
}

static void
test_decrypt_reencrypt(void)
{
	PgckKjError err;
	PgckKjBlob	w;
	uint8_t		dek[32];
	uint8_t		dek16[16];
	const char *b;
	int			ok;

	b = "{\"KeyId\":\"" ARN "\",\"Plaintext\":\"" PT32 "\",\"EncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}";
	ok = pgck_kj_parse_decrypt(b, strlen(b), 32, dek, &err);
	check(ok && dek[0] == 0 && dek[31] == 31, "Decrypt response parsed");

	b = "{\"KeyId\":\"" ARN "\",\"Plaintext\":\"" PT16 "\"}";
	ok = pgck_kj_parse_decrypt(b, strlen(b), 16, dek16, &err);
	check(ok && dek16[15] == 15, "Decrypt response with 16-byte key");
	memset(dek, 0x55, sizeof(dek));
	ok = pgck_kj_parse_decrypt(b, strlen(b), 32, dek, &err);
	check(!ok && err.status == PGCK_KJ_ERR_KEY_LENGTH && is_zero(dek, 32),
		  "Decrypt with wrong key length rejected and output wiped");
	b = "{\"KeyId\":\"" ARN "\"}";
	ok = pgck_kj_parse_decrypt(b, strlen(b), 32, dek, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "Decrypt without Plaintext");
	b = "{\"Plaintext\":true}";
	ok = pgck_kj_parse_decrypt(b, strlen(b), 32, dek, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "Decrypt Plaintext boolean");

	b = "{\"CiphertextBlob\":\"" WRAPPED "\",\"KeyId\":\"" ARN "\",\"SourceKeyId\":\"" ARN "\"}";
	ok = pgck_kj_parse_reencrypt(b, strlen(b), &w, &err);
	check(ok && w.len == 17, "ReEncrypt response parsed");
	pgck_kj_blob_free(&w);
	b = "{\"KeyId\":\"" ARN "\"}";
	ok = pgck_kj_parse_reencrypt(b, strlen(b), &w, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING && w.data == NULL, "ReEncrypt without CiphertextBlob");
	b = "{\"CiphertextBlob\":\"" WRAPPED "\",\"SourceKeyId\":false}";
	ok = pgck_kj_parse_reencrypt(b, strlen(b), &w, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE && w.data == NULL, "ReEncrypt SourceKeyId of wrong type");
}

/* Key ARNs reported by KMS responses (stored by the keyring, issue 11 defect 3). */
static void
test_key_arn(void)
{
	PgckKjError err;
	char		arn[PGCK_KJ_MAX_KEY_ID + 1];
	char	   *s;
	const char *b;
	uint8_t		blob[17];
	int			ok;

	memcpy(blob, "wrapped-blob-0001", 17);
	s = pgck_kj_build_decrypt(NULL, NULL, blob, sizeof(blob), &err);
	check(s != NULL && strstr(s, "KeyId") == NULL && strstr(s, "CiphertextBlob") != NULL,
		  "Decrypt body without a key id omits KeyId");
	free(s);
	s = pgck_kj_build_reencrypt(NULL, ARN, NULL, NULL, blob, sizeof(blob), &err);
	check(s != NULL && strstr(s, "SourceKeyId") == NULL && strstr(s, "\"DestinationKeyId\":\"" ARN "\"") != NULL,
		  "ReEncrypt body without a source key id omits SourceKeyId");
	free(s);
	s = pgck_kj_build_decrypt(ARN, NULL, blob, sizeof(blob), &err);
	check(s != NULL && strstr(s, "\"KeyId\":\"" ARN "\"") != NULL, "Decrypt body sends the key ARN as KeyId");
	free(s);

	b = "{\"KeyId\":\"" ARN "\",\"Plaintext\":\"" PT32 "\"}";
	ok = pgck_kj_parse_key_arn(b, strlen(b), "KeyId", arn, &err);
	check(ok && strcmp(arn, ARN) == 0, "KeyId of a response read as the key ARN");
	b = "{\"CiphertextBlob\":\"" WRAPPED "\",\"KeyId\":\"arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1\","
		"\"SourceKeyId\":\"" ARN "\"}";
	ok = pgck_kj_parse_key_arn(b, strlen(b), "SourceKeyId", arn, &err);
	check(ok && strcmp(arn, ARN) == 0, "SourceKeyId of a ReEncrypt response");
	ok = pgck_kj_parse_key_arn(b, strlen(b), "KeyId", arn, &err);
	check(ok && strcmp(arn, "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1") == 0,
		  "KeyId in another partition, multi-Region key id");
	b = "{\"Plaintext\":\"" PT32 "\"}";
	memset(arn, 'x', sizeof(arn));
	ok = pgck_kj_parse_key_arn(b, strlen(b), "KeyId", arn, &err);
	check(ok && arn[0] == '\0', "absent KeyId gives an empty ARN");
	{
		static const char *const bad[] = {
			"alias/app",
			"1234abcd-12ab-34cd-56ef-1234567890ab",
			"arn:aws:kms:us-east-1:111122223333:alias/app",
			"arn:aws:kms:us-east-1:11112222333:key/1234",
			"arn:aws:kms:us-east-1:1111222233334:key/1234",
			"arn:aws:s3:us-east-1:111122223333:key/1234",
			"arn:aws:kms::111122223333:key/1234",
			"arn:aws:kms:us-east-1:111122223333:key/",
			"arn:aws:kms:us-east-1:111122223333:key/12/34",
			"arn:aws:kms:us-east-1:111122223333:key/12 34",
			"arn:aws:kms:US-EAST-1:111122223333:key/1234",
			"xrn:aws:kms:us-east-1:111122223333:key/1234",
			"arn:aws:kms:us-east-1:111122223333",
		};
		size_t		i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			char		body[256];

			snprintf(body, sizeof(body), "{\"KeyId\":\"%s\"}", bad[i]);
			ok = pgck_kj_parse_key_arn(body, strlen(body), "KeyId", arn, &err);
			check(!ok && err.status == PGCK_KJ_ERR_VALUE, bad[i]);
		}
	}
	b = "{\"KeyId\":42}";
	ok = pgck_kj_parse_key_arn(b, strlen(b), "KeyId", arn, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "KeyId number refused");
	b = "{\"KeyId\":\"\"}";
	ok = pgck_kj_parse_key_arn(b, strlen(b), "KeyId", arn, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "empty KeyId refused");
	ok = pgck_kj_parse_key_arn("[1]", 3, "KeyId", arn, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "ARN from a non-object body refused");
}

static void
test_describe_key(void)
{
	PgckKjError err;
	PgckKjKeyMetadata md;
	const char *b;
	char	   *body;
	char	   *big;
	int			ok;

	b = "{\"KeyMetadata\":{\"AWSAccountId\":\"111122223333\",\"Arn\":\"" ARN "\",\"CreationDate\":1.4789107069E9,"
		"\"CustomerMasterKeySpec\":\"SYMMETRIC_DEFAULT\",\"Description\":\"\",\"Enabled\":true,"
		"\"EncryptionAlgorithms\":[\"SYMMETRIC_DEFAULT\"],\"KeyId\":\"1234abcd-12ab-34cd-56ef-1234567890ab\","
		"\"KeyManager\":\"CUSTOMER\",\"KeySpec\":\"SYMMETRIC_DEFAULT\",\"KeyState\":\"Enabled\","
		"\"KeyUsage\":\"ENCRYPT_DECRYPT\",\"MultiRegion\":false,\"Origin\":\"AWS_KMS\"}}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(ok && md.enabled && strcmp(md.key_state, "Enabled") == 0 &&
		  strcmp(md.key_usage, "ENCRYPT_DECRYPT") == 0 &&
		  strcmp(md.key_spec, "SYMMETRIC_DEFAULT") == 0 &&
		  strcmp(md.arn, ARN) == 0 &&
		  strcmp(md.key_id, "1234abcd-12ab-34cd-56ef-1234567890ab") == 0,
		  "DescribeKey (model example) parsed");

	b = "{\"KeyMetadata\":{\"KeyId\":\"k\",\"Enabled\":false,\"KeyState\":\"Disabled\",\"CustomerMasterKeySpec\":\"RSA_2048\",\"KeyUsage\":\"SIGN_VERIFY\"}}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(ok && !md.enabled && strcmp(md.key_spec, "RSA_2048") == 0 && md.arn[0] == '\0',
		  "DescribeKey falls back to CustomerMasterKeySpec");

	b = "{\"KeyMetadata\":{\"KeyId\":\"k\",\"Enabled\":\"true\"}}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "Enabled as string rejected");
	b = "{\"KeyMetadata\":{\"KeyId\":\"k\"}}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "Enabled missing");
	b = "{\"KeyMetadata\":{\"Enabled\":true}}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "KeyId missing");
	b = "{\"KeyMetadata\":[]}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "KeyMetadata array");
	b = "{\"Key\":{}}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "KeyMetadata missing");
	b = "{\"KeyMetadata\":{\"KeyId\":\"k\",\"Enabled\":true,\"KeyUsage\":5}}";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "KeyUsage of wrong type");

	big = repeat('S', 100);
	body = xasprintf("{\"KeyMetadata\":{\"KeyId\":\"k\",\"Enabled\":true,\"KeyState\":\"%s\"}}", big);
	ok = pgck_kj_parse_describe_key(body, strlen(body), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SIZE, "over-long KeyState rejected");
	free(body);
	free(big);

	/* a long Description is not our business, as long as the body fits */
	big = repeat('d', 8192);
	body = xasprintf("{\"KeyMetadata\":{\"KeyId\":\"k\",\"Enabled\":true,\"Description\":\"%s\"}}", big);
	ok = pgck_kj_parse_describe_key(body, strlen(body), &md, &err);
	check(ok, "long Description ignored");
	free(body);
	free(big);

	b = "{\"KeyMetadata\":{\"KeyId\":\"k\",\"Enabled\":tru";
	ok = pgck_kj_parse_describe_key(b, strlen(b), &md, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "truncated DescribeKey");
}

static void
test_errors(void)
{
	PgckKjAwsError e;
	const char *b;
	char	   *body;
	char	   *big;

	b = "{\"__type\":\"NotFoundException\",\"message\":\"Alias arn:aws:kms:us-east-1:1:alias/x is not found.\"}";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(strcmp(e.type, "NotFoundException") == 0 &&
		  strcmp(e.message, "Alias arn:aws:kms:us-east-1:1:alias/x is not found.") == 0 &&
		  !e.body_unparsed, "__type and message");

	b = "{\"__type\":\"com.amazonaws.kms#NotFoundException:http://internal.amazon.com/coral/\",\"Message\":\"M\"}";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(strcmp(e.type, "NotFoundException") == 0 && strcmp(e.message, "M") == 0,
		  "namespaced __type cut at ':' and '#', Message capitalized");

	b = "{\"code\":\"ThrottlingException\",\"__type\":\"Other\",\"message\":\"slow down\"}";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(strcmp(e.type, "ThrottlingException") == 0, "code wins over __type");

	b = "{\"code\":7,\"__type\":\"Other\"}";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(strcmp(e.type, "Other") == 0, "non-string code falls back to __type");

	b = "{\"__type\":\"Other\",\"message\":\"m\"}";
	pgck_kj_parse_error("aws.protocoltests#AccessDeniedException:http://x/y", b, strlen(b), &e);
	check(strcmp(e.type, "AccessDeniedException") == 0 && strcmp(e.message, "m") == 0,
		  "X-Amzn-Errortype header wins");
	pgck_kj_parse_error(" KMSInternalException \r\n", "", 0, &e);
	check(strcmp(e.type, "KMSInternalException") == 0 && e.body_unparsed,
		  "header trimmed, empty body flagged");

	b = "<html><body><h1>503 Service Unavailable</h1></body></html>";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(e.type[0] == '\0' && e.message[0] == '\0' && e.body_unparsed, "HTML error page");
	pgck_kj_parse_error(NULL, NULL, 0, &e);
	check(e.type[0] == '\0' && e.body_unparsed, "NULL body");
	b = "{\"__type\":\"X\"";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(e.type[0] == '\0' && e.body_unparsed, "truncated error body");
	b = "{\"message\":\"line1\\nline2\\u0007\\u00e9\"}";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(strcmp(e.message, "line1?line2???") == 0 && e.type[0] == '\0',
		  "control and non-ASCII characters replaced");

	big = repeat('m', 5000);
	body = xasprintf("{\"__type\":\"%s\",\"message\":\"%s\"}", big, big);
	pgck_kj_parse_error(NULL, body, strlen(body), &e);
	check(strlen(e.type) == PGCK_KJ_MAX_ERROR_TYPE && strlen(e.message) == PGCK_KJ_MAX_ERROR_MESSAGE,
		  "huge type and message truncated");
	free(body);
	free(big);
	b = "{\"__type\":\"ValidationException\",\"message\":[1]}";
	pgck_kj_parse_error(NULL, b, strlen(b), &e);
	check(strcmp(e.type, "ValidationException") == 0 && e.message[0] == '\0',
		  "message of wrong type ignored");
}

static void
test_iso8601(void)
{
	time_t		t = 0;

	check(pgck_kj_parse_iso8601("2017-05-17T15:09:54Z", &t) && t == 1495033794, "ISO 8601 basic");
	check(pgck_kj_parse_iso8601("2017-05-17T15:09:54.123Z", &t) && t == 1495033794,
		  "ISO 8601 fractional seconds");
	check(pgck_kj_parse_iso8601("2017-05-17T15:09:54+00:00", &t) && t == 1495033794,
		  "ISO 8601 +00:00");
	check(pgck_kj_parse_iso8601("2000-02-29T00:00:00Z", &t) && t == 951782400, "leap day");
	check(!pgck_kj_parse_iso8601("2001-02-29T00:00:00Z", &t), "Feb 29 of a common year rejected");
	check(!pgck_kj_parse_iso8601("2017-13-17T15:09:54Z", &t), "month 13 rejected");
	check(!pgck_kj_parse_iso8601("2017-05-17T15:09:54", &t), "missing zone rejected");
	check(!pgck_kj_parse_iso8601("2017-05-17T15:09:54+02:00", &t), "non-UTC offset rejected");
	check(!pgck_kj_parse_iso8601("2017-05-17 15:09:54Z", &t), "space separator rejected");
	check(!pgck_kj_parse_iso8601("2017-05-17T15:09:54.Z", &t), "empty fraction rejected");
	check(!pgck_kj_parse_iso8601("2017-05-17T15:09:54Zjunk", &t), "trailing junk rejected");
	check(!pgck_kj_parse_iso8601("2017-05", &t), "short string rejected");
	check(!pgck_kj_parse_iso8601(NULL, &t), "NULL rejected");
}

static void
test_json_credentials(void)
{
	PgckKjCredentials c;
	PgckKjError err;
	const char *b;
	char	   *body;
	char	   *big;
	int			ok;

	b = "{\"AccessKeyId\":\"ASIAEXAMPLE\",\"SecretAccessKey\":\"s3cr3t/+=\",\"Token\":\"tok+/=\","
		"\"Expiration\":\"2017-05-17T15:09:54Z\",\"RoleArn\":\"arn:aws:iam::1:role/r\"}";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(ok && strcmp(c.access_key_id, "ASIAEXAMPLE") == 0 &&
		  strcmp(c.secret_access_key, "s3cr3t/+=") == 0 &&
		  strcmp(c.session_token, "tok+/=") == 0 && c.expiration == 1495033794,
		  "container credentials parsed");
	pgck_kj_credentials_free(&c);
	check(c.access_key_id == NULL && c.secret_access_key == NULL && c.session_token == NULL &&
		  c.expiration == 0, "credentials_free clears");
	pgck_kj_credentials_free(&c);
	pgck_kj_credentials_free(NULL);
	check(1, "credentials_free is idempotent and NULL-safe");

	b = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING && c.access_key_id == NULL,
		  "container credentials without Token rejected, nothing left allocated");
	b = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\"}";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "missing Expiration");
	b = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":\"tomorrow\"}";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "bad Expiration");
	b = "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":1495033794}";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "numeric Expiration rejected");
	b = "{\"AccessKeyId\":\"A\\r\\nX-Evil: 1\",\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "CR/LF in AccessKeyId rejected");
	b = "{\"AccessKeyId\":1,\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_TYPE, "numeric AccessKeyId rejected");

	big = repeat('t', PGCK_KJ_MAX_SESSION_TOKEN + 1);
	body = xasprintf("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Token\":\"%s\",\"Expiration\":\"2017-05-17T15:09:54Z\"}", big);
	ok = pgck_kj_parse_container_credentials(body, strlen(body), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SIZE && c.access_key_id == NULL && c.secret_access_key == NULL,
		  "huge Token rejected, partial credentials freed");
	free(body);
	free(big);

	b = "<html>404</html>";
	ok = pgck_kj_parse_container_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "HTML instead of credentials");

	b = "{\"Code\":\"Success\",\"LastUpdated\":\"2017-05-17T09:09:54Z\",\"Type\":\"AWS-HMAC\","
		"\"AccessKeyId\":\"ASIA\",\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_imds_credentials(b, strlen(b), &c, &err);
	check(ok && c.expiration == 1495033794, "IMDS credentials parsed");
	pgck_kj_credentials_free(&c);
	b = "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"AccessKeyId\":\"ASIA\",\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_imds_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "IMDS Code other than Success rejected");
	b = "{\"Code\":true,\"AccessKeyId\":\"ASIA\",\"SecretAccessKey\":\"S\",\"Token\":\"T\",\"Expiration\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_imds_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "IMDS Code of wrong type rejected");
}

#define STS_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" \
	"<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n" \
	"  <AssumeRoleWithWebIdentityResult>\n" \
	"    <SubjectFromWebIdentityToken>system:sa</SubjectFromWebIdentityToken>\n" \
	"    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>\n"
#define STS_TAIL "  </AssumeRoleWithWebIdentityResult>\n" \
	"  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>\n" \
	"</AssumeRoleWithWebIdentityResponse>\n"

static void
test_sts(void)
{
	PgckKjCredentials c;
	PgckKjError err;
	PgckKjAwsError e;
	const char *b;
	int			ok;

	b = STS_HEAD
		"    <Credentials>\n"
		"      <SessionToken>FwoGZX+/=</SessionToken>\n"
		"      <SecretAccessKey>wJalr/K7MDENG+bPxRfiCY</SecretAccessKey>\n"
		"      <Expiration>2017-05-17T15:09:54Z</Expiration>\n"
		"      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>\n"
		"    </Credentials>\n"
		STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(ok && strcmp(c.access_key_id, "ASIAEXAMPLE") == 0 &&
		  strcmp(c.secret_access_key, "wJalr/K7MDENG+bPxRfiCY") == 0 &&
		  strcmp(c.session_token, "FwoGZX+/=") == 0 && c.expiration == 1495033794,
		  "STS AssumeRoleWithWebIdentity credentials parsed");
	pgck_kj_credentials_free(&c);

	b = STS_HEAD "<Credentials><SessionToken>a&amp;b</SessionToken><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54.000Z</Expiration><AccessKeyId>A</AccessKeyId></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(ok && strcmp(c.session_token, "a&b") == 0, "predefined entity decoded");
	pgck_kj_credentials_free(&c);

	b = STS_HEAD "<Credentials><SessionToken>a&foo;b</SessionToken><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54Z</Expiration><AccessKeyId>A</AccessKeyId></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE && c.access_key_id == NULL, "unknown entity rejected");

	b = STS_HEAD "<Credentials><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54Z</Expiration><AccessKeyId>A</AccessKeyId></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "missing SessionToken");

	b = STS_HEAD "<Credentials><SessionToken>T</SessionToken><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54Z</Expiration><AccessKeyId>A</AccessKeyId><AccessKeyId>B</AccessKeyId></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "duplicate AccessKeyId rejected");

	b = STS_HEAD "<Credentials><SessionToken>T</SessionToken><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>never</Expiration><AccessKeyId>A</AccessKeyId></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "bad STS Expiration");

	b = STS_HEAD "<Credentials><SessionToken>T</SessionToken><SecretAccessKey><![CDATA[S]]></SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54Z</Expiration><AccessKeyId>A</AccessKeyId></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "CDATA rejected");

	b = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"v\">]>" STS_HEAD "<Credentials></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "DOCTYPE rejected");

	b = STS_HEAD "<Credentials><SessionToken>T</SessionToken><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54Z</Expiration><AccessKeyId>A";
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "truncated XML");

	b = STS_HEAD "<Credentials><SessionToken>T</SessionToken><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54Z</Expiration><AccessKeyId/></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok, "self-closing AccessKeyId rejected");

	b = STS_HEAD "<Credentials><SessionToken>T T</SessionToken><SecretAccessKey>S</SecretAccessKey>"
		"<Expiration>2017-05-17T15:09:54Z</Expiration><AccessKeyId>A</AccessKeyId></Credentials>" STS_TAIL;
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "blank inside SessionToken rejected");

	b = "<html><body>Service Unavailable</body></html>";
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "HTML instead of STS XML");
	ok = pgck_kj_parse_sts_credentials("", 0, &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "empty STS body");
	b = "{\"Credentials\":{}}";
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "JSON instead of STS XML");

	b = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
		"  <Error>\n    <Type>Sender</Type>\n    <Code>InvalidIdentityToken</Code>\n"
		"    <Message>Token &lt;expired&gt;</Message>\n  </Error>\n"
		"  <RequestId>abc</RequestId>\n</ErrorResponse>\n";
	pgck_kj_parse_sts_error(b, strlen(b), &e);
	check(strcmp(e.type, "InvalidIdentityToken") == 0 &&
		  strcmp(e.message, "Token <expired>") == 0 && !e.body_unparsed, "STS error parsed");
	b = "<html>502</html>";
	pgck_kj_parse_sts_error(b, strlen(b), &e);
	check(e.type[0] == '\0' && e.body_unparsed, "STS error from HTML page");
}

static void
test_allocator(void)
{
	json_malloc_t m;
	json_free_t f;

	pgck_kj_install_wiping_allocator();
	json_get_alloc_funcs(&m, &f);
	check(m != malloc && f != free, "jansson wiping allocator installed");
	pgck_kj_install_wiping_allocator();
	check(pgck_kj_status_name(PGCK_KJ_ERR_KEY_LENGTH) != NULL &&
		  strcmp(pgck_kj_status_name(PGCK_KJ_OK), "ok") == 0, "status names");
}

static void
test_new_sources(void)
{
	PgckKjCredentials c;
	PgckKjError err;
	PgckKjBlob	blob;
	const char *b;
	char	   *t;
	char	   *body;
	time_t		when;
	bool		ok;
	const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};

	/* Encrypt: the plaintext goes in base64, the context as EncryptionContext */
	body = pgck_kj_build_encrypt("alias/k", "{\"tenant\":\"7\"}", key, sizeof(key), &err);
	check(body != NULL && strcmp(body, "{\"EncryptionContext\":{\"tenant\":\"7\"},\"KeyId\":\"alias/k\",\"Plaintext\":\"3q2+7w==\"}") == 0,
		  "Encrypt request body: KeyId, Plaintext in base64, EncryptionContext");
	free(body);
	body = pgck_kj_build_encrypt("alias/k", NULL, key, 0, &err);
	check(body == NULL && err.status == PGCK_KJ_ERR_ARGUMENT, "Encrypt of nothing refused");
	b = "{\"CiphertextBlob\":\"AQID\",\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\",\"EncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}";
	ok = pgck_kj_parse_encrypt(b, strlen(b), &blob, &err);
	check(ok && blob.len == 3 && blob.data[0] == 1 && blob.data[2] == 3, "Encrypt response parsed");
	pgck_kj_blob_free(&blob);
	b = "{\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\"}";
	ok = pgck_kj_parse_encrypt(b, strlen(b), &blob, &err);
	check(!ok && blob.data == NULL, "Encrypt response without CiphertextBlob rejected");

	/* credential_process, Version 1 */
	b = "{\"Version\":1,\"AccessKeyId\":\"ASIA1\",\"SecretAccessKey\":\"s/+=\",\"SessionToken\":\"tok\",\"Expiration\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_process_credentials(b, strlen(b), &c, &err);
	check(ok && strcmp(c.session_token, "tok") == 0 && c.expiration == 1495033794,
		  "credential_process temporary credentials parsed");
	pgck_kj_credentials_free(&c);
	b = "{\"Version\":1,\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\"}";
	ok = pgck_kj_parse_process_credentials(b, strlen(b), &c, &err);
	check(ok && c.session_token == NULL && c.expiration == 0,
		  "credential_process long-term credentials: no token, no expiration");
	pgck_kj_credentials_free(&c);
	b = "{\"Version\":2,\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\"}";
	ok = pgck_kj_parse_process_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "credential_process Version 2 rejected");
	b = "{\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\"}";
	ok = pgck_kj_parse_process_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "credential_process without Version rejected");
	b = "{\"Version\":1,\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"s\",\"Expiration\":\"soon\"}";
	ok = pgck_kj_parse_process_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE && c.access_key_id == NULL,
		  "credential_process bad Expiration rejected, nothing left allocated");
	b = "{\"Version\":1,\"SecretAccessKey\":\"s\"}";
	ok = pgck_kj_parse_process_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "credential_process without AccessKeyId rejected");

	/* SSO portal GetRoleCredentials */
	b = "{\"roleCredentials\":{\"accessKeyId\":\"ASIA2\",\"secretAccessKey\":\"s\",\"sessionToken\":\"t\",\"expiration\":1495033794000}}";
	ok = pgck_kj_parse_sso_role_credentials(b, strlen(b), &c, &err);
	check(ok && strcmp(c.access_key_id, "ASIA2") == 0 && c.expiration == 1495033794,
		  "SSO role credentials parsed (expiration in milliseconds)");
	pgck_kj_credentials_free(&c);
	b = "{\"roleCredentials\":{\"accessKeyId\":\"ASIA2\",\"secretAccessKey\":\"s\",\"sessionToken\":\"t\",\"expiration\":1495033794}}";
	ok = pgck_kj_parse_sso_role_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_VALUE, "SSO expiration in seconds (1970) rejected");
	b = "{\"roleCredentials\":{\"accessKeyId\":\"ASIA2\",\"secretAccessKey\":\"s\",\"expiration\":1495033794000}}";
	ok = pgck_kj_parse_sso_role_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING && c.access_key_id == NULL,
		  "SSO credentials without sessionToken rejected");
	b = "{\"accessKeyId\":\"ASIA2\"}";
	ok = pgck_kj_parse_sso_role_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_MISSING, "SSO answer without roleCredentials rejected");

	/* SSO token cache */
	b = "{\"startUrl\":\"https://x.awsapps.com/start\",\"accessToken\":\"aoa-tok\",\"expiresAt\":\"2017-05-17T15:09:54Z\",\"region\":\"us-east-1\"}";
	ok = pgck_kj_parse_sso_token(b, strlen(b), &t, &when, &err);
	check(ok && strcmp(t, "aoa-tok") == 0 && when == 1495033794, "SSO token cache parsed");
	free(t);
	b = "{\"accessToken\":\"aoa-tok\",\"expiresAt\":\"tomorrow\"}";
	ok = pgck_kj_parse_sso_token(b, strlen(b), &t, &when, &err);
	check(!ok && t == NULL && err.status == PGCK_KJ_ERR_VALUE, "SSO token cache with a bad expiresAt rejected");
	b = "{\"expiresAt\":\"2017-05-17T15:09:54Z\"}";
	ok = pgck_kj_parse_sso_token(b, strlen(b), &t, &when, &err);
	check(!ok && t == NULL && err.status == PGCK_KJ_ERR_MISSING, "SSO token cache without accessToken rejected");

	/* STS AssumeRole */
	b = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>"
		"<Credentials><AccessKeyId>ASIA3</AccessKeyId><SecretAccessKey>s&amp;x</SecretAccessKey>"
		"<SessionToken>tok</SessionToken><Expiration>2017-05-17T15:09:54Z</Expiration></Credentials>"
		"</AssumeRoleResult></AssumeRoleResponse>";
	ok = pgck_kj_parse_sts_assume_role(b, strlen(b), &c, &err);
	check(ok && strcmp(c.secret_access_key, "s&x") == 0 && c.expiration == 1495033794,
		  "STS AssumeRole response parsed");
	pgck_kj_credentials_free(&c);
	ok = pgck_kj_parse_sts_credentials(b, strlen(b), &c, &err);
	check(!ok && err.status == PGCK_KJ_ERR_SYNTAX, "an AssumeRole response is not a web identity one");
}

int
main(int argc, char **argv)
{
	(void) argc;
	(void) argv;

	test_builders();
	test_generate_data_key();
	test_decrypt_reencrypt();
	test_key_arn();
	test_describe_key();
	test_errors();
	test_iso8601();
	test_json_credentials();
	test_sts();
	test_new_sources();
	test_allocator();

	printf("%d passed, %d failed\n", n_pass, n_fail);
	return n_fail == 0 ? 0 : 1;
}
