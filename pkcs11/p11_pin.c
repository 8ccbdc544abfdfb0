/*
 * p11_pin.c - reading the user PIN from a file whose owner, mode and links,
 * and whose directory, are checked.  The PIN never comes from argv or the
 * environment.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "p11.h"

#define PIN_MAX 256

/* Open the directory that holds path and check it for a daemon running as
 * uid: whoever may write it
 * could put a file of theirs under the PIN file's name (unless the sticky
 * bit keeps them to their own files), and its owner always can.  *base
 * gets the file's name within it.  0 and the descriptor in *out, or
 * KW_E_PIN. */
static int
pin_dir_open(const char *path, uid_t uid, const char **base, int *out)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	struct stat st;
	size_t n;
	int fd;

	if (slash == NULL) {
		snprintf(dir, sizeof(dir), ".");
		*base = path;
	} else {
		n = slash == path ? 1 : (size_t)(slash - path);
		if (n >= sizeof(dir))
			return kw_fail(KW_E_PIN, "PIN file %s: the path is too long", path);
		memcpy(dir, path, n);
		dir[n] = '\0';
		*base = slash + 1;
	}
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return kw_fail(KW_E_PIN, "PIN file %s: cannot open its directory %s: %s",
		    path, dir, strerror(errno));
	if (fstat(fd, &st) == -1) {
		close(fd);
		return kw_fail(KW_E_PIN, "PIN file %s: directory %s: %s", path, dir,
		    strerror(errno));
	}
	if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
		close(fd);
		return kw_fail(KW_E_PIN, "PIN file %s: its directory %s is writable by "
		    "%s (mode %04o) without the sticky bit: others could put a file of "
		    "theirs in its place; chmod go-w %s", path, dir,
		    (st.st_mode & 002) ? "every user" : "its group",
		    (unsigned)(st.st_mode & 07777), dir);
	}
	if (st.st_uid != uid && st.st_uid != 0) {
		close(fd);
		return kw_fail(KW_E_PIN, "PIN file %s: its directory %s is owned by uid "
		    "%u, neither the daemon's user (uid %u) nor root, who could put a "
		    "file of theirs in its place: chown it", path, dir, (unsigned)st.st_uid,
		    (unsigned)uid);
	}
	*out = fd;
	return 0;
}

/* Open path, in the directory that was checked, and check the file, for a
 * daemon running as uid: 0 and the descriptor in *out, or KW_E_PIN. */
static int
pin_open(const char *path, uid_t uid, int *out)
{
	struct stat st;
	const char *base = NULL;
	int dfd = -1, fd = -1, r = KW_E_INTERNAL;

	if (path == NULL || *path == '\0') {
		r = kw_fail(KW_E_PIN, "no PIN file configured: set pin_file to a "
		    "file of mode 0600 holding the user PIN");
		goto out;
	}
	if ((r = pin_dir_open(path, uid, &base, &dfd)) != 0)
		goto out;
	if ((fd = openat(dfd, base, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY)) == -1) {
		r = kw_fail(KW_E_PIN, "PIN file %s: cannot open: %s", path,
		    strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == -1) {
		r = kw_fail(KW_E_PIN, "PIN file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = kw_fail(KW_E_PIN, "PIN file %s is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		r = kw_fail(KW_E_PIN, "PIN file %s has mode %04o: others may "
		    "read it; chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if (st.st_uid != uid && st.st_uid != 0) {
		r = kw_fail(KW_E_PIN, "PIN file %s is owned by uid %u, neither "
		    "the daemon's user (uid %u) nor root: chown it", path,
		    (unsigned)st.st_uid, (unsigned)uid);
		goto out;
	}
	/* A second name is a way to the file through a directory nobody
	 * checked, and keeps the PIN when this one is replaced or removed. */
	if (st.st_nlink != 1) {
		r = kw_fail(KW_E_PIN, "PIN file %s has %lu hard links: it must have "
		    "one name only; give the PIN a file of its own", path,
		    (unsigned long)st.st_nlink);
		goto out;
	}
	*out = fd;
	fd = -1;        /* handed to the caller */
	r = 0;
out:
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	return r;
}

int
p11_pin_check(const char *path, uid_t uid)
{
	struct stat st;
	int fd = -1, r;

	if ((r = pin_open(path, uid, &fd)) != 0)
		return r;
	/* Checked by root for another user: a file of root's (mode 0600, as
	 * the mode check demands) passes, but that user will not be able to
	 * open it. */
	if (uid != 0 && uid != geteuid() && fstat(fd, &st) == 0 && st.st_uid == 0)
		r = kw_fail(KW_E_PIN, "PIN file %s belongs to root (mode %04o): the daemon's "
		    "user (uid %u) cannot read it; chown it to that user", path,
		    (unsigned)(st.st_mode & 07777), (unsigned)uid);
	close(fd);
	return r;
}

int
p11_pin_read(const char *path, char **pin, size_t *pinlen)
{
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1, r;

	if ((r = pin_open(path, geteuid(), &fd)) != 0)
		goto out;
	if ((buf = kw_secalloc(PIN_MAX + 1)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	while (len < PIN_MAX) {
		n = read(fd, buf + len, PIN_MAX - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			r = kw_fail(KW_E_PIN, "PIN file %s: read: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len == PIN_MAX) {
		r = kw_fail(KW_E_PIN, "PIN file %s is longer than %d bytes",
		    path, PIN_MAX - 1);
		goto out;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (len == 0) {
		r = kw_fail(KW_E_PIN, "PIN file %s is empty: write the user "
		    "PIN into it", path);
		goto out;
	}
	*pin = buf;
	*pinlen = len;
	buf = NULL;     /* handed to the caller */
	r = 0;
out:
	kw_secfree(buf);
	if (fd != -1)
		close(fd);
	return r;
}
