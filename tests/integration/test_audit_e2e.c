/*
 * The audit trail end to end: the real daemon fails closed when its log
 * cannot be written and heals; kill -9 during a burst keeps an event for
 * every acknowledged request and a chain that verifies; a stream
 * subscriber sees every event of a 10,000-request run exactly once, across
 * a restart.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <curl/curl.h>
#include <jansson.h>

#include "kw_auditchain.h"
#include "pkcs11/p11.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

static struct kwt_token tok;
static struct kwt_daemon dmn;

static uint64_t
committed_seq_of(const char *sock)
{
	long st;
	json_t *j = kwt_http_json(sock, "GET", "/v1/health", NULL, &st);
	uint64_t s = (uint64_t)json_integer_value(json_object_get(json_object_get(j, "audit"), "committed_seq"));

	json_decref(j);
	return s;
}

static uint64_t
committed_seq(void)
{
	return committed_seq_of(dmn.sock);
}

static int
suite_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (kwt_token_new(&tok, "kw-audit") != 0)
		return -1;
	return kwt_daemon_start(&dmn, &tok, NULL);
}

static int
suite_clean(void)
{
	kwt_daemon_free(&dmn);
	kwt_token_free(&tok);
	curl_global_cleanup();
	return 0;
}

/* The running daemon's verify knows where its log must reach: a tail cut
 * back to an earlier seal behind its back (which the chain alone cannot
 * show) is a break. */
static void
test_verify_sees_cut_tail(void)
{
	struct kwt_token t2;
	struct kwt_daemon d2;
	char path[600], *text = NULL, *resp = NULL, *seal;
	size_t len = 0;
	FILE *f;
	json_t *j;
	long st;

	CU_ASSERT_EQUAL_FATAL(kwt_token_new(&t2, "kw-cut"), 0);   /* sets SOFTHSM2_CONF */
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_start(&d2, &t2, NULL), 0);
	for (int i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/dev/secrets/cut", "{\"value\":\"c\"}", NULL), 201);
	st = kwt_http(d2.sock, "POST", "/v1/audit/verify", "{}", &resp);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp ?: "", "\"ok\":true"));
	free(resp);
	resp = NULL;
	/* cut the segment back to the end of its first seal */
	snprintf(path, sizeof(path), "%s/audit-0000000001.jsonl", d2.audit);
	CU_ASSERT_FATAL((f = fopen(path, "r")) != NULL);
	text = calloc(1, 1 << 20);
	CU_ASSERT_FATAL(text != NULL);
	len = fread(text, 1, (1 << 20) - 1, f);
	fclose(f);
	seal = strstr(text, "\"type\":\"seal\"");
	CU_ASSERT_FATAL(seal != NULL && strchr(seal, '\n') != NULL);
	CU_ASSERT_EQUAL_FATAL(truncate(path, (off_t)(strchr(seal, '\n') + 1 - text)), 0);
	CU_ASSERT((size_t)(strchr(seal, '\n') + 1 - text) < len);
	free(text);
	st = kwt_http(d2.sock, "POST", "/v1/audit/verify", "{}", &resp);
	CU_ASSERT_EQUAL(st, 200);
	j = json_loads(resp ?: "", 0, NULL);
	CU_ASSERT(json_is_false(json_object_get(j, "ok")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(j, "break"), "problem")) ?: "",
	    "cut");
	json_decref(j);
	free(resp);
	kwt_daemon_free(&d2);
	kwt_token_free(&t2);
	setenv("SOFTHSM2_CONF", tok.conf, 1);
}

static void
test_fail_closed_and_heal(void)
{
	struct rlimit old;
	char *resp = NULL;
	long st;
	int healed = 0;

	CU_ASSERT_EQUAL_FATAL(kwt_http(dmn.sock, "PUT", "/v1/vaults/dev/secrets/guarded",
	    "{\"value\":\"guarded-value\"}", NULL), 201);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/dev/secrets/guarded", NULL, NULL), 200);
	/* No file of the daemon may grow any more: the audit log cannot be
	 * written (as on a full disk; works for root too). */
	CU_ASSERT_EQUAL_FATAL(kwt_audit_freeze(&dmn, &old), 0);
	for (int i = 0; i < 5; i++) {
		st = kwt_http(dmn.sock, "GET", "/v1/vaults/dev/secrets/guarded", NULL, &resp);
		CU_ASSERT_EQUAL(st, 503);
		CU_ASSERT_PTR_NULL(strstr(resp, "guarded-value"));
		CU_ASSERT_PTR_NOT_NULL(strstr(resp, "audit"));
		free(resp);
	}
	st = kwt_http(dmn.sock, "GET", "/v1/health", NULL, &resp);
	CU_ASSERT_EQUAL(st, 503);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp, "\"degraded\""));
	free(resp);
	/* a write is refused before it happens (its intent cannot be recorded) */
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "PUT", "/v1/vaults/dev/secrets/guarded", "{\"value\":\"x\"}", NULL), 503);
	/* the disk comes back */
	CU_ASSERT_EQUAL_FATAL(prlimit(dmn.pid, RLIMIT_FSIZE, &old, NULL), 0);
	for (int i = 0; i < 100 && !healed; i++) {
		st = kwt_http(dmn.sock, "GET", "/v1/vaults/dev/secrets/guarded", NULL, &resp);
		if (st == 200 && strstr(resp, "guarded-value") != NULL)
			healed = 1;
		free(resp);
		if (!healed)
			usleep(50 * 1000);
	}
	CU_ASSERT(healed);
	/* no hole, no duplicate: the chain verifies */
	{
		char out[4096];
		CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "audit", "verify", NULL), 0);
		CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/dev/secrets/guarded/versions/9", NULL, NULL), 404);
	}
}

