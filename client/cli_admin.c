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
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "kw_nss.h"
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

/* --user's argument: a user name, or a uid in digits; 0 or -1 (said). */
static int
user_arg(const char *arg, uid_t *uid)
{
	struct passwd pw;
	char *buf = NULL, *end;
	size_t len = 0;
	unsigned long n;
	int r;

	if ((r = kwnss_pw_name(arg, &pw, &buf, &len)) == 0) {
		*uid = pw.pw_uid;
		free(buf);
		return 0;
	}
	free(buf);
	errno = 0;
	n = strtoul(arg, &end, 10);
	if (arg[0] >= '0' && arg[0] <= '9' && *end == '\0' && errno == 0 &&
	    n < (unsigned long)(uid_t)-1) {
		*uid = (uid_t)n;
		return 0;
	}
	fprintf(stderr, "keywarden: --user %s: %s\n", arg, r == -ENOENT ?
	    "no such user" : "the user database could not be read");
	return -1;
}

int
cli_policy_check(kw_client *c, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "user", required_argument, NULL, 'u' }, { NULL, 0, NULL, 0 }
	};
	struct policy *p = NULL;
	struct policy_errors *errs = NULL;
	struct policy_load_opts o = { .daemon_uid = geteuid() };
	const char *user = NULL, *path;
	struct stat st;
	int r, ch, other = 0;

	(void)c;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
		if (ch != 'u')
			return cli_usage("usage: keywarden policy check [--user USER] FILE");
		user = optarg;
	}
	if (argc - optind != 1)
		return cli_usage("usage: keywarden policy check [--user USER] FILE");
	path = argv[optind];
	/* For the daemon's user: the one named, else the file's owner when
	 * that is neither root nor the caller (an operator, or root, checking
	 * the daemon's file), and that is said. */
	if (user != NULL) {
		if (user_arg(user, &o.daemon_uid) != 0)
			return EX_USAGE;
		other = 2;
	} else if (stat(path, &st) == 0 && st.st_uid != 0 && st.st_uid != o.daemon_uid) {
		o.daemon_uid = st.st_uid;
		other = 1;
	}
	r = policy_load(path, &o, &p, &errs);
	if (r == 0) {
		struct policy_errors *warns = NULL;
		if (policy_lint(p, &warns) == 0)
			policy_errors_print(stderr, warns);
		policy_errors_free(warns);
		printf("%s: ok (%zu rules, sha256 %s)\n", path, policy_rule_count(p), policy_hash(p));
		if (other == 1)
			printf("%s: checked for keywardend running as uid %u, its owner: it "
			    "must run as that user\n", path, (unsigned)o.daemon_uid);
		else if (other == 2)
			printf("%s: checked for keywardend running as uid %u (--user %s)\n",
			    path, (unsigned)o.daemon_uid, user);
		policy_free(p);
		return 0;
	}
	policy_errors_print(stderr, errs);
	if (errs == NULL || errs->n == 0)
		fprintf(stderr, "keywarden: %s: %s\n", path, kw_strerror(r));
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
	/* The daemon's own directory while it runs: its last write may be
	 * under way.  A stopped daemon's log, or a copy: it must end sealed. */
	o.live = KWAC_LIVE_AUTO;
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

/* ---- audit tail and query ------------------------------------------------------- */

struct tail {
	uint64_t until;          /* stop once this seq is printed (0: follow) */
	uint64_t last;
	int done, printed;
	/* filters (query) */
	const char *vault, *name, *user, *action, *outcome, *from, *to;
	long long uid;
	char buf[65536];
	size_t len;
};

static int
tail_match(const struct tail *t, json_t *ev)
{
	json_t *caller = json_object_get(ev, "caller");
	const char *tm = json_string_value(json_object_get(ev, "time"));

#define FIELD_IS(j, k, want) ((want) == NULL || \
	(json_string_value(json_object_get((j), (k))) != NULL && \
	 strcmp(json_string_value(json_object_get((j), (k))), (want)) == 0))
	if (!FIELD_IS(ev, "vault", t->vault) || !FIELD_IS(ev, "name", t->name) ||
	    !FIELD_IS(ev, "action", t->action) || !FIELD_IS(ev, "outcome", t->outcome) ||
	    !FIELD_IS(caller, "user", t->user))
		return 0;
