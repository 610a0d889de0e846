/*-------------------------------------------------------------------------
 *
 * kms_common.h
 *		What every KMS provider needs besides its own protocol: retry
 *		backoff, an interruptible sleep, the deadline of a call, and reading
 *		a secret file (a token, a PIN, a private key) without leaving a copy
 *		behind.
 *
 * Providers (kms_aws.c, aws_credentials.c, and any other provider file)
 * use these instead of their own copies, so every provider retries,
 * sleeps and reads secrets the same way:
 *	- backoff: capped exponential with full jitter (the AWS SDKs' 2026
 *	  standard retry mode), 1 s scale after throttling, 50 ms otherwise,
 *	  capped at 20 s;
 *	- sleeping serves interrupts, so statement_timeout and
 *	  pg_cancel_backend end a backoff at once;
 *	- secret files are read with read(2) into palloc'd memory (no stdio
 *	  buffer left unwiped), size-limited, NUL bytes refused; a file that
 *	  must be private is refused unless it is a regular file to which its
 *	  group and others have no access (as ssh refuses a readable private
 *	  key).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KMS_COMMON_H
#define PGCK_KMS_COMMON_H

#include "postgres.h"

#include "kms.h"

/*
 * Delay before retry number 'retry' (1 = the first retry), in ms:
 * uniform in [0, min(scale * 2^(retry-1), 20 s)].
 */
extern double pgck_kms_backoff_ms(int retry, bool throttling);

/* Sleep ms milliseconds on the process latch, serving interrupts. */
extern void pgck_kms_sleep_ms(double ms);

/* The monotonic-clock deadline of a provider call: now + kms_timeout. */
extern double pgck_kms_call_deadline_ms(void);

/*
 * Before retry number 'attempt' of operation op: the backoff delay, cut so
 * the retry still starts before deadline_ms; false (no wait, no retry
 * counted) when even an immediate retry would start too late.  On true the
 * retry has been counted in kms_cache_stats() and the delay slept.
 */
extern bool pgck_kms_wait_before_retry(PgckKmsOp op, int attempt, bool throttling,
									   double deadline_ms);

/* Options of pgck_kms_read_secret_file. */
#define PGCK_SECRET_MISSING_OK	0x01	/* NULL when the file does not exist */
#define PGCK_SECRET_PRIVATE		0x02	/* refuse group/other access: 42501 */

/*
 * Read a whole small file into a palloc'd NUL-terminated buffer; the caller
 * wipes it (pgck_kms_wipe_pfree).  what names the file in errors ("Vault
 * token file").  Errors: the file's access errors (errcode_for_file_access),
 * 42501 for a private file others can read, 58000 for a file over maxlen
 * bytes or holding a NUL byte.
 */
extern char *pgck_kms_read_secret_file(const char *path, size_t maxlen, int flags,
									   const char *what);

/* explicit_bzero(strlen) then pfree; NULL-safe. */
extern void pgck_kms_wipe_pfree(char *p);

#endif							/* PGCK_KMS_COMMON_H */