struct burst {
	int id;
	int n;
	char (*names)[48];
	volatile int *stop;
};

static void *
burst_writer(void *p)
{
	struct burst *b = p;

	for (int i = 0; !*b->stop && i < 20000; i++) {
		char path[128], name[48];
		snprintf(name, sizeof(name), "burst/t%d/w%d", b->id, i);
		snprintf(path, sizeof(path), "/v1/vaults/dev/secrets/%s", name);
		if (kwt_http(dmn.sock, "PUT", path, "{\"value\":\"v\"}", NULL) != 201)
			break;
		memcpy(b->names[b->n], name, sizeof(name));
		b->n++;
	}
	return NULL;
}

/* Does the audit log hold the outcome event of a write to name? */
static int
outcome_logged(const char *all, const char *name)
{
	char needle[96];
	const char *p = all;

	snprintf(needle, sizeof(needle), "\"name\":\"%s\"", name);
	while ((p = strstr(p, needle)) != NULL) {
		const char *bol = p, *eol = strchr(p, '\n');
		while (bol > all && bol[-1] != '\n')
			bol--;
		if (eol == NULL)
			eol = p + strlen(p);
		if (memmem(bol, (size_t)(eol - bol), "\"phase\":\"outcome\"", 17) != NULL &&
		    memmem(bol, (size_t)(eol - bol), "\"outcome\":\"success\"", 19) != NULL)
			return 1;
		p = eol;
	}
	return 0;
}

static char *
read_audit(void)
{
	char cmd[600];
	char *argv[] = { "sh", "-c", cmd, NULL };
	char *buf = malloc(64u << 20);

	snprintf(cmd, sizeof(cmd), "cat %s/*.jsonl", dmn.audit);
	if (buf != NULL && kwt_run(argv, buf, 64u << 20) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void
test_kill9_during_burst(void)
{
	enum { T = 4 };
	struct burst b[T];
	pthread_t th[T];
	volatile int stop = 0;
	int acked = 0, missing = 0;
	char *all, out[4096];

	for (int i = 0; i < T; i++) {
		b[i] = (struct burst){ .id = i, .names = calloc(20000, 48), .stop = &stop };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, burst_writer, &b[i]), 0);
	}
	usleep(800 * 1000);
	kwt_daemon_kill9(&dmn);
	stop = 1;
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	all = read_audit();
	CU_ASSERT_PTR_NOT_NULL_FATAL(all);
	for (int i = 0; i < T; i++) {
		for (int k = 0; k < b[i].n; k++)
			if (!outcome_logged(all, b[i].names[k]))
				missing++;
		acked += b[i].n;
		free(b[i].names);
	}
	free(all);
	printf("\n  kill -9 after %d acknowledged writes: %d without their event\n", acked, missing);
	CU_ASSERT(acked > 0);
	CU_ASSERT_EQUAL(missing, 0);
	/* the chain verifies after the restart (a torn tail is reported by an
	 * audit.torn_tail event, not hidden) */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "audit", "verify", NULL), 0);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "audit", "verify", dmn.audit, NULL), 0);
}

/* ---- the stream ----------------------------------------------------------- */

struct sub {
	const char *sock;         /* NULL: the suite's daemon */
	uint64_t since;           /* resume point */
	uint64_t last;            /* last seq seen */
	uint64_t count, dups, gaps, requests;
	char partial[65536];
	size_t plen;
	volatile int stop;
};

static size_t
sub_write(char *data, size_t sz, size_t nm, void *arg)
{
	struct sub *s = arg;
	size_t len = sz * nm;

	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (c != '\n') {
			if (s->plen + 1 < sizeof(s->partial))
				s->partial[s->plen++] = c;
			continue;
		}
		s->partial[s->plen] = '\0';
		{
			json_t *j = json_loads(s->partial, 0, NULL);
			uint64_t seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
			if (seq == 0) {
				/* not an event: a stream notice */
			} else if (seq <= s->last) {
				s->dups++;
			} else {
				if (seq != s->last + 1)
					s->gaps++;
				s->last = seq;
				s->count++;
				if (strcmp(json_string_value(json_object_get(j, "type")) ?: "", "request") == 0 &&
				    strcmp(json_string_value(json_object_get(j, "phase")) ?: "", "outcome") == 0)
					s->requests++;
			}
			json_decref(j);
		}
		s->plen = 0;
	}
	return len;
}

static int
sub_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct sub *s = arg;
	(void)a; (void)b; (void)c; (void)d;
	return s->stop ? 1 : 0;
}

static void *
subscriber(void *p)
{
	struct sub *s = p;

	while (!s->stop) {
		CURL *c = curl_easy_init();
		char url[128];
		snprintf(url, sizeof(url), "http://localhost/v1/audit/stream?since=%llu",
		    (unsigned long long)s->last);
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, s->sock ? s->sock : dmn.sock);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sub_write);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, sub_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
		s->plen = 0;
		curl_easy_perform(c);   /* ends when the daemon stops, or on stop */
		curl_easy_cleanup(c);
		if (!s->stop)
			usleep(100 * 1000);   /* and resume with since= */
	}
	return NULL;
}

/* Let subscriber s (on thread th) reach seq end (up to 30 s), stop it, and
 * check that it saw every event after from exactly once. */
