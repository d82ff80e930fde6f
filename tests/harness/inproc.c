// SPDX-License-Identifier: MIT
/*
 * inproc.c - the daemon's core in this process, fed frames directly. See
 * inproc.h.
 */
#include "harness/inproc.h"

#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bitmap.h"
#include "log.h"
#include "sizeclass.h"

int hin_open(daemon_t *d, const char *arena, uint64_t arena_bytes, uint32_t max_clients,
             char *err, size_t errlen)
{
	config_t cfg;
	log_set_quiet(1);
	config_defaults(&cfg);
	snprintf(cfg.arena, sizeof(cfg.arena), "%s", arena);
	cfg.arena_size = arena_bytes;
	if (max_clients)
		cfg.max_clients = max_clients;
	return daemon_open(d, &cfg, err, errlen);
}

session_t *hin_session(daemon_t *d, pid_t pid)
{
	struct evbuffer *out = evbuffer_new();
	session_t *s = out ? session_new(d, -1, pid, getuid(), getgid(), out) : NULL;
	if (!s && out)
		evbuffer_free(out);
	return s;
}

Heapd__Envelope *hin_call(session_t *s, const Heapd__Envelope *req, int *rc)
{
	size_t n = wire_frame_size(req);
	uint8_t *buf = malloc(n);
	if (!buf)
		return NULL;
	wire_frame_pack(req, buf);
	int handled = session_handle_frame(s, buf + HEAPD_FRAME_HEADER, n - HEAPD_FRAME_HEADER);
	free(buf);
	if (rc)
		*rc = handled;
	size_t len = evbuffer_get_length(s->out);
	if (len < HEAPD_FRAME_HEADER)
		return NULL;
	uint8_t *all = evbuffer_pullup(s->out, (ev_ssize_t)len);
	uint32_t plen;
	Heapd__Envelope *env = NULL;
	if (wire_parse_header(all, &plen) == 0 && len == HEAPD_FRAME_HEADER + plen)
		env = wire_unpack(all + HEAPD_FRAME_HEADER, plen);
	evbuffer_drain(s->out, len);
	return env;
}

session_t *hin_hello(daemon_t *d, pid_t pid, const Heapd__Envelope *hello, Heapd__Envelope **reply)
{
	session_t *s = hin_session(d, pid);
	*reply = s ? hin_call(s, hello, NULL) : NULL;
	return s;
}

void hin_lose(session_t *s)
{
	struct evbuffer *out = s->out;
	s->slot = HEAPD_NIL; /* no detach: the daemon that held the slot is gone */
	session_free(s);
	evbuffer_free(out);
}

void hin_end(session_t *s)
{
	if (s->slot != HEAPD_NIL) {
		sweep_result_t res = { 0 };
		daemon_bye(s->d, s->slot, &res);
	}
	hin_lose(s);
}

size_t hin_problems(daemon_t *d, const char *where)
{
	static check_report_t r;
	size_t n = daemon_check(d, &r);
	for (size_t i = 0; i < n && i < CHECK_MAX_PROBLEMS; i++)
		fprintf(stderr, "%s%scheck: %s\n", where ? where : "", where ? ": " : "", r.problems[i]);
	return n;
}

uint64_t *hin_freebits(const daemon_t *d, uint32_t id)
{
	const shm_span_t *s = &d->seg.spans[id];
	return segment_freebits(&d->seg, id, s->state == SPAN_SMALL ? sizeclass_nelems[s->sizeclass] : 1);
}

int hin_alloc_bit(const daemon_t *d, uint32_t id, uint32_t idx)
{
	return (bitmap_load(&segment_allocbits(&d->seg, id)[idx >> 6]) >> (idx & 63)) & 1;
}

int hin_free_bit(const daemon_t *d, uint32_t id, uint32_t idx)
{
	return (bitmap_load(&hin_freebits(d, id)[idx >> 6]) >> (idx & 63)) & 1;
}

pid_t hin_waiting_child(int go[2], proc_t *p)
{
	ck_assert_int_eq(pipe(go), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;
		close(go[1]);
		_exit(read(go[0], &c, 1) < 0);
	}
	close(go[0]);
	uint64_t st;
	ck_assert_int_eq(proc_start_time(pid, &st),
	                 0); /* its /proc entry exists once fork returns */
	ck_assert_int_eq(proc_open(pid, st, 0, p), 0);
	return pid;
}
