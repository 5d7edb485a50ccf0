/* The IC framework: VMBus devices for the services of the table, version
 * negotiation, request/response transactions with timeouts, the timer and
 * the host API. See ic.h and ic_service.h. */
#include "ic/ic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/loop.h"
#include "ic/ic_proto.h"
#include "ic/ic_service.h"
#include "util/clock.h"
#include "util/log.h"
#include "vmbus/server.h"

/* At most this many guest packets per notify; the rest wait for the next
 * tick (a guest refilling its ring cannot hold the loop). */
#define IC_DRAIN_BUDGET 256u

#define IC_MAX_OFFERED 8u

enum ic_state {
	IC_ST_CLOSED,      /* channel not open */
	IC_ST_NEGOTIATE,   /* open; the negotiation request still has to be sent */
	IC_ST_NEGOTIATING, /* negotiation request sent */
	IC_ST_READY,
	IC_ST_UNSUPPORTED, /* no common version, or a bogus negotiation reply */
};

struct ic_chan {
	struct ic_host *host; /* NULL once the host is freed (orphaned) */
	const struct ic_service *svc;
	unsigned idx; /* in the host's table */
	struct vmbus_device_class cls;
	struct vmbus_device *dev;
	struct vmbus_channel *ch; /* non-NULL while open */
	enum ic_state state;
	struct ic_version fw, ver; /* negotiated */
	/* What the negotiation request offered. */
	struct ic_version offered[IC_MAX_OFFERED];
	unsigned nr_offered;
	/* The outstanding request. */
	bool pending;
	uint16_t pending_type;
	uint64_t pending_id;
	uint64_t deadline_ms; /* 0: none */
	uint64_t next_id;
	void *state_buf;
};

struct ic_host {
	struct vmbus_server *srv;
	struct loop *loop;
	struct loop_timer timer;
	bool have_timer;
	struct ic_clock clock;
	ic_event_fn event_fn;
	void *event_ctx;
	unsigned nr;
	struct ic_chan *chans[IC_MAX_SERVICES];
	/* One message each way at a time (loop thread); separate so that a
	 * service may send while it reads an answer. */
	uint8_t rxbuf[IC_MAX_MSG_LEN];
	uint8_t txbuf[IC_MAX_MSG_LEN];
};

static const struct ic_version fw_versions[] = { IC_FW_VERSION_1, IC_FW_VERSION_3 };
#define NR_FW_VERSIONS (sizeof(fw_versions) / sizeof(fw_versions[0]))

/* ---- default clock ---------------------------------------------------------- */

uint64_t ic_filetime_from_unix(int64_t sec, long nsec)
{
	return (uint64_t)sec * 10000000u + (uint64_t)nsec / 100u + IC_FILETIME_UNIX_EPOCH;
}

static uint64_t default_monotonic_ms(void *ctx)
{
	return mono_ms();
}

static int default_utc_now(void *ctx, uint64_t *filetime, uint64_t *reftime)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return -errno;
	*filetime = ic_filetime_from_unix(ts.tv_sec, ts.tv_nsec);
	if (reftime)
		*reftime = 0;
	return 0;
}

static const struct ic_clock default_clock = {
	.monotonic_ms = default_monotonic_ms,
	.utc_now = default_utc_now,
};

uint64_t ic_now_ms(struct ic_host *h)
{
	return h->clock.monotonic_ms(h->clock.ctx);
}

int ic_utc_now(struct ic_host *h, uint64_t *filetime, uint64_t *reftime)
{
	uint64_t ref = 0;
	int ret = h->clock.utc_now(h->clock.ctx, filetime, h->clock.has_reftime ? &ref : NULL);

	if (reftime)
		*reftime = ref;
	return ret;
}

bool ic_has_reftime(struct ic_host *h)
{
	return h->clock.has_reftime;
}

void ic_host_set_clock(struct ic_host *h, const struct ic_clock *clk)
{
	h->clock = clk ? *clk : default_clock;
}

