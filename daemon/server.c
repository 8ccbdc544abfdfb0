/*
 * server.c - the event loops: the Unix socket, HTTP, peer identity per
 * connection, authorization, and replies; the worker pools and the queues
 * of completions that bring finished requests back to their loop.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "kw_deadline.h"
#include "kw_error.h"
#include "kw_nss.h"
#include "daemon/audit_glue.h"
#include "daemon/http.h"
#include "daemon/http_parse.h"
#include "daemon/jw.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/server.h"
#include "daemon/store.h"
#include "daemon/stream.h"

/* ---- time ------------------------------------------------------------------- */


/* ---- replies ------------------------------------------------------------------- */

void
kwd_reply_json(struct kwd_req *r, int status, json_t *obj)
{
	char *s;

	r->status = status;
	r->content_type = "application/json";
	if (r->reply == NULL)
		r->reply = evbuffer_new();
	else
		evbuffer_drain(r->reply, evbuffer_get_length(r->reply));
	s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	if (s != NULL) {
		evbuffer_add(r->reply, s, strlen(s));
		evbuffer_add(r->reply, "\n", 1);
		free(s);
	}
	json_decref(obj);
}

void
kwd_reply_error(struct kwd_req *r, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A message may quote what the client sent (a field's name, cut to
	 * 64 bytes): no control character for a terminal, and valid UTF-8,
	 * or jansson refuses the whole reply. */
	jw_printable(msg);
	kw_secret_clear(&r->reply_secret);
	kwd_reply_json(r, status, json_pack("{s:{s:s,s:s}}", "error", "code", code,
	    "message", msg));
	snprintf(r->err_code, sizeof(r->err_code), "%s", code);
	snprintf(r->err_msg, sizeof(r->err_msg), "%s", msg);
}

void
kwd_reply_kwerr(struct kwd_req *r, int err, const char *what)
{
	const char *detail = kw_errdetail(err);

	switch (err) {
	case KW_E_NOT_FOUND:
		kwd_reply_error(r, 404, "not_found", "%s: %s", what, detail);
		return;
	case KW_E_CONFLICT:
		kwd_reply_error(r, 409, "conflict", "%s: %s", what, detail);
		return;
	case KW_E_TOO_LARGE:
		kwd_reply_error(r, 413, "too_large", "%s: %s", what, detail);
		return;
	case KW_E_FORMAT:
		kwd_reply_error(r, 400, "bad_request", "%s: %s", what, detail);
		return;
	case KW_E_RETIRED:
		kwd_reply_error(r, 403, "key_retired", "%s: %s", what, detail);
		return;
	case KW_E_AUTH:
		/* A record that does not authenticate: tampering or a wrong
		 * token.  Never guess: refuse, and say so loudly. */
		log_err("request %llu: %s: %s", (unsigned long long)r->id, what, detail);
		kwd_reply_error(r, 500, "integrity", "%s: the stored record failed authentication", what);
		return;
	case KW_E_P11: case KW_E_TOKEN: case KW_E_PIN: case KW_E_MECHANISM:
	case KW_E_KEY_NOT_FOUND:
		atomic_fetch_add(&r->d->m.token_errors, 1);
		log_err("request %llu: %s: token: %s", (unsigned long long)r->id, what, detail);
		kwd_reply_error(r, 503, "unavailable", "%s: the token cannot serve the request; nothing was released", what);
		return;
	case KW_E_STORE: case KW_E_UNAVAILABLE:
		atomic_fetch_add(&r->d->m.store_errors, 1);
		log_err("request %llu: %s: store: %s", (unsigned long long)r->id, what, detail);
		kwd_reply_error(r, 503, "unavailable", "%s: the store cannot serve the request", what);
		return;
	default:
		log_err("request %llu: %s: %s", (unsigned long long)r->id, what, detail);
		kwd_reply_error(r, 500, "internal", "%s: internal error", what);
		return;
	}
}

/* ---- replies to the connection ------------------------------------------------------ */

static void kwd_req_free(struct kwd_req *r);

void
server_request_orphaned(void *req)
{
	struct kwd_req *r = req;
	r->conn = NULL;   /* it is still served and audited; its reply goes nowhere */
}

static void
send_now(struct kwd_req *r)
{
	int status = r->status ? r->status : 500;
	uint64_t dt = kwd_now_us() - r->t_start_us;

	atomic_fetch_add(&r->d->m.latency_us_sum, dt);
	if (status < 300)
		atomic_fetch_add(&r->d->m.responses_2xx, 1);
	else if (status < 500)
		atomic_fetch_add(&r->d->m.responses_4xx, 1);
	else
		atomic_fetch_add(&r->d->m.responses_5xx, 1);
	/* The connection keeps what the worker learnt of its caller (its
	 * executable, its names): its next requests are authorized on the
	 * loop. */
	if (r->conn != NULL && r->identity_checked)
		http_conn_identity_checked(r->conn, &r->who);
	if (r->conn != NULL && r->stream && status == 200) {
		int e = stream_start(r->loop, r->conn, r->stream_since, r->id);
		if (e != 0) {
			kwd_reply_kwerr(r, e, "audit stream");
			status = r->status;
			r->stream = 0;
		} else {
			r->conn = NULL;   /* the stream has the connection now */
		}
	}
	if (r->conn != NULL)
		http_reply(r->conn, status, r->content_type ? r->content_type : "application/json",
		    r->allow, r->reply, &r->reply_secret, r->close);
	kwd_req_free(r);
}

