// SPDX-License-Identifier: MIT
/*
 * profile.c - heap-profile snapshots, their pages, and the attribution of
 * live bytes to clients (see profile.h for what each step checks).
 *
 * Entry points: profile_open/close, profile_snapshot, profile_page,
 * profile_attribute. Everything read from the profile region comes through
 * the checked readers of shm/profrec.h, which copy first; the span table
 * and the page map are heapd's own, read under the heap lock.
 */
#include "profile.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bitmap.h"
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "sizeclass.h"

#define LIVE_CHUNK 256u /* records checked per hold of the heap lock */

int profile_open(profile_t *p, daemon_t *d)
{
	memset(p, 0, sizeof(*p));
	if (prof_view(&d->seg, &p->v) < 0) {
		if (d->cfg.profile_records)
			log_msg("arena %s keeps no heap profile (laid out without one); profile-records "
			        "applies when an arena is laid out", d->cfg.arena);
		return 0;
	}
	if (d->cfg.profile_records != p->v.nrecs && !d->created)
		log_msg("arena %s keeps %u heap-profile records; profile-records %u applies when an "
		        "arena is laid out", d->cfg.arena, p->v.nrecs, d->cfg.profile_records);
	p->busy_seen = calloc(p->v.nrecs, sizeof(uint32_t));
	p->set_busy_seen = calloc(p->v.nmapsets ? p->v.nmapsets : 1, sizeof(uint32_t));
	if (!p->busy_seen || !p->set_busy_seen) {
		profile_close(p);
		return -ENOMEM;
	}
	return 0;
}

void profile_close(profile_t *p)
{
	free(p->busy_seen);
	free(p->set_busy_seen);
	memset(p, 0, sizeof(*p));
}

/* ---- liveness of processes and objects ---- */

/* Whether process (pid, start_time) has exited: no live slot names it, and its pid does not. */
static int process_exited(daemon_t *d, uint32_t pid, uint64_t start_time)
{
	clients_t *cl = &d->clients;
	proc_t p;

	for (uint32_t i = 0; i < cl->nslots; i++) {
		const shm_client_t *c = &d->seg.clients[i];
		if (c->pid == pid && c->start_time == start_time && proc_alive(&cl->slots[i].proc))
			return 0;
	}
	if (proc_open((pid_t)pid, start_time, 0, &p) < 0) /* records carry no pidfs id */
		return 1;
	proc_close(&p);
	return 0;
}

/*
 * The liveness of the processes a snapshot names, asked once per (pid,
 * start time): clients choose those freely, and each question costs a scan
 * of the slots and a pidfd_open, so a hostile client that varies its
 * mapping sets or start times must not multiply them. An open-addressed
 * table, grown at half full; asked with the heap lock released.
 */
typedef struct live_cache {
	struct live_entry {
		uint32_t pid;        /* 0: empty */
		int exited;
		uint64_t start_time;
	} *e;
	uint32_t mask;
	uint32_t n;
	uint32_t lookups;        /* process_exited calls made */
} live_cache_t;

static uint32_t live_hash(uint32_t pid, uint64_t start_time)
{
	return (uint32_t)((((uint64_t)pid << 32) ^ start_time) * 0x9e3779b97f4a7c15ULL >> 32);
}

static struct live_entry *live_slot(live_cache_t *c, uint32_t pid, uint64_t start_time)
{
	for (uint32_t i = live_hash(pid, start_time) & c->mask;; i = (i + 1) & c->mask)
		if (c->e[i].pid == 0 || (c->e[i].pid == pid && c->e[i].start_time == start_time))
			return &c->e[i];
}

/* Whether (pid, start_time) has exited, asked at most once per cache; -ENOMEM. pid is not 0. */
static int live_exited(daemon_t *d, live_cache_t *c, uint32_t pid, uint64_t start_time)
{
	if (2 * (c->n + 1) > c->mask + 1) {
		uint32_t size = c->e ? 2 * (c->mask + 1) : 64;
		live_cache_t g = { .e = calloc(size, sizeof(*g.e)), .mask = size - 1, .n = c->n,
		                   .lookups = c->lookups };
		if (!g.e)
			return -ENOMEM;
		for (uint32_t i = 0; c->e && i <= c->mask; i++)
			if (c->e[i].pid)
				*live_slot(&g, c->e[i].pid, c->e[i].start_time) = c->e[i];
		free(c->e);
		*c = g;
	}
	struct live_entry *e = live_slot(c, pid, start_time);
	if (e->pid == 0) {
		e->pid = pid;
		e->start_time = start_time;
		e->exited = process_exited(d, pid, start_time);
		c->n++;
		c->lookups++;
	}
	return e->exited;
}

