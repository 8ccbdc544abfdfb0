/*
 * Permissions end to end: real users and groups made for the test
 * (useradd/groupadd: CI runs as root), clients run as them with setpriv,
 * the real daemon deciding from what the kernel says about each caller.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <jansson.h>

#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

static struct kwt_token tok;
static struct kwt_daemon dmn;
static char bindir[256], policy_path[300], billing_exe[320], other_exe[320];
static const char *curl;

static int
sh(const char *cmd)
{
	int r = system(cmd);
	return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

/* Run curl as user (primary group kwt-clients, with its supplementary
 * groups) through exe against the daemon on sock; return the HTTP status,
 * body in out. */
static int
as_user_at(const char *sock, const char *user, const char *exe, const char *method,
    const char *path, const char *body, char *out, size_t outlen)
{
	char url[512], reuid[64], buf[4096];
	char *argv[24];
	int i = 0, st;
	char *nl;

	snprintf(url, sizeof(url), "http://localhost%s", path);
	snprintf(reuid, sizeof(reuid), "--reuid=%s", user);
	argv[i++] = "setpriv";
	argv[i++] = reuid;
	argv[i++] = "--regid=kwt-clients";
	argv[i++] = "--init-groups";
	argv[i++] = (char *)exe;
	argv[i++] = "-s";
	argv[i++] = "-w";
	argv[i++] = "\n%{http_code}";
	argv[i++] = "-X";
	argv[i++] = (char *)method;
	argv[i++] = "--unix-socket";
	argv[i++] = (char *)sock;
	if (body != NULL) {
		argv[i++] = "-d";
		argv[i++] = (char *)body;
	}
	argv[i++] = url;
	argv[i] = NULL;
	if (kwt_run(argv, buf, sizeof(buf)) != 0)
		return -1;
	nl = strrchr(buf, '\n');
	if (nl == NULL)
		return -1;
	st = atoi(nl + 1);
	*nl = '\0';
	if (out != NULL)
		snprintf(out, outlen, "%.*s", (int)(outlen > 0 ? outlen - 1 : 0), buf);
	return st;
}

/* Ask the daemon on sock to explain body: 1 allowed, 0 denied, -1 for no
 * decision (not 200, or not JSON); the deciding rule's name ("" for none)
 * into rule. */
static int
explain_at(const char *sock, const char *body, char *rule, size_t len)
{
	char *resp = NULL;
	json_t *j = NULL;
	int r = -1;

	rule[0] = '\0';
	if (kwt_http(sock, "POST", "/v1/policy/explain", body, &resp) == 200 &&
	    (j = json_loads(resp, 0, NULL)) != NULL) {
		r = json_is_true(json_object_get(j, "allow"));
		snprintf(rule, len, "%s", json_string_value(json_object_get(j, "rule")) ?: "");
	}
	json_decref(j);
	free(resp);
	return r;
}

/* as_user_at the suite's daemon. */
static int
as_user(const char *user, const char *exe, const char *method, const char *path,
    const char *body, char *out, size_t outlen)
{
	return as_user_at(dmn.sock, user, exe, method, path, body, out, outlen);
}

static int
write_policy(const char *extra_rules)
{
	char text[4096];

	snprintf(text, sizeof(text),
	    "version: 1\n"
	    "principals:\n"
	    "  developers: { group: kwt-devs }\n"
	    "  leads: { group: kwt-leads }\n"
	    "  billing-service:\n"
	    "    - exe: %s\n"
	    "    - unit: kwt-billing.service\n"
	    "rules:\n"
	    "  - name: root-administers\n"
	    "    who: { user: root }\n"
	    "    allow: administrator\n"
	    "    vault: '*'\n"
	    "  - name: devs-read-prod-api-key\n"
	    "    who: developers\n"
	    "    allow: secrets-reader\n"
	    "    vault: prod\n"
	    "    names: api/key\n"
	    "  - name: leads-change-prod-api-key\n"
	    "    who: leads\n"
	    "    allow: [secret.set, secret.update]\n"
	    "    vault: prod\n"
	    "    names: api/key\n"
	    "  - name: billing-reads-db\n"
	    "    who: billing-service\n"
	    "    allow: secret.get\n"
	    "    vault: prod\n"
	    "    names: db/billing/connection\n"
	    "%s",
	    billing_exe, extra_rules ? extra_rules : "");
	return kwt_write_file(policy_path, text, 0644);
}

