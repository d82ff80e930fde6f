// SPDX-License-Identifier: MIT
/*
 * liblock.h - the library lock of a process that writes raw frames on
 * libheapclient's own connection (libraw.h).
 *
 * Such a frame must not land inside a request of another thread, nor
 * before the Hello of a new connection. So every call the harness makes
 * into the library for such a process (books, views, trims) holds this
 * lock shared, and a raw frame is written holding it alone. Writers come
 * first, so that a thread that allocates without pause cannot keep a raw
 * frame out. In a process that writes no raw frames the lock costs an
 * uncontended read lock and nothing else.
 */
#ifndef HEAPD_TESTS_HARNESS_LIBLOCK_H
#define HEAPD_TESTS_HARNESS_LIBLOCK_H

/* Around a call into the library. */
void hlock_enter(void);
void hlock_leave(void);

/* Around a raw frame: the library to this thread alone. */
void hlock_exclusive(void);
void hlock_exclusive_end(void);

/* hc_trim under the lock. */
int hlock_trim(void);

#endif
