#!/bin/sh
# Write the seeds of the auditline harness (tests/fuzz/corpus/auditline/,
# docs/fuzzing.md) into DIR, byte for byte:
#
#   tests/fuzz/gen-auditline-seeds.sh DIR
#   tests/fuzz/gen-auditline-seeds.sh --check CORPUS-DIR
#
# --check writes them into a scratch directory and compares them with
# CORPUS-DIR, which must hold exactly these files (make check does this,
# so that the corpus and its generator do not drift apart).  Needs only a
# POSIX shell, printf, head, tr and sha256sum.
#
# The log's format is in common/kw_auditchain.h: a line's hash is the
# SHA-256 of its bytes without the "\n", each event records the hash of
# the chained line before it (the header, or the previous event: seals
# are not chained), and a seal holds the hash of the event before it and
# an HMAC of "keywarden-audit-seal-v1 <seq> <hash>".  The harness's seal
# checker stands in for the token's key: it takes an HMAC as valid when
# it is the SHA-256 of that text, and so does this generator.
#
# seg-*: segments that verify, and one of each break the verifier names;
# line-*: single lines of each shape the fast reader knows, and near
# misses; anchor-*: anchors.  seg-zeros-inside-line is the header line
# with bytes that libFuzzer put in it (kept because it reached code the
# others did not); line-event-typed-seal and -segment are the inputs of a
# fixed bug (docs/fuzzing.md): all three are written here as they are.
set -eu

usage() {
	echo "usage: $0 DIR | --check CORPUS-DIR" >&2
	exit 2
}

