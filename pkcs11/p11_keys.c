/*
 * p11_keys.c - the versioned master keys of a vault, the audit HMAC key,
 * and the cache of their object handles.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_error.h"
#include "kw_grow.h"
#include "kw_secmem.h"
#include "p11_int.h"

#define LABEL_PREFIX "keywarden/"
#define AUDIT_LABEL "keywarden/audit"

int
p11_name_byte_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

int
p11_name_check(const char *what, const char *s, size_t max)
{
	size_t i, n;

	if (s == NULL || (n = strnlen(s, max + 1)) == 0 || n > max)
		return kw_fail(-EINVAL, "%s name must be 1 to %zu bytes", what, max);
	for (i = 0; i < n; i++)
		if (!p11_name_byte_ok(s[i]))
			return kw_fail(-EINVAL, "%s name has a byte 0x%02x at "
			    "%zu: use letters, digits, '-', '_' or '.'", what,
			    (unsigned)(unsigned char)s[i], i);
	return 0;
}

static int
vault_check(const char *vault)
{
	return p11_name_check("vault", vault, P11_VAULT_MAX);
}

int
p11_label_make(char *buf, size_t len, const char *vault, unsigned version,
    const char *suffix)
{
	int n, r;

	if ((r = vault_check(vault)) != 0)
		return r;
	if (version == 0)
		return kw_fail(-EINVAL, "master-key versions start at 1");
	n = snprintf(buf, len, LABEL_PREFIX "%s/v%u%s", vault, version,
	    suffix != NULL ? suffix : "");
	if (n < 0 || (size_t)n >= len)
		return kw_fail(-EINVAL, "vault name too long for a label");
	return 0;
}


int
p11_find_one(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_CLASS cls,
    const char *label, CK_OBJECT_HANDLE *out)
{
	CK_BBOOL tok = CK_TRUE;
	/* Token objects only: session copies carry the same label. */
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_TOKEN, &tok, sizeof(tok) },
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv;

	if ((rv = ctx->f->C_FindObjectsInit(s->h, t, 3)) != CKR_OK)
		return p11_sfail(s, "C_FindObjectsInit", rv, "cannot search token "
		    "'%s' for '%s'", TOKNAME(ctx), label);
	rv = ctx->f->C_FindObjects(s->h, h, 2, &n);
	ctx->f->C_FindObjectsFinal(s->h);
	if (rv != CKR_OK)
		return p11_sfail(s, "C_FindObjects", rv, "cannot search token "
		    "'%s' for '%s'", TOKNAME(ctx), label);
	if (n == 0) {
		int r = p11_sess_logged_in(ctx, s);
		return r != 0 ? r : kw_fail(KW_E_KEY_NOT_FOUND, "no key '%s' in "
		    "token '%s'", label, TOKNAME(ctx));
	}
	if (n > 1)
		return kw_fail(KW_E_P11, "token '%s' holds several objects "
		    "labelled '%s': remove the extra ones (pkcs11-tool "
		    "--list-objects)", TOKNAME(ctx), label);
	*out = h[0];
	return 0;
}

int
p11_find_each(p11_ctx *ctx, struct p11_sess *s, CK_ATTRIBUTE *t, CK_ULONG nt,
    const char *what, int (*fn)(p11_ctx *, struct p11_sess *, CK_OBJECT_HANDLE, void *),
    void *arg)
{
	CK_OBJECT_HANDLE h[32];
	CK_ULONG n, i;
	CK_RV rv;
	int r = 0;

	/* A list is only as good as the login it was read under: private
	 * objects are invisible once it is lost. */
	if ((r = p11_sess_logged_in(ctx, s)) != 0)
		return r;
	if ((rv = ctx->f->C_FindObjectsInit(s->h, t, nt)) != CKR_OK)
		return p11_sfail(s, "C_FindObjectsInit", rv, "cannot list the "
		    "%s of token '%s'", what, TOKNAME(ctx));
	for (;;) {
		if ((rv = ctx->f->C_FindObjects(s->h, h, 32, &n)) != CKR_OK) {
			r = p11_sfail(s, "C_FindObjects", rv, "cannot list the "
			    "%s of token '%s'", what, TOKNAME(ctx));
			break;
		}
		if (n == 0)
			break;
		for (i = 0; i < n && r == 0; i++)
			r = fn(ctx, s, h[i], arg);
		if (r != 0)
			break;
	}
	ctx->f->C_FindObjectsFinal(s->h);
	return r;
}

