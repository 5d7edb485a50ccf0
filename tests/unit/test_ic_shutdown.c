/* Shutdown IC against the real VMBus server and a Linux-like guest:
 * -ENOTCONN before negotiation, the request packet, the guest's answers,
 * timeouts, old guests, the display message encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define TU_ASSERT(x) assert_true(x)
#include "ic_test_util.h"

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

/* The shutdown request body of the guest's last packet. */
static struct ic_shutdown last_request(const struct tu_guest *g, struct ic_hdr *h)
{
	struct ic_shutdown m;

	*h = tu_hdr(&g->last);
	assert_true(g->last.len >= IC_HDR_LEN + sizeof(m));
	memcpy(&m, g->last.data + IC_HDR_LEN, sizeof(m));
	return m;
}

static void test_not_connected(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
	uint32_t relid;

	assert_int_equal(ic_request_shutdown(tu.ic, false), -ENOTCONN);
	assert_int_equal(ic_request_shutdown(NULL, false), -ENOTCONN);
	relid = tu_open(sd_class);
	assert_int_not_equal(relid, 0);
	/* Negotiation under way. */
	assert_string_equal(tu_status("shutdown"), "negotiating");
	assert_int_equal(ic_request_shutdown(tu.ic, true), -ENOTCONN);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(g.sv_ver, TU_V(3, 2));
	assert_int_equal(g.fw_ver, TU_V(3, 0));
	assert_string_equal(tu_status("shutdown"), "connected");
	assert_true(ic_host_connected(tu.ic, "shutdown"));
	/* Nothing is sent until asked. */
	tu_tick(1000);
	assert_false(tu_guest_step(relid, &g));
	tu_close(relid);
	assert_int_equal(ic_request_shutdown(tu.ic, false), -ENOTCONN);
}

