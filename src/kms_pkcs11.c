/*-------------------------------------------------------------------------
 *
 * kms_pkcs11.c
 *		The "pkcs11:" KMS provider: a master key inside a PKCS#11 token.
 *
 * A key reference is an RFC 7512 URI path ("pkcs11:token=pg;object=master",
 * also id=, serial=, manufacturer=, model=, slot-id=, slot-..., library-...
 * to pick the token and key); pkcs11_uri.c parses it.  The query attributes
 * pin-value, pin-source, module-name and module-path are refused: the
 * module is the superuser-only setting pgcrypt_kms.pkcs11_module and the
 * PIN is read from the file pgcrypt_kms.pkcs11_pin_file (private to the
 * server's OS user, wiped after C_Login).  A PIN is never a setting.
 *
 * Wrapping: data keys are made by OpenSSL's RAND_bytes (pgck_random_bytes,
 * as for the local: provider: one module call less per key, and the
 * plaintext data key lives in the backend anyway) and wrapped with
 * C_Encrypt(CKM_AES_GCM) under the master key: a fresh random 12-byte IV,
 * a 128-bit tag, AAD = blob header + KMS context (see kms_pkcs11.h).  GCM
 * was chosen over CKM_AES_KEY_WRAP_PAD for the context binding, and
 * because the data key then never becomes a token object.  Unwrapping is
 * C_Decrypt.  The master key never leaves the token: before every use the
 * provider reads its non-secret attributes (class, key type, CKA_ENCRYPT,
 * CKA_DECRYPT, CKA_EXTRACTABLE, CKA_SENSITIVE) and refuses (55000) a key
 * that could be exported (CKA_EXTRACTABLE true or CKA_SENSITIVE false).  It
 * never asks for CKA_VALUE and never calls C_WrapKey.
 *
 * Re-wrapping (kms_rewrap_key between two pkcs11: keys) decrypts and
 * encrypts in the backend: the plaintext data key passes through this
 * process's memory (wiped after), as for any move between providers.
 *
 * Sessions: the module is dlopen'ed in the backend on first use and
 * initialised with CKF_OS_LOCKING_OK; the backend keeps one session, logged
 * in once, on the token of the last reference used (another token closes
 * it and opens one there).  A call that fails because the token was reset
 * (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED,
 * CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN) closes the session and is
 * tried once more on a new one.  A wrong PIN (42501) is never retried and
 * never shown.  C_Finalize runs at backend exit.
 *
 * Interrupts: a call into a local PKCS#11 module cannot be interrupted; the
 * backend serves interrupts (statement_timeout, pg_cancel_backend) between
 * module calls.  An interrupt that leaves an operation half done (between
 * C_*Init and its final call) makes the next use reopen the session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dlfcn.h>

#include <p11-kit/pkcs11.h>

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/ipc.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

#include "aead.h"
#include "guc.h"
#include "kms.h"
#include "kms_common.h"
#include "kms_pkcs11.h"
#include "pgck_errcodes.h"
#include "pkcs11_uri.h"

#define PIN_MAX_LEN		256

/* Backend-local module and session state. */
static void *module_handle = NULL;
static CK_FUNCTION_LIST_PTR p11 = NULL;
static char module_loaded_path[MAXPGPATH];
static bool exit_registered = false;
static bool session_open = false;
static CK_SESSION_HANDLE session;
static CK_SLOT_ID session_slot;
static bool op_pending = false;	/* a C_*Init may lack its final call */
static const char *last_call = "";

/* Serve interrupts, then call the module (never between a PIN read and C_Login). */
static inline void
before_call(const char *fn)
{
	CHECK_FOR_INTERRUPTS();
	last_call = fn;
}

#define P11(fn, args) (before_call(#fn), p11->fn args)

/* ------------------------------------------------------------ errors */

