// SPDX-License-Identifier: MIT
/*
 * view.h - the arena as a library client maps it: the metadata read-only,
 * the data (bitmaps and objects) writable, found from one of the library's
 * own objects (an object and its offset give the mapping's base). For tests
 * that look at the span table, the page map and the client table from a
 * client process, as a hostile client would, and for the soaks' reports.
 */
#ifndef HEAPD_TESTS_HARNESS_VIEW_H
#define HEAPD_TESTS_HARNESS_VIEW_H

#include <stdint.h>
#include <sys/types.h>

#include "layout.h"

typedef struct hview {
	const uint8_t *base;        /* offset 0: the header */
	const shm_header_t *hdr;
	const uint64_t *pagemap;
	const shm_span_t *spans;
	const shm_client_t *clients;
	uint64_t *bits;             /* alloc and free words: every process writes them */
	uint8_t *pages;
} hview_t;

/*
 * This process's mapping (connecting it if it is not yet: an object is
 * allocated and freed). 0, or -1 with errno set.
 */
int hview_map(hview_t *v);

/* The span (its start page) that holds p, HEAPD_NIL if none. */
uint32_t hview_span_of(const hview_t *v, const void *p);

/*
 * Small spans owned by a client slot whose pid is not in pids[0..npids),
 * each one printed; UINT64_MAX if this process cannot map the arena. Hands
 * this process's own cache back first.
 */
uint64_t hview_foreign_spans(const pid_t *pids, int npids);

/* Print the first max spans in use with live objects (after handing this process's cache back). */
void hview_dump_in_use(int max);

/* The header of the arena in directory arena_dir, read from its meta file. Asserts. */
void hview_read_header(const char *arena_dir, shm_header_t *h);

#endif
