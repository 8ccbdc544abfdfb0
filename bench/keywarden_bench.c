/*
 * keywarden-bench - how fast a running keywardend serves, next to how fast
 * its token is.
 *
 *   keywarden-bench [--config FILE | --socket PATH ...] [--workload W]
 *                   [--clients N] [--seconds T | --ops K] [--secrets S]
 *                   [--json] [--sweep] ...          (--help lists them all)
 *
 * It drives the daemon over its Unix socket with N keep-alive connections
 * (bench/load.c), and in the same run times the one token call a read
 * cannot avoid: p11_unwrap of a data key wrapped under the vault's current
 * master key, in this process, on the same token.  The daemon's CPU and RSS
 * come from /proc.  Figures go to stdout as a table, and with --json one
 * JSON object per point, the last line being the last point.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "bench/bench.h"
#include "daemon/cfg.h"
#include "daemon/seal.h"
#include "pkcs11/p11.h"

struct opts {
	const char *config;
	const char *socket;
	const char *module, *token, *pin_file;
	const char *vault;
	const char *prefix;
	enum bench_workload workload;
	unsigned clients, threads;
	double seconds;
	int seconds_set;
	uint64_t ops;
	uint64_t secrets;
	size_t value_bytes;
	int reuse;
	int no_create;
	double raw_seconds;
	unsigned raw_threads;
	int no_raw;
	long pid;
	int json;
	int sweep;
	uint64_t sweep_secrets;
	unsigned populate_clients;
};

/* The token's own rate, measured once per invocation. */
struct raw_figures {
	int measured;
	unsigned version;            /* master-key version the blob is under */
	unsigned threads;            /* the many-thread run */
	double one, many, best;      /* unwraps per second */
	double copy_one;             /* 1 thread, through a session copy (0: none) */
	char mech[32];
};

/* One measured point. */
struct point {
	enum bench_workload workload;
	unsigned clients;
	uint64_t secrets;
	struct bench_result r;
	double ops_per_s;
	double cpu_us_per_op;        /* < 0: unknown */
	double bench_cpu_us_per_op;
	long rss_kib;                /* < 0: unknown */
	/* rotate */
	double get_before;           /* ops/s of get just before */
	double rewrap_per_s;         /* as the daemon reports it */
	double rewrap_observed;      /* records done / time seen by the poller */
	double rot_seconds;
	long long rot_done, rot_total;
	double get_during;
	char rot_state[16];
};

static const char *prog = "keywarden-bench";

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: %s [options]\n"
	    "  -c, --config FILE      the daemon's YAML configuration: socket, token, workers, vaults\n"
	    "  -s, --socket PATH      the daemon's socket (overrides the configuration)\n"
	    "      --module PATH      PKCS#11 module, --token LABEL, --pin-file FILE: the token\n"
	    "                         for the raw loop (override the configuration)\n"
	    "  -V, --vault NAME       vault to use (default: the first of the configuration, else dev)\n"
	    "  -w, --workload W       get (default), set, datakey, mixed (90%% get), rotate\n"
	    "  -n, --clients N        keep-alive connections, one request in flight each (32)\n"
	    "  -t, --threads N        bench threads sharing the connections (1)\n"
	    "  -d, --seconds T        length of a run (5; rotate: until the rotation ends, at most 300)\n"
	    "  -k, --ops K            stop after K operations instead\n"
	    "  -S, --secrets S        secrets get/mixed/rotate read over, made first (1000)\n"
	    "      --reuse            keep secrets that exist (PUT ?cas=0) instead of a new version each\n"
	    "      --no-create        the secrets exist already (an earlier run made them): do not make them\n"
	    "      --prefix P         secret names are P<7 digits> (bench/s)\n"
	    "      --value-bytes B    size of the values written (32)\n"
	    "      --raw-seconds T    length of each raw token loop (1)\n"
	    "      --raw-threads N    threads of the second raw loop (default: the daemon's workers\n"
	    "                         or the CPUs, whichever is more; at least 2)\n"
	    "      --no-raw           skip the raw token loop\n"
	    "      --pid PID          the daemon's pid (default: from the socket's SO_PEERCRED)\n"
	    "      --json             one JSON object per point; the last line is the last point\n"
	    "      --sweep            the curve over 1, 4, 16, 64 clients, then 1k, 100k, 1M secrets\n"
	    "      --sweep-secrets M  largest secret count of the sweep (1000000)\n",
	    prog);
}

