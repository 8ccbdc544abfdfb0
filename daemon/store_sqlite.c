/*
 * store_sqlite.c - the SQLite engine of the store.
 *
 * One database file in WAL mode with synchronous=FULL: a write that
 * returned 0 survives a crash or a power cut.  Foreign keys are on.  The
 * schema version is a row of kw_schema; opening migrates an older file step
 * by step, in one transaction, and refuses a newer one.
 *
 * Tables: vaults, vault_keys (the master-key versions of a vault), names
 * (one row per secret name: its current version and its soft-delete state),
 * secrets (one row per version: wrapped data key, nonce, encrypted body,
 * attributes, and the master-key version, indexed for rotation).
 *
 * Threads: a pool of connections, each used by one thread for the length of
 * one call, each with its statements prepared once on first use and reused.
 * Writers of this process take a mutex before BEGIN IMMEDIATE, so they queue
 * in the process instead of polling SQLite's busy handler; another process
 * (a backup, sqlite3 reading the file) is waited for up to busy_timeout_ms.
 * A second daemon is kept out altogether (store_options.exclusive).  Puts,
 * the frequent write, are group-committed: concurrent puts share one
 * transaction and one fsync (see sq_secret_put()).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>

#include <sqlite3.h>

#include "kw_deadline.h"
#include "kw_error.h"
#include "kw_grow.h"
#include "daemon/store.h"
#include "daemon/store_engine.h"

#define SCHEMA_VERSION 3
#define CACHE_KIB 2048          /* page cache per connection */
/* ... and of a connection that serves groups of reads (sq_read_begin).  A
 * read descends three B-trees (names, the secrets' unique index, secrets);
 * at 1M secrets their interior pages are about 270 (1.1 MiB) and each read
 * brings three leaves.  Under least-recently-used eviction the interior
 * pages stay only if the cache also holds the leaves read between two
 * visits of one: at 2 MiB a read missed about one interior page, at 4 MiB
 * about one in five reads does (docs/performance.md). */
#define READ_CACHE_KIB 4096
/* All of SQLite's memory in this process, past which it recycles page cache
 * rather than grow: each connection may cache CACHE_KIB, but a daemon with
 * 20 connections (2 workers, 16 write workers) must not hold 40 MiB of
 * pages when a few busy connections read most of the time.  Past three
 * quarters of it, a connection other than a reader's gives its unused
 * pages back when it is handed back to the pool: after a burst of writes,
 * the write connections' caches would otherwise hold the memory the
 * readers' caches need to grow into (SQLite does not take pages from one
 * connection's cache for another's). */
#define HEAP_SOFT_LIMIT (12LL << 20)
#define WAL_LIMIT (64 * 1024 * 1024)

/* migrations[i] takes the schema from version i to i + 1. */
static const char *const migrations[SCHEMA_VERSION] = {
	/* 0 -> 1 */
	"CREATE TABLE kw_schema ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  version INTEGER NOT NULL);"
	"CREATE TABLE vaults ("
	"  name TEXT NOT NULL PRIMARY KEY,"
	"  key_version INTEGER NOT NULL DEFAULT 0,"
	"  purge_protection INTEGER NOT NULL DEFAULT 0,"
	"  retention_days INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE vault_keys ("
	"  vault TEXT NOT NULL REFERENCES vaults(name),"
	"  version INTEGER NOT NULL,"
	"  key_id BLOB NOT NULL,"
	"  state INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL,"
	"  retired INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (vault, version)) WITHOUT ROWID;"
	"CREATE TABLE names ("
	"  vault TEXT NOT NULL REFERENCES vaults(name),"
	"  name TEXT NOT NULL,"
	"  current INTEGER NOT NULL,"
	"  deleted INTEGER,"            /* NULL: live */
	"  scheduled_purge INTEGER,"
	"  PRIMARY KEY (vault, name)) WITHOUT ROWID;"
	"CREATE INDEX names_deleted ON names(vault, name) WHERE deleted IS NOT NULL;"
	"CREATE TABLE secrets ("
	"  vault TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  key_version INTEGER NOT NULL,"
	"  wrapped BLOB NOT NULL,"
	"  nonce BLOB NOT NULL,"
	"  body BLOB NOT NULL,"
	"  enabled INTEGER NOT NULL,"
	"  not_before INTEGER NOT NULL DEFAULT 0,"
	"  expires INTEGER NOT NULL DEFAULT 0,"
	"  content_type TEXT NOT NULL DEFAULT '',"
	"  tags TEXT NOT NULL DEFAULT '{}',"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL,"
	"  UNIQUE (vault, name, version),"
	"  FOREIGN KEY (vault, name) REFERENCES names(vault, name) ON DELETE CASCADE);"
	"CREATE INDEX secrets_key_version ON secrets(vault, key_version);",
	/* 1 -> 2: the disabled versions of signing keys (their key pairs are
	 * in the token, which cannot record it). */
	"CREATE TABLE signing_key_disabled ("
	"  vault TEXT NOT NULL REFERENCES vaults(name),"
	"  name TEXT NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  since INTEGER NOT NULL,"
	"  PRIMARY KEY (vault, name, version)) WITHOUT ROWID;",
	/* 2 -> 3: the store's own identity, drawn once: the token records
	 * which store owns each vault's keys (daemon/vaults.c). */
	"CREATE TABLE kw_instance ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  uuid BLOB NOT NULL CHECK (length(uuid) = 16));"
	"INSERT INTO kw_instance(id, uuid) VALUES (1, randomblob(16));",
};

/* The columns of a struct store_meta, in row_meta()'s order. */
#define META_COLS \
	"n.name, s.version, s.created, s.updated, s.enabled, s.not_before, s.expires, " \
	"s.content_type, s.tags, s.key_version, n.deleted, n.scheduled_purge, " \
	"n.deleted IS NOT NULL"
#define COL_DELETED_FLAG 12
#define COL_WRAPPED 13
#define COL_NONCE 14
#define COL_BODY 15
#define NAMES_SECRETS " FROM names n JOIN secrets s ON s.vault = n.vault AND s.name = n.name "
#define SECRETS_NAMES " FROM secrets s JOIN names n ON n.vault = s.vault AND n.name = s.name "
#define AT_VERSION " s.version = CASE ?3 WHEN 0 THEN n.current ELSE ?3 END "

enum st {
	ST_BEGIN, ST_BEGIN_WRITE, ST_COMMIT, ST_ROLLBACK, ST_SCHEMA, ST_INSTANCE,
	ST_VAULT_NEW, ST_VAULT_GET, ST_VAULT_LIST, ST_VAULT_SET, ST_VAULT_SET_KEY,
	ST_KEY_NEW, ST_KEY_GET, ST_KEY_SET_STATE, ST_KEY_LIST, ST_KEY_USAGE,
	ST_NAME_STATE, ST_NAME_NEW, ST_NAME_SET_CURRENT, ST_NAME_IMPORT, ST_SECRET_NEW,
	ST_CURRENT, ST_GET, ST_META, ST_VERSIONS, ST_LIST, ST_UPDATE,
	ST_DELETE, ST_RECOVER, ST_PURGE, ST_DELETED_LIST,
	ST_REWRAP_SCAN, ST_REWRAP_APPLY, ST_EXPORT,
	ST_SKEY_DISABLE, ST_SKEY_ENABLE, ST_SKEY_DISABLED, ST_SKEY_EXPORT,
	ST__N
};

