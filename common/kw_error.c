#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kw_error.h"

static const char *const kw_names[] = {
	[0] = "internal error",
	[1] = "PKCS#11 call failed",
	[2] = "token unavailable",
	[3] = "PIN rejected",
	[4] = "mechanism not supported by the token",
	[5] = "master key not found",
	[6] = "master key already exists",
	[7] = "authentication failed",
	[8] = "malformed data",
	[9] = "invalid configuration",
	[10] = "invalid policy",
	[11] = "permission denied by policy",
	[12] = "not found",
	[13] = "conflict",
	[14] = "store failure",
	[15] = "audit log unavailable",
	[16] = "service unavailable",
	[17] = "too large",
	[18] = "protocol error",
	[19] = "master key version retired",
};

static _Thread_local struct {
	int code;
	char msg[1024];
} kw_detail;

const char *
kw_strerror(int code)
{
	static _Thread_local char buf[64];

	if (code == 0)
		return "success";
	if (code <= -KW_E_BASE && code > KW_E_LAST) {
		size_t i = (size_t)(-code - KW_E_BASE);
		if (i < sizeof(kw_names) / sizeof(kw_names[0]) && kw_names[i])
			return kw_names[i];
	}
	if (code < 0 && code > -KW_E_BASE) {
		/* strerror_r (GNU) may return a static string or fill buf. */
		return strerror_r(-code, buf, sizeof(buf));
	}
	snprintf(buf, sizeof(buf), "unknown error %d", code);
	return buf;
}

int
kw_fail(int code, const char *fmt, ...)
{
	va_list ap;

	if (code >= 0)
		code = KW_E_INTERNAL;
	kw_detail.code = code;
	va_start(ap, fmt);
	vsnprintf(kw_detail.msg, sizeof(kw_detail.msg), fmt, ap);
	va_end(ap);
	return code;
}

const char *
kw_errdetail(int code)
{
	if (kw_detail.code == code && kw_detail.msg[0] != '\0')
		return kw_detail.msg;
	return kw_strerror(code);
}

void
kw_errclear(void)
{
	kw_detail.code = 0;
	kw_detail.msg[0] = '\0';
}
