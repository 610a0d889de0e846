/*-------------------------------------------------------------------------
 *
 * test_keypages.c
 *		Unit tests of src/keypages.c, and of aead.c's use of it: the heap
 *		objects that hold key material sit in pages that are locked and left
 *		out of core dumps, and only while they live.
 *
 * Usage: test_keypages [vectors-folder]   (accepted for a uniform command
 * line, not used).
 *
 * What the kernel says is the truth here: every check reads the VmFlags of
 * the mapping in /proc/self/smaps ("lo": locked, "dd": not dumped), which is
 * what a core dump and gdb's gcore go by.  Covered: one object, an object
 * across a page boundary, two objects on one page (the page stays marked
 * until both are released), and the keyed objects of aead.c: after
 * pgck_aead_new() and pgck_hmac_new() with a distinctive key, every copy of
 * that key (raw, as the AES-256 key schedule starts) and of the HMAC's
 * key-dependent SHA-256 state anywhere in the process's writable memory is
 * in a page marked dd; after the _free functions nothing is marked; 2,000
 * rounds of new/free in mixed order over 64 slots leave nothing held.
 *
 *-------------------------------------------------------------------------
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aead.h"
#include "keypages.h"
#include "unit.h"

/* The VmFlags of the mapping that holds addr: has dd / lo; false if not found */
static bool
flags_of(const void *addr, bool *dd, bool *lo)
{
	FILE	   *f = fopen("/proc/self/smaps", "r");
	char		line[1024];
	bool		in = false;
	bool		found = false;

	*dd = *lo = false;
	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		unsigned long lo_addr,
					hi_addr;

		/* a mapping's first line (sscanf also half-matches "Anonymous:") */
		if (sscanf(line, "%lx-%lx ", &lo_addr, &hi_addr) == 2 && strchr(line, '-') < strchr(line, ' '))
		{
			in = (uintptr_t) addr >= lo_addr && (uintptr_t) addr < hi_addr;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0)
		{
			*dd = strstr(line, " dd") != NULL;
			*lo = strstr(line, " lo") != NULL;
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

/* AddressSanitizer intercepts mlock() as a no-op: there, only dd is checked */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_WORKS false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_WORKS false
#endif
#endif
#ifndef MLOCK_WORKS
#define MLOCK_WORKS true
#endif

static bool
marked(const void *addr)
{
	bool		dd,
				lo;

	return flags_of(addr, &dd, &lo) && dd && (lo || !MLOCK_WORKS);
}

static bool
unmarked(const void *addr)
{
	bool		dd,
				lo;

	return flags_of(addr, &dd, &lo) && !dd && !lo;
}

/*
 * Every occurrence of needle in the process's writable private memory: are
 * they all in mappings marked dd?  *count gets how many there were.  Reads
 * through /proc/self/mem (a hole reads as an error, never a fault) and skips
 * mappings larger than 1 GiB (a sanitizer's shadow).
 */
static bool
all_copies_undumped(const uint8_t *needle, size_t nlen, int *count)
{
	FILE	   *maps = fopen("/proc/self/smaps", "r");
	int			mem = open("/proc/self/mem", O_RDONLY);
	char		line[1024];
	unsigned long lo_addr = 0,
				hi_addr = 0;
	bool		writable = false;
	bool		ok = true;

	*count = 0;
	if (maps == NULL || mem < 0)
	{
		if (maps)
			fclose(maps);
		if (mem >= 0)
			close(mem);
		return false;
	}
	while (fgets(line, sizeof(line), maps) != NULL)
	{
		char		perms[5];
		unsigned long a,
					b;

		/* a mapping's first line (sscanf also half-matches "Anonymous:") */
		if (sscanf(line, "%lx-%lx %4s ", &a, &b, perms) == 3 &&
			strchr(line, '-') < strchr(line, ' '))
		{
			lo_addr = a;
			hi_addr = b;
			writable = perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p' &&
				hi_addr - lo_addr <= (1UL << 30);
			continue;
		}
		if (writable && strncmp(line, "VmFlags:", 8) == 0)
		{
			bool		dd = strstr(line, " dd") != NULL;
			size_t		len = hi_addr - lo_addr;
			uint8_t    *buf = malloc(len);
			ssize_t		got;

			writable = false;
			if (buf == NULL)
				continue;
			got = pread(mem, buf, len, (off_t) lo_addr);
			for (ssize_t i = 0; got > 0 && i + (ssize_t) nlen <= got; i++)
			{
				if (buf[i] == needle[0] && memcmp(buf + i, needle, nlen) == 0)
				{
					(*count)++;
					if (!dd)
						ok = false;
				}
			}
			explicit_bzero(buf, len);
			free(buf);
		}
	}
	fclose(maps);
	close(mem);
	return ok;
}

/* ------------------------------------------------- SHA-256 compression */

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/*
 * Overwrite the stack below the caller's frame: what the test's own
 * reference code left there must not count as the library's copy.
 */
static __attribute__((noinline)) void
wipe_stack_below(void)
{
	volatile uint8_t area[16384];

	explicit_bzero((void *) area, sizeof(area));
}

/* The state after one block from the standard initial value (FIPS 180-4) */
static void
sha256_one_block(const uint8_t block[64], uint32_t h[8])
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	uint32_t	w[64],
				a[8];

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t) block[4 * i] << 24 | (uint32_t) block[4 * i + 1] << 16 |
			(uint32_t) block[4 * i + 2] << 8 | block[4 * i + 3];
	for (int i = 16; i < 64; i++)
		w[i] = w[i - 16] + (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) +
			w[i - 7] + (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
	memcpy(a, iv, sizeof(a));
	for (int i = 0; i < 64; i++)
	{
		uint32_t	t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) +
			((a[4] & a[5]) ^ (~a[4] & a[6])) + K256[i] + w[i];
		uint32_t	t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) +
			((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));

		memmove(a + 1, a, 7 * sizeof(uint32_t));
		a[4] += t1;
		a[0] = t1 + t2;
	}
	for (int i = 0; i < 8; i++)
		h[i] = iv[i] + a[i];
}

