#include "hyperv/kvm_hv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/vm.h"
#include "hyperv/hv_cpuid.h"
#include "hyperv/hv_proto.h"
#include "hyperv/synic.h"
#include "util/log.h"
#include "vmbus/server.h"

#define HV_QUEUE_LEN 64      /* hypercalls waiting for the loop */
#define HV_SINT_GSI_BASE 24  /* after the IOAPIC's 24 pins */
#define VMBUS_MESSAGE_TYPE 1 /* HvPostMessage type of VMBus channel messages */

/* A hypercall handed from a vCPU to the loop: a message, or a signal. */
struct hv_pending {
	uint32_t conn_id;
	uint32_t len;
	bool is_signal;
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
};

/* A connection id the guest signals a channel on. */
struct hv_port {
	struct hv_partition *hv;
	uint32_t conn_id;
	int fd; /* eventfd KVM signals in the kernel; -1 if only the exit path works */
	struct loop_source src;
};

struct hv_ack {
	struct hv_partition *hv;
	unsigned vp;
	struct loop_source src;
};

struct hv_partition {
	struct vm *vm;
	unsigned nr_vps;
	struct synic *synic;
	struct vmbus_server *vmbus;
	bool have_eventfd;
	int sint_fd[VM_MAX_CPUS];
	struct hv_ack ack[VM_MAX_CPUS];

	pthread_mutex_t lock; /* queue and ports, shared with vCPU threads */
	struct hv_pending queue[HV_QUEUE_LEN];
	unsigned q_head, q_len;
	int queue_fd;
	struct loop_source queue_src;
	struct hv_port **ports;
	unsigned nr_ports;
	struct loop_timer watchdog; /* vmbus_server_watchdog() */
	bool watchdog_added;
};

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_HYPERV, "KVM_CAP_HYPERV" },
	{ KVM_CAP_HYPERV_TIME, "KVM_CAP_HYPERV_TIME" },
	{ KVM_CAP_HYPERV_SYNIC2, "KVM_CAP_HYPERV_SYNIC2" },
	{ KVM_CAP_HYPERV_VP_INDEX, "KVM_CAP_HYPERV_VP_INDEX" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_IRQFD_RESAMPLE, "KVM_CAP_IRQFD_RESAMPLE" },
};

int hv_kvm_check(int kvm_fd)
{
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			log_err("this KVM lacks %s: it cannot emulate Hyper-V (kernel built without "
				"CONFIG_KVM_HYPERV?)", required_caps[i].name);
			return -ENOTSUP;
		}
	}
	return 0;
}

/* ---- CPUID -------------------------------------------------------------- */

struct hv_template {
	uint32_t features_eax, features_ebx, features_edx, hints_eax, max_vps, max_lps;
};

/* What KVM can emulate, from KVM_GET_SUPPORTED_HV_CPUID; without it, assume
 * everything hvmm offers (every KVM with SYNIC2 emulates it). */
static void read_hv_template(int kvm_fd, struct hv_template *t, unsigned nr_cpus)
{
	enum { MAX = 64 };
	struct kvm_cpuid2 *c;

	*t = (struct hv_template){ ~0u, ~0u, ~0u, ~0u, nr_cpus, nr_cpus };
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYS_HYPERV_CPUID) <= 0)
		return;
	c = calloc(1, sizeof(*c) + MAX * sizeof(c->entries[0]));
	if (!c)
		return;
	c->nent = MAX;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_HV_CPUID, c) < 0)
		c->nent = 0;
	for (unsigned i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == HV_CPUID_FEATURES) {
			t->features_eax = e->eax;
			t->features_ebx = e->ebx;
			t->features_edx = e->edx;
		} else if (e->function == HV_CPUID_ENLIGHTENMENTS) {
			t->hints_eax = e->eax;
		} else if (e->function == HV_CPUID_LIMITS && e->eax) {
			t->max_vps = e->eax;
			t->max_lps = e->ebx;
		}
	}
	free(c);
}

/* Whether KVM virtualizes the local APIC (Intel APICv, AMD AVIC). Each
 * module parameter holds what KVM settled on when it loaded: it turns the
 * feature off where the hardware lacks it. */
