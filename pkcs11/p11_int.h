/*
 * p11_int.h - internals shared by the files of pkcs11/ (and its tests).
 * Nothing outside pkcs11/ and tests/unit/test_p11*.c includes this.
 */
#ifndef KW_P11_INT_H
#define KW_P11_INT_H

#include <pthread.h>
#include <sys/stat.h>

#include <p11-kit/pkcs11.h>

#include "p11.h"

/* One pooled session.  rv is the CK_RV of the last failed call made on it
 * during the current operation, so that the pool can tell whether a reopen
 * may help. */
/* Public random bytes (IVs, nonces) drawn from the token's RNG this many
 * at a time per session; see p11_sess_nonce. */
#define P11_NONCE_POOL 768

struct p11_sess {
	CK_SESSION_HANDLE h;
	int busy;
	CK_RV rv;
	uint8_t nonces[P11_NONCE_POOL];
	size_t nonces_left;      /* the unused ones are nonces[0..nonces_left) */
};

/* A cached master key: looked up once, forgotten on reopen.  key and mac
 * are the handles operations use: session copies when the token makes
 * them, else the token objects tkey and tmac themselves. */
struct p11_kcache {
	char label[96];
	char vault[P11_VAULT_MAX + 1];  /* looked up by vault and version */
	unsigned version;
	CK_OBJECT_HANDLE key;
	CK_OBJECT_HANDLE mac;   /* companion HMAC key, or CK_INVALID_HANDLE */
	CK_OBJECT_HANDLE tkey, tmac;
	/* Canaries (p11_wrap.c): a blob the token wrapped under this key by
	 * AES-GCM ([0]) and by AES-KWP ([1]), made the first time a failure of
	 * that mechanism needs one; length 0 until then. */
	uint8_t canary[2][P11_WRAPPED_MAX];
	size_t canarylen[2];
};

/* Session copies of token keys (C_CopyObject with CKA_TOKEN false): the
 * same key, still sensitive and never extractable, held by the token in
 * its memory.  Some tokens (SoftHSM's file store) re-read a token object
 * from disk at every operation and serve a copy several times faster.
 * How the token answered the probe at open: */
enum p11_copy_mode {
	P11_COPY_OFF = 0,        /* no copies: asked so, or the token refuses */
	P11_COPY_ON = 1,         /* copies of non-modifiable keys */
	P11_COPY_MODIFIABLE = 2, /* copies only of modifiable keys (SoftHSM): new
	                          * keys are created without CKA_MODIFIABLE false */
};

struct p11_mod;

struct p11_ctx {
	struct p11_mod *mod;            /* shared, refcounted per module */
	CK_FUNCTION_LIST_PTR f;
	char *module;
	char *token;
	char *pin_file;
	/* The PIN file as it was when the token refused its PIN: it is not
	 * offered again until the file changes, for each refused login
	 * counts towards locking the PIN (or wiping the partition). */
	int pin_refused;
	int opened;                     /* tinfo is the token opened at start */
	struct stat pin_seen;
	CK_SLOT_ID slot;
	CK_TOKEN_INFO tinfo;

	/* Held (with a session) by whoever searches for, copies, creates or
	 * destroys master and audit keys: a token may show a copy under
	 * construction to a concurrent search, as SoftHSM does (its
	 * CKA_TOKEN still true, copied from the original).  Also by whoever
	 * creates or destroys any token object (signing keys, data objects):
	 * SoftHSM's file store fails one of two token objects created at
	 * once by two threads with CKR_GENERAL_ERROR (SoftHSMv2 issue 573;
	 * seen here when the audit anchor and a vault's owner were written
	 * together). */
	pthread_mutex_t keylock;
	pthread_mutex_t lock;           /* guards everything below */
	pthread_cond_t cond;
	struct p11_sess *sess;
	unsigned nsess;
	unsigned nbusy;
	int reopening;
	unsigned long gen;              /* bumped by every reopen */

	struct p11_kcache *cache;
	size_t ncache, cachecap;
	CK_OBJECT_HANDLE audit;         /* CK_INVALID_HANDLE until found */
	enum p11_copy_mode copies;

	/* mechanisms probed at open */
	int has_gcm, has_kwp, has_ecb, has_hmac, has_aes_gen, has_gen_gen;
	enum p11_wrap_mech wrap;        /* used for new wraps */
};

#define TOKNAME(ctx) ((ctx)->token != NULL ? (ctx)->token : "(any)")

/* p11_rv.c */
const char *p11_rv_name(CK_RV rv);
/* Map a failed CK_RV to the project's code and leave a detail naming fn,
 * the CKR_ name and what. */
