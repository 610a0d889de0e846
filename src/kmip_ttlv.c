/*-------------------------------------------------------------------------
 *
 * kmip_ttlv.c
 *		KMIP TTLV encoder, strict decoder and response parser.  See
 *		kmip_ttlv.h for the rules.
 *
 *-------------------------------------------------------------------------
 */
#include "kmip_ttlv.h"

#include <stdlib.h>
#include <string.h>

#include "aead.h"				/* pgck_wipe */

/* ------------------------------------------------------------ encoding */

static size_t
padded(size_t len)
{
	return (len + 7) & ~(size_t) 7;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

void
pgck_ttlv_buf_init(PgckTtlvBuf *b)
{
	memset(b, 0, sizeof(*b));
}

void
pgck_ttlv_buf_free(PgckTtlvBuf *b)
{
	if (b->data != NULL)
	{
		pgck_wipe(b->data, b->cap);
		free(b->data);
	}
	memset(b, 0, sizeof(*b));
}

/* Room for n more bytes; a grown buffer is a copy and the old one is wiped. */
static uint8_t *
reserve(PgckTtlvBuf *b, size_t n)
{
	if (b->failed)
		return NULL;
	if (n > PGCK_TTLV_MAX_MESSAGE || b->len + n > PGCK_TTLV_MAX_MESSAGE)
	{
		b->failed = true;
		return NULL;
	}
	if (b->len + n > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;
		uint8_t    *nd;

		while (cap < b->len + n)
			cap *= 2;
		nd = malloc(cap);
		if (nd == NULL)
		{
			b->failed = true;
			return NULL;
		}
		if (b->data != NULL)
		{
			memcpy(nd, b->data, b->len);
			pgck_wipe(b->data, b->cap);
			free(b->data);
		}
		b->data = nd;
		b->cap = cap;
	}
	return b->data + b->len;
}

/* One primitive item: header, value, zero padding. */
static void
put_item(PgckTtlvBuf *b, uint32_t tag, uint8_t type, const uint8_t *value, size_t len)
{
	size_t		total = PGCK_TTLV_HDR_LEN + padded(len);
	uint8_t    *p;

	if (len > PGCK_TTLV_MAX_MESSAGE)
	{
		b->failed = true;
		return;
	}
	p = reserve(b, total);
	if (p == NULL)
		return;
	put_be32(p, (tag << 8) | type);
	put_be32(p + 4, (uint32_t) len);
	if (len > 0)
		memcpy(p + PGCK_TTLV_HDR_LEN, value, len);
	memset(p + PGCK_TTLV_HDR_LEN + len, 0, padded(len) - len);
	b->len += total;
}

void
pgck_ttlv_begin(PgckTtlvBuf *b, uint32_t tag)
{
	uint8_t    *p;

	if (b->depth >= PGCK_TTLV_MAX_DEPTH)
	{
		b->failed = true;
		return;
	}
	p = reserve(b, PGCK_TTLV_HDR_LEN);
	if (p == NULL)
		return;
	put_be32(p, (tag << 8) | PGCK_TTLV_STRUCTURE);
	put_be32(p + 4, 0);			/* set by pgck_ttlv_end */
	b->open[b->depth++] = b->len;
	b->len += PGCK_TTLV_HDR_LEN;
}

void
pgck_ttlv_end(PgckTtlvBuf *b)
{
	size_t		start;

	if (b->depth == 0)
	{
		b->failed = true;
		return;
	}
	start = b->open[--b->depth];
	if (b->failed)
		return;
	put_be32(b->data + start + 4, (uint32_t) (b->len - start - PGCK_TTLV_HDR_LEN));
}

void
pgck_ttlv_int(PgckTtlvBuf *b, uint32_t tag, int32_t v)
{
	uint8_t		buf[4];

	put_be32(buf, (uint32_t) v);
	put_item(b, tag, PGCK_TTLV_INTEGER, buf, 4);
}

static void
put_64(PgckTtlvBuf *b, uint32_t tag, uint8_t type, uint64_t v)
{
	uint8_t		buf[8];

	put_be32(buf, (uint32_t) (v >> 32));
	put_be32(buf + 4, (uint32_t) v);
	put_item(b, tag, type, buf, 8);
}

void
pgck_ttlv_long(PgckTtlvBuf *b, uint32_t tag, int64_t v)
{
	put_64(b, tag, PGCK_TTLV_LONG, (uint64_t) v);
}

void
pgck_ttlv_enum(PgckTtlvBuf *b, uint32_t tag, uint32_t v)
{
	uint8_t		buf[4];

	put_be32(buf, v);
	put_item(b, tag, PGCK_TTLV_ENUM, buf, 4);
}

void
pgck_ttlv_bool(PgckTtlvBuf *b, uint32_t tag, bool v)
{
	put_64(b, tag, PGCK_TTLV_BOOLEAN, v ? 1 : 0);
}

void
pgck_ttlv_text(PgckTtlvBuf *b, uint32_t tag, const char *s, size_t len)
{
	put_item(b, tag, PGCK_TTLV_TEXT, (const uint8_t *) s, len);
}

void
pgck_ttlv_bytes(PgckTtlvBuf *b, uint32_t tag, const uint8_t *p, size_t len)
{
	put_item(b, tag, PGCK_TTLV_BYTES, p, len);
}

void
pgck_ttlv_datetime(PgckTtlvBuf *b, uint32_t tag, int64_t v)
{
	put_64(b, tag, PGCK_TTLV_DATETIME, (uint64_t) v);
}

void
pgck_ttlv_interval(PgckTtlvBuf *b, uint32_t tag, uint32_t v)
{
	uint8_t		buf[4];

	put_be32(buf, v);
	put_item(b, tag, PGCK_TTLV_INTERVAL, buf, 4);
}

void
pgck_ttlv_bigint(PgckTtlvBuf *b, uint32_t tag, const uint8_t *p, size_t len)
{
	if (len == 0 || len % 8 != 0)
	{
		b->failed = true;
		return;
	}
	put_item(b, tag, PGCK_TTLV_BIGINT, p, len);
}

bool
pgck_ttlv_buf_ok(const PgckTtlvBuf *b)
{
	return !b->failed && b->depth == 0 && b->len > 0;
}

void
pgck_kmip_request_begin(PgckTtlvBuf *b, int major, int minor, uint32_t operation)
{
	pgck_ttlv_begin(b, PGCK_KMIP_TAG_REQUEST_MESSAGE);
	pgck_ttlv_begin(b, PGCK_KMIP_TAG_REQUEST_HEADER);
	pgck_ttlv_begin(b, PGCK_KMIP_TAG_PROTOCOL_VERSION);
	pgck_ttlv_int(b, PGCK_KMIP_TAG_PROTOCOL_MAJOR, major);
	pgck_ttlv_int(b, PGCK_KMIP_TAG_PROTOCOL_MINOR, minor);
	pgck_ttlv_end(b);
	pgck_ttlv_int(b, PGCK_KMIP_TAG_BATCH_COUNT, 1);
	pgck_ttlv_end(b);
	pgck_ttlv_begin(b, PGCK_KMIP_TAG_BATCH_ITEM);
	pgck_ttlv_enum(b, PGCK_KMIP_TAG_OPERATION, operation);
	pgck_ttlv_begin(b, PGCK_KMIP_TAG_REQUEST_PAYLOAD);
}

void
pgck_kmip_request_end(PgckTtlvBuf *b)
{
	pgck_ttlv_end(b);			/* Request Payload */
	pgck_ttlv_end(b);			/* Batch Item */
	pgck_ttlv_end(b);			/* Request Message */
}

/* ------------------------------------------------------------ decoding */

static bool
zero_bytes(const uint8_t *p, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/*
 * Read one item at buf[*off], within end; validate it (recursively for a
 * structure) and advance *off past its padding.
 */
static bool
read_item(const uint8_t *buf, size_t end, size_t *off, int depth, PgckTtlvItem *out,
		  const char **err)
{
	uint32_t	word;
	uint32_t	len;
	uint8_t		type;
	size_t		start = *off;
	size_t		plen;

	if (end - start < PGCK_TTLV_HDR_LEN)
	{
		*err = "truncated item header";
		return false;
	}
	word = get_be32(buf + start);
	type = (uint8_t) word;
	len = get_be32(buf + start + 4);
	out->tag = word >> 8;
	out->type = type;
	out->len = len;
	out->value = buf + start + PGCK_TTLV_HDR_LEN;
	if ((out->tag >> 16) != 0x42 && (out->tag >> 16) != 0x54)
	{
		*err = "tag outside the KMIP tag space";
		return false;
	}
	if (len > end - start - PGCK_TTLV_HDR_LEN)
	{
		*err = "item length beyond its enclosing structure";
		return false;
	}
	plen = padded(len);
	if (plen > end - start - PGCK_TTLV_HDR_LEN)
	{
		*err = "item padding beyond its enclosing structure";
		return false;
	}

	switch (type)
	{
		case PGCK_TTLV_STRUCTURE:
			{
				size_t		pos = start + PGCK_TTLV_HDR_LEN;
				size_t		send = pos + len;
				PgckTtlvItem child;

				if (depth + 1 > PGCK_TTLV_MAX_DEPTH)
				{
					*err = "structures nested too deep";
					return false;
				}
				if (len % 8 != 0)
				{
					*err = "structure length not a multiple of 8";
					return false;
				}
				while (pos < send)
				{
					if (!read_item(buf, send, &pos, depth + 1, &child, err))
						return false;
				}
				break;
			}
		case PGCK_TTLV_INTEGER:
		case PGCK_TTLV_ENUM:
		case PGCK_TTLV_INTERVAL:
			if (len != 4)
			{
				*err = "4-byte item of another length";
				return false;
			}
			break;
		case PGCK_TTLV_LONG:
		case PGCK_TTLV_DATETIME:
			if (len != 8)
			{
				*err = "8-byte item of another length";
				return false;
			}
			break;
		case PGCK_TTLV_BOOLEAN:
			if (len != 8)
			{
				*err = "boolean of a length other than 8";
				return false;
			}
			if (!zero_bytes(out->value, 7) || out->value[7] > 1)
			{
				*err = "boolean neither 0 nor 1";
				return false;
			}
			break;
		case PGCK_TTLV_BIGINT:
			if (len == 0 || len % 8 != 0)
			{
				*err = "big integer length not a positive multiple of 8";
				return false;
			}
			break;
		case PGCK_TTLV_TEXT:
		case PGCK_TTLV_BYTES:
			break;
		default:
			*err = "unknown item type";
			return false;
	}
	if (!zero_bytes(out->value + len, plen - len))
	{
		*err = "non-zero padding";
		return false;
	}
	*off = start + PGCK_TTLV_HDR_LEN + plen;
	return true;
}

bool
pgck_ttlv_validate(const uint8_t *buf, size_t len, PgckTtlvItem *out, const char **err)
{
	size_t		off = 0;

	*err = NULL;
	if (buf == NULL || len > PGCK_TTLV_MAX_MESSAGE)
	{
		*err = "message too large";
		return false;
	}
	if (!read_item(buf, len, &off, 0, out, err))
		return false;
	if (off != len)
	{
		*err = "bytes after the message";
		return false;
	}
	return true;
}

size_t
pgck_ttlv_message_len(const uint8_t hdr[PGCK_TTLV_HDR_LEN], size_t max_len)
{
	uint32_t	len = get_be32(hdr + 4);

	if (hdr[3] != PGCK_TTLV_STRUCTURE || len % 8 != 0 || max_len < PGCK_TTLV_HDR_LEN ||
		(size_t) len > max_len - PGCK_TTLV_HDR_LEN)
		return 0;
	return PGCK_TTLV_HDR_LEN + (size_t) len;
}

bool
pgck_ttlv_next(const PgckTtlvItem *st, size_t *pos, PgckTtlvItem *child)
{
	const char *err;
	size_t		off = *pos;

	if (st->type != PGCK_TTLV_STRUCTURE || off >= st->len)
		return false;
	/* already validated: re-reading cannot fail, but stays bounds-checked */
	if (!read_item(st->value, st->len, &off, 1, child, &err))
		return false;
	*pos = off;
	return true;
}

int
pgck_ttlv_find(const PgckTtlvItem *st, uint32_t tag, uint8_t type, PgckTtlvItem *child)
{
	size_t		pos = 0;

	while (pgck_ttlv_next(st, &pos, child))
	{
		if (child->tag == tag)
			return child->type == type ? 1 : -1;
	}
	return 0;
}

int32_t
pgck_ttlv_get_int(const PgckTtlvItem *it)
{
	return it->len == 4 ? (int32_t) get_be32(it->value) : 0;
}

int64_t
pgck_ttlv_get_long(const PgckTtlvItem *it)
{
	if (it->len != 8)
		return 0;
	return (int64_t) (((uint64_t) get_be32(it->value) << 32) | get_be32(it->value + 4));
}

/* ------------------------------------------------------------ responses */

bool
pgck_kmip_parse_response(const uint8_t *buf, size_t len, PgckKmipResponse *out,
						 const char **err)
{
	PgckTtlvItem msg,
				hdr,
				ver,
				it,
				batch;
	size_t		pos = 0;
	int			nbatch = 0;

	memset(out, 0, sizeof(*out));
	if (!pgck_ttlv_validate(buf, len, &msg, err))
		return false;
	if (msg.tag != PGCK_KMIP_TAG_RESPONSE_MESSAGE || msg.type != PGCK_TTLV_STRUCTURE)
	{
		*err = "not a response message";
		return false;
	}
	if (pgck_ttlv_find(&msg, PGCK_KMIP_TAG_RESPONSE_HEADER, PGCK_TTLV_STRUCTURE, &hdr) != 1 ||
		pgck_ttlv_find(&hdr, PGCK_KMIP_TAG_PROTOCOL_VERSION, PGCK_TTLV_STRUCTURE, &ver) != 1)
	{
		*err = "response without a header or protocol version";
		return false;
	}
	if (pgck_ttlv_find(&ver, PGCK_KMIP_TAG_PROTOCOL_MAJOR, PGCK_TTLV_INTEGER, &it) != 1)
	{
		*err = "response without a protocol version";
		return false;
	}
	out->major = pgck_ttlv_get_int(&it);
	if (pgck_ttlv_find(&ver, PGCK_KMIP_TAG_PROTOCOL_MINOR, PGCK_TTLV_INTEGER, &it) != 1)
	{
		*err = "response without a protocol version";
		return false;
	}
	out->minor = pgck_ttlv_get_int(&it);
	if (pgck_ttlv_find(&hdr, PGCK_KMIP_TAG_BATCH_COUNT, PGCK_TTLV_INTEGER, &it) != 1 ||
		pgck_ttlv_get_int(&it) != 1)
	{
		*err = "response batch count is not 1";
		return false;
	}
	while (pgck_ttlv_next(&msg, &pos, &it))
	{
		if (it.tag == PGCK_KMIP_TAG_BATCH_ITEM)
		{
			if (it.type != PGCK_TTLV_STRUCTURE)
			{
				*err = "batch item is not a structure";
				return false;
			}
			batch = it;
			nbatch++;
		}
	}
	if (nbatch != 1)
	{
		*err = "response does not hold exactly one batch item";
		return false;
	}
	switch (pgck_ttlv_find(&batch, PGCK_KMIP_TAG_OPERATION, PGCK_TTLV_ENUM, &it))
	{
		case 1:
			out->operation = (uint32_t) pgck_ttlv_get_int(&it);
			break;
		case -1:
			*err = "operation is not an enumeration";
			return false;
	}
	if (pgck_ttlv_find(&batch, PGCK_KMIP_TAG_RESULT_STATUS, PGCK_TTLV_ENUM, &it) != 1)
	{
		*err = "batch item without a result status";
		return false;
	}
	out->status = (uint32_t) pgck_ttlv_get_int(&it);
	switch (pgck_ttlv_find(&batch, PGCK_KMIP_TAG_RESULT_REASON, PGCK_TTLV_ENUM, &it))
	{
		case 1:
			out->reason = (uint32_t) pgck_ttlv_get_int(&it);
			break;
		case -1:
			*err = "result reason is not an enumeration";
			return false;
	}
	switch (pgck_ttlv_find(&batch, PGCK_KMIP_TAG_RESULT_MESSAGE, PGCK_TTLV_TEXT, &it))
	{
		case 1:
			{
				size_t		n = it.len < sizeof(out->message) - 1 ? it.len : sizeof(out->message) - 1;
				size_t		i;

				for (i = 0; i < n; i++)
				{
					uint8_t		c = it.value[i];

					out->message[i] = (c >= 0x20 && c < 0x7f) ? (char) c : '?';
				}
				out->message[n] = '\0';
				break;
			}
		case -1:
			*err = "result message is not a text string";
			return false;
	}
	switch (pgck_ttlv_find(&batch, PGCK_KMIP_TAG_RESPONSE_PAYLOAD, PGCK_TTLV_STRUCTURE,
						   &out->payload))
	{
		case 1:
			out->has_payload = true;
			break;
		case -1:
			*err = "response payload is not a structure";
			return false;
	}
	if (out->status == PGCK_KMIP_STATUS_SUCCESS && !out->has_payload)
	{
		*err = "successful batch item without a payload";
		return false;
	}
	return true;
}
