/*
 * fuzz_request.c - what keywardend makes of a client's request before any
 * token, store or policy work (daemon/kwd.h): the target's path and query,
 * the JSON body and the route (kwd_request_parse), then what the handler
 * of a secret's PUT or PATCH and of a key operation reads of the body
 * (kwd_secret_put_parse, kwd_secret_patch_parse, kwd_keyop_parse).  No
 * daemon runs: the request gets a struct kwd with only a configuration,
 * whose vaults are prod, dev and a.b-c_9.
 *
 * The input is "METHOD TARGET", a newline, and the body.  The harness
 * puts the two in a request head with a Host and the body's
 * Content-Length, and goes on only when kwh_parse_head takes it, as the
 * daemon does (the http harness fuzzes that parser).
 *
 * A request refused before routing is a 400 invalid_json for a body that
 * is not a JSON object (jansson, run again here, agrees), whose message
 * says where but holds nothing of the body.  A routed request either has
 * its reply (400, 404 or 405: the JSON error, its code and message the
 * audit's, 405 with its Allow) and no handler, or a handler and action,
 * and then a method the resource allows, a vault name and a secret or
 * signing-key name that the rules of docs/api.md allow (checked here
 * with a reader of the harness's own), and a path that is exactly the
 * one the route's fields make again.  The handlers' parsers then give
 * their outputs or a 4xx with a message: a value that is the body's,
 * decoded, at most limits.max_value; attributes for exactly the fields
 * given; a context's AAD that is the operation's prefix and the
 * canonical context; a key blob of this vault; and the body's copy of a
 * value or a plaintext wiped whatever the outcome.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "pkcs11/p11.h"
#include "daemon/http_parse.h"
#include "daemon/kwd.h"
#include "daemon/seal.h"
#include "daemon/store.h"
#include "tests/fuzz/fuzz.h"

KWF_CORPUS("request");

#define MAX_VALUE 64            /* limits.max_value, small enough to reach */

static struct config_vault vaults[] = {
	{ .name = "prod" }, { .name = "dev" }, { .name = "a.b-c_9" },
};
static struct config cfg = {
	.vaults = vaults, .nvaults = sizeof(vaults) / sizeof(vaults[0]),
	.max_value = MAX_VALUE, .max_body = 1 << 20,
};
static struct kwd daemon_state = { .cfg = &cfg };

/* ---- names, as docs/api.md says them -------------------------------------------- */

static int
name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '_' || c == '-';
}

/* A vault name, or a signing key's: 1 to max of [A-Za-z0-9._-]. */
static int
plain_name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return 0;
	return 1;
}

/* A secret name: segments of [A-Za-z0-9._-] joined by '/', at most 256
 * bytes, no segment empty, "." or ".."; the last is not "versions", and
 * the last two are not "versions/<digits>". */
static int
secret_name_ok(const char *s)
{
	char buf[300], *seg[300], *p, *save = NULL;
	size_t n = strlen(s), nseg = 0;

	if (n == 0 || n > 256 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//") != NULL)
		return 0;
	memcpy(buf, s, n + 1);
	for (p = strtok_r(buf, "/", &save); p != NULL; p = strtok_r(NULL, "/", &save)) {
		if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0)
			return 0;
		for (const char *q = p; *q != '\0'; q++)
			if (!name_char(*q))
				return 0;
		seg[nseg++] = p;
	}
	if (strcmp(seg[nseg - 1], "versions") == 0)
		return 0;
	if (nseg >= 2 && strcmp(seg[nseg - 2], "versions") == 0 &&
	    strspn(seg[nseg - 1], "0123456789") == strlen(seg[nseg - 1]))
		return 0;
	return 1;
}

/* ---- the route's fields made into a path again --------------------------------- */

enum shape {
	FIXED,          /* pre */
	VAULT,          /* /v1/vaults/{vault}pre */
	NAME,           /* /v1/vaults/{vault}pre{name}post */
	NAME_V,         /* NAME, or /v1/vaults/{vault}pre{name}/versions/{n} */
	MKEY,           /* /v1/vaults/{vault}pre{n}post */
	SKEY,           /* a signing key: /v1/vaults/{vault}pre{name}post */
	SKEY_V,         /* /v1/vaults/{vault}/signing-keys/{name}/versions/{n}post */
};

