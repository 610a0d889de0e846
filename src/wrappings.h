/*-------------------------------------------------------------------------
 *
 * wrappings.h
 *		Additional wrappings of a key (issue 15): another KMS key, or an
 *		offline escrow RSA public key.  Tables pgcrypt_kms.key_wrappings and
 *		pgcrypt_kms.wrapped_keys (FORMAT.md section 11).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_WRAPPINGS_H
#define PGCK_WRAPPINGS_H

#include "postgres.h"

/*
 * A new secret of key name was just stored (rotation: secret "dek" with its
 * key_versions.id; index key rotation: "index" with its index_key_version):
 * wrap it under every additional wrapping of the key and store the blobs.
 * Caller: inside SPI, as the keyring owner (keyring.c's admin functions),
 * holding the plaintext (32 bytes, locked memory, not modified) and the
 * primary blob it made under primary_ref.  Nothing when the key has no
 * additional wrapping or the 0.3.0 tables do not exist yet.
 */
extern void pgck_wrappings_wrap_new(const char *name, const char *kms_context,
									const char *secret, int32 version,
									const char *primary_ref, const bytea *primary_blob,
									const uint8 *plaintext, const bytea *check);

#endif							/* PGCK_WRAPPINGS_H */
