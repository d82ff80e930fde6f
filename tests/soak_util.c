// SPDX-License-Identifier: MIT
/*
 * soak_util.c - support for the kill soaks. See soak_util.h.
 */
#include "soak_util.h"

#include "sizeclass.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e/client_util.h"
#include "harness.h"
#include "heapclient.h"
#include "layout.h"

#define GRAIN_SHIFT 3 /* 8 bytes per claim bit: the smallest class */

void *soak_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("soak: mmap");
		abort();
	}
	return p;
}

uint64_t soak_env(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	char *end;
	if (!s || !*s)
		return def;
	unsigned long long v = strtoull(s, &end, 10);
	return *end ? def : v;
}

void soak_claims_init(soak_claims_t *c, const char *path)
{
	struct stat ms, ds;
	char meta[512], data[512];
	snprintf(meta, sizeof(meta), "%s/%s", path, HEAPD_META_FILE);
	snprintf(data, sizeof(data), "%s/%s", path, HEAPD_DATA_FILE);
	if (stat(meta, &ms) < 0 || stat(data, &ds) < 0) {
		perror("soak: the arena");
		abort();
	}
	/* arena offsets run over meta, then data */
	c->nbits = (uint64_t)(ms.st_size + ds.st_size) >> GRAIN_SHIFT;
	c->bits = soak_shared((c->nbits + 63) / 64 * sizeof(uint64_t));
}

/* The mask of bits [lo, hi) of word w, for grains [g0, g1). */
static uint64_t word_mask(uint64_t w, uint64_t g0, uint64_t g1)
{
	uint64_t lo = g0 > w * 64 ? g0 - w * 64 : 0;
	uint64_t hi = g1 < (w + 1) * 64 ? g1 - w * 64 : 64;
	uint64_t m = hi == 64 ? ~0ULL : (1ULL << hi) - 1;
	return m & ~((1ULL << lo) - 1);
}

int soak_claim(soak_claims_t *c, uint64_t off, uint64_t size)
{
	uint64_t g0 = off >> GRAIN_SHIFT, g1 = (off + size + (1u << GRAIN_SHIFT) - 1) >> GRAIN_SHIFT;
	int clash = 0;

	if (size == 0 || g1 > c->nbits || g1 < g0)
		return -2;
	for (uint64_t w = g0 / 64; w * 64 < g1; w++) {
		uint64_t m = word_mask(w, g0, g1);
		if (atomic_fetch_or(&c->bits[w], m) & m)
			clash = 1;
	}
	return clash ? -1 : 0;
}

void soak_unclaim(soak_claims_t *c, uint64_t off, uint64_t size)
{
	uint64_t g0 = off >> GRAIN_SHIFT, g1 = (off + size + (1u << GRAIN_SHIFT) - 1) >> GRAIN_SHIFT;

	if (size == 0 || g1 > c->nbits)
		return;
	for (uint64_t w = g0 / 64; w * 64 < g1; w++)
		atomic_fetch_and(&c->bits[w], ~word_mask(w, g0, g1));
}

void soak_book_init(soak_book_t *b, soak_rec_t *recs, uint32_t cap, soak_claims_t *claims,
                    uint64_t seedbase)
{
	memset(b, 0, sizeof(*b));
	b->recs = recs;
	b->claims = claims;
	b->cap = cap;
	b->seedbase = seedbase;
	b->live = calloc(cap, sizeof(uint32_t));
	b->spare = calloc(cap, sizeof(uint32_t));
	if (!b->live || !b->spare)
		abort();
	for (uint32_t i = 0; i < cap; i++)
		b->spare[b->nfree++] = cap - 1 - i;
}

