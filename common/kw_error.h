/*
 * kw_error.h - the one error space of keywarden.
 *
 * Every function that can fail returns int: 0 on success, or a negative code.
 * A code is either a negated errno value (-ENOMEM, -EINVAL, ...) or one of the
 * project's own codes below, all under -KW_E_BASE.  kw_strerror() names any
 * of them.
 *
 * Library layers (common/, pkcs11/, policy/, the store) do not log.  Where a
 * bare code would not tell a person what to do, they leave a sentence in a
 * per-thread detail buffer with kw_fail(); the caller that logs or answers
 * reads it with kw_errdetail() right after the failing call.  A detail never
 * holds secret material: a PIN, a key or a value.
 */
#ifndef KW_ERROR_H
#define KW_ERROR_H

#include <stddef.h>

#define KW_E_BASE 1000

enum kw_error {
	KW_E_INTERNAL = -(KW_E_BASE + 0),   /* a bug: should not happen */
	KW_E_P11 = -(KW_E_BASE + 1),        /* a PKCS#11 call failed */
	KW_E_TOKEN = -(KW_E_BASE + 2),      /* token absent, not found, removed */
	KW_E_PIN = -(KW_E_BASE + 3),        /* PIN wrong, locked, or PIN file bad */
	KW_E_MECHANISM = -(KW_E_BASE + 4),  /* token lacks a needed mechanism */
	KW_E_KEY_NOT_FOUND = -(KW_E_BASE + 5), /* no such master key (version) */
	KW_E_KEY_EXISTS = -(KW_E_BASE + 6), /* master key version already exists */
	KW_E_AUTH = -(KW_E_BASE + 7),       /* authentication failed: tag/MAC/AAD */
	KW_E_FORMAT = -(KW_E_BASE + 8),     /* malformed blob, record, or file */
	KW_E_CONFIG = -(KW_E_BASE + 9),     /* configuration is invalid */
	KW_E_POLICY = -(KW_E_BASE + 10),    /* policy is invalid */
	KW_E_DENIED = -(KW_E_BASE + 11),    /* the policy denies it */
	KW_E_NOT_FOUND = -(KW_E_BASE + 12), /* no such secret, vault, version */
	KW_E_CONFLICT = -(KW_E_BASE + 13),  /* check-and-set or state conflict */
	KW_E_STORE = -(KW_E_BASE + 14),     /* the store failed */
	KW_E_AUDIT = -(KW_E_BASE + 15),     /* the audit log cannot be written */
	KW_E_UNAVAILABLE = -(KW_E_BASE + 16), /* a dependency is down: try later */
	KW_E_TOO_LARGE = -(KW_E_BASE + 17), /* input exceeds a limit */
	KW_E_PROTOCOL = -(KW_E_BASE + 18),  /* the peer spoke nonsense */
	KW_E_RETIRED = -(KW_E_BASE + 19),   /* master key version is retired */
	KW_E_LAST = -(KW_E_BASE + 20)
};

/* A short, stable name for any code: "no such file or directory",
 * "PKCS#11 call failed", ...  Never NULL. */
const char *kw_strerror(int code);

/* Record a detail sentence for this thread and return code (always < 0), so
 * that "return kw_fail(KW_E_PIN, "...", ...);" reads naturally. */
int kw_fail(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The detail of this thread's last kw_fail(), or kw_strerror(code) when the
 * last failure recorded none or recorded another code.  Valid until the next
 * kw_fail() on this thread. */
const char *kw_errdetail(int code);

/* Forget this thread's detail. */
void kw_errclear(void);

#endif
