/*
 * audit.h - the audit log: every request's event, durable before the reply,
 * hash-chained, sealed by the token's audit key, streamed to auditors.
 *
 * The format and the verifier are in common/kw_auditchain.h.
 *
 * Threads.  One writer thread owns the segment file.  Any thread submits an
 * event (a jansson object built by the daemon); the writer takes everything
 * queued as one batch, gives each event its "seq", "time" and "prev", appends
 * the batch and one seal line with a single write, makes it durable with one
 * fdatasync (group commit), and then calls each submitter's completion, from
 * the writer thread.  A watchdog thread fails any submission still not
 * durable after the timeout (the disk or the token is stuck): its
 * completion gets -ETIMEDOUT at once, and nothing hangs.  If that event is
 * written after all (the disk was slow, not dead), an "audit.late" event
 * lists its seq, so the log never claims a request was served when its
 * caller was refused.
 *
 * Fail closed.  When the log cannot be written (EACCES, ENOSPC, EIO, EFBIG,
 * a seal the token refuses, ...), the batch's completions get KW_E_AUDIT, the
 * file is cut back to its last durable byte and the events are dropped (no
 * seq is spent: no hole, no duplicate).  The writer keeps retrying every
 * retry_ms; the first batch that gets through starts with an
 * "audit.recovered" event that counts what was refused meanwhile.
 * Any non-zero completion status means: not recorded, answer 503, release
 * nothing.
 *
 * At open, a torn tail of the last segment (a partial last line, or lines
 * that do not link) is copied aside into "<segment>.torn-<offset>", fsync'd,
 * then cut off; an "audit.torn_tail" event records it, and the chain goes on
 * from the last whole event.  The copy is named "....unrecorded" until that
 * event is durable: a start that stopped in between (crash, failed write)
 * leaves it so, and the next open records it then ("recorded_late": true),
 * or only renames it if the event is there.  A break that a valid seal follows is not a
 * torn write (those bytes had been durable): open refuses (KW_E_FORMAT) and
 * changes nothing.
 *
 * Before it goes on from the end of the chain, open checks with the seal
 * function that the token's audit key made the seal there (or, when the
 * last segment holds none, that its header links to the previous segment's
 * end and the key made the seal there).  A seal the key did not make is
 * refused (KW_E_AUTH), changing nothing: a crash never leaves one, so the
 * log was forged or the token is another; going on would seal the forgery.
 * Only the end of the log is read at open; older segments and seals are
 * checked by the verifier (kwac_verify_dir).
 *
 * Errors: 0 or a negative code of kw_error.h, with kw_fail() detail.  This
 * module does not log (except the optional syslog copy of each event).
 */
#ifndef KW_AUDIT_H
#define KW_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct audit_log;
struct audit_reader;
struct audit_sub;
struct kwac_anchor;

/* HMAC-SHA256 of data by the token's audit key (p11_audit_hmac). */
typedef int (*audit_seal_fn)(void *arg, const uint8_t *data, size_t len,
    uint8_t mac[32]);

