/*
 * fuzz_auditline.c - the audit log's reader (common/kw_auditchain.h) on
 * arbitrary bytes: what a log directory holds after a crash, a disk error,
 * or someone's edit.
 *
 * Each line of the input goes through kwac_line_parse, and is compared
 * with a plain JSON reading of it (the parser reads the writer's own line
 * shapes without jansson: both readings must agree wherever the line is
 * valid JSON); each line, and the whole input, through kwac_anchor_parse,
 * whose accepted texts must format back to themselves.  Then the input
 * becomes the segment file audit-0000000001.jsonl of a private directory,
 * and is read by the line reader that tolerates zero bytes and a torn tail
 * (every line it returns must be the bytes at its offset), scanned as the
 * writer scans at open, and verified at rest, live, partial, with a seal
 * checker, and against anchors made from what verified: the answers must
 * be consistent with each other.
 *
 * The seal checker stands in for the token: a seal's HMAC is taken as
 * valid when it is the SHA-256 of the seal input, so that seeds can hold
 * sealed segments.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "tests/fuzz/fuzz.h"

KWF_CORPUS("auditline");

/* ---- one line ------------------------------------------------------------ */

/* The fields of a line as jansson reads it, by the rules of
 * kw_auditchain.h.  0 and *out, KW_E_FORMAT, or 1 when the line is not
 * JSON jansson takes (no opinion then). */
