// SPDX-License-Identifier: MIT
/*
 * daemon.c - open and close the daemon's state, and the operations that
 * cross modules: getting a span for a client (central, reclaim, carve),
 * taking spans back from a slot, reaping held slots, and the full check.
 *
 * Entry points: daemon_open, daemon_close, daemon_get_span,
 * daemon_take_back, daemon_release_slot, daemon_reap_held, daemon_check.
 * Lock order is in daemon.h.
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "large.h"
#include "log.h"
#include "recovery.h"
#include "report.h"

/* segment_open's failure means the file is there but is no usable arena. */
static int unusable(int rc, const char *err)
{
	return (rc == -EINVAL || rc == -EPROTO) && strstr(err, "unusable") != NULL;
}

int daemon_open(daemon_t *d, const config_t *cfg, char *err, size_t errlen)
{
	segment_params_t params = { .arena_bytes = cfg->arena_size, .max_clients = cfg->max_clients };
	recovery_stats_t rs;
	int rc;

	memset(d, 0, sizeof(*d));
	d->cfg = *cfg;
	d->seg.fd = -1;
	d->next_session_id = 1;
	d->start_ns = pageheap_now();
	d->quota_pages = (cfg->client_quota + HEAPD_PAGE_SIZE - 1) / HEAPD_PAGE_SIZE;

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
		goto fail;
	if (cfg->reset && !d->created)
		log_msg("arena %s is valid; --reset left it as it is", cfg->arena);

	shm_header_t *hdr = d->seg.hdr;
	int was_clean = hdr->clean_shutdown;
	hdr->generation++;
	hdr->clean_shutdown = 0;

	rc = pageheap_init(&d->heap, &d->seg);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up the page heap: %s", strerror(-rc));
		goto fail_seg;
	}
	rc = central_init(&d->central, &d->seg, &d->heap);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up central lists: %s", strerror(-rc));
		goto fail_heap;
	}
	rc = clients_init(&d->clients, &d->seg, &d->heap, cfg->max_clients);
	if (rc < 0) {
		snprintf(err, errlen, "cannot set up the client table: %s", strerror(-rc));
		goto fail_central;
	}
	sweeper_init(&d->sweeper, &d->central, &d->clients, cfg->sweep_interval, cfg->scavenge_delay);

	recovery_run(d, &rs);
	if (d->created) {
		log_msg("arena %s created: %llu MiB, %u client slots", cfg->arena,
		        (unsigned long long)(((uint64_t)hdr->npages_max << HEAPD_PAGE_SHIFT) >> 20),
		        hdr->max_clients);
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
	return 0;

fail_central:
	central_destroy(&d->central);
fail_heap:
	pageheap_destroy(&d->heap);
fail_seg:
	segment_close(&d->seg);
fail:
	return rc;
}

void daemon_close(daemon_t *d, int clean)
{
	if (!d->opened)
		return;
	sweeper_destroy(&d->sweeper);
	if (clean)
		d->seg.hdr->clean_shutdown = 1;
	clients_destroy(&d->clients);
	central_destroy(&d->central);
	pageheap_destroy(&d->heap);
	segment_close(&d->seg);
	d->opened = 0;
}

int daemon_get_span(daemon_t *d, uint32_t sizeclass, uint32_t *span, int *needzero)
{
	uint32_t npages = sizeclass_npages[sizeclass];
	int rc;

	if (central_take(&d->central, sizeclass, span, needzero) == 0)
		return 0;
	if (__atomic_load_n(&d->seg.hdr->pages_free, __ATOMIC_RELAXED) < npages) {
		sweeper_reclaim(&d->sweeper, npages);
		if (central_take(&d->central, sizeclass, span, needzero) == 0)
			return 0;
	}
	rc = central_carve(&d->central, sizeclass, span, needzero);
	if (rc == 0)
		sweeper_note_alloc(&d->sweeper, (uint64_t)npages << HEAPD_PAGE_SHIFT);
	return rc;
}

void daemon_take_back(daemon_t *d, uint32_t slot, uint32_t span, sweep_result_t *res)
{
	clients_disown(&d->clients, slot, span);
	central_put(&d->central, span, res);
}

