#!/bin/bash
# The guest side of a kdump cycle driven by kdumpkit itself (35-kdumpkit-cycle.sh): an arm64
# root filesystem with Debian's arm64 python3.11 (bookworm .debs, downloaded, not installed),
# the project's dependencies as arm64 wheels (pip download --platform ..._aarch64; drgn has none:
# load and collect do not need it), kexec-tools (kdumpkit load's kexec_load path: Debian's arm64
# kernels are built without CONFIG_KEXEC_FILE), busybox, and this checkout's kdumpkit package at
# /opt/kdumpkit; written as an ext4 image (mkfs.ext4 -d, no mount needed) that the guest mounts
# read-only from a virtio disk (the cloud kernels have no 9p). Also a small initramfs
# (busybox + virtio modules + init-kdumpkit.sh) that serves the first and the capture kernel.
# Usage: 25-build-kdumpkit-root.sh [KVER]    Output: $A64/build/<kver>/kdumpkit-root.ext4, kdumpkit.img
set -euo pipefail
. "$(dirname "$0")/env.sh"
kv=${1:-${KVERS%% *}}
PROJECT=$(cd "$HERE/../.." && pwd)
apt64_init
[ -n "$(ls "$A64/apt/lists/"*Packages* 2>/dev/null)" ] || apt-get "${APT64[@]}" update >&2
PYDEBS="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libffi8 libexpat1 zlib1g
        libbz2-1.0 liblzma5 libuuid1 libc6 libgcc-s1 libstdc++6 libzstd1 libssl3 libsqlite3-0
        libncursesw6 libtinfo6 libreadline8 libcrypt1 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3
        libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libdb5.3"
debs="$A64/debs-python"; mkdir -p "$debs"
(cd "$debs" && for p in $PYDEBS; do
    ls "${p}"_*.deb >/dev/null 2>&1 || apt-get "${APT64[@]}" download "$p/bookworm" >&2
done)
wheels="$A64/wheels"; mkdir -p "$wheels"
# The project's runtime dependencies but drgn (no aarch64 wheel on PyPI; analysis is not run here).
read -ra pip <<< "${PIP:-python3 -m pip}"
"${pip[@]}" download -q --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 --abi abi3 --abi none --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 --platform any -d "$wheels" \
    "numpy>=1.24" "zstandard>=0.21" "deflate>=0.5" "cramjam>=2.7" "pyelftools>=0.30" \
    "capstone>=5.0" "rich>=13" "prompt_toolkit>=3.0" 2>&1 | grep -v '^WARNING: Location' >&2 || true

b="$A64/build/$kv"; mkdir -p "$b"
r=$(mktemp -d "$A64/build/kdkroot.XXXXXX"); trap 'rm -rf "$r" "$r.init"' EXIT
for d in "$debs"/*.deb "$A64/debs-bookworm"/*.deb; do dpkg -x "$d" "$r"; done
ln -sf python3.11 "$r/usr/bin/python3"
site="$r/usr/lib/python3/dist-packages"; mkdir -p "$site"
for w in "$wheels"/*.whl; do python3 -m zipfile -e "$w" "$site"; done
mkdir -p "$r/opt/kdumpkit" "$r/out" "$r/boot" "$r/proc" "$r/sys" "$r/dev" "$r/tmp" "$r/etc"
cp -a "$PROJECT/kdumpkit" "$r/opt/kdumpkit/"
find "$r/opt/kdumpkit" -name __pycache__ -prune -exec rm -rf {} +
# usrmerge: the loader at its PT_INTERP path.
[ -e "$r/lib" ] || ln -s usr/lib "$r/lib"
[ -e "$r/lib/ld-linux-aarch64.so.1" ] || ln -sf aarch64-linux-gnu/ld-linux-aarch64.so.1 "$r/lib/ld-linux-aarch64.so.1"
for a in $("$QEMU_USER" "$r/bin/busybox" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
cp "$KROOT/$kv/boot/Image-$kv" "$r/boot/vmlinuz"
cp "$KROOT/$kv/boot/config-$kv" "$r/boot/"   # kdumpkit check reads the kernel's options
# The initramfs: busybox and the virtio modules, init-kdumpkit.sh as /init.
i="$r.init"; mkdir -p "$i"/{bin,proc,sys,dev,tmp,etc,r}
install -m755 "$A64/tools-bookworm/bin/busybox" "$i/bin/busybox"
for a in $("$QEMU_USER" "$i/bin/busybox" --list); do [ -e "$i/bin/$a" ] || ln -s busybox "$i/bin/$a"; done
install -m755 "$HERE/init-kdumpkit.sh" "$i/init"
mdir="$KROOT/$kv/lib/modules/$kv"; : > "$i/etc/modules"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
    rel=$(grep -oE "^[^:]*/$m\.ko(\.xz)?:" "$mdir/modules.dep" | tr -d :) || continue
    plain=${rel%.xz}; mkdir -p "$i/lib/modules/$kv/$(dirname "$plain")"
    case $rel in *.xz) xz -dc "$mdir/$rel" ;; *) cat "$mdir/$rel" ;; esac > "$i/lib/modules/$kv/$plain"
    echo "$plain" >> "$i/etc/modules"
done
syms=$(nm "$KROOT/$kv/usr/lib/debug/boot/vmlinux-$kv" | awk '$3 == "_text" || $3 == "_stext" {print $3 "=" $1}')
printf '%x\n' $(( 0x$(echo "$syms" | sed -n 's/^_stext=//p') - 0x$(echo "$syms" | sed -n 's/^_text=//p') )) \
    > "$i/etc/text-delta"   # _stext - _text, for the kallsyms fix kexec-tools needs (README, traps)
(cd "$i" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 > "$b/kdumpkit.img"
cp "$b/kdumpkit.img" "$r/boot/initrd.img"
rm -f "$b/kdumpkit-root.ext4"
mkfs.ext4 -q -F -L kdkroot -d "$r" "$b/kdumpkit-root.ext4" "$(( $(du -sm "$r" | cut -f1) + 200 ))M"
log "$kv: $(ls -l "$b/kdumpkit-root.ext4" "$b/kdumpkit.img" | awk '{printf "%s=%s ", $9, $5}')"
