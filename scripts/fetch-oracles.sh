#!/usr/bin/env bash
# The reference tools the tests compare kdumpkit against, cached under .cache/oracle
# (nothing is installed on the host):
#   tools-sid/   Debian sid's makedumpfile 1.7.8 and crash 9.0.2 with their own libraries:
#                Debian 12's makedumpfile 1.7.2 and crash 8.0.2 are too old for these kernels
#   kernels/<release>/usr/lib/debug/boot/vmlinux-<release>
#                the DWARF vmlinux of the real fixture's kernel, from its -dbg package,
#                for crash and for the BTF-versus-DWARF parity tests; also Debian 11's
#                5.10.0-43-amd64 (the testbed's pre-6.0 kernel; bullseye-security)
# Only Debian's repositories are used. What cannot be fetched is reported and left out:
# the tests that need it then skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
oracle="${KDUMPKIT_CACHE:-$PWD/.cache}/oracle"
release="${KDUMPKIT_ORACLE_KERNEL:-6.1.0-56-cloud-amd64}"
mkdir -p "$oracle"

fetch_sid_tools() {
    local state="$oracle/apt-sid" root="$oracle/tools-sid"
    [ -x "$root/usr/bin/crash" ] && [ -x "$root/usr/bin/makedumpfile" ] && return 0
    mkdir -p "$state/lists/partial" "$state/cache" "$state/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
        > "$state/sources.list"
    local apt=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/nonexistent
               -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
               -o APT::Sandbox::User=root -qq)
    apt-get "${apt[@]}" update || return 1
    # crash and makedumpfile, and the libraries they link, so that they run with sid's loader
    local pkgs=(crash makedumpfile libc6 libgcc-s1 libstdc++6 libncursesw6 libtinfo6 libsnappy1v5
                liblzo2-2 libzstd1 zlib1g libgmp10 libmpfr6 libdw1t64 libelf1t64 libbz2-1.0 liblzma5)
    (cd "$state/debs" && for p in "${pkgs[@]}"; do
        ls "${p}"_*.deb >/dev/null 2>&1 || apt-get "${apt[@]}" download "$p/sid" || exit 1
    done) || return 1
    rm -rf "$root.tmp" && mkdir -p "$root.tmp"
    for deb in "$state"/debs/*.deb; do dpkg-deb -x "$deb" "$root.tmp" || return 1; done
    rm -rf "$root" && mv "$root.tmp" "$root"
}

bullseye_apt() {  # Debian 11's kernels (5.10) are in bullseye-security: a private apt state
    local state="$oracle/apt-bullseye" key=/usr/share/keyrings/debian-archive-keyring.gpg
    mkdir -p "$state/lists/partial" "$state/cache"
    printf 'deb [signed-by=%s] http://deb.debian.org/debian%s main\n' \
        "$key" "-security bullseye-security" "$key" " bullseye" > "$state/sources.list"
    BULLSEYE=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/nonexistent
              -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache")
    [ -e "$state/lists/.updated" ] || { apt-get "${BULLSEYE[@]}" -qq -o APT::Sandbox::User=root update \
        && touch "$state/lists/.updated"; }
}

fetch_vmlinux() {  # fetch_vmlinux RELEASE
    local release=$1
    local dest="$oracle/kernels/$release" file="usr/lib/debug/boot/vmlinux-$release"
    [ -s "$dest/$file" ] && return 0
    local debs="$oracle/pkgs" apt=()
    mkdir -p "$debs" "$dest"
    case $release in 5.10.*) bullseye_apt || return 1; apt=("${BULLSEYE[@]}") ;; esac
    (cd "$debs" && { ls "linux-image-$release-dbg"_*.deb >/dev/null 2>&1 \
        || apt-get "${apt[@]}" -qq -o APT::Sandbox::User=root download "linux-image-$release-dbg"; }) || return 1
    # Only the vmlinux: the whole package unpacks to 1.7 GB of module debug info.
    dpkg-deb --fsys-tarfile "$debs/linux-image-$release-dbg"_*.deb \
        | tar -x -C "$dest" "./$file" || return 1
    rm -f "$debs/linux-image-$release-dbg"_*.deb
}

fetch_sid_tools || echo "fetch-oracles: sid's crash and makedumpfile could not be fetched; the tests that need them will skip"
for kernel in "$release" ${KDUMPKIT_ORACLE_EXTRA_KERNELS-5.10.0-43-amd64}; do
    fetch_vmlinux "$kernel" || echo "fetch-oracles: the -dbg vmlinux of $kernel could not be fetched; the tests that need it will skip"
done
exit 0
