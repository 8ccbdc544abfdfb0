/* stream.h - GET /v1/audit/stream (see stream.c).  Loop thread only. */
#ifndef KW_STREAM_H
#define KW_STREAM_H
#include <stdint.h>
struct kwd;
struct kwd_loop;
struct evhttp_request;
struct evhttp_connection;
int stream_init(struct kwd *d);
/* Take over req and stream every event after since. */
int stream_start(struct kwd_loop *l, struct evhttp_request *req, uint64_t since, uint64_t id);
void stream_conn_closed(struct kwd_loop *l, struct evhttp_connection *evcon);
void stream_shutdown(struct kwd *d);
#endif
