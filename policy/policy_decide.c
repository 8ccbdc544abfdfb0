/*
 * policy_decide.c - deciding against a compiled policy.  Nothing here
 * allocates or writes to the policy: many threads may decide at once.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

static const char *const action_names[POLICY_A_COUNT] = {
	[POLICY_A_SECRET_GET] = "secret.get",
	[POLICY_A_SECRET_LIST] = "secret.list",
	[POLICY_A_SECRET_SET] = "secret.set",
	[POLICY_A_SECRET_UPDATE] = "secret.update",
	[POLICY_A_SECRET_DELETE] = "secret.delete",
	[POLICY_A_SECRET_RECOVER] = "secret.recover",
	[POLICY_A_SECRET_PURGE] = "secret.purge",
	[POLICY_A_SECRET_BACKUP] = "secret.backup",
	[POLICY_A_SECRET_RESTORE] = "secret.restore",
	[POLICY_A_KEY_DATAKEY] = "key.datakey",
	[POLICY_A_KEY_WRAP] = "key.wrap",
	[POLICY_A_KEY_UNWRAP] = "key.unwrap",
	[POLICY_A_KEY_ENCRYPT] = "key.encrypt",
	[POLICY_A_KEY_DECRYPT] = "key.decrypt",
	[POLICY_A_KEY_SIGN] = "key.sign",
	[POLICY_A_KEY_VERIFY] = "key.verify",
	[POLICY_A_KEY_CREATE] = "key.create",
	[POLICY_A_VAULT_CREATE] = "vault.create",
	[POLICY_A_VAULT_ROTATE] = "vault.rotate",
	[POLICY_A_VAULT_RETIRE] = "vault.retire",
	[POLICY_A_VAULT_STATUS] = "vault.status",
	[POLICY_A_AUDIT_READ] = "audit.read",
	[POLICY_A_AUDIT_STREAM] = "audit.stream",
	[POLICY_A_POLICY_RELOAD] = "policy.reload",
	[POLICY_A_POLICY_EXPLAIN] = "policy.explain",
};

int
policy_action_parse(const char *s, enum policy_action *out)
{
	if (s == NULL || out == NULL)
		return -EINVAL;
	for (int i = 0; i < POLICY_A_COUNT; i++) {
		if (strcmp(s, action_names[i]) == 0) {
			*out = (enum policy_action)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
policy_action_name(enum policy_action a)
{
	if ((int)a < 0 || a >= POLICY_A_COUNT)
		return "unknown";
	return action_names[a];
}

const char *
policy_hash(const struct policy *p)
{
	return p != NULL ? p->hash : "";
}

const char *
policy_file(const struct policy *p)
{
	return p != NULL ? p->file : "";
}

size_t
policy_rule_count(const struct policy *p)
{
	return p != NULL ? p->nrules : 0;
}

/* ---- name patterns -------------------------------------------------------- */

static const char *
seg_end(const char *s)
{
	while (*s != '\0' && *s != '/')
		s++;
	return s;
}

/* Glob one segment: '*' matches any run of characters within it. */
static int
seg_match(const char *p, const char *pe, const char *s, const char *se)
{
	const char *star = NULL, *resume = NULL;

	while (s < se) {
		if (p < pe && *p == '*') {
			star = ++p;
			resume = s;
		} else if (p < pe && *p == *s) {
			p++;
			s++;
		} else if (star != NULL) {
			p = star;
			s = ++resume;
		} else
			return 0;
	}
	while (p < pe && *p == '*')
		p++;
	return p == pe;
}

int
pol_pattern_match(const char *p, const char *s)
{
	for (;;) {
		const char *pe = seg_end(p), *se = seg_end(s);

		if (pe - p == 2 && p[0] == '*' && p[1] == '*') {
			/* '**': one or more whole segments. */
			if (se == s)
				return 0;
			if (*pe == '\0')
				return 1;
			for (const char *t = se; *t != '\0'; t = seg_end(t + 1))
				if (pol_pattern_match(pe + 1, t + 1))
					return 1;
			return 0;
		}
		if (!seg_match(p, pe, s, se))
			return 0;
		if (*pe == '\0' || *se == '\0')
			return *pe == '\0' && *se == '\0';
		p = pe + 1;
		s = se + 1;
	}
}

