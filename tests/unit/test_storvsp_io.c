/* Storage VSP I/O path: the Linux scan sequence, READ/WRITE through guest
 * memory (contiguous, scattered, offset, largest transfer), SCSI errors
 * with sense, absent LUNs and targets, concurrent I/O on worker threads,
 * back-pressure from a full disk queue and from a full guest ring, and
 * drain. A fake storvsc guest drives the real VMBus server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SU_ASSERT(x) assert_true(x)
#include "block/queue.h"
#include "test_storvsp_util.h"

#define DISK (8u << 20)
#define NBLK (DISK / 512)

static struct memdisk *d0, *d1;

static int setup(void **state)
{
	su_setup(NULL);
	d0 = su_add_disk(0, 0, DISK, 512, false);
	d1 = su_add_disk(0, 1, DISK, 4096, true);
	return 0;
}

static int setup_write_behind(void **state)
{
	struct storvsp_config c;

	su_config_default(&c);
	c.inline_io = false;
	c.io_threads = 4;
	c.queue_depth = 8;
	c.write_behind = BLKQ_DEFAULT_WRITE_BEHIND;
	su_setup(&c);
	d0 = su_add_disk(0, 0, DISK, 512, false);
	d1 = NULL;
	return 0;
}

static int setup_threads(void **state)
{
	struct storvsp_config c;

	su_config_default(&c);
	c.inline_io = false;
	c.io_threads = 4;
	c.queue_depth = 8;
	c.write_behind = 0; /* writes complete when the disk has them */
	su_setup(&c);
	d0 = su_add_disk(0, 0, DISK, 512, false);
	d1 = NULL;
	return 0;
}

static int teardown(void **state)
{
	su_teardown(false);
	return 0;
}

static void cdb10(uint8_t *c, uint8_t op, uint32_t lba, uint16_t n)
{
	memset(c, 0, 10);
	c[0] = op;
	scsi_put_be32(c + 2, lba);
	scsi_put_be16(c + 7, n);
}

