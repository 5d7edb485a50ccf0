# tests/e2e/lib/outer.sh — boots the software KVM host under QEMU/TCG and reads
# its console (sourced after build.sh; bash).
#
# run_outer INITRD APPEND NAME...: boots the host with INITRD and the extra
# kernel arguments APPEND, copies the console to $E2E_CONSOLE_LOG and the
# scenarios' log directories to $E2E_LOGS/NAME/, prints each
# result line ("PASS x" / "FAIL x: why") on stdout as it arrives and INFO
# lines on fd $E2E_INFO_FD (2), and adds PASSED/FAILED. Once up, the host
# ticks every 10 s; 60 s without a line from it means it stopped. A
# scenario's result lines are printed when it reports END, so an interrupted
# attempt counts for nothing, nor does one the host retried (RETRY: see
# outer-init). Deadlines (seconds): E2E_BOOT_TIMEOUT (300) to come up; the
# scenario's own timeout+60 from its BEGIN (or RETRY); 120 between scenarios.
#
# If the software host dies, stops answering or its kernel reports a soft
# lockup, a panic or a BUG after it came up (QEMU/TCG emulating nested SVM
# does that now and then; no user-space program in it can), or QEMU crashes
# or the host kernel reports a BUG or soft lockup while it boots, a new host
# is booted for the scenarios not finished, the interrupted one included, at
# most E2E_RESTARTS (8) times; an INFO line says so. Each NAME that still
# never reported END gets a FAIL line.
#
# interactive_outer INITRD APPEND: the same host with its serial console on
# this terminal (Ctrl-A x quits QEMU).

E2E_CONSOLE_LOG=${E2E_CONSOLE_LOG:-$E2E_OUT/logs/console.log}
E2E_INFO_FD=${E2E_INFO_FD:-2}
PASSED=${PASSED:-0} FAILED=${FAILED:-0}

# The host copies each scenario's $LOGDIR into $E2E_LOGS/NAME/ through a
# virtio-9p share (not a network).
E2E_LOGS=${E2E_LOGS:-$(dirname "$E2E_CONSOLE_LOG")/scenarios}

# tsc=reliable: TCG's TSC is one counter for every vCPU, but the host kernel's
# synchronization check, timed under emulation, calls it unsynchronized and
# falls back to the HPET. KVM then has no stable master clock, so the
# guests' Hyper-V reference TSC page is marked invalid and every guest clock
# read becomes an MSR exit (thousands a second: a different machine from any
# real host, which has an invariant TSC).
# la57=off: with 5-level paging the host kernel also makes KVM's nested page
# tables 5-level, and every TCG page walk, for the host and through nested
# paging for the guest, takes one more level. With 4 levels the scenarios
# ran 15 to 35% faster here on 2026-12-06 (hyperv 93 s -> 65 s against a
# 5-level run on Debian 6.1.0-50; on the same 6.1.0-57 kernel, reboot
# 48.6 s -> 40.9 s).
# E2E_HOST_THP: the host's transparent_hugepage= (default: the kernel's).
# `never` was tried on 2026-12-07 after the host died twice of a soft lockup
# in khugepaged: the host still died as often (tests/e2e/README.md).
outer_qemu() {  # INITRD APPEND -> OUTER_QEMU array
    mkdir -p "$E2E_LOGS"
    OUTER_QEMU=(qemu-system-x86_64 -nodefaults -no-user-config -display none -M pc
        -virtfs "local,path=$E2E_LOGS,mount_tag=e2elogs,security_model=none,id=e2elogs"
        -accel "tcg,thread=${E2E_TCG_THREAD:-multi}" -cpu max,la57=off -smp "${E2E_HOST_CPUS:-2}"
        -m "${E2E_HOST_MEM:-3G}" -nic none -no-reboot
        -d cpu_reset -D "$(qemu_reset_log)"
        -kernel "$VMLINUZ" -initrd "$1" -append "console=ttyS0 panic=-1 tsc=reliable ${E2E_HOST_THP:+transparent_hugepage=$E2E_HOST_THP }$2")
    # E2E_QEMU_ARGS: extra arguments for debugging, e.g. "-d cpu_reset -D qemu.log"
    local extra=()
    [[ -z ${E2E_QEMU_ARGS:-} ]] || read -ra extra <<<"$E2E_QEMU_ARGS"
    OUTER_QEMU+=("${extra[@]}")
}