/* ---- accessors ---------------------------------------------------------------- */

void *ic_chan_state(struct ic_chan *c)
{
	return c->state_buf;
}

struct ic_host *ic_chan_host(struct ic_chan *c)
{
	return c->host;
}

const char *ic_chan_name(const struct ic_chan *c)
{
	return c->svc->name;
}

struct ic_version ic_chan_fw_version(const struct ic_chan *c)
{
	return c->fw;
}

struct ic_version ic_chan_version(const struct ic_chan *c)
{
	return c->ver;
}

bool ic_chan_ready(const struct ic_chan *c)
{
	return c->host && c->state == IC_ST_READY;
}

bool ic_chan_busy(const struct ic_chan *c)
{
	return c->pending;
}

struct ic_chan *ic_host_chan(struct ic_host *h, const struct ic_service *svc)
{
	for (unsigned i = 0; i < h->nr; i++)
		if (h->chans[i] && h->chans[i]->svc == svc)
			return h->chans[i];
	return NULL;
}

void ic_emit(struct ic_chan *c, enum ic_event ev, int err)
{
	struct ic_host *h = c->host;

	if (h && h->event_fn)
		h->event_fn(h->event_ctx, c->svc->name, ev, err);
}

void ic_host_set_event_cb(struct ic_host *h, ic_event_fn fn, void *ctx)
{
	h->event_fn = fn;
	h->event_ctx = ctx;
}

/* ---- sending ------------------------------------------------------------------ */

static int send_msg(struct ic_chan *c, uint16_t type, struct ic_version fw, struct ic_version ver,
		    const void *body, uint32_t len, uint32_t timeout_ms)
{
	struct ic_host *h = c->host;
	struct ic_hdr hdr;
	uint64_t id;
	int ret;

	if (!c->ch)
		return -ENOTCONN;
	if (c->pending)
		return -EBUSY;
	if (len > IC_MAX_MSG_LEN - IC_HDR_LEN)
		return -EMSGSIZE;
	memset(&hdr, 0, sizeof(hdr));
	hdr.pipe.flags = IC_PIPE_FLAG_DATA;
	hdr.pipe.msgsize = (uint32_t)sizeof(struct ic_msg_hdr) + len;
	hdr.ic.icverframe = fw;
	hdr.ic.icmsgtype = type;
	hdr.ic.icvermsg = ver;
	hdr.ic.icmsgsize = (uint16_t)len;
	hdr.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_REQUEST;
	memcpy(h->txbuf, &hdr, sizeof(hdr));
	if (len)
		memcpy(h->txbuf + IC_HDR_LEN, body, len);
	id = ++c->next_id;
	ret = vmbus_chan_send_inband(c->ch, id, h->txbuf, IC_HDR_LEN + len, false);
	if (ret < 0)
		return ret;
	c->pending = true;
	c->pending_type = type;
	c->pending_id = id;
	c->deadline_ms = timeout_ms ? ic_now_ms(h) + timeout_ms : 0;
	return 0;
}

int ic_chan_request(struct ic_chan *c, uint16_t type, const void *body, uint32_t len,
		    uint32_t timeout_ms)
{
	if (!ic_chan_ready(c))
		return -ENOTCONN;
	return send_msg(c, type, c->fw, c->ver, body, len, timeout_ms);
}

void ic_chan_abandon(struct ic_chan *c)
{
	c->pending = false;
}

/* The negotiation request: every framework version and every service
 * version the service allows now. */
