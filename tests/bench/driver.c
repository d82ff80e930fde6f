// SPDX-License-Identifier: MIT
/*
 * driver.c - main() of every benchmark driver (bench_glibc, bench_heapd, ...).
 *
 *   bench_<allocator> [-r reps] [-t ms] [-v] workload...
 *
 * Workloads: w1 to w10, sock (the raw socket-pair round trip, which does
 * not depend on the allocator), or all (w1..w10). A workload the allocator
 * cannot run (3 and 4 need objects shared between processes, 6 a refill)
 * is skipped with a note. bench_roots, a driver of its own, runs heapd's
 * named roots: r1, r2 and r3 (wl_roots.c).
 *
 *   bench_<allocator> --w10-child fd index
 *
 * is one of workload 10's new programs (WL_PROC_CHILD, wl_proc_child),
 * which the driver starts itself.
 *
 * Each figure is the median of `reps` repetitions; every repetition runs in
 * freshly forked workers (workloads.h). Workload 10 runs once: its 1000
 * programs make its medians. Results go to stdout, one per line:
 *
 *   <allocator> TAB <key> TAB <value>
 *
 * Times are in ns; memory figures in bytes or as ratios (see the keys below).
 * tests/bench/report.c turns the lines of every driver into the table.
 */
#include "workloads.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REPS 31
#define MAX_KEYS 8
#define WORKER_TIMEOUT_S 60

typedef struct workload workload_t;

struct workload {
	const char *group;          /* command-line name */
	const char *key[MAX_KEYS];  /* result keys, NULL-terminated */
	unsigned needs;             /* BENCH_* flags the allocator must have */
	int fresh;                  /* a new heap (teardown + setup) for each repetition */
	int max_reps;               /* 0: as many as asked */
	size_t param;               /* object size (workload 1), threads (workload 8) */
	int (*run)(const workload_t *w, double *out); /* one repetition: out[i] for key[i], NaN if absent */
};

static wl_sync_t *sync_block;
static wl_ring_t *rings;
static int verbose;

/* (latest end - earliest start) / total ops over the slots that ran. */
static double ns_per_op(const wl_sync_t *s)
{
	uint64_t start = UINT64_MAX, end = 0, ops = 0;
	for (int i = 0; i < WL_MAX_WORKERS; i++) {
		const wl_slot_t *w = &s->w[i];
		if (!w->ops)
			continue;
		start = w->start < start ? w->start : start;
		end = w->end > end ? w->end : end;
		ops += w->ops;
	}
	return ops ? (double)(end - start) / (double)ops : -1;
}

static int run_batch(const workload_t *w, double *out)
{
	size_t size = w->param;
	void *args[1] = { &size };
	if (wl_spawn(sync_block, 1, wl_batch, args, WORKER_TIMEOUT_S) < 0)
		return -1;
	out[0] = ns_per_op(sync_block);
	if (sync_block->w[0].nvalues > 0)
		out[1] = sync_block->w[0].value[0] * 1e6 / (double)sync_block->w[0].ops;
	return 0;
}

static int run_larson(const workload_t *w, double *out)
{
	(void)w;
	if (wl_spawn(sync_block, 1, wl_larson, NULL, WORKER_TIMEOUT_S) < 0)
		return -1;
	out[0] = ns_per_op(sync_block);
	return 0;
}

static int run_larson_procs(const workload_t *w, double *out)
{
	(void)w;
	if (wl_spawn(sync_block, 2, wl_larson, NULL, WORKER_TIMEOUT_S) < 0)
		return -1;
	out[0] = ns_per_op(sync_block);
	return 0;
}

static int run_larson_threads(const workload_t *w, double *out)
{
	int nthreads = 2;
	void *args[1] = { &nthreads };
	(void)w;
	if (wl_spawn(sync_block, 1, wl_larson, args, WORKER_TIMEOUT_S) < 0)
		return -1;
	out[0] = ns_per_op(sync_block);
	return 0;
}

