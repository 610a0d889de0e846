/*-------------------------------------------------------------------------
 *
 * aws_credentials.c
 *		The SDK credential chain: environment, the profile (assume role,
 *		web identity, SSO, static keys, credential_process), container
 *		endpoint, EC2 IMDSv2.  See aws_credentials.h for the order and the
 *		refresh rules.
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
 *	- A credential_process child never outlives the call that started it:
 *	  it is killed (SIGKILL) and reaped on timeout, cancel and any error,
 *	  and runs no shell; its stderr is counted, never reported.
 *	- The SSO access token and the AssumeRole signature are wiped like the
 *	  other secrets; the SSO token cache must be private to the server's
 *	  user.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <pwd.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <openssl/evp.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"
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
#include "sigv4.h"

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
								resp->error_public),
			 /* curl's text names the endpoint: the server log only */
			 errdetail_log("%s: %s.", pgck_http_result_name(resp->result),
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

typedef enum StsAction
{
	STS_WEB_IDENTITY,			/* AssumeRoleWithWebIdentity, unsigned */
	STS_ASSUME_ROLE				/* AssumeRole, SigV4-signed */
} StsAction;

static void sts_signed_post(const char *url, const char *region, const PgckKjCredentials *src,
							const char *body, double deadline_ms, const char *source,
							PgckHttpResponse *resp);
static void sts_call(StsAction action, const char *url, const char *region,
					 const PgckKjCredentials *src, const char *body, const char *role_arn,
					 double deadline_ms, const char *source, PgckHttpResponse *resp,
					 PgckKjCredentials *out);

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
	PgckHttpResponse resp;

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

		sts_call(STS_WEB_IDENTITY, url, NULL, NULL, body.data, role_arn, deadline_ms, source,
				 &resp, out);
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
 * profiles: the keys of one profile from both shared files
 * ------------------------------------------------------------------ */

#define MAX_ROLE_CHAIN			5	/* source_profile hops */
#define MAX_PROCESS_OUTPUT		(64 * 1024)
#define MAX_SSO_CACHE_FILE		(64 * 1024)

typedef struct PgckAwsProfile
{
	const char *name;
	PgckIniProfile cred;		/* from the shared credentials file */
	PgckIniProfile config;		/* from the config file */
} PgckAwsProfile;

static PgckAwsProfile *
profile_load(const char *name)
{
	PgckAwsProfile *p = palloc0(sizeof(PgckAwsProfile));
	char	   *cred_path = aws_file_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
	char	   *config_path = aws_file_path("AWS_CONFIG_FILE", ".aws/config");

	p->name = pstrdup(name);
	ini_load(cred_path, name, false, &p->cred);
	PG_TRY();
	{
		ini_load(config_path, name, true, &p->config);
	}
	PG_CATCH();
	{
		ini_free(&p->cred);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return p;
}

static void
profile_free(PgckAwsProfile *p)
{
	if (p == NULL)
		return;
	ini_free(&p->cred);
	ini_free(&p->config);
	pfree(p);
}

/*
 * A key of the profile; the credentials file wins, as botocore merges them.
 * Not inlined: callers use it between setjmp and longjmp (PG_TRY), where an
 * inlined local trips -Wclobbered.
 */
static pg_noinline const char *
profile_get(const PgckAwsProfile *p, const char *key)
{
	const char *v = ini_get(&p->cred, key);

	return v != NULL ? v : ini_get(&p->config, key);
}

static bool
profile_has_static(const PgckAwsProfile *p)
{
	return profile_get(p, "aws_access_key_id") != NULL ||
		profile_get(p, "aws_secret_access_key") != NULL;
}

/* ------------------------------------------------------------------
 * STS AssumeRole, signed with the source credentials
 * ------------------------------------------------------------------ */

static bool
valid_external_id(const char *s)
{
	size_t		len = strlen(s);

	if (len < 2 || len > 1224)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && strchr("+=,.@:/-_", *s) == NULL)
			return false;
	return true;
}

/*
 * One SigV4-signed (service sts) form POST to url; the caller frees resp.
 * Header lines holding the signature or the session token are wiped.
 */
static void
sts_signed_post(const char *url, const char *region, const PgckKjCredentials *src,
				const char *body, double deadline_ms, const char *source,
				PgckHttpResponse *resp)
{
	PgckHttpUrl parsed;
	char		amz_date[17];
	PgckSigv4Header sh[4];
	int			nsh = 0;
	PgckSigv4Request sreq;
	PgckSigv4Params params;
	PgckSigv4Result res;
	const char *lines[5];
	int			nlines = 0;
	char	   *host_line;
	char	   *date_line;
	char	   *volatile auth_line = NULL;
	char	   *volatile token_line = NULL;
	static const char content_type[] = "application/x-www-form-urlencoded; charset=utf-8";

	pgck_http_parse_url(url, PGCK_HTTP_PLAIN_LOOPBACK, "STS endpoint", &parsed);
	pgck_sigv4_amz_date(time(NULL), amz_date);
	sh[nsh].name = "content-type";
	sh[nsh++].value = content_type;
	sh[nsh].name = "host";
	sh[nsh++].value = parsed.host_header;
	sh[nsh].name = "x-amz-date";
	sh[nsh++].value = amz_date;
	if (src->session_token != NULL)
	{
		sh[nsh].name = "x-amz-security-token";
		sh[nsh++].value = src->session_token;
	}
	memset(&sreq, 0, sizeof(sreq));
	sreq.method = "POST";
	sreq.path = parsed.path;
	sreq.query = "";
	sreq.headers = sh;
	sreq.nheaders = nsh;
	sreq.payload = (const unsigned char *) body;
	sreq.payload_len = strlen(body);
	params.access_key_id = src->access_key_id;
	params.secret_access_key = src->secret_access_key;
	params.region = region;
	params.service = "sts";
	params.amz_date = amz_date;
	memset(&res, 0, sizeof(res));
	if (amz_date[0] == '\0' || pgck_sigv4_sign(&sreq, &params, &res) != 0)
	{
		pgck_sigv4_result_free(&res);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("The STS request could not be signed.")));
	}
	host_line = psprintf("Host: %s", parsed.host_header);
	date_line = psprintf("X-Amz-Date: %s", amz_date);
	PG_TRY();
	{
		auth_line = psprintf("Authorization: %s", res.authorization);
		pgck_sigv4_result_free(&res);
		if (src->session_token != NULL)
			token_line = pgck_http_header_line("X-Amz-Security-Token", src->session_token);
		lines[nlines++] = "Content-Type: application/x-www-form-urlencoded; charset=utf-8";
		lines[nlines++] = host_line;
		lines[nlines++] = date_line;
		if (token_line != NULL)
			lines[nlines++] = token_line;
		lines[nlines++] = auth_line;
		fetch(PGCK_HTTP_POST, url, lines, nlines, body, strlen(body), PGCK_HTTP_PLAIN_LOOPBACK,
			  INT_MAX, INT_MAX, deadline_ms, source, resp);
	}
	PG_FINALLY();
	{
		pgck_sigv4_result_free(&res);
		pgck_kms_wipe_pfree(auth_line);
		pgck_kms_wipe_pfree(token_line);
	}
	PG_END_TRY();
	pfree(host_line);
	pfree(date_line);
}

