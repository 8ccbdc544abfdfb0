/*
 * cli_admin.c - `keywarden policy ...` and `keywarden audit verify`.
 *
 * policy check reads a policy file offline with the daemon's own parser;
 * the other commands ask the running daemon.  audit verify with files
 * checks the chain here and asks the daemon whether each seal is right
 * (the audit key never leaves the token); without files the daemon checks
 * its own log.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "policy/policy.h"
#include "client/cli.h"

#define EX_USAGE 2
#define EX_DENIED 4

static int
cli_usage(const char *msg)
{
	fprintf(stderr, "keywarden: %s (see keywarden --help)\n", msg);
	return EX_USAGE;
}

int
cli_policy_check(kw_client *c, int argc, char **argv)
{
	struct policy *p = NULL;
	struct policy_errors *errs = NULL;
	char line[1024];
	int r;

	(void)c;
	if (argc != 2 || argv[1][0] == '-')
		return cli_usage("usage: keywarden policy check FILE");
	r = policy_load(argv[1], NULL, &p, &errs);
	if (r == 0) {
		printf("%s: ok (%zu rules, sha256 %s)\n", argv[1], policy_rule_count(p), policy_hash(p));
		policy_free(p);
		return 0;
	}
	for (size_t i = 0; errs != NULL && i < errs->n; i++) {
		policy_error_format(&errs->v[i], line, sizeof(line));
		fprintf(stderr, "%s\n", line);
	}
	if (errs == NULL || errs->n == 0)
		fprintf(stderr, "keywarden: %s: %s\n", argv[1], kw_strerror(r));
	policy_errors_free(errs);
	return 1;
}

/* "VAULT/NAME" or "VAULT" into the body or query. */
static int
split_target(const char *t, char *vault, size_t vlen, const char **name)
{
	const char *slash = strchr(t, '/');
	size_t n = slash ? (size_t)(slash - t) : strlen(t);

	if (n == 0 || n >= vlen)
		return -1;
	memcpy(vault, t, n);
	vault[n] = '\0';
	*name = slash && slash[1] ? slash + 1 : NULL;
	return 0;
}

int
cli_policy_explain(kw_client *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "uid", required_argument, NULL, 'u' }, { "user", required_argument, NULL, 'U' },
		{ "gid", required_argument, NULL, 'g' }, { "group", required_argument, NULL, 'G' },
		{ "groups", required_argument, NULL, 'S' }, { "exe", required_argument, NULL, 'e' },
		{ "unit", required_argument, NULL, 'n' }, { NULL, 0, NULL, 0 }
	};
	json_t *body = json_object(), *reply = NULL;
	char vault[80];
	const char *name;
	int ch, r, ex;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", o, NULL)) != -1) {
		switch (ch) {
		case 'u': json_object_set_new(body, "uid", json_integer(atoll(optarg))); break;
		case 'U': json_object_set_new(body, "user", json_string(optarg)); break;
		case 'g': json_object_set_new(body, "gid", json_integer(atoll(optarg))); break;
		case 'G': json_object_set_new(body, "group", json_string(optarg)); break;
		case 'e': json_object_set_new(body, "exe", json_string(optarg)); break;
		case 'n': json_object_set_new(body, "unit", json_string(optarg)); break;
		case 'S': {
			json_t *arr = json_array();
			char *dup = strdup(optarg), *save = NULL;
			for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save))
				json_array_append_new(arr, json_string(t));
			free(dup);
			json_object_set_new(body, "groups", arr);
			break;
		}
		default:
			json_decref(body);
			return cli_usage("usage: keywarden policy explain [--uid N|--user U] ... ACTION VAULT[/NAME]");
		}
	}
	if (argc - optind != 2 || split_target(argv[optind + 1], vault, sizeof(vault), &name) != 0) {
		json_decref(body);
		return cli_usage("usage: keywarden policy explain [--uid N|--user U] ... ACTION VAULT[/NAME]");
	}
	json_object_set_new(body, "action", json_string(argv[optind]));
	json_object_set_new(body, "vault", json_string(vault));
	if (name != NULL)
		json_object_set_new(body, "name", json_string(name));
	r = kw_request(c, "POST", "/v1/policy/explain", body, NULL, &reply);
	json_decref(body);
	if (r != 0)
		return fail(c, r);
	if (opt_json) {
		json_dumpf(reply, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		printf("%s\n", json_string_value(json_object_get(reply, "decision")) ?: "?");
	}
	ex = json_is_true(json_object_get(reply, "allow")) ? 0 : EX_DENIED;
	json_decref(reply);
	return ex;
}

