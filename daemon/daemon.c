// SPDX-License-Identifier: MIT
/*
 * daemon.c - open and close the daemon's state, and its policy (daemon.h):
 * slots for processes, spans and large objects for slots, hand-backs, the
 * release of a slot whose process has exited, and the full check.
 *
 * Policy, each in one place:
 *   - slots: daemon_attach (one slot per process, connected once at a time,
 *     re-adopted by the same process only, per-uid and global limits in
 *     clients.c);
 *   - quota: quota_admit before every span or large object (quota.h says
 *     what is charged);
 *   - reclaim before growth: make_room, for spans and large objects alike,
 *     with the sweeper's backoff (sweeper.h);
 *   - liveness: daemon_reap, driven by the server's pidfd watches, frees a
 *     slot only when its whole process has exited.
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "large.h"
#include "log.h"
#include "recovery.h"
#include "report.h"
#include "session.h"
#include "span.h"

/* segment_open's failure means the arena is there but unusable. */
static int unusable(int rc, const char *err)
{
	return (rc == -EINVAL || rc == -EPROTO) && strstr(err, "unusable") != NULL;
}

int daemon_open(daemon_t *d, const config_t *cfg, char *err, size_t errlen)
{
	segment_params_t params = { .arena_bytes = cfg->arena_size, .max_clients = cfg->max_clients,
	                            .profile_records = cfg->profile_records,
	                            .max_roots = cfg->max_roots };
	recovery_stats_t rs;
	int rc;

	memset(d, 0, sizeof(*d));
	d->cfg = *cfg;
	d->next_session_id = 1;
	d->start_ns = heapd_now_ns();

	rc = segment_open(cfg->arena, &params, SEGMENT_CREATE | SEGMENT_LOCK, &d->seg, &d->created,
	                  err, errlen);
	if (rc < 0 && unusable(rc, err) && cfg->reset) {
		log_msg("%s; laying it out anew (--reset)", err);
		rc = segment_open(cfg->arena, &params, SEGMENT_CREATE | SEGMENT_LOCK | SEGMENT_RESET,
		                  &d->seg, &d->created, err, errlen);
		d->created = 1;
	} else if (rc < 0 && unusable(rc, err)) {
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, "; refusing to touch it (start with --reset to lay it out "
		                              "anew, destroying its contents)");
	}
	if (rc < 0)
		return rc;
	if (cfg->reset && !d->created)
		log_msg("arena %s is valid; --reset left it as it is", cfg->arena);
	if (d->seg.data_repaired)
		log_msg("arena %s: the data file had been shrunk (by a client); re-extended, the cut "
		        "range reads as zero", cfg->arena);
	rc = segment_guard(&d->seg);
	if (rc < 0) {
		snprintf(err, errlen, "cannot guard the arena against truncation: %s", strerror(-rc));
		goto fail_seg;
	}

	shm_header_t *hdr = d->seg.hdr;
	int was_clean = hdr->clean_shutdown;
	hdr->generation++;
	hdr->clean_shutdown = 0;

	rc = pageheap_init(&d->heap, &d->seg);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up the page heap: %s", strerror(-rc));
		goto fail_seg;
	}
	rc = quota_init(&d->quota, &d->seg, hdr->max_clients, cfg->client_quota, cfg->uid_quota);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up the quota books: %s", strerror(-rc));
		goto fail_heap;
	}
	rc = central_init(&d->central, &d->seg, &d->heap, &d->quota);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up central lists: %s", strerror(-rc));
		goto fail_quota;
	}
	rc = clients_init(&d->clients, &d->seg, cfg->max_clients, cfg->max_clients_per_uid);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up the client table: %s", strerror(-rc));
		goto fail_central;
	}
	rc = rootdir_init(&d->roots, &d->seg, &d->central, &d->quota);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up the root directory: %s", strerror(-rc));
		goto fail_clients;
	}
	quota_set_root_limit(&d->quota, cfg->uid_max_roots);
	if (!d->created && cfg->max_roots && cfg->max_roots != hdr->roots_max)
		log_msg("arena %s holds %u roots; --max-roots %u applies to a new arena only", cfg->arena,
		        hdr->roots_max, cfg->max_roots);
	sweeper_init(&d->sweeper, &d->central, cfg->sweep_interval, cfg->scavenge_delay);

	rc = recovery_run(d, &rs);
	if (rc < 0) {
		snprintf(err, errlen, "cannot recover the arena: %s", strerror(-rc));
		goto fail_roots;
	}
	rc = profile_open(&d->profile, d);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up heap profiles: %s", strerror(-rc));
		goto fail_roots;
	}
	if (d->created) {
		log_msg("arena %s created: %llu MiB, %u client slots, %u heap-profile records", cfg->arena,
		        (unsigned long long)(((uint64_t)hdr->npages_max << HEAPD_PAGE_SHIFT) >> 20),
		        hdr->max_clients, hdr->prof_records);
	} else {
		log_msg("arena %s reopened (generation %u, %s shutdown): %llu large objects, "
		        "%llu small spans in central, %llu kept for %u live clients, %llu taken back, "
		        "%llu freed, %llu quarantined",
		        cfg->arena, hdr->generation, was_clean ? "clean" : "unclean",
		        (unsigned long long)rs.large_live, (unsigned long long)rs.small_central,
		        (unsigned long long)rs.small_kept, rs.slots_held,
		        (unsigned long long)rs.small_taken,
		        (unsigned long long)(rs.small_freed + rs.large_freed),
		        (unsigned long long)rs.quarantined);
	}
	d->opened = 1;
	daemon_debug_check(d, "recovery");
	return 0;

