#!/bin/bash
# Usage: fetch-kernel.sh SERIES      (SERIES: 6.1, 6.12, or a full release like 6.1.0-56-amd64)
# Download (apt-get download, never twice) and unpack (dpkg -x) Debian's kernel image package
# for SERIES into .cache/testbed/kernels/<release>/, run depmod there, and print <release>.
# The release is what Debian's meta-package for the series depends on now
# (linux-image-amd64 for 6.1, linux-image-6.12-amd64 for 6.12). If apt can't resolve it
# (no mirror), the newest release of that series already in the cache is used.
# 5.10 (Debian 11) comes from bullseye-security through a private apt state in
# .cache/testbed/apt-bullseye (the host's apt setup is not touched), as
# scripts/fetch-oracles.sh gets sid's tools.
set -euo pipefail
. "$(dirname "$0")/common.sh"
series=${1:?usage: fetch-kernel.sh SERIES}
APT=()
case $series in
    5.10|5.10.*)
        state="$CACHE/apt-bullseye"
        APT=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/nonexistent
             -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache")
        if [ ! -e "$state/.updated" ]; then
            mkdir -p "$state/lists/partial" "$state/cache"
            key=/usr/share/keyrings/debian-archive-keyring.gpg
            printf 'deb [signed-by=%s] http://deb.debian.org/debian%s main\n' \
                "$key" "-security bullseye-security" "$key" " bullseye" > "$state/sources.list"
            apt-get "${APT[@]}" -o APT::Sandbox::User=root -qq update >&2 && touch "$state/.updated" || true
        fi ;;
esac

meta_target() {  # the linux-image-<release> package a meta-package depends on
    apt-cache "${APT[@]}" depends "$1" 2>/dev/null |
        sed -n "s/^ *Depends: linux-image-\(.*-$FLAVOUR\)\$/\1/p" | head -n1 || true
}
newest_known() {  # newest linux-image-<series>.*-<flavour> package name apt knows, as a release
    apt-cache "${APT[@]}" pkgnames "linux-image-$series" 2>/dev/null |
        grep -E "^linux-image-${series//./\\.}[.-][0-9.+a-z-]*[0-9]-$FLAVOUR\$" |
        grep -v -- '-unsigned$' | sed 's/^linux-image-//' | sort -V | tail -n1 || true
}
resolve_release() {
    local kv
    case $series in
        *-"$FLAVOUR") echo "$series"; return ;;
        6.1) kv=$(meta_target "linux-image-$FLAVOUR" | grep '^6\.1\.' || true) ;;
        5.10) kv=$(meta_target "linux-image-$FLAVOUR" | grep '^5\.10\.' || true) ;;
        *) kv=$(meta_target "linux-image-$series-$FLAVOUR") ;;
    esac
    [ -n "$kv" ] || kv=$(newest_known)   # e.g. a host whose default kernel is another series
    echo "$kv"
}
cached_release() {  # newest unpacked release of the series
    ls -1 "$KERNELS" 2>/dev/null | grep -E "^${series//./\\.}[.-].*[0-9]-$FLAVOUR\$" | sort -V | tail -n1 || true
}

tb_lock
kv=$(resolve_release)
if [ -z "$kv" ] && [ "$(id -u)" = 0 ] && [ ! -e "$CACHE/.apt-updated" ]; then
    tb_log "apt knows no $series kernel: apt-get update (once)"
    apt-get update -qq >&2 && touch "$CACHE/.apt-updated" && kv=$(resolve_release)
fi
if [ -z "$kv" ]; then
    kv=$(cached_release)
    [ -n "$kv" ] || tb_die "apt knows no Debian $series $FLAVOUR kernel and none is cached"
    tb_log "apt can't resolve $series; using cached $kv"
fi
tree="$KERNELS/$kv"
if [ ! -f "$tree/boot/vmlinuz-$kv" ]; then
    mkdir -p "$DEBS" "$KERNELS"
    pkg="linux-image-$kv"
    if ! ls "$DEBS/${pkg}"_*.deb >/dev/null 2>&1; then
        tb_log "downloading $pkg"
        (cd "$DEBS" && apt-get "${APT[@]}" download -q -o APT::Sandbox::User=root "$pkg" >&2) || tb_die "apt-get download $pkg failed"
    fi
    tb_log "unpacking $pkg"
    rm -rf "$tree.part"; mkdir -p "$tree.part"
    dpkg -x "$DEBS/${pkg}"_*.deb "$tree.part"
    # Newer packages keep everything in usr/lib/modules/<kv>; give both the classic layout.
    if [ -f "$tree.part/usr/lib/modules/$kv/vmlinuz" ] && [ ! -e "$tree.part/boot/vmlinuz-$kv" ]; then
        mkdir -p "$tree.part/boot"
        ln -s "../usr/lib/modules/$kv/vmlinuz" "$tree.part/boot/vmlinuz-$kv"
    fi
    [ -e "$tree.part/lib" ] || ln -s usr/lib "$tree.part/lib"
    depmod -b "$tree.part" "$kv"
    mv "$tree.part" "$tree"
fi
echo "$kv"
