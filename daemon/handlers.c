/*
 * handlers.c - routing and the request handlers of the secrets API.
 * kwd_route() runs on the loop; every h_*() runs on a worker and may call
 * the token and the store.  See docs/api.md.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "kw_b64.h"
#include "kw_error.h"
#include "kw_nss.h"
#include "kw_secmem.h"
#include "pkcs11/p11.h"
#include "policy/policy.h"
#include "kw_auditchain.h"
#include "daemon/audit.h"
#include "daemon/audit_glue.h"
#include "daemon/http_parse.h"
#include "daemon/jw.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/seal.h"
#include "daemon/store.h"

#define DEK_LEN 32
#define PUT_RETRIES 16

/* Writes of a new version to one name are serialized here: each reads the
 * current version, seals the value for the next one, and inserts it, so
 * two at once on one name would have all but one lose and retry, and 32
 * clients writing one name could starve a writer.  A lock per stripe of
 * names (by hash) keeps unrelated writes concurrent, so that they still
 * share the store's and the audit log's syncs.  The store's uniqueness of
 * (vault, name, version) stays the backstop, and the retry for whatever
 * else writes the store. */
#define PUT_STRIPES 1024
static pthread_mutex_t put_stripe[PUT_STRIPES];
static pthread_once_t put_stripe_once = PTHREAD_ONCE_INIT;

static void
put_stripe_init(void)
{
	for (int i = 0; i < PUT_STRIPES; i++)
		pthread_mutex_init(&put_stripe[i], NULL);
}

static pthread_mutex_t *
put_lock(const char *vault, const char *name)
{
	uint32_t h = 2166136261u;   /* FNV-1a over "vault\0name" */

	pthread_once(&put_stripe_once, put_stripe_init);
	for (const char *p = vault; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ 0) * 16777619u;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return &put_stripe[h % PUT_STRIPES];
}

const char *
kwd_action_name(enum kwd_action a)
{
	switch (a) {
	case KWD_A_SECRET_GET: return "secret.get";
	case KWD_A_SECRET_LIST: return "secret.list";
	case KWD_A_SECRET_SET: return "secret.set";
	case KWD_A_SECRET_UPDATE: return "secret.update";
	case KWD_A_SECRET_DELETE: return "secret.delete";
	case KWD_A_SECRET_RECOVER: return "secret.recover";
	case KWD_A_SECRET_PURGE: return "secret.purge";
	case KWD_A_SECRET_BACKUP: return "secret.backup";
	case KWD_A_SECRET_RESTORE: return "secret.restore";
	case KWD_A_VAULT_STATUS: return "vault.status";
	case KWD_A_AUDIT_STREAM: return "audit.stream";
	case KWD_A_AUDIT_READ: return "audit.read";
	case KWD_A_POLICY_RELOAD: return "policy.reload";
	case KWD_A_POLICY_EXPLAIN: return "policy.explain";
	case KWD_A_KEY_DATAKEY: return "key.datakey";
	case KWD_A_KEY_WRAP: return "key.wrap";
	case KWD_A_KEY_UNWRAP: return "key.unwrap";
	case KWD_A_KEY_ENCRYPT: return "key.encrypt";
	case KWD_A_KEY_DECRYPT: return "key.decrypt";
	case KWD_A_KEY_SIGN: return "key.sign";
	case KWD_A_KEY_VERIFY: return "key.verify";
	case KWD_A_KEY_CREATE: return "key.create";
	case KWD_A_VAULT_ROTATE: return "vault.rotate";
	case KWD_A_VAULT_RETIRE: return "vault.retire";
	case KWD_A_SERVICE: return "service";
	case KWD_A_NONE: break;
	}
	return "none";
}

/* ---- names ------------------------------------------------------------------ */

static int
name_char_ok(int c)
{
	return isalnum(c) || c == '.' || c == '_' || c == '-';
}

/* 0 or a reason. */
static const char *
name_check(const char *name, size_t len)
{
	size_t seg = 0, lastlen;
	const char *s = name, *last = name, *prev = NULL;

	if (len == 0)
		return "the name is empty";
	if (len > 256)
		return "the name is longer than 256 bytes";
	for (size_t i = 0; i <= len; i++) {
		if (i == len || name[i] == '/') {
			size_t sl = (size_t)(name + i - s);
			if (sl == 0)
				return "the name has an empty segment (// or a leading or trailing /)";
			if ((sl == 1 && s[0] == '.') || (sl == 2 && s[0] == '.' && s[1] == '.'))
				return "a name segment may not be . or ..";
			prev = last;
			last = s;
			s = name + i + 1;
			seg++;
			continue;
		}
		if (!name_char_ok((unsigned char)name[i]))
			return "a name may hold only A-Z a-z 0-9 . _ - and / between segments";
	}
	/* name[0..len) only: the caller's string may go on past the name
	 * (split_name checks "a/versions" of "a/versions/versions"). */
	lastlen = (size_t)(name + len - last);
	if (lastlen == 8 && memcmp(last, "versions", 8) == 0)
		return "a name may not end in the segment 'versions' (it addresses versions)";
	if (seg >= 2 && last - prev == 9 && memcmp(prev, "versions/", 9) == 0) {
		size_t i = 0;

		while (i < lastlen && last[i] >= '0' && last[i] <= '9')
			i++;
		if (i == lastlen)
			return "a name may not end in 'versions/<number>' (it addresses a version)";
	}
	return NULL;
}

static int
vault_check(const char *v, size_t len)
{
	if (len == 0 || len > CONFIG_VAULT_MAX)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (!name_char_ok((unsigned char)v[i]))
			return -1;
	return 0;
}

/* A signing key's name: 1 to P11_SKEY_NAME_MAX characters of a vault
 * name's set.  0 or -1. */
static int
skey_name_check(const char *n, size_t len)
{
	return n != NULL && len > 0 && len <= P11_SKEY_NAME_MAX && vault_check(n, len) == 0 ? 0 : -1;
}

static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Split "name[/versions[/N]]" into name and version; also "name/recover". */
static int
split_name(struct kwd_req *r, const char *rest, int allow_versions, int *versions_list)
{
	size_t len = strlen(rest);
	const char *why;

	*versions_list = 0;
	if (allow_versions) {
		const char *vs = NULL;
		/* ".../versions" */
		if (len > 9 && strcmp(rest + len - 9, "/versions") == 0) {
			*versions_list = 1;
			len -= 9;
		} else if ((vs = strstr(rest, "/versions/")) != NULL) {
			const char *num;
			/* the last occurrence followed only by digits */
			for (const char *p = vs; p != NULL; p = strstr(p + 1, "/versions/"))
				vs = p;
			num = vs + 10;
			if (*num != '\0' && strspn(num, "0123456789") == strlen(num)) {
				if (parse_u64(num, strlen(num), &r->version) != 0 || r->version == 0) {
					kwd_reply_error(r, 400, "invalid_parameter", "version \"%.20s\" is not a number from 1", num);
					return -1;
				}
				r->has_version = 1;
				len = (size_t)(vs - rest);
			}
		}
	}
	if ((why = name_check(rest, len)) != NULL) {
		kwd_reply_error(r, 400, "invalid_name", "%s", why);
		return -1;
	}
	memcpy(r->name, rest, len);
	r->name[len] = '\0';
	return 0;
}

static void
route_method_error(struct kwd_req *r, const char *allowed)
{
	r->allow = allowed;   /* a literal */
	kwd_reply_error(r, 405, "method_not_allowed", "this resource allows %s", allowed);
}

