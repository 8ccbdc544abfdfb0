#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "kw_error.h"
#include "kw_nss.h"
#include "daemon/cfg.h"
#include "daemon/log.h"

/* ---- small parsers --------------------------------------------------------- */

int
config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -ERANGE;
	if (*end == '\0' || strcmp(end, "B") == 0)
		mul = 1;
	else if (strcmp(end, "k") == 0 || strcmp(end, "K") == 0 || strcmp(end, "KiB") == 0)
		mul = 1024;
	else if (strcmp(end, "M") == 0 || strcmp(end, "MiB") == 0)
		mul = 1024 * 1024;
	else if (strcmp(end, "G") == 0 || strcmp(end, "GiB") == 0)
		mul = 1024ULL * 1024 * 1024;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

int
config_parse_duration(const char *s, uint64_t *seconds)
{
	char *end;
	unsigned long long v;
	uint64_t mul;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -ERANGE;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0)
		mul = 60;
	else if (strcmp(end, "h") == 0)
		mul = 3600;
	else if (strcmp(end, "d") == 0)
		mul = 86400;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*seconds = v * mul;
	return 0;
}

/* ---- error collection ------------------------------------------------------- */

struct cfg_ctx {
	const char *file;
	yaml_document_t *doc;
	struct config_errors *errs;
	struct config *c;
	struct config_vault *cur_vault;   /* the vault being read */
};

__attribute__((format(printf, 4, 5)))
static void
cfg_err(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath, const char *fmt, ...)
{
	char msg[512], line[1024];
	va_list ap;
	char **nl;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n != NULL)
		snprintf(line, sizeof(line), "%s:%zu:%zu: %s%s%s", x->file,
		    n->start_mark.line + 1, n->start_mark.column + 1,
		    ypath ? ypath : "", ypath ? ": " : "", msg);
	else
		snprintf(line, sizeof(line), "%s: %s%s%s", x->file,
		    ypath ? ypath : "", ypath ? ": " : "", msg);
	nl = realloc(x->errs->lines, (x->errs->n + 1) * sizeof(*nl));
	if (nl == NULL)
		return;
	x->errs->lines = nl;
	if ((nl[x->errs->n] = strdup(line)) != NULL)
		x->errs->n++;
}

void
config_errors_free(struct config_errors *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++)
		free(e->lines[i]);
	free(e->lines);
	e->lines = NULL;
	e->n = 0;
}

/* ---- scalar access ------------------------------------------------------------ */

static const char *
scalar(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Expand ${NAME} from the environment.  NULL (and an error) if a name is
 * unset or the result is too long. */
static char *
cfg_expand(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath)
{
	const char *s = scalar(n), *p;
	char out[PATH_MAX * 2];
	size_t o = 0;

	if (s == NULL) {
		cfg_err(x, n, ypath, "expected a string");
		return NULL;
	}
	for (p = s; *p != '\0';) {
		if (p[0] == '$' && p[1] == '{') {
			const char *e = strchr(p + 2, '}');
			char name[128];
			const char *v;
			size_t len;
			if (e == NULL || (size_t)(e - p - 2) >= sizeof(name) || e == p + 2) {
				cfg_err(x, n, ypath, "malformed ${NAME} in \"%s\"", s);
				return NULL;
			}
			memcpy(name, p + 2, (size_t)(e - p - 2));
			name[e - p - 2] = '\0';
			v = getenv(name);
			if (v == NULL) {
				cfg_err(x, n, ypath, "environment variable %s is not set", name);
				return NULL;
			}
			len = strlen(v);
			if (o + len >= sizeof(out))
				goto toolong;
			memcpy(out + o, v, len);
			o += len;
			p = e + 1;
			continue;
		}
		if (o + 1 >= sizeof(out))
			goto toolong;
		out[o++] = *p++;
	}
	out[o] = '\0';
	return strdup(out);
toolong:
	cfg_err(x, n, ypath, "value too long");
	return NULL;
}

static int
cfg_bool(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath, int *out)
{
	const char *s = scalar(n);

	if (s != NULL && (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)) {
		*out = 1;
		return 0;
	}
	if (s != NULL && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)) {
		*out = 0;
		return 0;
	}
	cfg_err(x, n, ypath, "expected true or false, got %s%s%s",
	    s ? "\"" : "a ", s ? s : (n->type == YAML_MAPPING_NODE ? "mapping" : "sequence"),
	    s ? "\"" : "");
	return -1;
}