/*
 * One STS call (AssumeRoleWithWebIdentity unsigned, AssumeRole signed with
 * src for region) with the body given, retried on transient errors within
 * deadline_ms, its credentials parsed into *out.  The caller frees *resp (in
 * its PG_FINALLY, with the body it may have to wipe).
 */
static void
sts_call(StsAction action, const char *url, const char *region, const PgckKjCredentials *src,
		 const char *body, const char *role_arn, double deadline_ms, const char *source,
		 PgckHttpResponse *resp, PgckKjCredentials *out)
{
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
		"Accept: text/xml",
	};
	int			max_attempts = Max(pgck_kms_max_attempts, 1);
	int			attempt;

	for (attempt = 1;; attempt++)
	{
		PgckKjAwsError aerr;
		PgckKjError perr;
		bool		parsed;

		pgck_http_response_free(resp);
		if (action == STS_ASSUME_ROLE)
			sts_signed_post(url, region, src, body, deadline_ms, source, resp);
		else
			fetch(PGCK_HTTP_POST, url, headers, lengthof(headers), body, strlen(body),
				  PGCK_HTTP_PLAIN_LOOPBACK, INT_MAX, INT_MAX, deadline_ms, source, resp);
		if (resp->result == PGCK_HTTP_DONE && resp->status == 200)
		{
			parsed = action == STS_ASSUME_ROLE ?
				pgck_kj_parse_sts_assume_role(resp->body, resp->body_len, out, &perr) :
				pgck_kj_parse_sts_credentials(resp->body, resp->body_len, out, &perr);
			if (!parsed)
				report_parse_failure(source, &perr);
			return;
		}
		memset(&aerr, 0, sizeof(aerr));
		if (resp->result == PGCK_HTTP_DONE)
			pgck_kj_parse_sts_error(resp->body, resp->body_len, &aerr);
		if (attempt < max_attempts && retryable(resp, aerr.type) &&
			pgck_kms_wait_before_retry(PGCK_OP_CREDENTIALS, attempt,
									   resp->status == 429 ||
									   strncmp(aerr.type, "Throttling", 10) == 0,
									   deadline_ms))
			continue;
		if (resp->result != PGCK_HTTP_DONE)
			report_transport_failure(source, resp);
		ereport(ERROR,
				(errcode(strcmp(aerr.type, "AccessDenied") == 0 ?
						 PGCK_ERRCODE_PRIVILEGE : PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail_internal("STS %s of %s returned HTTP %ld %s: %s (request id %s).",
									action == STS_ASSUME_ROLE ? "AssumeRole" : "AssumeRoleWithWebIdentity",
									role_arn, resp->status,
									aerr.type[0] ? aerr.type : "(no error code)",
									aerr.message[0] ? aerr.message : "(no message)",
									resp->request_id[0] ? resp->request_id : "none")));
	}
}