int
main(void)
{
	long		ps = sysconf(_SC_PAGESIZE);
	uint8_t    *area = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t    *key;
	int			n;
	int			n2;
	bool		ok;

	if (area == MAP_FAILED)
	{
		unit_check(0, "mmap a test area");
		return unit_finish();
	}
	/* fault the pages in, so each has its flags line */
	memset(area, 0, 4 * ps);
	if (!MLOCK_WORKS)
		printf("# built with AddressSanitizer, whose mlock() does nothing: lo is not checked\n");

	/* one object in one page */
	unit_check(unmarked(area), "a fresh page is neither dd nor lo");
	unit_check(pgck_keypages_hold(area + 100, 200), "hold an object");
	unit_check(marked(area), "its page is dd and lo");
	unit_check(unmarked(area + ps), "the next page is not");
	unit_check(pgck_keypages_count() == 1, "one page marked (%zu)", pgck_keypages_count());

	/* an object across a page boundary, sharing the first page */
	unit_check(pgck_keypages_hold(area + ps - 16, 64), "hold an object across a boundary");
	unit_check(marked(area) && marked(area + ps), "both its pages are marked");
	unit_check(unmarked(area + 2 * ps), "the page after them is not");
	unit_check(pgck_keypages_count() == 2, "two pages marked (%zu)", pgck_keypages_count());

	/* release the first: the shared page stays for the second */
	pgck_keypages_release(area + 100, 200);
	unit_check(marked(area), "a page another object holds stays marked");
	pgck_keypages_release(area + ps - 16, 64);
	unit_check(unmarked(area) && unmarked(area + ps), "the last release unmarks both pages");
	unit_check(pgck_keypages_count() == 0, "nothing marked (%zu)", pgck_keypages_count());

	/* two objects in the same page, released in order of arrival */
	unit_check(pgck_keypages_hold(area + 2 * ps + 10, 10) && pgck_keypages_hold(area + 2 * ps + 500, 10),
			   "hold two objects in one page");
	pgck_keypages_release(area + 2 * ps + 10, 10);
	unit_check(marked(area + 2 * ps), "the page stays marked for the second");
	pgck_keypages_release(area + 2 * ps + 500, 10);
	unit_check(unmarked(area + 2 * ps), "and is unmarked after it");
	/* releasing what is not held changes nothing */
	pgck_keypages_release(area + 3 * ps, 10);
	unit_check(unmarked(area + 3 * ps) && pgck_keypages_count() == 0, "a stray release is harmless");
	unit_check((pgck_keypages_failures() & PGCK_KEYPAGES_DUMPABLE) == 0, "no dump failure recorded");

	/*
	 * aead.c's keyed objects.  The test's own copy of the key lives in the
	 * last page of the area, marked dd here by hand, so the scan below finds
	 * only the copies the library made.
	 */
	key = area + 3 * ps;
	unit_check(madvise(key, ps, MADV_DONTDUMP) == 0, "mark the test's own key page dd");
	for (int i = 0; i < PGCK_AES256_KEY_LEN; i++)
		key[i] = (uint8_t) (0xa5 ^ (i * 37) ^ 0x5c);
	if (getenv("PGCK_AEAD_EVP") == NULL)
	{
		/* one object at a time: another's page must not cover for it */
		PgckAead   *aead = pgck_aead_new(key);
		PgckHmac   *hmac;
		uint8_t		block[64];
		uint32_t	h[8];
		uint8_t    *state = key + 64;	/* in the test's dd page too */

		unit_check(aead != NULL, "pgck_aead_new");
		unit_check(pgck_keypages_count() >= 1, "its pages are marked (%zu)", pgck_keypages_count());
		unit_check(pgck_aead_unprotected() == 0, "nothing reported unprotected (%d)", pgck_aead_unprotected());
		ok = all_copies_undumped(key, PGCK_AES256_KEY_LEN, &n);
		unit_check(ok && n >= 3,
				   "every copy of the raw key is in a dd page (%d copies: the test's, two key schedules)", n);
		pgck_aead_free(aead);
		unit_check(pgck_keypages_count() == 0, "after pgck_aead_free nothing is marked (%zu)",
				   pgck_keypages_count());
		ok = all_copies_undumped(key, PGCK_AES256_KEY_LEN, &n);
		unit_check(ok && n == 1, "only the test's own copy of the key is left (%d)", n);

		/*
		 * The HMAC's keyed states: SHA-256 of one block key ^ ipad (inner)
		 * and key ^ opad (outer), as stored words.  Computed here first, and
		 * the stack below this frame wiped, so that a copy found later was
		 * left by the library, not by this test's reference code.
		 */
		for (int half = 0; half < 2; half++)
		{
			memset(block, half == 0 ? 0x36 : 0x5c, sizeof(block));
			for (int i = 0; i < PGCK_AES256_KEY_LEN; i++)
				block[i] ^= key[i];
			sha256_one_block(block, h);
			memcpy(state + half * sizeof(h), h, sizeof(h));	/* host order, as SHA256_CTX keeps it */
		}
		explicit_bzero(h, sizeof(h));
		explicit_bzero(block, sizeof(block));
		wipe_stack_below();
		ok = all_copies_undumped(state, sizeof(h), &n) && all_copies_undumped(state + sizeof(h), sizeof(h), &n2);
		unit_check(ok && n == 1 && n2 == 1, "before pgck_hmac_new only the test's copies of the states exist (%d, %d)", n, n2);

		hmac = pgck_hmac_new(key, PGCK_AES256_KEY_LEN);
		unit_check(hmac != NULL, "pgck_hmac_new");
		unit_check(pgck_keypages_count() >= 1, "its pages are marked (%zu)", pgck_keypages_count());
		unit_check(pgck_aead_unprotected() == 0, "nothing reported unprotected (%d)", pgck_aead_unprotected());
		ok = all_copies_undumped(state, sizeof(h), &n);
		unit_check(ok && n >= 2, "the HMAC's keyed inner state is in a dd page (%d copies: the test's, the HMAC's)", n);
		ok = all_copies_undumped(state + sizeof(h), sizeof(h), &n);
		unit_check(ok && n >= 2, "the HMAC's keyed outer state is in a dd page, none left on the stack (%d copies)", n);
		/* a MAC leaves neither state behind outside the dd pages */
		{
			uint8_t		mac[PGCK_HMAC_SHA256_LEN];

			unit_check(pgck_hmac_sha256(hmac, (const uint8_t *) "abc", 3, mac), "a MAC");
			ok = all_copies_undumped(state, sizeof(h), &n) && all_copies_undumped(state + sizeof(h), sizeof(h), &n2);
			unit_check(ok && n >= 2 && n2 >= 2, "after a MAC both keyed states are in dd pages only (%d, %d copies)", n, n2);
		}
		pgck_hmac_free(hmac);
		unit_check(pgck_keypages_count() == 0, "after pgck_hmac_free nothing is marked (%zu)",
				   pgck_keypages_count());
		ok = all_copies_undumped(state, sizeof(h), &n);
		unit_check(ok && n == 1, "only the test's own copy of the state is left (%d)", n);
		ok = all_copies_undumped(state + sizeof(h), sizeof(h), &n);
		unit_check(ok && n == 1, "only the test's own copy of the outer state is left (%d)", n);
		explicit_bzero(state, 2 * sizeof(h));

		/* a key cache's churn: objects made and freed in mixed order leave nothing held */
		{
			PgckAead   *live[64] = {0};
			PgckHmac   *mac[64] = {0};
			bool		all = true;

			for (int round = 0; round < 2000; round++)
			{
				int			i = (round * 37) % 64;

				pgck_aead_free(live[i]);
				pgck_hmac_free(mac[i]);
				live[i] = pgck_aead_new(key);
				mac[i] = pgck_hmac_new(key, PGCK_AES256_KEY_LEN);
				all = all && live[i] != NULL && mac[i] != NULL && marked(mac[i]);
			}
			unit_check(all, "2,000 rounds of new/free over 64 slots: every live HMAC state's page marked");
			for (int i = 0; i < 64; i++)
			{
				pgck_aead_free(live[i]);
				pgck_hmac_free(mac[i]);
			}
			unit_check(pgck_keypages_count() == 0 && pgck_aead_unprotected() == 0,
					   "all freed: nothing marked (%zu), nothing reported", pgck_keypages_count());
		}
	}
	else
	{
		PgckAead   *aead = pgck_aead_new(key);

		/* the EVP path cannot reach the provider context: it says so */
		unit_check(aead != NULL && (pgck_aead_unprotected() & PGCK_KEYPAGES_DUMPABLE) != 0,
				   "the EVP path reports its contexts as dumpable");
		pgck_aead_free(aead);
	}
	explicit_bzero(key, PGCK_AES256_KEY_LEN);
	munmap(area, 4 * ps);
	return unit_finish();
}