uint32_t
pol_seg_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0' && *s != '/'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* ---- deciding -------------------------------------------------------------- */

static int
gid_cmp(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;

	return x < y ? -1 : x > y;
}

void
policy_groups_sort(gid_t *v, size_t n)
{
	if (v != NULL && n > 1)
		qsort(v, n, sizeof(*v), gid_cmp);
}

/* Whether g is the caller's primary group or one of its supplementary
 * groups, found by binary search: they are in ascending order
 * (policy_groups_sort). */
static int
has_gid(const struct policy_identity *id, gid_t g)
{
	size_t lo = 0, hi;

	if ((id->known & POLICY_ID_GID) && id->gid == g)
		return 1;
	if (!(id->known & POLICY_ID_GROUPS) || id->groups == NULL)
		return 0;
	hi = id->ngroups;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (id->groups[mid] < g)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < id->ngroups && id->groups[lo] == g;
}

/* A caller in more groups than the filter has bits sets most of them (64
 * consecutive gids set all 64), so that it rules out little, and building
 * it would walk every group on each decision: past this many groups the
 * filter is all ones and each rule's groups are looked up (log n each). */
#define BLOOM_MAX_GROUPS 64

/* 1 << (gid % 64) for every group the caller is known to be in; every bit
 * for a caller in more than BLOOM_MAX_GROUPS groups. */
static uint64_t
id_bloom(const struct policy_identity *id)
{
	uint64_t b = 0;

	if ((id->known & POLICY_ID_GROUPS) && id->groups != NULL &&
	    id->ngroups > BLOOM_MAX_GROUPS)
		return ~(uint64_t)0;
	if (id->known & POLICY_ID_GID)
		b |= 1ull << (id->gid % 64);
	if ((id->known & POLICY_ID_GROUPS) && id->groups != NULL)
		for (size_t i = 0; i < id->ngroups; i++)
			b |= 1ull << (id->groups[i] % 64);
	return b;
}

/* Whether the caller is one the conjunction names.  What the daemon could
 * not learn about the caller (its executable or unit when the process was
 * gone, its groups when they could not be read) never makes an allow rule
 * match; for a deny rule it cannot rule the caller out, so only what is
 * known can (fail closed: a deny is not escaped by hiding from it). */
static int
conj_match(const struct pol_conj *c, const struct policy_identity *id, uint64_t bloom, int deny)
{
	unsigned known = id->known & c->need;
	int groups_known = (id->known & POLICY_ID_GROUPS) != 0;

	if (known != c->need && !deny)
		return 0;
	if ((known & POLICY_ID_UID) && id->uid != c->uid)
		return 0;
	if ((known & POLICY_ID_EXE) && (id->exe == NULL || strcmp(id->exe, c->exe) != 0))
		return 0;
	if ((known & POLICY_ID_UNIT) && (id->unit == NULL || strcmp(id->unit, c->unit) != 0))
		return 0;
	if (deny && !groups_known)
		return 1;
	/* A group the caller is surely not in: no need to look further. */
	if ((c->gbloom & ~bloom) != 0)
		return 0;
	for (unsigned i = 0; i < c->ngids; i++)
		if (!has_gid(id, c->gids[i]))
			return 0;
	return 1;
}

static int
name_match(const struct pol_rule *r, const char *name)
{
	if (r->any_name)
		return 1;
	if (name == NULL)
		return 0;
	for (size_t i = 0; i < r->nnames; i++)
		if (pol_pattern_match(r->names[i], name))
			return 1;
	return 0;
}

static int
who_match(const struct pol_rule *r, const struct policy_identity *id, uint64_t bloom, int deny)
{
	for (size_t i = 0; i < r->nwho; i++)
		if (conj_match(&r->who[i], id, bloom, deny))
			return 1;
	return 0;
}

static size_t
vault_slot(const struct policy *p, const char *vault)
{
	size_t lo = 0, hi = p->nvaults;

	if (vault == NULL)
		return p->nvaults + 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(vault, p->vaults[mid]);

		if (c == 0)
			return mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return p->nvaults;
}

static const struct pol_list *
index_list(const struct policy *p, size_t slot, enum policy_action a, int deny)
{
	return &p->index[(slot * POLICY_A_COUNT + (size_t)a) * 2 + (size_t)(deny != 0)];
}

/* Walk the candidates of l for name in file order: the scanned ids merged
 * with the keyed ones whose first segment hashes like name's. */
