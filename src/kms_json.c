/*-------------------------------------------------------------------------
 *
 * kms_json.c
 *		AWS KMS JSON 1.1 request bodies; strict parsers of KMS, STS and
 *		credential-endpoint responses.  See kms_json.h.
 *
 * Pure C: no PostgreSQL headers, no ereport, no palloc.  Every input is
 * untrusted: sizes are checked before anything is decoded, JSON members are
 * type-checked, blobs are canonical base64 only, and error strings are
 * static so that no byte of a response (which may hold a key or a
 * credential) can reach a log through them.
 *
 *-------------------------------------------------------------------------
 */
/* explicit_bzero, memmem, malloc_usable_size (glibc) for every build */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "kms_json.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base64.h"

/*
 * Never call jansson's json_object(): the PostgreSQL server binary exports
 * a function of the same name (the SQL function json_object), and in a
 * backend the dynamic linker binds our call to that one.  Empty objects
 * come from json_pack("{}"), whose internal call stays inside libjansson.
 */
#pragma GCC poison json_object

#define SET_ERR(err, st, msg) \
	do { \
		if ((err) != NULL) \
		{ \
			(err)->status = (st); \
			(err)->detail = (msg); \
		} \
	} while (0)

/* ------------------------------------------------------------------
 * jansson allocator that wipes on free
 * ------------------------------------------------------------------ */

static void *
wiping_malloc(size_t n)
{
	return malloc(n);
}

static void
wiping_free(void *p)
{
	if (p != NULL)
	{
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

void
pgck_kj_install_wiping_allocator(void)
{
	json_malloc_t cur_malloc;
	json_free_t cur_free;

	json_get_alloc_funcs(&cur_malloc, &cur_free);
	if (cur_malloc == wiping_malloc && cur_free == wiping_free)
		return;
	/* leave an allocator some other library installed alone */
	if (cur_malloc != malloc || cur_free != free)
		return;
	json_set_alloc_funcs(wiping_malloc, wiping_free);
}

/* ------------------------------------------------------------------
 * small helpers
 * ------------------------------------------------------------------ */

const char *
pgck_kj_status_name(PgckKjStatus status)
{
	switch (status)
	{
		case PGCK_KJ_OK:
			return "ok";
		case PGCK_KJ_ERR_NOMEM:
			return "out of memory";
		case PGCK_KJ_ERR_ARGUMENT:
			return "invalid argument";
		case PGCK_KJ_ERR_CONTEXT:
			return "invalid encryption context";
		case PGCK_KJ_ERR_SYNTAX:
			return "malformed response";
		case PGCK_KJ_ERR_MISSING:
			return "missing member";
		case PGCK_KJ_ERR_TYPE:
			return "member of wrong type";
		case PGCK_KJ_ERR_SIZE:
			return "member of invalid size";
		case PGCK_KJ_ERR_BASE64:
			return "invalid base64";
		case PGCK_KJ_ERR_KEY_LENGTH:
			return "wrong key length";
		case PGCK_KJ_ERR_VALUE:
			return "unacceptable value";
	}
	return "unknown status";
}

static void
secure_free(void *p, size_t len)
{
	if (p != NULL)
	{
		explicit_bzero(p, len);
		free(p);
	}
}

static char *
dup_n(const char *s, size_t n)
{
	char	   *r = malloc(n + 1);

	if (r == NULL)
		return NULL;
	memcpy(r, s, n);
	r[n] = '\0';
	return r;
}

/* Copy into a fixed buffer, printable ASCII only, truncated. */
static void
copy_printable(char *dst, size_t dstsize, const char *src, size_t srclen)
{
	size_t		i;
	size_t		n = srclen < dstsize - 1 ? srclen : dstsize - 1;

	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) src[i];

		dst[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
	}
	dst[n] = '\0';
}

/* Credential strings go into HTTP headers: visible ASCII only. */
static bool
is_token_text(const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

/*
 * Parse a response body as a JSON object.  Body size is checked first;
 * duplicate keys, trailing garbage and NUL characters are rejected.
 */
static json_t *
load_object(const char *body, size_t len, PgckKjError *err)
{
	json_t	   *root;
	json_error_t jerr;

	pgck_kj_install_wiping_allocator();
	if (body == NULL || len == 0)
	{
		SET_ERR(err, PGCK_KJ_ERR_SYNTAX, "response body is empty");
		return NULL;
	}
	if (len > PGCK_KJ_MAX_BODY)
	{
		SET_ERR(err, PGCK_KJ_ERR_SIZE, "response body is too large");
		return NULL;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	explicit_bzero(&jerr, sizeof(jerr));	/* its text may quote the body */
	if (root == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_SYNTAX, "response body is not valid JSON");
		return NULL;
	}
	if (!json_is_object(root))
	{
		json_decref(root);
		SET_ERR(err, PGCK_KJ_ERR_SYNTAX, "response body is not a JSON object");
		return NULL;
	}
	return root;
}

/*
 * Fetch a string member.  Returns false with *err set when it is absent
 * (and required), not a string, empty, or longer than maxlen.  Absent and
 * optional: true with *s = NULL.
 */
static bool
get_string(json_t *obj, const char *name, bool required, size_t maxlen,
		   const char **s, size_t *len, PgckKjError *err,
		   const char *missing_msg, const char *type_msg, const char *size_msg)
{
	json_t	   *v = json_object_get(obj, name);

	*s = NULL;
	*len = 0;
	if (v == NULL)
	{
		if (required)
		{
			SET_ERR(err, PGCK_KJ_ERR_MISSING, missing_msg);
			return false;
		}
		return true;
	}
	if (!json_is_string(v))
	{
		SET_ERR(err, PGCK_KJ_ERR_TYPE, type_msg);
		return false;
	}
	*len = json_string_length(v);
	if (*len == 0 || *len > maxlen)
	{
		SET_ERR(err, PGCK_KJ_ERR_SIZE, size_msg);
		return false;
	}
	*s = json_string_value(v);
	return true;
}

/* Decode a base64 blob member of 1..maxlen bytes into a malloc'd buffer. */
static bool
decode_blob(const char *s, size_t slen, size_t maxlen, PgckKjBlob *out,
			PgckKjError *err)
{
	uint8_t    *buf;
	size_t		outlen;

	out->data = NULL;
	out->len = 0;
	if (slen == 0 || slen > PGCK_BASE64_ENC_LEN(maxlen))
	{
		SET_ERR(err, PGCK_KJ_ERR_SIZE, "CiphertextBlob has an invalid size");
		return false;
	}
	buf = malloc(PGCK_BASE64_DEC_MAX(slen) + 1);
	if (buf == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return false;
	}
	if (!pgck_base64_decode(s, slen, buf, &outlen))
	{
		free(buf);
		SET_ERR(err, PGCK_KJ_ERR_BASE64, "CiphertextBlob is not canonical base64");
		return false;
	}
	if (outlen == 0 || outlen > maxlen)
	{
		free(buf);
		SET_ERR(err, PGCK_KJ_ERR_SIZE, "CiphertextBlob has an invalid size");
		return false;
	}
	out->data = buf;
	out->len = outlen;
	return true;
}

/* Decode the Plaintext member: exactly key_len bytes into dek_out. */
static bool
decode_plaintext(json_t *root, size_t key_len, uint8_t *dek_out, PgckKjError *err)
{
	uint8_t		tmp[PGCK_BASE64_DEC_MAX(PGCK_BASE64_ENC_LEN(PGCK_KJ_MAX_PLAINTEXT))];
	const char *s;
	size_t		slen;
	size_t		outlen = 0;
	bool		ok;

	if (!get_string(root, "Plaintext", true, PGCK_BASE64_ENC_LEN(PGCK_KJ_MAX_PLAINTEXT),
					&s, &slen, err,
					"response has no Plaintext",
					"Plaintext is not a string",
					"Plaintext has an invalid size"))
		return false;
	ok = pgck_base64_decode(s, slen, tmp, &outlen);
	if (!ok)
		SET_ERR(err, PGCK_KJ_ERR_BASE64, "Plaintext is not canonical base64");
	else if (outlen != key_len)
	{
		ok = false;
		SET_ERR(err, PGCK_KJ_ERR_KEY_LENGTH,
				"Plaintext does not have the requested key length");
	}
	else
		memcpy(dek_out, tmp, key_len);
	explicit_bzero(tmp, sizeof(tmp));
	return ok;
}

/* ------------------------------------------------------------------
 * Encryption context and request bodies
 * ------------------------------------------------------------------ */

/*
 * Parse a context text.  *ctx is NULL for "no context" (NULL, "", or an
 * empty object), else a new reference to a non-empty object of strings.
 */
static bool
load_context(const char *text, json_t **ctx, PgckKjError *err)
{
	json_t	   *obj;
	json_error_t jerr;
	const char *k;
	json_t	   *v;
	size_t		len;

	*ctx = NULL;
	if (text == NULL || text[0] == '\0')
		return true;
	len = strlen(text);
	if (len > PGCK_KJ_MAX_CONTEXT_TEXT)
	{
		SET_ERR(err, PGCK_KJ_ERR_CONTEXT, "encryption context is too large");
		return false;
	}
	obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_CONTEXT, "encryption context is not valid JSON");
		return false;
	}
	if (!json_is_object(obj))
	{
		json_decref(obj);
		SET_ERR(err, PGCK_KJ_ERR_CONTEXT, "encryption context is not a JSON object");
		return false;
	}
	json_object_foreach(obj, k, v)
	{
		if (!json_is_string(v))
		{
			json_decref(obj);
			SET_ERR(err, PGCK_KJ_ERR_CONTEXT,
					"encryption context values must all be strings");
			return false;
		}
		if (k[0] == '\0')
		{
			json_decref(obj);
			SET_ERR(err, PGCK_KJ_ERR_CONTEXT,
					"encryption context keys must not be empty");
			return false;
		}
	}
	if (json_object_size(obj) == 0)
	{
		json_decref(obj);
		return true;
	}
	*ctx = obj;
	return true;
}

