/*-------------------------------------------------------------------------
 *
 * http.c
 *		HTTP(S) requests from a backend over libcurl; see http.h.
 *
 * State: one multi handle per backend (the connection pool, so connections
 * are kept alive and reused), created on first use and cleaned up by an
 * on_proc_exit callback.  Each transfer gets a fresh easy handle, so that
 * libcurl's receive buffer, which held the last response (key material,
 * credentials), is freed -- and wiped, see below -- after every transfer
 * instead of living on in a handle kept for the backend's lifetime.  The
 * transfer in flight lives in the static 'xfer' so that an interrupt can
 * tear it down from PG_CATCH.
 *
 * libcurl is initialized with allocation functions that wipe every block
 * before freeing it, and TLS connections set SSL_OP_CLEANSE_PLAINTEXT so
 * OpenSSL does not keep decrypted records around.
 *
 * Callbacks (write, header, SSL context) run inside libcurl: they never
 * ereport, palloc or CHECK_FOR_INTERRUPTS; they record conditions in
 * 'xfer', and pgck_http_perform reports after the transfer has ended.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "miscadmin.h"
#include "storage/ipc.h"

#include "guc.h"
#include "http.h"
#include "pgck_errcodes.h"

/* poll slice between interrupt checks */
#define POLL_SLICE_MS	100

typedef struct PgckHttpTransfer
{
	CURL	   *easy;
	struct curl_slist *headers;
	bool		in_multi;
	/* response body: malloc'd, grown by copy-and-wipe */
	char	   *buf;
	size_t		len;
	size_t		cap;
	size_t		max;
	bool		too_large;
	bool		nomem;
	char		request_id[PGCK_HTTP_HEADER_MAX];
	char		error_type[PGCK_HTTP_HEADER_MAX];
	char		errbuf[CURL_ERROR_SIZE];
} PgckHttpTransfer;

static PgckHttpTransfer xfer;
static CURLM *multi = NULL;
static bool curl_initialized = false;
static bool exit_callback_registered = false;

/* ------------------------------------------------------------------
 * libcurl allocation functions that wipe on free
 * ------------------------------------------------------------------ */

static void *
wipe_malloc(size_t n)
{
	return malloc(n);
}

static void
wipe_free(void *p)
{
	if (p != NULL)
	{
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

static void *
wipe_realloc(void *p, size_t n)
{
	size_t		old;
	void	   *q;

	if (p == NULL)
		return malloc(n);
	old = malloc_usable_size(p);
	if (n <= old && n > 0)
		return p;
	q = malloc(n > 0 ? n : 1);
	if (q == NULL)
		return NULL;
	memcpy(q, p, Min(old, n));
	explicit_bzero(p, old);
	free(p);
	return q;
}

static char *
wipe_strdup(const char *s)
{
	size_t		n = strlen(s) + 1;
	char	   *r = malloc(n);

	if (r != NULL)
		memcpy(r, s, n);
	return r;
}

static void *
wipe_calloc(size_t nmemb, size_t size)
{
	return calloc(nmemb, size);
}

/* ------------------------------------------------------------------
 * transfer state
 * ------------------------------------------------------------------ */

static void
wipe_body(void)
{
	if (xfer.buf != NULL)
	{
		explicit_bzero(xfer.buf, xfer.cap);
		free(xfer.buf);
	}
	xfer.buf = NULL;
	xfer.len = 0;
	xfer.cap = 0;
}

/* Tear down the transfer in flight, if any.  Never ereports. */
static void
end_transfer(void)
{
	if (xfer.easy != NULL)
	{
		if (xfer.in_multi && multi != NULL)
			curl_multi_remove_handle(multi, xfer.easy);
		curl_easy_cleanup(xfer.easy);
	}
	if (xfer.headers != NULL)
		curl_slist_free_all(xfer.headers);
	wipe_body();
	explicit_bzero(&xfer, sizeof(xfer));
}

static void
http_atexit(int code, Datum arg)
{
	end_transfer();
	if (multi != NULL)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
	}
	if (curl_initialized)
	{
		curl_global_cleanup();
		curl_initialized = false;
	}
}

static void
ensure_multi(void)
{
	if (!curl_initialized)
	{
		if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, wipe_malloc, wipe_free,
								 wipe_realloc, wipe_strdup, wipe_calloc) != CURLE_OK)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not initialize libcurl")));
		curl_initialized = true;
	}
	if (!exit_callback_registered)
	{
		on_proc_exit(http_atexit, (Datum) 0);
		exit_callback_registered = true;
	}
	if (multi == NULL)
	{
		multi = curl_multi_init();
		if (multi == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not create a libcurl multi handle")));
		/* keep a few connections: KMS, STS, a credential endpoint */
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 8L);
	}
}

