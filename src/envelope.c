/*-------------------------------------------------------------------------
 *
 * envelope.c
 *		Parse and write the enc_text value format; see envelope.h.
 *
 * Pure C.  The parser handles attacker-supplied bytes (literals, COPY, binary
 * recv, restored dumps): every length is checked against what remains before
 * it is used, and nothing is allocated.
 *
 *-------------------------------------------------------------------------
 */
#include <assert.h>
#include <string.h>

#include "base64.h"
#include "envelope.h"

PgckEnvelopeStatus
pgck_envelope_parse(const uint8_t *buf, size_t len, PgckEnvelope *out)
{
	size_t		pos;
	size_t		remaining;

	memset(out, 0, sizeof(*out));
	if (len < 1)
		return PGCK_ENV_TOO_SHORT;
	out->version = buf[0];
	if (out->version != PGCK_ENV_VERSION_1)
		return PGCK_ENV_UNKNOWN_VERSION;
	if (len < PGCK_MIN_ENVELOPE_LEN)
		return PGCK_ENV_TOO_SHORT;

	out->algorithm = buf[1];
	if (out->algorithm != PGCK_ALG_AES256_GCM)
		return PGCK_ENV_UNKNOWN_ALGORITHM;
	out->flags = buf[2];
	if ((out->flags & ~PGCK_FLAG_MASK) != 0)
		return PGCK_ENV_UNKNOWN_FLAGS;
	out->key_version_id = ((uint32_t) buf[3] << 24) | ((uint32_t) buf[4] << 16) |
		((uint32_t) buf[5] << 8) | (uint32_t) buf[6];
	if (out->key_version_id == 0 || out->key_version_id > INT32_MAX)
		return PGCK_ENV_BAD_KEY_VERSION;
	out->nonce = buf + 7;
	pos = PGCK_FIXED_HEADER_LEN;

	if (out->flags & PGCK_FLAG_BLIND_TAG)
	{
		size_t		tlen;

		/* tag length byte, the tag, and still room for the GCM tag */
		if (len - pos < 1 + PGCK_GCM_TAG_LEN)
			return PGCK_ENV_TOO_SHORT;
		tlen = buf[pos];
		if (tlen < 1 || tlen > PGCK_BLIND_TAG_MAX)
			return PGCK_ENV_BAD_TAG_LENGTH;
		if (len - pos - 1 < tlen + PGCK_GCM_TAG_LEN)
			return PGCK_ENV_TOO_SHORT;
		out->blind_tag = buf + pos + 1;
		out->blind_tag_len = tlen;
		pos += 1 + tlen;
	}

	remaining = len - pos;		/* >= PGCK_GCM_TAG_LEN, checked above */
	out->header_len = pos;
	out->ciphertext = buf + pos;
	out->ciphertext_len = remaining - PGCK_GCM_TAG_LEN;
	out->gcm_tag = buf + len - PGCK_GCM_TAG_LEN;
	return PGCK_ENV_OK;
}

const char *
pgck_envelope_status_message(PgckEnvelopeStatus status)
{
	switch (status)
	{
		case PGCK_ENV_OK:
			return "The value is well formed.";
		case PGCK_ENV_TOO_SHORT:
			return "The value is shorter than its header says.";
		case PGCK_ENV_UNKNOWN_VERSION:
			return "The value's format version is not supported by this version of pgcrypt_kms.";
		case PGCK_ENV_UNKNOWN_ALGORITHM:
			return "The value names an unknown encryption algorithm.";
		case PGCK_ENV_UNKNOWN_FLAGS:
			return "The value has unknown flag bits set.";
		case PGCK_ENV_BAD_TAG_LENGTH:
			return "The value's blind-index tag length is out of range.";
		case PGCK_ENV_BAD_KEY_VERSION:
			return "The value names an invalid key version id.";
	}
	return "The value is malformed.";
}

size_t
pgck_envelope_size(size_t plaintext_len, size_t blind_tag_len)
{
	return PGCK_FIXED_HEADER_LEN + (blind_tag_len > 0 ? 1 + blind_tag_len : 0) +
		plaintext_len + PGCK_GCM_TAG_LEN;
}

size_t
pgck_envelope_write_header(uint8_t *buf, uint8_t flags, uint32_t key_version_id,
						   const uint8_t *nonce, const uint8_t *blind_tag,
						   size_t blind_tag_len)
{
	size_t		pos;

	assert(blind_tag_len <= PGCK_BLIND_TAG_MAX);
	if (blind_tag_len > 0)
		flags |= PGCK_FLAG_BLIND_TAG;
	else
		flags &= ~PGCK_FLAG_BLIND_TAG;
	buf[0] = PGCK_ENV_VERSION_1;
	buf[1] = PGCK_ALG_AES256_GCM;
	buf[2] = flags;
	buf[3] = (uint8_t) (key_version_id >> 24);
	buf[4] = (uint8_t) (key_version_id >> 16);
	buf[5] = (uint8_t) (key_version_id >> 8);
	buf[6] = (uint8_t) key_version_id;
	memcpy(buf + 7, nonce, PGCK_NONCE_LEN);
	pos = PGCK_FIXED_HEADER_LEN;
	if (blind_tag_len > 0)
	{
		buf[pos] = (uint8_t) blind_tag_len;
		memcpy(buf + pos + 1, blind_tag, blind_tag_len);
		pos += 1 + blind_tag_len;
	}
	return pos;
}

size_t
pgck_envelope_text_len(size_t len)
{
	return PGCK_TEXT_PREFIX_LEN + PGCK_BASE64_ENC_LEN(len);
}

void
pgck_envelope_to_text(const uint8_t *buf, size_t len, char *dst)
{
	size_t		n;

	memcpy(dst, PGCK_TEXT_PREFIX, PGCK_TEXT_PREFIX_LEN);
	n = pgck_base64_encode(buf, len, dst + PGCK_TEXT_PREFIX_LEN);
	dst[PGCK_TEXT_PREFIX_LEN + n] = '\0';
}

bool
pgck_envelope_from_text(const char *src, size_t srclen, uint8_t *dst, size_t *dstlen)
{
	if (srclen < PGCK_TEXT_PREFIX_LEN ||
		memcmp(src, PGCK_TEXT_PREFIX, PGCK_TEXT_PREFIX_LEN) != 0)
		return false;
	return pgck_base64_decode(src + PGCK_TEXT_PREFIX_LEN, srclen - PGCK_TEXT_PREFIX_LEN,
							  dst, dstlen);
}