static void
sub_finish(struct sub *s, pthread_t th, uint64_t from, uint64_t end)
{
	for (int i = 0; i < 600 && s->last < end; i++)
		usleep(50 * 1000);
	s->stop = 1;
	pthread_join(th, NULL);
	CU_ASSERT(s->last >= end);
	CU_ASSERT_EQUAL(s->dups, 0);
	CU_ASSERT_EQUAL(s->gaps, 0);
	CU_ASSERT_EQUAL(s->count, s->last - from);
}

struct reqs {
	int n, errors;
	const char *sock;        /* NULL: the suite's daemon */
};

static void *
reader(void *p)
{
	struct reqs *r = p;

	for (int i = 0; i < r->n; i++) {
		long st = kwt_http(r->sock ? r->sock : dmn.sock, "GET", "/v1/vaults/dev/secrets/guarded",
		    NULL, NULL);
		if (st != 200) {
			/* during the restart: retry until served */
			usleep(20 * 1000);
			i--;
			if (++r->errors > 1000)
				return NULL;
		}
	}
	return NULL;
}

/* Four subscribers (their connections spread over the daemon's event
 * loops) each see every event exactly once, across a restart. */
static void
test_stream_exactly_once(void)
{
	enum { NSUB = 4 };
	struct sub *s[NSUB];
	struct reqs rq[4];
	pthread_t sth[NSUB], th[4];
	uint64_t start, end;

	start = committed_seq();
	for (int k = 0; k < NSUB; k++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(s[k] = calloc(1, sizeof(*s[k])));
		s[k]->last = start;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&sth[k], NULL, subscriber, s[k]), 0);
	}
	for (int i = 0; i < 4; i++) {
		rq[i] = (struct reqs){ .n = 2500 };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, reader, &rq[i]), 0);
	}
	/* restart the daemon in the middle of the run */
	usleep(1500 * 1000);
	CU_ASSERT_EQUAL(kwt_daemon_stop(&dmn), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	end = committed_seq();
	for (int k = 0; k < NSUB; k++) {
		for (int i = 0; i < 600 && s[k]->last < end; i++)
			usleep(50 * 1000);
		s[k]->stop = 1;
	}
	for (int k = 0; k < NSUB; k++) {
		pthread_join(sth[k], NULL);
		printf("\n  stream %d: seq %llu..%llu, %llu events seen, %llu request outcomes, %llu duplicates, %llu gaps",
		    k, (unsigned long long)start, (unsigned long long)end, (unsigned long long)s[k]->count,
		    (unsigned long long)s[k]->requests, (unsigned long long)s[k]->dups,
		    (unsigned long long)s[k]->gaps);
		CU_ASSERT(s[k]->last >= end);
		CU_ASSERT_EQUAL(s[k]->dups, 0);
		CU_ASSERT_EQUAL(s[k]->gaps, 0);
		CU_ASSERT_EQUAL(s[k]->count, s[k]->last - start);
		CU_ASSERT(s[k]->requests >= 10000);
		free(s[k]);
	}
	printf("\n");
}

/* A subscriber that stops reading is cut off once it falls more than
 * audit.stream_max_lag events behind, with a last line that says where
 * to resume; a subscriber reading alongside it sees every event; and the
 * cut one, resuming with since=, gets the rest exactly once. */
