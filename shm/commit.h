// SPDX-License-Identifier: MIT
/*
 * commit.h - the ordering point between the steps of a change to the
 * metadata, and the hook that crash tests use to stop there.
 *
 * Every multi-step change to the span table, the page map or the header
 * (shm/span.c, shm/pageheap.c, recovery) separates its steps with
 * shm_commit(): a release fence, so that a process killed after it has all
 * the earlier stores in the shared mapping, and a count. A test arms
 * shm_commit_kill_at (heapd reads $HEAPD_TEST_KILL_AFTER_COMMITS at start)
 * and the process _exits with SHM_COMMIT_KILLED right after that many
 * commits: the crash tests run the real write sequence and stop it at
 * every point in turn, instead of writing intermediate states by hand.
 */
#ifndef HEAPD_SHM_COMMIT_H
#define HEAPD_SHM_COMMIT_H

#include <stdatomic.h>
#include <stdint.h>

#define SHM_COMMIT_KILLED 86 /* exit status of a process stopped by the hook */

extern _Atomic uint64_t shm_commit_kill_at; /* 0: off; else _exit at that commit */
extern _Atomic uint64_t shm_commits;        /* commits so far, while the hook is armed */

/* Count a commit of an armed process, and _exit at the armed one. */
void shm_commit_count(void);

static inline void shm_commit(void)
{
	atomic_thread_fence(memory_order_release);
	if (__builtin_expect(atomic_load_explicit(&shm_commit_kill_at, memory_order_relaxed) != 0, 0))
		shm_commit_count();
}

/* Arm the hook from $HEAPD_TEST_KILL_AFTER_COMMITS (unset or 0: off). */
void shm_commit_arm_from_env(void);

#endif
