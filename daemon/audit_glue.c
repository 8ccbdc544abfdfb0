/*
 * audit_glue.c - every request's event, built from what the daemon knows
 * of it (never a value, a key or a PIN), made durable by daemon/audit.c and
 * sealed by the token's audit key.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kw_error.h"
#include "pkcs11/p11.h"
#include "daemon/audit.h"
#include "daemon/audit_glue.h"
#include "daemon/kwd.h"
#include "daemon/log.h"

static int
glue_seal(void *arg, const uint8_t *data, size_t len, uint8_t mac[32])
{
	struct kwd *d = arg;
	return p11_audit_hmac(d->p11, data, len, mac);
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
	o.seal = glue_seal;
	o.seal_arg = d;
	return audit_open(&o, &d->audit);
}

void
audit_glue_close(struct kwd *d)
{
	audit_close(d->audit);
	d->audit = NULL;
}

static json_t *
str_or_null(const char *s)
{
	return (s != NULL && *s != '\0') ? json_string(s) : json_null();
}

static json_t *
glue_event(struct kwd_req *r, const char *phase)
{
	const struct peer_identity *w = &r->who;
	const char *outcome;
	json_t *ev;

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
	ev = json_pack("{s:s,s:s,s:I,s:{s:i,s:o,s:i,s:o,s:i,s:o,s:o},s:s,s:o,s:o,s:s,s:s}",
	    "type", "request", "phase", phase, "request_id", (json_int_t)r->id,
	    "caller", "uid", (int)w->uid, "user", str_or_null(w->user), "gid", (int)w->gid,
	    "group", str_or_null(w->group), "pid", (int)w->pid, "exe", str_or_null(w->exe),
	    "unit", str_or_null(w->unit),
	    "action", kwd_action_name(r->action),
	    "vault", str_or_null(r->vault), "name", str_or_null(r->name),
	    "outcome", outcome, "rule", r->decided_by);
	if (ev == NULL)
		return NULL;
	if (r->version != 0)
		json_object_set_new(ev, "version", json_integer((json_int_t)r->version));
	if (r->key_version != 0)
		json_object_set_new(ev, "key_version", json_integer((json_int_t)r->key_version));
	if (strcmp(phase, "outcome") == 0) {
		json_object_set_new(ev, "status", json_integer(r->status));
		if (r->err_code[0] != '\0') {
			json_object_set_new(ev, "error", json_string(r->err_code));
			json_object_set_new(ev, "reason", json_string(r->err_msg));
		}
	}
	json_object_set_new(ev, "policy_hash", r->policy_hash[0] ? json_string(r->policy_hash) : json_null());
	if (r->extra != NULL)
		json_object_update_missing(ev, r->extra);
	return ev;
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
	json_t *ev = glue_event(r, "outcome");
	int e;

	(void)arg;   /* always r */
	r->audit_done = done;
	if (ev == NULL) {
		done(r, -ENOMEM);
		return;
	}
	if ((e = audit_submit(r->d->audit, ev, glue_done, r)) != 0) {
		log_err("audit: cannot queue the event of request %llu: %s",
		    (unsigned long long)r->id, kw_errdetail(e));
		done(r, e);
	}
}

int
audit_glue_intent(struct kwd_req *r)
{
	json_t *ev = glue_event(r, "intent");
	int e;

	if (ev == NULL)
		return -ENOMEM;
	e = audit_submit_wait(r->d->audit, ev, NULL);
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
