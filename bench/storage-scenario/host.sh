# bench/storage-scenario/host.sh — runs inside the software KVM host (see
# bench/storage). Each run boots three VMs in turn, with the same guest
# kernel, initrd, memory and vCPUs, each on a fresh backing file of
# BENCH_SIZE on a BENCH_FS file system, xfs (default) or ext4, as on a real
# host (the software host's own /tmp is tmpfs, which before Linux 6.6 cannot
# serve RWF_NOWAIT reads from its page cache; of these two only xfs takes
# RWF_NOWAIT buffered writes), made on a loop device over a file in /tmp:
#   hvmm  hvmm, synthetic SCSI (storvsp; guest hv_storvsc), a raw file;
#   qemu  QEMU+KVM, virtio-blk-pci on a raw file (cache=writeback, aio=threads:
#         QEMU's defaults);
#   vhdx  hvmm, synthetic SCSI, a dynamic VHDX (hvctl vhd new) of the same size.
# In the guest (guest.sh), fio writes the whole disk once (1 MiB blocks, queue
# depth 32: "fill", on the dynamic VHDX this allocates its blocks), then runs
# each job on the raw block device with O_DIRECT and libaio for
# BENCH_RUNTIME s after a 1 s ramp: sequential read and write at 128 KiB and
# random read and write at 4 KiB, each at queue depth 1 and 32.
# Prints each run's figures, then medians and the ratios hvmm/qemu and
# vhdx/hvmm. A job that fails is left out of the figures and reported; a VM
# whose guest says a job is stuck (60 s past its end), or that does not finish
# within its time limit, is stopped and reported with the end of its console,
# its threads and, for hvmm, its disks' state from the API. A guest that
# resets (a triple fault) ends its VM (--no-reboot, -no-reboot): the jobs
# it finished count, the rest are missing from that run. If the software host
# itself dies, the next one takes up from the VM run that was cut short.
. "$E2E_LIB/host.sh"

mem=${BENCH_MEMORY:-512M} cpus=${BENCH_CPUS:-2} runs=${BENCH_RUNS:-3}
fs=${BENCH_FS:-xfs}
size=${BENCH_SIZE:-256M} runtime=${BENCH_RUNTIME:-5}
HVCTL=${HVCTL:-$(dirname "$HVMM")/hvctl}
tests=(seqread-qd1 seqread-qd32 seqwrite-qd1 seqwrite-qd32
       randread-qd1 randread-qd32 randwrite-qd1 randwrite-qd32)
