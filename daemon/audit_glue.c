/*
 * audit_glue.c - every request's event, built from what the daemon knows
 * of it (never a value, a key or a PIN), made durable by daemon/audit.c and
 * sealed by the token's audit key.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "pkcs11/p11.h"
#include "daemon/audit.h"
#include "daemon/audit_glue.h"
#include "daemon/jw.h"
#include "daemon/kwd.h"
#include "daemon/log.h"

static int
glue_seal(void *arg, const uint8_t *data, size_t len, uint8_t mac[32])
{
	struct kwd *d = arg;
	return p11_audit_hmac(d->p11, data, len, mac);
}

int
audit_anchor_read(struct p11_ctx *p11, const char *dir, struct kwac_anchor *out)
{
	char label[KWAC_ANCHOR_LABEL_MAX];
	struct p11_data *v = NULL;
	struct kwac_anchor a;
	size_t n = 0, i, good = 0;
	int r, bad = 0;

	kwac_anchor_label(dir, label);
	if ((r = p11_data_read(p11, label, &v, &n)) != 0)
		return r;
	/* Two values are left by a crash between the write of the new one
	 * and the removal of the old: the newer is the higher seq. */
	for (i = 0; i < n; i++) {
		if (kwac_anchor_parse((const char *)v[i].value, v[i].len, &a) != 0) {
			bad = 1;
			continue;
		}
		if (good == 0 || a.seq > out->seq)
			*out = a;
		good++;
	}
	p11_data_free(v, n);
	if (good > 0)
		return 0;
	if (bad)
		return kw_fail(KW_E_FORMAT, "the token's data object '%s' is not an audit anchor written by keywardend",
		    label);
	return kw_fail(KW_E_NOT_FOUND, "the token holds no audit anchor for %s", dir);
}

int
audit_anchor_write(struct p11_ctx *p11, const char *dir, const struct kwac_anchor *a)
{
	char text[KWAC_ANCHOR_TEXT_MAX], label[KWAC_ANCHOR_LABEL_MAX];
	int n;

	if ((n = kwac_anchor_format(a, text, sizeof(text))) < 0)
		return KW_E_INTERNAL;
	kwac_anchor_label(dir, label);
	return p11_data_write(p11, label, text, (size_t)n);
}

static int
glue_anchor_get(void *arg, struct kwac_anchor *a)
{
	struct kwd *d = arg;
	return audit_anchor_read(d->p11, d->cfg->audit_dir, a);
}

static int
glue_anchor_put(void *arg, const struct kwac_anchor *a)
{
	struct kwd *d = arg;
	return audit_anchor_write(d->p11, d->cfg->audit_dir, a);
}

int
audit_glue_open(struct kwd *d)
{
	struct audit_options o;

	memset(&o, 0, sizeof(o));
	o.dir = d->cfg->audit_dir;
	o.segment_bytes = d->cfg->audit_segment_bytes;
	o.segment_seconds = d->cfg->audit_segment_seconds;
	o.timeout_ms = d->cfg->audit_timeout_ms;
	o.syslog = d->cfg->audit_syslog;
	o.linger_us = d->cfg->audit_group_commit_us;
	o.preallocate = d->cfg->audit_preallocate ? 0 : -1;
	o.seal = glue_seal;
	o.seal_arg = d;
	o.batch_begin = kwd_complete_hold;
	o.batch_end = kwd_complete_release;
	o.batch_arg = d;
	o.anchor_get = glue_anchor_get;
	o.anchor_put = glue_anchor_put;
	o.anchor_arg = d;
	o.anchor_seconds = d->cfg->audit_anchor_seconds;
	o.reanchor = d->cfg->audit_reanchor;
	return audit_open(&o, &d->audit);
}

void
audit_glue_close(struct kwd *d)
{
	audit_close(d->audit);
	d->audit = NULL;
}

/* The fields glue_event writes itself, and those the log's writer adds
 * (seq, time, prev); a handler's extra fields of the same names are left
 * out (they are the request's or the log's, not the handler's): a line
 * with a key twice would read one way to the verifier and another to jq. */
static const char *const own_fields[] = {
	"type", "phase", "request_id", "caller", "action", "vault", "name", "outcome",
	"rule", "version", "key_version", "status", "error", "reason", "policy_hash",
	"seq", "time", "prev",
};

static int
own_field(const char *k)
{
	for (size_t i = 0; i < sizeof(own_fields) / sizeof(own_fields[0]); i++)
		if (strcmp(k, own_fields[i]) == 0)
			return 1;
	return 0;
}

static const char *
nonempty(const char *s)
{
	return (s != NULL && *s != '\0') ? s : NULL;
}

/* The request's event as JSON text, written directly (no jansson tree:
 * this runs for every request).  NULL when out of memory, or -EINVAL in
 * *err when a handler's extra fields break the audit rules. */