void daemon_release_slot(daemon_t *d, uint32_t slot, sweep_result_t *res)
{
	slot_t *sl = &d->clients.slots[slot];
	while (sl->spans.head != HEAPD_NIL)
		daemon_take_back(d, slot, sl->spans.head, res);
	/* Its client may hold the last large object it asked for: it stays allocated. */
	if (sl->pending_large)
		large_settle(&d->central, &d->clients, slot, 1);
	clients_drop_charges(&d->clients, slot);
	clients_free(&d->clients, slot);
}

uint32_t daemon_reap_held(daemon_t *d)
{
	clients_t *cl = &d->clients;
	uint32_t reaped = 0;

	for (uint32_t i = 0; i < cl->nslots; i++) {
		shm_client_t *c = &d->seg.clients[i];
		if (c->pid == 0 || cl->slots[i].session || clients_alive(cl, i))
			continue;
		sweep_result_t res = { 0 };
		uint32_t pid = c->pid;
		daemon_release_slot(d, i, &res);
		log_msg("slot %u: process %u is gone; %llu spans taken back", i, pid,
		        (unsigned long long)res.spans);
		reaped++;
	}
	return reaped;
}

size_t daemon_check(daemon_t *d, check_report_t *r)
{
	segment_t *seg = &d->seg;
	clients_t *cl = &d->clients;
	uint64_t on_central = 0, listed = 0, owned = 0, slot_spans = 0;

	memset(r, 0, sizeof(*r));
	/* No sweep cycle under way: the spans it sweeps are half folded for a moment (bitmap.h). */
	pthread_mutex_lock(&d->sweeper.cycle_lock);
	central_lock_all(&d->central);
	pthread_mutex_lock(&d->heap.lock);
	check_segment(seg, &d->heap, r);
	central_check_locked(&d->central, r);

	uint32_t grown = seg->hdr->npages_grown;
	for (uint32_t p = 0; p < grown;) {
		const shm_span_t *s = &seg->spans[p];
		if (s->state == SPAN_DEAD || s->start != p || s->npages == 0 || s->npages > grown - p) {
			p++; /* check_segment reports the tiling */
			continue;
		}
		if (s->state == SPAN_SMALL) {
			if (s->owner == 0) {
				if (s->list >= SPANLIST_PARTIAL && s->list < SPANLIST_CLIENT)
					on_central++;
				else if (s->list != SPANLIST_SWEEPING)
					report_add(r, "span %u: small span owned by nobody is on no central list "
					              "(tag %u)", p, s->list);
			} else if (s->owner > cl->nslots || seg->clients[s->owner - 1].pid == 0) {
				report_add(r, "span %u: owned by client slot %u, which is not in use", p,
				           s->owner - 1);
			} else if (s->list != SPANLIST_CLIENT) {
				report_add(r, "span %u: owned by client slot %u but tagged %u", p, s->owner - 1,
				           s->list);
			} else {
				owned++;
			}
		} else if (s->state == SPAN_LARGE && s->owner != 0) {
			/* only the slot's last large object, while its reply is pending */
			if (s->owner > cl->nslots || seg->clients[s->owner - 1].pid == 0 ||
			    cl->slots[s->owner - 1].pending_large != p + 1)
				report_add(r, "span %u: large object owned by client slot %u, whose pending "
				              "large object it is not", p, s->owner - 1);
		}
		p += s->npages;
	}
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		for (int i = 0; i < 2; i++)
			listed += d->central.cls[k].partial[i].count + d->central.cls[k].full[i].count;
	if (listed != on_central)
		report_add(r, "central lists hold %llu spans, the span table tags %llu",
		           (unsigned long long)listed, (unsigned long long)on_central);
	for (uint32_t i = 0; i < cl->nslots; i++)
		slot_spans += cl->slots[i].spans.count;
	if (slot_spans != owned)
		report_add(r, "client slots list %llu spans, the span table has %llu owned",
		           (unsigned long long)slot_spans, (unsigned long long)owned);
	pthread_mutex_unlock(&d->heap.lock);
	central_unlock_all(&d->central);
	pthread_mutex_unlock(&d->sweeper.cycle_lock);
	return r->nproblems;
}
