/*-------------------------------------------------------------------------
 *
 * fuzz_kmip_ttlv.c
 *		libFuzzer target for the KMIP TTLV decoder and response parser
 *		(src/kmip_ttlv.c).
 *
 * The input is fed as a whole response message.  Properties:
 *	- no read or write out of bounds, no leak (ASan, LSan);
 *	- a validated message is walked completely (every structure's children
 *	  through pgck_ttlv_next) and every child lies inside its parent;
 *	- a parsed response's result message is printable ASCII;
 *	- whatever validates re-encodes to the same bytes (the encoder and the
 *	  decoder agree on lengths and padding).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmip_ttlv.h"

#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz_kmip_ttlv: check failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-encode a validated item into b. */
static void
reencode(PgckTtlvBuf *b, const PgckTtlvItem *it, int depth)
{
	PgckTtlvItem c;
	size_t		pos = 0;

	FUZZ_CHECK(depth <= PGCK_TTLV_MAX_DEPTH);
	switch (it->type)
	{
		case PGCK_TTLV_STRUCTURE:
			pgck_ttlv_begin(b, it->tag);
			while (pgck_ttlv_next(it, &pos, &c))
			{
				FUZZ_CHECK(c.value >= it->value && c.value + c.len <= it->value + it->len);
				reencode(b, &c, depth + 1);
			}
			FUZZ_CHECK(pos == it->len);
			pgck_ttlv_end(b);
			break;
		case PGCK_TTLV_INTEGER:
			pgck_ttlv_int(b, it->tag, pgck_ttlv_get_int(it));
			break;
		case PGCK_TTLV_ENUM:
			pgck_ttlv_enum(b, it->tag, (uint32_t) pgck_ttlv_get_int(it));
			break;
		case PGCK_TTLV_INTERVAL:
			pgck_ttlv_interval(b, it->tag, (uint32_t) pgck_ttlv_get_int(it));
			break;
		case PGCK_TTLV_LONG:
			pgck_ttlv_long(b, it->tag, pgck_ttlv_get_long(it));
			break;
		case PGCK_TTLV_DATETIME:
			pgck_ttlv_datetime(b, it->tag, pgck_ttlv_get_long(it));
			break;
		case PGCK_TTLV_BOOLEAN:
			pgck_ttlv_bool(b, it->tag, it->value[7] != 0);
			break;
		case PGCK_TTLV_BIGINT:
			pgck_ttlv_bigint(b, it->tag, it->value, it->len);
			break;
		case PGCK_TTLV_TEXT:
			pgck_ttlv_text(b, it->tag, (const char *) it->value, it->len);
			break;
		case PGCK_TTLV_BYTES:
			pgck_ttlv_bytes(b, it->tag, it->value, it->len);
			break;
		default:
			FUZZ_CHECK(0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PgckTtlvItem it;
	PgckKmipResponse r;
	const char *err = NULL;

	if (pgck_ttlv_validate(data, size, &it, &err))
	{
		PgckTtlvBuf b;

		pgck_ttlv_buf_init(&b);
		reencode(&b, &it, 0);
		FUZZ_CHECK(pgck_ttlv_buf_ok(&b));
		FUZZ_CHECK(b.len == size && memcmp(b.data, data, size) == 0);
		pgck_ttlv_buf_free(&b);
	}
	else
		FUZZ_CHECK(err != NULL);

	if (pgck_kmip_parse_response(data, size, &r, &err))
	{
		size_t		i;

		for (i = 0; r.message[i] != '\0'; i++)
			FUZZ_CHECK(r.message[i] >= 0x20 && r.message[i] < 0x7f);
		FUZZ_CHECK(!r.has_payload || r.payload.type == PGCK_TTLV_STRUCTURE);
	}
	else
		FUZZ_CHECK(err != NULL);
	if (size >= PGCK_TTLV_HDR_LEN)
	{
		size_t		n = pgck_ttlv_message_len(data, size);

		FUZZ_CHECK(n == 0 || (n >= PGCK_TTLV_HDR_LEN && n <= size));
	}
	return 0;
}
