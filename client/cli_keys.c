/*
 * cli_keys.c - `keywarden vault rotate|rotation|keys|retire|destroy-key`,
 * `key ...`, `sign-key ...`, `sign`, `verify`, `encrypt-file` and
 * `decrypt-file`.
 *
 * Plaintext (data keys, decrypted payloads and files) stays in kw_secalloc
 * memory and is written with write(2), not through stdio's buffers.  A
 * decrypted file appears under its name only once every chunk checked: it
 * is written to a temporary file (mode 0600) beside it and renamed.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "keywarden.h"
#include "client/cli.h"

#define EX_OK 0
#define EX_ERR 1
#define EX_USAGE 2

#define BLOB_MAX ((size_t)64 * 1024)    /* a ciphertext of key decrypt */
#define SIG_MAX ((size_t)16 * 1024)     /* a signature file */
#define POLL_NS (200L * 1000 * 1000)    /* rotate --wait */

/* ---- options --------------------------------------------------------------- */

enum {
	K_HELP = 'h', K_WAIT = 'w', K_JSON = 'j', K_VERSION = 'v', K_BYTES = 'B',
	K_NOPT = 'N', K_CONTEXT = 'x', K_WRAPPED = 'W', K_IN = 'i', K_OUT = 'o',
	K_TYPE = 't', K_JWK = 'J', K_ALG = 'a', K_JOSE = 'S', K_SIG = 's',
};

static const struct option k_long[] = {
	{ "help", no_argument, NULL, K_HELP },
	{ "wait", no_argument, NULL, K_WAIT },
	{ "json", no_argument, NULL, K_JSON },
	{ "version", required_argument, NULL, K_VERSION },
	{ "bytes", required_argument, NULL, K_BYTES },
	{ "no-plaintext", no_argument, NULL, K_NOPT },
	{ "context", required_argument, NULL, K_CONTEXT },
	{ "wrapped", required_argument, NULL, K_WRAPPED },
	{ "in", required_argument, NULL, K_IN },
	{ "out", required_argument, NULL, K_OUT },
	{ "type", required_argument, NULL, K_TYPE },
	{ "jwk", no_argument, NULL, K_JWK },
	{ "alg", required_argument, NULL, K_ALG },
	{ "jose", no_argument, NULL, K_JOSE },
	{ "signature", required_argument, NULL, K_SIG },
	{ NULL, 0, NULL, 0 }
};

struct kopts {
	int wait, no_plaintext, jwk, jose;
	uint64_t version, bytes;
	const char *in, *out, *wrapped, *type, *alg, *sig;
	json_t *context;        /* object, when --context was given */
	char *pos[3];
	int npos;
};

static void
kopts_free(struct kopts *o)
{
	json_decref(o->context);
	o->context = NULL;
}

/* One option of the key commands. */
static int
kopts_take(void *p, int ch, const char *name, const char *allowed)
{
	struct kopts *o = p;

	(void)allowed;
	switch (ch) {
	case K_JSON: opt_json = 1; break;
	case K_WAIT: o->wait = 1; break;
	case K_NOPT: o->no_plaintext = 1; break;
	case K_JWK: o->jwk = 1; break;
	case K_JOSE: o->jose = 1; break;
	case K_IN: o->in = optarg; break;
	case K_OUT: o->out = optarg; break;
	case K_WRAPPED: o->wrapped = optarg; break;
	case K_TYPE: o->type = optarg; break;
	case K_ALG: o->alg = optarg; break;
	case K_SIG: o->sig = optarg; break;
	case K_VERSION:
		return version_arg(optarg, &o->version);
	case K_BYTES:
		if (parse_u64(optarg, &o->bytes, 0) != 0 || o->bytes < 16 || o->bytes > 64)
			return usage_error("--bytes '%s' is not a number from 16 to 64", optarg);
		break;
	case K_CONTEXT:
		return kv_arg(&o->context, "--context", optarg);
	default:
		return usage_error("unknown option '%s'", name);
	}
	return 0;
}

/* The options of a key command (see cli_parse). */
static int
kopts_parse(int argc, char **argv, const char *allowed, int npos, struct kopts *o)
{
	memset(o, 0, sizeof(*o));
	return cli_parse(argc, argv, k_long, allowed, npos, o->pos, NPOS(o->pos), &o->npos,
	    kopts_take, o);
}

#define KPARSE(allowed, npos) CLI_PARSE(kopts_parse, kopts_free, o, allowed, npos)

/* ---- input and output ------------------------------------------------------- */

/* Read at most max bytes of path ("-" or NULL: stdin) into a secret;
 * -EFBIG when there are more. */
