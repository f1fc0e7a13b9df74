#!/bin/bash
# Real kdump: boot KVER with crashkernel=, arm the capture kernel with kexec -p
# (2nd argument load: kexec_load syscall, file: kexec -s, kexec_file_load), panic with sysrq-c; the
# capture kernel writes makedumpfile's flattened dump, a raw copy of /proc/vmcore,
# a tar of logs and (if in the initramfs) a newer makedumpfile's flattened dump to
# four virtio disks, which are then turned into files.
# (from /work/shared/testbed/30-kdump.sh)
# Usage: kdump.sh [KVER] [load|file]     Output: $FIXTURES/kdump-<KVER>-<load|file>/
set -euo pipefail
. "$(dirname "$0")/env.sh"
kv=${1:-${KVERS%% *}}; kx=${2:-load}
b="$FIXTURES/build/$kv"; out="$FIXTURES/kdump-$kv-$kx"
ACCEL="${ACCEL:-tcg}"
rm -rf "$out"; mkdir -p "$out"; cd "$out"
truncate -s 512M disk-flat.raw disk-flat2.raw; truncate -s 1280M disk-elf.raw; truncate -s 64M disk-meta.raw

log "booting $kv (kexec=$kx, accel=$ACCEL); console -> $out/console.log"
t0=$(date +%s.%N)
rc=0
timeout "$BOOT_TIMEOUT" "$QEMU" -accel "$ACCEL" -m "$GUEST_MEM" -smp "$GUEST_CPUS" \
    -display none -vga none -monitor none -serial file:console.log -no-reboot \
    -kernel "$b/vmlinuz" -initrd "$b/first.img" \
    -append "console=ttyS0 crashkernel=$CRASHKERNEL panic=5 tb.mode=kdump tb.kexec=$kx" \
    -drive file=disk-flat.raw,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0,serial=kdumpflat \
    -drive file=disk-elf.raw,format=raw,if=none,id=d1 -device virtio-blk-pci,drive=d1,serial=elfcore \
    -drive file=disk-meta.raw,format=raw,if=none,id=d2 -device virtio-blk-pci,drive=d2,serial=meta \
    -drive file=disk-flat2.raw,format=raw,if=none,id=d3 -device virtio-blk-pci,drive=d3,serial=kdumpflat2 \
    || rc=$?
t1=$(date +%s.%N)
printf 'qemu_rc=%s wall_s=%.1f accel=%s\n' "$rc" "$(awk "BEGIN{print $t1-$t0}")" "$ACCEL" | tee timing.txt
grep -a TESTBED console.log | tr -d '\r' | sed 's/^\[[^]]*\] //' | awk '!seen[$0]++' >> timing.txt || true

mkdir -p capture-meta
tar -xf disk-meta.raw -C capture-meta 2>/dev/null || log "no tar on meta disk"
if head -c 12 disk-flat.raw | grep -q makedumpfile; then
    t=$(date +%s.%N)
    head -c "$("$HERE/dumpsize.py" disk-flat.raw)" disk-flat.raw > vmcore.flat
    makedumpfile -R vmcore.kdump < vmcore.flat
    printf 'host makedumpfile -R: %.1fs\n' "$(awk "BEGIN{print $(date +%s.%N)-$t}")" >> timing.txt
else log "no flattened dump on disk"; fi
if head -c 12 disk-flat2.raw | grep -q makedumpfile; then   # from the newer makedumpfile, if any
    head -c "$("$HERE/dumpsize.py" disk-flat2.raw)" disk-flat2.raw |
        makedumpfile -R "vmcore.mdf-$(cat capture-meta/mdf-new-version.txt).kdump"
fi
if head -c 4 disk-elf.raw | grep -q ELF; then
    n=$("$HERE/dumpsize.py" disk-elf.raw)
    cp --sparse=always disk-elf.raw vmcore.elf && truncate -s "$n" vmcore.elf
else log "no ELF vmcore on disk"; fi
rm -f disk-*.raw
file vmcore.* | tee file.txt
ls -l vmcore.* capture-meta | tee ls.txt
