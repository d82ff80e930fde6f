// SPDX-License-Identifier: MIT
/*
 * libraw.h - frames behind libheapclient's back, on its own connection: a
 * client makes heapd end its session (a malformed frame) and sends
 * LargeFrees late, twice or of a wrong generation, while its threads work.
 *
 * A raw frame is written holding the library lock alone (liblock.h), so
 * that it never lands inside another thread's request or before the Hello
 * of a new connection: the threads of a process that writes raw frames
 * call the library through books (book.h), views and hlock_trim only
 * (hc_stats aside, which sends nothing).
 */
#ifndef HEAPD_TESTS_HARNESS_LIBRAW_H
#define HEAPD_TESTS_HARNESS_LIBRAW_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "harness/book.h"
#include "harness/view.h"

/*
 * The library's connection to the daemon at sock: the unix socket among
 * this thread's process's descriptors whose peer is sock; -ENOTCONN if
 * there is none. Only a raw frame written holding the library lock alone
 * may trust the answer: the descriptor changes when the library reconnects.
 */
int hlibraw_socket(const char *sock);

/*
 * Write a malformed frame on the library's connection to sock, holding the
 * library lock: heapd ends the session, and the library's next request
 * reconnects. 0, -ENOTCONN when the library has no connection, or -errno.
 */
int hlibraw_end_session(const char *sock);

/* What raw frames did, counted in memory shared with the test. */
typedef struct hlibraw_counts {
	_Atomic uint64_t ended;      /* sessions heapd ended on a malformed frame, then re-adopted */
	_Atomic uint64_t late;       /* LargeFrees sent over the grace after their free bit */
	_Atomic uint64_t late_swept; /* of which for an object heapd had freed by then */
	_Atomic uint64_t stale;      /* LargeFrees repeated or of a wrong generation */
	_Atomic uint64_t unsent;     /* frames not sent: no connection (heapd was down) */
	_Atomic uint64_t at_end;     /* held-back LargeFrees sent, within the grace, as the run ended */
} hlibraw_counts_t;

#define HLIBRAW_LATE_MAX 8 /* held-back LargeFrees one thread keeps at most */

/*
 * One thread's raw frames, each now and then, among its book's work:
 *   - a malformed frame, after which heapd ends the session; the next
 *     request reconnects (reconnects grows) and re-adopts the slot;
 *   - a large object freed by its bit alone (hbook_free_bit) right after a
 *     LargeAlloc, so that the library's last LargeAlloc reply names
 *     another object; at once two LargeFrees of a wrong generation, which
 *     heapd ignores; over the grace later its LargeFree, twice, which heapd
 *     ignores if its sweeper (or a recovery) has freed the object since.
 * After an ended session the next request must have reconnected and kept
 * the slot. With strict set the daemon stays up, so each LargeFree's effect
 * is exact too and checked after a request that follows it: it ended
 * nothing and freed nothing but its own object. Without it (heapd is killed
 * and restarted meanwhile) LargeFrees are only sent, or not when there is
 * no connection; the claim map and the patterns catch any harm.
 */
typedef struct hlibraw {
	const char *sock;        /* the daemon's socket path */
	int strict;
	hlibraw_counts_t *counts;
	hview_t view;
	uint64_t rng;
	uint64_t end_every_ms;   /* mean time between two ended sessions */
	uint64_t late_every_ms;  /* and between two held-back frees */
	uint64_t next_end, next_late;         /* heapd_now_ms() of the next of each */
	struct {
		uint32_t span, gen;
		uint64_t since;          /* heapd_now_ms() when its free bit was set */
		uint64_t due;            /* when its LargeFree goes: 2.5-4 s later */
	} late[HLIBRAW_LATE_MAX];
	uint32_t nlate;
} hlibraw_t;

/* Start; the calling thread has a book and may allocate. 0, or -1 with err. */
int hlibraw_init(hlibraw_t *r, const char *sock, int strict, hlibraw_counts_t *counts,
                 uint64_t seed,
                 uint64_t end_every_ms, uint64_t late_every_ms, char *err, size_t errlen);

/* Between two of the book's operations: the raw-frame action that is due, if any. 0 or -1 with err. */
int hlibraw_step(hlibraw_t *r, hbook_t *b, char *err, size_t errlen);

/* The run ends: send every held-back LargeFree now. 0 or -1 with err. */
int hlibraw_finish(hlibraw_t *r, hbook_t *b, char *err, size_t errlen);

#endif
