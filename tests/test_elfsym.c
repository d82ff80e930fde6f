// SPDX-License-Identifier: MIT
/*
 * test_elfsym.c - heapctl's ELF reader (tools/heapctl/elfsym.c) on files a
 * client could have named: its own executable, copies of it cut short, and
 * a copy another thread truncates and rewrites while it is read. Every
 * outcome is a symbol table or an error; none is a fault.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elfsym.h"
#include "harness/check_main.h"
#include "harness/tmpdir.h"
#include "harness/util.h"

static char dir[64];
static uint8_t *image;  /* this program's executable */
static size_t image_len;

static void setup(void)
{
	struct stat st;
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	image_len = (size_t)st.st_size;
	image = malloc(image_len);
	ck_assert_ptr_nonnull(image);
	ck_assert_int_eq(hutil_read_full(fd, image, image_len), 0);
	close(fd);
	htmp_make(dir, sizeof(dir), "heapd-elfsym", HTMP_DISK);
}

static void teardown(void)
{
	htmp_remove(dir);
	free(image);
}

/* The first n bytes of the executable as a file in dir; its path into path. */
static void write_copy(char *path, size_t len, const char *name, size_t n)
{
	snprintf(path, len, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(hutil_write_full(fd, image, n), 0);
	close(fd);
}

START_TEST(test_whole_file)
{
	char path[128], why[256];
	elfsym_t e;

	write_copy(path, sizeof(path), "whole", image_len);
	ck_assert_int_eq(elfsym_open(path, &e, why, sizeof(why)), 0);
	ck_assert_uint_gt(e.nfns, 0);
	int found = 0;
	for (size_t i = 0; i < e.nfns; i++)
		found |= strcmp(e.fns[i].name, "elfsym_open") == 0;
	ck_assert_int_eq(found, 1);
	elfsym_close(&e);
}
END_TEST

/* Cut at the end of the ELF header, at half, and a byte short of the end. */
START_TEST(test_cut_short)
{
	size_t cuts[] = { 64, image_len / 2, image_len - 1 };
	char path[128], why[256];
	elfsym_t e;

	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		write_copy(path, sizeof(path), "short", cuts[k]);
		why[0] = 0;
		int rc = elfsym_open(path, &e, why, sizeof(why));
		ck_assert_msg(rc < 0, "a copy cut at %zu of %zu bytes was read", cuts[k], image_len);
		ck_assert_msg(strstr(why, path) != NULL, "why: %s", why);
		ck_assert_ptr_null(e.fns);
	}
}
END_TEST

/* A thread truncating the file to half and writing it whole again, until stop. */
static atomic_int stop;
static atomic_long cuts;
static int shrink_fd;

static void *shrinker(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		if (ftruncate(shrink_fd, (off_t)(image_len / 2)) < 0)
			break;
		atomic_fetch_add(&cuts, 1);
		if (pwrite(shrink_fd, image + image_len / 2, image_len - image_len / 2,
		           (off_t)(image_len / 2)) != (ssize_t)(image_len - image_len / 2))
			break;
	}
	return NULL;
}

START_TEST(test_shrinks_while_read)
{
	char path[128], why[256];
	int ok = 0, failed = 0;
	pthread_t t;

	write_copy(path, sizeof(path), "shrinking", image_len);
	shrink_fd = open(path, O_WRONLY | O_CLOEXEC);
	ck_assert_int_ge(shrink_fd, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, shrinker, NULL), 0);
	/* enough rounds that many of them see the file cut under them */
	for (int i = 0; i < 2000 || atomic_load(&cuts) < 100; i++) {
		elfsym_t e;
		if (elfsym_open(path, &e, why, sizeof(why)) == 0) {
			ok++;
			elfsym_close(&e);
		} else {
			failed++;
		}
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	close(shrink_fd);
	/* that it got here is the test: no fault */
	ck_assert_int_ge(ok + failed, 2000);
}
END_TEST

static Suite *elfsym_suite(void)
{
	return test_suite_single("elfsym", "files", 120, setup, teardown, test_whole_file,
	                         test_cut_short, test_shrinks_while_read, NULL);
}

TEST_SUITES(elfsym_suite);
