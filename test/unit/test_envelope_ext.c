/*
 * test_envelope_ext.c
 *		Unit tests of the envelope's extension fields (flag 0x04, 0.3.0):
 *		plaintext type, ORE term and named blind-index tags (src/envelope.c).
 *
 * Checks: values written with every combination of fields parse back to the
 * same fields, with the fields inside header_len (so inside the AAD); named
 * tags are found by name and sorted on write; every malformed extension
 * (length out of range or past the value, zero-length field, unknown or
 * repeated or out-of-order type, bad plaintext type, bad name or tag length,
 * unsorted or duplicate names) is refused; and a value without the flag
 * (every value 0.2.0 wrote) parses exactly as before.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "unit.h"

static uint8_t nonce[PGCK_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

/* A value with the given fields and ct_len ciphertext bytes; returns its length. */
static size_t
build(uint8_t *buf, uint8_t type, const uint8_t *ore, size_t ore_len,
	  PgckNamedTag *tags, int ntags, size_t blind_len, size_t ct_len, size_t *hdr)
{
	uint8_t		ext[PGCK_EXT_MAX_LEN + 2];
	uint8_t		blind[PGCK_BLIND_TAG_MAX];
	size_t		ext_size = pgck_envelope_write_ext(ext, type, ore, ore_len, tags, ntags);
	size_t		len = pgck_envelope_size_ext(ct_len, blind_len, ext_size);

	memset(blind, 0xBB, sizeof(blind));
	*hdr = pgck_envelope_write_header_ext(buf, PGCK_FLAG_CONTEXT, 7, nonce, blind, blind_len,
										  ext, ext_size);
	memset(buf + *hdr, 0xCC, len - *hdr);
	return len;
}

static PgckEnvelopeStatus
parse(const uint8_t *buf, size_t len)
{
	PgckEnvelope e;

	return pgck_envelope_parse(buf, len, &e);
}