static const char *
ckr_name(CK_RV rv)
{
	switch (rv)
	{
#define N(x) case x: return #x
			N(CKR_OK);
			N(CKR_CANCEL);
			N(CKR_HOST_MEMORY);
			N(CKR_SLOT_ID_INVALID);
			N(CKR_GENERAL_ERROR);
			N(CKR_FUNCTION_FAILED);
			N(CKR_ARGUMENTS_BAD);
			N(CKR_ATTRIBUTE_SENSITIVE);
			N(CKR_ATTRIBUTE_TYPE_INVALID);
			N(CKR_DATA_INVALID);
			N(CKR_DATA_LEN_RANGE);
			N(CKR_DEVICE_ERROR);
			N(CKR_DEVICE_MEMORY);
			N(CKR_DEVICE_REMOVED);
			N(CKR_ENCRYPTED_DATA_INVALID);
			N(CKR_ENCRYPTED_DATA_LEN_RANGE);
			N(CKR_FUNCTION_CANCELED);
			N(CKR_FUNCTION_NOT_SUPPORTED);
			N(CKR_KEY_HANDLE_INVALID);
			N(CKR_KEY_SIZE_RANGE);
			N(CKR_KEY_TYPE_INCONSISTENT);
			N(CKR_KEY_FUNCTION_NOT_PERMITTED);
			N(CKR_MECHANISM_INVALID);
			N(CKR_MECHANISM_PARAM_INVALID);
			N(CKR_OBJECT_HANDLE_INVALID);
			N(CKR_OPERATION_ACTIVE);
			N(CKR_OPERATION_NOT_INITIALIZED);
			N(CKR_PIN_INCORRECT);
			N(CKR_PIN_INVALID);
			N(CKR_PIN_LEN_RANGE);
			N(CKR_PIN_EXPIRED);
			N(CKR_PIN_LOCKED);
			N(CKR_SESSION_CLOSED);
			N(CKR_SESSION_COUNT);
			N(CKR_SESSION_HANDLE_INVALID);
			N(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
			N(CKR_TOKEN_NOT_PRESENT);
			N(CKR_TOKEN_NOT_RECOGNIZED);
			N(CKR_USER_ALREADY_LOGGED_IN);
			N(CKR_USER_NOT_LOGGED_IN);
			N(CKR_USER_PIN_NOT_INITIALIZED);
			N(CKR_USER_TYPE_INVALID);
			N(CKR_BUFFER_TOO_SMALL);
			N(CKR_CRYPTOKI_NOT_INITIALIZED);
			N(CKR_CRYPTOKI_ALREADY_INITIALIZED);
#undef N
	}
	return NULL;
}

static void
p11_error(CK_RV rv, const char *key_ref)
{
	const char *name = ckr_name(rv);
	char		code[32];

	if (name == NULL)
	{
		snprintf(code, sizeof(code), "CKR 0x%08lX", (unsigned long) rv);
		name = code;
	}
	/*
	 * A blob the token will not decrypt.  SoftHSM2 2.6 reports a GCM tag
	 * mismatch as CKR_GENERAL_ERROR from C_Decrypt (measured): after a
	 * C_DecryptInit that succeeded on a key that passed find_key's checks,
	 * a failing C_Decrypt of AES-GCM means the blob did not authenticate.
	 */
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
		(strcmp(last_call, "C_Decrypt") == 0 &&
		 (rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED)))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("wrapped data key does not unwrap with PKCS#11 key \"pkcs11:%s\"", key_ref),
				 errdetail("The wrapped key or its context was changed, or it was wrapped by another key."),
				 errdetail_internal("PKCS#11 error %s in %s.", name, last_call)));
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_KMS_FAILURE),
			 errmsg("PKCS#11 operation on key \"pkcs11:%s\" failed", key_ref),
			 errdetail_internal("PKCS#11 error %s in %s.", name, last_call)));
}

static bool
is_reset(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
		rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
		rv == CKR_USER_NOT_LOGGED_IN;
}

/* ------------------------------------------------------------ module and session */

static void
drop_session(void)
{
	if (session_open && p11 != NULL)
		(void) p11->C_CloseSession(session);
	session_open = false;
	op_pending = false;
}

static void
pkcs11_atexit(int code, Datum arg)
{
	if (p11 != NULL)
	{
		drop_session();
		(void) p11->C_Finalize(NULL);
		p11 = NULL;
	}
}

static void
unload_module(void)
{
	pkcs11_atexit(0, (Datum) 0);
	if (module_handle != NULL)
		dlclose(module_handle);
	module_handle = NULL;
	module_loaded_path[0] = '\0';
}

