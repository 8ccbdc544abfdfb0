/*
 * kwd.h - the daemon's shared state and the life of one request.
 *
 * Threads: event loops (libevent's, limits.event_loops) own connections,
 * HTTP (daemon/http.c) and replies, each its own connections; two fixed
 * pools of workers do token and store work (reads and key operations in
 * one, writes, which wait for disks, and slow token work in the other);
 * the audit writer makes events durable.  A request travels:
 *
 *   loop: parse, identify, authorize --> worker: store + token + crypto
 *     --> audit: event durable --> loop: reply
 *
 * and a denial goes straight from the loop to the audit writer and back.
 * The first request of a connection whose caller's executable is still to
 * be checked (a stat, which may wait for a file server) or whose names are
 * still to be looked up (NSS, which may wait for a directory server: see
 * daemon/identity.h) is authorized on the worker instead, after that, and
 * so is any request of the connection until it is done:
 *
 *   loop: parse, identify --> worker: check the executable, look up the
 *     names, authorize, store + token + crypto --> audit --> loop: reply
 *     (the connection keeps what the worker learnt for its next requests)
 *
 * The identity workers are a pool of their own (KWD_POOL_IDENTITY); a
 * request that waits longer than limits.request_timeout_ms for one of them
 * is taken back by its loop and refused (503, audited).
 *
 * No reply leaves before its audit event is durable (fail closed).
 */
#ifndef KW_KWD_H
#define KW_KWD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "kw_secmem.h"
#include "daemon/cfg.h"
#include "daemon/identity.h"

struct event;
struct event_base;
struct evbuffer;
struct kwd_conn;
struct p11_ctx;
struct store;
struct audit_log;
struct policy;
struct audit_sub;
struct stream;
struct kwd;
struct kwd_req;

/* Actions a request asks for (the same words as the policy's). */
enum kwd_action {
	KWD_A_NONE = 0,
	KWD_A_SECRET_GET, KWD_A_SECRET_LIST, KWD_A_SECRET_SET, KWD_A_SECRET_UPDATE,
	KWD_A_SECRET_DELETE, KWD_A_SECRET_RECOVER, KWD_A_SECRET_PURGE,
	KWD_A_SECRET_BACKUP, KWD_A_SECRET_RESTORE,
	KWD_A_VAULT_STATUS,
	KWD_A_AUDIT_STREAM,
	KWD_A_AUDIT_READ,
	KWD_A_POLICY_RELOAD,
	KWD_A_POLICY_EXPLAIN,
	KWD_A_KEY_DATAKEY, KWD_A_KEY_WRAP, KWD_A_KEY_UNWRAP,
	KWD_A_KEY_ENCRYPT, KWD_A_KEY_DECRYPT,
	KWD_A_KEY_SIGN, KWD_A_KEY_VERIFY, KWD_A_KEY_CREATE,
	KWD_A_VAULT_ROTATE, KWD_A_VAULT_RETIRE,
	KWD_A_SERVICE,       /* health, whoami, metrics: open to every caller */
};
const char *kwd_action_name(enum kwd_action a);

typedef void (*kwd_handler_fn)(struct kwd_req *r);

/* One HTTP request in flight.  Owned by the loop until submitted; then by
 * the worker; then by the audit writer; then by the loop again, which
 * replies and frees it. */
struct kwd_loop;
struct kwd_req {
	struct kwd *d;
	struct kwd_loop *loop;         /* the event loop of its connection */
	struct kwd_conn *conn;         /* NULL-ed if the client went away */
	uint64_t id;                   /* request id, also in the audit event */
	struct peer_identity who;
	int method;                    /* KWH_* (daemon/http_parse.h) */
	enum kwd_action action;
	char vault[CONFIG_VAULT_MAX + 1];
	char name[257];
	uint64_t version;              /* from the path, 0 if none */
	int has_version;
	int vault_missing;             /* routed, but no such vault: 404 once authorized */
	int stream;                    /* reply is the audit stream from stream_since */
	uint64_t stream_since;
	json_t *query;                 /* query parameters, object of strings */
	json_t *body;                  /* parsed JSON body or NULL */
	json_t *whoami_groups;         /* whoami: the caller's groups by name, looked up
	                                * on an identity worker (NSS may wait for a
	                                * directory server); NULL until then */
	kwd_handler_fn handler;        /* runs on a worker */
	char decided_by[256];          /* policy rule sentence */
	char policy_hash[72];          /* of the policy that decided; "" for none */

