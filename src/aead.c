/*-------------------------------------------------------------------------
 *
 * aead.c
 *		AES-256-GCM, HMAC-SHA-256, HKDF-SHA-256 and nonce randomness; see
 *		aead.h.
 *
 * Pure C over OpenSSL 3.  Algorithms are fetched once per process
 * (pgck_crypto_init); keyed contexts are reused per key.
 *
 * AES-256-GCM calls the functions of the provider that implements the
 * fetched cipher (default or FIPS) through its dispatch table, the provider
 * interface that OSSL_PROVIDER_query_operation() returns and that every
 * provider keeps stable across 3.x.  That is the same code EVP_Encrypt*()
 * runs, minus what EVP adds per call on a keyed context: a parameter query
 * for the IV length on every nonce and the EVP_CIPHER_CTX_ctrl to
 * OSSL_PARAM translation of the tag, half the cost of a short value
 * (bench/crypto_micro.c: 145 against 265 ns per 20-byte seal or open).
 * The tag goes through a prebuilt OSSL_PARAM array.  When the provider's
 * table lacks a function, or PGCK_AEAD_EVP is set in the environment (so
 * the tests cover both), the same operations go through EVP.
 *
 * HMAC-SHA-256 keeps SHA-256 states that have absorbed key^ipad and
 * key^opad.  When the fetched SHA-256 is the default provider's, they are
 * low-level SHA256_CTX copied by value per MAC (the code the default
 * provider runs itself, without a context to allocate per MAC).  When it is
 * any other provider's (a FIPS provider: then every primitive must run in
 * it), they are that provider's digest contexts, called through its
 * dispatch table and duplicated per MAC; EVP_MD_CTX when its table lacks a
 * function or PGCK_AEAD_EVP is set.  PGCK_HMAC_DISPATCH makes the default
 * provider take the dispatch path too, so the tests cover all three.
 *
 * Keyed objects live in the heap (OpenSSL allocates its contexts), so their
 * pages are locked and left out of core dumps (keypages.c) before a key goes
 * in: the provider's GCM contexts (the AES-256 key schedule starts with the
 * key itself; their size is malloc_usable_size() while OpenSSL allocates
 * with malloc), the HMAC states and the provider's keyed digest contexts.
 * What could not be protected (an EVP
 * context, whose provider context is out of reach; a custom OpenSSL
 * allocator) is reported by pgck_aead_unprotected() for the caller to warn.
 *
 *-------------------------------------------------------------------------
 */
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * HMAC from precomputed inner/outer SHA-256 states copied by value needs the
 * low-level SHA256_CTX, which OpenSSL 3 marks deprecated but keeps: it costs
 * ~90 ns per tag against ~230 ns for EVP_MD_CTX_copy_ex (bench/).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "aead.h"
#include "keypages.h"

/*
 * One keyed context per direction: provider contexts (gcm.ok) or EVP
 * contexts.  Either holds the key schedule in OpenSSL's memory and is
 * cleansed by its free function.
 */
struct PgckAead
{
	void	   *enc;
	void	   *dec;
	size_t		enc_held;		/* bytes of enc held by keypages, 0 if none */
	size_t		dec_held;
};

/*
 * PGCK_KEYPAGES_DUMPABLE when a keyed object's pages could not even be asked
 * for (an EVP context, an unknown size); keypages.c records its own failures
 */
static int	unprotected = 0;

/* The AES-256-GCM provider functions (all set, or ok is false) */
static struct
{
	bool		ok;
	void	   *provctx;
	OSSL_FUNC_cipher_newctx_fn *newctx;
	OSSL_FUNC_cipher_freectx_fn *freectx;
	OSSL_FUNC_cipher_encrypt_init_fn *einit;
	OSSL_FUNC_cipher_decrypt_init_fn *dinit;
	OSSL_FUNC_cipher_update_fn *update;
	OSSL_FUNC_cipher_final_fn *final;
	OSSL_FUNC_cipher_get_ctx_params_fn *get_ctx_params;
	OSSL_FUNC_cipher_set_ctx_params_fn *set_ctx_params;
}			gcm;
static bool gcm_looked_up = false;