static bool kvm_apic_virtualized(void)
{
	static const char *const params[] = {
		"/sys/module/kvm_intel/parameters/enable_apicv",
		"/sys/module/kvm_amd/parameters/avic",
	};
	char c;

	for (unsigned i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		int fd = open(params[i], O_RDONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			continue;
		n = read(fd, &c, 1);
		close(fd);
		if (n == 1 && (c == 'Y' || c == '1'))
			return true;
	}
	return false;
}

/* Where KVM does not virtualize the local APIC, every EOI the guest writes
 * is an exit, unless KVM's lazy EOI (through the VP assist page) covers it;
 * hvmm then shapes what it offers to save those exits, as below. */

/* The recommendations hvmm gives. AutoEOI spares the guest an EOI exit per
 * VMBus interrupt, but KVM must turn APICv/AVIC off for a guest that uses
 * it; so, as Hyper-V does, advise against it only where the APIC is
 * virtualized (there an EOI costs no exit). */
static uint32_t hv_hints(uint32_t kvm_hints, bool apic_virtualized)
{
	uint32_t hints = HVMM_HV_HINTS_EAX & kvm_hints;

	if (!apic_virtualized)
		hints &= ~HV_DEPRECATING_AEOI_RECOMMENDED;
	return hints;
}

/* The synthetic timers only where the APIC is virtualized. Linux's direct
 * mode stimer handler reprograms the timer (an MSR exit) before its EOI,
 * and KVM drops lazy EOI at any exit, so each tick costs two exits; with
 * the local APIC's TSC-deadline timer, whose handler EOIs first, it costs
 * one (measured: 1.1 fewer exits per queue-depth-1 disk request). With a
 * virtualized APIC the EOI is free and the stimer is what Hyper-V offers. */
static void hv_features(const struct hv_template *t, bool apic_virtualized, uint32_t *eax,
			uint32_t *edx)
{
	*eax = HVMM_HV_FEATURES_EAX & t->features_eax;
	*edx = HVMM_HV_FEATURES_EDX & t->features_edx;
	if (!apic_virtualized) {
		*eax &= ~HV_MSR_SYNTIMER_AVAILABLE;
		*edx &= ~HV_STIMER_DIRECT_MODE_AVAILABLE;
	}
}

int hv_cpuid_merge(int kvm_fd, struct kvm_cpuid2 *c, unsigned capacity, unsigned nr_cpus)
{
	struct hv_template t;
	unsigned n = 0;

	bool apic_virtualized = kvm_apic_virtualized();
	uint32_t features_eax, features_edx;

	read_hv_template(kvm_fd, &t, nr_cpus);
	hv_features(&t, apic_virtualized, &features_eax, &features_edx);
	/* Drop KVM's leaves: with its signature visible Linux would choose KVM. */
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function < 0x40000000u || c->entries[i].function > 0x4fffffffu)
			c->entries[n++] = c->entries[i];
	if (n + 6 > capacity)
		return -ENOSPC;

	struct kvm_cpuid_entry2 hv[] = {
		{ .function = HV_CPUID_VENDOR, .eax = HV_CPUID_MAX_LEAF, .ebx = HV_SIGNATURE_EBX,
		  .ecx = HV_SIGNATURE_ECX, .edx = HV_SIGNATURE_EDX },
		{ .function = HV_CPUID_INTERFACE, .eax = HV_INTERFACE_HV1 },
		{ .function = HV_CPUID_VERSION, .eax = HV_VERSION_BUILD, .ebx = HV_VERSION_MAJOR_MINOR },
		{ .function = HV_CPUID_FEATURES,
		  .eax = features_eax,
		  .ebx = HVMM_HV_FEATURES_EBX & t.features_ebx,
		  .edx = features_edx },
		{ .function = HV_CPUID_ENLIGHTENMENTS, .eax = hv_hints(t.hints_eax, apic_virtualized),
		  .ebx = HV_SPINLOCK_NEVER_NOTIFY },
		{ .function = HV_CPUID_LIMITS, .eax = t.max_vps, .ebx = t.max_lps },
	};
	memcpy(&c->entries[n], hv, sizeof(hv));
	c->nent = n + 6;
	return 0;
}

