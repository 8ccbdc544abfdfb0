/*
 * store.c - the store interface: choose the engine from the URL, check the
 * arguments once for every engine, dispatch.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kw_error.h"
#include "daemon/store.h"
#include "daemon/store_engine.h"

struct store {
	const struct store_ops *ops;
	struct store_engine *eng;
};

void
store_record_clear(struct store_record *r)
{
	if (r == NULL)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

const char *
store_tags_text(const char *tags)
{
	return tags[0] == '\0' ? "{}" : tags;
}

/* ---- argument checks ---------------------------------------------------------- */

static int
check_str(const char *s, size_t max, const char *what)
{
	if (s == NULL || s[0] == '\0')
		return kw_fail(-EINVAL, "store: the %s is missing", what);
	if (strnlen(s, max + 1) > max)
		return kw_fail(-EINVAL, "store: the %s is longer than %zu bytes", what, max);
	return 0;
}

static int
check_vault(const char *vault)
{
	return check_str(vault, STORE_VAULT_MAX, "vault name");
}

static int
check_name(const char *name)
{
	return check_str(name, STORE_NAME_MAX, "secret name");
}

static int
check_skey_name(const char *name)
{
	return check_str(name, STORE_NAME_MAX, "signing key name");
}

static int
check_version(uint64_t v, int zero_ok)
{
	if ((v == 0 && !zero_ok) || v > (uint64_t)INT64_MAX)
		return kw_fail(-EINVAL, "store: version %llu is out of range (1..2^63-1)",
		    (unsigned long long)v);
	return 0;
}

