/*-------------------------------------------------------------------------
 *
 * aead.c
 *		AES-256-GCM, HMAC-SHA-256, HKDF-SHA-256 and nonce randomness; see
 *		aead.h.
 *
 * Pure C over OpenSSL 3.  Algorithms are fetched once per process
 * (pgck_crypto_init); keyed contexts are reused per key.
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * HMAC from precomputed inner/outer SHA-256 states copied by value needs the
 * low-level SHA256_CTX, which OpenSSL 3 marks deprecated but keeps: it costs
 * ~90 ns per tag against ~230 ns for EVP_MD_CTX_copy_ex (bench/).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "aead.h"

struct PgckAead
{
	EVP_CIPHER_CTX *enc;
	EVP_CIPHER_CTX *dec;
};

struct PgckHmac
{
	SHA256_CTX	inner;			/* absorbed key ^ ipad */
	SHA256_CTX	outer;			/* absorbed key ^ opad */
};

static EVP_CIPHER *aes256gcm = NULL;
static EVP_MD *sha256 = NULL;
static EVP_KDF *hkdf = NULL;

#define RANDOM_POOL_SIZE 4096
static uint8_t random_pool[RANDOM_POOL_SIZE];
static size_t random_pos = RANDOM_POOL_SIZE;	/* empty */
static bool atfork_registered = false;

/* In a forked child, never reuse the parent's random bytes. */
static void
random_pool_reset_in_child(void)
{
	OPENSSL_cleanse(random_pool, sizeof(random_pool));
	random_pos = RANDOM_POOL_SIZE;
}

bool
pgck_crypto_init(void)
{
	if (!atfork_registered)
		atfork_registered = pthread_atfork(NULL, NULL, random_pool_reset_in_child) == 0;
	if (aes256gcm == NULL)
		aes256gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (sha256 == NULL)
		sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (hkdf == NULL)
		hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	return aes256gcm != NULL && sha256 != NULL && hkdf != NULL;
}

void
pgck_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		OPENSSL_cleanse(p, len);
}

bool
pgck_equal_ct(const uint8_t *a, const uint8_t *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

PgckAead *
pgck_aead_new(const uint8_t key[PGCK_AES256_KEY_LEN])
{
	PgckAead   *aead;

	if (!pgck_crypto_init())
		return NULL;
	aead = calloc(1, sizeof(PgckAead));
	if (aead == NULL)
		return NULL;
	aead->enc = EVP_CIPHER_CTX_new();
	aead->dec = EVP_CIPHER_CTX_new();
	if (aead->enc == NULL || aead->dec == NULL ||
		EVP_EncryptInit_ex2(aead->enc, aes256gcm, key, NULL, NULL) != 1 ||
		EVP_DecryptInit_ex2(aead->dec, aes256gcm, key, NULL, NULL) != 1)
	{
		pgck_aead_free(aead);
		return NULL;
	}
	return aead;
}

void
pgck_aead_free(PgckAead *aead)
{
	if (aead == NULL)
		return;
	/* EVP_CIPHER_CTX_free cleanses the key schedule */
	EVP_CIPHER_CTX_free(aead->enc);
	EVP_CIPHER_CTX_free(aead->dec);
	free(aead);
}

bool
pgck_aead_seal(PgckAead *aead, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
			   const uint8_t *aad1, size_t aad1_len,
			   const uint8_t *aad2, size_t aad2_len,
			   const uint8_t *pt, size_t pt_len,
			   uint8_t *ct, uint8_t tag[PGCK_GCM_TAGLEN])
{
	EVP_CIPHER_CTX *ctx = aead->enc;
	int			n;
	int			fin;

	if (pt_len > INT32_MAX || aad1_len > INT32_MAX || aad2_len > INT32_MAX)
		return false;
	/* keep the key schedule, set only the nonce (12 bytes is GCM's default) */
	if (EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1)
		return false;
	if (aad1_len > 0 && EVP_EncryptUpdate(ctx, NULL, &n, aad1, (int) aad1_len) != 1)
		return false;
	if (aad2_len > 0 && EVP_EncryptUpdate(ctx, NULL, &n, aad2, (int) aad2_len) != 1)
		return false;
	n = 0;
	if (pt_len > 0 && EVP_EncryptUpdate(ctx, ct, &n, pt, (int) pt_len) != 1)
		return false;
	/* GCM writes nothing at Final; never form ct + n from a NULL ct */
	if (EVP_EncryptFinal_ex(ctx, ct != NULL ? ct + n : tag, &fin) != 1)
		return false;
	if ((size_t) (n + fin) != pt_len)
		return false;
	return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, PGCK_GCM_TAGLEN, tag) == 1;
}

bool
pgck_aead_open(PgckAead *aead, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
			   const uint8_t *aad1, size_t aad1_len,
			   const uint8_t *aad2, size_t aad2_len,
			   const uint8_t *ct, size_t ct_len,
			   const uint8_t tag[PGCK_GCM_TAGLEN], uint8_t *pt)
{
	EVP_CIPHER_CTX *ctx = aead->dec;
	int			n = 0;
	int			fin = 0;
	int			dummy;

	if (ct_len > INT32_MAX || aad1_len > INT32_MAX || aad2_len > INT32_MAX)
		goto fail;
	if (EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1)
		goto fail;
	if (aad1_len > 0 && EVP_DecryptUpdate(ctx, NULL, &dummy, aad1, (int) aad1_len) != 1)
		goto fail;
	if (aad2_len > 0 && EVP_DecryptUpdate(ctx, NULL, &dummy, aad2, (int) aad2_len) != 1)
		goto fail;
	if (ct_len > 0 && EVP_DecryptUpdate(ctx, pt, &n, ct, (int) ct_len) != 1)
		goto fail;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, PGCK_GCM_TAGLEN, (void *) tag) != 1)
		goto fail;
	if (EVP_DecryptFinal_ex(ctx, pt != NULL ? pt + n : (uint8_t *) tag, &fin) != 1)
		goto fail;
	if ((size_t) (n + fin) != ct_len)
		goto fail;
	return true;

