/* Unit tests for the store (daemon/store.h) on real SQLite files. */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <sqlite3.h>

#include "kw_error.h"
#include "daemon/store.h"
#include "tests/lib/kwt_cunit.h"

static char dir[256];
static int dbseq;

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

/* A fresh database path in the test directory. */
static void
db_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/kw%d.db", dir, ++dbseq);
}

static struct store *
open_at(const char *path, uint64_t max_bytes, unsigned busy_ms)
{
	struct store_options o;
	struct store *s = NULL;
	char url[512];
	int e;

	snprintf(url, sizeof(url), "sqlite:%s", path);
	memset(&o, 0, sizeof(o));
	o.url = url;
	o.connections = 10;
	o.busy_timeout_ms = busy_ms;
	o.max_bytes = max_bytes;
	e = store_open(&o, &s);
	if (e != 0)
		fprintf(stderr, "store_open: %s\n", kw_errdetail(e));
	return s;
}

/* A store with vault "v" (key version 1 current). */
static struct store *
fresh(char *path, size_t len)
{
	struct store_vault v;
	struct store_key k;
	struct store *s;

	db_path(path, len);
	s = open_at(path, 0, 0);
	if (s == NULL)
		return NULL;
	memset(&v, 0, sizeof(v));
	snprintf(v.name, sizeof(v.name), "v");
	v.retention_days = 7;
	v.created = 1000;
	memset(&k, 0, sizeof(k));
	k.version = 1;
	memset(k.key_id, 0x11, sizeof(k.key_id));
	k.created = 1000;
	if (store_vault_ensure(s, &v, NULL) != 0 || store_key_add(s, "v", &k) != 0 ||
	    store_key_set_current(s, "v", 1) != 0) {
		store_close(s);
		return NULL;
	}
	return s;
}

/* A record whose body is text (its bytes are not a real ciphertext: the
 * store does not care). */
static void
mkrec(struct store_record *r, const char *name, uint64_t version, uint32_t kv, const char *body)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->meta.name, sizeof(r->meta.name), "%s", name);
	r->meta.version = version;
	r->meta.key_version = kv;
	r->meta.enabled = 1;
	r->meta.created = r->meta.updated = (int64_t)(1000 + version);
	snprintf(r->meta.content_type, sizeof(r->meta.content_type), "text/plain");
	snprintf(r->meta.tags, sizeof(r->meta.tags), "{\"env\":\"test\"}");
	r->wrapped_len = 40;
	memset(r->wrapped, (int)(0x40 + kv), r->wrapped_len);
	memset(r->nonce, (int)version, sizeof(r->nonce));
	r->body_len = strlen(body);
	r->body = malloc(r->body_len + 1);
	memcpy(r->body, body, r->body_len + 1);
}

static int
put(struct store *s, const char *vault, const char *name, uint64_t version, uint32_t kv,
    const char *body, uint64_t *cur)
{
	struct store_record r;
	int e;

	mkrec(&r, name, version, kv, body);
	e = store_secret_put(s, vault, &r, cur);
	store_record_clear(&r);
	return e;
}

static int
body_is(struct store *s, const char *name, uint64_t version, const char *want)
{
	struct store_record r;
	int ok;

	memset(&r, 0, sizeof(r));
	if (store_secret_get(s, "v", name, version, &r) != 0)
		return 0;
	ok = r.body_len == strlen(want) && memcmp(r.body, want, r.body_len) == 0;
	store_record_clear(&r);
	return ok;
}

/* ---- tests --------------------------------------------------------------------------- */

static void
test_put_get(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_record r;
	struct store_meta *ms = NULL;
	uint64_t cur = 99;
	size_t n = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(store_secret_current(s, "v", "db/pw", &cur), 0);
	CU_ASSERT_EQUAL(cur, 0);
	CU_ASSERT_EQUAL(put(s, "v", "db/pw", 1, 1, "one", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "db/pw", 2, 1, "two!", NULL), 0);
	CU_ASSERT_EQUAL(store_secret_current(s, "v", "db/pw", &cur), 0);
	CU_ASSERT_EQUAL(cur, 2);
	CU_ASSERT(body_is(s, "db/pw", 0, "two!"));
	CU_ASSERT(body_is(s, "db/pw", 1, "one"));

	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL_FATAL(store_secret_get(s, "v", "db/pw", 1, &r), 0);
	CU_ASSERT_STRING_EQUAL(r.meta.name, "db/pw");
	CU_ASSERT_EQUAL(r.meta.version, 1);
	CU_ASSERT_EQUAL(r.meta.key_version, 1);
	CU_ASSERT_EQUAL(r.meta.created, 1001);
	CU_ASSERT_EQUAL(r.meta.enabled, 1);
	CU_ASSERT_STRING_EQUAL(r.meta.content_type, "text/plain");
	CU_ASSERT_STRING_EQUAL(r.meta.tags, "{\"env\":\"test\"}");
	CU_ASSERT_EQUAL(r.wrapped_len, 40);
	CU_ASSERT_EQUAL(r.wrapped[0], 0x41);
	CU_ASSERT_EQUAL(r.nonce[11], 1);
	CU_ASSERT_EQUAL(r.meta.deleted, 0);
	store_record_clear(&r);
	store_record_clear(&r);         /* twice is harmless */
	store_record_clear(NULL);

	CU_ASSERT_EQUAL(store_secret_versions(s, "v", "db/pw", &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_EQUAL(ms[0].version, 2);
	CU_ASSERT_EQUAL(ms[1].version, 1);
	free(ms);

	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "db/pw", 3, &r), KW_E_NOT_FOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_NOT_FOUND), "no version 3"));
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "nope", 0, &r), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_secret_versions(s, "v", "nope", &ms, &n), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(put(s, "novault", "x", 1, 1, "x", NULL), KW_E_NOT_FOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_NOT_FOUND), "novault"));
	/* An empty body is a valid record. */
	CU_ASSERT_EQUAL(put(s, "v", "empty", 1, 1, "", NULL), 0);
	CU_ASSERT(body_is(s, "empty", 0, ""));
	store_close(s);
	store_close(NULL);
}

static void
test_cas(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	uint64_t cur = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(put(s, "v", "a", 2, 1, "x", &cur), KW_E_CONFLICT);
	CU_ASSERT_EQUAL(cur, 0);
	CU_ASSERT_EQUAL(put(s, "v", "a", 1, 1, "x", &cur), 0);
	cur = 77;
	CU_ASSERT_EQUAL(put(s, "v", "a", 1, 1, "y", &cur), KW_E_CONFLICT);
	CU_ASSERT_EQUAL(cur, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_CONFLICT), "at version 1"));
	CU_ASSERT_EQUAL(put(s, "v", "a", 3, 1, "y", &cur), KW_E_CONFLICT);
	CU_ASSERT_EQUAL(cur, 1);
	CU_ASSERT_EQUAL(put(s, "v", "a", 2, 1, "y", NULL), 0);
	CU_ASSERT(body_is(s, "a", 0, "y"));
	CU_ASSERT(body_is(s, "a", 1, "x"));
	store_close(s);
}

