// SPDX-License-Identifier: MIT
/*
 * session.c - one client connection: Hello, then requests, as the header
 * comment of proto/heap.proto lays down.
 *
 * Entry points: session_new, session_handle_frame, session_fail,
 * session_free. Each handle_* function answers one request; client errors go
 * through session_fail(), which queues an Error, logs one line and marks the session
 * failed so that the caller closes it. Nothing a client sends is trusted:
 * every span id is bounded by npages_grown and checked for state and owner
 * before use, and sizes are checked for overflow before any arithmetic.
 *
 * Threads: event-loop thread only. Locks are taken by the modules called.
 */
#include "session.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "large.h"
#include "log.h"
#include "stats.h"
#include "wire.h"

#define ENOMEM_LOG_INTERVAL_NS 1000000000ULL

session_t *session_new(daemon_t *d, pid_t pid, uid_t uid, gid_t gid, struct evbuffer *out)
{
	session_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->d = d;
	s->id = d->next_session_id++;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->slot = HEAPD_NIL;
	s->out = out;
	s->next = d->sessions;
	if (d->sessions)
		d->sessions->prev = s;
	d->sessions = s;
	d->nsessions++;
	log_msg("client %u (pid %d uid %u) connected", s->id, (int)pid, (unsigned)uid);
	return s;
}

void session_free(session_t *s, int keep_slot)
{
	daemon_t *d = s->d;

	if (s->prev)
		s->prev->next = s->next;
	else
		d->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	d->nsessions--;

	if (s->slot != HEAPD_NIL) {
		d->nclients--;
		if (keep_slot) {
			d->clients.slots[s->slot].session = NULL;
			log_msg("client %u (pid %d) disconnected; slot %u kept for the next daemon", s->id,
			        (int)s->pid, s->slot);
		} else {
			sweep_result_t res = { 0 };
			daemon_release_slot(d, s->slot, &res);
			log_msg("client %u (pid %d) disconnected; %llu spans taken back", s->id, (int)s->pid,
			        (unsigned long long)res.spans);
		}
	} else {
		log_msg("client %u (pid %d) disconnected", s->id, (int)s->pid);
	}
	free(s);
}

/* ---- replies ---- */

static int reply(session_t *s, const Heapd__Envelope *env)
{
	size_t n = wire_frame_size(env);
	struct evbuffer_iovec v;

	if (!s->out)
		return 0;
	if (evbuffer_reserve_space(s->out, (ev_ssize_t)n, &v, 1) < 1 || v.iov_len < n)
		return -ENOMEM;
	wire_frame_pack(env, v.iov_base);
	v.iov_len = n;
	return evbuffer_commit_space(s->out, &v, 1) == 0 ? 0 : -ENOMEM;
}

static void reply_error(session_t *s, int code, const char *msg)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Error err = HEAPD__ERROR__INIT;
	err.code = code;
	err.message = (char *)msg;
	env.msg_case = HEAPD__ENVELOPE__MSG_ERROR;
	env.error = &err;
	reply(s, &env);
}

static int vfail(session_t *s, int code, const char *fmt, va_list ap)
{
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_msg("client %u (pid %d): error: %s; closing", s->id, (int)s->pid, msg);
	reply_error(s, code, msg);
	s->failed = 1;
	return -1;
}

int session_fail(session_t *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(s, code, fmt, ap);
	va_end(ap);
	return -1;
}

/* Out of memory for this client: an Error, and the connection stays. */
static int enomem(session_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int enomem(session_t *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	uint64_t now = pageheap_now();
	if (now - s->last_enomem_log >= ENOMEM_LOG_INTERVAL_NS) {
		s->last_enomem_log = now;
		log_msg("client %u (pid %d): %s", s->id, (int)s->pid, msg);
	}
	reply_error(s, ENOMEM, msg);
	return 0;
}

static int reply_ok(session_t *s, uint64_t value)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Ok ok = HEAPD__OK__INIT;
	ok.value = value;
	env.msg_case = HEAPD__ENVELOPE__MSG_OK;
	env.ok = &ok;
	return reply(s, &env) == 0 ? 0 : session_fail(s, ENOMEM, "out of memory for the reply");
}

/* ---- Hello ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * A reconnect after a daemon restart: re-adopt prev_slot if it is this
 * process's and every listed span is owned by it. Returns the slot or
 * HEAPD_NIL; a slot that is ours but does not match is freed.
 */