static void
ensure_module(void)
{
	CK_RV		(*get_list) (CK_FUNCTION_LIST_PTR_PTR);
	CK_C_INITIALIZE_ARGS init_args;
	CK_RV		rv;

	if (pgck_pkcs11_module == NULL || pgck_pkcs11_module[0] == '\0')
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("pgcrypt_kms.pkcs11_module is not set"),
				 errhint("A superuser sets it to the absolute path of the token's PKCS#11 module to use pkcs11: keys.")));
	if (p11 != NULL && strcmp(module_loaded_path, pgck_pkcs11_module) == 0)
		return;
	unload_module();
	if (strlen(pgck_pkcs11_module) >= sizeof(module_loaded_path))
		elog(ERROR, "PKCS#11 module path too long");

	module_handle = dlopen(pgck_pkcs11_module, RTLD_NOW | RTLD_LOCAL);
	if (module_handle == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not load the configured PKCS#11 module"),
				 errdetail_log("pgcrypt_kms.pkcs11_module is \"%s\": %s.", pgck_pkcs11_module, dlerror())));
	get_list = (CK_RV (*) (CK_FUNCTION_LIST_PTR_PTR)) dlsym(module_handle, "C_GetFunctionList");
	if (get_list == NULL || get_list(&p11) != CKR_OK || p11 == NULL)
	{
		p11 = NULL;
		dlclose(module_handle);
		module_handle = NULL;
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("the configured PKCS#11 module has no usable C_GetFunctionList"),
				 errdetail_log("pgcrypt_kms.pkcs11_module is \"%s\".", pgck_pkcs11_module)));
	}
	memset(&init_args, 0, sizeof(init_args));
	init_args.flags = CKF_OS_LOCKING_OK;
	rv = p11->C_Initialize(&init_args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
	{
		p11 = NULL;
		dlclose(module_handle);
		module_handle = NULL;
		last_call = "C_Initialize";
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not initialise the configured PKCS#11 module"),
				 errdetail_internal("PKCS#11 error %s in C_Initialize.",
									ckr_name(rv) ? ckr_name(rv) : "(unknown)")));
	}
	strlcpy(module_loaded_path, pgck_pkcs11_module, sizeof(module_loaded_path));
	session_open = false;
	if (!exit_registered)
	{
		on_proc_exit(pkcs11_atexit, (Datum) 0);
		exit_registered = true;
	}
}

/* Does a space-padded PKCS#11 info field equal want? */
static bool
field_eq(const CK_UTF8CHAR *field, size_t fieldlen, const char *want)
{
	size_t		n = strlen(want);
	size_t		i;

	if (n > fieldlen || memcmp(field, want, n) != 0)
		return false;
	for (i = n; i < fieldlen; i++)
		if (field[i] != ' ')
			return false;
	return true;
}

