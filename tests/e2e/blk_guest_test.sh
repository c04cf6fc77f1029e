#!/usr/bin/env bash
# blk_guest_test.sh VHU_BLK_BINARY [EXTRA_DAEMON_ARGS...]
#
# End-to-end test of the vhu-blk daemon with real QEMU front-ends
# (vhost-user-blk-pci, two queues, two guest vCPUs). One daemon process
# serves a 64 MiB raw image to two guests booted one after the other:
#   guest 1  reads a pattern the host wrote; writes random data with O_DIRECT
#            (the host finds it byte for byte in the image); makes an ext2 file
#            system, writes a file, remounts and reads it back; discards a
#            range the host filled with 0xff (the host then reads zeroes).
#   guest 2  sees guest 1's random block and file; while it runs the host
#            grows the image and sends SIGHUP, and the guest must see the
#            new size in /sys/block/vda/size.
# The daemon must survive both and exit 0 on SIGTERM. Then a second daemon
# with --read-only serves guest 3, which sees ro=1 and has a write rejected;
# the image must be unchanged. EXTRA_DAEMON_ARGS go to both daemons (the
# ctest entry e2e_qemu_blk_direct passes --direct ...).
#
# Exit status: 0 pass, 1 fail, 2 usage error.
#
# Environment:
#   VHU_E2E_CACHE           kernel cache (see guest-kit.sh)
#   BLK_E2E_GUEST_TIMEOUT   seconds before a guest is killed (default 120)
#   BLK_E2E_EXPECT_BOUNCE=1 require the daemon to report bounced requests
#   BLK_E2E_KEEP=1          keep the temporary directory (its path is printed)

set -euo pipefail

readonly MIB=$((1024 * 1024))
readonly IMAGE_MIB=64
readonly GROWN_MIB=96
readonly FS_KIB=$((32 * 1024)) # ext2 covers the first 32 MiB
readonly PATTERN_MIB=40        # 1 MiB the host writes, guests read
readonly RANDOM_MIB=48         # 256 KiB guest 1 writes with O_DIRECT
readonly DISCARD_MIB=56        # 4 MiB of 0xff guest 1 discards
readonly SERIAL=vhu-e2e-disk
readonly QUEUES=2
readonly GUEST_TIMEOUT=${BLK_E2E_GUEST_TIMEOUT:-120}
readonly GUEST_WATCHDOG=$((GUEST_TIMEOUT > 30 ? GUEST_TIMEOUT - 15 : GUEST_TIMEOUT))
readonly MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=guest-kit.sh
source "$script_dir/guest-kit.sh"

