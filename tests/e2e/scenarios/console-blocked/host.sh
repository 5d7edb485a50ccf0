# console-blocked: a console that stops reading (a full pipe, a terminal
# paused with Ctrl-S) must stall only the guest's console output, not the VM:
# with hvmm's stdout a pipe whose reader is stopped while the guest floods
# its console, the API still answers, and once the reader goes on every line
# the guest wrote arrives, in order.
. "$E2E_LIB/host.sh"

HVCTL=${HVCTL:-$(dirname "$HVMM")/hvctl}
fifo=/tmp/console-blocked.fifo sock=/tmp/console-blocked.sock

# attempt N: one VM; sets errs, and stalled when the guest's output never
# resumed (and nothing else went wrong).
attempt() {
    local log=$LOGDIR/console-$1.log reader blocked= boots n last
    errs= stalled=
    rm -f "$fifo" "$sock"; mkfifo "$fifo"
    cat "$fifo" >"$log" &
    reader=$!
    "$HVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline)" \
        --memory 256M --api "$sock" </dev/null >"$fifo" 2>&1 &
    HVMM_PID=$!
    if wait_for "$log" '##e2e## flood=start' 240; then
        kill -STOP "$reader"
        # The guest fills the pipe and hvmm's buffers: hvmm's console writer
        # then sleeps in the kernel's pipe_write. Without that the test
        # proves nothing.
        for _ in $(seq 1 120); do
            grep -qxE '(anon_)?pipe_write' /proc/"$HVMM_PID"/task/*/wchan 2>/dev/null && { blocked=1; break; }
            sleep 0.5
        done
        [[ -n $blocked ]] || errs+="hvmm's console output never blocked on the full pipe; "
        timeout 15 "$HVCTL" --api "$sock" status >"$LOGDIR/status.json" 2>"$LOGDIR/status.err" ||
            errs+="the API did not answer while the console was blocked: $(head -c 200 "$LOGDIR/status.err"); "
        grep -q '"state": *"running"' "$LOGDIR/status.json" || errs+="status: $(head -c 200 "$LOGDIR/status.json"); "
        kill -CONT "$reader"
        if ! wait_for "$log" '##e2e## flood=done' 120; then
            [[ -n $errs ]] || stalled=1
            errs+="the guest's output did not resume; "
        fi
        # The guest has triple-faulted while its output was held back, under
        # the nested emulation (not understood; see the issue's notes). hvmm
        # then restarts it and it floods again: say so, and check the flood
        # of its last boot.
        boots=$(count_in "$log" '##e2e## boot=userspace')
        ((boots == 1)) || say "console-blocked: the guest reset $((boots - 1)) time(s):" \
            "$(grep -a 'hvmm: info: vCPU\|hvmm: info: the guest' "$log" | tr -d '\r' | head -n 2 | tr '\n' ' ')"
        # flood lines are numbered 1..N: none lost, none repeated, in order.
        tr -d '\r' <"$log" | awk '/##e2e## flood=start/ {n = 0}
            $1 == "flood-line" {v[++n] = $2} END {for (i = 1; i <= n; i++) print v[i]}' >"$LOGDIR/numbers"
        n=$(wc -l <"$LOGDIR/numbers")
        last=$(tail -n 1 "$LOGDIR/numbers")
        seq 1 "${last:-0}" | cmp -s - "$LOGDIR/numbers" ||
            errs+="the flood lines are not 1..$last in order ($n lines); "
        ((n == 1500)) || errs+="$n flood lines arrived, want 1500; "
    else
        errs+="the guest never started its flood; "
    fi
    stop_hvmm TERM 15 >/dev/null || true
    kill -CONT "$reader" 2>/dev/null; wait "$reader" 2>/dev/null
}

# A guest whose output stops for good with the API answering and the console
# flowing again has lost its UART interrupt or hung: seen about once in ten
# runs under the software host's nested emulation, also in a guest still
# booting. One new VM decides; a fault of hvmm's fails both.
attempt 1
if [[ -n $stalled ]]; then
    say "console-blocked: the guest's output stopped for good (${errs%; }); trying a new VM"
    attempt 2
fi
verdict console-blocked "$errs"
