// SPDX-License-Identifier: MIT
/*
 * raw.h - the protocol without libheapclient: requests built field by field
 * (heap.proto), and a raw client that says Hello, receives the arena's
 * descriptors and maps the arena (segment_attach) as the library would.
 *
 * A request is built on the caller's stack (hraw_req_t) by one function
 * per message, which returns its envelope; it goes over a socket
 * (wire_call, wire_send) or, in-process, into a session (inproc.h).
 */
#ifndef HEAPD_TESTS_HARNESS_RAW_H
#define HEAPD_TESTS_HARNESS_RAW_H

#include <stddef.h>
#include <stdint.h>

#include "segment.h"
#include "wire.h"

/* Room for one request: the envelope and the message it carries. */
typedef struct hraw_req {
	Heapd__Envelope env;
	union {
		Heapd__Bye bye;
		Heapd__ClientsRequest clients;
		Heapd__Hello hello;
		Heapd__LargeAlloc large_alloc;
		Heapd__LargeFree large_free;
		Heapd__Refill refill;
		Heapd__StatsRequest stats;
	} m;
} hraw_req_t;

/*
 * A Hello from this process's pid: a control connection, or a client naming
 * prev_slot1 (slot + 1; 0: none), the spans it holds and the last large
 * object it got (span + 1; 0: none).
 */
Heapd__Envelope *hraw_req_hello(hraw_req_t *r, int control, uint32_t prev_slot1,
                                const uint32_t *held,
                                size_t nheld, uint32_t large_received);
/* Release spans and ask for count spans of class k. */
Heapd__Envelope *hraw_req_refill(hraw_req_t *r, uint32_t k, uint32_t count, const uint32_t *release,
                                 size_t nrelease);
Heapd__Envelope *hraw_req_large_alloc(hraw_req_t *r, uint64_t size, uint64_t align, int zero,
                                      const uint32_t *release, size_t nrelease);
Heapd__Envelope *hraw_req_large_free(hraw_req_t *r, uint32_t span, uint32_t gen);
/* A request whose message has no fields: msg is Bye, Clients or Stats. */
Heapd__Envelope *hraw_req_empty(hraw_req_t *r, Heapd__Envelope__MsgCase msg);

/* A client connection that said Hello, with the arena mapped. */
typedef struct hraw {
	int fd;
	uint32_t slot;
	segment_t seg;        /* the client's mapping (segment_attach) */
	int mapped;
} hraw_t;

/* Connect and say Hello as a client; maps the arena. 0 or -errno (the code of an Error reply). */
int hraw_hello(const char *sock, hraw_t *c);
/* The same, reconnecting with prev_slot1 (slot + 1) and the spans still held. */
int hraw_hello_again(const char *sock, hraw_t *c, uint32_t prev_slot1, const uint32_t *held,
                     size_t nheld);
void hraw_close(hraw_t *c);

/*
 * Connect and say Hello as a client (control: as a control connection),
 * keeping the descriptors the reply passes (*meta_fd, *data_fd; -1 if none;
 * closed if NULL). The connection, or -errno (the code of an Error reply).
 */
int hraw_hello_fds(const char *sock, int control, uint32_t *slot, int *meta_fd, int *data_fd);

/*
 * Run fn as another client: in a child process (one process has one
 * connected slot), after its own Hello. Returns fn's value as the child's
 * exit status (0..254), or -1 if the child could not say Hello or died.
 */
int hraw_in_child(const char *sock, int (*fn)(hraw_t *c, void *arg), void *arg);

/* One request on connection fd, and its reply (wire_free it). 0 or -errno. */
int hraw_refill(int fd, uint32_t k, uint32_t count, const uint32_t *release, size_t nrelease,
                Heapd__Envelope **reply);
/* A Refill naming other classes too (Refill.also). */
int hraw_refill_also(int fd, uint32_t k, uint32_t count, const uint32_t *also, size_t nalso,
                     Heapd__Envelope **reply);
int hraw_large_alloc(int fd, uint64_t size, uint64_t align, int zero, Heapd__Envelope **reply);
/* A LargeFree: never answered. 0 or -errno. */
int hraw_large_free(int fd, uint32_t span, uint32_t gen);

/* The code of an Error reply, or 0 if reply is not an Error. */
int hraw_error_code(const Heapd__Envelope *reply);

/* 1 if the peer closed fd (end of file or reset) within timeout_ms. */
int hraw_closed(int fd, int timeout_ms);

/* Write n raw bytes on fd (MSG_NOSIGNAL). 0 or -errno. */
int hraw_send(int fd, const void *buf, size_t n);

/*
 * A peer that never reads its replies: Clients requests (answered at once,
 * where a Stats request would wait its turn) written back to back, whole
 * frames in a stream that stays well formed across partial writes.
 */
typedef struct hraw_flood {
	uint8_t frames[64 * 1024];
	size_t len;   /* bytes of whole frames in frames[] */
	size_t off;   /* where the next write starts */
} hraw_flood_t;

/* Fill f with Clients requests that carry seq. */
void hraw_flood_init(hraw_flood_t *f, uint64_t seq);

/* Write on fd as long as it takes frames without blocking: 0 once it would block, -errno once it broke. */
int hraw_flood(hraw_flood_t *f, int fd);

#endif
