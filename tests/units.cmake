# SPDX-License-Identifier: MIT
# Unit suites of the modules that the end-to-end tests only reach indirectly,
# one Check suite per module: the central lists, large objects, the wire
# format and its sockets, the client's lower layers and its thread caches.
# Each is quick; run them all with
#   ctest -L unit
heapd_check_test(test_wire SOURCES test_wire.c LIBS heapproto Threads::Threads
  LABELS unit TIMEOUT 120)

# The central lists' suite also checks the asserts of the *_locked functions
# where they are compiled in (HEAPD_DEBUG builds keep assert()).
heapd_check_test(test_central SOURCES test_central.c
  LIBS heapd_core Threads::Threads LABELS unit TIMEOUT 120)

heapd_check_test(test_large SOURCES test_large.c LIBS heapd_core LABELS unit TIMEOUT 120)

# The client's layers are reached through their private headers: hidden
# visibility limits only the shared library, so the static one links them.
heapd_check_test(test_client_layers SOURCES test_client_layers.c
  LIBS heapclient_static heapshm heapproto Threads::Threads LABELS unit TIMEOUT 120)

# The thread caches, against a real heapd on a temporary socket.
heapd_check_test(test_mcache SOURCES test_mcache.c
  LIBS heapclient_static heapshm Threads::Threads LABELS unit TIMEOUT 120)
add_dependencies(test_mcache heapd)

# heapctl's ELF reader, on files cut short and cut while it reads them.
heapd_check_test(test_elfsym SOURCES test_elfsym.c LIBS heapctl_pprof Threads::Threads
  LABELS "unit;profile" TIMEOUT 120)

# heapctl's profile writer: what clients wrote reaches the terminal escaped.
heapd_check_test(test_pprof SOURCES test_pprof.c LIBS heapctl_pprof LABELS "unit;profile"
  TIMEOUT 60)
