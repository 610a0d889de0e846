/*
 * crypto_micro.c: what the per-value primitives cost outside PostgreSQL, through each
 * candidate OpenSSL 3 path, to choose the one src/aead.c uses.  Not part of the
 * extension or the tests; nothing here is asserted except that every variant produces
 * the same bytes as the reference and rejects a tampered tag.
 *
 *   cc -O2 -Wall -o /tmp/crypto_micro bench/crypto_micro.c -lcrypto && /tmp/crypto_micro
 *   /tmp/crypto_micro 400000    # iterations per measurement (default 200000)
 *   perf record /tmp/crypto_micro 1000000 provider   # only the variants named provider...
 *   /tmp/crypto_micro --tsv 200000 provider,sha256-ctx,4   # machine-readable (bench/run.sh)
 *
 * Plaintexts of 16, 20, 32 and 64 bytes (emails are ~20), the AAD of an enc_text header
 * with a 256-bit blind-index tag (52 bytes).  Each figure is ns per call, the minimum
 * over 7 measurements of the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: another
 * process holding the CPU does not count), so a busy machine moves it little.
 *
 * AES-256-GCM seal and open:
 *   today          src/aead.c before issue 18: one keyed context per key, per call
 *                  EVP_{En,De}cryptInit_ex2(ctx, NULL, NULL, nonce, NULL), two Updates,
 *                  Final, the tag through EVP_CIPHER_CTX_ctrl(EVP_CTRL_GCM_{GET,SET}_TAG)
 *   tag-params     the same, the tag through EVP_CIPHER_CTX_{get,set}_params with a
 *                  prebuilt OSSL_PARAM array (no ctrl-to-parameter translation)
 *   tag-in-init    open only: the expected tag passed as a parameter of the Init that
 *                  sets the nonce (one provider call fewer)
 *   init-ex        EVP_{En,De}cryptInit_ex(ctx, NULL, NULL, NULL, nonce) (1.1 style)
 *   key-per-call   the cipher fetched once, but the key set on every call
 *   naive          a new context per call, implicit fetch through EVP_aes_256_gcm()
 *   provider       the same provider's functions called through the dispatch table that
 *                  OSSL_PROVIDER_query_operation() returns (public provider API, any
 *                  provider: default or FIPS): the nonce set with its length known, so
 *                  EVP's per-call IV-length query (a get_ctx_params round trip) goes;
 *                  tag through a prebuilt OSSL_PARAM array
 *   provider+tag-in-init   open only: the provider path, the tag passed with the nonce
 *   gcm128         reference only: the low-level CRYPTO_gcm128_* API over the deprecated
 *                  AES_encrypt (bypasses providers, so no FIPS; no AES-NI for the block)
 * HMAC-SHA-256 (32-byte key):
 *   sha256-ctx     today: inner/outer SHA256_CTX (pad-absorbed) copied by value
 *   sha256-pad     the same states, the SHA-256 padding written by hand so each
 *                  SHA256_Update ends on a block boundary and the state words are
 *                  read as the hash (no SHA256_Final); up to 55-byte messages
 *   sha256-transform  the same padded blocks through SHA256_Transform (one block
 *                  per call); both measured slower than sha256-ctx here (issue 18)
 *   md-copy        EVP_MD_CTX_copy_ex of pad-absorbed EVP_MD_CTX states
 *   mac-dup        EVP_MAC "HMAC": a pre-keyed EVP_MAC_CTX duplicated per call
 *   mac-reinit     EVP_MAC "HMAC": one pre-keyed context re-initialised per call
 *                  (EVP_MAC_init with a NULL key keeps the key)
 *   mac-oneshot    EVP_Q_mac (fetch + key per call)
 * Nonces: 12 bytes from RAND_bytes per call vs from a 4 KiB pool refilled by RAND_bytes.
 *
 * The second argument selects variants: comma-separated prefixes of their names.  With
 * --tsv, each measurement is one line "micro<TAB>SECTION/VARIANT/SIZE<TAB>1<TAB>NS"
 * (SECTION: seal, open, hmac, nonce), the raw format bench/run.sh collects; nothing
 * else goes to stdout.  A variant that produces other bytes than the reference,
 * accepts a tampered tag or fails a call makes the exit status 1, in both modes.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1	/* SHA256_Init, AES_set_encrypt_key: deprecated, not gone */
