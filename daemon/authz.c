/*
 * authz.c - who may do what.
 *
 * With a policy file (configuration key `policy`), every request but
 * health, whoami and metrics is decided by the policy from the caller's
 * kernel-verified identity; root too is subject to it.  Without one, only
 * root and the daemon's own uid may do anything.  Never allow by default.
 *
 * The policy in force is swapped atomically on reload (SIGHUP or POST
 * /v1/policy/reload); a policy with any error is refused and the old one
 * stays in force.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "kw_error.h"
#include "policy/policy.h"
#include "daemon/audit_glue.h"
#include "daemon/kwd.h"
#include "daemon/log.h"

/* Whether this process may read /proc/PID/exe of another user's process:
 * the kernel asks for CAP_SYS_PTRACE (root has it unless it was dropped). */
static int
others_exe_visible(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct c[_LINUX_CAPABILITY_U32S_3];

	memset(c, 0, sizeof(c));
	if (syscall(SYS_capget, &h, c) != 0)
		return 0;
	return (c[CAP_TO_INDEX(CAP_SYS_PTRACE)].effective & CAP_TO_MASK(CAP_SYS_PTRACE)) != 0;
}

/* A policy that names callers by executable, in a daemon that cannot see
 * the executable of another user's process: say so, and what it means. */
static void
exe_rules_warn(const struct policy *p)
{
	const char *name = NULL;
	unsigned line = 0;
	size_t n;

	if ((n = policy_exe_rules(p, &name, &line)) == 0 || others_exe_visible())
		return;
	log_warn("policy: %zu rule%s name%s callers by executable (the first: rule '%s' at "
	    "line %u), but keywardend (uid %u) lacks CAP_SYS_PTRACE, so the kernel hides the "
	    "executable of another user's process from it: for such a caller an allow by "
	    "executable never matches and a deny by executable always does; give the service "
	    "CAP_SYS_PTRACE (see keywardend.service) or name those callers by user and unit",
	    n, n == 1 ? "" : "s", n == 1 ? "s" : "", name != NULL ? name : "(unnamed)", line,
	    (unsigned)geteuid());
}

static int
authz_action(enum kwd_action a, enum policy_action *out)
{
	switch (a) {
	case KWD_A_SECRET_GET: *out = POLICY_A_SECRET_GET; return 0;
	case KWD_A_SECRET_LIST: *out = POLICY_A_SECRET_LIST; return 0;
	case KWD_A_SECRET_SET: *out = POLICY_A_SECRET_SET; return 0;
	case KWD_A_SECRET_UPDATE: *out = POLICY_A_SECRET_UPDATE; return 0;
	case KWD_A_SECRET_DELETE: *out = POLICY_A_SECRET_DELETE; return 0;
	case KWD_A_SECRET_RECOVER: *out = POLICY_A_SECRET_RECOVER; return 0;
	case KWD_A_SECRET_PURGE: *out = POLICY_A_SECRET_PURGE; return 0;
	case KWD_A_SECRET_BACKUP: *out = POLICY_A_SECRET_BACKUP; return 0;
	case KWD_A_SECRET_RESTORE: *out = POLICY_A_SECRET_RESTORE; return 0;
	case KWD_A_VAULT_STATUS: *out = POLICY_A_VAULT_STATUS; return 0;
	case KWD_A_AUDIT_STREAM: *out = POLICY_A_AUDIT_STREAM; return 0;
	case KWD_A_AUDIT_READ: *out = POLICY_A_AUDIT_READ; return 0;
	case KWD_A_POLICY_RELOAD: *out = POLICY_A_POLICY_RELOAD; return 0;
	case KWD_A_POLICY_EXPLAIN: *out = POLICY_A_POLICY_EXPLAIN; return 0;
	case KWD_A_KEY_DATAKEY: *out = POLICY_A_KEY_DATAKEY; return 0;
	case KWD_A_KEY_WRAP: *out = POLICY_A_KEY_WRAP; return 0;
	case KWD_A_KEY_UNWRAP: *out = POLICY_A_KEY_UNWRAP; return 0;
	case KWD_A_KEY_ENCRYPT: *out = POLICY_A_KEY_ENCRYPT; return 0;
	case KWD_A_KEY_DECRYPT: *out = POLICY_A_KEY_DECRYPT; return 0;
	case KWD_A_KEY_SIGN: *out = POLICY_A_KEY_SIGN; return 0;
	case KWD_A_KEY_VERIFY: *out = POLICY_A_KEY_VERIFY; return 0;
	case KWD_A_KEY_CREATE: *out = POLICY_A_KEY_CREATE; return 0;
	case KWD_A_VAULT_ROTATE: *out = POLICY_A_VAULT_ROTATE; return 0;
	case KWD_A_VAULT_RETIRE: *out = POLICY_A_VAULT_RETIRE; return 0;
	case KWD_A_NONE: case KWD_A_SERVICE: break;
	}
	return -EINVAL;
}

