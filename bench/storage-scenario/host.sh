# bench/storage-scenario/host.sh — runs inside the software KVM host (see
# bench/storage). Each run boots three VMs, with the same guest kernel,
# initrd, memory and vCPUs, each on a fresh backing file of BENCH_SIZE on a
# BENCH_FS file system, xfs (default) or ext4, as on a real host (the
# software host's own /tmp is tmpfs, which before Linux 6.6 cannot serve
# RWF_NOWAIT reads from its page cache; of these two only xfs takes
# RWF_NOWAIT buffered writes), made on a loop device over a file in /tmp:
#   hvmm  hvmm, synthetic SCSI (storvsp; guest hv_storvsc), a raw file;
#   qemu  QEMU+KVM, virtio-blk-pci on a raw file (cache=writeback, aio=threads:
#         QEMU's defaults);
#   vhdx  hvmm, synthetic SCSI, a dynamic VHDX (hvctl vhd new) of the same size.
# The VMs of a run are up at the same time, but only one of them works at a
# time: the host tells each guest (a command line on its console; guest.sh)
# to write its whole disk once (1 MiB blocks, queue depth 32: "fill"; on
# the dynamic VHDX this allocates its blocks), then runs each job on each
# VM in turn, 3 s apart: sequential read and write at 128 KiB and random
# read and write at 4 KiB, each at queue depth 1 and 32, fio on the raw
# block device with O_DIRECT and libaio for BENCH_RUNTIME s after a 1 s
# ramp. The VMs of a job run seconds apart, so the software host's slow
# spells (it is emulated, and its speed drifts by several times over
# minutes) fall on all of them alike; the order rotates from job to job and
# run to run. The ratios printed are medians of each run's own ratios.
# A job that fails is left out and reported; a VM whose guest says a job is
# stuck (60 s past its end), that does not answer in time, or that resets
# (a triple fault; --no-reboot, -no-reboot) is stopped, reported with the
# end of its console, its threads and, for hvmm, its disks' state from the
# API, and booted again on the same image for the run's next jobs. If the
# software host itself dies, the next one takes up from the run that was
# cut short.
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
# A job's answer is due within its runtime, its ramp and 60 s (the guest's
# own "stuck" report) and some slack; the fill's within 240 s. Guests here
# reset (triple-fault) or spin now and then early in their boot, hvmm's more
# often than QEMU's (tests/e2e/README.md): a VM that is not ready after
# boot_timeout s (a boot takes about 10) is booted again, at most boot_tries
# boots per VM and run.
job_timeout=$((runtime + 90)) fill_timeout=240 boot_tries=3 boot_timeout=120
D=/mnt/bench-storage/run

# panic=-1: a guest whose kernel panics (the emulation corrupts guest CPU
# state now and then, tests/e2e/README.md) resets at once, and so ends its
# VMM (--no-reboot, -no-reboot), instead of spinning until a timeout.
cmdline() { guest_cmdline "bench.disk=$1 bench.runtime=$runtime panic=-1"; }
hvmm_cmd() {  # DIR DISK-SPEC; the API socket is read for host times and when a VM hangs
    cmd=("$HVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(cmdline scsi)"
         --memory "$mem" --cpus "$cpus" --disk "$2" --api "$1/api.sock" --no-reboot)
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
# disk_stats NAME: for hvmm, its disk's request counts and times from the
# API ("reads N", "writes N", "read_time_ns N", ...; cached_*: requests
# done on the event loop, from the page cache).
disk_stats() {
    local k v
    [[ $1 != qemu ]] || return 0
    v=$(timeout 10 "$HVCTL" --api "$D/$1/api.sock" disk list 2>/dev/null) || return 0
    for k in reads writes read_time_ns write_time_ns cached_reads cached_writes parallel split write_behind; do
        grep -o "\"$k\": *[0-9]*" <<<"$v" | head -n 1 | tr -d '":'
    done
}
# With BENCH_TRACE=1, KVM's exits during each job are counted by kind with
# histogram triggers on KVM's trace events (exit code, MSR written or read,
# hypercall code, IPI vector), in the working VM's LOG.trace: for finding
# out what a request costs. The idle VMs' few exits count too. Adds a
# little time to each exit.
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
# trace_dump LOG TEST: the counts so far, per event, added to LOG.trace.
trace_dump() {
    local h
    [[ ${BENCH_TRACE:-} == 1 ]] || return 0
    for h in "${trace_hists[@]}"; do
        echo "== $2: ${h% *}"
        grep -v '^#' "$T/events/kvm/${h% *}/hist" 2>/dev/null | grep .
    done >>"$1.trace"
}

# The VMs of the current run: process, the write end of its console (a
# FIFO), console log, boots so far.
declare -A PID=() CON=() LOG=() BOOTS=()

# hang_report NAME: what a VM that did not answer was doing (its threads,
# its guest's exits over 1 s; for hvmm also its disks through the API,
# twice 5 s apart: are requests stuck in flight, do the counters move?).
hang_report() {
    local t i
    for t in /proc/"${PID[$1]}"/task/*; do
        echo "thread ${t##*/} $(cat "$t/comm") state $(awk '{print $3, "utime", $14, "stime", $15}' "$t/stat")" \
             "wchan $(cat "$t/wchan")"
    done
    trace_guest_exits "${PID[$1]}"
    [[ $1 == qemu ]] && return
    for i in 1 2; do
        echo "hvctl disk list ($i):"
        timeout 15 "$HVCTL" --api "$D/$1/api.sock" disk list 2>&1 || echo "(hvctl: status $?)"
        timeout 15 "$HVCTL" --api "$D/$1/api.sock" status 2>&1 || echo "(hvctl: status $?)"
        ((i == 2)) || sleep 5
    done
}

