// SPDX-License-Identifier: MIT
/*
 * pageheap_fixture.h - a fresh arena and page heap per test, for the page
 * heap and checker suites.
 *
 * Each suite run makes one directory (fx_rundir_make, an unchecked fixture,
 * so in the parent process) on /dev/shm when it is there (tmpfs: punching
 * holes frees memory at once), else under $TMPDIR or /tmp. Each test's
 * arena gets its own directory inside it; fx_close removes that, and
 * fx_rundir_remove removes whatever a failed test left behind.
 */
#ifndef HEAPD_TESTS_PAGEHEAP_FIXTURE_H
#define HEAPD_TESTS_PAGEHEAP_FIXTURE_H

#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "pageheap.h"
#include "segment.h"

#define MIB (1024ull * 1024)

typedef struct heapfx {
	char dir[PATH_MAX + 16];
	char path[PATH_MAX + 32];
	segment_t seg;
	pageheap_t h;
} heapfx_t;

static char fx_rundir[PATH_MAX];

static inline void fx_rundir_make(void)
{
	const char *base = getenv("TMPDIR");
	if (access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	else if (!base || !*base)
		base = "/tmp";
	snprintf(fx_rundir, sizeof(fx_rundir), "%s/heapd-pageheap-XXXXXX", base);
	if (!mkdtemp(fx_rundir)) {
		perror(fx_rundir);
		exit(EXIT_FAILURE);
	}
}

/* Remove the run directory: one level of test directories holding arenas. */
static inline void fx_rundir_remove(void)
{
	DIR *d = opendir(fx_rundir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		char sub[PATH_MAX + 300];
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s/arena", fx_rundir, e->d_name);
		segment_remove(sub);
		snprintf(sub, sizeof(sub), "%s/%s", fx_rundir, e->d_name);
		rmdir(sub);
	}
	closedir(d);
	rmdir(fx_rundir);
}

static inline void fx_open(heapfx_t *fx, uint64_t arena_bytes, uint32_t grow_pages)
{
	memset(fx, 0, sizeof(*fx));
	ck_assert_msg(fx_rundir[0], "fx_rundir_make was not run");
	snprintf(fx->dir, sizeof(fx->dir), "%s/t-XXXXXX", fx_rundir);
	ck_assert_msg(mkdtemp(fx->dir) != NULL, "mkdtemp %s", fx->dir);
	snprintf(fx->path, sizeof(fx->path), "%s/arena", fx->dir);

	segment_params_t params = { .arena_bytes = arena_bytes, .max_clients = 16 };
	char err[256] = "";
	int created = 0;
	int rc = segment_open(fx->path, &params, SEGMENT_CREATE, &fx->seg, &created, err, sizeof(err));
	ck_assert_msg(rc == 0 && created, "create %s: %d %s", fx->path, rc, err);
	ck_assert_int_eq(pageheap_init(&fx->h, &fx->seg), 0);
	if (grow_pages)
		fx->h.grow_pages = grow_pages;
}

/* What a daemon restart does: forget the indexes, reopen the file, rebuild. */
static inline void fx_reopen(heapfx_t *fx)
{
	uint32_t grow = fx->h.grow_pages;
	char err[256] = "";
	pageheap_destroy(&fx->h);
	segment_close(&fx->seg);
	int rc = segment_open(fx->path, NULL, 0, &fx->seg, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "reopen %s: %d %s", fx->path, rc, err);
	ck_assert_int_eq(pageheap_init(&fx->h, &fx->seg), 0);
	fx->h.grow_pages = grow;
}

static inline void fx_close(heapfx_t *fx)
{
	pageheap_destroy(&fx->h);
	segment_close(&fx->seg);
	segment_remove(fx->path);
	rmdir(fx->dir);
}

/* Run the checker (with the indexes unless h is NULL); print what it found. */
static inline size_t fx_check(heapfx_t *fx, const pageheap_t *h, check_report_t *rep)
{
	if (h)
		pageheap_enter(&fx->h);
	size_t n = check_segment(&fx->seg, h, rep);
	if (h)
		pageheap_leave(&fx->h);
	ck_assert_uint_eq(n, rep->nproblems);
	return n;
}

static inline int fx_report_has(const check_report_t *rep, const char *needle)
{
	size_t kept = rep->nproblems < CHECK_MAX_PROBLEMS ? rep->nproblems : CHECK_MAX_PROBLEMS;
	for (size_t i = 0; i < kept; i++)
		if (strstr(rep->problems[i], needle))
			return 1;
	return 0;
}

static inline void fx_print(const check_report_t *rep)
{
	size_t kept = rep->nproblems < CHECK_MAX_PROBLEMS ? rep->nproblems : CHECK_MAX_PROBLEMS;
	for (size_t i = 0; i < kept; i++)
		fprintf(stderr, "  check: %s\n", rep->problems[i]);
}

#define fx_assert_clean(fx)                                                        \
	do {                                                                          \
		check_report_t rep_;                                                      \
		size_t n_ = fx_check((fx), &(fx)->h, &rep_);                              \
		if (n_)                                                                   \
			fx_print(&rep_);                                                      \
		ck_assert_msg(n_ == 0, "check_segment found %zu problems", n_);           \
	} while (0)

static inline uint32_t fx_alloc(heapfx_t *fx, uint32_t npages)
{
	uint32_t span = HEAPD_NIL;
	int rc = pageheap_alloc(&fx->h, npages, 1, &span);
	ck_assert_msg(rc == 0, "alloc %u pages: %d", npages, rc);
	ck_assert_uint_lt(span, fx->seg.hdr->npages_grown);
	return span;
}

static inline shm_span_t *fx_span(heapfx_t *fx, uint32_t id)
{
	return &fx->seg.spans[id];
}

#endif
