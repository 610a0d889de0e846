/*-------------------------------------------------------------------------
 *
 * kms_kmip.c
 *		The KMIP provider: "kmip:<unique identifier>" or "kmip:name=<name>"
 *		names an AES symmetric key held by a KMIP server; data keys are
 *		wrapped and unwrapped by the server's Encrypt and Decrypt operations,
 *		so the master key never leaves the server (this provider issues no
 *		Get on it: only Encrypt, Decrypt, Get Attributes and Locate).
 *
 * Transport: KMIP 1.2 TTLV messages (kmip_ttlv.c) over mutually
 * authenticated TLS 1.2+ on a TCP connection (pgcrypt_kms.kmip_host,
 * kmip_port), OpenSSL directly.  The server's certificate is verified
 * against pgcrypt_kms.kmip_ca_file (else pgcrypt_kms.ca_file, else the
 * system store) and its host name (or IP address) against the setting;
 * the client presents kmip_client_cert and the private key of
 * kmip_client_key, a file that group or others can access is refused
 * (42501).  One connection per backend, kept open between calls and
 * reopened after any failure or settings change.  The socket is
 * non-blocking and every wait is WaitLatchOrSocket, serving interrupts, so
 * statement_timeout and pg_cancel_backend end a call at once; a call ends
 * at pgck_kms_call_deadline_ms().  An error or interrupt in the middle of
 * an exchange closes the connection (its TLS state is unknown).
 *
 * Wrapping: AES-256-CBC with PKCS#5 padding on the server (PyKMIP 0.10,
 * the reference server of the tests, reads requests as KMIP 1.2 and so
 * cannot take GCM's additional data or tag, which are KMIP 1.4 fields of
 * Encrypt and Decrypt).  CBC has no integrity, so the plaintext sent is the
 * data key followed by a check value,
 *	HMAC-SHA-256(key = data key, "pgcrypt_kms kmip v1" 0 uid 0 kms_context)
 * cut to 16 bytes, recomputed and compared after Decrypt: a changed IV,
 * ciphertext, key identifier or context yields another data key or check
 * (or bad padding), which is refused as one error whatever the cause, so
 * padding failures are not told apart.  The keyring's key check value then
 * verifies the data key once more.  The blob (see README "KMIP"):
 *
 *	 'P' 'K' 1 | mode 1 | uid_len(1) uid | iv_len(1) iv | ct_len(2, BE) ct
 *
 * Re-wrapping under another KMIP key (KMIP has no ReEncrypt) is Decrypt
 * then Encrypt in this backend: the plaintext data key passes through its
 * memory there, as with any move between providers.
 *
 * Errors: Permission Denied and Authentication Not Successful 42501 (not
 * retried; a Permission Denied on a key that Get Attributes says is not
 * Active becomes 55000), Item Not Found 42704, other server failures and
 * transport failures 58000 with the result reason and the server's message
 * in errdetail_internal.  Retried within the deadline and
 * pgcrypt_kms.kms_max_attempts: connection refused, reset or closed, a
 * timeout, and the General Failure result reason.  Plaintext keys in
 * request and response buffers are wiped before the buffers are freed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"				/* VARDATA and friends left postgres.h in 16 */
#endif

#include "aead.h"
#include "guc.h"
#include "http.h"
#include "kmip_ttlv.h"
#include "kms.h"
#include "kms_common.h"
#include "pgck_errcodes.h"

#define KMIP_MAJOR			1
#define KMIP_MINOR			2
#define MAX_UID_LEN			255
#define MAX_NAME_LEN		255
#define CHECK_LEN			16
#define CBC_IV_LEN			16
#define MAX_RESPONSE		(64 * 1024)
#define MAX_KEY_FILE		(64 * 1024)

#define BLOB_MAGIC0			'P'
#define BLOB_MAGIC1			'K'
#define BLOB_VERSION		1
#define BLOB_MODE_CBC_CHECK	1

static const char check_label[] = "pgcrypt_kms kmip v1";

/* The backend's connection. */
typedef struct KmipConn
{
	int			sock;
	SSL_CTX    *ctx;
	SSL		   *ssl;
	char	   *settings;		/* the settings it was made with */
} KmipConn;

static KmipConn conn = {.sock = -1};

/* name= references resolved by Locate */
typedef struct NameEntry
{
	struct NameEntry *next;
	char	   *name;
	char	   *uid;
} NameEntry;

static NameEntry *name_cache = NULL;

/* A transport failure, without ereport (interrupts aside). */
typedef struct TransportError
{
	bool		failed;
	bool		transient;
	char		what[256];
} TransportError;

static void
transport_fail(TransportError *te, bool transient, const char *fmt,...) pg_attribute_printf(3, 4);

static void
transport_fail(TransportError *te, bool transient, const char *fmt,...)
{
	va_list		ap;

	te->failed = true;
	te->transient = transient;
	va_start(ap, fmt);
	vsnprintf(te->what, sizeof(te->what), fmt, ap);
	va_end(ap);
}

/* The first queued OpenSSL error, as text; clears the queue. */
static const char *
ssl_reason(void)
{
	static char buf[160];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "no further detail";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* ------------------------------------------------------------------
 * settings and the connection
 * ------------------------------------------------------------------ */

static char *
settings_signature(void)
{
	return psprintf("%s\n%d\n%s\n%s\n%s\n%s", pgck_kmip_host ? pgck_kmip_host : "",
					pgck_kmip_port,
					pgck_kmip_client_cert ? pgck_kmip_client_cert : "",
					pgck_kmip_client_key ? pgck_kmip_client_key : "",
					pgck_kmip_ca_file ? pgck_kmip_ca_file : "",
					pgck_ca_file ? pgck_ca_file : "");
}

static void
conn_close(void)
{
	if (conn.ssl != NULL)
		SSL_free(conn.ssl);
	if (conn.ctx != NULL)
		SSL_CTX_free(conn.ctx);
	if (conn.sock >= 0)
		close(conn.sock);
	if (conn.settings != NULL)
		pfree(conn.settings);
	conn.ssl = NULL;
	conn.ctx = NULL;
	conn.sock = -1;
	conn.settings = NULL;
}

static void
require_setting(const char *value, const char *name)
{
	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("pgcrypt_kms.%s is not set", name),
				 errhint("kmip: keys need pgcrypt_kms.kmip_host, kmip_client_cert and kmip_client_key.")));
}

