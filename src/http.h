/*-------------------------------------------------------------------------
 *
 * http.h
 *		HTTP(S) requests from a backend over libcurl: timeouts, cancel,
 *		connection reuse, TLS verification.  Knows nothing of AWS.
 *
 * One libcurl multi handle per backend, created on first use and cleaned
 * at backend exit, holds the connection pool, so a connection to a host is
 * kept alive and reused across calls.  Each transfer runs in short
 * curl_multi_poll slices (at most 100 ms) with an interrupt check between
 * them: statement_timeout and pg_cancel_backend end a hung request within
 * a slice; the transfer is aborted and its buffers wiped before the error
 * propagates.
 *
 * Policy kept for every request:
 *	- only http and https; no redirects followed; no user:password in URLs;
 *	- TLS 1.2+, peer and host name always verified (CA file from
 *	  pgcrypt_kms.ca_file, else the system store);
 *	- plain http only to loopback hosts (127.0.0.0/8, ::1, localhost), or,
 *	  when the request allows it, to the link-local credential endpoints
 *	  (EC2 IMDS, ECS/EKS container endpoints); anything else is 22023;
 *	- the response body is limited (PGCK_HTTP_MAX_RESPONSE by default) and
 *	  wiped before it is freed, as are all of libcurl's own buffers and the
 *	  TLS plaintext (responses may carry key material or credentials).
 *
 * Transport failures are returned in PgckHttpResponse.result, not raised:
 * the caller decides about retries.  Only a malformed or disallowed URL
 * (22023), libcurl setup failure (58000) and interrupts are raised.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_HTTP_H
#define PGCK_HTTP_H

#include "postgres.h"

#define PGCK_HTTP_MAX_RESPONSE	(1024 * 1024)

typedef enum PgckHttpMethod
{
	PGCK_HTTP_GET,
	PGCK_HTTP_PUT,
	PGCK_HTTP_POST
} PgckHttpMethod;

/* Which hosts may be reached over plain http. */
typedef enum PgckHttpPlainPolicy
{
	PGCK_HTTP_PLAIN_LOOPBACK,	/* 127.0.0.0/8, ::1, localhost */
	PGCK_HTTP_PLAIN_METADATA	/* also 169.254.169.254, 169.254.170.2,
								 * 169.254.170.23, fd00:ec2::254,
								 * fd00:ec2::23 */
} PgckHttpPlainPolicy;

typedef struct PgckHttpRequest
{
	PgckHttpMethod method;
	const char *url;
	const char *const *headers; /* "Name: value" lines, no CR/LF */
	int			nheaders;
	const char *body;			/* POST/PUT body, may be NULL */
	size_t		body_len;
	int			connect_timeout_ms;
	int			timeout_ms;		/* whole transfer, connect included */
	size_t		max_response;	/* 0 = PGCK_HTTP_MAX_RESPONSE */
	PgckHttpPlainPolicy plain_policy;
} PgckHttpRequest;

typedef enum PgckHttpResult
{
	PGCK_HTTP_DONE = 0,			/* a complete response (any status) */
	PGCK_HTTP_ERR_CONNECT,		/* name resolution or connect failed */
	PGCK_HTTP_ERR_TIMEOUT,		/* connect or total timeout */
	PGCK_HTTP_ERR_TLS,			/* handshake or certificate verification */
	PGCK_HTTP_ERR_NETWORK,		/* reset, send/receive error, partial reply */
	PGCK_HTTP_ERR_TOO_LARGE,	/* body over max_response */
	PGCK_HTTP_ERR_OTHER
} PgckHttpResult;

#define PGCK_HTTP_HEADER_MAX 128

typedef struct PgckHttpResponse
{
	PgckHttpResult result;
	long		status;			/* HTTP status when result is DONE */
	char	   *body;			/* malloc'd, NUL-terminated, or NULL */
	size_t		body_len;
	char		request_id[PGCK_HTTP_HEADER_MAX];	/* x-amzn-RequestId */
	char		error_type[PGCK_HTTP_HEADER_MAX];	/* X-Amzn-Errortype */
	char		error_text[256];	/* transport failure description, may name
									 * the host: for the server log only */
	char		error_public[128];	/* the same without host, port or URL: what
									 * the client may be told */
	double		elapsed_ms;
} PgckHttpResponse;

/* A URL taken apart; strings palloc'd in CurrentMemoryContext. */
typedef struct PgckHttpUrl
{
	char	   *scheme;			/* "http" or "https" */
	char	   *host;			/* IPv6 literals in brackets */
	char	   *host_header;	/* host[:port] as the Host header carries it */
	char	   *path;			/* "/" at least */
	bool		plain;			/* scheme is http */
} PgckHttpUrl;

/*
 * Check url against the policy above and take it apart; ereports 22023
 * naming what_for ("AWS KMS endpoint", ...) when it is malformed or not
 * allowed.
 */
extern void pgck_http_parse_url(const char *url, PgckHttpPlainPolicy policy,
								const char *what_for, PgckHttpUrl *out);

/*
 * Perform one request.  *resp is always initialized; release it with
 * pgck_http_response_free (also after a failure).  May ereport: see the
 * file header.  On an interrupt nothing is left allocated.
 */
extern void pgck_http_perform(const PgckHttpRequest *req, PgckHttpResponse *resp);

/* Wipe and free the body; leaves *resp reusable.  NULL-safe. */
extern void pgck_http_response_free(PgckHttpResponse *resp);

/*
 * "name: value" as one palloc'd string of its exact size, for a header that
 * carries a secret (a session token, an authorization token): psprintf
 * would first format into a 128-byte guess and pfree it unwiped when the
 * line is longer.  The caller wipes the result (strlen + 1 bytes) before
 * pfree.
 */
extern char *pgck_http_header_line(const char *name, const char *value);

/* True for failures a retry may cure: connect, timeout, network. */
extern bool pgck_http_result_is_transient(PgckHttpResult result);

/* Static English name of a result. */
extern const char *pgck_http_result_name(PgckHttpResult result);

/* Milliseconds of a monotonic clock. */
extern double pgck_http_now_ms(void);

#endif							/* PGCK_HTTP_H */
