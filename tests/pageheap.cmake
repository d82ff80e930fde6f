# SPDX-License-Identifier: MIT
# The page heap and the invariant checker (shm/pageheap.c, shm/check.c).
# Run both with: ctest -L pageheap
#
# shm/check.h has the same name as the Check framework's <check.h>, and
# heapshm puts shm/ on the -I path, where <check.h> would find it first. So
# these suites link heapshm without its include path and see shm/ through
# -iquote only: <check.h> is the framework, "check.h" the heap checker.
set(HEAPD_PAGEHEAP_IQUOTE "SHELL:-iquote ${PROJECT_SOURCE_DIR}/shm" "SHELL:-iquote ${PROJECT_BINARY_DIR}/shm")
foreach(t test_pageheap test_check)
  heapd_check_test(${t} SOURCES ${t}.c LIBS $<LINK_ONLY:heapshm> LABELS "shm;pageheap" TIMEOUT 300)
  target_compile_options(${t} PRIVATE ${HEAPD_PAGEHEAP_IQUOTE})
  add_dependencies(${t} heapshm)
endforeach()

# A benchmark, never a test: build it, run it by hand (tests/bench/bench_pageheap [DIR]).
add_executable(bench_pageheap bench/bench_pageheap.c)
target_link_libraries(bench_pageheap PRIVATE heapshm)
set_target_properties(bench_pageheap PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/bench)