static int send_negotiate(struct ic_chan *c)
{
	uint8_t body[sizeof(struct ic_negotiate) +
		     (NR_FW_VERSIONS + IC_MAX_OFFERED) * sizeof(struct ic_version)];
	const struct ic_service *svc = c->svc;
	const struct ic_version zero = { 0, 0 };
	struct ic_negotiate n;
	unsigned nv = 0;
	int ret;

	for (unsigned i = 0; i < svc->nr_versions && nv < IC_MAX_OFFERED; i++)
		if (!svc->version_ok || svc->version_ok(c, svc->versions[i]))
			c->offered[nv++] = svc->versions[i];
	c->nr_offered = nv;
	if (!nv) {
		log_warn("ic %s: no version to offer", svc->name);
		c->state = IC_ST_UNSUPPORTED;
		return -ENOTSUP;
	}
	memset(&n, 0, sizeof(n));
	n.icframe_vercnt = NR_FW_VERSIONS;
	n.icmsg_vercnt = (uint16_t)nv;
	memcpy(body, &n, sizeof(n));
	memcpy(body + sizeof(n), fw_versions, sizeof(fw_versions));
	memcpy(body + sizeof(n) + sizeof(fw_versions), c->offered, nv * sizeof(c->offered[0]));
	ret = send_msg(c, IC_MSGTYPE_NEGOTIATE, zero, zero, body,
		       (uint32_t)(sizeof(n) + (NR_FW_VERSIONS + nv) * sizeof(struct ic_version)), 0);
	if (ret == 0)
		c->state = IC_ST_NEGOTIATING;
	return ret;
}

/* ---- receiving ------------------------------------------------------------------ */

static bool fw_offered(struct ic_version v)
{
	for (unsigned i = 0; i < NR_FW_VERSIONS; i++)
		if (ic_version_eq(v, fw_versions[i]))
			return true;
	return false;
}

static bool ver_offered(const struct ic_chan *c, struct ic_version v)
{
	for (unsigned i = 0; i < c->nr_offered; i++)
		if (ic_version_eq(v, c->offered[i]))
			return true;
	return false;
}

static void negotiation_failed(struct ic_chan *c)
{
	c->state = IC_ST_UNSUPPORTED;
	ic_emit(c, IC_EVENT_UNSUPPORTED, 0);
}

/* The guest's answer to the negotiation: normally one framework and one
 * service version (its choice among ours), or none. From a longer list
 * take the highest versions we offered. */
static void handle_negotiate(struct ic_chan *c, const uint8_t *body, uint32_t len)
{
	const char *name = c->svc->name;
	struct ic_negotiate n;
	struct ic_version fw = { 0, 0 }, ver = { 0, 0 };
	bool have_fw = false, have_ver = false;
	uint32_t total;

	if (len < sizeof(n)) {
		log_ratelimited(LOG_WARN, "ic %s: negotiation reply too short (%u bytes)", name, len);
		negotiation_failed(c);
		return;
	}
	memcpy(&n, body, sizeof(n));
	if (n.icframe_vercnt == 0 && n.icmsg_vercnt == 0) {
		log_ratelimited(LOG_INFO, "ic %s: the guest supports none of our versions", name);
		negotiation_failed(c);
		return;
	}
	total = (uint32_t)n.icframe_vercnt + n.icmsg_vercnt;
	if (!n.icframe_vercnt || !n.icmsg_vercnt || n.icframe_vercnt > IC_NEGOTIATE_MAX_VERSIONS ||
	    n.icmsg_vercnt > IC_NEGOTIATE_MAX_VERSIONS ||
	    sizeof(n) + total * sizeof(struct ic_version) > len) {
		log_ratelimited(LOG_WARN,
				"ic %s: bad negotiation reply (%u framework, %u service versions in %u bytes)",
				name, n.icframe_vercnt, n.icmsg_vercnt, len);
		negotiation_failed(c);
		return;
	}
	for (uint32_t i = 0; i < total; i++) {
		struct ic_version v;

		memcpy(&v, body + sizeof(n) + i * sizeof(v), sizeof(v));
		if (i < n.icframe_vercnt) {
			if (fw_offered(v) && (!have_fw || ic_version_u32(v) > ic_version_u32(fw))) {
				fw = v;
				have_fw = true;
			}
		} else if (ver_offered(c, v) && (!have_ver || ic_version_u32(v) > ic_version_u32(ver))) {
			ver = v;
			have_ver = true;
		}
	}
	if (!have_fw || !have_ver) {
		log_ratelimited(LOG_WARN, "ic %s: the guest chose versions we did not offer", name);
		negotiation_failed(c);
		return;
	}
	c->fw = fw;
	c->ver = ver;
	c->state = IC_ST_READY;
	log_ratelimited(LOG_INFO, "ic %s: framework %u.%u, version %u.%u", name, fw.major,
			fw.minor, ver.major, ver.minor);
	if (c->svc->on_negotiated)
		c->svc->on_negotiated(c);
	/* on_negotiated may have seen the channel fail; only report success. */
	if (c->state == IC_ST_READY)
		ic_emit(c, IC_EVENT_CONNECTED, 0);
}

