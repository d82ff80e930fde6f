// SPDX-License-Identifier: MIT
/*
 * session.c - one client connection: Hello, then requests, as the header
 * comment of proto/heap.proto lays down.
 *
 * Entry points: session_new, session_handle_frame, session_fail,
 * session_orphan, session_poll_waiting, session_free. Each handle_*
 * function parses one request, calls the daemon's policy (daemon.h) and
 * answers; client errors go through session_fail(), which queues a fatal
 * Error, logs one line and marks the session failed so that the caller
 * closes it. Nothing a client sends is trusted: sizes are checked before any
 * arithmetic, and the daemon checks every span id.
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

#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "roots.h"
#include "stats.h"
#include "wire.h"

#define ENOMEM_LOG_INTERVAL_NS 1000000000ULL

session_t *session_new(daemon_t *d, int sock, pid_t pid, uid_t uid, gid_t gid,
                       struct evbuffer *out)
{
	session_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->d = d;
	s->id = d->next_session_id++;
	s->sock = sock;
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

void session_free(session_t *s)
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
		daemon_detach(d, s->slot);
		log_msg("client %u (pid %d) disconnected; slot %u held for its process", s->id,
		        (int)s->pid, s->slot);
		daemon_debug_check(d, "a disconnect");
	} else {
		log_msg("client %u (pid %d) disconnected", s->id, (int)s->pid);
	}
	profile_snap_put(s->prof);
	free(s);
}

void session_orphan(session_t *s)
{
	s->slot = HEAPD_NIL;
	s->failed = 1;
	s->wait = SESSION_WAIT_NONE;
	if (s->end)
		s->end(s->io);
}

/* ---- replies ---- */

static int reply(session_t *s, Heapd__Envelope *env)
{
	struct evbuffer_iovec v;

	env->seq = s->seq;
	size_t n = wire_frame_size(env);
	if (!s->out)
		return 0;
	if (evbuffer_reserve_space(s->out, (ev_ssize_t)n, &v, 1) < 1 || v.iov_len < n)
		return -ENOMEM;
	wire_frame_pack(env, v.iov_base);
	v.iov_len = n;
	return evbuffer_commit_space(s->out, &v, 1) == 0 ? 0 : -ENOMEM;
}

static void reply_error(session_t *s, int code, const char *msg, int fatal)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Error err = HEAPD__ERROR__INIT;
	err.code = code;
	err.message = (char *)msg;
	err.fatal = fatal != 0;
	env.msg_case = HEAPD__ENVELOPE__MSG_ERROR;
	env.error = &err;
	reply(s, &env);
}

