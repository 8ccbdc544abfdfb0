/* Unit tests for policy/: the language, its errors, and decisions. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "kw_error.h"
#include "policy/policy.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

static char dir[256];
static char example[512];

/* Copy tests/policy/<name> into the temporary directory with mode 0600, so
 * that a checkout with a group-writable umask still passes the mode check.
 * Returns 0 or -1. */
static int
copy_fixture(const char *name, char *out, size_t outlen)
{
	const char *src = getenv("KW_TOP_SRCDIR");
	char from[512], *text;
	FILE *f;
	long n;
	int rc = -1;

	snprintf(from, sizeof(from), "%s/tests/policy/%s", src != NULL ? src : "..", name);
	snprintf(out, outlen, "%s/%s", dir, name);
	if ((f = fopen(from, "r")) == NULL) {
		fprintf(stderr, "test_policy: cannot read %s (is KW_TOP_SRCDIR set?)\n", from);
		return -1;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (text = calloc(1, (size_t)n + 1)) != NULL) {
		if (fread(text, 1, (size_t)n, f) == (size_t)n)
			rc = kwt_write_file(out, text, 0600);
		free(text);
	}
	fclose(f);
	return rc;
}

/* Users and groups of the example, which a test box does not have. */
static int
fake_user(void *arg, const char *name, uid_t *out)
{
	(void)arg;
	if (strcmp(name, "root") == 0)
		*out = 0;
	else if (strcmp(name, "billing") == 0)
		*out = 990;
	else
		return -ENOENT;
	return 0;
}

static int
fake_group(void *arg, const char *name, gid_t *out)
{
	(void)arg;
	if (strcmp(name, "devs") == 0)
		*out = 2001;
	else if (strcmp(name, "leads") == 0)
		*out = 2002;
	else if (strcmp(name, "auditors") == 0)
		*out = 2003;
	else
		return -ENOENT;
	return 0;
}

static const struct policy_load_opts fake_opts = {
	.lookup_user = fake_user, .lookup_group = fake_group,
};

static void
print_errors(const struct policy_errors *e)
{
	char line[1024];

	for (size_t i = 0; e != NULL && i < e->n; i++) {
		policy_error_format(&e->v[i], line, sizeof(line));
		fprintf(stderr, "  got: %s\n", line);
	}
}

/* Write text to <dir>/name with mode, load it; returns policy_load's code. */
static int
load_text(const char *name, const char *text, int mode, const struct policy_load_opts *o,
    struct policy **p, struct policy_errors **e, char *path, size_t plen)
{
	struct policy_load_opts oo;

	snprintf(path, plen, "%s/%s", dir, name);
	CU_ASSERT_EQUAL_FATAL(kwt_write_file(path, text, mode), 0);
	oo = o != NULL ? *o : (struct policy_load_opts){ 0 };
	oo.daemon_uid = geteuid();
	*p = NULL;
	*e = NULL;
	return policy_load(path, &oo, p, e);
}

/* Is there an error exactly at line:col with this path and a message
 * containing msg?  The formatted line must read file:line:col: path: msg. */
static int
has_error(const struct policy_errors *e, const char *file, unsigned line, unsigned col,
    const char *path, const char *msg)
{
	char want[1024], got[1024];

	if (path[0] != '\0')
		snprintf(want, sizeof(want), "%s:%u:%u: %s: ", file, line, col, path);
	else
		snprintf(want, sizeof(want), "%s:%u:%u: ", file, line, col);
	for (size_t i = 0; e != NULL && i < e->n; i++) {
		policy_error_format(&e->v[i], got, sizeof(got));
		if (strncmp(got, want, strlen(want)) == 0 && strstr(got, msg) != NULL)
			return 1;
	}
	fprintf(stderr, "\n  wanted: %s...%s\n", want, msg);
	print_errors(e);
	return 0;
}

static struct policy_identity
who(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups, const char *exe, const char *unit)
{
	struct policy_identity id;

	memset(&id, 0, sizeof(id));
	id.known = POLICY_ID_UID | POLICY_ID_GID | POLICY_ID_GROUPS | POLICY_ID_PID;
	id.uid = uid;
	id.gid = gid;
	id.pid = 4242;
	id.groups = groups;   /* the caller's array, which outlives id's use */
	id.ngroups = ngroups;
	for (size_t i = 1; i < ngroups; i++)
		if (groups[i - 1] > groups[i])
			CU_FAIL_FATAL("groups out of order: policy_decide wants them sorted");
	if (exe != NULL) {
		id.exe = exe;
		id.known |= POLICY_ID_EXE;
	}
	if (unit != NULL) {
		id.unit = unit;
		id.known |= POLICY_ID_UNIT;
	}
	return id;
}

/* Decide and return the sentence (static buffer). */
static const char *
decide(const struct policy *p, const struct policy_identity *id, const char *action,
    const char *vault, const char *name)
{
	static char buf[512];
	struct policy_decision d;
	enum policy_action a;

	CU_ASSERT_EQUAL_FATAL(policy_action_parse(action, &a), 0);
	CU_ASSERT_EQUAL_FATAL(policy_decide(p, id, a, vault, name, &d), 0);
	policy_decision_format(&d, buf, sizeof(buf));
	return buf;
}

static void
expect(const struct policy *p, const struct policy_identity *id, const char *action,
    const char *vault, const char *name, const char *want)
{
	const char *got = decide(p, id, action, vault, name);

	if (strcmp(got, want) != 0)
		fprintf(stderr, "\n  %s %s/%s: got '%s'\n  wanted '%s'\n", action,
		    vault != NULL ? vault : "-", name != NULL ? name : "-", got, want);
	CU_ASSERT_STRING_EQUAL(got, want);
}
#define EXPECT expect

static struct policy *
load_example(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	struct policy_load_opts o = fake_opts;
	int r;

	o.daemon_uid = geteuid();
	r = policy_load(example, &o, &p, &e);
	if (r != 0)
		print_errors(e);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_PTR_NULL(e);
	policy_errors_free(e);
	return p;
}

static char *
sentence(const char *verb, const char *rule, unsigned line)
{
	static char buf[2][768];
	static int k;

	k ^= 1;
	snprintf(buf[k], sizeof(buf[k]), "%s by rule '%s' at %s:%u", verb, rule, example, line);
	return buf[k];
}

/* ---- the two cases that motivate the product ------------------------------ */

