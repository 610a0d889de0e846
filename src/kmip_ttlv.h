/*-------------------------------------------------------------------------
 *
 * kmip_ttlv.h
 *		KMIP 1.x TTLV (Tag, Type, Length, Value) encoding and strict decoding,
 *		and the request/response message frame of the KMIP subset the kmip:
 *		provider speaks (Encrypt, Decrypt, Get Attributes, Locate).
 *
 * Pure C (no PostgreSQL headers), unit-tested on the KMIP specification's
 * own byte strings (test/unit/test_kmip_ttlv.c) and fuzzed
 * (test/fuzz/fuzz_kmip_ttlv.c).
 *
 * Encoding (KMIP 1.4 specification, section 9.1): every item is a 3-byte
 * tag, a 1-byte type, a 4-byte big-endian length and a value padded with
 * zero bytes to a multiple of 8.  Integer, Enumeration and Interval have
 * length 4, Long Integer and Date-Time 8, Boolean 8 (value 0 or 1), Big
 * Integer a multiple of 8; Text String (UTF-8) and Byte String any length;
 * a Structure's length is the sum of its items' padded sizes.
 *
 * Decoding rules (what pgck_ttlv_validate enforces on untrusted input):
 *	- the buffer is exactly one item whose length fits it, with nothing
 *	  after it;
 *	- tags are in the KMIP tag space 0x42xxxx or the extension space
 *	  0x54xxxx; an unknown tag of a known type is accepted and skipped by
 *	  every lookup (servers add vendor attributes), an unknown type is
 *	  refused;
 *	- fixed lengths are checked per type, padding bytes must be zero, a
 *	  Boolean is 0 or 1, a structure's items fill it exactly;
 *	- structures nest at most PGCK_TTLV_MAX_DEPTH deep.
 * Accessors are bounds-checked against the item they read and never read
 * outside the validated buffer.
 *
 * Memory: an encoder buffer is malloc'd; growing it copies and wipes the
 * old buffer (requests carry plaintext data keys), and pgck_ttlv_buf_free
 * wipes before freeing.  Decoding allocates nothing: items point into the
 * caller's buffer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KMIP_TTLV_H
#define PGCK_KMIP_TTLV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGCK_TTLV_HDR_LEN		8
#define PGCK_TTLV_MAX_DEPTH		16
/* Largest message either side sends or accepts: far above any response here. */
#define PGCK_TTLV_MAX_MESSAGE	(1024 * 1024)

/* Item types (KMIP 1.4, 9.1.1.2) */
#define PGCK_TTLV_STRUCTURE		0x01
#define PGCK_TTLV_INTEGER		0x02
#define PGCK_TTLV_LONG			0x03
#define PGCK_TTLV_BIGINT		0x04
#define PGCK_TTLV_ENUM			0x05
#define PGCK_TTLV_BOOLEAN		0x06
#define PGCK_TTLV_TEXT			0x07
#define PGCK_TTLV_BYTES			0x08
#define PGCK_TTLV_DATETIME		0x09
#define PGCK_TTLV_INTERVAL		0x0A

