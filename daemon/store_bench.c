/*
 * store-bench - how fast the store reads and writes, and how fast it opens.
 *
 *   store-bench [-R] [-d DIR] [-g GROUP] [-s SECONDS] [-r READERS] [-w WRITERS] [COUNT...]
 *
 * For each COUNT (default: 1000 and 1000000) it fills a fresh database in
 * DIR (default: a temporary directory, removed after) with COUNT secrets,
 * reopens it (the open time), then measures random gets and durable puts
 * of new versions from several threads; with -R, a full rotation (rewrap
 * of every record in batches of 1000).  -g GROUP: each reader's reads go
 * GROUP at a time into one read transaction (store_read_begin), as the
 * daemon's worker groups queued reads.  Not run by make check.
 */
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

#include "kw_error.h"
#include "daemon/store.h"

static double seconds = 2.0;
static atomic_int stop;
static double last_cpu;         /* CPUs busy during the last run() */
static int rotate;              /* -R: also time a full rotation */
static int group = 1;           /* -g: reads per store_read_begin/end */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Process CPU seconds, user + system. */
static double
cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long
rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void
fill_record(struct store_record *r, size_t i, uint64_t version, uint8_t *body)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->meta.name, sizeof(r->meta.name), "app/service-%07zu/password", i);
	r->meta.version = version;
	r->meta.key_version = 1;
	r->meta.enabled = 1;
	r->meta.created = r->meta.updated = 1700000000000000LL;
	snprintf(r->meta.tags, sizeof(r->meta.tags), "{\"team\":\"bench\"}");
	r->wrapped_len = 40;
	memset(r->wrapped, 0x5a, r->wrapped_len);
	r->body = body;
	r->body_len = 64 + 16;
}

struct bench {
	struct store *s;
	size_t count;
	unsigned seed;
	uint64_t ops;
	uint64_t conflicts;
	int err;
};

static void *
reader(void *arg)
{
	struct bench *b = arg;
	char name[STORE_NAME_MAX + 1];

	while (!atomic_load(&stop)) {
		struct store_record r;
		size_t i = (size_t)rand_r(&b->seed) % b->count;
		if (group > 1 && b->ops % (uint64_t)group == 0 &&
		    (b->err = store_read_begin(b->s)) != 0)
			break;
		snprintf(name, sizeof(name), "app/service-%07zu/password", i);
		memset(&r, 0, sizeof(r));
		if ((b->err = store_secret_get(b->s, "bench", name, 0, &r)) != 0) {
			fprintf(stderr, "get: %s\n", kw_errdetail(b->err));
			break;
		}
		store_record_clear(&r);
		b->ops++;
		if (group > 1 && b->ops % (uint64_t)group == 0)
			store_read_end(b->s);
	}
	if (group > 1)
		store_read_end(b->s);
	return NULL;
}

static void *
writer(void *arg)
{
	struct bench *b = arg;
	uint8_t body[80];

	memset(body, 0xab, sizeof(body));
	while (!atomic_load(&stop)) {
		struct store_record r;
		uint64_t cur = 0;
		size_t i = (size_t)rand_r(&b->seed) % b->count;
		fill_record(&r, i, 0, body);
		if ((b->err = store_secret_current(b->s, "bench", r.meta.name, &cur)) != 0)
			break;
		r.meta.version = cur + 1;
		b->err = store_secret_put(b->s, "bench", &r, NULL);
		if (b->err == KW_E_CONFLICT) {
			b->conflicts++;
			continue;
		}
		if (b->err != 0) {
			fprintf(stderr, "put: %s\n", kw_errdetail(b->err));
			break;
		}
		b->ops++;
	}
	return NULL;
}

