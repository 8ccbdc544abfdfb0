/*
 * fuzz_client.c - libkeywarden's reading of replies (client/kw_client.c)
 * on arbitrary bytes, as keywardend, or a process that took its socket's
 * path, may send them.
 *
 * A fake daemon listens on a Unix socket in a private directory, on a
 * thread of its own: it reads each request (its head, and the body its
 * Content-Length says) and answers with the input, byte for byte, then
 * closes the connection.  The library then asks, each time with a new
 * client: a secret's value (base64 or UTF-8, wiped from the JSON), the
 * health report (which takes a 503 with a body), a data key (its length
 * checked), an unwrap, and a raw GET.  Each call must return 0 or a
 * negative code, and a failure must leave a message without control
 * characters (err_set's promise: the text may come from the daemon, and
 * ends up on a terminal).  kw_time_parse and kw_base64_decode, which read
 * the daemon's strings, also get the whole input, and what they accept
 * must come back the same through kw_time_format and kw_base64_encode.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "client/keywarden.h"
#include "kw_error.h"
#include "tests/fuzz/fuzz.h"

KWF_CORPUS("client");

/* ---- the fake daemon ----------------------------------------------------------- */

static pthread_mutex_t reply_mu = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *reply;
static size_t reply_len;
static char sock_path[108];
static int listen_fd = -1;

/* Read one request: its head, then as many body bytes as its
 * Content-Length says (the library sends no chunked body). */
static void
read_request(int fd)
{
	char buf[65536], *end = NULL;
	size_t have = 0, need = 0;

	while (end == NULL && have < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);

		if (n <= 0)
			return;
		have += (size_t)n;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	if (end == NULL)
		return;
	for (char *p = buf; p < end; p++) {
		if (strncasecmp(p, "\r\nContent-Length:", 17) == 0) {
			need = strtoul(p + 17, NULL, 10);
			break;
		}
	}
	have -= (size_t)(end + 4 - buf);
	while (have < need) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n <= 0)
			return;
		have += (size_t)n;
	}
}

