/* Private state of the VMBus server, shared by server.c, gpadl.c and
 * channel.c. Not for device code. */
#ifndef HVMM_VMBUS_SERVER_INTERNAL_H
#define HVMM_VMBUS_SERVER_INTERNAL_H

#include "vmbus/server.h"
#include "util/log.h"

enum chan_state {
	CHAN_IDLE,    /* not offered (no relid) */
	CHAN_OFFERED, /* offered, closed */
	CHAN_OPEN,    /* open: rings mapped */
};

struct vmbus_channel {
	struct vmbus_server *srv;
	struct vmbus_device *dev;
	uint16_t subidx;
	enum chan_state state;
	bool rescinded; /* RESCIND sent; relid held until RELID_RELEASED */
	bool broken;    /* protocol error: ring I/O refused until reopened */
	uint32_t relid;
	uint32_t conn_id;
	uint32_t target_vp;
	struct vmbus_gpadl *ring_gpadl;
	struct vmbus_ring in;  /* guest -> host */
	struct vmbus_ring out; /* host -> guest */
	uint8_t open_data[VMBUS_OFFER_USER_DEF_LEN];
	void *priv;
	/* Stall watchdog: what the last tick saw (valid while open). */
	uint32_t wd_guest_rd; /* out ring: the guest's read index */
	uint32_t wd_host_rd;  /* in ring: our read position */
	bool wd_guest_behind; /* out ring held unread bytes */
	bool wd_host_behind;  /* in ring held unread bytes (or a send waited) */
};

struct vmbus_device {
	struct vmbus_server *srv;
	const struct vmbus_device_class *cls;
	struct vmbus_device *next;
	guid_t if_type;
	guid_t instance;
	uint8_t user_def[VMBUS_OFFER_USER_DEF_LEN];
	void *priv;
	bool removed; /* vmbus_rescind() called */
	unsigned nr_chan;
	struct vmbus_channel *chan[1 + VMBUS_MAX_SUBCHANNELS];
};

struct gpadl_range {
	uint32_t byte_count;
	uint32_t byte_offset;
	uint32_t first_pfn; /* index into pfns[] */
	uint32_t nr_pfns;
};

enum gpadl_state {
	GPADL_COLLECTING, /* header seen, waiting for bodies */
	GPADL_READY,
	GPADL_TEARDOWN,   /* teardown requested while referenced */
};

struct vmbus_gpadl {
	struct vmbus_server *srv; /* NULL once revoked */
	struct vmbus_gpadl *next;
	uint32_t id;
	uint32_t relid;
	enum gpadl_state state;
	unsigned users;
	/* collecting */
	uint8_t *rangebuf;
	uint32_t range_buflen;
	uint32_t filled;
	uint16_t rangecount;
	uint32_t reserved_pages; /* counted in srv->gpadl_pages */
	/* ready */
	uint32_t nr_ranges;
	struct gpadl_range *ranges;
	uint32_t nr_pfns;
	uint64_t *pfns;
	uint64_t len;
};

enum srv_state {
	SRV_DISCONNECTED,
	SRV_CONNECTED,
};

struct vmbus_server {
	const struct guest_mem *gm;
	struct vmbus_host_ops ops;
	void *ctx;
	uint32_t nr_vps;
	uint32_t max_version;

	enum srv_state state;
	uint32_t version;
	uint32_t msg_vp;
	uint32_t msg_sint;
	uint32_t msg_conn_id;
	uint64_t monitor_page1, monitor_page2;
	bool offers_requested;
	bool resetting; /* bus reset in progress: send nothing */
	unsigned depth; /* device callbacks in progress: defer frees */

	struct vmbus_device *devices; /* registration order */
	struct vmbus_channel *relids[VMBUS_MAX_RELID + 1];

	struct vmbus_gpadl *gpadls;
	unsigned nr_gpadls;
	unsigned nr_pending_gpadls;
	uint64_t gpadl_pages;
};

/* server.c */
int srv_send(struct vmbus_server *srv, const void *msg, size_t len);
const char *chan_name(const struct vmbus_channel *ch, char *buf, size_t len);
struct vmbus_channel *chan_by_relid(struct vmbus_server *srv, uint32_t relid);
void srv_sweep_devices(struct vmbus_server *srv);

/* gpadl.c */
void gpadl_handle_header(struct vmbus_server *srv, const void *msg, size_t len);
void gpadl_handle_body(struct vmbus_server *srv, const void *msg, size_t len);
void gpadl_handle_teardown(struct vmbus_server *srv, const void *msg, size_t len);
struct vmbus_gpadl *gpadl_find(struct vmbus_server *srv, uint32_t id);
void gpadl_use(struct vmbus_gpadl *g);
void gpadl_unuse(struct vmbus_gpadl *g);
void gpadl_revoke_all(struct vmbus_server *srv);

/* channel.c */
void chan_handle_open(struct vmbus_server *srv, const void *msg, size_t len);
void chan_handle_close(struct vmbus_server *srv, const void *msg, size_t len);
void chan_handle_modify(struct vmbus_server *srv, const void *msg, size_t len);
void chan_close(struct vmbus_channel *ch);
unsigned chan_watchdog(struct vmbus_channel *ch);

#define CHAN_NAME_LEN 64

#endif