vms=(hvmm qemu vhdx)
# pick NAME VALUE ALLOWED...: VALUE (BENCH_TESTS or BENCH_VMS) is a
# comma-separated subset of ALLOWED, for a focused run; its words into picked.
picked=()
pick() {
    local name=$1 v=$2 w; shift 2
    picked=()
    for w in ${v//,/ }; do
        [[ " $* " == *" $w "* ]] || { verdict bench-storage "$name: unknown '$w' (one of: $*)"; exit 0; }
        picked+=("$w")
    done
}
if [[ -n ${BENCH_TESTS:-} ]]; then pick BENCH_TESTS "$BENCH_TESTS" "${tests[@]}"; tests=("${picked[@]}"); fi
if [[ -n ${BENCH_VMS:-} ]]; then pick BENCH_VMS "$BENCH_VMS" "${vms[@]}"; vms=("${picked[@]}"); fi
# KVM counters reported per disk request (those that exist are shown).
counters=(exits io_exits mmio_exits hypercalls halt_exits irq_exits irq_window_exits
          irq_injections request_irq_exits signal_exits)
vm_timeout=$((240 + ${#tests[@]} * (runtime + 15)))
# Guests here reset (triple-fault) or spin now and then early in their boot,
# hvmm's far more often than QEMU's (tests/e2e/README.md): a run whose guest
# reset before its first figure, or was not in user space after boot_timeout
# seconds (a boot takes about 10), is booted again, up to 3 boots in all.
boot_tries=3 boot_timeout=120
D=/mnt/bench-storage/run

cmdline() { local t="${tests[*]}"; guest_cmdline "bench.disk=$1 bench.runtime=$runtime bench.tests=${t// /,} bench.diag"; }
hvmm_cmd() {  # DISK-SPEC; the API socket is only read when a VM hangs
    cmd=("$HVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(cmdline scsi)"
         --memory "$mem" --cpus "$cpus" --disk "$1" --api "$D/api.sock" --no-reboot)
}
qemu_cmd() {  # FILE
    cmd=(qemu-system-x86_64 -enable-kvm -cpu host -M pc -nodefaults -no-user-config
         -serial stdio -display none -nic none -no-reboot -m "$mem" -smp "$cpus"
         -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$(cmdline virtio)"
         -drive "file=$1,format=raw,if=none,id=d0,cache=writeback,aio=threads"
         -device virtio-blk-pci,drive=d0)
}

# unit TEST: what its figure is.
unit() { case $1 in seq* | fill) echo MiB/s ;; *) echo IOPS ;; esac; }
# figure TEST "KIB_PER_S IOPS": MiB/s for sequential jobs, IOPS for random.
figure() {
    local kib=${2% *} iops=${2#* }
    case $1 in seq* | fill) awk -v k="$kib" 'BEGIN{printf "%.1f", k / 1024}' ;; *) echo "$iops" ;; esac
}

# kvm_stats PID: KVM's counters for the VM of process PID (debugfs; the
# vCPUs' counters summed), "NAME VALUE" lines.
kvm_stats() {
    local f
    for f in /sys/kernel/debug/kvm/"$1"-*/*; do
        [[ -f $f ]] && echo "${f##*/} $(cat "$f" 2>/dev/null)"
    done
}
# With BENCH_TRACE=1, KVM's exits between io0 and io1 are counted by kind
# with histogram triggers on KVM's trace events (exit code, MSR written or
# read, hypercall code, IPI vector): LOG.trace, for finding out what a
# request costs. Adds a little time to each exit.
T=/sys/kernel/tracing
trace_hists=("kvm_exit exit_reason" "kvm_msr write,ecx" "kvm_hv_hypercall code" "kvm_apic_ipi vector"
             "kvm_pv_eoi vector" "kvm_hv_synic_set_irq sint" "kvm_inj_virq vector")
# trace_hist ON|OFF: add or remove the triggers (removing clears the counts).
trace_hist() {
    local h ev keys
    [[ ${BENCH_TRACE:-} == 1 ]] || return 0
    [[ -d $T/events/kvm ]] || mount -t tracefs tracefs "$T" 2>/dev/null || return 0
    for h in "${trace_hists[@]}"; do
        ev=${h% *} keys=${h#* }
        [[ -e $T/events/kvm/$ev/trigger ]] || continue
        if [[ $1 == on ]]; then echo "hist:keys=$keys:sort=hitcount.descending" >"$T/events/kvm/$ev/trigger"
        else echo "!hist:keys=$keys:sort=hitcount.descending" >"$T/events/kvm/$ev/trigger"; fi 2>/dev/null
    done
}
# trace_dump LOG: the counts so far, per event, in LOG.trace.
trace_dump() {
    local h
    [[ ${BENCH_TRACE:-} == 1 ]] || return 0
    for h in "${trace_hists[@]}"; do
        echo "== ${h% *}"
        grep -v '^#' "$T/events/kvm/${h% *}/hist" 2>/dev/null | grep .
    done >"$1.trace"
}

# exits_per_request NAME LOG: from the counters read when the guest said io0
# (after the fill) and io1 (after the last job), each counter's increase per
# disk request the guest completed in between (timer and other exits
# included); "COUNTER PER-REQUEST" lines in LOG.exits, "exits VALUE" in
# $LOGDIR/NAME.COUNTER.data.
exits_per_request() {
    local name=$1 log=$2 n0 n1 c
    n0=$(guest_value "$log" io0) n1=$(guest_value "$log" io1)
    [[ -s $log.io0 && -s $log.io1 && -n $n0 && -n $n1 ]] && ((n1 > n0)) || return 1
    awk -v n=$((n1 - n0)) 'NR == FNR {a[$1] = $2; next} ($1 in a) && $2 ~ /^[0-9]+$/ {
        printf "%s %.1f\n", $1, ($2 - a[$1]) / n}' "$log.io0" "$log.io1" >"$log.exits"
    for c in "${counters[@]}"; do
        awk -v c="$c" '$1 == c {print "exits", $2}' "$log.exits" >>"$LOGDIR/$name.$c.data"
    done
}

