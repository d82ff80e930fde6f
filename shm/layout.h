// SPDX-License-Identifier: MIT
/*
 * layout.h - the on-file layout of a heapd arena, shared by every process.
 *
 * An arena is a directory (mode 0700, owned by heapd) holding two files,
 * mapped one after the other at the same address in every process:
 *
 *   meta: [ header + client table ][ page map ][ span table ][ roots ][ pins ]
 *         heapd writes; clients get an O_RDONLY descriptor and map it read-only
 *   data: [ bitmaps ][ profile ][ pages ]
 *         every process writes (alloc and free bits, heap-profile records
 *         (shm/profrec.h), and the objects)
 *
 * Offsets ("arena offsets", hc_ptr_to_off) count from the start of meta and
 * run on into data: hdr->bits_off == hdr->meta_size.
 *
 * The trust boundary. Clients may read the metadata but have no way to
 * write it: a shared mapping of an O_RDONLY descriptor can never be made
 * writable (mprotect and a second mmap both refuse), and ftruncate,
 * fallocate and write refuse a read-only descriptor. The files are mode
 * 0600 and owned by heapd, so reopening the descriptor through
 * /proc/self/fd fails for any other user. A client that runs as heapd's own
 * uid (or as root) is outside this boundary: it could ptrace heapd anyway.
 *
 * The data stays writable, because cooperating processes share objects. So
 * heapd never trusts a bitmap word: it bounds every index and recounts bits,
 * and the worst a client can do there is corrupt objects, its own or those
 * of the processes it shares the arena with. The one way to hurt others
 * beyond that is to shrink the data file, after which every access beyond
 * the new end raises SIGBUS. The choice made here: the data is a regular
 * file, so that it survives a restart of heapd whoever starts it, and every
 * process that maps it (heapd and libheapclient alike, segment_guard)
 * catches SIGBUS in the data range, re-extends the file to its size and
 * retries the access: a truncation costs the contents of the cut range and
 * nothing else. A memfd sealed with F_SEAL_SHRINK would make shrinking
 * impossible, but would live only as long as heapd or systemd's descriptor
 * store keeps it, and systemd 252 empties that store whenever the service
 * stops. The fast paths are the same either way (measured: README,
 * Performance).
 *
 * The page map, the span table and the bitmaps are the whole truth about
 * which memory is in use. Every list, tree and counter the daemon keeps is
 * an index that it can rebuild from them (daemon/recovery.c). Span
 * descriptors change only through shm/span.c, which keeps the commit order.
 *
 * Spans are named by their first page: span id == start page, and the span
 * descriptor lives at spans[start]. A descriptor whose state is SPAN_DEAD does
 * not start a span (it is inside one, or beyond the grown part of the arena).
 *
 * Page map (as Go's mheap.spans): one 64-bit entry per page, the complement
 * of a span's start page in the low half and a size class in the high half
 * (heapd_pagemap_entry). A file's zeros therefore read as "no span"
 * (HEAPD_NIL, class 0), so the map costs memory only where the heap has
 * grown. For an in-use span every page maps to its start page, with the
 * span's size class if it is a small span; that lets a free find the object's
 * class without reading the descriptor. For a free span only the first and
 * the last page are kept exact, which is all coalescing needs, with class 0.
 * Other entries of free pages are stale: they may still name an old span,
 * but never a class (span_make_free clears every page's class, the rebuild
 * any it finds), so a free through one takes the slow path, which reads the
 * descriptor and refuses it. A stale class would lead a free's fast path
 * into the bitmaps of a new span starting on that page. Every page of an
 * in-use small span that holds a pinned object carries HEAPD_PAGEMAP_PINNED
 * (bit 63): its class half is then out of range, so a free's fast path,
 * which only takes small classes, leaves such a span to the slow path for
 * free. A large span's pins are checked by the daemon (daemon/large.c).
 *
 * Roots and pins (shm/roots.h): the directory of named roots, and per span
 * start page HEAPD_PIN_WORDS_PER_PAGE pin words, one bit per object, set
 * while a root names the object. Both are sparse: only what is used is
 * ever written.
 *
 * Bitmaps: a span starting at page p owns the HEAPD_BITS_WORDS_PER_PAGE words
 * from word p * HEAPD_BITS_WORDS_PER_PAGE on: its alloc words first, then its
 * free words (heapd_freebits_delta words later). A span has at most
 * HEAPD_SPAN_MAX_OBJECTS objects (1024, the 8-byte class in one page), so the
 * first page's words always suffice and no bitmap allocator is needed. A span
 * of at most 256 objects (every class of 32 bytes or more, and large spans)
 * keeps its 4 alloc words and 4 free words in one cache line, so that a free
 * reads the alloc bit and sets the free bit in one line. Alloc words are
 * written by the span's owner, free words by any process (bitmap.h). Object
 * i of a span is allocated when its alloc bit is set and its free bit is
 * clear. Spans of at most 512 objects keep a third bitmap there, their
 * sampled bits (shm/profrec.h), 8 words after their alloc words.
 */
