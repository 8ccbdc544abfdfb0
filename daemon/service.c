/* service.c - /v1/health, /v1/whoami, /v1/metrics. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "kw_error.h"
#include "kw_nss.h"
#include "pkcs11/p11.h"
#include "daemon/audit.h"
#include "daemon/audit_glue.h"
#include "daemon/jw.h"
#include "daemon/kwd.h"
#include "daemon/store.h"

void
h_health(struct kwd_req *r)
{
	struct p11_token_info ti;
	int te, se, ok;
	json_t *tok, *st, *au;

	te = p11_ping(r->d->p11);
	if (te == 0)
		te = p11_token_info(r->d->p11, &ti);
	tok = te == 0 ?
	    json_pack("{s:b,s:s,s:s,s:s,s:b,s:b}", "ok", 1, "label", ti.label,
		"serial", ti.serial, "wrap", p11_wrap_mech_name(ti.wrap),
		"session_copies", ti.session_copies,
		"keys_modifiable", ti.keys_modifiable) :
	    json_pack("{s:b,s:s}", "ok", 0, "error", kw_errdetail(te));
	se = store_ping(r->d->store);
	st = se == 0 ? json_pack("{s:b}", "ok", 1) :
	    json_pack("{s:b,s:s}", "ok", 0, "error", kw_errdetail(se));
	au = audit_glue_health(r->d);
	ok = te == 0 && se == 0 && json_is_true(json_object_get(au, "ok"));
	kwd_reply_json(r, ok ? 200 : 503, json_pack("{s:s,s:o,s:o,s:o,s:I}",
	    "status", ok ? "ok" : "degraded", "token", tok, "store", st, "audit", au,
	    "uptime_s", (json_int_t)((kwd_now_us() - r->d->started_us) / 1000000)));
}

/* A name (from NSS, or a path) as a JSON string, or null.  A directory
 * server may hold names, and a file system paths, that are not UTF-8,
 * which jansson refuses (the reply would come out empty): such bytes
 * become '?', as in error messages. */
static json_t *
name_json(const char *name)
{
	json_t *j;
	char *copy;

	if (name == NULL)
		return json_null();
	if ((j = json_string(name)) != NULL || (copy = strdup(name)) == NULL)
		return j;
	jw_printable(copy);
	j = json_string(copy);
	free(copy);
	return j;
}

json_t *
kwd_whoami_groups(const struct peer_identity *w)
{
	json_t *groups;
	char *buf = NULL;
	size_t len = 0;

	if (w->shared == NULL || !w->shared->groups_known || (groups = json_array()) == NULL)
		return json_null();
	for (size_t i = 0; i < w->shared->ngroups; i++) {
		struct group gr;
		gid_t g = w->shared->groups[i];
		if (kwnss_gr_gid(g, &gr, &buf, &len) == 0)
			json_array_append_new(groups, name_json(gr.gr_name));
		else
			json_array_append_new(groups, json_integer(g));
	}
	free(buf);
	return groups;
}

/* Its groups' names were looked up on an identity worker (see
 * request_identity_pending): nothing here waits for a server. */
void
h_whoami(struct kwd_req *r)
{
	const struct peer_identity *w = &r->who;
	json_t *groups = r->whoami_groups != NULL ? json_incref(r->whoami_groups) :
	    kwd_whoami_groups(w);

	kwd_reply_json(r, 200, json_pack("{s:i,s:o,s:i,s:o,s:o,s:i,s:o,s:o}",
	    "uid", (int)w->uid, "user", name_json(identity_user(w)),
	    "gid", (int)w->gid, "group", name_json(identity_group(w)),
	    "groups", groups, "pid", (int)w->pid,
	    "exe", name_json(w->exe[0] ? w->exe : NULL),
	    "unit", name_json(w->unit[0] ? w->unit : NULL)));
}

void
h_metrics(struct kwd_req *r)
{
	struct kwd_metrics *m = &r->d->m;
	struct evbuffer *b;

	r->status = 200;
	r->content_type = "text/plain; version=0.0.4";
	if (r->reply == NULL)
		r->reply = evbuffer_new();
	b = r->reply;
#define C(name, help, v) evbuffer_add_printf(b, "# HELP keywarden_" name " " help "\n# TYPE keywarden_" name " counter\nkeywarden_" name " %llu\n", (unsigned long long)atomic_load(&(v)))
#define G(name, help, v) evbuffer_add_printf(b, "# HELP keywarden_" name " " help "\n# TYPE keywarden_" name " gauge\nkeywarden_" name " %llu\n", (unsigned long long)(v))
	C("requests_total", "HTTP requests received.", m->requests);
	evbuffer_add_printf(b, "# HELP keywarden_responses_total HTTP responses by class.\n# TYPE keywarden_responses_total counter\n");
	evbuffer_add_printf(b, "keywarden_responses_total{class=\"2xx\"} %llu\n", (unsigned long long)atomic_load(&m->responses_2xx));
	evbuffer_add_printf(b, "keywarden_responses_total{class=\"4xx\"} %llu\n", (unsigned long long)atomic_load(&m->responses_4xx));
	evbuffer_add_printf(b, "keywarden_responses_total{class=\"5xx\"} %llu\n", (unsigned long long)atomic_load(&m->responses_5xx));
	C("denied_total", "Requests denied by policy.", m->denied);
	C("secret_reads_total", "Secret values released.", m->secret_reads);
	C("secret_writes_total", "Secret versions written.", m->secret_writes);
	C("token_errors_total", "Requests failed by the token.", m->token_errors);
	C("store_errors_total", "Requests failed by the store.", m->store_errors);
	C("audit_errors_total", "Requests refused because the audit log failed.", m->audit_errors);
	C("connections_total", "Connections accepted.", m->connections_total);
	C("connections_refused_total", "Connections over the limit.", m->connections_refused);
	G("connections_open", "Connections open.", atomic_load(&m->connections_open));
	C("connections_timed_out_total", "Connections cut off by limits.client_timeout.",
	    m->connections_timed_out);
	G("connection_input_buffer_bytes", "Bytes of request buffers held by open connections.",
	    atomic_load(&m->conn_in_bytes));
	G("connection_output_backlog_bytes",
	    "Bytes of replies queued for clients that have not read them.",
	    atomic_load(&m->conn_out_backlog));
	C("identity_timeouts_total", "New callers' requests refused after waiting "
	    "limits.request_timeout_ms for a free identity worker.", m->identity_timeouts);
	C("request_duration_microseconds_sum", "Sum of request latencies.", m->latency_us_sum);
	G("uptime_seconds", "Seconds since start.", (kwd_now_us() - r->d->started_us) / 1000000);
	if (r->d->audit != NULL) {
		struct audit_status as;
		audit_status_get(r->d->audit, &as);
#define CV(name, help, v) evbuffer_add_printf(b, "# HELP keywarden_" name " " help "\n# TYPE keywarden_" name " counter\nkeywarden_" name " %llu\n", (unsigned long long)(v))
		CV("audit_events_total", "Audit events made durable since start.", as.events);
		CV("audit_commits_total", "Group commits of the audit log: one write, one fdatasync, one token seal each.",
		    as.batches);
#undef CV
		G("audit_queued", "Audit events waiting for the writer.", as.queued);
	}
#undef C
#undef G
}
