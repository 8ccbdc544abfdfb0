/*
 * identity.h - who is on the other end of a Unix socket, as the kernel says.
 *
 * From the socket: SO_PEERCRED (pid, uid, gid) and SO_PEERGROUPS.  From
 * /proc/<pid>: the executable and, through libsystemd, the systemd unit.
 * Guarded against PID reuse: the /proc facts are taken only if the process
 * at that pid started no later than the moment the connection was first
 * seen, and its start time is the same before and after they are read;
 * otherwise they are left unknown.  What cannot be determined never matches
 * a rule.  Nothing a client sends is taken into account.
 */
#ifndef KW_IDENTITY_H
#define KW_IDENTITY_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define IDENTITY_MAX_GROUPS 64

struct peer_identity {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int ngroups;                      /* -1: unknown */
	gid_t groups[IDENTITY_MAX_GROUPS];
	char user[64];                    /* "" if the uid has no name */
	char group[64];
	char exe[PATH_MAX];               /* "" if unknown */
	char unit[256];                   /* "" if unknown or not in a unit */
	uint64_t start_ticks;             /* process start time (boot clock ticks) */
};

/* The current time in the clock of /proc/<pid>/stat's start time. */
uint64_t identity_now_ticks(void);

/* Fill *out for the peer of the connected Unix socket fd, first seen at
 * seen_ticks.  Returns 0 or -errno (only when SO_PEERCRED itself fails). */
int identity_from_socket(int fd, uint64_t seen_ticks, struct peer_identity *out);

#endif
