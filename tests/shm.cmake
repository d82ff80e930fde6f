# SPDX-License-Identifier: MIT
# Tests of the shared layout and the algorithms on it (shm/).
heapd_check_test(test_sizeclass SOURCES test_sizeclass.c LIBS heapshm LABELS shm)
heapd_check_test(test_bitmap SOURCES test_bitmap.c LIBS heapshm LABELS shm TIMEOUT 120)
heapd_check_test(test_segment SOURCES test_segment.c LIBS heapshm LABELS shm TIMEOUT 120)