static void
test_list(void)
{
	const char *names[] = { "a%", "a%b", "a_c", "ab", "abc", "b", "b/x", "c" };
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_meta *ms = NULL;
	size_t n = 0, i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CU_ASSERT_EQUAL(put(s, "v", names[i], 1, 1, "x", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "ab", 2, 1, "x2", NULL), 0);

	CU_ASSERT_EQUAL(store_secret_list(s, "v", NULL, NULL, 0, &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 8);
	for (i = 0; i < n; i++)
		CU_ASSERT_STRING_EQUAL(ms[i].name, names[i]);
	CU_ASSERT_EQUAL(ms[3].version, 2);          /* the current version */
	free(ms);

	/* '%' and '_' are characters, not wildcards. */
	CU_ASSERT_EQUAL(store_secret_list(s, "v", "a%", NULL, 100, &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(ms[0].name, "a%");
	CU_ASSERT_STRING_EQUAL(ms[1].name, "a%b");
	free(ms);
	CU_ASSERT_EQUAL(store_secret_list(s, "v", "a_", NULL, 100, &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(ms[0].name, "a_c");
	free(ms);
	CU_ASSERT_EQUAL(store_secret_list(s, "v", "_", NULL, 100, &ms, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(ms);
	CU_ASSERT_EQUAL(store_secret_list(s, "v", "b", NULL, 100, &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(ms[1].name, "b/x");
	free(ms);

	/* Pages of 3 after the last name seen. */
	{
		char after[STORE_NAME_MAX + 1] = "";
		size_t seen = 0, pages = 0;
		for (;;) {
			CU_ASSERT_EQUAL_FATAL(store_secret_list(s, "v", "", after[0] ? after : NULL, 3,
			    &ms, &n), 0);
			if (n == 0) {
				free(ms);
				break;
			}
			CU_ASSERT(n <= 3);
			for (i = 0; i < n; i++)
				CU_ASSERT_STRING_EQUAL(ms[i].name, names[seen + i]);
			seen += n;
			pages++;
			snprintf(after, sizeof(after), "%s", ms[n - 1].name);
			free(ms);
		}
		CU_ASSERT_EQUAL(seen, 8);
		CU_ASSERT_EQUAL(pages, 3);
	}
	/* A prefix and a cursor together. */
	CU_ASSERT_EQUAL(store_secret_list(s, "v", "a", "a_c", 100, &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(ms[0].name, "ab");
	free(ms);
	/* Deleted names are not listed. */
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "abc", 5, 6, NULL), 0);
	CU_ASSERT_EQUAL(store_secret_list(s, "v", "ab", NULL, 100, &ms, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	free(ms);
	store_close(s);
}

static void
test_update(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_meta a, out, *ms = NULL;
	struct store_record r;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(put(s, "v", "k", 1, 1, "x", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "k", 2, 1, "y", NULL), 0);
	memset(&a, 0, sizeof(a));
	a.enabled = 0;
	a.expires = 99999;
	snprintf(a.content_type, sizeof(a.content_type), "should-not-apply");
	snprintf(a.tags, sizeof(a.tags), "{\"team\":\"ops\",\"tier\":\"1\"}");
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "k", 0,
	    STORE_ATTR_ENABLED | STORE_ATTR_EXPIRES | STORE_ATTR_TAGS, &a, 5555, &out), 0);
	CU_ASSERT_EQUAL(out.version, 2);
	CU_ASSERT_EQUAL(out.enabled, 0);
	CU_ASSERT_EQUAL(out.expires, 99999);
	CU_ASSERT_EQUAL(out.updated, 5555);
	CU_ASSERT_EQUAL(out.created, 1002);
	CU_ASSERT_STRING_EQUAL(out.content_type, "text/plain");
	CU_ASSERT_STRING_EQUAL(out.tags, "{\"team\":\"ops\",\"tier\":\"1\"}");
	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "k", 0, &r), 0);
	CU_ASSERT_EQUAL(r.meta.enabled, 0);
	CU_ASSERT_EQUAL(r.meta.expires, 99999);
	store_record_clear(&r);
	/* An older version, by number; the newer one is untouched. */
	snprintf(a.content_type, sizeof(a.content_type), "application/json");
	a.tags[0] = '\0';
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "k", 1, STORE_ATTR_CONTENT_TYPE | STORE_ATTR_TAGS,
	    &a, 6666, NULL), 0);
	CU_ASSERT_EQUAL(store_secret_versions(s, "v", "k", &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(ms[1].content_type, "application/json");
	CU_ASSERT_STRING_EQUAL(ms[1].tags, "{}");
	CU_ASSERT_EQUAL(ms[1].enabled, 1);
	CU_ASSERT_STRING_EQUAL(ms[0].content_type, "text/plain");
	free(ms);
	/* Bad tags are refused, and nothing changes. */
	snprintf(a.tags, sizeof(a.tags), "[\"x\"]");
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "k", 0, STORE_ATTR_TAGS, &a, 1, NULL), KW_E_FORMAT);
	snprintf(a.tags, sizeof(a.tags), "{\"n\":1}");
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "k", 0, STORE_ATTR_TAGS, &a, 1, NULL), KW_E_FORMAT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_FORMAT), "'n'"));
	snprintf(a.tags, sizeof(a.tags), "{\"n\":");
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "k", 0, STORE_ATTR_TAGS, &a, 1, NULL), KW_E_FORMAT);
	snprintf(a.tags, sizeof(a.tags), "{\"a\":\"1\",\"a\":\"2\"}");
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "k", 0, STORE_ATTR_TAGS, &a, 1, NULL), KW_E_FORMAT);
	/* Bad tags in a put are refused too. */
	{
		struct store_record b;
		mkrec(&b, "k", 3, 1, "z");
		snprintf(b.meta.tags, sizeof(b.meta.tags), "\"str\"");
		CU_ASSERT_EQUAL(store_secret_put(s, "v", &b, NULL), KW_E_FORMAT);
		store_record_clear(&b);
	}
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "k", 3, STORE_ATTR_ENABLED, &a, 1, NULL), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_secret_update(s, "v", "zz", 0, STORE_ATTR_ENABLED, &a, 1, NULL), KW_E_NOT_FOUND);
	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "k", 0, &r), 0);
	CU_ASSERT_STRING_EQUAL(r.meta.tags, "{\"team\":\"ops\",\"tier\":\"1\"}");
	CU_ASSERT_EQUAL(r.meta.updated, 5555);
	store_record_clear(&r);
	store_close(s);
}

static void
test_delete(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_meta m, *ms = NULL;
	struct store_record r;
	uint64_t cur = 9;
	size_t n = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(put(s, "v", "gone", 1, 1, "a", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "gone", 2, 1, "b", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "stays", 1, 1, "c", NULL), 0);
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "gone", 100, 200, &m), 0);
	CU_ASSERT_EQUAL(m.version, 2);
	CU_ASSERT_EQUAL(m.deleted, 100);
	CU_ASSERT_EQUAL(m.scheduled_purge, 200);
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "gone", 100, 200, NULL), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "never", 100, 200, NULL), KW_E_NOT_FOUND);

	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "gone", 0, &r), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "gone", 1, &r), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_secret_current(s, "v", "gone", &cur), 0);
	CU_ASSERT_EQUAL(cur, 0);
	CU_ASSERT_EQUAL(store_secret_versions(s, "v", "gone", &ms, &n), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(put(s, "v", "gone", 3, 1, "d", &cur), KW_E_CONFLICT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_CONFLICT), "deleted"));
	CU_ASSERT_EQUAL(put(s, "v", "gone", 1, 1, "d", &cur), KW_E_CONFLICT);

	CU_ASSERT_EQUAL(store_deleted_list(s, "v", &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(ms[0].name, "gone");
	CU_ASSERT_EQUAL(ms[0].version, 2);
	CU_ASSERT_EQUAL(ms[0].deleted, 100);
	CU_ASSERT_EQUAL(ms[0].scheduled_purge, 200);
	free(ms);
	CU_ASSERT_EQUAL(store_deleted_get(s, "v", "gone", &m), 0);
	CU_ASSERT_EQUAL(m.scheduled_purge, 200);
	CU_ASSERT_EQUAL(store_deleted_get(s, "v", "stays", &m), KW_E_NOT_FOUND);

	/* Recover: everything back, versions and bodies intact. */
	CU_ASSERT_EQUAL(store_secret_recover(s, "v", "gone", &m), 0);
	CU_ASSERT_EQUAL(m.version, 2);
	CU_ASSERT_EQUAL(m.deleted, 0);
	CU_ASSERT_EQUAL(m.scheduled_purge, 0);
	CU_ASSERT(body_is(s, "gone", 1, "a"));
	CU_ASSERT(body_is(s, "gone", 0, "b"));
	CU_ASSERT_EQUAL(store_secret_recover(s, "v", "gone", &m), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_deleted_list(s, "v", &ms, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(ms);

	/* Purge: only a deleted name, and for good. */
	CU_ASSERT_EQUAL(store_secret_purge(s, "v", "gone", 0), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "gone", 300, 400, NULL), 0);
	/* under purge protection, not before its time */
	CU_ASSERT_EQUAL(store_secret_purge(s, "v", "gone", 399), KW_E_NOT_FOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_NOT_FOUND), "due for purge"));
	CU_ASSERT_EQUAL(store_deleted_get(s, "v", "gone", &m), 0);
	CU_ASSERT_EQUAL(store_secret_purge(s, "v", "gone", 400), 0);
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "stays", 300, 400, NULL), 0);
	CU_ASSERT_EQUAL(store_secret_recover(s, "v", "stays", &m), 0);
	CU_ASSERT_EQUAL(store_secret_purge(s, "v", "gone", 0), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_deleted_get(s, "v", "gone", &m), KW_E_NOT_FOUND);
	{
		uint64_t c1 = 1;
		CU_ASSERT_EQUAL(store_key_usage(s, "v", 1, &c1), 0);
		CU_ASSERT_EQUAL(c1, 1);       /* only "stays" is left */
	}
	/* The name is free again, from version 1. */
	CU_ASSERT_EQUAL(put(s, "v", "gone", 1, 1, "new", NULL), 0);
	CU_ASSERT(body_is(s, "gone", 0, "new"));
	CU_ASSERT(body_is(s, "stays", 0, "c"));
	store_close(s);
}