check=
case ${1:-} in
--check) check=1; shift ;;
-*|'') usage ;;
esac
[ $# -eq 1 ] || usage

if [ -n "$check" ]; then
	corpus=$1
	out=$(mktemp -d "${TMPDIR:-/tmp}/kw-auditseeds.XXXXXX")
	trap 'rm -rf "$out"' EXIT
	trap 'exit 1' HUP INT TERM
else
	out=$1
	mkdir -p "$out"
fi

# ---- helpers -----------------------------------------------------------------

# rep TEXT N: TEXT N times.
rep() {
	i=0
	r=
	while [ "$i" -lt "$2" ]; do
		r=$r$1
		i=$((i + 1))
	done
	printf '%s' "$r"
}

ZERO=$(rep 0 64)

# sha TEXT: the lowercase hex SHA-256 of TEXT's bytes.
sha() {
	printf '%s' "$1" | sha256sum | cut -c1-64
}

# time N: the time of event N (N seconds and N microseconds past 10:15).
time_of() {
	printf '2026-11-02T10:15:%02d.%06dZ' "$1" "$1"
}

# header SEGMENT FIRST_SEQ PREV
header() {
	printf '{"type":"segment","segment":%s,"first_seq":%s,"prev":"%s","time":"2026-11-02T10:15:00.000000Z"}' \
	    "$1" "$2" "$3"
}

# event SEQ PREV: a request event as the daemon writes it.
event() {
	printf '{"seq":%s,"time":"%s","prev":"%s","type":"request","phase":"done","action":"secret.get","vault":"prod","name":"db/password","outcome":"allowed"}' \
	    "$1" "$(time_of "$1")" "$2"
}

# rotated SEQ PREV: an event of another shape (keys in another order, a
# number, escapes), which the fast reader leaves to jansson.
rotated() {
	printf '{"type":"vault.rotated","vault":"prod","seq":%s,"prev":"%s","time":"%s","n":1.5,"u":"\\u00e9\\n"}' \
	    "$1" "$2" "$(time_of "$1")"
}

# seal SEQ HASH [HMAC]: a seal of event SEQ, whose line hashes to HASH;
# its HMAC is the harness's stand-in unless given.
seal() {
	mac=${3:-$(sha "keywarden-audit-seal-v1 $1 $2")}
	printf '{"type":"seal","seq":%s,"hash":"%s","hmac":"%s"}' "$1" "$2" "$mac"
}

# put NAME LINE...: the file NAME, each LINE ended by "\n".
put() {
	f=$out/$1
	shift
	: >"$f"
	for l in "$@"; do
		printf '%s\n' "$l" >>"$f"
	done
}

# raw NAME TEXT: the file NAME holding TEXT as it is (no "\n" added).
raw() {
	printf '%s' "$2" >"$out/$1"
}

# zeros N: N zero bytes.
zeros() {
	head -c "$1" /dev/zero
}

# ---- the chain every seg-* seed is made from ---------------------------------

H=$(header 1 1 "$ZERO")
E1=$(event 1 "$(sha "$H")")
E2=$(event 2 "$(sha "$E1")")
E3=$(event 3 "$(sha "$E2")")
S3=$(seal 3 "$(sha "$E3")")
R4=$(rotated 4 "$(sha "$E3")")
S4=$(seal 4 "$(sha "$R4")")
S1=$(seal 1 "$(sha "$E1")")
S2=$(seal 2 "$(sha "$E2")")

# A whole log at rest: two batches, each ended by its seal.
put seg-sealed "$H" "$E1" "$E2" "$E3" "$S3" "$R4" "$S4"
{ printf '%s\n' "$H" "$E1" "$E2" "$E3" "$S3" "$R4" "$S4"; zeros 4096; } >"$out/seg-sealed-zeros-tail"
: >"$out/seg-empty"
put seg-header-only "$H"
zeros 300 >"$out/seg-only-zeros"

# One break each.
put seg-altered-line "$H" "$E1" "$(printf '%s' "$E2" | sed 's|db/password|db/passwore|')" \
    "$E3" "$S3" "$R4" "$S4"
put seg-missing-event "$H" "$E1" "$E3" "$S3" "$R4" "$S4"
put seg-no-header "$E1" "$E2" "$E3" "$S3" "$R4" "$S4"
put seg-header-in-middle "$H" "$E1" "$E2" "$H" "$E3" "$S3" "$R4" "$S4"
put seg-not-json "$H" "this is not json" "$E1"
put seg-seal-not-last "$H" "$E1" "$S1" "$E2" "$E3" "$S3" "$R4" "$S4"
put seg-seal-wrong-hash "$H" "$E1" "$E2" "$E3" "$(seal 3 "$(rep cd 32)")" "$R4" "$S4"
put seg-seal-wrong-mac "$H" "$E1" "$E2" "$E3" "$(seal 3 "$(sha "$E3")" "$(rep ab 32)")" "$R4" "$S4"

# Events after the last seal: a batch cut before its seal was written.
put seg-unsealed-tail "$H" "$E1" "$E2" "$S2" "$E3" "$(event 4 "$(sha "$E3")")"

# A crash inside a line: the line cut, and cut with the zeros of the
# preallocated tail after it.
TORN=$(printf '%s' "$E3" | head -c 40)
{ printf '%s\n' "$H" "$E1" "$E2" "$S2"; printf '%s' "$TORN"; } >"$out/seg-torn-line"
{ printf '%s\n' "$H" "$E1" "$E2" "$S2"; printf '%s' "$TORN"; zeros 100; } >"$out/seg-torn-before-zeros"
# Zeros between whole lines (a hole a crash left), then the log goes on.
{ printf '%s\n' "$H" "$E1" "$E2"; zeros 50; printf '%s\n' "$E3" "$S3" "$R4" "$S4"; } >"$out/seg-zeros-then-data"

# After a torn tail: the daemon's audit.torn_tail event chains on.
T2=$(printf '{"seq":2,"time":"%s","prev":"%s","type":"audit.torn_tail","offset":123,"bytes":45}' \
    "$(time_of 2)" "$(sha "$E1")")
T3=$(event 3 "$(sha "$T2")")
T4=$(event 4 "$(sha "$T3")")
put seg-torn-tail-event "$H" "$E1" "$S1" "$T2" "$T3" "$T4" "$(seal 4 "$(sha "$T4")")"

# Segment 2 whose header says it is the first (prev all zeros).
H2=$(header 2 1 "$ZERO")
E1b=$(event 1 "$(sha "$H2")")
put seg-header-segment-2 "$H2" "$E1b" "$(seal 1 "$(sha "$E1b")")"

# A segment whose header links to an earlier one (not in the directory).
H41=$(header 1 41 "$(rep ef 32)")
E41=$(event 41 "$(sha "$H41")")
E42=$(event 42 "$(sha "$E41")")
put seg-header-links-earlier "$H41" "$E41" "$(seal 41 "$(sha "$E41")")" "$E42" "$(seal 42 "$(sha "$E42")")"

# The header line of line-header with bytes libFuzzer inserted, as found.
{
	printf '{"type":"segment","segment":7,"first_seq":10'
	printf '\306\200\205\354\376\177\000\00000,"prev":"%s","time":"\252' "$(rep 12 32)"
	printf '2026-11-02T10:15:00.000000Z"}'
} >"$out/seg-zeros-inside-line"

# ---- single lines ------------------------------------------------------------------

raw line-event "$(event 5 "$(rep 34 32)")"
raw line-event-bare "$(printf '{"seq":5,"time":"%s","prev":"%s"}' "$(time_of 5)" "$(rep 34 32)")"
raw line-event-other-order "$(rotated 9 "$(rep 56 32)")"
raw line-header "$(header 7 1000 "$(rep 12 32)")"
raw line-header-segment-zero "$(header 0 1 "$ZERO")"
raw line-header-segment-huge "$(header 4294967296 1 "$ZERO")"
raw line-seal "$(seal 9 "$(rep 78 32)")"
raw line-seq-negative "$(seal -1 "$(rep 9a 32)" "$(rep 9a 32)")"
raw line-upper-hex "$(seal 1 "$(rep 9A 32)" "$(rep 9a 32)")"
raw line-long-type "$(printf '{"seq":3,"time":"%s","prev":"%s","type":"%s"}' "$(time_of 3)" "$(rep bc 32)" "$(rep t 100)")"
raw line-seq-max "$(printf '{"seq":9223372036854775807,"time":"t","prev":"%s","type":"x"}' "$(rep 9a 32)")"
raw line-seq-overflow "$(printf '{"seq":9223372036854775808,"time":"t","prev":"%s","type":"x"}' "$(rep 9a 32)")"
raw line-leading-zero "$(printf '{"seq":05,"time":"t","prev":"%s"}' "$(rep 9a 32)")"
raw line-duplicate-seq "$(printf '{"seq":5,"seq":6,"time":"t","prev":"%s"}' "$(rep 9a 32)")"
raw line-escaped-time "$(printf '{"seq":5,"time":"2026-11-02T10:15:00\\u002e000000Z","prev":"%s","type":"a\\"b"}' "$(rep 9a 32)")"
printf '{"seq":5,"time":"\303\251t\303\251","prev":"%s","type":"\377"}' "$(rep 9a 32)" >"$out/line-utf8-time"
raw line-not-object '[1,2,3]'
# An event's shape typed as a header or a seal (the fixed bug).
P=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
raw line-event-typed-segment "$(printf '{"seq":1,"time":"t","prev":"%s","type":"segment"}' "$P")"
raw line-event-typed-seal "$(printf '{"seq":7,"time":"t","prev":"%s","type":"seal","hash":"%s","hmac":"%s"}' "$P" "$P" "$P")"