/*
 * How HMAC-SHA-256 runs in this process (see the file header): decided once,
 * before the first PgckHmac is keyed, and never changed, so every object is
 * on this path.
 */
typedef enum
{
	HMAC_UNDECIDED = 0,
	HMAC_SHA256_CTX,			/* low-level states of the default provider's code */
	HMAC_DISPATCH,				/* the fetched SHA-256's provider functions */
	HMAC_EVP					/* EVP_MD_CTX */
} HmacPath;

static HmacPath hmac_path = HMAC_UNDECIDED;

/* The SHA-256 provider functions (all set, or ok is false) */
static struct
{
	bool		ok;
	void	   *provctx;
	OSSL_FUNC_digest_newctx_fn *newctx;
	OSSL_FUNC_digest_freectx_fn *freectx;
	OSSL_FUNC_digest_dupctx_fn *dupctx;
	OSSL_FUNC_digest_init_fn *init;
	OSSL_FUNC_digest_update_fn *update;
	OSSL_FUNC_digest_final_fn *final;
}			sha;

struct PgckHmac
{
	SHA256_CTX	inner;			/* HMAC_SHA256_CTX: absorbed key ^ ipad */
	SHA256_CTX	outer;			/* and key ^ opad */
	void	   *pinner;			/* HMAC_DISPATCH: provider contexts, or */
	void	   *pouter;			/* HMAC_EVP: EVP_MD_CTX, absorbed likewise */
	size_t		pinner_held;	/* bytes of pinner held by keypages, 0 if none */
	size_t		pouter_held;
	bool		held;			/* its pages are held by keypages */
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

/* Does the ':'-separated list of names hold name (case-insensitively)? */
static bool
names_include(const char *names, const char *name)
{
	size_t		len = strlen(name);
	const char *p = names;

	while (p != NULL && *p != '\0')
	{
		if (strncasecmp(p, name, len) == 0 && (p[len] == ':' || p[len] == '\0'))
			return true;
		p = strchr(p, ':');
		if (p != NULL)
			p++;
	}
	return false;
}

/*
 * Hand take() each function of the implementation of name (one of its
 * names) that prov offers for operation_id; nothing if it offers none.
 */
static void
provider_functions(const OSSL_PROVIDER *prov, int operation_id, const char *name,
				   void (*take) (const OSSL_DISPATCH *d))
{
	const OSSL_ALGORITHM *algs;
	const OSSL_ALGORITHM *a;
	const OSSL_DISPATCH *d;
	int			no_store = 0;

	algs = OSSL_PROVIDER_query_operation(prov, operation_id, &no_store);
	for (a = algs; a != NULL && a->algorithm_names != NULL; a++)
		if (names_include(a->algorithm_names, name))
			break;
	if (a != NULL && a->algorithm_names != NULL)
		for (d = a->implementation; d->function_id != 0; d++)
			take(d);
	if (algs != NULL)
		OSSL_PROVIDER_unquery_operation(prov, operation_id, algs);
}

static void
gcm_take(const OSSL_DISPATCH *d)
{
	switch (d->function_id)
	{
		case OSSL_FUNC_CIPHER_NEWCTX:
			gcm.newctx = OSSL_FUNC_cipher_newctx(d);
			break;
		case OSSL_FUNC_CIPHER_FREECTX:
			gcm.freectx = OSSL_FUNC_cipher_freectx(d);
			break;
		case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
			gcm.einit = OSSL_FUNC_cipher_encrypt_init(d);
			break;
		case OSSL_FUNC_CIPHER_DECRYPT_INIT:
			gcm.dinit = OSSL_FUNC_cipher_decrypt_init(d);
			break;
		case OSSL_FUNC_CIPHER_UPDATE:
			gcm.update = OSSL_FUNC_cipher_update(d);
			break;
		case OSSL_FUNC_CIPHER_FINAL:
			gcm.final = OSSL_FUNC_cipher_final(d);
			break;
		case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
			gcm.get_ctx_params = OSSL_FUNC_cipher_get_ctx_params(d);
			break;
		case OSSL_FUNC_CIPHER_SET_CTX_PARAMS:
			gcm.set_ctx_params = OSSL_FUNC_cipher_set_ctx_params(d);
			break;
	}
}

/*
 * Find the provider functions behind the fetched AES-256-GCM.  The provider
 * stays loaded while aes256gcm holds its reference (for the process).
 */
static void
gcm_lookup(void)
{
	const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(aes256gcm);

	memset(&gcm, 0, sizeof(gcm));
	if (prov == NULL || getenv("PGCK_AEAD_EVP") != NULL)
		return;
	provider_functions(prov, OSSL_OP_CIPHER, EVP_CIPHER_get0_name(aes256gcm), gcm_take);
	gcm.provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
	gcm.ok = gcm.newctx != NULL && gcm.freectx != NULL && gcm.einit != NULL &&
		gcm.dinit != NULL && gcm.update != NULL && gcm.final != NULL &&
		gcm.get_ctx_params != NULL && gcm.set_ctx_params != NULL;
}

static void
sha_take(const OSSL_DISPATCH *d)
{
	switch (d->function_id)
	{
		case OSSL_FUNC_DIGEST_NEWCTX:
			sha.newctx = OSSL_FUNC_digest_newctx(d);
			break;
		case OSSL_FUNC_DIGEST_FREECTX:
			sha.freectx = OSSL_FUNC_digest_freectx(d);
			break;
		case OSSL_FUNC_DIGEST_DUPCTX:
			sha.dupctx = OSSL_FUNC_digest_dupctx(d);
			break;
		case OSSL_FUNC_DIGEST_INIT:
			sha.init = OSSL_FUNC_digest_init(d);
			break;
		case OSSL_FUNC_DIGEST_UPDATE:
			sha.update = OSSL_FUNC_digest_update(d);
			break;
		case OSSL_FUNC_DIGEST_FINAL:
			sha.final = OSSL_FUNC_digest_final(d);
			break;
	}
}

/*
 * Find the provider functions behind the fetched SHA-256 (as gcm_lookup
 * does for AES-256-GCM).
 */
static void
sha_lookup(const OSSL_PROVIDER *prov)
{
	memset(&sha, 0, sizeof(sha));
	provider_functions(prov, OSSL_OP_DIGEST, EVP_MD_get0_name(sha256), sha_take);
	sha.provctx = OSSL_PROVIDER_get0_provider_ctx(prov);
	sha.ok = sha.newctx != NULL && sha.freectx != NULL && sha.dupctx != NULL &&
		sha.init != NULL && sha.update != NULL && sha.final != NULL;
}

bool
pgck_hmac_lowlevel_for(const char *provider_name)
{
	return provider_name != NULL && strcmp(provider_name, "default") == 0;
}

/* Decide once how HMAC-SHA-256 runs (see the file header). */
static void
hmac_decide(void)
{
	const OSSL_PROVIDER *prov = EVP_MD_get0_provider(sha256);

	if (getenv("PGCK_AEAD_EVP") != NULL || prov == NULL)
		hmac_path = HMAC_EVP;
	else if (pgck_hmac_lowlevel_for(OSSL_PROVIDER_get0_name(prov)) &&
			 getenv("PGCK_HMAC_DISPATCH") == NULL)
		hmac_path = HMAC_SHA256_CTX;
	else
	{
		sha_lookup(prov);
		hmac_path = sha.ok ? HMAC_DISPATCH : HMAC_EVP;
	}
}

const char *
pgck_hmac_path(void)
{
	if (!pgck_crypto_init())
		return "unavailable";
	switch (hmac_path)
	{
		case HMAC_SHA256_CTX:
			return "sha256-ctx";
		case HMAC_DISPATCH:
			return "provider";
		case HMAC_EVP:
			return "evp";
		case HMAC_UNDECIDED:
			break;
	}
	return "unavailable";
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
	if (aes256gcm != NULL && !gcm_looked_up)
	{
		gcm_looked_up = true;
		gcm_lookup();
	}
	if (sha256 != NULL && hmac_path == HMAC_UNDECIDED)
		hmac_decide();
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

/*
 * The size of a block OpenSSL allocated, or 0 when it cannot be known: only
 * while OpenSSL allocates with the C library's malloc (its default, no
 * CRYPTO_set_mem_functions) does malloc_usable_size() answer for it.
 */
static size_t
openssl_block_size(const void *p)
{
	CRYPTO_malloc_fn m;
	CRYPTO_realloc_fn r;
	CRYPTO_free_fn f;

	CRYPTO_get_mem_functions(&m, &r, &f);
	if (p == NULL || m != CRYPTO_malloc)
		return 0;
	return malloc_usable_size((void *) p);
}

/* Mark the pages of an OpenSSL-allocated keyed context; returns what is held. */
static size_t
hold_openssl_block(const void *p)
{
	size_t		size;

	if (p == NULL)
		return 0;
	size = openssl_block_size(p);
	if (size == 0)
	{
		unprotected |= PGCK_KEYPAGES_DUMPABLE;
		return 0;
	}
	return pgck_keypages_hold(p, size) ? size : 0;
}

int
pgck_aead_unprotected(void)
{
	return unprotected | pgck_keypages_failures();
}

PgckAead *
pgck_aead_new(const uint8_t key[PGCK_AES256_KEY_LEN])
{
	PgckAead   *aead;
	bool		ok;

	if (!pgck_crypto_init())
		return NULL;
	aead = calloc(1, sizeof(PgckAead));
	if (aead == NULL)
		return NULL;
	if (gcm.ok)
	{
		/* the pages are marked before the key schedule is written to them */
		aead->enc = gcm.newctx(gcm.provctx);
		aead->dec = gcm.newctx(gcm.provctx);
		aead->enc_held = hold_openssl_block(aead->enc);
		aead->dec_held = hold_openssl_block(aead->dec);
		ok = aead->enc != NULL && aead->dec != NULL &&
			gcm.einit(aead->enc, key, PGCK_AES256_KEY_LEN, NULL, 0, NULL) == 1 &&
			gcm.dinit(aead->dec, key, PGCK_AES256_KEY_LEN, NULL, 0, NULL) == 1;
	}
	else
	{
		/* the provider context inside an EVP context is out of reach */
		unprotected |= PGCK_KEYPAGES_DUMPABLE;
		aead->enc = EVP_CIPHER_CTX_new();
		aead->dec = EVP_CIPHER_CTX_new();
		ok = aead->enc != NULL && aead->dec != NULL &&
			EVP_EncryptInit_ex2(aead->enc, aes256gcm, key, NULL, NULL) == 1 &&
			EVP_DecryptInit_ex2(aead->dec, aes256gcm, key, NULL, NULL) == 1;
	}
	if (!ok)
	{
		pgck_aead_free(aead);
		ERR_clear_error();
		return NULL;
	}
	return aead;
}

void
pgck_aead_free(PgckAead *aead)
{
	if (aead == NULL)
		return;
	/* both free functions cleanse the key schedule; then the pages go back */
	if (gcm.ok)
	{
		if (aead->enc != NULL)
			gcm.freectx(aead->enc);
		if (aead->dec != NULL)
			gcm.freectx(aead->dec);
		pgck_keypages_release(aead->enc, aead->enc_held);
		pgck_keypages_release(aead->dec, aead->dec_held);
	}
	else
	{
		EVP_CIPHER_CTX_free(aead->enc);
		EVP_CIPHER_CTX_free(aead->dec);
	}
	free(aead);
}

/* The tag, as the one parameter of a get/set_ctx_params call. */
static void
tag_param(OSSL_PARAM params[2], uint8_t *tag)
{
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, PGCK_GCM_TAGLEN);
	params[1] = OSSL_PARAM_construct_end();
}

/* One GCM operation through the provider's functions; see the file header. */
static bool
gcm_direct(void *ctx, bool enc, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
		   const uint8_t *aad1, size_t aad1_len,
		   const uint8_t *aad2, size_t aad2_len,
		   const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
	OSSL_PARAM	params[2];
	size_t		n = 0;
	size_t		fin = 0;
	uint8_t		none;

	tag_param(params, tag);
	/* the nonce, with its length: the key schedule stays */
	if ((enc ? gcm.einit : gcm.dinit) (ctx, NULL, 0, nonce, PGCK_GCM_NONCE_LEN, NULL) != 1)
		return false;
	if (aad1_len > 0 && gcm.update(ctx, NULL, &n, aad1_len, aad1, aad1_len) != 1)
		return false;
	if (aad2_len > 0 && gcm.update(ctx, NULL, &n, aad2_len, aad2, aad2_len) != 1)
		return false;
	n = 0;
	if (len > 0 && gcm.update(ctx, out, &n, len, in, len) != 1)
		return false;
	if (n != len)
		return false;
	/* the expected tag is set before the final call that checks it */
	if (!enc && gcm.set_ctx_params(ctx, params) != 1)
		return false;
	/* GCM writes nothing at final; never form out + n from a NULL out */
	if (gcm.final(ctx, out != NULL ? out + n : &none, &fin, 0) != 1 || fin != 0)
		return false;
	return !enc || gcm.get_ctx_params(ctx, params) == 1;
}

/* The same through EVP (PGCK_AEAD_EVP, or a provider without the table). */
static bool
gcm_evp(EVP_CIPHER_CTX *ctx, bool enc, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
		const uint8_t *aad1, size_t aad1_len,
		const uint8_t *aad2, size_t aad2_len,
		const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag)
{
	OSSL_PARAM	params[2];
	int			n = 0;
	int			fin = 0;
	int			dummy;
	uint8_t		none;

	tag_param(params, tag);
	if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, enc ? 1 : 0, NULL) != 1)
		return false;
	if (aad1_len > 0 && EVP_CipherUpdate(ctx, NULL, &dummy, aad1, (int) aad1_len) != 1)
		return false;
	if (aad2_len > 0 && EVP_CipherUpdate(ctx, NULL, &dummy, aad2, (int) aad2_len) != 1)
		return false;
	if (len > 0 && EVP_CipherUpdate(ctx, out, &n, in, (int) len) != 1)
		return false;
	if (!enc && EVP_CIPHER_CTX_set_params(ctx, params) != 1)
		return false;
	if (EVP_CipherFinal_ex(ctx, out != NULL ? out + n : &none, &fin) != 1)
		return false;
	if ((size_t) n + (size_t) fin != len)
		return false;
	return !enc || EVP_CIPHER_CTX_get_params(ctx, params) == 1;
}

