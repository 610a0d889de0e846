/*-------------------------------------------------------------------------
 *
 * sigv4.c
 *		AWS Signature Version 4 signing; see sigv4.h for the contract.
 *
 * The steps, as AWS specifies them (and as the aws-sig-v4-test-suite checks
 * byte for byte):
 *	1. canonical request = method \n canonical URI \n canonical query \n
 *	   canonical headers (each "name:value\n") \n signed headers \n
 *	   hex(SHA-256(payload))
 *	2. string to sign = "AWS4-HMAC-SHA256" \n amz_date \n scope \n
 *	   hex(SHA-256(canonical request)),
 *	   scope = yyyymmdd/region/service/aws4_request
 *	3. signing key = HMAC("AWS4" secret, yyyymmdd) -> region -> service ->
 *	   "aws4_request"; signature = hex(HMAC(signing key, string to sign))
 *
 * Pure C11: malloc/free only, and only through sv_alloc/sv_free.  Every
 * string is built in a growable buffer that records an allocation failure
 * instead of reporting it at once, so the code reads straight through and
 * checks once per piece.  The secret and every link of the key chain are
 * wiped on every path out.
 *
 * What passes through the buffers includes the session token (the
 * x-amz-security-token header is signed, so it is in the canonical request),
 * so no block is ever given back to malloc unwiped: sv_free wipes every
 * block before freeing it, a buffer grows by allocating a new block,
 * copying and wiping the old one (never realloc, which would free the old
 * block with its contents), and a finished string is copied to a block of
 * its exact size, so its release can wipe all of it.
 *
 *-------------------------------------------------------------------------
 */
#include "sigv4.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SHA256_LEN 32

/* A growable NUL-terminated string; failed is sticky. */
struct strbuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
};

/* One query parameter, both halves already in canonical (encoded) form. */
struct qparam
{
	char	   *key;
	char	   *value;
};

/* One header: lowercased name, canonical value, position in the request. */
struct hdr
{
	char	   *name;
	char	   *value;
	size_t		pos;
};

static const char hexdigits_lower[] = "0123456789abcdef";
static const char hexdigits_upper[] = "0123456789ABCDEF";

/* ---------------------------------------------------------------- memory */

/* set by tests only; see pgck_sigv4_set_alloc_hooks */
static void (*alloc_hook) (void *p, size_t n) = NULL;
static void (*free_hook) (void *p, size_t n) = NULL;

void
pgck_sigv4_set_alloc_hooks(void (*on_alloc) (void *p, size_t n),
						   void (*on_free) (void *p, size_t n))
{
	alloc_hook = on_alloc;
	free_hook = on_free;
}

/* malloc(n), n >= 1 */
static void *
sv_alloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p != NULL && alloc_hook != NULL)
		alloc_hook(p, n ? n : 1);
	return p;
}

static void *
sv_calloc(size_t nmemb, size_t size)
{
	void	   *p;
	size_t		n;

	if (size != 0 && nmemb > SIZE_MAX / size)
		return NULL;
	n = nmemb * size;
	p = sv_alloc(n);
	if (p != NULL)
		memset(p, 0, n > 0 ? n : 1);
	return p;
}

/* Wipe the n bytes of p (as allocated) and free it; NULL is fine. */
static void
sv_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, n ? n : 1);
	if (free_hook != NULL)
		free_hook(p, n ? n : 1);
	free(p);
}

/* Free a string allocated at its exact size (sv_strdup, buf_finish). */
static void
sv_free_str(char *s)
{
	if (s != NULL)
		sv_free(s, strlen(s) + 1);
}