/* One guest packet: validate everything, then hand the answer over. */
static void receive(struct ic_chan *c, const struct ring_pkt *pkt)
{
	const char *name = c->svc->name;
	uint8_t *buf = c->host->rxbuf;
	struct ic_hdr hdr;
	struct ic_reply r;

	if (pkt->desc.type != VMBUS_PKT_DATA_INBAND) {
		log_ratelimited(LOG_WARN, "ic %s: dropped packet of type %u", name, pkt->desc.type);
		return;
	}
	if (pkt->data_len < IC_HDR_LEN || pkt->data_len > IC_MAX_MSG_LEN) {
		log_ratelimited(LOG_WARN, "ic %s: dropped packet of %u bytes", name, pkt->data_len);
		return;
	}
	if (vmbus_chan_recv_read(c->ch, pkt, pkt->data_off, buf, pkt->data_len) < 0) {
		log_ratelimited(LOG_WARN, "ic %s: unreadable packet", name);
		return;
	}
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.pipe.flags != IC_PIPE_FLAG_DATA || hdr.pipe.msgsize < sizeof(struct ic_msg_hdr) ||
	    hdr.pipe.msgsize > pkt->data_len - sizeof(struct ic_pipe_hdr)) {
		log_ratelimited(LOG_WARN, "ic %s: bad pipe header (flags %u, size %u, packet %u)",
				name, hdr.pipe.flags, hdr.pipe.msgsize, pkt->data_len);
		return;
	}
	if (hdr.ic.icmsgsize > hdr.pipe.msgsize - sizeof(struct ic_msg_hdr)) {
		log_ratelimited(LOG_WARN, "ic %s: icmsgsize %u beyond the message (%u bytes)", name,
				hdr.ic.icmsgsize, hdr.pipe.msgsize);
		return;
	}
	if ((hdr.ic.icflags & (IC_FLAG_TRANSACTION | IC_FLAG_REQUEST | IC_FLAG_RESPONSE)) !=
	    (IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE)) {
		log_ratelimited(LOG_WARN, "ic %s: not a response (icflags %#x)", name,
				hdr.ic.icflags);
		return;
	}
	if (!c->pending || pkt->desc.trans_id != c->pending_id) {
		log_ratelimited(LOG_DEBUG, "ic %s: stale response (transaction %llu)", name,
				(unsigned long long)pkt->desc.trans_id);
		return;
	}
	if (hdr.ic.icmsgtype != c->pending_type) {
		log_ratelimited(LOG_WARN, "ic %s: response of type %u to a request of type %u", name,
				hdr.ic.icmsgtype, c->pending_type);
		return;
	}
	c->pending = false;
	if (hdr.ic.icmsgtype == IC_MSGTYPE_NEGOTIATE) {
		if (c->state == IC_ST_NEGOTIATING)
			handle_negotiate(c, buf + IC_HDR_LEN, hdr.ic.icmsgsize);
		return;
	}
	if (c->state != IC_ST_READY)
		return;
	r.err = 0;
	r.type = hdr.ic.icmsgtype;
	r.status = hdr.ic.status;
	r.body = buf + IC_HDR_LEN;
	r.body_len = hdr.ic.icmsgsize;
	if (c->svc->on_response)
		c->svc->on_response(c, &r);
}

