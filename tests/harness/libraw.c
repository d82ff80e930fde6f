// SPDX-License-Identifier: MIT
/*
 * libraw.c - frames on the library's own connection, and one thread's
 * schedule of them. See libraw.h.
 */
#include "harness/libraw.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness/liblock.h"
#include "harness/raw.h"
#include "harness/util.h"
#include "heapclient.h"
#include "wire.h"

#define GRACE_MS 2000      /* heapd's LARGE_FREE_GRACE_NS (daemon/large.h) */
#define LATE_MIN_MS 2500   /* a held-back LargeFree goes 2.5-4 s after its free bit */
#define LATE_SPREAD_MS 1500
#define ROUND_TRIP_MAX 32768u /* the round trip's LargeAlloc: at most this much over a small object */

int hlibraw_socket(const char *sock)
{
	/* thread-self: a process whose main thread has exited has no /proc/self/fd to list */
	DIR *d = opendir("/proc/thread-self/fd");
	struct dirent *e;
	int found = -ENOTCONN;

	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		memset(&sa, 0, sizeof(sa));
		if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX &&
		    strcmp(sa.sun_path, sock) == 0)
			found = fd;
	}
	closedir(d);
	return found;
}

/* Write buf on the library's connection, holding the library lock alone. 0, -ENOTCONN or -errno. */
static int send_raw(const char *sock, const uint8_t *buf, size_t len)
{
	hlock_exclusive();
	int fd = hlibraw_socket(sock);
	int rc = fd < 0 ? fd : hraw_send(fd, buf, len);
	hlock_exclusive_end();
	return rc;
}

int hlibraw_end_session(const char *sock)
{
	/* a length of 8, then 8 bytes that are no Envelope (a varint that never ends) */
	static const uint8_t frame[] = { 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	return send_raw(sock, frame, sizeof(frame));
}

/* LargeFree{span, gen[i]} for each i, in one write. */
static int send_large_frees(const char *sock, uint32_t span, const uint32_t *gens, int n)
{
	uint8_t buf[256];
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		hraw_req_t req;
		Heapd__Envelope *env = hraw_req_large_free(&req, span, gens[i]);
		size_t sz = wire_frame_size(env);
		if (len + sz > sizeof(buf))
			return -EMSGSIZE;
		wire_frame_pack(env, buf + len);
		len += sz;
	}
	return send_raw(sock, buf, len);
}