static int
read_input(const char *path, size_t max, kw_secret *out)
{
	kw_secret v = { NULL, 0 };
	int fd, r = 0;
	const char *what = path != NULL && strcmp(path, "-") != 0 ? path : "stdin";

	if ((fd = open_input(path)) < 0) {
		r = -errno;
		sys_fail("cannot open", path);
		return r;
	}
	if ((r = kw_secret_alloc(&v, max + 1)) != 0) {
		fprintf(stderr, "keywarden: out of secure memory\n");
		goto out;
	}
	v.len = 0;   /* the bytes read so far */
	for (;;) {
		ssize_t n = read(fd, v.data + v.len, max + 1 - v.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			fprintf(stderr, "keywarden: cannot read '%s': %s\n", what, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		v.len += (size_t)n;
		if (v.len > max) {
			fprintf(stderr, "keywarden: '%s' holds more than %zu bytes\n", what, max);
			r = -EFBIG;
			goto out;
		}
	}
	*out = v;
	v.data = NULL;
 out:
	if (fd > STDIN_FILENO)
		close(fd);
	kw_secret_clear(&v);
	return r;
}

/* Write n bytes to path ("-" or NULL: stdout; a file: created 0600). */
static int
write_output(const char *path, const void *p, size_t n)
{
	const char *what = path != NULL && strcmp(path, "-") != 0 ? path : "stdout";
	int fd, r;

	if ((fd = open_output(path)) < 0)
		return sys_fail("cannot create", path);
	if (fd == STDOUT_FILENO)
		fflush(stdout);
	r = write_all(fd, p, n);
	if (fd != STDOUT_FILENO && close(fd) != 0 && r == 0)
		r = -errno;
	if (r != 0) {
		errno = -r;
		return sys_fail("cannot write", what);
	}
	return EX_OK;
}

/* ---- vault rotate, rotation, keys, retire, destroy-key --------------------------- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The proof of a rotation: the records each older version still wraps.
 * Returns the sum. */
static int64_t
print_remaining(FILE *f, const json_t *st)
{
	const json_t *rem = json_object_get(st, "remaining");
	uint64_t vers[256];
	size_t n = 0;
	int64_t sum = 0;
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)rem, k, v)
		if (n < sizeof(vers) / sizeof(vers[0]))
			vers[n++] = strtoull(k, NULL, 10);
	qsort(vers, n, sizeof(vers[0]), cmp_u64);
	fprintf(f, "records still under older key versions:%s\n", n == 0 ? " none" : "");
	for (size_t i = 0; i < n; i++) {
		char key[24];
		json_int_t cnt;

		snprintf(key, sizeof(key), "%" PRIu64, vers[i]);
		cnt = json_integer_value(json_object_get(rem, key));
		sum += cnt;
		fprintf(f, "  v%s: %" JSON_INTEGER_FORMAT "\n", key, cnt);
	}
	return sum;
}

static const char *
st_state(const json_t *st)
{
	const char *s = json_string_value(json_object_get(st, "state"));

	return s != NULL ? s : "?";
}

/* One progress report on stderr: a bar redrawn in place on a terminal,
 * else a line at most every second and at each change of state. */
static void
progress(const json_t *st, int tty, int last)
{
	static char prev_state[16];
	static time_t prev_line;
	json_int_t done = json_integer_value(json_object_get(st, "done"));
	json_int_t total = json_integer_value(json_object_get(st, "total"));
	double rate = json_number_value(json_object_get(st, "rate_per_s"));
	double eta = json_number_value(json_object_get(st, "eta_s"));
	int pct;
	time_t now = time(NULL);

	/* the daemon's figures, trusted for nothing: the bar below is sized
	 * by pct */
	if (done < 0)
		done = 0;
	if (total < 0)
		total = 0;
	pct = total > 0 ? (done >= total ? 100 : (int)((double)done * 100.0 / (double)total)) :
	    (last ? 100 : 0);
	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	if (tty) {
		char bar[31];
		int fill = pct * 30 / 100;

		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '-', (size_t)(30 - fill));
		bar[30] = '\0';
		fprintf(stderr, "\r[%s] %3d%%  %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
		    "  %.0f/s  eta %.1fs  %s\033[K%s", bar, pct, done, total, rate, eta,
		    st_state(st), last ? "\n" : "");
		return;
	}
	if (!last && strcmp(prev_state, st_state(st)) == 0 && now - prev_line < 1)
		return;
	snprintf(prev_state, sizeof(prev_state), "%s", st_state(st));
	prev_line = now;
	fprintf(stderr, "rotation: %s %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
	    " (%d%%) %.0f/s eta %.1fs\n", st_state(st), done, total, pct, rate, eta);
}