	/* results, written by the handler */
	int status;                    /* HTTP status */
	struct evbuffer *reply;        /* JSON body (or text) */
	const char *content_type;
	const char *allow;             /* an Allow header (405), or NULL */
	int close;                     /* close the connection after the reply */
	kw_secret reply_secret;        /* a reply that holds a value: wiped after send */
	json_t *extra;                 /* extra audit fields set by the handler, or NULL */
	int allowed;                   /* the policy's word */
	char err_code[32];             /* set by kwd_reply_error, for the audit */
	char err_msg[512];
	uint32_t key_version;          /* master-key version used, for the audit */
	uint64_t t_start_us;
	void (*audit_done)(void *arg, int status);   /* audit_glue's continuation */
	/* who.exe to be checked by the worker before it authorizes (no claim:
	 * who.exe is final), as who.user and group are to be looked up while
	 * !who.names_resolved; identity_checked once that was done, for the
	 * connection to keep. */
	struct peer_exe_claim exe_claim;
	int identity_checked;
	/* While its caller's identity is to be completed: the deadline of its
	 * wait for an identity worker (limits.request_timeout_ms; the loop's
	 * timer, made, fired and freed on the loop), and whether it is still
	 * in that pool's queue (under the pool's lock). */
	struct event *ident_timer;
	int ident_queued;

	struct kwd_req *next;          /* queue links */
};

struct kwd_metrics {
	atomic_uint_fast64_t requests;
	atomic_uint_fast64_t responses_2xx, responses_4xx, responses_5xx;
	atomic_uint_fast64_t denied;
	atomic_uint_fast64_t token_errors, store_errors, audit_errors;
	atomic_uint_fast64_t connections_open, connections_total, connections_refused;
	atomic_uint_fast64_t connections_timed_out;
	atomic_uint_fast64_t identity_timeouts;   /* first requests that waited too long for an identity worker */
	/* gauges (daemon/http.c): bytes of the connections' input buffers,
	 * and of replies waiting for clients that do not read them */
	atomic_uint_fast64_t conn_in_bytes, conn_out_backlog;
	atomic_uint_fast64_t latency_us_sum;
	atomic_uint_fast64_t secret_reads, secret_writes;
};

/* An event loop: its own libevent base, its descriptor of the listening
 * socket, connections (daemon/http.c), completion queue and audit stream
 * clients.  Loop 0 runs on the main thread (which also has the signals and
 * timers), the others each on a thread of their own (limits.event_loops).
 * A request stays on its connection's loop: only that thread touches the
 * connection. */
struct kwd_loop {
	struct kwd *d;
	struct event_base *base;
	int listen_fd;                 /* its descriptor of the socket, until it stops accepting */
	struct event *listener, *accept_pause, *sweep;
	struct kwd_conn *conns;        /* loop thread only */
	char date[40];                 /* the Date header, of date_t */
	time_t date_t;
	pthread_t thread;
	int started;

	/* completions from workers and the audit writer */
	pthread_mutex_t c_lock;
	struct kwd_req *c_head, *c_tail;
	struct event *c_event;
	unsigned inflight;             /* loop thread only */
	/* Of those, the ones waiting for an identity check (KWD_POOL_IDENTITY):
	 * a stopping loop does not wait for them. */
	atomic_uint ident_waiting;

	/* audit stream clients (loop thread only) */
	struct event *stream_ev;
	struct stream *streams;
	atomic_uint nstreams;          /* read by the audit writer */
};

struct kwd {
	struct config *cfg;
	struct event_base *base;       /* the main thread's, loop 0's */
	struct kwd_loop *loops;
	unsigned nloops;
	/* The socket file this process bound (not one passed by systemd):
	 * removed at exit only if the path still names it. */
	int sock_bound;
	dev_t sock_dev;
	ino_t sock_ino;
	struct p11_ctx *p11;
	struct store *store;
	struct audit_log *audit;
	struct policy *policy;         /* the policy in force (swapped on reload), or NULL */
	char policy_hash[72];          /* SHA-256 of the policy in force, hex */
	pthread_rwlock_t policy_lock;
	atomic_uint_fast64_t next_req_id;
	atomic_int stopping;
	struct kwd_metrics m;
	uint64_t started_us;