static void
test_vaults(void)
{
	char path[300];
	struct store *s;
	struct store_vault v, out, *vs = NULL;
	size_t n = 0;

	db_path(path, sizeof(path));
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(store_vault_list(s, &vs, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(vs);
	memset(&v, 0, sizeof(v));
	snprintf(v.name, sizeof(v.name), "prod");
	v.purge_protection = 1;
	v.retention_days = 90;
	v.created = 42;
	v.key_version = 7;          /* ignored: a new vault has no key */
	CU_ASSERT_EQUAL(store_vault_ensure(s, &v, &out), 0);
	CU_ASSERT_STRING_EQUAL(out.name, "prod");
	CU_ASSERT_EQUAL(out.key_version, 0);
	CU_ASSERT_EQUAL(out.purge_protection, 1);
	CU_ASSERT_EQUAL(out.retention_days, 90);
	CU_ASSERT_EQUAL(out.created, 42);
	/* Present: left as it is. */
	v.purge_protection = 0;
	v.retention_days = 1;
	v.created = 43;
	CU_ASSERT_EQUAL(store_vault_ensure(s, &v, &out), 0);
	CU_ASSERT_EQUAL(out.purge_protection, 1);
	CU_ASSERT_EQUAL(out.retention_days, 90);
	CU_ASSERT_EQUAL(out.created, 42);
	CU_ASSERT_EQUAL(store_vault_set_attrs(s, &v), 0);
	CU_ASSERT_EQUAL(store_vault_get(s, "prod", &out), 0);
	CU_ASSERT_EQUAL(out.purge_protection, 0);
	CU_ASSERT_EQUAL(out.retention_days, 1);
	CU_ASSERT_EQUAL(out.created, 42);
	snprintf(v.name, sizeof(v.name), "dev");
	CU_ASSERT_EQUAL(store_vault_ensure(s, &v, NULL), 0);
	CU_ASSERT_EQUAL(store_vault_list(s, &vs, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(vs[0].name, "dev");
	CU_ASSERT_STRING_EQUAL(vs[1].name, "prod");
	free(vs);
	CU_ASSERT_EQUAL(store_vault_get(s, "nope", &out), KW_E_NOT_FOUND);
	snprintf(v.name, sizeof(v.name), "nope");
	CU_ASSERT_EQUAL(store_vault_set_attrs(s, &v), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_vault_get(s, "", &out), -EINVAL);
	store_close(s);
}

static void
test_keys(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_key k, *ks = NULL;
	struct store_vault v;
	uint64_t c = 99;
	size_t n = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	memset(&k, 0, sizeof(k));
	k.version = 2;
	memset(k.key_id, 0x22, sizeof(k.key_id));
	k.state = STORE_KEY_RETIRED;   /* ignored: a new version is active */
	k.created = 2000;
	CU_ASSERT_EQUAL(store_key_add(s, "v", &k), 0);
	CU_ASSERT_EQUAL(store_key_add(s, "v", &k), KW_E_CONFLICT);
	CU_ASSERT_EQUAL(store_key_add(s, "nope", &k), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_vault_get(s, "v", &v), 0);
	CU_ASSERT_EQUAL(v.key_version, 1);
	CU_ASSERT_EQUAL(put(s, "v", "a", 1, 1, "x", NULL), 0);
	CU_ASSERT_EQUAL(store_key_set_current(s, "v", 2), 0);
	CU_ASSERT_EQUAL(store_key_set_current(s, "v", 3), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_vault_get(s, "v", &v), 0);
	CU_ASSERT_EQUAL(v.key_version, 2);
	CU_ASSERT_EQUAL(put(s, "v", "a", 2, 2, "y", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "b", 1, 2, "y", NULL), 0);
	/* a write that picked version 1 before the switch: refused, to pick
	 * again (it would land behind a rotation's last count) */
	CU_ASSERT_EQUAL(put(s, "v", "c", 1, 1, "late", NULL), KW_E_RETIRED);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_RETIRED), "no longer the current one"));
	CU_ASSERT_EQUAL(store_key_usage(s, "v", 1, &c), 0);
	CU_ASSERT_EQUAL(c, 1);
	CU_ASSERT_EQUAL(store_key_usage(s, "v", 2, &c), 0);
	CU_ASSERT_EQUAL(c, 2);
	CU_ASSERT_EQUAL(store_key_usage(s, "v", 3, &c), 0);
	CU_ASSERT_EQUAL(c, 0);

	/* The current key cannot be retired, nor one that still wraps a
	 * record (counted in the retiring transaction). */
	CU_ASSERT_EQUAL(store_key_set_state(s, "v", 2, STORE_KEY_RETIRED, 3000), KW_E_CONFLICT);
	CU_ASSERT_EQUAL(store_key_set_state(s, "v", 1, STORE_KEY_RETIRED, 3000), KW_E_CONFLICT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_CONFLICT), "1 record(s)"));
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "a", 10, 20, NULL), 0);
	CU_ASSERT_EQUAL(store_secret_purge(s, "v", "a", 0), 0);
	CU_ASSERT_EQUAL(store_key_set_state(s, "v", 1, STORE_KEY_RETIRED, 3000), 0);
	CU_ASSERT_EQUAL(store_key_set_current(s, "v", 1), KW_E_RETIRED);
	/* A write that chose version 1 before it was retired is refused,
	 * with nothing written; an unknown version is the caller's affair. */
	CU_ASSERT_EQUAL(put(s, "v", "late", 1, 1, "z", NULL), KW_E_RETIRED);
	CU_ASSERT_EQUAL(store_secret_current(s, "v", "late", &c), 0);
	CU_ASSERT_EQUAL(c, 0);
	CU_ASSERT_EQUAL(put(s, "v", "other", 1, 7, "z", NULL), 0);
	CU_ASSERT_EQUAL(store_key_usage(s, "v", 1, &c), 0);
	CU_ASSERT_EQUAL(c, 0);
	CU_ASSERT_EQUAL(store_key_list(s, "v", &ks, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_EQUAL(ks[0].version, 1);
	CU_ASSERT_EQUAL(ks[0].state, STORE_KEY_RETIRED);
	CU_ASSERT_EQUAL(ks[0].retired, 3000);
	CU_ASSERT_EQUAL(ks[0].key_id[15], 0x11);
	CU_ASSERT_EQUAL(ks[1].version, 2);
	CU_ASSERT_EQUAL(ks[1].state, STORE_KEY_ACTIVE);
	CU_ASSERT_EQUAL(ks[1].created, 2000);
	CU_ASSERT_EQUAL(ks[1].key_id[0], 0x22);
	free(ks);
	/* Destroyed keeps the retirement time and is final. */
	CU_ASSERT_EQUAL(store_key_set_state(s, "v", 1, STORE_KEY_DESTROYED, 4000), 0);
	CU_ASSERT_EQUAL(store_key_set_state(s, "v", 1, STORE_KEY_ACTIVE, 5000), KW_E_CONFLICT);
	CU_ASSERT_EQUAL(store_key_set_state(s, "v", 9, STORE_KEY_RETIRED, 5000), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(store_key_list(s, "v", &ks, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_EQUAL(ks[0].state, STORE_KEY_DESTROYED);
	CU_ASSERT_EQUAL(ks[0].retired, 3000);
	free(ks);
	CU_ASSERT_EQUAL(store_key_list(s, "nope", &ks, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(ks);
	store_close(s);
}

static void
test_rewrap(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_key k;
	struct store_rewrap_rec *rs = NULL;
	struct store_record r;
	char name[16], cname[STORE_NAME_MAX + 1] = "";
	uint64_t c, cver = 0;
	size_t n, applied, total = 0, batches = 0, i;
	uint8_t w2[48];

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "n%02zu", i);
		CU_ASSERT_EQUAL(put(s, "v", name, 1, 1, "x", NULL), 0);
		CU_ASSERT_EQUAL(put(s, "v", name, 2, 1, "y", NULL), 0);
	}
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "n09", 1, 2, NULL), 0);
	memset(&k, 0, sizeof(k));
	k.version = 2;
	CU_ASSERT_EQUAL(store_key_add(s, "v", &k), 0);
	CU_ASSERT_EQUAL(store_key_set_current(s, "v", 2), 0);
	memset(w2, 0xee, sizeof(w2));

	for (;;) {
		struct store_rewrap batch[7];
		CU_ASSERT_EQUAL_FATAL(store_rewrap_scan(s, "v", 2, cname[0] ? cname : NULL, cver, 7,
		    &rs, &n), 0);
		if (n == 0) {
			free(rs);
			break;
		}
		CU_ASSERT(n <= 7);
		for (i = 0; i < n; i++) {
			CU_ASSERT_EQUAL(rs[i].key_version, 1);
			CU_ASSERT_EQUAL(rs[i].wrapped_len, 40);
			CU_ASSERT(rs[i].wrapped[0] == 0x41 && rs[i].wrapped[39] == 0x41);   /* as mkrec wrote it */
			CU_ASSERT(rs[i].name[0] == 'n' && rs[i].version >= 1 && rs[i].version <= 2);
			batch[i].name = rs[i].name;
			batch[i].version = rs[i].version;
			batch[i].old_key_version = 1;
			batch[i].new_key_version = 2;
			batch[i].wrapped = w2;
			batch[i].wrapped_len = sizeof(w2);
			batch[i].old_wrapped = rs[i].wrapped;
			batch[i].old_wrapped_len = rs[i].wrapped_len;
		}
		if (batches == 0) {
			/* Underneath the rotation: a writer adds a version (on
			 * key 2), and another rewrap changes one scanned row. */
			struct store_rewrap other = { rs[1].name, rs[1].version, 1, 2,
			    (const uint8_t *)"0123456789abcdef0123456789abcdef01234567", 40,
			    rs[1].wrapped, rs[1].wrapped_len };
			CU_ASSERT_EQUAL(put(s, "v", "n00", 3, 2, "z", NULL), 0);
			CU_ASSERT_EQUAL(store_rewrap_apply(s, "v", &other, 1, &applied), 0);
			CU_ASSERT_EQUAL(applied, 1);
		}
		CU_ASSERT_EQUAL(store_rewrap_apply(s, "v", batch, n, &applied), 0);
		CU_ASSERT_EQUAL(applied, batches == 0 ? n - 1 : n);
		total += applied;
		snprintf(cname, sizeof(cname), "%s", rs[n - 1].name);
		cver = rs[n - 1].version;
		batches++;
		free(rs);
	}
	CU_ASSERT_EQUAL(batches, 3);        /* 20 rows by 7 */
	CU_ASSERT_EQUAL(total, 19);
	CU_ASSERT_EQUAL(store_key_usage(s, "v", 1, &c), 0);
	CU_ASSERT_EQUAL(c, 0);
	CU_ASSERT_EQUAL(store_key_usage(s, "v", 2, &c), 0);
	CU_ASSERT_EQUAL(c, 21);
	/* The row changed underneath kept its own wrapped key. */
	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "n00", 2, &r), 0);
	CU_ASSERT_EQUAL(r.meta.key_version, 2);
	CU_ASSERT_EQUAL(memcmp(r.wrapped, "0123456789abcdef", 16), 0);
	store_record_clear(&r);
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "n05", 1, &r), 0);
	CU_ASSERT_EQUAL(r.wrapped_len, sizeof(w2));
	CU_ASSERT_EQUAL(r.wrapped[0], 0xee);
	store_record_clear(&r);
	/* Deleted names were rewrapped too. */
	CU_ASSERT_EQUAL(store_secret_recover(s, "v", "n09", NULL), 0);
	CU_ASSERT_EQUAL(store_secret_get(s, "v", "n09", 1, &r), 0);
	CU_ASSERT_EQUAL(r.meta.key_version, 2);
	store_record_clear(&r);
	/* A row that holds another record than the one scanned (purged and
	 * written again, same name, version and key version, another data
	 * key) is left alone: the rewrap of the old data key would make the
	 * new record's body unreadable. */
	{
		static const uint8_t scanned[40] = { 0x41 };
		struct store_rewrap w = { "solo", 1, 1, 2, w2, sizeof(w2), scanned, sizeof(scanned) };
		struct store_record solo;
		mkrec(&solo, "solo", 1, 1, "restored record");
		CU_ASSERT_EQUAL(store_vault_import(s, "v", &solo, 1, NULL, 0), 0);
		store_record_clear(&solo);
		CU_ASSERT_EQUAL(store_rewrap_apply(s, "v", &w, 1, &applied), 0);
		CU_ASSERT_EQUAL(applied, 0);
		CU_ASSERT_EQUAL(store_secret_get(s, "v", "solo", 1, &r), 0);
		CU_ASSERT_EQUAL(r.meta.key_version, 1);
		CU_ASSERT_EQUAL(r.wrapped[0], 0x41);
		store_record_clear(&r);
		w.old_wrapped = NULL;
		CU_ASSERT_EQUAL(store_rewrap_apply(s, "v", &w, 1, &applied), -EINVAL);
	}
	/* A row whose wrapped key is too long to be one (the file edited
	 * outside keywarden) does not stop the scan: it comes back empty, for
	 * the rotation to leave. */
	{
		sqlite3 *db = NULL;
		int found = 0;
		CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
		sqlite3_busy_timeout(db, 5000);
		CU_ASSERT_EQUAL(sqlite3_exec(db, "UPDATE secrets SET wrapped = zeroblob(200) WHERE name = 'solo'",
		    NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
		CU_ASSERT_EQUAL_FATAL(store_rewrap_scan(s, "v", 2, NULL, 0, 0, &rs, &n), 0);
		for (i = 0; i < n; i++)
			if (strcmp(rs[i].name, "solo") == 0) {
				found = 1;
				CU_ASSERT_EQUAL(rs[i].wrapped_len, 0);
			}
		CU_ASSERT(found);
		free(rs);
	}
	store_close(s);
}

/* Export into an array of owned records. */
struct copy {
	struct store_record *r;
	size_t n;
	int stop_after;
	struct store_skey_mark m[8];
	size_t nm;
};

static int
copy_mark(void *arg, const struct store_skey_mark *m)
{
	struct copy *c = arg;

	if (c->nm == sizeof(c->m) / sizeof(c->m[0]))
		return -ENOSPC;
	c->m[c->nm++] = *m;
	return 0;
}

static int
copy_one(void *arg, const struct store_record *rec)
{
	struct copy *c = arg;
	struct store_record *x;

	if (c->stop_after && (int)c->n == c->stop_after)
		return -ECANCELED;
	c->r = realloc(c->r, (c->n + 1) * sizeof(*c->r));
	x = &c->r[c->n++];
	*x = *rec;
	x->body = malloc(rec->body_len + 1);
	memcpy(x->body, rec->body, rec->body_len);
	return 0;
}

static void
copy_free(struct copy *c)
{
	for (size_t i = 0; i < c->n; i++)
		store_record_clear(&c->r[i]);
	free(c->r);
	memset(c, 0, sizeof(*c));
}

static void
test_export_import(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_vault v;
	struct store_meta m, *ms = NULL;
	struct copy c = { 0 };
	uint64_t cnt;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(put(s, "v", "a", 1, 1, "a1", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "a", 2, 1, "a2", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "b", 1, 1, "b1", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "d", 1, 1, "d1", NULL), 0);
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "d", 10, 20, NULL), 0);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "sig", 2, 0, 77), 0);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "sig", 1, 0, 66), 0);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "other", 3, 0, 88), 0);
	CU_ASSERT_EQUAL(store_vault_export(s, "v", copy_one, copy_mark, &c), 0);
	CU_ASSERT_EQUAL_FATAL(c.n, 4);
	/* the disabled signing-key versions, by name and version, with their time */
	CU_ASSERT_EQUAL_FATAL(c.nm, 3);
	CU_ASSERT_STRING_EQUAL(c.m[0].name, "other");
	CU_ASSERT_EQUAL(c.m[0].since, 88);
	CU_ASSERT_STRING_EQUAL(c.m[1].name, "sig");
	CU_ASSERT_EQUAL(c.m[1].version, 1);
	CU_ASSERT_EQUAL(c.m[1].since, 66);
	CU_ASSERT_EQUAL(c.m[2].version, 2);
	CU_ASSERT_STRING_EQUAL(c.r[0].meta.name, "a");
	CU_ASSERT_EQUAL(c.r[1].meta.version, 2);
	CU_ASSERT_EQUAL(c.r[1].body_len, 2);
	CU_ASSERT_EQUAL(memcmp(c.r[1].body, "a2", 2), 0);
	CU_ASSERT_EQUAL(c.r[3].meta.deleted, 10);
	CU_ASSERT_EQUAL(c.r[3].meta.scheduled_purge, 20);
	CU_ASSERT_EQUAL(store_vault_export(s, "nope", copy_one, copy_mark, &c), KW_E_NOT_FOUND);
	{
		struct copy stop = { .stop_after = 2 };
		CU_ASSERT_EQUAL(store_vault_export(s, "v", copy_one, NULL, &stop), -ECANCELED);
		CU_ASSERT_EQUAL(stop.n, 2);
		copy_free(&stop);
	}

	memset(&v, 0, sizeof(v));
	snprintf(v.name, sizeof(v.name), "w");
	CU_ASSERT_EQUAL(store_vault_ensure(s, &v, NULL), 0);
	CU_ASSERT_EQUAL(store_vault_import(s, "nope", c.r, c.n, c.m, c.nm), KW_E_NOT_FOUND);
	/* w already has sig version 1 disabled, since another time: kept */
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "w", "sig", 1, 0, 5), 0);
	CU_ASSERT_EQUAL(store_vault_import(s, "w", c.r, c.n, c.m, c.nm), 0);
	{
		struct copy w = { 0 };
		uint32_t *dis = NULL;
		size_t nd = 0;
		CU_ASSERT_EQUAL(store_skey_disabled(s, "w", "sig", &dis, &nd), 0);
		CU_ASSERT_EQUAL_FATAL(nd, 2);
		CU_ASSERT_EQUAL(dis[0], 1);
		CU_ASSERT_EQUAL(dis[1], 2);
		free(dis);
		CU_ASSERT_EQUAL(store_vault_export(s, "w", copy_one, copy_mark, &w), 0);
		CU_ASSERT_EQUAL_FATAL(w.nm, 3);
		CU_ASSERT_EQUAL(w.m[1].since, 5);
		CU_ASSERT_EQUAL(w.m[2].since, 77);
		copy_free(&w);
	}
	CU_ASSERT_EQUAL(store_secret_list(s, "w", NULL, NULL, 0, &ms, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(ms[0].name, "a");
	CU_ASSERT_EQUAL(ms[0].version, 2);
	CU_ASSERT_EQUAL(ms[0].created, 1002);
	CU_ASSERT_STRING_EQUAL(ms[0].tags, "{\"env\":\"test\"}");
	free(ms);
	CU_ASSERT_EQUAL(store_deleted_get(s, "w", "d", &m), 0);
	CU_ASSERT_EQUAL(m.deleted, 10);
	CU_ASSERT_EQUAL(m.scheduled_purge, 20);
	{
		struct store_record r;
		memset(&r, 0, sizeof(r));
		CU_ASSERT_EQUAL(store_secret_get(s, "w", "a", 1, &r), 0);
		CU_ASSERT_EQUAL(r.body_len, 2);
		CU_ASSERT_EQUAL(memcmp(r.body, "a1", 2), 0);
		CU_ASSERT_EQUAL(memcmp(r.nonce, c.r[0].nonce, 12), 0);
		store_record_clear(&r);
	}
	/* Again: every name exists (even the deleted one): nothing written. */
	CU_ASSERT_EQUAL(store_vault_import(s, "w", c.r + 3, 1, NULL, 0), KW_E_CONFLICT);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_CONFLICT), "'d'"));

	/* Into a third vault where only the last name exists: all or nothing. */
	snprintf(v.name, sizeof(v.name), "x");
	CU_ASSERT_EQUAL(store_vault_ensure(s, &v, NULL), 0);
	CU_ASSERT_EQUAL(put(s, "x", "d", 1, 1, "mine", NULL), 0);
	CU_ASSERT_EQUAL(store_vault_import(s, "x", c.r, c.n, c.m, c.nm), KW_E_CONFLICT);
	{
		/* all or nothing: the marks were not written either */
		uint32_t *dis = NULL;
		size_t nd = 1;
		CU_ASSERT_EQUAL(store_skey_disabled(s, "x", "sig", &dis, &nd), 0);
		CU_ASSERT_EQUAL(nd, 0);
		free(dis);
	}
	{
		/* a mark with a bad name is refused before anything is written */
		struct store_skey_mark bad = { .version = 1 };
		CU_ASSERT_EQUAL(store_vault_import(s, "x", NULL, 0, &bad, 1), -EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(-EINVAL), "disabled signing key 0"));
	}
	CU_ASSERT_EQUAL(store_key_usage(s, "x", 1, &cnt), 0);
	CU_ASSERT_EQUAL(cnt, 1);
	/* A record twice in one batch: all or nothing again. */
	{
		struct store_record two[3] = { c.r[0], c.r[1], c.r[0] };
		CU_ASSERT_EQUAL(store_vault_import(s, "x", two, 3, NULL, 0), KW_E_CONFLICT);
		CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_CONFLICT), "twice"));
	}
	CU_ASSERT_EQUAL(store_key_usage(s, "x", 1, &cnt), 0);
	CU_ASSERT_EQUAL(cnt, 1);
	CU_ASSERT_EQUAL(store_secret_list(s, "x", NULL, NULL, 0, &ms, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	free(ms);
	copy_free(&c);
	store_close(s);
}

static void
test_reopen(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct store_vault v;
	struct store_key *ks = NULL;
	struct store_meta m;
	uint64_t cur = 0;
	size_t n;
	int ver = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(put(s, "v", "p", 1, 1, "persist", NULL), 0);
	CU_ASSERT_EQUAL(put(s, "v", "q", 1, 1, "q", NULL), 0);
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "q", 5, 6, NULL), 0);
	store_close(s);
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(store_ping(s), 0);
	CU_ASSERT_EQUAL(store_schema_version(s, &ver), 0);
	CU_ASSERT_EQUAL(ver, 3);
	CU_ASSERT_EQUAL(store_vault_get(s, "v", &v), 0);
	CU_ASSERT_EQUAL(v.key_version, 1);
	CU_ASSERT_EQUAL(v.retention_days, 7);
	CU_ASSERT_EQUAL(store_key_list(s, "v", &ks, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	free(ks);
	CU_ASSERT(body_is(s, "p", 0, "persist"));
	CU_ASSERT_EQUAL(store_secret_current(s, "v", "p", &cur), 0);
	CU_ASSERT_EQUAL(cur, 1);
	CU_ASSERT_EQUAL(store_deleted_get(s, "v", "q", &m), 0);
	CU_ASSERT_EQUAL(m.scheduled_purge, 6);
	store_close(s);
}

static void
test_schema(void)
{
	char path[300], url[320];
	struct store_options o;
	struct store *s = NULL;
	sqlite3 *db = NULL;
	FILE *f;
	int e;

	db_path(path, sizeof(path));
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	store_close(s);
	s = NULL;
	/* The version is a row of kw_schema, and the file is in WAL mode. */
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	{
		sqlite3_stmt *st = NULL;
		CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, "SELECT version FROM kw_schema", -1, &st, NULL), SQLITE_OK);
		CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
		CU_ASSERT_EQUAL(sqlite3_column_int(st, 0), 3);
		sqlite3_finalize(st);
		CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
		CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
		CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 0), "wal");
		sqlite3_finalize(st);
	}
	CU_ASSERT_EQUAL(sqlite3_exec(db, "UPDATE kw_schema SET version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	memset(&o, 0, sizeof(o));
	o.url = path;            /* a plain path works too */
	e = store_open(&o, &s);
	CU_ASSERT_EQUAL(e, KW_E_STORE);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), "schema version 99"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), path));

	/* An SQLite file that is not ours. */
	db_path(path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	o.url = path;
	CU_ASSERT_EQUAL(store_open(&o, &s), KW_E_STORE);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_STORE), "not a keywarden store"));
	/* and it was left as it was: not switched to WAL */
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	{
		sqlite3_stmt *st = NULL;
		CU_ASSERT_EQUAL(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
		CU_ASSERT_EQUAL(sqlite3_step(st), SQLITE_ROW);
		CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(st, 0), "delete");
		sqlite3_finalize(st);
	}
	sqlite3_close(db);

	/* Not a database at all. */
	db_path(path, sizeof(path));
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite database, just text. ", f);
	fclose(f);
	CU_ASSERT_EQUAL(store_open(&o, &s), KW_E_STORE);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_STORE), "not a database"));

	/* A directory that does not exist. */
	snprintf(url, sizeof(url), "sqlite:%s/missing/kw.db", dir);
	o.url = url;
	CU_ASSERT_EQUAL(store_open(&o, &s), KW_E_STORE);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_STORE), "missing/kw.db"));
}

