#!/bin/sh
# /init of the testbed guest (busybox). It mounts the HOST's root filesystem read-only over
# virtio 9p at /host and runs the project's own Python from there (chroot /host, so every
# host path — interpreter, virtualenv, project — is the same inside the guest).
# Kernel command line (all set by testbed/vm.py):
#   kdtb.stage=first|capture|qmp|live
#                                 first: arm kdump with `kdumpkit load`, then panic;
#                                 capture: `kdumpkit collect` /proc/vmcore, power off;
#                                 qmp: no kdump, panic (QEMU's dump-guest-memory saves it);
#                                 live: analyse the running kernel (/proc/kcore), power off
#   kdtb.py=PYTHON kdtb.proj=PROJECT_DIR kdtb.out=OUTPUT_DIR (a writable 9p share)
#   kdtb.kernel=VMLINUZ kdtb.initrd=INITRD (host paths for the capture kernel)
#   kdtb.compress=zlib|... (the config's dump.compress; default: kdumpkit's own default)
#   kdtb.level=N kdtb.format=kdump|elf|flat (the config's dump.level / dump.format)
#   kdtb.workload=MIB (first kernel: fill memory with testbed/workload.py before the panic)
# kdumpkit is driven by a config file written from these (KDUMPKIT_CONFIG=/dev/shm/kdumpkit.toml):
# dump.dir, dump.compress, dump.level, dump.format, kexec.kernel, kexec.initrd, kexec.cmdline_append.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "TESTBED: $* (uptime $(uptime_s)s)"; }
# The value of kernel parameter $1; the greedy .* makes the last one win, as in the kernel.
arg() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" /proc/cmdline | head -n1; }
stop() { sync; poweroff -f; sleep 10; }   # poweroff -f doesn't return; sleep in case it fails

stage=$(arg kdtb.stage); PY=$(arg kdtb.py); PROJ=$(arg kdtb.proj); OUT=$(arg kdtb.out)

insmods() {  # load the modules listed in file $1 (dependencies first)
    local m
    while read -r m; do
        insmod "/lib/modules/$(uname -r)/$m" 2>/dev/null || say "insmod $m failed"
    done < "$1"
}
mount_host() {  # modules, host root at /host (ro), proc/sys/dev/shm inside it, output share rw
    insmods /etc/modules
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /host ||
        { say "FAIL: cannot mount the host root share"; stop; }
    mount -t proc proc /host/proc
    mount -t sysfs sysfs /host/sys
    mount -t devtmpfs devtmpfs /host/dev
    # The guest's scratch space. Not a tmpfs on /host/tmp: the kernel, initramfs and output
    # folder may be under the host's /tmp and must stay visible.
    mkdir -p /host/dev/shm
    mount -t tmpfs tmpfs /host/dev/shm
    [ -z "$OUT" ] || mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=262144 outdir "/host$OUT" ||
        { say "FAIL: cannot mount the output share on $OUT"; stop; }
}
inhost() {  # run a command chrooted in the host root with a clean environment
    chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$PROJ" \
        TMPDIR=/dev/shm KDUMPKIT_CONFIG=/dev/shm/kdumpkit.toml "$@"
}
kdumpkit() { inhost "$PY" -m kdumpkit "$@"; }
write_config() {  # /etc/kdumpkit.toml's job, in the chroot's /dev/shm (a copy goes to the share)
    local compress level format
    compress=$(arg kdtb.compress); level=$(arg kdtb.level); format=$(arg kdtb.format)
    {
        echo "[dump]"
        echo "dir = \"$OUT\""
        [ -z "$compress" ] || echo "compress = \"$compress\""
        [ -z "$level" ] || echo "level = $level"
        [ -z "$format" ] || echo "format = \"$format\""
        echo "[kexec]"
        echo "kernel = \"$(arg kdtb.kernel)\""
        echo "initrd = \"$(arg kdtb.initrd)\""
        # kdumpkit load appends this to the running command line (crashkernel= dropped).
        echo "cmdline_append = \"panic=1 kdtb.stage=capture\""
    } > /host/dev/shm/kdumpkit.toml
}

