#include "core/vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/disks.h"
#include "hyperv/kvm_hv.h"
#include "ic/ic.h"
#include "util/clock.h"
#include "util/log.h"
#include "x86/acpi.h"
#include "x86/boot.h"
#include "x86/cpu.h"

#define VCPU_KICK_SIGNAL SIGUSR1

/* Addresses KVM needs for its own use on Intel hosts, just below the BIOS. */
#define KVM_TSS_ADDR 0xfffbd000
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000

void vm_request_stop(struct vm *vm, enum vm_stop why)
{
	int expected = VM_RUNNING;

	if (atomic_compare_exchange_strong(&vm->stop, &expected, why)) {
		log_debug("stop requested (reason %d)", why);
		eventfd_write(vm->stop_fd, 1);
	}
}

int vm_set_irq(struct vm *vm, unsigned gsi, bool level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

static void stop_requested(struct loop_source *src, uint32_t events)
{
	struct vm *vm = container_of(src, struct vm, stop_src);
	eventfd_t v;

	eventfd_read(src->fd, &v);
	loop_stop(vm->loop);
}

static int setup_memory(struct vm *vm)
{
	uint64_t size = vm->cfg->mem_size;
	uint8_t *base = guest_mem_map(size);

	if (!base) {
		log_err("cannot map %llu bytes of guest memory: %s", (unsigned long long)size,
			strerror(errno));
		return -ENOMEM;
	}
	guest_mem_layout(&vm->mem, base, size);
	for (unsigned i = 0; i < vm->mem.nr_ranges; i++) {
		struct kvm_userspace_memory_region region = {
			.slot = i,
			.guest_phys_addr = vm->mem.range[i].gpa,
			.memory_size = vm->mem.range[i].size,
			.userspace_addr = (uintptr_t)vm->mem.range[i].hva,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
			log_err("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static int create_vm_fd(struct vm *vm)
{
	do
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0) {
		log_err("KVM_CREATE_VM: %s", strerror(errno));
		return -errno;
	}
	/* Both only matter on Intel; harmless elsewhere. */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR);
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP) < 0) {
		log_err("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int create_vcpus(struct vm *vm, const struct boot_entry *entry)
{
	bool tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	struct kvm_cpuid2 *cpuid = x86_supported_cpuid(vm->kvm_fd);
	int ret = 0;

	if (!cpuid) {
		log_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		return -errno;
	}
	ret = hv_cpuid_merge(vm->kvm_fd, cpuid, X86_CPUID_MAX_ENTRIES, vm->cfg->nr_cpus);
	if (ret) {
		log_err("building the Hyper-V CPUID leaves: %s", strerror(-ret));
		free(cpuid);
		return ret;
	}
	for (unsigned i = 0; i < vm->cfg->nr_cpus && !ret; i++) {
		struct vcpu *v = &vm->vcpu[i];

		v->vm = vm;
		v->id = i;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			ret = -errno;
			log_err("KVM_CREATE_VCPU %u: %s", i, strerror(errno));
			break;
		}
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			ret = -errno;
			log_err("mmap kvm_run of vCPU %u: %s", i, strerror(errno));
			break;
		}
		ret = x86_set_cpuid(v->fd, cpuid, i, vm->cfg->nr_cpus, tsc_deadline);
		if (!ret)
			ret = hv_vcpu_setup(vm->hv, i, v->fd);
		if (!ret)
			ret = x86_setup_lapic(v->fd);
		if (!ret && i == 0)
			ret = x86_setup_boot_cpu(v->fd, entry);
		if (ret)
			log_err("setting up vCPU %u: %s", i, strerror(-ret));
	}
	free(cpuid);
	return ret;
}

static int load_guest(struct vm *vm, struct boot_entry *entry)
{
	struct boot_setup bs = {
		.kernel = vm->cfg->kernel,
		.initrd = vm->cfg->initrd,
		.initrd_size = vm->cfg->initrd_size,
		.cmdline = vm->cfg->cmdline,
	};
	const char *why;
	int ret = acpi_install(&vm->mem, vm->cfg->nr_cpus, &bs.rsdp_addr);

	if (ret) {
		log_err("building ACPI tables: %s", strerror(-ret));
		return ret;
	}
	ret = boot_setup_linux(&vm->mem, &bs, entry, &why);
	if (ret)
		log_err("loading the kernel: %s", why);
	return ret;
}

/* Time sync samples pair the host's UTC with the guest's reference counter
 * (KVM's Hyper-V TIME_REF_COUNT is kvmclock in 100 ns units), read together
 * by KVM_GET_CLOCK. */
static int guest_utc_now(void *ctx, uint64_t *filetime, uint64_t *reftime)
{
	struct vm *vm = ctx;
	struct kvm_clock_data clock = { 0 };

	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return -errno;
	if (!(clock.flags & KVM_CLOCK_REALTIME))
		return -EOPNOTSUPP;
	*filetime = ic_filetime_from_unix((int64_t)(clock.realtime / 1000000000),
					  (long)(clock.realtime % 1000000000));
	*reftime = clock.clock / 100;
	return 0;
}

static uint64_t monotonic_ms(void *ctx)
{
	return mono_ms();
}

static int start_storage(struct vm *vm)
{
	struct storvsp_config sc;
	char err[512];
	int ret;

	storvsp_default_config(&sc);
	sc.gm = &vm->mem;
	sc.nr_vcpus = vm->cfg->nr_cpus;
	vm->storvsp = storvsp_new(hv_vmbus_server(vm->hv), vm->loop, &sc);
	if (!vm->storvsp)
		return -ENOMEM;
	if (!vm->cfg->disks)
		return 0;
	ret = disk_set_attach(vm->cfg->disks, vm->storvsp, err, sizeof(err));
	if (ret)
		log_err("%s", err);
	return ret;
}

static int start_hyperv(struct vm *vm)
{
	struct kvm_clock_data probe = { 0 };
	struct ic_clock clock = { .monotonic_ms = monotonic_ms, .utc_now = guest_utc_now, .ctx = vm };

	vm->hv = hv_partition_new(vm);
	if (!vm->hv)
		return -ENOMEM;
	vm->ic = ic_host_new(hv_vmbus_server(vm->hv), vm->loop);
	if (!vm->ic)
		return -ENOMEM;
	/* Without KVM_CLOCK_REALTIME (Linux < 5.16) time sync falls back to
	 * samples the guest timestamps on arrival. */
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &probe) == 0 && (probe.flags & KVM_CLOCK_REALTIME)) {
		clock.has_reftime = true;
		ic_host_set_clock(vm->ic, &clock);
	}
	return start_storage(vm);
}