int
cli_vault_rotate(kw_client *c, int argc, char **argv)
{
	struct timespec pause = { 0, POLL_NS };
	struct kopts o;
	json_t *st = NULL;
	int tty = isatty(STDERR_FILENO), r, ex;
	int64_t left;

	KPARSE("w", 1);
	r = kw_rotation_start(c, o.pos[0], &st);
	if (r == KW_E_CONFLICT && o.wait) {
		/* One runs already: follow it rather than fail. */
		fprintf(stderr, "keywarden: %s; following it\n", kw_client_last_error(c));
		r = kw_rotation_status(c, o.pos[0], &st);
	}
	if (r != 0) {
		ex = fail(c, r);
		goto out;
	}
	if (!o.wait) {
		ex = show(st);
		goto out;
	}
	for (;;) {
		const char *s = st_state(st);
		int end = strcmp(s, "done") == 0 || strcmp(s, "failed") == 0;

		progress(st, tty, end);
		if (end)
			break;
		(void)nanosleep(&pause, NULL);
		json_decref(st);
		st = NULL;
		if ((r = kw_rotation_status(c, o.pos[0], &st)) != 0) {
			if (tty)
				fputc('\n', stderr);
			ex = fail(c, r);
			goto out;
		}
	}
	if (opt_json) {
		const char *k;
		json_t *v;

		print_json(st);
		left = 0;
		json_object_foreach(json_object_get(st, "remaining"), k, v)
			left += json_integer_value(v);
	} else {
		printf("vault %s: rotation to key version %" JSON_INTEGER_FORMAT ": %s, "
		    "%" JSON_INTEGER_FORMAT " records rewrapped\n", o.pos[0],
		    json_integer_value(json_object_get(st, "key_version")), st_state(st),
		    json_integer_value(json_object_get(st, "done")));
		left = print_remaining(stdout, st);
		if (strcmp(st_state(st), "done") == 0)
			printf("files made by encrypt-file are not in the store: run keywarden "
			    "rewrap-file --in FILE on each before you retire an older version\n");
	}
	if (strcmp(st_state(st), "failed") == 0) {
		const char *e = json_string_value(json_object_get(st, "error"));
		fprintf(stderr, "keywarden: the rotation of vault '%s' failed: %s\n", o.pos[0],
		    e ? e : "no reason given");
		ex = EX_ERR;
	} else if (left != 0) {
		fprintf(stderr, "keywarden: the rotation of vault '%s' is done, but %" PRId64
		    " records still use older key versions\n", o.pos[0], left);
		ex = EX_ERR;
	} else {
		ex = EX_OK;
	}
 out:
	json_decref(st);
	kopts_free(&o);
	return ex;
}

int
cli_vault_rotation(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	json_t *st = NULL, *brief = NULL;
	int r, ex;

	KPARSE("", 1);
	if ((r = kw_rotation_status(c, o.pos[0], &st)) != 0) {
		ex = fail(c, r);
	} else if (opt_json) {
		ex = print_json(st);
	} else {
		/* The fields, then the proof on lines of its own. */
		if ((brief = json_deep_copy(st)) == NULL) {
			ex = fail(NULL, -ENOMEM);
			goto out;
		}
		json_object_del(brief, "remaining");
		ex = show(brief);
		print_remaining(stdout, st);
	}
 out:
	json_decref(brief);
	json_decref(st);
	kopts_free(&o);
	return ex;
}

int
cli_vault_keys(kw_client *c, int argc, char **argv)
{
	static const char *const cols[] = { "version", "current", "state", "created",
	    "retired", "records", "in_token", NULL };
	static const char *const heads[] = { "VERSION", "CURRENT", "STATE", "CREATED",
	    "RETIRED", "RECORDS", "IN-TOKEN" };
	struct kopts o;
	json_t *reply = NULL, *k;
	json_int_t cur;
	size_t i;
	int r, ex;

	KPARSE("", 1);
	r = kw_master_key_list(c, o.pos[0], &reply);
	if (r == 0 && !opt_json) {
		/* A column that marks the current version. */
		cur = json_integer_value(json_object_get(reply, "current"));
		json_array_foreach(json_object_get(reply, "keys"), i, k)
			json_object_set_new(k, "current", json_string(
			    json_integer_value(json_object_get(k, "version")) == cur ? "*" : ""));
	}
	ex = show_list(c, r, reply, "keys", cols, heads);
	json_decref(reply);
	kopts_free(&o);
	return ex;
}

/* vault retire and vault destroy-key. */
int
cli_vault_retire(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	json_t *key = NULL;
	int destroy = strcmp(argv[0], "destroy-key") == 0, r, ex;

	KPARSE("v", 1);
	if (o.version == 0) {
		ex = usage_error("--version N is required: the master-key version to %s",
		    destroy ? "destroy" : "retire");
		goto out;
	}
	r = destroy ? kw_master_key_destroy(c, o.pos[0], o.version, &key) :
	    kw_master_key_retire(c, o.pos[0], o.version, &key);
	ex = show_result(c, r, key);
 out:
	json_decref(key);
	kopts_free(&o);
	return ex;
}