#ifndef HEAPD_SHM_LAYOUT_H
#define HEAPD_SHM_LAYOUT_H

#include <stdatomic.h>
#include <stdint.h>

#define HEAPD_MAGIC 0x3144504145484dULL /* "MHEAPD1" little-endian */
#define HEAPD_LAYOUT_VERSION 5u

#define HEAPD_PAGE_SHIFT 13
#define HEAPD_PAGE_SIZE (1u << HEAPD_PAGE_SHIFT) /* 8 KiB */
#define HEAPD_MAX_SMALL 32768u                    /* largest small object */
#define HEAPD_MAX_LIST 128u                       /* free lists by length below this */
#define HEAPD_SPAN_MAX_OBJECTS 1024u              /* 8 KiB / 8 B */
#define HEAPD_BITMAP_WORDS_MAX 16u                /* words in one bitmap of a span */
#define HEAPD_BITS_WORDS_PER_PAGE 32u             /* alloc and free words a page's span owns */
#define HEAPD_PIN_WORDS_PER_PAGE 16u              /* pin words a page's span owns (roots.h) */
#define HEAPD_NIL UINT32_MAX

/* The files of an arena directory: the two mapped ones, and heapd's lock. */
#define HEAPD_META_FILE "meta"
#define HEAPD_DATA_FILE "data"
#define HEAPD_LOCK_FILE "lock"

/* A page-map entry: span `span` (HEAPD_NIL: none) and its size class (0: not a small span). */
static inline uint64_t heapd_pagemap_entry(uint32_t span, uint32_t sizeclass)
{
	return (uint64_t)sizeclass << 32 | (uint32_t)~span;
}

static inline uint32_t heapd_pagemap_span(uint64_t entry)
{
	return ~(uint32_t)entry;
}

/* The span has pinned objects (roots.h); heapd_pagemap_class is then out of range on purpose. */
#define HEAPD_PAGEMAP_PINNED (1ULL << 63)

static inline uint32_t heapd_pagemap_class(uint64_t entry)
{
	return (uint32_t)(entry >> 32);
}

/* Where a span of nelems objects keeps its free words, counted from its alloc words. */
static inline uint32_t heapd_freebits_delta(uint32_t nelems)
{
	return nelems <= 256 ? 4u : HEAPD_BITMAP_WORDS_MAX;
}

/* Normally empty, and clear of the ranges the address sanitizer takes. */
#define HEAPD_DEFAULT_BASE_HINT 0x500000000000ULL
#define HEAPD_DEFAULT_MAX_CLIENTS 1024u
#define HEAPD_MAX_PAGES (UINT32_MAX - 1u)

/* Span states. */
enum {
	SPAN_DEAD = 0,  /* no span starts at this page */
	SPAN_FREE = 1,  /* in the page heap */
	SPAN_SMALL = 2, /* in use, cut into objects of one size class */
	SPAN_LARGE = 3, /* in use, one large object (or none yet: alloc bit 0 clear) */
};

/*
 * A span descriptor. 64 bytes, one cache line, in the metadata: heapd
 * writes it, through shm/span.c only; clients read the fields marked so.
 * The geometry of a small span's objects (size, count, division magic)
 * comes from its size class (sizeclass.h), not from the descriptor.
 */
typedef struct shm_span {
	uint32_t start;        /* first page; equals the index when state != DEAD */
	uint32_t npages;       /* length in pages; client reads */
	uint8_t state;         /* SPAN_*; client reads */
	uint8_t sizeclass;     /* 0 for large and free spans; client reads */
	uint8_t needzero;      /* pages may hold old data */
	uint8_t list;          /* daemon index the span is on (daemon private meaning) */
	uint32_t owner;        /* client slot + 1 holding it in a cache, 0 = daemon; client reads */
	_Atomic uint32_t sweepgen; /* Go's protocol against hdr->sweepgen */
	uint32_t gen;          /* bumped each time the span is handed out; client reads (LargeFree) */
	uint32_t npreleased;   /* pages punched out of the file */
	uint32_t allocount;    /* objects in use at the last sweep by the daemon */
	uint64_t unusedsince;  /* CLOCK_MONOTONIC ns when it became free */
	uint32_t next, prev;   /* list links (daemon index); HEAPD_NIL ends */
	uint32_t left, right;  /* tree links for large free spans (daemon index) */
	uint32_t charge;       /* client slot + 1 whose quota the pages count against, 0: none */
	uint32_t charge_uid;   /* uid whose quota they count against, HEAPD_NIL: none */
} shm_span_t;

