/* Test harness for the storage VSP: the real VMBus server over fake guest
 * memory, in-memory disks (test_scsi_memdisk.h), and a fake guest that
 * connects to VMBus, opens storvsc channels and speaks VSTOR the way Linux
 * hv_storvsc does (written from the protocol description, not from Linux).
 * Shared by the unit tests (define SU_ASSERT as a cmocka assert before
 * including) and the storvsp fuzzer (SU_ASSERT aborts).
 *
 * Everything is static: each program has one harness, `su`. */
#ifndef HVMM_TEST_STORVSP_UTIL_H
#define HVMM_TEST_STORVSP_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/guest_mem.h"
#include "scsi/scsi_defs.h"
#include "storvsp/storvsp.h"
#include "storvsp/storvsp_proto.h"
#include "util/log.h"
#include "vmbus/ring.h"
#include "vmbus/server.h"

#include "test_scsi_memdisk.h"

#ifndef SU_ASSERT
#define SU_ASSERT(x)             \
	do {                     \
		if (!(x))        \
			abort(); \
	} while (0)
#endif

#define SU_MEM_PAGES 8192u     /* 32 MiB of guest RAM */
#define SU_NR_VPS 4u
#define SU_MAX_RELID 128u
#define SU_MAX_OFFERS 128u
#define SU_RING_FIRST_PFN 64u  /* rings are carved from [64, 4096) */
#define SU_RING_LAST_PFN 4096u
#define SU_DATA_PFN 4096u      /* data buffers: the upper 16 MiB */
#define SU_DATA_PAGES 4096u
#define SU_MAX_DISKS 16u

struct su_offer {
	guid_t type, inst;
	uint32_t relid, conn_id;
	uint16_t subidx;
	bool rescinded;
};

struct su_chan {
	bool open;
	uint32_t conn_id;
	struct vmbus_ring tx; /* guest -> host, the guest writes */
	struct vmbus_ring rx; /* host -> guest, the guest reads */
};

/* A packet the host sent, as the guest read it. */
struct su_pkt {
	uint64_t trans_id;
	uint16_t type, flags;
	uint32_t len;
	uint8_t data[512];
};

static struct {
	struct guest_mem gm;
	uint8_t *mem;
	struct vmbus_server *srv;
	struct storvsp *sv;
	struct storvsp_config cfg;
	uint32_t last_msgtype;
	uint8_t last_msg[240];
	struct su_offer offers[SU_MAX_OFFERS];
	unsigned nr_offers;
	struct su_chan chans[SU_MAX_RELID + 1];
	unsigned next_gpadl;
	unsigned next_ring_pfn;
	unsigned ring_pages; /* per direction, including the control page */
	struct memdisk *md[SU_MAX_DISKS];
	unsigned nr_md;
	bool connected;
} su;

/* ---- fake host ops ---------------------------------------------------------- */

static int su_post(void *ctx, uint32_t vp, uint32_t sint, uint32_t type, const void *p, size_t len)
{
	struct vmbus_msg_hdr h;

	SU_ASSERT(type == VMBUS_HV_MESSAGE_TYPE && len >= 8 && len <= 240 && vp < SU_NR_VPS);
	memcpy(&h, p, sizeof(h));
	su.last_msgtype = h.msgtype;
	memcpy(su.last_msg, p, len);
	if (h.msgtype == VMBUS_MSG_OFFERCHANNEL && len == sizeof(struct vmbus_msg_offer_channel)) {
		struct vmbus_msg_offer_channel o;

		memcpy(&o, p, sizeof(o));
		SU_ASSERT(su.nr_offers < SU_MAX_OFFERS);
		su.offers[su.nr_offers++] = (struct su_offer){
			o.if_type, o.if_instance, o.child_relid, o.connection_id, o.sub_channel_index, false,
		};
	} else if (h.msgtype == VMBUS_MSG_RESCIND_CHANNELOFFER) {
		struct vmbus_msg_relid m;

		memcpy(&m, p, sizeof(m));
		for (unsigned i = 0; i < su.nr_offers; i++)
			if (su.offers[i].relid == m.child_relid)
				su.offers[i].rescinded = true;
	}
	return 0;
}

