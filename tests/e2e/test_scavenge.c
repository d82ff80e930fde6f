// SPDX-License-Identifier: MIT
/*
 * test_scavenge.c - freed memory goes back to the OS.
 *
 * A client allocates 256 MiB through libheapclient, large objects and small
 * ones of several classes, and writes every byte, so the arena file really
 * holds that much memory. It frees everything and disconnects. Then:
 *
 *   - `heapctl sweep` and `heapctl scavenge` (the scavenger's delay set to an
 *     hour, so only the command can be releasing): the file's allocated
 *     blocks (st_blocks, what du shows) fall to the metadata regions
 *     (header.pages_off) plus a few MiB, and stats count the pages released;
 *   - with --scavenge-delay 1 and only `heapctl sweep`, the background
 *     scavenger releases them by itself within a few seconds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/child.h"
#include "harness/ctl.h"
#include "harness/heapd.h"
#include "harness/util.h"
#include "harness/view.h"
#include "heapclient.h"
#include "layout.h"

#define MIB (1024ull * 1024)
#define SLACK (8 * MIB)           /* "a few MiB" above the metadata */

static hd_t daemon_;

static void start_daemon(const char *scavenge_delay)
{
	hd_init(&daemon_);
	daemon_.size = "1G";
	daemon_.extra[0] = "--scavenge-delay";
	daemon_.extra[1] = scavenge_delay;
	hd_must_start(&daemon_);
}

/* Fixtures, run unchecked (in the runner process) so that teardown runs even after a failure. */
static void setup_delay_hour(void)
{
	start_daemon("3600");
}

static void setup_delay_second(void)
{
	start_daemon("1");
}

static void teardown(void)
{
	hd_cleanup(&daemon_);
}

/* Bytes of the arena's files backed by memory. */
static uint64_t arena_resident(void)
{
	struct stat st;
	uint64_t n = 0;
	ck_assert_int_eq(stat(hd_arena_file(&daemon_, HEAPD_META_FILE), &st), 0);
	n += (uint64_t)st.st_blocks * 512;
	ck_assert_int_eq(stat(hd_arena_file(&daemon_, HEAPD_DATA_FILE), &st), 0);
	return n + (uint64_t)st.st_blocks * 512;
}

/* Size of the metadata regions and bitmaps: everything before the object pages. */
static uint64_t arena_metadata(void)
{
	shm_header_t hdr;
	hview_read_header(daemon_.arena, &hdr);
	return hdr.pages_off;
}

static void heapctl(const char *cmd, const char *want_prefix)
{
	hchild_run_t r;
	hchild_run_heapctl(&r, 60000, "--socket", daemon_.sock, cmd, (const char *)NULL);
	ck_assert_msg(r.status == 0, "heapctl %s: exit %d: %s", cmd, r.status, r.err);
	ck_assert_msg(strncmp(r.out, want_prefix, strlen(want_prefix)) == 0, "heapctl %s said: %s", cmd, r.out);
	hchild_run_free(&r);
}

/* Allocate `total` bytes, about a quarter of it in small objects, write all of it, free it all. */
static void churn(uint64_t total)
{
	static const size_t small_sizes[] = { 16, 48, 256, 1024, 4096, 16384, 32768 };
	size_t cap = 1 << 16, n = 0;
	void **objs = malloc(cap * sizeof(*objs));
	uint64_t done = 0;

	ck_assert_ptr_nonnull(objs);
	ck_assert_int_eq(hc_connect(daemon_.sock), 0);
	for (size_t i = 0; done < total / 4; i++) {
		size_t sz = small_sizes[i % (sizeof(small_sizes) / sizeof(small_sizes[0]))];
		ck_assert_uint_lt(n, cap);
		objs[n] = hc_malloc(sz);
		ck_assert_msg(objs[n] != NULL, "hc_malloc(%zu): %s", sz, strerror(errno));
		memset(objs[n], 0x5a, sz);
		n++;
		done += sz;
	}
	while (done < total) {
		ck_assert_uint_lt(n, cap);
		objs[n] = hc_malloc(MIB);
		ck_assert_msg(objs[n] != NULL, "hc_malloc(1 MiB): %s", strerror(errno));
		memset(objs[n], 0xa5, MIB);
		n++;
		done += MIB;
	}
	ck_assert_msg(arena_resident() >= total, "arena holds %llu bytes after writing %llu",
	              (unsigned long long)arena_resident(), (unsigned long long)total);
	for (size_t i = 0; i < n; i++)
		hc_free(objs[i]);
	free(objs);
	hc_disconnect();
}

/* Stats over a control connection. */
static void stats(uint64_t *pages_in_use, uint64_t *objects, uint64_t *released)
{
	Heapd__Envelope *owner;
	Heapd__StatsReply *s = hctl_stats(daemon_.sock, &owner);
	ck_assert_ptr_nonnull(s);
	*pages_in_use = s->pages_in_use;
	*objects = s->objects_in_use;
	*released = s->pages_released;
	wire_free(owner);
}

START_TEST(test_scavenge_now)
{
	uint64_t pages, objects, released;

	uint64_t meta = arena_metadata();
	churn(256 * MIB);

	heapctl("sweep", "swept ");
	stats(&pages, &objects, &released);
	ck_assert_uint_eq(objects, 0);
	ck_assert_uint_eq(pages, 0);

	heapctl("scavenge", "released ");
	uint64_t resident = arena_resident();
	printf("scavenge: after 256 MiB freed, the arena holds %.1f MiB (metadata regions %.1f MiB)\n",
	       (double)resident / MIB, (double)meta / MIB);
	ck_assert_msg(resident <= meta + SLACK,
	              "after scavenge the arena holds %llu MiB; metadata is %llu MiB, allowed %llu MiB more",
	              (unsigned long long)(resident / MIB), (unsigned long long)(meta / MIB),
	              (unsigned long long)(SLACK / MIB));
	stats(&pages, &objects, &released);
	ck_assert_msg(released * HEAPD_PAGE_SIZE >= 248 * MIB, "stats report %llu pages released",
	              (unsigned long long)released);
}
END_TEST

START_TEST(test_scavenge_background)
{
	uint64_t pages = 0, objects = 0, released = 0;

	uint64_t meta = arena_metadata();
	churn(64 * MIB);
	heapctl("sweep", "swept ");

	/*
	 * Free for a second, then the next scavenger pass; allow a generous
	 * margin. The metadata regions are sparse (the roots directory and the
	 * pins cost nothing until used), so the resident size alone may be under
	 * the bound before the scavenger runs: wait for its release as well.
	 */
	uint64_t resident;
	ck_assert_msg(hutil_wait_until((resident = arena_resident()) <= meta + SLACK &&
	                               (stats(&pages, &objects, &released), released > 0), 20000),
	              "the background scavenger left %llu MiB in the arena",
	              (unsigned long long)(resident / MIB));
	ck_assert_uint_gt(released, 0);
}
END_TEST

static Suite *scavenge_suite(void)
{
	Suite *s = suite_create("scavenge");
	TCase *tc = tcase_create("now");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, setup_delay_hour, teardown);
	tcase_add_test(tc, test_scavenge_now);
	suite_add_tcase(s, tc);

	tc = tcase_create("background");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, setup_delay_second, teardown);
	tcase_add_test(tc, test_scavenge_background);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(scavenge_suite);
