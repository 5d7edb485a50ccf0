/* Test harness for the integration services: the real VMBus server over
 * fake guest memory, a fake clock, and a fake guest that connects to
 * VMBus, opens IC channels and answers the host's IC messages the way
 * Linux hv_utils does (written from the protocol description, not from
 * Linux). Shared by the unit tests (define TU_ASSERT as a cmocka assert
 * before including) and the IC fuzzer (TU_ASSERT aborts).
 *
 * Everything is static: each test program has one harness, `tu`. */
#ifndef HVMM_IC_TEST_UTIL_H
#define HVMM_IC_TEST_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/guest_mem.h"
#include "ic/ic.h"
#include "ic/ic_proto.h"
#include "util/log.h"
#include "vmbus/ring.h"
#include "vmbus/server.h"

#ifndef TU_ASSERT
#define TU_ASSERT(x)                 \
	do {                         \
		if (!(x))            \
			abort();     \
	} while (0)
#endif

#define TU_MEM_PAGES 512u
#define TU_NR_VPS 2u
#define TU_MAX_RELID 16u
#define TU_RING_PAGES 8u /* Linux: 3 pages + header each way */
#define TU_RING_DOWN 4u

struct tu_offer {
	guid_t type, inst;
	uint32_t relid, conn_id;
	uint16_t chn_flags;
	uint32_t pipe_mode;
};

struct tu_chan {
	bool open;
	uint32_t conn_id;
	struct vmbus_ring tx; /* guest -> host, the guest writes */
	struct vmbus_ring rx; /* host -> guest, the guest reads */
};

struct tu_event {
	const char *svc;
	enum ic_event ev;
	int err;
};

/* A packet the host sent, as the guest read it. */
struct tu_pkt {
	uint64_t trans_id;
	uint16_t type, flags;
	uint32_t len;
	uint8_t data[IC_MAX_MSG_LEN + 64];
};

static struct {
	struct guest_mem gm;
	uint8_t *mem;
	struct vmbus_server *srv;
	struct ic_host *ic;
	/* fake clock */
	uint64_t now_ms, filetime, reftime;
	int utc_err;
	unsigned utc_calls;
	/* channel-management messages the server posted (the last 64) */
	uint8_t msgs[64][240];
	size_t msg_len[64];
	unsigned nr_msgs; /* ever posted */
	struct tu_offer offers[TU_MAX_RELID];
	unsigned nr_offers;
	struct tu_chan chans[TU_MAX_RELID + 1];
	struct tu_event events[256];
	unsigned nr_events;
	unsigned next_gpadl;
	/* called from the event callback, for tests */
	void (*on_event)(const char *svc, enum ic_event ev, int err);
} tu;

/* ---- fake host ops ------------------------------------------------------ */

static int tu_post(void *ctx, uint32_t vp, uint32_t sint, uint32_t type, const void *p, size_t len)
{
	TU_ASSERT(type == VMBUS_HV_MESSAGE_TYPE && len >= 8 && len <= 240 && vp < TU_NR_VPS);
	memcpy(tu.msgs[tu.nr_msgs % 64], p, len);
	tu.msg_len[tu.nr_msgs % 64] = len;
	tu.nr_msgs++;
	return 0;
}

static int tu_signal(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid)
{
	TU_ASSERT(vp < TU_NR_VPS && relid > 0 && relid <= VMBUS_MAX_RELID);
	return 0;
}

static int tu_register(void *ctx, uint32_t conn, bool on)
{
	return 0;
}

static const struct vmbus_host_ops tu_host_ops = {
	.post_message = tu_post,
	.signal_guest = tu_signal,
	.register_guest_signal = tu_register,
};

/* ---- fake clock --------------------------------------------------------- */

static uint64_t tu_monotonic_ms(void *ctx)
{
	return tu.now_ms;
}

static int tu_utc_now(void *ctx, uint64_t *filetime, uint64_t *reftime)
{
	tu.utc_calls++;
	if (tu.utc_err)
		return tu.utc_err;
	*filetime = tu.filetime;
	if (reftime)
		*reftime = tu.reftime;
	return 0;
}

