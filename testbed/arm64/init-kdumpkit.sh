#!/bin/sh
# /init of the kdumpkit kdump cycle (35-kdumpkit-cycle.sh): busybox initramfs that mounts the
# arm64 root filesystem 25-build-kdumpkit-root.sh made (virtio disk "kdkroot", read-only) and
# runs kdumpkit from it, chrooted, with Debian's arm64 python3.11:
#   first kernel:   kdumpkit check, kdumpkit load (kexec_load through kexec-tools: no
#                   CONFIG_KEXEC_FILE in Debian's arm64 kernels), the testbed tasks, sysrq-c;
#   capture kernel: kdumpkit collect to the "kdkout" disk (ext4), power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "TESTBED: $*"; echo "TESTBED: $*" > /dev/kmsg; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
disk() {     # virtio disk whose serial is $1
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${b##*/}"; return; }
    done
    say "no disk with serial $1"; echo /dev/null
}
while read -r m; do insmod "/lib/modules/$(uname -r)/$m" || say "insmod $m failed"; done < /etc/modules
sleep 1
R=/r
mount -t ext4 -o ro,noload "$(disk kdkroot)" $R || { say "FAIL: no root disk"; poweroff -f; }
mount -t ext4 "$(disk kdkout)" $R/out || { say "FAIL: no output disk"; poweroff -f; }
mount -t proc proc $R/proc; mount -t sysfs sysfs $R/sys; mount -t devtmpfs devtmpfs $R/dev
mount -t tmpfs tmpfs $R/tmp
kdumpkit() {
    chroot $R /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8 \
        PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/opt/kdumpkit TMPDIR=/tmp \
        KDUMPKIT_CONFIG=/tmp/kdumpkit.toml /usr/bin/python3 -m kdumpkit "$@"
}
cat > $R/tmp/kdumpkit.toml <<CONF
[dump]
dir = "/out"
level = 31
compress = "zstd"
[kexec]
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline_append = "nosmp panic=1"
CONF

if [ -e /proc/vmcore ]; then
    say "capture kernel $(uname -r) up at $(uptime_s)s; cmdline: $(cat /proc/cmdline)"
    t=$(uptime_s); kdumpkit collect > $R/out/collect.log 2>&1
    say "kdumpkit collect rc=$? $t..$(uptime_s)"
    cp /proc/cmdline $R/out/capture-cmdline.txt
    sync; umount $R/out; say "capture done at $(uptime_s)s, powering off"
    poweroff -f
fi

say "first kernel $(uname -r) up at $(uptime_s)s"
echo 1 > /proc/sys/kernel/sysrq
cp $R/tmp/kdumpkit.toml $R/out/kdumpkit.toml
if ! grep -q ' _text$' /proc/kallsyms && [ -f /etc/text-delta ]; then
    # kexec-tools' arm64 crash code needs _text, which a kernel without KALLSYMS_ALL does not list.
    stext=$(awk '$3 == "_stext" {print $1; exit}' /proc/kallsyms)
    text=$(printf '%016x' $((0x$stext - 0x$(cat /etc/text-delta))))
    { echo "$text T _text"; cat /proc/kallsyms; } > /tmp/kallsyms
    mount --bind /tmp/kallsyms $R/proc/kallsyms
    say "no _text in /proc/kallsyms: a copy with _text=$text for kexec-tools"
fi
t=$(uptime_s); kdumpkit check > $R/out/check-before.txt 2>&1; say "kdumpkit check rc=$? $t..$(uptime_s)"
t=$(uptime_s); kdumpkit load > $R/out/load.log 2>&1
say "kdumpkit load rc=$? $t..$(uptime_s) kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
kdumpkit check > $R/out/check-after.txt 2>&1; say "kdumpkit check (after load) rc=$?"
sync
ln -s /bin/busybox /tmp/testbed_sleeper
/tmp/testbed_sleeper sleep 1000 &
say "testbed_sleeper pid=$!"
mkfifo /tmp/tb_fifo
( printf testbed_fifo > /proc/self/comm; read -r x < /tmp/tb_fifo ) &
say "testbed_fifo pid=$!"
echo "TESTBED marker: kdumpkit cycle on $(uname -r)" > /dev/kmsg
sleep 1
say "triggering sysrq-c from a subshell named testbed_crasher at $(uptime_s)s"
( printf testbed_crasher > /proc/self/comm; echo c > /proc/sysrq-trigger )
say "still alive?!"
sleep 5
poweroff -f
