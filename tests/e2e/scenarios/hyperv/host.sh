# hyperv: a stock Linux guest finds Hyper-V in hvmm: "Hypervisor detected:
# Microsoft Hyper-V", the Hyper-V TSC-page clocksource, VMBus at the newest
# version both know, hv_utils bound to heartbeat, shutdown and time sync,
# its clock set by time sync to within 1 s of the host's, heartbeat "ok" in
# `hvctl status`, and a host-initiated shutdown (`hvctl shutdown`, or
# SIGTERM) powering it off cleanly with hvmm exiting 0; the guest's hints
# say to use AutoEOI, and its timer is the local APIC's, unless KVM
# virtualizes the APIC (then: no AutoEOI, the Hyper-V stimer; the software
# host's KVM does not). Runs with 1 and 4 vCPUs (channel interrupts on other VPs).
# hyperv-reboot: after a guest reboot (hvmm rebuilds the VM, VMBus included)
# the new boot connects, and `hvctl stop --force` powers off at once with
# status 3.
. "$E2E_LIB/host.sh"

HVCTL=${HVCTL:-$(dirname "$HVMM")/hvctl}
# Class GUIDs of the three services (Linux's sysfs class_id format).
HEARTBEAT={57164f39-9115-4e78-ab55-382f3bd5422d}
SHUTDOWN={0e0b6031-5213-4934-818b-38d90ced39db}
TIMESYNC={9527e630-d0ae-497b-adce-e80ab0175caf}

# 1 if this host's KVM virtualizes the local APIC (APICv, AVIC), else 0.
apic_virtualized() {
    cat /sys/module/kvm_intel/parameters/enable_apicv /sys/module/kvm_amd/parameters/avic 2>/dev/null |
        grep -q '^[Y1]' && echo 1 || echo 0
}

check_hyperv() { # NAME CPUS HOW (shutdown | sigterm)
    local name=$1 cpus=$2 how=$3 log=$LOGDIR/$1.log sock=/tmp/$1.sock errs= v st guest host_now=
    start_guest "$log" --cpus "$cpus" --memory 512M --api "$sock"
    # The guest prints its clock the instant its second turns: compare it
    # with the host's clock when the line shows up (polled every 0.1 s).
    wait_for "$log" '##e2e## clock=' 240 && host_now=$EPOCHREALTIME
    if ! wait_for "$log" '##e2e## idle=yes' 30; then
        stop_hvmm KILL 5 || true
        fail "$name" "guest never reached idle: $(tail -n 3 "$log" | tr '\n' ' ')"
        return
    fi
    v=$(guest_value "$log" hypervisor)
    [[ $v == "Microsoft Hyper-V" ]] || errs+="hypervisor detected: '${v}'; "
    v=$(guest_value "$log" clocksource)
    [[ $v == hyperv_clocksource_tsc_page ]] || errs+="clocksource $v; "
    v=$(guest_value "$log" vmbus_version)
    [[ $v == 5.3 ]] || errs+="VMBus version '$v', want 5.3; "
    v=$(guest_value "$log" hints)
    if [[ ! $v =~ ^0x[0-9a-f]+$ ]]; then errs+="no Hyper-V hints in the guest's log: '$v'; "
    elif (((v >> 9 & 1) != $(apic_virtualized))); then
        errs+="hints $v: 'AutoEOI deprecated' is $((v >> 9 & 1)), APIC virtualization $(apic_virtualized); "
    fi
    v=$(guest_value "$log" clockevent)
    case $(apic_virtualized):$v in
        1:"Hyper-V clockevent" | 0:lapic-deadline | 0:lapic) ;;
        *) errs+="clock event device '$v' with APIC virtualization $(apic_virtualized); " ;;
    esac
    v=$(guest_value "$log" nproc)
    [[ $v == "$cpus" ]] || errs+="nproc $v; "
    for g in $HEARTBEAT $SHUTDOWN $TIMESYNC; do
        expect_in "$log" "##e2e## bound=$g" || errs+="hv_utils not bound to $g; "
    done
    guest=$(guest_value "$log" clock)
    if [[ -z $guest || -z ${host_now:-} ]]; then errs+="no clock reported; "
    else
        v=$(awk -v h="$host_now" -v g="$guest" 'BEGIN { d = h - g; print (d < 1 && d > -1) ? "ok" : d }')
        [[ $v == ok ]] || errs+="guest clock is ${v} s behind the host's; "
        say "$name: guest clock $guest, host $host_now"
    fi
    v=$("$HVCTL" --api "$sock" status 2>&1) || errs+="hvctl status failed: $v; "
    say "$name status: $(tr -d ' \n' <<<"$v")"
    # Heartbeats come every second; allow a few for the first reply.
    for _ in 1 2 3 4 5; do
        grep -q '"status": "ok"' <<<"$(grep -A2 '"heartbeat"' <<<"$v")" && break
        sleep 1; v=$("$HVCTL" --api "$sock" status 2>&1)
    done
    grep -A2 '"heartbeat"' <<<"$v" | grep -q '"status": "ok"' || errs+="heartbeat not ok: $v; "
    grep -q '"vmbus_version": "5.3"' <<<"$v" || errs+="status lacks vmbus_version 5.3; "
    grep -q "\"vcpus\": $cpus" <<<"$v" || errs+="status vcpus; "
    if [[ $how == sigterm ]]; then kill -TERM "$HVMM_PID"
    else "$HVCTL" --api "$sock" shutdown >/dev/null 2>&1 || errs+="hvctl shutdown failed; "; fi
    wait_pid "$HVMM_PID" 60 && st=0 || st=$?
    ((st == 0)) || errs+="hvmm exited $st after the shutdown request, want 0; "
    expect_in "$log" '##e2e## shutdown=clean' || errs+="the guest did not shut down cleanly; "
    verdict "$name" "$errs"
}

check_reboot() {
    local name=hyperv-reboot log=$LOGDIR/hyperv-reboot.log sock=/tmp/hyperv-reboot.sock errs= st
    start_guest "$log" --cpus 2 --memory 512M --api "$sock" --cmdline "$(guest_cmdline hyperv.reboot)"
    wait_for "$log" '##e2e## idle=yes' 240 2 ||
        errs+="the guest did not come up twice (its log ends: '$(tr -d '\r' <"$log" | tail -n 1 | cut -c 1-160)'); "
    (($(count_in "$log" '##e2e## vmbus_version=5.3') == 2)) || errs+="VMBus did not connect on both boots; "
    expect_in "$log" 'guest reset: restarting the VM' || errs+="hvmm did not restart the VM; "
    "$HVCTL" --api "$sock" status | grep -q '"vmbus_version": "5.3"' || errs+="status after reboot; "
    "$HVCTL" --api "$sock" stop --force >/dev/null 2>&1 || errs+="hvctl stop --force failed; "
    wait_pid "$HVMM_PID" 15 && st=0 || st=$?
    ((st == 3)) || errs+="hvmm exited $st after stop --force, want 3; "
    verdict "$name" "$errs"
}

check_hyperv hyperv-1cpu 1 shutdown
check_hyperv hyperv-4cpu 4 sigterm
check_reboot
