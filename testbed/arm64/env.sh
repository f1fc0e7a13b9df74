# Common settings, sourced by every script in this folder (arm64 testbed).
# Override any of these from the environment.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
X86="$HERE"                                   # helpers shared with the x86_64 recipe (dumpsize.py, qmp.py, dumpinfo.py, drgn_probe.py), copied here
FIXTURES="${FIXTURES:-${KDUMPKIT_CACHE:-$HERE/../../.cache}/testbed-arm64}"   # large outputs (cache); never committed
FIXTURES="$(mkdir -p "$FIXTURES" && cd "$FIXTURES" && pwd)"
A64="$FIXTURES/arm64"          # arm64 inputs: apt state, .debs, kernels, user space, initramfs builds
PKGS="$A64/pkgs"               # downloaded .deb files
KROOT="$A64/kernels"           # one extracted tree per kernel version
# Kernel versions (Debian bookworm cloud flavour for arm64; the first is the default).
KVERS="${KVERS:-6.1.0-56-cloud-arm64 6.12.117+deb12-cloud-arm64}"
# Debian suites of the private arm64 apt state (10-fetch-kernels.sh, 15-fetch-userspace.sh).
SUITES="${SUITES:-bookworm bookworm-updates bookworm-security bookworm-backports sid}"
QEMU="${QEMU:-qemu-system-aarch64}"
QEMU_USER="${QEMU_USER:-qemu-aarch64-static}"
MACHINE="${MACHINE:-virt}"
CPU="${CPU:-cortex-a76}"
GUEST_MEM="${GUEST_MEM:-1024}"       # MiB
GUEST_CPUS="${GUEST_CPUS:-2}"
CRASHKERNEL="${CRASHKERNEL:-256M}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-900}"  # seconds for a whole VM run (arm64 TCG is slow)
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
# CPU courtesy: one guest (or crash under qemu-user) at a time on this machine: take the shared
# QEMU lock (the x86_64 testbed's too) on fd 9, held until the calling script exits.
QEMU_LOCK="${QEMU_LOCK:-/tmp/kdumpkit-qemu.lock}"
wait_idle() { exec 9> "$QEMU_LOCK"; log "waiting for $QEMU_LOCK"; flock 9; }
# Private apt state for arm64: apt-get "${APT64[@]}" update|download ... (set up by apt64_init)
apt64_init() {
    local a="$A64/apt" s url
    mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/preferences.d"
    [ -f "$a/status" ] || : > "$a/status"
    : > "$a/sources.list.new"
    for s in $SUITES; do
        case $s in *-security) url=http://deb.debian.org/debian-security ;; *) url=http://deb.debian.org/debian ;; esac
        echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $url $s main" >> "$a/sources.list.new"
    done
    mv "$a/sources.list.new" "$a/sources.list"
    APT64=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
           -o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/nonexistent
           -o "Dir::Etc::Preferences=$a/preferences" -o "Dir::Etc::PreferencesParts=$a/preferences.d"
           -o "Dir::State=$a" -o "Dir::State::Lists=$a/lists" -o "Dir::State::status=$a/status"
           -o "Dir::Cache=$a/cache")
}
