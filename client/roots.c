// SPDX-License-Identifier: MIT
/*
 * roots.c - named roots in libheapclient: hc_root_get, hc_root_set,
 * hc_root_cas and hc_root_wait (heapclient.h).
 *
 *   - A lookup reads the directory in the mapped metadata (shm/roots.h,
 *     roots_lookup): no lock, no system call, and no write to shared
 *     memory, so any number of processes look up at full speed.
 *   - A change is one request to heapd (RootSet, RootCas), which alone
 *     writes the directory and checks the object again. The library checks
 *     the name and the object first, so that a plain mistake costs no round
 *     trip. Each change carries a token of this process's own, so that the
 *     transport's resend of a request whose reply was lost with heapd is
 *     answered, not applied twice (proto/heap.proto, RootSet).
 *   - Each thread remembers the last binding it saw of a few names (a
 *     lookup's, or its own change's): a cas whose expected object is that
 *     binding's sends its identity, so that heapd refuses it if the name was
 *     bound again in between, even to the same object (ABA). The
 *     get-compute-cas loop of a shared counter is then exact.
 *   - hc_root_wait sleeps on hdr->roots_wake, a futex word in the metadata
 *     that heapd bumps and wakes at every bind (and when it starts). The
 *     futex is keyed by the file and offset, so heapd's wake reaches every
 *     process's read-only mapping of it. The value is read before the
 *     lookup, so a bind between the lookup and the sleep makes the sleep
 *     return at once. No lock is held while it sleeps.
 *
 * Above the transport (requests go through transport_call_locked, under
 * proc_g.lock), beside the caches: nothing here touches them.
 */
#include "heapclient.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "proc.h"
#include "request.h"
#include "roots.h"
#include "transport.h"

/* The bindings this thread saw last, by the hash of their names. */
#define SEEN_SLOTS 8u

typedef struct seen {
	uint64_t hash;          /* of the name */
	uint64_t off;           /* the object */
	uint64_t id;            /* the binding (roots_binding_id); 0: slot unused */
} seen_t;

static __thread seen_t seen[SEEN_SLOTS] __attribute__((tls_model("initial-exec")));

static void saw(const roots_key_t *k, uint64_t off, uint64_t id)
{
	seen_t *s = &seen[k->hash % SEEN_SLOTS];
	s->hash = k->hash;
	s->off = off;
	s->id = off ? id : 0;
}

/* The identity of the binding of k to off this thread saw last, or 0. */
static uint64_t seen_id(const roots_key_t *k, uint64_t off)
{
	const seen_t *s = &seen[k->hash % SEEN_SLOTS];
	return s->id && s->hash == k->hash && s->off == off ? s->id : 0;
}

/* The next change's token: from a random start, so no other process's (or image's) match. */
static _Atomic uint64_t next_token;

static uint64_t new_token(void)
{
	uint64_t t = atomic_load_explicit(&next_token, memory_order_relaxed);
	if (t == 0) {
		uint64_t seed = 0;
		if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
			seed = heapd_now_ns() ^ ((uint64_t)getpid() << 32);
		seed |= 1;
		atomic_compare_exchange_strong(&next_token, &t, seed);
	}
	for (;;) {
		t = atomic_fetch_add_explicit(&next_token, 1, memory_order_relaxed);
		if (t != 0)
			return t;
	}
}

/* The key of name in the mapped arena. 0 or -errno (connecting first if need be). */
static int key_of(const char *name, roots_key_t *k)
{
	if (!name)
		return -EINVAL;
	int rc = transport_ensure_mapped();
	if (rc < 0)
		return rc;
	return roots_key_str(k, proc_g.seg.hdr->arena_id, name);
}

/*
 * The arena offset of obj, which must be the start of a live object (0 for
 * NULL). 0 or -EINVAL. heapd checks again: another process may free it.
 */
