/*
 * policy_load.c - reading, checking and compiling a policy file.
 *
 * The file is opened once, its owner and mode checked on the open
 * descriptor, its bytes read and hashed, then parsed from memory with
 * libyaml's document loader.  Every problem is collected with its
 * file:line:col and YAML path; only a file without any becomes a policy.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "kw_error.h"
#include "kw_nss.h"
#include "policy/policy_int.h"

#define MAX_ERRORS 1000
#define ALL_ACTIONS ((1u << POLICY_A_COUNT) - 1)
#define A(x) (1u << POLICY_A_##x)
/* Actions that are about the host, not one vault. */
#define HOST_ACTIONS (A(AUDIT_READ) | A(AUDIT_STREAM) | A(POLICY_RELOAD) | A(POLICY_EXPLAIN))

/* A principal spec while compiling: strings borrowed from the document. */
struct tconj {
	unsigned need;
	uid_t uid;
	const char *user;                    /* as written, for the text */
	gid_t gids[POL_MAX_CONJ_GIDS];
	const char *gnames[POL_MAX_CONJ_GIDS];
	unsigned ngids;
	const char *exe, *unit;
};

struct tset {
	size_t n;
	struct tconj v[POL_MAX_WHO];
};

struct named {
	const char *name;
	struct tset *set;                    /* NULL: invalid or not yet compiled */
};

struct role {
	const char *name;
	uint32_t mask;
};

struct trule {
	const char **vaults;                 /* borrowed */
	size_t nvaults;
};

struct lctx {
	const char *file;
	yaml_document_t *doc;
	const struct policy_load_opts *o;
	struct policy_errors *errs;
	int nomem;
	struct named *princ;
	size_t nprinc;
	struct role *roles;
	size_t nroles;
	char why[256];                       /* reason a combination fails */
	int depth;                           /* nesting of principals now */
	unsigned long visits;                /* principal nodes compiled so far */
	char *nss_buf;                       /* the user and group lookups' (kw_nss.h) */
	size_t nss_len;
};

/* Limits against a file that nests or aliases its way to a huge tree. */
#define MAX_DEPTH 16
#define MAX_VISITS 200000UL

/* Build a YAML path; a path too long for buf is cut short. */
static void
yp_set(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
yp_set(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* ---- errors ----------------------------------------------------------------- */

static char *
xstrdup(struct lctx *x, const char *s)
{
	char *d = strdup(s != NULL ? s : "");

	if (d == NULL)
		x->nomem = 1;
	return d;
}

static void
add_error(struct lctx *x, unsigned line, unsigned col, const char *yp, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void
add_error(struct lctx *x, unsigned line, unsigned col, const char *yp, const char *fmt, ...)
{
	struct policy_errors *e = x->errs;
	struct policy_error *v, *n;
	char msg[512];
	va_list ap;

	if (e->n >= MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e->n + 1 == MAX_ERRORS)
		snprintf(msg, sizeof(msg), "too many errors: stopped counting at %d", MAX_ERRORS);
	v = realloc(e->v, (e->n + 1) * sizeof(*v));
	if (v == NULL) {
		x->nomem = 1;
		return;
	}
	e->v = v;
	n = &v[e->n];
	n->line = line;
	n->col = col;
	n->file = strdup(x->file);
	n->path = strdup(yp != NULL ? yp : "");
	n->msg = strdup(msg);
	if (n->file == NULL || n->path == NULL || n->msg == NULL) {
		free(n->file);
		free(n->path);
		free(n->msg);
		x->nomem = 1;
		return;
	}
	e->n++;
}

/* libyaml counts lines and columns from 0; people count from 1. */
#define ERR(x, node, yp, ...) \
	add_error((x), (unsigned)(node)->start_mark.line + 1, \
	    (unsigned)(node)->start_mark.column + 1, (yp), __VA_ARGS__)

void
policy_errors_free(struct policy_errors *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++) {
		free(e->v[i].file);
		free(e->v[i].path);
		free(e->v[i].msg);
	}
	free(e->v);
	free(e);
}

size_t
policy_exe_rules(const struct policy *p, const char **name, unsigned *line)
{
	size_t n = 0;

	for (size_t i = 0; p != NULL && i < p->nrules; i++) {
		const struct pol_rule *r = &p->rules[i];
		size_t j;

		for (j = 0; j < r->nwho && !(r->who[j].need & POLICY_ID_EXE); j++)
			;
		if (j == r->nwho)
			continue;
		if (n++ == 0) {
			*name = r->name;
			*line = r->line;
		}
	}
	return n;
}

int
policy_lint(const struct policy *p, struct policy_errors **out)
{
	struct policy_errors *w = NULL;
	size_t cap = 0;

	*out = NULL;
	if (p == NULL)
		return -EINVAL;
	for (size_t i = 0; i < p->nrules; i++) {
		const struct pol_rule *r = &p->rules[i];

		for (size_t j = 0; j < r->nwho && !r->deny; j++) {
			const struct pol_conj *c = &r->who[j];
			struct policy_error *e;
			char path[64];

			if (!(c->need & POLICY_ID_EXE) || (c->need & (POLICY_ID_UID | POLICY_ID_UNIT)) ||
			    c->ngids > 0)
				continue;
			if (w == NULL && (w = calloc(1, sizeof(*w))) == NULL)
				goto nomem;
			if (w->n == cap) {
				size_t nc = cap ? cap * 2 : 4;
				struct policy_error *nv = realloc(w->v, nc * sizeof(*nv));
				if (nv == NULL)
					goto nomem;
				w->v = nv;
				cap = nc;
			}
			e = &w->v[w->n];
			memset(e, 0, sizeof(*e));
			snprintf(path, sizeof(path), "rules[%zu].who", i);
			e->line = r->line;
			e->col = 1;
			if ((e->file = strdup(p->file ? p->file : "")) == NULL ||
			    (e->path = strdup(path)) == NULL ||
			    asprintf(&e->msg, "warning: rule '%s' allows %s by its executable alone: any "
			    "user can connect, exec that binary and keep the connection in a child; "
			    "add a user or a unit", r->name, c->text ? c->text : "a caller") < 0) {
				e->msg = NULL;
				w->n++;
				goto nomem;
			}
			w->n++;
		}
	}
	*out = w;
	return 0;
nomem:
	policy_errors_free(w);
	return -ENOMEM;
}

void
policy_errors_print(FILE *f, const struct policy_errors *e)
{
	char line[1024];

	for (size_t i = 0; e != NULL && i < e->n; i++) {
		policy_error_format(&e->v[i], line, sizeof(line));
		fprintf(f, "%s\n", line);
	}
}

int
policy_error_format(const struct policy_error *e, char *buf, size_t len)
{
	if (e->line == 0)
		return snprintf(buf, len, "%s: %s", e->file, e->msg);
	if (e->path == NULL || e->path[0] == '\0')
		return snprintf(buf, len, "%s:%u:%u: %s", e->file, e->line, e->col, e->msg);
	return snprintf(buf, len, "%s:%u:%u: %s: %s", e->file, e->line, e->col, e->path, e->msg);
}

/* Sort errors by position, keeping the order of equal ones. */
static void
errors_sort(struct policy_errors *e)
{
	for (size_t i = 1; i < e->n; i++) {
		struct policy_error t = e->v[i];
		size_t j = i;

		while (j > 0 && (e->v[j - 1].line > t.line ||
		    (e->v[j - 1].line == t.line && e->v[j - 1].col > t.col))) {
			e->v[j] = e->v[j - 1];
			j--;
		}
		e->v[j] = t;
	}
}

/* ---- document helpers ----------------------------------------------------- */

static yaml_node_t *
node_at(struct lctx *x, int id)
{
	return yaml_document_get_node(x->doc, id);
}

static const char *
type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE: return "a scalar";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_MAPPING_NODE: return "a mapping";
	default: return "nothing";
	}
}