#include <openssl/aes.h>
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/modes.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AAD_LEN 52
#define MAX_PT 64
#define REPS 7

static const size_t sizes[] = {16, 20, 32, 64};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static long iters = 200000;
static const char *only = NULL;	/* run only the variants whose name starts with one of
								 * these comma-separated prefixes */
static int	tsv = 0;			/* --tsv: machine-readable lines, no tables */
static const char *section = "";
static unsigned char key[32], nonce[12], aad[AAD_LEN], pt[MAX_PT];
static EVP_CIPHER *gcm;
static EVP_MD *sha;
static EVP_MAC *hmac;
static int	failures = 0;

/* ---------------------------------------------------------------- timing */

typedef int (*op_fn) (size_t len, unsigned char *ct, unsigned char *tag);

static double
cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static double
measure(op_fn f, size_t len, unsigned char *ct, unsigned char *tag)
{
	double		best = 1e30;

	for (int r = 0; r < REPS; r++)
	{
		double		t0 = cpu_ns();
		int			ok = 0;

		for (long i = 0; i < iters; i++)
			ok += f(len, ct, tag);
		t0 = (cpu_ns() - t0) / iters;
		if (ok != iters)
			failures++;
		if (t0 < best)
			best = t0;
	}
	return best;
}

/* ---------------------------------------------------------------- EVP contexts */

static EVP_CIPHER_CTX *e_ctx, *d_ctx, *k_ctx;
static unsigned char tag_buf[16];
static OSSL_PARAM tag_params[2];

static void
set_tag_param(unsigned char *tag)
{
	tag_params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, 16);
	tag_params[1] = OSSL_PARAM_construct_end();
}

