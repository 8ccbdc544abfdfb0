/*
 * http.c - connections of the daemon's HTTP/1.1 server (see http.h).
 *
 * A connection is a small state machine on its loop's thread:
 *
 *   READ --(head and body whole)--> BUSY --(reply queued)--> READ ...
 *                                    \--(stream begun)--> STREAM --(end)--> CLOSING
 *
 * and CLOSING once a reply that ends the connection is queued: it closes
 * when its output is written.  The read event stays armed while the client
 * reads its replies (so serving a request costs no epoll change); a client
 * that sends more than one buffer ahead of its replies, or sends while a
 * reply waits for it to read, is paused until they are written: no request
 * is taken while a reply is unwritten, so a connection holds at most one.
 * When the client ends its side (shutdown, or close), the requests it sent
 * ahead of its end are still answered one by one, in order, and the
 * connection closes after the last (or at once if what is left is not a
 * whole request).  A stream is the connection's last response: it says
 * "Connection: close", what the client sent behind its request is dropped
 * unanswered, and what the client sends while it runs is read only to see
 * its end.  A client that shuts only its sending side still reads: its
 * stream goes on until it closes for good (seen at once, or by the sweep)
 * or is cut off as any subscriber is.  A once-a-second sweep per loop
 * cuts clients that are too slow to send a request or to read a reply
 * (limits.client_timeout).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "kw_error.h"
#include "daemon/http.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/stream.h"

#define HTTP_MAX_HEAD    16384          /* request line and headers */
#define HTTP_IN_FIRST    4096           /* first input buffer (locked memory) */
#define HTTP_CHUNK_SLACK (64 * 1024)    /* framing of a chunked body held at once */
#define HTTP_ACCEPT_BURST 64

enum conn_state { C_READ, C_BUSY, C_STREAM, C_CLOSING, C_LINGER };

#define HTTP_LINGER_S 2   /* reading what a refused client still sends */

struct kwd_conn {
	struct kwd_loop *l;
	int fd;
	enum conn_state state;
	struct event *rev, *wev;
	int reading;                   /* rev is armed */
	int peer_eof;                  /* the client shut its side */
	int dispatching;               /* in server_request: conn_close defers */
	int close_deferred;            /* conn_close came while dispatching */
	size_t in_dispatched;          /* of in, the request in server_request */
	struct peer_identity who;
	int unidentified;              /* identity_from_socket failed */
	struct peer_exe_claim exe_claim;   /* who.exe, until a worker checked it */

	/* input: in[0..in_len) of in_cap bytes; kw_secalloc'd while in_sec */
	char *in;
	size_t in_len, in_cap;
	int in_sec;
	int have_head;
	struct kwh_head h;             /* of the request being read */
	size_t target_off;             /* h.target's offset in in */
	struct kwh_chunked ch;
	size_t ch_in, ch_out;
	int sent_continue;

	/* the request in flight, and how to answer it */
	void *req;
	int method;
	int minor;
	int keep_alive;

	struct evbuffer *out;
	void (*drained)(void *);
	void *drained_arg;
	int out_wait;                  /* wev armed: the socket would not take out */
	size_t out_counted;            /* of out, in the metric conn_out_backlog */

	/* monotonic seconds.  Each direction has its own clock, so that a
	 * client that keeps sending cannot keep alive a connection whose
	 * replies it does not read; and a head has a deadline, not a pace,
	 * so that it cannot be sent a byte at a time for ever. */
	time_t t_start;                /* the request's first byte, or the turn to send one */
	time_t t_active;               /* the last bytes read */
	time_t t_written;              /* the last bytes written, or out began to wait */

	struct kwd_conn *prev, *next;  /* the loop's connections */
};

static time_t
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts.tv_sec;
}

/* ---- input buffer ------------------------------------------------------------ */

/* Wipe and release an input buffer of cap bytes. */
static void
in_release(char *p, size_t cap, int sec)
{
	if (sec) {
		kw_secfree(p);
	} else {
		kw_wipe(p, cap);
		free(p);
	}
}

