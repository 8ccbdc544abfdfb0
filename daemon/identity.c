#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-login.h>

#include "kw_nss.h"
#include "policy/policy.h"
#include "daemon/identity.h"

uint64_t
identity_now_ticks(void)
{
	struct timespec ts;
	long hz = sysconf(_SC_CLK_TCK);

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * (uint64_t)hz +
	    (uint64_t)ts.tv_nsec / (1000000000ULL / (uint64_t)hz);
}

/* Field 22 of /proc/<pid>/stat, parsed after the last ')' since the command
 * name may hold spaces and parentheses. */
static int
identity_start_ticks(pid_t pid, uint64_t *out)
{
	char path[64], buf[1024], *p;
	int fd, field;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return -EIO;
	/* after ") " comes field 3 (state) */
	for (field = 3, p += 2; *p != '\0' && field < 22; p++)
		if (*p == ' ')
			field++;
	if (field != 22)
		return -EIO;
	*out = strtoull(p, NULL, 10);
	return 0;
}

void
identity_copy(struct peer_identity *to, const struct peer_identity *from)
{
	*to = *from;
	if (to->shared != NULL)
		atomic_fetch_add_explicit(&to->shared->refs, 1, memory_order_relaxed);
}

void
identity_clear(struct peer_identity *id)
{
	if (id == NULL || id->shared == NULL)
		return;
	if (atomic_fetch_sub_explicit(&id->shared->refs, 1, memory_order_acq_rel) == 1)
		free(id->shared);
	id->shared = NULL;
}

void
identity_names_copy(struct peer_identity *to, const struct peer_identity *from)
{
	struct peer_shared *s = from->shared;

	if (s != to->shared) {
		if (s != NULL)
			atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
		identity_clear(to);
		to->shared = s;
	}
	to->names_resolved = from->names_resolved;
}

/* The supplementary groups of fd's peer, sorted as the policy wants them
 * (policy_groups_sort), or NULL (unknown).  When they do not fit the first
 * buffer, the kernel says how much room they need (ERANGE, the size in
 * glen).  It reports the credentials of connect time, which do not change,
 * so one retry at that size is enough; a second is allowed, no more, and
 * never more room than NGROUPS_MAX groups. */
static struct peer_shared *
identity_groups(int fd)
{
	gid_t first[64];
	socklen_t glen = sizeof(first);
	struct peer_shared *g = NULL;
	int e = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, first, &glen) != 0)
		e = errno;
	for (int tries = 0; e == ERANGE && tries < 2; tries++) {
		free(g);
		if (glen <= sizeof(first) || glen > NGROUPS_MAX * sizeof(gid_t) ||
		    (g = malloc(sizeof(*g) + glen)) == NULL)
			return NULL;
		e = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g->groups, &glen) != 0 ? errno : 0;
	}
	if (e != 0) {
		free(g);
		return NULL;
	}
	if (g == NULL) {
		if ((g = malloc(sizeof(*g) + glen)) == NULL)
			return NULL;
		memcpy(g->groups, first, glen);
	}
	atomic_init(&g->refs, 1);
	g->user = g->group = NULL;
	g->groups_known = 1;
	g->ngroups = glen / sizeof(gid_t);
	/* Once per connection, so that each decision finds a group by binary
	 * search.  The kernel keeps a process's groups sorted already, but
	 * does not promise it. */
	policy_groups_sort(g->groups, g->ngroups);
	return g;
}

/* A copy of old's groups (none known if old is NULL) with the names user
 * and group (either may be NULL), or NULL when memory runs out. */
static struct peer_shared *
identity_shared_named(const struct peer_shared *old, const char *user, const char *group)
{
	size_t ng = old != NULL ? old->ngroups : 0;
	size_t ul = user != NULL ? strlen(user) + 1 : 0, gl = group != NULL ? strlen(group) + 1 : 0;
	struct peer_shared *s = malloc(sizeof(*s) + ng * sizeof(gid_t) + ul + gl);
	char *p;

	if (s == NULL)
		return NULL;
	atomic_init(&s->refs, 1);
	s->groups_known = old != NULL && old->groups_known;
	s->ngroups = ng;
	if (ng > 0)
		memcpy(s->groups, old->groups, ng * sizeof(gid_t));
	p = (char *)(s->groups + ng);
	s->user = user != NULL ? memcpy(p, user, ul) : NULL;
	s->group = group != NULL ? memcpy(p + ul, group, gl) : NULL;
	return s;
}

