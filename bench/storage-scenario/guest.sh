# bench/storage-scenario/guest.sh — runs in the benchmark guest (busybox sh);
# see host.sh. Kernel command line: bench.disk=scsi (hvmm: hv_storvsc) or
# virtio (QEMU: virtio-blk), bench.size=BYTES of the device to use,
# bench.runtime=SECONDS per fio job, bench.tests=NAME,... (default: all).
# Writes the region once (1 MiB, queue depth 32), then runs each fio job on
# the raw block device (O_DIRECT, libaio) and reports
# "##e2e## fio_NAME=KIB_PER_S IOPS" per job.
disk=scsi size= runtime=5 tests=
for w in $(cat /proc/cmdline); do
    case $w in
        bench.disk=*) disk=${w#*=} ;;
        bench.size=*) size=${w#*=} ;;
        bench.runtime=*) runtime=${w#*=} ;;
        bench.tests=*) tests=$(echo "${w#*=}" | tr , ' ') ;;
    esac
done
[ -n "$tests" ] || tests="seqread-qd1 seqread-qd32 seqwrite-qd1 seqwrite-qd32
    randread-qd1 randread-qd32 randwrite-qd1 randwrite-qd32"

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
report disk "$dev $(blockdev --getsize64 "$dev")"
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

# Preconditioning: every block of the region written once, so the reads
# read data and a dynamic VHDX has its blocks allocated before the jobs.
# mark KEY: the disk's requests completed so far (reads + writes), then 2 s
# idle for the host to read KVM's exit counters (see host.sh).
mark() { report "$1" "$(awk '{print $1 + $5}' /sys/block/${dev#/dev/}/stat)"; sleep 2; }
# settle: idle before a job, so that the host has written back what the job
# before it wrote (the software host writes back within about 1 s) and each
# job starts from the same state whatever ran before it.
settle() { sleep 3; }

echo "##e2e## start=fill"
report fill "$(fio_job fill write 1M 32)"
mark io0
for t in $tests; do
    qd=${t##*-qd} kind=${t%-qd*}
    case $kind in
        seqread) rw=read bs=128k ;;
        seqwrite) rw=write bs=128k ;;
        randread) rw=randread bs=4k ;;
        randwrite) rw=randwrite bs=4k ;;
        *) report error "unknown test $t"; continue ;;
    esac
    settle
    echo "##e2e## start=$t"
    report "fio_$t" "$(fio_job "$t" $rw $bs "$qd" --runtime="$runtime" --time_based --ramp_time=1)"
done
mark io1
# Where the disk's interrupts and the cross-CPU calls went, and which CPUs
# the guest thinks share a cache (blk-mq completes a request on the CPU that
# issued it unless the interrupted one shares its cache): in the console log.
echo "guest: rq_affinity $(cat /sys/block/${dev#/dev/}/queue/rq_affinity)" \
     "llc-sharing $(cat /sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list 2>/dev/null || echo none)" \
     "core-siblings $(cat /sys/devices/system/cpu/cpu0/topology/core_siblings_list)"
grep -E 'CAL|hyperv|vmbus|virtio|HYP|HVS|RES|LOC' /proc/interrupts | tr -s ' ' | sed 's/^/guest: irq /'
# The CPU topology the guest derived (what decides whether a completion on
# another CPU needs an IPI).
if grep -q bench.diag /proc/cmdline; then
grep -E 'vendor_id|cpu family|^model|physical id|core id|cpu cores|siblings|apicid' /proc/cpuinfo | sed 's/^/guest: diag /'
grep -o -w -E 'topoext|ht|cmp_legacy' /proc/cpuinfo | sort | uniq -c | sed 's/^/guest: diag flag /'
for d in /sys/devices/system/cpu/cpu*/cache/index*; do echo "guest: diag $d level $(cat $d/level) $(cat $d/type) shared $(cat $d/shared_cpu_list)"; done
mount -t debugfs none /sys/kernel/debug 2>/dev/null
for d in /sys/kernel/debug/sched/domains/cpu*/domain*; do echo "guest: diag $d $(cat $d/name) $(cat $d/flags)"; done
fi
# Kernel complaints about the disk (I/O errors, SCSI aborts or resets).
kmsg() { dmesg | grep -iE 'sd[a-z]|vd[a-z]|scsi|storvsc|blk_update|I/O error' |
         grep -iE 'error|abort|reset|timed? ?out|fail'; }
n=$(kmsg | wc -l)
report kmsg_errors "$n"
[ "$n" = 0 ] || kmsg | tail -n 20
report done yes
