// SPDX-License-Identifier: MIT
/*
 * test_pprof.c - heapctl's profile writer (tools/heapctl/pprof.c) on what
 * clients control: the paths of their mappings and the symbols of the files
 * those name. Whatever bytes they hold, the warnings and --top's table reach
 * the terminal escaped.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elfsym.h"
#include "harness/check_main.h"
#include "harness/tmpdir.h"
#include "harness/util.h"
#include "pprof.h"

#define VICTIM "pprof_top_victim_site"
#define VICTIM_ESC "\033[2Jpprof_top_victim_"
_Static_assert(sizeof(VICTIM) == sizeof(VICTIM_ESC), "the renamed symbol fits in place");

/* The allocation site whose symbol the test renames in a copy of this program. */
__attribute__((noinline, used)) void *pprof_top_victim_site(size_t n)
{
	return malloc(n);
}

static char dir[64];

static void setup(void)
{
	htmp_make(dir, sizeof(dir), "heapd-pprof", HTMP_DISK);
}

static void teardown(void)
{
	htmp_remove(dir);
}

/* A copy of this program with VICTIM renamed VICTIM_ESC, its path into path. */
static void write_renamed_copy(char *path, size_t len)
{
	struct stat st;
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	size_t n = (size_t)st.st_size, renamed = 0;
	char *img = malloc(n);
	ck_assert_ptr_nonnull(img);
	ck_assert_int_eq(hutil_read_full(fd, img, n), 0);
	close(fd);
	for (char *at = img; (at = memmem(at, n - (size_t)(at - img), VICTIM, strlen(VICTIM)));) {
		memcpy(at, VICTIM_ESC, strlen(VICTIM_ESC));
		renamed++;
	}
	ck_assert_uint_gt(renamed, 0);
	snprintf(path, len, "%s/renamed", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(hutil_write_full(fd, img, n), 0);
	close(fd);
	free(img);
}

/* The file virtual address of VICTIM in this program. */
static uint64_t victim_vaddr(void)
{
	char why[256];
	elfsym_t e;
	uint64_t lo = 0;

	ck_assert_int_eq(elfsym_open("/proc/self/exe", &e, why, sizeof(why)), 0);
	for (size_t i = 0; i < e.nfns; i++)
		if (strcmp(e.fns[i].name, VICTIM) == 0)
			lo = e.fns[i].lo;
	elfsym_close(&e);
	ck_assert_uint_ne(lo, 0);
	return lo;
}

static int has_escape_byte(const char *s, size_t n)
{
	return memchr(s, '\033', n) != NULL;
}

START_TEST(test_client_bytes_escaped)
{
	char renamed[128], *warned = NULL, *top = NULL;
	size_t nwarned = 0, ntop = 0;

	write_renamed_copy(renamed, sizeof(renamed));

	/* process 0 allocated in the renamed copy; process 1 in a file named with escapes */
	Heapd__ProfileMapping m[2] = { HEAPD__PROFILE_MAPPING__INIT, HEAPD__PROFILE_MAPPING__INIT };
	m[0].lo = 0;
	m[0].hi = UINT64_MAX;
	m[0].path = renamed;
	m[1].lo = 0;
	m[1].hi = UINT64_MAX;
	m[1].path = "/nonexistent/\033[2J.so";
	Heapd__ProfileMapping *maps0[] = { &m[0] }, *maps1[] = { &m[1] };
	Heapd__ProfileProcess pr[2] = { HEAPD__PROFILE_PROCESS__INIT, HEAPD__PROFILE_PROCESS__INIT };
	pr[0].pid = 100;
	pr[0].n_mappings = 1;
	pr[0].mappings = maps0;
	pr[1].pid = 101;
	pr[1].n_mappings = 1;
	pr[1].mappings = maps1;
	uint64_t frames0[] = { victim_vaddr() + 2 }, frames1[] = { 0x1002 };
	Heapd__ProfileSample s[2] = { HEAPD__PROFILE_SAMPLE__INIT, HEAPD__PROFILE_SAMPLE__INIT };
	for (int i = 0; i < 2; i++) {
		s[i].process = (uint32_t)i;
		s[i].size = 64;
		s[i].rate = 1;
		s[i].live = 1;
		s[i].n_frames = 1;
	}
	s[0].frames = frames0;
	s[1].frames = frames1;
	Heapd__ProfileSummary sum = HEAPD__PROFILE_SUMMARY__INIT;
	sum.live = 2;
	sum.processes = 2;
	sum.profile_rate = 1;
	const Heapd__ProfileProcess *procs[] = { &pr[0], &pr[1] };
	const Heapd__ProfileSample *samples[] = { &s[0], &s[1] };
	heapprof_t hp = { .summary = &sum, .procs = procs, .nprocs = 2, .samples = samples,
	                  .nsamples = 2 };

	FILE *warn = open_memstream(&warned, &nwarned);
	pprof_t *p = pprof_build(&hp, PPROF_LIVE, 0, warn);
	fclose(warn);
	ck_assert_ptr_nonnull(p);
	FILE *out = open_memstream(&top, &ntop);
	pprof_top(p, &hp, 10, out);
	fclose(out);
	pprof_free(p);

	ck_assert_msg(strstr(warned, "/nonexistent/\\x1b[2J.so") != NULL, "warned: %s", warned);
	ck_assert_msg(!has_escape_byte(warned, nwarned), "warned: %s", warned);
	ck_assert_msg(strstr(top, "\\x1b[2Jpprof_top_victim_\n") != NULL, "top: %s", top);
	ck_assert_msg(!has_escape_byte(top, ntop), "top: %s", top);
	free(warned);
	free(top);
}
END_TEST

static Suite *pprof_suite(void)
{
	return test_suite_single("pprof", "client-bytes", 60, setup, teardown,
	                         test_client_bytes_escaped, NULL);
}

TEST_SUITES(pprof_suite);