/* Move c's input into a new buffer of n bytes (n >= c->in_len); the old one
 * is wiped and released. */
static int
in_resize(struct kwd_conn *c, size_t n)
{
	struct kwd_metrics *m = &c->l->d->m;
	char *nb;
	int sec;

	/* Locked memory while small; ordinary memory (still wiped) when the
	 * locked pages run out or the body is large. */
	sec = n <= HTTP_IN_FIRST;
	nb = sec ? kw_secalloc(n) : NULL;
	if (nb == NULL) {
		sec = 0;
		nb = malloc(n);
	}
	if (nb == NULL)
		return -ENOMEM;
	if (c->in != NULL) {
		memcpy(nb, c->in, c->in_len);
		in_release(c->in, c->in_cap, c->in_sec);
	}
	if (n > c->in_cap)
		atomic_fetch_add(&m->conn_in_bytes, n - c->in_cap);
	else
		atomic_fetch_sub(&m->conn_in_bytes, c->in_cap - n);
	c->in = nb;
	c->in_cap = n;
	c->in_sec = sec;
	return 0;
}

/* Grow c->in to at least want bytes. */
static int
in_grow(struct kwd_conn *c, size_t want)
{
	size_t n = c->in_cap ? c->in_cap : HTTP_IN_FIRST;

	while (n < want)
		n = n > SIZE_MAX / 2 ? want : n * 2;
	if (n == c->in_cap)
		return 0;
	return in_resize(c, n);
}

/* After a large request: back to the first, small buffer, so that a
 * connection does not keep the largest body it ever sent (in ordinary
 * memory, the large one) for as long as it stays open. */
static void
in_shrink(struct kwd_conn *c)
{
	if (c->in_cap <= HTTP_IN_FIRST || c->in_len > HTTP_IN_FIRST)
		return;
	(void)in_resize(c, HTTP_IN_FIRST);   /* out of memory: keep the large one */
}

/* Drop the first n bytes of input, wiping them. */
static void
in_consume(struct kwd_conn *c, size_t n)
{
	size_t rest = c->in_len - n;

	if (rest > 0)
		memmove(c->in, c->in + n, rest);
	kw_wipe(c->in + rest, n);
	c->in_len = rest;
}

static void
in_free(struct kwd_conn *c)
{
	if (c->in == NULL)
		return;
	in_release(c->in, c->in_cap, c->in_sec);
	atomic_fetch_sub(&c->l->d->m.conn_in_bytes, c->in_cap);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
}

/* ---- life of a connection ------------------------------------------------------- */

static void conn_process(struct kwd_conn *c);
static void conn_flush(struct kwd_conn *c);

/* Count n bytes of c's output as waiting for the client, in place of what
 * was counted before. */
static void
out_account(struct kwd_conn *c, size_t n)
{
	struct kwd_metrics *m = &c->l->d->m;

	if (n == c->out_counted)
		return;
	if (n > c->out_counted)
		atomic_fetch_add(&m->conn_out_backlog, n - c->out_counted);
	else
		atomic_fetch_sub(&m->conn_out_backlog, c->out_counted - n);
	c->out_counted = n;
}