# host_time NAME LOG: for hvmm, the mean time a read and a write spent in
# hvmm's block layer (submission to completion, API read_time_ns and
# write_time_ns) between io0 and io1, "read_us WRITE_us" (- when none).
host_time() {
    [[ $1 != qemu && -s $2.io0.disks && -s $2.io1.disks ]] || return 1
    local k f v a=() b=()
    for f in io0 io1; do
        for k in reads writes read_time_ns write_time_ns; do
            v=$(grep -o "\"$k\": *[0-9]*" "$2.$f.disks" | head -n 1)
            v=${v##*[: ]}
            [[ $f == io0 ]] && a+=("${v:-0}") || b+=("${v:-0}")
        done
    done
    awk -v r="$((b[0] - a[0]))" -v w="$((b[1] - a[1]))" -v rt="$((b[2] - a[2]))" -v wt="$((b[3] - a[3]))" \
        'BEGIN{if (r > 0) printf "%.0f ", rt / r / 1000; else printf "- ";
               if (w > 0) printf "%.0f", wt / w / 1000; else printf "-"}'
}

# hang_report NAME PID: what a VM that did not finish was doing (its threads;
# for hvmm also its disks through the API, twice 5 s apart: are requests
# stuck in flight, do the counters move?).
hang_report() {
    local t i
    for t in /proc/"$2"/task/*; do
        echo "thread ${t##*/} $(cat "$t/comm") state $(awk '{print $3, "utime", $14, "stime", $15}' "$t/stat")" \
             "wchan $(cat "$t/wchan")"
    done
    [[ $1 == qemu ]] && return
    for i in 1 2; do
        echo "hvctl disk list ($i):"
        timeout 15 "$HVCTL" --api "$D/api.sock" disk list 2>&1 || echo "(hvctl: status $?)"
        timeout 15 "$HVCTL" --api "$D/api.sock" status 2>&1 || echo "(hvctl: status $?)"
        ((i == 2)) || sleep 5
    done
}

