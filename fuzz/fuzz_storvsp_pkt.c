/* libFuzzer target: arbitrary guest packets into the storage VSP's receive
 * path, through the real VMBus server, over fake guest memory and
 * in-memory disks. The input is a script of guest and host actions:
 * well-formed SRBs with fuzzed CDBs, buffers and LUNs; raw inband and
 * GPA-direct packets with arbitrary range headers, PFNs and lengths;
 * vstor operations in any order and size; sub-channels; close/reopen,
 * ring corruption, VMBus unload; hot add, hot remove and resize of LUNs
 * from the host side. Checks that the host never crashes or touches
 * memory it should not (ASan/UBSan) and that everything it sends is a
 * well-formed vstor completion or an ENUMERATE_BUS notification. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MD_LOG_MAX 8
#include "../tests/unit/test_storvsp_util.h"

#define DISK_SIZE (64u << 10)
#define MAX_ACTIONS 256

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

static uint16_t in_u16(struct input *in)
{
	return (uint16_t)(in_u8(in) | in_u8(in) << 8);
}

static uint32_t in_u32(struct input *in)
{
	return (uint32_t)in_u16(in) | (uint32_t)in_u16(in) << 16;
}

static size_t in_bytes(struct input *in, void *dst, size_t want)
{
	size_t n = want < in->n ? want : in->n;

	memcpy(dst, in->p, n);
	in->p += n;
	in->n -= n;
	return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_threshold = LOG_ERR;
	return 0;
}

/* Everything the host sends must be a vstor completion or a rescan
 * notification of the negotiated size. */
static void check_host_packet(const struct su_pkt *p)
{
	struct vstor_packet v = su_vstor(p);

	if (p->len != VSTOR_PACKET_SIZE && p->len != VSTOR_PACKET_SIZE_WIN7)
		abort();
	if (p->type == VMBUS_PKT_COMP) {
		if (v.operation != VSTOR_OP_COMPLETE_IO || v.flags != 0)
			abort();
		if (v.srb.sense_info_length > VMSCSI_SENSE_MAX ||
		    v.srb.data_transfer_length > STORVSP_MAX_MAX_TRANSFER)
			abort();
	} else if (p->type == VMBUS_PKT_DATA_INBAND) {
		if (p->trans_id != 0 || p->flags != 0 || v.operation != VSTOR_OP_ENUMERATE_BUS)
			abort();
	} else {
		abort();
	}
}

static void drain_host(void)
{
	struct su_pkt p;

	for (unsigned round = 0; round < 4; round++) {
		su_poll(0);
		for (uint32_t r = 1; r <= SU_MAX_RELID; r++)
			while (su.chans[r].open && su_recv(r, &p))
				check_host_packet(&p);
	}
}

static uint32_t pick_channel(struct input *in)
{
	uint32_t open[SU_MAX_RELID];
	unsigned n = 0;

	for (uint32_t r = 1; r <= SU_MAX_RELID; r++)
		if (su.chans[r].open)
			open[n++] = r;
	return n ? open[in_u8(in) % n] : 0;
}

/* Open the primary channel (if offered and closed) and maybe initialize. */
static uint32_t bring_up(struct input *in, bool init)
{
	uint32_t relid = su_relid(0, 0);
	struct vstor_packet p;

	if (!relid || su.chans[relid].open || !su_open(relid))
		return relid;
	if (!init)
		return relid;
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_BEGIN_INITIALIZATION;
	(void)su_init_op(relid, &p, VSTOR_PACKET_SIZE);
	for (unsigned i = 0; i < 3; i++) {
		memset(&p, 0, sizeof(p));
		p.operation = VSTOR_OP_QUERY_PROTOCOL_VERSION;
		p.version.major_minor = su_linux_versions[(i + in_u8(in)) % 3];
		if (su_init_op(relid, &p, VSTOR_PACKET_SIZE).status == 0)
			break;
	}
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_QUERY_PROPERTIES;
	(void)su_init_op(relid, &p, VSTOR_PACKET_SIZE);
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_END_INITIALIZATION;
	(void)su_init_op(relid, &p, VSTOR_PACKET_SIZE);
	return relid;
}

