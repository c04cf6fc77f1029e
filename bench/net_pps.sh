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
#                    [--fe-cpu=N] [--be-cpu=N] [--max-noise=PCT] [--retries=N]
#                    [--quiet-wait=S] [--fe-args=K=V,...] [--log-dir=DIR] [--perf=DIR]
#                    [--quick]
#
# tx: the front-end transmits (testpmd txonly); the back-end drops and counts.
# rx: the back-end transmits (fills the buffers the front-end posts); the
#     front-end receives (testpmd rxonly).
#
# The rate of a run is the median of the front-end's per-second Tx-pps (tx) or
# Rx-pps (rx) over the seconds after the warm-up; the rate of a back-end is the
# median over the rounds. The machine may be shared: CPU time taken by other
# processes during a run's measured seconds is reported ("others", in % of
# one CPU); a run with more than --max-noise is repeated (--retries times),
# and each run first waits up to --quiet-wait seconds for a quiet machine.
# --fe-args adds devargs to the front-end's net_virtio_user vdev (for example
# in_order=0, so that both back-ends meet the same front-end code paths).
# --perf=DIR records a flat profile (perf, cpu-clock) of vhu-net during its
# measured seconds; those runs are slower for it. Exit status: 0 when every
# run moved packets, 1 when some run moved none or failed to start, 2 on a
# usage error.
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
perf_dir=""
fe_args=""
max_noise=30
retries=2
quiet_wait=60
testpmd=${DPDK_TESTPMD:-dpdk-testpmd}

usage() {
  sed -n '9,13p' "$0" | sed 's/^# \{0,1\}//' >&2
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
  --perf) perf_dir=$val ;;
  --fe-args) fe_args=$val ;;
  --max-noise) max_noise=$val ;;
  --retries) retries=$val ;;
  --quiet-wait) quiet_wait=$val ;;
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
for v in "$rounds" "$seconds" "$warmup" "$fe_cpu" "$be_cpu" "$max_noise" "$retries" "$quiet_wait"; do
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
if [ -n "$perf_dir" ]; then
  command -v perf >/dev/null || {
    echo "net_pps: --perf needs perf (Debian: linux-perf)" >&2
    exit 1
  }
  mkdir -p "$perf_dir" && perf_dir=$(cd "$perf_dir" && pwd)
fi
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

ncpu=$(nproc)

# Busy and total ticks of the whole machine, from /proc/stat.
cpu_ticks() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# snapshot DIR NAME FE_PID BE_PID: the machine's and both processes' ticks.
snapshot() {
  cpu_ticks >"$1/cpu.$2"
  thread_ticks "$3" >"$1/fe.$2"
  thread_ticks "$4" >"$1/be.$2"
}

# Threads busy for >= 20% of a CPU between snapshots t0 and t1 of one
# process: "comm@cpu:percent" words (cpu: where the thread ran last).
busy_threads() { # busy_threads DIR fe|be
  awk -v ncpu="$ncpu" '
    FILENAME ~ /cpu\.t0$/ { a0 = $2; next }
    FILENAME ~ /cpu\.t1$/ { a1 = $2; next }
    FILENAME ~ /\.t0$/ { t[$1] = $2; next }
    ($1 in t) && a1 > a0 {
      pct = 100 * ncpu * ($2 - t[$1]) / (a1 - a0)
      if (pct >= 20) { printf "%s%s@%d:%d%%", sep, $4, $3, pct; sep = " " }
    }' "$1/cpu.t0" "$1/cpu.t1" "$1/$2.t0" "$1/$2.t1"
}

# CPU used by other processes than the two under test between snapshots t0
# and t1, in % of one CPU: the noise on the machine.
others_load() { # others_load DIR
  awk -v ncpu="$ncpu" '
    FILENAME ~ /cpu\.t0$/ { b0 = $1; a0 = $2; next }
    FILENAME ~ /cpu\.t1$/ { b1 = $1; a1 = $2; next }
    FILENAME ~ /\.t0$/ { t[FILENAME, $1] = $2; next }
    { f = FILENAME; sub(/t1$/, "t0", f); if ((f, $1) in t) ours += $2 - t[f, $1] }
    END {
      if (a1 <= a0) { print -1; exit }
      v = 100 * ncpu * ((b1 - b0) - ours) / (a1 - a0)
      printf "%d\n", v < 0 ? 0 : v
    }' "$1/cpu.t0" "$1/cpu.t1" "$1/fe.t0" "$1/be.t0" "$1/fe.t1" "$1/be.t1"
}