static int
cfg_uint(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath,
    unsigned long long min, unsigned long long max, unsigned long long *out)
{
	const char *s = scalar(n);
	char *end;
	unsigned long long v;

	if (s == NULL || !isdigit((unsigned char)*s)) {
		cfg_err(x, n, ypath, "expected a whole number from %llu to %llu", min, max);
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max) {
		cfg_err(x, n, ypath, "\"%s\" is not a whole number from %llu to %llu", s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
cfg_size(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath,
    uint64_t min, uint64_t max, uint64_t *out)
{
	const char *s = scalar(n);
	uint64_t v;

	if (s == NULL || config_parse_size(s, &v) != 0 || v < min || v > max) {
		cfg_err(x, n, ypath, "expected a size from %llu to %llu bytes (suffixes k, M, G, KiB, MiB, GiB), got \"%s\"",
		    (unsigned long long)min, (unsigned long long)max, s ? s : "");
		return -1;
	}
	*out = v;
	return 0;
}

static int
cfg_duration(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath,
    uint64_t min, uint64_t max, uint64_t *out)
{
	const char *s = scalar(n);
	uint64_t v;

	if (s == NULL || config_parse_duration(s, &v) != 0 || v < min || v > max) {
		cfg_err(x, n, ypath, "expected a duration from %llus to %llus (suffixes s, m, h, d), got \"%s\"",
		    (unsigned long long)min, (unsigned long long)max, s ? s : "");
		return -1;
	}
	*out = v;
	return 0;
}

static int
cfg_string(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath, char **out)
{
	char *v = cfg_expand(x, n, ypath);

	if (v != NULL && *v == '\0') {
		cfg_err(x, n, ypath, "must not be empty");
		free(v);
		v = NULL;
	}
	if (v == NULL) {
		/* Given but bad: already reported; keep "is required" quiet. */
		if (*out == NULL)
			*out = strdup("");
		return -1;
	}
	free(*out);
	*out = v;
	return 0;
}

static int
cfg_abspath(struct cfg_ctx *x, const yaml_node_t *n, const char *ypath, char **out)
{
	if (cfg_string(x, n, ypath, out) != 0)
		return -1;
	if ((*out)[0] != '/') {
		cfg_err(x, n, ypath, "\"%s\" must be an absolute path", *out);
		return -1;
	}
	return 0;
}

/* ---- mapping walk ------------------------------------------------------------- */

typedef void (*cfg_key_fn)(struct cfg_ctx *x, const char *key, yaml_node_t *val,
    const char *ypath);

struct cfg_key {
	const char *name;
	cfg_key_fn fn;
};

static void
cfg_walk_map(struct cfg_ctx *x, yaml_node_t *map, const char *ypath,
    const struct cfg_key *keys, size_t nkeys, const char *what)
{
	yaml_node_pair_t *p;

	if (map->type != YAML_MAPPING_NODE) {
		cfg_err(x, map, ypath, "expected a mapping (%s)", what);
		return;
	}
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
		const char *ks = k ? scalar(k) : NULL;
		char sub[256];
		size_t i;
		int dup = 0;

		if (ks == NULL) {
			cfg_err(x, k, ypath, "keys must be plain strings");
			continue;
		}
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *qk = yaml_document_get_node(x->doc, q->key);
			if (qk && scalar(qk) && strcmp(scalar(qk), ks) == 0)
				dup = 1;
		}
		snprintf(sub, sizeof(sub), "%s%s%s", ypath ? ypath : "", ypath ? "." : "", ks);
		if (dup) {
			cfg_err(x, k, sub, "duplicate key");
			continue;
		}
		for (i = 0; i < nkeys; i++)
			if (strcmp(keys[i].name, ks) == 0)
				break;
		if (i == nkeys) {
			char known[512] = "";
			for (size_t j = 0; j < nkeys; j++) {
				strncat(known, keys[j].name, sizeof(known) - strlen(known) - 1);
				if (j + 1 < nkeys)
					strncat(known, ", ", sizeof(known) - strlen(known) - 1);
			}
			cfg_err(x, k, sub, "unknown key in %s (known: %s)", what, known);
			continue;
		}
		keys[i].fn(x, ks, v, sub);
	}
}

/* socket: */
static void
k_socket_path(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	struct config *c = x->c;
	if (cfg_abspath(x, v, yp, &c->socket_path) == 0 &&
	    strlen(c->socket_path) >= 108)
		cfg_err(x, v, yp, "socket path is longer than 107 bytes, the limit of a Unix socket address");
}

static void
k_socket_mode(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	const char *s = scalar(v);
	char *end;
	unsigned long m;

	if (s == NULL || *s == '\0') {
		cfg_err(x, v, yp, "expected an octal mode such as \"0660\"");
		return;
	}
	m = strtoul(s, &end, 8);
	if (*end != '\0' || m > 0777) {
		cfg_err(x, v, yp, "\"%s\" is not an octal mode such as \"0660\"", s);
		return;
	}
	if (m & 0007)
		cfg_err(x, v, yp, "mode %04lo lets every local user connect; use 0660 with a group, or 0600", m);
	x->c->socket_mode = (mode_t)m;
}

static void
k_socket_group(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	struct group g;
	char *buf = NULL;
	size_t len = 0;
	int e;

	if (cfg_string(x, v, yp, &x->c->socket_group) != 0)
		return;
	e = kwnss_gr_name(x->c->socket_group, &g, &buf, &len);
	free(buf);
	if (e == -ENOENT)
		cfg_err(x, v, yp, "group \"%s\" does not exist", x->c->socket_group);
	else if (e != 0)
		cfg_err(x, v, yp, "cannot look group \"%s\" up: %s", x->c->socket_group,
		    strerror(-e));
}

static const struct cfg_key socket_keys[] = {
	{ "path", k_socket_path }, { "mode", k_socket_mode }, { "group", k_socket_group },
};

static void
k_socket(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_walk_map(x, v, yp, socket_keys, sizeof(socket_keys) / sizeof(socket_keys[0]), "socket");
}

/* token: */
static void
k_token_module(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	if (cfg_abspath(x, v, yp, &x->c->token_module) == 0 &&
	    access(x->c->token_module, R_OK) != 0)
		cfg_err(x, v, yp, "PKCS#11 module %s: %s", x->c->token_module, strerror(errno));
}

static void
k_token_token(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_string(x, v, yp, &x->c->token);
}

static void
k_token_pin(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_abspath(x, v, yp, &x->c->pin_file);
}

static void
k_token_sessions(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 1, 256, &n) == 0)
		x->c->token_sessions = (unsigned)n;
}

