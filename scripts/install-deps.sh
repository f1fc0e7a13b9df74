#!/usr/bin/env bash
# Install what kdumpkit and its tests need on a Debian/Ubuntu host:
# Debian packages (the reference tools used as test oracles, QEMU for the testbed)
# and a virtualenv in .venv with kdumpkit installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(makedumpfile crash kexec-tools qemu-system-x86 busybox-static kmod cpio zstd
              liblzo2-dev file e2fsprogs dosfstools xz-utils
              mmdebstrap qemu-utils fdisk
              redis-server postgresql chromium chromium-driver
              qemu-system-arm qemu-user-static binutils)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch "$stamp"
fi
# Byte-compile the package as an installed one is: with PYTHONDONTWRITEBYTECODE set (as
# here and in the testbed's guests) every `kdumpkit` run would otherwise compile its
# modules again, ~40 ms of a capture's start-up.
.venv/bin/python -m compileall -q kdumpkit >/dev/null
