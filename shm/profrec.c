// SPDX-License-Identifier: MIT
/*
 * profrec.c - the heap-profile region: its geometry, the writers of records
 * and mapping sets, the reaping of sampled bits, and the checked readers
 * (see profrec.h for the layout and the life of a sample).
 *
 * Every process may write the region, so every loop here is bounded by the
 * geometry in the header (meta, which clients cannot write), every index
 * read from the region is checked before it is used, and nothing waits on
 * another process: a claim that loses a race looks again a bounded number
 * of times, then gives up and counts the sample as dropped.
 */
#include "profrec.h"
#include "sizeclass.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#define PROF_CLAIM_TRIES 4
#define PROF_PREFER_EMPTY 4 /* records a claim looks at for an empty one before it takes a freed one */
#define PID_LIMIT 4194304u /* the kernel's PID_MAX_LIMIT */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

uint32_t prof_nmapsets(uint32_t nrecs)
{
	uint32_t n = nrecs / 64;
	if (nrecs == 0)
		return 0;
	return n < 16 ? 16 : n > 4096 ? 4096 : n;
}

/* Offsets inside a region of nrecs records, and its size. */
typedef struct prof_geom {
	uint64_t states_off, recs_off, sets_off, size;
	uint32_t nmapsets;
} prof_geom_t;

static void geometry(uint32_t nrecs, prof_geom_t *g)
{
	g->nmapsets = prof_nmapsets(nrecs);
	g->states_off = PROF_COUNTERS_SIZE;
	g->recs_off = align_up(g->states_off + (uint64_t)g->nmapsets * sizeof(uint32_t), 4096);
	g->sets_off = align_up(g->recs_off + (uint64_t)nrecs * sizeof(prof_rec_t), 4096);
	g->size = nrecs ? align_up(g->sets_off + (uint64_t)g->nmapsets * sizeof(prof_mapset_t),
	                           HEAPD_PAGE_SIZE)
	                : 0;
}

uint64_t prof_region_size(uint32_t nrecs)
{
	prof_geom_t g;
	if (nrecs > PROF_MAX_RECORDS)
		return 0;
	geometry(nrecs, &g);
	return g.size;
}

int prof_view(const segment_t *seg, prof_view_t *v)
{
	const shm_header_t *hdr = seg->hdr;
	prof_geom_t g;

	memset(v, 0, sizeof(*v));
	if (!hdr || hdr->prof_size == 0 || hdr->prof_records == 0 ||
	    hdr->prof_records > PROF_MAX_RECORDS)
		return -ENOENT;
	geometry(hdr->prof_records, &g);
	/* segment_validate has checked the header against the same geometry */
	if (g.size != hdr->prof_size || g.nmapsets != hdr->prof_mapsets)
		return -ENOENT;
	uint8_t *base = seg->base + hdr->prof_off;
	v->counters = (prof_counters_t *)base;
	v->mapset_state = (_Atomic uint32_t *)(base + g.states_off);
	v->recs = (prof_rec_t *)(base + g.recs_off);
	v->mapsets = (prof_mapset_t *)(base + g.sets_off);
	v->nrecs = hdr->prof_records;
	v->nmapsets = g.nmapsets;
	v->max_clients = hdr->max_clients;
	v->pages_off = hdr->pages_off;
	v->pages_end = hdr->pages_off + ((uint64_t)hdr->npages_max << HEAPD_PAGE_SHIFT);
	return 0;
}

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint32_t load_state(_Atomic uint32_t *s)
{
	return atomic_load_explicit(s, memory_order_acquire);
}

static int cas_state(_Atomic uint32_t *s, uint32_t seen, uint32_t want)
{
	return atomic_compare_exchange_strong_explicit(s, &seen, want, memory_order_acq_rel,
	                                               memory_order_relaxed);
}

/* ---- the window of an offset ---- */

