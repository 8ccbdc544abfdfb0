/*
 * p11_module.c - loading a module, choosing the token, logging in, the pool
 * of sessions and its recovery, mechanism probing, the RNG.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "p11_int.h"

#define POOL_DEFAULT 4
#define POOL_MAX P11_SESSIONS_MAX

/* A loaded module, shared by every context of this process that uses it:
 * PKCS#11 initialisation is per process, so only the last close may
 * C_Finalize, and only if we were the ones who initialised it. */
struct p11_mod {
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	unsigned refs;
	int finalize;
	struct p11_mod *next;
};

static pthread_mutex_t mods_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_mod *mods;

static void
mod_put(struct p11_mod *m)
{
	struct p11_mod **pp;

	if (m == NULL)
		return;
	pthread_mutex_lock(&mods_lock);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&mods_lock);
		return;
	}
	for (pp = &mods; *pp != NULL; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	/* Still under the lock, so that a concurrent open cannot see the
	 * module initialised and then finalised under its feet. */
	if (m->finalize)
		m->f->C_Finalize(NULL);
	dlclose(m->dl);
	pthread_mutex_unlock(&mods_lock);
	free(m);
}

/* Mutexes offered to the module (CK_C_INITIALIZE_ARGS): adaptive, so
 * that a thread finding one held spins briefly before it sleeps.  A
 * module's locks guard short sections (a handle table, an object's
 * attributes); with the OS's plain mutexes SoftHSM's threads slept and
 * woke each other at every contended one: during a rotation under `get`
 * load, 40-65 % fewer futex calls with these.  A module that cannot use
 * them (CKR_CANT_LOCK) is initialized with its own locking. */
static CK_RV
mx_create(CK_VOID_PTR_PTR out)
{
	pthread_mutexattr_t a;
	pthread_mutex_t *m;

	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	if ((m = malloc(sizeof(*m))) == NULL)
		return CKR_HOST_MEMORY;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
	if (pthread_mutex_init(m, &a) != 0) {
		pthread_mutexattr_destroy(&a);
		free(m);
		return CKR_GENERAL_ERROR;
	}
	pthread_mutexattr_destroy(&a);
	*out = m;
	return CKR_OK;
}

static CK_RV
mx_destroy(CK_VOID_PTR m)
{
	if (m == NULL)
		return CKR_MUTEX_BAD;
	pthread_mutex_destroy(m);
	free(m);
	return CKR_OK;
}

static CK_RV
mx_lock(CK_VOID_PTR m)
{
	return m != NULL && pthread_mutex_lock(m) == 0 ? CKR_OK : CKR_MUTEX_BAD;
}

static CK_RV
mx_unlock(CK_VOID_PTR m)
{
	return m != NULL && pthread_mutex_unlock(m) == 0 ? CKR_OK : CKR_MUTEX_NOT_LOCKED;
}

