/*
 * audit_glue.h - between the daemon's requests and the audit log: builds
 * each request's event (never a value, a key or a PIN) and hands it to the
 * writer; seals with the token's audit key.
 */
#ifndef KW_AUDIT_GLUE_H
#define KW_AUDIT_GLUE_H

#include <jansson.h>

struct kwd;
struct kwd_req;
struct kwac_anchor;
struct p11_ctx;

int audit_glue_open(struct kwd *d);
void audit_glue_close(struct kwd *d);

/* Build r's outcome event and make it durable; then done(arg, 0) or
 * done(arg, error) from another thread. */
void audit_glue_submit(struct kwd_req *r, void (*done)(void *arg, int status), void *arg);

/* For writes: the intent event, durable before the write runs.  0 or a
 * negative code (then the write must not run). */
int audit_glue_intent(struct kwd_req *r);

/* An administrative event (start, stop, reload, vault created, ...),
 * durable on return.  Steals fields. */
int audit_glue_admin(struct kwd *d, const char *type, json_t *fields);

/* The anchor the token holds for the audit log in dir (kw_auditchain.h):
 * 0 and *a; the newer of two (a crash while it was replaced);
 * KW_E_NOT_FOUND when none was written; KW_E_FORMAT when the object holds
 * something else; or the token's error.  Its HMAC is the caller's to check. */
int audit_anchor_read(struct p11_ctx *p11, const char *dir, struct kwac_anchor *a);
int audit_anchor_write(struct p11_ctx *p11, const char *dir, const struct kwac_anchor *a);

/* {"ok":bool, ...} for /v1/health. */
json_t *audit_glue_health(struct kwd *d);

#endif
