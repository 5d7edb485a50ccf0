#include "hyperv/synic.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct synic_queue {
	struct hv_message *buf; /* allocated on first use */
	unsigned head;
	unsigned count;
};

struct synic_vp {
	uint64_t scontrol;
	uint64_t simp;
	uint64_t siefp;
	struct synic_queue q[HV_SYNIC_SINT_COUNT];
};

struct synic {
	pthread_mutex_t lock;
	const struct guest_mem *gm;
	struct synic_ops ops;
	void *ctx;
	uint32_t nr_vps;
	unsigned queue_len;
	struct synic_vp *vp;
};

/* SINTs whose interrupt must be raised once the lock is dropped. */
typedef uint32_t sint_mask_t;
_Static_assert(HV_SYNIC_SINT_COUNT <= 32, "sint mask width");

struct synic *synic_new(const struct guest_mem *gm, uint32_t nr_vps, unsigned queue_len,
			const struct synic_ops *ops, void *ctx)
{
	struct synic *s;

	if (!nr_vps)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->vp = calloc(nr_vps, sizeof(*s->vp));
	if (!s->vp) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->gm = gm;
	s->ops = *ops;
	s->ctx = ctx;
	s->nr_vps = nr_vps;
	s->queue_len = queue_len ? queue_len : SYNIC_DEFAULT_QUEUE_LEN;
	return s;
}

static void drop_queues(struct synic *s)
{
	for (uint32_t v = 0; v < s->nr_vps; v++)
		for (unsigned i = 0; i < HV_SYNIC_SINT_COUNT; i++) {
			free(s->vp[v].q[i].buf);
			memset(&s->vp[v].q[i], 0, sizeof(s->vp[v].q[i]));
		}
}

void synic_free(struct synic *s)
{
	if (!s)
		return;
	drop_queues(s);
	pthread_mutex_destroy(&s->lock);
	free(s->vp);
	free(s);
}

static void raise_sints(struct synic *s, uint32_t vp, sint_mask_t mask)
{
	for (unsigned i = 0; mask; i++, mask >>= 1) {
		int ret;

		if (!(mask & 1))
			continue;
		ret = s->ops.assert_sint(s->ctx, vp, i);
		if (ret < 0)
			log_ratelimited(LOG_WARN, "synic: raising SINT%u on VP %u failed: %d", i,
					vp, ret);
	}
}

/* Host pointer of SINT `sint`'s 256-byte slot in a SIMP/SIEFP page, or
 * NULL if the page is disabled or not guest RAM. */
static void *page_slot(const struct synic *s, const struct synic_vp *v, uint64_t reg,
		       uint32_t sint)
{
	if (!(v->scontrol & HV_SYNIC_ENABLE) || !(reg & HV_SYNIC_ENABLE))
		return NULL;
	return guest_mem_ptr(s->gm, (reg & HV_SYNIC_PAGE_MASK) + (uint64_t)sint * HV_MESSAGE_SIZE,
			     HV_MESSAGE_SIZE);
}

/* Try to place `m` in the slot. If the slot is busy, ask the guest for an
 * EOM by setting msg_pending, then look once more in case it was freed in
 * between. `more` marks the written message pending too (more queued). */
static bool try_deliver(struct synic *s, struct synic_vp *v, uint32_t sint,
			const struct hv_message *m, bool more)
{
	struct hv_message *slot = page_slot(s, v, v->simp, sint);
	uint32_t type;

	if (!slot)
		return false;
	type = __atomic_load_n(&slot->hdr.message_type, __ATOMIC_ACQUIRE);
	if (type != HVMSG_NONE) {
		__atomic_fetch_or(&slot->hdr.message_flags, HV_MESSAGE_FLAG_PENDING,
				  __ATOMIC_SEQ_CST);
		type = __atomic_load_n(&slot->hdr.message_type, __ATOMIC_SEQ_CST);
		if (type != HVMSG_NONE)
			return false;
	}
	slot->hdr.payload_size = m->hdr.payload_size;
	__atomic_store_n(&slot->hdr.message_flags, more ? HV_MESSAGE_FLAG_PENDING : 0,
			 __ATOMIC_RELAXED);
	slot->hdr.reserved = 0;
	slot->hdr.sender = 0;
	memcpy(slot->payload, m->payload, m->hdr.payload_size);
	/* The type goes last: it hands the slot to the guest. */
	__atomic_store_n(&slot->hdr.message_type, m->hdr.message_type, __ATOMIC_RELEASE);
	return true;
}

/* Deliver the head of the queue if possible; returns 1 if one was. */
static int flush_queue(struct synic *s, struct synic_vp *v, uint32_t sint)
{
	struct synic_queue *q = &v->q[sint];

	if (!q->count)
		return 0;
	if (!try_deliver(s, v, sint, &q->buf[q->head], q->count > 1))
		return 0;
	q->head = (q->head + 1) % s->queue_len;
	q->count--;
	return 1;
}