/* ---- vCPUs -------------------------------------------------------------- */

int hv_vcpu_setup(struct hv_partition *hv, unsigned vp, int vcpu_fd)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_HYPERV_SYNIC2 };
	union {
		struct kvm_msrs hdr;
		uint8_t bytes[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
	} msrs = { .hdr.nmsrs = 1 };

	msrs.hdr.entries[0] = (struct kvm_msr_entry){ .index = HV_X64_MSR_VP_INDEX, .data = vp };

	if (ioctl(vcpu_fd, KVM_ENABLE_CAP, &cap) < 0) {
		log_err("vCPU %u: enabling the SynIC: %s", vp, strerror(errno));
		return -errno;
	}
	if (ioctl(vcpu_fd, KVM_SET_MSRS, &msrs) != 1) {
		log_err("vCPU %u: setting its VP index failed", vp);
		return -EIO;
	}
	return 0;
}

/* ---- SINT routes: towards the guest ----------------------------------- */

static int assert_sint(void *ctx, uint32_t vp, uint32_t sint)
{
	struct hv_partition *hv = ctx;

	if (vp >= hv->nr_vps || sint != HV_VMBUS_SINT)
		return -EINVAL;
	return eventfd_write(hv->sint_fd[vp], 1) < 0 ? -errno : 0;
}

static const struct synic_ops synic_ops = { .assert_sint = assert_sint };

/* The guest acknowledged a SINT on this VP: a message slot may be free. */
static void sint_acked(struct loop_source *src, uint32_t events)
{
	struct hv_ack *a = container_of(src, struct hv_ack, src);
	eventfd_t v;

	eventfd_read(src->fd, &v);
	synic_ack(a->hv->synic, a->vp);
}

/* KVM_SET_GSI_ROUTING replaces the whole table: GSIs 0-23 go to the
 * IOAPIC's pins (not to KVM's 8259, which this hardware-reduced machine does
 * not have), then one HV_SINT route per VP. */
static int set_routes(struct hv_partition *hv)
{
	unsigned max = 24 + hv->nr_vps, n = 0;
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + max * sizeof(r->entries[0]));
	int ret = 0;

	if (!r)
		return -ENOMEM;
	for (unsigned gsi = 0; gsi < 24; gsi++)
		r->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi } };
	for (unsigned vp = 0; vp < hv->nr_vps; vp++)
		r->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = HV_SINT_GSI_BASE + vp, .type = KVM_IRQ_ROUTING_HV_SINT,
			.u.hv_sint = { .vcpu = vp, .sint = HV_VMBUS_SINT } };
	r->nr = n;
	if (ioctl(hv->vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0) {
		ret = -errno;
		log_err("KVM_SET_GSI_ROUTING: %s", strerror(errno));
	}
	free(r);
	return ret;
}