static uint32_t try_readopt(session_t *s, const Heapd__Hello *h)
{
	daemon_t *d = s->d;
	clients_t *cl = &d->clients;
	uint32_t ps = h->prev_slot - 1;
	sweep_result_t res = { 0 };

	if (ps >= cl->nslots || d->seg.clients[ps].pid != (uint32_t)s->pid ||
	    d->seg.clients[ps].token != h->prev_token || cl->slots[ps].session)
		return HEAPD_NIL;
	/* The slot is ours: a large object whose reply we never got is freed. */
	if (cl->slots[ps].pending_large)
		large_settle(&d->central, cl, ps, h->large_received == cl->slots[ps].pending_large);

	uint32_t *held = NULL;
	int ok = 1;
	if (h->n_held_spans) {
		held = malloc(h->n_held_spans * sizeof(uint32_t));
		if (!held)
			ok = 0;
		else
			memcpy(held, h->held_spans, h->n_held_spans * sizeof(uint32_t));
	}
	if (held)
		qsort(held, h->n_held_spans, sizeof(uint32_t), cmp_u32);
	for (size_t i = 0; ok && i < h->n_held_spans; i++)
		if ((i > 0 && held[i] == held[i - 1]) || !clients_owns(cl, ps, held[i]))
			ok = 0;
	if (!ok) {
		free(held);
		daemon_release_slot(d, ps, &res);
		log_msg("client %u (pid %d): slot %u does not match the spans it lists; "
		        "%llu spans taken back, new slot follows",
		        s->id, (int)s->pid, ps, (unsigned long long)res.spans);
		return HEAPD_NIL;
	}
	/* Spans the slot owns that the client does not list: it never got them or let them go. */
	slot_t *sl = &cl->slots[ps];
	for (uint32_t id = sl->spans.head; id != HEAPD_NIL;) {
		uint32_t next = d->seg.spans[id].next;
		if (!held || !bsearch(&id, held, h->n_held_spans, sizeof(uint32_t), cmp_u32))
			daemon_take_back(d, ps, id, &res);
		id = next;
	}
	free(held);
	log_msg("client %u (pid %d): re-adopted slot %u with %u spans (%llu taken back)", s->id,
	        (int)s->pid, ps, sl->spans.count, (unsigned long long)res.spans);
	return ps;
}

static int handle_hello(session_t *s, const Heapd__Hello *h)
{
	daemon_t *d = s->d;
	shm_header_t *hdr = d->seg.hdr;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__HelloReply r = HEAPD__HELLO_REPLY__INIT;
	uint32_t slot = HEAPD_NIL;
	int rc;

	if (s->hello)
		return session_fail(s, EPROTO, "second Hello");
	if (h->version != HEAPD_PROTOCOL_VERSION)
		return session_fail(s, EPROTO, "protocol version %u, this daemon speaks %u", h->version,
		            HEAPD_PROTOCOL_VERSION);
	r.version = HEAPD_PROTOCOL_VERSION;
	r.arena_id = hdr->arena_id;
	r.file_size = hdr->file_size;
	r.base_hint = hdr->base_hint;
	r.generation = hdr->generation;
	r.page_size = hdr->page_size;
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO_REPLY;
	env.hello_reply = &r;

	if (h->control) {
		s->control = 1;
		s->hello = 1;
		r.slot = HEAPD_NIL;
		if (reply(s, &env) < 0)
			return session_fail(s, ENOMEM, "out of memory for the reply");
		return 0;
	}

	if (s->pid <= 0)
		return session_fail(s, EPERM, "the peer's pid is unknown (another pid namespace?)");
	if (h->prev_slot)
		slot = try_readopt(s, h);
	if (slot == HEAPD_NIL) {
		uint64_t start_time = 0;
		if (clients_proc_start_time(s->pid, &start_time) < 0)
			return session_fail(s, ESRCH, "cannot read the start time of pid %d", (int)s->pid);
		rc = clients_alloc(&d->clients, s->pid, s->uid, start_time, &slot);
		if (rc < 0)
			return session_fail(s, EUSERS, "too many clients (%u slots in use)", d->clients.inuse);
	}
	d->clients.slots[slot].session = s;
	s->slot = slot;
	s->hello = 1;
	d->nclients++;
	r.slot = slot;
	r.token = d->seg.clients[slot].token;

	size_t n = wire_frame_size(&env);
	uint8_t *frame = malloc(n);
	if (!frame)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	wire_frame_pack(&env, frame);
	if (s->send_fd)
		rc = s->send_fd(s->io, frame, n, d->seg.fd);
	else
		rc = s->out ? evbuffer_add(s->out, frame, n) : 0;
	free(frame);
	if (rc < 0)
		return session_fail(s, -rc > 0 ? -rc : EIO, "cannot pass the arena descriptor");
	log_msg("client %u (pid %d): slot %u", s->id, (int)s->pid, slot);
	return 0;
}