static int
seal_today(size_t len, unsigned char *ct, unsigned char *tag)
{
	int			n,
				f;

	return EVP_EncryptInit_ex2(e_ctx, NULL, NULL, nonce, NULL) == 1 &&
		EVP_EncryptUpdate(e_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_EncryptUpdate(e_ctx, ct, &n, pt, (int) len) == 1 &&
		EVP_EncryptFinal_ex(e_ctx, ct + n, &f) == 1 &&
		EVP_CIPHER_CTX_ctrl(e_ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

static int
seal_tag_params(size_t len, unsigned char *ct, unsigned char *tag)
{
	int			n,
				f;

	tag_params[0].data = tag;
	return EVP_EncryptInit_ex2(e_ctx, NULL, NULL, nonce, NULL) == 1 &&
		EVP_EncryptUpdate(e_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_EncryptUpdate(e_ctx, ct, &n, pt, (int) len) == 1 &&
		EVP_EncryptFinal_ex(e_ctx, ct + n, &f) == 1 &&
		EVP_CIPHER_CTX_get_params(e_ctx, tag_params) == 1;
}

static int
seal_init_ex(size_t len, unsigned char *ct, unsigned char *tag)
{
	int			n,
				f;

	return EVP_EncryptInit_ex(e_ctx, NULL, NULL, NULL, nonce) == 1 &&
		EVP_EncryptUpdate(e_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_EncryptUpdate(e_ctx, ct, &n, pt, (int) len) == 1 &&
		EVP_EncryptFinal_ex(e_ctx, ct + n, &f) == 1 &&
		EVP_CIPHER_CTX_ctrl(e_ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

static int
seal_key_per_call(size_t len, unsigned char *ct, unsigned char *tag)
{
	int			n,
				f;

	return EVP_EncryptInit_ex2(k_ctx, gcm, key, nonce, NULL) == 1 &&
		EVP_EncryptUpdate(k_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_EncryptUpdate(k_ctx, ct, &n, pt, (int) len) == 1 &&
		EVP_EncryptFinal_ex(k_ctx, ct + n, &f) == 1 &&
		EVP_CIPHER_CTX_ctrl(k_ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

static int
seal_naive(size_t len, unsigned char *ct, unsigned char *tag)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int			n,
				f,
				ok;

	ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
		EVP_EncryptUpdate(c, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_EncryptUpdate(c, ct, &n, pt, (int) len) == 1 &&
		EVP_EncryptFinal_ex(c, ct + n, &f) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok;
}

static int
open_today(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];
	int			n,
				f;

	return EVP_DecryptInit_ex2(d_ctx, NULL, NULL, nonce, NULL) == 1 &&
		EVP_DecryptUpdate(d_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_DecryptUpdate(d_ctx, out, &n, ct, (int) len) == 1 &&
		EVP_CIPHER_CTX_ctrl(d_ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
		EVP_DecryptFinal_ex(d_ctx, out + n, &f) == 1;
}

static int
open_tag_params(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];
	int			n,
				f;

	tag_params[0].data = tag;
	return EVP_DecryptInit_ex2(d_ctx, NULL, NULL, nonce, NULL) == 1 &&
		EVP_DecryptUpdate(d_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_DecryptUpdate(d_ctx, out, &n, ct, (int) len) == 1 &&
		EVP_CIPHER_CTX_set_params(d_ctx, tag_params) == 1 &&
		EVP_DecryptFinal_ex(d_ctx, out + n, &f) == 1;
}

static int
open_tag_in_init(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];
	int			n,
				f;

	tag_params[0].data = tag;
	return EVP_DecryptInit_ex2(d_ctx, NULL, NULL, nonce, tag_params) == 1 &&
		EVP_DecryptUpdate(d_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_DecryptUpdate(d_ctx, out, &n, ct, (int) len) == 1 &&
		EVP_DecryptFinal_ex(d_ctx, out + n, &f) == 1;
}

static int
open_init_ex(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];
	int			n,
				f;

	return EVP_DecryptInit_ex(d_ctx, NULL, NULL, NULL, nonce) == 1 &&
		EVP_DecryptUpdate(d_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_DecryptUpdate(d_ctx, out, &n, ct, (int) len) == 1 &&
		EVP_CIPHER_CTX_ctrl(d_ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
		EVP_DecryptFinal_ex(d_ctx, out + n, &f) == 1;
}

static int
open_key_per_call(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];
	int			n,
				f;

	return EVP_DecryptInit_ex2(k_ctx, gcm, key, nonce, NULL) == 1 &&
		EVP_DecryptUpdate(k_ctx, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_DecryptUpdate(k_ctx, out, &n, ct, (int) len) == 1 &&
		EVP_CIPHER_CTX_ctrl(k_ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
		EVP_DecryptFinal_ex(k_ctx, out + n, &f) == 1;
}

static int
open_naive(size_t len, unsigned char *ct, unsigned char *tag)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	unsigned char out[MAX_PT];
	int			n,
				f,
				ok;

	ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
		EVP_DecryptUpdate(c, NULL, &n, aad, AAD_LEN) == 1 &&
		EVP_DecryptUpdate(c, out, &n, ct, (int) len) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
		EVP_DecryptFinal_ex(c, out + n, &f) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok;
}

/* ---------------------------------------------------------------- provider dispatch */

static struct
{
	OSSL_FUNC_cipher_newctx_fn *newctx;
	OSSL_FUNC_cipher_freectx_fn *freectx;
	OSSL_FUNC_cipher_encrypt_init_fn *einit;
	OSSL_FUNC_cipher_decrypt_init_fn *dinit;
	OSSL_FUNC_cipher_update_fn *update;
	OSSL_FUNC_cipher_final_fn *final;
	OSSL_FUNC_cipher_get_ctx_params_fn *get_params;
	OSSL_FUNC_cipher_set_ctx_params_fn *set_params;
	void	   *ectx;
	void	   *dctx;
}			pv;

static int
names_contain(const char *names, const char *name)
{
	size_t		l = strlen(name);

	for (const char *p = names; p != NULL && *p; p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL)
		if (strncasecmp(p, name, l) == 0 && (p[l] == ':' || p[l] == '\0'))
			return 1;
	return 0;
}

static int
provider_setup(void)
{
	const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(gcm);
	const OSSL_ALGORITHM *alg;
	int			no_store;

	alg = OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_store);
	for (; alg != NULL && alg->algorithm_names != NULL; alg++)
		if (names_contain(alg->algorithm_names, "AES-256-GCM"))
			break;
	if (alg == NULL || alg->algorithm_names == NULL)
		return 0;
	for (const OSSL_DISPATCH *d = alg->implementation; d->function_id != 0; d++)
		switch (d->function_id)
		{
			case OSSL_FUNC_CIPHER_NEWCTX:
				pv.newctx = OSSL_FUNC_cipher_newctx(d);
				break;
			case OSSL_FUNC_CIPHER_FREECTX:
				pv.freectx = OSSL_FUNC_cipher_freectx(d);
				break;
			case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
				pv.einit = OSSL_FUNC_cipher_encrypt_init(d);
				break;
			case OSSL_FUNC_CIPHER_DECRYPT_INIT:
				pv.dinit = OSSL_FUNC_cipher_decrypt_init(d);
				break;
			case OSSL_FUNC_CIPHER_UPDATE:
				pv.update = OSSL_FUNC_cipher_update(d);
				break;
			case OSSL_FUNC_CIPHER_FINAL:
				pv.final = OSSL_FUNC_cipher_final(d);
				break;
			case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
				pv.get_params = OSSL_FUNC_cipher_get_ctx_params(d);
				break;
			case OSSL_FUNC_CIPHER_SET_CTX_PARAMS:
				pv.set_params = OSSL_FUNC_cipher_set_ctx_params(d);
				break;
		}
	if (!pv.newctx || !pv.freectx || !pv.einit || !pv.dinit || !pv.update || !pv.final ||
		!pv.get_params || !pv.set_params)
		return 0;
	pv.ectx = pv.newctx(OSSL_PROVIDER_get0_provider_ctx(prov));
	pv.dctx = pv.newctx(OSSL_PROVIDER_get0_provider_ctx(prov));
	return pv.ectx != NULL && pv.dctx != NULL &&
		pv.einit(pv.ectx, key, 32, NULL, 0, NULL) == 1 &&
		pv.dinit(pv.dctx, key, 32, NULL, 0, NULL) == 1;
}

static int
seal_provider(size_t len, unsigned char *ct, unsigned char *tag)
{
	size_t		n,
				f;

	tag_params[0].data = tag;
	return pv.einit(pv.ectx, NULL, 0, nonce, 12, NULL) == 1 &&
		pv.update(pv.ectx, NULL, &n, AAD_LEN, aad, AAD_LEN) == 1 &&
		pv.update(pv.ectx, ct, &n, len, pt, len) == 1 &&
		pv.final(pv.ectx, ct + n, &f, 0) == 1 &&
		pv.get_params(pv.ectx, tag_params) == 1;
}

static int
open_provider(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];
	size_t		n,
				f;

	tag_params[0].data = tag;
	return pv.dinit(pv.dctx, NULL, 0, nonce, 12, NULL) == 1 &&
		pv.update(pv.dctx, NULL, &n, AAD_LEN, aad, AAD_LEN) == 1 &&
		pv.update(pv.dctx, out, &n, MAX_PT, ct, len) == 1 &&
		pv.set_params(pv.dctx, tag_params) == 1 &&
		pv.final(pv.dctx, out + n, &f, 0) == 1;
}

static int
open_provider_tag_in_init(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];
	size_t		n,
				f;

	tag_params[0].data = tag;
	return pv.dinit(pv.dctx, NULL, 0, nonce, 12, tag_params) == 1 &&
		pv.update(pv.dctx, NULL, &n, AAD_LEN, aad, AAD_LEN) == 1 &&
		pv.update(pv.dctx, out, &n, MAX_PT, ct, len) == 1 &&
		pv.final(pv.dctx, out + n, &f, 0) == 1;
}

/* ---------------------------------------------------------------- low-level GCM (reference) */

static AES_KEY aes_key;
static GCM128_CONTEXT *g128;

static int
seal_gcm128(size_t len, unsigned char *ct, unsigned char *tag)
{
	CRYPTO_gcm128_setiv(g128, nonce, 12);
	if (CRYPTO_gcm128_aad(g128, aad, AAD_LEN) != 0 ||
		CRYPTO_gcm128_encrypt(g128, pt, ct, len) != 0)
		return 0;
	CRYPTO_gcm128_tag(g128, tag, 16);
	return 1;
}

static int
open_gcm128(size_t len, unsigned char *ct, unsigned char *tag)
{
	unsigned char out[MAX_PT];

	CRYPTO_gcm128_setiv(g128, nonce, 12);
	return CRYPTO_gcm128_aad(g128, aad, AAD_LEN) == 0 &&
		CRYPTO_gcm128_decrypt(g128, ct, out, len) == 0 &&
		CRYPTO_gcm128_finish(g128, tag, 16) == 0;
}

/* ---------------------------------------------------------------- HMAC */

static SHA256_CTX s_in, s_out;
static EVP_MD_CTX *m_in, *m_out, *m_work;
static EVP_MAC_CTX *mac_keyed, *mac_reinit;

static int
hmac_sha256_ctx(size_t len, unsigned char *out, unsigned char *unused)
{
	SHA256_CTX	c = s_in;
	unsigned char ih[32];

	(void) unused;
	SHA256_Update(&c, pt, len);
	SHA256_Final(ih, &c);
	c = s_out;
	SHA256_Update(&c, ih, 32);
	SHA256_Final(out, &c);
	return 1;
}

/*
 * The same precomputed states, the padding appended by hand so that every
 * SHA256_Update ends on a block boundary: the state words are then the hash,
 * read directly, with no SHA256_Final (its buffering and cleansing).  And the
 * same by SHA256_Transform, one padded block at a time.
 */
static void
put_be32(unsigned char *p, unsigned int v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static void
sha256_pad(unsigned char *blk, size_t off, unsigned long long total)
{
	unsigned long long bits = total * 8;

	blk[off] = 0x80;
	memset(blk + off + 1, 0, 56 - off - 1);
	for (int i = 0; i < 8; i++)
		blk[63 - i] = (unsigned char) (bits >> (8 * i));
}

static int
hmac_sha256_pad(size_t len, unsigned char *out, unsigned char *unused)
{
	SHA256_CTX	c = s_in;
	unsigned char blk[64];

	if (len > 55)
		return hmac_sha256_ctx(len, out, unused);
	memcpy(blk, pt, len);
	sha256_pad(blk, len, 64 + len);
	SHA256_Update(&c, blk, 64);
	for (int i = 0; i < 8; i++)
		put_be32(blk + 4 * i, c.h[i]);
	sha256_pad(blk, 32, 64 + 32);
	c = s_out;
	SHA256_Update(&c, blk, 64);
	for (int i = 0; i < 8; i++)
		put_be32(out + 4 * i, c.h[i]);
	return 1;
}

static int
hmac_sha256_transform(size_t len, unsigned char *out, unsigned char *unused)
{
	SHA256_CTX	c;
	unsigned char blk[64];

	if (len > 55)
		return hmac_sha256_ctx(len, out, unused);
	memcpy(c.h, s_in.h, sizeof(c.h));
	memcpy(blk, pt, len);
	sha256_pad(blk, len, 64 + len);
	SHA256_Transform(&c, blk);
	for (int i = 0; i < 8; i++)
		put_be32(blk + 4 * i, c.h[i]);
	sha256_pad(blk, 32, 64 + 32);
	memcpy(c.h, s_out.h, sizeof(c.h));
	SHA256_Transform(&c, blk);
	for (int i = 0; i < 8; i++)
		put_be32(out + 4 * i, c.h[i]);
	return 1;
}

static int
hmac_md_copy(size_t len, unsigned char *out, unsigned char *unused)
{
	unsigned char ih[32];
	unsigned int l;

	(void) unused;
	return EVP_MD_CTX_copy_ex(m_work, m_in) == 1 &&
		EVP_DigestUpdate(m_work, pt, len) == 1 &&
		EVP_DigestFinal_ex(m_work, ih, &l) == 1 &&
		EVP_MD_CTX_copy_ex(m_work, m_out) == 1 &&
		EVP_DigestUpdate(m_work, ih, 32) == 1 &&
		EVP_DigestFinal_ex(m_work, out, &l) == 1;
}

static int
hmac_mac_dup(size_t len, unsigned char *out, unsigned char *unused)
{
	EVP_MAC_CTX *c = EVP_MAC_CTX_dup(mac_keyed);
	size_t		l;
	int			ok;

	(void) unused;
	ok = c != NULL && EVP_MAC_update(c, pt, len) == 1 && EVP_MAC_final(c, out, &l, 32) == 1;
	EVP_MAC_CTX_free(c);
	return ok;
}

static int
hmac_mac_reinit(size_t len, unsigned char *out, unsigned char *unused)
{
	size_t		l;

	(void) unused;
	return EVP_MAC_init(mac_reinit, NULL, 0, NULL) == 1 &&
		EVP_MAC_update(mac_reinit, pt, len) == 1 &&
		EVP_MAC_final(mac_reinit, out, &l, 32) == 1;
}

static int
hmac_oneshot(size_t len, unsigned char *out, unsigned char *unused)
{
	size_t		l;

	(void) unused;
	return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, 32, pt, len, out, 32, &l) != NULL;
}

/* ---------------------------------------------------------------- nonces */

static unsigned char pool[4096];
static size_t pool_pos = sizeof(pool);

static int
nonce_rand_bytes(size_t len, unsigned char *out, unsigned char *unused)
{
	(void) len;
	(void) unused;
	return RAND_bytes(out, 12) == 1;
}

static int
nonce_pool(size_t len, unsigned char *out, unsigned char *unused)
{
	(void) len;
	(void) unused;
	if (sizeof(pool) - pool_pos < 12)
	{
		if (RAND_bytes(pool, sizeof(pool)) != 1)
			return 0;
		pool_pos = 0;
	}
	memcpy(out, pool + pool_pos, 12);
	memset(pool + pool_pos, 0, 12);
	pool_pos += 12;
	return 1;
}

/* ---------------------------------------------------------------- driver */

static int
selected(const char *name)
{
	const char *p = only;

	if (only == NULL)
		return 1;
	while (*p)
	{
		size_t		l = strcspn(p, ",");

		if (l > 0 && strncmp(name, p, l) == 0)
			return 1;
		p += l;
		if (*p == ',')
			p++;
	}
	return 0;
}

static void
report(const char *name, size_t size, double ns)
{
	if (tsv)
		printf("micro\t%s/%s/%zu\t1\t%.1f\n", section, name, size, ns);
	else
		printf("  %6.1f", ns);
}

static void
verdict_line(const char *name, const char *verdict)
{
	if (*verdict)
	{
		failures++;
		if (tsv)
			fprintf(stderr, "crypto_micro: %s/%s:%s\n", section, name, verdict);
	}
	if (!tsv)
		printf("%s\n", verdict);
}

typedef struct Variant
{
	const char *name;
	op_fn		seal;			/* NULL: open-only variant */
	op_fn		open;
} Variant;

static unsigned char ref_ct[NSIZES][MAX_PT], ref_tag[NSIZES][16];

static void
print_header(const char *title, const char *key)
{
	section = key;
	if (tsv)
		return;
	printf("\n%-26s", title);
	for (size_t s = 0; s < NSIZES; s++)
		printf("  %4zu B", sizes[s]);
	printf("   (ns per call)\n");
}

static void
run_aead(const Variant *v, int do_open)
{
	op_fn		f = do_open ? v->open : v->seal;
	const char *verdict = "";

	if (f == NULL || !selected(v->name))
		return;
	if (!tsv)
		printf("  %-24s", v->name);
	for (size_t s = 0; s < NSIZES; s++)
	{
		unsigned char ct[MAX_PT],
					tag[16];
		double		ns;

		if (!do_open)
		{
			ns = measure(f, sizes[s], ct, tag);
			if (memcmp(ct, ref_ct[s], sizes[s]) != 0 || memcmp(tag, ref_tag[s], 16) != 0)
				verdict = "  DIFFERENT BYTES";
		}
		else
		{
			memcpy(ct, ref_ct[s], sizes[s]);
			memcpy(tag, ref_tag[s], 16);
			ns = measure(f, sizes[s], ct, tag);
			tag[3] ^= 1;
			if (f(sizes[s], ct, tag))
				verdict = "  ACCEPTED A TAMPERED TAG";
			tag[3] ^= 1;
			if (!f(sizes[s], ct, tag))
				verdict = "  REJECTED A GOOD TAG";
		}
		report(v->name, sizes[s], ns);
	}
	verdict_line(v->name, verdict);
}

static void
run_simple(const char *name, op_fn f, const unsigned char *ref)
{
	const char *verdict = "";

	if (!selected(name))
		return;
	if (!tsv)
		printf("  %-24s", name);
	for (size_t s = 0; s < NSIZES; s++)
	{
		unsigned char out[32];

		report(name, sizes[s], measure(f, sizes[s], out, NULL));
		if (ref != NULL && memcmp(out, ref + 32 * s, 32) != 0)
			verdict = "  DIFFERENT MAC";
	}
	verdict_line(name, verdict);
}

int
main(int argc, char **argv)
{
	unsigned char pad[64],
				ref_mac[NSIZES * 32];
	OSSL_PARAM	mp[2];
	int			have_provider;
	static const Variant variants[] = {
		{"today (ctrl tag)", seal_today, open_today},
		{"tag-params", seal_tag_params, open_tag_params},
		{"tag-in-init", NULL, open_tag_in_init},
		{"init-ex", seal_init_ex, open_init_ex},
		{"key-per-call", seal_key_per_call, open_key_per_call},
		{"naive (new ctx, implicit)", seal_naive, open_naive},
	};
	static const Variant pvariants[] = {
		{"provider", seal_provider, open_provider},
		{"provider+tag-in-init", NULL, open_provider_tag_in_init},
		{"gcm128 (reference, no FIPS)", seal_gcm128, open_gcm128},
	};

	if (argc > 1 && strcmp(argv[1], "--tsv") == 0)
	{
		tsv = 1;
		argc--;
		argv++;
	}
	if (argc > 1)
		iters = atol(argv[1]);
	if (iters <= 0)
		iters = 200000;
	if (argc > 2)
		only = argv[2];
	memset(key, 7, sizeof(key));
	memset(nonce, 1, sizeof(nonce));
	memset(aad, 3, sizeof(aad));
	for (int i = 0; i < MAX_PT; i++)
		pt[i] = "us123456@example.com"[i % 20];

	gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	sha = EVP_MD_fetch(NULL, "SHA256", NULL);
	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	e_ctx = EVP_CIPHER_CTX_new();
	d_ctx = EVP_CIPHER_CTX_new();
	k_ctx = EVP_CIPHER_CTX_new();
	if (gcm == NULL || sha == NULL || hmac == NULL ||
		EVP_EncryptInit_ex2(e_ctx, gcm, key, NULL, NULL) != 1 ||
		EVP_DecryptInit_ex2(d_ctx, gcm, key, NULL, NULL) != 1)
	{
		fprintf(stderr, "OpenSSL setup failed\n");
		return 1;
	}
	set_tag_param(tag_buf);
	have_provider = provider_setup();
	AES_set_encrypt_key(key, 256, &aes_key);
	g128 = CRYPTO_gcm128_new(&aes_key, (block128_f) AES_encrypt);

	/* reference bytes: the one-shot path */
	for (size_t s = 0; s < NSIZES; s++)
		if (!seal_naive(sizes[s], ref_ct[s], ref_tag[s]))
			return 1;

	if (!tsv)
		printf("%s; %ld iterations x %d, minimum of thread CPU time; AAD %d bytes\n",
			   OpenSSL_version(OPENSSL_VERSION), iters, REPS, AAD_LEN);
	for (int do_open = 0; do_open <= 1; do_open++)
	{
		print_header(do_open ? "AES-256-GCM open" : "AES-256-GCM seal", do_open ? "open" : "seal");
		for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
			run_aead(&variants[i], do_open);
		for (size_t i = 0; i < sizeof(pvariants) / sizeof(pvariants[0]); i++)
			if (have_provider || pvariants[i].seal == seal_gcm128)
				run_aead(&pvariants[i], do_open);
		if (!have_provider)
			fprintf(tsv ? stderr : stdout, "  provider: dispatch table not found\n");
	}

	/* HMAC setups */
	for (int i = 0; i < 64; i++)
		pad[i] = (i < 32 ? key[i] : 0) ^ 0x36;
	SHA256_Init(&s_in);
	SHA256_Update(&s_in, pad, 64);
	m_in = EVP_MD_CTX_new();
	m_out = EVP_MD_CTX_new();
	m_work = EVP_MD_CTX_new();
	EVP_DigestInit_ex2(m_in, sha, NULL);
	EVP_DigestUpdate(m_in, pad, 64);
	for (int i = 0; i < 64; i++)
		pad[i] = (i < 32 ? key[i] : 0) ^ 0x5c;
	SHA256_Init(&s_out);
	SHA256_Update(&s_out, pad, 64);
	EVP_DigestInit_ex2(m_out, sha, NULL);
	EVP_DigestUpdate(m_out, pad, 64);
	mp[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
	mp[1] = OSSL_PARAM_construct_end();
	mac_keyed = EVP_MAC_CTX_new(hmac);
	mac_reinit = EVP_MAC_CTX_new(hmac);
	if (EVP_MAC_init(mac_keyed, key, 32, mp) != 1 || EVP_MAC_init(mac_reinit, key, 32, mp) != 1)
		return 1;
	for (size_t s = 0; s < NSIZES; s++)
		hmac_oneshot(sizes[s], ref_mac + 32 * s, NULL);

	print_header("HMAC-SHA-256", "hmac");
	run_simple("sha256-ctx (today)", hmac_sha256_ctx, ref_mac);
	run_simple("sha256-pad", hmac_sha256_pad, ref_mac);
	run_simple("sha256-transform", hmac_sha256_transform, ref_mac);
	run_simple("md-copy", hmac_md_copy, ref_mac);
	run_simple("mac-dup", hmac_mac_dup, ref_mac);
	run_simple("mac-reinit", hmac_mac_reinit, ref_mac);
	run_simple("mac-oneshot", hmac_oneshot, ref_mac);

	print_header("12-byte nonce", "nonce");
	run_simple("RAND_bytes per call", nonce_rand_bytes, NULL);
	run_simple("4 KiB pool (today)", nonce_pool, NULL);

	if (failures > 0)
		fprintf(tsv ? stderr : stdout, "\n%d measurements or checks failed\n", failures);
	return failures > 0;
}