static void
k_token_wrap(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	static const char *const ok[] = { "auto", "aes-gcm", "aes-kwp", "aes-ecb-hmac" };
	const char *s = scalar(v);

	for (size_t i = 0; s != NULL && i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(s, ok[i]) == 0) {
			cfg_string(x, v, yp, &x->c->wrap);
			return;
		}
	cfg_err(x, v, yp, "expected one of auto, aes-gcm, aes-kwp, aes-ecb-hmac");
}

static void
k_token_copies(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_bool(x, v, yp, &x->c->session_copies);
}

static const struct cfg_key token_keys[] = {
	{ "module", k_token_module }, { "token", k_token_token },
	{ "pin_file", k_token_pin }, { "sessions", k_token_sessions },
	{ "wrap", k_token_wrap }, { "session_copies", k_token_copies },
};

static void
k_token(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_walk_map(x, v, yp, token_keys, sizeof(token_keys) / sizeof(token_keys[0]), "token");
}

/* state_dir, store, policy */
static void
k_state_dir(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_abspath(x, v, yp, &x->c->state_dir);
}

static void
k_store(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	if (cfg_string(x, v, yp, &x->c->store_url) == 0 &&
	    strncmp(x->c->store_url, "sqlite:", 7) != 0 && x->c->store_url[0] != '/' &&
	    strncmp(x->c->store_url, "postgresql:", 11) != 0)
		cfg_err(x, v, yp, "\"%s\": expected sqlite:/PATH or an absolute path", x->c->store_url);
}

static void
k_policy(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_abspath(x, v, yp, &x->c->policy_file);
}

/* audit: */
static void
k_audit_dir(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_abspath(x, v, yp, &x->c->audit_dir);
}

static void
k_audit_segsize(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_size(x, v, yp, 4096, 1ULL << 40, &x->c->audit_segment_bytes);
}

static void
k_audit_segage(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_duration(x, v, yp, 60, 366ULL * 86400, &x->c->audit_segment_seconds);
}

static void
k_audit_anchor(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_duration(x, v, yp, 1, 86400, &x->c->audit_anchor_seconds);
}

static void
k_audit_timeout(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 10, 600000, &n) == 0)
		x->c->audit_timeout_ms = (unsigned)n;
}

