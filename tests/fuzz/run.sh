#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets and runs each one for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS]        (default 60 per target)
#
# Environment:
#   VHU_FUZZ_BUILD    build directory to use (kept); default: a fresh temp dir
#   VHU_FUZZ_TARGETS  targets to run (default: "fuzz_split_ring fuzz_session")
#   VHU_FUZZ_KEEP=1   keep the temp corpus/log directory even when clean
#   CC / CXX          compilers (default clang / clang++)
#
# Each target starts from a copy of tests/fuzz/seeds/<target> in a temp
# directory, so the repository is never written to. Exits non-zero when any
# target found a crash, leak, timeout or out-of-memory, after printing the
# reproducer's path, a hex dump of it and the end of the log.
set -euo pipefail

secs="${1:-60}"
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
targets="${VHU_FUZZ_TARGETS:-fuzz_split_ring fuzz_session}"
cc="${CC:-clang}"
cxx="${CXX:-clang++}"

work="$(mktemp -d "${TMPDIR:-/tmp}/vhu-fuzz.XXXXXX")"
own_build=0
if [ -n "${VHU_FUZZ_BUILD:-}" ]; then
  build="$VHU_FUZZ_BUILD"
else
  build="$work/build"
  own_build=1
fi

fuzz_pid=""
keep_work=0
cleanup() {
  local rc=$?
  if [ -n "$fuzz_pid" ] && kill -0 "$fuzz_pid" 2>/dev/null; then
    kill "$fuzz_pid" 2>/dev/null || true
    wait "$fuzz_pid" 2>/dev/null || true
  fi
  if [ "$keep_work" = 1 ] || [ "${VHU_FUZZ_KEEP:-0}" = 1 ]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build ----
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" "${generator[@]}" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DVHU_FUZZ=ON >"$work/configure.log" 2>&1 || {
    cat "$work/configure.log" >&2
    keep_work=1
    exit 1
  }
fi
jobs="$(nproc 2>/dev/null || echo 2)"
cmake --build "$build" --parallel "$jobs" >"$work/build.log" 2>&1 || {
  tail -n 60 "$work/build.log" >&2
  keep_work=1
  exit 1
}

hexdump_file() {
  if command -v xxd >/dev/null 2>&1; then
    xxd "$1" | head -n 64
  else
    od -A x -t x1z -v "$1" | head -n 64
  fi
}

# ---- run ----
failed=0
for t in $targets; do
  bin="$build/$t"
  if [ ! -x "$bin" ]; then
    echo "$t: not built (is the compiler clang?)" >&2
    failed=1
    continue
  fi
  corpus="$work/$t/corpus"
  artifacts="$work/$t/artifacts"
  log="$work/$t/fuzz.log"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "$here/seeds/$t" ]; then
    cp "$here/seeds/$t"/* "$corpus"/ 2>/dev/null || true
  else
    python3 "$here/make_seeds.py" "$work/seeds" >/dev/null
    cp "$work/seeds/$t"/* "$corpus"/
  fi

  echo "== $t: ${secs}s from $(ls "$corpus" | wc -l) seed(s)"
  set +e
  "$bin" "$corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 &
  fuzz_pid=$!
  wait "$fuzz_pid"
  rc=$?
  fuzz_pid=""
  set -e

  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)"
  units="$(grep -Eo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 || true)"
  echo "   executions: ${execs:-?}  exec/s: ${rate:-?}  ${cov:-cov: ?}  ${units}"

  found=()
  for f in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
    [ -e "$f" ] && found+=("$f")
  done
  if [ "$rc" -ne 0 ] || [ "${#found[@]}" -gt 0 ]; then
    failed=1
    keep_work=1
    echo "   FAILED (exit status $rc); log: $log"
    for f in "${found[@]}"; do
      echo "   reproducer: $f ($(wc -c <"$f") bytes)"
      hexdump_file "$f" | sed 's/^/     /'
      echo "   reproduce: $bin $f"
    done
    echo "   --- end of the log ---"
    grep -v -e '^#[0-9]' -e 'NEW_FUNC' "$log" | tail -n 60 | sed 's/^/   | /'
  fi
done

if [ "$own_build" = 0 ]; then echo "build directory: $build"; fi
if [ "$failed" != 0 ]; then
  echo "fuzzing found problems" >&2
  exit 1
fi
echo "fuzzing: no findings"