/*
 * STS AssumeRole of role_arn with the source credentials src, into *out.
 * external_id, session_name and duration may be NULL.
 */
static void
fetch_assume_role(const PgckKjCredentials *src, const char *profile, const char *role_arn,
				  const char *session_name, const char *external_id, const char *duration,
				  double deadline_ms, PgckKjCredentials *out)
{
	char	   *source = psprintf("assume role (profile \"%s\")", profile);
	char	   *session;
	char	   *url;
	char	   *region;
	StringInfoData body;
	PgckHttpResponse resp;

	if (strlen(role_arn) < 20 || strlen(role_arn) > 2048)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("The role_arn has an invalid length.")));
	if (session_name != NULL && !valid_session_name(session_name))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS role session name \"%s\"", session_name),
				 errdetail("A session name has 2 to 64 letters, digits or characters of \"+=,.@_-\".")));
	if (external_id != NULL && !valid_external_id(external_id))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("The external_id must have 2 to 1224 letters, digits or characters of \"+=,.@:/-_\".")));
	if (duration != NULL &&
		(strspn(duration, "0123456789") != strlen(duration) || strlen(duration) > 5 ||
		 atoi(duration) < 900 || atoi(duration) > 43200))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("duration_seconds must be a whole number from 900 to 43200.")));
	session = session_name != NULL ? pstrdup(session_name)
		: psprintf("pgcrypt_kms-%d-%ld", MyProcPid, (long) time(NULL));
	url = sts_endpoint();
	region = pgck_aws_default_region();
	if (region == NULL || !pgck_aws_region_is_valid(region))
		region = "us-east-1";

	initStringInfo(&body);
	appendStringInfoString(&body, "Action=AssumeRole&Version=2011-06-15&RoleArn=");
	append_form_value(&body, role_arn);
	appendStringInfoString(&body, "&RoleSessionName=");
	append_form_value(&body, session);
	if (external_id != NULL)
	{
		appendStringInfoString(&body, "&ExternalId=");
		append_form_value(&body, external_id);
	}
	if (duration != NULL)
		appendStringInfo(&body, "&DurationSeconds=%s", duration);

	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		sts_call(STS_ASSUME_ROLE, url, region, src, body.data, role_arn, deadline_ms, source,
				 &resp, out);
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		pfree(body.data);
	}
	PG_END_TRY();
}

/* ------------------------------------------------------------------
 * credential_process
 * ------------------------------------------------------------------ */

/*
 * Split a credential_process command line into words as botocore does
 * (Python's shlex.split, POSIX mode): blanks separate words; '...' is
 * literal; in "..." a backslash escapes only \ and " (not $ or `, unlike a
 * shell); outside quotes a backslash escapes the next character.  No variable, glob or command substitution: no shell runs.
 * Returns a palloc'd NULL-terminated argv; ereports 22023 on an unclosed
 * quote or an empty command.
 */
