/*
 * keywarden.h - libkeywarden, the C client of the keywarden daemon.
 *
 * It speaks the HTTP/1.1 + JSON API of docs/api.md over the daemon's Unix
 * socket (libcurl), one connection per client kept alive between requests.
 * A kw_client is not thread-safe: use one per thread.
 *
 * Errors: every function returns 0 or a negative code of kw_error.h (an
 * errno value or a KW_E_* code).  An HTTP error maps by status:
 *   400 -EINVAL, 403 KW_E_DENIED (KW_E_RETIRED for key_retired),
 *   404 KW_E_NOT_FOUND, 405 -EOPNOTSUPP, 409 KW_E_CONFLICT,
 *   413 KW_E_TOO_LARGE, 500 KW_E_INTERNAL, 503 KW_E_UNAVAILABLE,
 *   anything else KW_E_PROTOCOL;
 * a daemon that cannot be reached is KW_E_UNAVAILABLE, a reply that is not
 * the JSON it should be is KW_E_PROTOCOL.  After a failure,
 * kw_client_last_error() holds one sentence for a person (the daemon's own
 * message where it sent one), which kw_errdetail(code) also returns.
 *
 * Metadata and lists are the daemon's JSON, returned as jansson objects that
 * the caller owns and releases with json_decref().  The field names are the
 * ones of docs/api.md; fields the daemon adds later simply appear.
 *
 * Outputs are written only on success.  Secret values are returned in a
 * kw_secret (kw_secmem.h: locked memory, kept out of core dumps) that the
 * caller releases with kw_secret_clear(); the library wipes the buffers of
 * its own that held them.
 */
#ifndef KEYWARDEN_H
#define KEYWARDEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "kw_error.h"
#include "kw_secmem.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kw_client kw_client;

/* The socket used when neither an argument nor $KEYWARDEN_SOCKET names one. */
const char *kw_default_socket(void);

/* A client of the daemon at socket_path; NULL means $KEYWARDEN_SOCKET when it
 * is set and not empty, else kw_default_socket().  Nothing is connected yet.
 * Returns 0 and *cp (free with kw_client_free), or -ENOMEM, -ENAMETOOLONG. */
int kw_client_new(kw_client **cp, const char *socket_path);

/* Close the connection and free.  Accepts NULL. */
void kw_client_free(kw_client *c);

/* The socket path in use.  Owned by c. */
const char *kw_client_socket(const kw_client *c);

/* Give up on a request after seconds (0: never).  The default is 120. */
void kw_client_set_timeout(kw_client *c, long seconds);

/* About the last failed call on c: a sentence ("" after a success), the
 * daemon's error code ("secret_not_found"; "" when the failure was not an
 * HTTP error or the reply named no code) and the HTTP status (0 when there
 * was no reply).  A code is "" or 1 to KW_CODE_MAX characters of
 * [a-z0-9_.-]: one that is not (whatever answers on the socket may send
 * anything) reads as KW_CODE_INVALID.  The strings are owned by c and valid
 * until the next call on it. */
#define KW_CODE_MAX 32
#define KW_CODE_INVALID "invalid_code"
const char *kw_client_last_error(const kw_client *c);
const char *kw_client_last_code(const kw_client *c);
long kw_client_last_status(const kw_client *c);

/* The library's code for an HTTP status and the daemon's error code (which
 * may be NULL); 0 for a 2xx status. */
int kw_error_from_http(long status, const char *code);

/* Parse an RFC 3339 date-time ("2026-01-01T00:00:00Z", "...T01:00:00.5+01:00")
 * into seconds since the epoch, UTC (fractions are dropped).  0 or -EINVAL. */
int kw_time_parse(const char *s, int64_t *secs);

/* Format secs as "YYYY-MM-DDTHH:MM:SSZ" into buf (at least 21 bytes).
 * 0 or -EINVAL. */
int kw_time_format(int64_t secs, char *buf, size_t len);

/*
 * Any request: method ("GET", "PUT", ...), path ("/v1/..." with any query
 * already percent-encoded) and an optional JSON body.  On a 2xx reply:
 * returns 0, *status (may be NULL) gets the status and *reply (may be NULL)
 * the parsed JSON (a JSON string holding the text when the body is not
 * JSON, such as /v1/metrics; JSON null when it is empty).  Any other status
 * is an error as described above.
 */
