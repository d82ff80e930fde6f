// SPDX-License-Identifier: MIT
/*
 * heapclient.h - libheapclient: objects in memory shared by every process
 * attached to the same heapd.
 *
 * A process links libheapclient and allocates as with malloc. The objects
 * live in the daemon's arena, which every attached process maps; any process
 * may read, write and free an object that another one allocated. Hand
 * objects between processes as offsets (hc_ptr_to_off / hc_off_to_ptr);
 * raw pointers are equal in every process too when the arena could be mapped
 * at the daemon's address hint, which is the usual case.
 *
 *     // process A                          // process B
 *     char *s = hc_malloc(64);              char *s = hc_off_to_ptr(off);
 *     strcpy(s, "hello");                   puts(s);
 *     send(off = hc_ptr_to_off(s));         hc_free(s);
 *
 * The connection to heapd is made on first use (or by hc_connect). Every
 * function is thread-safe; small allocations and frees take no lock and make
 * no system call. Functions that can fail return 0 or -errno, or NULL with
 * errno set. The library never prints, except that a free of something that
 * is not a live object (a double free, a pointer into the middle of an
 * object, a pointer outside the arena) writes one line naming the pointer to
 * stderr and aborts.
 *
 * fork() is safe: the child gets its own connection and caches on its first
 * call, and objects allocated before the fork stay valid in both processes.
 * If heapd restarts or ends the connection, the library reconnects by itself
 * (with backoff, for at most $HEAPD_RECONNECT_TIMEOUT_MS, default 10000 ms),
 * takes up its slot again, and objects keep their contents. The spans a
 * process caches are its own until it hands them back or exits.
 *
 * The library catches SIGBUS in the arena's data (another process may have
 * shrunk the file: it is extended again, the cut part reads as zero) and
 * passes any other SIGBUS on to the handler that was there before.
 */
#ifndef HEAPCLIENT_H
#define HEAPCLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HC_API __attribute__((visibility("default")))
#define HC_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#define HC_MALLOC_ATTR(...) __attribute__((malloc, alloc_size(__VA_ARGS__)))
#else
#define HC_API
#define HC_ALLOC_SIZE(...)
#define HC_MALLOC_ATTR(...)
#endif

/*
 * Connect to heapd at socket_path, or, if it is NULL, at $HEAPD_SOCKET, else
 * at /run/heapd/heapd.sock. Returns 0 (also when already connected) or
 * -errno: -ENOENT or -ECONNREFUSED when no daemon serves the socket, -EACCES
 * when the daemon refuses this user, -ESTALE when it serves another arena
 * than the one this process already uses, -EBUSY when this process is
 * connected already through another copy of the library (a daemon serves
 * one connected slot per process). A daemon that accepts the
 * connection and dies before it answers is waited for as a restart is (see
 * below). Calling it is optional: the first
 * call that needs the daemon connects to the default socket.
 */
HC_API int hc_connect(const char *socket_path);

/*
 * Empty every thread's cache, hand every span the process held back to
 * heapd and close the connection. heapd keeps the process's slot, and the
 * pages of its live objects charged to it (the client quota), until the
 * process exits; the next connection gets the same slot back. Call it when no other thread
 * is inside the library. The arena stays mapped, so objects stay valid and
 * may still be freed; the next allocation connects again.
 */
HC_API void hc_disconnect(void);

/*
 * size bytes, 16-byte aligned when size > 8. NULL with errno set on failure:
 * ENOMEM when the arena is full or a quota is reached.
 */
HC_API void *hc_malloc(size_t size) HC_MALLOC_ATTR(1);

/* nmemb * size zeroed bytes; NULL with errno ENOMEM if the product overflows. */
HC_API void *hc_calloc(size_t nmemb, size_t size) HC_MALLOC_ATTR(1, 2);

/*
 * Resize ptr's object. ptr NULL: hc_malloc(size). size 0: frees ptr and
 * returns NULL. The object stays where it is if size fits in it and is not
 * much smaller; otherwise its contents move to a new object. On failure it
 * returns NULL with errno set and ptr is untouched.
 */
HC_API void *hc_realloc(void *ptr, size_t size) HC_ALLOC_SIZE(2);

/*
 * size bytes aligned to alignment, a power of two (else NULL with EINVAL).
 * Alignments above 8 KiB hold as far as the arena's address in this process
 * is aligned (at the daemon's address hint, always); beyond that, ENOMEM.
 */
HC_API void *hc_aligned_alloc(size_t alignment, size_t size) HC_MALLOC_ATTR(2);

/* Free an object allocated by any attached process. NULL is a no-op. */
HC_API void hc_free(void *ptr);

/* Bytes usable in ptr's object (>= the size asked for); 0 for NULL or a non-object. */
HC_API size_t hc_usable_size(const void *ptr);

/*
 * The object's offset in the arena, valid in every attached process; 0 for
 * NULL or a pointer outside the arena (0 is never an object's offset).
 */
HC_API uint64_t hc_ptr_to_off(const void *ptr);

/* The pointer for an offset; NULL when off is not inside the arena's object pages. */
HC_API void *hc_off_to_ptr(uint64_t off);

