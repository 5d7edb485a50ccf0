/* Storage VSP: offers, VSTOR version negotiation as each Linux version does
 * it, channel properties, the init state machine, sub-channels, reopen,
 * status, and teardown in either order. A fake storvsc guest drives the
 * real VMBus server. */
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

static int setup(void **state)
{
	su_setup(NULL);
	su_add_disk(0, 0, 1 << 20, 512, false);
	return 0;
}

static int teardown(void **state)
{
	su_teardown(false);
	return 0;
}

static struct vstor_packet op(uint32_t relid, uint32_t operation, uint32_t len)
{
	struct vstor_packet p;

	memset(&p, 0, sizeof(p));
	p.operation = operation;
	return su_init_op(relid, &p, len);
}

static void test_offer(void **state)
{
	guid_t scsi = VMBUS_CLASS_SCSI, inst = su_instance(0);
	struct storvsp_ctrl_info ci[4];

	su_add_disk(2, 5, 1 << 20, 512, false);
	su_connect();
	assert_int_equal(su.nr_offers, 2);
	assert_true(guid_equal(&su.offers[0].type, &scsi));
	assert_true(guid_equal(&su.offers[0].inst, &inst));
	assert_int_equal(su.offers[0].subidx, 0);
	inst = su_instance(2);
	assert_true(guid_equal(&su.offers[1].inst, &inst));
	assert_int_not_equal(su.offers[0].relid, su.offers[1].relid);
	/* Status before the guest opened anything. */
	assert_int_equal(storvsp_list_controllers(su.sv, ci, 4), 2);
	assert_int_equal(ci[0].index, 0);
	assert_string_equal(ci[0].instance, "4d1e3c2a-9b8f-4a6e-8c5d-7f2b1a0e9d00");
	assert_false(ci[0].open);
	assert_int_equal(ci[0].nr_luns, 1);
	assert_int_equal(ci[1].index, 2);
	assert_string_equal(ci[1].instance, "4d1e3c2a-9b8f-4a6e-8c5d-7f2b1a0e9d02");
	/* Adding a controller twice, or out of range. */
	assert_int_equal(storvsp_add_controller(su.sv, 0), -EEXIST);
	assert_int_equal(storvsp_add_controller(su.sv, STORVSP_MAX_CONTROLLERS), -EINVAL);
}

/* Linux 5.16 .. 6.12: 64-byte packets, 6.2 first. */
static void test_negotiate_linux6(void **state)
{
	struct storvsp_ctrl_info ci;
	struct su_init in;
	uint32_t relid;

	su_connect();
	relid = su_relid(0, 0);
	assert_true(su_open(relid));
	in = su_storvsc_init(relid, su_linux_versions, 3, false);
	assert_true(in.ok);
	assert_int_equal(in.version, VSTOR_VERSION_WIN10);
	assert_int_equal(in.props.max_channel_cnt, SU_NR_VPS);
	assert_int_equal(in.props.flags, VSTOR_PROP_MULTI_CHANNEL);
	assert_int_equal(in.props.max_transfer_bytes, STORVSP_DEFAULT_MAX_TRANSFER);
	assert_int_equal(storvsp_list_controllers(su.sv, &ci, 1), 1);
	assert_true(ci.open);
	assert_true(ci.ready);
	assert_int_equal(ci.version, 0x0602);
	assert_int_equal(ci.nr_channels, 1);
	assert_int_equal(ci.open_channels, 1);
}

/* Linux 5.10 .. 5.15: 48-byte packets until WIN8+ is negotiated; the host
 * always answers with 64 bytes. */
