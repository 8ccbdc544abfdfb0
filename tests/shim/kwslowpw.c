/*
 * kwslowpw.c - preloaded into keywardend by a test (LD_PRELOAD): the name
 * service (NSS) as a directory server (LDAP, sssd) can make it: slow, with
 * big entries, with long names, or failing.
 *
 * Slow: a lookup of the user whose uid KW_SLOWPW_UID names hangs, as with
 * a directory server that stopped answering, while the file named by
 * KW_SLOWPW_FILE exists.  Only the first such call hangs (or the first
 * KW_HANG_COUNT, see kwhang.h; at most 5 s); it creates
 * KW_SLOWPW_FILE.entered as it starts, so that the test knows the daemon
 * is stuck in it.  getpwuid_r is wrapped, and so is getpwnam_r for
 * the user KW_SLOWPW_NAME names (a policy's principals are looked up by
 * name when it is loaded), and getgrgid_r for the group KW_SLOWPW_GID
 * names.
 *
 * Big: with KW_NSS_MIN_BUF set to a number of bytes, getpwuid_r,
 * getpwnam_r, getgrgid_r and getgrnam_r answer ERANGE to a caller whose
 * buffer is smaller than that, whatever the entry, as they do for a group
 * whose member list (or an LDAP entry) does not fit; with a buffer that
 * large they look the entry up.
 *
 * Named: with KW_NSS_NAME_UID and KW_NSS_USER_NAME set, getpwuid_r of that
 * uid answers an entry of that name (primary group KW_NSS_NAME_GID, or 0),
 * and getpwnam_r of that name the same entry; with KW_NSS_NAME_GID and
 * KW_NSS_GROUP_NAME, getgrgid_r and getgrnam_r the same for a group (with
 * no members): names of any length, as a directory server may have them
 * (sssd's user@domain), and longer than useradd makes.  Each answers
 * ERANGE to a buffer too small for its entry.
 *
 * Failing: getpwuid_r of the uid KW_NSS_FAIL_UID names, and getgrgid_r of
 * the gid KW_NSS_FAIL_GID names, fail with EIO, as when the directory
 * server cannot be reached; getgrgid_r of the gid KW_NSS_NOENT_GID names
 * finds no entry ("no such group", which is not a failure).
 *
 * Every other call goes to the next one (libc's, or the sanitizer's, which
 * then needs verify_asan_link_order=0).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "tests/shim/kwhang.h"

static const char *trigger, *slow_name;
static uid_t slow_uid;
static gid_t slow_gid;
static int armed_gid;
static size_t min_buf;
static int armed, armed_name, taken;
static const char *fake_user, *fake_group;   /* NULL: no such entry faked */
static uid_t fake_uid;
static gid_t fake_gid;
static int fail_uid_on, fail_gid_on, noent_gid_on;
static uid_t fail_uid;
static gid_t fail_gid, noent_gid;

__attribute__((constructor)) static void
kwslowpw_init(void)
{
	const char *u = getenv("KW_SLOWPW_UID"), *m = getenv("KW_NSS_MIN_BUF");

	trigger = getenv("KW_SLOWPW_FILE");
	slow_name = getenv("KW_SLOWPW_NAME");
	if (u != NULL && trigger != NULL) {
		slow_uid = (uid_t)strtoul(u, NULL, 10);
		armed = 1;
	}
	armed_name = slow_name != NULL && trigger != NULL;
	if ((u = getenv("KW_SLOWPW_GID")) != NULL && trigger != NULL) {
		slow_gid = (gid_t)strtoul(u, NULL, 10);
		armed_gid = 1;
	}
	if (m != NULL)
		min_buf = (size_t)strtoul(m, NULL, 10);
	if ((u = getenv("KW_NSS_NAME_UID")) != NULL && (fake_user = getenv("KW_NSS_USER_NAME")) != NULL)
		fake_uid = (uid_t)strtoul(u, NULL, 10);
	else
		fake_user = NULL;
	if ((u = getenv("KW_NSS_NAME_GID")) != NULL)
		fake_gid = (gid_t)strtoul(u, NULL, 10);
	fake_group = u != NULL ? getenv("KW_NSS_GROUP_NAME") : NULL;
	if ((fail_uid_on = (u = getenv("KW_NSS_FAIL_UID")) != NULL))
		fail_uid = (uid_t)strtoul(u, NULL, 10);
	if ((fail_gid_on = (u = getenv("KW_NSS_FAIL_GID")) != NULL))
		fail_gid = (gid_t)strtoul(u, NULL, 10);
	if ((noent_gid_on = (u = getenv("KW_NSS_NOENT_GID")) != NULL))
		noent_gid = (gid_t)strtoul(u, NULL, 10);
}