void
kwd_route(struct kwd_req *r, const char *path)
{
	const char *p, *slash;
	int m = r->method;
	size_t vlen;

	if (strcmp(path, "/v1/health") == 0 || strcmp(path, "/v1/whoami") == 0 ||
	    strcmp(path, "/v1/metrics") == 0) {
		if (m != KWH_GET && m != KWH_HEAD) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_SERVICE;
		r->handler = path[4] == 'h' ? h_health : path[4] == 'w' ? h_whoami : h_metrics;
		return;
	}
	if (strcmp(path, "/v1/audit/stream") == 0) {
		if (m != KWH_GET) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_AUDIT_STREAM;
		r->handler = h_audit_stream;
		return;
	}
	if (strcmp(path, "/v1/audit/verify") == 0 || strcmp(path, "/v1/audit/seal-check") == 0) {
		if (m != KWH_POST) {
			route_method_error(r, "POST");
			return;
		}
		r->action = KWD_A_AUDIT_READ;
		r->handler = path[10] == 'v' ? h_audit_verify : h_audit_seal_check;
		return;
	}
	if (strcmp(path, "/v1/policy/reload") == 0 || strcmp(path, "/v1/policy/explain") == 0) {
		if (m != KWH_POST) {
			route_method_error(r, "POST");
			return;
		}
		r->action = path[11] == 'r' ? KWD_A_POLICY_RELOAD : KWD_A_POLICY_EXPLAIN;
		r->handler = path[11] == 'r' ? h_policy_reload : h_policy_explain;
		return;
	}
	if (strcmp(path, "/v1/policy/who-can") == 0) {
		if (m != KWH_GET) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_POLICY_EXPLAIN;
		r->handler = h_policy_who_can;
		return;
	}
	if (strcmp(path, "/v1/vaults") == 0) {
		if (m != KWH_GET) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_VAULT_STATUS;
		r->handler = h_vault_list;
		return;
	}
	if (strncmp(path, "/v1/vaults/", 11) != 0) {
		kwd_reply_error(r, 404, "not_found", "no such resource: %.100s", path);
		return;
	}
	p = path + 11;
	slash = strchr(p, '/');
	vlen = slash ? (size_t)(slash - p) : strlen(p);
	if (vault_check(p, vlen) != 0) {
		kwd_reply_error(r, 400, "invalid_name", "a vault name is 1 to %d characters of A-Z a-z 0-9 . _ -", CONFIG_VAULT_MAX);
		return;
	}
	memcpy(r->vault, p, vlen);
	r->vault[vlen] = '\0';
	/* Whether the vault exists is told only to a caller the policy
	 * lets do the request there (server_request): others get the same
	 * 403 for a vault that exists and one that does not. */
	if (config_vault_find(r->d->cfg, r->vault) == NULL)
		r->vault_missing = 1;
	if (slash == NULL) {
		kwd_reply_error(r, 404, "not_found", "no such resource under vault '%s'", r->vault);
		return;
	}
	p = slash + 1;
	if (strcmp(p, "secrets") == 0) {
		if (m != KWH_GET) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_SECRET_LIST;
		r->handler = h_secret_list;
		return;
	}
	if (strncmp(p, "secrets/", 8) == 0) {
		int vl;
		if (split_name(r, p + 8, 1, &vl) != 0)
			return;
		if (vl) {
			if (m != KWH_GET) {
				route_method_error(r, "GET");
				return;
			}
			r->action = KWD_A_SECRET_LIST;
			r->handler = h_secret_versions;
			return;
		}
		switch (m) {
		case KWH_GET:
			r->action = KWD_A_SECRET_GET;
			r->handler = h_secret_get;
			return;
		case KWH_PUT:
			if (r->has_version)
				break;
			r->action = KWD_A_SECRET_SET;
			r->handler = h_secret_put;
			return;
		case KWH_PATCH:
			r->action = KWD_A_SECRET_UPDATE;
			r->handler = h_secret_patch;
			return;
		case KWH_DELETE:
			if (r->has_version)
				break;
			r->action = KWD_A_SECRET_DELETE;
			r->handler = h_secret_delete;
			return;
		}
		route_method_error(r, r->has_version ? "GET, PATCH" : "GET, PUT, PATCH, DELETE");
		return;
	}
	if (strcmp(p, "deleted") == 0) {
		if (m != KWH_GET) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_SECRET_LIST;
		r->handler = h_deleted_list;
		return;
	}
	if (strncmp(p, "deleted/", 8) == 0) {
		char rest[300];
		size_t len = strlen(p + 8);
		int vl;
		if (len >= sizeof(rest)) {
			kwd_reply_error(r, 400, "invalid_name", "the name is longer than 256 bytes");
			return;
		}
		memcpy(rest, p + 8, len + 1);
		if (len > 8 && strcmp(rest + len - 8, "/recover") == 0) {
			rest[len - 8] = '\0';
			if (split_name(r, rest, 0, &vl) != 0)
				return;
			if (m != KWH_POST) {
				route_method_error(r, "POST");
				return;
			}
			r->action = KWD_A_SECRET_RECOVER;
			r->handler = h_deleted_recover;
			return;
		}
		if (split_name(r, rest, 0, &vl) != 0)
			return;
		if (m != KWH_DELETE) {
			route_method_error(r, "DELETE");
			return;
		}
		r->action = KWD_A_SECRET_PURGE;
		r->handler = h_deleted_purge;
		return;
	}
	if (strcmp(p, "backup") == 0) {
		if (m != KWH_GET) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_SECRET_BACKUP;
		r->handler = h_vault_backup;
		return;
	}
	if (strcmp(p, "restore") == 0) {
		if (m != KWH_POST) {
			route_method_error(r, "POST");
			return;
		}
		r->action = KWD_A_SECRET_RESTORE;
		r->handler = h_vault_restore;
		return;
	}
	if (strcmp(p, "rotation") == 0) {
		if (m == KWH_POST) {
			r->action = KWD_A_VAULT_ROTATE;
			r->handler = h_rotation_start;
		} else if (m == KWH_GET) {
			r->action = KWD_A_VAULT_STATUS;
			r->handler = h_rotation_status;
		} else {
			route_method_error(r, "GET, POST");
		}
		return;
	}
	if (strcmp(p, "master-keys") == 0) {
		if (m != KWH_GET) {
			route_method_error(r, "GET");
			return;
		}
		r->action = KWD_A_VAULT_STATUS;
		r->handler = h_mkeys_list;
		return;
	}
	if (strncmp(p, "master-keys/", 12) == 0) {
		const char *num = p + 12, *op = strchr(num, '/');
		if (op == NULL || parse_u64(num, (size_t)(op - num), &r->version) != 0 || r->version == 0 ||
		    (strcmp(op, "/retire") != 0 && strcmp(op, "/destroy") != 0)) {
			kwd_reply_error(r, 404, "not_found", "use master-keys/{version}/retire or /destroy");
			return;
		}
		if (m != KWH_POST) {
			route_method_error(r, "POST");
			return;
		}
		r->has_version = 1;
		r->action = KWD_A_VAULT_RETIRE;
		r->handler = op[1] == 'r' ? h_mkey_retire : h_mkey_destroy;
		return;
	}
	if (strncmp(p, "keys/", 5) == 0) {
		static const struct { const char *op; enum kwd_action a; kwd_handler_fn h; } ops[] = {
			{ "datakey", KWD_A_KEY_DATAKEY, h_key_datakey },
			{ "unwrap", KWD_A_KEY_UNWRAP, h_key_unwrap },
			{ "rewrap", KWD_A_KEY_WRAP, h_key_rewrap },
			{ "encrypt", KWD_A_KEY_ENCRYPT, h_key_encrypt },
			{ "decrypt", KWD_A_KEY_DECRYPT, h_key_decrypt },
		};
		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
			if (strcmp(p + 5, ops[i].op) == 0) {
				if (m != KWH_POST) {
					route_method_error(r, "POST");
					return;
				}
				r->action = ops[i].a;
				r->handler = ops[i].h;
				return;
			}
		kwd_reply_error(r, 404, "not_found", "no key operation '%.40s' (datakey, unwrap, rewrap, encrypt, decrypt)", p + 5);
		return;
	}
	if (strcmp(p, "signing-keys") == 0) {
		if (m == KWH_POST) {
			/* The name is in the body; the policy decides on it. */
			const char *n = r->body ? json_string_value(json_object_get(r->body, "name")) : NULL;
			if (n == NULL || skey_name_check(n, strlen(n)) != 0) {
				kwd_reply_error(r, 400, "invalid_name",
				    "the body needs \"name\": 1 to 64 characters of A-Z a-z 0-9 . _ -");
				return;
			}
			snprintf(r->name, sizeof(r->name), "%s", n);
			r->action = KWD_A_KEY_CREATE;
			r->handler = h_skey_create;
		} else if (m == KWH_GET) {
			r->action = KWD_A_KEY_VERIFY;
			r->handler = h_skey_list;
		} else {
			route_method_error(r, "GET, POST");
		}
		return;
	}
	if (strncmp(p, "signing-keys/", 13) == 0) {
		const char *n = p + 13, *op = strchr(n, '/');
		size_t nl = op ? (size_t)(op - n) : strlen(n);
		if (skey_name_check(n, nl) != 0) {
			kwd_reply_error(r, 400, "invalid_name", "a signing key name is 1 to 64 characters of A-Z a-z 0-9 . _ -");
			return;
		}
		memcpy(r->name, n, nl);
		r->name[nl] = '\0';
		if (op == NULL) {
			if (m != KWH_GET) {
				route_method_error(r, "GET");
				return;
			}
			r->action = KWD_A_KEY_VERIFY;
			r->handler = h_skey_get;
			return;
		}
		if (m != KWH_POST) {
			route_method_error(r, "POST");
			return;
		}
		if (strcmp(op, "/rotate") == 0) {
			r->action = KWD_A_KEY_CREATE;
			r->handler = h_skey_rotate;
		} else if (strcmp(op, "/sign") == 0) {
			r->action = KWD_A_KEY_SIGN;
			r->handler = h_skey_sign;
		} else if (strcmp(op, "/verify") == 0) {
			r->action = KWD_A_KEY_VERIFY;
			r->handler = h_skey_verify;
		} else if (strncmp(op, "/versions/", 10) == 0) {
			const char *num = op + 10, *end = strchr(num, '/');
			if (end == NULL || parse_u64(num, (size_t)(end - num), &r->version) != 0 ||
			    r->version == 0 || r->version > 1000000 ||
			    (strcmp(end, "/destroy") != 0 && strcmp(end, "/disable") != 0 &&
			    strcmp(end, "/enable") != 0)) {
				kwd_reply_error(r, 404, "not_found", "use signing-keys/{name}/versions/{version}/"
				    "destroy, /disable or /enable");
				return;
			}
			r->has_version = 1;
			/* Taking a version out of service, or putting it back: the
			 * crypto officer's, like retiring a master key. */
			r->action = KWD_A_VAULT_RETIRE;
			r->handler = strcmp(end, "/destroy") == 0 ? h_skey_destroy :
			    strcmp(end, "/disable") == 0 ? h_skey_disable : h_skey_enable;
		} else {
			kwd_reply_error(r, 404, "not_found", "no signing key operation '%.40s' (rotate, sign, verify, "
			    "versions/{version}/destroy, disable, enable)", op + 1);
		}
		return;
	}
	kwd_reply_error(r, 404, "not_found", "no such resource under vault '%s'", r->vault);
}

/* ---- JSON helpers -------------------------------------------------------------- */

json_t *
kwd_time_json(int64_t us)
{
	char buf[40];
	if (us == 0)
		return json_null();
	return json_string(kwd_time_str(buf, sizeof(buf), us));
}

json_t *
kwd_b64_json(const uint8_t *bin, size_t len, int url)
{
	char *s = malloc(4 * ((len + 2) / 3) + 1);
	json_t *j;
	int n;

	if (s == NULL)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *)s, bin, (int)len);
	if (url) {
		while (n > 0 && s[n - 1] == '=')
			n--;
		s[n] = '\0';
		for (int i = 0; i < n; i++)
			s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
	}
	j = json_string(s);
	free(s);
	return j;
}