static char **
split_command(const char *cmd, const char *profile)
{
	int			max = 4;
	int			n = 0;
	char	  **argv = palloc(sizeof(char *) * (max + 1));
	const char *p = cmd;
	StringInfoData word;

	initStringInfo(&word);
	for (;;)
	{
		bool		have = false;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		resetStringInfo(&word);
		while (*p != '\0' && *p != ' ' && *p != '\t')
		{
			have = true;
			if (*p == '\'')
			{
				const char *end = strchr(p + 1, '\'');

				if (end == NULL)
					goto unclosed;
				appendBinaryStringInfo(&word, p + 1, end - p - 1);
				p = end + 1;
			}
			else if (*p == '"')
			{
				for (p++; *p != '"'; p++)
				{
					if (*p == '\0')
						goto unclosed;
					if (*p == '\\' && (p[1] == '\\' || p[1] == '"'))
						p++;
					appendStringInfoChar(&word, *p);
				}
				p++;
			}
			else if (*p == '\\' && p[1] != '\0')
			{
				appendStringInfoChar(&word, p[1]);
				p += 2;
			}
			else
				appendStringInfoChar(&word, *p++);
		}
		if (have)
		{
			if (n == max)
			{
				max *= 2;
				argv = repalloc(argv, sizeof(char *) * (max + 1));
			}
			argv[n++] = pstrdup(word.data);
		}
	}
	argv[n] = NULL;
	if (n == 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" has an empty credential_process", profile)));
	return argv;

unclosed:
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
			 errmsg("AWS profile \"%s\" has a credential_process with an unclosed quote", profile)));
	return NULL;				/* keep compiler quiet */
}

/* Read what is available from a non-blocking pipe; false at EOF. */
static bool
drain_pipe(int fd, char *buf, size_t cap, size_t *len, size_t *discarded)
{
	for (;;)
	{
		char		scratch[4096];
		char	   *dst = buf != NULL && *len < cap ? buf + *len : scratch;
		size_t		room = buf != NULL && *len < cap ? cap - *len : sizeof(scratch);
		ssize_t		r = read(fd, dst, room);

		if (r > 0)
		{
			if (dst == scratch)
			{
				*discarded += r;
				explicit_bzero(scratch, r);
			}
			else
				*len += r;
			continue;
		}
		if (r == 0)
			return false;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK;
	}
}

/*
 * Run the profile's credential_process and parse its JSON (Version 1) into
 * *out.  The command runs with the server's environment and no shell, its
 * stdin is /dev/null, every descriptor of the backend but its stdout and
 * stderr pipes is closed in it.  Bounded by deadline_ms and interruptible:
 * the backend waits on its latch and the pipe, and kills the child (SIGKILL)
 * on cancel, timeout or any error.  Its stderr is read and counted, never
 * shown (it may echo secrets).
 */