# ---- anchors -----------------------------------------------------------------

# anchor SEQ HASH MAC
anchor() {
	printf 'keywarden-audit-anchor-v1 %s %s %s' "$1" "$2" "$3"
}
raw anchor-valid "$(anchor 6 "$(rep ab 32)" "$(rep cd 32)")"
raw anchor-seq-zero "$(anchor 0 "$(rep ab 32)" "$(rep cd 32)")"
raw anchor-seq-huge "$(anchor 99999999999999999999 "$(rep ab 32)" "$(rep cd 32)")"
raw anchor-short "$(anchor 6 "$(rep ab 31)" "$(rep cd 32)")"
raw anchor-upper "$(anchor 6 "$(rep AB 32)" "$(rep cd 32)")"

# ---- compare -------------------------------------------------------------------

[ -n "$check" ] || exit 0
rc=0
for f in "$out"/*; do
	n=${f##*/}
	if [ ! -f "$corpus/$n" ]; then
		echo "gen-auditline-seeds: $n is not in $corpus" >&2
		rc=1
	elif ! cmp -s "$f" "$corpus/$n"; then
		echo "gen-auditline-seeds: $corpus/$n differs from what this script makes" >&2
		rc=1
	fi
done
for f in "$corpus"/*; do
	n=${f##*/}
	case $n in
	line-*|anchor-*|seg-*)
		[ -f "$out/$n" ] || { echo "gen-auditline-seeds: $corpus/$n is not made here" >&2; rc=1; } ;;
	esac
done
exit $rc