# Where QEMU logs the software host's CPU resets (and a triple fault, should
# one end it): one file per boot.
qemu_reset_log() {
    echo "$(dirname "$E2E_CONSOLE_LOG")/qemu-cpu-reset${E2E_RESTARTS_DONE:+-$E2E_RESTARTS_DONE}.log"
}

result() {  # PASS NAME | FAIL NAME: WHY
    echo "$*"
    if [[ $1 == PASS ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}

now() { echo "${EPOCHREALTIME/./}"; }  # microseconds
secs() { printf '%d.%01d' $(($1 / 1000000)) $(($1 % 1000000 / 100000)); }

# with_run APPEND NAME...: APPEND with its e2e.run= word naming only NAMEs.
with_run() {
    local w out= names
    names=$(IFS=,; echo "${*:2}")
    for w in $1; do
        [[ $w != e2e.run=* ]] || w=e2e.run=$names
        out+="${out:+ }$w"
    done
    echo "$out"
}

# The software host's own kernel gave up (its messages, not a VM's "vm| "
# lines): nothing will come from it any more.
HOST_KERNEL_DEAD='^\[ *[0-9]+\.[0-9]+\] (watchdog: BUG: soft lockup|Kernel panic|BUG: )'

run_outer() {
    local initrd=$1 append=$2; shift 2
    local -A done_=()
    local line rest kind name current= hostfail= up= fd qpid t0 deadline left quiet why= s rc last=
    local pending=() left_names=() restarts=${E2E_RESTARTS:-8}
    if [[ -z ${E2E_RESTARTING:-} ]]; then
        rm -rf "$E2E_LOGS"
        mkdir -p "$(dirname "$E2E_CONSOLE_LOG")"
        : >"$E2E_CONSOLE_LOG"
    fi
    outer_qemu "$initrd" "$append"
    t0=$(now)
    deadline=$((t0 + ${E2E_BOOT_TIMEOUT:-300} * 1000000))
    exec {fd}< <(exec "${OUTER_QEMU[@]}" -serial stdio </dev/null 2>&1)
    qpid=$!
    local tbegin=$t0
    while :; do
        left=$((deadline - $(now)))
        ((left > 0)) || { why=timeout; break; }
        # A host that is up ticks: after 60 s of silence it is gone.
        quiet=$left
        [[ -z $up ]] || ((quiet < 60000000)) || quiet=60000000
        rc=0
        IFS= read -r -t "$(secs "$quiet")" -u "$fd" line || rc=$?
        if ((rc)); then
            if ((rc <= 128)); then why=died
            elif ((quiet < left)); then why="silent for 60 s"
            else why=timeout; fi
            break
        fi
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$E2E_CONSOLE_LOG"
        if [[ $line =~ $HOST_KERNEL_DEAD ]]; then
            why="its kernel reported: ${line:0:160}"
            # Its last words (the backtrace) follow: keep them in the log.
            local words=$(($(now) + 10000000))
            while (($(now) < words)) && IFS= read -r -t 3 -u "$fd" line; do
                printf '%s\n' "${line%$'\r'}" >>"$E2E_CONSOLE_LOG"
            done
            break
        fi
        [[ $line == "@@hvmm-e2e@@ "* ]] || { [[ -z $line ]] || last=$line; continue; }
        rest=${line#@@hvmm-e2e@@ }
        kind=${rest%% *} rest=${rest#* }
        case $kind in
            BOOTED) log "software host in user space after $(secs $(($(now) - t0))) s ($rest)" ;;
            HOST-UP)
                up=1
                log "software host up after $(secs $(($(now) - t0))) s ($rest)"
                deadline=$(($(now) + 120000000)) ;;
            HOST-FAIL) hostfail=$rest; log "software host: $rest" ;;
            BEGIN)
                current=${rest%% *} tbegin=$(now)
                s=${rest##*timeout=}
                deadline=$((tbegin + (s + 60) * 1000000)) ;;
            PASS | FAIL) if [[ -n $current ]]; then pending+=("$kind $rest")
                         else result "$kind" "$rest"; fi ;;
            INFO) echo "$rest" >&"$E2E_INFO_FD" ;;
            RETRY)  # NAME TIMEOUT WHY: it runs again; its results so far do not count
                pending=() tbegin=$(now)
                s=${rest#* } && s=${s%% *}
                deadline=$((tbegin + (s + 60) * 1000000))
                echo "${rest%% *}: ${rest#* * }" >&"$E2E_INFO_FD" ;;
            TICK) ;;
            END)
                name=${rest%% *}
                done_[$name]=1 current=
                for s in "${pending[@]}"; do result "${s%% *}" "${s#* }"; done
                pending=()
                log "$name took $(secs $(($(now) - tbegin))) s"
                deadline=$(($(now) + 120000000)) ;;
            DONE) why=done; break ;;
        esac
    done
    local qrc=0 crashed=
    [[ $why == died ]] || kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || qrc=$?
    exec {fd}<&-
    # QEMU ends by itself when the host resets (-no-reboot: status 0) or when
    # QEMU crashes (a signal: status above 128).
    # Before the host is up, only a crash of the emulator itself (QEMU
    # killed by a signal: seen in CI on 2026-12-06, SIGSEGV during the host
    # kernel's PCI scan) or a kernel BUG or soft lockup is worth another
    # boot; a panic, a timeout or a HOST-FAIL would only repeat.
    if [[ $why == died ]]; then
        ((qrc <= 128)) || crashed=1
        why="died: QEMU exited with status $qrc${last:+; last console line: ${last:0:160}}"
    elif [[ $why == "its kernel reported: "* && $why != *"Kernel panic"* ]]; then
        crashed=1
    fi
    for name in "$@"; do [[ -n ${done_[$name]:-} ]] || left_names+=("$name"); done
    if [[ -z $hostfail && $why != done && ${#left_names[@]} -gt 0 ]] && ((restarts > 0)) &&
        [[ -n $up || -n $crashed ]]; then
        local when=${current:+stopped during $current }
        [[ -n $up ]] || when="crashed while booting "
        echo "e2e: software host $when($why): booting a new one for the" \
            "${#left_names[@]} scenario(s) left (restart $((${E2E_RESTARTS_DONE:-0} + 1)); QEMU's reset log:" \
            "$(qemu_reset_log))" >&"$E2E_INFO_FD"
        E2E_RESTARTING=1 E2E_RESTARTS=$((restarts - 1)) E2E_RESTARTS_DONE=$((${E2E_RESTARTS_DONE:-0} + 1)) \
            run_outer "$initrd" "$(with_run "$append" "${left_names[@]}")" "${left_names[@]}"
        return
    fi
    for s in "${pending[@]}"; do result "${s%% *}" "${s#* }"; done
    for name in "$@"; do
        [[ -n ${done_[$name]:-} ]] && continue
        if [[ -n $hostfail ]]; then s="software host failed: $hostfail"
        elif [[ -z $up && $why == timeout ]]; then s="software host did not come up within ${E2E_BOOT_TIMEOUT:-300}s"
        elif [[ -z $up ]]; then s="software host died while booting ($why)"
        elif [[ $name == "$current" ]]; then s="software host stopped responding during this scenario ($why)"
        elif [[ -n $current ]]; then s="not run: software host stopped during $current"
        else s="not run: software host stopped ($why)"; fi
        result FAIL "$name: $s"
    done
    ((FAILED == 0)) || log "console log: $E2E_CONSOLE_LOG; scenario logs: $E2E_LOGS/"
}

interactive_outer() {
    outer_qemu "$1" "$2"
    exec "${OUTER_QEMU[@]}" -serial mon:stdio
}
