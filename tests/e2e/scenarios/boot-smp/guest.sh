# boot-smp guest: report what the guest sees, then return (/init powers off).
report nproc "$(nproc)"
report cpuinfo "$(grep -c '^processor' /proc/cpuinfo)"
report memtotal_kb "$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
