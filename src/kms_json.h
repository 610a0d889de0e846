/*-------------------------------------------------------------------------
 *
 * kms_json.h
 *		Shaping of AWS KMS JSON 1.1 request bodies and strict parsing of KMS,
 *		STS and credential-endpoint responses.
 *
 * Pure C (no PostgreSQL headers): jansson and base64.h only, so every
 * parser here is unit-tested and fuzzed on its own.  The bodies parsed are
 * untrusted network input: every member is type-checked, every length is
 * bounded, blobs are strictly base64-decoded, and a returned plaintext key
 * must have exactly the length that was asked for.
 *
 * Rules a caller keeps:
 *	- Memory is malloc'd; strings and blobs returned in result structs are
 *	  released with the matching *_free function, which wipes secret bytes
 *	  (plaintext keys, secret access keys, session tokens) before freeing.
 *	- Errors are a PgckKjStatus plus a short static English string naming
 *	  the problem (never a value taken from the body, so never a secret).
 *	- Plaintext keys are written only into the caller's buffer; temporary
 *	  copies are wiped.  pgck_kj_install_wiping_allocator() makes jansson
 *	  wipe its own buffers (lexer, strings) on free; the parsers call it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KMS_JSON_H
#define PGCK_KMS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Limits (bytes).  KMS model limits where the model has one. */
#define PGCK_KJ_MAX_BODY			(1024 * 1024)	/* any response body */
#define PGCK_KJ_MAX_KEY_ID			2048	/* KeyIdType, ArnType */
#define PGCK_KJ_MAX_CIPHERTEXT		6144	/* CiphertextType */
#define PGCK_KJ_MAX_PLAINTEXT		1024	/* NumberOfBytesType */
#define PGCK_KJ_MAX_CONTEXT_TEXT	(64 * 1024)	/* EncryptionContext as JSON */
#define PGCK_KJ_MAX_ERROR_TYPE		128
#define PGCK_KJ_MAX_ERROR_MESSAGE	512
#define PGCK_KJ_MAX_ENUM			64	/* KeyState, KeyUsage, KeySpec */
#define PGCK_KJ_MAX_CRED_FIELD		256	/* access key id, secret key */
#define PGCK_KJ_MAX_SESSION_TOKEN	8192

typedef enum PgckKjStatus
{
	PGCK_KJ_OK = 0,
	PGCK_KJ_ERR_NOMEM,			/* out of memory */
	PGCK_KJ_ERR_ARGUMENT,		/* bad input to a builder */
	PGCK_KJ_ERR_CONTEXT,		/* encryption context not an object of strings */
	PGCK_KJ_ERR_SYNTAX,			/* body empty, not JSON/XML, or not an object */
	PGCK_KJ_ERR_MISSING,		/* required member absent */
	PGCK_KJ_ERR_TYPE,			/* member of the wrong JSON type */
	PGCK_KJ_ERR_SIZE,			/* member or body over its limit, or empty */
	PGCK_KJ_ERR_BASE64,			/* blob not canonical base64 */
	PGCK_KJ_ERR_KEY_LENGTH,		/* plaintext key of another length than asked */
	PGCK_KJ_ERR_VALUE			/* member has a value that is not acceptable */
} PgckKjStatus;

typedef struct PgckKjError
{
	PgckKjStatus status;
	const char *detail;			/* static string, never from the input */
} PgckKjError;

/* ------------------------------------------------------------------
 * Request bodies.  Each returns a malloc'd NUL-terminated JSON text (free
 * with free(); it holds no secret) or NULL with *err set.  key ids are
 * passed as given; context_json is a JSON object text of string values,
 * or NULL / "" / "{}" for none (then EncryptionContext is omitted).
 * ------------------------------------------------------------------ */

/* GenerateDataKey: KeySpec AES_256 when key_len is 32, else NumberOfBytes. */
extern char *pgck_kj_build_generate_data_key(const char *key_id, const char *context_json,
											 size_t key_len, PgckKjError *err);

/*
 * Decrypt: CiphertextBlob, KeyId, EncryptionContext.  key_id NULL omits
 * KeyId: KMS then takes the key from the (symmetric) blob's metadata.
 */
extern char *pgck_kj_build_decrypt(const char *key_id, const char *context_json,
								   const uint8_t *blob, size_t blob_len, PgckKjError *err);

