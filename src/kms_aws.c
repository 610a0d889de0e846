/*-------------------------------------------------------------------------
 *
 * kms_aws.c
 *		The AWS KMS provider: key references, region and endpoint, SigV4
 *		signed JSON 1.1 calls with retries, error mapping.  See kms_aws.h.
 *
 * One call = up to pgcrypt_kms.kms_max_attempts attempts within
 * pgcrypt_kms.kms_timeout (credential fetches included).  Each attempt is
 * signed afresh (new X-Amz-Date, current credentials).  Retried:
 * throttling, 5xx and KMS's retryable errors, transient network errors;
 * ExpiredTokenException once, after forcing a credential refresh.  Never
 * retried: access denied, validation, not found, disabled, invalid
 * ciphertext, and the like.
 *
 * SQLSTATEs (pgck_errcodes.h): AccessDeniedException 42501;
 * NotFoundException 42704; DisabledException and KMSInvalidStateException
 * 55000; every other KMS error, transport failure and timeout 58000;
 * malformed key references and endpoints 22023.  errdetail_internal
 * carries the KMS error type, its message and the request id; never a
 * request body, key or credential.
 *
 * Key ARNs (see kms.h): every wrapping or unwrapping call returns the key
 * ARN of the response's KeyId.  Decrypt and ReEncrypt pin the key of the
 * blob (KeyId, SourceKeyId) when the reference names a key; an alias is
 * not sent, since it may have been re-pointed since the blob was made
 * (KMS would refuse with IncorrectKeyException): KMS then takes the key
 * from the symmetric blob itself.
 *
 * Secrets in flight -- the Authorization and X-Amz-Security-Token header
 * lines, the canonical request (which holds the token), the response body
 * (which holds a plaintext key) -- are wiped before they are freed, on
 * error paths too.  Plaintext keys are decoded straight into the caller's
 * buffer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"				/* VARDATA and friends left postgres.h in 16 */
#endif

#include "aws_credentials.h"
#include "guc.h"
#include "http.h"
#include "kms.h"
#include "kms_aws.h"
#include "kms_common.h"
#include "kms_json.h"
#include "pgck_errcodes.h"
#include "sigv4.h"

#define KMS_MAX_RESPONSE		(256 * 1024)

/* A parsed key reference. */
typedef struct PgckAwsKeyRef
{
	const char *key_id;			/* the reference as given, sent as KeyId */
	char	   *arn_region;		/* region of an ARN, else NULL */
	bool		is_alias;		/* alias/<name> or an alias ARN */
} PgckAwsKeyRef;

/* Where and how to call KMS. */
typedef struct PgckKmsTarget
{
	char	   *region;
	char	   *url;
	PgckHttpUrl parsed;
} PgckKmsTarget;

static const char *const op_names[PGCK_NUM_OPS] = {
	[PGCK_OP_GENERATE_DATA_KEY] = "GenerateDataKey",
	[PGCK_OP_DECRYPT] = "Decrypt",
	[PGCK_OP_REENCRYPT] = "ReEncrypt",
	[PGCK_OP_ENCRYPT] = "Encrypt",
	[PGCK_OP_DESCRIBE_KEY] = "DescribeKey",
	[PGCK_OP_GENERATE_RANDOM] = "GenerateRandom",
	[PGCK_OP_CREDENTIALS] = "credentials",
};

/* ------------------------------------------------------------------
 * regions (shared with aws_credentials.c)
 * ------------------------------------------------------------------ */

bool
pgck_aws_region_is_valid(const char *region)
{
	size_t		len = strlen(region);
	size_t		i;

	if (len < 3 || len > 64 || !(region[0] >= 'a' && region[0] <= 'z'))
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = region[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return region[len - 1] != '-';
}

const char *
pgck_aws_dns_suffix(const char *region)
{
	if (strncmp(region, "cn-", 3) == 0)
		return "amazonaws.com.cn";
	if (strncmp(region, "us-isob-", 8) == 0)
		return "sc2s.sgov.gov";
	if (strncmp(region, "us-iso-", 7) == 0)
		return "c2s.ic.gov";
	return "amazonaws.com";
}

/* ------------------------------------------------------------------
 * key references, region, endpoint
 * ------------------------------------------------------------------ */

static void
bad_key_ref(const char *ref, const char *detail)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
			 errmsg("invalid AWS KMS key reference \"aws-kms:%s\"", ref),
			 errdetail("%s", detail),
			 errhint("Use a key id, a key ARN, \"alias/<name>\" or an alias ARN.")));
}

