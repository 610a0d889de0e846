/*-------------------------------------------------------------------------
 *
 * aws_credentials.c
 *		The SDK credential chain: environment, shared files and profile,
 *		web identity (STS), container endpoint, EC2 IMDSv2.  See
 *		aws_credentials.h for the order and the refresh rules.
 *
 * Invariants:
 *	- The cache (cached, cached_view) owns malloc'd strings, wiped by
 *	  pgck_kj_credentials_free when replaced, invalidated, and at exit.
 *	- Every temporary buffer that held a secret (file contents, INI values,
 *	  STS request body with the web identity token, Authorization header
 *	  of the container endpoint) is wiped before it is freed, also when an
 *	  error unwinds (PG_FINALLY).
 *	- Error messages name the source and the file or URL, never a value
 *	  read from them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <pwd.h>
#include <time.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "aws_credentials.h"
#include "guc.h"
#include "http.h"
#include "kms.h"
#include "kms_aws.h"
#include "kms_common.h"
#include "kms_json.h"
#include "pgck_errcodes.h"

#define REFRESH_ADVISORY_SECS	(15 * 60)
#define REFRESH_MANDATORY_SECS	(10 * 60)
#define STATIC_RECHECK_MS		(15 * 60 * 1000.0)
#define MAX_SHARED_FILE			(1024 * 1024)
#define MAX_TOKEN_FILE			(64 * 1024)
#define MAX_INI_ENTRIES			128

#define ECS_HOST_URL			"http://169.254.170.2"
#define IMDS_URL_IPV4			"http://169.254.169.254"
#define IMDS_URL_IPV6			"http://[fd00:ec2::254]"
#define IMDS_TOKEN_TTL_SECS		21600
#define IMDS_CONNECT_MS			1000
#define IMDS_TOTAL_MS			2000
#define CONTAINER_TOTAL_MS		5000
#define CONTAINER_ATTEMPTS		3

static PgckKjCredentials cached;
static PgckAwsCredentials cached_view;
static bool cached_valid = false;
static bool cached_refreshable = false;
static double cached_at_ms = 0;
static char cached_profile[256];
static bool exit_callback_registered = false;

/* IMDSv2 session token, reused until shortly before it expires */
static char *imds_token = NULL;
static double imds_token_expires_ms = 0;

/* ------------------------------------------------------------------
 * small helpers
 * ------------------------------------------------------------------ */

const char *
pgck_aws_getenv(const char *name)
{
	const char *v = getenv(name);

	return (v != NULL && v[0] != '\0') ? v : NULL;
}

static bool
env_is_true(const char *name)
{
	const char *v = pgck_aws_getenv(name);

	return v != NULL && pg_strcasecmp(v, "true") == 0;
}

static void
free_imds_token(void)
{
	if (imds_token != NULL)
	{
		explicit_bzero(imds_token, strlen(imds_token));
		free(imds_token);
	}
	imds_token = NULL;
	imds_token_expires_ms = 0;
}

static void
credentials_atexit(int code, Datum arg)
{
	pgck_kj_credentials_free(&cached);
	memset(&cached_view, 0, sizeof(cached_view));
	cached_valid = false;
	free_imds_token();
}

static char *
malloc_strdup_or_error(const char *s)
{
	char	   *r = strdup(s);

	if (r == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return r;
}

/* Visible ASCII, no blanks: what may go into an HTTP header as a credential. */
static bool
is_token_text(const char *s)
{
	for (; *s; s++)
		if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f)
			return false;
	return true;
}

/*
 * Trim whitespace at both ends.  The bytes given up are zeroed, so a caller
 * that wipes strlen(s) bytes of a secret afterwards wipes all of it (a
 * memmove leaves a copy of the tail behind the new end otherwise).
 */
static void
trim_in_place(char *s)
{
	size_t		len = strlen(s);
	size_t		start = 0;

	while (len > 0 && isspace((unsigned char) s[len - 1]))
		s[--len] = '\0';
	while (start < len && isspace((unsigned char) s[start]))
		start++;
	if (start > 0)
	{
		memmove(s, s + start, len - start + 1);
		memset(s + len - start + 1, 0, start);
	}
}

static const char *
home_dir(void)
{
	const char *home = pgck_aws_getenv("HOME");

	if (home == NULL)
	{
		struct passwd *pw = getpwuid(geteuid());

		home = pw != NULL ? pw->pw_dir : NULL;
	}
	return home;
}

/* env var value or default, with a leading "~/" expanded; palloc'd or NULL */
static char *
aws_file_path(const char *env_name, const char *default_rel)
{
	const char *p = pgck_aws_getenv(env_name);
	const char *home;

	if (p != NULL && strncmp(p, "~/", 2) != 0)
		return pstrdup(p);
	home = home_dir();
	if (home == NULL)
		return NULL;
	if (p != NULL)
		return psprintf("%s/%s", home, p + 2);
	return psprintf("%s/%s", home, default_rel);
}

