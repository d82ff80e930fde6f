// SPDX-License-Identifier: MIT
/*
 * sock.h - Unix stream sockets by path: the one place that connects to and
 * listens on heapd's socket (libheapclient, heapd, heapctl and the tests).
 */
#ifndef HEAPD_PROTO_SOCK_H
#define HEAPD_PROTO_SOCK_H

#include <sys/types.h>

/* A blocking socket connected to path (close-on-exec). The descriptor or -errno. */
int sock_connect(const char *path);

/*
 * A non-blocking listening socket bound at path, created with `mode` (for
 * example 0660) through the umask at bind time, so that no chmod ever
 * follows a path. The descriptor or -errno (-ENAMETOOLONG for a path that
 * does not fit a socket address).
 */
int sock_listen(const char *path, mode_t mode, int backlog);

#endif
