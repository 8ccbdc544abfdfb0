/*
 * kw_client.c - libkeywarden: HTTP/1.1 + JSON over the daemon's Unix socket.
 *
 * Secret values travel in kw_secalloc memory on our side: the request body of
 * a PUT is assembled there (the value never passes through a jansson string),
 * the reply body is collected there, and the "value" string that jansson
 * parsed out of a GET reply is wiped in place before the object is released.
 * What libcurl and jansson hold internally for the moment of the exchange is
 * beyond our reach.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "keywarden.h"
#include "kw_b64.h"

#define KW_URL_BASE "http://localhost"
#define KW_REPLY_MAX ((size_t)256 * 1024 * 1024)
#define KW_MSG_MAX 512

struct kw_client {
	CURL *curl;
	char *socket;
	long timeout;
	long status;
	char code[KW_CODE_MAX + 1];
	char msg[KW_MSG_MAX];
	char curlerr[CURL_ERROR_SIZE];
};

/* A growing buffer in secure memory. */
struct kw_buf {
	uint8_t *p;
	size_t len, cap;
	int overflow;
};

static void
buf_free(struct kw_buf *b)
{
	kw_secfree(b->p);   /* wipes */
	b->p = NULL;
	b->len = b->cap = 0;
}

static int
buf_add(struct kw_buf *b, const void *d, size_t n)
{
	if (n > KW_REPLY_MAX - b->len)
		return -EFBIG;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((np = kw_secalloc(cap)) == NULL)
			return -ENOMEM;
		if (b->len > 0)
			memcpy(np, b->p, b->len);
		kw_secfree(b->p);
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

const char *
kw_default_socket(void)
{
	return KW_RUNSTATEDIR "/keywarden.sock";
}

int
kw_client_new(kw_client **cp, const char *socket_path)
{
	kw_client *c;
	const char *env;

	if (socket_path == NULL || *socket_path == '\0') {
		env = getenv("KEYWARDEN_SOCKET");
		socket_path = (env != NULL && *env != '\0') ? env : kw_default_socket();
	}
	if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return kw_fail(-ENAMETOOLONG, "the socket path '%.200s...' is longer "
		    "than a Unix socket address allows (%zu bytes)",
		    socket_path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	c->timeout = 120;
	if ((c->socket = strdup(socket_path)) == NULL ||
	    (c->curl = curl_easy_init()) == NULL) {
		kw_client_free(c);
		return kw_fail(-ENOMEM, "cannot set up the HTTP client: out of memory");
	}
	*cp = c;
	return 0;
}

void
kw_client_free(kw_client *c)
{
	if (c == NULL)
		return;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	free(c->socket);
	free(c);
}

const char *
kw_client_socket(const kw_client *c)
{
	return c->socket;
}

void
kw_client_set_timeout(kw_client *c, long seconds)
{
	c->timeout = seconds < 0 ? 0 : seconds;
}

const char *
kw_client_last_error(const kw_client *c)
{
	return c->msg;
}

const char *
kw_client_last_code(const kw_client *c)
{
	return c->code;
}

long
kw_client_last_status(const kw_client *c)
{
	return c->status;
}

static void
err_reset(kw_client *c)
{
	c->status = 0;
	c->code[0] = '\0';
	c->msg[0] = '\0';
}

/* Record a failure on c and in the thread's detail; returns code. */
static int
err_set(kw_client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
err_set(kw_client *c, int code, const char *fmt, ...)
{
	unsigned char *r, *w;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	/* The text may come from the daemon: no control characters for the
	 * terminal it ends up on, C0 and DEL, nor C1 (U+0080 to U+009F, in
	 * UTF-8 C2 80 to C2 9F), which terminals obey in UTF-8 too: U+009B
	 * is CSI.  Each becomes one '?'. */
	for (r = w = (unsigned char *)c->msg; *r != '\0'; r++, w++) {
		if (r[0] == 0xc2 && r[1] >= 0x80 && r[1] <= 0x9f) {
			*w = '?';
			r++;
		} else
			*w = *r < 0x20 || *r == 0x7f ? '?' : *r;
	}
	*w = '\0';
	return kw_fail(code, "%s", c->msg);
}

int
kw_error_from_http(long status, const char *code)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
		return -EINVAL;
	case 403:
		if (code != NULL && strcmp(code, "key_retired") == 0)
			return KW_E_RETIRED;
		return KW_E_DENIED;
	case 404:
		return KW_E_NOT_FOUND;
	case 405:
		return -EOPNOTSUPP;
	case 409:
		return KW_E_CONFLICT;
	case 413:
		return KW_E_TOO_LARGE;
	case 500:
		return KW_E_INTERNAL;
	case 503:
		return KW_E_UNAVAILABLE;
	default:
		return KW_E_PROTOCOL;
	}
}

/* ---- time ---------------------------------------------------------------- */

static int
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int
kw_time_parse(const char *s, int64_t *secs)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	const char *p;

	if (s == NULL || strlen(s) < 20)
		return -EINVAL;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
	    s[16] != ':' || digits(s + 17, 2, &sec))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
		return -EINVAL;
	p = s + 19;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -EINVAL;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) ||
		    oh > 23 || om > 59)
			return -EINVAL;
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	if (sec == 60)      /* a leap second: the POSIX clock repeats :59 */
		sec = 59;
	*secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	    (int64_t)sign * (oh * 3600 + om * 60);
	return 0;
}

int
kw_time_format(int64_t secs, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)secs;

	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
	    tm.tm_year + 1900 < 0 || len < 21)
		return -EINVAL;
	/* Four digits of year, as RFC 3339 has them: strftime's %Y writes
	 * the year 999 as "999". */
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return 0;
}

/* ---- the exchange ---------------------------------------------------------- */