/* Tags are a JSON object whose values are strings, as compact text. */
static int
check_tags(const char *tags, const char *name)
{
	json_error_t jerr;
	json_t *o = NULL, *v;
	const char *k;
	int e;

	if (strnlen(tags, STORE_TAGS_MAX + 1) > STORE_TAGS_MAX)
		return kw_fail(KW_E_TOO_LARGE, "tags of '%s' are longer than %d bytes",
		    name, STORE_TAGS_MAX);
	if (tags[0] == '\0')
		return 0;
	if ((o = json_loads(tags, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		e = kw_fail(KW_E_FORMAT, "tags of '%s' are not valid JSON: %s at column %d",
		    name, jerr.text, jerr.column);
		goto out;
	}
	if (!json_is_object(o)) {
		e = kw_fail(KW_E_FORMAT, "tags of '%s' must be a JSON object of strings", name);
		goto out;
	}
	json_object_foreach(o, k, v) {
		if (!json_is_string(v)) {
			e = kw_fail(KW_E_FORMAT, "tag '%.64s' of '%s' is not a string: "
			    "tags map names to string values", k, name);
			goto out;
		}
	}
	e = 0;
out:
	json_decref(o);
	return e;
}

/* The attributes of meta selected by mask (all of them: mask ~0u). */
static int
check_attrs(const struct store_meta *m, unsigned mask, const char *name)
{
	if ((mask & STORE_ATTR_CONTENT_TYPE) &&
	    strnlen(m->content_type, sizeof(m->content_type)) >= sizeof(m->content_type))
		return kw_fail(-EINVAL, "store: the content type of '%s' is not terminated", name);
	if ((mask & STORE_ATTR_TAGS) && strnlen(m->tags, sizeof(m->tags)) >= sizeof(m->tags))
		return kw_fail(-EINVAL, "store: the tags of '%s' are not terminated", name);
	if (mask & STORE_ATTR_TAGS)
		return check_tags(m->tags, name);
	return 0;
}

static int
check_record(const struct store_record *r)
{
	int e;

	if (r == NULL)
		return kw_fail(-EINVAL, "store: no record");
	if (strnlen(r->meta.name, sizeof(r->meta.name)) >= sizeof(r->meta.name))
		return kw_fail(-EINVAL, "store: a record's name is not terminated");
	if ((e = check_name(r->meta.name)) != 0 ||
	    (e = check_version(r->meta.version, 0)) != 0 ||
	    (e = check_attrs(&r->meta, ~0u, r->meta.name)) != 0)
		return e;
	if (r->wrapped_len == 0 || r->wrapped_len > STORE_WRAPPED_MAX)
		return kw_fail(-EINVAL, "store: the wrapped data key of '%s' is %zu bytes "
		    "(1..%d expected)", r->meta.name, r->wrapped_len, STORE_WRAPPED_MAX);
	if (r->body == NULL && r->body_len > 0)
		return kw_fail(-EINVAL, "store: the record '%s' has no body", r->meta.name);
	return 0;
}

/* ---- life ------------------------------------------------------------------------ */

int
store_open(const struct store_options *opt, struct store **out)
{
	const struct store_ops *ops = NULL;
	const char *url, *loc = NULL;
	struct store *s = NULL;
	int e;

	if (opt == NULL || opt->url == NULL || opt->url[0] == '\0' || out == NULL)
		return kw_fail(KW_E_CONFIG, "store: no URL: give sqlite:/PATH or an absolute path");
	url = opt->url;
	if (strncmp(url, "sqlite:", 7) == 0) {
		ops = &store_sqlite_ops;
		loc = url + 7;
		if (strncmp(loc, "//", 2) == 0)   /* sqlite:///var/lib/... */
			loc += 2;
	} else if (strncmp(url, "postgresql:", 11) == 0 || strncmp(url, "postgres:", 9) == 0) {
		/* Never echo the URL: it may hold a password. */
		return kw_fail(KW_E_CONFIG, "store: the PostgreSQL engine is not built into this "
		    "keywarden; use sqlite:/PATH");
	} else if (strchr(url, ':') == NULL || url[0] == '/' || url[0] == '.') {
		ops = &store_sqlite_ops;
		loc = url;
	} else {
		return kw_fail(KW_E_CONFIG, "store: unknown URL scheme in '%.*s...': "
		    "use sqlite:/PATH or an absolute path", (int)(strchr(url, ':') - url), url);
	}
	if (loc[0] == '\0')
		return kw_fail(KW_E_CONFIG, "store: the URL '%s' names no file", url);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return kw_fail(-ENOMEM, "store: out of memory");
	s->ops = ops;
	if ((e = ops->open(loc, opt, &s->eng)) != 0)
		goto out;
	*out = s;
	s = NULL;
	e = 0;
out:
	free(s);
	return e;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->eng != NULL)
		s->ops->close(s->eng);
	free(s);
}

#define NEED(x) do { if ((x) == NULL) return kw_fail(-EINVAL, "store: %s is NULL", #x); } while (0)

int
store_ping(struct store *s)
{
	NEED(s);
	return s->ops->ping(s->eng);
}

int
store_schema_version(struct store *s, int *version)
{
	NEED(s); NEED(version);
	return s->ops->schema_version(s->eng, version);
}

int
store_instance_id(struct store *s, uint8_t id[STORE_INSTANCE_LEN])
{
	NEED(s); NEED(id);
	return s->ops->instance_id(s->eng, id);
}

/* ---- vaults ------------------------------------------------------------------------ */

int
store_vault_ensure(struct store *s, const struct store_vault *v, struct store_vault *out)
{
	int e;

	NEED(s); NEED(v);
	if (strnlen(v->name, sizeof(v->name)) >= sizeof(v->name))
		return kw_fail(-EINVAL, "store: the vault name is not terminated");
	if ((e = check_vault(v->name)) != 0)
		return e;
	return s->ops->vault_ensure(s->eng, v, out);
}

int
store_vault_get(struct store *s, const char *name, struct store_vault *out)
{
	int e;

	NEED(s); NEED(out);
	if ((e = check_vault(name)) != 0)
		return e;
	return s->ops->vault_get(s->eng, name, out);
}

int
store_vault_set_attrs(struct store *s, const struct store_vault *v)
{
	int e;

	NEED(s); NEED(v);
	if (strnlen(v->name, sizeof(v->name)) >= sizeof(v->name))
		return kw_fail(-EINVAL, "store: the vault name is not terminated");
	if ((e = check_vault(v->name)) != 0)
		return e;
	return s->ops->vault_set_attrs(s->eng, v);
}

int
store_vault_list(struct store *s, struct store_vault **out, size_t *n)
{
	NEED(s); NEED(out); NEED(n);
	return s->ops->vault_list(s->eng, out, n);
}

int
store_key_add(struct store *s, const char *vault, const struct store_key *k)
{
	int e;

	NEED(s); NEED(k);
	if ((e = check_vault(vault)) != 0)
		return e;
	if (k->version == 0 || k->version > INT32_MAX)
		return kw_fail(-EINVAL, "store: master-key version %u is out of range", k->version);
	return s->ops->key_add(s->eng, vault, k);
}

int
store_key_set_current(struct store *s, const char *vault, uint32_t version)
{
	int e;

	NEED(s);
	if ((e = check_vault(vault)) != 0)
		return e;
	return s->ops->key_set_current(s->eng, vault, version);
}

int
store_key_set_state(struct store *s, const char *vault, uint32_t version,
    enum store_key_state state, int64_t when)
{
	int e;

	NEED(s);
	if ((e = check_vault(vault)) != 0)
		return e;
	if (state != STORE_KEY_ACTIVE && state != STORE_KEY_RETIRED && state != STORE_KEY_DESTROYED)
		return kw_fail(-EINVAL, "store: unknown master-key state %d", (int)state);
	return s->ops->key_set_state(s->eng, vault, version, state, when);
}

int
store_key_list(struct store *s, const char *vault, struct store_key **out, size_t *n)
{
	int e;

	NEED(s); NEED(out); NEED(n);
	if ((e = check_vault(vault)) != 0)
		return e;
	return s->ops->key_list(s->eng, vault, out, n);
}

int
store_key_usage(struct store *s, const char *vault, uint32_t version, uint64_t *count)
{
	int e;

	NEED(s); NEED(count);
	if ((e = check_vault(vault)) != 0)
		return e;
	return s->ops->key_usage(s->eng, vault, version, count);
}

/* ---- secrets ------------------------------------------------------------------------ */

int
store_secret_put(struct store *s, const char *vault, const struct store_record *rec,
    uint64_t *current)
{
	int e;

	NEED(s);
	if ((e = check_vault(vault)) != 0 || (e = check_record(rec)) != 0)
		return e;
	return s->ops->secret_put(s->eng, vault, rec, current);
}

int
store_secret_current(struct store *s, const char *vault, const char *name, uint64_t *version)
{
	int e;

	NEED(s); NEED(version);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0)
		return e;
	return s->ops->secret_current(s->eng, vault, name, version);
}