struct audit_options {
	const char *dir;             /* the audit directory (created 0700 if missing) */
	uint64_t segment_bytes;      /* roll over past this size; 0 = 64 MiB */
	uint64_t segment_seconds;    /* roll over past this age; 0 = one day */
	unsigned timeout_ms;         /* fail a submission not durable by then; 0 = 2000 */
	unsigned retry_ms;           /* retry a failing disk this often; 0 = 200 */
	unsigned ring_lines;         /* recent lines kept in memory; 0 = 4096 */
	int syslog;                  /* copy each event to syslog(LOG_AUTHPRIV|LOG_INFO) */
	int linger_us;               /* under load, wait this long for more events
	                                before a commit; 0 = 200, -1 = never */
	int preallocate;             /* fill the active segment with zeros ahead of
	                                its data; 0 = yes, -1 = no */
	audit_seal_fn seal;          /* required */
	void *seal_arg;
	/* Optional: called on the writer thread before the first and after
	 * the last done callback of one batch, so that done can hold its
	 * work and hand it on once per batch (one wake-up of a reader's
	 * thread instead of one per event). */
	void (*batch_begin)(void *arg);
	void (*batch_end)(void *arg);
	void *batch_arg;
	/* Optional, for fault injection: called instead of fdatasync(2) to
	 * make each commit durable; 0, or -1 with errno set. */
	int (*datasync)(int fd);
	/* Optional: the anchor, a copy of a recent seal kept outside the
	 * directory (kw_auditchain.h), so that a log cut or replaced while no
	 * daemon ran is refused at open.  anchor_get gives 0 and *a,
	 * KW_E_NOT_FOUND when none was ever written, or another code (open
	 * then fails: the log's end cannot be vouched for).  anchor_put is
	 * called from the writer thread with the last durable seal, after a
	 * segment roll-over, every anchor_seconds while events come, and at
	 * close; a failure is reported in the status and retried. */
	int (*anchor_get)(void *arg, struct kwac_anchor *a);
	int (*anchor_put)(void *arg, const struct kwac_anchor *a);
	void *anchor_arg;
	unsigned anchor_seconds;     /* 0 = 60 */
	/* A log that does not hold the anchor's event (cut, rewritten, or
	 * replaced) is refused at open (KW_E_AUTH) unless this is set: then
	 * the log is taken as it is, an "audit.reanchored" event records what
	 * the anchor said, and the anchor moves to the log's end. */
	int reanchor;
};

/* Open the log: find the last segment, check its tail (see above), start the
 * writer and the watchdog.  A torn tail is recorded before this returns.
 * *out is written only on success. */
int audit_open(const struct audit_options *opt, struct audit_log **out);

/* Write what is queued, stop the threads, close.  Accepts NULL.  (If the
 * writer is blocked in the kernel, on a hung file system, this waits for
 * it.) */
void audit_close(struct audit_log *log);

/* ---- submitting events ------------------------------------------------------ */

/* status: 0 when the event is durable (seq is its number), or a negative
 * code (KW_E_AUDIT: the log cannot be written; -ETIMEDOUT: not durable
 * within timeout_ms).  Called exactly once, from the writer or the watchdog
 * thread; it must not block and must not call audit_close(). */
typedef void (*audit_done_fn)(void *arg, int status, uint64_t seq);

/* Queue ev (an object; a reference is stolen, also on failure).  The writer
 * sets "seq", "time" and "prev" (any given are replaced).  ev must not hold
 * a secret: top-level keys "value", "pin", "secret", "dek", "key_material"
 * and "plaintext" are refused (-EINVAL), as is a "type" of "segment" or
 * "seal".  Returns 0 (done will be called) or a negative code (done will
 * not be called: -EINVAL, KW_E_TOO_LARGE over about 1 MiB, -ENOMEM,
 * -ESHUTDOWN when closing). */
int audit_submit(struct audit_log *log, json_t *ev, audit_done_fn done, void *arg);

/* audit_submit_wait for a printed event (as audit_submit_body). */
int audit_submit_body_wait(struct audit_log *log, char *body, size_t bodylen, uint64_t *seq);

/* 0 when ev's top-level fields obey the rules above, else -EINVAL. */
int audit_check_fields(const json_t *ev);

/* The same for an event already printed as one JSON object, body (bodylen
 * bytes, malloc'd; taken, also on failure), by a caller that writes no
 * "seq", "time" or "prev" and checks the rules above itself (the request
 * events of audit_glue.c, which are built from known fields). */
int audit_submit_body(struct audit_log *log, char *body, size_t bodylen, audit_done_fn done,
    void *arg);

/* Submit and wait until durable (intent events of writes, administrative
 * events).  Returns 0 and *seq (may be NULL), KW_E_AUDIT, -ETIMEDOUT, or a
 * code of audit_submit.  Never waits much longer than timeout_ms. */
int audit_submit_wait(struct audit_log *log, json_t *ev, uint64_t *seq);

/* ---- health ----------------------------------------------------------------- */

enum audit_state {
	AUDIT_OK = 0,
	AUDIT_FAILING,          /* the last write failed; retrying */
};