static char *
sv_strdup(const char *s)
{
	size_t		n = strlen(s) + 1;
	char	   *d = sv_alloc(n);

	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

/* ---------------------------------------------------------------- buffers */

static void
buf_putn(struct strbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->cap - b->len <= n)
	{
		size_t		ncap = b->cap ? b->cap : 64;
		char	   *nd;

		while (ncap - b->len <= n)
		{
			if (ncap > SIZE_MAX / 2)
			{
				b->failed = true;
				return;
			}
			ncap *= 2;
		}
		/* never realloc: the old block may hold the session token */
		nd = sv_alloc(ncap);
		if (nd == NULL)
		{
			b->failed = true;
			return;
		}
		if (b->data != NULL)
		{
			memcpy(nd, b->data, b->len + 1);
			sv_free(b->data, b->cap);
		}
		b->data = nd;
		b->cap = ncap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_puts(struct strbuf *b, const char *s)
{
	buf_putn(b, s, strlen(s));
}

static void
buf_putc(struct strbuf *b, char c)
{
	buf_putn(b, &c, 1);
}

/*
 * Hand over the string in a block of its exact size (never NULL on success:
 * "" when nothing was put); the buffer is wiped and freed either way.
 */
static char *
buf_finish(struct strbuf *b)
{
	char	   *s = NULL;

	if (!b->failed && b->data == NULL)
		buf_putn(b, "", 0);
	if (!b->failed)
	{
		s = sv_alloc(b->len + 1);
		if (s != NULL)
			memcpy(s, b->data, b->len + 1);
	}
	sv_free(b->data, b->cap);
	b->data = NULL;
	b->len = b->cap = 0;
	return s;
}

/* ---------------------------------------------------------------- encoding */

static void
hex_encode(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
	{
		out[2 * i] = hexdigits_lower[in[i] >> 4];
		out[2 * i + 1] = hexdigits_lower[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 7230 tchar: what a header name or method may be made of. */
static bool
is_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (!is_unreserved(c) && strchr("!#$%&'*+^`|", c) == NULL)
			return false;
	}
	return true;
}

/*
 * Credential scope parts and the access key id end up between '/' and ','
 * in the Authorization header: printable, no space, no '/', no ','.
 */
static bool
is_scope_part(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c <= ' ' || c > '~' || c == '/' || c == ',')
			return false;
	}
	return true;
}

static bool
is_amz_date(const char *s)
{
	if (s == NULL || strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && (s[i] < '0' || s[i] > '9'))
			return false;
	return true;
}

/* URI-encode s[0..n): RFC 3986 unreserved bytes as is, others %XX (upper). */
static void
uri_encode(struct strbuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (is_unreserved(c))
			buf_putc(b, (char) c);
		else
		{
			char		esc[3] = {'%', hexdigits_upper[c >> 4], hexdigits_upper[c & 15]};

			buf_putn(b, esc, 3);
		}
	}
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode then URI-encode s[0..n) into a new string (NULL on OOM).
 * A '%' not followed by two hex digits is taken literally (becomes %25).
 * Decoding first makes "%e1%88%b4", "%E1%88%B4" and the raw UTF-8 bytes
 * all canonicalize to "%E1%88%B4" (get-vanilla-query-order-encoded and
 * get-vanilla-utf8-query).
 */
static char *
query_part(const char *s, size_t n)
{
	struct strbuf b = {0};

	for (size_t i = 0; i < n; i++)
	{
		char		c = s[i];

		if (c == '%' && i + 2 < n &&
			hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0)
		{
			c = (char) (hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
			i += 2;
		}
		uri_encode(&b, &c, 1);
	}
	return buf_finish(&b);
}

/* ---------------------------------------------------------------- pieces */

/*
 * Canonical URI of a wire path (non-S3 rules).  Dot segments are removed as
 * RFC 3986 5.2.4 does, and empty segments ("//") are dropped; a trailing
 * slash survives when the path ends in '/', "." or ".." and something is
 * left ("//example//" -> "/example/", "/example/.." -> "/").  Each
 * remaining segment is URI-encoded, '%' included: AWS encodes the already
 * encoded wire path a second time for every service but S3.
 */
static bool
put_canonical_uri(struct strbuf *b, const char *path)
{
	const char **seg;
	size_t	   *seglen;
	size_t		nseg = 0;
	size_t		maxseg;
	bool		trailing = false;
	const char *s;

	if (path == NULL || *path == '\0')
		path = "/";
	if (path[0] != '/')
		return false;

	maxseg = strlen(path);		/* at most one segment per '/' */
	seg = sv_alloc(maxseg * sizeof(*seg));
	seglen = sv_alloc(maxseg * sizeof(*seglen));
	if (seg == NULL || seglen == NULL)
	{
		sv_free(seg, maxseg * sizeof(*seg));
		sv_free(seglen, maxseg * sizeof(*seglen));
		return false;
	}

	s = path + 1;
	for (;;)
	{
		const char *e = strchr(s, '/');
		size_t		len = e ? (size_t) (e - s) : strlen(s);
		bool		last = (e == NULL);

		if (len == 0 || (len == 1 && s[0] == '.'))
			trailing = last;
		else if (len == 2 && s[0] == '.' && s[1] == '.')
		{
			if (nseg > 0)
				nseg--;
			trailing = last;
		}
		else
		{
			seg[nseg] = s;
			seglen[nseg] = len;
			nseg++;
			trailing = false;
		}
		if (last)
			break;
		s = e + 1;
	}

	buf_putc(b, '/');
	for (size_t i = 0; i < nseg; i++)
	{
		if (i > 0)
			buf_putc(b, '/');
		uri_encode(b, seg[i], seglen[i]);
	}
	if (trailing && nseg > 0)
		buf_putc(b, '/');

	sv_free(seg, maxseg * sizeof(*seg));
	sv_free(seglen, maxseg * sizeof(*seglen));
	return true;
}

static int
qparam_cmp(const void *a, const void *b)
{
	const struct qparam *x = a;
	const struct qparam *y = b;
	int			c = strcmp(x->key, y->key);

	return c != 0 ? c : strcmp(x->value, y->value);
}

/*
 * Canonical query: parameters split on '&' (empty pieces carry nothing and
 * are dropped), name and value split on the first '=' ("key" alone means
 * an empty value, written "key="), both re-encoded, then sorted by encoded
 * name and, for repeated names, by encoded value, in byte order.  Sorting
 * the name alone first matters: "Param" < "Param-3" although "Param=" >
 * "Param-3=".
 */
static bool
put_canonical_query(struct strbuf *b, const char *query)
{
	struct qparam *params;
	size_t		np = 0;
	size_t		maxp = 1;
	bool		ok = true;
	const char *s;

	if (query == NULL || *query == '\0')
		return true;
	for (s = query; *s; s++)
		if (*s == '&')
			maxp++;
	params = sv_calloc(maxp, sizeof(*params));
	if (params == NULL)
		return false;

	s = query;
	for (;;)
	{
		const char *e = strchr(s, '&');
		size_t		len = e ? (size_t) (e - s) : strlen(s);

		if (len > 0)
		{
			const char *eq = memchr(s, '=', len);
			size_t		klen = eq ? (size_t) (eq - s) : len;

			params[np].key = query_part(s, klen);
			params[np].value = eq ? query_part(eq + 1, len - klen - 1) : query_part("", 0);
			np++;
			if (params[np - 1].key == NULL || params[np - 1].value == NULL)
			{
				ok = false;
				break;
			}
		}
		if (e == NULL)
			break;
		s = e + 1;
	}

	if (ok)
	{
		qsort(params, np, sizeof(*params), qparam_cmp);
		for (size_t i = 0; i < np; i++)
		{
			if (i > 0)
				buf_putc(b, '&');
			buf_puts(b, params[i].key);
			buf_putc(b, '=');
			buf_puts(b, params[i].value);
		}
	}

	for (size_t i = 0; i < np; i++)
	{
		sv_free_str(params[i].key);
		sv_free_str(params[i].value);
	}
	sv_free(params, maxp * sizeof(*params));
	return ok;
}

static bool
is_lws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Canonical header value: leading and trailing whitespace removed, every
 * inner run of whitespace (spaces, tabs and the line breaks of a folded
 * value) made one space.  Quotes are not special: "a   b   c" (with the
 * quotes) becomes "a b c" (get-header-value-trim).
 */
static char *
header_value(const char *v)
{
	struct strbuf b = {0};
	bool		pending_space = false;

	for (; *v; v++)
	{
		if (is_lws(*v))
		{
			pending_space = (b.len > 0);
			continue;
		}
		if (pending_space)
			buf_putc(&b, ' ');
		pending_space = false;
		buf_putc(&b, *v);
	}
	return buf_finish(&b);
}

static int
hdr_cmp(const void *a, const void *b)
{
	const struct hdr *x = a;
	const struct hdr *y = b;
	int			c = strcmp(x->name, y->name);

	/* qsort is not stable: the position keeps repeated names in order */
	if (c != 0)
		return c;
	return x->pos < y->pos ? -1 : (x->pos > y->pos ? 1 : 0);
}

/*
 * Canonical headers into creq and the signed-headers list into sh.  Names
 * are lowercased and sorted; a name given several times becomes one line
 * with the values joined by ',' in request order (get-header-value-order).
 * An x-amz-date header must carry amz_date.
 */
static bool
put_canonical_headers(struct strbuf *creq, struct strbuf *sh,
					  const PgckSigv4Header *headers, size_t nheaders,
					  const char *amz_date)
{
	struct hdr *h;
	bool		ok = true;
	size_t		i;

	if (nheaders > 0 && headers == NULL)
		return false;
	h = sv_calloc(nheaders ? nheaders : 1, sizeof(*h));
	if (h == NULL)
		return false;

	for (i = 0; i < nheaders; i++)
	{
		if (!is_token(headers[i].name) || headers[i].value == NULL)
		{
			ok = false;
			break;
		}
		h[i].name = sv_strdup(headers[i].name);
		h[i].value = header_value(headers[i].value);
		h[i].pos = i;
		if (h[i].name == NULL || h[i].value == NULL)
		{
			ok = false;
			break;
		}
		for (char *p = h[i].name; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char) (*p - 'A' + 'a');
	}

	if (ok)
	{
		qsort(h, nheaders, sizeof(*h), hdr_cmp);
		for (size_t j = 0; j < nheaders; j++)
		{
			bool		first = (j == 0 || strcmp(h[j].name, h[j - 1].name) != 0);
			bool		endgroup = (j + 1 == nheaders || strcmp(h[j].name, h[j + 1].name) != 0);

			if (first)
			{
				if (j > 0)
					buf_putc(sh, ';');
				buf_puts(sh, h[j].name);
				buf_puts(creq, h[j].name);
				buf_putc(creq, ':');
			}
			else
				buf_putc(creq, ',');
			buf_puts(creq, h[j].value);
			if (endgroup)
				buf_putc(creq, '\n');

			/* a lone x-amz-date that disagrees with the scope date: refuse */
			if (strcmp(h[j].name, "x-amz-date") == 0 &&
				(!first || !endgroup || strcmp(h[j].value, amz_date) != 0))
				ok = false;
		}
	}

	/* calloc'd: entries never reached are NULL */
	for (i = 0; i < nheaders; i++)
	{
		sv_free_str(h[i].name);
		sv_free_str(h[i].value);
	}
	sv_free(h, (nheaders ? nheaders : 1) * sizeof(*h));
	return ok;
}

/* ---------------------------------------------------------------- crypto */

static bool
sha256_hex(const unsigned char *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const unsigned char empty[1] = {0};

	if (EVP_Digest(data ? (const void *) data : (const void *) empty, len,
				   md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != SHA256_LEN)
	{
		out[0] = '\0';
		return false;
	}
	hex_encode(md, SHA256_LEN, out);
	return true;
}

static bool
hmac_sha256(const void *key, size_t keylen, const char *msg,
			unsigned char out[SHA256_LEN])
{
	unsigned int outlen = 0;

	if (keylen > INT_MAX)
		return false;
	return HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) msg,
				strlen(msg), out, &outlen) != NULL && outlen == SHA256_LEN;
}

/*
 * hex(HMAC(signing key, sts)) into sig.  The secret copy and both halves of
 * the key chain are wiped whatever happens.
 */
static bool
compute_signature(const PgckSigv4Params *params, const char *date,
				  const char *sts, char sig[65])
{
	size_t		slen = strlen(params->secret_access_key);
	unsigned char *k0;
	unsigned char k1[SHA256_LEN];
	unsigned char k2[SHA256_LEN];
	unsigned char mac[SHA256_LEN];
	bool		ok;

	if (slen > SIZE_MAX - 4)
		return false;
	k0 = sv_alloc(4 + slen);
	if (k0 == NULL)
		return false;
	memcpy(k0, "AWS4", 4);
	memcpy(k0 + 4, params->secret_access_key, slen);

	ok = hmac_sha256(k0, 4 + slen, date, k1) &&
		hmac_sha256(k1, SHA256_LEN, params->region, k2) &&
		hmac_sha256(k2, SHA256_LEN, params->service, k1) &&
		hmac_sha256(k1, SHA256_LEN, "aws4_request", k2) &&
		hmac_sha256(k2, SHA256_LEN, sts, mac);
	if (ok)
		hex_encode(mac, SHA256_LEN, sig);

	sv_free(k0, 4 + slen);		/* wipes */
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	return ok;
}

/* ---------------------------------------------------------------- API */

int
pgck_sigv4_sign(const PgckSigv4Request *req, const PgckSigv4Params *params,
				PgckSigv4Result *out)
{
	struct strbuf creq = {0};
	struct strbuf sh = {0};
	struct strbuf sts = {0};
	struct strbuf authz = {0};
	char		date[9];
	char		hash[65];
	bool		ok;

	if (out == NULL)
		return -1;
	memset(out, 0, sizeof(*out));
	if (req == NULL || params == NULL || !is_token(req->method) ||
		(req->payload == NULL && req->payload_len > 0) ||
		!is_scope_part(params->access_key_id) ||
		params->secret_access_key == NULL || params->secret_access_key[0] == '\0' ||
		!is_scope_part(params->region) || !is_scope_part(params->service) ||
		!is_amz_date(params->amz_date))
		return -1;
	memcpy(date, params->amz_date, 8);
	date[8] = '\0';

	/* 1. canonical request */
	buf_puts(&creq, req->method);
	buf_putc(&creq, '\n');
	ok = put_canonical_uri(&creq, req->path);
	buf_putc(&creq, '\n');
	ok = ok && put_canonical_query(&creq, req->query);
	buf_putc(&creq, '\n');
	ok = ok && put_canonical_headers(&creq, &sh, req->headers, req->nheaders,
									 params->amz_date);
	buf_putc(&creq, '\n');		/* the blank line ending the header block */
	buf_puts(&creq, sh.data ? sh.data : "");
	buf_putc(&creq, '\n');
	ok = ok && sha256_hex(req->payload, req->payload_len, hash);
	buf_puts(&creq, hash);
	ok = ok && !creq.failed && !sh.failed;

	/* 2. string to sign */
	if (ok)
	{
		buf_puts(&sts, SIGV4_ALGORITHM "\n");
		buf_puts(&sts, params->amz_date);
		buf_putc(&sts, '\n');
		buf_puts(&sts, date);
		buf_putc(&sts, '/');
		buf_puts(&sts, params->region);
		buf_putc(&sts, '/');
		buf_puts(&sts, params->service);
		buf_puts(&sts, "/aws4_request\n");
		ok = sha256_hex((const unsigned char *) creq.data, creq.len, hash);
		buf_puts(&sts, hash);
		ok = ok && !sts.failed;
	}

	/* 3. signature and Authorization value */
	ok = ok && compute_signature(params, date, sts.data, out->signature);
	if (ok)
	{
		buf_puts(&authz, SIGV4_ALGORITHM " Credential=");
		buf_puts(&authz, params->access_key_id);
		buf_putc(&authz, '/');
		buf_puts(&authz, date);
		buf_putc(&authz, '/');
		buf_puts(&authz, params->region);
		buf_putc(&authz, '/');
		buf_puts(&authz, params->service);
		buf_puts(&authz, "/aws4_request, SignedHeaders=");
		buf_puts(&authz, sh.data ? sh.data : "");
		buf_puts(&authz, ", Signature=");
		buf_puts(&authz, out->signature);
	}

	out->canonical_request = buf_finish(&creq);
	out->signed_headers = buf_finish(&sh);
	out->string_to_sign = buf_finish(&sts);
	out->authorization = buf_finish(&authz);
	if (!ok || out->canonical_request == NULL || out->signed_headers == NULL ||
		out->string_to_sign == NULL || out->authorization == NULL)
	{
		pgck_sigv4_result_free(out);
		return -1;
	}
	return 0;
}

void
pgck_sigv4_result_free(PgckSigv4Result *res)
{
	if (res == NULL)
		return;
	/* the canonical request holds the session token when there is one */
	sv_free_str(res->canonical_request);
	sv_free_str(res->string_to_sign);
	sv_free_str(res->signed_headers);
	sv_free_str(res->authorization);
	memset(res, 0, sizeof(*res));
}

void
pgck_sha256_hex(const unsigned char *data, size_t len, char out[65])
{
	(void) sha256_hex(data, len, out);
}

void
pgck_sigv4_amz_date(time_t t, char out[17])
{
	struct tm	tm;
	char		tmp[64];		/* roomy enough to keep -Wformat-truncation quiet */

	out[0] = '\0';
	if (gmtime_r(&t, &tm) == NULL ||
		tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		return;
	snprintf(tmp, sizeof(tmp), "%04d%02d%02dT%02d%02d%02dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
	memcpy(out, tmp, 17);
}