void
authz_identity(const struct peer_identity *w, struct policy_identity *id)
{
	memset(id, 0, sizeof(*id));
	id->known = POLICY_ID_UID | POLICY_ID_GID | POLICY_ID_PID;
	id->uid = w->uid;
	id->gid = w->gid;
	id->pid = w->pid;
	if (w->shared != NULL && w->shared->groups_known) {
		/* borrowed from w, which holds a reference to them;
		 * sorted as policy_decide wants when they were read */
		id->known |= POLICY_ID_GROUPS;
		id->ngroups = w->shared->ngroups;
		id->groups = w->shared->groups;
	}
	if (w->exe[0] != '\0') {
		id->known |= POLICY_ID_EXE;
		id->exe = w->exe;
	}
	if (w->unit[0] != '\0') {
		id->known |= POLICY_ID_UNIT;
		id->unit = w->unit;
	}
}

void
kwd_authorize_as(struct kwd *d, const struct kwd_req *r, enum kwd_action action, const char *name,
    struct kwd_decision *out)
{
	struct policy_identity id;
	struct policy_decision pd;
	enum policy_action a;
	int vault_scoped;

	pthread_rwlock_rdlock(&d->policy_lock);
	if (d->policy == NULL) {
		pthread_rwlock_unlock(&d->policy_lock);
		if (r->who.uid == 0 || r->who.uid == geteuid()) {
			out->allow = 1;
			snprintf(out->reason, sizeof(out->reason),
			    "allowed: no policy is configured and the caller is %s",
			    r->who.uid == 0 ? "root" : "the daemon's own user");
			return;
		}
		out->allow = 0;
		snprintf(out->reason, sizeof(out->reason),
		    "denied: no policy is configured, so only root and the daemon's user are allowed");
		return;
	}
	out->allow = 0;
	snprintf(out->policy_hash, sizeof(out->policy_hash), "%s", policy_hash(d->policy));
	if (authz_action(action, &a) != 0) {
		pthread_rwlock_unlock(&d->policy_lock);
		snprintf(out->reason, sizeof(out->reason), "denied: not an action the policy knows");
		return;
	}
	authz_identity(&r->who, &id);
	vault_scoped = action != KWD_A_AUDIT_STREAM && action != KWD_A_AUDIT_READ &&
	    action != KWD_A_POLICY_RELOAD && action != KWD_A_POLICY_EXPLAIN && r->vault[0] != '\0';
	policy_decide(d->policy, &id, a, vault_scoped ? r->vault : NULL,
	    name != NULL && name[0] != '\0' ? name : NULL, &pd);
	out->allow = pd.allow;
	policy_decision_format(&pd, out->reason, sizeof(out->reason));
	pthread_rwlock_unlock(&d->policy_lock);
}

void
kwd_authorize(struct kwd *d, const struct kwd_req *r, struct kwd_decision *out)
{
	kwd_authorize_as(d, r, r->action, r->name, out);
}

