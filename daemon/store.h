/*
 * store.h - the on-disk store of keywarden: an interface, engines behind it.
 *
 * The store holds vaults, the master-key versions each vault has used, and
 * secret versions.  It never sees a plaintext value or a plaintext data key:
 * a record carries the data key wrapped by the token (pkcs11/) and the body
 * encrypted by the daemon under that key.  Crypto is the caller's business;
 * the store is about durability, transactions, and lookups.
 *
 * Engines: SQLite now ("sqlite:" or a plain path), PostgreSQL later.  Each
 * engine implements struct store_ops; the functions below dispatch to it.
 *
 * Threads: a struct store is shared by every thread.  Each call runs on a
 * connection that belongs to the calling thread for the length of the call
 * (the engine keeps a pool: opts.connections should be at least the number
 * of threads that call).  A call that returns 0 for a write has made the
 * write durable.  Concurrent puts may share one commit.
 *
 * Errors: 0 or a negative kw_error code, with a detail in kw_errdetail():
 * KW_E_NOT_FOUND (no such vault / secret / version), KW_E_CONFLICT (version
 * check failed, name deleted or not deleted), KW_E_STORE (the engine failed:
 * I/O, corruption, full disk), KW_E_UNAVAILABLE (busy beyond the timeout).
 * The store does not log.
 *
 * Times are microseconds since the Unix epoch, UTC; 0 means "not set".
 */
#ifndef KW_STORE_H
#define KW_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_VAULT_MAX 64
#define STORE_NAME_MAX 256
#define STORE_CTYPE_MAX 128
#define STORE_WRAPPED_MAX 160   /* = P11_WRAPPED_MAX */
#define STORE_TAGS_MAX 4096     /* tags as compact JSON text */

struct store;

struct store_vault {
	char name[STORE_VAULT_MAX + 1];
	uint32_t key_version;        /* current master-key version for new writes */
	int purge_protection;        /* 1: no purge before scheduled_purge */
	uint32_t retention_days;     /* soft-delete recovery window */
	int64_t created;
};

enum store_key_state {
	STORE_KEY_ACTIVE = 0,        /* may wrap (if current) and unwrap */
	STORE_KEY_RETIRED = 1,       /* unwraps nothing; token object may still exist */
	STORE_KEY_DESTROYED = 2,     /* token object removed */
};

struct store_key {
	uint32_t version;
	uint8_t key_id[16];          /* the CKA_ID in the token */
	enum store_key_state state;
	int64_t created;
	int64_t retired;
};

/* Metadata of one secret version: everything but the value. */
struct store_meta {
	char name[STORE_NAME_MAX + 1];
	uint64_t version;
	int64_t created;
	int64_t updated;
	int enabled;
	int64_t not_before;          /* 0: none */
	int64_t expires;             /* 0: none */
	char content_type[STORE_CTYPE_MAX + 1];
	char tags[STORE_TAGS_MAX + 1];   /* JSON object text, "{}" when none */
	uint32_t key_version;        /* master-key version wrapping the data key */
	int64_t deleted;             /* for deleted names: when; else 0 */
	int64_t scheduled_purge;     /* for deleted names; else 0 */
};

/* One secret version as stored. */
struct store_record {
	struct store_meta meta;
	uint8_t wrapped[STORE_WRAPPED_MAX];   /* data key, wrapped by the token */
	size_t wrapped_len;
	uint8_t nonce[12];                    /* AES-256-GCM nonce of the body */
	uint8_t *body;                        /* ciphertext || 16-byte tag; malloc'd */
	size_t body_len;
};

/* Free what a record owns (the body); the struct itself is the caller's. */
void store_record_clear(struct store_record *r);

/* ---- life ----------------------------------------------------------------- */

struct store_options {
	const char *url;        /* "sqlite:/path/to/keywarden.db" or a plain path */
	unsigned connections;   /* pool size, >= number of threads that call; 0 = 8 */
	unsigned busy_timeout_ms; /* wait for a lock at most this long; 0 = 5000 */
	uint64_t max_bytes;     /* 0: no limit; a write that would grow the
	                           database beyond it fails as on a full disk */
	int exclusive;          /* the daemon's: hold the store for as long as it
	                           is open, and refuse one another process holds
	                           (readers and backups that do not ask for it
	                           are not kept out) */
};

/* Open (creating and migrating the schema as needed).  *out on success. */
int store_open(const struct store_options *opt, struct store **out);
void store_close(struct store *s);    /* accepts NULL */
int store_ping(struct store *s);      /* health: a trivial read */
int store_schema_version(struct store *s, int *version);

/* The store's identity: 16 random bytes drawn when it was created (or
 * migrated to schema 3), the same for every copy of it.  The token records
 * which store owns each vault's keys (daemon/vaults.c). */
#define STORE_INSTANCE_LEN 16
int store_instance_id(struct store *s, uint8_t id[STORE_INSTANCE_LEN]);

/* ---- vaults ----------------------------------------------------------------- */

