/*
 * store_engine.h - what a store engine implements (see store.h).
 *
 * store.c parses the URL, checks every argument once (lengths, versions,
 * tags), and dispatches to the engine chosen by the URL scheme through a
 * struct store_ops.  An engine may therefore assume: non-NULL pointers where
 * store.h does not allow NULL, names within their limits and NUL-terminated,
 * versions in 1..INT64_MAX, tags a JSON object of strings (or "": none).
 *
 * An engine follows store.h for results and errors: outputs written only on
 * success, a kw_fail() sentence for every failure, no logging.
 */
#ifndef KW_STORE_ENGINE_H
#define KW_STORE_ENGINE_H

#include "daemon/store.h"

struct store_engine;    /* defined by each engine */

struct store_ops {
	const char *name;       /* "sqlite" */
	/* location: the URL without the scheme (a path for SQLite). */
	int (*open)(const char *location, const struct store_options *opt,
	    struct store_engine **out);
	void (*close)(struct store_engine *e);
	int (*ping)(struct store_engine *e);
	int (*schema_version)(struct store_engine *e, int *version);
	int (*instance_id)(struct store_engine *e, uint8_t id[STORE_INSTANCE_LEN]);

	int (*vault_ensure)(struct store_engine *e, const struct store_vault *v,
	    struct store_vault *out);
	int (*vault_get)(struct store_engine *e, const char *name,
	    struct store_vault *out);
	int (*vault_set_attrs)(struct store_engine *e, const struct store_vault *v);
	int (*vault_list)(struct store_engine *e, struct store_vault **out, size_t *n);

	int (*key_add)(struct store_engine *e, const char *vault,
	    const struct store_key *k);
	int (*key_set_current)(struct store_engine *e, const char *vault,
	    uint32_t version);
	int (*key_set_state)(struct store_engine *e, const char *vault,
	    uint32_t version, enum store_key_state state, int64_t when);
	int (*key_list)(struct store_engine *e, const char *vault,
	    struct store_key **out, size_t *n);
	int (*key_usage)(struct store_engine *e, const char *vault,
	    uint32_t version, uint64_t *count);

	int (*secret_put)(struct store_engine *e, const char *vault,
	    const struct store_record *rec, uint64_t *current);
	int (*secret_current)(struct store_engine *e, const char *vault,
	    const char *name, uint64_t *version);
	int (*secret_get)(struct store_engine *e, const char *vault,
	    const char *name, uint64_t version, struct store_record *out);
	int (*secret_versions)(struct store_engine *e, const char *vault,
	    const char *name, struct store_meta **out, size_t *n);
	int (*secret_list)(struct store_engine *e, const char *vault,
	    const char *prefix, const char *after, size_t limit,
	    struct store_meta **out, size_t *n);
	int (*secret_update)(struct store_engine *e, const char *vault,
	    const char *name, uint64_t version, unsigned mask,
	    const struct store_meta *attrs, int64_t now, struct store_meta *out);
	int (*secret_delete)(struct store_engine *e, const char *vault,
	    const char *name, int64_t now, int64_t scheduled_purge,
	    struct store_meta *out);
	int (*deleted_list)(struct store_engine *e, const char *vault,
	    struct store_meta **out, size_t *n);
	int (*deleted_get)(struct store_engine *e, const char *vault,
	    const char *name, struct store_meta *out);
	int (*secret_recover)(struct store_engine *e, const char *vault,
	    const char *name, struct store_meta *out);
	int (*secret_purge)(struct store_engine *e, const char *vault,
	    const char *name, int64_t due_by);

	int (*rewrap_scan)(struct store_engine *e, const char *vault,
	    uint32_t target, const char *after_name, uint64_t after_version,
	    size_t limit, struct store_rewrap_rec **out, size_t *n);
	int (*rewrap_apply)(struct store_engine *e, const char *vault,
	    const struct store_rewrap *batch, size_t n, size_t *applied);

	int (*vault_export)(struct store_engine *e, const char *vault,
	    int (*fn)(void *arg, const struct store_record *rec),
	    int (*mark_fn)(void *arg, const struct store_skey_mark *m), void *arg);
	int (*vault_import)(struct store_engine *e, const char *vault,
	    const struct store_record *recs, size_t n,
	    const struct store_skey_mark *marks, size_t nmarks);

	int (*skey_set_enabled)(struct store_engine *e, const char *vault,
	    const char *name, uint32_t version, int enabled, int64_t when);
	int (*skey_disabled)(struct store_engine *e, const char *vault,
	    const char *name, uint32_t **out, size_t *n);

	/* Optional (NULL: reads are not grouped).  The calling thread's
	 * reads, until read_end, share one snapshot taken at the first of
	 * them; no write may come between. */
	int (*read_begin)(struct store_engine *e);
	void (*read_end)(struct store_engine *e);
};

extern const struct store_ops store_sqlite_ops;

/* The tags text to store: "{}" for "" (none), else tags as given. */
const char *store_tags_text(const char *tags);

#endif
