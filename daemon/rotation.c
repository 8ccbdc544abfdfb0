/*
 * rotation.c - master-key versions: the in-memory view reads consult,
 * rotation with a background rewrap, retirement and destruction, and the
 * schedule.
 *
 * A rotation creates version N+1 in the token, uses it once (a random data
 * key wrapped under it must unwrap again), records it in the store and
 * makes it current before it answers: from then on every new write uses
 * it.  A rewrap thread then walks the vault's records in (name, version)
 * order, batch by batch: each record's data key is unwrapped under its old
 * version and wrapped under N+1 inside the token layer, and the batch is
 * written in one store transaction that changes a row only if it still
 * names the old version.  Bodies are never touched.  Nothing about the
 * progress needs to be saved: the store itself says which records are left
 * (key_version <> current), so a daemon killed at any point simply finds
 * them again at its next start and goes on.
 *
 * Locks: each vault's key view has a rwlock (readers: every secret read);
 * its rotation state a mutex.  Changes to versions go store first, then the
 * view, under the vault's admin mutex, so two admin calls never interleave.
 *
 * A view that could not be read back after a change in the store is stale:
 * the store may name a current version the view does not know, and writes
 * under the view's are refused by the store.  It is read again by the next
 * write the store refuses so (kwd_keys_refresh) and every second by the
 * maintenance thread, until that works; then, as at a start, a rewrap the
 * switch never started is resumed.  No restart is needed.
 */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "pkcs11/p11.h"
#include "daemon/audit_glue.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/seal.h"
#include "daemon/store.h"

/* Records per scan and per store transaction.  Each commit makes every
 * reader's connection drop its page cache, and each batch pays a scan, a
 * commit and its sync: at 100,000 records under `get` load, 2048 rewrapped
 * 17-20k records/s against 17k at 512 and 14k at 128, with `get` the same;
 * at about 70,000 records, 4096 rewrapped 15.1k/s on average against 13.7k
 * for 2048, faster in 7 of 8 alternating pairs, `get` the same
 * (docs/performance.md).  A writer waits at most one apply behind it: about
 * 10 ms at 2048, so about 20 ms here. */
#define REWRAP_BATCH 4096
#define PROGRESS_EVERY_US (2 * 1000000)   /* an audit progress event at most this often */
#define TOKEN_RETRIES 20                   /* a token error pauses, then retries a batch */
/* Counting the records left under each older version reads their whole
 * range of an index: 6-10 ms at 100,000 records.  While a rotation runs,
 * status requests share one count a second (at that size a poller every
 * 20 ms, as the bench polls, would keep a third of a core counting);
 * otherwise each reads the store afresh, so the proof after the end is
 * exact. */
#define REMAINING_EVERY_US 1000000

enum rot_state { ROT_IDLE = 0, ROT_RUNNING, ROT_DONE, ROT_FAILED };

static const char *const rot_state_names[] = { "idle", "running", "done", "failed" };

struct kwd_vault {
	char name[CONFIG_VAULT_MAX + 1];
	pthread_mutex_t admin;          /* serializes rotate/retire/destroy */

	pthread_rwlock_t lock;          /* guards current, keys, nkeys, stale, resume_due */
	uint32_t current;
	struct store_key *keys;
	size_t nkeys;
	int stale;                      /* the last read of the store failed */
	int resume_due;                 /* read again after that: look for a rewrap to resume */
	int64_t stale_logged;           /* (admin) when a failed retry was last logged */

	pthread_mutex_t rlock;          /* guards the rotation fields */
	enum rot_state state;
	pthread_t thread;
	int joinable;
	int stop;
	uint32_t target;
	uint64_t done, total, skipped;
	int64_t started, finished;
	int resumed;
	char actor[64];
	char error[256];
	json_t *rem;                    /* the last count while running, and when */
	int64_t rem_at;
	struct kwd *d;
};

/* ---- the key view ---------------------------------------------------------------- */

static struct kwd_vault *
vault_find(struct kwd *d, const char *name)
{
	for (size_t i = 0; i < d->nvaults; i++)
		if (strcmp(d->vaults[i].name, name) == 0)
			return &d->vaults[i];
	return NULL;
}

static void
maint_kick(struct kwd *d)
{
	pthread_mutex_lock(&d->maint_lock);
	d->maint_kick = 1;
	pthread_cond_broadcast(&d->maint_cond);
	pthread_mutex_unlock(&d->maint_lock);
}

/* Read the vault's versions from the store into the view.  A failure
 * leaves the view stale (see the top of this file); the read that ends
 * that wakes the maintenance thread to resume what the switch left. */
static int
view_refresh(struct kwd *d, struct kwd_vault *v)
{
	struct store_vault sv;
	struct store_key *keys = NULL, *old;
	size_t n = 0;
	int e, was_stale;

	if ((e = store_vault_get(d->store, v->name, &sv)) != 0 ||
	    (e = store_key_list(d->store, v->name, &keys, &n)) != 0) {
		pthread_rwlock_wrlock(&v->lock);
		was_stale = v->stale;
		v->stale = 1;
		pthread_rwlock_unlock(&v->lock);
		if (!was_stale)
			maint_kick(d);  /* to try again every second from now on */
		return e;
	}
	pthread_rwlock_wrlock(&v->lock);
	old = v->keys;
	v->keys = keys;
	v->nkeys = n;
	v->current = sv.key_version;
	was_stale = v->stale;
	v->stale = 0;
	if (was_stale)
		v->resume_due = 1;
	pthread_rwlock_unlock(&v->lock);
	free(old);
	if (was_stale) {
		log_notice("vault '%s': its master-key versions were read from the store again "
		    "(current: version %u)", v->name, sv.key_version);
		maint_kick(d);
	}
	return 0;
}