static size_t
on_data(char *d, size_t size, size_t n, void *arg)
{
	struct kw_buf *b = arg;

	if (buf_add(b, d, size * n) != 0) {
		b->overflow = 1;
		return 0;   /* makes curl fail with CURLE_WRITE_ERROR */
	}
	return size * n;
}

/*
 * One HTTP exchange.  On 0, *status is the status and *out the body (secure
 * memory, NUL-terminated; the caller frees it with buf_free).
 */
static int
exchange(kw_client *c, const char *method, const char *path,
    const void *body, size_t body_len, long *status, struct kw_buf *out)
{
	struct curl_slist *hdrs = NULL, *h;
	struct kw_buf reply = { NULL, 0, 0, 0 };
	char *url = NULL;
	CURLcode cr;
	long st = 0, oserr = 0;
	int r;

	err_reset(c);
	if (asprintf(&url, "%s%s", KW_URL_BASE, path) < 0) {
		url = NULL;
		r = err_set(c, -ENOMEM, "out of memory");
		goto out;
	}
	/* Reset the options of the last request; the connection stays. */
	curl_easy_reset(c->curl);
	c->curlerr[0] = '\0';
	/* No "Expect: 100-continue": the daemon answers the whole request. */
	if ((h = curl_slist_append(NULL, "Accept: application/json")) == NULL ||
	    (hdrs = h, (h = curl_slist_append(hdrs, "Expect:")) == NULL) ||
	    (body != NULL && (h = curl_slist_append(hdrs, "Content-Type: application/json")) == NULL)) {
		r = err_set(c, -ENOMEM, "out of memory");
		goto out;
	}
	if (curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, c->socket) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->curlerr) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->timeout) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &reply) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "libkeywarden/" PACKAGE_VERSION) != CURLE_OK) {
		r = err_set(c, KW_E_INTERNAL, "cannot set up the HTTP request: %s", c->curlerr);
		goto out;
	}
	if (strcmp(method, "HEAD") == 0)
		(void)curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
	if (body != NULL &&
	    (curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body) != CURLE_OK)) {
		r = err_set(c, KW_E_INTERNAL, "cannot set up the HTTP request body");
		goto out;
	}
	cr = curl_easy_perform(c->curl);
	if (cr != CURLE_OK) {
		(void)curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
		if (reply.overflow && cr == CURLE_WRITE_ERROR)
			r = err_set(c, KW_E_TOO_LARGE, "the reply of keywardend to %s %s "
			    "exceeds %zu bytes", method, path, KW_REPLY_MAX);
		else if (cr == CURLE_COULDNT_CONNECT)
			r = err_set(c, KW_E_UNAVAILABLE, "cannot connect to keywardend at "
			    "'%s': %s; is the daemon running, and is that its socket?",
			    c->socket, oserr ? strerror((int)oserr) : curl_easy_strerror(cr));
		else if (cr == CURLE_OPERATION_TIMEDOUT)
			r = err_set(c, KW_E_UNAVAILABLE, "keywardend at '%s' did not answer "
			    "%s %s in time: %s", c->socket, method, path,
			    c->curlerr[0] ? c->curlerr : curl_easy_strerror(cr));
		else if (cr == CURLE_OUT_OF_MEMORY)
			r = err_set(c, -ENOMEM, "out of memory during %s %s", method, path);
		else
			r = err_set(c, cr == CURLE_GOT_NOTHING || cr == CURLE_RECV_ERROR ||
			    cr == CURLE_SEND_ERROR ? KW_E_UNAVAILABLE : KW_E_PROTOCOL,
			    "%s %s to keywardend at '%s' failed: %s", method, path, c->socket,
			    c->curlerr[0] ? c->curlerr : curl_easy_strerror(cr));
		goto out;
	}
	if (curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &st) != CURLE_OK || st < 100) {
		r = err_set(c, KW_E_PROTOCOL, "keywardend at '%s' sent no HTTP status", c->socket);
		goto out;
	}
	if (reply.p == NULL && (r = buf_add(&reply, "", 0)) != 0) {
		r = err_set(c, r, "out of memory");
		goto out;
	}
	*status = st;
	*out = reply;
	reply.p = NULL;   /* handed to the caller */
	r = 0;
 out:
	buf_free(&reply);
	curl_slist_free_all(hdrs);
	free(url);
	return r;
}

/* Keep the daemon's error code on c as kw_client_last_code promises: a
 * word of [a-z0-9_.-], 1 to KW_CODE_MAX bytes, as it is; no code (NULL or
 * ""): ""; anything else: KW_CODE_INVALID.  It may come from whatever
 * answers on the socket, and a caller may print it, log it or use it as a
 * key. */
static void
code_set(kw_client *c, const char *code)
{
	size_t n = 0;

	if (code == NULL) {
		c->code[0] = '\0';
		return;
	}
	for (; code[n] != '\0' && n <= KW_CODE_MAX; n++) {
		char ch = code[n];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
		    ch == '.' || ch == '-'))
			break;
	}
	if (code[n] != '\0' || n > KW_CODE_MAX)
		snprintf(c->code, sizeof(c->code), "%s", KW_CODE_INVALID);
	else
		memcpy(c->code, code, n + 1);
}

/* Turn an error reply into a code, with the daemon's message kept on c. */
static int
http_error(kw_client *c, const char *method, const char *path, long status,
    const struct kw_buf *b)
{
	json_t *j = json_loadb((const char *)b->p, b->len, 0, NULL);
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	int r;

	code_set(c, code);
	r = kw_error_from_http(status, c->code);
	if (r == 0)
		r = KW_E_PROTOCOL;
	if (msg != NULL)
		err_set(c, r, "%s", msg);
	else
		err_set(c, r, "keywardend answered %s %s with HTTP status %ld "
		    "and no error message", method, path, status);
	c->status = status;
	json_decref(j);
	return r;
}

static int
content_is_json(kw_client *c)
{
	char *ct = NULL;

	if (curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK || ct == NULL)
		return 1;   /* no type said: try JSON */
	return strncasecmp(ct, "application/json", 16) == 0;
}