static int su_signal(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid)
{
	SU_ASSERT(vp < SU_NR_VPS && relid > 0 && relid <= VMBUS_MAX_RELID);
	return 0;
}

static int su_register(void *ctx, uint32_t conn, bool on)
{
	return 0;
}

static const struct vmbus_host_ops su_host_ops = {
	.post_message = su_post,
	.signal_guest = su_signal,
	.register_guest_signal = su_register,
};

/* ---- setup -------------------------------------------------------------------- */

static uint8_t *su_mem_cache;

static inline void su_config_default(struct storvsp_config *c)
{
	storvsp_default_config(c);
	c->nr_vcpus = SU_NR_VPS;
	c->inline_io = true;
	c->queue_depth = 64;
}

/* A fresh VMBus server and VSP; cfg NULL: su_config_default(). */
static inline void su_setup(const struct storvsp_config *cfg)
{
	struct vmbus_server_config sc = { .nr_vps = SU_NR_VPS, .ops = &su_host_ops };

	if (!su_mem_cache) {
		su_mem_cache = aligned_alloc(4096, (size_t)SU_MEM_PAGES * 4096u);
		SU_ASSERT(su_mem_cache);
	}
	memset(&su, 0, sizeof(su));
	su.mem = su_mem_cache;
	guest_mem_layout(&su.gm, su.mem, (uint64_t)SU_MEM_PAGES * 4096u);
	sc.gm = &su.gm;
	su.srv = vmbus_server_new(&sc);
	SU_ASSERT(su.srv);
	if (cfg)
		su.cfg = *cfg;
	else
		su_config_default(&su.cfg);
	su.cfg.gm = &su.gm;
	su.sv = storvsp_new(su.srv, NULL, &su.cfg);
	SU_ASSERT(su.sv);
	su.next_gpadl = 0x100;
	su.next_ring_pfn = SU_RING_FIRST_PFN;
	su.ring_pages = 8;
}

static inline void su_destroy_rings(void)
{
	for (unsigned r = 0; r <= SU_MAX_RELID; r++) {
		if (su.chans[r].open) {
			ring_destroy(&su.chans[r].tx);
			ring_destroy(&su.chans[r].rx);
			su.chans[r].open = false;
		}
	}
}

/* server_first: free the VMBus server before the VSP (either order works). */
static inline void su_teardown(bool server_first)
{
	su_destroy_rings();
	if (server_first) {
		vmbus_server_free(su.srv);
		storvsp_free(su.sv);
	} else {
		storvsp_free(su.sv);
		vmbus_server_free(su.srv);
	}
	for (unsigned i = 0; i < su.nr_md; i++)
		md_free(su.md[i]);
	su.nr_md = 0;
	su.sv = NULL;
	su.srv = NULL;
}

/* An in-memory disk attached as `lun` of `ctrl` (the controller is created
 * if needed). */
static inline struct memdisk *su_add_disk(unsigned ctrl, unsigned lun, uint64_t size,
					  uint32_t lsec, bool ro)
{
	struct storvsp_lun_opts o = { .read_only = ro, .label = "mem" };
	struct memdisk *m = md_new(size, lsec, 4096);
	int ret;

	SU_ASSERT(su.nr_md < SU_MAX_DISKS);
	su.md[su.nr_md++] = m;
	ret = storvsp_add_controller(su.sv, ctrl);
	SU_ASSERT(ret == 0 || ret == -EEXIST);
	SU_ASSERT(storvsp_add_lun(su.sv, ctrl, lun, md_disk(m), &o) == 0);
	return m;
}

/* ---- guest: VMBus ---------------------------------------------------------------- */

static inline void su_post_msg(const void *m, size_t len)
{
	SU_ASSERT(vmbus_server_handle_message(su.srv, VMBUS_MESSAGE_CONNECTION_ID, m, len) == 0);
}

