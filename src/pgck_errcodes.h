/*-------------------------------------------------------------------------
 *
 * pgck_errcodes.h
 *		The SQLSTATEs pgcrypt_kms raises: one table, mirrored in README.md.
 *
 * Every user-reachable ereport(ERROR) uses one of these.  Never class 08
 * (connection exception): connection pools drop the session on 08xxx, and a
 * KMS hiccup is not a broken database connection.
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
