/*
 * load.c - the load generator of keywarden-bench (see bench.h).
 *
 * Each thread owns connections i with i % threads == its number and one
 * epoll set; a connection has at most one request in flight (no
 * pipelining), so the latency of an operation is the time from its first
 * byte written to the last byte of its reply read.  The threads connect
 * first, meet at a barrier, and start together; the clock of the run starts
 * there.  A run ends at its deadline (replies still in flight are dropped,
 * not counted) or when its operations are done.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"

#define STALL_NS (30ull * 1000 * 1000 * 1000)   /* no reply at all for this long: give up */

enum { KIND_GET = 1, KIND_SET, KIND_DATAKEY, KIND_PUT };

struct lconn {
	int fd;
	int busy;               /* a request is in flight */
	int want_out;           /* EPOLLOUT is armed */
	int kind;
	uint64_t t0;
	char *req;
	size_t reqlen, reqoff, reqcap;
	char *buf;
	size_t len, cap;
	size_t hdr_end;         /* 0 until the header is in */
	size_t body_end;        /* where the reply ends once known */
	size_t cpos;            /* chunked: where the next chunk size line starts */
	int status, chunked, close;
	long clen;
};

struct lthread {
	pthread_t th;
	const struct bench_load *l;
	unsigned id;
	struct lconn *c;
	unsigned nc;
	int ep;
	uint64_t rng;
	uint64_t seq;
	unsigned inflight;
	uint64_t last_progress;
	char *value;            /* value_bytes of filler for PUTs */
	struct bench_result r;
};

static atomic_uint_fast64_t g_issued;
static atomic_uint_fast64_t g_done;
static atomic_int g_stop;
static atomic_uint g_running;
static uint64_t g_deadline;     /* 0: none; written before the start barrier */
static pthread_barrier_t g_connected, g_go;

uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t
bench_load_progress(void)
{
	return atomic_load_explicit(&g_done, memory_order_relaxed);
}

void
bench_load_stop(void)
{
	atomic_store(&g_stop, 1);
}

int
bench_load_running(void)
{
	return atomic_load(&g_running) > 0 && !atomic_load(&g_stop);
}

static const char *const workload_names[] = {
	[BENCH_GET] = "get", [BENCH_SET] = "set", [BENCH_DATAKEY] = "datakey",
	[BENCH_MIXED] = "mixed", [BENCH_ROTATE] = "rotate", [BENCH_POPULATE] = "populate",
};

const char *
bench_workload_name(enum bench_workload w)
{
	if ((unsigned)w < sizeof(workload_names) / sizeof(workload_names[0]) && workload_names[w])
		return workload_names[w];
	return "?";
}

int
bench_workload_parse(const char *s, enum bench_workload *out)
{
	for (unsigned i = 1; i < sizeof(workload_names) / sizeof(workload_names[0]); i++)
		if (i != BENCH_POPULATE && strcmp(s, workload_names[i]) == 0) {
			*out = (enum bench_workload)i;
			return 0;
		}
	return -EINVAL;
}