static int
suite_init(void)
{
	char extra[1400];

	curl = kwt_require("CURL");
	if (geteuid() != 0) {
		fprintf(stderr, "FATAL: this test creates users and groups: run it as root (CI does)\n");
		exit(99);
	}
	if (sh("for g in kwt-devs kwt-leads kwt-clients; do getent group $g >/dev/null || groupadd $g || exit 1; done") != 0 ||
	    sh("id kwt-alice >/dev/null 2>&1 || useradd -M -N -g kwt-clients -G kwt-devs -s /usr/sbin/nologin kwt-alice") != 0 ||
	    sh("id kwt-bob >/dev/null 2>&1 || useradd -M -N -g kwt-clients -G kwt-devs,kwt-leads -s /usr/sbin/nologin kwt-bob") != 0 ||
	    sh("id kwt-eve >/dev/null 2>&1 || useradd -M -N -g kwt-clients -s /usr/sbin/nologin kwt-eve") != 0 ||
	    sh("id kwt-billing >/dev/null 2>&1 || useradd -M -N -g kwt-clients -s /usr/sbin/nologin kwt-billing") != 0) {
		fprintf(stderr, "FATAL: cannot create the test users and groups\n");
		return -1;
	}
	if (kwt_tmpdir(bindir, sizeof(bindir), "kwtest-bin") != 0 || chmod(bindir, 0755) != 0)
		return -1;
	snprintf(billing_exe, sizeof(billing_exe), "%s/billing-server", bindir);
	snprintf(other_exe, sizeof(other_exe), "%s/not-billing", bindir);
	snprintf(policy_path, sizeof(policy_path), "%s/policy.yaml", bindir);
	{
		char cmd[2400];
		snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s && chmod 755 %s %s", curl,
		    billing_exe, curl, other_exe, billing_exe, other_exe);
		if (sh(cmd) != 0)
			return -1;
	}
	if (write_policy(NULL) != 0)
		return -1;
	if (kwt_token_new(&tok, "kw-policy") != 0)
		return -1;
	snprintf(extra, sizeof(extra),
	    "policy: %s\nvaults:\n  - name: prod\n  - name: dev\n", policy_path);
	if (kwt_daemon_start_group(&dmn, &tok, "kwt-clients", extra) != 0)
		return -1;
	/* root sets the secrets up */
	if (kwt_http(dmn.sock, "PUT", "/v1/vaults/prod/secrets/api/key", "{\"value\":\"prod-api-key\"}", NULL) != 201 ||
	    kwt_http(dmn.sock, "PUT", "/v1/vaults/prod/secrets/db/billing/connection",
		"{\"value\":\"postgres://billing\"}", NULL) != 201)
		return -1;
	return 0;
}

static int
suite_clean(void)
{
	kwt_daemon_free(&dmn);
	kwt_token_free(&tok);
	kwt_rmtree(bindir);
	sh("for u in kwt-alice kwt-bob kwt-eve kwt-billing kwt-many; do userdel $u 2>/dev/null; done; "
	   "for g in kwt-devs kwt-leads kwt-clients $(seq -f kwt-g%02g 1 70); do "
	   "groupdel $g 2>/dev/null; done; true");
	return 0;
}

static void
test_whoami_is_the_kernel_view(void)
{
	char out[4096];
	json_t *j;
	struct passwd *pw = getpwnam("kwt-alice");

	CU_ASSERT_PTR_NOT_NULL_FATAL(pw);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "GET", "/v1/whoami", NULL, out, sizeof(out)), 200);
	j = json_loads(out, 0, NULL);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "uid")), (json_int_t)pw->pw_uid);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "user")) ?: "", "kwt-alice");
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"kwt-devs\""));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "exe")) ?: "", curl);
	json_decref(j);
}

static void
test_devs_read_leads_write(void)
{
	char out[4096];

	/* every developer reads the production API key ... */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "GET", "/v1/vaults/prod/secrets/api/key", NULL, out, sizeof(out)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "prod-api-key"));
	/* ... but may not change it */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "PUT", "/v1/vaults/prod/secrets/api/key", "{\"value\":\"mine\"}", out, sizeof(out)), 403);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "no rule allows it"));
	/* only the leads may */
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "PUT", "/v1/vaults/prod/secrets/api/key", "{\"value\":\"rotated-by-lead\"}", out, sizeof(out)), 201);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "GET", "/v1/vaults/prod/secrets/api/key", NULL, out, sizeof(out)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "rotated-by-lead"));
	/* someone in neither group gets nothing */
	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "GET", "/v1/vaults/prod/secrets/api/key", NULL, out, sizeof(out)), 403);
	CU_ASSERT_PTR_NULL(strstr(out, "rotated-by-lead"));
	/* nor other names, nor listing */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "GET", "/v1/vaults/prod/secrets", NULL, out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "DELETE", "/v1/vaults/prod/secrets/api/key", NULL, out, sizeof(out)), 403);
}

static void
test_only_billing_reads_db(void)
{
	char out[4096];
	const char *p = "/v1/vaults/prod/secrets/db/billing/connection";

	CU_ASSERT_EQUAL(as_user("kwt-billing", billing_exe, "GET", p, NULL, out, sizeof(out)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "postgres://billing"));
	/* the same user with another program */
	CU_ASSERT_EQUAL(as_user("kwt-billing", curl, "GET", p, NULL, out, sizeof(out)), 403);
	/* the same bytes copied to another path */
	CU_ASSERT_EQUAL(as_user("kwt-billing", other_exe, "GET", p, NULL, out, sizeof(out)), 403);
	/* Another user's program bind-mounted over the billing binary's path,
	 * in a user and mount namespace of its own: /proc/PID/exe shows the
	 * billing path, but the file there is not the one that runs. */
	{
		char cmd[2048], buf[4096];
		char *argv[] = { "setpriv", "--reuid=kwt-eve", "--regid=kwt-clients", "--init-groups",
		    "unshare", "-Urm", "sh", "-c", cmd, NULL };
		snprintf(cmd, sizeof(cmd), "mount --bind %s %s && exec %s -s -w '\\n%%{http_code}' "
		    "--unix-socket %s http://localhost%s", other_exe, billing_exe, billing_exe, dmn.sock, p);
		CU_ASSERT_EQUAL(kwt_run(argv, buf, sizeof(buf)), 0);
		if (strstr(buf, "\n403") == NULL)
			fprintf(stderr, "bind-mounted billing path: %s\n", buf);
		CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\n403"));
		CU_ASSERT_PTR_NULL(strstr(buf, "postgres://billing"));
	}
	/* whether a vault exists is not told to a caller who may not use it */
	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "GET", "/v1/vaults/no-such-vault/secrets/x", NULL, out,
	    sizeof(out)), 403);
	CU_ASSERT_PTR_NULL(strstr(out, "vault_not_found"));
	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "GET", "/v1/vaults/prod/secrets/x", NULL, out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/no-such-vault/secrets/x", NULL, NULL), 404);
	/* developers and leads: no */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "GET", p, NULL, out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "GET", p, NULL, out, sizeof(out)), 403);
	CU_ASSERT_PTR_NULL(strstr(out, "postgres://billing"));
}

