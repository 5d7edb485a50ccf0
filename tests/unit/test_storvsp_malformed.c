/* Storage VSP against a hostile guest: short vstor packets, bad GPA-direct
 * headers (range counts, offsets, lengths, PFN lists, PFNs outside RAM),
 * transfer lengths beyond the buffer, CDB lengths, LUNs and targets out of
 * range, unexpected packet types, and random garbage. Every bad request
 * gets a proper error (or is dropped when it cannot be answered), nothing
 * outside the described buffer is touched, and the channel keeps working. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SU_ASSERT(x) assert_true(x)
#include "test_storvsp_util.h"

#define DISK (4u << 20)

static struct memdisk *d0;
static uint32_t relid;

static int setup(void **state)
{
	su_setup(NULL);
	d0 = su_add_disk(0, 0, DISK, 512, false);
	relid = su_bring_up(0);
	return 0;
}

static int teardown(void **state)
{
	su_teardown(false);
	return 0;
}

/* The channel still answers a normal INQUIRY. */
static void healthy(void)
{
	uint8_t inq[6] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };
	struct vstor_packet p = su_scsi(relid, 0, inq, 6, VMSCSI_DATA_IN, 500, 36);

	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(p.srb.data_transfer_length, 36);
}

/* A GPA-direct packet with a hand-made range area (`rlen` bytes, padded to
 * 8) and `range_cnt`. */
static int send_gpa_raw(uint64_t id, uint32_t range_cnt, const void *ranges, uint32_t rlen,
			const void *payload, uint32_t plen)
{
	struct su_chan *c = &su.chans[relid];
	uint8_t hdr[24 + 8 * 1024];
	struct vmbus_pkt_gpa_direct g;
	struct ring_iov iov = { payload, plen };
	uint32_t hlen = 24 + ((rlen + 7) & ~7u);
	bool sig;
	int ret;

	assert_true(rlen <= 8 * 1024);
	memset(hdr, 0, sizeof(hdr));
	memset(&g, 0, sizeof(g));
	g.d.type = VMBUS_PKT_DATA_USING_GPA_DIRECT;
	g.d.flags = VMBUS_PKT_FLAG_COMPLETION_REQUESTED;
	g.d.trans_id = id;
	g.range_cnt = range_cnt;
	memcpy(hdr, &g, sizeof(g));
	memcpy(hdr + 24, ranges, rlen);
	ret = ring_write(&c->tx, hdr, hlen, &iov, 1, &sig);
	if (!ret)
		vmbus_server_signal(su.srv, c->conn_id);
	return ret;
}

static struct vstor_packet reply(uint64_t id)
{
	struct su_pkt p;

	assert_true(su_wait(relid, &p));
	assert_int_equal(p.type, VMBUS_PKT_COMP);
	assert_int_equal(p.trans_id, id);
	assert_int_equal(p.len, VSTOR_PACKET_SIZE);
	return su_vstor(&p);
}

static void no_reply(void)
{
	struct su_pkt p;

	su_poll(0);
	assert_false(su_recv(relid, &p));
}

static void test_short_packets(void **state)
{
	static const uint32_t lens[] = { 0, 3, 4, 12, 20, 47 };
	uint8_t junk[64];

	memset(junk, 0, sizeof(junk));
	junk[0] = VSTOR_OP_EXECUTE_SRB;
	for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct vstor_packet p;

		assert_int_equal(su_send_inband(relid, 40 + i, junk, lens[i], true), 0);
		p = reply(40 + i);
		assert_int_equal(p.operation, VSTOR_OP_COMPLETE_IO);
		assert_int_equal(p.status, VSTOR_STATUS_INVALID_PARAMETER);
	}
	/* 48 bytes (pre-WIN8 form) is accepted. */
	{
		uint8_t tur[6] = { 0 };
		struct vstor_packet req = su_srb(0, tur, 6, VMSCSI_DATA_NONE, 0);

		assert_int_equal(su_send_inband(relid, 60, &req, 48, true), 0);
		assert_int_equal(reply(60).srb.srb_status, SRB_STATUS_SUCCESS);
	}
	healthy();
}

/* A write whose buffer is described badly: refused with INVALID_REQUEST,
 * nothing written. */
