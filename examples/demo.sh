#!/usr/bin/env bash
# The demo: vhu-blk serving a disk to a QEMU guest.
#
#   examples/demo.sh
#
# Builds the project (if needed), creates a 64 MiB disk image, starts vhu-blk
# on a socket in a temp folder, runs the vhu-check conformance checker against
# it, then boots a small Linux guest (QEMU, TCG) with a vhost-user-blk-pci
# disk: the guest formats it (ext2), writes and reads back a file, and writes
# a message at a known sector. The host then shows those bytes in the image
# file and the daemon's counters. Installs what it needs from Debian's
# packages when run as root (cmake, libevent-dev, qemu-system-x86,
# busybox-static, ...). The first run fetches a Debian kernel package into
# ~/.cache/vhostuser-e2e.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${VHU_BUILD_DIR:-$top/build}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

need=(build-essential cmake ninja-build pkg-config libevent-dev qemu-system-x86 busybox-static
  cpio ca-certificates)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  say "Installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

say "Building libvhostuser-cxx, vhu-blk and vhu-check in $build"
cmake -S "$top" -B "$build" -G Ninja -DVHU_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target vhu-blk vhu-check >/dev/null
vhu_blk=$build/examples/blk/vhu-blk
echo "built $(readlink -f "$build/libvhostuser-cxx.so") and $vhu_blk"

# shellcheck source=../tests/e2e/guest-kit.sh
source "$top/tests/e2e/guest-kit.sh"
tmp=$(mktemp -d /tmp/vhu-demo-XXXXXX)
blk_pid=
cleanup() {
  [ -n "${KIT_QEMU_PID:-}" ] && kill "$KIT_QEMU_PID" 2>/dev/null || true
  [ -n "$blk_pid" ] && kill "$blk_pid" 2>/dev/null && wait "$blk_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

sector=114688 # 56 MiB into the disk, past the 48 MiB file system
message="Hello from the guest, through vhost-user-blk!"

say "Creating a 64 MiB disk image (a sparse file)"
truncate -s 64M "$tmp/disk.img"
ls -ls "$tmp/disk.img" | awk '{ printf "%s: %s bytes, %s KiB allocated\n", $10, $6, $1 }'

say "Starting vhu-blk --image=$tmp/disk.img --socket-path=$tmp/blk.sock --queues=2 --serial=demo-disk"
"$vhu_blk" --image="$tmp/disk.img" --socket-path="$tmp/blk.sock" --queues=2 --serial=demo-disk \
  2>"$tmp/blk.log" &
blk_pid=$!
for _ in $(seq 100); do [ -S "$tmp/blk.sock" ] && break; sleep 0.05; done
echo "vhu-blk is pid $blk_pid, listening"

say "Checking it with vhu-check, the project's conformance checker"
check_args=(--socket-path="$tmp/blk.sock")
if "$build/vhu-check" --help 2>&1 | grep -q -- '--device'; then
  # The blk probes write to the disk: fine, the guest formats it afterwards.
  check_args+=(--device=blk --queues=2 --image="$tmp/disk.img")
fi
"$build/vhu-check" "${check_args[@]}" | sed 's/^/  /'

say "Preparing a guest: Debian's cloud kernel and a busybox initramfs"
KIT_KERNEL=$(kit_kernel)
echo "kernel: $KIT_KERNEL"
cat >"$tmp/init" <<INIT
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in \$(cat /modules/order); do insmod /modules/\$m.ko; done
while [ ! -b /dev/vda ]; do sleep 0.1; done
q=/sys/block/vda
echo "guest: kernel \$(uname -r) up; virtio-blk disk /dev/vda: \$((\$(cat \$q/size) / 2048)) MiB, serial '\$(cat \$q/serial)', \$(ls \$q/mq | wc -l) queue(s)"
echo "guest: mke2fs on the first 48 MiB of /dev/vda"
mke2fs -F -L demo /dev/vda 49152 2>&1 | grep -i -e 'blocks' -e 'inodes' | head -2 | sed 's/^/guest:   /'
mkdir /mnt; mount -t ext2 /dev/vda /mnt
echo "guest: mounted; writing /mnt/hello.txt and 1 MiB of random bytes"
echo "hello, disk" >/mnt/hello.txt
dd if=/dev/urandom of=/mnt/random.bin bs=64k count=16 2>/dev/null
sum=\$(sha256sum </mnt/random.bin | cut -c1-16)
umount /mnt; echo 3 >/proc/sys/vm/drop_caches
mount -t ext2 /dev/vda /mnt
echo "guest: unmounted, mounted again; hello.txt says '\$(cat /mnt/hello.txt)'"
echo "guest: random.bin sha256 \$sum... before, \$(sha256sum </mnt/random.bin | cut -c1-16)... after"
df -k /mnt | tail -1 | awk '{ print "guest: ext2: " \$3 " KiB used, " \$4 " KiB free" }'
umount /mnt
echo "guest: writing '$message' at sector $sector (O_DIRECT)"
printf '%-512s' "$message" | dd of=/dev/vda bs=512 seek=$sector oflag=direct 2>/dev/null
sync
echo "guest: powering off"
poweroff -f
INIT
chmod +x "$tmp/init"
kit_initramfs "$tmp/initrd.gz" "$tmp/init" virtio_ring virtio virtio_pci_legacy_dev \
  virtio_pci_modern_dev virtio_pci virtio_blk >/dev/null

say "Booting the guest (QEMU, TCG) with -device vhost-user-blk-pci on that socket"
log_mark=$(wc -l <"$tmp/blk.log")
KIT_INITRD=$tmp/initrd.gz KIT_SMP=2 kit_run_qemu "$tmp/serial.log" 120 \
  -chardev socket,id=blk0,path="$tmp/blk.sock" \
  -device vhost-user-blk-pci,chardev=blk0,num-queues=2,vectors=0 || true
grep '^guest:' "$tmp/serial.log" || {
  echo "the guest printed nothing; serial log:"
  tail -20 "$tmp/serial.log"
  exit 1
}

say "The same bytes seen from the host: sector $sector of $tmp/disk.img"
dd if="$tmp/disk.img" bs=512 skip="$sector" count=1 2>/dev/null | hexdump -C | head -4 | sed 's/^/  /'
ls -ls "$tmp/disk.img" | awk '{ printf "  the image now has %s KiB allocated\n", $1 }'

say "What vhu-blk logged while the guest ran, and its counters at exit"
kill -TERM "$blk_pid"
wait "$blk_pid"
blk_pid=
tail -n +"$((log_mark + 1))" "$tmp/blk.log" | sed 's/^vhu-blk: //; s/^/  /'
echo "  (the counters include vhu-check's requests, some malformed on purpose: those are the errors)"
echo
echo "vhu-blk stopped cleanly on SIGTERM. Done."