int kw_request(kw_client *c, const char *method, const char *path,
    const json_t *body, long *status, json_t **reply);

/*
 * Store value (len bytes) as a new version of vault/name.  attrs (may be
 * NULL) is an object with any of the PUT body's fields other than "value":
 * "content_type", "tags", "enabled", "not_before", "expires", "encoding".
 * With "encoding":"base64" the bytes are base64 text that the daemon
 * decodes; without it the library sends them as UTF-8 when they are valid
 * UTF-8 and base64-encodes them otherwise.  cas < 0: write unconditionally;
 * cas >= 0: only if the current version is cas (0: only if the name is new),
 * else KW_E_CONFLICT.  *meta (may be NULL) gets the new version's metadata.
 */
int kw_secret_set(kw_client *c, const char *vault, const char *name,
    const void *value, size_t len, const json_t *attrs, int64_t cas,
    json_t **meta);

/* The value of version (0: the current one) of vault/name, decoded to its
 * bytes, into *value (clear with kw_secret_clear); *meta (may be NULL) gets
 * the metadata with "encoding" but without "value". */
int kw_secret_get(kw_client *c, const char *vault, const char *name,
    uint64_t version, kw_secret *value, json_t **meta);

/* {"secrets":[metadata...]}: the current versions, names starting with
 * prefix (NULL: all). */
int kw_secret_list(kw_client *c, const char *vault, const char *prefix,
    json_t **reply);

/* {"versions":[metadata...]}, newest first. */
int kw_secret_versions(kw_client *c, const char *vault, const char *name,
    json_t **reply);

/* Change attributes of version (0: current): changes is an object with any
 * of "enabled", "not_before", "expires" (JSON null clears), "content_type",
 * "tags".  *meta (may be NULL) gets the new metadata. */
int kw_secret_update(kw_client *c, const char *vault, const char *name,
    uint64_t version, const json_t *changes, json_t **meta);

/* Soft delete; *reply (may be NULL): {"vault","name","deleted","scheduled_purge"}. */
int kw_secret_delete(kw_client *c, const char *vault, const char *name,
    json_t **reply);

/* Undelete; *meta (may be NULL) gets the metadata. */
int kw_secret_recover(kw_client *c, const char *vault, const char *name,
    json_t **meta);

/* Remove a deleted secret for good. */
int kw_secret_purge(kw_client *c, const char *vault, const char *name);

/* {"deleted":[{"name","deleted","scheduled_purge","version"}...]}. */
int kw_deleted_list(kw_client *c, const char *vault, json_t **reply);

/* {"vaults":[{"name","key_version","purge_protection","retention_days"}...]}. */
int kw_vault_list(kw_client *c, json_t **reply);

/* The vault's backup document (still encrypted), to give to kw_vault_restore. */
int kw_vault_backup(kw_client *c, const char *vault, json_t **doc);

/* Restore a backup document; *reply (may be NULL): {"vault","restored"}. */
int kw_vault_restore(kw_client *c, const char *vault, const json_t *doc,
    json_t **reply);

/* The caller as the daemon sees it: {"uid","user","gid","group",...}. */
int kw_whoami(kw_client *c, json_t **reply);

/* The daemon's health report {"status":"ok"|"degraded",...}.  Returns 0 and
 * *report for a healthy daemon; for a degraded one (503 with a report) it
 * returns KW_E_UNAVAILABLE and still sets *report, so that the caller can
 * say which part is down.  Any other failure leaves *report alone. */
int kw_health(kw_client *c, json_t **report);

/* ---- base64 ------------------------------------------------------------------ */

/* Standard base64 (with padding) of n bytes into *out, NUL-terminated in
 * secure memory (out->len excludes the NUL); clear with kw_secret_clear. */
int kw_base64_encode(const void *p, size_t n, kw_secret *out);

/* Decode base64 text of n bytes, standard or URL alphabet, padding optional,
 * into *out (clear with kw_secret_clear).  0, -EINVAL or -ENOMEM. */