static void
test_stream_lag_cut(void)
{
	enum { NREQ = 4, EACH = 2000, CAP = 8 << 20 };
	struct kwt_token t2;
	struct kwt_daemon d2;
	struct reqs rq[NREQ];
	pthread_t th[NREQ], sth;
	struct sub *good, *resumed;
	char req[256], *buf, *p;
	size_t got = 0;
	uint64_t since, end, n = 0, maxseq = 0, lagged_at = 0;
	int fd, ended = 0;

	buf = NULL;
	CU_ASSERT_EQUAL_FATAL(kwt_token_new(&t2, "kw-lag"), 0);
	/* A client timeout long enough that only the lag can end the stream. */
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_start_opts(&d2, &t2, "  client_timeout: 60s\n",
	    "  stream_max_lag: 1000\n", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_http(d2.sock, "PUT", "/v1/vaults/dev/secrets/guarded",
	    "{\"value\":\"lag\"}", NULL), 201);
	since = committed_seq_of(d2.sock);

	/* The stalled one asks, then reads nothing (below). */
	CU_ASSERT((fd = kwt_connect(d2.sock)) >= 0);
	snprintf(req, sizeof(req), "GET /v1/audit/stream?since=%llu HTTP/1.1\r\nHost: kw\r\n\r\n",
	    (unsigned long long)since);
	CU_ASSERT_EQUAL(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	/* The good one reads as fast as it can. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(good = calloc(1, sizeof(*good)));
	good->sock = d2.sock;
	good->last = since;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&sth, NULL, subscriber, good), 0);

	for (int i = 0; i < NREQ; i++) {
		rq[i] = (struct reqs){ .n = EACH, .sock = d2.sock };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, reader, &rq[i]), 0);
	}
	/* It reads nothing until the daemon says it cut it off. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf = malloc(CAP + 1));
	{
		struct timeval tv = { 10, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	for (int i = 0; i < 1200 && !kwt_file_contains(d2.log, "cut off: ", 9); i++)
		usleep(100 * 1000);
	CU_ASSERT(kwt_file_contains(d2.log, "cut off: ", 9));
	/* Now it reads what it was sent: events from since on, in order,
	 * then the notice, then the response's last chunk. */
	while (got < CAP) {
		ssize_t r = read(fd, buf + got, CAP - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got >= 5 && memcmp(buf + got - 5, "0\r\n\r\n", 5) == 0) {
			ended = 1;   /* the last chunk: the response is over */
			break;
		}
	}
	buf[got] = '\0';
	/* The stream was the connection's last response: it said so, and
	 * the daemon closes after it rather than wait for another request. */
	{
		char more;
		CU_ASSERT_EQUAL(read(fd, &more, 1), 0);
	}
	close(fd);
	CU_ASSERT(ended);
	p = strstr(buf, "\r\n\r\n");
	CU_ASSERT(p != NULL && memmem(buf, (size_t)(p + 2 - buf), "\r\nConnection: close\r\n", 21) != NULL);
	for (int i = 0; i < NREQ; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(rq[i].errors, 0);
	}
	end = committed_seq_of(d2.sock);
	sub_finish(good, sth, since, end);
	CU_ASSERT(good->requests >= NREQ * EACH);

	for (p = buf; (p = strstr(p, "{\"seq\":")) != NULL; p += 7) {
		uint64_t seq = strtoull(p + 7, NULL, 10);
		n++;
		if (seq != since + n)
			break;
		maxseq = seq;
	}
	CU_ASSERT_EQUAL(maxseq, since + n);
	if ((p = strstr(buf, "\"type\":\"stream.lagged\",\"last_seq\":")) != NULL)
		lagged_at = strtoull(p + strlen("\"type\":\"stream.lagged\",\"last_seq\":"), NULL, 10);
	printf("\n  stalled stream: %llu events (seq %llu..%llu) of %llu, then cut off at last_seq %llu",
	    (unsigned long long)n, (unsigned long long)since + 1, (unsigned long long)maxseq,
	    (unsigned long long)(end - since), (unsigned long long)lagged_at);
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT_EQUAL(lagged_at, maxseq);
	CU_ASSERT(maxseq > since);
	CU_ASSERT(maxseq + 1000 < end);
	free(buf);

	/* Resumed from where it was cut: the rest, once each. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(resumed = calloc(1, sizeof(*resumed)));
	resumed->sock = d2.sock;
	resumed->last = maxseq;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&sth, NULL, subscriber, resumed), 0);
	sub_finish(resumed, sth, maxseq, end);
	printf("\n  resumed from %llu: %llu events, no gap, no duplicate\n",
	    (unsigned long long)maxseq, (unsigned long long)resumed->count);
	free(good);
	free(resumed);
	kwt_daemon_free(&d2);
	kwt_token_free(&t2);
}

/* ---- a subscriber on a connection of its own -------------------------------- */

/* What the daemon sent on fd, as it comes. */
struct raw_sub {
	int fd;
	char buf[65536];
	size_t len;
	int eof;                 /* the daemon closed */
};

/* Read from r until needle has come (NULL: for the whole time), the daemon
 * closes, or ms have passed.  1 if needle has come. */
static int
raw_read_until(struct raw_sub *r, const char *needle, int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		long left;
		ssize_t n;

		r->buf[r->len] = '\0';
		if (needle != NULL && strstr(r->buf, needle) != NULL)
			return 1;
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (r->eof || left <= 0 || r->len + 1 >= sizeof(r->buf))
			return 0;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = read(r->fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len);
		if (n <= 0)
			r->eof = 1;   /* the end, or a reset: closed either way */
		else
			r->len += (size_t)n;
	}
}

static int
count_of(const char *s, const char *needle)
{
	int n = 0;

	for (; (s = strstr(s, needle)) != NULL; s += strlen(needle))
		n++;
	return n;
}

static long long
connections_open(void)
{
	char *resp = NULL;
	const char *p;
	long long v = -1;

	if (kwt_http(dmn.sock, "GET", "/v1/metrics", NULL, &resp) == 200 && resp != NULL &&
	    (p = strstr(resp, "\nkeywarden_connections_open ")) != NULL)
		v = strtoll(p + strlen("\nkeywarden_connections_open "), NULL, 10);
	free(resp);
	return v;
}

/* Wait up to 3 s for the daemon to hold at most n connections (the one
 * asking included); 1 if it does. */
static int
connections_back_to(long long n)
{
	for (int i = 0; i < 30; i++) {
		long long open = connections_open();
		if (open >= 0 && open <= n)
			return 1;
		usleep(100 * 1000);
	}
	return 0;
}

/* Close r's connection: 1 if the daemon then holds one connection fewer
 * within 3 s, though no event comes that would fail to be written to it. */
static int
raw_close_seen(struct raw_sub *r)
{
	long long open = connections_open();

	close(r->fd);
	r->fd = -1;
	return open > 0 && connections_back_to(open - 1);
}

/* Make an audit event (a write) and wait up to 5 s for r to be sent it. */
static int
event_reaches(struct raw_sub *r, const char *name)
{
	char path[128], want[64];

	snprintf(path, sizeof(path), "/v1/vaults/dev/secrets/%s", name);
	if (kwt_http(dmn.sock, "PUT", path, "{\"value\":\"v\"}", NULL) != 201)
		return 0;
	snprintf(want, sizeof(want), "{\"seq\":%llu,", (unsigned long long)committed_seq());
	return raw_read_until(r, want, 5000);
}

/* Open a stream from the log's end on a connection of its own, with more
 * (behind, may be "") sent behind its request; r->fd < 0 if it cannot. */
static void
raw_stream_open(struct raw_sub *r, const char *behind)
{
	char req[256];
	size_t n;

	memset(r, 0, sizeof(*r));
	snprintf(req, sizeof(req), "GET /v1/audit/stream?since=%llu HTTP/1.1\r\nHost: kw\r\n\r\n",
	    (unsigned long long)committed_seq());
	if ((r->fd = kwt_connect(dmn.sock)) < 0)
		return;
	n = strlen(req);
	if (write(r->fd, req, n) != (ssize_t)n ||
	    write(r->fd, behind, strlen(behind)) != (ssize_t)strlen(behind)) {
		close(r->fd);
		r->fd = -1;
	}
}

/* Does r's response head say "Connection: close"? */
static int
raw_head_closes(const struct raw_sub *r)
{
	const char *eoh = strstr(r->buf, "\r\n\r\n");

	return eoh != NULL && memmem(r->buf, (size_t)(eoh + 2 - r->buf),
	    "\r\nConnection: close\r\n", 21) != NULL;
}

/* A request sent behind the stream's: the stream says it is the
 * connection's last response (Connection: close), so the request is not
 * answered, now or ever, and the client knows to send it again elsewhere;
 * the stream goes on; and when the client closes, the daemon lets the
 * connection go.  So, too, when more was sent behind the stream than the
 * daemon keeps of a request, which used to pause its reading for good:
 * the client's close went unseen until an event failed to be written. */
static void
test_stream_behind(void)
{
	static const char health[] = "GET /v1/health HTTP/1.1\r\nHost: kw\r\n\r\n";
	struct raw_sub *r;
	char *many;
	size_t len = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(r = malloc(sizeof(*r)));
	CU_ASSERT_PTR_NOT_NULL_FATAL(many = malloc(8192 + sizeof(health)));
	raw_stream_open(r, health);
	CU_ASSERT_FATAL(r->fd >= 0);
	CU_ASSERT(raw_read_until(r, "{\"seq\":", 5000));
	CU_ASSERT(strncmp(r->buf, "HTTP/1.1 200 ", 13) == 0);
	CU_ASSERT(raw_head_closes(r));
	CU_ASSERT(event_reaches(r, "behind/one"));
	/* The health request behind the stream got no reply. */
	CU_ASSERT_EQUAL(count_of(r->buf, "HTTP/1.1 "), 1);
	CU_ASSERT_PTR_NULL(strstr(r->buf, "\"status\":\"ok\""));
	CU_ASSERT(!r->eof);
	CU_ASSERT(raw_close_seen(r));

	/* 8 KiB of requests behind it. */
	for (; len < 8192; len += sizeof(health) - 1)
		memcpy(many + len, health, sizeof(health));
	raw_stream_open(r, many);
	CU_ASSERT_FATAL(r->fd >= 0);
	CU_ASSERT(raw_read_until(r, "{\"seq\":", 5000));
	CU_ASSERT(event_reaches(r, "behind/two"));
	CU_ASSERT_EQUAL(count_of(r->buf, "HTTP/1.1 "), 1);
	CU_ASSERT(raw_close_seen(r));
	free(many);
	free(r);
}

/* A subscriber that shuts its sending side (shutdown SHUT_WR) still
 * reads: its stream goes on, whether the daemon sees the end before the
 * stream begins (sent with the request, and a request behind it, which is
 * not answered) or once it runs (it used to close the connection then, in
 * the middle of the stream).  When the client then closes for good, the
 * daemon lets the connection go, though no event comes to fail a write to
 * it (it used to keep it, and its reader of the log, until one did).  One
 * that goes without a half-close is let go too. */
static void
test_stream_half_close(void)
{
	static const char health[] = "GET /v1/health HTTP/1.1\r\nHost: kw\r\n\r\n";
	struct raw_sub *r;

	CU_ASSERT_PTR_NOT_NULL_FATAL(r = malloc(sizeof(*r)));

	/* The end sent with the request, and a request behind it. */
	raw_stream_open(r, health);
	CU_ASSERT_FATAL(r->fd >= 0);
	CU_ASSERT_EQUAL(shutdown(r->fd, SHUT_WR), 0);
	CU_ASSERT(raw_read_until(r, "{\"seq\":", 5000));
	CU_ASSERT(raw_head_closes(r));
	CU_ASSERT(event_reaches(r, "halfclosed/one"));
	usleep(1500 * 1000);   /* and after a turn of the daemon's sweep */
	CU_ASSERT(event_reaches(r, "halfclosed/two"));
	CU_ASSERT(!r->eof);
	CU_ASSERT_EQUAL(count_of(r->buf, "HTTP/1.1 "), 1);
	if (r->eof || count_of(r->buf, "HTTP/1.1 ") != 1)
		fprintf(stderr, "\n  half-closed with a request behind: got '%.600s'\n", r->buf);
	CU_ASSERT(raw_close_seen(r));

	/* The end once the stream runs. */
	raw_stream_open(r, "");
	CU_ASSERT_FATAL(r->fd >= 0);
	CU_ASSERT(raw_read_until(r, "{\"seq\":", 5000));
	CU_ASSERT_EQUAL(shutdown(r->fd, SHUT_WR), 0);
	usleep(200 * 1000);    /* for the daemon to read the end */
	CU_ASSERT(event_reaches(r, "halfclosed/three"));
	CU_ASSERT(!r->eof);
	if (r->eof)
		fprintf(stderr, "\n  half-closed mid-stream: got '%.600s'\n", r->buf);
	CU_ASSERT(raw_close_seen(r));

	/* Gone without a half-close. */
	raw_stream_open(r, "");
	CU_ASSERT_FATAL(r->fd >= 0);
	CU_ASSERT(raw_read_until(r, "{\"seq\":", 5000));
	CU_ASSERT(raw_close_seen(r));
	free(r);
}

static int
count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void
test_cli_tail_and_query(void)
{
	char *out = malloc(4u << 20);

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "PUT", "/v1/vaults/prod/secrets/q/one", "{\"value\":\"q\"}", NULL), 201);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/prod/secrets/q/one", NULL, NULL), 200);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/prod/secrets/q/none", NULL, NULL), 404);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 4u << 20, "audit", "tail", "-n", "5", NULL), 0);
	CU_ASSERT_EQUAL(count_lines(out), 5);
	/* a bad number is a usage error, not an event number wrapped round */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 4u << 20, "audit", "tail", "--since", "-1", NULL), 2);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 4u << 20, "audit", "query", "--since", "12x", NULL), 2);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 4u << 20, "--json", "audit", "query", "--vault", "prod", "--name", "q/one",
	    "--action", "secret.get", "--outcome", "success", NULL), 0);
	CU_ASSERT_EQUAL(count_lines(out), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"action\":\"secret.get\""));
	CU_ASSERT_PTR_NULL(strstr(out, "\"value\""));
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 4u << 20, "audit", "query", "--name", "q/none", "--outcome", "failure", NULL), 0);
	CU_ASSERT_EQUAL(count_lines(out), 1);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 4u << 20, "audit", "query", "--name", "q/one", "--from", "2999-01-01T00:00:00Z", NULL), 0);
	CU_ASSERT_EQUAL(count_lines(out), 0);
	/* since beyond the largest seq: 400, not a replay of the whole log. */
	{
		static const char *const bad[] = { "18446744073709551615", "9223372036854775808",
		    "99999999999999999999999" };
		json_t *j;
		long st;
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char url[128];
			snprintf(url, sizeof(url), "/v1/audit/stream?since=%s", bad[i]);
			j = kwt_http_json(dmn.sock, "GET", url, NULL, &st);
			CU_ASSERT_EQUAL(st, 400);
			CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(
			    json_object_get(j, "error"), "message")) ?: "", "at most 9223372036854775807"));
			json_decref(j);
		}
	}
	free(out);
}

