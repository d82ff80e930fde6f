// SPDX-License-Identifier: MIT
/*
 * inproc.h - the daemon's core in this process, on a temporary arena, with
 * no socket and no event loop: a session is fed frames directly
 * (session_handle_frame) and its replies are read back from its output
 * buffer. For the suites that drive the real daemon code step by step
 * (test_daemon_core) or kill it in a forked copy (test_crash).
 *
 * Nothing here asserts except hin_waiting_child: a forked copy of the
 * daemon reports what went wrong, and the test judges.
 */
#ifndef HEAPD_TESTS_HARNESS_INPROC_H
#define HEAPD_TESTS_HARNESS_INPROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon.h"
#include "session.h"
#include "wire.h"

/*
 * Open d on the arena directory `arena` (laid out if absent) of
 * arena_bytes, with max_clients slots (0: the default); heapd's own log
 * lines are kept quiet. 0, or -errno with the reason in err.
 */
int hin_open(daemon_t *d, const char *arena, uint64_t arena_bytes, uint32_t max_clients,
             char *err, size_t errlen);

/* A session of process pid, as the server makes one for a connection; NULL if out of memory. */
session_t *hin_session(daemon_t *d, pid_t pid);

/*
 * Feed req to s as one frame: its reply, decoded (wire_free it), or NULL
 * if none was queued or it does not decode. *rc, if not NULL, gets what
 * session_handle_frame returned.
 */
Heapd__Envelope *hin_call(session_t *s, const Heapd__Envelope *req, int *rc);

/* A session of process pid that said hello (hraw_req_hello), its reply in *reply; NULL if out of memory. */
session_t *hin_hello(daemon_t *d, pid_t pid, const Heapd__Envelope *hello, Heapd__Envelope **reply);

/* The daemon dies under s: the session goes and nothing is written; its slot stays in the arena. */
void hin_lose(session_t *s);

/* The client leaves: its slot is given up as a Bye would (if it has one), and the session goes. */
void hin_end(session_t *s);

/* Run the daemon's check; each problem is printed, after where if not NULL. The number found. */
size_t hin_problems(daemon_t *d, const char *where);

/* The free words of in-use span id. */
uint64_t *hin_freebits(const daemon_t *d, uint32_t id);

/* The alloc or free bit of object idx of span id. */
int hin_alloc_bit(const daemon_t *d, uint32_t id, uint32_t idx);
int hin_free_bit(const daemon_t *d, uint32_t id, uint32_t idx);

/*
 * A child that exits once it reads a byte on go[0] (write it to go[1]; the
 * parent's go[0] is closed); its proc_t in *p. Asserts.
 */
pid_t hin_waiting_child(int go[2], proc_t *p);

#endif
