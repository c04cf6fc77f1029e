#!/usr/bin/env bash
# rng_guest_test.sh VHU_RNG_BINARY
#
# End-to-end test of the vhu-rng daemon with real QEMU front-ends: one daemon
# process serves a constant byte pattern from a file, and two Linux guests
# booted one after the other (vhost-user-rng-pci) read /dev/hwrng and check
# that every byte is the pattern. Then the daemon must exit 0 on SIGTERM.
#
# Exit status: 0 pass, 1 fail, 2 usage error, 77 skipped (missing host tools
# or no guest kernel available) - suitable for ctest's SKIP_RETURN_CODE.
#
# Environment:
#   VHU_E2E_CACHE           kernel cache (see guest-kit.sh)
#   RNG_E2E_READ_BYTES      bytes each guest reads from /dev/hwrng (default 65536)
#   RNG_E2E_GUEST_TIMEOUT   seconds before a guest is killed (default 180)
#   RNG_E2E_APPEND          extra guest kernel command-line words
#   RNG_E2E_KEEP=1          keep the temporary directory (its path is printed)

set -euo pipefail

readonly PATTERN_HEX=5a   # byte the source file is filled with
readonly PATTERN_OCT=132  # the same byte in octal, for tr
readonly SOURCE_BYTES=$((1024 * 1024))
readonly READ_BYTES=${RNG_E2E_READ_BYTES:-65536}
readonly GUEST_TIMEOUT=${RNG_E2E_GUEST_TIMEOUT:-180}
readonly GUEST_WATCHDOG=$((GUEST_TIMEOUT > 30 ? GUEST_TIMEOUT - 15 : GUEST_TIMEOUT))
readonly GUESTS=2
readonly MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio-rng)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=guest-kit.sh
source "$script_dir/guest-kit.sh"

(($# == 1)) || e2e_usage VHU_RNG_BINARY
rng_bin=$(e2e_executable "$1") || exit 2
if ((READ_BYTES <= 0 || READ_BYTES % 4096 != 0)); then
    printf '%s: RNG_E2E_READ_BYTES must be a positive multiple of 4096\n' "$0" >&2
    exit 2
fi

missing=$(e2e_missing_tools "${KIT_QEMU:-qemu-system-x86_64}" busybox cpio gzip apt-get apt-cache dpkg-deb flock)
if [[ -n "$missing" ]]; then
    printf 'SKIP: missing host tools: %s\n' "$missing"
    exit 77
fi

e2e_begin vhu-rng-e2e RNG_E2E_KEEP
tmp=$E2E_TMP
daemon_pid=
current_log=

stop_own_processes() {
    kit_stop_qemu
    e2e_reap "$daemon_pid" 3
}
E2E_CLEANUP_HOOK=stop_own_processes

show_logs() {
    kit_show_guest_log "$current_log"
    e2e_show_tail "daemon stderr" "$tmp/daemon.err"
    e2e_show_tail "daemon stdout" "$tmp/daemon.out" 10
}
E2E_FAIL_HOOK=show_logs

printf 'vhu-rng end-to-end test: %s\n' "$rng_bin"

# 1. Guest kernel (cached).
step "guest kernel"
if ! kit_use_kernel "$tmp/kernel.err"; then
    printf 'SKIP: no guest kernel available\n'
    exit 77
fi
ok "guest kernel $(basename "$KIT_KERNEL") (cache $(kit_default_cache))"

# 2. Pattern source file for the daemon.
head -c "$SOURCE_BYTES" /dev/zero | tr '\000' "\\$PATTERN_OCT" >"$tmp/pattern.bin"
if [[ $(stat -c %s "$tmp/pattern.bin") != "$SOURCE_BYTES" ]] ||
    [[ $(tr -d "\\$PATTERN_OCT" <"$tmp/pattern.bin" | wc -c) != 0 ]]; then
    e2e_fail "could not create the pattern file"
fi
ok "source file: $SOURCE_BYTES bytes of 0x$PATTERN_HEX"

# 3. Guest initramfs.
{
    kit_init_header "$GUEST_WATCHDOG"
    cat <<EOF
echo "\$tag init started at \$(cut -d' ' -f1 /proc/uptime)s, kernel \$(uname -r)"
for m in \$(cat /modules/order); do
    insmod "/modules/\$m.ko" || finish "FAIL insmod \$m"
done
echo "\$tag modules loaded: \$(cat /modules/order | tr '\n' ' ')"
sysrng=/sys/class/misc/hw_random
i=0
while [ ! -c /dev/hwrng ] || [ -z "\$(cat \$sysrng/rng_current 2>/dev/null)" ] || \\
      [ "\$(cat \$sysrng/rng_current 2>/dev/null)" = none ]; do
    i=\$((i + 1))
    [ \$i -gt 100 ] && finish "FAIL no hwrng device (rng_current='\$(cat \$sysrng/rng_current 2>/dev/null)')"
    sleep 0.1
done
cur=\$(cat \$sysrng/rng_current)
echo "\$tag rng_available='\$(cat \$sysrng/rng_available)' rng_current='\$cur'"
case "\$cur" in
virtio_rng*) ;;
*) finish "FAIL rng_current is '\$cur', not virtio_rng" ;;
esac
t0=\$(cut -d' ' -f1 /proc/uptime)
if ! dd if=/dev/hwrng of=/tmp/got bs=4096 count=$((READ_BYTES / 4096)) iflag=fullblock 2>/tmp/dd.err; then
    finish "FAIL dd from /dev/hwrng: \$(cat /tmp/dd.err | tr '\n' ' ')"
fi
t1=\$(cut -d' ' -f1 /proc/uptime)
got=\$(wc -c </tmp/got)
echo "\$tag read \$got bytes from /dev/hwrng (uptime \$t0 -> \$t1 s); first bytes:\$(od -An -tx1 -N16 /tmp/got)"
[ "\$got" -eq $READ_BYTES ] || finish "FAIL short read: \$got of $READ_BYTES bytes"
dd if=/dev/zero bs=4096 count=$((READ_BYTES / 4096)) 2>/dev/null | tr '\\000' '\\$PATTERN_OCT' >/tmp/want
if cmp -s /tmp/want /tmp/got; then
    finish "PASS bytes=\$got all=0x$PATTERN_HEX"
fi
bad=\$(cmp -l /tmp/want /tmp/got 2>/dev/null | wc -l)
finish "FAIL bytes=\$got mismatching=\$bad (expected every byte 0x$PATTERN_HEX)"
EOF
} >"$tmp/init"

