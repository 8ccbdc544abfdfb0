/*
 * kw_nss.h - user and group entries from the name service (getpwuid_r,
 * getpwnam_r, getgrgid_r, getgrnam_r) in a buffer that grows to hold them.
 *
 * No fixed buffer holds every entry: a group's entry lists each of its
 * members, and an LDAP or sssd entry may carry more besides.  The
 * reentrant calls answer ERANGE when the buffer is too small; these retry
 * with twice the room, from what sysconf(_SC_GETPW_R_SIZE_MAX) or
 * sysconf(_SC_GETGR_R_SIZE_MAX) suggests (4 KiB when it has no
 * suggestion), up to KWNSS_BUF_MAX.
 *
 * The buffer is the caller's, so that a series of lookups can share it:
 * start with *buf NULL and *len 0, and free(*buf) when done, whatever the
 * lookups returned (it may have grown, or been allocated, by a call that
 * failed).  The strings of *pw and *gr point into *buf, valid until the
 * next lookup with it or its free.
 *
 * Each returns 0 (the entry is in *pw or *gr), -ENOENT (no such user or
 * group), -ERANGE (the entry needs more than KWNSS_BUF_MAX bytes), -ENOMEM,
 * or the -errno the name service failed with (-EIO, -EAGAIN, -EMFILE, ...:
 * it could not answer, which says nothing about whether the entry exists).
 * *pw and *gr are written only on success.  Like the calls they make, they
 * block for as long as the name service does.
 *
 * Not kw_-prefixed: libkeywarden exports only kw_ symbols, and these are
 * internal.
 */
#ifndef KW_NSS_H
#define KW_NSS_H

#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <sys/types.h>

#define KWNSS_BUF_MAX (1u << 20)     /* the most room one entry is given */

int kwnss_pw_uid(uid_t uid, struct passwd *pw, char **buf, size_t *len);
int kwnss_pw_name(const char *name, struct passwd *pw, char **buf, size_t *len);
int kwnss_gr_gid(gid_t gid, struct group *gr, char **buf, size_t *len);
int kwnss_gr_name(const char *name, struct group *gr, char **buf, size_t *len);

#endif
