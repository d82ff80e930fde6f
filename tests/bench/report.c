// SPDX-License-Identifier: MIT
/*
 * report.c - turn the drivers' result lines into the results table.
 *
 *   bench_report [-m machine.txt] [-c chart.dat] results.tsv
 *
 * results.tsv holds "<allocator> TAB <key> TAB <value>" lines from every
 * driver (driver.c); a key given more than once (one line per repetition)
 * counts with the median of its values. The markdown goes to stdout: the
 * machine description, one row per workload and one column per allocator, heapd's ratio to each
 * peer, then the performance targets with the measured figure
 * next to each, the memory figures in MiB, and the time rows again as a text
 * bar chart (log scale) that reads anywhere markdown does. With -c, the time
 * rows are also written as the data file chart.gp plots.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ALLOCS 16
#define MAX_KEYS 128
#define NAME_LEN 32

enum unit { UNIT_NS, UNIT_US, UNIT_RATIO, UNIT_MILLIONS };

typedef struct row {
	const char *key;
	const char *label;
	const char *short_label;  /* chart label; NULL: not in the chart */
	enum unit unit;
} row_t;

static const row_t rows[] = {
	{ "w1_16", "1. batches of 1000 × 16 B, ns/op", "W1 16B", UNIT_NS },
	{ "w1_64", "1. batches of 1000 × 64 B, ns/op", "W1 64B", UNIT_NS },
	{ "w1_256", "1. batches of 1000 × 256 B, ns/op", "W1 256B", UNIT_NS },
	{ "w1_1024", "1. batches of 1000 × 1024 B, ns/op", "W1 1KiB", UNIT_NS },
	{ "w1_4096", "1. batches of 1000 × 4096 B, ns/op", "W1 4KiB", UNIT_NS },
	{ "w2", "2. Larson-like, 10,000 slots of 8–1024 B, ns/op", "W2", UNIT_NS },
	{ "w3", "3. producer/consumer, 64 B, 2 processes, ns/object", "W3", UNIT_NS },
	{ "w4", "4. two producer/consumer pairs, ns/object", "W4", UNIT_NS },
	{ "w5p", "5. Larson-like in 2 processes, ns/op (aggregate)", "W5 procs", UNIT_NS },
	{ "w5t", "5. Larson-like in 2 threads, ns/op (aggregate)", "W5 threads", UNIT_NS },
	{ "w6_p50", "6. refill round trip p50, µs", NULL, UNIT_US },
	{ "w6_p99", "6. refill round trip p99, µs", NULL, UNIT_US },
	{ "w7a", "7. resident / live after workload 2", NULL, UNIT_RATIO },
	{ "w7b", "7. resident / live after a phase change", NULL, UNIT_RATIO },
	{ "w8_t2", "8. Larson-like, 10,000 slots shared by 2 threads, ns/op (aggregate)", "W8 2 thr", UNIT_NS },
	{ "w8_t4", "8. Larson-like, 10,000 slots shared by 4 threads, ns/op (aggregate)", "W8 4 thr", UNIT_NS },
	{ "w8_t8", "8. Larson-like, 10,000 slots shared by 8 threads, ns/op (aggregate)", "W8 8 thr", UNIT_NS },
	{ "w9", "9. producer/consumer threads, 64–512 B, ns/object", "W9", UNIT_NS },
	{ "w10", "10. a new program allocates 100 objects of 16–256 B and exits, µs/program", NULL, UNIT_US },
	{ "w10_first_p50", "10. its first allocation, from its main(), p50, µs", NULL, UNIT_US },
	{ "w10_first_p99", "10. its first allocation, from its main(), p99, µs", NULL, UNIT_US },
	{ "w10_spawn_p50", "10. its first allocation, from its spawn, p50, µs", NULL, UNIT_US },
	{ "w10_spawn_p99", "10. its first allocation, from its spawn, p99, µs", NULL, UNIT_US },
	{ "r1_get_mops", "R1. hc_root_get, 100,000 names in random order, million lookups/s per thread", NULL,
	  UNIT_MILLIONS },
	{ "r2_set_p50", "R2. hc_root_set round trip p50, µs", NULL, UNIT_US },
	{ "r2_set_p99", "R2. hc_root_set round trip p99, µs", NULL, UNIT_US },
	{ "r2_cas_p50", "R2. hc_root_cas round trip p50, µs", NULL, UNIT_US },
	{ "r2_cas_p99", "R2. hc_root_cas round trip p99, µs", NULL, UNIT_US },
	{ "r2_sock_p50", "R2. socket pair round trip p50, µs, blocking reader", NULL, UNIT_US },
	{ "r2_spin_p50", "R2. socket pair round trip p50, µs, reader polls 50 µs first", NULL, UNIT_US },
	{ "r3_wait_p50", "R3. hc_root_wait wake-up after the bind, p50, µs", NULL, UNIT_US },
	{ "r3_wait_p99", "R3. hc_root_wait wake-up after the bind, p99, µs", NULL, UNIT_US },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/*
 * Rows shown next to a socket pair's round trip: the refill's, and the
 * roots' (from their own run, with a reader that polls first, as the
 * client does).
 */
static const char *const floors[][2] = {
	{ "w6_p50", "sock_p50" }, { "w6_p99", "sock_p99" },
	{ "r2_set_p50", "r2_spin_p50" }, { "r2_set_p99", "r2_spin_p99" },
	{ "r2_cas_p50", "r2_spin_p50" }, { "r2_cas_p99", "r2_spin_p99" },
};

static const char *floor_of(const char *k)
{
	for (size_t i = 0; i < sizeof(floors) / sizeof(floors[0]); i++)
		if (strcmp(floors[i][0], k) == 0)
			return floors[i][1];
	return NULL;
}

/* Columns appear in this order; allocators not listed follow in input order. */
static const char *const known[] = { "glibc", "jemalloc", "mimalloc", "tcmalloc", "boost", "heapd" };

static char alloc[MAX_ALLOCS][NAME_LEN];
static int nalloc;
static char key[MAX_KEYS][NAME_LEN];
static int nkey;
static double val[MAX_ALLOCS][MAX_KEYS]; /* NAN when absent */

/* A key may come in several lines (one per repetition): val is their median. */
#define MAX_SAMPLES 64
static double sample[MAX_ALLOCS][MAX_KEYS][MAX_SAMPLES];
static int nsample[MAX_ALLOCS][MAX_KEYS];

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int index_of(char names[][NAME_LEN], int *n, int max, const char *name)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	if (*n == max)
		return -1;
	snprintf(names[*n], NAME_LEN, "%s", name);
	return (*n)++;
}

