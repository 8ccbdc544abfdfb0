/*
 * audit.c - the audit log writer: group commit, hash chain, seals, fail
 * closed with recovery, torn-tail repair, the ring of recent lines, readers
 * and subscriptions.  See audit.h; the format is in kw_auditchain.h.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "kw_secmem.h"
#include "daemon/audit.h"

#define DEF_SEGMENT_BYTES (16ULL << 20)
#define DEF_SEGMENT_SECONDS 86400ULL
#define DEF_TIMEOUT_MS 2000
#define DEF_RETRY_MS 200
#define DEF_RING 4096
#define DEF_ANCHOR_SECONDS 60
#define MAX_BATCH 1024          /* events in one commit: bounds latency and a segment's overshoot */
/* Under load (the last commit carried more than one event) the writer
 * lingers this long for more events before it syncs, unless LINGER_ENOUGH
 * are queued already: one fdatasync and one token seal then serve many
 * requests.  An idle log commits at once, so a lone request waits for
 * nothing. */
#define LINGER_US_DEFAULT 200
#define LINGER_ENOUGH 64
/* Preallocation: keep at least PREALLOC_LOW zero bytes ahead of the data,
 * adding PREALLOC_CHUNK at a time, up to the segment's size plus one
 * chunk.  See seg_prealloc.  The commit after a chunk syncs it too: get's
 * p99 at 32 clients was 2.1-2.2 ms with 256 KiB chunks, 2.4-2.8 ms with
 * 1 MiB, 2.5-2.7 ms with 4 MiB; 64 and 128 KiB were no better than 256. */
#define PREALLOC_CHUNK (256U << 10)
#define PREALLOC_LOW (64U << 10)
#define TIME_LEN 96

enum ent_state { E_QUEUED, E_WRITING, E_ABANDONED };

/* One submitted event, owned by the queue, then by the writer's batch. */
struct ent {
	struct ent *next;
	char *body;              /* the daemon's fields as compact JSON: "{...}" */
	size_t bodylen;
	audit_done_fn done;
	void *arg;
	uint64_t deadline;       /* CLOCK_MONOTONIC, us */
	enum ent_state state;
	uint64_t seq;
};

struct audit_sub {
	struct audit_sub *next;
	audit_notify_fn fn;
	void *arg;
};

struct ring_slot {
	uint64_t seq;
	char *text;
	size_t len;
};

struct batch_line {
	size_t off, len;
	uint64_t seq;
};

struct audit_log {
	char *dir;
	int dirfd;
	struct audit_options opt;

	/* queue, states, status: under mu */
	pthread_mutex_t mu;
	pthread_cond_t wake;         /* the writer: work, retry, stop */
	pthread_cond_t wd_wake;      /* the watchdog */
	int lingering;               /* the writer waits for a bigger batch */
	/* Bumped when bytes past the durable end change (a commit that failed,
	 * the cut of its bytes): a reader drops what it read of the files
	 * beyond the committed seq, which a retry reuses for other events. */
	atomic_uint_fast64_t rewrites;
	struct ent *q_head, *q_tail;
	uint64_t queued;
	struct ent *inflight;        /* the batch being written */
	int stopping, wd_stop;
	struct audit_status st;
	uint64_t refused_failing;    /* refused since the failure began */
	char fail_since[TIME_LEN];
	char fail_detail[256];
	pthread_t writer, watchdog;
	int writer_started, wd_started;

	/* the writer thread's own state */
	int fd;                      /* current segment, -1 when closed */
	unsigned seg;
	uint64_t seg_size;           /* durable bytes of the segment */
	uint64_t seg_zeroed;         /* the file holds data or zeros up to here */
	int prealloc_failed;         /* no more zeros for this segment (disk full) */
	int seg_has_header;
	int seg_created;             /* the file was created by this process, dir not synced */
	int64_t seg_started;         /* realtime us of its header */
	uint64_t next_seq;
	uint8_t last[KWAC_HASH_LEN];
	/* The anchor: the last durable seal, and what the token holds. */
	struct kwac_anchor sealed;   /* seq 0: no seal made or found yet */
	uint64_t anchored;           /* the seq the token's anchor holds */
	uint64_t anchor_due;         /* CLOCK_MONOTONIC us of the next write */
	int anchor_now;              /* write at the next chance: roll-over, no anchor yet */
	json_t *late;                /* seqs written after their submitter timed out */
	char *buf;
	size_t buflen, bufcap;
	struct batch_line *lines;
	size_t nlines, linescap;

	/* recent lines: under ring_mu */
	pthread_mutex_t ring_mu;
	struct ring_slot *ring;
	unsigned ring_n;
	uint64_t ring_first, ring_last;   /* seqs held; ring_first 0: empty */

	/* subscribers; the committed seq is written under sub_mu */
	pthread_mutex_t sub_mu;
	struct audit_sub *subs;
	_Atomic uint64_t committed;
};

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int64_t
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
time_str(char *buf, size_t len, int64_t us)
{
	time_t s;
	struct tm tm;

	if (us < 0)
		us = 0;
	s = (time_t)(us / 1000000);
	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (unsigned)(us % 1000000));
}

static int
time_parse(const char *s, int64_t *us)
{
	struct tm tm;
	int n = 0;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n == 0)
		return -EINVAL;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*us = (int64_t)timegm(&tm) * 1000000;
	return 0;
}

static void
abs_deadline(struct timespec *ts, uint64_t mono)
{
	ts->tv_sec = (time_t)(mono / 1000000);
	ts->tv_nsec = (long)(mono % 1000000) * 1000;
}