static inline void tu_set_clock(bool has_reftime)
{
	struct ic_clock clk = {
		.monotonic_ms = tu_monotonic_ms,
		.utc_now = tu_utc_now,
		.has_reftime = has_reftime,
	};

	ic_host_set_clock(tu.ic, &clk);
}

/* Advance the fake clocks by `ms` and run the host's tick. */
static inline void tu_tick(uint64_t ms)
{
	tu.now_ms += ms;
	tu.filetime += ms * 10000;
	tu.reftime += ms * 10000;
	ic_host_tick(tu.ic);
}

static void tu_event_cb(void *ctx, const char *svc, enum ic_event ev, int err)
{
	if (tu.nr_events < 256)
		tu.events[tu.nr_events] = (struct tu_event){ svc, ev, err };
	tu.nr_events++;
	if (tu.on_event)
		tu.on_event(svc, ev, err);
}

static inline unsigned tu_count_events(const char *svc, enum ic_event ev)
{
	unsigned n = 0;

	for (unsigned i = 0; i < tu.nr_events && i < 256; i++)
		if (!strcmp(tu.events[i].svc, svc) && tu.events[i].ev == ev)
			n++;
	return n;
}

/* ---- setup ---------------------------------------------------------------- */

/* Guest memory is allocated once per program (the fuzzer runs setup for
 * every input); only the ring pages are ever used, and tu_open() zeroes
 * those. */
static uint8_t *tu_mem_cache;

static inline void tu_setup(struct loop *loop)
{
	struct vmbus_server_config cfg = { .nr_vps = TU_NR_VPS, .ops = &tu_host_ops };

	if (!tu_mem_cache) {
		tu_mem_cache = aligned_alloc(4096, TU_MEM_PAGES * 4096u);
		TU_ASSERT(tu_mem_cache);
		memset(tu_mem_cache, 0, TU_MEM_PAGES * 4096u);
	}
	memset(&tu, 0, sizeof(tu));
	tu.mem = tu_mem_cache;
	guest_mem_layout(&tu.gm, tu.mem, TU_MEM_PAGES * 4096u);
	cfg.gm = &tu.gm;
	tu.srv = vmbus_server_new(&cfg);
	TU_ASSERT(tu.srv);
	tu.ic = ic_host_new(tu.srv, loop);
	TU_ASSERT(tu.ic);
	tu.now_ms = 1000000;
	tu.filetime = ic_filetime_from_unix(1704067200, 0); /* 2024-01-01 */
	tu.reftime = 5000000;
	tu.next_gpadl = 0x100;
	tu_set_clock(false);
	ic_host_set_event_cb(tu.ic, tu_event_cb, NULL);
}

static inline void tu_destroy_rings(void)
{
	for (unsigned r = 0; r <= TU_MAX_RELID; r++) {
		if (tu.chans[r].open) {
			ring_destroy(&tu.chans[r].tx);
			ring_destroy(&tu.chans[r].rx);
			tu.chans[r].open = false;
		}
	}
}

/* server_first: free the VMBus server before the IC host (either order is
 * allowed). */
static inline void tu_teardown(bool server_first)
{
	tu_destroy_rings();
	if (server_first) {
		vmbus_server_free(tu.srv);
		ic_host_free(tu.ic);
	} else {
		ic_host_free(tu.ic);
		vmbus_server_free(tu.srv);
	}
	tu.mem = NULL;
}

/* ---- guest: VMBus ---------------------------------------------------------- */

static inline void tu_post_msg(const void *m, size_t len)
{
	TU_ASSERT(vmbus_server_handle_message(tu.srv, VMBUS_MESSAGE_CONNECTION_ID, m, len) == 0);
}

/* The last message the server posted, which must be of `type`. */
static inline const void *tu_last_msg(uint32_t type)
{
	struct vmbus_msg_hdr h;

	TU_ASSERT(tu.nr_msgs > 0);
	memcpy(&h, tu.msgs[(tu.nr_msgs - 1) % 64], sizeof(h));
	TU_ASSERT(h.msgtype == type);
	return tu.msgs[(tu.nr_msgs - 1) % 64];
}

