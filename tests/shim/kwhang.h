/*
 * kwhang.h - the hang the test libraries kwslowstat.c and kwslowpw.c put
 * into a daemon's call, as a server that stopped answering would: while
 * the file trigger exists, the first call that asks hangs until the file
 * is removed (at most 5 s).  It creates "<trigger>.entered" as it starts,
 * so that the test knows the daemon is stuck in it.  *taken marks that a
 * call hung already.
 */
#ifndef KW_HANG_H
#define KW_HANG_H

#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void
kwhang(const char *trigger, int *taken)
{
	char entered[4096];
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	int fd;

	if (trigger == NULL || access(trigger, F_OK) != 0 ||
	    __atomic_exchange_n(taken, 1, __ATOMIC_ACQ_REL))
		return;
	snprintf(entered, sizeof(entered), "%s.entered", trigger);
	if ((fd = open(entered, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0)
		close(fd);
	for (int i = 0; i < 500 && access(trigger, F_OK) == 0; i++)
		nanosleep(&tick, NULL);
}

#endif
