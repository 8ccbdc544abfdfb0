/* Unit tests for daemon/cfg.c: the configuration file and its errors. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "kw_error.h"
#include "daemon/cfg.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

static char dir[256];

static int
write_conf(const char *name, const char *text, int mode, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	return kwt_write_file(path, text, mode);
}

/* Load text; return the number of errors and put them in *errs. */
static int
load(const char *text, struct config **c, struct config_errors *errs)
{
	char path[512];
	int r;

	CU_ASSERT_EQUAL_FATAL(write_conf("c.yaml", text, 0600, path, sizeof(path)), 0);
	*c = NULL;
	r = config_load(path, c, errs);
	if (r == 0)
		CU_ASSERT_PTR_NOT_NULL(*c);
	return (int)errs->n;
}

static int
has_error(const struct config_errors *e, const char *needle)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->lines[i], needle) != NULL)
			return 1;
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "  got: %s\n", e->lines[i]);
	return 0;
}

#define GOOD \
	"socket:\n  path: /run/kw.sock\n" \
	"token:\n  module: /bin/sh\n  token: kw\n  pin_file: /etc/kw/pin\n" \
	"state_dir: /var/lib/kw\n" \
	"vaults:\n  - name: prod\n    purge_protection: true\n    retention_days: 30\n  - name: dev\n"