static void test_negotiate_linux510(void **state)
{
	struct vstor_packet p;
	struct su_pkt r;
	struct su_init in;
	uint32_t relid;

	su_connect();
	relid = su_relid(0, 0);
	assert_true(su_open(relid));
	/* Check the raw reply size of the first step by hand. */
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_BEGIN_INITIALIZATION;
	p.flags = VSTOR_FLAG_REQUEST_COMPLETION;
	assert_int_equal(su_send_inband(relid, VSTOR_RQST_INIT, &p, VSTOR_PACKET_SIZE_WIN7, true), 0);
	assert_true(su_recv(relid, &r));
	assert_int_equal(r.type, VMBUS_PKT_COMP);
	assert_int_equal(r.len, VSTOR_PACKET_SIZE);
	assert_int_equal(su_vstor(&r).operation, VSTOR_OP_COMPLETE_IO);
	assert_int_equal(su_vstor(&r).status, 0);
	in = su_storvsc_init(relid, su_old_linux_versions, 5, true);
	assert_true(in.ok);
	assert_int_equal(in.version, VSTOR_VERSION_WIN10);
}

/* A host capped below 6.2: Linux falls back one version at a time. */
static void test_negotiate_fallback(void **state)
{
	static const uint16_t caps[] = { VSTOR_VERSION_WIN8_1, VSTOR_VERSION_WIN8 };

	for (unsigned i = 0; i < 2; i++) {
		struct storvsp_config c;
		struct su_init in;
		uint32_t relid;

		su_teardown(false);
		su_config_default(&c);
		c.max_version = caps[i];
		su_setup(&c);
		su_add_disk(0, 0, 1 << 20, 512, false);
		su_connect();
		relid = su_relid(0, 0);
		assert_true(su_open(relid));
		in = su_storvsc_init(relid, su_linux_versions, 3, false);
		assert_true(in.ok);
		assert_int_equal(in.version, caps[i]);
		assert_int_equal(in.props.flags, VSTOR_PROP_MULTI_CHANNEL);
	}
}

/* WIN7 (old kernels against an old host): 48-byte packets both ways, no
 * multi-channel, 18-byte sense. */
static void test_negotiate_win7(void **state)
{
	struct storvsp_config c;
	struct vstor_packet req;
	struct su_pkt p;
	struct su_init in;
	uint8_t cdb[10] = { SCSI_READ_10, 0, 0, 0, 0x40, 0, 0, 0, 1, 0 }; /* LBA 16384: past the end */
	uint32_t relid;

	su_teardown(false);
	su_config_default(&c);
	c.max_version = VSTOR_VERSION_WIN7;
	su_setup(&c);
	su_add_disk(0, 0, 1 << 20, 512, false);
	su_connect();
	relid = su_relid(0, 0);
	assert_true(su_open(relid));
	in = su_storvsc_init(relid, su_old_linux_versions, 5, true);
	assert_true(in.ok);
	assert_int_equal(in.version, VSTOR_VERSION_WIN7);
	assert_int_equal(in.props.flags, 0);
	assert_int_equal(in.props.max_channel_cnt, 0);
	/* An SRB in the short form; the completion is 48 bytes. */
	req = su_srb(0, cdb, 10, VMSCSI_DATA_IN, 512);
	{
		uint64_t pfn = SU_DATA_PFN;

		assert_int_equal(su_send_gpa(relid, 7, &req, VSTOR_PACKET_SIZE_WIN7, 0, 512, &pfn, 1), 0);
	}
	assert_true(su_wait(relid, &p));
	assert_int_equal(p.len, VSTOR_PACKET_SIZE_WIN7);
	req = su_vstor(&p);
	assert_int_equal(req.srb.scsi_status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(req.srb.sense_info_length, 18);
	assert_int_equal(req.srb.sense_data[12], 0x21);
	/* Sub-channels need WIN8. */
	memset(&req, 0, sizeof(req));
	req.operation = VSTOR_OP_CREATE_SUB_CHANNELS;
	req.sub_channel_count = 1;
	req = su_init_op(relid, &req, VSTOR_PACKET_SIZE_WIN7);
	assert_int_equal(req.status, VSTOR_STATUS_INVALID_DEVICE_STATE);
}

static void test_bad_versions(void **state)
{
	struct vstor_packet p;
	uint32_t relid;

	su_connect();
	relid = su_relid(0, 0);
	assert_true(su_open(relid));
	assert_int_equal(op(relid, VSTOR_OP_BEGIN_INITIALIZATION, 64).status, 0);
	static const uint16_t bad[] = { 0x0000, 0x0100, 0x0500, 0x0601, 0x0603, 0x0700, 0xffff };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.operation = VSTOR_OP_QUERY_PROTOCOL_VERSION;
		p.version.major_minor = bad[i];
		p = su_init_op(relid, &p, 64);
		assert_int_equal(p.operation, VSTOR_OP_COMPLETE_IO);
		assert_int_equal(p.status, VSTOR_STATUS_REVISION_MISMATCH);
	}
	/* Still negotiable afterwards. */
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_QUERY_PROTOCOL_VERSION;
	p.version.major_minor = VSTOR_VERSION_WIN10;
	assert_int_equal(su_init_op(relid, &p, 64).status, 0);
}