/* Tags (KMIP 1.4, 9.1.3.1) */
#define PGCK_KMIP_TAG_ATTRIBUTE			0x420008
#define PGCK_KMIP_TAG_ATTRIBUTE_INDEX	0x420009
#define PGCK_KMIP_TAG_ATTRIBUTE_NAME	0x42000A
#define PGCK_KMIP_TAG_ATTRIBUTE_VALUE	0x42000B
#define PGCK_KMIP_TAG_BATCH_COUNT		0x42000D
#define PGCK_KMIP_TAG_BATCH_ITEM		0x42000F
#define PGCK_KMIP_TAG_BLOCK_CIPHER_MODE	0x420011
#define PGCK_KMIP_TAG_CRYPTO_ALGORITHM	0x420028
#define PGCK_KMIP_TAG_CRYPTO_LENGTH		0x42002A
#define PGCK_KMIP_TAG_CRYPTO_PARAMS		0x42002B
#define PGCK_KMIP_TAG_CRYPTO_USAGE_MASK	0x42002C
#define PGCK_KMIP_TAG_IV_COUNTER_NONCE	0x42003D
#define PGCK_KMIP_TAG_MAX_ITEMS			0x42004F
#define PGCK_KMIP_TAG_MAX_RESPONSE_SIZE	0x420050
#define PGCK_KMIP_TAG_NAME				0x420053
#define PGCK_KMIP_TAG_NAME_TYPE			0x420054
#define PGCK_KMIP_TAG_NAME_VALUE		0x420055
#define PGCK_KMIP_TAG_OBJECT_TYPE		0x420057
#define PGCK_KMIP_TAG_OPERATION			0x42005C
#define PGCK_KMIP_TAG_PADDING_METHOD	0x42005F
#define PGCK_KMIP_TAG_PROTOCOL_VERSION	0x420069
#define PGCK_KMIP_TAG_PROTOCOL_MAJOR	0x42006A
#define PGCK_KMIP_TAG_PROTOCOL_MINOR	0x42006B
#define PGCK_KMIP_TAG_REQUEST_HEADER	0x420077
#define PGCK_KMIP_TAG_REQUEST_MESSAGE	0x420078
#define PGCK_KMIP_TAG_REQUEST_PAYLOAD	0x420079
#define PGCK_KMIP_TAG_RESPONSE_HEADER	0x42007A
#define PGCK_KMIP_TAG_RESPONSE_MESSAGE	0x42007B
#define PGCK_KMIP_TAG_RESPONSE_PAYLOAD	0x42007C
#define PGCK_KMIP_TAG_RESULT_MESSAGE	0x42007D
#define PGCK_KMIP_TAG_RESULT_REASON		0x42007E
#define PGCK_KMIP_TAG_RESULT_STATUS		0x42007F
#define PGCK_KMIP_TAG_STATE				0x42008D
#define PGCK_KMIP_TAG_TIME_STAMP		0x420092
#define PGCK_KMIP_TAG_UNIQUE_IDENTIFIER	0x420094
#define PGCK_KMIP_TAG_TAG_LENGTH		0x4200A7
#define PGCK_KMIP_TAG_DATA				0x4200C2
#define PGCK_KMIP_TAG_RANDOM_IV			0x4200C5

/* Operation (9.1.3.2.27) */
#define PGCK_KMIP_OP_CREATE				0x01
#define PGCK_KMIP_OP_LOCATE				0x08
#define PGCK_KMIP_OP_GET				0x0A
#define PGCK_KMIP_OP_GET_ATTRIBUTES		0x0B
#define PGCK_KMIP_OP_ENCRYPT			0x1F
#define PGCK_KMIP_OP_DECRYPT			0x20

/* Result Status (9.1.3.2.28) and Result Reason (9.1.3.2.29) */
#define PGCK_KMIP_STATUS_SUCCESS		0
#define PGCK_KMIP_STATUS_FAILED			1
#define PGCK_KMIP_REASON_ITEM_NOT_FOUND	0x01
#define PGCK_KMIP_REASON_AUTH_FAILED	0x03
#define PGCK_KMIP_REASON_INVALID_FIELD	0x07
#define PGCK_KMIP_REASON_CRYPTO_FAILURE	0x0A
#define PGCK_KMIP_REASON_PERMISSION_DENIED 0x0C
#define PGCK_KMIP_REASON_GENERAL_FAILURE 0x100

/* Enumerations used in requests and attributes */
#define PGCK_KMIP_ALG_AES				0x03
#define PGCK_KMIP_MODE_CBC				0x01
#define PGCK_KMIP_MODE_GCM				0x09
#define PGCK_KMIP_PAD_PKCS5				0x03
#define PGCK_KMIP_OBJ_SYMMETRIC_KEY		0x02
#define PGCK_KMIP_STATE_ACTIVE			0x02
#define PGCK_KMIP_NAME_TEXT				0x01
#define PGCK_KMIP_USAGE_ENCRYPT			0x04
#define PGCK_KMIP_USAGE_DECRYPT			0x08

/* ------------------------------------------------------------ encoding */

typedef struct PgckTtlvBuf
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
	size_t		open[PGCK_TTLV_MAX_DEPTH];	/* offsets of open structures */
	int			depth;
	bool		failed;			/* out of memory, depth, or a length too big */
} PgckTtlvBuf;

extern void pgck_ttlv_buf_init(PgckTtlvBuf *b);
/* Wipes and frees; the struct can be initialized again. */
extern void pgck_ttlv_buf_free(PgckTtlvBuf *b);