static int find(char names[][NAME_LEN], int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* The value of key k for allocator a, NAN when absent. */
static double get(const char *a, const char *k)
{
	int ai = find(alloc, nalloc, a), ki = find(key, nkey, k);
	return ai < 0 || ki < 0 ? NAN : val[ai][ki];
}

/* The allocator-independent value of k (the socket pair floor), from whoever measured it. */
static double get_any(const char *k)
{
	for (int a = 0; a < nalloc; a++) {
		double v = get(alloc[a], k);
		if (!isnan(v))
			return v;
	}
	return NAN;
}

static int load(const char *path)
{
	char line[256], a[NAME_LEN], k[NAME_LEN];
	double v;
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return -1;
	}
	for (int i = 0; i < MAX_ALLOCS; i++)
		for (int j = 0; j < MAX_KEYS; j++)
			val[i][j] = NAN;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		index_of(alloc, &nalloc, MAX_ALLOCS, known[i]);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%31[^\t]\t%31[^\t]\t%lf", a, k, &v) != 3)
			continue;
		int ai = index_of(alloc, &nalloc, MAX_ALLOCS, a), ki = index_of(key, &nkey, MAX_KEYS, k);
		if (ai >= 0 && ki >= 0 && nsample[ai][ki] < MAX_SAMPLES)
			sample[ai][ki][nsample[ai][ki]++] = v;
	}
	fclose(f);
	for (int i = 0; i < nalloc; i++)
		for (int j = 0; j < nkey; j++)
			if (nsample[i][j])
				val[i][j] = median(sample[i][j], nsample[i][j]);

	/* Drop the known allocators that produced nothing. */
	int n = 0;
	for (int i = 0; i < nalloc; i++) {
		int any = 0;
		for (int j = 0; j < nkey; j++)
			any |= !isnan(val[i][j]);
		if (!any)
			continue;
		if (n != i) {
			memcpy(alloc[n], alloc[i], NAME_LEN);
			memcpy(val[n], val[i], sizeof(val[i]));
		}
		n++;
	}
	nalloc = n;
	return 0;
}

