# SPDX-License-Identifier: MIT
# Failures and hostile input (the crash-safety guarantees): clients killed at
# random points, the daemon killed and restarted under working clients (among
# them zombie-leader processes, sessions heapd ends, and late LargeFrees), and
# the failure cases that fit no module's suite. Run them alone with
#   ctest -L failures
# The soaks' long versions (thousands of kills) carry the "long" label too.
heapd_check_test(test_soak_clients SOURCES e2e/test_soak_clients.c
  LIBS heapclient_static heapshm Threads::Threads LABELS failures TIMEOUT 300)

#   heapd_soak_long(NAME TEST TIMEOUT ENV...) runs TEST's binary again with ENV, labelled long.
function(heapd_soak_long name test timeout)
  add_test(NAME ${name} COMMAND ${test})
  set_tests_properties(${name} PROPERTIES LABELS "failures;long" TIMEOUT ${timeout}
    ENVIRONMENT "HEAPD_BIN=$<TARGET_FILE:heapd>;${ARGN}")
endfunction()

# Kills leave their large objects (test_soak_clients.c): 20000 need more than the default 1G.
heapd_soak_long(test_soak_clients_long test_soak_clients 3600 "SOAK_KILLS=20000;SOAK_TIMEOUT=3000"
  "SOAK_ARENA=4G")

heapd_check_test(test_soak_daemon SOURCES e2e/test_soak_daemon.c
  LIBS heapclient_static heapshm Threads::Threads LABELS failures TIMEOUT 400)
heapd_soak_long(test_soak_daemon_long test_soak_daemon 3600 "SOAK_RESTARTS=1000;SOAK_TIMEOUT=3000")

heapd_check_test(test_failures SOURCES e2e/test_failures.c
  LIBS heapclient_static heapshm LABELS failures TIMEOUT 300)