static int init_devices(struct vm *vm)
{
	for (unsigned i = 0; vm_devices[i]; i++) {
		int ret = vm_devices[i]->init(vm, &vm->dev_state[i]);
		if (ret) {
			log_err("device %s: %s", vm_devices[i]->name, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int vm_create(struct vm **out, const struct vm_config *cfg, struct loop *loop, int kvm_fd)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct boot_entry entry;
	int ret;

	if (!vm)
		return -ENOMEM;
	vm->cfg = cfg;
	vm->loop = loop;
	vm->kvm_fd = kvm_fd;
	vm->vm_fd = -1;
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	*out = vm;
	if (vm->stop_fd < 0)
		return -errno;
	ret = loop_add(loop, &vm->stop_src, vm->stop_fd, EPOLLIN, stop_requested);
	if (ret)
		return ret;
	vm->run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		return -EINVAL;
	ret = create_vm_fd(vm);
	if (!ret)
		ret = setup_memory(vm);
	if (!ret)
		ret = load_guest(vm, &entry);
	if (!ret)
		ret = start_hyperv(vm);
	if (!ret)
		ret = init_devices(vm);
	if (!ret)
		ret = create_vcpus(vm, &entry);
	if (!ret)
		ret = hv_partition_start(vm->hv);
	return ret;
}

static void log_vcpu_failure(struct vcpu *v, const char *what)
{
	struct kvm_regs r;

	if (ioctl(v->fd, KVM_GET_REGS, &r) == 0)
		log_err("vCPU %u: %s at rip=%#llx rsp=%#llx", v->id, what, r.rip, r.rsp);
	else
		log_err("vCPU %u: %s", v->id, what);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (!pio_dispatch(&v->vm->pio, run->io.port, data, run->io.size, is_write))
			log_ratelimited(LOG_DEBUG, "vCPU %u: unclaimed I/O port %#x %s", v->id,
					run->io.port, is_write ? "write" : "read");
	}
}

/* Where a guest reset by triple fault came from (a crash, usually). On AMD,
 * KVM has already put the vCPU through INIT (its state after a shutdown
 * is undefined), so its registers are the reset values and tell nothing. */
static void log_triple_fault(const struct vcpu *v)
{
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0 && !(regs.rip == 0xfff0 && regs.rsp == 0))
		log_ratelimited(LOG_INFO, "vCPU %u: triple fault at rip %#llx rsp %#llx", v->id,
				(unsigned long long)regs.rip, (unsigned long long)regs.rsp);
	else
		log_ratelimited(LOG_INFO, "vCPU %u: triple fault", v->id);
}

/* Returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		log_ratelimited(LOG_DEBUG, "vCPU %u: unclaimed MMIO %#llx", v->id,
				(unsigned long long)run->mmio.phys_addr);
		return true;
	case KVM_EXIT_HYPERV:
		hv_handle_exit(v->vm->hv, v->id, run);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN: /* triple fault: a PC resets */
		log_triple_fault(v);
		vm_request_stop(v->vm, VM_STOP_REBOOT);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
			vm_request_stop(v->vm, VM_STOP_POWEROFF);
		} else if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			log_ratelimited(LOG_INFO, "vCPU %u: KVM reports a reset", v->id);
			vm_request_stop(v->vm, VM_STOP_REBOOT);
		} else {
			log_vcpu_failure(v, "guest reported a crash");
			vm_request_stop(v->vm, VM_STOP_ERROR);
		}
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		log_vcpu_failure(v, "KVM could not enter the guest");
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		log_vcpu_failure(v, "KVM internal error (emulation failed)");
		break;
	default:
		log_err("vCPU %u: unexpected KVM exit reason %u", v->id, run->exit_reason);
		break;
	}
	vm_request_stop(v->vm, VM_STOP_ERROR);
	return false;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	sigset_t kick;

	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	while (atomic_load(&v->vm->stop) == VM_RUNNING) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			log_err("vCPU %u: KVM_RUN: %s", v->id, strerror(errno));
			vm_request_stop(v->vm, VM_STOP_ERROR);
			break;
		}
		if (!handle_exit(v))
			break;
	}
	return NULL;
}

