// SPDX-License-Identifier: MIT
/*
 * spanlist.h - doubly linked lists of in-use spans, threaded through the
 * span descriptors' next/prev fields, and the tags the daemon keeps in
 * span->list to say which list an in-use span is on.
 *
 * The page heap uses the same link fields for free spans; an in-use span's
 * links belong to whoever holds it: a central class list (under that class's
 * lock) or a client slot's list (event-loop thread only). A span is on at
 * most one list, and span->list names it. These lists are indexes: a
 * restarted daemon rebuilds them from span state and owner (recovery.c).
 */
#ifndef HEAPD_DAEMON_SPANLIST_H
#define HEAPD_DAEMON_SPANLIST_H

#include <stdint.h>

#include "layout.h"
#include "segment.h"

/* span->list of an in-use span. */
enum {
	SPANLIST_NONE = 0,      /* on no list: being handed over */
	SPANLIST_PARTIAL = 1,   /* central partial list; +1 for parity 1 (see central.h) */
	SPANLIST_FULL = 3,      /* central full list; +1 for parity 1 */
	SPANLIST_CLIENT = 5,    /* a client slot's list (owner != 0) */
	SPANLIST_SWEEPING = 6,  /* off-list while the daemon sweeps it (sweepgen == sg - 1) */
};

typedef struct spanlist {
	uint32_t head;          /* first span or HEAPD_NIL */
	uint32_t count;         /* spans on the list */
} spanlist_t;

static inline void spanlist_init(spanlist_t *l)
{
	l->head = HEAPD_NIL;
	l->count = 0;
}

static inline void spanlist_push(shm_span_t *spans, spanlist_t *l, uint32_t id, uint8_t tag)
{
	shm_span_t *s = &spans[id];
	s->prev = HEAPD_NIL;
	s->next = l->head;
	if (l->head != HEAPD_NIL)
		spans[l->head].prev = id;
	l->head = id;
	s->list = tag;
	l->count++;
}

static inline void spanlist_remove(shm_span_t *spans, spanlist_t *l, uint32_t id)
{
	shm_span_t *s = &spans[id];
	if (s->prev != HEAPD_NIL)
		spans[s->prev].next = s->next;
	else
		l->head = s->next;
	if (s->next != HEAPD_NIL)
		spans[s->next].prev = s->prev;
	s->next = s->prev = HEAPD_NIL;
	s->list = SPANLIST_NONE;
	l->count--;
}

/* Remove and return the first span, or HEAPD_NIL. */
static inline uint32_t spanlist_pop(shm_span_t *spans, spanlist_t *l)
{
	uint32_t id = l->head;
	if (id != HEAPD_NIL)
		spanlist_remove(spans, l, id);
	return id;
}

/*
 * Walking the span table while freeing: after span p was returned to the
 * page heap it may have merged with free neighbours. The start of the span
 * after the (possibly merged) free span that now holds page p.
 */
static inline uint32_t span_next_after_free(const segment_t *seg, uint32_t p, uint32_t grown)
{
	const shm_span_t *spans = seg->spans;
	uint32_t m = p;
	if (!(spans[p].state == SPAN_FREE && spans[p].start == p) && p > 0) {
		/* the last page of a free span maps to its start */
		uint32_t b = segment_pagemap_span(seg, p - 1);
		if (b < p && spans[b].state == SPAN_FREE && spans[b].start == b &&
		    spans[b].npages > p - b)
			m = b;
	}
	if (spans[m].state == SPAN_DEAD || spans[m].start != m || spans[m].npages == 0 ||
	    spans[m].npages > grown - m)
		return p + 1; /* should not happen: let the caller resynchronise */
	return m + spans[m].npages;
}

#endif