static void
jw_time(struct jw *w, const char *key, int64_t us)
{
	char buf[40];

	if (us == 0)
		jw_null(w, key);
	else
		jw_str(w, key, kwd_time_str(buf, sizeof(buf), us));
}

/* A secret's metadata, the members of every reply that describes one,
 * written into w's open object. */
static void
meta_jw(struct jw *w, const char *vault, const struct store_meta *m)
{
	jw_str(w, "vault", vault);
	jw_str(w, "name", m->name);
	jw_int(w, "version", (int64_t)m->version);
	jw_time(w, "created", m->created);
	jw_time(w, "updated", m->updated);
	jw_bool(w, "enabled", m->enabled);
	jw_time(w, "not_before", m->not_before);
	jw_time(w, "expires", m->expires);
	jw_str(w, "content_type", m->content_type);
	if (m->tags[0] == '\0' || strcmp(m->tags, "{}") == 0) {
		jw_raw(w, "tags", "{}", 2);
	} else {
		/* Stored by us as a JSON object; printed again so that a
		 * damaged row cannot break the reply. */
		json_t *t = json_loads(m->tags, 0, NULL);
		char *txt = json_is_object(t) ? json_dumps(t, JSON_COMPACT) : NULL;

		if (txt != NULL)
			jw_raw(w, "tags", txt, strlen(txt));
		else
			jw_raw(w, "tags", "{}", 2);
		free(txt);
		json_decref(t);
	}
	jw_int(w, "key_version", (int64_t)m->key_version);
	if (m->deleted != 0) {
		jw_time(w, "deleted", m->deleted);
		jw_time(w, "scheduled_purge", m->scheduled_purge);
	}
}

static json_t *
meta_json(const char *vault, const struct store_meta *m)
{
	struct jw w;
	size_t len;
	char *txt;
	json_t *o;

	jw_open(&w);
	meta_jw(&w, vault, m);
	if ((txt = jw_finish(&w, &len)) == NULL)
		return NULL;
	o = json_loadb(txt, len, 0, NULL);
	free(txt);
	return o;
}

static int
query_u64(struct kwd_req *r, const char *key, uint64_t *out, int *present)
{
	json_t *v = json_object_get(r->query, key);
	const char *s;

	*present = 0;
	if (v == NULL)
		return 0;
	s = json_string_value(v);
	if (s == NULL || parse_u64(s, strlen(s), out) != 0) {
		kwd_reply_error(r, 400, "invalid_parameter", "query parameter %s must be a whole number", key);
		return -1;
	}
	*present = 1;
	return 0;
}

/* Parse the attributes a PUT or PATCH may carry into m, noting which were
 * given in *mask.  Replies 400 and returns -1 on a bad one. */
static int
parse_attrs(struct kwd_req *r, struct store_meta *m, unsigned *mask)
{
	json_t *v;
	const char *key;

	*mask = 0;
	json_object_foreach(r->body, key, v) {
		if (strcmp(key, "value") == 0 || strcmp(key, "encoding") == 0)
			continue;
		if (strcmp(key, "enabled") == 0) {
			if (!json_is_boolean(v))
				goto type;
			m->enabled = json_is_true(v);
			*mask |= STORE_ATTR_ENABLED;
		} else if (strcmp(key, "not_before") == 0 || strcmp(key, "expires") == 0) {
			int64_t t = 0;
			if (!json_is_null(v)) {
				if (!json_is_string(v) || kwd_time_parse(json_string_value(v), &t) != 0) {
					kwd_reply_error(r, 400, "invalid_value",
					    "%s must be an RFC 3339 time such as 2026-01-02T03:04:05Z, or null", key);
					return -1;
				}
			}
			if (key[0] == 'n') {
				m->not_before = t;
				*mask |= STORE_ATTR_NOT_BEFORE;
			} else {
				m->expires = t;
				*mask |= STORE_ATTR_EXPIRES;
			}
		} else if (strcmp(key, "content_type") == 0) {
			const char *s = json_string_value(v);
			if (s == NULL)
				goto type;
			if (strlen(s) > STORE_CTYPE_MAX) {
				kwd_reply_error(r, 400, "invalid_value", "content_type is longer than %d bytes", STORE_CTYPE_MAX);
				return -1;
			}
			snprintf(m->content_type, sizeof(m->content_type), "%s", s);
			*mask |= STORE_ATTR_CONTENT_TYPE;
		} else if (strcmp(key, "tags") == 0) {
			const char *tk;
			json_t *tv;
			char *txt;
			if (!json_is_object(v))
				goto type;
			if (json_object_size(v) > 64) {
				kwd_reply_error(r, 400, "invalid_value", "at most 64 tags");
				return -1;
			}
			json_object_foreach(v, tk, tv) {
				if (!json_is_string(tv) || strlen(tk) == 0 || strlen(tk) > 128 ||
				    json_string_length(tv) > 256) {
					kwd_reply_error(r, 400, "invalid_value",
					    "tags must map names of 1 to 128 bytes to strings of at most 256 bytes");
					return -1;
				}
			}
			txt = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
			if (txt == NULL || strlen(txt) > STORE_TAGS_MAX) {
				free(txt);
				kwd_reply_error(r, 400, "invalid_value", "tags are too large");
				return -1;
			}
			snprintf(m->tags, sizeof(m->tags), "%s", txt);
			free(txt);
			*mask |= STORE_ATTR_TAGS;
		} else {
			kwd_reply_error(r, 400, "invalid_value",
			    "unknown field \"%.64s\" (known: value, encoding, content_type, tags, enabled, not_before, expires)", key);
			return -1;
		}
		continue;
type:
		kwd_reply_error(r, 400, "invalid_value", "field %s has the wrong type", key);
		return -1;
	}
	return 0;
}

/* Is a version readable now?  0, or replies 403. */
static int
check_validity(struct kwd_req *r, const struct store_meta *m)
{
	int64_t now = (int64_t)kwd_now_us();
	char t[40];

	if (!m->enabled) {
		kwd_reply_error(r, 403, "secret_disabled", "version %llu of '%s' is disabled",
		    (unsigned long long)m->version, m->name);
		return -1;
	}
	if (m->not_before != 0 && now < m->not_before) {
		kwd_reply_error(r, 403, "secret_not_yet_valid", "version %llu of '%s' is not valid before %s",
		    (unsigned long long)m->version, m->name, kwd_time_str(t, sizeof(t), m->not_before));
		return -1;
	}
	if (m->expires != 0 && now >= m->expires) {
		kwd_reply_error(r, 403, "secret_expired", "version %llu of '%s' expired at %s",
		    (unsigned long long)m->version, m->name, kwd_time_str(t, sizeof(t), m->expires));
		return -1;
	}
	return 0;
}

static int
is_utf8(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			if (c == 0)
				return 0;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; }
		else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; }
		else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; }
		else return 0;
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* Append s as a JSON string (quotes and escapes) to out at *o. */
static size_t
json_escaped_len(const uint8_t *s, size_t n)
{
	size_t len = 2;
	for (size_t i = 0; i < n; i++)
		len += (s[i] == '"' || s[i] == '\\') ? 2 : (s[i] < 0x20 ? 6 : 1);
	return len;
}

static void
json_escape_into(uint8_t *out, size_t *o, const uint8_t *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	out[(*o)++] = '"';
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '"' || c == '\\') {
			out[(*o)++] = '\\';
			out[(*o)++] = c;
		} else if (c < 0x20) {
			out[(*o)++] = '\\';
			out[(*o)++] = 'u';
			out[(*o)++] = '0';
			out[(*o)++] = '0';
			out[(*o)++] = (uint8_t)hex[c >> 4];
			out[(*o)++] = (uint8_t)hex[c & 15];
		} else {
			out[(*o)++] = c;
		}
	}
	out[(*o)++] = '"';
}

/* Writes log their intent durably before they run: no change without a
 * trace.  0, or the reply is 503 saying that nothing was <done>. */
int
kwd_intent_or_refuse(struct kwd_req *r, const char *done)
{
	if (audit_glue_intent(r) == 0)
		return 0;
	kwd_reply_error(r, 503, "unavailable",
	    "the audit log cannot record the intent, so nothing was %s", done);
	return -1;
}

/* ---- secrets -------------------------------------------------------------------- */