struct route {
	kwd_handler_fn h;
	enum kwd_action a;
	const char *methods;    /* the methods it is routed for, e.g. " GET HEAD " */
	enum shape shape;
	const char *pre, *post;
};

static const struct route routes[] = {
	{ h_health, KWD_A_SERVICE, " GET HEAD ", FIXED, "/v1/health", NULL },
	{ h_whoami, KWD_A_SERVICE, " GET HEAD ", FIXED, "/v1/whoami", NULL },
	{ h_metrics, KWD_A_SERVICE, " GET HEAD ", FIXED, "/v1/metrics", NULL },
	{ h_audit_stream, KWD_A_AUDIT_STREAM, " GET ", FIXED, "/v1/audit/stream", NULL },
	{ h_audit_verify, KWD_A_AUDIT_READ, " POST ", FIXED, "/v1/audit/verify", NULL },
	{ h_audit_seal_check, KWD_A_AUDIT_READ, " POST ", FIXED, "/v1/audit/seal-check", NULL },
	{ h_policy_reload, KWD_A_POLICY_RELOAD, " POST ", FIXED, "/v1/policy/reload", NULL },
	{ h_policy_explain, KWD_A_POLICY_EXPLAIN, " POST ", FIXED, "/v1/policy/explain", NULL },
	{ h_policy_who_can, KWD_A_POLICY_EXPLAIN, " GET ", FIXED, "/v1/policy/who-can", NULL },
	{ h_vault_list, KWD_A_VAULT_STATUS, " GET ", FIXED, "/v1/vaults", NULL },
	{ h_secret_list, KWD_A_SECRET_LIST, " GET ", VAULT, "/secrets", NULL },
	{ h_secret_versions, KWD_A_SECRET_LIST, " GET ", NAME, "/secrets/", "/versions" },
	{ h_secret_get, KWD_A_SECRET_GET, " GET ", NAME_V, "/secrets/", "" },
	{ h_secret_put, KWD_A_SECRET_SET, " PUT ", NAME, "/secrets/", "" },
	{ h_secret_patch, KWD_A_SECRET_UPDATE, " PATCH ", NAME_V, "/secrets/", "" },
	{ h_secret_delete, KWD_A_SECRET_DELETE, " DELETE ", NAME, "/secrets/", "" },
	{ h_deleted_list, KWD_A_SECRET_LIST, " GET ", VAULT, "/deleted", NULL },
	{ h_deleted_recover, KWD_A_SECRET_RECOVER, " POST ", NAME, "/deleted/", "/recover" },
	{ h_deleted_purge, KWD_A_SECRET_PURGE, " DELETE ", NAME, "/deleted/", "" },
	{ h_vault_backup, KWD_A_SECRET_BACKUP, " GET ", VAULT, "/backup", NULL },
	{ h_vault_restore, KWD_A_SECRET_RESTORE, " POST ", VAULT, "/restore", NULL },
	{ h_rotation_start, KWD_A_VAULT_ROTATE, " POST ", VAULT, "/rotation", NULL },
	{ h_rotation_status, KWD_A_VAULT_STATUS, " GET ", VAULT, "/rotation", NULL },
	{ h_mkeys_list, KWD_A_VAULT_STATUS, " GET ", VAULT, "/master-keys", NULL },
	{ h_mkey_retire, KWD_A_VAULT_RETIRE, " POST ", MKEY, "/master-keys/", "/retire" },
	{ h_mkey_destroy, KWD_A_VAULT_RETIRE, " POST ", MKEY, "/master-keys/", "/destroy" },
	{ h_key_datakey, KWD_A_KEY_DATAKEY, " POST ", VAULT, "/keys/datakey", NULL },
	{ h_key_unwrap, KWD_A_KEY_UNWRAP, " POST ", VAULT, "/keys/unwrap", NULL },
	{ h_key_rewrap, KWD_A_KEY_WRAP, " POST ", VAULT, "/keys/rewrap", NULL },
	{ h_key_encrypt, KWD_A_KEY_ENCRYPT, " POST ", VAULT, "/keys/encrypt", NULL },
	{ h_key_decrypt, KWD_A_KEY_DECRYPT, " POST ", VAULT, "/keys/decrypt", NULL },
	{ h_skey_create, KWD_A_KEY_CREATE, " POST ", VAULT, "/signing-keys", NULL },
	{ h_skey_list, KWD_A_KEY_VERIFY, " GET ", VAULT, "/signing-keys", NULL },
	{ h_skey_get, KWD_A_KEY_VERIFY, " GET ", SKEY, "/signing-keys/", "" },
	{ h_skey_rotate, KWD_A_KEY_CREATE, " POST ", SKEY, "/signing-keys/", "/rotate" },
	{ h_skey_sign, KWD_A_KEY_SIGN, " POST ", SKEY, "/signing-keys/", "/sign" },
	{ h_skey_verify, KWD_A_KEY_VERIFY, " POST ", SKEY, "/signing-keys/", "/verify" },
	{ h_skey_destroy, KWD_A_VAULT_RETIRE, " POST ", SKEY_V, "/signing-keys/", "/destroy" },
	{ h_skey_disable, KWD_A_VAULT_RETIRE, " POST ", SKEY_V, "/signing-keys/", "/disable" },
	{ h_skey_enable, KWD_A_VAULT_RETIRE, " POST ", SKEY_V, "/signing-keys/", "/enable" },
};