	/* Three worker pools: KWD_POOL_FAST runs what keeps a thread busy on
	 * CPU and token (reads, key operations), sized for them; KWD_POOL_WRITE
	 * runs what waits for disks (a write waits for its audit intent and its
	 * store commit), so that waiting writes neither starve reads nor add
	 * runnable threads to fight over the cores and the token;
	 * KWD_POOL_IDENTITY completes a new caller's identity (the stat of its
	 * executable, the NSS lookups of its names), which may wait for a file
	 * or directory server that stopped answering, so that such a wait ties
	 * up none of the threads that serve known callers. */
	struct kwd_pool {
		struct kwd *d;
		pthread_t *threads;
		unsigned n;
		pthread_mutex_t lock;
		pthread_cond_t cond;
		struct kwd_req *head, *tail;
		int stop;
	} pool[3];

	/* the audit log's subscription that wakes the loops' stream clients */
	struct audit_sub *stream_sub;

	/* master-key versions and rotations of each vault (daemon/rotation.c) */
	struct kwd_vault *vaults;
	size_t nvaults;
	pthread_t maint;               /* schedule and resume thread */
	int maint_started;
	pthread_mutex_t maint_lock;
	pthread_cond_t maint_cond;
	int maint_stop;
	int maint_kick;                /* run the thread's checks now (maint_lock) */
};

#include "daemon/kwtime.h"   /* kwd_now_us, kwd_time_str, kwd_time_parse */

/* RFC 3339 of us as a JSON string, or JSON null for 0 ("not set"). */
json_t *kwd_time_json(int64_t us);
/* bin as a JSON string of base64 (url: base64url, no padding); NULL when
 * out of memory. */
json_t *kwd_b64_json(const uint8_t *bin, size_t len, int url);

