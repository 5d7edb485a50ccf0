/* Heartbeat IC: once negotiated, a request every IC_HEARTBEAT_PERIOD_MS
 * carrying a sequence number; the guest answers with the number plus one,
 * and the next request carries that answer (the sequence advances by one
 * per round trip, and also past a request that went unanswered). The guest
 * is "ok" while good answers keep coming, "lost" after IC_HEARTBEAT_LOST_MS
 * without one. */
#include <errno.h>
#include <string.h>

#include "ic/ic_service.h"
#include "util/log.h"

struct hb_state {
	uint64_t seq;           /* next sequence number to send */
	uint64_t sent_seq;      /* that of the outstanding request */
	uint64_t since_ms;      /* negotiated at */
	uint64_t last_reply_ms; /* last good answer */
	uint64_t next_send_ms;
	bool replied;           /* a good answer since negotiation */
	bool lost;              /* reported lost */
};

static const struct ic_version hb_versions[] = { IC_HB_VERSION_1, IC_HB_VERSION_3 };

static void hb_send(struct ic_chan *c, uint64_t now)
{
	struct hb_state *s = ic_chan_state(c);
	struct ic_heartbeat m;

	if (ic_chan_busy(c))
		return;
	memset(&m, 0, sizeof(m));
	m.seq_num = s->seq;
	if (ic_chan_request(c, IC_MSGTYPE_HEARTBEAT, &m, sizeof(m), IC_HEARTBEAT_TIMEOUT_MS) == 0) {
		s->sent_seq = s->seq;
		s->next_send_ms = now + IC_HEARTBEAT_PERIOD_MS;
	}
}

static void hb_negotiated(struct ic_chan *c)
{
	struct hb_state *s = ic_chan_state(c);
	uint64_t now = ic_now_ms(ic_chan_host(c));

	memset(s, 0, sizeof(*s));
	s->since_ms = now;
	hb_send(c, now);
}

static void hb_response(struct ic_chan *c, const struct ic_reply *r)
{
	struct hb_state *s = ic_chan_state(c);
	uint64_t seq;

	s->seq = s->sent_seq + 1;
	if (r->err)
		return;
	if (r->status != IC_S_OK) {
		log_ratelimited(LOG_WARN, "ic heartbeat: guest answered status %#x", r->status);
		return;
	}
	if (r->body_len < sizeof(seq)) {
		log_ratelimited(LOG_WARN, "ic heartbeat: answer too short (%u bytes)", r->body_len);
		return;
	}
	memcpy(&seq, r->body, sizeof(seq));
	if (seq != s->sent_seq + 1) {
		log_ratelimited(LOG_WARN, "ic heartbeat: sequence %llu in answer to %llu",
				(unsigned long long)seq, (unsigned long long)s->sent_seq);
		return;
	}
	s->last_reply_ms = ic_now_ms(ic_chan_host(c));
	if (!s->replied || s->lost) {
		s->replied = true;
		s->lost = false;
		ic_emit(c, IC_EVENT_HEARTBEAT_OK, 0);
	}
}

static bool hb_alive(const struct hb_state *s, uint64_t now)
{
	uint64_t ref = s->replied ? s->last_reply_ms : s->since_ms;

	return now - ref < IC_HEARTBEAT_LOST_MS;
}

static void hb_timer(struct ic_chan *c, uint64_t now)
{
	struct hb_state *s = ic_chan_state(c);

	if (!hb_alive(s, now) && !s->lost) {
		s->lost = true;
		log_ratelimited(LOG_WARN, "ic heartbeat: guest lost (no answer for %llu ms)",
				(unsigned long long)(now - (s->replied ? s->last_reply_ms
								      : s->since_ms)));
		ic_emit(c, IC_EVENT_HEARTBEAT_LOST, 0);
	}
	/* Half a tick early counts as due, so that timer jitter does not
	 * stretch the period to two ticks. */
	if (now + IC_TICK_MS / 2 >= s->next_send_ms)
		hb_send(c, now);
}

static const char *hb_status(struct ic_chan *c, uint64_t now)
{
	struct hb_state *s = ic_chan_state(c);

	if (!hb_alive(s, now))
		return "lost";
	return s->replied ? "ok" : "unknown";
}

const struct ic_service ic_heartbeat = {
	.name = "heartbeat",
	.class_guid = IC_CLASS_HEARTBEAT,
	.instance_guid = IC_INSTANCE_HEARTBEAT,
	.versions = hb_versions,
	.nr_versions = sizeof(hb_versions) / sizeof(hb_versions[0]),
	.state_size = sizeof(struct hb_state),
	.on_negotiated = hb_negotiated,
	.on_response = hb_response,
	.on_timer = hb_timer,
	.status = hb_status,
};
