/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Define the pgcrypt_kms.* settings.
 *
 * Settings that could redirect key traffic (endpoint, CA file), reveal where
 * keys live (local key file, profile) or delay revocation (cache_ttl) are
 * PGC_SUSET and GUC_SUPERUSER_ONLY, so a non-superuser can neither change
 * nor read them.  None holds a secret.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "tcop/dest.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/guc.h"

#include "guc.h"

char	   *pgck_aws_region = NULL;
char	   *pgck_aws_endpoint = NULL;
char	   *pgck_aws_profile = NULL;
char	   *pgck_ca_file = NULL;
int			pgck_cache_ttl = 900;
int			pgck_cache_max_keys = 1000;
int			pgck_kms_connect_timeout = 2000;
int			pgck_kms_timeout = 10000;
int			pgck_kms_max_attempts = 3;
int			pgck_dek_max_age = 0;
int			pgck_dek_rotate_after = 0;
char	   *pgck_local_key_file = NULL;
char	   *pgck_pkcs11_module = NULL;
char	   *pgck_pkcs11_pin_file = NULL;
char	   *pgck_vault_addr = NULL;
char	   *pgck_vault_namespace = NULL;
int			pgck_vault_auth = PGCK_VAULT_AUTH_TOKEN;
char	   *pgck_vault_token_file = NULL;
char	   *pgck_vault_approle_role_id = NULL;
char	   *pgck_vault_approle_secret_id_file = NULL;
char	   *pgck_vault_approle_mount = NULL;
char	   *pgck_vault_kubernetes_role = NULL;
char	   *pgck_vault_kubernetes_token_file = NULL;
char	   *pgck_vault_kubernetes_mount = NULL;

static const struct config_enum_entry vault_auth_options[] = {
	{"token", PGCK_VAULT_AUTH_TOKEN, false},
	{"approle", PGCK_VAULT_AUTH_APPROLE, false},
	{"kubernetes", PGCK_VAULT_AUTH_KUBERNETES, false},
	{NULL, 0, false}
};
char	   *pgck_kmip_host = NULL;
int			pgck_kmip_port = 5696;
char	   *pgck_kmip_client_cert = NULL;
char	   *pgck_kmip_client_key = NULL;
char	   *pgck_kmip_ca_file = NULL;

int			pgck_shared_cache_size = 0;
int			pgck_unwrap_concurrency = 8;
int			pgck_prefetch_after = 3;
bool		pgck_refresh_ahead = true;

char	   *pgck_wrapping_regions = NULL;

bool		pgck_citus_applying = false;

/* A comma-separated list of AWS region names (letters, digits, '-'). */
static bool
check_region_list(char **newval, void **extra, GucSource source)
{
	const char *p;

	for (p = *newval ? *newval : ""; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
			  *p == ',' || *p == ' '))
		{
			GUC_check_errdetail("List AWS region names (lower-case letters, digits and \"-\"), separated by commas.");
			return false;
		}
	}
	return true;
}

static bool
check_endpoint(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
	{
		GUC_check_errdetail("The endpoint must be an http:// or https:// URL.");
		return false;
	}
	if (strpbrk(v, " \t\r\n") != NULL)
	{
		GUC_check_errdetail("The endpoint must not contain white space.");
		return false;
	}
	return true;
}

static bool
check_region(char **newval, void **extra, GucSource source)
{
	const char *p;

	for (p = *newval; p && *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
		{
			GUC_check_errdetail("A region name holds only lowercase letters, digits and hyphens, as in \"us-east-1\".");
			return false;
		}
	}
	return true;
}

static bool
check_absolute_path(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || is_absolute_path(*newval))
		return true;
	GUC_check_errdetail("The path must be absolute.");
	return false;
}

