# demo console (software host side): run hvmm with the demo guest on the
# host's serial console, which is the terminal running scripts/demo.
. "$E2E_LIB/host.sh"
stty raw -echo 2>/dev/null || true
"$HVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
    --cmdline "$(guest_cmdline)" --memory 512M --cpus 2
rc=$?
stty sane 2>/dev/null || true
echo "hvmm exited with status $rc"