static void
run_credential_process(const char *command, const char *profile, double deadline_ms,
					   PgckKjCredentials *out)
{
	char	   *source = psprintf("credential_process (profile \"%s\")", profile);
	char	  **argv = split_command(command, profile);
	int			outp[2] = {-1, -1};
	int			errp[2] = {-1, -1};
	volatile pid_t pid = -1;
	volatile bool reaped = false;
	char	   *buf = palloc0(MAX_PROCESS_OUTPUT + 1);
	size_t		len = 0;
	size_t		overflow = 0;
	size_t		err_bytes = 0;
	int			status = 0;

	(void) remaining_ms(deadline_ms, source);
	if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0)
	{
		int			save = errno;

		if (outp[0] >= 0)
		{
			close(outp[0]);
			close(outp[1]);
		}
		errno = save;
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("Could not create a pipe: %m.")));
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0)
	{
		/* the child: only async-signal-safe calls until exec */
		sigset_t	none;
		int			sig;
		int			devnull = open("/dev/null", O_RDONLY);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(126);
		if (close_range(3, ~0U, 0) != 0)
		{
			int			fd;

			for (fd = 3; fd < 65536; fd++)
				close(fd);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	close(outp[1]);
	close(errp[1]);
	if (pid < 0)
	{
		close(outp[0]);
		close(errp[0]);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("Could not start a process: %m.")));
	}
	PG_TRY();
	{
		bool		out_open = true;
		bool		err_open = true;
		PgckKjError perr;

		if (fcntl(outp[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(errp[0], F_SETFL, O_NONBLOCK) != 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("Could not set up its pipes: %m.")));
		for (;;)
		{
			double		left;
			int			rc;

			if (out_open)
				out_open = drain_pipe(outp[0], buf, MAX_PROCESS_OUTPUT, &len, &overflow);
			if (err_open)
				err_open = drain_pipe(errp[0], NULL, 0, &len, &err_bytes);
			if (overflow > 0)
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_KMS_FAILURE),
						 errmsg("could not obtain AWS credentials from %s", source),
						 errdetail("Its output exceeds %d bytes.", MAX_PROCESS_OUTPUT)));
			if (!out_open && !err_open)
			{
				pid_t		r = waitpid(pid, &status, WNOHANG);

				if (r == pid)
				{
					reaped = true;
					break;
				}
				if (r < 0 && errno != EINTR)
				{
					reaped = true;	/* nothing left to wait for */
					ereport(ERROR,
							(errcode(PGCK_ERRCODE_KMS_FAILURE),
							 errmsg("could not obtain AWS credentials from %s", source),
							 errdetail("Could not wait for it: %m.")));
				}
			}
			left = deadline_ms - pgck_http_now_ms();
			if (left < 1)
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_KMS_FAILURE),
						 errmsg("could not obtain AWS credentials from %s", source),
						 errdetail("It did not finish within pgcrypt_kms.kms_timeout; it was killed.")));
			if (out_open || err_open)
				rc = WaitLatchOrSocket(MyLatch,
									   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
									   WL_EXIT_ON_PM_DEATH,
									   out_open ? outp[0] : errp[0],
									   (long) Min(left, 100), PG_WAIT_EXTENSION);
			else
				rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   (long) Min(left, 10), PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (WIFSIGNALED(status))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("It was ended by signal %d; it wrote %zu bytes to standard error, not shown (they may hold secrets).",
							   WTERMSIG(status), err_bytes)));
		if (WEXITSTATUS(status) != 0)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("It exited with code %d%s; it wrote %zu bytes to standard error, not shown (they may hold secrets).",
							   WEXITSTATUS(status),
							   WEXITSTATUS(status) == 127 ? " (command not found)" : "",
							   err_bytes)));
		if (!pgck_kj_parse_process_credentials(buf, len, out, &perr))
			report_parse_failure(source, &perr);
	}
	PG_FINALLY();
	{
		if (!reaped && pid > 0)
		{
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		close(outp[0]);
		close(errp[0]);
		explicit_bzero(buf, MAX_PROCESS_OUTPUT + 1);
		pfree(buf);
	}
	PG_END_TRY();
}

/* ------------------------------------------------------------------
 * IAM Identity Center (SSO): cached token → GetRoleCredentials
 * ------------------------------------------------------------------ */

