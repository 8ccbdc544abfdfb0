/*
 * stream.c - GET /v1/audit/stream?since=SEQ: the audit log, live, as
 * chunked JSON lines.
 *
 * One subscription to the audit log wakes the loops that have stream
 * clients after every durable batch; each client, on its connection's
 * loop, has its own reader (memory for recent lines, the
 * segment files for older ones) that the loop drains while the client's
 * output buffer has room.  So a slow client never slows the writer or the
 * other clients, and every line reaches a client once, in order.  A client
 * that falls more than audit.stream_max_lag events behind (while its
 * output is full) is told so in a last line and cut off; it resumes with
 * ?since= the last seq it saw.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "kw_error.h"
#include "daemon/audit.h"
#include "daemon/http.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/stream.h"

#define KW_STREAM_HIGH_WATER (256 * 1024)
#define KW_STREAM_BATCH 1024

struct stream {
	struct kwd *d;
	struct kwd_conn *conn;   /* NULL once closed */
	struct audit_reader *rd;
	uint64_t last;           /* seq of the last line sent */
	uint64_t id;             /* request id */
	uint64_t max_lag;        /* audit.stream_max_lag when it began */
	int closed;              /* the connection went away */
	int ended;               /* we ended the reply */
	struct stream *next;
};

static void stream_pump_all(struct kwd_loop *l);

static void
stream_notify(void *arg, const struct audit_line *lines, size_t n)
{
	struct kwd *d = arg;
	(void)lines; (void)n;
	/* Only wake the loops that have clients: the readers fetch the lines
	 * themselves. */
	for (unsigned i = 0; i < d->nloops; i++)
		if (atomic_load(&d->loops[i].nstreams) > 0)
			event_active(d->loops[i].stream_ev, EV_READ, 0);
}

static void
stream_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	stream_pump_all(arg);
}

int
stream_init(struct kwd *d)
{
	for (unsigned i = 0; i < d->nloops; i++) {
		struct kwd_loop *l = &d->loops[i];
		if ((l->stream_ev = event_new(l->base, -1, EV_PERSIST, stream_wake, l)) == NULL)
			return -ENOMEM;
	}
	return audit_subscribe(d->audit, stream_notify, d, &d->stream_sub, NULL);
}

static void
stream_free(struct stream *s)
{
	audit_reader_close(s->rd);
	free(s);
}

static void
stream_unlink(struct kwd_loop *l, struct stream *s)
{
	for (struct stream **pp = &l->streams; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			atomic_fetch_sub(&l->nstreams, 1);
			return;
		}
}

static void
stream_end(struct stream *s, const char *last_line)
{
	if (!s->closed && !s->ended) {
		if (last_line != NULL) {
			struct evbuffer *b = evbuffer_new();
			if (b != NULL) {
				evbuffer_add_printf(b, "%s\n", last_line);
				http_stream_send(s->conn, b);
				evbuffer_free(b);
			}
		}
		s->ended = 1;
		http_stream_finish(s->conn);   /* may close the connection */
		s->conn = NULL;
	}
}

static void stream_pump(struct stream *s);

static void
stream_written(void *arg)
{
	struct stream *s = arg;
	if (!s->closed && !s->ended)
		stream_pump(s);
}

/* Send what the client's buffer has room for. */
static void
stream_pump(struct stream *s)
{
	struct evbuffer *chunk;
	const char *line;
	size_t len, n = 0;
	uint64_t seq;
	int r = 0;

	if (s->closed || s->ended)
		return;
	if (http_out_pending(s->conn) >= KW_STREAM_HIGH_WATER) {
		uint64_t committed = audit_committed_seq(s->d->audit);
		if (committed > s->last + s->max_lag) {
			char msg[256];
			snprintf(msg, sizeof(msg),
			    "{\"type\":\"stream.lagged\",\"last_seq\":%llu,\"message\":\"the client fell more than %llu events behind; resume with since=%llu\"}",
			    (unsigned long long)s->last, (unsigned long long)s->max_lag,
			    (unsigned long long)s->last);
			log_notice("audit stream of request %llu cut off: %llu events behind",
			    (unsigned long long)s->id, (unsigned long long)(committed - s->last));
			stream_end(s, msg);
		}
		return;
	}
	if ((chunk = evbuffer_new()) == NULL)
		return;
	while (n < KW_STREAM_BATCH && (r = audit_reader_next(s->rd, &line, &len, &seq)) == 1) {
		evbuffer_add(chunk, line, len);
		evbuffer_add(chunk, "\n", 1);
		s->last = seq;
		n++;
	}
	if (r < 0) {
		char msg[256];
		log_err("audit stream of request %llu: %s", (unsigned long long)s->id, kw_errdetail(r));
		evbuffer_free(chunk);
		snprintf(msg, sizeof(msg), "{\"type\":\"stream.error\",\"last_seq\":%llu,\"message\":\"the audit log cannot be read here; see the daemon's log\"}",
		    (unsigned long long)s->last);
		stream_end(s, msg);
		return;
	}
	if (n > 0)
		http_stream_send(s->conn, chunk);   /* written from the loop; then stream_written */
	evbuffer_free(chunk);
}

static void
stream_pump_all(struct kwd_loop *l)
{
	struct stream *s, *next;

	for (s = l->streams; s != NULL; s = next) {
		next = s->next;
		if (s->closed || s->ended) {
			stream_unlink(l, s);
			stream_free(s);
			continue;
		}
		stream_pump(s);
	}
}

int
stream_start(struct kwd_loop *l, struct kwd_conn *c, uint64_t since, uint64_t id)
{
	struct kwd *d = l->d;
	struct stream *s = calloc(1, sizeof(*s));
	int e;

	if (s == NULL)
		return -ENOMEM;
	if ((e = audit_reader_open(d->audit, NULL, since, &s->rd)) != 0) {
		free(s);
		return e;
	}
	s->d = d;
	s->conn = c;
	s->last = since;
	s->id = id;
	s->max_lag = d->cfg->audit_stream_max_lag;
	s->next = l->streams;
	l->streams = s;
	atomic_fetch_add(&l->nstreams, 1);
	http_stream_begin(c, "application/x-ndjson");   /* may close c */
	if (!s->closed) {
		/* One pump now; the next ones each time the client has taken
		 * what was queued (a pump finding the queue full would take
		 * the client for a laggard). */
		http_set_drained_cb(c, stream_written, s);
		stream_pump(s);
	}
	return 0;
}

void
stream_conn_closed(struct kwd_loop *l, struct kwd_conn *c)
{
	for (struct stream *s = l->streams; s != NULL; s = s->next)
		if (s->conn == c) {
			s->closed = 1;
			s->conn = NULL;
			event_active(l->stream_ev, EV_READ, 0);
		}
}

void
stream_shutdown(struct kwd *d)
{
	struct stream *s, *next;

	if (d->audit != NULL && d->stream_sub != NULL)
		audit_unsubscribe(d->audit, d->stream_sub);
	d->stream_sub = NULL;
	for (unsigned i = 0; d->loops != NULL && i < d->nloops; i++) {
		struct kwd_loop *l = &d->loops[i];
		for (s = l->streams; s != NULL; s = next) {
			next = s->next;
			if (!s->ended && !s->closed) {
				s->ended = 1;
				http_stream_finish(s->conn);   /* best effort: the loops have stopped */
			}
			stream_free(s);
		}
		l->streams = NULL;
		atomic_store(&l->nstreams, 0);
		if (l->stream_ev != NULL)
			event_free(l->stream_ev);
		l->stream_ev = NULL;
	}
}
