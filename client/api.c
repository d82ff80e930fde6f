// SPDX-License-Identifier: MIT
/*
 * api.c - the public functions of libheapclient (heapclient.h).
 *
 * Allocation: a size up to HEAPD_MAX_SMALL is rounded to its size class and
 * taken from the calling thread's cache (mcache_alloc: a few instructions,
 * no lock, no system call). A larger size is a span of its own from the
 * daemon (LargeAlloc, one request); its usable size is its whole pages.
 *
 * Free, from any process, of an object any process allocated:
 *   1. the page map gives the span holding the pointer and its size class;
 *      a pointer outside the pages region, or in pages no in-use span
 *      covers, is misuse;
 *   2. the class gives the object index (divide by multiplying with the
 *      class's magic); an offset that is not idx * elemsize is a pointer
 *      into the middle of an object;
 *   3. the object's free bit is set with one atomic OR (bitmap_mark_free),
 *      or, in a span of the calling thread's own cache, its alloc bit is
 *      cleared with a plain store; a free bit already set, or an alloc bit
 *      that is clear, is a double free. The plain store is safe because
 *      that thread is then the span's only writer of alloc bits, and the
 *      span stays this process's until the thread itself lets it go
 *      (mcache.h, mcache_t.own);
 *   4. a large object's owner is the daemon: it is told with LargeFree,
 *      naming the span's generation, which needs no reply, and which the
 *      daemon's sweeper makes up for if it is lost.
 * Misuse writes one line naming the pointer to stderr and aborts. The
 * allocating thread's own sweep, or the daemon's, makes the slot reusable.
 *
 * Offsets (hc_ptr_to_off) count from the start of the arena file, so 0 is
 * never an object; hc_off_to_ptr accepts only offsets in the pages region.
 */
#include "heapclient.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcache.h"
#include "proc.h"
#include "profile.h"
#include "request.h"
#include "transport.h"

/*
 * Functions with a frame of their own on the way to a heap-profile sample
 * keep the frame pointer, which the sampler's walk goes up (profile.h).
 * hc_malloc and hc_free do not: their fast paths stay as they were.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define HC_FRAME __attribute__((optimize("no-omit-frame-pointer")))
#else
#define HC_FRAME /* clang has no per-function switch: build with -fno-omit-frame-pointer */
#endif

#define HC_ALLOC_FILL 0xa5 /* HEAPD_DEBUG: fresh objects */
#define HC_FREE_FILL 0xdf  /* HEAPD_DEBUG: freed objects */

/* Where a pointer is, for free, realloc and usable_size. */
enum {
	OBJ_FOUND = 0,
	OBJ_OUTSIDE,   /* not in the arena's pages */
	OBJ_INVALID,   /* in the pages, but no in-use span covers it */
	OBJ_INTERIOR,  /* inside an object, not at its start */
};

typedef struct obj {
	uint32_t span;
	uint32_t idx;           /* object index in the span (0 for large) */
	uint32_t nelems;        /* objects in the span (1 for large) */
	const shm_span_t *d;    /* the span descriptor */
} obj_t;

static int connect_to(const char *path)
{
	proc_lock();
	int rc = transport_connect_locked(path);
	proc_unlock();
	return rc;
}

/* Make sure the arena is mapped (connecting if this process never did). */
static inline int ensure_mapped(void)
{
	if (__builtin_expect(atomic_load_explicit(&proc_g.mapped, memory_order_acquire), 1))
		return 0;
	return connect_to(NULL);
}

