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
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "envelope.h"

/* bytewise, shorter first on a common prefix */
static int
name_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int			c = memcmp(a, b, alen < blen ? alen : blen);

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

/*
 * The extension fields at buf[*pos..): a 2-byte length, then fields, with room
 * left for the GCM tag.  Advances *pos past them.
 */
static PgckEnvelopeStatus
parse_ext(const uint8_t *buf, size_t len, size_t *pos, PgckEnvelope *out)
{
	size_t		ext_len;
	size_t		p;
	size_t		end;
	int			last_type = 0;
	const uint8_t *prev_name = NULL;
	size_t		prev_name_len = 0;

	if (len - *pos < 2 + PGCK_GCM_TAG_LEN)
		return PGCK_ENV_TOO_SHORT;
	ext_len = ((size_t) buf[*pos] << 8) | buf[*pos + 1];
	if (ext_len < 3 || ext_len > PGCK_EXT_MAX_LEN)
		return PGCK_ENV_BAD_EXTENSION;
	if (len - *pos - 2 < ext_len + PGCK_GCM_TAG_LEN)
		return PGCK_ENV_TOO_SHORT;
	p = *pos + 2;
	end = p + ext_len;
	while (p < end)
	{
		int			type;
		size_t		flen;
		const uint8_t *data;

		if (end - p < 2)
			return PGCK_ENV_BAD_EXTENSION;
		type = buf[p];
		flen = buf[p + 1];
		data = buf + p + 2;
		if (flen < 1 || end - p - 2 < flen)
			return PGCK_ENV_BAD_EXTENSION;
		/* known types, in order; only named tags repeat */
		if (type < PGCK_EXT_PLAIN_TYPE || type > PGCK_EXT_NAMED_TAG ||
			type < last_type || (type == last_type && type != PGCK_EXT_NAMED_TAG))
			return PGCK_ENV_BAD_EXTENSION;
		switch (type)
		{
			case PGCK_EXT_PLAIN_TYPE:
				if (flen != 1 || data[0] < 1 || data[0] > PGCK_PT_MAX)
					return PGCK_ENV_BAD_EXTENSION;
				out->plain_type = data[0];
				break;
			case PGCK_EXT_ORE_TERM:
				out->ore_term = data;
				out->ore_term_len = flen;
				break;
			case PGCK_EXT_NAMED_TAG:
				{
					size_t		nlen = data[0];

					if (nlen < 1 || nlen > PGCK_INDEX_NAME_MAX || flen < 1 + nlen + 1 ||
						flen - 1 - nlen > PGCK_BLIND_TAG_MAX)
						return PGCK_ENV_BAD_EXTENSION;
					if (prev_name != NULL &&
						name_cmp(prev_name, prev_name_len, data + 1, nlen) >= 0)
						return PGCK_ENV_BAD_EXTENSION;
					prev_name = data + 1;
					prev_name_len = nlen;
					if (out->named_tags == NULL)
						out->named_tags = buf + p;
				}
				break;
		}
		last_type = type;
		p += 2 + flen;
	}
	out->ext_end = buf + end;
	*pos = end;
	return PGCK_ENV_OK;
}

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

	if (out->flags & PGCK_FLAG_EXT)
	{
		PgckEnvelopeStatus st = parse_ext(buf, len, &pos, out);

		if (st != PGCK_ENV_OK)
			return st;
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
		case PGCK_ENV_BAD_EXTENSION:
			return "The value's extension fields are malformed.";
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
	return pgck_envelope_write_header_ext(buf, flags, key_version_id, nonce,
										  blind_tag, blind_tag_len, NULL, 0);
}

size_t
pgck_envelope_size_ext(size_t plaintext_len, size_t blind_tag_len, size_t ext_size)
{
	return pgck_envelope_size(plaintext_len, blind_tag_len) + ext_size;
}

static int
named_tag_order(const void *a, const void *b)
{
	const PgckNamedTag *x = a;
	const PgckNamedTag *y = b;

	return name_cmp((const uint8_t *) x->name, x->name_len, (const uint8_t *) y->name, y->name_len);
}

size_t
pgck_envelope_write_ext(uint8_t *out, uint8_t plain_type, const uint8_t *ore, size_t ore_len,
						PgckNamedTag *tags, int ntags)
{
	size_t		n = 2;
	int			i;

	if (ntags > 1)
		qsort(tags, (size_t) ntags, sizeof(PgckNamedTag), named_tag_order);
	if (plain_type != PGCK_PT_TEXT)
	{
		if (out)
		{
			out[n] = PGCK_EXT_PLAIN_TYPE;
			out[n + 1] = 1;
			out[n + 2] = plain_type;
		}
		n += 3;
	}
	if (ore_len > 0)
	{
		assert(ore_len <= 255);
		if (out)
		{
			out[n] = PGCK_EXT_ORE_TERM;
			out[n + 1] = (uint8_t) ore_len;
			memcpy(out + n + 2, ore, ore_len);
		}
		n += 2 + ore_len;
	}
	for (i = 0; i < ntags; i++)
	{
		assert(tags[i].name_len >= 1 && tags[i].name_len <= PGCK_INDEX_NAME_MAX);
		assert(tags[i].tag_len >= 1 && tags[i].tag_len <= PGCK_BLIND_TAG_MAX);
		if (out)
		{
			out[n] = PGCK_EXT_NAMED_TAG;
			out[n + 1] = (uint8_t) (1 + tags[i].name_len + tags[i].tag_len);
			out[n + 2] = (uint8_t) tags[i].name_len;
			memcpy(out + n + 3, tags[i].name, tags[i].name_len);
			memcpy(out + n + 3 + tags[i].name_len, tags[i].tag, tags[i].tag_len);
		}
		n += 3 + tags[i].name_len + tags[i].tag_len;
	}
	if (n == 2)
		return 0;
	assert(n - 2 <= PGCK_EXT_MAX_LEN);
	if (out)
	{
		out[0] = (uint8_t) ((n - 2) >> 8);
		out[1] = (uint8_t) (n - 2);
	}
	return n;
}

bool
pgck_envelope_named_tag(const PgckEnvelope *env, const char *name, size_t name_len,
						PgckNamedTag *out)
{
	const uint8_t *p = env->named_tags;

	if (p == NULL)
		return false;
	/* parse checked every field: walk them to the end */
	while (p < env->ext_end)
	{
		size_t		flen = p[1];
		size_t		nlen = p[2];

		if (p[0] == PGCK_EXT_NAMED_TAG && nlen == name_len && memcmp(p + 3, name, nlen) == 0)
		{
			out->name = (const char *) p + 3;
			out->name_len = nlen;
			out->tag = p + 3 + nlen;
			out->tag_len = flen - 1 - nlen;
			return true;
		}
		p += 2 + flen;
	}
	return false;
}

size_t
pgck_envelope_write_header_ext(uint8_t *buf, uint8_t flags, uint32_t key_version_id,
							   const uint8_t *nonce, const uint8_t *blind_tag,
							   size_t blind_tag_len, const uint8_t *ext, size_t ext_size)
{
	size_t		pos;

	assert(blind_tag_len <= PGCK_BLIND_TAG_MAX);
	if (blind_tag_len > 0)
		flags |= PGCK_FLAG_BLIND_TAG;
	else
		flags &= ~PGCK_FLAG_BLIND_TAG;
	if (ext_size > 0)
		flags |= PGCK_FLAG_EXT;
	else
		flags &= ~PGCK_FLAG_EXT;
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
	if (ext_size > 0)
	{
		memcpy(buf + pos, ext, ext_size);
		pos += ext_size;
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
