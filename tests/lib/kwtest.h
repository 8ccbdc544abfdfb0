/*
 * kwtest.h - support shared by keywarden's CUnit tests.
 *
 * kwt_token_new() makes a throwaway SoftHSM token in a fresh temporary
 * directory with its own softhsm2.conf, initialised with a label and PINs
 * (by scripts/token-init, which never puts a PIN on a command line), and
 * exports SOFTHSM2_CONF so that the module loaded afterwards in this
 * process (and any child) sees it.  kwt_token_free() removes it all.
 *
 * A test that needs a tool or module that is missing fails loudly
 * (kwt_require), never skips: CI installs everything.
 */
#ifndef KWTEST_H
#define KWTEST_H

#include <stddef.h>

struct kwt_token {
	char dir[256];          /* temporary directory, removed by kwt_token_free */
	char conf[300];         /* <dir>/softhsm2.conf */
	char pin_file[300];     /* <dir>/pin, mode 0600, holds the user PIN */
	char label[33];
	char module[256];       /* path of libsofthsm2.so */
	char serial[17];        /* the serial SoftHSM gave the token */
};

#define KWT_USER_PIN "1234"
#define KWT_SO_PIN "5678"

/* Create and initialise a token called label.  Returns 0 or -1 (and prints
 * why to stderr). */
int kwt_token_new(struct kwt_token *t, const char *label);
void kwt_token_free(struct kwt_token *t);

/* The value of an environment variable set by the Makefile (the path of a
 * tool or module), or abort the test run with a message naming it. */
const char *kwt_require(const char *envname);

/* Run argv (NULL-terminated) with stdout captured into out (NUL-terminated,
 * truncated to outlen-1).  Returns the exit status, or -1. */
int kwt_run(char *const argv[], char *out, size_t outlen);
/* The same with env, NULL-terminated name, value pairs, set for the child
 * alone: how a PIN reaches a tool that reads it as env:NAME (pkcs11-tool
 * --pin env:NAME), never on its command line. */
int kwt_run_env(char *const argv[], const char *const *env, char *out, size_t outlen);

/* Make a temporary directory under $TMPDIR (or /tmp); path is written into
 * buf.  Returns 0 or -1.  Each one is recorded with the test that made it
 * (none: made outside the tests), and must be gone (kwt_rmtree) by the end
 * of that test, or of the program: what is left then is removed (a daemon
 * still running in it is killed first), named on stderr, and fails the
 * test or the program.  KWT_KEEP=1 in the environment keeps them all. */
int kwt_tmpdir(char *buf, size_t len, const char *prefix);

/* rm -rf path: everything that can be removed is, and what cannot is named
 * on stderr. */
void kwt_rmtree(const char *path);

/* Leave the directory path that kwt_tmpdir made, on purpose (kept for
 * inspection after a failure). */
void kwt_tmp_keep(const char *path);

/* The check after each test (tests/lib/kwt_cunit.h calls it): remove what
 * the test now ending left of its temporary directories, and fail it if it
 * left any.  Returns how many. */
int kwt_tmp_test_end(void);

/* Write a file with the given mode. Returns 0 or -1. */
int kwt_write_file(const char *path, const char *content, int mode);

/* The whole file at path, malloc'd with a NUL after its last byte, and its
 * size in *len; NULL (and *len 0) if it cannot be read whole. */
char *kwt_read_file(const char *path, size_t *len);

#endif

/* ---- the real daemon ------------------------------------------------------ */

#include <sys/types.h>

struct kwt_daemon {
	char dir[256];          /* temporary directory: config, state, audit, log */
	char conf[320];
	char sock[320];
	char state[320];
	char audit[320];
	char log[320];
	char exe[512];          /* keywardend */
	char runas[256];        /* setpriv options to run it with, or "" */
	pid_t pid;
};

/* Write a configuration for token t into a fresh directory and start
 * keywardend on it; wait until /v1/health answers.  extra is YAML appended
 * to the generated file (it must declare `vaults:`), or NULL for the
 * default vaults "prod" (purge protection, 1 day) and "dev".  0 or -1; on
 * -1 the directory may be there (its log says why the daemon did not
 * start, and one that was too slow may still run): kwt_daemon_free() d
 * either way. */
