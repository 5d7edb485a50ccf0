/* Hostile and broken guests: short packets, bad pipe and IC headers, wrong
 * icmsgsize, bogus types and flags, stale transactions, huge version
 * counts in negotiation replies, floods and corrupt rings. Everything is
 * refused (logged, dropped) without a crash, and the services recover. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define TU_ASSERT(x) assert_true(x)
#include "ic_test_util.h"

static const guid_t hb_class = IC_CLASS_HEARTBEAT;
static const guid_t sd_class = IC_CLASS_SHUTDOWN;

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

/* The answer a well-behaved guest would give, in `out` (same length). */
static void as_answer(const struct tu_pkt *req, uint8_t *out)
{
	struct ic_hdr h = tu_hdr(req);

	memcpy(out, req->data, req->len);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	memcpy(out, &h, sizeof(h));
}

static void set_hdr(uint8_t *buf, const struct ic_hdr *h)
{
	memcpy(buf, h, sizeof(*h));
}

/* A negotiation answer choosing (fw, sv), in place of the request. */
static uint32_t negotiation_answer(const struct tu_pkt *req, uint8_t *out, uint16_t fc,
				   uint16_t mc, const uint32_t *vers, unsigned nv,
				   uint16_t icmsgsize)
{
	struct ic_hdr h = tu_hdr(req);
	struct ic_negotiate n = { .icframe_vercnt = fc, .icmsg_vercnt = mc };
	uint32_t len = req->len;

	memcpy(out, req->data, req->len);
	if (IC_HDR_LEN + 8 + 4 * nv > len)
		len = (IC_HDR_LEN + 8 + 4 * nv + 7) & ~7u;
	h.pipe.msgsize = len - 8;
	h.ic.icmsgsize = icmsgsize;
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	set_hdr(out, &h);
	memcpy(out + IC_HDR_LEN, &n, sizeof(n));
	for (unsigned i = 0; i < nv; i++)
		tu_put_ver(out + IC_HDR_LEN + 8 + 4 * i, vers[i]);
	return len;
}

static void test_bad_framing(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open(hb_class);
	static uint8_t buf[8192];
	struct tu_pkt req;
	struct ic_hdr h;

	assert_true(tu_recv(relid, &req));
	as_answer(&req, buf);
	/* Empty and short packets. */
	assert_int_equal(tu_send(relid, req.trans_id, buf, 0), 0);
	assert_int_equal(tu_send(relid, req.trans_id, buf, 8), 0);
	assert_int_equal(tu_send(relid, req.trans_id, buf, IC_HDR_LEN - 1), 0);
	/* Not inband: a completion, a GPA-direct packet. */
	assert_int_equal(tu_send_raw(relid, VMBUS_PKT_COMP, 0, req.trans_id, buf, req.len), 0);
	assert_int_equal(tu_send_raw(relid, VMBUS_PKT_DATA_USING_GPA_DIRECT, 0, req.trans_id, buf,
				     req.len),
			 0);
	/* Pipe header: wrong flags, message sizes too small or too big. */
	h = tu_hdr(&req);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	h.pipe.flags = 0;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.pipe.flags = 2;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.pipe.flags = IC_PIPE_FLAG_DATA;
	h.pipe.msgsize = 19;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.pipe.msgsize = req.len - 8 + 1;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.pipe.msgsize = 0xffffffff;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	/* icmsgsize beyond the message. */
	h = tu_hdr(&req);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	h.ic.icmsgsize = (uint16_t)(h.pipe.msgsize - 20 + 1);
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.ic.icmsgsize = 0xffff;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	/* Flags: a request from the guest, no transaction, all bits. */
	h = tu_hdr(&req);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_REQUEST;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.ic.icflags = IC_FLAG_RESPONSE;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.ic.icflags = 0xff;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	/* Another transaction, another message type. */
	as_answer(&req, buf);
	assert_int_equal(tu_send(relid, req.trans_id + 1, buf, req.len), 0);
	assert_int_equal(tu_send(relid, 0, buf, req.len), 0);
	h = tu_hdr(&req);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	h.ic.icmsgtype = IC_MSGTYPE_HEARTBEAT;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	h.ic.icmsgtype = 0xffff;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
	/* Larger than any IC message. */
	as_answer(&req, buf);
	h = tu_hdr(&req);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	h.pipe.msgsize = 5000 - 8;
	set_hdr(buf, &h);
	assert_int_equal(tu_send(relid, req.trans_id, buf, 5000), 0);
	/* All refused; the ring was consumed. */
	assert_string_equal(tu_status("heartbeat"), "negotiating");
	assert_int_equal(tu.chans[relid].tx.ctrl->read_index, tu.chans[relid].tx.ctrl->write_index);
	assert_int_equal(tu.nr_events, 0);
	/* The real answer still works. */
	{
		uint8_t out[256];
		static const uint32_t v[] = { TU_V(3, 0), TU_V(3, 0) };
		uint32_t len = negotiation_answer(&req, out, 1, 1, v, 2, 16);

		assert_int_equal(tu_send(relid, req.trans_id, out, len), 0);
	}
	assert_string_equal(tu_status("heartbeat"), "unknown");
	/* Answered twice: the second is stale. */
	{
		uint8_t out[256];
		static const uint32_t v[] = { TU_V(1, 0), TU_V(1, 0) };
		uint32_t len = negotiation_answer(&req, out, 1, 1, v, 2, 16);

		assert_int_equal(tu_send(relid, req.trans_id, out, len), 0);
	}
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_CONNECTED), 1);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(tu_hdr(&g.last).ic.icvermsg.major, 3);
	assert_string_equal(tu_status("heartbeat"), "ok");
}

