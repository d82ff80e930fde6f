// SPDX-License-Identifier: MIT
/*
 * soak_util.c - support for the kill soaks. See soak_util.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* a writer-preferring rwlock */
#endif
#include "soak_util.h"

#include "sizeclass.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bitmap.h"
#include "e2e/client_util.h"
#include "harness.h"
#include "heapclient.h"
#include "layout.h"

#define GRAIN_SHIFT 3 /* 8 bytes per claim bit: the smallest class */

/*
 * The library lock: the book's calls into the library hold it shared, a raw
 * frame holds it alone. Writers first, so that a thread that allocates
 * without pause cannot keep a raw frame out.
 */
static pthread_rwlock_t lib_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

static void lib_enter(void)
{
	pthread_rwlock_rdlock(&lib_lock);
}

static void lib_leave(void)
{
	pthread_rwlock_unlock(&lib_lock);
}

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
	lib_enter();
	void *p = hc_malloc(size);
	int e = errno;
	lib_leave();
	if (!p) {
		snprintf(err, errlen, "pid %d: hc_malloc(%zu): %s", (int)getpid(), size, strerror(e));
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
	lib_enter();
	hc_free(p);
	lib_leave();
	if (size > HEAPD_MAX_SMALL)
		b->large_bytes -= size;
	b->live[k] = b->live[--b->nlive];
	b->spare[b->nfree++] = i;
	return 0;
}

int soak_trim(void)
{
	lib_enter();
	int rc = hc_trim();
	lib_leave();
	return rc;
}

int soak_arena(soak_arena_t *a)
{
	uintptr_t base = 0;
	lib_enter();
	void *p = hc_malloc(8);
	if (p) {
		/* through an integer: the base is not part of the 8-byte object */
		base = (uintptr_t)p - (uintptr_t)hc_ptr_to_off(p);
		hc_free(p);
	}
	lib_leave();
	if (!p)
		return -1;
	a->hdr = (const shm_header_t *)base;
	a->spans = (const shm_span_t *)(base + a->hdr->spans_off);
	a->bits = (uint64_t *)(base + a->hdr->bits_off);
	return 0;
}

uint32_t soak_span_of(const soak_arena_t *a, uint64_t off)
{
	if (off < a->hdr->pages_off)
		return HEAPD_NIL;
	uint64_t page = (off - a->hdr->pages_off) >> HEAPD_PAGE_SHIFT;
	return page < __atomic_load_n(&a->hdr->npages_grown, __ATOMIC_ACQUIRE) ? (uint32_t)page
	                                                                         : HEAPD_NIL;
}