/* A store of schema version 1 (before signing keys could be disabled) is
 * migrated at open, its records kept; the disabled versions of signing
 * keys are recorded, listed per key and cleared. */
static void
test_migrate_v1(void)
{
	char path[512];
	struct store *s;
	sqlite3 *db = NULL;
	uint32_t *dis = NULL;
	size_t n = 9;
	int version = 0;

	s = fresh(path, sizeof(path));
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(put(s, "v", "kept", 1, 1, "body one", NULL), 0);
	store_close(s);
	/* Back to version 1's schema, as a keywarden of then left it. */
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "DROP TABLE signing_key_disabled; DROP TABLE kw_instance; "
	    "UPDATE kw_schema SET version = 1", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(store_schema_version(s, &version), 0);
	CU_ASSERT_EQUAL(version, 3);
	CU_ASSERT(body_is(s, "kept", 0, "body one"));
	CU_ASSERT_EQUAL(store_skey_disabled(s, "v", "k", &dis, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(dis);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "k", 3, 0, 100), 0);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "k", 1, 0, 100), 0);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "k", 1, 0, 200), 0);   /* again: no change */
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "other", 2, 0, 100), 0);
	CU_ASSERT_EQUAL(store_skey_disabled(s, "v", "k", &dis, &n), 0);
	CU_ASSERT_FATAL(n == 2 && dis != NULL);
	CU_ASSERT(dis[0] == 1 && dis[1] == 3);
	free(dis);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "k", 1, 1, 300), 0);
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "v", "k", 7, 1, 300), 0);   /* never disabled */
	CU_ASSERT_EQUAL(store_skey_disabled(s, "v", "k", &dis, &n), 0);
	CU_ASSERT(n == 1 && dis != NULL && dis[0] == 3);
	free(dis);
	/* the vault must exist; names and versions are checked */
	CU_ASSERT_EQUAL(store_skey_set_enabled(s, "nope", "k", 1, 0, 1), KW_E_NOT_FOUND);
	CU_ASSERT_NOT_EQUAL(store_skey_set_enabled(s, "v", "", 1, 0, 1), 0);
	CU_ASSERT_NOT_EQUAL(store_skey_set_enabled(s, "v", "k", 0, 0, 1), 0);
	store_close(s);
}