struct cand_iter {
	const struct pol_list *l;
	uint32_t i, j, jend;
};

static void
cand_start(struct cand_iter *it, const struct pol_list *l, const char *name)
{
	uint32_t lo = 0, hi = l->nkeys, h;

	it->l = l;
	it->i = 0;
	it->j = it->jend = 0;
	if (name == NULL || l->nkeys == 0)
		return;
	h = pol_seg_hash(name);
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (l->keys[mid].hash < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	it->j = it->jend = lo;
	while (it->jend < l->nkeys && l->keys[it->jend].hash == h)
		it->jend++;
}

/* The next rule index, or UINT32_MAX at the end. */
static uint32_t
cand_next(struct cand_iter *it)
{
	const struct pol_list *l = it->l;
	int have_i = it->i < l->n, have_j = it->j < it->jend;

	if (have_i && (!have_j || l->ids[it->i] < l->keys[it->j].id))
		return l->ids[it->i++];
	if (have_j)
		return l->keys[it->j++].id;
	return UINT32_MAX;
}

int
policy_decide(const struct policy *p, const struct policy_identity *id,
    enum policy_action a, const char *vault, const char *name,
    struct policy_decision *out)
{
	size_t slot;
	uint64_t bloom;

	if (out == NULL)
		return -EINVAL;
	out->allow = 0;
	out->rule = NULL;
	out->file = p != NULL ? p->file : NULL;
	out->line = 0;
	if (p == NULL || id == NULL || (int)a < 0 || a >= POLICY_A_COUNT)
		return -EINVAL;
	slot = vault_slot(p, vault);
	bloom = id_bloom(id);
	for (int deny = 1; deny >= 0; deny--) {
		struct cand_iter it;
		uint32_t k;

		cand_start(&it, index_list(p, slot, a, deny), name);
		while ((k = cand_next(&it)) != UINT32_MAX) {
			const struct pol_rule *r = &p->rules[k];

			if (!who_match(r, id, bloom, deny) || !name_match(r, name))
				continue;
			out->allow = !deny;
			out->rule = r->name;
			out->line = r->line;
			return 0;
		}
	}
	return 0;
}

int
policy_decision_format(const struct policy_decision *d, char *buf, size_t len)
{
	if (d == NULL || d->rule == NULL)
		return snprintf(buf, len, "denied: no rule allows it");
	return snprintf(buf, len, "%s by rule '%s' at %s:%u",
	    d->allow ? "allowed" : "denied", d->rule,
	    d->file != NULL ? d->file : "?", d->line);
}

int
policy_who_can(const struct policy *p, enum policy_action a,
    const char *vault, const char *name,
    int (*cb)(void *arg, const struct policy_who *w), void *arg)
{
	size_t slot;

	if (p == NULL || cb == NULL || (int)a < 0 || a >= POLICY_A_COUNT)
		return -EINVAL;
	slot = vault_slot(p, vault);
	for (int deny = 1; deny >= 0; deny--) {
		struct cand_iter it;
		uint32_t k;

		cand_start(&it, index_list(p, slot, a, deny), name);
		while ((k = cand_next(&it)) != UINT32_MAX) {
			const struct pol_rule *r = &p->rules[k];

			if (!name_match(r, name))
				continue;
			for (size_t j = 0; j < r->nwho; j++) {
				struct policy_who w = {
					.deny = deny, .principal = r->who[j].text,
					.rule = r->name, .file = p->file, .line = r->line,
				};
				int rc = cb(arg, &w);

				if (rc != 0)
					return rc;
			}
		}
	}
	return 0;
}

/* ---- freeing -------------------------------------------------------------- */

void
policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->nrules; i++) {
		struct pol_rule *r = &p->rules[i];

		free(r->name);
		for (size_t j = 0; j < r->nnames; j++)
			free(r->names[j]);
		free(r->names);
		for (size_t j = 0; j < r->nwho; j++) {
			free(r->who[j].exe);
			free(r->who[j].unit);
			free(r->who[j].text);
		}
		free(r->who);
	}
	free(p->rules);
	for (size_t i = 0; i < p->nvaults; i++)
		free(p->vaults[i]);
	free(p->vaults);
	free(p->index);
	free(p->pool);
	free(p->kpool);
	free(p->file);
	free(p);
}
