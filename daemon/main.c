/*
 * keywardend - the keywarden key vault daemon.  See keywardend(8).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <systemd/sd-daemon.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "pkcs11/p11.h"
#include "policy/policy.h"
#include "kw_auditchain.h"
#include "daemon/audit_glue.h"
#include "daemon/cfg.h"
#include "daemon/check.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/server.h"
#include "daemon/stream.h"
#include "daemon/store.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: keywardend --config FILE       run the daemon in the foreground\n"
	    "       keywardend --check-config FILE validate a configuration and exit\n"
	    "       keywardend --check-policy FILE validate a policy and exit\n"
	    "       keywardend --config FILE --verify-audit [DIR]\n"
	    "                                      check the audit log's chain and seals\n"
	    "       keywardend --config FILE --audit-reanchor\n"
	    "                                      run, taking a log cut short or replaced as it\n"
	    "                                      is (the loss is recorded in the log)\n"
	    "       keywardend --config FILE --adopt-keys\n"
	    "                                      run, taking over vault keys another store\n"
	    "                                      owned (recorded in the log)\n"
	    "       keywardend --version\n");
}

static int
verify_mac(void *arg, const uint8_t *data, size_t len, const uint8_t mac[KWAC_MAC_LEN])
{
	return p11_audit_hmac_verify(arg, data, len, mac);
}

/* Check the audit log offline with the token's audit key: every line, the
 * chain across segments, every seal. */
static int
verify_audit(const struct config *cfg, const char *dir)
{
	struct p11_options po;
	struct p11_ctx *p11 = NULL;
	struct kwac_verify_opts o;
	struct kwac_result res;
	struct kwac_anchor anchor;
	char report[2048];
	int e;

	if ((e = kw_secmem_harden_process()) != 0) {
		fprintf(stderr, "keywardend: cannot disable core dumps: %s\n", kw_strerror(e));
		return 2;
	}
	memset(&po, 0, sizeof(po));
	po.module = cfg->token_module;
	po.token = cfg->token;
	po.pin_file = cfg->pin_file;
	po.sessions = 1;
	if ((e = p11_open(&po, &p11)) != 0) {
		fprintf(stderr, "keywardend: token: %s\n", kw_errdetail(e));
		return 2;
	}
	memset(&o, 0, sizeof(o));
	o.check = verify_mac;
	o.arg = p11;
	/* With the daemon stopped the log must end with a seal; while it
	 * runs, its last batch may be half written.  Its lock tells. */
	o.live = KWAC_LIVE_AUTO;
	/* The token's anchor shows a log cut at its end.  It vouches for the
	 * configured log only: another directory given (an archived copy)
	 * may rightly end earlier. */
	if (dir != NULL)
		e = KW_E_NOT_FOUND;
	else if ((e = audit_anchor_read(p11, cfg->audit_dir, &anchor)) == 0)
		o.anchor = &anchor;
	if (e != 0 && dir != NULL)
		fprintf(stderr, "keywardend: %s is not the configured audit.dir: the token's anchor is not checked, so a cut at the log's end cannot be seen\n",
		    dir);
	else if (e != 0 && e != KW_E_NOT_FOUND) {
		fprintf(stderr, "keywardend: token: %s\n", kw_errdetail(e));
		p11_close(p11);
		return 2;
	} else
		fprintf(stderr, "keywardend: the token holds no audit anchor yet: a cut at the log's end cannot be seen\n");
	e = kwac_verify_dir(dir ? dir : cfg->audit_dir, &o, &res);
	kwac_result_format(&res, report, sizeof(report));
	fputs(report, e == 0 ? stdout : stderr);
	p11_close(p11);
	return e == 0 ? 0 : 1;
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct kwd *d = arg;
	(void)what;
	if (d->stopping)
		return;
	log_notice("signal %d: finishing requests in flight, then stopping", (int)sig);
	sd_notify(0, "STOPPING=1");
	server_stop_accepting(d);
}

/* Whether two optional strings are the same. */
static int
str_same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Name every key a reload found changed that takes a restart: the running
 * value stays until then. */