/* ------------------------------------------------------------------
 * shared config and credentials files (INI)
 * ------------------------------------------------------------------ */

typedef struct PgckIniProfile
{
	bool		found;			/* the section exists */
	int			n;
	char	   *keys[MAX_INI_ENTRIES];
	char	   *values[MAX_INI_ENTRIES];	/* wiped on free */
} PgckIniProfile;

static void
ini_free(PgckIniProfile *p)
{
	int			i;

	for (i = 0; i < p->n; i++)
	{
		pfree(p->keys[i]);
		pgck_kms_wipe_pfree(p->values[i]);
	}
	memset(p, 0, sizeof(*p));
}

static const char *
ini_get(const PgckIniProfile *p, const char *key)
{
	int			i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->keys[i], key) == 0)
			return p->values[i][0] != '\0' ? p->values[i] : NULL;
	return NULL;
}

static bool
section_matches(const char *name, const char *profile, bool config_file)
{
	if (!config_file)
		return strcmp(name, profile) == 0;
	if (strcmp(name, "default") == 0)
		return strcmp(profile, "default") == 0;
	if (strncmp(name, "profile", 7) == 0 && (name[7] == ' ' || name[7] == '\t'))
	{
		name += 7;
		while (*name == ' ' || *name == '\t')
			name++;
		return strcmp(name, profile) == 0;
	}
	return false;
}

/*
 * Load the key/value pairs of one profile's section.  Keys are lowercased;
 * indented lines (sub-properties, e.g. of "s3 =") are skipped; later
 * values win.  A missing file leaves *out empty.
 */
static void
ini_load(const char *path, const char *profile, bool config_file, PgckIniProfile *out)
{
	char	   *buf;
	size_t		buflen;

	memset(out, 0, sizeof(*out));
	if (path == NULL)
		return;
	buf = pgck_kms_read_secret_file(path, MAX_SHARED_FILE, PGCK_SECRET_MISSING_OK,
						   config_file ? "AWS config file" : "AWS shared credentials file");
	if (buf == NULL)
		return;
	buflen = strlen(buf);

	/* an error (out of memory) must not leave the file's secrets behind */
	PG_TRY();
	{
		char	   *line;
		char	   *next;
		bool		in_section = false;

		for (line = buf; line != NULL; line = next)
		{
			char	   *eq;
			char	   *key;
			char	   *value;
			int			i;

			next = strchr(line, '\n');
			if (next != NULL)
				*next++ = '\0';
			if (line[0] == ' ' || line[0] == '\t')
				continue;			/* nested sub-property or continuation */
			trim_in_place(line);
			if (line[0] == '\0' || line[0] == '#' || line[0] == ';')
				continue;
			if (line[0] == '[')
			{
				size_t		len = strlen(line);

				in_section = false;
				if (line[len - 1] == ']')
				{
					line[len - 1] = '\0';
					trim_in_place(line + 1);
					in_section = section_matches(line + 1, profile, config_file);
					if (in_section)
						out->found = true;
				}
				continue;
			}
			if (!in_section || (eq = strchr(line, '=')) == NULL)
				continue;
			*eq = '\0';
			key = line;
			value = eq + 1;
			trim_in_place(key);
			trim_in_place(value);
			for (i = 0; key[i]; i++)
				key[i] = pg_tolower((unsigned char) key[i]);
			for (i = 0; i < out->n; i++)
			{
				if (strcmp(out->keys[i], key) == 0)
				{
					char	   *v = pstrdup(value);

					pgck_kms_wipe_pfree(out->values[i]);
					out->values[i] = v;
					break;
				}
			}
			if (i == out->n && out->n < MAX_INI_ENTRIES)
			{
				char	   *k = pstrdup(key);
				char	   *v = pstrdup(value);

				out->keys[out->n] = k;
				out->values[out->n] = v;
				out->n++;
			}
		}
	}
	PG_CATCH();
	{
		explicit_bzero(buf, buflen);
		pfree(buf);
		ini_free(out);
		PG_RE_THROW();
	}
	PG_END_TRY();
	explicit_bzero(buf, buflen);
	pfree(buf);
}

char *
pgck_aws_profile_name(void)
{
	const char *p;

	if (pgck_aws_profile != NULL && pgck_aws_profile[0] != '\0')
		return pstrdup(pgck_aws_profile);
	if ((p = pgck_aws_getenv("AWS_PROFILE")) != NULL)
		return pstrdup(p);
	if ((p = pgck_aws_getenv("AWS_DEFAULT_PROFILE")) != NULL)
		return pstrdup(p);
	return pstrdup("default");
}