static void send_srb(struct input *in, uint32_t relid)
{
	uint8_t cdb[16] = { 0 };
	uint8_t flags = in_u8(in);
	uint8_t cdb_len = (uint8_t)(in_u8(in) % 17);
	uint32_t dtl = in_u16(in) % (80 * 1024);
	struct vstor_packet req;
	uint64_t pfns[24];
	unsigned npfn;
	uint32_t off = flags & 0x80 ? in_u16(in) % 4096 : 0;
	int ret;

	in_bytes(in, cdb, cdb_len);
	req = su_srb(in_u8(in) % 6, cdb, cdb_len ? cdb_len : 1, in_u8(in) % 3, dtl);
	req.srb.cdb_length = cdb_len;
	if (flags & 1)
		req.srb.path_id = in_u8(in);
	if (flags & 2)
		req.srb.target_id = in_u8(in);
	if (flags & 4)
		req.srb.sense_info_length = in_u8(in);
	if (!dtl && !(flags & 8)) {
		ret = su_send_inband(relid, 1 + in_u8(in), &req, VSTOR_PACKET_SIZE, !(flags & 16));
		(void)ret;
		return;
	}
	/* Range length: usually the transfer, sometimes off by some. */
	{
		uint32_t count = dtl ? dtl : 512;

		if (flags & 32)
			count = in_u16(in) % (80 * 1024);
		npfn = (unsigned)(((uint64_t)off + count + 4095) / 4096);
		if (!count || npfn > 24)
			npfn = 1 + in_u8(in) % 24, count = count ? count : 1;
		for (unsigned i = 0; i < npfn; i++)
			pfns[i] = flags & 64 ? (uint64_t)in_u32(in) : SU_DATA_PFN + in_u8(in) % 64;
		(void)su_send_gpa(relid, 1 + in_u8(in), &req, VSTOR_PACKET_SIZE, off, count, pfns,
				  npfn);
	}
}

static void send_raw_gpa(struct input *in, uint32_t relid)
{
	struct su_chan *c = &su.chans[relid];
	uint8_t hdr[24 + 256], payload[80];
	struct vmbus_pkt_gpa_direct g;
	uint32_t rlen = 8 * (in_u8(in) % 33);
	uint32_t plen = in_u8(in) % sizeof(payload);
	struct ring_iov iov = { payload, plen };
	bool sig;

	memset(hdr, 0, sizeof(hdr));
	memset(&g, 0, sizeof(g));
	g.d.type = VMBUS_PKT_DATA_USING_GPA_DIRECT;
	g.d.flags = in_u8(in) & 1;
	g.d.trans_id = in_u8(in);
	g.range_cnt = in_u8(in) % 20;
	memcpy(hdr, &g, sizeof(g));
	in_bytes(in, hdr + 24, rlen);
	memset(payload, 0, sizeof(payload));
	in_bytes(in, payload, plen);
	if (plen >= 4 && (payload[0] & 0x80))
		payload[0] = VSTOR_OP_EXECUTE_SRB;
	if (ring_write(&c->tx, hdr, 24 + rlen, &iov, 1, &sig) == 0)
		vmbus_server_signal(su.srv, c->conn_id);
}

static void send_raw(struct input *in, uint32_t relid)
{
	static const uint16_t types[] = { VMBUS_PKT_DATA_INBAND, VMBUS_PKT_DATA_USING_GPA_DIRECT,
					  VMBUS_PKT_COMP, VMBUS_PKT_DATA_USING_XFER_PAGES };
	struct su_chan *c = &su.chans[relid];
	uint8_t t = in_u8(in), buf[200];
	uint32_t len = in_u8(in) % sizeof(buf);
	bool sig;

	memset(buf, 0, sizeof(buf));
	in_bytes(in, buf, len);
	if (ring_send(&c->tx, t & 0x80 ? t : types[t % 4], (t >> 2) & 1, in_u8(in), buf, len,
		      &sig) == 0)
		vmbus_server_signal(su.srv, c->conn_id);
}