static int vfail(session_t *s, int code, const char *fmt, va_list ap)
{
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_msg("client %u (pid %d): error: %s; closing", s->id, (int)s->pid, msg);
	reply_error(s, code, msg, 1);
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

/* The arena is full or a quota reached: an Error, and the connection stays. */
static int soft_error(session_t *s, int code, const char *msg)
{
	uint64_t now = heapd_now_ns();
	if (now - s->last_enomem_log >= ENOMEM_LOG_INTERVAL_NS) {
		s->last_enomem_log = now;
		log_msg("client %u (pid %d): %s", s->id, (int)s->pid, msg);
	}
	reply_error(s, code, msg, 0);
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

static int handle_hello(session_t *s, const Heapd__Hello *h)
{
	daemon_t *d = s->d;
	shm_header_t *hdr = d->seg.hdr;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__HelloReply r = HEAPD__HELLO_REPLY__INIT;
	const char *why = "";
	uint32_t slot;
	proc_t p;
	int rc;

	if (s->hello)
		return session_fail(s, EPROTO, "second Hello");
	if (h->version != HEAPD_PROTOCOL_VERSION)
		return session_fail(s, EPROTO, "protocol version %u, this daemon speaks %u", h->version,
		                    HEAPD_PROTOCOL_VERSION);
	r.version = HEAPD_PROTOCOL_VERSION;
	r.arena_id = hdr->arena_id;
	r.map_size = hdr->map_size;
	r.base_hint = hdr->base_hint;
	r.generation = hdr->generation;
	r.page_size = hdr->page_size;
	r.profile_rate = d->cfg.profile_rate;
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
	if (proc_from_peer(s->sock, s->pid, &p) < 0)
		return session_fail(s, ESRCH, "process %d has exited", (int)s->pid);
	rc = daemon_attach(d, s, &p, s->uid, h->prev_slot, h->held_spans, h->n_held_spans,
	                   h->large_received, &slot, &why);
	proc_close(&p); /* unless the slot took it over */
	if (rc < 0)
		return session_fail(s, -rc, "no client slot: %s", why);
	s->slot = slot;
	s->hello = 1;
	r.slot = slot;

	env.seq = s->seq;
	size_t n = wire_frame_size(&env);
	uint8_t *frame = malloc(n);
	if (!frame)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	wire_frame_pack(&env, frame);
	/* Clients map meta read-only and data read-write (shm/layout.h). */
	int fds[2] = { d->seg.client_meta_fd, d->seg.client_data_fd };
	if (s->send_fds)
		rc = s->send_fds(s->io, frame, n, fds, 2);
	else
		rc = s->out ? evbuffer_add(s->out, frame, n) : 0;
	free(frame);
	if (rc < 0)
		return session_fail(s, -rc > 0 ? -rc : EIO, "cannot pass the arena descriptors");
	log_msg("client %u (pid %d): slot %u", s->id, (int)s->pid, slot);
	return 0;
}

/* ---- allocation ---- */

/* Take back the spans a request (req, for errors) hands back. 0, or -1 after session_fail. */
static int release_listed(session_t *s, const char *req, const uint32_t *spans, size_t n)
{
	const char *why;
	uint32_t bad;
	int rc = daemon_release(s->d, s->slot, spans, n, &bad, &why);
	if (rc < 0)
		return session_fail(s, -rc, "%s: released span %u %s", req, bad, why);
	return 0;
}

/* A Refill's other classes (Refill.also): 0, or -1 after session_fail. */
static int check_also(session_t *s, const Heapd__Refill *rf)
{
	if (rf->n_also > HEAPD_MAX_REFILL_ALSO)
		return session_fail(s, EINVAL, "refill names %zu other classes; at most %u", rf->n_also,
		                    HEAPD_MAX_REFILL_ALSO);
	if (rf->n_also > 0 && rf->count == 0)
		return session_fail(s, EINVAL, "refill names other classes but asks for no span");
	for (size_t i = 0; i < rf->n_also; i++) {
		uint32_t k = rf->also[i];
		if (k == 0 || k >= SIZECLASS_COUNT || k == rf->sizeclass)
			return session_fail(s, EINVAL, "refill names other class %u; classes are 1..%u, not %u",
			                    k, SIZECLASS_COUNT - 1, rf->sizeclass);
		for (size_t j = 0; j < i; j++)
			if (rf->also[j] == k)
				return session_fail(s, EINVAL, "refill names other class %u twice", k);
	}
	return 0;
}

static int handle_refill(session_t *s, const Heapd__Refill *rf)
{
	enum { MAX_GRANTS = HEAPD_MAX_REFILL_SPANS + HEAPD_MAX_REFILL_ALSO };
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__RefillReply r = HEAPD__REFILL_REPLY__INIT;
	Heapd__SpanGrant grants[MAX_GRANTS], *gp[MAX_GRANTS];
	uint32_t spans[MAX_GRANTS], n = 0;
	int needzero[MAX_GRANTS];
	char why[160];

	if (rf->count > HEAPD_MAX_REFILL_SPANS)
		return session_fail(s, EINVAL, "refill of %u spans; at most %u", rf->count,
		                    HEAPD_MAX_REFILL_SPANS);
	if (rf->count > 0 && (rf->sizeclass == 0 || rf->sizeclass >= SIZECLASS_COUNT))
		return session_fail(s, EINVAL, "refill of size class %u; classes are 1..%u",
		                    rf->sizeclass, SIZECLASS_COUNT - 1);
	if (check_also(s, rf) < 0)
		return -1;
	if (release_listed(s, "refill", rf->release, rf->n_release) < 0)
		return -1;
	if (rf->count > 0) {
		int rc = daemon_grant_spans(s->d, s->slot, rf->sizeclass, rf->count, spans, needzero, &n,
		                            why, sizeof(why));
		if (rc < 0)
			return soft_error(s, -rc, why);
	}
	/* The other classes are extras: the first that finds no room ends them, and no error says so. */
	for (size_t i = 0; i < rf->n_also; i++, n++)
		if (daemon_grant_extra(s->d, s->slot, rf->also[i], &spans[n], &needzero[n]) < 0)
			break;
	for (uint32_t i = 0; i < n; i++) {
		heapd__span_grant__init(&grants[i]);
		grants[i].span = spans[i];
		grants[i].needzero = needzero[i] != 0;
		gp[i] = &grants[i];
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
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__LargeAllocReply r = HEAPD__LARGE_ALLOC_REPLY__INIT;
	uint32_t span, gen;
	int zeroed = 0, rc;
	char why[160];

	/* first, so that the object can have their pages */
	if (release_listed(s, "large alloc", la->release, la->n_release) < 0)
		return -1;
	rc = daemon_large_alloc(s->d, s->slot, la->size, la->align, la->zero, &span, &zeroed, &gen,
	                        why, sizeof(why));
	if (rc == -EINVAL)
		return session_fail(s, EINVAL, "%s", why);
	if (rc < 0)
		return soft_error(s, -rc, why);
	r.span = span;
	r.zeroed = zeroed != 0;
	r.gen = gen;
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY;
	env.large_alloc_reply = &r;
	if (reply(s, &env) < 0)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	return 0;
}

static int handle_large_free(session_t *s, const Heapd__LargeFree *lf)
{
	int rc = daemon_large_free(s->d, lf->span, lf->gen);
	if (rc < 0 && rc != -EBUSY) { /* EBUSY: a root names it; it is freed with its last root */
		/* Late (the sweeper freed it), repeated, or wrong: nothing to do, and no reply. */
		uint64_t now = heapd_now_ns();
		if (now - s->last_ignored_log >= ENOMEM_LOG_INTERVAL_NS) {
			s->last_ignored_log = now;
			log_msg("client %u (pid %d): large free of span %u generation %u ignored: %s",
			        s->id, (int)s->pid, lf->span, lf->gen,
			        rc == -ESTALE ? "no such object any more" : "its free bit is not set");
		}
	}
	return 0;
}

static int handle_bye(session_t *s)
{
	sweep_result_t res = { 0 };
	uint32_t slot = s->slot;

	s->slot = HEAPD_NIL;
	daemon_bye(s->d, slot, &res);
	return reply_ok(s, res.spans);
}

/* ---- roots ---- */

static int root_change(session_t *s, const rootdir_req_t *q, const char *req)
{
	char why[200], msg[256];
	uint64_t id;
	int rc = rootdir_change(&s->d->roots, q, &id, why, sizeof(why));
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "%s refused: %s", req, why);
		return soft_error(s, -rc, msg);
	}
	return reply_ok(s, id);
}

static int handle_root_set(session_t *s, const Heapd__RootSet *rs)
{
	rootdir_req_t q = {
		.name = rs->name.data, .len = rs->name.len, .off = rs->off, .token = rs->token,
		.slot = s->slot, .pid = (uint32_t)s->pid, .uid = (uint32_t)s->uid,
	};
	return root_change(s, &q, "root set");
}

static int handle_root_cas(session_t *s, const Heapd__RootCas *rc)
{
	rootdir_req_t q = {
		.name = rc->name.data, .len = rc->name.len, .off = rc->desired, .cas = 1,
		.expected = rc->expected, .expected_id = rc->expected_id, .token = rc->token,
		.slot = s->slot, .pid = (uint32_t)s->pid, .uid = (uint32_t)s->uid,
	};
	return root_change(s, &q, "root cas");
}

/* Up to SESSION_ROOTS_PER_REPLY bound names from the cursor on, those that start with the prefix. */
static int handle_roots(session_t *s, const Heapd__RootsRequest *rq)
{
	const segment_t *seg = &s->d->seg;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__RootsReply r = HEAPD__ROOTS_REPLY__INIT;
	Heapd__RootInfo *info = calloc(SESSION_ROOTS_PER_REPLY, sizeof(*info));
	Heapd__RootInfo **ptrs = calloc(SESSION_ROOTS_PER_REPLY, sizeof(*ptrs));
	uint8_t(*names)[ROOTS_NAME_WORDS * 8] = malloc(SESSION_ROOTS_PER_REPLY * sizeof(*names));
	roots_walk_t w;
	uint32_t e;
	int rc = 0;

	if (!info || !ptrs || !names) {
		rc = session_fail(s, ENOMEM, "out of memory for the root list");
		goto out;
	}
	roots_walk_start(&w, seg, rq->cursor);
	while (roots_walk_next(&w, &e)) {
		const shm_root_t *en = &seg->roots[e];
		if (r.n_roots == SESSION_ROOTS_PER_REPLY) {
			r.next = e; /* the rest from here */
			break;
		}
		uint8_t *name = names[r.n_roots];
		uint32_t len = roots_name(seg, e, name);
		if (rq->prefix.len > len ||
		    (rq->prefix.len && memcmp(name, rq->prefix.data, rq->prefix.len) != 0))
			continue;
		unsigned cur = roots_cur(en);
		const shm_root_info_t *who = roots_info(seg, e, cur);
		Heapd__RootInfo *ri = &info[r.n_roots];
		heapd__root_info__init(ri);
		ri->name.data = name;
		ri->name.len = len;
		ri->offset = en->off[cur];
		ri->size = who->size;
		ri->pid = who->pid;
		ri->uid = who->uid;
		ri->slot = who->slot;
		ri->time_ns = who->time_ns;
		ptrs[r.n_roots++] = ri;
	}
	r.roots = ptrs;
	env.msg_case = HEAPD__ENVELOPE__MSG_ROOTS_REPLY;
	env.roots_reply = &r;
	if (reply(s, &env) < 0)
		rc = session_fail(s, ENOMEM, "out of memory for the reply");
out:
	free(info);
	free(ptrs);
	free(names);
	return rc;
}

/* ---- heapctl requests ---- */

static int reply_stats(session_t *s, const stats_t *st)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__StatsReply r;
	Heapd__ClassStats cls[SIZECLASS_COUNT], *ptrs[SIZECLASS_COUNT];

	stats_fill_reply(st, &r, cls, ptrs);
	env.msg_case = HEAPD__ENVELOPE__MSG_STATS_REPLY;
	env.stats_reply = &r;
	if (reply(s, &env) < 0)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	return 0;
}

