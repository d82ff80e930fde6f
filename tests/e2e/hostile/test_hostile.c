// SPDX-License-Identifier: MIT
/*
 * test_hostile.c - clients that attack heapd and the processes they share
 * the arena with, each against a real heapd and real client processes
 * (the trust boundary and ownership). The suites are listed in
 * hostile_suites.h. Run one alone with CK_RUN_SUITE=trust (or sessions,
 * limits).
 */
#include <stdlib.h>

#include "harness/check_main.h"
#include "hostile_suites.h"

TEST_SUITES(hostile_trust_suite, hostile_sessions_suite, hostile_limits_suite);