#undef FIELD_IS
	if (t->uid >= 0 && json_integer_value(json_object_get(caller, "uid")) != t->uid)
		return 0;
	/* RFC 3339 UTC times of the same form compare as strings */
	if (t->from != NULL && (tm == NULL || strcmp(tm, t->from) < 0))
		return 0;
	if (t->to != NULL && (tm == NULL || strcmp(tm, t->to) >= 0))
		return 0;
	return 1;
}

static void
tail_print(json_t *ev, const char *line)
{
	json_t *caller = json_object_get(ev, "caller");
	const char *user = json_string_value(json_object_get(caller, "user"));
	const char *vault = json_string_value(json_object_get(ev, "vault"));
	const char *name = json_string_value(json_object_get(ev, "name"));
	char who[96];

	if (opt_json) {
		printf("%s\n", line);
		return;
	}
	if (caller != NULL)
		snprintf(who, sizeof(who), "%s(%lld)", user ? user : "-",
		    (long long)json_integer_value(json_object_get(caller, "uid")));
	else
		snprintf(who, sizeof(who), "-");
	printf("%-27s %8lld %-8s %-15s %-14s %s%s%s %s\n",
	    json_string_value(json_object_get(ev, "time")) ?: "-",
	    (long long)json_integer_value(json_object_get(ev, "seq")),
	    json_string_value(json_object_get(ev, "outcome")) ?: "-",
	    json_string_value(json_object_get(ev, "action")) ?:
		json_string_value(json_object_get(ev, "type")) ?: "-",
	    who, vault ? vault : "", name ? "/" : "", name ? name : "",
	    json_string_value(json_object_get(ev, "rule")) ?: "");
}

static size_t
tail_write(char *data, size_t sz, size_t nm, void *arg)
{
	struct tail *t = arg;
	size_t n = sz * nm;

	for (size_t i = 0; i < n && !t->done; i++) {
		if (data[i] != '\n') {
			if (t->len + 1 < sizeof(t->buf))
				t->buf[t->len++] = data[i];
			continue;
		}
		t->buf[t->len] = '\0';
		{
			json_t *ev = json_loads(t->buf, 0, NULL);
			uint64_t seq = (uint64_t)json_integer_value(json_object_get(ev, "seq"));
			if (seq == 0) {
				/* a notice of the stream: lagged or error */
				fprintf(stderr, "keywarden: %s\n", t->buf);
			} else {
				t->last = seq;
				if (tail_match(t, ev)) {
					tail_print(ev, t->buf);
					t->printed++;
				}
				if (t->until != 0 && seq >= t->until)
					t->done = 1;
			}
			json_decref(ev);
		}
		t->len = 0;
	}
	fflush(stdout);
	return t->done ? 0 : n;   /* 0 ends the transfer */
}

static int
audit_follow(kw_client *c, struct tail *t, uint64_t since)
{
	for (;;) {
		CURL *h = curl_easy_init();
		char url[128];
		CURLcode cr;

		if (h == NULL)
			return 1;
		snprintf(url, sizeof(url), "http://localhost/v1/audit/stream?since=%llu",
		    (unsigned long long)since);
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, kw_client_socket(c));
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, tail_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
		curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
		t->len = 0;
		cr = curl_easy_perform(h);
		curl_easy_cleanup(h);
		if (t->done)
			return 0;
		if (cr == CURLE_HTTP_RETURNED_ERROR || cr == CURLE_COULDNT_CONNECT) {
			fprintf(stderr, "keywarden: the audit stream of %s: %s\n", kw_client_socket(c),
			    cr == CURLE_HTTP_RETURNED_ERROR ? "refused (see keywarden whoami and the policy's audit.stream)" :
			    "cannot connect");
			if (t->until != 0)
				return cr == CURLE_HTTP_RETURNED_ERROR ? 4 : 6;
		}
		/* the daemon restarted or cut us off: resume exactly after the last seq */
		since = t->last;
		sleep(1);
	}
}