/* ---- key datakey, unwrap, rewrap, encrypt, decrypt --------------------------------- */

/* A buffer in secure memory for a line of JSON that carries a secret. */
struct sline {
	char *p;
	size_t len, cap;
};

static int
sline_add(struct sline *l, const char *s, size_t n)
{
	if (l->len + n + 1 > l->cap) {
		size_t cap = (l->len + n + 1) * 2;
		char *np = kw_secalloc(cap);

		if (np == NULL)
			return -ENOMEM;
		if (l->len > 0)
			memcpy(np, l->p, l->len);
		kw_secfree(l->p);
		l->p = np;
		l->cap = cap;
	}
	memcpy(l->p + l->len, s, n);
	l->len += n;
	l->p[l->len] = '\0';
	return 0;
}

/* Append "name":"<base64 of the bytes>" (with a leading comma unless first). */
static int
sline_b64(struct sline *l, const char *name, const void *p, size_t n)
{
	kw_secret b = { NULL, 0 };
	int r;

	if ((r = kw_base64_encode(p, n, &b)) != 0)
		return r;
	if ((r = sline_add(l, l->len > 1 ? ",\"" : "\"", l->len > 1 ? 2 : 1)) == 0 &&
	    (r = sline_add(l, name, strlen(name))) == 0 &&
	    (r = sline_add(l, "\":\"", 3)) == 0 &&
	    (r = sline_add(l, (const char *)b.data, b.len)) == 0)
		r = sline_add(l, "\"", 1);
	kw_secret_clear(&b);
	return r;
}

/* Print {"plaintext"?,"wrapped"?,"key_version"} on one line to stdout. */
static int
print_keyline(const kw_secret *pt, const uint8_t *w, size_t wlen, uint64_t kv)
{
	struct sline l = { NULL, 0, 0 };
	char tail[48];
	int r;

	snprintf(tail, sizeof(tail), "%s\"key_version\":%" PRIu64 "}\n",
	    pt != NULL || w != NULL ? "," : "", kv);
	if ((r = sline_add(&l, "{", 1)) != 0 ||
	    (pt != NULL && (r = sline_b64(&l, "plaintext", pt->data, pt->len)) != 0) ||
	    (w != NULL && (r = sline_b64(&l, "wrapped", w, wlen)) != 0) ||
	    (r = sline_add(&l, tail, strlen(tail))) != 0) {
		kw_secfree(l.p);
		return fail(NULL, r);
	}
	r = write_output(NULL, l.p, l.len);
	kw_secfree(l.p);
	return r;
}

int
cli_key_datakey(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	kw_secret pt = { NULL, 0 };
	uint8_t *w = NULL;
	size_t wlen = 0;
	uint64_t kv = 0;
	int r, ex;

	KPARSE("BNx", 1);
	r = kw_datakey(c, o.pos[0], (size_t)o.bytes, o.context, o.no_plaintext ? NULL : &pt,
	    &w, &wlen, &kv);
	ex = r != 0 ? fail(c, r) : print_keyline(o.no_plaintext ? NULL : &pt, w, wlen, kv);
	kw_secret_clear(&pt);
	free(w);
	kopts_free(&o);
	return ex;
}

/* key unwrap and key rewrap. */
int
cli_key_unwrap(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	kw_secret in = { NULL, 0 }, pt = { NULL, 0 };
	uint8_t *w = NULL;
	size_t wlen = 0;
	uint64_t kv = 0;
	int rewrap = strcmp(argv[0], "rewrap") == 0, r, ex;

	KPARSE("Wx", 1);
	if (o.wrapped == NULL) {
		ex = usage_error("--wrapped B64 is required: the wrapped data key");
		goto out;
	}
	if (kw_base64_decode(o.wrapped, strlen(o.wrapped), &in) != 0 || in.len == 0) {
		ex = usage_error("--wrapped is not base64");
		goto out;
	}
	r = rewrap ? kw_rewrap(c, o.pos[0], in.data, in.len, o.context, &w, &wlen, &kv) :
	    kw_unwrap(c, o.pos[0], in.data, in.len, o.context, &pt, &kv);
	/* One of the two: the new wrapped key (w), or the plaintext. */
	ex = r != 0 ? fail(c, r) : print_keyline(rewrap ? NULL : &pt, w, wlen, kv);
 out:
	kw_secret_clear(&in);
	kw_secret_clear(&pt);
	free(w);
	kopts_free(&o);
	return ex;
}