bool
pgck_kj_check_context(const char *context_json, PgckKjError *err)
{
	json_t	   *ctx;

	if (!load_context(context_json, &ctx, err))
		return false;
	json_decref(ctx);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;
}

static bool
set_key_id(json_t *root, const char *member, const char *key_id, PgckKjError *err)
{
	size_t		len;

	if (key_id == NULL || (len = strlen(key_id)) == 0 || len > PGCK_KJ_MAX_KEY_ID)
	{
		SET_ERR(err, PGCK_KJ_ERR_ARGUMENT, "key id is empty or too long");
		return false;
	}
	if (json_object_set_new(root, member, json_stringn(key_id, len)) != 0)
	{
		SET_ERR(err, PGCK_KJ_ERR_ARGUMENT, "key id is not valid UTF-8");
		return false;
	}
	return true;
}

static bool
set_context(json_t *root, const char *member, const char *context_json, PgckKjError *err)
{
	json_t	   *ctx;

	if (!load_context(context_json, &ctx, err))
		return false;
	if (ctx != NULL && json_object_set_new(root, member, ctx) != 0)
	{
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return false;
	}
	return true;
}

static bool
set_blob(json_t *root, const char *member, const uint8_t *blob, size_t len, PgckKjError *err)
{
	char	   *enc;
	size_t		n;
	int			rc;

	if (blob == NULL || len == 0 || len > PGCK_KJ_MAX_CIPHERTEXT)
	{
		SET_ERR(err, PGCK_KJ_ERR_ARGUMENT, "ciphertext blob is empty or too large");
		return false;
	}
	enc = malloc(PGCK_BASE64_ENC_LEN(len) + 1);
	if (enc == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return false;
	}
	n = pgck_base64_encode(blob, len, enc);
	rc = json_object_set_new(root, member, json_stringn(enc, n));
	free(enc);
	if (rc != 0)
	{
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return false;
	}
	return true;
}