static void
kwd_req_free(struct kwd_req *r)
{
	if (r == NULL)
		return;
	if (r->reply != NULL)
		evbuffer_free(r->reply);
	kw_secret_clear(&r->reply_secret);
	if (r->ident_timer != NULL)
		event_free(r->ident_timer);   /* on its loop, as all of r's ends */
	identity_exe_claim_clear(&r->exe_claim);
	json_decref(r->whoami_groups);
	identity_clear(&r->who);
	json_decref(r->query);
	json_decref(r->body);
	json_decref(r->extra);
	free(r);
}

/* Append the chain first..last (last->next NULL) to a queue; the caller
 * holds the queue's lock. */
static void
req_append(struct kwd_req **head, struct kwd_req **tail, struct kwd_req *first,
    struct kwd_req *last)
{
	if (*tail != NULL)
		(*tail)->next = first;
	else
		*head = first;
	*tail = last;
}

/* Completions: from workers and the audit writer back to the request's
 * loop. */

/* Hand a chain of completions [head..tail] of loop l over: one lock, and
 * a wake-up only when the loop's queue was empty (the loop takes the whole
 * queue at once, so what is added behind another is taken with it).
 * event_active takes libevent's base lock and may write to its wake-up
 * descriptor. */
static void
complete_chain(struct kwd_loop *l, struct kwd_req *head, struct kwd_req *tail)
{
	int first;

	pthread_mutex_lock(&l->c_lock);
	first = l->c_head == NULL;
	req_append(&l->c_head, &l->c_tail, head, tail);
	pthread_mutex_unlock(&l->c_lock);
	if (first)
		event_active(l->c_event, EV_READ, 0);
}

/* The audit writer completes a whole batch of requests at once.  Handed
 * over one by one, each found its loop's queue just emptied by the loop
 * (awake on the other core) and woke it again: about one write to the
 * wake-up descriptor and one context switch per request.  Between
 * kwd_complete_hold and kwd_complete_release the thread's completions are
 * held, and released with one hand-over per loop. */
static __thread int held_on;
static __thread struct kwd_req *held_head, *held_tail;

void
kwd_complete_hold(void *arg)
{
	(void)arg;
	held_on = 1;
}

void
kwd_complete_release(void *arg)
{
	struct kwd_req *r, *next, *head, **tail, *last;

	(void)arg;
	held_on = 0;
	/* One pass per loop that has any: few loops, batches of tens. */
	while ((r = held_head) != NULL) {
		struct kwd_loop *l = r->loop;

		head = NULL;
		last = NULL;
		tail = &held_head;
		for (; r != NULL; r = next) {
			next = r->next;
			if (r->loop != l) {
				tail = &r->next;
				continue;
			}
			*tail = next;        /* out of the held list */
			r->next = NULL;
			req_append(&head, &last, r, r);
		}
		complete_chain(l, head, last);
	}
	held_tail = NULL;
}

void
kwd_complete(struct kwd_req *r)
{
	r->next = NULL;
	if (held_on) {
		req_append(&held_head, &held_tail, r, r);
		return;
	}
	complete_chain(r->loop, r, r);
}

static void
completions_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kwd_loop *l = arg;
	struct kwd_req *r, *next;

	(void)fd; (void)what;
	pthread_mutex_lock(&l->c_lock);
	r = l->c_head;
	l->c_head = l->c_tail = NULL;
	pthread_mutex_unlock(&l->c_lock);
	for (; r != NULL; r = next) {
		next = r->next;
		l->inflight--;
		send_now(r);
	}
	if (atomic_load(&l->d->stopping) && l->inflight == atomic_load(&l->ident_waiting))
		event_base_loopexit(l->base, NULL);
}

/* After a handler: make the audit event durable, then reply.  When the
 * audit log refuses, the reply becomes 503 and whatever the handler put in
 * it (a secret value) is wiped: no audit, no secret. */
static void
audit_done(void *arg, int status)
{
	struct kwd_req *r = arg;

	if (status != 0) {
		atomic_fetch_add(&r->d->m.audit_errors, 1);
		kwd_reply_error(r, 503, "unavailable",
		    "the audit log cannot record this request, so it was refused: %s",
		    kw_strerror(status));
	}
	kwd_complete(r);
}

void
kwd_finish(struct kwd_req *r)
{
	if (r->action == KWD_A_SERVICE) {
		kwd_complete(r);
		return;
	}
	audit_glue_submit(r, audit_done, r);
}

