#!/usr/bin/env bash
# Runs the vhu-check conformance checker against the example rng daemon.
# usage: run_vhu_check.sh VHU_CHECK VHU_RNG
set -euo pipefail
check=$1
rng=$2
dir=$(mktemp -d /tmp/vhu-check-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

"$rng" --socket-path="$dir/rng.sock" 2>"$dir/rng.log" &
pid=$!
for _ in $(seq 100); do
  [ -S "$dir/rng.sock" ] && break
  sleep 0.05
done
status=0
"$check" --socket-path="$dir/rng.sock" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
  echo "vhu-rng died during the checks:" >&2
  cat "$dir/rng.log" >&2
  exit 1
fi
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" -ne 0 ]; then
  echo "vhu-rng exited with status $rc after SIGTERM" >&2
  cat "$dir/rng.log" >&2
  exit 1
fi
exit "$status"
