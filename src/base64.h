/*-------------------------------------------------------------------------
 *
 * base64.h
 *		Strict standard-alphabet base64 (RFC 4648 section 4, padded).
 *
 * Pure C (no PostgreSQL dependency): used by the enc_text text form, the
 * KMS JSON shaping and the tests.  Decoding accepts exactly the canonical
 * encoding: no whitespace, no missing or extra padding, no non-zero pad
 * bits, so every value has one text form.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_BASE64_H
#define PGCK_BASE64_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Length of the encoding of n bytes, without a terminating NUL. */
#define PGCK_BASE64_ENC_LEN(n) ((((n) + 2) / 3) * 4)
/* Upper bound of the decoded length of m characters. */
#define PGCK_BASE64_DEC_MAX(m) (((m) / 4) * 3)

/*
 * Encode src[0..len) into dst, which must hold PGCK_BASE64_ENC_LEN(len)
 * bytes.  No NUL is written.  Returns the number of characters written.
 */
extern size_t pgck_base64_encode(const uint8_t *src, size_t len, char *dst);

/*
 * Decode src[0..len) into dst, which must hold PGCK_BASE64_DEC_MAX(len)
 * bytes.  Returns true and sets *outlen on a canonical encoding, false on
 * anything else (dst contents are then unspecified).
 */
extern bool pgck_base64_decode(const char *src, size_t len, uint8_t *dst, size_t *outlen);

#endif							/* PGCK_BASE64_H */