static char *
sso_portal_url(const char *region)
{
	const char *e = NULL;

	if (!env_is_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"))
	{
		e = pgck_aws_getenv("AWS_ENDPOINT_URL_SSO");
		if (e == NULL)
			e = pgck_aws_getenv("AWS_ENDPOINT_URL");
	}
	if (e != NULL)
	{
		size_t		len;
		char	   *url = pstrdup(e);

		len = strlen(url);
		while (len > 0 && url[len - 1] == '/')
			url[--len] = '\0';
		return url;
	}
	return psprintf("https://portal.sso.%s.%s", region, pgck_aws_dns_suffix(region));
}

static void
fetch_sso(const PgckAwsProfile *p, double deadline_ms, PgckKjCredentials *out)
{
	char	   *source = psprintf("SSO (profile \"%s\")", p->name);
	const char *session = profile_get(p, "sso_session");
	const char *account = profile_get(p, "sso_account_id");
	const char *role = profile_get(p, "sso_role_name");
	const char *start_url;
	const char *region;
	const char *cache_key;
	PgckIniProfile sess;
	char	   *login_hint;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char		hex[2 * EVP_MAX_MD_SIZE + 1];
	const char *home = home_dir();
	char	   *cache_path;
	char	   *volatile cache = NULL;
	char	   *volatile token = NULL;
	char	   *volatile header = NULL;
	char	   *url;
	StringInfoData ub;
	unsigned int i;
	PgckHttpResponse resp;

	memset(&sess, 0, sizeof(sess));
	if (session != NULL)
	{
		char	   *section = psprintf("sso-session %s", session);

		ini_load(aws_file_path("AWS_CONFIG_FILE", ".aws/config"), section, false, &sess);
		if (!sess.found)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("AWS profile \"%s\" names sso_session \"%s\", which the config file does not have",
							p->name, session)));
		start_url = ini_get(&sess, "sso_start_url");
		region = ini_get(&sess, "sso_region");
		cache_key = session;
		login_hint = psprintf("Run \"aws sso login --sso-session %s\" as the server's operating system user.", session);
	}
	else
	{
		start_url = profile_get(p, "sso_start_url");
		region = profile_get(p, "sso_region");
		cache_key = start_url;
		login_hint = psprintf("Run \"aws sso login --profile %s\" as the server's operating system user.", p->name);
	}
	if (start_url == NULL || region == NULL || account == NULL || role == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" has an incomplete SSO configuration", p->name),
				 errdetail("It needs sso_start_url and sso_region (in the profile or its sso-session section), sso_account_id and sso_role_name.")));
	if (!pgck_aws_region_is_valid(region))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS region \"%s\"", region)));
	if (strlen(account) != 12 || strspn(account, "0123456789") != 12 || !valid_role_name(role))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" has an invalid sso_account_id or sso_role_name", p->name)));
	if (home == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not obtain AWS credentials from %s", source),
				 errdetail("The server process has no home directory for the SSO token cache.")));

	/* botocore's cache file name: SHA-1 of the session name, else of the start URL */
	if (EVP_Digest(cache_key, strlen(cache_key), digest, &dlen, EVP_sha1(), NULL) != 1)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not compute the SSO token cache file name")));
	for (i = 0; i < dlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	cache_path = psprintf("%s/.aws/sso/cache/%s.json", home, hex);
	url = sso_portal_url(region);
	initStringInfo(&ub);
	appendStringInfo(&ub, "%s/federation/credentials?account_id=", url);
	append_form_value(&ub, account);
	appendStringInfoString(&ub, "&role_name=");
	append_form_value(&ub, role);
	{
		PgckHttpUrl parsed;

		pgck_http_parse_url(ub.data, PGCK_HTTP_PLAIN_LOOPBACK, "SSO portal endpoint", &parsed);
	}

	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		PgckKjError perr;
		time_t		expires_at;
		char	   *t;
		int			attempt;
		const char *headers[1];

		cache = pgck_kms_read_secret_file(cache_path, MAX_SSO_CACHE_FILE,
										  PGCK_SECRET_MISSING_OK | PGCK_SECRET_PRIVATE,
										  "AWS SSO token cache file");
		if (cache == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("There is no cached SSO token (\"%s\").", cache_path),
					 errhint("%s", login_hint)));
		if (!pgck_kj_parse_sso_token(cache, strlen(cache), &t, &expires_at, &perr))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("The SSO token cache file \"%s\" is malformed: %s.", cache_path,
							   perr.detail)));
		token = pstrdup(t);
		explicit_bzero(t, strlen(t));
		free(t);
		if (expires_at <= time(NULL))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail("The cached SSO token expired; the server cannot renew it on its own."),
					 errhint("%s", login_hint)));
		header = pgck_http_header_line("x-amz-sso_bearer_token", token);
		headers[0] = header;
		for (attempt = 1;; attempt++)
		{
			PgckKjAwsError aerr;

			pgck_http_response_free(&resp);
			fetch(PGCK_HTTP_GET, ub.data, headers, 1, NULL, 0, PGCK_HTTP_PLAIN_LOOPBACK,
				  INT_MAX, INT_MAX, deadline_ms, source, &resp);
			if (resp.result == PGCK_HTTP_DONE && resp.status == 200)
			{
				if (!pgck_kj_parse_sso_role_credentials(resp.body, resp.body_len, out, &perr))
					report_parse_failure(source, &perr);
				break;
			}
			if (attempt < Max(pgck_kms_max_attempts, 1) && retryable(&resp, NULL) &&
				pgck_kms_wait_before_retry(PGCK_OP_CREDENTIALS, attempt, resp.status == 429,
										   deadline_ms))
				continue;
			if (resp.result != PGCK_HTTP_DONE)
				report_transport_failure(source, &resp);
			pgck_kj_parse_error(resp.error_type, resp.body, resp.body_len, &aerr);
			ereport(ERROR,
					(errcode(resp.status == 403 ? PGCK_ERRCODE_PRIVILEGE : PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("could not obtain AWS credentials from %s", source),
					 errdetail_internal("GetRoleCredentials returned HTTP %ld%s%s%s%s (request id %s).",
										resp.status,
										aerr.type[0] ? " " : "", aerr.type,
										aerr.message[0] ? ": " : "", aerr.message,
										resp.request_id[0] ? resp.request_id : "none"),
					 resp.status == 401 ? errhint("%s", login_hint) : 0));
		}
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		pgck_kms_wipe_pfree(header);
		pgck_kms_wipe_pfree(token);
		pgck_kms_wipe_pfree(cache);
		ini_free(&sess);
	}
	PG_END_TRY();
}

