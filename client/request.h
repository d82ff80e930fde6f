// SPDX-License-Identifier: MIT
/*
 * request.h - the requests a client makes of heapd, built and read back:
 * Hello, Refill, LargeAlloc, LargeFree, Bye, RootSet and RootCas
 * (proto/heap.proto), the
 * policy for a request that goes out on a new connection, and the counters
 * hc_stats reports.
 *
 * No I/O happens here: the transport (transport.h) sends a request_t and
 * hands its reply back to request_done. Above proc.h, below the transport.
 * Everything here runs under proc_g.lock.
 */
#ifndef HEAPD_CLIENT_REQUEST_H
#define HEAPD_CLIENT_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* One request: its envelope and the storage of its message. */
typedef struct request {
	Heapd__Envelope env;
	Heapd__Envelope__MsgCase want; /* the reply it expects (NOT_SET: none, a LargeFree) */
	union {
		Heapd__Hello hello;
		Heapd__Refill refill;
		Heapd__LargeAlloc large_alloc;
		Heapd__LargeFree large_free;
		Heapd__Bye bye;
		Heapd__RootSet root_set;
		Heapd__RootCas root_cas;
	} u;
	uint32_t *held;                /* a Hello's held_spans, malloc'd */
} request_t;

/* Counters for hc_stats; proc_g.lock. */
typedef struct request_counts {
	uint64_t requests, refills, large_allocs, reconnects;
} request_counts_t;

extern request_counts_t request_counts;

/*
 * A Hello: naming our slot, the spans our caches hold and the large object
 * we last received when we have a slot. 0 or -ENOMEM. request_free after.
 */
int request_hello(request_t *r);

/* A Refill: hand back rel[0..nrel), ask for count spans of sizeclass. */
void request_refill(request_t *r, uint32_t sizeclass, uint32_t count, uint32_t *rel, size_t nrel);

/* And one span of each of also[0..n) too, if heapd has them to spare (Refill.also; not copied). */
void request_refill_also(request_t *r, uint32_t *also, size_t n);

/* A LargeAlloc of size bytes (align: 0 or beyond a page), handing back rel[0..nrel) first. */
void request_large_alloc(request_t *r, uint64_t size, int zero, uint64_t align, uint32_t *rel,
                         size_t nrel);

/* A LargeFree of span, generation gen (proc_large_freeing has forgotten it as received). */
void request_large_free(request_t *r, uint32_t span, uint32_t gen);

void request_bye(request_t *r);

/*
 * A RootSet: bind len bytes of name (not copied) to the object at arena
 * offset off (0: remove the binding). token names the change, the same on
 * every connection it is sent on.
 */
void request_root_set(request_t *r, const char *name, size_t len, uint64_t off, uint64_t token);

/*
 * A RootCas: the same, only if the name is bound to expected (0: unbound)
 * now, and (expected_id not 0) by that very binding.
 */
void request_root_cas(request_t *r, const char *name, size_t len, uint64_t expected,
                      uint64_t expected_id, uint64_t desired, uint64_t token);

void request_free(request_t *r);

/*
 * r is about to go out on a connection the transport has just made: the
 * spans it hands back were unlinked from the caches, so that connection's
 * Hello did not list them and the daemon took them back already; naming
 * them again would be an error. The list is dropped.
 */
void request_on_new_connection(request_t *r);

/* r went out (counted for hc_stats). */
void request_sent(const request_t *r);

/*
 * The reply to r has come. 0 if it is the kind r wants (a LargeAlloc's is
 * remembered as received), else the error: an Error's -code, with *fatal
 * set when the daemon closes the connection after it; -EPROTO (fatal) for
 * a reply of another kind.
 */
int request_done(request_t *r, const Heapd__Envelope *reply, int *fatal);

#endif
