/*-------------------------------------------------------------------------
 *
 * enc_typed.h
 *		Typed values, ORE terms and named blind indexes (enc_typed.c), and the
 *		two entry points of enc_text.c they share the envelope code through.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_ENC_TYPED_H
#define PGCK_ENC_TYPED_H

#include "keycache.h"

/* accept any plaintext type (pgck_decrypt_value's want_type) */
#define PGCK_PT_ANY		(-1)

/*
 * A call site's memory of which extra indexes pgck_value_ext found for its key
 * (so the rows of a scan skip that search).  Zeroed by the caller whenever it
 * resolves the key again (new statement, cache epoch or key name); the
 * entry it names is checked to be the same load under the same epoch.
 */
typedef struct PgckExtHint
{
	const void *m;
	uint64		load_id;
	uint64		epoch;
} PgckExtHint;

/*
 * The extension fields of a new value of key k (type field, ORE term when the
 * key has an order index, named tags) into out, which must hold
 * PGCK_EXT_MAX_LEN + 2 bytes; returns their size (0: none).
 */
extern size_t pgck_value_ext(PgckCachedKey *k, uint8 plain_type, const uint8 *pt,
							 size_t pt_len, uint8 *out, PgckExtHint *hint);

extern const char *pgck_plain_type_name(uint8 t);

/* Wipe the order and named-index keys of every memo slot (no statement running). */
extern void pgck_enc_typed_release_memos(void);

/* enc_text.c: encrypt pt as a value of plain_type under the key named key_name. */
extern struct varlena *pgck_encrypt_value(const uint8 *pt, size_t pt_len, uint8 plain_type,
										  const text *key_name, const text *context,
										  FmgrInfo *flinfo);

/*
 * enc_text.c: decrypt a value recording want_type (PGCK_PT_ANY: any); the
 * plaintext bytes as a palloc'd varlena.  A value of another type is refused
 * (42804) before any cryptography.
 */
extern text *pgck_decrypt_value(struct varlena *value, const text *context, int want_type,
								FmgrInfo *flinfo);

/*
 * enc_text.c: the key version id a stored value (detoasted) names, as
 * kms_version_id() returns it; a malformed value is refused as there.  For C
 * code that reads values of user columns: calling kms_version_id by name in
 * SQL there would resolve to whatever overload fits the column's type best.
 */
extern int32 pgck_stored_version_id(const struct varlena *value);

#endif							/* PGCK_ENC_TYPED_H */
