#!/bin/sh
# SPDX-License-Identifier: MIT
# test_install.sh - install heapd into a temporary prefix and use it from
# outside the tree, the way a packager and an application developer would.
#
#   1. `cmake --install BUILD --prefix TMP` puts every promised file in place,
#      and a `--prefix /usr` install into a DESTDIR puts the configuration
#      example in DESTDIR/etc/heapd, everything else under DESTDIR/usr;
#   2. tests/e2e/install-consumer is built against the prefix four ways: with
#      pkg-config (shared, and static from `--static`), and with
#      find_package(HeapClient) (HeapClient::heapclient and ::heapclient_static);
#   3. each build reports a missing daemon cleanly (exit 3, naming the socket),
#      then allocates and frees through the installed heapd.
#
# Environment (set by tests/ops.cmake): HEAPD_BUILD_DIR, HEAPD_SOURCE_DIR,
# HEAPD_LIBDIR (CMAKE_INSTALL_LIBDIR), CC, and HEAPD_TEST_CFLAGS for
# sanitizer builds, whose libraries need the same flags in their users.
set -eu

build=${HEAPD_BUILD_DIR:?}
src=${HEAPD_SOURCE_DIR:?}
libdir=${HEAPD_LIBDIR:-lib}
cc=${CC:-cc}
cflags=${HEAPD_TEST_CFLAGS:-}

. "$(dirname "$0")/../harness/shell.sh"
hsh_init install
prefix=$tmp/prefix

echo "== install into $prefix"
hsh_install "$prefix"

for f in bin/heapctl sbin/heapd \
	"$libdir/libheapclient.so" "$libdir/libheapclient.a" include/heapclient.h \
	"$libdir/pkgconfig/heapclient.pc" \
	"$libdir/cmake/HeapClient/HeapClientConfig.cmake" \
	"$libdir/cmake/HeapClient/HeapClientConfigVersion.cmake" \
	"$libdir/cmake/HeapClient/HeapClientTargets.cmake" \
	lib/systemd/system/heapd.service lib/systemd/system/heapd.socket \
	lib/sysusers.d/heapd.conf lib/tmpfiles.d/heapd.conf etc/heapd/heapd.conf.example \
	share/man/man8/heapd.8 share/man/man1/heapctl.1 share/man/man3/libheapclient.3; do
	[ -e "$prefix/$f" ] || hsh_fail "not installed: $f"
done
for f in bin/heapctl sbin/heapd; do
	[ -x "$prefix/$f" ] || hsh_fail "$f is not executable"
done
grep -q "^ExecStart=$prefix/sbin/heapd\$" "$prefix/lib/systemd/system/heapd.service" ||
	hsh_fail "heapd.service does not run $prefix/sbin/heapd"
"$prefix/bin/heapctl" --version | grep -q '^heapctl ' || hsh_fail "installed heapctl --version"
# Only the public API leaves the shared library.
if nm -D --defined-only "$prefix/$libdir/libheapclient.so" | awk '$2 ~ /^[TDBVW]$/ {print $3}' |
	grep -v '^hc_' | grep -v '^_' | grep -q .; then
	nm -D --defined-only "$prefix/$libdir/libheapclient.so" >&2
	hsh_fail "libheapclient.so exports symbols outside hc_*"
fi

echo "== install with prefix /usr into a DESTDIR"
# As a package build does: the configuration example goes to /etc/heapd,
# beside the /etc/heapd/heapd.conf that heapd reads, not to /usr/etc.
destdir=$tmp/destdir
DESTDIR=$destdir "${CMAKE:-cmake}" --install "$build" --prefix /usr >"$tmp/install-usr.log" ||
	{ cat "$tmp/install-usr.log" >&2; hsh_fail "cmake --install --prefix /usr with DESTDIR"; }