void *soak_book_alloc(soak_book_t *b, size_t size, char *err, size_t errlen)
{
	if (b->nfree == 0) {
		snprintf(err, errlen, "pid %d: the book of live objects is full", (int)getpid());
		return NULL;
	}
	void *p = hc_malloc(size);
	if (!p) {
		snprintf(err, errlen, "pid %d: hc_malloc(%zu): %s", (int)getpid(), size, strerror(errno));
		return NULL;
	}
	uint64_t off = hc_ptr_to_off(p);
	int rc = soak_claim(b->claims, off, size);
	if (rc < 0) {
		snprintf(err, errlen, "pid %d: new object at offset %llu (%zu bytes) %s", (int)getpid(),
		         (unsigned long long)off, size,
		         rc == -1 ? "overlaps a live object" : "is not inside the arena");
		return NULL;
	}
	uint64_t seed = b->seedbase + ++b->serial;
	cu_fill(p, size, seed);
	uint32_t i = b->spare[--b->nfree];
	soak_rec_t *r = &b->recs[i];
	r->size = size;
	r->seed = seed;
	atomic_store_explicit(&r->off, off, memory_order_release);
	b->live[b->nlive++] = i;
	if (size > HEAPD_MAX_SMALL)
		b->large_bytes += size;
	return p;
}

uint64_t soak_book_size(const soak_book_t *b, uint32_t k)
{
	return b->recs[b->live[k]].size;
}

int soak_book_free(soak_book_t *b, uint32_t k, char *err, size_t errlen)
{
	uint32_t i = b->live[k];
	soak_rec_t *r = &b->recs[i];
	uint64_t off = atomic_load(&r->off), size = r->size;
	void *p = hc_off_to_ptr(off);

	if (!p || !cu_verify(p, size, r->seed)) {
		snprintf(err, errlen, "pid %d: object at offset %llu (%llu bytes) lost its pattern",
		         (int)getpid(), (unsigned long long)off, (unsigned long long)size);
		return -1;
	}
	atomic_store_explicit(&r->off, 0, memory_order_release);
	soak_unclaim(b->claims, off, size);
	hc_free(p);
	if (size > HEAPD_MAX_SMALL)
		b->large_bytes -= size;
	b->live[k] = b->live[--b->nlive];
	b->spare[b->nfree++] = i;
	return 0;
}

int64_t soak_recs_check(soak_rec_t *recs, uint32_t cap, soak_claims_t *claims, int do_free,
                        char *err, size_t errlen)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < cap; i++) {
		soak_rec_t *r = &recs[i];
		uint64_t off = atomic_load_explicit(&r->off, memory_order_acquire);
		if (off == 0)
			continue;
		void *p = hc_off_to_ptr(off);
		if (!p || !cu_verify(p, r->size, r->seed)) {
			snprintf(err, errlen, "object at offset %llu (%llu bytes) lost its pattern",
			         (unsigned long long)off, (unsigned long long)r->size);
			return -1;
		}
		if (do_free) {
			soak_unclaim(claims, off, r->size);
			hc_free(p);
			atomic_store(&r->off, 0);
		}
		n++;
	}
	return n;
}

int soak_clients(const char *sock, soak_client_t *out, int max)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__ClientsRequest req = HEAPD__CLIENTS_REQUEST__INIT;
	int fd = harness_control(sock), n = 0, rc;

	if (fd < 0)
		return fd;
	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS;
	env.clients = &req;
	rc = harness_call(fd, &env, &reply);
	close(fd);
	if (rc < 0)
		return rc;
	if (reply->msg_case != HEAPD__ENVELOPE__MSG_CLIENTS_REPLY) {
		wire_free(reply);
		return -EPROTO;
	}
	for (size_t i = 0; i < reply->clients_reply->n_clients; i++) {
		const Heapd__ClientInfo *ci = reply->clients_reply->clients[i];
		if (ci->control)
			continue;
		if (n < max) {
			out[n].pid = ci->pid;
			out[n].slot = ci->slot;
			out[n].spans_cached = ci->spans_cached;
			out[n].pages_held = ci->pages_held;
		}
		n++;
	}
	wire_free(reply);
	return n;
}

