/*
 * Unit tests for client/: libkeywarden and the keywarden CLI, without the
 * daemon.  A small server thread in this process listens on a Unix socket
 * and answers canned HTTP replies, so that what goes over the wire (request
 * line, body, keep-alive, chunked replies, error JSON) is checked for real.
 * The behaviour against the real daemon is for the integration tests.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <jansson.h>

#include "client/keywarden.h"
#include "tests/lib/kwt_cunit.h"

/* ---- the canned server ------------------------------------------------------ */

#define MAXREPLIES 8

static struct fake {
	char dir[128];
	char path[160];
	int lfd;
	pthread_t th;
	pthread_mutex_t mu;
	const char *replies[MAXREPLIES];
	int nreplies, next;
	int accepts;            /* connections accepted */
	int requests;
	char last[16384];       /* the last request: head and body */
	volatile int stop;
} fk = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Read one request (head + Content-Length body) into buf.  -1 on EOF. */
static int
read_request(int fd, char *buf, size_t len)
{
	size_t n = 0, need = 0;
	char *eoh = NULL;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		if (eoh != NULL && n >= need)
			return 0;
		if (poll(&p, 1, 200) == 0) {
			if (fk.stop)
				return -1;
			continue;
		}
		if (n + 1 >= len)
			return -1;
		if ((r = read(fd, buf + n, len - n - 1)) <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		if (eoh == NULL && (eoh = strstr(buf, "\r\n\r\n")) != NULL) {
			const char *cl = strcasestr(buf, "\r\nContent-Length:");
			need = (size_t)(eoh + 4 - buf);
			if (cl != NULL && cl < eoh)
				need += strtoul(cl + 17, NULL, 10);
		}
	}
}

static void *
fake_main(void *arg)
{
	char buf[sizeof(fk.last)];

	(void)arg;
	while (!fk.stop) {
		struct pollfd p = { fk.lfd, POLLIN, 0 };
		int fd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		if ((fd = accept(fk.lfd, NULL, NULL)) < 0)
			continue;
		pthread_mutex_lock(&fk.mu);
		fk.accepts++;
		pthread_mutex_unlock(&fk.mu);
		while (read_request(fd, buf, sizeof(buf)) == 0) {
			char *reply = NULL;

			pthread_mutex_lock(&fk.mu);
			memcpy(fk.last, buf, sizeof(fk.last));
			fk.requests++;
			/* A copy: the test may free its reply once it has it. */
			if (fk.next < fk.nreplies)
				reply = strdup(fk.replies[fk.next++]);
			pthread_mutex_unlock(&fk.mu);
			if (reply == NULL)
				break;
			if (write(fd, reply, strlen(reply)) < 0 ||
			    strstr(reply, "Connection: close") != NULL) {
				free(reply);
				break;
			}
			free(reply);
		}
		close(fd);
	}
	return NULL;
}

