/* Time sync IC against the real VMBus server and a Linux-like guest: the
 * SYNC right after negotiation carrying the host's UTC as FILETIME, the
 * version 4 reference time, periodic SAMPLEs, unanswered samples, a new
 * SYNC on reopen, the clock helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#define TU_ASSERT(x) assert_true(x)
#include "ic_test_util.h"
#include "ic/ic_service.h"

static const guid_t ts_class = IC_CLASS_TIMESYNC;

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

/* The service versions the host's negotiation request offered. */
static unsigned offered(const struct tu_pkt *p, uint32_t *out)
{
	struct ic_negotiate n;

	memcpy(&n, p->data + IC_HDR_LEN, sizeof(n));
	for (unsigned i = 0; i < n.icmsg_vercnt; i++)
		out[i] = tu_get_ver(p->data + IC_HDR_LEN + 8 + 4 * (n.icframe_vercnt + i));
	return n.icmsg_vercnt;
}

static struct ic_timesync v3_sample(const struct tu_guest *g)
{
	struct ic_hdr h = tu_hdr(&g->last);
	struct ic_timesync m;

	assert_int_equal(h.ic.icmsgtype, IC_MSGTYPE_TIMESYNC);
	assert_int_equal(h.ic.icmsgsize, sizeof(m));
	assert_int_equal(h.pipe.msgsize, 20 + sizeof(m));
	assert_int_equal(h.ic.icflags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
	memcpy(&m, g->last.data + IC_HDR_LEN, sizeof(m));
	return m;
}

static struct ic_timesync_ref v4_sample(const struct tu_guest *g)
{
	struct ic_hdr h = tu_hdr(&g->last);
	struct ic_timesync_ref m;

	assert_int_equal(h.ic.icmsgtype, IC_MSGTYPE_TIMESYNC);
	assert_int_equal(h.ic.icvermsg.major, 4);
	assert_int_equal(h.ic.icmsgsize, sizeof(m));
	memcpy(&m, g->last.data + IC_HDR_LEN, sizeof(m));
	return m;
}

static void test_filetime(void **state)
{
	struct timespec ts;
	uint64_t ft, ref = 77;
	const uint64_t per_s = 10000000;

	assert_int_equal(ic_filetime_from_unix(0, 0), IC_FILETIME_UNIX_EPOCH);
	assert_int_equal(ic_filetime_from_unix(0, 0), 116444736000000000ull);
	/* 2024-01-01T00:00:00Z */
	assert_int_equal(ic_filetime_from_unix(1704067200, 0), 133485408000000000ull);
	assert_int_equal(ic_filetime_from_unix(1704067200, 999999999),
			 133485408000000000ull + 9999999);
	assert_int_equal(ic_filetime_from_unix(1, 150), IC_FILETIME_UNIX_EPOCH + per_s + 1);
	/* The default clock: UTC now, no reference time. */
	ic_host_set_clock(tu.ic, NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	assert_int_equal(ic_utc_now(tu.ic, &ft, &ref), 0);
	assert_true(ft >= ic_filetime_from_unix(ts.tv_sec, ts.tv_nsec));
	assert_true(ft < ic_filetime_from_unix(ts.tv_sec + 5, ts.tv_nsec));
	assert_int_equal(ref, 0);
}

static void test_sync_v3(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_TIMESYNC);
	uint32_t relid = tu_open(ts_class), vers[8];
	struct ic_timesync m;
	uint64_t t0 = tu.filetime;

	/* No reference time: 4.0 is not offered, Linux takes 3.0. */
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(offered(&g.last, vers), 2);
	assert_int_equal(vers[0], TU_V(1, 0));
	assert_int_equal(vers[1], TU_V(3, 0));
	assert_int_equal(g.sv_ver, TU_V(3, 0));
	assert_string_equal(tu_status("timesync"), "connected");
	assert_true(ic_host_connected(tu.ic, "timesync"));
	/* The SYNC went out at once. */
	assert_true(tu_guest_step(relid, &g));
	m = v3_sample(&g);
	assert_int_equal(m.flags, IC_TIMESYNC_FLAG_SYNC);
	assert_int_equal(m.parenttime, t0);
	assert_int_equal(m.parenttime, 133485408000000000ull);
	assert_int_equal(m.childtime, 0);
	assert_int_equal(m.roundtriptime, 0);
	assert_int_equal(tu_hdr(&g.last).ic.icvermsg.major, 3);
	assert_string_equal(tu_status("timesync"), "ok");
	assert_false(tu_guest_step(relid, &g));
	/* SAMPLEs every 5 s with the current time. */
	for (int k = 1; k <= 3; k++) {
		for (int i = 0; i < 4; i++) {
			tu_tick(1000);
			assert_false(tu_guest_step(relid, &g));
		}
		tu_tick(1000);
		assert_true(tu_guest_step(relid, &g));
		m = v3_sample(&g);
		assert_int_equal(m.flags, IC_TIMESYNC_FLAG_SAMPLE);
		assert_int_equal(m.parenttime, t0 + (uint64_t)k * 5 * 10000000);
	}
	assert_int_equal(g.nr_msgs, 4);
}

static void test_sync_v4(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_TIMESYNC);
	uint32_t relid, vers[8];
	struct ic_timesync_ref m;

