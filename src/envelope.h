/*-------------------------------------------------------------------------
 *
 * envelope.h
 *		The enc_text value format, v1.  Pure C: no PostgreSQL dependency, so
 *		the parser is unit-tested and fuzzed on its own.
 *
 *	 version(1) | algorithm(1) | flags(1) | key version id(4, big-endian)
 *	 | nonce(12) | [tag length(1) | blind-index tag]
 *	 | [extension length(2, big-endian) | fields] | ciphertext | GCM tag(16)
 *
 * Extension fields (flag 0x04, since 0.3.0; FORMAT.md 2.6), each
 * type(1) | length(1, >= 1) | data, in this order:
 *	 0x01 plaintext type, once at most (absent: text)
 *	 0x02 order-revealing term (ore.h), once at most
 *	 0x03 named blind-index tag: name length(1) | name | tag; any number,
 *		  names strictly increasing (bytewise, shorter first on a tie)
 * They are part of the header, so of the AAD: authenticated like the tag.
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
#define PGCK_FLAG_EXT			0x04	/* extension fields follow (0.3.0) */
#define PGCK_FLAG_MASK			0x07

/* extension field types */
#define PGCK_EXT_PLAIN_TYPE		0x01
#define PGCK_EXT_ORE_TERM		0x02
#define PGCK_EXT_NAMED_TAG		0x03
#define PGCK_EXT_MAX_LEN		4096	/* bytes of fields, length prefix excluded */
#define PGCK_INDEX_NAME_MAX		63

/* plaintext types (field 0x01); text values carry no type field */
#define PGCK_PT_TEXT			0
#define PGCK_PT_BYTEA			1
#define PGCK_PT_INT8			2
#define PGCK_PT_NUMERIC			3
#define PGCK_PT_DATE			4
#define PGCK_PT_TIMESTAMPTZ		5
#define PGCK_PT_MAX				5

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
	PGCK_ENV_BAD_KEY_VERSION,
	PGCK_ENV_BAD_EXTENSION
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
	/* extension fields (all zero / NULL without flag 0x04) */
	uint8_t		plain_type;		/* PGCK_PT_*, PGCK_PT_TEXT when absent */
	const uint8_t *ore_term;	/* NULL when absent */
	size_t		ore_term_len;
	const uint8_t *named_tags;	/* the first named-tag field, NULL when none */
	const uint8_t *ext_end;		/* end of the extension fields */
} PgckEnvelope;

/* A named blind-index tag, for writing and for pgck_envelope_named_tag(). */
typedef struct PgckNamedTag
{
	const char *name;
	size_t		name_len;		/* 1 .. PGCK_INDEX_NAME_MAX */
	const uint8_t *tag;
	size_t		tag_len;		/* 1 .. PGCK_BLIND_TAG_MAX */
} PgckNamedTag;

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
 * The extension of a value: a type field when plain_type is not text, the
 * ORE term when ore_len > 0, the named tags (sorted here by name; names must
 * be distinct).  Writes into out (NULL: only measure) and returns its size,
 * length prefix included; 0 when there is nothing to write.
 */
extern size_t pgck_envelope_write_ext(uint8_t *out, uint8_t plain_type,
									  const uint8_t *ore, size_t ore_len,
									  PgckNamedTag *tags, int ntags);

/* pgck_envelope_size() plus ext_size bytes of extension. */
extern size_t pgck_envelope_size_ext(size_t plaintext_len, size_t blind_tag_len,
									 size_t ext_size);

/*
 * pgck_envelope_write_header() followed by the ext_size bytes at ext (as
 * pgck_envelope_write_ext() made them); sets flag 0x04 exactly when
 * ext_size > 0.  Returns the header length.
 */
extern size_t pgck_envelope_write_header_ext(uint8_t *buf, uint8_t flags,
											 uint32_t key_version_id,
											 const uint8_t *nonce,
											 const uint8_t *blind_tag,
											 size_t blind_tag_len,
											 const uint8_t *ext, size_t ext_size);

/* The named tag called name in a parsed value: true and *out set, or false. */
extern bool pgck_envelope_named_tag(const PgckEnvelope *env, const char *name,
									size_t name_len, PgckNamedTag *out);

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
