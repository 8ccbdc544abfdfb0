/*
 * vaults.c - at start, make every configured vault exist in the store with
 * a master key in the token.  Idempotent and crash-safe: a key created in
 * the token whose record did not reach the store is adopted on the next
 * start; a key the store records but the token lacks, or holds under
 * another CKA_ID (destroyed and made again), stops the start.  A new
 * vault's first master key is tried as a rotation's new version is
 * (kwd_mkey_trial) before the store records it: one that fails is
 * destroyed and stops the start.
 *
 * Owners.  The token knows nothing of stores: a second keywardend with its
 * own store, on the same token, with a vault of the same name, would take
 * the first one's keys for its own, and could retire and destroy a version
 * the first one's records still need (its own store counts no record
 * under it).  So the token also holds, per vault, which store owns its
 * keys: a private data object "keywarden/<vault>/owner" with the store's
 * identity (store_instance_id).  A vault whose keys another store owns
 * stops the start, unless the operator says the other store is gone
 * (--adopt-keys: a store lost and rebuilt from backups), which is
 * recorded in the audit log.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_error.h"
#include "pkcs11/p11.h"
#include "daemon/audit_glue.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/store.h"

#define OWNER_CONTEXT "keywarden-vault-owner-v1"

static void
hex16(const uint8_t id[STORE_INSTANCE_LEN], char out[2 * STORE_INSTANCE_LEN + 1])
{
	for (size_t i = 0; i < STORE_INSTANCE_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* Claim the vault's keys for this store (mine: its identity in hex), or
 * find that another store owns them.  0, or KW_E_CONFLICT naming the
 * other owner. */
static int
vault_owner(struct kwd *d, const char *vault, const char *mine)
{
	char label[160], text[128], other[80] = "";
	struct p11_data *v = NULL;
	size_t n = 0, cl = strlen(OWNER_CONTEXT);
	int e, ours = 0, theirs = 0, tn;

	snprintf(label, sizeof(label), "keywarden/%s/owner", vault);
	if ((e = p11_data_read(d->p11, label, &v, &n)) != 0)
		return e;
	for (size_t i = 0; i < n; i++) {
		const char *s = (const char *)v[i].value;
		if (v[i].len == cl + 1 + 2 * STORE_INSTANCE_LEN &&
		    strncmp(s, OWNER_CONTEXT " ", cl + 1) == 0 &&
		    strcmp(s + cl + 1, mine) == 0)
			ours = 1;
		else {
			theirs = 1;
			snprintf(other, sizeof(other), "%.*s", (int)(v[i].len < 64 ? v[i].len : 64), s);
		}
	}
	p11_data_free(v, n);
	if (theirs && !d->cfg->adopt_keys)
		return kw_fail(KW_E_CONFLICT, "the master keys of vault '%s' in the token belong to "
		    "another store (\"%s\"; this store is %s): another keywardend uses this token with "
		    "a vault of the same name, or this store replaces a lost one. Give this daemon "
		    "other vault names or another token; or, if that other store is gone for good, "
		    "start once with --adopt-keys", vault, other, mine);
	if (ours && !theirs)
		return 0;
	/* Unclaimed (a new vault, or keys from before owners), taken over,
	 * or ours beside a stale value (a crash while it was replaced). */
	if (theirs) {
		/* Recorded before it takes effect. */
		log_warn("vault '%s': taking over its master keys from another store (%s)", vault, other);
		if ((e = audit_glue_admin(d, "vault.keys_adopted", json_pack("{s:s,s:s,s:s}",
		    "vault", vault, "previous_owner", other, "owner", mine))) != 0)
			return e;
	}
	tn = snprintf(text, sizeof(text), "%s %s", OWNER_CONTEXT, mine);
	return p11_data_write(d->p11, label, text, (size_t)tn);
}