static int
fake_start(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(fk.dir, sizeof(fk.dir), "%s/kwtc.XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(fk.dir) == NULL)
		return -1;
	snprintf(fk.path, sizeof(fk.path), "%s/kw.sock", fk.dir);
	if (strlen(fk.path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, fk.path, strlen(fk.path) + 1);
	if ((fk.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fk.lfd, 8) != 0)
		return -1;
	return pthread_create(&fk.th, NULL, fake_main, NULL) == 0 ? 0 : -1;
}

static void
fake_stop(void)
{
	fk.stop = 1;
	pthread_join(fk.th, NULL);
	close(fk.lfd);
	unlink(fk.path);
	rmdir(fk.dir);
}

/* Queue the replies of the next exchanges (NULL-terminated). */
static void
fake_expect(const char *first, ...)
{
	va_list ap;
	const char *r;

	pthread_mutex_lock(&fk.mu);
	fk.nreplies = fk.next = fk.accepts = fk.requests = 0;
	fk.last[0] = '\0';
	va_start(ap, first);
	for (r = first; r != NULL && fk.nreplies < MAXREPLIES; r = va_arg(ap, const char *))
		fk.replies[fk.nreplies++] = r;
	va_end(ap);
	pthread_mutex_unlock(&fk.mu);
}

static int
fake_accepts(void)
{
	int n;

	pthread_mutex_lock(&fk.mu);
	n = fk.accepts;
	pthread_mutex_unlock(&fk.mu);
	return n;
}

#define JSON_REPLY(status, body) \
	"HTTP/1.1 " status "\r\nContent-Type: application/json\r\n" \
	"Content-Length: " #body "\r\n\r\n"

static char *
reply_json(const char *status, const char *body)
{
	char *s;

	if (asprintf(&s, "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n\r\n%s", status, strlen(body), body) < 0)
		return NULL;
	return s;
}

static kw_client *
client(void)
{
	kw_client *c = NULL;

	CU_ASSERT_EQUAL_FATAL(kw_client_new(&c, fk.path), 0);
	kw_client_set_timeout(c, 10);
	return c;
}

/* ---- pure functions ------------------------------------------------------------ */

static void
test_time_parse(void)
{
	int64_t t = -1;
	char buf[32];

	CU_ASSERT_EQUAL(kw_time_parse("1970-01-01T00:00:00Z", &t), 0);
	CU_ASSERT_EQUAL(t, 0);
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01T00:00:00Z", &t), 0);
	CU_ASSERT_EQUAL(t, 1767225600);
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01T01:00:00.123456+01:00", &t), 0);
	CU_ASSERT_EQUAL(t, 1767225600);
	CU_ASSERT_EQUAL(kw_time_parse("2025-12-31t19:00:00-05:00", &t), 0);
	CU_ASSERT_EQUAL(t, 1767225600);
	CU_ASSERT_EQUAL(kw_time_parse("2024-02-29T12:00:00Z", &t), 0);
	CU_ASSERT_EQUAL(kw_time_format(t, buf, sizeof(buf)), 0);
	CU_ASSERT_STRING_EQUAL(buf, "2024-02-29T12:00:00Z");
	CU_ASSERT_EQUAL(kw_time_format(t, buf, 10), -EINVAL);
	/* A year before 1000 keeps its four digits, so that it parses again
	 * (it came out as "999-..."; found by tests/fuzz/fuzz_client). */
	CU_ASSERT_EQUAL(kw_time_parse("0999-03-01T00:00:09Z", &t), 0);
	CU_ASSERT_EQUAL(kw_time_format(t, buf, sizeof(buf)), 0);
	CU_ASSERT_STRING_EQUAL(buf, "0999-03-01T00:00:09Z");
	CU_ASSERT_EQUAL(kw_time_parse("0000-01-01T00:00:00Z", &t), 0);
	CU_ASSERT_EQUAL(kw_time_format(t, buf, sizeof(buf)), 0);
	CU_ASSERT_STRING_EQUAL(buf, "0000-01-01T00:00:00Z");
	CU_ASSERT_EQUAL(kw_time_format(t - 1, buf, sizeof(buf)), -EINVAL);

	t = 42;
	CU_ASSERT_EQUAL(kw_time_parse("2025-02-29T12:00:00Z", &t), -EINVAL);  /* not leap */
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01T00:00:00", &t), -EINVAL);   /* no zone */
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01", &t), -EINVAL);
	CU_ASSERT_EQUAL(kw_time_parse("2026-13-01T00:00:00Z", &t), -EINVAL);
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01T24:00:00Z", &t), -EINVAL);
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01T00:00:00Zjunk", &t), -EINVAL);
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01T00:00:00+0100", &t), -EINVAL);
	CU_ASSERT_EQUAL(kw_time_parse("2026-01-01T00:00:00.Z", &t), -EINVAL);
	CU_ASSERT_EQUAL(kw_time_parse("tomorrow", &t), -EINVAL);
	CU_ASSERT_EQUAL(kw_time_parse(NULL, &t), -EINVAL);
	CU_ASSERT_EQUAL(t, 42);   /* untouched on failure */
}

static void
test_error_mapping(void)
{
	CU_ASSERT_EQUAL(kw_error_from_http(200, NULL), 0);
	CU_ASSERT_EQUAL(kw_error_from_http(201, NULL), 0);
	CU_ASSERT_EQUAL(kw_error_from_http(400, "invalid_name"), -EINVAL);
	CU_ASSERT_EQUAL(kw_error_from_http(403, "forbidden"), KW_E_DENIED);
	CU_ASSERT_EQUAL(kw_error_from_http(403, "secret_expired"), KW_E_DENIED);
	CU_ASSERT_EQUAL(kw_error_from_http(403, "key_retired"), KW_E_RETIRED);
	CU_ASSERT_EQUAL(kw_error_from_http(404, "secret_not_found"), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(kw_error_from_http(405, NULL), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(kw_error_from_http(409, "conflict"), KW_E_CONFLICT);
	CU_ASSERT_EQUAL(kw_error_from_http(413, "too_large"), KW_E_TOO_LARGE);
	CU_ASSERT_EQUAL(kw_error_from_http(500, "internal"), KW_E_INTERNAL);
	CU_ASSERT_EQUAL(kw_error_from_http(503, "unavailable"), KW_E_UNAVAILABLE);
	CU_ASSERT_EQUAL(kw_error_from_http(418, NULL), KW_E_PROTOCOL);
}

static void
test_socket_choice(void)
{
	kw_client *c = NULL;
	char longpath[200];

	unsetenv("KEYWARDEN_SOCKET");
	CU_ASSERT_EQUAL_FATAL(kw_client_new(&c, NULL), 0);
	CU_ASSERT_STRING_EQUAL(kw_client_socket(c), KW_RUNSTATEDIR "/keywarden.sock");
	CU_ASSERT_STRING_EQUAL(kw_client_socket(c), kw_default_socket());
	kw_client_free(c);
	setenv("KEYWARDEN_SOCKET", "/tmp/from-env.sock", 1);
	CU_ASSERT_EQUAL_FATAL(kw_client_new(&c, NULL), 0);
	CU_ASSERT_STRING_EQUAL(kw_client_socket(c), "/tmp/from-env.sock");
	kw_client_free(c);
	CU_ASSERT_EQUAL_FATAL(kw_client_new(&c, "/tmp/explicit.sock"), 0);
	CU_ASSERT_STRING_EQUAL(kw_client_socket(c), "/tmp/explicit.sock");
	kw_client_free(c);
	unsetenv("KEYWARDEN_SOCKET");
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	c = NULL;
	CU_ASSERT_EQUAL(kw_client_new(&c, longpath), -ENAMETOOLONG);
	CU_ASSERT_PTR_NULL(c);
	kw_client_free(NULL);
}

/* ---- the exchange -------------------------------------------------------------- */

static void
test_get_value(void)
{
	char *rep = reply_json("200 OK", "{\"vault\":\"prod\",\"name\":\"db/pw\",\"version\":3,"
	    "\"enabled\":true,\"value\":\"s3cr\\\"t\\n\",\"encoding\":\"utf-8\"}");
	kw_client *c = client();
	kw_secret v = { NULL, 0 };
	json_t *meta = NULL;

	fake_expect(rep, NULL);
	CU_ASSERT_EQUAL_FATAL(kw_secret_get(c, "prod", "db/pw", 0, &v, &meta), 0);
	CU_ASSERT_EQUAL(v.len, 7);
	CU_ASSERT_EQUAL(memcmp(v.data, "s3cr\"t\n", 7), 0);
	CU_ASSERT_PTR_NULL(json_object_get(meta, "value"));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(meta, "version")), 3);
	CU_ASSERT_STRING_EQUAL(kw_client_last_error(c), "");
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "GET /v1/vaults/prod/secrets/db/pw HTTP/1.1\r\n"));
	kw_secret_clear(&v);
	json_decref(meta);

	/* A given version, a base64 value, names needing escapes. */
	free(rep);
	rep = reply_json("200 OK", "{\"value\":\"AAEC/w==\",\"encoding\":\"base64\"}");
	fake_expect(rep, NULL);
	CU_ASSERT_EQUAL_FATAL(kw_secret_get(c, "prod", "a b", 2, &v, NULL), 0);
	CU_ASSERT_EQUAL(v.len, 4);
	CU_ASSERT_EQUAL(memcmp(v.data, "\x00\x01\x02\xff", 4), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "GET /v1/vaults/prod/secrets/a%20b/versions/2 HTTP/1.1"));
	kw_secret_clear(&v);
	kw_client_free(c);
	free(rep);
}