static char *
glue_event(struct kwd_req *r, const char *phase, size_t *len, int *err)
{
	const struct peer_identity *w = &r->who;
	const char *outcome;
	struct jw jw;
	char *out;

	*err = -ENOMEM;
	if (r->extra != NULL && (*err = audit_check_fields(r->extra)) != 0)
		return NULL;
	*err = -ENOMEM;
	if (!r->allowed && r->decided_by[0] != '\0')
		outcome = "denied";          /* the policy said no */
	else if (!r->allowed)
		outcome = "failure";         /* refused before any decision: bad request */
	else if (strcmp(phase, "intent") == 0)
		outcome = "intent";
	else if (r->status > 0 && r->status < 400)
		outcome = "success";
	else
		outcome = "failure";
	jw_open(&jw);
	jw_str(&jw, "type", "request");
	jw_str(&jw, "phase", phase);
	jw_int(&jw, "request_id", (int64_t)r->id);
	jw_begin_obj(&jw, "caller");
	jw_int(&jw, "uid", (int64_t)w->uid);
	jw_str(&jw, "user", identity_user(w));
	jw_int(&jw, "gid", (int64_t)w->gid);
	jw_str(&jw, "group", identity_group(w));
	jw_int(&jw, "pid", (int64_t)w->pid);
	jw_str(&jw, "exe", nonempty(w->exe));
	jw_str(&jw, "unit", nonempty(w->unit));
	jw_end_obj(&jw);
	jw_str(&jw, "action", kwd_action_name(r->action));
	jw_str(&jw, "vault", nonempty(r->vault));
	jw_str(&jw, "name", nonempty(r->name));
	jw_str(&jw, "outcome", outcome);
	jw_str(&jw, "rule", r->decided_by);
	if (r->version != 0)
		jw_int(&jw, "version", (int64_t)r->version);
	if (r->key_version != 0)
		jw_int(&jw, "key_version", (int64_t)r->key_version);
	if (strcmp(phase, "outcome") == 0) {
		jw_int(&jw, "status", r->status);
		if (r->err_code[0] != '\0') {
			jw_str(&jw, "error", r->err_code);
			jw_str(&jw, "reason", r->err_msg);
		}
	}
	jw_str(&jw, "policy_hash", nonempty(r->policy_hash));
	if (r->extra != NULL) {
		const char *k;
		json_t *v;

		json_object_foreach(r->extra, k, v) {
			char *t;

			if (own_field(k))
				continue;
			if ((t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL) {
				jw_free(&jw);
				return NULL;
			}
			jw_raw(&jw, k, t, strlen(t));
			free(t);
		}
	}
	if ((out = jw_finish(&jw, len)) != NULL)
		*err = 0;
	return out;
}

static void
glue_done(void *arg, int status, uint64_t seq)
{
	struct kwd_req *r = arg;
	(void)seq;
	r->audit_done(r, status);
}

void
audit_glue_submit(struct kwd_req *r, void (*done)(void *arg, int status), void *arg)
{
	size_t len;
	int e;
	char *ev = glue_event(r, "outcome", &len, &e);

	(void)arg;   /* always r */
	r->audit_done = done;
	if (ev == NULL) {
		log_err("audit: cannot build the event of request %llu: %s",
		    (unsigned long long)r->id, kw_strerror(e));
		done(r, e);
		return;
	}
	if ((e = audit_submit_body(r->d->audit, ev, len, glue_done, r)) != 0) {
		log_err("audit: cannot queue the event of request %llu: %s",
		    (unsigned long long)r->id, kw_errdetail(e));
		done(r, e);
	}
}

int
audit_glue_intent(struct kwd_req *r)
{
	size_t len;
	int e;
	char *ev = glue_event(r, "intent", &len, &e);

	if (ev == NULL)
		return e;
	e = audit_submit_body_wait(r->d->audit, ev, len, NULL);
	if (e != 0)
		log_err("audit: intent of request %llu not recorded: %s", (unsigned long long)r->id,
		    kw_errdetail(e));
	return e;
}

int
audit_glue_admin(struct kwd *d, const char *type, json_t *fields)
{
	json_t *ev = json_pack("{s:s}", "type", type);
	int e;

	if (ev == NULL) {
		json_decref(fields);
		return -ENOMEM;
	}
	if (fields != NULL)
		json_object_update(ev, fields);
	json_decref(fields);
	if (d->audit == NULL) {
		json_decref(ev);
		return KW_E_AUDIT;
	}
	e = audit_submit_wait(d->audit, ev, NULL);
	if (e != 0)
		log_err("audit: %s event not recorded: %s", type, kw_errdetail(e));
	return e;
}

json_t *
audit_glue_health(struct kwd *d)
{
	json_t *j = d->audit ? audit_status_json(d->audit) : NULL;
	return j ? j : json_pack("{s:b}", "ok", 0);
}
