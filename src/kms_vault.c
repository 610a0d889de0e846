/*-------------------------------------------------------------------------
 *
 * kms_vault.c
 *		The HashiCorp Vault / OpenBao Transit provider: key references,
 *		authentication (token, AppRole, Kubernetes), token renewal, Transit
 *		calls with retries, error mapping.
 *
 * References: "vault-transit:<mount>/<key>".  The key is what follows the
 * last '/', the mount everything before it, so nested mounts work
 * ("vault-transit:team/a/transit/app"); Transit key names never contain a
 * '/'.  The namespace (Vault Enterprise, OpenBao) is a setting, sent as
 * X-Vault-Namespace, not part of the reference.
 *
 * Operations (paths relative to /v1/<mount>/):
 *	generate_data_key	POST datakey/plaintext/<key>, bits 256
 *	decrypt_data_key	POST decrypt/<key>
 *	reencrypt_data_key	POST rewrap/<key> when old and new reference name
 *						the same key (a blob moves to the key's latest
 *						version; no plaintext here); for another key (Transit
 *						cannot rewrap across keys) decrypt under the old key
 *						and encrypt under the new one: the plaintext data key
 *						then passes through this backend's memory, as for a
 *						move between providers, and is wiped at once
 *	wrap_data_key		POST encrypt/<key>
 *	check_key			GET keys/<key>: aes256-gcm96, chacha20-poly1305 or
 *						xchacha20-poly1305, supports_encryption
 * The wrapped blob is Transit's ciphertext string as returned, key version
 * prefix ("vault:v3:...") included, so a key rotated in Vault keeps old
 * blobs decrypting until min_decryption_version passes them (55000).  No
 * key ARN is reported (key_arn_out stays NULL): a Transit key name is not
 * an alias, it always names the same key.
 *
 * kms_context: a non-empty JSON object is sent as Transit's "context",
 * base64 of the object re-serialized canonically (compact, keys sorted by
 * byte value, UTF-8 as is: jansson JSON_COMPACT | JSON_SORT_KEYS), on every
 * call.  Derived Transit keys ("derived": true) derive their key from it, so
 * a blob unwraps only with the same context; Vault ignores it for keys that
 * are not derived.  "{}" and NULL send no context (a derived key then
 * refuses: 22023).
 *
 * Authentication (pgcrypt_kms.vault_auth): token (pgcrypt_kms.vault_token_file,
 * else VAULT_TOKEN in the server's environment), AppRole (role id setting +
 * secret id file), Kubernetes (role setting + service-account token file).
 * The token is cached per backend in malloc'd memory, wiped when replaced,
 * when the settings that made it change, and at exit.  After two thirds of
 * its lease it is renewed (auth/token/renew-self) when renewable; an AppRole
 * or Kubernetes token that cannot be renewed (or whose renewal was capped
 * under a third of its first lease) is replaced by a new login.  A 403 whose
 * errors say "invalid token" (revoked, expired) causes one new login and one
 * immediate retry; any other 403 is 42501 and never retried.
 *
 * One call = up to pgcrypt_kms.kms_max_attempts attempts within
 * pgcrypt_kms.kms_timeout, logins and renewals included.  Retried: 429,
 * 5xx (not 501), transient transport failures, with pgck_kms_wait_before_retry.
 *
 * SQLSTATEs: 403 42501; 404 and "encryption key not found" 42704;
 * min_decryption_version refusals ("disallowed by policy") 55000; a derived
 * key without context 22023; every other Vault error, transport failure and
 * timeout 58000; malformed references 22023.  errdetail_internal carries
 * Vault's error strings; never a token, secret id, JWT, request body,
 * plaintext or ciphertext.
 *
 * Secrets in flight -- the X-Vault-Token header line, login bodies (secret
 * id, JWT), encrypt bodies (a plaintext key), response bodies (plaintext
 * keys, tokens) -- are wiped before they are freed, on error paths too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"				/* VARDATA and friends left postgres.h in 16 */
#endif

#include "base64.h"
#include "guc.h"
#include "http.h"
#include "kms.h"
#include "kms_common.h"
#include "kms_json.h"
#include "pgck_errcodes.h"
#include "vault_json.h"

#define VAULT_MAX_RESPONSE		(256 * 1024)
#define VAULT_MAX_TOKEN			8192
#define VAULT_MAX_SECRET_FILE	(64 * 1024)
#define VAULT_MAX_CIPHERTEXT	PGCK_VJ_MAX_CIPHERTEXT
#define VAULT_MAX_ERRORS		512
#define VAULT_MAX_PLAINTEXT_B64	PGCK_BASE64_ENC_LEN(64)

/* A parsed reference: palloc'd mount and key name. */
typedef struct VaultKeyRef
{
	char	   *mount;
	char	   *key;
	const char *ref;			/* "<mount>/<key>" as given */
} VaultKeyRef;

