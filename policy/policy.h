/*
 * policy.h - keywarden's access policy: YAML in, an immutable compiled
 * structure out, and decisions (identity, action, vault, name) -> allow or
 * deny plus the rule that decided.
 *
 * The language is described in policy/README.md.  In short:
 *
 *   principals:                 # named sets of callers
 *     devs: { group: devs }
 *   rules:
 *     - name: devs-read-prod
 *       who: devs
 *       allow: [secrets-reader]  # built-in roles, own roles, or actions
 *       vault: prod
 *       names: [api/key]
 *
 * An explicit deny beats any allow; with no matching rule the answer is
 * deny.  policy/ does no I/O beyond reading the policy file and resolving
 * user and group names (at load, never when deciding).  A loaded policy is
 * never modified again: the daemon may share it between threads and swap
 * a new one in by pointer.  policy_decide() allocates nothing.
 */
#ifndef KW_POLICY_H
#define KW_POLICY_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- actions ---------------------------------------------------------------- */

/* Written "area.verb" in the policy: secret.get, key.wrap, vault.rotate,
 * audit.stream, policy.explain.  "secret.*" means every secret action and
 * "*" every action. */
enum policy_action {
	POLICY_A_SECRET_GET = 0,
	POLICY_A_SECRET_LIST,
	POLICY_A_SECRET_SET,
	POLICY_A_SECRET_UPDATE,
	POLICY_A_SECRET_DELETE,
	POLICY_A_SECRET_RECOVER,
	POLICY_A_SECRET_PURGE,
	POLICY_A_SECRET_BACKUP,
	POLICY_A_SECRET_RESTORE,
	POLICY_A_KEY_DATAKEY,
	POLICY_A_KEY_WRAP,
	POLICY_A_KEY_UNWRAP,
	POLICY_A_KEY_ENCRYPT,
	POLICY_A_KEY_DECRYPT,
	POLICY_A_KEY_SIGN,
	POLICY_A_KEY_VERIFY,
	POLICY_A_KEY_CREATE,         /* create or rotate a signing key */
	POLICY_A_VAULT_CREATE,
	POLICY_A_VAULT_ROTATE,
	POLICY_A_VAULT_RETIRE,
	POLICY_A_VAULT_STATUS,
	POLICY_A_AUDIT_READ,
	POLICY_A_AUDIT_STREAM,
	POLICY_A_POLICY_RELOAD,
	POLICY_A_POLICY_EXPLAIN,
	POLICY_A_COUNT
};

/* "secret.get" -> POLICY_A_SECRET_GET.  Returns 0, or -EINVAL for anything
 * that is not exactly one action (wildcards included). */
int policy_action_parse(const char *s, enum policy_action *out);

/* POLICY_A_SECRET_GET -> "secret.get"; "unknown" for a bad value. */
const char *policy_action_name(enum policy_action a);

/* ---- the caller ------------------------------------------------------------- */

/* Which fields of struct policy_identity the daemon could determine.  A
 * rule that needs a field that is not known never matches. */
#define POLICY_ID_UID    0x01u
#define POLICY_ID_GID    0x02u
#define POLICY_ID_GROUPS 0x04u   /* the supplementary groups are complete */
#define POLICY_ID_PID    0x08u
#define POLICY_ID_EXE    0x10u
#define POLICY_ID_UNIT   0x20u

/* Filled in by the daemon from kernel-verified credentials.  The strings
 * and the groups are borrowed for the time of one call.
 *
 * groups must be in ascending order, as policy_groups_sort leaves them:
 * a decision looks a group up by binary search, so that a caller in
 * thousands of groups costs a few comparisons per rule.  In any other
 * order a group may not be found, and a rule that names it would neither
 * allow nor deny.  Sort once, when the list is made (per connection), not
 * per decision. */
struct policy_identity {
	unsigned known;              /* POLICY_ID_* bits */
	uid_t uid;
	gid_t gid;                   /* primary group */
	size_t ngroups;              /* any number (the kernel's NGROUPS_MAX) */
	const gid_t *groups;         /* ngroups supplementary groups, ascending */
	pid_t pid;
	const char *exe;             /* absolute path of the executable */
	const char *unit;            /* systemd unit, "billing.service" */
};

/* Put the n groups of v in the order policy_identity wants: ascending
 * (duplicates may stay).  O(n log n); allocates nothing. */
void policy_groups_sort(gid_t *v, size_t n);

/* ---- loading ---------------------------------------------------------------- */

struct policy;

/* One problem found in a policy file.  line and col count from 1; both are
 * 0 for a problem with the file itself (missing, owner, mode, size). */
struct policy_error {
	char *file;
	unsigned line, col;
	char *path;                  /* YAML path "rules[3].allow", "" if none */
	char *msg;                   /* "unknown action 'secret.gte'" */
};

/* Every problem found, in file order.  Owned by the caller. */
struct policy_errors {
	size_t n;
	struct policy_error *v;
};

/* Accepts NULL. */
void policy_errors_free(struct policy_errors *e);