static void
test_explain_and_who_can(void)
{
	char *resp = NULL;
	json_t *j;
	long st;

	st = kwt_http(dmn.sock, "POST", "/v1/policy/explain",
	    "{\"user\":\"kwt-alice\",\"action\":\"secret.get\",\"vault\":\"prod\",\"name\":\"api/key\"}", &resp);
	CU_ASSERT_EQUAL(st, 200);
	j = json_loads(resp, 0, NULL);
	CU_ASSERT(json_is_true(json_object_get(j, "allow")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "rule")) ?: "", "devs-read-prod-api-key");
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(j, "decision")) ?: "", "policy.yaml:"));
	json_decref(j);
	free(resp);
	st = kwt_http(dmn.sock, "POST", "/v1/policy/explain",
	    "{\"user\":\"kwt-alice\",\"action\":\"secret.set\",\"vault\":\"prod\",\"name\":\"api/key\"}", &resp);
	j = json_loads(resp, 0, NULL);
	CU_ASSERT(json_is_false(json_object_get(j, "allow")));
	json_decref(j);
	free(resp);
	st = kwt_http(dmn.sock, "GET", "/v1/policy/who-can?action=secret.get&vault=prod&name=db/billing/connection", NULL, &resp);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp, "billing-server"));
	CU_ASSERT_PTR_NOT_NULL(strstr(resp, "kwt-billing.service"));
	CU_ASSERT_PTR_NULL(strstr(resp, "kwt-devs"));
	free(resp);
	/* explaining is itself an action: eve may not */
	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "GET", "/v1/policy/who-can?action=secret.get&vault=prod", NULL, NULL, 0), 403);
}

static void
test_cli_policy(void)
{
	char out[4096];

	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "policy", "explain", "--user", "kwt-alice", "secret.get", "prod/api/key", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "allowed by rule 'devs-read-prod-api-key'"));
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "policy", "explain", "--user", "kwt-alice", "secret.set", "prod/api/key", NULL), 4);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "no rule allows it"));
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "policy", "explain", "--user", "kwt-billing", "--exe", billing_exe, NULL),
	    2);   /* usage: action and target missing */
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "policy", "who-can", "secret.set", "prod/api/key", NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "kwt-leads"));
	CU_ASSERT_EQUAL(kwt_cli(dmn.sock, out, sizeof(out), "policy", "check", policy_path, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, ": ok"));
}

static void
test_key_roles(void)
{
	char out[8192];

	CU_ASSERT_EQUAL_FATAL(write_policy(
	    "  - name: devs-use-dev-keys\n"
	    "    who: developers\n"
	    "    allow: crypto-user\n"
	    "    vault: dev\n"
	    "  - name: leads-manage-dev-keys\n"
	    "    who: leads\n"
	    "    allow: crypto-officer\n"
	    "    vault: dev\n"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", NULL, NULL), 200);

	/* a crypto user makes data keys, but neither rotates nor creates keys */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/keys/datakey", "{}", out, sizeof(out)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"plaintext\""));
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/rotation", NULL, out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys",
	    "{\"name\":\"k\",\"type\":\"ec-p256\"}", out, sizeof(out)), 403);
	/* nor in another vault; nobody else at all */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/prod/keys/datakey", "{}", out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "POST", "/v1/vaults/dev/keys/datakey", "{}", out, sizeof(out)), 403);
	CU_ASSERT_PTR_NULL(strstr(out, "plaintext"));
	/* a crypto officer rotates and creates; the user then signs */
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/rotation", NULL, out, sizeof(out)), 202);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/signing-keys",
	    "{\"name\":\"k\",\"type\":\"ec-p256\"}", out, sizeof(out)), 201);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/sign",
	    "{\"message\":\"aGk=\"}", out, sizeof(out)), 200);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/master-keys/1/retire", NULL, out, sizeof(out)), 403);
	/* only the officer destroys a signing key version, and not the newest */
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/signing-keys/k/rotate", NULL, out, sizeof(out)), 201);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/1/destroy", NULL,
	    out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/2/destroy", NULL,
	    out, sizeof(out)), 409);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/1/destroy", NULL,
	    out, sizeof(out)), 200);
	/* only the officer disables and enables one; the user's signing stops
	 * and starts with it */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/2/disable", NULL,
	    out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/2/disable", NULL,
	    out, sizeof(out)), 200);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/sign",
	    "{\"message\":\"aGk=\"}", out, sizeof(out)), 403);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "key_disabled"));
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/2/enable", NULL,
	    out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/2/enable", NULL,
	    out, sizeof(out)), 200);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/sign",
	    "{\"message\":\"aGk=\"}", out, sizeof(out)), 200);

	/* A restore that would disable a signing-key version needs
	 * vault.retire on that key too: secret.restore alone (a secrets
	 * officer) is refused, and nothing is disabled. */
	CU_ASSERT_EQUAL_FATAL(write_policy(
	    "  - name: devs-use-dev-keys\n"
	    "    who: developers\n"
	    "    allow: [crypto-user, secrets-officer]\n"
	    "    vault: dev\n"
	    "  - name: leads-manage-dev-keys\n"
	    "    who: leads\n"
	    "    allow: [crypto-officer, secrets-officer]\n"
	    "    vault: dev\n"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", NULL, NULL), 200);
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/restore",
	    "{\"format\":1,\"records\":[],\"disabled_signing_keys\":[{\"name\":\"k\",\"version\":2}]}",
	    out, sizeof(out)), 403);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "vault.retire"));
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/sign",
	    "{\"message\":\"aGk=\"}", out, sizeof(out)), 200);
	/* the officer may; a mark of a version the token lacks is dropped */
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/restore",
	    "{\"format\":1,\"records\":[],\"disabled_signing_keys\":[{\"name\":\"k\",\"version\":2},"
	    "{\"name\":\"k\",\"version\":7}]}", out, sizeof(out)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"disabled_signing_keys\":1"));
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "POST", "/v1/vaults/dev/signing-keys/k/sign",
	    "{\"message\":\"aGk=\"}", out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/signing-keys/k/versions/2/enable", NULL,
	    out, sizeof(out)), 200);
	/* a backup restores only into the vault it was taken of */
	CU_ASSERT_EQUAL(as_user("kwt-bob", curl, "POST", "/v1/vaults/dev/restore",
	    "{\"format\":1,\"vault\":\"prod\",\"records\":[]}", out, sizeof(out)), 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "backup of vault 'prod'"));

	CU_ASSERT_EQUAL(write_policy(NULL), 0);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", NULL, NULL), 200);
}

