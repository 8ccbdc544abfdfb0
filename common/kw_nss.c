/* kw_nss.c - user and group lookups that grow their buffer on ERANGE. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "kw_nss.h"

enum nss_kind { NSS_PW_UID, NSS_PW_NAME, NSS_GR_GID, NSS_GR_NAME };

union nss_key {
	uid_t uid;
	gid_t gid;
	const char *name;
};

union nss_entry {
	struct passwd pw;
	struct group gr;
};

/* One call of the reentrant lookup of kind k: its return value, and in
 * *found whether it found the entry. */
static int
nss_call(enum nss_kind k, union nss_key key, union nss_entry *e, char *buf, size_t len,
    int *found)
{
	struct passwd *pwr = NULL;
	struct group *grr = NULL;
	int rc = EINVAL;

	switch (k) {
	case NSS_PW_UID: rc = getpwuid_r(key.uid, &e->pw, buf, len, &pwr); break;
	case NSS_PW_NAME: rc = getpwnam_r(key.name, &e->pw, buf, len, &pwr); break;
	case NSS_GR_GID: rc = getgrgid_r(key.gid, &e->gr, buf, len, &grr); break;
	case NSS_GR_NAME: rc = getgrnam_r(key.name, &e->gr, buf, len, &grr); break;
	}
	*found = pwr != NULL || grr != NULL;
	return rc;
}

/* The first room to offer: the system's suggestion, or 4 KiB. */
static size_t
nss_first_len(enum nss_kind k)
{
	long s = sysconf(k == NSS_PW_UID || k == NSS_PW_NAME ?
	    _SC_GETPW_R_SIZE_MAX : _SC_GETGR_R_SIZE_MAX);

	return s > 0 && (unsigned long)s <= KWNSS_BUF_MAX ? (size_t)s : 4096;
}

/* Look up key; on success *out (a struct passwd or a struct group, as k
 * says) gets the entry. */
static int
nss_lookup(enum nss_kind k, union nss_key key, void *out, char **buf, size_t *len)
{
	union nss_entry e;
	size_t want = nss_first_len(k);
	int rc, found = 0;

	if (*buf != NULL && *len > want)
		want = *len;
	for (;;) {
		if (*buf == NULL || *len < want) {
			char *nb = realloc(*buf, want);

			if (nb == NULL)
				return -ENOMEM;
			*buf = nb;
			*len = want;
		}
		rc = nss_call(k, key, &e, *buf, *len, &found);
		if (rc != ERANGE || *len >= KWNSS_BUF_MAX)
			break;
		want = *len * 2 < KWNSS_BUF_MAX ? *len * 2 : KWNSS_BUF_MAX;
	}
	if (rc > 0)
		return -rc;
	if (rc != 0)
		return -EIO;
	if (!found)
		return -ENOENT;
	if (k == NSS_PW_UID || k == NSS_PW_NAME)
		*(struct passwd *)out = e.pw;
	else
		*(struct group *)out = e.gr;
	return 0;
}

int
kwnss_pw_uid(uid_t uid, struct passwd *pw, char **buf, size_t *len)
{
	return nss_lookup(NSS_PW_UID, (union nss_key){ .uid = uid }, pw, buf, len);
}

int
kwnss_pw_name(const char *name, struct passwd *pw, char **buf, size_t *len)
{
	return nss_lookup(NSS_PW_NAME, (union nss_key){ .name = name }, pw, buf, len);
}

int
kwnss_gr_gid(gid_t gid, struct group *gr, char **buf, size_t *len)
{
	return nss_lookup(NSS_GR_GID, (union nss_key){ .gid = gid }, gr, buf, len);
}

int
kwnss_gr_name(const char *name, struct group *gr, char **buf, size_t *len)
{
	return nss_lookup(NSS_GR_NAME, (union nss_key){ .name = name }, gr, buf, len);
}
