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
 *
 * The executable comes in two steps, so that the event loop never waits
 * for a file system.  identity_from_socket (on the loop, at accept) reads
 * what the kernel holds in memory: the path /proc/<pid>/exe names and the
 * device and inode of the file the process runs; that is a claim, and exe
 * stays "".  identity_exe_check (on a worker: it may wait for a file
 * server) takes the path only if, in the daemon's own mount namespace, it
 * leads to that very file.
 *
 * The names of the uid and gid come the same way, for the same reason:
 * getpwuid_r and getgrgid_r go through NSS, which may ask a directory
 * server (LDAP, sssd) and wait seconds for it.  identity_from_socket leaves
 * user and group unknown (NULL) with names_resolved 0;
 * identity_names_resolve (on a worker) looks them up.  The policy never needs them (it names users and
 * groups by the ids it resolved when it was loaded); whoami, the audit
 * event and a denial's message do, so nothing is reported or decided for a
 * connection until its names are resolved (daemon/server.c).
 */
#ifndef KW_IDENTITY_H
#define KW_IDENTITY_H

#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What a connection learnt of its peer that is too large to copy into
 * each request: its supplementary groups and the names of its user and
 * group.
 *
 * The groups, every one of them (up to the kernel's NGROUPS_MAX, 65536:
 * 256 KiB), as SO_PEERGROUPS reported them at accept.  Why all of them, on
 * the heap, shared: whoami lists them all, and the
 * policy may name any group, also after a reload that names groups the
 * policy in force at accept did not (keeping only the groups the policy
 * names would have to mark them unknown on every reload, or let a new
 * deny rule be escaped).  A fixed array in struct peer_identity would cap
 * the count again (a caller over the cap had to be taken as having unknown
 * groups) or make every copy of it large.
 *
 * The names whole, whatever their length (up to what kw_nss.h reads of an
 * entry): a directory server's may be long (sssd's user@domain), and a
 * name cut short in whoami, an audit event or a denial is another name.
 *
 * So this is made at accept with the groups, sorted in ascending order (as
 * policy_decide wants them), and once more by the worker that looks the
 * names up (the same groups, and the names); never changed once made, and
 * shared by reference: the connection and each of its requests in flight
 * (which may outlive it) hold one (identity_copy, identity_clear).  Per
 * request that is one atomic add and one subtract, whatever the count and
 * the names' length. */
struct peer_shared {
	atomic_uint refs;
	const char *user;                 /* NULL: unknown (not looked up yet, no name, or */
	const char *group;                /* the lookup failed); in this allocation */
	int groups_known;                 /* 0: the groups could not be read (ngroups 0) */
	size_t ngroups;
	gid_t groups[];                   /* ascending (policy_groups_sort); the names follow */
};

struct peer_identity {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	struct peer_shared *shared;       /* NULL: groups and names unknown; a reference */
	int names_resolved;               /* user and group were looked up */
	char exe[PATH_MAX];               /* "" if unknown or not checked yet */
	char unit[256];                   /* "" if unknown or not in a unit */
	uint64_t start_ticks;             /* process start time (boot clock ticks) */
};

/* id's user and group names, or NULL when unknown; valid as long as id
 * holds its reference. */
static inline const char *
identity_user(const struct peer_identity *id)
{
	return id->shared != NULL ? id->shared->user : NULL;
}

static inline const char *
identity_group(const struct peer_identity *id)
{
	return id->shared != NULL ? id->shared->group : NULL;
}

/* The executable a process ran when its connection was accepted, not yet
 * checked: the path /proc/<pid>/exe named, and the file it ran. */
struct peer_exe_claim {
	char *path;                       /* malloc'd; NULL: no claim, the exe is unknown */
	uint32_t dev_major, dev_minor;
	uint64_t ino;
};

/* The current time in the clock of /proc/<pid>/stat's start time. */
uint64_t identity_now_ticks(void);

/* Fill *out for the peer of the connected Unix socket fd, first seen at
 * seen_ticks (the caller drops it with identity_clear), and *claim with its
 * executable, to be checked (the caller frees it with
 * identity_exe_claim_clear); out->exe is left "", user and group
 * unknown (names_resolved 0).  Groups that cannot be read (out of memory included)
 * are unknown.  Reads nothing from a file system but /proc, asks no name
 * service.  Returns 0 or -errno (only when SO_PEERCRED itself fails); *out
 * and *claim are written only on success. */
int identity_from_socket(int fd, uint64_t seen_ticks, struct peer_identity *out,
    struct peer_exe_claim *claim);

/* *to becomes a copy of *from, with a reference of its own to the groups
 * and names.
 * Any thread; *from must stay valid during the call. */
void identity_copy(struct peer_identity *to, const struct peer_identity *from);

/* Drop id's reference to its groups and names (freed with the last one);
 * they become unknown.  NULL and a zeroed identity are accepted. */
void identity_clear(struct peer_identity *id);

/* Look up the names of id's uid and gid, whatever the size of their
 * entries (up to KWNSS_BUF_MAX, kw_nss.h), and keep them whole, with id's
 * groups, in a new id->shared: unknown (NULL) for one that cannot be had;
 * names_resolved becomes 1.  *user_err and *group_err say why one is
 * unknown: 0 (it is known), -ENOENT (there is no such entry), or what the
 * lookup failed with (kw_nss.h: -ERANGE, -ENOMEM, or the name service's
 * -errno), -ENOMEM also when memory ran out to keep it.  Logs nothing.
 * Blocks for as long as NSS does. */
void identity_names_resolve(struct peer_identity *id, int *user_err, int *group_err);

/* to, the same peer as from, takes from's names (and so its groups, which
 * are to's): a reference of its own to from's, and names_resolved.  Any
 * thread; *from must stay valid during the call. */
void identity_names_copy(struct peer_identity *to, const struct peer_identity *from);

/* Check claim against the file system: id->exe becomes claim's path if it
 * leads to the file the process ran, "" otherwise (also for no claim).
 * Blocks for as long as a stat of that path does. */
void identity_exe_check(const struct peer_exe_claim *claim, struct peer_identity *id);

/* *to becomes a copy of from (no claim if from is NULL or has none).  0,
 * or -ENOMEM (and *to is left unchanged). */
int identity_exe_claim_copy(struct peer_exe_claim *to, const struct peer_exe_claim *from);

/* Free claim's path and leave no claim; NULL is accepted. */
void identity_exe_claim_clear(struct peer_exe_claim *claim);

#endif
