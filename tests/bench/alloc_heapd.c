// SPDX-License-Identifier: MIT
/*
 * alloc_heapd.c - heapd as an allocator under test: libheapclient against a
 * daemon of the benchmark's own.
 *
 * setup() starts a real heapd (tests/harness.c) on a temporary socket, with
 * its arena on /dev/shm so that the arena is memory, as in production;
 * teardown() stops it and removes the arena. Each worker connects with
 * hc_connect and leaves with hc_disconnect.
 *
 * Resident memory is the arena file's allocated bytes (st_blocks * 512):
 * every region, metadata included, after a sweep and a scavenge requested
 * over a control connection. The arena size is $BENCH_HEAPD_ARENA_SIZE,
 * 4G by default; the daemon is $HEAPD_BIN, else the one this driver was
 * built with. In bench_roots its root directory holds BENCH_MAX_ROOTS
 * names, room for workload 8's 100,000.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "heapclient.h"

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

static harness_daemon_t daemon_;   /* main process: the running daemon, if started */
static int started;

/* Remove the arena: a directory holding meta, data and lock (shm/layout.h). */
static void remove_arena(void)
{
	static const char *const files[] = { "meta", "data", "lock", "meta.new", "data.new" };
	char path[sizeof(daemon_.arena) + 16];
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", daemon_.arena, files[i]);
		unlink(path);
	}
	rmdir(daemon_.arena);
}

static int heapd_setup(void)
{
	const char *size = getenv("BENCH_HEAPD_ARENA_SIZE");

	setenv("HEAPD_BIN", BENCH_HEAPD_BIN, 0);
	harness_init(&daemon_);
	daemon_.size = size ? size : "4G";
#ifdef BENCH_ROOTS_DRIVER
	daemon_.extra[0] = "--max-roots";
	daemon_.extra[1] = BENCH_MAX_ROOTS;
#endif
	snprintf(daemon_.arena, sizeof(daemon_.arena), "/dev/shm/heapd-bench-%d", (int)getpid());
	remove_arena();
	int rc = harness_start(&daemon_);
	if (rc < 0) {
		char line[256];
		FILE *log = fopen(daemon_.log, "r");
		bench_note("cannot start %s: %s; its log:", getenv("HEAPD_BIN"), strerror(-rc));
		while (log && fgets(line, sizeof(line), log))
			fprintf(stderr, "  %s", line);
		if (log)
			fclose(log);
		harness_cleanup(&daemon_);
		remove_arena();
		return rc;
	}
	started = 1;
	return 0;
}

static void heapd_teardown(void)
{
	if (!started)
		return;
	started = 0;
	harness_cleanup(&daemon_);
	remove_arena();
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

/* A request with no fields that the daemon answers with Ok. */
static int control_ok(int fd, Heapd__Envelope *env)
{
	Heapd__Envelope *reply = NULL;
	int rc = harness_call(fd, env, &reply);
	if (rc == 0 && reply->msg_case != HEAPD__ENVELOPE__MSG_OK)
		rc = -EPROTO;
	wire_free(reply);
	return rc;
}

static int heapd_resident(uint64_t baseline, uint64_t *bytes)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ScavengeRequest scavenge = HEAPD__SCAVENGE_REQUEST__INIT;
	(void)baseline;

	int fd = harness_control(daemon_.sock);
	if (fd < 0)
		return fd;
	int rc = harness_sweep(fd);
	if (rc == 0) {
		env.msg_case = HEAPD__ENVELOPE__MSG_SCAVENGE;
		env.scavenge = &scavenge;
		rc = control_ok(fd, &env);
	}
	close(fd);
	if (rc < 0) {
		bench_note("sweep and scavenge: %s", strerror(-rc));
		return rc;
	}
	return bench_file_bytes(daemon_.arena, bytes);
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