_Static_assert(sizeof(shm_span_t) == 64, "span descriptor is one cache line");

/*
 * One slot of the client table, in the header region; heapd writes. A slot
 * names one process by pid, start time and pidfs inode (daemon/proc.h), so
 * that a restarted heapd and a reconnecting client agree on whose spans are
 * whose.
 */
typedef struct shm_client {
	uint32_t pid;          /* 0: slot unused */
	uint32_t uid;
	uint64_t start_time;   /* /proc/pid/stat starttime, so a reused pid is told apart */
	_Atomic uint32_t flags; /* HEAPD_CLIENT_* raised by the daemon, read by the client */
	uint32_t pad;
	uint64_t pidfs_id;     /* the process's pidfs inode number (daemon/proc.h); 0: unknown */
	uint64_t reserved[4];
} shm_client_t;

_Static_assert(sizeof(shm_client_t) == 64, "client slot is one cache line");

#define HEAPD_CLIENT_FLUSH 1u /* memory pressure: hand back cached spans */

/*
 * The header, at offset 0 of meta. Geometry is fixed at creation; the state
 * part is written by the daemon only.
 */
typedef struct shm_header {
	/* geometry, fixed at creation */
	uint64_t magic;
	uint32_t version;
	uint32_t page_size;
	uint64_t map_size;       /* meta_size + data_size: the address range every process maps */
	uint64_t base_hint;      /* address every process tries to map the arena at */
	uint64_t arena_id;       /* random, names this arena */
	uint32_t npages_max;     /* pages in the pages region */
	uint32_t max_clients;    /* slots in the client table */
	uint64_t clients_off;    /* client table, inside the header region */
	uint64_t header_size;    /* header region, page aligned */
	uint64_t pagemap_off, pagemap_size;
	uint64_t spans_off, spans_size;
	uint64_t meta_size;      /* the meta file */
	uint64_t data_size;      /* the data file */
	uint64_t bits_off, bits_size; /* the bitmaps: bits_off == meta_size, offset 0 of data */
	uint64_t sizeclass_sig;  /* sizeclass_signature of the daemon that laid it out */
	uint64_t pages_off;

	/* daemon state */
	uint32_t npages_grown;   /* pages [0, npages_grown) are tiled by spans */
	uint32_t generation;     /* bumped at every daemon start */
	_Atomic uint32_t sweepgen;
	uint32_t clean_shutdown; /* 1 after an orderly stop, 0 while a daemon runs */
	uint64_t pages_inuse;    /* in SMALL or LARGE spans */
	uint64_t pages_free;     /* in FREE spans, released ones included */
	uint64_t pages_released; /* part of pages_free punched out of the file */
	uint64_t sweep_cycles;

	/* named roots (roots.h): geometry fixed at creation */
	uint64_t roots_off, roots_size; /* the directory: entries, two indexes, last op per slot */
	uint64_t pins_off, pins_size;   /* HEAPD_PIN_WORDS_PER_PAGE words per page */
	uint32_t roots_max;             /* entries: names that may be bound at once */
	uint32_t roots_nslots;          /* slots of each index, a power of two >= 2 * roots_max */
	/* named roots: state */
	_Atomic uint64_t roots_gen;     /* lookups use index roots_gen & 1; bumped by a rebuild */
	uint32_t roots_count;           /* names bound */
	_Atomic uint32_t roots_wake;    /* bumped at every bind, a futex for hc_root_wait */
	uint64_t reserved[6];    /* zero */

	/* geometry of the heap-profile region (shm/profrec.h) */
	uint64_t prof_off;       /* arena offset: in data, between the bitmaps and the pages */
	uint64_t prof_size;      /* bytes; 0: the arena keeps no profile */
	uint32_t prof_records;   /* records in it */
	uint32_t prof_mapsets;   /* mapping sets in it */
} shm_header_t;

#endif