static void
restart_keys_warn(const struct config *nc, const struct config *oc)
{
	char keys[1024] = "";
	size_t n = 0;

#define CHANGED(key, differ) do {                                               \
	if (differ) {                                                           \
		size_t at_ = strlen(keys);                                      \
		snprintf(keys + at_, sizeof(keys) - at_, "%s%s", n++ ? ", " : "", key); \
	}                                                                       \
} while (0)
#define STR(key, f) CHANGED(key, !str_same(nc->f, oc->f))
#define NUM(key, f) CHANGED(key, nc->f != oc->f)
	STR("socket.path", socket_path);
	NUM("socket.mode", socket_mode);
	STR("socket.group", socket_group);
	STR("token.module", token_module);
	STR("token.token", token);
	STR("token.pin_file", pin_file);
	NUM("token.sessions", token_sessions);
	STR("token.wrap", wrap);
	NUM("token.session_copies", session_copies);
	STR("state_dir", state_dir);
	STR("store", store_url);
	STR("audit.dir", audit_dir);
	NUM("audit.segment_size", audit_segment_bytes);
	NUM("audit.segment_age", audit_segment_seconds);
	NUM("audit.timeout_ms", audit_timeout_ms);
	NUM("audit.group_commit_us", audit_group_commit_us);
	NUM("audit.syslog", audit_syslog);
	NUM("audit.preallocate", audit_preallocate);
	NUM("audit.anchor_interval", audit_anchor_seconds);
	NUM("audit.stream_max_lag", audit_stream_max_lag);
	STR("policy", policy_file);
	NUM("limits.workers", workers);
	NUM("limits.write_workers", write_workers);
	NUM("limits.identity_workers", identity_workers);
	NUM("limits.event_loops", event_loops);
	NUM("limits.max_body", max_body);
	NUM("limits.max_value", max_value);
	NUM("limits.max_connections", max_connections);
	NUM("limits.client_timeout", header_timeout_s);
	NUM("limits.request_timeout_ms", request_timeout_ms);
	NUM("log.syslog", log_syslog);
#undef NUM
#undef STR
#undef CHANGED
	if (n > 0)
		log_warn("reload: %s changed: %s a restart, and until then the running value%s "
		    "stay%s", keys, n == 1 ? "that takes" : "those take", n == 1 ? "" : "s",
		    n == 1 ? "s" : "");
}

/* SIGHUP: the parts of the configuration that can change while requests
 * run (log level, each vault's retention and purge protection) take
 * effect; a change to anything else is reported as needing a restart.  A
 * configuration with any error changes nothing. */
static void
reload_config(struct kwd *d)
{
	struct config *nc = NULL, *oc = d->cfg;
	struct config_errors errs;

	if (config_load(oc->path, &nc, &errs) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_err("reload: %s", errs.lines[i]);
		log_err("reload: the configuration has errors; nothing of it changed");
		config_errors_free(&errs);
		return;
	}
	log_set_level(nc->log_level);
	oc->log_level = nc->log_level;
	for (size_t i = 0; i < nc->nvaults; i++) {
		struct config_vault *ov = (struct config_vault *)config_vault_find(oc, nc->vaults[i].name);
		struct store_vault sv;
		if (ov == NULL) {
			log_warn("reload: vault '%s' is new: it takes a restart", nc->vaults[i].name);
			continue;
		}
		__atomic_store_n(&ov->retention_days, nc->vaults[i].retention_days, __ATOMIC_RELAXED);
		__atomic_store_n(&ov->purge_protection, nc->vaults[i].purge_protection, __ATOMIC_RELAXED);
		__atomic_store_n(&ov->rotation_days, nc->vaults[i].rotation_days, __ATOMIC_RELAXED);
		memset(&sv, 0, sizeof(sv));
		snprintf(sv.name, sizeof(sv.name), "%s", ov->name);
		sv.retention_days = ov->retention_days;
		sv.purge_protection = ov->purge_protection;
		if (store_vault_set_attrs(d->store, &sv) != 0)
			log_err("reload: vault '%s': cannot record its attributes in the store", ov->name);
	}
	for (size_t i = 0; i < oc->nvaults; i++)
		if (config_vault_find(nc, oc->vaults[i].name) == NULL)
			log_warn("reload: vault '%s' was removed: it stays served until a restart", oc->vaults[i].name);
	restart_keys_warn(nc, oc);
	log_notice("reload: configuration %s applied", oc->path);
	config_free(nc);
}

