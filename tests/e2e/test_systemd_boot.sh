#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test_systemd_boot.sh - heapd's units under a real systemd. A minimal
# Debian 12 root is booted with systemd-nspawn; heapd, installed with
# `cmake --install --prefix /usr` into a DESTDIR, is copied into it as a
# package would unpack it, and the steps of heapd(8) SYSTEMD are run there
# (sysusers, tmpfiles, daemon-reload, enable --now heapd.socket). Then:
#
#   1. heapd.socket listens on /run/heapd/heapd.sock (mode 0660, user and
#      group heapd) and heapd.service is not running;
#   2. the first connection (`heapctl stats` as root) starts heapd.service,
#      which runs as the user heapd and reports a STATUS= line;
#   3. the README's example program, built outside the tree against the
#      installed libheapclient.a, allocates and binds a name to the object
#      as a member of group heapd, another process finds it by name, and a
#      user outside the group is refused (EACCES);
#   4. an object bound before `systemctl restart heapd`, and another bound
#      before heapd is killed with SIGKILL (Restart=on-failure brings it
#      back), are found by name and read back afterwards by other processes;
#   5. `systemctl stop` stops heapd cleanly: the result is success and the
#      journal has heapd's last line.
# Along the way the arena is checked: a directory of heapd's, mode 0700,
# whether tmpfiles.d made it or heapd did (arena_checks).
#
# The root image is made once by mmdebstrap in $HEAPD_NSPAWN_CACHE (default
# /var/tmp/heapd-nspawn; remove it to make a fresh one). Each run boots it
# under a tmpfs overlay (nspawn --volatile=overlay), which leaves the image
# as it was. Needs root, on Debian 12 (the programs built here run in the
# image). Exits 77 (skipped) when nspawn cannot work here: not root, not
# Debian 12, no systemd-nspawn and no way to install it, or no image and no
# way to make one in 6 minutes (mmdebstrap needs the Debian mirror). Once the
# image is there, a container that does not boot fails the test.
# Environment (set by tests/ops.cmake): HEAPD_BUILD_DIR, HEAPD_SOURCE_DIR,
# HEAPD_LIBDIR, CMAKE, CC, HEAPD_TEST_CFLAGS; HEAPD_NSPAWN_CACHE.
set -euo pipefail

build=${HEAPD_BUILD_DIR:?}
src=${HEAPD_SOURCE_DIR:?}
libdir=${HEAPD_LIBDIR:-lib}
cc=${CC:-cc}
cflags=${HEAPD_TEST_CFLAGS:-}
cache=${HEAPD_NSPAWN_CACHE:-/var/tmp/heapd-nspawn}
boot_timeout=180

# What the root needs besides minbase: systemd as init, and heapd's libraries.
root_packages=systemd,systemd-sysv,dbus,libevent-core-2.1-7,libevent-pthreads-2.1-7,libprotobuf-c1
base=$cache/bookworm

run=
nspawn_pid=
pid1=

skip() {
	echo "test_systemd_boot: SKIP: $*" >&2
	exit 77
}

# In the container, with a clean environment.
in_ct() {
	nsenter -t "$pid1" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"
}

fail() {
	echo "test_systemd_boot: FAIL: $*" >&2
	if [ -n "$pid1" ] && kill -0 "$pid1" 2>/dev/null; then
		echo "--- systemctl status heapd.socket heapd.service" >&2
		in_ct systemctl status --no-pager --lines=0 heapd.socket heapd.service >&2 || true
		echo "--- journalctl -u heapd.socket -u heapd.service" >&2
		in_ct journalctl --no-pager -u heapd.socket -u heapd.service >&2 || true
	fi
	exit 1
}

# poll SECONDS CMD... - run CMD until it succeeds; fail after SECONDS.
poll() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

