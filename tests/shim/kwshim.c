/*
 * kwshim.c - a thin PKCS#11 interposer for tests.  It loads the real module
 * named by KW_SHIM_MODULE and forwards every call to it, except that, on
 * demand (environment read on each call):
 *
 *   KW_SHIM_HIDE_MECHS=gcm,kwp,ecb,hmac,aesgen,gengen
 *       hides those mechanisms from C_GetMechanismList/C_GetMechanismInfo
 *       and refuses them with CKR_MECHANISM_INVALID;
 *   KW_SHIM_FAIL=C_Encrypt:N:CKR_DEVICE_REMOVED
 *       makes the next N calls of that function (one of those wrapped below)
 *       fail with that code (CKR_DEVICE_REMOVED, CKR_USER_NOT_LOGGED_IN,
 *       CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_ERROR,
 *       CKR_TOKEN_NOT_PRESENT, CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED, or a
 *       number).  The count restarts whenever the variable's value changes.
 *       A C_Decrypt made to fail still runs in the real module, so that
 *       its operation ends as a failed C_Decrypt's does; its output is
 *       wiped and not handed back.
 *   KW_SHIM_FAIL_FILE=path
 *       injects KW_SHIM_FAIL's errors only while that file exists (calls
 *       made while it does not are not counted), for a process whose
 *       environment a test cannot change once it runs: the daemon.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST shim;
static char fail_seen[256];
static long fail_left;

static const struct {
	const char *name;
	CK_MECHANISM_TYPE m;
} mechs[] = {
	{ "gcm", CKM_AES_GCM }, { "kwp", CKM_AES_KEY_WRAP_PAD },
	{ "ecb", CKM_AES_ECB }, { "hmac", CKM_SHA256_HMAC },
	{ "aesgen", CKM_AES_KEY_GEN }, { "gengen", CKM_GENERIC_SECRET_KEY_GEN },
};

static int
hidden(CK_MECHANISM_TYPE m)
{
	const char *h = getenv("KW_SHIM_HIDE_MECHS");
	char buf[256], *tok, *save = NULL;
	size_t i;

	if (h == NULL || *h == '\0')
		return 0;
	snprintf(buf, sizeof(buf), "%s", h);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save))
		for (i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
			if (strcmp(tok, mechs[i].name) == 0 && mechs[i].m == m)
				return 1;
	return 0;
}

static CK_RV
rv_parse(const char *s)
{
	static const struct {
		const char *n;
		CK_RV rv;
	} t[] = {
		{ "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
		{ "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
		{ "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
		{ "CKR_SESSION_CLOSED", CKR_SESSION_CLOSED },
		{ "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
		{ "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
		{ "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
		{ "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(s, t[i].n) == 0)
			return t[i].rv;
	return strtoul(s, NULL, 0);
}

/* CKR_OK, or the error to inject into this call of fn. */
static CK_RV
inject(const char *fn)
{
	const char *f = getenv("KW_SHIM_FAIL"), *when = getenv("KW_SHIM_FAIL_FILE");
	char buf[256], *n, *code;
	CK_RV rv = CKR_OK;

	if (f == NULL || *f == '\0')
		return CKR_OK;
	if (when != NULL && *when != '\0' && access(when, F_OK) != 0)
		return CKR_OK;
	pthread_mutex_lock(&lock);
	snprintf(buf, sizeof(buf), "%s", f);
	if (strcmp(buf, fail_seen) != 0) {
		snprintf(fail_seen, sizeof(fail_seen), "%s", buf);
		n = strchr(buf, ':');
		fail_left = n != NULL ? strtol(n + 1, NULL, 10) : 0;
		snprintf(buf, sizeof(buf), "%s", f);
	}
	if ((n = strchr(buf, ':')) != NULL && (code = strchr(n + 1, ':')) != NULL) {
		*n = '\0';
		if (strcmp(buf, fn) == 0 && fail_left > 0) {
			fail_left--;
			rv = rv_parse(code + 1);
		}
	}
	pthread_mutex_unlock(&lock);
	return rv;
}

#define INJECT(fn) do {                                 \
	CK_RV irv_ = inject(fn);                        \
	if (irv_ != CKR_OK)                             \
		return irv_;                            \
} while (0)

#define REFUSE(mech) do {                               \
	if ((mech) != NULL && hidden((mech)->mechanism)) \
		return CKR_MECHANISM_INVALID;           \
} while (0)