static void bad_write(uint64_t id, uint32_t range_cnt, const void *ranges, uint32_t rlen,
		      uint32_t dtl)
{
	uint8_t c[10] = { SCSI_WRITE_10, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
	struct vstor_packet req = su_srb(0, c, 10, VMSCSI_DATA_OUT, dtl), p;
	unsigned writes = d0->nwrites;

	assert_int_equal(send_gpa_raw(id, range_cnt, ranges, rlen, &req, 64), 0);
	p = reply(id);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	assert_int_equal(p.srb.data_transfer_length, 0);
	assert_int_equal(p.status, VSTOR_STATUS_INVALID_PARAMETER);
	assert_int_equal(d0->nwrites, writes);
}

struct range1 {
	uint32_t count, offset;
	uint64_t pfn[4];
};

static void test_bad_gpa_ranges(void **state)
{
	struct range1 r = { 4096, 0, { SU_DATA_PFN, SU_DATA_PFN + 1, 0, 0 } };

	/* Range count 0, or more than the host accepts. */
	bad_write(1, 0, &r, 16, 4096);
	bad_write(2, 17, &r, 16, 4096);
	/* Two ranges announced, one present. */
	bad_write(3, 2, &r, 16, 4096);
	/* Byte offset of a whole page or more; zero length. */
	r.offset = 4096;
	bad_write(4, 1, &r, 16, 4096);
	r.offset = 0;
	r.count = 0;
	bad_write(5, 1, &r, 16, 4096);
	/* Offset + count needs two PFNs, one given. */
	r.count = 4096;
	r.offset = 8;
	bad_write(6, 1, &r, 16, 4096);
	/* PFN outside guest RAM, partly outside, absurd. */
	r.offset = 0;
	r.pfn[0] = SU_MEM_PAGES + 5;
	bad_write(7, 1, &r, 16, 4096);
	r.pfn[0] = 0xffffffffffffffffull;
	bad_write(8, 1, &r, 16, 4096);
	r.pfn[0] = (1ull << 52) - 1;
	bad_write(9, 1, &r, 16, 4096);
	r.count = 8192;
	r.pfn[0] = SU_MEM_PAGES - 1;
	r.pfn[1] = SU_MEM_PAGES;
	bad_write(10, 1, &r, 24, 8192);
	/* data_transfer_length beyond what the ranges describe. */
	r.count = 4096;
	r.pfn[0] = SU_DATA_PFN;
	bad_write(11, 1, &r, 16, 8192);
	/* More pages than the host's maximum transfer. */
	{
		static uint64_t big[1 + 600];
		uint32_t hdr[2] = { 600 * 4096, 0 };

		memcpy(big, hdr, 8);
		for (unsigned i = 0; i < 600; i++)
			big[1 + i] = SU_DATA_PFN + i;
		bad_write(12, 1, big, 8 * 601, 4096);
	}
	healthy();
}

/* A GPA-direct packet whose payload offset leaves no room for the header. */
static void test_gpa_header_missing(void **state)
{
	uint8_t c[10] = { SCSI_WRITE_10, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
	struct vstor_packet req = su_srb(0, c, 10, VMSCSI_DATA_OUT, 4096);
	struct su_chan *ch = &su.chans[relid];
	bool sig;

	assert_int_equal(ring_send(&ch->tx, VMBUS_PKT_DATA_USING_GPA_DIRECT,
				   VMBUS_PKT_FLAG_COMPLETION_REQUESTED, 70, &req, 64, &sig),
			 0);
	vmbus_server_signal(su.srv, ch->conn_id);
	assert_int_equal(reply(70).srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	healthy();
}

static void test_transfer_lengths(void **state)
{
	uint8_t c[10] = { SCSI_READ_10, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
	struct vstor_packet req, p;
	uint64_t pfns[2] = { SU_DATA_PFN + 10, SU_DATA_PFN + 11 };

	/* Inband request with a transfer length: no buffer to use. */
	req = su_srb(0, c, 10, VMSCSI_DATA_IN, 4096);
	assert_int_equal(su_send_inband(relid, 80, &req, 64, true), 0);
	assert_int_equal(reply(80).srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* Longer than max_transfer_bytes. */
	req = su_srb(0, c, 10, VMSCSI_DATA_IN, STORVSP_DEFAULT_MAX_TRANSFER + 4096);
	assert_int_equal(su_send_gpa(relid, 81, &req, 64, 0, 4096, pfns, 1), 0);
	assert_int_equal(reply(81).srb.srb_status, SRB_STATUS_INVALID_REQUEST);
	/* A buffer smaller than the CDB's transfer: SCSI error, and the bytes
	 * after the buffer in the same page stay untouched. */
	memset(su_data(10), 0xcd, 8192);
	req = su_srb(0, c, 10, VMSCSI_DATA_IN, 2048);
	assert_int_equal(su_send_gpa(relid, 82, &req, 64, 0, 2048, pfns, 1), 0);
	p = reply(82);
	assert_int_equal(p.srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(p.srb.sense_data[12], 0x24);
	assert_int_equal(su_data(10)[2048], 0xcd);
	/* Ranges larger than data_transfer_length: only the first dtl bytes
	 * are used (the second page stays untouched). */
	req = su_srb(0, c, 10, VMSCSI_DATA_IN, 4096);
	assert_int_equal(su_send_gpa(relid, 83, &req, 64, 0, 8192, pfns, 2), 0);
	p = reply(83);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(p.srb.data_transfer_length, 4096);
	assert_int_equal(su_data(10)[0], 0);
	assert_int_equal(su_data(11)[0], 0xcd);
	healthy();
}

static void test_cdb_lun_target(void **state)
{
	uint8_t c[16] = { SCSI_TEST_UNIT_READY };
	struct vstor_packet req, p;

	/* CDB length 0 and 17. */
	req = su_srb(0, c, 6, VMSCSI_DATA_NONE, 0);
	req.srb.cdb_length = 0;
	assert_int_equal(su_scsi_pkt(relid, 90, &req, 0, 0).srb.srb_status,
			 SRB_STATUS_INVALID_REQUEST);
	req.srb.cdb_length = 17;
	assert_int_equal(su_scsi_pkt(relid, 91, &req, 0, 0).srb.srb_status,
			 SRB_STATUS_INVALID_REQUEST);
	req.srb.cdb_length = 255;
	assert_int_equal(su_scsi_pkt(relid, 92, &req, 0, 0).srb.srb_status,
			 SRB_STATUS_INVALID_REQUEST);
	/* LUNs beyond 63 and other targets/paths: no such LUN. */
	for (unsigned lun = 64; lun < 256; lun += 64) {
		req = su_srb((uint8_t)lun, c, 6, VMSCSI_DATA_NONE, 0);
		p = su_scsi_pkt(relid, 93, &req, 0, 0);
		assert_int_equal(p.srb.srb_status, SRB_STATUS_INVALID_LUN);
		assert_int_equal(p.srb.lun, lun);
	}
	req = su_srb(0, c, 6, VMSCSI_DATA_NONE, 0);
	req.srb.path_id = 3;
	assert_int_equal(su_scsi_pkt(relid, 94, &req, 0, 0).srb.srb_status, SRB_STATUS_INVALID_LUN);
	req.srb.path_id = 0;
	req.srb.target_id = 200;
	assert_int_equal(su_scsi_pkt(relid, 95, &req, 0, 0).srb.srb_status, SRB_STATUS_INVALID_LUN);
	/* INQUIRY there: a well-formed "no device" answer. */
	memset(c, 0, sizeof(c));
	c[0] = SCSI_INQUIRY;
	c[4] = 36;
	req = su_srb(255, c, 6, VMSCSI_DATA_IN, 36);
	p = su_scsi_pkt(relid, 96, &req, 0, 36);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(su_data(0)[0], 0x7f);
	/* Bytes of the CDB beyond cdb_length are ignored. */
	memset(c, 0xff, sizeof(c));
	c[0] = SCSI_TEST_UNIT_READY;
	c[5] = 0;
	req = su_srb(0, c, 6, VMSCSI_DATA_NONE, 0);
	assert_int_equal(su_scsi_pkt(relid, 97, &req, 0, 0).srb.srb_status, SRB_STATUS_SUCCESS);
	healthy();
}

static void test_unexpected_packets(void **state)
{
	struct su_chan *ch = &su.chans[relid];
	struct vstor_packet p;
	bool sig;

	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_EXECUTE_SRB;
	/* Completions, transfer-page and GPADL packets from the guest are
	 * dropped without an answer. */
	static const uint16_t types[] = { VMBUS_PKT_COMP, VMBUS_PKT_DATA_USING_XFER_PAGES,
					  VMBUS_PKT_DATA_USING_GPADL, VMBUS_PKT_SYNCH, 0, 0x7777 };
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		assert_int_equal(ring_send(&ch->tx, types[i], VMBUS_PKT_FLAG_COMPLETION_REQUESTED,
					   100 + i, &p, 64, &sig),
				 0);
		vmbus_server_signal(su.srv, ch->conn_id);
		no_reply();
	}
	/* Host-to-guest operations sent by the guest. */
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_ENUMERATE_BUS;
	assert_int_equal(su_init_op(relid, &p, 64).status, VSTOR_STATUS_INVALID_DEVICE_REQUEST);
	p.operation = VSTOR_OP_REMOVE_DEVICE;
	assert_int_equal(su_init_op(relid, &p, 64).status, VSTOR_STATUS_INVALID_DEVICE_REQUEST);
	p.operation = 0xffffffffu;
	assert_int_equal(su_init_op(relid, &p, 64).status, VSTOR_STATUS_INVALID_DEVICE_REQUEST);
	/* A longer packet than 64 bytes: the rest is ignored. */
	{
		uint8_t big[200] = { 0 };
		uint8_t inq[6] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };
		struct vstor_packet req = su_srb(0, inq, 6, VMSCSI_DATA_NONE, 0);

		memcpy(big, &req, sizeof(req));
		memset(big + 64, 0xee, sizeof(big) - 64);
		assert_int_equal(su_send_inband(relid, 120, big, sizeof(big), true), 0);
		assert_int_equal(reply(120).srb.srb_status, SRB_STATUS_SUCCESS);
	}
	healthy();
}

/* A corrupt ring (write index out of range) breaks the channel, without
 * touching anything else; reopening recovers. */
static void test_corrupt_ring(void **state)
{
	struct su_chan *ch = &su.chans[relid];

	ch->tx.ctrl->write_index = 0xfffffff0u;
	vmbus_server_signal(su.srv, ch->conn_id);
	no_reply();
	su_close(relid);
	assert_true(su_open(relid));
	assert_true(su_storvsc_init(relid, su_linux_versions, 3, false).ok);
	healthy();
}

/* Random packets of random types and contents, some with plausible vstor
 * headers: the VSP must survive and keep answering. */
static void test_random_garbage(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint8_t buf[600];

	for (unsigned n = 0; n < 3000; n++) {
		struct su_chan *ch = &su.chans[relid];
		uint32_t len;
		struct su_pkt p;
		bool sig;
		int ret;

		for (unsigned i = 0; i < sizeof(buf); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
		}
		len = buf[0] % 200;
		if (buf[1] & 1) {
			/* A plausible SRB with random CDB and fields. */
			struct vstor_packet req;

			memcpy(&req, buf + 8, sizeof(req));
			req.operation = VSTOR_OP_EXECUTE_SRB;
			req.srb.lun %= 4;
			req.srb.path_id = 0;
			req.srb.target_id = 0;
			req.srb.cdb_length = (uint8_t)(1 + buf[2] % 16);
			req.srb.data_transfer_length %= 16384;
			memcpy(buf + 8, &req, sizeof(req));
			len = 64;
		}
		if (buf[3] % 3 == 0) {
			struct range1 r = { (uint32_t)(buf[4] | buf[5] << 8) % 20000, buf[6] % 5000,
					    { SU_DATA_PFN + buf[7] % 64, SU_DATA_PFN + buf[9] % 64,
					      SU_DATA_PFN + buf[10], buf[11] } };

			ret = send_gpa_raw(n, buf[12] % 4, &r, 8 + 8 * (buf[13] % 5), buf + 8, len);
		} else {
			ret = ring_send(&ch->tx, buf[3] % 5 ? VMBUS_PKT_DATA_INBAND : buf[14] % 16,
					buf[15] & 1, n, buf + 8, len, &sig);
			if (!ret)
				vmbus_server_signal(su.srv, ch->conn_id);
		}
		su_poll(0);
		while (su_recv(relid, &p))
			;
		if (ret == -EAGAIN)
			continue;
		assert_int_equal(ret, 0);
	}
	/* The disk's content was changed only by writes that were valid;
	 * whatever happened, the VSP still works. */
	while (true) {
		struct su_pkt p;

		su_poll(0);
		if (!su_recv(relid, &p))
			break;
	}
	/* Garbage may have sent BEGIN_INITIALIZATION; initialize again. */
	assert_true(su_storvsc_init(relid, su_linux_versions, 3, false).ok);
	healthy();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_short_packets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_gpa_ranges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gpa_header_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transfer_lengths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cdb_lun_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unexpected_packets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_ring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_garbage, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