void
p11_cache_clear(p11_ctx *ctx)
{
	/* Only at reopen and close, after the sessions (and with them the
	 * session copies) are gone. */
	pthread_mutex_lock(&ctx->lock);
	ctx->ncache = 0;
	ctx->audit = CK_INVALID_HANDLE;
	pthread_mutex_unlock(&ctx->lock);
}

/* p11_run(ctx, op, arg) with op under keylock. */
struct keys_op {
	p11_op_fn op;
	void *arg;
};

static int
op_keylocked(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct keys_op *k = arg;
	int r;

	pthread_mutex_lock(&ctx->keylock);
	r = k->op(ctx, s, k->arg);
	pthread_mutex_unlock(&ctx->keylock);
	return r;
}

int
p11_run_keylocked(p11_ctx *ctx, p11_op_fn op, void *arg)
{
	struct keys_op k = { op, arg };

	return p11_run(ctx, op_keylocked, &k);
}

/* ---- session copies ------------------------------------------------------- */

/* A session copy of h, checked to be what h is, or h itself. */
static CK_OBJECT_HANDLE
copy_checked(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE h)
{
	CK_BBOOL no = CK_FALSE, tok = CK_TRUE, sens = CK_FALSE, extr = CK_TRUE,
	    never = CK_FALSE;
	CK_ATTRIBUTE t[] = { { CKA_TOKEN, &no, sizeof(no) } };
	CK_ATTRIBUTE chk[] = {
		{ CKA_TOKEN, &tok, sizeof(tok) },
		{ CKA_SENSITIVE, &sens, sizeof(sens) },
		{ CKA_EXTRACTABLE, &extr, sizeof(extr) },
		{ CKA_NEVER_EXTRACTABLE, &never, sizeof(never) },
	};
	CK_OBJECT_HANDLE c = CK_INVALID_HANDLE;

	if (ctx->f->C_CopyObject(s->h, h, t, 1, &c) != CKR_OK ||
	    c == CK_INVALID_HANDLE)
		return h;
	/* The copy must be what the original is: a session object, sensitive,
	 * never extractable.  A token that answers otherwise loses the copy. */
	if (ctx->f->C_GetAttributeValue(s->h, c, chk, 4) != CKR_OK ||
	    tok != CK_FALSE || sens != CK_TRUE || extr != CK_FALSE ||
	    never != CK_TRUE) {
		ctx->f->C_DestroyObject(s->h, c);
		return h;
	}
	return c;
}

CK_OBJECT_HANDLE
p11_session_copy(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE h)
{
	if (ctx->copies == P11_COPY_OFF || h == CK_INVALID_HANDLE)
		return h;
	return copy_checked(ctx, s, h);
}

static void
copy_destroy(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE used,
    CK_OBJECT_HANDLE tok)
{
	if (used != CK_INVALID_HANDLE && used != tok)
		ctx->f->C_DestroyObject(s->h, used);
}

/* Generate a throwaway AES session key, modifiable or not, and try to copy
 * it as p11_session_copy() does. */
static int
probe_one(p11_ctx *ctx, struct p11_sess *s, int modifiable)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES;
	CK_ULONG vlen = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_BBOOL mod = modifiable ? CK_TRUE : CK_FALSE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
		{ CKA_MODIFIABLE, &mod, sizeof(mod) },
	};
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_OBJECT_HANDLE k = CK_INVALID_HANDLE, c;
	int ok;

	if (ctx->f->C_GenerateKey(s->h, &m, t, sizeof(t) / sizeof(t[0]), &k) !=
	    CKR_OK)
		return 0;
	c = copy_checked(ctx, s, k);
	ok = c != k;
	copy_destroy(ctx, s, c, k);
	ctx->f->C_DestroyObject(s->h, k);
	return ok;
}

static int
op_copy_probe(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	(void)arg;
	if (probe_one(ctx, s, 0))
		ctx->copies = P11_COPY_ON;
	else if (probe_one(ctx, s, 1))
		ctx->copies = P11_COPY_MODIFIABLE;
	else
		ctx->copies = P11_COPY_OFF;
	return 0;
}

int
p11_copy_probe(p11_ctx *ctx, int wanted)
{
	ctx->copies = P11_COPY_OFF;
	if (!wanted)
		return 0;
	return p11_run(ctx, op_copy_probe, NULL);
}

