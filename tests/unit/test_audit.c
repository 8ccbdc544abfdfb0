/*
 * Unit tests for the audit log (daemon/audit.c) and its verifier
 * (common/kw_auditchain.c), on real files in a temporary directory.
 *
 * The seal key: pkcs11/ is not built yet, so the seals are made by an
 * OpenSSL HMAC-SHA256 callback keyed in the test (the daemon passes one
 * calling p11_audit_hmac).  Same contract: data in, 32-byte MAC out.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "kw_secmem.h"
#include "daemon/audit.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

static const uint8_t test_key[32] = "keywarden-test-audit-key-0123456";
static atomic_int seal_fail;   /* make the "token" refuse */
static atomic_int seal_delay_ms;   /* make the "token" slow */

static int
test_seal(void *arg, const uint8_t *data, size_t len, uint8_t mac[32])
{
	unsigned int n = 32;

	(void)arg;
	if (atomic_load(&seal_delay_ms) > 0)
		usleep((useconds_t)atomic_load(&seal_delay_ms) * 1000);
	if (atomic_load(&seal_fail))
		return kw_fail(KW_E_TOKEN, "test token is away");
	if (HMAC(EVP_sha256(), test_key, sizeof(test_key), data, len, mac, &n) == NULL)
		return KW_E_INTERNAL;
	return 0;
}

static int
test_check(void *arg, const uint8_t *data, size_t len, const uint8_t mac[32])
{
	uint8_t want[32];
	int r;

	if ((r = test_seal(arg, data, len, want)) != 0)
		return r;
	return kw_memeq_ct(want, mac, 32) == 0 ? 0 : KW_E_AUTH;
}

static const struct kwac_verify_opts vopts = { .check = test_check };

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct audit_log *
log_open(const char *dir, uint64_t segbytes, unsigned timeout_ms, unsigned ring)
{
	struct audit_options o;
	struct audit_log *log = NULL;
	int r;

	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.segment_bytes = segbytes;
	o.timeout_ms = timeout_ms;
	o.retry_ms = 50;
	o.ring_lines = ring;
	o.seal = test_seal;
	if ((r = audit_open(&o, &log)) != 0)
		fprintf(stderr, "audit_open %s: %s\n", dir, kw_errdetail(r));
	return log;
}

static int
put(struct audit_log *log, const char *type, int i)
{
	uint64_t seq;

	return audit_submit_wait(log, json_pack("{s:s,s:i,s:s}", "type", type, "i", i,
	    "vault", "prod"), &seq);
}

static int
put_n(struct audit_log *log, int n)
{
	for (int i = 0; i < n; i++)
		if (put(log, "test", i) != 0)
			return -1;
	return 0;
}

/* Async burst: completions counted. */
static atomic_int burst_left, burst_bad;

static void
burst_done(void *arg, int status, uint64_t seq)
{
	(void)arg;
	(void)seq;
	if (status != 0)
		atomic_fetch_add(&burst_bad, 1);
	atomic_fetch_sub(&burst_left, 1);
}

static int
burst(struct audit_log *log, int n)
{
	atomic_store(&burst_left, n);
	atomic_store(&burst_bad, 0);
	for (int i = 0; i < n; i++)
		if (audit_submit(log, json_pack("{s:s,s:i}", "type", "burst", "i", i),
		    burst_done, NULL) != 0)
			return -1;
	while (atomic_load(&burst_left) > 0)
		usleep(1000);
	return atomic_load(&burst_bad) ? -1 : 0;
}

/* ---- file helpers ---------------------------------------------------------- */

static int
spit(const char *path, const char *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int r = 0;

	if (f == NULL)
		return -1;
	if (fwrite(buf, 1, len, f) != len)
		r = -1;
	if (fclose(f) != 0)
		r = -1;
	return r;
}

/* A file as an array of lines (each without "\n"). */
struct flines {
	char **l;
	size_t n;
};

static int
flines_read(const char *path, struct flines *fl)
{
	size_t len, cap = 0;
	char *buf = kwt_read_file(path, &len), *p, *nl;

	memset(fl, 0, sizeof(*fl));
	if (buf == NULL)
		return -1;
	for (p = buf; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		if (fl->n == cap) {
			cap = cap ? cap * 2 : 64;
			fl->l = realloc(fl->l, cap * sizeof(*fl->l));
		}
		fl->l[fl->n++] = strndup(p, (size_t)(nl - p));
	}
	free(buf);
	return 0;
}

static int
flines_write(const char *path, const struct flines *fl)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		return -1;
	for (size_t i = 0; i < fl->n; i++)
		fprintf(f, "%s\n", fl->l[i]);
	return fclose(f);
}

static void
flines_free(struct flines *fl)
{
	for (size_t i = 0; i < fl->n; i++)
		free(fl->l[i]);
	free(fl->l);
	memset(fl, 0, sizeof(*fl));
}

/* A segment's bytes without the zeros preallocated after them; -1 if it
 * cannot be read. */
static off_t
data_len(const char *path)
{
	uint64_t end;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -1;
	r = kwac_data_end(fd, &end);
	close(fd);
	return r == 0 ? (off_t)end : -1;
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void
seg(const char *dir, unsigned idx, char *buf, size_t len)
{
	char name[64];

	kwac_segment_name(idx, name, sizeof(name));
	snprintf(buf, len, "%s/%s", dir, name);
}

/* Find the segment and 0-based line of event seq. */
static int
find_seq(const char *dir, uint64_t seq, unsigned *segidx, size_t *lineno)
{
	char path[1024];
	struct flines fl;
	struct kwac_line l;

	for (unsigned s = 1; s < 1000; s++) {
		seg(dir, s, path, sizeof(path));
		if (access(path, F_OK) != 0)
			return -1;
		flines_read(path, &fl);
		for (size_t i = 0; i < fl.n; i++)
			if (kwac_line_parse(fl.l[i], strlen(fl.l[i]), &l, NULL, 0) == 0 &&
			    l.type == KWAC_LINE_EVENT && l.seq == seq) {
				*segidx = s;
				*lineno = i;
				flines_free(&fl);
				return 0;
			}
		flines_free(&fl);
	}
	return -1;
}

static int
line_type(const char *text)
{
	struct kwac_line l;

	if (kwac_line_parse(text, strlen(text), &l, NULL, 0) != 0)
		return -1;
	return (int)l.type;
}

static void
copy_dir(const char *from, const char *to)
{
	DIR *d = opendir(from);
	struct dirent *de;
	char a[1024], b[1024], *buf;
	size_t len;

	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(a, sizeof(a), "%s/%s", from, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
		if ((buf = kwt_read_file(a, &len)) != NULL) {
			spit(b, buf, len);
			free(buf);
		}
	}
	if (d != NULL)
		closedir(d);
}

static int
count_segments(const char *dir)
{
	unsigned *idx = NULL;
	size_t n = 0;

	if (kwac_segments_list(dir, &idx, &n) != 0)
		return -1;
	free(idx);
	return (int)n;
}

static void
show(const struct kwac_result *res)
{
	char buf[2048];

	kwac_result_format(res, buf, sizeof(buf));
	fputs(buf, stdout);
}

/* ---- the base log for tampering ------------------------------------------- */

static char base[512];
static char tmproot[256];

/* seq 1..20 one per commit (event, seal), 21..60 in async bursts (several
 * events per seal), 61..80 one per commit; segments of ~4 KiB. */
static int
base_make(void)
{
	struct audit_log *log;
	int r = -1;

	snprintf(base, sizeof(base), "%s/base", tmproot);
	if ((log = log_open(base, 4096, 10000, 0)) == NULL)
		return -1;
	if (put_n(log, 20) == 0 && burst(log, 40) == 0 && put_n(log, 20) == 0)
		r = 0;
	audit_close(log);
	return r;
}

static int case_no;

/* A fresh copy of the base log. */
static void
fresh(char *dir, size_t len)
{
	snprintf(dir, len, "%s/case%d", tmproot, ++case_no);
	mkdir(dir, 0700);
	copy_dir(base, dir);
}

static void
test_intact(void)
{
	struct kwac_result res;
	int segs = count_segments(base);

	CU_ASSERT_EQUAL(kwac_verify_dir(base, &vopts, &res), 0);
	show(&res);
	CU_ASSERT(res.ok);
	CU_ASSERT_EQUAL(res.events, 80);
	CU_ASSERT_EQUAL(res.first_seq, 1);
	CU_ASSERT_EQUAL(res.last_seq, 80);
	CU_ASSERT_EQUAL(res.unsealed, 0);
	CU_ASSERT_EQUAL(res.sealed_seq, 80);
	CU_ASSERT(res.seals_checked);
	CU_ASSERT(segs >= 3);
	CU_ASSERT_EQUAL(res.segments, (unsigned)segs);
	/* The same through the daemon's entry point, seals by the seal function. */
	CU_ASSERT_EQUAL(audit_verify_dir(base, test_seal, NULL, 0, &res), 0);
	CU_ASSERT(res.seals_checked);
	CU_ASSERT_EQUAL(res.events, 80);
	/* Burst events share seals: fewer seals than events. */
	CU_ASSERT(res.seals < 80);
	CU_ASSERT(res.seals >= 41);
}

/* Change a field of event seq; expect the break at that very line. */
static void
tamper_change(uint64_t seq)
{
	char dir[512], path[1024];
	struct flines fl;
	struct kwac_result res;
	unsigned s;
	size_t i;
	char *p;

	fresh(dir, sizeof(dir));
	CU_ASSERT_FATAL(find_seq(dir, seq, &s, &i) == 0);
	seg(dir, s, path, sizeof(path));
	flines_read(path, &fl);
	p = strstr(fl.l[i], "\"vault\":\"prod\"");
	if (p == NULL)
		p = strstr(fl.l[i], "\"type\":\"burst\"");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	p[9] = 'X';       /* "vault":"Xrod" or "type":"Xurst" */
	flines_write(path, &fl);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_FALSE(res.ok);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_LINK);
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, i + 1);
	CU_ASSERT_EQUAL(res.seq, seq);
	flines_free(&fl);
}

static void
test_changed_field(void)
{
	unsigned s;
	size_t i;
	char path[1024];
	struct flines fl;
	uint64_t seq = 0;

	tamper_change(7);         /* followed by its seal */
	/* One followed by another event (inside a burst). */
	for (uint64_t q = 21; q < 60 && seq == 0; q++) {
		CU_ASSERT_FATAL(find_seq(base, q, &s, &i) == 0);
		seg(base, s, path, sizeof(path));
		flines_read(path, &fl);
		if (i + 1 < fl.n && line_type(fl.l[i + 1]) == KWAC_LINE_EVENT)
			seq = q;
		flines_free(&fl);
	}
	CU_ASSERT_NOT_EQUAL_FATAL(seq, 0);
	tamper_change(seq);
}

static void
test_deleted_line(void)
{
	char dir[512], path[1024];
	struct flines fl;
	struct kwac_result res;
	unsigned s;
	size_t i;

	fresh(dir, sizeof(dir));
	CU_ASSERT_FATAL(find_seq(dir, 9, &s, &i) == 0);
	seg(dir, s, path, sizeof(path));
	flines_read(path, &fl);
	free(fl.l[i]);
	memmove(&fl.l[i], &fl.l[i + 1], (fl.n - i - 1) * sizeof(char *));
	fl.n--;
	flines_write(path, &fl);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	/* The seal of 9 now follows event 8: caught where 9 was. */
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEAL);
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, i + 1);
	CU_ASSERT_EQUAL(res.seq, 9);
	flines_free(&fl);

	/* Delete an event and its seal: the next event's seq jumps. */
	fresh(dir, sizeof(dir));
	CU_ASSERT_FATAL(find_seq(dir, 3, &s, &i) == 0);
	seg(dir, s, path, sizeof(path));
	flines_read(path, &fl);
	CU_ASSERT_FATAL(i + 2 < fl.n);
	free(fl.l[i]);
	free(fl.l[i + 1]);
	memmove(&fl.l[i], &fl.l[i + 2], (fl.n - i - 2) * sizeof(char *));
	fl.n -= 2;
	flines_write(path, &fl);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEQ);
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, i + 1);
	CU_ASSERT_EQUAL(res.seq, 4);
	CU_ASSERT_PTR_NOT_NULL(strstr(res.what, "missing"));
	flines_free(&fl);
}

