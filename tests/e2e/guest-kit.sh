#!/usr/bin/env bash
# guest-kit.sh - helpers to boot small throw-away Linux guests under QEMU (TCG)
# for end-to-end tests of vhost-user back-ends.
#
# Use as a library:
#     source tests/e2e/guest-kit.sh
#     KIT_KERNEL=$(kit_kernel)                      # fetch + extract once, cached
#     kit_initramfs "$tmp/initrd.gz" "$tmp/init" virtio_ring virtio ...
#     KIT_INITRD=$tmp/initrd.gz kit_run_qemu "$tmp/serial.log" 120 -device ...
#
# or as a command:
#     guest-kit.sh kernel [CACHE_DIR]
#     guest-kit.sh initramfs OUT.gz INIT_SCRIPT MODULE_NAMES...
#     guest-kit.sh run LOG TIMEOUT_S extra-qemu-args...
#
# Variables read by the functions:
#     VHU_E2E_CACHE   cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/vhostuser-e2e)
#     KIT_KERNEL      vmlinuz path; when unset, kit_kernel is called with the default cache
#     KIT_INITRD      initramfs for kit_run_qemu (required there)
#     KIT_APPEND      extra words for the kernel command line
#     KIT_QEMU        QEMU binary (default qemu-system-x86_64)
#     KIT_SMP         number of guest vCPUs (default 1)
#     KIT_POLL_HOOK   name of a shell function kit_run_qemu calls with LOG
#                     about every 0.2 s while QEMU runs (e.g. to act on a line
#                     the guest printed); its status is ignored
# Variables set by kit_run_qemu (in the calling shell):
#     KIT_QEMU_PID    PID of the running QEMU (empty when none), for cleanup traps
#     KIT_QEMU_TIMED_OUT  1 if the last run was killed for overrunning its timeout
#
# Steps of a test script (each returns non-zero on failure, never exits):
#     kit_use_kernel ERR_FILE
#                     sets and exports KIT_KERNEL from kit_kernel; on failure
#                     prints kit_kernel's messages (also left in ERR_FILE)
#     kit_build_initrd DIR MODULE_NAMES...
#                     kit_initramfs DIR/initrd.gz from DIR/init and exports
#                     KIT_INITRD; on failure prints the messages (also left in
#                     DIR/initramfs.err)
#     kit_stop_qemu   kills the QEMU kit_run_qemu started, if one still runs
#                     (for cleanup traps)
#     kit_show_guest_log LOG
#                     the tails of a guest's serial log LOG and of LOG.qemu;
#                     nothing when LOG is empty
#     kit_init_header WATCHDOG_S
#                     prints the start of a guest /init script: PATH, /proc,
#                     /sys and /dev mounted, $guest from vhu_e2e_guest=G on the
#                     kernel command line, $tag ("VHU-E2E guest=G"), finish TEXT
#                     (prints "$tag TEXT" and powers off) and a watchdog that
#                     prints "$tag FAIL ..." and powers off after WATCHDOG_S
# Sourcing guest-kit.sh also sources e2e-common.sh (the helpers every test
# script shares: step/ok/bad, e2e_fail, e2e_begin, e2e_alive, ...).
#
# The guest kernel is the one linux-image-cloud-amd64 depends on. It is fetched
# with `apt-get download` and unpacked with `dpkg-deb -x`; it is never installed.

# shellcheck source-path=SCRIPTDIR source=e2e-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/e2e-common.sh"

KIT_META_PACKAGE=${KIT_META_PACKAGE:-linux-image-cloud-amd64}
KIT_QEMU_PID=
KIT_QEMU_TIMED_OUT=0

kit_log() {
    printf 'guest-kit: %s\n' "$*" >&2
}

kit_default_cache() {
    printf '%s\n' "${VHU_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vhostuser-e2e}"
}