/* The daemon opens its store exclusively: a second exclusive open (another
 * daemon) is refused, naming the file; one that does not ask (a backup, a
 * reader) is not; once the first closes, the store opens again. */
static void
test_exclusive(void)
{
	struct store_options o;
	struct store *a = NULL, *b = NULL, *c = NULL;
	char path[512], url[600];
	int e;

	db_path(path, sizeof(path));
	snprintf(url, sizeof(url), "sqlite:%s", path);
	memset(&o, 0, sizeof(o));
	o.url = url;
	o.exclusive = 1;
	CU_ASSERT_EQUAL_FATAL(store_open(&o, &a), 0);
	e = store_open(&o, &b);
	CU_ASSERT_EQUAL(e, KW_E_STORE);
	CU_ASSERT_PTR_NULL(b);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), "held by another keywardend"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), path));
	o.exclusive = 0;
	CU_ASSERT_EQUAL(store_open(&o, &c), 0);
	CU_ASSERT_EQUAL(store_ping(c), 0);
	store_close(c);
	/* The first one still works: the refused open took nothing from it. */
	CU_ASSERT_EQUAL(store_ping(a), 0);
	store_close(a);
	o.exclusive = 1;
	CU_ASSERT_EQUAL(store_open(&o, &b), 0);
	store_close(b);
}

