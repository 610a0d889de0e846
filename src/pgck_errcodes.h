/*-------------------------------------------------------------------------
 *
 * pgck_errcodes.h
 *		The SQLSTATEs pgcrypt_kms raises: one table, mirrored in README.md;
 *		and the rule for its LOG reports.
 *
 * Every user-reachable ereport(ERROR) uses one of these.  Never class 08
 * (connection exception): connection pools drop the session on 08xxx, and a
 * KMS hiccup is not a broken database connection.
 *
 * Every ereport(LOG) carries errhidestmt(true), and elog(LOG) is not used.
 * The server log ranks LOG above ERROR: with the default
 * log_min_error_statement (error), a LOG report made while a statement runs
 * is followed by "STATEMENT: <its text>", with any literal plaintext in it,
 * although the statement goes on and succeeds (a prefetch that logs another
 * key's failure, a failed credential refresh).  Where no statement runs
 * (postmaster, background workers) the flag changes nothing, so no site
 * needs to be told apart.  Reports at WARNING and below are followed by the
 * statement only where log_min_error_statement was lowered to their level,
 * as PostgreSQL's own warnings are: the README counts those with errors.
 * checks/log_hides_statement enforces the rule on the sources.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_ERRCODES_H
#define PGCK_ERRCODES_H

#include "utils/errcodes.h"

/* malformed enc_text literal, unknown format version */
#define PGCK_ERRCODE_BAD_LITERAL		ERRCODE_INVALID_TEXT_REPRESENTATION	/* 22P02 */
/* malformed binary enc_text */
#define PGCK_ERRCODE_BAD_BINARY			ERRCODE_INVALID_BINARY_REPRESENTATION	/* 22P03 */
/* bad argument or setting */
#define PGCK_ERRCODE_BAD_ARGUMENT		ERRCODE_INVALID_PARAMETER_VALUE	/* 22023 */
/*
 * A value failed authentication: a changed byte, another key, another
 * context.  Implementation-defined subclass of class 22 (data exception).
 */
#define PGCK_ERRCODE_VALUE_AUTH			MAKE_SQLSTATE('2','2','K','0','1')
/* unknown key name or key version (also: destroyed key) */
#define PGCK_ERRCODE_UNKNOWN_KEY		ERRCODE_UNDEFINED_OBJECT	/* 42704 */
/* key exists but its state forbids the use (retired, disabled in KMS) */
#define PGCK_ERRCODE_KEY_STATE			ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE	/* 55000 */
/* missing privilege, KMS AccessDenied */
#define PGCK_ERRCODE_PRIVILEGE			ERRCODE_INSUFFICIENT_PRIVILEGE	/* 42501 */
/* KMS or transport failure, credentials unavailable, KMS timeout */
#define PGCK_ERRCODE_KMS_FAILURE		ERRCODE_SYSTEM_ERROR	/* 58000 */
/* malformed KMS response */
#define PGCK_ERRCODE_KMS_PROTOCOL		ERRCODE_SYSTEM_ERROR	/* 58000 */

#endif							/* PGCK_ERRCODES_H */
