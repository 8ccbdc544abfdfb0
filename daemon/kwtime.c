/*
 * kwtime.c - the daemon's clock and its RFC 3339 timestamps.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon/kwtime.h"

uint64_t
kwd_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static char *
put_digits(char *p, unsigned long v, int n)
{
	for (int i = n - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
	return p + n;
}

/* RFC 3339 UTC with microseconds.  Written by hand (days to a civil date as
 * in H. Hinnant's "chrono-compatible low-level date algorithms"): it runs
 * several times per request, and gmtime_r takes glibc's time-zone lock. */
const char *
kwd_time_str(char *buf, size_t len, int64_t us)
{
	int64_t s = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
	int64_t frac = us - s * 1000000;
	int64_t days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
	int64_t sod = s - days * 86400;
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;
	char tmp[32], *p = tmp;

	if (m <= 2)
		y++;
	if (y < 0 || y > 9999) {
		snprintf(buf, len, "%s", y < 0 ? "0000-01-01T00:00:00.000000Z" :
		    "9999-12-31T23:59:59.999999Z");
		return buf;
	}
	p = put_digits(p, (unsigned long)y, 4);
	*p++ = '-';
	p = put_digits(p, (unsigned long)m, 2);
	*p++ = '-';
	p = put_digits(p, (unsigned long)d, 2);
	*p++ = 'T';
	p = put_digits(p, (unsigned long)(sod / 3600), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned long)(sod / 60 % 60), 2);
	*p++ = ':';
	p = put_digits(p, (unsigned long)(sod % 60), 2);
	*p++ = '.';
	p = put_digits(p, (unsigned long)frac, 6);
	*p++ = 'Z';
	if (len > 0) {
		size_t n = (size_t)(p - tmp);

		if (n >= len)
			n = len - 1;
		memcpy(buf, tmp, n);
		buf[n] = '\0';
	}
	return buf;
}

int
kwd_time_parse(const char *s, int64_t *us)
{
	struct tm tm;
	const char *p;
	int64_t frac = 0, scale = 1000000, off = 0, secs;
	int year, mon, day, hh, mm, ss, n = 0;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &day, &hh, &mm, &ss, &n) != 6 ||
	    n != 19)
		return -EINVAL;
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 ||
	    year < 1970 || year > 9999)
		return -EINVAL;
	p = s + n;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		while (*p >= '0' && *p <= '9') {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
			p++;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || strlen(p) != 6 || oh > 23 || om > 59)
			return -EINVAL;
		off = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	secs = (int64_t)timegm(&tm) - off;
	*us = secs * 1000000 + frac;
	return 0;
}