# stop_vm NAME RUN [WHY]: end a VM (SIGKILL if it still runs). With WHY, it
# failed: say so, with the end of its console and, when it still ran,
# hang_report. A process that SIGKILL does not end within 30 s is stuck in
# the kernel: say so and go on without it.
stop_vm() {
    local name=$1 i=$2 why=${3:-} pid=${PID[$1]:-} log=${LOG[$1]} con=${CON[$1]:-} v t st
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        [[ -z $why ]] || hang_report "$name" >"$log.hang" 2>&1
        kill -KILL "$pid" 2>/dev/null
        for v in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "still there 30 s after SIGKILL: $(tr '\0' ' ' </proc/"$pid"/cmdline | cut -c1-60);" \
                 "state $(awk '{print $3}' /proc/"$pid"/stat); stack:"
            cat /proc/"$pid"/stack 2>&1
            for t in /proc/"$pid"/task/*; do echo "thread ${t##*/}: $(tr '\n' ' ' <"$t"/stack 2>/dev/null)"; done
        fi >>"$log.hang" 2>&1
    fi
    wait "$pid" 2>/dev/null && st=0 || st=$?
    [[ -z $con ]] || exec {con}>&-
    unset "PID[$name]" "CON[$name]"
    [[ -n $why ]] || return 0
    sleep 2  # tee writes the rest of the log
    [[ $name == qemu ]] || ((st != 4)) || why+=" (the guest reset: hvmm --no-reboot status 4)"
    v=$(guest_value "$log" error)
    [[ -z $v ]] || why+="; guest: $v"
    say "$name run $i: $why; the end of $(basename "$log"):"
    tail -n 25 "$log" | tr -d '\r' | while IFS= read -r v; do say "| $v"; done
    [[ ! -s $log.hang ]] || while IFS= read -r v; do say "| $v"; done <"$log.hang"
}

# boot_vm NAME RUN new|again: start a VM, on a fresh image (new) or on the
# one it had (again, after a failure; the fill is not repeated), and wait
# until its guest is ready for commands. Boots again a guest that is not
# ready in time, while boots are left.
boot_vm() {
    local name=$1 i=$2 dir=$D/$1 f log cmd t0 fd
    while ((BOOTS[$name] < boot_tries)); do
        BOOTS[$name]=$((BOOTS[$name] + 1))
        log=$LOGDIR/$name-$i.log
        [[ ${BOOTS[$name]} == 1 ]] || log+=.boot-${BOOTS[$name]}
        LOG[$name]=$log
        if [[ $3 == new ]]; then
            rm -rf "$dir" && mkdir -p "$dir"
            case $name in
                hvmm | qemu) truncate -s "$size" "$dir/disk.raw" ;;
                vhdx) "$HVCTL" vhd new "$dir/disk.vhdx" --size "$size" >"$log.hvctl" 2>&1 ||
                          { say "$name run $i: hvctl vhd new failed: $(cat "$log.hvctl")"; return 1; } ;;
            esac
            mkfifo "$dir/console"
        fi
        case $name in
            hvmm) hvmm_cmd "$dir" "$dir/disk.raw,format=raw" ;;
            vhdx) hvmm_cmd "$dir" "$dir/disk.vhdx,format=vhdx" ;;
            qemu) qemu_cmd "$dir/disk.raw" ;;
        esac
        # The VM's console also goes to the software host's console (lines
        # "vm| ...", in the console log only): if the software host stops,
        # what the VM said last is still there.
        "${cmd[@]}" <"$dir/console" > >(tee "$log" | sed "s/^/vm| $name-$i: /") 2>&1 &
        PID[$name]=$!
        exec {fd}>"$dir/console"
        CON[$name]=$fd
        t0=$SECONDS
        while kill -0 "${PID[$name]}" 2>/dev/null && ((SECONDS - t0 < boot_timeout)); do
            expect_in "$log" '##e2e## (ready|done)=' && break
            sleep 1
        done
        if expect_in "$log" '##e2e## ready='; then
            return 0
        fi
        stop_vm "$name" "$i" "boot ${BOOTS[$name]} of $boot_tries: not ready after $((SECONDS - t0)) s"
        set -- "$name" "$i" again
    done
    return 1
}