static const char *
method_name(int m)
{
	switch (m) {
	case KWH_GET: return "GET";
	case KWH_HEAD: return "HEAD";
	case KWH_PUT: return "PUT";
	case KWH_POST: return "POST";
	case KWH_DELETE: return "DELETE";
	case KWH_PATCH: return "PATCH";
	default: return "?";
	}
}

/* path is exactly a + {digits} + b, where digits (1 to 19 of them) read
 * as version. */
static int
path_with_number(const char *path, const char *a, uint64_t version, const char *b)
{
	size_t al = strlen(a), bl = strlen(b), pl = strlen(path), dl;
	char num[32];

	if (pl < al + bl + 1 || strncmp(path, a, al) != 0 || strcmp(path + pl - bl, b) != 0)
		return 0;
	dl = pl - al - bl;
	if (dl > 19 || strspn(path + al, "0123456789") < dl)
		return 0;
	memcpy(num, path + al, dl);
	num[dl] = '\0';
	return strtoull(num, NULL, 10) == version;
}

/* A request the router took: its fields against its route. */
static void
check_routed(const struct kwd_req *r, const char *path, const char *body_name)
{
	const struct route *rt = NULL;
	char want[1024], m[16];
	int n;

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (routes[i].h == r->handler)
			rt = &routes[i];
	kwf_check(rt != NULL);
	kwf_check(r->action == rt->a);
	snprintf(m, sizeof(m), " %s ", method_name(r->method));
	kwf_check(strstr(rt->methods, m) != NULL);
	kwf_check(r->status == 0 && r->reply == NULL && r->allow == NULL);
	if (rt->shape == FIXED) {
		kwf_check(strcmp(path, rt->pre) == 0);
		kwf_check(r->vault[0] == '\0' && r->name[0] == '\0' && !r->has_version);
		return;
	}
	kwf_check(plain_name_ok(r->vault, CONFIG_VAULT_MAX));
	kwf_check(r->vault_missing == (config_vault_find(&cfg, r->vault) == NULL));
	switch (rt->shape) {
	case VAULT:
		n = snprintf(want, sizeof(want), "/v1/vaults/%s%s", r->vault, rt->pre);
		kwf_check(n > 0 && (size_t)n < sizeof(want) && strcmp(path, want) == 0);
		kwf_check(!r->has_version);
		if (r->handler == h_skey_create) {
			/* The name comes from the body. */
			kwf_check(body_name != NULL && strcmp(r->name, body_name) == 0);
			kwf_check(plain_name_ok(r->name, P11_SKEY_NAME_MAX));
		} else {
			kwf_check(r->name[0] == '\0');
		}
		return;
	case NAME:
	case NAME_V:
		kwf_check(secret_name_ok(r->name));
		if (r->has_version) {
			kwf_check(rt->shape == NAME_V && r->version > 0);
			n = snprintf(want, sizeof(want), "/v1/vaults/%s%s%s/versions/", r->vault, rt->pre,
			    r->name);
			kwf_check(n > 0 && (size_t)n < sizeof(want));
			kwf_check(path_with_number(path, want, r->version, ""));
		} else {
			n = snprintf(want, sizeof(want), "/v1/vaults/%s%s%s%s", r->vault, rt->pre, r->name,
			    rt->post);
			kwf_check(n > 0 && (size_t)n < sizeof(want) && strcmp(path, want) == 0);
		}
		return;
	case MKEY:
		n = snprintf(want, sizeof(want), "/v1/vaults/%s%s", r->vault, rt->pre);
		kwf_check(n > 0 && (size_t)n < sizeof(want));
		kwf_check(r->has_version && r->version > 0);
		kwf_check(path_with_number(path, want, r->version, rt->post));
		return;
	case SKEY:
		kwf_check(plain_name_ok(r->name, P11_SKEY_NAME_MAX) && !r->has_version);
		n = snprintf(want, sizeof(want), "/v1/vaults/%s%s%s%s", r->vault, rt->pre, r->name, rt->post);
		kwf_check(n > 0 && (size_t)n < sizeof(want) && strcmp(path, want) == 0);
		return;
	case SKEY_V:
		kwf_check(plain_name_ok(r->name, P11_SKEY_NAME_MAX));
		kwf_check(r->has_version && r->version > 0 && r->version <= 1000000);
		n = snprintf(want, sizeof(want), "/v1/vaults/%s%s%s/versions/", r->vault, rt->pre, r->name);
		kwf_check(n > 0 && (size_t)n < sizeof(want));
		kwf_check(path_with_number(path, want, r->version, rt->post));
		return;
	case FIXED:
		break;
	}
}

