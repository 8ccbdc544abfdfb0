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
 * HTTP error) and the HTTP status (0 when there was no reply).  The strings
 * are owned by c and valid until the next call on it. */
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

#ifdef __cplusplus
}
#endif

#endif