# run_vm NAME RUN: one VM on a fresh backing file; appends "TEST FIGURE" lines
# to $LOGDIR/NAME.data. Fails when the guest reset before any figure or did
# not boot (the caller boots it again, at most boot_tries times in all).
run_vm() {
    local name=$1 i=$2 log=$LOGDIR/$1-$2.log f pid st t0 t v line= err= cmd booted=
    rm -rf "$D" && mkdir -p "$D"
    case $name in
        hvmm) f=$D/disk.raw; truncate -s "$size" "$f"; hvmm_cmd "$f,format=raw" ;;
        vhdx) f=$D/disk.vhdx
              "$HVCTL" vhd new "$f" --size "$size" >"$log.hvctl" 2>&1 ||
                  { say "$name run $i: hvctl vhd new failed: $(cat "$log.hvctl")"; return; }
              hvmm_cmd "$f,format=vhdx" ;;
        qemu) f=$D/disk.raw; truncate -s "$size" "$f"; qemu_cmd "$f" ;;
    esac
    t0=$SECONDS
    # The VM's console also goes to the software host's console (lines
    # "vm| ...", in the console log only): if the software host stops, what
    # the VM said last is still there.
    "${cmd[@]}" </dev/null > >(tee "$log" | sed "s/^/vm| $name-$i: /") 2>&1 &
    pid=$!
    # Until it exits, its time is up, the guest says a job is stuck (60 s
    # past its end) or it is not in user space after boot_timeout s.
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - t0 < vm_timeout)) &&
          ! expect_in "$log" '##e2e## stuck='; do
        if [[ -z $booted ]] && ((SECONDS - t0 >= boot_timeout)); then
            if expect_in "$log" "$GUEST_UP"; then booted=yes; else booted=no; break; fi
        fi
        for v in io0 io1; do
            [[ -e $log.$v ]] || ! expect_in "$log" "##e2e## $v=" || {
                kvm_stats "$pid" >"$log.$v"
                if [[ $v == io0 ]]; then trace_hist on; else trace_dump "$log"; trace_hist off; fi
                [[ $name == qemu ]] || timeout 10 "$HVCTL" --api "$D/api.sock" disk list >"$log.$v.disks" 2>&1
            }
        done
        # Each pass forks a few greps: once a second keeps that churn (which
        # the 2-CPU software host pays for while a VM is measured, and which
        # seems to make its guests reset more often) small.
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        hang_report "$name" "$pid" >"$log.hang" 2>&1
        # A process that SIGKILL does not end within 30 s is stuck in the
        # kernel: say so and go on without it.
        kill -KILL "$pid" 2>/dev/null
        for v in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if ! kill -0 "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null; else
            echo "still there 30 s after SIGKILL: $(tr '\0' ' ' </proc/"$pid"/cmdline | cut -c1-60);" \
                 "state $(awk '{print $3}' /proc/"$pid"/stat); stack:"
            cat /proc/"$pid"/stack 2>&1
            for t in /proc/"$pid"/task/*; do echo "thread ${t##*/}: $(tr '\n' ' ' <"$t"/stack 2>/dev/null)"; done
        fi >>"$log.hang" 2>&1
        st=124
    else
        wait "$pid" && st=0 || st=$?
    fi
    sleep 2  # tee writes the rest of the log
    if ! expect_in "$log" '##e2e## done=yes'; then
        if expect_in "$log" '##e2e## stuck='; then
            err="a job did not finish: $(guest_value "$log" stuck); stopped after $((SECONDS - t0)) s"
        elif [[ $booted == no ]]; then err="the guest was not in user space after $boot_timeout s"
        elif ((st == 124)); then err="did not finish within $vm_timeout s"
        elif [[ $name != qemu ]] && ((st == 4)); then err="the guest reset (hvmm --no-reboot: status 4)"
        else err="exited with status $st before finishing"; fi
    fi
    v=$(guest_value "$log" error)
    [[ -z $v ]] || err+="${err:+; }guest: $v"
    v=$(guest_value "$log" kmsg_errors)
    [[ -z $v || $v == 0 ]] || err+="${err:+; }$v kernel messages about disk errors"
    for t in fill "${tests[@]}"; do
        v=$(guest_value "$log" "fio_$t")
        [[ $t != fill ]] || v=$(guest_value "$log" fill)
        if [[ $v =~ ^[0-9.]+\ [0-9]+$ ]]; then
            echo "$t $(figure "$t" "$v")" >>"$LOGDIR/$name.data"
            line+=" $t $(figure "$t" "$v")"
        elif [[ -n $v ]]; then
            err+="${err:+; }$t: $v"
        fi
    done
    exits_per_request "$name" "$log" && line+=" exits/request $(awk '$1 == "exits" {print $2}' "$log.exits")"
    v=$(host_time "$name" "$log") && line+=" host-us/read,write ${v/ /,}"
    say "$name run $i ($((SECONDS - t0)) s):${line:- no figures}"
    if [[ -n $err ]]; then
        say "$name run $i: $err; the end of $(basename "$log"):"
        tail -n 25 "$log" | tr -d '\r' | while IFS= read -r v; do say "| $v"; done
        [[ ! -s $log.hang ]] || while IFS= read -r v; do say "| $v"; done <"$log.hang"
    fi
    # Keep the image's own view of itself after a VHDX run.
    if [[ $name == vhdx ]]; then
        "$HVCTL" vhd info "$f" >"$log.info" 2>&1
        "$HVCTL" vhd check "$f" >"$log.check" 2>&1 ||
            say "$name run $i: hvctl vhd check: $(tail -n 3 "$log.check" | tr '\n' ' ')"
    fi
    rm -rf "$D"
    # A guest that reset before any job gave a figure, or that never got to
    # user space: worth another boot.
    [[ $booted != no && ($st != 4 || -n $line) ]]
}

