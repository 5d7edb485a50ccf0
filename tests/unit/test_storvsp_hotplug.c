/* Storage VSP: hot add and hot remove of LUNs and online resize on a
 * running controller (ENUMERATE_BUS, unit attentions, what Linux's rescan
 * then sees), the API's argument checks, the LUN list, and adding disks
 * before the guest runs. */
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

/* The next packet must be an unsolicited ENUMERATE_BUS. */
static void expect_enumerate(void)
{
	struct su_pkt p;
	struct vstor_packet v;

	assert_true(su_recv(relid, &p));
	assert_int_equal(p.type, VMBUS_PKT_DATA_INBAND);
	assert_int_equal(p.flags, 0);
	assert_int_equal(p.trans_id, 0);
	assert_int_equal(p.len, VSTOR_PACKET_SIZE);
	v = su_vstor(&p);
	assert_int_equal(v.operation, VSTOR_OP_ENUMERATE_BUS);
	assert_int_equal(v.status, 0);
}

static void nothing_sent(void)
{
	struct su_pkt p;

	assert_false(su_recv(relid, &p));
}

static struct vstor_packet tur(uint8_t lun)
{
	uint8_t c[6] = { SCSI_TEST_UNIT_READY };

	return su_scsi(relid, lun, c, 6, VMSCSI_DATA_NONE, 0, 0);
}