static const char *const st_sql[ST__N] = {
	[ST_BEGIN] = "BEGIN",
	[ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SCHEMA] = "SELECT version FROM kw_schema WHERE id = 1",
	[ST_INSTANCE] = "SELECT uuid FROM kw_instance WHERE id = 1",

	[ST_VAULT_NEW] = "INSERT INTO vaults(name, key_version, purge_protection, retention_days, created) "
	    "VALUES (?1, 0, ?2, ?3, ?4) ON CONFLICT(name) DO NOTHING",
	[ST_VAULT_GET] = "SELECT name, key_version, purge_protection, retention_days, created "
	    "FROM vaults WHERE name = ?1",
	[ST_VAULT_LIST] = "SELECT name, key_version, purge_protection, retention_days, created "
	    "FROM vaults ORDER BY name",
	[ST_VAULT_SET] = "UPDATE vaults SET purge_protection = ?2, retention_days = ?3 WHERE name = ?1",
	[ST_VAULT_SET_KEY] = "UPDATE vaults SET key_version = ?2 WHERE name = ?1",

	[ST_KEY_NEW] = "INSERT INTO vault_keys(vault, version, key_id, state, created, retired) "
	    "VALUES (?1, ?2, ?3, 0, ?4, 0)",
	[ST_KEY_GET] = "SELECT state, retired FROM vault_keys WHERE vault = ?1 AND version = ?2",
	[ST_KEY_SET_STATE] = "UPDATE vault_keys SET state = ?3, retired = ?4 WHERE vault = ?1 AND version = ?2",
	[ST_KEY_LIST] = "SELECT version, key_id, state, created, retired FROM vault_keys "
	    "WHERE vault = ?1 ORDER BY version",
	[ST_KEY_USAGE] = "SELECT count(*) FROM secrets WHERE vault = ?1 AND key_version = ?2",

	[ST_NAME_STATE] = "SELECT current, deleted IS NOT NULL FROM names WHERE vault = ?1 AND name = ?2",
	[ST_NAME_NEW] = "INSERT INTO names(vault, name, current) VALUES (?1, ?2, ?3)",
	[ST_NAME_SET_CURRENT] = "UPDATE names SET current = ?3 WHERE vault = ?1 AND name = ?2",
	[ST_NAME_IMPORT] = "INSERT INTO names(vault, name, current, deleted, scheduled_purge) "
	    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(vault, name) DO UPDATE SET "
	    "current = max(current, excluded.current), "
	    "deleted = coalesce(excluded.deleted, deleted), "
	    "scheduled_purge = coalesce(excluded.scheduled_purge, scheduled_purge)",
	[ST_SECRET_NEW] = "INSERT INTO secrets(vault, name, version, key_version, wrapped, nonce, body, "
	    "enabled, not_before, expires, content_type, tags, created, updated) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",

	[ST_CURRENT] = "SELECT current FROM names WHERE vault = ?1 AND name = ?2 AND deleted IS NULL",
	[ST_GET] = "SELECT " META_COLS ", s.wrapped, s.nonce, s.body" NAMES_SECRETS
	    "WHERE n.vault = ?1 AND n.name = ?2 AND n.deleted IS NULL AND" AT_VERSION,
	[ST_META] = "SELECT " META_COLS NAMES_SECRETS
	    "WHERE n.vault = ?1 AND n.name = ?2 AND" AT_VERSION,
	[ST_VERSIONS] = "SELECT " META_COLS NAMES_SECRETS
	    "WHERE n.vault = ?1 AND n.name = ?2 AND n.deleted IS NULL ORDER BY s.version DESC",
	/* ?3: the prefix's successor, or an empty blob (greater than any text). */
	[ST_LIST] = "SELECT " META_COLS NAMES_SECRETS
	    "WHERE n.vault = ?1 AND n.name >= ?2 AND n.name < ?3 AND n.name > ?4 "
	    "AND n.deleted IS NULL AND s.version = n.current ORDER BY n.name LIMIT ?5",
	[ST_UPDATE] = "UPDATE secrets SET "
	    "enabled = CASE WHEN ?4 & 1 THEN ?5 ELSE enabled END, "
	    "not_before = CASE WHEN ?4 & 2 THEN ?6 ELSE not_before END, "
	    "expires = CASE WHEN ?4 & 4 THEN ?7 ELSE expires END, "
	    "content_type = CASE WHEN ?4 & 8 THEN ?8 ELSE content_type END, "
	    "tags = CASE WHEN ?4 & 16 THEN ?9 ELSE tags END, "
	    "updated = ?10 WHERE vault = ?1 AND name = ?2 AND version = ?3",

	[ST_DELETE] = "UPDATE names SET deleted = ?3, scheduled_purge = ?4 "
	    "WHERE vault = ?1 AND name = ?2 AND deleted IS NULL",
	[ST_RECOVER] = "UPDATE names SET deleted = NULL, scheduled_purge = NULL "
	    "WHERE vault = ?1 AND name = ?2 AND deleted IS NOT NULL",
	[ST_PURGE] = "DELETE FROM names WHERE vault = ?1 AND name = ?2 AND deleted IS NOT NULL "
	    "AND (?3 = 0 OR scheduled_purge <= ?3)",
	[ST_DELETED_LIST] = "SELECT " META_COLS " FROM names n INDEXED BY names_deleted "
	    "JOIN secrets s ON s.vault = n.vault AND s.name = n.name WHERE n.vault = ?1 AND n.deleted IS NOT NULL AND s.version = n.current ORDER BY n.name",

	/* No join: a secrets row always has its names row (the foreign key),
	 * and a rotation needs nothing from it. */
	[ST_REWRAP_SCAN] = "SELECT s.name, s.version, s.key_version, s.wrapped FROM secrets s "
	    "WHERE s.vault = ?1 AND s.key_version <> ?2 AND (s.name, s.version) > (?3, ?4) "
	    "ORDER BY s.name, s.version LIMIT ?5",
	[ST_REWRAP_APPLY] = "UPDATE secrets SET key_version = ?5, wrapped = ?6 "
	    "WHERE vault = ?1 AND name = ?2 AND version = ?3 AND key_version = ?4 AND wrapped = ?7",
	[ST_SKEY_DISABLE] = "INSERT INTO signing_key_disabled(vault, name, version, since) "
	    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
	[ST_SKEY_ENABLE] = "DELETE FROM signing_key_disabled WHERE vault = ?1 AND name = ?2 AND version = ?3",
	[ST_SKEY_DISABLED] = "SELECT version FROM signing_key_disabled WHERE vault = ?1 AND name = ?2 "
	    "ORDER BY version",
	[ST_SKEY_EXPORT] = "SELECT name, version, since FROM signing_key_disabled WHERE vault = ?1 "
	    "ORDER BY name, version",
	[ST_EXPORT] = "SELECT " META_COLS ", s.wrapped, s.nonce, s.body" SECRETS_NAMES
	    "WHERE s.vault = ?1 ORDER BY s.name, s.version",
};

struct conn {
	sqlite3 *db;
	sqlite3_stmt *st[ST__N];
	int writing;            /* holds the engine's write lock */
	int reader;             /* serves groups of reads: READ_CACHE_KIB */
	struct conn *next;      /* on an idle list */
};

struct store_engine {
	char *path;
	unsigned max_conns;
	unsigned busy_ms;
	uint64_t max_bytes;
	pthread_mutex_t lock;   /* guards idle and nconns */
	pthread_cond_t cond;
	struct conn *idle;      /* idle connections, last used first */
	struct conn *idle_read; /* ... those with a reader's cache */
	unsigned nconns;        /* open connections, idle or in use */
	int lockfd;             /* holds the flock of an exclusive open, or -1 */
	pthread_mutex_t wlock;  /* one writer of this process at a time */
	/* Group commit of puts: waiting puts queue here; one of them, the
	 * leader, writes all it finds in one transaction and one fsync. */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct put_req *qhead, **qtail;
	int leading;            /* a leader is at work */
};

struct put_req {
	const char *vault;
	const struct store_record *rec;
	struct put_req *next;
	int taken;              /* a leader has it */
	int done;               /* r, cur and why are final */
	int r;
	uint64_t cur;           /* the current version, on a conflict */
	char why[512];          /* the detail of r: kw_fail() is per thread */
};

/* ---- errors ------------------------------------------------------------------------ */

/* Translate a SQLite failure into the store's errors, with a sentence that
 * names the file, SQLite's own message, and what to do. */
static int
sq_fail(struct store_engine *e, sqlite3 *db, int rc, const char *what)
{
	const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	int xrc = db != NULL ? sqlite3_extended_errcode(db) : rc;

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return kw_fail(KW_E_UNAVAILABLE, "%s: the database %s stayed locked longer than %u ms "
		    "(%s): another process holds it; try again", what, e->path, e->busy_ms, msg);
	case SQLITE_FULL:
		return kw_fail(KW_E_STORE, "%s: the database %s is full (%s): free space on its "
		    "file system%s; nothing was written", what, e->path, msg,
		    e->max_bytes ? " or raise the store's size limit" : "");
	case SQLITE_NOMEM:
		return kw_fail(-ENOMEM, "%s: SQLite ran out of memory", what);
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return kw_fail(KW_E_STORE, "%s: the database %s is damaged or not a database (%s): "
		    "restore it from a backup", what, e->path, msg);
	case SQLITE_IOERR:
		return kw_fail(KW_E_STORE, "%s: I/O error on the database %s (%s, SQLite code %d): "
		    "check the disk and the file system", what, e->path, msg, xrc);
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return kw_fail(KW_E_STORE, "%s: the database %s cannot be written (%s): check the "
		    "permissions of the file, its -wal and -shm files and its directory",
		    what, e->path, msg);
	case SQLITE_CANTOPEN:
		return kw_fail(KW_E_STORE, "%s: cannot open the database %s (%s): check that its "
		    "directory exists and that the daemon may write there", what, e->path, msg);
	case SQLITE_CONSTRAINT:
		return kw_fail(KW_E_CONFLICT, "%s: the database %s refused the change (%s)",
		    what, e->path, msg);
	default:
		return kw_fail(KW_E_STORE, "%s: the database %s failed: %s (SQLite code %d)",
		    what, e->path, msg, xrc);
	}
}

/* ---- connections --------------------------------------------------------------------- */

static void
conn_close(struct conn *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < ST__N; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close(c->db);
	free(c);
}

/* Run a one-row PRAGMA and return its first column's integer. */
static int
pragma_int(struct store_engine *e, sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (out != NULL)
			*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		rc = sq_fail(e, db, rc, "setting up a connection");
	sqlite3_finalize(st);
	return rc;
}

static int
conn_open(struct store_engine *e, struct conn **out)
{
	struct conn *c = NULL;
	char sql[96];
	int64_t page = 0;
	int rc, r;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return kw_fail(-ENOMEM, "store: out of memory");
	rc = sqlite3_open_v2(e->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	    SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = sq_fail(e, c->db, rc, "opening the store");
		goto out;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, (int)e->busy_ms);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", CACHE_KIB);
	if ((r = pragma_int(e, c->db, "PRAGMA foreign_keys = ON", NULL)) != 0 ||
	    (r = pragma_int(e, c->db, "PRAGMA synchronous = FULL", NULL)) != 0 ||
	    (r = pragma_int(e, c->db, "PRAGMA temp_store = MEMORY", NULL)) != 0 ||
	    (r = pragma_int(e, c->db, "PRAGMA trusted_schema = OFF", NULL)) != 0 ||
	    (r = pragma_int(e, c->db, sql, NULL)) != 0)
		goto out;
	if (e->max_bytes != 0) {
		if ((r = pragma_int(e, c->db, "PRAGMA page_size", &page)) != 0)
			goto out;
		if (page <= 0)
			page = 4096;
		snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %llu",
		    (unsigned long long)(e->max_bytes / (uint64_t)page ? e->max_bytes / (uint64_t)page : 1));
		if ((r = pragma_int(e, c->db, sql, NULL)) != 0)
			goto out;
	}
	*out = c;
	c = NULL;
	r = 0;
out:
	conn_close(c);
	return r;
}

/* The connection this thread holds for a group of reads (sq_read_begin),
 * and its engine. */
static __thread struct conn *pinned;
static __thread struct store_engine *pinned_e;

/* A connection for this thread until conn_put(): the one of its group of
 * reads, an idle one (a reader takes one with a reader's cache first, any
 * other caller one without), a new one while the pool is not full, or wait
 * up to busy_timeout for one. */
static int
conn_take(struct store_engine *e, int reader, struct conn **out)
{
	struct conn *c, **from;
	struct timespec ts;
	int r = 0;

	if (pinned != NULL && pinned_e == e) {
		*out = pinned;
		return 0;
	}

	kw_deadline_ms(&ts, e->busy_ms);
	pthread_mutex_lock(&e->lock);
	while (e->idle == NULL && e->idle_read == NULL && e->nconns >= e->max_conns && r == 0)
		r = pthread_cond_timedwait(&e->cond, &e->lock, &ts);
	/* The list of the caller's kind if it has one, else the other. */
	from = reader ? &e->idle_read : &e->idle;
	if (*from == NULL)
		from = reader ? &e->idle : &e->idle_read;
	if ((c = *from) != NULL) {
		*from = c->next;
		c->next = NULL;
		pthread_mutex_unlock(&e->lock);
		*out = c;
		return 0;
	}
	if (e->nconns >= e->max_conns) {
		pthread_mutex_unlock(&e->lock);
		return kw_fail(KW_E_UNAVAILABLE, "store: all %u connections to %s stayed busy for "
		    "%u ms: raise the store's connections to the number of threads that use it",
		    e->max_conns, e->path, e->busy_ms);
	}
	e->nconns++;
	pthread_mutex_unlock(&e->lock);
	if ((r = conn_open(e, &c)) != 0) {
		pthread_mutex_lock(&e->lock);
		e->nconns--;
		pthread_cond_signal(&e->cond);
		pthread_mutex_unlock(&e->lock);
		return r;
	}
	*out = c;
	return 0;
}