/* --- replies (any thread, into r) --- */
void kwd_reply_json(struct kwd_req *r, int status, json_t *obj);   /* steals obj */
void kwd_reply_error(struct kwd_req *r, int status, const char *code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Map a kw_error code from a lower layer to a reply; logs it. */
void kwd_reply_kwerr(struct kwd_req *r, int err, const char *what);

/* --- a request arrives (daemon/server.c) ---
 * What the loop makes of a request before anything is decided: the
 * target's path and query (r->query, an object of strings), the body as a
 * JSON object (r->body), and the route (kwd_route: r->action, r->handler,
 * r->vault, r->name, r->version).  No token, store, policy or I/O: the
 * fuzzing harness tests/fuzz/fuzz_request.c calls it with no daemon
 * running.  0: routed, where r->status is set if the router replied itself
 * (a bad route, which is then decided and audited like any request); -1:
 * refused before routing (a body that is not a JSON object, out of
 * memory): r holds its reply, and is completed without an audit event. */
int kwd_request_parse(struct kwd_req *r, const char *target, size_t target_len,
    const char *body, size_t blen);

/* --- queues --- */
enum { KWD_POOL_FAST = 0, KWD_POOL_WRITE = 1, KWD_POOL_IDENTITY = 2, KWD_POOLS = 3 };
/* Start nfast read, nwrite write and nident identity workers
 * (limits.identity_workers: as many callers' checks may wait at once
 * before the next new caller's first request waits for one of them). */
int kwd_workers_start(struct kwd *d, unsigned nfast, unsigned nwrite, unsigned nident);
void kwd_workers_stop(struct kwd *d);
void kwd_submit(struct kwd_req *r);            /* loop -> worker */
void kwd_complete(struct kwd_req *r);          /* any thread -> loop (reply) */
/* Hold this thread's completions, then hand them on once per loop. */
void kwd_complete_hold(void *arg);
void kwd_complete_release(void *arg);
void kwd_finish(struct kwd_req *r);            /* after handler: audit, then complete */

/* --- handlers (daemon/handlers.c) --- */
/* Writes log their intent durably before they run: no change without a
 * trace.  0, or r's reply is a 503 saying that nothing was <done>. */
int kwd_intent_or_refuse(struct kwd_req *r, const char *done);
void kwd_route(struct kwd_req *r, const char *path);   /* sets action, handler, or replies */
void h_secret_get(struct kwd_req *r);
/* What PUT and PATCH of a secret read of the request before any token or
 * store work (also for tests/fuzz/fuzz_request.c): 0 with the outputs
 * set, or -1 with r's reply set (400, 413, 503) and nothing to free.  PUT:
 * the value, decoded into locked memory (the body's copy of it is wiped,
 * whatever the outcome), the cas query parameter, and the attributes into
 * m (enabled and "{}" tags by default) with a bit of *mask for each one
 * given; PATCH: the attributes, of which there must be one, and never a
 * value (a value sent is wiped). */
struct store_meta;
int kwd_secret_put_parse(struct kwd_req *r, kw_secret *val, uint64_t *cas, int *has_cas,
    struct store_meta *m, unsigned *mask);
int kwd_secret_patch_parse(struct kwd_req *r, struct store_meta *attrs, unsigned *mask);
/* What a restore reads of its body before the token and the store (also
 * for tests/fuzz/fuzz_request.c): 0 with *out holding *n records (clear
 * each with store_record_clear, then free *out), or -1 with r's reply set
 * (400, 503) and nothing to free. */
struct store_record;
int kwd_restore_parse(struct kwd_req *r, struct store_record **out, size_t *n);
void h_secret_put(struct kwd_req *r);
void h_secret_list(struct kwd_req *r);
void h_secret_versions(struct kwd_req *r);
void h_secret_patch(struct kwd_req *r);
void h_secret_delete(struct kwd_req *r);
void h_deleted_list(struct kwd_req *r);
void h_deleted_recover(struct kwd_req *r);
void h_deleted_purge(struct kwd_req *r);
void h_vault_list(struct kwd_req *r);
void h_vault_backup(struct kwd_req *r);
void h_vault_restore(struct kwd_req *r);
void h_health(struct kwd_req *r);
void h_whoami(struct kwd_req *r);
/* The names of who's supplementary groups (a gid where a name is not
 * found), json null when they are unknown: NSS lookups, for an identity
 * worker. */
json_t *kwd_whoami_groups(const struct peer_identity *who);
void h_metrics(struct kwd_req *r);
void h_audit_stream(struct kwd_req *r);
void h_audit_verify(struct kwd_req *r);
void h_audit_seal_check(struct kwd_req *r);
void h_policy_reload(struct kwd_req *r);
void h_policy_explain(struct kwd_req *r);
void h_policy_who_can(struct kwd_req *r);

/* --- vault keys (daemon/vaults.c) --- */
int kwd_vaults_init(struct kwd *d);

/* --- master-key versions, rotation, retirement (daemon/rotation.c) ---
 * The daemon keeps each vault's key versions in memory, loaded from the
 * store at start and changed only through these functions (which write the
 * store first), so a read never asks the store which keys it may use. */
int kwd_keys_load(struct kwd *d);
void kwd_keys_free(struct kwd *d);
/* The vault's current version for new writes. */
int kwd_keys_current(struct kwd *d, const char *vault, uint32_t *version);
/* Read the vault's versions from the store again, after any change under
 * way: for a write the store refused because the version it was given is
 * no longer current (the view is behind the store: a rotation is being
 * made current, or a read after a switch failed).  0 or the store's error. */
int kwd_keys_refresh(struct kwd *d, const char *vault);
/* 0 if version may unwrap; KW_E_RETIRED, KW_E_KEY_NOT_FOUND otherwise. */
int kwd_keys_usable(struct kwd *d, const char *vault, uint32_t version);
/* The same for a record (name, version) whose wrapped key must name its
 * recorded key_version (KW_E_AUTH otherwise: the store was changed). */
int kwd_wrapped_key_usable(struct kwd *d, const char *vault, const char *name, uint64_t version,
    uint32_t key_version, const uint8_t *wrapped, size_t wrapped_len);
/* Use a new master-key version once before it becomes current, through
 * the calls that writes and reads make: a random data key wrapped under it
 * must unwrap to the same key: a rotation's new version and a new vault's
 * first one (daemon/vaults.c).  0, or the token's failure with a detail
 * (KW_E_P11 for a blob it could not open). */
int kwd_mkey_trial(struct kwd *d, const char *vault, uint32_t version);
/* Start the thread that resumes interrupted rotations and starts scheduled
 * ones; stop every rotation and that thread (before the store closes). */
int kwd_rotation_start_thread(struct kwd *d);
void kwd_rotation_stop_all(struct kwd *d);
void h_rotation_start(struct kwd_req *r);
void h_rotation_status(struct kwd_req *r);
void h_mkeys_list(struct kwd_req *r);
void h_mkey_retire(struct kwd_req *r);
void h_mkey_destroy(struct kwd_req *r);

/* --- data keys and encryption (daemon/keyops.c) --- */
/* What a key operation (r->action: KWD_A_KEY_DATAKEY, _UNWRAP, _WRAP for
 * rewrap, _ENCRYPT, _DECRYPT) reads of its request before the token (also
 * for tests/fuzz/fuzz_request.c).  kwd_keyop_parse: 0 with *k set (free it
 * with kwd_keyop_clear), or -1 with r's reply set (400, 413, 500, 503) and
 * *k empty. */
struct kwd_keyop {
	size_t bytes;                  /* datakey: the data key's length */
	int want_plaintext;            /* datakey: reply with it too */
	uint8_t *blob;                 /* unwrap, rewrap: the KWK1; decrypt: the KWE1 */
	size_t blob_len;
	const uint8_t *tblob;          /* the token's blob in it */
	size_t tblob_len;
	size_t head_len;               /* decrypt: the KWE1 header, up to its nonce */
	uint8_t *pt;                   /* encrypt: the plaintext, locked (its base64 in
	                                  the body is wiped, whatever the outcome) */
	size_t pt_len;
	char *aad;                     /* the operation's prefix, then the canonical
	                                  context */
	size_t aad_len;
};
int kwd_keyop_parse(struct kwd_req *r, struct kwd_keyop *k);
void kwd_keyop_clear(struct kwd_keyop *k);
void h_key_datakey(struct kwd_req *r);
void h_key_unwrap(struct kwd_req *r);
void h_key_rewrap(struct kwd_req *r);
void h_key_encrypt(struct kwd_req *r);
void h_key_decrypt(struct kwd_req *r);
/* Reply r with obj plus "field": base64 of bin, built in locked memory
 * (the reply is wiped after it is sent).  Steals obj. */
void kwd_reply_json_secret(struct kwd_req *r, int status, json_t *obj,
    const char *field, const uint8_t *bin, size_t len);

/* --- signing keys (daemon/signkeys.c) --- */
void h_skey_create(struct kwd_req *r);
void h_skey_rotate(struct kwd_req *r);
void h_skey_list(struct kwd_req *r);
void h_skey_get(struct kwd_req *r);
void h_skey_sign(struct kwd_req *r);
void h_skey_verify(struct kwd_req *r);
void h_skey_destroy(struct kwd_req *r);
void h_skey_disable(struct kwd_req *r);
void h_skey_enable(struct kwd_req *r);

/* --- authorization (daemon/authz.c) --- */
struct kwd_decision {
	int allow;
	char reason[256];
	char policy_hash[72];
};
void kwd_authorize(struct kwd *d, const struct kwd_req *r, struct kwd_decision *out);
/* The decision on another action, by r's caller in r's vault, about name
 * (a request that does more than its own action checks each part). */
void kwd_authorize_as(struct kwd *d, const struct kwd_req *r, enum kwd_action action,
    const char *name, struct kwd_decision *out);
/* Load the configured policy and swap it in, or keep the old one and
 * return the errors (a JSON array of "file:line:col: ..." strings). */
int kwd_policy_reload(struct kwd *d, json_t **errs);
void kwd_policy_free(struct kwd *d);
struct policy_identity;
void authz_identity(const struct peer_identity *w, struct policy_identity *id);

#endif
