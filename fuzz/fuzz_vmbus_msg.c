/* libFuzzer target: sequences of guest actions against the VMBus server
 * over a fake guest memory. Besides raw channel messages the input can use
 * short "canned" operations (connect, GPADL, open, ring packet, memory
 * write, signal) so the fuzzer reaches open channels and ring traffic
 * quickly, and host actions (hot-add, rescind, sub-channels, reset). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/guest_mem.h"
#include "util/log.h"
#include "vmbus/server.h"

#define MEM_PAGES 256u
#define MEM_SIZE (MEM_PAGES * 4096u)
#define NR_VPS 2

static struct guest_mem gm;
static uint8_t *mem;

/* ---- input reader ---- */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t in_u8(struct input *in)
{
	uint8_t v = 0;

	if (in->n) {
		v = *in->p++;
		in->n--;
	}
	return v;
}

static uint32_t in_u32(struct input *in)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)in_u8(in) << (8 * i);
	return v;
}

static size_t in_bytes(struct input *in, void *dst, size_t want)
{
	size_t n = want < in->n ? want : in->n;

	memcpy(dst, in->p, n);
	in->p += n;
	in->n -= n;
	return n;
}

/* ---- fake host ---- */

static int post_fail;

static int fake_post(void *ctx, uint32_t vp, uint32_t sint, uint32_t type, const void *p,
		     size_t len)
{
	if (vp >= NR_VPS || sint >= 16 || len > 240 || len < 8 || type != 1)
		abort();
	return post_fail ? -ENOBUFS : 0;
}

static int fake_signal(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid)
{
	if (vp >= NR_VPS || relid == 0 || relid > VMBUS_MAX_RELID)
		abort();
	return 0;
}

static int fake_register(void *ctx, uint32_t conn, bool on)
{
	if (conn > VMBUS_CONNECTION_ID_MASK)
		abort();
	return 0;
}

static const struct vmbus_host_ops host_ops = {
	.post_message = fake_post,
	.signal_guest = fake_signal,
	.register_guest_signal = fake_register,
};

/* ---- fake devices ---- */

#define MAX_HELD 4

struct fdev {
	struct vmbus_gpadl *held[MAX_HELD];
	unsigned nr_held;
	bool fail_open;
};

static void drop_refs(struct fdev *d)
{
	for (unsigned i = 0; i < d->nr_held; i++)
		vmbus_gpadl_put(d->held[i]);
	d->nr_held = 0;
}

static int dev_open(struct vmbus_channel *ch)
{
	struct fdev *d = vmbus_device_priv(vmbus_chan_device(ch));

	if (d->fail_open)
		return -EIO;
	vmbus_chan_send_inband(ch, 1, "negotiate", 9, false);
	return 0;
}

static void dev_close(struct vmbus_channel *ch)
{
	drop_refs(vmbus_device_priv(vmbus_chan_device(ch)));
}

/* Echo completions; a payload starting with 'G' names a GPADL the device
 * takes a reference to and reads/writes through. */
static void dev_notify(struct vmbus_channel *ch)
{
	struct fdev *d = vmbus_device_priv(vmbus_chan_device(ch));
	struct ring_pkt pkt;
	uint8_t buf[512];
	unsigned budget = 64;

	while (budget-- && vmbus_chan_recv_peek(ch, &pkt) == 0) {
		uint32_t n = pkt.data_len < sizeof(buf) ? pkt.data_len : sizeof(buf);

		if (vmbus_chan_recv_read(ch, &pkt, pkt.data_off, buf, n))
			abort(); /* peek validated the packet: reads inside it work */
		vmbus_chan_recv_read(ch, &pkt, pkt.len - 1, buf, 2); /* must fail cleanly */
		if (n >= 13 && buf[0] == 'G') {
			uint32_t id, off, len;
			struct vmbus_gpadl *g;

			memcpy(&id, buf + 1, 4);
			memcpy(&off, buf + 5, 4);
			memcpy(&len, buf + 9, 4);
			g = vmbus_gpadl_get(ch, id);
			if (g) {
				uint8_t tmp[256];

				len %= sizeof(tmp);
				off = (uint32_t)(off % (vmbus_gpadl_len(g) + 1));
				if (vmbus_gpadl_read(g, off, tmp, len) == 0)
					vmbus_gpadl_write(g, vmbus_gpadl_len(g) - len, tmp, len);
				if (d->nr_held < MAX_HELD)
					d->held[d->nr_held++] = g;
				else
					vmbus_gpadl_put(g);
			}
		}
		if (n >= 1 && buf[0] == 'S')
			vmbus_device_add_subchannels(vmbus_chan_device(ch), 1 + buf[n - 1] % 3);
		if (pkt.desc.flags & VMBUS_PKT_FLAG_COMPLETION_REQUESTED)
			vmbus_chan_send_completion(ch, pkt.desc.trans_id, buf, n);
		vmbus_chan_recv_pop(ch, &pkt);
	}
	vmbus_chan_recv_commit(ch);
}

