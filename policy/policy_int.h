/*
 * policy_int.h - the compiled form of a policy, shared by policy_load.c
 * (which builds it) and policy_decide.c (which only reads it).
 */
#ifndef KW_POLICY_INT_H
#define KW_POLICY_INT_H

#include "policy/policy.h"

#define POL_MAX_CONJ_GIDS 8     /* groups one principal spec may require */
#define POL_MAX_WHO 64          /* specs one rule's `who` may expand to */
#define POL_MAX_DSTAR 2         /* '**' segments in one name pattern */

/* One principal spec: the caller must match every field it has. */
struct pol_conj {
	unsigned need;                       /* POLICY_ID_* bits required */
	uid_t uid;
	gid_t gids[POL_MAX_CONJ_GIDS];       /* each in gid or groups[] */
	unsigned ngids;
	uint64_t gbloom;                     /* 1 << (gid % 64) of each gid */
	char *exe;
	char *unit;
	char *text;                          /* "group devs (gid 1001)" */
};

struct pol_rule {
	char *name;
	unsigned line;
	int deny;
	uint32_t actions;                    /* 1u << enum policy_action */
	int any_vault;                       /* vault '*' */
	int any_name;                        /* no names, or '**' among them */
	char **names;                        /* patterns, when !any_name */
	size_t nnames;
	struct pol_conj *who;                /* any of these */
	size_t nwho;
};

/* A rule whose every name pattern starts with a literal segment is found
 * through the hash of that segment; the others are scanned. */
struct pol_key {
	uint32_t hash;                       /* pol_seg_hash of the first segment */
	uint32_t id;                         /* rule index */
};

/* The rules that could decide one (vault slot, action, effect): ids in file
 * order (rules without a literal first segment), keys sorted by (hash, id). */
struct pol_list {
	const uint32_t *ids;
	uint32_t n;
	const struct pol_key *keys;
	uint32_t nkeys;
};

struct policy {
	char *file;
	char hash[65];
	struct pol_rule *rules;
	size_t nrules;
	char **vaults;                       /* sorted names rules mention */
	size_t nvaults;
	/* index[(slot * POLICY_A_COUNT + action) * 2 + deny]: the rules for
	 * vault slot (0..nvaults-1 the named vaults, nvaults any other vault,
	 * nvaults+1 no vault), action and effect. */
	struct pol_list *index;
	uint32_t *pool;                      /* storage of every ids array */
	struct pol_key *kpool;               /* storage of every keys array */
};

/* FNV-1a of the first '/'-separated segment of s. */
uint32_t pol_seg_hash(const char *s);

/* Does pattern pat match name?  Both NUL-terminated, '/'-separated. */
int pol_pattern_match(const char *pat, const char *name);

#endif