# ask NAME RUN COMMAND KEY TIMEOUT: send COMMAND to the VM's guest and wait
# for its "##e2e## KEY=" line; on a failure the VM is stopped (false).
ask() {
    local name=$1 i=$2 log=${LOG[$1]} t0=$SECONDS why=
    echo "$3" >&"${CON[$name]}" || why="cannot write to its console"
    while [[ -z $why ]] && ! expect_in "$log" "##e2e## $4="; do
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then why="it exited during '$3'"
        elif expect_in "$log" "##e2e## stuck="; then why="'$3' did not finish: $(guest_value "$log" stuck)"
        elif ((SECONDS - t0 >= $5)); then why="no answer to '$3' within $5 s"
        else sleep 1; fi
    done
    [[ -z $why ]] && return 0
    stop_vm "$name" "$i" "$why"
    return 1
}

# run_job NAME RUN TEST: one job on one VM (booted again first if it failed
# earlier in this run). Its figure goes to $LOGDIR/NAME.data ("TEST FIGURE
# RUN"); the KVM counters' and the block layer's increase over it to
# LOG.kvm and LOG.disk, with the requests it completed.
run_job() {
    local name=$1 i=$2 t=$3 log v s0 d0
    [[ -n ${PID[$name]:-} ]] || boot_vm "$name" "$i" again || return 0
    log=${LOG[$name]}
    s0=$(kvm_stats "${PID[$name]}") d0=$(disk_stats "$name")
    trace_hist on
    ask "$name" "$i" "job $t" "req_$t" "$job_timeout" || { trace_hist off; return 0; }
    trace_dump "$log" "$t"
    trace_hist off
    v=$(guest_value "$log" "req_$t")
    awk -v n="$v" 'NR == FNR {a[$1] = $2; next} ($1 in a) && $2 ~ /^[0-9]+$/ {print $1, $2 - a[$1], n}' \
        <(echo "$s0") <(kvm_stats "${PID[$name]}") >>"$log.kvm"
    awk 'NR == FNR {a[$1] = $2; next} ($1 in a) {print $1, $2 - a[$1]}' \
        <(echo "$d0") <(disk_stats "$name") >>"$log.disk"
    v=$(guest_value "$log" "fio_$t")
    if [[ $v =~ ^[0-9.]+\ [0-9]+$ ]]; then
        echo "$t $(figure "$t" "$v") $i" >>"$LOGDIR/$name.data"
    else
        say "$name run $i: $t: ${v:-no figure}"
    fi
}

