/* VMBus server: connection state machine, message dispatch, offers,
 * rescind, unload and the device registry. GPADLs are in gpadl.c, channel
 * open/close and ring I/O in channel.c. */
#include "vmbus/server_internal.h"

#include "hyperv/hv_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Versions we accept, newest first. All use SynIC event flags for channel
 * interrupts (>= 2.4), so the legacy interrupt page is never needed. */
static const uint32_t supported_versions[] = {
	VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1,
	VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_V4_1, VMBUS_VERSION_WIN10,
	VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,
};

static bool version_supported(const struct vmbus_server *srv, uint32_t v)
{
	for (size_t i = 0; i < sizeof(supported_versions) / sizeof(supported_versions[0]); i++)
		if (supported_versions[i] == v)
			return v <= srv->max_version;
	return false;
}

struct vmbus_server *vmbus_server_new(const struct vmbus_server_config *cfg)
{
	struct vmbus_server *srv;

	if (!cfg->gm || !cfg->ops || !cfg->ops->post_message || !cfg->ops->signal_guest ||
	    !cfg->nr_vps)
		return NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	srv->gm = cfg->gm;
	srv->ops = *cfg->ops;
	srv->ctx = cfg->ctx;
	srv->nr_vps = cfg->nr_vps;
	srv->max_version = cfg->max_version && cfg->max_version < VMBUS_SERVER_MAX_VERSION
				   ? cfg->max_version
				   : VMBUS_SERVER_MAX_VERSION;
	srv->msg_sint = VMBUS_MESSAGE_SINT;
	srv->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
	return srv;
}

bool vmbus_server_is_message_connection(uint32_t conn_id)
{
	return conn_id == VMBUS_MESSAGE_CONNECTION_ID || conn_id == VMBUS_MESSAGE_CONNECTION_ID_4;
}

uint32_t vmbus_server_version(const struct vmbus_server *srv)
{
	return srv->state == SRV_CONNECTED ? srv->version : 0;
}

uint32_t vmbus_server_message_vp(const struct vmbus_server *srv)
{
	return srv->msg_vp;
}

uint32_t vmbus_server_message_sint(const struct vmbus_server *srv)
{
	return srv->msg_sint;
}

const char *chan_name(const struct vmbus_channel *ch, char *buf, size_t len)
{
	snprintf(buf, len, "relid %u (%s #%u)", ch->relid, ch->dev->cls->name,
		 (unsigned)ch->subidx);
	return buf;
}

struct vmbus_channel *chan_by_relid(struct vmbus_server *srv, uint32_t relid)
{
	if (relid == 0 || relid > VMBUS_MAX_RELID)
		return NULL;
	return srv->relids[relid];
}

/* ---- sending ---- */

static int srv_send_to(struct vmbus_server *srv, uint32_t vp, uint32_t sint, const void *msg,
		       size_t len)
{
	const struct vmbus_msg_hdr *h = msg;
	int ret;

	if (srv->resetting)
		return 0;
	ret = srv->ops.post_message(srv->ctx, vp, sint, VMBUS_HV_MESSAGE_TYPE, msg, len);
	if (ret < 0)
		log_ratelimited(LOG_WARN, "vmbus: posting message type %u to VP %u SINT%u failed: %d",
				h->msgtype, vp, sint, ret);
	return ret;
}

int srv_send(struct vmbus_server *srv, const void *msg, size_t len)
{
	return srv_send_to(srv, srv->msg_vp, srv->msg_sint, msg, len);
}

/* ---- offers ---- */

static uint32_t relid_alloc(struct vmbus_server *srv)
{
	for (uint32_t r = 1; r <= VMBUS_MAX_RELID; r++)
		if (!srv->relids[r])
			return r;
	return 0;
}