static void send_op(struct input *in, uint32_t relid)
{
	struct vstor_packet p;
	static const uint32_t lens[] = { VSTOR_PACKET_SIZE, VSTOR_PACKET_SIZE_WIN7, 16, 60 };

	memset(&p, 0, sizeof(p));
	in_bytes(in, p.raw, 16);
	p.operation = in_u8(in) % 16;
	p.flags = VSTOR_FLAG_REQUEST_COMPLETION;
	if (p.operation == VSTOR_OP_QUERY_PROTOCOL_VERSION && (in_u8(in) & 1))
		p.version.major_minor = su_old_linux_versions[in_u8(in) % 5];
	(void)su_send_inband(relid, in_u8(in) & 1 ? VSTOR_RQST_INIT : in_u8(in),
			     &p, lens[in_u8(in) % 4], true);
}

static void host_action(struct input *in)
{
	uint8_t a = in_u8(in);
	unsigned lun = 1 + in_u8(in) % 5;

	switch (a % 3) {
	case 0:
		if (su.nr_md < SU_MAX_DISKS && storvsp_add_controller(su.sv, 0) == -EEXIST) {
			struct storvsp_lun_info li[8];
			size_t n = storvsp_list(su.sv, li, 8);
			bool taken = false;

			for (size_t i = 0; i < n && i < 8; i++)
				taken |= li[i].lun == lun;
			if (!taken)
				su_add_disk(0, lun, DISK_SIZE, a & 8 ? 4096 : 512, a & 16);
		}
		break;
	case 1:
		(void)storvsp_remove_lun(su.sv, 0, lun);
		break;
	default:
		(void)storvsp_resize_lun(su.sv, 0, lun & 1 ? 0 : lun,
					 (uint64_t)(1 + in_u8(in) % 8) * 65536);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t caps[] = { VSTOR_VERSION_WIN10, VSTOR_VERSION_WIN8_1,
					 VSTOR_VERSION_WIN8, VSTOR_VERSION_WIN7 };
	struct input in = { data, size };
	struct storvsp_config c;
	uint8_t cfg = in_u8(&in);
	uint32_t relid;

	su_config_default(&c);
	c.max_version = caps[cfg & 3];
	c.nr_vcpus = 1 + ((cfg >> 5) & 3);
	c.queue_depth = 1 + in_u8(&in) % 8;
	c.max_transfer_bytes = 64 * 1024;
	su_setup(&c);
	su.ring_pages = cfg & 4 ? 2 : 4;
	su_add_disk(0, 0, DISK_SIZE, 512, false);
	if (cfg & 8)
		su_add_disk(0, 1, DISK_SIZE, 4096, true);
	su_connect();
	relid = bring_up(&in, cfg & 16);
	for (unsigned n = 0; in.n && n < MAX_ACTIONS; n++) {
		uint8_t act = in_u8(&in);
		uint32_t ch = pick_channel(&in);

		if (!ch && act % 12 < 9)
			act = 10; /* nothing open: reconnect */
		switch (act % 12) {
		case 0:
		case 1:
		case 2:
			send_srb(&in, ch);
			break;
		case 3:
			send_raw_gpa(&in, ch);
			break;
		case 4:
			send_raw(&in, ch);
			break;
		case 5:
			send_op(&in, ch);
			break;
		case 6:
			drain_host();
			break;
		case 7: /* open an offered sub-channel */
			for (unsigned i = 0; i < su.nr_offers; i++) {
				uint32_t r = su.offers[i].relid;

				if (su.offers[i].subidx && !su.offers[i].rescinded && r <= SU_MAX_RELID &&
				    !su.chans[r].open) {
					(void)su_open(r);
					break;
				}
			}
			break;
		case 8:
			if (in_u8(&in) & 1) {
				su_close(ch);
			} else {
				/* Corrupt the guest's write index: the channel breaks. */
				su.chans[ch].tx.ctrl->write_index = in_u32(&in);
				vmbus_server_signal(su.srv, su.chans[ch].conn_id);
			}
			break;
		case 9:
			host_action(&in);
			break;
		case 10:
			if (in_u8(&in) & 1) {
				su_unload();
				su.nr_offers = 0;
				su_connect();
			}
			relid = bring_up(&in, in_u8(&in) & 1);
			break;
		default:
			su_poll(0);
			break;
		}
	}
	drain_host();
	(void)relid;
	su_teardown(in_u8(&in) & 1);
	return 0;
}