static void
k_audit_linger(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 0, 100000, &n) == 0)
		x->c->audit_group_commit_us = n == 0 ? -1 : (int)n;
}

static void
k_audit_syslog(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_bool(x, v, yp, &x->c->audit_syslog);
}

static void
k_audit_prealloc(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_bool(x, v, yp, &x->c->audit_preallocate);
}

static void
k_audit_lag(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 100, 100000000, &n) == 0)
		x->c->audit_stream_max_lag = (unsigned)n;
}

static const struct cfg_key audit_keys[] = {
	{ "dir", k_audit_dir }, { "segment_size", k_audit_segsize },
	{ "segment_age", k_audit_segage }, { "timeout_ms", k_audit_timeout },
	{ "syslog", k_audit_syslog }, { "group_commit_us", k_audit_linger },
	{ "preallocate", k_audit_prealloc }, { "stream_max_lag", k_audit_lag },
	{ "anchor_interval", k_audit_anchor },
};

static void
k_audit(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_walk_map(x, v, yp, audit_keys, sizeof(audit_keys) / sizeof(audit_keys[0]), "audit");
}

/* vaults: */

static void
k_vault_name(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	const char *s = scalar(v);
	size_t len;

	if (s == NULL || (len = strlen(s)) == 0 || len > CONFIG_VAULT_MAX ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len ||
	    strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
		cfg_err(x, v, yp, "a vault name is 1 to %d characters of A-Z a-z 0-9 . _ -", CONFIG_VAULT_MAX);
		return;
	}
	memcpy(x->cur_vault->name, s, len + 1);
}

static void
k_vault_purge(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_bool(x, v, yp, &x->cur_vault->purge_protection);
}

static void
k_vault_retention(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 0, 3650, &n) == 0)
		x->cur_vault->retention_days = (unsigned)n;
}

static void
k_vault_rotation(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 0, 3650, &n) == 0)
		x->cur_vault->rotation_days = (unsigned)n;
}

static const struct cfg_key vault_keys[] = {
	{ "name", k_vault_name }, { "purge_protection", k_vault_purge },
	{ "retention_days", k_vault_retention }, { "rotation_days", k_vault_rotation },
};

static void
k_vaults(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	yaml_node_item_t *it;
	size_t n, i = 0;

	if (v->type != YAML_SEQUENCE_NODE) {
		cfg_err(x, v, yp, "expected a list of vaults");
		return;
	}
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	free(x->c->vaults);
	x->c->vaults = calloc(n ? n : 1, sizeof(*x->c->vaults));
	x->c->nvaults = 0;
	if (x->c->vaults == NULL)
		return;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++, i++) {
		yaml_node_t *item = yaml_document_get_node(x->doc, *it);
		char sub[256];
		struct config_vault *cv = &x->c->vaults[x->c->nvaults];

		snprintf(sub, sizeof(sub), "%s[%zu]", yp, i);
		cv->retention_days = 7;
		cv->line = (int)item->start_mark.line + 1;
		x->cur_vault = cv;
		cfg_walk_map(x, item, sub, vault_keys, sizeof(vault_keys) / sizeof(vault_keys[0]), "a vault");
		x->cur_vault = NULL;
		if (cv->name[0] == '\0') {
			cfg_err(x, item, sub, "a vault needs a name");
			continue;
		}
		for (size_t j = 0; j < x->c->nvaults; j++)
			if (strcmp(x->c->vaults[j].name, cv->name) == 0) {
				cfg_err(x, item, sub, "vault \"%s\" is already declared at line %d",
				    cv->name, x->c->vaults[j].line);
				cv->name[0] = '\0';
			}
		if (cv->name[0] != '\0')
			x->c->nvaults++;
	}
}

/* limits: */
static void
k_lim_workers(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 1, 256, &n) == 0)
		x->c->workers = (unsigned)n;
}

static void
k_lim_write_workers(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 1, 256, &n) == 0)
		x->c->write_workers = (unsigned)n;
}

static void
k_lim_identity_workers(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 1, 256, &n) == 0)
		x->c->identity_workers = (unsigned)n;
}

static void
k_lim_loops(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 1, 64, &n) == 0)
		x->c->event_loops = (unsigned)n;
}

static void
k_lim_body(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_size(x, v, yp, 1024, 64ULL << 20, &x->c->max_body);
}