/* ---- allocation ---- */

/* Why span is not one the session may hand back, or NULL. */
static const char *not_releasable(session_t *s, uint32_t span, int *code)
{
	segment_t *seg = &s->d->seg;
	*code = EINVAL;
	if (span >= seg->hdr->npages_grown)
		return "is out of range";
	const shm_span_t *sp = &seg->spans[span];
	if (sp->start != span || sp->state == SPAN_DEAD)
		return "does not start a span";
	if (sp->state != SPAN_SMALL)
		return "is not a small span";
	*code = EPERM;
	if (sp->owner != s->slot + 1)
		return sp->owner ? "belongs to another client" : "is not yours";
	if (!clients_owns(&s->d->clients, s->slot, span))
		return "is not on your list";
	return NULL;
}

/* Take back the spans a request (req, for errors) hands back. 0, or -1 after session_fail. */
static int take_back_released(session_t *s, const char *req, const uint32_t *spans, size_t n)
{
	sweep_result_t res = { 0 };
	int code;

	for (size_t i = 0; i < n; i++) {
		const char *why = not_releasable(s, spans[i], &code);
		if (why)
			return session_fail(s, code, "%s: released span %u %s", req, spans[i], why);
		daemon_take_back(s->d, s->slot, spans[i], &res);
	}
	return 0;
}

static int handle_refill(session_t *s, const Heapd__Refill *rf)
{
	daemon_t *d = s->d;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__RefillReply r = HEAPD__REFILL_REPLY__INIT;
	Heapd__SpanGrant grants[HEAPD_MAX_REFILL_SPANS], *gp[HEAPD_MAX_REFILL_SPANS];
	int quota_hit = 0;

	if (rf->count > HEAPD_MAX_REFILL_SPANS)
		return session_fail(s, EINVAL, "refill of %u spans; at most %u", rf->count,
		            HEAPD_MAX_REFILL_SPANS);
	if (rf->count > 0 && (rf->sizeclass == 0 || rf->sizeclass >= SIZECLASS_COUNT))
		return session_fail(s, EINVAL, "refill of size class %u; classes are 1..%u", rf->sizeclass,
		            SIZECLASS_COUNT - 1);
	if (take_back_released(s, "refill", rf->release, rf->n_release) < 0)
		return -1;

	size_t n = 0;
	uint32_t npages = rf->count ? sizeclass_npages[rf->sizeclass] : 0;
	while (n < rf->count) {
		uint32_t span;
		int needzero;
		if (d->quota_pages && clients_held_pages(&d->clients, s->slot) + npages > d->quota_pages) {
			quota_hit = 1;
			break;
		}
		if (daemon_get_span(d, rf->sizeclass, &span, &needzero) < 0)
			break;
		clients_own(&d->clients, s->slot, span);
		heapd__span_grant__init(&grants[n]);
		grants[n].span = span;
		grants[n].needzero = needzero != 0;
		gp[n] = &grants[n];
		n++;
	}
	if (rf->count > 0 && n == 0) {
		if (quota_hit)
			return enomem(s, "client quota of %llu bytes reached",
			              (unsigned long long)d->cfg.client_quota);
		return enomem(s, "arena is full: no span of class %u (%u pages)", rf->sizeclass, npages);
	}
	r.n_spans = n;
	r.spans = gp;
	env.msg_case = HEAPD__ENVELOPE__MSG_REFILL_REPLY;
	env.refill_reply = &r;
	if (reply(s, &env) < 0)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	return 0;
}