static void
parse_key_ref(const char *ref, PgckAwsKeyRef *out)
{
	size_t		len = strlen(ref);
	size_t		i;

	memset(out, 0, sizeof(*out));
	out->key_id = ref;
	if (len == 0 || len > PGCK_KJ_MAX_KEY_ID)
		bad_key_ref(ref, "A key reference has 1 to 2048 characters.");
	for (i = 0; i < len; i++)
	{
		char		c = ref[i];

		if (!isalnum((unsigned char) c) && c != ':' && c != '/' && c != '_' && c != '-')
			bad_key_ref(ref, "A key reference has only letters, digits and \":/_-\".");
	}

	if (strncmp(ref, "arn:", 4) == 0)
	{
		/* arn:<partition>:kms:<region>:<account>:key/<id> | alias/<name> */
		char	   *copy = pstrdup(ref);
		char	   *parts[6];
		char	   *p = copy;
		int			n;

		for (n = 0; n < 5; n++)
		{
			char	   *colon = strchr(p, ':');

			if (colon == NULL)
				bad_key_ref(ref, "An ARN has the form arn:<partition>:kms:<region>:<account>:key/<id> or ...:alias/<name>.");
			*colon = '\0';
			parts[n] = p;
			p = colon + 1;
		}
		parts[5] = p;
		if (parts[1][0] == '\0' || strcmp(parts[2], "kms") != 0)
			bad_key_ref(ref, "The ARN is not a KMS ARN.");
		if (!pgck_aws_region_is_valid(parts[3]))
			bad_key_ref(ref, "The ARN has no valid region.");
		if (strlen(parts[4]) != 12 || strspn(parts[4], "0123456789") != 12)
			bad_key_ref(ref, "The ARN has no valid account id.");
		if (!((strncmp(parts[5], "key/", 4) == 0 && parts[5][4] != '\0') ||
			  (strncmp(parts[5], "alias/", 6) == 0 && parts[5][6] != '\0')))
			bad_key_ref(ref, "The ARN names neither a key (key/<id>) nor an alias (alias/<name>).");
		out->arn_region = pstrdup(parts[3]);
		out->is_alias = strncmp(parts[5], "alias/", 6) == 0;
		pfree(copy);
	}
	else if (strncmp(ref, "alias/", 6) == 0)
	{
		if (len == 6 || len > 256)
			bad_key_ref(ref, "An alias name has 1 to 250 characters after \"alias/\".");
		out->is_alias = true;
	}
	else if (strpbrk(ref, ":/") != NULL)
		bad_key_ref(ref, "A key id has only letters, digits and \"-\".");
}

/* Region of a call: the ARN's, else the configured default. */
static char *
region_for(const PgckAwsKeyRef *ref)
{
	char	   *region;

	if (ref->arn_region != NULL)
		return pstrdup(ref->arn_region);
	region = pgck_aws_default_region();
	if (region == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("no AWS region is configured for AWS KMS key \"aws-kms:%s\"", ref->key_id),
				 errhint("Set pgcrypt_kms.aws_region, or AWS_REGION in the server's environment, or use a key ARN.")));
	if (!pgck_aws_region_is_valid(region))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS region \"%s\"", region)));
	return region;
}

