/* x86 vCPU set-up on KVM: CPUID, local APIC wiring, and the boot CPU's
 * registers for the 64-bit Linux entry point. */
#ifndef HVMM_X86_CPU_H
#define HVMM_X86_CPU_H

#include <stdbool.h>
#include <stdint.h>

#include "x86/boot.h"

struct kvm_cpuid2;

/* Room in the table x86_supported_cpuid() returns. */
#define X86_CPUID_MAX_ENTRIES 256

/* KVM's supported CPUID, fetched once; free() the result. */
struct kvm_cpuid2 *x86_supported_cpuid(int kvm_fd);

/* Give vCPU `id` of `nr_cpus` its CPUID (topology and APIC ID patched in). */
int x86_set_cpuid(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned id, unsigned nr_cpus,
		  bool tsc_deadline);

/* LINT0 masked (no PIC), LINT1 as NMI. */
int x86_setup_lapic(int vcpu_fd);

/* Long mode, flat segments, paging on: the state the 64-bit boot protocol
 * asks for. */
int x86_setup_boot_cpu(int vcpu_fd, const struct boot_entry *entry);

#endif