/* A Vault path (mount, namespace): segments of [A-Za-z0-9_.-], no "." or "..". */
static bool
check_vault_path(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	const char *seg = v;
	const char *p;

	if (v == NULL || v[0] == '\0')
		return true;
	for (p = v;; p++)
	{
		if (*p == '/' || *p == '\0')
		{
			size_t		n = p - seg;

			if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			{
				GUC_check_errdetail("A Vault path has non-empty segments separated by single slashes, none of them \".\" or \"..\", and no leading or trailing slash.");
				return false;
			}
			if (*p == '\0')
				break;
			seg = p + 1;
		}
		else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				   (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
		{
			GUC_check_errdetail("A Vault path holds only letters, digits, \"_-.\" and \"/\".");
			return false;
		}
	}
	return true;
}

void
pgck_guc_init(void)
{
	DefineCustomStringVariable("pgcrypt_kms.aws_region",
							   "AWS region of the KMS (empty: AWS_REGION, AWS_DEFAULT_REGION, the profile, or the key ARN).",
							   NULL, &pgck_aws_region, "",
							   PGC_SUSET, 0, check_region, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.aws_endpoint",
							   "URL of the KMS endpoint (empty: https://kms.<region>.amazonaws.com).",
							   "Plain http:// is accepted only for loopback addresses.",
							   &pgck_aws_endpoint, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_endpoint, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.aws_profile",
							   "Profile of the shared AWS credentials and config files (empty: AWS_PROFILE or default).",
							   NULL, &pgck_aws_profile, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.ca_file",
							   "File of CA certificates that KMS TLS connections are verified against (empty: system store).",
							   NULL, &pgck_ca_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.cache_ttl",
							"How long an unwrapped data key stays cached in a backend.",
							"Revoking KMS access takes effect within this time; kms_flush_cache() makes it immediate.",
							&pgck_cache_ttl, 900, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.cache_max_keys",
							"Most key versions a backend keeps unwrapped; the least recently used is evicted and wiped.",
							NULL, &pgck_cache_max_keys, 1000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	/* a PGC_POSTMASTER setting can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("pgcrypt_kms.shared_cache_size",
								"Entries of the shared key cache (with shared_preload_libraries); 0 turns it off.",
								"Each key version is then unwrapped once per cluster per cache_ttl; the cache is locked memory mapped by the postmaster.",
								&pgck_shared_cache_size, 0, 0, 1000000,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.unwrap_concurrency",
							"Most KMS unwraps kms_warm_cache() has in flight at once (worker processes plus the caller).",
							"Workers come from max_worker_processes; with none free the caller unwraps alone.",
							&pgck_unwrap_concurrency, 8, 1, 256,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("pgcrypt_kms.refresh_ahead",
							 "Whether the shared key cache's refresher unwraps keys in use again before they expire.",
							 "Off: shared entries expire at cache_ttl and the next statement that needs one waits for the KMS.",
							 &pgck_refresh_ahead, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.prefetch_after",
							"Key versions one statement must unwrap before the backend prefetches the whole keyring into the shared key cache; 0 = never.",
							"The prefetch unwraps concurrently (unwrap_concurrency) every active and decrypt-only version that fits in the shared cache's free entries.",
							&pgck_prefetch_after, 3, 0, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.kms_connect_timeout",
							"Time allowed to connect to the KMS.",
							NULL, &pgck_kms_connect_timeout, 2000, 100, 600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.kms_timeout",
							"Time allowed for one KMS operation, retries included.",
							NULL, &pgck_kms_timeout, 10000, 100, 3600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.kms_max_attempts",
							"Attempts per KMS operation on throttling, server and network errors.",
							NULL, &pgck_kms_max_attempts, 3, 1, 10,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.dek_max_age",
							"Age after which kms_encrypt rotates a key's data key (0: never).",
							NULL, &pgck_dek_max_age, 0, 0, PG_INT32_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.dek_rotate_after",
							"Test-only: encryptions after which a data key version is rotated (0: 2^31).",
							"Encryption is refused at twice this count (2^32 by default, NIST's bound for random 96-bit nonces).",
							&pgck_dek_rotate_after, 0, 0, PG_INT32_MAX,
							PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.local_key_file",
							   "Master key file of the development-only local: provider (created 0600 on first use).",
							   "Never use the local provider in production: anyone who can read this file can decrypt.",
							   &pgck_local_key_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.pkcs11_module",
							   "PKCS#11 module (shared library) of the token holding pkcs11: master keys.",
							   "Loaded into each backend that uses a pkcs11: key; only a superuser may set it.",
							   &pgck_pkcs11_module, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.pkcs11_pin_file",
							   "File holding the PKCS#11 token's user PIN (mode 0600, owned by the server's OS user).",
							   "The PIN itself is never a setting.",
							   &pgck_pkcs11_pin_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.kmip_host",
							   "Host name or IP address of the KMIP server of kmip: keys; its certificate must name it.",
							   NULL, &pgck_kmip_host, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("pgcrypt_kms.kmip_port",
							"TCP port of the KMIP server.",
							NULL, &pgck_kmip_port, 5696, 1, 65535,
							PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.kmip_client_cert",
							   "PEM file of the client certificate (and chain) presented to the KMIP server.",
							   NULL, &pgck_kmip_client_cert, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.kmip_client_key",
							   "PEM file of the KMIP client's private key; refused if group or others can access it.",
							   NULL, &pgck_kmip_client_key, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.kmip_ca_file",
							   "PEM file of the CA certificates that verify the KMIP server; empty: pgcrypt_kms.ca_file, else the system store.",
							   NULL, &pgck_kmip_ca_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);

	DefineCustomStringVariable("pgcrypt_kms.vault_addr",
							   "URL of the Vault or OpenBao server of vault-transit: keys, as in https://vault.example.com:8200.",
							   "Plain http:// is accepted only for loopback addresses.",
							   &pgck_vault_addr, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_endpoint, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_namespace",
							   "Vault Enterprise / OpenBao namespace of vault-transit: keys, sent as X-Vault-Namespace (empty: none).",
							   NULL, &pgck_vault_namespace, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_vault_path, NULL, NULL);
	DefineCustomEnumVariable("pgcrypt_kms.vault_auth",
							 "How the server logs in to Vault: token, approle or kubernetes.",
							 NULL, &pgck_vault_auth, PGCK_VAULT_AUTH_TOKEN, vault_auth_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_token_file",
							   "File holding the Vault token of vault_auth = token (empty: VAULT_TOKEN in the server's environment).",
							   "The file must not be accessible to group or others.",
							   &pgck_vault_token_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_approle_role_id",
							   "AppRole role id of vault_auth = approle.",
							   NULL, &pgck_vault_approle_role_id, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_approle_secret_id_file",
							   "File holding the AppRole secret id of vault_auth = approle.",
							   "The file must not be accessible to group or others.",
							   &pgck_vault_approle_secret_id_file, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_approle_mount",
							   "Mount path of the AppRole auth method.",
							   NULL, &pgck_vault_approle_mount, "approle",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_vault_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_kubernetes_role",
							   "Vault role of vault_auth = kubernetes.",
							   NULL, &pgck_vault_kubernetes_role, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_kubernetes_token_file",
							   "Service account token (JWT) file of vault_auth = kubernetes.",
							   NULL, &pgck_vault_kubernetes_token_file,
							   "/var/run/secrets/kubernetes.io/serviceaccount/token",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_absolute_path, NULL, NULL);
	DefineCustomStringVariable("pgcrypt_kms.vault_kubernetes_mount",
							   "Mount path of the Kubernetes auth method.",
							   NULL, &pgck_vault_kubernetes_mount, "kubernetes",
							   PGC_SUSET, GUC_SUPERUSER_ONLY, check_vault_path, NULL, NULL);

	DefineCustomStringVariable("pgcrypt_kms.wrapping_regions",
							   "AWS regions whose KMS wrappings of a key are tried first, in this order (the primary key included).",
							   "Comma-separated, e.g. 'eu-west-1, eu-central-1'; keys in other regions follow in their usual order (primary, then wrappings by number).",
							   &pgck_wrapping_regions, "",
							   PGC_SUSET, 0, check_region_list, NULL, NULL);

	/*
	 * Internal: on while a Citus worker applies a keyring change sent by the
	 * coordinator (citus_apply / citus_apply_all set it, transaction-local),
	 * which is what lets the change past the worker's citus_keyring_guard.
	 * PGC_SUSET under the reserved prefix so that no other role can forge it
	 * (an undefined placeholder could be set by anyone).
	 */
	DefineCustomBoolVariable("pgcrypt_kms.citus_applying",
							 "Internal: a Citus worker is applying a keyring change from the coordinator.",
							 NULL,
							 &pgck_citus_applying, false,
							 PGC_SUSET,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE | GUC_NO_RESET_ALL,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("pgcrypt_kms");
}

bool
pgck_client_may_see_hidden(void)
{
	if (whereToSendOutput != DestRemote)
		return true;
	return IsTransactionState() && has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_SETTINGS);
}
