/*-------------------------------------------------------------------------
 *
 * keypages.h
 *		Keep heap objects that hold key material out of swap and out of
 *		core dumps: their pages are mlock'd and marked MADV_DONTDUMP.
 *
 * Pure C (no PostgreSQL headers): aead.c uses it for OpenSSL's keyed AES-GCM
 * contexts (the AES-256 key schedule begins with the key itself) and for the
 * HMAC states (the SHA-256 states that absorbed key ^ ipad and key ^ opad,
 * key-equivalent), which live in the process heap, not in keymem.c's locked
 * slots.
 *
 * Pages are reference-counted: objects that share a page keep it marked
 * until the last of them is released.  A page marked here may also hold
 * other heap data, which is then also locked and left out of core dumps.
 * The caller must release exactly what it held, once the object's key
 * material is gone (wiped, or freed by a function that cleanses it).  Not
 * thread-safe (one backend, one thread).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KEYPAGES_H
#define PGCK_KEYPAGES_H

#include <stdbool.h>
#include <stddef.h>

/* What could not be done for some object since the process started (bits) */
#define PGCK_KEYPAGES_NOT_LOCKED	0x01	/* mlock failed (RLIMIT_MEMLOCK) */
#define PGCK_KEYPAGES_DUMPABLE		0x02	/* MADV_DONTDUMP failed, or size unknown */

/*
 * Mark the pages of [p, p + len).  Returns false if they could not be left
 * out of core dumps; a failed mlock only sets PGCK_KEYPAGES_NOT_LOCKED.  On
 * false nothing is held (do not release).
 */
extern bool pgck_keypages_hold(const void *p, size_t len);

/* Undo one pgck_keypages_hold(p, len) that returned true. */
extern void pgck_keypages_release(const void *p, size_t len);

/* PGCK_KEYPAGES_* bits of what failed so far, and marked pages now (tests) */
extern int	pgck_keypages_failures(void);
extern size_t pgck_keypages_count(void);

#endif							/* PGCK_KEYPAGES_H */