/* Explaining a caller described without an executable: a deny rule that
 * names one does not apply (the description's "none", not "unknown"). */
static void
test_explain_without_exe(void)
{
	char *resp = NULL;
	json_t *j;

	CU_ASSERT_EQUAL_FATAL(write_policy("  - name: not-through-curl\n    who: {exe: /usr/bin/curl}\n"
	    "    deny: secret.get\n    vault: prod\n"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", NULL), 200);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/explain",
	    "{\"user\":\"kwt-alice\",\"action\":\"secret.get\",\"vault\":\"prod\",\"name\":\"api/key\"}",
	    &resp), 200);
	j = json_loads(resp ?: "", 0, NULL);
	CU_ASSERT(json_is_true(json_object_get(j, "allow")));
	json_decref(j);
	free(resp);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/explain",
	    "{\"user\":\"kwt-alice\",\"exe\":\"/usr/bin/curl\",\"action\":\"secret.get\","
	    "\"vault\":\"prod\",\"name\":\"api/key\"}", &resp), 200);
	j = json_loads(resp ?: "", 0, NULL);
	CU_ASSERT(json_is_false(json_object_get(j, "allow")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "rule")) ?: "", "not-through-curl");
	json_decref(j);
	free(resp);
	CU_ASSERT_EQUAL(write_policy(NULL), 0);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", NULL), 200);
}

/* A policy takes effect only once the audit log has recorded it: while
 * the log cannot be written, a reload is refused and the old policy
 * decides. */
static void
test_reload_needs_audit(void)
{
	struct rlimit old;
	char *resp = NULL;
	long st;
	int healed = 0;

	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "GET", "/v1/vaults/dev/secrets/none", NULL, NULL, 0), 403);
	CU_ASSERT_EQUAL_FATAL(write_policy("  - name: eve-reads-dev\n    who: { user: kwt-eve }\n"
	    "    allow: secrets-reader\n    vault: dev\n"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_audit_freeze(&dmn, &old), 0);
	st = kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", &resp);
	CU_ASSERT_EQUAL(st, 503);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp ?: "", "audit"));
	free(resp);
	CU_ASSERT_EQUAL_FATAL(prlimit(dmn.pid, RLIMIT_FSIZE, &old, NULL), 0);
	for (int i = 0; i < 100 && !healed; i++) {
		healed = kwt_http(dmn.sock, "GET", "/v1/health", NULL, NULL) == 200;
		if (!healed)
			usleep(50 * 1000);
	}
	CU_ASSERT_FATAL(healed);
	/* the old policy still decides: eve is refused, not told "not found" */
	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "GET", "/v1/vaults/dev/secrets/none", NULL, NULL, 0), 403);
	/* with the log back, the same reload goes through and is recorded */
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", NULL), 200);
	CU_ASSERT_EQUAL(as_user("kwt-eve", curl, "GET", "/v1/vaults/dev/secrets/none", NULL, NULL, 0), 404);
	CU_ASSERT(kwt_tree_contains(dmn.audit, "\"previous_policy_hash\"", strlen("\"previous_policy_hash\"")));

	CU_ASSERT_EQUAL(write_policy(NULL), 0);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", NULL), 200);
}