static const char *
scalar(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A scalar value, or an error naming what was expected. */
static const char *
want_scalar(struct lctx *x, yaml_node_t *n, const char *yp, const char *what)
{
	if (n->type != YAML_SCALAR_NODE) {
		ERR(x, n, yp, "expected %s, found %s", what, type_name(n));
		return NULL;
	}
	return scalar(n);
}

static int
want_type(struct lctx *x, yaml_node_t *n, yaml_node_type_t t, const char *yp, const char *what)
{
	if (n->type == t)
		return 0;
	ERR(x, n, yp, "expected %s, found %s", what, type_name(n));
	return -1;
}

/* Report unknown and duplicate keys of a mapping; valid[] ends with NULL. */
static void
check_keys(struct lctx *x, yaml_node_t *m, const char *yp, const char *const valid[], const char *list)
{
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(x, p->key);
		const char *ks = scalar(k);
		int ok = 0;

		if (ks == NULL) {
			ERR(x, k, yp, "a key must be a plain word, found %s", type_name(k));
			continue;
		}
		for (int i = 0; valid != NULL && valid[i] != NULL; i++)
			if (strcmp(ks, valid[i]) == 0)
				ok = 1;
		if (!ok && valid != NULL) {
			ERR(x, k, yp, "unknown key '%s' (expected %s)", ks, list);
			continue;
		}
		for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *k0 = node_at(x, q->key);
			const char *ks0 = scalar(k0);

			if (ks0 != NULL && strcmp(ks0, ks) == 0) {
				ERR(x, k, yp, "duplicate key '%s' (first at line %lu)", ks,
				    (unsigned long)k0->start_mark.line + 1);
				break;
			}
		}
	}
}

/* The value of the first key named k, or NULL. */
static yaml_node_t *
map_get(struct lctx *x, yaml_node_t *m, const char *k, yaml_node_t **key)
{
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = node_at(x, p->key);
		const char *ks = scalar(kn);

		if (ks != NULL && strcmp(ks, k) == 0) {
			if (key != NULL)
				*key = kn;
			return node_at(x, p->value);
		}
	}
	return NULL;
}

/* ---- actions and roles ---------------------------------------------------- */

static uint32_t
mask_of(const char *const names[])
{
	uint32_t m = 0;
	enum policy_action a;

	for (int i = 0; names[i] != NULL; i++) {
		if (strcmp(names[i], "key.*") == 0)
			m |= A(KEY_DATAKEY) | A(KEY_WRAP) | A(KEY_UNWRAP) | A(KEY_ENCRYPT) |
			    A(KEY_DECRYPT) | A(KEY_SIGN) | A(KEY_VERIFY) | A(KEY_CREATE);
		else if (strcmp(names[i], "secret.*") == 0)
			m |= A(SECRET_GET) | A(SECRET_LIST) | A(SECRET_SET) | A(SECRET_UPDATE) |
			    A(SECRET_DELETE) | A(SECRET_RECOVER) | A(SECRET_PURGE) |
			    A(SECRET_BACKUP) | A(SECRET_RESTORE);
		else if (strcmp(names[i], "*") == 0)
			m |= ALL_ACTIONS;
		else if (policy_action_parse(names[i], &a) == 0)
			m |= 1u << a;
	}
	return m;
}

static const char *const r_reader[] = { "secret.get", NULL };
static const char *const r_user[] = { "secret.get", "secret.list", NULL };
static const char *const r_officer[] = { "secret.*", NULL };
/* Using keys, not making them: key.create is for crypto officers. */
static const char *const r_crypto[] = { "key.datakey", "key.wrap", "key.unwrap", "key.encrypt",
	"key.decrypt", "key.sign", "key.verify", NULL };
static const char *const r_cofficer[] = { "key.*", "vault.rotate", "vault.retire", "vault.status", NULL };
static const char *const r_auditor[] = { "audit.read", "audit.stream", "secret.list", "vault.status", NULL };
static const char *const r_admin[] = { "*", NULL };

static const struct {
	const char *name;
	const char *const *actions;
} builtin_roles[] = {
	{ "secrets-reader", r_reader },
	{ "secrets-user", r_user },
	{ "secrets-officer", r_officer },
	{ "crypto-user", r_crypto },
	{ "crypto-officer", r_cofficer },
	{ "auditor", r_auditor },
	{ "administrator", r_admin },
};
#define NBUILTIN (sizeof(builtin_roles) / sizeof(builtin_roles[0]))
#define BUILTIN_LIST "secrets-reader, secrets-user, secrets-officer, crypto-user, " \
	"crypto-officer, auditor, administrator"

static int
builtin_role(const char *s, uint32_t *mask)
{
	for (size_t i = 0; i < NBUILTIN; i++) {
		if (strcmp(s, builtin_roles[i].name) == 0) {
			*mask = mask_of(builtin_roles[i].actions);
			return 1;
		}
	}
	return 0;
}

/* One word: an action, an area wildcard ("secret.*"), "*", or a role. */
static int
action_word(struct lctx *x, yaml_node_t *n, const char *yp, int custom_roles, uint32_t *mask)
{
	const char *s = want_scalar(x, n, yp, "an action or a role");
	enum policy_action a;
	size_t len;

	if (s == NULL)
		return -1;
	len = strlen(s);
	if (strcmp(s, "*") == 0) {
		*mask |= ALL_ACTIONS;
		return 0;
	}
	if (strchr(s, '.') != NULL) {
		if (policy_action_parse(s, &a) == 0) {
			*mask |= 1u << a;
			return 0;
		}
		if (len > 2 && strcmp(s + len - 2, ".*") == 0) {
			uint32_t m = 0;

			for (int i = 0; i < POLICY_A_COUNT; i++)
				if (strncmp(policy_action_name((enum policy_action)i), s, len - 1) == 0)
					m |= 1u << i;
			if (m != 0) {
				*mask |= m;
				return 0;
			}
		}
		ERR(x, n, yp, "unknown action '%s' (actions are written like secret.get, "
		    "key.wrap, vault.rotate, audit.stream, policy.explain, or secret.*)", s);
		return -1;
	}
	{
		uint32_t m;

		if (builtin_role(s, &m)) {
			*mask |= m;
			return 0;
		}
	}
	if (custom_roles) {
		for (size_t i = 0; i < x->nroles; i++) {
			if (strcmp(x->roles[i].name, s) == 0) {
				*mask |= x->roles[i].mask;
				return 0;
			}
		}
		ERR(x, n, yp, "unknown role '%s' (built-in roles: %s; or define it under roles)",
		    s, BUILTIN_LIST);
	} else
		ERR(x, n, yp, "unknown role '%s': a role may list actions and built-in roles (%s)",
		    s, BUILTIN_LIST);
	return -1;
}

