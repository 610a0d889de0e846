/*
 * p11_helper.c: test helper of test/checks/pkcs11_softhsm.sh, built from the
 * same <p11-kit/pkcs11.h> as the provider (pkcs11-tool is not assumed).
 *
 *   p11_helper MODULE genkey TOKEN PIN LABEL [extractable]
 *       create an AES-256 token key: CKA_SENSITIVE true, CKA_EXTRACTABLE
 *       false (or, with "extractable", CKA_SENSITIVE false and
 *       CKA_EXTRACTABLE true: the key check_key must refuse)
 *   p11_helper MODULE probe TOKEN PIN LABEL
 *       print the key's CKA_EXTRACTABLE, CKA_SENSITIVE,
 *       CKA_NEVER_EXTRACTABLE and the result of reading its CKA_VALUE
 *   p11_helper MODULE mechs TOKEN PIN -
 *       print which of CKM_AES_GCM and CKM_AES_KEY_WRAP_PAD the token
 *       supports, and for what (encrypt, decrypt, wrap, unwrap)
 *
 * The PIN is a throwaway test PIN.  Exit 0 on success.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR f;

static void
die(const char *what, CK_RV rv)
{
	fprintf(stderr, "%s: 0x%lx\n", what, (unsigned long) rv);
	exit(2);
}

static CK_SLOT_ID
token_slot(const char *label)
{
	CK_SLOT_ID	slots[64];
	CK_ULONG	n = 64,
				i;
	CK_RV		rv = f->C_GetSlotList(CK_TRUE, slots, &n);

	if (rv != CKR_OK)
		die("C_GetSlotList", rv);
	for (i = 0; i < n; i++)
	{
		CK_TOKEN_INFO ti;
		char		l[33];

		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(l, ti.label, 32);
		l[32] = 0;
		for (int k = 31; k >= 0 && l[k] == ' '; k--)
			l[k] = 0;
		if (strcmp(l, label) == 0)
			return slots[i];
	}
	fprintf(stderr, "no token %s\n", label);
	exit(2);
}

int
main(int argc, char **argv)
{
	void	   *h;
	CK_RV		(*gfl) (CK_FUNCTION_LIST_PTR_PTR);
	CK_SESSION_HANDLE s;
	CK_RV		rv;

	if (argc < 6)
	{
		fprintf(stderr, "usage: p11_helper MODULE genkey|probe TOKEN PIN LABEL [extractable]\n");
		return 2;
	}
	h = dlopen(argv[1], RTLD_NOW);
	if (h == NULL || (gfl = (CK_RV (*) (CK_FUNCTION_LIST_PTR_PTR)) dlsym(h, "C_GetFunctionList")) == NULL)
	{
		fprintf(stderr, "cannot load %s\n", argv[1]);
		return 2;
	}
	if ((rv = gfl(&f)) != CKR_OK)
		die("C_GetFunctionList", rv);
	if ((rv = f->C_Initialize(NULL)) != CKR_OK)
		die("C_Initialize", rv);
	if ((rv = f->C_OpenSession(token_slot(argv[3]), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) != CKR_OK)
		die("C_OpenSession", rv);
	if ((rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) argv[4], strlen(argv[4]))) != CKR_OK)
		die("C_Login", rv);

	if (strcmp(argv[2], "genkey") == 0)
	{
		int			ext = argc > 6 && strcmp(argv[6], "extractable") == 0;
		CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_KEY_TYPE kt = CKK_AES;
		CK_ULONG	len = 32;
		CK_BBOOL	yes = CK_TRUE,
					no = CK_FALSE;
		CK_ATTRIBUTE t[] = {
			{CKA_CLASS, &cls, sizeof(cls)},
			{CKA_KEY_TYPE, &kt, sizeof(kt)},
			{CKA_VALUE_LEN, &len, sizeof(len)},
			{CKA_TOKEN, &yes, sizeof(yes)},
			{CKA_PRIVATE, &yes, sizeof(yes)},
			{CKA_ENCRYPT, &yes, sizeof(yes)},
			{CKA_DECRYPT, &yes, sizeof(yes)},
			{CKA_SENSITIVE, ext ? &no : &yes, sizeof(yes)},
			{CKA_EXTRACTABLE, ext ? &yes : &no, sizeof(yes)},
			{CKA_LABEL, argv[5], strlen(argv[5])},
			{CKA_ID, argv[5], strlen(argv[5])},
		};
		CK_OBJECT_HANDLE k;

		if ((rv = f->C_GenerateKey(s, &m, t, sizeof(t) / sizeof(t[0]), &k)) != CKR_OK)
			die("C_GenerateKey", rv);
		printf("generated %s\n", argv[5]);
	}
	else if (strcmp(argv[2], "mechs") == 0)
	{
		CK_MECHANISM_TYPE want[] = {CKM_AES_GCM, CKM_AES_KEY_WRAP_PAD};
		const char *names[] = {"CKM_AES_GCM", "CKM_AES_KEY_WRAP_PAD"};
		CK_SESSION_INFO si;

		if ((rv = f->C_GetSessionInfo(s, &si)) != CKR_OK)
			die("C_GetSessionInfo", rv);
		for (int i = 0; i < 2; i++)
		{
			CK_MECHANISM_INFO mi;

			rv = f->C_GetMechanismInfo(si.slotID, want[i], &mi);
			if (rv != CKR_OK)
				printf("%s: not supported\n", names[i]);
			else
				printf("%s:%s%s%s%s\n", names[i],
					   (mi.flags & CKF_ENCRYPT) ? " encrypt" : "", (mi.flags & CKF_DECRYPT) ? " decrypt" : "",
					   (mi.flags & CKF_WRAP) ? " wrap" : "", (mi.flags & CKF_UNWRAP) ? " unwrap" : "");
		}
	}
	else if (strcmp(argv[2], "probe") == 0)
	{
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_ATTRIBUTE ft[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, argv[5], strlen(argv[5])}};
		CK_OBJECT_HANDLE k;
		CK_ULONG	n = 0;
		CK_BBOOL	ext = 9,
					sens = 9,
					never = 9;
		CK_ATTRIBUTE a[] = {{CKA_EXTRACTABLE, &ext, 1}, {CKA_SENSITIVE, &sens, 1}, {CKA_NEVER_EXTRACTABLE, &never, 1}};
		unsigned char value[64];
		CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};

		if ((rv = f->C_FindObjectsInit(s, ft, 2)) != CKR_OK ||
			(rv = f->C_FindObjects(s, &k, 1, &n)) != CKR_OK ||
			(rv = f->C_FindObjectsFinal(s)) != CKR_OK)
			die("C_FindObjects", rv);
		if (n != 1)
			die("key not found", 0);
		if ((rv = f->C_GetAttributeValue(s, k, a, 3)) != CKR_OK)
			die("C_GetAttributeValue", rv);
		printf("CKA_EXTRACTABLE=%d CKA_SENSITIVE=%d CKA_NEVER_EXTRACTABLE=%d\n", ext, sens, never);
		rv = f->C_GetAttributeValue(s, k, &v, 1);
		printf("CKA_VALUE read: %s\n", rv == CKR_ATTRIBUTE_SENSITIVE ? "CKR_ATTRIBUTE_SENSITIVE" :
			   rv == CKR_OK ? "CKR_OK (key material readable)" : "other error");
	}
	f->C_Logout(s);
	f->C_CloseSession(s);
	f->C_Finalize(NULL);
	return 0;
}