/* Forget a key's cache entry and destroy its session copies, so that a
 * destroyed key is not kept alive by a copy. */
static void
cache_drop(p11_ctx *ctx, struct p11_sess *s, const char *label)
{
	struct p11_kcache e;
	size_t i;
	int found = 0;

	pthread_mutex_lock(&ctx->lock);
	for (i = 0; i < ctx->ncache; i++)
		if (strcmp(ctx->cache[i].label, label) == 0) {
			e = ctx->cache[i];
			ctx->cache[i] = ctx->cache[--ctx->ncache];
			found = 1;
			break;
		}
	pthread_mutex_unlock(&ctx->lock);
	if (found) {
		copy_destroy(ctx, s, e.key, e.tkey);
		copy_destroy(ctx, s, e.mac, e.tmac);
	}
}

static int key_find_copy(p11_ctx *ctx, struct p11_sess *s, const char *vault,
    unsigned version, const char *label, CK_OBJECT_HANDLE *key,
    CK_OBJECT_HANDLE *mac);

/* 1 and the cached handles of a vault's key version, or 0. */
static int
cache_find(p11_ctx *ctx, const char *vault, unsigned version,
    CK_OBJECT_HANDLE *key, CK_OBJECT_HANDLE *mac)
{
	int found = 0;

	pthread_mutex_lock(&ctx->lock);
	for (size_t i = 0; i < ctx->ncache && !found; i++)
		if (ctx->cache[i].version == version &&
		    strcmp(ctx->cache[i].vault, vault) == 0) {
			*key = ctx->cache[i].key;
			*mac = ctx->cache[i].mac;
			found = 1;
		}
	pthread_mutex_unlock(&ctx->lock);
	return found;
}

int
p11_key_get(p11_ctx *ctx, struct p11_sess *s, const char *vault,
    unsigned version, CK_OBJECT_HANDLE *key, CK_OBJECT_HANDLE *mac)
{
	char label[96];
	int r;

	/* The hit, once per operation: no label to print. */
	if (cache_find(ctx, vault, version, key, mac))
		return 0;
	if ((r = p11_label_make(label, sizeof(label), vault, version, NULL)) != 0)
		return r;

	pthread_mutex_lock(&ctx->keylock);
	r = key_find_copy(ctx, s, vault, version, label, key, mac);
	pthread_mutex_unlock(&ctx->keylock);
	return r;
}

/* p11_key_get's slow path, under keylock: look again (another thread may
 * have cached the key while we waited), else find and copy it.  Only this
 * function adds to the cache, and only under keylock. */
static int
key_find_copy(p11_ctx *ctx, struct p11_sess *s, const char *vault,
    unsigned version, const char *label, CK_OBJECT_HANDLE *key,
    CK_OBJECT_HANDLE *mac)
{
	char maclabel[100];
	CK_OBJECT_HANDLE k, m = CK_INVALID_HANDLE, kc, mc;
	struct p11_kcache *e;
	int r;

	if (cache_find(ctx, vault, version, key, mac))
		return 0;
	if ((r = p11_find_one(ctx, s, CKO_SECRET_KEY, label, &k)) != 0) {
		if (r == KW_E_KEY_NOT_FOUND)
			r = kw_fail(r, "vault '%s' has no master key v%u in token "
			    "'%s'", vault, version, TOKNAME(ctx));
		return r;
	}
	snprintf(maclabel, sizeof(maclabel), "%s/mac", label);
	if ((r = p11_find_one(ctx, s, CKO_SECRET_KEY, maclabel, &m)) != 0) {
		if (r != KW_E_KEY_NOT_FOUND)
			return r;
		m = CK_INVALID_HANDLE;
	}
	kc = p11_session_copy(ctx, s, k);
	mc = p11_session_copy(ctx, s, m);

	/* No reopen can run while we hold a session: the handles are current. */
	pthread_mutex_lock(&ctx->lock);
	if (kw_grow((void **)&ctx->cache, &ctx->cachecap, ctx->ncache,
	    sizeof(*ctx->cache)) != 0) {
		pthread_mutex_unlock(&ctx->lock);
		copy_destroy(ctx, s, kc, k);
		copy_destroy(ctx, s, mc, m);
		return -ENOMEM;
	}
	e = &ctx->cache[ctx->ncache++];
	memset(e, 0, sizeof(*e));
	snprintf(e->label, sizeof(e->label), "%s", label);
	snprintf(e->vault, sizeof(e->vault), "%s", vault);
	e->version = version;
	e->key = kc;
	e->mac = mc;
	e->tkey = k;
	e->tmac = m;
	pthread_mutex_unlock(&ctx->lock);
	*key = kc;
	*mac = mc;
	return 0;
}

