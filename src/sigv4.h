/*-------------------------------------------------------------------------
 *
 * sigv4.h
 *		AWS Signature Version 4 (AWS4-HMAC-SHA256, Authorization header form)
 *		for non-S3 services.
 *
 * Pure C11 + OpenSSL 3 (no PostgreSQL dependency): used by kms_aws.c and the
 * unit tests.  Nothing here does I/O, reads the clock or keeps state, so
 * every function is safe to call from any thread and from fuzzers.
 *
 * Invariants a caller must keep:
 *	- The request lists every header to sign, exactly as it will be sent:
 *	  at least host and x-amz-date, plus x-amz-security-token when signing
 *	  with temporary credentials (KMS wants it signed).  Headers added to the
 *	  request after signing are not covered by the signature.
 *	- If an x-amz-date header is present it must equal params->amz_date
 *	  (checked: a mismatch fails, since AWS would reject the signature).
 *	- path is the path as it goes on the wire.  Following AWS's rule for
 *	  every service but S3, it is normalized (dot segments removed, empty
 *	  segments collapsed) and then URI-encoded once more, '%' included: a
 *	  wire path "/a%20b" is canonicalized as "/a%2520b".  Not for S3.
 *	- query is the wire query string; each name and value is percent-decoded
 *	  and re-encoded, so an already-encoded and a raw form canonicalize the
 *	  same.  '+' is a literal plus (%2B), not a space.
 *
 * The secret key and the derived signing keys never leave pgck_sigv4_sign()
 * and are wiped (OPENSSL_cleanse) before it returns.  The session token is
 * signed, so it passes through the module's buffers and is in the result's
 * canonical request: every block the module frees, on every path and in
 * pgck_sigv4_result_free, is wiped first, and no buffer is realloc'd.  The
 * signature is not a reusable secret beyond the request it signs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_SIGV4_H
#define PGCK_SIGV4_H

#include <stddef.h>
#include <time.h>

typedef struct PgckSigv4Header
{
	const char *name;			/* any case; RFC 7230 token characters */
	const char *value;			/* raw; trimmed and space-collapsed here */
} PgckSigv4Header;

typedef struct PgckSigv4Request
{
	const char *method;			/* "GET", "POST" */
	const char *path;			/* wire path, "/" when NULL or "" */
	const char *query;			/* wire query without '?', or NULL/"" */
	const PgckSigv4Header *headers;	/* all headers to sign, in order */
	size_t		nheaders;
	const unsigned char *payload;	/* may be NULL when payload_len is 0 */
	size_t		payload_len;
} PgckSigv4Request;

typedef struct PgckSigv4Params
{
	const char *access_key_id;
	const char *secret_access_key;
	const char *region;			/* "us-east-1" */
	const char *service;		/* "kms" */
	const char *amz_date;		/* "YYYYMMDDTHHMMSSZ"; its date part is the
								 * credential scope date */
} PgckSigv4Params;

typedef struct PgckSigv4Result
{
	char	   *canonical_request;
	char	   *string_to_sign;
	char	   *signed_headers;	/* "host;x-amz-date" */
	char		signature[65];	/* lowercase hex */
	char	   *authorization;	/* full Authorization header value */
} PgckSigv4Result;

/*
 * Sign req.  Returns 0 and fills *out (malloc'd strings, freed by the caller
 * with pgck_sigv4_result_free) on success; -1 on bad input, out of memory or
 * an OpenSSL failure, with *out zeroed (freeing it then is harmless).
 */
extern int	pgck_sigv4_sign(const PgckSigv4Request *req,
							const PgckSigv4Params *params,
							PgckSigv4Result *out);

/* Wipe and free the strings of a result and zero it; NULL and zeroed are fine. */
extern void pgck_sigv4_result_free(PgckSigv4Result *res);

/*
 * For the unit tests only: on_alloc is called with every block this module
 * allocates, on_free with every block it frees (after wiping it, before
 * freeing it), each with the block's size, so a test can check that nothing
 * is freed unwiped and nothing leaks.  NULL disables a hook (the default).
 * Process-wide and not thread-safe: set it before signing, never in the
 * server.
 */
extern void pgck_sigv4_set_alloc_hooks(void (*on_alloc) (void *p, size_t n),
									   void (*on_free) (void *p, size_t n));

/*
 * Lowercase hex SHA-256 of data[0..len) into out, NUL-terminated.  data may
 * be NULL when len is 0.  On an OpenSSL failure out is "" (never happens
 * with a working libcrypto; callers that must know check out[0]).
 */
extern void pgck_sha256_hex(const unsigned char *data, size_t len, char out[65]);

/*
 * Format t (UTC) as the X-Amz-Date "YYYYMMDDTHHMMSSZ" into out[17].  out is
 * "" when t is not representable with a four-digit year.
 */
extern void pgck_sigv4_amz_date(time_t t, char out[17]);

#endif							/* PGCK_SIGV4_H */