static void
resolve_target(const char *region, PgckKmsTarget *t)
{
	const char *e = NULL;
	const char *what = "AWS KMS endpoint";

	memset(t, 0, sizeof(*t));
	t->region = pstrdup(region);
	if (pgck_aws_endpoint != NULL && pgck_aws_endpoint[0] != '\0')
	{
		e = pgck_aws_endpoint;
		what = "pgcrypt_kms.aws_endpoint";
	}
	else if (!(pgck_aws_getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") != NULL &&
			   pg_strcasecmp(pgck_aws_getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") == 0))
	{
		if ((e = pgck_aws_getenv("AWS_ENDPOINT_URL_KMS")) != NULL)
			what = "AWS_ENDPOINT_URL_KMS";
		else if ((e = pgck_aws_getenv("AWS_ENDPOINT_URL")) != NULL)
			what = "AWS_ENDPOINT_URL";
	}
	if (e != NULL)
	{
		if (strchr(e, '?') != NULL)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("invalid %s URL", what),
					 errdetail("An endpoint URL has no query string (the URL is not repeated: it may carry credentials).")));
		t->url = pstrdup(e);
	}
	else
	{
		const char *fips = pgck_aws_getenv("AWS_USE_FIPS_ENDPOINT");

		t->url = psprintf("https://kms%s.%s.%s",
						  (fips != NULL && pg_strcasecmp(fips, "true") == 0) ? "-fips" : "",
						  region, pgck_aws_dns_suffix(region));
	}
	pgck_http_parse_url(t->url, PGCK_HTTP_PLAIN_LOOPBACK, what, &t->parsed);
}

/* ------------------------------------------------------------------
 * one signed attempt
 * ------------------------------------------------------------------ */

static void
wipe_sigv4(PgckSigv4Result *res)
{
	if (res->canonical_request)
		explicit_bzero(res->canonical_request, strlen(res->canonical_request));
	if (res->string_to_sign)
		explicit_bzero(res->string_to_sign, strlen(res->string_to_sign));
	if (res->authorization)
		explicit_bzero(res->authorization, strlen(res->authorization));
	explicit_bzero(res->signature, sizeof(res->signature));
	pgck_sigv4_result_free(res);
}

static void
perform_signed(const PgckKmsTarget *t, PgckKmsOp op, const char *body, size_t body_len,
			   const PgckAwsCredentials *creds, double deadline_ms, PgckHttpResponse *resp)
{
	char		amz_date[17];
	char		target_hdr[64];
	char		target_line[96];
	char	   *host_line;
	char	   *date_line;
	char	   *volatile auth_line = NULL;
	char	   *volatile token_line = NULL;
	PgckSigv4Header sh[5];
	int			nsh = 0;
	const char *lines[6];
	int			nlines = 0;
	PgckSigv4Request sreq;
	PgckSigv4Params params;
	PgckSigv4Result res;
	PgckHttpRequest req;
	double		left;

	pgck_sigv4_amz_date(time(NULL), amz_date);
	snprintf(target_hdr, sizeof(target_hdr), "TrentService.%s", op_names[op]);

	sh[nsh].name = "content-type";
	sh[nsh++].value = "application/x-amz-json-1.1";
	sh[nsh].name = "host";
	sh[nsh++].value = t->parsed.host_header;
	sh[nsh].name = "x-amz-date";
	sh[nsh++].value = amz_date;
	if (creds->session_token != NULL)
	{
		sh[nsh].name = "x-amz-security-token";
		sh[nsh++].value = creds->session_token;
	}
	sh[nsh].name = "x-amz-target";
	sh[nsh++].value = target_hdr;

	memset(&sreq, 0, sizeof(sreq));
	sreq.method = "POST";
	sreq.path = t->parsed.path;
	sreq.query = "";
	sreq.headers = sh;
	sreq.nheaders = nsh;
	sreq.payload = (const unsigned char *) body;
	sreq.payload_len = body_len;
	params.access_key_id = creds->access_key_id;
	params.secret_access_key = creds->secret_access_key;
	params.region = t->region;
	params.service = "kms";
	params.amz_date = amz_date;
	memset(&res, 0, sizeof(res));
	if (amz_date[0] == '\0' || pgck_sigv4_sign(&sreq, &params, &res) != 0)
	{
		wipe_sigv4(&res);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not sign the AWS KMS %s request", op_names[op])));
	}

	host_line = psprintf("Host: %s", t->parsed.host_header);
	date_line = psprintf("X-Amz-Date: %s", amz_date);
	snprintf(target_line, sizeof(target_line), "X-Amz-Target: %s", target_hdr);
	PG_TRY();
	{
		auth_line = psprintf("Authorization: %s", res.authorization);
		wipe_sigv4(&res);
		if (creds->session_token != NULL)
			token_line = pgck_http_header_line("X-Amz-Security-Token", creds->session_token);

		lines[nlines++] = "Content-Type: application/x-amz-json-1.1";
		lines[nlines++] = host_line;
		lines[nlines++] = date_line;
		lines[nlines++] = target_line;
		if (token_line != NULL)
			lines[nlines++] = token_line;
		lines[nlines++] = auth_line;

		left = deadline_ms - pgck_http_now_ms();
		memset(&req, 0, sizeof(req));
		req.method = PGCK_HTTP_POST;
		req.url = t->url;
		req.headers = lines;
		req.nheaders = nlines;
		req.body = body;
		req.body_len = body_len;
		req.connect_timeout_ms = (int) Max(Min((double) pgck_kms_connect_timeout, left), 1);
		req.timeout_ms = (int) Max(left, 1);
		req.max_response = KMS_MAX_RESPONSE;
		req.plain_policy = PGCK_HTTP_PLAIN_LOOPBACK;
		pgck_http_perform(&req, resp);
	}
	PG_FINALLY();
	{
		wipe_sigv4(&res);
		pgck_kms_wipe_pfree(auth_line);
		pgck_kms_wipe_pfree(token_line);
	}
	PG_END_TRY();
	pfree(host_line);
	pfree(date_line);
}

/* ------------------------------------------------------------------
 * error classes
 * ------------------------------------------------------------------ */

static bool
type_in(const char *type, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(type, *list) == 0)
			return true;
	return false;
}