/* What the bitmaps say of a sampled object. */
enum {
	OBJ_LIVE = 0,
	OBJ_FREED = 1,       /* freed, or not an object at all any more */
	OBJ_UNMARKED = 2,    /* allocated, but its sampled bit is not set */
};

/* The object at arena offset off, of size bytes; the heap lock is held. */
static int object_state(const segment_t *seg, uint64_t off, uint64_t size)
{
	const shm_header_t *hdr = seg->hdr;
	uint64_t rel = off - hdr->pages_off, soff;
	uint64_t page = rel >> HEAPD_PAGE_SHIFT;
	uint32_t idx, nelems;

	if (off < hdr->pages_off || page >= hdr->npages_grown)
		return OBJ_FREED;
	uint32_t span = segment_pagemap_span(seg, (uint32_t)page);
	if (span >= hdr->npages_grown)
		return OBJ_FREED;
	const shm_span_t *s = &seg->spans[span];
	if (s->start != span || page - span >= s->npages)
		return OBJ_FREED;
	soff = rel - ((uint64_t)span << HEAPD_PAGE_SHIFT);
	if (s->state == SPAN_SMALL) {
		if (s->sizeclass == 0 || s->sizeclass >= SIZECLASS_COUNT)
			return OBJ_FREED;
		uint32_t esize = sizeclass_size[s->sizeclass];
		nelems = sizeclass_nelems[s->sizeclass];
		if (soff % esize || soff / esize >= nelems || size != esize)
			return OBJ_FREED;
		idx = (uint32_t)(soff / esize);
	} else if (s->state == SPAN_LARGE) {
		if (soff || size != (uint64_t)s->npages << HEAPD_PAGE_SHIFT)
			return OBJ_FREED;
		idx = 0;
		nelems = 1;
	} else {
		return OBJ_FREED;
	}
	if (!prof_sampleable(nelems))
		return OBJ_FREED; /* nothing there is ever sampled */
	uint64_t bit = 1ULL << (idx & 63);
	const uint64_t *alloc = segment_allocbits(seg, span) + (idx >> 6);
	const uint64_t *freeb = segment_freebits(seg, span, nelems) + (idx >> 6);
	if (!(bitmap_load(alloc) & bit) || (bitmap_load(freeb) & bit))
		return OBJ_FREED;
	if (!(bitmap_load(prof_sampled_words(seg, span) + (idx >> 6)) & bit))
		return OBJ_UNMARKED;
	return OBJ_LIVE;
}

/* ---- snapshots ---- */

/* Processes of a snapshot by (pid, start time, mapping set): an open-addressed table. */
typedef struct proc_table {
	uint32_t *slot;            /* proc index + 1, 0: empty */
	uint32_t mask;
} proc_table_t;

static uint32_t proc_hash(uint32_t pid, uint64_t start_time, uint32_t mapset)
{
	uint64_t h = ((uint64_t)pid << 32 ^ start_time ^ (uint64_t)mapset << 17) * 0x9e3779b97f4a7c15ULL;
	return (uint32_t)(h >> 32);
}

/* The process of record r in s (adding it, its liveness still to ask), or -ENOMEM. */
static int proc_of(profile_snap_t *s, proc_table_t *t, size_t *cap, const prof_rec_t *r)
{
	for (uint32_t i = proc_hash(r->pid, r->start_time, r->mapset) & t->mask;; i = (i + 1) & t->mask) {
		uint32_t k = t->slot[i];
		if (k == 0) {
			if (s->nprocs == *cap) {
				size_t ncap = *cap ? *cap * 2 : 16;
				profile_proc_t *grown = realloc(s->procs, ncap * sizeof(*grown));
				if (!grown)
					return -ENOMEM;
				s->procs = grown;
				*cap = ncap;
			}
			profile_proc_t *p = &s->procs[s->nprocs];
			memset(p, 0, sizeof(*p));
			p->pid = r->pid;
			p->uid = r->uid;
			p->slot = r->slot;
			p->mapset = r->mapset;
			p->start_time = r->start_time;
			t->slot[i] = (uint32_t)++s->nprocs;
			return (int)(s->nprocs - 1);
		}
		const profile_proc_t *p = &s->procs[k - 1];
		if (p->pid == r->pid && p->start_time == r->start_time && p->mapset == r->mapset)
			return (int)(k - 1);
	}
}

