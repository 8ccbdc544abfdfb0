/*
 * Master-key rotation, key operations and signing keys end to end: the real
 * keywardend on a real SoftHSM token and SQLite file, clients reading and
 * writing while the daemon is killed during a rewrap, pkcs11-tool looking
 * into the token, and OpenSSL's command-line tool checking signatures.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "kw_error.h"
#include "pkcs11/p11.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

#define NSECRETS 10000

static struct kwt_token tok;
static struct kwt_daemon dmn;

static json_t *
req(const char *method, const char *path, const char *body, long *status)
{
	return kwt_http_json(dmn.sock, method, path, body, status);
}

static json_t *
reqf(const char *method, long *status, json_t *body, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static json_t *
reqf(const char *method, long *status, json_t *body, const char *fmt, ...)
{
	char path[512], *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	va_list ap;
	json_t *j;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	j = req(method, path, b, status);
	free(b);
	json_decref(body);
	return j;
}

static const char *
jstr(json_t *j, const char *k)
{
	return json_string_value(json_object_get(j, k));
}

static json_int_t
jint(json_t *j, const char *k)
{
	return json_integer_value(json_object_get(j, k));
}

static int
suite_init(void)
{
	if (kwt_token_new(&tok, "kw-keys") != 0)
		return -1;
	return kwt_daemon_start(&dmn, &tok, NULL);
}

static int
suite_clean(void)
{
	kwt_daemon_free(&dmn);
	kwt_token_free(&tok);
	return 0;
}

/* Wait until the vault's rotation is no longer running; its status. */
static json_t *
rotation_wait(const char *vault, int seconds)
{
	for (int i = 0; i < seconds * 20; i++) {
		long st;
		json_t *j = reqf("GET", &st, NULL, "/v1/vaults/%s/rotation", vault);
		if (st == 200 && strcmp(jstr(j, "state"), "running") != 0)
			return j;
		json_decref(j);
		usleep(50000);
	}
	return NULL;
}

/* ---- data keys and encryption --------------------------------------------------- */

static void
test_datakey_unwrap_rewrap(void)
{
	long st;
	json_t *j, *k;
	char *pt1;

	j = reqf("POST", &st, json_pack("{s:i,s:{s:s}}", "bytes", 32, "context", "app", "billing"),
	    "/v1/vaults/dev/keys/datakey");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	CU_ASSERT_PTR_NOT_NULL_FATAL(jstr(j, "plaintext"));
	CU_ASSERT_EQUAL(strlen(jstr(j, "plaintext")), 44);    /* 32 bytes in base64 */
	pt1 = strdup(jstr(j, "plaintext"));
	k = json_incref(json_object_get(j, "wrapped"));
	json_decref(j);
	/* the blob names itself: format, vault, then the token's blob with its
	 * format, mechanism and master-key version */
	{
		unsigned char bin[512];
		int n = EVP_DecodeBlock(bin, (const unsigned char *)json_string_value(k),
		    (int)json_string_length(k));
		CU_ASSERT_FATAL(n > 12);
		CU_ASSERT_EQUAL(memcmp(bin, "KWK1", 4), 0);
		CU_ASSERT_EQUAL(bin[4], 1);
		CU_ASSERT_EQUAL(bin[5], 3);
		CU_ASSERT_EQUAL(memcmp(bin + 6, "dev", 3), 0);
		CU_ASSERT_EQUAL(bin[9], 1);              /* token blob format 1 */
		CU_ASSERT(bin[10] >= 1 && bin[10] <= 3); /* its mechanism */
	}

	/* the same context opens it */
	j = reqf("POST", &st, json_pack("{s:O,s:{s:s}}", "wrapped", k, "context", "app", "billing"),
	    "/v1/vaults/dev/keys/unwrap");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "plaintext") ?: "", pt1);
	json_decref(j);
	/* another context, none, or another vault do not */
	j = reqf("POST", &st, json_pack("{s:O,s:{s:s}}", "wrapped", k, "context", "app", "billinG"),
	    "/v1/vaults/dev/keys/unwrap");
	CU_ASSERT_EQUAL(st, 400);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "invalid_ciphertext");
	CU_ASSERT_PTR_NULL(jstr(j, "plaintext"));
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:O}", "wrapped", k), "/v1/vaults/dev/keys/unwrap");
	CU_ASSERT_EQUAL(st, 400);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:O,s:{s:s}}", "wrapped", k, "context", "app", "billing"),
	    "/v1/vaults/prod/keys/unwrap");
	CU_ASSERT_EQUAL(st, 400);
	json_decref(j);

	/* without plaintext */
	j = reqf("POST", &st, json_pack("{s:b}", "plaintext", 0), "/v1/vaults/dev/keys/datakey");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_PTR_NULL(json_object_get(j, "plaintext"));
	CU_ASSERT_PTR_NOT_NULL(jstr(j, "wrapped"));
	json_decref(j);

	/* bad input */
	j = reqf("POST", &st, json_pack("{s:i}", "bytes", 8), "/v1/vaults/dev/keys/datakey");
	CU_ASSERT_EQUAL(st, 400);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:{s:i}}", "context", "n", 1), "/v1/vaults/dev/keys/datakey");
	CU_ASSERT_EQUAL(st, 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(jstr(json_object_get(j, "error"), "message") ?: "", "\"n\""));
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "wrapped", "not base64!"), "/v1/vaults/dev/keys/unwrap");
	CU_ASSERT_EQUAL(st, 400);
	json_decref(j);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/keys/datakey");
	CU_ASSERT_EQUAL(st, 405);
	json_decref(j);

	json_decref(k);
	free(pt1);
}

/* Flip one byte of a base64 blob at offset off (from the end if < 0). */
static char *
flip(const char *b64, long off)
{
	unsigned char bin[8192];
	char *out = malloc(12000);
	int n = EVP_DecodeBlock(bin, (const unsigned char *)b64, (int)strlen(b64));
	size_t pad = strlen(b64) > 1 ? (b64[strlen(b64) - 1] == '=') + (b64[strlen(b64) - 2] == '=') : 0;

	n -= (int)pad;
	bin[off >= 0 ? off : n + off] ^= 0x01;
	EVP_EncodeBlock((unsigned char *)out, bin, n);
	return out;
}

static void
test_encrypt_decrypt(void)
{
	long st;
	json_t *j;
	char *ct, *bad;
	const char *msg = "aGVsbG8sIHRva2VuIQ==";   /* "hello, token!" */

	j = reqf("POST", &st, json_pack("{s:s,s:{s:s,s:s}}", "plaintext", msg, "context", "file", "a.db", "tenant", "7"),
	    "/v1/vaults/dev/keys/encrypt");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	ct = strdup(jstr(j, "ciphertext"));
	json_decref(j);
	/* context key order does not matter: it is canonical */
	j = reqf("POST", &st, json_pack("{s:s,s:{s:s,s:s}}", "ciphertext", ct, "context", "tenant", "7", "file", "a.db"),
	    "/v1/vaults/dev/keys/decrypt");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "plaintext") ?: "", msg);
	json_decref(j);
	/* a changed context */
	j = reqf("POST", &st, json_pack("{s:s,s:{s:s,s:s}}", "ciphertext", ct, "context", "tenant", "8", "file", "a.db"),
	    "/v1/vaults/dev/keys/decrypt");
	CU_ASSERT_EQUAL(st, 400);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "invalid_ciphertext");
	json_decref(j);
	/* a changed byte: in the tag, in the header (format), in the wrapped key */
	for (long off = -1; off != 100; off = off == -1 ? 4 : off == 4 ? 20 : 100) {
		bad = flip(ct, off);
		j = reqf("POST", &st, json_pack("{s:s,s:{s:s,s:s}}", "ciphertext", bad, "context", "tenant", "7",
		    "file", "a.db"), "/v1/vaults/dev/keys/decrypt");
		CU_ASSERT_EQUAL(st, 400);
		CU_ASSERT_PTR_NULL(jstr(j, "plaintext"));
		json_decref(j);
		free(bad);
	}
	/* another vault: the blob says which it belongs to */
	j = reqf("POST", &st, json_pack("{s:s,s:{s:s,s:s}}", "ciphertext", ct, "context", "tenant", "7", "file", "a.db"),
	    "/v1/vaults/prod/keys/decrypt");
	CU_ASSERT_EQUAL(st, 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(jstr(json_object_get(j, "error"), "message") ?: "", "made in vault 'dev'"));
	json_decref(j);
	/* 4 KiB is the limit */
	{
		char *big = malloc(8000);
		unsigned char raw[4097];
		memset(raw, 'x', sizeof(raw));
		EVP_EncodeBlock((unsigned char *)big, raw, 4097);
		j = reqf("POST", &st, json_pack("{s:s}", "plaintext", big), "/v1/vaults/dev/keys/encrypt");
		CU_ASSERT_EQUAL(st, 413);
		json_decref(j);
		EVP_EncodeBlock((unsigned char *)big, raw, 4096);
		j = reqf("POST", &st, json_pack("{s:s}", "plaintext", big), "/v1/vaults/dev/keys/encrypt");
		CU_ASSERT_EQUAL(st, 200);
		json_decref(j);
		free(big);
	}
	free(ct);
}

/* Blobs made before a rotation open after it; a retired version opens
 * nothing; rewrap moves a key to the new version. */