static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	double mult = 1;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		return -EINVAL;
	if (*end == 'k' || *end == 'K')
		mult = 1e3, end++;
	else if (*end == 'M')
		mult = 1e6, end++;
	if (*end != '\0')
		return -EINVAL;
	*out = (uint64_t)((double)v * mult);
	return 0;
}

static double
now_s(void)
{
	return (double)bench_now_ns() / 1e9;
}

/* ---- the daemon from /proc ------------------------------------------------ */

static long
daemon_pid_find(const char *path)
{
	struct sockaddr_un sa;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd;
	long pid = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0)
		pid = cred.pid;
	close(fd);
	return pid;
}

/* utime + stime of pid in clock ticks, or -1. */
static long long
daemon_cpu_ticks(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The name may hold spaces and parentheses: fields start after the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

static long
daemon_rss_kib(long pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static double
self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- the raw token loop ----------------------------------------------------- */

struct raw_thread {
	pthread_t th;
	p11_ctx *ctx;
	const char *vault;
	const uint8_t *blob;
	size_t bloblen;
	const char *aad;
	size_t aadlen;
	uint64_t until;
	pthread_barrier_t *go;
	uint64_t ops;
	int err;
};

static void *
raw_thread_main(void *arg)
{
	struct raw_thread *t = arg;
	uint8_t *dek = kw_secalloc(P11_DEK_MAX);
	size_t deklen;

	pthread_barrier_wait(t->go);
	if (dek == NULL) {
		t->err = -ENOMEM;
		return NULL;
	}
	while (bench_now_ns() < t->until) {
		int e = p11_unwrap(t->ctx, t->vault, t->blob, t->bloblen, t->aad, t->aadlen, dek, &deklen);
		if (e != 0) {
			t->err = e;
			break;
		}
		t->ops++;
	}
	kw_secfree(dek);
	return NULL;
}

/* Unwraps per second with n threads for the given seconds. */
static int
raw_run(p11_ctx *ctx, const char *vault, const uint8_t *blob, size_t bloblen,
    const char *aad, size_t aadlen, unsigned n, double seconds, double *rate)
{
	struct raw_thread *t = calloc(n, sizeof(*t));
	pthread_barrier_t go;
	uint64_t start, total = 0;
	unsigned started = 0;
	int rc = 0;

	if (t == NULL)
		return -ENOMEM;
	pthread_barrier_init(&go, NULL, n + 1);
	for (unsigned i = 0; i < n; i++) {
		t[i] = (struct raw_thread){ .ctx = ctx, .vault = vault, .blob = blob,
		    .bloblen = bloblen, .aad = aad, .aadlen = aadlen, .go = &go, .until = UINT64_MAX };
	}
	start = bench_now_ns();
	for (unsigned i = 0; i < n; i++)
		t[i].until = start + (uint64_t)(seconds * 1e9) + 2000000;   /* ~barrier slack */
	for (; started < n; started++)
		if (pthread_create(&t[started].th, NULL, raw_thread_main, &t[started]) != 0)
			break;
	if (started < n) {
		fprintf(stderr, "%s: cannot start the raw loop's threads\n", prog);
		abort();   /* the barrier would wait forever */
	}
	pthread_barrier_wait(&go);
	start = bench_now_ns();
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i].th, NULL);
	for (unsigned i = 0; i < n; i++) {
		total += t[i].ops;
		if (t[i].err != 0 && rc == 0)
			rc = t[i].err;
	}
	*rate = (double)total / ((double)(bench_now_ns() - start) / 1e9);
	pthread_barrier_destroy(&go);
	free(t);
	return rc;
}

/* copies 0: the token-resident master key, as the figures are
 * taken (the ratio's denominator); 1: through a session copy of it, as the
 * daemon uses it where the token makes one (one thread only). */
