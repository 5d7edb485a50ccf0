/* VMBus server state machine, driven the way a Linux guest drives it, plus
 * malformed and hostile input. The host ops record what the server sends;
 * the guest's ring side is played with the ring code in the other role. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/guest_mem.h"
#include "util/log.h"
#include "vmbus/server.h"

#define MEM_SIZE (8u << 20)
#define NPFN (MEM_SIZE / 4096)
#define NR_VPS 2

static struct guest_mem gm;
static uint8_t *mem;
static struct vmbus_server *srv;

/* ---- fake host ---- */

struct posted {
	uint32_t vp, sint;
	size_t len;
	uint8_t data[240];
};
static struct posted posted[512];
static unsigned nr_posted, rd_posted;

struct sigrec {
	uint32_t vp, sint, relid;
};
static struct sigrec sigs[256];
static unsigned nr_sigs;

static uint32_t reg_conn[64];
static bool reg_on[64];
static unsigned nr_reg;
static int reg_fail;

static int fake_post(void *ctx, uint32_t vp, uint32_t sint, uint32_t type, const void *p,
		     size_t len)
{
	assert_int_equal(type, VMBUS_HV_MESSAGE_TYPE);
	assert_true(len <= 240 && len >= 8);
	if (nr_posted < 512) {
		posted[nr_posted].vp = vp;
		posted[nr_posted].sint = sint;
		posted[nr_posted].len = len;
		memcpy(posted[nr_posted].data, p, len);
	}
	nr_posted++;
	return 0;
}

static int fake_signal(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid)
{
	if (nr_sigs < 256)
		sigs[nr_sigs] = (struct sigrec){ vp, sint, relid };
	nr_sigs++;
	return 0;
}

static int fake_register(void *ctx, uint32_t conn, bool on)
{
	if (on && reg_fail)
		return reg_fail;
	if (nr_reg < 64) {
		reg_conn[nr_reg] = conn;
		reg_on[nr_reg] = on;
	}
	nr_reg++;
	return 0;
}

static const struct vmbus_host_ops host_ops = {
	.post_message = fake_post,
	.signal_guest = fake_signal,
	.register_guest_signal = fake_register,
};

/* Next message the server sent; checks its type and minimum size. */
static const void *next_msg(uint32_t type, size_t len)
{
	const struct posted *p;
	struct vmbus_msg_hdr h;

	assert_true(rd_posted < nr_posted);
	p = &posted[rd_posted++];
	memcpy(&h, p->data, sizeof(h));
	assert_int_equal(h.msgtype, type);
	assert_int_equal(p->len, len);
	return p->data;
}

static void no_msgs(void)
{
	assert_int_equal(rd_posted, nr_posted);
}

/* ---- fake device ---- */

struct devstate {
	unsigned opens, closes, notifies, resets, releases;
	int open_ret;
	bool send_on_open;
	struct vmbus_gpadl *held;
};

static void dev_echo(struct vmbus_channel *ch)
{
	struct ring_pkt pkt;
	uint8_t buf[4096];
	int ret;

	while ((ret = vmbus_chan_recv_peek(ch, &pkt)) == 0) {
		uint32_t n = pkt.data_len < sizeof(buf) ? pkt.data_len : sizeof(buf);

		assert_int_equal(vmbus_chan_recv_read(ch, &pkt, pkt.data_off, buf, n), 0);
		if (pkt.desc.flags & VMBUS_PKT_FLAG_COMPLETION_REQUESTED)
			vmbus_chan_send_completion(ch, pkt.desc.trans_id, buf, n);
		vmbus_chan_recv_pop(ch, &pkt);
	}
	vmbus_chan_recv_commit(ch);
}

static int dev_open(struct vmbus_channel *ch)
{
	struct devstate *d = vmbus_device_priv(vmbus_chan_device(ch));

	d->opens++;
	if (d->open_ret)
		return d->open_ret;
	if (d->send_on_open)
		assert_int_equal(vmbus_chan_send_inband(ch, 77, "hello", 5, false), 0);
	return 0;
}

static void dev_close(struct vmbus_channel *ch)
{
	struct devstate *d = vmbus_device_priv(vmbus_chan_device(ch));

	d->closes++;
	/* Sending after close is refused. */
	assert_int_equal(vmbus_chan_send_inband(ch, 1, "x", 1, false), -ENOTCONN);
	if (d->held) {
		vmbus_gpadl_put(d->held);
		d->held = NULL;
	}
}

static void dev_notify(struct vmbus_channel *ch)
{
	struct devstate *d = vmbus_device_priv(vmbus_chan_device(ch));

	d->notifies++;
	dev_echo(ch);
}

static void dev_reset(struct vmbus_device *dev)
{
	((struct devstate *)vmbus_device_priv(dev))->resets++;
}

static void dev_release(struct vmbus_device *dev)
{
	((struct devstate *)vmbus_device_priv(dev))->releases++;
}

static const struct vmbus_device_class hb_class = {
	.name = "heartbeat",
	.class_guid = VMBUS_CLASS_HEARTBEAT,
	.chn_flags = VMBUS_OFFER_ENUMERATE_DEVICE_INTERFACE | VMBUS_OFFER_NAMED_PIPE_MODE,
	.pipe_mode = VMBUS_PIPE_TYPE_MESSAGE,
	.open = dev_open,
	.close = dev_close,
	.notify = dev_notify,
	.reset = dev_reset,
	.release = dev_release,
};

static const struct vmbus_device_class scsi_class = {
	.name = "scsi",
	.class_guid = VMBUS_CLASS_SCSI,
	.open = dev_open,
	.close = dev_close,
	.notify = dev_notify,
	.reset = dev_reset,
	.release = dev_release,
};

static struct devstate ds[4];
static struct vmbus_device *devs[4];

static int setup(void **state)
{
	struct vmbus_server_config cfg = { .nr_vps = NR_VPS, .ops = &host_ops };
	static const guid_t inst0 = GUID_INIT(0x11111111, 0x2222, 0x3333, 4, 4, 5, 5, 5, 5, 5, 5);
	static const guid_t inst1 = GUID_INIT(0xaaaaaaaa, 0xbbbb, 0xcccc, 1, 2, 3, 4, 5, 6, 7, 8);

	mem = aligned_alloc(4096, MEM_SIZE);
	assert_non_null(mem);
	memset(mem, 0, MEM_SIZE);
	guest_mem_layout(&gm, mem, MEM_SIZE);
	cfg.gm = &gm;
	nr_posted = rd_posted = nr_sigs = nr_reg = 0;
	reg_fail = 0;
	memset(ds, 0, sizeof(ds));
	srv = vmbus_server_new(&cfg);
	assert_non_null(srv);
	devs[0] = vmbus_device_add(srv, &hb_class,
				   &(struct vmbus_device_params){ .instance = inst0, .priv = &ds[0] });
	devs[1] = vmbus_device_add(srv, &scsi_class,
				   &(struct vmbus_device_params){ .instance = inst1, .priv = &ds[1] });
	assert_non_null(devs[0]);
	assert_non_null(devs[1]);
	return 0;
}

static int teardown(void **state)
{
	vmbus_server_free(srv);
	free(mem);
	return 0;
}

/* ---- guest helpers ---- */