/*
 * An exchange whose 2xx reply is JSON.  accept503 lets a 503 with a JSON
 * body through (for health); it then returns KW_E_UNAVAILABLE with *reply.
 */
static int
call_raw(kw_client *c, const char *method, const char *path, const void *body,
    size_t body_len, int accept503, long *statusp, json_t **reply)
{
	struct kw_buf b = { NULL, 0, 0, 0 };
	json_t *j = NULL;
	json_error_t je;
	long status = 0;
	int r;

	if ((r = exchange(c, method, path, body, body_len, &status, &b)) != 0)
		goto out;
	if (!(status >= 200 && status < 300) && !(accept503 && status == 503)) {
		r = http_error(c, method, path, status, &b);
		goto out;
	}
	if (b.len == 0) {
		j = json_null();
	} else if (!content_is_json(c)) {
		j = json_stringn((const char *)b.p, b.len);
	} else if ((j = json_loadb((const char *)b.p, b.len, JSON_DECODE_ANY, &je)) == NULL) {
		r = err_set(c, KW_E_PROTOCOL, "keywardend answered %s %s with "
		    "malformed JSON: %s at byte %d", method, path, je.text, je.position);
		goto out;
	}
	if (j == NULL) {
		r = err_set(c, -ENOMEM, "out of memory");
		goto out;
	}
	if (status == 503) {
		if (!json_is_object(j)) {
			r = http_error(c, method, path, status, &b);
			goto out;
		}
		r = err_set(c, KW_E_UNAVAILABLE, "keywardend reports that it is degraded");
		c->status = status;
		snprintf(c->code, sizeof(c->code), "unavailable");
	} else {
		r = 0;
	}
	if (statusp != NULL)
		*statusp = status;
	if (reply != NULL) {
		*reply = j;
		j = NULL;
	}
 out:
	json_decref(j);
	buf_free(&b);
	return r;
}

/* An exchange with a JSON body (or none); *statusp (may be NULL) as call_raw. */
static int
call_json(kw_client *c, const char *method, const char *path, const json_t *body,
    long *statusp, json_t **reply)
{
	char *s = NULL;
	int r;

	if (body != NULL && (s = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		return err_set(c, -ENOMEM, "cannot encode the request body");
	r = call_raw(c, method, path, s, s ? strlen(s) : 0, 0, statusp, reply);
	free(s);
	return r;
}

int
kw_request(kw_client *c, const char *method, const char *path,
    const json_t *body, long *status, json_t **reply)
{
	if (method == NULL || path == NULL || path[0] != '/')
		return err_set(c, -EINVAL, "a request needs a method and a path starting with '/'");
	return call_json(c, method, path, body, status, reply);
}

/* ---- paths ----------------------------------------------------------------- */

/* Append s percent-encoded; '/' kept when keep_slash. */
static int
path_add(char **p, size_t *len, size_t *cap, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		int plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
		    ch == '~' || (keep_slash && ch == '/');

		if (*len + 4 > *cap) {
			size_t ncap = *cap ? *cap * 2 : 128;
			char *np = realloc(*p, ncap);
			if (np == NULL)
				return -ENOMEM;
			*p = np;
			*cap = ncap;
		}
		if (plain) {
			(*p)[(*len)++] = (char)ch;
		} else {
			(*p)[(*len)++] = '%';
			(*p)[(*len)++] = hex[ch >> 4];
			(*p)[(*len)++] = hex[ch & 15];
		}
		(*p)[*len] = '\0';
	}
	return 0;
}

/*
 * Build "/v1/vaults/{vault}" + mid + "{name}" + tail + query, percent-encoding
 * vault and name; query ("?k=v", already encoded) is appended as it is.
 * name, tail and query may be NULL.  Returns a malloc'd path or NULL (and
 * sets the error on c).
 */
static char *
secret_path(kw_client *c, const char *vault, const char *mid, const char *name,
    const char *tail, const char *query)
{
	char *p = NULL, *np;
	size_t len = 0, cap = 0;

	if (vault == NULL || *vault == '\0' || (mid != NULL && name != NULL && *name == '\0')) {
		err_set(c, -EINVAL, "a vault name%s is required", name ? " and a secret name" : "");
		return NULL;
	}
	if (path_add(&p, &len, &cap, "/v1/vaults/", 1) != 0 ||
	    path_add(&p, &len, &cap, vault, 0) != 0 ||
	    (mid != NULL && path_add(&p, &len, &cap, mid, 1) != 0) ||
	    (name != NULL && path_add(&p, &len, &cap, name, 1) != 0) ||
	    (tail != NULL && path_add(&p, &len, &cap, tail, 1) != 0)) {
		free(p);
		err_set(c, -ENOMEM, "out of memory");
		return NULL;
	}
	if (query != NULL && *query != '\0') {
		if ((np = realloc(p, len + strlen(query) + 1)) == NULL) {
			free(p);
			err_set(c, -ENOMEM, "out of memory");
			return NULL;
		}
		p = np;
		memcpy(p + len, query, strlen(query) + 1);
	}
	return p;
}

static char *
version_path(kw_client *c, const char *vault, const char *name, uint64_t version)
{
	char tail[40];

	if (version == 0)
		return secret_path(c, vault, "/secrets/", name, NULL, NULL);
	snprintf(tail, sizeof(tail), "/versions/%llu", (unsigned long long)version);
	return secret_path(c, vault, "/secrets/", name, tail, NULL);
}

/* ---- secrets ---------------------------------------------------------------- */

static int
utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t ch = s[i];
		size_t k;
		uint32_t cp;

		if (ch < 0x80) {
			if (ch == 0)
				return 0;   /* the daemon's strings are C strings */
			i++;
			continue;
		} else if ((ch & 0xe0) == 0xc0) {
			k = 1; cp = ch & 0x1f;
		} else if ((ch & 0xf0) == 0xe0) {
			k = 2; cp = ch & 0x0f;
		} else if ((ch & 0xf8) == 0xf0) {
			k = 3; cp = ch & 0x07;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* Append the value as a JSON string's contents (escaped) to b. */
static int
add_escaped(struct kw_buf *b, const uint8_t *s, size_t n)
{
	char esc[8];
	size_t start = 0;
	int r;

	for (size_t i = 0; i < n; i++) {
		uint8_t ch = s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f)
			continue;
		if ((r = buf_add(b, s + start, i - start)) != 0)
			return r;
		snprintf(esc, sizeof(esc), "\\u%04x", ch);
		if ((r = buf_add(b, esc, 6)) != 0)
			return r;
		start = i + 1;
	}
	r = buf_add(b, s + start, n - start);
	kw_wipe(esc, sizeof(esc));
	return r;
}

static int
add_base64(struct kw_buf *b, const uint8_t *s, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char q[4];
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		q[0] = tab[(v >> 18) & 63];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		r = buf_add(b, q, 4);
	}
	kw_wipe(q, sizeof(q));
	return r;
}