static int
conn_get(struct store_engine *e, struct conn **out)
{
	return conn_take(e, 0, out);
}

static void
tx_rollback(struct store_engine *e, struct conn *c);

static void
conn_put(struct store_engine *e, struct conn *c)
{
	if (c == NULL)
		return;
	/* Release every statement's hold on the database. */
	for (int i = 0; i < ST__N; i++)
		if (c->st[i] != NULL && sqlite3_stmt_busy(c->st[i]))
			sqlite3_reset(c->st[i]);
	if (c == pinned)
		return;   /* kept, with its read transaction, until sq_read_end */
	if (!sqlite3_get_autocommit(c->db) || c->writing)
		tx_rollback(e, c);
	if (!c->reader && sqlite3_memory_used() > HEAP_SOFT_LIMIT / 4 * 3)
		sqlite3_db_release_memory(c->db);
	pthread_mutex_lock(&e->lock);
	if (!sqlite3_get_autocommit(c->db)) {
		/* Could not even roll back: do not hand it out again. */
		e->nconns--;
		pthread_mutex_unlock(&e->lock);
		conn_close(c);
	} else {
		struct conn **list = c->reader ? &e->idle_read : &e->idle;

		c->next = *list;
		*list = c;
		pthread_mutex_unlock(&e->lock);
	}
	pthread_cond_signal(&e->cond);
}

/* A statement of c, prepared on first use, then kept. */
static int
st_get(struct store_engine *e, struct conn *c, enum st id, sqlite3_stmt **out)
{
	if (c->st[id] == NULL) {
		int rc = sqlite3_prepare_v3(c->db, st_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		    &c->st[id], NULL);
		if (rc != SQLITE_OK) {
			c->st[id] = NULL;
			return sq_fail(e, c->db, rc, "preparing a statement");
		}
	}
	*out = c->st[id];
	return 0;
}

/* sqlite3_step: 1 for a row, 0 when done, or an error. */
static int
st_step(struct store_engine *e, struct conn *c, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	rc = sq_fail(e, c->db, rc, what);
	sqlite3_reset(st);
	return rc;
}

/* Run a statement that returns no row, then reset it. */
static int
st_exec(struct store_engine *e, struct conn *c, sqlite3_stmt *st, const char *what)
{
	int r = st_step(e, c, st, what);

	sqlite3_reset(st);
	return r < 0 ? r : 0;
}

static int
bind_fail(struct store_engine *e, struct conn *c, sqlite3_stmt *st, const char *what)
{
	sqlite3_reset(st);
	return sq_fail(e, c->db, sqlite3_errcode(c->db) ? sqlite3_errcode(c->db) : SQLITE_MISUSE, what);
}

static int
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* ---- transactions -------------------------------------------------------------------- */

static int
tx_begin(struct store_engine *e, struct conn *c, int write)
{
	sqlite3_stmt *st = NULL;
	struct timespec ts;
	int r;

	if (write) {
		kw_deadline_ms(&ts, e->busy_ms);
		if ((r = pthread_mutex_timedlock(&e->wlock, &ts)) != 0)
			return kw_fail(KW_E_UNAVAILABLE, "store: another write to %s took longer than "
			    "%u ms: try again", e->path, e->busy_ms);
		c->writing = 1;
	}
	if ((r = st_get(e, c, write ? ST_BEGIN_WRITE : ST_BEGIN, &st)) != 0 ||
	    (r = st_exec(e, c, st, "starting a transaction")) != 0) {
		if (write) {
			c->writing = 0;
			pthread_mutex_unlock(&e->wlock);
		}
		return r;
	}
	return 0;
}

/* Roll back the SQL transaction only (the write lock stays held). */
static void
tx_abort(struct conn *c)
{
	if (!sqlite3_get_autocommit(c->db)) {
		sqlite3_stmt *st = c->st[ST_ROLLBACK];
		if (st == NULL)
			sqlite3_prepare_v3(c->db, st_sql[ST_ROLLBACK], -1, SQLITE_PREPARE_PERSISTENT,
			    &c->st[ST_ROLLBACK], NULL);
		if ((st = c->st[ST_ROLLBACK]) != NULL) {
			sqlite3_step(st);
			sqlite3_reset(st);
		}
	}
}

static void
tx_rollback(struct store_engine *e, struct conn *c)
{
	tx_abort(c);
	if (c->writing) {
		c->writing = 0;
		/* The lock's owner is this thread: it began the transaction. */
		pthread_mutex_unlock(&e->wlock);
	}
}

/* End a transaction: commit when r is 0 (and return the commit's result),
 * else roll back and return r. */
static int
tx_end(struct store_engine *e, struct conn *c, int r)
{
	sqlite3_stmt *st = NULL;

	if (r == 0 && (r = st_get(e, c, ST_COMMIT, &st)) == 0)
		r = st_exec(e, c, st, "committing");
	if (r != 0 || !sqlite3_get_autocommit(c->db))
		tx_rollback(e, c);
	else if (c->writing) {
		c->writing = 0;
		pthread_mutex_unlock(&e->wlock);
	}
	return r;
}

/* ---- rows ------------------------------------------------------------------------------ */

static void
col_text(sqlite3_stmt *st, int i, char *out, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i);

	if (t == NULL)
		n = 0;
	if (n >= size)
		n = size - 1;
	if (n > 0)
		memcpy(out, t, n);
	out[n] = '\0';
}

static void
row_meta(sqlite3_stmt *st, struct store_meta *m)
{
	memset(m, 0, sizeof(*m));
	col_text(st, 0, m->name, sizeof(m->name));
	m->version = (uint64_t)sqlite3_column_int64(st, 1);
	m->created = sqlite3_column_int64(st, 2);
	m->updated = sqlite3_column_int64(st, 3);
	m->enabled = sqlite3_column_int(st, 4) != 0;
	m->not_before = sqlite3_column_int64(st, 5);
	m->expires = sqlite3_column_int64(st, 6);
	col_text(st, 7, m->content_type, sizeof(m->content_type));
	col_text(st, 8, m->tags, sizeof(m->tags));
	m->key_version = (uint32_t)sqlite3_column_int64(st, 9);
	m->deleted = sqlite3_column_int64(st, 10);
	m->scheduled_purge = sqlite3_column_int64(st, 11);
}

/* Column i, a wrapped data key, into out (STORE_WRAPPED_MAX bytes) and
 * *len; name and version only say whose it is in an error. */
static int
col_wrapped(sqlite3_stmt *st, int i, const char *name, uint64_t version, uint8_t *out,
    size_t *len)
{
	const void *p;
	size_t n = (size_t)sqlite3_column_bytes(st, i);

	if (n > STORE_WRAPPED_MAX)
		return kw_fail(KW_E_FORMAT, "store: the wrapped key of '%s' version %llu is %zu bytes, "
		    "more than %d", name, (unsigned long long)version, n, STORE_WRAPPED_MAX);
	if ((p = sqlite3_column_blob(st, i)) != NULL)
		memcpy(out, p, n);
	*len = n;
	return 0;
}

/* The record columns after the metadata; body only when with_body. */
static int
row_record(sqlite3_stmt *st, struct store_record *r, int with_body)
{
	size_t n;
	int e;

	memset(r, 0, sizeof(*r));
	row_meta(st, &r->meta);
	if ((e = col_wrapped(st, COL_WRAPPED, r->meta.name, r->meta.version, r->wrapped,
	    &r->wrapped_len)) != 0)
		return e;
	n = (size_t)sqlite3_column_bytes(st, COL_NONCE);
	if (n != sizeof(r->nonce))
		return kw_fail(KW_E_FORMAT, "store: the nonce of '%s' version %llu is %zu bytes, not %zu",
		    r->meta.name, (unsigned long long)r->meta.version, n, sizeof(r->nonce));
	memcpy(r->nonce, sqlite3_column_blob(st, COL_NONCE), n);
	if (with_body) {
		n = (size_t)sqlite3_column_bytes(st, COL_BODY);
		if ((r->body = malloc(n ? n : 1)) == NULL)
			return kw_fail(-ENOMEM, "store: out of memory for a body of %zu bytes", n);
		if (n > 0)
			memcpy(r->body, sqlite3_column_blob(st, COL_BODY), n);
		r->body_len = n;
	}
	return 0;
}

/* Make room for one more element in a growing array. */
static int
grow(void **arr, size_t *cap, size_t n, size_t size)
{
	if (kw_grow(arr, cap, n, size) != 0)
		return kw_fail(-ENOMEM, "store: out of memory for %zu entries", *cap ? *cap * 2 : 16);
	return 0;
}

/* Every metadata row of a bound statement into a malloc'd array. */
static int
rows_meta(struct store_engine *e, struct conn *c, sqlite3_stmt *st, const char *what,
    struct store_meta **out, size_t *nout)
{
	struct store_meta *arr = NULL;
	size_t n = 0, cap = 0;
	int r;

	while ((r = st_step(e, c, st, what)) == 1) {
		if ((r = grow((void **)&arr, &cap, n, sizeof(*arr))) != 0)
			break;
		row_meta(st, &arr[n++]);
	}
	sqlite3_reset(st);
	if (r != 0) {
		free(arr);
		return r;
	}
	*out = arr;
	*nout = n;
	return 0;
}

/* ---- schema --------------------------------------------------------------------------- */

static int
exec_sql(struct store_engine *e, sqlite3 *db, const char *sql, const char *what)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sq_fail(e, db, rc, what);
}