static void test_power_off(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
	uint32_t relid = tu_open_negotiated(sd_class, &g);
	struct ic_shutdown m;
	struct ic_hdr h;

	assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
	assert_string_equal(tu_status("shutdown"), "shutdown requested");
	/* One at a time. */
	assert_int_equal(ic_request_shutdown(tu.ic, true), -EBUSY);
	assert_true(tu_guest_step(relid, &g));
	m = last_request(&g, &h);
	assert_int_equal(g.last.type, VMBUS_PKT_DATA_INBAND);
	assert_int_equal(h.pipe.flags, IC_PIPE_FLAG_DATA);
	assert_int_equal(h.pipe.msgsize, 20 + 2060);
	assert_int_equal(h.ic.icmsgtype, IC_MSGTYPE_SHUTDOWN);
	assert_int_equal(h.ic.icmsgsize, 2060);
	assert_int_equal(h.ic.icflags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
	assert_int_equal(h.ic.icverframe.major, 3);
	assert_int_equal(h.ic.icverframe.minor, 0);
	assert_int_equal(h.ic.icvermsg.major, 3);
	assert_int_equal(h.ic.icvermsg.minor, 2);
	assert_int_equal(h.ic.status, 0);
	assert_int_equal(m.flags, 0);
	assert_int_equal(m.reason_code, IC_SHUTDOWN_REASON_PLANNED);
	assert_int_equal(m.timeout_seconds, 0);
	for (unsigned i = 0; i < sizeof(m.display_message); i++)
		assert_int_equal(m.display_message[i], 0);
	assert_int_equal(g.nr_msgs, 1);
	/* The guest said yes. */
	assert_string_equal(tu_status("shutdown"), "shutdown accepted");
	assert_int_equal(tu_count_events("shutdown", IC_EVENT_SHUTDOWN_ACCEPTED), 1);
	assert_int_equal(tu_count_events("shutdown", IC_EVENT_SHUTDOWN_FAILED), 0);
	/* A guest that is slow to die can be asked again. */
	assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(tu_count_events("shutdown", IC_EVENT_SHUTDOWN_ACCEPTED), 2);
	/* The guest goes away: disconnected. */
	tu_close(relid);
	assert_string_equal(tu_status("shutdown"), "not connected");
	assert_int_equal(tu_count_events("shutdown", IC_EVENT_DISCONNECTED), 1);
}

static void test_reboot_force_message(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
	uint32_t relid = tu_open_negotiated(sd_class, &g);
	static const char text[] = "Host maintenance";
	struct ic_shutdown m;
	struct ic_hdr h;

	assert_int_equal(ic_request_shutdown_msg(tu.ic, true, true, text), 0);
	assert_string_equal(tu_status("shutdown"), "reboot requested");
	assert_true(tu_guest_step(relid, &g));
	m = last_request(&g, &h);
	assert_int_equal(m.flags, IC_SHUTDOWN_FLAG_RESTART | IC_SHUTDOWN_FLAG_FORCE);
	for (unsigned i = 0; i < sizeof(text) - 1; i++) {
		assert_int_equal(m.display_message[2 * i], (uint8_t)text[i]);
		assert_int_equal(m.display_message[2 * i + 1], 0);
	}
	assert_int_equal(m.display_message[2 * (sizeof(text) - 1)], 0);
	assert_int_equal(m.display_message[2 * (sizeof(text) - 1) + 1], 0);
	assert_string_equal(tu_status("shutdown"), "reboot accepted");
	/* Plain reboot: flags 2. */
	assert_int_equal(ic_request_shutdown(tu.ic, true), 0);
	assert_true(tu_guest_step(relid, &g));
	m = last_request(&g, &h);
	assert_int_equal(m.flags, IC_SHUTDOWN_FLAG_RESTART);
	/* Forced power off: flags 1. */
	assert_int_equal(ic_request_shutdown_msg(tu.ic, false, true, NULL), 0);
	assert_true(tu_guest_step(relid, &g));
	m = last_request(&g, &h);
	assert_int_equal(m.flags, IC_SHUTDOWN_FLAG_FORCE);
	assert_string_equal(tu_status("shutdown"), "shutdown accepted");
}

static void test_message_encoding(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
	uint32_t relid = tu_open_negotiated(sd_class, &g);
	/* "é" (2 bytes), "€" (3 bytes), U+1F600 (4 bytes: a surrogate pair),
	 * a lone continuation byte and a truncated sequence (U+FFFD each). */
	static const char text[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x80\xe2\x82";
	static const uint16_t want[] = { 0xe9, 0x20ac, 0xd83d, 0xde00, 0xfffd, 0xfffd, 0 };
	char *longtext = malloc(3000);
	struct ic_shutdown m;
	struct ic_hdr h;

	assert_int_equal(ic_request_shutdown_msg(tu.ic, false, false, text), 0);
	assert_true(tu_guest_step(relid, &g));
	m = last_request(&g, &h);
	for (unsigned i = 0; i < sizeof(want) / 2; i++) {
		uint16_t u = (uint16_t)(m.display_message[2 * i] | m.display_message[2 * i + 1] << 8);

		assert_int_equal(u, want[i]);
	}
	/* Too long: 1023 units and the NUL. */
	assert_non_null(longtext);
	memset(longtext, 'x', 2999);
	longtext[2999] = 0;
	assert_int_equal(ic_request_shutdown_msg(tu.ic, false, false, longtext), 0);
	assert_true(tu_guest_step(relid, &g));
	m = last_request(&g, &h);
	assert_int_equal(m.display_message[2 * 1022], 'x');
	assert_int_equal(m.display_message[2 * 1023], 0);
	assert_int_equal(m.display_message[2 * 1023 + 1], 0);
	/* A surrogate pair never straddles the end. */
	for (int i = 0; i + 4 <= 2999; i += 4)
		memcpy(longtext + i, "\xf0\x9f\x98\x80", 4);
	longtext[2996] = 0;
	memmove(longtext + 2, longtext, 2994); /* 2 + 2 * 510 units, then no room */
	longtext[0] = 'a';
	longtext[1] = 0x7f;
	assert_int_equal(ic_request_shutdown_msg(tu.ic, false, false, longtext), 0);
	assert_true(tu_guest_step(relid, &g));
	m = last_request(&g, &h);
	{
		uint16_t last = (uint16_t)(m.display_message[2 * 1022] |
					   m.display_message[2 * 1022 + 1] << 8);
		uint16_t next = (uint16_t)(m.display_message[2 * 1021] |
					   m.display_message[2 * 1021 + 1] << 8);

		/* Unit 1022 would be a lone high surrogate: left out. */
		assert_int_equal(last, 0);
		assert_int_equal(next, 0xde00);
	}
	free(longtext);
}

static void test_refused(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
	uint32_t relid = tu_open_negotiated(sd_class, &g);

	g.fail_all = true;
	assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("shutdown"), "refused");
	assert_int_equal(tu_count_events("shutdown", IC_EVENT_SHUTDOWN_FAILED), 1);
	assert_int_equal(tu.events[tu.nr_events - 1].err, -EIO);
	/* Requests are possible again. */
	g.fail_all = false;
	assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("shutdown"), "shutdown accepted");
}