/* The backend's Vault token; malloc'd strings, the token wiped on release. */
typedef struct VaultSession
{
	char	   *token;
	char	   *config;			/* the settings that made it */
	double		obtained_ms;	/* monotonic clock */
	double		lease_ms;		/* 0: no expiry */
	double		login_lease_ms; /* the lease of the login */
	bool		renewable;
} VaultSession;

static VaultSession session;
static bool exit_registered = false;

/* ------------------------------------------------------------------
 * references
 * ------------------------------------------------------------------ */

static void
parse_key_ref(const char *ref, VaultKeyRef *out)
{
	size_t		mount_len;

	if (!pgck_vj_check_ref(ref, &mount_len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid Vault Transit key reference \"vault-transit:%s\"", ref),
				 errhint("Use \"vault-transit:<mount>/<key>\", as in \"vault-transit:transit/app\"; mount and key hold letters, digits and \"_-.\".")));
	out->ref = ref;
	out->mount = pnstrdup(ref, mount_len);
	out->key = pstrdup(ref + mount_len + 1);
}

/* ------------------------------------------------------------------
 * the session token
 * ------------------------------------------------------------------ */

static void
session_release(void)
{
	if (session.token != NULL)
	{
		explicit_bzero(session.token, strlen(session.token));
		free(session.token);
	}
	if (session.config != NULL)
		free(session.config);
	memset(&session, 0, sizeof(session));
}

static void
vault_atexit(int code, Datum arg)
{
	session_release();
}

/* The settings a token depends on, as one string (palloc'd). */
static char *
session_config(void)
{
	return psprintf("%s|%s|%d|%s|%s|%s|%s|%s|%s|%s",
					pgck_vault_addr, pgck_vault_namespace, pgck_vault_auth,
					pgck_vault_token_file, pgck_vault_approle_role_id,
					pgck_vault_approle_secret_id_file, pgck_vault_approle_mount,
					pgck_vault_kubernetes_role, pgck_vault_kubernetes_token_file,
					pgck_vault_kubernetes_mount);
}

static const char *
auth_name(void)
{
	switch (pgck_vault_auth)
	{
		case PGCK_VAULT_AUTH_APPROLE:
			return "AppRole";
		case PGCK_VAULT_AUTH_KUBERNETES:
			return "Kubernetes";
		default:
			return "token";
	}
}

/* ------------------------------------------------------------------
 * responses
 * ------------------------------------------------------------------ */

static bool
errors_say(const char *errors, const char *what)
{
	return strstr(errors, what) != NULL;
}

/* ------------------------------------------------------------------
 * one request
 * ------------------------------------------------------------------ */

/* The base URL: pgcrypt_kms.vault_addr without a trailing '/'. */
static char *
vault_url(const char *path)
{
	const char *addr = pgck_vault_addr;
	size_t		len;
	char	   *url;
	PgckHttpUrl parsed;

	if (addr == NULL || addr[0] == '\0')
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("pgcrypt_kms.vault_addr is not set"),
				 errhint("Set it to the Vault or OpenBao server's URL, as in https://vault.example.com:8200.")));
	if (strchr(addr, '?') != NULL || strchr(addr, '#') != NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid pgcrypt_kms.vault_addr"),
				 errdetail("The address has no query string or fragment.")));
	len = strlen(addr);
	while (len > 0 && addr[len - 1] == '/')
		len--;
	url = psprintf("%.*s/v1/%s", (int) len, addr, path);
	pgck_http_parse_url(url, PGCK_HTTP_PLAIN_LOOPBACK, "pgcrypt_kms.vault_addr", &parsed);
	return url;
}

/*
 * One HTTP exchange with Vault.  token may be NULL (login).  The token
 * header line is wiped on every path.
 */
static void
perform_once(PgckHttpMethod method, const char *path, const char *body, size_t body_len,
			 const char *token, double deadline_ms, PgckHttpResponse *resp)
{
	char	   *url = vault_url(path);
	char	   *volatile token_line = NULL;
	char	   *ns_line = NULL;
	const char *lines[4];
	int			nlines = 0;
	PgckHttpRequest req;
	double		left = deadline_ms - pgck_http_now_ms();

	lines[nlines++] = "X-Vault-Request: true";
	if (body != NULL)
		lines[nlines++] = "Content-Type: application/json";
	if (pgck_vault_namespace != NULL && pgck_vault_namespace[0] != '\0')
	{
		ns_line = psprintf("X-Vault-Namespace: %s", pgck_vault_namespace);
		lines[nlines++] = ns_line;
	}
	PG_TRY();
	{
		if (token != NULL)
		{
			token_line = pgck_http_header_line("X-Vault-Token", token);
			lines[nlines++] = token_line;
		}
		memset(&req, 0, sizeof(req));
		req.method = method;
		req.url = url;
		req.headers = lines;
		req.nheaders = nlines;
		req.body = body;
		req.body_len = body_len;
		req.connect_timeout_ms = pgck_kms_connect_timeout;
		req.timeout_ms = (int) Max(left, 1);
		req.max_response = VAULT_MAX_RESPONSE;
		req.plain_policy = PGCK_HTTP_PLAIN_LOOPBACK;
		pgck_http_perform(&req, resp);
	}
	PG_FINALLY();
	{
		if (token_line != NULL)
		{
			explicit_bzero(token_line, strlen(token_line));
			pfree(token_line);
		}
	}
	PG_END_TRY();
	if (ns_line)
		pfree(ns_line);
	pfree(url);
}