/* Bring the schema to SCHEMA_VERSION, in one transaction. */
static int
schema_migrate(struct store_engine *e, struct conn *c)
{
	int64_t has = 0, tables = 0, version = 0;
	char sql[160];
	int r;

	if ((r = exec_sql(e, c->db, "BEGIN IMMEDIATE", "opening the store")) != 0)
		return r;
	if ((r = pragma_int(e, c->db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
	    "AND name = 'kw_schema'", &has)) != 0 ||
	    (r = pragma_int(e, c->db, "SELECT count(*) FROM sqlite_schema", &tables)) != 0)
		goto out;
	if (!has && tables > 0) {
		r = kw_fail(KW_E_STORE, "the database %s is an SQLite database but not a keywarden "
		    "store (it has no kw_schema table): point the store at another file", e->path);
		goto out;
	}
	if (has && (r = pragma_int(e, c->db, "SELECT coalesce(max(version), -1) FROM kw_schema",
	    &version)) != 0)
		goto out;
	if (version < 0 || version > SCHEMA_VERSION) {
		r = kw_fail(KW_E_STORE, "the database %s has schema version %lld, and this keywarden "
		    "knows versions up to %d: run the newer keywarden that wrote it, or restore a backup "
		    "made for this version", e->path, (long long)version, SCHEMA_VERSION);
		goto out;
	}
	if (version == SCHEMA_VERSION)
		goto out;
	for (int64_t v = version; v < SCHEMA_VERSION; v++) {
		char what[64];
		snprintf(what, sizeof(what), "migrating the schema from version %lld", (long long)v);
		if ((r = exec_sql(e, c->db, migrations[v], what)) != 0)
			goto out;
	}
	snprintf(sql, sizeof(sql), "INSERT INTO kw_schema(id, version) VALUES (1, %d) "
	    "ON CONFLICT(id) DO UPDATE SET version = excluded.version", SCHEMA_VERSION);
	r = exec_sql(e, c->db, sql, "recording the schema version");
out:
	if (r == 0)
		r = exec_sql(e, c->db, "COMMIT", "opening the store");
	if (r != 0 && !sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

/* ---- life -------------------------------------------------------------------------------- */

static void
sq_close(struct store_engine *e)
{
	struct conn *c;

	if (e == NULL)
		return;
	while ((c = e->idle) != NULL) {
		e->idle = c->next;
		conn_close(c);
	}
	while ((c = e->idle_read) != NULL) {
		e->idle_read = c->next;
		conn_close(c);
	}
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->wlock);
	pthread_mutex_destroy(&e->qlock);
	pthread_cond_destroy(&e->qcond);
	free(e->path);
	if (e->lockfd >= 0)
		close(e->lockfd);   /* after every connection */
	free(e);
}

static int
sq_open(const char *location, const struct store_options *opt, struct store_engine **out)
{
	struct store_engine *e = NULL;
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	int fd, r, rc;

	if ((e = calloc(1, sizeof(*e))) == NULL || (e->path = strdup(location)) == NULL) {
		if (e != NULL)
			free(e);
		return kw_fail(-ENOMEM, "store: out of memory");
	}
	e->lockfd = -1;
	e->max_conns = opt->connections ? opt->connections : 8;
	if (sqlite3_soft_heap_limit64(-1) == 0)
		sqlite3_soft_heap_limit64(HEAP_SOFT_LIMIT);
	e->busy_ms = opt->busy_timeout_ms ? opt->busy_timeout_ms : 5000;
	e->max_bytes = opt->max_bytes;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	pthread_mutex_init(&e->wlock, NULL);
	pthread_mutex_init(&e->qlock, NULL);
	pthread_cond_init(&e->qcond, NULL);
	e->qtail = &e->qhead;

	/* Create the file ourselves so that it is private from the start;
	 * SQLite gives its -wal and -shm files the same mode. */
	if ((fd = open(e->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		r = kw_fail(KW_E_STORE, "cannot open or create the database %s for writing: %s: check "
		    "that its directory exists and that the daemon may write the file and the "
		    "directory", e->path, strerror(errno));
		goto out;
	}
	/* One daemon per store: each keeps its own view of the vaults' key
	 * versions and runs its own rotations.  flock(2) does not touch the
	 * POSIX locks SQLite takes on the same file (on a local file system,
	 * the only kind WAL mode allows), and the kernel drops it however the
	 * process ends.  The descriptor stays open until sq_close(), after the
	 * connections: closing a descriptor of the file drops the process's
	 * POSIX locks on it. */
	if (opt->exclusive) {
		if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
			r = errno == EWOULDBLOCK ?
			    kw_fail(KW_E_STORE, "the database %s is held by another keywardend: a "
			    "store serves one daemon", e->path) :
			    kw_fail(KW_E_STORE, "cannot lock the database %s: %s", e->path,
			    strerror(errno));
			close(fd);
			goto out;
		}
		e->lockfd = fd;
	} else {
		close(fd);
	}
	if ((r = conn_open(e, &c)) != 0)
		goto out;
	e->nconns = 1;
	/* Change nothing in a file that is not a keywarden store (a wrong
	 * path in the configuration): switching it to WAL would outlive the
	 * refusal.  A new, empty file is a new store. */
	rc = sqlite3_prepare_v2(c->db, "SELECT count(*), sum(name = 'kw_schema') FROM sqlite_master",
	    -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_int64(st, 0) > 0 && sqlite3_column_int64(st, 1) == 0) {
			r = kw_fail(KW_E_STORE, "%s is an SQLite database but not a keywarden store (it "
			    "has no kw_schema table): check 'store:' in the configuration; the file "
			    "was not changed", e->path);
			goto out;
		}
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		r = sq_fail(e, c->db, rc, "opening the store");
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *mode = (const char *)sqlite3_column_text(st, 0);
		if (mode == NULL || strcmp(mode, "wal") != 0) {
			r = kw_fail(KW_E_STORE, "the database %s cannot use write-ahead logging (journal "
			    "mode stays '%s'): put it on a local file system", e->path, mode ? mode : "?");
			goto out;
		}
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		r = sq_fail(e, c->db, rc, "opening the store");
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	{
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d", WAL_LIMIT);
		if ((r = pragma_int(e, c->db, sql, NULL)) != 0)
			goto out;
	}
	if ((r = schema_migrate(e, c)) != 0)
		goto out;
	c->next = e->idle;
	e->idle = c;
	c = NULL;
	*out = e;
	e = NULL;
	r = 0;
out:
	sqlite3_finalize(st);
	conn_close(c);
	sq_close(e);
	return r;
}

static int
sq_schema_version(struct store_engine *e, int *version)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_SCHEMA, &st)) != 0)
		goto out;
	if ((r = st_step(e, c, st, "reading the schema version")) == 1) {
		*version = sqlite3_column_int(st, 0);
		r = 0;
	} else if (r == 0) {
		r = kw_fail(KW_E_STORE, "the database %s records no schema version", e->path);
	}
	sqlite3_reset(st);
out:
	conn_put(e, c);
	return r;
}

static int
sq_instance_id(struct store_engine *e, uint8_t id[STORE_INSTANCE_LEN])
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_INSTANCE, &st)) != 0)
		goto out;
	if ((r = st_step(e, c, st, "reading the store's identity")) == 1 &&
	    sqlite3_column_bytes(st, 0) == STORE_INSTANCE_LEN) {
		memcpy(id, sqlite3_column_blob(st, 0), STORE_INSTANCE_LEN);
		r = 0;
	} else if (r >= 0) {
		r = kw_fail(KW_E_STORE, "the database %s records no identity (table kw_instance)", e->path);
	}
	sqlite3_reset(st);
out:
	conn_put(e, c);
	return r;
}

static int
sq_ping(struct store_engine *e)
{
	int v;

	return sq_schema_version(e, &v);
}

/* ---- vaults ------------------------------------------------------------------------------- */

static void
row_vault(sqlite3_stmt *st, struct store_vault *v)
{
	memset(v, 0, sizeof(*v));
	col_text(st, 0, v->name, sizeof(v->name));
	v->key_version = (uint32_t)sqlite3_column_int64(st, 1);
	v->purge_protection = sqlite3_column_int(st, 2) != 0;
	v->retention_days = (uint32_t)sqlite3_column_int64(st, 3);
	v->created = sqlite3_column_int64(st, 4);
}

/* Read a vault on c: 0 and *out, or KW_E_NOT_FOUND. */
static int
vault_read(struct store_engine *e, struct conn *c, const char *name, struct store_vault *out)
{
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = st_get(e, c, ST_VAULT_GET, &st)) != 0)
		return r;
	if (bind_text(st, 1, name) != SQLITE_OK)
		return bind_fail(e, c, st, "reading a vault");
	if ((r = st_step(e, c, st, "reading a vault")) == 1) {
		if (out != NULL)
			row_vault(st, out);
		r = 0;
	} else if (r == 0) {
		r = kw_fail(KW_E_NOT_FOUND, "no vault '%s' in the store", name);
	}
	sqlite3_reset(st);
	return r;
}

static int
sq_vault_get(struct store_engine *e, const char *name, struct store_vault *out)
{
	struct conn *c = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	r = vault_read(e, c, name, out);
	conn_put(e, c);
	return r;
}

static int
sq_vault_ensure(struct store_engine *e, const struct store_vault *v, struct store_vault *out)
{
	struct conn *c = NULL;
	struct store_vault have;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = vault_read(e, c, v->name, &have)) != KW_E_NOT_FOUND)
		goto out;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = st_get(e, c, ST_VAULT_NEW, &st)) == 0) {
		if ((bind_text(st, 1, v->name) | sqlite3_bind_int(st, 2, v->purge_protection != 0) |
		    sqlite3_bind_int64(st, 3, v->retention_days) |
		    sqlite3_bind_int64(st, 4, v->created)) != SQLITE_OK)
			r = bind_fail(e, c, st, "creating a vault");
		else
			r = st_exec(e, c, st, "creating a vault");
	}
	if (r == 0)
		r = vault_read(e, c, v->name, &have);
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	if (r == 0 && out != NULL)
		*out = have;
	return r;
}

static int
sq_vault_set_attrs(struct store_engine *e, const struct store_vault *v)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = st_get(e, c, ST_VAULT_SET, &st)) == 0) {
		if ((bind_text(st, 1, v->name) | sqlite3_bind_int(st, 2, v->purge_protection != 0) |
		    sqlite3_bind_int64(st, 3, v->retention_days)) != SQLITE_OK)
			r = bind_fail(e, c, st, "changing a vault");
		else if ((r = st_exec(e, c, st, "changing a vault")) == 0 && sqlite3_changes(c->db) == 0)
			r = kw_fail(KW_E_NOT_FOUND, "no vault '%s' in the store", v->name);
	}
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	return r;
}