/* The entry of a vault's key version, with ctx->lock held, or NULL. */
static struct p11_kcache *
cache_entry(p11_ctx *ctx, const char *vault, unsigned version)
{
	for (size_t i = 0; i < ctx->ncache; i++)
		if (ctx->cache[i].version == version &&
		    strcmp(ctx->cache[i].vault, vault) == 0)
			return &ctx->cache[i];
	return NULL;
}

static int
canary_slot(enum p11_wrap_mech m)
{
	return m == P11_WRAP_AES_GCM ? 0 : m == P11_WRAP_AES_KWP ? 1 : -1;
}

int
p11_canary_get(p11_ctx *ctx, const char *vault, unsigned version,
    enum p11_wrap_mech m, uint8_t *out, size_t *len)
{
	struct p11_kcache *e;
	int i = canary_slot(m), found = 0;

	if (i < 0)
		return 0;
	pthread_mutex_lock(&ctx->lock);
	if ((e = cache_entry(ctx, vault, version)) != NULL && e->canarylen[i] > 0) {
		memcpy(out, e->canary[i], e->canarylen[i]);
		*len = e->canarylen[i];
		found = 1;
	}
	pthread_mutex_unlock(&ctx->lock);
	return found;
}

void
p11_canary_put(p11_ctx *ctx, const char *vault, unsigned version,
    enum p11_wrap_mech m, const uint8_t *blob, size_t len)
{
	struct p11_kcache *e;
	int i = canary_slot(m);

	if (i < 0 || len == 0 || len > P11_WRAPPED_MAX)
		return;
	pthread_mutex_lock(&ctx->lock);
	if ((e = cache_entry(ctx, vault, version)) != NULL) {
		memcpy(e->canary[i], blob, len);
		e->canarylen[i] = len;
	}
	pthread_mutex_unlock(&ctx->lock);
}

/* Generate a token secret key from template t (n attributes, the last one
 * being CKA_MODIFIABLE=false, dropped if the token refuses it, or if the
 * token copies only modifiable keys: non-modifiable would then cost the
 * session copies, and a modifiable key stays sensitive and unextractable,
 * since those two attributes can only be tightened). */
static CK_RV
keygen(p11_ctx *ctx, struct p11_sess *s, CK_MECHANISM_TYPE mt,
    CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out)
{
	CK_MECHANISM m = { mt, NULL, 0 };
	CK_RV rv;

	if (ctx->copies == P11_COPY_MODIFIABLE)
		return ctx->f->C_GenerateKey(s->h, &m, t, n - 1, out);
	rv = ctx->f->C_GenerateKey(s->h, &m, t, n, out);
	if (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
	    rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_READ_ONLY)
		rv = ctx->f->C_GenerateKey(s->h, &m, t, n - 1, out);
	return rv;
}

struct create_arg {
	const char *vault;
	unsigned version;
	struct p11_mkey mk;
};

