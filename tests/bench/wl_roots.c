// SPDX-License-Identifier: MIT
/*
 * wl_roots.c - workloads r1, r2 and r3: heapd's named roots. They are built
 * into a driver of their own, bench_roots (the heapd allocator with
 * BENCH_ROOTS_DRIVER), and call heapclient.h directly, so that the
 * allocator drivers' code stays as it is (a small object's fast path is
 * sensitive to where the driver's code lands).
 *
 *   wl_root_get  r1. one thread looks up WL_ROOT_NAMES bound names in a
 *                    random order: lookups per second. The names are bound
 *                    once (untimed) and stay bound for later repetitions.
 *   wl_root_rtt  r2. round trips, in the same process and interleaved in
 *                    rounds, so that they are measured under the same load:
 *                    hc_root_set (a name rebound between two objects),
 *                    hc_root_cas (the same, by cas), and the raw round trip
 *                    of a 64-byte message over a Unix socket pair to an
 *                    echoing process, the floor any request pays (a RootSet
 *                    frame is about 45 bytes, its reply about 10), twice:
 *                    with blocking reads (workload 6's floor), and with the
 *                    reader polling for up to SPIN_US before it blocks, as
 *                    libheapclient does (TRANSPORT_REPLY_SPIN_US), the fair
 *                    floor for its round trips.
 *   wl_root_wake r3. the wake-up of hc_root_wait: from just before the
 *                    hc_root_set that binds the name a process sleeps on
 *                    (asleep on its futex) to that process's return.
 */
#include "workloads.h"

#include "heapclient.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NAME_LEN 24
#define GET_CHUNK 1024           /* lookups between clock reads */
#define RTT_SAMPLES 20000        /* most samples of each round trip */
#define RTT_ROUND 250            /* samples of each kind per round */
#define RTT_MSG 64               /* bytes each way over the socket pair */
#define WAKE_SAMPLES 200
#define SPIN_US 50               /* as client/transport.h's TRANSPORT_REPLY_SPIN_US */

/* --- r1. lookups --------------------------------------------------------- */

int wl_root_get(wl_sync_t *s, int id, void *arg)
{
	char(*names)[NAME_LEN] = bench_map((size_t)WL_ROOT_NAMES * NAME_LEN);
	uint32_t *order = bench_map((size_t)WL_ROOT_NAMES * sizeof(uint32_t));
	uint64_t r = 0x2545f4914f6cdd1dULL, n = 0;
	uintptr_t sink = 0;
	(void)arg;

	for (uint32_t i = 0; i < WL_ROOT_NAMES; i++) {
		snprintf(names[i], NAME_LEN, "bench/root/%06u", i);
		order[i] = i;
	}
	/* Bound by an earlier repetition, they stay: bind only what is missing. */
	void *obj = hc_root_get(names[WL_ROOT_NAMES - 1]);
	if (!obj) {
		obj = hc_malloc(64);
		for (uint32_t i = 0; obj && i < WL_ROOT_NAMES; i++) {
			int rc = hc_root_set(names[i], obj);
			if (rc < 0) {
				bench_note("binding %u names: %s (the daemon needs --max-roots %u or more)", i,
				           strerror(-rc), WL_ROOT_NAMES);
				return 1;
			}
		}
	}
	for (uint32_t i = WL_ROOT_NAMES - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(bench_rand(&r) % (i + 1)), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (uint32_t i = 0; i < WL_ROOT_NAMES; i++) /* warm: every name once */
		sink += (uintptr_t)hc_root_get(names[order[i]]);

	uint64_t start = wl_ready(s), deadline = start + s->duration_ns;
	uint32_t at = 0;
	do {
		for (int k = 0; k < GET_CHUNK; k++) {
			sink += (uintptr_t)hc_root_get(names[order[at]]);
			if (++at == WL_ROOT_NAMES)
				at = 0;
		}
		n += GET_CHUNK;
	} while (bench_now() < deadline);
	wl_record(s, id, start, n);
	if (sink != (uintptr_t)obj * (n + WL_ROOT_NAMES)) {
		bench_note("a lookup did not find its name");
		return 1;
	}
	s->w[id].value[0] = (double)n / ((double)(s->w[id].end - start) / 1e9) / 1e6;
	s->w[id].nvalues = 1;
	bench_unmap(names, (size_t)WL_ROOT_NAMES * NAME_LEN);
	bench_unmap(order, (size_t)WL_ROOT_NAMES * sizeof(uint32_t));
	return 0;
}

/* --- r2. round trips, and the wake-ups of r3 ------------------------------ */

/* Read len bytes, polling for up to SPIN_US before a read that blocks. 0 or -1. */
static int spin_read(int fd, void *buf, size_t len)
{
	uint64_t until = bench_now() + SPIN_US * 1000ULL;
	size_t done = 0;
	while (done < len && bench_now() < until) {
		ssize_t k = recv(fd, (char *)buf + done, len - done, MSG_DONTWAIT);
		if (k > 0)
			done += (size_t)k;
		else if (k == 0 || (errno != EAGAIN && errno != EINTR))
			return -1;
	}
	return done < len ? bench_full_io(fd, (char *)buf + done, len - done, 0) : 0;
}

/* 1 when process pid sleeps on a futex (where wchan says; else after a short wait). */
static int asleep(pid_t pid)
{
	char path[64], buf[128];
	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0 || (n == 1 && buf[0] == '0')) {
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
		return 1;
	}
	buf[n] = '\0';
	return strstr(buf, "futex") != NULL;
}