nspawn_gone() {
	! kill -0 "$nspawn_pid" 2>/dev/null
}
cleanup() {
	if [ -n "$nspawn_pid" ]; then
		# SIGTERM makes nspawn shut the container down in order; SIGKILL if that hangs.
		kill -TERM "$nspawn_pid" 2>/dev/null || true
		poll 30 nspawn_gone || kill -KILL "$nspawn_pid" 2>/dev/null || true
		wait "$nspawn_pid" 2>/dev/null || true
	fi
	if [ -n "$run" ]; then
		rm -rf "$run"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

apt_install() {
	echo "== apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 && return 0
	apt-get update -qq >/dev/null 2>&1 || return 1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

[ "$(id -u)" -eq 0 ] || skip "booting a container needs root"
# heapd and the example are built here and run in the bookworm root.
codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null) || true
[ "$codename" = bookworm ] || skip "programs built on ${codename:-this system} may not run in a Debian 12 (bookworm) root"
command -v systemd-nspawn >/dev/null || apt_install systemd-container ||
	skip "systemd-nspawn is missing and apt-get cannot install systemd-container"
command -v nsenter >/dev/null || skip "nsenter (util-linux) is missing"

# ---- the root image, made once ----

# The image is rebuilt when the package list changes; a new one is made
# under another name and renamed into place, so a run that stops halfway
# leaves no half-made image behind.
make_base() {
	if [ -d "$base/usr/lib/systemd" ] && [ "$(cat "$base.packages" 2>/dev/null)" = "$root_packages" ]; then
		return 0
	fi
	command -v mmdebstrap >/dev/null || apt_install mmdebstrap ||
		skip "no root image in $base, and apt-get cannot install mmdebstrap"
	echo "== mmdebstrap bookworm into $base"
	rm -rf "$base.new"
	if ! timeout 360 mmdebstrap --variant=minbase --include="$root_packages" bookworm "$base.new" \
		>"$cache/mmdebstrap.log" 2>&1; then
		tail -n 20 "$cache/mmdebstrap.log" >&2
		rm -rf "$base.new"
		skip "mmdebstrap could not make the root image in 6 minutes (log above; is the Debian mirror reachable?)"
	fi
	rm -rf "$base"
	mv "$base.new" "$base"
	echo "$root_packages" >"$base.packages"
}

mkdir -p "$cache"
# A run holds a shared lock on the image while it boots it; making the image
# takes the lock alone.
exec 9>"$cache/lock"
flock 9
make_base
flock -s 9

run=$(mktemp -d /tmp/heapd-boot-XXXXXX)

# ---- what a package would hold ----

echo "== install into a DESTDIR with prefix /usr"
dest=$run/dest
DESTDIR=$dest "${CMAKE:-cmake}" --install "$build" --prefix /usr >"$run/install.log" ||
	{ cat "$run/install.log" >&2; fail "cmake --install --prefix /usr"; }
echo "== build the README's example against the installed libheapclient.a"
example=/usr/local/bin/heapd-example
mkdir -p "$dest/usr/local/bin"
export PKG_CONFIG_PATH="$dest/usr/$libdir/pkgconfig"
static_libs=$(pkg-config --static --libs heapclient | sed 's/-lheapclient\b/-l:libheapclient.a/')
# shellcheck disable=SC2046,SC2086  # word splitting of flag lists is intended
$cc $cflags -o "$dest$example" "$src/tests/e2e/example.c" \
	$(pkg-config --cflags heapclient) $static_libs || fail "building the example"

# ---- boot ----

echo "== boot the root"
boot_start=$SECONDS
# Without systemd on the host there is no machined to register with, and no
# manager to make a scope for the container in: --register=no --keep-unit.
# --volatile=overlay puts a tmpfs over the image, so the image stays as made.
systemd-nspawn -D "$base" -M "heapd-boot-$$" --register=no --keep-unit --private-network \
	--volatile=overlay --console=read-only -b >"$run/console.log" 2>&1 9>&- &
nspawn_pid=$!

# The container's PID 1 is a child of nspawn once it has become systemd.
find_pid1() {
	local p
	for p in $(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null); do
		if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd ]; then
			pid1=$p
			return 0
		fi
	done
	return 1
}
booted() {
	if ! kill -0 "$nspawn_pid" 2>/dev/null; then
		tail -n 30 "$run/console.log" >&2
		fail "systemd-nspawn exited during boot (console above)"
	fi
	[ -n "$pid1" ] || find_pid1 || return 1
	state=$(in_ct systemctl is-system-running 2>/dev/null) || true
	case $state in
	running | degraded) return 0 ;;
	esac
	return 1
}
state=
if ! poll "$boot_timeout" booted; then
	tail -n 30 "$run/console.log" >&2
	fail "the container did not finish booting in ${boot_timeout}s (state: ${state:-none}; console above)"
