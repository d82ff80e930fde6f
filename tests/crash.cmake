# SPDX-License-Identifier: MIT
# Crash points (tests/test_crash.c): each change to the arena's metadata runs
# in a forked daemon killed at every commit, then the arena is recovered
# (recovery killed too) and checked. Run them alone with
#   ctest -L crash
# test_crash_long kills recovery after every kill point, on bigger scenarios
# (labels crash, long).
heapd_check_test(test_crash SOURCES test_crash.c LIBS heapd_core LABELS crash TIMEOUT 300)

add_test(NAME test_crash_long COMMAND test_crash)
set_tests_properties(test_crash_long PROPERTIES LABELS "crash;long" TIMEOUT 3600
  ENVIRONMENT "CRASH_LONG=1")