static void
test_broken_reload_keeps_old(void)
{
	char *resp = NULL;
	char out[4096];
	long st;

	CU_ASSERT_EQUAL_FATAL(write_policy("  - name: typo\n    who: leads\n    allow: secret.gte\n    vault: prod\n"), 0);
	st = kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", &resp);
	CU_ASSERT_EQUAL(st, 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp, "invalid_policy"));
	if (strstr(resp, "policy.yaml:30:12: rules[4].allow") == NULL)
		fprintf(stderr, "reload reply: %s\n", resp);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp, "policy.yaml:30:12: rules[4].allow"));
	CU_ASSERT_PTR_NOT_NULL(strstr(resp, "secret.gte"));
	free(resp);
	/* SIGHUP with the same broken file */
	kill(dmn.pid, SIGHUP);
	usleep(300 * 1000);
	/* the old policy is still in force */
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "GET", "/v1/vaults/prod/secrets/api/key", NULL, out, sizeof(out)), 200);

	/* a good policy without the developers' rule, by SIGHUP */
	{
		char text[4096];
		snprintf(text, sizeof(text),
		    "rules:\n  - name: root-administers\n    who: { user: root }\n    allow: administrator\n    vault: '*'\n");
		CU_ASSERT_EQUAL_FATAL(kwt_write_file(policy_path, text, 0644), 0);
	}
	kill(dmn.pid, SIGHUP);
	for (int i = 0; i < 50; i++) {
		if (as_user("kwt-alice", curl, "GET", "/v1/vaults/prod/secrets/api/key", NULL, NULL, 0) == 403)
			break;
		usleep(100 * 1000);
	}
	CU_ASSERT_EQUAL(as_user("kwt-alice", curl, "GET", "/v1/vaults/prod/secrets/api/key", NULL, out, sizeof(out)), 403);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "GET", "/v1/vaults/prod/secrets/api/key", NULL, NULL), 200);
	/* both reloads are in the audit log */
	CU_ASSERT(kwt_tree_contains(dmn.audit, "\"result\":\"refused\"", strlen("\"result\":\"refused\"")));
	CU_ASSERT(kwt_tree_contains(dmn.audit, "\"policy.reload\"", strlen("\"policy.reload\"")));
	/* and so are the denials, with their rule */
	CU_ASSERT(kwt_tree_contains(dmn.audit, "\"outcome\":\"denied\"", strlen("\"outcome\":\"denied\"")));
	CU_ASSERT_EQUAL(write_policy(NULL), 0);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", NULL), 200);
}

/* A caller in more supplementary groups than the first buffer for
 * SO_PEERGROUPS holds (71: 70 of its own and kwt-clients): whoami lists
 * them all, a rule naming the 70th lets it in, a deny naming it still
 * applies, and explain finds them too.  Past 64 groups the kernel's answer
 * was ERANGE and the groups were unknown: no allow by group matched. */
#define MANY_GROUPS_SH "$(seq -s, -f kwt-g%02g 1 70)"
static void
test_many_groups(void)
{
	char out[16384], *resp = NULL;
	json_t *j, *groups, *g;
	size_t i, n = 0;
	int own = 0;

	CU_ASSERT_EQUAL_FATAL(sh("for g in $(seq -f kwt-g%02g 1 70); do "
	    "getent group $g >/dev/null || groupadd $g || exit 1; done"), 0);
	CU_ASSERT_EQUAL_FATAL(sh("id kwt-many >/dev/null 2>&1 || useradd -M -N -g kwt-clients -G "
	    MANY_GROUPS_SH " -s /usr/sbin/nologin kwt-many"), 0);
	CU_ASSERT_EQUAL_FATAL(write_policy(
	    "  - name: g70-reads-api-key\n"
	    "    who: { group: kwt-g70 }\n"
	    "    allow: secrets-reader\n"
	    "    vault: prod\n"
	    "    names: api/key\n"
	    "  - name: g70-lists-nothing\n"
	    "    who: { group: kwt-g70 }\n"
	    "    deny: secret.list\n"
	    "    vault: prod\n"), 0);
	CU_ASSERT_EQUAL_FATAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", NULL), 200);

	CU_ASSERT_EQUAL(as_user("kwt-many", curl, "GET", "/v1/whoami", NULL, out, sizeof(out)), 200);
	j = json_loads(out, 0, NULL);
	groups = json_object_get(j, "groups");
	CU_ASSERT(json_is_array(groups));
	json_array_foreach(groups, i, g) {
		const char *name = json_string_value(g);
		n++;
		if (name != NULL && strncmp(name, "kwt-g", 5) == 0)
			own++;
	}
	CU_ASSERT_EQUAL(n, 71);
	CU_ASSERT_EQUAL(own, 70);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"kwt-g70\""));
	json_decref(j);

	CU_ASSERT_EQUAL(as_user("kwt-many", curl, "GET", "/v1/vaults/prod/secrets/api/key", NULL,
	    out, sizeof(out)), 200);
	CU_ASSERT_EQUAL(as_user("kwt-many", curl, "GET", "/v1/vaults/prod/secrets", NULL,
	    out, sizeof(out)), 403);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "g70-lists-nothing"));
	/* explain gives a named user all the groups a login would */
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/explain",
	    "{\"user\":\"kwt-many\",\"action\":\"secret.get\",\"vault\":\"prod\",\"name\":\"api/key\"}",
	    &resp), 200);
	j = json_loads(resp ?: "", 0, NULL);
	CU_ASSERT(json_is_true(json_object_get(j, "allow")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "rule")) ?: "", "g70-reads-api-key");
	json_decref(j);
	free(resp);

	CU_ASSERT_EQUAL(write_policy(NULL), 0);
	CU_ASSERT_EQUAL(kwt_http(dmn.sock, "POST", "/v1/policy/reload", "{}", NULL), 200);
	sh("userdel kwt-many 2>/dev/null; for g in $(seq -f kwt-g%02g 1 70); do groupdel $g 2>/dev/null; done; true");
}

/* Users and groups whose entries are larger than 4 KiB (a group with a long
 * member list, an LDAP or sssd entry): libkwslowpw.so makes the daemon's
 * getpwuid_r, getpwnam_r, getgrgid_r and getgrnam_r answer ERANGE to any
 * buffer under 16 KiB.  A member of kwt-devs is let in by the group rule,
 * and whoami and the audit event name the caller, its group and its
 * supplementary groups; explaining by user and group name finds the rule,
 * and a name that does not exist is still told apart.  With lookups into
 * fixed 4 KiB buffers the names came out unknown (null, or gids in
 * whoami's groups), and explain refused the names as not existing. */
