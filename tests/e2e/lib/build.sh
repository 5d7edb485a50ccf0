# tests/e2e/lib/build.sh — builds the pieces of the "software KVM host" (sourced
# by tests/e2e/run, bench/boot and scripts/demo; bash).
#
# The software KVM host is the stock Debian kernel booted under QEMU/TCG with
# -cpu max (which exposes AMD SVM, so kvm_amd loads inside it) and an initramfs
# built here. Inside it, hvmm boots the same kernel with a small guest
# initramfs. Everything is built under build/e2e/ and cached: an initramfs is
# named after the hash of its staged tree, so any changed input rebuilds it.
#
# Adding things later:
#   - defaults: edit the arrays below (HOST_MODULES, GUEST_MODULES, HOST_BINS,
#     GUEST_BINS);
#   - per scenario: a file scenarios/NAME/needs with lines such as
#       host-bin qemu-img        (a binary and its shared libraries)
#       host-module openvswitch  (a module and its dependencies; loaded at boot)
#       guest-bin /usr/sbin/ip
#       guest-module hv_sock     (staged only; guest.sh calls load_module)
#       host-qemu                (QEMU + firmware in the host)

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_OUT=${E2E_OUT:-$REPO_ROOT/build/e2e}
shopt -s inherit_errexit

# Modules for the outer host, loaded at boot in this order (with dependencies);
# virtio_pci, 9pnet_virtio and 9p bring the scenarios' logs back (see outer.sh).
HOST_MODULES=(kvm_amd tun bridge veth virtio_pci 9pnet_virtio 9p)
# Modules copied into the guest, not loaded: guest.sh runs `load_module NAME`.
GUEST_MODULES=(hv_vmbus hv_utils hv_storvsc hv_netvsc hv_balloon hv_sock
               hid_hyperv hyperv_keyboard)
# Extra binaries (with their libraries); missing ones are skipped.
HOST_BINS=(bash qemu-img)
GUEST_BINS=()

log() { echo "e2e: $*" >&2; }
die() { echo "e2e: error: $*" >&2; exit 1; }