static void
test_url(void)
{
	struct store_options o;
	struct store *s = NULL;
	char url[320];
	int e;

	memset(&o, 0, sizeof(o));
	o.url = "postgresql://kw:hunter2@db.example/kw";
	e = store_open(&o, &s);
	CU_ASSERT_EQUAL(e, KW_E_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), "not built"));
	CU_ASSERT_PTR_NULL(strstr(kw_errdetail(e), "hunter2"));
	o.url = "mysql://x/y";
	CU_ASSERT_EQUAL(store_open(&o, &s), KW_E_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_CONFIG), "mysql"));
	o.url = "sqlite:";
	CU_ASSERT_EQUAL(store_open(&o, &s), KW_E_CONFIG);
	o.url = NULL;
	CU_ASSERT_EQUAL(store_open(&o, &s), KW_E_CONFIG);
	CU_ASSERT_PTR_NULL(s);
	snprintf(url, sizeof(url), "sqlite://%s/url.db", dir);
	o.url = url;
	CU_ASSERT_EQUAL_FATAL(store_open(&o, &s), 0);
	CU_ASSERT_EQUAL(store_ping(s), 0);
	store_close(s);
	snprintf(url, sizeof(url), "%s/url.db", dir);
	CU_ASSERT_EQUAL(access(url, F_OK), 0);
	{
		struct stat sb;
		CU_ASSERT_EQUAL(stat(url, &sb), 0);
		CU_ASSERT_EQUAL(sb.st_mode & 077, 0);    /* private from the start */
	}
}

/* ---- threads ------------------------------------------------------------------------------ */

#define THREADS 8
#define OPS 1000
#define TNAMES 16