(($# >= 1)) || e2e_usage 'VHU_BLK_BINARY [EXTRA_DAEMON_ARGS...]'
blk_bin=$(e2e_executable "$1") || exit 2
shift
extra_args=("$@")

e2e_begin vhu-blk-e2e BLK_E2E_KEEP
tmp=$E2E_TMP
daemon_pid=
daemon_err=
current_log=

stop_own_processes() {
    kit_stop_qemu
    e2e_reap "$daemon_pid" 3
}
E2E_CLEANUP_HOOK=stop_own_processes

show_logs() {
    kit_show_guest_log "$current_log"
    [[ -n "$daemon_err" ]] && e2e_show_tail "daemon stderr" "$daemon_err"
}
E2E_FAIL_HOOK=show_logs

sha_of() { sha256sum | cut -d' ' -f1; }
# image_sha OFFSET_BYTES LENGTH_BYTES
image_sha() { dd if="$image" bs=64K iflag=skip_bytes,count_bytes skip="$1" count="$2" 2>/dev/null | sha_of; }

# start_daemon NAME ARGS...: starts vhu-blk, waits for its socket.
start_daemon() {
    local name=$1
    shift
    daemon_err=$tmp/$name.err
    rm -f "$sock"
    step "starting $(basename "$blk_bin") $*"
    "$blk_bin" "$@" </dev/null >"$tmp/$name.out" 2>"$daemon_err" &
    daemon_pid=$!
    e2e_wait_for_socket "$sock" daemon_pid
    ok "daemon pid $daemon_pid listening on $sock"
}

# stop_daemon: SIGTERM must stop it with status 0.
stop_daemon() {
    e2e_stop_with_term daemon_pid 5 daemon
    grep -q '^vhu-blk: stats: queue=0 ' "$daemon_err" || e2e_fail "daemon printed no counters"
    ok "daemon exited with status 0; counters:"
    grep '^vhu-blk: stats:' "$daemon_err" | sed 's/^vhu-blk: stats: /       /'
}

# stat_sum NAME: sum of one counter over the queues in the last daemon's stats.
stat_sum() {
    grep '^vhu-blk: stats:' "$daemon_err" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { s += $2 } END { print s + 0 }'
}

# guest_value NAME: the value a guest printed as "VHU-E2E guest=G NAME value".
guest_value() {
    tr -d '\r' <"$current_log" | awk -v k="$1" '$1 == "VHU-E2E" && $3 == k { print $4; exit }'
}

# boot_guest N ROLE KEY=VALUE...: runs guest N and checks its verdict.
boot_guest() {
    local g=$1 role=$2
    shift 2
    current_log=$tmp/guest$g.log
    [[ -S "$sock" ]] || e2e_fail "daemon socket $sock is gone before guest $g"
    step "guest $g ($role): booting with vhost-user-blk-pci, num-queues=$QUEUES"
    local start=$SECONDS qrc=0 append="vhu_guest=$g vhu_role=$role vhu_watchdog=$GUEST_WATCHDOG"
    local kv
    for kv in "$@"; do append+=" vhu_$kv"; done
    KIT_SMP=$QUEUES KIT_APPEND="$append" \
        kit_run_qemu "$current_log" "$GUEST_TIMEOUT" \
        -chardev "socket,id=blk0,path=$sock" \
        -device "vhost-user-blk-pci,chardev=blk0,num-queues=$QUEUES,vectors=0" || qrc=$?
    tr -d '\r' <"$current_log" | grep -a '^VHU-E2E' | sed "s/^VHU-E2E guest=$g /       guest $g: /" || true
    ((qrc != 124)) || e2e_fail "guest $g: QEMU killed after ${GUEST_TIMEOUT}s timeout"
    if grep -aq "^VHU-E2E guest=$g FAIL" "$current_log"; then
        e2e_fail "guest $g reported failures"
    fi
    grep -aq "^VHU-E2E guest=$g DONE ok" "$current_log" ||
        e2e_fail "guest $g: no DONE marker in the serial log (QEMU status $qrc)"
    ((qrc == 0)) || e2e_fail "guest $g: QEMU exited with status $qrc"
    ok "guest $g: all checks passed, QEMU exited 0 ($((SECONDS - start))s incl. boot)"
    sleep 0.5
    e2e_alive "$daemon_pid" || e2e_fail "daemon is no longer running after guest $g"
}

# The guest's /init: parameters come from the kernel command line (vhu_*).
cat >"$tmp/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for w in $(cat /proc/cmdline); do
    case "$w" in
    vhu_*=*) eval "${w%%=*}='${w#*=}'" ;;
    esac
done
tag="VHU-E2E guest=$vhu_guest"
fails=0
say() { echo "$tag $*"; }
pass() { say "PASS $*"; }
fail() {
    say "FAIL $*"
    fails=$((fails + 1))
}
finish() {
    if [ "$fails" -eq 0 ]; then say "DONE ok"; else say "DONE failed=$fails"; fi
    sync
    poweroff -f
    sleep 10
}
check() { # check DESCRIPTION GOT WANT
    if [ "$2" = "$3" ]; then pass "$1 ($2)"; else fail "$1: got '$2', want '$3'"; fi
}
region_sha() { # region_sha SKIP_MIB COUNT_KIB [DD_FLAGS]
    dd if=/dev/vda bs=64k skip=$(($1 * 16)) count=$(($2 / 64)) $3 2>/dev/null | sha256sum | cut -d' ' -f1
}
(
    sleep "$vhu_watchdog"
    say "FAIL guest watchdog expired after ${vhu_watchdog}s"
    poweroff -f
) &
for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" || {
        fail "insmod $m"
        finish
    }
done
i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && { fail "no /dev/vda"; finish; }
    sleep 0.1
done
q=/sys/block/vda
say "vda size=$(cat $q/size) ro=$(cat $q/ro) serial=$(cat $q/serial) lbs=$(cat $q/queue/logical_block_size) hw-queues=$(ls $q/mq | wc -l) discard-max=$(cat $q/queue/discard_max_bytes)"
check "capacity in sectors" "$(cat $q/size)" "$vhu_sectors"
check "serial (GET_ID)" "$(cat $q/serial)" "$vhu_serial"
check "hardware queues" "$(ls $q/mq | wc -l)" "$vhu_queues"
check "host pattern read back" "$(region_sha "$vhu_pattern_mib" 1024)" "$vhu_pattern"