static int
op_mkey_create(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct create_arg *a = arg;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES, gen = CKK_GENERIC_SECRET;
	CK_ULONG vlen = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_BBOOL wrap = ctx->has_kwp ? CK_TRUE : CK_FALSE;
	CK_OBJECT_HANDLE k = CK_INVALID_HANDLE, m = CK_INVALID_HANDLE;
	char label[96], maclabel[100];
	uint8_t id[P11_ID_LEN];
	CK_RV rv;
	int r;

	if ((r = p11_label_make(label, sizeof(label), a->vault, a->version,
	    NULL)) != 0)
		return r;
	snprintf(maclabel, sizeof(maclabel), "%s/mac", label);
	r = p11_find_one(ctx, s, CKO_SECRET_KEY, label, &k);
	if (r == 0)
		return kw_fail(KW_E_KEY_EXISTS, "vault '%s' already has master "
		    "key v%u ('%s') in token '%s'", a->vault, a->version, label,
		    TOKNAME(ctx));
	if (r != KW_E_KEY_NOT_FOUND)
		return r;
	k = CK_INVALID_HANDLE;
	if ((r = p11_sess_rng(ctx, s, id, sizeof(id))) != 0)
		return r;
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &cls, sizeof(cls) },
			{ CKA_KEY_TYPE, &aes, sizeof(aes) },
			{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_ENCRYPT, &yes, sizeof(yes) },
			{ CKA_DECRYPT, &yes, sizeof(yes) },
			{ CKA_WRAP, &wrap, sizeof(wrap) },
			{ CKA_UNWRAP, &wrap, sizeof(wrap) },
			{ CKA_LABEL, label, strlen(label) },
			{ CKA_ID, id, sizeof(id) },
			{ CKA_MODIFIABLE, &no, sizeof(no) },    /* last */
		};

		rv = keygen(ctx, s, CKM_AES_KEY_GEN, t, sizeof(t) / sizeof(t[0]),
		    &k);
		if (rv != CKR_OK)
			return p11_sfail(s, "C_GenerateKey", rv, "cannot create "
			    "AES-256 master key '%s' in token '%s'", label,
			    TOKNAME(ctx));
	}
	/* The companion HMAC key of the ECB+HMAC wrap, made whenever the token
	 * can, so that the wrap mechanism can change later. */
	if (ctx->has_hmac && ctx->has_gen_gen) {
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &cls, sizeof(cls) },
			{ CKA_KEY_TYPE, &gen, sizeof(gen) },
			{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_SIGN, &yes, sizeof(yes) },
			{ CKA_VERIFY, &yes, sizeof(yes) },
			{ CKA_LABEL, maclabel, strlen(maclabel) },
			{ CKA_ID, id, sizeof(id) },
			{ CKA_MODIFIABLE, &no, sizeof(no) },    /* last */
		};

		rv = keygen(ctx, s, CKM_GENERIC_SECRET_KEY_GEN, t,
		    sizeof(t) / sizeof(t[0]), &m);
		if (rv != CKR_OK) {
			m = CK_INVALID_HANDLE;
			if (ctx->wrap == P11_WRAP_ECB_HMAC) {
				ctx->f->C_DestroyObject(s->h, k);
				return p11_sfail(s, "C_GenerateKey", rv, "cannot "
				    "create HMAC key '%s' in token '%s'", maclabel,
				    TOKNAME(ctx));
			}
		}
	} else if (ctx->wrap == P11_WRAP_ECB_HMAC) {
		ctx->f->C_DestroyObject(s->h, k);
		return kw_fail(KW_E_INTERNAL, "ECB+HMAC wrap chosen without HMAC");
	}
	cache_drop(ctx, s, label);
	memset(&a->mk, 0, sizeof(a->mk));
	a->mk.version = a->version;
	memcpy(a->mk.id, id, sizeof(id));
	snprintf(a->mk.label, sizeof(a->mk.label), "%s", label);
	return 0;
}

int
p11_mkey_create(p11_ctx *ctx, const char *vault, unsigned version,
    struct p11_mkey *out)
{
	struct create_arg a;
	char label[96];
	int r;

	if ((r = p11_label_make(label, sizeof(label), vault, version, NULL)) != 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.vault = vault;
	a.version = version;
	if ((r = p11_run_keylocked(ctx, op_mkey_create, &a)) != 0)
		return r;
	if (out != NULL)
		*out = a.mk;
	return 0;
}

struct list_arg {
	const char *vault;
	struct p11_mkey *v;
	size_t n, cap;
};

static int
mkey_cmp(const void *a, const void *b)
{
	const struct p11_mkey *x = a, *y = b;

	return x->version < y->version ? -1 : x->version > y->version;
}

/* "keywarden/<vault>/v<N>" exactly: the version, or 0. */
static unsigned
label_version(const char *label, const char *vault)
{
	size_t pl = strlen(LABEL_PREFIX), vl = strlen(vault);
	unsigned long v = 0;
	const char *p;

	if (strncmp(label, LABEL_PREFIX, pl) != 0 ||
	    strncmp(label + pl, vault, vl) != 0 ||
	    strncmp(label + pl + vl, "/v", 2) != 0)
		return 0;
	p = label + pl + vl + 2;
	if (*p < '1' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (unsigned long)(*p - '0')) > 0xffffffffUL)
			return 0;
	return *p == '\0' ? (unsigned)v : 0;
}