static void post(const void *m, size_t len)
{
	assert_int_equal(vmbus_server_handle_message(srv, VMBUS_MESSAGE_CONNECTION_ID, m, len), 0);
}

static void post_relid(uint32_t type, uint32_t relid)
{
	struct vmbus_msg_relid m = { .hdr.msgtype = type, .child_relid = relid };

	post(&m, sizeof(m));
}

/* INITIATE_CONTACT the way Linux sends it; returns the VERSION_RESPONSE. */
static struct vmbus_msg_version_response contact(uint32_t version, uint32_t vcpu)
{
	struct vmbus_msg_initiate_contact m;
	struct vmbus_msg_version_response r;
	uint32_t conn = version >= VMBUS_VERSION_WIN10_V5 ? 4 : 1;

	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_INITIATE_CONTACT;
	m.version_requested = version;
	m.target_vcpu = vcpu;
	if (version >= VMBUS_VERSION_WIN10_V5)
		m.msg_sint = 2;
	else
		m.interrupt_page = 0x5000;
	m.monitor_page1 = 0x6000;
	m.monitor_page2 = 0x7000;
	assert_int_equal(vmbus_server_handle_message(srv, conn, &m, sizeof(m)), 0);
	memcpy(&r, next_msg(VMBUS_MSG_VERSION_RESPONSE, sizeof(r)), sizeof(r));
	return r;
}

/* Walk a Linux version list newest first; returns the accepted one. */
static uint32_t negotiate(const uint32_t *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct vmbus_msg_version_response r = contact(list[i], 1);

		if (r.version_supported) {
			assert_int_equal(r.connection_state, 0);
			if (list[i] >= VMBUS_VERSION_WIN10_V5)
				assert_int_equal(r.msg_conn_id, VMBUS_MESSAGE_CONNECTION_ID);
			return list[i];
		}
	}
	return 0;
}

static void connect_and_offer(uint32_t version)
{
	struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };

	assert_int_equal(contact(version, 0).version_supported, 1);
	post(&ro, sizeof(ro));
	next_msg(VMBUS_MSG_OFFERCHANNEL, 196);
	next_msg(VMBUS_MSG_OFFERCHANNEL, 196);
	next_msg(VMBUS_MSG_ALLOFFERS_DELIVERED, 8);
	no_msgs();
}

/* Build GPADL_HEADER (+ BODYs) like Linux: one range, byte_offset 0. */
static void send_gpadl(uint32_t relid, uint32_t id, const uint64_t *pfns, uint32_t n)
{
	uint8_t buf[240];
	struct vmbus_msg_gpadl_header h = { .hdr.msgtype = VMBUS_MSG_GPADL_HEADER };
	struct vmbus_gpa_range r = { .byte_count = n * 4096, .byte_offset = 0 };
	uint32_t first = n < VMBUS_GPADL_HEADER_MAX_PFNS ? n : VMBUS_GPADL_HEADER_MAX_PFNS;
	uint32_t done = first;

	h.child_relid = relid;
	h.gpadl = id;
	h.range_buflen = (uint16_t)(8 + 8 * n);
	h.rangecount = 1;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, sizeof(r));
	memcpy(buf + 28, pfns, first * 8);
	post(buf, 28 + first * 8);
	while (done < n) {
		struct vmbus_msg_gpadl_body b = { .hdr.msgtype = VMBUS_MSG_GPADL_BODY, .gpadl = id };
		uint32_t k = n - done < VMBUS_GPADL_BODY_MAX_PFNS ? n - done : VMBUS_GPADL_BODY_MAX_PFNS;

		memcpy(buf, &b, sizeof(b));
		memcpy(buf + 16, pfns + done, k * 8);
		post(buf, 16 + k * 8);
		done += k;
	}
}

static uint32_t gpadl_created(uint32_t relid, uint32_t id)
{
	struct vmbus_msg_gpadl_created c;

	memcpy(&c, next_msg(VMBUS_MSG_GPADL_CREATED, sizeof(c)), sizeof(c));
	assert_int_equal(c.child_relid, relid);
	assert_int_equal(c.gpadl, id);
	return c.creation_status;
}

static void make_gpadl(uint32_t relid, uint32_t id, uint64_t first_pfn, uint32_t n)
{
	uint64_t pfns[512];

	for (uint32_t i = 0; i < n; i++)
		pfns[i] = first_pfn + i;
	send_gpadl(relid, id, pfns, n);
	assert_int_equal(gpadl_created(relid, id), 0);
}

static uint32_t open_chan(uint32_t relid, uint32_t gpadl, uint32_t down, uint32_t vp)
{
	struct vmbus_msg_open_channel m;
	struct vmbus_msg_open_result r;

	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_OPENCHANNEL;
	m.child_relid = relid;
	m.openid = relid;
	m.ringbuffer_gpadl = gpadl;
	m.target_vp = vp;
	m.downstream_page_offset = down;
	m.user_data[0] = 0x42;
	post(&m, sizeof(m));
	memcpy(&r, next_msg(VMBUS_MSG_OPENCHANNEL_RESULT, sizeof(r)), sizeof(r));
	assert_int_equal(r.child_relid, relid);
	assert_int_equal(r.openid, relid);
	return r.status;
}

static uint64_t pfn_list(uint64_t first, uint32_t n, uint64_t *out)
{
	for (uint32_t i = 0; i < n; i++)
		out[i] = first + i;
	return first;
}

/* The guest's ends of a channel whose ring GPADL is pages first.. */
struct guest_rings {
	struct vmbus_ring tx; /* guest -> host, the guest writes */
	struct vmbus_ring rx; /* host -> guest, the guest reads */
};

static void guest_rings_init(struct guest_rings *g, uint64_t first, uint32_t n, uint32_t down)
{
	uint64_t pfns[64];

	pfn_list(first, n, pfns);
	assert_int_equal(ring_init(&g->tx, &gm, pfns, down, RING_WRITER), 0);
	assert_int_equal(ring_init(&g->rx, &gm, pfns + down, n - down, RING_READER), 0);
}

static void guest_rings_destroy(struct guest_rings *g)
{
	ring_destroy(&g->tx);
	ring_destroy(&g->rx);
}

/* ---- tests: negotiation ---- */

static void test_negotiate_linux_5_10(void **state)
{
	/* Linux 5.10 vmbus_versions[]: 5.2 5.1 5.0 4.1 4.0 3.0 2.4 1.1 0.13 */
	static const uint32_t list[] = {
		VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1, VMBUS_VERSION_WIN10_V5,
		VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,      VMBUS_VERSION_WIN8_1,
		VMBUS_VERSION_WIN8,       VMBUS_VERSION_WIN7,       VMBUS_VERSION_WS2008,
	};

	assert_int_equal(negotiate(list, 9), VMBUS_VERSION_WIN10_V5_2);
	assert_int_equal(vmbus_server_version(srv), VMBUS_VERSION_WIN10_V5_2);
	assert_int_equal(vmbus_server_message_vp(srv), 1);
	assert_int_equal(posted[0].vp, 1);
	assert_int_equal(posted[0].sint, 2);
}