median() { sort -n | awk '{v[NR]=$1} END{if (NR) print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
med() { awk -v t="$2" '$1 == t {print $2}' "$LOGDIR/$1.data" 2>/dev/null | median; }
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.2f", a / b}'; }
nruns() { awk -v t="$2" '$1 == t' "$LOGDIR/$1.data" 2>/dev/null | wc -l; }

grep -q " /sys/kernel/debug " /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
# The software host's own errors (OOM, lockups, RCU stalls, hung tasks) on its
# console, and a plain line every 30 s (in the console log, not a result):
# if these stop, the software host itself stopped, not just a VM.
# The file system the disk images live on (discard: a deleted image gives
# its memory back to /tmp).
fs_bytes=$(($(numfmt --from=iec "$size") * 2 + (64 << 20)))
case $fs in
    xfs) mkfs=(mkfs.xfs -q -f) ;;
    ext4) mkfs=(mkfs.ext4 -q -F) ;;
    *) verdict bench-storage "BENCH_FS=$fs: xfs or ext4"; exit 0 ;;
esac
truncate -s "$fs_bytes" /tmp/bench-fs.img && "${mkfs[@]}" /tmp/bench-fs.img &&
    mkdir -p /mnt/bench-storage && mount -o loop,discard /tmp/bench-fs.img /mnt/bench-storage ||
    { verdict bench-storage "cannot make the $fs file system for the images"; exit 0; }
dmesg -n 5   # warnings too: the backtraces of soft lockups and RCU stalls
# Write dirty page cache back within about a second rather than in bursts
# 30 s after it was written (the defaults): a burst (the fill's 256 MiB,
# through XFS and the loop device) costs the software host's CPUs seconds
# and lands on whichever job runs then, for either VMM. Steady writeback is
# paid by each write job itself.
sysctl -q -w vm.dirty_expire_centisecs=100 vm.dirty_writeback_centisecs=50 ||
    say "storage: cannot set the writeback sysctls; figures will be noisier"
(while sleep 30; do
    echo "host-tick up $(cut -d' ' -f1 /proc/uptime) load $(cut -d' ' -f1-3 /proc/loadavg)" \
         "avail_kb $(awk '/^MemAvailable/{print $2}' /proc/meminfo)" \
         "$(ps -o pid,stat,rss,comm 2>/dev/null | grep -E 'hvmm|qemu|fio' | tr -s ' ' | tr '\n' ';')"
 done) </dev/null &
ticker=$!
[[ -x $HVMM ]] || { vms=(qemu); say "hvmm: $HVMM not found"; }
say "storage: $runs runs of ${vms[*]} in turn; $mem, $cpus vCPUs; $size disk on $fs (loop device over tmpfs);" \
    "fio O_DIRECT libaio, $runtime s per job after a 1 s ramp"
# On some machines the software host dies every few minutes (tests/e2e/README.md);
# the runner then boots another, which runs this again. Each finished VM run
# is saved to the runner's share (E2E_SHARE), the whole of $LOGDIR at once
# (its list of finished runs included), so the next host takes up from the
# run after it instead of starting over; a run cut short is run again whole.
saved=${E2E_SHARE:+$E2E_SHARE/$SCENARIO.saved}
if [[ -n $saved && -s $saved/finished ]]; then
    cp -r "$saved/." "$LOGDIR/" ||
        { verdict bench-storage "cannot restore the runs saved in $saved"; exit 0; }
    say "storage: a new software host; taking up after the runs saved by the last one:" \
        "$(tr '\n' ',' <"$LOGDIR/finished" | sed 's/,$//')"
