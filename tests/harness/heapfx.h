// SPDX-License-Identifier: MIT
/*
 * heapfx.h - a fresh arena and page heap per test, in-process, for the
 * suites of the page heap, the checker and the daemon's modules built on
 * them (central lists, large objects).
 *
 * A suite run makes one directory (heapfx_rundir_make, an unchecked
 * fixture, so in the runner process) in memory where it can (tmpdir.h).
 * Each test's arena gets a directory of its own inside it; heapfx_close
 * removes that, and heapfx_rundir_remove whatever a failed test left.
 */
#ifndef HEAPD_TESTS_HARNESS_HEAPFX_H
#define HEAPD_TESTS_HARNESS_HEAPFX_H

#include <check.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

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

/* The suite's run directory: unchecked fixtures. */
void heapfx_rundir_make(void);
void heapfx_rundir_remove(void);

/*
 * A new arena of arena_bytes (16 client slots) and its page heap, growing
 * by grow_pages (0: the default). Asserts.
 */
void heapfx_open(heapfx_t *fx, uint64_t arena_bytes, uint32_t grow_pages);

/* What a daemon restart does: forget the indexes, reopen the file, rebuild. Asserts. */
void heapfx_reopen(heapfx_t *fx);

/* Close the heap and the arena and remove it. */
void heapfx_close(heapfx_t *fx);

/* Run the checker (with the heap's indexes unless h is NULL) into *rep; the problems found. */
size_t heapfx_check(heapfx_t *fx, const pageheap_t *h, check_report_t *rep);

/* 1 if a problem the checker kept contains needle. */
int heapfx_report_has(const check_report_t *rep, const char *needle);

/* Print the problems the checker kept. */
void heapfx_print(const check_report_t *rep);

/* The checker finds nothing wrong (a macro: a failure names the test's line). */
#define heapfx_assert_clean(fx)                                                    \
	do {                                                                          \
		check_report_t rep_;                                                      \
		size_t n_ = heapfx_check((fx), &(fx)->h, &rep_);                          \
		if (n_)                                                                   \
			heapfx_print(&rep_);                                                  \
		ck_assert_msg(n_ == 0, "check_segment found %zu problems", n_);           \
	} while (0)

/* The page heap's counters did not move from a to b. */
void heapfx_assert_same_counts(const pageheap_counts_t *a, const pageheap_counts_t *b);

/* A span of npages from the page heap. Asserts. */
uint32_t heapfx_alloc(heapfx_t *fx, uint32_t npages);

static inline shm_span_t *heapfx_span(heapfx_t *fx, uint32_t id)
{
	return &fx->seg.spans[id];
}

#endif
