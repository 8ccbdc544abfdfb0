/*
 * kw_auditchain.h - the audit log's line format, its hash chain and its
 * seals, and the verifier shared by keywardend (--verify-audit), the audit
 * writer (to find where a log ends at open) and the keywarden CLI.
 *
 * Pure code: files and OpenSSL's SHA-256 only, no token, no daemon.  A
 * seal's HMAC is checked through a callback the caller supplies (the token,
 * or the daemon asked over its socket).
 *
 * The format (JSON Lines, one object per line, "\n" ends every line):
 *
 *   The log is a directory of segment files audit-0000000001.jsonl,
 *   audit-0000000002.jsonl, ... (10 decimal digits, so the names sort).
 *   Line 1 of a segment is its header:
 *     {"type":"segment","segment":K,"first_seq":N,"prev":"<hex>","time":"..."}
 *   where prev is the hash of the last chained line of segment K-1 (64 zeros
 *   for segment 1) and N the seq its first event will carry.
 *   Events:
 *     {"seq":N,"time":"<RFC 3339 UTC, microseconds>","prev":"<hex>", ...}
 *   where prev is the hash of the previous chained line (the previous event,
 *   or the segment header for a segment's first event).  seq goes up by one
 *   from 1 across all segments.
 *   Seals:
 *     {"type":"seal","seq":N,"hash":"<hex>","hmac":"<hex>"}
 *   where hash is the hash of event N, which must be the chained line just
 *   before the seal, and hmac = HMAC-SHA256(audit key, kwac_seal_input()).
 *   Seals are not chained themselves: they authenticate the chain up to N.
 *
 *   The hash of a line is SHA-256 over its exact bytes without the "\n";
 *   hex is lowercase.
 *
 * Errors: 0 or a negative code of kw_error.h; kw_fail() leaves a sentence.
 */
#ifndef KW_AUDITCHAIN_H
#define KW_AUDITCHAIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define KWAC_HASH_LEN 32
#define KWAC_HEX_LEN 64
#define KWAC_MAC_LEN 32
#define KWAC_LINE_MAX (1024 * 1024)     /* longest line accepted */
#define KWAC_SEGMENT_PREFIX "audit-"
#define KWAC_SEGMENT_SUFFIX ".jsonl"
#define KWAC_SEAL_CONTEXT "keywarden-audit-seal-v1"
#define KWAC_TORN_EVENT "audit.torn_tail" /* the event that records a torn tail */

/* ---- hashes and names ----------------------------------------------------- */

/* SHA-256 of a line (without its "\n"). */
void kwac_hash(const void *line, size_t len, uint8_t out[KWAC_HASH_LEN]);

/* Lowercase hex of a hash into out (65 bytes with the NUL). */
void kwac_hex(const uint8_t in[KWAC_HASH_LEN], char out[KWAC_HEX_LEN + 1]);

/* Parse 64 hex digits.  0 or KW_E_FORMAT. */
int kwac_unhex(const char *hex, uint8_t out[KWAC_HASH_LEN]);

/* The bytes a seal's HMAC covers: "keywarden-audit-seal-v1 <seq> <hex>".
 * Returns their length (< buflen), or -ENOBUFS.  buflen >= 128 suffices. */
int kwac_seal_input(uint64_t seq, const uint8_t hash[KWAC_HASH_LEN], char *buf,
    size_t buflen);

/* "audit-%010u.jsonl" into buf.  0 or -ENAMETOOLONG. */
int kwac_segment_name(unsigned index, char *buf, size_t buflen);

/* 0 and *index when name (a base name) is exactly a segment file name;
 * -EINVAL otherwise (a ".torn" copy, a temporary file, anything else). */
int kwac_segment_index(const char *name, unsigned *index);

/* The segment indexes present in dir, ascending.  *idx is malloc'd (free()
 * it); *n may be 0.  0 or -errno. */
int kwac_segments_list(const char *dir, unsigned **idx, size_t *n);

/* ---- one line --------------------------------------------------------------- */

enum kwac_line_type {
	KWAC_LINE_EVENT = 0,
	KWAC_LINE_HEADER,
	KWAC_LINE_SEAL,
};