char *
pgck_aws_default_region(void)
{
	const char *r;
	char	   *profile;
	char	   *path;
	PgckIniProfile config;
	char	   *result = NULL;

	if (pgck_aws_region != NULL && pgck_aws_region[0] != '\0')
		return pstrdup(pgck_aws_region);
	if ((r = pgck_aws_getenv("AWS_REGION")) != NULL)
		return pstrdup(r);
	if ((r = pgck_aws_getenv("AWS_DEFAULT_REGION")) != NULL)
		return pstrdup(r);
	profile = pgck_aws_profile_name();
	path = aws_file_path("AWS_CONFIG_FILE", ".aws/config");
	ini_load(path, profile, true, &config);
	if ((r = ini_get(&config, "region")) != NULL)
		result = pstrdup(r);
	ini_free(&config);
	return result;
}

/* ------------------------------------------------------------------
 * network fetches
 * ------------------------------------------------------------------ */

static double
remaining_ms(double deadline_ms, const char *source)
{
	double		left = deadline_ms - pgck_http_now_ms();

	if (left < 1)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("pgcrypt_kms.kms_timeout was reached.")));
	return left;
}

/*
 * One HTTP request to a credential endpoint, bounded by the deadline and
 * the caps given; counted in the statistics.
 */
static void
fetch(PgckHttpMethod method, const char *url, const char *const *headers, int nheaders,
	  const char *body, size_t body_len, PgckHttpPlainPolicy policy,
	  int connect_cap_ms, int total_cap_ms, double deadline_ms, const char *source,
	  PgckHttpResponse *resp)
{
	PgckHttpRequest req;
	double		left = remaining_ms(deadline_ms, source);

	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.headers = headers;
	req.nheaders = nheaders;
	req.body = body;
	req.body_len = body_len;
	req.plain_policy = policy;
	req.connect_timeout_ms = (int) Min(Min((double) pgck_kms_connect_timeout, left),
									   (double) connect_cap_ms);
	req.timeout_ms = (int) Min(left, (double) total_cap_ms);
	req.max_response = 64 * 1024;
	pgck_http_perform(&req, resp);
	pgck_stats_kms_call(PGCK_OP_CREDENTIALS, resp->elapsed_ms,
						resp->result == PGCK_HTTP_DONE && resp->status == 200);
}

static void
report_transport_failure(const char *source, const PgckHttpResponse *resp)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("could not obtain AWS credentials from %s", source),
			 errdetail_internal("%s: %s.", pgck_http_result_name(resp->result),
								resp->error_text)));
}

static void
report_parse_failure(const char *source, const PgckKjError *err)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
			 errmsg("could not obtain AWS credentials from %s", source),
			 errdetail("The response is malformed: %s.", err->detail)));
}

/* A retryable answer from a credential endpoint. */
static bool
retryable(const PgckHttpResponse *resp, const char *error_code)
{
	if (resp->result != PGCK_HTTP_DONE)
		return pgck_http_result_is_transient(resp->result);
	if (resp->status == 429 || resp->status >= 500)
		return true;
	return error_code != NULL &&
		(strcmp(error_code, "IDPCommunicationError") == 0 ||
		 strcmp(error_code, "Throttling") == 0 ||
		 strcmp(error_code, "ThrottlingException") == 0);
}

/* application/x-www-form-urlencoded value (RFC 3986 unreserved kept) */
static void
append_form_value(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '~')
			appendStringInfoChar(buf, (char) c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 15]);
		}
	}
}

/* ------------------------------------------------------------------
 * web identity
 * ------------------------------------------------------------------ */

static char *
sts_endpoint(void)
{
	const char *e = NULL;
	char	   *region;

	if (!env_is_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"))
	{
		e = pgck_aws_getenv("AWS_ENDPOINT_URL_STS");
		if (e == NULL)
			e = pgck_aws_getenv("AWS_ENDPOINT_URL");
	}
	if (e != NULL)
	{
		PgckHttpUrl parsed;

		pgck_http_parse_url(e, PGCK_HTTP_PLAIN_LOOPBACK, "STS endpoint", &parsed);
		return pstrdup(e);
	}
	region = pgck_aws_default_region();
	if (region == NULL)
		return pstrdup("https://sts.amazonaws.com");
	if (!pgck_aws_region_is_valid(region))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS region \"%s\"", region)));
	return psprintf("https://sts.%s.%s", region, pgck_aws_dns_suffix(region));
}

static bool
valid_session_name(const char *s)
{
	size_t		len = strlen(s);

	if (len < 2 || len > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && strchr("+=,.@_-", *s) == NULL)
			return false;
	return true;
}

