// SPDX-License-Identifier: MIT
/*
 * wire.c - length-prefixed protobuf frames over a Unix stream socket.
 *
 * See wire.h. Descriptors ride as SCM_RIGHTS on the first byte of a frame, so
 * wire_recv asks for ancillary data only on its first read, and reads no byte
 * past its frame. wire_read_frame reads as much as its buffer takes and keeps
 * the surplus: a small reply costs one read instead of two.
 */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

size_t wire_frame_size(const Heapd__Envelope *env)
{
	return HEAPD_FRAME_HEADER + heapd__envelope__get_packed_size(env);
}

void wire_frame_pack(const Heapd__Envelope *env, uint8_t *out)
{
	size_t len = heapd__envelope__pack(env, out + HEAPD_FRAME_HEADER);
	out[0] = (uint8_t)len;
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 24);
}

int wire_parse_header(const uint8_t hdr[HEAPD_FRAME_HEADER], uint32_t *len)
{
	*len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
	return *len > HEAPD_MAX_FRAME ? -EPROTO : 0;
}

Heapd__Envelope *wire_unpack(const uint8_t *payload, size_t len)
{
	Heapd__Envelope *env = heapd__envelope__unpack(NULL, len, payload);
	if (env && env->msg_case == HEAPD__ENVELOPE__MSG__NOT_SET) {
		heapd__envelope__free_unpacked(env, NULL);
		return NULL;
	}
	return env;
}

void wire_free(Heapd__Envelope *env)
{
	if (env)
		heapd__envelope__free_unpacked(env, NULL);
}

void wire_attach_fds(struct msghdr *msg, wire_fdctl_t *ctl, const int *fds, int n)
{
	memset(ctl, 0, sizeof(*ctl));
	msg->msg_control = ctl->buf;
	msg->msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
	struct cmsghdr *c = CMSG_FIRSTHDR(msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
}

int wire_send(int sock, const Heapd__Envelope *env)
{
	size_t len = wire_frame_size(env);
	uint8_t stackbuf[512];
	uint8_t *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	size_t off = 0;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	if (len - HEAPD_FRAME_HEADER > HEAPD_MAX_FRAME) {
		rc = -EMSGSIZE;
		goto out;
	}
	wire_frame_pack(env, buf);
	while (off < len) {
		struct iovec iov = { .iov_base = buf + off, .iov_len = len - off };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		off += (size_t)n;
	}
out:
	if (buf != stackbuf)
		free(buf);
	return rc;
}

/* Read exactly len bytes; the first read may collect passed descriptors into fds. */
static int read_full(int sock, uint8_t *buf, size_t len, int *fds)
{
	size_t off = 0;
	int got = 0;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;

	while (off < len) {
		struct iovec iov = { .iov_base = buf + off, .iov_len = len - off };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (fds) {
			msg.msg_control = ctl.buf;
			msg.msg_controllen = sizeof(ctl.buf);
		}
		ssize_t n = recvmsg(sock, &msg, fds ? MSG_CMSG_CLOEXEC : 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		if (fds) {
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
				if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
					continue;
				int nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				for (int i = 0; i < nfds; i++) {
					int fd;
					memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
					if (got < WIRE_MAX_FDS)
						fds[got++] = fd;
					else
						close(fd); /* more than any frame carries */
				}
			}
			fds = NULL;
		}
		off += (size_t)n;
	}
	return 0;
}

int wire_recv(int sock, Heapd__Envelope **env, int *fds)
{
	uint8_t hdr[HEAPD_FRAME_HEADER];
	uint32_t len;
	int rc;

	*env = NULL;
	for (int i = 0; fds && i < WIRE_MAX_FDS; i++)
		fds[i] = -1;
	rc = read_full(sock, hdr, sizeof(hdr), fds);
	if (rc < 0)
		goto fail;
	rc = wire_parse_header(hdr, &len);
	if (rc < 0)
		goto fail;
	uint8_t *payload = malloc(len ? len : 1);
	if (!payload) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = read_full(sock, payload, len, NULL);
	if (rc == 0) {
		*env = wire_unpack(payload, len);
		if (!*env)
			rc = -EPROTO;
	}
	free(payload);
	if (rc == 0)
		return 0;
fail:
	for (int i = 0; fds && i < WIRE_MAX_FDS; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
	return rc;
}

/*
 * Have at least want bytes in r->buf[r->off, r->len); want <= WIRE_READER_SIZE.
 * With r->spin_us, poll before sleeping (wire.h).
 */
static int reader_fill(int sock, wire_reader_t *r, size_t want)
{
	uint64_t deadline = 0;

	if (r->len - r->off >= want)
		return 0;
	if (r->off + want > sizeof(r->buf)) {
		memmove(r->buf, r->buf + r->off, r->len - r->off);
		r->len -= r->off;
		r->off = 0;
	}
	if (r->spin_us)
		deadline = heapd_now_ns() + (uint64_t)r->spin_us * 1000u;
	while (r->len - r->off < want) {
		int spin = deadline != 0;
		ssize_t n = recv(sock, r->buf + r->len, sizeof(r->buf) - r->len, spin ? MSG_DONTWAIT : 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (spin && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				if (heapd_now_ns() >= deadline)
					deadline = 0; /* from now on, sleep until it comes */
				continue;
			}
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		r->len += (size_t)n;
	}
	return 0;
}

int wire_read_frame(int sock, wire_reader_t *r, Heapd__Envelope **env)
{
	uint32_t len;
	int rc;

	*env = NULL;
	rc = reader_fill(sock, r, HEAPD_FRAME_HEADER);
	if (rc < 0)
		return rc;
	rc = wire_parse_header(r->buf + r->off, &len);
	if (rc < 0)
		return rc;
	if (HEAPD_FRAME_HEADER + (size_t)len <= sizeof(r->buf)) {
		rc = reader_fill(sock, r, HEAPD_FRAME_HEADER + len);
		if (rc < 0)
			return rc;
		*env = wire_unpack(r->buf + r->off + HEAPD_FRAME_HEADER, len);
		r->off += HEAPD_FRAME_HEADER + len;
		if (r->off == r->len)
			wire_reader_reset(r);
		return *env ? 0 : -EPROTO;
	}
	/* Too big for the buffer: take what is here, read exactly the rest. */
	uint8_t *payload = malloc(len);
	if (!payload)
		return -ENOMEM;
	size_t have = r->len - r->off - HEAPD_FRAME_HEADER;
	memcpy(payload, r->buf + r->off + HEAPD_FRAME_HEADER, have);
	wire_reader_reset(r);
	rc = read_full(sock, payload + have, len - have, NULL);
	if (rc == 0) {
		*env = wire_unpack(payload, len);
		if (!*env)
			rc = -EPROTO;
	}
	free(payload);
	return rc;
}

int wire_call(int sock, const Heapd__Envelope *req, Heapd__Envelope **reply, int *fds)
{
	int rc = wire_send(sock, req);
	if (rc < 0)
		return rc;
	rc = wire_recv(sock, reply, fds);
	if (rc == 0 && (*reply)->seq != req->seq) {
		for (int i = 0; fds && i < WIRE_MAX_FDS; i++) {
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = -1;
		}
		wire_free(*reply);
		*reply = NULL;
		rc = -EPROTO;
	}
	return rc;
}
