/*
 * kwtest.h - support shared by keywarden's CUnit tests.
 *
 * kwt_token_new() makes a throwaway SoftHSM token in a fresh temporary
 * directory with its own softhsm2.conf, initialised with a label and PINs,
 * and exports SOFTHSM2_CONF so that the module loaded afterwards in this
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

/* Make a temporary directory under $TMPDIR (or /tmp); path is written into
 * buf.  Returns 0 or -1. */
int kwt_tmpdir(char *buf, size_t len, const char *prefix);

/* rm -rf path. */
void kwt_rmtree(const char *path);

/* Write a file with the given mode. Returns 0 or -1. */
int kwt_write_file(const char *path, const char *content, int mode);

#endif