/* What Linux does when it finds the controller and its disks. */
static void test_scan_sequence(void **state)
{
	uint8_t c[16];
	struct vstor_packet p;
	uint32_t relid = su_bring_up(0);
	struct vstor_packet req;

	/* INQUIRY LUN 0 (36 bytes) on target 0. */
	memset(c, 0, 6);
	c[0] = SCSI_INQUIRY;
	c[4] = 36;
	p = su_scsi(relid, 0, c, 6, VMSCSI_DATA_IN, 0, 36);
	assert_int_equal(p.operation, VSTOR_OP_COMPLETE_IO);
	assert_int_equal(p.status, 0);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(p.srb.scsi_status, 0);
	assert_int_equal(p.srb.data_transfer_length, 36);
	assert_int_equal(p.srb.lun, 0);
	assert_int_equal(p.srb.cdb_length, 6);
	assert_int_equal(su_data(0)[0], 0);
	assert_memory_equal(su_data(0) + 8, "Msft    Virtual Disk    ", 24);
	/* Other targets and channels: LUN 0 is "not present" (PQ 3) and
	 * REPORT LUNS is empty. */
	for (uint8_t path = 0; path < 2; path++) {
		for (uint8_t tgt = 0; tgt < 2; tgt++) {
			if (!path && !tgt)
				continue;
			req = su_srb(0, c, 6, VMSCSI_DATA_IN, 36);
			req.srb.path_id = path;
			req.srb.target_id = tgt;
			p = su_scsi_pkt(relid, 9, &req, 0, 36);
			assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
			assert_int_equal(su_data(0)[0], 0x7f);
		}
	}
	{
		uint8_t rl[12] = { SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };

		req = su_srb(0, rl, 12, VMSCSI_DATA_IN, 4096);
		req.srb.target_id = 1;
		p = su_scsi_pkt(relid, 10, &req, 0, 4096);
		assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
		assert_int_equal(p.srb.data_transfer_length, 8);
		assert_int_equal(scsi_get_be32(su_data(0)), 0);
		/* Target 0: LUNs 0 and 1. */
		p = su_scsi(relid, 0, rl, 12, VMSCSI_DATA_IN, 0, 4096);
		assert_int_equal(p.srb.data_transfer_length, 24);
		assert_int_equal(scsi_get_be32(su_data(0)), 16);
		assert_int_equal(su_data(0)[9], 0);
		assert_int_equal(su_data(0)[17], 1);
	}
	/* Absent LUN 2: INQUIRY says PQ 3; anything else is INVALID_LUN. */
	p = su_scsi(relid, 2, c, 6, VMSCSI_DATA_IN, 0, 36);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(su_data(0)[0], 0x7f);
	memset(c, 0, 6);
	p = su_scsi(relid, 2, c, 6, VMSCSI_DATA_NONE, 0, 0);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_INVALID_LUN);
	assert_int_equal(p.srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(p.srb.sense_info_length, 0);
	assert_int_equal(p.status, VSTOR_STATUS_DEVICE_DOES_NOT_EXIST);
	/* VPD pages, capacity, mode sense for LUN 0. */
	memset(c, 0, 6);
	c[0] = SCSI_INQUIRY;
	c[1] = 1;
	c[4] = 255;
	p = su_scsi(relid, 0, c, 6, VMSCSI_DATA_IN, 0, 255);
	assert_int_equal(p.srb.data_transfer_length, 10);
	c[2] = 0x89; /* not supported: error, which Linux reads as "no page" */
	p = su_scsi(relid, 0, c, 6, VMSCSI_DATA_IN, 0, 255);
	assert_int_equal(p.srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(p.srb.data_transfer_length, 0);
	memset(c, 0, 16);
	c[0] = SCSI_SERVICE_ACTION_IN_16;
	c[1] = 0x10;
	c[13] = 32;
	p = su_scsi(relid, 0, c, 16, VMSCSI_DATA_IN, 0, 32);
	assert_int_equal(p.srb.data_transfer_length, 32);
	assert_int_equal(scsi_get_be64(su_data(0)), NBLK - 1);
	p = su_scsi(relid, 1, c, 16, VMSCSI_DATA_IN, 0, 32);
	assert_int_equal(scsi_get_be64(su_data(0)), DISK / 4096 - 1);
	assert_int_equal(scsi_get_be32(su_data(0) + 8), 4096);
	memset(c, 0, 6);
	c[0] = SCSI_MODE_SENSE_6;
	c[2] = 0x3f;
	c[4] = 192;
	p = su_scsi(relid, 1, c, 6, VMSCSI_DATA_IN, 0, 192);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(su_data(0)[2] & 0x80, 0x80); /* LUN 1 is read-only */
}

static void test_round_trip(void **state)
{
	uint8_t c[10];
	struct vstor_packet p;
	uint32_t relid = su_bring_up(0);

	for (unsigned i = 0; i < 16 * 4096; i++)
		su_data(0)[i] = (uint8_t)(i * 31 + 7);
	cdb10(c, SCSI_WRITE_10, 2048, 128);
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_OUT, 0, 65536);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(p.srb.data_transfer_length, 65536);
	assert_memory_equal(d0->data + 2048 * 512, su_data(0), 65536);
	memset(su_data(100), 0, 65536);
	cdb10(c, SCSI_READ_10, 2048, 128);
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_IN, 100, 65536);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_memory_equal(su_data(100), su_data(0), 65536);
	/* SYNCHRONIZE CACHE reaches the disk. */
	memset(c, 0, 10);
	c[0] = SCSI_SYNCHRONIZE_CACHE_10;
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_NONE, 0, 0);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(d0->nflushes, 1);
}

/* Scattered pages, a byte offset into the first page, a partial last
 * page: the host maps exactly those bytes. */
