// SPDX-License-Identifier: MIT
/*
 * roots.c - names, the lock-free lookup, the walk of the entries, and
 * objects as a root sees them (see roots.h for the layout and the rules).
 *
 * Entry points: roots_hash, roots_key, roots_key_str, roots_lookup,
 * roots_walk_start/next, roots_object, roots_object_bits. Everything here
 * reads; heapd's writes live in daemon/roots.c. Every value read from the
 * directory is bounded before it is used, so a client never faults on
 * garbage even if the directory held some.
 */
#include "roots.h"

#include <errno.h>
#include <string.h>

#include "bitmap.h"
#include "sizeclass.h"

uint64_t roots_hash(uint64_t seed, const uint64_t *w, uint32_t len)
{
	uint64_t h = seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15ULL);
	uint32_t nwords = (len + 7) / 8;

	for (uint32_t i = 0; i < nwords; i++) {
		h ^= w[i];
		h *= 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 31;
	}
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	h ^= h >> 32;
	return h;
}

int roots_key(roots_key_t *k, uint64_t seed, const void *name, size_t len)
{
	if (len == 0)
		return -EINVAL;
	if (len > ROOTS_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '\0', len))
		return -EINVAL;
	k->len = (uint32_t)len;
	k->nwords = (uint32_t)(len + 7) / 8;
	k->w[k->nwords - 1] = 0;
	memcpy(k->w, name, len);
	k->hash = roots_hash(seed, k->w, k->len);
	return 0;
}

int roots_key_str(roots_key_t *k, uint64_t seed, const char *name)
{
	size_t len = strnlen(name, ROOTS_NAME_MAX + 1);
	return roots_key(k, seed, name, len);
}

uint32_t roots_name(const segment_t *seg, uint32_t e, uint8_t *buf)
{
	for (uint32_t i = 0; i < ROOTS_NAME_WORDS; i++) {
		uint64_t w = roots_name_word(seg, e, i);
		memcpy(buf + 8 * i, &w, 8);
	}
	return atomic_load_explicit((_Atomic uint8_t *)&seg->roots[e].len, memory_order_relaxed);
}

/*
 * 1 if entry e is bound to k's name now, with the object in *off and the
 * ver of the binding in *ver; 0 if it is not (another name, or no
 * binding). Reads again while heapd moves ver.
 */
static int entry_match(const segment_t *seg, uint32_t e, const roots_key_t *k, uint64_t *off,
                       uint64_t *ver)
{
	const shm_root_t *r = &seg->roots[e];
	for (;;) {
		uint64_t v = atomic_load_explicit(&r->ver, memory_order_acquire);
		uint64_t o = atomic_load_explicit((_Atomic uint64_t *)&r->off[v & 1], memory_order_relaxed);
		int same = atomic_load_explicit((_Atomic uint8_t *)&r->len, memory_order_relaxed) == k->len;
		for (uint32_t i = 0; same && i < k->nwords; i++)
			same = roots_name_word(seg, e, i) == k->w[i];
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&r->ver, memory_order_relaxed) != v)
			continue; /* heapd changed it meanwhile */
		if (!same || o == 0)
			return 0;
		*off = o;
		*ver = v;
		return 1;
	}
}

int roots_lookup(const segment_t *seg, const roots_key_t *k, uint64_t *off, uint32_t *entry,
                 uint64_t *id)
{
	const shm_header_t *hdr = seg->hdr;
	uint32_t nslots = hdr->roots_nslots, max = hdr->roots_max;
	uint32_t mask = nslots - 1, tag = (uint32_t)(k->hash >> 32);
	uint64_t o, v;

	if (nslots == 0 || (nslots & mask))
		return -ENOENT;
	for (;;) {
		uint64_t gen = atomic_load_explicit(&((shm_header_t *)hdr)->roots_gen, memory_order_acquire);
		const _Atomic uint64_t *ix = roots_index(seg, gen);
		uint32_t i = (uint32_t)k->hash & mask;
		for (uint32_t n = 0; n < nslots; n++, i = (i + 1) & mask) {
			/* acquire: an entry's name and binding are written before its slot */
			uint64_t s = atomic_load_explicit(&ix[i], memory_order_acquire);
			if (s == ROOTS_SLOT_EMPTY)
				break;
			if ((uint32_t)(s >> 32) != tag || s == ROOTS_SLOT_TOMB)
				continue;
			uint32_t e = roots_slot_entry(s);
			if (e >= max || !entry_match(seg, e, k, &o, &v))
				continue;
			if (off)
				*off = o;
			if (entry)
				*entry = e;
			if (id)
				*id = roots_binding_id(e, v);
			return 0;
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&((shm_header_t *)hdr)->roots_gen, memory_order_relaxed) == gen)
			return -ENOENT;
		/* the index was rebuilt while we probed: probe the new one */
	}
}

