# SPDX-License-Identifier: MIT
# Heap profiles (issue 12): the shared records (shm/profrec.h), sampling in
# libheapclient, heapd serving them, and `heapctl profile`. Run them alone with
#   ctest -L profile
heapd_check_test(test_profile_shm SOURCES test_profile_shm.c LIBS heappages LABELS "shm;profile"
  TIMEOUT 120)
heapd_check_test(test_profile_client SOURCES test_profile_client.c
  LIBS heapclient_static heapd_client_util heapshm LABELS "client;profile" TIMEOUT 300)