/* The slot of the one token the URI names; ereports 42704 / 22023. */
static CK_RV
find_slot(const PgckP11Uri *u, const char *key_ref, CK_SLOT_ID *slot_out)
{
	CK_ULONG	n = 0;
	CK_SLOT_ID *slots;
	CK_RV		rv;
	CK_ULONG	i;
	int			found = 0;

	if (u->library_manufacturer || u->library_description || u->library_version)
	{
		CK_INFO		info;

		rv = P11(C_GetInfo, (&info));
		if (rv != CKR_OK)
			return rv;
		if ((u->library_manufacturer && !field_eq(info.manufacturerID, sizeof(info.manufacturerID), u->library_manufacturer)) ||
			(u->library_description && !field_eq(info.libraryDescription, sizeof(info.libraryDescription), u->library_description)) ||
			(u->library_version && (info.libraryVersion.major != u->library_version_major ||
									info.libraryVersion.minor != u->library_version_minor)))
			ereport(ERROR,
					(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
					 errmsg("the configured PKCS#11 module does not match key \"pkcs11:%s\"", key_ref)));
	}
	rv = P11(C_GetSlotList, (CK_TRUE, NULL, &n));
	if (rv != CKR_OK)
		return rv;
	slots = palloc0(sizeof(CK_SLOT_ID) * (n + 1));
	rv = P11(C_GetSlotList, (CK_TRUE, slots, &n));
	if (rv != CKR_OK)
		return rv;
	for (i = 0; i < n; i++)
	{
		CK_TOKEN_INFO ti;

		if (u->slot_id && slots[i] != u->slot_id_value)
			continue;
		if (u->slot_description || u->slot_manufacturer)
		{
			CK_SLOT_INFO si;

			rv = P11(C_GetSlotInfo, (slots[i], &si));
			if (rv != CKR_OK)
				return rv;
			if ((u->slot_description && !field_eq(si.slotDescription, sizeof(si.slotDescription), u->slot_description)) ||
				(u->slot_manufacturer && !field_eq(si.manufacturerID, sizeof(si.manufacturerID), u->slot_manufacturer)))
				continue;
		}
		rv = P11(C_GetTokenInfo, (slots[i], &ti));
		if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED)
			continue;
		if (rv != CKR_OK)
			return rv;
		if ((u->token && !field_eq(ti.label, sizeof(ti.label), u->token)) ||
			(u->manufacturer && !field_eq(ti.manufacturerID, sizeof(ti.manufacturerID), u->manufacturer)) ||
			(u->model && !field_eq(ti.model, sizeof(ti.model), u->model)) ||
			(u->serial && !field_eq(ti.serialNumber, sizeof(ti.serialNumber), u->serial)))
			continue;
		if (!(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;
		*slot_out = slots[i];
		found++;
	}
	pfree(slots);
	if (found == 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
				 errmsg("no PKCS#11 token matches key \"pkcs11:%s\"", key_ref)));
	if (found > 1)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("more than one PKCS#11 token matches key \"pkcs11:%s\"", key_ref),
				 errhint("Add token=, serial= or slot-id= to the reference.")));
	return CKR_OK;
}

/* Open and log in a session on slot; the PIN is read, used once, wiped. */
static CK_RV
open_session(CK_SLOT_ID slot)
{
	CK_RV		rv;
	char	   *pin;
	size_t		len;

	if (pgck_pkcs11_pin_file == NULL || pgck_pkcs11_pin_file[0] == '\0')
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("pgcrypt_kms.pkcs11_pin_file is not set"),
				 errhint("A superuser sets it to the absolute path of a file, mode 0600, holding the token's user PIN.")));
	rv = P11(C_OpenSession, (slot, CKF_SERIAL_SESSION, NULL, NULL, &session));
	if (rv != CKR_OK)
		return rv;
	session_open = true;
	session_slot = slot;

	/* nothing between reading and wiping the PIN can raise an error */
	pin = pgck_kms_read_secret_file(pgck_pkcs11_pin_file, PIN_MAX_LEN, PGCK_SECRET_PRIVATE,
									"PKCS#11 PIN file");
	len = strlen(pin);
	while (len > 0 && (pin[len - 1] == '\n' || pin[len - 1] == '\r'))
		pin[--len] = '\0';
	last_call = "C_Login";
	rv = p11->C_Login(session, CKU_USER, (CK_UTF8CHAR_PTR) pin, len);
	pgck_kms_wipe_pfree(pin);

	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE ||
		rv == CKR_PIN_EXPIRED || rv == CKR_PIN_LOCKED)
	{
		drop_session();
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_PRIVILEGE),
				 errmsg("the PKCS#11 token refused the PIN of the configured PIN file"),
				 errdetail_internal("PKCS#11 error %s in C_Login.", ckr_name(rv))));
	}
	return rv;
}

/* A session on the token of u, logged in. */
static CK_RV
ensure_session(const PgckP11Uri *u, const char *key_ref)
{
	CK_SLOT_ID	slot = 0;
	CK_RV		rv;

	if (session_open && op_pending)
		drop_session();
	rv = find_slot(u, key_ref, &slot);
	if (rv != CKR_OK)
		return rv;
	if (session_open && session_slot == slot)
		return CKR_OK;
	drop_session();
	return open_session(slot);
}

