# SPDX-License-Identifier: MIT
# heapctl, the operator's command line: a control client of the heapd
# protocol (included from client/CMakeLists.txt).
add_executable(heapctl heapctl.c heapctl_format.c)
target_link_libraries(heapctl PRIVATE heapproto m)
install(TARGETS heapctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