# kit_kernel [CACHE_DIR] -> prints the vmlinuz path.
# Idempotent: once extracted, the cached kernel is reused without asking apt.
kit_kernel() {
    local cache=${1:-$(kit_default_cache)}
    local current="$cache/current"
    local vmlinuz

    if [[ -f "$current" ]]; then
        vmlinuz=$(<"$current")
        if [[ -f "$vmlinuz" ]]; then
            printf '%s\n' "$vmlinuz"
            return 0
        fi
    fi

    mkdir -p "$cache" || return 1
    (
        # Serialise concurrent first runs on the same cache.
        exec 9>"$cache/.lock"
        flock 9

        if [[ -f "$current" ]] && [[ -f "$(<"$current")" ]]; then
            exit 0
        fi

        local pkg
        pkg=$(apt-cache depends "$KIT_META_PACKAGE" 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
        if [[ -z "$pkg" ]]; then
            kit_log "cannot resolve the kernel package $KIT_META_PACKAGE depends on (run apt-get update?)"
            exit 1
        fi

        local dest="$cache/$pkg"
        if [[ ! -f "$dest/.complete" ]]; then
            local stage
            stage=$(mktemp -d "$cache/.stage.XXXXXX") || exit 1
            # shellcheck disable=SC2064  # expand $stage now
            trap "rm -rf '$stage'" EXIT
            kit_log "downloading $pkg"
            if ! (cd "$stage" && apt-get download -q "$pkg" >download.log 2>&1); then
                kit_log "apt-get download $pkg failed:"
                cat "$stage/download.log" >&2
                exit 1
            fi
            local deb
            deb=$(find "$stage" -maxdepth 1 -name '*.deb' -print -quit)
            if [[ -z "$deb" ]]; then
                kit_log "apt-get download produced no .deb"
                exit 1
            fi
            mkdir "$stage/root"
            dpkg-deb -x "$deb" "$stage/root" || exit 1
            rm -rf "$dest"
            mv "$stage/root" "$dest"
            touch "$dest/.complete"
        fi

        local found
        found=$(find "$dest/boot" -maxdepth 1 -name 'vmlinuz-*' -print -quit)
        if [[ -z "$found" ]]; then
            kit_log "no boot/vmlinuz-* in $dest"
            exit 1
        fi
        printf '%s\n' "$found" >"$current.tmp"
        mv "$current.tmp" "$current"
    ) || return 1

    vmlinuz=$(<"$current")
    printf '%s\n' "$vmlinuz"
}

# kit_modules_dir [VMLINUZ] -> prints lib/modules/<version> next to the kernel.
kit_modules_dir() {
    local vmlinuz=${1:-${KIT_KERNEL:-}}
    if [[ -z "$vmlinuz" ]]; then
        vmlinuz=$(kit_kernel) || return 1
    fi
    local root version
    root=$(dirname "$(dirname "$vmlinuz")")
    version=$(basename "$vmlinuz")
    version=${version#vmlinuz-}
    if [[ ! -d "$root/lib/modules/$version" ]]; then
        kit_log "no module tree $root/lib/modules/$version"
        return 1
    fi
    printf '%s\n' "$root/lib/modules/$version"
}

# kit_find_module MODDIR NAME -> prints the module file (accepts - and _ spellings).
kit_find_module() {
    local moddir=$1 name=$2 alt cand ext f
    alt=${name//-/_}
    [[ "$alt" == "$name" ]] && alt=${name//_/-}
    for cand in "$name" "$alt"; do
        for ext in ko ko.xz ko.zst ko.gz; do
            f=$(find "$moddir" -type f -name "$cand.$ext" -print -quit)
            if [[ -n "$f" ]]; then
                printf '%s\n' "$f"
                return 0
            fi
        done
    done
    return 1
}

# kit_initramfs OUT.gz INIT_SCRIPT MODULE_NAMES...
# Builds a busybox initramfs. /init is INIT_SCRIPT; every busybox applet is
# linked into /bin, /sbin, /usr/bin, /usr/sbin; each module NAME is stored,
# uncompressed, as /modules/NAME.ko and /modules/order lists the names in
# the given order (so `for m in $(cat /modules/order); do insmod ...`).
kit_initramfs() {
    if (($# < 2)); then
        kit_log "usage: kit_initramfs OUT.gz INIT_SCRIPT MODULE_NAMES..."
        return 2
    fi
    local out=$1 init=$2
    shift 2

    local busybox
    busybox=$(command -v busybox) || {
        kit_log "busybox not found (apt-get install busybox-static)"
        return 1
    }
    if ldd "$busybox" >/dev/null 2>&1; then
        kit_log "$busybox is dynamically linked (install busybox-static)"
        return 1
    fi
    [[ -f "$init" ]] || {
        kit_log "init script $init not found"
        return 1
    }

    [[ "$init" == /* ]] || init=$PWD/$init
    [[ "$out" == /* ]] || out=$PWD/$out

    local moddir=
    if (($# > 0)); then
        moddir=$(kit_modules_dir "${KIT_KERNEL:-}") || return 1
    fi

    local stage
    stage=$(mktemp -d) || return 1
    (
        # Explicit checks: `set -e` would be ignored when the caller uses ||.
        cd "$stage" || exit 1
        mkdir -p bin sbin usr/bin usr/sbin proc sys dev tmp run modules root etc || exit 1
        cp "$busybox" bin/busybox && chmod 0755 bin/busybox || exit 1
        local applet
        while IFS= read -r applet; do
            [[ -n "$applet" && "$applet" != bin/busybox ]] || continue
            mkdir -p "$(dirname "$applet")" || exit 1
            [[ -e "$applet" ]] || ln -s /bin/busybox "$applet" || exit 1
        done < <("$busybox" --list-full)
        cp "$init" init && chmod 0755 init || exit 1
        if [[ $(id -u) == 0 ]]; then
            mknod -m 600 dev/console c 5 1 || exit 1
        fi

        local name src
        : >modules/order || exit 1
        for name in "$@"; do
            if ! src=$(kit_find_module "$moddir" "$name"); then
                kit_log "module $name not found under $moddir"
                exit 1
            fi
            case "$src" in
            *.ko.xz) xz -dc "$src" >"modules/$name.ko" ;;
            *.ko.zst) zstd -qdc "$src" >"modules/$name.ko" ;;
            *.ko.gz) gzip -dc "$src" >"modules/$name.ko" ;;
            *) cp "$src" "modules/$name.ko" ;;
            esac || {
                kit_log "cannot copy $src"
                exit 1
            }
            printf '%s\n' "$name" >>modules/order || exit 1
        done
    )
    local rc=$?
    if ((rc == 0)); then
        (cd "$stage" && find . -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$out.tmp" &&
            mv "$out.tmp" "$out"
        rc=$?
    fi
    rm -rf "$stage"
    return "$rc"
}

# kit_run_qemu LOG TIMEOUT_S extra-qemu-args...
# Boots KIT_KERNEL + KIT_INITRD with the serial console in LOG; QEMU's own
# stdout/stderr go to LOG.qemu. Returns QEMU's exit status, or 124 after
# killing a QEMU that overran TIMEOUT_S.
kit_run_qemu() {
    if (($# < 2)); then
        kit_log "usage: kit_run_qemu LOG TIMEOUT_S extra-qemu-args..."
        return 2
    fi
    local log=$1 timeout_s=$2
    shift 2
    local kernel=${KIT_KERNEL:-}
    if [[ -z "$kernel" ]]; then
        kernel=$(kit_kernel) || return 1
    fi
    if [[ -z "${KIT_INITRD:-}" || ! -f "${KIT_INITRD:-}" ]]; then
        kit_log "KIT_INITRD must name an initramfs (see kit_initramfs)"
        return 2
    fi
    local qemu=${KIT_QEMU:-qemu-system-x86_64}
    local append="console=ttyS0 quiet panic=-1${KIT_APPEND:+ $KIT_APPEND}"

    : >"$log"
    KIT_QEMU_TIMED_OUT=0
    "$qemu" \
        -nodefaults -no-user-config \
        -accel tcg -smp "${KIT_SMP:-1}" -m 256 \
        -object memory-backend-memfd,id=mem,size=256M,share=on \
        -numa node,memdev=mem \
        -display none -monitor none \
        -serial "file:$log" \
        -no-reboot \
        -kernel "$kernel" -initrd "$KIT_INITRD" \
        -append "$append" \
        "$@" </dev/null >"$log.qemu" 2>&1 &
    KIT_QEMU_PID=$!

    # Poll in short steps so that signal traps of the caller still run.
    local deadline=$((SECONDS + timeout_s))
    while kill -0 "$KIT_QEMU_PID" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            KIT_QEMU_TIMED_OUT=1
            kit_log "QEMU (pid $KIT_QEMU_PID) overran ${timeout_s}s, killing it"
            kill -TERM "$KIT_QEMU_PID" 2>/dev/null || true
            local grace=$((SECONDS + 2))
            while kill -0 "$KIT_QEMU_PID" 2>/dev/null && ((SECONDS < grace)); do
                sleep 0.2
            done
            kill -KILL "$KIT_QEMU_PID" 2>/dev/null || true
            break
        fi
        if [[ -n "${KIT_POLL_HOOK:-}" ]]; then
            "$KIT_POLL_HOOK" "$log" || true
        fi
        sleep 0.2
    done
    local rc=0
    wait "$KIT_QEMU_PID" || rc=$?
    KIT_QEMU_PID=
    if ((KIT_QEMU_TIMED_OUT)); then
        return 124
    fi
    return "$rc"
}

# kit_use_kernel ERR_FILE: KIT_KERNEL=$(kit_kernel), exported.
kit_use_kernel() {
    if ! KIT_KERNEL=$(kit_kernel 2>"$1"); then
        cat "$1"
        return 1
    fi
    export KIT_KERNEL
}

# kit_build_initrd DIR MODULE_NAMES...: DIR/initrd.gz from DIR/init, exported
# as KIT_INITRD.
kit_build_initrd() {
    local dir=$1
    shift
    if ! kit_initramfs "$dir/initrd.gz" "$dir/init" "$@" 2>"$dir/initramfs.err"; then
        cat "$dir/initramfs.err"
        return 1
    fi
    export KIT_INITRD=$dir/initrd.gz
}

kit_stop_qemu() {
    e2e_reap "${KIT_QEMU_PID:-}"
}

kit_show_guest_log() {
    [[ -n "$1" ]] || return 0
    e2e_show_tail "guest serial log" "$1"
    e2e_show_tail "qemu output" "$1.qemu" 20
}

kit_init_header() {
    cat <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
guest=$(sed -n 's/.*vhu_e2e_guest=\([0-9A-Za-z]*\).*/\1/p' /proc/cmdline)
tag="VHU-E2E guest=$guest"
finish() {
    echo "$tag $1"
    sync
    poweroff -f
    sleep 10
}
INIT
    # shellcheck disable=SC2016  # $tag is for the guest's shell
    printf '( sleep %s; echo "$tag FAIL guest watchdog expired after %ss"; poweroff -f ) &\n' "$1" "$1"
}

# Command-line entry point when executed rather than sourced.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    cmd=${1:-}
    shift || true
    case "$cmd" in
    kernel) kit_kernel "$@" ;;
    initramfs) kit_initramfs "$@" ;;
    run) kit_run_qemu "$@" ;;
    *)
        printf 'usage: %s kernel [CACHE_DIR]\n' "$0" >&2
        printf '       %s initramfs OUT.gz INIT_SCRIPT MODULE_NAMES...\n' "$0" >&2
        printf '       %s run LOG TIMEOUT_S extra-qemu-args...   (needs KIT_INITRD)\n' "$0" >&2
        exit 2
        ;;
    esac
fi