static uint64_t
audit_committed(kw_client *c)
{
	json_t *report = NULL;
	uint64_t s;

	kw_health(c, &report);
	s = (uint64_t)json_integer_value(json_object_get(json_object_get(report, "audit"), "committed_seq"));
	json_decref(report);
	return s;
}

int
cli_audit_tail(kw_client *c, int argc, char **argv)
{
	struct tail *t = calloc(1, sizeof(*t));
	uint64_t committed, since, n = 10;
	int follow = 0, has_since = 0, ch, r;
	static const struct option o[] = {
		{ "follow", no_argument, NULL, 'f' }, { "lines", required_argument, NULL, 'n' },
		{ "since", required_argument, NULL, 's' }, { NULL, 0, NULL, 0 }
	};

	if (t == NULL)
		return 1;
	t->uid = -1;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+fn:", o, NULL)) != -1) {
		switch (ch) {
		case 'f': follow = 1; break;
		case 'n':
			if (parse_u64(optarg, &n, 1) != 0) {
				free(t);
				return usage_error("-n '%s' is not a number of lines", optarg);
			}
			break;
		case 's':
			if (parse_u64(optarg, &since, 1) != 0) {
				free(t);
				return usage_error("--since '%s' is not an event number", optarg);
			}
			has_since = 1;
			break;
		default:
			free(t);
			return cli_usage("usage: keywarden audit tail [-f] [-n N] [--since SEQ]");
		}
	}
	if (optind != argc) {
		free(t);
		return cli_usage("usage: keywarden audit tail [-f] [-n N] [--since SEQ]");
	}
	committed = audit_committed(c);
	if (!has_since)
		since = committed > n ? committed - n : 0;
	if (!follow && since >= committed) {
		free(t);
		return 0;
	}
	t->until = follow ? 0 : committed;
	r = audit_follow(c, t, since);
	free(t);
	return r;
}

int
cli_audit_query(kw_client *c, int argc, char **argv)
{
	struct tail *t = calloc(1, sizeof(*t));
	uint64_t committed, since = 0;
	int ch, r;
	static const struct option o[] = {
		{ "since", required_argument, NULL, 's' }, { "vault", required_argument, NULL, 'v' },
		{ "name", required_argument, NULL, 'N' }, { "user", required_argument, NULL, 'u' },
		{ "uid", required_argument, NULL, 'U' }, { "action", required_argument, NULL, 'a' },
		{ "outcome", required_argument, NULL, 'o' }, { "from", required_argument, NULL, 'F' },
		{ "to", required_argument, NULL, 'T' }, { NULL, 0, NULL, 0 }
	};

	if (t == NULL)
		return 1;
	t->uid = -1;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", o, NULL)) != -1) {
		switch (ch) {
		case 's':
			if (parse_u64(optarg, &since, 1) != 0) {
				free(t);
				return usage_error("--since '%s' is not an event number", optarg);
			}
			break;
		case 'v': t->vault = optarg; break;
		case 'N': t->name = optarg; break;
		case 'u': t->user = optarg; break;
		case 'U': t->uid = atoll(optarg); break;
		case 'a': t->action = optarg; break;
		case 'o': t->outcome = optarg; break;
		case 'F': t->from = optarg; break;
		case 'T': t->to = optarg; break;
		default:
			free(t);
			return cli_usage("usage: keywarden audit query [--vault V] [--name N] [--user U|--uid N] "
			    "[--action A] [--outcome O] [--from TIME] [--to TIME] [--since SEQ]");
		}
	}
	committed = audit_committed(c);
	if (since >= committed) {
		free(t);
		return 0;
	}
	t->until = committed;
	r = audit_follow(c, t, since);
	free(t);
	return r;
}
