// SPDX-License-Identifier: MIT
/*
 * tmpdir.h - a temporary directory for a suite or a test, removed with
 * everything under it. Arenas that tests punch and shrink go to memory
 * (/dev/shm, a tmpfs: a punched hole frees memory at once) where it can be
 * written, sockets and other files to $TMPDIR or /tmp.
 */
#ifndef HEAPD_TESTS_HARNESS_TMPDIR_H
#define HEAPD_TESTS_HARNESS_TMPDIR_H

#include <stddef.h>

enum { HTMP_DISK, HTMP_MEMORY };

/*
 * Make a new directory named prefix-XXXXXX, in memory (where is
 * HTMP_MEMORY) or on disk, its path into dir. Exits the process on
 * failure: it runs in fixtures, where Check cannot report an assertion.
 */
void htmp_make(char *dir, size_t len, const char *prefix, int where);

/* Remove dir and everything under it; a path that is not there is no error. */
void htmp_remove(const char *dir);

#endif