static void
test_inserted_line(void)
{
	char dir[512], path[1024];
	struct flines fl;
	struct kwac_result res;
	unsigned s;
	size_t i;

	fresh(dir, sizeof(dir));
	CU_ASSERT_FATAL(find_seq(dir, 15, &s, &i) == 0);
	seg(dir, s, path, sizeof(path));
	flines_read(path, &fl);
	/* A forged event with the right seq and prev, inserted after 14's seal. */
	{
		uint8_t h[KWAC_HASH_LEN];
		char hex[KWAC_HEX_LEN + 1], *forged;
		kwac_hash(fl.l[i - 2], strlen(fl.l[i - 2]), h);   /* event 14 */
		kwac_hex(h, hex);
		CU_ASSERT_FATAL(asprintf(&forged,
		    "{\"seq\":15,\"time\":\"2026-01-01T00:00:00.000000Z\",\"prev\":\"%s\",\"type\":\"forged\"}",
		    hex) > 0);
		fl.l = realloc(fl.l, (fl.n + 1) * sizeof(char *));
		memmove(&fl.l[i + 1], &fl.l[i], (fl.n - i) * sizeof(char *));
		fl.l[i] = forged;
		fl.n++;
	}
	flines_write(path, &fl);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	/* The forged line links; the real 15 after it repeats the seq. */
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEQ);
	CU_ASSERT_EQUAL(res.line, i + 2);
	CU_ASSERT_EQUAL(res.seq, 15);
	CU_ASSERT_PTR_NOT_NULL(strstr(res.what, "inserted"));
	flines_free(&fl);

	/* A copy of a line pasted after itself: caught at the copy. */
	fresh(dir, sizeof(dir));
	CU_ASSERT_FATAL(find_seq(dir, 16, &s, &i) == 0);
	seg(dir, s, path, sizeof(path));
	flines_read(path, &fl);
	fl.l = realloc(fl.l, (fl.n + 1) * sizeof(char *));
	memmove(&fl.l[i + 1], &fl.l[i], (fl.n - i) * sizeof(char *));
	fl.l[i] = strdup(fl.l[i + 1]);
	fl.n++;
	flines_write(path, &fl);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEQ);
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, i + 2);
	CU_ASSERT_EQUAL(res.seq, 16);
	flines_free(&fl);
}

static void
test_swapped_lines(void)
{
	char dir[512], path[1024], *t;
	struct flines fl;
	struct kwac_result res;
	unsigned s;
	size_t i = 0;
	uint64_t seq = 0;

	/* Two consecutive events of a burst. */
	fresh(dir, sizeof(dir));
	for (uint64_t q = 21; q < 60 && seq == 0; q++) {
		CU_ASSERT_FATAL(find_seq(dir, q, &s, &i) == 0);
		seg(dir, s, path, sizeof(path));
		flines_read(path, &fl);
		if (i + 1 < fl.n && line_type(fl.l[i + 1]) == KWAC_LINE_EVENT) {
			seq = q;
			t = fl.l[i];
			fl.l[i] = fl.l[i + 1];
			fl.l[i + 1] = t;
			flines_write(path, &fl);
		}
		flines_free(&fl);
	}
	CU_ASSERT_NOT_EQUAL_FATAL(seq, 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEQ);
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, i + 1);
	CU_ASSERT_EQUAL(res.seq, seq + 1);
}

static void
test_truncated_tail(void)
{
	char dir[512], path[1024], *buf;
	struct kwac_result res;
	struct flines fl;
	size_t len;
	int n;

	fresh(dir, sizeof(dir));
	n = count_segments(dir);
	seg(dir, (unsigned)n, path, sizeof(path));
	flines_read(path, &fl);
	buf = kwt_read_file(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	/* Cut the last line (seal of 80) in its middle. */
	CU_ASSERT_EQUAL(truncate(path, (off_t)(len - 20)), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_TORN);
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, fl.n);
	CU_ASSERT_EQUAL(res.seq, 81);
	/* Verifying while the daemon writes: a write under way, not a break. */
	{
		struct kwac_verify_opts live = vopts;
		live.live = 1;
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &live, &res), 0);
		CU_ASSERT_EQUAL(res.pending_bytes, strlen(fl.l[fl.n - 1]) - 19);
	}
	/* Cut at a line boundary, the seal gone: at rest, a break where the
	 * unsealed events begin... */
	CU_ASSERT_EQUAL(truncate(path, (off_t)(len - strlen(fl.l[fl.n - 1]) - 1)), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_UNSEALED);
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, fl.n - 1);
	CU_ASSERT_EQUAL(res.seq, 80);
	CU_ASSERT_FALSE(res.live);
	CU_ASSERT_PTR_NOT_NULL(strstr(res.what, "1 event(s) after the last seal at seq 79 are not sealed"));
	CU_ASSERT_EQUAL(res.unsealed, 1);
	CU_ASSERT_EQUAL(res.sealed_seq, 79);
	/* ... while a daemon writes, a batch whose seal is under way. */
	{
		struct kwac_verify_opts live = vopts;
		live.live = KWAC_LIVE_YES;
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &live, &res), 0);
		CU_ASSERT(res.live);
		CU_ASSERT_EQUAL(res.unsealed, 1);
	}
	free(buf);
	flines_free(&fl);
}

/* KWAC_LIVE_AUTO asks the writer's lock on the directory. */
static void
test_live_auto(void)
{
	char dir[512], path[1024], *buf;
	struct kwac_verify_opts aut = vopts;
	struct kwac_result res;
	struct audit_log *log;
	struct flines fl;
	size_t len;
	int fd;

	aut.live = KWAC_LIVE_AUTO;
	fresh(dir, sizeof(dir));
	CU_ASSERT_EQUAL(kwac_dir_writer_active(dir), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &aut, &res), 0);
	CU_ASSERT_FALSE(res.live);
	/* With a daemon (here the writer itself) holding the directory. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 2000, 0));
	CU_ASSERT_EQUAL(kwac_dir_writer_active(dir), 1);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &aut, &res), 0);
	CU_ASSERT(res.live);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_dir_writer_active(dir), 0);
	/* Its seal cut off: a break at rest, not under a writer's lock. */
	seg(dir, (unsigned)count_segments(dir), path, sizeof(path));
	flines_read(path, &fl);
	buf = kwt_read_file(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL(truncate(path, (off_t)(len - strlen(fl.l[fl.n - 1]) - 1)), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &aut, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_UNSEALED);
	{
		json_t *j = kwac_result_json(&res), *b;
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		b = json_object_get(j, "break");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "problem")), "unsealed");
		CU_ASSERT(json_is_false(json_object_get(j, "live")));
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "unsealed")), 1);
		json_decref(j);
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(flock(fd, LOCK_EX | LOCK_NB), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &aut, &res), 0);
	CU_ASSERT(res.live);
	close(fd);
	free(buf);
	flines_free(&fl);
}

static void
test_deleted_segment(void)
{
	char dir[512], path[1024];
	struct kwac_result res;

	fresh(dir, sizeof(dir));
	seg(dir, 2, path, sizeof(path));
	CU_ASSERT_EQUAL(unlink(path), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEGMENT_MISSING);
	seg(dir, 3, path, sizeof(path));
	CU_ASSERT_STRING_EQUAL(res.file, path);

	/* Renumbered to hide the gap: the header names its segment. */
	{
		char to[1024];
		int n = count_segments(dir);
		for (int k = 3; k <= n + 1; k++) {
			seg(dir, (unsigned)k, path, sizeof(path));
			seg(dir, (unsigned)k - 1, to, sizeof(to));
			rename(path, to);
		}
	}
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_HEADER);
	seg(dir, 2, path, sizeof(path));
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, 1);

	/* The first segment deleted. */
	fresh(dir, sizeof(dir));
	seg(dir, 1, path, sizeof(path));
	CU_ASSERT_EQUAL(unlink(path), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEGMENT_MISSING);
	/* ... which retention may do: the partial option accepts it. */
	{
		struct kwac_verify_opts p = vopts;
		p.partial = 1;
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &p, &res), 0);
		CU_ASSERT(res.first_seq > 1);
		CU_ASSERT_EQUAL(res.last_seq, 80);
	}
}

static void
test_swapped_segments(void)
{
	char dir[512], a[1024], b[1024], t[1100];
	struct kwac_result res;

	fresh(dir, sizeof(dir));
	seg(dir, 2, a, sizeof(a));
	seg(dir, 3, b, sizeof(b));
	snprintf(t, sizeof(t), "%s/tmp", dir);
	rename(a, t);
	rename(b, a);
	rename(t, b);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_HEADER);
	CU_ASSERT_STRING_EQUAL(res.file, a);
	CU_ASSERT_EQUAL(res.line, 1);

	/* Swapped with their headers' indexes fixed up: the links break. */
	{
		struct flines fa, fb;
		char *p;
		flines_read(a, &fa);
		flines_read(b, &fb);
		p = strstr(fa.l[0], "\"segment\":3");
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		p[10] = '2';
		p = strstr(fb.l[0], "\"segment\":2");
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		p[10] = '3';
		flines_write(a, &fa);
		flines_write(b, &fb);
		flines_free(&fa);
		flines_free(&fb);
	}
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_LINK);
	CU_ASSERT_STRING_EQUAL(res.file, a);
	CU_ASSERT_EQUAL(res.line, 1);
}

/* The attacker changes event seq and recomputes every hash after it, but
 * has no audit key: the first seal after it is caught. */
static void
test_recomputed_chain(void)
{
	char dir[512], path[1024], hex[KWAC_HEX_LEN + 1];
	uint8_t last[KWAC_HASH_LEN];
	struct kwac_result res;
	struct flines fl;
	int started = 0, nseg;
	unsigned s0 = 0, seal_seg = 0;
	size_t i0 = 0, seal_line = 0;

	fresh(dir, sizeof(dir));
	CU_ASSERT_FATAL(find_seq(dir, 5, &s0, &i0) == 0);
	nseg = count_segments(dir);
	memset(last, 0, sizeof(last));
	for (unsigned s = 1; s <= (unsigned)nseg; s++) {
		seg(dir, s, path, sizeof(path));
		flines_read(path, &fl);
		for (size_t i = 0; i < fl.n; i++) {
			json_t *o;
			char *text;
			if (s == s0 && i == i0) {
				char *p = strstr(fl.l[i], "\"vault\":\"prod\"");
				CU_ASSERT_PTR_NOT_NULL_FATAL(p);
				p[9] = 'X';
				started = 1;
			}
			if (started && !(s == s0 && i == i0)) {
				o = json_loads(fl.l[i], 0, NULL);
				CU_ASSERT_PTR_NOT_NULL_FATAL(o);
				kwac_hex(last, hex);
				if (line_type(fl.l[i]) == KWAC_LINE_SEAL) {
					json_object_set_new(o, "hash", json_string(hex));
					if (seal_seg == 0) {
						seal_seg = s;
						seal_line = i + 1;
					}
				} else
					json_object_set_new(o, "prev", json_string(hex));
				text = json_dumps(o, JSON_COMPACT);
				free(fl.l[i]);
				fl.l[i] = text;
				json_decref(o);
			}
			if (line_type(fl.l[i]) != KWAC_LINE_SEAL)
				kwac_hash(fl.l[i], strlen(fl.l[i]), last);
		}
		flines_write(path, &fl);
		flines_free(&fl);
	}
	/* Without the key, the structure is flawless... */
	{
		struct kwac_verify_opts nokey = { .check = NULL };
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &nokey, &res), 0);
		CU_ASSERT_FALSE(res.seals_checked);
	}
	/* ... and the key finds it. */
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	show(&res);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEAL_MAC);
	seg(dir, seal_seg, path, sizeof(path));
	CU_ASSERT_STRING_EQUAL(res.file, path);
	CU_ASSERT_EQUAL(res.line, seal_line);
	CU_ASSERT_EQUAL(res.seq, 5);
}

/* Any single byte changed anywhere in a sealed log is caught. */
static void
test_random_flips(void)
{
	char dir[512], path[1024], *buf;
	struct kwac_result res;
	unsigned seed = 12345, s;
	int nseg = count_segments(base), missed = 0;
	size_t len, at;

	for (int k = 0; k < 200; k++) {
		fresh(dir, sizeof(dir));
		s = 1 + (unsigned)(rand_r(&seed) % nseg);
		seg(dir, s, path, sizeof(path));
		buf = kwt_read_file(path, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
		at = (size_t)rand_r(&seed) % len;
		buf[at] = (char)(buf[at] ^ (1 + rand_r(&seed) % 255));
		spit(path, buf, len);
		free(buf);
		if (kwac_verify_dir(dir, &vopts, &res) != KW_E_AUTH) {
			fprintf(stderr, "missed: byte %zu of segment %u\n", at, s);
			missed++;
		}
		kwt_rmtree(dir);
	}
	CU_ASSERT_EQUAL(missed, 0);
}

static void
test_result_json(void)
{
	struct kwac_result res;
	json_t *j;

	kwac_verify_dir(base, &vopts, &res);
	j = kwac_result_json(&res);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT(json_is_true(json_object_get(j, "ok")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "events")), 80);
	CU_ASSERT(json_is_null(json_object_get(j, "break")));
	json_decref(j);
}

/* ---- the writer --------------------------------------------------------------- */