if [ "$stage" = capture ] || [ -e /proc/vmcore ]; then
    say "capture kernel up: $(uname -r); vmcore $(stat -c %s /proc/vmcore 2>/dev/null) bytes"
    mount_host
    write_config
    say "host mounted"
    kdumpkit collect > "/host$OUT/collect.log" 2>&1
    say "collect done: collector=kdumpkit rc=$?"
    umount "/host$OUT" 2>/dev/null
    stop
fi

say "first kernel up: $(uname -r) stage=$stage"
mount_host
say "host mounted"
echo 1 > /proc/sys/kernel/sysrq
if [ "$stage" = first ]; then
    write_config
    cp /host/dev/shm/kdumpkit.toml "/host$OUT/kdumpkit.toml"
    # No kexec-tools in this guest: kdumpkit loads the capture kernel by itself.
    : > /tmp/no-kexec-tools
    for k in /host/usr/sbin/kexec /host/sbin/kexec; do
        [ -f "$k" ] && mount --bind /tmp/no-kexec-tools "$k"
    done
    inhost sh -c 'command -v kexec' > /dev/null && say "FAIL: kexec-tools still visible"
    kdumpkit check > "/host$OUT/check-before.txt" 2>&1
    echo "rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)" >> "/host$OUT/check-before.txt"
    say "check before load done"
    # The capture kernel: the same kernel and initramfs (from the config), kexec_file_load.
    kdumpkit load --method file > "/host$OUT/load.log" 2>&1
    say "load done: loader=kdumpkit rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)"
    kdumpkit check > "/host$OUT/check-after.txt" 2>&1
    echo "rc=$? kexec_crash_loaded=$(cat /sys/kernel/kexec_crash_loaded)" >> "/host$OUT/check-after.txt"
    say "check after load done"
    # The output share must not be in use when the kernel dies: the capture kernel remounts it.
    sync
elif [ "$stage" = qmp ]; then
    insmods /etc/modules-qmp
fi

workload=$(arg kdtb.workload)
if [ -n "$workload" ]; then
    inhost "$PY" "$PROJ/testbed/workload.py" --mib "$workload" > "/host$OUT/workload.log" 2>&1
    say "workload done: rc=$? $(tail -n1 "/host$OUT/workload.log")"
fi

# Recognisable state for the dump: a sleeper in nanosleep, a task blocked opening a FIFO,
# a marker line in the kernel log, and the crash from a shell named testbed_crasher.
ln -s /usr/bin/sleep /host/dev/shm/testbed_sleeper
chroot /host /dev/shm/testbed_sleeper 1000 &
sleeper=$!
say "testbed_sleeper pid=$sleeper"
mkfifo /tmp/testbed.fifo
( printf testbed_fifo > /proc/self/comm; read -r _ < /tmp/testbed.fifo ) &
say "testbed_fifo pid=$!"
echo "TESTBED marker: kdumpkit testbed on $(uname -r)" > /dev/kmsg
sleep 1
if [ "$stage" = live ]; then
    # A task in uninterruptible sleep for the report to find: a vfork() parent waits in D
    # until its child execs or exits, and this child sleeps (the parent is never resumed).
    inhost "$PY" -c 'import ctypes; libc = ctypes.CDLL(None)
libc.prctl(15, b"testbed_vforker", 0, 0, 0)
libc.vfork() or (libc.sleep(1000), libc._exit(0))' &
    sleep 2
    say "testbed_vforker started"
    # The same questions of the running kernel, through /proc/kcore, no vmlinux.
    kdumpkit crash /proc/kcore -c sys -c ps -c log -c "bt $sleeper" > "/host$OUT/live-crash.txt" 2>&1
    say "live crash done: rc=$?"
    kdumpkit report /proc/kcore > "/host$OUT/live-report.txt" 2>&1
    say "live report done: rc=$?"
    umount "/host$OUT" 2>/dev/null
    stop
fi
say "crashing: sysrq-c from testbed_crasher"
( printf testbed_crasher > /proc/self/comm; echo c > /proc/sysrq-trigger )
say "FAIL: still alive after sysrq-c"
stop
