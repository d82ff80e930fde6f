// SPDX-License-Identifier: MIT
/*
 * hostile_suites.h - the suites of test_hostile, one per file:
 *   hostile_trust.c     the trust boundary: metadata, the data file, the arena
 *                       directory and the socket;
 *   hostile_sessions.c  sessions heapd ends, stale messages, a zombie leader,
 *                       re-adoption;
 *   hostile_limits.c    quotas, slot and connection limits, control floods,
 *                       a full arena, malformed input.
 * $HOSTILE_LONG=1 makes the tests that loop run many more rounds.
 */
#ifndef HEAPD_TESTS_HOSTILE_SUITES_H
#define HEAPD_TESTS_HOSTILE_SUITES_H

#include "harness/check_main.h"

#define HOSTILE_TIMEOUT_S 120 /* per test */

Suite *hostile_trust_suite(void);
Suite *hostile_sessions_suite(void);
Suite *hostile_limits_suite(void);

#endif
