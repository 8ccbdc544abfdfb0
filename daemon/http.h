/*
 * http.h - the daemon's HTTP/1.1 server on its Unix socket: connections,
 * reading requests, writing replies and chunked streams.
 *
 * Written for this protocol instead of libevent's evhttp, which cost
 * about twice the loop thread's time per request (docs/performance.md).
 * Each event loop accepts on its own descriptor of the listening socket;
 * a connection lives on the loop that accepted it, and only that loop's
 * thread touches it.  One request per connection is served at a time
 * (requests sent ahead are read and kept, up to a bound, until the reply
 * before them is written); while a reply waits for its client to read it,
 * nothing more is read from that client.
 *
 * Request bodies land in locked, non-dumpable memory when they are small
 * (kw_secalloc) and are wiped, whatever their size, as soon as they are
 * consumed and when the connection closes; a buffer grown for a large
 * request is wiped and given back once the request is consumed, and the
 * connection goes on with a small one.  A reply that holds a secret is
 * written from the caller's locked buffer and wiped once written.
 */
#ifndef KW_HTTP_H
#define KW_HTTP_H

#include <stddef.h>

#include "kw_secmem.h"
#include "daemon/http_parse.h"

struct kwd_loop;
struct kwd_conn;
struct evbuffer;
struct peer_identity;
struct peer_exe_claim;

/* Accept connections on fd in loop l (the loop owns fd from now on). */
int http_listen(struct kwd_loop *l, int fd);
/* Stop accepting and close the loop's descriptor of the socket. */
void http_stop_listening(struct kwd_loop *l);
/* Close every connection of the loop (at shutdown). */
void http_loop_free(struct kwd_loop *l);

/* The server's handler of a request whose head and body are complete
 * (daemon/server.c).  h->target and body are valid only during the call;
 * body is wiped after it. */
void server_request(struct kwd_conn *c, const struct kwh_head *h, const char *body,
    size_t body_len);
/* The connection of a request in flight went away (the loop's thread). */
void server_request_orphaned(void *req);

/* The loop c lives on. */
struct kwd_loop *http_conn_loop(const struct kwd_conn *c);
/* The caller at the other end, as the kernel reported it at accept. */
const struct peer_identity *http_conn_who(const struct kwd_conn *c);
/* 0 if the kernel could not say who the peer is: refuse its requests. */
int http_conn_identified(const struct kwd_conn *c);
/* The executable c's peer claimed at accept, still to be checked
 * (identity_exe_check, off the loop), or NULL once it has been (or when
 * there is none: then http_conn_who's exe is final). */
const struct peer_exe_claim *http_conn_exe_claim(const struct kwd_conn *c);
/* A worker completed the identity of c's peer for a request of c (checked
 * its executable claim, looked up its names): who's exe ("" for unknown),
 * user and group are the peer's from now on, and the claim is dropped. */
void http_conn_identity_checked(struct kwd_conn *c, const struct peer_identity *who);
/* The request in flight on c: set by the server, cleared by the reply. */
void http_conn_set_request(struct kwd_conn *c, void *req);

/* Reply to the request in flight on c with a JSON error of the protocol
 * layer's own (status's code, why as the message: a constant, never a
 * caller's bytes) and close; counted in the metrics.  For a refusal
 * before any struct kwd_req exists. */
void http_reply_refusal(struct kwd_conn *c, int status, const char *why);
/* Reply to the request in flight on c and free nothing of the caller's.
 * body is moved out of (left empty); secret, if not NULL, is the body
 * instead: it is taken over (left empty) and wiped once written.  allow:
 * an Allow header's value, or NULL.  close: close after the reply. */
void http_reply(struct kwd_conn *c, int status, const char *content_type, const char *allow,
    struct evbuffer *body, kw_secret *secret, int close);

/* A streamed reply: 200 with chunked framing, then chunks, then the end.
 * Begun from the request's completion (never inside server_request).  It
 * is the connection's last response ("Connection: close"): requests sent
 * behind it are dropped unanswered, and the connection closes after its
 * end. */
void http_stream_begin(struct kwd_conn *c, const char *content_type);
void http_stream_send(struct kwd_conn *c, struct evbuffer *data);   /* drains data */
void http_stream_finish(struct kwd_conn *c);
/* Bytes queued to c and not yet written. */
size_t http_out_pending(const struct kwd_conn *c);
/* Call fn(arg) whenever c's queued output has all been written. */
void http_set_drained_cb(struct kwd_conn *c, void (*fn)(void *), void *arg);

#endif