static void test_negotiate_linux_6_x(void **state)
{
	/* 6.x lists 5.3 first; newest kernels prepend 6.0, which we refuse. */
	static const uint32_t list[] = {
		VMBUS_VERSION_WIN10_V6_0, VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2,
		VMBUS_VERSION_WIN10_V5_1, VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_V4_1,
		VMBUS_VERSION_WIN10,
	};
	struct vmbus_msg_version_response r = contact(VMBUS_VERSION_WIN10_V6_0, 1);

	assert_int_equal(r.version_supported, 0);
	assert_int_equal(r.connection_state, 0);
	assert_int_equal(vmbus_server_version(srv), 0);
	assert_int_equal(negotiate(list + 1, 6), VMBUS_VERSION_WIN10_V5_3);
}

static void test_negotiate_capped(void **state)
{
	static const uint32_t list[] = {
		VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1,
		VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,
		VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,
	};
	struct vmbus_server_config cfg = { .gm = &gm, .nr_vps = NR_VPS, .ops = &host_ops,
					   .max_version = VMBUS_VERSION_WIN10 };

	vmbus_server_free(srv);
	srv = vmbus_server_new(&cfg);
	assert_int_equal(negotiate(list, 8), VMBUS_VERSION_WIN10);
	cfg.max_version = VMBUS_VERSION_WIN8;
	vmbus_server_free(srv);
	srv = vmbus_server_new(&cfg);
	assert_int_equal(negotiate(list, 8), VMBUS_VERSION_WIN8);
	/* Below 3.0 messages go to VP 0 whatever target_vcpu says. */
	assert_int_equal(vmbus_server_message_vp(srv), 0);
}

static void test_negotiate_garbage(void **state)
{
	static const uint32_t bad[] = { 0, 1, VMBUS_VERSION_WIN7, VMBUS_VERSION_WS2008,
					VMBUS_VERSION(5, 4), VMBUS_VERSION(7, 0), 0xffffffff };
	struct vmbus_msg_version_response r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = contact(bad[i], 0);
		assert_int_equal(r.version_supported, 0);
	}
	/* A VP that does not exist: refused, answered on VP 0. */
	r = contact(VMBUS_VERSION_WIN10_V5_3, NR_VPS);
	assert_int_equal(r.version_supported, 0);
	assert_int_equal(r.connection_state, VMBUS_CONNECTION_STATE_FAILED);
	assert_int_equal(posted[nr_posted - 1].vp, 0);
	/* An invalid msg_sint. */
	{
		struct vmbus_msg_initiate_contact m = { .hdr.msgtype = VMBUS_MSG_INITIATE_CONTACT,
							.version_requested = VMBUS_VERSION_WIN10_V5 };

		m.msg_sint = 16;
		assert_int_equal(vmbus_server_handle_message(srv, 4, &m, sizeof(m)), 0);
		memcpy(&r, next_msg(VMBUS_MSG_VERSION_RESPONSE, 16), sizeof(r));
		assert_int_equal(r.version_supported, 0);
		assert_int_equal(posted[nr_posted - 1].sint, 2);
		/* Another valid SINT is not served (only SINT2 is routed). */
		m.msg_sint = 3;
		assert_int_equal(vmbus_server_handle_message(srv, 4, &m, sizeof(m)), 0);
		memcpy(&r, next_msg(VMBUS_MSG_VERSION_RESPONSE, 16), sizeof(r));
		assert_int_equal(r.version_supported, 0);
		assert_int_equal(posted[nr_posted - 1].sint, 3);
	}
	/* Truncated INITIATE_CONTACT: dropped without an answer. */
	{
		struct vmbus_msg_initiate_contact m = { .hdr.msgtype = VMBUS_MSG_INITIATE_CONTACT,
							.version_requested = VMBUS_VERSION_WIN10 };

		post(&m, 39);
		no_msgs();
	}
	assert_int_equal(vmbus_server_version(srv), 0);
}

static void test_connection_ids(void **state)
{
	struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };

	assert_false(vmbus_server_is_message_connection(0));
	assert_true(vmbus_server_is_message_connection(1));
	assert_false(vmbus_server_is_message_connection(2));
	assert_true(vmbus_server_is_message_connection(4));
	assert_int_equal(vmbus_server_handle_message(srv, 5, &ro, sizeof(ro)), -ENOENT);
	/* Before INITIATE_CONTACT: dropped. */
	post(&ro, sizeof(ro));
	no_msgs();
	assert_int_equal(contact(VMBUS_VERSION_WIN10_V5_3, 0).version_supported, 1);
	/* Later messages must use the returned connection id (1), not 4. */
	assert_int_equal(vmbus_server_handle_message(srv, 4, &ro, sizeof(ro)), 0);
	no_msgs();
	post(&ro, sizeof(ro));
	next_msg(VMBUS_MSG_OFFERCHANNEL, 196);
}

static void test_malformed_messages(void **state)
{
	uint8_t buf[256];
	uint32_t types[] = { 0, VMBUS_MSG_OFFERCHANNEL, VMBUS_MSG_VERSION_RESPONSE,
			     VMBUS_MSG_OPEN_RESERVED_CHANNEL, 25, 0x80000001, 0xffffffff };

	assert_int_equal(contact(VMBUS_VERSION_WIN10_V5_3, 0).version_supported, 1);
	memset(buf, 0xa5, sizeof(buf));
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		memcpy(buf, &types[i], 4);
		post(buf, 64);
	}
	post(buf, 0);
	post(buf, 7);
	post(buf, 241);
	post(buf, 256);
	/* Every known type truncated by one byte (and at the header size). */
	for (uint32_t t = 0; t < VMBUS_MSG_COUNT; t++) {
		memset(buf, 0, sizeof(buf));
		memcpy(buf, &t, 4);
		post(buf, 8);
		if (t == VMBUS_MSG_INITIATE_CONTACT || t == VMBUS_MSG_UNLOAD ||
		    t == VMBUS_MSG_REQUESTOFFERS)
			continue;
		post(buf, 11);
	}
	/* Only REQUESTOFFERS (8 bytes is its full size) produced anything. */
	next_msg(VMBUS_MSG_OFFERCHANNEL, 196);
	next_msg(VMBUS_MSG_OFFERCHANNEL, 196);
	next_msg(VMBUS_MSG_ALLOFFERS_DELIVERED, 8);
	/* UNLOAD (8 bytes) was also complete: it unloaded. */
	next_msg(VMBUS_MSG_UNLOAD_RESPONSE, 8);
	no_msgs();
	assert_int_equal(vmbus_server_version(srv), 0);
}

/* ---- offers ---- */