static void kick_handler(int sig)
{
	(void)sig;
}

static int start_vcpus(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	pthread_attr_t attr;
	int ret = 0;

	sigaction(VCPU_KICK_SIGNAL, &sa, NULL); /* no SA_RESTART: KVM_RUN returns EINTR */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 << 10);
	for (unsigned i = 0; i < vm->cfg->nr_cpus; i++) {
		ret = -pthread_create(&vm->vcpu[i].thread, &attr, vcpu_thread, &vm->vcpu[i]);
		if (ret) {
			log_err("starting vCPU %u: %s", i, strerror(-ret));
			break;
		}
		vm->vcpu[i].started = true;
	}
	pthread_attr_destroy(&attr);
	return ret;
}

static void stop_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->cfg->nr_cpus; i++) {
		struct vcpu *v = &vm->vcpu[i];

		if (!v->started)
			continue;
		/* immediate_exit closes the race with a thread about to enter KVM_RUN. */
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
	}
	for (unsigned i = 0; i < vm->cfg->nr_cpus; i++) {
		struct kvm_regs r;

		if (!vm->vcpu[i].started)
			continue;
		pthread_join(vm->vcpu[i].thread, NULL);
		vm->vcpu[i].started = false;
		if (log_threshold >= LOG_DEBUG && ioctl(vm->vcpu[i].fd, KVM_GET_REGS, &r) == 0)
			log_debug("vCPU %u stopped at rip=%#llx", i, r.rip);
	}
}

enum vm_stop vm_run(struct vm *vm)
{
	int ret = start_vcpus(vm);

	if (ret)
		vm_request_stop(vm, VM_STOP_ERROR);
	ret = loop_run(vm->loop);
	if (ret) {
		log_err("event loop: %s", strerror(-ret));
		vm_request_stop(vm, VM_STOP_ERROR);
	}
	stop_vcpus(vm);
	return atomic_load(&vm->stop);
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	stop_vcpus(vm);
	for (unsigned i = 0; vm_devices[i]; i++)
		if (vm->dev_state[i])
			vm_devices[i]->exit(vm, vm->dev_state[i]);
	storvsp_free(vm->storvsp); /* drains and flushes: needs guest RAM */
	ic_host_free(vm->ic);
	hv_partition_free(vm->hv);
	for (unsigned i = 0; i < vm->cfg->nr_cpus; i++) {
		if (vm->vcpu[i].run)
			munmap(vm->vcpu[i].run, vm->run_size);
		if (vm->vcpu[i].fd > 0)
			close(vm->vcpu[i].fd);
	}
	if (vm->mem.base)
		munmap(vm->mem.base, vm->mem.total);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->stop_fd >= 0) {
		loop_del(vm->loop, &vm->stop_src);
		close(vm->stop_fd);
	}
	free(vm);
}
