# tests/e2e/lib/host.sh — helpers for scenario host.sh scripts, which run under
# bash inside the software KVM host: `. "$E2E_LIB/host.sh"` first.
#
# Variables
#   HVMM           the VMM under test (/usr/local/bin/hvmm)
#   GUEST_KERNEL   the guest bzImage;  GUEST_INITRD  the guest initramfs
#   SCENARIO       this scenario's name; SCENARIO_DIR its directory
#   LOGDIR         where to put logs (tails of them are printed on failure)
#   E2E_SHARE      the runner's log directory (virtio-9p), which outlives a
#                  software host that dies; unset when the share is missing
#   GUEST_UP       regex of the line the guest's /init prints first in user space
# Results
#   pass NAME / fail NAME REASON...   print one result line for the runner
#   verdict NAME ERRORS               pass if ERRORS is empty, else fail with it
#   say TEXT...                       an informational line the runner shows
# Running the VMM (stdin /dev/null, stdout+stderr to LOG)
#   run_hvmm LOG TIMEOUT ARGS...      hvmm's exit status, 124 on timeout
#   boot_guest LOG TIMEOUT [ARGS...]  run_hvmm ... run --kernel --initrd
#                                     --cmdline "$(guest_cmdline)" ARGS
#   start_hvmm LOG ARGS... / start_guest LOG [ARGS...]   in the background:
#                                     sets HVMM_PID
#   wait_pid PID TIMEOUT              exit status, or 124 (then SIGKILLed)
#   stop_hvmm SIGNAL TIMEOUT          signal HVMM_PID and wait_pid it
#   guest_cmdline [EXTRA...]          console=ttyS0 hvmm.scenario=$SCENARIO EXTRA
# Reading logs
#   expect_in LOG REGEX               true if an extended regex matches a line
#   count_in LOG REGEX                number of matching lines
#   wait_for LOG REGEX TIMEOUT [N]    wait until REGEX matched N (1) lines;
#                                     1 on timeout, 2 if HVMM_PID exited first
#   guest_value LOG KEY               last VALUE of the guest's `report KEY VALUE`
#   note_stalls NAME LOG              say how often hvmm's VMBus watchdog had to
#                                     step in (lost interrupts), if at all
#   exit_note ST LOG                  "hvmm exited ST", with LOG's last line
#                                     when ST is 124 (where a hung guest stood)

HVMM=${HVMM:-/usr/local/bin/hvmm}
GUEST_KERNEL=/e2e/guest/vmlinuz
GUEST_INITRD=/e2e/guest/initrd.cpio
SCENARIO=${E2E_SCENARIO:-unknown}
SCENARIO_DIR=${E2E_SCENARIO_DIR:-$PWD}
LOGDIR=${E2E_LOGDIR:-/tmp/e2e/$SCENARIO}
E2E_RESULTS=${E2E_RESULTS:-/dev/null}
GUEST_UP='##e2e## boot=userspace'
HVMM_PID=
mkdir -p "$LOGDIR"

pass() { echo "@@hvmm-e2e@@ PASS $1"; echo "PASS $1" >>"$E2E_RESULTS"; }
fail() {
    local name=$1; shift
    local why="${*:-failed}"
    echo "@@hvmm-e2e@@ FAIL $name: ${why//$'\n'/ }"
    echo "FAIL $name" >>"$E2E_RESULTS"
}
verdict() { if [[ -z $2 ]]; then pass "$1"; else fail "$1" "${2%; }"; fi; }
say() { echo "@@hvmm-e2e@@ INFO $*"; }

guest_cmdline() { echo "console=ttyS0 hvmm.scenario=$SCENARIO${*:+ $*}"; }

# trace_kvm_1s PID EVENT...: record those KVM trace events of PID's threads
# for 1 s into $KVM_TRACE/trace (the caller reads, then empties it); fails
# where there is no tracing.
KVM_TRACE=/sys/kernel/tracing
trace_kvm_1s() {
    local pid=$1 t=$KVM_TRACE tids e; shift
    [[ -d $t/events/kvm ]] || mount -t tracefs none "$t" 2>/dev/null
    [[ -w $t/set_event_pid ]] || return 1
    tids=$(ls "/proc/$pid/task" 2>/dev/null | tr '\n' ' ')
    [[ -n $tids ]] || return 1
    echo "$tids" >"$t/set_event_pid" && : >"$t/trace" || return 1
    for e; do echo 1 >"$t/events/kvm/$e/enable" || return 1; done
    sleep 1
    for e; do echo 0 >"$t/events/kvm/$e/enable"; done
    : >"$t/set_event_pid"
}