/* ---- deciding ---------------------------------------------------------------------- */

/* Whether r's caller is still to be completed off the loop: its
 * executable checked (a stat) or its names looked up (NSS), either of
 * which may wait for a server.  Until then nothing may be decided or
 * reported of the caller: not even a denial, whose message and audit
 * event name the user.  A whoami also has its groups' names looked up
 * there, however well its caller is known: they are not kept, and a
 * lookup that hangs on a read worker would hold up every read. */
static int
request_identity_pending(const struct kwd_req *r)
{
	return r->exe_claim.path != NULL || !r->who.names_resolved ||
	    (r->handler == h_whoami && r->whoami_groups == NULL);
}

/* After routing: authorize r (on its loop, or on the worker that completed
 * its caller's identity).  1: its handler runs next; 0: r holds its reply
 * (a bad route, a denial, no such vault) and is finished as it is. */
static int
request_decide(struct kwd_req *r)
{
	struct kwd *d = r->d;

	if (r->status != 0)
		return 0;   /* the router replied */
	if (r->action != KWD_A_SERVICE) {
		struct kwd_decision dec;
		kwd_authorize(d, r, &dec);
		snprintf(r->decided_by, sizeof(r->decided_by), "%s", dec.reason);
		snprintf(r->policy_hash, sizeof(r->policy_hash), "%s", dec.policy_hash);
		r->allowed = dec.allow;
		if (!dec.allow) {
			atomic_fetch_add(&d->m.denied, 1);
			kwd_reply_error(r, 403, "forbidden", "%s may not %s in vault '%s': %s",
			    identity_user(&r->who) != NULL ? identity_user(&r->who) : "this caller",
			    kwd_action_name(r->action), r->vault[0] ? r->vault : "*", dec.reason);
			return 0;
		}
	}
	if (r->vault_missing) {
		kwd_reply_error(r, 404, "vault_not_found", "no vault named '%s'", r->vault);
		return 0;
	}
	return 1;
}

/* ---- workers ---------------------------------------------------------------------- */

/* Reads of secrets taken from the queue at once and served in one read
 * transaction of the store (store_read_begin): under load a worker finds
 * several queued, and each spares the store's begin and end of a
 * transaction (two locks of the WAL index).  The group is taken before
 * its transaction starts, so each read sees every write acknowledged
 * before its request was taken. */
#define READ_GROUP_MAX 16

/* A daemon that stops waits this long for the identity pool's threads,
 * then leaves behind those still waiting for a file or directory server:
 * their requests were never decided, and their connections close. */
#define IDENTITY_STOP_WAIT_MS 1000

/* Set (under the write lock) once the daemon stops without the identity
 * threads still waiting: one that returns afterwards touches nothing.
 * Static, not in struct kwd: such a thread may outlive the daemon's
 * state. */
static pthread_rwlock_t identity_gone_lock = PTHREAD_RWLOCK_INITIALIZER;
static int identity_gone;

/* Name service failures (not "no such name": the lookup could not be
 * answered) are logged once per uid or gid a minute: a directory server
 * that is down then costs a line per caller a minute, not one per
 * connection.  The table is small and direct-mapped: a uid or gid whose
 * slot another took is logged again sooner, never less often. */
#define NSS_WARN_SLOTS 256
#define NSS_WARN_EVERY_S 60

static pthread_mutex_t nss_warned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nss_warned {
	int used, is_group;
	unsigned id;
	time_t at;                     /* CLOCK_MONOTONIC seconds of its last line */
	unsigned quiet;                /* failures since then, not logged */
} nss_warned[NSS_WARN_SLOTS];

/* The lookup of r's caller's uid (or gid) id failed with err (kw_nss.h):
 * say so, unless it was said for id less than a minute ago. */
static void
identity_nss_warn(const struct kwd_req *r, int is_group, unsigned id, int err)
{
	struct nss_warned *w = &nss_warned[(id * 2u + (unsigned)is_group) % NSS_WARN_SLOTS];
	const char *kind = is_group ? "gid" : "uid";
	struct timespec now;
	char more[80] = "";
	int said;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&nss_warned_lock);
	said = w->used && w->is_group == is_group && w->id == id;
	if (said && now.tv_sec - w->at < NSS_WARN_EVERY_S) {
		w->quiet++;
		pthread_mutex_unlock(&nss_warned_lock);
		return;
	}
	if (said && w->quiet > 0)
		snprintf(more, sizeof(more), " (after %u more such failures, not logged)", w->quiet);
	w->used = 1;
	w->is_group = is_group;
	w->id = id;
	w->at = now.tv_sec;
	w->quiet = 0;
	pthread_mutex_unlock(&nss_warned_lock);
	log_warn("request %llu: the name service could not look up %s %u: %s%s; the caller's %s "
	    "name is reported as unknown (null); the next failure for this %s is logged after %d s",
	    (unsigned long long)r->id, kind, id,
	    err == -ERANGE ? "its entry is larger than the 1 MiB read of one" : strerror(-err), more,
	    is_group ? "group" : "user", kind, NSS_WARN_EVERY_S);
}

