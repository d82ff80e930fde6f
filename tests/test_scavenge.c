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
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "heapclient.h"
#include "layout.h"
#include "ops_run.h"

#define MIB (1024ull * 1024)
#define SLACK (8 * MIB)           /* "a few MiB" above the metadata */

static harness_daemon_t daemon_;

static void start_daemon(const char *scavenge_delay)
{
	harness_init(&daemon_);
	daemon_.size = "1G";
	daemon_.extra[0] = "--scavenge-delay";
	daemon_.extra[1] = scavenge_delay;
	int rc = harness_start(&daemon_);
	if (rc < 0) {
		harness_dump_log(&daemon_);
		harness_cleanup(&daemon_);
		ck_abort_msg("heapd did not start: %s", strerror(-rc));
	}
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
	harness_cleanup(&daemon_);
}

/* A file of the arena directory. */
static const char *arena_file(const char *name)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", daemon_.arena, name);
	return path;
}

/* Bytes of the arena's files backed by memory. */
static uint64_t arena_resident(void)
{
	struct stat st;
	uint64_t n = 0;
	ck_assert_int_eq(stat(arena_file(HEAPD_META_FILE), &st), 0);
	n += (uint64_t)st.st_blocks * 512;
	ck_assert_int_eq(stat(arena_file(HEAPD_DATA_FILE), &st), 0);
	return n + (uint64_t)st.st_blocks * 512;
}

/* Size of the metadata regions and bitmaps: everything before the object pages. */
static uint64_t arena_metadata(void)
{
	shm_header_t hdr;
	int fd = open(arena_file(HEAPD_META_FILE), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	close(fd);
	ck_assert_uint_eq(hdr.magic, HEAPD_MAGIC);
	return hdr.pages_off;
}

static void heapctl(const char *cmd, const char *want_prefix)
{
	const char *argv[] = { getenv("HEAPCTL_BIN"), "--socket", daemon_.sock, cmd, NULL };
	ops_run_t r;
	ck_assert_ptr_nonnull(argv[0]);
	ck_assert_int_eq(ops_run(&r, 60000, argv), 0);
	ck_assert_msg(r.status == 0, "heapctl %s: exit %d: %s", cmd, r.status, r.err);
	ck_assert_msg(strncmp(r.out, want_prefix, strlen(want_prefix)) == 0, "heapctl %s said: %s", cmd, r.out);
	ops_run_free(&r);
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
	Heapd__StatsReply *s;
	Heapd__Envelope *owner;
	int fd = harness_control(daemon_.sock);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(harness_stats(fd, &s, &owner), 0);
	*pages_in_use = s->pages_in_use;
	*objects = s->objects_in_use;
	*released = s->pages_released;
	wire_free(owner);
	close(fd);
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
	uint64_t pages, objects, released;

	uint64_t meta = arena_metadata();
	churn(64 * MIB);
	heapctl("sweep", "swept ");

	/*
	 * Free for a second, then the next scavenger pass; allow a generous
	 * margin. The metadata regions are sparse (the roots directory and the
	 * pins cost nothing until used), so the resident size alone may be under
	 * the bound before the scavenger runs: wait for its release as well.
	 */
	uint64_t resident = arena_resident();
	stats(&pages, &objects, &released);
	for (int waited = 0; waited < 20000 && (resident > meta + SLACK || released == 0);
	     waited += 100) {
		ops_sleep_ms(100);
		resident = arena_resident();
		stats(&pages, &objects, &released);
	}
	ck_assert_msg(resident <= meta + SLACK, "the background scavenger left %llu MiB in the arena",
	              (unsigned long long)(resident / MIB));
	ck_assert_uint_gt(released, 0);
}
END_TEST

int main(void)
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
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
