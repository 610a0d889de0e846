/*-------------------------------------------------------------------------
 *
 * guc.h
 *		pgcrypt_kms.* settings.  Defined and checked in guc.c.
 *
 * Credentials are never settings: a setting may name a profile or a file.
 * Settings that could redirect key traffic or reveal paths are
 * superuser-only (PGC_SUSET, GUC_SUPERUSER_ONLY).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_GUC_H
#define PGCK_GUC_H

extern char *pgck_aws_region;		/* "" = from environment / key ARN */
extern char *pgck_aws_endpoint;		/* "" = https://kms.<region>.amazonaws.com */
extern char *pgck_aws_profile;		/* "" = AWS_PROFILE or "default" */
extern char *pgck_ca_file;			/* "" = system CA store */
extern int	pgck_cache_ttl;			/* seconds */
extern int	pgck_cache_max_keys;
extern int	pgck_kms_connect_timeout;	/* milliseconds */
extern int	pgck_kms_timeout;		/* milliseconds, whole call incl. retries */
extern int	pgck_kms_max_attempts;
extern int	pgck_dek_max_age;		/* seconds, 0 = off */
extern int	pgck_dek_rotate_after;	/* test-only: encryptions, 0 = 2^31 */
extern char *pgck_pkcs11_module;	/* "" = pkcs11: provider unusable */
extern char *pgck_pkcs11_pin_file;	/* file holding the token user PIN */
extern char *pgck_local_key_file;	/* "" = local provider unusable */
extern char *pgck_kmip_host;		/* "" = kmip: provider unusable */
extern int	pgck_kmip_port;
extern char *pgck_kmip_client_cert;	/* PEM file paths */
extern char *pgck_kmip_client_key;
extern char *pgck_kmip_ca_file;		/* "" = pgcrypt_kms.ca_file, else system store */
extern int	pgck_shared_cache_size;	/* entries, 0 = no shared key cache */
extern int	pgck_unwrap_concurrency;	/* KMS unwraps in flight for kms_warm_cache */
extern int	pgck_prefetch_after;	/* cold misses in a statement before a prefetch, 0 = never */
extern bool pgck_refresh_ahead;	/* the shared cache's refresher refreshes keys in use */
extern bool pgck_citus_applying;	/* internal: a Citus worker applies the coordinator's keyring change */

/* Vault / OpenBao Transit (kms_vault.c) */
typedef enum PgckVaultAuth
{
	PGCK_VAULT_AUTH_TOKEN,
	PGCK_VAULT_AUTH_APPROLE,
	PGCK_VAULT_AUTH_KUBERNETES
} PgckVaultAuth;
extern char *pgck_vault_addr;		/* "" = Vault provider unusable */
extern char *pgck_vault_namespace;	/* "" = no X-Vault-Namespace */
extern int	pgck_vault_auth;		/* PgckVaultAuth */
extern char *pgck_vault_token_file;	/* "" = VAULT_TOKEN */
extern char *pgck_vault_approle_role_id;
extern char *pgck_vault_approle_secret_id_file;
extern char *pgck_vault_approle_mount;
extern char *pgck_vault_kubernetes_role;
extern char *pgck_vault_kubernetes_token_file;
extern char *pgck_vault_kubernetes_mount;

extern char *pgck_wrapping_regions;	/* "" = primary first, then wrappings by number */
extern void pgck_guc_init(void);

/*
 * May this process's client read superuser-only ("hidden") settings, as SHOW
 * decides (pg_read_all_settings)?  True when there is no client (workers:
 * their messages go to the server log only); false outside a transaction.
 * Messages a client may see name an endpoint, address or file only then.
 */
extern bool pgck_client_may_see_hidden(void);

#endif							/* PGCK_GUC_H */
