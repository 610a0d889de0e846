/*-------------------------------------------------------------------------
 *
 * escrow.h
 *		Offline escrow wrapping: RSA-OAEP (SHA-256, MGF1-SHA-256, empty label)
 *		of a raw 32-byte key under an RSA public key of 3072 bits or more.
 *
 * Pure: OpenSSL only, no PostgreSQL headers (unit-tested directly).  The
 * format is FORMAT.md section 11.4.  Only public keys are ever handled: the
 * private key of an escrow wrapping never reaches the database.
 *
 * Memory: *der_out of pgck_escrow_parse_pem is malloc'd (the caller frees);
 * everything else is written into the caller's buffers.  Nothing here logs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_ESCROW_H
#define PGCK_ESCROW_H

#include <stddef.h>
#include <stdint.h>

#define PGCK_ESCROW_MIN_BITS 3072
#define PGCK_ESCROW_MAX_BITS 16384
#define PGCK_ESCROW_FP_LEN 32		/* SHA-256 of the DER SubjectPublicKeyInfo */
#define PGCK_ESCROW_MAX_WRAPPED (PGCK_ESCROW_MAX_BITS / 8)

typedef enum PgckEscrowStatus
{
	PGCK_ESCROW_OK = 0,
	PGCK_ESCROW_NOT_PEM_PUBLIC,	/* not a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) */
	PGCK_ESCROW_NOT_RSA,		/* another algorithm (EC, Ed25519, RSA-PSS, ...) */
	PGCK_ESCROW_TOO_SMALL,		/* RSA modulus under PGCK_ESCROW_MIN_BITS */
	PGCK_ESCROW_TOO_LARGE,		/* over PGCK_ESCROW_MAX_BITS */
	PGCK_ESCROW_BAD_DER,		/* stored DER does not parse, or has trailing bytes */
	PGCK_ESCROW_CRYPTO			/* OpenSSL failed (out of memory, ...) */
} PgckEscrowStatus;

/* A sentence for a status (no key material, no input echoed). */
extern const char *pgck_escrow_status_text(PgckEscrowStatus st);

/*
 * Parse a PEM public key (one "-----BEGIN PUBLIC KEY-----" block), check it
 * is RSA with PGCK_ESCROW_MIN_BITS..MAX_BITS bits, and return its DER
 * SubjectPublicKeyInfo (malloc'd), its modulus bits and its fingerprint.
 */
extern PgckEscrowStatus pgck_escrow_parse_pem(const char *pem, size_t pem_len,
											  uint8_t **der_out, size_t *der_len,
											  int *bits_out, uint8_t *fp_out);

/* Check stored DER as parse_pem checks PEM; *bits_out the modulus bits. */
extern PgckEscrowStatus pgck_escrow_check_der(const uint8_t *der, size_t der_len, int *bits_out);

/* SHA-256 of der (the fingerprint); false only if OpenSSL fails. */
extern int	pgck_escrow_fingerprint(const uint8_t *der, size_t der_len, uint8_t *fp_out);

/*
 * RSA-OAEP-encrypt key (key_len bytes) under the DER public key into out
 * (out_cap >= modulus bytes); *out_len = the modulus length in bytes.
 */
extern PgckEscrowStatus pgck_escrow_wrap(const uint8_t *der, size_t der_len,
										 const uint8_t *key, size_t key_len,
										 uint8_t *out, size_t out_cap, size_t *out_len);

#endif							/* PGCK_ESCROW_H */