fail_roots:
	sweeper_destroy(&d->sweeper);
	rootdir_destroy(&d->roots);
fail_clients:
	clients_destroy(&d->clients);
fail_central:
	central_destroy(&d->central);
fail_quota:
	quota_destroy(&d->quota);
fail_heap:
	pageheap_destroy(&d->heap);
fail_seg:
	segment_close(&d->seg);
	return rc;
}

void daemon_close(daemon_t *d, int clean)
{
	if (!d->opened)
		return;
	sweeper_destroy(&d->sweeper);
	profile_close(&d->profile);
	if (clean)
		d->seg.hdr->clean_shutdown = 1;
	rootdir_destroy(&d->roots);
	clients_destroy(&d->clients);
	central_destroy(&d->central);
	quota_destroy(&d->quota);
	pageheap_destroy(&d->heap);
	segment_close(&d->seg);
	d->opened = 0;
}

/* ---- slots ---- */

static void watch_slot(daemon_t *d, uint32_t slot)
{
	slot_t *sl = &d->clients.slots[slot];
	if (d->watch_proc && !sl->watch && sl->proc.pidfd >= 0)
		sl->watch = d->watch_proc(d->watch_arg, slot, sl->proc.pidfd);
}

static void unwatch_slot(daemon_t *d, uint32_t slot)
{
	slot_t *sl = &d->clients.slots[slot];
	if (sl->watch && d->unwatch_proc)
		d->unwatch_proc(d->watch_arg, sl->watch);
	sl->watch = NULL;
}

void daemon_watch_slots(daemon_t *d)
{
	for (uint32_t i = 0; i < d->clients.nslots; i++)
		if (d->seg.clients[i].pid != 0)
			watch_slot(d, i);
}

void daemon_unwatch_slots(daemon_t *d)
{
	for (uint32_t i = 0; i < d->clients.nslots; i++)
		unwatch_slot(d, i);
}