static int
sq_vault_list(struct store_engine *e, struct store_vault **out, size_t *nout)
{
	struct conn *c = NULL;
	struct store_vault *arr = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_VAULT_LIST, &st)) != 0)
		goto out;
	while ((r = st_step(e, c, st, "listing vaults")) == 1) {
		if ((r = grow((void **)&arr, &cap, n, sizeof(*arr))) != 0)
			break;
		row_vault(st, &arr[n++]);
	}
	sqlite3_reset(st);
	if (r == 0) {
		*out = arr;
		*nout = n;
		arr = NULL;
	}
out:
	conn_put(e, c);
	free(arr);
	return r;
}

/* ---- master-key versions ------------------------------------------------------------------ */

static int
sq_key_add(struct store_engine *e, const char *vault, const struct store_key *k)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = vault_read(e, c, vault, NULL)) == 0 && (r = st_get(e, c, ST_KEY_NEW, &st)) == 0) {
		if ((bind_text(st, 1, vault) | sqlite3_bind_int64(st, 2, k->version) |
		    sqlite3_bind_blob(st, 3, k->key_id, sizeof(k->key_id), SQLITE_STATIC) |
		    sqlite3_bind_int64(st, 4, k->created)) != SQLITE_OK)
			r = bind_fail(e, c, st, "recording a master key");
		else if ((r = st_exec(e, c, st, "recording a master key")) == KW_E_CONFLICT)
			r = kw_fail(KW_E_CONFLICT, "vault '%s' already records master-key version %u",
			    vault, k->version);
	}
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	return r;
}

/* Read a key's state on c: 0, or KW_E_NOT_FOUND. */
static int
key_read(struct store_engine *e, struct conn *c, const char *vault, uint32_t version,
    int *state, int64_t *retired)
{
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = st_get(e, c, ST_KEY_GET, &st)) != 0)
		return r;
	if ((bind_text(st, 1, vault) | sqlite3_bind_int64(st, 2, version)) != SQLITE_OK)
		return bind_fail(e, c, st, "reading a master key");
	if ((r = st_step(e, c, st, "reading a master key")) == 1) {
		*state = sqlite3_column_int(st, 0);
		*retired = sqlite3_column_int64(st, 1);
		r = 0;
	} else if (r == 0) {
		r = kw_fail(KW_E_NOT_FOUND, "vault '%s' records no master-key version %u", vault, version);
	}
	sqlite3_reset(st);
	return r;
}

/* How many records of the vault are wrapped under version. */
static int
key_count(struct store_engine *e, struct conn *c, const char *vault, uint32_t version,
    uint64_t *count)
{
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = st_get(e, c, ST_KEY_USAGE, &st)) != 0)
		return r;
	if ((bind_text(st, 1, vault) | sqlite3_bind_int64(st, 2, version)) != SQLITE_OK)
		return bind_fail(e, c, st, "counting a master key's records");
	if ((r = st_step(e, c, st, "counting a master key's records")) == 1) {
		*count = (uint64_t)sqlite3_column_int64(st, 0);
		r = 0;
	} else if (r == 0) {
		r = kw_fail(KW_E_INTERNAL, "store: count(*) returned no row");
	}
	sqlite3_reset(st);
	return r;
}

static int
sq_key_set_current(struct store_engine *e, const char *vault, uint32_t version)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	int64_t retired;
	int r, state;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = key_read(e, c, vault, version, &state, &retired)) != 0)
		goto end;
	if (state != STORE_KEY_ACTIVE) {
		r = kw_fail(KW_E_RETIRED, "master-key version %u of vault '%s' is %s and cannot become "
		    "current", version, vault, state == STORE_KEY_RETIRED ? "retired" : "destroyed");
		goto end;
	}
	if ((r = st_get(e, c, ST_VAULT_SET_KEY, &st)) != 0)
		goto end;
	if ((bind_text(st, 1, vault) | sqlite3_bind_int64(st, 2, version)) != SQLITE_OK)
		r = bind_fail(e, c, st, "making a master key current");
	else
		r = st_exec(e, c, st, "making a master key current");
end:
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	return r;
}

static int
sq_key_set_state(struct store_engine *e, const char *vault, uint32_t version,
    enum store_key_state state, int64_t when)
{
	struct conn *c = NULL;
	struct store_vault v;
	sqlite3_stmt *st = NULL;
	int64_t retired;
	int r, old;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = vault_read(e, c, vault, &v)) != 0 ||
	    (r = key_read(e, c, vault, version, &old, &retired)) != 0)
		goto end;
	if (old == STORE_KEY_DESTROYED && state != STORE_KEY_DESTROYED) {
		r = kw_fail(KW_E_CONFLICT, "master-key version %u of vault '%s' is destroyed: "
		    "it cannot come back", version, vault);
		goto end;
	}
	if (state != STORE_KEY_ACTIVE && v.key_version == version) {
		r = kw_fail(KW_E_CONFLICT, "master-key version %u is the current key of vault '%s': "
		    "make another version current first", version, vault);
		goto end;
	}
	/* Counted in the transaction that retires: a write cannot slip a
	 * record under the version between the count and the change (the
	 * write, in turn, checks the version's state in its own). */
	if (state != STORE_KEY_ACTIVE && old == STORE_KEY_ACTIVE) {
		uint64_t used = 0;
		if ((r = key_count(e, c, vault, version, &used)) != 0)
			goto end;
		if (used > 0) {
			r = kw_fail(KW_E_CONFLICT, "%llu record(s) of vault '%s' still use master key "
			    "version %u", (unsigned long long)used, vault, version);
			goto end;
		}
	}
	if (state == STORE_KEY_ACTIVE)
		retired = 0;
	else if (retired == 0)
		retired = when;
	if ((r = st_get(e, c, ST_KEY_SET_STATE, &st)) != 0)
		goto end;
	if ((bind_text(st, 1, vault) | sqlite3_bind_int64(st, 2, version) |
	    sqlite3_bind_int(st, 3, (int)state) | sqlite3_bind_int64(st, 4, retired)) != SQLITE_OK)
		r = bind_fail(e, c, st, "changing a master key's state");
	else
		r = st_exec(e, c, st, "changing a master key's state");
end:
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	return r;
}

static int
sq_skey_set_enabled(struct store_engine *e, const char *vault, const char *name,
    uint32_t version, int enabled, int64_t when)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	const char *what = enabled ? "enabling a signing key" : "disabling a signing key";
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = vault_read(e, c, vault, NULL)) != 0 ||
	    (r = st_get(e, c, enabled ? ST_SKEY_ENABLE : ST_SKEY_DISABLE, &st)) != 0)
		goto end;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name) | sqlite3_bind_int64(st, 3, version) |
	    (enabled ? SQLITE_OK : sqlite3_bind_int64(st, 4, when))) != SQLITE_OK)
		r = bind_fail(e, c, st, what);
	else
		r = st_exec(e, c, st, what);
end:
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	return r;
}

static int
sq_skey_disabled(struct store_engine *e, const char *vault, const char *name, uint32_t **out,
    size_t *nout)
{
	struct conn *c = NULL;
	uint32_t *arr = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_SKEY_DISABLED, &st)) != 0)
		goto out;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name)) != SQLITE_OK) {
		r = bind_fail(e, c, st, "reading the disabled versions of a signing key");
		goto out;
	}
	while ((r = st_step(e, c, st, "reading the disabled versions of a signing key")) == 1) {
		if ((r = grow((void **)&arr, &cap, n, sizeof(*arr))) != 0)
			break;
		arr[n++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_reset(st);
	if (r == 0) {
		*out = arr;
		*nout = n;
		arr = NULL;
	}
out:
	conn_put(e, c);
	free(arr);
	return r;
}

static int
sq_key_list(struct store_engine *e, const char *vault, struct store_key **out, size_t *nout)
{
	struct conn *c = NULL;
	struct store_key *arr = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_KEY_LIST, &st)) != 0)
		goto out;
	if (bind_text(st, 1, vault) != SQLITE_OK) {
		r = bind_fail(e, c, st, "listing master keys");
		goto out;
	}
	while ((r = st_step(e, c, st, "listing master keys")) == 1) {
		struct store_key *k;
		size_t idlen = (size_t)sqlite3_column_bytes(st, 1);
		if ((r = grow((void **)&arr, &cap, n, sizeof(*arr))) != 0)
			break;
		k = &arr[n++];
		memset(k, 0, sizeof(*k));
		k->version = (uint32_t)sqlite3_column_int64(st, 0);
		if (idlen > sizeof(k->key_id))
			idlen = sizeof(k->key_id);
		if (idlen > 0)
			memcpy(k->key_id, sqlite3_column_blob(st, 1), idlen);
		k->state = (enum store_key_state)sqlite3_column_int(st, 2);
		k->created = sqlite3_column_int64(st, 3);
		k->retired = sqlite3_column_int64(st, 4);
	}
	sqlite3_reset(st);
	if (r == 0) {
		*out = arr;
		*nout = n;
		arr = NULL;
	}
out:
	conn_put(e, c);
	free(arr);
	return r;
}

static int
sq_key_usage(struct store_engine *e, const char *vault, uint32_t version, uint64_t *count)
{
	struct conn *c = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	r = key_count(e, c, vault, version, count);
	conn_put(e, c);
	return r;
}

/* ---- secrets --------------------------------------------------------------------------------- */


/* Whether a record may go under its master-key version, asked inside the
 * writing transaction (a retirement counts in its own, so no record slips in
 * between).  Never under a version retired or destroyed: nothing could open
 * it.  A new version (current: the vault's current key) only under the
 * current one: one picked before a rotation switched it would land behind
 * the rotation's walk, after its last count; the caller picks again on
 * KW_E_RETIRED.  A version the store does not know is the caller's to vouch
 * for (a restore into a new store on the same token). */
