# SPDX-License-Identifier: MIT
# Heap profiles: the shared records (shm/profrec.h), sampling in
# libheapclient, heapd serving them, and `heapctl profile`. Run them alone with
#   ctest -L profile
heapd_check_test(test_profile_shm SOURCES test_profile_shm.c LIBS heappages LABELS "shm;profile"
  TIMEOUT 120)
heapd_check_test(test_profile_client SOURCES e2e/test_profile_client.c
  LIBS heapclient_static heapd_harness heapshm LABELS "client;profile" TIMEOUT 300)

# The client program of the end-to-end tests and the README's walk-through:
# frame pointers, so that its stacks go past the allocating function.
add_executable(profile_prog e2e/profile_prog.c)
target_compile_options(profile_prog PRIVATE -fno-omit-frame-pointer)
target_link_libraries(profile_prog PRIVATE heapclient_static heapshm)
target_include_directories(profile_prog PRIVATE ${PROJECT_SOURCE_DIR}/client)

# End to end: profile_prog, heapctl and go tool pprof against a real heapd.
heapd_check_test(test_profile SOURCES e2e/test_profile.c
  LIBS heapd_harness heapctl_pprof heapshm LABELS profile TIMEOUT 900)
target_compile_options(test_profile PRIVATE "SHELL:-iquote ${PROJECT_SOURCE_DIR}/shm")
set_property(TEST test_profile APPEND PROPERTY ENVIRONMENT
  "HEAPCTL_BIN=$<TARGET_FILE:heapctl>" "PROFILE_PROG=$<TARGET_FILE:profile_prog>")
add_dependencies(test_profile profile_prog heapctl)
# The long run: samplers killed a thousand times.
add_test(NAME test_profile_long COMMAND test_profile)
set_tests_properties(test_profile_long PROPERTIES LABELS "profile;long" TIMEOUT 3600
  ENVIRONMENT "HEAPD_BIN=$<TARGET_FILE:heapd>;HEAPCTL_BIN=$<TARGET_FILE:heapctl>;PROFILE_PROG=$<TARGET_FILE:profile_prog>;PROFILE_KILLS=1000")

# Not a test: the cost of walking a sample's stack by frame pointers and by
# backtrace(), or by libunwind where the build finds it (a binary apart:
# linking libunwind replaces glibc's backtrace with its own). Run
# build/tests/bench_unwind*; client/profile.h says which the sampler uses.
add_executable(bench_unwind bench/bench_unwind.c)
target_compile_options(bench_unwind PRIVATE -fno-omit-frame-pointer)
target_link_libraries(bench_unwind PRIVATE Threads::Threads)
pkg_check_modules(BENCH_LIBUNWIND IMPORTED_TARGET libunwind)
if(BENCH_LIBUNWIND_FOUND)
  add_executable(bench_unwind_libunwind bench/bench_unwind.c)
  target_compile_options(bench_unwind_libunwind PRIVATE -fno-omit-frame-pointer)
  target_compile_definitions(bench_unwind_libunwind PRIVATE BENCH_LIBUNWIND=1)
  target_link_libraries(bench_unwind_libunwind PRIVATE Threads::Threads PkgConfig::BENCH_LIBUNWIND)
endif()

# Not a test either: sampling's cost to the loops of workloads 1 and 2, by
# phases off and on alternating in one process (see the file). Run
# build-bench/tests/bench_profile in a Release build.
if(TARGET heapclient_static AND TARGET heapd)
  add_executable(bench_profile bench/bench_profile.c)
  target_link_libraries(bench_profile PRIVATE heapclient_static heapd_harness)
  target_include_directories(bench_profile PRIVATE ${PROJECT_SOURCE_DIR}/client)
  target_compile_options(bench_profile PRIVATE "SHELL:-iquote ${PROJECT_SOURCE_DIR}/shm")
  target_compile_definitions(bench_profile PRIVATE BENCH_HEAPD_BIN="$<TARGET_FILE:heapd>")
  add_dependencies(bench_profile heapd)
endif()
