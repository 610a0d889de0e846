/*
 * crypto_micro.c: what the per-value primitives cost outside PostgreSQL, to size the
 * optimizations suggested in bench/README.md.  Not part of the extension or the tests.
 *
 *   cc -O2 -o /tmp/crypto_micro bench/crypto_micro.c -lcrypto -l:libsodium.so.23 && /tmp/crypto_micro
 *
 * Per call, for a 20-byte plaintext and the 53-byte AAD of an enc_text header with a
 * 256-bit tag: AES-256-GCM seal/open the way src/aead.c does it (keyed EVP contexts, new
 * nonce per call), the same through libsodium's precomputed-key API; HMAC-SHA-256 the way
 * src/aead.c does it (EVP_MD_CTX_copy_ex of pad-absorbed states) and with SHA256_CTX
 * struct copies; getpid(), which src/aead.c's nonce pool calls per value.
 * libsodium23 (Debian main) is enough: without libsodium-dev its prototypes are declared here.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1	/* SHA256_Init & co. are deprecated in 3.0, not gone */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if __has_include(<sodium.h>)
#include <sodium.h>
typedef crypto_aead_aes256gcm_state gcm_state;
#else
typedef struct
{
	unsigned char opaque[512];
} __attribute__((aligned(16))) gcm_state;
int			sodium_init(void);
int			crypto_aead_aes256gcm_is_available(void);
int			crypto_aead_aes256gcm_beforenm(gcm_state *st, const unsigned char *k);
int			crypto_aead_aes256gcm_encrypt_detached_afternm(unsigned char *c, unsigned char *mac,
														   unsigned long long *maclen_p,
														   const unsigned char *m, unsigned long long mlen,
														   const unsigned char *ad, unsigned long long adlen,
														   const unsigned char *nsec,
														   const unsigned char *npub, const gcm_state *st);
int			crypto_aead_aes256gcm_decrypt_detached_afternm(unsigned char *m, unsigned char *nsec,
														   const unsigned char *c, unsigned long long clen,
														   const unsigned char *mac,
														   const unsigned char *ad, unsigned long long adlen,
														   const unsigned char *npub, const gcm_state *st);
#endif

#define N 2000000

