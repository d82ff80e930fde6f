# SPDX-License-Identifier: MIT
# The fuzz target for the daemon's request handling (tests/fuzz/fuzz_session.c).
#
# Every build replays the seed corpus and the regressions (each crash the
# fuzzer ever found) through a plain driver. With -DHEAPD_FUZZ=ON (clang,
# normally with -DHEAPD_SANITIZE=ON) the libFuzzer binary is built too, and
# runs for 60 s in the default test run and 30 min under the "long" label:
#   CC=clang cmake -S . -B build-fuzz -DHEAPD_FUZZ=ON -DHEAPD_SANITIZE=ON
# The regressions folder's README is not an input; with no regression in it
# the replay runs the seeds alone.
file(GLOB HEAPD_FUZZ_SEEDS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/*)
file(GLOB HEAPD_FUZZ_REGRESSIONS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/regressions/*)
list(FILTER HEAPD_FUZZ_REGRESSIONS EXCLUDE REGEX "/README\\.md$")

add_executable(fuzz_session_replay fuzz/fuzz_session.c)
target_link_libraries(fuzz_session_replay PRIVATE heapd_core)
add_test(NAME fuzz_session_replay COMMAND fuzz_session_replay ${HEAPD_FUZZ_SEEDS} ${HEAPD_FUZZ_REGRESSIONS})
set_tests_properties(fuzz_session_replay PROPERTIES LABELS fuzz TIMEOUT 120)

if(HEAPD_FUZZ)
  add_executable(fuzz_session fuzz/fuzz_session.c)
  target_compile_definitions(fuzz_session PRIVATE HEAPD_LIBFUZZER=1)
  target_compile_options(fuzz_session PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_session PRIVATE -fsanitize=fuzzer)
  target_link_libraries(fuzz_session PRIVATE heapd_core)
  set(HEAPD_FUZZ_WORK ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus)
  # New inputs go to the build directory; the committed corpus is read only.
  foreach(run "smoke;60;fuzz" "soak;1800;fuzz\\;long")
    list(GET run 0 name)
    list(GET run 1 seconds)
    list(GET run 2 labels)
    add_test(NAME fuzz_session_${name}
      COMMAND sh -c "mkdir -p '${HEAPD_FUZZ_WORK}' && exec '$<TARGET_FILE:fuzz_session>' -max_total_time=${seconds} -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 '${HEAPD_FUZZ_WORK}' '${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus'")
    set_tests_properties(fuzz_session_${name} PROPERTIES LABELS "${labels}" TIMEOUT ${seconds}0)
  endforeach()
endif()