/*
 * Hand the calling thread's cached spans back to heapd. A thread keeps the
 * spans it allocated from (so that reusing them needs no request) until it
 * exits, except that spans it has emptied, beyond a small reserve per size
 * class, go back with its next requests to heapd; call this in a thread
 * that is done allocating for a long while. Its next allocation asks for
 * spans again. 0 or -errno.
 */
HC_API int hc_trim(void);

/*
 * Heap profiling: sample one allocation per `bytes` bytes allocated, on
 * average (an exponential distribution, as Go's runtime.MemProfileRate;
 * 1 samples every allocation, 0 turns sampling off). A sample records the
 * allocation's stack (up to 32 frames, by frame pointers: build with
 * -fno-omit-frame-pointer for stacks deeper than the allocating function),
 * its size, this process and the time, in the arena, where it outlives the
 * process; `heapctl profile` turns the records into a pprof profile. The
 * rate set here wins over $HEAPD_PROFILE_RATE, which wins over heapd's
 * profile-rate setting; without any of them sampling is off and costs
 * nothing. Threads take a new rate within 64 allocations of each size
 * class. Returns the rate in force before the call.
 */
HC_API size_t hc_profile_rate(size_t bytes);

/*
 * Named roots: a directory of names in the arena, so that cooperating
 * processes find each other's objects without a channel of their own.
 *
 *     // process A                             // process B
 *     struct conf *c = hc_malloc(sizeof(*c));  struct conf *c = hc_root_wait("conf", 1000);
 *     fill(c);                                 if (c)
 *     hc_root_set("conf", c);                      use(c);
 *
 * A name is 1 to 255 bytes of any value but NUL, compared exactly. A name
 * is bound to the start of a live object, small or large, allocated by any
 * process. Bindings live in the arena: they outlive the process that made
 * them and survive a restart of heapd, and each call sees them as they were
 * at one moment during the call (they are linearizable).
 *
 * No dangling names. A rooted object's free is deferred until its root is
 * removed: hc_free of an object a name is bound to works as usual for the
 * caller (the object is freed; freeing it again is a double free), but its
 * memory keeps its contents and is not handed out again until no name is
 * bound to it any more, when it is reused as any freed object is. So the
 * pointer a lookup returns never leads to an object handed out to someone
 * else since it was bound. One object may be bound to several names.
 *
 * Limits: heapd's directory holds --max-roots names (default 65536; -ENOSPC
 * beyond), and the clients of one user may have --uid-max-roots of them
 * bound at once (no limit by default; -EDQUOT beyond), a name counting for
 * the user of whoever bound it last.
 */

/*
 * The object bound to name, read from the directory in shared memory: no
 * lock and no system call (once this process has connected). NULL with
 * errno ENOENT when the name is not bound, EINVAL for an empty name,
 * ENAMETOOLONG for one of more than 255 bytes, or the error of connecting.
 */
HC_API void *hc_root_get(const char *name);

/*
 * Bind name to obj, replacing any binding; obj NULL removes the binding (0
 * also when there was none). One round trip to heapd. 0, or -EINVAL (a bad
 * name, or obj is not the start of a live object; nothing changes),
 * -ENAMETOOLONG, -ENOSPC (the directory is full), -EDQUOT (this user's
 * limit), or the error of reaching heapd.
 */
HC_API int hc_root_set(const char *name, const void *obj);

/*
 * Bind name to desired only if it is bound to expected now (expected NULL:
 * only if it is unbound; desired NULL: remove the binding). When this
 * thread's last look at name (hc_root_get, hc_root_wait, or its own bind)
 * found it bound to expected, that binding must still be in place: the name
 * bound to something else and then to expected again in between counts as
 * another binding, so a loop of lookup, compute, cas is free of ABA. 0, or
 * -EAGAIN when the binding is not expected (nothing changes), or an error
 * of hc_root_set. A request whose reply was lost with heapd is sent again
 * to the next heapd and takes effect once.
 */
HC_API int hc_root_cas(const char *name, const void *expected, const void *desired);

/*
 * hc_root_get that waits up to timeout_ms (< 0: without limit, 0: not at
 * all) for name to be bound. It sleeps on a futex in the shared metadata
 * that heapd wakes at every bind, holding no lock, and is not disturbed by a
 * restart of heapd. NULL with errno ETIMEDOUT, or as hc_root_get.
 */
HC_API void *hc_root_wait(const char *name, int timeout_ms);

/* What this process's library has done, for tests and monitoring. */
typedef struct hc_stats {
	uint64_t requests;       /* requests sent to heapd */
	uint64_t refills;        /* of which span refills */
	uint64_t large_allocs;   /* of which large-object allocations */
	uint64_t reconnects;     /* connections re-established after a broken one */
	uint64_t spans_cached;   /* spans held by this process's thread caches */
	uint32_t slot;           /* this process's slot in heapd's client table */
	int connected;           /* 1 while a connection is open */
} hc_stats_t;

/* Fill *st. 0 or -EINVAL. */
HC_API int hc_stats(hc_stats_t *st);

#ifdef __cplusplus
}
#endif

#endif
