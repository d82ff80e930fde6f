# SPDX-License-Identifier: MIT
# Unit suites of the modules that the end-to-end tests only reach indirectly,
# one Check suite per module: the central lists, large objects, the wire
# format and its sockets, the client's lower layers and its thread caches.
# Each is quick; run them all with
#   ctest -L unit
heapd_check_test(test_wire SOURCES test_wire.c LIBS heapproto Threads::Threads
  LABELS unit TIMEOUT 120)