# When a wait for the guest times out, and before a timed-out VMM is killed:
# a guest that the emulation wedged (KVM
# injecting the same #PF again and again, its page-table walk hitting a
# guest-physical address outside RAM; tests/e2e/README.md) is written down in
# $LOGDIR/wedged-guests, which tells the runner to try the scenario again.
# A guest that is merely stuck (waiting, spinning, or hvmm hung) is not.
note_wedged_guest() {
    local pid=$1 t=$KVM_TRACE n rip
    trace_kvm_1s "$pid" kvm_inj_exception kvm_emulate_insn || return 0
    n=$(grep -c 'kvm_inj_exception: #PF' "$t/trace")
    rip=$(grep -o 'kvm_emulate_insn: [0-9]*:[0-9a-f]*' "$t/trace" | sort | uniq -c | sort -rn | head -n 1)
    if ((n >= 100)); then
        echo "pid $pid: KVM injected $n page faults in 1 s, emulating at ${rip##*: } ($(grep -c . "$t/trace") events)" >>"$LOGDIR/wedged-guests"
    fi
    : >"$t/trace"
}

# trace_guest_exits PID: what a stuck VMM's guest is doing: KVM's exits of
# that process over 1 s, counted by reason, with the guest addresses they
# came from most (and their details) and the I/O ports it used most.
trace_guest_exits() {
    local t=$KVM_TRACE
    trace_kvm_1s "$1" kvm_exit kvm_pio || { echo "no KVM trace"; return 0; }
    echo "KVM exits in 1 s: $(grep -c 'kvm_exit:' "$t/trace"); by reason:" \
        "$(grep -o 'kvm_exit: vcpu [0-9]* reason [A-Za-z_0-9]*' "$t/trace" | awk '{print "vcpu" $3, $5}' |
           sort | uniq -c | sort -rn | head -n 6 | tr -s ' \n' ' ')"
    echo "from: $(grep -o 'kvm_exit: vcpu [0-9]* reason [A-Za-z_0-9]* rip 0x[0-9a-f]*' "$t/trace" |
           awk '{print $5 "@" $7}' | sort | uniq -c | sort -rn | head -n 4 | tr -s ' \n' ' ')"
    # For a nested page fault info1 is its error code, info2 the guest-physical address.
    echo "details: $(grep -o 'reason [A-Za-z_0-9]* rip 0x[0-9a-f]* info1 0x[0-9a-f]* info2 0x[0-9a-f]*' "$t/trace" |
           awk '{print $2, $4, "info1", $6, "info2", $8}' | sort | uniq -c | sort -rn | head -n 2 | tr -s ' \n' ' ')"
    echo "ports: $(grep -o 'kvm_pio: pio_[a-z]* at 0x[0-9a-f]*' "$t/trace" | awk '{print $2, $4}' |
           sort | uniq -c | sort -rn | head -n 4 | tr -s ' \n' ' ')"
    : >"$t/trace"
}

wait_pid() {
    local pid=$1 ticks=$(($2 * 10)) rc
    while kill -0 "$pid" 2>/dev/null; do
        if ((ticks-- <= 0)); then
            note_wedged_guest "$pid"
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 124
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null
    rc=$?
    return $rc
}

run_hvmm() {
    local log=$1 t=$2; shift 2
    "$HVMM" "$@" </dev/null >"$log" 2>&1 &
    wait_pid $! "$t"
}
boot_guest() {
    local log=$1 t=$2; shift 2
    run_hvmm "$log" "$t" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
        --cmdline "$(guest_cmdline)" "$@"
}
start_hvmm() {
    local log=$1; shift
    "$HVMM" "$@" </dev/null >"$log" 2>&1 &
    HVMM_PID=$!
}
start_guest() {
    local log=$1; shift
    start_hvmm "$log" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
        --cmdline "$(guest_cmdline)" "$@"
}
stop_hvmm() {
    kill -"$1" "$HVMM_PID" 2>/dev/null
    wait_pid "$HVMM_PID" "$2"
}

expect_in() { grep -qE -- "$2" "$1" 2>/dev/null; }
count_in() { grep -cE -- "$2" "$1" 2>/dev/null || true; }
wait_for() {
    local log=$1 re=$2 ticks=$(($3 * 10)) n=${4:-1}
    while (($(count_in "$log" "$re") < n)); do
        if [[ -n $HVMM_PID ]] && ! kill -0 "$HVMM_PID" 2>/dev/null; then
            (($(count_in "$log" "$re") >= n)) && return 0
            return 2
        fi
        if ((ticks-- <= 0)); then
            # A stalled guest may be one the emulation wedged: say so, so
            # that the runner tries the scenario again (note_wedged_guest).
            [[ -z $HVMM_PID ]] || note_wedged_guest "$HVMM_PID"
            return 1
        fi
        sleep 0.1
    done
}
guest_value() {
    tr -d '\r' <"$1" | sed -n "s/^.*##e2e## $2=//p" | tail -n 1
}
exit_note() {
    local last
    if (($1 == 124)); then
        last=$(tr -d '\r' <"$2" | LC_ALL=C sed 's/[^ -~]/?/g' | grep -v '^ *$' | tail -n 1 | cut -c 1-160)
        echo "hvmm exited 124 (timed out; its log ends: '$last')"
    else
        echo "hvmm exited $1"
    fi
}
note_stalls() {
    local lines
    lines=$(grep -E 'vmbus: .*(interrupting VP [0-9]+ again|as if signalled)' "$2" 2>/dev/null | tr -d '\r')
    [[ -z $lines ]] || say "$1: hvmm's VMBus watchdog stepped in $(wc -l <<<"$lines") times: ${lines%%$'\n'*}"
}