# run_summary NAME RUN: the VM's figures of this run on one line, with KVM
# exits per disk request and, for hvmm, the mean time a read and a write
# spent in its block layer (API read_time_ns, write_time_ns), the share
# of each done on the event loop (cached_reads, cached_writes) and the share
# of both given to an idle worker or split with one (parallel, split) and
# of writes reported done before written (write_behind) over its jobs;
# each counter per request in $LOGDIR/NAME.COUNTER.data ("exits VALUE").
run_summary() {
    local name=$1 i=$2 f line c v
    line=$(awk -v i="$i" '$3 == i {printf " %s %s", $1, $2}' "$LOGDIR/$name.data" 2>/dev/null)
    for f in "$LOGDIR/$name-$i".log "$LOGDIR/$name-$i".log.boot-*; do
        v=$(guest_value "$f" fill 2>/dev/null)
        [[ ! $v =~ ^[0-9.]+\ [0-9]+$ ]] || line=" fill $(figure fill "$v")$line"
    done
    f=$(ls "$LOGDIR/$name-$i".log*.kvm 2>/dev/null | tr '\n' ' ')
    if [[ -n $f ]]; then
        # shellcheck disable=SC2086  # the files' names have no spaces
        awk '{d[$1] += $2; n[$1] += $3} END {for (c in d) if (n[c] > 0) printf "%s %.1f\n", c, d[c] / n[c]}' \
            $f >"$LOGDIR/$name-$i.exits"
        for c in "${counters[@]}"; do
            awk -v c="$c" '$1 == c {print "exits", $2}' "$LOGDIR/$name-$i.exits" >>"$LOGDIR/$name.$c.data"
        done
        v=$(awk '$1 == "exits" {print $2}' "$LOGDIR/$name-$i.exits")
        [[ -z $v ]] || line+=" exits/request $v"
    fi
    f=$(ls "$LOGDIR/$name-$i".log*.disk 2>/dev/null | tr '\n' ' ')
    if [[ $name != qemu && -n $f ]]; then
        # shellcheck disable=SC2086
        line+=$(awk '{s[$1] += $2}
            function per(a, b, k) { return s[b] > 0 ? sprintf("%.0f", s[a] * k / s[b]) : "-" }
            END {s["rw"] = s["reads"] + s["writes"]
                 printf " host-us/read,write %s,%s cached%%/read,write %s,%s parallel%%,split%% %s,%s behind%% %s",
                 per("read_time_ns", "reads", 0.001), per("write_time_ns", "writes", 0.001),
                 per("cached_reads", "reads", 100), per("cached_writes", "writes", 100),
                 per("parallel", "rw", 100), per("split", "rw", 100),
                 per("write_behind", "writes", 100)}' $f)
    fi
    say "$name run $i:${line:- no figures}"
}

# run_round RUN: boot the VMs, fill their disks one by one, run each job
# on each VM in turn, end them.
run_round() {
    local i=$1 k n t v e ready=() order=()
    rm -rf "$D" && mkdir -p "$D"
    for v in "${vms[@]}"; do
        BOOTS[$v]=0
        if boot_vm "$v" "$i" new && ask "$v" "$i" fill fill "$fill_timeout"; then
            ready+=("$v")
        else
            say "$v run $i: left out of this run"
        fi
    done
    n=${#ready[@]}
    for ((k = 0; k < ${#tests[@]}; k++)); do
        t=${tests[k]}
        order=()
        for ((v = 0; v < n; v++)); do order+=("${ready[(v + i + k) % n]}"); done
        for v in "${order[@]}"; do
            # Quiet before each job: the host writes back what the job
            # before it wrote (within about 1 s here), so each job starts
            # from the same state whatever ran before it.
            sleep 3
            run_job "$v" "$i" "$t"
        done
    done
    for v in "${ready[@]}"; do
        [[ -n ${PID[$v]:-} ]] || continue
        if ask "$v" "$i" end "done" 60; then
            wait_pid "${PID[$v]}" 30 >/dev/null
            stop_vm "$v" "$i"
        fi
        e=$(guest_value "${LOG[$v]}" kmsg_errors)
        [[ -z $e || $e == 0 ]] || say "$v run $i: $e kernel messages about disk errors"
    done
    for v in "${ready[@]}"; do run_summary "$v" "$i"; done
    # Keep the image's own view of itself after a VHDX run.
    if [[ " ${ready[*]} " == *" vhdx "* ]]; then
        "$HVCTL" vhd info "$D/vhdx/disk.vhdx" >"$LOGDIR/vhdx-$i.log.info" 2>&1
        "$HVCTL" vhd check "$D/vhdx/disk.vhdx" >"$LOGDIR/vhdx-$i.log.check" 2>&1 ||
            say "vhdx run $i: hvctl vhd check: $(tail -n 3 "$LOGDIR/vhdx-$i.log.check" | tr '\n' ' ')"
    fi
    rm -rf "$D"
}

median() { sort -n | awk '{v[NR]=$1} END{if (NR) print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
med() { awk -v t="$2" '$1 == t {print $2}' "$LOGDIR/$1.data" 2>/dev/null | median; }
nruns() { awk -v t="$2" '$1 == t' "$LOGDIR/$1.data" 2>/dev/null | wc -l; }
# paired A B TEST: the median over the runs of A's figure over B's, counting
# the runs where both have one.
paired() {
    awk -v t="$3" '$1 == t {v[FILENAME == ARGV[1], $3] = $2; r[$3]}
        END {for (i in r) if (((1, i) in v) && ((0, i) in v) && v[0, i] > 0) printf "%.4f\n", v[1, i] / v[0, i]}' \
        "$LOGDIR/$1.data" "$LOGDIR/$2.data" 2>/dev/null | median | awk 'NF {printf "%.2f", $1}'
}

grep -q " /sys/kernel/debug " /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
# The file system the disk images live on (discard: a deleted image gives
# its memory back to /tmp).
fs_bytes=$(($(numfmt --from=iec "$size") * (${#vms[@]} + 1) + (64 << 20)))
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
# The software host's own errors (OOM, lockups, RCU stalls, hung tasks) on its
# console, and a plain line every 30 s (in the console log, not a result):
# if these stop, the software host itself stopped, not just a VM.
(while sleep 30; do
    echo "host-tick up $(cut -d' ' -f1 /proc/uptime) load $(cut -d' ' -f1-3 /proc/loadavg)" \
         "avail_kb $(awk '/^MemAvailable/{print $2}' /proc/meminfo)" \
         "$(ps -o pid,stat,rss,comm 2>/dev/null | grep -E 'hvmm|qemu|fio' | tr -s ' ' | tr '\n' ';')"
 done) </dev/null &
ticker=$!
[[ -x $HVMM ]] || { vms=(qemu); say "hvmm: $HVMM not found"; }
say "storage: $runs runs of ${vms[*]}, up together, each job on each in turn; $mem, $cpus vCPUs;" \
    "$size disks on $fs (loop device over tmpfs); fio O_DIRECT libaio, $runtime s per job after a 1 s ramp"
# On some machines the software host dies every few minutes (tests/e2e/README.md);
# the runner then boots another, which runs this again. Each finished run
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
save_run() {  # RUN
    echo "$1" >>"$LOGDIR/finished"
    [[ -n $saved ]] || return 0
    rm -rf "$saved.new" && cp -r "$LOGDIR" "$saved.new" && rm -rf "$saved" && mv "$saved.new" "$saved" ||
        say "storage: cannot save run $1 to $saved; a new software host would run it again"
}
for ((i = 1; i <= runs; i++)); do
    grep -qx "$i" "$LOGDIR/finished" 2>/dev/null && continue
    run_round "$i"
    save_run "$i"
done

say "medians of $runs runs (MiB/s for sequential, IOPS for random; runs counted in brackets"
say "where fewer succeeded); hvmm = storvsp on a raw file, qemu = virtio-blk on a raw file,"
say "vhdx = storvsp on a dynamic VHDX; fill = the first write of the whole disk, 1 MiB, qd32;"
say "the ratios are the medians of each run's ratio:"
say "$(printf '%-15s %-6s %10s %10s %10s %10s %9s' test unit hvmm qemu hvmm/qemu vhdx vhdx/hvmm)"
met_q=0 met_v=0 n_q=0 n_v=0
for t in "${tests[@]}"; do
    rq=$(paired hvmm qemu "$t") rx=$(paired vhdx hvmm "$t")
    cols=()
    for v in hvmm qemu vhdx; do
        [[ " ${vms[*]} " == *" $v "* ]] || { cols+=(-); continue; }
        c=$(med $v "$t")
        n=$(nruns $v "$t")
        ((n == runs)) || c="${c:--} [$n]"
        cols+=("${c:--}")
    done
    [[ -z $rq ]] || { n_q=$((n_q + 1)); awk -v r="$rq" 'BEGIN{exit !(r >= 1.2)}' && met_q=$((met_q + 1)); }
    [[ -z $rx ]] || { n_v=$((n_v + 1)); awk -v r="$rx" 'BEGIN{exit !(r >= 0.9)}' && met_v=$((met_v + 1)); }
    say "$(printf '%-15s %-6s %10s %10s %10s %10s %9s' "$t" "$(unit "$t")" "${cols[0]}" "${cols[1]}" \
        "${rq:--}" "${cols[2]}" "${rx:--}")"
done
say "goal hvmm/qemu >= 1.2: met on $met_q of $n_q lines; goal vhdx/hvmm >= 0.9: met on $met_v of $n_v lines"
if ls "$LOGDIR"/*.exits.data >/dev/null 2>&1; then
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