static char *
dump_request(json_t *root, PgckKjError *err)
{
	char	   *out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);

	json_decref(root);
	if (out == NULL)
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
	else
		SET_ERR(err, PGCK_KJ_OK, "ok");
	return out;
}

static json_t *
new_request(PgckKjError *err)
{
	json_t	   *root;

	pgck_kj_install_wiping_allocator();
	root = json_pack("{}");
	if (root == NULL)
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
	return root;
}

char *
pgck_kj_build_generate_data_key(const char *key_id, const char *context_json,
								size_t key_len, PgckKjError *err)
{
	json_t	   *root;
	int			rc;

	if (key_len == 0 || key_len > PGCK_KJ_MAX_PLAINTEXT)
	{
		SET_ERR(err, PGCK_KJ_ERR_ARGUMENT, "data key length must be 1 to 1024 bytes");
		return NULL;
	}
	if ((root = new_request(err)) == NULL)
		return NULL;
	if (!set_key_id(root, "KeyId", key_id, err) ||
		!set_context(root, "EncryptionContext", context_json, err))
	{
		json_decref(root);
		return NULL;
	}
	if (key_len == 32)
		rc = json_object_set_new(root, "KeySpec", json_string("AES_256"));
	else
		rc = json_object_set_new(root, "NumberOfBytes", json_integer((json_int_t) key_len));
	if (rc != 0)
	{
		json_decref(root);
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return NULL;
	}
	return dump_request(root, err);
}

char *
pgck_kj_build_decrypt(const char *key_id, const char *context_json,
					  const uint8_t *blob, size_t blob_len, PgckKjError *err)
{
	json_t	   *root;

	if ((root = new_request(err)) == NULL)
		return NULL;
	if ((key_id != NULL && !set_key_id(root, "KeyId", key_id, err)) ||
		!set_context(root, "EncryptionContext", context_json, err) ||
		!set_blob(root, "CiphertextBlob", blob, blob_len, err))
	{
		json_decref(root);
		return NULL;
	}
	return dump_request(root, err);
}

char *
pgck_kj_build_reencrypt(const char *source_key_id, const char *dest_key_id,
						const char *source_context_json, const char *dest_context_json,
						const uint8_t *blob, size_t blob_len, PgckKjError *err)
{
	json_t	   *root;

	if ((root = new_request(err)) == NULL)
		return NULL;
	if ((source_key_id != NULL && !set_key_id(root, "SourceKeyId", source_key_id, err)) ||
		!set_key_id(root, "DestinationKeyId", dest_key_id, err) ||
		!set_context(root, "SourceEncryptionContext", source_context_json, err) ||
		!set_context(root, "DestinationEncryptionContext", dest_context_json, err) ||
		!set_blob(root, "CiphertextBlob", blob, blob_len, err))
	{
		json_decref(root);
		return NULL;
	}
	return dump_request(root, err);
}

char *
pgck_kj_build_encrypt(const char *key_id, const char *context_json,
					  const uint8_t *plaintext, size_t len, PgckKjError *err)
{
	json_t	   *root;
	char	   *enc;
	size_t		n;
	int			rc;

	if (plaintext == NULL || len == 0 || len > 4096)
	{
		SET_ERR(err, PGCK_KJ_ERR_ARGUMENT, "plaintext is empty or too large");
		return NULL;
	}
	if ((root = new_request(err)) == NULL)
		return NULL;
	if (!set_key_id(root, "KeyId", key_id, err) ||
		!set_context(root, "EncryptionContext", context_json, err))
	{
		json_decref(root);
		return NULL;
	}
	enc = malloc(PGCK_BASE64_ENC_LEN(len) + 1);
	if (enc == NULL)
	{
		json_decref(root);
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return NULL;
	}
	n = pgck_base64_encode(plaintext, len, enc);
	/* jansson copies it into memory its (wiping) allocator frees */
	rc = json_object_set_new(root, "Plaintext", json_stringn(enc, n));
	secure_free(enc, PGCK_BASE64_ENC_LEN(len) + 1);
	if (rc != 0)
	{
		json_decref(root);
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return NULL;
	}
	return dump_request(root, err);
}

char *
pgck_kj_build_describe_key(const char *key_id, PgckKjError *err)
{
	json_t	   *root;

	if ((root = new_request(err)) == NULL)
		return NULL;
	if (!set_key_id(root, "KeyId", key_id, err))
	{
		json_decref(root);
		return NULL;
	}
	return dump_request(root, err);
}

/* ------------------------------------------------------------------
 * KMS success responses
 * ------------------------------------------------------------------ */

/* Optional KeyId member of a response: must be a string within bounds. */
static bool
check_response_key_id(json_t *root, const char *member, PgckKjError *err)
{
	const char *s;
	size_t		len;

	return get_string(root, member, false, PGCK_KJ_MAX_KEY_ID, &s, &len, err,
					  "response has no KeyId",
					  "KeyId in the response is not a string",
					  "KeyId in the response has an invalid size");
}

static bool
get_ciphertext(json_t *root, PgckKjBlob *wrapped, PgckKjError *err)
{
	const char *s;
	size_t		slen;

	if (!get_string(root, "CiphertextBlob", true, PGCK_BASE64_ENC_LEN(PGCK_KJ_MAX_CIPHERTEXT),
					&s, &slen, err,
					"response has no CiphertextBlob",
					"CiphertextBlob is not a string",
					"CiphertextBlob has an invalid size"))
		return false;
	return decode_blob(s, slen, PGCK_KJ_MAX_CIPHERTEXT, wrapped, err);
}

