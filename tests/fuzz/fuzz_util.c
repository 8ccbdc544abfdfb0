/*
 * fuzz_util.c - helpers of the fuzzing harnesses (see fuzz.h).  Linked into
 * both the standalone programs and the libFuzzer targets.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

static char tmpdir[256];
static pid_t tmpdir_pid;

void
kwf_fail_at(const char *file, int line, const char *what)
{
	fprintf(stderr, "fuzz: %s (%s:%d)\n", what, file, line);
	abort();
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void
tmpdir_remove(void)
{
	/* Only the process that made it: a harness that forks must not have
	 * its child remove the parent's directory. */
	if (tmpdir[0] != '\0' && getpid() == tmpdir_pid)
		nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *
kwf_tmpdir(void)
{
	const char *base;

	if (tmpdir[0] != '\0')
		return tmpdir;
	base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	if (snprintf(tmpdir, sizeof(tmpdir), "%s/kwfuzz-XXXXXX", base) >= (int)sizeof(tmpdir) ||
	    mkdtemp(tmpdir) == NULL) {
		fprintf(stderr, "fuzz: cannot make a temporary directory under %s: %s\n", base,
		    strerror(errno));
		tmpdir[0] = '\0';
		return NULL;
	}
	tmpdir_pid = getpid();
	atexit(tmpdir_remove);
	return tmpdir;
}

int
kwf_write_file(const char *path, const void *data, size_t size, int mode)
{
	const char *p = data;
	int fd, rc = -1;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)) < 0)
		return -1;
	if (fchmod(fd, (mode_t)mode) != 0)
		goto out;
	while (size > 0) {
		ssize_t n = write(fd, p, size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		p += n;
		size -= (size_t)n;
	}
	rc = 0;
out:
	if (close(fd) != 0)
		rc = -1;
	return rc;
}

char *
kwf_dup_exact(const void *data, size_t size)
{
	char *p = malloc(size > 0 ? size : 1);

	if (p == NULL)
		kwf_fail("out of memory");
	if (size > 0)
		memcpy(p, data, size);
	return p;
}
