/*
 * kwslowpw.c - preloaded into keywardend by a test (LD_PRELOAD): a lookup
 * of the user whose uid KW_SLOWPW_UID names hangs, as with NSS asking a
 * directory server (LDAP, sssd) that stopped answering, while the file
 * named by KW_SLOWPW_FILE exists.  Only the first such call hangs (at most
 * 5 s); it creates KW_SLOWPW_FILE.entered as it starts, so that the test
 * knows the daemon is stuck in it.  getpwuid_r is wrapped, and so is
 * getpwnam_r for the user KW_SLOWPW_NAME names (a policy's principals are
 * looked up by name when it is loaded); every other call, and every call
 * for another user, goes to the next one (libc's, or the sanitizer's,
 * which then needs verify_asan_link_order=0).
 */
#include "config.h"

#include <dlfcn.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "tests/shim/kwhang.h"

static const char *trigger, *slow_name;
static uid_t slow_uid;
static int armed, armed_name, taken;

__attribute__((constructor)) static void
kwslowpw_init(void)
{
	const char *u = getenv("KW_SLOWPW_UID");

	trigger = getenv("KW_SLOWPW_FILE");
	slow_name = getenv("KW_SLOWPW_NAME");
	if (u != NULL && trigger != NULL) {
		slow_uid = (uid_t)strtoul(u, NULL, 10);
		armed = 1;
	}
	armed_name = slow_name != NULL && trigger != NULL;
}

/* Hang if the user is the slow one (see kwhang.h). */
static void
maybe_hang(int slow)
{
	if (slow)
		kwhang(trigger, &taken);
}

int
getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
	int (*next)(uid_t, struct passwd *, char *, size_t, struct passwd **) =
	    (int (*)(uid_t, struct passwd *, char *, size_t, struct passwd **))kwnext("getpwuid_r");

	maybe_hang(armed && uid == slow_uid);
	return next(uid, pw, buf, len, res);
}

int
getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
	int (*next)(const char *, struct passwd *, char *, size_t, struct passwd **) =
	    (int (*)(const char *, struct passwd *, char *, size_t, struct passwd **))
	    kwnext("getpwnam_r");

	maybe_hang(armed_name && strcmp(name, slow_name) == 0);
	return next(name, pw, buf, len, res);
}