static void test_offers(void **state)
{
	struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };
	struct vmbus_msg_offer_channel o;
	static const guid_t hb = VMBUS_CLASS_HEARTBEAT, scsi = VMBUS_CLASS_SCSI;
	static const guid_t inst0 = GUID_INIT(0x11111111, 0x2222, 0x3333, 4, 4, 5, 5, 5, 5, 5, 5);
	uint32_t mode;

	assert_int_equal(contact(VMBUS_VERSION_WIN10_V5_3, 1).version_supported, 1);
	post(&ro, sizeof(ro));
	memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
	assert_int_equal(posted[rd_posted - 1].vp, 1);
	assert_true(guid_equal(&o.if_type, &hb));
	assert_true(guid_equal(&o.if_instance, &inst0));
	assert_int_equal(o.child_relid, 1);
	assert_int_equal(o.connection_id, VMBUS_CHAN_CONN_ID_BASE + 1);
	assert_int_equal(o.interrupt_flags, VMBUS_OFFER_DEDICATED_INTERRUPT);
	assert_int_equal(o.monitor_flags, 0);
	assert_int_equal(o.sub_channel_index, 0);
	assert_int_equal(o.chn_flags, 0x11);
	memcpy(&mode, o.user_def, 4);
	assert_int_equal(mode, VMBUS_PIPE_TYPE_MESSAGE);
	/* Wire bytes of the class GUID are mixed-endian. */
	assert_int_equal(o.if_type.b[0], 0x39);
	assert_int_equal(o.if_type.b[3], 0x57);
	assert_int_equal(o.if_type.b[8], 0xab);
	memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
	assert_true(guid_equal(&o.if_type, &scsi));
	assert_int_equal(o.child_relid, 2);
	assert_int_equal(o.chn_flags, 0);
	next_msg(VMBUS_MSG_ALLOFFERS_DELIVERED, 8);
	/* A second REQUESTOFFERS is ignored. */
	post(&ro, sizeof(ro));
	no_msgs();
	/* Hot-add after the offers: offered at once. */
	devs[2] = vmbus_device_add(srv, &scsi_class,
				   &(struct vmbus_device_params){ .priv = &ds[2] });
	memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
	assert_int_equal(o.child_relid, 3);
	no_msgs();
}

static void test_subchannels(void **state)
{
	struct vmbus_msg_offer_channel o;
	static const guid_t inst1 = GUID_INIT(0xaaaaaaaa, 0xbbbb, 0xcccc, 1, 2, 3, 4, 5, 6, 7, 8);

	/* Before the connection: created, not offered. */
	assert_int_equal(vmbus_device_add_subchannels(devs[1], 1), 0);
	no_msgs();
	{
		struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };

		assert_int_equal(contact(VMBUS_VERSION_WIN10_V5_3, 0).version_supported, 1);
		post(&ro, sizeof(ro));
		next_msg(VMBUS_MSG_OFFERCHANNEL, 196);
		memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
		assert_int_equal(o.sub_channel_index, 0);
		memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
		assert_int_equal(o.sub_channel_index, 1);
		assert_int_equal(o.child_relid, 3);
		next_msg(VMBUS_MSG_ALLOFFERS_DELIVERED, 8);
	}
	assert_int_equal(vmbus_device_add_subchannels(devs[1], 2), 0);
	for (int i = 0; i < 2; i++) {
		memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
		assert_int_equal(o.sub_channel_index, 2 + i);
		assert_int_equal(o.child_relid, 4 + i);
		assert_int_equal(o.connection_id, VMBUS_CHAN_CONN_ID_BASE + 4 + i);
		assert_true(guid_equal(&o.if_instance, &inst1));
	}
	assert_int_equal(vmbus_device_nr_channels(devs[1]), 4);
	assert_int_equal(vmbus_chan_subindex(vmbus_device_channel(devs[1], 3)), 3);
	assert_null(vmbus_device_channel(devs[1], 4));
	assert_int_equal(vmbus_device_add_subchannels(devs[1], VMBUS_MAX_SUBCHANNELS), -EINVAL);
	assert_int_equal(vmbus_device_add_subchannels(devs[1], 0), -EINVAL);
	no_msgs();
}

/* ---- GPADLs ---- */

static void test_gpadl_create_teardown(void **state)
{
	struct vmbus_msg_gpadl_teardown td = { .hdr.msgtype = VMBUS_MSG_GPADL_TEARDOWN };
	struct vmbus_msg_gpadl_torndown t;

	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	make_gpadl(1, 0xe1e10, 100, 8);     /* header only */
	make_gpadl(1, 0xe1e11, 200, 26);    /* exactly fills the header */
	make_gpadl(2, 0xe1e12, 300, 27);    /* one body */
	make_gpadl(2, 0xe1e13, 400, 100);   /* header + 3 bodies (26+28+28+18) */
	no_msgs();
	td.child_relid = 2;
	td.gpadl = 0xe1e13;
	post(&td, sizeof(td));
	memcpy(&t, next_msg(VMBUS_MSG_GPADL_TORNDOWN, sizeof(t)), sizeof(t));
	assert_int_equal(t.gpadl, 0xe1e13);
	/* Gone: a second teardown is ignored, the handle may be reused. */
	post(&td, sizeof(td));
	no_msgs();
	make_gpadl(2, 0xe1e13, 400, 3);
	/* Teardown naming another relid is refused. */
	td.child_relid = 1;
	post(&td, sizeof(td));
	no_msgs();
}

static void test_gpadl_malformed(void **state)
{
	uint8_t buf[240];
	struct vmbus_msg_gpadl_header h = { .hdr.msgtype = VMBUS_MSG_GPADL_HEADER,
					    .child_relid = 1 };
	struct vmbus_gpa_range r = { .byte_count = 4096, .byte_offset = 0 };
	struct vmbus_msg_gpadl_body b = { .hdr.msgtype = VMBUS_MSG_GPADL_BODY };
	uint64_t pfn = 10, outside = NPFN + 1;

	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);

	/* Body without header: ignored. */
	b.gpadl = 0x99;
	memcpy(buf, &b, sizeof(b));
	memcpy(buf + 16, &pfn, 8);
	post(buf, 24);
	no_msgs();

	/* Huge range count. */
	h.gpadl = 1;
	h.rangecount = 0xffff;
	h.range_buflen = 0xfff8;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, 8);
	memcpy(buf + 28, &pfn, 8);
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 1), VMBUS_STATUS_UNSUCCESSFUL);

	/* Zero ranges. */
	h.gpadl = 2;
	h.rangecount = 0;
	h.range_buflen = 16;
	memcpy(buf, &h, sizeof(h));
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 2), VMBUS_STATUS_UNSUCCESSFUL);

	/* byte_count says 2 pages, range_buflen says 1 PFN. */
	h.gpadl = 3;
	h.rangecount = 1;
	h.range_buflen = 16;
	r.byte_count = 8192;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, 8);
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 3), VMBUS_STATUS_UNSUCCESSFUL);

	/* byte_offset beyond a page, and byte_count 0. */
	h.gpadl = 4;
	r.byte_count = 100;
	r.byte_offset = 4096;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, 8);
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 4), VMBUS_STATUS_UNSUCCESSFUL);
	h.gpadl = 5;
	r.byte_count = 0;
	r.byte_offset = 0;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, 8);
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 5), VMBUS_STATUS_UNSUCCESSFUL);

	/* PFN outside guest RAM, and one that overflows a GPA. */
	r.byte_count = 4096;
	h.gpadl = 6;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, 8);
	memcpy(buf + 28, &outside, 8);
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 6), VMBUS_STATUS_UNSUCCESSFUL);
	outside = UINT64_MAX;
	h.gpadl = 7;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 28, &outside, 8);
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 7), VMBUS_STATUS_UNSUCCESSFUL);

	/* Unknown relid, handle 0, misaligned length, more data than buflen. */
	memcpy(buf + 28, &pfn, 8);
	h.gpadl = 8;
	h.child_relid = 77;
	memcpy(buf, &h, sizeof(h));
	post(buf, 36);
	assert_int_equal(gpadl_created(77, 8), VMBUS_STATUS_UNSUCCESSFUL);
	h.child_relid = 1;
	h.gpadl = 0;
	memcpy(buf, &h, sizeof(h));
	post(buf, 36);
	assert_int_equal(gpadl_created(1, 0), VMBUS_STATUS_UNSUCCESSFUL);
	h.gpadl = 9;
	memcpy(buf, &h, sizeof(h));
	post(buf, 35);
	assert_int_equal(gpadl_created(1, 9), VMBUS_STATUS_UNSUCCESSFUL);
	h.gpadl = 10;
	memcpy(buf, &h, sizeof(h));
	post(buf, 44);
	assert_int_equal(gpadl_created(1, 10), VMBUS_STATUS_UNSUCCESSFUL);

	/* A body overflowing the announced size kills the pending GPADL. */
	h.gpadl = 11;
	h.range_buflen = 8 + 8 * 2;
	r.byte_count = 8192;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, 8);
	post(buf, 36);
	no_msgs();
	b.gpadl = 11;
	memcpy(buf, &b, sizeof(b));
	post(buf, 16 + 16);
	assert_int_equal(gpadl_created(1, 11), VMBUS_STATUS_UNSUCCESSFUL);
	post(buf, 24); /* and it is gone */
	no_msgs();

	/* Duplicate handle: the second header is ignored. */
	make_gpadl(1, 12, 20, 1);
	h.gpadl = 12;
	h.range_buflen = 16;
	r.byte_count = 4096;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r, 8);
	post(buf, 36);
	no_msgs();
}

