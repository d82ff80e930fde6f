# SPDX-License-Identifier: MIT
# Operations tests: heapctl, scavenging, systemd units and socket activation,
# and installing the package for an outside program. Run them alone with
#   ctest -L ops
# The units under a real systemd have a label of their own, for that test
# needs root and boots a container:
#   ctest -L systemd-boot
set(HEAPD_OPS_ENV "HEAPCTL_BIN=$<TARGET_FILE:heapctl>")

heapd_check_test(test_heapctl SOURCES e2e/test_heapctl.c LABELS ops TIMEOUT 180)
set_property(TEST test_heapctl APPEND PROPERTY ENVIRONMENT ${HEAPD_OPS_ENV})

heapd_check_test(test_scavenge SOURCES e2e/test_scavenge.c LIBS heapclient_static LABELS ops TIMEOUT 300)
set_property(TEST test_scavenge APPEND PROPERTY ENVIRONMENT ${HEAPD_OPS_ENV})

# Socket activation and the notify protocol; skipped without systemd-socket-activate.
find_program(HEAPD_SOCKET_ACTIVATE systemd-socket-activate)
heapd_check_test(test_systemd SOURCES e2e/test_systemd.c LABELS ops TIMEOUT 120)
set_property(TEST test_systemd APPEND PROPERTY ENVIRONMENT ${HEAPD_OPS_ENV}
  "SOCKET_ACTIVATE_BIN=${HEAPD_SOCKET_ACTIVATE}")
set_tests_properties(test_systemd PROPERTIES SKIP_RETURN_CODE 77)

# These two install the build tree into temporary prefixes, so they need
# everything built, and take turns writing the build's install manifest.
if(HEAPD_SANITIZE)
  set(HEAPD_OPS_CFLAGS "-fsanitize=address,undefined")
endif()
set(HEAPD_OPS_SCRIPT_ENV
  "HEAPD_BUILD_DIR=${PROJECT_BINARY_DIR}" "HEAPD_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  "HEAPD_LIBDIR=${CMAKE_INSTALL_LIBDIR}" "CMAKE=${CMAKE_COMMAND}" "CC=${CMAKE_C_COMPILER}"
  "HEAPD_TEST_CFLAGS=${HEAPD_OPS_CFLAGS}")
add_test(NAME test_systemd_units COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_systemd_units.sh)
add_test(NAME test_install COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_install.sh)
set_tests_properties(test_systemd_units test_install PROPERTIES
  ENVIRONMENT "${HEAPD_OPS_SCRIPT_ENV}" LABELS ops RESOURCE_LOCK heapd_install TIMEOUT 300)
set_tests_properties(test_systemd_units PROPERTIES SKIP_RETURN_CODE 77)

# Boots a Debian 12 root with systemd-nspawn, installs heapd into it with
# prefix /usr, and drives heapd.socket and heapd.service there (see the
# script). It installs from the build tree too, so it takes the same lock.
add_test(NAME test_systemd_boot COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_systemd_boot.sh)
set_tests_properties(test_systemd_boot PROPERTIES
  ENVIRONMENT "${HEAPD_OPS_SCRIPT_ENV}" LABELS systemd-boot RESOURCE_LOCK heapd_install
  SKIP_RETURN_CODE 77 TIMEOUT 900)