static int
key_writable(struct store_engine *e, struct conn *c, const char *vault,
    const struct store_meta *m, uint32_t current)
{
	int64_t retired;
	int r, state;

	if (current != 0 && m->key_version == current)
		return 0;                 /* the current version is always active */
	r = key_read(e, c, vault, m->key_version, &state, &retired);
	if (r == KW_E_NOT_FOUND) {
		kw_errclear();
		return 0;
	}
	if (r != 0)
		return r;
	if (current != 0)
		return kw_fail(KW_E_RETIRED, "master-key version %u of vault '%s' is no longer the "
		    "current one (%u is): '%s' was not written", m->key_version, vault, current,
		    m->name);
	if (state != STORE_KEY_ACTIVE)
		return kw_fail(KW_E_RETIRED, "master-key version %u of vault '%s' is %s: '%s' "
		    "version %llu was not written", m->key_version, vault,
		    state == STORE_KEY_RETIRED ? "retired" : "destroyed", m->name,
		    (unsigned long long)m->version);
	return 0;
}

static int
secret_insert(struct store_engine *e, struct conn *c, const char *vault,
    const struct store_record *rec)
{
	const struct store_meta *m = &rec->meta;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = st_get(e, c, ST_SECRET_NEW, &st)) != 0)
		return r;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, m->name) |
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)m->version) |
	    sqlite3_bind_int64(st, 4, m->key_version) |
	    sqlite3_bind_blob(st, 5, rec->wrapped, (int)rec->wrapped_len, SQLITE_STATIC) |
	    sqlite3_bind_blob(st, 6, rec->nonce, sizeof(rec->nonce), SQLITE_STATIC) |
	    sqlite3_bind_blob64(st, 7, rec->body ? (const void *)rec->body : (const void *)"",
		rec->body_len, SQLITE_STATIC) |
	    sqlite3_bind_int(st, 8, m->enabled != 0) |
	    sqlite3_bind_int64(st, 9, m->not_before) | sqlite3_bind_int64(st, 10, m->expires) |
	    bind_text(st, 11, m->content_type) | bind_text(st, 12, store_tags_text(m->tags)) |
	    sqlite3_bind_int64(st, 13, m->created) | sqlite3_bind_int64(st, 14, m->updated)) != SQLITE_OK)
		return bind_fail(e, c, st, "writing a secret version");
	return st_exec(e, c, st, "writing a secret version");
}

/* The state of a name on c: 0 with *current and *deleted (0, 0 if absent). */
static int
name_state(struct store_engine *e, struct conn *c, const char *vault, const char *name,
    uint64_t *current, int *deleted)
{
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = st_get(e, c, ST_NAME_STATE, &st)) != 0)
		return r;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name)) != SQLITE_OK)
		return bind_fail(e, c, st, "reading a secret");
	*current = 0;
	*deleted = 0;
	if ((r = st_step(e, c, st, "reading a secret")) == 1) {
		*current = (uint64_t)sqlite3_column_int64(st, 0);
		*deleted = sqlite3_column_int(st, 1);
		r = 0;
	}
	sqlite3_reset(st);
	return r;
}

/* One put inside the leader's transaction.  *wrote says whether it
 * changed anything before failing (then the transaction must go). */
static int
put_one(struct store_engine *e, struct conn *c, const char *vault,
    const struct store_record *rec, uint64_t *current, int *wrote)
{
	const char *name = rec->meta.name;
	struct store_vault v;
	sqlite3_stmt *st = NULL;
	uint64_t cur = 0;
	int r, deleted = 0;

	*wrote = 0;
	if ((r = vault_read(e, c, vault, &v)) != 0 ||
	    (r = key_writable(e, c, vault, &rec->meta, v.key_version)) != 0)
		return r;
	/* The version check, inside the write transaction. */
	if ((r = name_state(e, c, vault, name, &cur, &deleted)) != 0)
		return r;
	if (deleted) {
		*current = 0;
		return kw_fail(KW_E_CONFLICT, "'%s' is deleted in vault '%s': recover or purge it "
		    "before writing it again", name, vault);
	}
	if (rec->meta.version != cur + 1) {
		*current = cur;
		return kw_fail(KW_E_CONFLICT, "'%s' in vault '%s' is at version %llu: version %llu "
		    "cannot be written", name, vault, (unsigned long long)cur,
		    (unsigned long long)rec->meta.version);
	}
	if (cur == 0) {
		if ((r = st_get(e, c, ST_NAME_NEW, &st)) != 0)
			return r;
	} else if ((r = st_get(e, c, ST_NAME_SET_CURRENT, &st)) != 0) {
		return r;
	}
	*wrote = 1;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name) |
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)rec->meta.version)) != SQLITE_OK)
		return bind_fail(e, c, st, "writing a secret version");
	if ((r = st_exec(e, c, st, "writing a secret version")) != 0)
		return r;
	return secret_insert(e, c, vault, rec);
}

static void
put_finish(struct put_req *q, int r)
{
	q->r = r;
	if (r != 0)
		snprintf(q->why, sizeof(q->why), "%s", kw_errdetail(r));
}

/* The leader: write a batch of puts in as few transactions as it can (one,
 * unless a put fails half-way: that one alone is dropped and the others
 * are written again). */
static void
put_batch(struct store_engine *e, struct put_req *list)
{
	struct conn *c = NULL;
	struct put_req *q;
	struct timespec ts;
	sqlite3_stmt *st = NULL;
	size_t left = 0;
	int r, wrote;

	for (q = list; q != NULL; q = q->next) {
		q->r = 1;       /* not final */
		left++;
	}
	if ((r = conn_get(e, &c)) != 0)
		goto fail;
	kw_deadline_ms(&ts, e->busy_ms);
	if (pthread_mutex_timedlock(&e->wlock, &ts) != 0) {
		r = kw_fail(KW_E_UNAVAILABLE, "store: another write to %s took longer than %u ms: "
		    "try again", e->path, e->busy_ms);
		goto fail;
	}
	c->writing = 1;
	while (left > 0) {
		struct put_req *hard = NULL;
		if ((r = st_get(e, c, ST_BEGIN_WRITE, &st)) != 0 ||
		    (r = st_exec(e, c, st, "starting a transaction")) != 0)
			goto fail;
		for (q = list; q != NULL && hard == NULL; q = q->next) {
			if (q->r != 1)
				continue;
			r = put_one(e, c, q->vault, q->rec, &q->cur, &wrote);
			if (r != 0 && (wrote || (r != KW_E_CONFLICT && r != KW_E_NOT_FOUND &&
			    r != KW_E_RETIRED)))
				hard = q;
			else if (r != 0)
				put_finish(q, r), left--;
			else
				q->r = 2;       /* written, not yet committed */
		}
		if (hard != NULL) {
			/* Drop the transaction and the put that broke it; write
			 * the others again. */
			put_finish(hard, r);
			left--;
			tx_abort(c);
			for (q = list; q != NULL; q = q->next)
				if (q->r == 2)
					q->r = 1;
			continue;
		}
		if ((r = st_get(e, c, ST_COMMIT, &st)) == 0)
			r = st_exec(e, c, st, "committing");
		if (r != 0)
			tx_abort(c);
		for (q = list; q != NULL; q = q->next)
			if (q->r == 2)
				put_finish(q, r), left--;
	}
	r = 0;
fail:
	for (q = list; q != NULL; q = q->next)
		if (q->r == 1 || q->r == 2)
			put_finish(q, r);
	if (c != NULL && c->writing) {
		tx_abort(c);
		c->writing = 0;
		pthread_mutex_unlock(&e->wlock);
	}
	conn_put(e, c);
}

/* Queue the put; the first waiting thread to find no leader at work leads
 * and writes every queued put with one commit, so concurrent writers share
 * an fsync. */
static int
sq_secret_put(struct store_engine *e, const char *vault, const struct store_record *rec,
    uint64_t *current)
{
	struct put_req me, *list, *q;
	struct timespec ts;
	int timedout = 0;

	memset(&me, 0, sizeof(me));
	me.vault = vault;
	me.rec = rec;
	kw_deadline_ms(&ts, e->busy_ms);
	pthread_mutex_lock(&e->qlock);
	*e->qtail = &me;
	e->qtail = &me.next;
	while (!me.done) {
		if (!e->leading) {
			e->leading = 1;
			list = e->qhead;
			e->qhead = NULL;
			e->qtail = &e->qhead;
			for (q = list; q != NULL; q = q->next)
				q->taken = 1;
			pthread_mutex_unlock(&e->qlock);

			put_batch(e, list);

			pthread_mutex_lock(&e->qlock);
			for (q = list; q != NULL; q = q->next)
				q->done = 1;
			e->leading = 0;
			pthread_cond_broadcast(&e->qcond);
			continue;
		}
		if (timedout && !me.taken) {
			/* Still queued after the timeout: leave the queue. */
			struct put_req **pp = &e->qhead;
			while (*pp != &me)
				pp = &(*pp)->next;
			*pp = me.next;
			if (e->qtail == &me.next)
				e->qtail = pp;
			pthread_mutex_unlock(&e->qlock);
			return kw_fail(KW_E_UNAVAILABLE, "store: writes to %s stayed queued for more "
			    "than %u ms: try again", e->path, e->busy_ms);
		}
		if (timedout)   /* a leader has it: it will finish */
			pthread_cond_wait(&e->qcond, &e->qlock);
		else if (pthread_cond_timedwait(&e->qcond, &e->qlock, &ts) == ETIMEDOUT)
			timedout = 1;
	}
	pthread_mutex_unlock(&e->qlock);
	if (me.r == 0)
		return 0;
	if (me.r == KW_E_CONFLICT && current != NULL)
		*current = me.cur;
	return kw_fail(me.r, "%s", me.why);
}

static int
sq_secret_current(struct store_engine *e, const char *vault, const char *name, uint64_t *version)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	uint64_t v = 0;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_CURRENT, &st)) != 0)
		goto out;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name)) != SQLITE_OK) {
		r = bind_fail(e, c, st, "reading a secret");
		goto out;
	}
	if ((r = st_step(e, c, st, "reading a secret")) == 1) {
		v = (uint64_t)sqlite3_column_int64(st, 0);
		r = 0;
	}
	sqlite3_reset(st);
	if (r == 0)
		*version = v;
out:
	conn_put(e, c);
	return r;
}

static int
sq_secret_get(struct store_engine *e, const char *vault, const char *name, uint64_t version,
    struct store_record *out)
{
	struct conn *c = NULL;
	struct store_record rec;
	sqlite3_stmt *st = NULL;
	int r;