/* One object of the search: keep it if its label is a version of the vault. */
static int
mkey_list_one(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE h, void *arg)
{
	struct list_arg *a = arg;
	char label[128];
	uint8_t id[64];
	unsigned ver;
	CK_ATTRIBUTE at[] = {
		{ CKA_LABEL, label, sizeof(label) - 1 },
		{ CKA_ID, id, sizeof(id) },
	};

	if (ctx->f->C_GetAttributeValue(s->h, h, at, 2) != CKR_OK)
		return 0;
	label[at[0].ulValueLen] = '\0';
	if ((ver = label_version(label, a->vault)) == 0 ||
	    strlen(label) >= sizeof(a->v[0].label))
		return 0;
	if (kw_grow((void **)&a->v, &a->cap, a->n, sizeof(*a->v)) != 0)
		return -ENOMEM;
	memset(&a->v[a->n], 0, sizeof(a->v[a->n]));
	a->v[a->n].version = ver;
	memcpy(a->v[a->n].id, id, at[1].ulValueLen < P11_ID_LEN ?
	    at[1].ulValueLen : P11_ID_LEN);
	memcpy(a->v[a->n].label, label, strlen(label) + 1);
	a->n++;
	return 0;
}

static int
op_mkey_list(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct list_arg *a = arg;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES;
	CK_BBOOL tok = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &aes, sizeof(aes) },
		{ CKA_TOKEN, &tok, sizeof(tok) },
	};

	a->n = 0;
	return p11_find_each(ctx, s, t, 3, "keys", mkey_list_one, a);
}

int
p11_mkey_list(p11_ctx *ctx, const char *vault, struct p11_mkey **out,
    size_t *n)
{
	struct list_arg a;
	int r;

	if ((r = vault_check(vault)) != 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.vault = vault;
	if ((r = p11_run_keylocked(ctx, op_mkey_list, &a)) != 0) {
		free(a.v);
		return r;
	}
	if (a.n > 1)
		qsort(a.v, a.n, sizeof(*a.v), mkey_cmp);
	*out = a.v;
	*n = a.n;
	return 0;
}

struct destroy_arg {
	const char *vault;
	unsigned version;
};

static int
op_mkey_destroy(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct destroy_arg *a = arg;
	CK_OBJECT_HANDLE k, m;
	char label[96], maclabel[100];
	CK_RV rv;
	int r;

	if ((r = p11_label_make(label, sizeof(label), a->vault, a->version,
	    NULL)) != 0)
		return r;
	snprintf(maclabel, sizeof(maclabel), "%s/mac", label);
	cache_drop(ctx, s, label);
	if ((r = p11_find_one(ctx, s, CKO_SECRET_KEY, label, &k)) != 0) {
		if (r == KW_E_KEY_NOT_FOUND)
			r = kw_fail(r, "vault '%s' has no master key v%u in token "
			    "'%s'", a->vault, a->version, TOKNAME(ctx));
		return r;
	}
	r = p11_find_one(ctx, s, CKO_SECRET_KEY, maclabel, &m);
	if (r == 0 && (rv = ctx->f->C_DestroyObject(s->h, m)) != CKR_OK)
		return p11_sfail(s, "C_DestroyObject", rv, "cannot destroy '%s' "
		    "in token '%s'", maclabel, TOKNAME(ctx));
	if (r != 0 && r != KW_E_KEY_NOT_FOUND)
		return r;
	if ((rv = ctx->f->C_DestroyObject(s->h, k)) != CKR_OK)
		return p11_sfail(s, "C_DestroyObject", rv, "cannot destroy '%s' "
		    "in token '%s'", label, TOKNAME(ctx));
	return 0;
}

int
p11_mkey_destroy(p11_ctx *ctx, const char *vault, unsigned version)
{
	struct destroy_arg a = { vault, version };

	return p11_run_keylocked(ctx, op_mkey_destroy, &a);
}

/* ---- audit key ------------------------------------------------------------ */

static int audit_find_copy(p11_ctx *ctx, struct p11_sess *s, int create,
    CK_OBJECT_HANDLE *out);

/* 1 and the audit key's cached handle, or 0. */
static int
audit_cached(p11_ctx *ctx, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_HANDLE h;

	pthread_mutex_lock(&ctx->lock);
	h = ctx->audit;
	pthread_mutex_unlock(&ctx->lock);
	if (h == CK_INVALID_HANDLE)
		return 0;
	*out = h;
	return 1;
}

static int
audit_get(p11_ctx *ctx, struct p11_sess *s, int create, CK_OBJECT_HANDLE *out)
{
	int r;

	if (audit_cached(ctx, out))
		return 0;
	pthread_mutex_lock(&ctx->keylock);
	r = audit_find_copy(ctx, s, create, out);
	pthread_mutex_unlock(&ctx->keylock);
	return r;
}

/* audit_get's slow path, under keylock (the only place ctx->audit is set). */
static int
audit_find_copy(p11_ctx *ctx, struct p11_sess *s, int create, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
	CK_ULONG vlen = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_HANDLE h;
	uint8_t id[P11_ID_LEN];
	CK_RV rv;
	int r;

	if (audit_cached(ctx, out))
		return 0;
	r = p11_find_one(ctx, s, CKO_SECRET_KEY, AUDIT_LABEL, &h);
	if (r == KW_E_KEY_NOT_FOUND && !create)
		return kw_fail(r, "token '%s' has no audit key '" AUDIT_LABEL "': "
		    "start keywardend once to create it, or use the token that "
		    "sealed the log", TOKNAME(ctx));
	if (r == KW_E_KEY_NOT_FOUND) {
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &cls, sizeof(cls) },
			{ CKA_KEY_TYPE, &gen, sizeof(gen) },
			{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_SIGN, &yes, sizeof(yes) },
			{ CKA_VERIFY, &yes, sizeof(yes) },
			{ CKA_LABEL, (void *)AUDIT_LABEL, strlen(AUDIT_LABEL) },
			{ CKA_ID, id, sizeof(id) },
			{ CKA_MODIFIABLE, &no, sizeof(no) },    /* last */
		};

		if (!ctx->has_hmac || !ctx->has_gen_gen)
			return kw_fail(KW_E_MECHANISM, "C_GetMechanismList: token "
			    "'%s' lacks %s: it cannot hold the audit HMAC key",
			    TOKNAME(ctx), !ctx->has_hmac ? "CKM_SHA256_HMAC" :
			    "CKM_GENERIC_SECRET_KEY_GEN");
		if ((r = p11_sess_rng(ctx, s, id, sizeof(id))) != 0)
			return r;
		rv = keygen(ctx, s, CKM_GENERIC_SECRET_KEY_GEN, t,
		    sizeof(t) / sizeof(t[0]), &h);
		if (rv != CKR_OK)
			return p11_sfail(s, "C_GenerateKey", rv, "cannot create the "
			    "audit key '" AUDIT_LABEL "' in token '%s'", TOKNAME(ctx));
	} else if (r != 0)
		return r;
	h = p11_session_copy(ctx, s, h);
	pthread_mutex_lock(&ctx->lock);
	ctx->audit = h;
	pthread_mutex_unlock(&ctx->lock);
	*out = h;
	return 0;
}