/* The live bytes of the process in slot (attribution counted by profile_attribute). */
static void client_bytes(daemon_t *d, Heapd__ClientInfo *ci, uint32_t slot, const profile_attr_t *a)
{
	const shm_client_t *c = &d->seg.clients[slot];
	if (!a || slot >= a->nslots || c->pid == 0)
		return;
	ci->live_large_bytes = a->large_bytes[slot];
	ci->live_small_bytes = a->small_bytes[slot];
	ci->start_time = c->start_time;
	const profile_attr_proc_t *e = profile_attr_find(a, c->pid, c->start_time);
	if (e) {
		ci->profiled = 1;
		ci->sampled_live_bytes = (uint64_t)(e->bytes + 0.5);
		ci->sampled_live_objects = (uint64_t)(e->objects + 0.5);
	}
}

static void client_info(daemon_t *d, Heapd__ClientInfo *ci, uint32_t slot, const session_t *s,
                        const profile_attr_t *a)
{
	heapd__client_info__init(ci);
	if (s) {
		ci->pid = (uint32_t)s->pid;
		ci->uid = (uint32_t)s->uid;
		ci->requests = s->requests;
		ci->control = s->control != 0;
		ci->connected = 1;
	} else {
		ci->pid = d->seg.clients[slot].pid;
		ci->uid = d->seg.clients[slot].uid;
	}
	ci->slot = slot;
	if (slot != HEAPD_NIL) {
		ci->spans_cached = d->clients.slots[slot].spans.count;
		ci->pages_held = quota_slot_pages(&d->quota, slot);
		client_bytes(d, ci, slot, a);
	}
}