/* xorshift64*: cheap, and good enough to spread reads over the names. */
static uint64_t
rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static int
sock_connect(const char *path, int nonblock)
{
	struct sockaddr_un sa;
	int fd, e;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		e = -errno;
		close(fd);
		return e;
	}
	if (nonblock && fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
		e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void conn_note_error(struct lthread *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Count an error; the first one of the thread is kept for the report. */
static void
conn_note_error(struct lthread *t, const char *fmt, ...)
{
	va_list ap;

	t->r.errors++;
	if (t->r.first_error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(t->r.first_error, sizeof(t->r.first_error), fmt, ap);
	va_end(ap);
}

static int
conn_open(struct lthread *t, struct lconn *c)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int fd = sock_connect(t->l->socket, 1);

	if (fd < 0)
		return fd;
	c->fd = fd;
	c->want_out = 0;
	ev.data.ptr = c;
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		int e = -errno;
		close(fd);
		c->fd = -1;
		return e;
	}
	return 0;
}

static void
conn_close(struct lconn *c)
{
	if (c->fd >= 0)
		close(c->fd);   /* leaves the epoll set with it */
	c->fd = -1;
}

static void
conn_reset_reply(struct lconn *c)
{
	c->len = 0;
	c->hdr_end = c->body_end = c->cpos = 0;
	c->status = c->chunked = c->close = 0;
	c->clen = -1;
}

static int
req_reserve(struct lconn *c, size_t need)
{
	char *p;

	if (need <= c->reqcap)
		return 0;
	p = realloc(c->req, need);
	if (p == NULL)
		return -ENOMEM;
	c->req = p;
	c->reqcap = need;
	return 0;
}

/* Write the next request of the workload into c->req.  1 when there is
 * one, 0 when the run has no more operations to issue, negative on error. */
static int
req_build(struct lthread *t, struct lconn *c)
{
	const struct bench_load *l = t->l;
	uint64_t idx = 0;
	int kind, n;
	size_t vlen = l->value_bytes;

	if (l->ops != 0) {
		uint64_t k = atomic_fetch_add_explicit(&g_issued, 1, memory_order_relaxed);
		if (k >= l->ops)
			return 0;
		idx = l->first + k;
	}
	switch (l->workload) {
	case BENCH_GET:
	case BENCH_ROTATE:
		kind = KIND_GET;
		break;
	case BENCH_SET:
		kind = KIND_SET;
		break;
	case BENCH_MIXED:
		kind = rng_next(&t->rng) % 10 == 0 ? KIND_SET : KIND_GET;
		break;
	case BENCH_DATAKEY:
		kind = KIND_DATAKEY;
		break;
	case BENCH_POPULATE:
		kind = KIND_PUT;
		break;
	default:
		return -EINVAL;
	}
	if (kind != KIND_PUT && l->secrets > 0)
		idx = rng_next(&t->rng) % l->secrets;
	if (req_reserve(c, 512 + strlen(l->vault) + strlen(l->prefix) + vlen) != 0)
		return -ENOMEM;
	if (kind == KIND_GET) {
		n = snprintf(c->req, c->reqcap,
		    "GET /v1/vaults/%s/secrets/%s%07llu HTTP/1.1\r\nHost: localhost\r\n\r\n",
		    l->vault, l->prefix, (unsigned long long)idx);
	} else if (kind == KIND_DATAKEY) {
		static const char body[] = "{\"bytes\":32}";
		n = snprintf(c->req, c->reqcap,
		    "POST /v1/vaults/%s/keys/datakey HTTP/1.1\r\nHost: localhost\r\n"
		    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		    l->vault, sizeof(body) - 1, body);
	} else {
		/* {"value":"<seq>-<filler>"}: values differ from one write to the next. */
		char head[24];
		int hl = snprintf(head, sizeof(head), "%llx-", (unsigned long long)t->seq++);
		size_t fill = vlen > (size_t)hl ? vlen - (size_t)hl : 0;

		n = snprintf(c->req, c->reqcap,
		    "PUT /v1/vaults/%s/secrets/%s%07llu%s HTTP/1.1\r\nHost: localhost\r\n"
		    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n"
		    "{\"value\":\"%s%.*s\"}",
		    l->vault, l->prefix, (unsigned long long)idx,
		    kind == KIND_PUT && l->cas0 ? "?cas=0" : "",
		    (size_t)hl + fill + 12, head, (int)fill, t->value);
	}
	if (n < 0 || (size_t)n >= c->reqcap)
		return -EOVERFLOW;
	c->reqlen = (size_t)n;
	c->reqoff = 0;
	c->kind = kind;
	return 1;
}

static void
conn_arm(struct lthread *t, struct lconn *c, int out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0) };

	if (c->want_out == out)
		return;
	ev.data.ptr = c;
	if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->want_out = out;
}

/* 0 sent or waiting for room; -1 the connection broke. */
static int
conn_send(struct lthread *t, struct lconn *c)
{
	while (c->reqoff < c->reqlen) {
		ssize_t w = send(c->fd, c->req + c->reqoff, c->reqlen - c->reqoff, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_arm(t, c, 1);
			return 0;
		}
		if (w <= 0)
			return -1;
		c->reqoff += (size_t)w;
	}
	conn_arm(t, c, 0);
	return 0;
}

static int
conn_issue(struct lthread *t, struct lconn *c)
{
	int e;

	if (atomic_load_explicit(&g_stop, memory_order_relaxed))
		return 0;
	if ((e = req_build(t, c)) <= 0)
		return e;
	conn_reset_reply(c);
	c->busy = 1;
	t->inflight++;
	c->t0 = bench_now_ns();
	return conn_send(t, c);
}

static int
hdr_is(const char *line, size_t n, const char *name)
{
	size_t k = strlen(name);

	return n > k && strncasecmp(line, name, k) == 0;
}