/* ---- at rest ----------------------------------------------------------------- */

/* keywardend --config CONF --verify-audit, stdout and stderr into out. */
static int
verify_offline(char *out, size_t outlen)
{
	char cmd[1400];
	char *argv[] = { "sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd), "'%s' --config '%s' --verify-audit 2>&1", dmn.exe, dmn.conf);
	return kwt_run(argv, out, outlen);
}

/* The last segment of the daemon's log, its path into path. */
static int
last_segment(char *path, size_t len)
{
	unsigned *idx = NULL;
	size_t n = 0;
	char name[64];

	if (kwac_segments_list(dmn.audit, &idx, &n) != 0 || n == 0) {
		free(idx);
		return -1;
	}
	kwac_segment_name(idx[n - 1], name, sizeof(name));
	free(idx);
	snprintf(path, len, "%s/%s", dmn.audit, name);
	return 0;
}

static int
file_put(const char *path, const char *buf, size_t len, const char *mode)
{
	FILE *f = fopen(path, mode);
	int r = 0;

	if (f == NULL)
		return -1;
	if (len > 0 && fwrite(buf, 1, len, f) != len)
		r = -1;
	return fclose(f) != 0 ? -1 : r;
}

/* A log the daemon wrote verifies at rest; one whose last seal was cut
 * off does not (a daemon never leaves one so), while the daemon runs it
 * is verified live; a forged batch with a fake seal stops the daemon's
 * start, and the log without it starts again. */
static void
test_at_rest_and_forged_tail(void)
{
	char path[700], line[512], hex[65], *out = malloc(1u << 20), *orig = NULL;
	long sz;
	size_t lo = 0, cut;
	FILE *f;
	json_t *j;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	/* keywardend --verify-audit opens the token itself: this suite's, not
	 * the one another case made and removed since. */
	setenv("SOFTHSM2_CONF", tok.conf, 1);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "PUT", "/v1/vaults/dev/secrets/rest", "{\"value\":\"r\"}", NULL), 201);
	/* Live: the daemon holds the directory. */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 1u << 20, "--json", "audit", "verify", dmn.audit, NULL), 0);
	j = json_loads(out, 0, NULL);
	CU_ASSERT(json_is_true(json_object_get(j, "live")));
	json_decref(j);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_stop(&dmn), 0);

	/* At rest, as the daemon left it: intact. */
	CU_ASSERT_EQUAL(verify_offline(out, 1u << 20), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "audit log intact"));
	CU_ASSERT_PTR_NULL(strstr(out, "read while a daemon writes it"));

	CU_ASSERT_EQUAL_FATAL(last_segment(path, sizeof(path)), 0);
	f = fopen(path, "rb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	orig = malloc((size_t)sz + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
	lo = fread(orig, 1, (size_t)sz, f);
	fclose(f);
	CU_ASSERT_EQUAL_FATAL(lo, (size_t)sz);
	orig[lo] = '\0';
	CU_ASSERT_FATAL(lo > 2 && orig[lo - 1] == '\n');
	/* The last line is the seal: cut it off. */
	for (cut = lo - 1; cut > 0 && orig[cut - 1] != '\n'; cut--)
		;
	CU_ASSERT_PTR_NOT_NULL_FATAL(strstr(orig + cut, "\"type\":\"seal\""));
	CU_ASSERT_EQUAL_FATAL(file_put(path, orig, cut, "wb"), 0);
	CU_ASSERT_EQUAL(verify_offline(out, 1u << 20), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "BROKEN (unsealed)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "are not sealed: the log was cut or forged after its last seal"));
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 1u << 20, "--json", "audit", "verify", "--no-seals",
	    dmn.audit, NULL), 1);
	j = json_loads(out, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(j, "break"), "problem")),
	    "unsealed");
	CU_ASSERT(json_is_false(json_object_get(j, "live")));
	json_decref(j);

	/* Forged: an event chained to the last one, and a seal of no key. */
	{
		char *p = orig + cut - 1, *bol;
		uint8_t h[KWAC_HASH_LEN];
		struct kwac_line l;
		for (bol = p; bol > orig && bol[-1] != '\n'; bol--)
			;
		CU_ASSERT_EQUAL_FATAL(kwac_line_parse(bol, (size_t)(p - bol), &l, NULL, 0), 0);
		CU_ASSERT_EQUAL_FATAL(l.type, KWAC_LINE_EVENT);
		kwac_hash(bol, (size_t)(p - bol), h);
		kwac_hex(h, hex);
		CU_ASSERT_EQUAL_FATAL(file_put(path, orig, lo, "wb"), 0);
		snprintf(line, sizeof(line), "{\"seq\":%llu,\"time\":\"2026-01-01T00:00:00.000000Z\",\"prev\":\"%s\",\"type\":\"request\",\"action\":\"secret.get\",\"vault\":\"prod\",\"outcome\":\"success\"}",
		    (unsigned long long)l.seq + 1, hex);
		kwac_hash(line, strlen(line), h);
		kwac_hex(h, hex);
		f = fopen(path, "ab");
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		fprintf(f, "%s\n{\"type\":\"seal\",\"seq\":%llu,\"hash\":\"%s\",\"hmac\":\"%064d\"}\n",
		    line, (unsigned long long)l.seq + 1, hex, 0);
		fclose(f);
	}
	CU_ASSERT_NOT_EQUAL(kwt_daemon_restart(&dmn), 0);
	{
		const char *m = "was not made by the token's audit key";
		CU_ASSERT(kwt_file_contains(dmn.log, m, strlen(m)));
	}
	CU_ASSERT_EQUAL(verify_offline(out, 1u << 20), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "BROKEN (seal-mac)"));
	/* The log as the daemon left it: it starts and goes on. */
	CU_ASSERT_EQUAL_FATAL(file_put(path, orig, lo, "wb"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, 1u << 20, "audit", "verify", NULL), 0);
	free(orig);
	free(out);
}