/* An exited process that still has live samples: its estimate is all there is. */
static void exited_info(Heapd__ClientInfo *ci, const profile_attr_proc_t *e)
{
	heapd__client_info__init(ci);
	ci->pid = e->pid;
	ci->uid = e->uid;
	ci->slot = e->slot;
	ci->start_time = e->start_time;
	ci->exited = 1;
	ci->profiled = 1;
	ci->sampled_live_bytes = (uint64_t)(e->bytes + 0.5);
	ci->sampled_live_objects = (uint64_t)(e->objects + 0.5);
}

static int handle_clients(session_t *s, const profile_attr_t *a)
{
	daemon_t *d = s->d;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ClientsReply r = HEAPD__CLIENTS_REPLY__INIT;
	size_t max = d->nsessions + d->clients.inuse + (a ? a->nprocs : 0), n = 0;
	Heapd__ClientInfo *info = calloc(max ? max : 1, sizeof(*info));
	Heapd__ClientInfo **ptrs = calloc(max ? max : 1, sizeof(*ptrs));
	int rc = 0;

	if (!info || !ptrs) {
		rc = session_fail(s, ENOMEM, "out of memory for the client list");
		goto out;
	}
	for (const session_t *o = d->sessions; o && n < max; o = o->next) {
		if (!o->hello || o->failed)
			continue; /* not a client until it says Hello */
		client_info(d, &info[n], o->slot, o, a);
		ptrs[n] = &info[n];
		n++;
	}
	/* Slots held for a process with no connection. */
	for (uint32_t i = 0; i < d->clients.nslots && n < max; i++) {
		if (d->seg.clients[i].pid == 0 || d->clients.slots[i].session)
			continue;
		client_info(d, &info[n], i, NULL, a);
		ptrs[n] = &info[n];
		n++;
	}
	/* Processes gone that left live samples behind. */
	for (size_t k = 0; a && k < a->nprocs && n < max; k++) {
		if (!a->procs[k].exited)
			continue;
		exited_info(&info[n], &a->procs[k]);
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

static int reply_check(session_t *s, const check_report_t *rep)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__CheckReply r = HEAPD__CHECK_REPLY__INIT;
	char *lines[CHECK_MAX_PROBLEMS];

	r.nproblems = rep->nproblems;
	r.ndata = rep->ndata;
	r.n_problems = rep->nproblems < CHECK_MAX_PROBLEMS ? rep->nproblems : CHECK_MAX_PROBLEMS;
	for (size_t i = 0; i < r.n_problems; i++)
		lines[i] = (char *)rep->problems[i];
	r.problems = lines;
	env.msg_case = HEAPD__ENVELOPE__MSG_CHECK_REPLY;
	env.check_reply = &r;
	if (reply(s, &env) < 0)
		return session_fail(s, ENOMEM, "out of memory for the reply");
	return 0;
}

/* The page of the connection's heap-profile snapshot that starts at cursor. */
static int reply_profile(session_t *s, uint32_t cursor)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ProfileReply r;
	void *storage = NULL;
	int rc;

	if (!s->prof)
		return session_fail(s, EINVAL, "profile cursor %u without a snapshot on this connection",
		                    cursor);
	rc = profile_page(s->prof, cursor, &r, &storage);
	if (rc == -EINVAL)
		rc = session_fail(s, EINVAL, "profile cursor %u is past the snapshot's end", cursor);
	else if (rc < 0)
		rc = session_fail(s, ENOMEM, "out of memory for a profile page");
	else {
		env.msg_case = HEAPD__ENVELOPE__MSG_PROFILE_REPLY;
		env.profile_reply = &r;
		if (reply(s, &env) < 0)
			rc = session_fail(s, ENOMEM, "out of memory for the reply");
	}
	profile_page_free(storage);
	if (r.next == 0 || rc < 0) {
		profile_snap_put(s->prof); /* all sent: the snapshot goes */
		s->prof = NULL;
	}
	return rc;
}

