// SPDX-License-Identifier: MIT
/*
 * test_profile_client.c - sampling in libheapclient against a real heapd:
 * what a sample records (the allocation site first, the size, the process,
 * a mapping set naming this executable), frees marked by the owner's fold,
 * by another process and by heapd (a large object), the 8-byte class served
 * from the 16-byte one when sampled, the rate's sources and their order, the
 * exponential rate's average, and nothing at all when sampling is off.
 *
 * The test reads the records straight from the arena it has mapped, through
 * the checked readers of shm/profrec.h; the end-to-end tests read them through
 * heapd and heapctl (test_profile.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/child.h"
#include "harness/util.h"
#include "sock.h"
#include "heapclient.h"
#include "proc.h"
#include "profrec.h"
#include "sizeclass.h"

#define SITE_BYTES 256 /* a site function's code is shorter than this */

static void daemon_up(void)
{
	unsetenv("HEAPD_PROFILE_RATE");
	hd_default_start("256M", NULL);
}

static void daemon_down(void)
{
	hd_default_stop();
}

/* Two allocation sites, kept out of line so that their return addresses are theirs. */
__attribute__((noinline)) static void *site_a(size_t size)
{
	void *p = hc_malloc(size);
	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noinline)) static void *site_b(size_t size)
{
	void *p = hc_malloc(size);
	__asm__ volatile("" ::: "memory");
	return p;
}

typedef struct tally {
	uint32_t live, freed, at_a, at_b, this_pid, with_mapset;
	uint64_t live_bytes;
} tally_t;

static prof_view_t view(void)
{
	prof_view_t v;
	ck_assert_int_eq(prof_view(&proc_g.seg, &v), 0);
	return v;
}

/* ret returns into fn: fn is the nearest of the two sites below it. */
static int in_site(uint64_t ret, void *(*fn)(size_t))
{
	uint64_t f = (uint64_t)(uintptr_t)fn;
	uint64_t other = (uint64_t)(uintptr_t)(fn == site_a ? site_b : site_a);
	return ret > f && ret - f < SITE_BYTES && !(other > f && ret > other);
}

/* Count the records of the arena; every one must read back valid. */
static tally_t tally(void)
{
	prof_view_t v = view();
	tally_t t = { 0 };
	prof_rec_t r;
	uint32_t st;
	const char *why;

	for (uint32_t i = 0; i < v.nrecs; i++) {
		int rc = prof_read_rec(&v, i, &r, &st, &why);
		ck_assert_msg(rc != -EINVAL, "record %u: %s", i, why);
		if (rc < 0)
			continue;
		if (prof_kind(st) == PROF_LIVE) {
			t.live++;
			t.live_bytes += r.size;
		} else {
			t.freed++;
		}
		t.at_a += in_site(r.frames[0], site_a);
		t.at_b += in_site(r.frames[0], site_b);
		t.this_pid += r.pid == (uint32_t)getpid();
		t.with_mapset += r.mapset != HEAPD_NIL;
	}
	return t;
}

/* The process's mapping set names this executable first, with a build ID. */
static void check_mapset(void)
{
	prof_view_t v = view();
	prof_mapset_t *ms = malloc(sizeof(*ms));
	char exe[256] = "";
	uint32_t st;
	const char *why;
	int found = 0;

	ck_assert(readlink("/proc/self/exe", exe, sizeof(exe) - 1) > 0);
	for (uint32_t i = 0; i < v.nmapsets && !found; i++) {
		if (prof_read_mapset(&v, i, ms, &st, &why) < 0 || ms->pid != (uint32_t)getpid())
			continue;
		found = 1;
		ck_assert_str_eq(ms->maps[0].path, exe);
		ck_assert_uint_gt(ms->maps[0].build_id_len, 0);
		uint64_t a = (uint64_t)(uintptr_t)site_a;
		int covers = 0;
		for (uint32_t k = 0; k < ms->nmaps; k++)
			covers |= ms->maps[k].lo <= a && a < ms->maps[k].hi;
		ck_assert_msg(covers, "no object of the set holds site_a");
	}
	ck_assert_msg(found, "no mapping set for this process");
	free(ms);
}