/* Decode base64 text (either alphabet, padding optional) into a fresh
 * secret. */
int
kw_base64_decode(const char *s, size_t n, kw_secret *out)
{
	kw_secret v = { NULL, 0 };
	int r;

	if ((r = kw_secret_alloc(&v, KWB64_MAX(n))) != 0)
		return r;
	if ((r = kwb64_decode(s, n, KWB64_ANY, v.data, &v.len)) != 0) {
		kw_secret_clear(&v);
		return r;
	}
	*out = v;
	return 0;
}

int
kw_base64_encode(const void *p, size_t n, kw_secret *out)
{
	struct kw_buf b = { NULL, 0, 0, 0 };
	int r;

	if ((r = buf_add(&b, "", 0)) != 0 || (r = add_base64(&b, p, n)) != 0) {
		buf_free(&b);
		return r;
	}
	out->data = b.p;   /* NUL-terminated by buf_add */
	out->len = b.len;
	return 0;
}

int
kw_secret_set(kw_client *c, const char *vault, const char *name,
    const void *value, size_t len, const json_t *attrs, int64_t cas,
    json_t **meta)
{
	struct kw_buf body = { NULL, 0, 0, 0 };
	json_t *rest = NULL;
	const char *enc;
	char *path = NULL, *tail = NULL, q[40];
	int r, as_b64;

	err_reset(c);
	if (value == NULL && len > 0)
		return err_set(c, -EINVAL, "no value given");
	if (attrs != NULL && !json_is_object(attrs))
		return err_set(c, -EINVAL, "the attributes of a secret must be a JSON object");
	if ((rest = attrs ? json_deep_copy(attrs) : json_object()) == NULL) {
		r = err_set(c, -ENOMEM, "out of memory");
		goto out;
	}
	json_object_del(rest, "value");
	enc = json_string_value(json_object_get(rest, "encoding"));
	if (enc != NULL && strcmp(enc, "base64") == 0) {
		as_b64 = 0;   /* the caller's bytes are base64 text already */
	} else if (enc != NULL && strcmp(enc, "utf-8") != 0) {
		r = err_set(c, -EINVAL, "encoding must be \"utf-8\" or \"base64\", not \"%.20s\"", enc);
		goto out;
	} else if (utf8_valid(value, len)) {
		as_b64 = 0;
		json_object_del(rest, "encoding");
	} else if (enc != NULL) {
		r = err_set(c, -EINVAL, "the value is not valid UTF-8 (or holds a NUL byte); "
		    "send it with encoding \"base64\"");
		goto out;
	} else {
		as_b64 = 1;
		if (json_object_set_new(rest, "encoding", json_string("base64")) != 0) {
			r = err_set(c, -ENOMEM, "out of memory");
			goto out;
		}
	}
	if ((tail = json_dumps(rest, JSON_COMPACT)) == NULL) {
		r = err_set(c, -ENOMEM, "cannot encode the attributes");
		goto out;
	}
	/* {"value":"...", + the other fields (tail without its '{'). */
	if ((r = buf_add(&body, "{\"value\":\"", 10)) != 0 ||
	    (r = as_b64 ? add_base64(&body, value, len) : add_escaped(&body, value, len)) != 0 ||
	    (r = buf_add(&body, "\"", 1)) != 0 ||
	    (strcmp(tail, "{}") != 0 && (r = buf_add(&body, ",", 1)) != 0) ||
	    (r = buf_add(&body, strcmp(tail, "{}") == 0 ? "}" : tail + 1,
	    strcmp(tail, "{}") == 0 ? 1 : strlen(tail + 1))) != 0) {
		r = err_set(c, r == -EFBIG ? KW_E_TOO_LARGE : r, "cannot build the request: %s",
		    kw_strerror(r));
		goto out;
	}
	if (cas >= 0)
		snprintf(q, sizeof(q), "?cas=%lld", (long long)cas);
	else
		q[0] = '\0';
	if ((path = secret_path(c, vault, "/secrets/", name, NULL, q)) == NULL) {
		r = kw_fail(-EINVAL, "%s", c->msg);
		goto out;
	}
	r = call_raw(c, "PUT", path, body.p, body.len, 0, NULL, meta);
 out:
	buf_free(&body);
	free(path);
	free(tail);
	json_decref(rest);
	return r;
}