/* ------------------------------------------------------------------
 * a profile's credentials
 * ------------------------------------------------------------------ */

static const char *profile_source(const char *name, int depth, const char **visited,
								  bool env_web_identity, double deadline_ms,
								  PgckKjCredentials *out, bool *refreshable, bool *found);

static void take_static(const char *akid, const char *secret, const char *token,
						const char *where, PgckKjCredentials *out);
static bool from_profile_static(const PgckIniProfile *p, const char *where,
								PgckKjCredentials *out);

/* The credentials a credential_source names, into *out. */
static void
credential_source_credentials(const char *cs, const char *profile, double deadline_ms,
							  PgckKjCredentials *out)
{
	if (strcmp(cs, "Environment") == 0)
	{
		const char *akid = pgck_aws_getenv("AWS_ACCESS_KEY_ID");
		const char *secret = pgck_aws_getenv("AWS_SECRET_ACCESS_KEY");
		const char *token = pgck_aws_getenv("AWS_SESSION_TOKEN");

		if (akid == NULL || secret == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("no AWS credentials found for credential_source Environment of profile \"%s\"", profile),
					 errdetail("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set.")));
		take_static(akid, secret, token, "the environment", out);
	}
	else if (strcmp(cs, "EcsContainer") == 0)
	{
		if (pgck_aws_getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") == NULL &&
			pgck_aws_getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") == NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("no AWS credentials found for credential_source EcsContainer of profile \"%s\"", profile),
					 errdetail("Neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set.")));
		fetch_container(deadline_ms, out);
	}
	else if (strcmp(cs, "Ec2InstanceMetadata") == 0)
	{
		if (!fetch_imds(deadline_ms, out))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("no AWS credentials found for credential_source Ec2InstanceMetadata of profile \"%s\"", profile),
					 errdetail("The instance metadata service could not be reached.")));
	}
	else
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" has an unknown credential_source \"%s\"", profile, cs),
				 errhint("Use Environment, Ec2InstanceMetadata or EcsContainer.")));
}

/* role_arn with source_profile or credential_source: AssumeRole into *out. */
static void
assume_role_profile(const PgckAwsProfile *p, int depth, const char **visited,
					double deadline_ms, PgckKjCredentials *out)
{
	const char *source_profile = profile_get(p, "source_profile");
	const char *cs = profile_get(p, "credential_source");
	PgckKjCredentials src;

	if (profile_get(p, "mfa_serial") != NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" requires an MFA code (mfa_serial), which the database server cannot prompt for", p->name),
				 errhint("Give the database a role whose trust policy does not require MFA, or credentials it can renew on its own (web identity, the container endpoint, instance metadata).")));
	if (source_profile != NULL && cs != NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" has both source_profile and credential_source", p->name)));
	if (source_profile == NULL && cs == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" has role_arn without source_profile or credential_source", p->name)));

	memset(&src, 0, sizeof(src));
	PG_TRY();
	{
		if (cs != NULL)
			credential_source_credentials(cs, p->name, deadline_ms, &src);
		else
		{
			bool		refreshable;
			bool		found;
			int			i;

			for (i = 0; i <= depth; i++)
			{
				/* a profile may name itself, to use its own static keys */
				if (strcmp(visited[i], source_profile) == 0 &&
					!(i == depth && profile_has_static(p)))
					ereport(ERROR,
							(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
							 errmsg("AWS profile \"%s\" has a source_profile loop through \"%s\"",
									visited[0], source_profile)));
			}
			if (depth + 1 > MAX_ROLE_CHAIN)
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
						 errmsg("AWS profile \"%s\" chains more than %d source_profile hops",
								visited[0], MAX_ROLE_CHAIN)));
			visited[depth + 1] = source_profile;
			if (profile_source(source_profile, depth + 1, visited, false, deadline_ms, &src,
							   &refreshable, &found) == NULL)
				ereport(ERROR,
						(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
						 errmsg("the source profile \"%s\" of AWS profile \"%s\" has no credentials",
								source_profile, p->name)));
		}
		fetch_assume_role(&src, p->name, profile_get(p, "role_arn"),
						  profile_get(p, "role_session_name"), profile_get(p, "external_id"),
						  profile_get(p, "duration_seconds"), deadline_ms, out);
	}
	PG_FINALLY();
	{
		pgck_kj_credentials_free(&src);
	}
	PG_END_TRY();
}

