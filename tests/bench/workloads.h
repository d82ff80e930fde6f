// SPDX-License-Identifier: MIT
/*
 * workloads.h - the workloads, run in forked worker processes, and the
 * shared block through which workers and the driver meet.
 *
 * A measurement forks n workers (wl_spawn). Each attaches to the allocator,
 * builds and warms its state untimed, then calls wl_ready and waits for the
 * driver's go. It runs its timed loop for wl_sync_t.duration_ns and records
 * its start, end and operation count in its own slot. The driver derives
 * ns per operation from the slots: (latest end - earliest start) / total ops.
 * A worker whose threads measure (workloads 5, 8 and 9) gives each thread
 * a slot of its own.
 *
 * Workload 10 starts new programs: its worker runs the driver's own binary,
 * by exec, as `bench_<allocator> WL_PROC_CHILD fd index`, WL_PROCS times
 * one after another. Each such child calls wl_proc_child from the top of
 * main(), before anything else, and writes its timestamps to fd.
 */
#ifndef HEAPD_BENCH_WORKLOADS_H
#define HEAPD_BENCH_WORKLOADS_H

#include <stdatomic.h>
#include <stdint.h>

#include "bench.h"

#define WL_MAX_WORKERS 8
#define WL_MAX_VALUES 8

#define WL_BATCH 1000            /* workload 1: objects per batch */
#define WL_SLOTS 10000           /* workload 2: live slots */
#define WL_MIN_SIZE 8            /* workload 2: smallest object */
#define WL_MAX_SIZE 1024         /* workload 2: largest object */
#define WL_PC_SIZE 64            /* workloads 3-4: object size */
#define WL_RING 1024             /* workloads 3-4 and 9: ring slots, a power of two */
#define WL_HANDOFF_MIN 64        /* workload 9: smallest object */
#define WL_HANDOFF_MAX 512       /* workload 9: largest object */
#define WL_PROCS 1000            /* workload 10: programs started, one after another */
#define WL_PROC_OBJECTS 100      /* workload 10: objects each allocates and leaks */
#define WL_PROC_MIN 16           /* workload 10: smallest object */
#define WL_PROC_MAX 256          /* workload 10: largest object */
#define WL_PROC_CHILD "--w10-child" /* workload 10: argv[1] of a child */

/* One worker's results; written only by that worker, read by the driver after it exits. */
typedef struct wl_slot {
	uint64_t start;              /* ns, when its timed loop began */
	uint64_t end;                /* ns, when it ended */
	uint64_t ops;                /* operations it completed */
	double value[WL_MAX_VALUES]; /* workload-specific results */
	int nvalues;
	char note[96];               /* how it measured, if that needs saying */
} __attribute__((aligned(64))) wl_slot_t;

/* MAP_SHARED between the driver and its workers. */
typedef struct wl_sync {
	_Atomic uint32_t ready;      /* workers that finished warming up */
	_Atomic uint32_t go;         /* set by the driver once every worker is ready */
	uint64_t duration_ns;        /* length of each worker's timed loop */
	wl_slot_t w[WL_MAX_WORKERS];
} wl_sync_t;

/* A single-producer single-consumer ring of object offsets, MAP_SHARED (workload 9: pointers, private). */
typedef struct wl_ring {
	_Alignas(64) _Atomic uint64_t head; /* slots written; producer writes */
	_Alignas(64) _Atomic uint64_t tail; /* slots read; consumer writes */
	_Alignas(64) uint64_t slot[WL_RING];
} wl_ring_t;

#define WL_RING_END UINT64_MAX   /* the producer's last offset: stop */

/* A worker body: 0 on success, non-zero on failure (the worker exits 1). */
typedef int (*wl_fn)(wl_sync_t *s, int id, void *arg);

/*
 * Fork n workers, worker i running fn(s, i, args[i]) between attach and
 * detach; release them together once all are ready, and wait for them. The
 * slots are cleared first. 0 if every worker succeeded, else -1.
 */
int wl_spawn(wl_sync_t *s, int n, wl_fn fn, void **args, int timeout_s);

/* In a worker: announce readiness, wait for go, return the start time. */
uint64_t wl_ready(wl_sync_t *s);

/* In a worker: its timed loop began at start and has just ended after ops operations. */
void wl_record(wl_sync_t *s, int id, uint64_t start, uint64_t ops);

/* The p50 and p99 of ns[0..n), n > 0, into v[0..1] (sorts ns). */
void wl_p50_p99(uint64_t *ns, int n, double *v);

/* Workload bodies (arg in parentheses). */
int wl_batch(wl_sync_t *s, int id, void *arg);        /* (size_t *) object size */
int wl_larson(wl_sync_t *s, int id, void *arg);       /* (int *) threads in this worker */
int wl_producer(wl_sync_t *s, int id, void *arg);     /* (wl_ring_t *) */
int wl_consumer(wl_sync_t *s, int id, void *arg);     /* (wl_ring_t *) */
int wl_pair(wl_sync_t *s, int id, void *arg);         /* even id: producer, odd: consumer */
int wl_refill(wl_sync_t *s, int id, void *arg);       /* value[0..1]: p50, p99 ns */
int wl_socketpair(wl_sync_t *s, int id, void *arg);   /* value[0..1]: p50, p99 ns */
int wl_memory(wl_sync_t *s, int id, void *arg);       /* value[0..3]: live, resident after 2 and after a phase change */
int wl_larson_shared(wl_sync_t *s, int id, void *arg); /* (int *) threads, each with a slot of its own */
int wl_handoff(wl_sync_t *s, int id, void *arg);      /* slot id: producer thread, id + 1: consumer thread */
int wl_procs(wl_sync_t *s, int id, void *arg);        /* value[0..3]: p50, p99 ns to the first allocation,
                                                       * from the child's main(), then from its spawn */

/* A child of workload 10: argv after WL_PROC_CHILD; t_main, the time main() began. Returns main's status. */
int wl_proc_child(uint64_t t_main, int argc, char **argv);

/* Named roots, heapd's alone (wl_roots.c, in the bench_roots driver). */
#define WL_ROOT_NAMES 100000     /* workload r1: names bound */
int wl_root_get(wl_sync_t *s, int id, void *arg);     /* value[0]: millions of lookups per second */
int wl_root_rtt(wl_sync_t *s, int id, void *arg);     /* value[0..7]: p50, p99 ns of set, cas, socket
                                                       * pair, socket pair with a polling reader */
int wl_root_wake(wl_sync_t *s, int id, void *arg);    /* value[0..1]: p50, p99 ns of a wait's wake-up */

#endif
