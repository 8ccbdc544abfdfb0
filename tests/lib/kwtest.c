#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <time.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <jansson.h>

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

/* ---- temporary directories ------------------------------------------------ */

/* Every directory kwt_tmpdir() made in this process, until kwt_rmtree()
 * removes it: the test that made it (NULL: outside any test) and the pid of
 * the daemon kwt_daemon_spawn() started in it, while that one runs.  A
 * fatal assertion ends a test before its own clean-up, and a path that
 * forgets one is easy to miss: what a test leaves is removed after it and
 * fails it (kwt_tmp_test_end), what is left when the program ends is
 * removed and fails the program (tmp_at_exit). */
struct tmp_dir {
	struct tmp_dir *next;
	char path[256];
	CU_pTest test;
	char test_name[128];
	pid_t daemon;
	int kept;               /* kwt_tmp_keep(): left on purpose */
};

static pthread_mutex_t tmp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tmp_dir *tmp_dirs;
static pid_t tmp_owner;         /* the process whose directories these are */

static void tmp_at_exit(int status, void *arg);

static void
tmp_add(const char *path)
{
	struct tmp_dir *t = calloc(1, sizeof(*t));
	CU_pTest test = CU_get_current_test();

	if (t == NULL) {
		fprintf(stderr, "kwtest: out of memory recording %s\n", path);
		return;
	}
	snprintf(t->path, sizeof(t->path), "%s", path);
	t->test = test;
	snprintf(t->test_name, sizeof(t->test_name), "%s",
	    test != NULL && test->pName != NULL ? test->pName : "");
	pthread_mutex_lock(&tmp_lock);
	if (tmp_owner != getpid()) {
		tmp_owner = getpid();
		on_exit(tmp_at_exit, NULL);
	}
	t->next = tmp_dirs;
	tmp_dirs = t;
	pthread_mutex_unlock(&tmp_lock);
}

/* Forget path, and every directory of ours under it: removed. */
static void
tmp_forget(const char *path)
{
	size_t n = strlen(path);
	struct tmp_dir **pp, *t;

	pthread_mutex_lock(&tmp_lock);
	for (pp = &tmp_dirs; (t = *pp) != NULL;) {
		if (strncmp(t->path, path, n) == 0 && (t->path[n] == '\0' || t->path[n] == '/')) {
			*pp = t->next;
			free(t);
		} else {
			pp = &t->next;
		}
	}
	pthread_mutex_unlock(&tmp_lock);
}

/* The daemon running in dir is pid (0: none any more). */
static void
tmp_daemon(const char *dir, pid_t pid)
{
	struct tmp_dir *t;

	pthread_mutex_lock(&tmp_lock);
	for (t = tmp_dirs; t != NULL; t = t->next)
		if (strcmp(t->path, dir) == 0)
			t->daemon = pid;
	pthread_mutex_unlock(&tmp_lock);
}

void
kwt_tmp_keep(const char *path)
{
	struct tmp_dir *t;

	pthread_mutex_lock(&tmp_lock);
	for (t = tmp_dirs; t != NULL; t = t->next)
		if (strcmp(t->path, path) == 0)
			t->kept = 1;
	pthread_mutex_unlock(&tmp_lock);
}

/* Remove what is left of the directories test made (of all of them, if
 * all), after killing a daemon still running in one, and name each on
 * stderr.  Returns how many there were; with KWT_KEEP they are kept, named,
 * and not counted. */