static int handle_large_alloc(session_t *s, const Heapd__LargeAlloc *la)
{
	daemon_t *d = s->d;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__LargeAllocReply r = HEAPD__LARGE_ALLOC_REPLY__INIT;
	uint64_t npages = large_pages_for(la->size);
	uint32_t span;
	int zeroed = 0, rc;

	if (la->size == 0 || npages == 0 || npages > d->seg.npages_max)
		return session_fail(s, EINVAL, "large alloc of %llu bytes: the arena holds %llu",
		            (unsigned long long)la->size,
		            (unsigned long long)((uint64_t)d->seg.npages_max << HEAPD_PAGE_SHIFT));
	if (la->align & (la->align - 1))
		return session_fail(s, EINVAL, "large alloc alignment %llu is not a power of two",
		            (unsigned long long)la->align);
	/* first, so that the object can have their pages */
	if (take_back_released(s, "large alloc", la->release, la->n_release) < 0)
		return -1;
	if (__atomic_load_n(&d->seg.hdr->pages_free, __ATOMIC_RELAXED) < npages)
		sweeper_reclaim(&d->sweeper, npages);
	rc = large_alloc(&d->central, &d->clients, s->slot, la->size, la->align, la->zero,
	                 d->quota_pages, &span, &zeroed);
	if (rc == -EINVAL)
		return session_fail(s, EINVAL, "large alloc of %llu bytes aligned to %llu cannot fit the arena",
		            (unsigned long long)la->size, (unsigned long long)la->align);
	if (rc == -EDQUOT)
		return enomem(s, "client quota of %llu bytes reached",
		              (unsigned long long)d->cfg.client_quota);
	if (rc < 0)
		return enomem(s, "arena is full: no room for %llu pages", (unsigned long long)npages);
	sweeper_note_alloc(&d->sweeper, npages << HEAPD_PAGE_SHIFT);
	r.span = span;
	r.zeroed = zeroed != 0;
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY;
	env.large_alloc_reply = &r;
	if (reply(s, &env) < 0)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	return 0;
}

static int handle_large_free(session_t *s, const Heapd__LargeFree *lf)
{
	uint32_t npages;
	int rc = large_free(&s->d->central, &s->d->clients, lf->span, &npages);
	if (rc == -EINVAL)
		return session_fail(s, EINVAL, "large free: span %u is not a large object", lf->span);
	if (rc < 0)
		return session_fail(s, EINVAL, "large free: span %u is not marked free", lf->span);
	return 0; /* fire and forget: no reply */
}

/* ---- heapctl requests ---- */

static int handle_stats(session_t *s)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__StatsReply r;
	Heapd__ClassStats cls[SIZECLASS_COUNT], *ptrs[SIZECLASS_COUNT];
	stats_t *st = malloc(sizeof(*st));

	if (!st)
		return session_fail(s, ENOMEM, "out of memory for stats");
	stats_collect(s->d, st);
	stats_fill_reply(st, &r, cls, ptrs);
	free(st);
	env.msg_case = HEAPD__ENVELOPE__MSG_STATS_REPLY;
	env.stats_reply = &r;
	if (reply(s, &env) < 0)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	return 0;
}

static void client_info(daemon_t *d, Heapd__ClientInfo *ci, uint32_t slot, const session_t *s)
{
	heapd__client_info__init(ci);
	if (s) {
		ci->pid = (uint32_t)s->pid;
		ci->uid = (uint32_t)s->uid;
		ci->requests = s->requests;
		ci->control = s->control != 0;
	} else {
		ci->pid = d->seg.clients[slot].pid;
		ci->uid = d->seg.clients[slot].uid;
	}
	ci->slot = slot;
	if (slot != HEAPD_NIL) {
		ci->spans_cached = d->clients.slots[slot].spans.count;
		ci->pages_held = clients_held_pages(&d->clients, slot);
	}
}

static int handle_clients(session_t *s)
{
	daemon_t *d = s->d;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ClientsReply r = HEAPD__CLIENTS_REPLY__INIT;
	size_t max = d->nsessions + d->clients.inuse, n = 0;
	Heapd__ClientInfo *info = calloc(max ? max : 1, sizeof(*info));
	Heapd__ClientInfo **ptrs = calloc(max ? max : 1, sizeof(*ptrs));
	int rc = 0;

	if (!info || !ptrs) {
		rc = session_fail(s, ENOMEM, "out of memory for the client list");
		goto out;
	}
	for (const session_t *o = d->sessions; o && n < max; o = o->next) {
		if (!o->hello)
			continue; /* not a client until it says Hello */
		client_info(d, &info[n], o->slot, o);
		ptrs[n] = &info[n];
		n++;
	}
	/* Slots held for a client that has not reconnected since a restart. */
	for (uint32_t i = 0; i < d->clients.nslots && n < max; i++) {
		if (d->seg.clients[i].pid == 0 || d->clients.slots[i].session)
			continue;
		client_info(d, &info[n], i, NULL);
		ptrs[n] = &info[n];
		n++;
	}
	r.n_clients = n;
	r.clients = ptrs;
	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS_REPLY;
	env.clients_reply = &r;
	if (reply(s, &env) < 0)
		rc = session_fail(s, ENOMEM, "out of memory for the reply");
out:
	free(info);
	free(ptrs);
	return rc;
}