/*
 * The TLS context: TLS 1.2+, server verification, the client certificate
 * and key.  ereports on configuration errors (nothing is leaked: the
 * context is freed first).
 */
static SSL_CTX *
make_ctx(void)
{
	SSL_CTX    *ctx;
	char	   *pem;
	BIO		   *bio;
	EVP_PKEY   *pkey;
	const char *ca = (pgck_kmip_ca_file && pgck_kmip_ca_file[0]) ? pgck_kmip_ca_file :
		(pgck_ca_file && pgck_ca_file[0]) ? pgck_ca_file : NULL;
	const char *fail = NULL;

	/* the key file first: its permission check raises before anything is made */
	pem = pgck_kms_read_secret_file(pgck_kmip_client_key, MAX_KEY_FILE, PGCK_SECRET_PRIVATE,
									"KMIP client key file");
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		fail = "could not create a TLS context";
	else if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
		fail = "could not require TLS 1.2";
	else if (ca != NULL ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
			 : SSL_CTX_set_default_verify_paths(ctx) != 1)
		fail = "could not load the CA certificates";
	else if (SSL_CTX_use_certificate_chain_file(ctx, pgck_kmip_client_cert) != 1)
		fail = "could not load the client certificate";
	if (fail == NULL)
	{
		bio = BIO_new_mem_buf(pem, -1);
		pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *) "") : NULL;
		BIO_free(bio);
		if (pkey == NULL)
			fail = "could not read the client private key";
		else
		{
			if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1)
				fail = "the client private key does not match the client certificate";
			EVP_PKEY_free(pkey);
		}
	}
	pgck_kms_wipe_pfree(pem);
	if (fail != NULL)
	{
		const char *reason = ssl_reason();

		if (ctx != NULL)
			SSL_CTX_free(ctx);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("%s for KMIP", fail),
				 errdetail_internal("OpenSSL: %s", reason)));
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* a Decrypt response carries the key: do not leave it in the record buffer */
	SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
	return ctx;
}

/*
 * Wait until the socket is ready (WL_SOCKET_READABLE / WRITEABLE) or the
 * deadline passes (false).  Serves interrupts.
 */
static bool
wait_socket(int events, double deadline_ms)
{
	for (;;)
	{
		double		left = deadline_ms - pgck_http_now_ms();
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
			return false;
		rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
							   conn.sock, (long) ceil(left), PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (rc & events)
			return true;
	}
}

/* Wait as an SSL call that returned r asks; false on a real failure. */
static bool
ssl_wait(int r, double deadline_ms, TransportError *te, const char *during)
{
	int			err = SSL_get_error(conn.ssl, r);

	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
	{
		if (!wait_socket(err == SSL_ERROR_WANT_READ ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
						 deadline_ms))
		{
			transport_fail(te, true, "timed out %s", during);
			return false;
		}
		return true;
	}
	/* a peer that closed or reset the connection: worth a new one */
	if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) ||
		(err == SSL_ERROR_SSL &&
		 ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING))
	{
		ERR_clear_error();
		transport_fail(te, true, "the server closed the connection %s", during);
	}
	else
		transport_fail(te, false, "TLS failure %s: %s", during, ssl_reason());
	return false;
}