static int
view_stale(struct kwd_vault *v)
{
	int s;

	pthread_rwlock_rdlock(&v->lock);
	s = v->stale;
	pthread_rwlock_unlock(&v->lock);
	return s;
}

int
kwd_keys_refresh(struct kwd *d, const char *vault)
{
	struct kwd_vault *v = vault_find(d, vault);
	int e;

	if (v == NULL)
		return kw_fail(KW_E_NOT_FOUND, "no vault named '%s'", vault);
	/* After the change under way, if any: a read begun before it and
	 * put in place after it would take the view back. */
	pthread_mutex_lock(&v->admin);
	e = view_refresh(d, v);
	pthread_mutex_unlock(&v->admin);
	return e;
}

int
kwd_keys_load(struct kwd *d)
{
	int e;

	d->vaults = calloc(d->cfg->nvaults ? d->cfg->nvaults : 1, sizeof(*d->vaults));
	if (d->vaults == NULL)
		return -ENOMEM;
	d->nvaults = d->cfg->nvaults;
	pthread_mutex_init(&d->maint_lock, NULL);
	pthread_cond_init(&d->maint_cond, NULL);
	for (size_t i = 0; i < d->nvaults; i++) {
		struct kwd_vault *v = &d->vaults[i];
		snprintf(v->name, sizeof(v->name), "%s", d->cfg->vaults[i].name);
		pthread_mutex_init(&v->admin, NULL);
		pthread_rwlock_init(&v->lock, NULL);
		pthread_mutex_init(&v->rlock, NULL);
		v->d = d;
		if ((e = view_refresh(d, v)) != 0)
			return e;
	}
	return 0;
}

void
kwd_keys_free(struct kwd *d)
{
	for (size_t i = 0; i < d->nvaults; i++) {
		struct kwd_vault *v = &d->vaults[i];
		free(v->keys);
		json_decref(v->rem);
		pthread_mutex_destroy(&v->admin);
		pthread_rwlock_destroy(&v->lock);
		pthread_mutex_destroy(&v->rlock);
	}
	free(d->vaults);
	d->vaults = NULL;
	d->nvaults = 0;
}

int
kwd_keys_current(struct kwd *d, const char *vault, uint32_t *version)
{
	struct kwd_vault *v = vault_find(d, vault);
	uint32_t cur;

	if (v == NULL)
		return kw_fail(KW_E_NOT_FOUND, "no vault named '%s'", vault);
	pthread_rwlock_rdlock(&v->lock);
	cur = v->current;
	pthread_rwlock_unlock(&v->lock);
	if (cur == 0)
		return kw_fail(KW_E_KEY_NOT_FOUND, "vault '%s' has no master key yet", vault);
	*version = cur;
	return 0;
}

static int
view_state(struct kwd_vault *v, uint32_t version, enum store_key_state *st)
{
	int found = 0;

	pthread_rwlock_rdlock(&v->lock);
	for (size_t i = 0; i < v->nkeys; i++)
		if (v->keys[i].version == version) {
			*st = v->keys[i].state;
			found = 1;
			break;
		}
	pthread_rwlock_unlock(&v->lock);
	return found;
}

/* As kwd_keys_usable for the version a record's wrapped key names, which
 * must be the one the store gives (key_version): the token unwraps by the
 * former, while retirement, rotation and the count of a version's records go
 * by the latter. */
int
kwd_wrapped_key_usable(struct kwd *d, const char *vault, const char *name, uint64_t version,
    uint32_t key_version, const uint8_t *wrapped, size_t wrapped_len)
{
	unsigned bv = 0;

	if (p11_blob_info(wrapped, wrapped_len, &bv, NULL) != 0 || bv != key_version)
		return kw_fail(KW_E_AUTH, "record '%s' version %" PRIu64 " of vault '%s' is recorded "
		    "under master key version %u, but its wrapped key names version %u: the store "
		    "was changed outside keywarden", name, version, vault, key_version, bv);
	return kwd_keys_usable(d, vault, key_version);
}

int
kwd_keys_usable(struct kwd *d, const char *vault, uint32_t version)
{
	struct kwd_vault *v = vault_find(d, vault);
	enum store_key_state st;

	if (v == NULL)
		return kw_fail(KW_E_NOT_FOUND, "no vault named '%s'", vault);
	if (!view_state(v, version, &st))
		return kw_fail(KW_E_KEY_NOT_FOUND, "master key version %u of vault '%s' is not recorded",
		    version, vault);
	if (st != STORE_KEY_ACTIVE)
		return kw_fail(KW_E_RETIRED, "master key version %u of vault '%s' is %s", version, vault,
		    st == STORE_KEY_RETIRED ? "retired" : "destroyed");
	return 0;
}

/* A copy of the vault's versions (*keys malloc'd, free()) and its current
 * version, so the store can be asked about each without holding the lock. */
static int
view_snapshot(struct kwd_vault *v, struct store_key **keys, size_t *n, uint32_t *cur)
{
	int e = 0;

	*keys = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&v->lock);
	*cur = v->current;
	if (v->nkeys > 0) {
		if ((*keys = malloc(v->nkeys * sizeof(**keys))) != NULL) {
			memcpy(*keys, v->keys, v->nkeys * sizeof(**keys));
			*n = v->nkeys;
		} else {
			e = kw_fail(-ENOMEM, "out of memory for the key versions of vault '%s'", v->name);
		}
	}
	pthread_rwlock_unlock(&v->lock);
	return e;
}

/* How many records each non-current, not destroyed version still wraps, as
 * {"1":0,"2":17}; *left = their sum over active versions. */
