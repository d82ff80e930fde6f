// SPDX-License-Identifier: MIT
/*
 * soak_util.h - support for the kill soaks (test_soak_clients.c,
 * test_soak_daemon.c): memory shared by the test and its children, a claim
 * map that catches one piece of the arena handed out twice, the daemon's
 * client list, and a read-only look at the span table.
 *
 * The claim map has one bit per 8 bytes of the arena. A process that gets an
 * object from the library claims the object's bytes (an atomic OR per word);
 * it unclaims them before it frees the object. A claim that finds a bit
 * already set means two live objects overlap, in whichever processes they
 * are. The map is created before the test forks, so every child shares it.
 *
 * Frames behind the library's back (soak_raw_t): a client can make heapd
 * end its session (a malformed frame on the library's own connection) and
 * send LargeFrees late, twice or of a wrong generation, while its threads
 * work. Every call the book makes into the library holds a process-wide
 * lock shared, and a raw frame is written holding it alone, so that no
 * raw frame lands inside a request of another thread or before the Hello
 * of a new connection: the threads of a process that writes raw frames
 * call the library through the book and soak_trim only (hc_stats aside,
 * which sends nothing).
 */
#ifndef HEAPD_TESTS_SOAK_UTIL_H
#define HEAPD_TESTS_SOAK_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "layout.h"

/* size bytes of zeroed memory shared with every child forked afterwards. Aborts on failure. */
void *soak_shared(size_t size);

/* An unsigned number from the environment, or def if unset or malformed. */
uint64_t soak_env(const char *name, uint64_t def);

typedef struct soak_claims {
	_Atomic uint64_t *bits;   /* one bit per 8 bytes of the arena */
	uint64_t nbits;
} soak_claims_t;

/* A claim map for the arena directory at path (as large as its offsets run), in shared memory. */
void soak_claims_init(soak_claims_t *c, const char *path);

/* Claim [off, off + size). 0, -1 if a byte of it was claimed already, -2 if out of range. */
int soak_claim(soak_claims_t *c, uint64_t off, uint64_t size);

/* Give [off, off + size) up again. */
void soak_unclaim(soak_claims_t *c, uint64_t off, uint64_t size);

/*
 * A book of live objects, kept by one thread: each object's record
 * (offset, size, pattern seed) in shared memory, so that the test can check
 * the objects of a process that died or stopped, and the indexes in private
 * memory. An object is recorded only once it holds its pattern (off is
 * written last), and its record is cleared before it is freed.
 */
typedef struct soak_rec {
	_Atomic uint64_t off;   /* 0: empty */
	uint64_t size;
	uint64_t seed;
} soak_rec_t;

typedef struct soak_book {
	soak_rec_t *recs;       /* shared, cap entries */
	soak_claims_t *claims;
	uint32_t cap, nlive, nfree;
	uint32_t *live;         /* record indexes in use */
	uint32_t *spare;        /* record indexes free */
	uint64_t seedbase;      /* seeds are seedbase + a serial number: unique per book */
	uint64_t serial;
	uint64_t large_bytes;   /* live bytes in large objects */
} soak_book_t;

/* Start an empty book over recs[0..cap) (zeroed). Aborts if out of memory. */
void soak_book_init(soak_book_t *b, soak_rec_t *recs, uint32_t cap, soak_claims_t *claims,
                    uint64_t seedbase);

/*
 * hc_malloc(size), claim it, fill it with its pattern and record it. The
 * object, or NULL with the reason in err (allocation failed, or it overlaps
 * a live object, or the book is full).
 */
void *soak_book_alloc(soak_book_t *b, size_t size, char *err, size_t errlen);

/* Check the pattern of the k-th live object, unrecord, unclaim and free it. 0, or -1 with err. */
int soak_book_free(soak_book_t *b, uint32_t k, char *err, size_t errlen);

/* The size of the k-th live object. */
uint64_t soak_book_size(const soak_book_t *b, uint32_t k);

/* hc_trim, under the library lock of soak_raw_t. */
int soak_trim(void);

/* This process's read-only look at the arena, through the library's mapping. */
typedef struct soak_arena {
	const shm_header_t *hdr;
	const shm_span_t *spans;
	uint64_t *bits;          /* alloc and free words (data: every process writes) */
} soak_arena_t;

/* Find the mapping (connecting this process if it is not yet). 0, or -1 if it cannot allocate. */
int soak_arena(soak_arena_t *a);

/* The page that holds arena offset off (HEAPD_NIL: none); a large object's is its span's id. */
uint32_t soak_span_of(const soak_arena_t *a, uint64_t off);