static int live_object(const void *obj, uint64_t *off)
{
	const segment_t *seg = &proc_g.seg;
	roots_obj_t o;
	int alloc, freed;

	*off = 0;
	if (!obj)
		return 0;
	if ((const uint8_t *)obj < seg->pages || (const uint8_t *)obj >= seg->base + seg->size)
		return -EINVAL;
	*off = (uint64_t)((const uint8_t *)obj - seg->base);
	if (roots_object(seg, *off, &o) < 0)
		return -EINVAL;
	roots_object_bits(seg, &o, &alloc, &freed);
	return alloc && !freed ? 0 : -EINVAL;
}

static void *object_at(uint64_t off)
{
	const segment_t *seg = &proc_g.seg;
	if (off < (uint64_t)(seg->pages - seg->base) || off >= seg->size)
		return NULL; /* not from a directory heapd wrote */
	return seg->base + off;
}

HC_API void *hc_root_get(const char *name)
{
	roots_key_t k;
	uint64_t off, id;
	void *p = NULL;

	int rc = key_of(name, &k);
	if (rc == 0)
		rc = roots_lookup(&proc_g.seg, &k, &off, NULL, &id);
	if (rc == 0 && !(p = object_at(off)))
		rc = -ENOENT;
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	saw(&k, off, id);
	return p;
}

/* One change: RootSet, or RootCas with expected. */
static int change(const char *name, int cas, const void *expected, const void *desired)
{
	Heapd__Envelope *reply = NULL;
	uint64_t want = 0, off;
	roots_key_t k;
	request_t r;

	int rc = key_of(name, &k);
	if (rc < 0)
		return rc;
	rc = live_object(desired, &off);
	if (rc < 0)
		return rc;
	if (cas && expected) {
		const segment_t *seg = &proc_g.seg;
		if ((const uint8_t *)expected < seg->pages ||
		    (const uint8_t *)expected >= seg->base + seg->size)
			return -EINVAL; /* no binding could be to it */
		want = (uint64_t)((const uint8_t *)expected - seg->base);
	}
	proc_lock();
	if (cas)
		request_root_cas(&r, name, k.len, want, want ? seen_id(&k, want) : 0, off, new_token());
	else
		request_root_set(&r, name, k.len, off, new_token());
	rc = transport_call_locked(&r, &reply, 0);
	proc_unlock();
	if (rc == 0)
		saw(&k, off, reply->ok->value);
	wire_free(reply);
	return rc;
}

HC_API int hc_root_set(const char *name, const void *obj)
{
	return change(name, 0, NULL, obj);
}

HC_API int hc_root_cas(const char *name, const void *expected, const void *desired)
{
	return change(name, 1, expected, desired);
}

HC_API void *hc_root_wait(const char *name, int timeout_ms)
{
	uint64_t deadline = 0, off, id;
	roots_key_t k;
	void *p;

	int rc = key_of(name, &k);
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	if (timeout_ms >= 0)
		deadline = heapd_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	_Atomic uint32_t *word = &proc_g.seg.hdr->roots_wake;
	for (;;) {
		/* the word before the lookup: a bind after the lookup changes it, and the wait returns */
		uint32_t now_seen = atomic_load_explicit(word, memory_order_acquire);
		if (roots_lookup(&proc_g.seg, &k, &off, NULL, &id) == 0 && (p = object_at(off))) {
			saw(&k, off, id);
			return p;
		}
		struct timespec ts, *tsp = NULL;
		if (timeout_ms >= 0) {
			uint64_t now = heapd_now_ns();
			if (now >= deadline) {
				errno = ETIMEDOUT;
				return NULL;
			}
			ts.tv_sec = (time_t)((deadline - now) / 1000000000ULL);
			ts.tv_nsec = (long)((deadline - now) % 1000000000ULL);
			tsp = &ts;
		}
		/* woken, the word moved, a signal, or the time is up: look again either way */
		syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, now_seen, tsp, NULL, 0);
	}
}
