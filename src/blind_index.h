/*-------------------------------------------------------------------------
 *
 * blind_index.h
 *		Deterministic HMAC-SHA-256 tags of normalized plaintext.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_BLIND_INDEX_H
#define PGCK_BLIND_INDEX_H

#include "keycache.h"

/*
 * Tag of s[0..len) under hmac (the key's current or previous index key) with
 * k's transform, into out[PGCK_BLIND_TAG_MAX]; returns the tag length
 * (index_bits rounded up to whole bytes, unused low bits of the last byte
 * zero).
 */
extern size_t pgck_blind_index_tag(PgckCachedKey *k, PgckHmac *hmac,
								   const char *s, size_t len, uint8 *out);

/* Do a and b normalize to the same bytes under transform t? */
extern bool pgck_blind_index_same(PgckTransform t, const char *a, size_t alen,
								  const char *b, size_t blen);

#endif							/* PGCK_BLIND_INDEX_H */
