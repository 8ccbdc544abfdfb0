/*
 * The audit log sealed by a real token: a throwaway SoftHSM token's audit
 * key (pkcs11/p11.h: p11_audit_hmac), as the daemon does it, and verified
 * through p11_audit_hmac_verify, as keywardend --verify-audit does.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "pkcs11/p11.h"
#include "daemon/audit.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

static struct kwt_token tok;
static p11_ctx *ctx;
static char tmproot[256];

static int
token_seal(void *arg, const uint8_t *data, size_t len, uint8_t mac[32])
{
	return p11_audit_hmac(arg, data, len, mac);
}

static int
token_check(void *arg, const uint8_t *data, size_t len, const uint8_t mac[32])
{
	return p11_audit_hmac_verify(arg, data, len, mac);
}

/* A key that is not the token's: any other HMAC key. */
static int
other_check(void *arg, const uint8_t *data, size_t len, const uint8_t mac[32])
{
	static const uint8_t key[32] = "not-the-audit-key-of-the-token!";
	uint8_t want[32];
	unsigned int n = 32;

	(void)arg;
	if (HMAC(EVP_sha256(), key, sizeof(key), data, len, want, &n) == NULL)
		return KW_E_INTERNAL;
	return memcmp(want, mac, 32) == 0 ? 0 : KW_E_AUTH;
}

static int
token_open(struct kwt_token *t, const char *label, p11_ctx **out)
{
	struct p11_options o;
	int r;

	if (kwt_token_new(t, label) != 0)
		return -1;
	memset(&o, 0, sizeof(o));
	o.module = t->module;
	o.token = t->label;
	o.pin_file = t->pin_file;
	if ((r = p11_open(&o, out)) != 0 || (r = p11_audit_key_ensure(*out)) != 0) {
		fprintf(stderr, "token %s: %s\n", label, kw_errdetail(r));
		return -1;
	}
	return 0;
}

struct th_arg {
	struct audit_log *log;
	int bad;
};

static void *
writer(void *p)
{
	struct th_arg *a = p;

	for (int i = 0; i < 100; i++)
		if (audit_submit_wait(a->log, json_pack("{s:s,s:i}", "type", "secret.get",
		    "i", i), NULL) != 0)
			a->bad++;
	return NULL;
}

static void
test_token_seals(void)
{
	char dir[512], path[1024], buf[2048];
	struct audit_options o;
	struct audit_log *log = NULL;
	struct kwac_result res;
	struct kwac_verify_opts v = { .check = token_check };
	pthread_t th[4];
	struct th_arg a[4];
	int r;

	snprintf(dir, sizeof(dir), "%s/log", tmproot);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.segment_bytes = 8192;
	o.seal = token_seal;
	o.seal_arg = ctx;
	r = audit_open(&o, &log);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	for (int i = 0; i < 4; i++) {
		a[i].log = log;
		a[i].bad = 0;
		pthread_create(&th[i], NULL, writer, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(a[i].bad, 0);
	}
	audit_close(log);

	/* Seals checked by the token that made them. */
	v.arg = ctx;
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &v, &res), 0);
	kwac_result_format(&res, buf, sizeof(buf));
	fputs(buf, stdout);
	CU_ASSERT(res.seals_checked);
	CU_ASSERT_EQUAL(res.events, 400);
	CU_ASSERT(res.segments >= 2);
	CU_ASSERT_EQUAL(audit_verify_dir(dir, token_seal, ctx, 0, &res), 0);

	/* Another key does not vouch for them. */
	v.check = other_check;
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &v, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEAL_MAC);
	{
		char name[64];
		kwac_segment_name(1, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", dir, name);
	}
	CU_ASSERT_STRING_EQUAL(res.file, path);
	/* The break is the first seal, whose seq depends on how the writer
	 * batched the first events: read it from the file. */
	{
		FILE *f = fopen(path, "r");
		char line[8192];
		long long first_seal = -1;
		while (f != NULL && first_seal < 0 && fgets(line, sizeof(line), f) != NULL) {
			json_t *j = json_loads(line, 0, NULL);
			const char *type = json_string_value(json_object_get(j, "type"));
			if (type != NULL && strcmp(type, "seal") == 0)
				first_seal = (long long)json_integer_value(json_object_get(j, "seq"));
			json_decref(j);
		}
		if (f != NULL)
			fclose(f);
		CU_ASSERT(first_seal >= 1);
		CU_ASSERT_EQUAL((long long)res.seq, first_seal);
	}
	kwt_rmtree(dir);
}

