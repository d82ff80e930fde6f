// SPDX-License-Identifier: MIT
/*
 * bench_pageheap.c - time the page heap's alloc and free (a benchmark, never
 * a test).
 *
 * Two workloads, each run several times on a fresh arena, reporting the
 * median:
 *   - pairs: allocate one page and free it at once, the common case;
 *   - mixed: random lengths of 1..300 pages and frees of random live spans,
 *     about 1000 spans live, so the lists and the tree both fill up.
 * Pages are never touched: only the heap's metadata costs time and memory.
 *
 * Usage: bench_pageheap [DIR]   (default /dev/shm, else $TMPDIR or /tmp)
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "pageheap.h"
#include "segment.h"

#define RUNS 5
#define PAIRS 2000000u
#define MIXED_OPS 1000000u
#define MIXED_LIVE 1000u
#define ARENA_BYTES (4ull << 30)

typedef struct result {
	double ns_per_op;  /* wall clock */
	double cpu_per_op; /* this thread's CPU time: steadier on a busy machine */
	uint32_t grown, inuse, peak_inuse;
} result_t;

typedef struct timer {
	uint64_t wall, cpu;
} timer_t_;

static uint64_t cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static timer_t_ timer_start(void)
{
	return (timer_t_){ heapd_now_ns(), cpu_now() };
}

/* Fill r's times per op from a timer started before ops operations. */
static void timer_stop(timer_t_ t, double ops, result_t *r)
{
	r->ns_per_op = (double)(heapd_now_ns() - t.wall) / ops;
	r->cpu_per_op = (double)(cpu_now() - t.cpu) / ops;
}

static char arena_path[PATH_MAX];

static void open_heap(segment_t *seg, pageheap_t *h)
{
	segment_params_t params = { .arena_bytes = ARENA_BYTES, .max_clients = 16 };
	char err[256];
	int rc = segment_open(arena_path, &params, SEGMENT_CREATE | SEGMENT_RESET, seg, NULL, err,
	                      sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "bench_pageheap: %s\n", err);
		exit(1);
	}
	rc = pageheap_init(h, seg);
	if (rc < 0) {
		fprintf(stderr, "bench_pageheap: pageheap_init: %s\n", strerror(-rc));
		exit(1);
	}
}

static void close_heap(segment_t *seg, pageheap_t *h)
{
	pageheap_destroy(h);
	segment_close(seg);
	segment_remove(arena_path);
}

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void die_alloc(int rc)
{
	fprintf(stderr, "bench_pageheap: alloc failed: %s\n", strerror(-rc));
	exit(1);
}

static result_t run_pairs(void)
{
	segment_t seg;
	pageheap_t h;
	uint32_t span;
	open_heap(&seg, &h);
	int rc = pageheap_alloc(&h, 1, 1, &span); /* grow outside the timing */
	if (rc < 0)
		die_alloc(rc);
	pageheap_free(&h, span);

	timer_t_ t = timer_start();
	for (uint32_t i = 0; i < PAIRS; i++) {
		if ((rc = pageheap_alloc(&h, 1, 1, &span)) < 0)
			die_alloc(rc);
		pageheap_free(&h, span);
	}
	result_t r = { .grown = seg.hdr->npages_grown, .inuse = (uint32_t)seg.hdr->pages_inuse,
	               .peak_inuse = 1 };
	timer_stop(t, 2.0 * PAIRS, &r);
	close_heap(&seg, &h);
	return r;
}

static result_t run_mixed(uint64_t seed)
{
	segment_t seg;
	pageheap_t h;
	uint32_t live[MIXED_LIVE], nlive = 0, peak = 0;
	open_heap(&seg, &h);

	timer_t_ t = timer_start();
	for (uint32_t i = 0; i < MIXED_OPS; i++) {
		uint64_t r = rng(&seed);
		if (nlive == 0 || (nlive < MIXED_LIVE && (r & 1))) {
			int rc = pageheap_alloc(&h, 1 + (uint32_t)((r >> 1) % 300), 1, &live[nlive]);
			if (rc < 0)
				die_alloc(rc);
			nlive++;
			if (seg.hdr->pages_inuse > peak)
				peak = (uint32_t)seg.hdr->pages_inuse;
		} else {
			uint32_t k = (uint32_t)((r >> 1) % nlive);
			pageheap_free(&h, live[k]);
			live[k] = live[--nlive];
		}
	}
	result_t res = { .grown = seg.hdr->npages_grown, .inuse = (uint32_t)seg.hdr->pages_inuse,
	                 .peak_inuse = peak };
	timer_stop(t, MIXED_OPS, &res);
	close_heap(&seg, &h);
	return res;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median wall and CPU time per op over RUNS results; the heap sizes of the last run. */
static result_t median(const result_t *r)
{
	double wall[RUNS], cpu[RUNS];
	for (int i = 0; i < RUNS; i++) {
		wall[i] = r[i].ns_per_op;
		cpu[i] = r[i].cpu_per_op;
	}
	qsort(wall, RUNS, sizeof(double), cmp_double);
	qsort(cpu, RUNS, sizeof(double), cmp_double);
	result_t m = r[RUNS - 1];
	m.ns_per_op = wall[RUNS / 2];
	m.cpu_per_op = cpu[RUNS / 2];
	return m;
}

static double mib(uint32_t pages)
{
	return (double)pages * HEAPD_PAGE_SIZE / (1024.0 * 1024.0);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : NULL;
	if (!dir)
		dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(arena_path, sizeof(arena_path), "%s/bench-pageheap-%d", dir, (int)getpid());

	result_t pairs[RUNS], mixed[RUNS];
	for (int i = 0; i < RUNS; i++) {
		pairs[i] = run_pairs();
		mixed[i] = run_mixed(42 + (uint64_t)i);
	}
	result_t p = median(pairs), m = median(mixed);

	printf("page heap, median of %d runs; ns per operation, wall clock (thread CPU time)\n", RUNS);
	printf("  1-page alloc+free pairs: %7.1f ns/op (cpu %.1f), %u pairs\n", p.ns_per_op,
	       p.cpu_per_op, PAIRS);
	printf("    heap: %u pages grown (%.0f MiB), %u in use at the end\n", p.grown, mib(p.grown),
	       p.inuse);
	printf("  mixed 1..300 pages, random frees, <= %u live: %7.1f ns/op (cpu %.1f), %u ops\n",
	       MIXED_LIVE, m.ns_per_op, m.cpu_per_op, MIXED_OPS);
	printf("    heap: %u pages grown (%.0f MiB), %u in use at the end, peak %u (%.0f%% of grown)\n",
	       m.grown, mib(m.grown), m.inuse, m.peak_inuse, 100.0 * m.peak_inuse / m.grown);
	return 0;
}