static void print_value(double v, enum unit u)
{
	if (isnan(v))
		printf(" — |");
	else if (u == UNIT_US)
		printf(" %.1f |", v / 1000);
	else if (u == UNIT_RATIO)
		printf(" %.2f |", v);
	else if (u == UNIT_MILLIONS)
		printf(" %.1f |", v);
	else if (v < 10)
		printf(" %.2f |", v);
	else if (v < 100)
		printf(" %.1f |", v);
	else
		printf(" %.0f |", v);
}

static void print_table(void)
{
	int heapd = find(alloc, nalloc, "heapd") >= 0;

	printf("| workload |");
	for (int a = 0; a < nalloc; a++)
		printf(" %s |", alloc[a]);
	for (int a = 0; heapd && a < nalloc; a++)
		if (strcmp(alloc[a], "heapd") != 0)
			printf(" heapd/%s |", alloc[a]);
	printf("\n|---|");
	for (int a = 0; a < nalloc; a++)
		printf("---:|");
	for (int a = 0; heapd && a < nalloc; a++)
		if (strcmp(alloc[a], "heapd") != 0)
			printf("---:|");
	printf("\n");

	for (size_t r = 0; r < NROWS; r++) {
		const row_t *row = &rows[r];
		int any = 0;
		for (int a = 0; a < nalloc; a++)
			any |= !isnan(get(alloc[a], row->key));
		double fl = floor_of(row->key) ? get_any(floor_of(row->key)) : NAN;
		if (!any && isnan(fl))
			continue;
		printf("| %s", row->label);
		if (!isnan(fl))
			printf(" (socket pair: %.1f)", fl / 1000);
		printf(" |");
		for (int a = 0; a < nalloc; a++)
			print_value(get(alloc[a], row->key), row->unit);
		for (int a = 0; heapd && a < nalloc; a++) {
			if (strcmp(alloc[a], "heapd") == 0)
				continue;
			print_value(get("heapd", row->key) / get(alloc[a], row->key), UNIT_RATIO);
		}
		printf("\n");
	}
}

static void target(const char *what, double measured, const char *fmt, int pass)
{
	printf("| %s | ", what);
	if (isnan(measured))
		printf("not measured | — |\n");
	else {
		printf(fmt, measured);
		printf(" | %s |\n", pass ? "met" : "**missed**");
	}
}

static const char *const small_keys[] = { "w1_16", "w1_64", "w1_256", "w1_1024", "w2" };
static const char *const w1_keys[] = { "w1_16", "w1_64", "w1_256", "w1_1024", "w1_4096" };
static const char *const w8_keys[] = { "w8_t2", "w8_t4", "w8_t8" };

/* The worst over rows keys[0..n) of f (heapd against a peer); NAN if none measured. */
static double worst_of(const char *const *keys, size_t n, double (*f)(const char *key), int want_max,
                       const char **at)
{
	double worst = NAN;
	for (size_t i = 0; i < n; i++) {
		double v = f(keys[i]);
		if (isnan(v))
			continue;
		if (isnan(worst) || (want_max ? v > worst : v < worst)) {
			worst = v;
			*at = keys[i];
		}
	}
	return worst;
}

static double vs_fast_peer(const char *k)
{
	double mi = get("mimalloc", k), tc = get("tcmalloc", k);
	double best = isnan(mi) ? tc : isnan(tc) ? mi : fmin(mi, tc);
	return get("heapd", k) / best;
}

static double vs_glibc(const char *k)
{
	return get("heapd", k) / get("glibc", k);
}

static double boost_speedup(const char *k)
{
	return get("boost", k) / get("heapd", k);
}