static void test_gpadl_limits(void **state)
{
	uint8_t buf[240];
	struct vmbus_msg_gpadl_header h = { .hdr.msgtype = VMBUS_MSG_GPADL_HEADER,
					    .child_relid = 1, .rangecount = 1 };
	struct vmbus_gpa_range r = { .byte_count = 8190 * 4096 };
	unsigned accepted = 0;

	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	/* Largest possible headers that never complete: bounded count. */
	h.range_buflen = 8 + 8 * 8190;
	for (uint32_t id = 1; id <= 200; id++) {
		h.gpadl = id;
		memcpy(buf, &h, sizeof(h));
		memcpy(buf + 20, &r, 8);
		memset(buf + 28, 0, 8);
		post(buf, 36);
		if (rd_posted == nr_posted)
			accepted++;
		else
			assert_int_equal(gpadl_created(1, id), VMBUS_STATUS_UNSUCCESSFUL);
	}
	assert_true(accepted <= VMBUS_MAX_PENDING_GPADLS);
	assert_true(accepted > 0);
	/* An unload frees them all. */
	{
		struct vmbus_msg_hdr u = { .msgtype = VMBUS_MSG_UNLOAD };

		post(&u, sizeof(u));
		next_msg(VMBUS_MSG_UNLOAD_RESPONSE, 8);
	}
}

static void test_gpadl_device_access(void **state)
{
	/* Two ranges: 100 bytes at offset 4000 of page 50 (spills into 51),
	 * then 8192 bytes from pages 60, 61. */
	uint8_t buf[240];
	struct vmbus_msg_gpadl_header h = { .hdr.msgtype = VMBUS_MSG_GPADL_HEADER,
					    .child_relid = 1, .gpadl = 0x77, .rangecount = 2 };
	struct vmbus_gpa_range r1 = { .byte_count = 100, .byte_offset = 4000 };
	struct vmbus_gpa_range r2 = { .byte_count = 8192, .byte_offset = 0 };
	uint64_t p1[2] = { 50, 51 }, p2[2] = { 61, 60 };
	struct vmbus_channel *ch = vmbus_device_channel(devs[0], 0);
	struct vmbus_gpadl *g;
	uint8_t data[300], back[300];

	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	h.range_buflen = 8 + 16 + 8 + 16;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + 20, &r1, 8);
	memcpy(buf + 28, p1, 16);
	memcpy(buf + 44, &r2, 8);
	memcpy(buf + 52, p2, 16);
	post(buf, 68);
	assert_int_equal(gpadl_created(1, 0x77), 0);
	assert_null(vmbus_gpadl_get(ch, 0x78));
	g = vmbus_gpadl_get(ch, 0x77);
	assert_non_null(g);
	assert_int_equal(vmbus_gpadl_len(g), 8292);
	for (int i = 0; i < 300; i++)
		data[i] = (uint8_t)i;
	/* Bytes 50..349 span range 1's page break and the range boundary. */
	assert_int_equal(vmbus_gpadl_write(g, 50, data, 300), 0);
	assert_memory_equal(mem + 50 * 4096 + 4050, data, 46);
	assert_memory_equal(mem + 51 * 4096, data + 46, 4);
	assert_memory_equal(mem + 61 * 4096, data + 50, 250);
	assert_int_equal(vmbus_gpadl_read(g, 50, back, 300), 0);
	assert_memory_equal(back, data, 300);
	/* Last byte of the second range lands on page 60. */
	assert_int_equal(vmbus_gpadl_write(g, 8291, data, 1), 0);
	assert_int_equal(mem[60 * 4096 + 4095], 0);
	assert_int_equal(vmbus_gpadl_read(g, 8290, back, 3), -EINVAL);
	assert_int_equal(vmbus_gpadl_read(g, UINT64_MAX, back, 2), -EINVAL);
	/* Referenced: teardown is answered only after the put. */
	{
		struct vmbus_msg_gpadl_teardown td = { .hdr.msgtype = VMBUS_MSG_GPADL_TEARDOWN,
						       .child_relid = 1, .gpadl = 0x77 };

		post(&td, sizeof(td));
		no_msgs();
		assert_null(vmbus_gpadl_get(ch, 0x77));
		vmbus_gpadl_put(g);
		next_msg(VMBUS_MSG_GPADL_TORNDOWN, 12);
	}
	/* A reference that survives an unload sees -ENODEV, then is freed. */
	make_gpadl(1, 0x79, 70, 1);
	g = vmbus_gpadl_get(ch, 0x79);
	assert_non_null(g);
	{
		struct vmbus_msg_hdr u = { .msgtype = VMBUS_MSG_UNLOAD };

		post(&u, sizeof(u));
		next_msg(VMBUS_MSG_UNLOAD_RESPONSE, 8);
	}
	assert_int_equal(vmbus_gpadl_read(g, 0, back, 1), -ENODEV);
	vmbus_gpadl_put(g);
}

/* ---- open / close / data ---- */