static int handle_check(session_t *s)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__CheckReply r = HEAPD__CHECK_REPLY__INIT;
	check_report_t *rep = malloc(sizeof(*rep));
	char *lines[CHECK_MAX_PROBLEMS];
	int rc = 0;

	if (!rep)
		return session_fail(s, ENOMEM, "out of memory for the check");
	daemon_check(s->d, rep);
	r.nproblems = rep->nproblems;
	r.n_problems = rep->nproblems < CHECK_MAX_PROBLEMS ? rep->nproblems : CHECK_MAX_PROBLEMS;
	for (size_t i = 0; i < r.n_problems; i++)
		lines[i] = rep->problems[i];
	r.problems = lines;
	if (rep->nproblems)
		log_msg("check found %zu problems; the first: %s", rep->nproblems, rep->problems[0]);
	env.msg_case = HEAPD__ENVELOPE__MSG_CHECK_REPLY;
	env.check_reply = &r;
	if (reply(s, &env) < 0)
		rc = session_fail(s, ENOMEM, "out of memory for the reply");
	free(rep);
	return rc;
}

/* ---- dispatch ---- */

static const char *msg_name(Heapd__Envelope__MsgCase c)
{
	const ProtobufCFieldDescriptor *f =
	        protobuf_c_message_descriptor_get_field(&heapd__envelope__descriptor, (unsigned)c);
	return f ? f->name : "unknown";
}

int session_handle_frame(session_t *s, const uint8_t *payload, size_t len)
{
	daemon_t *d = s->d;
	Heapd__Envelope *env;
	int rc = 0;

	if (s->failed)
		return -1;
	/* A client sends only after reading its last reply: a large object it asked for is its own. */
	if (s->slot != HEAPD_NIL && d->clients.slots[s->slot].pending_large)
		large_settle(&d->central, &d->clients, s->slot, 1);
	env = wire_unpack(payload, len);
	if (!env)
		return session_fail(s, EPROTO, "malformed or unknown message (%zu bytes)", len);
	if (!s->hello && env->msg_case != HEAPD__ENVELOPE__MSG_HELLO) {
		rc = session_fail(s, EPROTO, "%s before Hello", msg_name(env->msg_case));
		goto out;
	}
	switch (env->msg_case) {
	case HEAPD__ENVELOPE__MSG_HELLO:
		rc = handle_hello(s, env->hello);
		break;
	case HEAPD__ENVELOPE__MSG_REFILL:
	case HEAPD__ENVELOPE__MSG_LARGE_ALLOC:
	case HEAPD__ENVELOPE__MSG_LARGE_FREE:
		if (s->control) {
			rc = session_fail(s, EPERM, "%s on a control connection", msg_name(env->msg_case));
			break;
		}
		if (env->msg_case == HEAPD__ENVELOPE__MSG_REFILL)
			rc = handle_refill(s, env->refill);
		else if (env->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC)
			rc = handle_large_alloc(s, env->large_alloc);
		else
			rc = handle_large_free(s, env->large_free);
		break;
	case HEAPD__ENVELOPE__MSG_STATS:
		rc = handle_stats(s);
		break;
	case HEAPD__ENVELOPE__MSG_CLIENTS:
		rc = handle_clients(s);
		break;
	case HEAPD__ENVELOPE__MSG_SWEEP: {
		sweep_result_t res;
		sweeper_cycle(&d->sweeper, &res);
		daemon_reap_held(d);
		rc = reply_ok(s, res.spans);
		break;
	}
	case HEAPD__ENVELOPE__MSG_SCAVENGE:
		rc = reply_ok(s, sweeper_scavenge(&d->sweeper, UINT64_MAX));
		break;
	case HEAPD__ENVELOPE__MSG_CHECK:
		rc = handle_check(s);
		break;
	default:
		rc = session_fail(s, EPROTO, "unexpected %s message", msg_name(env->msg_case));
		break;
	}
	if (rc == 0)
		s->requests++;
out:
	wire_free(env);
	return rc;
}