/* A record BUSY as it was the last time, long enough ago: its writer died. */
static int busy_stuck(uint32_t *seen, uint32_t st, uint64_t now, uint64_t then)
{
	int stuck = *seen == st && then && now - then >= PROFILE_BUSY_NS;
	*seen = st;
	return stuck;
}

/* Step 1 and 2: read every record into s. */
static int read_records(daemon_t *d, profile_snap_t *s, proc_table_t *t, uint64_t now_mono)
{
	profile_t *pf = &d->profile;
	const prof_view_t *v = &pf->v;
	uint64_t now = heapd_wall_ns(0);
	size_t pcap = 0, cap = 0;
	prof_walk_t w;
	prof_rec_t r;
	uint32_t i, st;
	const char *why;

	prof_walk_start(&w, &d->seg, v);
	for (i = prof_walk_next(&w); i < v->nrecs;) {
		/* the heap lock in chunks: refills and large allocations wait for a chunk at most */
		pageheap_enter(&d->heap);
		for (uint32_t n = 0; n < LIVE_CHUNK && i < v->nrecs; n++, i = prof_walk_next(&w)) {
			uint32_t raw = atomic_load(&v->recs[i].state);
			if (prof_kind(raw) == PROF_BUSY) {
				if (busy_stuck(&pf->busy_seen[i], raw, now_mono, pf->busy_ns))
					prof_rec_reset(v, i, raw, PROF_EMPTY);
				continue;
			}
			pf->busy_seen[i] = 0;
			int rc = prof_read_rec(v, i, &r, &st, &why);
			if (rc == -EINVAL) {
				s->summary.garbage++;
				prof_rec_reset(v, i, st, PROF_EMPTY);
				continue;
			}
			if (rc < 0)
				continue;
			int live = prof_kind(st) == PROF_LIVE;
			if (live) {
				int os = object_state(&d->seg, r.off, r.size);
				if (os != OBJ_LIVE) {
					live = 0;
					/* freed: the record says so from now on (a writer may be between its stores) */
					if (os == OBJ_FREED || (r.time < now && now - r.time > PROFILE_SETTLE_NS))
						prof_rec_reset(v, i, st, PROF_FREED);
				}
			}
			if (s->nsamples == cap) {
				size_t ncap = cap ? cap * 2 : 256;
				profile_sample_t *grown = realloc(s->samples, ncap * sizeof(*grown));
				if (!grown)
					goto oom;
				s->samples = grown;
				cap = ncap;
			}
			int p = proc_of(s, t, &pcap, &r);
			if (p < 0)
				goto oom;
			profile_sample_t *sm = &s->samples[s->nsamples++];
			sm->proc = (uint32_t)p;
			sm->nframes = r.nframes;
			sm->live = live;
			sm->off = r.off;
			sm->size = r.size;
			sm->rate = r.rate;
			sm->time = r.time;
			memcpy(sm->frames, r.frames, r.nframes * sizeof(uint64_t));
			if (live)
				s->summary.live++;
			else
				s->summary.freed++;
		}
		pageheap_leave(&d->heap);
	}
	return 0;
oom:
	pageheap_leave(&d->heap);
	return -ENOMEM;
}

/*
 * Step 3's liveness and mapping sets, and step 4: clear the sets of exited
 * processes nobody names. Without the heap lock: it reads only the region
 * and the slots, which are the event loop's. -ENOMEM.
 */
