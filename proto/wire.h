// SPDX-License-Identifier: MIT
/*
 * wire.h - framing for the heapd protocol, shared by the daemon and its clients.
 *
 * A frame is a 4-byte little-endian payload length, then one packed
 * Heapd__Envelope (heap.proto). Frames longer than HEAPD_MAX_FRAME are a
 * protocol error on either side.
 *
 * The wire_send/wire_recv pair is for blocking sockets (the client library,
 * heapctl, tests); wire_read_frame is wire_recv with a read-ahead buffer, for
 * the client's request path; the daemon frames into its own buffers with
 * wire_frame_size/wire_frame_pack and decodes with wire_unpack.
 */
#ifndef HEAPD_PROTO_WIRE_H
#define HEAPD_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "heap.pb-c.h"

#define HEAPD_PROTOCOL_VERSION 2u
#define HEAPD_FRAME_HEADER 4u
#define HEAPD_MAX_FRAME (1u << 20)    /* largest payload either side accepts */
#define HEAPD_MAX_REFILL_SPANS 64u    /* most spans one Refill may ask for */
#define HEAPD_MAX_REFILL_ALSO 8u      /* most other classes one Refill may name (Refill.also) */
#define HEAPD_DEFAULT_SOCKET "/run/heapd/heapd.sock"
#define HEAPD_DEFAULT_ARENA "/dev/shm/heapd" /* a directory (shm/layout.h) */
#define HEAPD_DEFAULT_ARENA_SIZE (1ULL << 30)

/* Bytes of the whole frame (header included) for env. */
size_t wire_frame_size(const Heapd__Envelope *env);

/* Write the frame for env into out, which holds wire_frame_size(env) bytes. */
void wire_frame_pack(const Heapd__Envelope *env, uint8_t *out);

/* Decode a payload; NULL if it is not a valid Envelope with a message set. Free with wire_free. */
Heapd__Envelope *wire_unpack(const uint8_t *payload, size_t len);
void wire_free(Heapd__Envelope *env);

/* Read a frame header; -EPROTO when the length is over HEAPD_MAX_FRAME. */
int wire_parse_header(const uint8_t hdr[HEAPD_FRAME_HEADER], uint32_t *len);

/* Descriptors one frame may carry (the Hello reply's: meta and data). */
#define WIRE_MAX_FDS 2

/* Room for the control message that carries up to WIRE_MAX_FDS descriptors. */
typedef union wire_fdctl {
	char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
	struct cmsghdr align;
} wire_fdctl_t;

/* Attach fds[0..n) (n <= WIRE_MAX_FDS) to msg as SCM_RIGHTS, with ctl holding the control data. */
void wire_attach_fds(struct msghdr *msg, wire_fdctl_t *ctl, const int *fds, int n);

/* Send one frame on a blocking socket. Never raises SIGPIPE. 0 or -errno. */
int wire_send(int sock, const Heapd__Envelope *env);

/*
 * Receive one frame from a blocking socket. If fds is not NULL, descriptors
 * passed with the frame are stored in fds[0..WIRE_MAX_FDS) in order (-1
 * where none came; any beyond are closed). Returns 0, -ECONNRESET at end of
 * stream, -EPROTO for a bad frame, or -errno.
 */
int wire_recv(int sock, Heapd__Envelope **env, int *fds);

/*
 * A socket's bytes read past the frame wire_read_frame returned, so that a
 * small reply (header and payload together) takes one read. One per socket;
 * reset it when the socket is closed or replaced. No descriptors pass here.
 *
 * With spin_us set, a read that finds nothing polls the socket for up to
 * that long before it sleeps. A reply that comes within it costs no wakeup
 * of the reader's CPU, which on a virtual machine costs as much as the
 * round trip itself.
 */
#define WIRE_READER_SIZE 4096u
typedef struct wire_reader {
	size_t off, len;               /* buf[off, len) is read and not yet returned */
	uint32_t spin_us;              /* poll this long before a read blocks (0: never) */
	uint8_t buf[WIRE_READER_SIZE];
} wire_reader_t;

static inline void wire_reader_reset(wire_reader_t *r)
{
	r->off = r->len = 0;
}

/* wire_recv through r, without descriptor passing. Same returns. */
int wire_read_frame(int sock, wire_reader_t *r, Heapd__Envelope **env);

/*
 * Send req and wait for its reply (fds as wire_recv). 0 or -errno; a reply
 * that is an Error stays a 0 return; one whose seq is not req's is -EPROTO.
 */
int wire_call(int sock, const Heapd__Envelope *req, Heapd__Envelope **reply, int *fds);

#endif
