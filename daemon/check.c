/*
 * check.c - keywardend --check-config and --check-policy (see check.h).
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kw_error.h"
#include "kw_nss.h"
#include "pkcs11/p11.h"
#include "policy/policy.h"
#include "daemon/cfg.h"
#include "daemon/check.h"

/* The user the checked files are checked for, and why. */
struct check_user {
	uid_t uid;
	char from[4096];        /* the file whose owner it is; "": the caller */
};

int
kwd_state_dir_check(const char *path, uid_t uid)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return kw_fail(-errno, "cannot stat %s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return kw_fail(KW_E_CONFIG, "%s exists and is not a directory", path);
	if (st.st_mode & 0022)
		return kw_fail(KW_E_CONFIG, "%s is writable by group or others (mode %04o): chmod go-w %s",
		    path, (unsigned)(st.st_mode & 07777), path);
	/* Another user's directory (or one a symlink leads to) could have the
	 * store or the lock swapped under the daemon. */
	if (st.st_uid != uid)
		return kw_fail(KW_E_CONFIG, "%s belongs to uid %u, not to the daemon's user (uid %u): "
		    "chown it", path, (unsigned)st.st_uid, (unsigned)uid);
	return 0;
}

/* Run as root, take the owner of path for the daemon's user if no file
 * before it named one and path is not root's.  A path that cannot be
 * looked at names nobody: its own check says why. */
static void
user_from(struct check_user *u, const char *path)
{
	struct stat st;

	if (geteuid() != 0 || u->from[0] != '\0' || path == NULL || stat(path, &st) != 0 ||
	    st.st_uid == 0)
		return;
	u->uid = st.st_uid;
	snprintf(u->from, sizeof(u->from), "%s", path);
}

/* "PATH: checked as root for keywardend running as NAME (uid N), the
 * owner of FROM: ...", when the files were checked for another user than
 * the caller. */
static void
user_say(FILE *f, const char *path, const struct check_user *u)
{
	struct passwd pw;
	char *buf = NULL;
	size_t len = 0;
	int known;

	if (u->from[0] == '\0')
		return;
	known = kwnss_pw_uid(u->uid, &pw, &buf, &len) == 0;
	fprintf(f, "%s: checked as root for keywardend running as %s%s(uid %u), the owner of %s: "
	    "it must run as that user\n", path, known ? pw.pw_name : "", known ? " " : "",
	    (unsigned)u->uid, u->from);
	free(buf);
}

/* Load the policy at path for u; print its errors and warnings.  The
 * count of errors. */
static size_t
policy_check(const char *path, const struct check_user *u, size_t *rules, const char **hash,
    char *hashbuf, size_t hashlen)
{
	struct policy_load_opts o = { .daemon_uid = u->uid };
	struct policy *p = NULL;
	struct policy_errors *errs = NULL, *warns = NULL;
	size_t n = 0;
	int r = policy_load(path, &o, &p, &errs);

	if (r == 0) {
		if (policy_lint(p, &warns) == 0)
			policy_errors_print(stderr, warns);
		policy_errors_free(warns);
		*rules = policy_rule_count(p);
		snprintf(hashbuf, hashlen, "%s", policy_hash(p));
		*hash = hashbuf;
		policy_free(p);
		return 0;
	}
	policy_errors_print(stderr, errs);
	n = errs != NULL && errs->n > 0 ? errs->n : 1;
	if (errs == NULL || errs->n == 0)
		fprintf(stderr, "%s: %s\n", path, kw_strerror(r));
	policy_errors_free(errs);
	return n;
}

static void
errors_say(size_t n)
{
	fprintf(stderr, "%zu error%s\n", n, n == 1 ? "" : "s");
}

int
kwd_check_config(const char *path)
{
	struct check_user u = { .uid = geteuid() };
	struct config *c = NULL;
	struct config_errors errs;
	char pin_dir[4096], hashbuf[80];
	const char *hash = NULL, *slash;
	size_t n = 0, rules = 0;
	int r, rc = 1;

	user_from(&u, path);
	if ((r = config_load_as(path, u.uid, &c, &errs)) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.lines[i]);
		if (errs.n == 0)
			fprintf(stderr, "%s: %s\n", path, kw_strerror(r));
		n = errs.n > 0 ? errs.n : 1;
		config_errors_free(&errs);
		goto out;
	}
	/* The files it names, as the daemon reads them at start: the first
	 * one not root's names the daemon's user if the configuration did
	 * not. */
	if ((slash = strrchr(c->pin_file, '/')) == NULL)
		snprintf(pin_dir, sizeof(pin_dir), ".");
	else
		snprintf(pin_dir, sizeof(pin_dir), "%.*s",
		    slash == c->pin_file ? 1 : (int)(slash - c->pin_file), c->pin_file);
	user_from(&u, c->pin_file);
	user_from(&u, pin_dir);
	user_from(&u, c->policy_file);
	user_from(&u, c->state_dir);
	user_from(&u, c->audit_dir);

	if ((r = p11_pin_check(c->pin_file, u.uid)) != 0) {
		fprintf(stderr, "%s: token.pin_file: %s\n", path, kw_errdetail(r));
		n++;
	}
	if (c->policy_file != NULL)
		n += policy_check(c->policy_file, &u, &rules, &hash, hashbuf, sizeof(hashbuf));
	/* The daemon makes the state directory when there is none. */
	if (access(c->state_dir, F_OK) == 0 && (r = kwd_state_dir_check(c->state_dir, u.uid)) != 0) {
		fprintf(stderr, "%s: state_dir: %s\n", path, kw_errdetail(r));
		n++;
	}
	/* The audit directory likewise (the daemon makes it too): only its
	 * writer may add segments to it. */
	if (access(c->audit_dir, F_OK) == 0 && (r = kwd_state_dir_check(c->audit_dir, u.uid)) != 0) {
		fprintf(stderr, "%s: audit.dir: %s\n", path, kw_errdetail(r));
		n++;
	}
	if (n > 0)
		goto out;
	printf("%s: ok\n", path);
	if (hash != NULL)
		printf("%s: ok (%zu rules, sha256 %s)\n", c->policy_file, rules, hash);
	user_say(stdout, path, &u);
	rc = 0;
out:
	if (rc != 0) {
		errors_say(n);
		user_say(stderr, path, &u);
	}
	config_free(c);
	return rc;
}

int
kwd_check_policy(const char *path)
{
	struct check_user u = { .uid = geteuid() };
	char hashbuf[80];
	const char *hash = NULL;
	size_t n, rules = 0;

	user_from(&u, path);
	if ((n = policy_check(path, &u, &rules, &hash, hashbuf, sizeof(hashbuf))) > 0) {
		errors_say(n);
		user_say(stderr, path, &u);
		return 1;
	}
	printf("%s: ok (%zu rules, sha256 %s)\n", path, rules, hash);
	user_say(stdout, path, &u);
	return 0;
}