int soak_book_free_bit(soak_book_t *b, uint32_t k, const soak_arena_t *a, uint32_t *span,
                       uint32_t *gen, char *err, size_t errlen)
{
	uint32_t i = b->live[k];
	soak_rec_t *r = &b->recs[i];
	uint64_t off = atomic_load(&r->off), size = r->size;
	void *p = hc_off_to_ptr(off);
	uint32_t id = soak_span_of(a, off);

	if (!p || !cu_verify(p, size, r->seed)) {
		snprintf(err, errlen, "pid %d: object at offset %llu (%llu bytes) lost its pattern",
		         (int)getpid(), (unsigned long long)off, (unsigned long long)size);
		return -1;
	}
	if (size <= HEAPD_MAX_SMALL || id == HEAPD_NIL || a->spans[id].start != id ||
	    a->spans[id].state != SPAN_LARGE) {
		snprintf(err, errlen, "pid %d: object at offset %llu (%llu bytes) does not start a large span",
		         (int)getpid(), (unsigned long long)off, (unsigned long long)size);
		return -1;
	}
	/* Read before the free bit makes the object heapd's, as hc_free reads it. */
	uint32_t g = a->spans[id].gen;
	atomic_store_explicit(&r->off, 0, memory_order_release);
	soak_unclaim(b->claims, off, size);
	uint64_t *alloc = a->bits + (uint64_t)id * HEAPD_BITS_WORDS_PER_PAGE;
	int rc = bitmap_mark_free(alloc, alloc + heapd_freebits_delta(1), 0);
	if (rc != BITMAP_FREED) {
		snprintf(err, errlen, "pid %d: large span %u: %s", (int)getpid(), id,
		         rc == BITMAP_DOUBLE_FREE ? "its free bit was set already" : "its alloc bit is clear");
		return -1;
	}
	b->large_bytes -= size;
	b->live[k] = b->live[--b->nlive];
	b->spare[b->nfree++] = i;
	*span = id;
	*gen = g;
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
			lib_enter();
			hc_free(p);
			lib_leave();
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

/* ---- frames behind the library's back ---- */

#define SOAK_GRACE_S 2.0   /* heapd's LARGE_FREE_GRACE_NS (daemon/large.h) */
#define LATE_MIN_S 2.5     /* a held-back LargeFree goes 2.5-4 s after its free bit */
#define LATE_SPREAD_S 1.5
#define ROUND_TRIP_MAX 32768u /* the round trip's LargeAlloc: at most this much over a small object */

int soak_lib_socket(const char *sock)
{
	/* thread-self: a process whose main thread has exited has no /proc/self/fd to list */
	DIR *d = opendir("/proc/thread-self/fd");
	struct dirent *e;
	int found = -ENOTCONN;

	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		memset(&sa, 0, sizeof(sa));
		if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX &&
		    strcmp(sa.sun_path, sock) == 0)
			found = fd;
	}
	closedir(d);
	return found;
}

/* Write buf on the library's connection, holding the library lock alone. 0, -ENOTCONN or -errno. */
static int send_raw(const char *sock, const uint8_t *buf, size_t len)
{
	int rc = 0;
	pthread_rwlock_wrlock(&lib_lock);
	int fd = soak_lib_socket(sock);
	if (fd < 0)
		rc = fd;
	for (size_t off = 0; rc == 0 && off < len;) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n > 0)
			off += (size_t)n;
	}
	pthread_rwlock_unlock(&lib_lock);
	return rc;
}

int soak_end_session(const char *sock)
{
	/* a length of 8, then 8 bytes that are no Envelope (a varint that never ends) */
	static const uint8_t frame[] = { 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	return send_raw(sock, frame, sizeof(frame));
}

/* LargeFree{span, gen[i]} for each i, in one write. */
static int send_large_frees(const char *sock, uint32_t span, const uint32_t *gens, int n)
{
	uint8_t buf[256];
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
		Heapd__LargeFree lf = HEAPD__LARGE_FREE__INIT;
		lf.span = span;
		lf.gen = gens[i];
		env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_FREE;
		env.large_free = &lf;
		size_t sz = wire_frame_size(&env);
		if (len + sz > sizeof(buf))
			return -EMSGSIZE;
		wire_frame_pack(&env, buf + len);
		len += sz;
	}
	return send_raw(sock, buf, len);
}