static void dev_reset(struct vmbus_device *dev)
{
	drop_refs(vmbus_device_priv(dev));
}

static void dev_release(struct vmbus_device *dev)
{
	struct fdev *d = vmbus_device_priv(dev);

	drop_refs(d);
	free(d);
}

static const struct vmbus_device_class fclass = {
	.name = "fuzzdev",
	.class_guid = VMBUS_CLASS_KVP,
	.chn_flags = VMBUS_OFFER_NAMED_PIPE_MODE,
	.pipe_mode = VMBUS_PIPE_TYPE_MESSAGE,
	.open = dev_open,
	.close = dev_close,
	.notify = dev_notify,
	.reset = dev_reset,
	.release = dev_release,
};

#define MAX_DEVS 8
static struct vmbus_device *devs[MAX_DEVS];
static unsigned nr_devs;

static void add_dev(struct vmbus_server *srv, bool fail_open)
{
	struct fdev *d;
	struct vmbus_device_params p = { .instance = GUID_INIT(nr_devs, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10) };

	if (nr_devs == MAX_DEVS)
		return;
	d = calloc(1, sizeof(*d));
	if (!d)
		return;
	d->fail_open = fail_open;
	p.priv = d;
	devs[nr_devs] = vmbus_device_add(srv, &fclass, &p);
	if (devs[nr_devs])
		nr_devs++;
	else
		free(d);
}

/* ---- canned guest operations ---- */

static void send_msg(struct vmbus_server *srv, const void *m, size_t len)
{
	vmbus_server_handle_message(srv, VMBUS_MESSAGE_CONNECTION_ID, m, len);
}

static void op_connect(struct vmbus_server *srv, struct input *in)
{
	static const uint32_t versions[] = {
		VMBUS_VERSION_WIN10_V6_0, VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2,
		VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,
		VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,
	};
	struct vmbus_msg_initiate_contact m = { .hdr.msgtype = VMBUS_MSG_INITIATE_CONTACT };
	struct vmbus_msg_hdr ro = { .msgtype = VMBUS_MSG_REQUESTOFFERS };
	uint8_t b = in_u8(in);

	m.version_requested = versions[b % 8];
	m.target_vcpu = (b >> 3) & 3;
	m.msg_sint = 2;
	vmbus_server_handle_message(srv, m.version_requested >= VMBUS_VERSION_WIN10_V5 ? 4 : 1, &m,
				    sizeof(m));
	if (!(b & 0x80))
		send_msg(srv, &ro, sizeof(ro));
}

/* A GPADL the way Linux sends it (one page-aligned range), or with up to
 * three ranges at odd offsets; split into header and bodies. */