/* On an identity worker: check r's executable and look its names up
 * (either may wait), then decide, and hand r to the pool that runs its
 * handler, or finish it with its denial.  -1 when the daemon stopped
 * meanwhile and left this thread behind: the caller returns at once. */
static int
identity_complete(struct kwd_req *r)
{
	if (r->exe_claim.path != NULL) {
		identity_exe_check(&r->exe_claim, &r->who);
		identity_exe_claim_clear(&r->exe_claim);
	}
	if (!r->who.names_resolved) {
		int ue, ge;

		identity_names_resolve(&r->who, &ue, &ge);
		if (ue != 0 && ue != -ENOENT)
			identity_nss_warn(r, 0, (unsigned)r->who.uid, ue);
		if (ge != 0 && ge != -ENOENT)
			identity_nss_warn(r, 1, (unsigned)r->who.gid, ge);
	}
	if (r->handler == h_whoami && r->whoami_groups == NULL)
		r->whoami_groups = kwd_whoami_groups(&r->who);   /* never NULL */
	pthread_rwlock_rdlock(&identity_gone_lock);
	if (identity_gone) {
		pthread_rwlock_unlock(&identity_gone_lock);
		return -1;   /* r is left, as the process exits */
	}
	r->identity_checked = 1;
	if (atomic_load(&r->d->stopping)) {
		/* Its loop may have stopped without waiting for it. */
		r->close = 1;
		kwd_reply_error(r, 503, "unavailable", "the daemon is shutting down");
	}
	atomic_fetch_sub(&r->loop->ident_waiting, 1);
	if (request_decide(r))   /* 0 for the refusal above */
		kwd_submit(r);   /* no longer pending: to its own pool */
	else
		kwd_finish(r);
	pthread_rwlock_unlock(&identity_gone_lock);
	return 0;
}

/* An identity worker: one request at a time, taken out of the queue
 * before its deadline (identity_wait_expired) takes it. */
static void *
identity_worker_main(void *arg)
{
	struct kwd_pool *p = arg;
	struct kwd_req *r;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->head == NULL && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if ((r = p->head) == NULL) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		if ((p->head = r->next) == NULL)
			p->tail = NULL;
		r->next = NULL;
		r->ident_queued = 0;
		pthread_mutex_unlock(&p->lock);
		kw_errclear();
		if (identity_complete(r) != 0)
			return NULL;
	}
}

/* A worker of the read or the write pool: one request, or a run of
 * secret reads; never one whose caller is still to be completed (the
 * identity pool's). */
static void *
worker_main(void *arg)
{
	struct kwd_pool *p = arg;
	struct kwd *d = p->d;
	struct kwd_req *r, *group, **gtail;
	unsigned n;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->head == NULL && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->head == NULL) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		/* One request, or a run of secret reads. */
		group = NULL;
		gtail = &group;
		n = 0;
		do {
			r = p->head;
			p->head = r->next;
			r->next = NULL;
			*gtail = r;
			gtail = &r->next;
			n++;
		} while (r->action == KWD_A_SECRET_GET && p->head != NULL &&
		    p->head->action == KWD_A_SECRET_GET && n < READ_GROUP_MAX);
		if (p->head == NULL)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		if (n > 1 && store_read_begin(d->store) != 0)
			n = 1;   /* the reads go one by one */
		for (r = group; r != NULL; r = group) {
			group = r->next;
			kw_errclear();
			r->handler(r);
			kwd_finish(r);
		}
		if (n > 1)
			store_read_end(d->store);
	}
}

static int
pool_start(struct kwd *d, struct kwd_pool *p, unsigned n, void *(*fn)(void *), const char *name)
{
	p->d = d;
	if ((p->threads = calloc(n, sizeof(*p->threads))) == NULL)
		return -ENOMEM;
	for (p->n = 0; p->n < n; p->n++) {
		int e = pthread_create(&p->threads[p->n], NULL, fn, p);

		if (e != 0)
			return -e;
		pthread_setname_np(p->threads[p->n], name);
	}
	return 0;
}

int
kwd_workers_start(struct kwd *d, unsigned nfast, unsigned nwrite, unsigned nident)
{
	int e;

	if ((e = pool_start(d, &d->pool[KWD_POOL_FAST], nfast, worker_main, "kw-worker")) != 0)
		return e;
	if ((e = pool_start(d, &d->pool[KWD_POOL_WRITE], nwrite, worker_main, "kw-writer")) != 0)
		return e;
	return pool_start(d, &d->pool[KWD_POOL_IDENTITY], nident, identity_worker_main, "kw-ident");
}

/* Join p's threads; with a deadline, those still running at it are left
 * behind (counted in the return). */
