#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian packages (libvhostuser-cxx0, libvhostuser-cxx-dev,
# vhostuser-tools) from a clean copy of the committed source tree, checks
# them with lintian (errors fail), unpacks them into a scratch root with
# dpkg -x and builds and runs the C consumer (pkg-config) and the CMake
# consumer (find_package) against the packaged files only.
#
# usage: packaging/build-debs.sh [OUTDIR]
#   OUTDIR  where the .deb, .changes and .buildinfo files are copied
#           (created if missing); without it they are discarded.
# environment:
#   VHU_DEB_SOURCE=worktree  package the working tree (tracked and untracked
#                            files, build directories excluded) instead of
#                            HEAD
# needs: build-essential debhelper devscripts lintian fakeroot and the
# Build-Depends of debian/control (cmake ninja-build pkg-config libevent-dev)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
outdir=${1:-}
passed=0
tmp=$(realpath "$(mktemp -d /tmp/vhu-deb-XXXXXX)")
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n==== %s ====\n' "$*"; }
fail() {
  echo "build-debs: FAIL: $*" >&2
  exit 1
}
ok() {
  echo "ok: $*"
  passed=$((passed + 1))
}

for tool in dpkg-buildpackage dh lintian cmake ninja pkg-config cc; do
  command -v "$tool" >/dev/null ||
    fail "$tool is missing (apt-get install build-essential debhelper lintian cmake ninja-build pkg-config libevent-dev)"
done

# ---- a clean copy of the source tree ----
version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$top/debian/changelog")
upstream=${version%-*}
src="$tmp/build/libvhostuser-cxx-$upstream"
mkdir -p "$src"
step "source tree ($version)"
if [ "${VHU_DEB_SOURCE:-head}" = worktree ] || ! git -C "$top" rev-parse HEAD >/dev/null 2>&1; then
  (cd "$top" && tar --exclude=.git --exclude='./build' --exclude='./build-*' -cf - .) |
    tar -xf - -C "$src"
  echo "copied the working tree of $top"
else
  git -C "$top" archive --format=tar HEAD | tar -xf - -C "$src"
  echo "exported $(git -C "$top" rev-parse --short HEAD) with git archive"
fi
[ -f "$src/debian/control" ] || fail "no debian/ in the source copy (commit it first)"

# ---- build ----
step "dpkg-buildpackage -us -uc -b"
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$tmp/buildpackage.log" 2>&1 ||
  {
    tail -60 "$tmp/buildpackage.log"
    fail "dpkg-buildpackage failed"
  }
grep -E '^dpkg-(gensymbols|shlibdeps): (warning|error)' "$tmp/buildpackage.log" || true
if grep -q '^dpkg-gensymbols: warning: some new symbols' "$tmp/buildpackage.log"; then
  awk '/^--- debian\/.*symbols/ { on = 1 } on && (!/^[-+@ ]/ || /^   dh_/) { on = 0 } on' "$tmp/buildpackage.log"
  fail "the library exports symbols that debian/libvhostuser-cxx0.symbols does not list"
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
changes="$tmp/build/libvhostuser-cxx_${version}_${arch}.changes"
[ -f "$changes" ] || fail "no $changes"
for pkg in libvhostuser-cxx0 libvhostuser-cxx-dev vhostuser-tools; do
  deb="$tmp/build/${pkg}_${version}_${arch}.deb"
  [ -f "$deb" ] || fail "no $deb"
  echo "$(basename "$deb"): $(stat -c %s "$deb") bytes, depends: $(dpkg-deb -f "$deb" Depends)"
done
ok "dpkg-buildpackage built libvhostuser-cxx0, libvhostuser-cxx-dev, vhostuser-tools"

# ---- lintian ----
step "lintian"
lintian_rc=0
lintian --fail-on error --display-info --tag-display-limit 0 "$changes" >"$tmp/lintian.log" 2>&1 ||
  lintian_rc=$?
grep -v '^running with root privileges' "$tmp/lintian.log" || true
count() { grep -c "^$1: " "$tmp/lintian.log" || true; }
summary="lintian: $(count E) errors, $(count W) warnings, $(count I) info, $(count P) pedantic"
echo "$summary"
if [ "$lintian_rc" -ne 0 ] || [ "$(count E)" -ne 0 ]; then
  fail "lintian reported errors (exit $lintian_rc)"
fi
ok "$summary"

# ---- the packaged files in a scratch root ----
step "unpack into a scratch root (dpkg -x)"
root="$tmp/root"
for pkg in libvhostuser-cxx0 libvhostuser-cxx-dev vhostuser-tools; do
  dpkg -x "$tmp/build/${pkg}_${version}_${arch}.deb" "$root"
done
libdir="$root/usr/lib/$multiarch"
(cd "$root" && find . -type f -o -type l | sort)
lib=$(find "$libdir" -name 'libvhostuser-cxx.so.0.*' -type f)
[ -n "$lib" ] || fail "no libvhostuser-cxx.so.0.* in libvhostuser-cxx0"
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libvhostuser-cxx.so.0 ] || fail "SONAME is '$soname'"
if readelf -d "$lib" "$root"/usr/bin/vhu-* | grep -E 'RPATH|RUNPATH'; then
  fail "packaged binaries carry a run path"