/* ---- replies ------------------------------------------------------------------------- */

/* No C0 control, DEL or C1 control (U+0080 to U+009F): a message goes
 * to a terminal and into the audit log.  (Valid UTF-8: jansson read it.) */
static void
check_text(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		kwf_check(*p >= 0x20 && *p != 0x7f && !(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f));
}

/* r holds an error reply: status, the JSON {"error":{"code","message"}}
 * with the code and message the audit event gets, and one of codes. */
static void
check_error(const struct kwd_req *r, const char *codes)
{
	char *txt;
	size_t len;
	json_t *j, *e;
	const char *code, *msg;
	char c[40];

	kwf_check(r->status >= 400 && r->status <= 599);
	kwf_check(r->reply != NULL && r->content_type != NULL &&
	    strcmp(r->content_type, "application/json") == 0);
	kwf_check(r->reply_secret.data == NULL);
	len = evbuffer_get_length(r->reply);
	txt = kwf_dup_exact(evbuffer_pullup(r->reply, -1), len);
	j = json_loadb(txt, len, 0, NULL);
	free(txt);
	kwf_check(j != NULL);
	e = json_object_get(j, "error");
	code = json_string_value(json_object_get(e, "code"));
	msg = json_string_value(json_object_get(e, "message"));
	kwf_check(json_object_size(j) == 1 && json_object_size(e) == 2 && code != NULL && msg != NULL);
	kwf_check(strcmp(code, r->err_code) == 0 && strcmp(msg, r->err_msg) == 0);
	kwf_check(msg[0] != '\0');
	check_text(msg);
	snprintf(c, sizeof(c), " %s ", code);
	kwf_check(strstr(codes, c) != NULL);
	kwf_check((r->status == 405) == (r->allow != NULL));
	if (r->allow != NULL) {
		snprintf(c, sizeof(c), "|%s|", r->allow);
		kwf_check(strstr("|GET|POST|DELETE|GET, POST|GET, PATCH|GET, PUT, PATCH, DELETE|", c) != NULL);
	}
	json_decref(j);
}

