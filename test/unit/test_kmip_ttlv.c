/*
 * test_kmip_ttlv.c
 *		Unit tests of the KMIP TTLV encoder/decoder (src/kmip_ttlv.c).
 *
 * Vectors:
 *	- the TTLV examples of the KMIP specification (KMIP Specification
 *	  v1.1-v1.4, section 9.1.2 "Examples"): one item of each type, tag
 *	  0x420020, typed in from the specification;
 *	- whole messages of the KMIP Test Cases document v1.1 (kmip-testcases-
 *	  v1.1): section 3.1.1 (Create request of a 128-bit AES key), section
 *	  3.1.3 (Locate request by Object Type and Name "Key1", and its
 *	  response), and an Invalid Message error response in the same format
 *	  (as PyKMIP's test suite carries it).  The encoder must reproduce the
 *	  requests byte for byte, the decoder must read the responses.
 *	- malformed inputs: every rule of kmip_ttlv.h broken once.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmip_ttlv.h"
#include "unit.h"

static const char create_hex[] =
	"42007801000001204200770100000038420069010000002042006A0200000004"
	"000000010000000042006B0200000004000000010000000042000D0200000004"
	"000000010000000042000F01000000D842005C05000000040000000100000000"
	"42007901000000C04200570500000004000000020000000042009101000000A8"
	"420008010000003042000A070000001743727970746F6772617068696320416C"
	"676F726974686D0042000B050000000400000003000000004200080100000030"
	"42000A070000001443727970746F67726170686963204C656E67746800000000"
	"42000B02000000040000008000000000420008010000003042000A0700000018"
	"43727970746F67726170686963205573616765204D61736B42000B0200000004"
	"0000000C00000000"
;
static const char locate_hex[] =
	"42007801000000D04200770100000038420069010000002042006A0200000004"
	"000000010000000042006B0200000004000000010000000042000D0200000004"
	"000000010000000042000F010000008842005C05000000040000000800000000"
	"4200790100000070420008010000002842000A070000000B4F626A6563742054"
	"797065000000000042000B050000000400000002000000004200080100000038"
	"42000A07000000044E616D650000000042000B01000000204200550700000004"
	"4B6579310000000042005405000000040000000100000000"
;
static const char locate_resp_hex[] =
	"42007B01000000B042007A0100000048420069010000002042006A0200000004"
	"000000010000000042006B020000000400000001000000004200920900000008"
	"000000004F9A54E642000D0200000004000000010000000042000F0100000058"
	"42005C0500000004000000080000000042007F05000000040000000000000000"
	"42007C0100000030420094070000002434396131636138382D366265612D3466"
	"62322D623435302D37653538383032633330333800000000"
;
static const char invalid_resp_hex[] =
	"42007B01000000B042007A0100000048420069010000002042006A0200000004"
	"000000010000000042006B020000000400000001000000004200920900000008"
	"0000000056FA43BD42000D0200000004000000010000000042000F0100000058"
	"42007F0500000004000000010000000042007E05000000040000000400000000"
	"42007D070000002A44656661756C7420726573706F6E73652E204E6F206F7065"
	"726174696F6E7320737570706F727465642E000000000000"
;

/* section 9.1.2 of the KMIP specification, one line per example */
static const char spec_integer_hex[] = "42002002000000040000000800000000";	/* Integer 8 */
static const char spec_long_hex[] = "420020030000000801B69B4BA5749200";	/* Long 123456789000000000 */
static const char spec_bigint_hex[] = "42002004000000100000000003FD35EB6BC2DF4618080000";	/* Big Integer 1234567890000000000000000000 */
static const char spec_enum_hex[] = "4200200500000004000000FF00000000";	/* Enumeration 255 */
static const char spec_bool_hex[] = "42002006000000080000000000000001";	/* Boolean True */
static const char spec_text_hex[] = "420020070000000B48656C6C6F20576F726C640000000000";	/* Text String "Hello World" */
static const char spec_bytes_hex[] = "42002008000000030102030000000000";	/* Byte String 01 02 03 */
static const char spec_datetime_hex[] = "42002009000000080000000047DA67F8";	/* Date-Time Fri Mar 14 2008 11:56:40 GMT */
static const char spec_interval_hex[] = "4200200A00000004000D2F0000000000";	/* Interval 10 days */
/* Structure: Enumeration 254 (tag 420004), then Integer 255 (tag 420005) */
static const char spec_struct_hex[] =
	"42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000";