/* A word or a list of words; never empty. */
static int
action_list(struct lctx *x, yaml_node_t *n, const char *yp, int custom_roles, uint32_t *mask)
{
	char ip[300];
	int bad = 0, i = 0;

	*mask = 0;
	if (n->type == YAML_SCALAR_NODE)
		return action_word(x, n, yp, custom_roles, mask);
	if (n->type != YAML_SEQUENCE_NODE) {
		ERR(x, n, yp, "expected an action, a role or a list of them, found %s", type_name(n));
		return -1;
	}
	if (n->data.sequence.items.start == n->data.sequence.items.top) {
		ERR(x, n, yp, "an empty list of actions never matches");
		return -1;
	}
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		yp_set(ip, sizeof(ip), "%s[%d]", yp, i);
		if (action_word(x, node_at(x, *it), ip, custom_roles, mask) != 0)
			bad = 1;
	}
	return bad ? -1 : 0;
}

/* ---- users and groups ------------------------------------------------------ */

static int
all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/* A uid from "1000" or a user name. */
static int
resolve_id(struct lctx *x, yaml_node_t *n, const char *yp, int group, unsigned *out)
{
	const char *s = want_scalar(x, n, yp, group ? "a group name or gid" : "a user name or uid");
	unsigned long v;
	int rc;

	if (s == NULL)
		return -1;
	if (all_digits(s)) {
		errno = 0;
		v = strtoul(s, NULL, 10);
		if (errno != 0 || v >= 0xffffffffUL) {
			ERR(x, n, yp, "%s %s is out of range", group ? "gid" : "uid", s);
			return -1;
		}
		*out = (unsigned)v;
		return 0;
	}
	if (s[0] == '\0') {
		ERR(x, n, yp, "an empty %s name matches nobody", group ? "group" : "user");
		return -1;
	}
	if (group) {
		struct group gr;
		gid_t g = 0;

		if (x->o->lookup_group != NULL)
			rc = x->o->lookup_group(x->o->lookup_arg, s, &g);
		else if ((rc = kwnss_gr_name(s, &gr, &x->nss_buf, &x->nss_len)) == 0)
			g = gr.gr_gid;
		*out = (unsigned)g;
	} else {
		struct passwd pw;
		uid_t u = 0;

		if (x->o->lookup_user != NULL)
			rc = x->o->lookup_user(x->o->lookup_arg, s, &u);
		else if ((rc = kwnss_pw_name(s, &pw, &x->nss_buf, &x->nss_len)) == 0)
			u = pw.pw_uid;
		*out = (unsigned)u;
	}
	if (rc == -ENOMEM)
		x->nomem = 1;
	if (rc == -ENOENT)
		ERR(x, n, yp, "%s '%s' does not exist on this system: create it, or write the "
		    "numeric %s", group ? "group" : "user", s, group ? "gid" : "uid");
	else if (rc != 0)
		ERR(x, n, yp, "cannot look up %s '%s': %s", group ? "group" : "user", s,
		    strerror(-rc));
	return rc == 0 ? 0 : -1;
}

/* ---- principals ----------------------------------------------------------- */

static struct tset *
tset_new(struct lctx *x)
{
	struct tset *s = calloc(1, sizeof(*s));

	if (s == NULL)
		x->nomem = 1;
	return s;
}

/* a and b together, or 0 (with x->why) when no caller can be both. */
static int
conj_merge(struct lctx *x, const struct tconj *a, const struct tconj *b, struct tconj *out)
{
	*out = *a;
	if (b->need & POLICY_ID_UID) {
		if ((a->need & POLICY_ID_UID) && a->uid != b->uid) {
			snprintf(x->why, sizeof(x->why), "a caller cannot be user %s and user %s",
			    a->user, b->user);
			return 0;
		}
		out->uid = b->uid;
		out->user = b->user;
	}
	if (b->need & POLICY_ID_EXE) {
		if ((a->need & POLICY_ID_EXE) && strcmp(a->exe, b->exe) != 0) {
			snprintf(x->why, sizeof(x->why), "a caller cannot run both %s and %s",
			    a->exe, b->exe);
			return 0;
		}
		out->exe = b->exe;
	}
	if (b->need & POLICY_ID_UNIT) {
		if ((a->need & POLICY_ID_UNIT) && strcmp(a->unit, b->unit) != 0) {
			snprintf(x->why, sizeof(x->why), "a caller cannot be in both units %s and %s",
			    a->unit, b->unit);
			return 0;
		}
		out->unit = b->unit;
	}
	out->need |= b->need;
	for (unsigned i = 0; i < b->ngids; i++) {
		unsigned j;

		for (j = 0; j < out->ngids; j++)
			if (out->gids[j] == b->gids[i])
				break;
		if (j < out->ngids)
			continue;
		if (out->ngids == POL_MAX_CONJ_GIDS) {
			snprintf(x->why, sizeof(x->why), "more than %d groups in one combination",
			    POL_MAX_CONJ_GIDS);
			return -1;
		}
		out->gids[out->ngids] = b->gids[i];
		out->gnames[out->ngids++] = b->gnames[i];
	}
	return 1;
}

/* acc := acc AND b.  Returns 0, or -1 after reporting at n. */
static int
tset_and(struct lctx *x, yaml_node_t *n, const char *yp, struct tset *acc, const struct tset *b)
{
	struct tset *r = tset_new(x);
	int contradiction = 0;

	if (r == NULL)
		return -1;
	for (size_t i = 0; i < acc->n; i++) {
		for (size_t j = 0; j < b->n; j++) {
			struct tconj c;
			int m = conj_merge(x, &acc->v[i], &b->v[j], &c);

			if (m < 0) {
				ERR(x, n, yp, "%s", x->why);
				free(r);
				return -1;
			}
			if (m == 0) {
				contradiction = 1;
				continue;
			}
			if (r->n == POL_MAX_WHO) {
				ERR(x, n, yp, "this combination expands to more than %d alternatives",
				    POL_MAX_WHO);
				free(r);
				return -1;
			}
			r->v[r->n++] = c;
		}
	}
	if (r->n == 0 && contradiction) {
		ERR(x, n, yp, "this combination can never match: %s", x->why);
		free(r);
		return -1;
	}
	*acc = *r;
	free(r);
	return 0;
}