/* Parse what has arrived of a reply: 1 complete, 0 more to come, -1 bad. */
static int
reply_parse(struct lconn *c)
{
	if (c->hdr_end == 0) {
		char *p = memmem(c->buf, c->len, "\r\n\r\n", 4);
		char *line, *end;

		if (p == NULL)
			return c->len > 65536 ? -1 : 0;
		c->hdr_end = (size_t)(p - c->buf) + 4;
		if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0)
			return -1;
		c->status = atoi(c->buf + 9);
		end = c->buf + c->hdr_end - 2;
		line = memchr(c->buf, '\n', c->hdr_end);
		for (line = line ? line + 1 : end; line < end;) {
			char *eol = memchr(line, '\n', (size_t)(end - line));
			size_t n = eol ? (size_t)(eol - line) : (size_t)(end - line);

			if (hdr_is(line, n, "content-length:"))
				c->clen = strtol(line + 15, NULL, 10);
			else if (hdr_is(line, n, "transfer-encoding:") && memmem(line, n, "chunked", 7))
				c->chunked = 1;
			else if (hdr_is(line, n, "connection:") && memmem(line, n, "close", 5))
				c->close = 1;
			line += n + 1;
		}
		c->cpos = c->hdr_end;
		if (!c->chunked)
			c->body_end = c->hdr_end + (size_t)(c->clen > 0 ? c->clen : 0);
	}
	if (c->chunked) {
		for (;;) {
			char *eol = memmem(c->buf + c->cpos, c->len - c->cpos, "\r\n", 2);
			unsigned long sz;

			if (eol == NULL)
				return 0;
			sz = strtoul(c->buf + c->cpos, NULL, 16);
			if (sz == 0) {
				/* "0\r\n" and the empty line that ends the (absent) trailers */
				size_t at = (size_t)(eol - c->buf) + 2;
				if (c->len < at + 2)
					return 0;
				c->body_end = at + 2;
				break;
			}
			if (c->len < (size_t)(eol - c->buf) + 2 + sz + 2)
				return 0;
			c->cpos = (size_t)(eol - c->buf) + 2 + sz + 2;
		}
	}
	if (c->len < c->body_end)
		return 0;
	return c->len == c->body_end ? 1 : -1;   /* nothing may follow: no pipelining */
}

static int
reply_ok(const struct bench_load *l, const struct lconn *c)
{
	if (c->status >= 200 && c->status < 300)
		return 1;
	return c->kind == KIND_PUT && l->cas0 && c->status == 409;
}

/* The connection broke or spoke nonsense: count the request lost, open a
 * new one and carry on.  -1 when even that fails. */
static int
conn_broken(struct lthread *t, struct lconn *c, const char *why)
{
	if (c->busy) {
		c->busy = 0;
		t->inflight--;
		conn_note_error(t, "connection %d: %s", c->fd, why);
	}
	conn_close(c);
	if (atomic_load_explicit(&g_stop, memory_order_relaxed))
		return 0;
	if (conn_open(t, c) != 0)
		return -1;
	return conn_issue(t, c) < 0 ? -1 : 0;
}

static int
conn_readable(struct lthread *t, struct lconn *c)
{
	int rc;

	for (;;) {
		ssize_t r;

		if (c->cap - c->len < 1024) {
			size_t ncap = c->cap ? c->cap * 2 : 8192;
			char *p = realloc(c->buf, ncap);
			if (p == NULL)
				return conn_broken(t, c, "out of memory for the reply");
			c->buf = p;
			c->cap = ncap;
		}
		r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r == 0)
			return conn_broken(t, c, "closed by the daemon");
		if (r < 0)
			return conn_broken(t, c, strerror(errno));
		c->len += (size_t)r;
		if (!c->busy)
			return conn_broken(t, c, "a reply to no request");
		rc = reply_parse(c);
		if (rc < 0)
			return conn_broken(t, c, "a malformed reply");
		if (rc == 0)
			continue;
		/* A whole reply. */
		{
			uint64_t now = bench_now_ns();

			c->busy = 0;
			t->inflight--;
			t->last_progress = now;
			if (g_deadline != 0 && now > g_deadline)
				return 0;   /* late: not part of the run */
			bench_hist_add(&t->r.hist, now - c->t0);
			if (reply_ok(t->l, c)) {
				t->r.ops++;
				if (c->kind == KIND_SET)
					t->r.sets++;
				else if (c->kind == KIND_GET)
					t->r.gets++;
				atomic_fetch_add_explicit(&g_done, 1, memory_order_relaxed);
			} else {
				char snip[160];
				size_t bl = c->len - c->hdr_end;

				if (bl >= sizeof(snip))
					bl = sizeof(snip) - 1;
				memcpy(snip, c->buf + c->hdr_end, bl);
				snip[bl] = '\0';
				if (bl > 0 && snip[bl - 1] == '\n')
					snip[bl - 1] = '\0';
				conn_note_error(t, "HTTP %d: %s", c->status, snip);
			}
		}
		if (c->close) {
			conn_close(c);
			if (conn_open(t, c) != 0)
				return -1;
		}
		return conn_issue(t, c) < 0 ? -1 : 0;
	}
}

