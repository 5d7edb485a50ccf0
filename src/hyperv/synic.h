/* Host side of SynIC message and event delivery, on guest memory, without
 * KVM: the caller reports each VP's SCONTROL/SIMP/SIEFP values (KVM gives
 * them in KVM_EXIT_HYPERV_SYNIC) and supplies "assert SINT n on VP v"
 * (KVM: the irqfd of that VP's HV_SINT route).
 *
 * Messages: synic_post_message() writes a 256-byte message into SINT n's
 * slot of the VP's message page if the slot is free (message_type ==
 * HVMSG_NONE), storing message_type last, and asserts the SINT. If the slot
 * is busy it sets msg_pending in the slot (so the guest writes EOM when it
 * frees it), re-checks, and otherwise queues the message; synic_eom() /
 * synic_ack() retry the queue. Messages for one (VP, SINT) are delivered
 * in order. Each queue is bounded; a full queue is an error (-ENOBUFS).
 *
 * Events: synic_set_event() atomically sets a flag bit in SINT n's slot of
 * the VP's event-flags page and asserts the SINT only if the bit was clear.
 *
 * Thread-safety: every function may be called from any thread; an internal
 * mutex serializes them. The assert_sint callback is called without that
 * mutex held and must not block for long. Guest writes to the pages race
 * only through fields that are accessed atomically. KVM's own in-kernel
 * stimer messages could use the same slot: where hvmm offers stimers at
 * all it offers direct mode, so Linux keeps SINT2 for VMBus (see
 * hyperv-cpu-interface.md 6.6). */
#ifndef HVMM_SYNIC_H
#define HVMM_SYNIC_H

#include <stddef.h>
#include <stdint.h>

#include "core/guest_mem.h"
#include "hyperv/hv_proto.h"

struct synic;

struct synic_ops {
	/* Raise SINT `sint` on VP `vp`. Return 0 or a negative errno (logged). */
	int (*assert_sint)(void *ctx, uint32_t vp, uint32_t sint);
};

#define SYNIC_DEFAULT_QUEUE_LEN 256

/* `nr_vps` VPs with indices 0..nr_vps-1; `queue_len` messages may wait per
 * (VP, SINT) (0 = SYNIC_DEFAULT_QUEUE_LEN). NULL on allocation failure. */
struct synic *synic_new(const struct guest_mem *gm, uint32_t nr_vps, unsigned queue_len,
			const struct synic_ops *ops, void *ctx);
void synic_free(struct synic *s);

/* The VP's SynIC registers changed (raw MSR values: bit 0 enable, bits
 * 63:12 page). Queued messages are retried if the message page is usable.
 * Returns 0 or -EINVAL for a bad VP index. */
int synic_set_regs(struct synic *s, uint32_t vp, uint64_t scontrol, uint64_t simp,
		   uint64_t siefp);

/* Post one message of `msg_type` (non-zero) with `len` <= 240 payload bytes.
 * Returns 0 when delivered or queued, -EINVAL for bad arguments, -ENOBUFS
 * when the (VP, SINT) queue is full (the message is dropped). */
int synic_post_message(struct synic *s, uint32_t vp, uint32_t sint, uint32_t msg_type,
		       const void *payload, size_t len);

/* The guest freed a slot (EOM write or the SINT's EOI/ack notification):
 * retry the queue of (vp, sint), or of every SINT of vp with synic_ack().
 * Return the number of messages delivered, or -EINVAL. */
int synic_eom(struct synic *s, uint32_t vp, uint32_t sint);
int synic_ack(struct synic *s, uint32_t vp);

/* Set event flag `flag` (< 2048) of SINT `sint` on VP `vp`. Returns 1 if it
 * was newly set (the SINT was asserted), 0 if it was already set, -EINVAL
 * for bad arguments, -ENXIO if the VP's event page is not enabled. */
int synic_set_event(struct synic *s, uint32_t vp, uint32_t sint, uint32_t flag);
/* Like synic_set_event(), but assert the SINT even if the flag was already
 * set (an interrupt the guest may have lost). Returns 0 or as above. */
int synic_raise_event(struct synic *s, uint32_t vp, uint32_t sint, uint32_t flag);

/* Messages waiting for (vp, sint) (0 for bad arguments). */
unsigned synic_queued(struct synic *s, uint32_t vp, uint32_t sint);

/* VM reset: forget register values and drop every queued message. */
void synic_reset(struct synic *s);

#endif