static void
test_big_name_entries(void)
{
	struct kwt_daemon d2;
	struct group *clients = getgrnam("kwt-clients");
	char lib[600], pol[320], extra[700], out[4096], rule[128], *resp = NULL;
	const char *env[] = { "KW_NSS_MIN_BUF", "16384", NULL };
	json_t *j, *g;
	size_t i;
	int started, devs = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(clients);
	CU_ASSERT_FATAL(kwt_shim_lib("libkwslowpw.so", lib, sizeof(lib)) == 0);
	snprintf(pol, sizeof(pol), "%s/bignss.yaml", bindir);
	CU_ASSERT_FATAL(kwt_write_file(pol, "version: 1\nrules:\n"
	    "  - name: root-administers\n    who: { user: root }\n    allow: administrator\n"
	    "    vault: '*'\n"
	    "  - name: devs-read-api-key\n    who: { group: kwt-devs }\n    allow: secrets-reader\n"
	    "    vault: bignss\n    names: api/key\n", 0644) == 0);
	snprintf(extra, sizeof(extra), "policy: %s\nvaults:\n  - name: bignss\n", pol);
	started = kwt_daemon_start_preloaded(&d2, &tok, lib, env, NULL, extra);
	CU_ASSERT_EQUAL_FATAL(started, 0);
	/* Let kwt-clients reach the socket, as kwt_daemon_start_group does. */
	CU_ASSERT_FATAL(chmod(d2.dir, 0711) == 0 && chown(d2.sock, (uid_t)-1, clients->gr_gid) == 0);
	CU_ASSERT_EQUAL_FATAL(kwt_http(d2.sock, "PUT", "/v1/vaults/bignss/secrets/api/key",
	    "{\"value\":\"big-entries\"}", NULL), 201);

	/* A member of kwt-devs reads it, and the audit event names it. */
	CU_ASSERT_EQUAL(as_user_at(d2.sock, "kwt-alice", curl, "GET", "/v1/vaults/bignss/secrets/api/key",
	    NULL, out, sizeof(out)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "big-entries"));
	CU_ASSERT(kwt_tree_contains(d2.audit, "\"user\":\"kwt-alice\"", strlen("\"user\":\"kwt-alice\"")));
	CU_ASSERT(kwt_tree_contains(d2.audit, "\"group\":\"kwt-clients\"",
	    strlen("\"group\":\"kwt-clients\"")));
	/* whoami names it, its group and its supplementary groups. */
	CU_ASSERT_EQUAL(as_user_at(d2.sock, "kwt-alice", curl, "GET", "/v1/whoami", NULL, out,
	    sizeof(out)), 200);
	j = json_loads(out, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "user")) ?: "", "kwt-alice");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "group")) ?: "", "kwt-clients");
	json_array_foreach(json_object_get(j, "groups"), i, g) {
		CU_ASSERT(json_is_string(g));
		devs += strcmp(json_string_value(g) ?: "", "kwt-devs") == 0;
	}
	CU_ASSERT_EQUAL(devs, 1);
	json_decref(j);

	/* Explaining by names: the user (and the groups a login gives it) ... */
	CU_ASSERT_EQUAL(explain_at(d2.sock, "{\"user\":\"kwt-alice\",\"action\":\"secret.get\","
	    "\"vault\":\"bignss\",\"name\":\"api/key\"}", rule, sizeof(rule)), 1);
	CU_ASSERT_STRING_EQUAL(rule, "devs-read-api-key");
	/* ... a group and supplementary groups ... */
	CU_ASSERT_EQUAL(explain_at(d2.sock, "{\"uid\":4242,\"group\":\"kwt-clients\","
	    "\"groups\":[\"kwt-devs\"],\"action\":\"secret.get\",\"vault\":\"bignss\","
	    "\"name\":\"api/key\"}", rule, sizeof(rule)), 1);
	CU_ASSERT_STRING_EQUAL(rule, "devs-read-api-key");
	/* ... and a group that does not exist is still not found. */
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "POST", "/v1/policy/explain",
	    "{\"uid\":4242,\"groups\":[\"kwt-no-such-group\"],"
	    "\"action\":\"secret.get\",\"vault\":\"bignss\",\"name\":\"api/key\"}", &resp), 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp ?: "", "no group named 'kwt-no-such-group'"));
	free(resp);
	kwt_daemon_free(&d2);
}

/* A daemon that runs as its own user (nobody here, as keywardend.service
 * runs it as keywarden) cannot read /proc/PID/exe of another user's
 * process unless it holds CAP_SYS_PTRACE: the billing service's rule by
 * executable then never lets it in, and the daemon says so in its log at
 * load.  Given the capability (ambient, as the unit file's commented lines
 * do), the same rule matches and nothing is said. */
