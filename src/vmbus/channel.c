/* Channels: OPENCHANNEL / CLOSECHANNEL / MODIFYCHANNEL and the ring I/O
 * helpers device models use. */
#include "vmbus/server_internal.h"

#include <errno.h>
#include <string.h>

static void send_open_result(struct vmbus_server *srv, uint32_t relid, uint32_t openid,
			     uint32_t status)
{
	struct vmbus_msg_open_result r;

	memset(&r, 0, sizeof(r));
	r.hdr.msgtype = VMBUS_MSG_OPENCHANNEL_RESULT;
	r.child_relid = relid;
	r.openid = openid;
	r.status = status;
	srv_send(srv, &r, sizeof(r));
}

/* Undo what open set up (rings, signal routing, GPADL reference). */
static void chan_unmap(struct vmbus_channel *ch)
{
	struct vmbus_server *srv = ch->srv;
	struct vmbus_gpadl *g = ch->ring_gpadl;

	if (srv->ops.register_guest_signal)
		srv->ops.register_guest_signal(srv->ctx, ch->conn_id, false);
	ring_destroy(&ch->in);
	ring_destroy(&ch->out);
	ch->ring_gpadl = NULL;
	ch->state = CHAN_OFFERED;
	if (g)
		gpadl_unuse(g); /* may answer a deferred teardown */
}

void chan_close(struct vmbus_channel *ch)
{
	struct vmbus_server *srv = ch->srv;

	if (ch->state != CHAN_OPEN)
		return;
	/* Closed before the device hears of it: its sends now fail. */
	ch->state = CHAN_OFFERED;
	if (ch->dev->cls->close) {
		srv->depth++;
		ch->dev->cls->close(ch);
		srv->depth--;
	}
	chan_unmap(ch);
}

/* Validate OPENCHANNEL against the channel and its ring GPADL; returns the
 * GPADL or NULL after logging why not. */
static struct vmbus_gpadl *open_check(struct vmbus_server *srv, struct vmbus_channel *ch,
				      const struct vmbus_msg_open_channel *m)
{
	struct vmbus_gpadl *g = gpadl_find(srv, m->ringbuffer_gpadl);
	char name[CHAN_NAME_LEN];
	const char *why = NULL;
	uint32_t n;

	if (ch->rescinded)
		why = "offer was rescinded";
	else if (ch->state == CHAN_OPEN)
		why = "already open";
	else if (!g || g->state != GPADL_READY)
		why = "ring GPADL unknown, incomplete or being torn down";
	else if (g->nr_ranges != 1 || g->ranges[0].byte_offset != 0 ||
		 g->ranges[0].byte_count != (uint64_t)g->nr_pfns * VMBUS_PAGE_SIZE)
		why = "ring GPADL is not whole pages in one range";
	else if (m->target_vp >= srv->nr_vps)
		why = "target VP does not exist";
	if (!why) {
		n = g->nr_pfns;
		/* Each ring needs its control page and at least one data page. */
		if (n < 4 || m->downstream_page_offset < 2 || m->downstream_page_offset > n - 2)
			why = "downstream ring offset outside the ring GPADL";
		else if (m->downstream_page_offset > RING_MAX_PAGES ||
			 n - m->downstream_page_offset > RING_MAX_PAGES)
			why = "ring too large";
	}
	if (!why)
		return g;
	log_ratelimited(LOG_WARN,
			"vmbus: %s: OPENCHANNEL refused: %s (gpadl %#x, offset %u, target VP %u)",
			chan_name(ch, name, sizeof(name)), why, m->ringbuffer_gpadl,
			m->downstream_page_offset, m->target_vp);
	return NULL;
}