static unsigned
pool_stop(struct kwd_pool *p, const struct timespec *deadline)
{
	unsigned left = 0;

	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned j = 0; j < p->n; j++) {
		if (deadline == NULL)
			pthread_join(p->threads[j], NULL);
		else if (pthread_timedjoin_np(p->threads[j], NULL, deadline) != 0) {
			pthread_detach(p->threads[j]);
			left++;
		}
	}
	free(p->threads);
	p->threads = NULL;
	p->n = 0;
	return left;
}

void
kwd_workers_stop(struct kwd *d)
{
	struct timespec dl;
	unsigned left;

	/* The identity pool first: the requests it completes go on to the
	 * other two. */
	kw_deadline_ms(&dl, IDENTITY_STOP_WAIT_MS);
	if ((left = pool_stop(&d->pool[KWD_POOL_IDENTITY], &dl)) != 0) {
		pthread_rwlock_wrlock(&identity_gone_lock);
		identity_gone = 1;
		pthread_rwlock_unlock(&identity_gone_lock);
		log_warn("stopping with %u caller identity check%s still waiting (the stat of an "
		    "executable, or a user or group lookup): %s request%s not served",
		    left, left == 1 ? "" : "s", left == 1 ? "its" : "their", left == 1 ? "" : "s");
	}
	pool_stop(&d->pool[KWD_POOL_FAST], NULL);
	pool_stop(&d->pool[KWD_POOL_WRITE], NULL);
}

/* Which pool runs an action: the ones that wait for a durable write (their
 * audit intent, a store commit, a token key generation), read much, or
 * hold the token for milliseconds (an RSA signature) go to the write pool,
 * so that reads never queue behind them (the read pool has one worker per
 * core). */
static int
pool_of(enum kwd_action a)
{
	switch (a) {
	case KWD_A_SECRET_SET: case KWD_A_SECRET_UPDATE: case KWD_A_SECRET_DELETE:
	case KWD_A_SECRET_RECOVER: case KWD_A_SECRET_PURGE: case KWD_A_SECRET_BACKUP:
	case KWD_A_SECRET_RESTORE: case KWD_A_AUDIT_READ: case KWD_A_POLICY_RELOAD:
	case KWD_A_KEY_CREATE: case KWD_A_VAULT_ROTATE: case KWD_A_VAULT_RETIRE:
	case KWD_A_KEY_SIGN:
		return KWD_POOL_WRITE;
	default:
		return KWD_POOL_FAST;
	}
}

/* On r's loop: r waited for an identity worker until its deadline.  If
 * none took it yet (they all wait for a server), it leaves the queue and
 * is refused, 503: the caller may try again.  Nothing was looked up of it,
 * so its audit event names only the ids the kernel gave. */
static void
identity_wait_expired(evutil_socket_t fd, short what, void *arg)
{
	struct kwd_req *r = arg, **pp;
	struct kwd *d = r->d;
	struct kwd_pool *p = &d->pool[KWD_POOL_IDENTITY];
	int expired = 0;

	(void)fd; (void)what;
	pthread_mutex_lock(&p->lock);
	if (r->ident_queued) {
		struct kwd_req *prev = NULL;

		for (pp = &p->head; *pp != r; pp = &(*pp)->next)
			prev = *pp;
		*pp = r->next;
		if (p->tail == r)
			p->tail = prev;
		r->next = NULL;
		r->ident_queued = 0;
		expired = 1;
	}
	pthread_mutex_unlock(&p->lock);
	if (!expired)
		return;   /* a worker is completing it */
	atomic_fetch_sub(&r->loop->ident_waiting, 1);
	atomic_fetch_add(&d->m.identity_timeouts, 1);
	log_warn("request %llu: caller identity check timed out: uid %u, pid %d waited %u ms "
	    "(limits.request_timeout_ms) for a free identity worker (limits.identity_workers: %u, "
	    "all checking other callers)", (unsigned long long)r->id, (unsigned)r->who.uid,
	    (int)r->who.pid, d->cfg->request_timeout_ms, d->cfg->identity_workers);
	kwd_reply_error(r, 503, "unavailable", "caller identity check timed out: the daemon is "
	    "still checking other new callers (their executables or names wait for a file or "
	    "directory server); try again later");
	kwd_finish(r);
}

/* On r's loop: r's caller is to be completed by an identity worker; it
 * waits for one at most limits.request_timeout_ms. */
static void
identity_submit(struct kwd_req *r)
{
	struct kwd *d = r->d;
	struct kwd_pool *p = &d->pool[KWD_POOL_IDENTITY];
	unsigned ms = d->cfg->request_timeout_ms;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if ((r->ident_timer = evtimer_new(r->loop->base, identity_wait_expired, r)) == NULL ||
	    evtimer_add(r->ident_timer, &tv) != 0) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		kwd_complete(r);
		return;
	}
	atomic_fetch_add(&r->loop->ident_waiting, 1);
	pthread_mutex_lock(&p->lock);
	r->next = NULL;
	r->ident_queued = 1;
	req_append(&p->head, &p->tail, r, r);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void
