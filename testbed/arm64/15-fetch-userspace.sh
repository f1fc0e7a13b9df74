#!/bin/bash
# arm64 user space, downloaded (not installed) through the private arm64 apt state and unpacked
# with dpkg -x into $A64/tools-<suite>:
#   bookworm: busybox-static, kexec-tools 2.0.25, makedumpfile 1.7.2, coreutils (for `sleep`)
#             and their shared libraries (for the initramfs)
#   sid:      makedumpfile 1.7.8 and crash 9.0.2 with their own glibc and libraries
#             (makedumpfile-new in the initramfs; crash and makedumpfile on the host under qemu-user)
# Each dynamic binary is then checked with its suite's ld-linux-aarch64.so.1 --list under
# $QEMU_USER (qemu-aarch64-static): "not found" lines mean a library package is missing below.
# Usage: 15-fetch-userspace.sh [SUITE...]    (default: bookworm sid)
set -euo pipefail
. "$(dirname "$0")/env.sh"
apt64_init
[ -n "$(ls "$A64/apt/lists/"*Packages* 2>/dev/null)" ] || apt-get "${APT64[@]}" update >&2
declare -A LIST=(
  [bookworm]="busybox-static kexec-tools makedumpfile coreutils libc6 zlib1g libdw1 libelf1 liblzo2-2
              liblzma5 libbz2-1.0 libzstd1
              libxenmisc4.17 libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1
              libxengnttab1 libxenhypfs1 libxenstore4 libxentoollog1 libxentoolcore1 libyajl2
              libext2fs2 libfdt1 libuuid1"   # kexec-tools 2.0.25 links libxenctrl (libxenmisc4.17)
  [sid]="makedumpfile crash libc6 libgcc-s1 libstdc++6 libncursesw6 libtinfo6 libsnappy1v5 liblzo2-2
         libzstd1 zlib1g libgmp10 libmpfr6 libdw1t64 libelf1t64 libbz2-1.0 liblzma5"
)
BINS="sbin/kexec usr/sbin/kexec usr/bin/makedumpfile usr/bin/crash bin/sleep usr/bin/sleep"
suites=("$@"); [ ${#suites[@]} -gt 0 ] || suites=(bookworm sid)
for suite in "${suites[@]}"; do
    debs="$A64/debs-$suite"; root="$A64/tools-$suite"
    mkdir -p "$debs"; cd "$debs"
    for p in ${LIST[$suite]}; do
        ls "${p}"_*.deb >/dev/null 2>&1 || apt-get "${APT64[@]}" download "$p/$suite"
    done
    rm -rf "$root"; mkdir -p "$root"
    for d in *.deb; do dpkg -x "$d" "$root"; done
    ld=$(cd "$root" && ls usr/lib/ld-linux-aarch64.so.1 lib/ld-linux-aarch64.so.1 \
                         usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1 lib/aarch64-linux-gnu/ld-linux-aarch64.so.1 2>/dev/null | head -1 || true)
    echo "$ld" > "$root/LDSO"   # path of the dynamic loader inside $root
    lp="$root/lib/aarch64-linux-gnu:$root/usr/lib/aarch64-linux-gnu"
    echo "== $suite: loader $ld"
    for b in $BINS; do
        [ -f "$root/$b" ] && [ ! -L "$root/$b" ] || continue
        echo "-- $b: $(file -b "$root/$b" | cut -d, -f1-2)"
        "$QEMU_USER" "$root/$ld" --library-path "$lp" --list "$root/$b" | sed 's/^/   /'
    done
    "$QEMU_USER" "$root/$ld" --library-path "$lp" "$root/usr/bin/makedumpfile" -v 2>&1 | head -1 || true
    [ -f "$root/sbin/kexec" ] && { "$QEMU_USER" "$root/$ld" --library-path "$lp" "$root/sbin/kexec" -v || true; }
    [ -f "$root/usr/bin/crash" ] && { "$QEMU_USER" "$root/$ld" --library-path "$lp" "$root/usr/bin/crash" --version 2>&1 | grep -m1 '^crash' || true; }
    [ -f "$root/bin/busybox" ] && { "$QEMU_USER" "$root/bin/busybox" 2>&1 | head -1 || true; file -b "$root/bin/busybox" | cut -d, -f1-5; }
done
exit 0   # the checks above print; a missing binary is not an error here