/* Find the one secret key u names and check that it cannot leave the token. */
static CK_RV
find_key(const PgckP11Uri *u, const char *key_ref, CK_OBJECT_HANDLE *key)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE tmpl[3];
	CK_ULONG	nt = 0;
	CK_OBJECT_HANDLE found[2];
	CK_ULONG	nfound = 0;
	CK_RV		rv;
	CK_KEY_TYPE ktype = 0;
	CK_BBOOL	enc = CK_FALSE,
				dec = CK_FALSE,
				extractable = CK_TRUE,
				sensitive = CK_FALSE;
	CK_ATTRIBUTE attrs[5];

	tmpl[nt].type = CKA_CLASS;
	tmpl[nt].pValue = &cls;
	tmpl[nt++].ulValueLen = sizeof(cls);
	if (u->object)
	{
		tmpl[nt].type = CKA_LABEL;
		tmpl[nt].pValue = (void *) u->object;
		tmpl[nt++].ulValueLen = strlen(u->object);
	}
	if (u->id)
	{
		tmpl[nt].type = CKA_ID;
		tmpl[nt].pValue = (void *) u->id;
		tmpl[nt++].ulValueLen = u->id_len;
	}
	op_pending = true;
	rv = P11(C_FindObjectsInit, (session, tmpl, nt));
	if (rv != CKR_OK)
		return rv;
	rv = P11(C_FindObjects, (session, found, 2, &nfound));
	if (rv != CKR_OK)
		return rv;
	rv = P11(C_FindObjectsFinal, (session));
	if (rv != CKR_OK)
		return rv;
	op_pending = false;
	if (nfound == 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_UNKNOWN_KEY),
				 errmsg("PKCS#11 key \"pkcs11:%s\" does not exist", key_ref),
				 errdetail("The token has no secret key with that label and id visible to the PIN's user.")));
	if (nfound > 1)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("more than one PKCS#11 key matches \"pkcs11:%s\"", key_ref),
				 errhint("Add id= to the reference, or give the keys distinct labels.")));

	/* only non-secret attributes: never CKA_VALUE */
	attrs[0].type = CKA_KEY_TYPE;
	attrs[0].pValue = &ktype;
	attrs[0].ulValueLen = sizeof(ktype);
	attrs[1].type = CKA_ENCRYPT;
	attrs[1].pValue = &enc;
	attrs[1].ulValueLen = sizeof(enc);
	attrs[2].type = CKA_DECRYPT;
	attrs[2].pValue = &dec;
	attrs[2].ulValueLen = sizeof(dec);
	attrs[3].type = CKA_EXTRACTABLE;
	attrs[3].pValue = &extractable;
	attrs[3].ulValueLen = sizeof(extractable);
	attrs[4].type = CKA_SENSITIVE;
	attrs[4].pValue = &sensitive;
	attrs[4].ulValueLen = sizeof(sensitive);
	rv = P11(C_GetAttributeValue, (session, found[0], attrs, lengthof(attrs)));
	if (rv != CKR_OK)
		return rv;
	if (ktype != CKK_AES)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("PKCS#11 key \"pkcs11:%s\" is not an AES key", key_ref)));
	if (extractable != CK_FALSE || sensitive != CK_TRUE)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("PKCS#11 key \"pkcs11:%s\" can be exported from its token", key_ref),
				 errdetail("A master key must have CKA_EXTRACTABLE false and CKA_SENSITIVE true; this one has CKA_EXTRACTABLE %s and CKA_SENSITIVE %s.",
						   extractable ? "true" : "false", sensitive ? "true" : "false"),
				 errhint("Create a new key inside the token with CKA_EXTRACTABLE false and CKA_SENSITIVE true.")));
	if (enc != CK_TRUE || dec != CK_TRUE)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KEY_STATE),
				 errmsg("PKCS#11 key \"pkcs11:%s\" may not encrypt and decrypt", key_ref),
				 errdetail("A master key needs CKA_ENCRYPT and CKA_DECRYPT true.")));
	*key = found[0];
	return CKR_OK;
}

/* ------------------------------------------------------------ operations */

typedef struct P11Op
{
	const char *kms_context;
	/* wrap */
	const uint8 *dek;
	size_t		key_len;
	bytea	   *out;
	/* unwrap */
	const uint8 *blob;
	uint8	   *dek_out;
} P11Op;

typedef CK_RV (*P11Step) (CK_OBJECT_HANDLE key, P11Op *op);