static void
test_torn_tail_open(void)
{
	char dir[512], path[1024], torn[1400], *buf;
	const char *partial = "{\"seq\":11,\"time\":\"2026-";
	struct audit_log *log;
	struct kwac_result res;
	size_t len;
	int fd;

	snprintf(dir, sizeof(dir), "%s/torn", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 10), 0);
	audit_close(log);
	seg(dir, 1, path, sizeof(path));
	/* A crash in the middle of a write. */
	fd = open(path, O_WRONLY | O_APPEND);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, partial, strlen(partial)), (ssize_t)strlen(partial));
	close(fd);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_TORN);

	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	/* The torn bytes are kept aside, not lost. */
	{
		struct stat st;
		CU_ASSERT_EQUAL(stat(path, &st), 0);
		snprintf(torn, sizeof(torn), "%s.torn-%lld", path,
		    (long long)st.st_size - 0);
	}
	CU_ASSERT_EQUAL(audit_committed_seq(log), 11);  /* the torn-tail event */
	CU_ASSERT_EQUAL(put_n(log, 5), 0);
	audit_close(log);

	{
		/* Find the .torn file: its offset is where the tail was cut. */
		DIR *d = opendir(dir);
		struct dirent *de;
		int found = 0;
		while ((de = readdir(d)) != NULL)
			if (strstr(de->d_name, ".torn-") != NULL) {
				snprintf(torn, sizeof(torn), "%s/%s", dir, de->d_name);
				found++;
			}
		closedir(d);
		CU_ASSERT_EQUAL(found, 1);
		buf = kwt_read_file(torn, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
		CU_ASSERT_EQUAL(len, strlen(partial));
		CU_ASSERT_EQUAL(memcmp(buf, partial, len), 0);
		free(buf);
	}
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	CU_ASSERT(res.ok);
	CU_ASSERT_EQUAL(res.torn_events, 1);
	CU_ASSERT_EQUAL(res.torn_seq, 11);
	CU_ASSERT_EQUAL(res.last_seq, 16);
	/* The event says what was cut and where it went. */
	seg(dir, 1, path, sizeof(path));
	buf = kwt_read_file(path, &len);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"type\":\"audit.torn_tail\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"saved_as\":\"audit-0000000001.jsonl.torn-"));
	free(buf);

	/* A whole line that does not link (a replayed line) is torn too. */
	{
		struct flines fl;
		flines_read(path, &fl);
		fd = open(path, O_WRONLY | O_APPEND);
		dprintf(fd, "%s\n", fl.l[3]);
		close(fd);
		flines_free(&fl);
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 17);
	CU_ASSERT_EQUAL(put_n(log, 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.torn_events, 2);
	CU_ASSERT_EQUAL(res.last_seq, 18);
}

static void
test_refuses_secrets(void)
{
	char dir[512];
	struct audit_log *log;

	snprintf(dir, sizeof(dir), "%s/refuse", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(audit_submit_wait(log, json_pack("{s:s,s:s}", "type", "x", "value", "s3cr3t"), NULL), -EINVAL);
	CU_ASSERT_EQUAL(audit_submit_wait(log, json_pack("{s:s}", "type", "seal"), NULL), -EINVAL);
	CU_ASSERT_EQUAL(audit_submit_wait(log, json_string("x"), NULL), -EINVAL);
	{
		char *big = malloc(KWAC_LINE_MAX);
		memset(big, 'a', KWAC_LINE_MAX - 1);
		big[KWAC_LINE_MAX - 1] = '\0';
		CU_ASSERT_EQUAL(audit_submit_wait(log, json_pack("{s:s,s:s}", "type", "x", "name", big), NULL), KW_E_TOO_LARGE);
		free(big);
	}
	/* Given seq/time/prev are replaced, not trusted. */
	CU_ASSERT_EQUAL(audit_submit_wait(log, json_pack("{s:s,s:i,s:s}", "type", "x", "seq", 999, "prev", "zz"), NULL), 0);
	CU_ASSERT_EQUAL(audit_committed_seq(log), 1);
	audit_close(log);
	CU_ASSERT_EQUAL(kwt_tree_contains(dir, "s3cr3t", 6), 0);
}

/* 8 threads, 10,000 events: distinct consecutive seqs, all in the files. */
#define GC_THREADS 8
#define GC_PER 1250
static uint64_t gc_seqs[GC_THREADS * GC_PER];
static atomic_int gc_n, gc_bad, gc_stored;

static void
gc_done(void *arg, int status, uint64_t seq)
{
	(void)arg;
	if (status != 0) {
		atomic_fetch_add(&gc_bad, 1);
		return;
	}
	gc_seqs[atomic_fetch_add(&gc_n, 1)] = seq;
	atomic_fetch_add(&gc_stored, 1);
}

struct gc_arg {
	struct audit_log *log;
	int sync;
	int n;
};

static void *
gc_thread(void *p)
{
	struct gc_arg *a = p;
	uint64_t seq;

	for (int i = 0; i < a->n; i++) {
		json_t *ev = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "type", "secret.get",
		    "outcome", "allowed", "vault", "prod", "uid", 1000, "user", "alice",
		    "name", "db/password", "policy", "rule 3");
		if (a->sync) {
			if (audit_submit_wait(a->log, ev, &seq) != 0)
				atomic_fetch_add(&gc_bad, 1);
			else {
				gc_seqs[atomic_fetch_add(&gc_n, 1)] = seq;
				atomic_fetch_add(&gc_stored, 1);
			}
		} else if (audit_submit(a->log, ev, gc_done, NULL) != 0)
			atomic_fetch_add(&gc_bad, 1);
	}
	return NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double
gc_run(struct audit_log *log, int sync, int per, int *ok)
{
	pthread_t th[GC_THREADS];
	struct gc_arg a = { log, sync, per };
	int total = GC_THREADS * per;
	uint64_t base_seq = audit_committed_seq(log);
	double t0 = now_s(), dt;

	atomic_store(&gc_n, 0);
	atomic_store(&gc_bad, 0);
	atomic_store(&gc_stored, 0);
	for (int i = 0; i < GC_THREADS; i++)
		pthread_create(&th[i], NULL, gc_thread, &a);
	for (int i = 0; i < GC_THREADS; i++)
		pthread_join(th[i], NULL);
	while (atomic_load(&gc_stored) + atomic_load(&gc_bad) < total)
		usleep(1000);
	dt = now_s() - t0;
	*ok = atomic_load(&gc_bad) == 0;
	qsort(gc_seqs, (size_t)total, sizeof(gc_seqs[0]), cmp_u64);
	for (int i = 0; i < total; i++)
		if (gc_seqs[i] != base_seq + 1 + (uint64_t)i)
			*ok = 0;
	return (double)total / dt;
}

static void
test_group_commit(void)
{
	char dir[512];
	struct audit_log *log;
	struct audit_status st;
	struct kwac_result res;
	double rate_async, rate_sync;
	int ok;
	uint64_t b0;

	snprintf(dir, sizeof(dir), "%s/gc", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 1 << 20, 60000, 0));
	rate_async = gc_run(log, 0, GC_PER, &ok);
	CU_ASSERT(ok);
	audit_status_get(log, &st);
	CU_ASSERT_EQUAL(st.committed_seq, GC_THREADS * GC_PER);
	printf("\n  group commit, async completions: %d events in %" PRIu64 " commits: %.0f events/s\n",
	    GC_THREADS * GC_PER, st.batches, rate_async);
	b0 = st.batches;
	/* What workers do: each waits for its event (intent before a write). */
	rate_sync = gc_run(log, 1, 250, &ok);
	CU_ASSERT(ok);
	audit_status_get(log, &st);
	printf("  group commit, 8 threads waiting: %d events in %" PRIu64 " commits: %.0f events/s\n",
	    GC_THREADS * 250, st.batches - b0, rate_sync);
	/* Group commit: fewer fdatasyncs than events. */
	CU_ASSERT(st.batches - b0 < GC_THREADS * 250);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	CU_ASSERT_EQUAL(res.events, GC_THREADS * GC_PER + GC_THREADS * 250);
	CU_ASSERT_EQUAL(res.unsealed, 0);
}

static int
wait_state(struct audit_log *log, enum audit_state want, double secs)
{
	struct audit_status st;
	double t0 = now_s();

	do {
		audit_status_get(log, &st);
		if (st.state == want)
			return 0;
		usleep(10000);
	} while (now_s() - t0 < secs);
	return -1;
}

/* The file may grow no more (RLIMIT_FSIZE: works for root too).  Writes
 * fail with EFBIG at once; completions report KW_E_AUDIT; then it heals. */
static void
test_fail_closed(void)
{
	char dir[512], path[1024], *buf;
	struct audit_log *log;
	struct audit_status st;
	struct kwac_result res;
	struct rlimit old, lim;
	struct stat sb;
	double t0;
	size_t len;
	json_t *h;

	snprintf(dir, sizeof(dir), "%s/fail", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 5), 0);
	seg(dir, 1, path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(stat(path, &sb), 0);
	CU_ASSERT(sb.st_size > data_len(path));   /* zeros ahead of the data */
	signal(SIGXFSZ, SIG_IGN);
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	/* No write may reach past 100 bytes after the data, zeros or not: a
	 * partial write, then EFBIG. */
	lim.rlim_cur = (rlim_t)data_len(path) + 100;
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);

	t0 = now_s();
	CU_ASSERT_EQUAL(put(log, "refused", 1), KW_E_AUDIT);
	CU_ASSERT(now_s() - t0 < 2.5);
	CU_ASSERT_EQUAL(burst(log, 20), -1);
	CU_ASSERT_EQUAL(atomic_load(&burst_bad), 20);
	audit_status_get(log, &st);
	CU_ASSERT_EQUAL(st.state, AUDIT_FAILING);
	CU_ASSERT_EQUAL(st.committed_seq, 5);
	CU_ASSERT(st.refused >= 21);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.detail, path));
	h = audit_status_json(log);
	CU_ASSERT(json_is_false(json_object_get(h, "ok")));
	json_decref(h);

	/* The disk comes back. */
	CU_ASSERT_EQUAL(setrlimit(RLIMIT_FSIZE, &old), 0);
	CU_ASSERT_EQUAL(wait_state(log, AUDIT_OK, 3.0), 0);
	CU_ASSERT_EQUAL(put(log, "after", 1), 0);
	CU_ASSERT_EQUAL(audit_committed_seq(log), 7);   /* recovered event + this */
	audit_close(log);
	signal(SIGXFSZ, SIG_DFL);

	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	CU_ASSERT_EQUAL(res.events, 7);
	buf = kwt_read_file(path, &len);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"seq\":6,"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"type\":\"audit.recovered\",\"refused\":21"));
	CU_ASSERT_PTR_NULL(strstr(buf, "\"type\":\"refused\""));
	free(buf);
}

/* The token refuses to seal: fail closed too, and heal. */
static void
test_seal_refused(void)
{
	char dir[512];
	struct audit_log *log;
	struct kwac_result res;

	snprintf(dir, sizeof(dir), "%s/sealfail", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 3), 0);
	atomic_store(&seal_fail, 1);
	CU_ASSERT_EQUAL(put(log, "x", 0), KW_E_AUDIT);
	/* The token's own words, whole, in the status. */
	{
		struct audit_status st;
		audit_status_get(log, &st);
		CU_ASSERT_STRING_EQUAL(st.detail, "the token did not seal the audit chain: test token is away");
	}
	atomic_store(&seal_fail, 0);
	CU_ASSERT_EQUAL(wait_state(log, AUDIT_OK, 3.0), 0);
	CU_ASSERT_EQUAL(put(log, "x", 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.events, 5);
}

/* A sync that fails from the moment it is armed. */
static atomic_int eio_armed;

static int
eio_datasync(int fd)
{
	if (atomic_load(&eio_armed)) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

/* The audit directory must be the writer's alone. */
static void
test_dir_must_be_ours(void)
{
	char dir[512];
	struct audit_options o;
	struct audit_log *log = NULL;

	snprintf(dir, sizeof(dir), "%s/notours", tmproot);
	CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.seal = test_seal;
	CU_ASSERT_EQUAL_FATAL(chmod(dir, 0777), 0);
	CU_ASSERT_EQUAL(audit_open(&o, &log), KW_E_CONFIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_CONFIG), "not be writable by group or others"));
	CU_ASSERT_EQUAL_FATAL(chmod(dir, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(chown(dir, 65534, 65534), 0);
	CU_ASSERT_EQUAL(audit_open(&o, &log), KW_E_CONFIG);
	CU_ASSERT_EQUAL_FATAL(chown(dir, geteuid(), getegid()), 0);
	CU_ASSERT_EQUAL_FATAL(audit_open(&o, &log), 0);
	audit_close(log);
}

/* Closed while failing: the refused batch, written but not durable, is
 * cut off at close too, so the next open does not take it for the log's
 * sealed end (its requests were refused). */
static void
test_close_while_failing(void)
{
	char dir[512], path[1024];
	struct audit_options o;
	struct audit_log *log = NULL;
	struct kwac_result res;
	off_t clean;

	snprintf(dir, sizeof(dir), "%s/closefail", tmproot);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.seal = test_seal;
	o.retry_ms = 10000;
	o.preallocate = -1;
	o.datasync = eio_datasync;
	CU_ASSERT_EQUAL_FATAL(audit_open(&o, &log), 0);
	CU_ASSERT_EQUAL(put_n(log, 3), 0);
	seg(dir, 1, path, sizeof(path));
	clean = file_size(path);
	atomic_store(&eio_armed, 1);
	CU_ASSERT_EQUAL(put(log, "refused", 0), KW_E_AUDIT);
	/* written, not durable: cut at once, not at the next try or close,
	 * so that a crash now leaves no refused batch to be taken for the
	 * log's end */
	CU_ASSERT_EQUAL(file_size(path), clean);
	audit_close(log);
	atomic_store(&eio_armed, 0);
	CU_ASSERT_EQUAL(file_size(path), clean);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 3);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.events, 3);
	CU_ASSERT_FALSE(kwt_file_contains(path, "\"refused\"", 9));
}