/* Workload 8: param threads of one worker share the slots. */
static int run_larson_shared(const workload_t *w, double *out)
{
	int nthreads = (int)w->param;
	void *args[1] = { &nthreads };
	if (wl_spawn(sync_block, 1, wl_larson_shared, args, WORKER_TIMEOUT_S) < 0)
		return -1;
	out[0] = ns_per_op(sync_block);
	return 0;
}

/*
 * npairs producers and consumers, whose results are in slots 2i and 2i+1:
 * the time from the first producer's start to the last consumer's end, per
 * object that made it through.
 */
static int pairs_figure(int npairs, double *out)
{
	uint64_t start = UINT64_MAX, end = 0, objects = 0;
	for (int i = 0; i < npairs; i++) {
		const wl_slot_t *p = &sync_block->w[2 * i], *c = &sync_block->w[2 * i + 1];
		if (c->ops != p->ops) {
			bench_note("pair %d: %llu objects produced, %llu consumed", i,
				   (unsigned long long)p->ops, (unsigned long long)c->ops);
			return -1;
		}
		start = p->start < start ? p->start : start;
		end = c->end > end ? c->end : end;
		objects += c->ops;
	}
	out[0] = objects ? (double)(end - start) / (double)objects : -1;
	return 0;
}

/* npairs producer/consumer pairs of processes: workers 2i and 2i+1 share ring i. */
static int run_pairs(int npairs, double *out)
{
	void *args[WL_MAX_WORKERS];

	memset(rings, 0, (size_t)npairs * sizeof(wl_ring_t));
	for (int i = 0; i < npairs; i++)
		args[2 * i] = args[2 * i + 1] = &rings[i];
	if (wl_spawn(sync_block, 2 * npairs, wl_pair, args, WORKER_TIMEOUT_S) < 0)
		return -1;
	return pairs_figure(npairs, out);
}

static int run_pc1(const workload_t *w, double *out)
{
	(void)w;
	return run_pairs(1, out);
}

static int run_pc2(const workload_t *w, double *out)
{
	(void)w;
	return run_pairs(2, out);
}

/* Workload 9: a producer and a consumer thread in one worker, slots 0 and 1. */
static int run_handoff(const workload_t *w, double *out)
{
	(void)w;
	if (wl_spawn(sync_block, 1, wl_handoff, NULL, WORKER_TIMEOUT_S) < 0)
		return -1;
	return pairs_figure(1, out);
}

/* Workload 10: ns per program, then the first allocation's p50 and p99 from main() and from the spawn. */
static int run_procs(const workload_t *w, double *out)
{
	(void)w;
	if (wl_spawn(sync_block, 1, wl_procs, NULL, WORKER_TIMEOUT_S) < 0)
		return -1;
	out[0] = ns_per_op(sync_block);
	for (int i = 0; i < 4; i++)
		out[1 + i] = sync_block->w[0].value[i];
	return 0;
}

static int run_latency(wl_fn fn, double *out)
{
	if (wl_spawn(sync_block, 1, fn, NULL, WORKER_TIMEOUT_S) < 0)
		return -1;
	for (int i = 0; i < 3; i++)
		out[i] = sync_block->w[0].value[i];
	return 0;
}

static int run_refill(const workload_t *w, double *out)
{
	(void)w;
	return run_latency(wl_refill, out);
}

static int run_socketpair(const workload_t *w, double *out)
{
	(void)w;
	return run_latency(wl_socketpair, out);
}

#ifdef BENCH_ROOTS_DRIVER
static int run_roots(wl_fn fn, int nvalues, double *out)
{
	if (wl_spawn(sync_block, 1, fn, NULL, WORKER_TIMEOUT_S * 2) < 0)
		return -1;
	for (int i = 0; i < nvalues; i++)
		out[i] = sync_block->w[0].value[i];
	return 0;
}

static int run_root_get(const workload_t *w, double *out)
{
	(void)w;
	if (run_roots(wl_root_get, 0, out) < 0)
		return -1;
	out[0] = ns_per_op(sync_block);
	out[1] = sync_block->w[0].value[0];
	return 0;
}