bool
pgck_aead_seal(PgckAead *aead, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
			   const uint8_t *aad1, size_t aad1_len,
			   const uint8_t *aad2, size_t aad2_len,
			   const uint8_t *pt, size_t pt_len,
			   uint8_t *ct, uint8_t tag[PGCK_GCM_TAGLEN])
{
	bool		ok;

	if (pt_len > INT32_MAX || aad1_len > INT32_MAX || aad2_len > INT32_MAX)
		return false;
	if (gcm.ok)
		ok = gcm_direct(aead->enc, true, nonce, aad1, aad1_len, aad2, aad2_len,
						pt, pt_len, ct, tag);
	else
		ok = gcm_evp(aead->enc, true, nonce, aad1, aad1_len, aad2, aad2_len,
					 pt, pt_len, ct, tag);
	if (!ok)
		ERR_clear_error();
	return ok;
}

bool
pgck_aead_open(PgckAead *aead, const uint8_t nonce[PGCK_GCM_NONCE_LEN],
			   const uint8_t *aad1, size_t aad1_len,
			   const uint8_t *aad2, size_t aad2_len,
			   const uint8_t *ct, size_t ct_len,
			   const uint8_t tag[PGCK_GCM_TAGLEN], uint8_t *pt)
{
	bool		ok = false;

	if (ct_len > INT32_MAX || aad1_len > INT32_MAX || aad2_len > INT32_MAX)
		return false;
	/* the tag is only read (an OSSL_PARAM has no const data pointer) */
	if (gcm.ok)
		ok = gcm_direct(aead->dec, false, nonce, aad1, aad1_len, aad2, aad2_len,
						ct, ct_len, pt, (uint8_t *) tag);
	else
		ok = gcm_evp(aead->dec, false, nonce, aad1, aad1_len, aad2, aad2_len,
					 ct, ct_len, pt, (uint8_t *) tag);
	if (!ok)
	{
		/* no plaintext leaves on failure */
		if (pt != NULL)
			pgck_wipe(pt, ct_len);
		ERR_clear_error();
	}
	return ok;
}