static void
conn_close(struct kwd_conn *c)
{
	struct kwd_loop *l = c->l;

	if (c->dispatching) {
		/* conn_process still holds c after server_request, which can
		 * reply and so close at once (a refusal for want of memory, to
		 * a client that is gone): conn_process closes it then. */
		c->close_deferred = 1;
		return;
	}
	if (c->req != NULL) {
		server_request_orphaned(c->req);
		c->req = NULL;
	}
	if (c->state == C_STREAM)
		stream_conn_closed(l, c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	event_free(c->rev);
	event_free(c->wev);
	close(c->fd);
	identity_exe_claim_clear(&c->exe_claim);
	identity_clear(&c->who);
	out_account(c, 0);
	evbuffer_free(c->out);   /* runs the cleanup (a wipe) of a secret not yet written */
	in_free(c);
	atomic_fetch_sub(&l->d->m.connections_open, 1);
	free(c);
}

static void
reading_set(struct kwd_conn *c, int on)
{
	if (on && !c->reading && !c->peer_eof)
		c->reading = event_add(c->rev, NULL) == 0;
	else if (!on && c->reading) {
		event_del(c->rev);
		c->reading = 0;
	}
}

/* Has the client closed its whole connection, not only its sending side?
 * On a Unix socket the peer's close hangs up both directions (POLLHUP),
 * while its shutdown(SHUT_WR) only ends what we read (POLLRDHUP). */
static int
conn_peer_gone(const struct kwd_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = 0 };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

/* Is the reply being made the connection's last, because the client has
 * ended its side and sent nothing more of a request?  Requests it sent
 * ahead before its end are still answered, in order (conn_process closes
 * once what is left cannot become a request). */
static int
conn_input_ended(const struct kwd_conn *c)
{
	return c->peer_eof && c->in_len == c->in_dispatched;
}

/* The reply is written: serve the next request, or close. */
static void
conn_drained(struct kwd_conn *c)
{
	if (c->state == C_CLOSING) {
		/* Close only once the client has stopped sending: closing a
		 * Unix socket with unread input makes the client's next read
		 * fail, which may lose the reply just written (a 413 to a
		 * large body).  So shut our side and read until the client's
		 * end, for at most HTTP_LINGER_S. */
		if (c->peer_eof || shutdown(c->fd, SHUT_WR) != 0) {
			conn_close(c);
			return;
		}
		c->state = C_LINGER;
		c->t_active = mono_s();
		reading_set(c, 1);
		return;
	}
	if (c->state == C_STREAM) {
		if (c->drained != NULL)
			c->drained(c->drained_arg);   /* may queue more, or finish */
		return;
	}
	if (c->state == C_READ) {
		if (conn_input_ended(c)) {
			conn_close(c);
			return;
		}
		/* The client owes the next request from now, not from when it
		 * sent the last one (which may have been served for long), and
		 * one it sent ahead has its whole time from now. */
		c->t_start = mono_s();
		reading_set(c, 1);
		conn_process(c);
	}
}

static void
conn_flush(struct kwd_conn *c)
{
	size_t len;

	while ((len = evbuffer_get_length(c->out)) > 0) {
		int n = evbuffer_write(c->out, c->fd);

		if (n > 0) {
			c->t_written = mono_s();
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* The client's time to read starts now, not at
			 * the last write of an earlier reply. */
			if (!c->out_wait) {
				c->out_wait = 1;
				c->t_written = mono_s();
			}
			out_account(c, len);
			event_add(c->wev, NULL);
			return;
		}
		if (n < 0 && errno == EINTR)
			continue;
		conn_close(c);   /* EPIPE: the client is gone */
		return;
	}
	c->out_wait = 0;
	out_account(c, 0);
	conn_drained(c);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	conn_flush(arg);
}

/* ---- replies --------------------------------------------------------------------- */

static char *
put_str(char *p, const char *s)
{
	size_t n = strlen(s);
	memcpy(p, s, n);
	return p + n;
}

static char *
put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

/* The Date header's value, formatted once a second per loop. */
static const char *
http_date(struct kwd_loop *l)
{
	time_t now = time(NULL);

	if (now != l->date_t) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(l->date, sizeof(l->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		l->date_t = now;
	}
	return l->date;
}

/* The status line and headers into c->out.  len < 0: chunked. */
static void
put_head(struct kwd_conn *c, int status, const char *ctype, const char *allow, int64_t len,
    int close)
{
	char head[512], *p = head;

	if (status < 100 || status > 999)
		status = 500;
	p = put_str(p, "HTTP/1.1 ");
	p = put_u64(p, (uint64_t)status);
	*p++ = ' ';
	p = put_str(p, kwh_reason(status));
	p = put_str(p, "\r\nDate: ");
	p = put_str(p, http_date(c->l));
	p = put_str(p, "\r\nCache-Control: no-store\r\n");
	if (ctype != NULL && strlen(ctype) < 100) {
		p = put_str(p, "Content-Type: ");
		p = put_str(p, ctype);
		p = put_str(p, "\r\n");
	}
	if (allow != NULL && strlen(allow) < 100) {
		p = put_str(p, "Allow: ");
		p = put_str(p, allow);
		p = put_str(p, "\r\n");
	}
	if (len >= 0) {
		p = put_str(p, "Content-Length: ");
		p = put_u64(p, (uint64_t)len);
		p = put_str(p, "\r\n");
	} else if (c->minor >= 1) {
		p = put_str(p, "Transfer-Encoding: chunked\r\n");
	}
	if (close)
		p = put_str(p, "Connection: close\r\n");
	else if (c->minor == 0)
		p = put_str(p, "Connection: keep-alive\r\n");
	p = put_str(p, "\r\n");
	evbuffer_add(c->out, head, (size_t)(p - head));
}

static void
secret_written(const void *data, size_t len, void *arg)
{
	kw_secret *s = arg;
	(void)data; (void)len;
	kw_secret_clear(s);
	free(s);
}

void
http_reply(struct kwd_conn *c, int status, const char *content_type, const char *allow,
    struct evbuffer *body, kw_secret *secret, int close)
{
	size_t len = secret != NULL && secret->data != NULL ? secret->len :
	    body != NULL ? evbuffer_get_length(body) : 0;
	int head_only = c->method == KWH_HEAD;

	c->req = NULL;
	close = close || !c->keep_alive || conn_input_ended(c) ||
	    atomic_load(&c->l->d->stopping);
	put_head(c, status, content_type, allow, (int64_t)len, close);
	if (secret != NULL && secret->data != NULL) {
		kw_secret *keep = head_only ? NULL : malloc(sizeof(*keep));
		if (keep != NULL) {
			*keep = *secret;
			if (evbuffer_add_reference(c->out, keep->data, keep->len, secret_written,
			    keep) != 0) {
				kw_secret_clear(keep);
				free(keep);
				close = 1;   /* the reply is short: end the connection */
			}
			secret->data = NULL;
			secret->len = 0;
		} else {
			kw_secret_clear(secret);
			close = close || !head_only;
		}
	} else if (body != NULL) {
		if (head_only)
			evbuffer_drain(body, len);
		else
			evbuffer_add_buffer(c->out, body);
	}
	c->state = close ? C_CLOSING : C_READ;
	conn_flush(c);
}

static const char *
refusal_code(int status)
{
	switch (status) {
	case 413: return "too_large";
	case 417: return "expectation_failed";
	case 431: return "headers_too_large";
	case 501: return "not_implemented";
	case 503: return "unavailable";
	case 505: return "version_not_supported";
	default: return "bad_request";
	}
}

void
http_reply_refusal(struct kwd_conn *c, int status, const char *why)
{
	struct evbuffer *b = evbuffer_new();

	if (status < 500)
		atomic_fetch_add(&c->l->d->m.responses_4xx, 1);
	else
		atomic_fetch_add(&c->l->d->m.responses_5xx, 1);
	/* Out of memory for even this buffer: the reply goes out with an
	 * empty body, its status still says why. */
	if (b != NULL)
		evbuffer_add_printf(b, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
		    refusal_code(status),
		    why ? why : "the request is malformed");
	http_reply(c, status, "application/json", NULL, b, NULL, 1);
	if (b != NULL)
		evbuffer_free(b);
}

/* A refusal from the protocol layer itself: JSON like every other error,
 * then close (the rest of the input cannot be trusted to be framed). */
static void
http_refuse(struct kwd_conn *c, int status, const char *why)
{
	reading_set(c, 0);
	in_consume(c, c->in_len);
	http_reply_refusal(c, status, why);
}

void
http_stream_begin(struct kwd_conn *c, const char *content_type)
{
	c->req = NULL;
	c->state = C_STREAM;
	/* The stream is the connection's last response, and says so
	 * ("Connection: close"): it has no end that the client can ask for,
	 * so a request behind it would wait for a lag or an error.  HTTP
	 * has the client send again, on another connection, what it sent
	 * behind a response that closes (RFC 9112, 9.3.2 and 9.6).  So what
	 * was read behind the stream's request is wiped and the buffer given
	 * back, and from now on read_cb reads only to see the client's end
	 * (reading again, if a full buffer had paused it).  An HTTP/1.0 client gets the lines
	 * unframed, and the end is the connection's close. */
	in_free(c);
	reading_set(c, 1);
	put_head(c, 200, content_type, NULL, -1, 1);
	conn_flush(c);
}

void
http_stream_send(struct kwd_conn *c, struct evbuffer *data)
{
	size_t n = evbuffer_get_length(data);

	if (n == 0)
		return;
	if (c->minor >= 1)
		evbuffer_add_printf(c->out, "%zx\r\n", n);
	evbuffer_add_buffer(c->out, data);
	if (c->minor >= 1)
		evbuffer_add(c->out, "\r\n", 2);
	/* Written from the loop, not from here: the stream refills from
	 * the drained callback, which must not run inside this call. */
	event_add(c->wev, NULL);
}

void
http_stream_finish(struct kwd_conn *c)
{
	c->drained = NULL;
	c->drained_arg = NULL;
	if (c->minor >= 1)
		evbuffer_add(c->out, "0\r\n\r\n", 5);
	c->state = C_CLOSING;   /* it said it was the last response */
	conn_flush(c);
}

size_t
http_out_pending(const struct kwd_conn *c)
{
	return evbuffer_get_length(c->out);
}

void
http_set_drained_cb(struct kwd_conn *c, void (*fn)(void *), void *arg)
{
	c->drained = fn;
	c->drained_arg = arg;
}

struct kwd_loop *
http_conn_loop(const struct kwd_conn *c)
{
	return c->l;
}

const struct peer_identity *
http_conn_who(const struct kwd_conn *c)
{
	return &c->who;
}

int
http_conn_identified(const struct kwd_conn *c)
{
	return !c->unidentified;
}

const struct peer_exe_claim *
http_conn_exe_claim(const struct kwd_conn *c)
{
	return c->exe_claim.path != NULL ? &c->exe_claim : NULL;
}

void
http_conn_identity_checked(struct kwd_conn *c, const struct peer_identity *who)
{
	snprintf(c->who.exe, sizeof(c->who.exe), "%s", who->exe);
	identity_exe_claim_clear(&c->exe_claim);
	identity_names_copy(&c->who, who);
}

void
http_conn_set_request(struct kwd_conn *c, void *req)
{
	c->req = req;
}

/* ---- requests ---------------------------------------------------------------------- */

/* Parse what has arrived; hand over each complete request. */
static void
conn_process(struct kwd_conn *c)
{
	uint64_t max_body = c->l->d->cfg->max_body;
	const char *why;
	const char *body;
	size_t blen, used;
	int rc;

	while (c->state == C_READ && c->in_len > 0) {
		if (!c->have_head && evbuffer_get_length(c->out) > 0) {
			/* A reply is still unwritten: the next request waits
			 * for it (conn_drained), so that what a connection
			 * queues stays one reply. */
			reading_set(c, 0);
			return;
		}
		if (!c->have_head) {
			rc = kwh_parse_head(c->in, c->in_len, HTTP_MAX_HEAD, &c->h, &why);
			if (rc == 0) {
				if (c->peer_eof)
					conn_close(c);   /* the rest can never come */
				return;
			}
			if (rc < 0) {
				c->minor = 1;
				c->method = 0;
				http_refuse(c, -rc, why);
				return;
			}
			c->have_head = 1;
			c->target_off = (size_t)(c->h.target - c->in);
			c->sent_continue = 0;
			c->method = c->h.method;
			c->minor = c->h.minor;
			c->keep_alive = c->h.keep_alive;
			if (c->h.has_length && c->h.content_length > max_body) {
				http_refuse(c, 413,
				    "the body is larger than the server accepts (limits.max_body)");
				return;
			}
			if (c->h.chunked) {
				memset(&c->ch, 0, sizeof(c->ch));
				c->ch_in = c->ch_out = c->h.head_len;
			}
		}
		if (c->h.chunked) {
			rc = kwh_chunked_step(&c->ch, c->in, c->in_len, &c->ch_in, &c->ch_out,
			    max_body, &why);
			if (rc < 0) {
				http_refuse(c, -rc, why);
				return;
			}
			body = c->in + c->h.head_len;
			blen = c->ch_out - c->h.head_len;
			used = c->ch_in;
		} else {
			blen = c->h.has_length ? (size_t)c->h.content_length : 0;
			rc = c->in_len - c->h.head_len >= blen;
			body = c->in + c->h.head_len;
			used = c->h.head_len + blen;
		}
		if (rc == 0 && c->peer_eof) {
			conn_close(c);   /* the rest of the body can never come */
			return;
		}
		if (rc == 0) {
			/* The body is still coming: make room for it, and say
			 * "go on" to a client that waits to be told. */
			size_t want = c->h.chunked ? c->h.head_len + max_body + HTTP_CHUNK_SLACK :
			    c->h.head_len + blen;
			if (c->h.chunked && c->in_len == c->in_cap && c->in_cap >= want) {
				http_refuse(c, 413,
				    "the chunked body's framing is larger than the server accepts");
				return;
			}
			/* A chunked body's length is unknown: double, up to want. */
			if (c->h.chunked && c->in_cap * 2 < want)
				want = c->in_cap * 2;
			if (c->in_len == c->in_cap && in_grow(c, want) != 0) {
				http_refuse(c, 503, "out of memory for the request body");
				return;
			}
			if (c->h.expect_continue && !c->sent_continue) {
				c->sent_continue = 1;
				evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
				conn_flush(c);   /* cannot close: state stays C_READ */
			}
			return;
		}
		c->state = C_BUSY;
		c->have_head = 0;
		c->h.target = c->in + c->target_off;   /* the buffer may have moved */
		c->dispatching = 1;
		c->in_dispatched = used;
		server_request(c, &c->h, body, blen);
		c->dispatching = 0;
		c->in_dispatched = 0;
		if (c->close_deferred) {
			conn_close(c);   /* wipes the input */
			return;
		}
		/* The head and body were copied or parsed: wipe them. */
		in_consume(c, used);
		in_shrink(c);
		if (c->state == C_BUSY && c->in_len >= c->in_cap)
			reading_set(c, 0);   /* far enough ahead: wait for the reply */
	}
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kwd_conn *c = arg;
	ssize_t n;

	(void)what;
	if (c->state == C_LINGER || c->state == C_STREAM) {
		/* Nothing more will be served: read only to see the end. */
		char sink[16384];
		n = read(fd, sink, sizeof(sink));
		kw_wipe(sink, sizeof(sink));
		if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
			return;
		if (n == 0 && c->state == C_STREAM && !conn_peer_gone(c)) {
			/* The subscriber shut its sending side only: it still
			 * reads, and the stream goes on.  The sweep sees when
			 * it closes for good, as a write to it would. */
			c->peer_eof = 1;
			reading_set(c, 0);
			return;
		}
		conn_close(c);
		return;
	}
	if (c->state == C_READ && evbuffer_get_length(c->out) > 0) {
		/* A reply waits for the client to read it: read nothing
		 * more until it is written (conn_drained reads again).  A
		 * client that sends requests and never reads the replies
		 * would otherwise grow c->out without bound, and every read
		 * would count as its progress. */
		reading_set(c, 0);
		return;
	}
	if (c->in_len == c->in_cap) {
		/* Before a head is whole, the buffer doubles up to the head's
		 * limit (the parser refuses beyond it); conn_process grows it
		 * for a body.  A request sent ahead waits for its turn. */
		if (c->state != C_READ || c->have_head || c->in_cap >= HTTP_MAX_HEAD ||
		    in_grow(c, c->in_cap + 1) != 0) {
			reading_set(c, 0);
			return;
		}
	}
	n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (n > 0) {
		c->t_active = mono_s();
		if (c->in_len == 0)
			c->t_start = c->t_active;   /* a request's first byte */
		c->in_len += (size_t)n;
		if (c->state == C_READ)
			conn_process(c);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	/* The end of the client's side, or an error. */
	c->peer_eof = 1;
	reading_set(c, 0);
	/* In READ with nothing to write, what input there is was no whole
	 * request (conn_process took each one): it never will be. */
	if (n < 0 || (c->state == C_READ && evbuffer_get_length(c->out) == 0))
		conn_close(c);
	/* else: a request in flight, or a reply being written; the
	 * connection serves the requests sent ahead of the end (already
	 * read), in order, and closes after the last. */
}

/* ---- accepting and the sweep --------------------------------------------------------- */

/* Count one more connection open, unless limits.max_connections are open
 * already.  A compare-and-swap: every loop accepts at once, and a load then
 * an add would let each of them take the last place. */
static int
conn_count_take(struct kwd *d)
{
	uint_fast64_t n = atomic_load(&d->m.connections_open);

	do {
		if (n >= d->cfg->max_connections)
			return -EAGAIN;
	} while (!atomic_compare_exchange_weak(&d->m.connections_open, &n, n + 1));
	return 0;
}

/* A connection over the limit: a 503 that fits in the new socket's empty
 * buffer, then close, with nothing allocated for it.  It is not read: a
 * client that sent its request already still finds the reply first. */
static void
conn_refuse_over_limit(struct kwd_loop *l, int fd)
{
	char body[160], msg[512];
	int blen, n;

	atomic_fetch_add(&l->d->m.connections_refused, 1);
	blen = snprintf(body, sizeof(body),
	    "{\"error\":{\"code\":\"unavailable\",\"message\":"
	    "\"too many connections (limit %u)\"}}\n", l->d->cfg->max_connections);
	n = snprintf(msg, sizeof(msg), "HTTP/1.1 503 %s\r\nDate: %s\r\n"
	    "Cache-Control: no-store\r\nContent-Type: application/json\r\n"
	    "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
	    kwh_reason(503), http_date(l), blen, body);
	/* Best effort: a client that is gone is not told. */
	if (blen > 0 && (size_t)blen < sizeof(body) && n > 0 && (size_t)n < sizeof(msg) &&
	    send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("cannot refuse a connection over the limit: %s", strerror(errno));
	close(fd);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct kwd_loop *l = arg;
	struct kwd *d = l->d;

	(void)what;
	for (int i = 0; i < HTTP_ACCEPT_BURST; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), ie;
		struct kwd_conn *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: stop accepting for a second
				 * rather than spin on a socket that stays readable. */
				struct timeval tv = { 1, 0 };
				log_warn("cannot accept a connection: %s; pausing for 1 s", strerror(errno));
				event_del(l->listener);
				event_add(l->accept_pause, &tv);
			}
			return;
		}
		atomic_fetch_add(&d->m.connections_total, 1);
		if (conn_count_take(d) != 0) {
			conn_refuse_over_limit(l, fd);
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL ||
		    (c->out = evbuffer_new()) == NULL ||
		    (c->rev = event_new(l->base, fd, EV_READ | EV_PERSIST, read_cb, c)) == NULL ||
		    (c->wev = event_new(l->base, fd, EV_WRITE, write_cb, c)) == NULL) {
			log_warn("cannot take a connection: out of memory");
			if (c != NULL) {
				if (c->rev) event_free(c->rev);
				if (c->wev) event_free(c->wev);
				if (c->out) evbuffer_free(c->out);
				free(c);
			}
			atomic_fetch_sub(&d->m.connections_open, 1);
			close(fd);
			continue;
		}
		/* A caller the kernel cannot name is served nothing but a 500
		 * saying so (server_request).  Its executable is checked, and
		 * its names looked up, by the worker of its first request (a
		 * stat, NSS: either may wait). */
		if ((ie = identity_from_socket(fd, identity_now_ticks(), &c->who,
		    &c->exe_claim)) != 0) {
			log_warn("a connection's peer cannot be identified: %s", strerror(-ie));
			c->unidentified = 1;
		}
		c->l = l;
		c->fd = fd;
		c->state = C_READ;
		c->minor = 1;
		c->keep_alive = 1;
		c->t_start = c->t_active = c->t_written = mono_s();
		c->next = l->conns;
		if (l->conns != NULL)
			l->conns->prev = c;
		l->conns = c;
		reading_set(c, 1);
	}
}

static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct kwd_loop *l = arg;
	(void)fd; (void)what;
	if (l->listener != NULL)
		event_add(l->listener, NULL);
}

