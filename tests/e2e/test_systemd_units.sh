#!/bin/sh
# SPDX-License-Identifier: MIT
# test_systemd_units.sh - the systemd files as installed are valid:
#
#   1. `systemd-analyze verify` passes on heapd.service and heapd.socket, in
#      a temporary prefix where ExecStart names the installed heapd and the
#      man pages named by Documentation= are installed (MANPATH);
#   2. the sysusers.d and tmpfiles.d entries apply cleanly to an empty root,
#      and make the arena directory /dev/shm/heapd heapd's alone (0700);
#   3. heapd.conf.example, with every default setting uncommented, is
#      accepted by heapd, and heapd serves with it.
#
# Exits 77 (skipped) when systemd-analyze is not installed.
# Environment (set by tests/ops.cmake): HEAPD_BUILD_DIR.
set -eu

build=${HEAPD_BUILD_DIR:?}
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found; skipping" >&2; exit 77; }

. "$(dirname "$0")/../harness/shell.sh"
hsh_init units
prefix=$tmp/prefix

hsh_install "$prefix"
units=$prefix/lib/systemd/system

echo "== systemd-analyze verify"
grep -q "^ExecStart=$prefix/sbin/heapd\$" "$units/heapd.service" || hsh_fail "ExecStart is not the installed heapd"
man_check=--man=yes
command -v man >/dev/null || man_check=--man=no # Documentation= is checked only where man exists
rc=0
MANPATH=$prefix/share/man systemd-analyze verify $man_check --generators=no \
	"$units/heapd.socket" "$units/heapd.service" >"$tmp/verify.log" 2>&1 || rc=$?
# Any message about our units fails the test, warnings included (verify exits 0
# on some). On a booted host verify also loads the system's own units, and
# their complaints, which name other units, are only shown.
if grep -q heapd "$tmp/verify.log"; then
	cat "$tmp/verify.log" >&2
	hsh_fail "systemd-analyze verify (exit $rc)"
fi
if [ -s "$tmp/verify.log" ] || [ "$rc" -ne 0 ]; then
	echo "systemd-analyze verify exited $rc over units other than heapd's:" >&2
	cat "$tmp/verify.log" >&2
fi

echo "== sysusers.d and tmpfiles.d"
root=$tmp/root
mkdir -p "$root/etc"
: >"$root/etc/passwd"
: >"$root/etc/group"
systemd-sysusers --root="$root" - <"$prefix/lib/sysusers.d/heapd.conf" >"$tmp/sysusers.log" 2>&1 ||
	{ cat "$tmp/sysusers.log" >&2; hsh_fail "systemd-sysusers"; }
grep -q '^heapd:' "$root/etc/passwd" || hsh_fail "sysusers entry made no heapd user"
grep -q '^heapd:' "$root/etc/group" || hsh_fail "sysusers entry made no heapd group"
systemd-tmpfiles --root="$root" --create - <"$prefix/lib/tmpfiles.d/heapd.conf" >"$tmp/tmpfiles.log" 2>&1 ||
	{ cat "$tmp/tmpfiles.log" >&2; hsh_fail "systemd-tmpfiles"; }
[ -d "$root/etc/heapd" ] || hsh_fail "tmpfiles entry made no /etc/heapd"
# The arena directory: heapd's alone, as heapd itself requires of it.
heapd_uid=$(awk -F: '$1 == "heapd" {print $3}' "$root/etc/passwd")
heapd_gid=$(awk -F: '$1 == "heapd" {print $3}' "$root/etc/group")
arena_dir=$(stat -c '%F %a %u %g' "$root/dev/shm/heapd" 2>/dev/null) || hsh_fail "tmpfiles entry made no /dev/shm/heapd"
[ "$arena_dir" = "directory 700 $heapd_uid $heapd_gid" ] ||
	hsh_fail "/dev/shm/heapd is '$arena_dir', want 'directory 700 $heapd_uid $heapd_gid'"

echo "== heapd.conf.example"
sed -n 's/^#\([a-z-]* = .*\)/\1/p' "$prefix/etc/heapd/heapd.conf.example" >"$tmp/heapd.conf"
[ "$(wc -l <"$tmp/heapd.conf")" -ge 7 ] || hsh_fail "the example does not show every setting: $(cat "$tmp/heapd.conf")"
"$prefix/sbin/heapd" --config "$tmp/heapd.conf" --socket "$tmp/heapd.sock" --arena "$tmp/arena" \
	--arena-size 64M 2>"$tmp/heapd.log" &
daemon_pid=$!
hsh_serving "$prefix" "$tmp/heapd.sock" "heapd with the example config"

echo "test_systemd_units: ok"