/* key encrypt and key decrypt: a payload of at most 4 KiB in the daemon. */
int
cli_key_crypt(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	kw_secret in = { NULL, 0 }, pt = { NULL, 0 };
	uint8_t *ct = NULL;
	size_t ctlen = 0;
	int enc = strcmp(argv[0], "encrypt") == 0, r, ex;

	KPARSE("iox", 1);
	if ((r = read_input(o.in, enc ? KW_ENCRYPT_MAX : BLOB_MAX, &in)) != 0) {
		if (r == -EFBIG && enc)
			fprintf(stderr, "keywarden: key encrypt takes at most %d bytes; "
			    "use encrypt-file for more\n", KW_ENCRYPT_MAX);
		ex = EX_ERR;
		goto out;
	}
	r = enc ? kw_encrypt(c, o.pos[0], in.data, in.len, o.context, &ct, &ctlen, NULL) :
	    kw_decrypt(c, o.pos[0], in.data, in.len, o.context, &pt, NULL);
	if (r != 0)
		ex = fail(c, r);
	else
		ex = enc ? write_output(o.out, ct, ctlen) : write_output(o.out, pt.data, pt.len);
 out:
	kw_secret_clear(&in);
	kw_secret_clear(&pt);
	free(ct);
	kopts_free(&o);
	return ex;
}

/* ---- sign-key create, rotate, list, public ------------------------------------------ */

/* "label: 1,2,3", a line. */
static void
print_versions(const char *label, const json_t *arr)
{
	const json_t *x;
	size_t i;

	printf("%s:", label);
	json_array_foreach(arr, i, x)
		printf("%s%" JSON_INTEGER_FORMAT, i ? "," : " ", json_integer_value(x));
	putchar('\n');
}

static int
show_signkey(const json_t *key)
{
	static const char *const fields[] = { "name", "type", "version", "kid", NULL };
	json_t *v;
	size_t i;

	if (opt_json)
		return print_json(key);
	for (i = 0; fields[i] != NULL; i++) {
		v = json_object_get(key, fields[i]);
		if (json_is_string(v))
			printf("%s: %s\n", fields[i], json_string_value(v));
		else if (json_is_integer(v))
			printf("%s: %" JSON_INTEGER_FORMAT "\n", fields[i], json_integer_value(v));
	}
	if (json_is_boolean(v = json_object_get(key, "enabled")))
		printf("enabled: %s\n", json_is_true(v) ? "yes" : "no");
	if (json_is_array(v = json_object_get(key, "versions")))
		print_versions("versions", v);
	if (json_is_array(v = json_object_get(key, "disabled_versions")) && json_array_size(v) > 0)
		print_versions("disabled versions", v);
	return EX_OK;
}

/* sign-key create and sign-key rotate. */
int
cli_signkey_create(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	json_t *key = NULL;
	int create = strcmp(argv[0], "create") == 0, r, ex;

	KPARSE(create ? "t" : "", 2);
	if (create && (o.type == NULL ||
	    (strcmp(o.type, "ec-p256") != 0 && strcmp(o.type, "rsa-3072") != 0))) {
		ex = usage_error("--type ec-p256 or --type rsa-3072 is required");
		goto out;
	}
	r = create ? kw_signkey_create(c, o.pos[0], o.pos[1], o.type, &key) :
	    kw_signkey_rotate(c, o.pos[0], o.pos[1], &key);
	ex = r != 0 ? fail(c, r) : show_signkey(key);
 out:
	json_decref(key);
	kopts_free(&o);
	return ex;
}

/* sign-key destroy|disable|enable VAULT NAME --version N */
static int
signkey_version_op(kw_client *c, int argc, char **argv, const char *op)
{
	struct kopts o;
	json_t *key = NULL;
	int r, ex;

	KPARSE("v", 2);
	if (o.version == 0) {
		ex = usage_error("--version N is required: the version to %s", op);
		goto out;
	}
	r = strcmp(op, "destroy") == 0 ? kw_signkey_destroy(c, o.pos[0], o.pos[1], o.version, &key) :
	    kw_signkey_set_enabled(c, o.pos[0], o.pos[1], o.version, strcmp(op, "enable") == 0, &key);
	ex = r != 0 ? fail(c, r) : show_signkey(key);
 out:
	json_decref(key);
	kopts_free(&o);
	return ex;
}

int
cli_signkey_destroy(kw_client *c, int argc, char **argv)
{
	return signkey_version_op(c, argc, argv, "destroy");
}

int
cli_signkey_disable(kw_client *c, int argc, char **argv)
{
	return signkey_version_op(c, argc, argv, "disable");
}

int
cli_signkey_enable(kw_client *c, int argc, char **argv)
{
	return signkey_version_op(c, argc, argv, "enable");
}