static void test_scattered_pages(void **state)
{
	uint8_t c[10];
	uint64_t pfns[5] = { SU_DATA_PFN + 40, SU_DATA_PFN + 7, SU_DATA_PFN + 300, SU_DATA_PFN + 8,
			     SU_DATA_PFN + 1 };
	struct vstor_packet req, p;
	struct su_pkt r;
	uint32_t relid = su_bring_up(0);
	uint32_t off = 512, len = 4 * 4096; /* 3.5 pages + 512 into the 5th */
	uint8_t expect[4 * 4096];

	for (unsigned i = 0, k = 0; i < 5; i++) {
		uint32_t s = i ? 0 : off;
		uint32_t n = 4096 - s;

		if (k + n > len)
			n = len - k;
		for (uint32_t j = 0; j < n; j++)
			su.mem[pfns[i] * 4096 + s + j] = expect[k + j] = (uint8_t)(k + j + i);
		k += n;
	}
	cdb10(c, SCSI_WRITE_10, 8, 32);
	req = su_srb(0, c, 10, VMSCSI_DATA_OUT, len);
	assert_int_equal(su_send_gpa(relid, 77, &req, 64, off, len, pfns, 5), 0);
	assert_true(su_wait(relid, &r));
	p = su_vstor(&r);
	assert_int_equal(r.trans_id, 77);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_memory_equal(d0->data + 8 * 512, expect, len);
	/* Read it back into the same scattered pages, cleared first. */
	for (unsigned i = 0; i < 5; i++)
		memset(su.mem + pfns[i] * 4096, 0, 4096);
	cdb10(c, SCSI_READ_10, 8, 32);
	req = su_srb(0, c, 10, VMSCSI_DATA_IN, len);
	assert_int_equal(su_send_gpa(relid, 78, &req, 64, off, len, pfns, 5), 0);
	assert_true(su_wait(relid, &r));
	assert_int_equal(su_vstor(&r).srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(su.mem[pfns[0] * 4096 + off], expect[0]);
	assert_int_equal(su.mem[pfns[0] * 4096 + off - 1], 0); /* before the range: untouched */
	assert_memory_equal(su.mem + pfns[2] * 4096, expect + 3584 + 4096, 4096);
	assert_int_equal(su.mem[pfns[4] * 4096 + 511], expect[len - 1]);
	assert_int_equal(su.mem[pfns[4] * 4096 + 512], 0); /* after the range: untouched */
}

/* The largest transfer the host announced. */
static void test_max_transfer(void **state)
{
	uint8_t c[10];
	struct vstor_packet p;
	uint32_t relid = su_bring_up(0);
	uint32_t len = STORVSP_DEFAULT_MAX_TRANSFER;

	memset(su_data(0), 0x3c, len);
	cdb10(c, SCSI_WRITE_10, 0, (uint16_t)(len / 512));
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_OUT, 0, len);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(p.srb.data_transfer_length, len);
	assert_int_equal(d0->data[len - 1], 0x3c);
	/* Bigger than announced: refused. */
	memset(c, 0, 10);
	cdb10(c, SCSI_WRITE_10, 0, (uint16_t)(len / 512 + 8));
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_OUT, 0, len + 4096);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_INVALID_REQUEST);
}

/* SCSI errors travel as CHECK CONDITION with autosense. */
static void test_errors_with_sense(void **state)
{
	uint8_t c[10];
	struct vstor_packet req, p;
	uint32_t relid = su_bring_up(0);

	cdb10(c, SCSI_READ_10, NBLK, 1);
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_IN, 0, 512);
	assert_int_equal(p.status, 0);
	assert_int_equal(p.srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(p.srb.sense_info_length, 18);
	assert_int_equal(p.srb.sense_data[0], 0x70);
	assert_int_equal(p.srb.sense_data[2], 5);
	assert_int_equal(p.srb.sense_data[12], 0x21);
	assert_int_equal(p.srb.data_transfer_length, 0);
	/* A guest with a smaller sense buffer gets a truncated copy. */
	req = su_srb(0, c, 10, VMSCSI_DATA_IN, 512);
	req.srb.sense_info_length = 8;
	p = su_scsi_pkt(relid, 3, &req, 0, 512);
	assert_int_equal(p.srb.sense_info_length, 8);
	assert_int_equal(p.srb.sense_data[12], 0);
	/* No sense room at all: no autosense flag. */
	req.srb.sense_info_length = 0;
	p = su_scsi_pkt(relid, 3, &req, 0, 512);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_ERROR);
	/* Write to the read-only LUN. */
	cdb10(c, SCSI_WRITE_10, 0, 1);
	p = su_scsi(relid, 1, c, 10, VMSCSI_DATA_OUT, 0, 4096);
	assert_int_equal(p.srb.sense_data[2], 7);
	assert_int_equal(p.srb.sense_data[12], 0x27);
	/* I/O error from the image. */
	d0->fail_read = -EIO;
	cdb10(c, SCSI_READ_10, 0, 1);
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_IN, 0, 512);
	assert_int_equal(p.srb.sense_data[2], 3);
	assert_int_equal(p.srb.sense_data[12], 0x11);
	d0->fail_read = 0;
	/* Unknown opcode. */
	{
		uint8_t mi[12] = { SCSI_MAINTENANCE_IN, 0x0c, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0 };

		p = su_scsi(relid, 0, mi, 12, VMSCSI_DATA_IN, 0, 512);
		assert_int_equal(p.srb.sense_data[12], 0x20);
	}
}

