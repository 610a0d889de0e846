/*-------------------------------------------------------------------------
 *
 * kms.h
 *		The provider interface: how the keyring gets data keys from a KMS.
 *
 * A key reference is a URI "<scheme>:<rest>" as stored in the keyring
 * ("aws-kms:alias/app", "local:dev").  pgck_kms_provider_for() picks the
 * provider by scheme; each provider receives <rest> only.
 *
 * Rules every provider keeps:
 *	- Plaintext key bytes are written only into the caller's buffer (which
 *	  the caller keeps in locked memory and wipes); a provider wipes every
 *	  temporary copy it makes (explicit_bzero) before freeing it.
 *	- Failures are reported with ereport(ERROR) and a SQLSTATE from the
 *	  README's table (never class 08); the KMS error type and request id go
 *	  into errdetail_internal; never a key, credential, request body or
 *	  plaintext.
 *	- Calls are interruptible (statement_timeout, pg_cancel_backend).
 *	- Returned wrapped blobs are palloc'd in CurrentMemoryContext.
 *
 * kms_context is the KMS encryption context of the column key as a JSON
 * object text ("{}" or NULL when none); providers bind it to the wrapped
 * key (AWS: EncryptionContext; local: AAD).
 *
 * Key ARNs: a reference may name a key indirectly (an AWS alias, which can
 * be re-pointed to another key at any time).  Every call that wraps or
 * unwraps reports, through key_arn_out, the provider's canonical name of
 * the master key that did it (AWS: the key ARN of the response's KeyId),
 * palloc'd, or NULL when the provider has none (local:) or the KMS did not
 * say.  The keyring stores it with the wrapped key and unwraps with it
 * later, so re-pointing an alias never orphans an existing wrapped key.
 * A reference passed to decrypt_data_key or as the old reference of
 * reencrypt_data_key names the key the blob was wrapped under: a provider
 * pins the call to it where the KMS allows (AWS: KeyId / SourceKeyId),
 * except for an alias, which may no longer point there: AWS then reads the
 * key from the blob's own metadata (symmetric keys) and reports it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KMS_H
#define PGCK_KMS_H

#include "postgres.h"

#define PGCK_DEK_LEN 32

/* KMS operations counted in kms_cache_stats() */
typedef enum PgckKmsOp
{
	PGCK_OP_GENERATE_DATA_KEY = 0,
	PGCK_OP_DECRYPT,
	PGCK_OP_REENCRYPT,
	PGCK_OP_ENCRYPT,
	PGCK_OP_DESCRIBE_KEY,
	PGCK_OP_GENERATE_RANDOM,
	PGCK_OP_CREDENTIALS,
	PGCK_NUM_OPS
} PgckKmsOp;

typedef struct PgckKmsProvider
{
	const char *scheme;			/* "aws-kms", "local" */

	/*
	 * New random data key of key_len bytes: plaintext into dek_out, the
	 * wrapped blob (exactly as the KMS returned it) as the result.
	 */
	bytea	   *(*generate_data_key) (const char *key_ref, const char *kms_context,
									  uint8 *dek_out, size_t key_len, char **key_arn_out);

	/* Unwrap a blob made by generate_data_key into dek_out (key_len bytes). */
	void		(*decrypt_data_key) (const char *key_ref, const char *kms_context,
									 const bytea *wrapped, uint8 *dek_out, size_t key_len,
									 char **key_arn_out);

	/*
	 * Re-wrap a blob under another master key of the same provider without
	 * the plaintext key passing through this process (AWS: ReEncrypt).
	 * *key_arn_out names the new master key.
	 */
	bytea	   *(*reencrypt_data_key) (const char *old_key_ref, const char *new_key_ref,
									   const char *kms_context, const bytea *wrapped,
									   char **key_arn_out);

	/*
	 * Wrap a given plaintext data key (key_len bytes) under a master key,
	 * for moving a key between providers (kms_rewrap_key to another
	 * scheme), where the plaintext key necessarily passes through this
	 * process (AWS: Encrypt).  The result is what decrypt_data_key of this
	 * provider accepts.  NULL when the provider cannot.
	 */
	bytea	   *(*wrap_data_key) (const char *key_ref, const char *kms_context,
								  const uint8 *dek, size_t key_len, char **key_arn_out);

	/* Check that a master key exists and is usable; ereport if not. */
	void		(*check_key) (const char *key_ref);

	/*
	 * true: each entry point is one whole call, which pgck_kms_* below time
	 * and count in kms_cache_stats() (AWS, Vault); false: the provider counts
	 * its own requests (local: the crypto alone; KMIP: each request; PKCS#11:
	 * each token operation).
	 */
	bool		count_calls;
} PgckKmsProvider;

/*
 * Call a provider: the keyring calls providers only through these (never
 * provider->fn directly).  They set *key_arn_out to NULL first, wipe
 * dek_out when a call that fills it fails, and time and count the call when
 * the provider's count_calls says so (kms_common.c).
 */
extern bytea *pgck_kms_generate_data_key(const PgckKmsProvider *provider, const char *key_ref,
										 const char *kms_context, uint8 *dek_out,
										 size_t key_len, char **key_arn_out);
extern void pgck_kms_decrypt_data_key(const PgckKmsProvider *provider, const char *key_ref,
									  const char *kms_context, const bytea *wrapped,
									  uint8 *dek_out, size_t key_len, char **key_arn_out);
extern bytea *pgck_kms_reencrypt_data_key(const PgckKmsProvider *provider,
										  const char *old_key_ref, const char *new_key_ref,
										  const char *kms_context, const bytea *wrapped,
										  char **key_arn_out);
extern bytea *pgck_kms_wrap_data_key(const PgckKmsProvider *provider, const char *key_ref,
									 const char *kms_context, const uint8 *dek, size_t key_len,
									 char **key_arn_out);
extern void pgck_kms_check_key(const PgckKmsProvider *provider, const char *key_ref);

/*
 * Look up the provider for a full key URI; ereports 22023 on an unknown or
 * malformed URI.  *rest points into uri, after the colon.
 */
extern const PgckKmsProvider *pgck_kms_provider_for(const char *uri, const char **rest);

extern const PgckKmsProvider pgck_kms_local_provider;
extern const PgckKmsProvider pgck_kms_aws_provider;
extern const PgckKmsProvider pgck_kms_pkcs11_provider;
extern const PgckKmsProvider pgck_kms_vault_provider;
extern const PgckKmsProvider pgck_kms_kmip_provider;

/* Counters shown by kms_cache_stats(); see keycache.c */
extern void pgck_stats_kms_call(PgckKmsOp op, double elapsed_ms, bool ok);
extern void pgck_stats_kms_retry(PgckKmsOp op);
/* an unwrap that succeeded through an additional wrapping after the primary refused */
extern void pgck_stats_kms_fallback(void);

extern void pgck_kms_local_init(void);
extern void pgck_kms_aws_init(void);
extern void pgck_kms_pkcs11_init(void);
extern void pgck_kms_kmip_init(void);

#endif							/* PGCK_KMS_H */
