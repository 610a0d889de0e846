/*-------------------------------------------------------------------------
 *
 * keypages.c
 *		Locked, non-dumped pages for heap objects that hold key material;
 *		see keypages.h.
 *
 * A sorted array of (page, holders) records the pages marked here.  A page
 * is locked and marked MADV_DONTDUMP when its first holder arrives and
 * unlocked and marked MADV_DODUMP again when its last holder leaves.  The
 * dd flag is a property of the mapping, so the kernel's core dump and gdb's
 * gcore (which reads it in /proc/PID/smaps) leave the page out.  A forked
 * child inherits the flag but not the lock (memory locks never are); a child
 * that execs drops the mapping anyway.  The kernel keeps these flags per
 * mapping, so marking splits the heap's mapping around each marked run of
 * pages (a few more entries in /proc/PID/maps, nothing else).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "keypages.h"

typedef struct
{
	uintptr_t	page;
	unsigned int holders;
	bool		locked;
} MarkedPage;

static MarkedPage *pages = NULL;
static size_t npages = 0;
static size_t capacity = 0;
static uintptr_t page_size = 0;
static int	failures = 0;

/* index of page in pages[], or where it would go (*found false) */
static size_t
find(uintptr_t page, bool *found)
{
	size_t		lo = 0,
				hi = npages;

	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;

		if (pages[mid].page < page)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < npages && pages[lo].page == page;
	return lo;
}

/* one more holder of page; false if it could not be left out of dumps */
static bool
hold_page(uintptr_t page)
{
	bool		found;
	size_t		i = find(page, &found);
	MarkedPage	m;

	if (found)
	{
		pages[i].holders++;
		return true;
	}
	if (npages == capacity)
	{
		size_t		n = capacity == 0 ? 64 : capacity * 2;
		MarkedPage *p = realloc(pages, n * sizeof(MarkedPage));

		if (p == NULL)
			return false;
		pages = p;
		capacity = n;
	}
	if (madvise((void *) page, page_size, MADV_DONTDUMP) != 0)
		return false;
	m.page = page;
	m.holders = 1;
	m.locked = mlock((void *) page, page_size) == 0;
	if (!m.locked)
		failures |= PGCK_KEYPAGES_NOT_LOCKED;
	memmove(&pages[i + 1], &pages[i], (npages - i) * sizeof(MarkedPage));
	pages[i] = m;
	npages++;
	return true;
}

static void
release_page(uintptr_t page)
{
	bool		found;
	size_t		i = find(page, &found);

	if (!found)
		return;
	if (--pages[i].holders > 0)
		return;
	/*
	 * The C library may have returned the page to the kernel when the last
	 * object on it was freed; then these fail harmlessly (ENOMEM).
	 */
	if (pages[i].locked)
		(void) munlock((void *) page, page_size);
	(void) madvise((void *) page, page_size, MADV_DODUMP);
	memmove(&pages[i], &pages[i + 1], (npages - i - 1) * sizeof(MarkedPage));
	npages--;
}

bool
pgck_keypages_hold(const void *p, size_t len)
{
	uintptr_t	first;
	uintptr_t	last;
	uintptr_t	page;

	if (p == NULL || len == 0)
		return true;
	if (page_size == 0)
	{
		long		ps = sysconf(_SC_PAGESIZE);

		page_size = ps > 0 ? (uintptr_t) ps : 4096;
	}
	first = (uintptr_t) p & ~(page_size - 1);
	last = ((uintptr_t) p + len - 1) & ~(page_size - 1);
	for (page = first;; page += page_size)
	{
		if (!hold_page(page))
		{
			/* nothing stays held: undo the pages this call marked */
			while (page > first)
			{
				page -= page_size;
				release_page(page);
			}
			failures |= PGCK_KEYPAGES_DUMPABLE;
			return false;
		}
		if (page == last)
			break;
	}
	return true;
}

void
pgck_keypages_release(const void *p, size_t len)
{
	uintptr_t	first;
	uintptr_t	last;
	uintptr_t	page;

	if (p == NULL || len == 0 || page_size == 0)
		return;
	first = (uintptr_t) p & ~(page_size - 1);
	last = ((uintptr_t) p + len - 1) & ~(page_size - 1);
	for (page = first;; page += page_size)
	{
		release_page(page);
		if (page == last)
			break;
	}
}

int
pgck_keypages_failures(void)
{
	return failures;
}

size_t
pgck_keypages_count(void)
{
	return npages;
}