static void test_open_echo_close(void **state)
{
	struct vmbus_channel *ch = vmbus_device_channel(devs[0], 0);
	struct vmbus_msg_gpadl_teardown td = { .hdr.msgtype = VMBUS_MSG_GPADL_TEARDOWN,
					       .child_relid = 1, .gpadl = 0xe1e10 };
	struct guest_rings g;
	struct ring_pkt pkt;
	char got[16];
	bool sig;

	ds[0].send_on_open = true;
	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	make_gpadl(1, 0xe1e10, 1000, 8);
	assert_int_equal(open_chan(1, 0xe1e10, 4, 1), 0);
	assert_int_equal(ds[0].opens, 1);
	assert_true(vmbus_chan_is_open(ch));
	assert_int_equal(vmbus_chan_open_data(ch)[0], 0x42);
	assert_int_equal(vmbus_chan_target_vp(ch), 1);
	assert_int_equal(nr_reg, 1);
	assert_int_equal(reg_conn[0], VMBUS_CHAN_CONN_ID_BASE + 1);
	assert_true(reg_on[0]);
	/* The packet sent in open signalled VP 1 (event flag = relid), plus
	 * the extra signal after the result. */
	assert_true(nr_sigs >= 1);
	assert_int_equal(sigs[0].vp, 1);
	assert_int_equal(sigs[0].sint, 2);
	assert_int_equal(sigs[0].relid, 1);

	guest_rings_init(&g, 1000, 8, 4);
	assert_int_equal(ring_peek(&g.rx, &pkt), 0);
	assert_int_equal(pkt.desc.trans_id, 77);
	assert_int_equal(ring_pkt_read(&g.rx, &pkt, pkt.data_off, got, 5), 0);
	assert_memory_equal(got, "hello", 5);
	ring_pop(&g.rx, &pkt);
	ring_commit(&g.rx);

	/* Guest sends a request; the device echoes it as a completion. */
	assert_int_equal(ring_send(&g.tx, VMBUS_PKT_DATA_INBAND, VMBUS_PKT_FLAG_COMPLETION_REQUESTED,
				   5, "ping!", 5, &sig),
			 0);
	assert_true(sig);
	nr_sigs = 0;
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + 1), 0);
	assert_int_equal(ds[0].notifies, 1);
	assert_int_equal(nr_sigs, 1);
	assert_int_equal(ring_peek(&g.rx, &pkt), 0);
	assert_int_equal(pkt.desc.type, VMBUS_PKT_COMP);
	assert_int_equal(pkt.desc.trans_id, 5);
	assert_int_equal(ring_pkt_read(&g.rx, &pkt, pkt.data_off, got, 5), 0);
	assert_memory_equal(got, "ping!", 5);
	/* The guest->host ring was consumed and the index published. */
	assert_int_equal(g.tx.ctrl->read_index, g.tx.ctrl->write_index);

	/* Retarget (5.3 answers). */
	{
		struct vmbus_msg_modify_channel mc = { .hdr.msgtype = VMBUS_MSG_MODIFYCHANNEL,
						       .child_relid = 1, .target_vp = 0 };
		struct vmbus_msg_modify_channel_response r;

		post(&mc, sizeof(mc));
		memcpy(&r, next_msg(VMBUS_MSG_MODIFYCHANNEL_RESPONSE, 16), sizeof(r));
		assert_int_equal(r.status, 0);
		assert_int_equal(vmbus_chan_target_vp(ch), 0);
		vmbus_chan_signal(ch);
		assert_int_equal(sigs[nr_sigs - 1].vp, 0);
		mc.target_vp = 9;
		post(&mc, sizeof(mc));
		memcpy(&r, next_msg(VMBUS_MSG_MODIFYCHANNEL_RESPONSE, 16), sizeof(r));
		assert_int_not_equal(r.status, 0);
		assert_int_equal(vmbus_chan_target_vp(ch), 0);
	}

	/* Teardown of the ring GPADL while open is deferred until close. */
	post(&td, sizeof(td));
	no_msgs();
	post_relid(VMBUS_MSG_CLOSECHANNEL, 1);
	assert_int_equal(ds[0].closes, 1);
	assert_false(vmbus_chan_is_open(ch));
	assert_int_equal(nr_reg, 2);
	assert_false(reg_on[1]);
	next_msg(VMBUS_MSG_GPADL_TORNDOWN, 12);
	no_msgs();
	/* Signals for the closed channel go nowhere. */
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + 1), -ENOENT);
	assert_int_equal(vmbus_chan_send_inband(ch, 1, "x", 1, false), -ENOTCONN);
	/* Close again: ignored. */
	post_relid(VMBUS_MSG_CLOSECHANNEL, 1);
	assert_int_equal(ds[0].closes, 1);
	/* Reopen works with a fresh GPADL. */
	make_gpadl(1, 0xe1e11, 1000, 8);
	assert_int_equal(open_chan(1, 0xe1e11, 4, 0), 0);
	assert_int_equal(ds[0].opens, 2);
	guest_rings_destroy(&g);
}

static void test_open_errors(void **state)
{
	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	make_gpadl(1, 0x10, 1000, 8);
	make_gpadl(1, 0x11, 1100, 3); /* too small for two rings */
	assert_int_not_equal(open_chan(99, 0x10, 4, 0), 0);    /* unknown relid */
	assert_int_not_equal(open_chan(0, 0x10, 4, 0), 0);
	assert_int_not_equal(open_chan(1, 0x12, 4, 0), 0);     /* unknown GPADL */
	assert_int_not_equal(open_chan(1, 0x11, 2, 0), 0);
	assert_int_not_equal(open_chan(1, 0x10, 0, 0), 0);     /* bad offsets */
	assert_int_not_equal(open_chan(1, 0x10, 1, 0), 0);
	assert_int_not_equal(open_chan(1, 0x10, 7, 0), 0);
	assert_int_not_equal(open_chan(1, 0x10, 8, 0), 0);
	assert_int_not_equal(open_chan(1, 0x10, 0xffffffff, 0), 0);
	assert_int_not_equal(open_chan(1, 0x10, 4, NR_VPS), 0); /* no such VP */
	assert_int_equal(ds[0].opens, 0);
	/* Corrupt control page (misaligned read index) refuses the open. */
	((struct vmbus_ring_ctrl *)(mem + 1000 * 4096))->read_index = 3;
	assert_int_not_equal(open_chan(1, 0x10, 4, 0), 0);
	((struct vmbus_ring_ctrl *)(mem + 1000 * 4096))->read_index = 0;
	/* The device refuses. */
	ds[0].open_ret = -EIO;
	assert_int_not_equal(open_chan(1, 0x10, 4, 0), 0);
	assert_int_equal(ds[0].opens, 1);
	assert_false(vmbus_chan_is_open(vmbus_device_channel(devs[0], 0)));
	/* Signal routing cannot be set up. */
	ds[0].open_ret = 0;
	reg_fail = -EEXIST;
	assert_int_not_equal(open_chan(1, 0x10, 4, 0), 0);
	reg_fail = 0;
	/* Finally fine; opening twice is refused. */
	assert_int_equal(open_chan(1, 0x10, 4, 0), 0);
	assert_int_not_equal(open_chan(1, 0x10, 4, 0), 0);
	assert_int_equal(ds[0].opens, 2);
	/* The GPADL had no leaked references: close + teardown answer at once. */
	post_relid(VMBUS_MSG_CLOSECHANNEL, 1);
	{
		struct vmbus_msg_gpadl_teardown td = { .hdr.msgtype = VMBUS_MSG_GPADL_TEARDOWN,
						       .child_relid = 1, .gpadl = 0x10 };

		post(&td, sizeof(td));
		next_msg(VMBUS_MSG_GPADL_TORNDOWN, 12);
	}
	/* Messages for relids that do not exist. */
	post_relid(VMBUS_MSG_CLOSECHANNEL, 0);
	post_relid(VMBUS_MSG_CLOSECHANNEL, 5000);
	post_relid(VMBUS_MSG_RELID_RELEASED, 2047);
	post_relid(VMBUS_MSG_RELID_RELEASED, 0xffffffff);
	no_msgs();
}

