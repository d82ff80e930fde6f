# SPDX-License-Identifier: MIT
# Named roots: the API end to end against a real heapd, hostile
# requests on the wire, heapctl roots, and the crash test that kills heapd
# at every commit write of a bind, replace and unbind, recovery included.
# Run them alone with
#   ctest -L roots
# The long versions (more increments, more hammering, more sequences under
# the kill) carry the "long" label too.
heapd_check_test(test_roots SOURCES e2e/test_roots.c
  LIBS heapclient_static heapd_harness heapshm
  LABELS roots TIMEOUT 900)
set_property(TEST test_roots APPEND PROPERTY ENVIRONMENT "HEAPCTL_BIN=$<TARGET_FILE:heapctl>")

add_test(NAME test_roots_long COMMAND test_roots)
set_tests_properties(test_roots_long PROPERTIES LABELS "roots;long" TIMEOUT 3600
  ENVIRONMENT "HEAPD_BIN=$<TARGET_FILE:heapd>;HEAPCTL_BIN=$<TARGET_FILE:heapctl>;ROOTS_COUNTER_K=5000;ROOTS_HAMMER_OPS=240000")

heapd_check_test(test_roots_crash SOURCES e2e/test_roots_crash.c
  LIBS heapclient_static heapd_harness heapshm LABELS "roots;failures" TIMEOUT 1800)
add_test(NAME test_roots_crash_long COMMAND test_roots_crash)
set_tests_properties(test_roots_crash_long PROPERTIES LABELS "roots;failures;long" TIMEOUT 7200
  ENVIRONMENT "HEAPD_BIN=$<TARGET_FILE:heapd>;ROOTS_CRASH_SEEDS=40")
