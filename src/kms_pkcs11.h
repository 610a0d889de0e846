/*-------------------------------------------------------------------------
 *
 * kms_pkcs11.h
 *		The "pkcs11:<RFC 7512 path>" KMS provider: data keys wrapped with
 *		AES-GCM by a non-extractable AES key inside a PKCS#11 token (an
 *		HSM, SoftHSM2, AWS CloudHSM).  See kms_pkcs11.c.
 *
 * The wrapped-key blob (version 1):
 *
 *	 'P' 'H' 1 | mechanism 1 (CKM_AES_GCM) | IV length 12 | IV(12)
 *	   | ciphertext(key_len) | GCM tag(16)
 *
 * The GCM AAD is the 5-byte header followed by the key's KMS context text
 * ("{}" when none), so a blob moved to another key, or given another
 * context, does not unwrap.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KMS_PKCS11_H
#define PGCK_KMS_PKCS11_H

#include "kms.h"

#define PGCK_P11_BLOB_MAGIC0	'P'
#define PGCK_P11_BLOB_MAGIC1	'H'
#define PGCK_P11_BLOB_VERSION	1
#define PGCK_P11_MECH_AES_GCM	1
#define PGCK_P11_HDR_LEN		5
#define PGCK_P11_IV_LEN			12
#define PGCK_P11_TAG_LEN		16
#define PGCK_P11_BLOB_LEN(n)	(PGCK_P11_HDR_LEN + PGCK_P11_IV_LEN + (n) + PGCK_P11_TAG_LEN)

#endif							/* PGCK_KMS_PKCS11_H */
