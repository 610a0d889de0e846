/*-------------------------------------------------------------------------
 *
 * keymem.h
 *		Locked memory for raw keys.
 *
 * Every raw key a backend holds (a cached DEK or blind-index key, a key
 * just generated or unwrapped) lives in a 32-byte slot of an mmap'd arena
 * that is mlock'd (never swapped), excluded from core dumps (MADV_DONTDUMP)
 * and from forked children (MADV_DONTFORK).  A freed slot is wiped; at
 * process exit the owners' release functions run, then every chunk is
 * wiped.  Nothing here knows what a key is for: the key cache and the
 * keyring both allocate here, and neither is imported.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KEYMEM_H
#define PGCK_KEYMEM_H

#include "postgres.h"

#define PGCK_KEYMEM_SLOT	32

/* After building keyed OpenSSL objects: warn once if they are unprotected. */
extern void pgck_keymem_check_heap_keys(void);

/* A locked, zeroed 32-byte slot; ereports on out of memory. */
extern uint8 *pgck_locked_alloc(void);

/* Wipe and return a slot (NULL is ignored). */
extern void pgck_locked_free(uint8 *slot);

/*
 * Run fn at process exit, before the arena is wiped (an owner frees what it
 * built from its slots, e.g. keyed OpenSSL contexts).  At most a few; call
 * from _PG_init.
 */
extern void pgck_keymem_on_release(void (*fn) (void));

/*
 * A region of size bytes shared with every process the caller forks later
 * (MAP_SHARED | MAP_ANONYMOUS), excluded from core dumps and locked; for the
 * postmaster, before it forks.  Returns NULL (and logs why at WARNING) if it
 * cannot be mapped or locked: keys never go to memory that may be swapped.
 * The caller wipes it with pgck_wipe when it is done.
 */
extern void *pgck_keymem_map_shared(Size size);

#endif							/* PGCK_KEYMEM_H */