int p11_fail_rv(const char *fn, CK_RV rv, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int p11_rv_retryable(CK_RV rv);

/* p11_module.c: run op with a pooled session; on a session/device/login
 * failure reopen the token and run it once more. */
typedef int (*p11_op_fn)(p11_ctx *ctx, struct p11_sess *s, void *arg);
int p11_run(p11_ctx *ctx, p11_op_fn op, void *arg);
/* p11_run with op under ctx->keylock (p11_keys.c). */
int p11_run_keylocked(p11_ctx *ctx, p11_op_fn op, void *arg);
/* n bytes from the token's RNG on session s (key ids, nonces);
 * 0, or the failure recorded on s. */
int p11_sess_rng(p11_ctx *ctx, struct p11_sess *s, void *out, size_t n);
/* n bytes for an IV or a nonce: public values that must never repeat,
 * from the token's RNG.  One C_GenerateRandom per P11_NONCE_POOL bytes
 * instead of one per wrap (5 % of a rewrap); each byte is handed out once
 * and then zeroed.  Never for keys. */
int p11_sess_nonce(p11_ctx *ctx, struct p11_sess *s, uint8_t *out, size_t n);
/* Record rv on the session and return p11_fail_rv(). */
int p11_sfail(struct p11_sess *s, const char *fn, CK_RV rv, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* 0 when the session is still logged in; else the failure, recorded on s
 * (CKR_USER_NOT_LOGGED_IN: the pool logs in again).  Private objects are
 * invisible once the login is lost, so a search that finds nothing, or a
 * listing, asks this first rather than answer "none". */
int p11_sess_logged_in(p11_ctx *ctx, struct p11_sess *s);

/* p11_keys.c */
/* A vault or key name: 1..max bytes of [A-Za-z0-9._-]; 0 or -EINVAL with
 * a detail naming what (e.g. "vault") and the bad byte. */
int p11_name_check(const char *what, const char *s, size_t max);
int p11_name_byte_ok(char c);
/* C_FindObjects over template t, calling fn for each object found (with
 * the search active: fn may read attributes, not search); stops at fn's
 * first non-zero return and returns it.  what names the objects in an
 * error ("keys", "private keys"). */
int p11_find_each(p11_ctx *ctx, struct p11_sess *s, CK_ATTRIBUTE *t, CK_ULONG nt,
    const char *what, int (*fn)(p11_ctx *, struct p11_sess *, CK_OBJECT_HANDLE, void *),
    void *arg);
int p11_label_make(char *buf, size_t len, const char *vault, unsigned version,
    const char *suffix);
/* Find (cached) a vault's master key version: KW_E_KEY_NOT_FOUND if absent. */
int p11_key_get(p11_ctx *ctx, struct p11_sess *s, const char *vault,
    unsigned version, CK_OBJECT_HANDLE *key, CK_OBJECT_HANDLE *mac);
int p11_find_one(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_CLASS cls,
    const char *label, CK_OBJECT_HANDLE *out);
void p11_cache_clear(p11_ctx *ctx);
/* The canary kept with a vault's cached key version for mechanism m
 * (P11_WRAP_AES_GCM or P11_WRAP_AES_KWP): 1 and a copy in out (which
 * holds P11_WRAPPED_MAX bytes), or 0. */
int p11_canary_get(p11_ctx *ctx, const char *vault, unsigned version,
    enum p11_wrap_mech m, uint8_t *out, size_t *len);
/* Keep a canary with the key's cache entry, if the key is still cached. */
void p11_canary_put(p11_ctx *ctx, const char *vault, unsigned version,
    enum p11_wrap_mech m, const uint8_t *blob, size_t len);
/* The handle to operate with for token key h: a session copy made now when
 * the copy mode allows and the copy is still sensitive and unextractable,
 * else h.  Never fails: a refused copy means the token object is used. */
CK_OBJECT_HANDLE p11_session_copy(p11_ctx *ctx, struct p11_sess *s,
    CK_OBJECT_HANDLE h);
/* Probe at open how the token copies keys (sets ctx->copies). */
int p11_copy_probe(p11_ctx *ctx, int wanted);

/* Test hook: C_GetAttributeValue(CKA_VALUE) of the object labelled label;
 * returns its CK_RV (CKR_ATTRIBUTE_SENSITIVE expected), and the object's
 * CKA_SENSITIVE / CKA_EXTRACTABLE in *sensitive / *extractable. */
CK_RV p11_test_read_value(p11_ctx *ctx, const char *label, int *sensitive,
    int *extractable);

/* Test hook: how many secret keys labelled label are token objects (token
 * 1) or session objects (token 0), and the flags of the first one found
 * (each -1 when none is found). */
struct p11_test_obj {
	unsigned long count;
	int sensitive, extractable, never_extractable, modifiable;
};
int p11_test_objects(p11_ctx *ctx, const char *label, int token,
    struct p11_test_obj *out);

#endif
