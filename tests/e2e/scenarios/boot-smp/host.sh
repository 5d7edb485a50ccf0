# boot-smp: hvmm boots the guest with N vCPUs and M MiB; the guest must reach
# user space, see N processors and a MemTotal of at most M and at least
# M - (15% of M + 32 MiB), and hvmm must exit 0 after the guest powers off.
# (The stock kernel keeps ~45 MiB for itself: under QEMU 512M gives MemTotal
# 466396 kB (89%), 256M gives 208732 kB (80%), so a flat 85% fails for 256M.)
. "$E2E_LIB/host.sh"

check_boot() {  # NAME CPUS MEMORY_MIB
    local name=$1 cpus=$2 mib=$3 log=$LOGDIR/$1.log rc errs= v kb
    boot_guest "$log" 240 --cpus "$cpus" --memory "${mib}M" && rc=0 || rc=$?
    ((rc == 0)) || errs+="hvmm exited with status $rc; "
    expect_in "$log" "$GUEST_UP" || errs+="guest never reached user space; "
    v=$(guest_value "$log" nproc)
    [[ $v == "$cpus" ]] || errs+="nproc=${v:-none}, want $cpus; "
    v=$(guest_value "$log" cpuinfo)
    [[ $v == "$cpus" ]] || errs+="/proc/cpuinfo lists ${v:-no} processors, want $cpus; "
    kb=$(guest_value "$log" memtotal_kb)
    if [[ -z $kb ]]; then errs+="no MemTotal reported; "
    elif ((kb > mib * 1024 || kb < (mib * 85 / 100 - 32) * 1024)); then
        errs+="MemTotal ${kb} kB is not within $((mib * 85 / 100 - 32))..${mib} MiB; "
    fi
    verdict "$name" "$errs"
}

check_boot boot-smp-1 1 512
check_boot boot-smp-2 2 512
check_boot boot-smp-4 4 512
check_boot boot-smp-256m 1 256