/*
 * The credentials of profile name, in botocore's order: assume role
 * (role_arn with source_profile or credential_source; a source profile
 * with static keys uses them instead), web identity (profile, else the
 * environment when env_web_identity), SSO, static keys of the credentials
 * file, credential_process, static keys of the config file.  NULL when the
 * profile yields none; *found says whether either file has the profile.
 */
static const char *
profile_source(const char *name, int depth, const char **visited, bool env_web_identity,
			   double deadline_ms, PgckKjCredentials *out, bool *refreshable, bool *found)
{
	PgckAwsProfile *p = profile_load(name);
	const char *volatile source = NULL;

	*refreshable = false;
	*found = p->cred.found || p->config.found;
	PG_TRY();
	{
		const char *role_arn = profile_get(p, "role_arn");
		const char *token_file = profile_get(p, "web_identity_token_file");
		const char *command;

		if (role_arn != NULL && token_file == NULL && (depth == 0 || !profile_has_static(p)))
		{
			assume_role_profile(p, depth, visited, deadline_ms, out);
			source = "assume role";
			*refreshable = true;
		}
		else if (role_arn != NULL && token_file != NULL)
		{
			fetch_web_identity(role_arn, token_file, profile_get(p, "role_session_name"),
							   deadline_ms, out);
			source = "web identity (profile)";
			*refreshable = true;
		}
		else if (env_web_identity && pgck_aws_getenv("AWS_ROLE_ARN") != NULL &&
				 pgck_aws_getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != NULL)
		{
			fetch_web_identity(pgck_aws_getenv("AWS_ROLE_ARN"),
							   pgck_aws_getenv("AWS_WEB_IDENTITY_TOKEN_FILE"),
							   pgck_aws_getenv("AWS_ROLE_SESSION_NAME"), deadline_ms, out);
			source = "web identity";
			*refreshable = true;
		}
		else if (profile_get(p, "sso_session") != NULL || profile_get(p, "sso_start_url") != NULL)
		{
			fetch_sso(p, deadline_ms, out);
			source = "SSO";
			*refreshable = true;
		}
		else if (from_profile_static(&p->cred, "the AWS shared credentials file", out))
			source = "shared credentials file";
		else if ((command = profile_get(p, "credential_process")) != NULL)
		{
			run_credential_process(command, name, deadline_ms, out);
			source = "credential_process";
			*refreshable = out->expiration != 0;
		}
		else if (from_profile_static(&p->config, "the AWS config file", out))
			source = "config file";
	}
	PG_FINALLY();
	{
		profile_free(p);
	}
	PG_END_TRY();
	return source;
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
	const char *source;
	const char *visited[MAX_ROLE_CHAIN + 2];
	bool		found;
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

	/* 2. the profile: assume role, web identity, SSO, files, credential_process */
	visited[0] = profile;
	source = profile_source(profile, 0, visited, !explicit_profile, deadline_ms, out,
							refreshable, &found);
	if (source != NULL)
		return source;
	if (explicit_profile && !found)
	{
		char	   *cred_path = aws_file_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
		char	   *config_path = aws_file_path("AWS_CONFIG_FILE", ".aws/config");

		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS profile \"%s\" was not found", profile),
				 errdetail("Looked in \"%s\" and \"%s\".",
						   cred_path ? cred_path : "(no home directory)",
						   config_path ? config_path : "(no home directory)")));
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
						 errdetail_internal("%s", edata->message),
						 errhidestmt(true)));
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