int
kw_secret_get(kw_client *c, const char *vault, const char *name,
    uint64_t version, kw_secret *value, json_t **meta)
{
	kw_secret v = { NULL, 0 };
	json_t *j = NULL, *jv;
	const char *enc;
	char *path;
	int r;

	err_reset(c);
	if ((path = version_path(c, vault, name, version)) == NULL)
		return kw_fail(-EINVAL, "%s", c->msg);
	if ((r = call_raw(c, "GET", path, NULL, 0, 0, NULL, &j)) != 0)
		goto out;
	jv = json_object_get(j, "value");
	enc = json_string_value(json_object_get(j, "encoding"));
	if (!json_is_string(jv)) {
		r = err_set(c, KW_E_PROTOCOL, "keywardend's reply to GET %s has no value", path);
		goto out;
	}
	if (enc != NULL && strcmp(enc, "base64") == 0) {
		if ((r = kw_base64_decode(json_string_value(jv), json_string_length(jv), &v)) != 0) {
			r = err_set(c, KW_E_PROTOCOL, "keywardend sent a value that is not "
			    "valid base64 for GET %s", path);
			goto out;
		}
	} else if (enc == NULL || strcmp(enc, "utf-8") == 0) {
		if ((r = kw_secret_dup(&v, json_string_value(jv), json_string_length(jv))) != 0) {
			r = err_set(c, r, "out of secure memory for the value");
			goto out;
		}
	} else {
		r = err_set(c, KW_E_PROTOCOL, "keywardend sent a value in an unknown "
		    "encoding \"%.20s\"", enc);
		goto out;
	}
	/* The value's string goes before the object is handed out or freed:
	 * wiped in place, then removed (a copy would not be wiped). */
	kw_wipe((char *)json_string_value(jv), json_string_length(jv));
	json_object_del(j, "value");
	r = 0;
	*value = v;
	v.data = NULL;
	if (meta != NULL) {
		*meta = j;
		j = NULL;
	}
 out:
	if ((jv = json_object_get(j, "value")) != NULL && json_is_string(jv))
		kw_wipe((char *)json_string_value(jv), json_string_length(jv));
	json_decref(j);
	kw_secret_clear(&v);
	free(path);
	return r;
}

static int
simple(kw_client *c, const char *method, char *path, const json_t *body, json_t **reply)
{
	int r;

	if (path == NULL)
		return kw_fail(-EINVAL, "%s", c->msg);
	r = call_json(c, method, path, body, NULL, reply);
	free(path);
	return r;
}

/* method on /v1/vaults/{vault}<mid>{name}<tail> (name and tail may be
 * NULL), with no body. */
static int
vault_call(kw_client *c, const char *method, const char *vault, const char *mid,
    const char *name, const char *tail, json_t **reply)
{
	err_reset(c);
	return simple(c, method, secret_path(c, vault, mid, name, tail, NULL), NULL, reply);
}

int
kw_secret_list(kw_client *c, const char *vault, const char *prefix, json_t **reply)
{
	char *q = NULL;
	size_t len = 0, cap = 0;
	int r;

	err_reset(c);
	if (prefix != NULL && *prefix != '\0') {
		cap = 64;
		if ((q = malloc(cap)) == NULL)
			return err_set(c, -ENOMEM, "out of memory");
		memcpy(q, "?prefix=", 9);
		len = 8;
		if (path_add(&q, &len, &cap, prefix, 1) != 0) {
			free(q);
			return err_set(c, -ENOMEM, "out of memory");
		}
	}
	r = simple(c, "GET", secret_path(c, vault, "/secrets", NULL, NULL, q), NULL, reply);
	free(q);
	return r;
}

int
kw_secret_versions(kw_client *c, const char *vault, const char *name, json_t **reply)
{
	return vault_call(c, "GET", vault, "/secrets/", name, "/versions", reply);
}

int
kw_secret_update(kw_client *c, const char *vault, const char *name,
    uint64_t version, const json_t *changes, json_t **meta)
{
	err_reset(c);
	if (!json_is_object(changes))
		return err_set(c, -EINVAL, "the changes to a secret must be a JSON object");
	return simple(c, "PATCH", version_path(c, vault, name, version), changes, meta);
}

int
kw_secret_delete(kw_client *c, const char *vault, const char *name, json_t **reply)
{
	return vault_call(c, "DELETE", vault, "/secrets/", name, NULL, reply);
}

int
kw_secret_recover(kw_client *c, const char *vault, const char *name, json_t **meta)
{
	return vault_call(c, "POST", vault, "/deleted/", name, "/recover", meta);
}

int
kw_secret_purge(kw_client *c, const char *vault, const char *name)
{
	return vault_call(c, "DELETE", vault, "/deleted/", name, NULL, NULL);
}

int
kw_deleted_list(kw_client *c, const char *vault, json_t **reply)
{
	return vault_call(c, "GET", vault, "/deleted", NULL, NULL, reply);
}

int
kw_vault_list(kw_client *c, json_t **reply)
{
	return call_json(c, "GET", "/v1/vaults", NULL, NULL, reply);
}

int
kw_vault_backup(kw_client *c, const char *vault, json_t **doc)
{
	return vault_call(c, "GET", vault, "/backup", NULL, NULL, doc);
}

int
kw_vault_restore(kw_client *c, const char *vault, const json_t *doc, json_t **reply)
{
	err_reset(c);
	if (!json_is_object(doc))
		return err_set(c, -EINVAL, "a backup document is a JSON object");
	return simple(c, "POST", secret_path(c, vault, "/restore", NULL, NULL, NULL), doc, reply);
}

int
kw_whoami(kw_client *c, json_t **reply)
{
	return call_json(c, "GET", "/v1/whoami", NULL, NULL, reply);
}

int
kw_health(kw_client *c, json_t **report)
{
	return call_raw(c, "GET", "/v1/health", NULL, 0, 1, NULL, report);
}

/* ---- master keys and rotation ----------------------------------------------- */

int
kw_rotation_start(kw_client *c, const char *vault, json_t **status)
{
	return vault_call(c, "POST", vault, "/rotation", NULL, NULL, status);
}

int
kw_rotation_status(kw_client *c, const char *vault, json_t **status)
{
	return vault_call(c, "GET", vault, "/rotation", NULL, NULL, status);
}

int
kw_master_key_list(kw_client *c, const char *vault, json_t **reply)
{
	return vault_call(c, "GET", vault, "/master-keys", NULL, NULL, reply);
}