fi
echo "booted in $((SECONDS - boot_start))s: $state"
if [ "$state" = degraded ]; then
	in_ct systemctl --failed --no-pager || true
fi

# ---- install, and heapd(8) SYSTEMD ----

echo "== install the files, then sysusers, tmpfiles, daemon-reload, enable --now heapd.socket"
tar -C "$dest" -cf - . | in_ct tar -C / --no-overwrite-dir -xf - || fail "copying the installed files into the container"
in_ct systemd-sysusers heapd.conf || fail "systemd-sysusers heapd.conf"
in_ct systemd-tmpfiles --create heapd.conf || fail "systemd-tmpfiles --create heapd.conf"
in_ct systemctl daemon-reload || fail "systemctl daemon-reload"
in_ct systemctl enable --now heapd.socket || fail "systemctl enable --now heapd.socket"

echo "== heapd.socket listens, heapd.service waits for a connection"
[ "$(in_ct systemctl is-active heapd.socket)" = active ] || fail "heapd.socket is not active"
sock=$(in_ct stat -c '%F %a %U %G' /run/heapd/heapd.sock) || fail "no /run/heapd/heapd.sock"
[ "$sock" = "socket 660 heapd heapd" ] || fail "/run/heapd/heapd.sock is '$sock', want 'socket 660 heapd heapd'"
svc=$(in_ct systemctl is-active heapd.service) || true
[ "$svc" = inactive ] || fail "heapd.service is $svc before any connection, want inactive"

# ---- the arena ----

# The arena is a directory (not a symlink) owned by heapd with mode 0700,
# holding meta and data, and nothing in it has group or other permissions.
arena_checks() {
	local what
	what=$(in_ct stat -c '%F %a %U %G' /dev/shm/heapd) || fail "no arena directory /dev/shm/heapd"
	[ "$what" = "directory 700 heapd heapd" ] ||
		fail "arena /dev/shm/heapd is '$what', want 'directory 700 heapd heapd'"
	for f in meta data; do
		what=$(in_ct stat -c '%F %U' "/dev/shm/heapd/$f") || fail "no arena file /dev/shm/heapd/$f"
		case $what in
		"regular file heapd" | "regular empty file heapd") ;;
		*) fail "arena file /dev/shm/heapd/$f is '$what', want a regular file of heapd's" ;;
		esac
	done
	what=$(in_ct find /dev/shm/heapd -mindepth 1 -perm /077 -printf '%m %p\n') || fail "find in /dev/shm/heapd"
	[ -z "$what" ] || fail "arena files open to group or others: $what"
}

echo "== the tmpfiles.d entry made the arena directory"
what=$(in_ct stat -c '%F %a %U %G' /dev/shm/heapd) || fail "tmpfiles.d made no /dev/shm/heapd"
[ "$what" = "directory 700 heapd heapd" ] ||
	fail "tmpfiles.d made /dev/shm/heapd '$what', want 'directory 700 heapd heapd'"

# ---- socket activation ----

echo "== heapctl stats starts heapd.service"
in_ct heapctl stats >"$run/stats.out" 2>&1 || { cat "$run/stats.out" >&2; fail "heapctl stats as root"; }
[ "$(in_ct systemctl is-active heapd.service)" = active ] || fail "heapd.service is not active after a connection"
main_pid() {
	in_ct systemctl show -p MainPID --value heapd.service
}
pid=$(main_pid) || fail "systemctl show -p MainPID heapd.service"
[ "$pid" -gt 0 ] || fail "heapd.service has no MainPID"
heapd_ids="$(in_ct id -u heapd) $(in_ct id -g heapd)"
ids=$(in_ct awk '/^Uid:/ {u = $3} /^Gid:/ {g = $3} END {print u, g}' "/proc/$pid/status")
[ "$ids" = "$heapd_ids" ] || fail "heapd runs as uid/gid $ids, want heapd's $heapd_ids"
arena_checks