/* Each bad negotiation answer leaves the service "unsupported"; a reopen
 * starts over. */
static void bad_negotiation(uint16_t fc, uint16_t mc, const uint32_t *vers, unsigned nv,
			    uint16_t icmsgsize, bool accepted)
{
	static uint8_t out[8192];
	uint32_t relid = tu_open(hb_class), len;
	struct tu_pkt req;

	assert_true(tu_recv(relid, &req));
	len = negotiation_answer(&req, out, fc, mc, vers, nv, icmsgsize);
	assert_int_equal(tu_send(relid, req.trans_id, out, len), 0);
	assert_string_equal(tu_status("heartbeat"), accepted ? "unknown" : "unsupported");
	assert_int_equal(ic_host_connected(tu.ic, "heartbeat"), accepted);
	tu_tick(1000);
	tu_close(relid);
}

static void test_bad_negotiation(void **state)
{
	static const uint32_t ok[] = { TU_V(3, 0), TU_V(3, 0) };
	static const uint32_t fw2[] = { TU_V(2, 0), TU_V(3, 0) };
	static const uint32_t sv4[] = { TU_V(3, 0), TU_V(4, 0) };
	static const uint32_t zero[] = { 0, 0 };
	static uint32_t many[202];
	static const uint32_t multi[] = { TU_V(1, 0), TU_V(3, 0), TU_V(9, 9),
					  TU_V(1, 0), TU_V(3, 0) };

	for (unsigned i = 0; i < 202; i++)
		many[i] = TU_V(3, 0);
	/* Huge counts, in a short and in a long enough packet. */
	bad_negotiation(0xffff, 0xffff, ok, 2, 16, false);
	bad_negotiation(101, 1, many, 102, (uint16_t)(8 + 4 * 102), false);
	bad_negotiation(1, 101, many, 102, (uint16_t)(8 + 4 * 102), false);
	/* Counts larger than icmsgsize covers. */
	bad_negotiation(1, 1, ok, 2, 12, false);
	bad_negotiation(2, 2, ok, 2, 16, false);
	/* icmsgsize below the counts. */
	bad_negotiation(1, 1, ok, 2, 6, false);
	bad_negotiation(1, 1, ok, 2, 0, false);
	/* One list empty. */
	bad_negotiation(1, 0, ok, 2, 16, false);
	bad_negotiation(0, 1, ok, 2, 16, false);
	/* Versions we did not offer. */
	bad_negotiation(1, 1, fw2, 2, 16, false);
	bad_negotiation(1, 1, sv4, 2, 16, false);
	bad_negotiation(1, 1, zero, 2, 16, false);
	/* 0/0: the guest found nothing (not a protocol error, same result). */
	bad_negotiation(0, 0, ok, 2, 16, false);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_UNSUPPORTED), 13);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_CONNECTED), 0);
	/* A longer list than Linux sends: the highest versions we offered. */
	bad_negotiation(3, 2, multi, 5, (uint16_t)(8 + 4 * 5), true);
	/* And the plain Linux answer, still fine after all that. */
	bad_negotiation(1, 1, ok, 2, 16, true);
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_CONNECTED), 2);
}

