// SPDX-License-Identifier: MIT
/*
 * bench_unwind.c - what a heap-profile sample's stack costs by each way of
 * walking it: frame pointers (what libheapclient does, client/profile.c)
 * and glibc's backtrace() (libgcc's unwinder, from the DWARF call-frame
 * tables). Each is timed capturing the stack from the bottom of a chain of
 * calls compiled with frame pointers, for a few depths, with the same stack
 * every time (the unwinder's best case: its lookups stay in cache); each
 * figure is the median of 9 runs. Built with BENCH_LIBUNWIND (the
 * bench_unwind_libunwind binary, where the build finds libunwind), the
 * second method is libunwind's unw_backtrace() instead.
 *
 *   bench_unwind [-n CAPTURES]
 *
 * backtrace() is called once before timing: its first call loads libgcc_s.
 */
#include <execinfo.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef BENCH_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define walk_by_tables(buf, n) unw_backtrace(buf, n)
#define TABLES_NAME "unw_backtrace()"
#else
#define walk_by_tables(buf, n) backtrace(buf, n)
#define TABLES_NAME "backtrace()"
#endif

#define MAX_FRAMES 32
#define RUNS 9

enum { FP, TABLES, NMETHODS };
static const char *const names[NMETHODS] = { "frame pointers", TABLES_NAME };

static void *frames[MAX_FRAMES];
static int method;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The frame-pointer walk, as the sampler does it: each frame above the last, on the stack. */
__attribute__((noinline)) static int fp_walk(void **out, int max, uintptr_t stack_hi)
{
	uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
	int n = 0;
	while (n < max && !(fp & 7) && fp + 16 <= stack_hi) {
		uintptr_t next = ((uintptr_t *)fp)[0];
		out[n++] = (void *)((uintptr_t *)fp)[1];
		if (next <= fp)
			break;
		fp = next;
	}
	return n;
}

static uintptr_t stack_hi;

__attribute__((noinline)) static int capture(void)
{
	switch (method) {
	case FP:
		return fp_walk(frames, MAX_FRAMES, stack_hi);
	case TABLES:
		return walk_by_tables(frames, MAX_FRAMES);
	}
	return 0;
}

__attribute__((noinline)) static int chain(int depth)
{
	int n = depth ? chain(depth - 1) : capture();
	__asm__ volatile("" : "+r"(n));
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const int depths[] = { 4, 12, 30 };
	long captures = 20000;
	int opt;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n')
			return fprintf(stderr, "usage: bench_unwind [-n CAPTURES]\n"), 2;
		captures = atol(optarg);
	}
	pthread_attr_t a;
	void *addr;
	size_t size;
	if (pthread_getattr_np(pthread_self(), &a) != 0 || pthread_attr_getstack(&a, &addr, &size) != 0)
		return fprintf(stderr, "bench_unwind: cannot find the stack\n"), 1;
	stack_hi = (uintptr_t)addr + size;
	walk_by_tables(frames, MAX_FRAMES); /* backtrace() loads libgcc_s at its first call */
	printf("ns per captured stack, median of %d runs of %ld captures\n", RUNS, captures);
	printf("%-16s", "depth (frames)");
	for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++)
		printf(" %12d", depths[d] + 3);
	printf("\n");
	for (method = 0; method < NMETHODS; method++) {
		printf("%-16s", names[method]);
		for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++) {
			double runs[RUNS];
			for (int r = 0; r < RUNS; r++) {
				uint64_t t0 = now_ns();
				for (long i = 0; i < captures; i++)
					chain(depths[d]);
				runs[r] = (double)(now_ns() - t0) / (double)captures;
			}
			qsort(runs, RUNS, sizeof(runs[0]), cmp_double);
			printf(" %12.0f", runs[RUNS / 2]);
		}
		printf("\n");
	}
	return 0;
}