/* This process's mapping of the arena, through the library; NULL if it cannot allocate. */
static const uint8_t *arena_base(void)
{
	/* Offsets count from the start of the file: an object and its offset give the mapping's base. */
	uint8_t *p = hc_malloc(8);
	if (!p) {
		fprintf(stderr, "soak: no object to find the arena with: %s\n", strerror(errno));
		return NULL;
	}
	/* through an integer: the base is not part of the 8-byte object */
	uintptr_t addr = (uintptr_t)p - (uintptr_t)hc_ptr_to_off(p);
	hc_free(p);
	hc_trim();
	return (const uint8_t *)addr;
}

uint64_t soak_foreign_spans(const pid_t *pids, int npids)
{
	const uint8_t *base = arena_base();
	if (!base)
		return UINT64_MAX;
	const shm_header_t *hdr = (const shm_header_t *)base;
	const shm_span_t *spans = (const shm_span_t *)(base + hdr->spans_off);
	const shm_client_t *clients = (const shm_client_t *)(base + hdr->clients_off);
	uint32_t grown = __atomic_load_n(&hdr->npages_grown, __ATOMIC_ACQUIRE);
	uint64_t foreign = 0;

	for (uint32_t i = 0; i < grown;) {
		const shm_span_t *s = &spans[i];
		uint32_t len = s->npages;
		if (s->start != i || s->state == SPAN_DEAD || len == 0 || len > grown - i) {
			i++; /* a descriptor the daemon is rewriting right now */
			continue;
		}
		uint32_t owner = s->owner;
		if (s->state == SPAN_SMALL && owner != 0) {
			uint32_t pid = owner <= hdr->max_clients ? clients[owner - 1].pid : 0;
			int known = 0;
			for (int k = 0; k < npids; k++)
				known |= pid != 0 && pid == (uint32_t)pids[k];
			if (!known) {
				fprintf(stderr, "soak: span %u (class %u) is owned by slot %u (pid %u), "
				                "not a live client\n", i, s->sizeclass, owner - 1, pid);
				foreign++;
			}
		}
		i += len;
	}
	return foreign;
}

void soak_dump_in_use(int max)
{
	const uint8_t *base = arena_base();
	if (!base)
		return;
	const shm_header_t *hdr = (const shm_header_t *)base;
	const shm_span_t *spans = (const shm_span_t *)(base + hdr->spans_off);
	const uint64_t *bits = (const uint64_t *)(base + hdr->bits_off);
	uint32_t grown = __atomic_load_n(&hdr->npages_grown, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; i < grown && max > 0;) {
		const shm_span_t *s = &spans[i];
		uint32_t len = s->npages;
		if (s->start != i || s->state == SPAN_DEAD || len == 0 || len > grown - i) {
			i++;
			continue;
		}
		if (s->state == SPAN_SMALL || s->state == SPAN_LARGE) {
			uint32_t nelems = s->state == SPAN_SMALL && s->sizeclass < SIZECLASS_COUNT ? sizeclass_nelems[s->sizeclass] : 1, live = 0;
			uint32_t nwords = (nelems + 63) / 64;
			const uint64_t *a = &bits[(uint64_t)i * HEAPD_BITS_WORDS_PER_PAGE];
			const uint64_t *f = a + heapd_freebits_delta(nelems);
			for (uint32_t w = 0; w < nwords; w++)
				live += (uint32_t)__builtin_popcountll(a[w] & ~f[w]);
			if (live) {
				fprintf(stderr, "soak: span %u (%s, class %u, %u pages, owner %u) at offset %llu: "
				                "%u objects in use\n", i, s->state == SPAN_SMALL ? "small" : "large",
				        s->sizeclass, len, s->owner,
				        (unsigned long long)(hdr->pages_off + ((uint64_t)i << HEAPD_PAGE_SHIFT)), live);
				max--;
			}
		}
		i += len;
	}
}
