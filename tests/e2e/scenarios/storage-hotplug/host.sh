# storage-hotplug: disks change while the guest runs, through the API.
# `hvctl disk add` puts a VHDX at LUN 1 (the guest sees its size and reads back
# what it wrote), `hvctl disk remove 1` takes it away (the guest's sdX goes),
# `hvctl disk resize 0` grows LUN 0 from 1 GiB to 2 GiB (the guest sees the
# new size without a reboot, old data intact, the new end usable). Refusals:
# a taken LUN (409), an image already in use (400), an unknown LUN (404), a
# shrink (400). The images live on XFS, which takes buffered writes without
# waiting (RWF_NOWAIT): the guest's 4 KiB writes over data LUN 0 already
# holds are done on hvmm's event loop, not all on workers (the disk list's
# cached_writes; XFS refuses such a write when the file's modification time
# must change, once per clock tick, so not every one), and those XFS refuses
# go behind (write_behind: done at once, written by a worker).
. "$E2E_LIB/host.sh"

HVCTL=${HVCTL:-$(dirname "$HVMM")/hvctl}
D=/tmp/storage-hotplug
umount "$D" 2>/dev/null; rm -rf "$D"; mkdir -p "$D"
truncate -s 3G /tmp/storage-hotplug.xfs && mkfs.xfs -q -f /tmp/storage-hotplug.xfs &&
    mount -o loop /tmp/storage-hotplug.xfs "$D" || { verdict storage-hotplug "cannot make the XFS file system"; exit 0; }
name=storage-hotplug log=$LOGDIR/hotplug.log sock=$D/api.sock errs= st= out=

api() { "$HVCTL" --api "$sock" "$@"; }
# The steps' waits (240+90+90+60+90 s, and 60 s for hvmm to exit) add up to
# less than ./timeout, so a guest that stalls is reported by the step it
# stalled in, with its last lines, not by a bare timeout.
step() { # REGEX TIMEOUT: wait for the guest, or give up on the rest
    wait_for "$log" "$1" "$2" && return 0
    errs+="the guest never reported /$1/: $(tail -n 2 "$log" | tr -d '\r' | tr '\n' ' '); "
    return 1
}

"$HVCTL" vhd new "$D/a.vhdx" --size 1G >/dev/null || errs+="vhd new a.vhdx failed; "
"$HVCTL" vhd new "$D/b.vhdx" --size 256M >/dev/null || errs+="vhd new b.vhdx failed; "
start_guest "$log" --memory 512M --api "$sock" --disk "$D/a.vhdx"
if step '##e2e## ready=yes' 240; then
    out=$(api disk add "$D/b.vhdx,lun=1" 2>&1) || errs+="disk add: $out; "
    grep -q '"lun": 1' <<<"$out" || errs+="disk add answered: $out; "
    out=$(api disk add "$D/b.vhdx,lun=1" 2>&1) && errs+="a second disk on LUN 1 was accepted; "
    grep -q 409 <<<"$out" || errs+="LUN taken: $out; "
    # The same image twice: refused (it is locked), given as a relative path
    # (hvctl sends where it is).
    out=$(cd "$D" && api disk add "b.vhdx,lun=2" 2>&1) && errs+="b.vhdx was attached twice; "
    grep -q "400.*$D/b.vhdx" <<<"$out" || errs+="image in use: $out; "
    out=$(api disk list 2>&1)
    grep -q "\"path\": \"$D/b.vhdx\"" <<<"$out" || errs+="disk list lacks b.vhdx: $out; "
fi
if step '##e2e## hotadd_io=' 90; then
    [[ $(guest_value "$log" hotadd_size) == 268435456 ]] || errs+="hot-added size $(guest_value "$log" hotadd_size); "
    [[ $(guest_value "$log" hotadd_io) == ok ]] || errs+="I/O on the hot-added disk: $(guest_value "$log" hotadd_io); "
    out=$(api disk remove 7 2>&1) && errs+="removing an empty LUN succeeded; "
    grep -q 404 <<<"$out" || errs+="empty LUN: $out; "
    out=$(api disk remove 1 2>&1) || errs+="disk remove: $out; "
fi
if step '##e2e## hotremove=' 90; then
    [[ $(guest_value "$log" hotremove) == gone ]] || errs+="the removed disk is $(guest_value "$log" hotremove); "
    api disk list | grep -q b.vhdx && errs+="disk list still shows b.vhdx; "
fi
if step '##e2e## written=yes' 60; then
    out=$(api disk list 2>&1)
    n=$(sed -n 's/.*"cached_writes": \([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
    w=$(sed -n 's/.*"write_behind": \([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
    say "$name: of LUN 0's writes, ${n:-?} on the event loop, ${w:-?} behind"
    [[ $n =~ ^[0-9]+$ ]] && ((n > 0)) || errs+="no write to LUN 0 was done on the event loop: $out; "
    [[ $w =~ ^[0-9]+$ ]] && ((w > 0)) || errs+="no write to LUN 0 went behind: $out; "
    out=$(api disk resize 0 --size 512M 2>&1) && errs+="a shrink was accepted; "
    grep -q 400 <<<"$out" || errs+="shrink: $out; "
    out=$(api disk resize 0 --size 2G 2>&1) || errs+="disk resize: $out; "
fi
if step '##e2e## resized_io=' 90; then
    [[ $(guest_value "$log" resized) == 2147483648 ]] || errs+="the guest sees $(guest_value "$log" resized) bytes after the resize; "
    [[ $(guest_value "$log" resized_io) == yes ]] || errs+="I/O after the resize: $(guest_value "$log" resized_io); "
fi
wait_pid "$HVMM_PID" 60 && st=0 || st=$?
((st == 0)) || errs+="$(exit_note "$st" "$log"); "
note_stalls "$name" "$log"
"$HVCTL" vhd check "$D/a.vhdx" >/dev/null 2>&1 || errs+="hvctl vhd check a.vhdx after the resize: $?; "
[[ $("$HVCTL" vhd info "$D/a.vhdx" --json | sed -n 's/.*"virtual_size": \([0-9]*\).*/\1/p') == 2147483648 ]] ||
    errs+="a.vhdx is not 2 GiB after the resize; "
umount "$D" && rm -f /tmp/storage-hotplug.xfs || errs+="cannot unmount $D; "
verdict "$name" "$errs"
