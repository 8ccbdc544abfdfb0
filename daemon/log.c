#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <pthread.h>

#include "daemon/log.h"

static int log_level = KW_LOG_INFO;
static int log_syslog;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
	const char *name;
	int level;
} log_levels[] = {
	{ "error", KW_LOG_ERR }, { "warning", KW_LOG_WARNING },
	{ "notice", KW_LOG_NOTICE }, { "info", KW_LOG_INFO },
	{ "debug", KW_LOG_DEBUG },
};

int
log_level_parse(const char *name, int *level)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (strcasecmp(name, log_levels[i].name) == 0) {
			*level = log_levels[i].level;
			return 0;
		}
	return -1;
}

void
log_setup(int level, int use_syslog, const char *ident)
{
	log_level = level;
	log_syslog = use_syslog;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_set_level(int level)
{
	log_level = level;
}

int
log_enabled(int level)
{
	return level <= log_level;
}

void
log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	const char *lname = "info";

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_syslog) {
		syslog(level, "%s", line);
		return;
	}
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (log_levels[i].level == level)
			lname = log_levels[i].name;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ keywardend %s: %s\n",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, ts.tv_nsec / 1000000, lname, line);
	pthread_mutex_unlock(&log_lock);
}

const char *
log_quote(char *buf, size_t buflen, const char *s, size_t max)
{
	size_t o = 0, i;

	if (buflen < 3)
		return "";
	if (s == NULL) {
		snprintf(buf, buflen, "(null)");
		return buf;
	}
	buf[o++] = '"';
	for (i = 0; s[i] != '\0' && i < max && o + 6 < buflen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	if (s[i] != '\0' && o + 4 < buflen) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
