#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/kwtest.h"

const char *
kwt_require(const char *envname)
{
	const char *v = getenv(envname);

	if (v == NULL || *v == '\0' || strcmp(v, "no") == 0) {
		fprintf(stderr, "FATAL: %s is not set or the tool is missing: "
		    "run ./scripts/install-deps, then configure again\n", envname);
		exit(99);   /* automake: hard error, not a skip */
	}
	return v;
}

int
kwt_tmpdir(char *buf, size_t len, const char *prefix)
{
	const char *t = getenv("TMPDIR");

	if (t == NULL || *t == '\0')
		t = "/tmp";
	if ((size_t)snprintf(buf, len, "%s/%s.XXXXXX", t, prefix) >= len)
		return -1;
	if (mkdtemp(buf) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", buf, strerror(errno));
		return -1;
	}
	return 0;
}

static int
kwt_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

void
kwt_rmtree(const char *path)
{
	if (path != NULL && *path != '\0' && getenv("KWT_KEEP") == NULL)
		nftw(path, kwt_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
kwt_write_file(const char *path, const char *content, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	size_t n = strlen(content);

	if (fd < 0)
		return -1;
	if (write(fd, content, n) != (ssize_t)n || fchmod(fd, (mode_t)mode) != 0) {
		close(fd);
		return -1;
	}
	return close(fd);
}

int
kwt_run(char *const argv[], char *out, size_t outlen)
{
	int p[2], status;
	pid_t pid;
	size_t got = 0;

	if (pipe(p) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		dup2(devnull, 0);
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		char sink[512];
		char *dst = (out != NULL && got + 1 < outlen) ? out + got : sink;
		size_t room = (out != NULL && got + 1 < outlen) ? outlen - 1 - got : sizeof(sink);
		ssize_t r = read(p[0], dst, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (dst != sink)
			got += (size_t)r;
	}
	close(p[0]);
	if (out != NULL && outlen > 0)
		out[got] = '\0';
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int
kwt_token_new(struct kwt_token *t, const char *label)
{
	char tokdir[300], conf[700], out[4096];
	const char *util = kwt_require("SOFTHSM2_UTIL");
	const char *module = kwt_require("SOFTHSM2_MODULE");
	char *p;

	memset(t, 0, sizeof(*t));
	if (kwt_tmpdir(t->dir, sizeof(t->dir), "kwtest-token") != 0)
		return -1;
	snprintf(t->conf, sizeof(t->conf), "%s/softhsm2.conf", t->dir);
	snprintf(t->pin_file, sizeof(t->pin_file), "%s/pin", t->dir);
	snprintf(tokdir, sizeof(tokdir), "%s/tokens", t->dir);
	snprintf(t->label, sizeof(t->label), "%s", label);
	snprintf(t->module, sizeof(t->module), "%s", module);
	if (mkdir(tokdir, 0700) != 0)
		goto fail;
	snprintf(conf, sizeof(conf),
	    "directories.tokendir = %s\nobjectstore.backend = file\n"
	    "log.level = ERROR\nslots.removable = false\n", tokdir);
	if (kwt_write_file(t->conf, conf, 0600) != 0 ||
	    kwt_write_file(t->pin_file, KWT_USER_PIN "\n", 0600) != 0)
		goto fail;
	setenv("SOFTHSM2_CONF", t->conf, 1);
	{
		char *argv[] = { (char *)util, "--init-token", "--free",
		    "--label", t->label, "--so-pin", KWT_SO_PIN,
		    "--pin", KWT_USER_PIN, NULL };
		if (kwt_run(argv, out, sizeof(out)) != 0) {
			fprintf(stderr, "softhsm2-util --init-token failed: %s\n", out);
			goto fail;
		}
	}
	{
		char *argv[] = { (char *)util, "--show-slots", NULL };
		char *blk, *next;
		if (kwt_run(argv, out, sizeof(out)) != 0)
			goto fail;
		/* Find the serial of the token we just made: one block a slot. */
		for (blk = strstr(out, "Slot "); blk != NULL; blk = next) {
			char lab[64] = "", *l, *sn;
			next = strstr(blk + 1, "\nSlot ");
			if (next != NULL)
				*next++ = '\0';
			l = strstr(blk, "Label:");
			sn = strstr(blk, "Serial number:");
			if (l == NULL || sn == NULL ||
			    sscanf(l, "Label: %63[^\n]", lab) != 1)
				continue;
			for (p = lab + strlen(lab); p > lab && p[-1] == ' '; p--)
				p[-1] = '\0';
			if (strcmp(lab, t->label) == 0) {
				sscanf(sn, "Serial number: %16s", t->serial);
				break;
			}
		}
	}
	return 0;
fail:
	fprintf(stderr, "kwt_token_new: cannot create token in %s: %s\n", t->dir,
	    strerror(errno));
	kwt_rmtree(t->dir);
	return -1;
}

void
kwt_token_free(struct kwt_token *t)
{
	if (t == NULL || t->dir[0] == '\0')
		return;
	kwt_rmtree(t->dir);
	t->dir[0] = '\0';
}