/* A failing sync that first lets the reader read the file: the refused
 * batch is written, not yet cut (the writer cuts it right after). */
static struct audit_reader *rr_reader;

static int
rr_datasync(int fd)
{
	const char *line;
	size_t len;
	uint64_t seq;

	if (!atomic_load(&eio_armed))
		return fdatasync(fd);
	for (uint64_t want = 1; want <= 2; want++) {
		CU_ASSERT_EQUAL(audit_reader_next(rr_reader, &line, &len, &seq), 1);
		CU_ASSERT_EQUAL(seq, want);
	}
	errno = EIO;
	return -1;
}

/* A reader that read a refused batch's bytes from the file (they were
 * written, not made durable) drops them when the batch is cut off: the
 * retry gives its seqs to other events, and the reader must stream those. */
static void
test_reader_drops_refused_bytes(void)
{
	char dir[512];
	struct audit_options o;
	struct audit_log *log = NULL;
	struct audit_reader *rd = NULL;
	const char *line;
	size_t len;
	uint64_t seq;
	int r;

	snprintf(dir, sizeof(dir), "%s/readrefused", tmproot);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.seal = test_seal;
	o.retry_ms = 300;          /* no retry (and no failed probe) before the disarm */
	o.ring_lines = 1;          /* older lines come from the file */
	o.preallocate = -1;
	o.datasync = rr_datasync;
	CU_ASSERT_EQUAL_FATAL(audit_open(&o, &log), 0);
	CU_ASSERT_EQUAL(put_n(log, 3), 0);
	/* the reader is behind the ring (one line: seq 3); it reads 1 and 2
	 * during the failing sync, and its first read of the file takes in
	 * the refused line too */
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(log, NULL, 0, &rd), 0);
	rr_reader = rd;
	atomic_store(&eio_armed, 1);
	CU_ASSERT_EQUAL(put(log, "refused", 0), KW_E_AUDIT);
	atomic_store(&eio_armed, 0);
	for (int i = 0; i < 200 && audit_committed_seq(log) < 4; i++)
		usleep(10 * 1000);
	/* more commits than the ring holds: 3 and 4 come from the file */
	CU_ASSERT_EQUAL(put_n(log, 2), 0);
	CU_ASSERT_FATAL(audit_committed_seq(log) >= 6);
	CU_ASSERT_EQUAL(audit_reader_next(rd, &line, &len, &seq), 1);
	CU_ASSERT_EQUAL(seq, 3);
	r = audit_reader_next(rd, &line, &len, &seq);
	CU_ASSERT_EQUAL(r, 1);
	CU_ASSERT_EQUAL(seq, 4);
	if (r == 1) {
		CU_ASSERT_PTR_NULL(memmem(line, len, "\"type\":\"refused\"", 16));
		CU_ASSERT_PTR_NOT_NULL(memmem(line, len, "audit.recovered", 15));
	}
	audit_reader_close(rd);
	audit_close(log);
}

/* The disk fails two syncs in a row while events keep coming: their
 * batches are refused and cut off the file (they were written, not made
 * durable), every acknowledged event is there once, and the log heals. */
#define SF_THREADS 8
#define SF_PER 150
static atomic_int sf_calls, sf_fail_from, sf_fail_n;
static int sf_status[SF_THREADS * SF_PER];
static uint64_t sf_seq[SF_THREADS * SF_PER];
static struct audit_log *sf_log;

static int
sf_datasync(int fd)
{
	int call = atomic_fetch_add(&sf_calls, 1);
	int from = atomic_load(&sf_fail_from);

	if (from > 0 && call >= from && call < from + atomic_load(&sf_fail_n)) {
		usleep(3000);   /* a slow failure: more events queue meanwhile */
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static atomic_int sf_left;

static void
sf_done(void *arg, int status, uint64_t seq)
{
	int id = (int)(intptr_t)arg;

	sf_status[id] = status;
	sf_seq[id] = seq;
	atomic_fetch_sub(&sf_left, 1);
}

/* Submitters that do not wait: events keep coming while a sync runs. */
static void *
sf_thread(void *arg)
{
	int t = (int)(intptr_t)arg;

	for (int k = 0; k < SF_PER; k++) {
		int id = t * SF_PER + k;
		if (audit_submit(sf_log, json_pack("{s:s,s:i}", "type", "sf", "i", id),
		    sf_done, (void *)(intptr_t)id) != 0) {
			sf_status[id] = -1;
			atomic_fetch_sub(&sf_left, 1);
		}
		usleep(200);
	}
	return NULL;
}

static void
test_sync_fails(void)
{
	char dir[512], path[1024], pat[64], *buf;
	struct audit_options o;
	struct audit_status st;
	struct kwac_result res;
	pthread_t th[SF_THREADS];
	size_t len;
	int acked = 0, refused = 0, missing = 0, leaked = 0, twice = 0;

	snprintf(dir, sizeof(dir), "%s/syncfail", tmproot);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.timeout_ms = 5000;
	o.retry_ms = 20;
	o.seal = test_seal;
	o.datasync = sf_datasync;
	atomic_store(&sf_calls, 0);
	/* Two failed syncs in a row, early: on a loaded machine the 1,200
	 * events may take few commits (42 were too many for one run). */
	atomic_store(&sf_fail_from, 5);
	atomic_store(&sf_fail_n, 2);
	atomic_store(&sf_left, SF_THREADS * SF_PER);
	CU_ASSERT_EQUAL_FATAL(audit_open(&o, &sf_log), 0);
	for (int t = 0; t < SF_THREADS; t++)
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, sf_thread, (void *)(intptr_t)t), 0);
	for (int t = 0; t < SF_THREADS; t++)
		pthread_join(th[t], NULL);
	while (atomic_load(&sf_left) > 0)
		usleep(1000);
	CU_ASSERT(atomic_load(&sf_calls) > 7);
	CU_ASSERT_EQUAL(wait_state(sf_log, AUDIT_OK, 3.0), 0);
	audit_status_get(sf_log, &st);
	audit_close(sf_log);

	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	seg(dir, 1, path, sizeof(path));
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf = kwt_read_file(path, &len));
	for (int id = 0; id < SF_THREADS * SF_PER; id++) {
		char *at;
		snprintf(pat, sizeof(pat), "\"type\":\"sf\",\"i\":%d}", id);
		at = strstr(buf, pat);
		if (sf_status[id] == 0) {
			acked++;
			if (at == NULL)
				missing++;
			else if (strstr(at + 1, pat) != NULL)
				twice++;
		} else {
			CU_ASSERT_EQUAL(sf_status[id], KW_E_AUDIT);
			refused++;
			if (at != NULL)
				leaked++;
		}
	}
	printf("\n  %d acknowledged, %d refused across the failed syncs\n", acked, refused);
	CU_ASSERT(refused >= 1);
	CU_ASSERT_EQUAL(missing, 0);
	CU_ASSERT_EQUAL(twice, 0);
	CU_ASSERT_EQUAL(leaked, 0);
	CU_ASSERT_EQUAL((uint64_t)refused, st.refused);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"type\":\"audit.recovered\""));
	/* Every event the log holds: the acknowledged ones and the recovery. */
	CU_ASSERT_EQUAL(res.events, (uint64_t)acked + 1);
	free(buf);
}

/* A stuck disk: the next segment is a FIFO nobody reads, so the writer
 * blocks in open().  Waiting submissions fail after the timeout. */
static void
test_stuck_disk(void)
{
	char dir[512], next[1024];
	struct audit_log *log;
	struct audit_status st;
	struct kwac_result res;
	double t0, dt;
	int fd, i;

	snprintf(dir, sizeof(dir), "%s/stuck", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 300, 0));
	for (i = 0; i < 1000; i++) {
		CU_ASSERT_EQUAL_FATAL(put(log, "fill", i), 0);
		audit_status_get(log, &st);
		seg(dir, st.segment, next, sizeof(next));
		if (data_len(next) >= 4096)
			break;
	}
	seg(dir, st.segment + 1, next, sizeof(next));
	CU_ASSERT_EQUAL_FATAL(mkfifo(next, 0600), 0);

	t0 = now_s();
	CU_ASSERT_EQUAL(put(log, "stuck", 1), -ETIMEDOUT);
	dt = now_s() - t0;
	CU_ASSERT(dt >= 0.25 && dt < 1.5);
	CU_ASSERT_EQUAL(burst(log, 5), -1);
	audit_status_get(log, &st);
	CU_ASSERT(st.timeouts >= 6);

	/* Unstick: the open returns, the writer sees a FIFO and refuses it. */
	fd = open(next, O_RDONLY | O_NONBLOCK);
	CU_ASSERT(fd >= 0);
	CU_ASSERT_EQUAL(wait_state(log, AUDIT_FAILING, 3.0), 0);
	unlink(next);
	close(fd);
	CU_ASSERT_EQUAL(wait_state(log, AUDIT_OK, 3.0), 0);
	CU_ASSERT_EQUAL(put(log, "after", 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	CU_ASSERT_EQUAL(res.events, (uint64_t)i + 1 + 2);   /* fill, recovered, after */
}

static void
test_reader(void)
{
	char dir[512];
	struct audit_log *log;
	struct audit_reader *rd;
	const char *line;
	size_t len;
	uint64_t seq, want;
	int r;

	snprintf(dir, sizeof(dir), "%s/reader", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 2000, 16));
	CU_ASSERT_EQUAL(put_n(log, 100), 0);
	CU_ASSERT(count_segments(dir) >= 3);

	/* From the files alone. */
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(NULL, dir, 37, &rd), 0);
	for (want = 38; (r = audit_reader_next(rd, &line, &len, &seq)) == 1; want++) {
		CU_ASSERT_EQUAL_FATAL(seq, want);
		CU_ASSERT_EQUAL(line[0], '{');
		CU_ASSERT_EQUAL(len, strlen(line));
	}
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(want, 101);
	audit_reader_close(rd);

	/* Through the log: older ones from files, the last 16 from memory. */
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(log, NULL, 37, &rd), 0);
	for (want = 38; (r = audit_reader_next(rd, &line, &len, &seq)) == 1; want++)
		CU_ASSERT_EQUAL_FATAL(seq, want);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(want, 101);
	/* It goes on when more arrive. */
	CU_ASSERT_EQUAL(put_n(log, 3), 0);
	for (; (r = audit_reader_next(rd, &line, &len, &seq)) == 1; want++)
		CU_ASSERT_EQUAL_FATAL(seq, want);
	CU_ASSERT_EQUAL(want, 104);
	audit_reader_close(rd);

	/* Nothing after the end. */
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(log, NULL, 103, &rd), 0);
	CU_ASSERT_EQUAL(audit_reader_next(rd, &line, &len, &seq), 0);
	audit_reader_close(rd);
	/* From the start. */
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(NULL, dir, 0, &rd), 0);
	CU_ASSERT_EQUAL(audit_reader_next(rd, &line, &len, &seq), 1);
	CU_ASSERT_EQUAL(seq, 1);
	audit_reader_close(rd);
	/* After the largest seq there is nothing: since + 1 must not wrap
	 * to 0 and replay the log. */
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(log, NULL, INT64_MAX, &rd), 0);
	CU_ASSERT_EQUAL(audit_reader_next(rd, &line, &len, &seq), 0);
	audit_reader_close(rd);
	rd = NULL;
	CU_ASSERT_EQUAL(audit_reader_open(log, NULL, UINT64_MAX, &rd), -EINVAL);
	CU_ASSERT_EQUAL(audit_reader_open(NULL, dir, (uint64_t)INT64_MAX + 1, &rd), -EINVAL);
	CU_ASSERT_PTR_NULL(rd);
	audit_close(log);
}

/* A subscriber that stalls: the writer does not wait for it, and once it
 * wakes it reads everything it missed, once, in order. */
static atomic_uint_fast64_t sub_latest, sub_first;
static atomic_int sub_calls;