# Waits (up to --quiet-wait seconds) until the machine is busy for less than
# --max-noise % of a CPU over one second; prints that last busy figure.
wait_quiet() {
  local end=$((SECONDS + quiet_wait)) a b busy
  while :; do
    a=$(cpu_ticks)
    sleep 1
    b=$(cpu_ticks)
    busy=$(awk -v a="$a" -v b="$b" -v ncpu="$ncpu" 'BEGIN {
      split(a, x, " "); split(b, y, " ")
      printf "%d\n", (y[2] > x[2]) ? 100 * ncpu * (y[1] - x[1]) / (y[2] - x[2]) : 0 }')
    if [ "$busy" -le "$max_noise" ] || [ $SECONDS -ge $end ]; then
      echo "$busy"
      return
    fi
  done
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

# attempt DIRECTION SIZE BACKEND ROUND: one run. Sets r_mpps, r_fe_total,
# r_be_total, r_cpus, r_busy, r_others and r_ok (0: it failed).
attempt() {
  local dir=$1 size=$2 be=$3 round=$4
  run_no=$((run_no + 1))
  local rd=$work/run$run_no
  local sock=$rd/net.sock fe_log=$rd/fe.log be_log=$rd/be.log
  local fe_prefix=vhubench$$fe$run_no be_prefix=vhubench$$be$run_no
  local fe_mode be_mode fe_field vhu_mode be_pid fe_pid perf_pid=""
  local tag="$dir $size $be round $round"
  mkdir -p "$rd/fe" "$rd/be"
  prefixes+=("$fe_prefix" "$be_prefix")
  r_mpps=0 r_fe_total=0 r_be_total=- r_cpus=- r_busy=- r_others=-1 r_ok=1

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
  # lcore (lcore 1) on fe_cpu; each testpmd's main lcore, which sleeps,
  # goes on the other CPU.
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
    echo "net_pps: $tag: the back-end did not listen on $sock" >&2
    sed 's/^/  be: /' "$be_log" | tail -20 >&2
    stop_pid "$be_pid"
    rm -rf "$rd" "/var/run/dpdk/$be_prefix"
    r_ok=0
    return
  fi

  # shellcheck disable=SC2046,SC2086
  (cd "$rd/fe" && exec "$testpmd" --lcores="0@$be_cpu,1@$fe_cpu" $(eal_common "$fe_prefix") \
    --vdev "net_virtio_user0,path=$sock,queues=1${fe_args:+,$fe_args}" -- $pmd_common $fe_mode \
    </dev/null >"$fe_log" 2>&1) &
  fe_pid=$!
  pids+=("$fe_pid")

  # testpmd prints one sample as forwarding starts, then one per second.
  # Samples warmup+2 .. seconds+1 are the measured seconds; the machine and
  # the two processes are looked at as they begin and end.
  local want=$((seconds + 1)) first=$((warmup + 2)) n=0 deadline=$((SECONDS + seconds + 30))
  local started=0
  while :; do
    n=$(grep -c "$fe_field:" "$fe_log" 2>/dev/null)
    n=${n:-0}
    if [ $started = 0 ] && [ "$n" -ge $((first - 1)) ]; then
      started=1
      snapshot "$rd" t0 "$fe_pid" "$be_pid"
      if [ -n "$perf_dir" ] && [ "$be" = vhu ]; then
        perf record -q -e cpu-clock -F 1999 -p "$be_pid" \
          -o "$perf_dir/$dir-$size-r$round.perf.data" >"$rd/perf.log" 2>&1 &
        perf_pid=$!
        pids+=("$perf_pid")
      fi
    fi
    if [ "$n" -ge "$want" ]; then
      snapshot "$rd" t1 "$fe_pid" "$be_pid"
      break
    fi
    kill -0 "$fe_pid" 2>/dev/null || break
    kill -0 "$be_pid" 2>/dev/null || break
    [ $SECONDS -ge $deadline ] && break
    sleep 0.2
  done
  [ -n "$perf_pid" ] && stop_pid "$perf_pid"
  stop_pid "$fe_pid"
  stop_pid "$be_pid"

  r_mpps=$(awk -v f="$fe_field:" -v first="$first" -v last="$want" \
    '$1 == f { k++; if (k >= first && k <= last) print $2 / 1e6 }' "$fe_log" | median)
  if [ "$dir" = tx ]; then
    r_fe_total=$(testpmd_total "$fe_log" TX-packets)
    if [ "$be" = vhu ]; then
      r_be_total=$(vhu_total "$be_log" tx)
    else
      r_be_total=$(testpmd_total "$be_log" RX-packets)
    fi
  else
    r_fe_total=$(testpmd_total "$fe_log" RX-packets)
    if [ "$be" = vhu ]; then
      r_be_total=$(vhu_total "$be_log" rx)
    else
      r_be_total=$(testpmd_total "$be_log" TX-packets)
    fi
  fi
  if [ "$n" -lt "$want" ]; then
    echo "net_pps: $tag: only $n of $want samples" >&2
    sed 's/^/  fe: /' "$fe_log" | tail -15 >&2
    sed 's/^/  be: /' "$be_log" | tail -15 >&2
    r_ok=0
  else
    local fb bb
    fb=$(busy_threads "$rd" fe)
    bb=$(busy_threads "$rd" be)
    r_busy="fe[$fb] be[$bb]"
    r_others=$(others_load "$rd")
    # The busy threads must be on different CPUs: the front-end's on fe_cpu
    # and the back-end's on be_cpu, one or more each.
    r_cpus=ok
    if [ -z "$fb" ] || [ -z "$bb" ] || grep -qv "@$fe_cpu:" <<<"${fb// /$'\n'}" ||
      grep -qv "@$be_cpu:" <<<"${bb// /$'\n'}"; then
      r_cpus=CHECK
    fi
  fi
  if [ "$r_fe_total" = 0 ] || awk -v m="$r_mpps" 'BEGIN { exit !(m <= 0) }'; then
    echo "net_pps: $tag: no packets" >&2
    r_ok=0
  fi
  if [ -n "$log_dir" ]; then
    mkdir -p "$log_dir"
    cp "$fe_log" "$log_dir/$dir-$size-$be-r$round-fe.log"
    cp "$be_log" "$log_dir/$dir-$size-$be-r$round-be.log"
  fi
  rm -rf "$rd" "/var/run/dpdk/$fe_prefix" "/var/run/dpdk/$be_prefix"
}

# run_one DIRECTION SIZE BACKEND ROUND: a run, repeated while the machine
# was too noisy; appends one line to $results:
#   dir size backend round mpps fe_total be_total cpus others tries
run_one() {
  local try quiet
  for ((try = 1; try <= retries + 1; try++)); do
    quiet=$(wait_quiet)
    attempt "$@"
    [ "$r_ok" = 1 ] || break
    [ "$r_others" -le "$max_noise" ] && break
    [ $try -le "$retries" ] &&
      echo "net_pps: $1 $2 $3 round $4: others took ${r_others}% of a CPU, again" >&2
  done
  [ "$try" -le $((retries + 1)) ] || try=$((retries + 1))
  [ "$r_ok" = 1 ] || failed=1
  printf '%-2s %5s %-4s round %d: %6.2f Mpps  front-end %s, back-end %s packets; cpus %s %s;' \
    "$1" "$2" "$3" "$4" "$r_mpps" "$r_fe_total" "$r_be_total" "$r_cpus" "$r_busy" >&2
  printf ' others %s%% (before %s%%)\n' "$r_others" "$quiet" >&2
  echo "$1 $2 $3 $4 $r_mpps $r_fe_total $r_be_total $r_cpus $r_others $try" >>"$results"
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

# The table: medians over rounds, the ratio, the median CPU taken by other
# processes, then per back-end its per-round rates and its own packet count
# as a fraction of the front-end's (the cross-check: 1.000 when every packet
# one side counted was counted by the other).
# shellcheck disable=SC2016 # awk programs
fmt() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.2f\n", v }'; }
sel() { awk -v d="$1" -v s="$2" -v b="$3" '$1 == d && $2 == s && ($3 == b || b == "") '"$4" "$results"; }
echo
printf '%-4s %5s %12s %10s %9s %7s  %s\n' dir size "vhu-net Mpps" "DPDK Mpps" vhu/dpdk others \
  "per round Mpps [back-end count / front-end count]"
for dir in "${dir_list[@]}"; do
  for size in "${size_list[@]}"; do
    vm=- dm=-
    for be in "${be_list[@]}"; do
      # shellcheck disable=SC2016
      m=$(sel "$dir" "$size" "$be" '{ print $5 }' | median)
      [ "$be" = vhu ] && vm=$m || dm=$m
    done
    ratio=$(awk -v a="$vm" -v b="$dm" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }')
    # shellcheck disable=SC2016
    others=$(sel "$dir" "$size" "" '$9 >= 0 { print $9 }' | median)
    printf '%-4s %5s %12s %10s %9s %6s%%  ' "$dir" "$size" "$(fmt "$vm")" "$(fmt "$dm")" "$ratio" "$others"
    sep=""
    for be in "${be_list[@]}"; do
      # shellcheck disable=SC2016
      printf '%s%s: %s' "$sep" "$be" "$(sel "$dir" "$size" "$be" '{
        x = ($7 == "-" || $6 == 0) ? "-" : sprintf("%.3f", $7 / $6)
        printf "%s%.2f [%s]", sep, $5, x; sep = " " }')"
      sep=" | "
    done
    echo
  done
done
if awk '$8 == "CHECK" { f = 1 } END { exit !f }' "$results"; then
  echo "note: in some runs the busy threads were not on the CPUs asked for (see the lines above)" >&2
fi
exit $failed