fail:
	if (pt != NULL && ct_len <= INT32_MAX)
		pgck_wipe(pt, ct_len);
	return false;
}

PgckHmac *
pgck_hmac_new(const uint8_t *key, size_t key_len)
{
	PgckHmac   *h;
	uint8_t		k[64];
	uint8_t		pad[64];
	int			i;
	bool		ok;

	if (!pgck_crypto_init())
		return NULL;
	h = calloc(1, sizeof(PgckHmac));
	if (h == NULL)
		return NULL;
	memset(k, 0, sizeof(k));
	if (key_len > sizeof(k))
		SHA256(key, key_len, k);
	else if (key_len > 0)
		memcpy(k, key, key_len);

	for (i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x36;
	ok = SHA256_Init(&h->inner) == 1 && SHA256_Update(&h->inner, pad, 64) == 1;
	for (i = 0; i < 64; i++)
		pad[i] = k[i] ^ 0x5c;
	ok = ok && SHA256_Init(&h->outer) == 1 && SHA256_Update(&h->outer, pad, 64) == 1;
	pgck_wipe(k, sizeof(k));
	pgck_wipe(pad, sizeof(pad));
	if (!ok)
	{
		pgck_hmac_free(h);
		return NULL;
	}
	return h;
}

void
pgck_hmac_free(PgckHmac *hmac)
{
	if (hmac == NULL)
		return;
	pgck_wipe(hmac, sizeof(*hmac));
	free(hmac);
}

bool
pgck_hmac_sha256(PgckHmac *hmac, const uint8_t *msg, size_t msg_len,
				 uint8_t out[PGCK_HMAC_SHA256_LEN])
{
	SHA256_CTX	c = hmac->inner;	/* copies of the keyed states */
	uint8_t		ihash[PGCK_HMAC_SHA256_LEN];
	bool		ok;

	ok = (msg_len == 0 || SHA256_Update(&c, msg, msg_len) == 1) &&
		SHA256_Final(ihash, &c) == 1;
	c = hmac->outer;
	ok = ok && SHA256_Update(&c, ihash, sizeof(ihash)) == 1 &&
		SHA256_Final(out, &c) == 1;
	explicit_bzero(ihash, sizeof(ihash));
	explicit_bzero(&c, sizeof(c));
	return ok;
}

bool
pgck_hkdf_sha256(const uint8_t *salt, size_t salt_len,
				 const uint8_t *ikm, size_t ikm_len,
				 const uint8_t *info, size_t info_len,
				 uint8_t *out, size_t out_len)
{
	EVP_KDF_CTX *kctx;
	OSSL_PARAM	params[5];
	OSSL_PARAM *p = params;
	bool		ok;

	/* an empty input key is refused (OpenSSL's answer would depend on the pointer) */
	if (!pgck_crypto_init() || ikm == NULL || ikm_len == 0 ||
		out_len == 0 || out_len > 255 * PGCK_HMAC_SHA256_LEN)
		return false;
	kctx = EVP_KDF_CTX_new(hkdf);
	if (kctx == NULL)
		return false;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *) "SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) ikm, ikm_len);
	if (salt_len > 0)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *) salt, salt_len);
	if (info_len > 0)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *) info, info_len);
	*p = OSSL_PARAM_construct_end();
	ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
	EVP_KDF_CTX_free(kctx);
	return ok;
}

bool
pgck_random_bytes(uint8_t *out, size_t len)
{
	if (len == 0)
		return true;
	if (!atfork_registered && !pgck_crypto_init())
		return false;
	if (len > RANDOM_POOL_SIZE / 4)
		return RAND_bytes(out, (int) len) == 1;
	if (RANDOM_POOL_SIZE - random_pos < len)
	{
		if (RAND_bytes(random_pool, RANDOM_POOL_SIZE) != 1)
		{
			random_pos = RANDOM_POOL_SIZE;
			return false;
		}
		random_pos = 0;
	}
	memcpy(out, random_pool + random_pos, len);
	explicit_bzero(random_pool + random_pos, len);
	random_pos += len;
	return true;
}

bool
pgck_key_check(const uint8_t key[PGCK_AES256_KEY_LEN], uint8_t out[PGCK_KEY_CHECK_LEN])
{
	static const char label[] = "pgcrypt_kms key check v1";
	PgckHmac   *h = pgck_hmac_new(key, PGCK_AES256_KEY_LEN);
	uint8_t		mac[PGCK_HMAC_SHA256_LEN];
	bool		ok;

	if (h == NULL)
		return false;
	ok = pgck_hmac_sha256(h, (const uint8_t *) label, sizeof(label) - 1, mac);
	pgck_hmac_free(h);
	if (ok)
		memcpy(out, mac, PGCK_KEY_CHECK_LEN);
	pgck_wipe(mac, sizeof(mac));
	return ok;
}
