#ifndef KW_SERVER_H
#define KW_SERVER_H
#include <stddef.h>
struct kwd;
int server_start(struct kwd *d);
void server_stop_accepting(struct kwd *d);
void server_free(struct kwd *d);
void server_secret_cleanup(const void *data, size_t len, void *arg);
#endif