kwd_submit(struct kwd_req *r)
{
	struct kwd_pool *p;

	if (request_identity_pending(r)) {
		identity_submit(r);   /* only ever from r's loop */
		return;
	}
	p = &r->d->pool[pool_of(r->action)];

	pthread_mutex_lock(&p->lock);
	r->next = NULL;
	req_append(&p->head, &p->tail, r, r);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* ---- a request arrives --------------------------------------------------------------- */

/* [s, s+n) percent-decoded into a new string (kwh_pct_decode). */
static char *
pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1);

	if (out != NULL)
		kwh_pct_decode(s, n, out);
	return out;
}

/* The query string (after '?', up to '#') into r->query: an object of
 * strings, percent-decoded ('+' is a space; an escape that is not two hex
 * digits stays as it is), the last of a repeated key winning.  Out of
 * memory leaves the query empty. */
static void
parse_query(struct kwd_req *r, const char *q, size_t n)
{
	r->query = json_object();
	if (n == 0 || r->query == NULL)
		return;
	for (size_t i = 0; i < n;) {
		size_t j = i, eq = (size_t)-1;
		char *k, *v;
		while (j < n && q[j] != '&') {
			if (q[j] == '=' && eq == (size_t)-1)
				eq = j;
			j++;
		}
		if (j > i) {
			size_t kend = eq == (size_t)-1 ? j : eq;
			k = pct_decode(q + i, kend - i);
			v = eq == (size_t)-1 ? strdup("") : pct_decode(q + eq + 1, j - eq - 1);
			if (k == NULL || v == NULL) {
				free(k);
				free(v);
				json_object_clear(r->query);
				return;
			}
			json_object_set_new(r->query, k, json_string(v));
			free(k);
			free(v);
		}
		i = j + 1;
	}
}

/* What is wrong with a body jansson did not take, in words of our own:
 * jansson's text can quote the body (its "near '...'", a byte's value, a
 * \u escape), which may be a secret's value, and the message goes to the
 * audit log as well as to the client. */
static const char *
json_error_words(const json_error_t *je)
{
	switch (json_error_code(je)) {
	case json_error_out_of_memory:
		return "out of memory";
	case json_error_stack_overflow:
		return "it nests too deeply";
	case json_error_invalid_utf8:
		return "it is not valid UTF-8";
	case json_error_premature_end_of_input:
		return "it ends too soon";
	case json_error_end_of_input_expected:
		return "something follows the value";
	case json_error_null_character:
	case json_error_null_byte_in_key:
		return "a string holds a NUL character";
	case json_error_duplicate_key:
		return "an object has a key twice";
	case json_error_numeric_overflow:
		return "a number is out of range";
	default:
		return "it is not valid JSON";
	}
}

static const char *
json_type_words(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: case JSON_REAL: return "number";
	case JSON_TRUE: case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

int
kwd_request_parse(struct kwd_req *r, const char *target, size_t target_len, const char *body,
    size_t blen)
{
	char *path;
	size_t qat;

	/* The path is the target up to '?' or '#'; percent escapes stay for
	 * the router, which decodes each part. */
	for (qat = 0; qat < target_len && target[qat] != '?' && target[qat] != '#'; qat++)
		;
	if ((path = strndup(target, qat)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		return -1;
	}
	if (qat < target_len && target[qat] == '?') {
		size_t qend = qat + 1;
		while (qend < target_len && target[qend] != '#')
			qend++;
		parse_query(r, target + qat + 1, qend - qat - 1);
	} else {
		parse_query(r, NULL, 0);
	}

	if (blen > 0) {
		json_error_t je;
		r->body = json_loadb(body, blen, JSON_REJECT_DUPLICATES, &je);
		if (r->body == NULL || !json_is_object(r->body)) {
			if (r->body == NULL)
				kwd_reply_error(r, 400, "invalid_json",
				    "the body is not a JSON object (line %d, column %d: %s)",
				    je.line, je.column, json_error_words(&je));
			else
				kwd_reply_error(r, 400, "invalid_json",
				    "the body is a JSON %s, not an object", json_type_words(r->body));
			explicit_bzero(&je, sizeof(je));
			free(path);
			return -1;
		}
	}

	kwd_route(r, path);   /* replies itself on a bad route */
	free(path);
	return 0;
}

void
server_request(struct kwd_conn *c, const struct kwh_head *h, const char *body, size_t blen)
{
	struct kwd_loop *l = http_conn_loop(c);
	struct kwd *d = l->d;
	struct kwd_req *r;

	atomic_fetch_add(&d->m.requests, 1);
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		http_reply_refusal(c, 503, "out of memory");
		return;
	}
	r->d = d;
	r->loop = l;
	r->conn = c;
	r->id = atomic_fetch_add(&d->next_req_id, 1) + 1;
	r->method = h->method;
	r->t_start_us = kwd_now_us();
	l->inflight++;
	http_conn_set_request(c, r);

	if (atomic_load(&d->stopping)) {
		r->close = 1;
		kwd_reply_error(r, 503, "unavailable", "the daemon is shutting down");
		kwd_complete(r);
		return;
	}
	if (!http_conn_identified(c)) {
		r->close = 1;
		kwd_reply_error(r, 500, "internal", "cannot determine the caller's identity");
		kwd_complete(r);
		return;
	}
	identity_copy(&r->who, http_conn_who(c));
	if (identity_exe_claim_copy(&r->exe_claim, http_conn_exe_claim(c)) != 0) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		kwd_complete(r);
		return;
	}
	if (kwd_request_parse(r, h->target, h->target_len, body, blen) != 0) {
		kwd_complete(r);
		return;
	}
	if (request_identity_pending(r)) {
		/* The caller's executable is still to be checked, by a stat
		 * that may wait for a file server, or its names looked up,
		 * which may wait for a directory server: not on the loop.
		 * The worker does it, then decides (even a bad route's reply
		 * is audited with the caller as completed). */
		kwd_submit(r);
		return;
	}
	if (request_decide(r))
		kwd_submit(r);
	else
		kwd_finish(r);
}