static void send_offer(struct vmbus_channel *ch)
{
	struct vmbus_msg_offer_channel o;
	const struct vmbus_device *dev = ch->dev;

	memset(&o, 0, sizeof(o));
	o.hdr.msgtype = VMBUS_MSG_OFFERCHANNEL;
	o.if_type = dev->if_type;
	o.if_instance = dev->instance;
	o.chn_flags = dev->cls->chn_flags;
	o.mmio_megabytes = dev->cls->mmio_megabytes;
	memcpy(o.user_def, dev->user_def, sizeof(o.user_def));
	o.sub_channel_index = ch->subidx;
	o.child_relid = ch->relid;
	o.monitorid = 0;
	o.monitor_flags = 0; /* no monitored notification: the guest always hypercalls */
	o.interrupt_flags = VMBUS_OFFER_DEDICATED_INTERRUPT;
	o.connection_id = ch->conn_id;
	srv_send(ch->srv, &o, sizeof(o));
}

/* Give an idle channel a relid and offer it. */
static int offer_channel(struct vmbus_channel *ch)
{
	struct vmbus_server *srv = ch->srv;
	uint32_t relid;

	if (ch->state != CHAN_IDLE)
		return 0;
	relid = relid_alloc(srv);
	if (!relid) {
		log_ratelimited(LOG_ERR, "vmbus: no free relid for %s #%u; not offered",
				ch->dev->cls->name, (unsigned)ch->subidx);
		return -ENOSPC;
	}
	ch->relid = relid;
	ch->conn_id = VMBUS_CHAN_CONN_ID_BASE + relid;
	ch->state = CHAN_OFFERED;
	ch->rescinded = false;
	ch->broken = false;
	ch->target_vp = srv->msg_vp;
	srv->relids[relid] = ch;
	send_offer(ch);
	return 0;
}

static void release_relid(struct vmbus_channel *ch)
{
	if (ch->relid)
		ch->srv->relids[ch->relid] = NULL;
	ch->relid = 0;
	ch->conn_id = 0;
	ch->state = CHAN_IDLE;
	ch->rescinded = false;
	ch->broken = false;
}

/* ---- devices ---- */

static struct vmbus_channel *chan_new(struct vmbus_device *dev, uint16_t subidx)
{
	struct vmbus_channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->srv = dev->srv;
	ch->dev = dev;
	ch->subidx = subidx;
	ch->state = CHAN_IDLE;
	return ch;
}

struct vmbus_device *vmbus_device_add(struct vmbus_server *srv,
				      const struct vmbus_device_class *cls,
				      const struct vmbus_device_params *p)
{
	struct vmbus_device *dev, **tail;

	if (!cls || !p)
		return NULL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return NULL;
	dev->srv = srv;
	dev->cls = cls;
	dev->if_type = p->if_type ? *p->if_type : cls->class_guid;
	dev->instance = p->instance;
	dev->priv = p->priv;
	if (p->user_def) {
		memcpy(dev->user_def, p->user_def, sizeof(dev->user_def));
	} else if (cls->chn_flags & VMBUS_OFFER_NAMED_PIPE_MODE) {
		uint32_t mode = cls->pipe_mode;

		memcpy(dev->user_def, &mode, sizeof(mode));
	}
	dev->chan[0] = chan_new(dev, 0);
	if (!dev->chan[0]) {
		free(dev);
		return NULL;
	}
	dev->nr_chan = 1;
	for (tail = &srv->devices; *tail; tail = &(*tail)->next)
		;
	*tail = dev;
	if (srv->state == SRV_CONNECTED && srv->offers_requested)
		offer_channel(dev->chan[0]);
	return dev;
}