int kw_base64_decode(const char *s, size_t n, kw_secret *out);

/* ---- master keys and rotation ----------------------------------------------- */

/* Start a rotation: a new master-key version, current at once, and the
 * rewrap of every older record in the background.  *status (may be NULL)
 * gets the status object of kw_rotation_status; KW_E_CONFLICT while one
 * runs. */
int kw_rotation_start(kw_client *c, const char *vault, json_t **status);

/* {"vault","state":"idle"|"running"|"done"|"failed","key_version","started",
 * "finished","done","total","rate_per_s","eta_s","resumed","error",
 * "remaining":{"<older version>":records,...}}. */
int kw_rotation_status(kw_client *c, const char *vault, json_t **status);

/* {"vault","current":N,"keys":[{"version","state","created","retired",
 * "records","in_token"}...]}. */
int kw_master_key_list(kw_client *c, const char *vault, json_t **reply);

/* Retire version (KW_E_CONFLICT while a record uses it or when it is
 * current), or destroy a retired one's token objects (KW_E_CONFLICT before
 * it is retired).  *key (may be NULL) gets the key as listed. */
int kw_master_key_retire(kw_client *c, const char *vault, uint64_t version,
    json_t **key);
int kw_master_key_destroy(kw_client *c, const char *vault, uint64_t version,
    json_t **key);

/* ---- data keys and encryption ------------------------------------------------
 *
 * context (may be NULL) is the encryption context: a JSON object of strings,
 * bound by the daemon as AAD; unwrapping or decrypting needs the same one.
 * Bytes that are not secret (wrapped keys, ciphertexts, signatures) come back
 * in malloc'd buffers that the caller frees with free(); plaintext data keys
 * and payloads come back in a kw_secret.  *key_version (may be NULL) gets the
 * master-key version that did the work.  A wrapped key or ciphertext that is
 * altered, from another vault or with another context is -EINVAL (the daemon
 * says only "invalid_ciphertext"); under a retired version KW_E_RETIRED.
 */

/* A fresh data key of bytes (16..64; 0 means 32) bytes: *plaintext (NULL:
 * ask the daemon not to send it) and *wrapped, the key wrapped by the
 * vault's current master key. */
int kw_datakey(kw_client *c, const char *vault, size_t bytes,
    const json_t *context, kw_secret *plaintext, uint8_t **wrapped,
    size_t *wrapped_len, uint64_t *key_version);

/* The plaintext of a wrapped data key. */
int kw_unwrap(kw_client *c, const char *vault, const void *wrapped,
    size_t wrapped_len, const json_t *context, kw_secret *plaintext,
    uint64_t *key_version);

/* The same data key wrapped by the current master key (it never leaves the
 * daemon); *key_version gets the new version. */
int kw_rewrap(kw_client *c, const char *vault, const void *wrapped,
    size_t wrapped_len, const json_t *context, uint8_t **rewrapped,
    size_t *rewrapped_len, uint64_t *key_version);

/* Encrypt at most KW_ENCRYPT_MAX bytes in the daemon ("KWE1" blob), and
 * decrypt such a blob. */
#define KW_ENCRYPT_MAX 4096
int kw_encrypt(kw_client *c, const char *vault, const void *plaintext,
    size_t len, const json_t *context, uint8_t **ciphertext, size_t *ct_len,
    uint64_t *key_version);
int kw_decrypt(kw_client *c, const char *vault, const void *ciphertext,
    size_t ct_len, const json_t *context, kw_secret *plaintext,
    uint64_t *key_version);

/* ---- signing keys ------------------------------------------------------------ */

/* Create name of type "ec-p256" or "rsa-3072" (KW_E_CONFLICT if it exists),
 * or add a version to it.  *key (may be NULL) gets the key as
 * kw_signkey_get returns it. */
int kw_signkey_create(kw_client *c, const char *vault, const char *name,
    const char *type, json_t **key);
int kw_signkey_rotate(kw_client *c, const char *vault, const char *name,
    json_t **key);

/* Destroy version (not the newest) of a signing key in the token: it
 * neither signs nor verifies any more, and its number is not used again.
 * *key (may be NULL) gets the newest version as kw_signkey_get returns
 * it.  KW_E_CONFLICT for the newest version: rotate first. */
