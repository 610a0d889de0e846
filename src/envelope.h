/*-------------------------------------------------------------------------
 *
 * envelope.h
 *		The enc_text value format, v1.  Pure C: no PostgreSQL dependency, so
 *		the parser is unit-tested and fuzzed on its own.
 *
 *	 version(1) | algorithm(1) | flags(1) | key version id(4, big-endian)
 *	 | nonce(12) | [tag length(1) | blind-index tag] | ciphertext | GCM tag(16)
 *
 *	 AAD = every byte before the ciphertext || context (when given)
 *
 * The text form is PGCK_TEXT_PREFIX followed by the canonical base64 of these
 * bytes.  pgck_envelope_parse() validates structure only (it has no keys);
 * authenticity is established by AES-GCM when the value is opened.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_ENVELOPE_H
#define PGCK_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define PGCK_ENV_VERSION_1		1
#define PGCK_ALG_AES256_GCM		1

/* flags */
#define PGCK_FLAG_BLIND_TAG		0x01	/* a blind-index tag follows the nonce */
#define PGCK_FLAG_CONTEXT		0x02	/* a context was bound as AAD */
#define PGCK_FLAG_MASK			0x03

#define PGCK_NONCE_LEN			12
#define PGCK_GCM_TAG_LEN		16
#define PGCK_FIXED_HEADER_LEN	19		/* version .. nonce */
#define PGCK_BLIND_TAG_MAX		32
#define PGCK_MIN_ENVELOPE_LEN	(PGCK_FIXED_HEADER_LEN + PGCK_GCM_TAG_LEN)

/* text form: prefix + base64 */
#define PGCK_TEXT_PREFIX		"pgck:"
#define PGCK_TEXT_PREFIX_LEN	5

typedef enum PgckEnvelopeStatus
{
	PGCK_ENV_OK = 0,
	PGCK_ENV_TOO_SHORT,
	PGCK_ENV_UNKNOWN_VERSION,
	PGCK_ENV_UNKNOWN_ALGORITHM,
	PGCK_ENV_UNKNOWN_FLAGS,
	PGCK_ENV_BAD_TAG_LENGTH,
	PGCK_ENV_BAD_KEY_VERSION
} PgckEnvelopeStatus;

/* A parsed value; every pointer points into the buffer that was parsed. */
typedef struct PgckEnvelope
{
	uint8_t		version;
	uint8_t		algorithm;
	uint8_t		flags;
	uint32_t	key_version_id;
	const uint8_t *nonce;		/* PGCK_NONCE_LEN bytes */
	const uint8_t *blind_tag;	/* NULL when absent */
	size_t		blind_tag_len;
	const uint8_t *ciphertext;
	size_t		ciphertext_len;
	const uint8_t *gcm_tag;		/* PGCK_GCM_TAG_LEN bytes */
	size_t		header_len;		/* bytes authenticated as AAD */
} PgckEnvelope;

/*
 * Parse buf[0..len).  On PGCK_ENV_OK *out describes the value; for
 * PGCK_ENV_UNKNOWN_VERSION out->version holds the version found.  Never reads
 * outside buf.
 */
extern PgckEnvelopeStatus pgck_envelope_parse(const uint8_t *buf, size_t len,
											  PgckEnvelope *out);

/* A sentence describing a parse failure, for errdetail. */
extern const char *pgck_envelope_status_message(PgckEnvelopeStatus status);

/* Total size of a value holding plaintext_len bytes and a blind_tag_len tag. */
extern size_t pgck_envelope_size(size_t plaintext_len, size_t blind_tag_len);

/*
 * Write the header (everything before the ciphertext) into buf, which must
 * hold pgck_envelope_size() bytes.  blind_tag_len must be 0 (no tag) or
 * 1..PGCK_BLIND_TAG_MAX.  Returns the header length.
 */
extern size_t pgck_envelope_write_header(uint8_t *buf, uint8_t flags,
										 uint32_t key_version_id,
										 const uint8_t *nonce,
										 const uint8_t *blind_tag,
										 size_t blind_tag_len);

/*
 * Text form.  pgck_envelope_text_len() is the length of the text (without
 * NUL) of a len-byte value; pgck_envelope_to_text() writes it plus a NUL
 * into dst.  pgck_envelope_from_text() decodes src[0..srclen) into dst
 * (which must hold srclen bytes) and returns false unless the text is the
 * prefix followed by canonical base64.
 */
extern size_t pgck_envelope_text_len(size_t len);
extern void pgck_envelope_to_text(const uint8_t *buf, size_t len, char *dst);
extern bool pgck_envelope_from_text(const char *src, size_t srclen,
									uint8_t *dst, size_t *dstlen);

#endif							/* PGCK_ENVELOPE_H */