echo "== the STATUS= line heapd reports"
# heapd sends one every sweep interval, so the two reads may see different
# lines; they agree once both are read between two of them.
status_shown() {
	local shown
	status=$(in_ct systemctl show -p StatusText --value heapd.service)
	shown=$(in_ct systemctl status --no-pager --lines=0 heapd.service) || true
	[ -n "$status" ] && case $shown in *"Status: \"$status\""*) ;; *) false ;; esac
}
status=
poll 10 status_shown || fail "no status line from heapd in systemctl status (StatusText: '$status')"
echo "StatusText: $status"

# ---- who may allocate ----

echo "== a member of group heapd allocates; a user outside it is refused"
in_ct useradd -M -s /usr/sbin/nologin member || fail "useradd member"
in_ct usermod -aG heapd member || fail "usermod -aG heapd member"
in_ct useradd -M -s /usr/sbin/nologin outsider || fail "useradd outsider"
as() {
	local user=$1
	shift
	in_ct runuser -u "$user" -- "$@"
}
as member "$example" put "written by member" || fail "the example as a member of group heapd"
got=$(as member "$example" get) || fail "finding the object by name as member"
[ "$got" = "written by member" ] || fail "read '$got' back, want 'written by member'"
rc=0
as outsider "$example" put "written by outsider" >"$run/out" 2>"$run/err" || rc=$?
[ "$rc" -ne 0 ] || fail "a user outside group heapd allocated: $(cat "$run/out")"
grep -q 'Permission denied' "$run/err" || fail "the outsider's error is not EACCES: $(cat "$run/err")"

# ---- restarts keep the objects ----

echo "== an object bound before systemctl restart is found and read after it"
as member "$example" put "before restart" || fail "put before restart"
old_pid=$(main_pid)
in_ct systemctl restart heapd.service || fail "systemctl restart heapd"
[ "$(main_pid)" != "$old_pid" ] || fail "systemctl restart left heapd's MainPID $old_pid"
got=$(as member "$example" get) || fail "get after restart"
[ "$got" = "before restart" ] || fail "read '$got' after restart, want 'before restart'"

echo "== an object bound before heapd is killed is found and read after Restart=on-failure"
as member "$example" put "before SIGKILL" || fail "put before SIGKILL"
old_pid=$(main_pid)
in_ct sh -c 'kill -KILL "$1"' sh "$old_pid" || fail "kill -KILL $old_pid"
restarted() {
	local p
	p=$(main_pid)
	[ "$p" -gt 0 ] && [ "$p" != "$old_pid" ] && [ "$(in_ct systemctl is-active heapd.service)" = active ]
}
# systemd restarts it by itself, RestartSec=1s after the kill.
poll 30 restarted || fail "heapd.service was not restarted after SIGKILL"
got=$(as member "$example" get) || fail "get after SIGKILL"
[ "$got" = "before SIGKILL" ] || fail "read '$got' after SIGKILL, want 'before SIGKILL'"
arena_checks

# The sandbox must let heapd make /dev/shm/heapd when tmpfiles.d has not.
echo "== heapd creates a missing arena directory itself"
in_ct systemctl stop heapd.service || fail "systemctl stop heapd.service"
in_ct rm -rf /dev/shm/heapd
in_ct heapctl stats >"$run/stats.out" 2>&1 ||
	{ cat "$run/stats.out" >&2; fail "heapctl stats with no arena directory"; }
arena_checks

# ---- stop ----

echo "== systemctl stop heapd.socket heapd.service"
stopped_lines() {
	in_ct journalctl --no-pager -o cat -u heapd.service | grep -c '^heapd: stopped$' || true
}
stopped_before=$(stopped_lines)
in_ct systemctl stop heapd.socket heapd.service || fail "systemctl stop"
for u in heapd.socket heapd.service; do
	s=$(in_ct systemctl is-active "$u") || true
	[ "$s" = inactive ] || fail "$u is $s after stop, want inactive"
done
result=$(in_ct systemctl show -p Result --value heapd.service)
[ "$result" = success ] || fail "heapd.service stopped with result $result"
# journald may take a moment to write out the last lines of heapd's stderr.
stopped_logged() {
	[ "$(stopped_lines)" -gt "$stopped_before" ]
}
poll 10 stopped_logged || fail "the journal has no 'heapd: stopped' line from this stop"

echo "test_systemd_boot: ok (${SECONDS}s)"