static int
raw_measure(const struct opts *o, int copies, struct raw_figures *out)
{
	struct p11_options po;
	p11_ctx *ctx = NULL;
	struct p11_mkey *keys = NULL;
	struct p11_token_info ti;
	size_t nkeys = 0, bloblen = 0, deklen = 0;
	uint8_t blob[P11_WRAPPED_MAX];
	uint8_t *dek = NULL, *back = NULL;
	char aad[400];
	int aadlen, e;
	unsigned many = copies ? 1 : o->raw_threads ? o->raw_threads : 2;

	memset(out, 0, sizeof(*out));
	if (o->module == NULL || o->token == NULL || o->pin_file == NULL) {
		fprintf(stderr, "%s: the raw token loop needs the token: --config, or --module, "
		    "--token and --pin-file (or --no-raw)\n", prog);
		return -EINVAL;
	}
	memset(&po, 0, sizeof(po));
	po.module = o->module;
	po.token = o->token;
	po.pin_file = o->pin_file;
	po.sessions = many + 1;
	po.no_session_copies = !copies;
	if ((e = p11_open(&po, &ctx)) != 0) {
		fprintf(stderr, "%s: cannot open the token: %s\n", prog, kw_errdetail(e));
		goto out;
	}
	if ((e = p11_mkey_list(ctx, o->vault, &keys, &nkeys)) != 0) {
		fprintf(stderr, "%s: cannot list the master keys of vault '%s': %s\n", prog,
		    o->vault, kw_errdetail(e));
		goto out;
	}
	if (nkeys == 0) {
		e = -ENOENT;
		fprintf(stderr, "%s: vault '%s' has no master key in the token: is it the daemon's "
		    "token, and has the daemon started?\n", prog, o->vault);
		goto out;
	}
	out->version = keys[nkeys - 1].version;   /* sorted: the newest is current */
	if (p11_token_info(ctx, &ti) == 0) {
		snprintf(out->mech, sizeof(out->mech), "%s", p11_wrap_mech_name(ti.wrap));
		if (copies && !ti.session_copies) {
			e = 0;   /* this token makes no copies: nothing to measure */
			goto out;
		}
	}
	/* A data key wrapped just as the daemon wraps one for a record. */
	aadlen = seal_aad(aad, sizeof(aad), o->vault, "bench/raw", 1);
	if ((dek = kw_secalloc(SEAL_KEY_LEN)) == NULL || (back = kw_secalloc(P11_DEK_MAX)) == NULL) {
		e = -ENOMEM;
		goto out;
	}
	if (aadlen < 0 || (e = p11_random(ctx, dek, SEAL_KEY_LEN)) != 0 ||
	    (e = p11_wrap(ctx, o->vault, out->version, dek, SEAL_KEY_LEN, aad, (size_t)aadlen,
	    blob, &bloblen)) != 0 ||
	    (e = p11_unwrap(ctx, o->vault, blob, bloblen, aad, (size_t)aadlen, back, &deklen)) != 0) {
		if (aadlen < 0)
			e = aadlen;
		fprintf(stderr, "%s: cannot wrap and unwrap a data key: %s\n", prog, kw_errdetail(e));
		goto out;
	}
	if (deklen != SEAL_KEY_LEN || kw_memeq_ct(dek, back, SEAL_KEY_LEN) != 0) {
		e = KW_E_INTERNAL;
		fprintf(stderr, "%s: the unwrapped data key differs from the one wrapped\n", prog);
		goto out;
	}
	if ((e = raw_run(ctx, o->vault, blob, bloblen, aad, (size_t)aadlen, 1, o->raw_seconds, &out->one)) != 0 ||
	    (many > 1 && (e = raw_run(ctx, o->vault, blob, bloblen, aad, (size_t)aadlen, many,
	    o->raw_seconds, &out->many)) != 0)) {
		fprintf(stderr, "%s: the raw token loop failed: %s\n", prog, kw_errdetail(e));
		goto out;
	}
	out->threads = many;
	out->best = out->one > out->many ? out->one : out->many;
	out->measured = 1;
out:
	kw_secfree(dek);
	kw_secfree(back);
	free(keys);
	p11_close(ctx);
	return e;
}

/* ---- rotation ------------------------------------------------------------- */

struct rot_ctx {
	const struct opts *o;
	struct point *pt;
	int failed;
	char error[256];
};

/* Start a rotation and poll it until it ends or the load does; then stop
 * the load.  Runs beside the get load (bench_load's during). */
