#!/bin/bash
# Download (not install) the cloud kernel image + -dbg packages of each release in $KVERS,
# extract the image package and only the DWARF vmlinux from the -dbg package (which is then
# deleted: it is up to 1 GB and only its vmlinux is used).
# With $KSUITES set (e.g. "trixie-backports"), packages come from a private apt state in
# $FIXTURES/apt-<suites> with only those suites; else from the host's apt.
# Newer Debian kernels split linux-image-KVER into linux-{base,binary,modules}-KVER, all under
# usr/lib/modules/KVER: those parts are fetched and extracted too, with boot/{vmlinuz,config}-KVER
# and lib/ symlinked to where the other scripts expect them.
# Usage: fetch-kernel.sh                 (KVERS="..." in the environment)
#        fetch-kernel.sh --resolve META  prints "<release> <package version>" of what the
#                                        meta-package META (e.g. linux-image-cloud-amd64) depends on
#        fetch-kernel.sh --version PKG   prints PKG's candidate version
# (adapted from /work/shared/testbed/10-fetch-kernels.sh)
set -euo pipefail
. "$(dirname "$0")/env.sh"
KSUITES="${KSUITES:-}"
mkdir -p "$PKGS" "$KROOT"
KA=()
private_apt() {  # set up (once) and update the private apt state for $KSUITES
    [ -n "$KSUITES" ] || return 0
    [ ${#KA[@]} -eq 0 ] || return 0
    local a="$FIXTURES/apt-${KSUITES// /+}" s url
    mkdir -p "$a/lists/partial" "$a/cache"
    : > "$a/sources.list"
    for s in $KSUITES; do
        case $s in *-security) url=http://deb.debian.org/debian-security ;; *) url=http://deb.debian.org/debian ;; esac
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $url $s main" >> "$a/sources.list"
    done
    KA=(-o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o APT::Sandbox::User=root)
    # update once an hour at most (several kernels share the state)
    if [ -z "$(find "$a/lists" -maxdepth 1 -name '*Packages*' -mmin -60 2>/dev/null | head -1)" ]; then
        apt-get "${KA[@]}" -qq update >&2
    fi
}
if [ "${1:-}" = --resolve ]; then   # release and version of what meta-package $2 depends on
    private_apt
    kv=$(apt-cache "${KA[@]}" depends "$2" 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(.*\)$/\1/p' | head -n1)
    [ -n "$kv" ] || { log "apt knows no $2${KSUITES:+ in $KSUITES}"; exit 1; }
    echo "$kv $(apt-cache "${KA[@]}" show --no-all-versions "linux-image-$kv" | sed -n 's/^Version: //p' | head -n1)"
    exit 0
fi
if [ "${1:-}" = --version ]; then
    private_apt
    apt-cache "${KA[@]}" show --no-all-versions "$2" | sed -n 's/^Version: //p' | head -n1
    exit 0
fi
fetch() {  # download package $1 into the current directory unless a .deb of it is already there
    ls "$1"_*.deb >/dev/null 2>&1 && return 0
    private_apt
    apt-get "${KA[@]}" -o APT::Sandbox::User=root -q download "$1" >&2
}
for kv in $KVERS; do
    cd "$PKGS"
    fetch "linux-image-$kv"
    [ -f "$KROOT/$kv/usr/lib/debug/boot/vmlinux-$kv" ] || fetch "linux-image-$kv-dbg"
    parts=$(dpkg-deb -f linux-image-"$kv"_*.deb Depends | tr ',|' '\n\n' | awk '{print $1}' |
            grep -xE "linux-(base|binary|modules)-$(printf '%s' "$kv" | sed 's/[.+]/\\&/g')" || true)
    for p in $parts; do fetch "$p"; done
    d="$KROOT/$kv"
    if [ ! -f "$d/boot/vmlinuz-$kv" ]; then
        mkdir -p "$d"
        for p in "linux-image-$kv" $parts; do dpkg -x "$PKGS/$p"_*.deb "$d"; done
        if [ -f "$d/usr/lib/modules/$kv/vmlinuz" ]; then   # split packages: all in usr/lib/modules/KVER
            mkdir -p "$d/boot"; [ -e "$d/lib" ] || ln -s usr/lib "$d/lib"
            for f in vmlinuz config; do ln -sf "../usr/lib/modules/$kv/$f" "$d/boot/$f-$kv"; done
        fi
    fi
    if [ ! -f "$d/usr/lib/debug/boot/vmlinux-$kv" ]; then   # newer -dbg: boot/vmlinux-KVER is a symlink
        dpkg-deb --fsys-tarfile "$PKGS"/linux-image-"$kv"-dbg_*.deb |
            tar -x -C "$d" --wildcards --no-wildcards-match-slash './usr/lib/debug/boot/vmlinux-*' \
                './usr/lib/debug/lib/modules/*/vmlinux' 2>/dev/null || true
        [ -e "$d/usr/lib/debug/boot/vmlinux-$kv" ] || { log "$kv: no vmlinux in the -dbg package"; exit 1; }
        rm -f "$PKGS"/linux-image-"$kv"-dbg_*.deb
    fi
    depmod -b "$d" "$kv"   # writes lib/modules/KVER/modules.dep inside the extracted tree
    log "$kv: $(ls -lL "$d/boot/vmlinuz-$kv" "$d/usr/lib/debug/boot/vmlinux-$kv" | awk '{print $5, $9}' | tr '\n' ' ')"
    echo "== $kv config"
    grep -E '^(# )?CONFIG_(KEXEC|KEXEC_FILE|CRASH_DUMP|PROC_VMCORE|VIRTIO_BLK|VIRTIO_PCI|DEBUG_INFO_BTF|UNWINDER_ORC|RANDOMIZE_BASE|KALLSYMS_ALL|PRINTK|MODULE_DECOMPRESS|VMCORE_INFO|CRASH_RESERVE|KEXEC_SIG|KEXEC_BZIMAGE_VERIFY_SIG|KEXEC_CORE)[ =]' \
        "$d/boot/config-$kv" | tee "$d/config-summary.txt"
done
