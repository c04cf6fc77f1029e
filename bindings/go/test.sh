#!/usr/bin/env bash
# test.sh PREFIX
#
# Builds and tests the Go binding against the library installed in PREFIX
# (cmake --install BUILD --prefix PREFIX): gofmt, go vet, then `go test` of
# every package (unit tests, vhu-check from PREFIX/bin against Go back-ends,
# QEMU guests reading /dev/hwrng from the Go rng example through
# tests/e2e/rng_guest_test.sh), and the binding's tests once more under the
# race detector. Needs Go (PATH or /usr/local/go/bin), a C compiler,
# pkg-config, and for the guests qemu-system-x86, busybox-static and cpio.
# Installs nothing; the Go build cache is the user's usual one.
#
# Exit status 0 when everything passed, 1 on a failure, 2 on usage errors.
# The last line is a summary: "go: N tests passed".

set -euo pipefail

if (($# != 1)) || [[ ! -d "$1" ]]; then
    printf 'usage: %s PREFIX (the library'\''s install prefix)\n' "$0" >&2
    exit 2
fi
prefix=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vhu-go-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    printf 'go: FAIL: %s\n' "$*" >&2
    exit 1
}

command -v go >/dev/null 2>&1 || PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null 2>&1 || fail "no go command on PATH or in /usr/local/go/bin"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pkg-config --exists vhostuser || fail "pkg-config finds no vhostuser in $prefix"
libdir=$(cd "$(pkg-config --variable=libdir vhostuser)" && pwd)
[[ "$libdir" == "$prefix"/* ]] || fail "pkg-config's vhostuser is not the one in $prefix (libdir $libdir)"
[[ -e "$libdir/libvhostuser-cxx.so.0" ]] || fail "no libvhostuser-cxx.so.0 in $libdir"

# Programs built here (tests, the example) find the installed library
# through their run path; the module has no dependencies to download.
export CGO_ENABLED=1
export CGO_LDFLAGS="-Wl,-rpath,$libdir${CGO_LDFLAGS:+ $CGO_LDFLAGS}"
export VHU_PREFIX=$prefix
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=readonly
if [[ -z "${HOME:-}" ]]; then
    export GOCACHE=$tmp/gocache GOPATH=$tmp/gopath
fi

cd "$here"
printf 'go: %s, library %s (%s)\n' "$(go version)" "$(pkg-config --modversion vhostuser)" "$libdir"

unformatted=$(gofmt -l .)
[[ -z "$unformatted" ]] || fail "not gofmt-formatted: $unformatted"
go vet ./... || fail "go vet"

# The example must resolve the library from the prefix.
go build -o "$tmp/go-rng" ./examples/rng || fail "building examples/rng"
resolved=$(ldd "$tmp/go-rng" | awk '$1 == "libvhostuser-cxx.so.0" { print $3 }')
[[ "$resolved" -ef "$libdir/libvhostuser-cxx.so.0" ]] ||
    fail "examples/rng loads libvhostuser-cxx.so.0 from '$resolved', not $libdir"

status=0
go test -count=1 -v -timeout 20m ./... >"$tmp/test.log" 2>&1 || status=$?
grep -E '^(\s*--- (PASS|FAIL|SKIP)|ok |FAIL|panic:)|RESULT:' "$tmp/test.log" || true
if ((status != 0)); then
    printf -- '---- go test output (last 150 lines) ----\n' >&2
    tail -n 150 "$tmp/test.log" >&2
    fail "go test exited with status $status"
fi
if grep -q -- '--- SKIP' "$tmp/test.log"; then
    fail "some tests were skipped"
fi

# The binding under the race detector (callbacks arrive on the library's
# threads).
go test -count=1 -race -timeout 10m ./vhostuser >"$tmp/race.log" 2>&1 || {
    tail -n 150 "$tmp/race.log" >&2
    fail "go test -race ./vhostuser"
}
grep -E '^ok ' "$tmp/race.log" | sed 's/^/race: /'

passed=$(grep -cE '^--- PASS' "$tmp/test.log" || true)
subtests=$(grep -cE '^\s+--- PASS' "$tmp/test.log" || true)
((passed > 0)) || fail "no test passed"
printf 'go: %d tests passed (%d subtests; vet, gofmt and the race detector clean)\n' "$passed" "$subtests"