static int read_mapsets(daemon_t *d, profile_snap_t *s, live_cache_t *lc, uint64_t now_mono)
{
	profile_t *pf = &d->profile;
	const prof_view_t *v = &pf->v;
	uint8_t *named;
	const char *why;
	uint32_t st;

	for (size_t k = 0; k < s->nprocs; k++) {
		int ex = live_exited(d, lc, s->procs[k].pid, s->procs[k].start_time);
		if (ex < 0)
			return ex;
		s->procs[k].exited = ex;
	}
	named = calloc(v->nmapsets ? v->nmapsets : 1, 1);
	for (size_t k = 0; k < s->nprocs; k++) {
		profile_proc_t *p = &s->procs[k];
		if (p->mapset >= v->nmapsets)
			continue;
		if (named)
			named[p->mapset] = 1;
		p->set = malloc(sizeof(*p->set));
		if (p->set && (prof_read_mapset(v, p->mapset, p->set, &st, &why) < 0 ||
		               p->set->pid != p->pid ||
		               (p->set->start_time && p->start_time && p->set->start_time != p->start_time))) {
			free(p->set); /* gone, garbage, or another process's since */
			p->set = NULL;
		}
	}
	if (!named)
		return 0;
	for (uint32_t i = 0; i < v->nmapsets; i++) {
		uint32_t raw = atomic_load(&v->mapset_state[i]);
		if (prof_kind(raw) == PROF_BUSY) {
			if (busy_stuck(&pf->set_busy_seen[i], raw, now_mono, pf->busy_ns))
				prof_mapset_reset(v, i, raw);
			continue;
		}
		pf->set_busy_seen[i] = 0;
		if (prof_kind(raw) != PROF_LIVE || named[i])
			continue;
		/* only its owner is needed: read it without copying the whole set */
		uint32_t pid = __atomic_load_n(&v->mapsets[i].pid, __ATOMIC_RELAXED);
		uint64_t start = __atomic_load_n(&v->mapsets[i].start_time, __ATOMIC_RELAXED);
		if (atomic_load(&v->mapset_state[i]) != raw)
			continue;
		if (pid == 0 || live_exited(d, lc, pid, start) == 1)
			prof_mapset_reset(v, i, raw);
	}
	free(named);
	return 0;
}

profile_snap_t *profile_snapshot(daemon_t *d)
{
	profile_t *pf = &d->profile;
	const prof_view_t *v = &pf->v;
	profile_snap_t *s = calloc(1, sizeof(*s));
	proc_table_t t = { 0 };
	live_cache_t lc = { 0 };
	uint64_t now_mono = heapd_now_ns();

	if (!s)
		return NULL;
	s->refs = 1;
	heapd__profile_summary__init(&s->summary);
	s->summary.profile_rate = d->cfg.profile_rate;
	s->summary.time = heapd_wall_ns(0);
	if (!v->recs)
		return s;
	s->summary.records = v->nrecs;
	s->summary.dropped = atomic_load(&v->counters->dropped);
	s->summary.recycled = atomic_load(&v->counters->recycled);
	s->summary.mapsets_full = atomic_load(&v->counters->mapsets_full);

	uint32_t size = 64;
	while (size < 2 * v->nrecs)
		size *= 2;
	t.slot = calloc(size, sizeof(uint32_t));
	t.mask = size - 1;
	if (!t.slot || read_records(d, s, &t, now_mono) < 0) {
		free(t.slot);
		profile_snap_put(s);
		return NULL;
	}
	free(t.slot);
	int rc = read_mapsets(d, s, &lc, now_mono);
	s->lookups = lc.lookups;
	free(lc.e);
	if (rc < 0) {
		profile_snap_put(s);
		return NULL;
	}
	pf->busy_ns = now_mono;
	s->summary.processes = s->nprocs;
	if (s->summary.garbage)
		log_msg("heap profile: %llu records held garbage (a client wrote them); cleared",
		        (unsigned long long)s->summary.garbage);
	return s;
}

void profile_snap_put(profile_snap_t *s)
{
	if (!s || --s->refs > 0)
		return;
	for (size_t k = 0; k < s->nprocs; k++)
		free(s->procs[k].set);
	free(s->procs);
	free(s->samples);
	free(s);
}

/* ---- pages ---- */

/* The storage of one page's messages. */
typedef struct page_store {
	Heapd__ProfileSummary summary;
	Heapd__ProfileProcess *procs, **proc_ptrs;
	Heapd__ProfileMapping *maps, **map_ptrs;
	Heapd__ProfileSample *samples, **sample_ptrs;
} page_store_t;

