/*-------------------------------------------------------------------------
 *
 * aws_credentials.h
 *		AWS credentials the way the SDKs find them, cached per backend.
 *
 * Chain, first source that yields credentials wins, in botocore's order
 * (botocore/credentials.py, create_credential_resolver):
 *	1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
 *	   [, AWS_SESSION_TOKEN] -- skipped when pgcrypt_kms.aws_profile names a
 *	   profile explicitly (as botocore does for an explicit profile);
 *	2. the profile pgcrypt_kms.aws_profile, else AWS_PROFILE, else
 *	   AWS_DEFAULT_PROFILE, else "default", its keys read from the shared
 *	   credentials file (AWS_SHARED_CREDENTIALS_FILE, default
 *	   ~/.aws/credentials) and the config file (AWS_CONFIG_FILE, default
 *	   ~/.aws/config; the credentials file wins for a key in both):
 *	   a. assume role: role_arn with source_profile or credential_source ->
 *	      STS AssumeRole, SigV4-signed with the source credentials, passing
 *	      external_id, role_session_name and duration_seconds.  A source
 *	      profile is resolved by this same list (by b-f first when it has
 *	      static keys), up to 5 hops; a loop is refused, a profile naming
 *	      itself uses its own static keys.  credential_source is
 *	      Environment, EcsContainer or Ec2InstanceMetadata (sources 1, 3,
 *	      4).  mfa_serial is refused (22023): a server cannot prompt;
 *	   b. web identity: role_arn + web_identity_token_file in the profile,
 *	      else (no explicit profile) AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE
 *	      [+ AWS_ROLE_SESSION_NAME] -> STS AssumeRoleWithWebIdentity;
 *	   c. SSO: sso_session (sso_start_url, sso_region of its [sso-session]
 *	      section) or the legacy sso_start_url + sso_region, with
 *	      sso_account_id and sso_role_name: the token cached by
 *	      `aws sso login` in ~/.aws/sso/cache/<SHA-1 hex of the session
 *	      name, else of the start URL>.json (expired or missing: refused,
 *	      the server cannot log in) -> the portal's GetRoleCredentials at
 *	      AWS_ENDPOINT_URL_SSO, else AWS_ENDPOINT_URL, else
 *	      https://portal.sso.<sso_region>.amazonaws.com;
 *	   d. static keys in the credentials file;
 *	   e. credential_process: the command, split into words as botocore
 *	      does (Python's shlex) and run without a shell, with the server's environment,
 *	      stdin /dev/null and no other descriptor; its stdout is botocore's
 *	      Version 1 JSON; it must finish within pgcrypt_kms.kms_timeout and
 *	      is killed on timeout or cancel; a non-zero exit is an error naming
 *	      the code; its stderr is counted, never shown;
 *	   f. static keys in the config file;
 *	STS: AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else
 *	https://sts.<region>.amazonaws.com;
 *	3. container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (against
 *	   http://169.254.170.2) or AWS_CONTAINER_CREDENTIALS_FULL_URI (https,
 *	   or http to loopback / the ECS and EKS link-local addresses), with
 *	   AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN;
 *	4. EC2 IMDSv2 at AWS_EC2_METADATA_SERVICE_ENDPOINT, else
 *	   http://169.254.169.254 (http://[fd00:ec2::254] when
 *	   AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6); skipped when
 *	   AWS_EC2_METADATA_DISABLED=true.
 * "~" is the HOME of the server process.
 *
 * Caching: the result is kept in malloc'd memory, wiped when replaced and
 * at backend exit.  Temporary credentials (web identity, assume role, SSO,
 * container, instance metadata, a credential_process that gives an
 * Expiration) are refreshed before they expire, by resolving the chain
 * again (an assumed role's source credentials included): with less than 15 minutes left a refresh is tried and a failure
 * keeps the current ones (advisory); with less than 10 minutes left the
 * refresh must succeed (mandatory).  Static credentials (and those of a
 * credential_process without Expiration) are re-read every 15 minutes, so
 * rotated keys are picked up.
 *
 * Never does any credential value reach an error message or a log line.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_AWS_CREDENTIALS_H
#define PGCK_AWS_CREDENTIALS_H

#include "postgres.h"

#include <time.h>

typedef struct PgckAwsCredentials
{
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;	/* NULL for long-term credentials */
	time_t		expiration;		/* 0 when they do not expire */
	const char *source;			/* static: "environment", "profile", ... */
} PgckAwsCredentials;

/*
 * The backend's current credentials, resolved or refreshed as needed.
 * deadline_ms (pgck_http_now_ms() scale) bounds any network fetch.  The
 * returned struct and its strings stay valid until the next call of a
 * function of this module; the caller must not keep copies beyond its
 * request (or must wipe them).  ereports 58000 when no source yields
 * credentials, naming the sources tried but no value.
 */
extern const PgckAwsCredentials *pgck_aws_credentials_get(double deadline_ms);

/*
 * Forget the cached credentials (wiping them): the next get resolves the
 * chain again.  For ExpiredTokenException and UnrecognizedClientException.
 */
extern void pgck_aws_credentials_invalidate(void);

/* True when the cached credentials could be renewed by resolving again. */
extern bool pgck_aws_credentials_refreshable(void);

/*
 * The region from pgcrypt_kms.aws_region, AWS_REGION, AWS_DEFAULT_REGION
 * or the profile's "region" in the config file, palloc'd; NULL if none.
 */
extern char *pgck_aws_default_region(void);

/* The profile in effect (see above); palloc'd. */
extern char *pgck_aws_profile_name(void);

/* Environment variable value, or NULL when unset or empty. */
extern const char *pgck_aws_getenv(const char *name);

#endif							/* PGCK_AWS_CREDENTIALS_H */
