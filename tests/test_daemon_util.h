// SPDX-License-Identifier: MIT
/*
 * test_daemon_util.h - raw protocol clients for the daemon's tests: a
 * connection that says Hello as a client (receiving and mapping the arena),
 * and one-call helpers for each request.
 */
#ifndef HEAPD_TESTS_DAEMON_UTIL_H
#define HEAPD_TESTS_DAEMON_UTIL_H

#include <stdint.h>
#include <sys/types.h>

#include "harness.h"
#include "segment.h"

typedef struct tclient {
	int fd;
	uint32_t slot;
	segment_t seg;        /* the client's mapping (segment_attach) */
	int mapped;
} tclient_t;

/* Connect and say Hello as a client; maps the arena. 0 or -errno (the code of an Error reply). */
int tc_hello(const char *sock, tclient_t *c);
/* The same, reconnecting with prev_slot (slot + 1) and the spans still held. */
int tc_hello_again(const char *sock, tclient_t *c, uint32_t prev_slot1, const uint32_t *held,
                   size_t nheld);
void tc_close(tclient_t *c);

/*
 * Run fn as another client: in a child process (one process has one
 * connected slot), after its own Hello. Returns fn's value as the child's
 * exit status (0..255), or -1 if the child could not say Hello or died.
 */
int tc_in_child(const char *sock, int (*fn)(tclient_t *c, void *arg), void *arg);

/* Refill: release spans and ask for count spans of class k. The reply is returned. */
int tc_refill(int fd, uint32_t k, uint32_t count, const uint32_t *release, size_t nrelease,
              Heapd__Envelope **reply);
int tc_large_alloc(int fd, uint64_t size, uint64_t align, int zero, Heapd__Envelope **reply);
int tc_large_free(int fd, uint32_t span, uint32_t gen);

/* The code of an Error reply, or 0 if reply is not an Error. */
int tc_error_code(const Heapd__Envelope *reply);

/* 1 if the peer closed fd (EOF or reset) within timeout_ms. */
int tc_closed(int fd, int timeout_ms);

/* Stats over a fresh control connection; the reply must be wire_free'd via *owner. */
Heapd__StatsReply *tc_stats(const char *sock, Heapd__Envelope **owner);
/* Run a check over a fresh control connection; returns nproblems, or -1. */
int64_t tc_check(const char *sock);
/* Sweep over a fresh control connection. 0 or -errno. */
int tc_sweep(const char *sock);
/* Wait until stats show `clients` clients (timeout_ms at most). 1 if so. */
int tc_wait_clients(const char *sock, uint32_t clients, int timeout_ms);

/* Run heapd with args (NULL-terminated) in the foreground; output into buf. Exit status. */
int tc_run_heapd(const char *const *args, char *buf, size_t buflen);

void tc_sleep_ms(int ms);

#endif