static bool
host_is_ip(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/* Open the connection (TCP, then the TLS handshake); false with te set. */
static bool
conn_open(double deadline_ms, TransportError *te)
{
	struct addrinfo hints = {0};
	struct addrinfo *res = NULL;
	char		port[16];
	int			rc;
	double		connect_deadline;

	require_setting(pgck_kmip_host, "kmip_host");
	require_setting(pgck_kmip_client_cert, "kmip_client_cert");
	require_setting(pgck_kmip_client_key, "kmip_client_key");
	conn_close();
	conn.ctx = make_ctx();
	conn.settings = MemoryContextStrdup(TopMemoryContext, settings_signature());

	snprintf(port, sizeof(port), "%d", pgck_kmip_port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(pgck_kmip_host, port, &hints, &res);
	if (rc != 0 || res == NULL)
	{
		transport_fail(te, rc == EAI_AGAIN, "could not resolve the KMIP host: %s", gai_strerror(rc));
		return false;
	}
	conn.sock = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (conn.sock < 0)
	{
		freeaddrinfo(res);
		transport_fail(te, false, "could not create a socket: %m");
		return false;
	}
	rc = connect(conn.sock, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc != 0 && errno != EINPROGRESS)
	{
		transport_fail(te, true, "could not connect to the KMIP server: %m");
		return false;
	}
	if (rc != 0)
	{
		int			soerr = 0;
		socklen_t	len = sizeof(soerr);

		connect_deadline = Min(deadline_ms, pgck_http_now_ms() + pgck_kms_connect_timeout);
		if (!wait_socket(WL_SOCKET_WRITEABLE, connect_deadline))
		{
			transport_fail(te, true, "timed out connecting to the KMIP server");
			return false;
		}
		if (getsockopt(conn.sock, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0)
		{
			errno = soerr;
			transport_fail(te, true, "could not connect to the KMIP server: %m");
			return false;
		}
	}
	{
		int			one = 1;

		(void) setsockopt(conn.sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}

	ERR_clear_error();
	conn.ssl = SSL_new(conn.ctx);
	if (conn.ssl == NULL || SSL_set_fd(conn.ssl, conn.sock) != 1)
	{
		transport_fail(te, false, "could not set up TLS: %s", ssl_reason());
		return false;
	}
	if (host_is_ip(pgck_kmip_host))
	{
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn.ssl), pgck_kmip_host) != 1)
		{
			transport_fail(te, false, "could not set up TLS: %s", ssl_reason());
			return false;
		}
	}
	else if (SSL_set_tlsext_host_name(conn.ssl, pgck_kmip_host) != 1 ||
			 SSL_set1_host(conn.ssl, pgck_kmip_host) != 1)
	{
		transport_fail(te, false, "could not set up TLS: %s", ssl_reason());
		return false;
	}
	for (;;)
	{
		int			r = SSL_connect(conn.ssl);

		if (r == 1)
			break;
		if (SSL_get_error(conn.ssl, r) == SSL_ERROR_SSL)
		{
			long		vr = SSL_get_verify_result(conn.ssl);

			if (vr != X509_V_OK)
			{
				ERR_clear_error();
				transport_fail(te, false, "the KMIP server's certificate was not accepted: %s",
							   X509_verify_cert_error_string(vr));
				return false;
			}
		}
		if (!ssl_wait(r, deadline_ms, te, "during the TLS handshake"))
			return false;
	}
	return true;
}

/* Write all of buf; false with te set. */
static bool
ssl_write_all(const uint8 *buf, size_t len, double deadline_ms, TransportError *te)
{
	size_t		off = 0;

	while (off < len)
	{
		int			r;

		ERR_clear_error();
		r = SSL_write(conn.ssl, buf + off, (int) Min(len - off, (size_t) INT_MAX));
		if (r > 0)
			off += r;
		else if (!ssl_wait(r, deadline_ms, te, "sending a request"))
			return false;
	}
	return true;
}

/* Read exactly len bytes; false with te set.  *got counts bytes read. */
static bool
ssl_read_exact(uint8 *buf, size_t len, double deadline_ms, TransportError *te, size_t *got)
{
	size_t		off = 0;

	while (off < len)
	{
		int			r;

		ERR_clear_error();
		r = SSL_read(conn.ssl, buf + off, (int) Min(len - off, (size_t) INT_MAX));
		if (r > 0)
		{
			off += r;
			*got += r;
		}
		else if (!ssl_wait(r, deadline_ms, te, "waiting for the response"))
			return false;
	}
	return true;
}

/*
 * One request/response exchange on the connection (opened if needed).
 * Returns the response (palloc'd; the caller wipes it) or NULL with te set.
 * A connection that was reused and failed before any response byte (the
 * server closed an idle connection) is reopened once at once.  On any
 * failure, and on an error or interrupt thrown through here, the
 * connection is closed.
 */
static uint8 *
exchange(const PgckTtlvBuf *req, double deadline_ms, size_t *resp_len, TransportError *te)
{
	uint8	   *volatile resp = NULL;
	volatile size_t resp_size = 0;
	volatile bool ok = false;

	PG_TRY();
	{
		char	   *sig = settings_signature();
		bool		reused = conn.ssl != NULL && conn.settings != NULL && strcmp(sig, conn.settings) == 0;
		int			round;

		pfree(sig);
		for (round = 0; round < 2 && !ok; round++)
		{
			uint8		hdr[PGCK_TTLV_HDR_LEN];
			size_t		got = 0;
			size_t		total;

			memset(te, 0, sizeof(*te));
			if (!reused && !conn_open(deadline_ms, te))
				break;
			if (!ssl_write_all(req->data, req->len, deadline_ms, te) ||
				!ssl_read_exact(hdr, sizeof(hdr), deadline_ms, te, &got))
			{
				if (reused && got == 0 && te->transient)
				{
					reused = false;
					continue;
				}
				break;
			}
			total = pgck_ttlv_message_len(hdr, MAX_RESPONSE);
			if (total == 0)
			{
				transport_fail(te, false, "the KMIP server sent a malformed or oversized message");
				break;
			}
			resp = palloc(total);
			resp_size = total;
			memcpy(resp, hdr, sizeof(hdr));
			if (!ssl_read_exact(resp + sizeof(hdr), total - sizeof(hdr), deadline_ms, te, &got))
			{
				explicit_bzero(resp, total);
				pfree(resp);
				resp = NULL;
				break;
			}
			*resp_len = total;
			ok = true;
		}
	}
	PG_CATCH();
	{
		/* an interrupt while reading: part of a Decrypt response may be in */
		if (resp != NULL)
			explicit_bzero((void *) resp, resp_size);
		conn_close();
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!ok)
		conn_close();
	return ok ? resp : NULL;
}

/* ------------------------------------------------------------------
 * calls
 * ------------------------------------------------------------------ */

static const char *
reason_name(uint32 reason)
{
	switch (reason)
	{
		case 0x01:
			return "Item Not Found";
		case 0x02:
			return "Response Too Large";
		case 0x03:
			return "Authentication Not Successful";
		case 0x04:
			return "Invalid Message";
		case 0x05:
			return "Operation Not Supported";
		case 0x06:
			return "Missing Data";
		case 0x07:
			return "Invalid Field";
		case 0x08:
			return "Feature Not Supported";
		case 0x0A:
			return "Cryptographic Failure";
		case 0x0B:
			return "Illegal Operation";
		case 0x0C:
			return "Permission Denied";
		case 0x0D:
			return "Object Archived";
		case 0x100:
			return "General Failure";
		default:
			return "another reason";
	}
}

static const char *
op_name(uint32 op)
{
	switch (op)
	{
		case PGCK_KMIP_OP_LOCATE:
			return "Locate";
		case PGCK_KMIP_OP_GET_ATTRIBUTES:
			return "Get Attributes";
		case PGCK_KMIP_OP_ENCRYPT:
			return "Encrypt";
		case PGCK_KMIP_OP_DECRYPT:
			return "Decrypt";
		default:
			return "an operation";
	}
}

/*
 * What a failed batch item means for retries: General Failure is retried,
 * except after Decrypt, where it is what PyKMIP answers to bad padding
 * (a changed blob): never retried, and reported like a bad check value.
 */
static bool
reason_is_transient(uint32 kop, uint32 reason)
{
	return reason == PGCK_KMIP_REASON_GENERAL_FAILURE && kop != PGCK_KMIP_OP_DECRYPT;
}

/* The result reason of the last failed call, 0 for a transport failure. */
static uint32 last_failure_reason = 0;

/* The result of a call: the response buffer and its parse. */
typedef struct KmipResult
{
	uint8	   *buf;
	size_t		len;
	PgckKmipResponse resp;
} KmipResult;

static void
result_free(KmipResult *r)
{
	if (r->buf != NULL)
	{
		explicit_bzero(r->buf, r->len);
		pfree(r->buf);
	}
	r->buf = NULL;
}

/*
 * Send the request (one batch item of operation kop) with retries; on
 * return *out holds a successful response (the caller frees it with
 * result_free).  Failures ereport, a failed batch item's result reason
 * first recorded in last_failure_reason.
 */
static void
kmip_call(PgckKmsOp op, uint32 kop, const char *uid, const PgckTtlvBuf *req, KmipResult *out)
{
	double		deadline = pgck_kms_call_deadline_ms();
	double		start = pgck_http_now_ms();
	TransportError te;
	int			attempt;

	if (!pgck_ttlv_buf_ok(req))
		elog(ERROR, "could not encode a KMIP request");
	memset(out, 0, sizeof(*out));
	last_failure_reason = 0;
	for (attempt = 1;; attempt++)
	{
		const char *perr = NULL;
		bool		transient;

		out->buf = exchange(req, deadline, &out->len, &te);
		if (out->buf != NULL)
		{
			if (!pgck_kmip_parse_response(out->buf, out->len, &out->resp, &perr))
			{
				result_free(out);
				conn_close();
				pgck_stats_kms_call(op, pgck_http_now_ms() - start, false);
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
						 errmsg("malformed response from the KMIP server"),
						 errdetail_internal("KMIP %s: %s.", op_name(kop), perr)));
			}
			if (out->resp.status == PGCK_KMIP_STATUS_SUCCESS)
			{
				if (out->resp.operation != kop)
				{
					result_free(out);
					conn_close();
					pgck_stats_kms_call(op, pgck_http_now_ms() - start, false);
					ereport(ERROR,
							(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
							 errmsg("malformed response from the KMIP server"),
							 errdetail_internal("KMIP %s: the response is for another operation.",
												op_name(kop))));
				}
				pgck_stats_kms_call(op, pgck_http_now_ms() - start, true);
				return;
			}
			transient = reason_is_transient(kop, out->resp.reason);
		}
		else
			transient = te.transient;

		if (transient && attempt < pgck_kms_max_attempts &&
			pgck_kms_wait_before_retry(op, attempt, false, deadline))
		{
			result_free(out);
			continue;
		}
		pgck_stats_kms_call(op, pgck_http_now_ms() - start, false);
		break;
	}

	if (out->buf == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("KMIP %s failed: %s", op_name(kop), te.what),
				 errdetail_internal("The configured KMIP server, after %d attempt(s).", attempt),
				 /* superuser-only settings: the server log only */
				 errdetail_log("pgcrypt_kms.kmip_host \"%s\", port %d, after %d attempt(s).",
							   pgck_kmip_host, pgck_kmip_port, attempt)));
	{
		uint32		reason = out->resp.reason;
		char		message[sizeof(out->resp.message)];
		int			code;

		strlcpy(message, out->resp.message, sizeof(message));
		result_free(out);
		last_failure_reason = reason;
		switch (reason)
		{
			case PGCK_KMIP_REASON_PERMISSION_DENIED:
			case PGCK_KMIP_REASON_AUTH_FAILED:
				code = PGCK_ERRCODE_PRIVILEGE;
				break;
			case PGCK_KMIP_REASON_ITEM_NOT_FOUND:
				code = PGCK_ERRCODE_UNKNOWN_KEY;
				break;
			default:
				code = PGCK_ERRCODE_KMS_FAILURE;
				break;
		}
		ereport(ERROR,
				(errcode(code),
				 errmsg("KMIP %s of key \"%s\" failed: %s", op_name(kop),
						uid ? uid : "", reason_name(reason)),
				 errdetail_internal("KMIP result reason %s (0x%x): %s", reason_name(reason),
									reason, message)));
	}
}