static int
op_audit_ensure(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	CK_OBJECT_HANDLE h;

	(void)arg;
	return audit_get(ctx, s, 1, &h);
}

int
p11_audit_key_ensure(p11_ctx *ctx)
{
	return p11_run(ctx, op_audit_ensure, NULL);
}

struct hmac_arg {
	const void *data;
	size_t len;
	uint8_t *mac;
};

static int
op_audit_hmac(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct hmac_arg *a = arg;
	CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
	CK_OBJECT_HANDLE h;
	CK_ULONG n = P11_MAC_LEN;
	CK_RV rv;
	int r;

	if ((r = audit_get(ctx, s, 0, &h)) != 0)
		return r;
	if ((rv = ctx->f->C_SignInit(s->h, &m, h)) != CKR_OK)
		return p11_sfail(s, "C_SignInit", rv, "cannot start an HMAC by "
		    "the audit key of token '%s'", TOKNAME(ctx));
	if ((rv = ctx->f->C_Sign(s->h, (CK_BYTE_PTR)a->data, a->len, a->mac,
	    &n)) != CKR_OK)
		return p11_sfail(s, "C_Sign", rv, "HMAC by the audit key of token "
		    "'%s' failed", TOKNAME(ctx));
	if (n != P11_MAC_LEN)
		return kw_fail(KW_E_P11, "C_Sign: CKR_OK: token '%s' gave a "
		    "%lu-byte HMAC-SHA256", TOKNAME(ctx), (unsigned long)n);
	return 0;
}