static void
rot_during(void *arg)
{
	struct rot_ctx *x = arg;
	char path[200], *resp = NULL;
	double t0, t1;
	uint64_t p0, p1;
	int st, running;
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	snprintf(path, sizeof(path), "/v1/vaults/%s/rotation", x->o->vault);
	snprintf(x->pt->rot_state, sizeof(x->pt->rot_state), "none");
	/* Let the get load reach its pace first. */
	nanosleep(&(struct timespec){ 0, 300 * 1000 * 1000 }, NULL);
	p0 = bench_load_progress();
	t0 = now_s();
	st = bench_http_once(x->o->socket, "POST", path, NULL, &resp);
	if (st != 202) {
		x->failed = 1;
		snprintf(x->error, sizeof(x->error), "POST %s: %d %.200s", path, st, resp ? resp : "");
		free(resp);
		bench_load_stop();
		return;
	}
	free(resp);
	resp = NULL;
	for (;;) {
		json_t *j;
		const char *state;

		nanosleep(&ts, NULL);
		st = bench_http_once(x->o->socket, "GET", path, NULL, &resp);
		t1 = now_s();
		p1 = bench_load_progress();
		j = st == 200 ? json_loads(resp, 0, NULL) : NULL;
		free(resp);
		resp = NULL;
		if (j == NULL) {
			x->failed = 1;
			snprintf(x->error, sizeof(x->error), "GET %s: %d", path, st);
			break;
		}
		state = json_string_value(json_object_get(j, "state"));
		snprintf(x->pt->rot_state, sizeof(x->pt->rot_state), "%s", state ? state : "?");
		x->pt->rot_done = json_integer_value(json_object_get(j, "done"));
		x->pt->rot_total = json_integer_value(json_object_get(j, "total"));
		x->pt->rewrap_per_s = json_number_value(json_object_get(j, "rate_per_s"));
		x->pt->rot_seconds = t1 - t0;
		x->pt->get_during = t1 > t0 ? (double)(p1 - p0) / (t1 - t0) : 0;
		x->pt->rewrap_observed = t1 > t0 ? (double)x->pt->rot_done / (t1 - t0) : 0;
		running = state != NULL && strcmp(state, "running") == 0;
		json_decref(j);
		if (!running || !bench_load_running())
			break;
	}
	bench_load_stop();
}

/* ---- points ---------------------------------------------------------------- */

static void
load_defaults(const struct opts *o, struct bench_load *l)
{
	memset(l, 0, sizeof(*l));
	l->socket = o->socket;
	l->vault = o->vault;
	l->prefix = o->prefix;
	l->threads = o->threads;
	l->value_bytes = o->value_bytes;
	l->seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
}

/* Make secrets [from, to) exist, at the populate concurrency. */
static int
populate(const struct opts *o, uint64_t from, uint64_t to)
{
	struct bench_load l;
	struct bench_result r;
	int e;

	if (to <= from)
		return 0;
	load_defaults(o, &l);
	l.workload = BENCH_POPULATE;
	l.clients = o->populate_clients;
	l.first = from;
	l.ops = to - from;
	l.cas0 = o->reuse;
	l.progress = 1;
	fprintf(stderr, "%s: %s secrets %llu..%llu of vault '%s' with %u clients ...\n", prog,
	    o->reuse ? "making missing" : "writing", (unsigned long long)from,
	    (unsigned long long)to - 1, o->vault, l.clients);
	if ((e = bench_load_run(&l, &r)) != 0) {
		fprintf(stderr, "%s: cannot populate: %s\n", prog, strerror(-e));
		return e;
	}
	fprintf(stderr, "%s: populated %llu in %.1f s (%.0f/s), %llu errors\n", prog,
	    (unsigned long long)r.ops, r.seconds, r.seconds > 0 ? (double)r.ops / r.seconds : 0,
	    (unsigned long long)r.errors);
	if (r.errors != 0 || r.ops != to - from) {
		fprintf(stderr, "%s: populating failed: %s\n", prog,
		    r.first_error[0] ? r.first_error : "not every secret was written");
		return -EIO;
	}
	return 0;
}