/* INITIATE_CONTACT (5.3) and REQUESTOFFERS; records the offers. */
static inline void tu_connect(void)
{
	struct vmbus_msg_initiate_contact ic;
	struct vmbus_msg_version_response vr;
	struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };
	unsigned first;

	memset(&ic, 0, sizeof(ic));
	ic.hdr.msgtype = VMBUS_MSG_INITIATE_CONTACT;
	ic.version_requested = VMBUS_VERSION_WIN10_V5_3;
	ic.msg_sint = VMBUS_MESSAGE_SINT;
	TU_ASSERT(vmbus_server_handle_message(tu.srv, VMBUS_MESSAGE_CONNECTION_ID_4, &ic,
					      sizeof(ic)) == 0);
	memcpy(&vr, tu_last_msg(VMBUS_MSG_VERSION_RESPONSE), sizeof(vr));
	TU_ASSERT(vr.version_supported);
	first = tu.nr_msgs;
	tu_post_msg(&ro, sizeof(ro));
	tu.nr_offers = 0;
	TU_ASSERT(tu.nr_msgs - first <= 64);
	for (unsigned i = first; i < tu.nr_msgs; i++) {
		struct vmbus_msg_offer_channel o;

		if (tu.msg_len[i % 64] != sizeof(o))
			continue;
		memcpy(&o, tu.msgs[i % 64], sizeof(o));
		if (o.hdr.msgtype != VMBUS_MSG_OFFERCHANNEL || tu.nr_offers >= TU_MAX_RELID)
			continue;
		tu.offers[tu.nr_offers].type = o.if_type;
		tu.offers[tu.nr_offers].inst = o.if_instance;
		tu.offers[tu.nr_offers].relid = o.child_relid;
		tu.offers[tu.nr_offers].conn_id = o.connection_id;
		tu.offers[tu.nr_offers].chn_flags = o.chn_flags;
		memcpy(&tu.offers[tu.nr_offers].pipe_mode, o.user_def, 4);
		tu.nr_offers++;
	}
	tu_last_msg(VMBUS_MSG_ALLOFFERS_DELIVERED);
}

static inline const struct tu_offer *tu_find_offer(const guid_t *cls)
{
	for (unsigned i = 0; i < tu.nr_offers; i++)
		if (guid_equal(&tu.offers[i].type, cls))
			return &tu.offers[i];
	return NULL;
}

/* Open the channel of class `cls` like Linux hv_utils (GPADL of 8 pages,
 * 4 each way); returns its relid. The host's negotiation request is then
 * waiting in the guest's receive ring. */
