#!/usr/bin/env bash
# net_dpdk_test.sh VHU_NET_BINARY
#
# End-to-end test of vhu-net against DPDK 22.11 testpmd with the
# net_virtio_user front-end (no VM, no hugepages):
#   1. --sink: testpmd txonly sends 64-byte packets; once testpmd stopped,
#      the packets vhu-net counted equal testpmd's TX-packets exactly. A
#      second testpmd run (128-byte packets) against the same daemon too.
#   2. --loopback: testpmd io forwarding after --tx-first: the first burst
#      keeps coming back, RX-packets grows far beyond it and RX ~ TX. Then
#      txonly, which never drains its receive ring: once it is full the
#      packets wait on the transmit ring, none dropped, the daemon idle.
#   3. same daemon, packets (1200 bytes) larger than one receive buffer
#      (1024-byte mbufs, scatter on): every packet spans two receive
#      buffers (MRG_RXBUF) and arrives whole.
#   4. --loopback --queues=2 with testpmd on two queue pairs: both pairs
#      carry traffic.
# Every daemon must outlive its testpmd runs and exit 0 on SIGTERM.
#
# Exit status: 0 pass, 1 fail, 2 usage error. Needs dpdk-testpmd (package
# dpdk-dev) and root (DPDK's runtime directory); a missing tool is a failure.
#
# Environment:
#   NET_DPDK_SECONDS   seconds each testpmd run forwards (default 4)
#   NET_DPDK_KEEP=1    keep the temporary directory (its path is printed)

set -euo pipefail

readonly RUN_SECONDS=${NET_DPDK_SECONDS:-4}
readonly TESTPMD=${DPDK_TESTPMD:-dpdk-testpmd}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=e2e-common.sh
source "$script_dir/e2e-common.sh"

