/*
 * test_escrow.c
 *		Unit tests of src/escrow.c: RSA-OAEP-SHA-256 escrow wrapping
 *		(FORMAT.md 11.4), checked by decrypting with OpenSSL and the private
 *		key made here, and the refusals (small, non-RSA, private, garbage).
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "escrow.h"
#include "unit.h"

static char *
pem_of(EVP_PKEY *pkey, int private_key, size_t *len)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	char	   *data;
	char	   *copy;
	long		n;

	if (private_key)
		PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_PUBKEY(bio, pkey);
	n = BIO_get_mem_data(bio, &data);
	copy = malloc(n + 1);
	memcpy(copy, data, n);
	copy[n] = '\0';
	*len = (size_t) n;
	BIO_free(bio);
	return copy;
}

/* OAEP-decrypt with the given digests; returns the plaintext length or -1. */
static long
oaep_decrypt(EVP_PKEY *pkey, const EVP_MD *md, const EVP_MD *mgf,
			 const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	size_t		len = cap;
	long		r = -1;

	if (ctx && EVP_PKEY_decrypt_init(ctx) == 1 &&
		EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
		EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) == 1 &&
		EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf) == 1 &&
		EVP_PKEY_decrypt(ctx, out, &len, in, in_len) == 1)
		r = (long) len;
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int
main(void)
{
	EVP_PKEY   *rsa3072 = EVP_RSA_gen(3072);
	EVP_PKEY   *rsa2048 = EVP_RSA_gen(2048);
	EVP_PKEY   *ec = EVP_EC_gen("P-256");
	uint8_t		key[32];
	uint8_t		wrapped[PGCK_ESCROW_MAX_WRAPPED];
	uint8_t		plain[600];
	uint8_t		fp[PGCK_ESCROW_FP_LEN];
	uint8_t		fp2[PGCK_ESCROW_FP_LEN];
	uint8_t    *der = NULL;
	size_t		der_len = 0;
	size_t		wrapped_len = 0;
	size_t		pem_len;
	unsigned char *ref_der = NULL;
	int			ref_len;
	int			bits = 0;
	char	   *pem;
	long		n;
	int			i;

	unit_check(rsa3072 && rsa2048 && ec, "test keys generated");
	for (i = 0; i < 32; i++)
		key[i] = (uint8_t) (i * 7 + 1);

	/* a 3072-bit public key: accepted, DER and fingerprint as FORMAT.md 11.1 says */
	pem = pem_of(rsa3072, 0, &pem_len);
	unit_check(pgck_escrow_parse_pem(pem, pem_len, &der, &der_len, &bits, fp) == PGCK_ESCROW_OK,
			   "RSA-3072 PEM public key accepted");
	unit_check(bits == 3072, "modulus bits reported (%d)", bits);
	ref_len = i2d_PUBKEY(rsa3072, &ref_der);
	unit_check(ref_len > 0 && (size_t) ref_len == der_len && memcmp(ref_der, der, der_len) == 0,
			   "stored DER is the SubjectPublicKeyInfo");
	unit_check(pgck_escrow_fingerprint(ref_der, ref_len, fp2) && memcmp(fp, fp2, 32) == 0,
			   "fingerprint is SHA-256 of the DER");
	{
		uint8_t		sha[32];
		unsigned int sl = 0;

		EVP_Digest(ref_der, ref_len, sha, &sl, EVP_sha256(), NULL);
		unit_check(sl == 32 && memcmp(sha, fp, 32) == 0, "fingerprint equals an independent SHA-256");
	}
	unit_check(pgck_escrow_check_der(der, der_len, &bits) == PGCK_ESCROW_OK, "stored DER re-checks");
	free(pem);

	/* wrap: k bytes, decrypts with OAEP SHA-256/MGF1-SHA-256 and no label, not with SHA-1 */
	unit_check(pgck_escrow_wrap(der, der_len, key, 32, wrapped, sizeof(wrapped), &wrapped_len) == PGCK_ESCROW_OK,
			   "wrap succeeds");
	unit_check(wrapped_len == 384, "blob is the modulus length (%zu)", wrapped_len);
	n = oaep_decrypt(rsa3072, EVP_sha256(), EVP_sha256(), wrapped, wrapped_len, plain, sizeof(plain));
	unit_check(n == 32 && memcmp(plain, key, 32) == 0, "private key recovers the 32-byte key (OAEP SHA-256, MGF1 SHA-256)");
	n = oaep_decrypt(rsa3072, EVP_sha1(), EVP_sha1(), wrapped, wrapped_len, plain, sizeof(plain));
	unit_check(n < 0, "OAEP with SHA-1 does not decrypt it (the parameters are SHA-256)");
	n = oaep_decrypt(rsa3072, EVP_sha256(), EVP_sha1(), wrapped, wrapped_len, plain, sizeof(plain));
	unit_check(n < 0, "MGF1 with SHA-1 does not decrypt it");
	{
		uint8_t		again[PGCK_ESCROW_MAX_WRAPPED];
		size_t		again_len = 0;

		pgck_escrow_wrap(der, der_len, key, 32, again, sizeof(again), &again_len);
		unit_check(again_len == wrapped_len && memcmp(again, wrapped, wrapped_len) != 0,
				   "OAEP is randomized: two wraps differ");
	}
	unit_check(pgck_escrow_wrap(der, der_len, key, 32, wrapped, 100, &wrapped_len) != PGCK_ESCROW_OK,
			   "too small an output buffer is refused");
	{
		uint8_t    *longer = malloc(der_len + 1);

		memcpy(longer, der, der_len);
		longer[der_len] = 0;
		unit_check(pgck_escrow_check_der(longer, der_len + 1, &bits) == PGCK_ESCROW_BAD_DER,
				   "DER with a trailing byte is refused");
		unit_check(pgck_escrow_check_der(der, der_len - 1, &bits) == PGCK_ESCROW_BAD_DER,
				   "truncated DER is refused");
		free(longer);
	}
	free(der);

	/* refusals */
	pem = pem_of(rsa2048, 0, &pem_len);
	unit_check(pgck_escrow_parse_pem(pem, pem_len, &der, &der_len, &bits, fp) == PGCK_ESCROW_TOO_SMALL && der == NULL,
			   "RSA-2048 refused as too small");
	free(pem);
	pem = pem_of(ec, 0, &pem_len);
	unit_check(pgck_escrow_parse_pem(pem, pem_len, &der, &der_len, &bits, fp) == PGCK_ESCROW_NOT_RSA,
			   "EC P-256 refused as not RSA");
	free(pem);
	pem = pem_of(rsa3072, 1, &pem_len);
	unit_check(pgck_escrow_parse_pem(pem, pem_len, &der, &der_len, &bits, fp) == PGCK_ESCROW_NOT_PEM_PUBLIC,
			   "a private key PEM is refused");
	free(pem);
	unit_check(pgck_escrow_parse_pem("hello", 5, &der, &der_len, &bits, fp) == PGCK_ESCROW_NOT_PEM_PUBLIC,
			   "garbage refused");
	{
		unsigned char *ecder = NULL;
		int			el = i2d_PUBKEY(ec, &ecder);

		unit_check(pgck_escrow_wrap(ecder, el, key, 32, wrapped, sizeof(wrapped), &wrapped_len) == PGCK_ESCROW_NOT_RSA,
				   "wrap under a stored EC key refused");
		OPENSSL_free(ecder);
	}
	for (i = 0; i <= PGCK_ESCROW_CRYPTO; i++)
		unit_check(strlen(pgck_escrow_status_text((PgckEscrowStatus) i)) > 0, "status %d has a text", i);

	OPENSSL_free(ref_der);
	EVP_PKEY_free(rsa3072);
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(ec);
	return unit_finish();
}