static void
fetch_web_identity(const char *role_arn, const char *token_file, const char *session_name,
				   double deadline_ms, PgckKjCredentials *out)
{
	const char *source = "web identity (STS AssumeRoleWithWebIdentity)";
	char	   *volatile token = NULL;
	char	   *session;
	char	   *url;
	StringInfoData body;
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
		"Accept: text/xml",
	};
	PgckHttpResponse resp;
	int			attempt;
	int			max_attempts = Max(pgck_kms_max_attempts, 1);

	if (strlen(role_arn) > 2048)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("The role ARN is too long.")));
	if (session_name != NULL && !valid_session_name(session_name))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS role session name \"%s\"", session_name),
				 errdetail("A session name has 2 to 64 letters, digits or characters of \"+=,.@_-\".")));
	session = session_name != NULL ? pstrdup(session_name)
		: psprintf("pgcrypt_kms-%d-%ld", MyProcPid, (long) time(NULL));
	url = sts_endpoint();
	memset(&resp, 0, sizeof(resp));
	initStringInfo(&body);

	PG_TRY();
	{
		/* re-read on every fetch: the token rotates */
		token = pgck_kms_read_secret_file(token_file, MAX_TOKEN_FILE, 0, "web identity token file");
		trim_in_place(token);
		if (token[0] == '\0')
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("The web identity token file \"%s\" is empty.", token_file)));

		/*
		 * Room for the whole body first (form encoding at most triples a
		 * byte): a StringInfo that grows repallocs, and the old block,
		 * freed unwiped, would keep a piece of the token.
		 */
		enlargeStringInfo(&body, 128 + 3 * (strlen(role_arn) + strlen(session) + strlen(token)));
		appendStringInfoString(&body, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=");
		append_form_value(&body, role_arn);
		appendStringInfoString(&body, "&RoleSessionName=");
		append_form_value(&body, session);
		appendStringInfoString(&body, "&WebIdentityToken=");
		append_form_value(&body, token);

		for (attempt = 1;; attempt++)
		{
			PgckKjAwsError aerr;
			PgckKjError perr;

			pgck_http_response_free(&resp);
			fetch(PGCK_HTTP_POST, url, headers, lengthof(headers), body.data, body.len,
				  PGCK_HTTP_PLAIN_LOOPBACK, INT_MAX, INT_MAX, deadline_ms, source, &resp);
			if (resp.result == PGCK_HTTP_DONE && resp.status == 200)
			{
				if (!pgck_kj_parse_sts_credentials(resp.body, resp.body_len, out, &perr))
					report_parse_failure(source, &perr);
				break;
			}
			memset(&aerr, 0, sizeof(aerr));
			if (resp.result == PGCK_HTTP_DONE)
				pgck_kj_parse_sts_error(resp.body, resp.body_len, &aerr);
			if (attempt < max_attempts && retryable(&resp, aerr.type))
			{
				if (pgck_kms_wait_before_retry(PGCK_OP_CREDENTIALS, attempt,
											   resp.status == 429 ||
											   strncmp(aerr.type, "Throttling", 10) == 0,
											   deadline_ms))
					continue;
			}
			if (resp.result != PGCK_HTTP_DONE)
				report_transport_failure(source, &resp);
			ereport(ERROR,
					(errcode(strcmp(aerr.type, "AccessDenied") == 0 ?
							 PGCK_ERRCODE_PRIVILEGE : PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail_internal("STS returned HTTP %ld %s: %s (request id %s).",
										resp.status,
										aerr.type[0] ? aerr.type : "(no error code)",
										aerr.message[0] ? aerr.message : "(no message)",
										resp.request_id[0] ? resp.request_id : "none")));
		}
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		explicit_bzero(body.data, body.maxlen);
		pfree(body.data);
		pgck_kms_wipe_pfree(token);
	}
	PG_END_TRY();
}

/* ------------------------------------------------------------------
 * container endpoint (ECS, EKS Pod Identity)
 * ------------------------------------------------------------------ */