/* ---- the walk ---- */

void roots_walk_start(roots_walk_t *w, const segment_t *seg, uint32_t from)
{
	w->seg = seg;
	w->next = from;
	w->data_end = 0;
}

int roots_walk_next(roots_walk_t *w, uint32_t *entry)
{
	const segment_t *seg = w->seg;
	uint64_t base = seg->hdr->roots_off, max = seg->hdr->roots_max;

	while (w->next < max) {
		uint64_t at = base + (uint64_t)w->next * ROOTS_HEAD_SIZE;
		if (at >= w->data_end) {
			/* Where the heads' array holds data next; a head in a hole is unbound. */
			uint64_t d = segment_meta_next_data(seg, at, &w->data_end);
			if (d > at) {
				uint64_t skip = (d - base + ROOTS_HEAD_SIZE - 1) / ROOTS_HEAD_SIZE;
				w->next = skip < max ? (uint32_t)skip : (uint32_t)max;
				continue;
			}
		}
		const shm_root_t *r = &seg->roots[w->next++];
		if (r->off[roots_cur(r)] != 0) {
			*entry = w->next - 1;
			return 1;
		}
	}
	return 0;
}

/* ---- objects ---- */

int roots_object(const segment_t *seg, uint64_t off, roots_obj_t *o)
{
	const shm_header_t *hdr = seg->hdr;
	uint32_t grown = hdr->npages_grown < seg->npages_max ? hdr->npages_grown : seg->npages_max;

	if (off < hdr->pages_off || off - hdr->pages_off >= (uint64_t)grown << HEAPD_PAGE_SHIFT)
		return -EINVAL;
	uint64_t rel = off - hdr->pages_off;
	uint32_t page = (uint32_t)(rel >> HEAPD_PAGE_SHIFT);
	uint32_t span = segment_pagemap_span(seg, page);
	if (span >= grown || span > page)
		return -EINVAL;
	const shm_span_t *s = &seg->spans[span];
	if (s->start != span || s->npages == 0 || page - span >= s->npages || s->npages > grown - span)
		return -EINVAL;
	uint64_t soff = rel - ((uint64_t)span << HEAPD_PAGE_SHIFT);
	o->span = span;
	if (s->state == SPAN_LARGE) {
		if (soff != 0)
			return -EINVAL;
		o->idx = 0;
		o->nelems = 1;
		o->large = 1;
		o->size = (uint64_t)s->npages << HEAPD_PAGE_SHIFT;
		return 0;
	}
	if (s->state != SPAN_SMALL)
		return -EINVAL;
	uint32_t k = s->sizeclass;
	if (k == 0 || k >= SIZECLASS_COUNT || s->npages != sizeclass_npages[k])
		return -EINVAL;
	if (soff % sizeclass_size[k] != 0 || soff / sizeclass_size[k] >= sizeclass_nelems[k])
		return -EINVAL;
	o->idx = (uint32_t)(soff / sizeclass_size[k]);
	o->nelems = sizeclass_nelems[k];
	o->large = 0;
	o->size = sizeclass_size[k];
	return 0;
}

void roots_object_bits(const segment_t *seg, const roots_obj_t *o, int *alloc, int *freed)
{
	const uint64_t *a = segment_allocbits(seg, o->span);
	const uint64_t *f = segment_freebits(seg, o->span, o->nelems);
	uint32_t w = o->idx >> 6, b = o->idx & 63;

	*alloc = (int)(bitmap_load(&a[w]) >> b & 1);
	*freed = (int)(bitmap_load(&f[w]) >> b & 1);
}