/* The message of a body that is not a JSON object says where, or what
 * JSON it is, and holds nothing of the body: not jansson's "near '...'",
 * nor a byte's value (0x..), nor an escape (\u...), nor anything quoted. */
static void
check_invalid_json(const struct kwd_req *r)
{
	int line, col, n = 0;
	char type[16];

	kwf_check(r->status == 400 && strcmp(r->err_code, "invalid_json") == 0);
	if (sscanf(r->err_msg, "the body is not a JSON object (line %d, column %d: %n", &line, &col,
	    &n) == 2 && n > 0)
		kwf_check(line >= 1 && col >= 0 && r->err_msg[strlen(r->err_msg) - 1] == ')');
	else
		kwf_check(sscanf(r->err_msg, "the body is a JSON %15[a-z], not an object%n", type, &n) == 1 &&
		    r->err_msg[n] == '\0');
	kwf_check(strstr(r->err_msg, " near '") == NULL);
	kwf_check(strstr(r->err_msg, "0x") == NULL);
	kwf_check(strstr(r->err_msg, "\\u") == NULL);
	kwf_check(strchr(r->err_msg, '\'') == NULL && strchr(r->err_msg, '"') == NULL);
}

/* ---- the handlers' parsers ----------------------------------------------------------- */

/* A JSON string field of the body, as the harness's own jansson reads it. */
static json_t *
field(json_t *body, const char *key)
{
	return body ? json_object_get(body, key) : NULL;
}

static int
b64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	uint8_t *b;
	int len;

	if (n % 4 != 0)
		return -1;
	b = malloc(n / 4 * 3 + 1);
	if (b == NULL)
		kwf_fail("out of memory");
	if (n > 0 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") < n) {
		free(b);
		return -1;
	}
	if ((len = EVP_DecodeBlock(b, (const unsigned char *)s, (int)n)) < 0) {
		free(b);
		return -1;
	}
	/* EVP_DecodeBlock keeps the padding's zero bytes. */
	if (n >= 1 && s[n - 1] == '=')
		len--;
	if (n >= 2 && s[n - 2] == '=')
		len--;
	*out = b;
	*outlen = (size_t)len;
	return 0;
}

/* Every byte of the string field key of r's body is zero (wiped), if it
 * is a string. */
static void
check_wiped(const struct kwd_req *r, const char *key)
{
	json_t *v = field(r->body, key);

	if (json_is_string(v)) {
		const char *s = json_string_value(v);

		for (size_t i = 0; i < json_string_length(v); i++)
			kwf_check(s[i] == '\0');
	}
}

static const char *const attr_keys[] = { "enabled", "not_before", "expires", "content_type",
	"tags" };
static const unsigned attr_bits[] = { STORE_ATTR_ENABLED, STORE_ATTR_NOT_BEFORE,
	STORE_ATTR_EXPIRES, STORE_ATTR_CONTENT_TYPE, STORE_ATTR_TAGS };

/* Attributes parsed from body (the harness's copy): a bit for each one
 * given, and the values. */
static void
check_attrs(json_t *body, const struct store_meta *m, unsigned mask)
{
	for (size_t i = 0; i < sizeof(attr_keys) / sizeof(attr_keys[0]); i++)
		kwf_check(((mask & attr_bits[i]) != 0) == (field(body, attr_keys[i]) != NULL));
	if (mask & STORE_ATTR_ENABLED)
		kwf_check(m->enabled == json_is_true(field(body, "enabled")));
	if (mask & STORE_ATTR_CONTENT_TYPE)
		kwf_check(strcmp(m->content_type, json_string_value(field(body, "content_type"))) == 0);
	if (mask & STORE_ATTR_NOT_BEFORE)
		kwf_check((m->not_before == 0) == json_is_null(field(body, "not_before")));
	if (mask & STORE_ATTR_TAGS) {
		json_t *t = json_loads(m->tags, 0, NULL);

		kwf_check(t != NULL && json_equal(t, field(body, "tags")));
		json_decref(t);
	}
	/* Nothing but the known fields. */
	{
		const char *k;
		json_t *v;

		json_object_foreach(body, k, v) {
			int known = strcmp(k, "value") == 0 || strcmp(k, "encoding") == 0;

			for (size_t i = 0; i < sizeof(attr_keys) / sizeof(attr_keys[0]); i++)
				known |= strcmp(k, attr_keys[i]) == 0;
			kwf_check(known);
		}
	}
}

