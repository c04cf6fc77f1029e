#!/usr/bin/env bash
# bindings/rust/test.sh PREFIX
#
# Builds and tests the Rust bindings against libvhostuser-cxx installed in
# PREFIX (cmake --install ... --prefix PREFIX): formatting, a warning-free
# build, clippy when installed, then `cargo test` for the whole workspace:
#   vhostuser-sys  struct layouts and constants against PREFIX's header
#                  (a C probe compiled with cc), the linked library's version
#   vhostuser      the backend is dropped exactly once; panics in callbacks
#                  are caught and logged; errors; compile-fail doc tests
#   vhu-rng-rs     the Rust rng daemon passes PREFIX/bin/vhu-check, exits 0
#                  on SIGTERM, and serves /dev/hwrng to QEMU guests
#                  (tests/e2e/rng_guest_test.sh)
# Needs: cargo/rustc (PATH or ~/.cargo/bin), cc, pkg-config, and what the
# QEMU test needs (qemu-system-x86, busybox-static, cpio). Installs nothing.
# The cargo target directory is temporary unless CARGO_TARGET_DIR is set.
# Exit status: 0 pass, 1 fail, 2 usage error.

set -euo pipefail

if (($# != 1)); then
    printf 'usage: %s PREFIX\n' "$0" >&2
    exit 2
fi
prefix=$(cd "$1" && pwd) || {
    printf '%s: no such prefix: %s\n' "$0" "$1" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if ! command -v cargo >/dev/null && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
fi
for tool in cargo rustc cc pkg-config; do
    if ! command -v "$tool" >/dev/null; then
        printf 'rust: FAIL: %s not found\n' "$tool" >&2
        exit 1
    fi
done

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export VHU_PREFIX=$prefix
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"
export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vhostuser-rust.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$tmp/target}

cd "$here"
printf 'rust: %s, %s; vhostuser %s from %s\n' "$(rustc --version)" "$(cargo --version)" \
    "$(pkg-config --modversion vhostuser)" "$prefix"

fail() {
    printf 'rust: FAIL: %s\n' "$1"
    exit 1
}

if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check || fail "cargo fmt --check (run cargo fmt in bindings/rust)"
fi
cargo build --offline --locked --workspace --all-targets || fail "cargo build"
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --offline --locked --workspace --all-targets -- -D warnings || fail "cargo clippy"
fi

log=$tmp/cargo-test.log
set +e
cargo test --offline --locked --workspace --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

passed=0
failed=0
while read -r p f; do
    passed=$((passed + p))
    failed=$((failed + f))
done < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log")

if ((rc != 0 || failed != 0 || passed == 0)); then
    printf 'rust: FAIL: cargo test exited %d (%d passed, %d failed)\n' "$rc" "$passed" "$failed"
    exit 1
fi
printf 'rust: %d tests passed\n' "$passed"