static int
tset_or(struct lctx *x, yaml_node_t *n, const char *yp, struct tset *acc, const struct tset *b)
{
	if (acc->n + b->n > POL_MAX_WHO) {
		ERR(x, n, yp, "this list expands to more than %d alternatives", POL_MAX_WHO);
		return -1;
	}
	memcpy(&acc->v[acc->n], b->v, b->n * sizeof(b->v[0]));
	acc->n += b->n;
	return 0;
}

static int who_node(struct lctx *, yaml_node_t *, const char *, struct tset *);

static const char *const principal_keys[] = { "user", "group", "exe", "unit", "any", "all",
	"principal", NULL };
#define PRINCIPAL_KEYS "user, group, exe, unit, any, all or principal"

/* Any of the items of a list. */
static int
who_any(struct lctx *x, yaml_node_t *n, const char *yp, struct tset *out)
{
	char ip[300];
	struct tset *t;
	int bad = 0, i = 0;

	out->n = 0;
	if (n->data.sequence.items.start == n->data.sequence.items.top) {
		ERR(x, n, yp, "an empty group of principals never matches");
		return -1;
	}
	if ((t = tset_new(x)) == NULL)
		return -1;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		yp_set(ip, sizeof(ip), "%s[%d]", yp, i);
		if (who_node(x, node_at(x, *it), ip, t) != 0 || tset_or(x, n, yp, out, t) != 0)
			bad = 1;
	}
	free(t);
	return bad ? -1 : 0;
}

static int
who_map(struct lctx *x, yaml_node_t *n, const char *yp, struct tset *out)
{
	char kp[300], ip[320];
	struct tset *t = NULL;
	int bad = 0;

	check_keys(x, n, yp, principal_keys, PRINCIPAL_KEYS);
	if (n->data.mapping.pairs.start == n->data.mapping.pairs.top) {
		ERR(x, n, yp, "an empty principal matches nobody: give " PRINCIPAL_KEYS);
		return -1;
	}
	if ((t = tset_new(x)) == NULL)
		return -1;
	out->n = 1;
	memset(&out->v[0], 0, sizeof(out->v[0]));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(x, p->key), *v = node_at(x, p->value);
		const char *ks = scalar(k);
		struct tconj *c = &t->v[0];
		unsigned id;

		if (ks == NULL || map_get(x, n, ks, NULL) != v)
			continue;       /* a repeated key: reported by check_keys */
		yp_set(kp, sizeof(kp), "%s%s%s", yp, yp[0] ? "." : "", ks);
		t->n = 1;
		memset(c, 0, sizeof(*c));
		if (strcmp(ks, "user") == 0) {
			if (resolve_id(x, v, kp, 0, &id) != 0) {
				bad = 1;
				continue;
			}
			c->need = POLICY_ID_UID;
			c->uid = (uid_t)id;
			c->user = scalar(v);
		} else if (strcmp(ks, "group") == 0) {
			/* A list of groups: the caller must be in all of them. */
			if (v->type == YAML_SEQUENCE_NODE) {
				int i = 0;

				if (v->data.sequence.items.start == v->data.sequence.items.top) {
					ERR(x, v, kp, "an empty list of groups matches nobody");
					bad = 1;
					continue;
				}
				for (yaml_node_item_t *it = v->data.sequence.items.start;
				    it < v->data.sequence.items.top; it++, i++) {
					yaml_node_t *g = node_at(x, *it);

					yp_set(ip, sizeof(ip), "%s[%d]", kp, i);
					if (resolve_id(x, g, ip, 1, &id) != 0) {
						bad = 1;
						continue;
					}
					if (c->ngids == POL_MAX_CONJ_GIDS) {
						ERR(x, g, ip, "more than %d groups in one principal",
						    POL_MAX_CONJ_GIDS);
						bad = 1;
						break;
					}
					c->gids[c->ngids] = (gid_t)id;
					c->gnames[c->ngids++] = scalar(g);
				}
			} else if (resolve_id(x, v, kp, 1, &id) == 0) {
				c->gids[0] = (gid_t)id;
				c->gnames[0] = scalar(v);
				c->ngids = 1;
			} else
				bad = 1;
		} else if (strcmp(ks, "exe") == 0) {
			const char *s = want_scalar(x, v, kp, "an absolute executable path");

			if (s == NULL) {
				bad = 1;
				continue;
			}
			if (s[0] != '/') {
				ERR(x, v, kp, "executable '%s' is not an absolute path: write the "
				    "full path, as in /proc/PID/exe", s);
				bad = 1;
				continue;
			}
			c->need = POLICY_ID_EXE;
			c->exe = s;
		} else if (strcmp(ks, "unit") == 0) {
			const char *s = want_scalar(x, v, kp, "a systemd unit name");

			if (s == NULL) {
				bad = 1;
				continue;
			}
			if (s[0] == '\0' || strchr(s, '/') != NULL || strchr(s, '.') == NULL) {
				ERR(x, v, kp, "'%s' is not a systemd unit name: write it with its "
				    "suffix, like billing.service", s);
				bad = 1;
				continue;
			}
			c->need = POLICY_ID_UNIT;
			c->unit = s;
		} else if (strcmp(ks, "any") == 0) {
			if (want_type(x, v, YAML_SEQUENCE_NODE, kp, "a list of principals") != 0 ||
			    who_any(x, v, kp, t) != 0) {
				bad = 1;
				continue;
			}
		} else if (strcmp(ks, "all") == 0) {
			int i = 0;
			struct tset *u;

			if (want_type(x, v, YAML_SEQUENCE_NODE, kp, "a list of principals") != 0) {
				bad = 1;
				continue;
			}
			if (v->data.sequence.items.start == v->data.sequence.items.top) {
				ERR(x, v, kp, "an empty combination matches nobody");
				bad = 1;
				continue;
			}
			if ((u = tset_new(x)) == NULL) {
				bad = 1;
				continue;
			}
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			    it < v->data.sequence.items.top; it++, i++) {
				yp_set(ip, sizeof(ip), "%s[%d]", kp, i);
				if (who_node(x, node_at(x, *it), ip, u) != 0 ||
				    (!bad && tset_and(x, v, kp, t, u) != 0))
					bad = 1;
			}
			free(u);
		} else if (strcmp(ks, "principal") == 0) {
			if (want_scalar(x, v, kp, "the name of a principal") == NULL ||
			    who_node(x, v, kp, t) != 0) {
				bad = 1;
				continue;
			}
		} else {
			bad = 1;        /* unknown key: reported by check_keys */
			continue;
		}
		if (!bad && tset_and(x, n, yp, out, t) != 0)
			bad = 1;
	}
	free(t);
	return bad ? -1 : 0;
}

/* A principal: a name, '*', a mapping (all of its keys), a list (any). */
static int
who_node1(struct lctx *x, yaml_node_t *n, const char *yp, struct tset *out);