static void
test_blobs_across_rotation(void)
{
	long st;
	json_t *j, *dk;
	char *ct, *wrapped, *pt;
	json_int_t v0;

	j = reqf("POST", &st, json_pack("{s:s}", "plaintext", "AAEC"), "/v1/vaults/dev/keys/encrypt");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	ct = strdup(jstr(j, "ciphertext"));
	v0 = jint(j, "key_version");
	json_decref(j);
	dk = reqf("POST", &st, NULL, "/v1/vaults/dev/keys/datakey");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	wrapped = strdup(jstr(dk, "wrapped"));
	pt = strdup(jstr(dk, "plaintext"));
	json_decref(dk);

	j = reqf("POST", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_EQUAL_FATAL(st, 202);
	CU_ASSERT_EQUAL(jint(j, "key_version"), v0 + 1);
	json_decref(j);
	json_decref(rotation_wait("dev", 30));

	j = reqf("POST", &st, json_pack("{s:s}", "ciphertext", ct), "/v1/vaults/dev/keys/decrypt");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "plaintext") ?: "", "AAEC");
	CU_ASSERT_EQUAL(jint(j, "key_version"), v0);
	json_decref(j);
	/* new blobs use the new version */
	j = reqf("POST", &st, json_pack("{s:s}", "plaintext", "AAEC"), "/v1/vaults/dev/keys/encrypt");
	CU_ASSERT_EQUAL(jint(j, "key_version"), v0 + 1);
	json_decref(j);
	/* rewrap: same plaintext, new version */
	j = reqf("POST", &st, json_pack("{s:s}", "wrapped", wrapped), "/v1/vaults/dev/keys/rewrap");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	CU_ASSERT_EQUAL(jint(j, "key_version"), v0 + 1);
	CU_ASSERT_EQUAL(jint(j, "previous_key_version"), v0);
	CU_ASSERT_PTR_NULL(json_object_get(j, "plaintext"));
	{
		json_t *u = reqf("POST", &st, json_pack("{s:s}", "wrapped", jstr(j, "wrapped")),
		    "/v1/vaults/dev/keys/unwrap");
		CU_ASSERT_EQUAL(st, 200);
		CU_ASSERT_STRING_EQUAL(jstr(u, "plaintext") ?: "", pt);
		json_decref(u);
	}
	json_decref(j);

	/* retire the old version: what it wraps no longer opens */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/%d/retire", (int)v0);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "state") ?: "", "retired");
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "ciphertext", ct), "/v1/vaults/dev/keys/decrypt");
	CU_ASSERT_EQUAL(st, 403);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_retired");
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "wrapped", wrapped), "/v1/vaults/dev/keys/unwrap");
	CU_ASSERT_EQUAL(st, 403);
	json_decref(j);
	free(ct);
	free(wrapped);
	free(pt);
}

/* ---- retire and destroy ------------------------------------------------------------ */

static int
token_has_label(const char *label)
{
	char out[65536];
	char *argv[] = { (char *)kwt_require("PKCS11_TOOL"), "--module", tok.module, "--token-label",
		tok.label, "--login", "--pin", "env:KWT_PIN", "--list-objects", NULL };
	const char *env[] = { "KWT_PIN", KWT_USER_PIN, NULL };

	if (kwt_run_env(argv, env, out, sizeof(out)) != 0)
		return -1;
	return strstr(out, label) != NULL;
}

static void
test_retire_refuses_then_destroy(void)
{
	long st;
	json_t *j, *backup;
	json_int_t cur;
	char label[64];

	/* a record under the current version, kept in a backup */
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "PUT", "/v1/vaults/dev/secrets/keep", "{\"value\":\"kept\"}", NULL), 201);
	backup = reqf("GET", &st, NULL, "/v1/vaults/dev/backup");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	cur = jint(j, "current");
	json_decref(j);

	/* the current version cannot be retired */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/%d/retire", (int)cur);
	CU_ASSERT_EQUAL(st, 409);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_in_use");
	json_decref(j);
	/* rotate; then put the old record back from the backup */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_EQUAL_FATAL(st, 202);
	json_decref(j);
	json_decref(rotation_wait("dev", 30));
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "DELETE", "/v1/vaults/dev/secrets/keep", NULL, NULL), 200);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "DELETE", "/v1/vaults/dev/deleted/keep", NULL, NULL), 200);
	j = reqf("POST", &st, json_incref(backup), "/v1/vaults/dev/restore");
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);
	/* version cur wraps one record again: retire refuses and says so */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/%d/retire", (int)cur);
	CU_ASSERT_EQUAL(st, 409);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_in_use");
	CU_ASSERT_PTR_NOT_NULL(strstr(jstr(json_object_get(j, "error"), "message") ?: "", "1 record"));
	json_decref(j);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/rotation");
	{
		char k[16];
		snprintf(k, sizeof(k), "%d", (int)cur);
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(j, "remaining"), k)), 1);
	}
	json_decref(j);
	/* destroy refuses an active version */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/%d/destroy", (int)cur);
	CU_ASSERT_EQUAL(st, 409);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_not_retired");
	json_decref(j);
	/* a rotation moves it; then retire and destroy go through */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_EQUAL_FATAL(st, 202);
	json_decref(j);
	json_decref(rotation_wait("dev", 30));
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/%d/retire", (int)cur);
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);
	snprintf(label, sizeof(label), "keywarden/dev/v%d", (int)cur);
	CU_ASSERT_EQUAL(token_has_label(label), 1);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/%d/destroy", (int)cur);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "state") ?: "", "destroyed");
	json_decref(j);
	CU_ASSERT_EQUAL(token_has_label(label), 0);   /* pkcs11-tool agrees */
	/* the restored record reads back under the new version */
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/secrets/keep");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "value") ?: "", "kept");
	CU_ASSERT(jint(j, "key_version") > cur);
	json_decref(j);
	/* The backup's record is wrapped under the destroyed version: it
	 * cannot come back (nothing could open it), under another name
	 * either, and nothing of the restore is written. */
	{
		json_t *recs = json_object_get(backup, "records"), *rec;
		size_t i;
		json_array_foreach(recs, i, rec)
			json_object_set_new(rec, "name", json_string("keep-again"));
	}
	j = reqf("POST", &st, json_incref(backup), "/v1/vaults/dev/restore");
	CU_ASSERT_EQUAL(st, 403);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_retired");
	CU_ASSERT_PTR_NOT_NULL(strstr(jstr(json_object_get(j, "error"), "message") ?: "", "keep-again"));
	json_decref(j);
	/* nor under a version this vault's token does not hold (a backup of
	 * another token): its wrapped key names version 99, and so does its
	 * key_version */
	{
		json_t *other = json_deep_copy(backup), *rec;
		size_t i;
		json_array_foreach(json_object_get(other, "records"), i, rec) {
			char w[400];
			snprintf(w, sizeof(w), "%s", jstr(rec, "wrapped_key") ?: "");
			/* bytes 3..5 of the header are the low bytes of the
			 * version: base64 characters 4..7 */
			CU_ASSERT_FATAL(strlen(w) > 8);
			memcpy(w + 4, "AABj", 4);
			json_object_set_new(rec, "wrapped_key", json_string(w));
			json_object_set_new(rec, "key_version", json_integer(99));
		}
		j = reqf("POST", &st, other, "/v1/vaults/dev/restore");   /* takes other */
		CU_ASSERT_EQUAL(st, 409);
		CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_not_found");
		json_decref(j);
	}
	/* nor by claiming a live version in key_version: the wrapped key
	 * names its own */
	{
		json_t *recs = json_object_get(backup, "records"), *rec;
		size_t i;
		json_array_foreach(recs, i, rec)
			json_object_set_new(rec, "key_version", json_integer(cur + 2));
	}
	j = reqf("POST", &st, backup, "/v1/vaults/dev/restore");   /* takes backup */
	CU_ASSERT_EQUAL(st, 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(jstr(json_object_get(j, "error"), "message") ?: "",
	    "is not the master-key version its wrapped key names"));
	json_decref(j);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/dev/secrets/keep-again", NULL, NULL), 404);
	/* the state survives a restart */
	CU_ASSERT_EQUAL(kwt_daemon_stop(&dmn), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	CU_ASSERT_EQUAL(st, 200);
	{
		json_t *ks = json_object_get(j, "keys"), *k;
		size_t i;
		json_array_foreach(ks, i, k)
			if (jint(k, "version") == cur) {
				CU_ASSERT_STRING_EQUAL(jstr(k, "state"), "destroyed");
				CU_ASSERT(json_is_false(json_object_get(k, "in_token")));
			}
	}
	json_decref(j);
}

/* ---- rotation under load, with kill -9 -------------------------------------------- */

struct load_arg {
	atomic_int *stop;
	unsigned seed;
	long reads, writes, wrong, errors;
};

static void *
load_client(void *p)
{
	struct load_arg *a = p;

	while (!atomic_load(a->stop)) {
		int i = (int)(rand_r(&a->seed) % NSECRETS);
		char path[128], want[32], *resp = NULL;
		long st;

		snprintf(path, sizeof(path), "/v1/vaults/prod/secrets/r/%05d", i);
		snprintf(want, sizeof(want), "value-%05d", i);
		if (rand_r(&a->seed) % 10 == 0) {
			char body[64];
			snprintf(body, sizeof(body), "{\"value\":\"%s\"}", want);
			st = kwt_http(dmn.sock, "PUT", path, body, NULL);
			if (st == 201)
				a->writes++;
			else
				a->errors++;    /* the daemon is down between a kill and its restart */
		} else {
			st = kwt_http(dmn.sock, "GET", path, NULL, &resp);
			if (st == 200) {
				json_t *j = json_loads(resp, 0, NULL);
				a->reads++;
				if (j == NULL || strcmp(jstr(j, "value") ?: "", want) != 0)
					a->wrong++;
				json_decref(j);
			} else {
				a->errors++;
			}
			free(resp);
		}
	}
	return NULL;
}

struct fill_arg {
	int from, to, failed;
};

static void *
fill(void *p)
{
	struct fill_arg *a = p;
	for (int i = a->from; i < a->to; i++) {
		char path[128], body[64];
		snprintf(path, sizeof(path), "/v1/vaults/prod/secrets/r/%05d", i);
		snprintf(body, sizeof(body), "{\"value\":\"value-%05d\"}", i);
		if (kwt_http(dmn.sock, "PUT", path, body, NULL) != 201)
			a->failed++;
	}
	return NULL;
}