/* Hand a span a slot owns back to central (swept at once). */
static void take_back(daemon_t *d, uint32_t slot, uint32_t span, sweep_result_t *res)
{
	clients_disown(&d->clients, slot, span);
	central_put(&d->central, span, res);
	sweeper_note_free(&d->sweeper);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Re-adopt slot ps for its own process: take back what the client no longer lists. */
static int readopt(daemon_t *d, uint32_t ps, const uint32_t *held, size_t nheld,
                   uint32_t large_received)
{
	clients_t *cl = &d->clients;
	slot_t *sl = &cl->slots[ps];
	sweep_result_t res = { 0 };
	uint32_t *sorted = NULL;

	if (sl->pending_large)
		large_settle(&d->central, cl, ps, large_received == sl->pending_large);
	if (nheld) {
		sorted = malloc(nheld * sizeof(uint32_t));
		if (!sorted)
			return -ENOMEM;
		memcpy(sorted, held, nheld * sizeof(uint32_t));
		qsort(sorted, nheld, sizeof(uint32_t), cmp_u32);
	}
	/* Spans the slot owns that the client does not list: it handed them back or never got them. */
	for (uint32_t id = sl->spans.head; id != HEAPD_NIL;) {
		uint32_t next = d->seg.spans[id].next;
		if (!sorted || !bsearch(&id, sorted, nheld, sizeof(uint32_t), cmp_u32))
			take_back(d, ps, id, &res);
		id = next;
	}
	free(sorted);
	log_msg("slot %u (pid %u) re-adopted with %u spans (%llu taken back)", ps,
	        d->seg.clients[ps].pid, sl->spans.count, (unsigned long long)res.spans);
	return 0;
}

int daemon_attach(daemon_t *d, struct session *s, proc_t *p, uid_t uid, uint32_t prev_slot,
                  const uint32_t *held, size_t nheld, uint32_t large_received, uint32_t *slot,
                  const char **why)
{
	clients_t *cl = &d->clients;
	uint32_t ps = HEAPD_NIL;
	int rc;

	int reconnect = 0;

	if (prev_slot && clients_is(cl, prev_slot - 1, p, uid)) {
		/* A reconnect: the slot it names is this very process's. */
		ps = prev_slot - 1;
		reconnect = 1;
	} else {
		/*
		 * A process that names no slot of its own (a new image after exec
		 * names none; a slot that is not its own counts as none) but still
		 * has one: that slot, emptied, so that a process never holds two.
		 * Its last large object stays allocated: the image before the exec
		 * may have passed it on (a leak, never a second owner).
		 */
		uint32_t have = clients_find(cl, p);
		if (have != HEAPD_NIL && clients_is(cl, have, p, uid)) {
			ps = have;
			held = NULL;
			nheld = 0;
			large_received = cl->slots[have].pending_large;
		}
	}
	if (ps != HEAPD_NIL) {
		slot_t *sl = &cl->slots[ps];
		if (sl->session && sl->session != s && !reconnect) {
			*why = "this process is connected already";
			return -EBUSY;
		}
		rc = readopt(d, ps, held, nheld, large_received);
		if (rc < 0) {
			*why = "out of memory";
			return rc;
		}
		if (sl->session && sl->session != s) {
			/* An older connection of the same process, which it has given up. */
			struct session *old = sl->session;
			daemon_detach(d, ps);
			session_orphan(old);
		}
		proc_close(p); /* the slot has its pidfd already */
		sl->session = s;
		d->nclients++;
		watch_slot(d, ps);
		*slot = ps;
		return 0;
	}
	uint32_t have = clients_find(cl, p);
	if (have != HEAPD_NIL && cl->slots[have].session) {
		*why = "this process is connected already";
		return -EBUSY;
	}
	rc = clients_alloc(cl, p, uid, slot);
	if (rc < 0) {
		*why = cl->inuse >= cl->limit ? "every client slot is in use"
		                              : "this user holds as many client slots as it may";
		return rc;
	}
	cl->slots[*slot].session = s;
	d->nclients++;
	watch_slot(d, *slot);
	return 0;
}

void daemon_detach(daemon_t *d, uint32_t slot)
{
	slot_t *sl = &d->clients.slots[slot];
	if (sl->session) {
		sl->session = NULL;
		d->nclients--;
	}
}

void daemon_settle(daemon_t *d, uint32_t slot)
{
	if (d->clients.slots[slot].pending_large)
		large_settle(&d->central, &d->clients, slot, 1);
}

typedef struct forget_walk {
	quota_t *q;
	uint32_t slot;
} forget_walk_t;

static void forget_one(void *arg, uint32_t id)
{
	forget_walk_t *w = arg;
	quota_forget_slot_span(w->q, id, w->slot);
}

/*
 * The slot's session ends and every span of the slot goes back; the last
 * large object its client asked for stays allocated (it may hold it).
 */
static void empty_slot(daemon_t *d, uint32_t slot, sweep_result_t *res)
{
	slot_t *sl = &d->clients.slots[slot];
	struct session *bound = sl->session;

	daemon_detach(d, slot);
	if (bound)
		session_orphan(bound);
	while (sl->spans.head != HEAPD_NIL)
		take_back(d, slot, sl->spans.head, res);
	if (sl->pending_large)
		large_settle(&d->central, &d->clients, slot, 1);
	rootdir_forget_slot(&d->roots, slot);
}

/* The slot's process has exited: empty_slot; charges go to the uid alone; the slot is freed. */
static void release_slot(daemon_t *d, uint32_t slot, sweep_result_t *res)
{
	forget_walk_t w = { .q = &d->quota, .slot = slot };

	empty_slot(d, slot, res);
	if (quota_slot_pages(&d->quota, slot))
		pageheap_walk(&d->heap, forget_one, &w);
	quota_forget_slot(&d->quota, slot);
	unwatch_slot(d, slot);
	clients_free(&d->clients, slot);
}

/*
 * Every span of the slot goes back, but the slot stays the process's, with
 * the pages its live objects hold charged to it, until the process exits
 * (daemon_reap): a Bye and a new Hello must not start the client's quota
 * afresh. The process's next Hello gets the slot back, emptied.
 */
void daemon_bye(daemon_t *d, uint32_t slot, sweep_result_t *res)
{
	empty_slot(d, slot, res);
	log_msg("slot %u (pid %u) given up; %llu spans taken back; the slot is held until the "
	        "process exits", slot, d->seg.clients[slot].pid, (unsigned long long)res->spans);
}

uint32_t daemon_reap(daemon_t *d, uint32_t slot)
{
	clients_t *cl = &d->clients;
	uint32_t reaped = 0;
	uint32_t from = slot == HEAPD_NIL ? 0 : slot, to = slot == HEAPD_NIL ? cl->nslots : slot + 1;

	for (uint32_t i = from; i < to && i < cl->nslots; i++) {
		shm_client_t *c = &d->seg.clients[i];
		if (c->pid == 0 || proc_alive(&cl->slots[i].proc))
			continue;
		sweep_result_t res = { 0 };
		uint32_t pid = c->pid;
		release_slot(d, i, &res);
		log_msg("slot %u: process %u has exited; %llu spans taken back", i, pid,
		        (unsigned long long)res.spans);
		reaped++;
	}
	return reaped;
}

/* ---- spans and large objects ---- */

/* Reclaim before growth: sweep first if the heap cannot serve npages from free pages. */
static void make_room(daemon_t *d, uint64_t npages)
{
	if (__atomic_load_n(&d->seg.hdr->pages_free, __ATOMIC_RELAXED) < npages)
		sweeper_reclaim(&d->sweeper, npages);
}

/* Why span is not one slot may hand back (NULL if it is); *code the errno. */
static const char *not_releasable(daemon_t *d, uint32_t slot, uint32_t span, int *code)
{
	segment_t *seg = &d->seg;
	*code = EINVAL;
	if (span >= seg->hdr->npages_grown)
		return "is out of range";
	const shm_span_t *sp = &seg->spans[span];
	if (sp->start != span || sp->state == SPAN_DEAD)
		return "does not start a span";
	if (sp->state != SPAN_SMALL)
		return "is not a small span";
	*code = EPERM;
	if (sp->owner != slot + 1)
		return sp->owner ? "belongs to another client" : "is not yours";
	if (!clients_owns(&d->clients, slot, span))
		return "is not on your list";
	return NULL;
}

int daemon_release(daemon_t *d, uint32_t slot, const uint32_t *spans, size_t n, uint32_t *bad,
                   const char **why)
{
	sweep_result_t res = { 0 };
	int code;

	for (size_t i = 0; i < n; i++) {
		*why = not_releasable(d, slot, spans[i], &code);
		if (*why) {
			*bad = spans[i];
			return -code;
		}
		take_back(d, slot, spans[i], &res);
	}
	return 0;
}

/*
 * One swept span of sizeclass: central first, then reclaim, then a new one.
 * An extra span (daemon_grant_extra) never makes heapd reclaim: it comes
 * from free pages only while DAEMON_EXTRA_ROOM times its pages are free.
 */
static int get_span(daemon_t *d, uint32_t sizeclass, int extra, uint32_t *span, int *needzero)
{
	uint32_t npages = sizeclass_npages[sizeclass];
	uint64_t want = extra ? (uint64_t)npages * DAEMON_EXTRA_ROOM : npages;

	if (central_take(&d->central, sizeclass, span, needzero) == 0)
		return 0;
	if (__atomic_load_n(&d->seg.hdr->pages_free, __ATOMIC_RELAXED) < want) {
		if (extra)
			return -ENOMEM;
		make_room(d, npages);
		if (central_take(&d->central, sizeclass, span, needzero) == 0)
			return 0;
	}
	int rc = central_carve(&d->central, sizeclass, span, needzero);
	if (rc == 0)
		sweeper_note_alloc(&d->sweeper, (uint64_t)npages << HEAPD_PAGE_SHIFT);
	return rc;
}

int daemon_grant_spans(daemon_t *d, uint32_t slot, uint32_t sizeclass, uint32_t count,
                       uint32_t *spans, int *needzero, uint32_t *n, char *why, size_t whylen)
{
	uint32_t uid = d->seg.clients[slot].uid, npages = sizeclass_npages[sizeclass];
	const char *which = NULL;
	int rc = 0;

	*n = 0;
	while (*n < count) {
		rc = quota_admit(&d->quota, slot, uid, npages, &which);
		if (rc < 0)
			break;
		rc = get_span(d, sizeclass, 0, &spans[*n], &needzero[*n]);
		if (rc < 0)
			break;
		clients_own(&d->clients, slot, spans[*n]);
		quota_charge_span(&d->quota, spans[*n], slot, uid);
		(*n)++;
	}
	if (*n > 0)
		return 0;
	if (rc == -EDQUOT)
		snprintf(why, whylen, "%s quota of %llu bytes reached", which,
		         (unsigned long long)(which[0] == 'c' ? d->cfg.client_quota : d->cfg.uid_quota));
	else
		snprintf(why, whylen, "arena is full: no span of class %u (%u pages)", sizeclass, npages);
	return rc == -EDQUOT ? -EDQUOT : -ENOMEM;
}

int daemon_grant_extra(daemon_t *d, uint32_t slot, uint32_t sizeclass, uint32_t *span,
                       int *needzero)
{
	uint32_t uid = d->seg.clients[slot].uid, npages = sizeclass_npages[sizeclass];
	const char *which = NULL;

	/* Never at the price of the quota's last room, nor of a reclaim cycle. */
	if (quota_admit(&d->quota, slot, uid, (uint64_t)npages * DAEMON_EXTRA_ROOM, &which) < 0)
		return -EDQUOT;
	if (get_span(d, sizeclass, 1, span, needzero) < 0)
		return -ENOMEM;
	clients_own(&d->clients, slot, *span);
	quota_charge_span(&d->quota, *span, slot, uid);
	return 0;
}

int daemon_large_alloc(daemon_t *d, uint32_t slot, uint64_t size, uint64_t align, int zero,
                       uint32_t *span, int *zeroed, uint32_t *gen, char *why, size_t whylen)
{
	uint64_t npages = large_pages_for(size), align_pages = 1;
	uint32_t npages_max = d->seg.npages_max, uid = d->seg.clients[slot].uid;
	const char *which = NULL;
	int rc;

	if (size == 0 || npages == 0 || npages > npages_max) {
		snprintf(why, whylen, "large alloc of %llu bytes: the arena holds %llu",
		         (unsigned long long)size,
		         (unsigned long long)((uint64_t)npages_max << HEAPD_PAGE_SHIFT));
		return -EINVAL;
	}
	if (align & (align - 1)) {
		snprintf(why, whylen, "large alloc alignment %llu is not a power of two",
		         (unsigned long long)align);
		return -EINVAL;
	}
	if (align > HEAPD_PAGE_SIZE) {
		align_pages = align >> HEAPD_PAGE_SHIFT;
		if (align_pages > npages_max || 2 * align_pages + npages > npages_max) {
			snprintf(why, whylen, "large alloc of %llu bytes aligned to %llu cannot fit the arena",
			         (unsigned long long)size, (unsigned long long)align);
			return -EINVAL;
		}
	}
	rc = quota_admit(&d->quota, slot, uid, npages, &which);
	if (rc < 0) {
		snprintf(why, whylen, "%s quota of %llu bytes reached", which,
		         (unsigned long long)(which[0] == 'c' ? d->cfg.client_quota : d->cfg.uid_quota));
		return rc;
	}
	make_room(d, npages + align_pages - 1);
	rc = large_alloc(&d->central, &d->clients, slot, uid, (uint32_t)npages, (uint32_t)align_pages,
	                 zero, span, zeroed, gen);
	if (rc < 0) {
		snprintf(why, whylen, "arena is full: no room for %llu pages", (unsigned long long)npages);
		return -ENOMEM;
	}
	sweeper_note_alloc(&d->sweeper, npages << HEAPD_PAGE_SHIFT);
	return 0;
}

int daemon_large_free(daemon_t *d, uint32_t span, uint32_t gen)
{
	int rc = large_free(&d->central, span, gen);
	if (rc == 0)
		sweeper_note_free(&d->sweeper);
	return rc;
}

/* ---- the check ---- */

size_t daemon_check(daemon_t *d, check_report_t *r)
{
	segment_t *seg = &d->seg;
	clients_t *cl = &d->clients;
	uint64_t on_central = 0, listed = 0, owned = 0, slot_spans = 0;
	uint32_t *dead = calloc(cl->nslots ? cl->nslots : 1, sizeof(*dead));
	span_walk_t w;
	uint32_t p, n;
	int kind;

	memset(r, 0, sizeof(*r));
	/* Slots of processes that exited since the last event: theirs is no problem. */
	daemon_reap(d, HEAPD_NIL);

	/* No sweep cycle under way: the spans it sweeps are half folded for a moment (bitmap.h). */
	pthread_mutex_lock(&d->sweeper.cycle_lock);
	central_lock_all(&d->central);
	pageheap_enter(&d->heap);
	check_segment(seg, &d->heap, r);
	central_check_locked(&d->central, r);

	span_walk_start(&w, seg, 0);
	while ((kind = span_walk_next(&w, &p, &n)) != SPAN_WALK_END) {
		const shm_span_t *s = &seg->spans[p];
		if (kind == SPAN_WALK_GAP)
			continue; /* check_segment reports the tiling */
		if (s->owner > cl->nslots) {
			report_add(r, "span %u: owner %u names no client slot", p, s->owner);
		} else if (s->owner != 0 && seg->clients[s->owner - 1].pid == 0) {
			report_add(r, "span %u: owned by client slot %u, which is not in use", p,
			           s->owner - 1);
		} else if (s->state == SPAN_SMALL) {
			if (s->owner == 0) {
				if (s->list >= SPANLIST_PARTIAL && s->list < SPANLIST_CLIENT)
					on_central++;
				else if (s->list != SPANLIST_SWEEPING)
					report_add(r, "span %u: small span owned by nobody is on no central list "
					              "(tag %u)", p, s->list);
			} else if (s->list != SPANLIST_CLIENT) {
				report_add(r, "span %u: owned by client slot %u but tagged %u", p, s->owner - 1,
				           s->list);
			} else {
				owned++;
			}
		} else if (s->state == SPAN_LARGE && s->owner != 0 &&
		           cl->slots[s->owner - 1].pending_large != p + 1) {
			/* only the slot's last large object, while its reply is pending */
			report_add(r, "span %u: large object owned by client slot %u, whose pending "
			              "large object it is not", p, s->owner - 1);
		}
		if (s->state != SPAN_FREE && s->charge > cl->nslots)
			report_add(r, "span %u: charged to slot %u, which does not exist", p, s->charge - 1);
	}
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		for (int i = 0; i < 2; i++)
			listed += d->central.cls[k].partial[i].count + d->central.cls[k].full[i].count;
	if (listed != on_central)
		report_add(r, "central lists hold %llu spans, the span table tags %llu",
		           (unsigned long long)listed, (unsigned long long)on_central);
	for (uint32_t i = 0; i < cl->nslots; i++) {
		slot_spans += cl->slots[i].spans.count;
		if (seg->clients[i].pid != 0 && !proc_alive(&cl->slots[i].proc) && dead)
			dead[i] = seg->clients[i].pid; /* exited since the reap above: reaped below */
		if (seg->clients[i].pid == 0 && cl->slots[i].spans.count)
			report_add(r, "slot %u: not in use but lists %u spans", i, cl->slots[i].spans.count);
	}
	if (slot_spans != owned)
		report_add(r, "client slots list %llu spans, the span table has %llu owned",
		           (unsigned long long)slot_spans, (unsigned long long)owned);
	rootdir_check_locked(&d->roots, r);
	pageheap_leave(&d->heap);
	central_unlock_all(&d->central);
	pthread_mutex_unlock(&d->sweeper.cycle_lock);
	/* A process that exited during the walk is no problem, unless its slot outlives a reap. */
	if (dead) {
		daemon_reap(d, HEAPD_NIL);
		for (uint32_t i = 0; i < cl->nslots; i++)
			if (dead[i] && seg->clients[i].pid == dead[i])
				report_add(r, "slot %u: process %u has exited but the slot is still in use",
				           i, dead[i]);
		free(dead);
	}
	return r->nproblems;
}

#ifdef HEAPD_DEBUG
void daemon_debug_check(daemon_t *d, const char *after)
{
	check_report_t *r = malloc(sizeof(*r));
	if (!r)
		return;
	size_t n = daemon_check(d, r);
	if (n > r->ndata) {
		log_msg("debug check after %s: %zu problems", after, n);
		for (size_t i = 0; i < n && i < CHECK_MAX_PROBLEMS; i++)
			log_msg("  %s", r->problems[i]);
		abort();
	}
	free(r);
}
#endif