int kwt_daemon_start(struct kwt_daemon *d, const struct kwt_token *t, const char *extra);
/* The same, with the socket given to group socket_group (mode 0660) and
 * the directory opened for traversal (0711), so that other users may
 * connect. */
int kwt_daemon_start_group(struct kwt_daemon *d, const struct kwt_token *t,
    const char *socket_group, const char *extra);
/* kwt_daemon_start_group with keywardend run through setpriv(1) with the
 * options runas (separated by spaces: "--reuid=65534 --regid=65534
 * --groups=..." and perhaps capabilities), and the directory and token t
 * given to uid:gid first.  Run as root only. */
int kwt_daemon_start_as(struct kwt_daemon *d, const struct kwt_token *t, const char *runas,
    uid_t uid, gid_t gid, const char *socket_group, const char *extra);
/* The same, with more settings under limits: (YAML lines indented by two
 * spaces, each ending in a newline). */
int kwt_daemon_start_limits(struct kwt_daemon *d, const struct kwt_token *t,
    const char *limits, const char *extra);
/* The same, with more settings under limits: and under audit: (either
 * may be NULL).  limits may set client_timeout (default 2s here). */
int kwt_daemon_start_opts(struct kwt_daemon *d, const struct kwt_token *t,
    const char *limits, const char *audit, const char *extra);
/* The path of the test library name (e.g. "libkwslowpw.so") built under
 * tests/shim, into buf.  0, or -1 (and why on stderr) if it is missing. */
int kwt_shim_lib(const char *name, char *buf, size_t len);
/* kwt_daemon_start_limits with the library at path lib preloaded into the
 * daemon (LD_PRELOAD; the sanitizer told not to mind its place) and env,
 * NULL-terminated name, value pairs, set for the daemon only; this process
 * keeps its own environment. */
int kwt_daemon_start_preloaded(struct kwt_daemon *d, const struct kwt_token *t, const char *lib,
    const char *const *env, const char *limits, const char *extra);
/* Start again with the same configuration and state. */
int kwt_daemon_restart(struct kwt_daemon *d);
/* The same with one more argument to keywardend (such as --audit-reanchor). */
int kwt_daemon_restart_arg(struct kwt_daemon *d, const char *arg);
/* Stop d's files from growing, as a full disk would (works for root too):
 * RLIMIT_FSIZE at the most data any audit segment holds, so that the log
 * cannot take a byte more.  *old gets the limit to put back with
 * prlimit(d->pid, RLIMIT_FSIZE, old, NULL).  0 or -1. */
struct rlimit;
int kwt_audit_freeze(const struct kwt_daemon *d, struct rlimit *old);
/* SIGTERM and wait; returns the exit status (or -1). */
int kwt_daemon_stop(struct kwt_daemon *d);
/* SIGKILL and reap. */
void kwt_daemon_kill9(struct kwt_daemon *d);
/* Stop if running and remove the directory. */
void kwt_daemon_free(struct kwt_daemon *d);

/* One HTTP request over the socket (libcurl).  *resp (may be NULL) gets a
 * malloc'd NUL-terminated body.  Returns the HTTP status, or -1 if the
 * exchange failed. */
long kwt_http(const char *sock, const char *method, const char *path,
    const char *body, char **resp);

/* A connection to the Unix socket at sock (blocking), or -1. */
int kwt_connect(const char *sock);

/* kwt_http with the reply parsed as JSON: a new reference, or NULL when
 * the reply is not JSON.  *status as kwt_http returns it. */
struct json_t;
struct json_t *kwt_http_json(const char *sock, const char *method, const char *path,
    const char *body, long *status);
/* The "error"."code" of an error reply, or NULL. */
const char *kwt_err_code(struct json_t *reply);

/* Run the keywarden command of the build against socket sock with the
 * arguments that follow (NULL-terminated, at most 12); stdout into out.
 * Returns its exit status. */
int kwt_cli(const char *sock, char *out, size_t outlen, ...);
/* kwt_cli with its stderr into out too, after or among stdout. */
int kwt_cli_all(const char *sock, char *out, size_t outlen, ...);

/* Does the file at path contain the bytes needle?  1 yes, 0 no (also when
 * it cannot be read). */
int kwt_file_contains(const char *path, const void *needle, size_t len);
/* Does any file under dir contain the bytes needle?  1 yes, 0 no. */
int kwt_tree_contains(const char *dir, const void *needle, size_t len);
