// SPDX-License-Identifier: MIT
/*
 * clients.c - the client table and the per-slot books (see clients.h).
 *
 * Write order of a slot (the shared entry is read by a restarted daemon):
 * start time and uid are written before pid, and pid is cleared first when
 * the slot is freed, so a slot with pid != 0 is always whole. Clients read
 * the table but nothing in it is a secret: a slot is re-adopted only by the
 * process it names, as the kernel tells heapd who is connecting.
 */
#include "clients.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int clients_init(clients_t *cl, segment_t *seg, uint32_t limit, uint32_t per_uid)
{
	memset(cl, 0, sizeof(*cl));
	cl->seg = seg;
	cl->nslots = seg->hdr->max_clients;
	cl->limit = limit && limit < cl->nslots ? limit : cl->nslots;
	cl->per_uid = per_uid ? per_uid : cl->limit;
	cl->slots = calloc(cl->nslots, sizeof(slot_t));
	if (!cl->slots)
		return -ENOMEM;
	for (uint32_t i = 0; i < cl->nslots; i++) {
		spanlist_init(&cl->slots[i].spans);
		cl->slots[i].proc = PROC_NONE;
	}
	return 0;
}

void clients_destroy(clients_t *cl)
{
	if (!cl->slots)
		return;
	for (uint32_t i = 0; i < cl->nslots; i++)
		proc_close(&cl->slots[i].proc);
	free(cl->slots);
	memset(cl, 0, sizeof(*cl));
}

uint32_t clients_find(const clients_t *cl, const proc_t *p)
{
	for (uint32_t i = 0; i < cl->nslots; i++) {
		const shm_client_t *c = &cl->seg->clients[i];
		if (proc_is(p, c->pid, c->start_time, c->pidfs_id))
			return i;
	}
	return HEAPD_NIL;
}

uint32_t clients_count_uid(const clients_t *cl, uid_t uid)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < cl->nslots; i++)
		if (cl->seg->clients[i].pid != 0 && cl->seg->clients[i].uid == (uint32_t)uid)
			n++;
	return n;
}

int clients_is(const clients_t *cl, uint32_t slot, const proc_t *p, uid_t uid)
{
	if (slot >= cl->nslots)
		return 0;
	const shm_client_t *c = &cl->seg->clients[slot];
	return proc_is(p, c->pid, c->start_time, c->pidfs_id) && c->uid == (uint32_t)uid;
}

int clients_alloc(clients_t *cl, proc_t *p, uid_t uid, uint32_t *slot)
{
	if (cl->inuse >= cl->limit || clients_count_uid(cl, uid) >= cl->per_uid)
		return -EUSERS;
	for (uint32_t n = 0; n < cl->nslots; n++) {
		uint32_t i = (cl->cursor + n) % cl->nslots;
		shm_client_t *c = &cl->seg->clients[i];
		if (c->pid != 0)
			continue;
		assert(cl->slots[i].spans.count == 0);
		c->start_time = p->start_time;
		c->pidfs_id = p->id;
		c->uid = (uint32_t)uid;
		atomic_store_explicit(&c->flags, 0, memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
		c->pid = (uint32_t)p->pid;
		slot_t *sl = &cl->slots[i];
		sl->session = NULL;
		sl->span_pages = 0;
		sl->pending_large = 0;
		sl->watch = NULL;
		sl->proc = *p;
		*p = PROC_NONE;
		cl->inuse++;
		cl->cursor = (i + 1) % cl->nslots;
		*slot = i;
		return 0;
	}
	return -EUSERS;
}

void clients_adopt(clients_t *cl, uint32_t slot, proc_t *p)
{
	slot_t *sl = &cl->slots[slot];
	cl->inuse++;
	sl->session = NULL;
	sl->watch = NULL;
	sl->proc = *p;
	*p = PROC_NONE;
}

void clients_free(clients_t *cl, uint32_t slot)
{
	shm_client_t *c = &cl->seg->clients[slot];
	slot_t *sl = &cl->slots[slot];

	assert(sl->spans.count == 0 && sl->watch == NULL);
	if (c->pid == 0)
		return;
	c->pid = 0;
	atomic_thread_fence(memory_order_release);
	proc_close(&sl->proc);
	sl->session = NULL;
	sl->pending_large = 0;
	cl->inuse--;
}

void clients_own(clients_t *cl, uint32_t slot, uint32_t span)
{
	const shm_span_t *s = &cl->seg->spans[span];
	slot_t *sl = &cl->slots[slot];

	assert(s->state == SPAN_SMALL && s->owner == 0 && s->list == SPANLIST_NONE);
	span_set_owner(cl->seg, span, slot + 1);
	spanlist_push(cl->seg, &sl->spans, span, SPANLIST_CLIENT);
	sl->span_pages += s->npages;
}

void clients_keep(clients_t *cl, uint32_t slot, uint32_t span)
{
	const shm_span_t *s = &cl->seg->spans[span];
	slot_t *sl = &cl->slots[slot];

	assert(s->state == SPAN_SMALL && s->owner == slot + 1);
	spanlist_push(cl->seg, &sl->spans, span, SPANLIST_CLIENT);
	sl->span_pages += s->npages;
}

void clients_disown(clients_t *cl, uint32_t slot, uint32_t span)
{
	const shm_span_t *s = &cl->seg->spans[span];
	slot_t *sl = &cl->slots[slot];

	assert(s->owner == slot + 1 && s->list == SPANLIST_CLIENT);
	spanlist_remove(cl->seg, &sl->spans, span);
	sl->span_pages -= s->npages;
	span_set_owner(cl->seg, span, 0);
}

int clients_owns(const clients_t *cl, uint32_t slot, uint32_t span)
{
	const segment_t *seg = cl->seg;
	if (span >= seg->hdr->npages_grown)
		return 0;
	const shm_span_t *s = &seg->spans[span];
	return s->state == SPAN_SMALL && s->start == span && s->owner == slot + 1 &&
	       s->list == SPANLIST_CLIENT;
}