static void op_gpadl(struct vmbus_server *srv, struct input *in)
{
	uint8_t buf[240], stream[8 * 80];
	struct vmbus_msg_gpadl_header h = { .hdr.msgtype = VMBUS_MSG_GPADL_HEADER };
	uint32_t first = in_u8(in), n = 1 + in_u8(in) % 64, sel = in_u8(in);
	uint32_t nranges = sel & 0x80 ? 1 + sel % 3 : 1;
	size_t len = 0, done, k;

	h.child_relid = in_u8(in) % 8;
	h.gpadl = in_u8(in) % 16;
	h.rangecount = (uint16_t)nranges;
	for (uint32_t r = 0; r < nranges; r++) {
		struct vmbus_gpa_range gr = { .byte_count = n * 4096 };
		uint32_t npfn = n;

		if (nranges > 1) {
			gr.byte_offset = (in_u8(in) * 16u) % 4096;
			gr.byte_count = 1 + in_u8(in) * 40u;
			npfn = (gr.byte_offset + gr.byte_count + 4095) / 4096;
		}
		memcpy(stream + len, &gr, 8);
		len += 8;
		for (uint32_t i = 0; i < npfn && len + 8 <= sizeof(stream); i++, len += 8) {
			uint64_t pfn = first + r * 8 + i;

			memcpy(stream + len, &pfn, 8);
		}
	}
	h.range_buflen = (uint16_t)len;
	if (sel & 0x40) { /* lie about the size, or the count */
		if (sel & 0x20)
			h.range_buflen = (uint16_t)(len + 8 - 16 * (sel & 1));
		else
			h.rangecount = (uint16_t)(nranges + 1 - 2 * (sel & 1));
	}
	memcpy(buf, &h, sizeof(h));
	done = len < 216 ? len : 216;
	memcpy(buf + 20, stream, done);
	send_msg(srv, buf, 20 + done);
	while (done < len) {
		struct vmbus_msg_gpadl_body b = { .hdr.msgtype = VMBUS_MSG_GPADL_BODY, .gpadl = h.gpadl };

		k = len - done < 224 ? len - done : 224;
		memcpy(buf, &b, sizeof(b));
		memcpy(buf + 16, stream + done, k);
		send_msg(srv, buf, 16 + k);
		done += k;
	}
}

static void op_teardown(struct vmbus_server *srv, struct input *in)
{
	struct vmbus_msg_gpadl_teardown m = { .hdr.msgtype = VMBUS_MSG_GPADL_TEARDOWN };
	struct vmbus_msg_relid c = { .hdr.msgtype = VMBUS_MSG_CLOSECHANNEL };
	uint8_t b = in_u8(in);

	m.child_relid = b % 8;
	m.gpadl = in_u8(in) % 16;
	c.child_relid = m.child_relid;
	if (b & 0x80)
		send_msg(srv, &c, sizeof(c));
	send_msg(srv, &m, sizeof(m));
	if (b & 0x40) {
		c.hdr.msgtype = VMBUS_MSG_RELID_RELEASED;
		send_msg(srv, &c, sizeof(c));
	}
}

static void op_open(struct vmbus_server *srv, struct input *in)
{
	struct vmbus_msg_open_channel m = { .hdr.msgtype = VMBUS_MSG_OPENCHANNEL };

	m.child_relid = in_u8(in) % 8;
	m.openid = m.child_relid;
	m.ringbuffer_gpadl = in_u8(in) % 16;
	m.downstream_page_offset = in_u8(in) % 66;
	m.target_vp = in_u8(in) % 3;
	send_msg(srv, &m, sizeof(m));
}

/* The guest writes a packet into the ring at pages first.. (if it is a
 * valid ring) and signals the channel. */
static void op_packet(struct vmbus_server *srv, struct input *in)
{
	uint64_t pfns[64];
	uint32_t first = in_u8(in), n = 2 + in_u8(in) % 32;
	uint8_t relid = in_u8(in) % 8, flags = in_u8(in);
	uint8_t payload[600];
	size_t len = in_u8(in) * 2u;
	struct vmbus_ring r;
	bool sig;

	len = in_bytes(in, payload, len < sizeof(payload) ? len : sizeof(payload));
	if (flags & 2) { /* a device command naming a GPADL */
		uint32_t id = in_u8(in) % 16, off = in_u32(in), glen = in_u8(in);

		payload[0] = 'G';
		memcpy(payload + 1, &id, 4);
		memcpy(payload + 5, &off, 4);
		memcpy(payload + 9, &glen, 4);
		if (len < 13)
			len = 13;
	}
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = first + i;
	if (ring_init(&r, &gm, pfns, n, RING_WRITER) == 0) {
		ring_send(&r, VMBUS_PKT_DATA_INBAND, flags & 1, flags, payload, (uint32_t)len, &sig);
		ring_destroy(&r);
	}
	vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + relid);
}