/* A reload reads files, looks names up (NSS may ask a directory server),
 * writes the store and waits for its audit events to be durable: seconds,
 * when a disk or a server is slow.  So it runs on a thread of its own, not
 * on loop 0, which would stop serving its connections meanwhile.  SIGHUPs
 * that come during a reload make one more, not one each. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	int started, pending, stop;
} reloader = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0 };

static void reload_all(struct kwd *d);

static void *
reload_main(void *arg)
{
	struct kwd *d = arg;

	pthread_mutex_lock(&reloader.mu);
	for (;;) {
		while (!reloader.pending && !reloader.stop)
			pthread_cond_wait(&reloader.cv, &reloader.mu);
		if (reloader.stop)
			break;
		reloader.pending = 0;
		pthread_mutex_unlock(&reloader.mu);
		reload_all(d);
		pthread_mutex_lock(&reloader.mu);
	}
	pthread_mutex_unlock(&reloader.mu);
	return NULL;
}

static void
reloader_stop(void)
{
	if (!reloader.started)
		return;
	pthread_mutex_lock(&reloader.mu);
	reloader.stop = 1;
	pthread_cond_signal(&reloader.cv);
	pthread_mutex_unlock(&reloader.mu);
	pthread_join(reloader.th, NULL);   /* a reload under way ends first */
	reloader.started = 0;
}

static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig; (void)what; (void)arg;
	pthread_mutex_lock(&reloader.mu);
	reloader.pending = 1;
	pthread_cond_signal(&reloader.cv);
	pthread_mutex_unlock(&reloader.mu);
}

static void
reload_all(struct kwd *d)
{
	json_t *errs = NULL;

	sd_notify(0, "RELOADING=1");
	log_notice("SIGHUP: reloading the configuration and the policy");
	reload_config(d);
	if (d->cfg->policy_file == NULL) {
		log_notice("no policy file is configured: nothing to reload");
	} else if (kwd_policy_reload(d, &errs) != 0) {
		/* (a policy put in force was recorded by kwd_policy_reload) */
		log_err("the new policy was refused; the old one stays in force");
		audit_glue_admin(d, "policy.reload", json_pack("{s:s,s:O}", "result", "refused",
		    "errors", errs));
	}
	json_decref(errs);
	sd_notify(0, "READY=1");
}

static int
make_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return kw_fail(-errno, "cannot create directory %s: %s", path, strerror(errno));
	return kwd_state_dir_check(path, geteuid());
}

/* One daemon per state directory.  SQLite would let two share the store,
 * but each keeps its own view of the vaults' key versions and runs its own
 * rotations and schedule.  The lock is taken before anything else is
 * opened and lasts as long as the process: the kernel drops it at any
 * exit, kill -9 included.  The file holds the pid, for the message a
 * second daemon gives. */
static int
lock_state_dir(const char *dir, int *out)
{
	char path[4096], pid[24];
	size_t len;
	ssize_t n;
	int fd, err;

	if ((size_t)snprintf(path, sizeof(path), "%s/keywardend.lock", dir) >= sizeof(path))
		return kw_fail(KW_E_CONFIG, "state directory %s: the path is too long", dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return kw_fail(-errno, "cannot open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		err = errno;
		if (err != EWOULDBLOCK) {
			close(fd);
			return kw_fail(-err, "cannot lock %s: %s", path, strerror(err));
		}
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		close(fd);
		pid[n > 0 ? n : 0] = '\0';
		len = strspn(pid, "0123456789");
		pid[len] = '\0';
		return kw_fail(-EBUSY, "another keywardend%s%s%s serves the state directory %s: "
		    "one daemon per store (stop that one first, or give this one its own "
		    "state_dir and audit.dir)", len ? " (pid " : "", pid, len ? ")" : "", dir);
	}
	len = (size_t)snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, len, 0) != (ssize_t)len)
		log_warn("cannot write the pid into %s: %s", path, strerror(errno));
	*out = fd;
	return 0;
}

/* Raise the soft limit of open files to the hard one.  Every connection is
 * a descriptor, and the usual soft limit, 1024, is limits.max_connections'
 * default before the store, the audit log and the token take theirs; the
 * soft limit exists for programs that use select(), and the daemon's loops
 * use epoll. */
static void
raise_nofile(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)cfg->max_connections + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("cannot read the limit of open files: %s", strerror(errno));
		return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			log_warn("cannot raise the limit of open files from %llu to %llu: %s",
			    (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
			rl.rlim_cur = was;
		}
	}
	/* Not fatal: connections past it wait in the backlog while accept
	 * pauses (daemon/http.c). */
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
		log_warn("open files are limited to %llu: fewer than limits.max_connections (%u) "
		    "and the daemon's own; raise LimitNOFILE (or ulimit -n)",
		    (unsigned long long)rl.rlim_cur, cfg->max_connections);
}

static enum p11_wrap_mech
wrap_from_config(const char *s)
{
	if (strcmp(s, "aes-gcm") == 0) return P11_WRAP_AES_GCM;
	if (strcmp(s, "aes-kwp") == 0) return P11_WRAP_AES_KWP;
	if (strcmp(s, "aes-ecb-hmac") == 0) return P11_WRAP_ECB_HMAC;
	return P11_WRAP_AUTO;
}