static void
test_chunked_and_keepalive(void)
{
	static const char chunked[] =
	    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"
	    "c\r\n{\"secrets\":[\r\n"
	    "18\r\n{\"name\":\"a\",\"version\":1}\r\n"
	    "2\r\n]}\r\n0\r\n\r\n";
	static const char whoami[] =
	    JSON_REPLY("200 OK", 12) "{\"uid\":1000}";
	kw_client *c = client();
	json_t *j = NULL;

	fake_expect(chunked, whoami, chunked, NULL);
	CU_ASSERT_EQUAL_FATAL(kw_secret_list(c, "prod", "db/", &j), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
	    json_array_get(json_object_get(j, "secrets"), 0), "name")), "a");
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "GET /v1/vaults/prod/secrets?prefix=db/ HTTP/1.1"));
	json_decref(j);
	CU_ASSERT_EQUAL(kw_whoami(c, &j), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "uid")), 1000);
	json_decref(j);
	CU_ASSERT_EQUAL(kw_secret_list(c, "prod", NULL, &j), 0);
	json_decref(j);
	/* Three requests, one connection. */
	CU_ASSERT_EQUAL(fake_accepts(), 1);

	/* A server that closes: the next request opens a new connection. */
	{
		static const char closing[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		    "Connection: close\r\nContent-Length: 2\r\n\r\n{}";
		fake_expect(closing, closing, NULL);
		/* The first goes on the open connection, which the server
		 * then closes; the second needs a new one. */
		CU_ASSERT_EQUAL(kw_vault_list(c, &j), 0);
		json_decref(j);
		CU_ASSERT_EQUAL(fake_accepts(), 0);
		CU_ASSERT_EQUAL(kw_vault_list(c, &j), 0);
		json_decref(j);
		CU_ASSERT_EQUAL(fake_accepts(), 1);
	}
	kw_client_free(c);
}