static void expect_ua(struct vstor_packet p, uint8_t asc, uint8_t ascq)
{
	assert_int_equal(p.srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(p.srb.sense_data[2], SCSI_SK_UNIT_ATTENTION);
	assert_int_equal(p.srb.sense_data[12], asc);
	assert_int_equal(p.srb.sense_data[13], ascq);
}

static unsigned report_luns(uint16_t *out)
{
	uint8_t c[12] = { SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };
	struct vstor_packet p = su_scsi(relid, 0, c, 12, VMSCSI_DATA_IN, 0, 4096);
	unsigned n;

	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	n = scsi_get_be32(su_data(0)) / 8;
	for (unsigned i = 0; i < n; i++)
		out[i] = su_data(0)[8 + 8 * i + 1];
	return n;
}

static void test_hot_add(void **state)
{
	struct storvsp_lun_info li[4];
	uint16_t luns[8];
	struct memdisk *m;

	m = su_add_disk(0, 5, DISK, 512, false);
	/* The guest is told to rescan... */
	expect_enumerate();
	nothing_sent();
	/* ...which starts with TEST UNIT READY to the known LUNs: they report
	 * REPORTED LUNS DATA HAS CHANGED once. */
	expect_ua(tur(0), 0x3f, 0x0e);
	assert_int_equal(tur(0).srb.srb_status, SRB_STATUS_SUCCESS);
	/* The new LUN has no unit attention of its own and is listed. */
	assert_int_equal(tur(5).srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(report_luns(luns), 2);
	assert_int_equal(luns[0], 0);
	assert_int_equal(luns[1], 5);
	/* I/O to it works. */
	{
		uint8_t c[10] = { SCSI_WRITE_10, 0, 0, 0, 0, 9, 0, 0, 1, 0 };

		memset(su_data(3), 0x5e, 512);
		assert_int_equal(su_scsi(relid, 5, c, 10, VMSCSI_DATA_OUT, 3, 512).srb.srb_status,
				 SRB_STATUS_SUCCESS);
		assert_int_equal(m->data[9 * 512], 0x5e);
	}
	assert_int_equal(storvsp_list(su.sv, li, 4), 2);
	assert_int_equal(li[1].controller, 0);
	assert_int_equal(li[1].lun, 5);
	assert_string_equal(li[1].label, "mem");
	assert_string_equal(li[1].format, "raw");
	assert_int_equal(li[1].size, DISK);
	assert_int_equal(li[1].writes, 1);
}

/* REPORT LUNS clears the pending REPORTED LUNS DATA HAS CHANGED. */
static void test_report_luns_clears_ua(void **state)
{
	uint16_t luns[8];

	su_add_disk(0, 1, DISK, 512, false);
	expect_enumerate();
	assert_int_equal(report_luns(luns), 2);
	assert_int_equal(tur(0).srb.srb_status, SRB_STATUS_SUCCESS);
}

static void test_hot_remove(void **state)
{
	uint16_t luns[8];
	struct memdisk *m = su_add_disk(0, 2, DISK, 512, false);

	expect_enumerate();
	report_luns(luns);
	assert_int_equal(storvsp_remove_lun(su.sv, 0, 2), 0);
	expect_enumerate();
	/* Linux's TEST UNIT READY to the removed LUN: INVALID_LUN, so it
	 * removes the device. */
	{
		struct vstor_packet p = tur(2);

		assert_int_equal(p.srb.srb_status, SRB_STATUS_INVALID_LUN);
		assert_int_equal(p.srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	}
	expect_ua(tur(0), 0x3f, 0x0e);
	assert_int_equal(report_luns(luns), 1);
	/* The image was flushed and closed. */
	assert_int_equal(m->closed, 1);
	assert_int_equal(m->nflushes, 1);
	assert_int_equal(storvsp_remove_lun(su.sv, 0, 2), -ENODEV);
	/* The slot can be used again. */
	su_add_disk(0, 2, DISK, 512, false);
	expect_enumerate();
}

/* Removing a LUN with I/O in flight: the I/O finishes first, the guest gets
 * INVALID_LUN for it. */
static void test_remove_with_io_in_flight(void **state)
{
	struct storvsp_config c;
	struct memdisk *m;
	unsigned got = 0;

	su_teardown(false);
	su_config_default(&c);
	c.inline_io = false;
	c.io_threads = 2;
	su_setup(&c);
	d0 = su_add_disk(0, 0, DISK, 512, false);
	m = su_add_disk(0, 1, DISK, 512, false);
	relid = su_bring_up(0);
	m->write_delay_us = 3000;
	for (unsigned i = 0; i < 4; i++) {
		uint8_t cdb[10] = { SCSI_WRITE_10, 0, 0, 0, 0, (uint8_t)i, 0, 0, 1, 0 };
		uint64_t pfn = SU_DATA_PFN + i;
		struct vstor_packet req = su_srb(1, cdb, 10, VMSCSI_DATA_OUT, 512);

		assert_int_equal(su_send_gpa(relid, 1 + i, &req, 64, 0, 512, &pfn, 1), 0);
	}
	assert_int_equal(storvsp_remove_lun(su.sv, 0, 1), 0);
	assert_int_equal(m->nwrites, 4);
	assert_int_equal(m->closed, 1);
	for (;;) {
		struct su_pkt p;

		if (!su_recv(relid, &p))
			break;
		if (p.trans_id == 0) {
			assert_int_equal(su_vstor(&p).operation, VSTOR_OP_ENUMERATE_BUS);
			continue;
		}
		assert_int_equal(su_vstor(&p).srb.srb_status, SRB_STATUS_INVALID_LUN);
		got++;
	}
	assert_int_equal(got, 4);
}

static void test_resize(void **state)
{
	uint8_t rc[16] = { SCSI_SERVICE_ACTION_IN_16, 0x10 };
	struct vstor_packet p;
	struct storvsp_lun_info li;

	rc[13] = 32;
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 0, 2 * DISK), 0);
	assert_int_equal(d0->size, 2 * DISK);
	expect_enumerate();
	/* Linux's rescan: TEST UNIT READY gets CAPACITY DATA HAS CHANGED... */
	expect_ua(tur(0), 0x2a, 0x09);
	/* ...then READ CAPACITY sees the new size. */
	p = su_scsi(relid, 0, rc, 16, VMSCSI_DATA_IN, 0, 32);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(scsi_get_be64(su_data(0)), 2 * DISK / 512 - 1);
	assert_int_equal(storvsp_list(su.sv, &li, 1), 1);
	assert_int_equal(li.size, 2 * DISK);
	/* The new blocks are usable. */
	{
		uint8_t c[10] = { SCSI_READ_10 };

		scsi_put_be32(c + 2, 2 * DISK / 512 - 1);
		c[8] = 1;
		assert_int_equal(su_scsi(relid, 0, c, 10, VMSCSI_DATA_IN, 0, 512).srb.srb_status,
				 SRB_STATUS_SUCCESS);
	}
	/* The same size again: no notification. */
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 0, 2 * DISK), 0);
	nothing_sent();
	/* Shrinking works too (the format allows it here). */
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 0, DISK), 0);
	expect_enumerate();
	expect_ua(tur(0), 0x2a, 0x09);
}