case "$vhu_role" in
write)
    check "read-only flag" "$(cat $q/ro)" 0
    dd if=/dev/urandom of=/tmp/rand bs=64k count=4 2>/dev/null
    rsum=$(sha256sum </tmp/rand | cut -d' ' -f1)
    if dd if=/tmp/rand of=/dev/vda bs=64k seek=$((vhu_random_mib * 16)) oflag=direct conv=fsync 2>/tmp/err; then
        say "RANDSUM $rsum"
        check "random block read back (O_DIRECT)" "$(region_sha "$vhu_random_mib" 256 iflag=direct)" "$rsum"
    else
        fail "O_DIRECT write: $(cat /tmp/err)"
    fi
    if mke2fs -F -b 1024 /dev/vda "$vhu_fs_kib" >/tmp/mk.log 2>&1; then
        pass "mke2fs on the first $vhu_fs_kib KiB"
    else
        fail "mke2fs: $(tail -n 3 /tmp/mk.log | tr '\n' ' ')"
    fi
    mkdir -p /mnt
    if mount -t ext2 /dev/vda /mnt; then
        (echo "written by guest 1"; cat /tmp/rand /tmp/rand) >/mnt/file
        mkdir /mnt/dir && echo small >/mnt/dir/small
        fsum=$(sha256sum </mnt/file | cut -d' ' -f1)
        umount /mnt || fail "umount"
        echo 3 >/proc/sys/vm/drop_caches
        if mount -t ext2 /dev/vda /mnt; then
            check "file after remount" "$(sha256sum </mnt/file | cut -d' ' -f1)" "$fsum"
            check "small file after remount" "$(cat /mnt/dir/small)" small
            say "FILESUM $fsum"
            umount /mnt || fail "second umount"
        else
            fail "second mount"
        fi
    else
        fail "mount ext2"
    fi
    if blkdiscard -o $((vhu_discard_mib * 1048576)) -l 4194304 /dev/vda 2>/tmp/err; then
        pass "blkdiscard of 4 MiB at $vhu_discard_mib MiB"
    else
        fail "blkdiscard: $(cat /tmp/err)"
    fi
    ;;
verify)
    check "random block of guest 1" "$(region_sha "$vhu_random_mib" 256 iflag=direct)" "$vhu_randsum"
    mkdir -p /mnt
    if mount -t ext2 -o ro /dev/vda /mnt; then
        check "guest 1's file" "$(sha256sum </mnt/file | cut -d' ' -f1)" "$vhu_filesum"
        umount /mnt
    else
        fail "mount guest 1's ext2"
    fi
    say "READY-RESIZE $(cat $q/size)"
    i=0
    while [ "$(cat $q/size)" = "$vhu_sectors" ] && [ $i -lt 300 ]; do
        i=$((i + 1))
        sleep 0.1
    done
    check "capacity after the host grew the image" "$(cat $q/size)" "$vhu_grown_sectors"
    last=$(dd if=/dev/vda bs=512 skip=$((vhu_grown_sectors - 1)) count=1 iflag=direct 2>/dev/null | wc -c)
    check "bytes read from the new last sector" "$last" 512
    ;;
ro)
    check "read-only flag" "$(cat $q/ro)" 1
    if dd if=/dev/zero of=/dev/vda bs=4096 count=1 seek=2560 oflag=direct conv=fsync 2>/tmp/err; then
        fail "a write to the read-only disk succeeded"
    else
        pass "write rejected: $(head -n 1 /tmp/err)"
    fi
    ;;
*)
    fail "unknown role '$vhu_role'"
    ;;
esac
finish
INIT

printf 'vhu-blk end-to-end test: %s %s\n' "$blk_bin" "${extra_args[*]}"

step "guest kernel"
kit_use_kernel "$tmp/kernel.err" || e2e_fail "no guest kernel available"
ok "guest kernel $(basename "$KIT_KERNEL")"

step "guest initramfs (${MODULES[*]}; ext2 is served by the built-in ext4)"
kit_build_initrd "$tmp" "${MODULES[@]}" || e2e_fail "could not build the initramfs"
ok "initramfs $(($(stat -c %s "$KIT_INITRD") / 1024)) KiB"

# The image: sparse, a random 1 MiB pattern, and 4 MiB of 0xff to discard.
image=$tmp/disk.img
sock=$tmp/blk.sock
truncate -s "${IMAGE_MIB}M" "$image"
head -c "$MIB" /dev/urandom >"$tmp/pattern"
dd if="$tmp/pattern" of="$image" bs=1M seek="$PATTERN_MIB" conv=notrunc 2>/dev/null
head -c $((4 * MIB)) /dev/zero | tr '\000' '\377' |
    dd of="$image" bs=1M seek="$DISCARD_MIB" conv=notrunc 2>/dev/null