/* kmip_call, then free (wipe) the request whatever happens. */
static void
kmip_call_free(PgckKmsOp op, uint32 kop, const char *uid, PgckTtlvBuf *req, KmipResult *out)
{
	PG_TRY();
	{
		kmip_call(op, kop, uid, req, out);
	}
	PG_CATCH();
	{
		pgck_ttlv_buf_free(req);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgck_ttlv_buf_free(req);
}

/* ------------------------------------------------------------------
 * key references
 * ------------------------------------------------------------------ */

static void
check_text(const char *s, size_t maxlen, const char *what, const char *ref)
{
	size_t		len = strlen(s);
	size_t		i;

	if (len == 0 || len > maxlen)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid KMIP key reference \"kmip:%s\"", ref),
				 errdetail("A %s has 1 to %zu bytes.", what, maxlen)));
	for (i = 0; i < len; i++)
		if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("invalid KMIP key reference \"kmip:%s\"", ref),
					 errdetail("A %s has no control characters.", what)));
}

/* Locate a key by name: exactly one symmetric key must match. */
static char *
locate_by_name(const char *name)
{
	PgckTtlvBuf b;
	KmipResult r;
	PgckTtlvItem it;
	size_t		pos = 0;
	int			found = 0;
	char	   *uid = NULL;

	pgck_ttlv_buf_init(&b);
	pgck_kmip_request_begin(&b, KMIP_MAJOR, KMIP_MINOR, PGCK_KMIP_OP_LOCATE);
	pgck_ttlv_begin(&b, PGCK_KMIP_TAG_ATTRIBUTE);
	pgck_ttlv_text(&b, PGCK_KMIP_TAG_ATTRIBUTE_NAME, "Object Type", 11);
	pgck_ttlv_enum(&b, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_KMIP_OBJ_SYMMETRIC_KEY);
	pgck_ttlv_end(&b);
	pgck_ttlv_begin(&b, PGCK_KMIP_TAG_ATTRIBUTE);
	pgck_ttlv_text(&b, PGCK_KMIP_TAG_ATTRIBUTE_NAME, "Name", 4);
	pgck_ttlv_begin(&b, PGCK_KMIP_TAG_ATTRIBUTE_VALUE);
	pgck_ttlv_text(&b, PGCK_KMIP_TAG_NAME_VALUE, name, strlen(name));
	pgck_ttlv_enum(&b, PGCK_KMIP_TAG_NAME_TYPE, PGCK_KMIP_NAME_TEXT);
	pgck_ttlv_end(&b);
	pgck_ttlv_end(&b);
	pgck_kmip_request_end(&b);
	kmip_call_free(PGCK_OP_DESCRIBE_KEY, PGCK_KMIP_OP_LOCATE, name, &b, &r);
	while (pgck_ttlv_next(&r.resp.payload, &pos, &it))
	{
		if (it.tag == PGCK_KMIP_TAG_UNIQUE_IDENTIFIER && it.type == PGCK_TTLV_TEXT)
		{
			found++;
			if (uid == NULL)
				uid = pnstrdup((const char *) it.value, it.len);
		}
	}
	result_free(&r);
	if (found == 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
				 errmsg("no KMIP symmetric key is named \"%s\"", name)));
	if (found > 1)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("%d KMIP symmetric keys are named \"%s\"", found, name),
				 errhint("Refer to the key by its unique identifier, \"kmip:<unique identifier>\".")));
	check_text(uid, MAX_UID_LEN, "unique identifier", uid);
	return uid;
}