/* INITIATE_CONTACT (5.3) and REQUESTOFFERS. */
static inline void su_connect(void)
{
	struct vmbus_msg_initiate_contact ic;
	struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };

	memset(&ic, 0, sizeof(ic));
	ic.hdr.msgtype = VMBUS_MSG_INITIATE_CONTACT;
	ic.version_requested = VMBUS_VERSION_WIN10_V5_3;
	ic.msg_sint = VMBUS_MESSAGE_SINT;
	SU_ASSERT(vmbus_server_handle_message(su.srv, VMBUS_MESSAGE_CONNECTION_ID_4, &ic,
					      sizeof(ic)) == 0);
	SU_ASSERT(su.last_msgtype == VMBUS_MSG_VERSION_RESPONSE);
	su_post_msg(&ro, sizeof(ro));
	SU_ASSERT(su.last_msgtype == VMBUS_MSG_ALLOFFERS_DELIVERED);
	su.connected = true;
}

static inline guid_t su_instance(unsigned ctrl)
{
	guid_t g = GUID_INIT(0x4d1e3c2a, 0x9b8f, 0x4a6e, 0x8c, 0x5d, 0x7f, 0x2b, 0x1a, 0x0e, 0x9d,
			     0x00);

	g.b[15] = (uint8_t)ctrl;
	return g;
}

/* The relid of controller `ctrl`'s channel `subidx` (latest offer), or 0. */
static inline uint32_t su_relid(unsigned ctrl, unsigned subidx)
{
	guid_t cls = VMBUS_CLASS_SCSI, inst = su_instance(ctrl);

	for (unsigned i = su.nr_offers; i-- > 0;)
		if (guid_equal(&su.offers[i].type, &cls) && guid_equal(&su.offers[i].inst, &inst) &&
		    su.offers[i].subidx == subidx && !su.offers[i].rescinded)
			return su.offers[i].relid;
	return 0;
}

static inline uint32_t su_conn_id(uint32_t relid)
{
	for (unsigned i = su.nr_offers; i-- > 0;)
		if (su.offers[i].relid == relid)
			return su.offers[i].conn_id;
	return 0;
}

/* Open channel `relid` with `su.ring_pages` pages each way, like Linux
 * vmbus_open(). Returns false if the host refused. */
static inline bool su_open(uint32_t relid)
{
	unsigned n = 2 * su.ring_pages;
	uint8_t buf[240];
	struct vmbus_msg_gpadl_header h;
	struct vmbus_gpa_range r = { .byte_count = n * 4096, .byte_offset = 0 };
	struct vmbus_msg_gpadl_created gc;
	struct vmbus_msg_open_channel m;
	struct vmbus_msg_open_result res;
	uint64_t pfns[26];
	uint32_t gpadl = su.next_gpadl++;
	struct su_chan *c;

	SU_ASSERT(relid && relid <= SU_MAX_RELID && n <= 26);
	c = &su.chans[relid];
	if (c->open) {
		ring_destroy(&c->tx);
		ring_destroy(&c->rx);
		c->open = false;
	}
	if (su.next_ring_pfn + n > SU_RING_LAST_PFN)
		su.next_ring_pfn = SU_RING_FIRST_PFN;
	for (unsigned i = 0; i < n; i++)
		pfns[i] = su.next_ring_pfn + i;
	su.next_ring_pfn += n;
	memset(su.mem + pfns[0] * 4096, 0, (size_t)n * 4096);
	memset(&h, 0, sizeof(h));
	h.hdr.msgtype = VMBUS_MSG_GPADL_HEADER;
	h.child_relid = relid;
	h.gpadl = gpadl;
	h.range_buflen = (uint16_t)(sizeof(r) + n * 8);
	h.rangecount = 1;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &r, sizeof(r));
	memcpy(buf + sizeof(h) + sizeof(r), pfns, n * 8);
	su_post_msg(buf, sizeof(h) + sizeof(r) + n * 8);
	SU_ASSERT(su.last_msgtype == VMBUS_MSG_GPADL_CREATED);
	memcpy(&gc, su.last_msg, sizeof(gc));
	SU_ASSERT(gc.creation_status == 0);
	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_OPENCHANNEL;
	m.child_relid = relid;
	m.openid = relid;
	m.ringbuffer_gpadl = gpadl;
	m.target_vp = relid % SU_NR_VPS;
	m.downstream_page_offset = su.ring_pages;
	su_post_msg(&m, sizeof(m));
	SU_ASSERT(su.last_msgtype == VMBUS_MSG_OPENCHANNEL_RESULT);
	memcpy(&res, su.last_msg, sizeof(res));
	SU_ASSERT(res.child_relid == relid);
	if (res.status != 0)
		return false;
	SU_ASSERT(ring_init(&c->tx, &su.gm, pfns, su.ring_pages, RING_WRITER) == 0);
	SU_ASSERT(ring_init(&c->rx, &su.gm, pfns + su.ring_pages, su.ring_pages, RING_READER) == 0);
	c->open = true;
	c->conn_id = su_conn_id(relid);
	return true;
}