START_TEST(test_off_records_nothing)
{
	void *p[1000];
	for (int i = 0; i < 1000; i++)
		p[i] = site_a(64);
	for (int i = 0; i < 1000; i++)
		hc_free(p[i]);
	tally_t t = tally();
	ck_assert_uint_eq(t.live + t.freed, 0);
	ck_assert_uint_eq(hc_profile_rate(0), 0);
}
END_TEST

START_TEST(test_every_allocation_at_rate_1)
{
	enum { N = 300 };
	void *a[N], *b[N];

	ck_assert_uint_eq(hc_profile_rate(1), 0);
	for (int i = 0; i < N; i++) {
		a[i] = site_a(48);
		b[i] = site_b(200);
	}
	tally_t t = tally();
	ck_assert_uint_eq(t.live, 2 * N);
	ck_assert_uint_eq(t.at_a, N);
	ck_assert_uint_eq(t.at_b, N);
	ck_assert_uint_eq(t.this_pid, 2 * N);
	ck_assert_uint_eq(t.with_mapset, 2 * N);
	ck_assert_uint_eq(t.live_bytes, N * (uint64_t)(sizeclass_size[sizeclass_of(48)] +
	                                               sizeclass_size[sizeclass_of(200)]));
	check_mapset();

	/* freed by this thread (its own spans: alloc bits cleared directly), reaped by its next fold */
	for (int i = 0; i < N; i++)
		hc_free(a[i]);
	ck_assert_int_eq(hc_trim(), 0); /* hands the spans to heapd, whose sweep reaps what is left */
	t = tally();
	ck_assert_uint_eq(t.live, N);
	ck_assert_uint_eq(t.freed, N);
	/* the other spans went back to heapd with the trim: their frees wait for its sweep */
	for (int i = 0; i < N; i++)
		hc_free(b[i]);
	ck_assert(hctl_settle(hd_default.sock, 10));
	t = tally();
	ck_assert_uint_eq(t.live, 0);
	ck_assert_uint_eq(t.freed, 2 * N);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_free_by_another_process)
{
	enum { N = 200 };
	uint64_t offs[N];
	int fds[2];

	hc_profile_rate(1);
	for (int i = 0; i < N; i++)
		offs[i] = hc_ptr_to_off(site_a(96));
	ck_assert_uint_eq(tally().live, N);
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* the child frees them all: free bits, for the owner's fold */
		for (int i = 0; i < N; i++)
			hc_free(hc_off_to_ptr(offs[i]));
		_exit(0);
	}
	ck_assert_int_eq(hchild_wait(pid), 0);
	ck_assert_uint_eq(tally().live, N); /* not folded yet */
	/*
	 * The owner's next allocations in the class fold the free bits, word by
	 * word, and reap the records: 3 * N of them use up every slot its spans
	 * have, so every word has been folded before the refill they need.
	 */
	void *more[3 * N];
	for (int i = 0; i < 3 * N; i++)
		more[i] = site_b(96);
	tally_t t = tally();
	ck_assert_uint_eq(t.at_a, N);
	ck_assert_uint_eq(t.freed, N);
	ck_assert_uint_eq(t.live, 3 * N); /* site_b's */
	for (int i = 0; i < 3 * N; i++)
		hc_free(more[i]);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(test_eight_bytes_from_sixteen)
{
	hc_profile_rate(1);
	void *p = site_a(8);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(hc_usable_size(p), 16);
	tally_t t = tally();
	ck_assert_uint_eq(t.live, 1);
	ck_assert_uint_eq(t.live_bytes, 16);
	hc_profile_rate(0);
	void *q = site_a(8);
	ck_assert_uint_eq(hc_usable_size(q), 8); /* unsampled: its own class */
	hc_free(p);
	hc_free(q);
	hc_trim();
	ck_assert_uint_eq(tally().live, 0);
}
END_TEST