static bool
is_throttling(const char *type)
{
	static const char *const t[] = {
		"Throttling", "ThrottlingException", "ThrottledException",
		"RequestThrottledException", "TooManyRequestsException",
		"ProvisionedThroughputExceededException", "TransactionInProgressException",
		"RequestLimitExceeded", "BandwidthLimitExceeded", "RequestThrottled",
		"SlowDown", "PriorRequestNotComplete", "EC2ThrottledException", NULL
	};

	return type_in(type, t);
}

static bool
is_transient(const char *type, long status)
{
	static const char *const t[] = {
		"KMSInternalException", "KeyUnavailableException", "DependencyTimeoutException",
		"InternalFailure", "InternalServerError", "ServiceUnavailable",
		"RequestTimeout", "RequestTimeoutException", NULL
	};

	return type_in(type, t) || status == 500 || status == 502 || status == 503 ||
		status == 504;
}

static int
sqlstate_for(const char *type)
{
	if (strcmp(type, "AccessDeniedException") == 0)
		return PGCK_ERRCODE_PRIVILEGE;
	if (strcmp(type, "NotFoundException") == 0)
		return PGCK_ERRCODE_UNKNOWN_KEY;
	if (strcmp(type, "DisabledException") == 0 || strcmp(type, "KMSInvalidStateException") == 0)
		return PGCK_ERRCODE_KEY_STATE;
	return PGCK_ERRCODE_KMS_FAILURE;
}

static const char *
hint_for(const char *type, const char *message)
{
	if (strcmp(type, "AccessDeniedException") == 0)
		return "Check the key policy and the IAM policy of the server's AWS credentials.";
	if (strcmp(type, "NotFoundException") == 0)
		return "Check the key reference and the region.";
	if (strcmp(type, "UnrecognizedClientException") == 0 ||
		strcmp(type, "ExpiredTokenException") == 0 ||
		strcmp(type, "IncompleteSignatureException") == 0 ||
		strcmp(type, "MissingAuthenticationTokenException") == 0)
		return "Check the AWS credentials of the server process.";
	if (strcmp(type, "InvalidSignatureException") == 0)
		return strstr(message, "expired") || strstr(message, "not yet current")
			? "Check the server's clock: AWS accepts requests signed within 15 minutes of its own time."
			: "Check the AWS credentials of the server process.";
	if (strcmp(type, "InvalidCiphertextException") == 0)
		return "The wrapped key is damaged, or its KMS encryption context differs.";
	if (strcmp(type, "IncorrectKeyException") == 0)
		return "The wrapped key was made under another KMS key than the one named; the keyring names keys by the ARN KMS reported (kms_keys.kms_key_arn), so check that column or re-wrap the key with kms_rewrap_key().";
	return NULL;
}

/* ------------------------------------------------------------------
 * a whole call: attempts, retries, errors
 * ------------------------------------------------------------------ */

/*
 * Call KMS operation op with a JSON body; on return *resp holds a 200
 * response (the caller parses and frees it).  ereports on failure.
 */