/*
 * ReEncrypt: CiphertextBlob, SourceKeyId, DestinationKeyId and contexts.
 * source_key_id NULL omits SourceKeyId (as key_id NULL on Decrypt).
 */
extern char *pgck_kj_build_reencrypt(const char *source_key_id, const char *dest_key_id,
									 const char *source_context_json,
									 const char *dest_context_json,
									 const uint8_t *blob, size_t blob_len, PgckKjError *err);

/*
 * Encrypt: KeyId, Plaintext (a data key being moved from another provider),
 * EncryptionContext.  The returned text holds the plaintext key: the caller
 * wipes it (explicit_bzero of strlen) before free().
 */
extern char *pgck_kj_build_encrypt(const char *key_id, const char *context_json,
								   const uint8_t *plaintext, size_t len, PgckKjError *err);

/* DescribeKey: KeyId. */
extern char *pgck_kj_build_describe_key(const char *key_id, PgckKjError *err);

/*
 * Validate an encryption context text without building anything: a JSON
 * object (at most PGCK_KJ_MAX_CONTEXT_TEXT bytes) whose values are all
 * strings.  NULL and "" are accepted as "no context".
 */
extern bool pgck_kj_check_context(const char *context_json, PgckKjError *err);

/* ------------------------------------------------------------------
 * KMS responses (status 200).
 * ------------------------------------------------------------------ */

typedef struct PgckKjBlob
{
	uint8_t    *data;			/* malloc'd */
	size_t		len;
} PgckKjBlob;

/*
 * GenerateDataKey: Plaintext (exactly key_len bytes) into dek_out,
 * CiphertextBlob into *wrapped (caller frees with pgck_kj_blob_free).
 * On failure dek_out is zeroed and *wrapped is empty.
 */
extern bool pgck_kj_parse_generate_data_key(const char *body, size_t len, size_t key_len,
											uint8_t *dek_out, PgckKjBlob *wrapped,
											PgckKjError *err);

/* Decrypt: Plaintext (exactly key_len bytes) into dek_out. */
extern bool pgck_kj_parse_decrypt(const char *body, size_t len, size_t key_len,
								  uint8_t *dek_out, PgckKjError *err);

/* Encrypt: CiphertextBlob into *wrapped. */
extern bool pgck_kj_parse_encrypt(const char *body, size_t len, PgckKjBlob *wrapped,
								  PgckKjError *err);

/* ReEncrypt: CiphertextBlob into *wrapped. */
extern bool pgck_kj_parse_reencrypt(const char *body, size_t len, PgckKjBlob *wrapped,
									PgckKjError *err);

/*
 * The key ARN a successful GenerateDataKey, Decrypt or ReEncrypt response
 * reports in member ("KeyId"; ReEncrypt's source key is "SourceKeyId"),
 * copied into out (PGCK_KJ_MAX_KEY_ID + 1 bytes); "" when the member is
 * absent.  Fails when it is present but not a key ARN
 * (arn:<partition>:kms:<region>:<12-digit account>:key/<key id>).  Parses
 * the body afresh: call it after the operation's parser accepted it.
 */
extern bool pgck_kj_parse_key_arn(const char *body, size_t len, const char *member,
								  char *out, PgckKjError *err);

typedef struct PgckKjKeyMetadata
{
	char		key_id[PGCK_KJ_MAX_KEY_ID + 1];
	char		arn[PGCK_KJ_MAX_KEY_ID + 1];	/* "" when absent */
	bool		enabled;
	char		key_state[PGCK_KJ_MAX_ENUM + 1];	/* "" when absent */
	char		key_usage[PGCK_KJ_MAX_ENUM + 1];	/* "" when absent */
	char		key_spec[PGCK_KJ_MAX_ENUM + 1]; /* KeySpec, else
												 * CustomerMasterKeySpec */
} PgckKjKeyMetadata;

/* DescribeKey: KeyMetadata (KeyId and Enabled required). */
extern bool pgck_kj_parse_describe_key(const char *body, size_t len, PgckKjKeyMetadata *md,
									   PgckKjError *err);

extern void pgck_kj_blob_free(PgckKjBlob *blob);

/* ------------------------------------------------------------------
 * Error responses (any status other than 200), JSON 1.1 rules: the type
 * from the X-Amzn-Errortype header (errortype_header, may be NULL or ""),
 * else body "code", else body "__type"; cut at the first ':', keep what
 * follows the first '#'.  Message from "message", else "Message".  Never
 * fails: a body that is not JSON (an HTML page, empty) leaves type and/or
 * message empty and sets body_unparsed.  Both strings are limited to
 * printable ASCII (others become '?') and truncated.
 * ------------------------------------------------------------------ */