# Sets KVER, KROOT (unpacked kernel package, depmod done) and VMLINUZ.
# E2E_KERNEL_DEB=/path/to/linux-image-*.deb skips the apt-get download.
e2e_kernel() {
    local deb=${E2E_KERNEL_DEB:-} key pkg ver dir
    if [[ -n $deb ]]; then
        key=$(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Version)
    else
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
              awk '/Depends: linux-image/{print $2; exit}')
        if [[ -z $pkg && $EUID == 0 && -z $(ls "$E2E_OUT/kernel" 2>/dev/null) ]]; then
            log "no apt lists: running apt-get update"
            apt-get update -q >/dev/null 2>&1 || true
            pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
                  awk '/Depends: linux-image/{print $2; exit}')
        fi
        ver=$([[ -n $pkg ]] && apt-cache show --no-all-versions "$pkg" 2>/dev/null |
              awk '/^Version:/{print $2; exit}')
        if [[ -n $pkg && -n $ver ]]; then
            key=${pkg}_$ver
        else  # no apt lists: reuse the newest kernel already unpacked
            key=$(ls -t "$E2E_OUT/kernel" 2>/dev/null | head -n1)
            [[ -n $key ]] || die "cannot resolve the kernel package; run apt-get update"
        fi
    fi
    dir=$E2E_OUT/kernel/$key
    if [[ ! -e $dir/done ]]; then
        log "fetching kernel $key"
        rm -rf "$dir" && mkdir -p "$dir/deb"
        if [[ -n $deb ]]; then cp "$deb" "$dir/deb/"
        else (cd "$dir/deb" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
            die "apt-get download $pkg failed"
        fi
        dpkg -x "$dir"/deb/*.deb "$dir/root"
        KVER=$(ls "$dir/root/lib/modules")
        depmod -b "$dir/root" "$KVER"
        rm -rf "$dir/deb" && touch "$dir/done"
    fi
    KROOT=$dir/root
    KVER=$(ls "$KROOT/lib/modules")
    VMLINUZ=$KROOT/boot/vmlinuz-$KVER
}

# new_stage: a fresh staging dir (one per build, so runs can overlap) holding
# an empty merged-/usr root with busybox and its applet links.
new_stage() {
    local r a
    mkdir -p "$E2E_OUT/stage"
    find "$E2E_OUT/stage" -mindepth 1 -maxdepth 1 -mmin +120 -exec rm -rf {} +  # leftovers
    r=$(mktemp -d "$E2E_OUT/stage/XXXXXX")
    chmod 755 "$r"
    mkdir -p "$r"/usr/{bin,sbin,lib,lib64} "$r"/{dev,proc,sys,tmp,run,etc/e2e/modules}
    ln -s usr/bin "$r/bin"; ln -s usr/sbin "$r/sbin"
    ln -s usr/lib "$r/lib"; ln -s usr/lib64 "$r/lib64"
    cp /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list); do  # no init: a broken /init must panic
        [[ $a == init || $a == linuxrc || -e $r/bin/$a ]] || ln -s busybox "$r/bin/$a"
    done
    install -m 755 "$E2E_DIR/lib/load_module" "$r/bin/load_module"
    echo "$r"
}

# stage_binary ROOT PROG [DEST]: copy PROG (a path or a name on PATH) to DEST
# (default: its own path) plus every shared library ldd lists.
stage_binary() {
    local r=$1 src=$2 dest=${3:-} lib
    src=$(command -v "$src") || { log "skipping missing binary $2"; return 0; }
    dest=${dest:-$src}
    mkdir -p "$r$(dirname "$dest")"
    rm -f "$r$dest" && cp -L "$src" "$r$dest"
    for lib in $(ldd "$src" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}'); do
        [[ -e $r$lib ]] && continue
        mkdir -p "$r$(dirname "$lib")" && cp -L "$lib" "$r$lib"
    done
}

# stage_modules ROOT MODULE...: copy each module and its dependencies
# (decompressed) and write /etc/e2e/modules/NAME.deps, the ordered list that
# load_module insmods.
stage_modules() {
    local r=$1 m kind path args rel out; shift
    local mdir=lib/modules/$KVER
    for m in "$@"; do
        out=$r/etc/e2e/modules/$m.deps
        modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" >"$out.raw" ||
            die "module $m not found in kernel $KVER"
        : >"$out"
        while read -r kind path args; do
            [[ $kind == insmod ]] || continue
            rel=${path#"$KROOT/$mdir/"}
            rel=${rel%.xz}; rel=${rel%.zst}; rel=${rel%.gz}
            if [[ ! -e $r/$mdir/$rel ]]; then
                mkdir -p "$(dirname "$r/$mdir/$rel")"
                case $path in
                    *.xz) xz -dc "$path" >"$r/$mdir/$rel" ;;
                    *.zst) zstd -qdc "$path" >"$r/$mdir/$rel" ;;
                    *.gz) gzip -dc "$path" >"$r/$mdir/$rel" ;;
                    *) cp "$path" "$r/$mdir/$rel" ;;
                esac
            fi
            echo "$rel $args" >>"$out"
        done <"$out.raw"
        rm -f "$out.raw"
    done
    # modules.dep etc. too, so that busybox modprobe works as well.
    cp "$KROOT/$mdir"/modules.{order,builtin,builtin.modinfo} "$r/$mdir/" 2>/dev/null || true
    depmod -b "$r" "$KVER" 2>/dev/null || true
}

# stage_qemu ROOT: QEMU for x86-64 with the firmware that -kernel boots need.
stage_qemu() {
    local r=$1 f
    stage_binary "$r" qemu-system-x86_64
    mkdir -p "$r/usr/share/qemu" "$r/usr/share/seabios"
    for f in /usr/share/qemu/*.bin /usr/share/seabios/*.bin; do
        cp -L "$f" "$r$f" 2>/dev/null || true
    done
}

# needs_lines KIND DIR...: the arguments of KIND lines in the dirs' needs files.
needs_lines() {
    local kind=$1 d; shift
    for d in "$@"; do
        [[ -f $d/needs ]] && awk -v k="$kind" '$1 == k {print $2}' "$d/needs"
    done
    return 0
}

# needs_has KIND DIR...: true if some needs file has a KIND line.
needs_has() {
    local kind=$1 d; shift
    for d in "$@"; do
        [[ -f $d/needs ]] && awk -v k="$kind" '$1 == k {f=1} END {exit !f}' "$d/needs" && return 0
    done
    return 1
}

# pack ROOT NAME: write build/e2e/NAME-HASH.cpio (newc, uncompressed: faster
# to unpack under TCG than to decompress) unless it exists; print its path.
pack() {
    local r=$1 name=$2 hash out
    hash=$(cd "$r" && { find . -printf '%p %y %m %l\n' | LC_ALL=C sort
                         find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
                       } | sha256sum | cut -c1-16)
    out=$E2E_OUT/$name-$hash.cpio
    if [[ ! -e $out ]]; then
        log "packing $out"
        rm -f "$E2E_OUT/$name"-????????????????.cpio
        (cd "$r" && find . -mindepth 1 | LC_ALL=C sort |
            cpio -o -H newc --owner=0:0 --quiet) >"$out.tmp"
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

# scenario_name SPEC: SPEC is DIR or NAME=DIR.
scenario_name() { if [[ $1 == *=* ]]; then echo "${1%%=*}"; else basename "$1"; fi; }
scenario_dir() { echo "${1#*=}"; }

# build_guest_initrd SCENARIO_SPEC...: prints the guest initramfs path.
build_guest_initrd() {
    local r s dirs=() b
    r=$(new_stage)
    install -m 755 "$E2E_DIR/lib/guest-init" "$r/init"
    mkdir -p "$r/lib/e2e" "$r/scenarios"
    cp "$E2E_DIR/lib/guest.sh" "$r/lib/e2e/guest.sh"
    for s in "$@"; do
        dirs+=("$(scenario_dir "$s")")
        cp -r "$(scenario_dir "$s")" "$r/scenarios/$(scenario_name "$s")"
    done
    stage_modules "$r" "${GUEST_MODULES[@]}" $(needs_lines guest-module "${dirs[@]}")
    for b in "${GUEST_BINS[@]}" $(needs_lines guest-bin "${dirs[@]}"); do
        stage_binary "$r" "$b"
    done
    pack "$r" guest
    rm -rf "$r"
}

# build_outer_initrd GUEST_INITRD SCENARIO_SPEC...: prints the host initramfs.
# E2E_QEMU=1 adds QEMU and its firmware; E2E_STANDIN=qemu installs the QEMU
# stand-in (lib/qemu-hvmm) as /usr/local/bin/hvmm instead of $HVMM.
build_outer_initrd() {
    local guest=$1 r s dirs=() b hvmm; shift
    r=$(new_stage)
    install -m 755 "$E2E_DIR/lib/outer-init" "$r/init"
    mkdir -p "$r/e2e/lib" "$r/e2e/scenarios" "$r/e2e/guest" "$r/usr/local/bin"
    cp "$E2E_DIR/lib/host.sh" "$r/e2e/lib/host.sh"
    cp "$VMLINUZ" "$r/e2e/guest/vmlinuz"
    cp "$guest" "$r/e2e/guest/initrd.cpio"
    for s in "$@"; do
        dirs+=("$(scenario_dir "$s")")
        cp -r "$(scenario_dir "$s")" "$r/e2e/scenarios/$(scenario_name "$s")"
    done
    local mods=("${HOST_MODULES[@]}" $(needs_lines host-module "${dirs[@]}"))
    stage_modules "$r" "${mods[@]}"
    printf '%s\n' "${mods[@]}" >"$r/etc/e2e/boot-modules"
    for b in "${HOST_BINS[@]}" $(needs_lines host-bin "${dirs[@]}"); do
        stage_binary "$r" "$b"
    done
    local name=outer
    if [[ ${E2E_QEMU:-0} == 1 || ${E2E_STANDIN:-} == qemu ]] || needs_has host-qemu "${dirs[@]}"; then
        stage_qemu "$r"
        name=outer-qemu
    fi
    if [[ ${E2E_STANDIN:-} == qemu ]]; then
        install -m 755 "$E2E_DIR/lib/qemu-hvmm" "$r/usr/local/bin/hvmm"
    else
        hvmm=${HVMM:-$REPO_ROOT/build/hvmm}
        if [[ -x $hvmm ]]; then stage_binary "$r" "$(realpath "$hvmm")" /usr/local/bin/hvmm
        else log "warning: $hvmm not built; scenarios will fail"; fi
    fi
    [[ -x $REPO_ROOT/build/hvctl ]] &&
        stage_binary "$r" "$REPO_ROOT/build/hvctl" /usr/local/bin/hvctl
    pack "$r" "$name"
    rm -rf "$r"
}