static void
kms_call(PgckKmsOp op, const char *key_ref, const PgckKmsTarget *t, const char *body,
		 size_t body_len, PgckHttpResponse *resp)
{
	double		start = pgck_http_now_ms();
	double		deadline = start + pgck_kms_timeout;
	int			max_attempts = Max(pgck_kms_max_attempts, 1);
	bool		refreshed = false;
	bool		out_of_time = false;
	int			attempt;
	PgckKjAwsError aerr;

	for (attempt = 1;; attempt++)
	{
		const PgckAwsCredentials *creds;
		bool		retry = false;
		bool		throttled = false;
		bool		immediate = false;
		double		delay = 0;

		creds = pgck_aws_credentials_get(deadline);
		perform_signed(t, op, body, body_len, creds, deadline, resp);

		if (resp->result == PGCK_HTTP_DONE && resp->status == 200)
			return;

		memset(&aerr, 0, sizeof(aerr));
		if (resp->result == PGCK_HTTP_DONE)
		{
			pgck_kj_parse_error(resp->error_type, resp->body, resp->body_len, &aerr);
			if (strcmp(aerr.type, "ExpiredTokenException") == 0 && !refreshed &&
				pgck_aws_credentials_refreshable())
			{
				/* refresh and go again at once */
				pgck_aws_credentials_invalidate();
				refreshed = true;
				retry = immediate = true;
			}
			else if (strcmp(aerr.type, "UnrecognizedClientException") == 0 ||
					 strcmp(aerr.type, "ExpiredTokenException") == 0)
			{
				/* let the next statement resolve the chain afresh */
				pgck_aws_credentials_invalidate();
			}
			else if (is_throttling(aerr.type) || resp->status == 429)
				retry = throttled = true;
			else if (is_transient(aerr.type, resp->status))
				retry = true;
		}
		else
			retry = pgck_http_result_is_transient(resp->result);

		if (retry && !immediate)
			delay = pgck_kms_backoff_ms(attempt, throttled);
		if (!retry || attempt >= max_attempts)
			break;
		/* a retry that could not finish in time is not made */
		out_of_time = pgck_http_now_ms() + delay >= deadline;
		if (out_of_time)
			break;

		pgck_stats_kms_retry(op);
		elog(DEBUG1, "pgcrypt_kms: retrying AWS KMS %s after %s (attempt %d of %d, backoff %.0f ms)",
			 op_names[op],
			 resp->result == PGCK_HTTP_DONE ? (aerr.type[0] ? aerr.type : "an HTTP error")
			 : pgck_http_result_name(resp->result),
			 attempt, max_attempts, delay);
		pgck_http_response_free(resp);
		if (delay > 0)
			pgck_kms_sleep_ms(delay);
	}

	/* failure: report the last attempt */
	{
		long		status = resp->status;
		PgckHttpResult result = resp->result;
		char		request_id[PGCK_HTTP_HEADER_MAX];
		char		error_text[sizeof(resp->error_text)];
		char		error_public[sizeof(resp->error_public)];
		/* within 25 ms of the deadline no attempt could be made: it was reached */
		bool		deadline_hit = pgck_http_now_ms() >= deadline - 25;
		const char *why = deadline_hit ? ", pgcrypt_kms.kms_timeout reached" :
			out_of_time ? ", stopped: the next backoff would pass pgcrypt_kms.kms_timeout" : "";
		const char *hint;

		strlcpy(request_id, resp->request_id[0] ? resp->request_id : "none", sizeof(request_id));
		strlcpy(error_text, resp->error_text, sizeof(error_text));
		strlcpy(error_public, resp->error_public, sizeof(error_public));
		pgck_http_response_free(resp);

		if (result != PGCK_HTTP_DONE)
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("AWS KMS %s failed for key \"aws-kms:%s\"", op_names[op], key_ref),
					 errdetail_internal("Could not reach the configured KMS endpoint: %s: %s (%d attempt%s%s).",
										pgck_http_result_name(result),
										error_public, attempt, attempt == 1 ? "" : "s",
										why),
					 errdetail_log("Could not reach %s: %s: %s (%d attempt%s%s).",
								   t->parsed.host_header, pgck_http_result_name(result),
								   error_text, attempt, attempt == 1 ? "" : "s",
								   why)));

		hint = hint_for(aerr.type, aerr.message);
		ereport(ERROR,
				(errcode(sqlstate_for(aerr.type)),
				 errmsg("AWS KMS %s failed for key \"aws-kms:%s\"", op_names[op], key_ref),
				 errdetail_internal("AWS KMS returned HTTP %ld %s: %s (request id %s, %d attempt%s%s).",
									status,
									aerr.type[0] ? aerr.type : "(no error type)",
									aerr.message[0] ? aerr.message : "(no message)",
									request_id, attempt, attempt == 1 ? "" : "s",
									why),
				 hint ? errhint("%s", hint) : 0));
	}
}