static void
sub_notify(void *arg, const struct audit_line *lines, size_t n)
{
	(void)arg;
	uint_fast64_t zero = 0;

	atomic_compare_exchange_strong(&sub_first, &zero, lines[0].seq);
	atomic_store(&sub_latest, lines[n - 1].seq);
	atomic_fetch_add(&sub_calls, 1);
}

static void
test_slow_subscriber(void)
{
	char dir[512];
	struct audit_log *log;
	struct audit_sub *sub;
	struct audit_reader *rd;
	const char *line;
	size_t len;
	uint64_t committed, seq, want;
	int ok, r;
	double rate;

	snprintf(dir, sizeof(dir), "%s/sub", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 64 * 1024, 30000, 64));
	CU_ASSERT_EQUAL(put_n(log, 10), 0);
	CU_ASSERT_EQUAL_FATAL(audit_subscribe(log, sub_notify, NULL, &sub, &committed), 0);
	CU_ASSERT_EQUAL(committed, 10);
	/* The subscriber's consumer is asleep while 10,000 events go by. */
	rate = gc_run(log, 0, GC_PER, &ok);
	CU_ASSERT(ok);
	printf("\n  with a stalled subscriber: %.0f events/s\n", rate);
	CU_ASSERT_EQUAL(atomic_load(&sub_first), 11);
	CU_ASSERT_EQUAL(atomic_load(&sub_latest), 10 + GC_THREADS * GC_PER);
	/* It wakes up far behind the ring: the reader takes the files. */
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(log, NULL, committed, &rd), 0);
	for (want = committed + 1; (r = audit_reader_next(rd, &line, &len, &seq)) == 1; want++)
		CU_ASSERT_EQUAL_FATAL(seq, want);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(want, 11 + GC_THREADS * GC_PER);
	audit_reader_close(rd);
	audit_unsubscribe(log, sub);
	r = atomic_load(&sub_calls);
	CU_ASSERT_EQUAL(put_n(log, 1), 0);
	CU_ASSERT_EQUAL(atomic_load(&sub_calls), r);   /* no call after unsubscribe */
	audit_close(log);
}

/* A crash in the middle of a batch's write can leave whole events that
 * link but lack their seal: never acknowledged, so cut off as torn. */
static void
test_unsealed_tail_open(void)
{
	char dir[512], path[1024], hex[KWAC_HEX_LEN + 1], *buf;
	uint8_t h[KWAC_HASH_LEN];
	struct audit_log *log;
	struct kwac_result res;
	struct flines fl;
	unsigned s;
	size_t i, len;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/unsealed", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 5), 0);
	audit_close(log);
	CU_ASSERT_FATAL(find_seq(dir, 5, &s, &i) == 0);
	seg(dir, s, path, sizeof(path));
	flines_read(path, &fl);
	kwac_hash(fl.l[i], strlen(fl.l[i]), h);
	flines_free(&fl);
	kwac_hex(h, hex);
	f = fopen(path, "a");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "{\"seq\":6,\"time\":\"2026-01-01T00:00:00.000000Z\",\"prev\":\"%s\",\"type\":\"refused\"}\n", hex);
	fclose(f);
	/* The verifier sees an unsealed tail: a break at rest... */
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_UNSEALED);
	CU_ASSERT_EQUAL(res.seq, 6);
	CU_ASSERT_EQUAL(res.unsealed, 1);
	/* ... the writer cuts it off, keeps it aside, and records it. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 6);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.torn_events, 1);
	CU_ASSERT_EQUAL(res.unsealed, 0);
	buf = kwt_read_file(path, &len);
	CU_ASSERT_PTR_NULL(strstr(buf, "\"type\":\"refused\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "never acknowledged"));
	free(buf);
}

/* A token that seals once (open's check of the last seal) and then is
 * away: the record of a repair cannot be written. */
static atomic_int once_calls;

static int
once_seal(void *arg, const uint8_t *data, size_t len, uint8_t mac[32])
{
	if (atomic_fetch_add(&once_calls, 1) >= 1)
		return kw_fail(KW_E_TOKEN, "test token went away");
	return test_seal(arg, data, len, mac);
}

/* The names in dir that contain needle: how many, the last into buf. */
static int
find_named(const char *dir, const char *needle, char *buf, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int found = 0;

	while (d != NULL && (de = readdir(d)) != NULL)
		if (strstr(de->d_name, needle) != NULL) {
			snprintf(buf, len, "%s/%s", dir, de->d_name);
			found++;
		}
	if (d != NULL)
		closedir(d);
	return found;
}

/* The repair of a torn tail is cut first and recorded after: when the
 * record cannot be written (or the daemon dies in between), the next
 * start records it; when only the rename after the record was missed, it
 * is not recorded twice. */
static void
test_torn_record_lost(void)
{
	const char *partial = "{\"seq\":6,\"time\":\"2026-";
	char dir[512], path[1024], copy[1200], final[1200], *buf;
	struct audit_options o;
	struct audit_log *log = NULL;
	struct kwac_result res;
	size_t len;
	off_t clean;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/tornlost", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 5), 0);
	audit_close(log);
	seg(dir, 1, path, sizeof(path));
	clean = file_size(path);
	f = fopen(path, "a");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(partial, f);
	fclose(f);

	/* The token fails the record: open fails, the tail is cut and kept,
	 * but not recorded (as if the daemon had died in between). */
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.seal = once_seal;
	o.retry_ms = 50;
	log = NULL;
	CU_ASSERT_NOT_EQUAL(audit_open(&o, &log), 0);
	CU_ASSERT_PTR_NULL(log);
	CU_ASSERT_EQUAL(file_size(path), clean);
	CU_ASSERT_EQUAL(find_named(dir, ".unrecorded", copy, sizeof(copy)), 1);
	CU_ASSERT_EQUAL(find_named(dir, ".torn-", final, sizeof(final)), 1);
	buf = kwt_read_file(copy, &len);
	CU_ASSERT(buf != NULL && len == strlen(partial) && memcmp(buf, partial, len) == 0);
	free(buf);
	/* The log alone shows nothing: it ends with its seal. */
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.torn_events, 0);

	/* The next start records it, and names the copy as recorded. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 6);
	audit_close(log);
	CU_ASSERT_EQUAL(find_named(dir, ".unrecorded", copy, sizeof(copy)), 0);
	CU_ASSERT_EQUAL(find_named(dir, ".torn-", final, sizeof(final)), 1);
	CU_ASSERT_EQUAL(strncmp(final, copy, strlen(final)), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.torn_events, 1);
	CU_ASSERT_EQUAL(res.torn_seq, 6);
	buf = kwt_read_file(path, &len);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"recorded_late\":true"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, strrchr(final, '/') + 1));
	free(buf);

	/* Recorded, but the rename was lost: renamed now, not recorded again. */
	CU_ASSERT_EQUAL_FATAL(rename(final, copy), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 6);
	audit_close(log);
	CU_ASSERT_EQUAL(access(final, F_OK), 0);
	CU_ASSERT_EQUAL(find_named(dir, ".unrecorded", copy, sizeof(copy)), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.torn_events, 1);
}

/* Crash while a new segment's header was written: the chain goes on from
 * the previous segment's last event. */
static void
test_torn_header(void)
{
	char dir[512], path[1024];
	const char *partial = "{\"type\":\"segm";
	struct audit_log *log;
	struct kwac_result res;
	int n;

	snprintf(dir, sizeof(dir), "%s/tornhdr", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 20), 0);
	audit_close(log);
	n = count_segments(dir);
	CU_ASSERT_FATAL(n >= 2);
	seg(dir, (unsigned)n + 1, path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(spit(path, partial, strlen(partial)), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 21);
	CU_ASSERT_EQUAL(put_n(log, 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	CU_ASSERT_EQUAL(res.torn_events, 1);
	CU_ASSERT_EQUAL(res.last_seq, 22);
	CU_ASSERT_EQUAL(res.segments, (unsigned)n + 1);

	/* An empty last segment (created, first write failed) is no break;
	 * an empty one in the middle is. */
	seg(dir, (unsigned)n + 2, path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(spit(path, "", 0), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	seg(dir, (unsigned)n + 3, path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(spit(path, "", 0), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_TORN);
	CU_ASSERT_EQUAL(unlink(path), 0);
	/* And the writer takes it up. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.last_seq, 23);
	CU_ASSERT_EQUAL(res.segments, (unsigned)n + 2);
}

/* An altered line with sealed events after it is not a torn tail: open
 * refuses and changes nothing. */
/* The writer's line shapes are read without jansson (fast_parse); any
 * other shape goes to jansson.  Both must read the same fields, and refuse
 * the same malformed values. */
static void
test_line_shapes(void)
{
	const char *H = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	char line[512];
	struct kwac_line a, b;

	/* An event as written, and the same event with its fields reordered
	 * (only jansson reads that one). */
	snprintf(line, sizeof(line), "{\"seq\":42,\"time\":\"2026-11-29T07:00:00.000001Z\","
	    "\"prev\":\"%s\",\"type\":\"request\",\"vault\":\"prod\"}", H);
	CU_ASSERT_EQUAL_FATAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), 0);
	snprintf(line, sizeof(line), "{\"vault\":\"prod\",\"type\":\"request\",\"prev\":\"%s\","
	    "\"time\":\"2026-11-29T07:00:00.000001Z\",\"seq\":42}", H);
	CU_ASSERT_EQUAL_FATAL(kwac_line_parse(line, strlen(line), &b, NULL, 0), 0);
	CU_ASSERT_EQUAL(a.type, KWAC_LINE_EVENT);
	CU_ASSERT(memcmp(&a, &b, sizeof(a)) == 0);
	CU_ASSERT_EQUAL(a.seq, 42);
	CU_ASSERT_STRING_EQUAL(a.event, "request");
	CU_ASSERT_STRING_EQUAL(a.time, "2026-11-29T07:00:00.000001Z");
	/* An event of no fields of its own. */
	snprintf(line, sizeof(line), "{\"seq\":7,\"time\":\"t\",\"prev\":\"%s\"}", H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), 0);
	CU_ASSERT_STRING_EQUAL(a.event, "");
	/* A seal and a header, as written. */
	snprintf(line, sizeof(line), "{\"type\":\"seal\",\"seq\":42,\"hash\":\"%s\",\"hmac\":\"%s\"}", H, H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), 0);
	CU_ASSERT_EQUAL(a.type, KWAC_LINE_SEAL);
	CU_ASSERT_EQUAL(a.seq, 42);
	CU_ASSERT_EQUAL(a.mac[31], 0xff);
	snprintf(line, sizeof(line), "{\"type\":\"segment\",\"segment\":3,\"first_seq\":100,"
	    "\"prev\":\"%s\",\"time\":\"2026-11-29T07:00:00.000001Z\"}", H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), 0);
	CU_ASSERT_EQUAL(a.type, KWAC_LINE_HEADER);
	CU_ASSERT_EQUAL(a.segment, 3);
	CU_ASSERT_EQUAL(a.seq, 100);
	/* A line in the event's shape whose type is "segment" or "seal" is a
	 * header or a seal, as jansson reads it (here, one without its fields):
	 * the fast path took it for an event (found by tests/fuzz). */
	snprintf(line, sizeof(line), "{\"seq\":7,\"time\":\"t\",\"prev\":\"%s\",\"type\":\"segment\"}", H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), KW_E_FORMAT);
	snprintf(line, sizeof(line), "{\"seq\":7,\"time\":\"t\",\"prev\":\"%s\",\"type\":\"seal\","
	    "\"hash\":\"%s\",\"hmac\":\"%s\"}", H, H, H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), 0);
	CU_ASSERT_EQUAL(a.type, KWAC_LINE_SEAL);
	CU_ASSERT_EQUAL(a.seq, 7);
	/* Refused by either path: a leading zero, a seq over 2^63 - 1, seq 0,
	 * a short hash, a line cut short, an upper-case hex digit. */
	snprintf(line, sizeof(line), "{\"seq\":042,\"time\":\"t\",\"prev\":\"%s\"}", H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), KW_E_FORMAT);
	snprintf(line, sizeof(line), "{\"seq\":9223372036854775808,\"time\":\"t\",\"prev\":\"%s\"}", H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), KW_E_FORMAT);
	snprintf(line, sizeof(line), "{\"seq\":0,\"time\":\"t\",\"prev\":\"%s\"}", H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), KW_E_FORMAT);
	snprintf(line, sizeof(line), "{\"seq\":1,\"time\":\"t\",\"prev\":\"0011\"}");
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), KW_E_FORMAT);
	snprintf(line, sizeof(line), "{\"seq\":1,\"time\":\"t\",\"prev\":\"%s\",\"type\":\"req", H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), KW_E_FORMAT);
	snprintf(line, sizeof(line), "{\"type\":\"seal\",\"seq\":1,\"hash\":\"%s\",\"hmac\":\"%.63sF\"}", H, H);
	CU_ASSERT_EQUAL(kwac_line_parse(line, strlen(line), &a, NULL, 0), KW_E_FORMAT);
}