static inline uint32_t tu_open(guid_t cls)
{
	const struct tu_offer *o = tu_find_offer(&cls);
	uint8_t buf[240];
	struct vmbus_msg_gpadl_header h;
	struct vmbus_gpa_range r = { .byte_count = TU_RING_PAGES * 4096, .byte_offset = 0 };
	struct vmbus_msg_gpadl_created gc;
	struct vmbus_msg_open_channel m;
	struct vmbus_msg_open_result res;
	uint64_t pfns[TU_RING_PAGES];
	uint32_t relid, gpadl = tu.next_gpadl++;
	struct tu_chan *c;

	TU_ASSERT(o);
	relid = o->relid;
	TU_ASSERT(relid <= TU_MAX_RELID);
	c = &tu.chans[relid];
	if (c->open) {
		ring_destroy(&c->tx);
		ring_destroy(&c->rx);
		c->open = false;
	}
	for (unsigned i = 0; i < TU_RING_PAGES; i++)
		pfns[i] = 64 + relid * 16 + i;
	/* A fresh ring: zero its control pages. */
	memset(tu.mem + pfns[0] * 4096, 0, TU_RING_PAGES * 4096);
	memset(&h, 0, sizeof(h));
	h.hdr.msgtype = VMBUS_MSG_GPADL_HEADER;
	h.child_relid = relid;
	h.gpadl = gpadl;
	h.range_buflen = (uint16_t)(sizeof(r) + sizeof(pfns));
	h.rangecount = 1;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &r, sizeof(r));
	memcpy(buf + sizeof(h) + sizeof(r), pfns, sizeof(pfns));
	tu_post_msg(buf, sizeof(h) + sizeof(r) + sizeof(pfns));
	memcpy(&gc, tu_last_msg(VMBUS_MSG_GPADL_CREATED), sizeof(gc));
	TU_ASSERT(gc.creation_status == 0);
	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_OPENCHANNEL;
	m.child_relid = relid;
	m.openid = relid;
	m.ringbuffer_gpadl = gpadl;
	m.target_vp = 0;
	m.downstream_page_offset = TU_RING_DOWN;
	tu_post_msg(&m, sizeof(m));
	memcpy(&res, tu_last_msg(VMBUS_MSG_OPENCHANNEL_RESULT), sizeof(res));
	TU_ASSERT(res.child_relid == relid);
	if (res.status != 0)
		return 0;
	TU_ASSERT(ring_init(&c->tx, &tu.gm, pfns, TU_RING_DOWN, RING_WRITER) == 0);
	TU_ASSERT(ring_init(&c->rx, &tu.gm, pfns + TU_RING_DOWN, TU_RING_PAGES - TU_RING_DOWN,
			    RING_READER) == 0);
	c->open = true;
	c->conn_id = o->conn_id;
	return relid;
}

/* The guest closes the channel (and tears its GPADL down implicitly: the
 * harness reuses the pages). */
static inline void tu_close(uint32_t relid)
{
	struct vmbus_msg_relid m = { .hdr.msgtype = VMBUS_MSG_CLOSECHANNEL, .child_relid = relid };

	tu_post_msg(&m, sizeof(m));
	if (tu.chans[relid].open) {
		ring_destroy(&tu.chans[relid].tx);
		ring_destroy(&tu.chans[relid].rx);
		tu.chans[relid].open = false;
	}
}

/* The guest unloads VMBus (kexec, module unload). */
static inline void tu_unload(void)
{
	struct vmbus_msg_hdr u = { .msgtype = VMBUS_MSG_UNLOAD };

	tu_post_msg(&u, sizeof(u));
	tu_destroy_rings();
}

/* ---- guest: ring traffic ------------------------------------------------------ */

/* Read the next packet the host sent on `relid`; false if there is none. */
static inline bool tu_recv(uint32_t relid, struct tu_pkt *p)
{
	struct tu_chan *c = &tu.chans[relid];
	struct ring_pkt pkt;
	int ret;

	TU_ASSERT(c->open);
	ret = ring_peek(&c->rx, &pkt);
	if (ret) /* -EAGAIN: empty; -EPROTO: a test corrupted the ring */
		return false;
	TU_ASSERT(pkt.data_len <= sizeof(p->data));
	p->trans_id = pkt.desc.trans_id;
	p->type = pkt.desc.type;
	p->flags = pkt.desc.flags;
	p->len = pkt.data_len;
	TU_ASSERT(ring_pkt_read(&c->rx, &pkt, pkt.data_off, p->data, pkt.data_len) == 0);
	ring_pop(&c->rx, &pkt);
	ring_commit(&c->rx);
	return true;
}

/* Send a packet to the host and signal the channel. Returns the ring
 * error (0, -EAGAIN). */
static inline int tu_send_raw(uint32_t relid, uint16_t type, uint16_t flags, uint64_t trans_id,
			      const void *data, uint32_t len)
{
	struct tu_chan *c = &tu.chans[relid];
	bool sig;
	int ret;

	TU_ASSERT(c->open);
	ret = ring_send(&c->tx, type, flags, trans_id, data, len, &sig);
	if (ret == 0)
		vmbus_server_signal(tu.srv, c->conn_id);
	return ret;
}