static void fill_proc(const profile_proc_t *p, Heapd__ProfileProcess *m, Heapd__ProfileMapping *maps,
                      Heapd__ProfileMapping **map_ptrs)
{
	heapd__profile_process__init(m);
	m->pid = p->pid;
	m->uid = p->uid;
	m->start_time = p->start_time;
	m->slot = p->slot;
	m->exited = p->exited != 0;
	if (!p->set)
		return;
	for (uint32_t k = 0; k < p->set->nmaps; k++) {
		const prof_map_t *src = &p->set->maps[k];
		Heapd__ProfileMapping *dst = &maps[k];
		heapd__profile_mapping__init(dst);
		dst->lo = src->lo;
		dst->hi = src->hi;
		dst->bias = src->bias;
		dst->file_offset = src->file_off;
		dst->build_id.data = (uint8_t *)src->build_id;
		dst->build_id.len = src->build_id_len;
		dst->path = (char *)src->path;
		map_ptrs[k] = dst;
	}
	m->n_mappings = p->set->nmaps;
	m->mappings = map_ptrs;
}

static void fill_sample(const profile_sample_t *sm, Heapd__ProfileSample *m)
{
	heapd__profile_sample__init(m);
	m->process = sm->proc;
	m->size = sm->size;
	m->rate = sm->rate;
	m->time = sm->time;
	m->live = sm->live != 0;
	m->offset = sm->off;
	m->n_frames = sm->nframes;
	m->frames = (uint64_t *)sm->frames;
}

/* Bytes an element of a repeated message field takes: its own size, a tag and a length. */
static size_t field_bytes(const ProtobufCMessage *m)
{
	return protobuf_c_message_get_packed_size(m) + 6;
}