/* ---- requests whose reply comes later ---- */

/* Park the request being handled until session_poll_waiting can answer it. */
static int wait_for(session_t *s, int kind, uint64_t ticket)
{
	s->wait = kind;
	s->wait_ticket = ticket;
	s->wait_seq = s->seq;
	return 0;
}

/* The shared results of one poll pass (computed at most once each). */
typedef struct poll_pass {
	daemon_t *d;
	uint64_t now;
	check_report_t *check;
	stats_t *stats;
	profile_snap_t *profile;
	profile_attr_t *attr;
	int check_failed, stats_failed;
} poll_pass_t;

static void poll_pass_done(poll_pass_t *pp)
{
	free(pp->check);
	free(pp->stats);
	profile_snap_put(pp->profile);
	profile_attr_free(pp->attr);
}

static int interval_passed(uint64_t now, uint64_t last)
{
	return last == 0 || now - last >= SESSION_CONTROL_INTERVAL_NS;
}

/*
 * Answer s's waiting request if it can be: 1 if answered (or failed), 0 if
 * it waits on. from_poll: not inside s's own frame handling, so the server
 * is told to send the reply and read on.
 */
static int try_answer(session_t *s, poll_pass_t *pp, int from_poll)
{
	daemon_t *d = pp->d;
	uint64_t result;
	int rc = 0;

	s->seq = s->wait_seq;
	switch (s->wait) {
	case SESSION_WAIT_SWEEP:
	case SESSION_WAIT_SCAVENGE: {
		int kind = s->wait == SESSION_WAIT_SWEEP ? SWEEPER_JOB_SWEEP : SWEEPER_JOB_SCAVENGE;
		if (!sweeper_done(&d->sweeper, kind, s->wait_ticket, &result))
			return 0;
		if (kind == SWEEPER_JOB_SWEEP)
			daemon_reap(d, HEAPD_NIL);
		rc = reply_ok(s, result);
		break;
	}
	case SESSION_WAIT_CHECK:
		if (!pp->check) {
			if (!interval_passed(pp->now, d->last_check_ns) && s->resume)
				return 0;
			pp->check = malloc(sizeof(*pp->check));
			if (pp->check) {
				daemon_check(d, pp->check);
				d->last_check_ns = heapd_now_ns();
				if (pp->check->nproblems)
					log_msg("check found %zu problems; the first: %s", pp->check->nproblems,
					        pp->check->problems[0]);
			}
		}
		rc = pp->check ? reply_check(s, pp->check)
		               : session_fail(s, ENOMEM, "out of memory for the check");
		break;
	case SESSION_WAIT_STATS:
		if (!pp->stats) {
			if (!interval_passed(pp->now, d->last_stats_ns) && s->resume)
				return 0;
			pp->stats = malloc(sizeof(*pp->stats));
			if (pp->stats) {
				stats_collect(d, pp->stats);
				d->last_stats_ns = heapd_now_ns();
			}
		}
		rc = pp->stats ? reply_stats(s, pp->stats)
		               : session_fail(s, ENOMEM, "out of memory for stats");
		break;
	case SESSION_WAIT_PROFILE:
		if (!pp->profile) {
			if (!interval_passed(pp->now, d->last_profile_ns) && s->resume)
				return 0;
			pp->profile = profile_snapshot(d);
			d->last_profile_ns = heapd_now_ns();
		}
		if (pp->profile) {
			profile_snap_put(s->prof);
			s->prof = pp->profile;
			s->prof->refs++;
			rc = reply_profile(s, 0);
		} else {
			rc = session_fail(s, ENOMEM, "out of memory for a profile snapshot");
		}
		break;
	case SESSION_WAIT_CLIENTS:
		if (!pp->attr) {
			if (!interval_passed(pp->now, d->last_clients_ns) && s->resume)
				return 0;
			pp->attr = profile_attribute(d);
			d->last_clients_ns = heapd_now_ns();
		}
		/* without memory for the counts, the list goes without them */
		rc = handle_clients(s, pp->attr);
		break;
	default:
		return 1;
	}
	s->wait = SESSION_WAIT_NONE;
	if (rc == 0)
		s->requests++;
	if (from_poll && s->resume)
		s->resume(s->io);
	return 1;
}