void
h_secret_get(struct kwd_req *r)
{
	struct store_record rec;
	uint8_t *dek = NULL, *pt = NULL, *out = NULL;
	size_t deklen = 0, ptlen, outlen, o = 0;
	char aad[400];
	int aadlen, e, utf8;
	char *metatxt = NULL;

	memset(&rec, 0, sizeof(rec));
	e = store_secret_get(r->d->store, r->vault, r->name, r->has_version ? r->version : 0, &rec);
	if (e == KW_E_NOT_FOUND) {
		if (r->has_version)
			kwd_reply_error(r, 404, "version_not_found", "secret '%s' has no version %llu in vault '%s'",
			    r->name, (unsigned long long)r->version, r->vault);
		else
			kwd_reply_error(r, 404, "secret_not_found", "no secret '%s' in vault '%s'", r->name, r->vault);
		goto out;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "read");
		goto out;
	}
	r->version = rec.meta.version;
	r->key_version = rec.meta.key_version;
	if (check_validity(r, &rec.meta) != 0)
		goto out;
	if ((e = kwd_wrapped_key_usable(r->d, r->vault, rec.meta.name, rec.meta.version,
	    rec.meta.key_version, rec.wrapped, rec.wrapped_len)) != 0) {
		kwd_reply_kwerr(r, e, "read");
		goto out;
	}
	aadlen = seal_aad(aad, sizeof(aad), r->vault, rec.meta.name, rec.meta.version);
	if (aadlen < 0 || rec.body_len < SEAL_TAG_LEN) {
		kwd_reply_kwerr(r, KW_E_FORMAT, "read");
		goto out;
	}
	if ((dek = kw_secalloc(P11_DEK_MAX)) == NULL || (pt = kw_secalloc(rec.body_len)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of secure memory");
		goto out;
	}
	e = p11_unwrap(r->d->p11, r->vault, rec.wrapped, rec.wrapped_len, aad, (size_t)aadlen, dek, &deklen);
	if (e == 0 && deklen != DEK_LEN)
		e = kw_fail(KW_E_FORMAT, "data key of unexpected length %zu", deklen);
	if (e == 0)
		e = seal_decrypt(dek, aad, (size_t)aadlen, rec.nonce, rec.body, rec.body_len, pt);
	if (e != 0) {
		kwd_reply_kwerr(r, e, "read");
		goto out;
	}
	ptlen = rec.body_len - SEAL_TAG_LEN;
	utf8 = is_utf8(pt, ptlen);

	/* The reply: metadata by jansson, the value spliced in by hand so it
	 * lives only in locked memory. */
	{
		struct jw w;
		size_t len;

		jw_open(&w);
		meta_jw(&w, r->vault, &rec.meta);
		jw_str(&w, "encoding", utf8 ? "utf-8" : "base64");
		metatxt = jw_finish(&w, &len);
	}
	if (metatxt == NULL) {
		kwd_reply_error(r, 500, "internal", "cannot encode the reply");
		goto out;
	}
	{
		size_t mlen = strlen(metatxt);
		size_t vlen = utf8 ? json_escaped_len(pt, ptlen) : 2 + 4 * ((ptlen + 2) / 3) + 1;
		outlen = mlen + 10 + vlen + 2;
		if ((out = kw_secalloc(outlen)) == NULL) {
			kwd_reply_error(r, 503, "unavailable", "out of secure memory");
			goto out;
		}
		memcpy(out, metatxt, mlen - 1);      /* without the closing '}' */
		o = mlen - 1;
		memcpy(out + o, ",\"value\":", 9);
		o += 9;
		if (utf8) {
			json_escape_into(out, &o, pt, ptlen);
		} else {
			out[o++] = '"';
			o += (size_t)EVP_EncodeBlock(out + o, pt, (int)ptlen);
			out[o++] = '"';
		}
		out[o++] = '}';
		out[o++] = '\n';
	}
	kw_secret_clear(&r->reply_secret);
	r->reply_secret.data = out;
	r->reply_secret.len = o;
	out = NULL;   /* owned by the request now */
	r->status = 200;
	r->content_type = "application/json";
	atomic_fetch_add(&r->d->m.secret_reads, 1);
out:
	kw_secfree(out);
	kw_secfree(pt);
	kw_secfree(dek);
	free(metatxt);
	store_record_clear(&rec);
}

/* The value of a PUT, decoded into locked memory; the JSON copy is wiped. */
static int
take_value(struct kwd_req *r, kw_secret *val)
{
	json_t *v = json_object_get(r->body, "value");
	json_t *enc = json_object_get(r->body, "encoding");
	const char *encs = "utf-8";
	char *s;
	size_t len;
	int e = -1;

	if (enc != NULL) {
		encs = json_string_value(enc);
		if (encs == NULL || (strcmp(encs, "utf-8") != 0 && strcmp(encs, "base64") != 0)) {
			kwd_reply_error(r, 400, "invalid_value", "encoding must be \"utf-8\" or \"base64\"");
			goto wipe;
		}
	}
	if (v == NULL || !json_is_string(v)) {
		kwd_reply_error(r, 400, "invalid_value", "the body needs \"value\", a string");
		goto wipe;
	}
	s = (char *)(uintptr_t)json_string_value(v);
	len = json_string_length(v);
	if (strcmp(encs, "base64") == 0) {
		uint8_t *tmp;
		size_t n;
		if (len % 4 != 0) {
			kwd_reply_error(r, 400, "invalid_value", "the value is not valid base64 (length not a multiple of 4)");
			goto wipe;
		}
		if ((tmp = kw_secalloc(KWB64_MAX(len))) == NULL)
			goto oom;
		if (kwb64_decode(s, len, 0, tmp, &n) != 0) {
			kw_secfree(tmp);
			kwd_reply_error(r, 400, "invalid_value", "the value is not valid base64");
			goto wipe;
		}
		val->data = tmp;
		val->len = n;
	} else {
		if (kw_secret_dup(val, s, len) != 0)
			goto oom;
	}
	if (val->len > r->d->cfg->max_value) {
		size_t got = val->len;
		kw_secret_clear(val);
		kwd_reply_error(r, 413, "too_large", "the value is %zu bytes; the limit is %llu", got,
		    (unsigned long long)r->d->cfg->max_value);
		goto wipe;
	}
	e = 0;
	goto wipe;
oom:
	kwd_reply_error(r, 503, "unavailable", "out of secure memory");
wipe:
	if (v != NULL && json_is_string(v))
		kw_wipe((void *)(uintptr_t)json_string_value(v), json_string_length(v));
	return e;
}

int
kwd_secret_put_parse(struct kwd_req *r, kw_secret *val, uint64_t *cas, int *has_cas,
    struct store_meta *m, unsigned *mask)
{
	if (r->body == NULL) {
		kwd_reply_error(r, 400, "invalid_json", "the request needs a JSON body with \"value\"");
		return -1;
	}
	if (take_value(r, val) != 0)
		return -1;
	if (query_u64(r, "cas", cas, has_cas) != 0)
		goto fail;
	m->enabled = 1;
	snprintf(m->tags, sizeof(m->tags), "{}");
	if (parse_attrs(r, m, mask) != 0)
		goto fail;
	return 0;
fail:
	kw_secret_clear(val);
	return -1;
}

void
h_secret_put(struct kwd_req *r)
{
	struct store_record rec;
	kw_secret val = { 0 };
	uint8_t *dek = NULL;
	uint64_t cas = 0, cur = 0;
	int has_cas = 0, e, tries;
	pthread_mutex_t *stripe = NULL;
	unsigned mask;
	char aad[400];
	int aadlen;
	int64_t now = (int64_t)kwd_now_us();

	memset(&rec, 0, sizeof(rec));
	if (kwd_secret_put_parse(r, &val, &cas, &has_cas, &rec.meta, &mask) != 0)
		goto out;
	snprintf(rec.meta.name, sizeof(rec.meta.name), "%s", r->name);
	rec.meta.created = rec.meta.updated = now;
	if ((e = kwd_keys_current(r->d, r->vault, &rec.meta.key_version)) != 0) {
		kwd_reply_kwerr(r, e, "write");
		goto out;
	}
	r->key_version = rec.meta.key_version;
	if ((dek = kw_secalloc(DEK_LEN)) == NULL ||
	    (rec.body = malloc(val.len + SEAL_TAG_LEN)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		goto out;
	}
	rec.body_len = val.len + SEAL_TAG_LEN;

	if (kwd_intent_or_refuse(r, "written") != 0)
		goto out;
	stripe = put_lock(r->vault, r->name);
	pthread_mutex_lock(stripe);
	for (tries = 0;; tries++) {
		if ((e = store_secret_current(r->d->store, r->vault, r->name, &cur)) != 0) {
			kwd_reply_kwerr(r, e, "write");
			goto out;
		}
		if (has_cas && cur != cas) {
			kwd_reply_error(r, 409, "conflict",
			    "check-and-set failed: the current version of '%s' is %llu, not %llu",
			    r->name, (unsigned long long)cur, (unsigned long long)cas);
			goto out;
		}
		rec.meta.version = cur + 1;
		r->version = rec.meta.version;
		/* again at each try: the store refuses a version retired
		 * since the last look (KW_E_RETIRED below) */
		if (tries > 0 && (e = kwd_keys_current(r->d, r->vault, &rec.meta.key_version)) != 0) {
			kwd_reply_kwerr(r, e, "write");
			goto out;
		}
		r->key_version = rec.meta.key_version;
		aadlen = seal_aad(aad, sizeof(aad), r->vault, r->name, rec.meta.version);
		/* A fresh data key from the token for every version. */
		if ((e = p11_random(r->d->p11, dek, DEK_LEN)) != 0 ||
		    (e = p11_wrap(r->d->p11, r->vault, rec.meta.key_version, dek, DEK_LEN, aad,
			(size_t)aadlen, rec.wrapped, &rec.wrapped_len)) != 0 ||
		    (e = seal_encrypt(dek, aad, (size_t)aadlen, val.data, val.len, rec.nonce, rec.body)) != 0) {
			kwd_reply_kwerr(r, e, "write");
			goto out;
		}
		kw_wipe(dek, DEK_LEN);
		e = store_secret_put(r->d->store, r->vault, &rec, &cur);
		if (e == KW_E_CONFLICT && cur == 0) {
			/* The name exists only among the deleted. */
			kwd_reply_error(r, 409, "conflict",
			    "'%s' is deleted in vault '%s': recover it or purge it before writing it again",
			    r->name, r->vault);
			goto out;
		}
		if (e == KW_E_CONFLICT && !has_cas && tries < PUT_RETRIES)
			continue;
		if (e == KW_E_RETIRED && tries < PUT_RETRIES) {
			/* The store's current version is not the view's: a
			 * rotation is making its new one current, or the view
			 * could not be read back after it did.  Read it again
			 * (after the rotation), then pick again. */
			if ((e = kwd_keys_refresh(r->d, r->vault)) != 0) {
				kwd_reply_kwerr(r, e, "write");
				goto out;
			}
			continue;
		}
		if (e == KW_E_CONFLICT) {
			kwd_reply_error(r, 409, "conflict", has_cas ?
			    "check-and-set failed: the current version of '%s' is %llu, not %llu" :
			    "'%s' changed under this write too often (now version %llu); try again",
			    r->name, (unsigned long long)cur, (unsigned long long)cas);
			goto out;
		}
		if (e == KW_E_RETIRED) {
			/* the version changed under every try: a rotation
			 * the daemon's view has not caught up with */
			kwd_reply_error(r, 503, "unavailable", "the master key of vault '%s' changed "
			    "during the write; nothing was written: try again", r->vault);
			goto out;
		}
		if (e != 0) {
			kwd_reply_kwerr(r, e, "write");
			goto out;
		}
		break;
	}
	atomic_fetch_add(&r->d->m.secret_writes, 1);
	kwd_reply_json(r, 201, meta_json(r->vault, &rec.meta));
out:
	if (stripe != NULL)
		pthread_mutex_unlock(stripe);
	kw_secfree(dek);
	kw_secret_clear(&val);
	store_record_clear(&rec);
}

void
h_secret_list(struct kwd_req *r)
{
	struct store_meta *ms = NULL;
	size_t n = 0;
	const char *prefix = json_string_value(json_object_get(r->query, "prefix"));
	json_t *arr;
	int e;

	e = store_secret_list(r->d->store, r->vault, prefix, NULL, 100000, &ms, &n);
	if (e != 0) {
		kwd_reply_kwerr(r, e, "list");
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, meta_json(r->vault, &ms[i]));
	free(ms);
	kwd_reply_json(r, 200, json_pack("{s:o}", "secrets", arr));
}

void
h_secret_versions(struct kwd_req *r)
{
	struct store_meta *ms = NULL;
	size_t n = 0;
	json_t *arr;
	int e = store_secret_versions(r->d->store, r->vault, r->name, &ms, &n);

	if (e == KW_E_NOT_FOUND || (e == 0 && n == 0)) {
		free(ms);
		kwd_reply_error(r, 404, "secret_not_found", "no secret '%s' in vault '%s'", r->name, r->vault);
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "versions");
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, meta_json(r->vault, &ms[i]));
	free(ms);
	kwd_reply_json(r, 200, json_pack("{s:o}", "versions", arr));
}