static void
test_rotation_under_load_with_kills(void)
{
	enum { FILLERS = 8, CLIENTS = 4 };
	pthread_t th[FILLERS];
	struct fill_arg fa[FILLERS];
	struct load_arg la[CLIENTS];
	pthread_t lt[CLIENTS];
	atomic_int stop = 0;
	long st;
	json_t *j;
	json_int_t oldv, newv;
	int kills = 0, failed = 0, wrong = 0;
	unsigned seed = (unsigned)time(NULL);

	for (int t = 0; t < FILLERS; t++) {
		fa[t] = (struct fill_arg){ t * NSECRETS / FILLERS, (t + 1) * NSECRETS / FILLERS, 0 };
		pthread_create(&th[t], NULL, fill, &fa[t]);
	}
	for (int t = 0; t < FILLERS; t++) {
		pthread_join(th[t], NULL);
		failed += fa[t].failed;
	}
	CU_ASSERT_EQUAL_FATAL(failed, 0);
	j = reqf("GET", &st, NULL, "/v1/vaults/prod/master-keys");
	oldv = jint(j, "current");
	json_decref(j);

	for (int t = 0; t < CLIENTS; t++) {
		la[t] = (struct load_arg){ .stop = &stop, .seed = seed + (unsigned)t };
		pthread_create(&lt[t], NULL, load_client, &la[t]);
	}
	j = reqf("POST", &st, NULL, "/v1/vaults/prod/rotation");
	CU_ASSERT_EQUAL_FATAL(st, 202);
	newv = jint(j, "key_version");
	CU_ASSERT_EQUAL(newv, oldv + 1);
	CU_ASSERT(jint(j, "total") >= NSECRETS);
	json_decref(j);
	/* While it runs, status requests share one count of what is left a
	 * second: two at once see the same count, taken at the same time. */
	{
		json_t *a = reqf("GET", &st, NULL, "/v1/vaults/prod/rotation");
		json_t *b = reqf("GET", &st, NULL, "/v1/vaults/prod/rotation");
		CU_ASSERT_PTR_NOT_NULL(jstr(a, "remaining_at"));
		if (strcmp(jstr(a, "state") ?: "", "running") == 0 &&
		    strcmp(jstr(b, "state") ?: "", "running") == 0 &&
		    strcmp(jstr(a, "remaining_at") ?: "", jstr(b, "remaining_at") ?: "") == 0)
			CU_ASSERT(json_equal(json_object_get(a, "remaining"), json_object_get(b, "remaining")));
		json_decref(a);
		json_decref(b);
	}

	/* Kill the daemon at five random moments while the rewrap runs:
	 * after a random share of what is left, judged from the rate seen. */
	while (kills < 5) {
		json_t *s = reqf("GET", &st, NULL, "/v1/vaults/prod/rotation");
		json_int_t left;
		double rate;
		long delay_us;

		CU_ASSERT_EQUAL_FATAL(st, 200);
		left = json_integer_value(json_object_get(json_object_get(s, "remaining"), "1"));
		rate = json_real_value(json_object_get(s, "rate_per_s"));
		if (strcmp(jstr(s, "state"), "running") != 0 || left == 0) {
			json_decref(s);
			break;   /* finished before five kills: reported below */
		}
		json_decref(s);
		/* somewhere in the first sixth of what is left */
		delay_us = rate > 0 ? (long)((double)left / rate * 1e6 / 6.0 * (rand_r(&seed) % 1000) / 1000.0) : 0;
		if (delay_us > 300000)
			delay_us = 300000;
		usleep((useconds_t)delay_us);
		kwt_daemon_kill9(&dmn);
		kills++;
		CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
		/* it resumes by itself */
		s = reqf("GET", &st, NULL, "/v1/vaults/prod/rotation");
		for (int w = 0; w < 100 && strcmp(jstr(s, "state") ?: "", "idle") == 0; w++) {
			json_decref(s);
			usleep(20000);
			s = reqf("GET", &st, NULL, "/v1/vaults/prod/rotation");
		}
		CU_ASSERT_EQUAL(jint(s, "key_version"), newv);
		json_decref(s);
	}
	CU_ASSERT_EQUAL(kills, 5);
	j = rotation_wait("prod", 120);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(jstr(j, "state"), "done");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(j, "remaining"), "1")), 0);
	CU_ASSERT_PTR_NOT_NULL(jstr(j, "remaining_at"));
	json_decref(j);
	atomic_store(&stop, 1);
	for (int t = 0; t < CLIENTS; t++) {
		pthread_join(lt[t], NULL);
		wrong += (int)la[t].wrong;
		CU_ASSERT(la[t].reads > 0);
	}
	CU_ASSERT_EQUAL(wrong, 0);

	/* every secret reads back, on the new version */
	failed = 0;
	for (int i = 0; i < NSECRETS; i++) {
		char path[128], want[32];
		snprintf(path, sizeof(path), "/v1/vaults/prod/secrets/r/%05d", i);
		snprintf(want, sizeof(want), "value-%05d", i);
		j = req("GET", path, NULL, &st);
		if (st != 200 || strcmp(jstr(j, "value") ?: "", want) != 0 || jint(j, "key_version") != newv)
			failed++;
		json_decref(j);
	}
	CU_ASSERT_EQUAL(failed, 0);
	j = reqf("GET", &st, NULL, "/v1/vaults/prod/master-keys");
	{
		json_t *k;
		size_t i;
		json_array_foreach(json_object_get(j, "keys"), i, k)
			if (jint(k, "version") == oldv)
				CU_ASSERT_EQUAL(jint(k, "records"), 0);
	}
	json_decref(j);
	/* retiring the old version succeeds */
	j = reqf("POST", &st, NULL, "/v1/vaults/prod/master-keys/%d/retire", (int)oldv);
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);
	/* the proof is in the audit log too */
	CU_ASSERT_EQUAL(kwt_tree_contains(dmn.audit, "\"type\":\"vault.rotation.finished\"", strlen("\"type\":\"vault.rotation.finished\"")), 1);
	CU_ASSERT_EQUAL(kwt_tree_contains(dmn.audit, "\"type\":\"vault.rotation.resumed\"", strlen("\"type\":\"vault.rotation.resumed\"")), 1);
}

static void
test_rotation_status_and_conflict(void)
{
	long st;
	json_t *j;

	j = reqf("GET", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_PTR_NOT_NULL(json_object_get(j, "remaining"));
	CU_ASSERT_PTR_NOT_NULL(json_object_get(j, "rate_per_s"));
	json_decref(j);
	j = reqf("PUT", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_EQUAL(st, 405);
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/999/retire");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/x/retire");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);
}

/* ---- a second daemon whose token fails on demand ----------------------------------- */

/* Start d on this token through the interposer module (tests/shim), which
 * injects fail (KW_SHIM_FAIL's form) into the daemon's PKCS#11 calls while
 * the file trig exists.  vaults must name vaults no other daemon here has:
 * the token's keys are named by vault.  0 or -1. */
static int
shim_daemon_start(struct kwt_daemon *d, const char *fail, const char *trig, const char *vaults)
{
	const char *top = kwt_require("KW_TOP_BUILDDIR");
	struct kwt_token t = tok;
	int n, r;

	n = snprintf(t.module, sizeof(t.module), "%s/tests/shim/.libs/libkwshim.so", top);
	if (n < 0 || (size_t)n >= sizeof(t.module) || access(t.module, R_OK) != 0) {
		fprintf(stderr, "test_keys: %s missing: build tests/shim\n", t.module);
		return -1;
	}
	setenv("KW_SHIM_MODULE", tok.module, 1);
	setenv("KW_SHIM_FAIL", fail, 1);
	setenv("KW_SHIM_FAIL_FILE", trig, 1);
	r = kwt_daemon_start(d, &t, vaults);
	unsetenv("KW_SHIM_MODULE");
	unsetenv("KW_SHIM_FAIL");
	unsetenv("KW_SHIM_FAIL_FILE");
	return r;
}

static const char *
jerrmsg(json_t *j)
{
	const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	return m != NULL ? m : "";
}

/* A new master-key version is used once before it becomes current: when a
 * data key wrapped under it does not unwrap again (the token fails every
 * C_DecryptInit), the rotation is refused with a reply that says so, the
 * old version stays current and writes go on under it, and the refused
 * version leaves the token. */
static void
test_rotation_trial(void)
{
	char dir[256], trig[300];
	struct kwt_daemon d2;
	long st;
	json_t *j;
	int i;

	CU_ASSERT_FATAL(kwt_tmpdir(dir, sizeof(dir), "kw-trial") == 0);
	snprintf(trig, sizeof(trig), "%s/fail", dir);
	CU_ASSERT_EQUAL_FATAL(shim_daemon_start(&d2, "C_DecryptInit:1000000:CKR_GENERAL_ERROR", trig,
	    "vaults:\n  - name: trial\n"), 0);
	j = kwt_http_json(d2.sock, "PUT", "/v1/vaults/trial/secrets/a", "{\"value\":\"one\"}", &st);
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "key_version"), 1);
	json_decref(j);

	CU_ASSERT_FATAL(kwt_write_file(trig, "", 0600) == 0);
	j = kwt_http_json(d2.sock, "POST", "/v1/vaults/trial/rotation", NULL, &st);
	CU_ASSERT_EQUAL(st, 503);
	CU_ASSERT_PTR_NOT_NULL(strstr(jerrmsg(j), "version 2 of vault 'trial' failed its trial"));
	CU_ASSERT_PTR_NOT_NULL(strstr(jerrmsg(j), "version 1 stays current"));
	json_decref(j);
	unlink(trig);
	CU_ASSERT_EQUAL(kwt_file_contains(d2.log, "C_DecryptInit: CKR_GENERAL_ERROR",
	    strlen("C_DecryptInit: CKR_GENERAL_ERROR")), 1);

	j = kwt_http_json(d2.sock, "GET", "/v1/vaults/trial/master-keys", NULL, &st);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(jint(j, "current"), 1);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "keys")), 1);
	json_decref(j);
	CU_ASSERT_EQUAL(token_has_label("keywarden/trial/v1"), 1);
	CU_ASSERT_EQUAL(token_has_label("keywarden/trial/v2"), 0);

	/* writes and reads go on under version 1 */
	j = kwt_http_json(d2.sock, "PUT", "/v1/vaults/trial/secrets/a", "{\"value\":\"two\"}", &st);
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "key_version"), 1);
	json_decref(j);
	j = kwt_http_json(d2.sock, "GET", "/v1/vaults/trial/secrets/a", NULL, &st);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "value"), "two");
	json_decref(j);

	/* on a working token the rotation goes through, to the number the
	 * refused version had */
	j = kwt_http_json(d2.sock, "POST", "/v1/vaults/trial/rotation", NULL, &st);
	CU_ASSERT_EQUAL(st, 202);
	CU_ASSERT_EQUAL(jint(j, "key_version"), 2);
	json_decref(j);
	for (i = 0; i < 200; i++) {
		j = kwt_http_json(d2.sock, "GET", "/v1/vaults/trial/rotation", NULL, &st);
		if (st == 200 && strcmp(jstr(j, "state"), "done") == 0) {
			json_decref(j);
			break;
		}
		json_decref(j);
		usleep(50000);
	}
	CU_ASSERT(i < 200);
	j = kwt_http_json(d2.sock, "GET", "/v1/vaults/trial/secrets/a/versions/1", NULL, &st);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "value"), "one");
	json_decref(j);
	kwt_daemon_free(&d2);
	kwt_rmtree(dir);
}