static void
check_put(struct kwd_req *r, json_t *body)
{
	kw_secret val = { NULL, 0 };
	struct store_meta m;
	uint64_t cas = 0;
	int has_cas = 0, e;
	unsigned mask = 0;

	memset(&m, 0, sizeof(m));
	e = kwd_secret_put_parse(r, &val, &cas, &has_cas, &m, &mask);
	check_wiped(r, "value");
	if (e != 0) {
		kwf_check(val.data == NULL);
		check_error(r, " invalid_json invalid_value invalid_parameter too_large unavailable ");
		return;
	}
	kwf_check(r->status == 0);
	{
		/* The value: the body's string, or its base64 decoded. */
		json_t *v = field(body, "value");
		const char *enc = json_string_value(field(body, "encoding"));
		uint8_t *want = NULL;
		size_t wl = 0;

		kwf_check(json_is_string(v));
		if (enc != NULL && strcmp(enc, "base64") == 0) {
			kwf_check(b64_decode(json_string_value(v), json_string_length(v), &want, &wl) == 0);
			kwf_check(val.len == wl && memcmp(val.data, want, wl) == 0);
			free(want);
		} else {
			kwf_check(field(body, "encoding") == NULL || (enc != NULL && strcmp(enc, "utf-8") == 0));
			kwf_check(val.len == json_string_length(v) &&
			    memcmp(val.data, json_string_value(v), val.len) == 0);
		}
		kwf_check(val.len <= MAX_VALUE);
	}
	{
		const char *q = json_string_value(json_object_get(r->query, "cas"));

		kwf_check(has_cas == (q != NULL));
		if (q != NULL)
			kwf_check(strspn(q, "0123456789") == strlen(q) && strtoull(q, NULL, 10) == cas);
	}
	if (!(mask & STORE_ATTR_ENABLED))
		kwf_check(m.enabled == 1);
	if (!(mask & STORE_ATTR_TAGS))
		kwf_check(strcmp(m.tags, "{}") == 0);
	check_attrs(body, &m, mask);
	kw_secret_clear(&val);
}

static void
check_patch(struct kwd_req *r, json_t *body)
{
	struct store_meta m;
	unsigned mask = 0;
	int e = kwd_secret_patch_parse(r, &m, &mask);

	check_wiped(r, "value");
	if (e != 0) {
		check_error(r, " invalid_value ");
		return;
	}
	kwf_check(r->status == 0 && mask != 0);
	kwf_check(field(body, "value") == NULL && field(body, "encoding") == NULL);
	check_attrs(body, &m, mask);
}

/* A restore: its records, or a 400 (503 out of memory).  Each record
 * has a name the API allows, versions in range, a nonce of its size, a
 * body that holds at least a tag, and its times as given (or 0). */
static void
check_restore(struct kwd_req *r, json_t *body)
{
	struct store_record *rv = NULL;
	size_t n = 0;
	int e = kwd_restore_parse(r, &rv, &n);

	if (e != 0) {
		kwf_check(rv == NULL && n == 0);
		check_error(r, " invalid_value unavailable ");
		kwf_check(r->status == 400 || r->status == 503);
		return;
	}
	kwf_check(r->status == 0);
	kwf_check(n == json_array_size(field(body, "records")));
	for (size_t i = 0; i < n; i++) {
		const struct store_record *x = &rv[i];
		json_t *o = json_array_get(field(body, "records"), i);

		kwf_check(secret_name_ok(x->meta.name));
		kwf_check(strcmp(x->meta.name, json_string_value(json_object_get(o, "name")) ?: "") == 0);
		kwf_check(x->meta.version >= 1 && x->meta.key_version >= 1);
		kwf_check((json_int_t)x->meta.version == json_integer_value(json_object_get(o, "version")));
		kwf_check(x->body != NULL && x->body_len >= SEAL_TAG_LEN);
		kwf_check(x->wrapped_len <= sizeof(x->wrapped));
		kwf_check(x->meta.deleted != 0 || x->meta.scheduled_purge == 0);
	}
	for (size_t i = 0; i < n; i++)
		store_record_clear(&rv[i]);
	free(rv);
}