static int run_root_rtt(const workload_t *w, double *out)
{
	(void)w;
	return run_roots(wl_root_rtt, 8, out);
}

static int run_root_wake(const workload_t *w, double *out)
{
	(void)w;
	return run_roots(wl_root_wake, 2, out);
}
#endif

static int run_memory(const workload_t *w, double *out)
{
	const double *v = sync_block->w[0].value;
	(void)w;
	if (wl_spawn(sync_block, 1, wl_memory, NULL, WORKER_TIMEOUT_S) < 0)
		return -1;
	out[0] = v[1] / v[0];
	out[1] = v[3] / v[2];
	for (int i = 0; i < 4; i++)
		out[2 + i] = v[i];
	return 0;
}

/*
 * Keys: wN is ns per operation (ns per object for w3, w4, w9; w8_tT for T
 * threads; ns per program for w10); w1_S_refills_per_mop is refill requests
 * per million operations; *_p50, *_p99 are ns (w10_first_* from the new
 * program's main() to its first allocation's return, w10_spawn_* from just
 * before its spawn); w7a and w7b are resident / live, with the bytes in
 * *_live and *_res; r1_get_mops is millions of lookups per second,
 * r1_get_ns ns per lookup.
 */
static const workload_t workloads[] = {
	{ "w1", { "w1_16", "w1_16_refills_per_mop" }, 0, 0, 0, 16, run_batch },
	{ "w1", { "w1_64", "w1_64_refills_per_mop" }, 0, 0, 0, 64, run_batch },
	{ "w1", { "w1_256", "w1_256_refills_per_mop" }, 0, 0, 0, 256, run_batch },
	{ "w1", { "w1_1024", "w1_1024_refills_per_mop" }, 0, 0, 0, 1024, run_batch },
	{ "w1", { "w1_4096", "w1_4096_refills_per_mop" }, 0, 0, 0, 4096, run_batch },
	{ "w2", { "w2" }, 0, 0, 0, 0, run_larson },
	{ "w3", { "w3" }, BENCH_SHARED, 0, 0, 0, run_pc1 },
	{ "w4", { "w4" }, BENCH_SHARED, 0, 0, 0, run_pc2 },
	{ "w5", { "w5p" }, 0, 0, 0, 0, run_larson_procs },
	{ "w5", { "w5t" }, 0, 0, 0, 0, run_larson_threads },
	{ "w6", { "w6_p50", "w6_p99", "w6_samples" }, BENCH_REFILL, 0, 0, 0, run_refill },
	{ "w7", { "w7a", "w7b", "w7a_live", "w7a_res", "w7b_live", "w7b_res" }, 0, 1, 3, 0, run_memory },
	{ "w8", { "w8_t2" }, 0, 0, 0, 2, run_larson_shared },
	{ "w8", { "w8_t4" }, 0, 0, 0, 4, run_larson_shared },
	{ "w8", { "w8_t8" }, 0, 0, 0, 8, run_larson_shared },
	{ "w9", { "w9" }, 0, 0, 0, 0, run_handoff },
	{ "w10", { "w10", "w10_first_p50", "w10_first_p99", "w10_spawn_p50", "w10_spawn_p99" }, 0, 0, 1, 0,
	  run_procs },
#ifdef BENCH_ROOTS_DRIVER /* bench_roots only: heapd's named roots (wl_roots.c) */
	{ "r1", { "r1_get_ns", "r1_get_mops" }, 0, 0, 0, 0, run_root_get },
	{ "r2", { "r2_set_p50", "r2_set_p99", "r2_cas_p50", "r2_cas_p99", "r2_sock_p50", "r2_sock_p99",
	          "r2_spin_p50", "r2_spin_p99" }, 0, 0, 0, 0, run_root_rtt },
	{ "r3", { "r3_wait_p50", "r3_wait_p99" }, 0, 0, 0, 0, run_root_wake },
#endif
	{ "sock", { "sock_p50", "sock_p99", "sock_samples" }, 0, 0, 0, 0, run_socketpair },
};