fi
save_run() {  # NAME RUN
    echo "$1 $2" >>"$LOGDIR/finished"
    [[ -n $saved ]] || return 0
    rm -rf "$saved.new" && cp -r "$LOGDIR" "$saved.new" && rm -rf "$saved" && mv "$saved.new" "$saved" ||
        say "storage: cannot save $1 run $2 to $saved; a new software host would run it again"
}
for ((i = 1; i <= runs; i++)); do
    for v in "${vms[@]}"; do
        grep -qx "$v $i" "$LOGDIR/finished" 2>/dev/null && continue
        for ((try = 1; ; try++)); do
            run_vm "$v" "$i" && break
            ((try < boot_tries)) || break
            for f in "$LOGDIR/$v-$i".log*; do mv "$f" "${f/.log/.log.try-$try}"; done
            say "$v run $i: booting it again (try $((try + 1)) of $boot_tries)"
        done
        save_run "$v" "$i"
    done
done

say "medians of $runs runs (MiB/s for sequential, IOPS for random; runs counted in brackets"
say "where fewer succeeded); hvmm = storvsp on a raw file, qemu = virtio-blk on a raw file,"
say "vhdx = storvsp on a dynamic VHDX; fill = the first write of the whole disk, 1 MiB, qd32:"
say "$(printf '%-15s %-6s %10s %10s %10s %10s %9s' test unit hvmm qemu hvmm/qemu vhdx vhdx/hvmm)"
met_q=0 met_v=0 n_q=0 n_v=0
for t in "${tests[@]}" fill; do
    h=$(med hvmm "$t") q=$(med qemu "$t") x=$(med vhdx "$t")
    rq=$(ratio "$h" "$q") rx=$(ratio "$x" "$h")
    cols=()
    for v in hvmm qemu vhdx; do
        c=$(med $v "$t")
        n=$(nruns $v "$t")
        ((n == runs)) || c="${c:--} [$n]"
        cols+=("${c:--}")
    done
    if [[ $t != fill ]]; then
        [[ -z $rq ]] || { n_q=$((n_q + 1)); awk -v r="$rq" 'BEGIN{exit !(r >= 1.2)}' && met_q=$((met_q + 1)); }
        [[ -z $rx ]] || { n_v=$((n_v + 1)); awk -v r="$rx" 'BEGIN{exit !(r >= 0.9)}' && met_v=$((met_v + 1)); }
    fi
    say "$(printf '%-15s %-6s %10s %10s %10s %10s %9s' "$t" "$(unit "$t")" "${cols[0]}" "${cols[1]}" \
        "${rq:--}" "${cols[2]}" "${rx:--}")"
done
say "goal hvmm/qemu >= 1.2: met on $met_q of $n_q lines; goal vhdx/hvmm >= 0.9: met on $met_v of $n_v lines"
if ls "$LOGDIR"/*.exits >/dev/null 2>&1; then
    say "KVM exits etc. per disk request over the jobs, medians (KVM debugfs; timer exits included):"
    say "$(printf '%-18s %10s %10s %10s' counter hvmm qemu vhdx)"
    for c in "${counters[@]}"; do
        cols=() any=
        for v in hvmm qemu vhdx; do
            x=$(med "$v.$c" exits)
            [[ -z $x ]] || any=1
            cols+=("${x:--}")
        done
        [[ -z $any ]] || say "$(printf '%-18s %10s %10s %10s' "$c" "${cols[@]}")"
    done
fi
kill "$ticker" 2>/dev/null
[[ -z $saved ]] || rm -rf "$saved"
pass bench-storage