static void
k_lim_value(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_size(x, v, yp, 1, 16ULL << 20, &x->c->max_value);
}

static void
k_lim_conns(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 1, 100000, &n) == 0)
		x->c->max_connections = (unsigned)n;
}

static void
k_lim_header_timeout(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	uint64_t s;
	if (cfg_duration(x, v, yp, 1, 3600, &s) == 0)
		x->c->header_timeout_s = (unsigned)s;
}

static void
k_lim_request_timeout(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	unsigned long long n;
	if (cfg_uint(x, v, yp, 10, 600000, &n) == 0)
		x->c->request_timeout_ms = (unsigned)n;
}

static const struct cfg_key limit_keys[] = {
	{ "workers", k_lim_workers }, { "write_workers", k_lim_write_workers },
	{ "identity_workers", k_lim_identity_workers },
	{ "event_loops", k_lim_loops }, { "max_body", k_lim_body },
	{ "max_value", k_lim_value }, { "max_connections", k_lim_conns },
	{ "client_timeout", k_lim_header_timeout }, { "request_timeout_ms", k_lim_request_timeout },
};

static void
k_limits(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_walk_map(x, v, yp, limit_keys, sizeof(limit_keys) / sizeof(limit_keys[0]), "limits");
}

/* log: */
static void
k_log_level(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	const char *s = scalar(v);
	if (s == NULL || log_level_parse(s, &x->c->log_level) != 0)
		cfg_err(x, v, yp, "expected one of error, warning, notice, info, debug");
}

static void
k_log_syslog(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_bool(x, v, yp, &x->c->log_syslog);
}

static const struct cfg_key log_keys[] = {
	{ "level", k_log_level }, { "syslog", k_log_syslog },
};

static void
k_log(struct cfg_ctx *x, const char *k, yaml_node_t *v, const char *yp)
{
	cfg_walk_map(x, v, yp, log_keys, sizeof(log_keys) / sizeof(log_keys[0]), "log");
}

static const struct cfg_key top_keys[] = {
	{ "socket", k_socket }, { "token", k_token }, { "state_dir", k_state_dir },
	{ "store", k_store }, { "audit", k_audit }, { "policy", k_policy },
	{ "vaults", k_vaults }, { "limits", k_limits }, { "log", k_log },
};

/* ---- load --------------------------------------------------------------------- */

static char *
cfg_join(const char *dir, const char *name)
{
	char *s;
	if (asprintf(&s, "%s/%s", dir, name) < 0)
		return NULL;
	return s;
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->socket_path);
	free(c->socket_group);
	free(c->token_module);
	free(c->token);
	free(c->pin_file);
	free(c->wrap);
	free(c->state_dir);
	free(c->store_url);
	free(c->audit_dir);
	free(c->policy_file);
	free(c->vaults);
	free(c);
}

const struct config_vault *
config_vault_find(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nvaults; i++)
		if (strcmp(c->vaults[i].name, name) == 0)
			return &c->vaults[i];
	return NULL;
}

int
config_load(const char *path, struct config **out, struct config_errors *errs)
{
	return config_load_as(path, geteuid(), out, errs);
}

