#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Packet rate between DPDK's virtio-user front-end (dpdk-testpmd) and two
# vhost-user net back-ends: vhu-net (this project) and DPDK's own vhost PMD
# (dpdk-testpmd with net_vhost). The back-ends run alternately, A B A B ...,
# so that drift on the machine hits both. See bench/README.md.
#
#   bench/net_pps.sh [--rounds=N] [--seconds=S] [--warmup=W] [--sizes=64,1500]
#                    [--directions=tx,rx] [--backends=vhu,dpdk] [--vhu-net=PATH]
#                    [--fe-cpu=N] [--be-cpu=N] [--log-dir=DIR] [--quick]
#
# tx: the front-end transmits (testpmd txonly); the back-end drops and counts.
# rx: the back-end transmits (fills the buffers the front-end posts); the
#     front-end receives (testpmd rxonly).
#
# The rate of a run is the median of the front-end's per-second Tx-pps (tx) or
# Rx-pps (rx) over the seconds after the warm-up; the rate of a back-end is the
# median over the rounds. Exit status: 0 when every run moved packets, 1 when
# some run moved none or failed to start, 2 on a usage error.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

rounds=5
seconds=8
warmup=2
sizes=64,1500
directions=tx,rx
backends=vhu,dpdk
vhu_net=${VHU_NET:-$repo/build/examples/net/vhu-net}
fe_cpu=0
be_cpu=1
log_dir=""
testpmd=${DPDK_TESTPMD:-dpdk-testpmd}

usage() {
  sed -n '9,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  opt=$1
  val=""
  case $opt in
  --*=*)
    val=${opt#*=}
    opt=${opt%%=*}
    ;;
  --quick | --help | -h) ;;
  --*)
    [ $# -ge 2 ] || usage
    val=$2
    shift
    ;;
  esac
  case $opt in
  --rounds) rounds=$val ;;
  --seconds) seconds=$val ;;
  --warmup) warmup=$val ;;
  --sizes) sizes=$val ;;
  --directions) directions=$val ;;
  --backends) backends=$val ;;
  --vhu-net) vhu_net=$val ;;
  --fe-cpu) fe_cpu=$val ;;
  --be-cpu) be_cpu=$val ;;
  --log-dir) log_dir=$val ;;
  --quick)
    rounds=2
    seconds=5
    warmup=2
    sizes=64
    ;;
  *) usage ;;
  esac
  shift
done

is_uint() { case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac }
for v in "$rounds" "$seconds" "$warmup" "$fe_cpu" "$be_cpu"; do
  is_uint "$v" || usage
done
if [ "$rounds" -lt 1 ] || [ "$seconds" -le "$warmup" ]; then usage; fi
[ "$fe_cpu" -ne "$be_cpu" ] || {
  echo "net_pps: --fe-cpu and --be-cpu must differ" >&2
  exit 2
}
IFS=, read -r -a size_list <<<"$sizes"
IFS=, read -r -a dir_list <<<"$directions"
IFS=, read -r -a be_list <<<"$backends"
for s in "${size_list[@]}"; do
  if ! is_uint "$s" || [ "$s" -lt 60 ]; then usage; fi
done
for d in "${dir_list[@]}"; do case $d in tx | rx) ;; *) usage ;; esac done
for b in "${be_list[@]}"; do case $b in vhu | dpdk) ;; *) usage ;; esac done

