# SPDX-License-Identifier: MIT
# Tests of heapd (daemon/): the protocol end to end, start-up and shutdown,
# and the daemon's core run in-process.
heapd_check_test(test_daemon SOURCES e2e/test_daemon.c
  LIBS heapshm heapctl_control LABELS daemon TIMEOUT 300)
heapd_check_test(test_daemon_life SOURCES e2e/test_daemon_life.c LIBS heapshm LABELS daemon TIMEOUT 300)
heapd_check_test(test_daemon_core SOURCES test_daemon_core.c LIBS heapd_core LABELS daemon TIMEOUT 300)