int
main(void)
{
	uint8_t		buf[8192];
	uint8_t		ore[19];
	uint8_t		t1[4] = {1, 2, 3, 4};
	uint8_t		t2[32];
	PgckNamedTag tags[3];
	PgckNamedTag found;
	PgckEnvelope e;
	size_t		len;
	size_t		hdr;
	int			bad;
	int			type;

	memset(ore, 0x11, sizeof(ore));
	memset(t2, 0x22, sizeof(t2));

	/* no fields: no flag, the 0.2.0 layout */
	len = build(buf, PGCK_PT_TEXT, NULL, 0, NULL, 0, 0, 5, &hdr);
	unit_check(len == 19 + 5 + 16 && hdr == 19 && (buf[2] & PGCK_FLAG_EXT) == 0,
			   "no extension fields: no flag 0x04, the 0.2.0 layout");

	/* every combination round-trips */
	bad = 0;
	for (type = 0; type <= PGCK_PT_MAX; type++)
	{
		int			with_ore;
		int			nt;

		for (with_ore = 0; with_ore <= 1; with_ore++)
			for (nt = 0; nt <= 3; nt++)
			{
				size_t		blind_len = (size_t) (type % 2) * 8;

				tags[0] = (PgckNamedTag) {"suffix4", 7, t1, 4};
				tags[1] = (PgckNamedTag) {"domain", 6, t2, 32};
				tags[2] = (PgckNamedTag) {"dom", 3, t1, 1};
				len = build(buf, (uint8_t) type, ore, with_ore ? sizeof(ore) : 0, tags, nt,
							blind_len, 3, &hdr);
				if (pgck_envelope_parse(buf, len, &e) != PGCK_ENV_OK)
				{
					bad++;
					continue;
				}
				bad += e.plain_type != type;
				bad += with_ore ? (e.ore_term == NULL || e.ore_term_len != sizeof(ore) ||
								   memcmp(e.ore_term, ore, sizeof(ore)) != 0)
					: e.ore_term != NULL;
				bad += e.header_len != hdr || e.ciphertext_len != 3 || e.blind_tag_len != blind_len;
				bad += ((buf[2] & PGCK_FLAG_EXT) != 0) != (type != 0 || with_ore || nt > 0);
				bad += (nt >= 1) != pgck_envelope_named_tag(&e, "suffix4", 7, &found);
				if (nt >= 1)
					bad += found.tag_len != 4 || memcmp(found.tag, t1, 4) != 0;
				bad += (nt >= 2) != pgck_envelope_named_tag(&e, "domain", 6, &found);
				if (nt >= 2)
					bad += found.tag_len != 32 || memcmp(found.tag, t2, 32) != 0;
				bad += (nt >= 3) != pgck_envelope_named_tag(&e, "dom", 3, &found);
				bad += pgck_envelope_named_tag(&e, "domai", 5, &found);
				/* the extension is inside the header: the AAD covers it */
				bad += (type != 0 || with_ore || nt > 0) && hdr <= 19 + (blind_len ? 1 + blind_len : 0);
			}
	}
	unit_check(bad == 0, "every combination of type, ORE term and named tags round-trips inside the header (%d wrong)", bad);

	/* malformed extensions */
	{
		size_t		base;
		size_t		x;
		uint8_t		copy[8192];

		tags[0] = (PgckNamedTag) {"a", 1, t1, 2};
		tags[1] = (PgckNamedTag) {"b", 1, t1, 2};
		len = build(buf, PGCK_PT_INT8, ore, sizeof(ore), tags, 2, 0, 0, &hdr);
		base = 19;				/* ext length at 19..20, fields from 21 */
		unit_check(parse(buf, len) == PGCK_ENV_OK, "the base value parses");
		/* fields: 21 type(01 01 02), 24 ore(02 13 ...), 45 tag a (6 bytes), 51 tag b */
#define MUTATE(off, val, want, what) do { \
			memcpy(copy, buf, len); copy[off] = (uint8_t) (val); \
			unit_check(parse(copy, len) == (want), what " (status %d)", (int) parse(copy, len)); \
		} while (0)
		MUTATE(base + 1, 2, PGCK_ENV_BAD_EXTENSION, "extension length shorter than its fields");
		MUTATE(base + 1, 0, PGCK_ENV_BAD_EXTENSION, "extension length 0 refused");
		MUTATE(base, 0x20, PGCK_ENV_BAD_EXTENSION, "extension length above the maximum refused");
		MUTATE(base, 0x01, PGCK_ENV_TOO_SHORT, "extension length past the value refused");
		MUTATE(21, 0x04, PGCK_ENV_BAD_EXTENSION, "unknown field type refused");
		MUTATE(21, 0x00, PGCK_ENV_BAD_EXTENSION, "field type 0 refused");
		/* an unknown type in last place: nothing after it to be out of order with */
		MUTATE(51, 0x04, PGCK_ENV_BAD_EXTENSION, "unknown field type after the known ones refused");
		MUTATE(51, 0xFF, PGCK_ENV_BAD_EXTENSION, "field type 0xFF after the known ones refused");
		MUTATE(21, 0x02, PGCK_ENV_BAD_EXTENSION, "repeated ORE field refused");
		MUTATE(21, 0x03, PGCK_ENV_BAD_EXTENSION, "type after tags refused");
		MUTATE(22, 0, PGCK_ENV_BAD_EXTENSION, "zero-length field refused");
		MUTATE(22, 2, PGCK_ENV_BAD_EXTENSION, "plaintext type of length 2 refused");
		MUTATE(23, 0, PGCK_ENV_BAD_EXTENSION, "plaintext type 0 refused");
		MUTATE(23, PGCK_PT_MAX + 1, PGCK_ENV_BAD_EXTENSION, "unknown plaintext type refused");
		MUTATE(24 + 2 + 19 + 3, 'b', PGCK_ENV_BAD_EXTENSION, "duplicate tag names refused");
		MUTATE(24 + 2 + 19 + 3, 'c', PGCK_ENV_BAD_EXTENSION, "unsorted tag names refused");
		MUTATE(24 + 2 + 19 + 2, 0, PGCK_ENV_BAD_EXTENSION, "empty tag name refused");
		MUTATE(24 + 2 + 19 + 2, 3, PGCK_ENV_BAD_EXTENSION, "a tag name leaving no tag refused");
		MUTATE(2, PGCK_FLAG_CONTEXT, PGCK_ENV_OK, "without the flag the fields are ciphertext (AEAD then fails)");
#undef MUTATE
		bad = 0;
		for (x = 1; x < len; x++)
			bad += parse(buf, x) == PGCK_ENV_OK;	/* no ciphertext: every shorter value lacks bytes */
		unit_check(bad == 0, "every truncation of the value is refused (%d accepted)", bad);
	}
	return unit_finish();
}