typedef struct PgckKjAwsError
{
	char		type[PGCK_KJ_MAX_ERROR_TYPE + 1];
	char		message[PGCK_KJ_MAX_ERROR_MESSAGE + 1];
	bool		body_unparsed;
} PgckKjAwsError;

extern void pgck_kj_parse_error(const char *errortype_header, const char *body, size_t len,
								PgckKjAwsError *out);

/* ------------------------------------------------------------------
 * Credentials.
 * ------------------------------------------------------------------ */
typedef struct PgckKjCredentials
{
	char	   *access_key_id;	/* malloc'd */
	char	   *secret_access_key;	/* malloc'd, secret */
	char	   *session_token;	/* malloc'd, secret; NULL when none */
	time_t		expiration;		/* 0 when none */
} PgckKjCredentials;

/* Wipes and frees every member; leaves *creds zeroed.  NULL-safe. */
extern void pgck_kj_credentials_free(PgckKjCredentials *creds);

/*
 * ECS / container endpoint JSON: AccessKeyId, SecretAccessKey, Token,
 * Expiration (ISO 8601), all strings.  Token and Expiration are required
 * (container credentials are always temporary).
 */
extern bool pgck_kj_parse_container_credentials(const char *body, size_t len,
												PgckKjCredentials *out, PgckKjError *err);

/*
 * EC2 IMDS security-credentials JSON: as the container form, plus "Code"
 * which must be "Success" when present.
 */
extern bool pgck_kj_parse_imds_credentials(const char *body, size_t len,
										   PgckKjCredentials *out, PgckKjError *err);

/*
 * STS AssumeRoleWithWebIdentity XML response:
 * .../AssumeRoleWithWebIdentityResult/Credentials/{AccessKeyId,
 * SecretAccessKey, SessionToken, Expiration}.  A small strict extractor:
 * no DTDs, comments or CDATA; each element exactly once; the five
 * predefined entities decoded, any other '&' rejected.
 */
extern bool pgck_kj_parse_sts_credentials(const char *body, size_t len,
										  PgckKjCredentials *out, PgckKjError *err);

/* STS AssumeRole XML response: .../AssumeRoleResult/Credentials/{...}, as above. */
extern bool pgck_kj_parse_sts_assume_role(const char *body, size_t len,
										  PgckKjCredentials *out, PgckKjError *err);

/*
 * credential_process output (JSON): "Version": 1, AccessKeyId,
 * SecretAccessKey, optional SessionToken and Expiration (ISO 8601); no
 * Expiration means credentials that do not expire.
 */
extern bool pgck_kj_parse_process_credentials(const char *body, size_t len,
											  PgckKjCredentials *out, PgckKjError *err);

/*
 * SSO portal GetRoleCredentials: roleCredentials/{accessKeyId,
 * secretAccessKey, sessionToken, expiration (milliseconds since 1970)}.
 */
extern bool pgck_kj_parse_sso_role_credentials(const char *body, size_t len,
											   PgckKjCredentials *out, PgckKjError *err);

/*
 * An SSO token cache file (~/.aws/sso/cache/<sha1>.json): accessToken
 * (malloc'd into *access_token, secret: the caller wipes it) and expiresAt.
 */
extern bool pgck_kj_parse_sso_token(const char *body, size_t len, char **access_token,
									time_t *expires_at, PgckKjError *err);

/*
 * STS XML ErrorResponse/Error/{Code,Message}.  Never fails; same output
 * rules as pgck_kj_parse_error.
 */
extern void pgck_kj_parse_sts_error(const char *body, size_t len, PgckKjAwsError *out);

/*
 * ISO 8601 UTC timestamp as the credential endpoints send it:
 * "YYYY-MM-DDTHH:MM:SSZ", optional fractional seconds, "Z" or "+00:00".
 */
extern bool pgck_kj_parse_iso8601(const char *s, time_t *out);

/* Human-readable name of a status (static). */
extern const char *pgck_kj_status_name(PgckKjStatus status);

/*
 * Make jansson wipe every block it frees (lexer buffers and strings may
 * hold plaintext keys or credentials).  Idempotent; process-global.
 */
extern void pgck_kj_install_wiping_allocator(void);

#endif							/* PGCK_KMS_JSON_H */