static void
test_error_reply(void)
{
	static const char nf[] = "{\"error\":{\"code\":\"secret_not_found\","
	    "\"message\":\"no secret 'db/pw' in vault 'prod'\"}}";
	static const char cf[] = "{\"error\":{\"code\":\"conflict\",\"message\":\"version 4 is current\\u0001"
	    "\\u009b2J caf\\u00e9\"}}";
	char *r404 = reply_json("404 Not Found", nf), *r409 = reply_json("409 Conflict", cf);
	char *r500 = reply_json("500 Internal Server Error", "not json"),
	    *r200 = reply_json("200 OK", "{\"truncated\":");
	kw_client *c = client();
	kw_secret v = { NULL, 0 };
	json_t *j = (json_t *)0x1;

	fake_expect(r404, r409, r500, r200, NULL);
	CU_ASSERT_EQUAL(kw_secret_get(c, "prod", "db/pw", 0, &v, NULL), KW_E_NOT_FOUND);
	CU_ASSERT_PTR_NULL(v.data);
	CU_ASSERT_STRING_EQUAL(kw_client_last_error(c), "no secret 'db/pw' in vault 'prod'");
	CU_ASSERT_STRING_EQUAL(kw_errdetail(KW_E_NOT_FOUND), "no secret 'db/pw' in vault 'prod'");
	CU_ASSERT_STRING_EQUAL(kw_client_last_code(c), "secret_not_found");
	CU_ASSERT_EQUAL(kw_client_last_status(c), 404);

	CU_ASSERT_EQUAL(kw_secret_set(c, "prod", "db/pw", "x", 1, NULL, 3, &j), KW_E_CONFLICT);
	CU_ASSERT_PTR_EQUAL(j, (json_t *)0x1);   /* untouched */
	/* A control character from the server never reaches a terminal: C0,
	 * nor C1 (U+009B is CSI; it passed until tests/fuzz/fuzz_client found
	 * U+008F), each one '?'; other characters pass. */
	CU_ASSERT_STRING_EQUAL(kw_client_last_error(c), "version 4 is current??2J caf\xc3\xa9");
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "PUT /v1/vaults/prod/secrets/db/pw?cas=3 HTTP/1.1"));

	CU_ASSERT_EQUAL(kw_vault_list(c, &j), KW_E_INTERNAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_client_last_error(c), "HTTP status 500"));
	CU_ASSERT_EQUAL(kw_vault_list(c, &j), KW_E_PROTOCOL);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_client_last_error(c), "malformed JSON"));
	CU_ASSERT_PTR_EQUAL(j, (json_t *)0x1);
	kw_client_free(c);
	free(r404);
	free(r409);
	free(r500);
	free(r200);
}

/* kw_client_last_code keeps a code of [a-z0-9_.-], 1 to KW_CODE_MAX
 * characters, as the daemon sent it; "" for none; KW_CODE_INVALID for
 * anything else, which whatever answers on the socket may send. */