static void
conn_timed_out(struct kwd_conn *c)
{
	atomic_fetch_add(&c->l->d->m.connections_timed_out, 1);
	conn_close(c);
}

/* Once a second: cut connections that made no progress for
 * limits.client_timeout while a reply waited for them to read it (only
 * what they read counts then, not what they send), that sent nothing for
 * as long when they owed us a request or the rest of its body, or whose
 * request line and headers are not whole client_timeout after their first
 * byte.  One in BUSY (the request is being served) or an idle stream is
 * left alone, unless the stream's client shut its sending side and has
 * closed since: nothing else would notice until an event failed to be
 * written to it. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kwd_loop *l = arg;
	time_t now = mono_s(), limit = (time_t)l->d->cfg->header_timeout_s;
	struct kwd_conn *c, *next;

	(void)fd; (void)what;
	for (c = l->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == C_LINGER) {
			if (now - c->t_active >= HTTP_LINGER_S)
				conn_close(c);
			continue;
		}
		if (c->state == C_STREAM && c->peer_eof && conn_peer_gone(c)) {
			conn_close(c);
			continue;
		}
		if (c->out_wait) {
			if (now - c->t_written >= limit)
				conn_timed_out(c);
			continue;
		}
		/* A request has client_timeout from its first byte, and as
		 * much again for each MiB it brings: a body, too, has a
		 * deadline, not a pace (a byte now and then would hold the
		 * connection for ever). */
		if (c->state == C_READ && c->in_len > 0 &&
		    now - c->t_start >= limit + limit * (time_t)(c->in_len >> 20))
			conn_timed_out(c);
		else if (c->state == C_READ && c->in_len == 0 && now - c->t_start >= limit)
			conn_timed_out(c);
	}
}