	memset(&rec, 0, sizeof(rec));
	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_GET, &st)) != 0)
		goto out;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name) |
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)version)) != SQLITE_OK) {
		r = bind_fail(e, c, st, "reading a secret");
		goto out;
	}
	if ((r = st_step(e, c, st, "reading a secret")) == 1)
		r = row_record(st, &rec, 1);
	else if (r == 0 && version == 0)
		r = kw_fail(KW_E_NOT_FOUND, "no secret '%s' in vault '%s'", name, vault);
	else if (r == 0)
		r = kw_fail(KW_E_NOT_FOUND, "secret '%s' in vault '%s' has no version %llu", name,
		    vault, (unsigned long long)version);
	sqlite3_reset(st);
out:
	conn_put(e, c);
	if (r == 0) {
		*out = rec;
		rec.body = NULL;
	}
	store_record_clear(&rec);
	return r;
}

static int
sq_read_begin(struct store_engine *e)
{
	struct conn *c;
	int r;

	if (pinned != NULL)
		return 0;
	if ((r = conn_take(e, 1, &c)) != 0)
		return r;
	if (!c->reader) {
		char sql[48];

		snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", READ_CACHE_KIB);
		if ((r = pragma_int(e, c->db, sql, NULL)) != 0) {
			conn_put(e, c);
			return r;
		}
		c->reader = 1;
	}
	/* Deferred: the snapshot is taken at the first read.  A prepared
	 * BEGIN, not sqlite3_exec, which parses its text at every call. */
	if ((r = tx_begin(e, c, 0)) != 0) {
		conn_put(e, c);
		return r;
	}
	pinned = c;
	pinned_e = e;
	return 0;
}

static void
sq_read_end(struct store_engine *e)
{
	struct conn *c = pinned;

	if (c == NULL || pinned_e != e)
		return;
	pinned = NULL;
	pinned_e = NULL;
	if (!sqlite3_get_autocommit(c->db))
		(void)tx_end(e, c, 0);   /* a failed commit is rolled back */
	conn_put(e, c);
}

static int
sq_secret_versions(struct store_engine *e, const char *vault, const char *name,
    struct store_meta **out, size_t *nout)
{
	struct conn *c = NULL;
	struct store_meta *arr = NULL;
	sqlite3_stmt *st = NULL;
	size_t n = 0;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_VERSIONS, &st)) != 0)
		goto out;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name)) != SQLITE_OK) {
		r = bind_fail(e, c, st, "listing versions");
		goto out;
	}
	if ((r = rows_meta(e, c, st, "listing versions", &arr, &n)) != 0)
		goto out;
	if (n == 0) {
		free(arr);
		r = kw_fail(KW_E_NOT_FOUND, "no secret '%s' in vault '%s'", name, vault);
		goto out;
	}
	*out = arr;
	*nout = n;
out:
	conn_put(e, c);
	return r;
}

/* The smallest string greater than every string that starts with p, into
 * out; 0 if there is none ("" or only 0xff bytes). */
static size_t
prefix_successor(const char *p, char *out, size_t size)
{
	size_t n = strlen(p);

	if (n >= size)
		return 0;
	memcpy(out, p, n);
	while (n > 0) {
		unsigned char ch = (unsigned char)out[n - 1];
		if (ch < 0xff) {
			out[n - 1] = (char)(ch + 1);
			out[n] = '\0';
			return n;
		}
		n--;
	}
	return 0;
}

static int
sq_secret_list(struct store_engine *e, const char *vault, const char *prefix, const char *after,
    size_t limit, struct store_meta **out, size_t *nout)
{
	struct conn *c = NULL;
	char upper[STORE_NAME_MAX + 1];
	size_t ulen = prefix_successor(prefix, upper, sizeof(upper));
	const char *lower = strcmp(after, prefix) > 0 ? after : prefix;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_LIST, &st)) != 0)
		goto out;
	/* A range on the name, never LIKE: '%' and '_' in a prefix are
	 * ordinary characters.  The lower bound is the greater of the prefix
	 * and the cursor, so that the index search starts at the page.  No
	 * upper bound: an empty blob, which sorts after every text. */
	if ((bind_text(st, 1, vault) | bind_text(st, 2, lower) |
	    (ulen > 0 ? sqlite3_bind_text(st, 3, upper, (int)ulen, SQLITE_STATIC) :
	    sqlite3_bind_zeroblob(st, 3, 0)) | bind_text(st, 4, after) |
	    sqlite3_bind_int64(st, 5, limit == 0 || limit > INT64_MAX ? -1 : (sqlite3_int64)limit)) !=
	    SQLITE_OK) {
		r = bind_fail(e, c, st, "listing secrets");
		goto out;
	}
	r = rows_meta(e, c, st, "listing secrets", out, nout);
out:
	conn_put(e, c);
	return r;
}

/* The metadata of version (0: current) of a name, live or deleted, on c.
 * *deleted (may be NULL) says which. */
static int
meta_read(struct store_engine *e, struct conn *c, const char *vault, const char *name,
    uint64_t version, struct store_meta *out, int *deleted)
{
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = st_get(e, c, ST_META, &st)) != 0)
		return r;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name) |
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)version)) != SQLITE_OK)
		return bind_fail(e, c, st, "reading a secret");
	if ((r = st_step(e, c, st, "reading a secret")) == 1) {
		row_meta(st, out);
		if (deleted != NULL)
			*deleted = sqlite3_column_int(st, COL_DELETED_FLAG);
		r = 0;
	} else if (r == 0) {
		r = kw_fail(KW_E_NOT_FOUND, "no secret '%s' in vault '%s'", name, vault);
	}
	sqlite3_reset(st);
	return r;
}

static int
sq_secret_update(struct store_engine *e, const char *vault, const char *name, uint64_t version,
    unsigned mask, const struct store_meta *a, int64_t now, struct store_meta *out)
{
	struct conn *c = NULL;
	struct store_meta m;
	sqlite3_stmt *st = NULL;
	uint64_t cur;
	int r, deleted;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = name_state(e, c, vault, name, &cur, &deleted)) != 0)
		goto end;
	if (cur == 0 || deleted) {
		r = kw_fail(KW_E_NOT_FOUND, "no secret '%s' in vault '%s'", name, vault);
		goto end;
	}
	if (version == 0)
		version = cur;
	if ((r = st_get(e, c, ST_UPDATE, &st)) != 0)
		goto end;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name) |
	    sqlite3_bind_int64(st, 3, (sqlite3_int64)version) | sqlite3_bind_int(st, 4, (int)(mask & 31)) |
	    sqlite3_bind_int(st, 5, a->enabled != 0) | sqlite3_bind_int64(st, 6, a->not_before) |
	    sqlite3_bind_int64(st, 7, a->expires) | bind_text(st, 8, a->content_type) |
	    bind_text(st, 9, store_tags_text(a->tags)) | sqlite3_bind_int64(st, 10, now)) != SQLITE_OK) {
		r = bind_fail(e, c, st, "changing attributes");
		goto end;
	}
	if ((r = st_exec(e, c, st, "changing attributes")) != 0)
		goto end;
	if (sqlite3_changes(c->db) == 0) {
		r = kw_fail(KW_E_NOT_FOUND, "secret '%s' in vault '%s' has no version %llu", name, vault,
		    (unsigned long long)version);
		goto end;
	}
	r = meta_read(e, c, vault, name, version, &m, NULL);
end:
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	if (r == 0 && out != NULL)
		*out = m;
	return r;
}

/* Delete or recover: run the statement id, then read the current meta. */
static int
name_change(struct store_engine *e, const char *vault, const char *name, enum st id,
    int64_t now, int64_t purge, struct store_meta *out, const char *what, const char *missing)
{
	struct conn *c = NULL;
	struct store_meta m;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = st_get(e, c, id, &st)) != 0)
		goto end;
	if ((bind_text(st, 1, vault) | bind_text(st, 2, name)) != SQLITE_OK ||
	    (id == ST_DELETE && (sqlite3_bind_int64(st, 3, now) |
	    sqlite3_bind_int64(st, 4, purge)) != SQLITE_OK) ||
	    (id == ST_PURGE && sqlite3_bind_int64(st, 3, now) != SQLITE_OK)) {
		r = bind_fail(e, c, st, what);
		goto end;
	}
	if ((r = st_exec(e, c, st, what)) != 0)
		goto end;
	if (sqlite3_changes(c->db) == 0) {
		r = kw_fail(KW_E_NOT_FOUND, "no %s secret '%s' in vault '%s'", missing, name, vault);
		goto end;
	}
	if (id != ST_PURGE)
		r = meta_read(e, c, vault, name, 0, &m, NULL);
end:
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	if (r == 0 && out != NULL)
		*out = m;
	return r;
}

static int
sq_secret_delete(struct store_engine *e, const char *vault, const char *name, int64_t now,
    int64_t scheduled_purge, struct store_meta *out)
{
	return name_change(e, vault, name, ST_DELETE, now, scheduled_purge, out,
	    "deleting a secret", "live");
}

static int
sq_secret_recover(struct store_engine *e, const char *vault, const char *name,
    struct store_meta *out)
{
	return name_change(e, vault, name, ST_RECOVER, 0, 0, out, "recovering a secret", "deleted");
}

static int
sq_secret_purge(struct store_engine *e, const char *vault, const char *name, int64_t due_by)
{
	return name_change(e, vault, name, ST_PURGE, due_by, 0, NULL, "purging a secret",
	    due_by != 0 ? "deleted (and due for purge)" : "deleted");
}

static int
sq_deleted_list(struct store_engine *e, const char *vault, struct store_meta **out, size_t *nout)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_DELETED_LIST, &st)) != 0)
		goto out;
	if (bind_text(st, 1, vault) != SQLITE_OK) {
		r = bind_fail(e, c, st, "listing deleted secrets");
		goto out;
	}
	r = rows_meta(e, c, st, "listing deleted secrets", out, nout);
out:
	conn_put(e, c);
	return r;
}

static int
sq_deleted_get(struct store_engine *e, const char *vault, const char *name, struct store_meta *out)
{
	struct conn *c = NULL;
	struct store_meta m;
	int r, deleted = 0;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	r = meta_read(e, c, vault, name, 0, &m, &deleted);
	if (r == KW_E_NOT_FOUND || (r == 0 && !deleted))
		r = kw_fail(KW_E_NOT_FOUND, "no deleted secret '%s' in vault '%s'", name, vault);
	conn_put(e, c);
	if (r == 0)
		*out = m;
	return r;
}