/* ---- the socket --------------------------------------------------------------------- */

static int
socket_listen(struct kwd *d, const struct config *c, int *out)
{
	struct sockaddr_un sa;
	mode_t old;
	int fd, r;
	struct stat st;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(c->socket_path) >= sizeof(sa.sun_path))
		return kw_fail(KW_E_CONFIG, "socket path %s is too long", c->socket_path);
	strcpy(sa.sun_path, c->socket_path);
	/* Remove a stale socket, never anything else. */
	if (lstat(c->socket_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return kw_fail(KW_E_CONFIG, "%s exists and is not a socket: refusing to remove it",
			    c->socket_path);
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			return kw_fail(KW_E_CONFIG, "another daemon is listening on %s", c->socket_path);
		}
		if (probe >= 0)
			close(probe);
		unlink(c->socket_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return kw_fail(-errno, "socket: %s", strerror(errno));
	/* Bind under a tight umask, then give the socket its mode and group. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r != 0) {
		r = kw_fail(-errno, "bind %s: %s", c->socket_path, strerror(errno));
		close(fd);
		return r;
	}
	/* The path is changed by name below: never through a symlink put in
	 * the socket's place (in a directory others can write, that would
	 * hand them the group and mode of any file). */
	if (lstat(c->socket_path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		r = kw_fail(KW_E_CONFIG, "%s is not the socket just bound there: refusing to change "
		    "its owner or mode", c->socket_path);
		close(fd);
		return r;
	}
	d->sock_dev = st.st_dev;
	d->sock_ino = st.st_ino;
	if (c->socket_group != NULL) {
		struct group g;
		char *gbuf = NULL;
		size_t glen = 0;
		int e = kwnss_gr_name(c->socket_group, &g, &gbuf, &glen);

		if (e == 0 && lchown(c->socket_path, (uid_t)-1, g.gr_gid) != 0)
			e = -errno;
		free(gbuf);
		if (e != 0) {
			/* "No such group" only when the name service said so. */
			r = kw_fail(KW_E_CONFIG, "cannot give %s to group %s: %s", c->socket_path,
			    c->socket_group, e == -ENOENT ? "no such group" : strerror(-e));
			close(fd);
			return r;
		}
	}
	if (fchmodat(AT_FDCWD, c->socket_path, c->socket_mode, AT_SYMLINK_NOFOLLOW) != 0 ||
	    listen(fd, 1024) != 0 || lstat(c->socket_path, &st) != 0) {
		r = kw_fail(-errno, "chmod/listen %s: %s", c->socket_path, strerror(errno));
		close(fd);
		return r;
	}
	if (st.st_dev != d->sock_dev || st.st_ino != d->sock_ino) {
		r = kw_fail(KW_E_CONFIG, "%s was replaced while the daemon set it up", c->socket_path);
		close(fd);
		return r;
	}
	d->sock_bound = 1;
	*out = fd;
	return 0;
}

/* Remove the socket file at exit: only the one this process bound, and
 * only while the path still names it.  A daemon that found another
 * listening and gave up, or one whose file a newer daemon has replaced,
 * leaves the path alone (it used to remove it, and with it the only way
 * to reach the daemon that was running). */
static void
socket_unlink(struct kwd *d)
{
	struct stat st;

	if (d->cfg == NULL || !d->sock_bound)
		return;
	if (lstat(d->cfg->socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == d->sock_dev && st.st_ino == d->sock_ino)
		unlink(d->cfg->socket_path);
	d->sock_bound = 0;
}

struct event_base *
server_base_new(void)
{
	/* With epoll, let libevent gather the changes of one loop iteration
	 * into one epoll_ctl per descriptor (it paid when evhttp re-armed
	 * each connection twice per request; http.c keeps reads armed, and
	 * arms a write only when the socket is full).  libevent warns that it
	 * mishandles a descriptor dup()ed and closed while registered in the
	 * same base; each loop's copy of the listening socket is in its own
	 * base. */
	struct event_config *ec = event_config_new();
	struct event_base *b;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	b = event_base_new_with_config(ec);
	event_config_free(ec);
	return b;
}

static int
loop_setup(struct kwd *d, struct kwd_loop *l, unsigned idx)
{
	l->d = d;
	l->listen_fd = -1;
	pthread_mutex_init(&l->c_lock, NULL);
	if (idx == 0)
		l->base = d->base;
	else if ((l->base = server_base_new()) == NULL)
		return kw_fail(-ENOMEM, "cannot create event loop %u", idx);
	if ((l->c_event = event_new(l->base, -1, EV_PERSIST, completions_cb, l)) == NULL)
		return -ENOMEM;
	return 0;
}

int
server_start(struct kwd *d)
{
	unsigned n = d->cfg->event_loops ? d->cfg->event_loops : 1;
	int fd = -1, nfd, r;

	if ((d->loops = calloc(n, sizeof(*d->loops))) == NULL)
		return -ENOMEM;
	d->nloops = n;
	for (unsigned i = 0; i < n; i++)
		if ((r = loop_setup(d, &d->loops[i], i)) != 0)
			return r;

	nfd = sd_listen_fds(1);
	if (nfd > 1)
		return kw_fail(KW_E_CONFIG, "systemd passed %d sockets; expected one", nfd);
	if (nfd == 1) {
		fd = SD_LISTEN_FDS_START;
		evutil_make_socket_nonblocking(fd);
		log_info("using the socket passed by systemd");
	} else if ((r = socket_listen(d, d->cfg, &fd)) != 0) {
		return r;
	}
	/* Every loop accepts on the socket (each through its own descriptor:
	 * a loop closes its own when it stops accepting); a new connection
	 * goes to whichever loop accepts it first, and stays there. */
	for (unsigned i = 0; i < n; i++) {
		struct kwd_loop *l = &d->loops[i];
		int lfd = i == 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (lfd < 0)
			return kw_fail(-errno, "cannot share the socket with event loop %u: %s", i,
			    strerror(errno));
		if ((r = http_listen(l, lfd)) != 0) {
			if (l->listen_fd < 0 && i > 0)
				close(lfd);
			return r;
		}
	}
	return 0;
}

static void *
loop_main(void *arg)
{
	struct kwd_loop *l = arg;

	event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int
server_run_loops(struct kwd *d)
{
	char name[16];
	int e;

	for (unsigned i = 1; i < d->nloops; i++) {
		struct kwd_loop *l = &d->loops[i];
		if ((e = pthread_create(&l->thread, NULL, loop_main, l)) != 0)
			return kw_fail(-e, "cannot start event loop %u", i);
		l->started = 1;
		snprintf(name, sizeof(name), "kw-loop-%u", i % 100);
		pthread_setname_np(l->thread, name);
	}
	return 0;
}

/* On the loop's own thread: stop accepting, and leave the loop once its
 * requests in flight are answered (completions_cb), or after 10 s.  The
 * ones still waiting for their caller's identity are not waited for: such
 * a check may wait for a server that stopped answering, and the request
 * would be refused (503) once it returns. */
static void
loop_stop(evutil_socket_t fd, short what, void *arg)
{
	struct kwd_loop *l = arg;
	struct timeval tv = { 10, 0 };

	(void)fd; (void)what;
	http_stop_listening(l);   /* closes the loop's descriptor of the socket */
	/* Do not wait for ever on a request stuck in the token. */
	event_base_loopexit(l->base, l->inflight == atomic_load(&l->ident_waiting) ? NULL : &tv);
}

void
server_stop_accepting(struct kwd *d)
{
	struct timeval now = { 0, 0 };

	atomic_store(&d->stopping, 1);
	for (unsigned i = 1; i < d->nloops; i++)
		if (d->loops[i].started)
			event_base_once(d->loops[i].base, -1, EV_TIMEOUT, loop_stop, &d->loops[i], &now);
	if (d->nloops > 0)
		loop_stop(-1, 0, &d->loops[0]);
}

void
server_join_loops(struct kwd *d)
{
	for (unsigned i = 1; i < d->nloops; i++)
		if (d->loops[i].started) {
			pthread_join(d->loops[i].thread, NULL);
			d->loops[i].started = 0;
		}
}

void
server_free(struct kwd *d)
{
	for (unsigned i = 0; d->loops != NULL && i < d->nloops; i++) {
		struct kwd_loop *l = &d->loops[i];
		/* Requests finished after the loop stopped: hand their replies
		 * to libevent (freed with the connections below) and free
		 * them. */
		if (l->c_event != NULL)
			completions_cb(-1, 0, l);
		http_loop_free(l);   /* closes its connections and its descriptor of the socket */
		if (l->c_event != NULL)
			event_free(l->c_event);
		if (i > 0 && l->base != NULL)
			event_base_free(l->base);
		pthread_mutex_destroy(&l->c_lock);
	}
	free(d->loops);
	d->loops = NULL;
	d->nloops = 0;
	socket_unlink(d);
}