/* Position j of the window that starts at home. */
static uint32_t window_pos(const prof_view_t *v, uint32_t home, uint32_t j)
{
	uint64_t i = (uint64_t)home + j;
	return (uint32_t)(i < v->nrecs ? i : i % v->nrecs);
}

static uint32_t window_len(const prof_view_t *v)
{
	return v->nrecs < PROF_WINDOW ? v->nrecs : PROF_WINDOW;
}

/*
 * The offset a LIVE record in state st names, or UINT64_MAX if it is no
 * longer that record. The caller read st with acquire, so off is read after
 * it; the fence keeps the read of off before the second read of the state
 * (an acquire load orders only what follows it), so an unchanged state
 * means off was the one published with st: a seqlock's read side.
 */
static uint64_t live_off(const prof_rec_t *r, uint32_t st)
{
	uint64_t off = __atomic_load_n(&r->off, __ATOMIC_RELAXED);
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&((prof_rec_t *)r)->state, memory_order_relaxed) == st ? off
	                                                                                   : UINT64_MAX;
}

int prof_mark_freed(const prof_view_t *v, uint64_t off)
{
	uint32_t home, n = window_len(v);

	if (!v->recs)
		return 0;
	home = prof_home(off, v->nrecs);
	for (uint32_t j = 0; j < n; j++) {
		prof_rec_t *r = &v->recs[window_pos(v, home, j)];
		for (int tries = 0; tries < PROF_CLAIM_TRIES; tries++) {
			uint32_t st = load_state(&r->state);
			if (st == 0)
				return 0; /* never used: a claim takes a record before it, so not further on */
			if (prof_kind(st) != PROF_LIVE || live_off(r, st) != off)
				break;
			if (cas_state(&r->state, st, (st & ~3u) | PROF_FREED))
				return 1;
			/* it changed under us: look at it again */
		}
	}
	return 0;
}

int prof_rec_claim(const prof_view_t *v, uint64_t off, uint32_t *claimed)
{
	uint32_t home, n = window_len(v);

	if (!v->recs)
		return -ENOSPC;
	home = prof_home(off, v->nrecs);
	for (int tries = 0; tries < PROF_CLAIM_TRIES; tries++) {
		uint32_t pick = UINT32_MAX, seen = 0;
		for (uint32_t j = 0; j < n; j++) {
			uint32_t i = window_pos(v, home, j);
			prof_rec_t *r = &v->recs[i];
			uint32_t st = load_state(&r->state);
			uint32_t kind = prof_kind(st);
			if (kind == PROF_LIVE && live_off(r, st) == off) {
				/* A sample of an earlier object at this offset whose free was never reaped. */
				if (cas_state(&r->state, st, (st & ~3u) | PROF_FREED)) {
					st = (st & ~3u) | PROF_FREED;
					kind = PROF_FREED;
				}
			}
			if (kind == PROF_EMPTY && (pick == UINT32_MAX || prof_kind(seen) != PROF_EMPTY)) {
				pick = i;
				seen = st;
			}
			/*
			 * A record never used ends the window's records in use. One
			 * heapd cleared does not: records after it may be live, and a
			 * stale one of this offset among them must still be freed.
			 */
			if (st == 0)
				break;
			if (kind == PROF_FREED && pick == UINT32_MAX) {
				pick = i;
				seen = st;
			}
			/*
			 * An empty record keeps freed samples for the alloc view, but
			 * each record looked at is a cache miss: past PROF_PREFER_EMPTY
			 * of them the first freed one is taken (once the table is full
			 * of freed samples, the most recent ones stay).
			 */
			if (pick != UINT32_MAX && prof_kind(seen) == PROF_FREED && j + 1 >= PROF_PREFER_EMPTY)
				break;
		}
		if (pick == UINT32_MAX)
			break;
		prof_rec_t *r = &v->recs[pick];
		if (!cas_state(&r->state, seen, prof_claimed(seen)))
			continue; /* another sample took it first */
		if (prof_kind(seen) == PROF_FREED)
			count(&v->counters->recycled);
		*claimed = prof_claimed(seen);
		return (int)pick;
	}
	count(&v->counters->dropped);
	return -ENOSPC;
}

