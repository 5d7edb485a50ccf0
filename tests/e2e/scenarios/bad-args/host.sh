# bad-args: invalid command lines must make hvmm exit with status 2 and print
# exactly one non-empty line on stderr, without booting anything.
. "$E2E_LIB/host.sh"

check_args() {  # NAME ARGS...
    local name=$1 out=$LOGDIR/$1.out err=$LOGDIR/$1.err st lines errs=; shift
    "$HVMM" "$@" </dev/null >"$out" 2>"$err" &
    wait_pid $! 30 && st=0 || st=$?
    ((st == 2)) || errs+="exit status $st, want 2; "
    lines=$(grep -c . "$err" || true)
    ((lines == 1)) || errs+="$lines non-empty lines on stderr, want 1; "
    verdict "$name" "$errs"
}

k=(--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline)")
check_args bad-args-missing-kernel run --kernel /nonexistent/bzImage --initrd "$GUEST_INITRD"
check_args bad-args-memory-unparseable run "${k[@]}" --memory lots
check_args bad-args-memory-too-large run "${k[@]}" --memory 1T
check_args bad-args-cpus-0 run "${k[@]}" --cpus 0
check_args bad-args-cpus-65 run "${k[@]}" --cpus 65