int
config_load_as(const char *path, uid_t daemon_uid, struct config **out, struct config_errors *errs)
{
	struct config *c = NULL;
	yaml_parser_t parser;
	yaml_document_t doc;
	struct cfg_ctx x;
	FILE *f = NULL;
	yaml_node_t *root;
	struct stat st;
	int r = KW_E_CONFIG, have_parser = 0, have_doc = 0;

	memset(errs, 0, sizeof(*errs));
	memset(&x, 0, sizeof(x));
	x.file = path;
	x.errs = errs;
	x.doc = &doc;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	x.c = c;
	c->path = strdup(path);
	c->socket_mode = 0660;
	c->token_sessions = 0;
	c->session_copies = 1;
	c->audit_segment_bytes = 16ULL << 20;   /* start-up reads the last one whole */
	c->audit_segment_seconds = 86400;
	c->audit_timeout_ms = 2000;
	c->audit_preallocate = 1;
	c->audit_anchor_seconds = 60;
	c->audit_stream_max_lag = 200000;
	c->workers = 0;              /* the CPU count, after parsing */
	c->write_workers = 16;
	c->identity_workers = 4;
	c->max_body = 1ULL << 20;
	c->max_value = 256ULL << 10;
	c->max_connections = 1024;
	c->header_timeout_s = 10;
	c->request_timeout_ms = 5000;
	c->log_level = KW_LOG_INFO;

	if ((f = fopen(path, "r")) == NULL) {
		cfg_err(&x, NULL, NULL, "cannot open: %s", strerror(errno));
		goto out;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		cfg_err(&x, NULL, NULL, "not a regular file");
		goto out;
	}
	/* It names the PKCS#11 module the daemon loads into itself, and the
	 * PIN file: whoever may write it runs code as the daemon.  Its owner
	 * may (chmod is the owner's), so it must be the daemon's user or root,
	 * as for the policy. */
	if (st.st_uid != 0 && st.st_uid != daemon_uid) {
		cfg_err(&x, NULL, NULL, "the file is owned by uid %u, neither the daemon's user "
		    "(uid %u) nor root: its owner could rewrite it; chown root %s",
		    (unsigned)st.st_uid, (unsigned)daemon_uid, path);
		goto out;
	}
	if (st.st_mode & 0022) {
		cfg_err(&x, NULL, NULL, "the file is writable by %s (mode %04o): chmod go-w %s",
		    (st.st_mode & 0002) ? "every user" : "its group", (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (!yaml_parser_initialize(&parser)) {
		r = -ENOMEM;
		goto out;
	}
	have_parser = 1;
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		char line[512];
		snprintf(line, sizeof(line), "%s:%zu:%zu: YAML syntax error: %s%s%s", path,
		    parser.problem_mark.line + 1, parser.problem_mark.column + 1,
		    parser.problem ? parser.problem : "unknown",
		    parser.context ? " " : "", parser.context ? parser.context : "");
		errs->lines = calloc(1, sizeof(char *));
		if (errs->lines && (errs->lines[0] = strdup(line)) != NULL)
			errs->n = 1;
		goto out;
	}
	have_doc = 1;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL) {
		cfg_err(&x, NULL, NULL, "the file is empty");
		goto out;
	}
	cfg_walk_map(&x, root, NULL, top_keys, sizeof(top_keys) / sizeof(top_keys[0]), "the configuration");

	/* Required keys and defaults that depend on others. */
	if (c->socket_path == NULL)
		cfg_err(&x, root, "socket.path", "is required");
	if (c->token_module == NULL)
		cfg_err(&x, root, "token.module", "is required (the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so)");
	if (c->token == NULL)
		cfg_err(&x, root, "token.token", "is required (a token label, serial, or pkcs11: URI)");
	if (c->pin_file == NULL)
		cfg_err(&x, root, "token.pin_file", "is required");
	if (c->state_dir == NULL)
		cfg_err(&x, root, "state_dir", "is required");
	if (c->nvaults == 0 && errs->n == 0)
		cfg_err(&x, root, "vaults", "declare at least one vault");
	if (c->wrap == NULL)
		c->wrap = strdup("auto");
	{
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		/* Reads and key operations keep a thread on a core or in the
		 * token: more threads than cores only contend.  One worker
		 * was tried for SoftHSM, whose sessions wait on each other's
		 * locks: on 2 cores it read as fast over 1,000 secrets with a
		 * lower p99, but over 1,000,000 (after they were written) at
		 * 0.67-0.84 of that rate against 0.90-0.95 with 2
		 * (docs/performance.md). */
		if (c->workers == 0)
			c->workers = n < 2 ? 2 : n > 16 ? 16 : (unsigned)n;
		/* HTTP parsing and replies in parallel, one loop per core up to
		 * 8 (on 2 cores, 2 loops read about 5 % faster than 1). */
		if (c->event_loops == 0)
			c->event_loops = n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
	}
	if (c->state_dir != NULL) {
		if (c->store_url == NULL) {
			char *p = cfg_join(c->state_dir, "keywarden.db");
			if (p != NULL && asprintf(&c->store_url, "sqlite:%s", p) < 0)
				c->store_url = NULL;
			free(p);
		}
		if (c->audit_dir == NULL)
			c->audit_dir = cfg_join(c->state_dir, "audit");
	}
	if (errs->n == 0)
		r = 0;
out:
	if (have_doc)
		yaml_document_delete(&doc);
	if (have_parser)
		yaml_parser_delete(&parser);
	if (f != NULL)
		fclose(f);
	if (r == 0 && (c->path == NULL || c->wrap == NULL || c->store_url == NULL || c->audit_dir == NULL))
		r = -ENOMEM;
	if (r == 0) {
		*out = c;
		return 0;
	}
	config_free(c);
	return r;
}