/* Load the configured policy; swap it in if it is whole.  The errors go to
 * the log and, when errs_out is given, into a JSON array for the caller. */
static int
policy_reload_locked(struct kwd *d, json_t **errs_out)
{
	struct policy *p = NULL, *old;
	struct policy_errors *errs = NULL;
	json_t *arr = errs_out ? json_array() : NULL;
	char line[1024], hash[72];
	int e;

	if (d->cfg->policy_file == NULL)
		return 0;
	e = policy_load(d->cfg->policy_file, NULL, &p, &errs);
	if (e != 0) {
		for (size_t i = 0; errs != NULL && i < errs->n; i++) {
			policy_error_format(&errs->v[i], line, sizeof(line));
			log_err("policy: %s", line);
			if (arr != NULL)
				json_array_append_new(arr, json_string(line));
		}
		if (errs == NULL || errs->n == 0) {
			log_err("policy: %s: %s", d->cfg->policy_file, kw_strerror(e));
			if (arr != NULL)
				json_array_append_new(arr, json_pack("s+", d->cfg->policy_file, ": cannot be loaded"));
		}
		policy_errors_free(errs);
		if (errs_out != NULL)
			*errs_out = arr;
		return e;
	}
	snprintf(hash, sizeof(hash), "%s", policy_hash(p));
	/* Once the daemon runs, a policy takes effect only after the log
	 * holds a durable record of it: a change nobody can see in the audit
	 * trail must not decide anything.  (At start the log is not open yet;
	 * its "start" event names the policy.) */
	if (d->audit != NULL) {
		char prev[72];
		pthread_rwlock_rdlock(&d->policy_lock);
		snprintf(prev, sizeof(prev), "%s", d->policy_hash);
		pthread_rwlock_unlock(&d->policy_lock);
		if (audit_glue_admin(d, "policy.reload", json_pack("{s:s,s:s,s:s}", "result", "ok",
		    "policy_hash", hash, "previous_policy_hash", prev)) != 0) {
			log_err("policy %s not put in force: the audit log cannot record it; the old "
			    "policy stays in force", d->cfg->policy_file);
			policy_free(p);
			if (arr != NULL) {
				json_array_append_new(arr, json_string("the audit log cannot record the "
				    "new policy, so the old one stays in force"));
				*errs_out = arr;
			}
			return KW_E_AUDIT;
		}
	}
	pthread_rwlock_wrlock(&d->policy_lock);
	old = d->policy;
	d->policy = p;
	snprintf(d->policy_hash, sizeof(d->policy_hash), "%s", hash);
	pthread_rwlock_unlock(&d->policy_lock);
	policy_free(old);
	log_notice("policy %s in force: %zu rules, sha256 %s", d->cfg->policy_file,
	    policy_rule_count(p), hash);
	{
		/* p stays in force until the next reload, which waits for
		 * this one (reload_mu) */
		struct policy_errors *warns = NULL;
		if (policy_lint(p, &warns) == 0)
			for (size_t i = 0; warns != NULL && i < warns->n; i++) {
				policy_error_format(&warns->v[i], line, sizeof(line));
				log_warn("policy: %s", line);
			}
		policy_errors_free(warns);
		exe_rules_warn(p);
	}
	if (errs_out != NULL)
		*errs_out = arr;
	return 0;
}

/* One reload at a time (the API and SIGHUP): otherwise two could record
 * their policies in one order and put them in force in the other. */
int
kwd_policy_reload(struct kwd *d, json_t **errs_out)
{
	static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;
	int e;

	pthread_mutex_lock(&reload_mu);
	e = policy_reload_locked(d, errs_out);
	pthread_mutex_unlock(&reload_mu);
	return e;
}

void
kwd_policy_free(struct kwd *d)
{
	policy_free(d->policy);
	d->policy = NULL;
}
