#!/bin/bash
# Usage: build-initramfs.sh RELEASE
# Build .cache/testbed/initramfs/RELEASE.img (gzip'd newc cpio) for an unpacked kernel:
# busybox-static with its applet links, testbed/guest-init.sh as /init, and the modules
# that mount the host's root over virtio 9p (with their dependencies, from modules.dep,
# decompressed because busybox insmod can't read .ko.xz/.ko.zst). The same image serves the
# first kernel and the capture kernel. Rebuilt only when an input is newer. Prints the path.
set -euo pipefail
. "$(dirname "$0")/common.sh"
kv=${1:?usage: build-initramfs.sh RELEASE}
moddir="$KERNELS/$kv/lib/modules/$kv"
[ -f "$moddir/modules.dep" ] || tb_die "kernel $kv is not unpacked (run fetch-kernel.sh)"
MODULES="virtio_pci 9pnet_virtio 9p"          # every stage: the host root share
QMP_MODULES="qemu_fw_cfg pvpanic-mmio"         # stage qmp: VMCOREINFO to QEMU, panic event
# Before 5.12 ("misc/pvpanic: split-up generic and platform dependent code") one pvpanic.
grep -qE '(^|/)pvpanic-mmio\.ko' "$moddir/modules.dep" || QMP_MODULES="qemu_fw_cfg pvpanic"
tb_lock
img="$IMAGES/$kv.img"
if [ -f "$img" ] && [ "$img" -nt "$TESTBED_DIR/guest-init.sh" ] && [ "$img" -nt "$0" ] \
   && [ "$img" -nt /bin/busybox ]; then
    echo "$img"; exit 0
fi

module_chain() {  # modules.dep paths for module $1, dependencies first (as modprobe loads them)
    local line
    line=$(grep -E "(^|/)$1\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep") || {
        grep -qE "(^|/)$1\.ko" "$moddir/modules.builtin" && return 0   # built in
        tb_die "module $1 not in $kv"
    }
    local self=${line%%:*} deps=(${line#*:}) i
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do echo "${deps[i]}"; done
    echo "$self"
}

root=$(mktemp -d "$CACHE/initramfs-root.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,host,etc} "$root/lib/modules/$kv"
install -m755 /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"; done
ln -s bin "$root/sbin"
install -m755 "$TESTBED_DIR/guest-init.sh" "$root/init"
add_modules() {  # copy modules $2.. (and dependencies) into the image, list them in file $1
    local list=$1 m rel plain; shift
    : > "$list"
    for m in "$@"; do
        for rel in $(module_chain "$m"); do
            plain=${rel%.xz}; plain=${plain%.zst}; plain=${plain%.gz}
            grep -qxF "$plain" "$list" && continue
            echo "$plain" >> "$list"
            [ -f "$root/lib/modules/$kv/$plain" ] && continue
            mkdir -p "$root/lib/modules/$kv/$(dirname "$plain")"
            case $rel in
                *.xz) xz -dc "$moddir/$rel" ;;
                *.zst) zstd -qdc "$moddir/$rel" ;;
                *.gz) gzip -dc "$moddir/$rel" ;;
                *) cat "$moddir/$rel" ;;
            esac > "$root/lib/modules/$kv/$plain"
        done
    done
}
add_modules "$root/etc/modules" $MODULES
add_modules "$root/etc/modules-qmp" $QMP_MODULES
mkdir -p "$IMAGES"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$img.part"
mv "$img.part" "$img"
tb_log "$img: $(stat -c %s "$img") bytes, modules: $(tr '\n' ' ' < "$root/etc/modules")"
echo "$img"