/*
 * Absorb k ^ ipad (inner) or k ^ opad into a new keyed state of h (on hmac_path).
 * A provider context's pages are marked before the key goes in.
 */
static bool
hmac_key_state(PgckHmac *h, bool inner, const uint8_t k[64])
{
	uint8_t		pad[64];
	bool		ok = false;
	int			i;

	for (i = 0; i < 64; i++)
		pad[i] = k[i] ^ (inner ? 0x36 : 0x5c);
	switch (hmac_path)
	{
		case HMAC_SHA256_CTX:
			{
				SHA256_CTX *c = inner ? &h->inner : &h->outer;

				ok = SHA256_Init(c) == 1 && SHA256_Update(c, pad, 64) == 1;
				break;
			}
		case HMAC_DISPATCH:
			{
				void	   *c = sha.newctx(sha.provctx);
				size_t		held = hold_openssl_block(c);

				if (inner)
				{
					h->pinner = c;
					h->pinner_held = held;
				}
				else
				{
					h->pouter = c;
					h->pouter_held = held;
				}
				ok = c != NULL && sha.init(c, NULL) == 1 && sha.update(c, pad, 64) == 1;
				break;
			}
		case HMAC_EVP:
			{
				EVP_MD_CTX *c = EVP_MD_CTX_new();

				/* the provider context inside an EVP context is out of reach */
				unprotected |= PGCK_KEYPAGES_DUMPABLE;
				if (inner)
					h->pinner = c;
				else
					h->pouter = c;
				ok = c != NULL && EVP_DigestInit_ex2(c, sha256, NULL) == 1 &&
					EVP_DigestUpdate(c, pad, 64) == 1;
				break;
			}
		case HMAC_UNDECIDED:
			break;
	}
	pgck_wipe(pad, sizeof(pad));
	return ok;
}