static double
run(struct store *s, size_t count, int threads, void *(*fn)(void *), uint64_t *conflicts)
{
	struct bench b[64];
	pthread_t t[64];
	uint64_t ops = 0;
	double t0, t1, c0;

	atomic_store(&stop, 0);
	t0 = now();
	c0 = cpu();
	for (int i = 0; i < threads; i++) {
		b[i] = (struct bench){ .s = s, .count = count, .seed = 77u * (unsigned)i + 1 };
		pthread_create(&t[i], NULL, fn, &b[i]);
	}
	usleep((useconds_t)(seconds * 1e6));
	atomic_store(&stop, 1);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	t1 = now();
	last_cpu = (cpu() - c0) / (t1 - t0);
	*conflicts = 0;
	for (int i = 0; i < threads; i++) {
		ops += b[i].ops;
		*conflicts += b[i].conflicts;
		if (b[i].err != 0 && b[i].err != KW_E_CONFLICT)
			return -1;
	}
	return (double)ops / (t1 - t0);
}

static int
open_store(const char *path, struct store **s)
{
	struct store_options o;
	int e;

	memset(&o, 0, sizeof(o));
	o.url = path;
	o.connections = 16;
	if ((e = store_open(&o, s)) != 0)
		fprintf(stderr, "store-bench: %s\n", kw_errdetail(e));
	return e;
}

/* A full rotation: every record rewrapped to key version 2, in batches. */
static int
bench_rotate(struct store *s)
{
	struct store_key k;
	struct store_rewrap_rec *rs = NULL;
	struct store_rewrap *w = NULL;
	char cname[STORE_NAME_MAX + 1] = "";
	uint64_t cver = 0, rows = 0;
	uint8_t wrapped[40];
	size_t n, applied, batch = 1000;
	double t0, c0;
	int e;

	memset(&k, 0, sizeof(k));
	k.version = 2;
	memset(wrapped, 0x77, sizeof(wrapped));
	if ((e = store_key_add(s, "bench", &k)) != 0 || (e = store_key_set_current(s, "bench", 2)) != 0 ||
	    (w = calloc(batch, sizeof(*w))) == NULL) {
		fprintf(stderr, "store-bench: rotate: %s\n", kw_errdetail(e ? e : -ENOMEM));
		free(w);
		return e ? e : -ENOMEM;
	}
	t0 = now();
	c0 = cpu();
	for (;;) {
		if ((e = store_rewrap_scan(s, "bench", 2, cname[0] ? cname : NULL, cver, batch, &rs, &n)) != 0)
			break;
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			w[i] = (struct store_rewrap){ rs[i].name, rs[i].version,
			    rs[i].key_version, 2, wrapped, sizeof(wrapped), rs[i].wrapped,
			    rs[i].wrapped_len };
		if ((e = store_rewrap_apply(s, "bench", w, n, &applied)) != 0)
			break;
		rows += applied;
		snprintf(cname, sizeof(cname), "%s", rs[n - 1].name);
		cver = rs[n - 1].version;
		free(rs);
		rs = NULL;
	}
	free(rs);
	free(w);
	if (e != 0) {
		fprintf(stderr, "store-bench: rotate: %s\n", kw_errdetail(e));
		return e;
	}
	printf("  rotation: %llu records rewrapped in %.2f s (%.0f/s, batches of %zu), %.2f CPUs busy\n",
	    (unsigned long long)rows, now() - t0, (double)rows / (now() - t0), batch,
	    (cpu() - c0) / (now() - t0));
	return 0;
}

