# storage guest: hv_storvsc finds hvmm's disks; what it does with them is set
# by storage.phase= on the kernel command line (see host.sh).
phase=
for w in $(cat /proc/cmdline); do
    case $w in storage.phase=*) phase=${w#storage.phase=} ;; esac
done
# storage.debug: kernel messages on the console too.
grep -q storage.debug /proc/cmdline && dmesg -n 8
load_module crc32c_generic
# A sub-channel for every other vCPU (Linux's default is one per 4).
LOAD_ARGS_hv_storvsc=storvsc_vcpus_per_sub_channel=1 load_module hv_vmbus hv_storvsc sd_mod ext4

# The block device of controller 0's LUN $1 (target 0), or nothing.
disk_of() {
    for d in /sys/bus/scsi/devices/*:0:0:"$1"/block/*; do
        [ -e "$d" ] && { echo "/dev/${d##*/}"; return; }
    done
}
# Wait up to $2 seconds for LUN $1 to come (or, with $3 = gone, to go).
wait_lun() {
    i=0
    while [ $i -lt $(($2 * 5)) ]; do
        d=$(disk_of "$1")
        if [ "${3:-}" = gone ]; then [ -z "$d" ] && return 0
        else [ -n "$d" ] && [ -b "$d" ] && return 0; fi
        sleep 0.2; i=$((i + 1))
    done
    return 1
}
# 64 KiB of a pattern the host can make too.
pattern() { yes "hvmm-$1" | head -c 65536; }

# VMBus channels of the SCSI controller that holds LUN $1.
channels_of() {
    h=$(ls -d /sys/bus/scsi/devices/*:0:0:"$1" | head -n 1)
    h=${h##*/}; h=${h%%:*}
    ls "/sys/class/scsi_host/host$h/device/../channels" | wc -l
}

basic() {
    for l in 0 2 3 5; do wait_lun $l 60 || report missing_lun "$l"; done
    # LUN 2 is on the second controller: another SCSI host.
    h0=$(ls -d /sys/bus/scsi/devices/*:0:0:0) h2=$(ls -d /sys/bus/scsi/devices/*:0:0:2)
    h0=${h0##*/} h2=${h2##*/}
    [ "${h0%%:*}" != "${h2%%:*}" ] && report two_hosts yes || report two_hosts "no ($h0 $h2)"
    report channels "$(channels_of 0)"
    report size_lun2 "$(blockdev --getsize64 "$(disk_of 2)")"
    a=$(disk_of 0) b=$(disk_of 3) ro=$(disk_of 5)
    for l in 0 3 5; do report size_lun$l "$(blockdev --getsize64 "$(disk_of $l)")"; done
    report ro_flag "$(cat /sys/block/${ro#/dev/}/ro)"
    report ro_sha "$(head -c 1048576 "$ro" | sha256sum | cut -d' ' -f1)"
    if pattern ro | dd of="$ro" bs=64k count=1 oflag=direct conv=fsync 2>/dev/null; then
        report ro_write accepted
    else
        report ro_write refused
    fi
    mkfs.ext4 -q -F "$a" && mkfs.ext4 -q -F "$b" || report mkfs failed
    mkdir -p /mnt/a /mnt/b
    mount -t ext4 "$a" /mnt/a && mount -t ext4 "$b" /mnt/b || report mount failed
    # Both disks at once: a big file on b while small ones go to a.
    dd if=/dev/urandom of=/mnt/b/big bs=1M count=96 conv=fsync 2>/dev/null &
    writer=$!
    for n in 1 2 3 4 5 6 7 8; do
        dd if=/dev/urandom of=/mnt/a/f$n bs=64k count=$((n * 16)) 2>/dev/null
    done
    (cd /mnt/a && sha256sum f* >SUMS)
    wait $writer || report big_write failed
    (cd /mnt/b && sha256sum big >SUMS)
    sync
    report sums "$(sha256sum /mnt/a/SUMS | cut -d' ' -f1)"
    umount /mnt/a /mnt/b
    echo 3 >/proc/sys/vm/drop_caches
    mount -t ext4 "$a" /mnt/a && mount -t ext4 "$b" /mnt/b || report remount failed
    (cd /mnt/a && sha256sum -c -s SUMS) && ca=ok || ca=bad
    (cd /mnt/b && sha256sum -c -s SUMS) && cb=ok || cb=bad
    report readback "$ca,$cb"
    rm /mnt/b/big
    sync
    report fstrim "$(fstrim -v /mnt/b 2>&1 | tr ' ' '_')"
    umount /mnt/a /mnt/b
}

verify() {
    wait_lun 0 60 || report missing_lun 0
    a=$(disk_of 0)
    mkdir -p /mnt/a
    mount -t ext4 "$a" /mnt/a || report mount failed
    report sums "$(sha256sum /mnt/a/SUMS | cut -d' ' -f1)"
    (cd /mnt/a && sha256sum -c -s SUMS) && report persist ok || report persist bad
    umount /mnt/a
}

case $phase in
basic) basic ;;
verify) verify ;;
*) report error "unknown storage.phase '$phase'" ;;
esac
report done yes