/* ------------------------------------------------------------------
 * callbacks: no ereport, no palloc
 * ------------------------------------------------------------------ */

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	PgckHttpTransfer *t = (PgckHttpTransfer *) userdata;
	size_t		n = size * nmemb;

	if (n == 0)
		return 0;
	if (n > t->max || t->len > t->max - n)
	{
		t->too_large = true;
		return 0;				/* aborts with CURLE_WRITE_ERROR */
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		newcap = t->cap > 0 ? t->cap : 4096;
		char	   *nb;

		while (newcap < t->len + n + 1)
			newcap *= 2;
		if (newcap > t->max + 1)
			newcap = t->max + 1;
		nb = malloc(newcap);
		if (nb == NULL)
		{
			t->nomem = true;
			return 0;
		}
		if (t->buf != NULL)
		{
			memcpy(nb, t->buf, t->len);
			explicit_bzero(t->buf, t->cap);
			free(t->buf);
		}
		t->buf = nb;
		t->cap = newcap;
	}
	memcpy(t->buf + t->len, ptr, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return n;
}

/* Copy a header value: trimmed, printable ASCII only, truncated. */
static void
copy_header_value(char *dst, size_t dstsize, const char *v, size_t n)
{
	size_t		o = 0;

	while (n > 0 && (*v == ' ' || *v == '\t'))
	{
		v++;
		n--;
	}
	while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' ||
					 v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	while (o < n && o < dstsize - 1)
	{
		unsigned char c = (unsigned char) v[o];

		dst[o] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
		o++;
	}
	dst[o] = '\0';
}

static bool
header_is(const char *line, size_t n, const char *name)
{
	size_t		nl = strlen(name);

	return n > nl && line[nl] == ':' && pg_strncasecmp(line, name, nl) == 0;
}

static size_t
header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	PgckHttpTransfer *t = (PgckHttpTransfer *) userdata;
	size_t		n = size * nitems;

	/* a new status line (after 100 Continue, say) starts over */
	if (n >= 5 && memcmp(buffer, "HTTP/", 5) == 0)
	{
		t->request_id[0] = '\0';
		t->error_type[0] = '\0';
	}
	else if (header_is(buffer, n, "x-amzn-RequestId"))
		copy_header_value(t->request_id, sizeof(t->request_id),
						  buffer + 17, n - 17);
	else if (header_is(buffer, n, "X-Amzn-Errortype"))
		copy_header_value(t->error_type, sizeof(t->error_type),
						  buffer + 17, n - 17);
	return n;
}

static CURLcode
ssl_ctx_cb(CURL *curl, void *sslctx, void *parm)
{
	/* do not keep decrypted TLS records in OpenSSL's buffers */
	SSL_CTX_set_options((SSL_CTX *) sslctx, SSL_OP_CLEANSE_PLAINTEXT);
	return CURLE_OK;
}

/* ------------------------------------------------------------------
 * URL policy
 * ------------------------------------------------------------------ */

static bool
host_is_loopback(const char *host)
{
	char		buf[64];
	size_t		len = strlen(host);
	unsigned char addr[16];

	if (pg_strcasecmp(host, "localhost") == 0)
		return true;
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(buf))
	{
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		if (inet_pton(AF_INET6, buf, addr) != 1)
			return false;
		/* ::1 */
		{
			static const unsigned char lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

			if (memcmp(addr, lo6, 16) == 0)
				return true;
		}
		/* ::ffff:127.x.x.x */
		{
			static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

			return memcmp(addr, mapped, 12) == 0 && addr[12] == 127;
		}
	}
	if (inet_pton(AF_INET, host, addr) == 1)
		return addr[0] == 127;
	return false;
}

static bool
host_is_metadata(const char *host)
{
	static const char *const hosts[] = {
		"169.254.169.254",		/* EC2 IMDS */
		"169.254.170.2",		/* ECS container credentials */
		"169.254.170.23",		/* EKS Pod Identity */
		"[fd00:ec2::254]",		/* EC2 IMDS, IPv6 */
		"[fd00:ec2::23]",		/* EKS Pod Identity, IPv6 */
	};
	size_t		i;

	for (i = 0; i < lengthof(hosts); i++)
		if (pg_strcasecmp(host, hosts[i]) == 0)
			return true;
	return false;
}