static void
fetch_container(double deadline_ms, PgckKjCredentials *out)
{
	const char *source = "the container credentials endpoint";
	const char *rel = pgck_aws_getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = pgck_aws_getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	char	   *url;
	char	   *volatile token = NULL;
	char	   *volatile auth_header = NULL;
	const char *headers[1];
	int			nheaders = 0;
	PgckHttpResponse resp;
	int			attempt;

	if (rel != NULL)
	{
		/*
		 * PGCK_TEST_ECS_HOST_URL stands in for the ECS agent's fixed address
		 * in tests (a loopback emulator); it grants nothing that
		 * AWS_CONTAINER_CREDENTIALS_FULL_URI in the same environment would not.
		 */
		const char *host = pgck_aws_getenv("PGCK_TEST_ECS_HOST_URL");

		if (rel[0] != '/')
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with \"/\"")));
		url = psprintf("%s%s", host != NULL ? host : ECS_HOST_URL, rel);
	}
	else
		url = pstrdup(full);
	{
		PgckHttpUrl parsed;

		pgck_http_parse_url(url, PGCK_HTTP_PLAIN_METADATA,
							rel != NULL ? "container credentials endpoint" :
							"AWS_CONTAINER_CREDENTIALS_FULL_URI", &parsed);
	}

	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		/* read after the setjmp, so that no longjmp can clobber them */
		const char *token_file = pgck_aws_getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
		const char *token_env = pgck_aws_getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");

		if (token_file != NULL)
		{
			/* re-read on every fetch: it rotates */
			token = pgck_kms_read_secret_file(token_file, MAX_TOKEN_FILE, 0,
									 "container authorization token file");
			trim_in_place(token);
		}
		else if (token_env != NULL)
			token = pstrdup(token_env);
		if (token != NULL)
		{
			if (strpbrk(token, "\r\n") != NULL)
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
						 errmsg("could not obtain AWS credentials from %s", source),
						 errdetail("The container authorization token contains a line break.")));
			auth_header = pgck_http_header_line("Authorization", token);
			headers[nheaders++] = auth_header;
		}

		for (attempt = 1;; attempt++)
		{
			PgckKjError perr;
			PgckKjAwsError aerr;

			pgck_http_response_free(&resp);
			fetch(PGCK_HTTP_GET, url, headers, nheaders, NULL, 0, PGCK_HTTP_PLAIN_METADATA,
				  INT_MAX, CONTAINER_TOTAL_MS, deadline_ms, source, &resp);
			if (resp.result == PGCK_HTTP_DONE && resp.status == 200)
			{
				if (!pgck_kj_parse_container_credentials(resp.body, resp.body_len, out, &perr))
					report_parse_failure(source, &perr);
				break;
			}
			if (attempt < CONTAINER_ATTEMPTS && retryable(&resp, NULL))
			{
				if (pgck_kms_wait_before_retry(PGCK_OP_CREDENTIALS, attempt,
											   resp.status == 429, deadline_ms))
					continue;
			}
			if (resp.result != PGCK_HTTP_DONE)
				report_transport_failure(source, &resp);
			pgck_kj_parse_error(NULL, resp.body, resp.body_len, &aerr);
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail_internal("The endpoint returned HTTP %ld%s%s%s%s.",
										resp.status,
										aerr.type[0] ? " " : "", aerr.type,
										aerr.message[0] ? ": " : "", aerr.message)));
		}
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		pgck_kms_wipe_pfree(auth_header);
		pgck_kms_wipe_pfree(token);
	}
	PG_END_TRY();
}

/* ------------------------------------------------------------------
 * EC2 instance metadata (IMDSv2)
 * ------------------------------------------------------------------ */

static char *
imds_base_url(void)
{
	const char *e = pgck_aws_getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	const char *mode = pgck_aws_getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
	char	   *url;
	size_t		len;

	if (e != NULL)
		url = pstrdup(e);
	else if (mode != NULL && pg_strcasecmp(mode, "IPv6") == 0)
		url = pstrdup(IMDS_URL_IPV6);
	else
		url = pstrdup(IMDS_URL_IPV4);
	len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	{
		PgckHttpUrl parsed;

		pgck_http_parse_url(url, PGCK_HTTP_PLAIN_METADATA,
							e != NULL ? "AWS_EC2_METADATA_SERVICE_ENDPOINT" : "instance metadata",
							&parsed);
	}
	return url;
}

/*
 * Fetch (or reuse) the IMDSv2 session token.  Returns false when the
 * service cannot be reached at all; sets imds_token NULL for an IMDSv1
 * fallback (the token PUT answered 403/404/405 and v1 is not disabled).
 */