static void
test_error_code(void)
{
	static const struct { const char *json, *want; } cs[] = {
		{ "\"key_retired\"", "key_retired" },
		{ "\"a.b-c_9\"", "a.b-c_9" },
		{ "\"abcdefghijklmnopqrstuvwxyz012345\"", "abcdefghijklmnopqrstuvwxyz012345" },  /* 32 */
		{ "\"abcdefghijklmnopqrstuvwxyz0123456\"", KW_CODE_INVALID },                    /* 33 */
		{ "\"\"", "" },
		{ "null", "" },
		{ "7", "" },
		{ "\"Not_Found\"", KW_CODE_INVALID },
		{ "\"not found\"", KW_CODE_INVALID },
		{ "\"\\u001b[2Jgone\"", KW_CODE_INVALID },
		{ "\"x\\n\"", KW_CODE_INVALID },
		{ "\"caf\\u00e9\"", KW_CODE_INVALID },
		{ "\"a/b\"", KW_CODE_INVALID },
		{ "\"a%s%n\"", KW_CODE_INVALID },
	};
	kw_client *c = client();
	json_t *j = NULL;

	for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		char *body, *r;

		CU_ASSERT_FATAL(asprintf(&body, "{\"error\":{\"code\":%s,\"message\":\"m\"}}",
		    cs[i].json) > 0);
		r = reply_json("403 Forbidden", body);
		CU_ASSERT_PTR_NOT_NULL_FATAL(r);
		fake_expect(r, NULL);
		CU_ASSERT_NOT_EQUAL(kw_vault_list(c, &j), 0);
		if (strcmp(kw_client_last_code(c), cs[i].want) != 0)
			fprintf(stderr, "\n  code %s: got \"%s\", want \"%s\"\n", cs[i].json,
			    kw_client_last_code(c), cs[i].want);
		CU_ASSERT_STRING_EQUAL(kw_client_last_code(c), cs[i].want);
		CU_ASSERT_EQUAL(kw_client_last_status(c), 403);
		CU_ASSERT_STRING_EQUAL(kw_client_last_error(c), "m");
		free(r);
		free(body);
	}
	/* key_retired still maps to its own error; a code that only looks
	 * like it does not. */
	{
		char *r = reply_json("403 Forbidden", "{\"error\":{\"code\":\"key_retired\",\"message\":\"m\"}}");
		char *r2 = reply_json("403 Forbidden", "{\"error\":{\"code\":\"key_retired\\u0007\",\"message\":\"m\"}}");

		fake_expect(r, r2, NULL);
		CU_ASSERT_EQUAL(kw_vault_list(c, &j), KW_E_RETIRED);
		CU_ASSERT_EQUAL(kw_vault_list(c, &j), KW_E_DENIED);
		CU_ASSERT_STRING_EQUAL(kw_client_last_code(c), KW_CODE_INVALID);
		free(r);
		free(r2);
	}
	kw_client_free(c);
}

static void
test_set_body(void)
{
	char *r201 = reply_json("201 Created", "{\"version\":1}");
	kw_client *c = client();
	json_t *attrs = json_pack("{s:s,s:{s:s},s:b}", "content_type", "text/plain",
	    "tags", "team", "core", "enabled", 0);
	json_t *meta = NULL, *sent;
	const char *body;

	fake_expect(r201, r201, r201, NULL);
	CU_ASSERT_EQUAL(kw_secret_set(c, "prod", "db/pw", "p\"w\\\n\xc3\xa9", 7, attrs, 0, &meta), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(meta, "version")), 1);
	json_decref(meta);
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "PUT /v1/vaults/prod/secrets/db/pw?cas=0 HTTP/1.1"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(body = strstr(fk.last, "\r\n\r\n"));
	sent = json_loads(body + 4, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sent);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(sent, "value")), "p\"w\\\n\xc3\xa9");
	CU_ASSERT_PTR_NULL(json_object_get(sent, "encoding"));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(sent, "content_type")), "text/plain");
	CU_ASSERT(json_is_false(json_object_get(sent, "enabled")));
	json_decref(sent);

	/* Bytes that are not UTF-8 go as base64, without a cas. */
	CU_ASSERT_EQUAL(kw_secret_set(c, "prod", "bin", "\x00\xff\x01", 3, NULL, -1, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "PUT /v1/vaults/prod/secrets/bin HTTP/1.1"));
	body = strstr(fk.last, "\r\n\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	CU_ASSERT_STRING_EQUAL(body + 4, "{\"value\":\"AP8B\",\"encoding\":\"base64\"}");

	/* Base64 text given by the caller is sent as it is. */
	json_decref(attrs);
	attrs = json_pack("{s:s}", "encoding", "base64");
	CU_ASSERT_EQUAL(kw_secret_set(c, "prod", "bin", "AP8B", 4, attrs, -1, NULL), 0);
	body = strstr(fk.last, "\r\n\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	CU_ASSERT_STRING_EQUAL(body + 4, "{\"value\":\"AP8B\",\"encoding\":\"base64\"}");

	/* Refused before any exchange. */
	CU_ASSERT_EQUAL(kw_secret_set(c, "", "x", "v", 1, NULL, -1, NULL), -EINVAL);
	CU_ASSERT_EQUAL(kw_secret_update(c, "prod", "x", 0, NULL, NULL), -EINVAL);
	json_decref(attrs);
	kw_client_free(c);
	free(r201);
}

static void
test_unavailable(void)
{
	char dir[256], path[300];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	kw_client *c = NULL;
	json_t *j = NULL;
	int fd;

	/* Nothing at the path. */
	snprintf(dir, sizeof(dir), "%s/kwtc-none.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/absent.sock", dir);
	CU_ASSERT_EQUAL_FATAL(kw_client_new(&c, path), 0);
	CU_ASSERT_EQUAL(kw_whoami(c, &j), KW_E_UNAVAILABLE);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_client_last_error(c), path));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_client_last_error(c), "No such file"));
	kw_client_free(c);

	/* A socket that nobody listens on: connection refused. */
	if (strlen(path) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CU_ASSERT_EQUAL_FATAL(kw_client_new(&c, path), 0);
	CU_ASSERT_EQUAL(kw_health(c, &j), KW_E_UNAVAILABLE);
	CU_ASSERT_PTR_NULL(j);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_client_last_error(c), path));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_client_last_error(c), "refused"));
	CU_ASSERT_EQUAL(kw_client_last_status(c), 0);
	kw_client_free(c);
	close(fd);
	unlink(path);
	rmdir(dir);
}