int vmbus_device_add_subchannels(struct vmbus_device *dev, unsigned n)
{
	struct vmbus_server *srv = dev->srv;

	if (dev->removed || n == 0 || n > VMBUS_MAX_SUBCHANNELS ||
	    dev->nr_chan + n > 1 + VMBUS_MAX_SUBCHANNELS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		struct vmbus_channel *ch = chan_new(dev, (uint16_t)dev->nr_chan);
		int ret;

		if (!ch)
			return -ENOMEM;
		dev->chan[dev->nr_chan++] = ch;
		if (srv->state == SRV_CONNECTED && srv->offers_requested) {
			ret = offer_channel(ch);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static void free_device(struct vmbus_device *dev)
{
	struct vmbus_server *srv = dev->srv;

	for (unsigned i = 0; i < dev->nr_chan; i++) {
		if (dev->chan[i]->state == CHAN_OPEN)
			chan_close(dev->chan[i]);
		release_relid(dev->chan[i]);
	}
	if (dev->cls->release) {
		srv->depth++;
		dev->cls->release(dev);
		srv->depth--;
	}
	for (unsigned i = 0; i < dev->nr_chan; i++)
		free(dev->chan[i]);
	free(dev);
}

static bool device_idle(const struct vmbus_device *dev)
{
	for (unsigned i = 0; i < dev->nr_chan; i++)
		if (dev->chan[i]->state != CHAN_IDLE)
			return false;
	return true;
}

/* Free removed devices whose relids were all released; never from inside
 * a device callback. */
void srv_sweep_devices(struct vmbus_server *srv)
{
	struct vmbus_device **pp = &srv->devices;

	if (srv->depth)
		return;
	while (*pp) {
		struct vmbus_device *dev = *pp;

		if (dev->removed && device_idle(dev)) {
			*pp = dev->next;
			free_device(dev);
		} else {
			pp = &dev->next;
		}
	}
}

void vmbus_rescind(struct vmbus_device *dev)
{
	struct vmbus_server *srv = dev->srv;

	if (dev->removed)
		return;
	dev->removed = true;
	/* Sub-channels first: the primary going away means the device is gone. */
	for (unsigned i = dev->nr_chan; i-- > 0;) {
		struct vmbus_channel *ch = dev->chan[i];
		struct vmbus_msg_relid m = { .hdr.msgtype = VMBUS_MSG_RESCIND_CHANNELOFFER };

		if (ch->state == CHAN_IDLE || ch->rescinded)
			continue;
		ch->rescinded = true;
		m.child_relid = ch->relid;
		srv_send(srv, &m, sizeof(m));
	}
	srv_sweep_devices(srv);
}

void *vmbus_device_priv(const struct vmbus_device *dev)
{
	return dev->priv;
}

const struct vmbus_device_class *vmbus_device_class(const struct vmbus_device *dev)
{
	return dev->cls;
}

struct vmbus_server *vmbus_device_server(const struct vmbus_device *dev)
{
	return dev->srv;
}

unsigned vmbus_device_nr_channels(const struct vmbus_device *dev)
{
	return dev->nr_chan;
}

struct vmbus_channel *vmbus_device_channel(const struct vmbus_device *dev, unsigned idx)
{
	return idx < dev->nr_chan ? dev->chan[idx] : NULL;
}

/* ---- bus reset (UNLOAD, reconnect, VM reset) ---- */

static void bus_reset(struct vmbus_server *srv)
{
	srv->resetting = true;
	for (struct vmbus_device *dev = srv->devices; dev; dev = dev->next) {
		for (unsigned i = 0; i < dev->nr_chan; i++) {
			if (dev->chan[i]->state == CHAN_OPEN)
				chan_close(dev->chan[i]);
			release_relid(dev->chan[i]);
		}
		if (!dev->removed && dev->cls->reset) {
			srv->depth++;
			dev->cls->reset(dev);
			srv->depth--;
		}
	}
	gpadl_revoke_all(srv);
	memset(srv->relids, 0, sizeof(srv->relids));
	srv->state = SRV_DISCONNECTED;
	srv->version = 0;
	srv->offers_requested = false;
	srv->msg_vp = 0;
	srv->msg_sint = VMBUS_MESSAGE_SINT;
	srv->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
	srv->resetting = false;
	srv_sweep_devices(srv);
}

void vmbus_server_reset(struct vmbus_server *srv)
{
	bus_reset(srv);
}

void vmbus_server_free(struct vmbus_server *srv)
{
	if (!srv)
		return;
	srv->resetting = true;
	for (struct vmbus_device *dev = srv->devices; dev; dev = dev->next)
		for (unsigned i = 0; i < dev->nr_chan; i++)
			if (dev->chan[i]->state == CHAN_OPEN)
				chan_close(dev->chan[i]);
	while (srv->devices) {
		struct vmbus_device *dev = srv->devices;

		srv->devices = dev->next;
		free_device(dev);
	}
	gpadl_revoke_all(srv);
	free(srv);
}

/* ---- message handlers ---- */

static void handle_initiate_contact(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_initiate_contact *m = msg;
	struct vmbus_msg_version_response r;
	uint32_t ver = m->version_requested;
	uint32_t vp = m->target_vcpu;
	uint32_t sint = VMBUS_MESSAGE_SINT;
	bool ok = version_supported(srv, ver);
	bool bad = false;

	if (srv->state == SRV_CONNECTED) {
		log_ratelimited(LOG_INFO,
				"vmbus: guest reconnects (INITIATE_CONTACT %u.%u); resetting the bus",
				VMBUS_VERSION_MAJOR(ver), VMBUS_VERSION_MINOR(ver));
		bus_reset(srv);
	}
	/* From 5.0 the guest names its SINT. Linux always uses 2, and only
	 * SINT2 is routed to the guest (the KVM layer installs HV_SINT routes
	 * for it alone): refuse others, so the guest falls back to < 5.0. */
	if (ver >= VMBUS_VERSION_WIN10_V5 && m->msg_sint != VMBUS_MESSAGE_SINT) {
		log_ratelimited(LOG_WARN, "vmbus: INITIATE_CONTACT %u.%u asks for SINT%u; only SINT%u is served",
				VMBUS_VERSION_MAJOR(ver), VMBUS_VERSION_MINOR(ver), m->msg_sint,
				VMBUS_MESSAGE_SINT);
		if (m->msg_sint < HV_SYNIC_SINT_COUNT)
			sint = m->msg_sint; /* answer where the guest listens */
		ok = false;
	}
	/* Below 3.0 the host answers on VP 0 (target_vcpu is not honoured). */
	if (ver < VMBUS_VERSION_WIN8_1)
		vp = 0;
	if (vp >= srv->nr_vps) {
		log_ratelimited(LOG_WARN, "vmbus: INITIATE_CONTACT names VP %u, only %u exist", vp,
				srv->nr_vps);
		vp = 0;
		bad = true;
	}
	if (bad)
		ok = false;

	memset(&r, 0, sizeof(r));
	r.hdr.msgtype = VMBUS_MSG_VERSION_RESPONSE;
	r.version_supported = ok;
	r.connection_state = bad ? VMBUS_CONNECTION_STATE_FAILED : VMBUS_CONNECTION_STATE_OK;
	if (ok) {
		r.msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
		srv->state = SRV_CONNECTED;
		srv->version = ver;
		srv->msg_vp = vp;
		srv->msg_sint = sint;
		srv->msg_conn_id = VMBUS_MESSAGE_CONNECTION_ID;
		srv->monitor_page1 = m->monitor_page1;
		srv->monitor_page2 = m->monitor_page2;
		srv->offers_requested = false;
		log_ratelimited(LOG_INFO,
				"vmbus: guest connected with protocol %u.%u (messages to VP %u SINT%u)",
				VMBUS_VERSION_MAJOR(ver), VMBUS_VERSION_MINOR(ver), vp, sint);
	} else if (!bad) {
		log_ratelimited(LOG_DEBUG, "vmbus: guest asked for protocol %u.%u; not supported",
				VMBUS_VERSION_MAJOR(ver), VMBUS_VERSION_MINOR(ver));
	}
	srv_send_to(srv, vp, sint, &r, sizeof(r));
}

static void handle_request_offers(struct vmbus_server *srv, const void *msg, size_t len)
{
	struct vmbus_msg_hdr done = { .msgtype = VMBUS_MSG_ALLOFFERS_DELIVERED };

	if (srv->offers_requested) {
		log_ratelimited(LOG_WARN, "vmbus: repeated REQUESTOFFERS ignored");
		return;
	}
	srv->offers_requested = true;
	for (struct vmbus_device *dev = srv->devices; dev; dev = dev->next) {
		if (dev->removed)
			continue;
		for (unsigned i = 0; i < dev->nr_chan; i++)
			offer_channel(dev->chan[i]);
	}
	srv_send(srv, &done, sizeof(done));
}

static void handle_relid_released(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_relid *m = msg;
	struct vmbus_channel *ch = chan_by_relid(srv, m->child_relid);
	char name[CHAN_NAME_LEN];

	if (!ch) {
		log_ratelimited(LOG_WARN, "vmbus: RELID_RELEASED for unknown relid %u",
				m->child_relid);
		return;
	}
	if (!ch->rescinded) {
		log_ratelimited(LOG_WARN, "vmbus: %s: RELID_RELEASED but the offer was not rescinded",
				chan_name(ch, name, sizeof(name)));
		return;
	}
	if (ch->state == CHAN_OPEN) {
		log_ratelimited(LOG_WARN, "vmbus: %s: RELID_RELEASED while open; closing it",
				chan_name(ch, name, sizeof(name)));
		chan_close(ch);
	}
	release_relid(ch);
}

static void handle_unload(struct vmbus_server *srv, const void *msg, size_t len)
{
	struct vmbus_msg_hdr r = { .msgtype = VMBUS_MSG_UNLOAD_RESPONSE };
	uint32_t vp = srv->msg_vp, sint = srv->msg_sint;

	log_ratelimited(LOG_INFO, "vmbus: guest unloads VMBus; closing every channel");
	bus_reset(srv);
	srv_send_to(srv, vp, sint, &r, sizeof(r));
}

static void handle_tl_connect(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_tl_connect_request *m = msg;
	struct vmbus_msg_tl_connect_result r;
	char svc[GUID_STR_LEN];

	log_ratelimited(LOG_INFO, "vmbus: hv_sock connection to service %s refused (no hv_sock support)",
			guid_to_str(&m->host_service_id, svc));
	if (srv->version < VMBUS_VERSION_WIN10_V4_1)
		return;
	memset(&r, 0, sizeof(r));
	r.hdr.msgtype = VMBUS_MSG_TL_CONNECT_RESULT;
	r.endpoint_id = m->guest_endpoint_id;
	r.service_id = m->host_service_id;
	r.status = VMBUS_STATUS_CONNECTION_REFUSED;
	srv_send(srv, &r, sizeof(r));
}

struct msg_handler {
	const char *name;
	size_t min_len;
	uint32_t min_version;
	void (*fn)(struct vmbus_server *srv, const void *msg, size_t len);
};

static const struct msg_handler handlers[VMBUS_MSG_COUNT] = {
	[VMBUS_MSG_REQUESTOFFERS] = { "REQUESTOFFERS", sizeof(struct vmbus_msg_hdr), 0,
				      handle_request_offers },
	[VMBUS_MSG_OPENCHANNEL] = { "OPENCHANNEL", sizeof(struct vmbus_msg_open_channel), 0,
				    chan_handle_open },
	[VMBUS_MSG_CLOSECHANNEL] = { "CLOSECHANNEL", sizeof(struct vmbus_msg_relid), 0,
				     chan_handle_close },
	[VMBUS_MSG_GPADL_HEADER] = { "GPADL_HEADER", sizeof(struct vmbus_msg_gpadl_header), 0,
				     gpadl_handle_header },
	[VMBUS_MSG_GPADL_BODY] = { "GPADL_BODY", sizeof(struct vmbus_msg_gpadl_body), 0,
				   gpadl_handle_body },
	[VMBUS_MSG_GPADL_TEARDOWN] = { "GPADL_TEARDOWN", sizeof(struct vmbus_msg_gpadl_teardown),
				       0, gpadl_handle_teardown },
	[VMBUS_MSG_RELID_RELEASED] = { "RELID_RELEASED", sizeof(struct vmbus_msg_relid), 0,
				       handle_relid_released },
	[VMBUS_MSG_INITIATE_CONTACT] = { "INITIATE_CONTACT",
					 sizeof(struct vmbus_msg_initiate_contact), 0,
					 handle_initiate_contact },
	[VMBUS_MSG_UNLOAD] = { "UNLOAD", sizeof(struct vmbus_msg_hdr), 0, handle_unload },
	[VMBUS_MSG_TL_CONNECT_REQUEST] = { "TL_CONNECT_REQUEST",
					   sizeof(struct vmbus_msg_tl_connect_request),
					   VMBUS_VERSION_WIN10, handle_tl_connect },
	[VMBUS_MSG_MODIFYCHANNEL] = { "MODIFYCHANNEL", sizeof(struct vmbus_msg_modify_channel),
				      VMBUS_VERSION_WIN10_V4_1, chan_handle_modify },
};

int vmbus_server_handle_message(struct vmbus_server *srv, uint32_t conn_id, const void *msg,
				size_t len)
{
	/* A private, aligned, zero-padded copy: the caller's buffer may be
	 * guest memory, and handlers read each field once from here. */
	uint64_t buf[VMBUS_MSG_MAX / 8];
	const struct msg_handler *h;
	struct vmbus_msg_hdr hdr;

	if (!vmbus_server_is_message_connection(conn_id))
		return -ENOENT;
	if (len > VMBUS_MSG_MAX || len < sizeof(hdr)) {
		log_ratelimited(LOG_WARN, "vmbus: dropped a %zu-byte channel message (must be %zu..%u)",
				len, sizeof(hdr), VMBUS_MSG_MAX);
		return 0;
	}
	memset(buf, 0, sizeof(buf));
	memcpy(buf, msg, len);
	memcpy(&hdr, buf, sizeof(hdr));
	h = hdr.msgtype < VMBUS_MSG_COUNT ? &handlers[hdr.msgtype] : NULL;
	if (!h || !h->fn) {
		log_ratelimited(LOG_WARN, "vmbus: dropped channel message of unknown or host-only type %u",
				hdr.msgtype);
		return 0;
	}
	if (len < h->min_len) {
		log_ratelimited(LOG_WARN, "vmbus: dropped truncated %s (%zu bytes, need %zu)", h->name,
				len, h->min_len);
		return 0;
	}
	if (hdr.msgtype != VMBUS_MSG_INITIATE_CONTACT) {
		if (srv->state != SRV_CONNECTED) {
			log_ratelimited(LOG_WARN, "vmbus: dropped %s: guest is not connected", h->name);
			return 0;
		}
		if (conn_id != srv->msg_conn_id) {
			log_ratelimited(LOG_WARN, "vmbus: dropped %s posted to connection %u (expected %u)",
					h->name, conn_id, srv->msg_conn_id);
			return 0;
		}
		if (srv->version < h->min_version) {
			log_ratelimited(LOG_WARN, "vmbus: dropped %s: not part of protocol %u.%u",
					h->name, VMBUS_VERSION_MAJOR(srv->version),
					VMBUS_VERSION_MINOR(srv->version));
			return 0;
		}
	}
	h->fn(srv, buf, len);
	srv_sweep_devices(srv);
	return 0;
}

int vmbus_server_signal(struct vmbus_server *srv, uint32_t conn_id)
{
	struct vmbus_channel *ch;

	if (conn_id <= VMBUS_CHAN_CONN_ID_BASE || conn_id > VMBUS_CHAN_CONN_ID_BASE + VMBUS_MAX_RELID)
		return -ENOENT;
	ch = srv->relids[conn_id - VMBUS_CHAN_CONN_ID_BASE];
	if (!ch || ch->state != CHAN_OPEN)
		return -ENOENT;
	if (ch->broken || !ch->dev->cls->notify)
		return 0;
	srv->depth++;
	ch->dev->cls->notify(ch);
	srv->depth--;
	srv_sweep_devices(srv);
	return 0;
}

unsigned vmbus_server_watchdog(struct vmbus_server *srv)
{
	unsigned n = 0;

	if (srv->state != SRV_CONNECTED || srv->resetting)
		return 0;
	srv->depth++;
	for (uint32_t relid = 1; relid <= VMBUS_MAX_RELID; relid++)
		if (srv->relids[relid])
			n += chan_watchdog(srv->relids[relid]);
	srv->depth--;
	srv_sweep_devices(srv);
	return n;
}