static int
who_node(struct lctx *x, yaml_node_t *n, const char *yp, struct tset *out)
{
	int rc;

	if (x->depth >= MAX_DEPTH) {
		ERR(x, n, yp, "principals nested more than %d deep", MAX_DEPTH);
		return -1;
	}
	if (++x->visits > MAX_VISITS) {
		if (x->visits == MAX_VISITS + 1)
			ERR(x, n, yp, "the principals expand to more than %lu nodes (aliases?)",
			    MAX_VISITS);
		return -1;
	}
	x->depth++;
	rc = who_node1(x, n, yp, out);
	x->depth--;
	return rc;
}

static int
who_node1(struct lctx *x, yaml_node_t *n, const char *yp, struct tset *out)
{
	const char *s;

	switch (n->type) {
	case YAML_SCALAR_NODE:
		s = scalar(n);
		if (strcmp(s, "*") == 0) {
			out->n = 1;
			memset(&out->v[0], 0, sizeof(out->v[0]));
			return 0;
		}
		for (size_t i = 0; i < x->nprinc; i++) {
			if (strcmp(x->princ[i].name, s) != 0)
				continue;
			if (x->princ[i].set == NULL)
				return -1;      /* reported where it is defined */
			*out = *x->princ[i].set;
			return 0;
		}
		ERR(x, n, yp, "unknown principal '%s': define it under principals (before "
		    "its first use), or write {user: ...}, {group: ...}, {exe: ...} or {unit: ...}", s);
		return -1;
	case YAML_SEQUENCE_NODE:
		return who_any(x, n, yp, out);
	case YAML_MAPPING_NODE:
		return who_map(x, n, yp, out);
	default:
		ERR(x, n, yp, "expected a principal, found %s", type_name(n));
		return -1;
	}
}

static void
principals_compile(struct lctx *x, yaml_node_t *m)
{
	char kp[300];
	size_t n;

	if (want_type(x, m, YAML_MAPPING_NODE, "principals", "a mapping of names to principals") != 0)
		return;
	check_keys(x, m, "principals", NULL, NULL);
	n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
	if ((x->princ = calloc(n + 1, sizeof(*x->princ))) == NULL) {
		x->nomem = 1;
		return;
	}
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(x, p->key);
		const char *ks = scalar(k);
		struct tset *s;
		int dup = 0;

		if (ks == NULL)
			continue;
		for (size_t i = 0; i < x->nprinc; i++)
			if (strcmp(x->princ[i].name, ks) == 0)
				dup = 1;
		yp_set(kp, sizeof(kp), "principals.%s", ks);
		if (dup)
			continue;               /* reported by check_keys */
		if (ks[0] == '\0' || strcmp(ks, "*") == 0) {
			ERR(x, k, kp, "'%s' cannot name a principal", ks);
			continue;
		}
		if ((s = tset_new(x)) == NULL)
			return;
		if (who_node(x, node_at(x, p->value), kp, s) != 0) {
			free(s);
			s = NULL;
		}
		x->princ[x->nprinc].name = ks;
		x->princ[x->nprinc++].set = s;
	}
}

static void
roles_compile(struct lctx *x, yaml_node_t *m)
{
	char kp[300];
	size_t n;

	if (want_type(x, m, YAML_MAPPING_NODE, "roles", "a mapping of role names to actions") != 0)
		return;
	check_keys(x, m, "roles", NULL, NULL);
	n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
	if ((x->roles = calloc(n + 1, sizeof(*x->roles))) == NULL) {
		x->nomem = 1;
		return;
	}
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_at(x, p->key);
		const char *ks = scalar(k);
		uint32_t mask;
		int dup = 0;

		if (ks == NULL)
			continue;
		yp_set(kp, sizeof(kp), "roles.%s", ks);
		for (size_t i = 0; i < x->nroles; i++)
			if (strcmp(x->roles[i].name, ks) == 0)
				dup = 1;
		if (dup)
			continue;
		if (builtin_role(ks, &mask)) {
			ERR(x, k, kp, "duplicate role '%s': it is a built-in role", ks);
			continue;
		}
		if (ks[0] == '\0' || strchr(ks, '.') != NULL || strcmp(ks, "*") == 0) {
			ERR(x, k, kp, "'%s' cannot name a role: a role name has no '.'", ks);
			continue;
		}
		if (action_list(x, node_at(x, p->value), kp, 0, &mask) != 0)
			continue;
		x->roles[x->nroles].name = ks;
		x->roles[x->nroles++].mask = mask;
	}
}

/* ---- rules ------------------------------------------------------------------ */

static int
vault_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return 0;
	return 1;
}

/* NULL if pat is a valid name pattern, else why not. */
static const char *
pattern_check(const char *pat)
{
	const char *s = pat, *e;
	int dstar = 0;

	if (*pat == '\0')
		return "it is empty";
	if (strlen(pat) > 256)
		return "it is longer than 256 bytes";
	for (;;) {
		for (e = s; *e != '\0' && *e != '/'; e++)
			if (!isalnum((unsigned char)*e) && *e != '.' && *e != '_' && *e != '-' && *e != '*')
				return "a name has only letters, digits, '.', '_', '-' and '/'";
		if (e == s)
			return "it has an empty segment (a leading, trailing or double '/')";
		if ((e - s == 1 && s[0] == '.') || (e - s == 2 && s[0] == '.' && s[1] == '.'))
			return "a segment cannot be '.' or '..'";
		if (e - s == 2 && s[0] == '*' && s[1] == '*')
			dstar++;
		else
			for (const char *q = s; q + 1 < e; q++)
				if (q[0] == '*' && q[1] == '*')
					return "'**' must be a whole segment, as in api/**";
		if (*e == '\0')
			break;
		s = e + 1;
	}
	if (dstar > POL_MAX_DSTAR)
		return "it has more than two '**' segments";
	return NULL;
}

static int
rule_vaults(struct lctx *x, yaml_node_t *n, const char *yp, struct pol_rule *r, struct trule *t)
{
	char ip[300];
	yaml_node_item_t *it;
	int bad = 0, i = 0;

	if (n->type == YAML_SCALAR_NODE) {
		const char *s = scalar(n);

		if (strcmp(s, "*") == 0) {
			r->any_vault = 1;
			return 0;
		}
		if (!vault_name_ok(s)) {
			ERR(x, n, yp, "invalid vault name '%s': 1 to 64 of A-Z a-z 0-9 . _ -, or '*'", s);
			return -1;
		}
		if ((t->vaults = calloc(1, sizeof(*t->vaults))) == NULL) {
			x->nomem = 1;
			return -1;
		}
		t->vaults[t->nvaults++] = s;
		return 0;
	}
	if (n->type != YAML_SEQUENCE_NODE) {
		ERR(x, n, yp, "expected a vault name, '*' or a list of vault names, found %s", type_name(n));
		return -1;
	}
	if (n->data.sequence.items.start == n->data.sequence.items.top) {
		ERR(x, n, yp, "an empty list of vaults never matches");
		return -1;
	}
	t->vaults = calloc((size_t)(n->data.sequence.items.top - n->data.sequence.items.start),
	    sizeof(*t->vaults));
	if (t->vaults == NULL) {
		x->nomem = 1;
		return -1;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		yaml_node_t *v = node_at(x, *it);
		const char *s;

		yp_set(ip, sizeof(ip), "%s[%d]", yp, i);
		if ((s = want_scalar(x, v, ip, "a vault name")) == NULL) {
			bad = 1;
			continue;
		}
		if (strcmp(s, "*") == 0)
			r->any_vault = 1;
		else if (!vault_name_ok(s)) {
			ERR(x, v, ip, "invalid vault name '%s': 1 to 64 of A-Z a-z 0-9 . _ -, or '*'", s);
			bad = 1;
		} else
			t->vaults[t->nvaults++] = s;
	}
	return bad ? -1 : 0;
}