static void
malformed_response(PgckKmsOp op, const char *key_ref, const PgckKjError *err,
				   const char *request_id)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
			 errmsg("AWS KMS %s returned a malformed response for key \"aws-kms:%s\"",
					op_names[op], key_ref),
			 errdetail_internal("%s (request id %s).", err->detail,
								request_id[0] ? request_id : "none")));
}

/* A request body from kms_json, copied to palloc; raises on bad input. */
static char *
take_body(char *body, const PgckKjError *err, PgckKmsOp op, const char *key_ref)
{
	char	   *copy;

	if (body == NULL)
	{
		if (err->status == PGCK_KJ_ERR_NOMEM)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid AWS KMS %s request for key \"aws-kms:%s\"", op_names[op], key_ref),
				 errdetail("%s: %s.", pgck_kj_status_name(err->status), err->detail)));
	}
	copy = pstrdup(body);
	free(body);
	return copy;
}

static bytea *
blob_to_bytea(const PgckKjBlob *blob)
{
	bytea	   *b = (bytea *) palloc(VARHDRSZ + blob->len);

	SET_VARSIZE(b, VARHDRSZ + blob->len);
	memcpy(VARDATA(b), blob->data, blob->len);
	return b;
}

/*
 * The key ARN a successful response reports in member, palloc'd, or NULL
 * when it reports none; a member that is not a key ARN is a malformed
 * response.
 */
/*
 * Does the key ARN a response reported fit the reference asked about?  A key
 * ARN must be that ARN, a key id the ARN's last part; an alias (alias/<name>
 * or an alias ARN) may resolve to any key.
 */
static bool
arn_names_ref(const char *arn, const char *key_ref)
{
	const char *slash;
	size_t		arn_len = strlen(arn);
	size_t		ref_len = strlen(key_ref);

	if (strncmp(key_ref, "alias/", 6) == 0 || strstr(key_ref, ":alias/") != NULL)
		return true;
	if (strncmp(key_ref, "arn:", 4) == 0)
		return strcmp(arn, key_ref) == 0;
	/* a key id: the ARN ends in ":key/<id>" */
	slash = strrchr(arn, '/');
	return slash != NULL && arn_len > ref_len &&
		strcmp(slash + 1, key_ref) == 0 && slash - arn >= 4 &&
		strncmp(slash - 4, ":key", 4) == 0;
}

static char *
response_key_arn(PgckKmsOp op, const char *key_ref, const PgckHttpResponse *resp,
				 const char *member)
{
	char	   *arn = palloc(PGCK_KJ_MAX_KEY_ID + 1);
	PgckKjError err;

	if (!pgck_kj_parse_key_arn(resp->body, resp->body_len, member, arn, &err))
		malformed_response(op, key_ref, &err, resp->request_id);
	if (arn[0] == '\0')
	{
		pfree(arn);
		return NULL;
	}
	if (!arn_names_ref(arn, key_ref))
	{
		/*
		 * A reference that names a key (key id or key ARN) must come back as
		 * that key: recording another would pin every later Decrypt to it
		 * (and send it to the other key's region).  Only an alias may
		 * resolve to a key not known in advance.
		 */
		err.detail = "The response names another key than the one asked for.";
		malformed_response(op, key_ref, &err, resp->request_id);
	}
	return arn;
}

/*
 * What to send as the KeyId of a blob wrapped under ref: the key, pinned;
 * nothing for an alias, which may point elsewhere since (KMS reads the key
 * from a symmetric blob's metadata and reports it).
 */
static const char *
blob_key_id(const PgckAwsKeyRef *ref)
{
	return ref->is_alias ? NULL : ref->key_id;
}

/* ------------------------------------------------------------------
 * provider operations
 * ------------------------------------------------------------------ */

