#!/usr/bin/env bash
# Runs the vhu-check device probes against the example block and net daemons.
# usage: run_device_checks.sh VHU_BLK VHU_NET VHU_CHECK [SCENARIO...]
# Scenarios (default: all of them):
#   blk     vhu-blk on a fresh scratch image, --image compared on the host side
#   blk-ro  vhu-blk --read-only on an image of random bytes, which must not change
#   blk-mq  vhu-blk --queues=2, one request per queue
#   net     vhu-net --loopback --queues=2
# Each scenario needs vhu-check to exit 0 with "0 failed", the scenario's key
# probes to PASS (not SKIP), and the daemon to exit 0 on SIGTERM afterwards.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 VHU_BLK VHU_NET VHU_CHECK [blk|blk-ro|blk-mq|net]..." >&2
  exit 1
fi
blk=$1
net=$2
check=$3
shift 3
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(blk blk-ro blk-mq net)

dir=$(mktemp -d /tmp/vhu-devcheck-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

failures=0
fail() {
  echo "FAIL [$scenario]: $*" >&2
  failures=$((failures + 1))
}

# start_daemon LOG PROGRAM ARGS...: starts it in the background as $pid and
# waits for $dir/sock.
start_daemon() {
  local log=$1
  shift
  rm -f "$dir/sock"
  "$@" 2>"$log" &
  pid=$!
  for _ in $(seq 200); do
    [ -S "$dir/sock" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  fail "$(basename "$1") did not start listening on $dir/sock"
  cat "$log" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  return 1
}

# stop_daemon LOG: SIGTERM, then it must exit 0 within 10 s.
stop_daemon() {
  local log=$1 rc=0
  if ! kill -0 "$pid" 2>/dev/null; then
    fail "the daemon died during the checks"
    wait "$pid" 2>/dev/null || true
    pid=
    cat "$log" >&2
    return
  fi
  kill -TERM "$pid"
  for _ in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    fail "the daemon was still running 10 s after SIGTERM"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" || rc=$?
  pid=
  if [ "$rc" -ne 0 ]; then
    fail "the daemon exited with status $rc after SIGTERM"
    tail -n 20 "$log" >&2
  fi
}

# run_check OUT ARGS...: vhu-check must exit 0 and report "0 failed".
run_check() {
  local out=$1 rc=0
  shift
  "$check" --socket-path="$dir/sock" "$@" >"$out" 2>&1 || rc=$?
  cat "$out"
  if [ "$rc" -ne 0 ]; then
    fail "vhu-check $* exited with status $rc"
  elif ! tail -n 1 "$out" | grep -Eq '^[0-9]+ passed, 0 failed$'; then
    fail "vhu-check $* did not end with '0 failed'"
  fi
}

# require_pass OUT NAME...: each probe must have passed (not been skipped).
require_pass() {
  local out=$1 name
  shift
  for name in "$@"; do
    grep -q "^PASS $name " "$out" || fail "probe $name did not pass: $(grep " $name " "$out" || echo 'not run')"
  done
}

image_hash() { sha256sum "$1" | cut -d' ' -f1; }

for scenario in "${scenarios[@]}"; do
  echo "=== $scenario"
  out="$dir/$scenario.out"
  log="$dir/$scenario.log"
  case "$scenario" in
    blk)
      rm -f "$dir/img"
      truncate -s 8M "$dir/img"
      start_daemon "$log" "$blk" --socket-path="$dir/sock" --image="$dir/img" \
        --serial=devcheck || continue
      run_check "$out" --device=blk --image="$dir/img"
      stop_daemon "$log"
      require_pass "$out" blk-config blk-get-id blk-read-write blk-flush blk-image \
        blk-discard blk-write-zeroes blk-out-of-range blk-unknown-type blk-ring-wrap \
        blk-bad-chains
      grep -q '^PASS blk-get-id .*"devcheck"' "$out" || fail "GET_ID did not report the serial"
      grep -q '^SKIP blk-read-only ' "$out" || fail "blk-read-only ran on a writable device"
      [ "$(stat -c %s "$dir/img")" -eq $((8 << 20)) ] || fail "the image changed size"
      ;;
    blk-ro)
      head -c $((4 << 20)) /dev/urandom >"$dir/img"
      before=$(image_hash "$dir/img")
      start_daemon "$log" "$blk" --socket-path="$dir/sock" --image="$dir/img" \
        --read-only || continue
      run_check "$out" --device=blk --image="$dir/img"
      stop_daemon "$log"
      require_pass "$out" blk-config blk-read-write blk-image blk-read-only \
        blk-out-of-range blk-unknown-type blk-ring-wrap blk-bad-chains
      [ "$(image_hash "$dir/img")" = "$before" ] || fail "the read-only image changed"
      ;;
    blk-mq)
      rm -f "$dir/img"
      truncate -s 4M "$dir/img"
      start_daemon "$log" "$blk" --socket-path="$dir/sock" --image="$dir/img" \
        --queues=2 || continue
      run_check "$out" --device=blk --queues=2 --image="$dir/img"
      stop_daemon "$log"
      require_pass "$out" get-queue-num blk-config blk-read-write blk-queues blk-image
      ;;
    net)
      start_daemon "$log" "$net" --socket-path="$dir/sock" --loopback --queues=2 || continue
      run_check "$out" --device=net --queues=2
      stop_daemon "$log"
      require_pass "$out" get-queue-num net-setup net-loopback net-no-rx-buffers net-ring-wrap \
        net-merged-publish
      grep -q '^PASS net-loopback .*merged buffers' "$out" ||
        fail "the 4000-byte frame did not span merged receive buffers"
      ;;
    *)
      fail "unknown scenario"
      ;;
  esac
done

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all device checks passed (${scenarios[*]})"