int
cli_signkey_list(kw_client *c, int argc, char **argv)
{
	static const char *const cols[] = { "name", "type", "version", "kid", "disabled_versions", NULL };
	static const char *const heads[] = { "NAME", "TYPE", "VERSION", "KID", "DISABLED" };
	struct kopts o;
	json_t *reply = NULL;
	int r, ex;

	KPARSE("", 1);
	r = kw_signkey_list(c, o.pos[0], &reply);
	ex = show_list(c, r, reply, "keys", cols, heads);
	json_decref(reply);
	kopts_free(&o);
	return ex;
}

int
cli_signkey_public(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	json_t *key = NULL, *jwk;
	const char *pem;
	int r, ex;

	KPARSE("vJ", 2);
	if ((r = kw_signkey_get(c, o.pos[0], o.pos[1], o.version, &key)) != 0) {
		ex = fail(c, r);
	} else if (o.jwk) {
		if ((jwk = json_object_get(key, "jwk")) == NULL) {
			fprintf(stderr, "keywarden: keywardend sent no JWK for '%s'\n", o.pos[1]);
			ex = EX_ERR;
		} else {
			ex = print_json(jwk);
		}
	} else if ((pem = json_string_value(json_object_get(key, "public_key_pem"))) == NULL) {
		fprintf(stderr, "keywarden: keywardend sent no public key for '%s'\n", o.pos[1]);
		ex = EX_ERR;
	} else {
		size_t n = strlen(pem);
		fputs(pem, stdout);
		if (n == 0 || pem[n - 1] != '\n')
			putchar('\n');
		ex = EX_OK;
	}
	json_decref(key);
	kopts_free(&o);
	return ex;
}

/* ---- sign and verify ------------------------------------------------------------- */