static size_t
unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t		n = strlen(h) / 2,
				i;

	if (n > cap)
		abort();
	for (i = 0; i < n; i++)
	{
		unsigned int v;

		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			abort();
		out[i] = (uint8_t) v;
	}
	return n;
}

static int
same_as(const PgckTtlvBuf *b, const char *hex)
{
	static uint8_t want[4096];
	size_t		n = unhex(hex, want, sizeof(want));

	return pgck_ttlv_buf_ok(b) && b->len == n && memcmp(b->data, want, n) == 0;
}

static void
test_spec_examples(void)
{
	PgckTtlvBuf b;
	uint8_t		buf[256];
	size_t		n;
	PgckTtlvItem it,
				c;
	const char *err;
	static const uint8_t big[16] = {0, 0, 0, 0, 0x03, 0xFD, 0x35, 0xEB, 0x6B, 0xC2, 0xDF, 0x46, 0x18, 0x08, 0, 0};
	static const uint8_t three[3] = {1, 2, 3};

#define ENC(expr, hex, what) \
	do { pgck_ttlv_buf_init(&b); expr; unit_check(same_as(&b, hex), "encode spec 9.1.2 %s", what); pgck_ttlv_buf_free(&b); } while (0)
	ENC(pgck_ttlv_int(&b, 0x420020, 8), spec_integer_hex, "Integer");
	ENC(pgck_ttlv_long(&b, 0x420020, 123456789000000000LL), spec_long_hex, "Long Integer");
	ENC(pgck_ttlv_bigint(&b, 0x420020, big, 16), spec_bigint_hex, "Big Integer");
	ENC(pgck_ttlv_enum(&b, 0x420020, 255), spec_enum_hex, "Enumeration");
	ENC(pgck_ttlv_bool(&b, 0x420020, true), spec_bool_hex, "Boolean");
	ENC(pgck_ttlv_text(&b, 0x420020, "Hello World", 11), spec_text_hex, "Text String");
	ENC(pgck_ttlv_bytes(&b, 0x420020, three, 3), spec_bytes_hex, "Byte String");
	ENC(pgck_ttlv_datetime(&b, 0x420020, 0x47DA67F8), spec_datetime_hex, "Date-Time");
	ENC(pgck_ttlv_interval(&b, 0x420020, 864000), spec_interval_hex, "Interval");
	ENC((pgck_ttlv_begin(&b, 0x420020), pgck_ttlv_enum(&b, 0x420004, 254),
		 pgck_ttlv_int(&b, 0x420005, 255), pgck_ttlv_end(&b)), spec_struct_hex, "Structure");
#undef ENC

	n = unhex(spec_integer_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && it.type == PGCK_TTLV_INTEGER &&
			   it.tag == 0x420020 && pgck_ttlv_get_int(&it) == 8, "decode spec Integer");
	n = unhex(spec_long_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && pgck_ttlv_get_long(&it) == 123456789000000000LL,
			   "decode spec Long Integer");
	n = unhex(spec_bigint_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && it.len == 16 && memcmp(it.value, big, 16) == 0,
			   "decode spec Big Integer");
	n = unhex(spec_enum_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && pgck_ttlv_get_int(&it) == 255, "decode spec Enumeration");
	n = unhex(spec_bool_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && it.value[7] == 1, "decode spec Boolean");
	n = unhex(spec_text_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && it.len == 11 &&
			   memcmp(it.value, "Hello World", 11) == 0, "decode spec Text String");
	n = unhex(spec_bytes_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && it.len == 3 && memcmp(it.value, three, 3) == 0,
			   "decode spec Byte String");
	n = unhex(spec_datetime_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && pgck_ttlv_get_long(&it) == 0x47DA67F8,
			   "decode spec Date-Time");
	n = unhex(spec_interval_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && pgck_ttlv_get_int(&it) == 864000,
			   "decode spec Interval");
	n = unhex(spec_struct_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) &&
			   pgck_ttlv_find(&it, 0x420004, PGCK_TTLV_ENUM, &c) == 1 && pgck_ttlv_get_int(&c) == 254 &&
			   pgck_ttlv_find(&it, 0x420005, PGCK_TTLV_INTEGER, &c) == 1 && pgck_ttlv_get_int(&c) == 255 &&
			   pgck_ttlv_find(&it, 0x420005, PGCK_TTLV_ENUM, &c) == -1 &&
			   pgck_ttlv_find(&it, 0x420006, PGCK_TTLV_ENUM, &c) == 0, "decode spec Structure and find");
}