bool
pgck_kj_parse_generate_data_key(const char *body, size_t len, size_t key_len,
								uint8_t *dek_out, PgckKjBlob *wrapped, PgckKjError *err)
{
	json_t	   *root;

	wrapped->data = NULL;
	wrapped->len = 0;
	if (key_len == 0 || key_len > PGCK_KJ_MAX_PLAINTEXT)
	{
		SET_ERR(err, PGCK_KJ_ERR_ARGUMENT, "data key length must be 1 to 1024 bytes");
		return false;
	}
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	if (!check_response_key_id(root, "KeyId", err) ||
		!get_ciphertext(root, wrapped, err) ||
		!decode_plaintext(root, key_len, dek_out, err))
	{
		json_decref(root);
		pgck_kj_blob_free(wrapped);
		explicit_bzero(dek_out, key_len);
		return false;
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;
}

bool
pgck_kj_parse_decrypt(const char *body, size_t len, size_t key_len,
					  uint8_t *dek_out, PgckKjError *err)
{
	json_t	   *root;

	if (key_len == 0 || key_len > PGCK_KJ_MAX_PLAINTEXT)
	{
		SET_ERR(err, PGCK_KJ_ERR_ARGUMENT, "data key length must be 1 to 1024 bytes");
		return false;
	}
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	if (!check_response_key_id(root, "KeyId", err) ||
		!decode_plaintext(root, key_len, dek_out, err))
	{
		json_decref(root);
		explicit_bzero(dek_out, key_len);
		return false;
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;
}

bool
pgck_kj_parse_encrypt(const char *body, size_t len, PgckKjBlob *wrapped, PgckKjError *err)
{
	json_t	   *root;

	wrapped->data = NULL;
	wrapped->len = 0;
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	if (!check_response_key_id(root, "KeyId", err) ||
		!get_ciphertext(root, wrapped, err))
	{
		json_decref(root);
		pgck_kj_blob_free(wrapped);
		return false;
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;
}

bool
pgck_kj_parse_reencrypt(const char *body, size_t len, PgckKjBlob *wrapped, PgckKjError *err)
{
	json_t	   *root;

	wrapped->data = NULL;
	wrapped->len = 0;
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	if (!check_response_key_id(root, "KeyId", err) ||
		!check_response_key_id(root, "SourceKeyId", err) ||
		!get_ciphertext(root, wrapped, err))
	{
		json_decref(root);
		pgck_kj_blob_free(wrapped);
		return false;
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;
}

/* A key ARN: arn:<partition>:kms:<region>:<12-digit account>:key/<key id>. */
static bool
is_key_arn(const char *s, size_t len)
{
	static const char *const fields[] = {"arn", NULL, "kms", NULL, NULL};
	const char *p = s;
	const char *end = s + len;
	int			i;

	for (i = 0; i < 5; i++)
	{
		const char *colon = memchr(p, ':', end - p);
		size_t		n;
		size_t		j;

		if (colon == NULL || colon == p)
			return false;
		n = colon - p;
		if (fields[i] != NULL && (strlen(fields[i]) != n || memcmp(p, fields[i], n) != 0))
			return false;
		for (j = 0; j < n; j++)
		{
			char		c = p[j];

			if (i == 4 ? !(c >= '0' && c <= '9') :
				!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
				return false;
		}
		if (i == 4 && n != 12)
			return false;
		p = colon + 1;
	}
	if ((size_t) (end - p) <= 4 || memcmp(p, "key/", 4) != 0)
		return false;
	for (p += 4; p < end; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

bool
pgck_kj_parse_key_arn(const char *body, size_t len, const char *member, char *out,
					  PgckKjError *err)
{
	json_t	   *root;
	const char *s;
	size_t		slen;

	out[0] = '\0';
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	if (!get_string(root, member, false, PGCK_KJ_MAX_KEY_ID, &s, &slen, err,
					"response has no KeyId",
					"KeyId in the response is not a string",
					"KeyId in the response has an invalid size"))
	{
		json_decref(root);
		return false;
	}
	if (s != NULL)
	{
		if (!is_key_arn(s, slen))
		{
			json_decref(root);
			SET_ERR(err, PGCK_KJ_ERR_VALUE, "KeyId in the response is not a key ARN");
			return false;
		}
		memcpy(out, s, slen);
		out[slen] = '\0';
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;
}

/* Optional enum-like string member copied into a fixed buffer. */
static bool
get_enum(json_t *md, const char *name, char *dst, size_t dstsize, PgckKjError *err,
		 const char *type_msg, const char *size_msg)
{
	const char *s;
	size_t		len;

	dst[0] = '\0';
	if (!get_string(md, name, false, dstsize - 1, &s, &len, err, "", type_msg, size_msg))
		return false;
	if (s != NULL)
		copy_printable(dst, dstsize, s, len);
	return true;
}

bool
pgck_kj_parse_describe_key(const char *body, size_t len, PgckKjKeyMetadata *md,
						   PgckKjError *err)
{
	json_t	   *root;
	json_t	   *meta;
	json_t	   *enabled;
	const char *s;
	size_t		slen;
	bool		ok = false;

	memset(md, 0, sizeof(*md));
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	meta = json_object_get(root, "KeyMetadata");
	if (meta == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_MISSING, "response has no KeyMetadata");
		goto done;
	}
	if (!json_is_object(meta))
	{
		SET_ERR(err, PGCK_KJ_ERR_TYPE, "KeyMetadata is not an object");
		goto done;
	}
	if (!get_string(meta, "KeyId", true, PGCK_KJ_MAX_KEY_ID, &s, &slen, err,
					"KeyMetadata has no KeyId",
					"KeyMetadata.KeyId is not a string",
					"KeyMetadata.KeyId has an invalid size"))
		goto done;
	copy_printable(md->key_id, sizeof(md->key_id), s, slen);
	if (!get_string(meta, "Arn", false, PGCK_KJ_MAX_KEY_ID, &s, &slen, err,
					"", "KeyMetadata.Arn is not a string",
					"KeyMetadata.Arn has an invalid size"))
		goto done;
	if (s != NULL)
		copy_printable(md->arn, sizeof(md->arn), s, slen);

	enabled = json_object_get(meta, "Enabled");
	if (enabled == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_MISSING, "KeyMetadata has no Enabled");
		goto done;
	}
	if (!json_is_boolean(enabled))
	{
		SET_ERR(err, PGCK_KJ_ERR_TYPE, "KeyMetadata.Enabled is not a boolean");
		goto done;
	}
	md->enabled = json_is_true(enabled);

	if (!get_enum(meta, "KeyState", md->key_state, sizeof(md->key_state), err,
				  "KeyMetadata.KeyState is not a string",
				  "KeyMetadata.KeyState has an invalid size") ||
		!get_enum(meta, "KeyUsage", md->key_usage, sizeof(md->key_usage), err,
				  "KeyMetadata.KeyUsage is not a string",
				  "KeyMetadata.KeyUsage has an invalid size") ||
		!get_enum(meta, "KeySpec", md->key_spec, sizeof(md->key_spec), err,
				  "KeyMetadata.KeySpec is not a string",
				  "KeyMetadata.KeySpec has an invalid size"))
		goto done;
	if (md->key_spec[0] == '\0' &&
		!get_enum(meta, "CustomerMasterKeySpec", md->key_spec, sizeof(md->key_spec), err,
				  "KeyMetadata.CustomerMasterKeySpec is not a string",
				  "KeyMetadata.CustomerMasterKeySpec has an invalid size"))
		goto done;
	ok = true;
	SET_ERR(err, PGCK_KJ_OK, "ok");
done:
	json_decref(root);
	return ok;
}

void
pgck_kj_blob_free(PgckKjBlob *blob)
{
	if (blob == NULL)
		return;
	free(blob->data);
	blob->data = NULL;
	blob->len = 0;
}

/* ------------------------------------------------------------------
 * KMS error responses
 * ------------------------------------------------------------------ */

/* JSON 1.1 error type rule: cut at the first ':', keep after the first '#'. */
static void
normalize_error_type(char *dst, size_t dstsize, const char *src, size_t len)
{
	const char *colon = memchr(src, ':', len);
	const char *hash;

	if (colon != NULL)
		len = (size_t) (colon - src);
	hash = memchr(src, '#', len);
	if (hash != NULL)
	{
		len -= (size_t) (hash + 1 - src);
		src = hash + 1;
	}
	/* trim surrounding blanks (a header value may carry them) */
	while (len > 0 && (*src == ' ' || *src == '\t'))
	{
		src++;
		len--;
	}
	while (len > 0 && (src[len - 1] == ' ' || src[len - 1] == '\t' ||
					   src[len - 1] == '\r' || src[len - 1] == '\n'))
		len--;
	copy_printable(dst, dstsize, src, len);
}

void
pgck_kj_parse_error(const char *errortype_header, const char *body, size_t len,
					PgckKjAwsError *out)
{
	json_t	   *root = NULL;
	json_t	   *v;
	PgckKjError err;

	memset(out, 0, sizeof(*out));
	if (body != NULL && len > 0)
		root = load_object(body, len, &err);
	if (root == NULL)
		out->body_unparsed = true;

	if (errortype_header != NULL && errortype_header[0] != '\0')
		normalize_error_type(out->type, sizeof(out->type), errortype_header,
							 strnlen(errortype_header, 4 * PGCK_KJ_MAX_ERROR_TYPE));
	else if (root != NULL)
	{
		v = json_object_get(root, "code");
		if (!json_is_string(v))
			v = json_object_get(root, "__type");
		if (json_is_string(v))
			normalize_error_type(out->type, sizeof(out->type),
								 json_string_value(v), json_string_length(v));
	}
	if (root != NULL)
	{
		v = json_object_get(root, "message");
		if (!json_is_string(v))
			v = json_object_get(root, "Message");
		if (json_is_string(v))
			copy_printable(out->message, sizeof(out->message),
						   json_string_value(v), json_string_length(v));
		json_decref(root);
	}
}

/* ------------------------------------------------------------------
 * Credentials
 * ------------------------------------------------------------------ */

void
pgck_kj_credentials_free(PgckKjCredentials *creds)
{
	if (creds == NULL)
		return;
	if (creds->access_key_id != NULL)
		secure_free(creds->access_key_id, strlen(creds->access_key_id));
	if (creds->secret_access_key != NULL)
		secure_free(creds->secret_access_key, strlen(creds->secret_access_key));
	if (creds->session_token != NULL)
		secure_free(creds->session_token, strlen(creds->session_token));
	memset(creds, 0, sizeof(*creds));
}

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant) */
static long
days_from_civil(long y, long m, long d)
{
	long		era;
	long		yoe;
	long		doy;
	long		doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool
digits(const char *s, int n, long *out)
{
	long		v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

bool
pgck_kj_parse_iso8601(const char *s, time_t *out)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	long		y,
				mo,
				d,
				h,
				mi,
				sec;
	const char *p;

	if (s == NULL || strnlen(s, 20) < 20)
		return false;
	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
		!digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
		!digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
		s[16] != ':' || !digits(s + 17, 2, &sec))
		return false;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
		h > 23 || mi > 59 || sec > 60)
		return false;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	p = s + 19;
	if (*p == '.')
	{
		int			n = 0;

		p++;
		while (*p >= '0' && *p <= '9' && n < 9)
		{
			p++;
			n++;
		}
		if (n == 0)
			return false;
	}
	if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0')
		;
	else if (strcmp(p, "+00:00") == 0 || strcmp(p, "-00:00") == 0)
		;
	else
		return false;
	if (sizeof(time_t) < 8 && y >= 2038)
		return false;
	*out = (time_t) (days_from_civil(y, mo, d) * 86400L + h * 3600L + mi * 60L +
					 (sec > 59 ? 59 : sec));
	return true;
}

/* Copy a credential string member, checking charset and size. */
static bool
take_cred_string(json_t *root, const char *name, size_t maxlen, char **dst,
				 PgckKjError *err, const char *missing_msg, const char *bad_msg)
{
	json_t	   *v = json_object_get(root, name);
	size_t		len;

	if (v == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_MISSING, missing_msg);
		return false;
	}
	if (!json_is_string(v))
	{
		SET_ERR(err, PGCK_KJ_ERR_TYPE, bad_msg);
		return false;
	}
	len = json_string_length(v);
	if (len == 0 || len > maxlen)
	{
		SET_ERR(err, PGCK_KJ_ERR_SIZE, bad_msg);
		return false;
	}
	if (!is_token_text(json_string_value(v), len))
	{
		SET_ERR(err, PGCK_KJ_ERR_VALUE, bad_msg);
		return false;
	}
	*dst = dup_n(json_string_value(v), len);
	if (*dst == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_NOMEM, "out of memory");
		return false;
	}
	return true;
}

static bool
parse_json_credentials(const char *body, size_t len, bool imds,
					   PgckKjCredentials *out, PgckKjError *err)
{
	json_t	   *root;
	json_t	   *v;

	memset(out, 0, sizeof(*out));
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	if (imds && (v = json_object_get(root, "Code")) != NULL)
	{
		if (!json_is_string(v) || strcmp(json_string_value(v), "Success") != 0)
		{
			json_decref(root);
			SET_ERR(err, PGCK_KJ_ERR_VALUE, "instance metadata credentials Code is not Success");
			return false;
		}
	}
	if (!take_cred_string(root, "AccessKeyId", PGCK_KJ_MAX_CRED_FIELD, &out->access_key_id, err,
						  "credentials have no AccessKeyId",
						  "credentials AccessKeyId is invalid") ||
		!take_cred_string(root, "SecretAccessKey", PGCK_KJ_MAX_CRED_FIELD,
						  &out->secret_access_key, err,
						  "credentials have no SecretAccessKey",
						  "credentials SecretAccessKey is invalid") ||
		!take_cred_string(root, "Token", PGCK_KJ_MAX_SESSION_TOKEN, &out->session_token, err,
						  "credentials have no Token",
						  "credentials Token is invalid"))
		goto fail;
	v = json_object_get(root, "Expiration");
	if (v == NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_MISSING, "credentials have no Expiration");
		goto fail;
	}
	if (!json_is_string(v))
	{
		SET_ERR(err, PGCK_KJ_ERR_TYPE, "credentials Expiration is not a string");
		goto fail;
	}
	if (json_string_length(v) > 64 ||
		!pgck_kj_parse_iso8601(json_string_value(v), &out->expiration))
	{
		SET_ERR(err, PGCK_KJ_ERR_VALUE, "credentials Expiration is not an ISO 8601 time");
		goto fail;
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;

fail:
	json_decref(root);
	pgck_kj_credentials_free(out);
	return false;
}

bool
pgck_kj_parse_container_credentials(const char *body, size_t len,
									PgckKjCredentials *out, PgckKjError *err)
{
	return parse_json_credentials(body, len, false, out, err);
}

bool
pgck_kj_parse_imds_credentials(const char *body, size_t len,
							   PgckKjCredentials *out, PgckKjError *err)
{
	return parse_json_credentials(body, len, true, out, err);
}

bool
pgck_kj_parse_process_credentials(const char *body, size_t len,
								  PgckKjCredentials *out, PgckKjError *err)
{
	json_t	   *root;
	json_t	   *v;

	memset(out, 0, sizeof(*out));
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	v = json_object_get(root, "Version");
	if (v == NULL || !json_is_integer(v) || json_integer_value(v) != 1)
	{
		json_decref(root);
		SET_ERR(err, PGCK_KJ_ERR_VALUE, "credential_process output has no \"Version\": 1");
		return false;
	}
	if (!take_cred_string(root, "AccessKeyId", PGCK_KJ_MAX_CRED_FIELD, &out->access_key_id, err,
						  "credentials have no AccessKeyId",
						  "credentials AccessKeyId is invalid") ||
		!take_cred_string(root, "SecretAccessKey", PGCK_KJ_MAX_CRED_FIELD,
						  &out->secret_access_key, err,
						  "credentials have no SecretAccessKey",
						  "credentials SecretAccessKey is invalid"))
		goto fail;
	if (json_object_get(root, "SessionToken") != NULL &&
		!take_cred_string(root, "SessionToken", PGCK_KJ_MAX_SESSION_TOKEN, &out->session_token,
						  err, "credentials have no SessionToken",
						  "credentials SessionToken is invalid"))
		goto fail;
	v = json_object_get(root, "Expiration");
	if (v != NULL)
	{
		if (!json_is_string(v) || json_string_length(v) > 64 ||
			!pgck_kj_parse_iso8601(json_string_value(v), &out->expiration))
		{
			SET_ERR(err, PGCK_KJ_ERR_VALUE, "credentials Expiration is not an ISO 8601 time");
			goto fail;
		}
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;

fail:
	json_decref(root);
	pgck_kj_credentials_free(out);
	return false;
}

bool
pgck_kj_parse_sso_role_credentials(const char *body, size_t len,
								   PgckKjCredentials *out, PgckKjError *err)
{
	json_t	   *root;
	json_t	   *rc;
	json_t	   *v;

	memset(out, 0, sizeof(*out));
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	rc = json_object_get(root, "roleCredentials");
	if (rc == NULL || !json_is_object(rc))
	{
		json_decref(root);
		SET_ERR(err, PGCK_KJ_ERR_MISSING, "response has no roleCredentials object");
		return false;
	}
	if (!take_cred_string(rc, "accessKeyId", PGCK_KJ_MAX_CRED_FIELD, &out->access_key_id, err,
						  "credentials have no accessKeyId",
						  "credentials accessKeyId is invalid") ||
		!take_cred_string(rc, "secretAccessKey", PGCK_KJ_MAX_CRED_FIELD,
						  &out->secret_access_key, err,
						  "credentials have no secretAccessKey",
						  "credentials secretAccessKey is invalid") ||
		!take_cred_string(rc, "sessionToken", PGCK_KJ_MAX_SESSION_TOKEN, &out->session_token,
						  err, "credentials have no sessionToken",
						  "credentials sessionToken is invalid"))
		goto fail;
	v = json_object_get(rc, "expiration");
	/* milliseconds since the epoch, after 2000 and before 10000 */
	if (v == NULL || !json_is_integer(v) || json_integer_value(v) < 946684800000LL ||
		json_integer_value(v) > 253402300799000LL)
	{
		SET_ERR(err, PGCK_KJ_ERR_VALUE, "credentials expiration is not a time in milliseconds");
		goto fail;
	}
	out->expiration = (time_t) (json_integer_value(v) / 1000);
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;

fail:
	json_decref(root);
	pgck_kj_credentials_free(out);
	return false;
}

bool
pgck_kj_parse_sso_token(const char *body, size_t len, char **access_token,
						time_t *expires_at, PgckKjError *err)
{
	json_t	   *root;
	json_t	   *v;

	*access_token = NULL;
	*expires_at = 0;
	if ((root = load_object(body, len, err)) == NULL)
		return false;
	if (!take_cred_string(root, "accessToken", PGCK_KJ_MAX_SESSION_TOKEN, access_token, err,
						  "the SSO token cache has no accessToken",
						  "the SSO token cache's accessToken is invalid"))
	{
		json_decref(root);
		return false;
	}
	v = json_object_get(root, "expiresAt");
	if (v == NULL || !json_is_string(v) || json_string_length(v) > 64 ||
		!pgck_kj_parse_iso8601(json_string_value(v), expires_at))
	{
		json_decref(root);
		secure_free(*access_token, strlen(*access_token));
		*access_token = NULL;
		SET_ERR(err, PGCK_KJ_ERR_VALUE, "the SSO token cache's expiresAt is not an ISO 8601 time");
		return false;
	}
	json_decref(root);
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;
}

/* ------------------------------------------------------------------
 * Minimal strict XML extraction (STS)
 * ------------------------------------------------------------------ */

typedef struct PgckXmlSpan
{
	const char *start;
	const char *end;			/* exclusive */
} PgckXmlSpan;

/*
 * Find the element <name> (optionally with attributes) in span.  Sets
 * *content to what lies between the start and end tags.  Returns the
 * number of start tags of that name in the span (0, 1, or 2 meaning "more
 * than one"); *content is set only when exactly one.
 */
static int
xml_find(PgckXmlSpan span, const char *name, PgckXmlSpan *content)
{
	size_t		nlen = strlen(name);
	const char *p = span.start;
	const char *found = NULL;
	const char *found_end = NULL;
	int			count = 0;

	while (p < span.end)
	{
		const char *lt = memchr(p, '<', (size_t) (span.end - p));
		const char *after;

		if (lt == NULL)
			break;
		after = lt + 1 + nlen;
		if (after < span.end && memcmp(lt + 1, name, nlen) == 0 &&
			(*after == '>' || *after == ' ' || *after == '\t' ||
			 *after == '\r' || *after == '\n'))
		{
			const char *gt = memchr(after, '>', (size_t) (span.end - after));

			if (gt == NULL || gt[-1] == '/')
				return 2;		/* unterminated or self-closing: reject */
			if (++count > 1)
				return 2;
			found = gt + 1;
			p = found;
			/* the end tag */
			{
				const char *q = found;

				found_end = NULL;
				while (q < span.end)
				{
					const char *lt2 = memchr(q, '<', (size_t) (span.end - q));

					if (lt2 == NULL)
						break;
					if (lt2 + 3 + nlen <= span.end && lt2[1] == '/' &&
						memcmp(lt2 + 2, name, nlen) == 0 && lt2[2 + nlen] == '>')
					{
						found_end = lt2;
						break;
					}
					q = lt2 + 1;
				}
				if (found_end == NULL)
					return 2;
			}
			continue;
		}
		p = lt + 1;
	}
	if (count == 1)
	{
		content->start = found;
		content->end = found_end;
	}
	return count;
}

/*
 * Decode the text content of a leaf element (no '<' allowed; the five
 * predefined entities) into a malloc'd string.  Returns NULL on invalid
 * content or when the decoded length is outside 1..maxlen.
 */
static char *
xml_text(PgckXmlSpan span, size_t maxlen, bool *nomem)
{
	size_t		cap = (size_t) (span.end - span.start);
	char	   *out;
	size_t		o = 0;
	const char *p = span.start;

	*nomem = false;
	if (cap == 0 || cap > 4 * maxlen + 16)
		return NULL;
	out = malloc(cap + 1);
	if (out == NULL)
	{
		*nomem = true;
		return NULL;
	}
	while (p < span.end)
	{
		if (*p == '<')
			goto bad;
		if (*p == '&')
		{
			static const struct
			{
				const char *ent;
				char		ch;
			}			ents[] = {
				{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}
			};
			size_t		i;
			bool		matched = false;

			for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++)
			{
				size_t		el = strlen(ents[i].ent);

				if ((size_t) (span.end - p) >= el && memcmp(p, ents[i].ent, el) == 0)
				{
					out[o++] = ents[i].ch;
					p += el;
					matched = true;
					break;
				}
			}
			if (!matched)
				goto bad;
			continue;
		}
		out[o++] = *p++;
	}
	out[o] = '\0';
	/* surrounding whitespace is formatting, not content */
	{
		size_t		s = 0;

		while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\n' ||
						 out[o - 1] == '\r' || out[o - 1] == '\t'))
			out[--o] = '\0';
		while (s < o && (out[s] == ' ' || out[s] == '\n' || out[s] == '\r' || out[s] == '\t'))
			s++;
		if (s > 0)
		{
			memmove(out, out + s, o - s + 1);
			o -= s;
		}
	}
	if (o == 0 || o > maxlen)
		goto bad;
	return out;

bad:
	secure_free(out, cap + 1);
	return NULL;
}