PgckHmac *
pgck_hmac_new(const uint8_t *key, size_t key_len)
{
	PgckHmac   *h;
	uint8_t		k[64];
	bool		ok = true;

	if (!pgck_crypto_init())
		return NULL;
	h = calloc(1, sizeof(PgckHmac));
	if (h == NULL)
		return NULL;
	/* the keyed states are key-equivalent: their pages are marked first */
	h->held = pgck_keypages_hold(h, sizeof(PgckHmac));
	memset(k, 0, sizeof(k));
	if (key_len > sizeof(k))
		ok = EVP_Digest(key, key_len, k, NULL, sha256, NULL) == 1;
	else if (key_len > 0)
		memcpy(k, key, key_len);
	ok = ok && hmac_key_state(h, true, k) && hmac_key_state(h, false, k);
	pgck_wipe(k, sizeof(k));
	if (!ok)
	{
		pgck_hmac_free(h);
		ERR_clear_error();
		return NULL;
	}
	return h;
}

void
pgck_hmac_free(PgckHmac *hmac)
{
	bool		held;

	if (hmac == NULL)
		return;
	/* the free functions cleanse the states; then their pages go back */
	if (hmac_path == HMAC_DISPATCH)
	{
		if (hmac->pinner != NULL)
			sha.freectx(hmac->pinner);
		if (hmac->pouter != NULL)
			sha.freectx(hmac->pouter);
		pgck_keypages_release(hmac->pinner, hmac->pinner_held);
		pgck_keypages_release(hmac->pouter, hmac->pouter_held);
	}
	else if (hmac_path == HMAC_EVP)
	{
		EVP_MD_CTX_free(hmac->pinner);
		EVP_MD_CTX_free(hmac->pouter);
	}
	held = hmac->held;
	pgck_wipe(hmac, sizeof(*hmac));
	/* wiped: its pages may go back before the block does */
	if (held)
		pgck_keypages_release(hmac, sizeof(PgckHmac));
	free(hmac);
}