static char *
url_part(CURLU *u, CURLUPart part)
{
	char	   *v = NULL;
	char	   *r;

	if (curl_url_get(u, part, &v, 0) != CURLUE_OK || v == NULL)
		return NULL;
	r = pstrdup(v);
	curl_free(v);
	return r;
}

void
pgck_http_parse_url(const char *url, PgckHttpPlainPolicy policy,
					const char *what_for, PgckHttpUrl *out)
{
	CURLU	   *u;
	char	   *port;
	char	   *user;
	char	   *password;
	char	   *fragment;
	const char *problem = NULL;

	memset(out, 0, sizeof(*out));
	if (!curl_initialized)
		ensure_multi();
	u = curl_url();
	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (url == NULL || url[0] == '\0' ||
		curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
	{
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid %s URL", what_for),
				 errdetail("The URL does not parse (it is not repeated: it may carry credentials).")));
	}
	out->scheme = url_part(u, CURLUPART_SCHEME);
	out->host = url_part(u, CURLUPART_HOST);
	out->path = url_part(u, CURLUPART_PATH);
	port = url_part(u, CURLUPART_PORT);
	user = url_part(u, CURLUPART_USER);
	password = url_part(u, CURLUPART_PASSWORD);
	fragment = url_part(u, CURLUPART_FRAGMENT);
	curl_url_cleanup(u);

	if (out->scheme == NULL || out->host == NULL || out->host[0] == '\0')
		problem = "The URL must have a scheme and a host.";
	else if (strcmp(out->scheme, "https") != 0 && strcmp(out->scheme, "http") != 0)
		problem = "Only https, and http to a loopback address, are allowed.";
	else if (user != NULL || password != NULL)
		problem = "The URL must not carry a user name or password.";
	else if (fragment != NULL)
		problem = "The URL must not have a fragment.";
	else if (strcmp(out->scheme, "http") == 0 &&
			 !host_is_loopback(out->host) &&
			 !(policy == PGCK_HTTP_PLAIN_METADATA && host_is_metadata(out->host)))
		problem = "Plain http is allowed only to a loopback address; use https.";
	if (problem != NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid %s URL", what_for),
				 errdetail("%s", problem)));

	out->plain = strcmp(out->scheme, "http") == 0;
	if (out->path == NULL || out->path[0] == '\0')
		out->path = pstrdup("/");
	out->host_header = port != NULL ? psprintf("%s:%s", out->host, port) : pstrdup(out->host);
}

/* ------------------------------------------------------------------
 * requests
 * ------------------------------------------------------------------ */

double
pgck_http_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1.0e6;
}

bool
pgck_http_result_is_transient(PgckHttpResult result)
{
	return result == PGCK_HTTP_ERR_CONNECT ||
		result == PGCK_HTTP_ERR_TIMEOUT ||
		result == PGCK_HTTP_ERR_NETWORK;
}

const char *
pgck_http_result_name(PgckHttpResult result)
{
	switch (result)
	{
		case PGCK_HTTP_DONE:
			return "response received";
		case PGCK_HTTP_ERR_CONNECT:
			return "could not connect";
		case PGCK_HTTP_ERR_TIMEOUT:
			return "timed out";
		case PGCK_HTTP_ERR_TLS:
			return "TLS failure";
		case PGCK_HTTP_ERR_NETWORK:
			return "network error";
		case PGCK_HTTP_ERR_TOO_LARGE:
			return "response too large";
		case PGCK_HTTP_ERR_OTHER:
			return "transfer failed";
	}
	return "transfer failed";
}

static PgckHttpResult
classify(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_OK:
			return PGCK_HTTP_DONE;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
			return PGCK_HTTP_ERR_CONNECT;
		case CURLE_OPERATION_TIMEDOUT:
			return PGCK_HTTP_ERR_TIMEOUT;
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
		case CURLE_SSL_CONNECT_ERROR:	/* reset during the handshake */
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			return PGCK_HTTP_ERR_NETWORK;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
		case CURLE_SSL_CRL_BADFILE:
		case CURLE_SSL_ENGINE_NOTFOUND:
		case CURLE_SSL_ENGINE_SETFAILED:
		case CURLE_SSL_ENGINE_INITFAILED:
		case CURLE_USE_SSL_FAILED:
			return PGCK_HTTP_ERR_TLS;
		default:
			return PGCK_HTTP_ERR_OTHER;
	}
}

