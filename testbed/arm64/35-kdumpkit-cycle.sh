#!/bin/bash
# A kdump cycle driven by kdumpkit inside the arm64 guest: `kdumpkit load` arms the capture
# kernel, sysrq-c, `kdumpkit collect` in the capture kernel writes the dump and its dmesg to an
# ext4 disk, which the host reads back with debugfs (no mount). Needs 25-build-kdumpkit-root.sh.
# Usage: 35-kdumpkit-cycle.sh [KVER]        Output: $FIXTURES/kdumpkit-<KVER>-cycle/
set -euo pipefail
. "$(dirname "$0")/env.sh"
kv=${1:-${KVERS%% *}}
b="$A64/build/$kv"; out="$FIXTURES/kdumpkit-$kv-cycle${SUFFIX:-}"
wait_idle   # before touching $out: a concurrent run of the same kernel waits here
rm -rf "$out"; mkdir -p "$out"; cd "$out"
mkfs.ext4 -q -F -L kdkout out.ext4 1536M
log "booting $kv (kdumpkit cycle, cpu=$CPU); console -> $out/console.log"
t0=$(date +%s.%N); rc=0
timeout "$BOOT_TIMEOUT" "$QEMU" -M "$MACHINE" -cpu "$CPU" -accel tcg -m "$GUEST_MEM" -smp "$GUEST_CPUS" \
    -display none -monitor none -serial file:console.log -no-reboot \
    -kernel "$b/Image" -initrd "$b/kdumpkit.img" \
    -append "console=ttyAMA0 crashkernel=$CRASHKERNEL panic=5" \
    -drive file="$b/kdumpkit-root.ext4",format=raw,if=none,id=d0,readonly=on \
    -device virtio-blk-pci,drive=d0,serial=kdkroot \
    -drive file=out.ext4,format=raw,if=none,id=d1 -device virtio-blk-pci,drive=d1,serial=kdkout \
    || rc=$?
printf 'qemu_rc=%s wall_s=%.1f cpu=%s\n' "$rc" "$(awk "BEGIN{print $(date +%s.%N)-$t0}")" "$CPU" | tee timing.txt
grep -a TESTBED console.log | tr -d '\r' | sed 's/^\[[^]]*\] //' | awk '!seen[$0]++' >> timing.txt || true
mkdir -p out && debugfs -R "rdump / $out/out" out.ext4 2>/dev/null
rm -f out.ext4
find out -type f | sort | xargs -r ls -l | tee ls.txt