static int
tmp_sweep(CU_pTest test, int all)
{
	int left = 0, keep = getenv("KWT_KEEP") != NULL;

	for (;;) {
		struct tmp_dir *t;
		char path[256], name[128];
		pid_t daemon = 0;

		pthread_mutex_lock(&tmp_lock);
		for (t = tmp_dirs; t != NULL; t = t->next)
			if (!t->kept && (all || t->test == test))
				break;
		if (t != NULL) {
			snprintf(path, sizeof(path), "%s", t->path);
			snprintf(name, sizeof(name), "%s", t->test_name);
			daemon = t->daemon;
			t->kept = keep;   /* named once */
		}
		pthread_mutex_unlock(&tmp_lock);
		if (t == NULL)
			break;
		if (keep) {
			fprintf(stderr, "kwtest: KWT_KEEP: kept %s\n", path);
			continue;
		}
		left++;
		if (*name != '\0')
			fprintf(stderr, "FAIL: kwtest: test '%s' left %s behind%s: removed\n", name, path,
			    daemon > 0 ? ", its daemon running" : "");
		else
			fprintf(stderr, "FAIL: kwtest: %s, made outside the tests, was left when the "
			    "program ended%s: removed\n", path, daemon > 0 ? ", its daemon running" : "");
		/* Only a child of ours not yet reaped: a pid reaped elsewhere
		 * may be another process's by now. */
		if (daemon > 0 && waitpid(daemon, NULL, WNOHANG) == 0) {
			kill(daemon, SIGKILL);
			while (waitpid(daemon, NULL, 0) < 0 && errno == EINTR)
				;
		}
		kwt_rmtree(path);
		tmp_forget(path);   /* even if some of it could not be removed: named once */
	}
	return left;
}

int
kwt_tmp_test_end(void)
{
	CU_pTest test = CU_get_current_test();
	int left;

	if (test == NULL)
		return 0;
	left = tmp_sweep(test, 0);
	if (left > 0)
		CU_assertImplementation(CU_FALSE, __LINE__,
		    "the test left temporary directories behind (kwtest: on stderr)", __FILE__, "", CU_FALSE);
	return left;
}

/* At exit (also through exit() from a helper): nothing of ours may be
 * left.  A program that would have passed fails. */
static void
tmp_at_exit(int status, void *arg)
{
	(void)arg;
	if (getpid() != tmp_owner)
		return;   /* a child forked by a test that called exit() */
	if (tmp_sweep(NULL, 1) > 0 && status == 0) {
		fflush(NULL);
		_exit(1);
	}
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
	tmp_add(buf);
	return 0;
}

static int rm_errno;
static char rm_failed[512];

/* One entry of the tree, deepest first.  A failure does not stop the
 * walk: the rest is removed, and kwt_rmtree says what was not. */
static int
kwt_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	if (remove(path) != 0 && errno != ENOENT && rm_errno == 0) {
		rm_errno = errno;
		snprintf(rm_failed, sizeof(rm_failed), "%s", path);
	}
	return 0;
}