/* The unique identifier a reference names (name= resolved and cached). */
static const char *
resolve_ref(const char *ref)
{
	NameEntry  *e;
	char	   *uid;

	if (strncmp(ref, "name=", 5) != 0)
	{
		check_text(ref, MAX_UID_LEN, "unique identifier", ref);
		return ref;
	}
	check_text(ref + 5, MAX_NAME_LEN, "key name", ref);
	for (e = name_cache; e != NULL; e = e->next)
		if (strcmp(e->name, ref + 5) == 0)
			return e->uid;
	uid = locate_by_name(ref + 5);
	e = MemoryContextAlloc(TopMemoryContext, sizeof(NameEntry));
	e->name = MemoryContextStrdup(TopMemoryContext, ref + 5);
	e->uid = MemoryContextStrdup(TopMemoryContext, uid);
	e->next = name_cache;
	name_cache = e;
	pfree(uid);
	return e->uid;
}

/* ------------------------------------------------------------------
 * attributes and key state
 * ------------------------------------------------------------------ */

typedef struct KeyAttrs
{
	int32		object_type;	/* -1 unknown */
	int32		state;
	int32		usage_mask;
	int32		algorithm;
} KeyAttrs;

static void
get_attributes(const char *uid, KeyAttrs *a)
{
	static const char *const names[] = {"Object Type", "State", "Cryptographic Usage Mask",
	"Cryptographic Algorithm"};
	PgckTtlvBuf b;
	KmipResult r;
	PgckTtlvItem it;
	size_t		pos = 0;
	int			i;

	a->object_type = a->state = a->usage_mask = a->algorithm = -1;
	pgck_ttlv_buf_init(&b);
	pgck_kmip_request_begin(&b, KMIP_MAJOR, KMIP_MINOR, PGCK_KMIP_OP_GET_ATTRIBUTES);
	pgck_ttlv_text(&b, PGCK_KMIP_TAG_UNIQUE_IDENTIFIER, uid, strlen(uid));
	for (i = 0; i < lengthof(names); i++)
		pgck_ttlv_text(&b, PGCK_KMIP_TAG_ATTRIBUTE_NAME, names[i], strlen(names[i]));
	pgck_kmip_request_end(&b);
	kmip_call_free(PGCK_OP_DESCRIBE_KEY, PGCK_KMIP_OP_GET_ATTRIBUTES, uid, &b, &r);
	while (pgck_ttlv_next(&r.resp.payload, &pos, &it))
	{
		PgckTtlvItem name,
					value;

		if (it.tag != PGCK_KMIP_TAG_ATTRIBUTE || it.type != PGCK_TTLV_STRUCTURE)
			continue;
		if (pgck_ttlv_find(&it, PGCK_KMIP_TAG_ATTRIBUTE_NAME, PGCK_TTLV_TEXT, &name) != 1)
			continue;
#define NAME_IS(s) (name.len == strlen(s) && memcmp(name.value, s, name.len) == 0)
		if (NAME_IS("Object Type") &&
			pgck_ttlv_find(&it, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_TTLV_ENUM, &value) == 1)
			a->object_type = pgck_ttlv_get_int(&value);
		else if (NAME_IS("State") &&
				 pgck_ttlv_find(&it, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_TTLV_ENUM, &value) == 1)
			a->state = pgck_ttlv_get_int(&value);
		else if (NAME_IS("Cryptographic Usage Mask") &&
				 pgck_ttlv_find(&it, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_TTLV_INTEGER, &value) == 1)
			a->usage_mask = pgck_ttlv_get_int(&value);
		else if (NAME_IS("Cryptographic Algorithm") &&
				 pgck_ttlv_find(&it, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_TTLV_ENUM, &value) == 1)
			a->algorithm = pgck_ttlv_get_int(&value);
#undef NAME_IS
	}
	result_free(&r);
}

