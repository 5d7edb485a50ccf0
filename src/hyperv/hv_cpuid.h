/* Hyper-V CPUID leaves 0x40000000-0x40000005 (TLFS "Feature and Interface
 * Discovery"; Linux hvgdk_mini.h). The values hvmm gives a guest. */
#ifndef HVMM_HV_CPUID_H
#define HVMM_HV_CPUID_H

#define HV_CPUID_VENDOR 0x40000000u
#define HV_CPUID_INTERFACE 0x40000001u
#define HV_CPUID_VERSION 0x40000002u
#define HV_CPUID_FEATURES 0x40000003u
#define HV_CPUID_ENLIGHTENMENTS 0x40000004u
#define HV_CPUID_LIMITS 0x40000005u
#define HV_CPUID_MAX_LEAF HV_CPUID_LIMITS

/* "Microsoft Hv" and "Hv#1" */
#define HV_SIGNATURE_EBX 0x7263694du
#define HV_SIGNATURE_ECX 0x666f736fu
#define HV_SIGNATURE_EDX 0x76482074u
#define HV_INTERFACE_HV1 0x31237648u

/* Version 10.0 build 14393, as QEMU reports. */
#define HV_VERSION_BUILD 0x00003839u
#define HV_VERSION_MAJOR_MINOR 0x000a0000u

/* 0x40000003 EAX: MSR access. */
#define HV_MSR_VP_RUNTIME_AVAILABLE (1u << 0)
#define HV_MSR_TIME_REF_COUNT_AVAILABLE (1u << 1)
#define HV_MSR_SYNIC_AVAILABLE (1u << 2)
#define HV_MSR_SYNTIMER_AVAILABLE (1u << 3)
#define HV_MSR_APIC_ACCESS_AVAILABLE (1u << 4)
#define HV_MSR_HYPERCALL_AVAILABLE (1u << 5)
#define HV_MSR_VP_INDEX_AVAILABLE (1u << 6)
#define HV_MSR_REFERENCE_TSC_AVAILABLE (1u << 9)
#define HV_ACCESS_FREQUENCY_MSRS (1u << 11)
/* 0x40000003 EBX: hypercalls. */
#define HV_POST_MESSAGES (1u << 4)
#define HV_SIGNAL_EVENTS (1u << 5)
/* 0x40000003 EDX: misc. */
#define HV_FEATURE_FREQUENCY_MSRS_AVAILABLE (1u << 8)
#define HV_STIMER_DIRECT_MODE_AVAILABLE (1u << 19)
/* 0x40000004 EAX: recommendations. */
#define HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED (1u << 2)
#define HV_X64_APIC_ACCESS_RECOMMENDED (1u << 3)
#define HV_X64_RELAXED_TIMING_RECOMMENDED (1u << 5)
#define HV_DEPRECATING_AEOI_RECOMMENDED (1u << 9)
#define HV_X64_CLUSTER_IPI_RECOMMENDED (1u << 10)
#define HV_X64_EX_PROCESSOR_MASKS_RECOMMENDED (1u << 11)
#define HV_SPINLOCK_NEVER_NOTIFY 0xffffffffu

/* What hvmm offers; intersected with what KVM can emulate. Deliberately
 * absent: partition ID, root and isolation privileges, extended
 * hypercalls, the guest idle MSR, crash MSRs and reenlightenment, which
 * either KVM lacks or hvmm does not serve (hyperv-cpu-interface.md 1). */
#define HVMM_HV_FEATURES_EAX                                                                  \
	(HV_MSR_VP_RUNTIME_AVAILABLE | HV_MSR_TIME_REF_COUNT_AVAILABLE | HV_MSR_SYNIC_AVAILABLE | \
	 HV_MSR_SYNTIMER_AVAILABLE | HV_MSR_APIC_ACCESS_AVAILABLE | HV_MSR_HYPERCALL_AVAILABLE |  \
	 HV_MSR_VP_INDEX_AVAILABLE | HV_MSR_REFERENCE_TSC_AVAILABLE | HV_ACCESS_FREQUENCY_MSRS)
#define HVMM_HV_FEATURES_EBX (HV_POST_MESSAGES | HV_SIGNAL_EVENTS)
#define HVMM_HV_FEATURES_EDX (HV_FEATURE_FREQUENCY_MSRS_AVAILABLE | HV_STIMER_DIRECT_MODE_AVAILABLE)
#define HVMM_HV_HINTS_EAX                                                                     \
	(HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED | HV_X64_APIC_ACCESS_RECOMMENDED |                   \
	 HV_X64_RELAXED_TIMING_RECOMMENDED | HV_DEPRECATING_AEOI_RECOMMENDED |                    \
	 HV_X64_CLUSTER_IPI_RECOMMENDED | HV_X64_EX_PROCESSOR_MASKS_RECOMMENDED)

/* Synthetic MSRs hvmm writes at vCPU creation. */
#define HV_X64_MSR_VP_INDEX 0x40000002u

/* The SINT VMBus uses on every VP. */
#define HV_VMBUS_SINT 2

#endif