/* Common checks of an XML body: size, no NUL, no DTD/comment/CDATA. */
static bool
xml_check_body(const char *body, size_t len, PgckKjError *err)
{
	if (body == NULL || len == 0)
	{
		SET_ERR(err, PGCK_KJ_ERR_SYNTAX, "response body is empty");
		return false;
	}
	if (len > PGCK_KJ_MAX_BODY)
	{
		SET_ERR(err, PGCK_KJ_ERR_SIZE, "response body is too large");
		return false;
	}
	if (memchr(body, '\0', len) != NULL || memmem(body, len, "<!", 2) != NULL)
	{
		SET_ERR(err, PGCK_KJ_ERR_SYNTAX, "response body is not plain XML");
		return false;
	}
	return true;
}

static bool
xml_take(PgckXmlSpan span, const char *name, size_t maxlen, char **dst,
		 PgckKjError *err, const char *bad_msg)
{
	PgckXmlSpan	c;
	bool		nomem;
	int			n = xml_find(span, name, &c);

	if (n != 1)
	{
		SET_ERR(err, n == 0 ? PGCK_KJ_ERR_MISSING : PGCK_KJ_ERR_SYNTAX, bad_msg);
		return false;
	}
	*dst = xml_text(c, maxlen, &nomem);
	if (*dst == NULL)
	{
		SET_ERR(err, nomem ? PGCK_KJ_ERR_NOMEM : PGCK_KJ_ERR_VALUE, bad_msg);
		return false;
	}
	return true;
}

