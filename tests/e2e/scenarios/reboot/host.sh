# reboot: a guest reboot must restart the VM inside the same hvmm process. The
# guest reboots on every boot (an initramfs keeps no state across a reset), so
# the user-space marker must appear twice while hvmm keeps running; then hvmm
# must exit within 10 s of SIGTERM (any status). With --no-reboot the same
# guest's reboot must end hvmm with status 4 after one boot.
. "$E2E_LIB/host.sh"

log=$LOGDIR/reboot.log
start_guest "$log" --cpus 2 --memory 512M
wait_for "$log" "$GUEST_UP" 360 2 && rc=0 || rc=$?
boots=$(count_in "$log" "$GUEST_UP")
case $rc in
    0) errs= ;;
    2) wait_pid "$HVMM_PID" 1 && st=0 || st=$?
       errs="hvmm exited (status $st) after $boots boot(s) instead of restarting the guest; " ;;
    *) errs="only $boots boot(s) within 360 s; " ;;
esac
stop_hvmm TERM 10 && st=0 || st=$?
((st != 124)) || errs+="hvmm did not exit within 10 s of SIGTERM; "

log=$LOGDIR/no-reboot.log
start_guest "$log" --cpus 1 --memory 256M --no-reboot
wait_pid "$HVMM_PID" 240 && st=0 || st=$?
boots=$(count_in "$log" "$GUEST_UP")
case $st in
    4) ((boots == 1)) || errs+="--no-reboot: $boots boots before status 4; "
       expect_in "$log" 'guest reset: exiting' || errs+="--no-reboot: hvmm did not say why it exited; " ;;
    124) errs+="--no-reboot: hvmm still running after 240 s ($boots boots); " ;;
    *) errs+="--no-reboot: hvmm exited with status $st after $boots boots, not 4; " ;;
esac
verdict reboot "$errs"