/* SHA-256 of path ("-" or NULL: stdin), read in pieces: any size. */
static int
digest_input(const char *path, uint8_t md[32])
{
	const char *what = path != NULL && strcmp(path, "-") != 0 ? path : "stdin";
	EVP_MD_CTX *ctx = NULL;
	uint8_t buf[65536];
	unsigned int mdlen = 0;
	int fd, ex = EX_ERR;

	if ((fd = open_input(path)) < 0)
		return sys_fail("cannot open", path);
	if ((ctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		fprintf(stderr, "keywarden: OpenSSL cannot compute SHA-256\n");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sys_fail("cannot read", what);
			goto out;
		}
		if (n == 0)
			break;
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			goto out;
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
		goto out;
	ex = EX_OK;
 out:
	EVP_MD_CTX_free(ctx);
	if (fd > STDIN_FILENO)
		close(fd);
	return ex;
}

int
cli_sign(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	uint8_t md[32], *sig = NULL;
	size_t siglen = 0;
	int r, ex;

	KPARSE("aioS", 2);
	if (o.alg == NULL) {
		ex = usage_error("--alg is required: ES256, RS256 or PS256");
		goto out;
	}
	if ((ex = digest_input(o.in, md)) != EX_OK)
		goto out;
	if ((r = kw_sign(c, o.pos[0], o.pos[1], o.alg, md, sizeof(md),
	    KW_SIGN_DIGEST | (o.jose ? KW_SIGN_JOSE : 0), &sig, &siglen, NULL)) != 0)
		ex = fail(c, r);
	else
		ex = write_output(o.out, sig, siglen);
 out:
	free(sig);
	kopts_free(&o);
	return ex;
}

int
cli_verify(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	kw_secret sig = { NULL, 0 };
	uint8_t md[32];
	int valid = 0, r, ex;

	KPARSE("aisv", 2);
	if (o.alg == NULL || o.sig == NULL) {
		ex = usage_error("--alg and --signature FILE are required");
		goto out;
	}
	if (o.in != NULL && strcmp(o.in, "-") == 0 && strcmp(o.sig, "-") == 0) {
		ex = usage_error("the message and the signature cannot both come from stdin");
		goto out;
	}
	if (read_input(o.sig, SIG_MAX, &sig) != 0) {
		ex = EX_ERR;
		goto out;
	}
	if (sig.len == 0) {
		fprintf(stderr, "keywarden: the signature file '%s' is empty\n", o.sig);
		ex = EX_ERR;
		goto out;
	}
	if ((ex = digest_input(o.in, md)) != EX_OK)
		goto out;
	if ((r = kw_verify(c, o.pos[0], o.pos[1], o.alg, md, sizeof(md), KW_SIGN_DIGEST,
	    sig.data, sig.len, o.version, &valid)) != 0) {
		ex = fail(c, r);
		goto out;
	}
	if (opt_json)
		printf("{\"valid\":%s}\n", valid ? "true" : "false");
	else
		printf("signature: %s\n", valid ? "valid" : "INVALID");
	ex = valid ? EX_OK : EX_ERR;
 out:
	kw_secret_clear(&sig);
	kopts_free(&o);
	return ex;
}

/* ---- encrypt-file and decrypt-file -------------------------------------------------- */

/* The temporary output, removed if a signal ends us before the rename. */
static char tmp_path[4096];
static volatile sig_atomic_t tmp_live;

static void
on_signal(int sig)
{
	if (tmp_live)
		(void)unlink(tmp_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Create "<dir of out>/.<base of out>.XXXXXX" (mode 0600), to be removed
 * by a signal that ends us before tmp_commit. */
static FILE *
tmp_open(const char *out)
{
	char *d1 = strdup(out), *d2 = strdup(out);
	struct sigaction sa;
	FILE *f = NULL;
	int fd = -1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (d1 == NULL || d2 == NULL)
		goto out;
	if ((size_t)snprintf(tmp_path, sizeof(tmp_path), "%s/.%s.XXXXXX", dirname(d1),
	    basename(d2)) >= sizeof(tmp_path)) {
		errno = ENAMETOOLONG;
		goto out;
	}
	if ((fd = mkostemp(tmp_path, O_CLOEXEC)) < 0)
		goto out;
	tmp_live = 1;
	if (fchmod(fd, 0600) != 0 || (f = fdopen(fd, "wb")) == NULL) {
		int e = errno;
		close(fd);
		(void)unlink(tmp_path);
		tmp_live = 0;
		errno = e;
	}
 out:
	free(d1);
	free(d2);
	return f;
}

/* Make the temporary file durable and rename it to dest, durably: EX_OK,
 * or an exit code with the error told.  Closes *out. */
static int
tmp_commit(FILE **out, const char *dest)
{
	char *d = NULL;
	int r, dfd;

	r = fflush(*out) != 0 || fsync(fileno(*out)) != 0;
	if (fclose(*out) != 0)
		r = 1;
	*out = NULL;
	if (r != 0)
		return sys_fail("cannot write", tmp_path);
	if (rename(tmp_path, dest) != 0)
		return sys_fail("cannot rename the output to", dest);
	tmp_live = 0;
	/* The rename itself, durable before we say it is done. */
	if ((d = strdup(dest)) == NULL)
		return sys_fail("cannot sync the directory of", dest);
	if ((dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(dfd) != 0) {
		r = sys_fail("cannot sync the directory of", dest);
		if (dfd >= 0)
			close(dfd);
		free(d);
		return r;
	}
	close(dfd);
	free(d);
	return EX_OK;
}

/* Close the temporary file (out may be NULL) and remove it, unless
 * tmp_commit renamed it. */
static void
tmp_discard(FILE *out)
{
	if (out != NULL)
		fclose(out);
	if (tmp_live) {
		(void)unlink(tmp_path);
		tmp_live = 0;
	}
}

/* encrypt-file VAULT and decrypt-file. */
int
cli_file_crypt(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	FILE *in = NULL, *out = NULL;
	int enc = strcmp(argv[0], "encrypt-file") == 0, r, ex = EX_ERR;

	KPARSE("iox", enc ? 1 : 0);
	if (o.in == NULL || o.out == NULL) {
		ex = usage_error("--in FILE and --out FILE are required");
		goto out;
	}
	if (strcmp(o.out, "-") == 0) {
		ex = usage_error("--out must be a file, which appears only once the whole "
		    "%s", enc ? "input is encrypted" : "file has been checked");
		goto out;
	}
	if (strcmp(o.in, "-") == 0)
		in = stdin;
	else if ((in = fopen(o.in, "rbe")) == NULL) {
		ex = sys_fail("cannot open", o.in);
		goto out;
	}
	if ((out = tmp_open(o.out)) == NULL) {
		ex = sys_fail("cannot create a temporary file beside", o.out);
		goto out;
	}
	/* No copies of plaintext in stdio's buffers: it goes straight from the
	 * library's secure chunk buffer to the file and back. */
	(void)setvbuf(enc ? in : out, NULL, _IONBF, 0);
	r = enc ? kw_file_encrypt(c, o.pos[0], o.context, in, out) :
	    kw_file_decrypt(c, o.context, in, out);
	if (r != 0) {
		ex = fail_on(c, r, strcmp(o.in, "-") == 0 ? "stdin" : o.in, "");
		goto out;
	}
	ex = tmp_commit(&out, o.out);
 out:
	tmp_discard(out);
	if (in != NULL && in != stdin)
		fclose(in);
	kopts_free(&o);
	return ex;
}

/* rewrap-file --in F [--out F]: the file's data key under the vault's
 * current master key.  In place unless --out: the new file is written
 * beside it, checked chunk by chunk, synced and renamed over it, with
 * the old one's mode (and owner, as root). */
int
cli_file_rewrap(kw_client *c, int argc, char **argv)
{
	struct kopts o;
	struct stat st;
	FILE *in = NULL, *out = NULL;
	const char *dest;
	uint64_t from = 0, to = 0;
	int r, ex = EX_ERR;

	KPARSE("iox", 0);
	if (o.in == NULL || strcmp(o.in, "-") == 0) {
		ex = usage_error("--in FILE is required (a file, not stdin)");
		goto out;
	}
	if (o.out != NULL && strcmp(o.out, "-") == 0) {
		ex = usage_error("--out must be a file, which appears only once the whole "
		    "file has been checked");
		goto out;
	}
	if (o.out != NULL && strcmp(o.out, o.in) == 0)
		o.out = NULL;           /* in place, said twice */
	dest = o.out != NULL ? o.out : o.in;
	/* In place, the path is checked, then replaced: open it without
	 * following a symbolic link, and make sure below that the path still
	 * names the file opened (a directory others can write could swap it
	 * between the two). */
	{
		int fd = open(o.in, O_RDONLY | O_CLOEXEC | (o.out == NULL ? O_NOFOLLOW : 0));
		if (fd < 0 && errno == ELOOP) {
			char *real = realpath(o.in, NULL);
			ex = usage_error("%s is a symbolic link: rewrap the file it names%s%s", o.in,
			    real ? ", " : "", real ? real : "");
			free(real);
			goto out;
		}
		if (fd < 0 || (in = fdopen(fd, "rb")) == NULL) {
			if (fd >= 0)
				close(fd);
			ex = sys_fail("cannot open", o.in);
			goto out;
		}
	}
	if (fstat(fileno(in), &st) != 0) {
		ex = sys_fail("cannot open", o.in);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ex = usage_error("%s is not a regular file", o.in);
		goto out;
	}
	if (o.out == NULL) {
		/* In place, a new file takes the name: a symbolic link would be
		 * replaced rather than its target rewrapped, and another hard
		 * link would keep the old key, to be lost with it. */
		struct stat lst;
		if (lstat(o.in, &lst) != 0 || lst.st_dev != st.st_dev || lst.st_ino != st.st_ino) {
			ex = usage_error("%s changed while it was opened: nothing was written", o.in);
			goto out;
		}
		if (st.st_nlink > 1) {
			ex = usage_error("%s has %ju hard links, which would keep the old key: "
			    "remove the others, or write a copy with --out", o.in, (uintmax_t)st.st_nlink);
			goto out;
		}
	}
	if ((out = tmp_open(dest)) == NULL) {
		ex = sys_fail("cannot create a temporary file beside", dest);
		goto out;
	}
	/* The owner first: a change of owner clears the set-id bits. */
	if (o.out == NULL && ((geteuid() == 0 && fchown(fileno(out), st.st_uid, st.st_gid) != 0) ||
	    fchmod(fileno(out), st.st_mode & 07777) != 0)) {
		ex = sys_fail("cannot give the new file the mode and owner of", o.in);
		goto out;
	}
	if ((r = kw_file_rewrap(c, o.context, in, out, &from, &to)) != 0) {
		ex = fail_on(c, r, o.in, "; the file is left as it was");
		goto out;
	}
	if (from == to && o.out == NULL) {
		printf("%s: already under the current master key (version %" PRIu64 "); "
		    "left as it is\n", o.in, to);
		ex = EX_OK;
		goto out;
	}
	if (from == to) {
		/* A copy was asked for: the bytes as they are. */
		if (fseek(in, 0, SEEK_SET) != 0) {
			ex = sys_fail("cannot read", o.in);
			goto out;
		}
		for (char buf[65536];;) {
			size_t n = fread(buf, 1, sizeof(buf), in);
			if (n > 0 && fwrite(buf, 1, n, out) != n) {
				ex = sys_fail("cannot write", tmp_path);
				goto out;
			}
			if (n < sizeof(buf))
				break;
		}
		if (ferror(in)) {
			ex = sys_fail("cannot read", o.in);
			goto out;
		}
	}
	if ((ex = tmp_commit(&out, dest)) != EX_OK)
		goto out;
	if (from == to)
		printf("%s: already under the current master key (version %" PRIu64 "); "
		    "copied to %s\n", o.in, to, dest);
	else
		printf("%s: data key rewrapped from master-key version %" PRIu64 " to %" PRIu64
		    "%s%s\n", o.in, from, to, o.out != NULL ? "; written to " : "",
		    o.out != NULL ? o.out : "");
 out:
	tmp_discard(out);
	if (in != NULL)
		fclose(in);
	kopts_free(&o);
	return ex;
}
