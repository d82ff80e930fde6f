# SPDX-License-Identifier: MIT
# Tests of libheapclient (client/), each against a real heapd on a temporary
# socket (harness.h), through the static library.
add_library(heapd_client_util STATIC e2e/client_util.c)
target_include_directories(heapd_client_util PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
target_link_libraries(heapd_client_util PUBLIC heapd_harness PkgConfig::CHECK)

heapd_check_test(test_client_api SOURCES e2e/test_client_api.c
  LIBS heapclient_static heapd_client_util heapshm LABELS client TIMEOUT 300)
heapd_check_test(test_client_procs SOURCES e2e/test_client_procs.c
  LIBS heapclient_static heapd_client_util heapshm LABELS client TIMEOUT 600)

# The README's example program, run as a test so that it stays true.
add_executable(client_example e2e/example.c)
target_link_libraries(client_example PRIVATE heapclient)
heapd_check_test(test_client_example SOURCES e2e/test_client_example.c
  LIBS heapd_client_util LABELS client TIMEOUT 120)
target_compile_definitions(test_client_example PRIVATE EXAMPLE_BIN="$<TARGET_FILE:client_example>")