/* An attribute structure: name and value written by fn. */
static void
attr_begin(PgckTtlvBuf *b, const char *name)
{
	pgck_ttlv_begin(b, PGCK_KMIP_TAG_ATTRIBUTE);
	pgck_ttlv_text(b, PGCK_KMIP_TAG_ATTRIBUTE_NAME, name, strlen(name));
}

static void
test_test_cases(void)
{
	PgckTtlvBuf b;
	static uint8_t buf[4096];
	size_t		n;
	PgckKmipResponse r;
	PgckTtlvItem it;
	const char *err;

	/* kmip-testcases-v1.1 3.1.1: Create */
	pgck_ttlv_buf_init(&b);
	pgck_kmip_request_begin(&b, 1, 1, PGCK_KMIP_OP_CREATE);
	pgck_ttlv_enum(&b, PGCK_KMIP_TAG_OBJECT_TYPE, PGCK_KMIP_OBJ_SYMMETRIC_KEY);
	pgck_ttlv_begin(&b, 0x420091);	/* Template-Attribute */
	attr_begin(&b, "Cryptographic Algorithm");
	pgck_ttlv_enum(&b, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_KMIP_ALG_AES);
	pgck_ttlv_end(&b);
	attr_begin(&b, "Cryptographic Length");
	pgck_ttlv_int(&b, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, 128);
	pgck_ttlv_end(&b);
	attr_begin(&b, "Cryptographic Usage Mask");
	pgck_ttlv_int(&b, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_KMIP_USAGE_ENCRYPT | PGCK_KMIP_USAGE_DECRYPT);
	pgck_ttlv_end(&b);
	pgck_ttlv_end(&b);
	pgck_kmip_request_end(&b);
	unit_check(same_as(&b, create_hex), "encode test case 3.1.1 Create request");
	pgck_ttlv_buf_free(&b);

	/* 3.1.3: Locate by Object Type and Name */
	pgck_ttlv_buf_init(&b);
	pgck_kmip_request_begin(&b, 1, 1, PGCK_KMIP_OP_LOCATE);
	attr_begin(&b, "Object Type");
	pgck_ttlv_enum(&b, PGCK_KMIP_TAG_ATTRIBUTE_VALUE, PGCK_KMIP_OBJ_SYMMETRIC_KEY);
	pgck_ttlv_end(&b);
	attr_begin(&b, "Name");
	pgck_ttlv_begin(&b, PGCK_KMIP_TAG_ATTRIBUTE_VALUE);
	pgck_ttlv_text(&b, PGCK_KMIP_TAG_NAME_VALUE, "Key1", 4);
	pgck_ttlv_enum(&b, PGCK_KMIP_TAG_NAME_TYPE, PGCK_KMIP_NAME_TEXT);
	pgck_ttlv_end(&b);
	pgck_ttlv_end(&b);
	pgck_kmip_request_end(&b);
	unit_check(same_as(&b, locate_hex), "encode test case 3.1.3 Locate request");
	pgck_ttlv_buf_free(&b);

	/* the requests decode too (they are well-formed TTLV) */
	n = unhex(create_hex, buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && it.tag == PGCK_KMIP_TAG_REQUEST_MESSAGE,
			   "decode test case 3.1.1 Create request");

	n = unhex(locate_resp_hex, buf, sizeof(buf));
	unit_check(pgck_kmip_parse_response(buf, n, &r, &err) && r.major == 1 && r.minor == 1 &&
			   r.operation == PGCK_KMIP_OP_LOCATE && r.status == PGCK_KMIP_STATUS_SUCCESS &&
			   r.has_payload &&
			   pgck_ttlv_find(&r.payload, PGCK_KMIP_TAG_UNIQUE_IDENTIFIER, PGCK_TTLV_TEXT, &it) == 1 &&
			   it.len == 36 && memcmp(it.value, "49a1ca88-6bea-4fb2-b450-7e58802c3038", 36) == 0,
			   "parse test case 3.1.3 Locate response");

	n = unhex(invalid_resp_hex, buf, sizeof(buf));
	unit_check(pgck_kmip_parse_response(buf, n, &r, &err) && r.operation == 0 &&
			   r.status == PGCK_KMIP_STATUS_FAILED && r.reason == 0x04 && !r.has_payload &&
			   strcmp(r.message, "Default response. No operations supported.") == 0,
			   "parse an Invalid Message error response");

	/* a request is not a response */
	n = unhex(create_hex, buf, sizeof(buf));
	unit_check(!pgck_kmip_parse_response(buf, n, &r, &err), "a request message is not a response");
}

