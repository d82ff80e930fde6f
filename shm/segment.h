// SPDX-License-Identifier: MIT
/*
 * segment.h - create, reopen, validate and map an arena file.
 *
 * A segment_t is one process's view of an arena: the descriptor and the
 * mapping, with pointers to each region. The daemon maps every region
 * read-write; a client maps the header, page map and span table read-only
 * and only the bitmaps and pages read-write (segment_attach).
 *
 * Arena names: a path ("/dev/shm/heapd", "/var/lib/x/arena") is a file; a
 * name "shm:NAME" is the POSIX shared-memory object "/NAME".
 *
 * Errors are -errno, with a sentence in the caller's buffer.
 */
#ifndef HEAPD_SHM_SEGMENT_H
#define HEAPD_SHM_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"

typedef struct segment {
	int fd;                 /* the arena file, -1 when closed */
	uint8_t *base;          /* mapping of the whole file */
	uint64_t size;          /* file size */
	int writable_meta;      /* 1: header, page map and span table are writable */
	shm_header_t *hdr;
	shm_client_t *clients;  /* hdr->max_clients slots */
	uint64_t *pagemap;      /* page -> heapd_pagemap_entry(span start page, class) */
	shm_span_t *spans;      /* indexed by start page */
	uint64_t *bits;         /* the bitmaps: HEAPD_BITS_WORDS_PER_PAGE words per page */
	uint8_t *pages;         /* page 0 of the heap */
	uint32_t npages_max;
} segment_t;

typedef struct segment_params {
	uint64_t arena_bytes;   /* size of the pages region, rounded up to pages */
	uint32_t max_clients;   /* 0: HEAPD_DEFAULT_MAX_CLIENTS */
	uint64_t base_hint;     /* 0: HEAPD_DEFAULT_BASE_HINT */
} segment_params_t;

enum {
	SEGMENT_CREATE = 1,     /* create the file if it does not exist */
	SEGMENT_RESET = 2,      /* discard whatever the file holds and lay it out anew */
	SEGMENT_LOCK = 4,       /* take an exclusive lock on the file: one daemon per arena */
};

/* Size of the file for these parameters (header through pages). */
uint64_t segment_file_size(const segment_params_t *params);

/*
 * The daemon's open: reopen an existing arena (its header decides the
 * geometry; params->arena_bytes is only for creation) or, with
 * SEGMENT_CREATE, create it. *created says which happened.
 * A file that exists but is not a valid arena is refused unless
 * SEGMENT_RESET is given. SEGMENT_LOCK fails with -EWOULDBLOCK when another
 * process holds the lock.
 */
int segment_open(const char *name, const segment_params_t *params, int flags,
                 segment_t *seg, int *created, char *err, size_t errlen);

/* A client's mapping of an arena received as a descriptor. Takes ownership of fd. */
int segment_attach(int fd, segment_t *seg, char *err, size_t errlen);

/* Check a header against the size of its file. 0 or -EINVAL/-EPROTO/-ENOEXEC with a reason. */
int segment_validate(const shm_header_t *hdr, uint64_t file_size, char *err, size_t errlen);

void segment_close(segment_t *seg);

/* Remove a named arena (unlink or shm_unlink). */
int segment_unlink(const char *name);

/* Punch [off, off+len) of the file out (release its memory). */
int segment_punch(segment_t *seg, uint64_t off, uint64_t len);

static inline uint8_t *segment_page_addr(const segment_t *seg, uint32_t page)
{
	return seg->pages + ((uint64_t)page << HEAPD_PAGE_SHIFT);
}

/* The alloc words of the span starting at page span. */
static inline uint64_t *segment_allocbits(const segment_t *seg, uint32_t span)
{
	return seg->bits + (uint64_t)span * HEAPD_BITS_WORDS_PER_PAGE;
}

/* The free words of the span starting at page span, which has nelems objects (1 if large). */
static inline uint64_t *segment_freebits(const segment_t *seg, uint32_t span, uint32_t nelems)
{
	return segment_allocbits(seg, span) + heapd_freebits_delta(nelems);
}

/* The free words of the in-use span starting at page span, per its descriptor. */
static inline uint64_t *segment_span_freebits(const segment_t *seg, uint32_t span)
{
	const shm_span_t *d = &seg->spans[span];
	return segment_freebits(seg, span, d->state == SPAN_SMALL ? d->nelems : 1);
}

/* The span a page belongs to, per the page map (HEAPD_NIL: none). */
static inline uint32_t segment_pagemap_span(const segment_t *seg, uint32_t page)
{
	return heapd_pagemap_span(seg->pagemap[page]);
}

/* Point a page's entry at span, of size class sizeclass (0: not a small span). */
static inline void segment_pagemap_set(segment_t *seg, uint32_t page, uint32_t span,
                                       uint32_t sizeclass)
{
	seg->pagemap[page] = heapd_pagemap_entry(span, sizeclass);
}

/* Span start page of the page holding p, or HEAPD_NIL if p is outside the grown heap. */
static inline uint32_t segment_span_of(const segment_t *seg, const void *p)
{
	uintptr_t off = (uintptr_t)p - (uintptr_t)seg->pages;
	uint64_t page = off >> HEAPD_PAGE_SHIFT;
	if ((uintptr_t)p < (uintptr_t)seg->pages || page >= seg->npages_max)
		return HEAPD_NIL;
	return segment_pagemap_span(seg, (uint32_t)page);
}

/* Page-map entries in 4 KiB of the file. */
#define SEGMENT_PAGEMAP_BLOCK (4096u / sizeof(uint64_t))

/*
 * The first page >= p whose block of SEGMENT_PAGEMAP_BLOCK page-map entries
 * the file holds (is not a hole), or npages_max: a scan of the page map
 * beyond the grown heap reads only those blocks, since on tmpfs reading a
 * hole through a mapping would allocate it. Without a descriptor (a client)
 * or when the file system cannot say, every block counts as held.
 */
uint32_t segment_pagemap_next(const segment_t *seg, uint64_t p);

#endif