static bytea *
do_generate_data_key(const char *key_ref, const char *kms_context, uint8 *dek_out,
					 size_t key_len, char **key_arn_out)
{
	PgckAwsKeyRef ref;
	PgckKmsTarget t;
	PgckKjError err;
	PgckKjBlob	blob;
	PgckHttpResponse resp;
	char	   *body;
	bytea	   *volatile result = NULL;

	parse_key_ref(key_ref, &ref);
	resolve_target(region_for(&ref), &t);
	body = take_body(pgck_kj_build_generate_data_key(ref.key_id, kms_context, key_len, &err),
					 &err, PGCK_OP_GENERATE_DATA_KEY, key_ref);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		kms_call(PGCK_OP_GENERATE_DATA_KEY, key_ref, &t, body, strlen(body), &resp);
		if (!pgck_kj_parse_generate_data_key(resp.body, resp.body_len, key_len, dek_out,
											 &blob, &err))
			malformed_response(PGCK_OP_GENERATE_DATA_KEY, key_ref, &err, resp.request_id);
		result = blob_to_bytea(&blob);
		pgck_kj_blob_free(&blob);
		*key_arn_out = response_key_arn(PGCK_OP_GENERATE_DATA_KEY, key_ref, &resp, "KeyId");
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
	return result;
}

static void
do_decrypt_data_key(const char *key_ref, const char *kms_context, const bytea *wrapped,
					uint8 *dek_out, size_t key_len, char **key_arn_out)
{
	PgckAwsKeyRef ref;
	PgckKmsTarget t;
	PgckKjError err;
	PgckHttpResponse resp;
	char	   *body;

	parse_key_ref(key_ref, &ref);
	resolve_target(region_for(&ref), &t);
	body = take_body(pgck_kj_build_decrypt(blob_key_id(&ref), kms_context,
										   (const uint8_t *) VARDATA_ANY(wrapped),
										   VARSIZE_ANY_EXHDR(wrapped), &err),
					 &err, PGCK_OP_DECRYPT, key_ref);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		kms_call(PGCK_OP_DECRYPT, key_ref, &t, body, strlen(body), &resp);
		if (!pgck_kj_parse_decrypt(resp.body, resp.body_len, key_len, dek_out, &err))
			malformed_response(PGCK_OP_DECRYPT, key_ref, &err, resp.request_id);
		*key_arn_out = response_key_arn(PGCK_OP_DECRYPT, key_ref, &resp, "KeyId");
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
}

static bytea *
do_reencrypt_data_key(const char *old_key_ref, const char *new_key_ref,
					  const char *kms_context, const bytea *wrapped, char **key_arn_out)
{
	PgckAwsKeyRef src;
	PgckAwsKeyRef dst;
	PgckKmsTarget t;
	PgckKjError err;
	PgckKjBlob	blob;
	PgckHttpResponse resp;
	char	   *body;
	char	   *region;
	bytea	   *volatile result = NULL;

	parse_key_ref(old_key_ref, &src);
	parse_key_ref(new_key_ref, &dst);
	if (src.arn_region != NULL && dst.arn_region != NULL &&
		strcmp(src.arn_region, dst.arn_region) != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("cannot re-wrap from AWS KMS key \"aws-kms:%s\" to \"aws-kms:%s\"",
						old_key_ref, new_key_ref),
				 errdetail("The keys are in different regions (%s and %s); ReEncrypt works within one region.",
						   src.arn_region, dst.arn_region)));
	region = region_for(dst.arn_region != NULL ? &dst : &src);
	resolve_target(region, &t);
	body = take_body(pgck_kj_build_reencrypt(blob_key_id(&src), dst.key_id, kms_context, kms_context,
											 (const uint8_t *) VARDATA_ANY(wrapped),
											 VARSIZE_ANY_EXHDR(wrapped), &err),
					 &err, PGCK_OP_REENCRYPT, new_key_ref);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		kms_call(PGCK_OP_REENCRYPT, new_key_ref, &t, body, strlen(body), &resp);
		if (!pgck_kj_parse_reencrypt(resp.body, resp.body_len, &blob, &err))
			malformed_response(PGCK_OP_REENCRYPT, new_key_ref, &err, resp.request_id);
		result = blob_to_bytea(&blob);
		pgck_kj_blob_free(&blob);
		*key_arn_out = response_key_arn(PGCK_OP_REENCRYPT, new_key_ref, &resp, "KeyId");
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
	return result;
}

/*
 * Encrypt a given data key (moved here from another provider).  The request
 * body holds the plaintext key: both its copies are wiped, on error too.
 */