/* Create the vault if absent with the given attributes (key_version 0: no
 * key yet); if present, leave it as it is.  *out (may be NULL) gets the
 * vault as stored. */
int store_vault_ensure(struct store *s, const struct store_vault *v,
    struct store_vault *out);
int store_vault_get(struct store *s, const char *name, struct store_vault *out);
/* Change purge_protection and retention_days (configuration reload). */
int store_vault_set_attrs(struct store *s, const struct store_vault *v);
/* *out malloc'd array sorted by name (free()); *n may be 0. */
int store_vault_list(struct store *s, struct store_vault **out, size_t *n);

/* Record a master-key version for the vault (state ACTIVE, whatever
 * k->state says).  KW_E_CONFLICT if the version exists, KW_E_NOT_FOUND if
 * the vault does not. */
int store_key_add(struct store *s, const char *vault, const struct store_key *k);
/* Make version current for new writes: KW_E_NOT_FOUND if it is not
 * recorded, KW_E_RETIRED if it is not ACTIVE. */
int store_key_set_current(struct store *s, const char *vault, uint32_t version);
/* Change a version's state; `retired` becomes `when` on leaving ACTIVE (and
 * is kept from RETIRED to DESTROYED).  KW_E_CONFLICT for the vault's current
 * version (make another current first), for leaving DESTROYED, or for leaving
 * ACTIVE while records are still wrapped under the version (counted in the
 * same transaction, so no write slips one in between). */
int store_key_set_state(struct store *s, const char *vault, uint32_t version,
    enum store_key_state state, int64_t when);
/* *out malloc'd, sorted by version. */
int store_key_list(struct store *s, const char *vault, struct store_key **out,
    size_t *n);
/* How many secret versions (deleted ones included) use the key version. */
int store_key_usage(struct store *s, const char *vault, uint32_t version,
    uint64_t *count);

/* ---- secrets ---------------------------------------------------------------- */

/* Insert rec as version rec->meta.version of rec->meta.name in the vault.
 * The write happens only if the name's current version is exactly
 * rec->meta.version - 1 (0: the name has no version yet) and the name is not
 * deleted; else KW_E_CONFLICT with the current version in *current (may be
 * NULL; 0 for a deleted name, with a detail that says it is deleted).
 * KW_E_NOT_FOUND if the vault does not exist; KW_E_FORMAT if the tags are
 * not a JSON object of strings; KW_E_RETIRED (nothing written) if the
 * record's master-key version is recorded but is not the vault's current
 * one (a rotation switched it, or it is retired or destroyed).  The
 * caller picks the version before encrypting because it is part of the
 * body's AAD, and retries on a conflict it did not ask for. */
int store_secret_put(struct store *s, const char *vault,
    const struct store_record *rec, uint64_t *current);

/* The current version of a live name (0: absent or deleted). */
int store_secret_current(struct store *s, const char *vault, const char *name,
    uint64_t *version);

/* Group the calling thread's next reads (store_secret_get and the other
 * reads, never a write) into one snapshot, taken at the first of them,
 * until store_read_end: a server that has several reads queued answers
 * them back to back without a transaction each.  Each read still sees
 * every write acknowledged before its request was taken from the queue,
 * provided the group starts after the requests were taken.  0, or an
 * error (then the reads go on one by one). */
int store_read_begin(struct store *s);
void store_read_end(struct store *s);

/* Read version (0: current) of a live (not deleted) name.  out->body is
 * malloc'd; release with store_record_clear(). */
int store_secret_get(struct store *s, const char *vault, const char *name,
    uint64_t version, struct store_record *out);

/* Every version of a live name, newest first.  *out malloc'd. */
int store_secret_versions(struct store *s, const char *vault, const char *name,
    struct store_meta **out, size_t *n);

/* Current-version metadata of every live name starting with prefix (NULL or
 * "" for all), sorted by name, at most limit entries after the name `after`
 * (NULL: from the start); limit 0: no limit.  *out malloc'd. */
int store_secret_list(struct store *s, const char *vault, const char *prefix,
    const char *after, size_t limit, struct store_meta **out, size_t *n);

/* Attributes a caller may change after the fact. */
enum {
	STORE_ATTR_ENABLED = 1 << 0,
	STORE_ATTR_NOT_BEFORE = 1 << 1,
	STORE_ATTR_EXPIRES = 1 << 2,
	STORE_ATTR_CONTENT_TYPE = 1 << 3,
	STORE_ATTR_TAGS = 1 << 4,
};
/* Change the attributes named in mask of version (0: current) of a live
 * name; sets updated = now.  *out (may be NULL) gets the new metadata. */
int store_secret_update(struct store *s, const char *vault, const char *name,
    uint64_t version, unsigned mask, const struct store_meta *attrs,
    int64_t now, struct store_meta *out);

/* Soft delete: the name and all its versions leave the live set;
 * scheduled_purge = now + retention.  KW_E_NOT_FOUND if not live. */