static int
point_run(const struct opts *o, enum bench_workload w, unsigned clients,
    uint64_t secrets, struct point *pt)
{
	struct bench_load l;
	struct rot_ctx rx;
	long long c0 = -1, c1 = -1;
	double s0, s1;
	int e;

	memset(pt, 0, sizeof(*pt));
	pt->workload = w;
	pt->clients = clients;
	pt->secrets = secrets;
	pt->cpu_us_per_op = -1;
	pt->rss_kib = -1;
	load_defaults(o, &l);
	l.workload = w;
	l.clients = clients;
	l.secrets = secrets;
	l.seconds = o->ops ? 0 : o->seconds;
	l.ops = o->ops;
	if (w == BENCH_ROTATE) {
		struct bench_result before;

		/* The get rate just before, to compare the rate during with. */
		l.workload = BENCH_GET;
		l.seconds = 1;
		l.ops = 0;
		if ((e = bench_load_run(&l, &before)) != 0)
			return e;
		pt->get_before = before.seconds > 0 ? (double)before.ops / before.seconds : 0;
		l.workload = BENCH_ROTATE;
		l.seconds = o->seconds_set ? o->seconds : 300;
		memset(&rx, 0, sizeof(rx));
		rx.o = o;
		rx.pt = pt;
		l.during = rot_during;
		l.during_arg = &rx;
	}
	if (o->pid > 0)
		c0 = daemon_cpu_ticks(o->pid);
	s0 = self_cpu_s();
	if ((e = bench_load_run(&l, &pt->r)) != 0) {
		fprintf(stderr, "%s: cannot run the load: %s\n", prog, strerror(-e));
		return e;
	}
	s1 = self_cpu_s();
	if (o->pid > 0) {
		c1 = daemon_cpu_ticks(o->pid);
		pt->rss_kib = daemon_rss_kib(o->pid);
	}
	pt->ops_per_s = pt->r.seconds > 0 ? (double)pt->r.ops / pt->r.seconds : 0;
	if (c0 >= 0 && c1 >= 0 && pt->r.ops > 0)
		pt->cpu_us_per_op = (double)(c1 - c0) * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)pt->r.ops;
	if (pt->r.ops > 0)
		pt->bench_cpu_us_per_op = (s1 - s0) * 1e6 / (double)pt->r.ops;
	if (w == BENCH_ROTATE && rx.failed) {
		pt->r.errors++;
		if (pt->r.first_error[0] == '\0')
			snprintf(pt->r.first_error, sizeof(pt->r.first_error), "%s", rx.error);
	}
	return 0;
}

static void
table_header(void)
{
	printf("%-8s %7s %8s %6s %9s %9s %8s %8s %8s %6s %9s %8s %9s %6s\n",
	    "workload", "clients", "secrets", "secs", "ops", "ops/s", "p50_us", "p99_us",
	    "max_us", "errors", "cpu_us/op", "rss_kib", "raw/s", "ratio");
	fflush(stdout);
}

static void
table_row(const struct point *p, const struct raw_figures *raw)
{
	char cpu[32] = "-", rss[32] = "-", rawb[32] = "-", ratio[32] = "-";

	if (p->cpu_us_per_op >= 0)
		snprintf(cpu, sizeof(cpu), "%.1f", p->cpu_us_per_op);
	if (p->rss_kib >= 0)
		snprintf(rss, sizeof(rss), "%ld", p->rss_kib);
	if (raw->measured) {
		snprintf(rawb, sizeof(rawb), "%.0f", raw->best);
		snprintf(ratio, sizeof(ratio), "%.2f", p->ops_per_s / raw->best);
	}
	printf("%-8s %7u %8llu %6.2f %9llu %9.0f %8.1f %8.1f %8.1f %6llu %9s %8s %9s %6s\n",
	    bench_workload_name(p->workload), p->clients, (unsigned long long)p->secrets,
	    p->r.seconds, (unsigned long long)p->r.ops, p->ops_per_s,
	    (double)bench_hist_quantile(&p->r.hist, 0.5) / 1e3,
	    (double)bench_hist_quantile(&p->r.hist, 0.99) / 1e3,
	    (double)p->r.hist.max / 1e3, (unsigned long long)p->r.errors, cpu, rss, rawb, ratio);
	if (p->workload == BENCH_MIXED)
		printf("         mixed: %llu gets, %llu sets\n", (unsigned long long)p->r.gets,
		    (unsigned long long)p->r.sets);
	if (p->workload == BENCH_ROTATE)
		printf("         rotation %s: %lld of %lld records in %.2f s, %.0f rewrapped/s "
		    "(daemon's figure; %.0f/s seen by polling); get %.0f/s during it, %.0f/s "
		    "just before (%.2f)\n", p->rot_state, p->rot_done, p->rot_total, p->rot_seconds,
		    p->rewrap_per_s, p->rewrap_observed, p->get_during, p->get_before,
		    p->get_before > 0 ? p->get_during / p->get_before : 0);
	if (p->r.errors != 0)
		printf("         first error: %s\n", p->r.first_error);
	fflush(stdout);
}

static json_t *
num(double v, int decimals)
{
	double m = decimals == 0 ? 1 : decimals == 1 ? 10 : 100;

	return json_real((double)(long long)(v * m + (v < 0 ? -0.5 : 0.5)) / m);
}

