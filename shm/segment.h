// SPDX-License-Identifier: MIT
/*
 * segment.h - create, reopen, validate and map an arena.
 *
 * A segment_t is one process's view of an arena (layout.h): its files and
 * one mapping of both, with pointers to each region. heapd opens the arena
 * directory (segment_open) and maps everything read-write; a client maps
 * the two descriptors heapd passes it (segment_attach): meta read-only, data
 * read-write.
 *
 * The arena directory must belong to the effective uid and have no group or
 * other permission bits, and so must its files; nothing in it is followed
 * through a symlink. New files are created with O_EXCL under temporary
 * names and renamed into place, meta last, so a creation cut short leaves
 * no arena rather than half of one.
 *
 * Errors are -errno, with a sentence in the caller's buffer.
 */
#ifndef HEAPD_SHM_SEGMENT_H
#define HEAPD_SHM_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"

typedef struct segment {
	int dir_fd;             /* heapd: the arena directory; -1 in clients */
	int lock_fd;            /* heapd: the lock file, with SEGMENT_LOCK; else -1 */
	int meta_fd;            /* heapd: meta, read-write; -1 in clients */
	int client_meta_fd;     /* heapd: meta opened read-only, passed to clients; -1 in clients */
	int client_data_fd;     /* heapd: data opened again, passed to clients; -1 in clients */
	int data_fd;            /* data, read-write; a client keeps it to repair a truncation */
	uint8_t *base;          /* mapping of meta, then data */
	uint64_t size;          /* meta_size + data_size */
	uint64_t meta_size, data_size;
	int writable_meta;      /* 1: header, page map and span table are writable */
	int data_repaired;      /* segment_open re-extended a shrunken data file */
	shm_header_t *hdr;
	shm_client_t *clients;  /* hdr->max_clients slots */
	uint64_t *pagemap;      /* page -> heapd_pagemap_entry(span start page, class) */
	shm_span_t *spans;      /* indexed by start page */
	struct shm_root *roots; /* the directory's entries' heads, hdr->roots_max (roots.h) */
	struct shm_root_tail *roots_tails; /* and their tails */
	uint64_t *roots_index;  /* its two indexes, hdr->roots_nslots slots each */
	struct shm_root_op *roots_ops; /* last root change per client slot */
	uint64_t *pins;         /* pin words: HEAPD_PIN_WORDS_PER_PAGE per page */
	uint64_t *bits;         /* the bitmaps: HEAPD_BITS_WORDS_PER_PAGE words per page */
	uint8_t *pages;         /* page 0 of the heap */
	uint32_t npages_max;
} segment_t;

typedef struct segment_params {
	uint64_t arena_bytes;   /* size of the pages region, rounded up to pages */
	uint32_t max_clients;   /* 0: HEAPD_DEFAULT_MAX_CLIENTS */
	uint32_t max_roots;     /* 0: ROOTS_DEFAULT_MAX (roots.h) */
	uint64_t base_hint;     /* 0: HEAPD_DEFAULT_BASE_HINT */
	uint32_t profile_records; /* heap-profile records (shm/profrec.h); 0: no profile region */
} segment_params_t;

enum {
	SEGMENT_CREATE = 1,     /* create the arena if it does not exist */
	SEGMENT_RESET = 2,      /* discard whatever the arena holds and lay it out anew */
	SEGMENT_LOCK = 4,       /* lock the arena: one daemon per arena */
};

/* Sizes of the two files for these parameters: 0, or -EINVAL if they are out of range. */
int segment_sizes(const segment_params_t *params, uint64_t *meta_size, uint64_t *data_size);

/*
 * heapd's open of the arena directory dir: reopen the arena it holds (its
 * header decides the geometry; params->arena_bytes is only for creation)
 * or, with SEGMENT_CREATE, create the directory (mode 0700) and the arena.
 * *created says which happened. An arena that exists but is not valid is
 * refused unless SEGMENT_RESET is given. SEGMENT_LOCK fails with
 * -EWOULDBLOCK when another process holds the directory's lock. A data file
 * found shorter than its size (a client shrank it while no daemon ran) is
 * re-extended, and seg->data_repaired says so.
 */
int segment_open(const char *dir, const segment_params_t *params, int flags, segment_t *seg,
                 int *created, char *err, size_t errlen);

/*
 * A client's mapping of an arena from the descriptors heapd passed: meta
 * (read-only; consumed: closed once mapped) and data (read-write; kept in
 * seg->data_fd for segment_guard).
 */
int segment_attach(int meta_fd, int data_fd, segment_t *seg, char *err, size_t errlen);

/* Check a header against the sizes of its files. 0 or -EINVAL/-EPROTO/-ENOEXEC with a reason. */
int segment_validate(const shm_header_t *hdr, uint64_t meta_file_size, uint64_t data_file_size,
                     char *err, size_t errlen);

/* Unmap and close; a guarded data range is unguarded first. */
void segment_close(segment_t *seg);

/* Remove an arena directory and the files of an arena in it. */
int segment_remove(const char *dir);

/*
 * Guard the data range against a shrunken data file: a SIGBUS at an address
 * inside it re-extends the file to its size and the access is retried; any
 * other SIGBUS goes to the handler that was there before (the default one:
 * the process dies as it would have). Installed once per process; up to
 * SEGMENT_GUARD_MAX segments at a time. 0 or -errno.
 */
#define SEGMENT_GUARD_MAX 8
int segment_guard(segment_t *seg);

/* Times the guard has re-extended a data file in this process. */
uint64_t segment_guard_repairs(void);

/* Punch [off, off+len) of the data (arena offsets) out of the file (release its memory). */
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

/* The pin words of the span starting at page span (roots.h). */
static inline uint64_t *segment_pins(const segment_t *seg, uint32_t span)
{
	return seg->pins + (uint64_t)span * HEAPD_PIN_WORDS_PER_PAGE;
}

/* The span a page belongs to, per the page map (HEAPD_NIL: none). */
static inline uint32_t segment_pagemap_span(const segment_t *seg, uint32_t page)
{
	return heapd_pagemap_span(seg->pagemap[page]);
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

/*
 * The first offset >= off of the meta file that the file holds (is not a
 * hole), or seg->meta_size, and in *end the end of that run of data: walks
 * over the sparse regions of the metadata (the roots directory, the pins)
 * read only what was ever written. Without a descriptor (a client) or when
 * the file system cannot say, off, with *end the end of the file.
 */
uint64_t segment_meta_next_data(const segment_t *seg, uint64_t off, uint64_t *end);

#endif