/* ereport when the key cannot wrap and unwrap data keys. */
static void
check_attrs(const char *uid, const KeyAttrs *a)
{
	if (a->object_type != PGCK_KMIP_OBJ_SYMMETRIC_KEY ||
		(a->algorithm != -1 && a->algorithm != PGCK_KMIP_ALG_AES))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("KMIP object \"%s\" is not an AES symmetric key", uid)));
	if (a->state != PGCK_KMIP_STATE_ACTIVE)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("KMIP key \"%s\" is not active", uid),
				 errdetail("Its KMIP state is %d; only an Active key (2) encrypts and decrypts.",
						   a->state)));
	if (a->usage_mask == -1 ||
		(a->usage_mask & (PGCK_KMIP_USAGE_ENCRYPT | PGCK_KMIP_USAGE_DECRYPT)) !=
		(PGCK_KMIP_USAGE_ENCRYPT | PGCK_KMIP_USAGE_DECRYPT))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("KMIP key \"%s\" may not be used to encrypt and decrypt", uid),
				 errdetail("Its Cryptographic Usage Mask lacks Encrypt or Decrypt.")));
}

/*
 * kmip_call for Encrypt/Decrypt; a Permission Denied there is looked into:
 * a key that exists but is not Active (or lacks the usage) is 55000, as
 * check_key would say; otherwise the original 42501 stands.
 */
static void
crypt_call(PgckKmsOp op, uint32 kop, const char *uid, const PgckTtlvBuf *req, KmipResult *r)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		kmip_call(op, kop, uid, req, r);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		KeyAttrs	a;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != PGCK_ERRCODE_PRIVILEGE)
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		get_attributes(uid, &a);	/* 42501 here too: that stands */
		if (a.object_type == PGCK_KMIP_OBJ_SYMMETRIC_KEY)
			check_attrs(uid, &a);
		ReThrowError(edata);
	}
	PG_END_TRY();
}

/* ------------------------------------------------------------------
 * wrapping
 * ------------------------------------------------------------------ */

static void
crypto_params(PgckTtlvBuf *b)
{
	pgck_ttlv_begin(b, PGCK_KMIP_TAG_CRYPTO_PARAMS);
	pgck_ttlv_enum(b, PGCK_KMIP_TAG_BLOCK_CIPHER_MODE, PGCK_KMIP_MODE_CBC);
	pgck_ttlv_enum(b, PGCK_KMIP_TAG_PADDING_METHOD, PGCK_KMIP_PAD_PKCS5);
	pgck_ttlv_enum(b, PGCK_KMIP_TAG_CRYPTO_ALGORITHM, PGCK_KMIP_ALG_AES);
	pgck_ttlv_end(b);
}

/*
 * check = HMAC-SHA-256(dek, label 0 uid 0 context)[0..16); false if OpenSSL
 * failed.  Never raises after it has touched the key (the callers hold
 * copies of it to wipe first: check_failed reports).
 */
static bool
compute_check(const uint8 *dek, size_t key_len, const char *uid, const char *kms_context,
			  uint8 *check)
{
	const char *ctx = kms_context ? kms_context : "{}";
	size_t		llen = sizeof(check_label);	/* with its NUL */
	size_t		ulen = strlen(uid) + 1;
	size_t		clen = strlen(ctx);
	uint8	   *msg = palloc(llen + ulen + clen);
	uint8		mac[32];
	PgckHmac   *h;
	bool		ok;

	memcpy(msg, check_label, llen);
	memcpy(msg + llen, uid, ulen);
	memcpy(msg + llen + ulen, ctx, clen);
	h = pgck_hmac_new(dek, key_len);
	ok = h != NULL && pgck_hmac_sha256(h, msg, llen + ulen + clen, mac);
	if (h != NULL)
		pgck_hmac_free(h);
	pfree(msg);
	if (ok)
		memcpy(check, mac, CHECK_LEN);
	pgck_wipe(mac, sizeof(mac));
	return ok;
}

static void
check_failed(void)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("could not compute the check value of a KMIP-wrapped key")));
}

