# storage-crash guest: write numbered records across a dynamic VHDX, each to
# a new 32 MiB block (so each allocates one through the VHDX log), flush each
# (conv=fsync: SYNCHRONIZE CACHE) and only then report it; unflushed writes
# go on in between. The host kills hvmm mid-way.
load_module hv_vmbus hv_storvsc sd_mod
i=0
while [ -z "$(ls /sys/bus/scsi/devices/*:0:0:0/block 2>/dev/null)" ] && [ $i -lt 300 ]; do
    sleep 0.2; i=$((i + 1))
done
a=/dev/$(ls /sys/bus/scsi/devices/*:0:0:0/block | head -n 1)
report ready yes
n=0
while [ $n -lt 120 ]; do
    yes "hvmm-crash-$n" | head -c 65536 | dd of="$a" bs=64k seek=$((n * 520)) conv=fsync 2>/dev/null
    report flushed $n
    # Not flushed: may or may not survive, must not break the image.
    head -c 1048576 /dev/urandom | dd of="$a" bs=64k seek=$((n * 520 + 260)) 2>/dev/null
    n=$((n + 1))
done
report done yes
