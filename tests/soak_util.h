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
 */
#ifndef HEAPD_TESTS_SOAK_UTIL_H
#define HEAPD_TESTS_SOAK_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

#endif
