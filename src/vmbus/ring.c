#include "vmbus/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The guest writes the control page concurrently: loads of its fields are
 * atomic with acquire ordering, our stores release, and the points where
 * the protocol needs a full barrier use a sequentially consistent fence. */
static inline uint32_t ctrl_load(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void ctrl_store(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void full_barrier(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static bool index_valid(const struct vmbus_ring *r, uint32_t idx)
{
	return idx < r->size && (idx & 7) == 0;
}

/* Bytes between `from` (reader) and `to` (writer), both valid indices. */
static uint32_t ring_distance(const struct vmbus_ring *r, uint32_t from, uint32_t to)
{
	return to >= from ? to - from : r->size - (from - to);
}

static uint32_t ring_advance(const struct vmbus_ring *r, uint32_t idx, uint32_t n)
{
	uint64_t v = (uint64_t)idx + n;

	return (uint32_t)(v % r->size);
}

/* Copy out of the data area starting at `off`, wrapping; len <= size. */
static void ring_copy_from(const struct vmbus_ring *r, uint32_t off, void *dst, uint32_t len)
{
	uint8_t *d = dst;

	while (len) {
		uint32_t page = off >> VMBUS_PAGE_SHIFT;
		uint32_t in = off & (VMBUS_PAGE_SIZE - 1);
		uint32_t n = VMBUS_PAGE_SIZE - in;

		if (n > len)
			n = len;
		memcpy(d, r->pages[page] + in, n);
		d += n;
		len -= n;
		off = ring_advance(r, off, n);
	}
}

static void ring_copy_to(struct vmbus_ring *r, uint32_t off, const void *src, uint32_t len)
{
	const uint8_t *s = src;

	while (len) {
		uint32_t page = off >> VMBUS_PAGE_SHIFT;
		uint32_t in = off & (VMBUS_PAGE_SIZE - 1);
		uint32_t n = VMBUS_PAGE_SIZE - in;

		if (n > len)
			n = len;
		memcpy(r->pages[page] + in, s, n);
		s += n;
		len -= n;
		off = ring_advance(r, off, n);
	}
}

static void ring_zero(struct vmbus_ring *r, uint32_t off, uint32_t len)
{
	static const uint8_t zeros[8];

	/* Only used for the < 8 bytes of padding. */
	ring_copy_to(r, off, zeros, len);
}

int ring_init(struct vmbus_ring *r, const struct guest_mem *gm, const uint64_t *pfns,
	      uint32_t npages, enum ring_role role)
{
	uint32_t idx;

	memset(r, 0, sizeof(*r));
	if (npages < 2 || npages > RING_MAX_PAGES)
		return -EINVAL;
	for (uint32_t i = 0; i < npages; i++)
		if (pfns[i] > (UINT64_MAX >> VMBUS_PAGE_SHIFT))
			return -EFAULT;
	r->ctrl = guest_mem_ptr(gm, pfns[0] << VMBUS_PAGE_SHIFT, VMBUS_PAGE_SIZE);
	if (!r->ctrl)
		return -EFAULT;
	r->npages = npages - 1;
	r->size = r->npages * VMBUS_PAGE_SIZE;
	r->role = role;
	r->pages = calloc(r->npages, sizeof(*r->pages));
	if (!r->pages)
		return -ENOMEM;
	for (uint32_t i = 0; i < r->npages; i++) {
		r->pages[i] = guest_mem_ptr(gm, pfns[i + 1] << VMBUS_PAGE_SHIFT, VMBUS_PAGE_SIZE);
		if (!r->pages[i]) {
			ring_destroy(r);
			return -EFAULT;
		}
	}
	if (role == RING_READER) {
		idx = ctrl_load(&r->ctrl->read_index);
		if (!index_valid(r, idx))
			goto corrupt;
		r->rd = r->rd_committed = idx;
	} else {
		idx = ctrl_load(&r->ctrl->write_index);
		if (!index_valid(r, idx))
			goto corrupt;
		r->wr = idx;
		__atomic_fetch_or(&r->ctrl->feature_bits, VMBUS_RING_FEAT_PENDING_SEND_SZ,
				  __ATOMIC_SEQ_CST);
	}
	return 0;
corrupt:
	ring_destroy(r);
	return -EPROTO;
}

void ring_destroy(struct vmbus_ring *r)
{
	free(r->pages);
	memset(r, 0, sizeof(*r));
}

/* ---- reader ---- */

int ring_peek(struct vmbus_ring *r, struct ring_pkt *pkt)
{
	uint32_t w = ctrl_load(&r->ctrl->write_index);
	uint32_t avail, len, off;

	if (!index_valid(r, w))
		return -EPROTO;
	avail = ring_distance(r, r->rd, w);
	if (avail == 0 && r->rd != r->rd_committed) {
		/* Publish what we consumed before calling the ring empty. The
		 * guest signals only when a write finds read_index equal to its
		 * old write index; a packet written while read_index still lags
		 * behind would otherwise wait for a signal that never comes.
		 * ring_commit() still decides the pending-send signal. */
		full_barrier();
		ctrl_store(&r->ctrl->read_index, r->rd);
		full_barrier();
		w = ctrl_load(&r->ctrl->write_index);
		if (!index_valid(r, w))
			return -EPROTO;
		avail = ring_distance(r, r->rd, w);
	}
	if (avail == 0)
		return -EAGAIN;
	if (avail < sizeof(pkt->desc) + VMBUS_RING_TRAILER_LEN)
		return -EPROTO;
	/* Read the descriptor once; every check below uses the copy. */
	ring_copy_from(r, r->rd, &pkt->desc, sizeof(pkt->desc));
	len = (uint32_t)pkt->desc.len8 * 8;
	off = (uint32_t)pkt->desc.offset8 * 8;
	if (len < sizeof(pkt->desc) || off < sizeof(pkt->desc) || off > len)
		return -EPROTO;
	if ((uint64_t)len + VMBUS_RING_TRAILER_LEN > avail)
		return -EPROTO;
	pkt->start = r->rd;
	pkt->len = len;
	pkt->data_off = off;
	pkt->data_len = len - off;
	return 0;
}

int ring_pkt_read(const struct vmbus_ring *r, const struct ring_pkt *pkt, uint32_t off,
		  void *dst, uint32_t len)
{
	if ((uint64_t)off + len > pkt->len || pkt->len >= r->size)
		return -EINVAL;
	if (len)
		ring_copy_from(r, ring_advance(r, pkt->start, off), dst, len);
	return 0;
}

void ring_pop(struct vmbus_ring *r, const struct ring_pkt *pkt)
{
	if (pkt->start != r->rd)
		return; /* not the packet at the head: ignore */
	r->rd = ring_advance(r, r->rd, pkt->len + VMBUS_RING_TRAILER_LEN);
}

bool ring_commit(struct vmbus_ring *r)
{
	uint32_t w, pending, free_before, free_after;

	if (r->rd == r->rd_committed)
		return false;
	/* Our reads of the packets must complete before the guest may reuse
	 * the space. */
	full_barrier();
	ctrl_store(&r->ctrl->read_index, r->rd);
	full_barrier();
	pending = ctrl_load(&r->ctrl->pending_send_sz);
	w = ctrl_load(&r->ctrl->write_index);
	free_before = r->size - ring_distance(r, r->rd_committed, w);
	free_after = r->size - ring_distance(r, r->rd, w);
	r->rd_committed = r->rd;
	if (!pending || !index_valid(r, w))
		return false;
	/* Signal only on the transition "not enough" -> "enough". */
	return free_before <= pending && free_after > pending;
}

uint32_t ring_bytes_to_read(const struct vmbus_ring *r)
{
	uint32_t w = ctrl_load(&r->ctrl->write_index);

	if (!index_valid(r, w))
		return 0;
	return ring_distance(r, r->rd, w);
}

void ring_mask(struct vmbus_ring *r)
{
	ctrl_store(&r->ctrl->interrupt_mask, 1);
	full_barrier();
}

bool ring_unmask(struct vmbus_ring *r)
{
	ctrl_store(&r->ctrl->interrupt_mask, 0);
	full_barrier();
	return ring_bytes_to_read(r) != 0;
}

/* ---- writer ---- */

static int writer_free(const struct vmbus_ring *r, uint32_t *free_bytes)
{
	uint32_t rd = ctrl_load(&r->ctrl->read_index);

	if (!index_valid(r, rd))
		return -EPROTO;
	*free_bytes = r->size - ring_distance(r, rd, r->wr);
	return 0;
}

uint32_t ring_bytes_free(const struct vmbus_ring *r)
{
	uint32_t f;

	return writer_free(r, &f) ? 0 : f;
}

uint32_t ring_bytes_unconsumed(const struct vmbus_ring *r, uint32_t *guest_rd)
{
	uint32_t rd = ctrl_load(&r->ctrl->read_index);

	*guest_rd = rd;
	return index_valid(r, rd) ? ring_distance(r, rd, r->wr) : 0;
}

bool ring_space_waiting(const struct vmbus_ring *r)
{
	uint32_t f;

	return r->pending_set && !writer_free(r, &f) &&
	       f > ctrl_load(&r->ctrl->pending_send_sz);
}

/* Check there is room for `total` bytes (strictly less than the free
 * space, so a full ring never looks empty); otherwise ask the guest to
 * signal us when there is, and check once more. */
static int writer_reserve(struct vmbus_ring *r, uint32_t total)
{
	uint32_t f;
	int ret;

	ret = writer_free(r, &f);
	if (ret)
		return ret;
	if (f > total)
		return 0;
	ctrl_store(&r->ctrl->pending_send_sz, total);
	r->pending_set = true;
	full_barrier();
	ret = writer_free(r, &f);
	if (ret)
		return ret;
	return f > total ? 0 : -EAGAIN;
}

static uint64_t iov_total(const struct ring_iov *iov, unsigned niov)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < niov; i++)
		n += iov[i].len;
	return n;
}

int ring_write(struct vmbus_ring *r, const void *hdr, uint32_t hdr_len,
	       const struct ring_iov *iov, unsigned niov, bool *signal)
{
	struct vmbus_pkt_desc desc;
	uint64_t payload = iov_total(iov, niov);
	uint64_t pkt_len, total;
	uint32_t old_wr, pos;
	uint64_t trailer;
	int ret;

	*signal = false;
	if (hdr_len < sizeof(desc) || (hdr_len & 7) || hdr_len > 0xffff * 8u)
		return -EINVAL;
	pkt_len = ((uint64_t)hdr_len + payload + 7) & ~(uint64_t)7;
	if (pkt_len > 0xffffull * 8)
		return -EMSGSIZE;
	total = pkt_len + VMBUS_RING_TRAILER_LEN;
	if (total >= r->size)
		return -EMSGSIZE;
	ret = writer_reserve(r, (uint32_t)total);
	if (ret)
		return ret;

	memcpy(&desc, hdr, sizeof(desc));
	desc.offset8 = (uint16_t)(hdr_len / 8);
	desc.len8 = (uint16_t)(pkt_len / 8);
	old_wr = r->wr;
	pos = old_wr;
	ring_copy_to(r, pos, &desc, sizeof(desc));
	pos = ring_advance(r, pos, sizeof(desc));
	ring_copy_to(r, pos, (const uint8_t *)hdr + sizeof(desc), hdr_len - (uint32_t)sizeof(desc));
	pos = ring_advance(r, pos, hdr_len - (uint32_t)sizeof(desc));
	for (unsigned i = 0; i < niov; i++) {
		ring_copy_to(r, pos, iov[i].base, (uint32_t)iov[i].len);
		pos = ring_advance(r, pos, (uint32_t)iov[i].len);
	}
	if (pkt_len - hdr_len - payload)
		ring_zero(r, pos, (uint32_t)(pkt_len - hdr_len - payload));
	pos = ring_advance(r, old_wr, (uint32_t)pkt_len);
	trailer = (uint64_t)old_wr << 32;
	ring_copy_to(r, pos, &trailer, sizeof(trailer));
	r->wr = ring_advance(r, pos, sizeof(trailer));

	/* The packet must be visible before the new write index. */
	full_barrier();
	ctrl_store(&r->ctrl->write_index, r->wr);
	if (r->pending_set) {
		ctrl_store(&r->ctrl->pending_send_sz, 0);
		r->pending_set = false;
	}
	full_barrier();
	/* Signal only if the guest wants interrupts and the ring was empty
	 * before this packet (otherwise it is still reading and will see it). */
	if (ctrl_load(&r->ctrl->interrupt_mask) == 0) {
		full_barrier();
		*signal = ctrl_load(&r->ctrl->read_index) == old_wr;
	}
	return 0;
}

int ring_send(struct vmbus_ring *r, uint16_t type, uint16_t flags, uint64_t trans_id,
	      const void *data, uint32_t len, bool *signal)
{
	struct vmbus_pkt_desc desc = { .type = type, .flags = flags, .trans_id = trans_id };
	struct ring_iov iov = { .base = data, .len = len };

	return ring_write(r, &desc, sizeof(desc), &iov, len ? 1 : 0, signal);
}