static void test_corrupt_ring_breaks_channel(void **state)
{
	struct vmbus_channel *ch = vmbus_device_channel(devs[0], 0);
	struct vmbus_ring_ctrl *in = (struct vmbus_ring_ctrl *)(mem + 1000 * 4096);
	struct ring_pkt pkt;

	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	make_gpadl(1, 0x10, 1000, 8);
	assert_int_equal(open_chan(1, 0x10, 4, 0), 0);
	in->write_index = 3 * 4096 + 8; /* past the end of a 3-page ring */
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + 1), 0);
	assert_int_equal(vmbus_chan_recv_peek(ch, &pkt), -EPROTO);
	in->write_index = 0;
	/* Broken stays broken until reopened; notify is no longer called. */
	assert_int_equal(vmbus_chan_recv_peek(ch, &pkt), -EPROTO);
	assert_int_equal(vmbus_chan_send_inband(ch, 1, "x", 1, false), -EPROTO);
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + 1), 0);
	assert_int_equal(ds[0].notifies, 1);
	/* Host->guest ring with a corrupt read index breaks the channel too. */
	post_relid(VMBUS_MSG_CLOSECHANNEL, 1);
	assert_int_equal(open_chan(1, 0x10, 4, 0), 0);
	assert_int_equal(vmbus_chan_recv_peek(ch, &pkt), -EAGAIN);
	((struct vmbus_ring_ctrl *)(mem + 1004 * 4096))->read_index = 0xfff0;
	assert_int_equal(vmbus_chan_send_inband(ch, 1, "x", 1, false), -EPROTO);
	assert_int_equal(vmbus_chan_recv_peek(ch, &pkt), -EPROTO);
}

static void test_rescind(void **state)
{
	struct vmbus_msg_relid r;

	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	make_gpadl(1, 0x10, 1000, 8);
	assert_int_equal(open_chan(1, 0x10, 4, 0), 0);
	vmbus_rescind(devs[0]);
	memcpy(&r, next_msg(VMBUS_MSG_RESCIND_CHANNELOFFER, 12), 12);
	assert_int_equal(r.child_relid, 1);
	no_msgs();
	assert_int_equal(ds[0].releases, 0);
	/* A new GPADL or open for the rescinded channel is refused. */
	make_gpadl(2, 0x20, 1100, 4);
	{
		uint64_t p = 1200;

		send_gpadl(1, 0x21, &p, 1);
		assert_int_equal(gpadl_created(1, 0x21), VMBUS_STATUS_UNSUCCESSFUL);
	}
	/* The guest closes, tears down and releases the relid. */
	post_relid(VMBUS_MSG_CLOSECHANNEL, 1);
	assert_int_equal(ds[0].closes, 1);
	{
		struct vmbus_msg_gpadl_teardown td = { .hdr.msgtype = VMBUS_MSG_GPADL_TEARDOWN,
						       .child_relid = 1, .gpadl = 0x10 };

		post(&td, sizeof(td));
		next_msg(VMBUS_MSG_GPADL_TORNDOWN, 12);
	}
	post_relid(VMBUS_MSG_RELID_RELEASED, 1);
	assert_int_equal(ds[0].releases, 1);
	devs[0] = NULL;
	/* RELID_RELEASED for a channel that was not rescinded: ignored. */
	post_relid(VMBUS_MSG_RELID_RELEASED, 2);
	no_msgs();
	/* relid 1 is free again for the next device. */
	devs[2] = vmbus_device_add(srv, &hb_class, &(struct vmbus_device_params){ .priv = &ds[2] });
	{
		struct vmbus_msg_offer_channel o;

		memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
		assert_int_equal(o.child_relid, 1);
	}
	/* Rescinding a device that was never offered frees it at once. */
	vmbus_server_reset(srv);
	vmbus_rescind(devs[2]);
	assert_int_equal(ds[2].releases, 1);
	no_msgs();
}

static void test_unload_and_reconnect(void **state)
{
	struct vmbus_msg_hdr u = { .msgtype = VMBUS_MSG_UNLOAD };
	struct vmbus_msg_offer_channel o;

	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	make_gpadl(1, 0x10, 1000, 8);
	make_gpadl(2, 0x11, 1100, 8);
	assert_int_equal(open_chan(1, 0x10, 4, 0), 0);
	assert_int_equal(open_chan(2, 0x11, 4, 1), 0);
	post(&u, sizeof(u));
	next_msg(VMBUS_MSG_UNLOAD_RESPONSE, 8);
	no_msgs();
	assert_int_equal(ds[0].closes, 1);
	assert_int_equal(ds[1].closes, 1);
	assert_int_equal(ds[0].resets, 1);
	assert_int_equal(ds[1].resets, 1);
	assert_int_equal(vmbus_server_version(srv), 0);
	/* After the unload nothing but INITIATE_CONTACT is accepted. */
	post_relid(VMBUS_MSG_CLOSECHANNEL, 1);
	no_msgs();
	/* Reconnect: same relids, GPADLs forgotten. */
	connect_and_offer(VMBUS_VERSION_WIN10_V5_2);
	{
		struct vmbus_msg_gpadl_teardown td = { .hdr.msgtype = VMBUS_MSG_GPADL_TEARDOWN,
						       .child_relid = 1, .gpadl = 0x10 };

		post(&td, sizeof(td));
		no_msgs();
	}
	make_gpadl(1, 0x10, 1000, 8);
	assert_int_equal(open_chan(1, 0x10, 4, 0), 0);
	/* INITIATE_CONTACT while connected (kexec): implicit reset. */
	assert_int_equal(contact(VMBUS_VERSION_WIN10_V5_3, 0).version_supported, 1);
	assert_int_equal(ds[0].closes, 2);
	assert_int_equal(ds[0].resets, 2);
	{
		struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };

		post(&ro, sizeof(ro));
		memcpy(&o, next_msg(VMBUS_MSG_OFFERCHANNEL, 196), sizeof(o));
		assert_int_equal(o.child_relid, 1);
	}
	/* VM reset: everything closed, nothing sent. */
	rd_posted = nr_posted;
	make_gpadl(1, 0x10, 1000, 8);
	rd_posted = nr_posted;
	assert_int_equal(open_chan(1, 0x10, 4, 0), 0);
	vmbus_server_reset(srv);
	no_msgs();
	assert_int_equal(ds[0].closes, 3);
	assert_int_equal(vmbus_server_version(srv), 0);
}

