// SPDX-License-Identifier: MIT
/*
 * bench_profile.c - what heap-profile sampling costs the allocation loops
 * of workloads 1 and 2, measured against itself with sampling off, in one
 * process: phases with the rate at 0 and at RATE alternate (hc_profile_rate
 * changes it between them), each phase is timed by the thread's CPU clock,
 * and the median of each is reported with their ratio. Alternating in one
 * process cancels the machine's drift, and CPU time leaves out the time the
 * thread waits for a CPU, which on a shared machine is most of the noise of
 * scripts/bench; what it still counts is the cost of the cache misses the
 * samples take.
 *
 *   bench_profile [-r RATE] [-n PHASES] [-l LOOP] [-m off|on]
 *
 * -l runs one loop only (w1_16 ... w1_4096, w2), and -m only one of the
 * two modes (its column of the other is 0): a run to look at under a
 * profiler.
 *
 * The loops: batches of 1000 allocations of one size, written and then
 * freed (as workload 1); and 10,000 slots of 8 to 1024 bytes, one replaced
 * at random each step (as workload 2). It starts its own heapd, as
 * bench_heapd does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness/heapd.h"
#include "harness/ctl.h"
#include "sock.h"
#include "heapclient.h"
#include "segment.h"

#define BATCH 1000
#define SLOTS 10000
#define PLAN (1u << 18)

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Workload 1: batches of size-byte objects; ns per allocation and free. */
static double batches(size_t size, int n)
{
	static void *p[BATCH];
	double t0 = cpu_ns();
	for (int b = 0; b < n; b++) {
		for (int i = 0; i < BATCH; i++) {
			p[i] = hc_malloc(size);
			*(volatile uint64_t *)p[i] = (uint64_t)i;
		}
		for (int i = 0; i < BATCH; i++)
			hc_free(p[i]);
	}
	return (cpu_ns() - t0) / ((double)n * BATCH);
}

/* Workload 2: a Larson-like churn; ns per step (a free and an allocation). */
static void *slot[SLOTS];
static uint32_t plan[PLAN][2];
static uint32_t step;

static double churn(int n)
{
	double t0 = cpu_ns();
	for (int i = 0; i < n; i++, step++) {
		const uint32_t *s = plan[step % PLAN];
		hc_free(slot[s[0]]);
		slot[s[0]] = hc_malloc(s[1]);
		*(volatile char *)slot[s[0]] = 1;
	}
	return (cpu_ns() - t0) / n;
}

/* Alternate phases off and at rate (only mode `only` if it is 0 or 1); print the medians. */
static void compare(const char *name, size_t size, size_t rate, int phases, int only)
{
	double off[64] = { 0 }, on[64] = { 0 };
	if (phases > 64)
		phases = 64;
	for (int r = 0; r < phases; r++) {
		for (int m = 0; m < 2; m++) {
			if (only >= 0 && m != only)
				continue;
			hc_profile_rate(m ? rate : 0);
			if (size) {
				batches(size, 5); /* the new rate reaches every window */
				(m ? on : off)[r] = batches(size, 200);
			} else {
				churn(50000);
				(m ? on : off)[r] = churn(400000);
			}
		}
	}
	qsort(off, (size_t)phases, sizeof(double), cmp_double);
	qsort(on, (size_t)phases, sizeof(double), cmp_double);
	printf("%-8s %10.2f %10.2f %8.3f\n", name, off[phases / 2], on[phases / 2],
	       off[phases / 2] > 0 ? on[phases / 2] / off[phases / 2] : 0);
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 16, 64, 256, 1024, 4096 };
	hd_t d;
	size_t rate = 512 << 10;
	const char *loop = NULL;
	int phases = 21, only = -1, opt;

	while ((opt = getopt(argc, argv, "r:n:l:m:")) != -1) {
		if (opt == 'r')
			rate = strtoull(optarg, NULL, 10);
		else if (opt == 'n')
			phases = atoi(optarg);
		else if (opt == 'l')
			loop = optarg;
		else if (opt == 'm' && (strcmp(optarg, "off") == 0 || strcmp(optarg, "on") == 0))
			only = strcmp(optarg, "on") == 0;
		else
			return fprintf(stderr, "usage: bench_profile [-r RATE] [-n PHASES] [-l LOOP] "
			                       "[-m off|on]\n"), 2;
	}
	setenv("HEAPD_BIN", BENCH_HEAPD_BIN, 0);
	unsetenv("HEAPD_PROFILE_RATE");
	hd_init(&d);
	d.size = "4G";
	snprintf(d.arena, sizeof(d.arena), "/dev/shm/heapd-bench-profile-%d", (int)getpid());
	if (hd_start(&d) < 0)
		return fprintf(stderr, "bench_profile: cannot start %s\n", getenv("HEAPD_BIN")), 1;
	if (hc_connect(d.sock) < 0)
		return fprintf(stderr, "bench_profile: cannot connect\n"), 1;

	uint64_t x = 88172645463325252ULL;
	for (uint32_t i = 0; i < PLAN; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		plan[i][0] = (uint32_t)(x % SLOTS);
		plan[i][1] = 8 + (uint32_t)((x >> 32) % 1017);
	}
	for (uint32_t i = 0; i < SLOTS; i++)
		slot[i] = hc_malloc(8 + i % 1017);

	printf("sampling off and at %zu bytes, alternating; medians of %d phases, CPU ns\n", rate,
	       phases);
	printf("%-8s %10s %10s %8s\n", "loop", "off", "on", "on/off");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char name[16];
		snprintf(name, sizeof(name), "w1_%zu", sizes[i]);
		if (!loop || strcmp(loop, name) == 0)
			compare(name, sizes[i], rate, phases, only);
	}
	if (!loop || strcmp(loop, "w2") == 0)
		compare("w2", 0, rate, phases, only);
	hc_disconnect();
	hd_cleanup(&d);
	segment_remove(d.arena);
	return 0;
}