static void
test_health_degraded(void)
{
	char *r503 = reply_json("503 Service Unavailable",
	    "{\"status\":\"degraded\",\"token\":{\"ok\":false}}");
	kw_client *c = client();
	json_t *j = NULL;

	fake_expect(r503, NULL);
	CU_ASSERT_EQUAL(kw_health(c, &j), KW_E_UNAVAILABLE);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "status")), "degraded");
	json_decref(j);
	kw_client_free(c);
	free(r503);
}

static void
test_generic_request(void)
{
	static const char metrics[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
	    "Content-Length: 22\r\n\r\nkw_requests_total 42\n\n";
	static const char empty[] = "HTTP/1.1 204 No Content\r\n\r\n";
	static const char echo[] = JSON_REPLY("200 OK", 11) "{\"ok\":true}";
	kw_client *c = client();
	json_t *j = NULL, *body = json_pack("{s:s}", "action", "secret.get");
	long st = 0;

	fake_expect(metrics, empty, echo, NULL);
	CU_ASSERT_EQUAL(kw_request(c, "GET", "/v1/metrics", NULL, &st, &j), 0);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_STRING_EQUAL(json_string_value(j), "kw_requests_total 42\n\n");
	json_decref(j);
	CU_ASSERT_EQUAL(kw_request(c, "DELETE", "/v1/x", NULL, &st, &j), 0);
	CU_ASSERT_EQUAL(st, 204);
	CU_ASSERT(json_is_null(j));
	json_decref(j);
	CU_ASSERT_EQUAL(kw_request(c, "POST", "/v1/policy/explain", body, NULL, &j), 0);
	CU_ASSERT(json_is_true(json_object_get(j, "ok")));
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "POST /v1/policy/explain HTTP/1.1\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "Content-Type: application/json\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "\r\n\r\n{\"action\":\"secret.get\"}"));
	json_decref(j);
	CU_ASSERT_EQUAL(kw_request(c, "GET", "v1/health", NULL, NULL, NULL), -EINVAL);
	json_decref(body);
	kw_client_free(c);
}

/* ---- the CLI ---------------------------------------------------------------------- */

struct run {
	int status;
	char out[8192], err[4096];
};