static int
bench_one(const char *dir, size_t count, int readers, int writers)
{
	char path[512];
	struct store *s = NULL;
	struct store_vault v;
	struct store_record *batch = NULL;
	uint8_t body[80];
	uint64_t conflicts;
	double t0, tfill, topen, gets, puts;
	size_t i, chunk = 10000;
	int e;

	snprintf(path, sizeof(path), "%s/bench-%zu.db", dir, count);
	unlink(path);
	if ((e = open_store(path, &s)) != 0)
		return e;
	memset(&v, 0, sizeof(v));
	snprintf(v.name, sizeof(v.name), "bench");
	if ((e = store_vault_ensure(s, &v, NULL)) != 0)
		goto out;
	memset(body, 0xcd, sizeof(body));
	if ((batch = calloc(chunk, sizeof(*batch))) == NULL) {
		e = -ENOMEM;
		goto out;
	}
	t0 = now();
	for (i = 0; i < count; i += chunk) {
		size_t n = count - i < chunk ? count - i : chunk;
		for (size_t j = 0; j < n; j++)
			fill_record(&batch[j], i + j, 1, body);
		if ((e = store_vault_import(s, "bench", batch, n, NULL, 0)) != 0) {
			fprintf(stderr, "store-bench: fill: %s\n", kw_errdetail(e));
			goto out;
		}
	}
	tfill = now() - t0;
	free(batch);
	batch = NULL;
	store_close(s);
	s = NULL;

	t0 = now();
	if ((e = open_store(path, &s)) != 0)
		goto out;
	{
		struct store_record r;
		char name[64];
		snprintf(name, sizeof(name), "app/service-%07zu/password", count / 2);
		memset(&r, 0, sizeof(r));
		if ((e = store_secret_get(s, "bench", name, 0, &r)) != 0) {
			fprintf(stderr, "store-bench: first get: %s\n", kw_errdetail(e));
			goto out;
		}
		store_record_clear(&r);
	}
	topen = now() - t0;
	printf("%zu records: filled in %.2f s; open + first get %.1f ms; RSS after open %ld KiB\n",
	    count, tfill, topen * 1000, rss_kib());
	gets = run(s, count, readers, reader, &conflicts);
	printf("  gets: %.0f/s with %d threads, %.2f CPUs busy; RSS %ld KiB\n", gets, readers,
	    last_cpu, rss_kib());
	puts = run(s, count, writers, writer, &conflicts);
	printf("  durable puts: %.0f/s with %d threads, %.2f CPUs busy (%llu conflicts retried); "
	    "RSS %ld KiB\n", puts, writers, last_cpu, (unsigned long long)conflicts, rss_kib());
	if (gets < 0 || puts < 0) {
		e = KW_E_STORE;
		goto out;
	}
	if (rotate && (e = bench_rotate(s)) != 0)
		goto out;
	e = 0;
out:
	free(batch);
	store_close(s);
	return e;
}

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

int
main(int argc, char **argv)
{
	char tmp[] = "/tmp/kwbench.XXXXXX";
	const char *dir = NULL;
	int readers = 2, writers = 2, c, rc = 0;
	size_t defaults[] = { 1000, 1000000 };

	while ((c = getopt(argc, argv, "d:g:s:r:w:R")) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 'r': readers = atoi(optarg); break;
		case 'w': writers = atoi(optarg); break;
		case 'R': rotate = 1; break;
		case 'g': group = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: store-bench [-R] [-d DIR] [-g GROUP] [-s SECONDS] [-r READERS] "
			    "[-w WRITERS] [COUNT...]\n");
			return 2;
		}
	}
	if (readers < 1 || readers > 64 || writers < 1 || writers > 64 || seconds <= 0 ||
	    group < 1 || group > 1000) {
		fprintf(stderr, "store-bench: threads must be 1..64 and seconds > 0\n");
		return 2;
	}
	if (dir == NULL) {
		if (mkdtemp(tmp) == NULL) {
			perror("store-bench: mkdtemp");
			return 1;
		}
		dir = tmp;
	}
	if (optind < argc) {
		for (int i = optind; i < argc && rc == 0; i++)
			rc = bench_one(dir, (size_t)strtoull(argv[i], NULL, 10), readers, writers);
	} else {
		for (size_t i = 0; i < 2 && rc == 0; i++)
			rc = bench_one(dir, defaults[i], readers, writers);
	}
	if (dir == tmp)
		nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc == 0 ? 0 : 1;
}
