// SPDX-License-Identifier: MIT
/*
 * heapfx.c - a fresh arena and page heap per test. See heapfx.h.
 */
#include "harness/heapfx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/tmpdir.h"

static char rundir[PATH_MAX];

void heapfx_rundir_make(void)
{
	htmp_make(rundir, sizeof(rundir), "heapd-pageheap", HTMP_MEMORY);
}

void heapfx_rundir_remove(void)
{
	htmp_remove(rundir);
}

void heapfx_open(heapfx_t *fx, uint64_t arena_bytes, uint32_t grow_pages)
{
	memset(fx, 0, sizeof(*fx));
	ck_assert_msg(rundir[0], "heapfx_rundir_make was not run");
	snprintf(fx->dir, sizeof(fx->dir), "%s/t-XXXXXX", rundir);
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

void heapfx_reopen(heapfx_t *fx)
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

void heapfx_close(heapfx_t *fx)
{
	pageheap_destroy(&fx->h);
	segment_close(&fx->seg);
	segment_remove(fx->path);
	rmdir(fx->dir);
}

size_t heapfx_check(heapfx_t *fx, const pageheap_t *h, check_report_t *rep)
{
	if (h)
		pageheap_enter(&fx->h);
	size_t n = check_segment(&fx->seg, h, rep);
	if (h)
		pageheap_leave(&fx->h);
	ck_assert_uint_eq(n, rep->nproblems);
	return n;
}

/* How many problems the report kept. */
static size_t kept(const check_report_t *rep)
{
	return rep->nproblems < CHECK_MAX_PROBLEMS ? rep->nproblems : CHECK_MAX_PROBLEMS;
}

int heapfx_report_has(const check_report_t *rep, const char *needle)
{
	for (size_t i = 0; i < kept(rep); i++)
		if (strstr(rep->problems[i], needle))
			return 1;
	return 0;
}

void heapfx_print(const check_report_t *rep)
{
	for (size_t i = 0; i < kept(rep); i++)
		fprintf(stderr, "  check: %s\n", rep->problems[i]);
}

void heapfx_assert_same_counts(const pageheap_counts_t *a, const pageheap_counts_t *b)
{
	ck_assert_uint_eq(a->npages_grown, b->npages_grown);
	ck_assert_uint_eq(a->pages_inuse, b->pages_inuse);
	ck_assert_uint_eq(a->pages_free, b->pages_free);
	ck_assert_uint_eq(a->pages_released, b->pages_released);
}

uint32_t heapfx_alloc(heapfx_t *fx, uint32_t npages)
{
	uint32_t span = HEAPD_NIL;
	int rc = pageheap_alloc(&fx->h, npages, 1, &span);
	ck_assert_msg(rc == 0, "alloc %u pages: %d", npages, rc);
	ck_assert_uint_lt(span, fx->seg.hdr->npages_grown);
	return span;
}
