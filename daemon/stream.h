/* stream.h - GET /v1/audit/stream (see stream.c).  Loop thread only. */
#ifndef KW_STREAM_H
#define KW_STREAM_H
#include <stdint.h>
struct kwd;
struct kwd_loop;
struct kwd_conn;
int stream_init(struct kwd *d);
/* Answer the request in flight on c with every event after since. */
int stream_start(struct kwd_loop *l, struct kwd_conn *c, uint64_t since, uint64_t id);
/* c closed (from http.c): its stream, if any, stops. */
void stream_conn_closed(struct kwd_loop *l, struct kwd_conn *c);
void stream_shutdown(struct kwd *d);
#endif
