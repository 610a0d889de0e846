/*-------------------------------------------------------------------------
 *
 * aead.h
 *		AES-256-GCM, HMAC-SHA-256 and HKDF-SHA-256 helpers over OpenSSL 3.
 *
 * Pure C (no PostgreSQL dependency); tested against Project Wycheproof.
 * The hot paths keep keyed OpenSSL objects per key so that no algorithm is
 * fetched and no context is built per value:
 *	- PgckAead holds one encrypt and one decrypt context of the provider that
 *	  implements AES-256-GCM, keyed once and called through the provider's
 *	  functions (EVP contexts when the provider lacks one, or PGCK_AEAD_EVP
 *	  is set); each seal/open only sets a new nonce and the tag.
 *	- PgckHmac holds SHA-256 states that have absorbed key^ipad and key^opad;
 *	  each MAC copies them instead of re-keying: by value when the fetched
 *	  SHA-256 is the default provider's, otherwise through that provider
 *	  (a FIPS provider then computes every MAC; see aead.c).
 * Objects are malloc'd by their _new function and released (and cleansed by
 * OpenSSL) by their _free function; callers wipe their own key copies.
 * The pages of the keyed objects are locked and left out of core dumps
 * (keypages.h) while they live.
 * Not thread-safe: one object per backend (PostgreSQL backends are
 * single-threaded).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_AEAD_H
#define PGCK_AEAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define PGCK_AES256_KEY_LEN		32
#define PGCK_GCM_NONCE_LEN		12
#define PGCK_GCM_TAGLEN			16
#define PGCK_HMAC_SHA256_LEN	32

typedef struct PgckAead PgckAead;
typedef struct PgckHmac PgckHmac;

/* Fetch the algorithms once; returns false if OpenSSL lacks them. */
extern bool pgck_crypto_init(void);

/* Keyed AES-256-GCM; NULL on OpenSSL failure. */
extern PgckAead *pgck_aead_new(const uint8_t key[PGCK_AES256_KEY_LEN]);
extern void pgck_aead_free(PgckAead *aead);

/*
 * PGCK_KEYPAGES_* bits (keypages.h): what could not be done so far for the
 * keyed objects of this process (their pages locked, or left out of core
 * dumps), for the caller to warn about once.
 */
extern int	pgck_aead_unprotected(void);

/*
 * Encrypt pt[0..pt_len) into ct (same length) and write the 16-byte tag.
 * The AAD is aad1 || aad2 (either may be empty).  Returns false on an OpenSSL
 * failure.
 */
extern bool pgck_aead_seal(PgckAead *aead, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
						   const uint8_t *aad1, size_t aad1_len,
						   const uint8_t *aad2, size_t aad2_len,
						   const uint8_t *pt, size_t pt_len,
						   uint8_t *ct, uint8_t tag[PGCK_GCM_TAGLEN]);

/*
 * Decrypt and verify.  Returns true only if the tag verifies; on false the
 * caller must discard pt (it is zeroed here).
 */
extern bool pgck_aead_open(PgckAead *aead, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
						   const uint8_t *aad1, size_t aad1_len,
						   const uint8_t *aad2, size_t aad2_len,
						   const uint8_t *ct, size_t ct_len,
						   const uint8_t tag[PGCK_GCM_TAGLEN], uint8_t *pt);

/*
 * How this process computes HMAC-SHA-256: "sha256-ctx" (low-level states,
 * the fetched SHA-256 being the default provider's), "provider" (the fetched
 * SHA-256's provider functions), "evp", or "unavailable".
 */
extern const char *pgck_hmac_path(void);

/*
 * May the low-level SHA-256 code stand in for a SHA-256 fetched from the
 * provider of this name?  Only for OpenSSL's "default" provider, whose own
 * SHA-256 is that code; never for a FIPS or any other provider.
 */
extern bool pgck_hmac_lowlevel_for(const char *provider_name);

/* HMAC-SHA-256 with precomputed pads; any key length. */
extern PgckHmac *pgck_hmac_new(const uint8_t *key, size_t key_len);
extern void pgck_hmac_free(PgckHmac *hmac);
extern bool pgck_hmac_sha256(PgckHmac *hmac, const uint8_t *msg, size_t msg_len,
							 uint8_t out[PGCK_HMAC_SHA256_LEN]);

/* HKDF-SHA-256 (RFC 5869) extract-and-expand; false on failure, empty ikm, or out_len > 255*32. */
extern bool pgck_hkdf_sha256(const uint8_t *salt, size_t salt_len,
							 const uint8_t *ikm, size_t ikm_len,
							 const uint8_t *info, size_t info_len,
							 uint8_t *out, size_t out_len);

/*
 * Fill out with len random bytes from a per-process buffer refilled in bulk
 * with RAND_bytes (a per-call RAND_bytes costs ~1 us).  A pthread_atfork
 * child handler empties and wipes the buffer in every forked child, and
 * consumed bytes are wiped.
 * Returns false if the CSPRNG fails.
 */
extern bool pgck_random_bytes(uint8_t *out, size_t len);

/*
 * The key-check value of a 32-byte key: the first PGCK_KEY_CHECK_LEN bytes of
 * HMAC-SHA-256(key, "pgcrypt_kms key check v1").  Stored beside each wrapped
 * key, it tells which key a wrapped blob holds without revealing it, so an
 * unwrapped key is verified before use and a cache entry is never mistaken
 * for another key with the same id.
 */
#define PGCK_KEY_CHECK_LEN 16
extern bool pgck_key_check(const uint8_t key[PGCK_AES256_KEY_LEN], uint8_t out[PGCK_KEY_CHECK_LEN]);

/* Wipe a buffer in a way the compiler cannot drop. */
extern void pgck_wipe(void *p, size_t len);

/* Constant-time comparison. */
extern bool pgck_equal_ct(const uint8_t *a, const uint8_t *b, size_t len);

#endif							/* PGCK_AEAD_H */