struct kwac_line {
	enum kwac_line_type type;
	uint64_t seq;            /* event: its seq; seal: the sealed seq; header: first_seq */
	unsigned segment;        /* header: its index */
	uint8_t prev[KWAC_HASH_LEN];   /* event, header */
	uint8_t hash[KWAC_HASH_LEN];   /* seal: the hash of the sealed line */
	uint8_t mac[KWAC_MAC_LEN];     /* seal */
	char time[40];           /* event, header: as written, or "" */
	char event[64];          /* event: its "type" field, or "" */
};

/* Parse and check the shape of one line (without "\n").  0, or KW_E_FORMAT
 * with a sentence in why (what is missing or malformed). */
int kwac_line_parse(const char *line, size_t len, struct kwac_line *out,
    char *why, size_t whylen);

/* ---- reading lines from a file ---------------------------------------------- */

/* A buffered reader of whole lines that tolerates a file still being
 * appended to: a last line without "\n" is not returned until it ends.
 *
 * The writer fills the active segment ahead of its data with zero bytes
 * (audit.preallocate), so that a commit overwrites blocks the file already
 * has instead of growing it.  A zero byte is never part of a line: the
 * reader stops at the first one as it stops at the end of the file, and
 * reads from there again at the next call. */
struct kwac_lines {
	int fd;
	char *buf;
	size_t cap, start, end;
	uint64_t off;            /* file offset of buf[start] */
	int eof;
	int at_zero;             /* the last call stopped at a zero byte */
	int zero_held;           /* a zero byte ends what is in buf */
};

/* Open path read-only.  0 or -errno. */
int kwac_lines_open(struct kwac_lines *r, const char *path);

/* 1 and the next whole line (without "\n", valid until the next call) with
 * its offset in the file; 0 when no whole line is left now (the bytes of a
 * partial line, if any, are r->end - r->start from r->off); or a negative
 * code (-errno, KW_E_TOO_LARGE for a line over KWAC_LINE_MAX). */
int kwac_lines_next(struct kwac_lines *r, const char **line, size_t *len,
    uint64_t *off);

/* Bytes of an unfinished last line seen so far. */
size_t kwac_lines_partial(const struct kwac_lines *r);

/* After kwac_lines_next returned 0 at a zero byte (r->at_zero): read past
 * the run of zero bytes.  1 when data follows them (the reader goes on
 * from that byte, the partial line before the zeros dropped; *zero_from
 * and *data_at say where the run began and ended), 0 when only zeros are
 * left up to the end of the file (nothing moves), or -errno. */
int kwac_lines_skip_zeros(struct kwac_lines *r, uint64_t *zero_from, uint64_t *data_at);

/* The file's length without its trailing zero bytes: where its data ends. */
int kwac_data_end(int fd, uint64_t *end);

/* Close.  Accepts a reader whose open failed, or one already closed. */
void kwac_lines_close(struct kwac_lines *r);

/* ---- where a segment ends (for the writer at open) ------------------------- */

struct kwac_scan {
	unsigned segment;        /* from the header */
	uint64_t first_seq;      /* from the header */
	int has_header;          /* a whole, valid header line was found */
	uint8_t header_prev[KWAC_HASH_LEN]; /* its link to the previous segment */
	char header_time[40];
	uint64_t good_end;       /* offset after the last header or seal line that
	                            links: a batch ends with its seal, so events
	                            after it were never acknowledged */
	uint64_t size;           /* where the data ends: the file's size without
	                            the zero bytes that end it */
	uint64_t next_seq;       /* seq of the next event */
	uint8_t last[KWAC_HASH_LEN]; /* hash of the last chained line before good_end */
	unsigned long lines;     /* whole lines before good_end */
	int sealed;              /* the line before good_end is a seal (of seq
	                            next_seq - 1 over last), not the header */
	uint8_t seal_mac[KWAC_MAC_LEN]; /* that seal's HMAC, not checked here */
	int torn;                /* bytes after good_end: a partial line, a line that
	                            does not link, or events without their seal */
	char why[480];           /* what was wrong at good_end, when torn */
};

/* Read segment file path (index expected, or 0 for any) and find where its
 * chain of whole, linking, sealed lines ends.  Seals are checked for shape
 * and for matching the line before them, not for their HMAC: a writer that
 * goes on from the seal at good_end must check that one itself (out->sealed,
 * out->seal_mac).  0 or -errno. */