static bytea *
do_wrap_data_key(const char *key_ref, const char *kms_context, const uint8 *dek,
				 size_t key_len, char **key_arn_out)
{
	PgckAwsKeyRef ref;
	PgckKmsTarget t;
	PgckKjError err;
	PgckKjBlob	blob;
	PgckHttpResponse resp;
	char	   *volatile built;
	char	   *volatile body = NULL;
	bytea	   *volatile result = NULL;

	parse_key_ref(key_ref, &ref);
	resolve_target(region_for(&ref), &t);
	built = pgck_kj_build_encrypt(ref.key_id, kms_context, dek, key_len, &err);
	if (built == NULL)
		(void) take_body(NULL, &err, PGCK_OP_ENCRYPT, key_ref);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		body = palloc(strlen(built) + 1);
		strcpy(body, built);
		explicit_bzero(built, strlen(built));
		free(built);
		built = NULL;
		kms_call(PGCK_OP_ENCRYPT, key_ref, &t, body, strlen(body), &resp);
		if (!pgck_kj_parse_encrypt(resp.body, resp.body_len, &blob, &err))
			malformed_response(PGCK_OP_ENCRYPT, key_ref, &err, resp.request_id);
		result = blob_to_bytea(&blob);
		pgck_kj_blob_free(&blob);
		*key_arn_out = response_key_arn(PGCK_OP_ENCRYPT, key_ref, &resp, "KeyId");
	}
	PG_FINALLY();
	{
		if (built != NULL)
		{
			explicit_bzero(built, strlen(built));
			free(built);
		}
		pgck_kms_wipe_pfree(body);
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
	return result;
}

static void
do_check_key(const char *key_ref)
{
	PgckAwsKeyRef ref;
	PgckKmsTarget t;
	PgckKjError err;
	PgckKjKeyMetadata *md = palloc0(sizeof(PgckKjKeyMetadata));
	PgckHttpResponse resp;
	char	   *body;
	bool		ok;

	parse_key_ref(key_ref, &ref);
	resolve_target(region_for(&ref), &t);
	body = take_body(pgck_kj_build_describe_key(ref.key_id, &err),
					 &err, PGCK_OP_DESCRIBE_KEY, key_ref);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		kms_call(PGCK_OP_DESCRIBE_KEY, key_ref, &t, body, strlen(body), &resp);
		ok = pgck_kj_parse_describe_key(resp.body, resp.body_len, md, &err);
		if (!ok)
			malformed_response(PGCK_OP_DESCRIBE_KEY, key_ref, &err, resp.request_id);
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();

	if (!md->enabled || (md->key_state[0] != '\0' && strcmp(md->key_state, "Enabled") != 0))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("AWS KMS key \"aws-kms:%s\" is not enabled", key_ref),
				 errdetail_internal("Its key state is %s.",
									md->key_state[0] ? md->key_state : "(not reported)")));
	if (md->key_usage[0] != '\0' && strcmp(md->key_usage, "ENCRYPT_DECRYPT") != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS KMS key \"aws-kms:%s\" is not an encryption key", key_ref),
				 errdetail_internal("Its key usage is %s; ENCRYPT_DECRYPT is needed.", md->key_usage)));
	if (md->key_spec[0] != '\0' && strcmp(md->key_spec, "SYMMETRIC_DEFAULT") != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("AWS KMS key \"aws-kms:%s\" is not a symmetric encryption key", key_ref),
				 errdetail_internal("Its key spec is %s; SYMMETRIC_DEFAULT is needed.", md->key_spec)));
	pfree(md);
}

const PgckKmsProvider pgck_kms_aws_provider = {
	.scheme = "aws-kms",
	.generate_data_key = do_generate_data_key,
	.decrypt_data_key = do_decrypt_data_key,
	.reencrypt_data_key = do_reencrypt_data_key,
	.wrap_data_key = do_wrap_data_key,
	.check_key = do_check_key,
	.count_calls = true,		/* each a whole call, timed by kms_common.c */
};

/*
 * Called from _PG_init.  No I/O here: libcurl, the connection pool and the
 * credential cache are set up on first use in a backend, and their exit
 * callbacks are registered then (a callback registered while the library
 * is preloaded into the postmaster would be dropped in every child by
 * on_exit_reset()).
 */
void
pgck_kms_aws_init(void)
{
}