static inline int tu_send(uint32_t relid, uint64_t trans_id, const void *data, uint32_t len)
{
	return tu_send_raw(relid, VMBUS_PKT_DATA_INBAND, 0, trans_id, data, len);
}

/* Headers of a host packet. */
static inline struct ic_hdr tu_hdr(const struct tu_pkt *p)
{
	struct ic_hdr h;

	TU_ASSERT(p->len >= sizeof(h));
	memcpy(&h, p->data, sizeof(h));
	return h;
}

/* ---- guest: Linux hv_utils behaviour -------------------------------------------- */

#define TU_V(maj, min) ((uint32_t)(maj) << 16 | (uint32_t)(min))

/* One guest IC driver: the versions it accepts (its preference order) and
 * what it has seen. */
struct tu_guest {
	const uint32_t *fw;
	unsigned nfw;
	const uint32_t *sv;
	unsigned nsv;
	uint16_t msgtype;   /* the service's message type */
	bool hibernation;   /* shutdown: hibernation is possible */
	bool fail_all;      /* answer every service message with E_FAIL */
	/* results */
	bool negotiated;
	uint32_t fw_ver, sv_ver;
	unsigned nr_msgs;   /* service messages answered */
	struct tu_pkt last; /* the last host packet, as the host sent it */
};

/* Linux 5.10 .. 6.12 hv_utils version lists (newest first). */
static const uint32_t tu_linux_fw[] = { TU_V(3, 0), TU_V(1, 0) };
static const uint32_t tu_linux_hb[] = { TU_V(3, 0), TU_V(1, 0) };
static const uint32_t tu_linux_sd[] = { TU_V(3, 2), TU_V(3, 1), TU_V(3, 0), TU_V(1, 0) };
static const uint32_t tu_linux_ts[] = { TU_V(4, 0), TU_V(3, 0), TU_V(1, 0) };

#define TU_LIST(a) (a), (unsigned)(sizeof(a) / sizeof((a)[0]))

static inline struct tu_guest tu_linux_guest(uint16_t msgtype)
{
	struct tu_guest g = { .msgtype = msgtype };

	g.fw = tu_linux_fw;
	g.nfw = 2;
	switch (msgtype) {
	case IC_MSGTYPE_HEARTBEAT:
		g.sv = tu_linux_hb;
		g.nsv = 2;
		break;
	case IC_MSGTYPE_SHUTDOWN:
		g.sv = tu_linux_sd;
		g.nsv = 4;
		break;
	default:
		g.sv = tu_linux_ts;
		g.nsv = 3;
		break;
	}
	return g;
}

static inline uint32_t tu_get_ver(const uint8_t *p)
{
	struct ic_version v;

	memcpy(&v, p, sizeof(v));
	return TU_V(v.major, v.minor);
}

static inline void tu_put_ver(uint8_t *p, uint32_t v)
{
	struct ic_version x = { (uint16_t)(v >> 16), (uint16_t)v };

	memcpy(p, &x, sizeof(x));
}

/* Answer a negotiation in place the way the guest kernel does: its own
 * preference order, the first exact match in the host's lists. */
static inline void tu_guest_negotiate(struct tu_guest *g, uint8_t *buf, uint32_t len,
				      struct ic_msg_hdr *h)
{
	uint8_t *body = buf + IC_HDR_LEN;
	struct ic_negotiate n;
	uint32_t fw = 0, sv = 0;
	bool found = false;

