/*
 * p11_logwrap.c: a PKCS#11 module for test/checks/pkcs11_softhsm.sh that
 * logs the calls it gets and forwards them to the real module.
 *
 * Environment (of the server that loads it):
 *   PGCK_P11_REAL     the real module (SoftHSM2's libsofthsm2.so)
 *   PGCK_P11_LOG      file the calls are appended to, one line each:
 *                     "<pid> C_Name details"; never a PIN (only its length)
 *   PGCK_P11_TRIGGER  when this file exists at a call, it is removed and
 *                     the real module's C_CloseAllSessions runs on the
 *                     last slot opened before the call is forwarded: the
 *                     caller's session is really gone, as after a token
 *                     reset ("RESET" is logged); while "<trigger>.slow"
 *                     exists, every call first sleeps 300 ms (a slow HSM)
 *
 * Every function that could hand out key material (C_GetAttributeValue,
 * C_WrapKey, C_CopyObject, C_SetAttributeValue, C_DigestKey, C_DeriveKey)
 * is logged with its arguments' attribute types / key handles; the rest of
 * what a provider uses is logged by name; anything else is forwarded
 * unlogged.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST wrap;
static CK_SLOT_ID last_slot;

static void
logf_(const char *fmt,...)
{
	const char *path = getenv("PGCK_P11_LOG");
	FILE	   *f;
	va_list		ap;

	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	fprintf(f, "%d ", (int) getpid());
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

static void
maybe_reset(void)
{
	const char *t = getenv("PGCK_P11_TRIGGER");
	char		slow[1024];

	/* "<trigger>.slow" exists: every call takes 300 ms (a slow HSM) */
	if (t != NULL && snprintf(slow, sizeof(slow), "%s.slow", t) < (int) sizeof(slow) &&
		access(slow, F_OK) == 0)
		usleep(300 * 1000);

	if (t != NULL && access(t, F_OK) == 0 && unlink(t) == 0)
	{
		CK_RV		rv = real->C_CloseAllSessions(last_slot);

		logf_("RESET C_CloseAllSessions(%lu) = 0x%lx", (unsigned long) last_slot, (unsigned long) rv);
	}
}

#define PRE(name) maybe_reset()
static CK_RV
RET(const char *name, CK_RV rv)
{
	logf_("%s = 0x%lx", name, (unsigned long) rv);
	return rv;
}