static int enqueue(struct synic *s, struct synic_queue *q, const struct hv_message *m)
{
	if (!q->buf) {
		q->buf = calloc(s->queue_len, sizeof(*q->buf));
		if (!q->buf)
			return -ENOMEM;
	}
	if (q->count == s->queue_len)
		return -ENOBUFS;
	q->buf[(q->head + q->count) % s->queue_len] = *m;
	q->count++;
	return 0;
}

int synic_set_regs(struct synic *s, uint32_t vp, uint64_t scontrol, uint64_t simp,
		   uint64_t siefp)
{
	sint_mask_t raise = 0;
	struct synic_vp *v;

	if (vp >= s->nr_vps)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	v = &s->vp[vp];
	v->scontrol = scontrol;
	v->simp = simp;
	v->siefp = siefp;
	for (uint32_t i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		if (flush_queue(s, v, i))
			raise |= 1u << i;
	pthread_mutex_unlock(&s->lock);
	raise_sints(s, vp, raise);
	return 0;
}

int synic_post_message(struct synic *s, uint32_t vp, uint32_t sint, uint32_t msg_type,
		       const void *payload, size_t len)
{
	struct hv_message m;
	struct synic_queue *q;
	bool delivered = false;
	int ret = 0;

	if (vp >= s->nr_vps || sint >= HV_SYNIC_SINT_COUNT || msg_type == HVMSG_NONE ||
	    len > HV_MESSAGE_PAYLOAD_MAX || (len && !payload))
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.hdr.message_type = msg_type;
	m.hdr.payload_size = (uint8_t)len;
	if (len)
		memcpy(m.payload, payload, len);

	pthread_mutex_lock(&s->lock);
	q = &s->vp[vp].q[sint];
	if (q->count == 0)
		delivered = try_deliver(s, &s->vp[vp], sint, &m, false);
	if (!delivered) {
		/* Keep FIFO order: queue behind earlier messages, then retry
		 * the head (its EOM may not have been reported yet). */
		unsigned earlier = q->count;

		ret = enqueue(s, q, &m);
		if (ret == 0 && earlier)
			delivered = flush_queue(s, &s->vp[vp], sint) > 0;
	}
	pthread_mutex_unlock(&s->lock);
	if (ret == -ENOBUFS)
		log_ratelimited(LOG_WARN,
				"synic: message queue of VP %u SINT%u full (%u); message type %#x dropped",
				vp, sint, s->queue_len, msg_type);
	if (delivered)
		raise_sints(s, vp, 1u << sint);
	return ret;
}

int synic_eom(struct synic *s, uint32_t vp, uint32_t sint)
{
	int n;

	if (vp >= s->nr_vps || sint >= HV_SYNIC_SINT_COUNT)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	n = flush_queue(s, &s->vp[vp], sint);
	pthread_mutex_unlock(&s->lock);
	if (n)
		raise_sints(s, vp, 1u << sint);
	return n;
}

int synic_ack(struct synic *s, uint32_t vp)
{
	sint_mask_t raise = 0;
	int n = 0;

	if (vp >= s->nr_vps)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < HV_SYNIC_SINT_COUNT; i++)
		if (flush_queue(s, &s->vp[vp], i)) {
			raise |= 1u << i;
			n++;
		}
	pthread_mutex_unlock(&s->lock);
	raise_sints(s, vp, raise);
	return n;
}

static int set_event(struct synic *s, uint32_t vp, uint32_t sint, uint32_t flag, bool always)
{
	uint64_t *words, bit, old;

	if (vp >= s->nr_vps || sint >= HV_SYNIC_SINT_COUNT || flag >= HV_SYNIC_EVENT_FLAG_COUNT)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	words = page_slot(s, &s->vp[vp], s->vp[vp].siefp, sint);
	pthread_mutex_unlock(&s->lock);
	if (!words)
		return -ENXIO;
	bit = 1ull << (flag % 64);
	/* The guest clears bits with atomic test-and-clear: OR atomically. */
	old = __atomic_fetch_or(&words[flag / 64], bit, __ATOMIC_SEQ_CST);
	if ((old & bit) && !always)
		return 0;
	raise_sints(s, vp, 1u << sint);
	return !(old & bit);
}

int synic_set_event(struct synic *s, uint32_t vp, uint32_t sint, uint32_t flag)
{
	return set_event(s, vp, sint, flag, false);
}

int synic_raise_event(struct synic *s, uint32_t vp, uint32_t sint, uint32_t flag)
{
	int ret = set_event(s, vp, sint, flag, true);

	return ret < 0 ? ret : 0;
}

unsigned synic_queued(struct synic *s, uint32_t vp, uint32_t sint)
{
	unsigned n;

	if (vp >= s->nr_vps || sint >= HV_SYNIC_SINT_COUNT)
		return 0;
	pthread_mutex_lock(&s->lock);
	n = s->vp[vp].q[sint].count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void synic_reset(struct synic *s)
{
	pthread_mutex_lock(&s->lock);
	drop_queues(s);
	for (uint32_t v = 0; v < s->nr_vps; v++) {
		s->vp[v].scontrol = 0;
		s->vp[v].simp = 0;
		s->vp[v].siefp = 0;
	}
	pthread_mutex_unlock(&s->lock);
}
