#!/bin/sh
# /init of the testbed guest (busybox). It mounts the HOST's root filesystem read-only over
# virtio 9p at /host and runs the project's own Python from there (chroot /host, so every
# host path — interpreter, virtualenv, project — is the same inside the guest).
# Kernel command line (all set by testbed/vm.py):
#   kdtb.stage=first|capture|qmp  first: arm kdump with `kdumpkit load`, then panic;
#                                 capture: `kdumpkit collect` /proc/vmcore, power off;
#                                 qmp: no kdump, panic (QEMU's dump-guest-memory saves it)
#   kdtb.py=PYTHON kdtb.proj=PROJECT_DIR kdtb.out=OUTPUT_DIR (a writable 9p share)
#   kdtb.kernel=VMLINUZ kdtb.initrd=INITRD (host paths for the capture kernel)
#   kdtb.compress=zlib|... (kdumpkit collect --compress; default: kdumpkit's own default)
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "TESTBED: $* (uptime $(uptime_s)s)"; }
arg() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" /proc/cmdline | head -n1; }
stop() { sync; poweroff -f; sleep 10; }   # poweroff -f doesn't return; sleep in case it fails

stage=$(arg kdtb.stage); PY=$(arg kdtb.py); PROJ=$(arg kdtb.proj); OUT=$(arg kdtb.out)

insmods() {  # load the modules listed in file $1 (dependencies first)
    local m
    while read -r m; do
        insmod "/lib/modules/$(uname -r)/$m" 2>/dev/null || say "insmod $m failed"
    done < "$1"
}
mount_host() {  # modules, host root at /host (ro), proc/sys/dev/tmp inside it, output share rw
    insmods /etc/modules
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /host ||
        { say "FAIL: cannot mount the host root share"; stop; }
    mount -t proc proc /host/proc
    mount -t sysfs sysfs /host/sys
    mount -t devtmpfs devtmpfs /host/dev
    mount -t tmpfs tmpfs /host/tmp
    # After the tmpfs: the output folder may be under the host's /tmp (made here if so).
    [ -z "$OUT" ] || mkdir -p "/host$OUT"
    [ -z "$OUT" ] || mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=262144 outdir "/host$OUT" ||
        { say "FAIL: cannot mount the output share on $OUT"; stop; }
}
inhost() {  # run a command chrooted in the host root with a clean environment
    chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$PROJ" "$@"
}
kdumpkit() { inhost "$PY" -m kdumpkit "$@"; }
has_verb() { [ -f "/host$PROJ/kdumpkit/cli/$1.py" ]; }

if [ "$stage" = capture ] || [ -e /proc/vmcore ]; then
    say "capture kernel up: $(uname -r); vmcore $(stat -c %s /proc/vmcore 2>/dev/null) bytes"
    mount_host
    say "host mounted"
    if has_verb collect; then
        collector=kdumpkit
        compress=$(arg kdtb.compress)
        kdumpkit collect --vmcore /proc/vmcore --dir "$OUT" ${compress:+--compress "$compress"} \
            > "/host$OUT/collect.log" 2>&1
        rc=$?
    else  # until `kdumpkit collect` exists: Debian's makedumpfile in the same layout
        collector=makedumpfile
        stamp=$(date +%Y%m%d%H%M)
        mkdir -p "/host$OUT/$stamp"
        { inhost makedumpfile -c -d 31 /proc/vmcore "$OUT/$stamp/dump.$stamp" &&
          inhost makedumpfile --dump-dmesg /proc/vmcore "$OUT/$stamp/dmesg.$stamp"; } \
            > "/host$OUT/collect.log" 2>&1
        rc=$?
    fi
    say "collect done: collector=$collector rc=$rc"
    umount "/host$OUT" 2>/dev/null
    stop
fi

say "first kernel up: $(uname -r) stage=$stage"
mount_host
say "host mounted"
echo 1 > /proc/sys/kernel/sysrq
if [ "$stage" = first ]; then
    kdumpkit check > "/host$OUT/check-before.txt" 2>&1
    echo "rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)" >> "/host$OUT/check-before.txt"
    say "check before load done"
    # The capture kernel: same kernel and initramfs, one CPU, devices reset, the kdtb.* knobs.
    capture_cmdline="console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=1 kdtb.stage=capture"
    for k in py proj out compress; do capture_cmdline="$capture_cmdline kdtb.$k=$(arg kdtb.$k)"; done
    kernel=$(arg kdtb.kernel); initrd=$(arg kdtb.initrd)
    if has_verb load; then
        loader=kdumpkit
        # No kexec-tools in this guest: kdumpkit must load the kernel by itself.
        : > /tmp/no-kexec-tools
        for k in /host/usr/sbin/kexec /host/sbin/kexec; do
            [ -f "$k" ] && mount --bind /tmp/no-kexec-tools "$k"
        done
        inhost sh -c 'command -v kexec' > /dev/null && say "FAIL: kexec-tools still visible"
        kdumpkit load --method file --kernel "$kernel" --initrd "$initrd" --append "$capture_cmdline" \
            > "/host$OUT/load.log" 2>&1
        rc=$?
    else  # until `kdumpkit load` exists: kexec-tools from the host, kexec_file_load too
        loader=kexec-tools
        inhost kexec -s -p "$kernel" --initrd="$initrd" --append="$capture_cmdline" \
            > "/host$OUT/load.log" 2>&1
        rc=$?
    fi
    say "load done: loader=$loader rc=$rc kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
    kdumpkit check > "/host$OUT/check-after.txt" 2>&1
    echo "rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)" >> "/host$OUT/check-after.txt"
    say "check after load done"
    # The output share must not be in use when the kernel dies: the capture kernel remounts it.
    sync
elif [ "$stage" = qmp ]; then
    insmods /etc/modules-qmp
fi

# Recognisable state for the dump: a sleeper in nanosleep, a task blocked opening a FIFO,
# a marker line in the kernel log, and the crash from a shell named testbed_crasher.
ln -s /usr/bin/sleep /host/tmp/testbed_sleeper
chroot /host /tmp/testbed_sleeper 1000 &
say "testbed_sleeper pid=$!"
mkfifo /tmp/testbed.fifo
( printf testbed_fifo > /proc/self/comm; read -r _ < /tmp/testbed.fifo ) &
say "testbed_fifo pid=$!"
echo "TESTBED marker: kdumpkit testbed on $(uname -r)" > /dev/kmsg
sleep 1
say "crashing: sysrq-c from testbed_crasher"
( printf testbed_crasher > /proc/self/comm; echo c > /proc/sysrq-trigger )
say "FAIL: still alive after sysrq-c"
stop