static int obj_find(const void *p, obj_t *o)
{
	const segment_t *seg = &proc_g.seg;
	uintptr_t off = (uintptr_t)p - (uintptr_t)seg->pages;
	uint64_t soff;

	if ((uintptr_t)p < (uintptr_t)seg->pages || (off >> HEAPD_PAGE_SHIFT) >= seg->npages_max)
		return OBJ_OUTSIDE;
	o->span = segment_pagemap_span(seg, (uint32_t)(off >> HEAPD_PAGE_SHIFT));
	if (o->span >= seg->npages_max)
		return OBJ_INVALID;
	o->d = &seg->spans[o->span];
	soff = off - ((uint64_t)o->span << HEAPD_PAGE_SHIFT);
	/* a stale page-map entry (pages of a free span) may name a span that does not cover p */
	if (off < ((uint64_t)o->span << HEAPD_PAGE_SHIFT) || soff >= (uint64_t)o->d->npages << HEAPD_PAGE_SHIFT)
		return OBJ_INVALID;
	switch (o->d->state) {
	case SPAN_SMALL: {
		uint32_t k = o->d->sizeclass;
		if (soff > UINT32_MAX || k == 0 || k >= SIZECLASS_COUNT)
			return OBJ_INVALID;
		const sizeclass_info_t *ci = &sizeclass_info[k];
		o->idx = sizeclass_div((uint32_t)soff, ci->divmul);
		o->nelems = ci->nelems;
		if ((uint64_t)o->idx * ci->size != soff || o->idx >= ci->nelems)
			return OBJ_INTERIOR;
		return OBJ_FOUND;
	}
	case SPAN_LARGE:
		o->idx = 0;
		o->nelems = 1;
		return soff ? OBJ_INTERIOR : OBJ_FOUND;
	default:
		return OBJ_INVALID;
	}
}

#ifdef HEAPD_DEBUG
/* A name is bound to the object (shm/roots.h): its free is deferred. */
static int obj_pinned(const obj_t *o)
{
	const uint64_t *pins = segment_pins(&proc_g.seg, o->span);
	return (int)(bitmap_load(&pins[o->idx >> 6]) >> (o->idx & 63) & 1);
}
#endif

static uint64_t *obj_freebits(const obj_t *o)
{
	return segment_freebits(&proc_g.seg, o->span, o->nelems);
}

/* The object is allocated: alloc bit set, free bit clear. */
static int obj_live(const obj_t *o)
{
	uint64_t bit = 1ULL << (o->idx & 63);
	uint32_t w = o->idx >> 6;
	return (bitmap_load(&segment_allocbits(&proc_g.seg, o->span)[w]) & bit) &&
	       !(bitmap_load(&obj_freebits(o)[w]) & bit);
}

static size_t obj_size(const obj_t *o)
{
	if (o->d->state == SPAN_LARGE)
		return (size_t)o->d->npages << HEAPD_PAGE_SHIFT;
	return sizeclass_size[o->d->sizeclass];
}