static const char *const op_names[PGCK_NUM_OPS] = {
	[PGCK_OP_GENERATE_DATA_KEY] = "datakey",
	[PGCK_OP_DECRYPT] = "decrypt",
	[PGCK_OP_REENCRYPT] = "rewrap",
	[PGCK_OP_ENCRYPT] = "encrypt",
	[PGCK_OP_DESCRIBE_KEY] = "key read",
	[PGCK_OP_GENERATE_RANDOM] = "random",
	[PGCK_OP_CREDENTIALS] = "login",
};

static int
sqlstate_for(long status, const char *errors)
{
	if (status == 403)
		return PGCK_ERRCODE_PRIVILEGE;
	if (status == 404 || errors_say(errors, "key not found"))
		return PGCK_ERRCODE_UNKNOWN_KEY;
	if (errors_say(errors, "disallowed by policy") || errors_say(errors, "is disabled"))
		return PGCK_ERRCODE_KEY_STATE;
	if (errors_say(errors, "missing 'context'"))
		return PGCK_ERRCODE_BAD_ARGUMENT;
	return PGCK_ERRCODE_KMS_FAILURE;
}

static const char *
hint_for(long status, const char *errors)
{
	if (status == 403)
		return "Check the Vault policy of the database server's identity (see the README's Vault section).";
	if (errors_say(errors, "disallowed by policy"))
		return "The key's min_decryption_version is above the version of this wrapped key: lower it, or re-wrap the key with kms_rewrap_key() to the same reference before raising it.";
	if (errors_say(errors, "missing 'context'"))
		return "The Transit key is derived: create the pgcrypt_kms key with a non-empty kms_context.";
	if (errors_say(errors, "message authentication failed"))
		return "The wrapped key is damaged, or its kms_context differs.";
	return NULL;
}

static void ensure_token(double deadline_ms);
static void login(double deadline_ms);
static bool token_source_changed(void);

/*
 * A Vault request with retries.  what names the call in errors (a key
 * reference, or an auth path); with_session sends the session token (made
 * or renewed first) and, on a 403 "invalid token", logs in again once.
 * Returns only on a 2xx response in *resp (the caller frees it).
 */
static void
vault_request(PgckKmsOp op, const char *what, PgckHttpMethod method, const char *path,
			  const char *body, size_t body_len, const char *token, bool with_session,
			  double deadline_ms, PgckHttpResponse *resp)
{
	int			max_attempts = pgck_kms_max_attempts;
	int			attempt = 0;
	bool		relogged = false;
	bool		out_of_time = false;
	long		status = 0;
	PgckHttpResult result = PGCK_HTTP_DONE;
	char		errors[VAULT_MAX_ERRORS + 1];
	char		error_text[sizeof(resp->error_text)];
	char		error_public[sizeof(resp->error_public)];
	const char *hint;

	errors[0] = error_text[0] = error_public[0] = '\0';
	for (;;)
	{
		bool		retry = false;
		bool		throttled = false;

		attempt++;
		if (with_session)
		{
			ensure_token(deadline_ms);
			token = session.token;
		}
		perform_once(method, path, body, body_len, token, deadline_ms, resp);
		if (resp->result == PGCK_HTTP_DONE && resp->status >= 200 && resp->status < 300)
			return;

		result = resp->result;
		status = resp->status;
		strlcpy(error_text, resp->error_text, sizeof(error_text));
		strlcpy(error_public, resp->error_public, sizeof(error_public));
		errors[0] = '\0';
		if (result == PGCK_HTTP_DONE)
		{
			pgck_vj_parse_errors(resp->body, resp->body_len, errors, sizeof(errors));
			if (status == 403 && with_session && !relogged &&
				(errors_say(errors, "invalid token") ||
				 (session.lease_ms > 0 &&
				  pgck_http_now_ms() >= session.obtained_ms + session.lease_ms)) &&
				token_source_changed())
			{
				/* revoked or expired: a new login, and the call once more */
				relogged = true;
				session_release();
				pgck_http_response_free(resp);
				pgck_stats_kms_retry(op);
				elog(DEBUG1, "pgcrypt_kms: Vault token refused as invalid, logging in again");
				attempt--;
				continue;
			}
			if (status == 429)
				retry = throttled = true;
			else if (status >= 500 && status != 501)
				retry = true;
		}
		else
			retry = pgck_http_result_is_transient(result);
		pgck_http_response_free(resp);

		if (!retry || attempt >= max_attempts)
			break;
		if (!pgck_kms_wait_before_retry(op, attempt, throttled, deadline_ms))
		{
			out_of_time = true;
			break;
		}
		elog(DEBUG1, "pgcrypt_kms: retrying Vault %s (attempt %d of %d)",
			 op_names[op], attempt + 1, max_attempts);
	}

	if (result != PGCK_HTTP_DONE)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("Vault %s failed for \"%s\"", op_names[op], what),
				 errdetail_internal("Could not reach Vault: %s: %s (%d attempt%s%s).",
									pgck_http_result_name(result), error_public,
									attempt, attempt == 1 ? "" : "s",
									out_of_time ? ", pgcrypt_kms.kms_timeout reached" : ""),
				 /* pgcrypt_kms.vault_addr is superuser-only: the server log only */
				 errdetail_log("Could not reach Vault: %s: %s (%d attempt%s%s).",
							   pgck_http_result_name(result), error_text,
							   attempt, attempt == 1 ? "" : "s",
							   out_of_time ? ", pgcrypt_kms.kms_timeout reached" : "")));
	hint = hint_for(status, errors);
	ereport(ERROR,
			(errcode(sqlstate_for(status, errors)),
			 errmsg("Vault %s failed for \"%s\"", op_names[op], what),
			 errdetail_internal("Vault returned HTTP %ld: %s (%d attempt%s%s).",
								status, errors[0] ? errors : "(no error message)",
								attempt, attempt == 1 ? "" : "s",
								out_of_time ? ", pgcrypt_kms.kms_timeout reached" : ""),
			 hint ? errhint("%s", hint) : 0));
}

