/*
 * log.h - the daemon's log: stderr (default) or syslog.  Only daemon/ logs;
 * the layers below leave a detail in kw_errdetail() for it.  Never pass a
 * secret (PIN, key, value) to these functions.  Thread-safe.
 */
#ifndef KW_LOG_H
#define KW_LOG_H

#include <syslog.h>

enum kw_log_level {
	KW_LOG_ERR = LOG_ERR,
	KW_LOG_WARNING = LOG_WARNING,
	KW_LOG_NOTICE = LOG_NOTICE,
	KW_LOG_INFO = LOG_INFO,
	KW_LOG_DEBUG = LOG_DEBUG,
};

/* level names: "error", "warning", "notice", "info", "debug" */
int log_level_parse(const char *name, int *level);
void log_setup(int level, int use_syslog, const char *ident);
void log_set_level(int level);
int log_enabled(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(KW_LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(KW_LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(KW_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(KW_LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(KW_LOG_DEBUG)) log_msg(KW_LOG_DEBUG, __VA_ARGS__); } while (0)

/* Copy at most max bytes of an untrusted string into buf (size >= max*4+3)
 * as a quoted, escaped, printable form: "abc\x01..." (clamped and quoted). */
const char *log_quote(char *buf, size_t buflen, const char *s, size_t max);

#endif