/* The first master key of a new vault has the same trial before it is
 * recorded: while the token fails every C_DecryptInit, the start is
 * refused with an error that names the vault and the token's error, and
 * the new version 1 leaves the token.  On a working token the next start
 * makes version 1 and the vault works. */
static void
test_first_key_trial(void)
{
	char dir[256], trig[300];
	const char *m;
	struct kwt_daemon d2;
	long st;
	json_t *j;

	CU_ASSERT_FATAL(kwt_tmpdir(dir, sizeof(dir), "kw-trial1") == 0);
	snprintf(trig, sizeof(trig), "%s/fail", dir);
	CU_ASSERT_FATAL(kwt_write_file(trig, "", 0600) == 0);
	CU_ASSERT_NOT_EQUAL(shim_daemon_start(&d2, "C_DecryptInit:1000000:CKR_GENERAL_ERROR", trig,
	    "vaults:\n  - name: firsttrial\n"), 0);
	m = "the first master key (version 1) of vault 'firsttrial' failed its trial";
	CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	m = "C_DecryptInit: CKR_GENERAL_ERROR";
	CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	m = "created master key";
	CU_ASSERT_FALSE(kwt_file_contains(d2.log, m, strlen(m)));
	CU_ASSERT_EQUAL(token_has_label("keywarden/firsttrial/v1"), 0);

	/* The same store, on a token that works again. */
	unlink(trig);
	setenv("KW_SHIM_MODULE", tok.module, 1);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&d2), 0);
	unsetenv("KW_SHIM_MODULE");
	CU_ASSERT_EQUAL(token_has_label("keywarden/firsttrial/v1"), 1);
	/* made anew, not adopted: neither the store nor the token kept one */
	m = "vault 'firsttrial': created master key keywarden/firsttrial/v1";
	CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	m = "adopted master key";
	CU_ASSERT_FALSE(kwt_file_contains(d2.log, m, strlen(m)));
	j = kwt_http_json(d2.sock, "PUT", "/v1/vaults/firsttrial/secrets/a", "{\"value\":\"one\"}", &st);
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "key_version"), 1);
	json_decref(j);
	j = kwt_http_json(d2.sock, "GET", "/v1/vaults/firsttrial/secrets/a", NULL, &st);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "value"), "one");
	json_decref(j);
	j = kwt_http_json(d2.sock, "GET", "/v1/vaults/firsttrial/master-keys", NULL, &st);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(jint(j, "current"), 1);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "keys")), 1);
	json_decref(j);
	kwt_daemon_free(&d2);
	kwt_rmtree(dir);
}

/* ---- a second daemon whose store fails on demand ------------------------------------ */

/* What the store asks to list a vault's master-key versions (and nothing else). */
#define KEY_LIST_SQL "FROM vault_keys WHERE vault = ?1 ORDER BY version"

/* Start d on this token with tests/shim's libkwfailsql.so preloaded: while
 * the file trig exists, the store's statements whose SQL contains match
 * fail with an I/O error.  vaults as for shim_daemon_start.  0 or -1. */
static int
failsql_daemon_start(struct kwt_daemon *d, const char *match, const char *trig, const char *vaults)
{
	const char *env[] = { "KW_FAILSQL_FILE", trig, "KW_FAILSQL_MATCH", match, NULL };
	char lib[600];

	if (kwt_shim_lib("libkwfailsql.so", lib, sizeof(lib)) != 0)
		return -1;
	return kwt_daemon_start_preloaded(d, &tok, lib, env, NULL, vaults);
}

/* Wait until d's rotation of vault is done: 1, or 0 after 10 s. */
static int
rotation_done(const struct kwt_daemon *d, const char *vault)
{
	char path[128];
	long st;
	json_t *j;

	snprintf(path, sizeof(path), "/v1/vaults/%s/rotation", vault);
	for (int i = 0; i < 200; i++) {
		int done;
		j = kwt_http_json(d->sock, "GET", path, NULL, &st);
		done = st == 200 && strcmp(jstr(j, "state"), "done") == 0;
		json_decref(j);
		if (done)
			return 1;
		usleep(50000);
	}
	return 0;
}

/* The value of d's secret vault/name (version 0: the current one), or "". */
static const char *
secret_value(const struct kwt_daemon *d, const char *vault, const char *name, int version,
    char *buf, size_t len)
{
	char path[256];
	long st;
	json_t *j;

	if (version > 0)
		snprintf(path, sizeof(path), "/v1/vaults/%s/secrets/%s/versions/%d", vault, name, version);
	else
		snprintf(path, sizeof(path), "/v1/vaults/%s/secrets/%s", vault, name);
	j = kwt_http_json(d->sock, "GET", path, NULL, &st);
	snprintf(buf, len, "%s", st == 200 && jstr(j, "value") ? jstr(j, "value") : "");
	json_decref(j);
	return buf;
}

/* A rotation switched the store to its new version, but the daemon could
 * not read the versions back (the store's list of them fails): its view is
 * behind the store, which refuses writes under the old version.  Once the
 * store reads again the daemon heals without a restart: by its timer when
 * nothing comes, at once on a write that finds the view behind; and the
 * rewrap the switch never started runs. */
static void
test_view_heals(void)
{
	char dir[256], trig[300], v[64];
	struct kwt_daemon d2;
	long st;
	json_t *j;
	int i;

	CU_ASSERT_FATAL(kwt_tmpdir(dir, sizeof(dir), "kw-heal") == 0);
	snprintf(trig, sizeof(trig), "%s/fail", dir);
	CU_ASSERT_EQUAL_FATAL(failsql_daemon_start(&d2, KEY_LIST_SQL, trig,
	    "vaults:\n  - name: heal\n"), 0);
	j = kwt_http_json(d2.sock, "PUT", "/v1/vaults/heal/secrets/a", "{\"value\":\"one\"}", &st);
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "key_version"), 1);
	json_decref(j);

	/* 1. Nothing comes: the timer reads the view again. */
	CU_ASSERT_FATAL(kwt_write_file(trig, "", 0600) == 0);
	j = kwt_http_json(d2.sock, "POST", "/v1/vaults/heal/rotation", NULL, &st);
	CU_ASSERT_EQUAL(st, 503);
	json_decref(j);
	/* while the store cannot say which version is current, no write */
	j = kwt_http_json(d2.sock, "PUT", "/v1/vaults/heal/secrets/a", "{\"value\":\"x\"}", &st);
	CU_ASSERT_EQUAL(st, 503);
	json_decref(j);
	unlink(trig);
	for (i = 0; i < 200; i++) {
		json_int_t cur;
		j = kwt_http_json(d2.sock, "GET", "/v1/vaults/heal/master-keys", NULL, &st);
		cur = jint(j, "current");
		json_decref(j);
		if (cur == 2)
			break;
		usleep(50000);
	}
	CU_ASSERT(i < 200);
	CU_ASSERT(rotation_done(&d2, "heal"));
	CU_ASSERT_EQUAL(kwt_tree_contains(d2.audit, "vault.rotation.resumed",
	    strlen("vault.rotation.resumed")), 1);
	j = kwt_http_json(d2.sock, "PUT", "/v1/vaults/heal/secrets/a", "{\"value\":\"two\"}", &st);
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "key_version"), 2);
	json_decref(j);
	CU_ASSERT_STRING_EQUAL(secret_value(&d2, "heal", "a", 1, v, sizeof(v)), "one");

	/* 2. A write comes as soon as the store reads again: it goes
	 * through, under the new version. */
	CU_ASSERT_FATAL(kwt_write_file(trig, "", 0600) == 0);
	j = kwt_http_json(d2.sock, "POST", "/v1/vaults/heal/rotation", NULL, &st);
	CU_ASSERT_EQUAL(st, 503);
	json_decref(j);
	unlink(trig);
	j = kwt_http_json(d2.sock, "PUT", "/v1/vaults/heal/secrets/a", "{\"value\":\"three\"}", &st);
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "key_version"), 3);
	json_decref(j);
	CU_ASSERT_STRING_EQUAL(secret_value(&d2, "heal", "a", 0, v, sizeof(v)), "three");
	CU_ASSERT(rotation_done(&d2, "heal"));
	CU_ASSERT_STRING_EQUAL(secret_value(&d2, "heal", "a", 2, v, sizeof(v)), "two");
	CU_ASSERT_EQUAL(kwt_file_contains(d2.log, "were read from the store again",
	    strlen("were read from the store again")), 1);
	kwt_daemon_free(&d2);
	kwt_rmtree(dir);
}

/* The daemon's SQLite file (its state directory's *.db) into db: 0 or -1. */
static int
store_file(char *db, size_t len)
{
	DIR *dir;
	struct dirent *de;

	db[0] = '\0';
	if ((dir = opendir(dmn.state)) == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL)
		if (strlen(de->d_name) > 3 && strcmp(de->d_name + strlen(de->d_name) - 3, ".db") == 0)
			snprintf(db, len, "%s/%s", dmn.state, de->d_name);
	closedir(dir);
	return db[0] != '\0' ? 0 : -1;
}