static void
slurp(int fd, char *buf, size_t len)
{
	size_t n = 0;
	ssize_t r;

	while (n + 1 < len && (r = read(fd, buf + n, len - n - 1)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
}

/* Run the keywarden CLI with args (NULL-terminated after --socket), input
 * on stdin, capturing stdout and stderr into files. */
static void
cli(struct run *res, const char *input, ...)
{
	char exe[512], of[200], ef[200], inf[200];
	char *argv[32];
	int argc = 0, fd;
	const char *a;
	va_list ap;
	pid_t pid;

	snprintf(exe, sizeof(exe), "%s/client/keywarden", getenv("KW_TOP_BUILDDIR"));
	snprintf(of, sizeof(of), "%s/out", fk.dir);
	snprintf(ef, sizeof(ef), "%s/err", fk.dir);
	snprintf(inf, sizeof(inf), "%s/in", fk.dir);
	fd = open(inf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (input != NULL && write(fd, input, strlen(input)) < 0)
		CU_FAIL("write input");
	close(fd);
	argv[argc++] = exe;
	argv[argc++] = (char *)"--socket";
	argv[argc++] = fk.path;
	va_start(ap, input);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	fflush(NULL);
	if ((pid = fork()) == 0) {
		int i = open(inf, O_RDONLY), o = open(of, O_WRONLY | O_CREAT | O_TRUNC, 0600),
		    e = open(ef, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(i, 0);
		dup2(o, 1);
		dup2(e, 2);
		execv(exe, argv);
		_exit(127);
	}
	res->status = -1;
	if (pid > 0 && waitpid(pid, &res->status, 0) == pid && WIFEXITED(res->status))
		res->status = WEXITSTATUS(res->status);
	fd = open(of, O_RDONLY);
	slurp(fd, res->out, sizeof(res->out));
	close(fd);
	fd = open(ef, O_RDONLY);
	slurp(fd, res->err, sizeof(res->err));
	close(fd);
	unlink(of);
	unlink(ef);
	unlink(inf);
}

static void
test_cli(void)
{
	static struct run r;
	char *get = reply_json("200 OK", "{\"vault\":\"prod\",\"name\":\"db/pw\",\"version\":2,"
	    "\"value\":\"hunter2\",\"encoding\":\"utf-8\"}");
	char *nf = reply_json("404 Not Found", "{\"error\":{\"code\":\"secret_not_found\","
	    "\"message\":\"no secret 'db/pw' in vault 'prod'\"}}");
	char *den = reply_json("403 Forbidden", "{\"error\":{\"code\":\"forbidden\","
	    "\"message\":\"denied by rule 'ops'\"}}");
	char *cas = reply_json("409 Conflict", "{\"error\":{\"code\":\"conflict\","
	    "\"message\":\"the current version is 2, not 1\"}}");
	char *put = reply_json("201 Created", "{\"vault\":\"prod\",\"name\":\"db/pw\",\"version\":3,"
	    "\"enabled\":true,\"tags\":{\"team\":\"core\"},\"expires\":null}");
	char *list = reply_json("200 OK", "{\"secrets\":[{\"name\":\"a/long/name\",\"version\":1,"
	    "\"enabled\":true,\"updated\":\"2026-01-01T00:00:00Z\",\"expires\":null},"
	    "{\"name\":\"b\",\"version\":12,\"enabled\":false}]}");
	const char *body;

	/* Usage errors: 2 and a hint, no exchange. */
	fake_expect(NULL);
	cli(&r, NULL, "secret", "get", "prod", NULL);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "usage: keywarden secret get VAULT NAME"));
	cli(&r, NULL, "secret", "frobnicate", NULL);
	CU_ASSERT_EQUAL(r.status, 2);
	cli(&r, NULL, "secret", "get", "prod", "x", "--version", "0", NULL);
	CU_ASSERT_EQUAL(r.status, 2);
	cli(&r, NULL, "secret", "set", "prod", "x", "--expires", "next week", NULL);
	CU_ASSERT_EQUAL(r.status, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "RFC 3339"));
	cli(&r, NULL, "secret", "list", "prod", "--output", "f", NULL);
	CU_ASSERT_EQUAL(r.status, 2);
	cli(&r, NULL, "secret", "update", "prod", "x", NULL);
	CU_ASSERT_EQUAL(r.status, 2);
	cli(&r, NULL, "secret", "set", "--help", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "secret set VAULT NAME"));
	cli(&r, NULL, "--help", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_EQUAL(fk.requests, 0);

	/* get: the raw value, no newline when stdout is not a terminal. */
	fake_expect(get, get, nf, den, NULL);
	cli(&r, NULL, "secret", "get", "prod", "db/pw", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out, "hunter2");
	cli(&r, NULL, "--json", "secret", "get", "prod", "db/pw", "--version", "2", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "\"value\":\"hunter2\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "\"version\":2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "GET /v1/vaults/prod/secrets/db/pw/versions/2 "));
	cli(&r, NULL, "secret", "get", "prod", "db/pw", NULL);
	CU_ASSERT_EQUAL(r.status, 3);
	CU_ASSERT_STRING_EQUAL(r.err, "keywarden: no secret 'db/pw' in vault 'prod'\n");
	CU_ASSERT_STRING_EQUAL(r.out, "");
	cli(&r, NULL, "secret", "get", "prod", "db/pw", NULL);
	CU_ASSERT_EQUAL(r.status, 4);

	/* --output: a file only the owner can read; --base64 input. */
	{
		char f[200], buf[64] = "";
		struct stat sb;
		int fd;

		snprintf(f, sizeof(f), "%s/value", fk.dir);
		fake_expect(get, put, NULL);
		cli(&r, NULL, "secret", "get", "prod", "db/pw", "--output", f, NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT_STRING_EQUAL(r.out, "");
		CU_ASSERT_EQUAL_FATAL(stat(f, &sb), 0);
		CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
		fd = open(f, O_RDONLY);
		slurp(fd, buf, sizeof(buf));
		close(fd);
		CU_ASSERT_STRING_EQUAL(buf, "hunter2");
		unlink(f);
		cli(&r, "aGVs\nbG8=\n", "secret", "set", "prod", "db/pw", "--base64", NULL);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "{\"value\":\"aGVsbG8=\",\"encoding\":\"base64\"}"));
	}

	/* set: the value from stdin, attributes from options. */
	fake_expect(put, cas, NULL);
	cli(&r, "new value", "secret", "set", "prod", "db/pw", "--tag", "team=core",
	    "--expires", "2027-01-01T01:00:00+01:00", "--disabled", "--cas", "2", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "version: 3\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "tags: team=core\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "expires: -\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "PUT /v1/vaults/prod/secrets/db/pw?cas=2 "));
	body = strstr(fk.last, "\r\n\r\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"value\":\"new value\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"expires\":\"2027-01-01T00:00:00Z\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"enabled\":false"));
	cli(&r, "v", "secret", "set", "prod", "db/pw", "--cas", "1", NULL);
	CU_ASSERT_EQUAL(r.status, 5);

	/* list: a table, or the daemon's JSON. */
	fake_expect(list, list, NULL);
	cli(&r, NULL, "secret", "list", "prod", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_STRING_EQUAL(r.out,
	    "NAME         VERSION  ENABLED  UPDATED               EXPIRES  CONTENT-TYPE\n"
	    "a/long/name  1        true     2026-01-01T00:00:00Z  -        -\n"
	    "b            12       false    -                     -        -\n");
	cli(&r, NULL, "--json", "secret", "list", "prod", "--prefix", "a/", NULL);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_EQUAL(strncmp(r.out, "{\"secrets\":[{\"name\":\"a/long/name\"", 33), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(fk.last, "GET /v1/vaults/prod/secrets?prefix=a/ "));

	/* The daemon is down: 6, and the socket is named. */
	fake_expect(NULL);
	{
		char bad[200];
		snprintf(bad, sizeof(bad), "%s/none.sock", fk.dir);
		cli(&r, NULL, "--socket", bad, "whoami", NULL);
		CU_ASSERT_EQUAL(r.status, 6);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.err, bad));
	}
	free(get);
	free(nf);
	free(den);
	free(cas);
	free(put);
	free(list);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "RFC 3339 times", test_time_parse },
		{ "HTTP status to error code", test_error_mapping },
		{ "socket path: argument, environment, default", test_socket_choice },
		{ "get: value and metadata, escapes, versions", test_get_value },
		{ "chunked replies and keep-alive", test_chunked_and_keepalive },
		{ "error replies keep the daemon's message", test_error_reply },
		{ "error codes: only a safe code is kept", test_error_code },
		{ "set: the body on the wire", test_set_body },
		{ "no daemon: unavailable, with the socket path", test_unavailable },
		{ "health: degraded report", test_health_degraded },
		{ "kw_request: text, empty and JSON replies", test_generic_request },
		{ "the CLI: output and exit codes", test_cli },
		{ NULL, NULL }
	};
	int r;

	if (getenv("KW_TOP_BUILDDIR") == NULL) {
		fprintf(stderr, "test_client: KW_TOP_BUILDDIR is not set: run it with make check\n");
		return 99;
	}
	signal(SIGPIPE, SIG_IGN);
	if (fake_start() != 0) {
		fprintf(stderr, "test_client: cannot start the canned server: %s\n", strerror(errno));
		return 99;
	}
	r = kwt_cunit_main("client", NULL, NULL, cases);
	fake_stop();
	return r;
}