/* Warnings about a loaded policy, in the errors' form (*out NULL when there
 * are none): rules that are valid but unsafe.  Today: an allow that names a
 * caller by executable alone (no user, no unit), which any user can match by
 * connecting and then exec'ing that binary while a child keeps the
 * connection.  0, or -ENOMEM. */
int policy_lint(const struct policy *p, struct policy_errors **out);

/* How many rules name a caller by executable (allow or deny); the first
 * one's name and line into *name (the policy's own string, valid while p
 * is) and *line when there is one. */
size_t policy_exe_rules(const struct policy *p, const char **name, unsigned *line);

/* "policy.yaml:14:9: rules[3].allow[0]: unknown action 'secret.gte'", or
 * "policy.yaml: <msg>" for a file-level problem.  Always NUL-terminates;
 * returns what snprintf returns. */
int policy_error_format(const struct policy_error *e, char *buf, size_t len);
/* Each of e (NULL: none) formatted so, one a line, to f. */
void policy_errors_print(FILE *f, const struct policy_errors *e);

struct policy_load_opts {
	/* Besides root, the one owner a policy file may have: the daemon's
	 * uid.  The file must not be writable by group or other either. */
	uid_t daemon_uid;
	/* Name resolvers, for tests and for callers with their own user
	 * database; NULL means getpwnam_r()/getgrnam_r().  Return 0 and set
	 * *out, or -ENOENT for "no such user/group", or another -errno. */
	int (*lookup_user)(void *arg, const char *name, uid_t *out);
	int (*lookup_group)(void *arg, const char *name, gid_t *out);
	void *lookup_arg;
};

#define POLICY_MAX_FILE (4u << 20)   /* a larger file is refused */

/*
 * Read, check and compile the policy at path.  The file must be a regular
 * file owned by root or o->daemon_uid, not writable by group or other, at
 * most POLICY_MAX_FILE bytes.  On success *out is a new policy (free with
 * policy_free) and *errs is left NULL.  On failure returns KW_E_POLICY (the
 * file is invalid: every problem is in *errs), -ENOENT / -EACCES / ... (the
 * file cannot be read: one entry in *errs says why) or -ENOMEM (*errs may be
 * NULL); *out is untouched.  errs may be NULL if the caller does not want
 * them; kw_errdetail() then still holds the first problem, formatted, with
 * "(and N more)".  o may be NULL: the daemon's uid is then geteuid().
 * Name lookups happen here, never when deciding.
 */
int policy_load(const char *path, const struct policy_load_opts *o,
    struct policy **out, struct policy_errors **errs);

/* Accepts NULL. */
void policy_free(struct policy *p);

/* SHA-256 of the file's bytes as read, 64 lowercase hex digits. */
const char *policy_hash(const struct policy *p);

/* The path the policy was loaded from, and its number of rules. */
const char *policy_file(const struct policy *p);
size_t policy_rule_count(const struct policy *p);

/* ---- deciding --------------------------------------------------------------- */

struct policy_decision {
	int allow;                   /* 1 allow, 0 deny */
	const char *rule;            /* deciding rule's name; NULL: no rule allows it */
	const char *file;            /* pointers into the policy: valid while it lives */
	unsigned line;
};

/*
 * Decide whether id may do a on vault/name; id->groups must be in
 * ascending order (policy_groups_sort).  vault is NULL for an action that is
 * not about one vault (audit.*, policy.*): only rules with vault '*' match
 * it.  name is NULL for an action on the vault as a whole
 * (secret.list, vault.*, key.* without a key name): only rules without
 * `names` (or with '**') match it.  Never allocates, never blocks.
 * Returns 0 and fills out (allow or deny), or -EINVAL for a bad argument
 * (out is then a deny with no rule).
 */
int policy_decide(const struct policy *p, const struct policy_identity *id,
    enum policy_action a, const char *vault, const char *name,
    struct policy_decision *out);

/* "allowed by rule 'devs-read-prod' at /etc/keywarden/policy.yaml:14",
 * "denied by rule 'x' at f:3", "denied: no rule allows it".  Returns what
 * snprintf returns. */
int policy_decision_format(const struct policy_decision *d, char *buf, size_t len);

/* ---- explaining ------------------------------------------------------------- */

/* One principal spec of a rule that matches (action, vault, name), for
 * `keywarden policy who-can`.  text reads "group devs (gid 1001)",
 * "exe /usr/bin/billing and user billing (uid 990)"; deny is 1 for the
 * specs of deny rules, which take precedence over any allow. */
struct policy_who {
	int deny;
	const char *principal;
	const char *rule;
	const char *file;
	unsigned line;
};

/* Call cb once per principal spec of every rule that could decide the
 * request, deny rules first, each in file order.  Stops and returns cb's
 * value when it is non-zero; returns 0 otherwise, -EINVAL for bad
 * arguments. */
int policy_who_can(const struct policy *p, enum policy_action a,
    const char *vault, const char *name,
    int (*cb)(void *arg, const struct policy_who *w), void *arg);

#endif