static void
test_exe_rules_need_ptrace(void)
{
	static const char *const runs[] = {
		"--reuid=65534 --regid=65534 --groups=kwt-clients",
		"--reuid=65534 --regid=65534 --groups=kwt-clients --inh-caps=+sys_ptrace "
		    "--ambient-caps=+sys_ptrace",
	};
	const char *p = "/v1/vaults/prod/secrets/db/billing/connection";
	char extra[700], out[4096], status[320], *text;
	struct kwt_token t2;
	struct kwt_daemon d2;
	json_t *j;
	size_t len;
	int i, r;

	for (i = 0; i < 2; i++) {
		memset(&d2, 0, sizeof(d2));
		CU_ASSERT_EQUAL_FATAL(kwt_token_new(&t2, "kw-nobody"), 0);
		snprintf(extra, sizeof(extra), "policy: %s\nvaults:\n  - name: prod\n", policy_path);
		r = kwt_daemon_start_as(&d2, &t2, runs[i], 65534, 65534, "kwt-clients", extra);
		setenv("SOFTHSM2_CONF", tok.conf, 1);   /* back to the suite's token */
		CU_ASSERT_EQUAL(r, 0);
		if (r != 0)
			goto next;
		/* It runs as nobody. */
		snprintf(status, sizeof(status), "/proc/%ld/status", (long)d2.pid);
		{
			FILE *f = fopen(status, "r");
			len = f != NULL ? fread(out, 1, sizeof(out) - 1, f) : 0;
			out[len] = '\0';
			if (f != NULL)
				fclose(f);
			CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nUid:\t65534\t65534\t65534\t65534\n"));
		}
		CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/prod/secrets/db/billing/connection",
		    "{\"value\":\"postgres://billing\"}", NULL), 201);
		/* whoami: the executable, or none */
		CU_ASSERT_EQUAL(as_user_at(d2.sock, "kwt-billing", billing_exe, "GET", "/v1/whoami", NULL,
		    out, sizeof(out)), 200);
		j = json_loads(out, 0, NULL);
		CU_ASSERT_PTR_NOT_NULL(j);
		if (i == 0) {
			CU_ASSERT(json_is_null(json_object_get(j, "exe")));
		} else {
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "exe")) ?: "",
			    billing_exe);
		}
		json_decref(j);
		/* the rule by executable: never, or as for a root daemon */
		CU_ASSERT_EQUAL(as_user_at(d2.sock, "kwt-billing", billing_exe, "GET", p, NULL, out,
		    sizeof(out)), i == 0 ? 403 : 200);
		CU_ASSERT((strstr(out, "postgres://billing") != NULL) == (i == 1));
		/* what the log says at load */
		text = kwt_read_file(d2.log, &len);
		CU_ASSERT_PTR_NOT_NULL(text);
		if (text != NULL && i == 0) {
			CU_ASSERT_PTR_NOT_NULL(strstr(text, "policy: 1 rule names callers by executable "
			    "(the first: rule 'billing-reads-db' at line "));
			CU_ASSERT_PTR_NOT_NULL(strstr(text, "but keywardend (uid 65534) lacks "
			    "CAP_SYS_PTRACE"));
		} else if (text != NULL) {
			CU_ASSERT_PTR_NULL(strstr(text, "CAP_SYS_PTRACE"));
		}
		free(text);
next:
		kwt_daemon_free(&d2);
		kwt_token_free(&t2);
	}
}

/* A user and a group whose names are longer than 63 bytes, as a directory
 * server may have them (sssd's user@domain; useradd makes at most 32):
 * libkwslowpw.so gives this test's uid and gid such names, and their
 * lookups by name these ids.  whoami, the audit events and a denial's
 * message carry them whole, and a policy that names them lets the caller
 * do what it allows (it decides by the ids it resolved the names to at
 * load, so that part never depended on the length).  The names were cut to
 * 63 bytes: whoami, the audit and the denial named another user. */
static void
test_long_names(void)
{
	struct kwt_daemon d2;
	char lib[600], pol[320], extra[700], uid[32], gid[32], user[200], group[200];
	char text[1400], want[400], *resp = NULL;
	json_t *j, *g;
	long st;
	size_t i;
	int started, found = 0;

	snprintf(user, sizeof(user), "kwt-%0120d@ad.corp.example.com", 0);
	snprintf(group, sizeof(group), "kwt-group-%0100d@ad.corp.example.com", 0);
	memset(user + 4, 'u', 120);
	memset(group + 10, 'g', 100);
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	snprintf(gid, sizeof(gid), "%u", (unsigned)getgid());
	CU_ASSERT_FATAL(kwt_shim_lib("libkwslowpw.so", lib, sizeof(lib)) == 0);
	snprintf(pol, sizeof(pol), "%s/longnames.yaml", bindir);
	snprintf(text, sizeof(text), "version: 1\nrules:\n"
	    "  - name: long-user-manages-api\n    who: { user: \"%s\" }\n    allow: secrets-officer\n"
	    "    vault: longname\n    names: \"api/**\"\n"
	    "  - name: long-group-reads-db\n    who: { group: \"%s\" }\n    allow: secret.get\n"
	    "    vault: longname\n    names: db/x\n", user, group);
	CU_ASSERT_FATAL(kwt_write_file(pol, text, 0644) == 0);
	snprintf(extra, sizeof(extra), "policy: %s\nvaults:\n  - name: longname\n", pol);
	{
		const char *env[] = { "KW_NSS_NAME_UID", uid, "KW_NSS_USER_NAME", user,
		    "KW_NSS_NAME_GID", gid, "KW_NSS_GROUP_NAME", group, NULL };
		started = kwt_daemon_start_preloaded(&d2, &tok, lib, env, NULL, extra);
	}
	CU_ASSERT_EQUAL_FATAL(started, 0);

	/* The policy's rules for the long names let this caller in ... */
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/longname/secrets/api/key",
	    "{\"value\":\"long-names\"}", NULL), 201);
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/vaults/longname/secrets/api/key", NULL, NULL), 200);
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/vaults/longname/secrets/db/x", NULL, NULL), 404);
	/* ... and a denial names the user whole. */
	j = kwt_http_json(d2.sock, "GET", "/v1/vaults/longname/secrets/other/x", NULL, &st);
	CU_ASSERT_EQUAL(st, 403);
	snprintf(want, sizeof(want), "%s may not secret.get in vault 'longname'", user);
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(json_object_get(j, "error"),
	    "message")) ?: "", want));
	json_decref(j);

	/* whoami names the user, its group and that group among its
	 * supplementary groups (if it is one of them), whole. */
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "GET", "/v1/whoami", NULL, &resp), 200);
	j = json_loads(resp ?: "", 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "user")) ?: "", user);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "group")) ?: "", group);
	json_array_foreach(json_object_get(j, "groups"), i, g)
		found += strcmp(json_string_value(g) ?: "", group) == 0;
	{
		gid_t own[256];
		int n = getgroups(256, own), in = 0;

		for (int k = 0; k < n; k++)
			in |= own[k] == getgid();
		CU_ASSERT_EQUAL(found, in);
	}
	json_decref(j);
	free(resp);

	/* The audit events name them whole. */
	snprintf(want, sizeof(want), "\"user\":\"%s\"", user);
	CU_ASSERT(kwt_tree_contains(d2.audit, want, strlen(want)));
	snprintf(want, sizeof(want), "\"group\":\"%s\"", group);
	CU_ASSERT(kwt_tree_contains(d2.audit, want, strlen(want)));
	kwt_daemon_free(&d2);
	unlink(pol);
}