int kw_signkey_destroy(kw_client *c, const char *vault, const char *name,
    uint64_t version, json_t **key);

/* Disable (enabled 0) or enable again one version of a signing key.  A
 * disabled version neither signs nor verifies through the daemon (its
 * public key stays readable); disabling the newest stops all signing with
 * the key until it is enabled or rotated.  *key (may be NULL) gets that
 * version as kw_signkey_get returns it, with "enabled" and
 * "disabled_versions". */
int kw_signkey_set_enabled(kw_client *c, const char *vault, const char *name,
    uint64_t version, int enabled, json_t **key);

/* {"keys":[...]}. */
int kw_signkey_list(kw_client *c, const char *vault, json_t **reply);

/* Version (0: the newest) of a signing key: {"name","type","version",
 * "versions":[..],"kid","public_key_pem":"-----BEGIN PUBLIC KEY-----...",
 * "jwk":{...}}. */
int kw_signkey_get(kw_client *c, const char *vault, const char *name,
    uint64_t version, json_t **key);

/* data is the message, or with KW_SIGN_DIGEST its SHA-256 digest (32
 * bytes).  kw_sign signs with the newest version: *sig (free()) gets the
 * signature OpenSSL verifies (DER for ECDSA), or with KW_SIGN_JOSE the JWS
 * form (raw r||s for ES256); *info (may be NULL) gets
 * {"key_version","kid","alg"}. */
#define KW_SIGN_DIGEST 0x1u
#define KW_SIGN_JOSE 0x2u
int kw_sign(kw_client *c, const char *vault, const char *name,
    const char *alg, const void *data, size_t len, unsigned flags,
    uint8_t **sig, size_t *sig_len, json_t **info);

/* Check sig (DER or raw) over data with version (0: the newest): *valid
 * gets 1 or 0.  flags: KW_SIGN_DIGEST. */
int kw_verify(kw_client *c, const char *vault, const char *name,
    const char *alg, const void *data, size_t len, unsigned flags,
    const void *sig, size_t sig_len, uint64_t version, int *valid);

/* ---- file encryption ----------------------------------------------------------
 *
 * Envelope encryption of a stream of any size (the format is in
 * docs/file-format.md): a fresh data key from the daemon, wrapped under the
 * vault's master key with the context {"keywarden.file":"v1"} plus the
 * caller's, and AES-256-GCM in 64 KiB chunks under a key derived from it.
 * The vault and the caller's context travel in the file's header.
 *
 * kw_file_encrypt reads in to its end and writes out.  kw_file_decrypt
 * reads the vault from the header, has the daemon unwrap the key, and
 * writes each chunk only after its tag checked; context NULL takes the
 * header's, otherwise it must equal the header's.  On failure (KW_E_AUTH
 * for an altered, truncated, reordered or spliced file, KW_E_FORMAT for one
 * that is not a keywarden file, "chunk N: ..." in kw_errdetail) out may
 * already hold the plaintext of the chunks before the bad one: the caller
 * discards it.  Keys are wiped on every path.
 */
int kw_file_encrypt(kw_client *c, const char *vault, const json_t *context,
    FILE *in, FILE *out);
int kw_file_decrypt(kw_client *c, const json_t *context, FILE *in, FILE *out);

/* The file in, with its data key wrapped by the vault's current master
 * key, written to out: after a rotation, so that the file still opens
 * once the old master-key version is retired.  The data key stays the
 * same; the header gets the new wrapped key and a fresh salt, and every
 * chunk is checked and sealed again (the header is bound into each
 * chunk's tag).  The new wrapped key is unwrapped and compared before
 * anything is written.  *from_version and *to_version get the versions;
 * when they are equal the key is current already and nothing is written
 * to out.  context as for kw_file_decrypt.  Errors as kw_file_decrypt;
 * on failure out may hold part of the new file: the caller discards it. */
int kw_file_rewrap(kw_client *c, const json_t *context, FILE *in, FILE *out,
    uint64_t *from_version, uint64_t *to_version);

#ifdef __cplusplus
}
#endif

#endif
