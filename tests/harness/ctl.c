// SPDX-License-Identifier: MIT
/*
 * ctl.c - stats, clients, check, sweep and scavenge over a control
 * connection of its own per call. See ctl.h.
 */
#include "harness/ctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "harness/util.h"

#define SETTLE_PAUSE_US 20000

int hctl_open(const char *sock)
{
	ctl_t c;
	int rc = ctl_open(&c, sock, 0, NULL, 0);
	return rc < 0 ? rc : c.fd;
}

/* A request without fields over a new connection; its reply, of kind want, into *reply. 0 or -errno. */
static int simple(const char *sock, Heapd__Envelope__MsgCase msg, Heapd__Envelope__MsgCase want,
                  Heapd__Envelope **reply)
{
	char why[256] = "";
	ctl_t c;
	*reply = NULL;
	int rc = ctl_open(&c, sock, 0, why, sizeof(why));
	if (rc == 0) {
		rc = ctl_simple(&c, msg, want, reply, why, sizeof(why));
		ctl_close(&c);
	}
	if (rc < 0)
		fprintf(stderr, "harness: %s: %s\n", sock, why[0] ? why : strerror(-rc));
	return rc;
}

Heapd__StatsReply *hctl_stats(const char *sock, Heapd__Envelope **owner)
{
	int rc = simple(sock, HEAPD__ENVELOPE__MSG_STATS, HEAPD__ENVELOPE__MSG_STATS_REPLY, owner);
	return rc == 0 ? (*owner)->stats_reply : NULL;
}

enum { OBJECTS_IN_USE, PAGES_IN_USE, SWEEP_CYCLES };

static uint64_t counter(const char *sock, int which)
{
	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(sock, &owner);
	uint64_t v = UINT64_MAX;
	if (st)
		v = which == OBJECTS_IN_USE ? st->objects_in_use
		    : which == PAGES_IN_USE ? st->pages_in_use
		                            : st->sweep_cycles;
	wire_free(owner);
	return v;
}

uint64_t hctl_objects_in_use(const char *sock)
{
	return counter(sock, OBJECTS_IN_USE);
}

uint64_t hctl_pages_in_use(const char *sock)
{
	return counter(sock, PAGES_IN_USE);
}

uint64_t hctl_sweep_cycles(const char *sock)
{
	return counter(sock, SWEEP_CYCLES);
}

int hctl_clients(const char *sock, hctl_client_t *out, int max)
{
	Heapd__Envelope *reply;
	int n = 0;
	int rc = simple(sock, HEAPD__ENVELOPE__MSG_CLIENTS, HEAPD__ENVELOPE__MSG_CLIENTS_REPLY, &reply);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < reply->clients_reply->n_clients; i++) {
		const Heapd__ClientInfo *ci = reply->clients_reply->clients[i];
		if (ci->control)
			continue;
		if (n < max)
			out[n] = (hctl_client_t){ .pid = ci->pid, .uid = ci->uid, .slot = ci->slot,
			                          .connected = ci->connected, .spans_cached = ci->spans_cached,
			                          .pages_held = ci->pages_held };
		n++;
	}
	wire_free(reply);
	return n;
}

#define MAX_LISTED 256

uint64_t hctl_client_spans(const char *sock, pid_t pid)
{
	hctl_client_t cl[MAX_LISTED];
	int n = hctl_clients(sock, cl, MAX_LISTED);
	uint64_t spans = 0;
	if (n < 0)
		return UINT64_MAX;
	for (int i = 0; i < n && i < MAX_LISTED; i++)
		if (pid == 0 || cl[i].pid == (uint32_t)pid)
			spans += cl[i].spans_cached;
	return spans;
}

int hctl_slot_of(const char *sock, pid_t pid, int *connected)
{
	hctl_client_t cl[MAX_LISTED];
	int n = hctl_clients(sock, cl, MAX_LISTED);
	for (int i = 0; i < n && i < MAX_LISTED; i++) {
		if (cl[i].pid == (uint32_t)pid) {
			if (connected)
				*connected = cl[i].connected;
			return (int)cl[i].slot;
		}
	}
	return -1;
}

/* 1 if the list answers and shows no connected slot of pid. */
static int unconnected(const char *sock, pid_t pid)
{
	hctl_client_t cl[MAX_LISTED];
	int n = hctl_clients(sock, cl, MAX_LISTED), connected = 0;
	for (int i = 0; i < n && i < MAX_LISTED; i++)
		connected |= cl[i].pid == (uint32_t)pid && cl[i].connected;
	return n >= 0 && !connected;
}

int hctl_wait_unconnected(const char *sock, pid_t pid, int timeout_ms)
{
	return hutil_wait_until(unconnected(sock, pid), timeout_ms);
}

/* 1 if stats answer and count `clients` clients. */
static int clients_are(const char *sock, uint32_t clients)
{
	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(sock, &owner);
	int ok = st && st->clients == clients;
	wire_free(owner);
	return ok;
}

int hctl_wait_clients(const char *sock, uint32_t clients, int timeout_ms)
{
	return hutil_wait_until(clients_are(sock, clients), timeout_ms);
}

int64_t hctl_check_data(const char *sock, int64_t *ndata)
{
	Heapd__Envelope *reply;
	*ndata = 0;
	int rc = simple(sock, HEAPD__ENVELOPE__MSG_CHECK, HEAPD__ENVELOPE__MSG_CHECK_REPLY, &reply);
	if (rc < 0)
		return -1;
	for (size_t i = 0; i < reply->check_reply->n_problems; i++)
		fprintf(stderr, "check: %s\n", reply->check_reply->problems[i]);
	*ndata = (int64_t)reply->check_reply->ndata;
	int64_t n = (int64_t)reply->check_reply->nproblems;
	wire_free(reply);
	return n;
}

int64_t hctl_check(const char *sock)
{
	int64_t ndata;
	return hctl_check_data(sock, &ndata);
}

int hctl_sweep(const char *sock)
{
	Heapd__Envelope *reply;
	int rc = simple(sock, HEAPD__ENVELOPE__MSG_SWEEP, HEAPD__ENVELOPE__MSG_OK, &reply);
	wire_free(reply);
	return rc;
}

int hctl_scavenge(const char *sock)
{
	Heapd__Envelope *reply;
	int rc = simple(sock, HEAPD__ENVELOPE__MSG_SCAVENGE, HEAPD__ENVELOPE__MSG_OK, &reply);
	wire_free(reply);
	return rc;
}

int hctl_settle(const char *sock, int max_sweeps)
{
	for (int i = 0; i < max_sweeps; i++) {
		hctl_sweep(sock);
		if (hctl_objects_in_use(sock) == 0 && hctl_pages_in_use(sock) == 0)
			return 1;
		hutil_sleep_us(SETTLE_PAUSE_US);
	}
	return 0;
}