int
kwd_secret_patch_parse(struct kwd_req *r, struct store_meta *attrs, unsigned *mask)
{
	memset(attrs, 0, sizeof(*attrs));
	if (r->body == NULL || json_object_get(r->body, "value") != NULL ||
	    json_object_get(r->body, "encoding") != NULL) {
		json_t *v = r->body ? json_object_get(r->body, "value") : NULL;
		if (json_is_string(v))   /* a value sent here by mistake: wipe it */
			kw_wipe((void *)(uintptr_t)json_string_value(v), json_string_length(v));
		kwd_reply_error(r, 400, "invalid_value", r->body == NULL ?
		    "the request needs a JSON body with attributes to change" :
		    "PATCH changes attributes only; write a new value with PUT");
		return -1;
	}
	if (parse_attrs(r, attrs, mask) != 0)
		return -1;
	if (*mask == 0) {
		kwd_reply_error(r, 400, "invalid_value", "nothing to change");
		return -1;
	}
	return 0;
}

void
h_secret_patch(struct kwd_req *r)
{
	struct store_meta attrs, out;
	unsigned mask;
	int e;

	if (kwd_secret_patch_parse(r, &attrs, &mask) != 0)
		return;
	if (kwd_intent_or_refuse(r, "changed") != 0)
		return;
	e = store_secret_update(r->d->store, r->vault, r->name, r->has_version ? r->version : 0,
	    mask, &attrs, (int64_t)kwd_now_us(), &out);
	if (e == KW_E_NOT_FOUND) {
		kwd_reply_error(r, 404, r->has_version ? "version_not_found" : "secret_not_found",
		    "no secret '%s'%s in vault '%s'", r->name, r->has_version ? " at that version" : "", r->vault);
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "update");
		return;
	}
	r->version = out.version;
	kwd_reply_json(r, 200, meta_json(r->vault, &out));
}

void
h_secret_delete(struct kwd_req *r)
{
	const struct config_vault *cv = config_vault_find(r->d->cfg, r->vault);
	struct store_meta out;
	int64_t now = (int64_t)kwd_now_us();
	int e;

	if (kwd_intent_or_refuse(r, "deleted") != 0)
		return;
	e = store_secret_delete(r->d->store, r->vault, r->name, now,
	    now + (int64_t)__atomic_load_n(&cv->retention_days, __ATOMIC_RELAXED) * 86400 * 1000000, &out);
	if (e == KW_E_NOT_FOUND) {
		kwd_reply_error(r, 404, "secret_not_found", "no secret '%s' in vault '%s'", r->name, r->vault);
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "delete");
		return;
	}
	kwd_reply_json(r, 200, json_pack("{s:s,s:s,s:o,s:o}", "vault", r->vault, "name", r->name,
	    "deleted", kwd_time_json(out.deleted), "scheduled_purge", kwd_time_json(out.scheduled_purge)));
}

void
h_deleted_list(struct kwd_req *r)
{
	struct store_meta *ms = NULL;
	size_t n = 0;
	json_t *arr;
	int e = store_deleted_list(r->d->store, r->vault, &ms, &n);

	if (e != 0) {
		kwd_reply_kwerr(r, e, "list deleted");
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:s,s:I,s:o,s:o}", "name", ms[i].name,
		    "version", (json_int_t)ms[i].version, "deleted", kwd_time_json(ms[i].deleted),
		    "scheduled_purge", kwd_time_json(ms[i].scheduled_purge)));
	free(ms);
	kwd_reply_json(r, 200, json_pack("{s:o}", "deleted", arr));
}

void
h_deleted_recover(struct kwd_req *r)
{
	struct store_meta out;
	int e;

	if (kwd_intent_or_refuse(r, "recovered") != 0)
		return;
	e = store_secret_recover(r->d->store, r->vault, r->name, &out);
	if (e == KW_E_NOT_FOUND) {
		kwd_reply_error(r, 404, "secret_not_found", "no deleted secret '%s' in vault '%s'", r->name, r->vault);
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "recover");
		return;
	}
	r->version = out.version;
	kwd_reply_json(r, 200, meta_json(r->vault, &out));
}

void
h_deleted_purge(struct kwd_req *r)
{
	const struct config_vault *cv = config_vault_find(r->d->cfg, r->vault);
	struct store_meta m;
	char t[40];
	int e = store_deleted_get(r->d->store, r->vault, r->name, &m);

	if (e == KW_E_NOT_FOUND) {
		kwd_reply_error(r, 404, "secret_not_found", "no deleted secret '%s' in vault '%s'", r->name, r->vault);
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "purge");
		return;
	}
	if (__atomic_load_n(&cv->purge_protection, __ATOMIC_RELAXED) &&
	    (int64_t)kwd_now_us() < m.scheduled_purge) {
		kwd_reply_error(r, 403, "purge_protected",
		    "vault '%s' has purge protection: '%s' can be purged from %s on", r->vault, r->name,
		    kwd_time_str(t, sizeof(t), m.scheduled_purge));
		return;
	}
	if (kwd_intent_or_refuse(r, "purged") != 0)
		return;
	e = store_secret_purge(r->d->store, r->vault, r->name,
	    __atomic_load_n(&cv->purge_protection, __ATOMIC_RELAXED) ? (int64_t)kwd_now_us() : 0);
	if (e == KW_E_NOT_FOUND && store_deleted_get(r->d->store, r->vault, r->name, &m) == 0) {
		/* deleted again meanwhile, with a new purge date */
		kwd_reply_error(r, 403, "purge_protected",
		    "vault '%s' has purge protection: '%s' can be purged from %s on", r->vault, r->name,
		    kwd_time_str(t, sizeof(t), m.scheduled_purge));
		return;
	}
	if (e != 0) {
		kwd_reply_kwerr(r, e, "purge");
		return;
	}
	kwd_reply_json(r, 200, json_pack("{s:s,s:s,s:b}", "vault", r->vault, "name", r->name, "purged", 1));
}

/* ---- vaults and service ------------------------------------------------------------ */

void
h_vault_list(struct kwd_req *r)
{
	struct store_vault *vs = NULL;
	size_t n = 0;
	json_t *arr;
	int e = store_vault_list(r->d->store, &vs, &n);

	if (e != 0) {
		kwd_reply_kwerr(r, e, "list vaults");
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:s,s:I,s:b,s:I}", "name", vs[i].name,
		    "key_version", (json_int_t)vs[i].key_version, "purge_protection", vs[i].purge_protection,
		    "retention_days", (json_int_t)vs[i].retention_days));
	free(vs);
	kwd_reply_json(r, 200, json_pack("{s:o}", "vaults", arr));
}

static int
b64_json(json_t *o, const char *key, const uint8_t *d, size_t n)
{
	json_t *j = kwd_b64_json(d, n, 0);
	if (j == NULL)
		return -ENOMEM;
	json_object_set_new(o, key, j);
	return 0;
}

static int
b64_take(json_t *o, const char *key, uint8_t *out, size_t max, size_t *len)
{
	const char *s = json_string_value(json_object_get(o, key));
	size_t sl, n;
	uint8_t *tmp;

	if (s == NULL || (sl = strlen(s)) % 4 != 0)
		return -EINVAL;
	if ((tmp = malloc(KWB64_MAX(sl))) == NULL)
		return -ENOMEM;
	if (kwb64_decode(s, sl, 0, tmp, &n) != 0 || n > max) {
		free(tmp);
		return -EINVAL;
	}
	memcpy(out, tmp, n);
	*len = n;
	free(tmp);
	return 0;
}

/* A restored record's time key into *us: absent or null is 0 (never set);
 * NULL, or key when its value is not an RFC 3339 time. */
static const char *
restore_time(const json_t *o, const char *key, int64_t *us)
{
	const json_t *v = json_object_get(o, key);

	*us = 0;
	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v) || kwd_time_parse(json_string_value(v), us) != 0) {
		*us = 0;
		return key;
	}
	return NULL;
}