static int
mod_get(const char *path, struct p11_mod **out)
{
	CK_C_INITIALIZE_ARGS ia;
	CK_RV (*getlist)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST_PTR f = NULL;
	struct p11_mod *m = NULL;
	void *dl;
	CK_RV rv;
	int r = KW_E_INTERNAL;

	pthread_mutex_lock(&mods_lock);
	if ((dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		r = kw_fail(KW_E_P11, "dlopen: cannot load the PKCS#11 module "
		    "%s: %s: check the module path in the configuration", path,
		    dlerror());
		goto out;
	}
	for (m = mods; m != NULL; m = m->next)
		if (m->dl == dl) {
			m->refs++;
			dlclose(dl);    /* the registry holds one reference */
			dl = NULL;
			*out = m;
			m = NULL;
			r = 0;
			goto out;
		}
	*(void **)&getlist = dlsym(dl, "C_GetFunctionList");
	if (getlist == NULL) {
		r = kw_fail(KW_E_P11, "dlsym: %s has no C_GetFunctionList: it is "
		    "not a PKCS#11 module", path);
		goto out;
	}
	if ((rv = getlist(&f)) != CKR_OK || f == NULL) {
		r = p11_fail_rv("C_GetFunctionList", rv, "module %s gave no "
		    "function list", path);
		goto out;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	memset(&ia, 0, sizeof(ia));
	ia.flags = CKF_OS_LOCKING_OK;
	ia.CreateMutex = mx_create;
	ia.DestroyMutex = mx_destroy;
	ia.LockMutex = mx_lock;
	ia.UnlockMutex = mx_unlock;
	rv = f->C_Initialize(&ia);
	if (rv == CKR_CANT_LOCK) {
		memset(&ia, 0, sizeof(ia));
		ia.flags = CKF_OS_LOCKING_OK;
		rv = f->C_Initialize(&ia);
	}
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		r = p11_fail_rv("C_Initialize", rv, "module %s did not start: "
		    "check its configuration (for SoftHSM: SOFTHSM2_CONF and its "
		    "tokendir)", path);
		goto out;
	}
	m->finalize = rv == CKR_OK;
	m->dl = dl;
	m->f = f;
	m->refs = 1;
	m->next = mods;
	mods = m;
	dl = NULL;
	*out = m;
	m = NULL;
	r = 0;
out:
	pthread_mutex_unlock(&mods_lock);
	free(m);
	if (dl != NULL)
		dlclose(dl);
	return r;
}

/* Copy a blank-padded PKCS#11 string into a NUL-terminated one. */
static void
pad_copy(char *dst, size_t dstlen, const unsigned char *src, size_t srclen)
{
	size_t n = srclen < dstlen - 1 ? srclen : dstlen - 1;

	memcpy(dst, src, n);
	while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\0'))
		n--;
	dst[n] = '\0';
}

/* Find the slot holding the token named by ctx->token: a label, a serial
 * number or a "pkcs11:" URI; NULL means the only token present. */
static int
token_find(p11_ctx *ctx, CK_SLOT_ID *slot, CK_TOKEN_INFO *ti)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i, found = 0;
	CK_TOKEN_INFO info;
	P11KitUri *uri = NULL;
	char label[33], serial[17];
	CK_RV rv;
	int r = KW_E_INTERNAL, ur;

	if (ctx->token != NULL && strncmp(ctx->token, "pkcs11:", 7) == 0) {
		if ((uri = p11_kit_uri_new()) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		if ((ur = p11_kit_uri_parse(ctx->token, P11_KIT_URI_FOR_TOKEN,
		    uri)) != P11_KIT_URI_OK) {
			r = kw_fail(KW_E_CONFIG, "token URI '%s': %s: see RFC 7512, "
			    "e.g. pkcs11:token=LABEL", ctx->token,
			    p11_kit_uri_message(ur));
			goto out;
		}
	}
	if ((rv = ctx->f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK) {
		r = p11_fail_rv("C_GetSlotList", rv, "module %s cannot list its "
		    "slots", ctx->module);
		goto out;
	}
	if (n > 0) {
		if ((slots = calloc(n, sizeof(*slots))) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		if ((rv = ctx->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
			r = p11_fail_rv("C_GetSlotList", rv, "module %s cannot "
			    "list its slots", ctx->module);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (ctx->f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
			continue;
		if (!(info.flags & CKF_TOKEN_INITIALIZED))
			continue;
		pad_copy(label, sizeof(label), info.label, sizeof(info.label));
		pad_copy(serial, sizeof(serial), info.serialNumber,
		    sizeof(info.serialNumber));
		if (uri != NULL ? p11_kit_uri_match_token_info(uri, &info) == 1 :
		    ctx->token == NULL || strcmp(ctx->token, label) == 0 ||
		    strcmp(ctx->token, serial) == 0) {
			if (found++ == 0) {
				*slot = slots[i];
				*ti = info;
			}
		}
	}
	if (found == 0) {
		r = kw_fail(KW_E_TOKEN, "token '%s' not found in any of the %lu "
		    "slot(s) with a token of %s: check the label, serial or URI; "
		    "for SoftHSM, is SOFTHSM2_CONF pointing at its directory?",
		    ctx->token != NULL ? ctx->token : "(any)", (unsigned long)n,
		    ctx->module);
		goto out;
	}
	if (found > 1) {
		/* Never the first of several: the PIN would go to whichever
		 * the module lists first, and keys be made there. */
		r = kw_fail(KW_E_CONFIG, "module %s has %lu tokens that match "
		    "'%s': name one by its serial or a pkcs11: URI with "
		    "serial=", ctx->module, (unsigned long)found,
		    ctx->token != NULL ? ctx->token : "(any)");
		goto out;
	}
	r = 0;
out:
	free(slots);
	if (uri != NULL)
		p11_kit_uri_free(uri);
	return r;
}

/* Read the PIN file again, log in on session h, wipe the PIN. */
static int
token_login(p11_ctx *ctx, CK_SESSION_HANDLE h)
{
	char *pin = NULL;
	size_t pinlen = 0;
	CK_RV rv;
	int r;

	if (ctx->pin_refused) {
		struct stat now;
		if (stat(ctx->pin_file, &now) == 0 && now.st_dev == ctx->pin_seen.st_dev &&
		    now.st_ino == ctx->pin_seen.st_ino && now.st_size == ctx->pin_seen.st_size &&
		    now.st_mtim.tv_sec == ctx->pin_seen.st_mtim.tv_sec &&
		    now.st_mtim.tv_nsec == ctx->pin_seen.st_mtim.tv_nsec)
			return kw_fail(KW_E_PIN, "token '%s' refused the PIN in %s; it is not tried "
			    "again until the file changes (each refusal counts towards locking "
			    "the PIN)", TOKNAME(ctx), ctx->pin_file);
	}
	if ((r = p11_pin_read(ctx->pin_file, &pin, &pinlen)) != 0)
		goto out;
	rv = ctx->f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pinlen);
	kw_secfree(pin);        /* wiped right after login */
	pin = NULL;
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	ctx->pin_refused = rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ||
	    rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE;
	if (ctx->pin_refused && stat(ctx->pin_file, &ctx->pin_seen) != 0)
		memset(&ctx->pin_seen, 0, sizeof(ctx->pin_seen));
	if (rv == CKR_PIN_INCORRECT)
		r = p11_fail_rv("C_Login", rv, "the PIN in %s is wrong for token "
		    "'%s'", ctx->pin_file, TOKNAME(ctx));
	else if (rv == CKR_PIN_LOCKED)
		r = p11_fail_rv("C_Login", rv, "the user PIN of token '%s' is "
		    "locked: the security officer must reset it",
		    TOKNAME(ctx));
	else if (rv != CKR_OK)
		r = p11_fail_rv("C_Login", rv, "cannot log in to token '%s' with "
		    "the PIN in %s", TOKNAME(ctx),
		    ctx->pin_file);
	else
		r = 0;
out:
	kw_secfree(pin);
	return r;
}

static int
sess_open(p11_ctx *ctx, CK_SESSION_HANDLE *h)
{
	CK_RV rv;

	rv = ctx->f->C_OpenSession(ctx->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	    NULL, NULL, h);
	if (rv != CKR_OK)
		return p11_fail_rv("C_OpenSession", rv, "cannot open a session "
		    "on token '%s'", TOKNAME(ctx));
	return 0;
}

static void
sessions_close(p11_ctx *ctx)
{
	unsigned i;

	for (i = 0; i < ctx->nsess; i++)
		if (ctx->sess[i].h != CK_INVALID_HANDLE) {
			ctx->f->C_CloseSession(ctx->sess[i].h);
			ctx->sess[i].h = CK_INVALID_HANDLE;
		}
}

/* Find the token, open every session of the pool, log in. */
static int
token_connect(p11_ctx *ctx)
{
	CK_SLOT_ID slot;
	CK_TOKEN_INFO ti;
	unsigned i;
	int r;

	if ((r = token_find(ctx, &slot, &ti)) != 0)
		return r;
	/* After a reconnect, the same token or none: another one that
	 * answers to the label must not get the PIN, nor new keys. */
	if (ctx->opened && (memcmp(ti.serialNumber, ctx->tinfo.serialNumber,
	    sizeof(ti.serialNumber)) != 0 || memcmp(ti.manufacturerID,
	    ctx->tinfo.manufacturerID, sizeof(ti.manufacturerID)) != 0 ||
	    memcmp(ti.model, ctx->tinfo.model, sizeof(ti.model)) != 0)) {
		char was[17], now[17];
		pad_copy(was, sizeof(was), ctx->tinfo.serialNumber, sizeof(ctx->tinfo.serialNumber));
		pad_copy(now, sizeof(now), ti.serialNumber, sizeof(ti.serialNumber));
		return kw_fail(KW_E_TOKEN, "the token found as '%s' is not the one opened at "
		    "start (serial %s, was %s): it is not used; put the original back or "
		    "restart keywardend", TOKNAME(ctx), now, was);
	}
	pthread_mutex_lock(&ctx->lock);
	ctx->slot = slot;
	ctx->tinfo = ti;
	ctx->opened = 1;
	pthread_mutex_unlock(&ctx->lock);
	for (i = 0; i < ctx->nsess; i++)
		if ((r = sess_open(ctx, &ctx->sess[i].h)) != 0)
			return r;
	/* No session stays open without a login: the next operation opens
	 * them again and logs in (or says why it cannot). */
	if ((r = token_login(ctx, ctx->sess[0].h)) != 0)
		sessions_close(ctx);
	return r;
}

static int
mech_has(p11_ctx *ctx, const CK_MECHANISM_TYPE *list, CK_ULONG n,
    CK_MECHANISM_TYPE m, CK_FLAGS need)
{
	CK_MECHANISM_INFO mi;
	CK_ULONG i;

	for (i = 0; i < n; i++)
		if (list[i] == m)
			break;
	if (i == n)
		return 0;
	if (ctx->f->C_GetMechanismInfo(ctx->slot, m, &mi) != CKR_OK)
		return 0;
	return (mi.flags & need) == need;
}

static int
mechs_probe(p11_ctx *ctx, enum p11_wrap_mech want)
{
	CK_MECHANISM_TYPE *list = NULL;
	CK_ULONG n = 0;
	CK_RV rv;
	int r = KW_E_INTERNAL;

	if ((rv = ctx->f->C_GetMechanismList(ctx->slot, NULL, &n)) != CKR_OK) {
		r = p11_fail_rv("C_GetMechanismList", rv, "cannot list the "
		    "mechanisms of token '%s'", TOKNAME(ctx));
		goto out;
	}
	if ((list = calloc(n + 1, sizeof(*list))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if ((rv = ctx->f->C_GetMechanismList(ctx->slot, list, &n)) != CKR_OK) {
		r = p11_fail_rv("C_GetMechanismList", rv, "cannot list the "
		    "mechanisms of token '%s'", TOKNAME(ctx));
		goto out;
	}
	ctx->has_gcm = mech_has(ctx, list, n, CKM_AES_GCM,
	    CKF_ENCRYPT | CKF_DECRYPT);
	ctx->has_kwp = mech_has(ctx, list, n, CKM_AES_KEY_WRAP_PAD,
	    CKF_WRAP | CKF_UNWRAP);
	ctx->has_ecb = mech_has(ctx, list, n, CKM_AES_ECB, CKF_ENCRYPT);
	ctx->has_hmac = mech_has(ctx, list, n, CKM_SHA256_HMAC, CKF_SIGN);
	ctx->has_aes_gen = mech_has(ctx, list, n, CKM_AES_KEY_GEN, CKF_GENERATE);
	ctx->has_gen_gen = mech_has(ctx, list, n, CKM_GENERIC_SECRET_KEY_GEN,
	    CKF_GENERATE);

	if (!ctx->has_aes_gen) {
		r = kw_fail(KW_E_MECHANISM, "C_GetMechanismList: token '%s' lacks "
		    "CKM_AES_KEY_GEN (with CKF_GENERATE): it cannot make master "
		    "keys; use a token that offers AES", TOKNAME(ctx));
		goto out;
	}
	switch (want) {
	case P11_WRAP_AUTO:
		if (ctx->has_gcm)
			ctx->wrap = P11_WRAP_AES_GCM;
		else if (ctx->has_kwp)
			ctx->wrap = P11_WRAP_AES_KWP;
		else if (ctx->has_ecb && ctx->has_hmac && ctx->has_gen_gen)
			ctx->wrap = P11_WRAP_ECB_HMAC;
		else {
			r = kw_fail(KW_E_MECHANISM, "C_GetMechanismList: token '%s' "
			    "offers none of the ways keywarden wraps keys: it lacks "
			    "CKM_AES_GCM%s, CKM_AES_KEY_WRAP_PAD%s and the pair "
			    "CKM_AES_ECB%s + CKM_SHA256_HMAC%s (with "
			    "CKM_GENERIC_SECRET_KEY_GEN%s)", TOKNAME(ctx),
			    ctx->has_gcm ? "" : " (missing)",
			    ctx->has_kwp ? "" : " (missing)",
			    ctx->has_ecb ? "" : " (missing)",
			    ctx->has_hmac ? "" : " (missing)",
			    ctx->has_gen_gen ? "" : " (missing)");
			goto out;
		}
		break;
	case P11_WRAP_AES_GCM:
		if (!ctx->has_gcm) {
			r = kw_fail(KW_E_MECHANISM, "C_GetMechanismList: token '%s' "
			    "lacks CKM_AES_GCM (encrypt+decrypt), which wrap: "
			    "aes-gcm requires; use wrap: auto", TOKNAME(ctx));
			goto out;
		}
		ctx->wrap = want;
		break;
	case P11_WRAP_AES_KWP:
		if (!ctx->has_kwp) {
			r = kw_fail(KW_E_MECHANISM, "C_GetMechanismList: token '%s' "
			    "lacks CKM_AES_KEY_WRAP_PAD (wrap+unwrap), which wrap: "
			    "aes-kwp requires; use wrap: auto", TOKNAME(ctx));
			goto out;
		}
		ctx->wrap = want;
		break;
	case P11_WRAP_ECB_HMAC:
		if (!ctx->has_ecb || !ctx->has_hmac || !ctx->has_gen_gen) {
			r = kw_fail(KW_E_MECHANISM, "C_GetMechanismList: token '%s' "
			    "lacks %s, which wrap: aes-ecb-hmac requires; use wrap: "
			    "auto", TOKNAME(ctx), !ctx->has_ecb ? "CKM_AES_ECB" :
			    !ctx->has_hmac ? "CKM_SHA256_HMAC" :
			    "CKM_GENERIC_SECRET_KEY_GEN");
			goto out;
		}
		ctx->wrap = want;
		break;
	default:
		r = kw_fail(KW_E_CONFIG, "unknown wrap mechanism %d", (int)want);
		goto out;
	}
	r = 0;
out:
	free(list);
	return r;
}

int
p11_open(const struct p11_options *opt, p11_ctx **out)
{
	p11_ctx *ctx = NULL;
	unsigned i;
	int r = KW_E_INTERNAL;

	if (opt == NULL || opt->module == NULL || *opt->module == '\0') {
		r = kw_fail(KW_E_CONFIG, "no PKCS#11 module given: set the path "
		    "of the module (e.g. libsofthsm2.so)");
		goto out;
	}
	if (opt->sessions > POOL_MAX) {
		r = kw_fail(KW_E_CONFIG, "%u sessions asked for: at most %d",
		    opt->sessions, POOL_MAX);
		goto out;
	}
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&ctx->lock, NULL);
	pthread_mutex_init(&ctx->keylock, NULL);
	pthread_cond_init(&ctx->cond, NULL);
	ctx->audit = CK_INVALID_HANDLE;
	ctx->nsess = opt->sessions != 0 ? opt->sessions : POOL_DEFAULT;
	if ((ctx->module = strdup(opt->module)) == NULL ||
	    (opt->token != NULL && (ctx->token = strdup(opt->token)) == NULL) ||
	    (opt->pin_file != NULL &&
	    (ctx->pin_file = strdup(opt->pin_file)) == NULL) ||
	    (ctx->sess = calloc(ctx->nsess, sizeof(*ctx->sess))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < ctx->nsess; i++)
		ctx->sess[i].h = CK_INVALID_HANDLE;
	/* Check the PIN file before touching the module. */
	{
		char *pin = NULL;
		size_t pinlen;

		if ((r = p11_pin_read(ctx->pin_file, &pin, &pinlen)) != 0)
			goto out;
		kw_secfree(pin);
	}
	if ((r = mod_get(ctx->module, &ctx->mod)) != 0)
		goto out;
	ctx->f = ctx->mod->f;
	if ((r = token_find(ctx, &ctx->slot, &ctx->tinfo)) != 0 ||
	    (r = mechs_probe(ctx, opt->wrap)) != 0 ||
	    (r = token_connect(ctx)) != 0 ||
	    (r = p11_copy_probe(ctx, !opt->no_session_copies)) != 0)
		goto out;
	*out = ctx;
	ctx = NULL;
	r = 0;
out:
	p11_close(ctx);
	return r;
}

void
p11_close(p11_ctx *ctx)
{
	if (ctx == NULL)
		return;
	/* No C_Logout: login is per process, and other contexts of this
	 * process may share it; closing the last session logs out. */
	if (ctx->mod != NULL && ctx->sess != NULL)
		sessions_close(ctx);
	mod_put(ctx->mod);
	free(ctx->sess);
	free(ctx->cache);
	free(ctx->module);
	free(ctx->token);
	free(ctx->pin_file);
	pthread_cond_destroy(&ctx->cond);
	pthread_mutex_destroy(&ctx->lock);
	pthread_mutex_destroy(&ctx->keylock);
	free(ctx);
}

/* ---- the pool ----------------------------------------------------------- */

static struct p11_sess *
sess_acquire(p11_ctx *ctx, unsigned long *gen)
{
	struct p11_sess *s = NULL;
	unsigned i;

	pthread_mutex_lock(&ctx->lock);
	for (;;) {
		if (!ctx->reopening && ctx->nbusy < ctx->nsess) {
			for (i = 0; i < ctx->nsess; i++)
				if (!ctx->sess[i].busy) {
					s = &ctx->sess[i];
					break;
				}
			if (s != NULL)
				break;
		}
		pthread_cond_wait(&ctx->cond, &ctx->lock);
	}
	s->busy = 1;
	s->rv = CKR_OK;
	ctx->nbusy++;
	*gen = ctx->gen;
	pthread_mutex_unlock(&ctx->lock);
	return s;
}

static void
sess_release(p11_ctx *ctx, struct p11_sess *s)
{
	pthread_mutex_lock(&ctx->lock);
	s->busy = 0;
	ctx->nbusy--;
	pthread_cond_broadcast(&ctx->cond);
	pthread_mutex_unlock(&ctx->lock);
}

/* Close the sessions, find the token again (its slot may have changed), log
 * in again, forget cached handles.  Only one thread does it; the others
 * that saw the same failure just retry. */
static int
token_reopen(p11_ctx *ctx, unsigned long seen)
{
	int r;

	pthread_mutex_lock(&ctx->lock);
	if (ctx->gen != seen || ctx->reopening) {
		while (ctx->reopening)
			pthread_cond_wait(&ctx->cond, &ctx->lock);
		pthread_mutex_unlock(&ctx->lock);
		return 0;
	}
	ctx->reopening = 1;
	while (ctx->nbusy > 0)
		pthread_cond_wait(&ctx->cond, &ctx->lock);
	pthread_mutex_unlock(&ctx->lock);

	sessions_close(ctx);
	p11_cache_clear(ctx);
	r = token_connect(ctx);

	pthread_mutex_lock(&ctx->lock);
	ctx->gen++;
	ctx->reopening = 0;
	pthread_cond_broadcast(&ctx->cond);
	pthread_mutex_unlock(&ctx->lock);
	return r;
}

int
p11_sfail(struct p11_sess *s, const char *fn, CK_RV rv, const char *fmt, ...)
{
	char what[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	s->rv = rv;
	return p11_fail_rv(fn, rv, "%s", what);
}

int
p11_run(p11_ctx *ctx, p11_op_fn op, void *arg)
{
	struct p11_sess *s;
	unsigned long gen;
	CK_RV rv;
	int r = KW_E_INTERNAL, e, attempt;

	if (ctx == NULL)
		return kw_fail(KW_E_INTERNAL, "PKCS#11 layer used before p11_open");
	for (attempt = 0; attempt < 2; attempt++) {
		s = sess_acquire(ctx, &gen);
		if (s->h == CK_INVALID_HANDLE && (r = sess_open(ctx, &s->h)) != 0)
			rv = CKR_SESSION_HANDLE_INVALID;
		else {
			r = op(ctx, s, arg);
			rv = s->rv;
		}
		sess_release(ctx, s);
		if (r == 0 || attempt == 1 || !p11_rv_retryable(rv))
			break;
		if ((e = token_reopen(ctx, gen)) != 0)
			return e;
	}
	return r;
}

int
p11_sess_rng(p11_ctx *ctx, struct p11_sess *s, void *out, size_t n)
{
	CK_RV rv;

	if ((rv = ctx->f->C_GenerateRandom(s->h, out, n)) != CKR_OK)
		return p11_sfail(s, "C_GenerateRandom", rv, "the RNG of token "
		    "'%s' failed", TOKNAME(ctx));
	return 0;
}

int
p11_sess_nonce(p11_ctx *ctx, struct p11_sess *s, uint8_t *out, size_t n)
{
	int r;

	if (n > sizeof(s->nonces))
		return p11_sess_rng(ctx, s, out, n);
	if (s->nonces_left < n) {
		s->nonces_left = 0;
		if ((r = p11_sess_rng(ctx, s, s->nonces, sizeof(s->nonces))) != 0)
			return r;
		s->nonces_left = sizeof(s->nonces);
	}
	s->nonces_left -= n;
	memcpy(out, s->nonces + s->nonces_left, n);
	memset(s->nonces + s->nonces_left, 0, n);
	return 0;
}

/* ---- small operations ---------------------------------------------------- */

int
p11_sess_logged_in(p11_ctx *ctx, struct p11_sess *s)
{
	CK_SESSION_INFO si;
	CK_RV rv;

	if ((rv = ctx->f->C_GetSessionInfo(s->h, &si)) != CKR_OK)
		return p11_sfail(s, "C_GetSessionInfo", rv, "token '%s' does not "
		    "answer", TOKNAME(ctx));
	if (si.state != CKS_RW_USER_FUNCTIONS && si.state != CKS_RO_USER_FUNCTIONS)
		return p11_sfail(s, "C_GetSessionInfo", CKR_USER_NOT_LOGGED_IN,
		    "the session on token '%s' is no longer logged in", TOKNAME(ctx));
	return 0;
}

static int
op_ping(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	(void)arg;
	return p11_sess_logged_in(ctx, s);
}

int
p11_ping(p11_ctx *ctx)
{
	return p11_run(ctx, op_ping, NULL);
}

struct rand_arg {
	void *buf;
	size_t len;
};

static int
op_random(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct rand_arg *a = arg;

	return p11_sess_rng(ctx, s, a->buf, a->len);
}

int
p11_random(p11_ctx *ctx, void *buf, size_t len)
{
	struct rand_arg a = { buf, len };

	if (len == 0)
		return 0;
	return p11_run(ctx, op_random, &a);
}

int
p11_token_info(p11_ctx *ctx, struct p11_token_info *out)
{
	struct p11_token_info ti;

	if (ctx == NULL)
		return kw_fail(KW_E_INTERNAL, "PKCS#11 layer used before p11_open");
	memset(&ti, 0, sizeof(ti));
	pthread_mutex_lock(&ctx->lock);
	pad_copy(ti.label, sizeof(ti.label), ctx->tinfo.label,
	    sizeof(ctx->tinfo.label));
	pad_copy(ti.serial, sizeof(ti.serial), ctx->tinfo.serialNumber,
	    sizeof(ctx->tinfo.serialNumber));
	pad_copy(ti.manufacturer, sizeof(ti.manufacturer),
	    ctx->tinfo.manufacturerID, sizeof(ctx->tinfo.manufacturerID));
	pad_copy(ti.model, sizeof(ti.model), ctx->tinfo.model,
	    sizeof(ctx->tinfo.model));
	ti.wrap = ctx->wrap;
	ti.sessions = ctx->nsess;
	ti.session_copies = ctx->copies != P11_COPY_OFF;
	ti.keys_modifiable = ctx->copies == P11_COPY_MODIFIABLE;
	pthread_mutex_unlock(&ctx->lock);
	*out = ti;
	return 0;
}

const char *
p11_wrap_mech_name(enum p11_wrap_mech m)
{
	switch (m) {
	case P11_WRAP_AUTO:
		return "auto";
	case P11_WRAP_AES_GCM:
		return "aes-gcm";
	case P11_WRAP_AES_KWP:
		return "aes-kwp";
	case P11_WRAP_ECB_HMAC:
		return "aes-ecb-hmac";
	}
	return "unknown";
}
