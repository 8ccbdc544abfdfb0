/*
 * kwtime.h - the daemon's clock and its RFC 3339 timestamps.
 */
#ifndef KW_KWTIME_H
#define KW_KWTIME_H

#include <stddef.h>
#include <stdint.h>

/* Microseconds since the epoch (CLOCK_REALTIME). */
uint64_t kwd_now_us(void);
/* us as "YYYY-MM-DDThh:mm:ss.uuuuuuZ" in buf (30 bytes suffice). */
const char *kwd_time_str(char *buf, size_t len, int64_t us);
/* Parse RFC 3339 (with Z or an offset; 1970..9999) into microseconds. */
int kwd_time_parse(const char *s, int64_t *us);

#endif