static char *
point_json(const struct opts *o, const struct point *p, const struct raw_figures *raw)
{
	json_t *j = json_object();
	char *txt;

	json_object_set_new(j, "workload", json_string(bench_workload_name(p->workload)));
	json_object_set_new(j, "clients", json_integer(p->clients));
	json_object_set_new(j, "threads", json_integer(o->threads));
	json_object_set_new(j, "secrets", json_integer((json_int_t)p->secrets));
	json_object_set_new(j, "seconds", num(p->r.seconds, 2));
	json_object_set_new(j, "ops", json_integer((json_int_t)p->r.ops));
	json_object_set_new(j, "ops_per_s", num(p->ops_per_s, 1));
	json_object_set_new(j, "p50_us", num((double)bench_hist_quantile(&p->r.hist, 0.5) / 1e3, 1));
	json_object_set_new(j, "p99_us", num((double)bench_hist_quantile(&p->r.hist, 0.99) / 1e3, 1));
	json_object_set_new(j, "max_us", num((double)p->r.hist.max / 1e3, 1));
	json_object_set_new(j, "errors", json_integer((json_int_t)p->r.errors));
	if (p->r.errors != 0)
		json_object_set_new(j, "first_error", json_string(p->r.first_error));
	if (raw->measured) {
		json_object_set_new(j, "raw_token_ops_per_s", num(raw->best, 1));
		json_object_set_new(j, "raw_token_1t_ops_per_s", num(raw->one, 1));
		json_object_set_new(j, "raw_token_nt_ops_per_s", num(raw->many, 1));
		json_object_set_new(j, "raw_token_threads", json_integer(raw->threads));
		json_object_set_new(j, "raw_token_copy_ops_per_s", num(raw->copy_one, 1));
		json_object_set_new(j, "ratio", num(p->ops_per_s / raw->best, 3));
	} else {
		json_object_set_new(j, "raw_token_ops_per_s", json_null());
		json_object_set_new(j, "ratio", json_null());
	}
	json_object_set_new(j, "cpu_us_per_op", p->cpu_us_per_op >= 0 ? num(p->cpu_us_per_op, 2) : json_null());
	json_object_set_new(j, "rss_kib", p->rss_kib >= 0 ? json_integer(p->rss_kib) : json_null());
	json_object_set_new(j, "bench_cpu_us_per_op", num(p->bench_cpu_us_per_op, 2));
	json_object_set_new(j, "daemon_pid", o->pid > 0 ? json_integer(o->pid) : json_null());
	if (p->workload == BENCH_MIXED) {
		json_object_set_new(j, "gets", json_integer((json_int_t)p->r.gets));
		json_object_set_new(j, "sets", json_integer((json_int_t)p->r.sets));
	}
	if (p->workload == BENCH_ROTATE) {
		json_object_set_new(j, "rotation_state", json_string(p->rot_state));
		json_object_set_new(j, "rotation_records", json_integer(p->rot_total));
		json_object_set_new(j, "rotation_done", json_integer(p->rot_done));
		json_object_set_new(j, "rotation_seconds", num(p->rot_seconds, 3));
		json_object_set_new(j, "rewrap_per_s", num(p->rewrap_per_s, 1));
		json_object_set_new(j, "rewrap_observed_per_s", num(p->rewrap_observed, 1));
		json_object_set_new(j, "get_during_rotation_ops_per_s", num(p->get_during, 1));
		json_object_set_new(j, "get_before_ops_per_s", num(p->get_before, 1));
	}
	txt = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	json_decref(j);
	return txt;
}

/* ---- main ------------------------------------------------------------------ */

/* Strings taken from the configuration, freed at exit. */
struct cfg_strings {
	char *socket, *module, *token, *pin_file, *vault;
};

static void
cfg_strings_free(struct cfg_strings *cs)
{
	free(cs->socket);
	free(cs->module);
	free(cs->token);
	free(cs->pin_file);
	free(cs->vault);
}