fi
ok "SONAME $soname, no run path in the library or the programs"

# The symbols file lists exactly what the library exports.
nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort >"$tmp/exported"
sed -n 's/^ \(vhu_[^@]*\)@VHOSTUSER_0 .*/\1/p' "$top/debian/libvhostuser-cxx0.symbols" | sort >"$tmp/listed"
if ! diff -u "$tmp/listed" "$tmp/exported"; then
  fail "debian/libvhostuser-cxx0.symbols and the exported symbols differ (- listed, + exported)"
fi
ok "symbols file lists all $(wc -l <"$tmp/exported") exported vhu_* functions"

# ---- consumers built against the packaged files only ----
step "C consumer through pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cflags=$(pkg-config --cflags vhostuser)
libs=$(pkg-config --libs vhostuser)
modversion=$(pkg-config --modversion vhostuser)
echo "pkg-config vhostuser $modversion: $cflags $libs"
[ "$modversion" = "$upstream" ] ||
  fail "the project is version $modversion but debian/changelog says $upstream"
incdir=$(pkg-config --variable=includedir vhostuser)
pclibdir=$(pkg-config --variable=libdir vhostuser)
if [ "$(realpath "$incdir")" != "$root/usr/include" ] || [ "$(realpath "$pclibdir")" != "$libdir" ]; then
  fail "pkg-config points to $incdir and $pclibdir, not into the scratch root"
fi
# shellcheck disable=SC2086 # the flags are words
cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$top/tests/consumer/consumer.c" \
  -o "$tmp/consumer" $cflags $libs
resolved=$(LD_LIBRARY_PATH="$libdir" ldd "$tmp/consumer" | awk '/libvhostuser-cxx/ { print $3 }')
[ "$(realpath "$resolved")" = "$(realpath "$lib")" ] || fail "consumer loads '$resolved'"
LD_LIBRARY_PATH="$libdir" "$tmp/consumer"
ok "C11 consumer built with pkg-config and run against the packaged library"

step "CMake consumer through find_package(vhostuser)"
cmake -S "$top/tests/consumer" -B "$tmp/cmake-consumer" -G Ninja \
  -DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
  >"$tmp/cmake-consumer.log" 2>&1 || {
  cat "$tmp/cmake-consumer.log"
  fail "cmake could not configure the consumer"
}
found=$(sed -n 's/^vhostuser_DIR:PATH=//p' "$tmp/cmake-consumer/CMakeCache.txt")
echo "vhostuser_DIR=$found"
[ "$(realpath "$found")" = "$(realpath "$libdir/cmake/vhostuser")" ] ||
  fail "find_package found vhostuser outside the scratch root"
cmake --build "$tmp/cmake-consumer" >"$tmp/cmake-build.log" 2>&1 || {
  cat "$tmp/cmake-build.log"
  fail "the CMake consumer does not build"
}
LD_LIBRARY_PATH="$libdir" "$tmp/cmake-consumer/consumer"
ok "CMake consumer built with find_package(vhostuser) and run"

step "packaged programs"
for prog in vhu-blk vhu-net vhu-rng vhu-check; do
  LD_LIBRARY_PATH="$libdir" "$root/usr/bin/$prog" --help >/dev/null || fail "$prog --help"
  [ -f "$root/usr/share/man/man1/$prog.1.gz" ] || fail "no man page for $prog"
  zcat "$root/usr/share/man/man1/$prog.1.gz" | grep -q "^\.SH NAME" || fail "$prog.1 is not a man page"
done
# The daemon serves on a socket and vhu-check, from the same package, checks it.
LD_LIBRARY_PATH="$libdir" "$root/usr/bin/vhu-rng" --socket-path="$tmp/rng.sock" 2>"$tmp/rng.log" &
rng_pid=$!
trap 'kill "$rng_pid" 2>/dev/null || true; wait "$rng_pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 50); do
  [ -S "$tmp/rng.sock" ] && break
  sleep 0.1
done
LD_LIBRARY_PATH="$libdir" "$root/usr/bin/vhu-check" --socket-path="$tmp/rng.sock" \
  >"$tmp/check.log" 2>&1 || {
  cat "$tmp/check.log"
  fail "vhu-check against the packaged vhu-rng"
}
echo "vhu-check on vhu-rng: $(tail -1 "$tmp/check.log")"
kill "$rng_pid"
wait "$rng_pid" || fail "vhu-rng did not exit cleanly on SIGTERM"
ok "packaged vhu-blk, vhu-net, vhu-rng, vhu-check run, have man pages; vhu-check passes on vhu-rng"

if [ -n "$outdir" ]; then
  mkdir -p "$outdir"
  cp "$tmp"/build/*.deb "$tmp"/build/*.changes "$tmp"/build/*.buildinfo "$outdir"/
  echo "packages copied to $outdir"
fi

echo "$summary"
echo "deb: $passed passed, 0 failed"
