/*
 * vaults.c - at start, make every configured vault exist in the store with
 * a master key in the token.  Idempotent and crash-safe: a key created in
 * the token whose record did not reach the store is adopted on the next
 * start; a key the store records but the token lacks stops the start.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "kw_error.h"
#include "pkcs11/p11.h"
#include "daemon/audit_glue.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/store.h"

static int
vault_init_one(struct kwd *d, const struct config_vault *cv)
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
	if ((e = store_key_list(d->store, cv->name, &skeys, &ns)) != 0 ||
	    (e = p11_mkey_list(d->p11, cv->name, &tkeys, &nt)) != 0)
		goto out;

	/* Every active key the store records must be in the token. */
	for (size_t i = 0; i < ns; i++) {
		int found = 0;
		if (skeys[i].state != STORE_KEY_ACTIVE)
			continue;
		for (size_t j = 0; j < nt; j++)
			if (tkeys[j].version == skeys[i].version)
				found = 1;
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
	for (size_t i = 0; i < d->cfg->nvaults; i++) {
		int e = vault_init_one(d, &d->cfg->vaults[i]);
		if (e != 0) {
			log_err("vault '%s': %s", d->cfg->vaults[i].name, kw_errdetail(e));
			return e;
		}
	}
	return 0;
}