static int
rule_names(struct lctx *x, yaml_node_t *n, const char *yp, struct pol_rule *r)
{
	char ip[300];
	yaml_node_t *single[1];
	yaml_node_t **items = single;
	size_t cnt = 1;
	int bad = 0;

	if (n->type == YAML_SEQUENCE_NODE) {
		cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		if (cnt == 0) {
			ERR(x, n, yp, "an empty list of names never matches (leave `names` out "
			    "for every name)");
			return -1;
		}
		if ((items = calloc(cnt, sizeof(*items))) == NULL) {
			x->nomem = 1;
			return -1;
		}
		for (size_t i = 0; i < cnt; i++)
			items[i] = node_at(x, n->data.sequence.items.start[i]);
	} else
		single[0] = n;
	if ((r->names = calloc(cnt, sizeof(*r->names))) == NULL) {
		x->nomem = 1;
		bad = 1;
		goto out;
	}
	for (size_t i = 0; i < cnt; i++) {
		const char *s, *why;

		if (n->type == YAML_SEQUENCE_NODE)
			yp_set(ip, sizeof(ip), "%s[%zu]", yp, i);
		else
			yp_set(ip, sizeof(ip), "%s", yp);
		if ((s = want_scalar(x, items[i], ip, "a name pattern")) == NULL) {
			bad = 1;
			continue;
		}
		if ((why = pattern_check(s)) != NULL) {
			ERR(x, items[i], ip, "invalid name pattern '%s': %s", s, why);
			bad = 1;
			continue;
		}
		if (strcmp(s, "**") == 0)
			r->any_name = 1;
		if ((r->names[r->nnames] = xstrdup(x, s)) == NULL) {
			bad = 1;
			continue;
		}
		r->nnames++;
	}
out:
	if (items != single)
		free(items);
	return bad ? -1 : 0;
}

/* "user alice (uid 1000) and group devs (gid 1001) and exe /usr/bin/x". */
static char *
conj_text(struct lctx *x, const struct tconj *c)
{
	char buf[1024];
	size_t o = 0;

#define PUT(...) do { if (o < sizeof(buf)) \
	o += (size_t)snprintf(buf + o, sizeof(buf) - o, __VA_ARGS__); } while (0)
	if (c->need == 0 && c->ngids == 0)
		PUT("anyone");
	if (c->need & POLICY_ID_UID) {
		if (all_digits(c->user))
			PUT("uid %u", (unsigned)c->uid);
		else
			PUT("user %s (uid %u)", c->user, (unsigned)c->uid);
	}
	for (unsigned i = 0; i < c->ngids; i++) {
		PUT("%s", o ? " and " : "");
		if (all_digits(c->gnames[i]))
			PUT("gid %u", (unsigned)c->gids[i]);
		else
			PUT("group %s (gid %u)", c->gnames[i], (unsigned)c->gids[i]);
	}
	if (c->need & POLICY_ID_EXE)
		PUT("%sexe %s", o ? " and " : "", c->exe);
	if (c->need & POLICY_ID_UNIT)
		PUT("%sunit %s", o ? " and " : "", c->unit);
#undef PUT
	return xstrdup(x, buf);
}

static const char *const rule_keys[] = { "name", "description", "who", "allow", "deny",
	"vault", "names", NULL };
#define RULE_KEYS "name, description, who, allow, deny, vault or names"

static void
rule_compile(struct lctx *x, yaml_node_t *n, const char *yp, struct policy *p,
    struct trule *t, int *bad)
{
	struct pol_rule *r = &p->rules[p->nrules];
	yaml_node_t *v, *k, *allow, *deny;
	struct tset *who = NULL;
	char kp[300];
	const char *s;
	int rbad = 0;

	memset(r, 0, sizeof(*r));
	if (want_type(x, n, YAML_MAPPING_NODE, yp, "a rule (a mapping)") != 0) {
		*bad = 1;
		return;
	}
	check_keys(x, n, yp, rule_keys, RULE_KEYS);
	r->line = (unsigned)n->start_mark.line + 1;

	yp_set(kp, sizeof(kp), "%s.name", yp);
	if ((v = map_get(x, n, "name", &k)) == NULL) {
		ERR(x, n, yp, "missing key 'name': every rule has a name, for the audit log");
		rbad = 1;
	} else if ((s = want_scalar(x, v, kp, "a rule name")) == NULL)
		rbad = 1;
	else if (s[0] == '\0') {
		ERR(x, v, kp, "a rule name cannot be empty");
		rbad = 1;
	} else {
		/* Earlier rules without a (valid) name are kept with none. */
		for (size_t i = 0; i < p->nrules; i++) {
			if (p->rules[i].name != NULL && strcmp(p->rules[i].name, s) == 0) {
				ERR(x, v, kp, "duplicate rule name '%s' (first at line %u)", s,
				    p->rules[i].line);
				rbad = 1;
				break;
			}
		}
		r->name = xstrdup(x, s);
		if (r->name == NULL)
			rbad = 1;
	}
	if ((v = map_get(x, n, "description", NULL)) != NULL) {
		yp_set(kp, sizeof(kp), "%s.description", yp);
		if (want_scalar(x, v, kp, "a sentence") == NULL)
			rbad = 1;
	}

	allow = map_get(x, n, "allow", NULL);
	deny = map_get(x, n, "deny", &k);
	if (allow != NULL && deny != NULL) {
		ERR(x, k, yp, "a rule either allows or denies: split it into two rules");
		rbad = 1;
	} else if (allow == NULL && deny == NULL) {
		ERR(x, n, yp, "missing key 'allow' or 'deny': say which actions or roles "
		    "the rule allows or denies");
		rbad = 1;
	} else {
		yp_set(kp, sizeof(kp), "%s.%s", yp, allow != NULL ? "allow" : "deny");
		r->deny = deny != NULL;
		if (action_list(x, allow != NULL ? allow : deny, kp, 1, &r->actions) != 0)
			rbad = 1;
	}

	yp_set(kp, sizeof(kp), "%s.vault", yp);
	if ((v = map_get(x, n, "vault", NULL)) == NULL) {
		ERR(x, n, yp, "missing key 'vault': name the vault, a list of them, or '*' "
		    "for every vault");
		rbad = 1;
	} else if (rule_vaults(x, v, kp, r, t) != 0)
		rbad = 1;
	else if (!rbad && !r->any_vault && (r->actions & ~HOST_ACTIONS) == 0) {
		ERR(x, v, kp, "this rule can never match: audit.* and policy.* are not about "
		    "one vault; write vault: '*'");
		rbad = 1;
	}

