# bench/boot-scenario/host.sh — runs inside the software KVM host (see bench/boot).
# Alternates hvmm and QEMU+KVM booting the same kernel, initrd, memory and
# vCPUs; for each run, times VMM start -> the guest's first user-space line,
# then lets the guest idle 3 s and reads the VMM's memory:
#   VmRSS (/proc/PID/status) = whole process resident set;
#   guest = Rss of the guest-RAM mappings in /proc/PID/smaps (every mapping of
#           at least half the guest's memory: the guest RAM the guest touched;
#           glibc's 64 MiB malloc arenas and thread stacks stay below that);
#   overhead = VmRSS - guest: what the VMM itself keeps resident.
# A run whose guest prints no user-space line within 180 s is left out of the
# figures and reported with the tail of its console.
. "$E2E_LIB/host.sh"

mem=${BENCH_MEMORY:-512M} cpus=${BENCH_CPUS:-2} runs=${BENCH_RUNS:-5}
mem_kb=$((${mem%M} * 1024))
cmdline=$(guest_cmdline)
hvmm=("$HVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$cmdline"
      --memory "$mem" --cpus "$cpus")
qemu=(qemu-system-x86_64 -enable-kvm -cpu host -M pc -nodefaults -no-user-config
      -serial stdio -display none -nic none -m "$mem" -smp "$cpus"
      -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$cmdline")

# measure NAME RUN CMD...: appends "boot_ms rss_kb guest_kb" to $LOGDIR/NAME.data
measure() {
    local name=$1 i=$2 log=$LOGDIR/$1-$2.log fd pid t0 t1= line rss guest end; shift 2
    t0=$EPOCHREALTIME end=$((EPOCHSECONDS + 180))
    exec {fd}< <(exec "$@" </dev/null 2>&1)
    pid=$!
    while ((EPOCHSECONDS < end)) && IFS= read -r -t $((end - EPOCHSECONDS + 1)) -u "$fd" line; do
        echo "$line" >>"$log"
        if [[ $line == *"$GUEST_UP"* ]]; then t1=$EPOCHREALTIME; break; fi
    done
    cat <&"$fd" >>"$log" &
    if [[ -n $t1 ]]; then
        sleep 3
        rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
        guest=$(awk -v min=$((mem_kb / 2)) '/^Size:/{size=$2} /^Rss:/{if (size >= min) g += $2} END{print g+0}' "/proc/$pid/smaps")
        echo "$(( (${t1/./} - ${t0/./}) / 1000 )) $rss $guest" >>"$LOGDIR/$name.data"
        say "$name run $i: $(( (${t1/./} - ${t0/./}) / 1000 )) ms, VmRSS $((rss / 1024)) MiB"
    else
        say "$name run $i: no user-space line within 180 s; the end of $(basename "$log"):"
        tail -n 15 "$log" | tr -d '\r' | while IFS= read -r line; do say "| $line"; done
    fi
    kill -TERM "$pid" 2>/dev/null
    wait_pid "$pid" 15 >/dev/null || true
    exec {fd}<&-
}

median() { sort -n | awk '{v[NR]=$1} END{if (NR) print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
col() { awk -v c="$2" '{print $c}' "$LOGDIR/$1.data" 2>/dev/null; }

vmms=(qemu)
[[ -x $HVMM ]] && vmms=(hvmm qemu) || say "hvmm: $HVMM not found"
for ((i = 1; i <= runs; i++)); do
    for v in "${vmms[@]}"; do
        if [[ $v == hvmm ]]; then measure hvmm "$i" "${hvmm[@]}"; else measure qemu "$i" "${qemu[@]}"; fi
    done
done

say "boot to first user-space line, ms ($runs runs each, alternating; $mem, $cpus vCPUs):"
for v in hvmm qemu; do
    if [[ -s $LOGDIR/$v.data ]]; then
        say "  $v: median $(col $v 1 | median) (runs: $(col $v 1 | tr '\n' ' '))"
    else
        say "  $v: no successful run"
    fi
done
h=$(col hvmm 1 | median) q=$(col qemu 1 | median)
[[ -n $h && -n $q ]] && say "  ratio hvmm/qemu: $(awk -v h="$h" -v q="$q" 'BEGIN{printf "%.2f", h/q}')"
say "resident memory 3 s after user space, MiB, medians (VmRSS = guest RAM touched + VMM overhead):"
for v in hvmm qemu; do
    [[ -s $LOGDIR/$v.data ]] || continue
    awk '{print $2 - $3}' "$LOGDIR/$v.data" >"$LOGDIR/$v.over"
    say "  $v: VmRSS $(($(col $v 2 | median) / 1024)) = guest $(($(col $v 3 | median) / 1024)) + overhead $(($(median <"$LOGDIR/$v.over") / 1024))"
done
pass bench
