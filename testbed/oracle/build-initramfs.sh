#!/bin/bash
# Build, for each kernel in $KVERS, two gzip'd cpio initramfs images under $FIXTURES/build/<kver>/:
# (adapted from /work/shared/testbed/20-build-initramfs.sh)
#   capture.img : busybox + kexec + makedumpfile (+ their shared libraries) + virtio modules + init.sh
#                 (+ /usr/bin/makedumpfile-new: a newer makedumpfile with its own glibc under /opt/mdf,
#                  scripts/fetch-oracles.sh unpacks sid's 1.7.8 into $FIXTURES/tools-sid)
#   first.img   : capture.img's contents + /boot/vmlinuz + /boot/capture.img (for kexec -p)
set -euo pipefail
. "$(dirname "$0")/env.sh"

# Modules loaded by each kernel (dependencies are added from modules.dep); ":"-separated insmod args;
# "a|b": the first of these names that the kernel has (before 5.12 pvpanic-mmio was pvpanic).
CAPTURE_MODS="virtio_pci virtio_blk"
FIRST_MODS="$CAPTURE_MODS qemu_fw_cfg pvpanic-mmio|pvpanic brd:rd_nr=1:rd_size=4096 dummy"

copy_bin() {  # copy a host executable and the shared libraries it needs (ldd)
    local root=$1 bin=$2 dest=${3:-$2}
    install -D -m755 "$bin" "$root$dest"
    ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
        [ -e "$root$lib" ] || install -D -m755 "$(readlink -f "$lib")" "$root$lib"
    done
}

modpaths() {  # print the module files (relative to lib/modules/KVER) to load for module $1, deps first
    local dep=$KROOT/$kv/lib/modules/$kv/modules.dep line
    line=$(grep -E "(^|/)$1\.ko(\.xz|\.zst)?:" "$dep") || return 0   # not a module: built in
    set -- ${line/:/}
    local self=$1; shift
    local deps=("$@") i
    for ((i=${#deps[@]}-1; i>=0; i--)); do echo "${deps[i]}"; done   # same order as modprobe
    echo "$self"
}

modlist() {  # write "relative/path.ko args" lines for modules $3.. into file $2, copying the .ko files to root $1
    local root=$1 out=$2; shift 2
    local mdir="$KROOT/$kv/lib/modules/$kv" spec name args rel
    : > "$out"
    for spec in "$@"; do
        name=${spec%%:*}; args=$(echo "${spec#"$name"}" | tr ':' ' ')
        local alt found=
        for alt in ${name//|/ }; do
            grep -qE "(^|/)$alt\.ko" "$mdir/modules.dep" "$mdir/modules.builtin" && { found=$alt; break; }
        done
        [ -n "$found" ] || { echo "module $name not found for $kv" >&2; exit 1; }
        name=$found
        local paths last; paths=$(modpaths "$name"); last=${paths##*$'\n'}
        for rel in $paths; do
            local plain=${rel%.xz}; plain=${plain%.zst}
            awk -v p="$plain" '$1 == p {f = 1} END {exit !f}' "$out" && continue   # already listed
            mkdir -p "$root/lib/modules/$kv/$(dirname "$rel")"
            case $rel in  # busybox insmod wants an uncompressed module
                *.xz)  xz -dc "$mdir/$rel" > "$root/lib/modules/$kv/$plain" ;;
                *.zst) zstd -qdc "$mdir/$rel" > "$root/lib/modules/$kv/$plain" ;;
                *)     cp "$mdir/$rel" "$root/lib/modules/$kv/$rel" ;;
            esac
            if [ "$rel" = "$last" ]; then echo "$plain$args"; else echo "$plain"; fi >> "$out"
        done
    done
}

add_new_mdf() {  # newer makedumpfile + its own loader and libraries under /opt/mdf
    local root=$1 t="$FIXTURES/tools-${MDF_SUITE:-sid}" ld=usr/lib64/ld-linux-x86-64.so.2 lib
    [ -x "$t/usr/bin/makedumpfile" ] || return 0
    install -D -m755 "$t/usr/bin/makedumpfile" "$root/opt/mdf/makedumpfile"
    install -D -m755 "$t/$ld" "$root/opt/mdf/ld.so"
    "$t/$ld" --library-path "$t/usr/lib/x86_64-linux-gnu" --list "$t/usr/bin/makedumpfile" |
        awk '$2 == "=>" && $1 !~ /ld-linux/ {print $3}' | while read -r lib; do
            install -m755 "$(readlink -f "$lib")" "$root/opt/mdf/$(basename "$lib")"
        done
    printf '#!/bin/sh\nexec /opt/mdf/ld.so --library-path /opt/mdf /opt/mdf/makedumpfile "$@"\n' \
        > "$root/usr/bin/makedumpfile-new"
    chmod 755 "$root/usr/bin/makedumpfile-new"
}

mkcpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 > "$2"; }

for kv in $KVERS; do
    b="$FIXTURES/build/$kv"; rm -rf "$b"; mkdir -p "$b"
    r="$b/root"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,boot}
    mknod -m600 "$r/dev/console" c 5 1
    install -m755 /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
    copy_bin "$r" "$(command -v kexec)" /usr/sbin/kexec
    copy_bin "$r" "$(command -v makedumpfile)" /usr/bin/makedumpfile
    copy_bin "$r" /usr/bin/sleep /usr/bin/testbed_sleeper   # distinctive comm in the dump
    add_new_mdf "$r"
    install -m755 "$HERE/init.sh" "$r/init"
    modlist "$r" "$r/etc/modules-capture.txt" $CAPTURE_MODS
    modlist "$r" "$r/etc/modules-first.txt" $FIRST_MODS
    mkcpio "$r" "$b/capture.img"
    cp "$KROOT/$kv/boot/vmlinuz-$kv" "$r/boot/vmlinuz"
    cp "$b/capture.img" "$r/boot/capture.img"
    mkcpio "$r" "$b/first.img"
    rm -rf "$r"
    ln -sf "../../kernels/$kv/boot/vmlinuz-$kv" "$b/vmlinuz"
    log "$kv: $(ls -l "$b"/*.img | awk '{printf "%s=%s ", $9, $5}')"
done