/* Worker threads: many requests in flight on several channels; each
 * completes once, on its own channel, with the right data. */
static void test_concurrent(void **state)
{
	enum { N = 48 };
	struct vstor_packet req;
	uint32_t relid = su_bring_up(0), sub;
	bool seen[2][N];
	unsigned got = 0, sent[2] = { 0, 0 };

	{
		struct vstor_packet p;

		memset(&p, 0, sizeof(p));
		p.operation = VSTOR_OP_CREATE_SUB_CHANNELS;
		p.sub_channel_count = 1;
		assert_int_equal(su_init_op(relid, &p, 64).status, 0);
	}
	sub = su_relid(0, 1);
	assert_true(su_open(sub));
	memset(seen, 0, sizeof(seen));
	for (unsigned i = 0; i < N; i++)
		memset(su_data(i), (int)i + 1, 4096);
	/* Writes: request i writes page i to block i*8; half on each channel. */
	for (unsigned i = 0; i < N; i++) {
		uint8_t c[10];
		uint64_t pfn = SU_DATA_PFN + i;
		uint32_t ch = i & 1 ? sub : relid;

		cdb10(c, SCSI_WRITE_10, i * 8, 8);
		req = su_srb(0, c, 10, VMSCSI_DATA_OUT, 4096);
		while (su_send_gpa(ch, 1 + i, &req, 64, 0, 4096, &pfn, 1) == -EAGAIN)
			su_poll(5);
		sent[i & 1]++;
	}
	while (got < N) {
		struct su_pkt r;
		bool any = false;

		for (unsigned k = 0; k < 2; k++) {
			uint32_t ch = k ? sub : relid;

			while (su_recv(ch, &r)) {
				unsigned id = (unsigned)r.trans_id - 1;

				assert_true(id < N);
				assert_int_equal(id & 1, k); /* completed on its channel */
				assert_false(seen[k][id]);
				seen[k][id] = true;
				assert_int_equal(su_vstor(&r).srb.srb_status, SRB_STATUS_SUCCESS);
				got++;
				any = true;
			}
		}
		if (!any)
			su_poll(10);
	}
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(d0->data[i * 4096 + 17], i + 1);
	assert_int_equal(sent[0] + sent[1], N);
}

/* A write the disk takes without waiting is done on the loop thread and
 * counted as such in the disk list; a FUA write is not. */
static void test_cached_writes(void **state)
{
	struct storvsp_lun_info li;
	uint32_t relid = su_bring_up(0);
	unsigned got = 0;

	d0->nowait_writes = true;
	for (unsigned i = 0; i < 2; i++) {
		uint8_t c[10];
		uint64_t pfn = SU_DATA_PFN + i;
		struct vstor_packet req;

		memset(su_data(i), 0x41 + (int)i, 4096);
		cdb10(c, SCSI_WRITE_10, i * 8, 8);
		c[1] = i ? 0x08 : 0; /* the second one FUA */
		req = su_srb(0, c, 10, VMSCSI_DATA_OUT, 4096);
		assert_int_equal(su_send_gpa(relid, 1 + i, &req, 64, 0, 4096, &pfn, 1), 0);
	}
	for (int tries = 0; tries < 500 && got < 2; tries++) {
		struct su_pkt r;

		su_poll(10);
		while (su_recv(relid, &r)) {
			assert_int_equal(su_vstor(&r).srb.srb_status, SRB_STATUS_SUCCESS);
			got++;
		}
	}
	assert_int_equal(got, 2);
	assert_int_equal(d0->data[100], 0x41);
	assert_int_equal(d0->data[4096 + 100], 0x42);
	assert_int_equal(d0->fua_writes, 1);
	assert_int_equal(storvsp_list(su.sv, &li, 1), 1);
	assert_int_equal(li.writes, 2);
	assert_int_equal(li.cached_writes, 1);
	assert_int_equal(li.cached_reads, 0);
}

/* Write-behind: a write the disk would make wait is answered at once; a
 * SYNCHRONIZE CACHE after it is answered only once the disk has it. */