static json_t *
remaining_json(struct kwd *d, struct kwd_vault *v, uint64_t *left, int *err)
{
	json_t *o = json_object();
	struct store_key *keys = NULL;
	size_t n = 0;
	uint32_t cur;
	int e;

	*left = 0;
	if ((*err = view_snapshot(v, &keys, &n, &cur)) != 0)
		return o;
	for (size_t i = 0; i < n; i++) {
		uint64_t c = 0;
		char k[16];
		if (keys[i].version == cur || keys[i].state == STORE_KEY_DESTROYED)
			continue;
		if ((e = store_key_usage(d->store, v->name, keys[i].version, &c)) != 0) {
			*err = e;
			break;
		}
		snprintf(k, sizeof(k), "%u", keys[i].version);
		json_object_set_new(o, k, json_integer((json_int_t)c));
		if (keys[i].state == STORE_KEY_ACTIVE)
			*left += c;
	}
	free(keys);
	return o;
}

/* ---- the rewrap ------------------------------------------------------------------- */

static int
rot_should_stop(struct kwd_vault *v)
{
	int s;
	pthread_mutex_lock(&v->rlock);
	s = v->stop;
	pthread_mutex_unlock(&v->rlock);
	return s;
}

/* Rewrap one record's data key into out; 0, or the token's error. */
static int
rewrap_one(struct kwd *d, const char *vault, const struct store_rewrap_rec *rec, uint32_t target,
    uint8_t *dek, uint8_t *out, size_t *outlen)
{
	char aad[400];
	size_t deklen = 0;
	int aadlen, e;

	aadlen = seal_aad(aad, sizeof(aad), vault, rec->name, rec->version);
	if (aadlen < 0)
		return kw_fail(KW_E_FORMAT, "record '%s' version %" PRIu64 ": name too long for its AAD",
		    rec->name, rec->version);
	e = p11_unwrap(d->p11, vault, rec->wrapped, rec->wrapped_len, aad, (size_t)aadlen, dek, &deklen);
	if (e == 0)
		e = p11_wrap(d->p11, vault, target, dek, deklen, aad, (size_t)aadlen, out, outlen);
	kw_wipe(dek, P11_DEK_MAX);
	return e;
}

static int
token_error(int e)
{
	return e == KW_E_P11 || e == KW_E_TOKEN || e == KW_E_PIN || e == KW_E_UNAVAILABLE;
}

static void
rot_progress_event(struct kwd_vault *v, const char *type)
{
	json_t *f;
	pthread_mutex_lock(&v->rlock);
	f = json_pack("{s:s,s:i,s:I,s:I,s:I}", "vault", v->name, "key_version", (int)v->target,
	    "done", (json_int_t)v->done, "total", (json_int_t)v->total, "skipped", (json_int_t)v->skipped);
	pthread_mutex_unlock(&v->rlock);
	audit_glue_admin(v->d, type, f);
}