static void *
thread_main(void *arg)
{
	struct lthread *t = arg;
	struct epoll_event ev[64];
	int failed = 0;

	for (unsigned i = 0; i < t->nc; i++)
		if (conn_open(t, &t->c[i]) != 0)
			failed = 1;
	pthread_barrier_wait(&g_connected);
	pthread_barrier_wait(&g_go);
	if (failed) {
		conn_note_error(t, "cannot connect to %s", t->l->socket);
		goto out;
	}
	t->last_progress = bench_now_ns();
	for (unsigned i = 0; i < t->nc; i++)
		if (conn_issue(t, &t->c[i]) < 0 && conn_broken(t, &t->c[i], "send failed") < 0)
			goto out;
	while (t->inflight > 0 && !atomic_load_explicit(&g_stop, memory_order_relaxed)) {
		uint64_t now = bench_now_ns();
		int timeout = 100, n;

		if (g_deadline != 0) {
			if (now >= g_deadline)
				break;
			if ((g_deadline - now) / 1000000 < 100)
				timeout = (int)((g_deadline - now) / 1000000) + 1;
		}
		if (now - t->last_progress > STALL_NS) {
			conn_note_error(t, "no reply for 30 s: the daemon stalled (%u in flight)", t->inflight);
			break;
		}
		n = epoll_wait(t->ep, ev, 64, timeout);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct lconn *c = ev[i].data.ptr;

			if (c->fd < 0)
				continue;
			if ((ev[i].events & EPOLLOUT) && c->busy && conn_send(t, c) != 0 &&
			    conn_broken(t, c, "send failed") < 0)
				goto out;
			if ((ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->fd >= 0 &&
			    conn_readable(t, c) < 0)
				goto out;
		}
	}
out:
	for (unsigned i = 0; i < t->nc; i++)
		conn_close(&t->c[i]);
	atomic_fetch_sub(&g_running, 1);
	return NULL;
}

struct during_arg {
	void (*fn)(void *);
	void *arg;
};

static void *
during_main(void *arg)
{
	struct during_arg *d = arg;

	d->fn(d->arg);
	return NULL;
}

