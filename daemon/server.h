#ifndef KW_SERVER_H
#define KW_SERVER_H
#include <stddef.h>
struct kwd;
struct event_base;
/* An event base as the loops want it (epoll changelist). */
struct event_base *server_base_new(void);
/* Set up every loop (loop 0 on d->base) and the listening socket. */
int server_start(struct kwd *d);
/* Start the threads of loops 1..n-1 (loop 0 is the caller's to run). */
int server_run_loops(struct kwd *d);
/* From loop 0's thread: every loop stops accepting and leaves once its
 * requests in flight are answered (at most 10 s). */
void server_stop_accepting(struct kwd *d);
/* After loop 0 returned: wait for the other loops to return. */
void server_join_loops(struct kwd *d);
void server_free(struct kwd *d);
#endif