command -v "$testpmd" >/dev/null || {
  echo "net_pps: $testpmd not found (Debian 12: apt-get install dpdk-dev)" >&2
  exit 1
}
command -v taskset >/dev/null || {
  echo "net_pps: taskset not found (util-linux)" >&2
  exit 1
}
case $vhu_net in /*) ;; *) vhu_net=$PWD/$vhu_net ;; esac
for b in "${be_list[@]}"; do
  if [ "$b" = vhu ] && [ ! -x "$vhu_net" ]; then
    echo "net_pps: no vhu-net at $vhu_net (build it, or pass --vhu-net=PATH)" >&2
    exit 1
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/vhu-net-pps.XXXXXX")
pids=()
prefixes=()

stop_pid() { # stop_pid PID: SIGINT, then SIGKILL after 10 s; reaps it
  local pid=$1 i
  kill -INT "$pid" 2>/dev/null || {
    wait "$pid" 2>/dev/null
    return 0
  }
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null && stop_pid "$p"
  done
  # DPDK keeps its runtime files under /var/run/dpdk/<file-prefix> for root.
  for p in "${prefixes[@]}"; do
    rm -rf "/var/run/dpdk/$p" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$p"
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eal_common() { # eal_common PREFIX
  echo --no-huge -m 512 --no-pci --no-telemetry --file-prefix="$1"
}
pmd_common="--no-mlockall --total-num-mbufs=16384 --stats-period 1"

# Last value of "LABEL: N" in a testpmd log (its accumulated totals at exit).
testpmd_total() { awk -v l="$2:" '$1 == l { v = $2 } END { print v + 0 }' "$1"; }

# vhu-net's own count at exit, from its line
#   vhu-net: stats (exit): total rx_packets=N ... tx_packets=N ...
# (its rx is device -> driver, its tx driver -> device).
vhu_total() { # vhu_total LOG rx|tx
  awk -v key="$2_packets=" '
    /stats \(exit\): total/ {
      for (i = 1; i <= NF; i++) if (index($i, key) == 1) { v = substr($i, length(key) + 1); found = 1 }
    }
    END { if (found) print v; else print "-" }' "$1"
}

comm_of() { # the command name in a /proc stat line, blanks made _
  local c=${1#*(}
  c=${c%)*}
  echo "${c// /_}"
}

# Per-thread CPU ticks and current CPU of a process: "TID TICKS CPU COMM".
thread_ticks() {
  local t stat rest
  for t in /proc/"$1"/task/*; do
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    # after "pid (comm) ": state=$1 ... utime=$12 stime=$13 ... processor=$37
    echo "${t##*/} $((${12} + ${13})) ${37} $(comm_of "$stat")"
  done
}

# Threads of PID busy (>= 20% of a CPU) over the interval between two
# thread_ticks snapshots: "comm@cpu:percent" words.
busy_threads() { # busy_threads BEFORE AFTER HZ SECS
  awk -v hz="$3" -v secs="$4" '
    NR == FNR { t[$1] = $2; next }
    ($1 in t) {
      pct = 100 * ($2 - t[$1]) / (hz * secs)
      if (pct >= 20) printf "%s@%d:%d%% ", $4, $3, pct
    }' "$1" "$2"
}

hz=$(getconf CLK_TCK)

# Busy and total ticks of the whole machine, from /proc/stat.
cpu_ticks() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# CPU used by processes other than the two under test between the t0 and t1
# snapshots in DIR, in percent of one CPU: the noise on the machine.
others_load() {
  local d=$1
  awk -v ncpu="$(nproc)" '
    FILENAME ~ /cpu.t0$/ { b0 = $1; a0 = $2; next }
    FILENAME ~ /cpu.t1$/ { b1 = $1; a1 = $2; next }
    FILENAME ~ /t0$/ { t[FILENAME, $1] = $2; next }
    { f = FILENAME; sub(/t1$/, "t0", f); if ((f, $1) in t) ours += $2 - t[f, $1] }
    END {
      if (a1 <= a0) { print "-"; exit }
      v = 100 * ncpu * ((b1 - b0) - ours) / (a1 - a0)
      if (v < 0) v = 0
      printf "%d%%", v
    }' "$d/cpu.t0" "$d/cpu.t1" "$d/fe.t0" "$d/be.t0" "$d/fe.t1" "$d/be.t1"
}