int
bench_load_run(const struct bench_load *l, struct bench_result *res)
{
	unsigned nt = l->threads ? l->threads : 1, started = 0;
	struct lthread *t = NULL;
	uint64_t start, end;
	pthread_t during;
	struct during_arg da = { l->during, l->during_arg };
	int rc = -ENOMEM, have_during = 0;

	if (l->clients == 0)
		return -EINVAL;
	if (nt > l->clients)
		nt = l->clients;
	memset(res, 0, sizeof(*res));
	atomic_store(&g_issued, 0);
	atomic_store(&g_done, 0);
	atomic_store(&g_stop, 0);
	atomic_store(&g_running, nt);
	g_deadline = 0;
	if ((t = calloc(nt, sizeof(*t))) == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < nt; i++) {
		t[i].l = l;
		t[i].id = i;
		t[i].ep = -1;
		t[i].rng = (l->seed ? l->seed : 0x9e3779b97f4a7c15ull) + 0x632be59bd9b4e019ull * (i + 1);
		t[i].nc = l->clients / nt + (i < l->clients % nt ? 1 : 0);
		t[i].c = calloc(t[i].nc, sizeof(*t[i].c));
		t[i].value = malloc(l->value_bytes + 1);
		if (t[i].c == NULL || t[i].value == NULL)
			goto out;
		memset(t[i].value, 'x', l->value_bytes);
		t[i].value[l->value_bytes] = '\0';
		for (unsigned k = 0; k < t[i].nc; k++)
			t[i].c[k].fd = -1;
		if ((t[i].ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
			rc = -errno;
			goto out;
		}
	}
	pthread_barrier_init(&g_connected, NULL, nt + 1);
	pthread_barrier_init(&g_go, NULL, nt + 1);
	for (; started < nt; started++)
		if ((rc = -pthread_create(&t[started].th, NULL, thread_main, &t[started])) != 0)
			break;
	if (started < nt) {
		/* Cannot happen in practice; the barriers would wait forever. */
		fprintf(stderr, "keywarden-bench: cannot start a thread\n");
		abort();
	}
	pthread_barrier_wait(&g_connected);
	start = bench_now_ns();
	if (l->seconds > 0)
		g_deadline = start + (uint64_t)(l->seconds * 1e9);
	pthread_barrier_wait(&g_go);
	if (l->during != NULL && pthread_create(&during, NULL, during_main, &da) == 0)
		have_during = 1;
	{
		uint64_t last_print = start;
		while (atomic_load(&g_running) > 0) {
			struct timespec ts = { 0, 20 * 1000 * 1000 };
			uint64_t now;

			nanosleep(&ts, NULL);
			now = bench_now_ns();
			if (l->progress && now - last_print > 2000000000ull && l->ops > 0) {
				fprintf(stderr, "  %s: %llu of %llu done\n", bench_workload_name(l->workload),
				    (unsigned long long)bench_load_progress(), (unsigned long long)l->ops);
				last_print = now;
			}
		}
	}
	end = bench_now_ns();
	for (unsigned i = 0; i < nt; i++)
		pthread_join(t[i].th, NULL);
	atomic_store(&g_stop, 1);
	if (have_during)
		pthread_join(during, NULL);
	pthread_barrier_destroy(&g_connected);
	pthread_barrier_destroy(&g_go);
	if (g_deadline != 0 && end > g_deadline)
		end = g_deadline;
	res->seconds = (double)(end - start) / 1e9;
	for (unsigned i = 0; i < nt; i++) {
		res->ops += t[i].r.ops;
		res->errors += t[i].r.errors;
		res->gets += t[i].r.gets;
		res->sets += t[i].r.sets;
		bench_hist_merge(&res->hist, &t[i].r.hist);
		if (res->first_error[0] == '\0' && t[i].r.first_error[0] != '\0')
			memcpy(res->first_error, t[i].r.first_error, sizeof(res->first_error));
	}
	rc = 0;
out:
	for (unsigned i = 0; i < nt; i++) {
		for (unsigned k = 0; t[i].c != NULL && k < t[i].nc; k++) {
			free(t[i].c[k].req);
			free(t[i].c[k].buf);
		}
		free(t[i].c);
		free(t[i].value);
		if (t[i].ep >= 0)
			close(t[i].ep);
	}
	free(t);
	return rc;
}

/* ---- one blocking request ------------------------------------------------- */

int
bench_http_once(const char *path_sock, const char *method, const char *path,
    const char *body, char **resp)
{
	struct lconn c;
	char *req = NULL;
	int fd, n, rc;
	size_t blen = body ? strlen(body) : 0, off = 0;

	if (resp != NULL)
		*resp = NULL;
	memset(&c, 0, sizeof(c));
	conn_reset_reply(&c);
	if ((fd = sock_connect(path_sock, 0)) < 0)
		return fd;
	n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    method, path, blen, body ? body : "");
	if (n < 0) {
		rc = -ENOMEM;
		req = NULL;
		goto out;
	}
	while (off < (size_t)n) {
		ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = -errno;
			goto out;
		}
		off += (size_t)w;
	}
	for (;;) {
		ssize_t r;

		if (c.cap - c.len < 1024) {
			char *p = realloc(c.buf, c.cap ? c.cap * 2 : 8192);
			if (p == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			c.buf = p;
			c.cap = c.cap ? c.cap * 2 : 8192;
		}
		r = recv(fd, c.buf + c.len, c.cap - c.len - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		c.len += (size_t)r;
		rc = reply_parse(&c);
		if (rc == 1)
			break;
		if (rc < 0 || r == 0) {
			rc = -EPROTO;
			goto out;
		}
	}
	if (resp != NULL) {
		/* The body, with chunk framing taken out when there is any. */
		char *b = malloc(c.body_end - c.hdr_end + 1);
		size_t o = 0, p = c.hdr_end;

		if (b == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		if (c.chunked) {
			for (;;) {
				char *eol = memmem(c.buf + p, c.body_end - p, "\r\n", 2);
				unsigned long sz = strtoul(c.buf + p, NULL, 16);
				if (eol == NULL || sz == 0)
					break;
				p = (size_t)(eol - c.buf) + 2;
				memcpy(b + o, c.buf + p, sz);
				o += sz;
				p += sz + 2;
			}
		} else {
			o = c.body_end - c.hdr_end;
			memcpy(b, c.buf + c.hdr_end, o);
		}
		b[o] = '\0';
		*resp = b;
	}
	rc = c.status;
out:
	free(req);
	free(c.buf);
	close(fd);
	return rc;
}