static void test_bad_service_answers(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	static uint8_t buf[8192];
	struct tu_pkt req;
	struct ic_hdr h;

	for (int round = 0; round < 3; round++) {
		assert_true(tu_recv(relid, &req));
		as_answer(&req, buf);
		buf[IC_HDR_LEN] += 1; /* seq + 1 */
		h = tu_hdr(&req);
		h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
		switch (round) {
		case 0: /* body too short for the sequence number */
			h.ic.icmsgsize = 4;
			break;
		case 1: /* failure status */
			h.ic.status = IC_E_FAIL;
			break;
		case 2: /* a shutdown answer on the heartbeat channel: dropped,
			 * the request stays outstanding until its timeout */
			h.ic.icmsgtype = IC_MSGTYPE_SHUTDOWN;
			break;
		}
		set_hdr(buf, &h);
		assert_int_equal(tu_send(relid, req.trans_id, buf, req.len), 0);
		tu_tick(1000);
	}
	assert_int_equal(tu_count_events("heartbeat", IC_EVENT_HEARTBEAT_OK), 0);
	/* Round 2's request is still outstanding: nothing new yet. */
	assert_false(tu_recv(relid, &req));
	tu_tick(1000);
	tu_tick(1000);
	assert_string_equal(tu_status("heartbeat"), "lost");
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("heartbeat"), "ok");

	/* Answers nobody asked for, on the shutdown channel. */
	{
		struct tu_guest sg = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
		uint32_t sd = tu_open_negotiated(sd_class, &sg);

		h = tu_hdr(&sg.last);
		h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
		h.ic.icmsgtype = IC_MSGTYPE_SHUTDOWN;
		h.ic.icmsgsize = 0;
		h.pipe.msgsize = 20;
		memset(buf, 0, 64);
		set_hdr(buf, &h);
		for (uint64_t id = 0; id < 5; id++)
			assert_int_equal(tu_send(sd, id, buf, 32), 0);
		assert_string_equal(tu_status("shutdown"), "connected");
		assert_int_equal(tu_count_events("shutdown", IC_EVENT_SHUTDOWN_ACCEPTED), 0);
		/* A short shutdown answer is still an answer (Linux echoes
		 * the whole request, but only the header matters). */
		assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
		assert_true(tu_recv(sd, &req));
		h = tu_hdr(&req);
		h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
		h.ic.icmsgsize = 0;
		h.pipe.msgsize = 20;
		set_hdr(buf, &h);
		assert_int_equal(tu_send(sd, req.trans_id, buf, 32), 0);
		assert_string_equal(tu_status("shutdown"), "shutdown accepted");
	}
}

static void test_flood(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	struct tu_chan *c = &tu.chans[relid];
	uint8_t junk[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	unsigned n = 0;
	bool sig;

	/* Fill the guest's ring without signalling, then signal once. */
	while (ring_send(&c->tx, VMBUS_PKT_DATA_INBAND, 0, n, junk, sizeof(junk), &sig) == 0)
		n++;
	assert_true(n > 256);
	vmbus_server_signal(tu.srv, c->conn_id);
	/* One notify handles a bounded batch... */
	assert_int_not_equal(c->tx.ctrl->read_index, c->tx.ctrl->write_index);
	/* ...the tick does the rest. */
	for (int i = 0; i < 4; i++)
		tu_tick(250);
	assert_int_equal(c->tx.ctrl->read_index, c->tx.ctrl->write_index);
	tu_guest_run(relid, &g);
	assert_string_equal(tu_status("heartbeat"), "ok");
}

static void test_corrupt_ring(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	uint32_t relid = tu_open_negotiated(hb_class, &g);
	struct tu_chan *c = &tu.chans[relid];
	uint32_t saved = c->tx.ctrl->write_index;

	assert_true(tu_guest_step(relid, &g));
	/* The guest scribbles on its write index: the channel breaks. */
	c->tx.ctrl->write_index = 0xfffffff1;
	vmbus_server_signal(tu.srv, c->conn_id);
	c->tx.ctrl->write_index = saved;
	for (int i = 0; i < 8; i++)
		tu_tick(1000);
	assert_string_equal(tu_status("heartbeat"), "lost");
	/* And the host->guest ring's read index. */
	tu_close(relid);
	g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	relid = tu_open_negotiated(hb_class, &g);
	c = &tu.chans[relid];
	c->rx.ctrl->read_index = 0x7;
	for (int i = 0; i < 8; i++)
		tu_tick(1000);
	assert_string_equal(tu_status("heartbeat"), "lost");
	assert_int_equal(ic_request_shutdown(tu.ic, false), -ENOTCONN);
	/* Reopening recovers. */
	c->rx.ctrl->read_index = 0;
	tu_close(relid);
	g = tu_linux_guest(IC_MSGTYPE_HEARTBEAT);
	relid = tu_open_negotiated(hb_class, &g);
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("heartbeat"), "ok");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_framing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_negotiation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_service_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flood, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_ring, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