/* Encrypt dek under uid; the blob as a palloc'd bytea. */
static bytea *
kmip_wrap(PgckKmsOp op, const char *uid, const char *kms_context, const uint8 *dek,
		  size_t key_len)
{
	uint8		plain[PGCK_DEK_LEN + CHECK_LEN];
	uint8		iv[CBC_IV_LEN];
	PgckTtlvBuf b;
	KmipResult r;
	PgckTtlvItem ct,
				riv;
	bytea	   *out;
	uint8	   *p;
	size_t		ulen = strlen(uid);

	if (key_len != PGCK_DEK_LEN)
		elog(ERROR, "unexpected data key length %zu", key_len);
	memcpy(plain, dek, key_len);
	if (!compute_check(dek, key_len, uid, kms_context, plain + key_len))
	{
		pgck_wipe(plain, sizeof(plain));
		check_failed();
	}
	if (!pgck_random_bytes(iv, sizeof(iv)))
	{
		pgck_wipe(plain, sizeof(plain));
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not generate an IV")));
	}
	pgck_ttlv_buf_init(&b);
	pgck_kmip_request_begin(&b, KMIP_MAJOR, KMIP_MINOR, PGCK_KMIP_OP_ENCRYPT);
	pgck_ttlv_text(&b, PGCK_KMIP_TAG_UNIQUE_IDENTIFIER, uid, ulen);
	crypto_params(&b);
	pgck_ttlv_bytes(&b, PGCK_KMIP_TAG_DATA, plain, sizeof(plain));
	pgck_ttlv_bytes(&b, PGCK_KMIP_TAG_IV_COUNTER_NONCE, iv, sizeof(iv));
	pgck_kmip_request_end(&b);
	pgck_wipe(plain, sizeof(plain));
	PG_TRY();
	{
		crypt_call(op, PGCK_KMIP_OP_ENCRYPT, uid, &b, &r);
	}
	PG_FINALLY();
	{
		pgck_ttlv_buf_free(&b);	/* wipes the plaintext key in the request */
	}
	PG_END_TRY();

	if (pgck_ttlv_find(&r.resp.payload, PGCK_KMIP_TAG_DATA, PGCK_TTLV_BYTES, &ct) != 1 ||
		ct.len != sizeof(plain) + 16 ||
		(pgck_ttlv_find(&r.resp.payload, PGCK_KMIP_TAG_IV_COUNTER_NONCE, PGCK_TTLV_BYTES, &riv) == 1 &&
		 (riv.len != sizeof(iv) || memcmp(riv.value, iv, sizeof(iv)) != 0)))
	{
		result_free(&r);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
				 errmsg("malformed response from the KMIP server"),
				 errdetail_internal("KMIP Encrypt: no ciphertext of the expected length, or another IV.")));
	}
	out = palloc(VARHDRSZ + 5 + ulen + 1 + sizeof(iv) + 2 + ct.len);
	SET_VARSIZE(out, VARHDRSZ + 5 + ulen + 1 + sizeof(iv) + 2 + ct.len);
	p = (uint8 *) VARDATA(out);
	*p++ = BLOB_MAGIC0;
	*p++ = BLOB_MAGIC1;
	*p++ = BLOB_VERSION;
	*p++ = BLOB_MODE_CBC_CHECK;
	*p++ = (uint8) ulen;
	memcpy(p, uid, ulen);
	p += ulen;
	*p++ = sizeof(iv);
	memcpy(p, iv, sizeof(iv));
	p += sizeof(iv);
	*p++ = (uint8) (ct.len >> 8);
	*p++ = (uint8) ct.len;
	memcpy(p, ct.value, ct.len);
	result_free(&r);
	return out;
}

/* A parsed blob: pointers into it. */
typedef struct KmipBlob
{
	char	   *uid;			/* palloc'd */
	const uint8 *iv;
	size_t		iv_len;
	const uint8 *ct;
	size_t		ct_len;
} KmipBlob;

static void
bad_blob(void)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("wrapped data key is not a kmip: provider key"),
			 errdetail_internal("KMS error type: InvalidCiphertextException")));
}

static void
parse_blob(const bytea *wrapped, KmipBlob *blob)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(wrapped);
	size_t		len = VARSIZE_ANY_EXHDR(wrapped);
	size_t		ulen;
	size_t		off;

	if (len < 6 || p[0] != BLOB_MAGIC0 || p[1] != BLOB_MAGIC1 || p[2] != BLOB_VERSION ||
		p[3] != BLOB_MODE_CBC_CHECK)
		bad_blob();
	ulen = p[4];
	off = 5;
	if (ulen == 0 || len - off < ulen + 1)
		bad_blob();
	blob->uid = pnstrdup((const char *) p + off, ulen);
	if (strlen(blob->uid) != ulen)
		bad_blob();
	off += ulen;
	blob->iv_len = p[off++];
	if (blob->iv_len != CBC_IV_LEN || len - off < blob->iv_len + 2)
		bad_blob();
	blob->iv = p + off;
	off += blob->iv_len;
	blob->ct_len = ((size_t) p[off] << 8) | p[off + 1];
	off += 2;
	if (blob->ct_len != len - off || blob->ct_len != PGCK_DEK_LEN + CHECK_LEN + 16)
		bad_blob();
	blob->ct = p + off;
}

static void
unwrap_failed(const char *uid)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("could not unwrap a data key with KMIP key \"%s\"", uid),
			 errdetail("The wrapped key, its key identifier or its context was changed, or it was not wrapped by this key."),
			 errdetail_internal("KMS error type: InvalidCiphertextException")));
}