static int
run(struct config *cfg)
{
	struct kwd d;
	struct p11_options po;
	struct store_options so;
	struct event *ev_term = NULL, *ev_int = NULL, *ev_hup = NULL;
	int e, rc = 1, lockfd = -1;

	memset(&d, 0, sizeof(d));
	d.cfg = cfg;
	d.started_us = kwd_now_us();
	for (int i = 0; i < KWD_POOLS; i++) {
		pthread_mutex_init(&d.pool[i].lock, NULL);
		pthread_cond_init(&d.pool[i].cond, NULL);
	}
	pthread_rwlock_init(&d.policy_lock, NULL);

	/* Fail closed: with a software token the keys live in this process,
	 * and a core dump would hold them. */
	if ((e = kw_secmem_harden_process()) != 0) {
		log_err("cannot disable core dumps (RLIMIT_CORE, PR_SET_DUMPABLE): %s: not "
		    "starting with the token's keys open to a dump", kw_strerror(e));
		goto out;
	}
	raise_nofile(cfg);
	if ((e = make_dir(cfg->state_dir, 0700)) != 0) {
		log_err("state directory: %s", kw_errdetail(e));
		goto out;
	}
	if ((e = lock_state_dir(cfg->state_dir, &lockfd)) != 0) {
		log_err("state directory: %s", kw_errdetail(e));
		goto out;
	}

	memset(&po, 0, sizeof(po));
	po.module = cfg->token_module;
	po.token = cfg->token;
	po.pin_file = cfg->pin_file;
	/* One session a thread that calls the token, by default; past the
	 * pool's limit, the threads wait their turn for one. */
	po.sessions = cfg->token_sessions ? cfg->token_sessions :
	    cfg->workers + cfg->write_workers + 3;
	if (cfg->token_sessions == 0 && po.sessions > P11_SESSIONS_MAX)
		po.sessions = P11_SESSIONS_MAX;
	po.wrap = wrap_from_config(cfg->wrap);
	po.no_session_copies = !cfg->session_copies;
	if ((e = p11_open(&po, &d.p11)) != 0) {
		log_err("token: %s", kw_errdetail(e));
		goto out;
	}
	{
		struct p11_token_info ti;
		if (p11_token_info(d.p11, &ti) == 0)
			log_info("token '%s' (%s): wrap %s, %u sessions, session copies %s%s",
			    ti.label, ti.manufacturer, p11_wrap_mech_name(ti.wrap), ti.sessions,
			    ti.session_copies ? "on" : "off",
			    ti.keys_modifiable ? " (new keys are created modifiable, "
			    "the only keys this token copies)" : "");
	}
	if ((e = p11_audit_key_ensure(d.p11)) != 0) {
		log_err("token: audit key: %s", kw_errdetail(e));
		goto out;
	}
	memset(&so, 0, sizeof(so));
	so.url = cfg->store_url;
	/* One a thread that uses the store: the workers, a rewrap thread per
	 * vault, the maintenance thread, and one to spare (they are opened
	 * only when needed). */
	so.connections = cfg->workers + cfg->write_workers + (unsigned)cfg->nvaults + 2;
	so.exclusive = 1;
	if ((e = store_open(&so, &d.store)) != 0) {
		log_err("store: %s", kw_errdetail(e));
		goto out;
	}
	if (cfg->policy_file != NULL && (e = kwd_policy_reload(&d, NULL)) != 0) {
		log_err("policy %s cannot be used; refusing to start", cfg->policy_file);
		goto out;
	}
	if ((e = audit_glue_open(&d)) != 0) {
		log_err("audit log: %s", kw_errdetail(e));
		goto out;
	}
	if ((e = kwd_vaults_init(&d)) != 0)
		goto out;
	if ((e = kwd_keys_load(&d)) != 0) {
		log_err("vault keys: %s", kw_errdetail(e));
		goto out;
	}

	evthread_use_pthreads();
	if ((d.base = server_base_new()) == NULL) {
		log_err("cannot create the event loop");
		goto out;
	}
	if ((e = server_start(&d)) != 0) {
		log_err("socket: %s", kw_errdetail(e));
		goto out;
	}
	if ((e = stream_init(&d)) != 0) {
		log_err("audit stream: %s", kw_errdetail(e));
		goto out;
	}
	if ((e = kwd_workers_start(&d, cfg->workers, cfg->write_workers, cfg->identity_workers)) != 0) {
		log_err("workers: %s", kw_strerror(e));
		goto out;
	}
	if ((e = kwd_rotation_start_thread(&d)) != 0) {
		log_err("rotation: %s", kw_errdetail(e));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);   /* a file size limit fails writes (503), it does not kill us */
	ev_term = evsignal_new(d.base, SIGTERM, on_stop, &d);
	ev_int = evsignal_new(d.base, SIGINT, on_stop, &d);
	if ((e = pthread_create(&reloader.th, NULL, reload_main, &d)) != 0) {
		log_err("cannot start the reload thread: %s", strerror(e));
		goto out;
	}
	reloader.started = 1;
	pthread_setname_np(reloader.th, "kw-reload");
	ev_hup = evsignal_new(d.base, SIGHUP, on_hup, &d);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	event_add(ev_hup, NULL);

	/* the policy in force from the start: reloads name it as previous */
	audit_glue_admin(&d, "start", json_pack("{s:s,s:i,s:s?}", "version", PACKAGE_VERSION,
	    "pid", (int)getpid(), "policy_hash", d.policy != NULL ? d.policy_hash : NULL));
	log_notice("keywardend %s ready on %s (%u event loops, %u workers, %u write workers, "
	    "%u identity workers, %zu vault%s)", PACKAGE_VERSION, cfg->socket_path, cfg->event_loops,
	    cfg->workers, cfg->write_workers, cfg->identity_workers, cfg->nvaults,
	    cfg->nvaults == 1 ? "" : "s");
	if ((e = server_run_loops(&d)) != 0) {
		log_err("event loops: %s", kw_errdetail(e));
		server_stop_accepting(&d);
		server_join_loops(&d);
		goto out;
	}
	sd_notify(0, "READY=1");
	event_base_dispatch(d.base);
	server_join_loops(&d);   /* each stops once its requests in flight are answered */
	rc = 0;
	log_notice("stopping");
out:
	reloader_stop();
	kwd_rotation_stop_all(&d);
	kwd_workers_stop(&d);
	if (ev_term) event_free(ev_term);
	if (ev_int) event_free(ev_int);
	if (ev_hup) event_free(ev_hup);
	if (d.audit != NULL && rc == 0)
		audit_glue_admin(&d, "stop", json_pack("{s:i}", "pid", (int)getpid()));
	stream_shutdown(&d);
	audit_glue_close(&d);   /* completes every pending event */
	kwd_keys_free(&d);
	server_free(&d);
	store_close(d.store);
	p11_close(d.p11);
	kwd_policy_free(&d);
	if (d.base != NULL)
		event_base_free(d.base);
	if (lockfd >= 0)
		close(lockfd);   /* last: everything it guards is closed */
	return rc;
}

