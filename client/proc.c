// SPDX-License-Identifier: MIT
/*
 * proc.c - the client process's state (see proc.h).
 *
 * fork: the prepare handler takes the lock (and the fork hooks' own lock),
 * so the child inherits a quiet state. The child runs the resets the layers
 * above registered (the transport closes its copy of the parent's socket;
 * the caches forget their spans, and those of threads that do not exist in
 * the child), then forgets the slot (the parent still uses it); it connects
 * afresh on first use. The mapping is inherited, so objects stay valid.
 */
#include "proc.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROC_FORK_HOOKS 4

proc_state_t proc_g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.flags_slot = UINT32_MAX,
	.seg = { .dir_fd = -1, .lock_fd = -1, .meta_fd = -1, .client_meta_fd = -1,
	         .client_data_fd = -1, .data_fd = -1 },
};

static pthread_once_t proc_once = PTHREAD_ONCE_INIT;
/*
 * The fork hooks have a lock of their own: a layer registers from wherever
 * it first runs, with proc_g.lock held (the transport, the sampler) or not
 * (the caches' pthread_once, before their first proc_lock), and two threads
 * may register at once. Taken after proc_g.lock when both are held.
 */
static pthread_mutex_t fork_hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*fork_hooks[PROC_FORK_HOOKS])(void); /* fork_hooks_lock */
static int nfork_hooks;                           /* fork_hooks_lock */

static void atfork_prepare(void)
{
	proc_lock();
	pthread_mutex_lock(&fork_hooks_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&fork_hooks_lock);
	proc_unlock();
}

static void atfork_child(void)
{
	/* held across fork by a thread that does not exist here */
	pthread_mutex_init(&fork_hooks_lock, NULL);
	pthread_mutex_init(&proc_g.lock, NULL);
	proc_g.holder = pthread_self();
	for (int i = 0; i < nfork_hooks; i++)
		fork_hooks[i]();
	proc_forget_slot_locked();
	proc_unlock();
}

static void init_once(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void proc_init(void)
{
	pthread_once(&proc_once, init_once);
}

void proc_set_cache_hooks(const proc_cache_hooks_t *hooks)
{
	proc_g.hooks = hooks;
}

void proc_at_fork_child(void (*fn)(void))
{
	pthread_mutex_lock(&fork_hooks_lock);
	for (int i = 0; i < nfork_hooks; i++)
		if (fork_hooks[i] == fn)
			goto out;
	assert(nfork_hooks < PROC_FORK_HOOKS);
	fork_hooks[nfork_hooks++] = fn;
out:
	pthread_mutex_unlock(&fork_hooks_lock);
}

void proc_register_locked(proc_cache_t *c)
{
	assert(proc_held());
	c->epoch = atomic_load(&proc_g.epoch);
	c->prev = NULL;
	c->next = proc_g.registry;
	if (proc_g.registry)
		proc_g.registry->prev = c;
	proc_g.registry = c;
}

void proc_unregister_locked(proc_cache_t *c)
{
	assert(proc_held());
	if (c->prev)
		c->prev->next = c->next;
	else
		proc_g.registry = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

int proc_held_spans_locked(uint32_t **spans, size_t *n)
{
	uint64_t epoch = atomic_load(&proc_g.epoch);
	size_t cap = 0;

	assert(proc_held());
	*spans = NULL;
	*n = 0;
	for (proc_cache_t *c = proc_g.registry; c; c = c->next) {
		if (c->epoch != epoch)
			continue;
		if (proc_g.hooks->list_spans(c, spans, n, &cap) < 0) {
			free(*spans);
			*spans = NULL;
			*n = 0;
			return -ENOMEM;
		}
	}
	return 0;
}

void proc_drop_all_locked(void)
{
	assert(proc_held());
	for (proc_cache_t *c = proc_g.registry; c; c = c->next)
		proc_g.hooks->drop(c);
}

int proc_adopt_arena_locked(int fds[2], uint64_t arena_id)
{
	char why[256];
	int rc;

	assert(proc_held());
	if (atomic_load(&proc_g.mapped)) {
		close(fds[0]);
		close(fds[1]);
		fds[0] = fds[1] = -1;
		return arena_id == proc_g.arena_id ? 0 : -ESTALE;
	}
	rc = segment_attach(fds[0], fds[1], &proc_g.seg, why, sizeof(why));
	fds[0] = fds[1] = -1;
	if (rc < 0)
		return rc;
	/* A client that shrinks the data file must not kill this process (shm/layout.h). */
	segment_guard(&proc_g.seg);
	proc_g.arena_id = arena_id;
	atomic_store_explicit(&proc_g.mapped, 1, memory_order_release);
	return 0;
}

void proc_set_slot_locked(uint32_t slot)
{
	assert(proc_held());
	if (!proc_g.have_slot || slot != proc_g.slot) {
		/*
		 * A new slot: our caches' spans are no longer ours to hand back or
		 * list; each thread drops them at its next slow path (the old slot
		 * keeps them for this process meanwhile).
		 */
		atomic_fetch_add(&proc_g.epoch, 1);
	}
	proc_g.slot = slot;
	proc_g.have_slot = 1;
	atomic_store(&proc_g.flags_slot, slot);
}

void proc_forget_slot_locked(void)
{
	assert(proc_held());
	proc_g.have_slot = 0;
	atomic_store(&proc_g.flags_slot, UINT32_MAX);
	atomic_fetch_add(&proc_g.epoch, 1);
	atomic_store(&proc_g.large_received, 0);
}