static bool parse_sts_result(const char *body, size_t len, const char *response_name,
							 const char *result_name, PgckKjCredentials *out, PgckKjError *err);

bool
pgck_kj_parse_sts_credentials(const char *body, size_t len,
							  PgckKjCredentials *out, PgckKjError *err)
{
	return parse_sts_result(body, len, "AssumeRoleWithWebIdentityResponse",
							"AssumeRoleWithWebIdentityResult", out, err);
}

bool
pgck_kj_parse_sts_assume_role(const char *body, size_t len,
							  PgckKjCredentials *out, PgckKjError *err)
{
	return parse_sts_result(body, len, "AssumeRoleResponse", "AssumeRoleResult", out, err);
}

static bool
parse_sts_result(const char *body, size_t len, const char *response_name,
				 const char *result_name, PgckKjCredentials *out, PgckKjError *err)
{
	PgckXmlSpan	all;
	PgckXmlSpan	resp;
	PgckXmlSpan	result;
	PgckXmlSpan	creds;
	char	   *expiration = NULL;
	bool		ok;

	memset(out, 0, sizeof(*out));
	if (!xml_check_body(body, len, err))
		return false;
	all.start = body;
	all.end = body + len;
	if (xml_find(all, response_name, &resp) != 1 ||
		xml_find(resp, result_name, &result) != 1 ||
		xml_find(result, "Credentials", &creds) != 1)
	{
		SET_ERR(err, PGCK_KJ_ERR_SYNTAX,
				"response is not an STS result with Credentials");
		return false;
	}
	if (!xml_take(creds, "AccessKeyId", PGCK_KJ_MAX_CRED_FIELD, &out->access_key_id, err,
				  "STS AccessKeyId is missing or invalid") ||
		!xml_take(creds, "SecretAccessKey", PGCK_KJ_MAX_CRED_FIELD, &out->secret_access_key,
				  err, "STS SecretAccessKey is missing or invalid") ||
		!xml_take(creds, "SessionToken", PGCK_KJ_MAX_SESSION_TOKEN, &out->session_token, err,
				  "STS SessionToken is missing or invalid") ||
		!xml_take(creds, "Expiration", 64, &expiration, err,
				  "STS Expiration is missing or invalid"))
		goto fail;
	if (!is_token_text(out->access_key_id, strlen(out->access_key_id)) ||
		!is_token_text(out->secret_access_key, strlen(out->secret_access_key)) ||
		!is_token_text(out->session_token, strlen(out->session_token)))
	{
		SET_ERR(err, PGCK_KJ_ERR_VALUE, "STS credentials contain invalid characters");
		goto fail;
	}
	ok = pgck_kj_parse_iso8601(expiration, &out->expiration);
	free(expiration);
	expiration = NULL;
	if (!ok)
	{
		SET_ERR(err, PGCK_KJ_ERR_VALUE, "STS Expiration is not an ISO 8601 time");
		goto fail;
	}
	SET_ERR(err, PGCK_KJ_OK, "ok");
	return true;

fail:
	free(expiration);
	pgck_kj_credentials_free(out);
	return false;
}

void
pgck_kj_parse_sts_error(const char *body, size_t len, PgckKjAwsError *out)
{
	PgckXmlSpan	all;
	PgckXmlSpan	er;
	PgckXmlSpan	e;
	PgckXmlSpan	c;
	PgckKjError err;
	char	   *s;
	bool		nomem;

	memset(out, 0, sizeof(*out));
	if (!xml_check_body(body, len, &err))
	{
		out->body_unparsed = true;
		return;
	}
	all.start = body;
	all.end = body + len;
	if (xml_find(all, "ErrorResponse", &er) != 1 || xml_find(er, "Error", &e) != 1)
	{
		out->body_unparsed = true;
		return;
	}
	if (xml_find(e, "Code", &c) == 1 &&
		(s = xml_text(c, 4 * PGCK_KJ_MAX_ERROR_TYPE, &nomem)) != NULL)
	{
		normalize_error_type(out->type, sizeof(out->type), s, strlen(s));
		free(s);
	}
	if (xml_find(e, "Message", &c) == 1 &&
		(s = xml_text(c, 8 * PGCK_KJ_MAX_ERROR_MESSAGE, &nomem)) != NULL)
	{
		copy_printable(out->message, sizeof(out->message), s, strlen(s));
		free(s);
	}
}