static void
malformed_response(PgckKmsOp op, const char *what, const char *problem)
{
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
			 errmsg("Vault %s returned a malformed response for \"%s\"", op_names[op], what),
			 errdetail_internal("%s", problem)));
}

/* ------------------------------------------------------------------
 * logins and renewal
 * ------------------------------------------------------------------ */

/* A secret read from a file, trailing white space removed; palloc'd. */
static char *
read_secret(const char *path, int flags, const char *what)
{
	char	   *s = pgck_kms_read_secret_file(path, VAULT_MAX_SECRET_FILE, flags, what);
	size_t		len = strlen(s);

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
					   s[len - 1] == ' ' || s[len - 1] == '\t'))
		s[--len] = '\0';
	if (len == 0)
	{
		pfree(s);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("the configured %s is empty", what),
				 errdetail_log("The file is \"%s\".", path)));
	}
	return s;
}

/*
 * A credential read from a file or the environment goes into an HTTP header
 * or a JSON string: refuse control characters, blanks, quotes, backslashes
 * and non-ASCII (wiping it first) with the source's name, not the value.
 */
static char *
plain_secret(char *s, const char *what)
{
	const char *p;

	for (p = s; *p; p++)
	{
		if (*p <= 0x20 || *p > 0x7e || *p == '"' || *p == '\\')
		{
			pgck_kms_wipe_pfree(s);
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("%s holds characters a Vault credential does not have", what),
					 errhint("A Vault credential is one line of visible ASCII characters.")));
		}
	}
	return s;
}