static bool
imds_get_token(const char *base, double deadline_ms, const char *source)
{
	static const char *const headers[] = {
		"X-aws-ec2-metadata-token-ttl-seconds: 21600",
	};
	PgckHttpResponse resp;
	char	   *url;
	volatile bool reachable = true;

	if (imds_token != NULL && pgck_http_now_ms() < imds_token_expires_ms)
		return true;
	free_imds_token();
	url = psprintf("%s/latest/api/token", base);
	fetch(PGCK_HTTP_PUT, url, headers, lengthof(headers), NULL, 0, PGCK_HTTP_PLAIN_METADATA,
		  IMDS_CONNECT_MS, IMDS_TOTAL_MS, deadline_ms, source, &resp);
	PG_TRY();
	{
		if (resp.result != PGCK_HTTP_DONE)
			reachable = false;
		else if (resp.status == 200)
		{
			char	   *t = pnstrdup(resp.body, Min(resp.body_len, 1024));

			trim_in_place(t);
			if (t[0] == '\0' || !is_token_text(t))
			{
				pgck_kms_wipe_pfree(t);
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
						 errmsg("could not obtain AWS credentials from %s", source),
						 errdetail("The IMDSv2 session token is malformed.")));
			}
			imds_token = malloc_strdup_or_error(t);
			pgck_kms_wipe_pfree(t);
			/* a little before the service forgets it */
			imds_token_expires_ms = pgck_http_now_ms() + (IMDS_TOKEN_TTL_SECS - 60) * 1000.0;
		}
		else if ((resp.status == 403 || resp.status == 404 || resp.status == 405) &&
				 !env_is_true("AWS_EC2_METADATA_V1_DISABLED"))
			imds_token = NULL;	/* IMDSv1 */
		else
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("The IMDSv2 token request returned HTTP %ld.", resp.status)));
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
	return reachable;
}

/* GET a metadata path with the session token; the caller frees resp. */
static void
imds_get(const char *base, const char *path, double deadline_ms, const char *source,
		 PgckHttpResponse *resp)
{
	char	   *url = psprintf("%s%s", base, path);
	char	   *header = NULL;
	const char *headers[1];
	int			nheaders = 0;

	if (imds_token != NULL)
	{
		header = pgck_http_header_line("X-aws-ec2-metadata-token", imds_token);
		headers[nheaders++] = header;
	}
	PG_TRY();
	{
		fetch(PGCK_HTTP_GET, url, headers, nheaders, NULL, 0, PGCK_HTTP_PLAIN_METADATA,
			  IMDS_CONNECT_MS, IMDS_TOTAL_MS, deadline_ms, source, resp);
	}
	PG_FINALLY();
	{
		pgck_kms_wipe_pfree(header);
	}
	PG_END_TRY();
	if (resp->result != PGCK_HTTP_DONE)
	{
		pgck_http_response_free(resp);
		report_transport_failure(source, resp);
	}
}

static bool
valid_role_name(const char *s)
{
	size_t		len = strlen(s);

	if (len < 1 || len > 128)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && strchr("+=,.@_-", *s) == NULL)
			return false;
	return true;
}

/* false when IMDS cannot be reached (not on EC2) */
static bool
fetch_imds(double deadline_ms, PgckKjCredentials *out)
{
	const char *source = "EC2 instance metadata (IMDS)";
	const char *base_path = "/latest/meta-data/iam/security-credentials/";
	char	   *base = imds_base_url();
	char	   *role = NULL;
	PgckHttpResponse resp;
	int			round;

	for (round = 0; round < 2; round++)
	{
		if (!imds_get_token(base, deadline_ms, source))
			return false;

		imds_get(base, base_path, deadline_ms, source, &resp);
		if (resp.status == 401 && round == 0)
		{
			/* the session token expired: get a new one */
			pgck_http_response_free(&resp);
			free_imds_token();
			continue;
		}
		if (resp.status == 404)
		{
			pgck_http_response_free(&resp);
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("No IAM role is attached to this instance.")));
		}
		if (resp.status != 200)
		{
			long		status = resp.status;

			pgck_http_response_free(&resp);
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("Listing the instance role returned HTTP %ld.", status)));
		}
		role = pnstrdup(resp.body, Min(resp.body_len, 1024));
		pgck_http_response_free(&resp);
		/* the first line names the role */
		role[strcspn(role, "\r\n")] = '\0';
		trim_in_place(role);
		if (!valid_role_name(role))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("The instance role name is malformed.")));

		imds_get(base, psprintf("%s%s", base_path, role), deadline_ms, source, &resp);
		if (resp.status == 401 && round == 0)
		{
			pgck_http_response_free(&resp);
			free_imds_token();
			continue;
		}
		break;
	}
	PG_TRY();
	{
		PgckKjError perr;

		if (resp.status != 200)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("Fetching the credentials of role \"%s\" returned HTTP %ld.",
							   role ? role : "", resp.status)));
		if (!pgck_kj_parse_imds_credentials(resp.body, resp.body_len, out, &perr))
			report_parse_failure(source, &perr);
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
	return true;
}

/* ------------------------------------------------------------------
 * the chain
 * ------------------------------------------------------------------ */