(($# == 1)) || e2e_usage VHU_NET_BINARY
net_bin=$(e2e_executable "$1") || exit 2

if ! command -v "$TESTPMD" >/dev/null 2>&1; then
    printf '[FAIL] %s not found (install the dpdk-dev package)\nRESULT: FAIL\n' "$TESTPMD"
    exit 1
fi

e2e_begin vhu-net-dpdk NET_DPDK_KEEP
tmp=$E2E_TMP
daemon_pid=
daemon_err=
testpmd_pid=
prefixes=()
run_no=0
last_testpmd_log=

stop_own_processes() {
    e2e_reap "$testpmd_pid"
    e2e_reap "$daemon_pid"
    local p
    for p in "${prefixes[@]}"; do
        rm -rf "/var/run/dpdk/$p" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$p"
    done
}
E2E_CLEANUP_HOOK=stop_own_processes

show_logs() {
    [[ -n "$last_testpmd_log" ]] && e2e_show_tail "testpmd output" "$last_testpmd_log" 40
    [[ -n "$daemon_err" ]] && e2e_show_tail "vhu-net stderr" "$daemon_err" 30
}
E2E_FAIL_HOOK=show_logs

# start_daemon NAME ARGS... : vhu-net on $tmp/NAME.sock, stderr in $tmp/NAME.err
start_daemon() {
    local name=$1
    shift
    sock=$tmp/$name.sock
    daemon_err=$tmp/$name.err
    step "starting vhu-net --socket-path=$sock $*"
    "$net_bin" --socket-path="$sock" --verbose "$@" </dev/null >"$tmp/$name.out" 2>"$daemon_err" &
    daemon_pid=$!
    local deadline=$((SECONDS + 10))
    while [[ ! -S "$sock" ]]; do
        e2e_alive "$daemon_pid" || e2e_fail "vhu-net exited before creating $sock"
        ((SECONDS < deadline)) || e2e_fail "vhu-net did not create $sock within 10s"
        sleep 0.1
    done
    ok "vhu-net pid $daemon_pid listening"
}

# stop_daemon: SIGTERM, expect exit status 0 and the exit counters.
stop_daemon() {
    step "stopping vhu-net (pid $daemon_pid) with SIGTERM"
    e2e_stop_with_term daemon_pid 10 vhu-net
    grep -q 'stats (exit): total' "$daemon_err" || e2e_fail "vhu-net printed no counters at exit"
    ok "vhu-net exited 0; $(grep 'stats (exit): total' "$daemon_err" | sed 's/.*total //')"
}

# daemon_stats: asks the daemon for its counters (SIGUSR1) and sets
# S_TOTAL (the total line) and S_QUEUE[i] (the line of queue i).
declare -A S_QUEUE
daemon_stats() {
    local before after deadline
    before=$(grep -c 'stats (SIGUSR1): total' "$daemon_err" || true)
    kill -USR1 "$daemon_pid"
    deadline=$((SECONDS + 5))
    while :; do
        after=$(grep -c 'stats (SIGUSR1): total' "$daemon_err" || true)
        ((after > before)) && break
        ((SECONDS < deadline)) || e2e_fail "vhu-net did not print its counters on SIGUSR1"
        sleep 0.05
    done
    # The block printed last: from the last queue 0 line to the last total line.
    local block
    block=$(awk '/stats \(SIGUSR1\): queue 0 /{b=""} /stats \(SIGUSR1\)/{b=b $0 "\n"} END{printf "%s", b}' "$daemon_err")
    S_TOTAL=$(grep 'total' <<<"$block")
    S_QUEUE=()
    local line q
    while IFS= read -r line; do
        q=$(sed -n 's/.*: queue \([0-9]*\) .*/\1/p' <<<"$line")
        [[ -n "$q" ]] && S_QUEUE[$q]=$line
    done <<<"$block"
    return 0
}

# field LINE NAME -> the number after NAME=
field() {
    sed -n "s/.*[ (]$2=\([0-9]*\).*/\1/p" <<<"$1" | head -n 1
}

# cpu_ticks PID -> user + system clock ticks the process used so far
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# run_testpmd QUEUES TESTPMD_ARGS... : runs testpmd against $sock for
# RUN_SECONDS, stops it with SIGINT and sets TP_RX / TP_TX from its final
# forward statistics (and TP_LOG), and DAEMON_TICKS to the CPU time (clock
# ticks) vhu-net used while testpmd forwarded.
run_testpmd() {
    local queues=$1
    shift
    run_no=$((run_no + 1))
    local prefix="vhu-net-test-$$-$run_no"
    prefixes+=("$prefix")
    TP_LOG=$tmp/testpmd$run_no.log
    last_testpmd_log=$TP_LOG
    local lcores='0@0,1@0'
    if (($(nproc) >= 2)); then
        lcores='0@1,1@0' # forwarding lcore and vhu-net's worker apart
    fi
    step "testpmd run $run_no (queues=$queues): $*"
    "$TESTPMD" --no-huge -m 512 --no-pci --file-prefix="$prefix" --lcores="$lcores" \
        --vdev "net_virtio_user0,path=$sock,queues=$queues" -- \
        --no-mlockall --total-num-mbufs=16384 --stats-period 1 \
        --rxq="$queues" --txq="$queues" "$@" </dev/null >"$TP_LOG" 2>&1 &
    testpmd_pid=$!
    # Wait until it forwards (first statistics block), then let it run.
    local deadline=$((SECONDS + 60))
    while ! grep -q 'Throughput (since last show)' "$TP_LOG"; do
        e2e_alive "$testpmd_pid" || e2e_fail "testpmd exited during start-up"
        ((SECONDS < deadline)) || e2e_fail "testpmd did not start forwarding within 60s"
        sleep 0.2
    done
    local t0
    t0=$(cpu_ticks "$daemon_pid")
    sleep "$RUN_SECONDS"
    DAEMON_TICKS=$(($(cpu_ticks "$daemon_pid") - t0))
    e2e_alive "$testpmd_pid" || e2e_fail "testpmd exited while forwarding"
    kill -INT "$testpmd_pid"
    deadline=$((SECONDS + 30))
    while e2e_alive "$testpmd_pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    e2e_alive "$testpmd_pid" && e2e_fail "testpmd did not exit within 30s of SIGINT"
    wait "$testpmd_pid" || true
    testpmd_pid=
    grep -q 'Accumulated forward statistics' "$TP_LOG" ||
        e2e_fail "testpmd printed no final forward statistics"
    local acc
    acc=$(sed -n '/Accumulated forward statistics/,/+++++*$/p' "$TP_LOG" | tr -d '\r')
    TP_RX=$(sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' <<<"$acc" | head -n 1)
    TP_TX=$(sed -n 's/.*TX-packets: *\([0-9]*\).*/\1/p' <<<"$acc" | head -n 1)
    [[ -n "$TP_RX" && -n "$TP_TX" ]] || e2e_fail "cannot read RX/TX-packets from testpmd's output"
    e2e_alive "$daemon_pid" || e2e_fail "vhu-net is gone after testpmd run $run_no"
    printf '       testpmd: RX-packets %s, TX-packets %s\n' "$TP_RX" "$TP_TX"
}

# The last periodic NIC statistics block: bytes per received packet.
rx_bytes_per_packet() {
    local blk pk by
    blk=$(tr -d '\r' <"$TP_LOG" | grep 'RX-packets:.*RX-bytes:' | tail -n 1)
    pk=$(sed -n 's/.*RX-packets: *\([0-9]*\).*/\1/p' <<<"$blk")
    by=$(sed -n 's/.*RX-bytes: *\([0-9]*\).*/\1/p' <<<"$blk")
    if [[ -z "$pk" || "$pk" == 0 ]]; then
        printf '0\n'
    else
        printf '%s\n' $((by / pk))
    fi
}

printf 'vhu-net DPDK end-to-end test: %s, %s\n' "$net_bin" "$(command -v "$TESTPMD")"

# ---- 1. sink: exact packet count, twice against one daemon ----------------
start_daemon sink --sink
daemon_stats
prev_tx=$(field "$S_TOTAL" tx_packets)
prev_bytes=$(field "$S_TOTAL" tx_bytes)
for size in 64 128; do
    run_testpmd 1 --forward-mode=txonly --txpkts="$size"
    daemon_stats
    now_tx=$(field "$S_TOTAL" tx_packets)
    now_bytes=$(field "$S_TOTAL" tx_bytes)
    got=$((now_tx - prev_tx))
    got_bytes=$((now_bytes - prev_bytes))
    printf '       vhu-net counted %d packets, %d bytes\n' "$got" "$got_bytes"
    ((TP_TX > 1000)) || e2e_fail "testpmd sent only $TP_TX packets"
    ((got == TP_TX)) || e2e_fail "sink: testpmd sent $TP_TX packets, vhu-net counted $got"
    ((got_bytes == TP_TX * size)) ||
        e2e_fail "sink: $got_bytes bytes counted, expected $((TP_TX * size)) ($size per packet)"
    ok "sink, ${size}-byte packets: testpmd TX-packets $TP_TX == vhu-net $got"
    prev_tx=$now_tx
    prev_bytes=$now_bytes
done
stop_daemon

# ---- 2. loopback, one queue pair ---------------------------------------------
start_daemon loop --loopback
run_testpmd 1 --forward-mode=io --tx-first
burst=32
((TP_RX >= 100 * burst)) ||
    e2e_fail "loopback: testpmd received $TP_RX packets, not well beyond its first burst of $burst"
((TP_TX >= TP_RX && TP_TX - TP_RX <= 1024)) ||
    e2e_fail "loopback: RX-packets $TP_RX and TX-packets $TP_TX differ by more than the rings hold"
daemon_stats
d_rx=$(field "$S_TOTAL" rx_packets)
d_tx=$(field "$S_TOTAL" tx_packets)
((d_rx >= TP_RX && d_rx - TP_RX <= 1024)) ||
    e2e_fail "loopback: vhu-net delivered $d_rx packets, testpmd received $TP_RX"
((d_tx <= TP_TX && TP_TX - d_tx <= 1024)) ||
    e2e_fail "loopback: vhu-net took $d_tx packets, testpmd sent $TP_TX"
((d_rx == d_tx)) || e2e_fail "loopback: vhu-net took $d_tx packets but delivered $d_rx"
ok "loopback: testpmd RX $TP_RX / TX $TP_TX, vhu-net looped $d_rx"

# ---- 2b. loopback into a receive queue nobody drains ----------------------------
# txonly never takes what it receives: once the receive ring is full, the
# transmitted packets must wait on the transmit ring (no drops) and the
# daemon must sleep rather than spin.
run_testpmd 1 --forward-mode=txonly --txpkts=64
daemon_stats
rx_now=$(field "$S_TOTAL" rx_packets)
tx_now=$(field "$S_TOTAL" tx_packets)
held_rx=$((rx_now - d_rx))
held_tx=$((tx_now - d_tx))
hz=$(getconf CLK_TCK)
printf '       vhu-net delivered %d, took %d, dropped %d; %d ticks of CPU in %ss (%s Hz)\n' \
    "$held_rx" "$held_tx" "$(field "$S_TOTAL" rx_drops)" "$DAEMON_TICKS" "$RUN_SECONDS" "$hz"
((held_rx > 0 && held_rx <= 1024)) || e2e_fail "full receive ring: vhu-net delivered $held_rx packets"
((held_tx == held_rx)) || e2e_fail "full receive ring: vhu-net took $held_tx packets but delivered $held_rx"
(($(field "$S_TOTAL" rx_drops) == 0)) || e2e_fail "full receive ring: vhu-net dropped packets"
((TP_TX > held_tx && TP_TX - held_tx <= 1024)) ||
    e2e_fail "full receive ring: testpmd sent $TP_TX, more than the rings can hold beyond $held_tx"
((DAEMON_TICKS * 10 <= RUN_SECONDS * hz)) ||
    e2e_fail "full receive ring: vhu-net used $DAEMON_TICKS ticks in ${RUN_SECONDS}s (spinning?)"
ok "full receive ring: $held_rx delivered, $((TP_TX - held_tx)) waiting on the transmit ring, none dropped, daemon idle"
d_rx=$rx_now

# ---- 3. loopback, packets spanning two receive buffers (MRG_RXBUF) ------------
prev_rx=$d_rx
prev_buffers=$(field "${S_QUEUE[0]}" buffers)
prev_drops=$(field "$S_TOTAL" rx_drops)
run_testpmd 1 --forward-mode=io --tx-first --mbuf-size=1024 --enable-scatter --txpkts=600,600
daemon_stats
pk=$(($(field "$S_TOTAL" rx_packets) - prev_rx))
buffers=$(($(field "${S_QUEUE[0]}" buffers) - prev_buffers))
drops=$(($(field "$S_TOTAL" rx_drops) - prev_drops))
bpp=$(rx_bytes_per_packet)
printf '       vhu-net delivered %d packets in %d receive buffers, %d dropped; testpmd %s bytes per packet\n' \
    "$pk" "$buffers" "$drops" "$bpp"
((TP_RX >= 100 * burst)) || e2e_fail "mergeable: testpmd received only $TP_RX packets"
((drops == 0)) || e2e_fail "mergeable: vhu-net dropped $drops packets"
((buffers == 2 * pk)) || e2e_fail "mergeable: $pk packets used $buffers receive buffers, expected 2 each"
((bpp == 1200)) || e2e_fail "mergeable: testpmd received $bpp bytes per packet, expected 1200"
ok "mergeable: 1200-byte packets in 2 receive buffers each, $TP_RX received whole"
stop_daemon

# ---- 4. loopback, two queue pairs --------------------------------------------
start_daemon loop2 --loopback --queues=2
run_testpmd 2 --forward-mode=io --tx-first
((TP_RX >= 100 * burst)) || e2e_fail "two pairs: testpmd received only $TP_RX packets"
((TP_TX >= TP_RX && TP_TX - TP_RX <= 2048)) ||
    e2e_fail "two pairs: RX-packets $TP_RX and TX-packets $TP_TX differ by more than the rings hold"
daemon_stats
q0=$(field "${S_QUEUE[0]}" packets)
q2=$(field "${S_QUEUE[2]}" packets)
printf '       vhu-net pair 0 delivered %d, pair 1 delivered %d\n' "$q0" "$q2"
((q0 > burst && q2 > burst)) || e2e_fail "two pairs: a pair carried no traffic beyond its first burst"
run_testpmd 2 --forward-mode=io --tx-first
((TP_RX >= 100 * burst)) || e2e_fail "two pairs, second run: testpmd received only $TP_RX packets"
ok "two queue pairs: both carry traffic, a second testpmd run works"
stop_daemon

printf 'RESULT: PASS\n'
