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
 * Links are written through span.h's setters, like every descriptor field.
 */
#ifndef HEAPD_DAEMON_SPANLIST_H
#define HEAPD_DAEMON_SPANLIST_H

#include <stdint.h>

#include "layout.h"
#include "segment.h"
#include "span.h"

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

static inline void spanlist_push(segment_t *seg, spanlist_t *l, uint32_t id, uint8_t tag)
{
	if (l->head != HEAPD_NIL)
		span_set_links(seg, l->head, seg->spans[l->head].next, id);
	span_set_links(seg, id, l->head, HEAPD_NIL);
	span_set_list(seg, id, tag);
	l->head = id;
	l->count++;
}

static inline void spanlist_remove(segment_t *seg, spanlist_t *l, uint32_t id)
{
	const shm_span_t *s = &seg->spans[id];
	uint32_t next = s->next, prev = s->prev;
	if (prev != HEAPD_NIL)
		span_set_links(seg, prev, next, seg->spans[prev].prev);
	else
		l->head = next;
	if (next != HEAPD_NIL)
		span_set_links(seg, next, seg->spans[next].next, prev);
	span_set_links(seg, id, HEAPD_NIL, HEAPD_NIL);
	span_set_list(seg, id, SPANLIST_NONE);
	l->count--;
}

/* Remove and return the first span, or HEAPD_NIL. */
static inline uint32_t spanlist_pop(segment_t *seg, spanlist_t *l)
{
	uint32_t id = l->head;
	if (id != HEAPD_NIL)
		spanlist_remove(seg, l, id);
	return id;
}

#endif
