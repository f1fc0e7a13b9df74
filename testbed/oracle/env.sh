# Settings shared by the oracle-input scripts (sourced). testbed/build.py runs them; every
# one can be overridden from the environment.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(cd "$HERE/../.." && pwd)"
# Large outputs, where the tests read them: $KDUMPKIT_CACHE/oracle (default .cache/oracle).
FIXTURES="${FIXTURES:-${KDUMPKIT_CACHE:-$PROJECT/.cache}/oracle}"
FIXTURES="$(mkdir -p "$FIXTURES" && cd "$FIXTURES" && pwd)"
PKGS="$FIXTURES/pkgs"          # downloaded .deb files
KROOT="$FIXTURES/kernels"      # one extracted tree per kernel release
KVERS="${KVERS:-}"             # kernel releases (testbed/build.py sets them)
QEMU="${QEMU:-qemu-system-x86_64}"
GUEST_MEM="${GUEST_MEM:-1024}"       # MiB
GUEST_CPUS="${GUEST_CPUS:-2}"
CRASHKERNEL="${CRASHKERNEL:-256M}"
BOOT_TIMEOUT="${BOOT_TIMEOUT:-900}"  # seconds for a whole VM run (TCG is slow)
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