static void
test_devs_read_leads_update(void)
{
	struct policy *p = load_example();
	const gid_t dev_groups[] = { 100, 2001 };
	const gid_t lead_groups[] = { 2001, 2002 };
	struct policy_identity dev = who(1001, 1001, dev_groups, 2, "/usr/bin/curl", NULL);
	struct policy_identity lead = who(1002, 1002, lead_groups, 2, NULL, NULL);
	struct policy_identity other = who(1003, 1003, NULL, 0, "/usr/bin/curl", NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	EXPECT(p, &dev, "secret.get", "prod", "api/key", sentence("allowed", "devs-read-prod-api-key", 15));
	EXPECT(p, &dev, "secret.set", "prod", "api/key", "denied: no rule allows it");
	EXPECT(p, &dev, "secret.update", "prod", "api/key", "denied: no rule allows it");
	EXPECT(p, &dev, "secret.get", "prod", "api/other", "denied: no rule allows it");
	EXPECT(p, &dev, "secret.get", "staging", "api/key", "denied: no rule allows it");
	EXPECT(p, &lead, "secret.set", "prod", "api/key", sentence("allowed", "leads-change-prod-api-key", 22));
	EXPECT(p, &lead, "secret.update", "prod", "api/key", sentence("allowed", "leads-change-prod-api-key", 22));
	EXPECT(p, &lead, "secret.get", "prod", "api/key", sentence("allowed", "devs-read-prod-api-key", 15));
	EXPECT(p, &lead, "secret.delete", "prod", "api/key", "denied: no rule allows it");
	EXPECT(p, &other, "secret.get", "prod", "api/key", "denied: no rule allows it");
	/* The primary group counts as much as a supplementary one. */
	{
		struct policy_identity prim = who(1004, 2002, NULL, 0, NULL, NULL);

		EXPECT(p, &prim, "secret.set", "prod", "api/key", sentence("allowed", "leads-change-prod-api-key", 22));
	}
	/* Groups the daemon could not read never match. */
	dev.known &= ~POLICY_ID_GROUPS;
	EXPECT(p, &dev, "secret.get", "prod", "api/key", "denied: no rule allows it");
	policy_free(p);
}

static void
test_only_billing_reads_db(void)
{
	struct policy *p = load_example();
	struct policy_identity by_exe = who(990, 990, NULL, 0, "/usr/lib/billing/billing-server", NULL);
	struct policy_identity other_exe = who(990, 990, NULL, 0, "/usr/bin/python3", NULL);
	struct policy_identity by_unit = who(990, 990, NULL, 0, NULL, "billing.service");
	struct policy_identity other_unit = who(990, 990, NULL, 0, NULL, "cron.service");
	struct policy_identity unknown = who(990, 990, NULL, 0, NULL, NULL);
	struct policy_identity root = who(0, 0, NULL, 0, "/usr/bin/curl", NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	EXPECT(p, &by_exe, "secret.get", "prod", "db/billing/connection", sentence("allowed", "billing-reads-db", 29));
	EXPECT(p, &other_exe, "secret.get", "prod", "db/billing/connection", "denied: no rule allows it");
	EXPECT(p, &by_unit, "secret.get", "prod", "db/billing/connection", sentence("allowed", "billing-reads-db", 29));
	EXPECT(p, &other_unit, "secret.get", "prod", "db/billing/connection", "denied: no rule allows it");
	EXPECT(p, &unknown, "secret.get", "prod", "db/billing/connection", "denied: no rule allows it");
	EXPECT(p, &root, "secret.get", "prod", "db/billing/connection", "denied: no rule allows it");
	EXPECT(p, &by_exe, "secret.set", "prod", "db/billing/connection", "denied: no rule allows it");
	EXPECT(p, &by_exe, "secret.get", "prod", "api/key", "denied: no rule allows it");
	policy_free(p);
}

static void
test_deny_beats_allow(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	char path[512];
	struct policy_identity root = who(0, 0, NULL, 0, NULL, NULL);
	struct policy_identity aud = who(1005, 2003, NULL, 0, NULL, NULL);

	/* The example: the deny comes after the allow and still wins. */
	p = load_example();
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	EXPECT(p, &aud, "secret.purge", "prod", "api/key", sentence("denied", "no-purge-in-prod", 36));
	EXPECT(p, &aud, "audit.stream", NULL, NULL, sentence("allowed", "auditors-read-the-log", 42));
	EXPECT(p, &aud, "secret.list", "prod", NULL, sentence("allowed", "auditors-read-the-log", 42));
	EXPECT(p, &aud, "secret.get", "prod", "api/key", "denied: no rule allows it");
	policy_free(p);

	CU_ASSERT_EQUAL(load_text("deny.yaml",
	    "rules:\n"
	    "  - name: root-all\n"
	    "    who: {user: root}\n"
	    "    allow: administrator\n"
	    "    vault: '*'\n"
	    "  - name: no-root-secrets\n"
	    "    who: {user: 0}\n"
	    "    deny: [secret.get]\n"
	    "    vault: prod\n"
	    "    names: ['db/**']\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	{
		char want[600];

		snprintf(want, sizeof(want), "denied by rule 'no-root-secrets' at %s:6", path);
		EXPECT(p, &root, "secret.get", "prod", "db/x", want);
		snprintf(want, sizeof(want), "allowed by rule 'root-all' at %s:2", path);
		EXPECT(p, &root, "secret.get", "prod", "api/x", want);
		EXPECT(p, &root, "secret.get", "dev", "db/x", want);
		EXPECT(p, &root, "vault.create", "new", NULL, want);
		EXPECT(p, &root, "policy.reload", NULL, NULL, want);
	}
	policy_free(p);
}

/* An allow by executable alone is valid, and warned about; with a user or
 * a unit, or in a deny, it is not. */
static void
test_lint_exe_alone(void)
{
	struct policy *p = load_example();
	struct policy_errors *w = NULL, *e = NULL;
	char line[1024], path[512];

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(policy_lint(p, &w), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	CU_ASSERT_EQUAL(w->n, 1);
	policy_error_format(&w->v[0], line, sizeof(line));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "billing-reads-db"));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "executable alone"));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, ".who"));
	policy_errors_free(w);
	policy_free(p);

	p = NULL;
	CU_ASSERT_EQUAL(load_text("lint.yaml",
	    "rules:\n"
	    "  - name: pinned\n"
	    "    who: {user: 1000, exe: /usr/bin/x}\n"
	    "    allow: secret.get\n"
	    "    vault: v\n"
	    "  - name: by-unit\n"
	    "    who: [{unit: x.service}]\n"
	    "    allow: secret.get\n"
	    "    vault: v\n"
	    "  - name: deny-exe\n"
	    "    who: {exe: /usr/bin/curl}\n"
	    "    deny: secret.get\n"
	    "    vault: v\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	w = (struct policy_errors *)1;
	CU_ASSERT_EQUAL(policy_lint(p, &w), 0);
	CU_ASSERT_PTR_NULL(w);
	policy_free(p);
}

/* A deny cannot be escaped by hiding from it: what the daemon could not
 * learn about the caller (an executable, the groups) does not rule the
 * caller out of a deny rule, while it never lets an allow rule match. */
static void
test_deny_unknown_fails_closed(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	char path[512], deny_exe[600], deny_grp[600], allow[600];
	gid_t other = 77, member = 4242;
	struct policy_identity known_exe = who(1000, 1000, &other, 1, "/usr/bin/other", NULL);
	struct policy_identity no_exe = who(1000, 1000, &other, 1, NULL, NULL);
	struct policy_identity no_groups = who(1000, 1000, NULL, 0, "/usr/bin/other", NULL);
	struct policy_identity in_group = who(1000, 1000, &member, 1, "/usr/bin/other", NULL);

	no_groups.known &= ~POLICY_ID_GROUPS;
	CU_ASSERT_EQUAL(load_text("deny-unknown.yaml",
	    "rules:\n"
	    "  - name: user-reads\n"
	    "    who: {user: 1000}\n"
	    "    allow: secrets-reader\n"
	    "    vault: v\n"
	    "  - name: not-through-curl\n"
	    "    who: {exe: /usr/bin/curl}\n"
	    "    deny: secret.get\n"
	    "    vault: v\n"
	    "  - name: not-contractors\n"
	    "    who: {group: 4242}\n"
	    "    deny: secret.get\n"
	    "    vault: v\n"
	    "    names: ['g/**']\n"
	    "  - name: curl-reads-pub\n"
	    "    who: {exe: /usr/bin/curl}\n"
	    "    allow: secret.get\n"
	    "    vault: pub\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(deny_exe, sizeof(deny_exe), "denied by rule 'not-through-curl' at %s:6", path);
	snprintf(deny_grp, sizeof(deny_grp), "denied by rule 'not-contractors' at %s:10", path);
	snprintf(allow, sizeof(allow), "allowed by rule 'user-reads' at %s:2", path);
	EXPECT(p, &known_exe, "secret.get", "v", "x", allow);
	EXPECT(p, &no_exe, "secret.get", "v", "x", deny_exe);
	EXPECT(p, &known_exe, "secret.get", "v", "g/x", allow);
	EXPECT(p, &in_group, "secret.get", "v", "g/x", deny_grp);
	EXPECT(p, &no_groups, "secret.get", "v", "g/x", deny_grp);
	/* an unknown executable still matches no allow rule */
	EXPECT(p, &no_exe, "secret.get", "pub", "x", "denied: no rule allows it");
	policy_free(p);
}

static void
test_default_deny(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	char path[512];
	struct policy_identity root = who(0, 0, NULL, 0, "/bin/sh", "x.service");
	struct policy_decision d;

	CU_ASSERT_EQUAL(load_text("empty.yaml", "rules: []\n", 0600, NULL, &p, &e, path, sizeof(path)), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	for (int a = 0; a < POLICY_A_COUNT; a++) {
		CU_ASSERT_EQUAL(policy_decide(p, &root, (enum policy_action)a, "prod", "x", &d), 0);
		CU_ASSERT_EQUAL(d.allow, 0);
		CU_ASSERT_PTR_NULL(d.rule);
	}
	CU_ASSERT_EQUAL(policy_rule_count(p), 0);
	/* sha256 of "rules: []\n" */
	CU_ASSERT_STRING_EQUAL(policy_hash(p),
	    "e0dfa70eb69d47fe9cb2be8a4fcd53e74cf7fe26fcbb1f06912b57a9c028e4e0");
	/* Bad arguments: a deny with no rule, and -EINVAL. */
	CU_ASSERT_EQUAL(policy_decide(p, NULL, POLICY_A_SECRET_GET, "prod", "x", &d), -EINVAL);
	CU_ASSERT_EQUAL(d.allow, 0);
	CU_ASSERT_EQUAL(policy_decide(p, &root, POLICY_A_COUNT, "prod", "x", &d), -EINVAL);
	CU_ASSERT_EQUAL(d.allow, 0);
	policy_free(p);
	policy_free(NULL);
	policy_errors_free(NULL);
}

/* ---- name patterns ---------------------------------------------------------- */

static void
test_patterns(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	char path[512], yes[3][600];
	struct policy_identity u = who(5000, 5000, NULL, 0, NULL, NULL);
	const char *no = "denied: no rule allows it";

	CU_ASSERT_EQUAL(load_text("pat.yaml",
	    "rules:\n"
	    "  - name: one\n"                                   /* line 2 */
	    "    who: {user: 5000}\n"
	    "    allow: secret.get\n"
	    "    vault: v\n"
	    "    names: ['db/*', 'app/key', 'ro/*-ro']\n"
	    "  - name: deep\n"                                  /* line 7 */
	    "    who: {user: 5000}\n"
	    "    allow: secret.get\n"
	    "    vault: v\n"
	    "    names: ['api/**', 'a/**/z']\n"
	    "  - name: all\n"                                   /* line 12 */
	    "    who: {user: 5000}\n"
	    "    allow: secret.list\n"
	    "    vault: v\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(yes[0], sizeof(yes[0]), "allowed by rule 'one' at %s:2", path);
	snprintf(yes[1], sizeof(yes[1]), "allowed by rule 'deep' at %s:7", path);
	snprintf(yes[2], sizeof(yes[2]), "allowed by rule 'all' at %s:12", path);
	/* A star inside a segment. */
	EXPECT(p, &u, "secret.get", "v", "db/a", yes[0]);
	EXPECT(p, &u, "secret.get", "v", "db/a/b", no);
	EXPECT(p, &u, "secret.get", "v", "db", no);
	EXPECT(p, &u, "secret.get", "v", "dbx/a", no);
	/* exact */
	EXPECT(p, &u, "secret.get", "v", "app/key", yes[0]);
	EXPECT(p, &u, "secret.get", "v", "app/key2", no);
	EXPECT(p, &u, "secret.get", "v", "app/ke", no);
	EXPECT(p, &u, "secret.get", "v", "app", no);
	/* '*' inside a segment */
	EXPECT(p, &u, "secret.get", "v", "ro/db-ro", yes[0]);
	EXPECT(p, &u, "secret.get", "v", "ro/db-rw", no);
	EXPECT(p, &u, "secret.get", "v", "ro/a/x-ro", no);
	/* A double star in the middle: one or more segments. */
	EXPECT(p, &u, "secret.get", "v", "api/x", yes[1]);
	EXPECT(p, &u, "secret.get", "v", "api/x/y/z", yes[1]);
	EXPECT(p, &u, "secret.get", "v", "api", no);
	EXPECT(p, &u, "secret.get", "v", "apix/y", no);
	/* '**' in the middle: one or more segments */
	EXPECT(p, &u, "secret.get", "v", "a/b/z", yes[1]);
	EXPECT(p, &u, "secret.get", "v", "a/b/c/z", yes[1]);
	EXPECT(p, &u, "secret.get", "v", "a/z", no);
	EXPECT(p, &u, "secret.get", "v", "a/b/z/q", no);
	/* A request without a name matches only rules without names. */
	EXPECT(p, &u, "secret.get", "v", NULL, no);
	EXPECT(p, &u, "secret.list", "v", NULL, yes[2]);
	EXPECT(p, &u, "secret.list", "v", "any/thing", yes[2]);
	/* Another vault, or none. */
	EXPECT(p, &u, "secret.get", "w", "db/a", no);
	EXPECT(p, &u, "secret.list", NULL, NULL, no);
	policy_free(p);
}

/* Rules found by the name index and rules scanned still decide in file
 * order: the first matching deny, else the first matching allow. */
static void
test_file_order(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	char path[512], want[600];
	struct policy_identity u = who(5000, 5000, NULL, 0, NULL, NULL);

	CU_ASSERT_EQUAL(load_text("order.yaml",
	    "rules:\n"
	    "  - {name: a-exact, who: {user: 5000}, allow: secret.get, vault: v, names: a/k}\n"
	    "  - {name: any-k, who: {user: 5000}, allow: secret.get, vault: v, names: '*/k'}\n"
	    "  - {name: b-exact, who: {user: 5000}, allow: secret.get, vault: v, names: [x/y, b/k]}\n"
	    "  - {name: star-deny, who: '*', deny: secret.get, vault: '*', names: '*/secret'}\n"
	    "  - {name: c-deny, who: '*', deny: secret.get, vault: v, names: c/secret}\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(want, sizeof(want), "allowed by rule 'a-exact' at %s:2", path);
	EXPECT(p, &u, "secret.get", "v", "a/k", want);
	snprintf(want, sizeof(want), "allowed by rule 'any-k' at %s:3", path);
	EXPECT(p, &u, "secret.get", "v", "b/k", want);
	EXPECT(p, &u, "secret.get", "v", "z/k", want);
	snprintf(want, sizeof(want), "allowed by rule 'b-exact' at %s:4", path);
	EXPECT(p, &u, "secret.get", "v", "x/y", want);
	snprintf(want, sizeof(want), "denied by rule 'star-deny' at %s:5", path);
	EXPECT(p, &u, "secret.get", "v", "c/secret", want);
	EXPECT(p, &u, "secret.get", "w", "q/secret", want);
	policy_free(p);
}

/* ---- built-in roles ---------------------------------------------------------- */

static void
test_builtin_roles(void)
{
	static const struct {
		const char *role;
		const char *yes[24];
		const char *no[24];
	} cases[] = {
		{ "secrets-reader", { "secret.get" }, { "secret.list", "secret.set", "key.wrap" } },
		{ "secrets-user", { "secret.get", "secret.list" }, { "secret.set", "secret.delete" } },
		{ "secrets-officer", { "secret.get", "secret.list", "secret.set", "secret.update",
		    "secret.delete", "secret.recover", "secret.purge", "secret.backup",
		    "secret.restore" }, { "key.wrap", "vault.rotate", "audit.read" } },
		{ "crypto-user", { "key.datakey", "key.wrap", "key.unwrap", "key.encrypt",
		    "key.decrypt", "key.sign", "key.verify" }, { "secret.get", "vault.rotate" } },
		{ "crypto-officer", { "key.datakey", "key.wrap", "key.unwrap", "key.encrypt",
		    "key.decrypt", "key.sign", "key.verify", "vault.rotate", "vault.retire",
		    "vault.status" }, { "vault.create", "secret.get", "audit.read" } },
		{ "auditor", { "audit.read", "audit.stream", "secret.list", "vault.status" },
		    { "secret.get", "key.decrypt", "policy.reload", "vault.rotate" } },
		{ "administrator", { "secret.get", "secret.purge", "key.sign", "vault.create",
		    "vault.retire", "audit.stream", "policy.reload", "policy.explain" }, { NULL } },
	};
	struct policy_identity u = who(6000, 6000, NULL, 0, NULL, NULL);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p = NULL;
		struct policy_errors *e = NULL;
		char path[512], text[512], yes[600];

		snprintf(text, sizeof(text), "rules:\n  - name: r\n    who: {user: 6000}\n"
		    "    allow: %s\n    vault: '*'\n", cases[i].role);
		CU_ASSERT_EQUAL(load_text("role.yaml", text, 0600, NULL, &p, &e, path, sizeof(path)), 0);
		print_errors(e);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		snprintf(yes, sizeof(yes), "allowed by rule 'r' at %s:2", path);
		for (int j = 0; cases[i].yes[j] != NULL; j++) {
			int host = strncmp(cases[i].yes[j], "audit.", 6) == 0 ||
			    strncmp(cases[i].yes[j], "policy.", 7) == 0;

			EXPECT(p, &u, cases[i].yes[j], host ? NULL : "prod", NULL, yes);
		}
		for (int j = 0; cases[i].no[j] != NULL; j++)
			EXPECT(p, &u, cases[i].no[j], "prod", NULL, "denied: no rule allows it");
		policy_free(p);
	}
}

static void
test_actions(void)
{
	enum policy_action a;

	for (int i = 0; i < POLICY_A_COUNT; i++) {
		CU_ASSERT_EQUAL(policy_action_parse(policy_action_name((enum policy_action)i), &a), 0);
		CU_ASSERT_EQUAL(a, i);
	}
	CU_ASSERT_STRING_EQUAL(policy_action_name(POLICY_A_KEY_WRAP), "key.wrap");
	CU_ASSERT_STRING_EQUAL(policy_action_name(POLICY_A_POLICY_EXPLAIN), "policy.explain");
	CU_ASSERT_STRING_EQUAL(policy_action_name(POLICY_A_COUNT), "unknown");
	CU_ASSERT_EQUAL(policy_action_parse("secret.*", &a), -EINVAL);
	CU_ASSERT_EQUAL(policy_action_parse("secret.gte", &a), -EINVAL);
	CU_ASSERT_EQUAL(policy_action_parse("", &a), -EINVAL);
}

/* ---- combinations, named groups, who-can ------------------------------------ */

struct seen {
	char text[2048];
};

static int
collect(void *arg, const struct policy_who *w)
{
	struct seen *s = arg;
	size_t o = strlen(s->text);

	snprintf(s->text + o, sizeof(s->text) - o, "%s %s [%s:%u];", w->deny ? "deny" : "allow",
	    w->principal, w->rule, w->line);
	return 0;
}

static void
test_combinations_and_who_can(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	char path[512], yes[600];
	struct seen s;
	const gid_t g_nog[] = { 65534 };
	const gid_t g_both[] = { 1, 65534 };
	struct policy_identity a = who(1, 1, g_nog, 1, "/usr/sbin/app", "app.service");
	struct policy_identity b = who(1, 100, g_nog, 1, "/usr/sbin/app", "other.service");
	struct policy_identity c = who(7, 7, g_both, 2, "/usr/sbin/app", "app.service");

	CU_ASSERT_EQUAL(load_text("combo.yaml",
	    "principals:\n"
	    "  app:\n"
	    "    user: daemon\n"
	    "    group: nogroup\n"
	    "    exe: /usr/sbin/app\n"
	    "    unit: app.service\n"
	    "  both-groups: { group: [nogroup, daemon] }\n"
	    "  team: [app, both-groups]\n"
	    "rules:\n"
	    "  - name: team-reads\n"                 /* line 10 */
	    "    who: team\n"
	    "    allow: secrets-user\n"
	    "    vault: [prod, dev]\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(yes, sizeof(yes), "allowed by rule 'team-reads' at %s:10", path);
	EXPECT(p, &a, "secret.get", "prod", "x", yes);
	EXPECT(p, &a, "secret.get", "dev", "x", yes);
	EXPECT(p, &a, "secret.get", "qa", "x", "denied: no rule allows it");
	EXPECT(p, &b, "secret.get", "prod", "x", "denied: no rule allows it");   /* unit differs */
	EXPECT(p, &c, "secret.get", "prod", "x", yes);                           /* both groups */
	c.ngroups = 1;
	c.gid = 7;
	EXPECT(p, &c, "secret.get", "prod", "x", "denied: no rule allows it");   /* daemon only */
	c.groups = g_nog;
	EXPECT(p, &c, "secret.get", "prod", "x", "denied: no rule allows it");   /* nogroup only */

	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(policy_who_can(p, POLICY_A_SECRET_GET, "prod", "x", collect, &s), 0);
	CU_ASSERT_STRING_EQUAL(s.text,
	    "allow user daemon (uid 1) and group nogroup (gid 65534) and exe /usr/sbin/app and "
	    "unit app.service [team-reads:10];"
	    "allow group nogroup (gid 65534) and group daemon (gid 1) [team-reads:10];");
	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(policy_who_can(p, POLICY_A_SECRET_SET, "prod", "x", collect, &s), 0);
	CU_ASSERT_STRING_EQUAL(s.text, "");
	policy_free(p);

	/* who-can lists the denies first. */
	p = load_example();
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(policy_who_can(p, POLICY_A_SECRET_GET, "prod", "db/billing/connection", collect, &s), 0);
	CU_ASSERT_STRING_EQUAL(s.text,
	    "allow exe /usr/lib/billing/billing-server [billing-reads-db:29];"
	    "allow unit billing.service [billing-reads-db:29];");
	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(policy_who_can(p, POLICY_A_SECRET_PURGE, "prod", "api/key", collect, &s), 0);
	CU_ASSERT_STRING_EQUAL(s.text, "deny anyone [no-purge-in-prod:36];");
	policy_free(p);
}

/* ---- validation --------------------------------------------------------------- */

static void
test_errors_each(void)
{
	struct policy *p;
	struct policy_errors *e;
	char path[512];

	/* unknown keys, at the top and in a rule */
	CU_ASSERT_EQUAL(load_text("e1.yaml",
	    "rulez: []\n"
	    "rules:\n"
	    "  - name: a\n"
	    "    who: {user: root}\n"
	    "    allw: secret.get\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT(has_error(e, path, 1, 1, "", "unknown key 'rulez'"));
	CU_ASSERT(has_error(e, path, 5, 5, "rules[0]", "unknown key 'allw'"));
	CU_ASSERT(has_error(e, path, 3, 5, "rules[0]", "missing key 'allow' or 'deny'"));
	policy_errors_free(e);

	/* wrong types */
	CU_ASSERT_EQUAL(load_text("e2.yaml",
	    "principals: [a, b]\n"
	    "rules:\n"
	    "  - name: [x]\n"
	    "    who: {user: {a: 1}}\n"
	    "    allow: secret.get\n"
	    "    vault: {prod: 1}\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 1, 13, "principals", "expected a mapping of names to principals, found a list"));
	CU_ASSERT(has_error(e, path, 3, 11, "rules[0].name", "expected a rule name, found a list"));
	CU_ASSERT(has_error(e, path, 4, 17, "rules[0].who.user", "expected a user name or uid, found a mapping"));
	CU_ASSERT(has_error(e, path, 6, 12, "rules[0].vault", "found a mapping"));
	policy_errors_free(e);

	CU_ASSERT_EQUAL(load_text("e2b.yaml", "rules: {a: 1}\n", 0600, NULL, &p, &e, path, sizeof(path)),
	    KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 1, 8, "rules", "expected a list of rules, found a mapping"));
	policy_errors_free(e);

	/* unknown role and action, duplicates */
	CU_ASSERT_EQUAL(load_text("e3.yaml",
	    "roles:\n"
	    "  rotator: [vault.rotate, key.*]\n"
	    "  auditor: [audit.read]\n"
	    "  bad: [secret.gte, rotator]\n"
	    "rules:\n"
	    "  - name: a\n"
	    "    who: {user: root}\n"
	    "    allow: [secrets-raeder, secret.gte, rotator, vault.*]\n"
	    "    vault: prod\n"
	    "  - name: a\n"
	    "    who: {user: root}\n"
	    "    deny: secret.list\n"
	    "    vault: prod\n"
	    "    vault: dev\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 3, 3, "roles.auditor", "duplicate role 'auditor': it is a built-in role"));
	CU_ASSERT(has_error(e, path, 4, 9, "roles.bad[0]", "unknown action 'secret.gte'"));
	CU_ASSERT(has_error(e, path, 4, 21, "roles.bad[1]", "unknown role 'rotator'"));
	CU_ASSERT(has_error(e, path, 8, 13, "rules[0].allow[0]", "unknown role 'secrets-raeder'"));
	CU_ASSERT(has_error(e, path, 8, 29, "rules[0].allow[1]", "unknown action 'secret.gte'"));
	CU_ASSERT(has_error(e, path, 10, 11, "rules[1].name", "duplicate rule name 'a' (first at line 6)"));
	CU_ASSERT(has_error(e, path, 14, 5, "rules[1]", "duplicate key 'vault' (first at line 13)"));
	/* rotator and vault.* are fine: no error there */
	for (size_t i = 0; i < e->n; i++) {
		CU_ASSERT(strstr(e->v[i].msg, "'rotator'") == NULL || e->v[i].line == 4);
		CU_ASSERT(strstr(e->v[i].msg, "vault.*") == NULL);
	}
	policy_errors_free(e);

	/* A rule without a name, or with a bad one, before named rules: each
	 * is reported, and the names after it are still compared (this crashed
	 * the loader, so a reload, found by tests/fuzz/fuzz_policy). */
	CU_ASSERT_EQUAL(load_text("e3b.yaml",
	    "rules:\n"
	    "  - who: {user: root}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "  - name: ''\n"
	    "    who: {user: root}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "  - name: [x]\n"
	    "    who: {user: root}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "  - name: b\n"
	    "    who: {user: root}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "  - name: b\n"
	    "    who: {user: root}\n"
	    "    allow: secret.list\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT(has_error(e, path, 2, 5, "rules[0]", "missing key 'name'"));
	CU_ASSERT(has_error(e, path, 5, 11, "rules[1].name", "a rule name cannot be empty"));
	CU_ASSERT(has_error(e, path, 9, 11, "rules[2].name", "expected a rule name, found a list"));
	CU_ASSERT(has_error(e, path, 17, 11, "rules[4].name", "duplicate rule name 'b' (first at line 13)"));
	CU_ASSERT(e != NULL && e->n == 4);
	policy_errors_free(e);

	/* duplicate principal names */
	CU_ASSERT_EQUAL(load_text("e4.yaml",
	    "principals:\n"
	    "  ops: {user: root}\n"
	    "  ops: {user: daemon}\n"
	    "rules: []\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 3, 3, "principals", "duplicate key 'ops' (first at line 2)"));
	policy_errors_free(e);
}

static void
test_errors_never_match(void)
{
	struct policy *p;
	struct policy_errors *e;
	char path[512];

	CU_ASSERT_EQUAL(load_text("n.yaml",
	    "principals:\n"
	    "  nobody: []\n"
	    "  billing: {exe: /usr/bin/billing}\n"
	    "rules:\n"
	    "  - name: two-users\n"
	    "    who: {all: [{user: root}, {user: daemon}]}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "  - name: two-exes\n"
	    "    who: {exe: /usr/bin/other, principal: billing}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "  - name: patterns\n"
	    "    who: {user: root}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "    names: ['db//x', 'a**', '', '/lead', '../up', 'x/**/y/**/z/**', ok/*]\n"
	    "  - name: empties\n"
	    "    who: {}\n"
	    "    allow: []\n"
	    "    vault: []\n"
	    "    names: []\n"
	    "  - name: audit-in-a-vault\n"
	    "    who: [{group: []}, {unit: billing}, {exe: bin/x}]\n"
	    "    allow: audit.read\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 2, 11, "principals.nobody", "an empty group of principals never matches"));
	CU_ASSERT(has_error(e, path, 6, 16, "rules[0].who.all",
	    "this combination can never match: a caller cannot be user root and user daemon"));
	CU_ASSERT(has_error(e, path, 10, 10, "rules[1].who",
	    "this combination can never match: a caller cannot run both /usr/bin/other and /usr/bin/billing"));
	CU_ASSERT(has_error(e, path, 17, 13, "rules[2].names[0]", "invalid name pattern 'db//x': it has an empty segment"));
	CU_ASSERT(has_error(e, path, 17, 22, "rules[2].names[1]", "'**' must be a whole segment"));
	CU_ASSERT(has_error(e, path, 17, 29, "rules[2].names[2]", "invalid name pattern '': it is empty"));
	CU_ASSERT(has_error(e, path, 17, 33, "rules[2].names[3]", "empty segment"));
	CU_ASSERT(has_error(e, path, 17, 42, "rules[2].names[4]", "'.' or '..'"));
	CU_ASSERT(has_error(e, path, 17, 51, "rules[2].names[5]", "more than two '**'"));
	CU_ASSERT(has_error(e, path, 19, 10, "rules[3].who", "an empty principal matches nobody"));
	CU_ASSERT(has_error(e, path, 20, 12, "rules[3].allow", "an empty list of actions never matches"));
	CU_ASSERT(has_error(e, path, 21, 12, "rules[3].vault", "an empty list of vaults never matches"));
	CU_ASSERT(has_error(e, path, 22, 12, "rules[3].names", "an empty list of names never matches"));
	CU_ASSERT(has_error(e, path, 24, 19, "rules[4].who[0].group", "an empty list of groups matches nobody"));
	CU_ASSERT(has_error(e, path, 24, 31, "rules[4].who[1].unit", "'billing' is not a systemd unit name"));
	CU_ASSERT(has_error(e, path, 24, 47, "rules[4].who[2].exe", "'bin/x' is not an absolute path"));
	policy_errors_free(e);

	/* audit.* in one vault can never match (alone, with valid principals) */
	CU_ASSERT_EQUAL(load_text("n2.yaml",
	    "rules:\n"
	    "  - name: audit-in-a-vault\n"
	    "    who: {user: root}\n"
	    "    allow: [audit.read, policy.*]\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 5, 12, "rules[0].vault", "this rule can never match: audit.* and policy.*"));
	policy_errors_free(e);

	/* An unknown principal, and one used before it is defined. */
	CU_ASSERT_EQUAL(load_text("n3.yaml",
	    "principals:\n"
	    "  first: [second]\n"
	    "  second: {user: root}\n"
	    "rules:\n"
	    "  - name: r\n"
	    "    who: [frist]\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 2, 11, "principals.first[0]", "unknown principal 'second': define it under principals (before its first use)"));
	CU_ASSERT(has_error(e, path, 6, 11, "rules[0].who[0]", "unknown principal 'frist'"));
	policy_errors_free(e);
}

static void
test_errors_users_groups(void)
{
	struct policy *p;
	struct policy_errors *e;
	char path[512];

	/* Real lookups: root, daemon and nogroup exist on any Debian box. */
	CU_ASSERT_EQUAL(load_text("u.yaml",
	    "rules:\n"
	    "  - name: r\n"
	    "    who:\n"
	    "      - {user: root, group: nogroup}\n"
	    "      - {user: kw-no-such-user-7q}\n"
	    "      - {group: kw-no-such-group-7q}\n"
	    "      - {user: 4294967296}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 5, 16, "rules[0].who[1].user",
	    "user 'kw-no-such-user-7q' does not exist on this system"));
	CU_ASSERT(has_error(e, path, 6, 17, "rules[0].who[2].group",
	    "group 'kw-no-such-group-7q' does not exist on this system"));
	CU_ASSERT(has_error(e, path, 7, 16, "rules[0].who[3].user", "uid 4294967296 is out of range"));
	CU_ASSERT_EQUAL(e->n, 3);
	policy_errors_free(e);

	CU_ASSERT_EQUAL(load_text("u2.yaml",
	    "rules:\n"
	    "  - name: r\n"
	    "    who: {user: daemon, group: [nogroup, root]}\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL(p);
	{
		struct seen s;

		memset(&s, 0, sizeof(s));
		policy_who_can(p, POLICY_A_SECRET_GET, "prod", "x", collect, &s);
		CU_ASSERT_STRING_EQUAL(s.text, "allow user daemon (uid 1) and group nogroup "
		    "(gid 65534) and group root (gid 0) [r:2];");
	}
	policy_free(p);
}

static void
test_errors_all_collected(void)
{
	struct policy *p;
	struct policy_errors *e;
	char path[512];
	unsigned last = 0;

	CU_ASSERT_EQUAL(load_text("many.yaml",
	    "version: 2\n"
	    "rules:\n"
	    "  - name: a\n"
	    "    who: ghost\n"
	    "    allow: secret.nope\n"
	    "    vault: 'bad vault'\n"
	    "    names: 'x//y'\n"
	    "    extra: 1\n"
	    "  - 42\n"
	    "  - name: b\n"
	    "    who: {user: root}\n"
	    "    allow: secret.get\n"
	    "    deny: secret.get\n"
	    "    vault: prod\n",
	    0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT(has_error(e, path, 1, 10, "version", "unsupported policy version '2'"));
	CU_ASSERT(has_error(e, path, 4, 10, "rules[0].who", "unknown principal 'ghost'"));
	CU_ASSERT(has_error(e, path, 5, 12, "rules[0].allow", "unknown action 'secret.nope'"));
	CU_ASSERT(has_error(e, path, 6, 12, "rules[0].vault", "invalid vault name 'bad vault'"));
	CU_ASSERT(has_error(e, path, 7, 12, "rules[0].names", "invalid name pattern 'x//y'"));
	CU_ASSERT(has_error(e, path, 8, 5, "rules[0]", "unknown key 'extra'"));
	CU_ASSERT(has_error(e, path, 9, 5, "rules[1]", "expected a rule (a mapping), found a scalar"));
	CU_ASSERT(has_error(e, path, 13, 5, "rules[2]", "a rule either allows or denies"));
	CU_ASSERT_EQUAL(e->n, 8);
	/* The first problem, for a caller that logs kw_errdetail(). */
	{
		char want[700];

		snprintf(want, sizeof(want), "%s:1:10: version: unsupported policy version '2'", path);
		CU_ASSERT_EQUAL(strncmp(kw_errdetail(KW_E_POLICY), want, strlen(want)), 0);
		CU_ASSERT(strstr(kw_errdetail(KW_E_POLICY), "(and 7 more)") != NULL);
	}
	for (size_t i = 0; i < e->n; i++) {
		CU_ASSERT(e->v[i].line >= last);        /* in file order */
		last = e->v[i].line;
	}
	policy_errors_free(e);

	/* Broken YAML: one error where the parser stopped. */
	CU_ASSERT_EQUAL(load_text("syntax.yaml", "rules:\n  - name: a\n   who: [\n", 0600, NULL,
	    &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(e->n, 1);
	CU_ASSERT(strstr(e->v[0].msg, "invalid YAML") != NULL);
	CU_ASSERT_EQUAL(e->v[0].line, 3);
	policy_errors_free(e);

	/* Aliases that expand without end, and nesting without end. */
	{
		char text[4096];
		size_t o = 0;

		o += (size_t)snprintf(text + o, sizeof(text) - o, "principals:\n  p0: &a0 [{user: 0}]\n");
		for (int i = 1; i < 12; i++)
			o += (size_t)snprintf(text + o, sizeof(text) - o,
			    "  p%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n",
			    i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
		snprintf(text + o, sizeof(text) - o, "rules: []\n");
		CU_ASSERT_EQUAL(load_text("laughs.yaml", text, 0600, NULL, &p, &e, path, sizeof(path)),
		    KW_E_POLICY);
		CU_ASSERT(e != NULL && e->n >= 1);
		policy_errors_free(e);
		o = (size_t)snprintf(text, sizeof(text), "rules:\n  - name: r\n    who: ");
		for (int i = 0; i < 20; i++)
			text[o++] = '[';
		o += (size_t)snprintf(text + o, sizeof(text) - o, "{user: 0}");
		for (int i = 0; i < 20; i++)
			text[o++] = ']';
		snprintf(text + o, sizeof(text) - o, "\n    allow: secret.get\n    vault: v\n");
		CU_ASSERT_EQUAL(load_text("deep.yaml", text, 0600, NULL, &p, &e, path, sizeof(path)),
		    KW_E_POLICY);
		CU_ASSERT(has_error(e, path, 3, 26,
		    "rules[0].who[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]",
		    "principals nested more than 16 deep"));
		CU_ASSERT(e != NULL && e->n == 1);
		policy_errors_free(e);
	}

	/* Empty file. */
	CU_ASSERT_EQUAL(load_text("nothing.yaml", "", 0600, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(has_error(e, path, 1, 1, "", "the policy is empty"));
	policy_errors_free(e);
}

/* The fixture with one of each mistake: the whole list, formatted. */
static void
test_errors_fixture(void)
{
	static const char *const want[] = {
		"5:22: principals.ops: duplicate key 'user' (first at line 5)",
		"6:11: principals.nobody: an empty group of principals never matches",
		"7:20: principals.ghosts.group: group 'kw-no-such-group' does not exist on this system",
		"9:27: roles.rotator[1]: unknown action 'vault.stauts'",
		"13:29: rules[0].allow[1]: unknown action 'secret.gte'",
		"15:13: rules[0].names[0]: invalid name pattern 'api//key': it has an empty segment",
		"16:5: rules[0]: unknown key 'colour' (expected name, description, who, allow, deny, vault or names)",
		"17:11: rules[1].name: duplicate rule name 'devs-read' (first at line 11)",
		"18:17: rules[1].who.all: this combination can never match: a caller cannot run both /usr/bin/a and /usr/bin/b",
		"20:19: rules[1].vault[1]: invalid vault name ''",
		"24:5: rules[2]: a rule either allows or denies: split it into two rules",
	};
	char path[512], line[1024];
	struct policy *p = NULL;
	struct policy_errors *e = NULL;

	CU_ASSERT_EQUAL_FATAL(copy_fixture("invalid.yaml", path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(policy_load(path, NULL, &p, &e), KW_E_POLICY);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	if (e->n != sizeof(want) / sizeof(want[0]))
		print_errors(e);
	CU_ASSERT_EQUAL(e->n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < e->n && i < sizeof(want) / sizeof(want[0]); i++) {
		char prefix[700];

		policy_error_format(&e->v[i], line, sizeof(line));
		snprintf(prefix, sizeof(prefix), "%s:%s", path, want[i]);
		if (strncmp(line, prefix, strlen(prefix)) != 0)
			fprintf(stderr, "\n  got:    %s\n  wanted: %s\n", line, prefix);
		CU_ASSERT_EQUAL(strncmp(line, prefix, strlen(prefix)), 0);
	}
	policy_errors_free(e);
}

static void
test_file_checks(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	struct policy_load_opts o = { .daemon_uid = geteuid() };
	char path[512], line[1024];

	/* group-writable */
	CU_ASSERT_EQUAL(load_text("gw.yaml", "rules: []\n", 0664, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(e->n, 1);
	policy_error_format(&e->v[0], line, sizeof(line));
	CU_ASSERT(strstr(line, "refusing a policy that group or other may write (mode 0664): chmod go-w") != NULL);
	CU_ASSERT_EQUAL(strncmp(line, path, strlen(path)), 0);
	policy_errors_free(e);
	/* other-writable */
	CU_ASSERT_EQUAL(load_text("ow.yaml", "rules: []\n", 0602, NULL, &p, &e, path, sizeof(path)), KW_E_POLICY);
	CU_ASSERT(e != NULL && strstr(e->v[0].msg, "mode 0602") != NULL);
	policy_errors_free(e);
	/* readable by all is fine */
	CU_ASSERT_EQUAL(load_text("ok.yaml", "rules: []\n", 0644, NULL, &p, &e, path, sizeof(path)), 0);
	policy_free(p);

	/* owner: neither root nor the daemon's user */
	CU_ASSERT_EQUAL(load_text("own.yaml", "rules: []\n", 0600, NULL, &p, &e, path, sizeof(path)), 0);
	policy_free(p);
	if (geteuid() == 0) {
		CU_ASSERT_EQUAL_FATAL(chown(path, 4321, 4321), 0);
		o.daemon_uid = 999;
		e = NULL;
		CU_ASSERT_EQUAL(policy_load(path, &o, &p, &e), KW_E_POLICY);
		CU_ASSERT(e != NULL && strstr(e->v[0].msg, "refusing a policy owned by uid 4321") != NULL);
		policy_errors_free(e);
		o.daemon_uid = 4321;
		p = NULL;
		CU_ASSERT_EQUAL(policy_load(path, &o, &p, NULL), 0);
		policy_free(p);
	} else {
		/* Not root: a file we own is refused when we claim another daemon uid. */
		o.daemon_uid = geteuid() + 1;
		e = NULL;
		CU_ASSERT_EQUAL(policy_load(path, &o, &p, &e), KW_E_POLICY);
		policy_errors_free(e);
	}

	/* missing file, directory */
	snprintf(path, sizeof(path), "%s/does-not-exist.yaml", dir);
	o.daemon_uid = geteuid();
	e = NULL;
	CU_ASSERT_EQUAL(policy_load(path, &o, &p, &e), -ENOENT);
	CU_ASSERT(e != NULL && e->n == 1 && strstr(e->v[0].msg, "cannot open the policy") != NULL);
	policy_errors_free(e);
	e = NULL;
	CU_ASSERT_EQUAL(policy_load(dir, &o, &p, &e), KW_E_POLICY);
	CU_ASSERT(e != NULL && strstr(e->v[0].msg, "not a regular file") != NULL);
	policy_errors_free(e);
}

/* ---- a large policy ----------------------------------------------------------- */

static void
test_thousand_rules(void)
{
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	size_t cap = 1 << 20, o = 0;
	char *text = malloc(cap), path[512], want[700];

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	o += (size_t)snprintf(text + o, cap - o, "rules:\n");
	for (int i = 0; i < 1000; i++)
		o += (size_t)snprintf(text + o, cap - o,
		    "  - name: r%d\n    who: {user: %d}\n    allow: secrets-user\n"
		    "    vault: v%d\n    names: ['svc%d/**']\n", i, 10000 + i, i % 50, i);
	o += (size_t)snprintf(text + o, cap - o,
	    "  - name: no-secrets-of-svc7\n    who: '*'\n    deny: secret.get\n"
	    "    vault: v7\n    names: ['svc7/private']\n");
	CU_ASSERT_EQUAL(load_text("big.yaml", text, 0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	free(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL(policy_rule_count(p), 1001);
	for (int i = 0; i < 1000; i += 37) {
		struct policy_identity id = who((uid_t)(10000 + i), 100, NULL, 0, NULL, NULL);
		char v[16], n[64], vo[16];

		snprintf(v, sizeof(v), "v%d", i % 50);
		snprintf(vo, sizeof(vo), "v%d", (i + 1) % 50);
		snprintf(n, sizeof(n), "svc%d/a/b", i);
		snprintf(want, sizeof(want), "allowed by rule 'r%d' at %s:%d", i, path, 2 + 5 * i);
		EXPECT(p, &id, "secret.get", v, n, want);
		EXPECT(p, &id, "secret.set", v, n, "denied: no rule allows it");
		EXPECT(p, &id, "secret.get", vo, n, "denied: no rule allows it");
		snprintf(n, sizeof(n), "svc%d/a", i + 1);
		EXPECT(p, &id, "secret.get", v, n, "denied: no rule allows it");
	}
	{
		struct policy_identity id = who(10007, 100, NULL, 0, NULL, NULL);

		snprintf(want, sizeof(want), "denied by rule 'no-secrets-of-svc7' at %s:5002", path);
		EXPECT(p, &id, "secret.get", "v7", "svc7/private", want);
	}
	policy_free(p);
}

/* A caller in up to 65,536 groups (the kernel's NGROUPS_MAX), which
 * policy_groups_sort put in order from a shuffled list: the group the
 * rules name counts wherever it falls (first, last, between), for an
 * allow, for a deny and with another for a rule that names two; a gid
 * between two of the caller's is none of them.  Counts on both sides of
 * the 64 groups past which a decision stops filtering by a 64-bit summary
 * of them. */
static void
test_many_groups(void)
{
	static const size_t counts[] = { 1, 2, 3, 63, 64, 65, 1000, 65536 };
	const gid_t t = 300007;
	struct policy *p = NULL;
	struct policy_errors *e = NULL;
	char path[512], allow[600], both[600], deny[600];
	gid_t *g = calloc(65536, sizeof(*g));
	const char *no = "denied: no rule allows it";
	unsigned seed = 1;

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	CU_ASSERT_EQUAL(load_text("many-groups.yaml",
	    "rules:\n"
	    "  - name: g-reads\n"
	    "    who: {group: 300007}\n"
	    "    allow: secret.get\n"
	    "    vault: v\n"
	    "  - name: g-never-private\n"                 /* line 6 */
	    "    who: {group: 300007}\n"
	    "    deny: secret.get\n"
	    "    vault: v\n"
	    "    names: ['private/**']\n"
	    "  - name: both-list\n"                       /* line 11 */
	    "    who: {group: [300007, 300011]}\n"
	    "    allow: secret.list\n"
	    "    vault: v\n",
	    0600, NULL, &p, &e, path, sizeof(path)), 0);
	print_errors(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(allow, sizeof(allow), "allowed by rule 'g-reads' at %s:2", path);
	snprintf(deny, sizeof(deny), "denied by rule 'g-never-private' at %s:6", path);
	snprintf(both, sizeof(both), "allowed by rule 'both-list' at %s:11", path);

	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		size_t n = counts[c];
		size_t at[] = { 0, n / 2, n - 1 };

		for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
			struct policy_identity id;

			/* Every 4th gid around t, t at position at[k] in order
			 * (t + 4, the other group of both-list, after it),
			 * shuffled, then sorted. */
			for (size_t i = 0; i < n; i++)
				g[i] = (gid_t)(t + 4 * ((long)i - (long)at[k]));
			for (size_t i = n; i > 1; i--) {
				size_t j = (seed = seed * 1103515245u + 12345u) % i;
				gid_t x = g[i - 1];

				g[i - 1] = g[j];
				g[j] = x;
			}
			policy_groups_sort(g, n);
			CU_ASSERT_EQUAL_FATAL(g[at[k]], t);
			id = who(5000, 5000, g, n, NULL, NULL);
			EXPECT(p, &id, "secret.get", "v", "x", allow);
			EXPECT(p, &id, "secret.get", "v", "private/x", deny);
			EXPECT(p, &id, "secret.list", "v", NULL, at[k] < n - 1 ? both : no);
			/* A gid between the caller's groups is none of them. */
			g[at[k]] = t - 2;
			EXPECT(p, &id, "secret.get", "v", "x", no);
			EXPECT(p, &id, "secret.get", "v", "private/x", no);
			EXPECT(p, &id, "secret.list", "v", NULL, no);
			/* ... and the primary group counts as before. */
			id.gid = t;
			EXPECT(p, &id, "secret.get", "v", "x", allow);
		}
	}
	policy_free(p);
	free(g);
}

/* policy_groups_sort orders any list, duplicates included; it takes
 * nothing and one as they are. */
static void
test_groups_sort(void)
{
	gid_t v[] = { 4000000000u, 7, 65534, 0, 7, 1, 100 };
	const gid_t want[] = { 0, 1, 7, 7, 100, 65534, 4000000000u };
	gid_t one = 42;

	policy_groups_sort(v, sizeof(v) / sizeof(v[0]));
	CU_ASSERT_EQUAL(memcmp(v, want, sizeof(want)), 0);
	policy_groups_sort(&one, 1);
	CU_ASSERT_EQUAL(one, 42);
	policy_groups_sort(NULL, 0);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "devs read the prod API key, only leads update it", test_devs_read_leads_update },
		{ "only the billing service reads the db string", test_only_billing_reads_db },
		{ "an explicit deny beats any allow", test_deny_beats_allow },
		{ "a deny rule is not escaped by what is unknown of the caller", test_deny_unknown_fails_closed },
		{ "an allow by executable alone is warned about", test_lint_exe_alone },
		{ "no rule, no access", test_default_deny },
		{ "name patterns: *, **, exact", test_patterns },
		{ "indexed and scanned rules decide in file order", test_file_order },
		{ "built-in roles", test_builtin_roles },
		{ "action names", test_actions },
		{ "combinations, named groups, who-can", test_combinations_and_who_can },
		{ "errors: unknown keys, types, roles, actions, duplicates", test_errors_each },
		{ "errors: rules that can never match", test_errors_never_match },
		{ "errors: users and groups that do not exist", test_errors_users_groups },
		{ "errors: all collected, in file order", test_errors_all_collected },
		{ "errors: the fixture with one of each", test_errors_fixture },
		{ "file owner and mode", test_file_checks },
		{ "1,000 rules decide correctly", test_thousand_rules },
		{ "a caller in up to 65,536 groups: each one counts", test_many_groups },
		{ "groups sorted as decisions want them", test_groups_sort },
		{ NULL, NULL }
	};
	int r;

	if (kwt_tmpdir(dir, sizeof(dir), "kwtest-policy") != 0)
		return 99;
	if (copy_fixture("example.yaml", example, sizeof(example)) != 0) {
		kwt_rmtree(dir);
		return 99;
	}
	r = kwt_cunit_main("policy", NULL, NULL, cases);
	kwt_rmtree(dir);
	return r;
}