static CK_RV
shim_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
    CK_ULONG_PTR count)
{
	CK_MECHANISM_TYPE *all;
	CK_ULONG n = 0, i, k = 0;
	CK_RV rv;

	if (list == NULL)
		return real->C_GetMechanismList(slot, NULL, count);
	if ((rv = real->C_GetMechanismList(slot, NULL, &n)) != CKR_OK)
		return rv;
	if ((all = calloc(n + 1, sizeof(*all))) == NULL)
		return CKR_HOST_MEMORY;
	if ((rv = real->C_GetMechanismList(slot, all, &n)) == CKR_OK) {
		for (i = 0; i < n; i++)
			if (!hidden(all[i]))
				all[k++] = all[i];
		if (k > *count)
			rv = CKR_BUFFER_TOO_SMALL;
		else
			memcpy(list, all, k * sizeof(*all));
		*count = k;
	}
	free(all);
	return rv;
}

static CK_RV
shim_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE m,
    CK_MECHANISM_INFO_PTR info)
{
	if (hidden(m))
		return CKR_MECHANISM_INVALID;
	return real->C_GetMechanismInfo(slot, m, info);
}

static CK_RV
shim_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	INJECT("C_EncryptInit");
	REFUSE(m);
	return real->C_EncryptInit(s, m, k);
}

static CK_RV
shim_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	INJECT("C_DecryptInit");
	REFUSE(m);
	return real->C_DecryptInit(s, m, k);
}

static CK_RV
shim_Decrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen,
    CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
	CK_RV irv = inject("C_Decrypt");
	CK_ULONG cap = outlen != NULL ? *outlen : 0;

	if (irv == CKR_OK)
		return real->C_Decrypt(s, in, inlen, out, outlen);
	real->C_Decrypt(s, in, inlen, out, outlen);
	if (out != NULL)
		memset(out, 0, cap);
	return irv;
}

static CK_RV
shim_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	INJECT("C_SignInit");
	REFUSE(m);
	return real->C_SignInit(s, m, k);
}

static CK_RV
shim_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk,
    CK_OBJECT_HANDLE k, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
	INJECT("C_WrapKey");
	REFUSE(m);
	return real->C_WrapKey(s, m, wk, k, out, outlen);
}

static CK_RV
shim_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk,
    CK_BYTE_PTR in, CK_ULONG inlen, CK_ATTRIBUTE_PTR t, CK_ULONG n,
    CK_OBJECT_HANDLE_PTR out)
{
	INJECT("C_UnwrapKey");
	REFUSE(m);
	return real->C_UnwrapKey(s, m, uk, in, inlen, t, n, out);
}

static CK_RV
shim_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t,
    CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
	INJECT("C_GenerateKey");
	REFUSE(m);
	return real->C_GenerateKey(s, m, t, n, out);
}

static CK_RV
shim_GenerateRandom(CK_SESSION_HANDLE s, CK_BYTE_PTR buf, CK_ULONG len)
{
	INJECT("C_GenerateRandom");
	return real->C_GenerateRandom(s, buf, len);
}

static CK_RV
shim_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	INJECT("C_FindObjectsInit");
	return real->C_FindObjectsInit(s, t, n);
}

static CK_RV
shim_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
	INJECT("C_GetSessionInfo");
	return real->C_GetSessionInfo(s, info);
}

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	CK_RV (*getlist)(CK_FUNCTION_LIST_PTR_PTR);
	const char *path;
	void *dl;
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&lock);
	if (real == NULL) {
		if ((path = getenv("KW_SHIM_MODULE")) == NULL ||
		    (dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
			fprintf(stderr, "kwshim: cannot load KW_SHIM_MODULE=%s: %s\n",
			    path ? path : "(unset)", path ? dlerror() : "");
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
		*(void **)&getlist = dlsym(dl, "C_GetFunctionList");
		if (getlist == NULL || (rv = getlist(&real)) != CKR_OK) {
			real = NULL;
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
		/* the module stays loaded for the life of the process */
		shim = *real;
		shim.C_GetFunctionList = C_GetFunctionList;
		shim.C_GetMechanismList = shim_GetMechanismList;
		shim.C_GetMechanismInfo = shim_GetMechanismInfo;
		shim.C_EncryptInit = shim_EncryptInit;
		shim.C_DecryptInit = shim_DecryptInit;
		shim.C_Decrypt = shim_Decrypt;
		shim.C_SignInit = shim_SignInit;
		shim.C_WrapKey = shim_WrapKey;
		shim.C_UnwrapKey = shim_UnwrapKey;
		shim.C_GenerateKey = shim_GenerateKey;
		shim.C_GenerateRandom = shim_GenerateRandom;
		shim.C_FindObjectsInit = shim_FindObjectsInit;
		shim.C_GetSessionInfo = shim_GetSessionInfo;
	}
	*list = &shim;
out:
	pthread_mutex_unlock(&lock);
	return rv;
}
