# SPDX-License-Identifier: MIT
# The benchmark suite (tests/bench/, run by scripts/bench): one driver per
# allocator, each the same workloads linked with one allocator, and the report
# generator. Benchmarks measure, they do not assert: nothing here is a test.
# A peer whose library or headers are missing is left out.

set(BENCH_DIR ${CMAKE_CURRENT_SOURCE_DIR}/bench)
set(BENCH_DRIVERS "")

add_library(bench_core OBJECT ${BENCH_DIR}/driver.c ${BENCH_DIR}/workloads.c ${BENCH_DIR}/util.c)
target_include_directories(bench_core PUBLIC ${BENCH_DIR})
target_link_libraries(bench_core PUBLIC Threads::Threads)

#   heapd_bench(NAME SOURCES... [LIBS libs...] [DEFS definitions...])
# builds bench_NAME from the shared workloads and NAME's allocator sources.
macro(heapd_bench name)
  cmake_parse_arguments(B "" "" "SOURCES;LIBS;DEFS" ${ARGN})
  add_executable(bench_${name} ${B_SOURCES})
  target_link_libraries(bench_${name} PRIVATE bench_core ${B_LIBS})
  target_compile_definitions(bench_${name} PRIVATE ${B_DEFS})
  list(APPEND BENCH_DRIVERS bench_${name})
endmacro()

heapd_bench(glibc SOURCES ${BENCH_DIR}/alloc_malloc.c DEFS BENCH_GLIBC)

find_path(BENCH_JEMALLOC_INC jemalloc/jemalloc.h)
find_library(BENCH_JEMALLOC_LIB jemalloc)
if(BENCH_JEMALLOC_INC AND BENCH_JEMALLOC_LIB)
  heapd_bench(jemalloc SOURCES ${BENCH_DIR}/alloc_malloc.c LIBS ${BENCH_JEMALLOC_LIB} DEFS BENCH_JEMALLOC)
endif()

find_path(BENCH_MIMALLOC_INC mimalloc.h)
find_library(BENCH_MIMALLOC_LIB mimalloc)
if(BENCH_MIMALLOC_INC AND BENCH_MIMALLOC_LIB)
  heapd_bench(mimalloc SOURCES ${BENCH_DIR}/alloc_malloc.c LIBS ${BENCH_MIMALLOC_LIB} DEFS BENCH_MIMALLOC)
endif()

find_path(BENCH_TCMALLOC_INC gperftools/malloc_extension_c.h)
find_library(BENCH_TCMALLOC_LIB tcmalloc_minimal)
if(BENCH_TCMALLOC_INC AND BENCH_TCMALLOC_LIB)
  heapd_bench(tcmalloc SOURCES ${BENCH_DIR}/alloc_malloc.c LIBS ${BENCH_TCMALLOC_LIB} DEFS BENCH_TCMALLOC)
endif()

find_path(BENCH_BOOST_INC boost/interprocess/managed_shared_memory.hpp)
include(CheckLanguage)
check_language(CXX)
if(BENCH_BOOST_INC AND CMAKE_CXX_COMPILER)
  enable_language(CXX)
  heapd_bench(boost SOURCES ${BENCH_DIR}/alloc_boost.cpp LIBS rt)
  set_target_properties(bench_boost PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
  target_include_directories(bench_boost PRIVATE ${BENCH_BOOST_INC})
endif()

# heapd itself, once the client library exists (client/ is configured before tests/).
if(TARGET heapclient_static AND TARGET heapd)
  heapd_bench(heapd SOURCES ${BENCH_DIR}/alloc_heapd.c LIBS heapclient_static heapd_harness
    DEFS BENCH_HEAPD_BIN="$<TARGET_FILE:heapd>")
  target_include_directories(bench_heapd PRIVATE ${PROJECT_SOURCE_DIR}/client)
  target_compile_options(bench_heapd PRIVATE "SHELL:-iquote ${PROJECT_SOURCE_DIR}/shm")
  add_dependencies(bench_heapd heapd)

  # heapd's named roots (workloads r1-r3, wl_roots.c): a driver of its own, so
  # that the allocator drivers' code stays exactly as it is.
  add_executable(bench_roots ${BENCH_DIR}/driver.c ${BENCH_DIR}/workloads.c ${BENCH_DIR}/util.c
    ${BENCH_DIR}/wl_roots.c ${BENCH_DIR}/alloc_heapd.c)
  target_include_directories(bench_roots PRIVATE ${BENCH_DIR} ${PROJECT_SOURCE_DIR}/client)
  target_compile_definitions(bench_roots PRIVATE BENCH_ROOTS_DRIVER BENCH_HEAPD_BIN="$<TARGET_FILE:heapd>")
  target_link_libraries(bench_roots PRIVATE heapclient_static heapd_harness Threads::Threads)
  add_dependencies(bench_roots heapd)
  list(APPEND BENCH_DRIVERS bench_roots)
endif()

add_executable(bench_report ${BENCH_DIR}/report.c)
target_link_libraries(bench_report PRIVATE m)

# `cmake --build DIR --target bench_suite` builds every driver that could be configured.
add_custom_target(bench_suite DEPENDS ${BENCH_DRIVERS} bench_report)
