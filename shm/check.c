// SPDX-License-Identifier: MIT
/*
 * check.c - the invariant checker: walk a segment and list what is wrong.
 *
 * Entry point: check_segment. It reads only; every index it follows (span
 * ids, list and tree links, page numbers, bitmap words) is bounded by the
 * grown heap first, so a segment full of garbage yields problems, not a
 * crash. Walk steps:
 *   1. From page 0, jump by npages: each descriptor met must start a span
 *      (state FREE/SMALL/LARGE, start == index, 1 <= npages, inside the grown
 *      heap); descriptors inside a span must be DEAD. After an invalid
 *      descriptor the walk resumes where the rebuild would: at the next
 *      descriptor with a live state and a length that fits.
 *   2. Per span: the page map (every page of an in-use span, first and last
 *      of a free one), no two free spans in a row, npreleased, and for in-use
 *      spans the size-class geometry and bitmap_verify (a span a client owns
 *      may be in the middle of its sweep: bitmap.h).
 *   3. The page map beyond npages_grown is HEAPD_NIL; the header counters
 *      equal a recount.
 *   4. Given the page heap: every list entry and tree node is a free span of
 *      the walk, of the right length, linked consistently, the tree in key
 *      order, and each free span of the walk indexed exactly once.
 *   5. The heap-profile region (shm/profrec.h), which clients write: every
 *      published record and mapping set is read through the checked readers
 *      and counted as a problem if any field or index is out of range; and
 *      in spans no client holds, no sampled bit lacks its alloc bit.
 *   6. The directory of named roots (roots.h): every bound entry has a sane
 *      name, names an object start that is allocated (its free bit may be
 *      set: freed while pinned), is pinned, and is what a lookup of its name
 *      finds; every index slot leads to a bound entry of its tag; every pin
 *      bit belongs to an object a root names; a small span's page-map flag
 *      is set exactly while it holds pins, a large span's never.
 * Locks: the caller holds h->lock or knows nobody changes the heap, and
 * that no span the daemon owns is being swept (a client may be sweeping
 * its own).
 */
#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "profrec.h"
#include "roots.h"
#include "sizeclass.h"
#include "span.h"

#define NIL HEAPD_NIL

typedef struct checker {
	const segment_t *seg;
	check_report_t *report;
	size_t n;
	uint32_t grown;
	uint32_t *free_starts; /* free spans of the walk, ascending; NULL without h */
	uint8_t *seen;         /* per free_starts entry: met in the index */
	uint32_t nfree, cap;
} checker_t;

__attribute__((format(printf, 2, 3)))
static void problem(checker_t *c, const char *fmt, ...)
{
	if (c->report && c->n < CHECK_MAX_PROBLEMS) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->report->problems[c->n], sizeof(c->report->problems[0]), fmt, ap);
		va_end(ap);
	}
	c->n++;
}

/* A problem in the bitmaps, which any client can write (layout.h). */
#define data_problem(c, ...) do { \
		if ((c)->report) \
			(c)->report->ndata++; \
		problem(c, __VA_ARGS__); \
	} while (0)

static const char *state_name(uint8_t state)
{
	switch (state) {
	case SPAN_DEAD: return "dead";
	case SPAN_FREE: return "free";
	case SPAN_SMALL: return "small";
	case SPAN_LARGE: return "large";
	default: return "garbage";
	}
}

static void note_free(checker_t *c, uint32_t id)
{
	if (c->cap == 0)
		return;
	if (c->nfree == c->cap) {
		uint32_t ncap = c->cap * 2;
		uint32_t *fs = realloc(c->free_starts, ncap * sizeof(*fs));
		if (!fs) {
			problem(c, "out of memory: free spans past %u are not checked against the index", c->nfree);
			c->cap = 0;
			return;
		}
		c->free_starts = fs;
		c->cap = ncap;
	}
	c->free_starts[c->nfree++] = id;
}