/* The token of the token method: the file, else VAULT_TOKEN; palloc'd. */
static char *
token_from_source(void)
{
	const char *env;

	if (pgck_vault_token_file != NULL && pgck_vault_token_file[0] != '\0')
		return plain_secret(read_secret(pgck_vault_token_file, PGCK_SECRET_PRIVATE, "Vault token file"),
							"the configured Vault token file");
	env = getenv("VAULT_TOKEN");
	if (env != NULL && env[0] != '\0')
		return plain_secret(pstrdup(env), "VAULT_TOKEN of the server's environment");
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("no Vault token is configured"),
			 errhint("Set pgcrypt_kms.vault_token_file, or VAULT_TOKEN in the server's environment, or use pgcrypt_kms.vault_auth = approle or kubernetes.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * May a refused token be replaced by a new login?  AppRole and Kubernetes:
 * always; a token: when its source now holds another one (an agent wrote a
 * fresh token to the file).
 */
static bool
token_source_changed(void)
{
	char	   *t;
	bool		changed;

	if (pgck_vault_auth != PGCK_VAULT_AUTH_TOKEN)
		return true;
	if (session.token == NULL)
		return true;
	t = token_from_source();
	changed = strcmp(t, session.token) != 0;
	pgck_kms_wipe_pfree(t);
	return changed;
}

/* Take a token into the session (malloc'd copy). */
static void
session_set(const char *token, int64_t lease_s, bool renewable)
{
	char	   *config = session_config();

	session_release();
	session.token = strdup(token);
	session.config = strdup(config);
	pfree(config);
	if (session.token == NULL || session.config == NULL)
	{
		session_release();
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	session.obtained_ms = pgck_http_now_ms();
	session.lease_ms = lease_s > 0 ? lease_s * 1000.0 : 0;
	session.login_lease_ms = session.lease_ms;
	session.renewable = renewable;
	if (!exit_registered)
	{
		on_proc_exit(vault_atexit, (Datum) 0);
		exit_registered = true;
	}
}

/* The auth object of a login or renewal response into the session. */
static void
take_auth(const PgckHttpResponse *resp, const char *what, bool keep_login_lease)
{
	char	   *token = palloc0(VAULT_MAX_TOKEN + 1);
	int64_t		lease = 0;
	bool		renewable = false;
	double		login_lease = session.login_lease_ms;
	PgckVjField	f[3] = {
		{.name = "client_token", .type = 's', .required = true, .str = token, .strsize = VAULT_MAX_TOKEN + 1},
		{.name = "lease_duration", .type = 'i', .num = &lease},
		{.name = "renewable", .type = 'b', .flag = &renewable},
	};
	const char *problem = pgck_vj_parse_fields(resp->body, resp->body_len, "auth", f, lengthof(f));

	if (problem == NULL && token[0] == '\0')
		problem = "The response has an empty client_token.";
	if (problem != NULL)
	{
		explicit_bzero(token, VAULT_MAX_TOKEN + 1);
		malformed_response(PGCK_OP_CREDENTIALS, what, problem);
	}
	session_set(token, lease, renewable);
	if (keep_login_lease)
		session.login_lease_ms = login_lease;
	explicit_bzero(token, VAULT_MAX_TOKEN + 1);
	pfree(token);
}

/* POST a login body (holding a secret) to auth/<mount>/login. */
static void
login_post(const char *mount, char *body, double deadline_ms)
{
	PgckHttpResponse resp;
	char	   *path = psprintf("auth/%s/login", mount);

	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		vault_request(PGCK_OP_CREDENTIALS, path, PGCK_HTTP_POST, path, body, strlen(body),
					  NULL, false, deadline_ms, &resp);
		take_auth(&resp, path, false);
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		explicit_bzero(body, strlen(body));
	}
	PG_END_TRY();
	pfree(path);
}

/* A JSON string of characters that need no escaping (checked). */
static void
check_plain(const char *s, const char *what)
{
	const char *p;

	for (p = s; *p; p++)
	{
		if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\')
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_KMS_FAILURE),
					 errmsg("%s holds characters a Vault credential does not have", what)));
	}
}

/* vault_auth = token: the token of the file or environment, looked up. */
static void
token_login(double deadline_ms)
{
	char	   *token = token_from_source();
	PgckHttpResponse resp;
	int64_t		ttl = 0;
	bool		renewable = false;
	PgckVjField	f[2] = {
		{.name = "ttl", .type = 'i', .num = &ttl},
		{.name = "renewable", .type = 'b', .flag = &renewable},
	};

	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		const char *problem;

		vault_request(PGCK_OP_CREDENTIALS, "auth/token/lookup-self", PGCK_HTTP_GET,
					  "auth/token/lookup-self", NULL, 0, token, false, deadline_ms, &resp);
		problem = pgck_vj_parse_fields(resp.body, resp.body_len, "data", f, lengthof(f));
		if (problem != NULL)
			malformed_response(PGCK_OP_CREDENTIALS, "auth/token/lookup-self", problem);
		session_set(token, ttl, renewable);
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		pgck_kms_wipe_pfree(token);
	}
	PG_END_TRY();
}

static void
login(double deadline_ms)
{
	double		start = pgck_http_now_ms();

	session_release();
	if (pgck_vault_auth == PGCK_VAULT_AUTH_APPROLE)
	{
		char	   *secret_id;
		char	   *body;

		if (pgck_vault_approle_role_id == NULL || pgck_vault_approle_role_id[0] == '\0' ||
			pgck_vault_approle_secret_id_file == NULL || pgck_vault_approle_secret_id_file[0] == '\0')
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("Vault AppRole login needs pgcrypt_kms.vault_approle_role_id and pgcrypt_kms.vault_approle_secret_id_file")));
		check_plain(pgck_vault_approle_role_id, "pgcrypt_kms.vault_approle_role_id");
		secret_id = read_secret(pgck_vault_approle_secret_id_file, PGCK_SECRET_PRIVATE,
								"Vault AppRole secret id file");
		(void) plain_secret(secret_id, "the configured Vault AppRole secret id file");
		body = palloc(strlen(pgck_vault_approle_role_id) + strlen(secret_id) + 40);
		sprintf(body, "{\"role_id\":\"%s\",\"secret_id\":\"%s\"}",
				pgck_vault_approle_role_id, secret_id);
		pgck_kms_wipe_pfree(secret_id);
		login_post(pgck_vault_approle_mount, body, deadline_ms);
		pfree(body);
	}
	else if (pgck_vault_auth == PGCK_VAULT_AUTH_KUBERNETES)
	{
		char	   *jwt;
		char	   *body;

		if (pgck_vault_kubernetes_role == NULL || pgck_vault_kubernetes_role[0] == '\0')
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
					 errmsg("Vault Kubernetes login needs pgcrypt_kms.vault_kubernetes_role")));
		check_plain(pgck_vault_kubernetes_role, "pgcrypt_kms.vault_kubernetes_role");
		/* the kubelet's projected token is often 0644: no privacy check */
		jwt = read_secret(pgck_vault_kubernetes_token_file, 0,
						  "Kubernetes service account token file");
		(void) plain_secret(jwt, "the configured Kubernetes service account token file");
		body = palloc(strlen(pgck_vault_kubernetes_role) + strlen(jwt) + 32);
		sprintf(body, "{\"role\":\"%s\",\"jwt\":\"%s\"}", pgck_vault_kubernetes_role, jwt);
		pgck_kms_wipe_pfree(jwt);
		login_post(pgck_vault_kubernetes_mount, body, deadline_ms);
		pfree(body);
	}
	else
		token_login(deadline_ms);
	pgck_stats_kms_call(PGCK_OP_CREDENTIALS, pgck_http_now_ms() - start, true);
	elog(DEBUG1, "pgcrypt_kms: Vault %s login, lease %.0f s%s", auth_name(),
		 session.lease_ms / 1000.0, session.renewable ? ", renewable" : "");
}

