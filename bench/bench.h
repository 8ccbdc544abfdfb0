/*
 * bench.h - the pieces of keywarden-bench: a latency histogram and a load
 * generator that drives the daemon over its Unix socket.
 *
 * The load generator is a small HTTP/1.1 client of its own (no libcurl in
 * the hot loop): a few threads, each owning a share of the keep-alive
 * connections and one epoll set, one request in flight per connection,
 * replies read by Content-Length or chunked encoding.
 */
#ifndef KW_BENCH_H
#define KW_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* ---- latency histogram ---------------------------------------------------- */

/* Log buckets with 64 linear sub-buckets per power of two (like
 * HdrHistogram with 2 significant digits): values in nanoseconds, relative
 * error under 1.6 %.  The maximum is kept exactly. */
#define BENCH_HIST_SUB 64
#define BENCH_HIST_BUCKETS ((64 - 5) * BENCH_HIST_SUB)

struct bench_hist {
	uint64_t count;
	uint64_t max;
	uint64_t n[BENCH_HIST_BUCKETS];
};

void bench_hist_add(struct bench_hist *h, uint64_t ns);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
/* The value at quantile q (0..1), in nanoseconds (the bucket's middle);
 * 0 for an empty histogram. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

/* ---- load --------------------------------------------------------------- */

enum bench_workload {
	BENCH_GET = 1,       /* GET a random one of the pre-created secrets */
	BENCH_SET,           /* PUT a new version of a random one */
	BENCH_DATAKEY,       /* POST .../keys/datakey */
	BENCH_MIXED,         /* 90 % get, 10 % set */
	BENCH_ROTATE,        /* get while a rotation runs (the load is get) */
	BENCH_POPULATE,      /* PUT secrets first..first+ops-1 in order */
};

const char *bench_workload_name(enum bench_workload w);
int bench_workload_parse(const char *s, enum bench_workload *out);

struct bench_load {
	const char *socket;
	const char *vault;
	const char *prefix;       /* secret names are <prefix><index, 7 digits> */
	enum bench_workload workload;
	unsigned clients;         /* connections */
	unsigned threads;         /* at most clients */
	double seconds;           /* 0: until ops are done */
	uint64_t ops;             /* 0: until seconds have passed */
	uint64_t secrets;         /* the pool of names a get/set picks from */
	uint64_t first;           /* BENCH_POPULATE: index of the first name */
	int cas0;                 /* BENCH_POPULATE: ?cas=0 (409 = exists, fine) */
	size_t value_bytes;       /* size of the values PUT */
	uint64_t seed;
	int progress;             /* report progress of a long ops run on stderr */
	/* Run in a thread of its own while the load runs (may be NULL); it may
	 * end the run with bench_load_stop() and should return once
	 * bench_load_running() is false. */
	void (*during)(void *arg);
	void *during_arg;
};

struct bench_result {
	uint64_t ops;             /* completed with a 2xx (or 409 under cas0) */
	uint64_t errors;          /* other statuses, broken connections */
	uint64_t gets, sets;      /* of ops, for mixed */
	double seconds;           /* from the first request to the stop */
	struct bench_hist hist;   /* latency of the ops and errors */
	char first_error[256];    /* what the first error was, for people */
};

/* Progress while a run goes on: ops completed so far (all threads).  The
 * rotate workload reads it while polling, and may ask the run to stop. */
uint64_t bench_load_progress(void);
void bench_load_stop(void);
int bench_load_running(void);

/* Run the load and fill *res.  0, or a negative errno when the run could
 * not start (cannot connect); errors during the run are counted in *res. */
int bench_load_run(const struct bench_load *l, struct bench_result *res);

/* One blocking request on a fresh connection (for control calls: start a
 * rotation, poll it).  *body is malloc'd (NUL-terminated) or NULL.
 * Returns the HTTP status, or a negative errno. */
int bench_http_once(const char *sock, const char *method, const char *path,
    const char *body, char **resp);

/* Monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);

#endif