/* Position of free span id in the walk's list, or -1. */
static long find_free(const checker_t *c, uint32_t id)
{
	size_t lo = 0, hi = c->nfree;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c->free_starts[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->nfree && c->free_starts[lo] == id ? (long)lo : -1;
}

static void check_pagemap(checker_t *c, uint32_t p, uint32_t n, const shm_span_t *s)
{
	const segment_t *seg = c->seg;
	if (s->state == SPAN_FREE) {
		if (seg->pagemap[p] != heapd_pagemap_entry(p, 0))
			problem(c, "page %u: page map says %u (class %u), first page of free span %u (%u pages)",
			        p, segment_pagemap_span(seg, p), heapd_pagemap_class(seg->pagemap[p]), p, n);
		if (n > 1 && seg->pagemap[p + n - 1] != heapd_pagemap_entry(p, 0))
			problem(c, "page %u: page map says %u (class %u), last page of free span %u (%u pages)",
			        p + n - 1, segment_pagemap_span(seg, p + n - 1),
			        heapd_pagemap_class(seg->pagemap[p + n - 1]), p, n);
		/* inner pages may name an old span, but no class (layout.h) */
		for (uint32_t i = p + 1; i + 1 < p + n; i++)
			if (heapd_pagemap_class(seg->pagemap[i])) {
				problem(c, "page %u: page map gives class %u inside free span %u (%u pages)", i,
				        heapd_pagemap_class(seg->pagemap[i]), p, n);
				break;
			}
		return;
	}
	uint32_t k = s->state == SPAN_SMALL ? s->sizeclass : 0;
	uint64_t want = heapd_pagemap_entry(p, k) | (seg->pagemap[p] & HEAPD_PAGEMAP_PINNED);
	uint32_t bad = 0, first = 0;
	for (uint32_t i = p; i < p + n; i++)
		if (seg->pagemap[i] != want && bad++ == 0)
			first = i;
	if (bad)
		problem(c, "page %u: page map says %u (class %u), in %s span %u of class %u (%u pages; "
		        "%u entries wrong)", first, segment_pagemap_span(seg, first),
		        heapd_pagemap_class(seg->pagemap[first]), state_name(s->state), p, k, n, bad);
}

/* bitmap_verify, but a free bit without its alloc bit passes: its owner may be sweeping it. */
static int verify_owned(const uint64_t *alloc, const uint64_t *freeb, uint32_t nelems,
                        const char **why)
{
	for (uint32_t w = 0; w < bitmap_words(nelems); w++) {
		uint32_t left = nelems - w * 64 < 64 ? nelems - w * 64 : 64;
		uint64_t f = bitmap_load(&freeb[w]), a = bitmap_load(&alloc[w]) | (f & bitmap_valid_mask(w, nelems));
		if (bitmap_verify(&a, &f, left, why))
			return 1;
	}
	return 0;
}

/* owned: a client holds the span and may be sweeping it right now. */
static void check_bits(checker_t *c, uint32_t p, uint32_t n, uint32_t nelems, int owned)
{
	const char *why = "?";
	if (nelems > HEAPD_SPAN_MAX_OBJECTS) {
		problem(c, "span %u (%u pages): %u objects do not fit a span's bitmaps", p, n, nelems);
		nelems = HEAPD_SPAN_MAX_OBJECTS;
	}
	const uint64_t *alloc = segment_allocbits(c->seg, p), *freeb = segment_freebits(c->seg, p, nelems);
	if (owned ? verify_owned(alloc, freeb, nelems, &why) : bitmap_verify(alloc, freeb, nelems, &why))
		data_problem(c, "span %u: bitmaps: %s", p, why);
	if (!prof_sampleable(nelems) || !c->seg->hdr->prof_size)
		return;
	/* A span's owner reaps sampled bits (profrec.h): only in a span nobody holds are they settled. */
	const uint64_t *sampled = prof_sampled_words(c->seg, p);
	for (uint32_t w = 0; w < bitmap_words(nelems); w++) {
		uint64_t sb = bitmap_load(&sampled[w]);
		if (sb & ~bitmap_valid_mask(w, nelems)) {
			data_problem(c, "span %u: sampled bit set at or beyond nelems", p);
			break;
		}
		if (!owned && (sb & ~bitmap_load(&alloc[w]))) {
			data_problem(c, "span %u: sampled bit set without its alloc bit", p);
			break;
		}
	}
}

static void check_inuse(checker_t *c, const shm_span_t *s, uint32_t p, uint32_t n)
{
	if (s->npreleased != 0)
		problem(c, "span %u: in use with %u released pages", p, s->npreleased);
	if (s->state == SPAN_LARGE) {
		if (s->sizeclass != 0)
			problem(c, "span %u: large span with size class %u", p, s->sizeclass);
		check_bits(c, p, n, 1, 0);
		return;
	}
	uint32_t k = s->sizeclass;
	if (k == 0 || k >= SIZECLASS_COUNT) {
		problem(c, "span %u: small span with size class %u", p, k);
		return;
	}
	if (s->npages != sizeclass_npages[k])
		problem(c, "span %u: class %u span has %u pages; the class has %u", p, k, s->npages,
		        sizeclass_npages[k]);
	check_bits(c, p, n, sizeclass_nelems[k], s->owner != 0);
}

/* Page-map entries beyond npages_grown must be nil; only what the file holds is read. */
static void check_beyond_grown(checker_t *c)
{
	const segment_t *seg = c->seg;
	uint32_t bad = 0, first = 0, p = c->grown;

	while ((p = segment_pagemap_next(seg, p)) < seg->npages_max) {
		uint64_t end = ((uint64_t)p / SEGMENT_PAGEMAP_BLOCK + 1) * SEGMENT_PAGEMAP_BLOCK;
		for (; p < end && p < seg->npages_max; p++)
			if (seg->pagemap[p] != 0 && bad++ == 0)
				first = p;
	}
	if (bad)
		problem(c, "page %u: page map says %u beyond npages_grown %u (%u entries not nil)", first,
		        segment_pagemap_span(seg, first), c->grown, bad);
}

/* Steps 1-3. */
static void check_walk(checker_t *c)
{
	const segment_t *seg = c->seg;
	const shm_header_t *hdr = seg->hdr;
	uint64_t inuse = 0, nfree = 0, released = 0;
	uint32_t prev_free = NIL, p, n;
	span_walk_t w;
	int kind;

	span_walk_start(&w, seg, 0);
	while ((kind = span_walk_next(&w, &p, &n)) != SPAN_WALK_END) {
		const shm_span_t *s = &seg->spans[p];
		if (kind == SPAN_WALK_GAP) {
			if (s->state >= SPAN_FREE && s->state <= SPAN_LARGE && s->npages > c->grown - p)
				problem(c, "page %u: span %u (%u pages) runs past npages_grown %u (pages "
				        "%u..%u belong to no span)", p, p, s->npages, c->grown, p, p + n - 1);
			else
				problem(c, "page %u: %s descriptor with %u pages where a span should start "
				        "(pages %u..%u belong to no span)", p, state_name(s->state), s->npages,
				        p, p + n - 1);
			prev_free = NIL;
			continue;
		}
		if (s->start != p)
			problem(c, "page %u: span descriptor says it starts at page %u", p, s->start);
		for (uint32_t i = p + 1; i < p + n; i++) {
			const shm_span_t *t = &seg->spans[i];
			if (t->state != SPAN_DEAD)
				problem(c, "page %u: span %u (%u pages) overlaps %s span %u (%u pages)", i, p, n,
				        state_name(t->state), i, t->npages);
		}
		check_pagemap(c, p, n, s);
		if (s->state == SPAN_FREE) {
			if (prev_free != NIL)
				problem(c, "page %u: free span %u (%u pages) is followed by free span %u (%u pages)",
				        p, prev_free, seg->spans[prev_free].npages, p, n);
			if (s->npreleased > n)
				problem(c, "span %u: free span of %u pages has %u released", p, n, s->npreleased);
			nfree += n;
			released += s->npreleased;
			note_free(c, p);
			prev_free = p;
		} else {
			check_inuse(c, s, p, n);
			inuse += n;
			prev_free = NIL;
		}
	}

	check_beyond_grown(c);

	if (hdr->pages_inuse != inuse)
		problem(c, "header: pages_inuse %llu, recount %llu", (unsigned long long)hdr->pages_inuse,
		        (unsigned long long)inuse);
	if (hdr->pages_free != nfree)
		problem(c, "header: pages_free %llu, recount %llu", (unsigned long long)hdr->pages_free,
		        (unsigned long long)nfree);
	if (hdr->pages_released != released)
		problem(c, "header: pages_released %llu, recount %llu",
		        (unsigned long long)hdr->pages_released, (unsigned long long)released);
}

/* An index entry: a free span of the walk, met once. Returns 0 if it is not a valid span. */
static int check_entry(checker_t *c, const char *where, uint32_t id)
{
	const shm_span_t *s = &c->seg->spans[id];
	if (s->state != SPAN_FREE || s->start != id) {
		problem(c, "%s: span %u is %s, not a free span", where, id, state_name(s->state));
		return 0;
	}
	long i = find_free(c, id);
	if (i < 0)
		problem(c, "%s: span %u (%u pages) is not a free span of the walk", where, id, s->npages);
	else if (c->seen[i])
		problem(c, "%s: span %u (%u pages) is indexed twice", where, id, s->npages);
	else
		c->seen[i] = 1;
	return 1;
}

static void check_lists(checker_t *c, const pageheap_t *h)
{
	const shm_span_t *spans = c->seg->spans;
	char where[32];

	if (h->free[0] != NIL)
		problem(c, "list 0: not empty (head %u)", h->free[0]);
	for (uint32_t n = 0; n < HEAPD_MAX_LIST; n++) {
		int bit = (h->nonempty[n >> 6] >> (n & 63)) & 1;
		if (bit != (h->free[n] != NIL))
			problem(c, "list %u: nonempty bit is %d, head %u", n, bit, h->free[n]);
	}
	for (uint32_t n = 1; n < HEAPD_MAX_LIST; n++) {
		snprintf(where, sizeof(where), "list %u", n);
		uint32_t prev = NIL, steps = 0;
		for (uint32_t id = h->free[n]; id != NIL; prev = id, id = spans[id].next) {
			if (id >= c->grown) {
				problem(c, "%s: link to page %u beyond the grown heap", where, id);
				break;
			}
			if (++steps > c->nfree + 1) {
				problem(c, "%s: longer than the number of free spans (a cycle?)", where);
				break;
			}
			if (!check_entry(c, where, id))
				break;
			if (spans[id].npages != n)
				problem(c, "%s: span %u has %u pages", where, id, spans[id].npages);
			if (spans[id].prev != prev)
				problem(c, "%s: span %u has prev %u, expected %u", where, id, spans[id].prev, prev);
		}
	}
}

static void check_tree(checker_t *c, const pageheap_t *h)
{
	const shm_span_t *spans = c->seg->spans;
	size_t cap = (size_t)c->nfree + 2, sp = 0, visits = 0;
	uint32_t *stack = malloc(cap * sizeof(*stack));
	uint32_t last = NIL;

	if (!stack) {
		problem(c, "tree: out of memory, not checked");
		return;
	}
	for (uint32_t t = h->large; t != NIL || sp > 0;) {
		while (t != NIL) {
			if (t >= c->grown) {
				problem(c, "tree: link to page %u beyond the grown heap", t);
				t = NIL;
				break;
			}
			if (sp == cap) {
				problem(c, "tree: deeper than the number of free spans (a cycle?)");
				goto out;
			}
			stack[sp++] = t;
			t = spans[t].left;
		}
		if (sp == 0)
			break;
		t = stack[--sp];
		if (++visits > c->nfree + 1) {
			problem(c, "tree: more nodes than free spans (a cycle?)");
			goto out;
		}
		if (check_entry(c, "tree", t)) {
			const shm_span_t *s = &spans[t];
			if (s->npages < HEAPD_MAX_LIST)
				problem(c, "tree: span %u has %u pages, below %u", t, s->npages, HEAPD_MAX_LIST);
			if (last != NIL && (spans[last].npages > s->npages ||
			                    (spans[last].npages == s->npages && last >= t)))
				problem(c, "tree: span %u (%u pages) follows span %u (%u pages) out of order", t,
				        s->npages, last, spans[last].npages);
			last = t;
		}
		t = spans[t].right;
	}
out:
	free(stack);
}

/* Step 4. */
static void check_index(checker_t *c, const pageheap_t *h)
{
	check_lists(c, h);
	check_tree(c, h);
	for (uint32_t i = 0; i < c->nfree; i++)
		if (!c->seen[i])
			problem(c, "span %u (free, %u pages) is on no list and not in the tree",
			        c->free_starts[i], c->seg->spans[c->free_starts[i]].npages);
}

/* Step 5: the published records and mapping sets, each through its checked reader. */
static void check_profile(checker_t *c)
{
	prof_view_t v;
	prof_rec_t rec;
	prof_mapset_t *set;
	const char *why;
	uint32_t st, bad = 0, first = 0;
	const char *first_why = "";

	prof_walk_t w;
	uint32_t i;

	if (prof_view(c->seg, &v) < 0)
		return;
	prof_walk_start(&w, c->seg, &v);
	while ((i = prof_walk_next(&w)) < v.nrecs) {
		if (prof_read_rec(&v, i, &rec, &st, &why) == -EINVAL && bad++ == 0) {
			first = i;
			first_why = why;
		}
	}
	if (bad)
		data_problem(c, "profile: %u records hold garbage; the first, record %u: %s", bad, first,
		        first_why);
	set = malloc(sizeof(*set));
	if (!set) {
		problem(c, "out of memory: the profile's mapping sets are not checked");
		return;
	}
	bad = 0;
	for (i = 0; i < v.nmapsets; i++) {
		if (prof_read_mapset(&v, i, set, &st, &why) == -EINVAL && bad++ == 0) {
			first = i;
			first_why = why;
		}
	}
	if (bad)
		data_problem(c, "profile: %u mapping sets hold garbage; the first, set %u: %s", bad, first,
		        first_why);
	free(set);
}

/* ---- step 6: roots and pins ---- */

/* A name for a problem line: printable bytes, others as \xHH, cut short. */
static const char *root_name(const uint8_t *name, uint32_t nlen, char *buf, size_t len)
{
	size_t n = 0;
	uint32_t i;

	for (i = 0; i < nlen && n + 8 < len; i++) {
		uint8_t b = name[i];
		if (b >= 0x20 && b < 0x7f && b != '\\')
			buf[n++] = (char)b;
		else
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x", b);
	}
	buf[n] = '\0';
	if (i < nlen)
		snprintf(buf + n, len - n, "...");
	return buf;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* One bound entry e: its name, its object, its pin, its index slot. */
static void check_root(checker_t *c, uint32_t e)
{
	const segment_t *seg = c->seg;
	const shm_root_t *r = &seg->roots[e];
	uint64_t off = r->off[roots_cur(r)], found_off;
	uint8_t bytes[ROOTS_NAME_WORDS * 8];
	uint32_t found;
	roots_key_t k;
	roots_obj_t o;
	char name[48];
	int alloc, freed;

	uint32_t len = roots_name(seg, e, bytes);
	int padded = 1;
	for (uint32_t i = len; i < sizeof(bytes); i++)
		padded &= bytes[i] == 0;
	if (!padded || roots_key(&k, seg->hdr->arena_id, bytes, len) < 0 ||
	    r->tag != (uint32_t)(k.hash >> 32)) {
		problem(c, "root entry %u: its name (%u bytes, \"%s\") is not one a bind writes", e, len,
		        root_name(bytes, len, name, sizeof(name)));
		return;
	}
	root_name(bytes, len, name, sizeof(name));
	if (roots_object(seg, off, &o) < 0) {
		problem(c, "root \"%s\": offset %llu is not the start of an object", name,
		        (unsigned long long)off);
		return;
	}
	roots_object_bits(seg, &o, &alloc, &freed);
	if (!alloc) /* its alloc bit is in the data, which clients write */
		data_problem(c, "root \"%s\": the object at offset %llu is not allocated", name,
		        (unsigned long long)off);
	if (!roots_object_pinned(seg, &o))
		problem(c, "root \"%s\": the object at offset %llu (span %u, object %u) is not pinned", name,
		        (unsigned long long)off, o.span, o.idx);
	else if (!o.large && !(seg->pagemap[o.span] & HEAPD_PAGEMAP_PINNED))
		problem(c, "root \"%s\": span %u holds its pinned object but its page map is not flagged",
		        name, o.span);
	if (roots_lookup(seg, &k, &found_off, &found, NULL) < 0)
		problem(c, "root \"%s\": a lookup of its name finds nothing (entry %u)", name, e);
	else if (found != e)
		problem(c, "root \"%s\": a lookup of its name finds entry %u, not %u", name, found, e);
}

/* The arena offset of object idx of the in-use span starting at pg, or 0. */
static uint64_t object_off(const checker_t *c, uint32_t pg, uint32_t idx)
{
	const segment_t *seg = c->seg;
	const shm_span_t *s = &seg->spans[pg];
	uint64_t base = seg->hdr->pages_off + ((uint64_t)pg << HEAPD_PAGE_SHIFT);

	if (pg >= c->grown || s->start != pg)
		return 0;
	if (s->state == SPAN_LARGE)
		return idx == 0 ? base : 0;
	if (s->state != SPAN_SMALL || s->sizeclass == 0 || s->sizeclass >= SIZECLASS_COUNT ||
	    idx >= sizeclass_nelems[s->sizeclass])
		return 0;
	return base + (uint64_t)idx * sizeclass_size[s->sizeclass];
}

static void check_roots(checker_t *c)
{
	const segment_t *seg = c->seg;
	const shm_header_t *hdr = seg->hdr;
	uint64_t *offs = NULL, end;
	size_t n = 0, cap = 0;
	roots_walk_t w;
	uint32_t e;

	if (!seg->roots || hdr->roots_max == 0)
		return;
	roots_walk_start(&w, seg, 0);
	while (roots_walk_next(&w, &e)) {
		const shm_root_t *r = &seg->roots[e];
		check_root(c, e);
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			uint64_t *grown = realloc(offs, ncap * sizeof(*offs));
			if (!grown) {
				problem(c, "out of memory: pins are not checked against the roots");
				free(offs);
				return;
			}
			offs = grown;
			cap = ncap;
		}
		offs[n++] = r->off[roots_cur(r)];
	}
	if (n != hdr->roots_count)
		problem(c, "header: roots_count %u, the directory holds %zu bindings", hdr->roots_count, n);
	if (n)
		qsort(offs, n, sizeof(*offs), cmp_u64);

	/* Every slot of the index lookups use leads to a bound entry of its tag. */
	const _Atomic uint64_t *ix = roots_index(seg, atomic_load(&((shm_header_t *)hdr)->roots_gen));
	uint64_t at = (uint64_t)((const uint8_t *)ix - seg->base), slots = 0;
	for (uint32_t i = 0; i < hdr->roots_nslots;) {
		uint64_t d = segment_meta_next_data(seg, at + (uint64_t)i * 8, &end);
		if (d >= at + (uint64_t)hdr->roots_nslots * 8)
			break;
		for (i = (uint32_t)((d - at) / 8); i < hdr->roots_nslots && at + (uint64_t)i * 8 < end; i++) {
			uint64_t s = atomic_load_explicit(&ix[i], memory_order_relaxed);
			if (s == ROOTS_SLOT_EMPTY || s == ROOTS_SLOT_TOMB)
				continue;
			uint32_t re = roots_slot_entry(s);
			if (re >= hdr->roots_max || seg->roots[re].off[roots_cur(&seg->roots[re])] == 0)
				problem(c, "roots index slot %u: entry %u is not bound", i, re);
			else if (seg->roots[re].tag != (uint32_t)(s >> 32))
				problem(c, "roots index slot %u: the tag is not entry %u's", i, re);
			else
				slots++;
		}
	}
	if (slots != n)
		problem(c, "roots index: %llu slots lead to bound entries, %zu are bound",
		        (unsigned long long)slots, n);

	/* Every pin bit is an object a root names, in a span whose flag says so. */
	uint64_t words = (uint64_t)seg->npages_max * HEAPD_PIN_WORDS_PER_PAGE;
	for (uint64_t i = 0; i < words;) {
		uint64_t d = segment_meta_next_data(seg, hdr->pins_off + i * 8, &end);
		if (d >= hdr->pins_off + hdr->pins_size)
			break;
		for (i = (d - hdr->pins_off) / 8; i < words && hdr->pins_off + i * 8 < end; i++) {
			uint64_t v = bitmap_load(&seg->pins[i]);
			uint32_t pg = (uint32_t)(i / HEAPD_PIN_WORDS_PER_PAGE);
			for (uint64_t b = v; b; b &= b - 1) {
				uint32_t idx = (uint32_t)(i % HEAPD_PIN_WORDS_PER_PAGE) * 64 +
				               (uint32_t)__builtin_ctzll(b);
				uint64_t off = object_off(c, pg, idx);
				if (!off) {
					problem(c, "page %u: pin bit %u where no such object is", pg, idx);
					continue;
				}
				if (!n || !bsearch(&off, offs, n, sizeof(*offs), cmp_u64))
					problem(c, "span %u: object %u (offset %llu) is pinned, but no root names it", pg,
					        idx, (unsigned long long)off);
			}
		}
	}
	free(offs);

	/* Flags: a small span's while it holds pins, a large span's never. */
	span_walk_t sw;
	uint32_t p, len;
	int kind;
	span_walk_start(&sw, seg, 0);
	while ((kind = span_walk_next(&sw, &p, &len)) != SPAN_WALK_END) {
		const shm_span_t *s = &seg->spans[p];
		if (kind != SPAN_WALK_SPAN || s->state == SPAN_FREE || !(seg->pagemap[p] & HEAPD_PAGEMAP_PINNED))
			continue;
		int any = 0;
		if (s->state == SPAN_SMALL && s->sizeclass > 0 && s->sizeclass < SIZECLASS_COUNT)
			for (uint32_t i = 0; i < bitmap_words(sizeclass_nelems[s->sizeclass]); i++)
				any |= bitmap_load(&segment_pins(seg, p)[i]) != 0;
		if (!any)
			problem(c, "span %u: its page map is flagged pinned, but it holds no pin", p);
	}
}

size_t check_segment(const segment_t *seg, const pageheap_t *h, check_report_t *report)
{
	checker_t c = { .seg = seg, .report = report };

	if (report)
		report->nproblems = report->ndata = 0;
	if (!seg || !seg->hdr || !seg->spans || !seg->pagemap) {
		problem(&c, "segment is not mapped");
		goto out;
	}
	c.grown = seg->hdr->npages_grown;
	if (c.grown > seg->npages_max) {
		problem(&c, "header: npages_grown %u exceeds npages_max %u", c.grown, seg->npages_max);
		c.grown = seg->npages_max;
	}
	if (h) {
		c.cap = 1024;
		c.free_starts = malloc(c.cap * sizeof(*c.free_starts));
		if (!c.free_starts) {
			problem(&c, "out of memory: the index is not checked");
			c.cap = 0;
			h = NULL;
		}
	}
	check_walk(&c);
	check_profile(&c);
	check_roots(&c);
	if (h && c.cap) {
		c.seen = calloc(c.nfree ? c.nfree : 1, 1);
		if (c.seen)
			check_index(&c, h);
		else
			problem(&c, "out of memory: the index is not checked");
	}
	free(c.free_starts);
	free(c.seen);
out:
	if (report)
		report->nproblems = c.n;
	return c.n;
}