/* Renew the session token; false when Vault would not. */
static bool
renew(double deadline_ms)
{
	PgckHttpResponse resp;
	char	   *token = pstrdup(session.token);
	volatile bool ok = false;

	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		perform_once(PGCK_HTTP_POST, "auth/token/renew-self", "{}", 2, token, deadline_ms, &resp);
		if (resp.result == PGCK_HTTP_DONE && resp.status == 200)
		{
			take_auth(&resp, "auth/token/renew-self", true);
			ok = true;
		}
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		pgck_kms_wipe_pfree(token);
	}
	PG_END_TRY();
	pgck_stats_kms_call(PGCK_OP_CREDENTIALS, resp.elapsed_ms, ok);
	elog(DEBUG1, "pgcrypt_kms: Vault token renewal %s", ok ? "succeeded" : "refused");
	return ok;
}

/* A usable session token: made, renewed or replaced as its lease says. */
static void
ensure_token(double deadline_ms)
{
	char	   *config = session_config();
	bool		same = session.config != NULL && strcmp(session.config, config) == 0;
	double		age;

	pfree(config);
	if (session.token == NULL || !same)
	{
		login(deadline_ms);
		return;
	}
	if (session.lease_ms <= 0)
		return;
	age = pgck_http_now_ms() - session.obtained_ms;
	if (age >= session.lease_ms)
	{
		login(deadline_ms);
		return;
	}
	if (age < session.lease_ms * 2 / 3)
		return;
	if (session.renewable && renew(deadline_ms))
	{
		/* a renewal capped by the token's max TTL: log in afresh */
		if (pgck_vault_auth != PGCK_VAULT_AUTH_TOKEN &&
			session.lease_ms < session.login_lease_ms / 3)
			login(deadline_ms);
		return;
	}
	if (pgck_vault_auth != PGCK_VAULT_AUTH_TOKEN)
		login(deadline_ms);
}

/* ------------------------------------------------------------------
 * Transit
 * ------------------------------------------------------------------ */

/*
 * The base64 of the canonical form of kms_context, palloc'd; NULL for none
 * (NULL, "", "{}").
 */
static char *
context_b64(const char *kms_context, const char *what)
{
	const char *problem;
	char	   *b64 = pgck_vj_context_b64(kms_context, &problem);
	char	   *out;

	if (b64 == NULL && problem != NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid kms_context of Vault Transit key \"vault-transit:%s\"", what),
				 errdetail("%s", problem)));
	if (b64 == NULL)
		return NULL;
	out = pstrdup(b64);
	free(b64);
	return out;
}

/* A stored blob as a ciphertext string (palloc'd), checked. */
static char *
blob_ciphertext(const bytea *wrapped, const VaultKeyRef *ref)
{
	size_t		len = VARSIZE_ANY_EXHDR(wrapped);

	if (!pgck_vj_is_ciphertext(VARDATA_ANY(wrapped), len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("wrapped key for Vault Transit key \"vault-transit:%s\" is not a Transit ciphertext",
						ref->ref)));
	return pnstrdup(VARDATA_ANY(wrapped), len);
}

static bytea *
ciphertext_blob(const char *ct)
{
	size_t		len = strlen(ct);
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), ct, len);
	return b;
}

/* {"k":"v",...,"context":"..."} of plain values; palloc'd, exact size. */
static char *
build_body(const char *k1, const char *v1, const char *k2, const char *v2, const char *ctx)
{
	size_t		n = 3 + (k1 ? strlen(k1) + strlen(v1) + 6 : 0) +
		(k2 ? strlen(k2) + strlen(v2) + 6 : 0) + (ctx ? strlen(ctx) + 16 : 0);
	char	   *b = palloc(n);
	size_t		len = 1;

	b[0] = '{';
	b[1] = '\0';
	if (k1)
		len += snprintf(b + len, n - len, "\"%s\":\"%s\"", k1, v1);
	if (k2)
		len += snprintf(b + len, n - len, "%s\"%s\":\"%s\"", len > 1 ? "," : "", k2, v2);
	if (ctx)
		len += snprintf(b + len, n - len, "%s\"context\":\"%s\"", len > 1 ? "," : "", ctx);
	snprintf(b + len, n - len, "}");
	return b;
}