int store_secret_delete(struct store *s, const char *vault, const char *name,
    int64_t now, int64_t scheduled_purge, struct store_meta *out);
/* Deleted names of the vault, sorted by name (meta of their last version,
 * with deleted and scheduled_purge set). */
int store_deleted_list(struct store *s, const char *vault,
    struct store_meta **out, size_t *n);
int store_deleted_get(struct store *s, const char *vault, const char *name,
    struct store_meta *out);
/* Bring a deleted name back.  KW_E_NOT_FOUND if not deleted. */
int store_secret_recover(struct store *s, const char *vault, const char *name,
    struct store_meta *out);
/* Remove a deleted name and all its versions for good.  due_by non-zero: only
 * if its scheduled purge is not later (purge protection, checked in the same
 * statement, so that a recovery and a new delete in between cannot bring an
 * early purge).  KW_E_NOT_FOUND if not deleted, or not due. */
int store_secret_purge(struct store *s, const char *vault, const char *name, int64_t due_by);

/* ---- rotation (rewrap) -------------------------------------------------------- */

/* A record as a rotation needs it: where it is and its wrapped data key
 * (about 440 bytes, against 4.7 KB for a struct store_record). */
struct store_rewrap_rec {
	char name[STORE_NAME_MAX + 1];
	uint64_t version;
	uint32_t key_version;
	uint8_t wrapped[STORE_WRAPPED_MAX];
	size_t wrapped_len;
};

/* Up to limit records of the vault whose key_version != target, in a stable
 * order after the cursor (name, version) (NULL name: from the start).
 * Deleted names are included: their data keys are rewrapped too.
 * *out malloc'd (free()). */
/* (A record whose wrapped key is longer than STORE_WRAPPED_MAX comes back
 * with wrapped_len 0: the caller leaves it.) */
int store_rewrap_scan(struct store *s, const char *vault, uint32_t target,
    const char *after_name, uint64_t after_version, size_t limit,
    struct store_rewrap_rec **out, size_t *n);

struct store_rewrap {
	const char *name;
	uint64_t version;
	uint32_t old_key_version;     /* only updated if still this (concurrent safety) */
	uint32_t new_key_version;
	const uint8_t *wrapped;
	size_t wrapped_len;
	/* the wrapped key scanned: the row is only updated if it still holds
	 * it (a purge and a restore of the same name and version between the
	 * scan and the apply put another record, with another data key, in
	 * the row) */
	const uint8_t *old_wrapped;
	size_t old_wrapped_len;
};
/* Apply a batch in one transaction.  *applied = rows changed (a row whose
 * key version is no longer old_key_version, or whose wrapped key is no longer
 * old_wrapped, is left alone).  limit 0 in store_rewrap_scan: no limit. */
int store_rewrap_apply(struct store *s, const char *vault,
    const struct store_rewrap *batch, size_t n, size_t *applied);

/* ---- backup / restore ---------------------------------------------------------- */

/* A disabled version of a signing key, as a backup carries it. */
struct store_skey_mark {
	char name[STORE_NAME_MAX + 1];
	uint32_t version;
	int64_t since;
};

/* Call fn for every record (live and deleted, with body) of the vault, then
 * mark_fn (unless NULL) for every disabled signing-key version of the vault,
 * inside one read transaction, so the copy is consistent while writes go on.
 * A non-zero return from a callback stops the scan and is returned.
 * rec->body is lent for the call.  The callbacks run on the caller's thread,
 * which holds one of the pool's connections meanwhile.  KW_E_NOT_FOUND if the
 * vault does not exist. */
int store_vault_export(struct store *s, const char *vault,
    int (*fn)(void *arg, const struct store_record *rec),
    int (*mark_fn)(void *arg, const struct store_skey_mark *m), void *arg);
/* Insert records, and mark the signing-key versions in marks disabled, in one
 * transaction; KW_E_CONFLICT (nothing written) if any name already exists in
 * the vault (live or deleted) or a (name, version) appears twice, with the
 * name in kw_errdetail().  A record with meta.deleted set restores its name
 * as deleted.  A version already disabled keeps its mark and its time: marks
 * only disable, a restore never enables a version.  The vault must exist. */
int store_vault_import(struct store *s, const char *vault,
    const struct store_record *recs, size_t n,
    const struct store_skey_mark *marks, size_t nmarks);

/* ---- signing keys ------------------------------------------------------------- */

/* The key pairs live in the token (pkcs11/); the store keeps the one thing
 * the token cannot, since keywarden makes them non-modifiable: which
 * versions are disabled.  A version without a record is enabled.  Enabling
 * removes the record (as does destroying the version). */
int store_skey_set_enabled(struct store *s, const char *vault, const char *name,
    uint32_t version, int enabled, int64_t when);
/* The disabled versions of signing key name, ascending: *out malloc'd
 * (free()), NULL when *n is 0. */
int store_skey_disabled(struct store *s, const char *vault, const char *name,
    uint32_t **out, size_t *n);

#endif