median() { # median of the numbers on stdin (one per line)
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print 0; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

wait_socket() { # wait_socket PATH PID: up to 15 s
  local i
  for ((i = 0; i < 150; i++)); do
    [ -S "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

results=$work/results
: >"$results"
failed=0
run_no=0

# run_one DIRECTION SIZE BACKEND ROUND: appends one line to $results:
#   dir size backend round mpps fe_total be_total busy
run_one() {
  local dir=$1 size=$2 be=$3 round=$4
  run_no=$((run_no + 1))
  local rd=$work/run$run_no
  local sock=$rd/net.sock fe_log=$rd/fe.log be_log=$rd/be.log
  local fe_prefix=vhubench$$fe$run_no be_prefix=vhubench$$be$run_no
  local fe_mode be_mode fe_field vhu_mode be_pid fe_pid
  mkdir -p "$rd/fe" "$rd/be"
  prefixes+=("$fe_prefix" "$be_prefix")

  if [ "$dir" = tx ]; then
    fe_mode="--forward-mode=txonly --txpkts=$size"
    be_mode="--forward-mode=rxonly"
    vhu_mode="--sink"
    fe_field=Tx-pps
  else
    fe_mode="--forward-mode=rxonly"
    be_mode="--forward-mode=txonly --txpkts=$size"
    vhu_mode="--generate=$size"
    fe_field=Rx-pps
  fi

  # The back-end's busy thread runs on be_cpu, the front-end's forwarding
  # lcore (lcore 1) on fe_cpu; each main lcore sleeps on the other CPU.
  if [ "$be" = vhu ]; then
    # shellcheck disable=SC2086
    (cd "$rd/be" && exec taskset -c "$be_cpu" "$vhu_net" --socket-path="$sock" \
      --queues=1 $vhu_mode --poll </dev/null >"$be_log" 2>&1) &
  else
    # shellcheck disable=SC2046,SC2086
    (cd "$rd/be" && exec "$testpmd" --lcores="0@$fe_cpu,1@$be_cpu" $(eal_common "$be_prefix") \
      --vdev "net_vhost0,iface=$sock,queues=1" -- $pmd_common $be_mode \
      </dev/null >"$be_log" 2>&1) &
  fi
  be_pid=$!
  pids+=("$be_pid")
  if ! wait_socket "$sock" "$be_pid"; then
    echo "net_pps: $dir $size $be round $round: back-end did not listen on $sock" >&2
    sed 's/^/  be: /' "$be_log" | tail -20 >&2
    stop_pid "$be_pid"
    echo "$dir $size $be $round 0 0 - start-failed" >>"$results"
    failed=1
    return
  fi

  # shellcheck disable=SC2046,SC2086
  (cd "$rd/fe" && exec "$testpmd" --lcores="0@$be_cpu,1@$fe_cpu" $(eal_common "$fe_prefix") \
    --vdev "net_virtio_user0,path=$sock,queues=1" -- $pmd_common $fe_mode \
    </dev/null >"$fe_log" 2>&1) &
  fe_pid=$!
  pids+=("$fe_pid")

  # testpmd prints one sample as forwarding starts, then one per second:
  # wait for seconds+1 samples, and look at the threads half-way.
  local want=$((seconds + 1)) n=0 deadline=$((SECONDS + seconds + 30)) busy="" checked=0 others=-
  while :; do
    n=$(grep -c "$fe_field:" "$fe_log" 2>/dev/null)
    n=${n:-0}
    [ "$n" -ge "$want" ] && break
    kill -0 "$fe_pid" 2>/dev/null || break
    kill -0 "$be_pid" 2>/dev/null || break
    [ $SECONDS -ge $deadline ] && break
    if [ $checked = 0 ] && [ "$n" -ge $((warmup + 2)) ]; then
      checked=1
      thread_ticks "$fe_pid" >"$rd/fe.t0"
      thread_ticks "$be_pid" >"$rd/be.t0"
      cpu_ticks >"$rd/cpu.t0"
      sleep 1
      thread_ticks "$fe_pid" >"$rd/fe.t1"
      thread_ticks "$be_pid" >"$rd/be.t1"
      cpu_ticks >"$rd/cpu.t1"
      busy="fe[$(busy_threads "$rd/fe.t0" "$rd/fe.t1" "$hz" 1)] be[$(busy_threads "$rd/be.t0" "$rd/be.t1" "$hz" 1)]"
      busy=${busy// ]/]}
      others=$(others_load "$rd")
      continue
    fi
    sleep 0.2
  done
  stop_pid "$fe_pid"
  stop_pid "$be_pid"

  local mpps fe_total be_total
  mpps=$(awk -v f="$fe_field:" -v first=$((warmup + 2)) -v last="$want" \
    '$1 == f { k++; if (k >= first && k <= last) print $2 / 1e6 }' "$fe_log" | median)
  if [ "$dir" = tx ]; then
    fe_total=$(testpmd_total "$fe_log" TX-packets)
    if [ "$be" = vhu ]; then be_total=$(vhu_total "$be_log" tx); else be_total=$(testpmd_total "$be_log" RX-packets); fi
  else
    fe_total=$(testpmd_total "$fe_log" RX-packets)
    if [ "$be" = vhu ]; then be_total=$(vhu_total "$be_log" rx); else be_total=$(testpmd_total "$be_log" TX-packets); fi
  fi
  [ -n "$busy" ] || busy="-"
  if [ "$n" -lt "$want" ]; then
    echo "net_pps: $dir $size $be round $round: only $n of $want samples" >&2
    sed 's/^/  fe: /' "$fe_log" | tail -15 >&2
    sed 's/^/  be: /' "$be_log" | tail -15 >&2
    failed=1
  fi
  if [ "$fe_total" = 0 ] || awk -v m="$mpps" 'BEGIN { exit !(m <= 0) }'; then
    echo "net_pps: $dir $size $be round $round: no packets" >&2
    failed=1
  fi
  # The busy threads must run on different CPUs: the front-end's on fe_cpu,
  # the back-end's on be_cpu.
  local cpu_note=cpus-ok
  if [ "$busy" = "-" ] || ! awk -v b="$busy" -v fc="$fe_cpu" -v bc="$be_cpu" 'BEGIN {
      split(b, parts, "] ")
      ok = 1; nf = 0; nb = 0
      n = split(parts[1], w, " ")
      for (i = 1; i <= n; i++) if (match(w[i], /@[0-9]+:/)) {
        nf++; if (substr(w[i], RSTART + 1, RLENGTH - 2) != fc) ok = 0 }
      n = split(parts[2], w, " ")
      for (i = 1; i <= n; i++) if (match(w[i], /@[0-9]+:/)) {
        nb++; if (substr(w[i], RSTART + 1, RLENGTH - 2) != bc) ok = 0 }
      exit !(ok && nf >= 1 && nb >= 1) }'; then
    cpu_note=cpus-CHECK
  fi
  printf '%-2s %5s %-4s round %d: %6.2f Mpps  front-end %s, back-end %s packets  %s %s others %s\n' \
    "$dir" "$size" "$be" "$round" "$mpps" "$fe_total" "$be_total" "$cpu_note" "$busy" "$others" >&2
  echo "$dir $size $be $round $mpps $fe_total $be_total $cpu_note $others" >>"$results"
  if [ -n "$log_dir" ]; then
    mkdir -p "$log_dir"
    cp "$fe_log" "$log_dir/$dir-$size-$be-r$round-fe.log"
    cp "$be_log" "$log_dir/$dir-$size-$be-r$round-be.log"
  fi
  rm -rf "$rd" "/var/run/dpdk/$fe_prefix" "/var/run/dpdk/$be_prefix"
}

echo "net_pps: $rounds rounds x ${seconds} s (first $warmup s discarded), sizes $sizes," \
  "directions $directions, back-ends $backends; front-end on CPU $fe_cpu, back-end on CPU $be_cpu" >&2
for ((r = 1; r <= rounds; r++)); do
  for dir in "${dir_list[@]}"; do
    for size in "${size_list[@]}"; do
      for be in "${be_list[@]}"; do
        run_one "$dir" "$size" "$be" "$r"
      done
    done
  done
done

# The table: medians over rounds, the ratio, the per-round values, and the
# back-end's own count as a fraction of the front-end's (cross-check).
echo
printf '%-4s %5s %12s %12s %11s  %s\n' dir size "vhu-net Mpps" "DPDK Mpps" "vhu/dpdk" "per round (Mpps); back-end/front-end count"
for dir in "${dir_list[@]}"; do
  for size in "${size_list[@]}"; do
    declare -A med=() rounds_of=() xcheck=()
    for be in "${be_list[@]}"; do
      med[$be]=$(awk -v d="$dir" -v s="$size" -v b="$be" '$1 == d && $2 == s && $3 == b { print $5 }' "$results" | median)
      rounds_of[$be]=$(awk -v d="$dir" -v s="$size" -v b="$be" \
        '$1 == d && $2 == s && $3 == b { printf "%s%.2f", sep, $5; sep = " " }' "$results")
      xcheck[$be]=$(awk -v d="$dir" -v s="$size" -v b="$be" '$1 == d && $2 == s && $3 == b {
          if ($7 == "-" || $6 == 0) printf "%s-", sep; else printf "%s%.3f", sep, $7 / $6; sep = " " }' "$results")
    done
    vm=${med[vhu]:--}
    dm=${med[dpdk]:--}
    ratio=$(awk -v a="$vm" -v b="$dm" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }')
    fmt() { [ "$1" = - ] && echo - || printf '%.2f' "$1"; }
    printf '%-4s %5s %12s %12s %11s ' "$dir" "$size" "$(fmt "$vm")" "$(fmt "$dm")" "$ratio"
    sep=" "
    for be in "${be_list[@]}"; do
      printf '%s %s: %s; count %s' "$sep" "$be" "${rounds_of[$be]}" "${xcheck[$be]}"
      sep=" |"
    done
    echo
    unset med rounds_of xcheck
  done
done
if grep -q cpus-CHECK "$results"; then
  echo "note: in some runs the busy threads were not on the CPUs asked for (see the lines above)" >&2
fi
exit $failed
