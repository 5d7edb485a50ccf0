#include "x86/cpu.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>


struct kvm_cpuid2 *x86_supported_cpuid(int kvm_fd)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + X86_CPUID_MAX_ENTRIES * sizeof(c->entries[0]));

	if (!c)
		return NULL;
	c->nent = X86_CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		free(c);
		return NULL;
	}
	return c;
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

/* One package, nr_cpus cores, one thread each; APIC ID = vCPU index. */
static void patch_topology(struct kvm_cpuid_entry2 *e, unsigned id, unsigned nr_cpus, bool tsc_deadline)
{
	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0x0000ffff) | (id << 24) | ((nr_cpus & 0xff) << 16);
		e->edx |= 1u << 28; /* HTT: the logical count in EBX is valid */
		if (tsc_deadline)
			e->ecx |= 1u << 24;
		e->ecx |= 1u << 31; /* running on a hypervisor */
		break;
	case 0xb:
	case 0x1f:
		e->edx = id;
		if (e->index == 0) {
			e->eax = 0;
			e->ebx = 1;
			e->ecx = (1u << 8) | e->index; /* SMT level */
		} else if (e->index == 1) {
			e->eax = bits_for(nr_cpus);
			e->ebx = nr_cpus;
			e->ecx = (2u << 8) | e->index; /* core level */
		} else {
			e->eax = e->ebx = 0;
			e->ecx = e->index;
		}
		break;
	case 0x80000008:
		e->ecx = (e->ecx & ~0xf0ffu) | (bits_for(nr_cpus) << 12) | ((nr_cpus - 1) & 0xff);
		break;
	}
}

int x86_set_cpuid(int vcpu_fd, const struct kvm_cpuid2 *supported, unsigned id, unsigned nr_cpus,
		  bool tsc_deadline)
{
	size_t sz = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int ret = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, supported, sz);
	for (unsigned i = 0; i < c->nent; i++)
		patch_topology(&c->entries[i], id, nr_cpus, tsc_deadline);
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	free(c);
	return ret;
}

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_MASK 0x700
#define APIC_MODE_NMI 0x400
#define APIC_MODE_EXTINT 0x700

#define APIC_LVT_MASKED 0x10000

static void lapic_set_lvt(struct kvm_lapic_state *s, unsigned reg, uint32_t mode, bool masked)
{
	uint32_t v;

	memcpy(&v, &s->regs[reg], 4);
	v = (v & ~(APIC_MODE_MASK | APIC_LVT_MASKED)) | mode | (masked ? APIC_LVT_MASKED : 0);
	memcpy(&s->regs[reg], &v, 4);
}

int x86_setup_lapic(int vcpu_fd)
{
	struct kvm_lapic_state s;

	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &s) < 0)
		return -errno;
	/* The machine has no 8259 PIC (hardware-reduced ACPI): LINT0 stays
	 * masked, or Linux would keep ExtINT open on CPU 0 to KVM's
	 * never-programmed PIC. */
	lapic_set_lvt(&s, APIC_LVT0, APIC_MODE_EXTINT, true);
	lapic_set_lvt(&s, APIC_LVT1, APIC_MODE_NMI, false);
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &s) < 0)
		return -errno;
	return 0;
}

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1, .l = code64, .g = 1,
	};
}

#define CR0_PE 0x1u
#define CR0_ET 0x10u
#define CR0_PG 0x80000000u
#define CR4_PAE 0x20u
#define EFER_LME 0x100u
#define EFER_LMA 0x400u

int x86_setup_boot_cpu(int vcpu_fd, const struct boot_entry *entry)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rflags = 0x2, .rip = entry->rip, .rsi = entry->rsi, .rsp = entry->rsp, .rbp = entry->rsp,
	};
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	struct kvm_segment data = flat_segment(BOOT_DS, 3, false);

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = 4 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cs = flat_segment(BOOT_CS, 11, true);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = (struct kvm_segment){ .limit = 0xffff, .type = 11, .present = 1 };
	sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
	sregs.cr3 = entry->cr3;
	sregs.cr4 = CR4_PAE;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}