static int
master_key_op(kw_client *c, const char *vault, uint64_t version, const char *op,
    json_t **key)
{
	char mid[64];

	err_reset(c);
	if (version == 0 || version > INT64_MAX)
		return err_set(c, -EINVAL, "a master-key version is a number from 1");
	snprintf(mid, sizeof(mid), "/master-keys/%llu/%s", (unsigned long long)version, op);
	return vault_call(c, "POST", vault, mid, NULL, NULL, key);
}

int
kw_master_key_retire(kw_client *c, const char *vault, uint64_t version, json_t **key)
{
	return master_key_op(c, vault, version, "retire", key);
}

int
kw_master_key_destroy(kw_client *c, const char *vault, uint64_t version, json_t **key)
{
	return master_key_op(c, vault, version, "destroy", key);
}

/* ---- data keys and encryption ------------------------------------------------ */

static int
check_context(kw_client *c, const json_t *context)
{
	const char *k;
	json_t *v;

	if (context == NULL)
		return 0;
	if (!json_is_object(context))
		return err_set(c, -EINVAL, "an encryption context is a JSON object of strings");
	json_object_foreach((json_t *)context, k, v)
		if (!json_is_string(v))
			return err_set(c, -EINVAL, "the encryption context's \"%.64s\" is not a string", k);
	return 0;
}

/* An object with the context (if any) for the other fields of a body. */
static json_t *
rest_new(const json_t *context)
{
	json_t *rest = json_object();

	if (rest != NULL && context != NULL &&
	    json_object_set(rest, "context", (json_t *)context) != 0) {
		json_decref(rest);
		return NULL;
	}
	return rest;
}

/*
 * A request body {"<field>":"<base64 of the n bytes>", <the fields of rest>}
 * assembled in secure memory, so that a plaintext never passes through a
 * jansson string on the way out.
 */
static int
body_b64(kw_client *c, struct kw_buf *b, const char *field, const void *data,
    size_t n, const json_t *rest)
{
	char *tail = NULL;
	int r;

	if (rest != NULL && json_object_size(rest) > 0 &&
	    (tail = json_dumps(rest, JSON_COMPACT)) == NULL)
		return err_set(c, -ENOMEM, "cannot encode the request body");
	if ((r = buf_add(b, "{\"", 2)) != 0 || (r = buf_add(b, field, strlen(field))) != 0 ||
	    (r = buf_add(b, "\":\"", 3)) != 0 || (r = add_base64(b, data, n)) != 0 ||
	    (r = buf_add(b, "\"", 1)) != 0 ||
	    (tail != NULL && ((r = buf_add(b, ",", 1)) != 0 ||
	    (r = buf_add(b, tail + 1, strlen(tail + 1))) != 0)) ||
	    (tail == NULL && (r = buf_add(b, "}", 1)) != 0))
		r = err_set(c, r == -EFBIG ? KW_E_TOO_LARGE : r, "cannot build the request: %s",
		    kw_strerror(r));
	free(tail);
	return r;
}

/* Wipe the string j.field in place: it held a secret that jansson parsed. */
static void
wipe_field(json_t *j, const char *field)
{
	json_t *v = json_object_get(j, field);

	if (json_is_string(v))
		kw_wipe((char *)json_string_value(v), json_string_length(v));
}

/* The base64 string j.field, decoded into a secret. */
static int
reply_secret(kw_client *c, json_t *j, const char *field, const char *path, kw_secret *out)
{
	json_t *v = json_object_get(j, field);

	if (!json_is_string(v))
		return err_set(c, KW_E_PROTOCOL, "keywardend's reply to %s has no \"%s\"", path, field);
	if (kw_base64_decode(json_string_value(v), json_string_length(v), out) != 0)
		return err_set(c, KW_E_PROTOCOL, "keywardend sent a \"%s\" that is not valid "
		    "base64 for %s", field, path);
	return 0;
}

/* The base64 string j.field, decoded into malloc'd bytes. */
static int
reply_bytes(kw_client *c, json_t *j, const char *field, const char *path,
    uint8_t **out, size_t *len)
{
	kw_secret s = { NULL, 0 };
	uint8_t *p;
	int r;

	if ((r = reply_secret(c, j, field, path, &s)) != 0)
		return r;
	if ((p = malloc(s.len ? s.len : 1)) == NULL) {
		kw_secret_clear(&s);
		return err_set(c, -ENOMEM, "out of memory");
	}
	memcpy(p, s.data, s.len);
	*out = p;
	*len = s.len;
	kw_secret_clear(&s);
	return 0;
}

static uint64_t
reply_u64(const json_t *j, const char *field)
{
	json_int_t x = json_integer_value(json_object_get(j, field));

	return x > 0 ? (uint64_t)x : 0;
}

/*
 * POST {"<field>":"<base64 of data>","context":...} to the vault's
 * keys/<op>; *reply gets the parsed reply and *pathp the path (for
 * messages).  The caller wipes the reply's secret fields.
 */
static int
keys_post(kw_client *c, const char *vault, const char *op, const char *field,
    const void *data, size_t n, const json_t *context, char **pathp, json_t **reply)
{
	struct kw_buf body = { NULL, 0, 0, 0 };
	json_t *rest = NULL;
	char *path = NULL, mid[32];
	int r;

	err_reset(c);
	if (data == NULL && n > 0)
		return err_set(c, -EINVAL, "no %s given", field);
	if ((r = check_context(c, context)) != 0)
		return r;
	snprintf(mid, sizeof(mid), "/keys/%s", op);
	if ((path = secret_path(c, vault, mid, NULL, NULL, NULL)) == NULL) {
		r = kw_fail(-EINVAL, "%s", c->msg);
		goto out;
	}
	if ((rest = rest_new(context)) == NULL) {
		r = err_set(c, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = body_b64(c, &body, field, data, n, rest)) != 0)
		goto out;
	if ((r = call_raw(c, "POST", path, body.p, body.len, 0, NULL, reply)) != 0)
		goto out;
	*pathp = path;
	path = NULL;
 out:
	buf_free(&body);
	json_decref(rest);
	free(path);
	return r;
}

