/* IC framework and heartbeat against the real VMBus server: offers,
 * version negotiation with the version lists Linux offers, the heartbeat
 * sequence, loss and recovery, close/reopen, unload, the host's timer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define TU_ASSERT(x) assert_true(x)
#include "core/loop.h"
#include "ic_test_util.h"

static const guid_t hb_class = IC_CLASS_HEARTBEAT;

static int setup(void **state)
{
	tu_setup(NULL);
	tu_connect();
	return 0;
}

static int teardown(void **state)
{
	tu_teardown(false);
	return 0;
}

/* The negotiation request the host sends on open. */
static void check_negotiate_request(const struct tu_pkt *p, const uint32_t *sv, unsigned nsv)
{
	struct ic_hdr h = tu_hdr(p);
	struct ic_negotiate n;

	assert_int_equal(p->type, VMBUS_PKT_DATA_INBAND);
	assert_int_equal(p->flags, 0);
	assert_int_equal(h.pipe.flags, IC_PIPE_FLAG_DATA);
	assert_int_equal(h.ic.icmsgtype, IC_MSGTYPE_NEGOTIATE);
	assert_int_equal(h.ic.icflags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
	assert_int_equal(h.ic.status, 0);
	assert_int_equal(h.ic.icmsgsize, 8 + 4 * (2 + nsv));
	assert_int_equal(h.pipe.msgsize, 20 + h.ic.icmsgsize);
	memcpy(&n, p->data + IC_HDR_LEN, sizeof(n));
	assert_int_equal(n.icframe_vercnt, 2);
	assert_int_equal(n.icmsg_vercnt, nsv);
	assert_int_equal(tu_get_ver(p->data + IC_HDR_LEN + 8), TU_V(1, 0));
	assert_int_equal(tu_get_ver(p->data + IC_HDR_LEN + 12), TU_V(3, 0));
	for (unsigned i = 0; i < nsv; i++)
		assert_int_equal(tu_get_ver(p->data + IC_HDR_LEN + 16 + 4 * i), sv[i]);
}

static void test_offers(void **state)
{
	static const guid_t cls[3] = { IC_CLASS_HEARTBEAT, IC_CLASS_SHUTDOWN, IC_CLASS_TIMESYNC };
	static const guid_t inst[3] = { IC_INSTANCE_HEARTBEAT, IC_INSTANCE_SHUTDOWN,
					IC_INSTANCE_TIMESYNC };
	struct ic_status st[IC_MAX_SERVICES];
	size_t n;

	assert_int_equal(tu.nr_offers, 3);
	for (int i = 0; i < 3; i++) {
		const struct tu_offer *o = tu_find_offer(&cls[i]);

		assert_non_null(o);
		assert_true(guid_equal(&o->inst, &inst[i]));
		assert_int_equal(o->chn_flags, VMBUS_OFFER_ENUMERATE_DEVICE_INTERFACE |
						       VMBUS_OFFER_NAMED_PIPE_MODE);
		assert_int_equal(o->pipe_mode, VMBUS_PIPE_TYPE_MESSAGE);
	}
	/* fd149e91-82e0-4a7d-afa6-2a4166cbd7c0 in wire order. */
	assert_int_equal(tu_find_offer(&cls[0])->inst.b[0], 0x91);
	assert_int_equal(tu_find_offer(&cls[0])->inst.b[3], 0xfd);
	assert_int_equal(tu_find_offer(&cls[0])->inst.b[8], 0xaf);
	n = ic_host_status(tu.ic, st, IC_MAX_SERVICES);
	assert_int_equal(n, 3);
	assert_string_equal(st[0].name, "heartbeat");
	assert_string_equal(st[1].name, "shutdown");
	assert_string_equal(st[2].name, "timesync");
	for (int i = 0; i < 3; i++) {
		assert_true(st[i].enabled);
		assert_string_equal(st[i].status, "not connected");
	}
	assert_int_equal(ic_host_status(tu.ic, st, 1), 1);
	assert_int_equal(ic_host_status(tu.ic, st, 0), 0);
	assert_false(ic_host_connected(tu.ic, "heartbeat"));
	assert_false(ic_host_connected(tu.ic, "nosuch"));
}

static void test_negotiate_linux(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	static const uint32_t offered[] = { TU_V(1, 0), TU_V(3, 0) };
	uint32_t relid = tu_open(hb_class);
	struct tu_pkt p;
	struct ic_hdr h;

	assert_int_not_equal(relid, 0);
	assert_string_equal(tu_status("heartbeat"), "negotiating");
	/* Peek at the request through the guest model. */
	assert_true(tu_guest_step(relid, &g));
	check_negotiate_request(&g.last, offered, 2);
	assert_true(g.negotiated);
	assert_int_equal(g.fw_ver, TU_V(3, 0));
	assert_int_equal(g.sv_ver, TU_V(3, 0));
	assert_true(ic_host_connected(tu.ic, "heartbeat"));
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_CONNECTED), 1);
	assert_string_equal(tu_status("heartbeat"), "unknown");
	/* The first heartbeat went out at once with the negotiated versions. */
	assert_true(tu_recv(relid, &p));
	h = tu_hdr(&p);
	assert_int_equal(h.ic.icmsgtype, IC_MSGTYPE_HEARTBEAT);
	assert_int_equal(h.ic.icverframe.major, 3);
	assert_int_equal(h.ic.icvermsg.major, 3);
	assert_int_equal(h.ic.icvermsg.minor, 0);
	assert_int_equal(h.ic.icflags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
	assert_int_equal(h.ic.icmsgsize, sizeof(struct ic_heartbeat));
	assert_int_equal(h.pipe.msgsize, 20 + sizeof(struct ic_heartbeat));
	/* 68 bytes, padded to 8 in the ring (Linux answers with all 72). */
	assert_int_equal(p.len, (IC_HDR_LEN + sizeof(struct ic_heartbeat) + 7) & ~7u);
	assert_false(tu_recv(relid, &p));
}

