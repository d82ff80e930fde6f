# SPDX-License-Identifier: MIT
# Tests of libheapclient (client/), each against a real heapd on a temporary
# socket (harness/heapd.h), through the static library.
heapd_check_test(test_client_api SOURCES e2e/test_client_api.c
  LIBS heapclient_static heapshm LABELS client TIMEOUT 300)
heapd_check_test(test_client_procs SOURCES e2e/test_client_procs.c
  LIBS heapclient_static heapshm LABELS client TIMEOUT 600)

# The README's example program, run as a test so that it stays true.
add_executable(client_example e2e/example.c)
target_link_libraries(client_example PRIVATE heapclient)
heapd_check_test(test_client_example SOURCES e2e/test_client_example.c LABELS client TIMEOUT 120)
target_compile_definitions(test_client_example PRIVATE EXAMPLE_BIN="$<TARGET_FILE:client_example>")