static void drain(struct ic_chan *c)
{
	struct vmbus_channel *ch = c->ch;
	struct ring_pkt pkt;
	unsigned n = 0;

	while (c->ch == ch && n++ < IC_DRAIN_BUDGET && vmbus_chan_recv_peek(ch, &pkt) == 0) {
		if (c->host)
			receive(c, &pkt);
		vmbus_chan_recv_pop(ch, &pkt);
	}
	vmbus_chan_recv_commit(ch);
}

/* ---- VMBus device callbacks ------------------------------------------------------ */

static struct ic_chan *chan_of(struct vmbus_channel *ch)
{
	return vmbus_device_priv(vmbus_chan_device(ch));
}

static void chan_reset(struct ic_chan *c)
{
	bool was_ready = c->state == IC_ST_READY;

	c->ch = NULL;
	c->state = IC_ST_CLOSED;
	c->pending = false;
	c->fw = c->ver = (struct ic_version){ 0, 0 };
	if (c->host && c->svc->on_close)
		c->svc->on_close(c);
	if (was_ready)
		ic_emit(c, IC_EVENT_DISCONNECTED, 0);
}

static int dev_open(struct vmbus_channel *ch)
{
	struct ic_chan *c = chan_of(ch);

	if (!c->host || vmbus_chan_subindex(ch) != 0)
		return -ENODEV;
	c->ch = ch;
	c->state = IC_ST_NEGOTIATE;
	c->pending = false;
	/* The ring is empty: this only fails for a broken ring, and then the
	 * tick retries. */
	send_negotiate(c);
	return 0;
}

static void dev_close(struct vmbus_channel *ch)
{
	struct ic_chan *c = chan_of(ch);

	if (c->ch == ch)
		chan_reset(c);
}

static void dev_notify(struct vmbus_channel *ch)
{
	struct ic_chan *c = chan_of(ch);

	if (c->ch != ch) {
		/* Orphaned: keep the ring moving. */
		struct ring_pkt pkt;
		unsigned n = 0;

		while (n++ < IC_DRAIN_BUDGET && vmbus_chan_recv_peek(ch, &pkt) == 0)
			vmbus_chan_recv_pop(ch, &pkt);
		vmbus_chan_recv_commit(ch);
		return;
	}
	drain(c);
	if (c->ch && c->state == IC_ST_NEGOTIATE)
		send_negotiate(c);
}

static void dev_reset(struct vmbus_device *dev)
{
	struct ic_chan *c = vmbus_device_priv(dev);

	if (c->state != IC_ST_CLOSED)
		chan_reset(c);
}

static void dev_release(struct vmbus_device *dev)
{
	struct ic_chan *c = vmbus_device_priv(dev);

	if (c->host)
		c->host->chans[c->idx] = NULL;
	free(c->state_buf);
	free(c);
}

/* ---- host ---------------------------------------------------------------------------- */

void ic_host_tick(struct ic_host *h)
{
	uint64_t now = ic_now_ms(h);

	for (unsigned i = 0; i < h->nr; i++) {
		struct ic_chan *c = h->chans[i];

		if (!c || !c->ch)
			continue;
		drain(c);
		if (!c->ch)
			continue;
		if (c->state == IC_ST_NEGOTIATE)
			send_negotiate(c);
		if (c->pending && c->deadline_ms && now >= c->deadline_ms) {
			struct ic_reply r = { .err = -ETIMEDOUT, .type = c->pending_type };

			c->pending = false;
			log_ratelimited(LOG_INFO, "ic %s: request of type %u unanswered", c->svc->name,
					r.type);
			if (c->state == IC_ST_READY && c->svc->on_response)
				c->svc->on_response(c, &r);
		}
		if (c->state == IC_ST_READY && c->svc->on_timer)
			c->svc->on_timer(c, now);
	}
}

static void timer_fn(struct loop_timer *t)
{
	ic_host_tick(container_of(t, struct ic_host, timer));
}