static void test_negotiate_old_guest(void **state)
{
	/* A WS2008-era guest: framework 1.0, heartbeat 1.0 only. */
	static const uint32_t fw[] = { TU_V(1, 0) };
	static const uint32_t sv[] = { TU_V(1, 0) };
	struct tu_guest g = { .fw = fw, .nfw = 1, .sv = sv, .nsv = 1,
			      .msgtype = IC_MSGTYPE_HEARTBEAT };
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	struct ic_hdr h;

	assert_int_equal(g.fw_ver, TU_V(1, 0));
	assert_true(ic_host_connected(tu.ic, "heartbeat"));
	assert_true(tu_guest_step(relid, &g));
	h = tu_hdr(&g.last);
	assert_int_equal(h.ic.icmsgtype, IC_MSGTYPE_HEARTBEAT);
	assert_int_equal(h.ic.icverframe.major, 1);
	assert_int_equal(h.ic.icvermsg.major, 1);
	assert_string_equal(tu_status("heartbeat"), "ok");
}

static void test_negotiate_none(void **state)
{
	/* A guest that knows only versions we do not speak answers 0/0. */
	static const uint32_t fw[] = { TU_V(2, 0) };
	static const uint32_t sv[] = { TU_V(3, 0) };
	struct tu_guest g = { .fw = fw, .nfw = 1, .sv = sv, .nsv = 1,
			      .msgtype = IC_MSGTYPE_HEARTBEAT };
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	struct tu_pkt p;

	assert_false(g.negotiated);
	assert_false(ic_host_connected(tu.ic, "heartbeat"));
	assert_string_equal(tu_status("heartbeat"), "unsupported");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_UNSUPPORTED), 1);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_CONNECTED), 0);
	for (int i = 0; i < 10; i++)
		tu_tick(1000);
	assert_false(tu_recv(relid, &p));
	/* A guest with a service version match only for 1.0 framework. */
	{
		static const uint32_t fw2[] = { TU_V(3, 0), TU_V(1, 0) };
		static const uint32_t sv2[] = { TU_V(7, 0), TU_V(1, 0) };
		struct tu_guest g2 = { .fw = fw2, .nfw = 2, .sv = sv2, .nsv = 2,
				       .msgtype = IC_MSGTYPE_HEARTBEAT };

		tu_close(relid);
		assert_string_equal(tu_status("heartbeat"), "not connected");
		relid = tu_open_negotiated(hb_class, &g2);
		assert_true(ic_host_connected(tu.ic, "heartbeat"));
		assert_int_equal(g2.fw_ver, TU_V(3, 0));
		assert_int_equal(g2.sv_ver, TU_V(1, 0));
	}
}

