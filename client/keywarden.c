/*
 * keywarden - the command-line client of keywardend, built on libkeywarden.
 *
 * Output is stable for scripts: --json prints the daemon's JSON on one line;
 * the human form is "key: value" lines or a table.  Exit status: 0 ok,
 * 1 error, 2 usage, 3 not found, 4 denied, 5 conflict, 6 unavailable.
 * A secret value is read from stdin or a file, never from argv.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>

#include "keywarden.h"
#include "kw_secmem.h"
#include "client/cli.h"

#define EX_OK 0
#define EX_ERR 1
#define EX_USAGE 2
#define EX_NOTFOUND 3
#define EX_DENIED 4
#define EX_CONFLICT 5
#define EX_UNAVAIL 6

#define VALUE_MAX ((size_t)64 * 1024 * 1024)

int opt_json;   /* shared with cli_admin.c */
static const char *opt_socket;

struct cmd {
	const char *group;      /* "secret", or NULL for a top-level command */
	const char *name;
	const char *usage;
	int (*run)(kw_client *, int, char **);
};

static const struct cmd *cur_cmd;

/* ---- messages ---------------------------------------------------------- */

int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("keywarden: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (cur_cmd != NULL)
		fprintf(stderr, "\nusage: keywarden %s%s%s\nTry 'keywarden %s%s%s --help'.\n",
		    cur_cmd->group ? cur_cmd->group : "", cur_cmd->group ? " " : "",
		    cur_cmd->usage, cur_cmd->group ? cur_cmd->group : "",
		    cur_cmd->group ? " " : "", cur_cmd->name);
	else
		fputs("\nTry 'keywarden --help'.\n", stderr);
	return EX_USAGE;
}

int
exit_code(int r)
{
	switch (r) {
	case 0:
		return EX_OK;
	case KW_E_NOT_FOUND:
		return EX_NOTFOUND;
	case KW_E_DENIED:
	case KW_E_RETIRED:
		return EX_DENIED;
	case KW_E_CONFLICT:
		return EX_CONFLICT;
	case KW_E_UNAVAILABLE:
		return EX_UNAVAIL;
	default:
		return EX_ERR;
	}
}

/* Report a failed library call on one line; returns the exit status. */
int
fail(kw_client *c, int r)
{
	return fail_on(c, r, NULL, "");
}

int
fail_on(kw_client *c, int r, const char *what, const char *after)
{
	const char *m = c != NULL ? kw_client_last_error(c) : "";

	if (m == NULL || *m == '\0')
		m = kw_errdetail(r);
	fprintf(stderr, "keywarden: %s%s%s%s\n", what ? what : "", what ? ": " : "", m, after);
	return exit_code(r);
}

int
sys_fail(const char *what, const char *path)
{
	fprintf(stderr, "keywarden: %s '%s': %s\n", what, path, strerror(errno));
	return EX_ERR;
}

/* ---- parsing helpers ------------------------------------------------------- */

int
parse_u64(const char *s, uint64_t *v, int allow_zero)
{
	char *end;
	unsigned long long x;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || (!allow_zero && x == 0) || x > INT64_MAX)
		return -EINVAL;
	*v = x;
	return 0;
}

/* The value of --version: a version number from 1. */
int
version_arg(const char *s, uint64_t *v)
{
	if (parse_u64(s, v, 0) != 0)
		return usage_error("--version '%s' is not a version number from 1", s);
	return 0;
}

/* A time argument: RFC 3339, normalised to UTC; "none" gives JSON null
 * when allow_none. */
static int
time_arg(const char *opt, const char *s, int allow_none, json_t **out)
{
	char buf[32];
	int64_t t;

	if (allow_none && strcmp(s, "none") == 0) {
		*out = json_null();
		return 0;
	}
	if (kw_time_parse(s, &t) != 0 || kw_time_format(t, buf, sizeof(buf)) != 0)
		return usage_error("%s '%s' is not an RFC 3339 time such as "
		    "2027-01-01T00:00:00Z%s", opt, s, allow_none ? " (or 'none')" : "");
	*out = json_string(buf);
	return 0;
}

/* A KEY=VALUE of option opt (--tag, --context) into the object *obj, made
 * here if it is NULL. */
int
kv_arg(json_t **obj, const char *opt, const char *s)
{
	const char *eq = strchr(s, '=');

	if (eq == NULL || eq == s)
		return usage_error("%s '%s' is not KEY=VALUE", opt, s);
	if (*obj == NULL && (*obj = json_object()) == NULL)
		return fail(NULL, -ENOMEM);
	if (json_object_setn_new_nocheck(*obj, s, (size_t)(eq - s), json_string(eq + 1)) != 0)
		return usage_error("%s '%s' is not valid UTF-8", opt, s);
	return 0;
}

/* ---- output -------------------------------------------------------------- */