/* The faked user's entry, in buf. */
static int
fake_pw(struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
	size_t n = strlen(fake_user) + 1;

	*res = NULL;
	if (len < n + 1)
		return ERANGE;
	memcpy(buf, fake_user, n);
	buf[n] = '\0';
	pw->pw_name = buf;
	pw->pw_passwd = pw->pw_gecos = pw->pw_dir = pw->pw_shell = buf + n;
	pw->pw_uid = fake_uid;
	pw->pw_gid = fake_gid;
	*res = pw;
	return 0;
}

/* The faked group's entry, in buf: its name, then its (empty) member
 * list. */
static int
fake_gr(struct group *gr, char *buf, size_t len, struct group **res)
{
	size_t n = strlen(fake_group) + 1;
	size_t at = (n + 1 + sizeof(char *) - 1) / sizeof(char *) * sizeof(char *);
	char *none = NULL;

	*res = NULL;
	if (len < at + sizeof(none))
		return ERANGE;
	memcpy(buf, fake_group, n);
	buf[n] = '\0';
	memcpy(buf + at, &none, sizeof(none));
	gr->gr_name = buf;
	gr->gr_passwd = buf + n;
	gr->gr_gid = fake_gid;
	gr->gr_mem = (char **)(void *)(buf + at);
	*res = gr;
	return 0;
}

/* Hang if the user is the slow one (see kwhang.h). */
static void
maybe_hang(int slow)
{
	if (slow)
		kwhang(trigger, &taken);
}

int
getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
	int (*next)(uid_t, struct passwd *, char *, size_t, struct passwd **) =
	    (int (*)(uid_t, struct passwd *, char *, size_t, struct passwd **))kwnext("getpwuid_r");

	maybe_hang(armed && uid == slow_uid);
	if (len < min_buf) {           /* as for an entry len bytes cannot hold */
		*res = NULL;
		return ERANGE;
	}
	if (fake_user != NULL && uid == fake_uid)
		return fake_pw(pw, buf, len, res);
	if (fail_uid_on && uid == fail_uid) {
		*res = NULL;
		return EIO;
	}
	return next(uid, pw, buf, len, res);
}

int
getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{
	int (*next)(const char *, struct passwd *, char *, size_t, struct passwd **) =
	    (int (*)(const char *, struct passwd *, char *, size_t, struct passwd **))
	    kwnext("getpwnam_r");

	maybe_hang(armed_name && strcmp(name, slow_name) == 0);
	if (len < min_buf) {           /* as for an entry len bytes cannot hold */
		*res = NULL;
		return ERANGE;
	}
	if (fake_user != NULL && strcmp(name, fake_user) == 0)
		return fake_pw(pw, buf, len, res);
	return next(name, pw, buf, len, res);
}

int
getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len, struct group **res)
{
	int (*next)(gid_t, struct group *, char *, size_t, struct group **) =
	    (int (*)(gid_t, struct group *, char *, size_t, struct group **))kwnext("getgrgid_r");

	maybe_hang(armed_gid && gid == slow_gid);
	if (len < min_buf) {           /* as for an entry len bytes cannot hold */
		*res = NULL;
		return ERANGE;
	}
	if (fake_group != NULL && gid == fake_gid)
		return fake_gr(gr, buf, len, res);
	if ((fail_gid_on && gid == fail_gid) || (noent_gid_on && gid == noent_gid)) {
		*res = NULL;
		return fail_gid_on && gid == fail_gid ? EIO : 0;
	}
	return next(gid, gr, buf, len, res);
}

int
getgrnam_r(const char *name, struct group *gr, char *buf, size_t len, struct group **res)
{
	int (*next)(const char *, struct group *, char *, size_t, struct group **) =
	    (int (*)(const char *, struct group *, char *, size_t, struct group **))
	    kwnext("getgrnam_r");

	if (len < min_buf) {           /* as for an entry len bytes cannot hold */
		*res = NULL;
		return ERANGE;
	}
	if (fake_group != NULL && strcmp(name, fake_group) == 0)
		return fake_gr(gr, buf, len, res);
	return next(name, gr, buf, len, res);
}
