# Settings shared by the testbed scripts (sourced, not run). Every one can be overridden
# from the environment.
TESTBED_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_DIR="$(cd "$TESTBED_DIR/.." && pwd)"
CACHE="${TESTBED_CACHE:-$PROJECT_DIR/.cache/testbed}"
DEBS="$CACHE/debs"          # downloaded .deb files, never fetched twice
KERNELS="$CACHE/kernels"    # one dpkg -x tree per kernel release
IMAGES="$CACHE/initramfs"   # one initramfs per kernel release
# Generic flavour: it ships the 9p modules (9p, 9pnet_virtio) the guest needs to mount the
# host's root filesystem; the cloud flavour lacks them (virtiofs only, which needs virtiofsd).
FLAVOUR="${TESTBED_FLAVOUR:-amd64}"
tb_log() { printf '[testbed %s] %s\n' "$(date +%T)" "$*" >&2; }
tb_die() { tb_log "error: $*"; exit 1; }
tb_lock() {  # serialise cache writers (several test sessions may share the cache)
    mkdir -p "$CACHE"
    exec 9> "$CACHE/.lock"
    flock -w 900 9 || tb_die "cache lock $CACHE/.lock held for 15 minutes"
}