static int raw_fail(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int raw_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "pid %d: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* A gap around mean_ms: 0.5 to 1.5 times it. */
static uint64_t gap(hlibraw_t *r, uint64_t mean_ms)
{
	return mean_ms * (500 + hutil_rand(&r->rng) % 1001) / 1000;
}

/* Make room in the book for n more objects. */
static int make_room(hlibraw_t *r, hbook_t *b, uint32_t n, char *err, size_t errlen)
{
	while (b->nfree < n)
		if (hbook_free(b, (uint32_t)(hutil_rand(&r->rng) % b->nlive), err, errlen) < 0)
			return -1;
	return 0;
}

/* A request that must reach heapd and be answered: a LargeAlloc, recorded in the book. */
static int round_trip(hlibraw_t *r, hbook_t *b, char *err, size_t errlen)
{
	if (make_room(r, b, 1, err, errlen) < 0)
		return -1;
	size_t size = HEAPD_MAX_SMALL + 1 + hutil_rand(&r->rng) % ROUND_TRIP_MAX;
	return hbook_alloc(b, size, err, errlen) ? 0 : -1;
}

/*
 * Write LargeFree{span, gens[i]} for each i: 1 if written. 0 if there was
 * no connection to write on, counted as unsent; in a strict run, where
 * heapd stays up, that fails: -1 with err.
 */
static int write_frees(hlibraw_t *r, uint32_t span, const uint32_t *gens, int n,
                       const hc_stats_t *st0, char *err, size_t errlen)
{
	int rc = send_large_frees(r->sock, span, gens, n);
	if (rc == 0)
		return 1;
	if (r->strict)
		return raw_fail(err, errlen, "no LargeFree written (connected %d): %s", st0->connected,
		                strerror(-rc));
	atomic_fetch_add(&r->counts->unsent, 1);
	return 0;
}

/* After frames (what) that must end nothing: a request is served on the same connection. 0 or -1. */
static int session_kept(hlibraw_t *r, hbook_t *b, const hc_stats_t *st0, const char *what,
                        char *err, size_t errlen)
{
	hc_stats_t st1;
	if (round_trip(r, b, err, errlen) < 0)
		return -1;
	hc_stats(&st1);
	if (st1.reconnects != st0->reconnects || !st1.connected)
		return raw_fail(err, errlen, "%s ended the session (reconnects %llu -> %llu)", what,
		                (unsigned long long)st0->reconnects, (unsigned long long)st1.reconnects);
	return 0;
}

/* Does span still hold the large object of generation gen? */
static int still_large(const hlibraw_t *r, uint32_t span, uint32_t gen)
{
	const shm_span_t *s = &r->view.spans[span];
	return s->start == span && s->state == SPAN_LARGE && s->gen == gen;
}

int hlibraw_init(hlibraw_t *r, const char *sock, int strict, hlibraw_counts_t *counts, uint64_t seed,
                 uint64_t end_every_ms, uint64_t late_every_ms, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->sock = sock;
	r->strict = strict;
	r->counts = counts;
	r->rng = seed | 1;
	r->end_every_ms = end_every_ms;
	r->late_every_ms = late_every_ms;
	if (hview_map(&r->view) < 0)
		return raw_fail(err, errlen, "no arena to look at: %s", strerror(errno));
	uint64_t now = heapd_now_ms();
	r->next_end = now + gap(r, end_every_ms);
	r->next_late = now + gap(r, late_every_ms);
	return 0;
}

/* Make heapd end the session; the next request must reconnect and re-adopt the slot. */
static int end_session(hlibraw_t *r, hbook_t *b, char *err, size_t errlen)
{
	hc_stats_t st0, st1;

	hc_stats(&st0);
	int rc = hlibraw_end_session(r->sock);
	if (rc < 0) {
		if (r->strict)
			return raw_fail(err, errlen, "no malformed frame written (connected %d): %s",
			                st0.connected, strerror(-rc));
		atomic_fetch_add(&r->counts->unsent, 1);
		return 0;
	}
	if (round_trip(r, b, err, errlen) < 0)
		return -1;
	hc_stats(&st1);
	if (st1.reconnects <= st0.reconnects)
		return raw_fail(err, errlen, "a request after heapd ended the session did not reconnect "
		                "(reconnects %llu -> %llu)", (unsigned long long)st0.reconnects,
		                (unsigned long long)st1.reconnects);
	if (st1.slot != st0.slot)
		return raw_fail(err, errlen, "the reconnect after an ended session got slot %u, not its "
		                "own slot %u", st1.slot, st0.slot);
	atomic_fetch_add(&r->counts->ended, 1);
	return 0;
}

/*
 * Free a large object by its bit alone, and hold its LargeFree back. A
 * LargeAlloc first, so that the library's last LargeAlloc reply names
 * another object: were it this one, a reconnect could claim its span's next
 * object, reused by a lost reply, as received.
 */
static int hold_back(hlibraw_t *r, hbook_t *b, char *err, size_t errlen)
{
	hc_stats_t st0;
	uint32_t span, gen, k;

	if (make_room(r, b, 2, err, errlen) < 0)
		return -1;
	for (k = 0; k < b->nlive && hbook_size(b, k) <= HEAPD_MAX_SMALL; k++)
		;
	if (k == b->nlive && round_trip(r, b, err, errlen) < 0)
		return -1;
	if (round_trip(r, b, err, errlen) < 0)
		return -1;
	for (k = 0; k + 1 < b->nlive && hbook_size(b, k) <= HEAPD_MAX_SMALL; k++)
		;
	hc_stats(&st0);
	if (hbook_free_bit(b, k, &r->view, &span, &gen, err, errlen) < 0)
		return -1;
	r->late[r->nlate].span = span;
	r->late[r->nlate].gen = gen;
	r->late[r->nlate].since = heapd_now_ms();
	/* over the grace by a spread: the sweeper has mostly freed the object, its span often reused */
	r->late[r->nlate].due = r->late[r->nlate].since + LATE_MIN_MS +
	                        LATE_SPREAD_MS * (hutil_rand(&r->rng) % 1001) / 1000;
	r->nlate++;

	/* Two generations this object is not: heapd ignores both. */
	const uint32_t wrong[] = { gen + 1, gen - 1 };
	int sent = write_frees(r, span, wrong, 2, &st0, err, errlen);
	if (sent <= 0)
		return sent;
	atomic_fetch_add(&r->counts->stale, 2);
	if (!r->strict)
		return 0;
	if (session_kept(r, b, &st0, "LargeFrees of a wrong generation", err, errlen) < 0)
		return -1;
	if (!still_large(r, span, gen))
		return raw_fail(err, errlen, "a LargeFree of a wrong generation freed large span %u "
		                "(generation %u, within the grace)", span, gen);
	return 0;
}

/* Send the i-th held-back LargeFree, twice: the second is stale whatever the first did. */
static int send_late(hlibraw_t *r, hbook_t *b, uint32_t i, char *err, size_t errlen)
{
	hc_stats_t st0;
	uint32_t span = r->late[i].span, gen = r->late[i].gen;
	int late = heapd_now_ms() - r->late[i].since > GRACE_MS;
	int swept = !still_large(r, span, gen);

	r->late[i] = r->late[--r->nlate];
	hc_stats(&st0);
	const uint32_t gens[] = { gen, gen };
	int sent = write_frees(r, span, gens, 2, &st0, err, errlen); /* unsent: lost, and swept */
	if (sent <= 0)
		return sent;
	atomic_fetch_add(late ? &r->counts->late : &r->counts->at_end, 1);
	atomic_fetch_add(&r->counts->late_swept, (uint64_t)(late && swept));
	atomic_fetch_add(&r->counts->stale, 1);
	if (!r->strict)
		return 0;
	char what[64];
	snprintf(what, sizeof(what), "a %sLargeFree of large span %u", late ? "late " : "", span);
	if (session_kept(r, b, &st0, what, err, errlen) < 0)
		return -1;
	if (still_large(r, span, gen))
		return raw_fail(err, errlen, "large span %u (generation %u) is still allocated after its "
		                "LargeFree", span, gen);
	return 0;
}

int hlibraw_step(hlibraw_t *r, hbook_t *b, char *err, size_t errlen)
{
	uint64_t now = heapd_now_ms();

	for (uint32_t i = 0; i < r->nlate; i++)
		if (now >= r->late[i].due)
			return send_late(r, b, i, err, errlen);
	if (now >= r->next_end) {
		r->next_end = now + gap(r, r->end_every_ms);
		return end_session(r, b, err, errlen);
	}
	if (now >= r->next_late && r->nlate < HLIBRAW_LATE_MAX) {
		r->next_late = now + gap(r, r->late_every_ms);
		return hold_back(r, b, err, errlen);
	}
	return 0;
}

int hlibraw_finish(hlibraw_t *r, hbook_t *b, char *err, size_t errlen)
{
	while (r->nlate > 0)
		if (send_late(r, b, r->nlate - 1, err, errlen) < 0)
			return -1;
	return 0;
}
