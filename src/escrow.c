/*-------------------------------------------------------------------------
 *
 * escrow.c
 *		RSA-OAEP-SHA-256 escrow wrapping of 32-byte keys under an offline
 *		RSA public key (FORMAT.md 11.4).  See escrow.h.
 *
 * Every OpenSSL object is freed on every path; no function keeps state.
 * The plaintext key is read from the caller's buffer only; OpenSSL's OAEP
 * padding buffer is its own, cleansed by OpenSSL (rsa_ossl_public_encrypt
 * clear-frees it).
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>
#include <stdlib.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "escrow.h"

const char *
pgck_escrow_status_text(PgckEscrowStatus st)
{
	switch (st)
	{
		case PGCK_ESCROW_OK:
			return "ok";
		case PGCK_ESCROW_NOT_PEM_PUBLIC:
			return "The text is not a PEM public key (a \"BEGIN PUBLIC KEY\" block holding a SubjectPublicKeyInfo).";
		case PGCK_ESCROW_NOT_RSA:
			return "The public key is not an RSA encryption key (rsaEncryption); EC, Ed25519, DSA and RSA-PSS keys cannot wrap with RSA-OAEP.";
		case PGCK_ESCROW_TOO_SMALL:
			return "The RSA key is shorter than 3072 bits.";
		case PGCK_ESCROW_TOO_LARGE:
			return "The RSA key is longer than 16384 bits.";
		case PGCK_ESCROW_BAD_DER:
			return "The stored public key is not a well-formed DER SubjectPublicKeyInfo.";
		case PGCK_ESCROW_CRYPTO:
			return "OpenSSL could not perform the operation.";
	}
	return "unknown status";
}

/* Is pkey an RSA encryption key of an accepted size? */
static PgckEscrowStatus
check_pkey(EVP_PKEY *pkey, int *bits_out)
{
	int			bits;

	if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA)
		return PGCK_ESCROW_NOT_RSA;
	bits = EVP_PKEY_bits(pkey);
	if (bits < PGCK_ESCROW_MIN_BITS)
		return PGCK_ESCROW_TOO_SMALL;
	if (bits > PGCK_ESCROW_MAX_BITS)
		return PGCK_ESCROW_TOO_LARGE;
	*bits_out = bits;
	return PGCK_ESCROW_OK;
}

static EVP_PKEY *
pkey_from_der(const uint8_t *der, size_t der_len)
{
	const unsigned char *p = der;
	EVP_PKEY   *pkey;

	if (der_len == 0 || der_len > 1 << 20)
		return NULL;
	pkey = d2i_PUBKEY(NULL, &p, (long) der_len);
	if (pkey != NULL && p != der + der_len)
	{
		EVP_PKEY_free(pkey);	/* trailing bytes: not exactly one SPKI */
		return NULL;
	}
	return pkey;
}

int
pgck_escrow_fingerprint(const uint8_t *der, size_t der_len, uint8_t *fp_out)
{
	unsigned int len = 0;

	return EVP_Digest(der, der_len, fp_out, &len, EVP_sha256(), NULL) == 1 &&
		len == PGCK_ESCROW_FP_LEN;
}

PgckEscrowStatus
pgck_escrow_parse_pem(const char *pem, size_t pem_len, uint8_t **der_out, size_t *der_len,
					  int *bits_out, uint8_t *fp_out)
{
	BIO		   *bio;
	EVP_PKEY   *pkey;
	PgckEscrowStatus st;
	unsigned char *der = NULL;
	int			len;

	*der_out = NULL;
	*der_len = 0;
	if (pem_len > 1 << 20)
		return PGCK_ESCROW_NOT_PEM_PUBLIC;
	bio = BIO_new_mem_buf(pem, (int) pem_len);
	if (bio == NULL)
		return PGCK_ESCROW_CRYPTO;
	/* only "PUBLIC KEY": never a private key block, no passphrase callback */
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, (void *) "");
	BIO_free(bio);
	if (pkey == NULL)
		return PGCK_ESCROW_NOT_PEM_PUBLIC;
	st = check_pkey(pkey, bits_out);
	if (st == PGCK_ESCROW_OK)
	{
		len = i2d_PUBKEY(pkey, &der);
		if (len <= 0)
			st = PGCK_ESCROW_CRYPTO;
		else
		{
			*der_out = malloc(len);
			if (*der_out == NULL)
				st = PGCK_ESCROW_CRYPTO;
			else
			{
				memcpy(*der_out, der, len);
				*der_len = (size_t) len;
				if (!pgck_escrow_fingerprint(*der_out, *der_len, fp_out))
				{
					free(*der_out);
					*der_out = NULL;
					*der_len = 0;
					st = PGCK_ESCROW_CRYPTO;
				}
			}
			OPENSSL_free(der);
		}
	}
	EVP_PKEY_free(pkey);
	return st;
}

PgckEscrowStatus
pgck_escrow_check_der(const uint8_t *der, size_t der_len, int *bits_out)
{
	EVP_PKEY   *pkey = pkey_from_der(der, der_len);
	PgckEscrowStatus st;

	if (pkey == NULL)
		return PGCK_ESCROW_BAD_DER;
	st = check_pkey(pkey, bits_out);
	EVP_PKEY_free(pkey);
	return st;
}

PgckEscrowStatus
pgck_escrow_wrap(const uint8_t *der, size_t der_len, const uint8_t *key, size_t key_len,
				 uint8_t *out, size_t out_cap, size_t *out_len)
{
	EVP_PKEY   *pkey = pkey_from_der(der, der_len);
	EVP_PKEY_CTX *ctx = NULL;
	PgckEscrowStatus st;
	int			bits = 0;
	size_t		len = 0;

	*out_len = 0;
	if (pkey == NULL)
		return PGCK_ESCROW_BAD_DER;
	st = check_pkey(pkey, &bits);
	if (st == PGCK_ESCROW_OK)
	{
		st = PGCK_ESCROW_CRYPTO;
		ctx = EVP_PKEY_CTX_new(pkey, NULL);
		if (ctx != NULL &&
			EVP_PKEY_encrypt_init(ctx) == 1 &&
			EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
			EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
			EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1 &&
			EVP_PKEY_encrypt(ctx, NULL, &len, key, key_len) == 1 &&
			len == (size_t) (bits + 7) / 8 && len <= out_cap &&
			EVP_PKEY_encrypt(ctx, out, &len, key, key_len) == 1 &&
			len == (size_t) (bits + 7) / 8)
		{
			*out_len = len;
			st = PGCK_ESCROW_OK;
		}
	}
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return st;
}