	tu_set_clock(true);
	relid = tu_open(ts_class);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(offered(&g.last, vers), 3);
	assert_int_equal(vers[2], TU_V(4, 0));
	assert_int_equal(g.sv_ver, TU_V(4, 0));
	assert_true(tu_guest_step(relid, &g));
	m = v4_sample(&g);
	assert_int_equal(m.flags, IC_TIMESYNC_FLAG_SYNC);
	assert_int_equal(m.parenttime, tu.filetime);
	assert_int_equal(m.vmreferencetime, tu.reftime);
	assert_int_equal(m.leapflags, 0);
	assert_int_equal(m.stratum, 0);
	tu_tick(5000);
	assert_true(tu_guest_step(relid, &g));
	m = v4_sample(&g);
	assert_int_equal(m.flags, IC_TIMESYNC_FLAG_SAMPLE);
	assert_int_equal(m.parenttime, tu.filetime);
	assert_int_equal(m.vmreferencetime, tu.reftime);
	/* A guest without 4.0 gets the old format from the same host. */
	tu_close(relid);
	{
		static const uint32_t sv[] = { TU_V(3, 0), TU_V(1, 0) };
		struct tu_guest g3 = { .fw = tu_linux_fw, .nfw = 2, .sv = sv, .nsv = 2,
				       .msgtype = IC_MSGTYPE_TIMESYNC };

		relid = tu_open_negotiated(ts_class, &g3);
		assert_int_equal(g3.sv_ver, TU_V(3, 0));
		assert_true(tu_guest_step(relid, &g3));
		assert_int_equal(v3_sample(&g3).flags, IC_TIMESYNC_FLAG_SYNC);
		assert_int_equal(v3_sample(&g3).parenttime, tu.filetime);
	}
}

static void test_old_guest_v1(void **state)
{
	static const uint32_t fw[] = { TU_V(1, 0) };
	static const uint32_t sv[] = { TU_V(1, 0) };
	struct tu_guest g = { .fw = fw, .nfw = 1, .sv = sv, .nsv = 1,
			      .msgtype = IC_MSGTYPE_TIMESYNC };
	uint32_t relid = tu_open_negotiated(ts_class, &g);
	struct ic_hdr h;

	assert_true(tu_guest_step(relid, &g));
	h = tu_hdr(&g.last);
	assert_int_equal(h.ic.icverframe.major, 1);
	assert_int_equal(h.ic.icvermsg.major, 1);
	assert_int_equal(v3_sample(&g).flags, IC_TIMESYNC_FLAG_SYNC);
}

static void test_unanswered(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_TIMESYNC);
	uint32_t relid = tu_open_negotiated(ts_class, &g);
	struct tu_pkt p;
	unsigned n = 0;

	assert_true(tu_recv(relid, &p)); /* the SYNC: taken, never answered */
	for (int i = 0; i < 5; i++)
		tu_tick(1000);
	assert_string_equal(tu_status("timesync"), "no reply");
	/* Samples keep coming regardless, one per period. */
	for (int i = 0; i < 10; i++)
		tu_tick(1000);
	while (tu_recv(relid, &p)) {
		struct ic_timesync m;

		memcpy(&m, p.data + IC_HDR_LEN, sizeof(m));
		assert_int_equal(m.flags, IC_TIMESYNC_FLAG_SAMPLE);
		n++;
	}
	assert_int_equal(n, 3);
	/* The guest answers the next one: ok again. */
	tu_tick(5000);
	assert_true(tu_guest_step(relid, &g));
	assert_string_equal(tu_status("timesync"), "ok");
}

static void test_resync_on_reopen(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_TIMESYNC);
	uint32_t relid = tu_open_negotiated(ts_class, &g);

	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(v3_sample(&g).flags, IC_TIMESYNC_FLAG_SYNC);
	tu_tick(5000);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(v3_sample(&g).flags, IC_TIMESYNC_FLAG_SAMPLE);
	tu_close(relid);
	assert_string_equal(tu_status("timesync"), "not connected");
	tu_tick(60000);
	g = tu_linux_guest(IC_MSGTYPE_TIMESYNC);
	relid = tu_open_negotiated(ts_class, &g);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(v3_sample(&g).flags, IC_TIMESYNC_FLAG_SYNC);
	assert_int_equal(v3_sample(&g).parenttime, tu.filetime);
}

static void test_clock_failure(void **state)
{
	struct tu_guest g = tu_linux_guest(IC_MSGTYPE_TIMESYNC);
	uint32_t relid;

	tu.utc_err = -EIO;
	relid = tu_open_negotiated(ts_class, &g);
	assert_false(tu_guest_step(relid, &g));
	tu_tick(1000);
	assert_false(tu_guest_step(relid, &g));
	/* The clock recovers: the SYNC goes out at the next tick. */
	tu.utc_err = 0;
	tu_tick(1000);
	assert_true(tu_guest_step(relid, &g));
	assert_int_equal(v3_sample(&g).flags, IC_TIMESYNC_FLAG_SYNC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_filetime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_v3, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_v4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_guest_v1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unanswered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resync_on_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clock_failure, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