static void print_targets(void)
{
	const char *at = "";
	char what[160];
	double v;

	printf("\n### Targets\n\n| target | measured | |\n|---|---:|---|\n");
	v = worst_of(w1_keys, sizeof(w1_keys) / sizeof(w1_keys[0]), vs_fast_peer, 1, &at);
	snprintf(what, sizeof(what), "workload 1: ≤ 1.3× the faster of mimalloc and tcmalloc (worst: %s)", at);
	target(what, v, "%.2f×", v <= 1.3);
	v = vs_fast_peer("w2");
	target("workload 2: ≤ 1.5× the faster of mimalloc and tcmalloc", v, "%.2f×", v <= 1.5);
	at = "";
	v = worst_of(w8_keys, sizeof(w8_keys) / sizeof(w8_keys[0]), vs_fast_peer, 1, &at);
	snprintf(what, sizeof(what),
	         "workload 8: ≥ 0.7× the throughput of the faster of mimalloc and tcmalloc (worst: %s)", at);
	target(what, 1 / v, "%.2f×", 1 / v >= 0.7);
	v = get("mimalloc", "w9") / get("heapd", "w9");
	target("workload 9: ≥ 0.7× mimalloc's throughput", v, "%.2f×", v >= 0.7);
	v = get("heapd", "w10") / get("glibc", "w10");
	target("workload 10: a new program ≤ 1.5× glibc's time", v, "%.2f×", v <= 1.5);
	at = "";
	v = worst_of(small_keys, sizeof(small_keys) / sizeof(small_keys[0]), vs_glibc, 1, &at);
	snprintf(what, sizeof(what), "small objects: faster than glibc (worst: %s)", at);
	target(what, v, "%.2f×", v < 1);

	double b = NAN;
	const char *bat = "";
	static const char *const bkeys[] = { "w1_16", "w1_64", "w1_256", "w1_1024", "w1_4096", "w2", "w3" };
	for (size_t i = 0; i < sizeof(bkeys) / sizeof(bkeys[0]); i++) {
		double s = boost_speedup(bkeys[i]);
		if (!isnan(s) && (isnan(b) || s < b)) {
			b = s;
			bat = bkeys[i];
		}
	}
	snprintf(what, sizeof(what), "≥ 20× faster than Boost.Interprocess on 1–3 (least: %s)", bat);
	target(what, b, "%.2f×", b >= 20);

	v = get("heapd", "w6_p50") / get_any("sock_p50");
	target("refill round trip p50 ≤ 1.3× the socket pair's", v, "%.2f×", v <= 1.3);
	v = get("heapd", "w6_p99") / get_any("sock_p99");
	target("refill round trip p99 ≤ 1.3× the socket pair's", v, "%.2f×", v <= 1.3);

	/* ns per op spent in refills: refills per op × round trip. */
	v = get("heapd", "w1_64_refills_per_mop") / 1e6 * get("heapd", "w6_p50") / get("heapd", "w1_64") * 100;
	target("refills < 2% of workload 1's time at 64 B (refills × p50)", v, "%.2f%%", v < 2);

	v = get("heapd", "w7a");
	target("resident ≤ 1.2× live after workload 2, scavenged", v, "%.2f×", v <= 1.2);
	v = get("heapd", "w7b");
	target("resident ≤ 1.15× live after a phase change, scavenged", v, "%.2f×", v <= 1.15);

	v = get("heapd", "w2") / get("heapd", "w5p");
	target("workload 5, 2 processes: ≥ 1.7× the rate of one", v, "%.2f×", v >= 1.7);
	v = get("heapd", "w2") / get("heapd", "w5t");
	target("workload 5, 2 threads: ≥ 1.7× the rate of one", v, "%.2f×", v >= 1.7);
	v = get("heapd", "w3") / get("heapd", "w4");
	target("workload 4: ≥ 1.5× the rate of workload 3", v, "%.2f×", v >= 1.5);

	v = get("heapd", "r1_get_mops");
	target("hc_root_get: ≥ 10 million lookups/s per thread on 100,000 names", v, "%.1f M/s", v >= 10);
	v = get("heapd", "r2_set_p50") / get("heapd", "r2_spin_p50");
	target("hc_root_set round trip p50 ≤ 1.3× the socket pair's (same run, polling reader)", v,
	       "%.2f×", v <= 1.3);
	v = get("heapd", "r2_cas_p50") / get("heapd", "r2_spin_p50");
	target("hc_root_cas round trip p50 ≤ 1.3× the socket pair's (same run, polling reader)", v,
	       "%.2f×", v <= 1.3);
	v = get("heapd", "r3_wait_p99") / 1000;
	target("hc_root_wait returns within 1 ms of the bind (p99)", v, "%.0f µs", v <= 1000);
}

static void print_memory(void)
{
	static const char *const mkeys[] = { "w7a_live", "w7a_res", "w7b_live", "w7b_res" };
	static const char *const mlabel[] = { "after workload 2: live", "after workload 2: resident",
					      "after the phase change: live", "after the phase change: resident" };
	int any = 0;
	for (int a = 0; a < nalloc; a++)
		any |= !isnan(get(alloc[a], "w7a_live"));
	if (!any)
		return;
	printf("\n### Memory (workload 7), MiB\n\n| |");
	for (int a = 0; a < nalloc; a++)
		printf(" %s |", alloc[a]);
	printf("\n|---|");
	for (int a = 0; a < nalloc; a++)
		printf("---:|");
	printf("\n");
	for (int i = 0; i < 4; i++) {
		printf("| %s |", mlabel[i]);
		for (int a = 0; a < nalloc; a++) {
			double v = get(alloc[a], mkeys[i]);
			if (isnan(v))
				printf(" — |");
			else
				printf(" %.1f |", v / 1048576);
		}
		printf("\n");
	}
}