uint32_t session_poll_waiting(daemon_t *d)
{
	poll_pass_t pp = { .d = d, .now = heapd_now_ns() };
	uint32_t waiting = 0;

	for (session_t *s = d->sessions, *next; s; s = next) {
		next = s->next; /* resume may end s */
		if (s->wait == SESSION_WAIT_NONE)
			continue;
		if (!try_answer(s, &pp, 1))
			waiting++;
	}
	poll_pass_done(&pp);
	return waiting;
}

/* A control request: run it now if nothing in the way, else wait. */
static int handle_control(session_t *s, int kind)
{
	daemon_t *d = s->d;
	uint64_t ticket = 0;
	poll_pass_t pp = { .d = d, .now = heapd_now_ns() };

	if (kind == SESSION_WAIT_SWEEP)
		ticket = sweeper_submit(&d->sweeper, SWEEPER_JOB_SWEEP);
	else if (kind == SESSION_WAIT_SCAVENGE)
		ticket = sweeper_submit(&d->sweeper, SWEEPER_JOB_SCAVENGE);
	wait_for(s, kind, ticket);
	/* Without a server to call back (tests, fuzzing) everything is answered at once. */
	try_answer(s, &pp, 0);
	poll_pass_done(&pp);
	return s->failed ? -1 : 0;
}