void
kwt_rmtree(const char *path)
{
	static pthread_mutex_t rm_lock = PTHREAD_MUTEX_INITIALIZER;
	struct stat st;

	if (path == NULL || *path == '\0' || getenv("KWT_KEEP") != NULL)
		return;
	pthread_mutex_lock(&rm_lock);
	rm_errno = 0;
	if (nftw(path, kwt_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && rm_errno == 0 && errno != ENOENT) {
		rm_errno = errno;
		snprintf(rm_failed, sizeof(rm_failed), "%s", path);
	}
	if (lstat(path, &st) == 0)
		fprintf(stderr, "kwt_rmtree: %s is left: %s: %s\n", path, rm_failed,
		    strerror(rm_errno != 0 ? rm_errno : EEXIST));
	else
		tmp_forget(path);
	pthread_mutex_unlock(&rm_lock);
}

char *
kwt_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	*len = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL) {
		if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
			buf[n] = '\0';
			*len = (size_t)n;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
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

/* environ with env's NULL-terminated name, value pairs set: a new array
 * of pointers, whose new strings are in *strs (free both); NULL on no
 * memory. */
static char **
env_with(const char *const *env, char ***strs)
{
	extern char **environ;
	size_t n = 0, k = 0, i, j;
	char **e, **s;

	while (environ[n] != NULL)
		n++;
	while (env != NULL && env[2 * k] != NULL && env[2 * k + 1] != NULL)
		k++;
	e = calloc(n + k + 1, sizeof(*e));
	s = calloc(k + 1, sizeof(*s));
	if (e == NULL || s == NULL)
		goto nomem;
	for (i = 0; i < k; i++)
		if (asprintf(&s[i], "%s=%s", env[2 * i], env[2 * i + 1]) < 0) {
			s[i] = NULL;
			goto nomem;
		}
	for (i = 0, j = 0; i < n; i++) {
		size_t m;
		for (m = 0; m < k; m++)
			if (strncmp(environ[i], env[2 * m], strlen(env[2 * m])) == 0 &&
			    environ[i][strlen(env[2 * m])] == '=')
				break;
		if (m == k)
			e[j++] = environ[i];
	}
	for (i = 0; i < k; i++)
		e[j++] = s[i];
	*strs = s;
	return e;
nomem:
	for (i = 0; s != NULL && i < k; i++)
		free(s[i]);
	free(s);
	free(e);
	return NULL;
}

/* Run argv, with env (name, value pairs, or NULL) set for it alone; its
 * stdout (and stderr too, if both) into out. */
static int
run(char *const argv[], const char *const *env, char *out, size_t outlen, int both)
{
	extern char **environ;
	char **envp = environ, **strs = NULL;
	int p[2], status;
	pid_t pid;
	size_t got = 0;

	if (env != NULL && (envp = env_with(env, &strs)) == NULL)
		return -1;
	if (pipe(p) != 0) {
		pid = -1;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		goto out;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		dup2(devnull, 0);
		dup2(p[1], 1);
		if (both)
			dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execvpe(argv[0], argv, envp);
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
out:
	if (envp != environ) {
		for (size_t i = 0; strs[i] != NULL; i++)
			free(strs[i]);
		free(strs);
		free(envp);
	}
	if (out != NULL && outlen > 0)
		out[got] = '\0';
	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The most data (not counting preallocated zeros) in one segment of the
 * audit directory dir, or -1. */
static off_t
audit_largest(const char *dir)
{
	char cmd[600], out[64];
	char *argv[] = { "sh", "-c", cmd, NULL };

	snprintf(cmd, sizeof(cmd), "for f in %s/*.jsonl; do tr -d '\\000' < \"$f\" | wc -c; done | sort -n | tail -n 1",
	    dir);
	if (kwt_run(argv, out, sizeof(out)) != 0)
		return -1;
	return (off_t)atoll(out);
}

int
kwt_run(char *const argv[], char *out, size_t outlen)
{
	return run(argv, NULL, out, outlen, 0);
}

int
kwt_run_env(char *const argv[], const char *const *env, char *out, size_t outlen)
{
	return run(argv, env, out, outlen, 0);
}

int
kwt_token_new(struct kwt_token *t, const char *label)
{
	char tokdir[300], conf[700], so_pin_file[300], init[600], out[4096];
	const char *util = kwt_require("SOFTHSM2_UTIL");
	const char *module = kwt_require("SOFTHSM2_MODULE");
	const char *src = kwt_require("KW_TOP_SRCDIR");
	char *p;

	kwt_require("PKCS11_TOOL");   /* scripts/token-init runs $PKCS11_TOOL */
	memset(t, 0, sizeof(*t));
	if (kwt_tmpdir(t->dir, sizeof(t->dir), "kwtest-token") != 0)
		return -1;
	snprintf(t->conf, sizeof(t->conf), "%s/softhsm2.conf", t->dir);
	snprintf(t->pin_file, sizeof(t->pin_file), "%s/pin", t->dir);
	snprintf(so_pin_file, sizeof(so_pin_file), "%s/so-pin", t->dir);
	snprintf(tokdir, sizeof(tokdir), "%s/tokens", t->dir);
	snprintf(t->label, sizeof(t->label), "%s", label);
	snprintf(t->module, sizeof(t->module), "%s", module);
	snprintf(init, sizeof(init), "%s/scripts/token-init", src);
	if (mkdir(tokdir, 0700) != 0)
		goto fail;
	snprintf(conf, sizeof(conf),
	    "directories.tokendir = %s\nobjectstore.backend = file\n"
	    "log.level = ERROR\nslots.removable = false\n", tokdir);
	if (kwt_write_file(t->conf, conf, 0600) != 0 ||
	    kwt_write_file(t->pin_file, KWT_USER_PIN "\n", 0600) != 0 ||
	    kwt_write_file(so_pin_file, KWT_SO_PIN "\n", 0600) != 0)
		goto fail;
	setenv("SOFTHSM2_CONF", t->conf, 1);
	/* The project's own way: the PINs go from their files to pkcs11-tool
	 * through its environment (env:NAME), never on a command line, where
	 * every local user reads them in ps. */
	{
		char *argv[] = { "/bin/sh", init, (char *)module, t->label, so_pin_file,
		    t->pin_file, NULL };
		if (run(argv, NULL, out, sizeof(out), 1) != 0) {
			fprintf(stderr, "%s failed: %s\n", init, out);
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

/* ---- the real daemon ------------------------------------------------------ */

static int
kwt_daemon_spawn(struct kwt_daemon *d, const char *arg)
{
	int logfd;
	pid_t parent;
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	/* The one still running would answer the health check below for a
	 * second one that exits at once (the state directory is taken). */
	if (d->pid > 0) {
		fprintf(stderr, "keywardend (pid %ld) is still running: stop it before starting "
		    "it again\n", (long)d->pid);
		return -1;
	}
	logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0)
		return -1;
	parent = getpid();
	d->pid = fork();
	if (d->pid < 0) {
		close(logfd);
		return -1;
	}
	if (d->pid == 0) {
		/* A test program that crashes takes its daemon with it: one
		 * left behind would hold its state directory's lock. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
			_exit(127);
		dup2(logfd, 2);
		dup2(logfd, 1);
		if (d->runas[0] != '\0') {
			/* setpriv, its options, the daemon and its own */
			char opts[sizeof(d->runas)], *argv[24], *sp = NULL, *o;
			int i = 0;

			snprintf(opts, sizeof(opts), "%s", d->runas);
			argv[i++] = "setpriv";
			for (o = strtok_r(opts, " ", &sp); o != NULL && i < 18;
			    o = strtok_r(NULL, " ", &sp))
				argv[i++] = o;
			argv[i++] = d->exe;
			argv[i++] = "--config";
			argv[i++] = d->conf;
			argv[i++] = (char *)arg;
			argv[i] = NULL;
			execvp("setpriv", argv);
			fprintf(stderr, "exec setpriv: %s\n", strerror(errno));
			_exit(127);
		}
		execl(d->exe, d->exe, "--config", d->conf, arg, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", d->exe, strerror(errno));
		_exit(127);
	}
	close(logfd);
	tmp_daemon(d->dir, d->pid);
	for (int i = 0; i < 600; i++) {   /* 30 s */
		int status;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			fprintf(stderr, "keywardend exited during start (status %d); log %s\n",
			    status, d->log);
			d->pid = 0;
			tmp_daemon(d->dir, 0);
			return -1;
		}
		if (kwt_http(d->sock, "GET", "/v1/health", NULL, NULL) == 200)
			return 0;
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "keywardend did not become ready; log %s\n", d->log);
	return -1;
}

static int daemon_start(struct kwt_daemon *d, const struct kwt_token *t,
    const char *socket_group, const char *limits, const char *audit, const char *extra);

int
kwt_daemon_start(struct kwt_daemon *d, const struct kwt_token *t, const char *extra)
{
	return daemon_start(d, t, NULL, NULL, NULL, extra);
}

int
kwt_daemon_start_group(struct kwt_daemon *d, const struct kwt_token *t,
    const char *socket_group, const char *extra)
{
	return daemon_start(d, t, socket_group, NULL, NULL, extra);
}

int
kwt_daemon_start_limits(struct kwt_daemon *d, const struct kwt_token *t,
    const char *limits, const char *extra)
{
	return daemon_start(d, t, NULL, limits, NULL, extra);
}

int
kwt_daemon_start_opts(struct kwt_daemon *d, const struct kwt_token *t,
    const char *limits, const char *audit, const char *extra)
{
	return daemon_start(d, t, NULL, limits, audit, extra);
}

int
kwt_shim_lib(const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/tests/shim/.libs/%s", kwt_require("KW_TOP_BUILDDIR"), name);

	if (n < 0 || (size_t)n >= len || access(buf, R_OK) != 0) {
		fprintf(stderr, "%s/tests/shim/.libs/%s missing: build tests/shim\n",
		    kwt_require("KW_TOP_BUILDDIR"), name);
		return -1;
	}
	return 0;
}

int
kwt_daemon_start_preloaded(struct kwt_daemon *d, const struct kwt_token *t, const char *lib,
    const char *const *env, const char *limits, const char *extra)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char keep[1024], opts[1100];
	size_t i;
	int r;

	/* In the sanitizer build ASan's runtime must come first in the
	 * daemon, and the preloaded library comes before it: ASan is told
	 * not to mind. */
	snprintf(keep, sizeof(keep), "%s", asan != NULL ? asan : "");
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", keep, asan != NULL ? ":" : "");
	setenv("LD_PRELOAD", lib, 1);
	setenv("ASAN_OPTIONS", opts, 1);
	for (i = 0; env != NULL && env[i] != NULL && env[i + 1] != NULL; i += 2)
		setenv(env[i], env[i + 1], 1);
	r = daemon_start(d, t, NULL, limits, NULL, extra);
	unsetenv("LD_PRELOAD");
	for (i = 0; env != NULL && env[i] != NULL && env[i + 1] != NULL; i += 2)
		unsetenv(env[i]);
	if (asan != NULL)
		setenv("ASAN_OPTIONS", keep, 1);
	else
		unsetenv("ASAN_OPTIONS");
	return r;
}

static int daemon_conf(struct kwt_daemon *d, const struct kwt_token *t,
    const char *socket_group, const char *limits, const char *audit, const char *extra);

static int
daemon_start(struct kwt_daemon *d, const struct kwt_token *t,
    const char *socket_group, const char *limits, const char *audit, const char *extra)
{
	if (daemon_conf(d, t, socket_group, limits, audit, extra) != 0)
		return -1;
	return kwt_daemon_spawn(d, NULL);
}

static uid_t chown_uid;
static gid_t chown_gid;

static int
chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return lchown(path, chown_uid, chown_gid);
}

int
kwt_daemon_start_as(struct kwt_daemon *d, const struct kwt_token *t, const char *runas,
    uid_t uid, gid_t gid, const char *socket_group, const char *extra)
{
	if (daemon_conf(d, t, socket_group, NULL, NULL, extra) != 0)
		return -1;
	chown_uid = uid;
	chown_gid = gid;
	if (nftw(d->dir, chown_one, 16, FTW_PHYS) != 0 || nftw(t->dir, chown_one, 16, FTW_PHYS) != 0) {
		fprintf(stderr, "cannot give %s and %s to uid %u: %s\n", d->dir, t->dir,
		    (unsigned)uid, strerror(errno));
		return -1;
	}
	snprintf(d->runas, sizeof(d->runas), "%s", runas);
	return kwt_daemon_spawn(d, NULL);
}

static int
daemon_conf(struct kwt_daemon *d, const struct kwt_token *t,
    const char *socket_group, const char *limits, const char *audit, const char *extra)
{
	const char *top = kwt_require("KW_TOP_BUILDDIR");
	char conf[8192], group[128] = "";

	memset(d, 0, sizeof(*d));
	if (kwt_tmpdir(d->dir, sizeof(d->dir), "kwtest-daemon") != 0)
		return -1;
	snprintf(d->conf, sizeof(d->conf), "%s/keywarden.yaml", d->dir);
	snprintf(d->sock, sizeof(d->sock), "%s/kw.sock", d->dir);
	snprintf(d->state, sizeof(d->state), "%s/state", d->dir);
	snprintf(d->audit, sizeof(d->audit), "%s/audit", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/keywardend.log", d->dir);
	snprintf(d->exe, sizeof(d->exe), "%s/daemon/keywardend", top);
	if (socket_group != NULL) {
		snprintf(group, sizeof(group), "  group: %s\n", socket_group);
		if (chmod(d->dir, 0711) != 0)
			return -1;
	}
	snprintf(conf, sizeof(conf),
	    "socket:\n  path: %s\n  mode: \"0660\"\n%s"
	    "token:\n  module: %s\n  token: %s\n  pin_file: %s\n"
	    "state_dir: %s\n"
	    "audit:\n  dir: %s\n%s"
	    "limits:\n  workers: 2\n%s%s"
	    "log:\n  level: info\n"
	    "%s",
	    d->sock, group, t->module, t->label, t->pin_file, d->state, d->audit,
	    audit ? audit : "",
	    limits != NULL && strstr(limits, "client_timeout:") != NULL ? "" : "  client_timeout: 2s\n",
	    limits ? limits : "",
	    extra ? extra :
	    "vaults:\n  - name: prod\n    purge_protection: true\n    retention_days: 1\n"
	    "  - name: dev\n    retention_days: 0\n");
	return kwt_write_file(d->conf, conf, 0600) != 0 ? -1 : 0;
}

int
kwt_connect(const char *sock)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (fd < 0 || strlen(sock) >= sizeof(sa.sun_path)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
kwt_audit_freeze(const struct kwt_daemon *d, struct rlimit *old)
{
	struct rlimit lim;
	off_t most = audit_largest(d->audit);

	if (most <= 0 || prlimit(d->pid, RLIMIT_FSIZE, NULL, old) != 0)
		return -1;
	lim = *old;
	lim.rlim_cur = (rlim_t)most;
	return prlimit(d->pid, RLIMIT_FSIZE, &lim, NULL) == 0 ? 0 : -1;
}

int
kwt_daemon_restart(struct kwt_daemon *d)
{
	return kwt_daemon_spawn(d, NULL);
}

int
kwt_daemon_restart_arg(struct kwt_daemon *d, const char *arg)
{
	return kwt_daemon_spawn(d, arg);
}

/* Did the daemon (built with sanitizers) report an error in its log?
 * Prints the report; 1 yes, 0 no. */
static int
kwt_sanitizer_report(const struct kwt_daemon *d)
{
	static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
		"runtime error:", NULL };
	FILE *f = fopen(d->log, "r");
	char *buf;
	size_t n;
	int found = 0;

	if (f == NULL)
		return 0;
	fseek(f, 0, SEEK_END);
	n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	if ((buf = malloc(n + 1)) != NULL && fread(buf, 1, n, f) == n) {
		buf[n] = '\0';
		for (int i = 0; marks[i] != NULL && !found; i++) {
			const char *m = strstr(buf, marks[i]);
			if (m != NULL) {
				found = 1;
				fprintf(stderr, "FAIL: keywardend reported \"%s\" in %s:\n%.8000s\n", marks[i], d->log,
				    m);
			}
		}
	}
	free(buf);
	fclose(f);
	return found;
}

int
kwt_daemon_stop(struct kwt_daemon *d)
{
	int status;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	while (waitpid(d->pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	d->pid = 0;
	tmp_daemon(d->dir, 0);
	if (kwt_sanitizer_report(d))
		return -2;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void
kwt_daemon_kill9(struct kwt_daemon *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGKILL);
	while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
		;
	d->pid = 0;
	tmp_daemon(d->dir, 0);
}

void
kwt_daemon_free(struct kwt_daemon *d)
{
	/* A sanitizer report of the daemon fails the test program, even
	 * where no test asserted the daemon's exit. */
	if ((d->pid > 0 && kwt_daemon_stop(d) == -2) || (d->pid <= 0 && d->dir[0] != '\0' &&
	    kwt_sanitizer_report(d))) {
		if (d->dir[0] != '\0')
			kwt_rmtree(d->dir);
		exit(1);
	}
	if (d->dir[0] != '\0')
		kwt_rmtree(d->dir);
	d->dir[0] = '\0';
}

struct kwt_buf {
	char *p;
	size_t n;
};

static size_t
kwt_curl_write(char *data, size_t sz, size_t nm, void *arg)
{
	struct kwt_buf *b = arg;
	size_t len = sz * nm;
	char *np = realloc(b->p, b->n + len + 1);

	if (np == NULL)
		return 0;
	memcpy(np + b->n, data, len);
	b->p = np;
	b->n += len;
	b->p[b->n] = '\0';
	return len;
}

long
kwt_http(const char *sock, const char *method, const char *path,
    const char *body, char **resp)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	struct kwt_buf b = { NULL, 0 };
	char url[2048];
	long status = -1;

	if (c == NULL)
		return -1;
	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, kwt_curl_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (body != NULL) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (resp != NULL)
		*resp = b.p ? b.p : strdup("");
	else
		free(b.p);
	return status;
}

int
kwt_file_contains(const char *path, const void *needle, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char buf[65536 + 256];
	size_t keep = 0;
	ssize_t n;
	int found = 0;

	if (fd < 0)
		return 0;
	while (!found && (n = read(fd, buf + keep, sizeof(buf) - keep)) > 0) {
		size_t have = keep + (size_t)n;
		if (memmem(buf, have, needle, len) != NULL)
			found = 1;
		keep = have < len ? have : len - 1;
		memmove(buf, buf + have - keep, keep);
	}
	close(fd);
	return found;
}

int
kwt_tree_contains(const char *dir, const void *needle, size_t len)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	int found = 0;

	if (dp == NULL)
		return kwt_file_contains(dir, needle, len);
	while (!found && (e = readdir(dp)) != NULL) {
		char p[1024];
		struct stat st;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (lstat(p, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode))
			found = kwt_tree_contains(p, needle, len);
		else if (S_ISREG(st.st_mode))
			found = kwt_file_contains(p, needle, len);
	}
	closedir(dp);
	return found;
}

static int
cli_v(const char *sock, char *out, size_t outlen, int both, va_list ap)
{
	char exe[600], *argv[16];
	int i = 0;

	snprintf(exe, sizeof(exe), "%s/client/keywarden", kwt_require("KW_TOP_BUILDDIR"));
	argv[i++] = exe;
	argv[i++] = "--socket";
	argv[i++] = (char *)sock;
	while (i < 15 && (argv[i] = va_arg(ap, char *)) != NULL)
		i++;
	argv[i] = NULL;
	return run(argv, NULL, out, outlen, both);
}

int
kwt_cli(const char *sock, char *out, size_t outlen, ...)
{
	va_list ap;
	int r;

	va_start(ap, outlen);
	r = cli_v(sock, out, outlen, 0, ap);
	va_end(ap);
	return r;
}

int
kwt_cli_all(const char *sock, char *out, size_t outlen, ...)
{
	va_list ap;
	int r;

	va_start(ap, outlen);
	r = cli_v(sock, out, outlen, 1, ap);
	va_end(ap);
	return r;
}

json_t *
kwt_http_json(const char *sock, const char *method, const char *path, const char *body,
    long *status)
{
	char *resp = NULL;
	json_t *j;

	*status = kwt_http(sock, method, path, body, &resp);
	j = json_loads(resp ? resp : "", 0, NULL);
	free(resp);
	return j;
}

const char *
kwt_err_code(json_t *reply)
{
	return json_string_value(json_object_get(json_object_get(reply, "error"), "code"));
}