pattern_sha=$(sha_of <"$tmp/pattern")
[[ $(image_sha $((PATTERN_MIB * MIB)) "$MIB") == "$pattern_sha" ]] || e2e_fail "could not write the pattern"
ok "image ${IMAGE_MIB} MiB: pattern at ${PATTERN_MIB} MiB (sha256 ${pattern_sha:0:16}...), 0xff at ${DISCARD_MIB} MiB"
common=(sectors=$((IMAGE_MIB * MIB / 512)) serial=$SERIAL queues=$QUEUES pattern=$pattern_sha
    pattern_mib=$PATTERN_MIB random_mib=$RANDOM_MIB discard_mib=$DISCARD_MIB fs_kib=$FS_KIB)

start_daemon rw --socket-path="$sock" --image="$image" --queues="$QUEUES" --serial="$SERIAL" \
    "${extra_args[@]}"

# a. Guest 1 writes.
boot_guest 1 write "${common[@]}"
randsum=$(guest_value RANDSUM)
filesum=$(guest_value FILESUM)
[[ -n "$randsum" && -n "$filesum" ]] || e2e_fail "guest 1 did not print RANDSUM and FILESUM"
host_rand=$(image_sha $((RANDOM_MIB * MIB)) $((256 * 1024)))
[[ "$host_rand" == "$randsum" ]] ||
    e2e_fail "random block in the image has sha256 $host_rand, guest 1 wrote $randsum"
ok "host: guest 1's random block is in the image byte for byte (sha256 ${randsum:0:16}...)"
if ! cmp -s -n $((4 * MIB)) <(dd if="$image" bs=1M skip="$DISCARD_MIB" count=4 2>/dev/null) /dev/zero; then
    e2e_fail "host: the discarded range still holds data"
fi
ok "host: the discarded 4 MiB read as zeroes ($(stat -c %b "$image") blocks of $(stat -c %B "$image") bytes allocated)"

# b + d. Guest 2 reads guest 1's data; the host grows the image meanwhile.
resized=0
resize_hook() {
    if ((resized == 0)) && grep -aq "^VHU-E2E guest=2 READY-RESIZE" "$1"; then
        resized=1
        truncate -s "${GROWN_MIB}M" "$image"
        kill -HUP "$daemon_pid"
    fi
}
KIT_POLL_HOOK=resize_hook boot_guest 2 verify "${common[@]}" randsum="$randsum" filesum="$filesum" \
    grown_sectors=$((GROWN_MIB * MIB / 512))
((resized == 1)) || e2e_fail "guest 2 never asked for the resize"
grep -q 'resize: front-end notified' "$daemon_err" || e2e_fail "daemon did not notify the front-end"
ok "host: image grown to ${GROWN_MIB} MiB with SIGHUP while guest 2 ran; the guest saw it"
current_log=
step "stopping the daemon with SIGTERM"
stop_daemon
if [[ "${BLK_E2E_EXPECT_BOUNCE:-0}" == 1 ]]; then
    (($(stat_sum bounced) > 0)) || e2e_fail "no request went through the bounce buffer"
    ok "$(stat_sum bounced) requests went through the O_DIRECT bounce buffer"
fi
(($(stat_sum discards) > 0)) || e2e_fail "the daemon counted no discard"
(($(stat_sum errors) == 0)) || e2e_fail "the daemon counted failed requests"
for ((q = 0; q < QUEUES; q++)); do
    grep "^vhu-blk: stats: queue=$q " "$daemon_err" | grep -vq ' reads=0 ' ||
        e2e_fail "queue $q served no reads (multi-queue not used?)"
done
ok "both queues served requests, no request failed"

# c. A read-only daemon: the guest sees ro=1 and its write is rejected.
before=$(sha_of <"$image")
start_daemon ro --socket-path="$sock" --image="$image" --queues="$QUEUES" --serial="$SERIAL" \
    --read-only "${extra_args[@]}"
boot_guest 3 ro "${common[@]}" sectors=$((GROWN_MIB * MIB / 512))
current_log=
[[ $(sha_of <"$image") == "$before" ]] || e2e_fail "the image changed under the read-only daemon"
ok "host: the image is unchanged"
step "stopping the read-only daemon with SIGTERM"
stop_daemon
printf 'RESULT: PASS (3 guests, 2 daemons%s)\n' "${extra_args[*]:+, daemon args: ${extra_args[*]}}"
