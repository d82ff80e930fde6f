// SPDX-License-Identifier: MIT
/*
 * bench.h - the benchmark suite's view of an allocator, and the helpers its
 * workloads share.
 *
 * Every allocator under test (heapd and each peer) is one bench_alloc_t. A
 * driver binary links the workloads (workloads.c, driver.c) with exactly one
 * allocator file (alloc_*.c), which defines `bench_alloc`. Peers that replace
 * malloc are linked into binaries of their own, so each one measures its own
 * malloc without interference.
 *
 * Process model: the driver calls setup() once, in its main process, before
 * any worker exists (start a daemon, create a segment). Every measurement
 * runs in freshly forked worker processes, which call attach() first and
 * detach() last. teardown() runs in the main process at the end. Workload
 * 10 also starts new programs, by exec: there setup() has left in the
 * environment what they need to find the allocator, and attach_new() does
 * what a new program of the allocator's users does before it allocates.
 *
 * The driver's own bookkeeping (pointer arrays, random tables) lives in
 * memory from bench_map(), never in the allocator under test.
 */
#ifndef HEAPD_BENCH_H
#define HEAPD_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BENCH_SHARED 1u   /* objects may be freed by another process, via offsets */
#define BENCH_REFILL 2u   /* has a refill round trip to measure (refill_rtt) */

typedef struct bench_alloc {
	const char *name;  /* column name in the results */
	unsigned flags;    /* BENCH_* */

	int (*setup)(void);       /* main process, once; 0 or -errno */
	void (*teardown)(void);   /* main process, once */
	int (*attach)(void);      /* each worker process, before it allocates; 0 or -errno */
	void (*detach)(void);     /* each worker process, when done */

	void *(*malloc)(size_t size);
	void (*free)(void *ptr);
	uint64_t (*ptr_to_off)(const void *ptr); /* BENCH_SHARED: a handle valid in every worker */
	void *(*off_to_ptr)(uint64_t off);

	/*
	 * Memory: set *baseline before a workload allocates anything; later,
	 * resident() first asks the allocator to give back what it can (trim,
	 * purge, sweep and scavenge), then reports the bytes the allocator holds
	 * in memory beyond the baseline. 0 or -errno.
	 */
	int (*resident_base)(uint64_t *baseline);
	int (*resident)(uint64_t baseline, uint64_t *bytes);

	/*
	 * BENCH_REFILL: store up to max refill round-trip latencies (ns) in ns[]
	 * and return how many, or -errno. Runs in an attached worker.
	 */
	int (*refill_rtt)(uint64_t *ns, int max, const char **method);

	/* Optional: refill requests this process has sent so far. 0 or -errno. */
	int (*refills)(uint64_t *n);

	/*
	 * Optional: in a program started by exec (workload 10), find the
	 * allocator from the environment setup() left and open it. NULL: the
	 * first allocation finds it by itself. 0 or -errno.
	 */
	int (*attach_new)(void);
} bench_alloc_t;

extern const bench_alloc_t bench_alloc;

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_now(void);

/* Zeroed private memory outside every allocator under test, already resident; aborts on failure. */
void *bench_map(size_t bytes);
void bench_unmap(void *p, size_t bytes);

/* Zeroed memory shared with forked workers (MAP_SHARED); aborts on failure. */
void *bench_map_shared(size_t bytes);

/* Write (wr) or read all len bytes of buf on fd, through EINTR. 0, or -1 on an error or EOF. */
int bench_full_io(int fd, void *buf, size_t len, int wr);

/* A small, fast generator (xorshift64*); state must not be 0. */
static inline uint64_t bench_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Resident bytes of this process (/proc/self/statm). 0 or -errno. */
int bench_rss(uint64_t *bytes);

/* Allocated bytes of a file (st_blocks * 512). 0 or -errno. */
int bench_file_bytes(const char *path, uint64_t *bytes);

/* Print a message prefixed with the allocator's name to stderr. */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif

#endif