/* ---- the anchor -------------------------------------------------------------- */

/* keywardend --config CONF --verify-audit for daemon d, output into out. */
static int
verify_offline_of(const struct kwt_daemon *d, char *out, size_t outlen)
{
	char cmd[1400];
	char *argv[] = { "sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd), "'%s' --config '%s' --verify-audit 2>&1", d->exe, d->conf);
	return kwt_run(argv, out, outlen);
}

/* The token's anchor seq as /v1/health reports it. */
static uint64_t
anchor_seq_of(const char *sock)
{
	long st;
	json_t *j = kwt_http_json(sock, "GET", "/v1/health", NULL, &st);
	json_t *a = json_object_get(json_object_get(j, "audit"), "anchor");
	uint64_t seq = (uint64_t)json_integer_value(json_object_get(a, "seq"));

	if (!json_is_true(json_object_get(a, "ok")))
		seq = 0;
	json_decref(j);
	return seq;
}

/* A log cut back while no daemon ran verifies whole by its chain and its
 * seals; the token's anchor shows the cut.  The start is refused and
 * changes nothing; a removed log is refused too; --audit-reanchor takes
 * the log as it is and records the loss; a crash leaves an anchor behind
 * the log's end, which is no cut; an anchor the audit key did not make is
 * refused. */
static void
test_anchor_shows_cut(void)
{
	struct kwt_token t2;
	struct kwt_daemon d2;
	char path[700], moved[700], *full = NULL, *cut = NULL, *out = malloc(1u << 20), *seal;
	size_t flen = 0, clen = 0, at;
	uint64_t before;
	p11_ctx *p11 = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL_FATAL(kwt_token_new(&t2, "kw-anchor"), 0);   /* sets SOFTHSM2_CONF */
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_start_opts(&d2, &t2, NULL, "  anchor_interval: 1s\n", NULL), 0);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/dev/secrets/anchored", "{\"value\":\"a\"}", NULL), 201);
	/* A new token has no anchor: the first commit writes one. */
	CU_ASSERT(anchor_seq_of(d2.sock) > 0);
	/* Every anchor_interval while events come. */
	before = anchor_seq_of(d2.sock);
	sleep(1);
	usleep(100 * 1000);
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/dev/secrets/anchored", "{\"value\":\"b\"}", NULL), 201);
	CU_ASSERT(anchor_seq_of(d2.sock) > before);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/vaults/dev/secrets/anchored", NULL, NULL), 200);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_stop(&d2), 0);
	CU_ASSERT_EQUAL(verify_offline_of(&d2, out, 1u << 20), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "is in the log: its end was not cut"));

	/* Cut the log back to its first seal: chain and seals still whole. */
	snprintf(path, sizeof(path), "%s/audit-0000000001.jsonl", d2.audit);
	full = kwt_read_file(path, &flen);
	CU_ASSERT_PTR_NOT_NULL_FATAL(full);
	seal = strstr(full, "\"type\":\"seal\"");
	CU_ASSERT_FATAL(seal != NULL && strchr(seal, '\n') != NULL);
	at = (size_t)(strchr(seal, '\n') + 1 - full);
	CU_ASSERT_FATAL(at < flen);
	CU_ASSERT_EQUAL_FATAL(file_put(path, full, at, "wb"), 0);
	CU_ASSERT_EQUAL(kwt_cli(d2.sock, out, 1u << 20, "audit", "verify", "--no-seals", d2.audit, NULL), 0);
	CU_ASSERT_EQUAL(verify_offline_of(&d2, out, 1u << 20), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "BROKEN (cut)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "the token's audit anchor records seq"));
	CU_ASSERT_NOT_EQUAL(kwt_daemon_restart(&d2), 0);
	{
		const char *m = "were cut off, or an older copy of the log was put back";
		CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	}
	/* Refused, it changed nothing. */
	cut = kwt_read_file(path, &clen);
	CU_ASSERT_EQUAL(clen, at);
	CU_ASSERT(cut != NULL && memcmp(cut, full, at) == 0);
	free(cut);

	/* The whole log put back: it starts. */
	CU_ASSERT_EQUAL_FATAL(file_put(path, full, flen, "wb"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&d2), 0);
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/vaults/dev/secrets/anchored", NULL, NULL), 200);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_stop(&d2), 0);

	/* A log removed altogether (an empty directory in its place). */
	snprintf(moved, sizeof(moved), "%s.moved", d2.audit);
	CU_ASSERT_EQUAL_FATAL(rename(d2.audit, moved), 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(d2.audit, 0700), 0);
	CU_ASSERT_NOT_EQUAL(kwt_daemon_restart(&d2), 0);
	{
		const char *m = "holds no event, but the token's anchor records seq";
		CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	}
	CU_ASSERT_EQUAL_FATAL(rmdir(d2.audit), 0);
	CU_ASSERT_EQUAL_FATAL(rename(moved, d2.audit), 0);

	/* Cut again, and taken as it is by the operator: recorded. */
	free(full);
	full = kwt_read_file(path, &flen);
	CU_ASSERT_PTR_NOT_NULL_FATAL(full);
	CU_ASSERT_EQUAL_FATAL(file_put(path, full, at, "wb"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart_arg(&d2, "--audit-reanchor"), 0);
	CU_ASSERT(kwt_file_contains(path, "\"type\":\"audit.reanchored\",\"problem\":\"cut\"",
	    strlen("\"type\":\"audit.reanchored\",\"problem\":\"cut\"")));
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/vaults/dev/secrets/anchored", NULL, NULL), 200);
	{
		char *resp = NULL;
		CU_ASSERT_EQUAL(kwt_http(d2.sock, "POST", "/v1/audit/verify", "{}", &resp), 200);
		CU_ASSERT_PTR_NOT_NULL(strstr(resp ?: "", "\"ok\":true"));
		free(resp);
	}
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_stop(&d2), 0);
	CU_ASSERT_EQUAL(verify_offline_of(&d2, out, 1u << 20), 0);
	/* Without the flag again: the anchor now vouches for this log. */
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&d2), 0);

	/* A crash: the anchor lags the log's end, and that is no cut. */
	for (int i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/dev/secrets/anchored", "{\"value\":\"c\"}", NULL), 201);
	kwt_daemon_kill9(&d2);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&d2), 0);
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/vaults/dev/secrets/anchored", NULL, NULL), 200);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_stop(&d2), 0);

	/* An anchor of no key (a token someone else logged in to, or a value
	 * copied from another token): refused like a forged seal. */
	{
		struct p11_options o;
		char text[KWAC_ANCHOR_TEXT_MAX], label[KWAC_ANCHOR_LABEL_MAX];
		struct kwac_anchor a;

		memset(&o, 0, sizeof(o));
		o.module = t2.module;
		o.token = t2.label;
		o.pin_file = t2.pin_file;
		CU_ASSERT_EQUAL_FATAL(p11_open(&o, &p11), 0);
		memset(&a, 0x5a, sizeof(a));
		a.seq = 2;
		CU_ASSERT_FATAL(kwac_anchor_format(&a, text, sizeof(text)) > 0);
		kwac_anchor_label(d2.audit, label);
		CU_ASSERT_EQUAL_FATAL(p11_data_write(p11, label, text, strlen(text)), 0);
		p11_close(p11);
	}
	CU_ASSERT_NOT_EQUAL(kwt_daemon_restart(&d2), 0);
	{
		const char *m = "was not made by its audit key";
		CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	}
	CU_ASSERT_EQUAL(verify_offline_of(&d2, out, 1u << 20), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "BROKEN (anchor)"));

	free(full);
	free(out);
	kwt_daemon_free(&d2);
	kwt_token_free(&t2);
	setenv("SOFTHSM2_CONF", tok.conf, 1);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "an unwritable log refuses reads with 503, then heals", test_fail_closed_and_heal },
		{ "the daemon's verify sees a tail cut off behind its back", test_verify_sees_cut_tail },
		{ "kill -9 during a burst: every acknowledged write has its event", test_kill9_during_burst },
		{ "four subscribers see 10,000 requests' events exactly once, across a restart", test_stream_exactly_once },
		{ "a stalled subscriber is cut off past stream_max_lag; the others see all", test_stream_lag_cut },
		{ "the stream is its connection's last response: a request behind it is not answered", test_stream_behind },
		{ "a subscriber that half-closes still gets its stream; its close is seen", test_stream_half_close },
		{ "keywarden audit tail and query", test_cli_tail_and_query },
		{ "verified at rest: an unsealed end breaks, a forged seal stops the start", test_at_rest_and_forged_tail },
		{ "the token's anchor shows a log cut while no daemon ran", test_anchor_shows_cut },
		{ NULL, NULL }
	};

	return kwt_cunit_main("audit trail end to end", suite_init, suite_clean, cases);
}