/* ---- dispatch ---- */

static const char *msg_name(Heapd__Envelope__MsgCase c)
{
	const ProtobufCFieldDescriptor *f =
	        protobuf_c_message_descriptor_get_field(&heapd__envelope__descriptor, (unsigned)c);
	return f ? f->name : "unknown";
}

/* Requests that change the heap on the loop (Sweep and Scavenge run on the sweeper). */
static int changes_heap(Heapd__Envelope__MsgCase c)
{
	return c == HEAPD__ENVELOPE__MSG_HELLO || c == HEAPD__ENVELOPE__MSG_REFILL ||
	       c == HEAPD__ENVELOPE__MSG_LARGE_ALLOC || c == HEAPD__ENVELOPE__MSG_LARGE_FREE ||
	       c == HEAPD__ENVELOPE__MSG_BYE;
}

/*
 * Debug builds: whether to check after this root change. A full check walks
 * every root and costs far more than a bind, so with more than 64 names
 * bound it runs only at the 2^k-th change: a test that binds 100,000 names
 * still finishes, and small directories are checked after every change.
 */
static int check_after_root_change(daemon_t *d)
{
#ifdef HEAPD_DEBUG
	uint64_t k = ++d->root_changes;
	return d->seg.hdr->roots_count <= 64 || (k & (k - 1)) == 0;
#else
	(void)d;
	return 0;
#endif
}