/*
 * curl_multi_perform with every signal blocked: libcurl's threaded DNS
 * resolver starts its thread in here, and the thread inherits this mask,
 * so PostgreSQL's signal handlers (statement_timeout, cancel, latch) always
 * run in the backend's own thread.  Signals arriving meanwhile are
 * delivered when the mask is restored; perform never blocks.
 */
static CURLMcode
perform_masked(int *running)
{
	sigset_t	all;
	sigset_t	old;
	CURLMcode	mc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	mc = curl_multi_perform(multi, running);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return mc;
}

/*
 * Service pending interrupts during a transfer.  If one raises an error
 * (query cancel, statement_timeout), the transfer is aborted and its
 * buffers wiped first; an interrupt that does not raise (a barrier, a
 * config reload request) lets the transfer go on.
 */
static void
interrupt_transfer(void)
{
	PG_TRY();
	{
		CHECK_FOR_INTERRUPTS();
	}
	PG_CATCH();
	{
		end_transfer();
		PG_RE_THROW();
	}
	PG_END_TRY();
}

#define SETOPT(opt, val) \
	do { \
		if (curl_easy_setopt(xfer.easy, (opt), (val)) != CURLE_OK) \
			goto setopt_failed; \
	} while (0)

void
pgck_http_perform(const PgckHttpRequest *req, PgckHttpResponse *resp)
{
	PgckHttpUrl url;
	CURLcode	rc = CURLE_OK;
	CURLMcode	mc;
	CURLMsg    *msg;
	int			running = 1;
	int			pending;
	int			i;
	double		start;
	double		hard_deadline;
	long		new_connections = 0;
	bool		shown;
	bool		timed_out = false;

	memset(resp, 0, sizeof(*resp));
	resp->result = PGCK_HTTP_ERR_OTHER;

	pgck_http_parse_url(req->url, req->plain_policy, "HTTP", &url);
	ensure_multi();

	/* a transfer interrupted by a FATAL never came back here: clean it */
	end_transfer();

	xfer.easy = curl_easy_init();
	if (xfer.easy == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not create a libcurl handle")));
	xfer.max = req->max_response > 0 ? req->max_response : PGCK_HTTP_MAX_RESPONSE;

	for (i = 0; i < req->nheaders; i++)
	{
		struct curl_slist *l;

		if (strpbrk(req->headers[i], "\r\n") != NULL)
		{
			end_transfer();
			/* the callers check credentials first: this is the last line */
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("an HTTP header for the KMS call contains a line break"),
					 errdetail("A credential or setting sent as a header holds a control character.")));
		}
		l = curl_slist_append(xfer.headers, req->headers[i]);
		if (l == NULL)
			goto setopt_failed;
		xfer.headers = l;
	}
	/* no "Expect: 100-continue" round trip */
	{
		struct curl_slist *l = curl_slist_append(xfer.headers, "Expect:");

		if (l == NULL)
			goto setopt_failed;
		xfer.headers = l;
	}

	SETOPT(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	SETOPT(CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
	if (pgck_ca_file != NULL && pgck_ca_file[0] != '\0')
		SETOPT(CURLOPT_CAINFO, pgck_ca_file);
	/* fails harmlessly with TLS backends other than OpenSSL */
	(void) curl_easy_setopt(xfer.easy, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long) Max(req->connect_timeout_ms, 1));
	SETOPT(CURLOPT_TIMEOUT_MS, (long) Max(req->timeout_ms, 1));
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_USERAGENT, "pgcrypt_kms/0.1");
	/* loopback and link-local endpoints never go through a proxy */
	if (url.plain)
		SETOPT(CURLOPT_NOPROXY, "*");
	SETOPT(CURLOPT_HTTPHEADER, xfer.headers);
	SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(CURLOPT_WRITEDATA, &xfer);
	SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
	SETOPT(CURLOPT_HEADERDATA, &xfer);
	SETOPT(CURLOPT_ERRORBUFFER, xfer.errbuf);
	switch (req->method)
	{
		case PGCK_HTTP_GET:
			SETOPT(CURLOPT_HTTPGET, 1L);
			break;
		case PGCK_HTTP_PUT:
		case PGCK_HTTP_POST:
			SETOPT(CURLOPT_POST, 1L);
			SETOPT(CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
			SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (req->body != NULL ? req->body_len : 0));
			if (req->method == PGCK_HTTP_PUT)
				SETOPT(CURLOPT_CUSTOMREQUEST, "PUT");
			break;
	}

	if (curl_multi_add_handle(multi, xfer.easy) != CURLM_OK)
		goto setopt_failed;
	xfer.in_multi = true;

	start = pgck_http_now_ms();
	/* libcurl enforces timeout_ms; this is only a backstop */
	hard_deadline = start + Max(req->timeout_ms, 1) + 1000.0;

	for (;;)
	{
		mc = perform_masked(&running);
		if (mc != CURLM_OK || running == 0)
			break;

		if (INTERRUPTS_PENDING_CONDITION())
			interrupt_transfer();
		if (pgck_http_now_ms() > hard_deadline)
		{
			timed_out = true;
			break;
		}
		mc = curl_multi_poll(multi, NULL, 0, POLL_SLICE_MS, NULL);
		if (mc != CURLM_OK)
			break;
	}

	resp->elapsed_ms = pgck_http_now_ms() - start;
	if (timed_out)
		rc = CURLE_OPERATION_TIMEDOUT;
	else if (mc != CURLM_OK)
		rc = CURLE_RECV_ERROR;
	else
	{
		rc = CURLE_GOT_NOTHING;
		while ((msg = curl_multi_info_read(multi, &pending)) != NULL)
		{
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == xfer.easy)
				rc = msg->data.result;
		}
	}

	if (xfer.too_large)
		resp->result = PGCK_HTTP_ERR_TOO_LARGE;
	else if (xfer.nomem)
		resp->result = PGCK_HTTP_ERR_OTHER;
	else
		resp->result = classify(rc);

	if (resp->result == PGCK_HTTP_DONE)
	{
		curl_easy_getinfo(xfer.easy, CURLINFO_RESPONSE_CODE, &resp->status);
		/* hand the body over; the caller wipes it */
		resp->body = xfer.buf;
		resp->body_len = xfer.len;
		xfer.buf = NULL;
		xfer.len = xfer.cap = 0;
	}
	else
	{
		/* curl's own text names the host and port: the log's only */
		if (xfer.too_large)
			strlcpy(resp->error_public, "response body exceeds the size limit", sizeof(resp->error_public));
		else if (xfer.nomem)
			strlcpy(resp->error_public, "out of memory", sizeof(resp->error_public));
		else if (timed_out)
			strlcpy(resp->error_public, "timed out", sizeof(resp->error_public));
		else
			strlcpy(resp->error_public, curl_easy_strerror(rc), sizeof(resp->error_public));
		if (xfer.errbuf[0] != '\0' && !xfer.too_large && !xfer.nomem && !timed_out)
			copy_header_value(resp->error_text, sizeof(resp->error_text),
							  xfer.errbuf, strnlen(xfer.errbuf, sizeof(xfer.errbuf)));
		else
			strlcpy(resp->error_text, resp->error_public, sizeof(resp->error_text));
	}
	memcpy(resp->request_id, xfer.request_id, sizeof(resp->request_id));
	memcpy(resp->error_type, xfer.error_type, sizeof(resp->error_type));
	curl_easy_getinfo(xfer.easy, CURLINFO_NUM_CONNECTS, &new_connections);

	end_transfer();

	/*
	 * Any role may raise client_min_messages: the endpoint (a superuser-only
	 * setting) is shown to a client that may read it, else the log only.
	 */
	shown = pgck_client_may_see_hidden();
	ereport(DEBUG2,
			(errmsg_internal("pgcrypt_kms: HTTP request to %s: %s, status %ld, %.1f ms, %ld new connection(s)",
							 shown ? url.host_header : "the configured endpoint",
							 pgck_http_result_name(resp->result), resp->status,
							 resp->elapsed_ms, new_connections),
			 shown ? 0 : errdetail_log("The request went to %s.", url.host_header)));
	return;

setopt_failed:
	end_transfer();
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("could not set up an HTTP request")));
}

char *
pgck_http_header_line(const char *name, const char *value)
{
	size_t		nlen = strlen(name);
	size_t		vlen = strlen(value);
	char	   *line = palloc(nlen + 2 + vlen + 1);

	memcpy(line, name, nlen);
	memcpy(line + nlen, ": ", 2);
	memcpy(line + nlen + 2, value, vlen + 1);
	return line;
}

void
pgck_http_response_free(PgckHttpResponse *resp)
{
	if (resp == NULL)
		return;
	if (resp->body != NULL)
	{
		explicit_bzero(resp->body, resp->body_len);
		free(resp->body);
	}
	resp->body = NULL;
	resp->body_len = 0;
}