static inline void su_close(uint32_t relid)
{
	struct vmbus_msg_relid m = { .hdr.msgtype = VMBUS_MSG_CLOSECHANNEL, .child_relid = relid };

	su_post_msg(&m, sizeof(m));
	if (su.chans[relid].open) {
		ring_destroy(&su.chans[relid].tx);
		ring_destroy(&su.chans[relid].rx);
		su.chans[relid].open = false;
	}
}

static inline void su_unload(void)
{
	struct vmbus_msg_hdr u = { .msgtype = VMBUS_MSG_UNLOAD };

	su_post_msg(&u, sizeof(u));
	su_destroy_rings();
	su.connected = false;
}

/* ---- guest: ring traffic ------------------------------------------------------------ */

/* Read the next host packet on `relid`; false if there is none. Signals the
 * host when it waits for room, like Linux. */
static inline bool su_recv(uint32_t relid, struct su_pkt *p)
{
	struct su_chan *c = &su.chans[relid];
	struct ring_pkt pkt;

	SU_ASSERT(c->open);
	if (ring_peek(&c->rx, &pkt))
		return false;
	SU_ASSERT(pkt.data_len <= sizeof(p->data));
	p->trans_id = pkt.desc.trans_id;
	p->type = pkt.desc.type;
	p->flags = pkt.desc.flags;
	p->len = pkt.data_len;
	SU_ASSERT(ring_pkt_read(&c->rx, &pkt, pkt.data_off, p->data, pkt.data_len) == 0);
	ring_pop(&c->rx, &pkt);
	if (ring_commit(&c->rx))
		vmbus_server_signal(su.srv, c->conn_id);
	return true;
}

static inline int su_send_inband(uint32_t relid, uint64_t trans_id, const void *data,
				 uint32_t len, bool want)
{
	struct su_chan *c = &su.chans[relid];
	bool sig;
	int ret;

	SU_ASSERT(c->open);
	ret = ring_send(&c->tx, VMBUS_PKT_DATA_INBAND, want ? VMBUS_PKT_FLAG_COMPLETION_REQUESTED : 0,
			trans_id, data, len, &sig);
	if (ret == 0)
		vmbus_server_signal(su.srv, c->conn_id);
	return ret;
}

/* A GPA-direct packet with one range (Linux vmbus_sendpacket_mpb_desc):
 * `count` bytes at `offset` into the first of `npfn` pages. */
static inline int su_send_gpa(uint32_t relid, uint64_t trans_id, const void *data, uint32_t len,
			      uint32_t offset, uint32_t count, const uint64_t *pfns, unsigned npfn)
{
	struct su_chan *c = &su.chans[relid];
	uint8_t hdr[32 + 8 * 600];
	struct vmbus_pkt_gpa_direct g;
	struct vmbus_gpa_range r = { count, offset };
	struct ring_iov iov = { data, len };
	bool sig;
	int ret;

	SU_ASSERT(c->open && npfn <= 600);
	memset(&g, 0, sizeof(g));
	g.d.type = VMBUS_PKT_DATA_USING_GPA_DIRECT;
	g.d.flags = VMBUS_PKT_FLAG_COMPLETION_REQUESTED;
	g.d.trans_id = trans_id;
	g.range_cnt = 1;
	memcpy(hdr, &g, sizeof(g));
	memcpy(hdr + sizeof(g), &r, sizeof(r));
	memcpy(hdr + sizeof(g) + sizeof(r), pfns, 8 * npfn);
	ret = ring_write(&c->tx, hdr, (uint32_t)(sizeof(g) + sizeof(r) + 8 * npfn), &iov, 1, &sig);
	if (ret == 0)
		vmbus_server_signal(su.srv, c->conn_id);
	return ret;
}