/* Static keys from env or a profile into out (malloc'd). */
static void
take_static(const char *akid, const char *secret, const char *token, const char *where,
			PgckKjCredentials *out)
{
	if (strlen(akid) > PGCK_KJ_MAX_CRED_FIELD || strlen(secret) > PGCK_KJ_MAX_CRED_FIELD ||
		(token != NULL && strlen(token) > PGCK_KJ_MAX_SESSION_TOKEN) ||
		!is_token_text(akid) || !is_token_text(secret) ||
		(token != NULL && !is_token_text(token)))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS credentials in %s", where),
				 errdetail("Access key id, secret access key and session token must be non-blank printable ASCII of a sensible length.")));
	memset(out, 0, sizeof(*out));
	out->access_key_id = malloc_strdup_or_error(akid);
	out->secret_access_key = strdup(secret);
	out->session_token = token != NULL ? strdup(token) : NULL;
	if (out->secret_access_key == NULL || (token != NULL && out->session_token == NULL))
	{
		pgck_kj_credentials_free(out);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
}

static bool
from_profile_static(const PgckIniProfile *p, const char *where, PgckKjCredentials *out)
{
	const char *akid = ini_get(p, "aws_access_key_id");
	const char *secret = ini_get(p, "aws_secret_access_key");
	const char *token = ini_get(p, "aws_session_token");

	if (token == NULL)
		token = ini_get(p, "aws_security_token");
	if (akid == NULL && secret == NULL)
		return false;
	if (akid == NULL || secret == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS credentials in %s", where),
				 errdetail("The profile has only one of aws_access_key_id and aws_secret_access_key.")));
	take_static(akid, secret, token, where, out);
	return true;
}

/*
 * Resolve the chain into *out.  Returns the static name of the source and
 * sets *refreshable for credentials that come from a refreshable source.
 */
static const char *
resolve_chain(double deadline_ms, PgckKjCredentials *out, bool *refreshable)
{
	char	   *profile = pgck_aws_profile_name();
	bool		explicit_profile = pgck_aws_profile != NULL && pgck_aws_profile[0] != '\0';
	const char *akid;
	const char *secret;
	char	   *cred_path;
	char	   *config_path;
	PgckIniProfile cred_ini;
	PgckIniProfile config_ini;
	const char *source = NULL;
	const char *role_arn;
	const char *token_file;
	bool		imds_disabled;

	memset(out, 0, sizeof(*out));
	*refreshable = false;

	/* 1. environment */
	akid = pgck_aws_getenv("AWS_ACCESS_KEY_ID");
	secret = pgck_aws_getenv("AWS_SECRET_ACCESS_KEY");
	if (!explicit_profile && (akid != NULL || secret != NULL))
	{
		const char *token = pgck_aws_getenv("AWS_SESSION_TOKEN");

		if (akid == NULL || secret == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("invalid AWS credentials in the environment"),
					 errdetail("Only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set.")));
		if (token == NULL)
			token = pgck_aws_getenv("AWS_SECURITY_TOKEN");
		take_static(akid, secret, token, "the environment", out);
		return "environment";
	}

	/* 2. shared credentials and config files */
	cred_path = aws_file_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
	config_path = aws_file_path("AWS_CONFIG_FILE", ".aws/config");
	memset(&cred_ini, 0, sizeof(cred_ini));
	memset(&config_ini, 0, sizeof(config_ini));
	PG_TRY();
	{
		ini_load(cred_path, profile, false, &cred_ini);
		ini_load(config_path, profile, true, &config_ini);

		if (from_profile_static(&cred_ini, "the AWS shared credentials file", out))
			source = "shared credentials file";
		else if (from_profile_static(&config_ini, "the AWS config file", out))
			source = "config file";
		else if ((role_arn = ini_get(&config_ini, "role_arn")) != NULL &&
				 (token_file = ini_get(&config_ini, "web_identity_token_file")) != NULL)
		{
			fetch_web_identity(role_arn, token_file, ini_get(&config_ini, "role_session_name"),
							   deadline_ms, out);
			source = "web identity (profile)";
			*refreshable = true;
		}
		else if (ini_get(&config_ini, "role_arn") != NULL ||
				 ini_get(&config_ini, "credential_process") != NULL ||
				 ini_get(&config_ini, "sso_start_url") != NULL ||
				 ini_get(&config_ini, "sso_session") != NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("AWS profile \"%s\" uses a credential source pgcrypt_kms does not support", profile),
					 errdetail("Supported in profiles: static keys, and role_arn with web_identity_token_file."),
					 errhint("Use static keys, web identity, the container endpoint or instance metadata.")));
		else if (explicit_profile && !cred_ini.found && !config_ini.found)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("AWS profile \"%s\" was not found", profile),
					 errdetail("Looked in \"%s\" and \"%s\".",
							   cred_path ? cred_path : "(no home directory)",
							   config_path ? config_path : "(no home directory)")));
	}
	PG_FINALLY();
	{
		ini_free(&cred_ini);
		ini_free(&config_ini);
	}
	PG_END_TRY();
	if (source != NULL)
		return source;

	/* 3. web identity from the environment */
	role_arn = pgck_aws_getenv("AWS_ROLE_ARN");
	token_file = pgck_aws_getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	if (role_arn != NULL && token_file != NULL)
	{
		fetch_web_identity(role_arn, token_file, pgck_aws_getenv("AWS_ROLE_SESSION_NAME"),
						   deadline_ms, out);
		*refreshable = true;
		return "web identity";
	}

	/* 4. container endpoint */
	if (pgck_aws_getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != NULL ||
		pgck_aws_getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != NULL)
	{
		fetch_container(deadline_ms, out);
		*refreshable = true;
		return "container credentials endpoint";
	}

	/* 5. instance metadata */
	imds_disabled = env_is_true("AWS_EC2_METADATA_DISABLED");
	if (!imds_disabled && fetch_imds(deadline_ms, out))
	{
		*refreshable = true;
		return "instance metadata";
	}

	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("no AWS credentials found"),
			 errdetail("Tried %sthe shared files of profile \"%s\", web identity, the container endpoint%s.",
					   explicit_profile ? "" : "the environment, ",
					   profile,
					   imds_disabled ? "" : " and instance metadata (not reachable)"),
			 errhint("Give the server process AWS credentials, for example AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in its environment or a profile in ~/.aws/credentials of its user.")));
	return NULL;				/* keep compiler quiet */
}