int prof_rec_publish(const prof_view_t *v, uint32_t i, uint32_t claimed, const prof_sample_t *s)
{
	prof_rec_t *r = &v->recs[i];
	uint32_t nframes = s->nframes < PROF_FRAMES ? s->nframes : PROF_FRAMES;

	r->nframes = (uint16_t)nframes;
	r->pad = 0;
	r->off = s->off;
	r->size = s->size;
	r->rate = s->rate;
	r->time = s->time;
	r->start_time = s->start_time;
	r->pid = s->pid;
	r->uid = s->uid;
	r->slot = s->slot;
	r->mapset = s->mapset;
	memcpy(r->frames, s->frames, nframes * sizeof(uint64_t));
	/*
	 * From the state it claimed, not a plain store: stalled past
	 * PROFILE_BUSY_NS, this writer may have lost the record to heapd's
	 * clearing and another writer's claim, whose BUSY state must stand.
	 */
	if (!cas_state(&r->state, claimed, (claimed & ~3u) | PROF_LIVE)) {
		count(&v->counters->dropped);
		return -ENOSPC;
	}
	return (int)i;
}

int prof_record(const prof_view_t *v, const prof_sample_t *s)
{
	uint32_t claimed;
	int i = prof_rec_claim(v, s->off, &claimed);

	return i < 0 ? i : prof_rec_publish(v, (uint32_t)i, claimed, s);
}

/* ---- sampled bits ---- */