static void
test_good(void)
{
	struct config *c;
	struct config_errors e;

	CU_ASSERT_EQUAL(load(GOOD, &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_STRING_EQUAL(c->socket_path, "/run/kw.sock");
	CU_ASSERT_EQUAL(c->socket_mode, 0660);
	CU_ASSERT_STRING_EQUAL(c->store_url, "sqlite:/var/lib/kw/keywarden.db");
	CU_ASSERT_STRING_EQUAL(c->audit_dir, "/var/lib/kw/audit");
	CU_ASSERT_EQUAL(c->nvaults, 2);
	CU_ASSERT_EQUAL(c->vaults[0].purge_protection, 1);
	CU_ASSERT_EQUAL(c->vaults[0].retention_days, 30);
	CU_ASSERT_EQUAL(c->vaults[1].retention_days, 7);
	CU_ASSERT_PTR_NOT_NULL(config_vault_find(c, "dev"));
	CU_ASSERT_PTR_NULL(config_vault_find(c, "nope"));
	CU_ASSERT_EQUAL(c->audit_preallocate, 1);
	CU_ASSERT_EQUAL(c->audit_stream_max_lag, 200000);   /* audit.stream_max_lag's default */
	{
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		CU_ASSERT_EQUAL(c->event_loops, n < 1 ? 1u : n > 8 ? 8u : (unsigned)n);
	}
	config_free(c);
	/* limits.event_loops: 1..64 */
	CU_ASSERT_EQUAL(load(GOOD "limits:\n  event_loops: 3\n", &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->event_loops, 3);
	config_free(c);
	CU_ASSERT_EQUAL(load(GOOD "limits:\n  event_loops: 0\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "limits.event_loops"));
	config_errors_free(&e);
	/* limits.identity_workers: 1..256, default 4 */
	CU_ASSERT_EQUAL(load(GOOD, &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->identity_workers, 4);
	config_free(c);
	CU_ASSERT_EQUAL(load(GOOD "limits:\n  identity_workers: 1\n", &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->identity_workers, 1);
	config_free(c);
	CU_ASSERT_EQUAL(load(GOOD "limits:\n  identity_workers: 256\n", &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->identity_workers, 256);
	config_free(c);
	CU_ASSERT_EQUAL(load(GOOD "limits:\n  identity_workers: 0\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "c.yaml:14:21: limits.identity_workers: \"0\" is not a whole number "
	    "from 1 to 256"));
	config_errors_free(&e);
	CU_ASSERT_EQUAL(load(GOOD "limits:\n  identity_workers: 257\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "limits.identity_workers: \"257\" is not a whole number from 1 to 256"));
	config_errors_free(&e);
	CU_ASSERT_EQUAL(load(GOOD "limits:\n  identity_workers: many\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "limits.identity_workers: expected a whole number from 1 to 256"));
	config_errors_free(&e);
	/* audit.preallocate: a boolean, off on request */
	CU_ASSERT_EQUAL(load(GOOD "audit:\n  preallocate: false\n", &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->audit_preallocate, 0);
	config_free(c);
	CU_ASSERT_EQUAL(load(GOOD "audit:\n  preallocate: sometimes\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "audit.preallocate"));
	config_errors_free(&e);
	/* audit.stream_max_lag: 100..100000000 (the default is checked above) */
	CU_ASSERT_EQUAL(load(GOOD "audit:\n  stream_max_lag: 1000\n", &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->audit_stream_max_lag, 1000);
	config_free(c);
	CU_ASSERT_EQUAL(load(GOOD "audit:\n  stream_max_lag: 10\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "audit.stream_max_lag"));
	config_errors_free(&e);
}

static void
test_env(void)
{
	struct config *c;
	struct config_errors e;

	setenv("KWT_SOCK_DIR", "/tmp/x", 1);
	unsetenv("KWT_UNSET_VAR");
	CU_ASSERT_EQUAL(load(
	    "socket:\n  path: ${KWT_SOCK_DIR}/kw.sock\n"
	    "token:\n  module: /bin/sh\n  token: kw\n  pin_file: ${KWT_UNSET_VAR}/pin\n"
	    "state_dir: /var/lib/kw\nvaults:\n  - name: a\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "c.yaml:6:13: token.pin_file: environment variable KWT_UNSET_VAR is not set"));
	config_errors_free(&e);
	setenv("KWT_UNSET_VAR", "/etc", 1);
	CU_ASSERT_EQUAL(load(
	    "socket:\n  path: ${KWT_SOCK_DIR}/kw.sock\n"
	    "token:\n  module: /bin/sh\n  token: kw\n  pin_file: ${KWT_UNSET_VAR}/pin\n"
	    "state_dir: /var/lib/kw\nvaults:\n  - name: a\n", &c, &e), 0);
	CU_ASSERT_STRING_EQUAL(c->socket_path, "/tmp/x/kw.sock");
	CU_ASSERT_STRING_EQUAL(c->pin_file, "/etc/pin");
	config_free(c);
}

static void
test_every_error_with_position(void)
{
	struct config *c;
	struct config_errors e;
	int n = load(
	    "socket:\n"
	    "  path: relative.sock\n"            /* 2:9 */
	    "  mode: \"0666\"\n"                 /* 3:9 */
	    "  colour: blue\n"                   /* 4:3 */
	    "token:\n"
	    "  module: /no/such/module.so\n"     /* 6:11 */
	    "  token: kw\n"
	    "  pin_file: /etc/kw/pin\n"
	    "  sessions: many\n"                 /* 9:13 */
	    "state_dir: /var/lib/kw\n"
	    "vaults:\n"
	    "  - name: prod\n"
	    "  - name: prod\n"                   /* 13:5 */
	    "  - name: \"bad name\"\n"           /* 14:11 */
	    "    purge_protection: maybe\n"      /* 15:23 */
	    "limits:\n"
	    "  max_body: 10 parsecs\n"           /* 17:13 */
	    "log:\n"
	    "  level: loud\n",                   /* 19:10 */
	    &c, &e);

	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT(n >= 9);
	CU_ASSERT(has_error(&e, ":2:9: socket.path: \"relative.sock\" must be an absolute path"));
	CU_ASSERT(has_error(&e, ":3:9: socket.mode: mode 0666 lets every local user connect"));
	CU_ASSERT(has_error(&e, ":4:3: socket.colour: unknown key in socket"));
	CU_ASSERT(has_error(&e, ":6:11: token.module: PKCS#11 module /no/such/module.so: No such file"));
	CU_ASSERT(has_error(&e, ":9:13: token.sessions: expected a whole number from 1 to 256"));
	CU_ASSERT(has_error(&e, ":13:5: vaults[1]: vault \"prod\" is already declared at line 12"));
	CU_ASSERT(has_error(&e, ":14:11: vaults[2].name: a vault name is"));
	CU_ASSERT(has_error(&e, ":15:23: vaults[2].purge_protection: expected true or false"));
	CU_ASSERT(has_error(&e, ":17:13: limits.max_body: expected a size"));
	CU_ASSERT(has_error(&e, ":19:10: log.level: expected one of error, warning"));
	config_errors_free(&e);
}

static void
test_required_and_syntax(void)
{
	struct config *c;
	struct config_errors e;

	CU_ASSERT(load("log:\n  level: info\n", &c, &e) >= 4);
	CU_ASSERT(has_error(&e, "socket.path: is required"));
	CU_ASSERT(has_error(&e, "token.module: is required"));
	CU_ASSERT(has_error(&e, "state_dir: is required"));
	config_errors_free(&e);

	CU_ASSERT_EQUAL(load("socket: [unclosed\n", &c, &e), 1);
	CU_ASSERT(has_error(&e, "YAML syntax error"));
	config_errors_free(&e);

	CU_ASSERT_EQUAL(load("socket:\n  path: /a\nsocket:\n  path: /b\n", &c, &e) >= 1, 1);
	CU_ASSERT(has_error(&e, ":3:1: socket: duplicate key"));
	config_errors_free(&e);

	CU_ASSERT_EQUAL(load("", &c, &e), 1);
	CU_ASSERT(has_error(&e, "empty"));
	config_errors_free(&e);
}

static void
test_world_writable_refused(void)
{
	char path[512];
	struct config *c = NULL;
	struct config_errors e;

	CU_ASSERT_EQUAL_FATAL(write_conf("ww.yaml", GOOD, 0666, path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(config_load(path, &c, &e), KW_E_CONFIG);
	CU_ASSERT(has_error(&e, "writable by every user"));
	config_errors_free(&e);
	/* by its group too: it names the module the daemon loads */
	CU_ASSERT_EQUAL_FATAL(write_conf("gw.yaml", GOOD, 0664, path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(config_load(path, &c, &e), KW_E_CONFIG);
	CU_ASSERT(has_error(&e, "writable by its group"));
	config_errors_free(&e);
	CU_ASSERT_EQUAL(config_load("/no/such/file.yaml", &c, &e), KW_E_CONFIG);
	CU_ASSERT(has_error(&e, "/no/such/file.yaml: cannot open: No such file"));
	config_errors_free(&e);
}

/* A file its owner could rewrite: only the daemon's user and root may own
 * it, whatever its mode.  (Making a file another user owns needs root; CI
 * runs as root.) */
static void
test_owner_refused(void)
{
	char path[512], want[1200];
	struct config *c = NULL;
	struct config_errors e;

	CU_ASSERT_EQUAL_FATAL(write_conf("own.yaml", GOOD, 0644, path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(config_load(path, &c, &e), 0);
	config_free(c);
	c = NULL;
	if (geteuid() != 0) {
		fprintf(stderr, "\n  not root: a file of another user not tried\n");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(chown(path, 4321, 4321), 0);
	CU_ASSERT_EQUAL(config_load(path, &c, &e), KW_E_CONFIG);
	CU_ASSERT_PTR_NULL(c);
	snprintf(want, sizeof(want), "%s: the file is owned by uid 4321, neither the "
	    "daemon's user (uid 0) nor root: its owner could rewrite it; chown root %s",
	    path, path);
	CU_ASSERT(has_error(&e, want));
	config_errors_free(&e);
	CU_ASSERT_EQUAL_FATAL(chown(path, 0, 0), 0);
	CU_ASSERT_EQUAL(config_load(path, &c, &e), 0);
	config_free(c);
}

/* For a daemon that will run as another user (keywardend --check-config
 * run as root): a file of that user's, or root's, is taken; one of a
 * third user's is refused naming the daemon's user, and one its group may
 * write is refused whoever owns it. */
static void
test_owner_for_another_user(void)
{
	char path[512], want[1200];
	struct config *c = NULL;
	struct config_errors e;

	if (geteuid() != 0) {
		fprintf(stderr, "\n  not root: a file of another user not tried\n");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(write_conf("as.yaml", GOOD, 0600, path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(config_load_as(path, 4321, &c, &e), 0);   /* root's */
	config_free(c);
	c = NULL;
	CU_ASSERT_EQUAL_FATAL(chown(path, 4321, 4321), 0);
	CU_ASSERT_EQUAL(config_load_as(path, 4321, &c, &e), 0);
	CU_ASSERT_PTR_NOT_NULL(c);
	config_free(c);
	c = NULL;
	CU_ASSERT_EQUAL(config_load_as(path, 5555, &c, &e), KW_E_CONFIG);
	CU_ASSERT_PTR_NULL(c);
	snprintf(want, sizeof(want), "%s: the file is owned by uid 4321, neither the "
	    "daemon's user (uid 5555) nor root", path);
	CU_ASSERT(has_error(&e, want));
	config_errors_free(&e);
	CU_ASSERT_EQUAL_FATAL(chmod(path, 0660), 0);
	CU_ASSERT_EQUAL(config_load_as(path, 4321, &c, &e), KW_E_CONFIG);
	CU_ASSERT(has_error(&e, "writable by its group (mode 0660)"));
	config_errors_free(&e);
}

static void
test_sizes_durations(void)
{
	uint64_t v;

	CU_ASSERT_EQUAL(config_parse_size("64MiB", &v), 0);
	CU_ASSERT_EQUAL(v, 64ULL << 20);
	CU_ASSERT_EQUAL(config_parse_size("1k", &v), 0);
	CU_ASSERT_EQUAL(v, 1024);
	CU_ASSERT_NOT_EQUAL(config_parse_size("1X", &v), 0);
	CU_ASSERT_NOT_EQUAL(config_parse_size("-1", &v), 0);
	CU_ASSERT_NOT_EQUAL(config_parse_size("99999999999999999999G", &v), 0);
	CU_ASSERT_EQUAL(config_parse_duration("7d", &v), 0);
	CU_ASSERT_EQUAL(v, 7 * 86400);
	CU_ASSERT_EQUAL(config_parse_duration("30", &v), 0);
	CU_ASSERT_EQUAL(v, 30);
	CU_ASSERT_NOT_EQUAL(config_parse_duration("soon", &v), 0);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "a good file", test_good },
		{ "environment variables", test_env },
		{ "every error, with file:line:col and key path", test_every_error_with_position },
		{ "required keys, syntax errors, duplicates, empty", test_required_and_syntax },
		{ "a world-writable file is refused", test_world_writable_refused },
		{ "a file of another user is refused", test_owner_refused },
		{ "checked for another user, a file of that user's is taken", test_owner_for_another_user },
		{ "sizes and durations", test_sizes_durations },
		{ NULL, NULL }
	};
	int r;

	if (kwt_tmpdir(dir, sizeof(dir), "kwtest-config") != 0)
		return 99;
	r = kwt_cunit_main("configuration", NULL, NULL, cases);
	kwt_rmtree(dir);
	return r;
}
