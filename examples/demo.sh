#!/usr/bin/env bash
# The demo: vhu-rng serving a QEMU guest's /dev/hwrng.
#
#   examples/demo.sh
#
# Builds the project (if needed), starts vhu-rng on a socket in a temp folder,
# runs the vhu-check conformance checker against it, then boots a small Linux
# guest (QEMU, TCG) with a vhost-user-rng-pci device and prints what the guest
# reads from /dev/hwrng. Installs what it needs from Debian's packages when
# run as root (cmake, libevent-dev, qemu-system-x86, busybox-static, ...).
# The first run fetches a Debian kernel package into ~/.cache/vhostuser-e2e.
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

say "Building libvhostuser-cxx, vhu-rng and vhu-check in $build"
cmake -S "$top" -B "$build" -G Ninja -DVHU_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target vhu-rng vhu-check >/dev/null
echo "built $(readlink -f "$build/libvhostuser-cxx.so")"

# shellcheck source=../tests/e2e/guest-kit.sh
source "$top/tests/e2e/guest-kit.sh"
tmp=$(mktemp -d /tmp/vhu-demo-XXXXXX)
rng_pid=
cleanup() {
  [ -n "${KIT_QEMU_PID:-}" ] && kill "$KIT_QEMU_PID" 2>/dev/null || true
  [ -n "$rng_pid" ] && kill "$rng_pid" 2>/dev/null && wait "$rng_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

say "Starting vhu-rng --socket-path=$tmp/rng.sock (entropy from /dev/urandom)"
"$build/examples/vhu-rng" --socket-path="$tmp/rng.sock" --verbose 2>"$tmp/rng.log" &
rng_pid=$!
for _ in $(seq 100); do [ -S "$tmp/rng.sock" ] && break; sleep 0.05; done
echo "vhu-rng is pid $rng_pid, listening"

say "Checking it with vhu-check, the project's conformance checker"
"$build/vhu-check" --socket-path="$tmp/rng.sock" | sed 's/^/  /'

say "Preparing a guest: Debian's cloud kernel and a busybox initramfs"
KIT_KERNEL=$(kit_kernel)
echo "kernel: $KIT_KERNEL"
cat >"$tmp/init" <<'INIT'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko; done
echo "guest: kernel $(uname -r) up, virtio drivers loaded"
echo "guest: hardware RNG in use: $(cat /sys/class/misc/hw_random/rng_current)"
dd if=/dev/hwrng of=/tmp/r bs=4096 count=16 2>/dev/null
echo "guest: read $(wc -c < /tmp/r) bytes from /dev/hwrng; the first 64:"
hexdump -C /tmp/r | head -4 | sed 's/^/guest:   /'
echo "guest: distinct byte values seen: $(od -An -v -tu1 /tmp/r | tr -s ' ' '\n' | sort -u | grep -c .) of 256"
poweroff -f
INIT
chmod +x "$tmp/init"
kit_initramfs "$tmp/initrd.gz" "$tmp/init" virtio_ring virtio virtio_pci_legacy_dev \
  virtio_pci_modern_dev virtio_pci virtio-rng >/dev/null

say "Booting the guest (QEMU, TCG) with -device vhost-user-rng-pci on that socket"
log_mark=$(wc -l <"$tmp/rng.log")
KIT_INITRD=$tmp/initrd.gz KIT_APPEND="rng_core.default_quality=0" kit_run_qemu \
  "$tmp/serial.log" 180 \
  -chardev socket,id=rng0,path="$tmp/rng.sock" \
  -device vhost-user-rng-pci,chardev=rng0,vectors=0 || true
grep '^guest:' "$tmp/serial.log" || { echo "the guest printed nothing; serial log:"; tail -20 "$tmp/serial.log"; exit 1; }

say "What vhu-rng logged while the guest ran"
tail -n +"$((log_mark + 1))" "$tmp/rng.log" | sed 's/^/  /'
kill -TERM "$rng_pid"; wait "$rng_pid"; rng_pid=
echo
echo "vhu-rng stopped cleanly on SIGTERM. Done."