/* What a backup document is built of, while the store's scan runs. */
struct backup_doc {
	json_t *records;
	json_t *marks;     /* disabled signing-key versions */
};

static int
backup_one(void *arg, const struct store_record *rec)
{
	json_t *arr = ((struct backup_doc *)arg)->records, *o = meta_json("", &rec->meta);

	json_object_del(o, "vault");
	json_object_set_new(o, "deleted", kwd_time_json(rec->meta.deleted));
	json_object_set_new(o, "scheduled_purge", kwd_time_json(rec->meta.scheduled_purge));
	if (b64_json(o, "wrapped_key", rec->wrapped, rec->wrapped_len) != 0 ||
	    b64_json(o, "nonce", rec->nonce, sizeof(rec->nonce)) != 0 ||
	    b64_json(o, "body", rec->body, rec->body_len) != 0) {
		json_decref(o);
		return -ENOMEM;
	}
	return json_array_append_new(arr, o) == 0 ? 0 : -ENOMEM;
}

static int
backup_mark(void *arg, const struct store_skey_mark *m)
{
	json_t *o = json_pack("{s:s,s:I,s:o}", "name", m->name, "version", (json_int_t)m->version,
	    "since", kwd_time_json(m->since));

	return o != NULL && json_array_append_new(((struct backup_doc *)arg)->marks, o) == 0 ?
	    0 : -ENOMEM;
}

void
h_vault_backup(struct kwd_req *r)
{
	struct backup_doc doc = { json_array(), json_array() };
	char t[40];
	int e = doc.records && doc.marks ?
	    store_vault_export(r->d->store, r->vault, backup_one, backup_mark, &doc) : -ENOMEM;

	if (e != 0) {
		json_decref(doc.records);
		json_decref(doc.marks);
		kwd_reply_kwerr(r, e, "backup");
		return;
	}
	kwd_reply_json(r, 200, json_pack("{s:s,s:i,s:s,s:s,s:o,s:o}", "keywarden_backup", "1",
	    "format", 1, "vault", r->vault, "created", kwd_time_str(t, sizeof(t), (int64_t)kwd_now_us()),
	    "records", doc.records, "disabled_signing_keys", doc.marks));
}

/* Disabling a signing key's version is vault.retire on that key, not part
 * of secret.restore: each key named in the marks must allow it to the
 * caller (else a 403, and -1).  Marks of versions the token does not hold
 * (destroyed since the backup, or never made) are dropped: a mark must not
 * wait for a version a later rotation would create.  The marks kept are
 * named in the request's audit event. */
static int
restore_marks_allowed(struct kwd_req *r, struct store_skey_mark *m, size_t *n)
{
	struct kwd_decision dec;
	struct p11_skey *keys = NULL;
	json_t *named;
	size_t i, j, nk = 0, kept = 0;
	int e;

	if ((named = json_array()) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		return -1;
	}
	for (i = 0; i < *n; i++) {
		int held = 0;

		/* the marks come sorted by name from a backup; ask once per key */
		if (i == 0 || strcmp(m[i].name, m[i - 1].name) != 0) {
			kwd_authorize_as(r->d, r, KWD_A_VAULT_RETIRE, m[i].name, &dec);
			if (!dec.allow) {
				r->allowed = 0;
				snprintf(r->decided_by, sizeof(r->decided_by), "%s", dec.reason);
				snprintf(r->policy_hash, sizeof(r->policy_hash), "%s", dec.policy_hash);
				kwd_reply_error(r, 403, "forbidden", "disabled_signing_keys names signing key "
				    "'%s': restoring its disabled versions needs %s on it, and %s: nothing "
				    "was restored", m[i].name, kwd_action_name(KWD_A_VAULT_RETIRE), dec.reason);
				goto fail;
			}
			free(keys);
			keys = NULL;
			nk = 0;
			e = p11_skey_list(r->d->p11, r->vault, m[i].name, &keys, &nk);
			if (e != 0 && e != KW_E_NOT_FOUND && e != KW_E_KEY_NOT_FOUND) {
				kwd_reply_kwerr(r, e, "restore");
				goto fail;
			}
		}
		for (j = 0; j < nk; j++)
			held |= keys[j].version == m[i].version;
		if (!held)
			continue;
		if (json_array_append_new(named, json_sprintf("%s.%u", m[i].name, m[i].version)) != 0) {
			kwd_reply_error(r, 503, "unavailable", "out of memory");
			goto fail;
		}
		m[kept++] = m[i];
	}
	free(keys);
	*n = kept;
	json_decref(r->extra);
	r->extra = json_pack("{s:o}", "disabled_signing_keys", named);
	return 0;
fail:
	free(keys);
	json_decref(named);
	return -1;
}

/* The backup's disabled signing-key versions (absent in backups made before
 * signing keys could be disabled): *out malloc'd, or a reply sent and -1. */
static int
restore_marks(struct kwd_req *r, struct store_skey_mark **out, size_t *nout)
{
	json_t *a = json_object_get(r->body, "disabled_signing_keys"), *o;
	struct store_skey_mark *m;
	size_t i, n;

	*out = NULL;
	*nout = 0;
	if (a == NULL)
		return 0;
	if (!json_is_array(a)) {
		kwd_reply_error(r, 400, "invalid_value", "disabled_signing_keys: an array expected");
		return -1;
	}
	if ((n = json_array_size(a)) == 0)
		return 0;
	if ((m = calloc(n, sizeof(*m))) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		return -1;
	}
	json_array_foreach(a, i, o) {
		const char *name = json_string_value(json_object_get(o, "name"));
		json_t *v = json_object_get(o, "version"), *since = json_object_get(o, "since");
		size_t nl = name ? strlen(name) : 0;

		if (skey_name_check(name, nl) != 0 || !json_is_integer(v) ||
		    json_integer_value(v) < 1 || json_integer_value(v) > UINT32_MAX ||
		    (since != NULL && (!json_is_string(since) ||
		    kwd_time_parse(json_string_value(since), &m[i].since) != 0))) {
			free(m);
			kwd_reply_error(r, 400, "invalid_value", "disabled_signing_keys[%zu]: a name of 1 to "
			    "64 characters of A-Z a-z 0-9 . _ -, a version from 1, and a time in since "
			    "expected", i);
			return -1;
		}
		memcpy(m[i].name, name, nl + 1);
		m[i].version = (uint32_t)json_integer_value(v);
		if (since == NULL)
			m[i].since = (int64_t)kwd_now_us();
	}
	if (restore_marks_allowed(r, m, &n) != 0) {
		free(m);
		return -1;
	}
	*out = m;
	*nout = n;
	return 0;
}

int
kwd_restore_parse(struct kwd_req *r, struct store_record **out, size_t *nout)
{
	json_t *recs = r->body ? json_object_get(r->body, "records") : NULL;
	struct store_record *rv;
	size_t n, i;
	int e;

	*out = NULL;
	*nout = 0;
	if (!json_is_array(recs) || json_integer_value(json_object_get(r->body, "format")) != 1) {
		kwd_reply_error(r, 400, "invalid_value", "the body is not a keywarden backup of format 1");
		return -1;
	}
	/* The token binds each wrapped key to its vault: records restored into
	 * another vault could never be opened, and would hold its key
	 * versions from being retired. */
	if (json_is_string(json_object_get(r->body, "vault")) &&
	    strcmp(json_string_value(json_object_get(r->body, "vault")), r->vault) != 0) {
		kwd_reply_error(r, 400, "invalid_value", "this is a backup of vault '%.64s': its records "
		    "open only in that vault, not in '%s'", json_string_value(json_object_get(r->body,
		    "vault")), r->vault);
		return -1;
	}
	n = json_array_size(recs);
	if ((rv = calloc(n ? n : 1, sizeof(*rv))) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		return -1;
	}
	for (i = 0; i < n; i++) {
		json_t *o = json_array_get(recs, i);
		struct store_record *x = &rv[i];
		const char *name = json_string_value(json_object_get(o, "name"));
		const char *body = json_string_value(json_object_get(o, "body"));
		const char *why;
		size_t nl, bl;
		unsigned mask;
		json_t *saved = r->body;
		json_t *attrs;

		if (name == NULL || (why = name_check(name, strlen(name))) != NULL || body == NULL) {
			kwd_reply_error(r, 400, "invalid_value", "record %zu: a bad or missing name or body", i);
			goto bad;
		}
		if (!json_is_integer(json_object_get(o, "version")) ||
		    json_integer_value(json_object_get(o, "version")) < 1 ||
		    !json_is_integer(json_object_get(o, "key_version")) ||
		    json_integer_value(json_object_get(o, "key_version")) < 1 ||
		    json_integer_value(json_object_get(o, "key_version")) > (json_int_t)UINT32_MAX) {
			kwd_reply_error(r, 400, "invalid_value", "record %zu: version and key_version "
			    "must be whole numbers from 1 (key_version up to %u)", i, UINT32_MAX);
			goto bad;
		}
		snprintf(x->meta.name, sizeof(x->meta.name), "%s", name);
		x->meta.version = (uint64_t)json_integer_value(json_object_get(o, "version"));
		x->meta.key_version = (uint32_t)json_integer_value(json_object_get(o, "key_version"));
		x->meta.enabled = 1;
		snprintf(x->meta.tags, sizeof(x->meta.tags), "{}");
		attrs = json_pack("{s:O?,s:O?,s:O?,s:O?,s:O?}", "enabled", json_object_get(o, "enabled"),
		    "not_before", json_object_get(o, "not_before"), "expires", json_object_get(o, "expires"),
		    "content_type", json_object_get(o, "content_type"), "tags", json_object_get(o, "tags"));
		r->body = attrs;
		e = parse_attrs(r, &x->meta, &mask);
		r->body = saved;
		json_decref(attrs);
		if (e != 0)
			goto bad;
		if ((why = restore_time(o, "created", &x->meta.created)) != NULL ||
		    (why = restore_time(o, "updated", &x->meta.updated)) != NULL ||
		    (why = restore_time(o, "deleted", &x->meta.deleted)) != NULL ||
		    (x->meta.deleted != 0 &&
		    (why = restore_time(o, "scheduled_purge", &x->meta.scheduled_purge)) != NULL)) {
			kwd_reply_error(r, 400, "invalid_value", "record %zu: %s is not an RFC 3339 time",
			    i, why);
			goto bad;
		}
		bl = strlen(body) / 4 * 3 + 3;
		if ((x->body = malloc(bl)) == NULL ||
		    b64_take(o, "body", x->body, bl, &x->body_len) != 0 ||
		    b64_take(o, "wrapped_key", x->wrapped, sizeof(x->wrapped), &x->wrapped_len) != 0 ||
		    b64_take(o, "nonce", x->nonce, sizeof(x->nonce), &nl) != 0 || nl != sizeof(x->nonce) ||
		    x->body_len < SEAL_TAG_LEN) {
			kwd_reply_error(r, 400, "invalid_value", "record %zu ('%s'): malformed", i, name);
			goto bad;
		}
	}
	*out = rv;
	*nout = n;
	return 0;
bad:
	for (i = 0; i < n; i++)
		store_record_clear(&rv[i]);
	free(rv);
	return -1;
}

