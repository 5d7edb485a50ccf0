/* The Hyper-V partition on KVM: the enlightenments a Linux guest checks
 * for (CPUID, synthetic MSRs, hypercall page, SynIC, reference TSC page,
 * synthetic timers, all emulated by KVM), and the plumbing that connects
 * KVM's SynIC to the VMBus server: HvPostMessage and HvSignalEvent from
 * the guest, SINT2 interrupts and their acknowledgements towards it.
 *
 * vCPU threads only decode hypercalls and queue them; the VMBus server,
 * its devices and message delivery run on the event loop. */
#ifndef HVMM_KVM_HV_H
#define HVMM_KVM_HV_H

#include <stdint.h>

struct vm;
struct kvm_run;
struct kvm_cpuid2;
struct hv_partition;
struct vmbus_server;

/* Does this KVM emulate what a Hyper-V guest needs? 0, or -ENOTSUP after
 * logging which capability is missing. */
int hv_kvm_check(int kvm_fd);

/* Replace KVM's own paravirtual CPUID leaves in `c` (room for `capacity`
 * entries) with the Hyper-V leaves, so that Linux picks Hyper-V. */
int hv_cpuid_merge(int kvm_fd, struct kvm_cpuid2 *c, unsigned capacity, unsigned nr_cpus);

/* Before the vCPUs: the partition, its SynIC state and VMBus server. */
struct hv_partition *hv_partition_new(struct vm *vm);

/* For each vCPU, after its CPUID is set: activate the SynIC, set VP index. */
int hv_vcpu_setup(struct hv_partition *hv, unsigned vp, int vcpu_fd);

/* After every vCPU exists: SINT routes, irqfds, acknowledgement sources. */
int hv_partition_start(struct hv_partition *hv);

/* KVM_EXIT_HYPERV on vCPU `vp` (its thread). Fills in hypercall results. */
void hv_handle_exit(struct hv_partition *hv, unsigned vp, struct kvm_run *run);

struct vmbus_server *hv_vmbus_server(struct hv_partition *hv);

void hv_partition_free(struct hv_partition *hv);

#endif