int
store_read_begin(struct store *s)
{
	NEED(s);
	return s->ops->read_begin != NULL ? s->ops->read_begin(s->eng) : 0;
}

void
store_read_end(struct store *s)
{
	if (s != NULL && s->ops->read_end != NULL)
		s->ops->read_end(s->eng);
}

int
store_secret_get(struct store *s, const char *vault, const char *name, uint64_t version,
    struct store_record *out)
{
	int e;

	NEED(s); NEED(out);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0 ||
	    (e = check_version(version, 1)) != 0)
		return e;
	return s->ops->secret_get(s->eng, vault, name, version, out);
}

int
store_secret_versions(struct store *s, const char *vault, const char *name,
    struct store_meta **out, size_t *n)
{
	int e;

	NEED(s); NEED(out); NEED(n);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0)
		return e;
	return s->ops->secret_versions(s->eng, vault, name, out, n);
}

int
store_secret_list(struct store *s, const char *vault, const char *prefix, const char *after,
    size_t limit, struct store_meta **out, size_t *n)
{
	int e;

	NEED(s); NEED(out); NEED(n);
	if ((e = check_vault(vault)) != 0)
		return e;
	if (prefix != NULL && strnlen(prefix, STORE_NAME_MAX + 1) > STORE_NAME_MAX)
		return kw_fail(-EINVAL, "store: the prefix is longer than %d bytes", STORE_NAME_MAX);
	if (after != NULL && strnlen(after, STORE_NAME_MAX + 1) > STORE_NAME_MAX)
		return kw_fail(-EINVAL, "store: the name to list after is longer than %d bytes",
		    STORE_NAME_MAX);
	return s->ops->secret_list(s->eng, vault, prefix ? prefix : "",
	    after ? after : "", limit, out, n);
}

int
store_secret_update(struct store *s, const char *vault, const char *name, uint64_t version,
    unsigned mask, const struct store_meta *attrs, int64_t now, struct store_meta *out)
{
	int e;

	NEED(s); NEED(attrs);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0 ||
	    (e = check_version(version, 1)) != 0 || (e = check_attrs(attrs, mask, name)) != 0)
		return e;
	return s->ops->secret_update(s->eng, vault, name, version, mask, attrs, now, out);
}

int
store_secret_delete(struct store *s, const char *vault, const char *name, int64_t now,
    int64_t scheduled_purge, struct store_meta *out)
{
	int e;

	NEED(s);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0)
		return e;
	return s->ops->secret_delete(s->eng, vault, name, now, scheduled_purge, out);
}

int
store_deleted_list(struct store *s, const char *vault, struct store_meta **out, size_t *n)
{
	int e;

	NEED(s); NEED(out); NEED(n);
	if ((e = check_vault(vault)) != 0)
		return e;
	return s->ops->deleted_list(s->eng, vault, out, n);
}

int
store_deleted_get(struct store *s, const char *vault, const char *name, struct store_meta *out)
{
	int e;

	NEED(s); NEED(out);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0)
		return e;
	return s->ops->deleted_get(s->eng, vault, name, out);
}

int
store_secret_recover(struct store *s, const char *vault, const char *name, struct store_meta *out)
{
	int e;

	NEED(s);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0)
		return e;
	return s->ops->secret_recover(s->eng, vault, name, out);
}

