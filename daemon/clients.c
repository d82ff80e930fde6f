// SPDX-License-Identifier: MIT
/*
 * clients.c - the client table and the per-slot books (see clients.h).
 *
 * Entry points: clients_init, clients_alloc, clients_free, clients_own,
 * clients_disown, clients_alive, and the large-object charges.
 *
 * Write order of a slot (the shared entry is read by a restarted daemon):
 * token, start time and uid are written before pid, and pid is cleared
 * first when the slot is freed, so a slot with pid != 0 is always whole.
 * Slot reuse always changes the token, so a client holding a stale token
 * cannot re-adopt a slot that has meanwhile served another process.
 */
#include "clients.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "lock.h"

int clients_init(clients_t *cl, segment_t *seg, pageheap_t *heap, uint32_t limit)
{
	memset(cl, 0, sizeof(*cl));
	cl->seg = seg;
	cl->heap = heap;
	cl->nslots = seg->hdr->max_clients;
	cl->limit = limit && limit < cl->nslots ? limit : cl->nslots;
	cl->slots = calloc(cl->nslots, sizeof(slot_t));
	if (!cl->slots)
		goto fail;
	for (uint32_t i = 0; i < cl->nslots; i++)
		spanlist_init(&cl->slots[i].spans);
	/* One entry per page, touched only where large objects live. */
	void *p = mmap(NULL, (size_t)seg->npages_max * sizeof(uint32_t), PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		goto fail;
	cl->charge = p;
	return 0;
fail:
	free(cl->slots);
	cl->slots = NULL;
	return -ENOMEM;
}

void clients_destroy(clients_t *cl)
{
	if (cl->charge)
		munmap(cl->charge, (size_t)cl->seg->npages_max * sizeof(uint32_t));
	free(cl->slots);
	memset(cl, 0, sizeof(*cl));
}

int clients_proc_start_time(pid_t pid, uint64_t *start_time)
{
	char path[64], buf[1024];
	FILE *f;

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -ESRCH;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields resume after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -ESRCH;
	p++;
	/* Field 3 (state) is the first after ')'; field 22 (starttime) is the 20th. */
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -ESRCH;
	}
	unsigned long long st;
	if (sscanf(p, " %llu", &st) != 1)
		return -ESRCH;
	/* A zombie has exited: its spans are free to take back. */
	char *state = strrchr(buf, ')') + 2;
	if (*state == 'Z' || *state == 'X')
		return -ESRCH;
	*start_time = st;
	return 0;
}

int clients_alive(const clients_t *cl, uint32_t slot)
{
	const shm_client_t *c = &cl->seg->clients[slot];
	uint64_t st;

	if (c->pid == 0)
		return 0;
	if (clients_proc_start_time((pid_t)c->pid, &st) < 0)
		return 0;
	return st == c->start_time;
}

static uint64_t new_token(uint64_t old)
{
	uint64_t t;
	if (getrandom(&t, sizeof(t), GRND_NONBLOCK) != sizeof(t))
		t = (old + 0x9e3779b97f4a7c15ULL) ^ pageheap_now();
	if (t == old || t == 0)
		t = old + 1 ? old + 1 : 1;
	return t;
}

int clients_alloc(clients_t *cl, pid_t pid, uid_t uid, uint64_t start_time, uint32_t *slot)
{
	if (cl->inuse >= cl->limit)
		return -EUSERS;
	for (uint32_t n = 0; n < cl->nslots; n++) {
		uint32_t i = (cl->cursor + n) % cl->nslots;
		shm_client_t *c = &cl->seg->clients[i];
		if (c->pid != 0)
			continue;
		assert(cl->slots[i].spans.count == 0);
		c->token = new_token(c->token);
		c->start_time = start_time;
		c->uid = (uint32_t)uid;
		atomic_store_explicit(&c->flags, 0, memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
		c->pid = (uint32_t)pid;
		cl->slots[i].session = NULL;
		cl->slots[i].span_pages = 0;
		cl->slots[i].large_pages = 0;
		cl->slots[i].pending_large = 0;
		cl->inuse++;
		cl->cursor = (i + 1) % cl->nslots;
		*slot = i;
		return 0;
	}
	return -EUSERS;
}

void clients_adopt(clients_t *cl, uint32_t slot)
{
	cl->inuse++;
	cl->slots[slot].session = NULL;
}

void clients_free(clients_t *cl, uint32_t slot)
{
	shm_client_t *c = &cl->seg->clients[slot];
	assert(cl->slots[slot].spans.count == 0);
	if (c->pid == 0)
		return;
	c->pid = 0;
	atomic_thread_fence(memory_order_release);
	cl->slots[slot].session = NULL;
	cl->inuse--;
}

void clients_own(clients_t *cl, uint32_t slot, uint32_t span)
{
	shm_span_t *s = &cl->seg->spans[span];
	slot_t *sl = &cl->slots[slot];

	assert(s->state == SPAN_SMALL && s->owner == 0 && s->list == SPANLIST_NONE);
	s->owner = slot + 1;
	spanlist_push(cl->seg->spans, &sl->spans, span, SPANLIST_CLIENT);
	sl->span_pages += s->npages;
}

void clients_disown(clients_t *cl, uint32_t slot, uint32_t span)
{
	shm_span_t *s = &cl->seg->spans[span];
	slot_t *sl = &cl->slots[slot];

	assert(s->owner == slot + 1 && s->list == SPANLIST_CLIENT);
	spanlist_remove(cl->seg->spans, &sl->spans, span);
	sl->span_pages -= s->npages;
	s->owner = 0;
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

void clients_charge_large_locked(clients_t *cl, uint32_t slot, uint32_t span, uint32_t npages)
{
	lock_assert_held(&cl->heap->lock);
	cl->charge[span] = slot + 1;
	cl->slots[slot].large_pages += npages;
}

void clients_uncharge_large_locked(clients_t *cl, uint32_t span, uint32_t npages)
{
	uint32_t who = cl->charge[span];

	lock_assert_held(&cl->heap->lock);
	if (who == 0)
		return;
	cl->charge[span] = 0;
	if (who <= cl->nslots)
		cl->slots[who - 1].large_pages -= npages;
}

void clients_drop_charges(clients_t *cl, uint32_t slot)
{
	pthread_mutex_lock(&cl->heap->lock);
	if (cl->slots[slot].large_pages) {
		uint32_t grown = cl->seg->hdr->npages_grown;
		for (uint32_t p = 0; p < grown; p++)
			if (cl->charge[p] == slot + 1)
				cl->charge[p] = 0;
		cl->slots[slot].large_pages = 0;
	}
	pthread_mutex_unlock(&cl->heap->lock);
}

uint64_t clients_held_pages(clients_t *cl, uint32_t slot)
{
	pthread_mutex_lock(&cl->heap->lock);
	uint64_t large = cl->slots[slot].large_pages;
	pthread_mutex_unlock(&cl->heap->lock);
	return cl->slots[slot].span_pages + large;
}