/* The store's key version of a record and the version its wrapped key
 * names must agree: the token unwraps by the latter, retirement and rotation
 * go by the former, so a record edited in the store to pass for one under a
 * live version is refused, not served. */
static void
test_record_version_must_match(void)
{
	char db[600], sql[256], out[256];
	char *argv[] = { "sqlite3", db, sql, NULL };
	json_int_t old;
	long st;
	json_t *j;

	CU_ASSERT_EQUAL_FATAL(kwt_http(dmn.sock, "PUT", "/v1/vaults/dev/secrets/edited", "{\"value\":\"v\"}",
	    NULL), 201);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	old = jint(j, "current");
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_EQUAL_FATAL(st, 202);
	json_decref(j);
	json_decref(rotation_wait("dev", 30));
	/* the record is under the new version now; the store is made to say
	 * the old one, still active */
	CU_ASSERT_EQUAL(kwt_daemon_stop(&dmn), 0);
	CU_ASSERT_FATAL(store_file(db, sizeof(db)) == 0);
	snprintf(sql, sizeof(sql), "UPDATE secrets SET key_version = %d WHERE vault = 'dev' AND name = 'edited'",
	    (int)old);
	CU_ASSERT_EQUAL(kwt_run(argv, out, sizeof(out)), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/secrets/edited");
	CU_ASSERT_NOT_EQUAL(st, 200);
	CU_ASSERT_PTR_NULL(json_object_get(j, "value"));
	CU_ASSERT_EQUAL(st, 500);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "integrity");
	json_decref(j);
	/* a rotation leaves it, counted once (its extra passes meet it again) */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_EQUAL_FATAL(st, 202);
	json_decref(j);
	j = rotation_wait("dev", 30);
	CU_ASSERT_EQUAL(jint(j, "skipped"), 1);
	json_decref(j);
	/* put right, it reads again */
	CU_ASSERT_EQUAL(kwt_daemon_stop(&dmn), 0);
	snprintf(sql, sizeof(sql), "UPDATE secrets SET key_version = %d WHERE vault = 'dev' AND name = 'edited'",
	    (int)old + 1);
	CU_ASSERT_EQUAL(kwt_run(argv, out, sizeof(out)), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/dev/secrets/edited", NULL, NULL), 200);
}

/* ---- the schedule ------------------------------------------------------------------- */

static void
test_scheduled_rotation(void)
{
	char db[600], sql[256], out[256], conf[16384];
	char *argv[] = { "sqlite3", db, sql, NULL };
	FILE *f;
	size_t n;
	long st;
	json_t *j;
	json_int_t before;

	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	before = jint(j, "current");
	json_decref(j);
	CU_ASSERT_EQUAL(kwt_daemon_stop(&dmn), 0);
	/* age the current key by three days; ask for rotation every day */
	CU_ASSERT_FATAL(store_file(db, sizeof(db)) == 0);
	snprintf(sql, sizeof(sql), "UPDATE vault_keys SET created = created - 3*86400*1000000 "
	    "WHERE vault = 'dev' AND version = %d", (int)before);
	CU_ASSERT_EQUAL(kwt_run(argv, out, sizeof(out)), 0);
	f = fopen(dmn.conf, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	n = fread(conf, 1, sizeof(conf) - 1, f);
	fclose(f);
	conf[n] = '\0';
	{
		char *p = strstr(conf, "  - name: dev\n"), nc[16500];
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		p += strlen("  - name: dev\n");
		snprintf(nc, sizeof(nc), "%.*s    rotation_days: 1\n%s", (int)(p - conf), conf, p);
		CU_ASSERT_EQUAL(kwt_write_file(dmn.conf, nc, 0600), 0);
	}
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	/* the daemon starts the due rotation by itself */
	for (int i = 0; i < 100; i++) {
		j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
		if (jint(j, "current") == before + 1) {
			json_decref(j);
			break;
		}
		json_decref(j);
		usleep(50000);
	}
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	CU_ASSERT_EQUAL(jint(j, "current"), before + 1);
	json_decref(j);
	json_decref(rotation_wait("dev", 30));
	CU_ASSERT_EQUAL(kwt_tree_contains(dmn.audit, "\"by\":\"schedule\"", strlen("\"by\":\"schedule\"")), 1);
	/* and not again: the new key is young */
	CU_ASSERT_EQUAL(kwt_daemon_stop(&dmn), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	usleep(300000);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	CU_ASSERT_EQUAL(jint(j, "current"), before + 1);
	json_decref(j);
}

/* ---- signing keys --------------------------------------------------------------------- */

static int
write_b64_file(const char *path, const char *b64)
{
	unsigned char bin[4096];
	int n = EVP_DecodeBlock(bin, (const unsigned char *)b64, (int)strlen(b64));
	size_t pad = (b64[strlen(b64) - 1] == '=') + (b64[strlen(b64) - 2] == '=');
	FILE *f = fopen(path, "wb");

	if (f == NULL || n < 0)
		return -1;
	fwrite(bin, 1, (size_t)n - pad, f);
	return fclose(f);
}

/* Sign "message" with alg; check it with `openssl dgst -verify`. */
static void
sign_and_openssl_verify(const char *name, const char *alg, const char *dir)
{
	char pem[600], sig[600], msg[600], out[1024];
	const char *m64 = "dGhlIG1lc3NhZ2UgdG8gc2lnbg==";   /* "the message to sign" */
	long st;
	json_t *j;
	int rc;

	snprintf(pem, sizeof(pem), "%s/%s.pem", dir, name);
	snprintf(sig, sizeof(sig), "%s/%s-%s.sig", dir, name, alg);
	snprintf(msg, sizeof(msg), "%s/msg", dir);
	CU_ASSERT_EQUAL(kwt_write_file(msg, "the message to sign", 0600), 0);

	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/%s", name);
	CU_ASSERT_EQUAL_FATAL(st, 200);
	CU_ASSERT_EQUAL(kwt_write_file(pem, jstr(j, "public_key_pem"), 0644), 0);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s,s:s}", "alg", alg, "message", m64), "/v1/vaults/dev/signing-keys/%s/sign", name);
	CU_ASSERT_EQUAL_FATAL(st, 200);
	CU_ASSERT_EQUAL(write_b64_file(sig, jstr(j, "signature")), 0);
	{
		char *argv_rsa[] = { (char *)kwt_require("OPENSSL"), "dgst", "-sha256", "-verify", pem, "-signature", sig, msg, NULL };
		char *argv_pss[] = { (char *)kwt_require("OPENSSL"), "dgst", "-sha256", "-verify", pem, "-sigopt", "rsa_padding_mode:pss",
			"-sigopt", "rsa_pss_saltlen:32", "-signature", sig, msg, NULL };
		rc = kwt_run(strcmp(alg, "PS256") == 0 ? argv_pss : argv_rsa, out, sizeof(out));
		CU_ASSERT_EQUAL(rc, 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(out, "Verified OK"));
	}
	/* the daemon verifies its own signature, the JOSE form too, and
	 * refuses another message */
	{
		json_t *v = reqf("POST", &st, json_pack("{s:s,s:s,s:s}", "alg", alg, "message", m64, "signature",
		    jstr(j, "signature")), "/v1/vaults/dev/signing-keys/%s/verify", name);
		CU_ASSERT(json_is_true(json_object_get(v, "valid")));
		json_decref(v);
		v = reqf("POST", &st, json_pack("{s:s,s:s,s:s}", "alg", alg, "message", m64, "signature",
		    jstr(j, "signature_jose")), "/v1/vaults/dev/signing-keys/%s/verify", name);
		CU_ASSERT(json_is_true(json_object_get(v, "valid")));
		json_decref(v);
		v = reqf("POST", &st, json_pack("{s:s,s:s,s:s}", "alg", alg, "message", "b3RoZXI=", "signature",
		    jstr(j, "signature")), "/v1/vaults/dev/signing-keys/%s/verify", name);
		CU_ASSERT(json_is_false(json_object_get(v, "valid")));
		json_decref(v);
	}
	json_decref(j);
}

static void
test_signing_keys(void)
{
	char dir[256];
	long st;
	json_t *j;

	CU_ASSERT_EQUAL_FATAL(kwt_tmpdir(dir, sizeof(dir), "kwtest-sign"), 0);
	j = reqf("POST", &st, json_pack("{s:s,s:s}", "name", "jwt", "type", "ec-p256"), "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL_FATAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "version"), 1);
	CU_ASSERT_STRING_EQUAL(jstr(json_object_get(j, "jwk"), "kty") ?: "", "EC");
	CU_ASSERT_STRING_EQUAL(jstr(json_object_get(j, "jwk"), "crv") ?: "", "P-256");
	CU_ASSERT_STRING_EQUAL(jstr(j, "kid") ?: "", "jwt.1");
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s,s:s}", "name", "jwt", "type", "ec-p256"), "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL(st, 409);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s,s:s}", "name", "docs", "type", "rsa-3072"), "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL_FATAL(st, 201);
	CU_ASSERT_STRING_EQUAL(jstr(json_object_get(j, "jwk"), "kty") ?: "", "RSA");
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s,s:s}", "name", "x", "type", "dsa-1024"), "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL(st, 400);
	json_decref(j);

	sign_and_openssl_verify("jwt", "ES256", dir);
	sign_and_openssl_verify("docs", "RS256", dir);
	sign_and_openssl_verify("docs", "PS256", dir);

	/* alg must fit the key */
	j = reqf("POST", &st, json_pack("{s:s,s:s}", "alg", "RS256", "message", "AA=="), "/v1/vaults/dev/signing-keys/jwt/sign");
	CU_ASSERT_EQUAL(st, 400);
	json_decref(j);
	/* rotate: signing moves to v2, v1 still verifies */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/jwt/rotate");
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "version"), 2);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/jwt/sign");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "kid") ?: "", "jwt.2");
	json_decref(j);
	sign_and_openssl_verify("jwt", "ES256", dir);   /* with the v2 public key */
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "keys")), 2);
	json_decref(j);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/jwt?version=1");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "kid") ?: "", "jwt.1");
	json_decref(j);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/nope");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);
	kwt_rmtree(dir);
}

