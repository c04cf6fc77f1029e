#!/usr/bin/env bash
# net_tap_test.sh VHU_NET_BINARY
#
# End-to-end test of vhu-net --tap with real QEMU guests. A network namespace
# of the test's own holds the tap device: vhu-net runs inside it (ip netns
# exec) and creates the tap, which gets 10.213.X.1/24. Two Linux guests,
# booted one after the other against the same daemon process, each bring up
# eth0 (virtio-net-pci on -netdev vhost-user) as 10.213.X.2/24 and ping .1
# five times (all must be answered); the host side then pings the guest
# (all answered, and the guest counts the echo requests it got). The tap's
# kernel counters and vhu-net's own counters must show the traffic, and
# vhu-net must exit 0 on SIGTERM.
#
# Exit status: 0 pass, 1 fail, 2 usage error. Needs root, iproute2,
# iputils-ping, qemu-system-x86, busybox-static, cpio and a guest kernel
# (see guest-kit.sh); a missing one is a failure.
#
# Environment:
#   VHU_E2E_CACHE           kernel cache (see guest-kit.sh)
#   NET_E2E_GUEST_TIMEOUT   seconds before a guest is killed (default 180)
#   NET_E2E_KEEP=1          keep the temporary directory (its path is printed)

set -euo pipefail

readonly GUEST_TIMEOUT=${NET_E2E_GUEST_TIMEOUT:-180}
readonly GUEST_WATCHDOG=$((GUEST_TIMEOUT > 30 ? GUEST_TIMEOUT - 15 : GUEST_TIMEOUT))
readonly GUESTS=2
readonly GUEST_PINGS=5
readonly HOST_PINGS=3
readonly TAP=vhutap0
readonly MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
    failover net_failover virtio_net)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=guest-kit.sh
source "$script_dir/guest-kit.sh"

(($# == 1)) || e2e_usage VHU_NET_BINARY
net_bin=$(e2e_executable "$1") || exit 2

missing=$(e2e_missing_tools "${KIT_QEMU:-qemu-system-x86_64}" busybox cpio gzip apt-get apt-cache dpkg-deb flock ip ping)
if [[ -n "$missing" ]]; then
    printf '[FAIL] missing host tools: %s\nRESULT: FAIL\n' "$missing"
    exit 1
fi
if [[ $(id -u) != 0 ]]; then
    printf '[FAIL] needs root (network namespace, tap device)\nRESULT: FAIL\n'
    exit 1
fi

subnet=10.213.$((RANDOM % 200 + 20))
host_ip=$subnet.1
guest_ip=$subnet.2
ns=vhu-test-$$-$RANDOM
e2e_begin vhu-net-tap NET_E2E_KEEP
tmp=$E2E_TMP
daemon_pid=
pinger_pid=
ns_made=0
current_log=

stop_own_processes() {
    kit_stop_qemu
    e2e_reap "$pinger_pid"
    e2e_reap "$daemon_pid"
    if ((ns_made)); then
        ip netns del "$ns" 2>/dev/null || true
    fi
}
E2E_CLEANUP_HOOK=stop_own_processes

show_logs() {
    kit_show_guest_log "$current_log"
    [[ -f "$tmp/hostping.out" ]] && e2e_show_tail "host ping" "$tmp/hostping.out" 10
    e2e_show_tail "vhu-net stderr" "$tmp/daemon.err" 30
}
E2E_FAIL_HOOK=show_logs

in_ns() { ip netns exec "$ns" "$@"; }

tap_stat() { in_ns cat "/sys/class/net/$TAP/statistics/$1"; }

printf 'vhu-net tap end-to-end test: %s\n' "$net_bin"

# 1. Guest kernel (cached) and initramfs.
step "guest kernel"
kit_use_kernel "$tmp/kernel.err" || e2e_fail "no guest kernel available"
ok "guest kernel $(basename "$KIT_KERNEL")"

{
    kit_init_header "$GUEST_WATCHDOG"
    cat <<EOF
for m in \$(cat /modules/order); do
    insmod "/modules/\$m.ko" || finish "FAIL insmod \$m"
done
i=0
while [ ! -e /sys/class/net/eth0 ]; do
    i=\$((i + 1))
    [ \$i -gt 100 ] && finish "FAIL no eth0 after the virtio_net module loaded"
    sleep 0.1
done
ip link set lo up
ip link set eth0 up || finish "FAIL ip link set eth0 up"
ip addr add $guest_ip/24 dev eth0 || finish "FAIL ip addr add"
echo "\$tag eth0 \$(cat /sys/class/net/eth0/address) driver \$(basename \$(readlink /sys/class/net/eth0/device/driver)) up as $guest_ip"
ping -c $GUEST_PINGS -W 5 $host_ip >/tmp/ping.out 2>&1
sed "s/^/\$tag ping: /" /tmp/ping.out
grep -q "$GUEST_PINGS packets received" /tmp/ping.out || finish "FAIL guest ping of $host_ip"
echo "\$tag READY for host pings"
echos() {
    awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if (\$i == "InEchos") c = i; h = 1 } else { print \$c; exit } }' /proc/net/snmp
}
i=0
while [ "\$(echos)" -lt $HOST_PINGS ]; do
    i=\$((i + 1))
    [ \$i -gt 600 ] && finish "FAIL only \$(echos) echo requests from the host"
    sleep 0.1
done
sleep 1
echo "\$tag eth0 rx_packets=\$(cat /sys/class/net/eth0/statistics/rx_packets) tx_packets=\$(cat /sys/class/net/eth0/statistics/tx_packets)"
finish "PASS guest_pings=$GUEST_PINGS/$GUEST_PINGS host_echo_requests=\$(echos)"
EOF
} >"$tmp/init"

