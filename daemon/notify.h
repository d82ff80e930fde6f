// SPDX-License-Identifier: MIT
/*
 * notify.h - tell the service manager how the daemon is doing (READY=1,
 * STATUS=..., STOPPING=1). No-ops when built without libsystemd or when not
 * started by a service manager.
 */
#ifndef HEAPD_DAEMON_NOTIFY_H
#define HEAPD_DAEMON_NOTIFY_H

void notify_ready(void);
void notify_stopping(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
