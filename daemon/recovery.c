// SPDX-License-Identifier: MIT
/*
 * recovery.c - a restarted daemon rebuilds its indexes from the arena.
 *
 * The page map, the span table, the bitmaps, the client table and the
 * directory of named roots are the truth; central lists, slot lists, the
 * quota books, the roots' index and heapd's pin counts are indexes. At
 * start, pageheap_init walks the span table from page 0 and repairs the
 * tiling (pageheap.c, span.c). recovery_run first repairs the directory
 * (rootdir.h: every root must name a live object start, and every pin must
 * be a root's), so that the walk below folds and frees by pins that are
 * true. It then finds which client slots
 * name a live process (proc_open: same pid and start time, and a pidfd that
 * says it has not exited), walks the span table again and puts every in-use
 * span where it belongs:
 *   - LARGE with alloc bit 0 set and free bit 0 clear: a live object, kept;
 *     if its owner is a live slot, its reply may have been lost: pending
 *     for that slot, whose reconnect keeps or frees it (large.c).
 *   - LARGE with both bits set and a root naming it: freed while pinned,
 *     kept until its last root goes.
 *   - LARGE otherwise: a freed object whose LargeFree was lost, or an
 *     allocation or a carve cut short: freed.
 *   - SMALL owned by a live slot: kept on that slot's list, owner untouched,
 *     for the client to re-adopt (Hello prev_slot). The owner field is never
 *     cleared and set again, so no kill during recovery can hand a live
 *     client's span to central.
 *   - SMALL owned by nobody, by a dead process, or by a bad slot: owner = 0,
 *     then swept into central (or freed if empty).
 *   - SMALL whose class or length is impossible: freed if nobody owns it and
 *     no alloc bit is set, else quarantined as a large object that nobody
 *     owns, never handed out again.
 * Every span kept is counted into the quota books again. Client slots of
 * dead processes are freed; live ones are held (no session) until they
 * reconnect or their process exits.
 *
 * The walk (phase 1) holds the heap lock and only classifies, frees, keeps
 * and quarantines; spans for central are collected and put there after it
 * (phase 2), since filing them takes class locks, which come before the
 * heap lock. Killed at any point, the next recovery finds each span either
 * as it was or already moved to where this one put it.
 */
#include "recovery.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "daemon.h"
#include "log.h"
#include "sizeclass.h"
#include "span.h"

typedef struct rwalk {
	daemon_t *d;
	recovery_stats_t *st;
	uint8_t *alive;          /* per slot: its process lives */
	uint32_t *to_central;    /* small spans for phase 2 */
	size_t n, cap;
	int oom;
} rwalk_t;

static int slot_live(const rwalk_t *w, uint32_t owner)
{
	return owner != 0 && owner <= w->d->clients.nslots && w->alive[owner - 1];
}

/* No alloc bit set in span p's words. */
static int no_object(const segment_t *seg, uint32_t p)
{
	const uint64_t *a = segment_allocbits(seg, p);
	for (uint32_t i = 0; i < HEAPD_BITMAP_WORDS_MAX; i++)
		if (bitmap_load(&a[i]))
			return 0;
	return 1;
}

static void recover_large(rwalk_t *w, uint32_t p)
{
	daemon_t *d = w->d;
	segment_t *seg = &d->seg;
	shm_span_t *s = &seg->spans[p];
	uint64_t a = bitmap_load(&segment_allocbits(seg, p)[0]);
	uint64_t f = bitmap_load(&segment_freebits(seg, p, 1)[0]);

	int pinned = (int)(bitmap_load(segment_pins(seg, p)) & 1);
	if (!(a & 1) || ((f & 1) && !pinned)) {
		w->st->large_freed++;
		/* on the books first: the free takes its pages off them */
		quota_rebuild_span(&d->quota, p, slot_live(w, s->charge));
		central_free_span_locked(&d->central, p);
		return;
	}
	w->st->large_live++;
	span_set_unusedsince(seg, p, 0);
	/* A reply that may have been lost: the owner's reconnect settles it. */
	uint32_t owner = s->owner;
	slot_t *sl = owner ? &d->clients.slots[owner - 1] : NULL;
	if (slot_live(w, owner) && !sl->pending_large)
		sl->pending_large = p + 1;
	else if (owner != 0)
		span_set_owner(seg, p, 0);
	quota_rebuild_span(&d->quota, p, slot_live(w, s->charge));
}

