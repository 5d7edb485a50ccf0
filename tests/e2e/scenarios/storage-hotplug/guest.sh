# storage-hotplug guest: watch hvmm's controller while the host adds a disk
# at LUN 1, removes it again and grows LUN 0; report what Linux sees.
load_module hv_vmbus hv_storvsc sd_mod
disk_of() {
    for d in /sys/bus/scsi/devices/*:0:0:"$1"/block/*; do
        [ -e "$d" ] && { echo "/dev/${d##*/}"; return; }
    done
}
# Poll (0.2 s) up to $1 seconds for the command in $2 to succeed.
until_ok() {
    i=0
    while [ $i -lt $(($1 * 5)) ]; do eval "$2" && return 0; sleep 0.2; i=$((i + 1)); done
    return 1
}
pattern() { yes "hvmm-$1" | head -c 4194304; }

until_ok 60 '[ -n "$(disk_of 0)" ]' || report error no-lun0
a=$(disk_of 0)
size0=$(blockdev --getsize64 "$a")
report size0 "$size0"
report ready yes
if until_ok 90 '[ -n "$(disk_of 1)" ] && [ -b "$(disk_of 1)" ]'; then
    b=$(disk_of 1)
    report hotadd_size "$(blockdev --getsize64 "$b")"
    pattern added | dd of="$b" bs=1M oflag=direct conv=fsync 2>/dev/null
    echo 3 >/proc/sys/vm/drop_caches
    if [ "$(head -c 4194304 "$b" | sha256sum)" = "$(pattern added | sha256sum)" ]; then
        report hotadd_io ok
    else
        report hotadd_io bad
    fi
else
    report hotadd_size none
fi
until_ok 90 '[ -z "$(disk_of 1)" ]' && report hotremove gone || report hotremove still-there
# The grown disk: its data stays, and the new end is usable.
pattern lun0 | dd of="$a" bs=1M oflag=direct conv=fsync 2>/dev/null
# Again in 4 KiB writes, over data the image now holds (see host.sh).
pattern lun0 | dd of="$a" bs=4k oflag=direct conv=fsync 2>/dev/null
report written yes
until_ok 90 '[ "$(blockdev --getsize64 "$a")" != "$size0" ]'
size=$(blockdev --getsize64 "$a")
report resized "$size"
pattern tail | dd of="$a" bs=1M seek=$((size / 1048576 - 4)) oflag=direct conv=fsync 2>/dev/null
echo 3 >/proc/sys/vm/drop_caches
ok=yes
[ "$(head -c 4194304 "$a" | sha256sum)" = "$(pattern lun0 | sha256sum)" ] || ok=no-head
[ "$(dd if="$a" bs=1M skip=$((size / 1048576 - 4)) 2>/dev/null | sha256sum)" = "$(pattern tail | sha256sum)" ] || ok=no-tail
report resized_io "$ok"
report done yes
