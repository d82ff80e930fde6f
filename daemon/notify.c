// SPDX-License-Identifier: MIT
/*
 * notify.c - service-manager notifications (see notify.h).
 */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>

#ifdef HEAPD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

void notify_ready(void)
{
#ifdef HEAPD_HAVE_SYSTEMD
	sd_notify(0, "READY=1");
#endif
}

void notify_stopping(void)
{
#ifdef HEAPD_HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
}

void notify_status(const char *fmt, ...)
{
#ifdef HEAPD_HAVE_SYSTEMD
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(line, sizeof(line), "STATUS=");
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	sd_notify(0, line);
#else
	(void)fmt;
#endif
}