static char *
key_uri(const VaultKeyRef *ref)
{
	return psprintf("vault-transit:%s", ref->ref);
}

/* The ciphertext of a response, checked, palloc'd. */
static char *
response_ciphertext(PgckKmsOp op, const char *what, const PgckHttpResponse *resp)
{
	char	   *ct = palloc0(VAULT_MAX_CIPHERTEXT + 1);
	PgckVjField	f[1] = {
		{.name = "ciphertext", .type = 's', .required = true, .str = ct, .strsize = VAULT_MAX_CIPHERTEXT + 1},
	};
	const char *problem = pgck_vj_parse_fields(resp->body, resp->body_len, "data", f, lengthof(f));

	if (problem == NULL && !pgck_vj_is_ciphertext(ct, strlen(ct)))
		problem = "The ciphertext is not of the form vault:v<N>:<base64>.";
	if (problem != NULL)
		malformed_response(op, what, problem);
	return ct;
}

/* The plaintext key of a response (exactly key_len bytes) into dek_out. */
static void
response_plaintext(PgckKmsOp op, const char *what, const PgckHttpResponse *resp,
				   uint8 *dek_out, size_t key_len)
{
	char	   *b64 = palloc0(VAULT_MAX_PLAINTEXT_B64 + 1);
	PgckVjField f[1] = {
		{.name = "plaintext", .type = 's', .required = true, .str = b64, .strsize = VAULT_MAX_PLAINTEXT_B64 + 1},
	};
	const char *problem = pgck_vj_parse_fields(resp->body, resp->body_len, "data", f, lengthof(f));

	if (problem == NULL && !pgck_vj_decode_key(b64, dek_out, key_len))
		problem = "The plaintext key is not canonical base64 of the length asked for.";
	explicit_bzero(b64, VAULT_MAX_PLAINTEXT_B64 + 1);
	pfree(b64);
	if (problem != NULL)
		malformed_response(op, what, problem);
}

/* POST a Transit operation; the response into *resp (caller frees). */
static void
transit_post(PgckKmsOp op, const VaultKeyRef *ref, const char *verb, const char *body,
			 PgckHttpResponse *resp)
{
	char	   *path = psprintf("%s/%s/%s", ref->mount, verb, ref->key);

	vault_request(op, key_uri(ref), PGCK_HTTP_POST, path, body, strlen(body), NULL, true,
				  pgck_kms_call_deadline_ms(), resp);
	pfree(path);
}

static bytea *
do_generate_data_key(const char *key_ref, const char *kms_context, uint8 *dek_out,
					 size_t key_len, char **key_arn_out)
{
	VaultKeyRef ref;
	PgckHttpResponse resp;
	char	   *body;
	char		bits[8];
	bytea	   *volatile result = NULL;

	parse_key_ref(key_ref, &ref);
	if (key_len != 16 && key_len != 32 && key_len != 64)
		elog(ERROR, "Vault Transit data keys have 128, 256 or 512 bits");
	snprintf(bits, sizeof(bits), "%d", (int) (key_len * 8));
	body = build_body(NULL, NULL, NULL, NULL, context_b64(kms_context, key_ref));
	/* bits is a JSON number */
	body = psprintf("{\"bits\":%s%s%s", bits, strlen(body) > 2 ? "," : "", body + 1);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		char	   *ct;
		char	   *uri = key_uri(&ref);

		transit_post(PGCK_OP_GENERATE_DATA_KEY, &ref, "datakey/plaintext", body, &resp);
		ct = response_ciphertext(PGCK_OP_GENERATE_DATA_KEY, uri, &resp);
		response_plaintext(PGCK_OP_GENERATE_DATA_KEY, uri, &resp, dek_out, key_len);
		result = ciphertext_blob(ct);
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
	VaultKeyRef ref;
	PgckHttpResponse resp;
	char	   *body;

	parse_key_ref(key_ref, &ref);
	body = build_body("ciphertext", blob_ciphertext(wrapped, &ref), NULL, NULL,
					  context_b64(kms_context, key_ref));
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		transit_post(PGCK_OP_DECRYPT, &ref, "decrypt", body, &resp);
		response_plaintext(PGCK_OP_DECRYPT, key_uri(&ref), &resp, dek_out, key_len);
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
}