struct worker {
	struct store *s;
	unsigned seed;
	unsigned puts;
	unsigned errors;
};

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	char name[16];

	for (int i = 0; i < OPS; i++) {
		unsigned x = (unsigned)rand_r(&w->seed);
		snprintf(name, sizeof(name), "t%02u", x % TNAMES);
		if (x & 0x100) {
			for (;;) {
				uint64_t cur = 0;
				int e;
				if (store_secret_current(w->s, "v", name, &cur) != 0) {
					w->errors++;
					break;
				}
				e = put(w->s, "v", name, cur + 1, 1, name, NULL);
				if (e == 0) {
					w->puts++;
					break;
				}
				if (e != KW_E_CONFLICT) {
					fprintf(stderr, "put: %s\n", kw_errdetail(e));
					w->errors++;
					break;
				}
			}
		} else {
			struct store_record r;
			int e;
			memset(&r, 0, sizeof(r));
			e = store_secret_get(w->s, "v", name, 0, &r);
			if (e == 0 && (r.body_len != strlen(name) || memcmp(r.body, name, r.body_len) != 0))
				w->errors++;
			else if (e != 0 && e != KW_E_NOT_FOUND)
				w->errors++;
			store_record_clear(&r);
		}
	}
	return NULL;
}

static void
test_threads(void)
{
	char path[300], name[16];
	struct store *s = fresh(path, sizeof(path));
	struct worker w[THREADS];
	pthread_t t[THREADS];
	unsigned puts = 0, errors = 0;
	uint64_t versions = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .s = s, .seed = 1234u + (unsigned)i };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		puts += w[i].puts;
		errors += w[i].errors;
	}
	CU_ASSERT_EQUAL(errors, 0);
	CU_ASSERT(puts > THREADS * OPS / 4);
	/* No lost version and no gap: each name has exactly 1..N. */
	for (int i = 0; i < TNAMES; i++) {
		struct store_meta *ms = NULL;
		size_t n = 0;
		snprintf(name, sizeof(name), "t%02d", i);
		if (store_secret_versions(s, "v", name, &ms, &n) != 0)
			continue;
		for (size_t j = 0; j < n; j++)
			CU_ASSERT_EQUAL(ms[j].version, n - j);
		versions += n;
		free(ms);
	}
	CU_ASSERT_EQUAL(versions, puts);
	store_close(s);
}

/* A writer thread that puts version 2 of "g" and says when it is done. */
struct group_writer {
	struct store *s;
	int err;
};

static void *
group_write(void *arg)
{
	struct group_writer *g = arg;
	uint64_t cur = 0;

	g->err = put(g->s, "v", "g", 2, 1, "two", &cur);
	return NULL;
}

/* A group of reads sees one snapshot: a write committed by another
 * thread after the group's first read is not seen inside the group, and
 * is seen after it; the group's own connection goes back to the pool. */
static void
test_read_group(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	struct group_writer g;
	pthread_t t;
	uint64_t cur = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(put(s, "v", "g", 1, 1, "one", &cur), 0);
	CU_ASSERT_EQUAL(store_read_begin(s), 0);
	CU_ASSERT(body_is(s, "g", 0, "one"));
	g = (struct group_writer){ .s = s };
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, group_write, &g), 0);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(g.err, 0);                 /* the group does not block writers */
	CU_ASSERT(body_is(s, "g", 0, "one"));       /* the group's snapshot */
	CU_ASSERT(!body_is(s, "g", 2, "two"));
	store_read_end(s);
	CU_ASSERT(body_is(s, "g", 0, "two"));       /* and after it, the write */
	/* A new group starts from a new snapshot; ending twice is harmless. */
	CU_ASSERT_EQUAL(store_read_begin(s), 0);
	CU_ASSERT(body_is(s, "g", 2, "two"));
	store_read_end(s);
	store_read_end(s);
	/* Writes after the group work on the same thread. */
	CU_ASSERT_EQUAL(put(s, "v", "g", 3, 1, "three", &cur), 0);
	CU_ASSERT(body_is(s, "g", 0, "three"));
	store_close(s);
}

/* A write lock held by another process-like connection: busy, then fine. */
static void
test_busy(void)
{
	char path[300];
	struct store *s = fresh(path, sizeof(path));
	sqlite3 *db = NULL;
	int e;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	store_close(s);
	s = open_at(path, 0, 200);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	e = put(s, "v", "b", 1, 1, "x", NULL);
	CU_ASSERT_EQUAL(e, KW_E_UNAVAILABLE);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), "200 ms"));
	/* Readers are not blocked by a writer (WAL). */
	CU_ASSERT(!body_is(s, "b", 0, "x"));
	CU_ASSERT_EQUAL(store_ping(s), 0);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	CU_ASSERT_EQUAL(put(s, "v", "b", 1, 1, "x", NULL), 0);
	store_close(s);
}

/* A full database: KW_E_STORE that says so, and nothing half-written. */
static void
test_full(void)
{
	char path[300], body[3000], name[16];
	struct store *s = fresh(path, sizeof(path));
	uint64_t cur = 0;
	int e = 0, written = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	store_close(s);
	s = open_at(path, 256 * 1024, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	memset(body, 'b', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%04d", i);
		if ((e = put(s, "v", name, 1, 1, body, NULL)) != 0)
			break;
		written++;
	}
	CU_ASSERT_EQUAL(e, KW_E_STORE);
	CU_ASSERT(written > 10);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), "full"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(e), path));
	/* The failed write left nothing behind; the others are intact. */
	snprintf(name, sizeof(name), "f%04d", written);
	CU_ASSERT_EQUAL(store_secret_current(s, "v", name, &cur), 0);
	CU_ASSERT_EQUAL(cur, 0);
	CU_ASSERT(body_is(s, "f0000", 0, body));
	snprintf(name, sizeof(name), "f%04d", written - 1);
	CU_ASSERT(body_is(s, name, 0, body));
	/* Room made by a purge is usable again. */
	CU_ASSERT_EQUAL(store_secret_delete(s, "v", "f0000", 1, 2, NULL), 0);
	CU_ASSERT_EQUAL(store_secret_purge(s, "v", "f0000", 0), 0);
	CU_ASSERT_EQUAL(put(s, "v", "small", 1, 1, "x", NULL), 0);
	store_close(s);
	/* Without the limit, the file opens and is whole. */
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT(body_is(s, name, 0, body));
	CU_ASSERT(body_is(s, "small", 0, "x"));
	store_close(s);
}

/* A writer killed with SIGKILL in the middle: every put it was told had
 * succeeded is there after reopening, and the versions have no gap. */
static void
test_crash(void)
{
	char path[300], body[32];
	struct store *s = fresh(path, sizeof(path));
	uint64_t acked = 0, v, cur = 0;
	int fds[2];
	pid_t pid;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	store_close(s);
	CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		s = open_at(path, 0, 0);
		for (v = 1; s != NULL; v++) {
			snprintf(body, sizeof(body), "body-%llu", (unsigned long long)v);
			if (put(s, "v", "c", v, 1, body, NULL) != 0)
				break;
			if (write(fds[1], &v, sizeof(v)) != sizeof(v))
				break;
		}
		_exit(1);
	}
	close(fds[1]);
	while (acked < 300 && read(fds[0], &v, sizeof(v)) == sizeof(v))
		acked = v;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (read(fds[0], &v, sizeof(v)) == sizeof(v))
		acked = v;
	close(fds[0]);
	CU_ASSERT(acked >= 300);

	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(store_secret_current(s, "v", "c", &cur), 0);
	CU_ASSERT(cur >= acked);
	CU_ASSERT(cur <= acked + 1);    /* at most the one not yet acknowledged */
	for (v = 1; v <= cur; v++) {
		snprintf(body, sizeof(body), "body-%llu", (unsigned long long)v);
		CU_ASSERT(body_is(s, "c", v, body));
	}
	store_close(s);
}

/* In a child without root's override: a read-only file, then a read-only
 * directory.  0 when both fail as they should. */
static int
readonly_child(const char *sub, const char *path)
{
	struct store_options o;
	struct store *s = NULL;
	int e;

	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		return 3;
	memset(&o, 0, sizeof(o));
	o.url = path;
	if (chmod(path, 0400) != 0)
		return 4;
	e = store_open(&o, &s);
	if (e != KW_E_STORE || strstr(kw_errdetail(e), "Permission denied") == NULL ||
	    strstr(kw_errdetail(e), path) == NULL) {
		fprintf(stderr, "read-only file: %d %s\n", e, kw_errdetail(e));
		return 5;
	}
	if (chmod(path, 0600) != 0 || chmod(sub, 0500) != 0)
		return 6;
	e = store_open(&o, &s);
	chmod(sub, 0700);
	if (e != KW_E_STORE || strstr(kw_errdetail(e), "cannot be written") == NULL) {
		fprintf(stderr, "read-only directory: %d %s\n", e, kw_errdetail(e));
		return 7;
	}
	return 0;
}