typedef struct wake {
	_Atomic int round;      /* the name the waiter waits for next; -1: stop */
	_Atomic uint64_t woke;  /* when the waiter returned (ns), 0 until it has */
} wake_t;

/* The waiter process: hc_root_wait on each round's name, and note when it returned. */
static void waiter(wake_t *w)
{
	char name[NAME_LEN];
	int k;
	while ((k = atomic_load(&w->round)) >= 0) {
		snprintf(name, sizeof(name), "bench/wake/%d", k);
		if (!hc_root_wait(name, 10000))
			_exit(1);
		atomic_store(&w->woke, bench_now());
		while (atomic_load(&w->round) == k)
			sched_yield();
	}
	_exit(0);
}

/* The wake-up latencies of WAKE_SAMPLES binds, into ns. Returns how many, or -1. */
static int wake_samples(void *obj, uint64_t *ns)
{
	wake_t *w = bench_map_shared(sizeof(*w));
	char name[NAME_LEN];
	int n = 0;

	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0)
		waiter(w);
	for (int k = 0; k < WAKE_SAMPLES; k++) {
		while (!asleep(pid))
			sched_yield();
		snprintf(name, sizeof(name), "bench/wake/%d", k);
		uint64_t t0 = bench_now();
		if (hc_root_set(name, obj) < 0)
			break;
		while (!atomic_load(&w->woke))
			sched_yield();
		ns[n++] = atomic_load(&w->woke) - t0;
		atomic_store(&w->woke, 0);
		atomic_store(&w->round, k + 1 < WAKE_SAMPLES ? k + 1 : -1);
		hc_root_set(name, NULL);
	}
	atomic_store(&w->round, -1);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return n == WAKE_SAMPLES && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? n : -1;
}