/* Operations out of order are refused with INVALID_DEVICE_STATE. */
static void test_state_machine(void **state)
{
	uint8_t tur[6] = { 0 };
	struct vstor_packet p;
	uint32_t relid;

	su_connect();
	relid = su_relid(0, 0);
	assert_true(su_open(relid));
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_QUERY_PROTOCOL_VERSION;
	p.version.major_minor = VSTOR_VERSION_WIN10;
	assert_int_equal(su_init_op(relid, &p, 64).status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(op(relid, VSTOR_OP_QUERY_PROPERTIES, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(op(relid, VSTOR_OP_END_INITIALIZATION, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_STATE);
	p = su_scsi(relid, 0, tur, 6, VMSCSI_DATA_NONE, 0, 0);
	assert_int_equal(p.status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(op(relid, VSTOR_OP_BEGIN_INITIALIZATION, 64).status, 0);
	assert_int_equal(op(relid, VSTOR_OP_QUERY_PROPERTIES, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(op(relid, VSTOR_OP_END_INITIALIZATION, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_STATE);
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_QUERY_PROTOCOL_VERSION;
	p.version.major_minor = VSTOR_VERSION_WIN8;
	assert_int_equal(su_init_op(relid, &p, 64).status, 0);
	assert_int_equal(op(relid, VSTOR_OP_END_INITIALIZATION, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(op(relid, VSTOR_OP_QUERY_PROPERTIES, 64).status, 0);
	assert_int_equal(op(relid, VSTOR_OP_END_INITIALIZATION, 64).status, 0);
	/* Ready: SRBs flow; a version query now is out of order. */
	p = su_scsi(relid, 0, tur, 6, VMSCSI_DATA_NONE, 0, 0);
	assert_int_equal(p.status, 0);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_QUERY_PROTOCOL_VERSION;
	p.version.major_minor = VSTOR_VERSION_WIN8;
	assert_int_equal(su_init_op(relid, &p, 64).status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	/* Unknown and FC-only operations. */
	assert_int_equal(op(relid, VSTOR_OP_FCHBA_DATA, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_REQUEST);
	assert_int_equal(op(relid, 99, 64).status, VSTOR_STATUS_INVALID_DEVICE_REQUEST);
	assert_int_equal(op(relid, 0, 64).status, VSTOR_STATUS_INVALID_DEVICE_REQUEST);
	assert_int_equal(op(relid, VSTOR_OP_COMPLETE_IO, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_REQUEST);
	/* Resets succeed; RESET_BUS as eh_host_reset sends it. */
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_RESET_BUS;
	p.flags = VSTOR_FLAG_REQUEST_COMPLETION;
	{
		struct su_pkt r;

		assert_int_equal(su_send_inband(relid, VSTOR_RQST_RESET, &p, 64, true), 0);
		assert_true(su_recv(relid, &r));
		assert_int_equal(r.trans_id, VSTOR_RQST_RESET);
		assert_int_equal(su_vstor(&r).operation, VSTOR_OP_COMPLETE_IO);
		assert_int_equal(su_vstor(&r).status, 0);
	}
	assert_int_equal(op(relid, VSTOR_OP_RESET_LUN, 64).status, 0);
	assert_int_equal(op(relid, VSTOR_OP_RESET_ADAPTER, 64).status, 0);
	/* BEGIN again restarts initialization. */
	assert_int_equal(op(relid, VSTOR_OP_BEGIN_INITIALIZATION, 64).status, 0);
	p = su_scsi(relid, 0, tur, 6, VMSCSI_DATA_NONE, 0, 0);
	assert_int_equal(p.status, VSTOR_STATUS_INVALID_DEVICE_STATE);
}

static struct vstor_packet create_sc(uint32_t relid, uint16_t n)
{
	struct vstor_packet p;

	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_CREATE_SUB_CHANNELS;
	p.sub_channel_count = n;
	return su_init_op(relid, &p, 64);
}

static void test_sub_channels(void **state)
{
	uint8_t inq[6] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };
	struct storvsp_ctrl_info ci;
	struct vstor_packet p;
	uint32_t relid = su_bring_up(0), sub[4];
	unsigned before = su.nr_offers;

	/* Linux asks for (online CPUs - 1). */
	p = create_sc(relid, SU_NR_VPS - 1);
	assert_int_equal(p.operation, VSTOR_OP_COMPLETE_IO);
	assert_int_equal(p.status, 0);
	assert_int_equal(su.nr_offers, before + SU_NR_VPS - 1);
	for (unsigned i = 1; i < SU_NR_VPS; i++) {
		guid_t scsi = VMBUS_CLASS_SCSI, inst = su_instance(0);
		const struct su_offer *o = &su.offers[before + i - 1];

		assert_true(guid_equal(&o->type, &scsi));
		assert_true(guid_equal(&o->inst, &inst));
		assert_int_equal(o->subidx, i);
		sub[i] = o->relid;
		assert_true(su_open(sub[i]));
	}
	/* I/O on a sub-channel completes on that sub-channel. */
	for (unsigned i = 1; i < SU_NR_VPS; i++) {
		p = su_scsi(sub[i], 0, inq, 6, VMSCSI_DATA_IN, i, 36);
		assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
		assert_int_equal(p.srb.data_transfer_length, 36);
		assert_memory_equal(su_data(i) + 8, "Msft", 4);
	}
	/* Asking again for no more than exist: success, no new offers. */
	before = su.nr_offers;
	assert_int_equal(create_sc(relid, 2).status, 0);
	assert_int_equal(su.nr_offers, before);
	/* More than max_channel_cnt. */
	assert_int_equal(create_sc(relid, SU_NR_VPS + 1).status, VSTOR_STATUS_INVALID_PARAMETER);
	/* Initialization operations on a sub-channel. */
	assert_int_equal(create_sc(sub[1], 1).status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(op(sub[1], VSTOR_OP_BEGIN_INITIALIZATION, 64).status,
			 VSTOR_STATUS_INVALID_DEVICE_STATE);
	assert_int_equal(storvsp_list_controllers(su.sv, &ci, 1), 1);
	assert_int_equal(ci.nr_channels, SU_NR_VPS);
	assert_int_equal(ci.open_channels, SU_NR_VPS);
	/* Closing a sub-channel leaves the others working. */
	su_close(sub[2]);
	p = su_scsi(sub[1], 0, inq, 6, VMSCSI_DATA_IN, 1, 36);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	p = su_scsi(relid, 0, inq, 6, VMSCSI_DATA_IN, 0, 36);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
}

/* One vCPU: max_channel_cnt 1, Linux asks for none. */
static void test_one_vcpu(void **state)
{
	struct storvsp_config c;
	struct su_init in;
	uint32_t relid;

	su_teardown(false);
	su_config_default(&c);
	c.nr_vcpus = 1;
	c.max_transfer_bytes = 256 * 1024;
	su_setup(&c);
	su_add_disk(0, 0, 1 << 20, 512, false);
	su_connect();
	relid = su_relid(0, 0);
	assert_true(su_open(relid));
	in = su_storvsc_init(relid, su_linux_versions, 3, false);
	assert_true(in.ok);
	assert_int_equal(in.props.max_channel_cnt, 1);
	assert_int_equal(in.props.max_transfer_bytes, 256 * 1024);
	assert_int_equal(create_sc(relid, 2).status, VSTOR_STATUS_INVALID_PARAMETER);
}

/* The guest closes and reopens (driver reload, kexec): initialization runs
 * again and the sub-channels are offered again after a VMBus reconnect. */
static void test_reopen_and_reconnect(void **state)
{
	uint8_t inq[6] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };
	struct vstor_packet p;
	struct su_init in;
	uint32_t relid = su_bring_up(0);

	assert_int_equal(create_sc(relid, 2).status, 0);
	su_close(relid);
	assert_true(su_open(relid));
	/* Not initialized after reopening. */
	p = su_scsi(relid, 0, inq, 6, VMSCSI_DATA_IN, 0, 36);
	assert_int_equal(p.status, VSTOR_STATUS_INVALID_DEVICE_STATE);
	in = su_storvsc_init(relid, su_linux_versions, 3, false);
	assert_true(in.ok);
	p = su_scsi(relid, 0, inq, 6, VMSCSI_DATA_IN, 0, 36);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	/* Unload and reconnect: primary and both sub-channels are offered. */
	su_unload();
	su.nr_offers = 0;
	su_connect();
	assert_int_equal(su.nr_offers, 3);
	assert_int_not_equal(su_relid(0, 2), 0);
	relid = su_bring_up(0);
	p = su_scsi(relid, 0, inq, 6, VMSCSI_DATA_IN, 0, 36);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	/* A VM reset forgets everything too. */
	vmbus_server_reset(su.srv);
	su_destroy_rings();
	su.connected = false;
	su.nr_offers = 0;
	relid = su_bring_up(0);
	p = su_scsi(relid, 0, inq, 6, VMSCSI_DATA_IN, 0, 36);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
}

/* The VSP and the server may be freed in either order, with channels open. */
static void test_teardown_orders(void **state)
{
	(void)su_bring_up(0);
	su_teardown(true);
	su_setup(NULL);
	su_add_disk(0, 0, 1 << 20, 512, false);
	(void)su_bring_up(0);
	/* teardown() frees the VSP first */
}

/* After the VSP is gone the device stays registered but dead: the guest's
 * packets are dropped and opens are refused. */
static void test_orphaned(void **state)
{
	uint8_t inq[6] = { SCSI_INQUIRY, 0, 0, 0, 36, 0 };
	struct vstor_packet req = su_srb(0, inq, 6, VMSCSI_DATA_NONE, 0);
	struct su_pkt p;
	uint32_t relid = su_bring_up(0);

	storvsp_free(su.sv);
	su.sv = NULL;
	assert_int_equal(su_send_inband(relid, 5, &req, 64, true), 0);
	assert_false(su_recv(relid, &p));
	su_close(relid);
	assert_false(su_open(relid));
	vmbus_server_free(su.srv);
	su.srv = NULL;
	for (unsigned i = 0; i < su.nr_md; i++)
		md_free(su.md[i]);
	su.nr_md = 0;
	su_setup(NULL); /* for teardown */
}

static void test_bad_config(void **state)
{
	struct storvsp_config c;

	su_config_default(&c);
	c.gm = &su.gm;
	c.max_transfer_bytes = 1000;
	assert_null(storvsp_new(su.srv, NULL, &c));
	su_config_default(&c);
	c.gm = &su.gm;
	c.nr_vcpus = 0;
	assert_null(storvsp_new(su.srv, NULL, &c));
	su_config_default(&c);
	c.gm = &su.gm;
	c.max_version = 0x0700;
	assert_null(storvsp_new(su.srv, NULL, &c));
	su_config_default(&c);
	c.gm = &su.gm;
	c.inline_io = false;
	c.io_threads = 0;
	assert_null(storvsp_new(su.srv, NULL, &c));
	su_config_default(&c);
	assert_null(storvsp_new(su.srv, NULL, &c)); /* no guest memory */
	storvsp_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_linux6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_linux510, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_win7, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_machine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sub_channels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_vcpu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_and_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_teardown_orders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_orphaned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