void
h_vault_restore(struct kwd_req *r)
{
	struct store_record *rv = NULL;
	struct store_skey_mark *marks = NULL;
	size_t n = 0, i, nmarks = 0;
	int e;

	if (kwd_restore_parse(r, &rv, &n) != 0)
		return;
	for (i = 0; i < n; i++) {
		struct store_record *x = &rv[i];
		const char *name = x->meta.name;

		/* The store's key_version is what retirement and rotation go
		 * by; it must be the version the wrapped key names, or a
		 * record could pass for one under a live version.  A record
		 * under a retired or destroyed master-key version could never
		 * be opened, nor rewrapped by a rotation: bringing it back
		 * would store what no one can read.  Nor can a record under a
		 * version the vault does not know. */
		e = kwd_wrapped_key_usable(r->d, r->vault, x->meta.name, x->meta.version,
		    x->meta.key_version, x->wrapped, x->wrapped_len);
		if (e == KW_E_AUTH) {
			kwd_reply_error(r, 400, "invalid_value", "record %zu ('%s'): key_version %u is not "
			    "the master-key version its wrapped key names", i, name, x->meta.key_version);
			goto out;
		}
		if (e == KW_E_KEY_NOT_FOUND) {
			/* every version the token holds is known from the
			 * start: this one is not in this vault's token */
			kwd_reply_error(r, 409, "key_not_found",
			    "record %zu ('%s' version %llu) is wrapped under master key version %u, "
			    "which vault '%s' does not have (a backup of another token?): nothing "
			    "could open it, so nothing was restored",
			    i, name, (unsigned long long)x->meta.version, x->meta.key_version, r->vault);
			goto out;
		}
		if (e == KW_E_RETIRED) {
			kwd_reply_error(r, 403, "key_retired",
			    "record %zu ('%s' version %llu) is wrapped under master key version %u of vault '%s', which is retired or destroyed: nothing could open it, so nothing was restored",
			    i, name, (unsigned long long)x->meta.version, x->meta.key_version, r->vault);
			goto out;
		}
		kw_errclear();
	}
	if (restore_marks(r, &marks, &nmarks) != 0 || kwd_intent_or_refuse(r, "restored") != 0)
		goto out;
	e = store_vault_import(r->d->store, r->vault, rv, n, marks, nmarks);
	if (e != 0) {
		kwd_reply_kwerr(r, e, "restore");
		goto out;
	}
	kwd_reply_json(r, 200, json_pack("{s:s,s:I,s:I}", "vault", r->vault, "restored", (json_int_t)n,
	    "disabled_signing_keys", (json_int_t)nmarks));
out:
	for (i = 0; i < n; i++)
		store_record_clear(&rv[i]);
	free(rv);
	free(marks);
}

/* ---- the audit stream ------------------------------------------------------------ */

void
h_audit_stream(struct kwd_req *r)
{
	const char *s = json_string_value(json_object_get(r->query, "since"));
	uint64_t since = 0;
	int has = 0;

	/* A seq is at most 2^63 - 1 (kw_auditchain.h): a larger since names no
	 * event, and the reader's since + 1 must not wrap to the log's start. */
	if (s != NULL && s[0] != '\0' && strspn(s, "0123456789") == strlen(s) &&
	    (strlen(s) > 19 || strtoull(s, NULL, 10) > (uint64_t)INT64_MAX)) {
		kwd_reply_error(r, 400, "invalid_parameter",
		    "query parameter since is a seq: at most 9223372036854775807");
		return;
	}
	if (query_u64(r, "since", &since, &has) != 0)
		return;
	r->stream = 1;
	r->stream_since = has ? since : audit_committed_seq(r->d->audit);
	r->extra = json_pack("{s:I}", "since", (json_int_t)r->stream_since);
	r->status = 200;
}

/* ---- audit verification ------------------------------------------------------------ */

static int
audit_mac_check(void *arg, const uint8_t *data, size_t len, const uint8_t mac[KWAC_MAC_LEN])
{
	struct kwd *d = arg;
	return p11_audit_hmac_verify(d->p11, data, len, mac);
}

/* POST /v1/audit/verify: the daemon checks its own log, chain and seals,
 * while it keeps writing. */
void
h_audit_verify(struct kwd_req *r)
{
	struct kwac_verify_opts o;
	struct kwac_result res;
	int e;

	/* What the writer had made durable before the files are read: the
	 * log must reach at least that far, or its tail was cut off behind
	 * the daemon's back (to an earlier seal, say), which the chain alone
	 * cannot show. */
	uint64_t committed = audit_committed_seq(r->d->audit);

	struct kwac_anchor anchor;

	memset(&o, 0, sizeof(o));
	o.check = audit_mac_check;
	o.arg = r->d;
	o.live = KWAC_LIVE_YES;
	o.partial = json_is_true(json_object_get(r->body, "partial"));
	/* The anchor too, though the daemon's own committed seq (below) is
	 * later: it shows a cut made before this start that --audit-reanchor
	 * did not take. */
	if ((e = audit_anchor_read(r->d->p11, r->d->cfg->audit_dir, &anchor)) == 0)
		o.anchor = &anchor;
	else if (e != KW_E_NOT_FOUND) {
		kwd_reply_error(r, 503, "unavailable", "cannot read the audit anchor from the token: %s",
		    kw_errdetail(e));
		return;
	}
	e = kwac_verify_dir(r->d->cfg->audit_dir, &o, &res);
	if (e != 0 && e != KW_E_AUTH) {
		kwd_reply_error(r, 503, "unavailable", "cannot read the audit directory: %s", kw_strerror(e));
		return;
	}
	if (res.ok && res.last_seq < committed) {
		res.ok = 0;
		res.problem = KWAC_P_CUT;
		res.seq = res.last_seq + 1;
		res.line = 0;
		snprintf(res.file, sizeof(res.file), "%s", r->d->cfg->audit_dir);
		snprintf(res.what, sizeof(res.what), "the log ends at seq %" PRIu64 ", but this daemon had "
		    "made seq %" PRIu64 " durable: events were cut off the end behind its back",
		    res.last_seq, committed);
	}
	kwd_reply_json(r, 200, kwac_result_json(&res));
}

/* POST /v1/audit/seal-check {"data":"<base64>","mac":"<hex>"} -> {"valid":bool}:
 * lets `keywarden audit verify FILES` check seals with the token's audit key
 * without the key ever leaving it.  It answers only yes or no. */
void
h_audit_seal_check(struct kwd_req *r)
{
	const char *mac_hex = json_string_value(json_object_get(r->body, "mac"));
	uint8_t mac[KWAC_MAC_LEN], data[512];
	size_t dlen = 0;
	int e;

	if (mac_hex == NULL || strlen(mac_hex) != 2 * KWAC_MAC_LEN ||
	    b64_take(r->body, "data", data, sizeof(data), &dlen) != 0) {
		kwd_reply_error(r, 400, "invalid_value",
		    "the body needs \"data\" (base64, at most 512 bytes) and \"mac\" (64 hex digits)");
		return;
	}
	for (size_t i = 0; i < KWAC_MAC_LEN; i++) {
		unsigned v;
		if (sscanf(mac_hex + 2 * i, "%2x", &v) != 1) {
			kwd_reply_error(r, 400, "invalid_value", "\"mac\" is not hexadecimal");
			return;
		}
		mac[i] = (uint8_t)v;
	}
	e = p11_audit_hmac_verify(r->d->p11, data, dlen, mac);
	if (e != 0 && e != KW_E_AUTH) {
		kwd_reply_kwerr(r, e, "seal check");
		return;
	}
	kwd_reply_json(r, 200, json_pack("{s:b}", "valid", e == 0));
}

/* ---- policy ------------------------------------------------------------------------- */

