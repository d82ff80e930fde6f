// SPDX-License-Identifier: MIT
/*
 * liblock.c - the library lock, a writer-preferring rwlock. See liblock.h.
 */
#include "harness/liblock.h"

#include <pthread.h>

#include "heapclient.h"

static pthread_rwlock_t lib_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

void hlock_enter(void)
{
	pthread_rwlock_rdlock(&lib_lock);
}

void hlock_leave(void)
{
	pthread_rwlock_unlock(&lib_lock);
}

void hlock_exclusive(void)
{
	pthread_rwlock_wrlock(&lib_lock);
}

void hlock_exclusive_end(void)
{
	pthread_rwlock_unlock(&lib_lock);
}

int hlock_trim(void)
{
	hlock_enter();
	int rc = hc_trim();
	hlock_leave();
	return rc;
}