static void test_write_behind(void **state)
{
	struct storvsp_lun_info li;
	uint32_t relid = su_bring_up(0);
	uint64_t pfn = SU_DATA_PFN;
	struct vstor_packet req;
	struct su_pkt r;
	uint8_t c[10];

	md_set_gate(d0, true);
	memset(su_data(0), 0x47, 4096);
	cdb10(c, SCSI_WRITE_10, 16, 8);
	req = su_srb(0, c, 10, VMSCSI_DATA_OUT, 4096);
	assert_int_equal(su_send_gpa(relid, 1, &req, 64, 0, 4096, &pfn, 1), 0);
	assert_true(su_wait(relid, &r));
	assert_int_equal(r.trans_id, 1);
	assert_int_equal(su_vstor(&r).srb.srb_status, SRB_STATUS_SUCCESS);
	md_wait_waiting(d0, 1);
	assert_int_equal(d0->data[16 * 512], 0);
	cdb10(c, SCSI_SYNCHRONIZE_CACHE_10, 0, 0);
	req = su_srb(0, c, 10, VMSCSI_DATA_NONE, 0);
	assert_int_equal(su_send_inband(relid, 2, &req, 64, true), 0);
	su_poll(20);
	assert_false(su_recv(relid, &r));
	assert_int_equal(d0->nflushes, 0);
	md_set_gate(d0, false);
	assert_true(su_wait(relid, &r));
	assert_int_equal(r.trans_id, 2);
	assert_int_equal(su_vstor(&r).srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(d0->nflushes, 1);
	assert_int_equal(d0->data[16 * 512], 0x47);
	assert_int_equal(storvsp_list(su.sv, &li, 1), 1);
	assert_int_equal(li.writes, 1);
	assert_int_equal(li.write_behind, 1);
	assert_int_equal(li.write_behind_errors, 0);
}

/* A full disk queue: the VSP leaves requests in the ring and picks them up
 * when completions free slots. */
static void test_queue_back_pressure(void **state)
{
	enum { N = 20 }; /* queue depth 8 */
	struct storvsp_lun_info li;
	uint32_t relid = su_bring_up(0);
	unsigned got = 0;

	md_set_gate(d0, true);
	for (unsigned i = 0; i < N; i++) {
		uint8_t c[10];
		uint64_t pfn = SU_DATA_PFN + i;
		struct vstor_packet req;

		cdb10(c, SCSI_WRITE_10, i * 8, 8);
		req = su_srb(0, c, 10, VMSCSI_DATA_OUT, 4096);
		assert_int_equal(su_send_gpa(relid, 1 + i, &req, 64, 0, 4096, &pfn, 1), 0);
	}
	md_wait_waiting(d0, 4); /* 4 workers blocked, 4 more queued */
	assert_int_equal(storvsp_list(su.sv, &li, 1), 1);
	assert_int_equal(li.inflight, 8);
	/* The rest is still in the guest's ring. */
	assert_true(su_tx_pending(relid) > 0);
	md_set_gate(d0, false);
	while (got < N) {
		struct su_pkt r;

		if (su_recv(relid, &r)) {
			assert_int_equal(su_vstor(&r).srb.srb_status, SRB_STATUS_SUCCESS);
			got++;
		} else {
			su_poll(10);
		}
	}
	assert_int_equal(d0->nwrites, N);
	assert_int_equal(su_tx_pending(relid), 0);
}

/* The guest does not read its completions: the VSP keeps what does not fit
 * and stops pulling requests; when the guest reads, it resumes. */
static void test_guest_ring_full(void **state)
{
	uint8_t inq[6] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };
	struct vstor_packet req = su_srb(0, inq, 6, VMSCSI_DATA_NONE, 0);
	uint32_t relid;
	unsigned sent = 0, got = 0;
	struct su_pkt r;

	su.ring_pages = 2; /* one data page each way */
	relid = su_bring_up(0);
	/* Fill: every INQUIRY completes at once; ~46 completions fit. */
	while (su_send_inband(relid, 1 + sent, &req, 64, true) == 0)
		sent++;
	assert_true(sent > 40);
	/* The host's ring to us is full and it stopped pulling: the requests
	 * we sent are not all answered yet. */
	assert_true(su_tx_pending(relid) > 0);
	while (su_recv(relid, &r)) {
		assert_int_equal(r.trans_id, 1 + got);
		got++;
	}
	assert_int_equal(got, sent);
	/* And the channel still works. */
	assert_int_equal(su_send_inband(relid, 999, &req, 64, true), 0);
	assert_true(su_wait(relid, &r));
	assert_int_equal(r.trans_id, 999);
}

