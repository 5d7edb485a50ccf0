/* Host side of one VMBus ring buffer in guest memory.
 *
 * A ring is a list of guest pages (from a GPADL): the first is the control
 * page (struct vmbus_ring_ctrl), the rest the data area, which need not be
 * contiguous in guest-physical or host memory. ring_init() validates every
 * page once and keeps an array of host page pointers; data access wraps
 * around page by page.
 *
 * The host is the reader of the guest->host ring and the writer of the
 * host->guest ring. The guest writes its side of the control page
 * concurrently: every index it supplies is re-read atomically and checked
 * before use; a corrupt state is reported as -EPROTO and nothing outside
 * the ring is ever touched. Functions that may require a guest interrupt
 * report it through a bool (or return value); the caller signals.
 *
 * A struct vmbus_ring is used by one thread at a time. */
#ifndef HVMM_VMBUS_RING_H
#define HVMM_VMBUS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/guest_mem.h"
#include "vmbus/vmbus_proto.h"

/* Largest ring accepted (pages including the control page). */
#define RING_MAX_PAGES 8192u

enum ring_role {
	RING_READER, /* guest -> host: we consume packets */
	RING_WRITER, /* host -> guest: we produce packets */
};

struct vmbus_ring {
	struct vmbus_ring_ctrl *ctrl; /* host pointer to the control page */
	uint8_t **pages;              /* host pointers of the data pages */
	uint32_t npages;              /* data pages */
	uint32_t size;                /* data bytes = npages * 4096 */
	enum ring_role role;
	uint32_t rd;           /* reader: next unread byte (private) */
	uint32_t rd_committed; /* reader: last read_index published */
	uint32_t wr;           /* writer: next byte to write (ours) */
	bool pending_set;      /* writer: we asked for pending_send_sz */
};

/* A packet found by ring_peek(). desc is a private copy taken once; the
 * lengths are validated against the ring. */
struct ring_pkt {
	struct vmbus_pkt_desc desc;
	uint32_t start;    /* data-area offset of the descriptor */
	uint32_t len;      /* len8 * 8: descriptor + headers + payload */
	uint32_t data_off; /* offset8 * 8: payload offset from the start */
	uint32_t data_len; /* len - data_off */
};

/* One piece of a packet to write. */
struct ring_iov {
	const void *base;
	size_t len;
};

/* Map a ring of `npages` pages (control + data, npages >= 2) whose page
 * frame numbers are `pfns`. Returns 0, -EINVAL (bad count), -EFAULT (a
 * page is not guest RAM), -EPROTO (our index in the control page is
 * misaligned or out of range), -ENOMEM. The writer advertises
 * feat_pending_send_sz in its control page. */
int ring_init(struct vmbus_ring *r, const struct guest_mem *gm, const uint64_t *pfns,
	      uint32_t npages, enum ring_role role);
void ring_destroy(struct vmbus_ring *r);

/* ---- reader ---- */

/* Describe the next unread packet without consuming it. Returns 0, -EAGAIN
 * when the ring is empty (after publishing the read index, so that the
 * guest's next write sees an empty ring and signals), -EPROTO when the ring state or the packet header
 * is corrupt (write_index out of range or misaligned, len8 or offset8 too
 * small, offset8 > len8, packet plus trailer longer than the data). */
int ring_peek(struct vmbus_ring *r, struct ring_pkt *pkt);

/* Copy `len` bytes at `off` (from the packet start) of a peeked packet.
 * Returns 0 or -EINVAL if the range is not inside the packet. */
int ring_pkt_read(const struct vmbus_ring *r, const struct ring_pkt *pkt, uint32_t off,
		  void *dst, uint32_t len);

/* Consume a peeked packet (and its trailer) privately; the guest sees the
 * space after ring_commit() (or a ring_peek() that finds the ring empty). */
void ring_pop(struct vmbus_ring *r, const struct ring_pkt *pkt);

/* Publish the read index. Returns true if the guest must be signalled: it
 * set pending_send_sz and the free space just crossed it. */
bool ring_commit(struct vmbus_ring *r);

/* Bytes the guest has written that we have not consumed (0 on corrupt). */
uint32_t ring_bytes_to_read(const struct vmbus_ring *r);

/* Optional batching: ask the guest not to signal while we drain, then
 * re-enable signals; ring_unmask() returns true if data arrived meanwhile,
 * in which case the caller must keep draining (it gets no new signal). */
void ring_mask(struct vmbus_ring *r);
bool ring_unmask(struct vmbus_ring *r);

/* ---- writer ---- */

/* Write one packet: `hdr` (hdr_len bytes, a multiple of 8, >= 16) starts
 * with a struct vmbus_pkt_desc whose type/flags/trans_id the caller set;
 * offset8 and len8 are filled in here (payload follows the header). Then
 * the iov pieces, zero padding to 8 bytes and the trailer. Returns 0,
 * -EAGAIN when there is not enough free space (pending_send_sz is set so
 * the guest signals once it has freed enough: retry then), -EMSGSIZE if
 * the packet can never fit, -EINVAL for a bad header, -EPROTO if the
 * guest's read_index is corrupt. *signal is set when the guest must be
 * signalled (it was empty and interrupt_mask is clear). */
int ring_write(struct vmbus_ring *r, const void *hdr, uint32_t hdr_len,
	       const struct ring_iov *iov, unsigned niov, bool *signal);

/* Convenience: a packet with a plain 16-byte descriptor and one payload. */
int ring_send(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
	      const void *data, uint32_t len, bool *signal);

/* Free bytes for the writer (0 on corrupt state). */
uint32_t ring_bytes_free(const struct vmbus_ring *r);

/* Writer: bytes written that the guest has not consumed yet, and its read
 * index in *guest_rd (0 and the raw value on corrupt state). */
uint32_t ring_bytes_unconsumed(const struct vmbus_ring *r, uint32_t *guest_rd);

/* Writer: a ring_write() got -EAGAIN and the space it wanted is free now
 * (the guest's signal for it is due). */
bool ring_space_waiting(const struct vmbus_ring *r);

#endif
