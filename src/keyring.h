/*-------------------------------------------------------------------------
 *
 * keyring.h
 *		The SQL-side key tables (pgcrypt_kms.keys, pgcrypt_kms.key_versions).
 *
 * Reads run as the owner of the keyring tables (the extension owner), so a
 * role needs only EXECUTE on the extension's functions, never SELECT on the
 * wrapped keys.  Reads use the latest snapshot outside parallel mode, so a
 * rotation committed by another session is seen even inside a REPEATABLE
 * READ transaction.  Results are palloc'd in CurrentMemoryContext.
 *
 * The keyring knows nothing of the key cache (keycache.h), which asks it for
 * rows: keys it generates are written into the caller's locked slots
 * (keymem.h) for the caller to use or cache.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KEYRING_H
#define PGCK_KEYRING_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/resowner.h"

#define PGCK_KEY_NAME_MAX 128

typedef enum PgckKeyState
{
	PGCK_STATE_ACTIVE,
	PGCK_STATE_DECRYPT_ONLY,
	PGCK_STATE_RETIRED,
	PGCK_STATE_DESTROYED
} PgckKeyState;

typedef enum PgckTransform
{
	PGCK_BIDX_NONE,
	PGCK_BIDX_EXACT,
	PGCK_BIDX_LOWER,
	PGCK_BIDX_EMAIL,
	PGCK_BIDX_DIGITS
} PgckTransform;

/* A row of pgcrypt_kms.keys, plus the id of its active version. */
typedef struct PgckKeyRow
{
	char	   *key_name;
	char	   *kms_key;
	char	   *kms_context;	/* jsonb as text */
	PgckTransform transform;
	int			index_bits;
	int			index_key_version;
	bytea	   *index_key_wrapped;	/* NULL when transform is none */
	bytea	   *index_key_check;
	bytea	   *prev_index_key_wrapped; /* during an index key rotation */
	bytea	   *prev_index_key_check;

	/*
	 * The references KMS calls use for the index keys: "<scheme>:<key ARN>"
	 * when the keyring recorded the ARN the KMS reported, else the stored
	 * index_kms_key.  When the current and previous index keys were wrapped
	 * under different keys (an alias re-pointed between them),
	 * index_kms_key is the stored reference, which then serves both.
	 */
	char	   *index_kms_key;
	char	   *prev_index_kms_key;
	char	   *index_kms_key_arn;	/* as stored; NULL when not (yet) known */
	char	   *prev_index_kms_key_arn;
	uint32		current_id;		/* 0 when no version is active */
	bool		destroyed;		/* crypto-shredded */
} PgckKeyRow;

/* A row of pgcrypt_kms.key_versions, with its key's KMS context. */
typedef struct PgckVersionRow
{
	uint32		id;
	char	   *key_name;
	int32		version;
	/* the reference KMS calls use: "<scheme>:<kms_key_arn>" when known, else as stored */
	char	   *kms_key;
	char	   *kms_key_arn;	/* as stored; NULL when not (yet) known */
	char	   *kms_context;
	bytea	   *wrapped_dek;
	bytea	   *key_check;
	PgckKeyState state;
	TimestampTz created;
} PgckVersionRow;

/*
 * Who counts a version's encryptions (issue 11, defect 7): the cluster that
 * created it (system identifier and timeline) and its DEK's random nonce
 * space.  known is false on a keyring not yet updated to 0.2.0.
 */
typedef struct PgckVersionWriter
{
	char	   *key_name;
	int32		version;
	bool		known;
	uint64		system_id;
	uint32		timeline;
	uint8		nonce_space[16];
} PgckVersionWriter;

extern bool pgck_keyring_fetch_key(const char *name, PgckKeyRow *out);
extern bool pgck_keyring_fetch_version(uint32 id, PgckVersionRow *out);
extern bool pgck_keyring_fetch_writer(uint32 id, PgckVersionWriter *out);

/*
 * Refuses (55000) when an enabled subscription replicates the keyring into
 * this database: key_name version would be rotated on the way to an
 * encryption (foreign: it was created by another cluster, the publisher).
 */
extern void pgck_keyring_refuse_if_subscribed(const char *key_name, int32 version, bool foreign);

/* The rows of every active and decrypt-only version (palloc'd), in one query; 0 in parallel mode. */
extern int	pgck_keyring_usable_versions(PgckVersionRow **rows_out);

extern const char *pgck_state_name(PgckKeyState state);
extern const char *pgck_transform_name(PgckTransform t);
extern bool pgck_transform_parse(const char *name, PgckTransform *out);