static void
test_open_refuses_tampering(void)
{
	char dir[512], path[1024], *before, *after;
	struct audit_log *log;
	struct flines fl;
	size_t i, lb, la;
	unsigned s;

	snprintf(dir, sizeof(dir), "%s/tamperopen", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 10), 0);
	audit_close(log);
	CU_ASSERT_FATAL(find_seq(dir, 4, &s, &i) == 0);
	seg(dir, s, path, sizeof(path));
	flines_read(path, &fl);
	strstr(fl.l[i], "\"vault\":\"prod\"")[9] = 'X';
	flines_write(path, &fl);
	flines_free(&fl);
	before = kwt_read_file(path, &lb);
	CU_ASSERT_PTR_NULL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_FORMAT), "sealed events follow"));
	after = kwt_read_file(path, &la);
	CU_ASSERT_EQUAL(lb, la);
	CU_ASSERT(before != NULL && after != NULL && memcmp(before, after, lb) == 0);
	free(before);
	free(after);
	audit_close(log);
}

/* What someone who may write audit.dir but has no use of the token can do
 * while the daemon is stopped: append n events to segment path that chain
 * to its last line, then (fake_seal) a seal of the last one with an HMAC by
 * some other key.  *last gets the hash of the last event; returns its seq,
 * or 0 on failure. */
static uint64_t
forge_append(const char *path, int n, int fake_seal, uint8_t last[KWAC_HASH_LEN])
{
	static const uint8_t other_key[32] = "someone-else's-key-not-the-token";
	struct flines fl;
	struct kwac_line l;
	uint8_t mac[32];
	unsigned int ml = 32;
	char hex[KWAC_HEX_LEN + 1], mhex[KWAC_HEX_LEN + 1], line[512], in[128];
	uint64_t seq = 0;
	FILE *f;
	int k;

	if (flines_read(path, &fl) != 0)
		return 0;
	for (size_t i = 0; i < fl.n; i++) {
		if (kwac_line_parse(fl.l[i], strlen(fl.l[i]), &l, NULL, 0) != 0)
			continue;
		if (l.type == KWAC_LINE_SEAL)
			continue;
		kwac_hash(fl.l[i], strlen(fl.l[i]), last);
		seq = l.type == KWAC_LINE_EVENT ? l.seq : l.seq - 1;
	}
	flines_free(&fl);
	if ((f = fopen(path, "a")) == NULL)
		return 0;
	for (int i = 0; i < n; i++) {
		kwac_hex(last, hex);
		snprintf(line, sizeof(line), "{\"seq\":%" PRIu64 ",\"time\":\"2026-01-01T00:00:00.000000Z\",\"prev\":\"%s\",\"type\":\"secret.get\",\"vault\":\"prod\",\"name\":\"db/password\",\"outcome\":\"allowed\"}",
		    ++seq, hex);
		kwac_hash(line, strlen(line), last);
		fprintf(f, "%s\n", line);
	}
	if (fake_seal) {
		k = kwac_seal_input(seq, last, in, sizeof(in));
		HMAC(EVP_sha256(), other_key, sizeof(other_key), (const uint8_t *)in, (size_t)k, mac, &ml);
		kwac_hex(last, hex);
		kwac_hex(mac, mhex);
		fprintf(f, "{\"type\":\"seal\",\"seq\":%" PRIu64 ",\"hash\":\"%s\",\"hmac\":\"%s\"}\n",
		    seq, hex, mhex);
	}
	fclose(f);
	return seq;
}

/* The writer goes on from the last seal only if the audit key made it. */
static void
test_open_refuses_forged_seal(void)
{
	char dir[512], path[1024], path2[1024], hdr[512], hex[KWAC_HEX_LEN + 1];
	const char *partial = "{\"seq\":9,\"time\":\"2026-";
	char *before, *after, *orig;
	uint8_t last[KWAC_HASH_LEN];
	struct audit_log *log;
	struct kwac_result res;
	struct kwac_verify_opts nokey = { .check = NULL };
	size_t lb, la, lo;
	uint64_t seq;
	int n;

	snprintf(dir, sizeof(dir), "%s/forged", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 5), 0);
	audit_close(log);
	seg(dir, 1, path, sizeof(path));
	orig = kwt_read_file(path, &lo);
	CU_ASSERT_PTR_NOT_NULL_FATAL(orig);

	/* A forged batch with a seal of another key: the chain is flawless,
	 * only the key tells. */
	seq = forge_append(path, 3, 1, last);
	CU_ASSERT_EQUAL_FATAL(seq, 8);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &nokey, &res), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_SEAL_MAC);
	before = kwt_read_file(path, &lb);
	CU_ASSERT_PTR_NULL(log = log_open(dir, 4096, 2000, 0));
	audit_close(log);
	/* The error names the segment, the seq, and what to do. */
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), path));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "seal of seq 8"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "--verify-audit"));
	/* Nothing was written nor cut, no torn copy made. */
	after = kwt_read_file(path, &la);
	CU_ASSERT(before != NULL && after != NULL && lb == la && memcmp(before, after, lb) == 0);
	free(after);
	CU_ASSERT_EQUAL(count_segments(dir), 1);
	{
		DIR *d = opendir(dir);
		struct dirent *de;
		int torn = 0;
		while (d != NULL && (de = readdir(d)) != NULL)
			torn += strstr(de->d_name, ".torn-") != NULL;
		if (d != NULL)
			closedir(d);
		CU_ASSERT_EQUAL(torn, 0);
	}

	/* The same with a partial line after the fake seal (a "torn write"
	 * to make the writer cut and go on): refused before any cut. */
	{
		FILE *f = fopen(path, "a");
		fputs(partial, f);
		fclose(f);
	}
	CU_ASSERT_PTR_NULL(log = log_open(dir, 4096, 2000, 0));
	audit_close(log);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "seal of seq 8"));
	CU_ASSERT_EQUAL(file_size(path), (off_t)(lb + strlen(partial)));
	free(before);

	/* Forged events without a seal, and a new segment whose header links
	 * to them: the last segment holds no seal, so the previous one's
	 * last seal must vouch for the link, and does not. */
	CU_ASSERT_EQUAL_FATAL(spit(path, orig, lo), 0);
	seq = forge_append(path, 2, 0, last);
	CU_ASSERT_EQUAL_FATAL(seq, 7);
	kwac_hex(last, hex);
	n = snprintf(hdr, sizeof(hdr), "{\"type\":\"segment\",\"segment\":2,\"first_seq\":8,\"prev\":\"%s\",\"time\":\"2026-01-01T00:00:00.000000Z\"}\n", hex);
	seg(dir, 2, path2, sizeof(path2));
	CU_ASSERT_EQUAL_FATAL(spit(path2, hdr, (size_t)n), 0);
	CU_ASSERT_PTR_NULL(log = log_open(dir, 4096, 2000, 0));
	audit_close(log);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_FORMAT), "is damaged before segment 2"));
	/* With a fake seal on them too: the header links, the seal is wrong. */
	CU_ASSERT_EQUAL_FATAL(spit(path, orig, lo), 0);
	seq = forge_append(path, 2, 1, last);
	kwac_hex(last, hex);
	n = snprintf(hdr, sizeof(hdr), "{\"type\":\"segment\",\"segment\":2,\"first_seq\":8,\"prev\":\"%s\",\"time\":\"2026-01-01T00:00:00.000000Z\"}\n", hex);
	CU_ASSERT_EQUAL_FATAL(spit(path2, hdr, (size_t)n), 0);
	CU_ASSERT_PTR_NULL(log = log_open(dir, 4096, 2000, 0));
	audit_close(log);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "seal of seq 7"));
	/* A header that does not link to the real end of segment 1. */
	CU_ASSERT_EQUAL_FATAL(spit(path, orig, lo), 0);
	CU_ASSERT_EQUAL_FATAL(spit(path2, hdr, (size_t)n), 0);
	CU_ASSERT_PTR_NULL(log = log_open(dir, 4096, 2000, 0));
	audit_close(log);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_FORMAT), "does not link"));

	/* The log as the daemon left it opens and goes on. */
	CU_ASSERT_EQUAL(unlink(path2), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 4096, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 5);
	CU_ASSERT_EQUAL(put_n(log, 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.last_seq, 6);
	free(orig);
}

/* A token that is not the one that sealed the log: its key does not
 * vouch for the last seal, and the writer does not go on. */
static int
other_seal(void *arg, const uint8_t *data, size_t len, uint8_t mac[32])
{
	static const uint8_t key[32] = "a-different-token's-audit-key!!!";
	unsigned int n = 32;

	(void)arg;
	return HMAC(EVP_sha256(), key, sizeof(key), data, len, mac, &n) != NULL ? 0 : KW_E_INTERNAL;
}

static void
test_open_other_token(void)
{
	struct audit_options o;
	struct audit_log *log = NULL;
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/othertoken", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 3), 0);
	audit_close(log);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.seal = other_seal;
	log = NULL;
	CU_ASSERT_EQUAL(audit_open(&o, &log), KW_E_AUTH);
	CU_ASSERT_PTR_NULL(log);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "not the one that sealed"));
	/* A token that cannot answer: refused too, with its error. */
	atomic_store(&seal_fail, 1);
	CU_ASSERT_PTR_NULL(log = log_open(dir, 0, 2000, 0));
	atomic_store(&seal_fail, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_TOKEN), "cannot check the last seal"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	audit_close(log);
}

/* A slow token: the waiter gives up after the timeout; the event is still
 * written, and an "audit.late" event says its request was refused. */
static void
test_late_write(void)
{
	char dir[512], path[1024], *buf, want[64];
	struct audit_log *log;
	struct kwac_result res;
	uint64_t seq;
	size_t len;
	double t0;

	snprintf(dir, sizeof(dir), "%s/late", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 200, 0));
	CU_ASSERT_EQUAL(put_n(log, 2), 0);
	atomic_store(&seal_delay_ms, 600);
	t0 = now_s();
	CU_ASSERT_EQUAL(put(log, "slow", 0), -ETIMEDOUT);
	CU_ASSERT(now_s() - t0 < 0.5);
	atomic_store(&seal_delay_ms, 0);
	usleep(600 * 1000);   /* the slow commit ends */
	CU_ASSERT_EQUAL(audit_submit_wait(log, json_pack("{s:s}", "type", "next"), &seq), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	seg(dir, 1, path, sizeof(path));
	buf = kwt_read_file(path, &len);
	/* seq 3 ("slow") was written late; the late event names it. */
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"seq\":3,"));
	snprintf(want, sizeof(want), "\"type\":\"audit.late\",\"seqs\":[3]");
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, want));
	free(buf);
}

/* Segments roll over by age too. */
static void
test_roll_by_age(void)
{
	char dir[512];
	struct audit_options o;
	struct audit_log *log = NULL;
	struct kwac_result res;

	snprintf(dir, sizeof(dir), "%s/age", tmproot);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.segment_seconds = 1;
	o.seal = test_seal;
	CU_ASSERT_EQUAL_FATAL(audit_open(&o, &log), 0);
	CU_ASSERT_EQUAL(put_n(log, 2), 0);
	usleep(1100 * 1000);
	CU_ASSERT_EQUAL(put_n(log, 2), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(count_segments(dir), 2);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.events, 4);
}

/* A second writer of one directory (another daemon given the same
 * audit.dir) is refused before it reads anything, and the first goes on
 * untouched; once the first is closed the directory opens again. */
static void
test_second_writer(void)
{
	char dir[512];
	struct audit_options o;
	struct audit_log *log, *second = NULL;
	struct kwac_result res;
	uint64_t before;
	int r;

	snprintf(dir, sizeof(dir), "%s/second", tmproot);
	log = log_open(dir, 0, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log);
	CU_ASSERT_EQUAL(put_n(log, 3), 0);
	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.seal = test_seal;
	r = audit_open(&o, &second);
	CU_ASSERT_EQUAL(r, KW_E_AUDIT);
	CU_ASSERT_PTR_NULL(second);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(r), "written by another process"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(r), dir));
	audit_close(second);
	CU_ASSERT_EQUAL(put_n(log, 3), 0);
	audit_close(log);
	CU_ASSERT_EQUAL_FATAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.events, 6);
	before = res.events;
	log = log_open(dir, 0, 0, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log);
	CU_ASSERT_EQUAL(put_n(log, 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.events, before + 1);
}

/* kill -9 while four threads write: every acknowledged event is there and
 * the log verifies after the next open. */
struct crash_arg {
	struct audit_log *log;
	int fd;
	pthread_mutex_t *m;
};

