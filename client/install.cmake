# SPDX-License-Identifier: MIT
# Installing libheapclient for other programs: the libraries, heapclient.h,
# a pkg-config file (heapclient.pc), a CMake package (find_package(HeapClient)
# gives HeapClient::heapclient and HeapClient::heapclient_static), and the
# man pages. Included from client/CMakeLists.txt once the library targets
# exist. heapctl installs itself (tools/heapctl/), heapd from daemon/, the
# systemd units from systemd/.
#
# libheapclient.a is built with the objects of the internal static libraries
# heapshm and heapproto inside it (client/CMakeLists.txt), so it stands
# alone; what it still needs from the system is named here for the
# installed package: protobuf-c, threads and librt.
include(CMakePackageConfigHelpers)

set(HEAPCLIENT_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/HeapClient")

target_link_libraries(heapclient_static INTERFACE
  "$<INSTALL_INTERFACE:protobuf-c>" "$<INSTALL_INTERFACE:Threads::Threads>" "$<INSTALL_INTERFACE:rt>")
target_include_directories(heapclient INTERFACE "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
target_include_directories(heapclient_static INTERFACE "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")

install(TARGETS heapclient heapclient_static EXPORT HeapClientTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
install(FILES heapclient.h DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

# The CMake package.
install(EXPORT HeapClientTargets NAMESPACE HeapClient:: DESTINATION "${HEAPCLIENT_CMAKEDIR}")
configure_package_config_file(HeapClientConfig.cmake.in "${CMAKE_CURRENT_BINARY_DIR}/HeapClientConfig.cmake"
  INSTALL_DESTINATION "${HEAPCLIENT_CMAKEDIR}")
# Before 1.0 a minor release may change the API, so only the same minor version is compatible.
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/HeapClientConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/HeapClientConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/HeapClientConfigVersion.cmake" DESTINATION "${HEAPCLIENT_CMAKEDIR}")

# The pkg-config file finds the prefix relative to itself, so it stays
# right under `cmake --install --prefix` and DESTDIR.
set(pcdir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(HEAPCLIENT_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH rel "/prefix/${pcdir}" "/prefix")
  string(REGEX REPLACE "/$" "" rel "${rel}")
  set(HEAPCLIENT_PC_PREFIX "\${pcfiledir}/${rel}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(HEAPCLIENT_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(HEAPCLIENT_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
configure_file(heapclient.pc.in "${CMAKE_CURRENT_BINARY_DIR}/heapclient.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/heapclient.pc" DESTINATION "${pcdir}")

# The library's man page (heapd(8) and heapctl(1) are installed with their programs).
install(FILES libheapclient.3 DESTINATION "${CMAKE_INSTALL_MANDIR}/man3")