/* The AAD of a key operation: prefix, then the context as canonical
 * JSON (keys sorted, compact, ASCII), or nothing for none or {}. */
static void
check_aad(const struct kwd_keyop *k, json_t *body, const char *prefix)
{
	json_t *ctx = field(body, "context");
	size_t pl = strlen(prefix);

	kwf_check(k->aad != NULL && k->aad_len >= pl && memcmp(k->aad, prefix, pl) == 0);
	kwf_check(k->aad[k->aad_len] == '\0');
	if (ctx == NULL || json_is_null(ctx) || json_object_size(ctx) == 0) {
		kwf_check(k->aad_len == pl);
	} else {
		char *c = json_dumps(ctx, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);

		kwf_check(c != NULL && k->aad_len == pl + strlen(c) && memcmp(k->aad + pl, c, strlen(c)) == 0);
		free(c);
	}
}

static void
check_keyop(struct kwd_req *r, json_t *body)
{
	struct kwd_keyop k;
	int e = kwd_keyop_parse(r, &k);
	size_t vl = strlen(r->vault);

	if (r->action == KWD_A_KEY_ENCRYPT)
		check_wiped(r, "plaintext");
	if (e != 0) {
		kwf_check(k.blob == NULL && k.pt == NULL && k.aad == NULL);
		check_error(r, " invalid_parameter invalid_ciphertext too_large unavailable ");
		kwf_check(r->status == 400 || r->status == 413 || r->status == 503);
		return;
	}
	kwf_check(r->status == 0);
	switch (r->action) {
	case KWD_A_KEY_DATAKEY:
		kwf_check(k.bytes >= 16 && k.bytes <= P11_DEK_MAX);
		kwf_check(k.want_plaintext == !json_is_false(field(body, "plaintext")));
		check_aad(&k, body, "keywarden/v1:datakey\n");
		break;
	case KWD_A_KEY_UNWRAP:
	case KWD_A_KEY_WRAP:
		/* "KWK1" | 1 | vault | the token's blob */
		kwf_check(k.blob_len >= 6 + vl && memcmp(k.blob, "KWK1\x01", 5) == 0);
		kwf_check(k.blob[5] == vl && memcmp(k.blob + 6, r->vault, vl) == 0);
		kwf_check(k.tblob == k.blob + 6 + vl && k.tblob_len == k.blob_len - 6 - vl);
		check_aad(&k, body, "keywarden/v1:datakey\n");
		break;
	case KWD_A_KEY_ENCRYPT:
		kwf_check(k.pt != NULL && k.pt_len <= 4096);
		check_aad(&k, body, "keywarden/v1:encrypt\n");
		break;
	case KWD_A_KEY_DECRYPT:
		/* "KWE1" | 1 | 1 | vault | u16 length | the token's blob | nonce | ... | tag */
		kwf_check(k.blob_len >= 7 + vl && memcmp(k.blob, "KWE1\x01\x01", 6) == 0);
		kwf_check(k.blob[6] == vl && memcmp(k.blob + 7, r->vault, vl) == 0);
		kwf_check(k.tblob == k.blob + 9 + vl);
		kwf_check(k.tblob_len == ((size_t)k.blob[7 + vl] << 8 | k.blob[8 + vl]));
		kwf_check(k.tblob_len >= 1 && k.tblob_len <= P11_WRAPPED_MAX);
		kwf_check(k.head_len == 9 + vl + k.tblob_len);
		kwf_check(k.blob_len >= k.head_len + 12 + 16);
		check_aad(&k, body, "keywarden/v1:encrypt\n");
		break;
	default:
		kwf_fail("a key operation's parse took another action");
	}
	kwd_keyop_clear(&k);
}

