# sigterm: once the guest is in user space, SIGTERM must make hvmm exit within
# 15 s.
. "$E2E_LIB/host.sh"

log=$LOGDIR/sigterm.log
start_guest "$log" --cpus 2 --memory 512M
if wait_for "$log" '##e2e## idle=yes' 240; then
    stop_hvmm TERM 15 && st=0 || st=$?
    if ((st == 124)); then fail sigterm "hvmm still running 15 s after SIGTERM"
    else pass sigterm; fi
else
    stop_hvmm KILL 5 || true
    fail sigterm "guest never reached user space"
fi