int session_handle_frame(session_t *s, const uint8_t *payload, size_t len)
{
	daemon_t *d = s->d;
	Heapd__Envelope *env;
	int rc = 0;

	if (s->failed)
		return -1;
	/* A client sends only after reading its last reply: a large object it asked for is its own. */
	if (s->slot != HEAPD_NIL)
		daemon_settle(d, s->slot);
	env = wire_unpack(payload, len);
	if (!env)
		return session_fail(s, EPROTO, "malformed or unknown message (%zu bytes)", len);
	s->seq = env->seq;
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
	case HEAPD__ENVELOPE__MSG_BYE:
		if (s->control || s->slot == HEAPD_NIL) {
			rc = session_fail(s, EPERM, "%s on a connection without a client slot",
			                  msg_name(env->msg_case));
			break;
		}
		if (env->msg_case == HEAPD__ENVELOPE__MSG_REFILL)
			rc = handle_refill(s, env->refill);
		else if (env->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC)
			rc = handle_large_alloc(s, env->large_alloc);
		else if (env->msg_case == HEAPD__ENVELOPE__MSG_LARGE_FREE)
			rc = handle_large_free(s, env->large_free);
		else
			rc = handle_bye(s);
		break;
	case HEAPD__ENVELOPE__MSG_ROOT_SET:
	case HEAPD__ENVELOPE__MSG_ROOT_CAS:
		if (s->control || s->slot == HEAPD_NIL) {
			rc = session_fail(s, EPERM, "%s on a connection without a client slot",
			                  msg_name(env->msg_case));
			break;
		}
		if (env->msg_case == HEAPD__ENVELOPE__MSG_ROOT_SET)
			rc = handle_root_set(s, env->root_set);
		else
			rc = handle_root_cas(s, env->root_cas);
		break;
	case HEAPD__ENVELOPE__MSG_ROOTS:
		rc = handle_roots(s, env->roots);
		break;
	case HEAPD__ENVELOPE__MSG_STATS:
		rc = handle_control(s, SESSION_WAIT_STATS);
		break;
	case HEAPD__ENVELOPE__MSG_CLIENTS:
		if (env->clients->bytes)
			rc = handle_control(s, SESSION_WAIT_CLIENTS);
		else
			rc = handle_clients(s, NULL);
		break;
	case HEAPD__ENVELOPE__MSG_PROFILE:
		if (env->profile->cursor == 0)
			rc = handle_control(s, SESSION_WAIT_PROFILE);
		else
			rc = reply_profile(s, env->profile->cursor);
		break;
	case HEAPD__ENVELOPE__MSG_SWEEP:
		rc = handle_control(s, SESSION_WAIT_SWEEP);
		break;
	case HEAPD__ENVELOPE__MSG_SCAVENGE:
		rc = handle_control(s, SESSION_WAIT_SCAVENGE);
		break;
	case HEAPD__ENVELOPE__MSG_CHECK:
		rc = handle_control(s, SESSION_WAIT_CHECK);
		break;
	default:
		rc = session_fail(s, EPROTO, "unexpected %s message", msg_name(env->msg_case));
		break;
	}
	if (rc == 0 && s->wait == SESSION_WAIT_NONE)
		s->requests++;
	if (changes_heap(env->msg_case) ||
	    ((env->msg_case == HEAPD__ENVELOPE__MSG_ROOT_SET ||
	      env->msg_case == HEAPD__ENVELOPE__MSG_ROOT_CAS) &&
	     check_after_root_change(d)))
		daemon_debug_check(d, msg_name(env->msg_case));
out:
	wire_free(env);
	return rc;
}
