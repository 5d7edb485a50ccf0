/* Time sync IC: right after negotiation one SYNC message (the guest steps
 * its clock to the host's UTC), then a SAMPLE every IC_TIMESYNC_PERIOD_MS
 * (the guest keeps it as the reference of its "hyperv" PTP clock; chrony
 * or similar disciplines the clock with it). Like Hyper-V, a new channel
 * (boot, resume, driver reload) gets a new SYNC.
 *
 * Version 4.0 samples carry the guest's reference time taken with the host
 * time, so the guest can correct for the delivery delay; it is offered
 * only when the host's clock provides a reference time. */
#include <errno.h>
#include <string.h>

#include "ic/ic_service.h"
#include "util/log.h"

struct ts_state {
	bool need_sync;       /* the next message is a SYNC */
	bool acked;           /* a message was answered since negotiation */
	bool unanswered;      /* the last message timed out */
	uint64_t next_send_ms;
};

static const struct ic_version ts_versions[] = {
	IC_TS_VERSION_1, IC_TS_VERSION_3, IC_TS_VERSION_4,
};

static bool ts_version_ok(struct ic_chan *c, struct ic_version v)
{
	return v.major < 4 || ic_has_reftime(ic_chan_host(c));
}

static void ts_send(struct ic_chan *c, uint64_t now)
{
	struct ts_state *s = ic_chan_state(c);
	uint8_t flags = s->need_sync ? IC_TIMESYNC_FLAG_SYNC : IC_TIMESYNC_FLAG_SAMPLE;
	uint64_t ft, ref;
	int ret;

	/* A sample nobody answered is worthless now: send the fresh one. */
	if (ic_chan_busy(c))
		ic_chan_abandon(c);
	/* Retry in a tick if anything below fails. */
	s->next_send_ms = now + IC_TICK_MS;
	ret = ic_utc_now(ic_chan_host(c), &ft, &ref);
	if (ret < 0) {
		log_ratelimited(LOG_WARN, "ic timesync: no host time: %s", strerror(-ret));
		return;
	}
	if (ic_chan_version(c).major >= 4) {
		struct ic_timesync_ref m;

		memset(&m, 0, sizeof(m));
		m.parenttime = ft;
		m.vmreferencetime = ref;
		m.flags = flags;
		ret = ic_chan_request(c, IC_MSGTYPE_TIMESYNC, &m, sizeof(m), IC_TIMESYNC_PERIOD_MS);
	} else {
		struct ic_timesync m;

		memset(&m, 0, sizeof(m));
		m.parenttime = ft;
		m.flags = flags;
		ret = ic_chan_request(c, IC_MSGTYPE_TIMESYNC, &m, sizeof(m), IC_TIMESYNC_PERIOD_MS);
	}
	if (ret < 0)
		return;
	s->need_sync = false;
	s->next_send_ms = now + IC_TIMESYNC_PERIOD_MS;
}

static void ts_negotiated(struct ic_chan *c)
{
	struct ts_state *s = ic_chan_state(c);

	memset(s, 0, sizeof(*s));
	s->need_sync = true;
	ts_send(c, ic_now_ms(ic_chan_host(c)));
}

static void ts_response(struct ic_chan *c, const struct ic_reply *r)
{
	struct ts_state *s = ic_chan_state(c);

	if (r->err) {
		s->unanswered = true;
		return;
	}
	if (r->status != IC_S_OK) {
		log_ratelimited(LOG_WARN, "ic timesync: guest answered status %#x", r->status);
		return;
	}
	s->acked = true;
	s->unanswered = false;
}

static void ts_timer(struct ic_chan *c, uint64_t now)
{
	struct ts_state *s = ic_chan_state(c);

	if (now + IC_TICK_MS / 2 >= s->next_send_ms)
		ts_send(c, now);
}

static const char *ts_status(struct ic_chan *c, uint64_t now)
{
	struct ts_state *s = ic_chan_state(c);

	if (s->unanswered)
		return "no reply";
	return s->acked ? "ok" : "connected";
}

const struct ic_service ic_timesync = {
	.name = "timesync",
	.class_guid = IC_CLASS_TIMESYNC,
	.instance_guid = IC_INSTANCE_TIMESYNC,
	.versions = ts_versions,
	.nr_versions = sizeof(ts_versions) / sizeof(ts_versions[0]),
	.state_size = sizeof(struct ts_state),
	.version_ok = ts_version_ok,
	.on_negotiated = ts_negotiated,
	.on_response = ts_response,
	.on_timer = ts_timer,
	.status = ts_status,
};