int
p11_audit_hmac(p11_ctx *ctx, const void *data, size_t len,
    uint8_t mac[P11_MAC_LEN])
{
	uint8_t m[P11_MAC_LEN];
	struct hmac_arg a = { data, len, m };
	int r;

	if ((r = p11_run(ctx, op_audit_hmac, &a)) != 0)
		return r;
	memcpy(mac, m, sizeof(m));
	return 0;
}

int
p11_audit_hmac_verify(p11_ctx *ctx, const void *data, size_t len,
    const uint8_t mac[P11_MAC_LEN])
{
	uint8_t m[P11_MAC_LEN];
	int r;

	if ((r = p11_audit_hmac(ctx, data, len, m)) != 0)
		return r;
	if (kw_memeq_ct(m, mac, P11_MAC_LEN) != 0)
		return kw_fail(KW_E_AUTH, "the HMAC does not match the audit key "
		    "of token '%s': the data or its MAC was changed",
		    TOKNAME(ctx));
	return 0;
}

/* ---- test hook ------------------------------------------------------------ */

struct read_arg {
	const char *label;
	CK_RV rv;
	CK_BBOOL sens, extr;
};

static int
op_read_value(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct read_arg *a = arg;
	CK_OBJECT_HANDLE h;
	uint8_t buf[128];
	CK_ATTRIBUTE v = { CKA_VALUE, buf, sizeof(buf) };
	CK_ATTRIBUTE f[] = {
		{ CKA_SENSITIVE, &a->sens, sizeof(a->sens) },
		{ CKA_EXTRACTABLE, &a->extr, sizeof(a->extr) },
	};
	int r;

	if ((r = p11_find_one(ctx, s, CKO_SECRET_KEY, a->label, &h)) != 0)
		return r;
	a->rv = ctx->f->C_GetAttributeValue(s->h, h, &v, 1);
	kw_wipe(buf, sizeof(buf));
	if (ctx->f->C_GetAttributeValue(s->h, h, f, 2) != CKR_OK)
		return kw_fail(KW_E_P11, "cannot read flags of '%s'", a->label);
	return 0;
}

CK_RV
p11_test_read_value(p11_ctx *ctx, const char *label, int *sensitive,
    int *extractable)
{
	struct read_arg a;

	memset(&a, 0, sizeof(a));
	a.label = label;
	if (p11_run_keylocked(ctx, op_read_value, &a) != 0)
		return CKR_GENERAL_ERROR;
	*sensitive = a.sens == CK_TRUE;
	*extractable = a.extr == CK_TRUE;
	return a.rv;
}

struct objs_arg {
	const char *label;
	CK_BBOOL token;
	struct p11_test_obj *out;
};

static int
op_objects(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct objs_arg *a = arg;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)a->label, strlen(a->label) },
		{ CKA_TOKEN, &a->token, sizeof(a->token) },
	};
	CK_OBJECT_HANDLE h[16];
	CK_ULONG n = 0;
	CK_BBOOL f[4];
	CK_ATTRIBUTE fa[] = {
		{ CKA_SENSITIVE, &f[0], 1 }, { CKA_EXTRACTABLE, &f[1], 1 },
		{ CKA_NEVER_EXTRACTABLE, &f[2], 1 }, { CKA_MODIFIABLE, &f[3], 1 },
	};
	CK_RV rv;

	a->out->count = 0;
	a->out->sensitive = a->out->extractable = -1;
	a->out->never_extractable = a->out->modifiable = -1;
	if ((rv = ctx->f->C_FindObjectsInit(s->h, t, 3)) != CKR_OK)
		return p11_sfail(s, "C_FindObjectsInit", rv, "test search");
	rv = ctx->f->C_FindObjects(s->h, h, 16, &n);
	ctx->f->C_FindObjectsFinal(s->h);
	if (rv != CKR_OK)
		return p11_sfail(s, "C_FindObjects", rv, "test search");
	a->out->count = n;
	if (n > 0 && ctx->f->C_GetAttributeValue(s->h, h[0], fa, 4) == CKR_OK) {
		a->out->sensitive = f[0] == CK_TRUE;
		a->out->extractable = f[1] == CK_TRUE;
		a->out->never_extractable = f[2] == CK_TRUE;
		a->out->modifiable = f[3] == CK_TRUE;
	}
	return 0;
}

int
p11_test_objects(p11_ctx *ctx, const char *label, int token,
    struct p11_test_obj *out)
{
	struct objs_arg a = { label, token ? CK_TRUE : CK_FALSE, out };

	return p11_run_keylocked(ctx, op_objects, &a);
}
