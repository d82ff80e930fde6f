// SPDX-License-Identifier: MIT
/*
 * consumer.c - a program from outside the heapd tree, built by the install
 * test against an installed libheapclient (once through pkg-config, once
 * through find_package(HeapClient)).
 *
 *   consumer [SOCKET]
 *
 * It allocates a small and a large object, writes them, checks that their
 * offsets lead back to them, frees them and disconnects. Exit status: 0 and
 * "consumer: ok" on success, 3 when heapd cannot be reached, 1 otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <heapclient.h>

int main(int argc, char **argv)
{
	const char *sock = argc > 1 ? argv[1] : NULL;
	int rc = hc_connect(sock);
	if (rc < 0) {
		fprintf(stderr, "consumer: cannot connect to %s: %s\n", sock ? sock : "the default socket",
		        strerror(-rc));
		return 3;
	}

	size_t sizes[] = { 100, 1 << 20 };
	for (size_t i = 0; i < 2; i++) {
		unsigned char *p = hc_malloc(sizes[i]);
		if (!p) {
			fprintf(stderr, "consumer: hc_malloc(%zu): %s\n", sizes[i], strerror(errno));
			return 1;
		}
		memset(p, 0x3c, sizes[i]);
		uint64_t off = hc_ptr_to_off(p);
		if (off == 0 || hc_off_to_ptr(off) != p || hc_usable_size(p) < sizes[i] || p[sizes[i] - 1] != 0x3c) {
			fprintf(stderr, "consumer: object of %zu bytes does not round-trip\n", sizes[i]);
			return 1;
		}
		hc_free(p);
	}
	hc_disconnect();
	puts("consumer: ok");
	return 0;
}