static void test_timeout(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
	uint32_t relid = tu_open_negotiated(sd_class, &g);
	struct tu_pkt p;
	struct ic_hdr h;

	assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
	assert_true(tu_recv(relid, &p)); /* the guest takes it and hangs */
	for (int i = 0; i < 9; i++) {
		tu_tick(1000);
		assert_string_equal(tu_status("shutdown"), "shutdown requested");
	}
	tu_tick(1000);
	assert_string_equal(tu_status("shutdown"), "no reply");
	assert_int_equal(tu_count_events("shutdown", IC_EVENT_SHUTDOWN_FAILED), 1);
	assert_int_equal(tu.events[tu.nr_events - 1].err, -ETIMEDOUT);
	/* Its late answer is dropped. */
	h = tu_hdr(&p);
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	memcpy(p.data, &h, sizeof(h));
	assert_int_equal(tu_send(relid, p.trans_id, p.data, p.len), 0);
	assert_string_equal(tu_status("shutdown"), "no reply");
	assert_int_equal(tu_count_events("shutdown", IC_EVENT_SHUTDOWN_ACCEPTED), 0);
	/* A new request works. */
	assert_int_equal(ic_request_shutdown(tu.ic, true), 0);
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("shutdown"), "reboot accepted");
}

static void test_old_guest(void **state)
{
	/* Shutdown 3.0 (before restart existed) and 1.0. */
	static const uint32_t sv30[] = { TU_V(3, 0), TU_V(1, 0) };
	static const uint32_t fw1[] = { TU_V(1, 0) };
	static const uint32_t sv1[] = { TU_V(1, 0) };
	struct tu_guest g = { .fw = tu_linux_fw, .nfw = 2, .sv = sv30, .nsv = 2,
			      .msgtype = IC_MSGTYPE_SHUTDOWN };
	uint32_t relid = tu_open_negotiated(sd_class, &g);
	struct ic_hdr h;

	assert_int_equal(g.sv_ver, TU_V(3, 0));
	assert_int_equal(ic_request_shutdown(tu.ic, true), -EOPNOTSUPP);
	assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
	assert_true(tu_guest_step(relid, &g));
	last_request(&g, &h);
	assert_int_equal(h.ic.icvermsg.major, 3);
	assert_int_equal(h.ic.icvermsg.minor, 0);
	tu_close(relid);
	g = (struct tu_guest){ .fw = fw1, .nfw = 1, .sv = sv1, .nsv = 1,
			       .msgtype = IC_MSGTYPE_SHUTDOWN };
	relid = tu_open_negotiated(sd_class, &g);
	assert_int_equal(g.sv_ver, TU_V(1, 0));
	assert_int_equal(ic_request_shutdown(tu.ic, false), 0);
	assert_true(tu_guest_step(relid, &g));
	last_request(&g, &h);
	assert_int_equal(h.ic.icverframe.major, 1);
	assert_int_equal(h.ic.icvermsg.major, 1);
	assert_string_equal(tu_status("shutdown"), "shutdown accepted");
}

/* SIGTERM before the guest's shutdown service is up: the VMM waits for
 * IC_EVENT_CONNECTED and asks from the callback. */
static bool sigterm_pending;
static int sigterm_ret = 1;

static void on_event(const char *svc, enum ic_event ev, int err)
{
	if (sigterm_pending && ev == IC_EVENT_CONNECTED && !strcmp(svc, "shutdown")) {
		sigterm_ret = ic_request_shutdown(tu.ic, false);
		sigterm_pending = false;
	}
}

static void test_request_from_callback(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_SHUTDOWN);
	uint32_t relid;

	tu.on_event = on_event;
	sigterm_pending = ic_request_shutdown(tu.ic, false) == -ENOTCONN;
	assert_true(sigterm_pending);
	relid = tu_open_negotiated(sd_class, &g);
	assert_false(sigterm_pending);
	assert_int_equal(sigterm_ret, 0);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(g.nr_msgs, 1);
	assert_string_equal(tu_status("shutdown"), "shutdown accepted");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_not_connected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reboot_force_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_encoding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_from_callback, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