/* Someone with write access to the directory but no use of the token
 * appends a batch with a correct chain and a seal of their own while the
 * daemon is stopped: the daemon, opening the log with the real token,
 * refuses to seal after it. */
static void
test_forged_batch_refused(void)
{
	static const uint8_t key[32] = "not-the-audit-key-of-the-token!";
	char dir[512], path[1024], name[64], line[512], hex[KWAC_HEX_LEN + 1];
	char mhex[KWAC_HEX_LEN + 1], in[128], text[8192];
	uint8_t last[KWAC_HASH_LEN], mac[32];
	unsigned int ml = 32;
	struct audit_options o;
	struct audit_log *log = NULL;
	struct kwac_result res;
	struct kwac_verify_opts v = { .check = token_check };
	struct kwac_line l;
	struct stat st;
	uint64_t seq = 0;
	off_t orig;
	FILE *f;
	int n;

	snprintf(dir, sizeof(dir), "%s/forged", tmproot);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.seal = token_seal;
	o.seal_arg = ctx;
	CU_ASSERT_EQUAL_FATAL(audit_open(&o, &log), 0);
	for (int i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(audit_submit_wait(log, json_pack("{s:s,s:i}", "type", "secret.get",
		    "i", i), NULL), 0);
	audit_close(log);
	log = NULL;
	kwac_segment_name(1, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	orig = st.st_size;

	/* The forgery: events chained to the last one, and a seal. */
	f = fopen(path, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	while (fgets(text, sizeof(text), f) != NULL) {
		size_t len = strcspn(text, "\n");
		if (kwac_line_parse(text, len, &l, NULL, 0) != 0 || l.type == KWAC_LINE_SEAL)
			continue;
		kwac_hash(text, len, last);
		seq = l.type == KWAC_LINE_EVENT ? l.seq : l.seq - 1;
	}
	fclose(f);
	CU_ASSERT_EQUAL_FATAL(seq, 5);
	f = fopen(path, "a");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (int i = 0; i < 2; i++) {
		kwac_hex(last, hex);
		snprintf(line, sizeof(line), "{\"seq\":%llu,\"time\":\"2026-01-01T00:00:00.000000Z\",\"prev\":\"%s\",\"type\":\"secret.get\",\"outcome\":\"allowed\"}",
		    (unsigned long long)++seq, hex);
		kwac_hash(line, strlen(line), last);
		fprintf(f, "%s\n", line);
	}
	n = kwac_seal_input(seq, last, in, sizeof(in));
	HMAC(EVP_sha256(), key, sizeof(key), (const uint8_t *)in, (size_t)n, mac, &ml);
	kwac_hex(last, hex);
	kwac_hex(mac, mhex);
	fprintf(f, "{\"type\":\"seal\",\"seq\":%llu,\"hash\":\"%s\",\"hmac\":\"%s\"}\n",
	    (unsigned long long)seq, hex, mhex);
	fclose(f);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	orig = st.st_size - orig;   /* the forged bytes */

	/* Refused at open, nothing written; the verifier names the seal. */
	CU_ASSERT_EQUAL(audit_open(&o, &log), KW_E_AUTH);
	CU_ASSERT_PTR_NULL(log);
	fprintf(stdout, "%s\n", kw_errdetail(KW_E_AUTH));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "seal of seq 7"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), name));
	v.arg = ctx;
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &v, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEAL_MAC);
	CU_ASSERT_EQUAL(res.seq, 7);

	/* Without the forgery, the log opens and goes on. */
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL_FATAL(truncate(path, st.st_size - orig), 0);
	CU_ASSERT_EQUAL_FATAL(audit_open(&o, &log), 0);
	CU_ASSERT_EQUAL(audit_committed_seq(log), 5);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &v, &res), 0);
	kwt_rmtree(dir);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "seals made and checked by the token's audit key", test_token_seals },
		{ "open refuses a forged batch with a seal the token did not make", test_forged_batch_refused },
		{ NULL, NULL }
	};
	int r;

	kwt_require("SOFTHSM2_MODULE");
	kwt_require("SOFTHSM2_UTIL");
	if (kwt_tmpdir(tmproot, sizeof(tmproot), "kwauditp11") != 0)
		return 99;
	if (token_open(&tok, "audit", &ctx) != 0)
		return 99;
	r = kwt_cunit_main("audit_p11", NULL, NULL, cases);
	p11_close(ctx);
	kwt_token_free(&tok);
	kwt_rmtree(tmproot);
	return r;
}