	if (len < IC_HDR_LEN + 4)
		return;
	h->icmsgsize = 16;
	memcpy(&n, body, 4);
	if (n.icframe_vercnt > 100 || n.icmsg_vercnt > 100 ||
	    IC_HDR_LEN + 8 + 4u * (n.icframe_vercnt + n.icmsg_vercnt) > len)
		goto out;
	for (unsigned i = 0; i < g->nfw && !found; i++)
		for (unsigned j = 0; j < n.icframe_vercnt && !found; j++)
			if (tu_get_ver(body + 8 + 4 * j) == g->fw[i]) {
				fw = g->fw[i];
				found = true;
			}
	if (!found)
		goto out;
	found = false;
	for (unsigned i = 0; i < g->nsv && !found; i++)
		for (unsigned j = n.icframe_vercnt; j < n.icframe_vercnt + n.icmsg_vercnt && !found;
		     j++)
			if (tu_get_ver(body + 8 + 4 * j) == g->sv[i]) {
				sv = g->sv[i];
				found = true;
			}
out:
	n.icframe_vercnt = n.icmsg_vercnt = found ? 1 : 0;
	memcpy(body, &n, 4);
	tu_put_ver(body + 8, fw);
	tu_put_ver(body + 12, sv);
	if (found) {
		g->negotiated = true;
		g->fw_ver = fw;
		g->sv_ver = sv;
	}
}

/* Process the next host packet on `relid` like Linux and answer it (in
 * place, same length and transaction id). Returns false when the ring was
 * empty, the packet was dropped or the answer did not fit. */
static inline bool tu_guest_step(uint32_t relid, struct tu_guest *g)
{
	static uint8_t buf[sizeof(g->last.data)];
	struct tu_pkt *p = &g->last;
	struct ic_msg_hdr h;

	if (!tu_recv(relid, p))
		return false;
	if (p->type != VMBUS_PKT_DATA_INBAND || p->len < IC_HDR_LEN)
		return false;
	/* Answer in a copy: g->last keeps the request as the host sent it. */
	memcpy(buf, p->data, p->len);
	memcpy(&h, buf + 8, sizeof(h));
	if (h.icmsgtype == IC_MSGTYPE_NEGOTIATE) {
		tu_guest_negotiate(g, buf, p->len, &h);
	} else if (h.icmsgtype == g->msgtype) {
		g->nr_msgs++;
		if (g->fail_all) {
			h.status = IC_E_FAIL;
		} else if (g->msgtype == IC_MSGTYPE_HEARTBEAT) {
			uint64_t seq;

			if (p->len < IC_HDR_LEN + 8)
				return false;
			memcpy(&seq, buf + IC_HDR_LEN, 8);
			seq++;
			memcpy(buf + IC_HDR_LEN, &seq, 8);
		} else if (g->msgtype == IC_MSGTYPE_SHUTDOWN) {
			struct ic_shutdown sd;

			if (p->len < IC_HDR_LEN + sizeof(sd))
				return false;
			memcpy(&sd, buf + IC_HDR_LEN, sizeof(sd));
			if (sd.flags <= 3 || (sd.flags <= 5 && g->hibernation))
				h.status = IC_S_OK;
			else
				h.status = IC_E_FAIL;
		} else if (g->msgtype == IC_MSGTYPE_TIMESYNC) {
			uint32_t need = g->sv_ver >= TU_V(4, 0) ? sizeof(struct ic_timesync_ref)
								 : sizeof(struct ic_timesync);

			if (p->len < IC_HDR_LEN + need)
				return false;
		}
	} else {
		h.status = IC_E_FAIL;
	}
	h.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	memcpy(buf + 8, &h, sizeof(h));
	return tu_send(relid, p->trans_id, buf, p->len) == 0;
}

/* Answer everything pending; returns how many packets were answered. */
static inline unsigned tu_guest_run(uint32_t relid, struct tu_guest *g)
{
	unsigned n = 0;

	while (tu_guest_step(relid, g))
		n++;
	return n;
}

/* Open the service's channel and let the guest negotiate. */
static inline uint32_t tu_open_negotiated(guid_t cls, struct tu_guest *g)
{
	uint32_t relid = tu_open(cls);

	TU_ASSERT(relid);
	TU_ASSERT(tu_guest_step(relid, g));
	return relid;
}

static inline const char *tu_status(const char *name)
{
	struct ic_status st[IC_MAX_SERVICES];
	size_t n = ic_host_status(tu.ic, st, IC_MAX_SERVICES);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(st[i].name, name))
			return st[i].status;
	return NULL;
}

#endif