static void
test_readonly(void)
{
	char sub[300], path[320];
	struct store *s;
	int st = -1;
	pid_t pid;

	snprintf(sub, sizeof(sub), "%s/ro", dir);
	CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/kw.db", sub);
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	store_close(s);
	if (geteuid() == 0) {
		/* The child runs as nobody: let it through the test directory. */
		CU_ASSERT_EQUAL_FATAL(chmod(dir, 0711), 0);
		CU_ASSERT_EQUAL_FATAL(chown(sub, 65534, 65534), 0);
		CU_ASSERT_EQUAL_FATAL(chown(path, 65534, 65534), 0);
	}
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		_exit(readonly_child(sub, path));
	waitpid(pid, &st, 0);
	chmod(dir, 0700);
	CU_ASSERT(WIFEXITED(st));
	CU_ASSERT_EQUAL(WEXITSTATUS(st), 0);
}

/* Pages overwritten on disk: reads fail with KW_E_STORE naming the file
 * and saying it is damaged, never with garbage or a crash. */
static void
test_corrupt(void)
{
	char path[300], name[16], junk[4096];
	struct store *s = fresh(path, sizeof(path));
	int damaged = 0, other = 0;
	FILE *f;
	long size;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "c%03d", i);
		CU_ASSERT_EQUAL(put(s, "v", name, 1, 1, "some body text that fills pages", NULL), 0);
	}
	store_close(s);
	f = fopen(path, "r+");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	CU_ASSERT_FATAL(size > 8 * 4096);
	memset(junk, 0xa5, sizeof(junk));
	for (long off = 2 * 4096; off < size; off += 2 * 4096) {
		fseek(f, off, SEEK_SET);
		fwrite(junk, 1, sizeof(junk), f);
	}
	fclose(f);
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (int i = 0; i < 300; i++) {
		struct store_record r;
		int e;
		memset(&r, 0, sizeof(r));
		snprintf(name, sizeof(name), "c%03d", i);
		e = store_secret_get(s, "v", name, 0, &r);
		if (e == KW_E_STORE && strstr(kw_errdetail(e), "damaged") != NULL &&
		    strstr(kw_errdetail(e), path) != NULL)
			damaged++;
		else if (e != 0 && e != KW_E_NOT_FOUND)
			other++;
		store_record_clear(&r);
	}
	CU_ASSERT(damaged > 0);
	CU_ASSERT_EQUAL(other, 0);
	store_close(s);
}

struct filler {
	struct store *s;
	int id;
	int ok, full, other;
};

static void *
filler_run(void *arg)
{
	struct filler *f = arg;
	char name[16], body[2000];

	memset(body, 'f', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	for (int i = 0; i < 400; i++) {
		/* Small and large puts mixed: a large one that does not fit
		 * must not take the small ones of its group commit with it. */
		snprintf(name, sizeof(name), "g%d-%03d", f->id, i);
		int e = put(f->s, "v", name, 1, 1, (i % 2) ? "small" : body, NULL);
		if (e == 0)
			f->ok++;
		else if (e == KW_E_STORE && strstr(kw_errdetail(e), "full") != NULL)
			f->full++;
		else
			f->other++;
	}
	return NULL;
}

/* Four writers into a database that fills up: every put either is whole
 * and readable or failed as "full"; none is half-written. */
static void
test_full_threads(void)
{
	char path[300], name[16];
	struct store *s = fresh(path, sizeof(path));
	struct filler f[4];
	pthread_t t[4];
	int ok = 0, full = 0, other = 0, found = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	store_close(s);
	s = open_at(path, 512 * 1024, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	for (int i = 0; i < 4; i++) {
		f[i] = (struct filler){ .s = s, .id = i };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, filler_run, &f[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ok += f[i].ok;
		full += f[i].full;
		other += f[i].other;
	}
	CU_ASSERT_EQUAL(other, 0);
	if (getenv("KW_TEST_VERBOSE") != NULL)
		fprintf(stderr, "\n  %d puts written, %d refused as full\n", ok, full);
	CU_ASSERT(full > 0);
	CU_ASSERT(ok > 0);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 400; j++) {
			struct store_record r;
			memset(&r, 0, sizeof(r));
			snprintf(name, sizeof(name), "g%d-%03d", i, j);
			if (store_secret_get(s, "v", name, 0, &r) == 0) {
				found++;
				CU_ASSERT_EQUAL(r.body_len, (j % 2) ? 5u : 1999u);
			}
			store_record_clear(&r);
		}
	CU_ASSERT_EQUAL(found, ok);
	store_close(s);
}

/* Every store has its own identity, drawn once, kept across reopens, and
 * given to a store of schema 2 when it is migrated. */
static void
test_instance_id(void)
{
	char path[512], path2[512];
	struct store *s, *s2;
	sqlite3 *db = NULL;
	uint8_t a[STORE_INSTANCE_LEN], b[STORE_INSTANCE_LEN], c[STORE_INSTANCE_LEN],
	    zero[STORE_INSTANCE_LEN] = { 0 };
	int version = 0;

	s = fresh(path, sizeof(path));
	s2 = fresh(path2, sizeof(path2));
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s2);
	CU_ASSERT_EQUAL(store_instance_id(s, a), 0);
	CU_ASSERT_EQUAL(store_instance_id(s2, b), 0);
	CU_ASSERT(memcmp(a, b, sizeof(a)) != 0);
	CU_ASSERT(memcmp(a, zero, sizeof(a)) != 0);
	store_close(s2);
	store_close(s);
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(store_instance_id(s, c), 0);
	CU_ASSERT(memcmp(a, c, sizeof(a)) == 0);
	store_close(s);
	/* A store of schema 2 gets one at its migration. */
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "DROP TABLE kw_instance; UPDATE kw_schema SET version = 2",
	    NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	s = open_at(path, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(store_schema_version(s, &version), 0);
	CU_ASSERT_EQUAL(version, 3);
	CU_ASSERT_EQUAL(store_instance_id(s, c), 0);
	CU_ASSERT(memcmp(c, zero, sizeof(c)) != 0);
	CU_ASSERT(memcmp(a, c, sizeof(a)) != 0);
	store_close(s);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "put, get, current, versions", test_put_get },
		{ "a group of reads sees one snapshot", test_read_group },
		{ "check-and-set conflicts", test_cas },
		{ "list: prefix with % and _, pages", test_list },
		{ "update attributes, tags validated", test_update },
		{ "soft delete, recover, purge", test_delete },
		{ "vaults: ensure, get, set, list", test_vaults },
		{ "master keys: add, current, state, usage", test_keys },
		{ "rewrap batches with writes underneath", test_rewrap },
		{ "export and all-or-nothing import", test_export_import },
		{ "everything survives close and reopen", test_reopen },
		{ "schema version recorded, newer refused", test_schema },
		{ "an exclusive open keeps out another, not a reader", test_exclusive },
		{ "schema 1 migrates to 2; signing keys' disabled versions", test_migrate_v1 },
		{ "each store has its own identity; schema 2 migrates to 3", test_instance_id },
		{ "URLs: sqlite, plain path, postgresql not built", test_url },
		{ "8 threads of mixed puts and gets", test_threads },
		{ "busy beyond the timeout is unavailable", test_busy },
		{ "a full database is a clear store error", test_full },
		{ "a full database under concurrent writers", test_full_threads },
		{ "a writer killed mid-way loses no acknowledged put", test_crash },
		{ "a read-only file or directory is a clear store error", test_readonly },
		{ "a damaged file is a clear store error", test_corrupt },
		{ NULL, NULL }
	};
	int r;

	snprintf(dir, sizeof(dir), "%s/kwstore.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	r = kwt_cunit_main("store", NULL, NULL, cases);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return r;
}
