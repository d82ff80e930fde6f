# SPDX-License-Identifier: MIT
# The page heap and the invariant checker (shm/pageheap.c, shm/check.c).
# Run both with: ctest -L pageheap
heapd_check_test(test_pageheap SOURCES test_pageheap.c LIBS heappages LABELS "shm;pageheap" TIMEOUT 300)
heapd_check_test(test_check SOURCES test_check.c LIBS heappages LABELS "shm;pageheap" TIMEOUT 120)

# A benchmark, never a test: build it, run it by hand (tests/bench/bench_pageheap [DIR]).
add_executable(bench_pageheap bench/bench_pageheap.c)
target_link_libraries(bench_pageheap PRIVATE heappages)
set_target_properties(bench_pageheap PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/bench)