/*
 * One half of an HMAC through the provider's functions: a copy of the keyed
 * state absorbs msg and gives the digest; the copy is freed (and cleansed by
 * the provider) at once.
 */
static bool
hmac_dispatch_half(void *keyed, const uint8_t *msg, size_t msg_len, uint8_t out[PGCK_HMAC_SHA256_LEN])
{
	void	   *c = sha.dupctx(keyed);
	size_t		n = 0;
	bool		ok;

	ok = c != NULL && (msg_len == 0 || sha.update(c, msg, msg_len) == 1) &&
		sha.final(c, out, &n, PGCK_HMAC_SHA256_LEN) == 1 && n == PGCK_HMAC_SHA256_LEN;
	if (c != NULL)
		sha.freectx(c);
	return ok;
}

/* The same through EVP: c receives a copy of the keyed state. */
static bool
hmac_evp_half(EVP_MD_CTX *c, const EVP_MD_CTX *keyed, const uint8_t *msg, size_t msg_len,
			  uint8_t out[PGCK_HMAC_SHA256_LEN])
{
	unsigned int n = 0;

	return EVP_MD_CTX_copy_ex(c, keyed) == 1 &&
		(msg_len == 0 || EVP_DigestUpdate(c, msg, msg_len) == 1) &&
		EVP_DigestFinal_ex(c, out, &n) == 1 && n == PGCK_HMAC_SHA256_LEN;
}