static void test_sequence(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);

	for (uint64_t i = 0; i < 20; i++) {
		struct ic_heartbeat m;
		struct ic_hdr h;

		/* One request per tick, carrying the guest's last answer. */
		assert_true(tu_guest_step(relid, &g));
		assert_false(tu_guest_step(relid, &g));
		h = tu_hdr(&g.last);
		assert_int_equal(h.ic.icmsgtype, IC_MSGTYPE_HEARTBEAT);
		memcpy(&m, g.last.data + IC_HDR_LEN, sizeof(m));
		assert_int_equal(m.seq_num, i);
		assert_string_equal(tu_status("heartbeat"), "ok");
		tu_tick(1000);
	}
	assert_int_equal(g.nr_msgs, 20);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_OK), 1);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_LOST), 0);
	/* A tick with jitter (a little early) still sends. */
	assert_true(tu_guest_step(relid, &g));
	tu_tick(400);
	assert_false(tu_guest_step(relid, &g));
	tu_tick(550);
	assert_true(tu_guest_step(relid, &g));
}

static void test_lost_and_recovered(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	struct tu_pkt p;
	unsigned sent = 0;
	uint64_t seq;

	assert_true(tu_guest_step(relid, &g)); /* seq 0 -> 1 */
	assert_string_equal(tu_status("heartbeat"), "ok");
	/* The guest hangs: requests pile up in its ring, one at a time. */
	for (int i = 1; i <= 4; i++) {
		tu_tick(1000);
		assert_string_equal(tu_status("heartbeat"), "ok");
	}
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_LOST), 0);
	tu_tick(1000); /* 5 s since the last answer */
	assert_string_equal(tu_status("heartbeat"), "lost");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_LOST), 1);
	for (int i = 0; i < 10; i++)
		tu_tick(1000);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_LOST), 1);
	/* Unanswered requests were dropped after the timeout and replaced:
	 * never more than one outstanding, and each carries a new number. */
	seq = 0;
	while (tu_recv(relid, &p)) {
		struct ic_heartbeat m;

		memcpy(&m, p.data + IC_HDR_LEN, sizeof(m));
		assert_true(m.seq_num > seq);
		seq = m.seq_num;
		sent++;
	}
	assert_true(sent >= 3 && sent <= 6);
	/* Draining them without answering changes nothing. */
	assert_string_equal(tu_status("heartbeat"), "lost");
	/* The guest wakes up: the next request it answers brings it back. */
	tu_tick(3000);
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("heartbeat"), "ok");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_OK), 2);
}

static void test_stale_answers(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	struct tu_pkt old;
	struct ic_hdr h;

	/* Keep the first request; let it time out. */
	assert_true(tu_recv(relid, &old));
	tu_tick(1000);
	tu_tick(1000);
	tu_tick(1000); /* timeout: dropped and replaced at once */
	tu_tick(1000);
	assert_string_equal(tu_status("heartbeat"), "unknown");
	/* Answering the old one now does nothing. */
	h = tu_hdr(&old);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	memcpy(old.data, &h, sizeof(h));
	old.data[IC_HDR_LEN] += 1;
	assert_int_equal(tu_send(relid, old.trans_id, old.data, old.len), 0);
	assert_string_equal(tu_status("heartbeat"), "unknown");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_OK), 0);
	tu_tick(1000);
	assert_string_equal(tu_status("heartbeat"), "lost");
	/* The current one is answered correctly. */
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("heartbeat"), "ok");
}