/* jansson frees through this: request bodies carry secret values, and the
 * parser's buffers and strings hold copies of them, whatever path the
 * request takes afterwards (a refusal included).  The text json_dumps()
 * returns is ours and freed with free(). */
static void
json_free_wiped(void *p)
{
	if (p != NULL) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", required_argument, NULL, 'C' },
		{ "verify-audit", no_argument, NULL, 'A' },
		{ "audit-reanchor", no_argument, NULL, 'R' },
		{ "adopt-keys", no_argument, NULL, 'K' },
		{ "check-policy", required_argument, NULL, 'P' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cfgpath = NULL;
	int verify = 0, reanchor = 0, adopt = 0;
	struct config *cfg = NULL;
	struct config_errors errs;
	int c, r;

	json_set_alloc_funcs(malloc, json_free_wiped);
	while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'C':
			return kwd_check_config(optarg);
		case 'P':
			return kwd_check_policy(optarg);
		case 'A':
			verify = 1;
			break;
		case 'R':
			reanchor = 1;
			break;
		case 'K':
			adopt = 1;
			break;
		case 'V':
			printf("keywardend %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (cfgpath == NULL || optind < argc - (verify ? 1 : 0)) {
		usage(stderr);
		return 2;
	}
	if ((r = config_load(cfgpath, &cfg, &errs)) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "keywardend: %s\n", errs.lines[i]);
		if (errs.n == 0)
			fprintf(stderr, "keywardend: %s: %s\n", cfgpath, kw_strerror(r));
		config_errors_free(&errs);
		return 1;
	}
	log_setup(cfg->log_level, cfg->log_syslog, "keywardend");
	cfg->audit_reanchor = reanchor;
	cfg->adopt_keys = adopt;
	if (verify)
		r = verify_audit(cfg, optind < argc ? argv[optind] : NULL);
	else
		r = run(cfg);
	config_free(cfg);
	return r;
}
