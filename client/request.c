// SPDX-License-Identifier: MIT
/*
 * request.c - building requests and reading their replies (see request.h).
 */
#include "request.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

request_counts_t request_counts;

static void init(request_t *r, Heapd__Envelope__MsgCase msg, Heapd__Envelope__MsgCase want)
{
	memset(r, 0, sizeof(*r));
	heapd__envelope__init(&r->env);
	r->env.msg_case = msg;
	r->want = want;
}

int request_hello(request_t *r)
{
	size_t nheld = 0;

	init(r, HEAPD__ENVELOPE__MSG_HELLO, HEAPD__ENVELOPE__MSG_HELLO_REPLY);
	heapd__hello__init(&r->u.hello);
	r->env.hello = &r->u.hello;
	r->u.hello.version = HEAPD_PROTOCOL_VERSION;
	r->u.hello.pid = (uint32_t)getpid();
	if (proc_g.have_slot) {
		int rc = proc_held_spans_locked(&r->held, &nheld);
		if (rc < 0)
			return rc;
		r->u.hello.prev_slot = proc_g.slot + 1;
		r->u.hello.held_spans = r->held;
		r->u.hello.n_held_spans = nheld;
		r->u.hello.large_received = atomic_load(&proc_g.large_received);
	}
	return 0;
}

void request_refill(request_t *r, uint32_t sizeclass, uint32_t count, uint32_t *rel, size_t nrel)
{
	init(r, HEAPD__ENVELOPE__MSG_REFILL, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	heapd__refill__init(&r->u.refill);
	r->env.refill = &r->u.refill;
	r->u.refill.sizeclass = sizeclass;
	r->u.refill.count = count;
	r->u.refill.release = rel;
	r->u.refill.n_release = nrel;
}

void request_refill_also(request_t *r, uint32_t *also, size_t n)
{
	r->u.refill.also = also;
	r->u.refill.n_also = n;
}

void request_large_alloc(request_t *r, uint64_t size, int zero, uint64_t align, uint32_t *rel,
                         size_t nrel)
{
	init(r, HEAPD__ENVELOPE__MSG_LARGE_ALLOC, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	heapd__large_alloc__init(&r->u.large_alloc);
	r->env.large_alloc = &r->u.large_alloc;
	r->u.large_alloc.size = size;
	r->u.large_alloc.zero = zero;
	r->u.large_alloc.align = align;
	r->u.large_alloc.release = rel;
	r->u.large_alloc.n_release = nrel;
}

void request_large_free(request_t *r, uint32_t span, uint32_t gen)
{
	init(r, HEAPD__ENVELOPE__MSG_LARGE_FREE, HEAPD__ENVELOPE__MSG__NOT_SET);
	heapd__large_free__init(&r->u.large_free);
	r->env.large_free = &r->u.large_free;
	r->u.large_free.span = span;
	r->u.large_free.gen = gen;
}

void request_bye(request_t *r)
{
	init(r, HEAPD__ENVELOPE__MSG_BYE, HEAPD__ENVELOPE__MSG_OK);
	heapd__bye__init(&r->u.bye);
	r->env.bye = &r->u.bye;
}

void request_root_set(request_t *r, const char *name, size_t len, uint64_t off, uint64_t token)
{
	init(r, HEAPD__ENVELOPE__MSG_ROOT_SET, HEAPD__ENVELOPE__MSG_OK);
	heapd__root_set__init(&r->u.root_set);
	r->env.root_set = &r->u.root_set;
	r->u.root_set.name.data = (uint8_t *)name;
	r->u.root_set.name.len = len;
	r->u.root_set.off = off;
	r->u.root_set.token = token;
}

void request_root_cas(request_t *r, const char *name, size_t len, uint64_t expected,
                      uint64_t expected_id, uint64_t desired, uint64_t token)
{
	init(r, HEAPD__ENVELOPE__MSG_ROOT_CAS, HEAPD__ENVELOPE__MSG_OK);
	heapd__root_cas__init(&r->u.root_cas);
	r->env.root_cas = &r->u.root_cas;
	r->u.root_cas.name.data = (uint8_t *)name;
	r->u.root_cas.name.len = len;
	r->u.root_cas.expected = expected;
	r->u.root_cas.expected_id = expected_id;
	r->u.root_cas.desired = desired;
	r->u.root_cas.token = token;
}

void request_free(request_t *r)
{
	free(r->held);
	r->held = NULL;
}

void request_on_new_connection(request_t *r)
{
	if (r->env.msg_case == HEAPD__ENVELOPE__MSG_REFILL)
		r->u.refill.n_release = 0;
	else if (r->env.msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC)
		r->u.large_alloc.n_release = 0;
}

void request_sent(const request_t *r)
{
	request_counts.requests++;
	if (r->env.msg_case == HEAPD__ENVELOPE__MSG_REFILL)
		request_counts.refills++;
	else if (r->env.msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC)
		request_counts.large_allocs++;
}

int request_done(request_t *r, const Heapd__Envelope *reply, int *fatal)
{
	*fatal = 0;
	if (reply->msg_case == r->want) {
		if (r->want == HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY)
			atomic_store(&proc_g.large_received, reply->large_alloc_reply->span + 1);
		return 0;
	}
	if (reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
		int code = reply->error ? reply->error->code : 0;
		*fatal = reply->error && reply->error->fatal;
		return code > 0 ? -code : -EPROTO;
	}
	*fatal = 1;
	return -EPROTO;
}