/* ---- rotation ----------------------------------------------------------------------------------- */

static int
sq_rewrap_scan(struct store_engine *e, const char *vault, uint32_t target, const char *after_name,
    uint64_t after_version, size_t limit, struct store_rewrap_rec **out, size_t *nout)
{
	struct conn *c = NULL;
	struct store_rewrap_rec *arr = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = st_get(e, c, ST_REWRAP_SCAN, &st)) != 0)
		goto out;
	if ((bind_text(st, 1, vault) | sqlite3_bind_int64(st, 2, target) |
	    bind_text(st, 3, after_name) | sqlite3_bind_int64(st, 4, (sqlite3_int64)after_version) |
	    sqlite3_bind_int64(st, 5, limit == 0 || limit > INT64_MAX ? -1 : (sqlite3_int64)limit)) !=
	    SQLITE_OK) {
		r = bind_fail(e, c, st, "scanning for rotation");
		goto out;
	}
	while ((r = st_step(e, c, st, "scanning for rotation")) == 1) {
		struct store_rewrap_rec *x;
		const char *name = (const char *)sqlite3_column_text(st, 0);

		if ((r = grow((void **)&arr, &cap, n, sizeof(*arr))) != 0)
			break;
		x = &arr[n];
		if (name == NULL || strlen(name) > STORE_NAME_MAX) {
			r = kw_fail(KW_E_FORMAT, "store: a record of vault '%s' has no name or one longer "
			    "than %d bytes", vault, STORE_NAME_MAX);
			break;
		}
		memcpy(x->name, name, strlen(name) + 1);
		x->version = (uint64_t)sqlite3_column_int64(st, 1);
		x->key_version = (uint32_t)sqlite3_column_int64(st, 2);
		/* A wrapped key too long to be one is returned empty, not
		 * an error: the rotation leaves that record, counted and
		 * logged, and goes on with the others. */
		if (col_wrapped(st, 3, x->name, x->version, x->wrapped, &x->wrapped_len) != 0) {
			x->wrapped_len = 0;
			kw_errclear();
		}
		n++;
	}
	sqlite3_reset(st);
	if (r == 0) {
		*out = arr;
		*nout = n;
		arr = NULL;
	}
out:
	conn_put(e, c);
	free(arr);
	return r;
}

static int
sq_rewrap_apply(struct store_engine *e, const char *vault, const struct store_rewrap *batch,
    size_t n, size_t *applied)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	size_t done = 0;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = st_get(e, c, ST_REWRAP_APPLY, &st)) != 0)
		goto end;
	for (size_t i = 0; i < n && r == 0; i++) {
		const struct store_rewrap *w = &batch[i];
		if ((bind_text(st, 1, vault) | bind_text(st, 2, w->name) |
		    sqlite3_bind_int64(st, 3, (sqlite3_int64)w->version) |
		    sqlite3_bind_int64(st, 4, w->old_key_version) |
		    sqlite3_bind_int64(st, 5, w->new_key_version) |
		    sqlite3_bind_blob(st, 6, w->wrapped, (int)w->wrapped_len, SQLITE_STATIC) |
		    sqlite3_bind_blob(st, 7, w->old_wrapped, (int)w->old_wrapped_len,
		    SQLITE_STATIC)) != SQLITE_OK)
			r = bind_fail(e, c, st, "rewrapping data keys");
		else if ((r = st_exec(e, c, st, "rewrapping data keys")) == 0)
			done += (size_t)sqlite3_changes(c->db);
	}
end:
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	if (r == 0)
		*applied = done;
	return r;
}

/* ---- backup / restore ---------------------------------------------------------------------------- */

static int
sq_vault_export(struct store_engine *e, const char *vault,
    int (*fn)(void *arg, const struct store_record *rec),
    int (*mark_fn)(void *arg, const struct store_skey_mark *m), void *arg)
{
	struct conn *c = NULL;
	struct store_record rec;
	struct store_skey_mark mark;
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	/* One read transaction: one snapshot for the vault and all its rows. */
	if ((r = tx_begin(e, c, 0)) != 0)
		goto out;
	if ((r = vault_read(e, c, vault, NULL)) != 0 || (r = st_get(e, c, ST_EXPORT, &st)) != 0)
		goto end;
	if (bind_text(st, 1, vault) != SQLITE_OK) {
		r = bind_fail(e, c, st, "exporting a vault");
		goto end;
	}
	while ((r = st_step(e, c, st, "exporting a vault")) == 1) {
		if ((r = row_record(st, &rec, 0)) != 0)
			break;
		/* The body is lent from SQLite's row for the call. */
		rec.body = (uint8_t *)(uintptr_t)sqlite3_column_blob(st, COL_BODY);
		rec.body_len = (size_t)sqlite3_column_bytes(st, COL_BODY);
		if ((r = fn(arg, &rec)) != 0)
			break;
	}
	sqlite3_reset(st);
	if (r != 0 || mark_fn == NULL || (r = st_get(e, c, ST_SKEY_EXPORT, &st)) != 0)
		goto end;
	if (bind_text(st, 1, vault) != SQLITE_OK) {
		r = bind_fail(e, c, st, "exporting a vault's disabled signing keys");
		goto end;
	}
	while ((r = st_step(e, c, st, "exporting a vault's disabled signing keys")) == 1) {
		const unsigned char *name = sqlite3_column_text(st, 0);
		snprintf(mark.name, sizeof(mark.name), "%s", name ? (const char *)name : "");
		mark.version = (uint32_t)sqlite3_column_int64(st, 1);
		mark.since = sqlite3_column_int64(st, 2);
		if ((r = mark_fn(arg, &mark)) != 0)
			break;
	}
	sqlite3_reset(st);
end:
	/* Only reads: ending with a rollback keeps fn's result. */
	tx_rollback(e, c);
out:
	conn_put(e, c);
	return r;
}

static int
sq_vault_import(struct store_engine *e, const char *vault, const struct store_record *recs,
    size_t n, const struct store_skey_mark *marks, size_t nmarks)
{
	struct conn *c = NULL;
	sqlite3_stmt *st = NULL;
	size_t i;
	int r;

	if ((r = conn_get(e, &c)) != 0)
		return r;
	if ((r = tx_begin(e, c, 1)) != 0)
		goto out;
	if ((r = vault_read(e, c, vault, NULL)) != 0)
		goto end;
	/* Refuse before writing anything if any name exists, or any record
	 * would go under a retired version (asked once a version). */
	for (i = 0; i < n && r == 0; i++) {
		uint64_t cur;
		int deleted;
		if ((r = name_state(e, c, vault, recs[i].meta.name, &cur, &deleted)) == 0 && cur != 0)
			r = kw_fail(KW_E_CONFLICT, "'%s' already exists in vault '%s'%s: nothing was "
			    "restored", recs[i].meta.name, vault, deleted ? " (deleted)" : "");
		if (r == 0 && (i == 0 || recs[i].meta.key_version != recs[i - 1].meta.key_version))
			r = key_writable(e, c, vault, &recs[i].meta, 0);
	}
	if (r != 0 || (r = st_get(e, c, ST_NAME_IMPORT, &st)) != 0)
		goto end;
	for (i = 0; i < n && r == 0; i++) {
		const struct store_meta *m = &recs[i].meta;
		int bad = bind_text(st, 1, vault) | bind_text(st, 2, m->name) |
		    sqlite3_bind_int64(st, 3, (sqlite3_int64)m->version);
		if (m->deleted != 0)
			bad |= sqlite3_bind_int64(st, 4, m->deleted) |
			    sqlite3_bind_int64(st, 5, m->scheduled_purge);
		else
			bad |= sqlite3_bind_null(st, 4) | sqlite3_bind_null(st, 5);
		if (bad != SQLITE_OK)
			r = bind_fail(e, c, st, "restoring a vault");
		else if ((r = st_exec(e, c, st, "restoring a vault")) == 0 &&
		    (r = secret_insert(e, c, vault, &recs[i])) == KW_E_CONFLICT)
			r = kw_fail(KW_E_CONFLICT, "record %zu: '%s' version %llu appears twice: nothing "
			    "was restored", i, m->name, (unsigned long long)m->version);
	}
	if (r != 0 || nmarks == 0 || (r = st_get(e, c, ST_SKEY_DISABLE, &st)) != 0)
		goto end;
	for (i = 0; i < nmarks && r == 0; i++) {
		if ((bind_text(st, 1, vault) | bind_text(st, 2, marks[i].name) |
		    sqlite3_bind_int64(st, 3, marks[i].version) |
		    sqlite3_bind_int64(st, 4, marks[i].since)) != SQLITE_OK)
			r = bind_fail(e, c, st, "restoring a vault's disabled signing keys");
		else
			r = st_exec(e, c, st, "restoring a vault's disabled signing keys");
	}
end:
	r = tx_end(e, c, r);
out:
	conn_put(e, c);
	return r;
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.ping = sq_ping,
	.schema_version = sq_schema_version,
	.instance_id = sq_instance_id,
	.vault_ensure = sq_vault_ensure,
	.vault_get = sq_vault_get,
	.vault_set_attrs = sq_vault_set_attrs,
	.vault_list = sq_vault_list,
	.key_add = sq_key_add,
	.key_set_current = sq_key_set_current,
	.key_set_state = sq_key_set_state,
	.key_list = sq_key_list,
	.skey_set_enabled = sq_skey_set_enabled,
	.skey_disabled = sq_skey_disabled,
	.key_usage = sq_key_usage,
	.secret_put = sq_secret_put,
	.secret_current = sq_secret_current,
	.secret_get = sq_secret_get,
	.secret_versions = sq_secret_versions,
	.secret_list = sq_secret_list,
	.secret_update = sq_secret_update,
	.secret_delete = sq_secret_delete,
	.deleted_list = sq_deleted_list,
	.deleted_get = sq_deleted_get,
	.secret_recover = sq_secret_recover,
	.secret_purge = sq_secret_purge,
	.rewrap_scan = sq_rewrap_scan,
	.rewrap_apply = sq_rewrap_apply,
	.vault_export = sq_vault_export,
	.vault_import = sq_vault_import,
	.read_begin = sq_read_begin,
	.read_end = sq_read_end,
};