/* Decode hex after applying one byte change; true when refused. */
static int
refused(const char *hex, size_t off, int value, size_t cut)
{
	static uint8_t buf[4096];
	size_t		n = unhex(hex, buf, sizeof(buf));
	PgckTtlvItem it;
	PgckKmipResponse r;
	const char *err = NULL;
	bool		ok;

	if (value >= 0)
		buf[off] = (uint8_t) value;
	if (cut > 0)
		n -= cut;
	ok = pgck_kmip_parse_response(buf, n, &r, &err);
	if (!ok && err == NULL)
		return 0;				/* a refusal always names its reason */
	(void) it;
	return !ok;
}

static void
test_malformed(void)
{
	uint8_t		buf[64];
	size_t		n;
	PgckTtlvItem it;
	const char *err;
	PgckTtlvBuf b;
	int			i;

	unit_check(!refused(locate_resp_hex, 0, -1, 0), "the unchanged response parses");
	unit_check(refused(locate_resp_hex, 0, -1, 8), "truncated message refused");
	unit_check(refused(locate_resp_hex, 0, -1, 1), "message cut by one byte refused");
	unit_check(refused(locate_resp_hex, 7, 0xB8, 0), "message length one item too long refused");
	unit_check(refused(locate_resp_hex, 7, 0xA8, 0), "message length short (bytes after it) refused");
	unit_check(refused(locate_resp_hex, 7, 0xB1, 0), "structure length not a multiple of 8 refused");
	/* Unique Identifier text length 0x24 -> 0x23: its last byte becomes non-zero padding */
	unit_check(refused(locate_resp_hex, 0x8F, 0x23, 0), "text length off by one refused");
	unit_check(refused(locate_resp_hex, 0xB4, 0x01, 0), "non-zero padding byte refused");
	unit_check(refused(locate_resp_hex, 0x7F, 0x01, 0), "non-zero padding of an enumeration refused");
	unit_check(refused(locate_resp_hex, 3, 0x0B, 0), "unknown item type refused");
	unit_check(refused(locate_resp_hex, 0, 0x43, 0), "tag outside the KMIP tag space refused");
	/* Result Status (enumeration) length 4 -> 8 */
	unit_check(refused(locate_resp_hex, 0x77, 0x08, 0), "enumeration of length 8 refused");
	/* Batch Count 1 -> 2 */
	unit_check(refused(locate_resp_hex, 0x53, 0x02, 0), "batch count other than 1 refused");
	/* Operation becomes an Integer */
	unit_check(refused(locate_resp_hex, 0x63, 0x02, 0), "operation of the wrong type refused");
	/* Result Status tag changed: no status */
	unit_check(refused(locate_resp_hex, 0x72, 0x7E, 0), "batch item without a result status refused");

	/* booleans: 0 or 1 only */
	n = unhex("42002006000000080000000000000002", buf, sizeof(buf));
	unit_check(!pgck_ttlv_validate(buf, n, &it, &err), "boolean 2 refused");
	n = unhex("42002006000000080100000000000001", buf, sizeof(buf));
	unit_check(!pgck_ttlv_validate(buf, n, &it, &err), "boolean with a high byte set refused");
	n = unhex("42002004000000040000000100000000", buf, sizeof(buf));
	unit_check(!pgck_ttlv_validate(buf, n, &it, &err), "big integer of 4 bytes refused");
	n = unhex("42002002000000040000000800000000", buf, sizeof(buf));
	unit_check(!pgck_ttlv_validate(buf, n - 1, &it, &err), "integer without its padding refused");
	unit_check(!pgck_ttlv_validate(buf, 7, &it, &err), "half a header refused");
	unit_check(!pgck_ttlv_validate(buf, 0, &it, &err), "empty input refused");
	n = unhex("420020080000000001", buf, sizeof(buf));
	unit_check(!pgck_ttlv_validate(buf, n, &it, &err), "bytes after an empty byte string refused");
	n = unhex("4200200800000000", buf, sizeof(buf));
	unit_check(pgck_ttlv_validate(buf, n, &it, &err) && it.len == 0, "an empty byte string is valid");
	/* length 0xFFFFFFF8: no wraparound past the buffer */
	n = unhex("42002008FFFFFFF80000000000000000", buf, sizeof(buf));
	unit_check(!pgck_ttlv_validate(buf, n, &it, &err), "huge length refused");
	n = unhex("42002001FFFFFFF8", buf, sizeof(buf));
	unit_check(!pgck_ttlv_validate(buf, n, &it, &err), "huge structure length refused");

	/* depth: PGCK_TTLV_MAX_DEPTH nested structures pass, one more fails */
	for (i = PGCK_TTLV_MAX_DEPTH - 1; i <= PGCK_TTLV_MAX_DEPTH; i++)
	{
		uint8_t		deep[8 * (PGCK_TTLV_MAX_DEPTH + 1)];
		int			d;

		for (d = 0; d <= i; d++)
		{
			uint32_t	len = (uint32_t) (8 * (i - d));

			deep[8 * d] = 0x42;
			deep[8 * d + 1] = 0x00;
			deep[8 * d + 2] = 0x20;
			deep[8 * d + 3] = PGCK_TTLV_STRUCTURE;
			deep[8 * d + 4] = (uint8_t) (len >> 24);
			deep[8 * d + 5] = (uint8_t) (len >> 16);
			deep[8 * d + 6] = (uint8_t) (len >> 8);
			deep[8 * d + 7] = (uint8_t) len;
		}
		unit_check(pgck_ttlv_validate(deep, 8 * (i + 1), &it, &err) == (i < PGCK_TTLV_MAX_DEPTH),
				   "%d levels of structures %s", i + 1, i < PGCK_TTLV_MAX_DEPTH ? "accepted" : "refused");
	}

	/* message framing */
	n = unhex("42007B0100000010", buf, sizeof(buf));
	unit_check(pgck_ttlv_message_len(buf, 1024) == 24, "message length from the header");
	unit_check(pgck_ttlv_message_len(buf, 16) == 0, "message over the limit refused");
	unit_check(pgck_ttlv_message_len(buf, 24) == 24, "message exactly at the limit accepted");
	unit_check(pgck_ttlv_message_len(buf, 23) == 0, "message one byte over the limit refused");
	n = unhex("42007B0200000010", buf, sizeof(buf));
	unit_check(pgck_ttlv_message_len(buf, 1024) == 0, "message that is not a structure refused");

	/* the encoder refuses what it cannot encode */
	pgck_ttlv_buf_init(&b);
	pgck_ttlv_begin(&b, 0x420020);
	unit_check(!pgck_ttlv_buf_ok(&b), "an open structure is not a message");
	pgck_ttlv_end(&b);
	pgck_ttlv_end(&b);
	unit_check(!pgck_ttlv_buf_ok(&b), "closing more than was opened fails");
	pgck_ttlv_buf_free(&b);
	pgck_ttlv_buf_init(&b);
	for (i = 0; i <= PGCK_TTLV_MAX_DEPTH; i++)
		pgck_ttlv_begin(&b, 0x420020);
	for (i = 0; i <= PGCK_TTLV_MAX_DEPTH; i++)
		pgck_ttlv_end(&b);
	unit_check(!pgck_ttlv_buf_ok(&b), "nesting beyond the depth limit fails");
	pgck_ttlv_buf_free(&b);
}

int
main(void)
{
	test_spec_examples();
	test_test_cases();
	test_malformed();
	return unit_finish();
}