static void op_memwrite(struct input *in)
{
	uint32_t page = in_u8(in) % MEM_PAGES;
	uint32_t off = (in_u8(in) | (uint32_t)in_u8(in) << 8) % 4096;
	uint8_t len = in_u8(in);
	uint8_t tmp[256];
	size_t n = in_bytes(in, tmp, len);

	if (n > 4096 - off)
		n = 4096 - off;
	memcpy(mem + page * 4096 + off, tmp, n);
}

static void op_raw(struct vmbus_server *srv, struct input *in)
{
	uint8_t sel = in_u8(in);
	uint8_t buf[256];
	size_t len = in_bytes(in, buf, in_u8(in));
	uint32_t conn = sel & 1 ? 4 : (sel & 2 ? sel : 1);

	vmbus_server_handle_message(srv, conn, buf, len);
}

/* Typed message with fields from the input (reaches handlers faster). */
static void op_typed(struct vmbus_server *srv, struct input *in)
{
	uint8_t buf[240];
	uint32_t type = in_u8(in) % 26;
	size_t len = 8 + in_u8(in) % 233;

	memset(buf, 0, sizeof(buf));
	memcpy(buf, &type, 4);
	for (size_t i = 8; i < len && i < 40; i += 4) {
		uint32_t v = in_u8(in);

		v = v < 0xf0 ? v % 20 : in_u32(in);
		memcpy(buf + i, &v, 4);
	}
	send_msg(srv, buf, len);
}

static void op_host(struct vmbus_server *srv, struct input *in)
{
	uint8_t b = in_u8(in);
	struct vmbus_device *dev = nr_devs ? devs[(b >> 3) % nr_devs] : NULL;

	switch (b & 7) {
	case 0:
		add_dev(srv, b & 0x80);
		break;
	case 1:
		if (dev) {
			unsigned i = (b >> 3) % nr_devs;

			vmbus_rescind(dev);
			/* The device may be freed now: forget it. */
			nr_devs--;
			devs[i] = devs[nr_devs];
		}
		break;
	case 2:
		if (dev)
			vmbus_device_add_subchannels(dev, 1 + (b >> 6));
		break;
	case 3:
		vmbus_server_reset(srv);
		break;
	case 4:
		post_fail = !post_fail;
		break;
	case 5:
		if (dev) {
			struct vmbus_channel *ch = vmbus_device_channel(dev, b >> 6);

			if (ch) {
				vmbus_chan_send_inband(ch, b, "host", 4, true);
				vmbus_chan_signal(ch);
				vmbus_chan_fail(ch, "fuzz");
			}
		}
		break;
	default:
		vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + (b >> 3));
		break;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mem = aligned_alloc(4096, MEM_SIZE);
	if (!mem)
		abort();
	guest_mem_layout(&gm, mem, MEM_SIZE);
	log_threshold = LOG_ERR;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmbus_server_config cfg = { .gm = &gm, .nr_vps = NR_VPS, .ops = &host_ops };
	struct input in = { data, size };
	struct vmbus_server *srv;
	unsigned steps = 0;

	memset(mem, 0, MEM_SIZE);
	post_fail = 0;
	nr_devs = 0;
	srv = vmbus_server_new(&cfg);
	if (!srv)
		abort();
	add_dev(srv, false);
	add_dev(srv, false);
	while (in.n && steps++ < 4096) {
		switch (in_u8(&in) % 10) {
		case 0:
			op_connect(srv, &in);
			break;
		case 1:
			op_gpadl(srv, &in);
			break;
		case 2:
			op_open(srv, &in);
			break;
		case 3:
			op_packet(srv, &in);
			break;
		case 4:
			op_memwrite(&in);
			break;
		case 5:
			op_raw(srv, &in);
			break;
		case 6:
			op_typed(srv, &in);
			break;
		case 7:
			op_host(srv, &in);
			break;
		case 8:
			op_teardown(srv, &in);
			break;
		default:
			vmbus_server_signal(srv, VMBUS_CHAN_CONN_ID_BASE + in_u8(&in) % 8);
			break;
		}
	}
	vmbus_server_free(srv);
	return 0;
}