static int
opts_from_config(struct opts *o, struct cfg_strings *cs, unsigned *workers)
{
	struct config *cfg = NULL;
	struct config_errors errs = { 0 };
	int e = config_load(o->config, &cfg, &errs);

	if (e != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.lines[i]);
		fprintf(stderr, "%s: cannot use the configuration %s\n", prog, o->config);
		config_errors_free(&errs);
		return e;
	}
	/* Options given on the command line win; the strings must outlive cfg. */
	if (o->socket == NULL && cfg->socket_path != NULL)
		o->socket = cs->socket = strdup(cfg->socket_path);
	if (o->module == NULL && cfg->token_module != NULL)
		o->module = cs->module = strdup(cfg->token_module);
	if (o->token == NULL && cfg->token != NULL)
		o->token = cs->token = strdup(cfg->token);
	if (o->pin_file == NULL && cfg->pin_file != NULL)
		o->pin_file = cs->pin_file = strdup(cfg->pin_file);
	if (o->vault == NULL && cfg->nvaults > 0)
		o->vault = cs->vault = strdup(cfg->vaults[0].name);
	*workers = cfg->workers;
	config_free(cfg);
	config_errors_free(&errs);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "module", required_argument, NULL, 1 },
		{ "token", required_argument, NULL, 2 },
		{ "pin-file", required_argument, NULL, 3 },
		{ "vault", required_argument, NULL, 'V' },
		{ "workload", required_argument, NULL, 'w' },
		{ "clients", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 'd' },
		{ "ops", required_argument, NULL, 'k' },
		{ "secrets", required_argument, NULL, 'S' },
		{ "reuse", no_argument, NULL, 4 },
		{ "prefix", required_argument, NULL, 5 },
		{ "value-bytes", required_argument, NULL, 6 },
		{ "raw-seconds", required_argument, NULL, 7 },
		{ "raw-threads", required_argument, NULL, 8 },
		{ "no-raw", no_argument, NULL, 9 },
		{ "pid", required_argument, NULL, 10 },
		{ "json", no_argument, NULL, 11 },
		{ "sweep", no_argument, NULL, 12 },
		{ "sweep-secrets", required_argument, NULL, 13 },
		{ "no-create", no_argument, NULL, 14 },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = {
		.prefix = "bench/s", .workload = BENCH_GET, .clients = 32, .threads = 1,
		.seconds = 5, .secrets = 1000, .value_bytes = 32, .raw_seconds = 1,
		.sweep_secrets = 1000000, .populate_clients = 64,
	};
	struct raw_figures raw, rawc;
	struct point *pts = NULL;
	char **jsons = NULL, *resp = NULL;
	struct cfg_strings cs = { 0 };
	size_t npts = 0;
	unsigned workers = 0;
	uint64_t v, populated = 0;
	int ch, st, rc = 1, failed = 0;

	while ((ch = getopt_long(argc, argv, "c:s:V:w:n:t:d:k:S:h", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c': o.config = optarg; break;
		case 's': o.socket = optarg; break;
		case 1: o.module = optarg; break;
		case 2: o.token = optarg; break;
		case 3: o.pin_file = optarg; break;
		case 'V': o.vault = optarg; break;
		case 'w':
			if (bench_workload_parse(optarg, &o.workload) != 0) {
				fprintf(stderr, "%s: unknown workload '%s' (get, set, datakey, mixed, rotate)\n", prog, optarg);
				return 2;
			}
			break;
		case 'n':
			if (parse_u64(optarg, &v) != 0 || v == 0 || v > 10000)
				goto bad;
			o.clients = (unsigned)v;
			break;
		case 't':
			if (parse_u64(optarg, &v) != 0 || v == 0 || v > 64)
				goto bad;
			o.threads = (unsigned)v;
			break;
		case 'd':
			o.seconds = strtod(optarg, NULL);
			o.seconds_set = 1;
			if (!(o.seconds > 0))
				goto bad;
			break;
		case 'k':
			if (parse_u64(optarg, &o.ops) != 0 || o.ops == 0)
				goto bad;
			break;
		case 'S':
			if (parse_u64(optarg, &o.secrets) != 0 || o.secrets == 0 || o.secrets > 9999999)
				goto bad;
			break;
		case 4: o.reuse = 1; break;
		case 5: o.prefix = optarg; break;
		case 6:
			if (parse_u64(optarg, &v) != 0 || v == 0 || v > 65536)
				goto bad;
			o.value_bytes = (size_t)v;
			break;
		case 7:
			o.raw_seconds = strtod(optarg, NULL);
			if (!(o.raw_seconds > 0))
				goto bad;
			break;
		case 8:
			if (parse_u64(optarg, &v) != 0 || v == 0 || v > 256)
				goto bad;
			o.raw_threads = (unsigned)v;
			break;
		case 9: o.no_raw = 1; break;
		case 10: o.pid = strtol(optarg, NULL, 10); break;
		case 11: o.json = 1; break;
		case 12: o.sweep = 1; break;
		case 13:
			if (parse_u64(optarg, &o.sweep_secrets) != 0 || o.sweep_secrets > 9999999)
				goto bad;
			break;
		case 14: o.no_create = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		continue;
bad:
		fprintf(stderr, "%s: bad value '%s' for %s\n", prog, optarg, argv[optind - 1]);
		return 2;
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (o.config != NULL && opts_from_config(&o, &cs, &workers) != 0)
		goto out;
	if (o.socket == NULL) {
		fprintf(stderr, "%s: which daemon? --config FILE or --socket PATH\n", prog);
		rc = 2;
		goto out;
	}
	if (o.vault == NULL)
		o.vault = "dev";
	if (o.raw_threads == 0) {
		/* The daemon's workers or the CPUs, whichever is more: a
		 * daemon with fewer workers than cores is still measured
		 * against the token's best rate on this machine. */
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		o.raw_threads = workers > (unsigned)(ncpu > 0 ? ncpu : 1) ? workers :
		    (unsigned)(ncpu > 1 ? ncpu : 2);
	}
	if (o.pid <= 0)
		o.pid = daemon_pid_find(o.socket);

	st = bench_http_once(o.socket, "GET", "/v1/health", NULL, &resp);
	if (st != 200) {
		fprintf(stderr, "%s: the daemon on %s is not healthy: %s%s\n", prog, o.socket,
		    st < 0 ? strerror(-st) : "", resp ? resp : "");
		goto out;
	}
	free(resp);
	resp = NULL;

	/* get, mixed and rotate read secrets that must exist first. */
	if (o.workload == BENCH_GET || o.workload == BENCH_MIXED || o.workload == BENCH_ROTATE) {
		if (!o.no_create && populate(&o, 0, o.secrets) != 0)
			goto out;
		populated = o.secrets;
	}
	memset(&raw, 0, sizeof(raw));
	memset(&rawc, 0, sizeof(rawc));
	if (!o.no_raw) {
		if (raw_measure(&o, 0, &raw) != 0 || raw_measure(&o, 1, &rawc) != 0)
			goto out;
		raw.copy_one = rawc.one;
		fprintf(stderr, "%s: raw token: p11_unwrap of a 32-byte data key under %s/v%u (%s): "
		    "%.0f/s in 1 thread, %.0f/s in %u threads; through a session copy %.0f/s\n",
		    prog, o.vault, raw.version, raw.mech, raw.one, raw.many, raw.threads,
		    rawc.one);
	}

	{
		static const unsigned sweep_clients[] = { 1, 4, 16, 64 };
		static const uint64_t sweep_secrets[] = { 1000, 100000, 1000000 };
		size_t max = o.sweep ? 7 : 1;

		pts = calloc(max, sizeof(*pts));
		jsons = calloc(max, sizeof(*jsons));
		if (pts == NULL || jsons == NULL)
			goto out;
		table_header();
		for (size_t i = 0; i < max; i++) {
			unsigned clients = o.clients;
			uint64_t secrets = o.secrets;

			if (o.sweep && i < 4) {
				clients = sweep_clients[i];
			} else if (o.sweep) {
				secrets = sweep_secrets[i - 4];
				if (secrets > o.sweep_secrets)
					break;
				if (o.workload == BENCH_DATAKEY)
					break;   /* no secrets involved */
				if (o.workload != BENCH_SET && !o.no_create) {
					if (populate(&o, populated, secrets) != 0)
						goto out;
					if (secrets > populated)
						populated = secrets;
				}
			}
			if (point_run(&o, o.workload, clients, secrets, &pts[npts]) != 0)
				goto out;
			table_row(&pts[npts], &raw);
			if (pts[npts].r.errors != 0)
				failed = 1;
			jsons[npts] = point_json(&o, &pts[npts], &raw);
			npts++;
		}
	}
	if (raw.measured)
		printf("raw token: p11_unwrap under %s/v%u (%s), %.1f s each: %.0f/s in 1 thread, "
		    "%.0f/s in %u threads (token-resident key); %.0f/s in 1 thread through a "
		    "session copy; ratio = ops/s / %.0f\n", o.vault, raw.version, raw.mech,
		    o.raw_seconds, raw.one, raw.many, raw.threads, rawc.one, raw.best);
	for (size_t i = 0; o.json && i < npts; i++)
		printf("%s\n", jsons[i] ? jsons[i] : "{}");
	rc = failed ? 3 : 0;
out:
	for (size_t i = 0; jsons != NULL && i < npts; i++)
		free(jsons[i]);
	free(jsons);
	free(pts);
	free(resp);
	cfg_strings_free(&cs);
	return rc;
}