static void
store(PgckKjCredentials *c, const char *source, bool refreshable, const char *profile)
{
	pgck_kj_credentials_free(&cached);
	cached = *c;
	memset(c, 0, sizeof(*c));
	cached_view.access_key_id = cached.access_key_id;
	cached_view.secret_access_key = cached.secret_access_key;
	cached_view.session_token = cached.session_token;
	cached_view.expiration = cached.expiration;
	cached_view.source = source;
	cached_valid = true;
	cached_refreshable = refreshable;
	cached_at_ms = pgck_http_now_ms();
	strlcpy(cached_profile, profile, sizeof(cached_profile));
}

static void
resolve_and_store(double deadline_ms, const char *profile)
{
	PgckKjCredentials fresh;
	const char *source;
	bool		refreshable;

	memset(&fresh, 0, sizeof(fresh));
	PG_TRY();
	{
		source = resolve_chain(deadline_ms, &fresh, &refreshable);
		store(&fresh, source, refreshable, profile);
	}
	PG_CATCH();
	{
		pgck_kj_credentials_free(&fresh);
		PG_RE_THROW();
	}
	PG_END_TRY();
	elog(DEBUG1, "pgcrypt_kms: AWS credentials from %s%s", cached_view.source,
		 cached_view.expiration != 0 ? " (temporary)" : "");
}

const PgckAwsCredentials *
pgck_aws_credentials_get(double deadline_ms)
{
	char	   *profile = pgck_aws_profile_name();
	time_t		now = time(NULL);

	if (!exit_callback_registered)
	{
		on_proc_exit(credentials_atexit, (Datum) 0);
		exit_callback_registered = true;
	}

	if (cached_valid && strcmp(profile, cached_profile) != 0)
		pgck_aws_credentials_invalidate();

	if (cached_valid)
	{
		if (cached.expiration == 0)
		{
			if (pgck_http_now_ms() - cached_at_ms < STATIC_RECHECK_MS)
				return &cached_view;
		}
		else if (cached.expiration - now > REFRESH_ADVISORY_SECS)
			return &cached_view;
		else if (cached.expiration - now > REFRESH_MANDATORY_SECS)
		{
			/* advisory refresh: a failure keeps the current credentials */
			MemoryContext oldcxt = CurrentMemoryContext;

			PG_TRY();
			{
				resolve_and_store(deadline_ms, profile);
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(oldcxt);
				edata = CopyErrorData();
				if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED || edata->elevel > ERROR)
					PG_RE_THROW();
				FlushErrorState();
				ereport(LOG,
						(errmsg("pgcrypt_kms: could not refresh AWS credentials, keeping the current ones until they expire"),
						 errdetail_internal("%s", edata->message)));
				FreeErrorData(edata);
			}
			PG_END_TRY();
			return &cached_view;
		}
	}
	resolve_and_store(deadline_ms, profile);
	return &cached_view;
}

void
pgck_aws_credentials_invalidate(void)
{
	pgck_kj_credentials_free(&cached);
	memset(&cached_view, 0, sizeof(cached_view));
	cached_valid = false;
	cached_refreshable = false;
}

bool
pgck_aws_credentials_refreshable(void)
{
	return cached_valid && cached_refreshable;
}
