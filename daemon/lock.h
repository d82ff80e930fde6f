// SPDX-License-Identifier: MIT
/*
 * lock.h - assert that the caller holds a mutex, for *_locked functions.
 * Debug builds try the lock: a default mutex held by anyone (this thread
 * included) makes trylock fail, so success means nobody held it.
 */
#ifndef HEAPD_DAEMON_LOCK_H
#define HEAPD_DAEMON_LOCK_H

#include <assert.h>
#include <pthread.h>

static inline void lock_assert_held(pthread_mutex_t *m)
{
#ifndef NDEBUG
	if (pthread_mutex_trylock(m) == 0) {
		pthread_mutex_unlock(m);
		assert(!"a *_locked function was called without its lock");
	}
#else
	(void)m;
#endif
}

#endif