step "guest initramfs (${MODULES[*]})"
kit_build_initrd "$tmp" "${MODULES[@]}" || e2e_fail "could not build the initramfs"
ok "initramfs $(($(stat -c %s "$KIT_INITRD") / 1024)) KiB"

# 4. The daemon, started once for both guests.
sock=$tmp/rng.sock
step "starting $(basename "$rng_bin") --socket-path=$sock --source=$tmp/pattern.bin"
"$rng_bin" --socket-path="$sock" --source="$tmp/pattern.bin" \
    </dev/null >"$tmp/daemon.out" 2>"$tmp/daemon.err" &
daemon_pid=$!
e2e_wait_for_socket "$sock" daemon_pid
ok "daemon pid $daemon_pid listening on $sock"

# 5. Guests, one after the other, against the same daemon process.
for ((g = 1; g <= GUESTS; g++)); do
    current_log=$tmp/guest$g.log
    [[ -S "$sock" ]] || e2e_fail "daemon socket $sock is gone before guest $g"
    step "guest $g: booting with vhost-user-rng-pci"
    start=$SECONDS
    qrc=0
    KIT_APPEND="vhu_e2e_guest=$g${RNG_E2E_APPEND:+ $RNG_E2E_APPEND}" \
        kit_run_qemu "$current_log" "$GUEST_TIMEOUT" \
        -chardev "socket,id=rng0,path=$sock" \
        -device vhost-user-rng-pci,chardev=rng0,vectors=0 || qrc=$?
    elapsed=$((SECONDS - start))
    tr -d '\r' <"$current_log" | grep -a 'VHU-E2E' | sed "s/^/       guest $g: /" || true
    if ((qrc == 124)); then
        e2e_fail "guest $g: QEMU killed after ${GUEST_TIMEOUT}s timeout"
    fi
    if ! grep -aq "VHU-E2E guest=$g PASS bytes=" "$current_log"; then
        e2e_fail "guest $g: no PASS marker in the serial log (QEMU status $qrc)"
    fi
    if ((qrc != 0)); then
        e2e_fail "guest $g: PASS marker found but QEMU exited with status $qrc"
    fi
    ok "guest $g: PASS marker found, QEMU exited 0 (${elapsed}s incl. boot)"
    sleep 1
    if ! e2e_alive "$daemon_pid"; then
        e2e_collect daemon_pid
        e2e_fail "daemon is no longer running after guest $g (exit status $E2E_STATUS)"
    fi
    ok "daemon still running after guest $g"
done
current_log=

# 6. SIGTERM must stop the daemon with status 0.
step "stopping daemon with SIGTERM"
e2e_stop_with_term daemon_pid 5 daemon
ok "daemon exited with status 0"
if [[ -s "$tmp/daemon.err" ]]; then
    printf '       daemon stderr: %d lines (last: %s)\n' \
        "$(wc -l <"$tmp/daemon.err")" "$(tail -n 1 "$tmp/daemon.err")"
fi
printf 'RESULT: PASS (%d guests, %d bytes each, all 0x%s)\n' "$GUESTS" "$READ_BYTES" "$PATTERN_HEX"