step "guest initramfs (${MODULES[*]})"
kit_build_initrd "$tmp" "${MODULES[@]}" || e2e_fail "could not build the initramfs"
ok "initramfs $(($(stat -c %s "$KIT_INITRD") / 1024)) KiB"

# 2. Namespace, daemon, tap.
step "network namespace $ns"
ip netns add "$ns" || e2e_fail "ip netns add $ns failed"
ns_made=1
in_ns ip link set lo up
sock=$tmp/net.sock
step "starting vhu-net --socket-path=$sock --tap=$TAP inside $ns"
ip netns exec "$ns" "$net_bin" --socket-path="$sock" --tap="$TAP" --verbose \
    </dev/null >"$tmp/daemon.out" 2>"$tmp/daemon.err" &
daemon_pid=$!
deadline=$((SECONDS + 10))
while [[ ! -S "$sock" ]] || ! in_ns ip link show "$TAP" >/dev/null 2>&1; do
    e2e_alive "$daemon_pid" || e2e_fail "vhu-net exited before it was ready"
    ((SECONDS < deadline)) || e2e_fail "no socket $sock or tap $TAP within 10s"
    sleep 0.1
done
in_ns ip addr add "$host_ip/24" dev "$TAP"
in_ns ip link set "$TAP" up
ok "vhu-net pid $daemon_pid; $TAP is $host_ip/24 in $ns"

# 3. Guests, one after the other, against the same daemon process.
for ((g = 1; g <= GUESTS; g++)); do
    current_log=$tmp/guest$g.log
    : >"$current_log"
    rm -f "$tmp/hostping.out" "$tmp/hostping.rc"
    tap_rx0=$(tap_stat rx_packets)
    tap_tx0=$(tap_stat tx_packets)
    # The host pings the guest once the guest says it is ready.
    (
        end=$((SECONDS + GUEST_TIMEOUT))
        while ! grep -aq "guest=$g READY" "$current_log" 2>/dev/null; do
            ((SECONDS < end)) || exit 0
            sleep 0.2
        done
        rc=0
        ip netns exec "$ns" ping -c "$HOST_PINGS" -W 5 "$guest_ip" >"$tmp/hostping.out" 2>&1 || rc=$?
        echo "$rc" >"$tmp/hostping.rc"
    ) &
    pinger_pid=$!
    step "guest $g: booting with virtio-net-pci on vhost-user"
    start=$SECONDS
    qrc=0
    KIT_APPEND="vhu_e2e_guest=$g" kit_run_qemu "$current_log" "$GUEST_TIMEOUT" \
        -chardev "socket,id=c0,path=$sock" \
        -netdev vhost-user,id=n0,chardev=c0 \
        -device "virtio-net-pci,netdev=n0,romfile=,vectors=0,mac=52:54:00:12:34:$((55 + g))" ||
        qrc=$?
    elapsed=$((SECONDS - start))
    wait "$pinger_pid" 2>/dev/null || true
    pinger_pid=
    tr -d '\r' <"$current_log" | grep -a 'VHU-E2E' | sed "s/^/       guest $g: /" || true
    ((qrc != 124)) || e2e_fail "guest $g: QEMU killed after ${GUEST_TIMEOUT}s"
    grep -aq "VHU-E2E guest=$g PASS" "$current_log" ||
        e2e_fail "guest $g: no PASS marker in the serial log (QEMU status $qrc)"
    ((qrc == 0)) || e2e_fail "guest $g: PASS marker found but QEMU exited with status $qrc"
    [[ -f "$tmp/hostping.rc" ]] || e2e_fail "guest $g: the host never pinged the guest"
    sed "s/^/       host ping: /" "$tmp/hostping.out"
    [[ $(<"$tmp/hostping.rc") == 0 ]] && grep -q " $HOST_PINGS received" "$tmp/hostping.out" ||
        e2e_fail "guest $g: the host's pings of $guest_ip were not all answered"
    rx=$(($(tap_stat rx_packets) - tap_rx0))
    tx=$(($(tap_stat tx_packets) - tap_tx0))
    printf '       tap %s: %d packets received from the guest, %d sent to it\n' "$TAP" "$rx" "$tx"
    ((rx >= GUEST_PINGS + HOST_PINGS && tx >= GUEST_PINGS + HOST_PINGS)) ||
        e2e_fail "guest $g: tap counters show too little traffic (rx $rx, tx $tx)"
    ok "guest $g: $GUEST_PINGS/$GUEST_PINGS guest pings and $HOST_PINGS/$HOST_PINGS host pings answered (${elapsed}s incl. boot)"
    sleep 1
    e2e_alive "$daemon_pid" || e2e_fail "vhu-net is no longer running after guest $g"
done
current_log=

# 4. SIGTERM: exit status 0 and counters that saw the traffic.
step "stopping vhu-net with SIGTERM"
e2e_stop_with_term daemon_pid 5 vhu-net
total=$(grep 'stats (exit): total' "$tmp/daemon.err" || true)
[[ -n "$total" ]] || e2e_fail "vhu-net printed no counters at exit"
d_rx=$(sed -n 's/.* rx_packets=\([0-9]*\).*/\1/p' <<<"$total")
d_tx=$(sed -n 's/.* tx_packets=\([0-9]*\).*/\1/p' <<<"$total")
min=$((GUESTS * (GUEST_PINGS + HOST_PINGS)))
((d_rx >= min && d_tx >= min)) ||
    e2e_fail "vhu-net counted rx $d_rx / tx $d_tx packets, expected at least $min each"
ok "vhu-net exited 0; ${total#*total }"
printf 'RESULT: PASS (%d guests pinged through %s and were pinged back)\n' "$GUESTS" "$TAP"