/*
 * Free the k-th live object, a large one, the way hc_free begins: check its
 * pattern, unrecord and unclaim it, read its generation and set its free
 * bit; but send no LargeFree. Its span and generation go to *span, *gen.
 * 0, or -1 with err.
 */
int soak_book_free_bit(soak_book_t *b, uint32_t k, const soak_arena_t *a, uint32_t *span,
                       uint32_t *gen, char *err, size_t errlen);

/*
 * The library's connection to the daemon at sock: the unix socket among
 * this process's descriptors whose peer is sock. -ENOTCONN if there is none.
 * Only soak_util's raw frames, holding the library lock alone, may trust
 * the answer: the descriptor changes when the library reconnects.
 */
int soak_lib_socket(const char *sock);

/*
 * Write a malformed frame on the library's connection to sock: heapd ends
 * the session, and the library's next request reconnects. 0, -ENOTCONN when
 * the library has no connection, or -errno.
 */
int soak_end_session(const char *sock);

/* What raw frames did, counted in memory shared with the test. */
typedef struct soak_raw_counts {
	_Atomic uint64_t ended;      /* sessions heapd ended on a malformed frame, then re-adopted */
	_Atomic uint64_t late;       /* LargeFrees sent over the grace after their free bit */
	_Atomic uint64_t late_swept; /* of which for an object heapd had freed by then */
	_Atomic uint64_t stale;      /* LargeFrees repeated or of a wrong generation */
	_Atomic uint64_t unsent;     /* frames not sent: no connection (heapd was down) */
	_Atomic uint64_t at_end;     /* held-back LargeFrees sent, within the grace, as the run ended */
} soak_raw_counts_t;

#define SOAK_LATE_MAX 8          /* held-back LargeFrees one thread keeps at most */

/*
 * One thread's raw frames, each now and then, among its book's work:
 *   - a malformed frame, after which heapd ends the session; the next
 *     request reconnects (reconnects grows) and re-adopts the slot;
 *   - a large object freed by its bit alone (soak_book_free_bit) right
 *     after a LargeAlloc, so that the library's last LargeAlloc reply names
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
typedef struct soak_raw {
	const char *sock;        /* the daemon's socket path */
	int strict;
	soak_raw_counts_t *counts;
	soak_arena_t arena;
	uint64_t rng;
	double end_every, late_every; /* mean seconds between two ended sessions, two held-back frees */
	double next_end, next_late;
	struct {
		uint32_t span, gen;
		double since;            /* when its free bit was set (cu_now) */
		double due;              /* when its LargeFree goes: 2.5-4 s later */
	} late[SOAK_LATE_MAX];
	uint32_t nlate;
} soak_raw_t;

/* Start; the calling thread has a book and may allocate. 0, or -1 with err. */
int soak_raw_init(soak_raw_t *r, const char *sock, int strict, soak_raw_counts_t *counts,
                  uint64_t seed, double end_every, double late_every, char *err, size_t errlen);

/* Between two of the book's operations: the one raw-frame action that is due, if any. 0 or -1 with err. */
int soak_raw_step(soak_raw_t *r, soak_book_t *b, char *err, size_t errlen);

/* The run ends: send every held-back LargeFree now. 0 or -1 with err. */
int soak_raw_finish(soak_raw_t *r, soak_book_t *b, char *err, size_t errlen);

/*
 * Check every object recorded in recs[0..cap), a book whose thread is gone
 * or stopped. With do_free, unclaim, free and unrecord each too. The number
 * of objects, or -1 with err at the first damaged pattern.
 */
int64_t soak_recs_check(soak_rec_t *recs, uint32_t cap, soak_claims_t *claims, int do_free,
                        char *err, size_t errlen);

/* One client as the daemon's Clients reply lists it (control connections left out). */
typedef struct soak_client {
	uint32_t pid;
	uint32_t slot;
	uint64_t spans_cached;
	uint64_t pages_held;
} soak_client_t;

/* The daemon's clients: at most max into out; how many there are, or -errno. */
int soak_clients(const char *sock, soak_client_t *out, int max);

/*
 * Small spans owned by a client slot whose pid is not in pids[0..npids), as
 * this process's read-only mapping of the span table shows them; each one is
 * printed. Connects this process to the daemon if it is not yet.
 */
uint64_t soak_foreign_spans(const pid_t *pids, int npids);

/* Print the first max in-use spans (as this process's mapping shows them), with live objects. */
void soak_dump_in_use(int max);

/*
 * For the threads of a process whose main thread has exited: the last of
 * the *left threads to call this ends the process with _exit(0), as a
 * process ends without a Bye. Returning instead would run the exit
 * handlers, and the leak checker of a sanitizer build would count what
 * only the main thread's stack held.
 */
void soak_thread_done(atomic_uint *left);

#endif
