/*-------------------------------------------------------------------------
 *
 * blind_tag.h
 *		The pure half of blind-index tags: the normalizing transforms and the
 *		truncation of an HMAC-SHA-256 to index_bits.  No PostgreSQL
 *		dependency, so test/unit/test_blind_tag.c checks them on their own
 *		against an independent reference.
 *
 * Transforms are byte-wise and locale-independent, so a tag computed on one
 * server matches the probe computed on any other (replica, restore):
 *	exact	the bytes as they are (no function: the caller hashes its input)
 *	lower	ASCII A-Z folded to a-z; every other byte unchanged
 *	email	leading and trailing ASCII white space (space, \t, \n, \v, \f,
 *			\r) removed, then as lower (dots and +tags are not folded: they
 *			can name other mailboxes)
 *	digits	only the ASCII digits 0-9 kept (phone and account numbers)
 *
 * Every transform writes at most len bytes: out must hold len bytes (it may
 * not overlap s).  Each returns the length written.  NUL bytes are ordinary
 * bytes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_BLIND_TAG_H
#define PGCK_BLIND_TAG_H

#include <stddef.h>
#include <stdint.h>

#define PGCK_BLIND_MAC_LEN		32	/* HMAC-SHA-256 */

extern size_t pgck_normalize_lower(const char *s, size_t len, char *out);
extern size_t pgck_normalize_email(const char *s, size_t len, char *out);
extern size_t pgck_normalize_digits(const char *s, size_t len, char *out);

/*
 * Transforms of named blind indexes (0.3.0), same contract:
 *	domain		as email, then what follows the last '@' (all of it without
 *				one, so the probe "example.com" matches "a@Example.com")
 *	prefix(n)	the first n characters, suffix(n) the last n (all of s when
 *				shorter).  With char_len NULL characters are UTF-8 sequences:
 *				continuation bytes 0x80-0xBF do not start one.  Otherwise
 *				char_len(p) is the byte length of the character starting at p
 *				(another encoding's rule, e.g. PostgreSQL's pg_mblen, which
 *				reads its first byte); a length below 1 counts as 1, one past
 *				the end of s as the rest of s.
 */
typedef int (*pgck_char_len_fn) (const char *p);

extern size_t pgck_normalize_domain(const char *s, size_t len, char *out);
extern size_t pgck_transform_prefix(const char *s, size_t len, int n, pgck_char_len_fn char_len, char *out);
extern size_t pgck_transform_suffix(const char *s, size_t len, int n, pgck_char_len_fn char_len, char *out);

/*
 * Truncate mac[PGCK_BLIND_MAC_LEN] to its first index_bits bits (1..256,
 * most significant bit of each byte first) into out, which must hold
 * PGCK_BLIND_MAC_LEN bytes.  Returns the tag length, index_bits rounded up
 * to whole bytes; the unused low bits of the last byte are zero.  out may
 * be mac itself (the MAC computed in the tag's buffer): the MAC bytes past
 * the tag are then wiped, so no more of the MAC than the tag stays behind.
 */
extern size_t pgck_blind_tag_truncate(const uint8_t *mac, int index_bits, uint8_t *out);

#endif							/* PGCK_BLIND_TAG_H */