#define BAR_WIDTH 40

/* One text bar per allocator and time row, on a log scale from 1 ns to the slowest figure. */
static void print_text_chart(void)
{
	static const char *const eighths[] = { "", "▏", "▎", "▍", "▌", "▋", "▊", "▉" };
	double top = 1;
	int namew = 0;

	for (size_t r = 0; r < NROWS; r++)
		for (int a = 0; rows[r].short_label && a < nalloc; a++) {
			double v = get(alloc[a], rows[r].key);
			if (!isnan(v) && v > top)
				top = v;
		}
	for (int a = 0; a < nalloc; a++)
		if ((int)strlen(alloc[a]) > namew)
			namew = (int)strlen(alloc[a]);
	printf("\n### Chart: ns per operation, log scale (shorter is faster)\n\n```text\n");
	for (size_t r = 0; r < NROWS; r++) {
		if (!rows[r].short_label)
			continue;
		int first = 1;
		for (int a = 0; a < nalloc; a++) {
			double v = get(alloc[a], rows[r].key);
			if (isnan(v))
				continue;
			/* in eighths of a character: log10(v) over log10(top) of the width */
			int n = v <= 1 || top <= 1 ? 0 : (int)lround(log10(v) / log10(top) * BAR_WIDTH * 8);
			printf("%-11s %-*s ", first ? rows[r].short_label : "", namew, alloc[a]);
			for (int i = 0; i < n / 8; i++)
				fputs("█", stdout);
			fputs(eighths[n % 8], stdout);
			printf(" %.3g\n", v);
			first = 0;
		}
		if (!first)
			printf("\n");
	}
	printf("```\n");
}

static int write_chart(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		return -1;
	}
	fprintf(f, "\"workload\"");
	for (int a = 0; a < nalloc; a++)
		fprintf(f, " \"%s\"", alloc[a]);
	fprintf(f, "\n");
	for (size_t r = 0; r < NROWS; r++) {
		if (!rows[r].short_label)
			continue;
		fprintf(f, "\"%s\"", rows[r].short_label);
		for (int a = 0; a < nalloc; a++) {
			double v = get(alloc[a], rows[r].key);
			if (isnan(v))
				fprintf(f, " -");
			else
				fprintf(f, " %.3f", v);
		}
		fprintf(f, "\n");
	}
	return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *machine = NULL, *chart = NULL;
	int opt;

	while ((opt = getopt(argc, argv, "m:c:")) != -1) {
		if (opt == 'm')
			machine = optarg;
		else if (opt == 'c')
			chart = optarg;
		else
			goto usage;
	}
	if (optind != argc - 1)
		goto usage;
	if (load(argv[optind]) < 0)
		return 1;

	printf("## heapd benchmark results\n\n");
	if (machine) {
		char line[512];
		FILE *f = fopen(machine, "r");
		while (f && fgets(line, sizeof(line), f))
			fputs(line, stdout);
		if (f)
			fclose(f);
		printf("\n");
	}
	printf("Each figure is the median of several repetitions. An operation is one allocation or one free; "
	       "in workloads 3, 4 and 9 it is one object passed from producer to consumer. "
	       "Workload 10 runs once, 1000 programs started by exec one after another, each of which "
	       "opens the allocator as a new user's program does; its first allocation is timed from "
	       "the program's main() and from just before the parent spawned it. "
	       "heapd/peer below 1 means heapd is faster (or, for memory, leaner). "
	       "Only shared-memory allocators can run workloads 3 and 4; only heapd has a refill round trip.\n\n");
	print_table();
	if (find(alloc, nalloc, "heapd") >= 0)
		print_targets();
	print_memory();
	print_text_chart();
	if (chart && write_chart(chart) < 0)
		return 1;
	return 0;
usage:
	fprintf(stderr, "usage: bench_report [-m machine.txt] [-c chart.dat] results.tsv\n");
	return 2;
}