/* Destroying a signing key version: not the newest; afterwards it neither
 * signs nor verifies, its number is not reused, and the audit log says so. */
static void
test_signing_key_destroy(void)
{
	char o[16384], *sig1;
	long st;
	json_t *j, *v;

	j = reqf("POST", &st, json_pack("{s:s,s:s}", "name", "gone", "type", "ec-p256"), "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL_FATAL(st, 201);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/gone/sign");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	sig1 = strdup(jstr(j, "signature") ?: "");
	json_decref(j);
	for (int i = 0; i < 2; i++) {
		j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/gone/rotate");
		CU_ASSERT_EQUAL(st, 201);
		json_decref(j);
	}

	/* the newest signs: refused; unknown versions and paths: 404 */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/gone/versions/3/destroy");
	CU_ASSERT_EQUAL(st, 409);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_in_use");
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/gone/versions/9/destroy");
	CU_ASSERT_EQUAL(st, 404);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "version_not_found");
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/gone/versions/x/destroy");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/gone/versions/1/destroy");
	CU_ASSERT_EQUAL(st, 405);
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/nope/versions/1/destroy");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);

	/* the CLI destroys version 1 */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "destroy", "dev", "gone", "--version", "1", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "gone.3"));
	CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "destroy", "dev", "gone", NULL), 0);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/gone");
	CU_ASSERT_EQUAL(st, 200);
	v = json_object_get(j, "versions");
	CU_ASSERT(json_array_size(v) == 2 && json_integer_value(json_array_get(v, 0)) == 2);
	json_decref(j);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/gone?version=1");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);
	/* signing goes on with the newest; version 1 no longer verifies what
	 * it signed */
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/gone/sign");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "kid") ?: "", "gone.3");
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s,s:s,s:s,s:i}", "alg", "ES256", "message", "AA==",
	    "signature", sig1, "key_version", 1), "/v1/vaults/dev/signing-keys/gone/verify");
	CU_ASSERT_EQUAL(st, 404);
	CU_ASSERT(!json_is_true(json_object_get(j, "valid")));
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/gone/versions/1/destroy");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);
	/* numbers go on from the newest */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/gone/rotate");
	CU_ASSERT_EQUAL(st, 201);
	CU_ASSERT_EQUAL(jint(j, "version"), 4);
	json_decref(j);
	CU_ASSERT_EQUAL(kwt_tree_contains(dmn.audit, "\"operation\":\"destroy\",\"signing_key_version\":1",
	    strlen("\"operation\":\"destroy\",\"signing_key_version\":1")), 1);
	free(sig1);
}

/* Disabling a version stops it signing (the newest) and verifying, across
 * a restart, until it is enabled again; destroying a disabled version
 * clears its mark. */
static void
test_signing_key_disable(void)
{
	char o[16384], *sig1;
	long st;
	json_t *j, *v, *backup, *marks;

	j = reqf("POST", &st, json_pack("{s:s,s:s}", "name", "dis", "type", "ec-p256"), "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL_FATAL(st, 201);
	CU_ASSERT(json_is_true(json_object_get(j, "enabled")));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "disabled_versions")), 0);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/dis/sign");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	sig1 = strdup(jstr(j, "signature") ?: "");
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/rotate");
	CU_ASSERT_EQUAL(st, 201);
	json_decref(j);

	/* version 1 disabled (twice: the same outcome) no longer verifies */
	for (int i = 0; i < 2; i++) {
		j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/1/disable");
		CU_ASSERT_EQUAL(st, 200);
		CU_ASSERT_EQUAL(jint(j, "version"), 1);
		CU_ASSERT(json_is_false(json_object_get(j, "enabled")));
		v = json_object_get(j, "disabled_versions");
		CU_ASSERT(json_array_size(v) == 1 && json_integer_value(json_array_get(v, 0)) == 1);
		json_decref(j);
	}
	j = reqf("POST", &st, json_pack("{s:s,s:s,s:s,s:i}", "alg", "ES256", "message", "AA==",
	    "signature", sig1, "key_version", 1), "/v1/vaults/dev/signing-keys/dis/verify");
	CU_ASSERT_EQUAL(st, 403);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_disabled");
	CU_ASSERT(!json_is_true(json_object_get(j, "valid")));
	json_decref(j);
	/* the public key stays readable; the newest still signs */
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/dis?version=1");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_PTR_NOT_NULL(jstr(j, "public_key_pem"));
	CU_ASSERT(json_is_false(json_object_get(j, "enabled")));
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/dis/sign");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(jstr(j, "kid") ?: "", "dis.2");
	json_decref(j);

	/* the CLI disables the newest: no signing at all, and no fall-back
	 * to an older version; it lasts across a restart */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "disable", "dev", "dis", "--version", "2", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "enabled: no"));
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "disabled versions: 1,2"));
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "list", "dev", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "DISABLED"));
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "[1,2]"));
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "dis.2"));
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys");
	CU_ASSERT_EQUAL(st, 200);
	{
		json_t *k;
		size_t i;
		int seen = 0;
		json_array_foreach(json_object_get(j, "keys"), i, k) {
			v = json_object_get(k, "disabled_versions");
			if (strcmp(jstr(k, "name") ?: "", "dis") == 0) {
				seen = 1;
				CU_ASSERT(json_array_size(v) == 2 && json_integer_value(json_array_get(v, 1)) == 2);
			} else {
				CU_ASSERT(json_is_array(v));
			}
		}
		CU_ASSERT(seen);
	}
	json_decref(j);
	CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "disable", "dev", "dis", NULL), 0);
	/* a backup of the vault carries the marks */
	backup = reqf("GET", &st, NULL, "/v1/vaults/dev/backup");
	CU_ASSERT_EQUAL_FATAL(st, 200);
	marks = json_object_get(backup, "disabled_signing_keys");
	{
		json_t *m;
		size_t i;
		int seen = 0;
		json_array_foreach(marks, i, m) {
			if (strcmp(jstr(m, "name") ?: "", "dis") == 0) {
				CU_ASSERT_EQUAL(jint(m, "version"), seen + 1);
				CU_ASSERT_PTR_NOT_NULL(jstr(m, "since"));
				seen++;
			}
		}
		CU_ASSERT_EQUAL(seen, 2);
	}
	CU_ASSERT_EQUAL(kwt_daemon_stop(&dmn), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&dmn), 0);
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/dis/sign");
	CU_ASSERT_EQUAL(st, 403);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_disabled");
	CU_ASSERT_PTR_NULL(json_object_get(j, "signature"));
	json_decref(j);

	/* enabled again, both work again */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "enable", "dev", "dis", "--version", "2", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "enabled: yes"));
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/1/enable");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT(json_is_true(json_object_get(j, "enabled")));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "disabled_versions")), 0);
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s,s:s,s:s,s:i}", "alg", "ES256", "message", "AA==",
	    "signature", sig1, "key_version", 1), "/v1/vaults/dev/signing-keys/dis/verify");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT(json_is_true(json_object_get(j, "valid")));
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/dis/sign");
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);

	/* Restoring the backup's marks disables the versions again (a store
	 * rebuilt from backups must not bring disabled keys back to use); a
	 * malformed mark is refused, naming it, and changes nothing. */
	j = reqf("POST", &st, json_pack("{s:i,s:[],s:[{s:s,s:i}]}", "format", 1, "records",
	    "disabled_signing_keys", "name", "dis", "version", 0), "/v1/vaults/dev/restore");
	CU_ASSERT_EQUAL(st, 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(jstr(json_object_get(j, "error"), "message") ?: "", "disabled_signing_keys[0]"));
	json_decref(j);
	j = reqf("POST", &st, json_pack("{s:i,s:[],s:O}", "format", 1, "records",
	    "disabled_signing_keys", marks), "/v1/vaults/dev/restore");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(jint(j, "disabled_signing_keys"), (long)json_array_size(marks));
	json_decref(j);
	json_decref(backup);
	j = reqf("POST", &st, json_pack("{s:s}", "message", "AA=="), "/v1/vaults/dev/signing-keys/dis/sign");
	CU_ASSERT_EQUAL(st, 403);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "key_disabled");
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/2/enable");
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/1/enable");
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);

	/* refusals */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/9/disable");
	CU_ASSERT_EQUAL(st, 404);
	CU_ASSERT_STRING_EQUAL(kwt_err_code(j) ?: "", "version_not_found");
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/nope/versions/1/enable");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/1/disable");
	CU_ASSERT_EQUAL(st, 405);
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/1/pause");
	CU_ASSERT_EQUAL(st, 404);
	json_decref(j);

	/* a disabled version destroyed takes its mark with it */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/1/disable");
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/signing-keys/dis/versions/1/destroy");
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "disabled_versions")), 0);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "versions")), 1);
	json_decref(j);
	CU_ASSERT(kwt_tree_contains(dmn.audit, "\"operation\":\"disable\",\"signing_key_version\":2",
	    strlen("\"operation\":\"disable\",\"signing_key_version\":2")));
	CU_ASSERT(kwt_tree_contains(dmn.audit, "\"operation\":\"enable\",\"signing_key_version\":1",
	    strlen("\"operation\":\"enable\",\"signing_key_version\":1")));
	free(sig1);
}

/* ---- the CLI: encrypt-file, rotate --wait, sign ------------------------------------ */

#define CHUNK 65536

/* Write n bytes of a pattern to path, streamed; SHA-256 into md. */
static int
make_file(const char *path, size_t n, unsigned seed, unsigned char md[32])
{
	FILE *f = fopen(path, "wb");
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned char buf[65536];
	unsigned int mdl;

	if (f == NULL || c == NULL)
		return -1;
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	while (n > 0) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = (unsigned char)(rand_r(&seed) >> 7);
		fwrite(buf, 1, k, f);
		EVP_DigestUpdate(c, buf, k);
		n -= k;
	}
	EVP_DigestFinal_ex(c, md, &mdl);
	EVP_MD_CTX_free(c);
	return fclose(f);
}