int
store_secret_purge(struct store *s, const char *vault, const char *name, int64_t due_by)
{
	int e;

	NEED(s);
	if ((e = check_vault(vault)) != 0 || (e = check_name(name)) != 0)
		return e;
	return s->ops->secret_purge(s->eng, vault, name, due_by);
}

/* ---- rotation ------------------------------------------------------------------------ */

int
store_rewrap_scan(struct store *s, const char *vault, uint32_t target, const char *after_name,
    uint64_t after_version, size_t limit, struct store_rewrap_rec **out, size_t *n)
{
	int e;

	NEED(s); NEED(out); NEED(n);
	if ((e = check_vault(vault)) != 0 || (e = check_version(after_version, 1)) != 0)
		return e;
	if (after_name != NULL && strnlen(after_name, STORE_NAME_MAX + 1) > STORE_NAME_MAX)
		return kw_fail(-EINVAL, "store: the cursor name is longer than %d bytes", STORE_NAME_MAX);
	return s->ops->rewrap_scan(s->eng, vault, target, after_name ? after_name : "",
	    after_name ? after_version : 0, limit, out, n);
}

int
store_rewrap_apply(struct store *s, const char *vault, const struct store_rewrap *batch,
    size_t n, size_t *applied)
{
	int e;

	NEED(s); NEED(applied);
	if (n > 0)
		NEED(batch);
	if ((e = check_vault(vault)) != 0)
		return e;
	for (size_t i = 0; i < n; i++) {
		if ((e = check_name(batch[i].name)) != 0 ||
		    (e = check_version(batch[i].version, 0)) != 0)
			return e;
		if (batch[i].wrapped == NULL || batch[i].wrapped_len == 0 ||
		    batch[i].wrapped_len > STORE_WRAPPED_MAX ||
		    batch[i].old_wrapped == NULL || batch[i].old_wrapped_len == 0 ||
		    batch[i].old_wrapped_len > STORE_WRAPPED_MAX)
			return kw_fail(-EINVAL, "store: rewrap of '%s' version %llu: the wrapped key "
			    "is %zu bytes (1..%d expected)", batch[i].name,
			    (unsigned long long)batch[i].version, batch[i].wrapped_len, STORE_WRAPPED_MAX);
	}
	return s->ops->rewrap_apply(s->eng, vault, batch, n, applied);
}

/* ---- backup / restore ------------------------------------------------------------------ */

/* Item i of a list failed check e: say which, keeping the check's detail. */
static int
fail_item(int e, const char *what, size_t i)
{
	char why[512];

	snprintf(why, sizeof(why), "%s", kw_errdetail(e));
	return kw_fail(e, "%s %zu: %s", what, i, why);
}

int
store_vault_export(struct store *s, const char *vault,
    int (*fn)(void *arg, const struct store_record *rec),
    int (*mark_fn)(void *arg, const struct store_skey_mark *m), void *arg)
{
	int e;

	NEED(s); NEED(fn);
	if ((e = check_vault(vault)) != 0)
		return e;
	return s->ops->vault_export(s->eng, vault, fn, mark_fn, arg);
}

int
store_vault_import(struct store *s, const char *vault, const struct store_record *recs, size_t n,
    const struct store_skey_mark *marks, size_t nmarks)
{
	int e;

	NEED(s);
	if (n > 0)
		NEED(recs);
	if (nmarks > 0)
		NEED(marks);
	if ((e = check_vault(vault)) != 0)
		return e;
	for (size_t i = 0; i < n; i++) {
		if ((e = check_record(&recs[i])) != 0)
			return fail_item(e, "record", i);
	}
	for (size_t i = 0; i < nmarks; i++) {
		if ((e = check_skey_name(marks[i].name)) != 0 ||
		    (e = check_version(marks[i].version, 0)) != 0)
			return fail_item(e, "disabled signing key", i);
	}
	return s->ops->vault_import(s->eng, vault, recs, n, marks, nmarks);
}

int
store_skey_set_enabled(struct store *s, const char *vault, const char *name,
    uint32_t version, int enabled, int64_t when)
{
	int e;

	NEED(s);
	if ((e = check_vault(vault)) != 0 || (e = check_skey_name(name)) != 0 ||
	    (e = check_version(version, 0)) != 0)
		return e;
	return s->ops->skey_set_enabled(s->eng, vault, name, version, enabled != 0, when);
}

int
store_skey_disabled(struct store *s, const char *vault, const char *name,
    uint32_t **out, size_t *n)
{
	int e;

	NEED(s); NEED(out); NEED(n);
	*out = NULL;
	*n = 0;
	if ((e = check_vault(vault)) != 0 || (e = check_skey_name(name)) != 0)
		return e;
	return s->ops->skey_disabled(s->eng, vault, name, out, n);
}
