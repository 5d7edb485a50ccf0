# hyperv guest: report what Linux found of Hyper-V, bind hv_utils, wait for
# time sync to set the clock, then idle until the host shuts us down. A real
# init would power off on /sbin/poweroff; this one says so, then does.
dmesg -n 1
report hypervisor "$(dmesg | sed -n 's/.*Hypervisor detected: //p' | head -n 1)"
report hints "$(dmesg | sed -n 's/.*Hyper-V: privilege flags.* hints \(0x[0-9a-f]*\).*/\1/p' | head -n 1)"
load_module hv_vmbus hv_utils
i=0
while [ "$(ls /sys/bus/vmbus/drivers/hv_utils 2>/dev/null | grep -c -)" -lt 3 ] && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i + 1))
done
report vmbus_version "$(dmesg | sed -n 's/.*Vmbus version:\([0-9.]*\).*/\1/p' | tail -n 1)"
report clocksource "$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
report clockevent "$(cat /sys/devices/system/clockevents/clockevent0/current_device)"
report nproc "$(nproc)"
for d in /sys/bus/vmbus/drivers/hv_utils/*-*; do
    [ -e "$d/class_id" ] && report bound "$(cat "$d/class_id")"
done
# hvmm gives no RTC time: a clock past 2001 was set by time sync.
i=0
while [ "$(date +%s)" -lt 1000000000 ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
# Print the second at the moment it turns, so the host can compare clocks.
s=$(date +%s)
while [ "$(date +%s)" = "$s" ]; do :; done
report clock "$(date +%s)"
cat >/sbin/poweroff <<'EOS'
#!/bin/sh
echo "##e2e## shutdown=clean" >/dev/console
sync
exec /bin/busybox poweroff -f
EOS
chmod +x /sbin/poweroff
report idle yes
# hyperv.reboot: reboot a few seconds later,
# every boot; the host stops the VM after the second.
if grep -q hyperv.reboot /proc/cmdline; then sleep 5; reboot -f; fi
while :; do sleep 1; done
