// SPDX-License-Identifier: MIT
/*
 * test_failures.c - failures and hostile peers that no module's suite covers
 * end to end, each through the real daemon and the real library:
 *   - a stuck client (it stops reading in the middle of a reply, then floods
 *     requests it never reads) costs the daemon bounded memory and never
 *     holds up another client;
 *   - a library client running as a user the daemon does not allow is
 *     refused before any message of it is processed, with a log line;
 *   - the arena file is mode 0600, so another user the daemon does allow
 *     cannot open it, yet allocates: the descriptor reaches it only through
 *     the socket;
 *   - a library client that writes the page map, the span table, the header
 *     or the client table faults, while its objects and bitmaps are writable;
 *   - --client-quota: past it a client gets ENOMEM from hc_malloc, another
 *     client is unaffected, and freeing makes room again;
 *   - heapd refuses a truncated arena, or one of a newer layout, without
 *     touching it.
 * Each test starts its own daemon (harness/heapd.h) in its own process.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/child.h"
#include "harness/ctl.h"
#include "harness/heapd.h"
#include "harness/raw.h"
#include "harness/util.h"
#include "harness/view.h"
#include "heapclient.h"
#include "layout.h"

#define STUCK_ANON_BOUND (64u << 20) /* daemon memory growth a stuck client may cause */
#define STUCK_WAIT_MS 60000          /* bound of each wait in the stuck-client test */

/* Run fn(arg) in a child: its exit status, or 128 + the signal that ended it. */
static int in_child(int (*fn)(void *), void *arg)
{
	return hchild_wait(hchild_spawn(fn, arg));
}

/* ---- a stuck client ---- */

/* A process's private memory (kB), from /proc: the arena is shared and not counted. */
static uint64_t rss_anon_kb(pid_t pid)
{
	char path[64], line[256];
	uint64_t kb = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %lu kB", (unsigned long *)&kb) == 1)
			break;
	fclose(f);
	return kb;
}

typedef struct stuck_shared {
	_Atomic uint64_t rounds;   /* the other client's rounds of requests */
	_Atomic int stuck_phase;   /* 1: mid-reply and silent; 2: flooding; 3: dropped by the daemon */
	_Atomic int stop;
	_Atomic int failed;
	char why[200];
} stuck_shared_t;

static stuck_shared_t *SS;

/* Rounds of requests: a refill, a hand-back and a large object each, all checked. */
static void busy_client(void)
{
	uint64_t rng = 77;
	while (!atomic_load(&SS->stop)) {
		size_t small = 1 + hutil_rand(&rng) % 4096, large = 40000 + hutil_rand(&rng) % 200000;
		void *a = hc_malloc(small), *b = hc_malloc(large);
		if (!a || !b) {
			snprintf(SS->why, sizeof(SS->why), "hc_malloc: %s", strerror(errno));
			atomic_store(&SS->failed, 1);
			_exit(1);
		}
		hutil_fill(a, small, 1);
		hutil_fill(b, large, 2);
		if (!hutil_verify(a, small, 1) || !hutil_verify(b, large, 2)) {
			snprintf(SS->why, sizeof(SS->why), "pattern damaged");
			atomic_store(&SS->failed, 1);
			_exit(1);
		}
		hc_free(a);
		hc_free(b);
		if (hc_trim() < 0) {
			atomic_store(&SS->failed, 1);
			_exit(1);
		}
		atomic_fetch_add(&SS->rounds, 1);
	}
	hc_disconnect();
	_exit(0);
}

/*
 * Read half of one reply, go silent, then flood the daemon with requests and
 * never read again, until the daemon drops the connection.
 */
static void stuck_client(void)
{
	static hraw_flood_t flood;
	hraw_req_t req;
	uint8_t half[16];
	int small = 4096;

	int fd = hctl_open(hd_default.sock);
	if (fd < 0)
		_exit(2);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	/* Clients is answered at once; a Stats would wait its turn and stop the reading meanwhile */
	if (wire_send(fd, hraw_req_empty(&req, HEAPD__ENVELOPE__MSG_CLIENTS)) < 0 ||
	    hutil_read_full(fd, half, sizeof(half)) < 0)
		_exit(3);
	atomic_store(&SS->stuck_phase, 1);
	if (!hutil_wait_until(atomic_load(&SS->stuck_phase) != 1, STUCK_WAIT_MS))
		_exit(4);
	hraw_flood_init(&flood, 0);
	if (!hutil_wait_until(hraw_flood(&flood, fd) < 0, STUCK_WAIT_MS)) /* until dropped */
		_exit(5);
	atomic_store(&SS->stuck_phase, 3);
	pause();
	_exit(0);
}