bool
pgck_hmac_sha256(PgckHmac *hmac, const uint8_t *msg, size_t msg_len,
				 uint8_t out[PGCK_HMAC_SHA256_LEN])
{
	struct
	{
		SHA256_CTX	c;			/* copies of the keyed states */
		uint8_t		ihash[PGCK_HMAC_SHA256_LEN];
	}			w;				/* wiped in one call */
	bool		ok;

	if (hmac_path == HMAC_SHA256_CTX)
	{
		w.c = hmac->inner;
		ok = (msg_len == 0 || SHA256_Update(&w.c, msg, msg_len) == 1) &&
			SHA256_Final(w.ihash, &w.c) == 1;
		w.c = hmac->outer;
		ok = ok && SHA256_Update(&w.c, w.ihash, sizeof(w.ihash)) == 1 &&
			SHA256_Final(out, &w.c) == 1;
	}
	else if (hmac_path == HMAC_DISPATCH)
		ok = hmac_dispatch_half(hmac->pinner, msg, msg_len, w.ihash) &&
			hmac_dispatch_half(hmac->pouter, w.ihash, sizeof(w.ihash), out);
	else
	{
		EVP_MD_CTX *c = EVP_MD_CTX_new();

		ok = c != NULL && hmac_evp_half(c, hmac->pinner, msg, msg_len, w.ihash) &&
			hmac_evp_half(c, hmac->pouter, w.ihash, sizeof(w.ihash), out);
		EVP_MD_CTX_free(c);
	}
	explicit_bzero(&w, sizeof(w));
	if (!ok)
		ERR_clear_error();
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