/* Bytes the guest wrote to the host that the host has not consumed. */
static inline uint32_t su_tx_pending(uint32_t relid)
{
	const struct vmbus_ring *r = &su.chans[relid].tx;
	uint32_t w = __atomic_load_n(&r->ctrl->write_index, __ATOMIC_ACQUIRE);
	uint32_t rd = __atomic_load_n(&r->ctrl->read_index, __ATOMIC_ACQUIRE);

	return (w + r->size - rd) % r->size;
}

/* Run the VSP's pending I/O (inline mode, or completions from workers). */
static inline unsigned su_poll(int timeout_ms)
{
	return storvsp_poll(su.sv, timeout_ms);
}

/* Wait for the next host packet on `relid`, polling the VSP. */
static inline bool su_wait(uint32_t relid, struct su_pkt *p)
{
	for (int i = 0; i < 2000; i++) {
		if (su_recv(relid, p))
			return true;
		su_poll(i < 10 ? 0 : 5);
	}
	return false;
}

static inline struct vstor_packet su_vstor(const struct su_pkt *p)
{
	struct vstor_packet v;

	memset(&v, 0, sizeof(v));
	memcpy(&v, p->data, p->len < sizeof(v) ? p->len : sizeof(v));
	return v;
}

/* ---- guest: Linux storvsc behaviour ------------------------------------------------------ */

/* One init operation (inband, VSTOR_RQST_INIT, `len` bytes); the reply. */
static inline struct vstor_packet su_init_op(uint32_t relid, struct vstor_packet *req,
					      uint32_t len)
{
	struct su_pkt p;

	req->flags = VSTOR_FLAG_REQUEST_COMPLETION;
	SU_ASSERT(su_send_inband(relid, VSTOR_RQST_INIT, req, len, true) == 0);
	SU_ASSERT(su_wait(relid, &p));
	SU_ASSERT(p.type == VMBUS_PKT_COMP && p.trans_id == VSTOR_RQST_INIT);
	return su_vstor(&p);
}

struct su_init {
	uint16_t version;    /* negotiated, 0 if none */
	struct vstor_channel_properties props;
	bool ok;
};

/* storvsc_channel_init(): BEGIN, versions in order, PROPERTIES, END.
 * old_linux: packets are 48 bytes until a WIN8+ version is accepted (Linux
 * before 5.16). */
static inline struct su_init su_storvsc_init(uint32_t relid, const uint16_t *vers, unsigned nv,
					     bool old_linux)
{
	struct su_init res = { 0 };
	struct vstor_packet p, r;
	uint32_t len = old_linux ? VSTOR_PACKET_SIZE_WIN7 : VSTOR_PACKET_SIZE;

	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_BEGIN_INITIALIZATION;
	r = su_init_op(relid, &p, len);
	if (r.operation != VSTOR_OP_COMPLETE_IO || r.status)
		return res;
	for (unsigned i = 0; i < nv; i++) {
		memset(&p, 0, sizeof(p));
		p.operation = VSTOR_OP_QUERY_PROTOCOL_VERSION;
		p.version.major_minor = vers[i];
		r = su_init_op(relid, &p, len);
		if (r.operation != VSTOR_OP_COMPLETE_IO)
			return res;
		if (r.status == 0) {
			res.version = vers[i];
			break;
		}
	}
	if (!res.version)
		return res;
	if (old_linux && res.version >= VSTOR_VERSION_WIN8)
		len = VSTOR_PACKET_SIZE;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_QUERY_PROPERTIES;
	r = su_init_op(relid, &p, len);
	if (r.operation != VSTOR_OP_COMPLETE_IO || r.status)
		return res;
	res.props = r.props;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_END_INITIALIZATION;
	r = su_init_op(relid, &p, len);
	res.ok = r.operation == VSTOR_OP_COMPLETE_IO && r.status == 0;
	return res;
}

