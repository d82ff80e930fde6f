# SPDX-License-Identifier: MIT
# Hostile clients (the trust boundary and ownership): a real heapd and
# real client processes that attack the metadata, the data file, the arena
# and socket paths, sessions, quotas and limits. Run them alone with
#   ctest -L hostile
# test_hostile_long runs the session suite with many more rounds (labels
# hostile and long).
heapd_check_test(test_hostile
  SOURCES e2e/hostile/test_hostile.c e2e/hostile/hostile_trust.c e2e/hostile/hostile_sessions.c
          e2e/hostile/hostile_limits.c
  LIBS heapclient_static heapshm heapproto Threads::Threads
  LABELS hostile TIMEOUT 600)
add_dependencies(test_hostile heapd heapctl)
set_property(TEST test_hostile APPEND PROPERTY ENVIRONMENT "HEAPCTL_BIN=$<TARGET_FILE:heapctl>")

add_test(NAME test_hostile_long COMMAND test_hostile)
set_tests_properties(test_hostile_long PROPERTIES LABELS "hostile;long" TIMEOUT 3600
  ENVIRONMENT "HEAPD_BIN=$<TARGET_FILE:heapd>;HEAPCTL_BIN=$<TARGET_FILE:heapctl>;HOSTILE_LONG=1;CK_RUN_SUITE=sessions")
