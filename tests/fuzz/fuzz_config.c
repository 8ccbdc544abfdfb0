/*
 * fuzz_config.c - keywardend's configuration parser (daemon/cfg.h,
 * config_load) on arbitrary bytes as the configuration file.
 *
 * config_load only reads: the file, the environment (${NAME}), whether the
 * module file is readable (access(2)) and whether socket.group exists
 * (getgrnam).  No token, socket or store is touched, so it is called as
 * the daemon calls it, on a private file (mode 0600, owned by the user
 * running: the owner and mode checks pass) rewritten at each run.  The one
 * name lookup is answered here without NSS (getgrnam below).
 *
 * A refusal must list its errors, each "file:..."; an accepted file must
 * give a configuration whose required fields are set and within the limits
 * keywarden.conf(5) gives.  config_parse_size and config_parse_duration
 * also get the whole input as a string.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_error.h"
#include "daemon/cfg.h"
#include "tests/fuzz/fuzz.h"

KWF_CORPUS("config");

/* socket.group without NSS: every group exists but those whose name starts
 * with "missing".  This program's definition is the one config_load calls. */
struct group *
getgrnam(const char *name)
{
	static char passwd[] = "x";
	static char *members[] = { NULL };
	static struct group g;

	if (strncmp(name, "missing", 7) == 0) {
		errno = 0;
		return NULL;
	}
	g.gr_name = (char *)name;
	g.gr_passwd = passwd;
	g.gr_gid = 4242;
	g.gr_mem = members;
	return &g;
}

static int
abs_path(const char *s)
{
	return s != NULL && s[0] == '/';
}

static int
vault_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= CONFIG_VAULT_MAX && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static void
check_config(const struct config *c, const char *path)
{
	kwf_check(c->path != NULL && strcmp(c->path, path) == 0);
	kwf_check(abs_path(c->socket_path) && strlen(c->socket_path) < 108);
	kwf_check((c->socket_mode & ~0770u) == 0);
	kwf_check(abs_path(c->token_module));
	kwf_check(c->token != NULL && c->token[0] != '\0');
	kwf_check(abs_path(c->pin_file));
	kwf_check(c->token_sessions <= 256);
	kwf_check(c->wrap != NULL && (strcmp(c->wrap, "auto") == 0 ||
	    strcmp(c->wrap, "aes-gcm") == 0 || strcmp(c->wrap, "aes-kwp") == 0 ||
	    strcmp(c->wrap, "aes-ecb-hmac") == 0));
	kwf_check(abs_path(c->state_dir));
	kwf_check(c->store_url != NULL && c->store_url[0] != '\0');
	kwf_check(c->audit_dir != NULL && c->audit_dir[0] == '/');
	kwf_check(c->audit_segment_bytes >= 4096 && c->audit_segment_bytes <= (1ULL << 40));
	kwf_check(c->audit_segment_seconds >= 60);
	kwf_check(c->audit_anchor_seconds >= 1 && c->audit_anchor_seconds <= 86400);
	kwf_check(c->audit_timeout_ms >= 10 && c->audit_timeout_ms <= 600000);
	kwf_check(c->audit_group_commit_us == -1 ||
	    (c->audit_group_commit_us >= 0 && c->audit_group_commit_us <= 100000));
	kwf_check(c->audit_stream_max_lag >= 100);
	kwf_check(c->policy_file == NULL || abs_path(c->policy_file));
	kwf_check(c->nvaults >= 1 && c->vaults != NULL);
	for (size_t i = 0; i < c->nvaults; i++) {
		kwf_check(vault_name_ok(c->vaults[i].name));
		kwf_check(c->vaults[i].retention_days <= 3650 && c->vaults[i].rotation_days <= 3650);
		kwf_check(c->vaults[i].line >= 1);
		kwf_check(config_vault_find(c, c->vaults[i].name) == &c->vaults[i]);
	}
	kwf_check(c->workers >= 1 && c->workers <= 256);
	kwf_check(c->write_workers >= 1 && c->write_workers <= 256);
	kwf_check(c->identity_workers >= 1 && c->identity_workers <= 256);
	kwf_check(c->event_loops >= 1 && c->event_loops <= 64);
	kwf_check(c->max_body >= 1024 && c->max_body <= (64ULL << 20));
	kwf_check(c->max_value >= 1 && c->max_value <= (16ULL << 20));
	kwf_check(c->max_connections >= 1 && c->max_connections <= 100000);
	kwf_check(c->header_timeout_s >= 1 && c->header_timeout_s <= 3600);
	kwf_check(c->request_timeout_ms >= 10 && c->request_timeout_ms <= 600000);
}

/* The size and duration parsers on the input as one string. */
static void
check_units(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	uint64_t v;

	if (s == NULL)
		kwf_fail("out of memory");
	memcpy(s, data, size);
	s[size] = '\0';
	if (config_parse_size(s, &v) == 0)
		kwf_check(s[0] >= '0' && s[0] <= '9');
	if (config_parse_duration(s, &v) == 0)
		kwf_check(s[0] >= '0' && s[0] <= '9');
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[512];
	struct config *c = NULL;
	struct config_errors errs;
	int r;

	if (path[0] == '\0') {
		const char *t = kwf_tmpdir();
		char longv[3000];

		if (t == NULL)
			kwf_fail("no temporary directory");
		snprintf(path, sizeof(path), "%s/keywarden.yaml", t);
		/* What ${NAME} may name: a set variable, a very long one, and
		 * one that is surely not set. */
		memset(longv, 'x', sizeof(longv) - 1);
		longv[sizeof(longv) - 1] = '\0';
		setenv("KW_FUZZ_DIR", "/var/lib/keywarden-fuzz", 1);
		setenv("KW_FUZZ_LONG", longv, 1);
		unsetenv("KW_FUZZ_UNSET");
	}
	if (kwf_write_file(path, data, size, 0600) != 0)
		kwf_fail("cannot write the configuration file");

	r = config_load(path, &c, &errs);
	if (r == 0) {
		kwf_check(c != NULL && errs.n == 0);
		check_config(c, path);
		config_free(c);
	} else {
		kwf_check(r == KW_E_CONFIG || r == -ENOMEM);
		kwf_check(r == -ENOMEM || errs.n > 0);
		for (size_t i = 0; i < errs.n; i++)
			kwf_check(strncmp(errs.lines[i], path, strlen(path)) == 0 &&
			    errs.lines[i][strlen(path)] == ':');
	}
	config_errors_free(&errs);
	config_errors_free(&errs);      /* twice: it leaves them empty */
	check_units(data, size);
	return 0;
}