	yp_set(kp, sizeof(kp), "%s.names", yp);
	if ((v = map_get(x, n, "names", NULL)) == NULL)
		r->any_name = 1;
	else if (rule_names(x, v, kp, r) != 0)
		rbad = 1;

	yp_set(kp, sizeof(kp), "%s.who", yp);
	if ((v = map_get(x, n, "who", NULL)) == NULL) {
		ERR(x, n, yp, "missing key 'who': name a principal, or give {user: ...}, "
		    "{group: ...}, {exe: ...} or {unit: ...}");
		rbad = 1;
	} else if ((who = tset_new(x)) == NULL || who_node(x, v, kp, who) != 0)
		rbad = 1;
	else {
		r->who = calloc(who->n, sizeof(*r->who));
		if (r->who == NULL) {
			x->nomem = 1;
			rbad = 1;
		} else {
			for (size_t i = 0; i < who->n; i++) {
				const struct tconj *c = &who->v[i];
				struct pol_conj *d = &r->who[i];

				d->need = c->need;
				d->uid = c->uid;
				d->ngids = c->ngids;
				memcpy(d->gids, c->gids, sizeof(d->gids));
				for (unsigned g = 0; g < c->ngids; g++)
					d->gbloom |= 1ull << (c->gids[g] % 64);
				if (c->exe != NULL && (d->exe = xstrdup(x, c->exe)) == NULL)
					rbad = 1;
				if (c->unit != NULL && (d->unit = xstrdup(x, c->unit)) == NULL)
					rbad = 1;
				if ((d->text = conj_text(x, c)) == NULL)
					rbad = 1;
				r->nwho++;
			}
		}
	}
	free(who);
	/* Kept even when bad, so that later rules see its name and it is freed. */
	p->nrules++;
	if (rbad)
		*bad = 1;
}

/* ---- the index ------------------------------------------------------------- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int
cmp_key(const void *a, const void *b)
{
	const struct pol_key *x = a, *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The distinct first-segment hashes of r's patterns, or 0 when one of them
 * starts with a wildcard (or r has none): such a rule is scanned. */
static size_t
rule_hashes(const struct pol_rule *r, uint32_t *h)
{
	size_t n = 0;

	if (r->any_name)
		return 0;
	for (size_t i = 0; i < r->nnames; i++) {
		const char *s = r->names[i];
		uint32_t v;
		size_t j;

		for (; *s != '\0' && *s != '/'; s++)
			if (*s == '*')
				return 0;
		v = pol_seg_hash(r->names[i]);
		for (j = 0; j < n; j++)
			if (h[j] == v)
				break;
		if (j == n)
			h[n++] = v;
	}
	return n;
}