int kwac_segment_scan(const char *path, unsigned index, struct kwac_scan *out);

/* ---- the anchor ---------------------------------------------------------------- *
 *
 * The chain and the seals show any change to what the log holds, but not a
 * cut: a log whose last segments were removed, or truncated back to an
 * earlier seal, or replaced by an older copy, still verifies whole.  So
 * the writer also keeps, outside the audit directory, a copy of a recent
 * seal: the anchor, written into the token (keywardend: a private data
 * object labelled by kwac_anchor_label) at every segment roll-over, every
 * audit.anchor_seconds and at close.  A log that ends before the anchor's
 * seq, or holds another event there, was cut or replaced.  The anchor
 * carries the seal's HMAC, so a value the audit key did not make is
 * refused like a forged seal. */

#define KWAC_ANCHOR_LABEL_PREFIX "keywarden/audit-anchor/"
#define KWAC_ANCHOR_LABEL_MAX 64
#define KWAC_ANCHOR_CONTEXT "keywarden-audit-anchor-v1"
#define KWAC_ANCHOR_TEXT_MAX 256

struct kwac_anchor {
	uint64_t seq;                  /* a sealed event */
	uint8_t hash[KWAC_HASH_LEN];   /* the hash of that event's line */
	uint8_t mac[KWAC_MAC_LEN];     /* its seal's HMAC (of kwac_seal_input) */
};

/* The token label of the anchor of the log in dir (as configured, trailing
 * slashes aside): KWAC_ANCHOR_LABEL_PREFIX and the first 16 hex digits of
 * the SHA-256 of the path.  One token may keep the logs of several
 * daemons (tests, a staging instance); each directory has its own anchor.
 * An attacker would have to change the configured audit.dir to escape it.
 * buf holds KWAC_ANCHOR_LABEL_MAX bytes. */
void kwac_anchor_label(const char *dir, char buf[KWAC_ANCHOR_LABEL_MAX]);

/* "keywarden-audit-anchor-v1 <seq> <hash hex> <mac hex>" into buf.  Returns
 * its length (< len), or -ENOBUFS. */
int kwac_anchor_format(const struct kwac_anchor *a, char *buf, size_t len);

/* The reverse.  0, or KW_E_FORMAT (with a sentence) for anything else. */
int kwac_anchor_parse(const char *s, size_t len, struct kwac_anchor *out);

/* The first_seq of the segment file at path, read from its header line.
 * 0; KW_E_FORMAT when it does not start with a whole header; -errno. */
int kwac_segment_first_seq(const char *path, uint64_t *first);

/* The hash of the line of event seq in the log in dir.  0; KW_E_NOT_FOUND
 * when no segment holds it (before the first one kept, or after the end);
 * KW_E_FORMAT when the segment that should hold it does not; -errno. */
int kwac_event_hash(const char *dir, uint64_t seq, uint8_t out[KWAC_HASH_LEN]);

/* ---- verification ------------------------------------------------------------ */

/* Check a seal: 0 when mac is HMAC(audit key, data), KW_E_AUTH when it is
 * not, another negative code when it cannot tell (token unreachable). */
typedef int (*kwac_mac_check_fn)(void *arg, const uint8_t *data, size_t len,
    const uint8_t mac[KWAC_MAC_LEN]);

struct kwac_verify_opts {
	kwac_mac_check_fn check;  /* NULL: seals checked for shape and hash only */
	void *arg;
	int partial;              /* the oldest segments may have been removed by
	                             retention: start at whatever comes first */
	int live;                 /* KWAC_LIVE_NO, _YES or _AUTO, below */
	/* The token's anchor, or NULL: the log must hold its event, with its
	 * hash (else KWAC_P_CUT, or KWAC_P_ANCHOR), and with check set its HMAC
	 * must be the audit key's (else KWAC_P_ANCHOR).  Not checkable when
	 * partial and the segment that held it is gone. */
	const struct kwac_anchor *anchor;
};

