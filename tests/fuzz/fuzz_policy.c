/*
 * fuzz_policy.c - the policy loader and decisions (policy/policy.h) on
 * arbitrary bytes as the policy file.
 *
 * The input is written to a private file (mode 0600, owned by the user
 * running, so that the owner and mode checks pass; one file per process,
 * rewritten at each run) and loaded with name resolvers that answer every
 * name without NSS: a deterministic id, or "no such name", an I/O error or
 * out of memory for names that start with "missing", "broken" or "enomem".
 * A refusal must list its errors in order, each well formed.  A policy that
 * loads is linted and then asked about callers made from its own rules
 * (each principal spec, fully and partly known), every action, its vaults,
 * another vault and none, and names made from its patterns; each answer is
 * checked against a plain scan of the rules where the compiled index can
 * be followed without it (another vault, no vault), and for consistency
 * where it cannot (a vault the rules name), and against policy_who_can.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "kw_error.h"
#include "policy/policy.h"
#include "policy/policy_int.h"
#include "tests/fuzz/fuzz.h"

KWF_CORPUS("policy");

#define MAX_IDS 6
#define MAX_VAULTS 4
#define MAX_NAMES 5

/* ---- names without NSS ------------------------------------------------------- */

static int
fake_id(const char *name, unsigned *out)
{
	uint32_t h = 2166136261u;

	if (strncmp(name, "missing", 7) == 0)
		return -ENOENT;
	if (strncmp(name, "broken", 6) == 0)
		return -EIO;
	if (strncmp(name, "enomem", 6) == 0)
		return -ENOMEM;
	if (strcmp(name, "root") == 0) {
		*out = 0;
		return 0;
	}
	for (const char *s = name; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	*out = 1000 + h % 60000;
	return 0;
}

static int
fake_user(void *arg, const char *name, uid_t *out)
{
	unsigned id;
	int r = fake_id(name, &id);

	(void)arg;
	if (r == 0)
		*out = (uid_t)id;
	return r;
}

static int
fake_group(void *arg, const char *name, gid_t *out)
{
	unsigned id;
	int r = fake_id(name, &id);

	(void)arg;
	if (r == 0)
		*out = (gid_t)id;
	return r;
}

/* ---- a plain reading of the rules ------------------------------------------ */

/* What policy_decide's comments promise of one principal spec. */
static int
ref_conj(const struct pol_conj *c, const struct policy_identity *id, int deny)
{
	unsigned known = id->known & c->need;

	if (known != c->need && !deny)
		return 0;
	if ((known & POLICY_ID_UID) && id->uid != c->uid)
		return 0;
	if ((known & POLICY_ID_EXE) && (id->exe == NULL || strcmp(id->exe, c->exe) != 0))
		return 0;
	if ((known & POLICY_ID_UNIT) && (id->unit == NULL || strcmp(id->unit, c->unit) != 0))
		return 0;
	if (deny && !(id->known & POLICY_ID_GROUPS))
		return 1;
	for (unsigned i = 0; i < c->ngids; i++) {
		int in = (id->known & POLICY_ID_GID) && id->gid == c->gids[i];

		for (size_t j = 0; !in && (id->known & POLICY_ID_GROUPS) && j < id->ngroups; j++)
			in = id->groups[j] == c->gids[i];
		if (!in)
			return 0;
	}
	return 1;
}

static int
ref_rule(const struct pol_rule *r, const struct policy_identity *id, enum policy_action a,
    const char *name, int deny)
{
	int who = 0, named = r->any_name;

	if (r->deny != deny || !(r->actions & (1u << a)))
		return 0;
	for (size_t i = 0; i < r->nwho && !who; i++)
		who = ref_conj(&r->who[i], id, deny);
	for (size_t i = 0; name != NULL && i < r->nnames && !named; i++)
		named = pol_pattern_match(r->names[i], name);
	return who && named;
}

/* The decision over the rules for every vault ('*') alone, in file order:
 * the deciding rule's index, and *allow; -1 when none decides. */
static long
ref_decide(const struct policy *p, const struct policy_identity *id, enum policy_action a,
    const char *name, int *allow)
{
	for (int deny = 1; deny >= 0; deny--)
		for (size_t k = 0; k < p->nrules; k++)
			if (p->rules[k].any_vault && ref_rule(&p->rules[k], id, a, name, deny)) {
				*allow = !deny;
				return (long)k;
			}
	*allow = 0;
	return -1;
}

/* ---- decisions ---------------------------------------------------------------- */

struct seek {
	const char *rule;
	int deny;
	int seen;
};

static int
who_cb(void *arg, const struct policy_who *w)
{
	struct seek *s = arg;

	kwf_check(w->principal != NULL && w->rule != NULL && w->line >= 1);
	if (w->rule == s->rule && w->deny == s->deny)
		s->seen = 1;
	return 0;
}

static long
rule_index(const struct policy *p, const char *name)
{
	for (size_t k = 0; k < p->nrules; k++)
		if (p->rules[k].name == name)
			return (long)k;
	return -1;
}

static void
decide_one(const struct policy *p, const struct policy_identity *id, enum policy_action a,
    const char *vault, int named_vault, const char *name, int ask_who)
{
	struct policy_decision d;
	char text[512];
	long k, rk;
	int ref_allow;

	kwf_check(policy_decide(p, id, a, vault, name, &d) == 0);
	kwf_check(d.allow == 0 || d.allow == 1);
	kwf_check(d.rule != NULL || !d.allow);
	kwf_check(policy_decision_format(&d, text, sizeof(text)) > 0);
	k = d.rule != NULL ? rule_index(p, d.rule) : -1;
	if (d.rule != NULL) {
		/* The rule that decided is one that says so. */
		kwf_check(k >= 0);
		kwf_check(d.line == p->rules[k].line);
		kwf_check(ref_rule(&p->rules[k], id, a, name, !d.allow));
		kwf_check(named_vault || p->rules[k].any_vault);
	}
	rk = ref_decide(p, id, a, name, &ref_allow);
	if (!named_vault) {
		/* Only the rules for every vault can decide. */
		kwf_check(k == rk && d.allow == ref_allow);
	} else if (rk >= 0 && !ref_allow) {
		/* A vault's own rules add candidates, never take one away. */
		kwf_check(d.rule != NULL && !d.allow && k <= rk);
	} else if (rk >= 0) {
		kwf_check(d.rule != NULL && (!d.allow || k <= rk));
	}
	if (ask_who && d.rule != NULL) {
		struct seek s = { d.rule, !d.allow, 0 };

		kwf_check(policy_who_can(p, a, vault, name, who_cb, &s) == 0);
		kwf_check(s.seen);
	}
}

/* A name a pattern matches: "*" in a segment becomes "x", a "**"
 * segment "a/b". */
static void
name_from(const char *pat, char *buf, size_t len)
{
	size_t o = 0;

	for (const char *s = pat; *s != '\0' && o + 4 < len; s++) {
		if (s[0] == '*' && s[1] == '*') {
			memcpy(buf + o, "a/b", 3);
			o += 3;
			s++;
		} else
			buf[o++] = *s == '*' ? 'x' : *s;
	}
	buf[o] = '\0';
}

static void
decide_all(const struct policy *p)
{
	struct policy_identity ids[MAX_IDS];
	gid_t none[1] = { 4242 };
	const char *vaults[MAX_VAULTS + 2];
	char names[MAX_NAMES][300];
	const char *namep[MAX_NAMES + 1];
	size_t nids = 0, nv = 0, nn = 0;

	/* Callers: an unknown one, then one per principal spec, fully known
	 * and known but for its executable, unit and groups. */
	memset(ids, 0, sizeof(ids));
	ids[0].known = POLICY_ID_UID | POLICY_ID_GID | POLICY_ID_GROUPS;
	ids[0].uid = 4242;
	ids[0].gid = 4242;
	ids[0].groups = none;
	ids[0].ngroups = 1;
	nids = 1;
	for (size_t k = 0; k < p->nrules && nids + 2 <= MAX_IDS; k++) {
		for (size_t j = 0; j < p->rules[k].nwho && nids + 2 <= MAX_IDS; j++) {
			const struct pol_conj *c = &p->rules[k].who[j];
			struct policy_identity *id = &ids[nids++];

			id->known = POLICY_ID_UID | POLICY_ID_GID | POLICY_ID_GROUPS |
			    POLICY_ID_PID | POLICY_ID_EXE | POLICY_ID_UNIT;
			id->uid = (c->need & POLICY_ID_UID) ? c->uid : 4243;
			id->gid = c->ngids > 0 ? c->gids[0] : 4243;
			id->groups = c->gids;
			id->ngroups = c->ngids;
			id->pid = 1;
			id->exe = c->exe != NULL ? c->exe : "/usr/bin/other";
			id->unit = c->unit != NULL ? c->unit : "other.service";
			ids[nids] = *id;
			ids[nids++].known &= ~(POLICY_ID_EXE | POLICY_ID_UNIT | POLICY_ID_GROUPS);
		}
	}
	for (size_t i = 0; i < p->nvaults && nv < MAX_VAULTS; i++)
		vaults[nv++] = p->vaults[i];
	namep[nn] = NULL;
	for (size_t k = 0; k < p->nrules && nn < MAX_NAMES; k++)
		for (size_t j = 0; j < p->rules[k].nnames && nn < MAX_NAMES; j++) {
			name_from(p->rules[k].names[j], names[nn], sizeof(names[nn]));
			namep[nn] = names[nn];
			nn++;
		}
	namep[nn++] = NULL;
	for (int a = 0; a < POLICY_A_COUNT; a++) {
		for (size_t i = 0; i < nids; i++) {
			for (size_t n = 0; n < nn; n++) {
				for (size_t v = 0; v < nv; v++)
					decide_one(p, &ids[i], (enum policy_action)a, vaults[v], 1,
					    namep[n], i == 0 || i == 1);
				decide_one(p, &ids[i], (enum policy_action)a, "zz-no-rule-names-it", 0,
				    namep[n], i == 1);
				decide_one(p, &ids[i], (enum policy_action)a, NULL, 0, namep[n], i == 1);
			}
		}
	}
	{
		struct policy_decision d;

		kwf_check(policy_decide(p, &ids[0], POLICY_A_COUNT, "v", "n", &d) == -EINVAL);
		kwf_check(d.allow == 0 && d.rule == NULL);
	}
}

/* ---- errors ------------------------------------------------------------------- */

/* Errors (sorted: in file order) or warnings (in rule order). */
static void
check_errors(const struct policy_errors *e, const char *path, int file_level, int sorted)
{
	static FILE *null;
	char line[1024], small[8];

	kwf_check(e != NULL && e->n > 0);
	for (size_t i = 0; i < e->n; i++) {
		const struct policy_error *x = &e->v[i];

		kwf_check(x->file != NULL && strcmp(x->file, path) == 0);
		kwf_check(x->path != NULL && x->msg != NULL && x->msg[0] != '\0');
		kwf_check((x->line == 0) == (x->col == 0));
		kwf_check(x->line > 0 || file_level);
		if (i > 0 && sorted)
			kwf_check(e->v[i - 1].line < x->line ||
			    (e->v[i - 1].line == x->line && e->v[i - 1].col <= x->col));
		kwf_check(policy_error_format(x, line, sizeof(line)) > 0);
		kwf_check(policy_error_format(x, small, sizeof(small)) > 0 &&
		    strlen(small) < sizeof(small));
	}
	if (null == NULL && (null = fopen("/dev/null", "w")) == NULL)
		kwf_fail("cannot open /dev/null");
	policy_errors_print(null, e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[512];
	struct policy_load_opts o = {
		.lookup_user = fake_user, .lookup_group = fake_group, .lookup_arg = NULL,
	};
	struct policy *p = NULL;
	struct policy_errors *errs = NULL, *warn = NULL;
	unsigned char md[SHA256_DIGEST_LENGTH];
	char hex[65];
	int r;

	if (path[0] == '\0') {
		const char *t = kwf_tmpdir();

		if (t == NULL)
			kwf_fail("no temporary directory");
		snprintf(path, sizeof(path), "%s/policy.yaml", t);
	}
	if (kwf_write_file(path, data, size, 0600) != 0)
		kwf_fail("cannot write the policy file");
	o.daemon_uid = geteuid();

	r = policy_load(path, &o, &p, &errs);
	if (r == -ENOMEM) {
		/* A resolver said so: the load gives up, and frees what it had. */
		kwf_check(p == NULL);
		policy_errors_free(errs);
		return 0;
	}
	if (r != 0) {
		kwf_check(r == KW_E_POLICY && p == NULL);
		check_errors(errs, path, size > POLICY_MAX_FILE, 1);
		policy_errors_free(errs);
		return 0;
	}
	kwf_check(p != NULL && errs == NULL);
	kwf_check(strcmp(policy_file(p), path) == 0);
	kwf_check(policy_rule_count(p) == p->nrules);
	SHA256(data, size, md);
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	kwf_check(strcmp(policy_hash(p), hex) == 0);
	for (size_t i = 1; i < p->nvaults; i++)
		kwf_check(strcmp(p->vaults[i - 1], p->vaults[i]) < 0);

	kwf_check(policy_lint(p, &warn) == 0);
	if (warn != NULL)
		check_errors(warn, path, 0, 0);
	policy_errors_free(warn);

	decide_all(p);
	policy_free(p);
	return 0;
}