static void test_resize_errors(void **state)
{
	su_add_disk(0, 1, DISK, 512, true);
	expect_enumerate();
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 1, 2 * DISK), -EROFS);
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 0, DISK + 100), -EINVAL);
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 0, 0), -EINVAL);
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 7, DISK), -ENODEV);
	assert_int_equal(storvsp_resize_lun(su.sv, 3, 0, DISK), -ENODEV);
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 64, DISK), -ENODEV);
	d0->can_resize = false;
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 0, 2 * DISK), -EOPNOTSUPP);
	d0->can_resize = true;
	d0->fail_resize = -ENOSPC;
	assert_int_equal(storvsp_resize_lun(su.sv, 0, 0, 2 * DISK), -ENOSPC);
	nothing_sent();
	assert_int_equal(tur(0).srb.srb_status, SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID);
	assert_int_equal(tur(0).srb.srb_status, SRB_STATUS_SUCCESS); /* only the LUN UA */
}

static void test_api_errors(void **state)
{
	struct memdisk *m = md_new(DISK, 512, 512);
	struct blk_disk *d = md_disk(m);

	assert_int_equal(storvsp_add_lun(su.sv, 0, 0, d, NULL), -EEXIST);
	assert_int_equal(storvsp_add_lun(su.sv, 0, 64, d, NULL), -EINVAL);
	assert_int_equal(storvsp_add_lun(su.sv, 4, 0, d, NULL), -EINVAL);
	assert_int_equal(storvsp_add_lun(su.sv, 1, 0, d, NULL), -ENODEV);
	assert_int_equal(storvsp_add_lun(su.sv, 0, 1, NULL, NULL), -EINVAL);
	m->lsec = 2048;
	assert_int_equal(storvsp_add_lun(su.sv, 0, 1, d, NULL), -EINVAL);
	m->lsec = 512;
	{
		struct storvsp_lun_opts o = { .serial = "bad\n" };

		assert_int_equal(storvsp_add_lun(su.sv, 0, 1, d, &o), -EINVAL);
	}
	assert_int_equal(storvsp_remove_lun(su.sv, 0, 1), -ENODEV);
	assert_int_equal(storvsp_remove_lun(su.sv, 9, 1), -ENODEV);
	assert_int_equal(storvsp_remove_lun(su.sv, 0, 200), -ENODEV);
	nothing_sent();
	/* Nothing was attached: the disk is still ours. */
	blk_close(d);
	md_free(m);
}

/* Disks added before the guest initialized the controller: no rescan, no
 * unit attention; the guest finds them when it scans. */
static void test_add_before_ready(void **state)
{
	uint16_t luns[8];

	su_teardown(false);
	su_setup(NULL);
	d0 = su_add_disk(0, 0, DISK, 512, false);
	su_connect();
	relid = su_relid(0, 0);
	assert_true(su_open(relid));
	su_add_disk(0, 1, DISK, 512, false); /* open, not initialized */
	nothing_sent();
	assert_true(su_storvsc_init(relid, su_linux_versions, 3, false).ok);
	nothing_sent();
	assert_int_equal(tur(0).srb.srb_status, SRB_STATUS_SUCCESS);
	assert_int_equal(report_luns(luns), 2);
	/* A new controller while the guest runs is a new VMBus offer. */
	{
		unsigned before = su.nr_offers;

		su_add_disk(1, 0, DISK, 512, false);
		assert_int_equal(su.nr_offers, before + 1);
		assert_int_not_equal(su_relid(1, 0), 0);
	}
}

/* The rescan request waits while the guest's ring is full. */
static void test_enumerate_when_ring_full(void **state)
{
	uint8_t inq[6] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };
	struct vstor_packet req = su_srb(0, inq, 6, VMSCSI_DATA_NONE, 0);
	struct su_pkt p;
	bool seen = false;
	unsigned sent = 0;

	su_teardown(false);
	su_setup(NULL);
	su.ring_pages = 2;
	d0 = su_add_disk(0, 0, DISK, 512, false);
	relid = su_bring_up(0);
	while (su_send_inband(relid, 1 + sent, &req, 64, true) == 0)
		sent++;
	su_add_disk(0, 1, DISK, 512, false);
	while (su_recv(relid, &p)) {
		if (p.trans_id == 0) {
			assert_int_equal(su_vstor(&p).operation, VSTOR_OP_ENUMERATE_BUS);
			seen = true;
		}
	}
	/* Sent once the guest made room (reading signalled the host). */
	if (!seen) {
		su_poll(0);
		while (su_recv(relid, &p))
			if (p.trans_id == 0)
				seen = true;
	}
	assert_true(seen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hot_add, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_luns_clears_ua, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hot_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_with_io_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resize_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_api_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_before_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enumerate_when_ring_full, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