/* ---- one request --------------------------------------------------------------------- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t llen = nl ? (size_t)(nl - data) : size, blen = nl ? size - llen - 1 : 0;
	char *head, *body, *path = NULL;
	struct kwh_head h;
	const char *why;
	struct kwd_req *r;
	json_t *mine = NULL;
	int hl, rc;

	/* The request as the daemon would have read it. */
	if (llen > 8192)
		return 0;
	head = malloc(llen + 128);
	if (head == NULL)
		kwf_fail("out of memory");
	memcpy(head, data, llen);
	hl = (int)llen + snprintf(head + llen, 128, " HTTP/1.1\r\nHost: k\r\nContent-Length: %zu\r\n\r\n",
	    blen);
	memset(&h, 0, sizeof(h));
	if (kwh_parse_head(head, (size_t)hl, 16384, &h, &why) != hl) {
		free(head);
		return 0;
	}
	body = kwf_dup_exact(nl ? nl + 1 : data, blen);
	if (blen > 0)
		mine = json_loadb(body, blen, JSON_REJECT_DUPLICATES, NULL);

	if ((r = calloc(1, sizeof(*r))) == NULL)
		kwf_fail("out of memory");
	r->d = &daemon_state;
	r->method = h.method;
	kw_errclear();
	rc = kwd_request_parse(r, h.target, h.target_len, body, blen);

	/* The query: an object of strings, whatever the target. */
	kwf_check(json_is_object(r->query));
	{
		const char *k;
		json_t *v;

		json_object_foreach(r->query, k, v)
			kwf_check(json_is_string(v));
	}

	if (rc != 0) {
		/* Refused before routing: a body that is not a JSON object. */
		kwf_check(blen > 0 && (mine == NULL || !json_is_object(mine)));
		kwf_check(r->handler == NULL && r->action == KWD_A_NONE);
		check_error(r, " invalid_json ");
		check_invalid_json(r);
		goto out;
	}
	kwf_check((blen == 0) == (r->body == NULL));
	kwf_check(blen == 0 || (json_is_object(r->body) && json_equal(r->body, mine)));
	{
		size_t pl = 0;

		while (pl < h.target_len && h.target[pl] != '?' && h.target[pl] != '#')
			pl++;
		path = strndup(h.target, pl);
		if (path == NULL)
			kwf_fail("out of memory");
	}
	if (r->status != 0) {
		/* The router's own reply. */
		kwf_check(r->handler == NULL && r->action == KWD_A_NONE);
		check_error(r, " invalid_name not_found method_not_allowed invalid_parameter ");
		kwf_check(r->status == 400 || r->status == 404 || r->status == 405);
		goto out;
	}
	kwf_check(r->handler != NULL && r->action != KWD_A_NONE);
	check_routed(r, path, json_string_value(field(mine, "name")));

	/* What the handler reads of the body before the token and the store. */
	if (r->handler == h_secret_put)
		check_put(r, mine);
	else if (r->handler == h_secret_patch)
		check_patch(r, mine);
	else if (r->handler == h_vault_restore)
		check_restore(r, mine);
	else if (r->action == KWD_A_KEY_DATAKEY || r->action == KWD_A_KEY_UNWRAP ||
	    r->action == KWD_A_KEY_WRAP || r->action == KWD_A_KEY_ENCRYPT ||
	    r->action == KWD_A_KEY_DECRYPT)
		check_keyop(r, mine);
out:
	if (r->reply != NULL)
		evbuffer_free(r->reply);
	kw_secret_clear(&r->reply_secret);
	json_decref(r->query);
	json_decref(r->body);
	json_decref(r->extra);
	free(r);
	json_decref(mine);
	free(path);
	free(body);
	free(head);
	return 0;
}