static bytea *
do_wrap_data_key(const char *key_ref, const char *kms_context, const uint8 *dek,
				 size_t key_len, char **key_arn_out)
{
	VaultKeyRef ref;
	PgckHttpResponse resp;
	char	   *volatile b64 = NULL;
	char	   *volatile body = NULL;
	bytea	   *volatile result = NULL;

	parse_key_ref(key_ref, &ref);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		char	   *ctx = context_b64(kms_context, key_ref);

		b64 = palloc(PGCK_BASE64_ENC_LEN(key_len) + 1);
		b64[pgck_base64_encode(dek, key_len, b64)] = '\0';
		body = build_body("plaintext", b64, NULL, NULL, ctx);
		transit_post(PGCK_OP_ENCRYPT, &ref, "encrypt", body, &resp);
		result = ciphertext_blob(response_ciphertext(PGCK_OP_ENCRYPT, key_uri(&ref), &resp));
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
		pgck_kms_wipe_pfree(b64);
		pgck_kms_wipe_pfree(body);
	}
	PG_END_TRY();
	return result;
}

/* Transit rewrap: the blob moves to the key's latest version, no plaintext here. */
static bytea *
rewrap_same_key(const VaultKeyRef *ref, const char *kms_context, const bytea *wrapped)
{
	PgckHttpResponse resp;
	char	   *body = build_body("ciphertext", blob_ciphertext(wrapped, ref), NULL, NULL,
								  context_b64(kms_context, ref->ref));
	bytea	   *volatile result = NULL;

	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		transit_post(PGCK_OP_REENCRYPT, ref, "rewrap", body, &resp);
		result = ciphertext_blob(response_ciphertext(PGCK_OP_REENCRYPT, key_uri(ref), &resp));
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
	return result;
}

/*
 * Transit rewraps within one key only: unwrap under the old key and wrap
 * under the new one; the plaintext data key is wiped at once.
 */
static bytea *
rewrap_other_key(const char *old_key_ref, const char *new_key_ref, const char *kms_context,
				 const bytea *wrapped)
{
	uint8		dek[PGCK_DEK_LEN];
	char	   *no_arn;
	bytea	   *volatile result = NULL;

	PG_TRY();
	{
		do_decrypt_data_key(old_key_ref, kms_context, wrapped, dek, sizeof(dek), &no_arn);
		result = do_wrap_data_key(new_key_ref, kms_context, dek, sizeof(dek), &no_arn);
	}
	PG_FINALLY();
	{
		explicit_bzero(dek, sizeof(dek));
	}
	PG_END_TRY();
	return result;
}

static bytea *
do_reencrypt_data_key(const char *old_key_ref, const char *new_key_ref,
					  const char *kms_context, const bytea *wrapped, char **key_arn_out)
{
	VaultKeyRef src;
	VaultKeyRef dst;

	parse_key_ref(old_key_ref, &src);
	parse_key_ref(new_key_ref, &dst);
	if (strcmp(src.mount, dst.mount) == 0 && strcmp(src.key, dst.key) == 0)
		return rewrap_same_key(&src, kms_context, wrapped);
	return rewrap_other_key(old_key_ref, new_key_ref, kms_context, wrapped);
}

static void
do_check_key(const char *key_ref)
{
	VaultKeyRef ref;
	PgckHttpResponse resp;
	char		type[64];
	bool		supports_encryption = false;
	bool		derived = false;
	PgckVjField	f[3] = {
		{.name = "type", .type = 's', .required = true, .str = type, .strsize = sizeof(type)},
		{.name = "supports_encryption", .type = 'b', .flag = &supports_encryption},
		{.name = "derived", .type = 'b', .flag = &derived},
	};
	char	   *path;
	char	   *uri;

	parse_key_ref(key_ref, &ref);
	uri = key_uri(&ref);
	path = psprintf("%s/keys/%s", ref.mount, ref.key);
	memset(&resp, 0, sizeof(resp));
	PG_TRY();
	{
		const char *problem;

		vault_request(PGCK_OP_DESCRIBE_KEY, uri, PGCK_HTTP_GET, path, NULL, 0, NULL, true,
					  pgck_kms_call_deadline_ms(), &resp);
		problem = pgck_vj_parse_fields(resp.body, resp.body_len, "data", f, lengthof(f));
		if (problem != NULL)
			malformed_response(PGCK_OP_DESCRIBE_KEY, uri, problem);
	}
	PG_FINALLY();
	{
		pgck_http_response_free(&resp);
	}
	PG_END_TRY();
	if (strcmp(type, "aes256-gcm96") != 0 && strcmp(type, "chacha20-poly1305") != 0 &&
		strcmp(type, "xchacha20-poly1305") != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("Vault Transit key \"%s\" is not a 256-bit symmetric encryption key", uri),
				 errdetail_internal("Its type is %s; aes256-gcm96 or chacha20-poly1305 is needed.", type)));
	if (f[1].found && !supports_encryption)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("Vault Transit key \"%s\" does not support encryption", uri)));
}

const PgckKmsProvider pgck_kms_vault_provider = {
	.scheme = "vault-transit",
	.generate_data_key = do_generate_data_key,
	.decrypt_data_key = do_decrypt_data_key,
	.reencrypt_data_key = do_reencrypt_data_key,
	.wrap_data_key = do_wrap_data_key,
	.check_key = do_check_key,
	.count_calls = true,		/* each a whole call, timed by kms_common.c */
};