/* Is a daemon writing the log being verified?
 *
 * YES: a partial last line of the last segment is a write under way, and
 * events after the last seal are a batch whose seal is being written: not
 * breaks (counted in res->pending_bytes and res->unsealed).
 * NO: the log is at rest.  The writer ends every commit with a seal, and a
 * daemon that crashed mid-commit cuts the unfinished batch off at its next
 * start and records it (audit.torn_tail); so both are breaks (KWAC_P_TORN,
 * KWAC_P_UNSEALED): the log was cut or forged after its last seal, or the
 * daemon has not been started since it crashed.
 * AUTO: YES when some process holds the writer's lock on the directory of
 * the (last) segment (kwac_dir_writer_active), else NO.  The mode used is
 * in res->live. */
#define KWAC_LIVE_NO 0
#define KWAC_LIVE_YES 1
#define KWAC_LIVE_AUTO (-1)

/* 1 when a writer (keywardend) holds its lock on dir, 0 when none does (or
 * dir cannot be opened: then it cannot be verified either).  The lock is
 * only tested: a shared flock(2) taken and dropped at once, which a daemon
 * starting at that instant waits out (audit_open retries). */
int kwac_dir_writer_active(const char *dir);

enum kwac_problem {
	KWAC_OK = 0,
	KWAC_P_IO,               /* a file could not be read */
	KWAC_P_EMPTY,            /* no segment at all */
	KWAC_P_JSON,             /* not a JSON object, or a field is malformed */
	KWAC_P_HEADER,           /* header missing, misplaced, or naming another segment */
	KWAC_P_SEGMENT_MISSING,  /* an index is skipped */
	KWAC_P_SEQ,              /* seq does not go up by one */
	KWAC_P_LINK,             /* a line's hash is not the prev its successor records */
	KWAC_P_SEAL,             /* a seal does not match the line it seals */
	KWAC_P_SEAL_MAC,         /* a seal's HMAC is wrong */
	KWAC_P_SEAL_UNCHECKED,   /* the HMAC check itself failed (token unreachable) */
	KWAC_P_TORN,             /* the last line is cut short */
	KWAC_P_UNSEALED,         /* at rest, events after the last seal */
	KWAC_P_CUT,              /* the log ends before what its writer made durable */
	KWAC_P_ANCHOR,           /* the log holds another event where the anchor
	                            is, or the anchor is not the audit key's */
};

struct kwac_result {
	int ok;                  /* 1: no break found */
	enum kwac_problem problem;
	char file[512];          /* the first break: file, */
	unsigned long line;      /* line number (from 1; 0 = the file as a whole), */
	uint64_t seq;            /* seq there (or the one expected; 0 if none), */
	char what[400];          /* and what is wrong */

	unsigned segments;       /* segments read */
	unsigned first_segment, last_segment;
	uint64_t lines, events, seals;
	uint64_t first_seq, last_seq;
	int seals_checked;       /* HMACs were checked by the callback */
	uint64_t sealed_seq;     /* the last seq a seal covers (0: none) */
	uint64_t unsealed;       /* events after the last seal */
	int live;                /* verified as a log being written (KWAC_LIVE_YES) */
	uint64_t torn_events;    /* audit.torn_tail events met */
	uint64_t torn_seq;       /* seq of the last of them */
	uint64_t pending_bytes;  /* live: bytes of a last line still being written */
	char last_hash[KWAC_HEX_LEN + 1];
	uint64_t anchor_seq;     /* the anchor given (0: none) */
	int anchor_checked;      /* its event was found in the log, with its hash */
};

/* Verify the segments of dir, in order.  The result is always filled in.
 * Returns 0 when the chain is whole (res->ok), KW_E_AUTH when a break was
 * found (res says where), or -errno when dir cannot be listed. */
int kwac_verify_dir(const char *dir, const struct kwac_verify_opts *opt,
    struct kwac_result *res);

/* The same for an explicit list of segment files, in chain order; their base
 * names give their indexes. */
int kwac_verify_files(const char *const *paths, size_t n,
    const struct kwac_verify_opts *opt, struct kwac_result *res);

/* A readable report (a few lines, "\n"-terminated) into buf.  Returns the
 * length it needed (like snprintf). */
int kwac_result_format(const struct kwac_result *res, char *buf, size_t len);

/* The result as JSON for `--json`.  New reference, or NULL on ENOMEM. */
json_t *kwac_result_json(const struct kwac_result *res);

/* A short stable name of a problem: "seq", "link", "seal-mac", ... */
const char *kwac_problem_name(enum kwac_problem p);

#endif
