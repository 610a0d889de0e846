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
 * Tag of s[0..len) under key k (which must have a blind index) into
 * out[PGCK_BLIND_TAG_MAX]; returns the tag length (index_bits rounded up to
 * whole bytes, unused low bits of the last byte zero).
 */
extern size_t pgck_blind_index_tag(PgckCachedKey *k, const char *s, size_t len, uint8 *out);

#endif							/* PGCK_BLIND_INDEX_H */
