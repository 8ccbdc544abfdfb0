/*
 * p11.h - keywarden's only door to a PKCS#11 token.
 *
 * Nothing outside pkcs11/ includes pkcs11.h or calls the module.  This layer
 * loads a module, finds the token, logs in, keeps a pool of sessions, and
 * offers message-shaped operations on opaque keys: create/list/destroy the
 * versioned master keys of a vault, wrap/unwrap data keys under them, the
 * audit HMAC, and the token's RNG.  It could run in a process of its own.
 *
 * Errors: 0 or a negative code of kw_error.h.  On failure a sentence naming
 * the PKCS#11 function, the CKR_ name and what to do is left in
 * kw_errdetail().  This layer never logs.  All functions are thread-safe;
 * each uses a pooled session exclusively for the length of one call.
 */
#ifndef KW_P11_H
#define KW_P11_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct p11_ctx p11_ctx;

/* How a data key is wrapped.  The value is stored inside every wrapped
 * blob, so a later change of mechanism still unwraps old blobs. */
enum p11_wrap_mech {
	P11_WRAP_AUTO = 0,      /* best the token offers, probed at open */
	P11_WRAP_AES_GCM = 1,   /* C_Encrypt CKM_AES_GCM, AAD bound */
	P11_WRAP_AES_KWP = 2,   /* CKM_AES_KEY_WRAP_PAD (RFC 5649), AAD digest wrapped in */
	P11_WRAP_ECB_HMAC = 3,  /* CKM_AES_ECB + CKM_SHA256_HMAC with a companion key */
};

#define P11_SESSIONS_MAX 256

struct p11_options {
	const char *module;     /* path of the PKCS#11 module (required) */
	const char *token;      /* token label, serial number, or RFC 7512 "pkcs11:" URI */
	const char *pin_file;   /* file holding the user PIN: see p11_pin_read */
	unsigned sessions;      /* size of the session pool; 0 = 4, at most P11_SESSIONS_MAX */
	enum p11_wrap_mech wrap;/* P11_WRAP_AUTO, or a mechanism to require */
	int no_session_copies;  /* 1: operate on the token objects themselves */
};

struct p11_token_info {
	char label[33];
	char serial[17];
	char manufacturer[33];
	char model[17];
	enum p11_wrap_mech wrap;   /* mechanism used for new wraps */
	unsigned sessions;
	/* Keys are used through session copies (see pkcs11/README.md);
	 * keys_modifiable: new keys are created modifiable, because this token
	 * copies no other (SoftHSM). */
	int session_copies, keys_modifiable;
};

/* Load the module, find the token, read the PIN (wiped at once), log in,
 * open the pool and probe mechanisms.  *out is written only on success. */
int p11_open(const struct p11_options *opt, p11_ctx **out);

/* Close the sessions (closing the last one of the process logs out: login
 * is per process in PKCS#11 and shared by the contexts on one module),
 * finalize when the last context on the module closes and we initialized
 * it (not when it was already initialized by someone else), unload.
 * Accepts NULL. */
void p11_close(p11_ctx *ctx);

int p11_token_info(p11_ctx *ctx, struct p11_token_info *out);

/* Cheap liveness check of the token and login (for health).  May reopen. */
int p11_ping(p11_ctx *ctx);

/* Fill buf with len bytes from the token's RNG. */
int p11_random(p11_ctx *ctx, void *buf, size_t len);

const char *p11_wrap_mech_name(enum p11_wrap_mech m);

/* ---- master keys ------------------------------------------------------- */

#define P11_VAULT_MAX 64        /* bytes of a vault name */
#define P11_ID_LEN 16           /* bytes of the random CKA_ID */

struct p11_mkey {
	unsigned version;
	uint8_t id[P11_ID_LEN];
	char label[96];          /* "keywarden/<vault>/v<N>" */
};

/* Create version `version` (>= 1) of the vault's master key: AES-256,
 * token, private, sensitive, non-extractable, non-modifiable where allowed
 * (and where it does not bar session copies), a random CKA_ID; plus
 * whatever companion key the wrap mechanism needs.
 * KW_E_KEY_EXISTS when that version exists. */