static void *
crash_thread(void *p)
{
	struct crash_arg *a = p;
	uint64_t seq;

	for (int i = 0;; i++) {
		json_t *ev = json_pack("{s:s,s:i}", "type", "crash", "i", i);
		if (audit_submit_wait(a->log, ev, &seq) != 0)
			continue;
		/* Acknowledged: the parent learns it only now. */
		pthread_mutex_lock(a->m);
		if (write(a->fd, &seq, sizeof(seq)) != sizeof(seq))
			_exit(3);
		pthread_mutex_unlock(a->m);
	}
	return NULL;
}

static void
test_crash(void)
{
	char dir[512];
	struct audit_log *log;
	struct kwac_result res;
	uint64_t seq, max = 0;
	int pfd[2], n = 0, st;
	pid_t pid;

	snprintf(dir, sizeof(dir), "%s/crash", tmproot);
	CU_ASSERT_EQUAL_FATAL(pipe(pfd), 0);
	fflush(stdout);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		pthread_t th[4];
		pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
		struct crash_arg a;
		close(pfd[0]);
		if ((log = log_open(dir, 16384, 5000, 0)) == NULL)
			_exit(2);
		a.log = log;
		a.fd = pfd[1];
		a.m = &m;
		for (int i = 0; i < 4; i++)
			pthread_create(&th[i], NULL, crash_thread, &a);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	while (n < 300 && read(pfd[0], &seq, sizeof(seq)) == sizeof(seq)) {
		if (seq > max)
			max = seq;
		n++;
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	while (read(pfd[0], &seq, sizeof(seq)) == sizeof(seq))
		if (seq > max)
			max = seq;
	close(pfd[0]);
	CU_ASSERT(n == 300);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 16384, 5000, 0));
	CU_ASSERT(audit_committed_seq(log) >= max);
	CU_ASSERT_EQUAL(put(log, "after", 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	CU_ASSERT(res.last_seq > max);
	CU_ASSERT(count_segments(dir) >= 2);
}

/* Overwrite [from, from + n) of path with zero bytes, and add tail zeros
 * at the end, as a preallocating writer leaves them. */
static void
zero_range(const char *path, off_t from, size_t n, size_t tail)
{
	char z[4096] = { 0 };
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	off_t end;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(n <= sizeof(z));
	if (n > 0)
		CU_ASSERT_EQUAL(pwrite(fd, z, n, from), (ssize_t)n);
	end = lseek(fd, 0, SEEK_END);
	for (size_t done = 0; done < tail; done += sizeof(z))
		CU_ASSERT(pwrite(fd, z, sizeof(z), end + (off_t)done) == (ssize_t)sizeof(z));
	close(fd);
}

/* The writer keeps zeros ahead of the data in the active segment, and in
 * no other: readers and the verifier take them for the end of what is
 * written; a segment that has a successor and ends in zeros is refused. */
static void
test_preallocated(void)
{
	char dir[512], path[1024], last[1024];
	struct audit_log *log;
	struct audit_reader *rd;
	struct audit_status st;
	struct kwac_result res;
	struct kwac_verify_opts live = vopts;
	const char *line;
	size_t len;
	uint64_t seq, want;
	int r;

	live.live = 1;
	snprintf(dir, sizeof(dir), "%s/prealloc", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 8192, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 5), 0);
	seg(dir, 1, path, sizeof(path));
	CU_ASSERT(file_size(path) > data_len(path) + 4096);
	/* While it is open: the files verify, and read back event by event. */
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &live, &res), 0);
	CU_ASSERT_EQUAL(res.events, 5);
	CU_ASSERT_EQUAL(res.pending_bytes, 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL_FATAL(audit_reader_open(NULL, dir, 0, &rd), 0);
	for (want = 1; (r = audit_reader_next(rd, &line, &len, &seq)) == 1; want++) {
		CU_ASSERT_EQUAL(seq, want);
		CU_ASSERT_PTR_NULL(memchr(line, '\0', len));
	}
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(want, 6);
	/* ... and the reader goes on once more is written over the zeros. */
	CU_ASSERT_EQUAL(put(log, "more", 1), 0);
	CU_ASSERT_EQUAL(audit_reader_next(rd, &line, &len, &seq), 1);
	CU_ASSERT_EQUAL(seq, 6);
	audit_reader_close(rd);

	/* Roll over a few times: each finished segment is cut to its data. */
	do {
		CU_ASSERT_EQUAL_FATAL(put(log, "fill", 0), 0);
		audit_status_get(log, &st);
	} while (st.segment < 3);
	/* The zeros come after a commit's completions: one more commit, and
	 * those of the first in segment 3 are there. */
	CU_ASSERT_EQUAL(put(log, "fill", 1), 0);
	audit_status_get(log, &st);
	CU_ASSERT_EQUAL_FATAL(st.segment, 3);
	for (unsigned i = 1; i < st.segment; i++) {
		seg(dir, i, path, sizeof(path));
		CU_ASSERT_EQUAL(file_size(path), data_len(path));
	}
	seg(dir, st.segment, last, sizeof(last));
	CU_ASSERT(file_size(last) > data_len(last));
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	CU_ASSERT_EQUAL(res.segments, 3);
	/* Closing cuts the last one too. */
	audit_close(log);
	CU_ASSERT_EQUAL(file_size(last), data_len(last));
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);

	/* Zeros at the end of a segment that has a successor: refused by the
	 * verifier and by a reader. */
	seg(dir, 1, path, sizeof(path));
	{
		off_t keep = file_size(path);
		zero_range(path, 0, 0, 4096);
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
		CU_ASSERT_EQUAL(res.problem, KWAC_P_TORN);
		CU_ASSERT_PTR_NOT_NULL(strstr(res.what, "zero bytes"));
		CU_ASSERT_EQUAL_FATAL(audit_reader_open(NULL, dir, 0, &rd), 0);
		while ((r = audit_reader_next(rd, &line, &len, &seq)) == 1)
			;
		CU_ASSERT_EQUAL(r, KW_E_FORMAT);
		audit_reader_close(rd);
		CU_ASSERT_EQUAL(truncate(path, keep), 0);
	}
	/* Zeros over whole lines inside it, data after them: refused. */
	{
		struct flines fl;
		flines_read(path, &fl);
		zero_range(path, (off_t)strlen(fl.l[0]) + 1, strlen(fl.l[1]), 0);
		flines_free(&fl);
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
		CU_ASSERT_EQUAL(res.problem, KWAC_P_TORN);
		CU_ASSERT_EQUAL(res.line, 2);
		CU_ASSERT_PTR_NOT_NULL(strstr(res.what, "with data after them"));
	}
}

/* A crash while a commit overwrote the zeros may leave some of its pages on
 * disk and not others, with its seal whole at the end.  Open takes that
 * one batch for a torn write: it is put aside, the acknowledged events
 * stay.  Zeros inside acknowledged data, with sealed batches after them,
 * are not a crash: open refuses. */
static void
test_torn_overwrite(void)
{
	char dir[512], path[1024];
	struct audit_log *log;
	struct kwac_result res;
	off_t d1, d2;

	snprintf(dir, sizeof(dir), "%s/tornover", tmproot);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(put_n(log, 10), 0);
	seg(dir, 1, path, sizeof(path));
	d1 = data_len(path);
	CU_ASSERT_EQUAL(put(log, "last", 1), 0);   /* one batch: an event and its seal */
	d2 = data_len(path);
	audit_close(log);
	CU_ASSERT_FATAL(d2 - d1 > 200);
	/* Its first bytes never reached the disk; its seal did; zeros after. */
	zero_range(path, d1, 64, 8192);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_TORN);
	CU_ASSERT_PTR_NOT_NULL_FATAL(log = log_open(dir, 0, 2000, 0));
	CU_ASSERT_EQUAL(audit_committed_seq(log), 11);   /* 10 kept, and the repair */
	CU_ASSERT_EQUAL(put(log, "after", 1), 0);
	audit_close(log);
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
	show(&res);
	CU_ASSERT_EQUAL(res.torn_events, 1);
	CU_ASSERT_EQUAL(res.last_seq, 12);
	{
		char *buf;
		size_t len;
		buf = kwt_read_file(path, &len);
		CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"type\":\"audit.torn_tail\""));
		CU_ASSERT_PTR_NULL(strstr(buf, "\"type\":\"last\""));
		CU_ASSERT_PTR_NULL(memchr(buf, '\0', len));
		free(buf);
	}

	/* Zeros over an acknowledged event that sealed batches follow. */
	{
		struct flines fl;
		off_t at = 0;
		char *before, *after;
		size_t lb, la;
		flines_read(path, &fl);
		for (size_t i = 0; i < 4; i++)
			at += (off_t)strlen(fl.l[i]) + 1;
		zero_range(path, at + 10, 40, 4096);
		flines_free(&fl);
		before = kwt_read_file(path, &lb);
		CU_ASSERT_PTR_NULL(log = log_open(dir, 0, 2000, 0));
		CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_FORMAT), "sealed events follow"));
		after = kwt_read_file(path, &la);
		CU_ASSERT(before != NULL && after != NULL && lb == la && memcmp(before, after, lb) == 0);
		free(before);
		free(after);
	}
}

/* ---- the anchor ---------------------------------------------------------------- */

static struct kwac_anchor mem_anchor;   /* the "token"'s anchor; seq 0: none */
static atomic_int anchor_puts, anchor_fail;

static int
mem_anchor_get(void *arg, struct kwac_anchor *a)
{
	(void)arg;
	if (mem_anchor.seq == 0)
		return kw_fail(KW_E_NOT_FOUND, "no anchor");
	*a = mem_anchor;
	return 0;
}

static int
mem_anchor_put(void *arg, const struct kwac_anchor *a)
{
	(void)arg;
	if (atomic_load(&anchor_fail))
		return kw_fail(KW_E_TOKEN, "test token is away");
	mem_anchor = *a;
	atomic_fetch_add(&anchor_puts, 1);
	return 0;
}

/* The writer copies the seal after a commit's completions: wait for it. */
static uint64_t
anchored_wait(struct audit_log *log, uint64_t seq)
{
	struct audit_status st;

	for (int i = 0; i < 2000; i++) {
		audit_status_get(log, &st);
		if (st.anchored_seq >= seq)
			break;
		usleep(1000);
	}
	return st.anchored_seq;
}

static int
anchored_open(const char *dir, uint64_t segbytes, int reanchor, struct audit_log **log)
{
	struct audit_options o;

	memset(&o, 0, sizeof(o));
	o.dir = dir;
	o.segment_bytes = segbytes;
	o.retry_ms = 50;
	o.seal = test_seal;
	o.anchor_get = mem_anchor_get;
	o.anchor_put = mem_anchor_put;
	o.anchor_seconds = 3600;
	o.reanchor = reanchor;
	return audit_open(&o, log);
}

/* An anchor for event seq of the log in dir, sealed by the test key. */
static int
anchor_for(const char *dir, uint64_t seq, struct kwac_anchor *a)
{
	char in[128];
	int n;

	memset(a, 0, sizeof(*a));
	a->seq = seq;
	if (kwac_event_hash(dir, seq, a->hash) != 0 ||
	    (n = kwac_seal_input(seq, a->hash, in, sizeof(in))) < 0)
		return -1;
	return test_seal(NULL, (const uint8_t *)in, (size_t)n, a->mac);
}