static int
ref_seq(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return -1;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

static void
ref_str(json_t *o, const char *key, char *buf, size_t len)
{
	const char *s = json_string_value(json_object_get(o, key));

	snprintf(buf, len, "%s", s != NULL ? s : "");
}

static int
ref_parse(const char *line, size_t len, struct kwac_line *out)
{
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	const char *type;
	uint64_t v;
	int r = KW_E_FORMAT;

	if (o == NULL)
		return 1;
	memset(out, 0, sizeof(*out));
	if (!json_is_object(o))
		goto out;
	type = json_string_value(json_object_get(o, "type"));
	if (type != NULL && strcmp(type, "segment") == 0) {
		out->type = KWAC_LINE_HEADER;
		if (ref_seq(o, "segment", &v) != 0 || v == 0 || v > 0xffffffffULL ||
		    ref_seq(o, "first_seq", &out->seq) != 0 || out->seq == 0 ||
		    kwac_unhex(json_string_value(json_object_get(o, "prev")), out->prev) != 0)
			goto out;
		out->segment = (unsigned)v;
		ref_str(o, "time", out->time, sizeof(out->time));
	} else if (type != NULL && strcmp(type, "seal") == 0) {
		out->type = KWAC_LINE_SEAL;
		if (ref_seq(o, "seq", &out->seq) != 0 || out->seq == 0 ||
		    kwac_unhex(json_string_value(json_object_get(o, "hash")), out->hash) != 0 ||
		    kwac_unhex(json_string_value(json_object_get(o, "hmac")), out->mac) != 0)
			goto out;
	} else {
		out->type = KWAC_LINE_EVENT;
		if (ref_seq(o, "seq", &out->seq) != 0 || out->seq == 0 ||
		    kwac_unhex(json_string_value(json_object_get(o, "prev")), out->prev) != 0)
			goto out;
		ref_str(o, "time", out->time, sizeof(out->time));
		if (out->time[0] == '\0')
			goto out;
		ref_str(o, "type", out->event, sizeof(out->event));
	}
	r = 0;
out:
	json_decref(o);
	return r;
}

static int
line_eq(const struct kwac_line *a, const struct kwac_line *b)
{
	return a->type == b->type && a->seq == b->seq && a->segment == b->segment &&
	    memcmp(a->prev, b->prev, sizeof(a->prev)) == 0 &&
	    memcmp(a->hash, b->hash, sizeof(a->hash)) == 0 &&
	    memcmp(a->mac, b->mac, sizeof(a->mac)) == 0 &&
	    strcmp(a->time, b->time) == 0 && strcmp(a->event, b->event) == 0;
}

static void
check_line(const uint8_t *data, size_t len)
{
	char *line = kwf_dup_exact(data, len);
	struct kwac_line l, l2, ref;
	char why[200];
	int r, r2, rr;

	memset(why, 0, sizeof(why));
	r = kwac_line_parse(line, len, &l, why, sizeof(why));
	kwf_check(r == 0 || r == KW_E_FORMAT);
	if (r == 0) {
		kwf_check(l.type == KWAC_LINE_EVENT || l.type == KWAC_LINE_HEADER ||
		    l.type == KWAC_LINE_SEAL);
		kwf_check(l.seq >= 1 && l.seq <= INT64_MAX);
		kwf_check(l.type != KWAC_LINE_HEADER || l.segment >= 1);
		kwf_check(memchr(l.time, '\0', sizeof(l.time)) != NULL);
		kwf_check(memchr(l.event, '\0', sizeof(l.event)) != NULL);
		kwf_check(l.type != KWAC_LINE_EVENT || l.time[0] != '\0');
	} else
		kwf_check(why[0] != '\0');
	/* Without room for a sentence: the same answer. */
	r2 = kwac_line_parse(line, len, &l2, NULL, 0);
	kwf_check(r2 == r);
	if (r == 0)
		kwf_check(line_eq(&l, &l2));
	rr = ref_parse(line, len, &ref);
	if (rr != 1) {
		kwf_check(rr == r);
		if (r == 0)
			kwf_check(line_eq(&l, &ref));
	}
	free(line);
}

/* An anchor the parser takes is the one kwac_anchor_format writes. */
static void
check_anchor(const uint8_t *data, size_t len)
{
	char *s = kwf_dup_exact(data, len), text[KWAC_ANCHOR_TEXT_MAX];
	struct kwac_anchor a, b;
	int r = kwac_anchor_parse(s, len, &a), n;

	kwf_check(r == 0 || r == KW_E_FORMAT);
	if (r == 0) {
		kwf_check(a.seq >= 1 && a.seq <= INT64_MAX);
		n = kwac_anchor_format(&a, text, sizeof(text));
		kwf_check(n > 0 && (size_t)n == len && memcmp(text, s, len) == 0);
		kwf_check(kwac_anchor_parse(text, (size_t)n, &b) == 0);
		kwf_check(b.seq == a.seq && memcmp(b.hash, a.hash, sizeof(a.hash)) == 0 &&
		    memcmp(b.mac, a.mac, sizeof(a.mac)) == 0);
	}
	free(s);
}

/* ---- the file ------------------------------------------------------------ */

/* The line reader over the file must return exactly the input's lines,
 * at their offsets, stopping at zero bytes and at a partial last line. */
static void
check_reader(const char *path, const uint8_t *data, size_t size)
{
	struct kwac_lines lr;
	const char *text;
	size_t len;
	uint64_t off, pos = 0, zfrom, dat, z;
	int r;

	kwf_check(kwac_lines_open(&lr, path) == 0);
	for (;;) {
		r = kwac_lines_next(&lr, &text, &len, &off);
		kwf_check(r == 0 || r == 1 || r == KW_E_TOO_LARGE);
		if (r == KW_E_TOO_LARGE)
			break;
		if (r == 1) {
			kwf_check(off == pos && off + len < size);
			kwf_check(memcmp(text, data + off, len) == 0);
			kwf_check(data[off + len] == '\n');
			kwf_check(memchr(text, '\n', len) == NULL && memchr(text, '\0', len) == NULL);
			pos = off + len + 1;
			continue;
		}
		kwf_check(pos + kwac_lines_partial(&lr) <= size);
		kwf_check(memchr(data + pos, '\n', kwac_lines_partial(&lr)) == NULL);
		if (!lr.at_zero) {
			/* The end of the file: what is left is a partial line. */
			kwf_check(pos + kwac_lines_partial(&lr) == size);
			kwf_check(memchr(data + pos, '\0', size - pos) == NULL);
			/* And it stays there. */
			kwf_check(kwac_lines_next(&lr, &text, &len, &off) == 0);
			break;
		}
		/* A zero byte at pos + partial: read past the run of them. */
		z = pos + kwac_lines_partial(&lr);
		kwf_check(z < size && data[z] == '\0');
		zfrom = dat = 0;
		r = kwac_lines_skip_zeros(&lr, &zfrom, &dat);
		kwf_check(r == 0 || r == 1);
		if (r == 0) {
			/* Only zeros are left, and the reader stays where it was. */
			for (uint64_t i = z; i < size; i++)
				kwf_check(data[i] == '\0');
			kwf_check(pos + kwac_lines_partial(&lr) == z);
			break;
		}
		kwf_check(zfrom == z);
		kwf_check(zfrom < dat && dat < size && data[dat] != '\0');
		for (uint64_t i = zfrom; i < dat; i++)
			kwf_check(data[i] == '\0');
		pos = dat;
	}
	{
		/* kwac_data_end: the size without the zeros that end it. */
		uint64_t end = 1, want = size;

		while (want > 0 && data[want - 1] == '\0')
			want--;
		kwf_check(kwac_data_end(lr.fd, &end) == 0 && end == want);
	}
	kwac_lines_close(&lr);
	kwac_lines_close(&lr);      /* a closed reader may be closed again */
}

/* A seal is right when its "HMAC" is the SHA-256 of the seal input. */
static int
mac_check(void *arg, const uint8_t *in, size_t len, const uint8_t mac[KWAC_MAC_LEN])
{
	uint8_t h[KWAC_HASH_LEN];

	(void)arg;
	kwac_hash(in, len, h);
	return memcmp(h, mac, KWAC_MAC_LEN) == 0 ? 0 : KW_E_AUTH;
}

static int
verify(const char *path, int live, int partial, int check, const struct kwac_anchor *anchor,
    struct kwac_result *res)
{
	struct kwac_verify_opts o;
	const char *paths[1] = { path };
	char report[2048];
	json_t *j;
	int r;

	memset(&o, 0, sizeof(o));
	o.live = live;
	o.partial = partial;
	o.check = check ? mac_check : NULL;
	o.anchor = anchor;
	r = kwac_verify_files(paths, 1, &o, res);
	kwf_check(r == 0 || r == KW_E_AUTH);
	kwf_check((r == 0) == (res->ok == 1));
	kwf_check(r == 0 || res->problem != KWAC_OK);
	kwf_check(strcmp(kwac_problem_name(res->problem), "") != 0);
	kwf_check(res->events <= res->lines);
	kwf_check(res->seals <= res->events);
	kwf_check(memchr(res->what, '\0', sizeof(res->what)) != NULL);
	kwf_check(kwac_result_format(res, report, sizeof(report)) > 0);
	kwf_check(kwac_result_format(res, report, 16) > 0);
	if ((j = kwac_result_json(res)) == NULL)
		kwf_fail("out of memory");
	json_decref(j);
	return r;
}

static void
check_file(const char *dir, const char *path, const uint8_t *data, size_t size)
{
	struct kwac_result rest, live, part, sealed, ra;
	struct kwac_scan s, s0;
	struct kwac_anchor a;
	uint8_t h[KWAC_HASH_LEN];
	uint64_t first;

	check_reader(path, data, size);

	/* Where the writer would go on from. */
	kwf_check(kwac_segment_scan(path, 1, &s) == 0);
	kwf_check(s.good_end <= s.size && s.size <= size);
	kwf_check(s.torn == (s.good_end < s.size));
	kwf_check(!s.has_header || (s.segment == 1 && s.first_seq >= 1));
	kwf_check(s.lines == 0 || s.has_header);
	kwf_check(s.good_end == 0 || data[s.good_end - 1] == '\n');
	kwf_check(kwac_segment_scan(path, 0, &s0) == 0);
	kwf_check(s0.good_end >= s.good_end);

	verify(path, KWAC_LIVE_NO, 0, 0, NULL, &rest);
	verify(path, KWAC_LIVE_YES, 0, 0, NULL, &live);
	verify(path, KWAC_LIVE_NO, 1, 0, NULL, &part);
	verify(path, KWAC_LIVE_NO, 0, 1, NULL, &sealed);
	/* Each relaxation accepts what the strict reading accepts. */
	if (rest.ok) {
		kwf_check(live.ok && part.ok);
		kwf_check(live.events == rest.events && part.events == rest.events);
	}
	if (sealed.ok)
		kwf_check(rest.ok && sealed.seals_checked == (sealed.seals > 0));
	{
		struct kwac_result d;
		struct kwac_verify_opts o;

		memset(&o, 0, sizeof(o));
		kwf_check(kwac_verify_dir(dir, &o, &d) == (rest.ok ? 0 : KW_E_AUTH));
		kwf_check(d.ok == rest.ok && d.problem == rest.problem && d.line == rest.line);
	}
	if (!rest.ok)
		return;

	/* A log at rest that verifies ends where the writer would go on. */
	kwf_check(!s.torn);
	if (rest.lines > 0) {
		kwf_check(s.has_header);
		kwf_check(kwac_segment_first_seq(path, &first) == 0 && first == s.first_seq);
	}
	if (rest.events == 0)
		return;
	kwf_check(s.sealed && s.next_seq == rest.last_seq + 1);
	kwf_check(rest.unsealed == 0 && rest.sealed_seq == rest.last_seq);

	/* Its events are found by seq, the last with the hash verified. */
	kwf_check(kwac_event_hash(dir, rest.first_seq, h) == 0);
	kwf_check(kwac_event_hash(dir, rest.last_seq, h) == 0);
	kwf_check(kwac_unhex(rest.last_hash, a.hash) == 0);
	kwf_check(memcmp(h, a.hash, KWAC_HASH_LEN) == 0);
	kwf_check(kwac_event_hash(dir, rest.last_seq + 1, h) == KW_E_NOT_FOUND);

	/* An anchor at its last event holds; one past it, or with another
	 * hash, is a cut or a rewrite. */
	a.seq = rest.last_seq;
	memset(a.mac, 0, sizeof(a.mac));
	kwf_check(verify(path, KWAC_LIVE_NO, 0, 0, &a, &ra) == 0 && ra.anchor_checked);
	a.seq = rest.last_seq + 1;
	kwf_check(verify(path, KWAC_LIVE_NO, 0, 0, &a, &ra) == KW_E_AUTH &&
	    ra.problem == KWAC_P_CUT);
	a.seq = rest.last_seq;
	a.hash[0] ^= 1;
	kwf_check(verify(path, KWAC_LIVE_NO, 0, 0, &a, &ra) == KW_E_AUTH &&
	    ra.problem == KWAC_P_ANCHOR);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dir[512], path[600];
	size_t start = 0;

	if (dir[0] == '\0') {
		const char *t = kwf_tmpdir();

		if (t == NULL)
			kwf_fail("no temporary directory");
		snprintf(dir, sizeof(dir), "%s/log", t);
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			kwf_fail("cannot make the log directory");
		snprintf(path, sizeof(path), "%s/audit-0000000001.jsonl", dir);
	}

	check_anchor(data, size);
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		if (i < size || i > start) {
			check_line(data + start, i - start);
			check_anchor(data + start, i - start);
		}
		start = i + 1;
	}

	if (kwf_write_file(path, data, size, 0600) != 0)
		kwf_fail("cannot write the segment file");
	check_file(dir, path, data, size);
	return 0;
}