void
h_policy_reload(struct kwd_req *r)
{
	json_t *errs = NULL;
	int e;

	if (r->d->cfg->policy_file == NULL) {
		kwd_reply_error(r, 400, "bad_request", "no policy file is configured (key 'policy')");
		return;
	}
	e = kwd_policy_reload(r->d, &errs);
	if (e == KW_E_AUDIT) {
		json_decref(errs);
		kwd_reply_error(r, 503, "unavailable", "the audit log cannot record the new policy, so "
		    "the old policy stays in force");
		return;
	}
	if (e != 0) {
		audit_glue_admin(r->d, "policy.reload", json_pack("{s:s,s:O}", "result", "refused",
		    "errors", errs ? errs : json_array()));
		kwd_reply_error(r, 400, "invalid_policy",
		    "the new policy has %zu error(s); the old policy stays in force",
		    json_array_size(errs));
		/* the errors travel with the reply */
		{
			json_t *body = json_pack("{s:{s:s,s:s,s:O}}", "error", "code", "invalid_policy",
			    "message", r->err_msg, "errors", errs ? errs : json_array());
			kwd_reply_json(r, 400, body);
		}
		json_decref(errs);
		return;
	}
	json_decref(errs);
	pthread_rwlock_rdlock(&r->d->policy_lock);
	kwd_reply_json(r, 200, json_pack("{s:b,s:s,s:I}", "reloaded", 1, "policy_hash",
	    policy_hash(r->d->policy), "rules", (json_int_t)policy_rule_count(r->d->policy)));
	pthread_rwlock_unlock(&r->d->policy_lock);
}

/* The groups a login would give pw's user, in a new array (*out, freed by
 * the caller), or -1 when they cannot be had.  getgrouplist says how many
 * there are when the first guess is too small. */
static int
explain_user_groups(const struct passwd *pw, gid_t **out)
{
	int ng = 64;
	gid_t *g = NULL;

	for (int tries = 0; tries < 3; tries++) {
		gid_t *more;

		if (ng <= 0 || ng > NGROUPS_MAX + 1 ||
		    (more = realloc(g, (size_t)ng * sizeof(gid_t))) == NULL)
			break;
		g = more;
		if (getgrouplist(pw->pw_name, pw->pw_gid, g, &ng) >= 0) {
			*out = g;
			return ng;
		}
	}
	free(g);
	return -1;
}

/* Reply why the name service gave no entry for the user or group name
 * (e from kwnss_*): there is none (400), or it could not answer (503). */
static void
explain_lookup_failed(struct kwd_req *r, int e, const char *what, const char *name)
{
	if (e == -ENOENT)
		kwd_reply_error(r, 400, "invalid_value", "no %s named '%.64s'", what, name);
	else
		kwd_reply_error(r, 503, "unavailable", "cannot look up %s '%.64s': %s", what, name,
		    kw_strerror(e));
}

/* The caller described in a request body: {"uid"|"user", "gid"|"group",
 * "groups": [names or gids], "exe", "unit"}.  For explaining only: no
 * request is ever decided from anything a caller claims.  id->groups is
 * *groups, sorted, which the caller frees (also on failure). */
static int
explain_identity(struct kwd_req *r, struct policy_identity *id, char *exe, char *unit,
    gid_t **groups)
{
	json_t *b = r->body, *v;
	struct passwd pw;
	struct group gr;
	char *buf = NULL;
	size_t i, len = 0;
	int rc = -1, e;

	memset(id, 0, sizeof(*id));
	*groups = NULL;
	if ((v = json_object_get(b, "uid")) != NULL && json_is_integer(v)) {
		id->uid = (uid_t)json_integer_value(v);
		id->known |= POLICY_ID_UID;
	} else if ((v = json_object_get(b, "user")) != NULL && json_is_string(v)) {
		if ((e = kwnss_pw_name(json_string_value(v), &pw, &buf, &len)) != 0) {
			explain_lookup_failed(r, e, "user", json_string_value(v));
			goto out;
		}
		id->uid = pw.pw_uid;
		id->gid = pw.pw_gid;
		id->known |= POLICY_ID_UID | POLICY_ID_GID;
		if (json_object_get(b, "groups") == NULL) {
			/* The user's groups, as a login would give them. */
			int ng = explain_user_groups(&pw, groups);
			if (ng >= 0) {
				id->groups = *groups;
				id->ngroups = (size_t)ng;
				id->known |= POLICY_ID_GROUPS;
			}
		}
	}
	if ((v = json_object_get(b, "gid")) != NULL && json_is_integer(v)) {
		id->gid = (gid_t)json_integer_value(v);
		id->known |= POLICY_ID_GID;
	} else if ((v = json_object_get(b, "group")) != NULL && json_is_string(v)) {
		if ((e = kwnss_gr_name(json_string_value(v), &gr, &buf, &len)) != 0) {
			explain_lookup_failed(r, e, "group", json_string_value(v));
			goto out;
		}
		id->gid = gr.gr_gid;
		id->known |= POLICY_ID_GID;
	}
	if ((v = json_object_get(b, "groups")) != NULL && json_is_array(v)) {
		json_t *g;
		gid_t *gv;

		if (json_array_size(v) > NGROUPS_MAX) {
			kwd_reply_error(r, 400, "invalid_value", "more than %d groups", NGROUPS_MAX);
			goto out;
		}
		if ((gv = calloc(json_array_size(v) + 1, sizeof(gid_t))) == NULL) {
			kwd_reply_error(r, 503, "unavailable", "out of memory");
			goto out;
		}
		*groups = gv;
		id->groups = gv;
		json_array_foreach(v, i, g) {
			if (json_is_integer(g)) {
				gv[id->ngroups++] = (gid_t)json_integer_value(g);
			} else if (json_is_string(g)) {
				if ((e = kwnss_gr_name(json_string_value(g), &gr, &buf, &len)) != 0) {
					explain_lookup_failed(r, e, "group", json_string_value(g));
					goto out;
				}
				gv[id->ngroups++] = gr.gr_gid;
			}
		}
		id->known |= POLICY_ID_GROUPS;
	}
	if ((v = json_object_get(b, "exe")) != NULL && json_is_string(v)) {
		snprintf(exe, PATH_MAX, "%s", json_string_value(v));
		id->exe = exe;
		id->known |= POLICY_ID_EXE;
	}
	if ((v = json_object_get(b, "unit")) != NULL && json_is_string(v)) {
		snprintf(unit, 256, "%s", json_string_value(v));
		id->unit = unit;
		id->known |= POLICY_ID_UNIT;
	}
	/* What the question does not give is the described caller's "none",
	 * not "unknown": a deny rule that names an executable must not be
	 * taken to apply to someone described without one (for a real caller,
	 * unknown facts do not escape a deny; see policy_decide). */
	if (!(id->known & POLICY_ID_EXE)) {
		exe[0] = '\0';
		id->exe = exe;
		id->known |= POLICY_ID_EXE;
	}
	if (!(id->known & POLICY_ID_UNIT)) {
		unit[0] = '\0';
		id->unit = unit;
		id->known |= POLICY_ID_UNIT;
	}
	id->known |= POLICY_ID_GROUPS;
	if (*groups != NULL)
		policy_groups_sort(*groups, id->ngroups);
	rc = 0;
out:
	free(buf);
	return rc;
}

void
h_policy_explain(struct kwd_req *r)
{
	struct policy_identity id;
	struct policy_decision pd;
	enum policy_action a;
	const char *as, *vault, *name;
	char exe[PATH_MAX], unit[256], text[512];
	gid_t *groups = NULL;

	if (r->body == NULL || (as = json_string_value(json_object_get(r->body, "action"))) == NULL ||
	    policy_action_parse(as, &a) != 0) {
		kwd_reply_error(r, 400, "invalid_value", "the body needs \"action\", one action such as \"secret.get\"");
		return;
	}
	vault = json_string_value(json_object_get(r->body, "vault"));
	name = json_string_value(json_object_get(r->body, "name"));
	if (explain_identity(r, &id, exe, unit, &groups) != 0)
		goto out;
	pthread_rwlock_rdlock(&r->d->policy_lock);
	if (r->d->policy == NULL) {
		pthread_rwlock_unlock(&r->d->policy_lock);
		kwd_reply_json(r, 200, json_pack("{s:b,s:s}", "allow",
		    (id.known & POLICY_ID_UID) && (id.uid == 0 || id.uid == geteuid()),
		    "decision", "no policy is configured: only root and the daemon's user are allowed"));
		goto out;
	}
	policy_decide(r->d->policy, &id, a, vault, name, &pd);
	policy_decision_format(&pd, text, sizeof(text));
	kwd_reply_json(r, 200, json_pack("{s:b,s:s,s:s?,s:s?,s:i,s:s}", "allow", pd.allow,
	    "decision", text, "rule", pd.rule, "file", pd.file, "line", (int)pd.line,
	    "policy_hash", policy_hash(r->d->policy)));
	pthread_rwlock_unlock(&r->d->policy_lock);
out:
	free(groups);
}

static int
who_one(void *arg, const struct policy_who *w)
{
	json_t *arr = arg;
	json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:i}", "effect", w->deny ? "deny" : "allow",
	    "principal", w->principal, "rule", w->rule, "file", w->file, "line", (int)w->line));
	return 0;
}

void
h_policy_who_can(struct kwd_req *r)
{
	const char *as = json_string_value(json_object_get(r->query, "action"));
	const char *vault = json_string_value(json_object_get(r->query, "vault"));
	const char *name = json_string_value(json_object_get(r->query, "name"));
	enum policy_action a;
	json_t *arr;

	if (as == NULL || policy_action_parse(as, &a) != 0) {
		kwd_reply_error(r, 400, "invalid_parameter", "?action= must be one action such as secret.get");
		return;
	}
	pthread_rwlock_rdlock(&r->d->policy_lock);
	if (r->d->policy == NULL) {
		pthread_rwlock_unlock(&r->d->policy_lock);
		kwd_reply_json(r, 200, json_pack("{s:[{s:s,s:s}]}", "principals", "effect", "allow",
		    "principal", "root and the daemon's user (no policy is configured)"));
		return;
	}
	arr = json_array();
	policy_who_can(r->d->policy, a, vault, name, who_one, arr);
	pthread_rwlock_unlock(&r->d->policy_lock);
	kwd_reply_json(r, 200, json_pack("{s:o}", "principals", arr));
}