static void
gcm_params(CK_GCM_PARAMS *gcm, CK_MECHANISM *mech, const uint8 *iv, const char *aad, size_t aad_len)
{
	memset(gcm, 0, sizeof(*gcm));
	gcm->pIv = (CK_BYTE_PTR) iv;
	gcm->ulIvLen = PGCK_P11_IV_LEN;
	gcm->ulIvBits = PGCK_P11_IV_LEN * 8;
	gcm->pAAD = (CK_BYTE_PTR) aad;
	gcm->ulAADLen = aad_len;
	gcm->ulTagBits = PGCK_P11_TAG_LEN * 8;
	mech->mechanism = CKM_AES_GCM;
	mech->pParameter = gcm;
	mech->ulParameterLen = sizeof(*gcm);
}

/* AAD: the blob header, then the KMS context ("{}" when none); palloc'd. */
static char *
blob_aad(const uint8 *hdr, const char *kms_context, size_t *len)
{
	const char *ctx = kms_context ? kms_context : "{}";
	size_t		clen = strlen(ctx);
	char	   *aad = palloc(PGCK_P11_HDR_LEN + clen + 1);

	memcpy(aad, hdr, PGCK_P11_HDR_LEN);
	memcpy(aad + PGCK_P11_HDR_LEN, ctx, clen + 1);
	*len = PGCK_P11_HDR_LEN + clen;
	return aad;
}

static CK_RV
step_wrap(CK_OBJECT_HANDLE key, P11Op *op)
{
	bytea	   *out = palloc(VARHDRSZ + PGCK_P11_BLOB_LEN(op->key_len));
	uint8	   *p = (uint8 *) VARDATA(out);
	uint8	   *iv = p + PGCK_P11_HDR_LEN;
	size_t		aad_len;
	char	   *aad;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech;
	CK_ULONG	outlen = op->key_len + PGCK_P11_TAG_LEN;
	CK_RV		rv;

	SET_VARSIZE(out, VARHDRSZ + PGCK_P11_BLOB_LEN(op->key_len));
	p[0] = PGCK_P11_BLOB_MAGIC0;
	p[1] = PGCK_P11_BLOB_MAGIC1;
	p[2] = PGCK_P11_BLOB_VERSION;
	p[3] = PGCK_P11_MECH_AES_GCM;
	p[4] = PGCK_P11_IV_LEN;
	if (!pgck_random_bytes(iv, PGCK_P11_IV_LEN))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not generate a random IV")));
	aad = blob_aad(p, op->kms_context, &aad_len);
	gcm_params(&gcm, &mech, iv, aad, aad_len);
	op_pending = true;
	rv = P11(C_EncryptInit, (session, &mech, key));
	if (rv == CKR_OK)
		rv = P11(C_Encrypt, (session, (CK_BYTE_PTR) op->dek, op->key_len,
							 iv + PGCK_P11_IV_LEN, &outlen));
	if (rv != CKR_OK)
		return rv;
	op_pending = false;
	pfree(aad);
	if (outlen != op->key_len + PGCK_P11_TAG_LEN)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
				 errmsg("the PKCS#11 module returned %lu bytes of AES-GCM output for %zu bytes of input",
						(unsigned long) outlen, op->key_len)));
	op->out = out;
	return CKR_OK;
}

static CK_RV
step_unwrap(CK_OBJECT_HANDLE key, P11Op *op)
{
	uint8		plain[PGCK_DEK_LEN + PGCK_P11_TAG_LEN];
	CK_ULONG	outlen = sizeof(plain);
	size_t		aad_len;
	char	   *aad = blob_aad(op->blob, op->kms_context, &aad_len);
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech;
	CK_RV		rv;

	gcm_params(&gcm, &mech, op->blob + PGCK_P11_HDR_LEN, aad, aad_len);
	op_pending = true;
	rv = P11(C_DecryptInit, (session, &mech, key));
	if (rv == CKR_OK)
		rv = P11(C_Decrypt, (session, (CK_BYTE_PTR) op->blob + PGCK_P11_HDR_LEN + PGCK_P11_IV_LEN,
							 op->key_len + PGCK_P11_TAG_LEN, plain, &outlen));
	if (rv != CKR_BUFFER_TOO_SMALL)
		op_pending = false;		/* C_Decrypt ends the operation but for that */
	pfree(aad);
	if (rv == CKR_OK && outlen != op->key_len)
	{
		pgck_wipe(plain, sizeof(plain));
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_PROTOCOL),
				 errmsg("the PKCS#11 module unwrapped a data key of %lu bytes, not %zu",
						(unsigned long) outlen, op->key_len)));
	}
	if (rv == CKR_OK)
		memcpy(op->dek_out, plain, op->key_len);
	pgck_wipe(plain, sizeof(plain));
	return rv;
}