static struct ic_chan *chan_new(struct ic_host *h, const struct ic_service *svc, unsigned idx)
{
	struct ic_chan *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->state_buf = calloc(1, svc->state_size ? svc->state_size : 1);
	if (!c->state_buf) {
		free(c);
		return NULL;
	}
	c->host = h;
	c->svc = svc;
	c->idx = idx;
	c->cls = (struct vmbus_device_class){
		.name = svc->name,
		.class_guid = svc->class_guid,
		.chn_flags = VMBUS_OFFER_ENUMERATE_DEVICE_INTERFACE | VMBUS_OFFER_NAMED_PIPE_MODE,
		.pipe_mode = VMBUS_PIPE_TYPE_MESSAGE,
		.open = dev_open,
		.close = dev_close,
		.notify = dev_notify,
		.reset = dev_reset,
		.release = dev_release,
	};
	return c;
}

struct ic_host *ic_host_new(struct vmbus_server *srv, struct loop *loop)
{
	struct ic_host *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->srv = srv;
	h->loop = loop;
	h->clock = default_clock;
	for (unsigned i = 0; ic_services[i]; i++) {
		const struct ic_service *svc = ic_services[i];
		struct vmbus_device_params p = { .instance = svc->instance_guid };
		struct ic_chan *c;

		if (i >= IC_MAX_SERVICES) {
			log_err("ic: too many services");
			goto fail;
		}
		c = chan_new(h, svc, i);
		if (!c)
			goto fail;
		p.priv = c;
		c->dev = vmbus_device_add(srv, &c->cls, &p);
		if (!c->dev) {
			free(c->state_buf);
			free(c);
			log_err("ic %s: cannot register the VMBus device", svc->name);
			goto fail;
		}
		h->chans[i] = c;
		h->nr = i + 1;
	}
	if (loop) {
		int ret = loop_timer_add(loop, &h->timer, timer_fn);

		if (ret == 0) {
			h->have_timer = true;
			ret = loop_timer_arm(&h->timer, IC_TICK_MS, IC_TICK_MS);
		}
		if (ret < 0) {
			log_err("ic: cannot start the timer: %s", strerror(-ret));
			goto fail;
		}
	}
	return h;
fail:
	ic_host_free(h);
	return NULL;
}

void ic_host_free(struct ic_host *h)
{
	if (!h)
		return;
	if (h->have_timer)
		loop_timer_del(h->loop, &h->timer);
	/* The server owns the devices: orphan their channels, which are freed
	 * by the device's release. */
	for (unsigned i = 0; i < h->nr; i++) {
		struct ic_chan *c = h->chans[i];

		if (!c)
			continue;
		c->host = NULL;
		c->ch = NULL;
		c->state = IC_ST_CLOSED;
		c->pending = false;
	}
	free(h);
}

static const char *chan_status(struct ic_chan *c, uint64_t now)
{
	const char *s;

	switch (c->state) {
	case IC_ST_CLOSED:
		return "not connected";
	case IC_ST_NEGOTIATE:
	case IC_ST_NEGOTIATING:
		return "negotiating";
	case IC_ST_UNSUPPORTED:
		return "unsupported";
	case IC_ST_READY:
		break;
	}
	s = c->svc->status ? c->svc->status(c, now) : NULL;
	return s ? s : "connected";
}

size_t ic_host_status(struct ic_host *h, struct ic_status *out, size_t max)
{
	uint64_t now = ic_now_ms(h);
	size_t n = 0;

	for (unsigned i = 0; ic_services[i] && n < max; i++) {
		struct ic_chan *c = i < h->nr ? h->chans[i] : NULL;

		out[n].name = ic_services[i]->name;
		out[n].enabled = c != NULL;
		out[n].status = c ? chan_status(c, now) : "not connected";
		n++;
	}
	return n;
}

bool ic_host_connected(struct ic_host *h, const char *name)
{
	for (unsigned i = 0; i < h->nr; i++) {
		struct ic_chan *c = h->chans[i];

		if (c && !strcmp(c->svc->name, name))
			return ic_chan_ready(c);
	}
	return false;
}