extern void pgck_ttlv_begin(PgckTtlvBuf *b, uint32_t tag);	/* a Structure */
extern void pgck_ttlv_end(PgckTtlvBuf *b);
extern void pgck_ttlv_int(PgckTtlvBuf *b, uint32_t tag, int32_t v);
extern void pgck_ttlv_long(PgckTtlvBuf *b, uint32_t tag, int64_t v);
extern void pgck_ttlv_enum(PgckTtlvBuf *b, uint32_t tag, uint32_t v);
extern void pgck_ttlv_bool(PgckTtlvBuf *b, uint32_t tag, bool v);
extern void pgck_ttlv_text(PgckTtlvBuf *b, uint32_t tag, const char *s, size_t len);
extern void pgck_ttlv_bytes(PgckTtlvBuf *b, uint32_t tag, const uint8_t *p, size_t len);
extern void pgck_ttlv_datetime(PgckTtlvBuf *b, uint32_t tag, int64_t v);
extern void pgck_ttlv_interval(PgckTtlvBuf *b, uint32_t tag, uint32_t v);
/* Big-endian two's complement, len a multiple of 8 (else the buffer fails). */
extern void pgck_ttlv_bigint(PgckTtlvBuf *b, uint32_t tag, const uint8_t *p, size_t len);

/* True when every item was written and every structure closed. */
extern bool pgck_ttlv_buf_ok(const PgckTtlvBuf *b);

/*
 * A request message with one batch item: header (protocol version
 * major.minor, batch count 1), Batch Item with Operation, and an open
 * Request Payload that the caller fills, then closes with
 * pgck_kmip_request_end.
 */
extern void pgck_kmip_request_begin(PgckTtlvBuf *b, int major, int minor, uint32_t operation);
extern void pgck_kmip_request_end(PgckTtlvBuf *b);

/* ------------------------------------------------------------ decoding */

typedef struct PgckTtlvItem
{
	uint32_t	tag;
	uint8_t		type;
	uint32_t	len;			/* value length, without padding */
	const uint8_t *value;		/* len bytes */
} PgckTtlvItem;

/*
 * Check that buf[0..len) is one well-formed item (the rules above) and
 * return it in *out.  On failure, *err names the problem (a static string,
 * never input bytes).
 */
extern bool pgck_ttlv_validate(const uint8_t *buf, size_t len, PgckTtlvItem *out,
							   const char **err);

/*
 * Length of the whole message whose first 8 bytes are hdr: 8 + the
 * header's length, or 0 when the header is not a Structure or the message
 * would exceed max_len.
 */
extern size_t pgck_ttlv_message_len(const uint8_t hdr[PGCK_TTLV_HDR_LEN], size_t max_len);

/*
 * Children of a validated structure: *pos starts at 0; each call yields the
 * next child in *child and returns true, false at the end.
 */
extern bool pgck_ttlv_next(const PgckTtlvItem *st, size_t *pos, PgckTtlvItem *child);

/*
 * First child of st with this tag.  Returns 1 found with the right type,
 * 0 absent, -1 present with another type.
 */
extern int	pgck_ttlv_find(const PgckTtlvItem *st, uint32_t tag, uint8_t type,
						   PgckTtlvItem *child);

/* Value readers of a validated item of the matching type. */
extern int32_t pgck_ttlv_get_int(const PgckTtlvItem *it);	/* also Enumeration, Interval */
extern int64_t pgck_ttlv_get_long(const PgckTtlvItem *it);	/* also Date-Time */

/* ------------------------------------------------------------ responses */

typedef struct PgckKmipResponse
{
	int			major;
	int			minor;
	uint32_t	operation;		/* 0 when the batch item has none (errors) */
	uint32_t	status;
	uint32_t	reason;			/* 0 when absent */
	char		message[256];	/* Result Message, printable ASCII, cut */
	bool		has_payload;
	PgckTtlvItem payload;		/* Response Payload */
} PgckKmipResponse;

/*
 * Parse a response message with exactly one batch item.  false with *err
 * on anything malformed (an operation failure is a parsed response with
 * status != success).
 */
extern bool pgck_kmip_parse_response(const uint8_t *buf, size_t len, PgckKmipResponse *out,
									 const char **err);

#endif							/* PGCK_KMIP_TTLV_H */