int
kw_datakey(kw_client *c, const char *vault, size_t bytes, const json_t *context,
    kw_secret *plaintext, uint8_t **wrapped, size_t *wrapped_len, uint64_t *key_version)
{
	kw_secret pt = { NULL, 0 };
	json_t *body = NULL, *j = NULL;
	uint8_t *w = NULL;
	size_t wlen = 0;
	char *path = NULL;
	int r;

	err_reset(c);
	if ((r = check_context(c, context)) != 0)
		return r;
	if (bytes == 0)
		bytes = 32;
	if (bytes < 16 || bytes > 64)
		return err_set(c, -EINVAL, "a data key has 16 to 64 bytes, not %zu", bytes);
	if ((body = json_pack("{s:I,s:b}", "bytes", (json_int_t)bytes,
	    "plaintext", plaintext != NULL)) == NULL ||
	    (context != NULL && json_object_set(body, "context", (json_t *)context) != 0)) {
		r = err_set(c, -ENOMEM, "out of memory");
		goto out;
	}
	if ((path = secret_path(c, vault, "/keys/datakey", NULL, NULL, NULL)) == NULL) {
		r = kw_fail(-EINVAL, "%s", c->msg);
		goto out;
	}
	if ((r = call_json(c, "POST", path, body, NULL, &j)) != 0)
		goto out;
	if (plaintext != NULL && (r = reply_secret(c, j, "plaintext", path, &pt)) != 0)
		goto out;
	if (plaintext != NULL && pt.len != bytes) {
		r = err_set(c, KW_E_PROTOCOL, "keywardend sent a data key of %zu bytes "
		    "for %zu asked", pt.len, bytes);
		goto out;
	}
	if ((r = reply_bytes(c, j, "wrapped", path, &w, &wlen)) != 0)
		goto out;
	if (plaintext != NULL) {
		*plaintext = pt;
		pt.data = NULL;
	}
	*wrapped = w;
	*wrapped_len = wlen;
	w = NULL;
	if (key_version != NULL)
		*key_version = reply_u64(j, "key_version");
	r = 0;
 out:
	wipe_field(j, "plaintext");
	json_decref(j);
	json_decref(body);
	kw_secret_clear(&pt);
	free(w);
	free(path);
	return r;
}

/* keys_post, then the reply's "plaintext" into *plaintext (a secret). */
static int
keys_post_secret(kw_client *c, const char *vault, const char *op, const char *field,
    const void *data, size_t n, const json_t *context, kw_secret *plaintext,
    uint64_t *key_version)
{
	kw_secret pt = { NULL, 0 };
	json_t *j = NULL;
	char *path = NULL;
	int r;

	if ((r = keys_post(c, vault, op, field, data, n, context, &path, &j)) != 0)
		goto out;
	if ((r = reply_secret(c, j, "plaintext", path, &pt)) != 0)
		goto out;
	*plaintext = pt;
	pt.data = NULL;
	if (key_version != NULL)
		*key_version = reply_u64(j, "key_version");
 out:
	wipe_field(j, "plaintext");
	json_decref(j);
	kw_secret_clear(&pt);
	free(path);
	return r;
}

/* keys_post, then the reply's out_field into malloc'd bytes. */
static int
keys_post_bytes(kw_client *c, const char *vault, const char *op, const char *field,
    const void *data, size_t n, const json_t *context, const char *out_field,
    uint8_t **out, size_t *out_len, uint64_t *key_version)
{
	json_t *j = NULL;
	char *path = NULL;
	int r;

	if ((r = keys_post(c, vault, op, field, data, n, context, &path, &j)) == 0 &&
	    (r = reply_bytes(c, j, out_field, path, out, out_len)) == 0 &&
	    key_version != NULL)
		*key_version = reply_u64(j, "key_version");
	json_decref(j);
	free(path);
	return r;
}

int
kw_unwrap(kw_client *c, const char *vault, const void *wrapped, size_t wrapped_len,
    const json_t *context, kw_secret *plaintext, uint64_t *key_version)
{
	return keys_post_secret(c, vault, "unwrap", "wrapped", wrapped, wrapped_len, context,
	    plaintext, key_version);
}

int
kw_rewrap(kw_client *c, const char *vault, const void *wrapped, size_t wrapped_len,
    const json_t *context, uint8_t **rewrapped, size_t *rewrapped_len,
    uint64_t *key_version)
{
	return keys_post_bytes(c, vault, "rewrap", "wrapped", wrapped, wrapped_len, context,
	    "wrapped", rewrapped, rewrapped_len, key_version);
}

int
kw_encrypt(kw_client *c, const char *vault, const void *plaintext, size_t len,
    const json_t *context, uint8_t **ciphertext, size_t *ct_len, uint64_t *key_version)
{
	if (len > KW_ENCRYPT_MAX)
		return err_set(c, KW_E_TOO_LARGE, "the daemon encrypts at most %d bytes, "
		    "not %zu; use a data key (kw_datakey, kw_file_encrypt) for more",
		    KW_ENCRYPT_MAX, len);
	return keys_post_bytes(c, vault, "encrypt", "plaintext", plaintext, len, context,
	    "ciphertext", ciphertext, ct_len, key_version);
}

int
kw_decrypt(kw_client *c, const char *vault, const void *ciphertext, size_t ct_len,
    const json_t *context, kw_secret *plaintext, uint64_t *key_version)
{
	return keys_post_secret(c, vault, "decrypt", "ciphertext", ciphertext, ct_len, context,
	    plaintext, key_version);
}

/* ---- signing keys ------------------------------------------------------------- */