int wl_root_rtt(wl_sync_t *s, int id, void *arg)
{
	uint64_t *set = bench_map(RTT_SAMPLES * sizeof(uint64_t));
	uint64_t *cas = bench_map(RTT_SAMPLES * sizeof(uint64_t));
	uint64_t *sock = bench_map(RTT_SAMPLES * sizeof(uint64_t));
	uint64_t *spin = bench_map(RTT_SAMPLES * sizeof(uint64_t));
	char msg[RTT_MSG];
	void *obj[2] = { hc_malloc(64), hc_malloc(64) };
	int sv[2], n = 0, rc = 0, cur = 0;
	(void)arg;

	if (!obj[0] || !obj[1] || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	pid_t echo = fork();
	if (echo < 0)
		return 1;
	if (echo == 0) {
		close(sv[0]);
		while (bench_full_io(sv[1], msg, sizeof(msg), 0) == 0 && bench_full_io(sv[1], msg, sizeof(msg), 1) == 0)
			;
		_exit(0);
	}
	close(sv[1]);
	memset(msg, 'x', sizeof(msg));
	/* warm: the connection, the name's entry, the echo process */
	for (int i = 0; i < 1000 && rc == 0; i++) {
		rc = hc_root_set("bench/rtt", obj[cur ^= 1]) < 0 ||
		     bench_full_io(sv[0], msg, sizeof(msg), 1) || bench_full_io(sv[0], msg, sizeof(msg), 0);
	}

	uint64_t start = wl_ready(s), deadline = start + s->duration_ns;
	while (rc == 0 && n + RTT_ROUND <= RTT_SAMPLES && (n < 2000 || bench_now() < deadline)) {
		for (int i = 0; i < RTT_ROUND && rc == 0; i++) {
			uint64_t t0 = bench_now();
			rc = hc_root_set("bench/rtt", obj[cur ^ 1]) < 0;
			set[n + i] = bench_now() - t0;
			cur ^= 1;
		}
		for (int i = 0; i < RTT_ROUND && rc == 0; i++) {
			uint64_t t0 = bench_now();
			rc = hc_root_cas("bench/rtt", obj[cur], obj[cur ^ 1]) < 0;
			cas[n + i] = bench_now() - t0;
			cur ^= 1;
		}
		for (int i = 0; i < RTT_ROUND && rc == 0; i++) {
			uint64_t t0 = bench_now();
			rc = bench_full_io(sv[0], msg, sizeof(msg), 1) || bench_full_io(sv[0], msg, sizeof(msg), 0);
			sock[n + i] = bench_now() - t0;
		}
		for (int i = 0; i < RTT_ROUND && rc == 0; i++) {
			uint64_t t0 = bench_now();
			rc = bench_full_io(sv[0], msg, sizeof(msg), 1) || spin_read(sv[0], msg, sizeof(msg));
			spin[n + i] = bench_now() - t0;
		}
		n += RTT_ROUND;
	}
	wl_record(s, id, start, (uint64_t)n * 4);
	close(sv[0]);
	waitpid(echo, NULL, 0);
	hc_root_set("bench/rtt", NULL);
	if (rc) {
		bench_note("root round trips failed");
		return 1;
	}
	wl_p50_p99(set, n, &s->w[id].value[0]);
	wl_p50_p99(cas, n, &s->w[id].value[2]);
	wl_p50_p99(sock, n, &s->w[id].value[4]);
	wl_p50_p99(spin, n, &s->w[id].value[6]);
	s->w[id].nvalues = 8;
	snprintf(s->w[id].note, sizeof(s->w[id].note), "%d of each round trip, interleaved in rounds of %d",
	         n, RTT_ROUND);
	return 0;
}

/* --- r3. wake-ups -------------------------------------------------------- */

int wl_root_wake(wl_sync_t *s, int id, void *arg)
{
	uint64_t *wake = bench_map(WAKE_SAMPLES * sizeof(uint64_t));
	void *obj = hc_malloc(64);
	(void)arg;

	uint64_t start = wl_ready(s);
	int n = obj ? wake_samples(obj, wake) : -1;
	wl_record(s, id, start, n > 0 ? (uint64_t)n : 0);
	if (n < 0) {
		bench_note("hc_root_wait wake-ups failed");
		return 1;
	}
	wl_p50_p99(wake, n, &s->w[id].value[0]);
	s->w[id].nvalues = 2;
	return 0;
}
