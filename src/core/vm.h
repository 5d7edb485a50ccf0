/* One virtual machine: its KVM VM, guest RAM, vCPU threads and devices.
 * vm_run() boots it once and returns why it stopped; a reboot is a new
 * vm_run() in the same process. */
#ifndef HVMM_VM_H
#define HVMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/guest_mem.h"
#include "core/loop.h"
#include "core/pio.h"

#define VM_MAX_CPUS 64
#define VM_MIN_MEMORY (64ULL << 20)

struct bzimage;
struct hv_partition;
struct ic_host;
struct disk_set;
struct storvsp;

struct vm_config {
	const struct bzimage *kernel; /* parsed once by the caller */
	const uint8_t *initrd;
	size_t initrd_size;
	const char *cmdline;
	uint64_t mem_size;
	unsigned nr_cpus;
	int console_in;  /* fd the serial console reads, or -1 */
	int console_out; /* fd the serial console writes */
	struct disk_set *disks; /* checked (disk_set_check); may be NULL */
};

/* Why a VM stopped. */
enum vm_stop {
	VM_RUNNING = 0,
	VM_STOP_POWEROFF, /* guest powered off */
	VM_STOP_REBOOT,   /* guest asked for a reset */
	VM_STOP_HOST,     /* the host stopped it (signal, API) */
	VM_STOP_ERROR,    /* a vCPU failed */
};

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

/* A device: one entry in the table in dev/devices.c. init runs before the
 * vCPUs exist (claim ports, register loop sources); exit after they stop. */
struct vm_device {
	const char *name;
	int (*init)(struct vm *vm, void **state);
	void (*exit)(struct vm *vm, void *state);
};

extern const struct vm_device *const vm_devices[];
#define VM_MAX_DEVICES 16

struct vm {
	const struct vm_config *cfg;
	struct loop *loop;
	int kvm_fd;
	int vm_fd;
	int run_size;
	struct guest_mem mem;
	struct pio_bus pio;
	struct vcpu vcpu[VM_MAX_CPUS];
	_Atomic int stop; /* enum vm_stop; the first request wins */
	struct loop_source stop_src;
	int stop_fd;
	void *dev_state[VM_MAX_DEVICES]; /* indexed like vm_devices[] */
	struct hv_partition *hv;         /* Hyper-V enlightenments and VMBus */
	struct ic_host *ic;              /* integration services */
	struct storvsp *storvsp;         /* synthetic SCSI controllers */
};

/* Create the VM (KVM VM, RAM, devices, vCPUs) and load the guest. The kvm
 * fd is opened by the caller. On error returns a negative errno and prints
 * what failed. */
int vm_create(struct vm **out, const struct vm_config *cfg, struct loop *loop, int kvm_fd);

/* Start the vCPU threads, then run the event loop until the VM stops. */
enum vm_stop vm_run(struct vm *vm);

/* Stop the vCPU threads (if still running) and free everything. */
void vm_destroy(struct vm *vm);

/* Ask the VM to stop; safe from any thread. */
void vm_request_stop(struct vm *vm, enum vm_stop why);

/* Raise or lower an interrupt line (GSI) of the in-kernel IOAPIC. */
int vm_set_irq(struct vm *vm, unsigned gsi, bool level);

#endif