static void *
rot_main(void *arg)
{
	struct kwd_vault *v = arg;
	struct kwd *d = v->d;
	struct store_rewrap_rec *recs = NULL;
	struct store_rewrap *batch = NULL;
	uint8_t *wrapped = NULL, *dek = NULL;
	char cursor[STORE_NAME_MAX + 1] = "";
	uint64_t cursor_ver = 0, left = 0;
	int64_t last_event = (int64_t)kwd_now_us();
	int have_cursor = 0, e = 0, retries = 0, passes = 0;
	uint32_t target;
	json_t *rem;

	pthread_mutex_lock(&v->rlock);
	target = v->target;
	pthread_mutex_unlock(&v->rlock);
	batch = calloc(REWRAP_BATCH, sizeof(*batch));
	wrapped = malloc((size_t)REWRAP_BATCH * P11_WRAPPED_MAX);
	dek = kw_secalloc(P11_DEK_MAX);
	if (batch == NULL || wrapped == NULL || dek == NULL) {
		e = kw_fail(-ENOMEM, "out of memory for a rewrap batch");
		goto out;
	}
	for (;;) {
		size_t n = 0, nb = 0, applied = 0, skipped = 0;

		if (rot_should_stop(v))
			goto stopped;
		e = store_rewrap_scan(d->store, v->name, target, have_cursor ? cursor : NULL, cursor_ver,
		    REWRAP_BATCH, &recs, &n);
		if (e != 0)
			goto retry;
		if (n == 0) {
			/* More passes from the start catch records a write
			 * begun before the switch, or a restore, put behind
			 * the cursor; then the walk is over.  A pass walks
			 * every record of the vault, so first ask the index
			 * whether any is left under an older active version
			 * (that count is what the end reports anyway). */
			if (have_cursor && passes++ < 2) {
				int re = 0;
				json_decref(remaining_json(d, v, &left, &re));
				if (re == 0 && left == 0)
					break;
				have_cursor = 0;
				continue;
			}
			break;
		}
		for (size_t i = 0; i < n; i++) {
			size_t wl = 0;
			/* the passes after the first meet again what the first
			 * left: counted and logged once */
			int first = passes == 0;
			/* Left: a record under a retired version (nothing can
			 * open it), or one whose store entry names another
			 * version than its wrapped key (changed outside
			 * keywarden: logged). */
			if ((e = kwd_wrapped_key_usable(d, v->name, recs[i].name, recs[i].version,
			    recs[i].key_version, recs[i].wrapped, recs[i].wrapped_len)) != 0) {
				if (e == KW_E_AUTH && first)
					log_err("rotation of vault '%s': %s: left as it is", v->name,
					    kw_errdetail(e));
				skipped += first;
				continue;
			}
			e = rewrap_one(d, v->name, &recs[i], target, dek, wrapped + nb * P11_WRAPPED_MAX, &wl);
			if (token_error(e))
				goto retry;
			if (e != 0) {
				/* A record that does not authenticate is left as
				 * it is, counted, and named in the log. */
				if (first)
					log_err("rotation of vault '%s': record '%s' version %" PRIu64 " left "
					    "under version %u: %s", v->name, recs[i].name, recs[i].version,
					    recs[i].key_version, kw_errdetail(e));
				skipped += first;
				continue;
			}
			batch[nb].name = recs[i].name;
			batch[nb].version = recs[i].version;
			batch[nb].old_key_version = recs[i].key_version;
			batch[nb].old_wrapped = recs[i].wrapped;
			batch[nb].old_wrapped_len = recs[i].wrapped_len;
			batch[nb].new_key_version = target;
			batch[nb].wrapped = wrapped + nb * P11_WRAPPED_MAX;
			batch[nb].wrapped_len = wl;
			nb++;
		}
		if (nb > 0 && (e = store_rewrap_apply(d->store, v->name, batch, nb, &applied)) != 0)
			goto retry;
		snprintf(cursor, sizeof(cursor), "%s", recs[n - 1].name);
		cursor_ver = recs[n - 1].version;
		have_cursor = 1;
		retries = 0;
		pthread_mutex_lock(&v->rlock);
		v->done += applied;
		v->skipped += skipped;
		pthread_mutex_unlock(&v->rlock);
		free(recs);
		recs = NULL;
		if ((int64_t)kwd_now_us() - last_event >= PROGRESS_EVERY_US) {
			rot_progress_event(v, "vault.rotation.progress");
			last_event = (int64_t)kwd_now_us();
		}
		continue;
retry:
		/* The token or the store failed: wait and try the batch
		 * again; give up after a while and say why. */
		free(recs);
		recs = NULL;
		if (++retries > TOKEN_RETRIES)
			goto out;
		log_warn("rotation of vault '%s': %s; retrying", v->name, kw_errdetail(e));
		{
			struct timespec ts = { 0, 250 * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	e = 0;
out:
	{
		int re = 0;
		rem = remaining_json(d, v, &left, &re);
		pthread_mutex_lock(&v->rlock);
		v->finished = (int64_t)kwd_now_us();
		if (e != 0 || re != 0) {
			v->state = ROT_FAILED;
			snprintf(v->error, sizeof(v->error), "%s", kw_errdetail(e != 0 ? e : re));
		} else {
			v->state = ROT_DONE;
			if (left > 0)
				snprintf(v->error, sizeof(v->error),
				    "%" PRIu64 " record(s) could not be rewrapped (see the log)", left);
		}
		pthread_mutex_unlock(&v->rlock);
		if (e != 0 || re != 0)
			log_err("rotation of vault '%s' failed: %s", v->name, v->error);
		else
			log_notice("rotation of vault '%s' to version %u finished: %" PRIu64
			    " records rewrapped, %" PRIu64 " left under older versions", v->name, target, v->done, left);
		audit_glue_admin(d, e != 0 || re != 0 ? "vault.rotation.failed" : "vault.rotation.finished",
		    json_pack("{s:s,s:i,s:I,s:I,s:o,s:f,s:s?}", "vault", v->name, "key_version", (int)target,
		    "done", (json_int_t)v->done, "skipped", (json_int_t)v->skipped, "remaining", rem,
		    "seconds", (double)(v->finished - v->started) / 1e6, "error", v->error[0] ? v->error : NULL));
	}
	goto cleanup;
stopped:
	log_notice("rotation of vault '%s' paused for shutdown; it resumes at the next start", v->name);
	rot_progress_event(v, "vault.rotation.paused");
cleanup:
	if (recs != NULL)
		free(recs);
	free(batch);
	free(wrapped);
	kw_secfree(dek);
	malloc_trim(0);   /* a rewrap's batches leave free heap behind */
	return NULL;
}

/* Start the rewrap thread for the vault's current version.  Called with
 * v->admin held.  total: records to move (counted by the caller). */
static int
rot_launch(struct kwd_vault *v, uint64_t total, int resumed, const char *actor)
{
	int e;

	pthread_mutex_lock(&v->rlock);
	if (v->state == ROT_RUNNING) {
		pthread_mutex_unlock(&v->rlock);
		return kw_fail(KW_E_CONFLICT, "a rotation of vault '%s' is already running", v->name);
	}
	if (v->joinable) {
		pthread_mutex_unlock(&v->rlock);
		pthread_join(v->thread, NULL);
		pthread_mutex_lock(&v->rlock);
		v->joinable = 0;
	}
	pthread_rwlock_wrlock(&v->lock);
	v->target = v->current;
	v->resume_due = 0;              /* this rewrap moves every older record */
	pthread_rwlock_unlock(&v->lock);
	v->state = ROT_RUNNING;
	v->stop = 0;
	v->done = v->skipped = 0;
	v->total = total;
	v->started = (int64_t)kwd_now_us();
	v->finished = 0;
	v->resumed = resumed;
	v->error[0] = '\0';
	json_decref(v->rem);            /* a count of the rotation before */
	v->rem = NULL;
	snprintf(v->actor, sizeof(v->actor), "%s", actor);
	e = pthread_create(&v->thread, NULL, rot_main, v);
	if (e == 0)
		pthread_setname_np(v->thread, "kw-rewrap");
	if (e != 0) {
		v->state = ROT_FAILED;
		snprintf(v->error, sizeof(v->error), "cannot start the rewrap thread: %s", strerror(e));
		pthread_mutex_unlock(&v->rlock);
		return kw_fail(-e, "cannot start the rewrap thread");
	}
	v->joinable = 1;
	pthread_mutex_unlock(&v->rlock);
	return 0;
}

#define TRIAL_DEK 32
#define TRIAL_AAD "keywarden/rotation-trial"

/* A version that cannot wrap and unwrap would take every write and be the
 * target of the rewrap.  See kwd.h. */
int
kwd_mkey_trial(struct kwd *d, const char *vault, uint32_t version)
{
	uint8_t *dek = kw_secalloc(TRIAL_DEK), *back = kw_secalloc(P11_DEK_MAX);
	uint8_t blob[P11_WRAPPED_MAX];
	size_t bl = 0, backlen = 0;
	int e;

	if (dek == NULL || back == NULL) {
		e = kw_fail(-ENOMEM, "out of memory to try master key version %u of vault '%s'",
		    version, vault);
		goto out;
	}
	if ((e = p11_random(d->p11, dek, TRIAL_DEK)) != 0 ||
	    (e = p11_wrap(d->p11, vault, version, dek, TRIAL_DEK, TRIAL_AAD,
		sizeof(TRIAL_AAD) - 1, blob, &bl)) != 0 ||
	    (e = p11_unwrap(d->p11, vault, blob, bl, TRIAL_AAD, sizeof(TRIAL_AAD) - 1,
		back, &backlen)) != 0) {
		/* The token's own fault whatever it says: nobody else made
		 * the blob it could not open. */
		if (e == KW_E_AUTH || e == KW_E_FORMAT)
			e = kw_fail(KW_E_P11, "%s", kw_errdetail(e));
		goto out;
	}
	if (backlen != TRIAL_DEK || kw_memeq_ct(back, dek, TRIAL_DEK) != 0)
		e = kw_fail(KW_E_P11, "token gave back another data key than it wrapped");
out:
	kw_secfree(dek);
	kw_secfree(back);
	return e;
}

/* Create version N+1, try it, make it current, start the rewrap.  *newv
 * gets N+1; *refused (may be NULL) N+1 when it failed its trial, else 0. */
static int
rotate_vault(struct kwd *d, struct kwd_vault *v, const char *actor, uint32_t *newv, json_t **from,
    uint32_t *refused)
{
	struct p11_mkey *tk = NULL, mk;
	struct store_key k;
	size_t nt = 0;
	uint32_t next = 0;
	uint64_t left = 0;
	int e, re = 0;
	json_t *rem = NULL;

	if (refused != NULL)
		*refused = 0;
	pthread_mutex_lock(&v->rlock);
	e = v->state == ROT_RUNNING;
	pthread_mutex_unlock(&v->rlock);
	if (e) {
		e = kw_fail(KW_E_CONFLICT, "a rotation of vault '%s' is already running", v->name);
		goto out;
	}
	/* The next version is above every version the store or the token
	 * knows (a token key left by a crash is never reused). */
	if ((e = p11_mkey_list(d->p11, v->name, &tk, &nt)) != 0)
		goto out;
	pthread_rwlock_rdlock(&v->lock);
	for (size_t i = 0; i < v->nkeys; i++)
		if (v->keys[i].version > next)
			next = v->keys[i].version;
	pthread_rwlock_unlock(&v->lock);
	for (size_t i = 0; i < nt; i++)
		if (tk[i].version > next)
			next = tk[i].version;
	next++;
	if ((e = p11_mkey_create(d->p11, v->name, next, &mk)) != 0)
		goto out;
	if ((e = kwd_mkey_trial(d, v->name, next)) != 0) {
		char why[600];
		uint32_t cur;
		int de;

		snprintf(why, sizeof(why), "%s", kw_errdetail(e));
		pthread_rwlock_rdlock(&v->lock);
		cur = v->current;
		pthread_rwlock_unlock(&v->lock);
		/* Never recorded nor used: it goes.  Left, it only makes the
		 * next rotation skip its number. */
		if ((de = p11_mkey_destroy(d->p11, v->name, next)) != 0)
			log_warn("vault '%s': master key version %u, which failed its trial, is "
			    "left in the token: %s", v->name, next, kw_errdetail(de));
		e = kw_fail(e, "vault '%s': new master key version %u failed its trial (a data "
		    "key wrapped under it must unwrap again): %s; it was not made current, "
		    "version %u stays", v->name, next, why, cur);
		if (refused != NULL)
			*refused = next;
		goto out;
	}
	memset(&k, 0, sizeof(k));
	k.version = next;
	memcpy(k.key_id, mk.id, sizeof(k.key_id));
	k.state = STORE_KEY_ACTIVE;
	k.created = (int64_t)kwd_now_us();
	if ((e = store_key_add(d->store, v->name, &k)) != 0 ||
	    (e = store_key_set_current(d->store, v->name, next)) != 0 ||
	    (e = view_refresh(d, v)) != 0)
		goto out;
	log_notice("vault '%s': master key version %u created and current (%s)", v->name, next, actor);
	rem = remaining_json(d, v, &left, &re);
	if ((e = re) != 0)
		goto out;
	audit_glue_admin(d, "vault.rotation.started", json_pack("{s:s,s:i,s:O,s:I,s:s}", "vault", v->name,
	    "key_version", (int)next, "remaining", rem, "total", (json_int_t)left, "by", actor));
	if ((e = rot_launch(v, left, 0, actor)) != 0)
		goto out;
	*newv = next;
	if (from != NULL) {
		*from = rem;
		rem = NULL;
	}
out:
	json_decref(rem);
	free(tk);
	return e;
}

/* ---- resume and schedule ------------------------------------------------------------ */

/* With v->admin held and no rewrap running: when records are left under
 * an older active version, start the rewrap to the current one, as at a
 * start.  Their count. */
static uint64_t
rot_resume(struct kwd *d, struct kwd_vault *v)
{
	uint64_t left = 0;
	int re = 0;
	json_t *rem = remaining_json(d, v, &left, &re);

	if (re == 0 && left > 0) {
		log_notice("vault '%s': %" PRIu64 " records still under older master keys: "
		    "resuming the rotation to version %u", v->name, left, v->current);
		audit_glue_admin(d, "vault.rotation.resumed", json_pack("{s:s,s:i,s:O,s:I}",
		    "vault", v->name, "key_version", (int)v->current, "remaining", rem,
		    "total", (json_int_t)left));
		if (rot_launch(v, left, 1, "resume") != 0)
			log_err("vault '%s': cannot resume the rotation: %s", v->name,
			    kw_errdetail(KW_E_INTERNAL));
	}
	json_decref(rem);
	return left;
}

static int
take_resume_due(struct kwd_vault *v)
{
	int due;

	pthread_rwlock_wrlock(&v->lock);
	due = v->resume_due;
	v->resume_due = 0;
	pthread_rwlock_unlock(&v->lock);
	return due;
}

static int
views_stale(struct kwd *d)
{
	for (size_t i = 0; i < d->nvaults; i++)
		if (view_stale(&d->vaults[i]))
			return 1;
	return 0;
}

static void
maint_check(struct kwd *d, int at_start)
{
	for (size_t i = 0; i < d->nvaults; i++) {
		struct kwd_vault *v = &d->vaults[i];
		const struct config_vault *cv = config_vault_find(d->cfg, v->name);
		unsigned days = cv ? __atomic_load_n(&cv->rotation_days, __ATOMIC_RELAXED) : 0;
		int running, e;

		pthread_mutex_lock(&v->admin);
		if (view_stale(v) && (e = view_refresh(d, v)) != 0) {
			int64_t now = (int64_t)kwd_now_us();
			if (now - v->stale_logged >= 60 * 1000000LL) {
				log_warn("vault '%s': its master-key versions still cannot be read from "
				    "the store, so writes are refused; trying again every second: %s",
				    v->name, kw_errdetail(e));
				v->stale_logged = now;
			}
			goto next;
		}
		pthread_mutex_lock(&v->rlock);
		running = v->state == ROT_RUNNING;
		pthread_mutex_unlock(&v->rlock);
		if (running) {
			take_resume_due(v);     /* the rewrap that runs moves them */
			goto next;
		}
		if ((take_resume_due(v) || at_start) && rot_resume(d, v) > 0)
			goto next;
		if (days > 0) {
			int64_t created = 0, now = (int64_t)kwd_now_us();
			pthread_rwlock_rdlock(&v->lock);
			for (size_t j = 0; j < v->nkeys; j++)
				if (v->keys[j].version == v->current)
					created = v->keys[j].created;
			pthread_rwlock_unlock(&v->lock);
			if (created > 0 && now - created >= (int64_t)days * 86400 * 1000000) {
				uint32_t nv = 0;
				log_notice("vault '%s': the current master key is older than %u days: rotating",
				    v->name, days);
				if ((e = rotate_vault(d, v, "schedule", &nv, NULL, NULL)) != 0)
					log_err("vault '%s': scheduled rotation failed: %s", v->name, kw_errdetail(e));
			}
		}
next:
		pthread_mutex_unlock(&v->admin);
	}
}

static void *
maint_main(void *arg)
{
	struct kwd *d = arg;
	int first = 1;

	pthread_mutex_lock(&d->maint_lock);
	while (!d->maint_stop) {
		struct timespec ts;
		d->maint_kick = 0;
		pthread_mutex_unlock(&d->maint_lock);
		maint_check(d, first);
		first = 0;
		/* Give back what bursts left free in the threads' malloc
		 * arenas, so that RSS follows the load down. */
		malloc_trim(0);
		pthread_mutex_lock(&d->maint_lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		/* every minute; every second while a view is stale */
		ts.tv_sec += views_stale(d) ? 1 : 60;
		while (!d->maint_stop && !d->maint_kick &&
		    pthread_cond_timedwait(&d->maint_cond, &d->maint_lock, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&d->maint_lock);
	return NULL;
}

int
kwd_rotation_start_thread(struct kwd *d)
{
	int e = pthread_create(&d->maint, NULL, maint_main, d);
	if (e != 0)
		return kw_fail(-e, "cannot start the rotation thread");
	d->maint_started = 1;
	pthread_setname_np(d->maint, "kw-maint");
	return 0;
}

void
kwd_rotation_stop_all(struct kwd *d)
{
	if (d->maint_started) {
		pthread_mutex_lock(&d->maint_lock);
		d->maint_stop = 1;
		pthread_cond_broadcast(&d->maint_cond);
		pthread_mutex_unlock(&d->maint_lock);
		pthread_join(d->maint, NULL);
		d->maint_started = 0;
	}
	for (size_t i = 0; i < d->nvaults; i++) {
		struct kwd_vault *v = &d->vaults[i];
		int join;
		pthread_mutex_lock(&v->rlock);
		v->stop = 1;
		join = v->joinable;
		v->joinable = 0;
		pthread_mutex_unlock(&v->rlock);
		if (join)
			pthread_join(v->thread, NULL);
	}
}

/* ---- handlers ----------------------------------------------------------------------- */

static json_t *
rotation_json(struct kwd *d, struct kwd_vault *v, int *err)
{
	uint64_t left = 0;
	json_t *rem = NULL, *o;
	double rate = 0, eta = 0;
	int64_t now = (int64_t)kwd_now_us(), at = now;
	int running;

	*err = 0;
	pthread_mutex_lock(&v->rlock);
	running = v->state == ROT_RUNNING;
	if (running && v->rem != NULL && now - v->rem_at < REMAINING_EVERY_US) {
		rem = json_deep_copy(v->rem);
		at = v->rem_at;
	}
	pthread_mutex_unlock(&v->rlock);
	if (rem == NULL) {
		rem = remaining_json(d, v, &left, err);
		if (running && *err == 0) {
			pthread_mutex_lock(&v->rlock);
			json_decref(v->rem);
			v->rem = json_deep_copy(rem);
			v->rem_at = now;
			pthread_mutex_unlock(&v->rlock);
		}
	}

	pthread_mutex_lock(&v->rlock);
	if (v->started != 0) {
		int64_t end = v->finished ? v->finished : now;
		if (end > v->started)
			rate = (double)v->done * 1e6 / (double)(end - v->started);
	}
	if (v->state == ROT_RUNNING && rate > 0 && v->total > v->done)
		eta = (double)(v->total - v->done) / rate;
	pthread_rwlock_rdlock(&v->lock);
	o = json_pack("{s:s,s:s,s:i,s:o,s:o,s:I,s:I,s:I,s:f,s:f,s:b,s:o,s:o,s:o}",
	    "vault", v->name, "state", rot_state_names[v->state], "key_version", (int)v->current,
	    "started", kwd_time_json(v->started), "finished", kwd_time_json(v->finished),
	    "done", (json_int_t)v->done, "total", (json_int_t)v->total, "skipped", (json_int_t)v->skipped,
	    "rate_per_s", rate, "eta_s", eta, "resumed", v->resumed,
	    "error", v->error[0] ? json_string(v->error) : json_null(), "remaining", rem,
	    "remaining_at", kwd_time_json(at));
	pthread_rwlock_unlock(&v->lock);
	pthread_mutex_unlock(&v->rlock);
	return o;
}

static struct kwd_vault *
req_vault(struct kwd_req *r)
{
	struct kwd_vault *v = vault_find(r->d, r->vault);
	if (v == NULL)
		kwd_reply_error(r, 404, "vault_not_found", "no vault named '%s'", r->vault);
	return v;
}

void
h_rotation_start(struct kwd_req *r)
{
	struct kwd_vault *v = req_vault(r);
	uint32_t nv = 0, refused = 0, cur;
	json_t *from = NULL, *st;
	char actor[64];
	int e;

	if (v == NULL)
		return;
	if (kwd_intent_or_refuse(r, "rotated") != 0)
		return;
	snprintf(actor, sizeof(actor), "uid %u", (unsigned)r->who.uid);
	pthread_mutex_lock(&v->admin);
	e = rotate_vault(r->d, v, actor, &nv, &from, &refused);
	pthread_rwlock_rdlock(&v->lock);
	cur = v->current;
	pthread_rwlock_unlock(&v->lock);
	pthread_mutex_unlock(&v->admin);
	if (e == KW_E_CONFLICT) {
		kwd_reply_error(r, 409, "rotation_running", "%s", kw_errdetail(e));
		return;
	}
	if (e != 0 && refused != 0) {
		/* The token's words go to the log, as for any token failure;
		 * the caller learns what became of the rotation. */
		atomic_fetch_add(&r->d->m.token_errors, 1);
		log_err("request %llu: rotate: token: %s", (unsigned long long)r->id, kw_errdetail(e));
		kwd_reply_error(r, 503, "unavailable", "rotate: the new master key version %u of vault "
		    "'%s' failed its trial in the token (a data key wrapped under it did not unwrap "
		    "again) and was not made current; version %u stays current (the daemon's log "
		    "says why)", refused, v->name, cur);
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "rotate");
		return;
	}
	r->key_version = nv;
	r->extra = json_pack("{s:o}", "from", from);
	st = rotation_json(r->d, v, &e);
	kwd_reply_json(r, 202, st);
}

void
h_rotation_status(struct kwd_req *r)
{
	struct kwd_vault *v = req_vault(r);
	json_t *st;
	int e = 0;

	if (v == NULL)
		return;
	st = rotation_json(r->d, v, &e);
	if (e != 0) {
		json_decref(st);
		kwd_reply_kwerr(r, e, "rotation status");
		return;
	}
	kwd_reply_json(r, 200, st);
}

static const char *
key_state_name(enum store_key_state s)
{
	return s == STORE_KEY_ACTIVE ? "active" : s == STORE_KEY_RETIRED ? "retired" : "destroyed";
}

/* One version as listed; in_token from the token's own list. */
static json_t *
mkey_json(struct kwd *d, const char *vault, const struct store_key *k, int in_token, int *err)
{
	uint64_t c = 0;
	int e = k->state == STORE_KEY_DESTROYED ? 0 : store_key_usage(d->store, vault, k->version, &c);

	if (e != 0)
		*err = e;
	return json_pack("{s:i,s:s,s:o,s:o,s:I,s:b}", "version", (int)k->version,
	    "state", key_state_name(k->state), "created", kwd_time_json(k->created),
	    "retired", kwd_time_json(k->retired), "records", (json_int_t)c, "in_token", in_token);
}

void
h_mkeys_list(struct kwd_req *r)
{
	struct kwd_vault *v = req_vault(r);
	struct store_key *keys = NULL;
	struct p11_mkey *tk = NULL;
	size_t n = 0, nt = 0;
	json_t *arr;
	uint32_t cur;
	int e, err = 0;

	if (v == NULL)
		return;
	if ((e = p11_mkey_list(r->d->p11, v->name, &tk, &nt)) != 0) {
		kwd_reply_kwerr(r, e, "list master keys");
		return;
	}
	if ((e = view_snapshot(v, &keys, &n, &cur)) != 0) {
		free(tk);
		kwd_reply_kwerr(r, e, "list master keys");
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++) {
		int in = 0;
		for (size_t j = 0; j < nt; j++)
			if (tk[j].version == keys[i].version)
				in = 1;
		json_array_append_new(arr, mkey_json(r->d, v->name, &keys[i], in, &err));
	}
	free(keys);
	free(tk);
	if (err != 0) {
		json_decref(arr);
		kwd_reply_kwerr(r, err, "list master keys");
		return;
	}
	kwd_reply_json(r, 200, json_pack("{s:s,s:i,s:o}", "vault", v->name, "current", (int)cur, "keys", arr));
}

/* Reply with one version as listed. */
static void
reply_mkey(struct kwd_req *r, struct kwd_vault *v, uint32_t version)
{
	struct store_key k;
	int found = 0, err = 0;
	json_t *o;

	pthread_rwlock_rdlock(&v->lock);
	for (size_t i = 0; i < v->nkeys; i++)
		if (v->keys[i].version == version) {
			k = v->keys[i];
			found = 1;
		}
	pthread_rwlock_unlock(&v->lock);
	if (!found) {
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no master key version %u", v->name, version);
		return;
	}
	o = mkey_json(r->d, v->name, &k, k.state != STORE_KEY_DESTROYED, &err);
	kwd_reply_json(r, 200, o);
}

/* The version in the path, known to the view; else a reply and -1. */
static int
req_mkey(struct kwd_req *r, struct kwd_vault *v, enum store_key_state *st)
{
	if (r->version == 0 || r->version > UINT32_MAX || !view_state(v, (uint32_t)r->version, st)) {
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no master key version %llu", v->name,
		    (unsigned long long)r->version);
		return -1;
	}
	r->key_version = (uint32_t)r->version;
	return 0;
}

void
h_mkey_retire(struct kwd_req *r)
{
	struct kwd_vault *v = req_vault(r);
	enum store_key_state st;
	uint64_t used = 0;
	uint32_t ver, cur;
	int e;

	if (v == NULL || req_mkey(r, v, &st) != 0)
		return;
	ver = (uint32_t)r->version;
	r->extra = json_pack("{s:s}", "operation", "retire");
	if (kwd_intent_or_refuse(r, "retired") != 0)
		return;
	pthread_mutex_lock(&v->admin);
	pthread_rwlock_rdlock(&v->lock);
	cur = v->current;
	pthread_rwlock_unlock(&v->lock);
	view_state(v, ver, &st);
	if (st != STORE_KEY_ACTIVE) {
		pthread_mutex_unlock(&v->admin);
		reply_mkey(r, v, ver);   /* already retired: nothing to do */
		return;
	}
	if (ver == cur) {
		pthread_mutex_unlock(&v->admin);
		kwd_reply_error(r, 409, "key_in_use", "version %u is the current master key of vault '%s': "
		    "rotate first", ver, v->name);
		return;
	}
	if ((e = store_key_usage(r->d->store, v->name, ver, &used)) != 0) {
		pthread_mutex_unlock(&v->admin);
		kwd_reply_kwerr(r, e, "retire");
		return;
	}
	if (used > 0) {
		pthread_mutex_unlock(&v->admin);
		kwd_reply_error(r, 409, "key_in_use", "%" PRIu64 " record(s) of vault '%s' still use master key "
		    "version %u: let the rotation finish (keywarden vault rotation %s)", used, v->name, ver, v->name);
		return;
	}
	e = store_key_set_state(r->d->store, v->name, ver, STORE_KEY_RETIRED, (int64_t)kwd_now_us());
	if (e == 0)
		e = view_refresh(r->d, v);
	pthread_mutex_unlock(&v->admin);
	if (e == KW_E_CONFLICT) {
		/* a write put a record under it after the count above */
		kwd_reply_error(r, 409, "key_in_use", "%s: let the rotation finish (keywarden vault "
		    "rotation %s)", kw_errdetail(e), v->name);
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "retire");
		return;
	}
	log_notice("vault '%s': master key version %u retired", v->name, ver);
	reply_mkey(r, v, ver);
}

void
h_mkey_destroy(struct kwd_req *r)
{
	struct kwd_vault *v = req_vault(r);
	enum store_key_state st;
	uint32_t ver;
	int e;

	if (v == NULL || req_mkey(r, v, &st) != 0)
		return;
	ver = (uint32_t)r->version;
	r->extra = json_pack("{s:s}", "operation", "destroy");
	if (kwd_intent_or_refuse(r, "destroyed") != 0)
		return;
	pthread_mutex_lock(&v->admin);
	view_state(v, ver, &st);
	if (st == STORE_KEY_ACTIVE) {
		pthread_mutex_unlock(&v->admin);
		kwd_reply_error(r, 409, "key_not_retired", "master key version %u of vault '%s' is active: "
		    "retire it first (keywarden vault retire %s --version %u)", ver, v->name, v->name, ver);
		return;
	}
	if (st == STORE_KEY_RETIRED) {
		/* Token first: a crash between the two leaves a retired version
		 * whose object is gone, and destroying it again finishes. */
		e = p11_mkey_destroy(r->d->p11, v->name, ver);
		if (e == KW_E_KEY_NOT_FOUND)
			e = 0;
		if (e == 0)
			e = store_key_set_state(r->d->store, v->name, ver, STORE_KEY_DESTROYED, (int64_t)kwd_now_us());
		if (e == 0)
			e = view_refresh(r->d, v);
		if (e != 0) {
			pthread_mutex_unlock(&v->admin);
			kwd_reply_kwerr(r, e, "destroy");
			return;
		}
		log_notice("vault '%s': master key version %u destroyed in the token", v->name, ver);
	}
	pthread_mutex_unlock(&v->admin);
	reply_mkey(r, v, ver);
}