int profile_page(const profile_snap_t *s, uint32_t cursor, Heapd__ProfileReply *r, void **storage)
{
	size_t nitems = s->nprocs + s->nsamples, bytes = 0, np = 0, ns = 0, nmaps = 0;
	Heapd__ProfileMapping scratch_maps[PROF_MAPS], *scratch_ptrs[PROF_MAPS];
	size_t first = cursor, end;
	page_store_t *st;

	heapd__profile_reply__init(r);
	*storage = NULL;
	if (first > nitems || (first == nitems && first != 0))
		return -EINVAL;
	/* How many items fit (at least one). */
	for (end = first; end < nitems; end++) {
		size_t b;
		if (end < s->nprocs) {
			Heapd__ProfileProcess m;
			fill_proc(&s->procs[end], &m, scratch_maps, scratch_ptrs);
			b = field_bytes(&m.base);
		} else {
			Heapd__ProfileSample m;
			fill_sample(&s->samples[end - s->nprocs], &m);
			b = field_bytes(&m.base);
		}
		if (end > first && bytes + b > PROFILE_PAGE_BYTES)
			break;
		bytes += b;
		if (end < s->nprocs) {
			np++;
			nmaps += s->procs[end].set ? s->procs[end].set->nmaps : 0;
		} else {
			ns++;
		}
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	*storage = st;
	st->procs = calloc(np + 1, sizeof(*st->procs));
	st->proc_ptrs = calloc(np + 1, sizeof(*st->proc_ptrs));
	st->maps = calloc(nmaps + 1, sizeof(*st->maps));
	st->map_ptrs = calloc(nmaps + 1, sizeof(*st->map_ptrs));
	st->samples = calloc(ns + 1, sizeof(*st->samples));
	st->sample_ptrs = calloc(ns + 1, sizeof(*st->sample_ptrs));
	if (!st->procs || !st->proc_ptrs || !st->maps || !st->map_ptrs || !st->samples ||
	    !st->sample_ptrs)
		return -ENOMEM;
	size_t m = 0;
	for (size_t k = 0; k < np; k++) {
		fill_proc(&s->procs[first + k], &st->procs[k], st->maps + m, st->map_ptrs + m);
		m += st->procs[k].n_mappings;
		st->proc_ptrs[k] = &st->procs[k];
	}
	for (size_t k = 0; k < ns; k++) {
		/* samples follow the processes: a page with both holds the last processes */
		fill_sample(&s->samples[first + np + k - s->nprocs], &st->samples[k]);
		st->sample_ptrs[k] = &st->samples[k];
	}
	if (first == 0) {
		st->summary = s->summary;
		r->summary = &st->summary;
	}
	r->n_processes = np;
	r->processes = st->proc_ptrs;
	r->n_samples = ns;
	r->samples = st->sample_ptrs;
	r->next = end < nitems ? (uint32_t)end : 0;
	return 0;
}

void profile_page_free(void *storage)
{
	page_store_t *st = storage;
	if (!st)
		return;
	free(st->procs);
	free(st->proc_ptrs);
	free(st->maps);
	free(st->map_ptrs);
	free(st->samples);
	free(st->sample_ptrs);
	free(st);
}

/* ---- attribution ---- */

typedef struct attr_walk {
	const segment_t *seg;
	profile_attr_t *a;
} attr_walk_t;

static void attr_span(void *arg, uint32_t p)
{
	attr_walk_t *w = arg;
	const shm_span_t *s = &w->seg->spans[p];
	uint32_t slot = s->charge - 1;

	if (s->charge == 0 || slot >= w->a->nslots)
		return;
	if (s->state == SPAN_SMALL) {
		uint32_t k = s->sizeclass;
		if (k == 0 || k >= SIZECLASS_COUNT)
			return;
		uint32_t nelems = sizeclass_nelems[k];
		const uint64_t *alloc = segment_allocbits(w->seg, p);
		w->a->small_bytes[slot] += (uint64_t)bitmap_count_inuse(alloc, segment_freebits(w->seg, p, nelems),
		                                                        nelems) * sizeclass_size[k];
	} else if (s->state == SPAN_LARGE) {
		if ((bitmap_load(segment_allocbits(w->seg, p)) & 1) &&
		    !(bitmap_load(segment_freebits(w->seg, p, 1)) & 1))
			w->a->large_bytes[slot] += (uint64_t)s->npages << HEAPD_PAGE_SHIFT;
	}
}

/* Go's scale of a sample: the expected number of allocations it stands for. */
static double sample_scale(uint64_t size, uint64_t rate)
{
	if (rate <= 1)
		return 1;
	return 1 / (1 - exp(-(double)size / (double)rate));
}

profile_attr_t *profile_attribute(daemon_t *d)
{
	profile_attr_t *a = calloc(1, sizeof(*a));
	profile_snap_t *s = NULL;

	if (!a)
		return NULL;
	a->nslots = d->clients.nslots;
	a->large_bytes = calloc(a->nslots ? a->nslots : 1, sizeof(uint64_t));
	a->small_bytes = calloc(a->nslots ? a->nslots : 1, sizeof(uint64_t));
	if (!a->large_bytes || !a->small_bytes)
		goto fail;
	attr_walk_t w = { .seg = &d->seg, .a = a };
	pageheap_walk(&d->heap, attr_span, &w);

	s = profile_snapshot(d);
	if (!s)
		goto fail;
	a->procs = calloc(s->nprocs ? s->nprocs : 1, sizeof(*a->procs));
	uint32_t *to = calloc(s->nprocs ? s->nprocs : 1, sizeof(uint32_t));
	if (!a->procs || !to) {
		free(to);
		goto fail;
	}
	/* one entry per process: the snapshot's processes are per mapping set */
	for (size_t k = 0; k < s->nprocs; k++) {
		const profile_proc_t *p = &s->procs[k];
		size_t j = 0;
		while (j < a->nprocs && (a->procs[j].pid != p->pid || a->procs[j].start_time != p->start_time))
			j++;
		if (j == a->nprocs) {
			profile_attr_proc_t *e = &a->procs[a->nprocs++];
			e->pid = p->pid;
			e->uid = p->uid;
			e->slot = p->slot;
			e->start_time = p->start_time;
			e->exited = p->exited;
		}
		to[k] = (uint32_t)j;
	}
	for (size_t k = 0; k < s->nsamples; k++) {
		const profile_sample_t *sm = &s->samples[k];
		if (!sm->live)
			continue;
		double sc = sample_scale(sm->size, sm->rate);
		a->procs[to[sm->proc]].objects += sc;
		a->procs[to[sm->proc]].bytes += sc * (double)sm->size;
	}
	free(to);
	profile_snap_put(s);
	return a;
fail:
	profile_snap_put(s);
	profile_attr_free(a);
	return NULL;
}

void profile_attr_free(profile_attr_t *a)
{
	if (!a)
		return;
	free(a->large_bytes);
	free(a->small_bytes);
	free(a->procs);
	free(a);
}

const profile_attr_proc_t *profile_attr_find(const profile_attr_t *a, uint32_t pid,
                                             uint64_t start_time)
{
	for (size_t j = 0; j < a->nprocs; j++)
		if (a->procs[j].pid == pid && a->procs[j].start_time == start_time)
			return &a->procs[j];
	return NULL;
}