/* Names that are not UTF-8 (a directory server's Latin-1, a cut byte):
 * whoami answers with them, such bytes shown as '?', and the audit events
 * name the caller as well.  jansson refused such a name, and whoami's
 * reply came out empty. */
static void
test_names_not_utf8(void)
{
	struct kwt_daemon d2;
	char lib[600], uid[32], gid[32], *resp = NULL;
	const char *user = "kwt-caf\xe9-\xff", *group = "kwt-grp-\xc3";
	json_t *j;
	long st;
	int started;

	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	snprintf(gid, sizeof(gid), "%u", (unsigned)getgid());
	CU_ASSERT_FATAL(kwt_shim_lib("libkwslowpw.so", lib, sizeof(lib)) == 0);
	{
		const char *env[] = { "KW_NSS_NAME_UID", uid, "KW_NSS_USER_NAME", user,
		    "KW_NSS_NAME_GID", gid, "KW_NSS_GROUP_NAME", group, NULL };
		started = kwt_daemon_start_preloaded(&d2, &tok, lib, env, NULL,
		    "vaults:\n  - name: latin\n");
	}
	CU_ASSERT_EQUAL_FATAL(started, 0);
	st = kwt_http(d2.sock, "GET", "/v1/whoami", NULL, &resp);
	CU_ASSERT_EQUAL(st, 200);
	j = json_loads(resp ?: "", 0, NULL);
	CU_ASSERT_PTR_NOT_NULL(j);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "user")) ?: "", "kwt-caf?-?");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "group")) ?: "", "kwt-grp-?");
	json_decref(j);
	free(resp);
	CU_ASSERT_EQUAL(kwt_http(d2.sock, "PUT", "/v1/vaults/latin/secrets/x", "{\"value\":\"v\"}",
	    NULL), 201);
	CU_ASSERT(kwt_tree_contains(d2.audit, "\"user\":\"kwt-caf\\ufffd-\\ufffd\"",
	    strlen("\"user\":\"kwt-caf\\ufffd-\\ufffd\"")));
	kwt_daemon_free(&d2);
}

static void
test_check_policy_cli(void)
{
	char out[4096], bad[320];
	char *argv[] = { dmn.exe, "--check-policy", policy_path, NULL };
	char *argv2[] = { dmn.exe, "--check-policy", bad, NULL };

	CU_ASSERT_EQUAL(kwt_run(argv, out, sizeof(out)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, ": ok"));
	snprintf(bad, sizeof(bad), "%s/bad.yaml", bindir);
	CU_ASSERT_EQUAL_FATAL(kwt_write_file(bad,
	    "rules:\n  - name: a\n    who: { group: kwt-no-such-group }\n    allow: secrets-raeder\n    vault: prod\n", 0644), 0);
	CU_ASSERT_EQUAL(kwt_run(argv2, out, sizeof(out)), 1);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "whoami is what the kernel says", test_whoami_is_the_kernel_view },
		{ "developers read the prod API key, only leads change it", test_devs_read_leads_write },
		{ "only the billing service reads the connection string", test_only_billing_reads_db },
		{ "explain and who-can", test_explain_and_who_can },
		{ "keywarden policy explain, who-can, check", test_cli_policy },
		{ "crypto users use keys, crypto officers rotate and create them", test_key_roles },
		{ "a reload the audit log cannot record keeps the old policy", test_reload_needs_audit },
		{ "explaining a caller described without an executable", test_explain_without_exe },
		{ "a broken reload keeps the old policy", test_broken_reload_keeps_old },
		{ "a caller in 71 groups: all of them count", test_many_groups },
		{ "user and group entries over 4 KiB", test_big_name_entries },
		{ "user and group names over 63 bytes, whole", test_long_names },
		{ "user and group names that are not UTF-8", test_names_not_utf8 },
		{ "keywardend --check-policy", test_check_policy_cli },
		{ "rules by executable in a daemon that is not root", test_exe_rules_need_ptrace },
		{ NULL, NULL }
	};

	return kwt_cunit_main("permissions end to end, real users and groups",
	    suite_init, suite_clean, cases);
}