[ -f "$destdir/etc/heapd/heapd.conf.example" ] || hsh_fail "--prefix /usr: heapd.conf.example is not in DESTDIR/etc/heapd"
[ ! -e "$destdir/usr/etc" ] || hsh_fail "--prefix /usr installed into /usr/etc: $(find "$destdir/usr/etc")"
grep -q '^ExecStart=/usr/sbin/heapd$' "$destdir/usr/lib/systemd/system/heapd.service" ||
	hsh_fail "--prefix /usr: heapd.service does not run /usr/sbin/heapd"
if find "$destdir" -mindepth 1 -maxdepth 1 ! -name usr ! -name etc | grep -q .; then
	hsh_fail "--prefix /usr installed outside /usr and /etc: $(find "$destdir" -mindepth 1 -maxdepth 1)"
fi

consumer_src=$src/tests/e2e/install-consumer
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"

echo "== pkg-config, shared"
# shellcheck disable=SC2046,SC2086  # word splitting of flag lists is intended
$cc $cflags -o "$tmp/consumer-pc" "$consumer_src/consumer.c" $(pkg-config --cflags --libs heapclient) \
	-Wl,-rpath,"$(pkg-config --variable=libdir heapclient)"

echo "== pkg-config, static"
# The same flags with the archive named instead of -lheapclient, so the .so cannot win.
static_libs=$(pkg-config --static --libs heapclient | sed 's/-lheapclient\b/-l:libheapclient.a/')
# shellcheck disable=SC2046,SC2086
$cc $cflags -o "$tmp/consumer-pc-static" "$consumer_src/consumer.c" $(pkg-config --cflags heapclient) $static_libs

for kind in shared static; do
	echo "== find_package(HeapClient), $kind"
	static=OFF
	[ "$kind" = static ] && static=ON
	"${CMAKE:-cmake}" -S "$consumer_src" -B "$tmp/cmake-$kind" -DCMAKE_PREFIX_PATH="$prefix" -DCONSUMER_STATIC=$static \
		-DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" \
		>"$tmp/cmake-$kind.log" 2>&1 || { cat "$tmp/cmake-$kind.log" >&2; hsh_fail "configuring the consumer ($kind)"; }
	"${CMAKE:-cmake}" --build "$tmp/cmake-$kind" >>"$tmp/cmake-$kind.log" 2>&1 ||
		{ cat "$tmp/cmake-$kind.log" >&2; hsh_fail "building the consumer ($kind)"; }
	cp "$tmp/cmake-$kind/consumer" "$tmp/consumer-cmake-$kind"
done

for exe in consumer-pc-static consumer-cmake-static; do
	if readelf -d "$tmp/$exe" | grep -q 'NEEDED.*libheapclient'; then
		hsh_fail "$exe links libheapclient.so, want the static library"
	fi
done
for exe in consumer-pc consumer-cmake-shared; do
	readelf -d "$tmp/$exe" | grep -q 'NEEDED.*libheapclient\.so' || hsh_fail "$exe does not link libheapclient.so"
done

consumers="consumer-pc consumer-pc-static consumer-cmake-shared consumer-cmake-static"
sock=$tmp/heapd.sock

echo "== no daemon"
for exe in $consumers; do
	rc=0
	"$tmp/$exe" "$sock" >"$tmp/out" 2>"$tmp/err" || rc=$?
	[ "$rc" -eq 3 ] || { cat "$tmp/err" >&2; hsh_fail "$exe without a daemon: exit $rc, want 3"; }
	grep -q "$sock" "$tmp/err" || hsh_fail "$exe does not name the socket: $(cat "$tmp/err")"
done

echo "== installed heapd"
"$prefix/sbin/heapd" --socket "$sock" --arena "$tmp/arena" --arena-size 64M 2>"$tmp/heapd.log" &
daemon_pid=$!
hsh_serving "$prefix" "$sock" "installed heapd"
for exe in $consumers; do
	out=$("$tmp/$exe" "$sock") || hsh_fail "$exe against heapd: exit $?"
	[ "$out" = "consumer: ok" ] || hsh_fail "$exe said: $out"
done
"$prefix/bin/heapctl" --socket "$sock" check >/dev/null || hsh_fail "heapctl check after the consumers"

echo "test_install: ok"