static int
file_sha256(const char *path, unsigned char md[32], long *size)
{
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned char buf[65536];
	unsigned int mdl;
	size_t k;

	*size = 0;
	if (f == NULL || c == NULL) {
		if (f)
			fclose(f);
		EVP_MD_CTX_free(c);
		return -1;
	}
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	while ((k = fread(buf, 1, sizeof(buf), f)) > 0) {
		EVP_DigestUpdate(c, buf, k);
		*size += (long)k;
	}
	EVP_DigestFinal_ex(c, md, &mdl);
	EVP_MD_CTX_free(c);
	fclose(f);
	return 0;
}

static unsigned char *
slurp(const char *path, long *n)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	*n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)*n + 1);
	if (b != NULL && fread(b, 1, (size_t)*n, f) != (size_t)*n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	return b;
}

static int
spit(const char *path, const unsigned char *b, long n)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	fwrite(b, 1, (size_t)n, f);
	return fclose(f);
}

static void
test_cli_encrypt_file(void)
{
	static const size_t sizes[] = { 0, 1, 100u * 1024 * 1024 };
	char dir[256], in[300], enc[300], out[300], enc2[300], bad[300], o[4096];
	unsigned char want[32], got[32];
	long n, encn, enc2n;
	unsigned char *a, *b;
	size_t hdr;

	CU_ASSERT_EQUAL_FATAL(kwt_tmpdir(dir, sizeof(dir), "kwtest-files"), 0);
	snprintf(in, sizeof(in), "%s/in", dir);
	snprintf(enc, sizeof(enc), "%s/in.kwf", dir);
	snprintf(enc2, sizeof(enc2), "%s/other.kwf", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(bad, sizeof(bad), "%s/bad.kwf", dir);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		CU_ASSERT_EQUAL_FATAL(make_file(in, sizes[i], (unsigned)i + 1, want), 0);
		CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "encrypt-file", "dev", "--in", in, "--out", enc,
		    "--context", "app=files", NULL), 0);
		unlink(out);
		CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", enc, "--out", out, NULL), 0);
		CU_ASSERT_EQUAL(file_sha256(out, got, &n), 0);
		CU_ASSERT_EQUAL(n, (long)sizes[i]);
		CU_ASSERT_EQUAL(memcmp(want, got, 32), 0);
	}
	/* another context refuses */
	unlink(out);
	CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", enc, "--out", out,
	    "--context", "app=other", NULL), 0);
	CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);

	/* three chunks, twice, same length: tamper and splice */
	CU_ASSERT_EQUAL_FATAL(make_file(in, 2 * CHUNK + 1000, 7, want), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_cli(dmn.sock, o, sizeof(o), "encrypt-file", "dev", "--in", in, "--out", enc, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_cli(dmn.sock, o, sizeof(o), "encrypt-file", "dev", "--in", in, "--out", enc2, NULL), 0);
	a = slurp(enc, &encn);
	b = slurp(enc2, &enc2n);
	CU_ASSERT_FATAL(a != NULL && b != NULL && encn == enc2n);
	hdr = (size_t)encn - (2 * (CHUNK + 16) + 1000 + 16);
	{
		unsigned char *t = malloc((size_t)encn);

		/* truncated: the last chunk dropped */
		memcpy(t, a, (size_t)encn);
		CU_ASSERT_EQUAL(spit(bad, t, (long)(hdr + 2 * (CHUNK + 16))), 0);
		unlink(out);
		CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", bad, "--out", out, NULL), 0);
		CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
		/* reordered: chunks 0 and 1 swapped */
		memcpy(t, a, (size_t)encn);
		memcpy(t + hdr, a + hdr + CHUNK + 16, CHUNK + 16);
		memcpy(t + hdr + CHUNK + 16, a + hdr, CHUNK + 16);
		CU_ASSERT_EQUAL(spit(bad, t, encn), 0);
		unlink(out);
		CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", bad, "--out", out, NULL), 0);
		CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
		/* spliced: chunk 1 from the other file */
		memcpy(t, a, (size_t)encn);
		memcpy(t + hdr + CHUNK + 16, b + hdr + CHUNK + 16, CHUNK + 16);
		CU_ASSERT_EQUAL(spit(bad, t, encn), 0);
		unlink(out);
		CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", bad, "--out", out, NULL), 0);
		CU_ASSERT_NOT_EQUAL(access(out, F_OK), 0);
		/* one byte of the header */
		memcpy(t, a, (size_t)encn);
		t[10] ^= 1;
		CU_ASSERT_EQUAL(spit(bad, t, encn), 0);
		CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", bad, "--out", out, NULL), 0);
		/* the untouched file still opens */
		CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", enc, "--out", out, NULL), 0);
		free(t);
	}
	free(a);
	free(b);
	kwt_rmtree(dir);
}

static void
test_cli_rotate_and_sign(void)
{
	char o[16384], dir[256], pem[300], sig[300], msg[300];
	long st;
	json_t *j;

	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "vault", "rotate", "dev", "--wait", NULL), 0);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/rotation");
	CU_ASSERT_STRING_EQUAL(jstr(j, "state") ?: "", "done");
	json_decref(j);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "vault", "keys", "dev", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "active"));

	CU_ASSERT_EQUAL_FATAL(kwt_tmpdir(dir, sizeof(dir), "kwtest-clisign"), 0);
	snprintf(pem, sizeof(pem), "%s/pub.pem", dir);
	snprintf(sig, sizeof(sig), "%s/sig", dir);
	snprintf(msg, sizeof(msg), "%s/msg", dir);
	CU_ASSERT_EQUAL(kwt_write_file(msg, "signed by the cli", 0600), 0);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "create", "dev", "cli", "--type", "ec-p256", NULL), 0);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign-key", "public", "dev", "cli", NULL), 0);
	CU_ASSERT_EQUAL(kwt_write_file(pem, o, 0644), 0);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "sign", "dev", "cli", "--alg", "ES256", "--in", msg, "--out", sig, NULL), 0);
	{
		char *argv[] = { (char *)kwt_require("OPENSSL"), "dgst", "-sha256", "-verify", pem, "-signature", sig, msg, NULL };
		CU_ASSERT_EQUAL(kwt_run(argv, o, sizeof(o)), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(o, "Verified OK"));
	}
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "verify", "dev", "cli", "--alg", "ES256", "--signature", sig, "--in", msg, NULL), 0);
	CU_ASSERT_EQUAL(kwt_write_file(msg, "something else", 0600), 0);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "verify", "dev", "cli", "--alg", "ES256", "--signature", sig, "--in", msg, NULL), 1);
	kwt_rmtree(dir);
}

/* rewrap-file: after a rotation a file's data key moves to the new master
 * key, in place, so the file still opens once the old version is retired;
 * a file left behind does not.  A refused rewrap leaves the file as it was. */
