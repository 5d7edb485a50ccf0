# storage: a stock Linux guest uses hvmm's synthetic SCSI disks through
# hv_storvsc. One VM with 2 vCPUs (so the controller gets a sub-channel) has a
# dynamic VHDX (LUN 0), a raw file (LUN 3), a read-only dynamic VHD (LUN 5)
# and a fixed VHDX on a second controller (LUN 2): sizes, ext4 on both
# writable disks at once, checksums after a remount, writes to the read-only
# disk refused, fstrim punching holes in the raw file. A second VM finds the
# VHDX's files intact, and hvctl vhd check and qemu-img check find the images
# clean.
. "$E2E_LIB/host.sh"

HVCTL=${HVCTL:-$(dirname "$HVMM")/hvctl}
D=/tmp/storage
rm -rf "$D"; mkdir -p "$D"

# STORAGE_DEBUG=1 (set it here): kernel messages and hvmm --verbose in the logs.
run_phase() { # PHASE LOG DISK-ARGS...
    local phase=$1 log=$2; shift 2
    boot_guest "$log" 240 --memory 512M --cmdline "$(guest_cmdline storage.phase="$phase" ${STORAGE_DEBUG:+storage.debug})" ${STORAGE_DEBUG:+--verbose} "$@"
}

basic_vm() {
    local name=storage-basic log=$LOGDIR/basic.log errs= st v want_ro kib ro_size ro_sum
    "$HVCTL" vhd new "$D/a.vhdx" --size 1G >/dev/null || errs+="vhd new a.vhdx failed; "
    truncate -s 256M "$D/b.raw"
    "$HVCTL" vhd new "$D/c1.vhdx" --size 32M --fixed >/dev/null || errs+="vhd new c1.vhdx failed; "
    # The read-only disk holds a known pattern: made raw, converted to VHD.
    yes hvmm-ro | head -c $((64 << 20)) >"$D/ro.raw"
    want_ro=$(head -c 1048576 "$D/ro.raw" | sha256sum | cut -d' ' -f1)
    "$HVCTL" vhd convert "$D/ro.raw" "$D/ro.vhd" >/dev/null || errs+="convert to ro.vhd failed; "
    # A VHD's size is rounded up to whole CHS cylinders, as qemu-img does.
    ro_size=$("$HVCTL" vhd info "$D/ro.vhd" --json | sed -n 's/.*"virtual_size": \([0-9]*\).*/\1/p')
    ro_sum=$(sha256sum <"$D/ro.vhd")
    run_phase basic "$log" --cpus 2 --disk "$D/a.vhdx" --disk "$D/b.raw,lun=3" \
        --disk "$D/ro.vhd,ro,lun=5" --disk "$D/c1.vhdx,controller=1,lun=2" && st=0 || st=$?
    ((st == 0)) || errs+="$(exit_note "$st" "$log"); "
    note_stalls "$name" "$log"
    if ! expect_in "$log" '##e2e## done=yes'; then
        # What the guest would have reported is missing: say only that.
        verdict "$name" "${errs}the guest did not finish; "
        return
    fi
    ! expect_in "$log" '##e2e## (missing_lun|mkfs|mount|remount|big_write|error)=' ||
        errs+="$(grep -E '##e2e## (missing_lun|mkfs|mount|remount|big_write|error)=' "$log" | tr -d '\r' | tr '\n' ' '); "
    [[ $(guest_value "$log" size_lun0) == 1073741824 ]] || errs+="LUN 0 size $(guest_value "$log" size_lun0); "
    [[ $(guest_value "$log" size_lun3) == 268435456 ]] || errs+="LUN 3 size $(guest_value "$log" size_lun3); "
    [[ $(guest_value "$log" size_lun2) == 33554432 ]] || errs+="LUN 2 size $(guest_value "$log" size_lun2); "
    [[ $(guest_value "$log" two_hosts) == yes ]] || errs+="controller 1: $(guest_value "$log" two_hosts); "
    # 2 vCPUs: hv_storvsc asks for one sub-channel (one channel per vCPU).
    [[ $(guest_value "$log" channels) == 2 ]] || errs+="controller 0 has $(guest_value "$log" channels) channels, want 2; "
    [[ $(guest_value "$log" size_lun5) == "$ro_size" ]] || errs+="LUN 5 size $(guest_value "$log" size_lun5); "
    [[ $(guest_value "$log" ro_flag) == 1 ]] || errs+="the guest sees LUN 5 writable; "
    [[ $(guest_value "$log" ro_sha) == "$want_ro" ]] || errs+="LUN 5 reads wrong data; "
    [[ $(guest_value "$log" ro_write) == refused ]] || errs+="a write to the read-only disk was $(guest_value "$log" ro_write); "
    [[ $(sha256sum <"$D/ro.vhd") == "$ro_sum" ]] || errs+="the read-only VHD changed; "
    [[ $(guest_value "$log" readback) == ok,ok ]] || errs+="checksums after remount: $(guest_value "$log" readback); "
    v=$(guest_value "$log" fstrim)
    say "$name: fstrim: $v"
    # 96 MiB were written to b.raw and deleted: after fstrim little is left.
    kib=$(du -k "$D/b.raw" | cut -f1)
    say "$name: b.raw holds $kib KiB after fstrim"
    ((kib < 40 * 1024)) || errs+="fstrim left $kib KiB allocated in b.raw; "
    "$HVCTL" vhd check "$D/a.vhdx" >/dev/null 2>&1 || errs+="hvctl vhd check a.vhdx: $?; "
    qemu-img check -f vhdx "$D/a.vhdx" >/dev/null 2>&1 || errs+="qemu-img check a.vhdx: $?; "
    SUMS=$(guest_value "$log" sums)
    verdict "$name" "$errs"
}

restart_vm() {
    local name=storage-restart log=$LOGDIR/verify.log errs= st
    [[ -n $SUMS ]] || { fail "$name" "the first VM wrote no files to check"; return; }
    run_phase verify "$log" --disk "$D/a.vhdx" && st=0 || st=$?
    ((st == 0)) || errs+="$(exit_note "$st" "$log"); "
    note_stalls "$name" "$log"
    [[ $(guest_value "$log" sums) == "$SUMS" ]] || errs+="SUMS file differs after restart; "
    [[ $(guest_value "$log" persist) == ok ]] || errs+="files differ after restart: $(guest_value "$log" persist); "
    verdict "$name" "$errs"
}

bad_disks() {
    local name=storage-bad-args errs= st out
    # A missing image, a LUN used twice and a corrupt VHDX: exit 2 with one line.
    for args in "--disk $D/nope.vhdx" "--disk $D/b.raw,lun=1 --disk $D/ro.vhd,lun=1" \
                "--disk $D/corrupt.vhdx,format=vhdx" "--disk $D/b.raw,format=qcow2"; do
        head -c 1M /dev/urandom >"$D/corrupt.vhdx"
        # shellcheck disable=SC2086
        out=$("$HVMM" run --kernel "$GUEST_KERNEL" $args 2>&1 </dev/null) && st=0 || st=$?
        ((st == 2)) || errs+="'$args' exited $st, want 2; "
        (($(wc -l <<<"$out") == 1)) || errs+="'$args' printed: $out; "
    done
    verdict "$name" "$errs"
}

SUMS=
bad_disks
basic_vm
restart_vm