START_TEST(test_large_freed_by_heapd)
{
	hc_profile_rate(1);
	void *p = site_a(100000);
	ck_assert_ptr_nonnull(p);
	tally_t t = tally();
	ck_assert_uint_eq(t.live, 1);
	ck_assert_uint_eq(t.at_a, 1);
	ck_assert_uint_eq(t.live_bytes, hc_usable_size(p));
	hc_free(p); /* LargeFree: heapd frees the span, and the record with it */
	ck_assert_msg(hutil_wait_until(tally().live == 0, 10000), "the record outlived the span");
	ck_assert_uint_eq(tally().freed, 1);
}
END_TEST

START_TEST(test_rate_sources)
{
	/* $HEAPD_PROFILE_RATE, read at the first allocation, is the rate... */
	setenv("HEAPD_PROFILE_RATE", "1", 1);
	void *p = site_a(64);
	ck_assert_uint_eq(tally().live, 1);
	/* ...until the process sets its own */
	ck_assert_uint_eq(hc_profile_rate(0), 1);
	void *q = site_a(64);
	ck_assert_uint_eq(tally().live, 1);
	hc_free(p);
	hc_free(q);
}
END_TEST

START_TEST(test_daemon_rate)
{
	/* a daemon with profile-rate 1 and a client that sets nothing */
	hd_default_stop();
	hd_init(&hd_default);
	hd_default.extra[0] = "--profile-rate";
	hd_default.extra[1] = "1";
	hd_default.size = "256M";
	ck_assert_int_eq(hd_start(&hd_default), 0);
	setenv("HEAPD_SOCKET", hd_default.sock, 1);
	void *p[10];
	for (int i = 0; i < 10; i++)
		p[i] = site_b(64);
	tally_t t = tally(); /* the Hello came before the first window: every one is sampled */
	ck_assert_uint_eq(t.live, 10);
	ck_assert_uint_eq(t.at_b, 10);
	for (int i = 0; i < 64; i++)
		hc_free(site_b(64));
	ck_assert_uint_ge(tally().at_b, 64);
	for (int i = 0; i < 10; i++)
		hc_free(p[i]);
}
END_TEST

START_TEST(test_average_rate)
{
	/* 8 MiB in 64-byte objects at one sample per 8 KiB: Poisson, mean 1024 */
	enum { RATE = 8192, SIZE = 64, TOTAL = 8 << 20, BATCH = 4096 };
	void *p[BATCH];
	hc_profile_rate(RATE);
	for (size_t done = 0; done < TOTAL; done += BATCH * SIZE) {
		for (int i = 0; i < BATCH; i++)
			p[i] = site_a(SIZE);
		for (int i = 0; i < BATCH; i++)
			hc_free(p[i]);
	}
	hc_trim();
	tally_t t = tally();
	/* within 5 standard deviations (32 each) of the mean */
	ck_assert_msg(t.freed + t.live >= 1024 - 160 && t.freed + t.live <= 1024 + 160,
	              "%u samples for a mean of 1024", t.freed + t.live);
	ck_assert_uint_eq(t.live, 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("profile_client");
	TCase *tc = tcase_create("sampling");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_add_test(tc, test_off_records_nothing);
	tcase_add_test(tc, test_every_allocation_at_rate_1);
	tcase_add_test(tc, test_free_by_another_process);
	tcase_add_test(tc, test_eight_bytes_from_sixteen);
	tcase_add_test(tc, test_large_freed_by_heapd);
	tcase_add_test(tc, test_rate_sources);
	tcase_add_test(tc, test_daemon_rate);
	tcase_add_test(tc, test_average_rate);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(suite);
