/*
 * kwslowpw.c - preloaded into keywardend by a test (LD_PRELOAD): a lookup
 * of the user whose uid KW_SLOWPW_UID names hangs, as with NSS asking a
 * directory server (LDAP, sssd) that stopped answering, while the file
 * named by KW_SLOWPW_FILE exists.  Only the first such call hangs (at most
 * 5 s); it creates KW_SLOWPW_FILE.entered as it starts, so that the test
 * knows the daemon is stuck in it.  getpwuid_r is wrapped; every other
 * call, and every call for another uid, goes to the next one (libc's, or
 * the sanitizer's, which then needs verify_asan_link_order=0).
 */
#include "config.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *trigger;
static uid_t slow_uid;
static int armed, taken;

__attribute__((constructor)) static void
kwslowpw_init(void)
{
	const char *u = getenv("KW_SLOWPW_UID");

	trigger = getenv("KW_SLOWPW_FILE");
	if (u != NULL && trigger != NULL) {
		slow_uid = (uid_t)strtoul(u, NULL, 10);
		armed = 1;
	}
}

/* Hang if uid is the slow one, the trigger exists and no call hung yet. */
static void
maybe_hang(uid_t uid)
{
	char entered[4096];
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	int fd;

	if (!armed || uid != slow_uid || access(trigger, F_OK) != 0 ||
	    __atomic_exchange_n(&taken, 1, __ATOMIC_ACQ_REL))
		return;
	snprintf(entered, sizeof(entered), "%s.entered", trigger);
	if ((fd = open(entered, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0)
		close(fd);
	for (int i = 0; i < 500 && access(trigger, F_OK) == 0; i++)
		nanosleep(&tick, NULL);
}

int
getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
	int (*next)(uid_t, struct passwd *, char *, size_t, struct passwd **) =
	    (int (*)(uid_t, struct passwd *, char *, size_t, struct passwd **))
	    dlsym(RTLD_NEXT, "getpwuid_r");

	if (next == NULL)
		abort();
	maybe_hang(uid);
	return next(uid, pw, buf, len, res);
}