uint64_t prof_reap_word(const prof_view_t *v, uint64_t *sampled, uint32_t w, uint64_t alloc_word,
                        uint64_t base, uint64_t elemsize)
{
	uint64_t s = bitmap_load(&sampled[w]);
	uint64_t gone = s & ~alloc_word;

	if (!gone)
		return 0;
	for (uint64_t g = gone; g; g &= g - 1) {
		uint64_t idx = (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(g);
		prof_mark_freed(v, base + idx * elemsize);
	}
	bitmap_store(&sampled[w], s & ~gone);
	return gone;
}

void prof_reap_span(const segment_t *seg, uint32_t span)
{
	const shm_span_t *s = &seg->spans[span];
	prof_view_t v;

	if (s->state != SPAN_SMALL || s->sizeclass == 0 || s->sizeclass >= SIZECLASS_COUNT)
		return;
	uint32_t nelems = sizeclass_nelems[s->sizeclass];
	if (!prof_sampleable(nelems) || prof_view(seg, &v) < 0)
		return;
	const uint64_t *alloc = segment_allocbits(seg, span);
	uint64_t *sampled = prof_sampled_words(seg, span);
	uint64_t base = v.pages_off + ((uint64_t)span << HEAPD_PAGE_SHIFT);
	for (uint32_t w = 0; w < bitmap_words(nelems); w++)
		prof_reap_word(&v, sampled, w, bitmap_load(&alloc[w]), base, sizeclass_size[s->sizeclass]);
}

int prof_any_sampled(const uint64_t *sampled, uint32_t nwords)
{
	for (uint32_t w = 0; w < nwords; w++)
		if (bitmap_load(&sampled[w]))
			return 1;
	return 0;
}

void prof_span_gone(const segment_t *seg, uint32_t span)
{
	const shm_span_t *s = &seg->spans[span];
	uint32_t nelems = 1;
	uint64_t elemsize = (uint64_t)s->npages << HEAPD_PAGE_SHIFT;
	prof_view_t v;

	if (prof_view(seg, &v) < 0)
		return;
	if (s->state == SPAN_SMALL) {
		if (s->sizeclass == 0 || s->sizeclass >= SIZECLASS_COUNT)
			return;
		nelems = sizeclass_nelems[s->sizeclass];
		elemsize = sizeclass_size[s->sizeclass];
	} else if (s->state != SPAN_LARGE) {
		return;
	}
	if (!prof_sampleable(nelems))
		return;
	uint64_t *sampled = prof_sampled_words(seg, span);
	uint64_t base = v.pages_off + ((uint64_t)span << HEAPD_PAGE_SHIFT);
	for (uint32_t w = 0; w < bitmap_words(nelems); w++) {
		uint64_t bits = bitmap_load(&sampled[w]) & bitmap_valid_mask(w, nelems);
		for (; bits; bits &= bits - 1)
			prof_mark_freed(&v, base + ((uint64_t)w * 64 + (uint64_t)__builtin_ctzll(bits)) * elemsize);
	}
}

/* ---- mapping sets ---- */

int prof_mapset_claim(const prof_view_t *v, uint32_t hint, uint32_t *claimed)
{
	for (int tries = 0; tries < PROF_CLAIM_TRIES && v->nmapsets; tries++) {
		for (uint32_t j = 0; j < v->nmapsets; j++) {
			uint32_t i = (uint32_t)(((uint64_t)hint + j) % v->nmapsets);
			uint32_t st = load_state(&v->mapset_state[i]);
			if (prof_kind(st) != PROF_EMPTY)
				continue;
			if (cas_state(&v->mapset_state[i], st, prof_claimed(st))) {
				*claimed = prof_claimed(st);
				return (int)i;
			}
			break; /* lost a race: look again from the start */
		}
	}
	if (v->counters)
		count(&v->counters->mapsets_full);
	return -ENOSPC;
}

int prof_mapset_publish(const prof_view_t *v, uint32_t i, uint32_t claimed)
{
	/* from the claimed state, as prof_rec_publish: heapd may have given the set to another */
	if (!cas_state(&v->mapset_state[i], claimed, (claimed & ~3u) | PROF_LIVE)) {
		count(&v->counters->mapsets_full);
		return -ENOSPC;
	}
	return 0;
}

/* ---- readers ---- */

uint32_t prof_walk_next(prof_walk_t *w)
{
	const prof_view_t *v = w->v;
	const uint64_t size = sizeof(prof_rec_t);

	while (w->next < v->nrecs) {
		if (w->next < w->end)
			return w->next++;
		int fd = w->seg->data_fd;
		/* file offset of record 0 */
		uint64_t base = (uint64_t)((const uint8_t *)v->recs - w->seg->base) - w->seg->meta_size;
		uint64_t at = base + (uint64_t)w->next * size;
		off_t d = fd < 0 ? -1 : lseek(fd, (off_t)at, SEEK_DATA);
		if (d < 0) {
			if (fd >= 0 && errno == ENXIO)
				break; /* only a hole follows */
			w->end = v->nrecs;
			continue;
		}
		off_t h = lseek(fd, d, SEEK_HOLE);
		uint64_t stop = h < 0 ? UINT64_MAX : (uint64_t)h;
		/* a record is held if its first bytes (the state word) are */
		uint64_t first = (uint64_t)d <= at ? w->next : ((uint64_t)d - base + size - 1) / size;
		uint64_t end = stop == UINT64_MAX ? v->nrecs : (stop - base + size - 1) / size;
		w->next = first < v->nrecs ? (uint32_t)first : v->nrecs;
		w->end = end < v->nrecs ? (uint32_t)end : v->nrecs;
		if (w->end <= w->next)
			w->end = w->next + 1; /* progress, whatever the file system said */
	}
	w->next = v->nrecs;
	return v->nrecs;
}

int prof_read_rec(const prof_view_t *v, uint32_t i, prof_rec_t *out, uint32_t *state,
                  const char **why)
{
	static const char *const none = "";
	prof_rec_t *r;
	uint32_t s1, s2;

	*why = none;
	if (!v->recs || i >= v->nrecs) {
		*why = "no such record";
		return -EINVAL;
	}
	r = &v->recs[i];
	s1 = load_state(&r->state);
	if (prof_kind(s1) == PROF_EMPTY || prof_kind(s1) == PROF_BUSY)
		return -EAGAIN;
	memcpy(out, (const void *)r, sizeof(*out));
	atomic_thread_fence(memory_order_acquire);
	s2 = load_state(&r->state);
	if (s1 != s2)
		return -EAGAIN;
	*state = s1;

	if (out->nframes == 0 || out->nframes > PROF_FRAMES)
		*why = "frame count out of range";
	else if (out->off < v->pages_off || out->off >= v->pages_end || (out->off & 7))
		*why = "object offset outside the pages";
	else if (out->size == 0 || out->size > v->pages_end - out->off)
		*why = "size out of range";
	else if (out->rate == 0)
		*why = "sampling rate 0";
	else if (out->pid == 0 || out->pid > PID_LIMIT)
		*why = "pid out of range";
	else if (out->slot != HEAPD_NIL && out->slot >= v->max_clients)
		*why = "client slot out of range";
	else if (out->mapset != HEAPD_NIL && out->mapset >= v->nmapsets)
		*why = "mapping set out of range";
	else {
		uint32_t home = prof_home(out->off, v->nrecs);
		uint32_t dist = i >= home ? i - home : i + v->nrecs - home;
		if (dist >= window_len(v))
			*why = "record is not in the window of its object's offset";
	}
	return *why == none ? 0 : -EINVAL;
}

int prof_read_mapset(const prof_view_t *v, uint32_t i, prof_mapset_t *out, uint32_t *state,
                     const char **why)
{
	static const char *const none = "";
	uint32_t s1, s2;

	*why = none;
	if (!v->mapsets || i >= v->nmapsets) {
		*why = "no such mapping set";
		return -EINVAL;
	}
	s1 = load_state(&v->mapset_state[i]);
	if (prof_kind(s1) != PROF_LIVE)
		return -EAGAIN;
	memcpy(out, (const void *)&v->mapsets[i], sizeof(*out));
	atomic_thread_fence(memory_order_acquire);
	s2 = load_state(&v->mapset_state[i]);
	if (s1 != s2)
		return -EAGAIN;
	*state = s1;

	if (out->nmaps == 0 || out->nmaps > PROF_MAPS)
		*why = "object count out of range";
	else if (out->pid == 0 || out->pid > PID_LIMIT)
		*why = "pid out of range";
	else if (out->slot != HEAPD_NIL && out->slot >= v->max_clients)
		*why = "client slot out of range";
	for (uint32_t k = 0; *why == none && k < out->nmaps; k++) {
		const prof_map_t *m = &out->maps[k];
		if (m->lo >= m->hi)
			*why = "empty or inverted object range";
		else if (m->build_id_len > PROF_BUILD_ID_MAX)
			*why = "build ID too long";
		else if (!memchr(m->path, '\0', sizeof(m->path)))
			*why = "path not terminated";
	}
	return *why == none ? 0 : -EINVAL;
}

int prof_rec_reset(const prof_view_t *v, uint32_t i, uint32_t seen, uint32_t kind)
{
	if (!v->recs || i >= v->nrecs)
		return 0;
	uint32_t want = kind == PROF_FREED ? (seen & ~3u) | PROF_FREED : prof_claimed(seen) & ~3u;
	if (want == 0)
		want = 1u << 2; /* seq wrapped: 0 is kept for a record never used (profrec.h) */
	return cas_state(&v->recs[i].state, seen, want);
}

int prof_mapset_reset(const prof_view_t *v, uint32_t i, uint32_t seen)
{
	if (!v->mapsets || i >= v->nmapsets)
		return 0;
	return cas_state(&v->mapset_state[i], seen, prof_claimed(seen) & ~3u);
}