/* 1 once the busy client has made `want` rounds; fails the test on its error. */
static int busy_at(uint64_t want)
{
	ck_assert_msg(!atomic_load(&SS->failed), "busy client: %s", SS->why);
	return atomic_load(&SS->rounds) >= want;
}

/* Wait until the busy client has done `more` more rounds (a generous bound). */
static void busy_progress(uint64_t more)
{
	uint64_t want = atomic_load(&SS->rounds) + more;
	ck_assert_msg(hutil_wait_until(busy_at(want), STUCK_WAIT_MS),
	              "the other client made %llu of %llu rounds in %d s",
	              (unsigned long long)atomic_load(&SS->rounds), (unsigned long long)want,
	              STUCK_WAIT_MS / 1000);
}

START_TEST(test_stuck_client)
{
	/* In a sanitized build, freed memory waits in a quarantine: measure the daemon, not that. */
	const char *asan = getenv("ASAN_OPTIONS");
	char *saved = asan ? strdup(asan) : NULL, opts[512];
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
	         saved ? saved : "", saved && *saved ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	hd_default_start(NULL, NULL);
	if (saved)
		setenv("ASAN_OPTIONS", saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	free(saved);
	SS = hutil_shared(sizeof(*SS));
	uint64_t base_kb = rss_anon_kb(hd_default.pid), peak_kb = base_kb;

	pid_t busy = fork();
	ck_assert_int_ge(busy, 0);
	if (busy == 0)
		busy_client();
	busy_progress(20);
	pid_t stuck = fork();
	ck_assert_int_ge(stuck, 0);
	if (stuck == 0)
		stuck_client();

	/* Silent in the middle of a reply: everyone else is served. */
	ck_assert_msg(hutil_wait_until(atomic_load(&SS->stuck_phase) == 1, 10000),
	              "the stuck client never got half a reply");
	busy_progress(200);
	/* Flooding without reading: served still, and the daemon drops it at its output cap. */
	uint64_t before = atomic_load(&SS->rounds);
	atomic_store(&SS->stuck_phase, 2);
	uint64_t end = heapd_now_ms() + STUCK_WAIT_MS;
	while (!hd_log_contains(&hd_default, "does not read its replies")) {
		ck_assert_msg(heapd_now_ms() < end, "the daemon never dropped the stuck client");
		uint64_t kb = rss_anon_kb(hd_default.pid);
		peak_kb = kb > peak_kb ? kb : peak_kb;
		hutil_sleep_us(5000); /* a sample of the daemon's memory every 5 ms */
	}
	busy_progress(200);
	uint64_t during = atomic_load(&SS->rounds) - before;
	ck_assert_msg((peak_kb - base_kb) * 1024 < STUCK_ANON_BOUND,
	              "the daemon's private memory grew by %llu kB for a stuck client",
	              (unsigned long long)(peak_kb - base_kb));

	atomic_store(&SS->stop, 1);
	ck_assert_int_eq(hchild_wait(busy), 0);
	kill(stuck, SIGKILL);
	hchild_wait(stuck);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	fprintf(stderr, "failures: stuck client: dropped at the output cap; the daemon's private memory "
	                "peaked %llu kB above its start; the other client made %llu rounds meanwhile\n",
	        (unsigned long long)(peak_kb - base_kb), (unsigned long long)during);
}
END_TEST

/* ---- peers ---- */

static int connect_as_nobody(void *arg)
{
	(void)arg;
	if (hchild_become_nobody() < 0)
		return 10;
	int rc = hc_connect(NULL);
	if (rc != -EACCES)
		return 11;
	errno = 0;
	if (hc_malloc(16) != NULL || errno != EACCES)
		return 12;
	return 0;
}

START_TEST(test_peer_refused)
{
	char needle[64];
	hd_default_start(NULL, NULL);
	hd_open_up(&hd_default);
	pid_t pid = hchild_spawn(connect_as_nobody, NULL);
	int st = hchild_wait(pid);
	ck_assert_msg(st == 0, "the child as uid %d: status %d", HCHILD_NOBODY, st);
	snprintf(needle, sizeof(needle), "refused connection from pid %d uid %d", (int)pid, HCHILD_NOBODY);
	ck_assert(hd_wait_log(&hd_default, needle, 2000));
	/* refused before any message: no session was ever made for it */
	snprintf(needle, sizeof(needle), "(pid %d uid", (int)pid);
	ck_assert(!hd_log_contains(&hd_default, needle));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* As nobody, allowed in: the arena's files will not open, yet objects come. */
static int allowed_nobody(void *arg)
{
	(void)arg;
	if (hchild_become_nobody() < 0)
		return 10;
	if (open(hd_arena_file(&hd_default, HEAPD_META_FILE), O_RDWR) >= 0 || errno != EACCES)
		return 11;
	if (open(hd_arena_file(&hd_default, HEAPD_DATA_FILE), O_RDONLY) >= 0 || errno != EACCES)
		return 12;
	char *p = hc_malloc(1000);
	if (!p)
		return 13;
	hutil_fill(p, 1000, 5);
	if (!hutil_verify(p, 1000, 5))
		return 14;
	hc_free(p);
	void *big = hc_malloc(1 << 20);
	if (!big)
		return 15;
	hc_free(big);
	hc_disconnect();
	return 0;
}

START_TEST(test_arena_only_by_descriptor)
{
	struct stat sb;
	hd_default_start(NULL, "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	ck_assert_int_eq(stat(hd_default.arena, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0700);
	ck_assert_uint_eq(sb.st_uid, geteuid());
	ck_assert_int_eq(stat(hd_arena_file(&hd_default, HEAPD_META_FILE), &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	int st = in_child(allowed_nobody, NULL);
	ck_assert_msg(st == 0, "status %d", st);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- the metadata is read-only for clients ---- */

static void no_core(void)
{
	struct rlimit rl = { 0, 0 };
	setrlimit(RLIMIT_CORE, &rl);
	signal(SIGSEGV, SIG_DFL);
}

/* The arena's header as this client maps it. */
static const shm_header_t *client_arena(void)
{
	hview_t v;
	if (hview_map(&v) < 0)
		_exit(20);
	return v.hdr;
}

/* Read a word, which must work, then write it back, which must fault. */
static void poke(uintptr_t addr)
{
	no_core();
	uint32_t v = *(volatile uint32_t *)addr;
	*(volatile uint32_t *)addr = v;
}

/* The parts of the metadata a client tries to write. */
enum { META_PAGEMAP, META_SPANS, META_HEADER, META_CLIENTS };

/* Poke a word of the part of the metadata *arg names. */
static int write_meta(void *arg)
{
	const shm_header_t *h = client_arena();
	uintptr_t base = (uintptr_t)h;
	switch (*(const int *)arg) {
	case META_PAGEMAP:
		poke(base + h->pagemap_off);
		break;
	case META_SPANS:
		poke(base + h->spans_off + offsetof(shm_span_t, owner));
		break;
	case META_HEADER:
		poke((uintptr_t)&h->npages_grown);
		break;
	default:
		poke(base + h->clients_off);
		break;
	}
	return 0;
}

/* Objects and bitmaps are the client's to write (free bits by atomic OR, through hc_free). */
static int write_objects(void *arg)
{
	(void)arg;
	const shm_header_t *h = client_arena();
	char *p = hc_malloc(100);
	if (!p)
		return 1;
	memset(p, 0x5a, 100);
	/* the free bit of a word nobody uses: a page past the grown heap */
	_Atomic uint64_t *bits = (_Atomic uint64_t *)((uintptr_t)h + h->bits_off);
	atomic_fetch_or(&bits[(uint64_t)(h->npages_max - 1) * HEAPD_BITS_WORDS_PER_PAGE + 4], 0);
	hc_free(p);
	hc_disconnect();
	return 0;
}

START_TEST(test_client_cannot_write_metadata)
{
	static const struct {
		const char *what;
		int part;
	} writers[] = {
		{ "page map", META_PAGEMAP },
		{ "span table", META_SPANS },
		{ "header", META_HEADER },
		{ "client table", META_CLIENTS },
	};
	hd_default_start(NULL, NULL);
	for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++) {
		int st = in_child(write_meta, (void *)&writers[i].part);
		ck_assert_msg(st == 128 + SIGSEGV, "a client writing the %s: status %d", writers[i].what, st);
	}
	int st = in_child(write_objects, NULL);
	ck_assert_msg(st == 0, "a client writing its objects: status %d", st);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- quotas ---- */

#define QUOTA_OBJ (100u << 10)

/* Large objects until the quota stops us; then wait for the word, free and allocate again. */
static void quota_hog(int ready, int go)
{
	void *v[64];
	int n = 0;
	for (; n < 64; n++) {
		errno = 0;
		v[n] = hc_malloc(QUOTA_OBJ);
		if (!v[n])
			break;
	}
	int why = errno;
	errno = 0;
	void *small = NULL;
	/* small objects are refused too once the quota is spent (after what the cache holds) */
	for (int i = 0; i < 100000 && (small = hc_malloc(512)) != NULL; i++)
		;
	int small_why = errno;
	char report[3] = { (char)n, (char)(why == ENOMEM), (char)(small == NULL && small_why == ENOMEM) };
	if (hutil_write_full(ready, report, sizeof(report)) < 0 || hutil_read_full(go, report, 1) < 0)
		_exit(2);
	for (int i = 0; i < n; i++)
		hc_free(v[i]);
	void *again = hc_malloc(QUOTA_OBJ);
	_exit(again ? 0 : 3);
}

/* Its own quota, all of it: nearly 1 MiB at once, then small objects of many classes. */
static int other_client(void *arg)
{
	(void)arg;
	void *big = hc_malloc(900u << 10);
	if (!big)
		return 1;
	hc_free(big);
	for (int i = 0; i < 1000; i++) {
		void *p = hc_malloc(1 + (size_t)i % 2000);
		if (!p)
			return 2;
		hc_free(p);
	}
	return 0;
}

START_TEST(test_quota)
{
	int ready[2], go[2];
	char report[3];
	hd_default_start(NULL, "--client-quota", "1M", NULL);
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid_t hog = fork();
	ck_assert_int_ge(hog, 0);
	if (hog == 0)
		quota_hog(ready[1], go[0]);
	ck_assert_int_eq(hutil_read_full(ready[0], report, sizeof(report)), 0);
	ck_assert_msg(report[0] >= 5 && (uint64_t)report[0] * QUOTA_OBJ <= (1u << 20),
	              "%d objects of %u bytes under a 1 MiB quota", report[0], QUOTA_OBJ);
	ck_assert_msg(report[1], "the large allocation past the quota did not fail with ENOMEM");
	ck_assert_msg(report[2], "small allocations past the quota did not fail with ENOMEM");
	/* another client is unaffected */
	int st = in_child(other_client, NULL);
	ck_assert_msg(st == 0, "the other client: status %d", st);
	ck_assert(hd_log_contains(&hd_default, "quota"));
	/* freeing makes room */
	ck_assert_int_eq(hutil_write_full(go[1], "g", 1), 0);
	ck_assert_int_eq(hchild_wait(hog), 0);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- unusable arenas ---- */

START_TEST(test_unusable_arenas)
{
	static const char *const kinds[] = { "truncated", "newer" };
	char out[4096];
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		hd_default_start("16M", NULL);
		/* its signal handlers are in place once it says it is serving */
		ck_assert(hd_wait_log(&hd_default, "serving", 10000));
		hd_stop(&hd_default, SIGTERM);
		struct stat sb;
		const char *meta = hd_arena_file(&hd_default, HEAPD_META_FILE);
		ck_assert_int_eq(stat(meta, &sb), 0);
		off_t size = sb.st_size;
		if (k == 0) {
			size -= 3 * HEAPD_PAGE_SIZE;
			ck_assert_int_eq(truncate(meta, size), 0);
		} else {
			shm_header_t h;
			int fd = open(meta, O_RDWR);
			ck_assert_int_ge(fd, 0);
			ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
			h.version = HEAPD_LAYOUT_VERSION + 1;
			ck_assert_int_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
			close(fd);
		}
		const char *args[] = { "--socket", hd_default.sock, "--arena", hd_default.arena,
		                       "--arena-size", "16M", NULL };
		int st = hd_run_heapd(args, out, sizeof(out), 20000);
		ck_assert_msg(st == 1, "%s arena: status %d", kinds[k], st);
		ck_assert_msg(strstr(out, kinds[k]) && strstr(out, "--reset"), "%s arena: %s", kinds[k], out);
		ck_assert_int_eq(stat(meta, &sb), 0);
		ck_assert_int_eq(sb.st_size, size);
		if (k == 1) {
			shm_header_t h;
			hview_read_header(hd_default.arena, &h); /* the magic too */
			ck_assert_uint_eq(h.version, HEAPD_LAYOUT_VERSION + 1);
		}
		ck_assert(access(hd_default.sock, F_OK) != 0);
		hd_default_stop();
	}
}
END_TEST

static Suite *failures_suite(void)
{
	return test_suite_single("failures", "failures", 180, NULL, hd_default_stop,
	                         test_stuck_client,
	                         test_peer_refused,
	                         test_arena_only_by_descriptor,
	                         test_client_cannot_write_metadata,
	                         test_quota,
	                         test_unusable_arenas,
	                         NULL);
}

TEST_SUITES(failures_suite);
