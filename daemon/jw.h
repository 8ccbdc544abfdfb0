/*
 * jw.h - a JSON object writer into a growing buffer: for the hot paths
 * (every request's audit event) where building a jansson tree only to
 * print it costs more than the request's token operation.
 *
 * Strings are escaped as RFC 8259 asks; a byte that is not part of valid
 * UTF-8 is written as U+FFFD, so the output is always valid JSON.  Errors
 * (out of memory) are sticky: check jw_finish() once at the end.
 */
#ifndef KW_JW_H
#define KW_JW_H

#include <stddef.h>
#include <stdint.h>

struct jw {
	char *b;
	size_t n, cap;
	int first;      /* no member written yet in the open object */
	int oom;
};

void jw_open(struct jw *w);                  /* starts "{" */
void jw_str(struct jw *w, const char *key, const char *val);      /* NULL: null */
void jw_strn(struct jw *w, const char *key, const char *val, size_t len);
void jw_int(struct jw *w, const char *key, int64_t val);
void jw_null(struct jw *w, const char *key);
void jw_bool(struct jw *w, const char *key, int val);
/* A member whose value is JSON text already (not checked). */
void jw_raw(struct jw *w, const char *key, const char *json, size_t len);
void jw_begin_obj(struct jw *w, const char *key);   /* "key":{ */
void jw_end_obj(struct jw *w);                      /* } */
/* Close the object: the malloc'd NUL-terminated text (length in *len), or
 * NULL when memory ran out (the buffer is freed then). */
char *jw_finish(struct jw *w, size_t *len);
void jw_free(struct jw *w);

/* Make the NUL-terminated text s printable, in place: each C0 control,
 * DEL and C1 control (U+0080 to U+009F), and each byte that is not part
 * of valid UTF-8 (a sequence cut by a "%.64s" or a full buffer), becomes
 * one '?'.  For a message that quotes what a client sent, on its way to
 * the client, a terminal and the audit log.  s never grows. */
void jw_printable(char *s);

#endif