/*
 * Rotate key name: a new active data key version, the previous one
 * decrypt-only.  With expected_current != 0, rotate only if that version is
 * still the active one as last committed (returns 0 otherwise: another
 * session rotated).  With nowait, a key whose row another transaction holds
 * (a rotation under way) is not waited for: returns PGCK_ROTATE_BUSY.
 * Returns the new version number.
 */
#define PGCK_ROTATE_BUSY (-1)
/*
 * The new data key is written into dek (a locked slot of the caller's) and
 * its version id into *id_out (0 when no version was made).
 */
extern int32 pgck_keyring_rotate(const char *name, uint32 expected_current, bool nowait,
								 uint8 *dek, uint32 *id_out);

/*
 * kms_rotate_index_key's keyring part: a new index key, the previous one kept
 * for probes until kms_finish_index_rotation().  Returns its version.
 */
extern int32 pgck_keyring_rotate_index_key(const char *name);

/*
 * kms_create_key's work: checks the arguments, generates the first data key
 * into dek and, with a blind index, the index key into ikey (locked slots of
 * the caller's), inserts the rows and returns the new version id.
 */
extern uint32 pgck_keyring_create_key(const char *name, const char *kms_key,
									  const char *transform_name, int32 index_bits,
									  Jsonb *ctx_jsonb, uint8 *dek, uint8 *ikey,
									  PgckTransform *transform_out);

/* Is relid one of the keyring tables (as last looked up by this backend)? */
extern bool pgck_keyring_is_keyring_rel(Oid relid);

/*
 * Unwrap a key through its provider and verify it against its key-check
 * value; what/name/version only label errors.  ereports 58000 on a mismatch
 * (the KMS returned another key) and leaves dek_out wiped.  kms_key is the
 * row's reference for KMS calls (PgckVersionRow.kms_key).  When the KMS
 * reports a key ARN the keyring does not hold yet for this wrapped key (a
 * keyring from 0.1.0), it is recorded, where this transaction may write,
 * in a subtransaction that never waits for a row lock and whose failure
 * only leaves the ARN for a later unwrap to record.
 */
extern void pgck_keyring_unwrap(const char *kms_key, const char *kms_context,
								const bytea *wrapped, const bytea *check,
								const char *what, const char *name, int32 version,
								uint8 *dek_out);

/*
 * Run as the keyring's owner with search_path pinned (see keyring.c); for the
 * other keyring modules (wrappings.c).  Leave on every path, PG_FINALLY.
 */
typedef struct PgckOwnerScope
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
} PgckOwnerScope;
extern void pgck_keyring_scope_enter(PgckOwnerScope *scope);
extern void pgck_keyring_scope_leave(PgckOwnerScope *scope);

/*
 * Re-wrap a wrapped key under another master key (kms_rewrap_key, additional
 * wrappings): within one provider without the plaintext passing through this
 * process (AWS ReEncrypt), across providers by unwrapping (checked against
 * check) and wrapping here.  Result palloc'd; *arn_out the new key's ARN.
 */
extern bytea *pgck_keyring_rewrap_blob(const char *old_ref, const char *new_key,
									   const char *kms_context, const bytea *wrapped,
									   const bytea *check, const char *what,
									   const char *name, int32 version, char **arn_out);

/* Does a cached key-check value equal the keyring's? */
extern bool pgck_keyring_check_matches(const bytea *check, const uint8 *cached);

/*
 * The end of an internal subtransaction (BeginInternalSubTransaction with cxt
 * current and owner the resource owner before it) whose work succeeded:
 * release it and restore cxt and owner.
 */
extern void pgck_subxact_release(MemoryContext cxt, ResourceOwner owner);

/*
 * In the PG_CATCH of an internal subtransaction (BeginInternalSubTransaction
 * with cxt current and owner the resource owner before it): copy the error
 * into cxt, roll the subtransaction back, restore cxt and owner, and return
 * the copy for the caller to record or report.  Unless
 * pgck_error_ends_statement() says it is a cancel, a shutdown or another
 * operator intervention (class 57): that one the caller re-throws
 * (ReThrowError) after its own clean-up, for a loop that recorded a cancel
 * and went on to its next KMS call could not be stopped.
 */
extern ErrorData *pgck_subxact_abort(MemoryContext cxt, ResourceOwner owner);
extern bool pgck_error_ends_statement(const ErrorData *edata);

#endif							/* PGCK_KEYRING_H */