/* Requests without the completion flag run but get no answer. */
static void test_no_completion_requested(void **state)
{
	uint8_t c[10];
	struct vstor_packet req;
	struct su_pkt r;
	uint32_t relid = su_bring_up(0);

	cdb10(c, SCSI_SYNCHRONIZE_CACHE_10, 0, 0);
	req = su_srb(0, c, 10, VMSCSI_DATA_NONE, 0);
	assert_int_equal(su_send_inband(relid, 5, &req, 64, false), 0);
	su_poll(0);
	assert_false(su_recv(relid, &r));
	assert_int_equal(d0->nflushes, 1);
}

/* VM shutdown: drain waits for I/O in flight and flushes; nothing new is
 * pulled afterwards. */
static void test_drain(void **state)
{
	uint8_t c[10];
	struct vstor_packet req;
	struct storvsp_lun_info li;
	uint32_t relid = su_bring_up(0);
	struct su_pkt r;
	unsigned got = 0;

	d0->write_delay_us = 2000;
	for (unsigned i = 0; i < 6; i++) {
		uint64_t pfn = SU_DATA_PFN + i;

		cdb10(c, SCSI_WRITE_10, i * 8, 8);
		req = su_srb(0, c, 10, VMSCSI_DATA_OUT, 4096);
		assert_int_equal(su_send_gpa(relid, 1 + i, &req, 64, 0, 4096, &pfn, 1), 0);
	}
	storvsp_drain(su.sv);
	assert_int_equal(d0->nwrites, 6);
	assert_true(d0->nflushes >= 1);
	while (su_recv(relid, &r))
		got++;
	assert_int_equal(got, 6);
	assert_int_equal(storvsp_list(su.sv, &li, 1), 1);
	assert_int_equal(li.inflight, 0);
	assert_int_equal(li.writes, 6);
	assert_int_equal(li.bytes_written, 6 * 4096);
	/* Stopped: a new request stays in the ring. */
	cdb10(c, SCSI_READ_10, 0, 1);
	req = su_srb(0, c, 10, VMSCSI_DATA_NONE, 0);
	assert_int_equal(su_send_inband(relid, 50, &req, 64, true), 0);
	su_poll(0);
	assert_false(su_recv(relid, &r));
}

/* Closing the channel with I/O in flight: the close waits for the I/O
 * (the guest may reuse the pages), the completions are dropped, and a
 * reopened channel does not see them. */
static void test_close_with_io_in_flight(void **state)
{
	uint8_t c[10];
	struct vstor_packet req;
	struct su_pkt r;
	uint32_t relid = su_bring_up(0);

	d0->write_delay_us = 3000;
	for (unsigned i = 0; i < 6; i++) {
		uint64_t pfn = SU_DATA_PFN + i;

		cdb10(c, SCSI_WRITE_10, i * 8, 8);
		req = su_srb(0, c, 10, VMSCSI_DATA_OUT, 4096);
		assert_int_equal(su_send_gpa(relid, 1 + i, &req, 64, 0, 4096, &pfn, 1), 0);
	}
	su_close(relid);
	assert_int_equal(d0->nwrites, 6); /* finished before close returned */
	assert_true(su_open(relid));
	su_poll(0);
	assert_false(su_recv(relid, &r));
	assert_true(su_storvsc_init(relid, su_linux_versions, 3, false).ok);
	memset(c, 0, 10);
	c[0] = SCSI_TEST_UNIT_READY;
	assert_int_equal(su_scsi(relid, 0, c, 6, VMSCSI_DATA_NONE, 0, 0).srb.srb_status,
			 SRB_STATUS_SUCCESS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_scan_sequence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scattered_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_with_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_completion_requested, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_ring_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_queue_back_pressure, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_drain, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_drain, setup_write_behind, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind, setup_write_behind, teardown),
		cmocka_unit_test_setup_teardown(test_cached_writes, setup_threads, teardown),
		cmocka_unit_test_setup_teardown(test_close_with_io_in_flight, setup_threads, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
