#!/usr/bin/env bash
# Builds the project and runs every test: unit, integration, vhu-check's
# device probes, the end-to-end tests with QEMU guests and DPDK, the
# installed-library checks (SONAME, exported symbols, pkg-config and CMake
# consumers, the installed programs, vhu-rng and vhu-blk under QEMU), the
# ABI gate, the API reference build, the Go and Rust bindings' tests, the
# Debian packages (lintian, consumers against the packaged files),
# formatting, the whole suite again under AddressSanitizer +
# UndefinedBehaviorSanitizer, and a bounded libFuzzer run per target.
#
# usage: tests/run-all.sh            (from the top of the source tree)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc)
results=()

step() { printf '\n==== %s ====\n' "$*"; }
record() { results+=("$1"); }

step "build (warnings are errors)"
cmake -S . -B build-ci -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVHU_WERROR=ON
cmake --build build-ci -j "$jobs"

step "test suite"
ctest --test-dir build-ci --output-on-failure -j 1
record "test suite: passed"

step "install and check the installed library"
prefix=$(mktemp -d /tmp/vhu-prefix-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install build-ci --prefix "$prefix" >/dev/null
lib=$(find "$prefix" -name 'libvhostuser-cxx.so.0.*' -type f | head -1)
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
echo "SONAME: $soname"
[ "$soname" = "libvhostuser-cxx.so.0" ]
extra=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBRVWiu]/ {print $3}' | grep -v '^vhu_' || true)
if [ -n "$extra" ]; then
  echo "symbols outside vhu_* are exported:"; echo "$extra"; exit 1
fi
echo "exported: $(nm -D --defined-only "$lib" | grep -c ' vhu_') vhu_* functions, nothing else"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
cc -std=c11 -Wall -Wextra -Wpedantic -Werror tests/consumer/consumer.c -o "$prefix/consumer" \
  $(pkg-config --cflags --libs vhostuser) -Wl,-rpath,"$(pkg-config --variable=libdir vhostuser)"
"$prefix/consumer"
cmake -S tests/consumer -B "$prefix/cmake-consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/cmake-consumer" >/dev/null
"$prefix/cmake-consumer/consumer"
record "installed library: SONAME $soname, only vhu_* exported, C11 consumers via pkg-config and find_package ok"

step "ABI gate (exported symbols against abi/vhostuser.symbols)"
abi/test-check.sh
abi/check.sh "$lib"
record "ABI gate: exported symbols match abi/vhostuser.symbols"

step "API reference (Doxygen, warnings are errors)"
docs/build.sh "$prefix/docs"
record "API reference: built with no warnings"

step "Go bindings against the installed library"
bindings/go/test.sh "$prefix"
record "Go bindings: go test passed (vhu-check, hooks, chain lifetime, handles, race detector, QEMU guest)"

step "Rust bindings against the installed library"
bindings/rust/test.sh "$prefix"
record "Rust bindings: cargo test passed (layout, drop-once, panics, vhu-check, QEMU guest)"

step "Debian packages (dpkg-buildpackage, lintian, consumers against the packaged files)"
packaging/build-debs.sh
record "Debian packages: built, lintian without errors, consumers built from the packages"

step "installed programs"
for prog in vhu-blk vhu-net vhu-rng vhu-check; do
  "$prefix/bin/$prog" --help >/dev/null
  echo "$prog: $(readelf -d "$prefix/bin/$prog" | grep -c 'libvhostuser-cxx.so.0') link to libvhostuser-cxx.so.0"
done
record "installed programs: vhu-blk, vhu-net, vhu-rng, vhu-check run from the prefix"

step "QEMU guests against the installed vhu-rng and vhu-blk"
tests/e2e/rng_guest_test.sh "$prefix/bin/vhu-rng"
tests/e2e/blk_guest_test.sh "$prefix/bin/vhu-blk"
record "QEMU guests with the installed vhu-rng and vhu-blk: passed"

step "formatting"
if find include src examples tests -name '*.[ch]' -o -name '*.cc' -o -name '*.h' |
    xargs clang-format --dry-run --Werror 2>/tmp/vhu-format.log; then
  record "clang-format: clean"
else
  head -40 /tmp/vhu-format.log; exit 1
fi

step "test suite under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DVHU_WERROR=ON -DVHU_SANITIZE=ON
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j 1
record "sanitizer suite: passed"

step "fuzzing (libFuzzer + ASan/UBSan, ${VHU_FUZZ_SECONDS:-45} s per target, from the seeds)"
tests/fuzz/run.sh "${VHU_FUZZ_SECONDS:-45}"
record "fuzzing: no findings in ${VHU_FUZZ_SECONDS:-45} s per target"

step "summary"
printf '%s\n' "${results[@]}"
# ctest ran the suite twice (plain and sanitized); the other checks are the
# installed-library, ABI, API-reference, Go, Rust, Debian-package,
# installed-programs, installed-QEMU, formatting and fuzzing steps above.
n=$(ctest --test-dir build-ci -N | sed -n 's/^Total Tests: //p')
echo "all: $((2 * n + 10)) passed, 0 failed"
