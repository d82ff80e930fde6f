# SPDX-License-Identifier: MIT
# Heap profiles (issue 12): the shared records (shm/profrec.h), sampling in
# libheapclient, heapd serving them, and `heapctl profile`. Run them alone with
#   ctest -L profile
heapd_check_test(test_profile_shm SOURCES test_profile_shm.c LIBS heappages LABELS "shm;profile"
  TIMEOUT 120)
heapd_check_test(test_profile_client SOURCES test_profile_client.c
  LIBS heapclient_static heapd_client_util heapshm LABELS "client;profile" TIMEOUT 300)

# The client program of the end-to-end tests and the README's walk-through:
# frame pointers, so that its stacks go past the allocating function.
add_executable(profile_prog e2e/profile_prog.c)
target_compile_options(profile_prog PRIVATE -fno-omit-frame-pointer)
target_link_libraries(profile_prog PRIVATE heapclient_static heapshm)
target_include_directories(profile_prog PRIVATE ${PROJECT_SOURCE_DIR}/client)

# End to end: profile_prog, heapctl and go tool pprof against a real heapd.
heapd_check_test(test_profile SOURCES test_profile.c
  LIBS heapd_harness heapd_ops_test heapctl_pprof heapshm LABELS profile TIMEOUT 900)
target_compile_options(test_profile PRIVATE "SHELL:-iquote ${PROJECT_SOURCE_DIR}/shm")
set_property(TEST test_profile APPEND PROPERTY ENVIRONMENT
  "HEAPCTL_BIN=$<TARGET_FILE:heapctl>" "PROFILE_PROG=$<TARGET_FILE:profile_prog>")
add_dependencies(test_profile profile_prog heapctl)
# The long run: samplers killed a thousand times.
add_test(NAME test_profile_long COMMAND test_profile)
set_tests_properties(test_profile_long PROPERTIES LABELS "profile;long" TIMEOUT 3600
  ENVIRONMENT "HEAPD_BIN=$<TARGET_FILE:heapd>;HEAPCTL_BIN=$<TARGET_FILE:heapctl>;PROFILE_PROG=$<TARGET_FILE:profile_prog>;PROFILE_KILLS=1000")
