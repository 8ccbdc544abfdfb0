/*
 * hist.c - a log-bucketed latency histogram (see bench.h).
 *
 * A value below 64 has a bucket of its own; above, a value whose highest
 * set bit is m falls into row m - 5, and within the row into one of 64
 * equal sub-buckets by its next six bits.
 */
#include "config.h"

#include "bench/bench.h"

static unsigned
hist_index(uint64_t v)
{
	unsigned m;

	if (v < BENCH_HIST_SUB)
		return (unsigned)v;
	m = 63u - (unsigned)__builtin_clzll(v);
	return (m - 5) * BENCH_HIST_SUB + (unsigned)((v >> (m - 6)) & (BENCH_HIST_SUB - 1));
}

/* The middle of bucket i. */
static uint64_t
hist_value(unsigned i)
{
	unsigned m;
	uint64_t lo;

	if (i < BENCH_HIST_SUB)
		return i;
	m = i / BENCH_HIST_SUB + 5;
	lo = (uint64_t)(BENCH_HIST_SUB + i % BENCH_HIST_SUB) << (m - 6);
	return lo + ((1ull << (m - 6)) >> 1);
}

void
bench_hist_add(struct bench_hist *h, uint64_t ns)
{
	h->n[hist_index(ns)]++;
	h->count++;
	if (ns > h->max)
		h->max = ns;
}

void
bench_hist_merge(struct bench_hist *into, const struct bench_hist *from)
{
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
		into->n[i] += from->n[i];
	into->count += from->count;
	if (from->max > into->max)
		into->max = from->max;
}

uint64_t
bench_hist_quantile(const struct bench_hist *h, double q)
{
	uint64_t rank, seen = 0, v;

	if (h->count == 0)
		return 0;
	if (q >= 1.0)
		return h->max;
	rank = (uint64_t)(q * (double)h->count);
	if (rank >= h->count)
		rank = h->count - 1;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen > rank) {
			v = hist_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}