static const uint16_t su_linux_versions[] = { VSTOR_VERSION_WIN10, VSTOR_VERSION_WIN8_1,
					      VSTOR_VERSION_WIN8 };
static const uint16_t su_old_linux_versions[] = { VSTOR_VERSION_WIN10, VSTOR_VERSION_WIN8_1,
						  VSTOR_VERSION_WIN8, VSTOR_VERSION_WIN7,
						  VSTOR_VERSION_WIN6 };

/* Connect, open controller `ctrl`'s primary channel and initialize it like
 * Linux 6.x. Returns the relid. */
static inline uint32_t su_bring_up(unsigned ctrl)
{
	uint32_t relid;
	struct su_init in;

	if (!su.connected)
		su_connect();
	relid = su_relid(ctrl, 0);
	SU_ASSERT(relid);
	SU_ASSERT(su_open(relid));
	in = su_storvsc_init(relid, su_linux_versions, 3, false);
	SU_ASSERT(in.ok);
	return relid;
}

/* A SCSI request as storvsc_do_io() builds it. */
static inline struct vstor_packet su_srb(uint8_t lun, const uint8_t *cdb, uint8_t cdb_len,
					  uint8_t data_in, uint32_t dtl)
{
	struct vstor_packet p;

	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_EXECUTE_SRB;
	p.flags = VSTOR_FLAG_REQUEST_COMPLETION;
	p.srb.length = sizeof(struct vmscsi_request);
	p.srb.lun = lun;
	p.srb.cdb_length = cdb_len;
	p.srb.sense_info_length = VMSCSI_SENSE_MAX;
	p.srb.data_in = data_in;
	p.srb.data_transfer_length = dtl;
	p.srb.queue_tag = 0xff;
	p.srb.queue_action = 0x20;
	p.srb.srb_flags = 0x8 | (data_in == VMSCSI_DATA_IN ? SRB_FLAGS_DATA_IN
				 : data_in == VMSCSI_DATA_OUT ? SRB_FLAGS_DATA_OUT : 0);
	p.srb.time_out_value = 60;
	memcpy(p.srb.cdb, cdb, cdb_len);
	return p;
}

/* Guest-physical data buffer page `i` (of SU_DATA_PAGES). */
static inline uint8_t *su_data(unsigned page)
{
	return su.mem + (size_t)(SU_DATA_PFN + page) * 4096;
}

/* Send a request with `len` bytes at data page `page` (contiguous pages;
 * len 0: inband) and wait for its completion. */
static inline struct vstor_packet su_scsi_pkt(uint32_t relid, uint64_t id,
					       const struct vstor_packet *req, unsigned page,
					       uint32_t len)
{
	struct su_pkt p;

	if (len) {
		uint64_t pfns[600];
		unsigned n = (len + 4095) / 4096;

		for (unsigned i = 0; i < n; i++)
			pfns[i] = SU_DATA_PFN + page + i;
		SU_ASSERT(su_send_gpa(relid, id, req, sizeof(*req), 0, len, pfns, n) == 0);
	} else {
		SU_ASSERT(su_send_inband(relid, id, req, sizeof(*req), true) == 0);
	}
	SU_ASSERT(su_wait(relid, &p));
	SU_ASSERT(p.type == VMBUS_PKT_COMP && p.trans_id == id);
	SU_ASSERT(p.len == VSTOR_PACKET_SIZE);
	return su_vstor(&p);
}

static inline struct vstor_packet su_scsi(uint32_t relid, uint8_t lun, const uint8_t *cdb,
					   uint8_t cdb_len, uint8_t data_in, unsigned page,
					   uint32_t len)
{
	struct vstor_packet req = su_srb(lun, cdb, cdb_len, data_in, len);

	return su_scsi_pkt(relid, 1000 + lun, &req, page, len);
}

#endif