static CK_RV
step_none(CK_OBJECT_HANDLE key, P11Op *op)
{
	return CKR_OK;
}

/*
 * Parse a reference (rest after "pkcs11:"), refusing what this provider
 * cannot honour.  Errors show the URI's path only: a query part could hold
 * a PIN (pin-value), which must never reach a message or the log.
 */
static void
parse_ref(const char *key_ref, PgckP11Uri *u)
{
	char	   *uri = psprintf("pkcs11:%s", key_ref);
	size_t		buflen = strlen(uri) + 1;
	char	   *buf = palloc(buflen);
	char	   *shown = pstrdup(uri);
	const char *err;

	if (strchr(shown, '?') != NULL)
		strcpy(strchr(shown, '?'), "?...");
	if (!pgck_p11_uri_parse(uri, u, buf, buflen, &err))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid PKCS#11 key reference \"%s\"", shown),
				 errdetail("%s", err),
				 errhint("Use an RFC 7512 path such as \"pkcs11:token=pg;object=master\".")));
	if (u->pin_value || u->pin_source || u->module_name || u->module_path)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("PKCS#11 key reference \"%s\" names a module or a PIN", shown),
				 errdetail("The module is the setting pgcrypt_kms.pkcs11_module and the PIN is read from the file named by pgcrypt_kms.pkcs11_pin_file; a key reference never carries them.")));
	if (u->n_vendor > 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid PKCS#11 key reference \"%s\"", shown),
				 errdetail("Vendor-specific attributes are not supported.")));
	if (u->type && strcmp(u->type, "secret-key") != 0)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid PKCS#11 key reference \"%s\"", shown),
				 errdetail("A master key is a secret key: type must be secret-key when given.")));
	if (u->object == NULL && u->id == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid PKCS#11 key reference \"%s\"", shown),
				 errdetail("The reference names no key: give object= (the key's label) or id=.")));
	if (strchr(key_ref, '?') != NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid PKCS#11 key reference \"%s\"", shown),
				 errdetail("A key reference has no query part.")));
	pfree(shown);
	pfree(uri);
}

/*
 * Run one provider call: module, session, key, then step; once more on a
 * fresh session after a token reset.  Counts the call in kms_cache_stats().
 */