static int
vault_init_one(struct kwd *d, const struct config_vault *cv, const char *mine)
{
	struct store_vault want, have;
	struct store_key *skeys = NULL;
	struct p11_mkey *tkeys = NULL;
	size_t ns = 0, nt = 0;
	int e;

	memset(&want, 0, sizeof(want));
	snprintf(want.name, sizeof(want.name), "%s", cv->name);
	want.purge_protection = cv->purge_protection;
	want.retention_days = cv->retention_days;
	want.created = (int64_t)kwd_now_us();
	if ((e = store_vault_ensure(d->store, &want, &have)) != 0)
		goto out;
	if (have.purge_protection != want.purge_protection ||
	    have.retention_days != want.retention_days) {
		if ((e = store_vault_set_attrs(d->store, &want)) != 0)
			goto out;
	}
	if ((e = vault_owner(d, cv->name, mine)) != 0 ||
	    (e = store_key_list(d->store, cv->name, &skeys, &ns)) != 0 ||
	    (e = p11_mkey_list(d->p11, cv->name, &tkeys, &nt)) != 0)
		goto out;

	/* Every active key the store records must be in the token. */
	for (size_t i = 0; i < ns; i++) {
		int found = 0;
		if (skeys[i].state != STORE_KEY_ACTIVE)
			continue;
		for (size_t j = 0; j < nt; j++) {
			if (tkeys[j].version != skeys[i].version)
				continue;
			found = 1;
			if (memcmp(tkeys[j].id, skeys[i].key_id, sizeof(skeys[i].key_id)) != 0) {
				e = kw_fail(KW_E_KEY_NOT_FOUND,
				    "vault '%s': master key version %u in the token is not the one the store "
				    "recorded (its CKA_ID differs): it was destroyed and made again, by another "
				    "keywardend or by hand, and the records under it cannot be read with it",
				    cv->name, skeys[i].version);
				goto out;
			}
		}
		if (!found) {
			e = kw_fail(KW_E_KEY_NOT_FOUND,
			    "vault '%s': master key version %u is recorded in the store but missing from the token: "
			    "is this the token the store was made with?", cv->name, skeys[i].version);
			goto out;
		}
	}
	/* Adopt token keys the store does not know (a crash between the two). */
	for (size_t j = 0; j < nt; j++) {
		int known = 0;
		for (size_t i = 0; i < ns; i++)
			if (skeys[i].version == tkeys[j].version)
				known = 1;
		if (!known) {
			struct store_key k;
			/* Tried before it is recorded, as a new version is: it
			 * may become current (a rotation that made it and
			 * crashed resumes to it), and one that cannot wrap and
			 * unwrap would fail every write.  Not destroyed: this
			 * start did not make it. */
			if ((e = kwd_mkey_trial(d, cv->name, tkeys[j].version)) != 0) {
				char why[600];

				snprintf(why, sizeof(why), "%s", kw_errdetail(e));
				e = kw_fail(e, "master key version %u of vault '%s', found in the "
				    "token but not recorded in the store, failed its trial (a data key "
				    "wrapped under it must unwrap again): %s; it was not adopted: "
				    "refusing to start (if the token is sound, remove that key with "
				    "pkcs11-tool --delete-object)", tkeys[j].version, cv->name, why);
				goto out;
			}
			memset(&k, 0, sizeof(k));
			k.version = tkeys[j].version;
			memcpy(k.key_id, tkeys[j].id, sizeof(k.key_id));
			k.state = STORE_KEY_ACTIVE;
			k.created = (int64_t)kwd_now_us();
			if ((e = store_key_add(d->store, cv->name, &k)) != 0)
				goto out;
			log_notice("vault '%s': adopted master key version %u found in the token",
			    cv->name, k.version);
		}
	}
	if (have.key_version == 0) {
		uint32_t v = 0;
		for (size_t j = 0; j < nt; j++)
			if (tkeys[j].version > v)
				v = tkeys[j].version;
		if (v == 0) {
			struct p11_mkey mk;
			struct store_key k;
			if ((e = p11_mkey_create(d->p11, cv->name, 1, &mk)) != 0)
				goto out;
			/* Tried before it is recorded, as a rotation's version
			 * is: a vault whose first key cannot wrap and unwrap
			 * would fail every write. */
			if ((e = kwd_mkey_trial(d, cv->name, 1)) != 0) {
				char why[600];
				int de;

				snprintf(why, sizeof(why), "%s", kw_errdetail(e));
				/* Never recorded nor used: it goes (left, the
				 * next start would adopt it). */
				if ((de = p11_mkey_destroy(d->p11, cv->name, 1)) != 0)
					log_warn("vault '%s': master key version 1, which failed its "
					    "trial, is left in the token: %s", cv->name, kw_errdetail(de));
				e = kw_fail(e, "the first master key (version 1) of vault '%s' failed "
				    "its trial (a data key wrapped under it must unwrap again): %s; "
				    "no key was recorded: refusing to start", cv->name, why);
				goto out;
			}
			memset(&k, 0, sizeof(k));
			k.version = 1;
			memcpy(k.key_id, mk.id, sizeof(k.key_id));
			k.state = STORE_KEY_ACTIVE;
			k.created = (int64_t)kwd_now_us();
			if ((e = store_key_add(d->store, cv->name, &k)) != 0)
				goto out;
			v = 1;
			log_notice("vault '%s': created master key %s in the token", cv->name, mk.label);
			audit_glue_admin(d, "vault.created", json_pack("{s:s,s:i}", "vault", cv->name,
			    "key_version", 1));
		}
		if ((e = store_key_set_current(d->store, cv->name, v)) != 0)
			goto out;
	}
	e = 0;
out:
	free(skeys);
	free(tkeys);
	return e;
}

int
kwd_vaults_init(struct kwd *d)
{
	char mine[2 * STORE_INSTANCE_LEN + 1];
	uint8_t id[STORE_INSTANCE_LEN];
	int e;

	if ((e = store_instance_id(d->store, id)) != 0) {
		log_err("store: %s", kw_errdetail(e));
		return e;
	}
	hex16(id, mine);
	for (size_t i = 0; i < d->cfg->nvaults; i++) {
		e = vault_init_one(d, &d->cfg->vaults[i], mine);
		if (e != 0) {
			log_err("vault '%s': %s", d->cfg->vaults[i].name, kw_errdetail(e));
			return e;
		}
	}
	return 0;
}
