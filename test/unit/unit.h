/*
 * unit.h
 *		Minimal TAP-style helpers shared by the C unit tests.
 *
 * Each test program prints "ok N - name" / "not ok N - name", then a last
 * line "N passed, N failed" that test/run.sh reads, and exits 1 on any
 * failure or when it ran no check at all.
 */
#ifndef PGCK_UNIT_H
#define PGCK_UNIT_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int	unit_passed = 0;
static int	unit_failed = 0;

static inline void
unit_check(int cond, const char *fmt,...)
{
	va_list		ap;

	if (cond)
		unit_passed++;
	else
		unit_failed++;
	printf("%s %d - ", cond ? "ok" : "not ok", unit_passed + unit_failed);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* Record a result without printing it (bulk vector loops print a summary). */
static inline void
unit_count(int cond)
{
	if (cond)
		unit_passed++;
	else
		unit_failed++;
}

static inline int
unit_finish(void)
{
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return (unit_failed == 0 && unit_passed > 0) ? 0 : 1;
}

#endif							/* PGCK_UNIT_H */