static CK_RV
w_Initialize(void *a)
{
	CK_RV		rv = real->C_Initialize(a);
	CK_C_INITIALIZE_ARGS *args = a;

	logf_("C_Initialize flags=0x%lx = 0x%lx", args ? (unsigned long) args->flags : 0UL, (unsigned long) rv);
	return rv;
}
static CK_RV w_Finalize(void *a) { return RET("C_Finalize", real->C_Finalize(a)); }
static CK_RV w_GetInfo(CK_INFO_PTR i) { PRE(); return RET("C_GetInfo", real->C_GetInfo(i)); }
static CK_RV w_GetSlotList(CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n) { PRE(); return RET("C_GetSlotList", real->C_GetSlotList(p, l, n)); }
static CK_RV w_GetSlotInfo(CK_SLOT_ID s, CK_SLOT_INFO_PTR i) { PRE(); return RET("C_GetSlotInfo", real->C_GetSlotInfo(s, i)); }
static CK_RV w_GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO_PTR i) { PRE(); return RET("C_GetTokenInfo", real->C_GetTokenInfo(s, i)); }
static CK_RV
w_OpenSession(CK_SLOT_ID s, CK_FLAGS fl, void *app, CK_NOTIFY n, CK_SESSION_HANDLE_PTR h)
{
	PRE();
	last_slot = s;
	return RET("C_OpenSession", real->C_OpenSession(s, fl, app, n, h));
}
static CK_RV w_CloseSession(CK_SESSION_HANDLE h) { return RET("C_CloseSession", real->C_CloseSession(h)); }
static CK_RV w_CloseAllSessions(CK_SLOT_ID s) { return RET("C_CloseAllSessions", real->C_CloseAllSessions(s)); }
static CK_RV
w_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	CK_RV		rv;

	PRE();
	rv = real->C_Login(h, u, pin, len);
	logf_("C_Login user=%lu pinlen=%lu = 0x%lx", (unsigned long) u, (unsigned long) len, (unsigned long) rv);
	return rv;
}
static CK_RV w_Logout(CK_SESSION_HANDLE h) { return RET("C_Logout", real->C_Logout(h)); }
static CK_RV w_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) { PRE(); return RET("C_FindObjectsInit", real->C_FindObjectsInit(h, t, n)); }
static CK_RV w_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG m, CK_ULONG_PTR n) { PRE(); return RET("C_FindObjects", real->C_FindObjects(h, o, m, n)); }
static CK_RV w_FindObjectsFinal(CK_SESSION_HANDLE h) { PRE(); return RET("C_FindObjectsFinal", real->C_FindObjectsFinal(h)); }
static CK_RV
w_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	char		types[512] = "";
	CK_ULONG	i;
	CK_RV		rv;

	PRE();
	for (i = 0; i < n && strlen(types) < sizeof(types) - 16; i++)
		snprintf(types + strlen(types), sizeof(types) - strlen(types), "%s0x%lx", i ? "," : "", (unsigned long) t[i].type);
	rv = real->C_GetAttributeValue(h, o, t, n);
	logf_("C_GetAttributeValue object=%lu types=%s = 0x%lx", (unsigned long) o, types, (unsigned long) rv);
	return rv;
}
static CK_RV
w_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	PRE();
	return RET("C_SetAttributeValue", real->C_SetAttributeValue(h, o, t, n));
}
static CK_RV
w_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR no)
{
	PRE();
	return RET("C_CopyObject", real->C_CopyObject(h, o, t, n, no));
}
static void
log_mech(const char *name, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	char		iv[64] = "-";
	unsigned long aadlen = 0,
				tagbits = 0;

	if (m && m->mechanism == CKM_AES_GCM && m->pParameter && m->ulParameterLen == sizeof(CK_GCM_PARAMS))
	{
		CK_GCM_PARAMS *g = m->pParameter;
		CK_ULONG	i;

		iv[0] = 0;
		for (i = 0; i < g->ulIvLen && i < 24; i++)
			sprintf(iv + 2 * i, "%02x", g->pIv[i]);
		aadlen = g->ulAADLen;
		tagbits = g->ulTagBits;
	}
	logf_("%s mech=0x%lx key=%lu iv=%s aadlen=%lu tagbits=%lu", name, m ? (unsigned long) m->mechanism : 0UL,
		  (unsigned long) k, iv, aadlen, tagbits);
}
static CK_RV w_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { PRE(); log_mech("C_EncryptInit", m, k); return RET("C_EncryptInit", real->C_EncryptInit(h, m, k)); }
static CK_RV w_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol) { PRE(); return RET("C_Encrypt", real->C_Encrypt(h, d, l, o, ol)); }
static CK_RV w_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) { PRE(); log_mech("C_DecryptInit", m, k); return RET("C_DecryptInit", real->C_DecryptInit(h, m, k)); }
static CK_RV w_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG l, CK_BYTE_PTR o, CK_ULONG_PTR ol) { PRE(); return RET("C_Decrypt", real->C_Decrypt(h, d, l, o, ol)); }
static CK_RV
w_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE k, CK_BYTE_PTR o, CK_ULONG_PTR ol)
{
	PRE();
	logf_("C_WrapKey wrapping=%lu key=%lu", (unsigned long) wk, (unsigned long) k);
	return RET("C_WrapKey", real->C_WrapKey(h, m, wk, k, o, ol));
}
static CK_RV w_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k) { PRE(); return RET("C_DigestKey", real->C_DigestKey(h, k)); }
static CK_RV
w_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k)
{
	PRE();
	return RET("C_DeriveKey", real->C_DeriveKey(h, m, b, t, n, k));
}
static CK_RV w_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR r, CK_ULONG l) { PRE(); return RET("C_GenerateRandom", real->C_GenerateRandom(h, r, l)); }

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	if (real == NULL)
	{
		const char *path = getenv("PGCK_P11_REAL");
		void	   *h = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
		CK_RV		(*gfl) (CK_FUNCTION_LIST_PTR_PTR);
		CK_RV		rv;

		if (h == NULL || (gfl = (CK_RV (*) (CK_FUNCTION_LIST_PTR_PTR)) dlsym(h, "C_GetFunctionList")) == NULL)
			return CKR_GENERAL_ERROR;
		if ((rv = gfl(&real)) != CKR_OK)
			return rv;
		wrap = *real;
		wrap.C_Initialize = w_Initialize;
		wrap.C_Finalize = w_Finalize;
		wrap.C_GetInfo = w_GetInfo;
		wrap.C_GetSlotList = w_GetSlotList;
		wrap.C_GetSlotInfo = w_GetSlotInfo;
		wrap.C_GetTokenInfo = w_GetTokenInfo;
		wrap.C_OpenSession = w_OpenSession;
		wrap.C_CloseSession = w_CloseSession;
		wrap.C_CloseAllSessions = w_CloseAllSessions;
		wrap.C_Login = w_Login;
		wrap.C_Logout = w_Logout;
		wrap.C_FindObjectsInit = w_FindObjectsInit;
		wrap.C_FindObjects = w_FindObjects;
		wrap.C_FindObjectsFinal = w_FindObjectsFinal;
		wrap.C_GetAttributeValue = w_GetAttributeValue;
		wrap.C_SetAttributeValue = w_SetAttributeValue;
		wrap.C_CopyObject = w_CopyObject;
		wrap.C_EncryptInit = w_EncryptInit;
		wrap.C_Encrypt = w_Encrypt;
		wrap.C_DecryptInit = w_DecryptInit;
		wrap.C_Decrypt = w_Decrypt;
		wrap.C_WrapKey = w_WrapKey;
		wrap.C_DigestKey = w_DigestKey;
		wrap.C_DeriveKey = w_DeriveKey;
		wrap.C_GenerateRandom = w_GenerateRandom;
	}
	*out = &wrap;
	return CKR_OK;
}