static void recover_small(rwalk_t *w, uint32_t p)
{
	daemon_t *d = w->d;
	segment_t *seg = &d->seg;
	shm_span_t *s = &seg->spans[p];
	uint32_t k = s->sizeclass;

	span_set_list(seg, p, SPANLIST_NONE);
	span_set_links(seg, p, HEAPD_NIL, HEAPD_NIL);
	if (k == 0 || k >= SIZECLASS_COUNT || s->npages != sizeclass_npages[k]) {
		if (s->owner == 0 && no_object(seg, p)) {
			/* nothing in it to keep (an arena from before span_make_free's order) */
			w->st->small_freed++;
			quota_rebuild_span(&d->quota, p, slot_live(w, s->charge));
			central_free_span_locked(&d->central, p);
			return;
		}
		log_msg("recovery: span %u has class %u with impossible geometry; quarantined", p, k);
		span_quarantine(seg, p, s->npages);
		w->st->quarantined++;
		quota_rebuild_span(&d->quota, p, slot_live(w, s->charge));
		return;
	}
	quota_rebuild_span(&d->quota, p, slot_live(w, s->charge));
	if (slot_live(w, s->owner)) {
		clients_keep(&d->clients, s->owner - 1, p);
		w->st->small_kept++;
		return;
	}
	if (s->owner != 0) {
		w->st->small_taken++;
		span_set_owner(seg, p, 0);
	}
	if (w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 1024;
		uint32_t *grown = realloc(w->to_central, ncap * sizeof(uint32_t));
		if (!grown) {
			w->oom = 1; /* left off every list: the next start files it */
			return;
		}
		w->to_central = grown;
		w->cap = ncap;
	}
	w->to_central[w->n++] = p;
}

static void recover_one(void *arg, uint32_t p)
{
	rwalk_t *w = arg;
	uint8_t state = w->d->seg.spans[p].state;

	if (state == SPAN_LARGE)
		recover_large(w, p);
	else if (state == SPAN_SMALL)
		recover_small(w, p);
}

int recovery_run(daemon_t *d, recovery_stats_t *st)
{
	segment_t *seg = &d->seg;
	clients_t *cl = &d->clients;
	uint32_t nslots = cl->nslots;
	proc_t *procs = calloc(nslots ? nslots : 1, sizeof(proc_t));
	rwalk_t w = { .d = d, .st = st };

	memset(st, 0, sizeof(*st));
	w.alive = calloc(nslots ? nslots : 1, 1);
	if (!procs || !w.alive || rootdir_recover(&d->roots, &st->roots) < 0) {
		free(procs);
		free(w.alive);
		return -ENOMEM;
	}
	if (st->roots.dropped || st->roots.pins_cleared)
		log_msg("recovery: %u roots kept, %u dropped (a bad name, no live object, or a duplicate), "
		        "%llu pins without a root cleared", st->roots.bound, st->roots.dropped,
		        (unsigned long long)st->roots.pins_cleared);
	for (uint32_t i = 0; i < nslots; i++) {
		procs[i] = PROC_NONE;
		const shm_client_t *c = &seg->clients[i];
		if (c->pid != 0 && proc_open((pid_t)c->pid, c->start_time, c->pidfs_id, &procs[i]) == 0)
			w.alive[i] = 1;
	}

	pageheap_walk(&d->heap, recover_one, &w);
	for (size_t i = 0; i < w.n; i++) {
		sweep_result_t res = { 0 };
		central_put(&d->central, w.to_central[i], &res);
		if (res.spans_freed)
			st->small_freed++;
		else
			st->small_central++;
	}
	if (w.oom)
		log_msg("recovery: out of memory; some spans stay off the central lists until the next start");

	for (uint32_t i = 0; i < nslots; i++) {
		if (seg->clients[i].pid == 0)
			continue;
		if (w.alive[i]) {
			clients_adopt(cl, i, &procs[i]);
			st->slots_held++;
		} else {
			seg->clients[i].pid = 0;
			rootdir_forget_slot(&d->roots, i);
			st->slots_freed++;
		}
	}
	free(w.to_central);
	free(w.alive);
	free(procs);
	return 0;
}
