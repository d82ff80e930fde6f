# SPDX-License-Identifier: MIT
# Tests of heapd (daemon/): the protocol end to end, start-up and shutdown,
# and the daemon's core run in-process.
add_library(heapd_daemon_testutil STATIC test_daemon_util.c)
target_link_libraries(heapd_daemon_testutil PUBLIC heapd_harness heapshm)
heapd_check_test(test_daemon SOURCES e2e/test_daemon.c
  LIBS heapd_daemon_testutil heapd_harness heapd_core LABELS daemon TIMEOUT 300)
heapd_check_test(test_daemon_life SOURCES e2e/test_daemon_life.c
  LIBS heapd_daemon_testutil heapd_harness heapd_core LABELS daemon TIMEOUT 300)
heapd_check_test(test_daemon_core SOURCES test_daemon_core.c LIBS heapd_core LABELS daemon TIMEOUT 300)
