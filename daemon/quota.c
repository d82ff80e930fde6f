// SPDX-License-Identifier: MIT
/*
 * quota.c - the charge books (see quota.h).
 *
 * Books: pages per slot in an array, pages per uid in a small open-addressed
 * table (uids are few; it grows by doubling and never shrinks, and an entry
 * whose pages reach 0 stays in place with 0, so lookups never meet a
 * deleted entry). Each change of a
 * span's charge updates its descriptor and both books under q->lock.
 */
#include "quota.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "span.h"

#define QUOTA_UIDS_MIN 16u

static uint64_t pages_of(uint64_t bytes)
{
	return (bytes + HEAPD_PAGE_SIZE - 1) / HEAPD_PAGE_SIZE;
}

int quota_init(quota_t *q, segment_t *seg, uint32_t nslots, uint64_t slot_limit_bytes,
               uint64_t uid_limit_bytes)
{
	memset(q, 0, sizeof(*q));
	q->seg = seg;
	q->nslots = nslots;
	q->slot_limit = pages_of(slot_limit_bytes);
	q->uid_limit = pages_of(uid_limit_bytes);
	q->slot_pages = calloc(nslots ? nslots : 1, sizeof(uint64_t));
	q->cap = QUOTA_UIDS_MIN;
	q->uids = malloc(q->cap * sizeof(quota_uid_t));
	if (!q->slot_pages || !q->uids) {
		free(q->slot_pages);
		free(q->uids);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < q->cap; i++)
		q->uids[i].uid = HEAPD_NIL;
	return -pthread_mutex_init(&q->lock, NULL);
}

void quota_destroy(quota_t *q)
{
	if (!q->slot_pages)
		return;
	pthread_mutex_destroy(&q->lock);
	free(q->slot_pages);
	free(q->uids);
	memset(q, 0, sizeof(*q));
}

static uint32_t hash_uid(uint32_t uid)
{
	return uid * 0x9e3779b1u;
}

/* The entry of uid, added if absent (NULL if the table cannot grow). Lock held. */
static quota_uid_t *uid_entry(quota_t *q, uint32_t uid, int add)
{
	for (;;) {
		uint32_t mask = q->cap - 1;
		for (uint32_t i = hash_uid(uid) & mask, n = 0; n < q->cap; i = (i + 1) & mask, n++) {
			if (q->uids[i].uid == uid)
				return &q->uids[i];
			if (q->uids[i].uid == HEAPD_NIL) {
				if (!add)
					return NULL;
				if ((q->nuids + 1) * 2 > q->cap)
					break; /* grow first */
				q->uids[i].uid = uid;
				q->uids[i].pages = 0;
				q->uids[i].roots = 0;
				q->nuids++;
				return &q->uids[i];
			}
		}
		if (!add)
			return NULL;
		quota_uid_t *old = q->uids;
		uint32_t oldcap = q->cap;
		quota_uid_t *grown = malloc((size_t)oldcap * 2 * sizeof(quota_uid_t));
		if (!grown)
			return NULL;
		q->uids = grown;
		q->cap = oldcap * 2;
		q->nuids = 0;
		for (uint32_t i = 0; i < q->cap; i++)
			q->uids[i].uid = HEAPD_NIL;
		for (uint32_t i = 0; i < oldcap; i++) {
			if (old[i].uid == HEAPD_NIL)
				continue;
			quota_uid_t *e = uid_entry(q, old[i].uid, 1);
			e->pages = old[i].pages;
			e->roots = old[i].roots;
		}
		free(old);
	}
}

