/*
 * check.h - keywardend --check-config and --check-policy: the files the
 * daemon reads at start, checked offline, every error printed.
 *
 * Each of them must be owned by root or by the daemon's user.  Run as that
 * user, a check is the daemon's own.  Run as root (an operator checking a
 * configuration before the service starts it as its own user), it cannot
 * know that user: it takes the owner of the first of the files that is
 * not root's, checks every file for a daemon running as that uid, and says
 * so.  The daemon's own start-up checks are unchanged: its effective uid.
 */
#ifndef KW_CHECK_H
#define KW_CHECK_H

#include <sys/types.h>

/* keywardend --check-config path: the configuration, and the PIN file, the
 * policy, the state directory and the audit directory it names.  Prints "path: ok" (and which
 * user the daemon must run as, when that is not the caller) or every error;
 * returns the exit status, 0 or 1. */
int kwd_check_config(const char *path);

/* keywardend --check-policy path: the same for a policy file alone. */
int kwd_check_policy(const char *path);

/* An existing state directory for a daemon running as uid: a directory,
 * of uid's, that group and other may not write.  0, or a negative code
 * with kw_errdetail() saying why. */
int kwd_state_dir_check(const char *path, uid_t uid);

#endif
