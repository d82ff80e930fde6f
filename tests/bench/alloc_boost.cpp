// SPDX-License-Identifier: MIT
/*
 * alloc_boost.cpp - the Boost.Interprocess peer: managed_shared_memory, the
 * shared-memory allocator most programs reach for.
 *
 * setup() creates a segment of BOOST_SEGMENT bytes (a sparse POSIX shm
 * object under /dev/shm); each worker opens it and allocates with the
 * segment manager, which serialises every allocation and free on one mutex
 * inside the segment. Offsets are the segment's handles, valid in every
 * process that opened it. Resident memory is the bytes the shm object holds.
 * setup() also names the segment in $BENCH_BOOST_SEGMENT, where a program
 * started by exec (workload 10) finds it, as a Boost user's program is told
 * the name of the segment it opens.
 */
#include "bench.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <unistd.h>

#include <boost/interprocess/managed_shared_memory.hpp>

namespace bip = boost::interprocess;

static const size_t BOOST_SEGMENT = (size_t)1 << 30;

static char seg_name[64];                  /* set by setup, in the main process */
static bip::managed_shared_memory *seg;    /* this worker's mapping, after attach */

static int boost_setup(void)
{
	snprintf(seg_name, sizeof(seg_name), "heapd-bench-boost-%d", (int)getpid());
	bip::shared_memory_object::remove(seg_name);
	try {
		bip::managed_shared_memory created(bip::create_only, seg_name, BOOST_SEGMENT);
	} catch (const std::exception &e) {
		bench_note("cannot create the segment: %s", e.what());
		return -ENOMEM;
	}
	setenv("BENCH_BOOST_SEGMENT", seg_name, 1);
	return 0;
}

static void boost_teardown(void)
{
	if (seg_name[0])
		bip::shared_memory_object::remove(seg_name);
}

static int boost_attach(void)
{
	try {
		seg = new bip::managed_shared_memory(bip::open_only, seg_name);
	} catch (const std::exception &e) {
		bench_note("cannot open the segment: %s", e.what());
		return -ENOENT;
	}
	return 0;
}

static int boost_attach_new(void)
{
	const char *name = getenv("BENCH_BOOST_SEGMENT");
	if (!name)
		return -ENOENT;
	snprintf(seg_name, sizeof(seg_name), "%s", name);
	return boost_attach();
}

static void boost_detach(void)
{
	delete seg;
	seg = nullptr;
}

static void *boost_malloc(size_t size)
{
	return seg->allocate(size, std::nothrow);
}

static void boost_free(void *p)
{
	seg->deallocate(p);
}

static uint64_t boost_ptr_to_off(const void *p)
{
	return (uint64_t)seg->get_handle_from_address(p);
}

static void *boost_off_to_ptr(uint64_t off)
{
	return seg->get_address_from_handle((bip::managed_shared_memory::handle_t)off);
}

static int boost_resident_base(uint64_t *baseline)
{
	*baseline = 0;
	return 0;
}

static int boost_resident(uint64_t baseline, uint64_t *bytes)
{
	char path[96];
	(void)baseline;
	snprintf(path, sizeof(path), "/dev/shm/%s", seg_name);
	return bench_file_bytes(path, bytes);
}

extern "C" const bench_alloc_t bench_alloc = {
	.name = "boost",
	.flags = BENCH_SHARED,
	.setup = boost_setup,
	.teardown = boost_teardown,
	.attach = boost_attach,
	.detach = boost_detach,
	.malloc = boost_malloc,
	.free = boost_free,
	.ptr_to_off = boost_ptr_to_off,
	.off_to_ptr = boost_off_to_ptr,
	.resident_base = boost_resident_base,
	.resident = boost_resident,
	.refill_rtt = nullptr,
	.refills = nullptr,
	.attach_new = boost_attach_new,
};