static void
p11_run(const char *key_ref, PgckKmsOp stat_op, P11Step step, P11Op *op)
{
	PgckP11Uri	u;
	instr_time	start,
				end;
	int			attempt;

	parse_ref(key_ref, &u);
	INSTR_TIME_SET_CURRENT(start);
	PG_TRY();
	{
		for (attempt = 1;; attempt++)
		{
			CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
			CK_RV		rv;

			ensure_module();
			rv = ensure_session(&u, key_ref);
			if (rv == CKR_OK)
				rv = find_key(&u, key_ref, &key);
			if (rv == CKR_OK)
			{
				CHECK_FOR_INTERRUPTS();
				rv = step(key, op);
			}
			if (rv == CKR_OK)
				break;
			if (is_reset(rv) && attempt == 1)
			{
				ereport(LOG,
						(errmsg("pgcrypt_kms: PKCS#11 session lost (%s in %s), opening a new one",
								ckr_name(rv), last_call),
						 errhidestmt(true)));
				drop_session();
				continue;
			}
			p11_error(rv, key_ref);
		}
	}
	PG_CATCH();
	{
		INSTR_TIME_SET_CURRENT(end);
		INSTR_TIME_SUBTRACT(end, start);
		pgck_stats_kms_call(stat_op, INSTR_TIME_GET_MILLISEC(end), false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, start);
	pgck_stats_kms_call(stat_op, INSTR_TIME_GET_MILLISEC(end), true);
}

static void
check_key_len(size_t key_len)
{
	if (key_len == 0 || key_len > PGCK_DEK_LEN)
		elog(ERROR, "unexpected data key length %zu", key_len);
}

static pg_noinline bytea *
pkcs11_wrap_data_key(const char *key_ref, const char *kms_context,
					 const uint8 *dek, size_t key_len, char **key_arn_out)
{
	P11Op		op = {0};

	*key_arn_out = NULL;
	check_key_len(key_len);
	op.kms_context = kms_context;
	op.dek = dek;
	op.key_len = key_len;
	p11_run(key_ref, PGCK_OP_ENCRYPT, step_wrap, &op);
	return op.out;
}

static bytea *
pkcs11_generate_data_key(const char *key_ref, const char *kms_context,
						 uint8 *dek_out, size_t key_len, char **key_arn_out)
{
	P11Op		op = {0};

	*key_arn_out = NULL;
	check_key_len(key_len);
	if (!pgck_random_bytes(dek_out, key_len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not generate a data key")));
	op.kms_context = kms_context;
	op.dek = dek_out;
	op.key_len = key_len;
	p11_run(key_ref, PGCK_OP_GENERATE_DATA_KEY, step_wrap, &op);
	return op.out;
}

static pg_noinline void
pkcs11_decrypt_data_key(const char *key_ref, const char *kms_context,
						const bytea *wrapped, uint8 *dek_out, size_t key_len,
						char **key_arn_out)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(wrapped);
	size_t		len = VARSIZE_ANY_EXHDR(wrapped);
	P11Op		op = {0};

	*key_arn_out = NULL;
	check_key_len(key_len);
	if (len != PGCK_P11_BLOB_LEN(key_len) || p[0] != PGCK_P11_BLOB_MAGIC0 ||
		p[1] != PGCK_P11_BLOB_MAGIC1 || p[2] != PGCK_P11_BLOB_VERSION ||
		p[3] != PGCK_P11_MECH_AES_GCM || p[4] != PGCK_P11_IV_LEN)
	{
		pgck_stats_kms_call(PGCK_OP_DECRYPT, 0, false);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("wrapped data key does not unwrap with PKCS#11 key \"pkcs11:%s\"", key_ref),
				 errdetail("It is not a version %d pkcs11: provider blob of a %zu-byte key (%zu bytes, version %d).",
						   PGCK_P11_BLOB_VERSION, key_len, len, len > 2 ? p[2] : -1)));
	}
	op.kms_context = kms_context;
	op.blob = p;
	op.key_len = key_len;
	op.dek_out = dek_out;
	p11_run(key_ref, PGCK_OP_DECRYPT, step_unwrap, &op);
}

static bytea *
pkcs11_reencrypt_data_key(const char *old_key_ref, const char *new_key_ref,
						  const char *kms_context, const bytea *wrapped, char **key_arn_out)
{
	uint8		dek[PGCK_DEK_LEN];
	bytea	   *volatile out = NULL;
	char	   *no_arn;

	*key_arn_out = NULL;
	/* decrypt and encrypt in the backend: the plaintext key passes through here */
	PG_TRY();
	{
		pkcs11_decrypt_data_key(old_key_ref, kms_context, wrapped, dek, sizeof(dek), &no_arn);
		out = pkcs11_wrap_data_key(new_key_ref, kms_context, dek, sizeof(dek), &no_arn);
		pgck_stats_kms_call(PGCK_OP_REENCRYPT, 0, true);
	}
	PG_CATCH();
	{
		pgck_wipe(dek, sizeof(dek));
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgck_wipe(dek, sizeof(dek));
	return out;
}

static void
pkcs11_check_key(const char *key_ref)
{
	P11Op		op = {0};

	p11_run(key_ref, PGCK_OP_DESCRIBE_KEY, step_none, &op);
}

const PgckKmsProvider pgck_kms_pkcs11_provider = {
	.scheme = "pkcs11",
	.generate_data_key = pkcs11_generate_data_key,
	.decrypt_data_key = pkcs11_decrypt_data_key,
	.reencrypt_data_key = pkcs11_reencrypt_data_key,
	.wrap_data_key = pkcs11_wrap_data_key,
	.check_key = pkcs11_check_key,
};

void
pgck_kms_pkcs11_init(void)
{
	/* nothing to set up: the module is loaded by the first call that needs it */
}