int
print_json(const json_t *j)
{
	if (json_dumpf(j, stdout, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
		return EX_ERR;
	putchar('\n');
	return EX_OK;
}

/* The human form of one field value into buf. */
static const char *
field_str(const json_t *v, char *buf, size_t len)
{
	const char *k;
	json_t *x;
	size_t n = 0;

	buf[0] = '\0';
	if (v == NULL || json_is_null(v))
		return "-";
	if (json_is_string(v))
		return json_string_length(v) > 0 ? json_string_value(v) : "-";
	if (json_is_true(v))
		return "true";
	if (json_is_false(v))
		return "false";
	if (json_is_integer(v)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	if ((json_is_object(v) && json_object_size(v) == 0) ||
	    (json_is_array(v) && json_array_size(v) == 0))
		return "-";
	if (json_is_object(v)) {
		int flat = 1;
		json_object_foreach((json_t *)v, k, x)
			if (!json_is_string(x))
				flat = 0;
		if (flat) {   /* tags: k=v, k=v */
			json_object_foreach((json_t *)v, k, x) {
				int w = snprintf(buf + n, len - n, "%s%s=%s", n ? ", " : "",
				    k, json_string_value(x));
				if (w < 0 || (size_t)w >= len - n)
					break;
				n += (size_t)w;
			}
			return buf;
		}
	}
	{
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		snprintf(buf, len, "%s", s ? s : "?");
		free(s);
	}
	return buf;
}

/* "key: value" lines: the keys of order first, then any others. */
static void
print_fields(const json_t *o)
{
	static const char *const order[] = { "vault", "name", "version", "enabled",
	    "created", "updated", "not_before", "expires", "content_type", "tags",
	    "key_version", "encoding", "deleted", "scheduled_purge", "status", NULL };
	char buf[4096];
	const char *k;
	json_t *v;

	for (size_t i = 0; order[i] != NULL; i++)
		if ((v = json_object_get(o, order[i])) != NULL)
			printf("%s: %s\n", order[i], field_str(v, buf, sizeof(buf)));
	json_object_foreach((json_t *)o, k, v) {
		size_t i;
		for (i = 0; order[i] != NULL && strcmp(order[i], k) != 0; i++)
			;
		if (order[i] == NULL && strcmp(k, "value") != 0)
			printf("%s: %s\n", k, field_str(v, buf, sizeof(buf)));
	}
}

/* A table of the objects in arr, one column per field named in cols. */
void
print_table(const json_t *arr, const char *const *cols, const char *const *heads)
{
	size_t ncol = 0, w[16] = { 0 };
	char buf[4096];
	size_t i;
	json_t *row;

	while (cols[ncol] != NULL && ncol < 16)
		ncol++;
	for (size_t c = 0; c < ncol; c++)
		w[c] = strlen(heads[c]);
	json_array_foreach(arr, i, row)
		for (size_t c = 0; c < ncol; c++) {
			size_t l = strlen(field_str(json_object_get(row, cols[c]), buf, sizeof(buf)));
			if (l > w[c])
				w[c] = l;
		}
	for (size_t c = 0; c < ncol; c++) {
		if (c + 1 < ncol)
			printf("%-*s  ", (int)w[c], heads[c]);
		else
			printf("%s\n", heads[c]);
	}
	json_array_foreach(arr, i, row)
		for (size_t c = 0; c < ncol; c++) {
			const char *s = field_str(json_object_get(row, cols[c]), buf, sizeof(buf));
			if (c + 1 < ncol)
				printf("%-*s  ", (int)w[c], s);
			else
				printf("%s\n", s);
		}
}

int
show(const json_t *reply)
{
	if (opt_json)
		return print_json(reply);
	print_fields(reply);
	return EX_OK;
}

/* The end of a command: the failure r of its call reported, else its reply
 * shown.  Returns the exit status. */
int
show_result(kw_client *c, int r, const json_t *reply)
{
	return r != 0 ? fail(c, r) : show(reply);
}

/* The end of a listing: the failure r reported, else the reply as JSON or
 * a table of the objects in its array field. */
int
show_list(kw_client *c, int r, const json_t *reply, const char *field,
    const char *const *cols, const char *const *heads)
{
	if (r != 0)
		return fail(c, r);
	if (opt_json)
		return print_json(reply);
	print_table(json_object_get(reply, field), cols, heads);
	return EX_OK;
}

/* ---- values in and out ----------------------------------------------------- */

/* Read all of fd into a secret.  From a terminal: one line, not echoed. */
static int
read_value(int fd, const char *what, kw_secret *out)
{
	kw_secret v = { NULL, 0 };
	struct termios old, quiet;
	int tty = isatty(fd), echo_off = 0, r = 0;
	size_t cap = 4096;

	if ((v.data = kw_secalloc(cap)) == NULL)
		return -ENOMEM;
	if (tty) {
		fputs("Value (not echoed, ends at Enter): ", stderr);
		if (tcgetattr(fd, &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			echo_off = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
		}
	}
	for (;;) {
		ssize_t n;
		if (v.len == cap) {
			uint8_t *np;
			if (cap >= VALUE_MAX) {
				fprintf(stderr, "keywarden: the value from %s is larger than %zu bytes\n",
				    what, VALUE_MAX);
				r = -EFBIG;
				break;
			}
			if ((np = kw_secalloc(cap * 2)) == NULL) {
				r = -ENOMEM;
				break;
			}
			memcpy(np, v.data, v.len);
			kw_secfree(v.data);
			v.data = np;
			cap *= 2;
		}
		n = read(fd, v.data + v.len, tty ? 1 : cap - v.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "keywarden: cannot read the value from %s: %s\n",
			    what, strerror(errno));
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		if (tty && v.data[v.len] == '\n') {
			v.data[v.len] = '\0';
			break;
		}
		v.len += (size_t)n;
	}
	if (echo_off) {
		(void)tcsetattr(fd, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (r != 0) {
		kw_secret_clear(&v);
		return r;
	}
	*out = v;
	return 0;
}

int
write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Open an input file: NULL or "-" is stdin. */
int
open_input(const char *path)
{
	if (path == NULL || strcmp(path, "-") == 0)
		return STDIN_FILENO;
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* Open an output file: NULL or "-" is stdout; a file is created with mode
 * 0600.  What these files receive is secret (a value, a backup, plaintext),
 * and the CLI is often run as root in directories others can write: an
 * existing path is written only if it is a regular file of ours with no
 * other name (not a FIFO another user reads, nor a hard link to a file
 * elsewhere), and it is made 0600 before anything is written. */
int
open_output(const char *path)
{
	struct stat st;
	const char *why = NULL;
	int fd, flags;

	if (path == NULL || strcmp(path, "-") == 0)
		return STDOUT_FILENO;
	/* no O_TRUNC before the checks; O_NONBLOCK so that a FIFO does not
	 * hang the open */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0)
		why = strerror(errno);
	else if (S_ISCHR(st.st_mode) && !isatty(fd))
		goto devout;      /* /dev/null and its like: nothing to keep */
	else if (!S_ISREG(st.st_mode))
		why = "it exists and is not a regular file";
	else if (st.st_uid != geteuid())
		why = "it exists and belongs to another user";
	else if (st.st_nlink != 1)
		why = "it has other names (hard links)";
	if (why == NULL && (fchmod(fd, 0600) != 0 || ftruncate(fd, 0) != 0))
		why = strerror(errno);
devout:
	if (why == NULL && ((flags = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0))
		why = strerror(errno);
	if (why != NULL) {
		fprintf(stderr, "keywarden: %s: not written: %s\n", path, why);
		close(fd);
		errno = EPERM;
		return -1;
	}
	return fd;
}

static void
b64_encode(const uint8_t *s, size_t n, char *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		*out++ = tab[(v >> 18) & 63];
		*out++ = tab[(v >> 12) & 63];
		*out++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*out++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*out = '\0';
}

/* ---- options ----------------------------------------------------------------- */

enum {
	O_HELP = 'h', O_FILE = 'f', O_BASE64 = 'b', O_CTYPE = 'c', O_TAG = 't',
	O_DISABLED = 'D', O_NOTBEFORE = 'n', O_EXPIRES = 'e', O_CAS = 'C',
	O_VERSION = 'v', O_OUTPUT = 'o', O_PREFIX = 'p', O_ENABLE = 'E',
	O_DISABLE = 'd', O_CLEARTAGS = 'T',
};

static const struct option long_opts[] = {
	{ "help", no_argument, NULL, O_HELP },
	{ "file", required_argument, NULL, O_FILE },
	{ "base64", no_argument, NULL, O_BASE64 },
	{ "content-type", required_argument, NULL, O_CTYPE },
	{ "tag", required_argument, NULL, O_TAG },
	{ "clear-tags", no_argument, NULL, O_CLEARTAGS },
	{ "disabled", no_argument, NULL, O_DISABLED },
	{ "not-before", required_argument, NULL, O_NOTBEFORE },
	{ "expires", required_argument, NULL, O_EXPIRES },
	{ "cas", required_argument, NULL, O_CAS },
	{ "version", required_argument, NULL, O_VERSION },
	{ "output", required_argument, NULL, O_OUTPUT },
	{ "prefix", required_argument, NULL, O_PREFIX },
	{ "enable", no_argument, NULL, O_ENABLE },
	{ "disable", no_argument, NULL, O_DISABLE },
	{ NULL, 0, NULL, 0 }
};

/* What the options of one command are, after parsing. */
struct opts {
	const char *file, *output, *prefix, *ctype;
	json_t *tags;                   /* object, when --tag or --clear-tags */
	json_t *not_before, *expires;   /* string or null */
	int base64, enabled;            /* enabled: -1 unset, 0, 1 */
	int64_t cas;                    /* -1 unset */
	uint64_t version;               /* 0 unset */
	char *pos[4];
	int npos;
};

static void
opts_free(struct opts *o)
{
	json_decref(o->tags);
	json_decref(o->not_before);
	json_decref(o->expires);
}

static void
cmd_help(const struct cmd *cmd)
{
	printf("usage: keywarden [--socket PATH] [--json] %s%s%s\n",
	    cmd->group ? cmd->group : "", cmd->group ? " " : "", cmd->usage);
	printf("See keywarden(1) for the options.\n");
}

/*
 * Parse argv (argv[0] is the command name) allowing only the options in
 * allowed (their short letters; --help and --json always) and exactly npos
 * positional arguments, which go into pos (room for maxpos; *got counts
 * them).  take(o, letter, name, allowed) takes each option (name as given,
 * its value in optarg) and returns 0 or an exit status.  Returns 0, an exit
 * status (EX_USAGE after a usage error), or -1 when --help was given and
 * printed.
 */
int
cli_parse(int argc, char **argv, const struct option *longopts, const char *allowed,
    int npos, char **pos, int maxpos, int *got, cli_take_fn *take, void *o)
{
	int ch, r;

	optind = 0;     /* GNU: start again on a new argv */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:", longopts, NULL)) != -1 ||
	    optind < argc) {
		if (ch == -1) {
			/* A positional argument; options may follow it. */
			if (*got >= maxpos)
				return usage_error("too many arguments");
			pos[(*got)++] = argv[optind++];
			continue;
		}
		if (ch == ':')
			return usage_error("option %s needs a value", argv[optind - 1]);
		if (ch == '?')
			return usage_error("unknown option '%s'", argv[optind - 1]);
		if (ch != 'h' && ch != 'j' && strchr(allowed, ch) == NULL)
			return usage_error("option '%s' does not apply to this command",
			    argv[optind - 1]);
		if (ch == 'h') {
			cmd_help(cur_cmd);
			return -1;
		}
		if ((r = take(o, ch, argv[optind - 1], allowed)) != 0)
			return r;
	}
	if (*got < npos)
		return usage_error("missing argument%s", npos - *got > 1 ? "s" : "");
	if (*got > npos)
		return usage_error("unexpected argument '%s'", pos[npos]);
	return 0;
}

/* One option of the secret and vault commands. */
static int
opts_take(void *p, int ch, const char *name, const char *allowed)
{
	struct opts *o = p;
	uint64_t u;
	int r;

	switch (ch) {
	case O_FILE: o->file = optarg; break;
	case O_OUTPUT: o->output = optarg; break;
	case O_PREFIX: o->prefix = optarg; break;
	case O_CTYPE: o->ctype = optarg; break;
	case O_BASE64: o->base64 = 1; break;
	case O_DISABLED: case O_DISABLE:
		if (o->enabled == 1)
			return usage_error("--enable and --disable exclude each other");
		o->enabled = 0;
		break;
	case O_ENABLE:
		if (o->enabled == 0)
			return usage_error("--enable and --disable exclude each other");
		o->enabled = 1;
		break;
	case O_TAG: case O_CLEARTAGS:
		if (o->tags == NULL && (o->tags = json_object()) == NULL)
			return EX_ERR;
		if (ch == O_TAG && (r = kv_arg(&o->tags, "--tag", optarg)) != 0)
			return r;
		break;
	case O_NOTBEFORE:
		json_decref(o->not_before);
		o->not_before = NULL;
		if ((r = time_arg("--not-before", optarg, strchr(allowed, O_ENABLE) != NULL,
		    &o->not_before)) != 0)
			return r;
		break;
	case O_EXPIRES:
		json_decref(o->expires);
		o->expires = NULL;
		if ((r = time_arg("--expires", optarg, strchr(allowed, O_ENABLE) != NULL,
		    &o->expires)) != 0)
			return r;
		break;
	case O_CAS:
		if (parse_u64(optarg, &u, 1) != 0)
			return usage_error("--cas '%s' is not a version number (0 for a new name)", optarg);
		o->cas = (int64_t)u;
		break;
	case O_VERSION:
		return version_arg(optarg, &o->version);
	default:
		return usage_error("unknown option '%s'", name);
	}
	return 0;
}

static int
opts_parse(int argc, char **argv, const char *allowed, int npos, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->enabled = -1;
	o->cas = -1;
	return cli_parse(argc, argv, long_opts, allowed, npos, o->pos, NPOS(o->pos), &o->npos,
	    opts_take, o);
}

/* The attributes given by options, as the JSON of a PUT or a PATCH. */
static json_t *
opts_attrs(const struct opts *o)
{
	json_t *a = json_object();

	if (a == NULL)
		return NULL;
	if (o->ctype != NULL)
		json_object_set_new(a, "content_type", json_string(o->ctype));
	if (o->tags != NULL)
		json_object_set(a, "tags", o->tags);
	if (o->enabled >= 0)
		json_object_set_new(a, "enabled", json_boolean(o->enabled));
	if (o->not_before != NULL)
		json_object_set(a, "not_before", o->not_before);
	if (o->expires != NULL)
		json_object_set(a, "expires", o->expires);
	return a;
}

#define PARSE(allowed, npos) CLI_PARSE(opts_parse, opts_free, o, allowed, npos)

/* ---- commands ------------------------------------------------------------------ */

static int
do_set(kw_client *c, int argc, char **argv)
{
	struct opts o;
	kw_secret v = { NULL, 0 };
	json_t *attrs = NULL, *meta = NULL;
	int fd = STDIN_FILENO, r, ex;

	PARSE("fbctTDneC", 2);
	if ((fd = open_input(o.file)) < 0) {
		ex = sys_fail("cannot open", o.file);
		goto out;
	}
	if (read_value(fd, o.file ? o.file : "stdin", &v) != 0) {
		ex = EX_ERR;
		goto out;
	}
	if ((attrs = opts_attrs(&o)) == NULL) {
		ex = fail(NULL, -ENOMEM);
		goto out;
	}
	if (o.base64) {
		/* The input is base64 text; the daemon decodes it.  Spaces and
		 * line breaks (base64 -w76, a trailing newline) are dropped. */
		size_t n = 0;
		for (size_t i = 0; i < v.len; i++)
			if (v.data[i] != '\n' && v.data[i] != '\r' && v.data[i] != ' ' &&
			    v.data[i] != '\t')
				v.data[n++] = v.data[i];
		kw_wipe(v.data + n, v.len - n);
		v.len = n;
		json_object_set_new(attrs, "encoding", json_string("base64"));
	}
	r = kw_secret_set(c, o.pos[0], o.pos[1], v.data, v.len, attrs, o.cas, &meta);
	ex = show_result(c, r, meta);
 out:
	if (fd > STDIN_FILENO)
		close(fd);
	kw_secret_clear(&v);
	json_decref(attrs);
	json_decref(meta);
	opts_free(&o);
	return ex;
}

static int
do_get(kw_client *c, int argc, char **argv)
{
	struct opts o;
	kw_secret v = { NULL, 0 };
	json_t *meta = NULL, *jv = NULL;
	char *dump = NULL, *b64 = NULL;
	int fd = -1, r, ex;

	PARSE("vo", 2);
	if ((r = kw_secret_get(c, o.pos[0], o.pos[1], o.version, &v,
	    opt_json ? &meta : NULL)) != 0) {
		ex = fail(c, r);
		goto out;
	}
	if ((fd = open_output(o.output)) < 0) {
		ex = sys_fail("cannot create", o.output);
		goto out;
	}
	if (opt_json) {
		/* The full object, as the daemon sent it. */
		const char *enc = json_string_value(json_object_get(meta, "encoding"));
		if (enc != NULL && strcmp(enc, "base64") == 0) {
			if ((b64 = kw_secalloc(v.len / 3 * 4 + 5)) == NULL) {
				ex = fail(NULL, -ENOMEM);
				goto out;
			}
			b64_encode(v.data, v.len, b64);
			jv = json_string(b64);
		} else {
			jv = json_stringn((const char *)v.data, v.len);
		}
		if (jv == NULL || json_object_set(meta, "value", jv) != 0 ||
		    (dump = json_dumps(meta, JSON_COMPACT)) == NULL) {
			ex = fail(NULL, -ENOMEM);
			goto out;
		}
		r = write_all(fd, dump, strlen(dump));
		if (r == 0)
			r = write_all(fd, "\n", 1);
	} else {
		r = write_all(fd, v.data, v.len);
		if (r == 0 && fd == STDOUT_FILENO && isatty(fd))
			r = write_all(fd, "\n", 1);
	}
	if (r != 0) {
		errno = -r;
		ex = sys_fail("cannot write the value to", o.output ? o.output : "stdout");
		goto out;
	}
	ex = EX_OK;
 out:
	if (fd > STDOUT_FILENO && close(fd) != 0 && ex == EX_OK)
		ex = sys_fail("cannot write the value to", o.output);
	if (dump != NULL) {
		kw_wipe(dump, strlen(dump));
		free(dump);
	}
	if (jv != NULL)
		kw_wipe((char *)json_string_value(jv), json_string_length(jv));
	json_decref(jv);
	kw_secfree(b64);
	kw_secret_clear(&v);
	json_decref(meta);
	opts_free(&o);
	return ex;
}

static int
do_list(kw_client *c, int argc, char **argv)
{
	static const char *const cols[] = { "name", "version", "enabled", "updated",
	    "expires", "content_type", NULL };
	static const char *const heads[] = { "NAME", "VERSION", "ENABLED", "UPDATED",
	    "EXPIRES", "CONTENT-TYPE" };
	struct opts o;
	json_t *reply = NULL;
	int r, ex;

	PARSE("p", 1);
	r = kw_secret_list(c, o.pos[0], o.prefix, &reply);
	ex = show_list(c, r, reply, "secrets", cols, heads);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static int
do_versions(kw_client *c, int argc, char **argv)
{
	static const char *const cols[] = { "version", "enabled", "created",
	    "not_before", "expires", "key_version", NULL };
	static const char *const heads[] = { "VERSION", "ENABLED", "CREATED",
	    "NOT-BEFORE", "EXPIRES", "KEY" };
	struct opts o;
	json_t *reply = NULL;
	int r, ex;

	PARSE("", 2);
	r = kw_secret_versions(c, o.pos[0], o.pos[1], &reply);
	ex = show_list(c, r, reply, "versions", cols, heads);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

/* Metadata without the value: from the list of versions, so that a
 * disabled or expired version can be shown and no value is read. */
static int
do_show(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *reply = NULL, *m, *found = NULL;
	size_t i;
	int r, ex;

	PARSE("v", 2);
	if ((r = kw_secret_versions(c, o.pos[0], o.pos[1], &reply)) != 0) {
		ex = fail(c, r);
		goto out;
	}
	json_array_foreach(json_object_get(reply, "versions"), i, m) {
		if (o.version == 0 ||
		    json_integer_value(json_object_get(m, "version")) == (json_int_t)o.version) {
			found = m;
			break;
		}
	}
	if (found == NULL) {
		fprintf(stderr, "keywarden: secret '%s' has no version %" PRIu64 " in vault '%s'\n",
		    o.pos[1], o.version, o.pos[0]);
		ex = EX_NOTFOUND;
		goto out;
	}
	ex = show(found);
 out:
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static int
do_update(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *changes = NULL, *meta = NULL;
	int r, ex;

	PARSE("EdctTnev", 2);
	if ((changes = opts_attrs(&o)) == NULL) {
		ex = fail(NULL, -ENOMEM);
		goto out;
	}
	if (json_object_size(changes) == 0) {
		ex = usage_error("nothing to change: give --enable, --disable, "
		    "--content-type, --tag, --clear-tags, --not-before or --expires");
		goto out;
	}
	r = kw_secret_update(c, o.pos[0], o.pos[1], o.version, changes, &meta);
	ex = show_result(c, r, meta);
 out:
	json_decref(changes);
	json_decref(meta);
	opts_free(&o);
	return ex;
}

static int
do_name_op(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *reply = NULL;
	const char *op = argv[0];
	int r, ex;

	PARSE("", 2);
	if (strcmp(op, "delete") == 0) {
		r = kw_secret_delete(c, o.pos[0], o.pos[1], &reply);
	} else if (strcmp(op, "recover") == 0) {
		r = kw_secret_recover(c, o.pos[0], o.pos[1], &reply);
	} else {
		r = kw_secret_purge(c, o.pos[0], o.pos[1]);
		if (r == 0 && (reply = json_pack("{s:s,s:s,s:b}", "vault", o.pos[0],
		    "name", o.pos[1], "purged", 1)) == NULL)
			r = -ENOMEM;
	}
	ex = show_result(c, r, reply);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static int
do_deleted(kw_client *c, int argc, char **argv)
{
	static const char *const cols[] = { "name", "version", "deleted",
	    "scheduled_purge", NULL };
	static const char *const heads[] = { "NAME", "VERSION", "DELETED",
	    "SCHEDULED-PURGE" };
	struct opts o;
	json_t *reply = NULL;
	int r, ex;

	PARSE("", 1);
	r = kw_deleted_list(c, o.pos[0], &reply);
	ex = show_list(c, r, reply, "deleted", cols, heads);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static int
do_vault_list(kw_client *c, int argc, char **argv)
{
	static const char *const cols[] = { "name", "key_version",
	    "purge_protection", "retention_days", NULL };
	static const char *const heads[] = { "NAME", "KEY-VERSION",
	    "PURGE-PROTECTION", "RETENTION-DAYS" };
	struct opts o;
	json_t *reply = NULL;
	int r, ex;

	PARSE("", 0);
	r = kw_vault_list(c, &reply);
	ex = show_list(c, r, reply, "vaults", cols, heads);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static int
do_backup(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *doc = NULL;
	char *s = NULL;
	int fd = -1, r, ex;

	PARSE("o", 1);
	if ((r = kw_vault_backup(c, o.pos[0], &doc)) != 0) {
		ex = fail(c, r);
		goto out;
	}
	if ((s = json_dumps(doc, JSON_COMPACT)) == NULL) {
		ex = fail(NULL, -ENOMEM);
		goto out;
	}
	if ((fd = open_output(o.output)) < 0) {
		ex = sys_fail("cannot create", o.output);
		goto out;
	}
	if ((r = write_all(fd, s, strlen(s))) != 0 || (r = write_all(fd, "\n", 1)) != 0) {
		errno = -r;
		ex = sys_fail("cannot write the backup to", o.output ? o.output : "stdout");
		goto out;
	}
	ex = EX_OK;
 out:
	if (fd > STDOUT_FILENO && close(fd) != 0 && ex == EX_OK)
		ex = sys_fail("cannot write the backup to", o.output);
	free(s);
	json_decref(doc);
	opts_free(&o);
	return ex;
}

static int
do_restore(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *doc = NULL, *reply = NULL;
	json_error_t je;
	int r, ex;

	PARSE("f", 1);
	if (o.file == NULL || strcmp(o.file, "-") == 0)
		doc = json_loadf(stdin, 0, &je);
	else
		doc = json_load_file(o.file, 0, &je);
	if (doc == NULL) {
		fprintf(stderr, "keywarden: %s:%d:%d: not a backup document: %s\n",
		    o.file ? o.file : "stdin", je.line, je.column, je.text);
		ex = EX_ERR;
		goto out;
	}
	r = kw_vault_restore(c, o.pos[0], doc, &reply);
	ex = show_result(c, r, reply);
 out:
	json_decref(doc);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static int
do_whoami(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *reply = NULL;
	int r, ex;

	PARSE("", 0);
	r = kw_whoami(c, &reply);
	ex = show_result(c, r, reply);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static int
do_health(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *report = NULL;
	int r, ex;

	PARSE("", 0);
	r = kw_health(c, &report);
	if (report != NULL) {
		ex = show(report);
		if (r != 0)
			ex = fail(c, r);
	} else {
		ex = fail(c, r);
	}
	json_decref(report);
	opts_free(&o);
	return ex;
}

/* Any request of the API, for what has no command of its own yet. */
static int
do_request(kw_client *c, int argc, char **argv)
{
	struct opts o;
	json_t *body = NULL, *reply = NULL;
	json_error_t je;
	int r, ex;

	PARSE("f", 2);
	if (o.file != NULL) {
		body = strcmp(o.file, "-") == 0 ? json_loadf(stdin, JSON_DECODE_ANY, &je) :
		    json_load_file(o.file, JSON_DECODE_ANY, &je);
		if (body == NULL) {
			fprintf(stderr, "keywarden: %s:%d:%d: not JSON: %s\n",
			    strcmp(o.file, "-") == 0 ? "stdin" : o.file, je.line, je.column, je.text);
			ex = EX_ERR;
			goto out;
		}
	}
	if ((r = kw_request(c, o.pos[0], o.pos[1], body, NULL, &reply)) != 0)
		ex = fail(c, r);
	else if (json_is_string(reply))
		ex = fputs(json_string_value(reply), stdout) < 0 ? EX_ERR : EX_OK;
	else
		ex = print_json(reply);
 out:
	json_decref(body);
	json_decref(reply);
	opts_free(&o);
	return ex;
}

static const struct cmd cmds[] = {
	{ "secret", "set", "set VAULT NAME [--file F] [--base64] [--content-type T] "
	    "[--tag K=V ...] [--disabled] [--not-before T] [--expires T] [--cas N]", do_set },
	{ "secret", "get", "get VAULT NAME [--version N] [--output F]", do_get },
	{ "secret", "list", "list VAULT [--prefix P]", do_list },
	{ "secret", "versions", "versions VAULT NAME", do_versions },
	{ "secret", "show", "show VAULT NAME [--version N]", do_show },
	{ "secret", "update", "update VAULT NAME [--enable|--disable] [--content-type T] "
	    "[--tag K=V ...] [--clear-tags] [--not-before T|none] [--expires T|none] "
	    "[--version N]", do_update },
	{ "secret", "delete", "delete VAULT NAME", do_name_op },
	{ "secret", "recover", "recover VAULT NAME", do_name_op },
	{ "secret", "purge", "purge VAULT NAME", do_name_op },
	{ "secret", "deleted", "deleted VAULT", do_deleted },
	{ "vault", "list", "list", do_vault_list },
	{ "vault", "rotate", "rotate VAULT [--wait]", cli_vault_rotate },
	{ "vault", "rotation", "rotation VAULT [--json]", cli_vault_rotation },
	{ "vault", "keys", "keys VAULT", cli_vault_keys },
	{ "vault", "retire", "retire VAULT --version N", cli_vault_retire },
	{ "vault", "destroy-key", "destroy-key VAULT --version N", cli_vault_retire },
	{ "key", "datakey", "datakey VAULT [--bytes N] [--no-plaintext] [--context K=V ...]",
	    cli_key_datakey },
	{ "key", "unwrap", "unwrap VAULT --wrapped B64 [--context K=V ...]", cli_key_unwrap },
	{ "key", "rewrap", "rewrap VAULT --wrapped B64 [--context K=V ...]", cli_key_unwrap },
	{ "key", "encrypt", "encrypt VAULT [--in F] [--out F] [--context K=V ...]   (<= 4 KiB)",
	    cli_key_crypt },
	{ "key", "decrypt", "decrypt VAULT [--in F] [--out F] [--context K=V ...]", cli_key_crypt },
	{ "sign-key", "create", "create VAULT NAME --type ec-p256|rsa-3072", cli_signkey_create },
	{ "sign-key", "rotate", "rotate VAULT NAME", cli_signkey_create },
	{ "sign-key", "destroy", "destroy VAULT NAME --version N   (not the newest)", cli_signkey_destroy },
	{ "sign-key", "disable", "disable VAULT NAME --version N   (neither signs nor verifies)", cli_signkey_disable },
	{ "sign-key", "enable", "enable VAULT NAME --version N", cli_signkey_enable },
	{ "sign-key", "list", "list VAULT", cli_signkey_list },
	{ "sign-key", "public", "public VAULT NAME [--version N] [--jwk]", cli_signkey_public },
	{ NULL, "sign", "sign VAULT NAME --alg ES256|RS256|PS256 [--in F] [--out F] [--jose]",
	    cli_sign },
	{ NULL, "verify", "verify VAULT NAME --alg A --signature F [--in F] [--version N]",
	    cli_verify },
	{ NULL, "encrypt-file", "encrypt-file VAULT --in F --out F [--context K=V ...]",
	    cli_file_crypt },
	{ NULL, "decrypt-file", "decrypt-file --in F --out F [--context K=V ...]", cli_file_crypt },
	{ NULL, "rewrap-file", "rewrap-file --in F [--out F] [--context K=V ...]   (after a rotation)",
	    cli_file_rewrap },
	{ NULL, "backup", "backup VAULT [--output F]", do_backup },
	{ NULL, "restore", "restore VAULT [--file F]", do_restore },
	{ NULL, "whoami", "whoami", do_whoami },
	{ NULL, "health", "health", do_health },
	{ NULL, "request", "request METHOD PATH [--file JSON-BODY]", do_request },
	{ "policy", "check", "check [--user USER] FILE  (offline)", cli_policy_check },
	{ "policy", "explain", "explain [--uid N|--user U] [--gid N|--group G] [--groups G,...] "
	    "[--exe PATH] [--unit UNIT] ACTION VAULT[/NAME]", cli_policy_explain },
	{ "policy", "who-can", "who-can ACTION VAULT[/NAME]", cli_policy_who_can },
	{ "policy", "reload", "reload", cli_policy_reload },
	{ "audit", "verify", "verify [--no-seals] [FILE...|DIR]", cli_audit_verify },
	{ "audit", "tail", "tail [-f] [-n N] [--since SEQ]", cli_audit_tail },
	{ "audit", "query", "query [--vault V] [--name N] [--user U|--uid N] [--action A] "
	    "[--outcome O] [--from TIME] [--to TIME] [--since SEQ]", cli_audit_query },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void
help(FILE *f)
{
	fprintf(f, "usage: keywarden [--socket PATH] [--json] COMMAND [ARGS]\n\n"
	    "Commands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %s%s%s\n", cmds[i].group ? cmds[i].group : "",
		    cmds[i].group ? " " : "", cmds[i].usage);
	fprintf(f, "\nThe socket is PATH, else $KEYWARDEN_SOCKET, else %s.\n"
	    "A secret value is read from stdin or --file, never from the command line.\n"
	    "Exit status: 0 ok, 1 error, 2 usage, 3 not found, 4 denied, 5 conflict,\n"
	    "6 unavailable.  'keywarden COMMAND --help' and keywarden(1) say more.\n",
	    kw_default_socket());
}

int
main(int argc, char **argv)
{
	static const struct option gopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const struct cmd *cmd = NULL;
	kw_client *c = NULL;
	int ch, r, ex, first;

	/* Values, plaintexts and data keys pass through this process, often
	 * run as root: no core dump of it, and no tracing by its user. */
	if ((r = kw_secmem_harden_process()) != 0)
		fprintf(stderr, "keywarden: warning: cannot disable core dumps: %s\n", kw_strerror(r));
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:s:jhV", gopts, NULL)) != -1) {
		switch (ch) {
		case 's': opt_socket = optarg; break;
		case 'j': opt_json = 1; break;
		case 'h': help(stdout); return EX_OK;
		case 'V': printf("keywarden %s\n", PACKAGE_VERSION); return EX_OK;
		case ':': return usage_error("option %s needs a value", argv[optind - 1]);
		default: return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command given");
	first = optind;
	if (strcmp(argv[first], "help") == 0) {
		help(stdout);
		return EX_OK;
	}
	for (size_t i = 0; i < NCMDS && cmd == NULL; i++) {
		if (cmds[i].group == NULL && strcmp(argv[first], cmds[i].name) == 0)
			cmd = &cmds[i];
		else if (cmds[i].group != NULL && strcmp(argv[first], cmds[i].group) == 0 &&
		    first + 1 < argc && strcmp(argv[first + 1], cmds[i].name) == 0)
			cmd = &cmds[i];
	}
	if (cmd == NULL) {
		int group = 0;
		for (size_t i = 0; i < NCMDS; i++)
			if (cmds[i].group != NULL && strcmp(argv[first], cmds[i].group) == 0)
				group = 1;
		if (group && (first + 1 >= argc || strcmp(argv[first + 1], "--help") == 0 ||
		    strcmp(argv[first + 1], "-h") == 0)) {
			help(first + 1 >= argc ? stderr : stdout);
			return first + 1 >= argc ? EX_USAGE : EX_OK;
		}
		if (group)
			return usage_error("unknown command '%s %s'", argv[first], argv[first + 1]);
		return usage_error("unknown command '%s'", argv[first]);
	}
	cur_cmd = cmd;
	if (cmd->group != NULL)
		first++;
	if ((r = kw_client_new(&c, opt_socket)) != 0)
		return fail(NULL, r);
	ex = cmd->run(c, argc - first, argv + first);
	kw_client_free(c);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "keywarden: cannot write to stdout: %s\n", strerror(errno));
		if (ex == EX_OK)
			ex = EX_ERR;
	}
	return ex;
}