static int
index_build(struct lctx *x, struct policy *p, const struct trule *t)
{
	size_t total = 0, nv = 0, nslots, nlists, maxnames = 1;
	const char **all;
	uint32_t *count = NULL, *kcount = NULL, *h = NULL;
	int rc = -ENOMEM;

	for (size_t i = 0; i < p->nrules; i++) {
		total += t[i].nvaults;
		if (p->rules[i].nnames > maxnames)
			maxnames = p->rules[i].nnames;
	}
	if ((all = calloc(total + 1, sizeof(*all))) == NULL ||
	    (h = calloc(maxnames, sizeof(*h))) == NULL)
		goto out;
	for (size_t i = 0; i < p->nrules; i++)
		for (size_t j = 0; j < t[i].nvaults; j++)
			all[nv++] = t[i].vaults[j];
	qsort(all, nv, sizeof(*all), cmp_str);
	if ((p->vaults = calloc(nv + 1, sizeof(*p->vaults))) == NULL)
		goto out;
	for (size_t i = 0; i < nv; i++) {
		if (p->nvaults > 0 && strcmp(p->vaults[p->nvaults - 1], all[i]) == 0)
			continue;
		if ((p->vaults[p->nvaults] = xstrdup(x, all[i])) == NULL)
			goto out;
		p->nvaults++;
	}
	nslots = p->nvaults + 2;
	nlists = nslots * POLICY_A_COUNT * 2;
	p->index = calloc(nlists, sizeof(*p->index));
	count = calloc(nlists, sizeof(*count));
	kcount = calloc(nlists, sizeof(*kcount));
	if (p->index == NULL || count == NULL || kcount == NULL)
		goto out;
	/* Two passes over the rules: count, then fill in file order. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			size_t off = 0, koff = 0;

			for (size_t l = 0; l < nlists; l++) {
				off += count[l];
				koff += kcount[l];
			}
			if ((p->pool = calloc(off + 1, sizeof(*p->pool))) == NULL ||
			    (p->kpool = calloc(koff + 1, sizeof(*p->kpool))) == NULL)
				goto out;
			off = koff = 0;
			for (size_t l = 0; l < nlists; l++) {
				p->index[l].ids = p->pool + off;
				p->index[l].keys = p->kpool + koff;
				off += count[l];
				koff += kcount[l];
			}
		}
		for (size_t i = 0; i < p->nrules; i++) {
			const struct pol_rule *r = &p->rules[i];
			size_t nk = rule_hashes(r, h);

			for (size_t s = 0; s < nslots; s++) {
				int in = r->any_vault;

				for (size_t j = 0; !in && j < t[i].nvaults && s < p->nvaults; j++)
					in = strcmp(t[i].vaults[j], p->vaults[s]) == 0;
				if (!in)
					continue;
				for (int a = 0; a < POLICY_A_COUNT; a++) {
					size_t l = (s * POLICY_A_COUNT + (size_t)a) * 2 + (size_t)r->deny;
					struct pol_list *pl = &p->index[l];

					if (!(r->actions & (1u << a)))
						continue;
					if (pass == 0) {
						if (nk == 0)
							count[l]++;
						else
							kcount[l] += (uint32_t)nk;
						continue;
					}
					if (nk == 0) {
						p->pool[(size_t)(pl->ids - p->pool) + pl->n++] = (uint32_t)i;
						continue;
					}
					for (size_t k = 0; k < nk; k++) {
						struct pol_key *d = &p->kpool[(size_t)(pl->keys - p->kpool) +
						    pl->nkeys++];

						d->hash = h[k];
						d->id = (uint32_t)i;
					}
				}
			}
		}
	}
	for (size_t l = 0; l < nlists; l++)
		if (p->index[l].nkeys > 1)
			qsort(p->kpool + (p->index[l].keys - p->kpool), p->index[l].nkeys,
			    sizeof(struct pol_key), cmp_key);
	rc = 0;
out:
	free(all);
	free(h);
	free(count);
	free(kcount);
	return rc;
}

/* ---- the file --------------------------------------------------------------- */

static int
file_read(struct lctx *x, const char *path, uid_t daemon_uid, unsigned char **buf, size_t *len)
{
	struct stat st;
	unsigned char *b = NULL;
	size_t got = 0;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		rc = -errno;
		add_error(x, 0, 0, NULL, "cannot open the policy: %s", strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		add_error(x, 0, 0, NULL, "cannot stat the policy: %s", strerror(-rc));
		goto out;
	}
	rc = KW_E_POLICY;
	if (!S_ISREG(st.st_mode)) {
		add_error(x, 0, 0, NULL, "the policy is not a regular file");
		goto out;
	}
	if (st.st_uid != 0 && st.st_uid != daemon_uid) {
		add_error(x, 0, 0, NULL, "refusing a policy owned by uid %u: it must be owned "
		    "by root or by the daemon's user (uid %u); chown root %s",
		    (unsigned)st.st_uid, (unsigned)daemon_uid, path);
		goto out;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		add_error(x, 0, 0, NULL, "refusing a policy that group or other may write "
		    "(mode %04o): chmod go-w %s", (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if ((uintmax_t)st.st_size > POLICY_MAX_FILE) {
		add_error(x, 0, 0, NULL, "the policy is larger than %u bytes", POLICY_MAX_FILE);
		goto out;
	}
	if ((b = malloc((size_t)st.st_size + 1)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			add_error(x, 0, 0, NULL, "cannot read the policy: %s", strerror(-rc));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	b[got] = '\0';
	*buf = b;
	b = NULL;
	*len = got;
	rc = 0;
out:
	free(b);
	close(fd);
	return rc;
}

static int
hash_hex(const unsigned char *b, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(b, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return KW_E_INTERNAL;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static const char *const top_keys[] = { "version", "principals", "roles", "rules", NULL };

static void
compile(struct lctx *x, struct policy *p, struct trule **tout)
{
	yaml_node_t *root = yaml_document_get_root_node(x->doc), *v, *rules;
	struct trule *t = NULL;
	char yp[64];
	int bad = 0, i = 0;

	if (root == NULL || (root->type == YAML_SCALAR_NODE && scalar(root)[0] == '\0')) {
		add_error(x, 1, 1, NULL, "the policy is empty: it needs at least `rules:`");
		return;
	}
	if (want_type(x, root, YAML_MAPPING_NODE, "", "a mapping with version, principals, "
	    "roles and rules") != 0)
		return;
	check_keys(x, root, "", top_keys, "version, principals, roles or rules");
	if ((v = map_get(x, root, "version", NULL)) != NULL) {
		const char *s = want_scalar(x, v, "version", "the number 1");

		if (s != NULL && strcmp(s, "1") != 0)
			ERR(x, v, "version", "unsupported policy version '%s': this keywarden "
			    "reads version 1", s);
	}
	if ((v = map_get(x, root, "principals", NULL)) != NULL)
		principals_compile(x, v);
	if ((v = map_get(x, root, "roles", NULL)) != NULL)
		roles_compile(x, v);
	if ((rules = map_get(x, root, "rules", NULL)) == NULL) {
		ERR(x, root, "", "missing key 'rules': without rules nobody may do anything");
		return;
	}
	if (rules->type == YAML_SCALAR_NODE && scalar(rules)[0] == '\0')
		return;                 /* "rules:" with nothing: deny everything */
	if (want_type(x, rules, YAML_SEQUENCE_NODE, "rules", "a list of rules") != 0)
		return;
	{
		size_t n = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);

		p->rules = calloc(n + 1, sizeof(*p->rules));
		t = calloc(n + 1, sizeof(*t));
		*tout = t;
		if (p->rules == NULL || t == NULL) {
			x->nomem = 1;
			return;
		}
	}
	for (yaml_node_item_t *it = rules->data.sequence.items.start;
	    it < rules->data.sequence.items.top && !x->nomem; it++, i++) {
		yp_set(yp, sizeof(yp), "rules[%d]", i);
		rule_compile(x, node_at(x, *it), yp, p, &t[p->nrules], &bad);
	}
}

int
policy_load(const char *path, const struct policy_load_opts *o,
    struct policy **out, struct policy_errors **errs)
{
	struct policy_load_opts dflt = { .daemon_uid = geteuid() };
	struct lctx x = { .file = path, .o = o != NULL ? o : &dflt };
	struct policy *p = NULL;
	struct trule *t = NULL;
	yaml_parser_t parser;
	yaml_document_t doc;
	unsigned char *buf = NULL;
	size_t len = 0, nt = 0;
	int rc = -ENOMEM, have_parser = 0, have_doc = 0;

	if (errs != NULL)
		*errs = NULL;
	if (path == NULL || out == NULL)
		return -EINVAL;
	if ((x.errs = calloc(1, sizeof(*x.errs))) == NULL)
		return -ENOMEM;
	if ((p = calloc(1, sizeof(*p))) == NULL || (p->file = strdup(path)) == NULL)
		goto out;
	if ((rc = file_read(&x, path, x.o->daemon_uid, &buf, &len)) != 0)
		goto out;
	if ((rc = hash_hex(buf, len, p->hash)) != 0)
		goto out;
	rc = -ENOMEM;
	if (!yaml_parser_initialize(&parser))
		goto out;
	have_parser = 1;
	yaml_parser_set_input_string(&parser, buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		add_error(&x, (unsigned)parser.problem_mark.line + 1,
		    (unsigned)parser.problem_mark.column + 1, NULL, "invalid YAML: %s%s%s",
		    parser.problem != NULL ? parser.problem : "syntax error",
		    parser.context != NULL ? " " : "", parser.context != NULL ? parser.context : "");
		rc = KW_E_POLICY;
		goto out;
	}
	have_doc = 1;
	x.doc = &doc;
	compile(&x, p, &t);
	nt = p->nrules;
	if (x.nomem) {
		rc = -ENOMEM;
		goto out;
	}
	if (x.errs->n > 0) {
		rc = KW_E_POLICY;
		goto out;
	}
	if ((rc = index_build(&x, p, t)) != 0)
		goto out;
	*out = p;
	p = NULL;
	rc = 0;
out:
	for (size_t i = 0; t != NULL && i <= nt; i++)
		free(t[i].vaults);
	free(t);
	for (size_t i = 0; i < x.nprinc; i++)
		free(x.princ[i].set);
	free(x.princ);
	free(x.roles);
	free(x.nss_buf);
	if (have_doc)
		yaml_document_delete(&doc);
	if (have_parser)
		yaml_parser_delete(&parser);
	free(buf);
	policy_free(p);
	errors_sort(x.errs);
	if (rc != 0 && x.errs->n > 0) {
		char first[1024];

		/* For callers that log kw_errdetail(): the first problem. */
		policy_error_format(&x.errs->v[0], first, sizeof(first));
		if (x.errs->n > 1)
			kw_fail(rc, "%s (and %zu more)", first, x.errs->n - 1);
		else
			kw_fail(rc, "%s", first);
	}
	if (rc == 0 || x.errs->n == 0 || errs == NULL) {
		policy_errors_free(x.errs);
	} else {
		*errs = x.errs;
	}
	return rc;
}