int
http_listen(struct kwd_loop *l, int fd)
{
	struct timeval one = { 1, 0 };

	l->listen_fd = fd;
	if ((l->listener = event_new(l->base, fd, EV_READ | EV_PERSIST, accept_cb, l)) == NULL ||
	    (l->accept_pause = evtimer_new(l->base, accept_resume, l)) == NULL ||
	    (l->sweep = event_new(l->base, -1, EV_PERSIST, sweep_cb, l)) == NULL ||
	    event_add(l->listener, NULL) != 0 || event_add(l->sweep, &one) != 0)
		return kw_fail(-ENOMEM, "cannot listen in an event loop: out of memory");
	return 0;
}

void
http_stop_listening(struct kwd_loop *l)
{
	if (l->listener != NULL) {
		event_free(l->listener);
		l->listener = NULL;
	}
	if (l->accept_pause != NULL) {
		event_free(l->accept_pause);
		l->accept_pause = NULL;
	}
	if (l->listen_fd >= 0) {
		close(l->listen_fd);
		l->listen_fd = -1;
	}
}

void
http_loop_free(struct kwd_loop *l)
{
	http_stop_listening(l);
	while (l->conns != NULL)
		conn_close(l->conns);
	if (l->sweep != NULL) {
		event_free(l->sweep);
		l->sweep = NULL;
	}
}
