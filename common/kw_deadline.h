/*
 * kw_deadline.h - an absolute CLOCK_REALTIME deadline, ms from now, for
 * the calls that take one (pthread_mutex_timedlock, pthread_timedjoin_np).
 */
#ifndef KW_DEADLINE_H
#define KW_DEADLINE_H

#include <time.h>

static inline void
kw_deadline_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

#endif