static void *
serve(void *arg)
{
	(void)arg;
	for (;;) {
		struct timeval tv = { 5, 0 };
		int fd = accept(listen_fd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		read_request(fd);
		pthread_mutex_lock(&reply_mu);
		for (size_t off = 0; off < reply_len;) {
			ssize_t n = send(fd, reply + off, reply_len - off, MSG_NOSIGNAL);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		pthread_mutex_unlock(&reply_mu);
		close(fd);
	}
}

static void
daemon_start(void)
{
	struct sockaddr_un sa;
	const char *dir = kwf_tmpdir();
	pthread_t t;

	if (dir == NULL)
		kwf_fail("no temporary directory");
	if ((size_t)snprintf(sock_path, sizeof(sock_path), "%s/kw.sock", dir) >= sizeof(sock_path))
		kwf_fail("the socket's path is too long");
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	if ((listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(listen_fd, 16) != 0)
		kwf_fail("cannot listen on the fake daemon's socket");
	if (pthread_create(&t, NULL, serve, NULL) != 0)
		kwf_fail("cannot start the fake daemon");
	pthread_detach(t);
}

/* ---- the calls ------------------------------------------------------------------- */

static kw_client *
client_new(void)
{
	kw_client *c = NULL;

	if (kw_client_new(&c, sock_path) != 0)
		kwf_fail("kw_client_new");
	kw_client_set_timeout(c, 5);
	return c;
}

/* A call's result: 0 and no message, or a negative code with one
 * sentence, also in kw_errdetail(), and printable: no control character,
 * C0, DEL, or C1 (U+0080 to U+009F, which UTF-8 terminals also obey: CSI
 * is U+009B).  The daemon's code is "" or a word of [a-z0-9_.-]
 * (kw_client_last_code). */
static void
check_result(kw_client *c, int r)
{
	const unsigned char *m = (const unsigned char *)kw_client_last_error(c);

	kwf_check(r <= 0);
	kwf_check(m != NULL);
	if (r == 0) {
		kwf_check(m[0] == '\0');
		return;
	}
	kwf_check(m[0] != '\0');
	kwf_check(strcmp(kw_errdetail(r), (const char *)m) == 0);
	for (const unsigned char *p = m; *p != '\0'; p++) {
		kwf_check(*p >= 0x20 && *p != 0x7f);
		kwf_check(!(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f));
	}
	{
		/* The code: "", or 1 to KW_CODE_MAX of [a-z0-9_.-]. */
		const char *code = kw_client_last_code(c);
		size_t n = strlen(code);

		kwf_check(n <= KW_CODE_MAX);
		kwf_check(strspn(code, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == n);
	}
}

static void
call_secret_get(void)
{
	kw_client *c = client_new();
	kw_secret v = { NULL, 0 };
	json_t *meta = NULL;
	int r = kw_secret_get(c, "prod", "db/password", 0, &v, &meta);

	check_result(c, r);
	if (r == 0) {
		kwf_check(v.data != NULL);
		/* The value left the JSON: only the secret holds it. */
		kwf_check(meta == NULL || json_object_get(meta, "value") == NULL);
	}
	kw_secret_clear(&v);
	json_decref(meta);
	kw_client_free(c);
}

static void
call_health(void)
{
	kw_client *c = client_new();
	json_t *report = NULL;
	int r = kw_health(c, &report);

	check_result(c, r);
	json_decref(report);
	kw_client_free(c);
}

static void
call_datakey(void)
{
	kw_client *c = client_new();
	kw_secret pt = { NULL, 0 };
	uint8_t *w = NULL;
	size_t wlen = 0;
	uint64_t ver = 0;
	int r = kw_datakey(c, "prod", 32, NULL, &pt, &w, &wlen, &ver);

	check_result(c, r);
	if (r == 0)
		kwf_check(pt.data != NULL && pt.len == 32 && w != NULL);
	kw_secret_clear(&pt);
	free(w);
	kw_client_free(c);
}

static void
call_unwrap(void)
{
	static const uint8_t wrapped[] = "KWW1 not really a wrapped key";
	kw_client *c = client_new();
	kw_secret pt = { NULL, 0 };
	uint64_t ver = 0;
	int r = kw_unwrap(c, "prod", wrapped, sizeof(wrapped) - 1, NULL, &pt, &ver);

	check_result(c, r);
	if (r == 0)
		kwf_check(pt.data != NULL || pt.len == 0);
	kw_secret_clear(&pt);
	kw_client_free(c);
}

static void
call_request(void)
{
	kw_client *c = client_new();
	json_t *body = json_pack("{s:s}", "k", "v"), *out = NULL;
	long status = 0;
	int r = kw_request(c, "POST", "/v1/policy/explain", body, &status, &out);

	check_result(c, r);
	if (r == 0)
		kwf_check(status >= 200 && status < 300 && out != NULL);
	json_decref(out);
	json_decref(body);
	kw_client_free(c);
}

/* ---- the pure readers -------------------------------------------------------------- */

static void
check_time(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), back[32];
	int64_t secs, again;

	if (s == NULL)
		kwf_fail("out of memory");
	memcpy(s, data, size);
	s[size] = '\0';
	if (kw_time_parse(s, &secs) == 0 && kw_time_format(secs, back, sizeof(back)) == 0) {
		kwf_check(kw_time_parse(back, &again) == 0 && again == secs);
	}
	free(s);
}

static void
check_base64(const uint8_t *data, size_t size)
{
	kw_secret a = { NULL, 0 }, b = { NULL, 0 }, e = { NULL, 0 };

	if (kw_base64_decode((const char *)data, size, &a) != 0)
		return;
	kwf_check(a.len <= (size + 3) / 4 * 3);
	kwf_check(kw_base64_encode(a.data, a.len, &e) == 0);
	kwf_check(kw_base64_decode((const char *)e.data, e.len, &b) == 0);
	kwf_check(b.len == a.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
	kw_secret_clear(&a);
	kw_secret_clear(&b);
	kw_secret_clear(&e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (listen_fd < 0)
		daemon_start();
	pthread_mutex_lock(&reply_mu);
	reply = data;
	reply_len = size;
	pthread_mutex_unlock(&reply_mu);

	call_secret_get();
	call_health();
	call_datakey();
	call_unwrap();
	call_request();

	pthread_mutex_lock(&reply_mu);
	reply = NULL;
	reply_len = 0;
	pthread_mutex_unlock(&reply_mu);
	check_time(data, size);
	check_base64(data, size);
	return 0;
}