/* Map both rings and route signals; returns 0 or a negative errno. */
static int chan_map(struct vmbus_channel *ch, struct vmbus_gpadl *g, uint32_t down)
{
	struct vmbus_server *srv = ch->srv;
	char name[CHAN_NAME_LEN];
	int ret;

	ret = ring_init(&ch->in, srv->gm, g->pfns, down, RING_READER);
	if (ret == 0) {
		ret = ring_init(&ch->out, srv->gm, g->pfns + down, g->nr_pfns - down, RING_WRITER);
		if (ret)
			ring_destroy(&ch->in);
	}
	if (ret) {
		log_ratelimited(LOG_WARN, "vmbus: %s: OPENCHANNEL refused: ring control page %s",
				chan_name(ch, name, sizeof(name)),
				ret == -EPROTO ? "holds an invalid index" : "cannot be mapped");
		return ret;
	}
	if (srv->ops.register_guest_signal) {
		ret = srv->ops.register_guest_signal(srv->ctx, ch->conn_id, true);
		if (ret) {
			log_ratelimited(LOG_ERR, "vmbus: %s: cannot route signals of connection %#x: %d",
					chan_name(ch, name, sizeof(name)), ch->conn_id, ret);
			ring_destroy(&ch->in);
			ring_destroy(&ch->out);
			return ret;
		}
	}
	gpadl_use(g);
	ch->ring_gpadl = g;
	return 0;
}