int
cli_policy_who_can(kw_client *c, int argc, char **argv)
{
	char vault[80], path[1024];
	const char *name;
	json_t *reply = NULL, *p;
	size_t i;
	int r;

	if (argc != 3 || split_target(argv[2], vault, sizeof(vault), &name) != 0)
		return cli_usage("usage: keywarden policy who-can ACTION VAULT[/NAME]");
	snprintf(path, sizeof(path), "/v1/policy/who-can?action=%s&vault=%s%s%s", argv[1], vault,
	    name ? "&name=" : "", name ? name : "");
	if ((r = kw_request(c, "GET", path, NULL, NULL, &reply)) != 0)
		return fail(c, r);
	if (opt_json) {
		json_dumpf(reply, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		json_array_foreach(json_object_get(reply, "principals"), i, p) {
			const char *file = json_string_value(json_object_get(p, "file"));
			printf("%-5s %s", json_string_value(json_object_get(p, "effect")) ?: "?",
			    json_string_value(json_object_get(p, "principal")) ?: "?");
			if (file != NULL)
				printf("  (rule '%s' at %s:%lld)", json_string_value(json_object_get(p, "rule")) ?: "",
				    file, (long long)json_integer_value(json_object_get(p, "line")));
			putchar('\n');
		}
	}
	json_decref(reply);
	return 0;
}

int
cli_policy_reload(kw_client *c, int argc, char **argv)
{
	json_t *body = json_object(), *reply = NULL;
	int r;

	(void)argv;
	if (argc != 1) {
		json_decref(body);
		return cli_usage("usage: keywarden policy reload");
	}
	r = kw_request(c, "POST", "/v1/policy/reload", body, NULL, &reply);
	json_decref(body);
	if (r != 0)
		return fail(c, r);   /* the errors are in the daemon's log and reply */
	if (opt_json) {
		json_dumpf(reply, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		printf("policy reloaded: %lld rules, sha256 %s\n",
		    (long long)json_integer_value(json_object_get(reply, "rules")),
		    json_string_value(json_object_get(reply, "policy_hash")) ?: "?");
	}
	json_decref(reply);
	return 0;
}

/* Ask the daemon whether mac is the audit key's HMAC of data. */
static int
seal_check(void *arg, const uint8_t *data, size_t len, const uint8_t mac[KWAC_MAC_LEN])
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	kw_client *c = arg;
	char b64[800], hex[2 * KWAC_MAC_LEN + 1];
	json_t *body, *reply = NULL;
	size_t o = 0;
	int r;

	if (len > 512)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0) |
		    (i + 2 < len ? data[i + 2] : 0);
		b64[o++] = tab[(v >> 18) & 63];
		b64[o++] = tab[(v >> 12) & 63];
		b64[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		b64[o++] = i + 2 < len ? tab[v & 63] : '=';
	}
	b64[o] = '\0';
	for (size_t i = 0; i < KWAC_MAC_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	body = json_pack("{s:s,s:s}", "data", b64, "mac", hex);
	r = kw_request(c, "POST", "/v1/audit/seal-check", body, NULL, &reply);
	json_decref(body);
	if (r == 0)
		r = json_is_true(json_object_get(reply, "valid")) ? 0 : KW_E_AUTH;
	json_decref(reply);
	return r;
}

int
cli_audit_verify(kw_client *c, int argc, char **argv)
{
	struct kwac_verify_opts o;
	struct kwac_result res;
	json_t *reply = NULL;
	char report[4096];
	int i = 1, no_seals = 0, r;

	if (argc > 1 && strcmp(argv[1], "--no-seals") == 0) {
		no_seals = 1;
		i++;
	}
	if (i < argc && argv[i][0] == '-')
		return cli_usage("usage: keywarden audit verify [--no-seals] [FILE...|DIR]");
	if (i == argc) {
		/* The daemon checks its own log, chain and seals. */
		json_t *body = json_object();
		r = kw_request(c, "POST", "/v1/audit/verify", body, NULL, &reply);
		json_decref(body);
		if (r != 0)
			return fail(c, r);
		if (opt_json) {
			json_dumpf(reply, stdout, JSON_COMPACT);
			putchar('\n');
		} else {
			json_t *ok = json_object_get(reply, "ok");
			printf("%s\n", json_is_true(ok) ? "audit log verified" : "AUDIT LOG BROKEN");
			json_dumpf(reply, stdout, JSON_INDENT(2));
			putchar('\n');
		}
		r = json_is_true(json_object_get(reply, "ok")) ? 0 : 1;
		json_decref(reply);
		return r;
	}
	memset(&o, 0, sizeof(o));
	if (!no_seals) {
		o.check = seal_check;
		o.arg = c;
	}
	if (argc - i == 1 && kwac_segment_index(strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i], &(unsigned){0}) != 0)
		r = kwac_verify_dir(argv[i], &o, &res);
	else
		r = kwac_verify_files((const char *const *)(argv + i), (size_t)(argc - i), &o, &res);
	if (opt_json) {
		json_t *j = kwac_result_json(&res);
		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(j);
	} else {
		kwac_result_format(&res, report, sizeof(report));
		fputs(report, r == 0 ? stdout : stderr);
	}
	if (r != 0 && r != KW_E_AUTH)
		fprintf(stderr, "keywarden: %s\n", kw_errdetail(r));
	return r == 0 ? 0 : 1;
}