int p11_mkey_create(p11_ctx *ctx, const char *vault, unsigned version,
    struct p11_mkey *out);

/* All versions present in the token for the vault, sorted by version.
 * *out is malloc'd (caller frees with free()); *n may be 0. */
int p11_mkey_list(p11_ctx *ctx, const char *vault, struct p11_mkey **out,
    size_t *n);

/* Destroy a version's objects in the token.  KW_E_KEY_NOT_FOUND if absent. */
int p11_mkey_destroy(p11_ctx *ctx, const char *vault, unsigned version);

/* ---- wrapping data keys ------------------------------------------------ */

#define P11_DEK_MAX 64          /* largest data key accepted */
#define P11_WRAPPED_MAX 160     /* largest wrapped blob produced */

/* Wrap dek (1..P11_DEK_MAX bytes) under the vault's master key `version`,
 * binding aad (may be empty) and the vault name (see pkcs11/README.md for
 * the blob format).  out holds at least P11_WRAPPED_MAX bytes;
 * *outlen receives the blob length.  The blob names its format, mechanism
 * and master-key version; its header is authenticated with the AAD. */
int p11_wrap(p11_ctx *ctx, const char *vault, unsigned version,
    const uint8_t *dek, size_t deklen, const void *aad, size_t aadlen,
    uint8_t *out, size_t *outlen);

/* Unwrap a blob of p11_wrap().  dek holds at least P11_DEK_MAX bytes (use
 * kw_secalloc memory).  A changed byte, another AAD or another vault gives
 * KW_E_AUTH (KW_E_FORMAT when the header no longer parses); an unknown
 * version, or a vault without that version, KW_E_KEY_NOT_FOUND; a blob of
 * a mechanism this token lacks KW_E_MECHANISM.  A token that fails to
 * decrypt gives its own error (KW_E_P11, ...), never KW_E_AUTH, even when
 * it answers as some tokens answer a bad tag: a canary decides (see
 * pkcs11/README.md). */
int p11_unwrap(p11_ctx *ctx, const char *vault, const uint8_t *blob,
    size_t bloblen, const void *aad, size_t aadlen, uint8_t *dek,
    size_t *deklen);

/* Read a blob's header without the token. */
int p11_blob_info(const uint8_t *blob, size_t bloblen, unsigned *version,
    enum p11_wrap_mech *mech);

/* ---- signing keys --------------------------------------------------------- */

/* Asymmetric key pairs generated in the token: the private key is token,
 * private, sensitive, never extractable, CKA_SIGN only; the public key a
 * token object with CKA_VERIFY.  Both carry the label
 * "keywarden/<vault>/sign/<name>/v<N>" and one random CKA_ID.  Versions
 * start at 1; signing normally uses the newest. */

enum p11_skey_type {
	P11_SKEY_EC_P256 = 1,    /* ES256 */
	P11_SKEY_RSA_3072 = 2,   /* RS256, PS256 */
};

enum p11_sig_alg {
	P11_SIG_ES256 = 1,       /* ECDSA P-256 over SHA-256; raw r||s (64 bytes) */
	P11_SIG_RS256 = 2,       /* RSASSA-PKCS1-v1_5 with SHA-256 */
	P11_SIG_PS256 = 3,       /* RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 */
};

#define P11_SKEY_NAME_MAX 64     /* bytes of a signing key name: [A-Za-z0-9._-] */
#define P11_SIG_MAX 512          /* largest signature produced */

struct p11_skey {
	char name[P11_SKEY_NAME_MAX + 1];
	unsigned version;
	enum p11_skey_type type;
	uint8_t id[P11_ID_LEN];
	char label[160];
};

