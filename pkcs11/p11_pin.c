/*
 * p11_pin.c - reading the user PIN from a file whose owner and mode are
 * checked.  The PIN never comes from argv or the environment.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "p11.h"

#define PIN_MAX 256

int
p11_pin_read(const char *path, char **pin, size_t *pinlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1, r = KW_E_INTERNAL;

	if (path == NULL || *path == '\0') {
		r = kw_fail(KW_E_PIN, "no PIN file configured: set pin_file to a "
		    "file of mode 0600 holding the user PIN");
		goto out;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY)) == -1) {
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
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		r = kw_fail(KW_E_PIN, "PIN file %s is owned by uid %u, neither "
		    "this user (%u) nor root: chown it", path,
		    (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
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