static void test_bad_sequence(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);

	for (int i = 0; i < 6; i++) {
		struct tu_pkt p;
		struct ic_hdr h;
		uint64_t seq;

		if (tu_recv(relid, &p)) {
			h = tu_hdr(&p);
			h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
			memcpy(p.data, &h, sizeof(h));
			memcpy(&seq, p.data + IC_HDR_LEN, 8);
			seq += 2; /* wrong */
			memcpy(p.data + IC_HDR_LEN, &seq, 8);
			assert_int_equal(tu_send(relid, p.trans_id, p.data, p.len), 0);
		}
		tu_tick(1000);
	}
	assert_string_equal(tu_status("heartbeat"), "lost");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_OK), 0);
	/* E_FAIL answers do not count either. */
	g.fail_all = true;
	tu_guest_run(relid, &g);
	tu_tick(1000);
	tu_guest_run(relid, &g);
	assert_string_equal(tu_status("heartbeat"), "lost");
	g.fail_all = false;
	tu_tick(1000);
	tu_guest_run(relid, &g);
	assert_string_equal(tu_status("heartbeat"), "ok");
}

static void test_close_reopen_unload(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	struct ic_heartbeat m;

	tu_guest_run(relid, &g);
	tu_tick(1000);
	tu_guest_run(relid, &g);
	assert_int_equal(g.nr_msgs, 2);
	tu_close(relid);
	assert_string_equal(tu_status("heartbeat"), "not connected");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_DISCONNECTED), 1);
	tu_tick(1000);
	/* Reopen: negotiation again, the sequence restarts. */
	g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	relid = tu_open_negotiated(hb_class, &g);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_CONNECTED), 2);
	assert_true(tu_guest_step(relid, &g));
	memcpy(&m, g.last.data + IC_HDR_LEN, sizeof(m));
	assert_int_equal(m.seq_num, 0);
	/* Unload: every service disconnects; reconnect works. */
	tu_unload();
	assert_string_equal(tu_status("heartbeat"), "not connected");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_DISCONNECTED), 2);
	tu_tick(1000);
	tu_connect();
	g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	relid = tu_open_negotiated(hb_class, &g);
	assert_true(ic_host_connected(tu.ic, "heartbeat"));
	/* VM reset: disconnected without messages. */
	vmbus_server_reset(tu.srv);
	tu_destroy_rings();
	assert_string_equal(tu_status("heartbeat"), "not connected");
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_DISCONNECTED), 3);
}

/* Timer-driven: the host's loop timer sends the second heartbeat. */
struct stopper {
	struct loop_timer t;
	struct loop *l;
};

static void stop_loop(struct loop_timer *t)
{
	loop_stop(container_of(t, struct stopper, t)->l);
}

static void test_loop_timer(void **state)
{
	struct loop *loop = loop_new();
	struct stopper stopper;
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid;

	assert_non_null(loop);
	tu_teardown(false);
	tu_setup(loop);
	ic_host_set_clock(tu.ic, NULL); /* the real clock */
	tu_connect();
	relid = tu_open_negotiated(hb_class, &g);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(g.nr_msgs, 1);
	stopper.l = loop;
	assert_int_equal(loop_timer_add(loop, &stopper.t, stop_loop), 0);
	assert_int_equal(loop_timer_arm(&stopper.t, 1300, 0), 0);
	assert_int_equal(loop_run(loop), 0);
	loop_timer_del(loop, &stopper.t);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(g.nr_msgs, 2);
	assert_string_equal(tu_status("heartbeat"), "ok");
	/* Host first, then the server, then the loop. */
	tu_teardown(false);
	loop_free(loop);
	tu_setup(NULL);
}

static void test_free_orders(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);

	/* The IC host goes first while the channel is open: the device goes
	 * quiet, guest packets are drained and dropped, reopen refused. */
	ic_host_free(tu.ic);
	tu.ic = NULL;
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(tu_send(relid, 99, "garbage-garbage-garbage-garbage-", 32), 0);
	assert_int_equal(tu.chans[relid].tx.ctrl->read_index, tu.chans[relid].tx.ctrl->write_index);
	tu_close(relid);
	assert_int_equal(tu_open(hb_class), 0);
	tu_destroy_rings();
	vmbus_server_free(tu.srv);
	/* Server first. */
	tu_setup(NULL);
	tu_connect();
	g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	tu_open_negotiated(hb_class, &g);
	tu_teardown(true);
	tu_setup(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_offers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_linux, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_old_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negotiate_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_and_recovered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_sequence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_reopen_unload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_timer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_orders, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