static void test_modify_versions(void **state)
{
	struct vmbus_msg_modify_channel mc = { .hdr.msgtype = VMBUS_MSG_MODIFYCHANNEL,
					       .child_relid = 1, .target_vp = 1 };
	struct vmbus_msg_tl_connect_request tl = { .hdr.msgtype = VMBUS_MSG_TL_CONNECT_REQUEST };

	/* 4.0: neither MODIFYCHANNEL nor TL_CONNECT_RESULT exist. */
	connect_and_offer(VMBUS_VERSION_WIN10);
	post(&mc, sizeof(mc));
	no_msgs();
	assert_int_equal(vmbus_chan_target_vp(vmbus_device_channel(devs[0], 0)), 0);
	post(&tl, sizeof(tl));
	no_msgs();
	/* 4.1: MODIFYCHANNEL works silently; TL connect is refused. */
	connect_and_offer(VMBUS_VERSION_WIN10_V4_1);
	post(&mc, sizeof(mc));
	no_msgs();
	assert_int_equal(vmbus_chan_target_vp(vmbus_device_channel(devs[0], 0)), 1);
	post(&tl, sizeof(tl));
	{
		struct vmbus_msg_tl_connect_result r;

		memcpy(&r, next_msg(VMBUS_MSG_TL_CONNECT_RESULT, 44), sizeof(r));
		assert_int_equal(r.status, VMBUS_STATUS_CONNECTION_REFUSED);
	}
	/* 3.0: TL_CONNECT_REQUEST is not part of the protocol. */
	connect_and_offer(VMBUS_VERSION_WIN8_1);
	post(&tl, sizeof(tl));
	no_msgs();
}

/* Flow control both ways over 1-page rings. */
/* Relid 1 (the heartbeat device) opened on 4 pages at pfn 1000, one data
 * page per direction, interrupting VP `vp`; the guest's view in *g. */
static void open_small_channel(struct guest_rings *g, uint32_t vp)
{
	connect_and_offer(VMBUS_VERSION_WIN10_V5_3);
	make_gpadl(1, 0x10, 1000, 4);
	assert_int_equal(open_chan(1, 0x10, 2, vp), 0);
	guest_rings_init(g, 1000, 4, 2);
}

static void test_flow_control(void **state)
{
	struct vmbus_channel *ch = vmbus_device_channel(devs[0], 0);
	struct guest_rings g;
	struct ring_pkt pkt;
	uint8_t b[1000] = { 0 };
	unsigned sent = 0, before;
	bool sig;
	int ret;

	open_small_channel(&g, 0);
	/* Host -> guest: fill up; the guest's reads must signal us back. */
	while ((ret = vmbus_chan_send_inband(ch, sent, b, sizeof(b), false)) == 0)
		sent++;
	assert_int_equal(ret, -EAGAIN);
	assert_int_equal(sent, 3);
	assert_int_not_equal(g.rx.ctrl->pending_send_sz, 0);
	assert_int_equal(ring_peek(&g.rx, &pkt), 0);
	ring_pop(&g.rx, &pkt);
	assert_true(ring_commit(&g.rx)); /* the guest signals the host here */
	assert_int_equal(vmbus_chan_send_inband(ch, 9, b, sizeof(b), false), 0);
	assert_int_equal(g.rx.ctrl->pending_send_sz, 0);
	/* Guest -> host: the guest fills its ring (without completions, so the
	 * echo device sends nothing back) and waits for space. */
	sent = 0;
	while ((ret = ring_send(&g.tx, VMBUS_PKT_DATA_INBAND, 0, sent, b, sizeof(b), &sig)) == 0)
		sent++;
	assert_int_equal(ret, -EAGAIN);
	assert_int_not_equal(g.tx.ctrl->pending_send_sz, 0);
	before = nr_sigs;
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + 1), 0);
	/* Draining crossed the guest's pending_send_sz: it was interrupted. */
	assert_int_equal(nr_sigs, before + 1);
	assert_int_equal(sigs[nr_sigs - 1].relid, 1);
	assert_int_equal(ring_send(&g.tx, VMBUS_PKT_DATA_INBAND, 0, 99, b, sizeof(b), &sig), 0);
	guest_rings_destroy(&g);
}

/* A lost interrupt in either direction: the watchdog notices a ring that
 * stayed unread for two ticks, and only then. */
static void test_watchdog(void **state)
{
	struct vmbus_channel *ch = vmbus_device_channel(devs[0], 0);
	struct guest_rings g;
	struct ring_pkt pkt;
	unsigned before;
	bool sig;

	open_small_channel(&g, 1);
	/* Idle rings: nothing to do, however many ticks. */
	before = nr_sigs;
	for (int i = 0; i < 3; i++)
		assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(nr_sigs, before);

	/* Host -> guest: a packet the guest does not read (its interrupt was
	 * lost). The first tick only notes it; the second interrupts again. */
	assert_int_equal(vmbus_chan_send_inband(ch, 5, "ping", 4, false), 0);
	before = nr_sigs;
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(nr_sigs, before);
	assert_int_equal(vmbus_server_watchdog(srv), 1);
	assert_int_equal(nr_sigs, before + 1);
	assert_int_equal(sigs[nr_sigs - 1].relid, 1);
	assert_int_equal(sigs[nr_sigs - 1].vp, 1);
	/* The guest reads it: no more kicks. */
	assert_int_equal(ring_peek(&g.rx, &pkt), 0);
	ring_pop(&g.rx, &pkt);
	ring_commit(&g.rx);
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(nr_sigs, before + 1);

	/* A guest that reads slowly but steadily is not kicked. */
	assert_int_equal(vmbus_chan_send_inband(ch, 6, "a", 1, false), 0);
	assert_int_equal(vmbus_chan_send_inband(ch, 7, "b", 1, false), 0);
	before = nr_sigs;
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(ring_peek(&g.rx, &pkt), 0);
	ring_pop(&g.rx, &pkt);
	ring_commit(&g.rx);
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(ring_peek(&g.rx, &pkt), 0);
	ring_pop(&g.rx, &pkt);
	ring_commit(&g.rx);
	assert_int_equal(nr_sigs, before);

	/* Guest -> host: a packet whose signal never came is served at the
	 * second tick, as if signalled (the echo device completes it). */
	before = ds[0].notifies;
	assert_int_equal(ring_send(&g.tx, VMBUS_PKT_DATA_INBAND, VMBUS_PKT_FLAG_COMPLETION_REQUESTED,
				   42, "echo", 4, &sig), 0);
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(ds[0].notifies, before);
	assert_int_equal(vmbus_server_watchdog(srv), 1);
	assert_int_equal(ds[0].notifies, before + 1);
	assert_int_equal(ring_peek(&g.rx, &pkt), 0);
	assert_int_equal(pkt.desc.trans_id, 42);
	ring_pop(&g.rx, &pkt);
	ring_commit(&g.rx);
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(ds[0].notifies, before + 1);

	/* A closed channel is left alone. */
	assert_int_equal(vmbus_chan_send_inband(ch, 8, "c", 1, false), 0);
	post_relid(VMBUS_MSG_CLOSECHANNEL, 1);
	before = nr_sigs;
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(vmbus_server_watchdog(srv), 0);
	assert_int_equal(nr_sigs, before);
	guest_rings_destroy(&g);
}

static void test_signal_unknown(void **state)
{
	assert_int_equal(vmbus_server_signal(srv, 0), -ENOENT);
	assert_int_equal(vmbus_server_signal(srv, 1), -ENOENT);
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE), -ENOENT);
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + 1), -ENOENT);
	assert_int_equal(vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + 5000), -ENOENT);
	assert_int_equal(vmbus_server_signal(srv, 0xffffffff), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_negotiate_linux_5_10, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_linux_6_x, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_capped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subchannels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_create_teardown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpadl_device_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_echo_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_ring_breaks_channel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rescind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unload_and_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modify_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flow_control, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signal_unknown, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