static double
now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int
main(void)
{
	unsigned char key[32], nonce[12] = {1}, aad[53], pt[20], ct[20], tag[16], out[20];
	unsigned char pad[64], ih[32], mac[32], mac_evp[32];
	EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	EVP_MD	   *sha = EVP_MD_fetch(NULL, "SHA256", NULL);
	EVP_CIPHER_CTX *e = EVP_CIPHER_CTX_new(), *d = EVP_CIPHER_CTX_new();
	EVP_MD_CTX *in = EVP_MD_CTX_new(), *ou = EVP_MD_CTX_new(), *w = EVP_MD_CTX_new();
	SHA256_CTX	si, so, sw;
	unsigned int l;
	int			n, f, ok = 0;
	double		t0;
	volatile long sink = 0;

	memset(key, 7, sizeof(key));
	memset(aad, 3, sizeof(aad));
	memcpy(pt, "us123456@example.com", 20);
	EVP_EncryptInit_ex2(e, gcm, key, NULL, NULL);
	EVP_DecryptInit_ex2(d, gcm, key, NULL, NULL);

	t0 = now_ns();
	for (int i = 0; i < N; i++)
	{
		EVP_EncryptInit_ex2(e, NULL, NULL, nonce, NULL);
		EVP_EncryptUpdate(e, NULL, &n, aad, sizeof(aad));
		EVP_EncryptUpdate(e, ct, &n, pt, sizeof(pt));
		EVP_EncryptFinal_ex(e, ct + n, &f);
		EVP_CIPHER_CTX_ctrl(e, EVP_CTRL_GCM_GET_TAG, 16, tag);
	}
	printf("AES-256-GCM seal, EVP as in src/aead.c:         %6.1f ns\n", (now_ns() - t0) / N);
	t0 = now_ns();
	for (int i = 0; i < N; i++)
	{
		EVP_DecryptInit_ex2(d, NULL, NULL, nonce, NULL);
		EVP_DecryptUpdate(d, NULL, &n, aad, sizeof(aad));
		EVP_DecryptUpdate(d, out, &n, ct, sizeof(ct));
		EVP_CIPHER_CTX_ctrl(d, EVP_CTRL_GCM_SET_TAG, 16, tag);
		ok += EVP_DecryptFinal_ex(d, out + n, &f);
	}
	printf("AES-256-GCM open, EVP as in src/aead.c:         %6.1f ns%s\n", (now_ns() - t0) / N,
		   ok == N ? "" : "  (FAILED)");

	if (sodium_init() >= 0 && crypto_aead_aes256gcm_is_available())
	{
		static gcm_state st;
		unsigned char c2[20], t2[16];
		unsigned long long ml;

		crypto_aead_aes256gcm_beforenm(&st, key);
		t0 = now_ns();
		for (int i = 0; i < N; i++)
			crypto_aead_aes256gcm_encrypt_detached_afternm(c2, t2, &ml, pt, sizeof(pt), aad, sizeof(aad),
														   NULL, nonce, &st);
		printf("AES-256-GCM seal, libsodium _afternm:           %6.1f ns%s\n", (now_ns() - t0) / N,
			   memcmp(c2, ct, 20) == 0 && memcmp(t2, tag, 16) == 0 ? " (same bytes as EVP)" : " (DIFFERS)");
		ok = 0;
		t0 = now_ns();
		for (int i = 0; i < N; i++)
			ok += crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, c2, sizeof(c2), t2, aad,
																 sizeof(aad), nonce, &st) == 0;
		printf("AES-256-GCM open, libsodium _afternm:           %6.1f ns%s\n", (now_ns() - t0) / N,
			   ok == N ? "" : "  (FAILED)");
	}
	else
		printf("libsodium AES-256-GCM: not available on this CPU\n");

	for (int i = 0; i < 64; i++)
		pad[i] = (i < 32 ? key[i] : 0) ^ 0x36;
	EVP_DigestInit_ex2(in, sha, NULL);
	EVP_DigestUpdate(in, pad, 64);
	SHA256_Init(&si);
	SHA256_Update(&si, pad, 64);
	for (int i = 0; i < 64; i++)
		pad[i] = (i < 32 ? key[i] : 0) ^ 0x5c;
	EVP_DigestInit_ex2(ou, sha, NULL);
	EVP_DigestUpdate(ou, pad, 64);
	SHA256_Init(&so);
	SHA256_Update(&so, pad, 64);

	t0 = now_ns();
	for (int i = 0; i < N; i++)
	{
		EVP_MD_CTX_copy_ex(w, in);
		EVP_DigestUpdate(w, pt, sizeof(pt));
		EVP_DigestFinal_ex(w, ih, &l);
		EVP_MD_CTX_copy_ex(w, ou);
		EVP_DigestUpdate(w, ih, sizeof(ih));
		EVP_DigestFinal_ex(w, mac_evp, &l);
	}
	printf("HMAC-SHA-256, EVP_MD_CTX_copy_ex (src/aead.c):  %6.1f ns\n", (now_ns() - t0) / N);
	t0 = now_ns();
	for (int i = 0; i < N; i++)
	{
		sw = si;
		SHA256_Update(&sw, pt, sizeof(pt));
		SHA256_Final(ih, &sw);
		sw = so;
		SHA256_Update(&sw, ih, sizeof(ih));
		SHA256_Final(mac, &sw);
	}
	printf("HMAC-SHA-256, SHA256_CTX struct copies:         %6.1f ns%s\n", (now_ns() - t0) / N,
		   memcmp(mac, mac_evp, 32) == 0 ? " (same MAC)" : " (DIFFERS)");

	t0 = now_ns();
	for (int i = 0; i < N; i++)
		sink += getpid();
	printf("getpid() (a system call per value today):       %6.1f ns\n", (now_ns() - t0) / N);
	return sink == 0;
}