int
kw_signkey_create(kw_client *c, const char *vault, const char *name, const char *type,
    json_t **key)
{
	json_t *body;
	int r;

	err_reset(c);
	if (name == NULL || *name == '\0' || type == NULL)
		return err_set(c, -EINVAL, "a signing key needs a name and a type");
	if ((body = json_pack("{s:s,s:s}", "name", name, "type", type)) == NULL)
		return err_set(c, -EINVAL, "the name or type of the signing key is not valid UTF-8");
	r = simple(c, "POST", secret_path(c, vault, "/signing-keys", NULL, NULL, NULL), body, key);
	json_decref(body);
	return r;
}

int
kw_signkey_rotate(kw_client *c, const char *vault, const char *name, json_t **key)
{
	return vault_call(c, "POST", vault, "/signing-keys/", name, "/rotate", key);
}

/* POST .../signing-keys/{name}/versions/{version}/{what}. */
static int
signkey_version_call(kw_client *c, const char *vault, const char *name, uint64_t version,
    const char *what, json_t **key)
{
	char op[48];

	snprintf(op, sizeof(op), "/versions/%llu/%s", (unsigned long long)version, what);
	return vault_call(c, "POST", vault, "/signing-keys/", name, op, key);
}

int
kw_signkey_destroy(kw_client *c, const char *vault, const char *name, uint64_t version,
    json_t **key)
{
	return signkey_version_call(c, vault, name, version, "destroy", key);
}

int
kw_signkey_set_enabled(kw_client *c, const char *vault, const char *name, uint64_t version,
    int enabled, json_t **key)
{
	return signkey_version_call(c, vault, name, version, enabled ? "enable" : "disable", key);
}

int
kw_signkey_list(kw_client *c, const char *vault, json_t **reply)
{
	return vault_call(c, "GET", vault, "/signing-keys", NULL, NULL, reply);
}

int
kw_signkey_get(kw_client *c, const char *vault, const char *name, uint64_t version,
    json_t **key)
{
	char q[40] = "";

	err_reset(c);
	if (version > 0)
		snprintf(q, sizeof(q), "?version=%llu", (unsigned long long)version);
	return simple(c, "GET", secret_path(c, vault, "/signing-keys/", name, NULL, q),
	    NULL, key);
}

/* POST {"<message|digest>":"<b64>", <rest>} to signing-keys/<name>/<op>. */
static int
sign_post(kw_client *c, const char *vault, const char *name, const char *op,
    const void *data, size_t len, unsigned flags, const json_t *rest,
    char **pathp, json_t **reply)
{
	struct kw_buf body = { NULL, 0, 0, 0 };
	char *path = NULL, tail[16];
	int r;

	if (data == NULL && len > 0)
		return err_set(c, -EINVAL, "no message given");
	if ((flags & KW_SIGN_DIGEST) && len != 32)
		return err_set(c, -EINVAL, "a SHA-256 digest has 32 bytes, not %zu", len);
	snprintf(tail, sizeof(tail), "/%s", op);
	if ((path = secret_path(c, vault, "/signing-keys/", name, tail, NULL)) == NULL)
		return kw_fail(-EINVAL, "%s", c->msg);
	if ((r = body_b64(c, &body, (flags & KW_SIGN_DIGEST) ? "digest" : "message",
	    data, len, rest)) == 0 &&
	    (r = call_raw(c, "POST", path, body.p, body.len, 0, NULL, reply)) == 0) {
		*pathp = path;
		path = NULL;
	}
	buf_free(&body);
	free(path);
	return r;
}

int
kw_sign(kw_client *c, const char *vault, const char *name, const char *alg,
    const void *data, size_t len, unsigned flags, uint8_t **sig, size_t *sig_len,
    json_t **info)
{
	json_t *rest = NULL, *j = NULL;
	char *path = NULL;
	int r;

	err_reset(c);
	if (alg == NULL || (rest = json_pack("{s:s}", "alg", alg)) == NULL)
		return err_set(c, -EINVAL, "a signature needs an algorithm such as ES256");
	if ((r = sign_post(c, vault, name, "sign", data, len, flags, rest, &path, &j)) != 0 ||
	    (r = reply_bytes(c, j, (flags & KW_SIGN_JOSE) ? "signature_jose" : "signature",
	    path, sig, sig_len)) != 0)
		goto out;
	if (info != NULL) {
		*info = j;
		j = NULL;
	}
 out:
	json_decref(rest);
	json_decref(j);
	free(path);
	return r;
}

int
kw_verify(kw_client *c, const char *vault, const char *name, const char *alg,
    const void *data, size_t len, unsigned flags, const void *sig, size_t sig_len,
    uint64_t version, int *valid)
{
	kw_secret s64 = { NULL, 0 };
	json_t *rest = NULL, *j = NULL, *v;
	char *path = NULL;
	int r;

	err_reset(c);
	if (alg == NULL || sig == NULL || sig_len == 0)
		return err_set(c, -EINVAL, "a verification needs an algorithm and a signature");
	if ((r = kw_base64_encode(sig, sig_len, &s64)) != 0 ||
	    (rest = json_pack("{s:s,s:s}", "alg", alg, "signature", (char *)s64.data)) == NULL ||
	    (version > 0 && json_object_set_new(rest, "key_version",
	    json_integer((json_int_t)version)) != 0)) {
		r = err_set(c, r ? r : -EINVAL, "cannot build the request");
		goto out;
	}
	if ((r = sign_post(c, vault, name, "verify", data, len, flags, rest, &path, &j)) != 0)
		goto out;
	if (!json_is_boolean(v = json_object_get(j, "valid"))) {
		r = err_set(c, KW_E_PROTOCOL, "keywardend's reply to %s has no \"valid\"", path);
		goto out;
	}
	*valid = json_is_true(v);
 out:
	kw_secret_clear(&s64);
	json_decref(rest);
	json_decref(j);
	free(path);
	return r;
}
