# bench/storage-scenario/guest.sh — runs in the benchmark guest (busybox sh);
# see host.sh. Kernel command line: bench.disk=scsi (hvmm: hv_storvsc) or
# virtio (QEMU: virtio-blk), bench.size=BYTES of the device to use,
# bench.runtime=SECONDS per fio job.
# The guest finds its disk, says "##e2e## ready=DEVICE BYTES", then does
# what the host writes to its console, one command a line, so that the host
# can run the same job on each of its VMs in turn:
#   fill        write the region once (1 MiB, queue depth 32): the reads read
#               data, a dynamic VHDX has its blocks allocated; reports
#               "##e2e## fill=KIB_PER_S IOPS"
#   job NAME    one fio job (seqread-qd1 ... randwrite-qd32) on the raw block
#               device (O_DIRECT, libaio): "##e2e## fio_NAME=KIB_PER_S IOPS"
#               (or an error), then "##e2e## req_NAME=N", the disk requests
#               it completed
#   end         where the disk's interrupts went, kernel complaints about
#               the disk, "##e2e## done=yes", and power off
disk=scsi size= runtime=5
for w in $(cat /proc/cmdline); do
    case $w in
        bench.disk=*) disk=${w#*=} ;;
        bench.size=*) size=${w#*=} ;;
        bench.runtime=*) runtime=${w#*=} ;;
    esac
done

find_disk() {
    for d in /sys/bus/scsi/devices/*:0:0:0/block/* /sys/block/vd*; do
        [ -e "$d" ] && { echo "/dev/${d##*/}"; return; }
    done
}
if [ "$disk" = virtio ]; then load_module virtio_pci virtio_blk
else load_module hv_vmbus hv_storvsc sd_mod; fi
i=0 dev=
while [ $i -lt 300 ]; do
    dev=$(find_disk)
    [ -n "$dev" ] && [ -b "$dev" ] && break
    dev=; sleep 0.2; i=$((i + 1))
done
if [ -z "$dev" ]; then
    report error "no disk appeared within 60 s"
    dmesg | tail -n 30
    report done no
    exit 0
fi
dmesg -n 4   # kernel errors (I/O errors, SCSI timeouts) on the console
[ -n "$size" ] || size=$(blockdev --getsize64 "$dev")

# fio_job NAME RW BS QD [extra...]: one job, prints "KIB_PER_S IOPS" (reads
# or writes, whichever the job did) or "error ..." on failure.
fio_job() {
    name=$1 rw=$2 bs=$3 qd=$4; shift 4
    # A job that has not finished 60 s after it should have (fill: after
    # 180 s): say what the block layer has in flight, every 60 s. (Not on
    # this function's stdout, which the caller reads to its end: the watcher
    # must not hold it open.)
    late=$((runtime + 60)); [ "$name" != fill ] || late=180
    (sleep $late
     while :; do
         echo "##e2e## stuck=$name inflight $(tr -s ' ' </sys/block/${dev#/dev/}/inflight)" >/dev/console
         sleep 60
     done) </dev/null >/dev/null 2>&1 &
    watch=$!
    out=$(fio --name="$name" --filename="$dev" --direct=1 --ioengine=libaio \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$size" --thread \
        --randrepeat=0 --norandommap --output-format=terse --terse-version=3 "$@" 2>&1)
    st=$?
    kill $watch
    line=$(echo "$out" | grep '^3;')
    if [ $st != 0 ] || [ -z "$line" ]; then
        echo "error exit $st: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
        return
    fi
    echo "$line" | awk -F';' '$5 != 0 {print "error fio error " $5; exit}
        {if ($7 + $48 == 0) print "error no I/O"; else print $7 + $48, int($8 + $49 + 0.5)}'
}

# requests: the disk's requests completed so far (reads + writes).
requests() { awk '{print $1 + $5}' /sys/block/${dev#/dev/}/stat; }

run_job() {
    t=$1 qd=${1##*-qd} kind=${1%-qd*}
    case $kind in
        seqread) rw=read bs=128k ;;
        seqwrite) rw=write bs=128k ;;
        randread) rw=randread bs=4k ;;
        randwrite) rw=randwrite bs=4k ;;
        *) report "fio_$t" "error unknown job"; report "req_$t" 0; return ;;
    esac
    echo "##e2e## start=$t"
    r0=$(requests)
    report "fio_$t" "$(fio_job "$t" $rw $bs "$qd" --runtime="$runtime" --time_based --ramp_time=1)"
    report "req_$t" $(($(requests) - r0))
}

# Where the disk's interrupts and the cross-CPU calls went, and which CPUs
# the guest thinks share a cache (blk-mq completes a request on the CPU that
# issued it unless the interrupted one shares its cache): in the console
# log; then the kernel's complaints about the disk (I/O errors, SCSI aborts
# or resets).
finish() {
    echo "guest: rq_affinity $(cat /sys/block/${dev#/dev/}/queue/rq_affinity)" \
         "llc-sharing $(cat /sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list 2>/dev/null || echo none)" \
         "core-siblings $(cat /sys/devices/system/cpu/cpu0/topology/core_siblings_list)"
    grep -E 'CAL|hyperv|vmbus|virtio|HYP|HVS|RES|LOC' /proc/interrupts | tr -s ' ' | sed 's/^/guest: irq /'
    kmsg() { dmesg | grep -iE 'sd[a-z]|vd[a-z]|scsi|storvsc|blk_update|I/O error' |
             grep -iE 'error|abort|reset|timed? ?out|fail'; }
    n=$(kmsg | wc -l)
    report kmsg_errors "$n"
    [ "$n" = 0 ] || kmsg | tail -n 20
    report done yes
}

stty -echo 2>/dev/null   # the host's commands are not echoed into the log
report ready "$dev $(blockdev --getsize64 "$dev")"
while read -r cmd arg; do
    case $cmd in
        fill) report fill "$(fio_job fill write 1M 32)" ;;
        job) run_job "$arg" ;;
        end) break ;;
    esac
done
finish