static int
seg_path(const struct audit_log *log, unsigned idx, char *buf, size_t len)
{
	char name[64];
	int n;

	kwac_segment_name(idx, name, sizeof(name));
	n = snprintf(buf, len, "%s/%s", log->dir, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- buffer ---------------------------------------------------------------- */

static int
buf_add(struct audit_log *log, const char *s, size_t n)
{
	char *nb;
	size_t ncap;

	if (log->buflen + n > log->bufcap) {
		ncap = log->bufcap ? log->bufcap : 65536;
		while (ncap < log->buflen + n)
			ncap *= 2;
		if ((nb = realloc(log->buf, ncap)) == NULL)
			return -ENOMEM;
		log->buf = nb;
		log->bufcap = ncap;
	}
	memcpy(log->buf + log->buflen, s, n);
	log->buflen += n;
	return 0;
}

/* Append a chained line (without "\n") already in the buffer from start:
 * hash it, end it, and remember it as an event line if seq != 0. */
static int
buf_chain(struct audit_log *log, size_t start, uint64_t seq)
{
	struct batch_line *nl;
	size_t ncap;

	kwac_hash(log->buf + start, log->buflen - start, log->last);
	if (seq != 0) {
		if (log->nlines == log->linescap) {
			ncap = log->linescap ? log->linescap * 2 : 256;
			if ((nl = reallocarray(log->lines, ncap, sizeof(*nl))) == NULL)
				return -ENOMEM;
			log->lines = nl;
			log->linescap = ncap;
		}
		log->lines[log->nlines].off = start;
		log->lines[log->nlines].len = log->buflen - start;
		log->lines[log->nlines].seq = seq;
		log->nlines++;
	}
	return buf_add(log, "\n", 1);
}

/* An event line: {"seq":N,"time":"T","prev":"H",<body's fields>}. */
static int
buf_event(struct audit_log *log, const char *body, size_t bodylen, const char *now,
    uint64_t seq)
{
	char head[64 + TIME_LEN + KWAC_HEX_LEN], digits[24], *p = head;
	size_t start = log->buflen, nd = 0, tl = strlen(now);
	uint64_t v = seq;
	int r;

	/* By hand: this runs for every event on the one writer thread. */
	if (tl > TIME_LEN)
		return KW_E_INTERNAL;
	do
		digits[nd++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	memcpy(p, "{\"seq\":", 7);
	p += 7;
	while (nd > 0)
		*p++ = digits[--nd];
	memcpy(p, ",\"time\":\"", 9);
	p += 9;
	memcpy(p, now, tl);
	p += tl;
	memcpy(p, "\",\"prev\":\"", 10);
	p += 10;
	kwac_hex(log->last, p);
	p += KWAC_HEX_LEN;
	*p++ = '"';
	if ((r = buf_add(log, head, (size_t)(p - head))) != 0)
		return r;
	/* body is "{}" or "{...}": splice its fields after ours. */
	if (bodylen > 2 && (r = buf_add(log, ",", 1)) != 0)
		return r;
	if ((r = buf_add(log, body + 1, bodylen - 1)) != 0)
		return r;
	return buf_chain(log, start, seq);
}

static int
buf_event_json(struct audit_log *log, json_t *o, const char *now, uint64_t seq)
{
	char *body;
	int r;

	if (o == NULL || (body = json_dumps(o, JSON_COMPACT)) == NULL)
		return -ENOMEM;
	r = buf_event(log, body, strlen(body), now, seq);
	free(body);
	return r;
}

/* ---- the segment file -------------------------------------------------------- */

static void
seg_close(struct audit_log *log)
{
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
}

/* Open the current segment for writing and make sure it holds exactly its
 * durable bytes. */
static int
seg_open(struct audit_log *log)
{
	char path[1024];
	struct stat st;
	int fd = -1, r;

	if (log->fd >= 0)
		return 0;
	if ((r = seg_path(log, log->seg, path, sizeof(path))) != 0)
		return kw_fail(r, "audit segment path too long in %s", log->dir);
	/* A FIFO or a stuck network file system can block here: the watchdog
	 * fails the waiting submissions meanwhile. */
	if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		r = kw_fail(-errno, "cannot open audit segment %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		r = kw_fail(-errno, "cannot stat audit segment %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = kw_fail(-EINVAL, "audit segment %s is not a regular file: remove it", path);
		goto out;
	}
	if ((uint64_t)st.st_size < log->seg_size) {
		r = kw_fail(-EIO, "audit segment %s shrank to %lld bytes from %" PRIu64 ": it was truncated behind the daemon's back",
		    path, (long long)st.st_size, log->seg_size);
		goto out;
	}
	if (log->seg_size == 0)
		log->seg_created = 1;   /* a new file: sync the directory too */
	/* Bytes past the durable end are from a write that failed: cut them. */
	if ((uint64_t)st.st_size > log->seg_size &&
	    (ftruncate(fd, (off_t)log->seg_size) != 0 || fdatasync(fd) != 0)) {
		r = kw_fail(-errno, "cannot cut a failed write off audit segment %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if ((uint64_t)st.st_size > log->seg_size)
		atomic_fetch_add_explicit(&log->rewrites, 1, memory_order_release);
	log->fd = fd;
	log->seg_zeroed = log->seg_size;
	fd = -1;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* Preallocation.  Appending to a file and syncing it costs two writes to
 * the device (the data, and the file's new size and blocks: the inode, or
 * a journal record); overwriting blocks the file already has costs one.  So after a
 * commit the writer keeps zero bytes ahead of the data, written (not
 * allocated as unwritten extents, which cost a journal record again at the
 * first write) a chunk at a time; the next commit's sync makes them
 * durable with its batch, and the commits after it only overwrite.
 * Readers take a zero byte for the end of what is written
 * (kwac_lines_next).  A segment is cut back to its data before the next
 * one is created, and at close, so only the last segment ever ends in
 * zeros.  Best effort: when the zeros cannot be written (a full disk, a
 * file size limit) commits append as before. */
static void
seg_prealloc(struct audit_log *log)
{
	static const char zeros[65536];
	uint64_t cap = log->opt.segment_bytes + PREALLOC_CHUNK, end;

	if (log->opt.preallocate < 0 || log->prealloc_failed || log->fd < 0 ||
	    log->seg_zeroed >= log->seg_size + PREALLOC_LOW || log->seg_zeroed >= cap)
		return;
	if (log->seg_zeroed < log->seg_size)
		log->seg_zeroed = log->seg_size;
	end = log->seg_zeroed + PREALLOC_CHUNK;
	if (end > cap)
		end = cap;
	while (log->seg_zeroed < end) {
		size_t n = end - log->seg_zeroed < sizeof(zeros) ?
		    (size_t)(end - log->seg_zeroed) : sizeof(zeros);
		ssize_t w = pwrite(log->fd, zeros, n, (off_t)log->seg_zeroed);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			log->prealloc_failed = 1;
			return;
		}
		log->seg_zeroed += (uint64_t)w;
	}
}

/* Cut the zeros off the end of the segment, durably: before the next
 * segment is created, and at close. */
static int
seg_trim(struct audit_log *log)
{
	char path[1024];

	if (log->fd < 0 || log->seg_zeroed <= log->seg_size)
		return 0;
	if (ftruncate(log->fd, (off_t)log->seg_size) != 0 || fdatasync(log->fd) != 0) {
		seg_path(log, log->seg, path, sizeof(path));
		return kw_fail(-errno, "cannot cut the preallocated zeros off audit segment %s: %s",
		    path, strerror(errno));
	}
	log->seg_zeroed = log->seg_size;
	return 0;
}

static int
write_all(int fd, const char *p, size_t n, uint64_t off)
{
	ssize_t w;

	while (n > 0) {
		w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* ---- one group commit ----------------------------------------------------------- */

/* Write the internal events extra[0..nextra) and the batch as one write and
 * one fdatasync.  0, or a negative code with the state rolled back. */
static int
commit(struct audit_log *log, struct ent *batch, json_t **extra, size_t nextra)
{
	char now[TIME_LEN], hex[KWAC_HEX_LEN + 1], path[1024], in[128];
	char line[400];
	uint8_t mac[KWAC_MAC_LEN], saved_last[KWAC_HASH_LEN];
	uint64_t saved_seq = log->next_seq, seq;
	int64_t t = real_us();
	int wrote_header = 0, n, r;
	struct ent *e;

	memcpy(saved_last, log->last, sizeof(saved_last));
	log->buflen = 0;
	log->nlines = 0;
	if (batch == NULL && nextra == 0)
		return 0;
	time_str(now, sizeof(now), t);

	/* Roll over by size or age, before the batch. */
	if (log->seg_has_header &&
	    (log->seg_size >= log->opt.segment_bytes || (t > log->seg_started &&
	    (uint64_t)(t - log->seg_started) >= log->opt.segment_seconds * 1000000))) {
		/* Only the last segment may end in zeros: open it if a failed
		 * commit closed it (seg_open cuts it too) and cut them. */
		if ((r = seg_open(log)) != 0 || (r = seg_trim(log)) != 0)
			goto fail;
		seg_close(log);
		log->seg++;
		log->seg_size = 0;
		log->seg_zeroed = 0;
		log->prealloc_failed = 0;
		log->seg_has_header = 0;
		log->seg_created = 0;
	}
	if (!log->seg_has_header) {
		kwac_hex(log->last, hex);
		n = snprintf(line, sizeof(line),
		    "{\"type\":\"segment\",\"segment\":%u,\"first_seq\":%" PRIu64 ",\"prev\":\"%s\",\"time\":\"%s\"}",
		    log->seg, log->next_seq, hex, now);
		if ((r = buf_add(log, line, (size_t)n)) != 0 || (r = buf_chain(log, 0, 0)) != 0)
			goto fail;
		wrote_header = 1;
	}
	for (size_t i = 0; i < nextra; i++)
		if ((r = buf_event_json(log, extra[i], now, log->next_seq++)) != 0)
			goto fail;
	for (e = batch; e != NULL; e = e->next) {
		e->seq = log->next_seq++;
		if ((r = buf_event(log, e->body, e->bodylen, now, e->seq)) != 0)
			goto fail;
	}
	/* The seal: the token's HMAC over the last event's hash. */
	seq = log->next_seq - 1;
	if ((n = kwac_seal_input(seq, log->last, in, sizeof(in))) < 0) {
		r = KW_E_INTERNAL;
		goto fail;
	}
	if ((r = log->opt.seal(log->opt.seal_arg, (const uint8_t *)in, (size_t)n, mac)) != 0) {
		char why[256];
		/* A copy: kw_fail() rewrites the text kw_errdetail() points to. */
		snprintf(why, sizeof(why), "%s", kw_errdetail(r));
		r = kw_fail(KW_E_AUDIT, "the token did not seal the audit chain: %s", why);
		goto fail;
	}
	{
		char mhex[KWAC_HEX_LEN + 1];
		kwac_hex(log->last, hex);
		kwac_hex(mac, mhex);
		n = snprintf(line, sizeof(line),
		    "{\"type\":\"seal\",\"seq\":%" PRIu64 ",\"hash\":\"%s\",\"hmac\":\"%s\"}\n",
		    seq, hex, mhex);
		if ((r = buf_add(log, line, (size_t)n)) != 0)
			goto fail;
	}

	if ((r = seg_open(log)) != 0)
		goto fail;
	seg_path(log, log->seg, path, sizeof(path));
	if ((r = write_all(log->fd, log->buf, log->buflen, log->seg_size)) != 0) {
		r = kw_fail(r, "cannot write audit segment %s: %s", path, strerror(-r));
		goto fail;
	}
	if ((log->opt.datasync != NULL ? log->opt.datasync(log->fd) : fdatasync(log->fd)) != 0) {
		r = kw_fail(-errno, "cannot flush audit segment %s to disk: %s", path,
		    strerror(errno));
		goto fail;
	}
	if (log->seg_created) {
		if (fsync(log->dirfd) != 0) {
			r = kw_fail(-errno, "cannot flush the audit directory %s: %s", log->dir,
			    strerror(errno));
			goto fail;
		}
		log->seg_created = 0;
	}
	log->seg_size += log->buflen;
	if (wrote_header) {
		log->seg_has_header = 1;
		log->seg_started = t;
		if (log->seg > 1)
			log->anchor_now = 1;
	}
	log->sealed.seq = seq;
	memcpy(log->sealed.hash, log->last, KWAC_HASH_LEN);
	memcpy(log->sealed.mac, mac, KWAC_MAC_LEN);
	return 0;
fail:
	/* Nothing of this batch happened: same seq, same chain, and the file
	 * is reopened and cut back to its durable end before the next try. */
	atomic_fetch_add_explicit(&log->rewrites, 1, memory_order_release);
	log->next_seq = saved_seq;
	memcpy(log->last, saved_last, sizeof(saved_last));
	log->nlines = 0;
	seg_close(log);
	/* Cut the refused bytes now, not at the next try: a crash before
	 * that would leave them, sealed, to be taken at the next open for
	 * the log's end, though their requests were refused.  Best effort:
	 * the disk may still be failing (the next try cuts them then). */
	{
		char keep[sizeof(log->fail_detail)];
		snprintf(keep, sizeof(keep), "%s", kw_errdetail(r));
		(void)seg_open(log);
		r = kw_fail(r, "%s", keep);
	}
	return r;
}

/* After a durable batch: the ring, the subscribers, syslog. */
static void
publish(struct audit_log *log)
{
	struct audit_line stackv[64], *v = stackv;
	struct ring_slot *s;
	struct audit_sub *sub;
	size_t i, n = log->nlines;
	char *copy;

	if (n == 0)
		return;
	pthread_mutex_lock(&log->ring_mu);
	for (i = 0; i < n; i++) {
		const struct batch_line *bl = &log->lines[i];
		if ((copy = malloc(bl->len + 1)) == NULL) {
			/* The ring only speeds up readers: start it afresh. */
			log->ring_first = 0;
			continue;
		}
		memcpy(copy, log->buf + bl->off, bl->len);
		copy[bl->len] = '\0';
		s = &log->ring[bl->seq % log->ring_n];
		free(s->text);
		s->seq = bl->seq;
		s->text = copy;
		s->len = bl->len;
		if (log->ring_first == 0 || bl->seq != log->ring_last + 1)
			log->ring_first = bl->seq;
		log->ring_last = bl->seq;
		if (log->ring_last - log->ring_first >= log->ring_n)
			log->ring_first = log->ring_last - log->ring_n + 1;
	}
	pthread_mutex_unlock(&log->ring_mu);

	if (n > sizeof(stackv) / sizeof(stackv[0]) &&
	    (v = calloc(n, sizeof(*v))) == NULL)
		v = NULL;
	pthread_mutex_lock(&log->sub_mu);
	log->committed = log->lines[n - 1].seq;
	if (v != NULL) {
		for (i = 0; i < n; i++) {
			v[i].seq = log->lines[i].seq;
			v[i].text = log->buf + log->lines[i].off;
			v[i].len = log->lines[i].len;
		}
		for (sub = log->subs; sub != NULL; sub = sub->next)
			sub->fn(sub->arg, v, n);
	}
	pthread_mutex_unlock(&log->sub_mu);
	if (v != stackv)
		free(v);

	if (log->opt.syslog)
		for (i = 0; i < n; i++)
			syslog(LOG_AUTHPRIV | LOG_INFO, "audit: %.*s", (int)log->lines[i].len,
			    log->buf + log->lines[i].off);
}

static void
ent_free(struct ent *e)
{
	if (e == NULL)
		return;
	free(e->body);
	free(e);
}

/* Copy the last durable seal into the anchor when it is due (or force):
 * see kw_auditchain.h.  On the writer thread, after a commit's
 * completions, so that no request waits for it.  A failure leaves the
 * older anchor, which still vouches for everything up to its seq, and is
 * retried after retry_ms. */
static void
anchor_write(struct audit_log *log, int force)
{
	uint64_t now;
	int r;

	if (log->opt.anchor_put == NULL || log->sealed.seq == 0 ||
	    log->sealed.seq <= log->anchored)
		return;
	now = mono_us();
	if (!force && !log->anchor_now && now < log->anchor_due)
		return;
	r = log->opt.anchor_put(log->opt.anchor_arg, &log->sealed);
	pthread_mutex_lock(&log->mu);
	log->st.anchor_error = r;
	if (r == 0) {
		log->anchored = log->sealed.seq;
		log->st.anchored_seq = log->anchored;
		log->st.anchor_detail[0] = '\0';
		log->anchor_now = 0;
		log->anchor_due = now + (uint64_t)log->opt.anchor_seconds * 1000000;
	} else {
		snprintf(log->st.anchor_detail, sizeof(log->st.anchor_detail), "%s",
		    kw_errdetail(r));
		log->anchor_now = 0;   /* retried when due, not at every commit */
		log->anchor_due = now + (uint64_t)log->opt.retry_ms * 1000;
	}
	pthread_mutex_unlock(&log->mu);
}

static void *
writer_main(void *arg)
{
	struct audit_log *log = arg;
	struct ent *batch, *e, *next, *done_list, **dtail;
	struct timespec ts;
	json_t *extra[2];
	size_t nextra, i;
	uint64_t retry_at = 0;
	size_t last_batch = 0;
	int failing, r, status;

	/* The linger is a couple of hundred microseconds: the default timer
	 * slack (50 us) would stretch each one by a quarter. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	pthread_mutex_lock(&log->mu);
	for (;;) {
		failing = log->st.state == AUDIT_FAILING;
		/* Wake for events; to retry a failing disk (with or without
		 * events: the "audit.recovered" event is the probe); to record
		 * late writes. */
		while (log->q_head == NULL && !log->stopping &&
		    !(failing && mono_us() >= retry_at) &&
		    !(!failing && log->late != NULL)) {
			if (failing) {
				abs_deadline(&ts, retry_at);
				pthread_cond_timedwait(&log->wake, &log->mu, &ts);
			} else
				pthread_cond_wait(&log->wake, &log->mu);
		}
		if (log->q_head == NULL && log->stopping && (failing || log->late == NULL))
			break;
		if (!failing && !log->stopping && last_batch > 1 && log->opt.linger_us > 0 &&
		    log->queued < LINGER_ENOUGH) {
			uint64_t until = mono_us() + (uint64_t)log->opt.linger_us;
			abs_deadline(&ts, until);
			/* Submitters wake us only once the batch is big enough. */
			log->lingering = 1;
			while (!log->stopping && log->queued < LINGER_ENOUGH && mono_us() < until)
				if (pthread_cond_timedwait(&log->wake, &log->mu, &ts) == ETIMEDOUT)
					break;
			log->lingering = 0;
		}
		/* Take up to MAX_BATCH events: one group commit. */
		batch = log->q_head;
		for (i = 0, e = batch; e != NULL && i < MAX_BATCH - 1; i++, e = e->next)
			e->state = E_WRITING;
		if (e != NULL) {
			e->state = E_WRITING;
			log->q_head = e->next;
			e->next = NULL;
			if (log->q_head == NULL)
				log->q_tail = NULL;
			log->queued -= i + 1;
		} else {
			log->q_head = log->q_tail = NULL;
			log->queued = 0;
		}
		log->inflight = batch;
		nextra = 0;
		if (failing)
			extra[nextra++] = json_pack("{s:s,s:I,s:s,s:s}", "type", "audit.recovered",
			    "refused", (json_int_t)log->refused_failing, "failing_since",
			    log->fail_since, "error", log->fail_detail);
		if (log->late != NULL)
			extra[nextra++] = json_pack("{s:s,s:O,s:s}", "type", "audit.late",
			    "seqs", log->late, "meaning",
			    "these events were written after their requests had been refused for want of a durable audit record");
		pthread_mutex_unlock(&log->mu);

		for (i = 0; i < nextra; i++)
			if (extra[i] == NULL)
				extra[i--] = extra[--nextra];   /* ENOMEM: write what we can */
		r = commit(log, batch, extra, nextra);
		for (i = 0; i < nextra; i++)
			json_decref(extra[i]);
		if (r == 0)
			publish(log);

		pthread_mutex_lock(&log->mu);
		log->st.segment = log->seg;
		if (r == 0 && log->late != NULL && nextra > 0) {
			json_decref(log->late);
			log->late = NULL;
		}
		if (r == 0) {
			if (failing) {
				log->st.state = AUDIT_OK;
				log->st.error = 0;
				log->st.detail[0] = '\0';
				log->st.failing_since_us = 0;
				log->refused_failing = 0;
			}
			last_batch = log->nlines;
			if (log->nlines > 0) {
				log->st.batches++;
				log->st.events += log->nlines;
				log->st.committed_seq = log->lines[log->nlines - 1].seq;
			}
		} else {
			if (!failing) {
				log->st.failing_since_us = (uint64_t)real_us();
				time_str(log->fail_since, sizeof(log->fail_since), real_us());
			}
			log->st.state = AUDIT_FAILING;
			log->st.error = r;
			snprintf(log->st.detail, sizeof(log->st.detail), "%s", kw_errdetail(r));
			snprintf(log->fail_detail, sizeof(log->fail_detail), "%s", log->st.detail);
			retry_at = mono_us() + (uint64_t)log->opt.retry_ms * 1000;
		}
		/* Completions: those the watchdog has not already failed. */
		done_list = NULL;
		dtail = &done_list;
		for (e = batch; e != NULL; e = next) {
			next = e->next;
			if (e->state == E_ABANDONED) {
				/* Its submitter was told it failed; if it was written
				 * after all, say so in the log. */
				if (r == 0) {
					if (log->late == NULL)
						log->late = json_array();
					json_array_append_new(log->late, json_integer((json_int_t)e->seq));
				}
				ent_free(e);
				continue;
			}
			if (r != 0) {
				log->st.refused++;
				log->refused_failing++;
			}
			e->next = NULL;
			*dtail = e;
			dtail = &e->next;
		}
		log->inflight = NULL;
		pthread_mutex_unlock(&log->mu);

		status = r == 0 ? 0 : KW_E_AUDIT;
		if (done_list != NULL && log->opt.batch_begin != NULL)
			log->opt.batch_begin(log->opt.batch_arg);
		for (e = done_list; e != NULL; e = next) {
			next = e->next;
			e->done(e->arg, status, r == 0 ? e->seq : 0);
			ent_free(e);
		}
		if (done_list != NULL && log->opt.batch_end != NULL)
			log->opt.batch_end(log->opt.batch_arg);
		if (r == 0) {
			seg_prealloc(log);
			anchor_write(log, 0);
		}
		pthread_mutex_lock(&log->mu);
		/* Stopping on a failing disk: do not retry forever. */
		if (r != 0 && log->stopping) {
			while ((e = log->q_head) != NULL) {
				log->q_head = e->next;
				pthread_mutex_unlock(&log->mu);
				e->done(e->arg, KW_E_AUDIT, 0);
				ent_free(e);
				pthread_mutex_lock(&log->mu);
			}
			log->q_tail = NULL;
			log->queued = 0;
			break;
		}
	}
	pthread_mutex_unlock(&log->mu);
	/* The last durable seal, so that a log cut while no daemon runs is
	 * found at the next start (a failing disk does not matter: the seal
	 * was durable before it failed). */
	anchor_write(log, 1);
	return NULL;
}

/* Fails what is not durable by its deadline, even while the writer is
 * stuck in a system call. */
static void *
watchdog_main(void *arg)
{
	struct audit_log *log = arg;
	struct timespec ts;
	struct ent *e;
	audit_done_fn fn;
	void *fnarg;
	uint64_t now, earliest;

	pthread_mutex_lock(&log->mu);
	while (!log->wd_stop) {
		now = mono_us();
		fn = NULL;
		fnarg = NULL;
		if ((e = log->q_head) != NULL && e->deadline <= now) {
			log->q_head = e->next;
			if (log->q_head == NULL)
				log->q_tail = NULL;
			log->queued--;
			fn = e->done;
			fnarg = e->arg;
		} else {
			for (e = log->inflight; e != NULL; e = e->next)
				if (e->state == E_WRITING)
					break;
			if (e != NULL && e->deadline <= now) {
				e->state = E_ABANDONED;   /* the writer frees it */
				fn = e->done;
				fnarg = e->arg;
				e = NULL;
			} else
				e = NULL;
		}
		if (fn != NULL) {
			log->st.refused++;
			log->st.timeouts++;
			if (log->st.state == AUDIT_FAILING)
				log->refused_failing++;
			pthread_mutex_unlock(&log->mu);
			fn(fnarg, -ETIMEDOUT, 0);
			ent_free(e);
			pthread_mutex_lock(&log->mu);
			continue;
		}
		earliest = UINT64_MAX;
		if (log->q_head != NULL)
			earliest = log->q_head->deadline;
		for (e = log->inflight; e != NULL; e = e->next)
			if (e->state == E_WRITING) {
				if (e->deadline < earliest)
					earliest = e->deadline;
				break;
			}
		/* Nothing waiting: look again in one timeout.  An event queued
		 * meanwhile is due no sooner than that, so submitters need not
		 * wake this thread (a wake per batch cost a context switch). */
		if (earliest == UINT64_MAX)
			earliest = now + (uint64_t)log->opt.timeout_ms * 1000;
		abs_deadline(&ts, earliest);
		pthread_cond_timedwait(&log->wd_wake, &log->mu, &ts);
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
}

/* ---- submitting ----------------------------------------------------------------- */

static const char *const forbidden_keys[] = {
	"value", "pin", "secret", "dek", "key_material", "plaintext",
};

int
audit_check_fields(const json_t *ev)
{
	const char *type;

	for (size_t i = 0; i < sizeof(forbidden_keys) / sizeof(forbidden_keys[0]); i++)
		if (json_object_get(ev, forbidden_keys[i]) != NULL)
			return kw_fail(-EINVAL, "an audit event may not carry a \"%s\" field: events "
			    "never hold secret material", forbidden_keys[i]);
	type = json_string_value(json_object_get(ev, "type"));
	if (type != NULL && (strcmp(type, "segment") == 0 || strcmp(type, "seal") == 0))
		return kw_fail(-EINVAL, "an audit event may not have type \"%s\"", type);
	return 0;
}

/* An event object checked and printed, without the fields the writer
 * sets: 0 and *body (malloc'd), or a code.  Takes ev's reference. */
static int
event_print(struct audit_log *log, json_t *ev, char **body)
{
	int r = 0;

	if (log == NULL || !json_is_object(ev))
		r = kw_fail(-EINVAL, "an audit event must be a JSON object");
	else if ((r = audit_check_fields(ev)) == 0) {
		json_object_del(ev, "seq");
		json_object_del(ev, "time");
		json_object_del(ev, "prev");
		if ((*body = json_dumps(ev, JSON_COMPACT)) == NULL)
			r = -ENOMEM;
	}
	json_decref(ev);
	return r;
}

int
audit_submit(struct audit_log *log, json_t *ev, audit_done_fn done, void *arg)
{
	char *body;
	int r;

	if (log == NULL || done == NULL || !json_is_object(ev)) {
		json_decref(ev);
		return kw_fail(-EINVAL, "an audit event must be a JSON object with a completion");
	}
	if ((r = event_print(log, ev, &body)) != 0)
		return r;
	return audit_submit_body(log, body, strlen(body), done, arg);
}

int
audit_submit_body(struct audit_log *log, char *body, size_t bodylen, audit_done_fn done,
    void *arg)
{
	struct ent *e = NULL;
	int r;

	if (log == NULL || body == NULL || done == NULL || bodylen < 2 || body[0] != '{') {
		free(body);
		return kw_fail(-EINVAL, "an audit event must be a JSON object with a completion");
	}
	if ((e = calloc(1, sizeof(*e))) == NULL) {
		free(body);
		return -ENOMEM;
	}
	e->body = body;
	e->bodylen = bodylen;
	if (e->bodylen > KWAC_LINE_MAX - 512) {
		r = kw_fail(KW_E_TOO_LARGE, "an audit event of %zu bytes is over the limit of %d: clamp the fields the caller sent",
		    e->bodylen, KWAC_LINE_MAX - 512);
		goto out;
	}
	e->done = done;
	e->arg = arg;
	e->state = E_QUEUED;
	e->deadline = mono_us() + (uint64_t)log->opt.timeout_ms * 1000;

	pthread_mutex_lock(&log->mu);
	if (log->stopping) {
		pthread_mutex_unlock(&log->mu);
		r = kw_fail(-ESHUTDOWN, "the audit log is closing");
		goto out;
	}
	if (log->q_tail != NULL)
		log->q_tail->next = e;
	else
		log->q_head = e;
	log->q_tail = e;
	log->queued++;
	e = NULL;       /* the queue owns it */
	if (!log->lingering || log->queued >= LINGER_ENOUGH)
		pthread_cond_signal(&log->wake);
	pthread_mutex_unlock(&log->mu);
	r = 0;
out:
	ent_free(e);
	return r;
}

struct waiter {
	pthread_mutex_t m;
	pthread_cond_t c;
	int done;
	int status;
	uint64_t seq;
};

static void
waiter_done(void *arg, int status, uint64_t seq)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->m);
	w->status = status;
	w->seq = seq;
	w->done = 1;
	pthread_cond_broadcast(&w->c);
	pthread_mutex_unlock(&w->m);
}

int
audit_submit_body_wait(struct audit_log *log, char *body, size_t bodylen, uint64_t *seq)
{
	struct waiter w;
	int r;

	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.m, NULL);
	pthread_cond_init(&w.c, NULL);
	if ((r = audit_submit_body(log, body, bodylen, waiter_done, &w)) == 0) {
		/* The watchdog bounds this wait by timeout_ms. */
		pthread_mutex_lock(&w.m);
		while (!w.done)
			pthread_cond_wait(&w.c, &w.m);
		pthread_mutex_unlock(&w.m);
		r = w.status;
		if (r == KW_E_AUDIT) {
			char detail[256];
			pthread_mutex_lock(&log->mu);
			snprintf(detail, sizeof(detail), "%s", log->st.detail);
			pthread_mutex_unlock(&log->mu);
			r = kw_fail(KW_E_AUDIT, "the audit log cannot be written: %s",
			    detail[0] ? detail : "the write failed");
		}
		else if (r == -ETIMEDOUT)
			r = kw_fail(-ETIMEDOUT, "the audit log did not become durable within %u ms: the disk is stuck",
			    log->opt.timeout_ms);
	}
	pthread_cond_destroy(&w.c);
	pthread_mutex_destroy(&w.m);
	if (r == 0 && seq != NULL)
		*seq = w.seq;
	return r;
}

int
audit_submit_wait(struct audit_log *log, json_t *ev, uint64_t *seq)
{
	char *body;
	int r;

	if ((r = event_print(log, ev, &body)) != 0)
		return r;
	return audit_submit_body_wait(log, body, strlen(body), seq);
}

/* ---- open and close ----------------------------------------------------------- */

/* A torn tail is cut off the segment before the audit.torn_tail event that
 * records it can be written (the event chains from the cut), so a crash or
 * a failed write between the two would leave a repair no event mentions,
 * and the next start would see a clean log.  So the copy is saved as
 * "<name>.unrecorded" and renamed to <name> (the name the event gives) only
 * once the event is durable; open records any copy still so named that no
 * event mentions (torn_sweep). */
#define TORN_PENDING ".unrecorded"

/* Copy bytes [from, size) of path aside into "<path>.torn-<from>.unrecorded",
 * durably; *saved gets the base name without ".unrecorded". */
static int
torn_aside(struct audit_log *log, const char *path, uint64_t from, uint64_t size,
    char *saved, size_t savedlen, uint8_t sha[KWAC_HASH_LEN])
{
	char name[1120], final[1100];
	uint8_t *bytes = NULL;
	ssize_t n;
	int in = -1, out = -1, r;

	if (size - from > 64ULL << 20)
		return kw_fail(KW_E_TOO_LARGE, "the torn tail of %s is %" PRIu64 " bytes: too much to be a torn write; inspect the file",
		    path, size - from);
	if ((bytes = malloc(size - from + 1)) == NULL)
		return -ENOMEM;
	if ((in = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = kw_fail(-errno, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	n = pread(in, bytes, size - from, (off_t)from);
	if (n < 0 || (uint64_t)n != size - from) {
		r = kw_fail(-EIO, "cannot read the torn tail of %s", path);
		goto out;
	}
	kwac_hash(bytes, (size_t)n, sha);
	for (int i = 0; i < 100 && out < 0; i++) {
		if (i == 0)
			snprintf(final, sizeof(final), "%s.torn-%" PRIu64, path, from);
		else
			snprintf(final, sizeof(final), "%s.torn-%" PRIu64 "-%d", path, from, i);
		snprintf(name, sizeof(name), "%s" TORN_PENDING, final);
		if (access(final, F_OK) == 0)
			continue;
		out = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (out < 0 && errno != EEXIST) {
			r = kw_fail(-errno, "cannot save the torn tail of %s into %s: %s", path,
			    name, strerror(errno));
			goto out;
		}
	}
	if (out < 0) {
		r = kw_fail(-EEXIST, "too many saved torn tails next to %s", path);
		goto out;
	}
	if ((r = write_all(out, (const char *)bytes, (size_t)n, 0)) != 0 || fsync(out) != 0 ||
	    fsync(log->dirfd) != 0) {
		r = kw_fail(r ? r : -errno, "cannot save the torn tail of %s into %s", path, name);
		goto out;
	}
	snprintf(saved, savedlen, "%s", strrchr(final, '/') ? strrchr(final, '/') + 1 : final);
	r = 0;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(bytes);
	return r;
}

/* The event naming saved is durable: drop the copy's ".unrecorded". */
static int
torn_recorded(struct audit_log *log, const char *saved)
{
	char from[1100];

	snprintf(from, sizeof(from), "%s" TORN_PENDING, saved);
	if (renameat(log->dirfd, from, log->dirfd, saved) != 0 || fsync(log->dirfd) != 0)
		return kw_fail(-errno, "cannot rename %s/%s to %s once recorded: %s", log->dir, from,
		    saved, strerror(errno));
	return 0;
}

/* The names of the copies still ".unrecorded" in the directory, into *out
 * (a new array of strings, without the suffix). */
static int
torn_pending_list(struct audit_log *log, json_t **out)
{
	size_t plen = strlen(KWAC_SEGMENT_PREFIX) + 10 + strlen(KWAC_SEGMENT_SUFFIX ".torn-");
	size_t slen = strlen(TORN_PENDING), len;
	struct dirent *de;
	json_t *names;
	DIR *d;
	int fd, r = 0;

	if ((fd = dup(log->dirfd)) < 0)
		return kw_fail(-errno, "cannot list %s: %s", log->dir, strerror(errno));
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return kw_fail(-errno, "cannot list %s: %s", log->dir, strerror(errno));
	}
	rewinddir(d);
	if ((names = json_array()) == NULL)
		r = -ENOMEM;
	while (r == 0 && (errno = 0, de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len <= plen + slen || strcmp(de->d_name + len - slen, TORN_PENDING) != 0 ||
		    strncmp(de->d_name, KWAC_SEGMENT_PREFIX, strlen(KWAC_SEGMENT_PREFIX)) != 0 ||
		    strstr(de->d_name, KWAC_SEGMENT_SUFFIX ".torn-") == NULL)
			continue;
		if (json_array_append_new(names, json_stringn(de->d_name, len - slen)) != 0)
			r = -ENOMEM;
	}
	if (r == 0 && errno != 0)
		r = kw_fail(-errno, "cannot list %s: %s", log->dir, strerror(errno));
	closedir(d);
	if (r != 0) {
		json_decref(names);
		return r;
	}
	*out = names;
	return 0;
}

/* 1 when an audit.torn_tail event of segment index or after gives saved as
 * its "saved_as", 0 when none does, or a negative code. */
static int
torn_event_exists(struct audit_log *log, unsigned index, const char *saved)
{
	unsigned *idx = NULL;
	size_t n = 0;
	struct kwac_lines lr;
	struct kwac_line l;
	const char *text;
	size_t len;
	uint64_t off;
	char path[1024];
	json_t *ev;
	int found = 0, r;

	if ((r = kwac_segments_list(log->dir, &idx, &n)) != 0)
		return r;
	for (size_t i = 0; i < n && !found; i++) {
		if (idx[i] < index)
			continue;
		seg_path(log, idx[i], path, sizeof(path));
		if ((r = kwac_lines_open(&lr, path)) != 0)
			goto out;
		while (!found && (r = kwac_lines_next(&lr, &text, &len, &off)) == 1) {
			if (kwac_line_parse(text, len, &l, NULL, 0) != 0 || l.type != KWAC_LINE_EVENT ||
			    strcmp(l.event, KWAC_TORN_EVENT) != 0)
				continue;
			if ((ev = json_loadb(text, len, 0, NULL)) == NULL)
				continue;
			found = json_string_value(json_object_get(ev, "saved_as")) != NULL &&
			    strcmp(json_string_value(json_object_get(ev, "saved_as")), saved) == 0;
			json_decref(ev);
		}
		kwac_lines_close(&lr);
		if (r < 0)
			goto out;
	}
	r = found;
out:
	free(idx);
	return r;
}

/* Record the copies a previous start cut off but did not get to record
 * (names: from torn_pending_list, taken before this start cut anything),
 * unless the event is there and only the rename was missed. */
static int
torn_sweep(struct audit_log *log, json_t *names)
{
	size_t i, seglen = strlen(KWAC_SEGMENT_PREFIX) + 10 + strlen(KWAC_SEGMENT_SUFFIX);
	char segname[64], path[1100], hex[KWAC_HEX_LEN + 1], why[256];
	uint8_t *bytes = NULL, sha[KWAC_HASH_LEN];
	unsigned index;
	json_t *v, *ev;
	struct stat st;
	int fd = -1, r = 0;
	ssize_t n;

	json_array_foreach(names, i, v) {
		const char *saved = json_string_value(v);

		snprintf(segname, sizeof(segname), "%.*s", (int)seglen, saved);
		if (kwac_segment_index(segname, &index) != 0)
			continue;
		if ((r = torn_event_exists(log, index, saved)) < 0)
			goto out;
		if (r == 0) {
			snprintf(path, sizeof(path), "%s/%s" TORN_PENDING, log->dir, saved);
			if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
			    fstat(fd, &st) != 0) {
				r = kw_fail(-errno, "cannot read %s: %s", path, strerror(errno));
				goto out;
			}
			if ((uint64_t)st.st_size > 64ULL << 20 ||
			    (bytes = malloc((size_t)st.st_size + 1)) == NULL) {
				r = kw_fail(-ENOMEM, "cannot read %s: too large", path);
				goto out;
			}
			if ((n = pread(fd, bytes, (size_t)st.st_size, 0)) != st.st_size) {
				r = kw_fail(-EIO, "cannot read %s", path);
				goto out;
			}
			kwac_hash(bytes, (size_t)n, sha);
			kwac_hex(sha, hex);
			ev = json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:b}", "type", KWAC_TORN_EVENT,
			    "segment", segname,
			    "offset", (json_int_t)strtoull(saved + seglen + strlen(".torn-"), NULL, 10),
			    "bytes", (json_int_t)n, "saved_as", saved, "sha256", hex,
			    "reason", "cut off at an earlier start, which stopped before it recorded the cut: recorded at this start",
			    "recorded_late", 1);
			if (ev == NULL) {
				r = -ENOMEM;
				goto out;
			}
			if ((r = audit_submit_wait(log, ev, NULL)) != 0) {   /* steals ev */
				snprintf(why, sizeof(why), "%s", kw_errdetail(r));
				r = kw_fail(r, "cannot record the torn tail %s cut off at an earlier start: %s",
				    saved, why);
				goto out;
			}
			close(fd);
			fd = -1;
			free(bytes);
			bytes = NULL;
		}
		if ((r = torn_recorded(log, saved)) != 0)
			goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(bytes);
	return r;
}

/* Recompute with the token the seal of event seq over hash, and compare it
 * with mac in constant time: *ours is 1 when mac is the audit key's.  0,
 * or the token's error (with its detail). */
static int
seal_check(struct audit_log *log, uint64_t seq, const uint8_t hash[KWAC_HASH_LEN],
    const uint8_t mac[KWAC_MAC_LEN], int *ours)
{
	uint8_t want[KWAC_MAC_LEN];
	char in[128];
	int n, r;

	*ours = 0;
	if ((n = kwac_seal_input(seq, hash, in, sizeof(in))) < 0)
		return KW_E_INTERNAL;
	if ((r = log->opt.seal(log->opt.seal_arg, (const uint8_t *)in, (size_t)n, want)) == 0)
		*ours = kw_memeq_ct(want, mac, sizeof(want)) == 0;
	kw_wipe(want, sizeof(want));
	return r;
}

/* A torn tail is what a crash leaves: bytes that were never acknowledged.
 * A seal that the audit key made, after the break, says otherwise: the
 * break is in data that was durable, so it was altered or corrupted, and
 * cutting it off would hide that.  1 when such a seal follows, 0 if not.
 *
 * One exception.  In a preallocated segment a commit overwrites zero bytes,
 * and a crash during its sync may leave any of its pages on disk and not
 * others: the one batch in flight (the writer commits one at a time) can
 * come back with zeros inside it and its own seal whole at its end.  So
 * when the tail after the break holds zero bytes, a seal proves alteration
 * only if data follows it, that is, if more than that one batch is there. */
static int
sealed_after(struct audit_log *log, const char *path, uint64_t from)
{
	struct kwac_lines lr;
	struct kwac_line l;
	const char *text;
	size_t len;
	uint64_t off;
	int r, ours, sealed = 0, after = 0, zeros = 0;

	if (kwac_lines_open(&lr, path) != 0)
		return 0;
	if (lseek(lr.fd, (off_t)from, SEEK_SET) == (off_t)from) {
		lr.off = from;
		for (;;) {
			r = kwac_lines_next(&lr, &text, &len, &off);
			if (r == 0 && lr.at_zero) {
				/* Zeros with data after them are inside the tail;
				 * the zeros that end the file are not. */
				if (kwac_lines_partial(&lr) > 0 && sealed)
					after = 1;
				if (kwac_lines_skip_zeros(&lr, NULL, NULL) != 1)
					break;
				zeros = 1;
				continue;
			}
			if (r != 1) {
				if (r == 0 && kwac_lines_partial(&lr) > 0 && sealed)
					after = 1;
				break;
			}
			if (sealed)
				after = 1;
			if (kwac_line_parse(text, len, &l, NULL, 0) != 0 ||
			    l.type != KWAC_LINE_SEAL)
				continue;
			if (seal_check(log, l.seq, l.hash, l.mac, &ours) == 0 && ours)
				sealed = 1;
		}
	}
	kwac_lines_close(&lr);
	return sealed && (!zeros || after);
}

/* 0 when the seal at the end of scan s (seq s->next_seq - 1 over s->last) is
 * the audit key's, recomputed with the token and compared in constant time. */
static int
seal_matches(struct audit_log *log, const char *path, const struct kwac_scan *s)
{
	char why[256];
	int r, ours;

	if ((r = seal_check(log, s->next_seq - 1, s->last, s->seal_mac, &ours)) != 0) {
		/* A copy: kw_fail() rewrites the text kw_errdetail() points to. */
		snprintf(why, sizeof(why), "%s", kw_errdetail(r));
		return kw_fail(r, "cannot check the last seal of audit segment %s (seq %" PRIu64 ") with the token: %s",
		    path, s->next_seq - 1, why);
	}
	if (!ours)
		return kw_fail(KW_E_AUTH, "audit segment %s: the seal of seq %" PRIu64 " on line %lu, where the log ends, was not made by the token's audit key: events were appended or rewritten without the key, or this token is not the one that sealed the log; the daemon will not go on from it (its next seal would vouch for them) and nothing was changed: keep a copy of %s and run keywarden audit verify --no-seals %s, or keywardend --config FILE --verify-audit to check every seal",
		    path, s->next_seq - 1, s->lines, log->dir, log->dir);
	return 0;
}

/* The writer goes on from where the scan of the last segment ends: its
 * next event chains to that point, and its next seal, made by the token,
 * vouches for everything before.  The scan checks seals for shape only, so
 * before that point is trusted it must be vouched for by the audit key:
 * the seal that ends it, checked here with the token; or, when the last
 * segment holds no seal (a header alone, or no whole header: a crash just
 * after a roll-over), the previous segment's end, which the header must
 * link to as the verifier requires, and so on back to the first segment's
 * header, which links to nothing.
 *
 * Without this, anyone who may write audit.dir but has no use of the token
 * could append events of their own with a correct chain and any seal while
 * the daemon is stopped; the daemon would seal after them at its start, and
 * once the fake seal was removed the log would verify whole.
 *
 * A seal the key did not make is refused, not cut off as a torn tail: a
 * crash leaves a partial line or events without their seal (handled as
 * torn), never a whole seal with a wrong HMAC.  Such a seal means the log
 * was forged, or the token is not the one that sealed it; cutting would
 * destroy the evidence, or good events.  The operator decides. */
static int
tail_vouched(struct audit_log *log, const unsigned *idx, size_t n, const struct kwac_scan *last)
{
	static const uint8_t zero[KWAC_HASH_LEN];
	struct kwac_scan cur = *last, ps;
	char path[1024], ppath[1024];
	size_t i = n - 1;
	int vouched = 0, r;

	for (;;) {
		seg_path(log, idx[i], path, sizeof(path));
		if (!vouched && cur.sealed) {
			if ((r = seal_matches(log, path, &cur)) != 0)
				return r;
			vouched = 1;
		}
		if (!vouched && idx[i] == 1) {
			/* The first segment, no seal in it: nothing before its
			 * header (or it has none yet). */
			if (cur.has_header && (cur.first_seq != 1 ||
			    memcmp(cur.header_prev, zero, sizeof(zero)) != 0))
				return kw_fail(KW_E_FORMAT, "audit segment %s: its header links to an earlier segment, and no seal vouches for it; nothing was changed; run keywardend --config FILE --verify-audit",
				    path);
			return 0;
		}
		if (i == 0 || idx[i - 1] != idx[i] - 1) {
			/* The previous segment is gone (removed by hand, as
			 * retention): the seal checked vouches for what is here. */
			if (vouched)
				return 0;
			return kw_fail(KW_E_FORMAT, "audit segment %s has no seal and segment %u is missing: nothing vouches for where the chain goes on; nothing was changed; run keywardend --config FILE --verify-audit",
			    path, idx[i] - 1);
		}
		seg_path(log, idx[i - 1], ppath, sizeof(ppath));
		if ((r = kwac_segment_scan(ppath, idx[i - 1], &ps)) != 0)
			return r;
		/* Only the last segment may end in a torn write. */
		if (ps.torn || !ps.has_header)
			return kw_fail(KW_E_FORMAT, "audit segment %s is damaged before segment %u (%s); nothing was changed; run keywardend --config FILE --verify-audit",
			    ppath, idx[i], ps.has_header ? ps.why : "no header");
		if (cur.has_header && (memcmp(cur.header_prev, ps.last, KWAC_HASH_LEN) != 0 ||
		    cur.first_seq != ps.next_seq))
			return kw_fail(KW_E_FORMAT, "audit segment %s: its header does not link to the end of segment %s (seq %" PRIu64 "): a segment was replaced, or events were added to the previous one; nothing was changed; run keywardend --config FILE --verify-audit",
			    path, ppath, ps.next_seq - 1);
		/* Older links are the verifier's to check, as older seals. */
		if (vouched)
			return 0;
		cur = ps;
		i--;
	}
}

/* The log, as it will go on from seq end (its last event; 0: none), must
 * still hold the event the token's anchor records, with the same hash: see
 * kw_auditchain.h.  sealed_hash, if not NULL, is the hash of event end as
 * its seal (checked by tail_vouched) records it, which spares a scan in
 * the common case of an anchor written at the last close.  0, or KW_E_AUTH
 * when the log was cut or replaced (unless opt.reanchor: then *reanchor
 * gets the event that records it), or the error of reading the anchor. */
static int
anchor_check(struct audit_log *log, uint64_t end, const uint8_t *sealed_hash,
    json_t **reanchor)
{
	struct kwac_anchor a;
	uint8_t h[KWAC_HASH_LEN];
	char why[256], hex[KWAC_HEX_LEN + 1], problem[400];
	const char *kind = NULL;
	int r, ours;

	*reanchor = NULL;
	problem[0] = '\0';
	log->anchor_due = mono_us() + (uint64_t)log->opt.anchor_seconds * 1000000;
	if (log->opt.anchor_get == NULL)
		return 0;
	r = log->opt.anchor_get(log->opt.anchor_arg, &a);
	if (r == KW_E_NOT_FOUND) {
		/* A new token, or one from before anchors: anchor now. */
		log->anchor_now = 1;
		return 0;
	}
	if (r != 0) {
		snprintf(why, sizeof(why), "%s", kw_errdetail(r));
		return kw_fail(r, "cannot read the audit anchor from the token, so the end of the log in %s cannot be vouched for: %s",
		    log->dir, why);
	}
	if ((r = seal_check(log, a.seq, a.hash, a.mac, &ours)) != 0) {
		snprintf(why, sizeof(why), "%s", kw_errdetail(r));
		return kw_fail(r, "cannot check the audit anchor with the token: %s", why);
	}
	if (!ours) {
		kind = "forged";
		snprintf(problem, sizeof(problem), "the token's audit anchor (seq %" PRIu64 ") was not made by its audit key",
		    a.seq);
	} else if (a.seq > end) {
		kind = "cut";
		if (end == 0)
			snprintf(problem, sizeof(problem), "the audit directory %s holds no event, but the token's anchor records seq %" PRIu64 " as sealed: the log was removed or replaced",
			    log->dir, a.seq);
		else
			snprintf(problem, sizeof(problem), "the audit log in %s ends at seq %" PRIu64 ", but the token's anchor records seq %" PRIu64 " as sealed: events %" PRIu64 "..%" PRIu64 " were cut off, or an older copy of the log was put back",
			    log->dir, end, a.seq, end + 1, a.seq);
	} else {
		if (sealed_hash != NULL && a.seq == end)
			memcpy(h, sealed_hash, sizeof(h));
		else if ((r = kwac_event_hash(log->dir, a.seq, h)) == KW_E_NOT_FOUND)
			memcpy(h, a.hash, sizeof(h));   /* older than the segments kept (retention) */
		else if (r == KW_E_FORMAT)
			memset(h, 0, sizeof(h));   /* not there: not the anchor's */
		else if (r != 0)
			return r;
		if (memcmp(h, a.hash, sizeof(h)) != 0) {
			kind = "rewritten";
			snprintf(problem, sizeof(problem), "the audit log in %s holds another event at seq %" PRIu64 " than the one the token's anchor records: the log was rewritten or replaced from there back",
			    log->dir, a.seq);
		}
	}
	if (kind == NULL) {
		log->anchored = a.seq;
		log->st.anchored_seq = a.seq;
		return 0;
	}
	if (!log->opt.reanchor)
		return kw_fail(KW_E_AUTH, "%s; nothing was changed: keep a copy of %s and of the token, run keywardend --config FILE --verify-audit, put the missing segments back if a copy has them, or, to go on without them, start once with --audit-reanchor, which records the loss in the log",
		    problem, log->dir);
	kwac_hex(a.hash, hex);
	*reanchor = json_pack("{s:s,s:s,s:I,s:s,s:I,s:s}", "type", "audit.reanchored",
	    "problem", kind, "anchor_seq", (json_int_t)a.seq, "anchor_hash", hex,
	    "log_end_seq", (json_int_t)end, "detail", problem);
	if (*reanchor == NULL)
		return -ENOMEM;
	log->anchor_now = 1;
	return 0;
}

/* Find where the chain ends and check it against the anchor; repair a
 * torn tail.  *torn gets the event that records the repair, *reanchor the
 * one that records a log taken as it is (opt.reanchor), or NULL. */
static int
recover_tail(struct audit_log *log, json_t **torn, json_t **reanchor)
{
	unsigned *idx = NULL;
	size_t n = 0;
	char path[1024], ppath[1024], saved[1100], hex[KWAC_HEX_LEN + 1];
	uint8_t sha[KWAC_HASH_LEN];
	struct kwac_scan s, ps;
	int fd = -1, r;

	*torn = NULL;
	*reanchor = NULL;
	memset(&s, 0, sizeof(s));
	if ((r = kwac_segments_list(log->dir, &idx, &n)) != 0)
		goto out;
	if (n == 0) {
		log->seg = 1;
		log->next_seq = 1;
		memset(log->last, 0, sizeof(log->last));
		r = anchor_check(log, 0, NULL, reanchor);
		goto out;
	}
	log->seg = idx[n - 1];
	seg_path(log, log->seg, path, sizeof(path));
	if ((r = kwac_segment_scan(path, log->seg, &s)) != 0)
		goto out;
	if (s.torn && sealed_after(log, path, s.good_end)) {
		r = kw_fail(KW_E_FORMAT, "audit segment %s is broken at %s, and sealed events follow: that is not a torn write but altered or corrupted data; nothing was changed; run keywardend --verify-audit and keep a copy of the directory",
		    path, s.why);
		goto out;
	}
	/* Before anything is cut or written: the point the chain goes on
	 * from must be the audit key's, */
	if ((r = tail_vouched(log, idx, n, &s)) != 0)
		goto out;
	if (s.has_header) {
		log->seg_has_header = 1;
		log->next_seq = s.next_seq;
		memcpy(log->last, s.last, sizeof(log->last));
		if (time_parse(s.header_time, &log->seg_started) != 0)
			log->seg_started = real_us();
	} else if (log->seg == 1) {
		log->next_seq = 1;
		memset(log->last, 0, sizeof(log->last));
	} else {
		/* The header itself was torn: link to the previous segment. */
		if (n < 2 || idx[n - 2] != log->seg - 1) {
			r = kw_fail(KW_E_FORMAT, "audit segment %s has no header and segment %u is missing: cannot continue the chain; run keywardend --verify-audit",
			    path, log->seg - 1);
			goto out;
		}
		seg_path(log, log->seg - 1, ppath, sizeof(ppath));
		if ((r = kwac_segment_scan(ppath, log->seg - 1, &ps)) != 0)
			goto out;
		if (ps.torn || !ps.has_header) {
			r = kw_fail(KW_E_FORMAT, "audit segment %s is damaged (%s): run keywardend --verify-audit",
			    ppath, ps.why);
			goto out;
		}
		log->next_seq = ps.next_seq;
		memcpy(log->last, ps.last, sizeof(log->last));
	}
	if (s.sealed) {
		log->sealed.seq = s.next_seq - 1;
		memcpy(log->sealed.hash, s.last, KWAC_HASH_LEN);
		memcpy(log->sealed.mac, s.seal_mac, KWAC_MAC_LEN);
	}
	/* and it must not be short of the anchor. */
	if ((r = anchor_check(log, log->next_seq - 1, s.sealed ? s.last : NULL, reanchor)) != 0)
		goto out;
	if (s.torn) {
		if ((r = torn_aside(log, path, s.good_end, s.size, saved, sizeof(saved), sha)) != 0)
			goto out;
		if ((fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
		    ftruncate(fd, (off_t)s.good_end) != 0 || fsync(fd) != 0) {
			r = kw_fail(-errno, "cannot cut the torn tail off %s: %s", path, strerror(errno));
			goto out;
		}
		kwac_hex(sha, hex);
		*torn = json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "type", KWAC_TORN_EVENT,
		    "segment", strrchr(path, '/') + 1, "offset", (json_int_t)s.good_end,
		    "bytes", (json_int_t)(s.size - s.good_end), "saved_as", saved,
		    "sha256", hex, "reason", s.why[0] ? s.why : "a partial last line");
		if (*torn == NULL) {
			r = -ENOMEM;
			goto out;
		}
	}
	log->seg_size = s.good_end;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (r != 0) {
		json_decref(*torn);
		*torn = NULL;
		json_decref(*reanchor);
		*reanchor = NULL;
	}
	free(idx);
	return r;
}

int
audit_open(const struct audit_options *opt, struct audit_log **out)
{
	struct audit_log *log = NULL;
	pthread_condattr_t ca;
	json_t *torn = NULL, *pending = NULL, *reanchor = NULL;
	int r;

	if (opt == NULL || opt->dir == NULL || opt->seal == NULL)
		return kw_fail(-EINVAL, "the audit log needs a directory and a seal function");
	if ((log = calloc(1, sizeof(*log))) == NULL)
		return -ENOMEM;
	log->fd = -1;
	log->dirfd = -1;
	pthread_mutex_init(&log->mu, NULL);
	pthread_mutex_init(&log->ring_mu, NULL);
	pthread_mutex_init(&log->sub_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&log->wake, &ca);
	pthread_cond_init(&log->wd_wake, &ca);
	pthread_condattr_destroy(&ca);
	log->opt = *opt;
	if (log->opt.segment_bytes == 0)
		log->opt.segment_bytes = DEF_SEGMENT_BYTES;
	if (log->opt.segment_seconds == 0)
		log->opt.segment_seconds = DEF_SEGMENT_SECONDS;
	if (log->opt.timeout_ms == 0)
		log->opt.timeout_ms = DEF_TIMEOUT_MS;
	if (log->opt.linger_us == 0)
		log->opt.linger_us = LINGER_US_DEFAULT;
	if (log->opt.retry_ms == 0)
		log->opt.retry_ms = DEF_RETRY_MS;
	if (log->opt.ring_lines == 0)
		log->opt.ring_lines = DEF_RING;
	if (log->opt.anchor_seconds == 0)
		log->opt.anchor_seconds = DEF_ANCHOR_SECONDS;
	log->ring_n = log->opt.ring_lines;
	if ((log->dir = strdup(opt->dir)) == NULL ||
	    (log->ring = calloc(log->ring_n, sizeof(*log->ring))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	log->opt.dir = log->dir;
	if (mkdir(log->dir, 0700) != 0 && errno != EEXIST) {
		r = kw_fail(-errno, "cannot create the audit directory %s: %s", log->dir,
		    strerror(errno));
		goto out;
	}
	if ((log->dirfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = kw_fail(-errno, "cannot open the audit directory %s: %s", log->dir,
		    strerror(errno));
		goto out;
	}
	/* Only the writer may add, rename or remove segments: a directory
	 * others can write (or another user's) lets them plant a segment the
	 * writer would append to. */
	{
		struct stat st;

		if (fstat(log->dirfd, &st) != 0) {
			r = kw_fail(-errno, "cannot stat the audit directory %s: %s", log->dir,
			    strerror(errno));
			goto out;
		}
		if ((st.st_mode & 0022) != 0 || st.st_uid != geteuid()) {
			r = kw_fail(KW_E_CONFIG, "the audit directory %s must belong to uid %u and not be "
			    "writable by group or others (it is uid %u, mode %04o)", log->dir,
			    (unsigned)geteuid(), (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
			goto out;
		}
	}
	/* One writer per log.  A second (another daemon given this directory)
	 * would fork the chain, and could take the first one's batch in
	 * flight for a torn tail and cut it off.  The kernel drops the lock
	 * when the directory is closed or the process ends, kill -9 included;
	 * readers (the CLI, a backup) take none.  A verifier tests it for an
	 * instant, to learn whether a daemon is writing
	 * (kwac_dir_writer_active): wait such a test out, briefly. */
	for (int i = 0; (r = flock(log->dirfd, LOCK_EX | LOCK_NB)) != 0 &&
	    errno == EWOULDBLOCK && i < 20; i++)
		usleep(10 * 1000);
	if (r != 0) {
		r = errno == EWOULDBLOCK ?
		    kw_fail(KW_E_AUDIT, "the audit directory %s is being written by another "
		    "process (another keywardend?): a log has one writer", log->dir) :
		    kw_fail(-errno, "cannot lock the audit directory %s: %s", log->dir,
		    strerror(errno));
		goto out;
	}
	/* Before this start cuts anything: copies an earlier one left. */
	if ((r = torn_pending_list(log, &pending)) != 0)
		goto out;
	if ((r = recover_tail(log, &torn, &reanchor)) != 0)
		goto out;
	log->committed = log->next_seq - 1;
	log->st.committed_seq = log->committed;
	log->st.segment = log->seg;

	if ((r = pthread_create(&log->writer, NULL, writer_main, log)) != 0) {
		r = kw_fail(-r, "cannot start the audit writer thread");
		goto out;
	}
	log->writer_started = 1;
	pthread_setname_np(log->writer, "kw-audit");
	if ((r = pthread_create(&log->watchdog, NULL, watchdog_main, log)) != 0) {
		r = kw_fail(-r, "cannot start the audit watchdog thread");
		goto out;
	}
	log->wd_started = 1;
	pthread_setname_np(log->watchdog, "kw-audit-wd");
	if ((r = torn_sweep(log, pending)) != 0)
		goto out;
	if (torn != NULL) {
		char saved[1100], why[256];
		snprintf(saved, sizeof(saved), "%s",
		    json_string_value(json_object_get(torn, "saved_as")));
		r = audit_submit_wait(log, torn, NULL);   /* steals torn */
		torn = NULL;
		if (r != 0) {
			snprintf(why, sizeof(why), "%s", kw_errdetail(r));
			r = kw_fail(r, "cannot record the torn tail repair in %s: %s", log->dir, why);
			goto out;
		}
		if ((r = torn_recorded(log, saved)) != 0)
			goto out;
	}
	if (reanchor != NULL) {
		char why[256];
		r = audit_submit_wait(log, reanchor, NULL);   /* steals reanchor */
		reanchor = NULL;
		if (r != 0) {
			snprintf(why, sizeof(why), "%s", kw_errdetail(r));
			r = kw_fail(r, "cannot record in %s that the log was taken as it is against the token's anchor: %s",
			    log->dir, why);
			goto out;
		}
	}
	*out = log;
	log = NULL;
	r = 0;
out:
	json_decref(pending);
	json_decref(torn);
	json_decref(reanchor);
	audit_close(log);
	return r;
}

void
audit_close(struct audit_log *log)
{
	struct audit_sub *s;

	if (log == NULL)
		return;
	pthread_mutex_lock(&log->mu);
	log->stopping = 1;
	pthread_cond_signal(&log->wake);
	pthread_mutex_unlock(&log->mu);
	if (log->writer_started)
		pthread_join(log->writer, NULL);
	pthread_mutex_lock(&log->mu);
	log->wd_stop = 1;
	pthread_cond_signal(&log->wd_wake);
	pthread_mutex_unlock(&log->mu);
	if (log->wd_started)
		pthread_join(log->watchdog, NULL);
	/* A refused batch stays in the file until the next try cuts it
	 * (seg_open).  There is no next try after close, and the next open
	 * would take its bytes, sealed, for the log's end, though their
	 * requests were refused: cut them now (best effort: the disk may
	 * still be failing). */
	if (log->st.state == AUDIT_FAILING)
		(void)seg_open(log);
	(void)seg_trim(log);   /* if it fails, the last segment keeps its zeros: they are allowed */
	seg_close(log);
	if (log->dirfd >= 0)
		close(log->dirfd);
	for (unsigned i = 0; log->ring != NULL && i < log->ring_n; i++)
		free(log->ring[i].text);
	free(log->ring);
	while ((s = log->subs) != NULL) {
		log->subs = s->next;
		free(s);
	}
	pthread_cond_destroy(&log->wake);
	pthread_cond_destroy(&log->wd_wake);
	pthread_mutex_destroy(&log->mu);
	pthread_mutex_destroy(&log->ring_mu);
	pthread_mutex_destroy(&log->sub_mu);
	json_decref(log->late);
	free(log->buf);
	free(log->lines);
	free(log->dir);
	free(log);
}

/* ---- health --------------------------------------------------------------------- */

void
audit_status_get(struct audit_log *log, struct audit_status *st)
{
	pthread_mutex_lock(&log->mu);
	*st = log->st;
	st->queued = log->queued;
	pthread_mutex_unlock(&log->mu);
}

json_t *
audit_status_json(struct audit_log *log)
{
	struct audit_status st;
	char since[TIME_LEN] = "";

	audit_status_get(log, &st);
	if (st.failing_since_us != 0)
		time_str(since, sizeof(since), (int64_t)st.failing_since_us);
	return json_pack("{s:b,s:s,s:s?,s:s?,s:I,s:I,s:I,s:I,s:i,s:{s:I,s:b,s:s?}}",
	    "ok", st.state == AUDIT_OK, "state", st.state == AUDIT_OK ? "ok" : "failing",
	    "error", st.state == AUDIT_OK ? NULL : st.detail,
	    "failing_since", st.failing_since_us ? since : NULL,
	    "committed_seq", (json_int_t)st.committed_seq, "queued", (json_int_t)st.queued,
	    "refused", (json_int_t)st.refused, "timeouts", (json_int_t)st.timeouts,
	    "segment", (int)st.segment,
	    "anchor", "seq", (json_int_t)st.anchored_seq, "ok", st.anchor_error == 0,
	    "error", st.anchor_error == 0 ? NULL : st.anchor_detail);
}

uint64_t
audit_committed_seq(struct audit_log *log)
{
	return atomic_load(&log->committed);
}

/* ---- subscriptions ---------------------------------------------------------------- */

int
audit_subscribe(struct audit_log *log, audit_notify_fn fn, void *arg,
    struct audit_sub **out, uint64_t *committed)
{
	struct audit_sub *s;

	if (fn == NULL)
		return kw_fail(-EINVAL, "an audit subscription needs a function");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->fn = fn;
	s->arg = arg;
	pthread_mutex_lock(&log->sub_mu);
	s->next = log->subs;
	log->subs = s;
	if (committed != NULL)
		*committed = log->committed;
	pthread_mutex_unlock(&log->sub_mu);
	*out = s;
	return 0;
}

void
audit_unsubscribe(struct audit_log *log, struct audit_sub *sub)
{
	struct audit_sub **pp;

	if (log == NULL || sub == NULL)
		return;
	pthread_mutex_lock(&log->sub_mu);
	for (pp = &log->subs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == sub) {
			*pp = sub->next;
			break;
		}
	pthread_mutex_unlock(&log->sub_mu);
	free(sub);
}

/* ---- readers ---------------------------------------------------------------------- */

struct audit_reader {
	struct audit_log *log;
	char *dir;
	uint64_t next;           /* next seq wanted */
	unsigned seg;            /* open segment, 0: none */
	struct kwac_lines lr;
	char *copy;              /* a line handed out from the ring, or held */
	size_t copycap, copylen;
	uint64_t held;           /* seq of a line read from a file but not durable yet */
	uint64_t rewrites;       /* log->rewrites when the files were last read */
};

int
audit_reader_open(struct audit_log *log, const char *dir, uint64_t since_seq,
    struct audit_reader **out)
{
	struct audit_reader *rd;

	if (log == NULL && dir == NULL)
		return kw_fail(-EINVAL, "an audit reader needs a log or a directory");
	/* Seqs stop at 2^63 - 1 (kw_auditchain.h); since_seq + 1 must not wrap
	 * to 0, which would replay the whole log. */
	if (since_seq > (uint64_t)INT64_MAX)
		return kw_fail(-EINVAL, "no audit event comes after seq %" PRIu64 ": seqs end at %" PRId64,
		    since_seq, INT64_MAX);
	if ((rd = calloc(1, sizeof(*rd))) == NULL)
		return -ENOMEM;
	rd->log = log;
	rd->lr.fd = -1;
	rd->next = since_seq + 1;
	if (log != NULL)
		rd->rewrites = atomic_load_explicit(&log->rewrites, memory_order_acquire);
	if ((rd->dir = strdup(log != NULL ? log->dir : dir)) == NULL) {
		free(rd);
		return -ENOMEM;
	}
	*out = rd;
	return 0;
}

void
audit_reader_close(struct audit_reader *rd)
{
	if (rd == NULL)
		return;
	kwac_lines_close(&rd->lr);
	free(rd->copy);
	free(rd->dir);
	free(rd);
}

static int
reader_keep(struct audit_reader *rd, const char *text, size_t len)
{
	char *nb;

	if (len + 1 > rd->copycap) {
		if ((nb = realloc(rd->copy, len + 1)) == NULL)
			return -ENOMEM;
		rd->copy = nb;
		rd->copycap = len + 1;
	}
	memcpy(rd->copy, text, len);
	rd->copy[len] = '\0';
	rd->copylen = len;
	return 0;
}

/* Open the segment that holds rd->next: the last whose header's first_seq
 * is not after it. */
static int
reader_locate(struct audit_reader *rd)
{
	unsigned *idx = NULL, pick = 0;
	size_t n = 0;
	char path[1024], name[64];
	uint64_t first;
	int r;

	if ((r = kwac_segments_list(rd->dir, &idx, &n)) != 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		kwac_segment_name(idx[i], name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", rd->dir, name);
		if (kwac_segment_first_seq(path, &first) == 0 && first <= rd->next)
			pick = idx[i];
		if (pick != idx[i] && pick != 0)
			break;
	}
	if (pick == 0 && n > 0)
		pick = idx[0];
	free(idx);
	if (pick == 0)
		return 0;
	kwac_segment_name(pick, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", rd->dir, name);
	if ((r = kwac_lines_open(&rd->lr, path)) != 0)
		return r;
	rd->seg = pick;
	return 0;
}

/* The seq of an event line as this writer writes it ({"seq":N,"time":...}),
 * without parsing the JSON: 0, or -1 for any other line (seal, header,
 * anything unexpected), which then gets the full parse.  Readers only
 * stream lines; checking them is the verifier's work. */
static int
event_seq_fast(const char *text, size_t len, uint64_t *seq)
{
	static const char pre[] = "{\"seq\":";
	uint64_t v = 0;
	size_t i = sizeof(pre) - 1;

	if (len < i + 3 || memcmp(text, pre, i) != 0 || text[len - 1] != '}' ||
	    text[i] < '1' || text[i] > '9')
		return -1;
	for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(text[i] - '0');
	}
	if (i >= len || text[i] != ',')
		return -1;
	*seq = v;
	return 0;
}

int
audit_reader_next(struct audit_reader *rd, const char **line, size_t *len,
    uint64_t *seq)
{
	uint64_t committed = UINT64_MAX, off;
	struct ring_slot *s;
	struct kwac_line l;
	const char *text;
	char path[1024], name[64];
	size_t tlen;
	int r, found = 0;

	if (rd->log != NULL) {
		uint64_t rw;

		/* committed first: a retry cuts (and counts) before it
		 * commits, so a commit seen here has its cut seen below */
		committed = audit_committed_seq(rd->log);
		rw = atomic_load_explicit(&rd->log->rewrites, memory_order_acquire);
		if (rw != rd->rewrites) {
			/* what was read past the durable end may be a refused
			 * batch: read the files again */
			rd->rewrites = rw;
			rd->held = 0;
			kwac_lines_close(&rd->lr);
			rd->seg = 0;
		}
		if (rd->next > committed)
			return 0;
		/* Recent: from memory. */
		pthread_mutex_lock(&rd->log->ring_mu);
		if (rd->log->ring_first != 0 && rd->next >= rd->log->ring_first &&
		    rd->next <= rd->log->ring_last) {
			s = &rd->log->ring[rd->next % rd->log->ring_n];
			if (s->seq == rd->next && reader_keep(rd, s->text, s->len) == 0)
				found = 1;
		}
		pthread_mutex_unlock(&rd->log->ring_mu);
		if (found) {
			kwac_lines_close(&rd->lr);   /* relocate if we fall behind the ring */
			rd->seg = 0;
			rd->held = 0;
			*line = rd->copy;
			*len = rd->copylen;
			*seq = rd->next++;
			return 1;
		}
	}
	if (rd->held != 0) {
		if (rd->held > committed)
			return 0;
		*line = rd->copy;
		*len = rd->copylen;
		*seq = rd->held;
		rd->next = rd->held + 1;
		rd->held = 0;
		return 1;
	}
	if (rd->seg == 0) {
		if ((r = reader_locate(rd)) != 0)
			return r;
		if (rd->seg == 0)
			return 0;
	}
	for (;;) {
		r = kwac_lines_next(&rd->lr, &text, &tlen, &off);
		if (r < 0)
			return r;
		if (r == 0) {
			/* The end of this segment, or of what is written so far. */
			if (kwac_lines_partial(&rd->lr) > 0)
				return 0;
			kwac_segment_name(rd->seg + 1, name, sizeof(name));
			snprintf(path, sizeof(path), "%s/%s", rd->dir, name);
			if (access(path, F_OK) != 0)
				return 0;
			/* The writer finishes a segment before it creates the next,
			 * but it may have added to this one since our last read:
			 * read once more now that the next one exists. */
			r = kwac_lines_next(&rd->lr, &text, &tlen, &off);
			if (r < 0)
				return r;
			if (r == 0 && kwac_lines_partial(&rd->lr) > 0)
				return kw_fail(KW_E_FORMAT, "audit segment %u ends in a partial line "
				    "although segment %u exists: run keywardend --verify-audit",
				    rd->seg, rd->seg + 1);
			if (r == 0 && rd->lr.at_zero)
				return kw_fail(KW_E_FORMAT, "audit segment %u holds zero bytes "
				    "although segment %u exists: run keywardend --verify-audit",
				    rd->seg, rd->seg + 1);
		}
		if (r == 0) {
			kwac_lines_close(&rd->lr);
			if ((r = kwac_lines_open(&rd->lr, path)) != 0) {
				rd->seg = 0;
				return r;
			}
			rd->seg++;
			continue;
		}
		if (event_seq_fast(text, tlen, &l.seq) == 0)
			l.type = KWAC_LINE_EVENT;
		else if (kwac_line_parse(text, tlen, &l, NULL, 0) != 0)
			return kw_fail(KW_E_FORMAT, "a line of audit segment %u is malformed: run keywardend --verify-audit",
			    rd->seg);
		if (l.type != KWAC_LINE_EVENT || l.seq < rd->next)
			continue;
		if ((r = reader_keep(rd, text, tlen)) != 0)
			return r;
		if (l.seq > committed) {
			rd->held = l.seq;
			return 0;
		}
		*line = rd->copy;
		*len = rd->copylen;
		*seq = l.seq;
		rd->next = l.seq + 1;
		return 1;
	}
}

/* ---- verification ----------------------------------------------------------------- */

struct verify_arg {
	audit_seal_fn seal;
	void *arg;
};

static int
verify_check(void *arg, const uint8_t *data, size_t len, const uint8_t mac[KWAC_MAC_LEN])
{
	struct verify_arg *va = arg;
	uint8_t want[KWAC_MAC_LEN];
	int r;

	if ((r = va->seal(va->arg, data, len, want)) != 0)
		return r;
	r = kw_memeq_ct(want, mac, sizeof(want)) == 0 ? 0 : KW_E_AUTH;
	kw_wipe(want, sizeof(want));
	return r;
}

int
audit_verify_dir(const char *dir, audit_seal_fn seal, void *arg, int partial,
    struct kwac_result *res)
{
	struct verify_arg va = { seal, arg };
	struct kwac_verify_opts o;

	memset(&o, 0, sizeof(o));
	o.check = seal != NULL ? verify_check : NULL;
	o.arg = &va;
	o.partial = partial;
	o.live = KWAC_LIVE_AUTO;
	return kwac_verify_dir(dir, &o, res);
}