void chan_handle_open(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_open_channel *m = msg;
	struct vmbus_channel *ch = chan_by_relid(srv, m->child_relid);
	char name[CHAN_NAME_LEN];
	struct vmbus_gpadl *g;
	int ret = 0;

	if (!ch) {
		log_ratelimited(LOG_WARN, "vmbus: OPENCHANNEL for unknown relid %u", m->child_relid);
		send_open_result(srv, m->child_relid, m->openid, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	g = open_check(srv, ch, m);
	if (!g || chan_map(ch, g, m->downstream_page_offset)) {
		send_open_result(srv, m->child_relid, m->openid, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	ch->target_vp = m->target_vp;
	memcpy(ch->open_data, m->user_data, sizeof(ch->open_data));
	ch->broken = false;
	ch->state = CHAN_OPEN;
	if (ch->dev->cls->open) {
		srv->depth++;
		ret = ch->dev->cls->open(ch);
		srv->depth--;
	}
	if (ret < 0 || ch->state != CHAN_OPEN) {
		log_ratelimited(LOG_WARN, "vmbus: %s: device refused to open: %d",
				chan_name(ch, name, sizeof(name)), ret);
		if (ch->state == CHAN_OPEN)
			chan_unmap(ch);
		send_open_result(srv, m->child_relid, m->openid, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	send_open_result(srv, m->child_relid, m->openid, VMBUS_STATUS_SUCCESS);
	/* One extra interrupt covers packets the device queued before the
	 * guest saw the result (harmless otherwise; Hyper-V does the same). */
	vmbus_chan_signal(ch);
}

void chan_handle_close(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_relid *m = msg;
	struct vmbus_channel *ch = chan_by_relid(srv, m->child_relid);
	char name[CHAN_NAME_LEN];

	if (!ch) {
		log_ratelimited(LOG_WARN, "vmbus: CLOSECHANNEL for unknown relid %u", m->child_relid);
		return;
	}
	if (ch->state != CHAN_OPEN) {
		log_ratelimited(LOG_WARN, "vmbus: %s: CLOSECHANNEL but it is not open",
				chan_name(ch, name, sizeof(name)));
		return;
	}
	chan_close(ch);
}

void chan_handle_modify(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_modify_channel *m = msg;
	struct vmbus_channel *ch = chan_by_relid(srv, m->child_relid);
	struct vmbus_msg_modify_channel_response r;
	uint32_t status = VMBUS_STATUS_SUCCESS;
	char name[CHAN_NAME_LEN];

	if (!ch) {
		log_ratelimited(LOG_WARN, "vmbus: MODIFYCHANNEL for unknown relid %u", m->child_relid);
		status = VMBUS_STATUS_UNSUCCESSFUL;
	} else if (m->target_vp >= srv->nr_vps) {
		log_ratelimited(LOG_WARN, "vmbus: %s: MODIFYCHANNEL to VP %u, only %u exist",
				chan_name(ch, name, sizeof(name)), m->target_vp, srv->nr_vps);
		status = VMBUS_STATUS_UNSUCCESSFUL;
	} else {
		ch->target_vp = m->target_vp;
	}
	if (srv->version < VMBUS_VERSION_WIN10_V5_3)
		return;
	memset(&r, 0, sizeof(r));
	r.hdr.msgtype = VMBUS_MSG_MODIFYCHANNEL_RESPONSE;
	r.child_relid = m->child_relid;
	r.status = status;
	srv_send(srv, &r, sizeof(r));
}

/* ---- channel API for devices ---- */

struct vmbus_device *vmbus_chan_device(const struct vmbus_channel *ch)
{
	return ch->dev;
}

uint16_t vmbus_chan_subindex(const struct vmbus_channel *ch)
{
	return ch->subidx;
}

uint32_t vmbus_chan_relid(const struct vmbus_channel *ch)
{
	return ch->relid;
}

uint32_t vmbus_chan_target_vp(const struct vmbus_channel *ch)
{
	return ch->target_vp;
}

bool vmbus_chan_is_open(const struct vmbus_channel *ch)
{
	return ch->state == CHAN_OPEN;
}

const uint8_t *vmbus_chan_open_data(const struct vmbus_channel *ch)
{
	return ch->open_data;
}

void *vmbus_chan_priv(const struct vmbus_channel *ch)
{
	return ch->priv;
}

void vmbus_chan_set_priv(struct vmbus_channel *ch, void *priv)
{
	ch->priv = priv;
}

void vmbus_chan_fail(struct vmbus_channel *ch, const char *why)
{
	char name[CHAN_NAME_LEN];

	if (ch->broken)
		return;
	ch->broken = true;
	log_ratelimited(LOG_WARN, "vmbus: %s: %s; channel disabled until the guest reopens it",
			chan_name(ch, name, sizeof(name)), why);
}

static int chan_io_ok(const struct vmbus_channel *ch)
{
	if (ch->state != CHAN_OPEN)
		return -ENOTCONN;
	return ch->broken ? -EPROTO : 0;
}

/* Interrupt the guest for an open channel: signal_guest, or with `again`
 * kick_guest (which raises the SINT even if the flag is still set). */
static void chan_interrupt(struct vmbus_channel *ch, bool again)
{
	struct vmbus_server *srv = ch->srv;
	int (*op)(void *, uint32_t, uint32_t, uint32_t) =
		again && srv->ops.kick_guest ? srv->ops.kick_guest : srv->ops.signal_guest;
	char name[CHAN_NAME_LEN];
	int ret;

	if (ch->state != CHAN_OPEN || srv->resetting)
		return;
	ret = op(srv->ctx, ch->target_vp, srv->msg_sint, ch->relid);
	if (ret < 0)
		log_ratelimited(LOG_WARN, "vmbus: %s: %s VP %u failed: %d",
				chan_name(ch, name, sizeof(name)),
				again ? "interrupting again" : "signalling", ch->target_vp, ret);
}

void vmbus_chan_signal(struct vmbus_channel *ch)
{
	chan_interrupt(ch, false);
}

int vmbus_chan_recv_peek(struct vmbus_channel *ch, struct ring_pkt *pkt)
{
	int ret = chan_io_ok(ch);

	if (ret)
		return ret;
	ret = ring_peek(&ch->in, pkt);
	if (ret == -EPROTO)
		vmbus_chan_fail(ch, "corrupt guest->host ring (write index or packet header)");
	return ret;
}

int vmbus_chan_recv_read(struct vmbus_channel *ch, const struct ring_pkt *pkt, uint32_t off,
			 void *dst, uint32_t len)
{
	int ret = chan_io_ok(ch);

	return ret ? ret : ring_pkt_read(&ch->in, pkt, off, dst, len);
}

void vmbus_chan_recv_pop(struct vmbus_channel *ch, const struct ring_pkt *pkt)
{
	if (!chan_io_ok(ch))
		ring_pop(&ch->in, pkt);
}

void vmbus_chan_recv_commit(struct vmbus_channel *ch)
{
	if (!chan_io_ok(ch) && ring_commit(&ch->in))
		vmbus_chan_signal(ch);
}

static int send_done(struct vmbus_channel *ch, int ret, bool signal)
{
	if (ret == -EPROTO)
		vmbus_chan_fail(ch, "corrupt host->guest ring (read index)");
	if (signal)
		vmbus_chan_signal(ch);
	return ret;
}

int vmbus_chan_send_raw(struct vmbus_channel *ch, const void *hdr, uint32_t hdr_len,
			const struct ring_iov *iov, unsigned niov)
{
	bool signal = false;
	int ret = chan_io_ok(ch);

	if (ret)
		return ret;
	ret = ring_write(&ch->out, hdr, hdr_len, iov, niov, &signal);
	return send_done(ch, ret, signal);
}

int vmbus_chan_send(struct vmbus_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const void *data, uint32_t len)
{
	bool signal = false;
	int ret = chan_io_ok(ch);

	if (ret)
		return ret;
	ret = ring_send(&ch->out, type, flags, trans_id, data, len, &signal);
	return send_done(ch, ret, signal);
}

int vmbus_chan_send_inband(struct vmbus_channel *ch, uint64_t trans_id, const void *data,
			   uint32_t len, bool completion_requested)
{
	return vmbus_chan_send(ch, VMBUS_PKT_DATA_INBAND,
			       completion_requested ? VMBUS_PKT_FLAG_COMPLETION_REQUESTED : 0,
			       trans_id, data, len);
}

int vmbus_chan_send_completion(struct vmbus_channel *ch, uint64_t trans_id, const void *data,
			       uint32_t len)
{
	return vmbus_chan_send(ch, VMBUS_PKT_COMP, 0, trans_id, data, len);
}

/* ---- stall watchdog ---- */

/* One tick for one channel; returns 1 if it was kicked or notified. */
unsigned chan_watchdog(struct vmbus_channel *ch)
{
	char name[CHAN_NAME_LEN];
	uint32_t guest_rd, unconsumed, unread;
	bool guest_behind, host_behind, guest_stalled, host_stalled, send_waits;

	if (ch->state != CHAN_OPEN || ch->broken) {
		ch->wd_guest_behind = ch->wd_host_behind = false;
		return 0;
	}
	unconsumed = ring_bytes_unconsumed(&ch->out, &guest_rd);
	unread = ring_bytes_to_read(&ch->in);
	guest_behind = unconsumed != 0;
	send_waits = ring_space_waiting(&ch->out);
	host_behind = unread != 0 || send_waits;
	guest_stalled = guest_behind && ch->wd_guest_behind && guest_rd == ch->wd_guest_rd;
	host_stalled = host_behind && ch->wd_host_behind && ch->in.rd == ch->wd_host_rd;
	ch->wd_guest_behind = guest_behind;
	ch->wd_guest_rd = guest_rd;
	ch->wd_host_behind = host_behind;
	ch->wd_host_rd = ch->in.rd;
	if (guest_stalled) {
		log_ratelimited(LOG_WARN,
				"vmbus: %s: the guest left %u bytes unread for %u ms (read index %u, "
				"interrupt mask %u); interrupting VP %u again",
				chan_name(ch, name, sizeof(name)), unconsumed, VMBUS_WATCHDOG_MS,
				guest_rd, __atomic_load_n(&ch->out.ctrl->interrupt_mask, __ATOMIC_RELAXED),
				ch->target_vp);
		chan_interrupt(ch, true);
	}
	if (host_stalled && ch->dev->cls->notify) {
		log_ratelimited(LOG_WARN,
				"vmbus: %s: %u bytes from the guest unread for %u ms%s; serving the "
				"channel as if signalled",
				chan_name(ch, name, sizeof(name)), unread, VMBUS_WATCHDOG_MS,
				send_waits ? ", a send waits for free space" : "");
		ch->dev->cls->notify(ch);
	}
	return guest_stalled || host_stalled;
}
