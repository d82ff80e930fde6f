// SPDX-License-Identifier: MIT
/*
 * alloc_heapd.c - heapd as an allocator under test: libheapclient against a
 * daemon of the benchmark's own.
 *
 * setup() starts a real heapd (tests/harness/heapd.c) on a temporary socket, with
 * its arena on /dev/shm so that the arena is memory, as in production;
 * teardown() stops it and removes the arena. Each worker connects with
 * hc_connect and leaves with hc_disconnect. setup() also points
 * $HEAPD_SOCKET at the daemon, so that a program started by exec (workload
 * 10) connects on its first hc_malloc, as a program that never calls
 * hc_connect does.
 *
 * Resident memory is the allocated bytes (st_blocks * 512) of the arena's
 * two files (it is a directory, shm/layout.h): every region, metadata
 * included, after a sweep and a scavenge requested over a control
 * connection. The arena size is $BENCH_HEAPD_ARENA_SIZE,
 * 4G by default; the daemon is $HEAPD_BIN, else the one this driver was
 * built with. In bench_roots its root directory holds BENCH_MAX_ROOTS
 * names, room for workload r1's 100,000.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/heapd.h"
#include "harness/ctl.h"
#include "heapclient.h"
#include "segment.h"

#define REFILL_ROUNDS 40      /* reconnections when measuring refills from outside */
#define REFILL_CLASSES 128    /* more than there are size classes */
#define BENCH_MAX_ROOTS "131072"

/*
 * Optional client hook: copy the durations (ns) of this process's most
 * recent refill round trips, as the client timed them around the request,
 * oldest first, into ns[0..max); return how many. Used when the client
 * library provides it; otherwise the refills are timed from outside.
 */
extern size_t heapclient_debug_refill_ns(uint64_t *ns, size_t max) __attribute__((weak));

static hd_t daemon_;   /* main process: the running daemon, if started */
static int started;

static int heapd_setup(void)
{
	const char *size = getenv("BENCH_HEAPD_ARENA_SIZE");

	setenv("HEAPD_BIN", BENCH_HEAPD_BIN, 0);
	hd_init(&daemon_);
	daemon_.size = size ? size : "4G";
#ifdef BENCH_ROOTS_DRIVER
	daemon_.extra[0] = "--max-roots";
	daemon_.extra[1] = BENCH_MAX_ROOTS;
#endif
	snprintf(daemon_.arena, sizeof(daemon_.arena), "/dev/shm/heapd-bench-%d", (int)getpid());
	segment_remove(daemon_.arena);
	int rc = hd_start(&daemon_);
	if (rc < 0) {
		char line[256];
		FILE *log = fopen(daemon_.log, "r");
		bench_note("cannot start %s: %s; its log:", getenv("HEAPD_BIN"), strerror(-rc));
		while (log && fgets(line, sizeof(line), log))
			fprintf(stderr, "  %s", line);
		if (log)
			fclose(log);
		hd_cleanup(&daemon_);
		segment_remove(daemon_.arena);
		return rc;
	}
	started = 1;
	setenv("HEAPD_SOCKET", daemon_.sock, 1);
	return 0;
}

static void heapd_teardown(void)
{
	if (!started)
		return;
	started = 0;
	hd_cleanup(&daemon_);
	segment_remove(daemon_.arena);
}

static int heapd_attach(void)
{
	return hc_connect(daemon_.sock);
}

static void heapd_detach(void)
{
	hc_disconnect();
}

static int heapd_resident_base(uint64_t *baseline)
{
	*baseline = 0;
	return 0;
}

/* The allocated bytes of the arena's files. */
static int arena_bytes(uint64_t *bytes)
{
	static const char *const files[] = { HEAPD_META_FILE, HEAPD_DATA_FILE };
	char path[sizeof(daemon_.arena) + 16];

	*bytes = 0;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		uint64_t b;
		snprintf(path, sizeof(path), "%s/%s", daemon_.arena, files[i]);
		int rc = bench_file_bytes(path, &b);
		if (rc < 0)
			return rc;
		*bytes += b;
	}
	return 0;
}

static int heapd_resident(uint64_t baseline, uint64_t *bytes)
{
	(void)baseline;

	int rc = hctl_sweep(daemon_.sock);
	if (rc == 0)
		rc = hctl_scavenge(daemon_.sock);
	if (rc < 0) {
		bench_note("sweep and scavenge: %s", strerror(-rc));
		return rc;
	}
	return arena_bytes(bytes);
}

static int heapd_refills(uint64_t *n)
{
	hc_stats_t st;
	int rc = hc_stats(&st);
	if (rc < 0)
		return rc;
	*n = st.refills;
	return 0;
}

/*
 * Refills timed from outside: right after hc_connect the caches are empty,
 * so the first allocation of each size class is a refill round trip plus a
 * fast-path allocation. The first allocation of a connection is left out,
 * as it also sets up the thread's caches. Returns the number of samples or
 * -errno.
 */
static int heapd_refill_outside(uint64_t *ns, int max)
{
	size_t size[REFILL_CLASSES];
	void *held[REFILL_CLASSES];
	int nclass = 0, n = 0, rc = 0;

	/* One size per class: the usable size of each class is the next one's floor. */
	for (size_t s = 1; s <= 32768 && nclass < REFILL_CLASSES;) {
		void *p = hc_malloc(s);
		if (!p)
			return -errno;
		size[nclass++] = hc_usable_size(p);
		s = hc_usable_size(p) + 1;
		hc_free(p);
	}
	memset(held, 0, sizeof(held));
	for (int round = 0; round < REFILL_ROUNDS && n < max && rc == 0; round++) {
		hc_disconnect();
		rc = hc_connect(daemon_.sock);
		if (rc < 0)
			break;
		held[0] = hc_malloc(size[0]);
		for (int c = 1; c < nclass && n < max; c++) {
			uint64_t t0 = bench_now();
			held[c] = hc_malloc(size[c]);
			ns[n++] = bench_now() - t0;
			if (!held[c]) {
				rc = -errno;
				break;
			}
		}
		for (int c = 0; c < nclass; c++)
			if (held[c])
				hc_free(held[c]);
		memset(held, 0, sizeof(held));
	}
	return rc < 0 ? rc : n;
}

static int heapd_refill_rtt(uint64_t *ns, int max, const char **method)
{
	int n = heapd_refill_outside(ns, max);
	if (n <= 0 || !heapclient_debug_refill_ns) {
		*method = "from outside: first allocation of each class after hc_connect";
		return n;
	}
	*method = "inside the client (heapclient_debug_refill_ns)";
	return (int)heapclient_debug_refill_ns(ns, (size_t)max);
}

const bench_alloc_t bench_alloc = {
	.name = "heapd",
	.flags = BENCH_SHARED | BENCH_REFILL,
	.setup = heapd_setup,
	.teardown = heapd_teardown,
	.attach = heapd_attach,
	.detach = heapd_detach,
	.malloc = hc_malloc,
	.free = hc_free,
	.ptr_to_off = hc_ptr_to_off,
	.off_to_ptr = hc_off_to_ptr,
	.resident_base = heapd_resident_base,
	.resident = heapd_resident,
	.refill_rtt = heapd_refill_rtt,
	.refills = heapd_refills,
};