/* Decrypt a blob into dek_out and verify its check value. */
static void
kmip_unwrap(PgckKmsOp op, const char *key_ref, const char *kms_context, const bytea *wrapped,
			uint8 *dek_out, size_t key_len, char **key_arn_out)
{
	KmipBlob	blob;
	PgckTtlvBuf b;
	KmipResult r;
	PgckTtlvItem pt;
	uint8		check[CHECK_LEN];
	bool		ok;
	bool		computed;
	MemoryContext cxt = CurrentMemoryContext;

	if (key_len != PGCK_DEK_LEN)
		elog(ERROR, "unexpected data key length %zu", key_len);
	parse_blob(wrapped, &blob);
	/* a reference by identifier pins the key; a name may have moved */
	if (strncmp(key_ref, "name=", 5) != 0)
	{
		check_text(key_ref, MAX_UID_LEN, "unique identifier", key_ref);
		if (strcmp(key_ref, blob.uid) != 0)
			unwrap_failed(key_ref);
	}
	pgck_ttlv_buf_init(&b);
	pgck_kmip_request_begin(&b, KMIP_MAJOR, KMIP_MINOR, PGCK_KMIP_OP_DECRYPT);
	pgck_ttlv_text(&b, PGCK_KMIP_TAG_UNIQUE_IDENTIFIER, blob.uid, strlen(blob.uid));
	crypto_params(&b);
	pgck_ttlv_bytes(&b, PGCK_KMIP_TAG_DATA, blob.ct, blob.ct_len);
	pgck_ttlv_bytes(&b, PGCK_KMIP_TAG_IV_COUNTER_NONCE, blob.iv, blob.iv_len);
	pgck_kmip_request_end(&b);
	PG_TRY();
	{
		crypt_call(op, PGCK_KMIP_OP_DECRYPT, blob.uid, &b, &r);
	}
	PG_CATCH();
	{
		pgck_ttlv_buf_free(&b);
		/* bad padding: told apart from a bad check value by nobody */
		if (last_failure_reason == PGCK_KMIP_REASON_GENERAL_FAILURE ||
			last_failure_reason == PGCK_KMIP_REASON_CRYPTO_FAILURE)
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			unwrap_failed(blob.uid);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgck_ttlv_buf_free(&b);

	computed = true;
	ok = pgck_ttlv_find(&r.resp.payload, PGCK_KMIP_TAG_DATA, PGCK_TTLV_BYTES, &pt) == 1 &&
		pt.len == key_len + CHECK_LEN;
	if (ok)
	{
		memcpy(dek_out, pt.value, key_len);
		computed = compute_check(dek_out, key_len, blob.uid, kms_context, check);
		ok = computed && pgck_equal_ct(check, pt.value + key_len, CHECK_LEN);
	}
	result_free(&r);			/* wipes the plaintext in the response */
	pgck_wipe(check, sizeof(check));
	if (!computed)
	{
		pgck_wipe(dek_out, key_len);
		check_failed();
	}
	if (!ok)
	{
		pgck_wipe(dek_out, key_len);
		unwrap_failed(blob.uid);
	}
	*key_arn_out = blob.uid;
}

/* ------------------------------------------------------------------
 * the provider
 * ------------------------------------------------------------------ */

static bytea *
kmip_generate_data_key(const char *key_ref, const char *kms_context,
					   uint8 *dek_out, size_t key_len, char **key_arn_out)
{
	const char *uid = resolve_ref(key_ref);
	bytea	   *out;

	if (!pgck_random_bytes(dek_out, key_len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not generate a data key")));
	out = kmip_wrap(PGCK_OP_GENERATE_DATA_KEY, uid, kms_context, dek_out, key_len);
	*key_arn_out = pstrdup(uid);
	return out;
}

static void
kmip_decrypt_data_key(const char *key_ref, const char *kms_context,
					  const bytea *wrapped, uint8 *dek_out, size_t key_len,
					  char **key_arn_out)
{
	kmip_unwrap(PGCK_OP_DECRYPT, key_ref, kms_context, wrapped, dek_out, key_len, key_arn_out);
}

static bytea *
kmip_wrap_data_key(const char *key_ref, const char *kms_context,
				   const uint8 *dek, size_t key_len, char **key_arn_out)
{
	const char *uid = resolve_ref(key_ref);
	bytea	   *out = kmip_wrap(PGCK_OP_ENCRYPT, uid, kms_context, dek, key_len);

	*key_arn_out = pstrdup(uid);
	return out;
}

static bytea *
rewrap(const char *old_key_ref, const char *new_key_ref, const char *kms_context,
	   const bytea *wrapped, uint8 *dek, char **key_arn_out)
{
	char	   *old_uid;
	const char *uid;
	bytea	   *out;

	kmip_unwrap(PGCK_OP_REENCRYPT, old_key_ref, kms_context, wrapped, dek, PGCK_DEK_LEN,
				&old_uid);
	uid = resolve_ref(new_key_ref);
	out = kmip_wrap(PGCK_OP_REENCRYPT, uid, kms_context, dek, PGCK_DEK_LEN);
	*key_arn_out = pstrdup(uid);
	return out;
}

/* KMIP has no re-encrypt: Decrypt and Encrypt, the key passing through here. */
static bytea *
kmip_reencrypt_data_key(const char *old_key_ref, const char *new_key_ref,
						const char *kms_context, const bytea *wrapped, char **key_arn_out)
{
	uint8		dek[PGCK_DEK_LEN];
	bytea	   *volatile out = NULL;

	PG_TRY();
	{
		out = rewrap(old_key_ref, new_key_ref, kms_context, wrapped, dek, key_arn_out);
	}
	PG_CATCH();
	{
		pgck_wipe(dek, sizeof(dek));
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgck_wipe(dek, sizeof(dek));
	return out;
}

static void
kmip_check_key(const char *key_ref)
{
	const char *uid = resolve_ref(key_ref);
	KeyAttrs	a;

	get_attributes(uid, &a);
	check_attrs(uid, &a);
}

const PgckKmsProvider pgck_kms_kmip_provider = {
	.scheme = "kmip",
	.generate_data_key = kmip_generate_data_key,
	.decrypt_data_key = kmip_decrypt_data_key,
	.reencrypt_data_key = kmip_reencrypt_data_key,
	.wrap_data_key = kmip_wrap_data_key,
	.check_key = kmip_check_key,
};

/* Close the connection when the backend exits (a clean TLS shutdown is not needed). */
static void
kmip_exit(int code, Datum arg)
{
	conn_close();
}

void
pgck_kms_kmip_init(void)
{
	on_proc_exit(kmip_exit, (Datum) 0);
}