static void
test_cli_rewrap_file(void)
{
	char dir[256], in[300], enc[300], left[300], copy[300], bad[300], out[300], o[4096];
	char want_msg[128];
	unsigned char want[32], got[32];
	unsigned char *a, *b;
	long n, an, bn;
	json_int_t v0, v1;
	struct stat sb;
	json_t *j;
	long st;
	DIR *dh;
	struct dirent *de;
	int stray = 0;

	CU_ASSERT_EQUAL_FATAL(kwt_tmpdir(dir, sizeof(dir), "kwtest-rewrap"), 0);
	snprintf(in, sizeof(in), "%s/in", dir);
	snprintf(enc, sizeof(enc), "%s/in.kwf", dir);
	snprintf(left, sizeof(left), "%s/left.kwf", dir);
	snprintf(copy, sizeof(copy), "%s/copy.kwf", dir);
	snprintf(bad, sizeof(bad), "%s/bad.kwf", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	v0 = jint(j, "current");
	json_decref(j);

	CU_ASSERT_EQUAL_FATAL(make_file(in, 2 * CHUNK + 1000, 11, want), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_cli(dmn.sock, o, sizeof(o), "encrypt-file", "dev", "--in", in,
	    "--out", enc, "--context", "app=rw", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_cli(dmn.sock, o, sizeof(o), "encrypt-file", "dev", "--in", in,
	    "--out", left, NULL), 0);
	CU_ASSERT_EQUAL(chmod(enc, 0640), 0);
	a = slurp(enc, &an);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);

	/* nothing to do before a rotation: the file is not rewritten */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "rewrap-file", "--in", enc, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "already under the current master key"));
	b = slurp(enc, &bn);
	CU_ASSERT(b != NULL && bn == an && memcmp(a, b, (size_t)an) == 0);
	free(b);

	CU_ASSERT_EQUAL_FATAL(kwt_cli(dmn.sock, o, sizeof(o), "vault", "rotate", "dev", "--wait", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "keywarden rewrap-file"));   /* the reminder */
	j = reqf("GET", &st, NULL, "/v1/vaults/dev/master-keys");
	v1 = jint(j, "current");
	json_decref(j);
	CU_ASSERT_FATAL(v1 > v0);

	/* another context is refused, and the file stays as it was */
	CU_ASSERT_NOT_EQUAL(kwt_cli_all(dmn.sock, o, sizeof(o), "rewrap-file", "--in", enc,
	    "--context", "app=other", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "left as it was"));
	b = slurp(enc, &bn);
	CU_ASSERT(b != NULL && bn == an && memcmp(a, b, (size_t)an) == 0);
	free(b);

	/* in place, a symbolic link or a second hard link is refused */
	{
		char ln[300];
		snprintf(ln, sizeof(ln), "%s/link.kwf", dir);
		CU_ASSERT_EQUAL(symlink(enc, ln), 0);
		CU_ASSERT_EQUAL(kwt_cli_all(dmn.sock, o, sizeof(o), "rewrap-file", "--in", ln, NULL), 2);
		CU_ASSERT_PTR_NOT_NULL(strstr(o, "symbolic link"));
		unlink(ln);
		CU_ASSERT_EQUAL(link(enc, ln), 0);
		CU_ASSERT_EQUAL(kwt_cli_all(dmn.sock, o, sizeof(o), "rewrap-file", "--in", ln, NULL), 2);
		CU_ASSERT_PTR_NOT_NULL(strstr(o, "hard links"));
		unlink(ln);
	}

	/* a damaged chunk is refused before anything is replaced */
	{
		unsigned char *t = malloc((size_t)an);
		memcpy(t, a, (size_t)an);
		t[an - CHUNK] ^= 0x40;
		CU_ASSERT_EQUAL(spit(bad, t, an), 0);
		free(t);
	}
	CU_ASSERT_NOT_EQUAL(kwt_cli_all(dmn.sock, o, sizeof(o), "rewrap-file", "--in", bad, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "authentication failed"));

	/* in place: same size, new bytes, same mode; and a copy with --out */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "rewrap-file", "--in", enc, NULL), 0);
	snprintf(want_msg, sizeof(want_msg), "from master-key version %lld to %lld",
	    (long long)v0, (long long)v1);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, want_msg));
	b = slurp(enc, &bn);
	CU_ASSERT(b != NULL && bn == an && memcmp(a, b, (size_t)an) != 0);
	free(b);
	CU_ASSERT_EQUAL(stat(enc, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 07777, 0640);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "rewrap-file", "--in", enc, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "already under the current master key"));
	CU_ASSERT_EQUAL(spit(copy, a, an), 0);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "rewrap-file", "--in", copy, "--out", out,
	    NULL), 0);
	b = slurp(copy, &bn);
	CU_ASSERT(b != NULL && bn == an && memcmp(a, b, (size_t)an) == 0);
	free(b);
	rename(out, copy);

	/* retire the old version: the rewrapped files open, the one left
	 * behind does not */
	j = reqf("POST", &st, NULL, "/v1/vaults/dev/master-keys/%d/retire", (int)v0);
	CU_ASSERT_EQUAL(st, 200);
	json_decref(j);
	unlink(out);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", enc, "--out", out,
	    "--context", "app=rw", NULL), 0);
	CU_ASSERT_EQUAL(file_sha256(out, got, &n), 0);
	CU_ASSERT(n == 2 * CHUNK + 1000 && memcmp(want, got, 32) == 0);
	unlink(out);
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", copy, "--out", out,
	    NULL), 0);
	CU_ASSERT_EQUAL(file_sha256(out, got, &n), 0);
	CU_ASSERT(n == 2 * CHUNK + 1000 && memcmp(want, got, 32) == 0);
	unlink(out);
	CU_ASSERT_NOT_EQUAL(kwt_cli(dmn.sock, o, sizeof(o), "decrypt-file", "--in", left, "--out", out,
	    NULL), 0);
	CU_ASSERT_NOT_EQUAL(kwt_cli_all(dmn.sock, o, sizeof(o), "rewrap-file", "--in", left, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(o, "retired"));

	/* no temporary file is left behind by any of it */
	if ((dh = opendir(dir)) != NULL) {
		while ((de = readdir(dh)) != NULL)
			if (de->d_name[0] == '.' && strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0)
				stray++;
		closedir(dh);
	}
	CU_ASSERT_EQUAL(stray, 0);
	free(a);
	kwt_rmtree(dir);
}

/* The token's keys are bound to the store that made them: a vault of the
 * same name in another store on the same token is refused (until the
 * operator says the first store is gone), and a key version the store
 * recorded but the token holds under another CKA_ID (destroyed and made
 * again) stops the start. */
static void
test_keys_bound_to_store(void)
{
	struct kwt_daemon d2, d3;
	struct p11_options o;
	struct p11_mkey mk;
	p11_ctx *p11 = NULL;
	const char *m;

	CU_ASSERT_EQUAL_FATAL(kwt_daemon_start(&d2, &tok, "vaults:\n  - name: bound\n"), 0);
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/bound/secrets/x", "{\"value\":\"x\"}", NULL), 201);
	/* Another store, same token, same vault name: refused, nothing taken. */
	CU_ASSERT_NOT_EQUAL(kwt_daemon_start(&d3, &tok, "vaults:\n  - name: bound\n"), 0);
	m = "the master keys of vault 'bound' in the token belong to another store";
	CU_ASSERT(kwt_file_contains(d3.log, m, strlen(m)));
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/vaults/bound/secrets/x", NULL, NULL), 200);
	kwt_daemon_free(&d3);
	/* The first store restarts as the owner it still is. */
	CU_ASSERT_EQUAL(kwt_daemon_stop(&d2), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&d2), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_stop(&d2), 0);

	/* v1 destroyed and made again behind the store's back. */
	memset(&o, 0, sizeof(o));
	o.module = tok.module;
	o.token = tok.label;
	o.pin_file = tok.pin_file;
	o.sessions = 1;
	CU_ASSERT_EQUAL_FATAL(p11_open(&o, &p11), 0);
	CU_ASSERT_EQUAL(p11_mkey_destroy(p11, "bound", 1), 0);
	CU_ASSERT_EQUAL(p11_mkey_create(p11, "bound", 1, &mk), 0);
	p11_close(p11);
	CU_ASSERT_NOT_EQUAL(kwt_daemon_restart(&d2), 0);
	m = "master key version 1 in the token is not the one the store recorded";
	CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	kwt_daemon_free(&d2);
}

/* A master key found in the token but not in the store (a rotation that
 * made it and was killed before recording it) is tried before it is
 * adopted: one that cannot wrap and unwrap stops the start and is not
 * recorded; once the token works again, it is adopted. */
static void
test_adopted_key_trial(void)
{
	char dir[256], trig[300];
	const char *m;
	struct kwt_daemon d2;
	struct p11_options o;
	struct p11_mkey mk;
	p11_ctx *p11 = NULL;
	long st;
	json_t *j;

	CU_ASSERT_FATAL(kwt_tmpdir(dir, sizeof(dir), "kw-trial2") == 0);
	snprintf(trig, sizeof(trig), "%s/fail", dir);
	CU_ASSERT_EQUAL_FATAL(shim_daemon_start(&d2, "C_DecryptInit:1000000:CKR_GENERAL_ERROR", trig,
	    "vaults:\n  - name: adopttrial\n"), 0);
	CU_ASSERT_EQUAL(kwt_daemon_stop(&d2), 0);
	/* Version 2 in the token only. */
	memset(&o, 0, sizeof(o));
	o.module = tok.module;
	o.token = tok.label;
	o.pin_file = tok.pin_file;
	o.sessions = 1;
	CU_ASSERT_EQUAL_FATAL(p11_open(&o, &p11), 0);
	CU_ASSERT_EQUAL(p11_mkey_create(p11, "adopttrial", 2, &mk), 0);
	p11_close(p11);

	CU_ASSERT_FATAL(kwt_write_file(trig, "", 0600) == 0);
	setenv("KW_SHIM_MODULE", tok.module, 1);
	setenv("KW_SHIM_FAIL", "C_DecryptInit:1000000:CKR_GENERAL_ERROR", 1);
	setenv("KW_SHIM_FAIL_FILE", trig, 1);
	CU_ASSERT_NOT_EQUAL(kwt_daemon_restart(&d2), 0);
	m = "master key version 2 of vault 'adopttrial', found in the token but not recorded in the store, failed its trial";
	CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	m = "adopted master key version 2";
	CU_ASSERT_FALSE(kwt_file_contains(d2.log, m, strlen(m)));

	/* The token works again: adopted, and usable. */
	unlink(trig);
	CU_ASSERT_EQUAL_FATAL(kwt_daemon_restart(&d2), 0);
	unsetenv("KW_SHIM_MODULE");
	unsetenv("KW_SHIM_FAIL");
	unsetenv("KW_SHIM_FAIL_FILE");
	CU_ASSERT(kwt_file_contains(d2.log, m, strlen(m)));
	j = kwt_http_json(d2.sock, "GET", "/v1/vaults/adopttrial/master-keys", NULL, &st);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "keys")), 2);
	json_decref(j);
	kwt_daemon_free(&d2);
	kwt_rmtree(dir);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "data keys: datakey, unwrap, context, rewrap", test_datakey_unwrap_rewrap },
		{ "encrypt and decrypt with context; tampering fails", test_encrypt_decrypt },
		{ "blobs across a rotation; retired opens nothing", test_blobs_across_rotation },
		{ "rotation status, bad requests", test_rotation_status_and_conflict },
		{ "a new version that fails its trial is not made current (shim)", test_rotation_trial },
		{ "a new vault's first master key that fails its trial stops the start (shim)", test_first_key_trial },
		{ "a key found only in the token is tried before it is adopted (shim)", test_adopted_key_trial },
		{ "the key view heals after a failed read, without a restart (shim)", test_view_heals },
		{ "retire refuses while used; destroy removes from the token", test_retire_refuses_then_destroy },
		{ "signing keys: ES256, RS256, PS256 verified by openssl", test_signing_keys },
		{ "encrypt-file: 0 B, 1 B, 100 MiB; truncated, reordered, spliced refused", test_cli_encrypt_file },
		{ "the CLI: vault rotate --wait, sign, verify", test_cli_rotate_and_sign },
		{ "rewrap-file: in place after a rotation; opens once the old key is retired", test_cli_rewrap_file },
		{ "signing keys: destroy a version, not the newest", test_signing_key_destroy },
		{ "signing keys: disable and enable a version", test_signing_key_disable },
		{ "rotate 10,000 secrets under load with five kill -9", test_rotation_under_load_with_kills },
		{ "a record's key version must be the one its wrapped key names", test_record_version_must_match },
		{ "a scheduled rotation starts by itself", test_scheduled_rotation },
		{ "the token's keys are bound to the store that made them", test_keys_bound_to_store },
		{ NULL, NULL }
	};

	return kwt_cunit_main("keys", suite_init, suite_clean, cases);
}