const char *p11_skey_type_name(enum p11_skey_type t);   /* "ec-p256", "rsa-3072" */
int p11_skey_type_parse(const char *s, enum p11_skey_type *out);
const char *p11_sig_alg_name(enum p11_sig_alg a);       /* "ES256", ... */
int p11_sig_alg_parse(const char *s, enum p11_sig_alg *out);
/* 0 when alg fits the key type, else -EINVAL with a detail. */
int p11_sig_alg_check(enum p11_skey_type t, enum p11_sig_alg a);

/* Generate version `version` of the named key pair (C_GenerateKeyPair).
 * KW_E_KEY_EXISTS when that version exists; KW_E_MECHANISM when the token
 * cannot generate the type. */
int p11_skey_create(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version, enum p11_skey_type type, struct p11_skey *out);

/* Every version of every signing key of the vault (name NULL), or of one
 * name, sorted by name then version.  *out malloc'd (free()); *n may be 0. */
int p11_skey_list(p11_ctx *ctx, const char *vault, const char *name,
    struct p11_skey **out, size_t *n);

/* The public key as DER SubjectPublicKeyInfo, read from the token's public
 * object.  *der malloc'd (free()).  KW_E_KEY_NOT_FOUND if absent. */
int p11_skey_public(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version, uint8_t **der, size_t *derlen);

/* Sign a SHA-256 digest with the private key (the digest is computed by the
 * caller).  sig holds P11_SIG_MAX bytes; ES256 gives raw r||s.
 * -EINVAL if alg does not fit the key's type. */
int p11_skey_sign(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version, enum p11_sig_alg alg, const uint8_t digest[32],
    uint8_t *sig, size_t *siglen);

/* Destroy both objects of a version.  KW_E_KEY_NOT_FOUND if absent. */
int p11_skey_destroy(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version);

/* ---- audit key ---------------------------------------------------------- */

#define P11_MAC_LEN 32

/* Find the audit HMAC key ("keywarden/audit"), creating it when absent. */
int p11_audit_key_ensure(p11_ctx *ctx);

/* HMAC-SHA256 by the token's audit key. */
int p11_audit_hmac(p11_ctx *ctx, const void *data, size_t len,
    uint8_t mac[P11_MAC_LEN]);

/* 0 when mac is right, KW_E_AUTH when not (compared in constant time). */
int p11_audit_hmac_verify(p11_ctx *ctx, const void *data, size_t len,
    const uint8_t mac[P11_MAC_LEN]);

/* ---- data objects -------------------------------------------------------- */

#define P11_DATA_MAX 4096        /* bytes of one value */

/* A small value the token keeps: a private token data object (CKO_DATA,
 * CKA_PRIVATE: only a logged-in session reads or writes it). */
struct p11_data {
	uint8_t *value;          /* malloc'd, NUL after the last byte */
	size_t len;
};

/* Every value labelled label, in no order: usually one; none when never
 * written; two after a crash inside p11_data_write (the caller picks).
 * *out malloc'd (p11_data_free), NULL when *n is 0. */
int p11_data_read(p11_ctx *ctx, const char *label, struct p11_data **out, size_t *n);
void p11_data_free(struct p11_data *v, size_t n);

/* Replace the value labelled label: a new object is created, then the
 * others of that label are destroyed (a token creates and destroys an
 * object whole; a rewrite in place may be torn by a crash). */
int p11_data_write(p11_ctx *ctx, const char *label, const void *value, size_t len);

/* ---- PIN file ----------------------------------------------------------- */

/* Read a PIN from path into secure memory (trailing newline stripped).
 * Refuses a file that is not a regular file, is group/world accessible, is
 * owned by another user than the caller or root, or has more than one hard
 * link; and one in a directory owned by another user than the caller or
 * root, or writable by group or other without the sticky bit.  Free with
 * kw_secfree. */
int p11_pin_read(const char *path, char **pin, size_t *pinlen);

/* The same checks of path and its directory for a daemon that will run as
 * uid (an offline check of a configuration, run as root for another
 * user), without reading the PIN: 0 or KW_E_PIN (kw_errdetail says why).
 * Checked for another user than the caller, a file of root's is refused
 * too: that user could not open it. */
int p11_pin_check(const char *path, uid_t uid);

#endif
