/*
 * kwslowstat.c - preloaded into keywardend by a test (LD_PRELOAD): a stat
 * of the path named by KW_SLOWSTAT_PATH hangs, as on a file server that
 * stopped answering, while the file named by KW_SLOWSTAT_FILE exists.
 * Only the first such call hangs (at most 5 s); it creates
 * KW_SLOWSTAT_FILE.entered as it starts, so that the test knows the daemon
 * is stuck in it.  stat, stat64 and statx are wrapped; every other call,
 * and every call for another path, goes to the next one (libc's, or the
 * sanitizer's, which then needs verify_asan_link_order=0).
 */
#include "config.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/shim/kwhang.h"

static const char *slow_path, *trigger;
static int taken;

__attribute__((constructor)) static void
kwslowstat_init(void)
{
	slow_path = getenv("KW_SLOWSTAT_PATH");
	trigger = getenv("KW_SLOWSTAT_FILE");
}

/* Hang if path is the slow one (see kwhang.h). */
static void
maybe_hang(const char *path)
{
	if (slow_path != NULL && path != NULL && strcmp(path, slow_path) == 0)
		kwhang(trigger, &taken);
}

int
stat(const char *restrict path, struct stat *restrict st)
{
	int (*next)(const char *, struct stat *) =
	    (int (*)(const char *, struct stat *))kwnext("stat");

	maybe_hang(path);
	return next(path, st);
}

int
stat64(const char *restrict path, struct stat64 *restrict st)
{
	int (*next)(const char *, struct stat64 *) =
	    (int (*)(const char *, struct stat64 *))kwnext("stat64");

	maybe_hang(path);
	return next(path, st);
}

int
statx(int dirfd, const char *restrict path, int flags, unsigned int mask,
    struct statx *restrict stx)
{
	int (*next)(int, const char *, int, unsigned int, struct statx *) =
	    (int (*)(int, const char *, int, unsigned int, struct statx *))kwnext("statx");

	maybe_hang(path);
	return next(dirfd, path, flags, mask, stx);
}