static void
test_anchor_format(void)
{
	struct kwac_anchor a, b;
	char text[KWAC_ANCHOR_TEXT_MAX];
	int n;

	memset(&a, 0, sizeof(a));
	a.seq = 1234567;
	for (int i = 0; i < 32; i++) {
		a.hash[i] = (uint8_t)i;
		a.mac[i] = (uint8_t)(255 - i);
	}
	n = kwac_anchor_format(&a, text, sizeof(text));
	CU_ASSERT_FATAL(n > 0);
	CU_ASSERT_EQUAL(strncmp(text, "keywarden-audit-anchor-v1 1234567 000102", 40), 0);
	CU_ASSERT_EQUAL(kwac_anchor_parse(text, (size_t)n, &b), 0);
	CU_ASSERT(memcmp(&a, &b, sizeof(a)) == 0);
	CU_ASSERT_EQUAL(kwac_anchor_format(&a, text, 20), -ENOBUFS);
	{
		static const char *const bad[] = {
			"", "keywarden-audit-anchor-v1", "keywarden-audit-anchor-v2 1 ",
			"keywarden-audit-anchor-v1 0 00 00", "keywarden-audit-anchor-v1 -1 00 00",
			"keywarden-audit-anchor-v1 12 0001 0203",
			"keywarden-audit-anchor-v1 99999999999999999999 0000000000000000000000000000000000000000000000000000000000000000 0000000000000000000000000000000000000000000000000000000000000000",
			"keywarden-audit-anchor-v1 5 000000000000000000000000000000000000000000000000000000000000000g 0000000000000000000000000000000000000000000000000000000000000000",
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			CU_ASSERT_EQUAL(kwac_anchor_parse(bad[i], strlen(bad[i]), &b), KW_E_FORMAT);
		/* a NUL inside */
		CU_ASSERT_EQUAL(kwac_anchor_parse(text, (size_t)n + 1, &b), KW_E_FORMAT);
	}
}

/* The verifier: an anchor inside the log is found with its hash; one past
 * its end is a cut; another hash, or a MAC of no key, is refused. */
static void
test_anchor_verify(void)
{
	struct kwac_anchor a, bad;
	struct kwac_verify_opts o = vopts;
	struct kwac_result res;
	uint8_t h[KWAC_HASH_LEN];

	CU_ASSERT_EQUAL(kwac_event_hash(base, 81, h), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL(kwac_event_hash(base, 0, h), KW_E_NOT_FOUND);
	CU_ASSERT_EQUAL_FATAL(anchor_for(base, 50, &a), 0);
	o.anchor = &a;
	CU_ASSERT_EQUAL(kwac_verify_dir(base, &o, &res), 0);
	CU_ASSERT(res.ok && res.anchor_checked);
	CU_ASSERT_EQUAL(res.anchor_seq, 50);
	CU_ASSERT_EQUAL_FATAL(anchor_for(base, 80, &a), 0);
	CU_ASSERT_EQUAL(kwac_verify_dir(base, &o, &res), 0);
	CU_ASSERT(res.ok && res.anchor_checked);

	/* Past the end: the log was cut. */
	bad = a;
	bad.seq = 90;
	{
		char in[128];
		int n = kwac_seal_input(bad.seq, bad.hash, in, sizeof(in));
		CU_ASSERT_EQUAL_FATAL(test_seal(NULL, (const uint8_t *)in, (size_t)n, bad.mac), 0);
	}
	o.anchor = &bad;
	CU_ASSERT_EQUAL(kwac_verify_dir(base, &o, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_CUT);
	CU_ASSERT_PTR_NOT_NULL(strstr(res.what, "events 81..90 were cut off"));
	/* Another event at its seq (the hash of 80 given as 79's). */
	bad = a;
	bad.seq = 79;
	{
		char in[128];
		int n = kwac_seal_input(bad.seq, bad.hash, in, sizeof(in));
		CU_ASSERT_EQUAL_FATAL(test_seal(NULL, (const uint8_t *)in, (size_t)n, bad.mac), 0);
	}
	CU_ASSERT_EQUAL(kwac_verify_dir(base, &o, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_ANCHOR);
	CU_ASSERT_EQUAL(res.seq, 79);
	/* A MAC of no key. */
	bad = a;
	bad.mac[0] ^= 1;
	CU_ASSERT_EQUAL(kwac_verify_dir(base, &o, &res), KW_E_AUTH);
	CU_ASSERT_EQUAL(res.problem, KWAC_P_ANCHOR);
	/* Without the key the MAC is not checked; the position still is. */
	o.check = NULL;
	CU_ASSERT_EQUAL(kwac_verify_dir(base, &o, &res), 0);
	CU_ASSERT(res.anchor_checked);
	/* An empty directory against an anchor: cut, not "empty". */
	{
		char dir[600];
		snprintf(dir, sizeof(dir), "%s/anchor-empty", tmproot);
		mkdir(dir, 0700);
		o.anchor = &a;
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &o, &res), KW_E_AUTH);
		CU_ASSERT_EQUAL(res.problem, KWAC_P_CUT);
	}
}

/* The writer: anchors at its first commit, at a roll-over and at close;
 * refuses at open a log that ends before the anchor (changing nothing),
 * or that holds another event there; --audit-reanchor records it; a failed
 * anchor write refuses no request and shows in the status. */
static void
test_anchor_writer(void)
{
	char dir[512], path[600], *before = NULL;
	size_t blen = 0;
	struct audit_log *log = NULL;
	struct audit_status st;
	struct kwac_anchor a;
	struct kwac_verify_opts o = vopts;
	struct kwac_result res;
	unsigned segs;

	fresh(dir, sizeof(dir));
	memset(&mem_anchor, 0, sizeof(mem_anchor));
	atomic_store(&anchor_puts, 0);
	/* No anchor yet (a new token): the first commit writes one. */
	CU_ASSERT_EQUAL_FATAL(anchored_open(dir, 4096, 0, &log), 0);
	CU_ASSERT_EQUAL(put(log, "test", 1), 0);
	CU_ASSERT_EQUAL(anchored_wait(log, 81), 81);
	CU_ASSERT_EQUAL(mem_anchor.seq, 81);
	/* A roll-over anchors again, at once. */
	segs = (unsigned)count_segments(dir);
	for (int i = 0; i < 200 && (unsigned)count_segments(dir) == segs; i++)
		CU_ASSERT_EQUAL(put(log, "test", i), 0);
	CU_ASSERT((unsigned)count_segments(dir) > segs);
	audit_status_get(log, &st);
	anchored_wait(log, st.committed_seq);
	audit_status_get(log, &st);
	CU_ASSERT(mem_anchor.seq > 81);
	CU_ASSERT_EQUAL(st.anchored_seq, mem_anchor.seq);
	CU_ASSERT(st.committed_seq - mem_anchor.seq < 3);
	/* And close: the last seal. */
	CU_ASSERT_EQUAL(put(log, "test", 7), 0);
	audit_status_get(log, &st);
	audit_close(log);
	log = NULL;
	CU_ASSERT_EQUAL(mem_anchor.seq, st.committed_seq);
	o.anchor = &mem_anchor;
	CU_ASSERT_EQUAL(kwac_verify_dir(dir, &o, &res), 0);
	CU_ASSERT(res.anchor_checked);
	CU_ASSERT_EQUAL(res.last_seq, mem_anchor.seq);

	/* The last segment removed: the start is refused, nothing changes. */
	seg(dir, (unsigned)count_segments(dir), path, sizeof(path));
	before = kwt_read_file(path, &blen);
	CU_ASSERT_PTR_NOT_NULL_FATAL(before);
	CU_ASSERT_EQUAL_FATAL(unlink(path), 0);
	{
		uint64_t end;
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);  /* chain and seals: whole */
		end = res.last_seq;
		CU_ASSERT_EQUAL(anchored_open(dir, 4096, 0, &log), KW_E_AUTH);
		CU_ASSERT_PTR_NULL(log);
		CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "were cut off"));
		CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "--audit-reanchor"));
		CU_ASSERT_EQUAL(kwac_verify_dir(dir, &vopts, &res), 0);
		CU_ASSERT_EQUAL(res.last_seq, end);                     /* nothing written */
	}
	/* Put back: it opens, and goes on. */
	CU_ASSERT_EQUAL_FATAL(spit(path, before, blen), 0);
	CU_ASSERT_EQUAL_FATAL(anchored_open(dir, 4096, 0, &log), 0);
	CU_ASSERT_EQUAL(put(log, "test", 8), 0);
	audit_close(log);
	log = NULL;

	/* Another event where the anchor is: rewritten. */
	a = mem_anchor;
	mem_anchor.hash[0] ^= 1;
	{
		char in[128];
		int n = kwac_seal_input(mem_anchor.seq, mem_anchor.hash, in, sizeof(in));
		CU_ASSERT_EQUAL_FATAL(test_seal(NULL, (const uint8_t *)in, (size_t)n, mem_anchor.mac), 0);
	}
	CU_ASSERT_EQUAL(anchored_open(dir, 4096, 0, &log), KW_E_AUTH);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "holds another event at seq"));
	/* A MAC of no key. */
	mem_anchor = a;
	mem_anchor.mac[5] ^= 1;
	CU_ASSERT_EQUAL(anchored_open(dir, 4096, 0, &log), KW_E_AUTH);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "not made by its audit key"));
	mem_anchor = a;

	/* Cut again, taken as it is: recorded, anchored anew. */
	seg(dir, (unsigned)count_segments(dir), path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(unlink(path), 0);
	CU_ASSERT_EQUAL_FATAL(anchored_open(dir, 4096, 1, &log), 0);
	audit_status_get(log, &st);
	CU_ASSERT_EQUAL(anchored_wait(log, st.committed_seq), st.committed_seq);
	CU_ASSERT_EQUAL(mem_anchor.seq, st.committed_seq);
	CU_ASSERT(kwt_tree_contains(dir, "\"type\":\"audit.reanchored\",\"problem\":\"cut\"",
	    strlen("\"type\":\"audit.reanchored\",\"problem\":\"cut\"")));

	/* The token refuses the anchor: requests go on; the status says so. */
	atomic_store(&anchor_fail, 1);
	segs = (unsigned)count_segments(dir);
	for (int i = 0; i < 300 && (unsigned)count_segments(dir) == segs; i++)
		CU_ASSERT_EQUAL(put(log, "test", i), 0);
	CU_ASSERT((unsigned)count_segments(dir) > segs);
	for (int i = 0; i < 2000; i++) {
		audit_status_get(log, &st);
		if (st.anchor_error != 0)
			break;
		usleep(1000);
	}
	CU_ASSERT_NOT_EQUAL(st.anchor_error, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(st.anchor_detail, "test token is away"));
	CU_ASSERT(st.anchored_seq < st.committed_seq);
	{
		json_t *j = audit_status_json(log);
		CU_ASSERT(json_is_false(json_object_get(json_object_get(j, "anchor"), "ok")));
		json_decref(j);
	}
	atomic_store(&anchor_fail, 0);
	usleep(60 * 1000);
	CU_ASSERT_EQUAL(put(log, "test", 9), 0);
	audit_status_get(log, &st);
	anchored_wait(log, st.committed_seq);
	audit_status_get(log, &st);
	CU_ASSERT_EQUAL(st.anchor_error, 0);
	CU_ASSERT_EQUAL(st.anchored_seq, st.committed_seq);
	audit_close(log);
	free(before);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "an intact log verifies, seals checked", test_intact },
		{ "a changed field is caught at its line", test_changed_field },
		{ "a deleted line is caught at its place", test_deleted_line },
		{ "an inserted line is caught at its place", test_inserted_line },
		{ "two swapped lines are caught", test_swapped_lines },
		{ "a truncated tail is reported torn", test_truncated_tail },
		{ "live or at rest, as the writer's lock says", test_live_auto },
		{ "a deleted segment is caught", test_deleted_segment },
		{ "swapped segments are caught", test_swapped_segments },
		{ "a chain recomputed without the key fails its seal", test_recomputed_chain },
		{ "any changed byte is caught (200 random)", test_random_flips },
		{ "the result as JSON", test_result_json },
		{ "the writer's line shapes read without jansson, others with it", test_line_shapes },
		{ "open repairs a torn tail, records it, chain goes on", test_torn_tail_open },
		{ "open cuts off events that lack their seal", test_unsealed_tail_open },
		{ "a torn tail cut but not recorded is recorded at the next open", test_torn_record_lost },
		{ "open repairs a torn segment header", test_torn_header },
		{ "open refuses a break followed by sealed events", test_open_refuses_tampering },
		{ "open refuses to go on from a seal the key did not make", test_open_refuses_forged_seal },
		{ "open refuses a log another token sealed", test_open_other_token },
		{ "the anchor's text", test_anchor_format },
		{ "the verifier checks the anchor", test_anchor_verify },
		{ "the writer keeps the anchor; open refuses a cut log", test_anchor_writer },
		{ "events never carry secret fields", test_refuses_secrets },
		{ "group commit: 8 threads, consecutive seqs, events/s", test_group_commit },
		{ "fail closed when the file cannot grow, then heal", test_fail_closed },
		{ "fail closed when the token will not seal", test_seal_refused },
		{ "closed while failing: the refused batch is cut off", test_close_while_failing },
		{ "a failed sync refuses its batch, cuts it off, heals", test_sync_fails },
		{ "a reader drops a refused batch it read from the file", test_reader_drops_refused_bytes },
		{ "the audit directory must be the writer's alone", test_dir_must_be_ours },
		{ "a stuck disk fails waiters in bounded time", test_stuck_disk },
		{ "the reader returns exactly the events after since", test_reader },
		{ "a stalled subscriber does not block the writer", test_slow_subscriber },
		{ "segments roll over by age", test_roll_by_age },
		{ "a late write is recorded as such", test_late_write },
		{ "a second writer of one directory is refused, the first goes on", test_second_writer },
		{ "kill -9 mid-write: acknowledged events survive", test_crash },
		{ "the active segment is preallocated with zeros, no other", test_preallocated },
		{ "a torn overwrite of the zeros is repaired, zeros over sealed data refused", test_torn_overwrite },
		{ NULL, NULL }
	};
	int r;

	if (kwt_tmpdir(tmproot, sizeof(tmproot), "kwaudit") != 0)
		return 99;
	if (base_make() != 0) {
		fprintf(stderr, "cannot build the base audit log in %s\n", tmproot);
		return 99;
	}
	r = kwt_cunit_main("audit", NULL, NULL, cases);
	if (r == 0) {
		kwt_rmtree(tmproot);
	} else {
		kwt_tmp_keep(tmproot);
		fprintf(stderr, "kept %s for inspection\n", tmproot);
	}
	return r;
}