void
identity_names_resolve(struct peer_identity *id, int *user_err, int *group_err)
{
	struct peer_shared *s;
	struct passwd pw;
	struct group gr;
	char *buf = NULL, *user = NULL;
	size_t len = 0;
	int ue, ge;

	/* The user's name out of buf, which the group's lookup reuses. */
	if ((ue = kwnss_pw_uid(id->uid, &pw, &buf, &len)) == 0 &&
	    (user = strdup(pw.pw_name)) == NULL)
		ue = -ENOMEM;
	if ((ge = kwnss_gr_gid(id->gid, &gr, &buf, &len)) != 0)
		gr.gr_name = NULL;
	/* Out of memory for them: both unknown, as a failed lookup. */
	if ((s = identity_shared_named(id->shared, user, gr.gr_name)) != NULL) {
		identity_clear(id);
		id->shared = s;
	} else {
		ue = ue == 0 ? -ENOMEM : ue;
		ge = ge == 0 ? -ENOMEM : ge;
	}
	free(user);
	free(buf);
	id->names_resolved = 1;
	*user_err = ue;
	*group_err = ge;
}

int
identity_from_socket(int fd, uint64_t seen_ticks, struct peer_identity *out,
    struct peer_exe_claim *claim)
{
	struct peer_identity id;
	struct peer_exe_claim cl = { NULL, 0, 0, 0 };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uint64_t t0 = 0, t1 = 0;
	char path[64];
	ssize_t n;

	memset(&id, 0, sizeof(id));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return -errno;
	id.pid = cred.pid;
	id.uid = cred.uid;
	id.gid = cred.gid;
	id.shared = identity_groups(fd);
	/* The names are looked up on a worker (identity_names_resolve). */

	/* The /proc facts, only for a process that existed when we first saw
	 * the connection and did not change under us while we read. */
	if (id.pid > 0 && identity_start_ticks(id.pid, &t0) == 0 && t0 <= seen_ticks + 1) {
		char exe[sizeof(id.exe)];
		char *unit = NULL;
		struct statx running;

		snprintf(path, sizeof(path), "/proc/%d/exe", (int)id.pid);
		n = readlink(path, exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			/* A replaced or deleted binary is not the one a rule
			 * names.  The file the process runs, its device and
			 * inode, as the kernel holds them: AT_STATX_DONT_SYNC
			 * and only STATX_INO, so that a file system behind a
			 * server (NFS, CIFS, FUSE) answers from memory rather
			 * than ask a server that may not answer. */
			if (strstr(exe, " (deleted)") != NULL ||
			    statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, STATX_INO, &running) != 0 ||
			    !(running.stx_mask & STATX_INO))
				n = 0;
		}
		if (sd_pid_get_unit(id.pid, &unit) < 0) {
			free(unit);
			unit = NULL;
			(void)sd_pid_get_user_unit(id.pid, &unit);
		}
		if (identity_start_ticks(id.pid, &t1) == 0 && t1 == t0) {
			/* Out of memory for the path: no claim, the
			 * executable is unknown. */
			if (n > 0 && (cl.path = strdup(exe)) != NULL) {
				cl.dev_major = running.stx_dev_major;
				cl.dev_minor = running.stx_dev_minor;
				cl.ino = running.stx_ino;
			}
			if (unit != NULL)
				snprintf(id.unit, sizeof(id.unit), "%s", unit);
			id.start_ticks = t0;
		}
		free(unit);
	}
	*out = id;
	*claim = cl;
	return 0;
}

void
identity_exe_check(const struct peer_exe_claim *claim, struct peer_identity *id)
{
	struct statx named;

	id->exe[0] = '\0';
	if (claim == NULL || claim->path == NULL || strlen(claim->path) >= sizeof(id->exe))
		return;
	/* Not a file that only has that path in the caller's own mount
	 * namespace (an unprivileged user namespace can bind-mount anything
	 * over a path): the path must lead here to the very file the
	 * process ran, the same device and inode. */
	if (statx(AT_FDCWD, claim->path, 0, STATX_INO, &named) == 0 &&
	    (named.stx_mask & STATX_INO) && named.stx_dev_major == claim->dev_major &&
	    named.stx_dev_minor == claim->dev_minor && named.stx_ino == claim->ino)
		snprintf(id->exe, sizeof(id->exe), "%s", claim->path);
}

int
identity_exe_claim_copy(struct peer_exe_claim *to, const struct peer_exe_claim *from)
{
	struct peer_exe_claim cl = { NULL, 0, 0, 0 };

	if (from != NULL && from->path != NULL) {
		if ((cl.path = strdup(from->path)) == NULL)
			return -ENOMEM;
		cl.dev_major = from->dev_major;
		cl.dev_minor = from->dev_minor;
		cl.ino = from->ino;
	}
	*to = cl;
	return 0;
}

void
identity_exe_claim_clear(struct peer_exe_claim *claim)
{
	if (claim == NULL)
		return;
	free(claim->path);
	claim->path = NULL;
}
