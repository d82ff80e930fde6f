# SPDX-License-Identifier: MIT
# shell.sh - what the shell tests share, sourced by them (POSIX sh): a
# temporary directory removed at exit together with the heapd they started,
# failing with a message, installing the build tree into a prefix, and
# waiting for an installed heapd to serve.
#
#   hsh_init NAME      $tmp, a fresh directory; messages name the test NAME
#   hsh_fail MESSAGE   print "NAME: FAIL: MESSAGE" and exit 1
#   hsh_install PREFIX cmake --install the build tree ($build) into PREFIX
#   hsh_serving PREFIX SOCKET WHAT
#                      after "heapd ... &" and daemon_pid=$!: wait (10 s at
#                      most) until PREFIX's heapctl is served on SOCKET;
#                      fail naming WHAT if heapd exits or never serves.
#                      heapd's stderr is expected in $tmp/heapd.log.

hsh_init() {
	hsh_name=$1
	tmp=$(mktemp -d "/tmp/heapd-$1-XXXXXX")
	daemon_pid=
	trap hsh_cleanup EXIT
}

hsh_cleanup() {
	if [ -n "$daemon_pid" ]; then
		kill "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}

hsh_fail() {
	echo "$hsh_name: FAIL: $*" >&2
	exit 1
}

hsh_install() {
	"${CMAKE:-cmake}" --install "$build" --prefix "$1" >"$tmp/install.log" ||
		{ cat "$tmp/install.log" >&2; hsh_fail "cmake --install"; }
}

hsh_serving() {
	i=0
	until "$1/bin/heapctl" --socket "$2" stats >/dev/null 2>&1; do
		i=$((i + 1))
		kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/heapd.log" >&2; hsh_fail "$3 exited"; }
		[ $i -lt 100 ] || { cat "$tmp/heapd.log" >&2; hsh_fail "$3 did not start serving"; }
		sleep 0.1 # polling, bounded above
	done
}