#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Run every repetition of w and print the median of each key. 0 or -1. */
static int measure(const workload_t *w, int reps)
{
	double v[MAX_KEYS][MAX_REPS];
	int n[MAX_KEYS] = { 0 }, failed = 0, noted = 0;

	if (w->max_reps && reps > w->max_reps)
		reps = w->max_reps;
	for (int r = 0; r < reps; r++) {
		double out[MAX_KEYS];
		for (int k = 0; k < MAX_KEYS; k++)
			out[k] = -1;
		if (w->fresh) {
			bench_alloc.teardown();
			int rc = bench_alloc.setup();
			if (rc < 0) {
				bench_note("setup: %s", strerror(-rc));
				return -1;
			}
		}
		if (w->run(w, out) < 0) {
			failed++;
			continue;
		}
		if (!noted && sync_block->w[0].note[0]) {
			bench_note("%s: %s", w->group, sync_block->w[0].note);
			noted = 1;
		}
		for (int k = 0; k < MAX_KEYS && w->key[k]; k++) {
			if (out[k] < 0)
				continue;
			v[k][n[k]++] = out[k];
			if (verbose)
				bench_note("%s rep %d: %g", w->key[k], r + 1, out[k]);
		}
	}
	for (int k = 0; k < MAX_KEYS && w->key[k]; k++) {
		if (!n[k])
			continue;
		qsort(v[k], (size_t)n[k], sizeof(double), cmp_double);
		double med = n[k] % 2 ? v[k][n[k] / 2] : (v[k][n[k] / 2 - 1] + v[k][n[k] / 2]) / 2;
		printf("%s\t%s\t%.6g\n", bench_alloc.name, w->key[k], med);
	}
	fflush(stdout);
	if (failed)
		bench_note("%s: %d of %d repetitions failed", w->key[0], failed, reps);
	return failed == reps ? -1 : 0;
}

static void on_signal(int sig)
{
	/* Do not leave a daemon or a segment behind. */
	bench_alloc.teardown();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_%s [-r reps] [-t ms] [-v] workload...\n"
		   "workloads: w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 sock all (bench_roots: r1 r2 r3)\n",
		bench_alloc.name);
}

int main(int argc, char **argv)
{
	uint64_t t_main = bench_now(); /* first: a new program of workload 10 times from here */
	int reps = 5, ms = 200, opt, rc = 0;

	if (argc > 1 && strcmp(argv[1], WL_PROC_CHILD) == 0)
		return wl_proc_child(t_main, argc - 2, argv + 2);

	while ((opt = getopt(argc, argv, "r:t:vh")) != -1) {
		switch (opt) {
		case 'r':
			reps = atoi(optarg);
			break;
		case 't':
			ms = atoi(optarg);
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (reps < 1 || reps > MAX_REPS || ms < 1 || optind == argc) {
		usage(stderr);
		return 2;
	}

	sync_block = bench_map_shared(sizeof(*sync_block));
	rings = bench_map_shared(2 * sizeof(wl_ring_t));
	sync_block->duration_ns = (uint64_t)ms * 1000000u;

	int err = bench_alloc.setup();
	if (err < 0) {
		bench_note("setup failed: %s", strerror(-err));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	for (int a = optind; a < argc; a++) {
		int all = strcmp(argv[a], "all") == 0, found = 0;
		for (size_t i = 0; i < NWORKLOADS; i++) {
			const workload_t *w = &workloads[i];
			if (all ? strcmp(w->group, "sock") == 0 : strcmp(w->group, argv[a]) != 0)
				continue;
			found = 1;
			if ((bench_alloc.flags & w->needs) != w->needs) {
				if (!all)
					bench_note("%s does not apply", w->key[0]);
				continue;
			}
			if (measure(w, reps) < 0)
				rc = 1;
		}
		if (!found) {
			fprintf(stderr, "bench: unknown workload %s\n", argv[a]);
			usage(stderr);
			rc = 2;
		}
	}
	bench_alloc.teardown();
	return rc;
}