struct audit_status {
	enum audit_state state;
	int error;               /* the last write error (negative), 0 if none */
	char detail[256];        /* what failed, where; "" when OK */
	uint64_t failing_since_us;  /* CLOCK_REALTIME, 0 when OK */
	uint64_t committed_seq;  /* last durable seq */
	uint64_t queued;         /* waiting for the writer */
	uint64_t refused;        /* events refused (write failure or timeout) since open */
	uint64_t timeouts;       /* of which by timeout */
	uint64_t batches;        /* group commits done */
	uint64_t events;         /* events written since open */
	unsigned segment;        /* current segment index */
	uint64_t anchored_seq;   /* the anchor's seq (0: none written yet) */
	int anchor_error;        /* the last anchor write's error, 0 if it worked */
	char anchor_detail[256]; /* what failed; "" when it worked */
};

void audit_status_get(struct audit_log *log, struct audit_status *st);

/* {"ok":bool,"state":"ok"|"failing","committed_seq":N,"segment":N,...} for
 * /v1/health.  New reference or NULL. */
json_t *audit_status_json(struct audit_log *log);

/* ---- streaming --------------------------------------------------------------- *
 *
 * For GET /v1/audit/stream?since=SEQ, one way that never lets a slow client
 * slow the writer and never loses or repeats a line:
 *
 *   audit_subscribe(log, notify, loop_event, &sub, NULL);   once, at start
 *   per client: audit_reader_open(log, NULL, since, &rd)
 *   notify(): event_active(loop_event) -- nothing else
 *   on the loop, for each client whose output buffer is below its limit:
 *       while (audit_reader_next(rd, &line, &len, &seq) == 1) push line
 *
 * The reader serves recent lines from memory and older ones from the files
 * (a long backlog is disk I/O: read it on a worker if it must not run on the
 * loop).  It returns only durable events, in seq order, each once.
 */

struct audit_line {
	uint64_t seq;
	const char *text;        /* the event line, without "\n" */
	size_t len;
};

/* Called from the writer thread after each durable batch with its event
 * lines (valid only during the call, in seq order).  It must be quick: copy
 * what it needs and signal its own thread (event_active()); it may call
 * audit_committed_seq() but no other audit_ function.  A subscriber that
 * falls behind never slows the writer if it keeps only "there is more up to
 * seq N" and reads the lines with an audit_reader at its own pace. */
typedef void (*audit_notify_fn)(void *arg, const struct audit_line *lines, size_t n);

/* Subscribe.  *committed gets the last durable seq at that instant: the
 * first notification carries committed + 1, so reading (since, committed]
 * with a reader and then the notifications gives every event once.
 * *out is freed by audit_unsubscribe. */
int audit_subscribe(struct audit_log *log, audit_notify_fn fn, void *arg,
    struct audit_sub **out, uint64_t *committed);

/* After this returns, fn is not called again.  Accepts NULL. */
void audit_unsubscribe(struct audit_log *log, struct audit_sub *sub);

/* A reader of the events after since_seq (at most INT64_MAX, the largest
 * seq; -EINVAL above), in order: from the in-memory ring
 * of recent lines when log is given and they are still there, else from the
 * segment files of dir (log's directory when log is given).  With a log,
 * it returns only durable events.  Seals and headers are skipped. */
int audit_reader_open(struct audit_log *log, const char *dir, uint64_t since_seq,
    struct audit_reader **out);

/* 1 and the next event line (without "\n"; valid until the next call) with
 * its seq; 0 when there is none now (call again later for more); or a
 * negative code (KW_E_FORMAT: a line of the files is malformed). */
int audit_reader_next(struct audit_reader *rd, const char **line, size_t *len,
    uint64_t *seq);

void audit_reader_close(struct audit_reader *rd);

/* The last durable seq.  Lock-free. */
uint64_t audit_committed_seq(struct audit_log *log);

/* ---- verification ----------------------------------------------------------- */

struct kwac_result;

/* For keywardend --verify-audit: verify dir with seals checked by the same
 * function that makes them (p11_audit_hmac through its callback), compared
 * in constant time.  partial: the oldest segments may have been removed.
 * Live or at rest as the writer's lock on dir says (KWAC_LIVE_AUTO).
 * Returns as kwac_verify_dir(); print res with kwac_result_format(). */
int audit_verify_dir(const char *dir, audit_seal_fn seal, void *arg, int partial,
    struct kwac_result *res);

#endif
