# storage-crash: hvmm killed with SIGKILL while the guest writes to a dynamic
# VHDX. Afterwards the image's log is pending (as after any crash of a VHDX
# writer): hvctl vhd check says so and finds nothing corrupt, a read-only open
# reads every record the guest had flushed (record n at 64 KiB * 520 * n, each
# in a new 32 MiB block, reported only after conv=fsync returned), the first
# writable open replays the log, and then hvctl vhd check and qemu-img check
# find the image clean and the records are still there.
. "$E2E_LIB/host.sh"

HVCTL=${HVCTL:-$(dirname "$HVMM")/hvctl}
D=/tmp/storage-crash
rm -rf "$D"; mkdir -p "$D"
name=storage-crash log=$LOGDIR/crash.log errs= st= last= out=

"$HVCTL" vhd new "$D/c.vhdx" --size 8G >/dev/null || errs+="vhd new failed; "
start_guest "$log" --memory 512M --disk "$D/c.vhdx"
if wait_for "$log" '##e2e## flushed=' 240 25; then
    kill -KILL "$HVMM_PID"
    wait_pid "$HVMM_PID" 10 || true
else
    errs+="the guest flushed fewer than 25 records: $(tail -n 2 "$log" | tr -d '\r' | tr '\n' ' '); "
    stop_hvmm KILL 5 || true
fi
last=$(guest_value "$log" flushed)
say "$name: killed after record $last was flushed"
out=$("$HVCTL" vhd info "$D/c.vhdx" 2>&1) || errs+="vhd info after the crash: $out; "
out=$("$HVCTL" vhd check "$D/c.vhdx" 2>&1) && st=0 || st=$?
say "$name: check after the crash: $st: $(tr '\n' ' ' <<<"$out")"
((st == 0 || st == 3)) || errs+="hvctl vhd check after the crash exited $st: $(tr '\n' ' ' <<<"$out"); "

check_records() { # WHEN
    local n bad=0
    rm -f "$D/c.raw"
    "$HVCTL" vhd convert "$D/c.vhdx" "$D/c.raw" >/dev/null 2>&1 || { errs+="$1: vhd convert failed; "; return; }
    for ((n = 0; n <= last; n++)); do
        cmp -s <(yes "hvmm-crash-$n" | head -c 65536) \
            <(dd if="$D/c.raw" bs=64k skip=$((n * 520)) count=1 2>/dev/null) || bad=$((bad + 1))
    done
    ((bad == 0)) || errs+="$1: $bad of $((last + 1)) flushed records are missing or wrong; "
}
[[ -n $last ]] && check_records "before the replay"
out=$("$HVCTL" vhd check --repair "$D/c.vhdx" 2>&1) || errs+="vhd check --repair: $(tr '\n' ' ' <<<"$out"); "
out=$("$HVCTL" vhd check "$D/c.vhdx" 2>&1) || errs+="hvctl vhd check after the replay: $(tr '\n' ' ' <<<"$out"); "
out=$(qemu-img check -f vhdx "$D/c.vhdx" 2>&1) || errs+="qemu-img check: $(tr '\n' ' ' <<<"$out"); "
[[ -n $last ]] && check_records "after the replay"
verdict "$name" "$errs"
