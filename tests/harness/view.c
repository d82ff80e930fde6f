// SPDX-License-Identifier: MIT
/*
 * view.c - the arena as a library client maps it. See view.h.
 */
#include "harness/view.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness/liblock.h"
#include "heapclient.h"
#include "sizeclass.h"

int hview_map(hview_t *v)
{
	uintptr_t base = 0;
	hlock_enter();
	void *p = hc_malloc(8);
	if (p) {
		/* through an integer: the base is not part of the 8-byte object */
		base = (uintptr_t)p - (uintptr_t)hc_ptr_to_off(p);
		hc_free(p);
	}
	hlock_leave();
	if (!p)
		return -1;
	v->base = (const uint8_t *)base;
	v->hdr = (const shm_header_t *)base;
	v->pagemap = (const uint64_t *)(base + v->hdr->pagemap_off);
	v->spans = (const shm_span_t *)(base + v->hdr->spans_off);
	v->clients = (const shm_client_t *)(base + v->hdr->clients_off);
	v->bits = (uint64_t *)(base + v->hdr->bits_off);
	v->pages = (uint8_t *)(base + v->hdr->pages_off);
	if (v->hdr->magic != HEAPD_MAGIC) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}

uint32_t hview_span_of(const hview_t *v, const void *p)
{
	uintptr_t off = (uintptr_t)p - (uintptr_t)v->pages;
	if ((uintptr_t)p < (uintptr_t)v->pages || (off >> HEAPD_PAGE_SHIFT) >= v->hdr->npages_max)
		return HEAPD_NIL;
	return heapd_pagemap_span(v->pagemap[off >> HEAPD_PAGE_SHIFT]);
}

/* This process's mapping, with its cache handed back; -1 if it cannot allocate. */
static int map_trimmed(hview_t *v)
{
	if (hview_map(v) < 0) {
		fprintf(stderr, "harness: no object to find the arena with: %s\n", strerror(errno));
		return -1;
	}
	hlock_trim();
	return 0;
}

/*
 * The pages of the span that starts at page i, as a reader without the
 * daemon's lock sees it; 0 for a descriptor being rewritten right now,
 * which the walk steps over a page at a time.
 */
static uint32_t span_len(const hview_t *v, uint32_t i, uint32_t grown)
{
	const shm_span_t *s = &v->spans[i];
	uint32_t len = s->npages;
	return s->start != i || s->state == SPAN_DEAD || len == 0 || len > grown - i ? 0 : len;
}

uint64_t hview_foreign_spans(const pid_t *pids, int npids)
{
	hview_t v;
	if (map_trimmed(&v) < 0)
		return UINT64_MAX;
	uint32_t grown = __atomic_load_n(&v.hdr->npages_grown, __ATOMIC_ACQUIRE);
	uint64_t foreign = 0;
	uint32_t len;

	for (uint32_t i = 0; i < grown; i += len ? len : 1) {
		const shm_span_t *s = &v.spans[i];
		uint32_t owner = s->owner;
		len = span_len(&v, i, grown);
		if (!len || s->state != SPAN_SMALL || owner == 0)
			continue;
		uint32_t pid = owner <= v.hdr->max_clients ? v.clients[owner - 1].pid : 0;
		int known = 0;
		for (int k = 0; k < npids; k++)
			known |= pid != 0 && pid == (uint32_t)pids[k];
		if (!known) {
			fprintf(stderr, "harness: span %u (class %u) is owned by slot %u (pid %u), "
			                "not a live client\n", i, s->sizeclass, owner - 1, pid);
			foreign++;
		}
	}
	return foreign;
}

void hview_dump_in_use(int max)
{
	hview_t v;
	if (map_trimmed(&v) < 0)
		return;
	uint32_t grown = __atomic_load_n(&v.hdr->npages_grown, __ATOMIC_ACQUIRE);
	uint32_t len;

	for (uint32_t i = 0; i < grown && max > 0; i += len ? len : 1) {
		const shm_span_t *s = &v.spans[i];
		len = span_len(&v, i, grown);
		if (!len || (s->state != SPAN_SMALL && s->state != SPAN_LARGE))
			continue;
		uint32_t nelems = s->state == SPAN_SMALL && s->sizeclass < SIZECLASS_COUNT
		                          ? sizeclass_nelems[s->sizeclass]
		                          : 1;
		const uint64_t *a = &v.bits[(uint64_t)i * HEAPD_BITS_WORDS_PER_PAGE];
		const uint64_t *f = a + heapd_freebits_delta(nelems);
		uint32_t live = 0;
		for (uint32_t w = 0; w < (nelems + 63) / 64; w++)
			live += (uint32_t)__builtin_popcountll(a[w] & ~f[w]);
		if (live) {
			uint64_t off = v.hdr->pages_off + ((uint64_t)i << HEAPD_PAGE_SHIFT);
			fprintf(stderr, "harness: span %u (%s, class %u, %u pages, owner %u) at offset %llu: "
			                "%u objects in use\n", i, s->state == SPAN_SMALL ? "small" : "large",
			        s->sizeclass, len, s->owner, (unsigned long long)off, live);
			max--;
		}
	}
}

void hview_read_header(const char *arena_dir, shm_header_t *h)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", arena_dir, HEAPD_META_FILE);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(pread(fd, h, sizeof(*h), 0), (ssize_t)sizeof(*h));
	close(fd);
	ck_assert_uint_eq(h->magic, HEAPD_MAGIC);
}
