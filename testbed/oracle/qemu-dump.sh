#!/bin/bash
# Hypervisor-side dump: boot KVER without kdump, with QEMU's vmcoreinfo and pvpanic
# devices; the guest panics (sysrq-c), QEMU pauses it (-action panic=pause) and
# qmp.py runs dump-guest-memory (ELF, then kdump-zlib) over QMP.
# (from /work/shared/testbed/40-qemu-dump.sh)
# Usage: qemu-dump.sh [KVER] [fwcfg|nofwcfg]
#   fwcfg (default): guest loads qemu_fw_cfg, which hands VMCOREINFO to QEMU's vmcoreinfo device;
#   nofwcfg: it does not, so the dumps carry no VMCOREINFO note.
# Output: $FIXTURES/qemu-<KVER>-<fwcfg|nofwcfg>/
set -euo pipefail
. "$(dirname "$0")/env.sh"
kv=${1:-${KVERS%% *}}; v=${2:-fwcfg}
b="$FIXTURES/build/$kv"; out="$FIXTURES/qemu-$kv-$v"
ACCEL="${ACCEL:-tcg}"
rm -rf "$out"; mkdir -p "$out"; cd "$out"
extra=; [ "$v" = nofwcfg ] && extra="tb.skipmod=qemu_fw_cfg"

log "booting $kv ($v, accel=$ACCEL); console -> $out/console.log"
t0=$(date +%s.%N)
timeout "$BOOT_TIMEOUT" "$QEMU" -accel "$ACCEL" -m "$GUEST_MEM" -smp "$GUEST_CPUS" \
    -display none -vga none -monitor none -serial file:console.log -no-reboot \
    -qmp unix:qmp.sock,server=on,wait=off -action panic=pause \
    -device vmcoreinfo -device pvpanic \
    -kernel "$b/vmlinuz" -initrd "$b/first.img" \
    -append "console=ttyS0 tb.mode=qmp $extra" &
qpid=$!
rc=0
timeout "$BOOT_TIMEOUT" python3 "$HERE/qmp.py" qmp.sock . "$BOOT_TIMEOUT" | tee timing.txt || rc=$?
[ "$rc" = 0 ] || kill "$qpid" 2>/dev/null || true
wait "$qpid" || true
t1=$(date +%s.%N)
printf 'qmp_rc=%s total_wall_s=%.1f accel=%s\n' "$rc" "$(awk "BEGIN{print $t1-$t0}")" "$ACCEL" | tee -a timing.txt
grep -a TESTBED console.log | tr -d '\r' | sed 's/^\[[^]]*\] //' | awk '!seen[$0]++' >> timing.txt || true
rm -f qmp.sock
if [ -f vmcore.qemu.flat ]; then
    t=$(date +%s.%N)
    makedumpfile -R vmcore.qemu.kdump < vmcore.qemu.flat
    printf 'host makedumpfile -R: %.1fs\n' "$(awk "BEGIN{print $(date +%s.%N)-$t}")" >> timing.txt
fi
chmod 644 vmcore.* 2>/dev/null || true
fallocate --dig-holes vmcore.qemu.elf 2>/dev/null || true   # zero pages -> holes (same bytes, less disk)
file vmcore.* | tee file.txt
ls -l vmcore.* | tee ls.txt
