/*
 * kwhang.h - the hang the test libraries kwslowstat.c and kwslowpw.c put
 * into a daemon's call, as a server that stopped answering would: while
 * the file trigger exists, the first call that asks (the first
 * KW_HANG_COUNT calls, if that is set) hangs until the file is removed (at
 * most 5 s).  The first creates "<trigger>.entered" as it starts, the n-th
 * "<trigger>.entered.n", so that the test knows the daemon is stuck in
 * them.  *taken counts the calls that hung.  And kwnext, how both find the
 * call they wrap.
 */
#ifndef KW_HANG_H
#define KW_HANG_H

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void
kwhang(const char *trigger, int *taken)
{
	char entered[4096];
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	const char *count = getenv("KW_HANG_COUNT");
	int fd, n, max = count != NULL ? atoi(count) : 1;

	if (trigger == NULL || access(trigger, F_OK) != 0 ||
	    (n = __atomic_add_fetch(taken, 1, __ATOMIC_ACQ_REL)) > max)
		return;
	if (n == 1)
		snprintf(entered, sizeof(entered), "%s.entered", trigger);
	else
		snprintf(entered, sizeof(entered), "%s.entered.%d", trigger, n);
	if ((fd = open(entered, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0)
		close(fd);
	for (int i = 0; i < 500 && access(trigger, F_OK) == 0; i++)
		nanosleep(&tick, NULL);
}

/* The next definition of sym (libc's, or the sanitizer's), which must
 * exist. */
static void *
kwnext(const char *sym)
{
	void *f = dlsym(RTLD_NEXT, sym);

	if (f == NULL)
		abort();
	return f;
}

#endif