int quota_admit(quota_t *q, uint32_t slot, uint32_t uid, uint64_t npages, const char **which)
{
	int rc = 0;

	pthread_mutex_lock(&q->lock);
	if (q->slot_limit && slot < q->nslots && q->slot_pages[slot] + npages > q->slot_limit) {
		*which = "client";
		rc = -EDQUOT;
	} else if (q->uid_limit) {
		quota_uid_t *e = uid_entry(q, uid, 0);
		if ((e ? e->pages : 0) + npages > q->uid_limit) {
			*which = "uid";
			rc = -EDQUOT;
		}
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/* Take span id's pages off its books and clear its charge. Lock held. */
static void uncharge_locked(quota_t *q, shm_span_t *s, uint32_t id)
{
	if (s->charge && s->charge - 1 < q->nslots) {
		uint64_t *sp = &q->slot_pages[s->charge - 1];
		*sp = *sp >= s->npages ? *sp - s->npages : 0;
	}
	if (s->charge_uid != HEAPD_NIL) {
		quota_uid_t *e = uid_entry(q, s->charge_uid, 0);
		if (e)
			e->pages = e->pages >= s->npages ? e->pages - s->npages : 0;
	}
	span_set_charge(q->seg, id, 0, HEAPD_NIL);
}

void quota_charge_span(quota_t *q, uint32_t id, uint32_t slot, uint32_t uid)
{
	shm_span_t *s = &q->seg->spans[id];

	pthread_mutex_lock(&q->lock);
	uncharge_locked(q, s, id);
	quota_uid_t *e = uid_entry(q, uid, 1);
	if (e)
		e->pages += s->npages;
	if (slot < q->nslots)
		q->slot_pages[slot] += s->npages;
	span_set_charge(q->seg, id, slot < q->nslots ? slot + 1 : 0, e ? uid : HEAPD_NIL);
	pthread_mutex_unlock(&q->lock);
}

void quota_uncharge_span(quota_t *q, uint32_t id)
{
	pthread_mutex_lock(&q->lock);
	uncharge_locked(q, &q->seg->spans[id], id);
	pthread_mutex_unlock(&q->lock);
}

void quota_forget_slot_span(quota_t *q, uint32_t id, uint32_t slot)
{
	shm_span_t *s = &q->seg->spans[id];

	pthread_mutex_lock(&q->lock);
	if (s->state != SPAN_FREE && s->charge == slot + 1)
		span_set_charge(q->seg, id, 0, s->charge_uid);
	pthread_mutex_unlock(&q->lock);
}

void quota_forget_slot(quota_t *q, uint32_t slot)
{
	pthread_mutex_lock(&q->lock);
	if (slot < q->nslots)
		q->slot_pages[slot] = 0;
	pthread_mutex_unlock(&q->lock);
}

void quota_rebuild_span(quota_t *q, uint32_t id, int slot_live)
{
	shm_span_t *s = &q->seg->spans[id];

	pthread_mutex_lock(&q->lock);
	if (s->charge && (!slot_live || s->charge - 1 >= q->nslots))
		span_set_charge(q->seg, id, 0, s->charge_uid);
	if (s->charge)
		q->slot_pages[s->charge - 1] += s->npages;
	if (s->charge_uid != HEAPD_NIL) {
		quota_uid_t *e = uid_entry(q, s->charge_uid, 1);
		if (e)
			e->pages += s->npages;
		else
			span_set_charge(q->seg, id, s->charge, HEAPD_NIL);
	}
	pthread_mutex_unlock(&q->lock);
}

uint64_t quota_slot_pages(quota_t *q, uint32_t slot)
{
	pthread_mutex_lock(&q->lock);
	uint64_t n = slot < q->nslots ? q->slot_pages[slot] : 0;
	pthread_mutex_unlock(&q->lock);
	return n;
}

uint64_t quota_uid_pages(quota_t *q, uint32_t uid)
{
	pthread_mutex_lock(&q->lock);
	quota_uid_t *e = uid_entry(q, uid, 0);
	uint64_t n = e ? e->pages : 0;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void quota_set_root_limit(quota_t *q, uint64_t limit)
{
	pthread_mutex_lock(&q->lock);
	q->root_limit = limit;
	pthread_mutex_unlock(&q->lock);
}

int quota_admit_root(quota_t *q, uint32_t uid)
{
	pthread_mutex_lock(&q->lock);
	quota_uid_t *e = q->root_limit ? uid_entry(q, uid, 0) : NULL;
	int rc = e && e->roots >= q->root_limit ? -EDQUOT : 0;
	pthread_mutex_unlock(&q->lock);
	return rc;
}

void quota_charge_root(quota_t *q, uint32_t uid, int delta)
{
	pthread_mutex_lock(&q->lock);
	quota_uid_t *e = uid_entry(q, uid, delta > 0);
	if (e && delta > 0)
		e->roots++;
	else if (e && e->roots > 0)
		e->roots--;
	pthread_mutex_unlock(&q->lock);
}

uint64_t quota_uid_roots(quota_t *q, uint32_t uid)
{
	pthread_mutex_lock(&q->lock);
	quota_uid_t *e = uid_entry(q, uid, 0);
	uint64_t n = e ? e->roots : 0;
	pthread_mutex_unlock(&q->lock);
	return n;
}