/* Write "fn(): before 0x... after" to stderr and abort. No allocation, no stdio. */
static _Noreturn void die(const char *fn, const char *before, const void *p, const char *after)
{
	char buf[256], hex[2 + 16 + 1];
	uintptr_t v = (uintptr_t)p;
	size_t n = 0;
	int i = (int)sizeof(hex) - 1;

	hex[i] = '\0';
	do {
		hex[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	hex[--i] = 'x';
	hex[--i] = '0';
	const char *parts[] = { fn, "(): ", before, " ", hex + i, after, "\n" };
	for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
		size_t len = strlen(parts[k]);
		if (n + len >= sizeof(buf))
			len = sizeof(buf) - 1 - n;
		memcpy(buf + n, parts[k], len);
		n += len;
	}
	if (write(STDERR_FILENO, buf, n) < 0) {
		/* nothing better to do: we abort either way */
	}
	abort();
}

/* Locate p for fn, aborting on anything that is not an object start. */
static void obj_find_or_die(const void *p, obj_t *o, const char *fn)
{
	switch (obj_find(p, o)) {
	case OBJ_FOUND:
		return;
	case OBJ_OUTSIDE:
		die(fn, "pointer", p, " is not in the arena");
	case OBJ_INTERIOR:
		die(fn, "pointer", p, " is not the start of an object");
	default:
		die(fn, "invalid pointer", p, "");
	}
}

/* Free p with every check, on behalf of fn; aborts on misuse. */
static __attribute__((noinline)) void free_checked(void *p, const char *fn)
{
	obj_t o;

	ensure_mapped();
	obj_find_or_die(p, &o, fn);
	/* A large object's generation, read before its free bit makes it the daemon's (LargeFree). */
	uint32_t gen = o.d->gen;
	if (o.d->state == SPAN_LARGE)
		proc_large_freeing(o.span);
#ifdef HEAPD_DEBUG
	/* A rooted object keeps its contents until its last name goes (heapclient.h). */
	if (obj_live(&o) && !obj_pinned(&o))
		memset(p, HC_FREE_FILL, obj_size(&o));
#endif
	switch (bitmap_mark_free(segment_allocbits(&proc_g.seg, o.span), obj_freebits(&o), o.idx)) {
	case BITMAP_FREED:
		break;
	case BITMAP_DOUBLE_FREE:
		die(fn, "double free of", p, "");
	default:
		die(fn, "double free or invalid free of", p, "");
	}
	if (o.d->state == SPAN_LARGE) {
		request_t r;
		proc_lock();
		request_large_free(&r, o.span, gen);
		transport_send_locked(&r); /* no reply; never waits for a reconnect */
		proc_unlock();
	}
}

/*
 * A large object from the daemon: size bytes aligned to align (0: a page).
 * ra: the return address of the API function (a sample's site).
 */
static HC_FRAME __attribute__((noinline)) void *large_alloc(size_t size, int zero, size_t align,
                                                             int *zeroed, const void *ra)
{
	Heapd__Envelope *reply = NULL;
	const segment_t *seg = &proc_g.seg;
	uint32_t span = 0, *rel = NULL;
	size_t nrel = 0, cap = 0;
	request_t r;
	int rc, z = 0;

	rc = ensure_mapped();
	if (rc < 0)
		goto fail;
	if (size > (uint64_t)seg->npages_max << HEAPD_PAGE_SHIFT) {
		rc = -ENOMEM; /* larger than the whole arena */
		goto fail;
	}
	proc_lock();
	/* The pages of the thread's emptied spans may serve this very request. */
	mcache_handback_empty_locked(&rel, &nrel, &cap);
	/* On a new connection the request goes again without them (request_on_new_connection). */
	request_large_alloc(&r, size, zero, align > HEAPD_PAGE_SIZE ? align : 0, rel, nrel);
	rc = transport_call_locked(&r, &reply, 0);
	if (rc == 0) {
		span = reply->large_alloc_reply->span;
		z = reply->large_alloc_reply->zeroed;
	}
	proc_unlock();
	wire_free(reply);
	free(rel);
	if (rc < 0)
		goto fail;
	if (span >= seg->npages_max || seg->spans[span].state != SPAN_LARGE ||
	    seg->spans[span].start != span ||
	    ((uint64_t)seg->spans[span].npages << HEAPD_PAGE_SHIFT) < size) {
		rc = -EPROTO;
		goto fail;
	}
	void *p = segment_page_addr(seg, span);
	if (align && ((uintptr_t)p & (align - 1))) {
		/* the daemon aligned the file offset, but our mapping is not that aligned */
		free_checked(p, "hc_aligned_alloc");
		rc = -ENOMEM;
		goto fail;
	}
	if (zeroed)
		*zeroed = z;
	uint64_t bytes = (uint64_t)seg->spans[span].npages << HEAPD_PAGE_SHIFT;
	if (profile_large_due(bytes))
		profile_sample((uint64_t)((uint8_t *)p - seg->base), bytes, prof_sampled_words(seg, span), 1, ra);
	return p;
fail:
	errno = rc == -EDQUOT ? ENOMEM : -rc; /* a quota reached is out of memory, as for malloc */
	return NULL;
}

HC_API int hc_connect(const char *socket_path)
{
	return connect_to(socket_path);
}

HC_API void hc_disconnect(void)
{
	Heapd__Envelope *reply;
	request_t r;

	proc_lock();
	/* Every cache forgets its spans; Bye gives them all back with the slot. */
	proc_drop_all_locked();
	if (proc_g.have_slot) {
		request_bye(&r);
		/* Not connected: the slot stays held, and goes back when this process exits. */
		if (transport_call_locked(&r, &reply, TRANSPORT_NO_CONNECT) == 0)
			wire_free(reply);
	}
	transport_close_locked();
	proc_forget_slot_locked();
	proc_unlock();
}

/*
 * hc_malloc's body, inlined into every API function that allocates, so
 * that the return address a sample records is the caller's.
 */
static inline __attribute__((always_inline)) void *malloc_impl(size_t size)
{
	void *p;

	if (__builtin_expect(size <= HEAPD_MAX_SMALL, 1))
		p = mcache_alloc(sizeclass_of(size), NULL);
	else
		p = large_alloc(size, 0, 0, NULL, __builtin_return_address(0));
#ifdef HEAPD_DEBUG
	if (p)
		memset(p, HC_ALLOC_FILL, size);
#endif
	return p;
}

HC_API void *hc_malloc(size_t size)
{
	return malloc_impl(size);
}

HC_API HC_FRAME void *hc_calloc(size_t nmemb, size_t size)
{
	size_t n;
	int needzero = 1;
	void *p;

	if (__builtin_mul_overflow(nmemb, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	if (n <= HEAPD_MAX_SMALL) {
		p = mcache_alloc(sizeclass_of(n), &needzero);
	} else {
		int zeroed = 0;
		p = large_alloc(n, 1, 0, &zeroed, __builtin_return_address(0));
		needzero = !zeroed;
	}
	if (p && needzero)
		memset(p, 0, n);
	return p;
}

HC_API HC_FRAME void *hc_realloc(void *ptr, size_t size)
{
	size_t usable;
	obj_t o;
	void *p;

	if (!ptr)
		return malloc_impl(size);
	if (size == 0) {
		hc_free(ptr);
		return NULL;
	}
	ensure_mapped();
	obj_find_or_die(ptr, &o, "hc_realloc");
	if (!obj_live(&o))
		die("hc_realloc", "pointer", ptr, " is not an allocated object");
	usable = obj_size(&o);
	/* Keep the object if size fits and would not fit a much smaller one. */
	if (size <= usable) {
		if (o.d->state == SPAN_SMALL && size <= HEAPD_MAX_SMALL &&
		    sizeclass_of(size) == o.d->sizeclass)
			return ptr;
		if (size >= usable / 2)
			return ptr;
	}
	p = malloc_impl(size);
	if (!p)
		return NULL;
	memcpy(p, ptr, size < usable ? size : usable);
	free_checked(ptr, "hc_realloc");
	return p;
}

HC_API HC_FRAME void *hc_aligned_alloc(size_t alignment, size_t size)
{
	void *p = NULL;

	if (alignment == 0 || (alignment & (alignment - 1))) {
		errno = EINVAL;
		return NULL;
	}
	if (alignment <= 8)
		return malloc_impl(size);
	int rc = ensure_mapped();
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	/* span bases are page aligned in the file, and as aligned as the pages region in memory */
	uintptr_t pages = (uintptr_t)proc_g.seg.pages;
	if (size <= HEAPD_MAX_SMALL && alignment <= HEAPD_PAGE_SIZE && alignment <= (pages & -pages)) {
		/* a class whose size is a multiple of alignment will do */
		for (uint32_t c = sizeclass_of(size); c < SIZECLASS_COUNT; c++) {
			if (sizeclass_size[c] % alignment == 0) {
				p = mcache_alloc(c, NULL);
				break;
			}
		}
	} else if ((uintptr_t)proc_g.seg.base & (alignment - 1)) {
		/*
		 * The daemon aligns offsets in the file; they are aligned addresses
		 * only as far as our mapping's base is (it is when the arena is
		 * mapped at the daemon's address hint).
		 */
		errno = ENOMEM;
	} else {
		p = large_alloc(size ? size : 1, 0, alignment, NULL, __builtin_return_address(0));
	}
#ifdef HEAPD_DEBUG
	if (p)
		memset(p, HC_ALLOC_FILL, size);
#endif
	return p;
}

/*
 * The fast path handles a valid small object in a few loads and one atomic
 * OR: the page map entry gives the span and its class, the class tables the
 * object index, and the span's alloc and free words share a cache line
 * (layout.h). When the span is in the calling thread's own cache (and has
 * been marked as holding old data, mcache_owns), the free clears the alloc
 * bit with a plain store instead: only that thread writes those bits while
 * the span is in its cache, and its next sweep of the word finds the slot
 * free. Anything else (NULL, no mapping yet, a large object, a span with a
 * pinned object, whose page-map entry's flag puts its class out of range,
 * misuse) takes free_checked, which finds out which and says so, and never
 * clears an alloc bit. NULL and an unmapped arena fail the first test: the
 * offset wraps around.
 */
HC_API void hc_free(void *ptr)
{
#ifndef HEAPD_DEBUG
	const segment_t *seg = &proc_g.seg;
	uint64_t off = (uintptr_t)ptr - (uintptr_t)seg->pages;

	if (__builtin_expect(off < ((uint64_t)seg->npages_max << HEAPD_PAGE_SHIFT), 1)) {
		uint64_t e = seg->pagemap[off >> HEAPD_PAGE_SHIFT];
		uint32_t c = heapd_pagemap_class(e);
		if (c - 1 < SIZECLASS_COUNT - 1) { /* a small span's page */
			uint32_t span = heapd_pagemap_span(e);
			/*
			 * An entry with a class names the small span that holds its page
			 * (heapd writes no class on other pages, inner pages of free
			 * spans included), so soff is below the span's length, and the
			 * check of idx against nelems finds a pointer in its tail.
			 */
			uint32_t soff = (uint32_t)(off - ((uint64_t)span << HEAPD_PAGE_SHIFT));
			const sizeclass_info_t *k = &sizeclass_info[c];
			int exact;
			uint32_t idx = sizeclass_divide(soff, k->magic, &exact);
			if (exact && idx < k->nelems) {
				uint64_t bit = 1ULL << (idx & 63);
				uint64_t *alloc = segment_allocbits(seg, span) + (idx >> 6);
				uint64_t *freeb = alloc + k->freebits_delta;
				uint64_t a = bitmap_load(alloc);
				if (a & bit) {
					mcache_t *mc = mcache_tls;
					if (mcache_owns(mc, span)) {
						/* our own span: only we write its alloc bits */
						if (!(bitmap_load(freeb) & bit)) {
							bitmap_store(alloc, a & ~bit);
							mcache_cleared(mc);
							return;
						}
					} else if (!(atomic_fetch_or_explicit((_Atomic uint64_t *)freeb, bit,
					                                      memory_order_release) & bit)) {
						return;
					}
				}
			}
		}
	}
#endif
	if (ptr)
		free_checked(ptr, "hc_free");
}

HC_API size_t hc_usable_size(const void *ptr)
{
	obj_t o;

	if (!ptr || !atomic_load_explicit(&proc_g.mapped, memory_order_acquire))
		return 0;
	if (obj_find(ptr, &o) != OBJ_FOUND || !obj_live(&o))
		return 0;
	return obj_size(&o);
}

HC_API uint64_t hc_ptr_to_off(const void *ptr)
{
	const segment_t *seg = &proc_g.seg;

	if (!ptr || ensure_mapped() < 0)
		return 0;
	if ((const uint8_t *)ptr < seg->pages || (const uint8_t *)ptr >= seg->base + seg->size)
		return 0;
	return (uint64_t)((const uint8_t *)ptr - seg->base);
}

HC_API void *hc_off_to_ptr(uint64_t off)
{
	const segment_t *seg = &proc_g.seg;
	int rc = ensure_mapped();

	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	if (off < (uint64_t)(seg->pages - seg->base) || off >= seg->size) {
		errno = EINVAL;
		return NULL;
	}
	return seg->base + off;
}

HC_API size_t hc_profile_rate(size_t bytes)
{
	return (size_t)profile_set_rate(bytes);
}

HC_API int hc_trim(void)
{
	return mcache_trim();
}

HC_API int hc_stats(hc_stats_t *st)
{
	if (!st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	proc_lock();
	st->requests = request_counts.requests;
	st->refills = request_counts.refills;
	st->large_allocs = request_counts.large_allocs;
	st->reconnects = request_counts.reconnects;
	st->spans_cached = mcache_count_locked();
	st->slot = proc_g.slot;
	st->connected = transport_connected();
	proc_unlock();
	return 0;
}