static int raw_fail(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int raw_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "pid %d: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* A gap around mean seconds: 0.5 to 1.5 times it. */
static double gap(soak_raw_t *r, double mean)
{
	return mean * (0.5 + (double)(cu_rand(&r->rng) % 1001) / 1000.0);
}

/* Make room in the book for n more objects. */
static int make_room(soak_raw_t *r, soak_book_t *b, uint32_t n, char *err, size_t errlen)
{
	while (b->nfree < n)
		if (soak_book_free(b, (uint32_t)(cu_rand(&r->rng) % b->nlive), err, errlen) < 0)
			return -1;
	return 0;
}

/* A request that must reach heapd and be answered: a LargeAlloc, recorded in the book. */
static int round_trip(soak_raw_t *r, soak_book_t *b, char *err, size_t errlen)
{
	if (make_room(r, b, 1, err, errlen) < 0)
		return -1;
	size_t size = HEAPD_MAX_SMALL + 1 + cu_rand(&r->rng) % ROUND_TRIP_MAX;
	return soak_book_alloc(b, size, err, errlen) ? 0 : -1;
}

/* Does span still hold the large object of generation gen? */
static int still_large(const soak_raw_t *r, uint32_t span, uint32_t gen)
{
	const shm_span_t *s = &r->arena.spans[span];
	return s->start == span && s->state == SPAN_LARGE && s->gen == gen;
}

int soak_raw_init(soak_raw_t *r, const char *sock, int strict, soak_raw_counts_t *counts,
                  uint64_t seed, double end_every, double late_every, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->sock = sock;
	r->strict = strict;
	r->counts = counts;
	r->rng = seed | 1;
	r->end_every = end_every;
	r->late_every = late_every;
	if (soak_arena(&r->arena) < 0)
		return raw_fail(err, errlen, "no arena to look at: %s", strerror(errno));
	double now = cu_now();
	r->next_end = now + gap(r, end_every);
	r->next_late = now + gap(r, late_every);
	return 0;
}

/* Make heapd end the session; the next request must reconnect and re-adopt the slot. */
static int end_session(soak_raw_t *r, soak_book_t *b, char *err, size_t errlen)
{
	hc_stats_t st0, st1;

	hc_stats(&st0);
	int rc = soak_end_session(r->sock);
	if (rc < 0) {
		if (r->strict)
			return raw_fail(err, errlen, "no malformed frame written (connected %d): %s",
			                st0.connected, strerror(-rc));
		atomic_fetch_add(&r->counts->unsent, 1);
		return 0;
	}
	if (round_trip(r, b, err, errlen) < 0)
		return -1;
	hc_stats(&st1);
	if (st1.reconnects <= st0.reconnects)
		return raw_fail(err, errlen, "a request after heapd ended the session did not reconnect "
		                "(reconnects %llu -> %llu)", (unsigned long long)st0.reconnects,
		                (unsigned long long)st1.reconnects);
	if (st1.slot != st0.slot)
		return raw_fail(err, errlen, "the reconnect after an ended session got slot %u, not its "
		                "own slot %u", st1.slot, st0.slot);
	atomic_fetch_add(&r->counts->ended, 1);
	return 0;
}

/*
 * Free a large object by its bit alone, and hold its LargeFree back. A
 * LargeAlloc first, so that the library's last LargeAlloc reply names
 * another object: were it this one, a reconnect could claim its span's next
 * object, reused by a lost reply, as received.
 */
static int hold_back(soak_raw_t *r, soak_book_t *b, char *err, size_t errlen)
{
	hc_stats_t st0, st1;
	uint32_t span, gen, k;

	if (make_room(r, b, 2, err, errlen) < 0)
		return -1;
	for (k = 0; k < b->nlive && soak_book_size(b, k) <= HEAPD_MAX_SMALL; k++)
		;
	if (k == b->nlive && round_trip(r, b, err, errlen) < 0)
		return -1;
	if (round_trip(r, b, err, errlen) < 0)
		return -1;
	for (k = 0; k + 1 < b->nlive && soak_book_size(b, k) <= HEAPD_MAX_SMALL; k++)
		;
	hc_stats(&st0);
	if (soak_book_free_bit(b, k, &r->arena, &span, &gen, err, errlen) < 0)
		return -1;
	r->late[r->nlate].span = span;
	r->late[r->nlate].gen = gen;
	r->late[r->nlate].since = cu_now();
	/* over the grace by a spread: the sweeper has mostly freed the object, its span often reused */
	r->late[r->nlate].due = r->late[r->nlate].since + LATE_MIN_S +
	                        LATE_SPREAD_S * (double)(cu_rand(&r->rng) % 1001) / 1000.0;
	r->nlate++;

	/* Two generations this object is not: heapd ignores both. */
	const uint32_t wrong[] = { gen + 1, gen - 1 };
	int rc = send_large_frees(r->sock, span, wrong, 2);
	if (rc < 0) {
		if (r->strict)
			return raw_fail(err, errlen, "no LargeFree written (connected %d): %s", st0.connected,
			                strerror(-rc));
		atomic_fetch_add(&r->counts->unsent, 1);
		return 0;
	}
	atomic_fetch_add(&r->counts->stale, 2);
	if (!r->strict)
		return 0;
	if (round_trip(r, b, err, errlen) < 0)
		return -1;
	hc_stats(&st1);
	if (st1.reconnects != st0.reconnects || !st1.connected)
		return raw_fail(err, errlen, "LargeFrees of a wrong generation ended the session "
		                "(reconnects %llu -> %llu)", (unsigned long long)st0.reconnects,
		                (unsigned long long)st1.reconnects);
	if (!still_large(r, span, gen))
		return raw_fail(err, errlen, "a LargeFree of a wrong generation freed large span %u "
		                "(generation %u, within the grace)", span, gen);
	return 0;
}

/* Send the i-th held-back LargeFree, twice: the second is stale whatever the first did. */
static int send_late(soak_raw_t *r, soak_book_t *b, uint32_t i, char *err, size_t errlen)
{
	hc_stats_t st0, st1;
	uint32_t span = r->late[i].span, gen = r->late[i].gen;
	int late = cu_now() - r->late[i].since > SOAK_GRACE_S;
	int swept = !still_large(r, span, gen);

	r->late[i] = r->late[--r->nlate];
	hc_stats(&st0);
	const uint32_t gens[] = { gen, gen };
	int rc = send_large_frees(r->sock, span, gens, 2);
	if (rc < 0) {
		if (r->strict)
			return raw_fail(err, errlen, "no LargeFree written (connected %d): %s", st0.connected,
			                strerror(-rc));
		atomic_fetch_add(&r->counts->unsent, 1); /* lost, as with a broken connection: swept */
		return 0;
	}
	atomic_fetch_add(late ? &r->counts->late : &r->counts->at_end, 1);
	atomic_fetch_add(&r->counts->late_swept, (uint64_t)(late && swept));
	atomic_fetch_add(&r->counts->stale, 1);
	if (!r->strict)
		return 0;
	if (round_trip(r, b, err, errlen) < 0)
		return -1;
	hc_stats(&st1);
	if (st1.reconnects != st0.reconnects || !st1.connected)
		return raw_fail(err, errlen, "a %sLargeFree of large span %u ended the session "
		                "(reconnects %llu -> %llu)", late ? "late " : "", span,
		                (unsigned long long)st0.reconnects, (unsigned long long)st1.reconnects);
	if (still_large(r, span, gen))
		return raw_fail(err, errlen, "large span %u (generation %u) is still allocated after its "
		                "LargeFree", span, gen);
	return 0;
}

int soak_raw_step(soak_raw_t *r, soak_book_t *b, char *err, size_t errlen)
{
	double now = cu_now();

	for (uint32_t i = 0; i < r->nlate; i++)
		if (now >= r->late[i].due)
			return send_late(r, b, i, err, errlen);
	if (now >= r->next_end) {
		r->next_end = now + gap(r, r->end_every);
		return end_session(r, b, err, errlen);
	}
	if (now >= r->next_late && r->nlate < SOAK_LATE_MAX) {
		r->next_late = now + gap(r, r->late_every);
		return hold_back(r, b, err, errlen);
	}
	return 0;
}

int soak_raw_finish(soak_raw_t *r, soak_book_t *b, char *err, size_t errlen)
{
	while (r->nlate > 0)
		if (send_late(r, b, r->nlate - 1, err, errlen) < 0)
			return -1;
	return 0;
}

void soak_thread_done(atomic_uint *left)
{
	if (atomic_fetch_sub(left, 1) == 1)
		_exit(0);
}