static int attach_irqfd(struct hv_partition *hv, unsigned vp)
{
	struct hv_ack *a = &hv->ack[vp];
	struct kvm_irqfd irqfd = { .gsi = HV_SINT_GSI_BASE + vp, .flags = KVM_IRQFD_FLAG_RESAMPLE };
	int ack_fd, ret;

	hv->sint_fd[vp] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ack_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (hv->sint_fd[vp] < 0 || ack_fd < 0) {
		if (ack_fd >= 0)
			close(ack_fd);
		return -errno;
	}
	irqfd.fd = hv->sint_fd[vp];
	irqfd.resamplefd = ack_fd;
	if (ioctl(hv->vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		ret = -errno;
		log_err("KVM_IRQFD for the SINT of VP %u: %s", vp, strerror(errno));
		close(ack_fd);
		return ret;
	}
	a->hv = hv;
	a->vp = vp;
	ret = loop_add(hv->vm->loop, &a->src, ack_fd, EPOLLIN, sint_acked);
	if (ret) {
		close(ack_fd);
		a->src.fd = -1;
	}
	return ret;
}

int hv_partition_start(struct hv_partition *hv)
{
	int ret = set_routes(hv);

	for (unsigned vp = 0; vp < hv->nr_vps && !ret; vp++)
		ret = attach_irqfd(hv, vp);
	return ret;
}

/* ---- hypercalls: from the guest --------------------------------------- */

static struct hv_port *find_port(struct hv_partition *hv, uint32_t conn_id)
{
	for (unsigned i = 0; i < hv->nr_ports; i++)
		if (hv->ports[i]->conn_id == conn_id)
			return hv->ports[i];
	return NULL;
}

/* vCPU thread: hand a hypercall to the loop. False if the queue is full. */
static bool enqueue(struct hv_partition *hv, const struct hv_pending *p)
{
	bool ok;

	pthread_mutex_lock(&hv->lock);
	ok = hv->q_len < HV_QUEUE_LEN;
	if (ok) {
		hv->queue[(hv->q_head + hv->q_len) % HV_QUEUE_LEN] = *p;
		hv->q_len++;
	}
	pthread_mutex_unlock(&hv->lock);
	if (ok)
		eventfd_write(hv->queue_fd, 1);
	return ok;
}

static uint64_t post_message(struct hv_partition *hv, unsigned vp, uint64_t gpa, bool fast)
{
	struct hv_post_message_input in;
	struct hv_pending p = { 0 };

	if (fast)
		return HV_STATUS_INVALID_HYPERCALL_INPUT;
	if ((gpa & 7) || (gpa & 0xfff) > 0x1000 - sizeof(in))
		return HV_STATUS_INVALID_ALIGNMENT;
	if (guest_mem_read(&hv->vm->mem, gpa, &in, sizeof(in)))
		return HV_STATUS_INVALID_PARAMETER;
	if (in.payload_size > HV_MESSAGE_PAYLOAD_MAX || in.message_type != VMBUS_MESSAGE_TYPE) {
		log_ratelimited(LOG_WARN, "VP %u: HvPostMessage with type %#x and %u bytes refused", vp,
				in.message_type, in.payload_size);
		return HV_STATUS_INVALID_PARAMETER;
	}
	p.conn_id = in.connection_id & HV_CONNECTION_ID_MASK;
	if (!vmbus_server_is_message_connection(p.conn_id))
		return HV_STATUS_INVALID_CONNECTION_ID;
	p.len = in.payload_size;
	memcpy(p.payload, in.payload, p.len);
	return enqueue(hv, &p) ? HV_STATUS_SUCCESS : HV_STATUS_INSUFFICIENT_BUFFERS;
}

/* Only reached when KVM has no eventfd for the id (or lacks the cap). */
static uint64_t signal_event(struct hv_partition *hv, uint64_t input, bool fast)
{
	struct hv_pending p = { .is_signal = true, .conn_id = input & HV_CONNECTION_ID_MASK };
	bool known;

	if (!fast)
		return HV_STATUS_INVALID_HYPERCALL_INPUT; /* Linux only uses the fast form */
	if (input >> 32) /* a non-zero event flag number */
		return HV_STATUS_INVALID_PARAMETER;
	pthread_mutex_lock(&hv->lock);
	known = find_port(hv, p.conn_id) != NULL;
	pthread_mutex_unlock(&hv->lock);
	if (!known)
		return HV_STATUS_INVALID_CONNECTION_ID;
	return enqueue(hv, &p) ? HV_STATUS_SUCCESS : HV_STATUS_INSUFFICIENT_BUFFERS;
}

void hv_handle_exit(struct hv_partition *hv, unsigned vp, struct kvm_run *run)
{
	struct kvm_hyperv_exit *x = &run->hyperv;
	uint16_t code;
	bool fast;

	if (x->type == KVM_EXIT_HYPERV_SYNIC) {
		synic_set_regs(hv->synic, vp, x->u.synic.control, x->u.synic.msg_page,
			       x->u.synic.evt_page);
		return;
	}
	if (x->type != KVM_EXIT_HYPERV_HCALL) {
		log_ratelimited(LOG_WARN, "VP %u: unexpected Hyper-V exit type %u", vp, x->type);
		return;
	}
	code = x->u.hcall.input & 0xffff;
	fast = x->u.hcall.input & (1ull << 16);
	if (code == HVCALL_POST_MESSAGE)
		x->u.hcall.result = post_message(hv, vp, x->u.hcall.params[0], fast);
	else if (code == HVCALL_SIGNAL_EVENT)
		x->u.hcall.result = signal_event(hv, x->u.hcall.params[0], fast);
	else
		x->u.hcall.result = HV_STATUS_INVALID_HYPERCALL_CODE;
}

/* Loop thread: run what the vCPUs queued, in order. */
static void drain_queue(struct loop_source *src, uint32_t events)
{
	struct hv_partition *hv = container_of(src, struct hv_partition, queue_src);
	struct hv_pending p;
	eventfd_t v;

	eventfd_read(src->fd, &v);
	for (;;) {
		pthread_mutex_lock(&hv->lock);
		if (!hv->q_len) {
			pthread_mutex_unlock(&hv->lock);
			return;
		}
		p = hv->queue[hv->q_head];
		hv->q_head = (hv->q_head + 1) % HV_QUEUE_LEN;
		hv->q_len--;
		pthread_mutex_unlock(&hv->lock);
		if (p.is_signal)
			vmbus_server_signal(hv->vmbus, p.conn_id);
		else
			vmbus_server_handle_message(hv->vmbus, p.conn_id, p.payload, p.len);
	}
}

/* ---- VMBus host operations -------------------------------------------- */

static int host_post_message(void *ctx, uint32_t vp, uint32_t sint, uint32_t msg_type,
			     const void *payload, size_t len)
{
	struct hv_partition *hv = ctx;

	return synic_post_message(hv->synic, vp, sint, msg_type, payload, len);
}

static int host_signal_guest(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid)
{
	struct hv_partition *hv = ctx;
	int ret = synic_set_event(hv->synic, vp, sint, relid);

	return ret < 0 ? ret : 0;
}

static int host_kick_guest(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid)
{
	struct hv_partition *hv = ctx;

	return synic_raise_event(hv->synic, vp, sint, relid);
}

static void watchdog_tick(struct loop_timer *t)
{
	struct hv_partition *hv = container_of(t, struct hv_partition, watchdog);

	vmbus_server_watchdog(hv->vmbus);
}

static void port_signalled(struct loop_source *src, uint32_t events)
{
	struct hv_port *port = container_of(src, struct hv_port, src);
	eventfd_t v;

	eventfd_read(src->fd, &v);
	vmbus_server_signal(port->hv->vmbus, port->conn_id);
}

static int kvm_eventfd(struct hv_partition *hv, uint32_t conn_id, int fd, bool assign)
{
	struct kvm_hyperv_eventfd e = {
		.conn_id = conn_id, .fd = fd, .flags = assign ? 0 : KVM_HYPERV_EVENTFD_DEASSIGN,
	};

	return ioctl(hv->vm->vm_fd, KVM_HYPERV_EVENTFD, &e) < 0 ? -errno : 0;
}

static int port_open(struct hv_partition *hv, uint32_t conn_id)
{
	struct hv_port *port = calloc(1, sizeof(*port));
	struct hv_port **grown;
	int ret;

	if (!port)
		return -ENOMEM;
	port->hv = hv;
	port->conn_id = conn_id;
	port->fd = -1;
	if (hv->have_eventfd) {
		port->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ret = port->fd < 0 ? -errno : kvm_eventfd(hv, conn_id, port->fd, true);
		if (!ret)
			ret = loop_add(hv->vm->loop, &port->src, port->fd, EPOLLIN, port_signalled);
		if (ret) {
			log_err("routing signals of connection %#x: %s", conn_id, strerror(-ret));
			if (port->fd >= 0)
				close(port->fd);
			free(port);
			return ret;
		}
	}
	pthread_mutex_lock(&hv->lock);
	grown = realloc(hv->ports, (hv->nr_ports + 1) * sizeof(*grown));
	if (grown) {
		hv->ports = grown;
		hv->ports[hv->nr_ports++] = port;
	}
	pthread_mutex_unlock(&hv->lock);
	return grown ? 0 : -ENOMEM;
}

static void port_close(struct hv_partition *hv, struct hv_port *port)
{
	if (port->fd >= 0) {
		kvm_eventfd(hv, port->conn_id, port->fd, false);
		loop_del(hv->vm->loop, &port->src);
		close(port->fd);
	}
	free(port);
}

static int host_register_guest_signal(void *ctx, uint32_t conn_id, bool on)
{
	struct hv_partition *hv = ctx;
	struct hv_port *port = NULL;

	if (on)
		return port_open(hv, conn_id);
	pthread_mutex_lock(&hv->lock);
	for (unsigned i = 0; i < hv->nr_ports; i++) {
		if (hv->ports[i]->conn_id == conn_id) {
			port = hv->ports[i];
			hv->ports[i] = hv->ports[--hv->nr_ports];
			break;
		}
	}
	pthread_mutex_unlock(&hv->lock);
	if (port)
		port_close(hv, port);
	return 0;
}

static const struct vmbus_host_ops vmbus_ops = {
	.post_message = host_post_message,
	.signal_guest = host_signal_guest,
	.kick_guest = host_kick_guest,
	.register_guest_signal = host_register_guest_signal,
};

/* ---- lifetime ----------------------------------------------------------- */

struct hv_partition *hv_partition_new(struct vm *vm)
{
	struct hv_partition *hv = calloc(1, sizeof(*hv));
	struct vmbus_server_config cfg = { .gm = &vm->mem, .nr_vps = vm->cfg->nr_cpus, .ops = &vmbus_ops };

	if (!hv)
		return NULL;
	hv->vm = vm;
	hv->nr_vps = vm->cfg->nr_cpus;
	hv->have_eventfd = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_HYPERV_EVENTFD) > 0;
	pthread_mutex_init(&hv->lock, NULL);
	for (unsigned i = 0; i < VM_MAX_CPUS; i++) {
		hv->sint_fd[i] = -1;
		hv->ack[i].src.fd = -1;
	}
	hv->queue_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (hv->queue_fd < 0 || loop_add(vm->loop, &hv->queue_src, hv->queue_fd, EPOLLIN, drain_queue)) {
		if (hv->queue_fd >= 0)
			close(hv->queue_fd);
		hv->queue_fd = -1;
		hv_partition_free(hv);
		return NULL;
	}
	hv->synic = synic_new(&vm->mem, hv->nr_vps, 0, &synic_ops, hv);
	cfg.ctx = hv;
	hv->vmbus = hv->synic ? vmbus_server_new(&cfg) : NULL;
	if (!hv->vmbus || loop_timer_add(vm->loop, &hv->watchdog, watchdog_tick) < 0) {
		hv_partition_free(hv);
		return NULL;
	}
	hv->watchdog_added = true;
	if (loop_timer_arm(&hv->watchdog, VMBUS_WATCHDOG_MS, VMBUS_WATCHDOG_MS) < 0) {
		hv_partition_free(hv);
		return NULL;
	}
	return hv;
}

struct vmbus_server *hv_vmbus_server(struct hv_partition *hv)
{
	return hv->vmbus;
}

void hv_partition_free(struct hv_partition *hv)
{
	if (!hv)
		return;
	if (hv->watchdog_added)
		loop_timer_del(hv->vm->loop, &hv->watchdog);
	/* The server closes channels first: that unregisters their ports. */
	if (hv->vmbus)
		vmbus_server_free(hv->vmbus);
	for (unsigned i = 0; i < hv->nr_ports; i++)
		port_close(hv, hv->ports[i]);
	free(hv->ports);
	if (hv->synic)
		synic_free(hv->synic);
	for (unsigned vp = 0; vp < VM_MAX_CPUS; vp++) {
		if (hv->ack[vp].src.fd >= 0) {
			loop_del(hv->vm->loop, &hv->ack[vp].src);
			close(hv->ack[vp].src.fd);
		}
		if (hv->sint_fd[vp] >= 0)
			close(hv->sint_fd[vp]);
	}
	if (hv->queue_fd >= 0) {
		loop_del(hv->vm->loop, &hv->queue_src);
		close(hv->queue_fd);
	}
	pthread_mutex_destroy(&hv->lock);
	free(hv);
}
