/* VMBus server: the host side of VMBus channel management, and the channel
 * API device models use.
 *
 * The server owns the connection state machine (version negotiation,
 * offers, GPADLs, open/close, rescind, unload), the registered devices and
 * their channels (primary and sub-channels), and each open channel's two
 * rings. It talks to the rest of the VMM only through struct
 * vmbus_host_ops (message delivery, channel interrupts, routing of the
 * guest's channel signals) and reads guest memory only through
 * guest_mem_ptr(). Every value the guest supplies is checked; a bad one is
 * logged (rate-limited, naming the channel) and refused, answered with a
 * failure status where the protocol has one, or, for a corrupt ring, marks
 * that channel broken.
 *
 * Threading: everything here runs on the VM's event-loop thread, including
 * every device callback (open, close, notify, reset, release). Nothing is
 * thread-safe. The vCPU thread that takes an HvPostMessage exit checks
 * vmbus_server_is_message_connection() and the message sizes itself,
 * queues the message for the loop and returns HV_STATUS_SUCCESS (or
 * HV_STATUS_INSUFFICIENT_BUFFERS when its queue is full); the loop then
 * calls vmbus_server_handle_message(). Likewise a guest HvSignalEvent on a
 * channel's connection id ends in vmbus_server_signal() on the loop.
 *
 * Accepted protocol versions: 2.4 (Win8), 3.0, 4.0, 4.1, 5.0, 5.1, 5.2 and
 * 5.3; anything else (0.13, 1.1, 6.0, garbage) is answered with
 * version_supported = 0 so Linux tries its next version. */
#ifndef HVMM_VMBUS_SERVER_H
#define HVMM_VMBUS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/guest_mem.h"
#include "vmbus/ring.h"
#include "vmbus/vmbus_proto.h"

struct vmbus_server;
struct vmbus_device;
struct vmbus_channel;
struct vmbus_gpadl;

/* Highest version the server negotiates. */
#define VMBUS_SERVER_MAX_VERSION VMBUS_VERSION_WIN10_V5_3

/* Limits on what the guest may make us allocate. */
#define VMBUS_MAX_GPADLS 4096u             /* complete + pending */
#define VMBUS_MAX_PENDING_GPADLS 64u       /* header seen, body missing */
#define VMBUS_GPADL_MAX_RANGES 64u
#define VMBUS_GPADL_MAX_TOTAL_PAGES (1u << 21) /* over all GPADLs (8 GiB) */
#define VMBUS_MAX_SUBCHANNELS 64u          /* per device */

/* A channel's HvSignalEvent connection id is this plus its relid (unique,
 * not 1..4, below 2^24). */
#define VMBUS_CHAN_CONN_ID_BASE 0x2000u

/* What the server needs from the VMM (the KVM layer). Called on the loop
 * thread. */
struct vmbus_host_ops {
	/* Deliver a channel-management message: a SynIC message of type
	 * msg_type (VMBUS_HV_MESSAGE_TYPE) with `len` <= 240 payload bytes to
	 * SINT `sint` of VP `vp` (synic_post_message()). 0 or -errno (the
	 * message is then lost; logged). */
	int (*post_message)(void *ctx, uint32_t vp, uint32_t sint, uint32_t msg_type,
			    const void *payload, size_t len);
	/* Interrupt a channel: set event flag `relid` in SINT `sint`'s slot of
	 * VP `vp` and raise the SINT if the flag was clear
	 * (synic_set_event()). 0 or -errno. */
	int (*signal_guest)(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid);
	/* Like signal_guest, but raise the SINT even if the flag was already
	 * set: the stall watchdog's retry of an interrupt the guest seems to
	 * have lost. May be NULL (signal_guest is used). */
	int (*kick_guest)(void *ctx, uint32_t vp, uint32_t sint, uint32_t relid);
	/* Start (on) or stop routing the guest's HvSignalEvent(conn_id) to
	 * vmbus_server_signal() (KVM: KVM_HYPERV_EVENTFD plus an eventfd loop
	 * source; also handle the HCALL exit for the id). May be NULL. A
	 * failure to start makes OPENCHANNEL fail. */
	int (*register_guest_signal)(void *ctx, uint32_t conn_id, bool on);
};

struct vmbus_server_config {
	const struct guest_mem *gm;
	uint32_t nr_vps;     /* valid VP indices are 0..nr_vps-1 */
	const struct vmbus_host_ops *ops;
	void *ctx;           /* passed to every op */
	uint32_t max_version; /* cap (e.g. for tests); 0 = VMBUS_SERVER_MAX_VERSION */
};

struct vmbus_server *vmbus_server_new(const struct vmbus_server_config *cfg);
/* Closes open channels (close op), then calls every device's release op. */
void vmbus_server_free(struct vmbus_server *srv);

/* True for the connection ids HvPostMessage may target (1 and 4); any
 * other id is HV_STATUS_INVALID_CONNECTION_ID. Pure: callable from any
 * thread. */
bool vmbus_server_is_message_connection(uint32_t conn_id);

/* One HvPostMessage payload (message type VMBUS_HV_MESSAGE_TYPE) posted to
 * `conn_id`. Returns 0 when consumed (malformed messages are logged and
 * dropped), -ENOENT for a connection id the server does not listen on. */
int vmbus_server_handle_message(struct vmbus_server *srv, uint32_t conn_id, const void *msg,
				size_t len);

/* The guest signalled connection id `conn_id` (HvSignalEvent). Calls the
 * channel's notify op. Returns 0, or -ENOENT if no open channel has it. */
int vmbus_server_signal(struct vmbus_server *srv, uint32_t conn_id);

/* Stall watchdog; the VMM calls it every VMBUS_WATCHDOG_MS. A channel
 * whose host->guest ring held unread packets at two ticks in a row without
 * the guest's read index moving gets its interrupt again (kick_guest); one
 * whose guest->host ring held unread packets (or whose device waits for
 * ring space that is free now) without us moving gets its notify op, as if
 * the guest had signalled. Both are logged (rate-limited). A lost
 * interrupt or signal (seen under nested virtualization) would otherwise
 * stall the channel for good; a spurious one is harmless, as the protocol
 * allows them. Returns the number of channels kicked or notified. */
#define VMBUS_WATCHDOG_MS 1000u
unsigned vmbus_server_watchdog(struct vmbus_server *srv);

/* VM reset: close every channel, reset every device, revoke every GPADL and
 * forget the connection, without sending anything. */
void vmbus_server_reset(struct vmbus_server *srv);

/* Negotiated version, or 0 when the guest is not connected. */
uint32_t vmbus_server_version(const struct vmbus_server *srv);
/* VP and SINT channel-management messages go to (valid when connected). */
uint32_t vmbus_server_message_vp(const struct vmbus_server *srv);
uint32_t vmbus_server_message_sint(const struct vmbus_server *srv);

/* ---- devices ------------------------------------------------------------ */

/* A device model: one static table entry per kind of device. */
struct vmbus_device_class {
	const char *name;
	guid_t class_guid;       /* offer if_type */
	uint16_t chn_flags;      /* offer flags (VMBUS_OFFER_*) */
	uint16_t mmio_megabytes; /* offer mmio_megabytes */
	uint32_t pipe_mode;      /* with VMBUS_OFFER_NAMED_PIPE_MODE: VMBUS_PIPE_TYPE_* */
	/* The guest opened a channel; its rings are mapped and sending works.
	 * Return 0, or a negative errno to fail the open. Optional. */
	int (*open)(struct vmbus_channel *ch);
	/* The guest closed the channel (or the bus is being reset); the
	 * rings are unmapped right after. Drop GPADL references here. */
	void (*close)(struct vmbus_channel *ch);
	/* The guest signalled the channel: drain the receive ring until
	 * vmbus_chan_recv_peek() says -EAGAIN (no new signal comes while the
	 * ring stays non-empty), and retry sends that got -EAGAIN. */
	void (*notify)(struct vmbus_channel *ch);
	/* The guest unloaded VMBus or the VM reset: after every channel was
	 * closed. Forget protocol state. Optional. */
	void (*reset)(struct vmbus_device *dev);
	/* The server forgets the device (after vmbus_rescind() completed, or
	 * in vmbus_server_free()). Optional. */
	void (*release)(struct vmbus_device *dev);
};

struct vmbus_device_params {
	guid_t instance;        /* offer if_instance; keep it stable */
	const guid_t *if_type;  /* NULL: the class GUID (hv_sock uses others) */
	const uint8_t *user_def; /* NULL: pipe mode from the class; else 120 bytes */
	void *priv;             /* returned by vmbus_device_priv() */
};

/* Register a device (a primary channel). It is offered at the guest's
 * next REQUESTOFFERS, or at once if offers were already requested. NULL on
 * allocation failure. */
struct vmbus_device *vmbus_device_add(struct vmbus_server *srv,
				      const struct vmbus_device_class *cls,
				      const struct vmbus_device_params *p);

/* Give the device `n` more sub-channels (indices 1..), offered at once if
 * the guest already asked for offers. Returns 0 or -EINVAL (too many,
 * removed device), -ENOSPC (no relid free), -ENOMEM. */
int vmbus_device_add_subchannels(struct vmbus_device *dev, unsigned n);

/* Host-initiated removal: rescind every channel of the device. The server
 * keeps calling close for open channels until the guest has released every
 * relid, then calls release and frees the device. The caller must not use
 * `dev` after release. */
void vmbus_rescind(struct vmbus_device *dev);

void *vmbus_device_priv(const struct vmbus_device *dev);
const struct vmbus_device_class *vmbus_device_class(const struct vmbus_device *dev);
struct vmbus_server *vmbus_device_server(const struct vmbus_device *dev);
unsigned vmbus_device_nr_channels(const struct vmbus_device *dev);
/* Channel `idx` (0 = primary), or NULL. */
struct vmbus_channel *vmbus_device_channel(const struct vmbus_device *dev, unsigned idx);

/* ---- channels ----------------------------------------------------------- */

struct vmbus_device *vmbus_chan_device(const struct vmbus_channel *ch);
uint16_t vmbus_chan_subindex(const struct vmbus_channel *ch);
uint32_t vmbus_chan_relid(const struct vmbus_channel *ch); /* 0 if not offered */
uint32_t vmbus_chan_target_vp(const struct vmbus_channel *ch);
bool vmbus_chan_is_open(const struct vmbus_channel *ch);
/* The 120 user-data bytes of the guest's OPENCHANNEL. */
const uint8_t *vmbus_chan_open_data(const struct vmbus_channel *ch);
void *vmbus_chan_priv(const struct vmbus_channel *ch);
void vmbus_chan_set_priv(struct vmbus_channel *ch, void *priv);

/* Receive (guest -> host) ring. peek returns 0, -EAGAIN (empty),
 * -ENOTCONN (not open) or -EPROTO (corrupt ring: the channel is marked
 * broken and logged; every later call fails). read copies bytes of the
 * peeked packet (offsets from the packet start, bounds-checked). pop
 * consumes it; commit publishes the consumption and interrupts the guest if
 * it was waiting for space. */
int vmbus_chan_recv_peek(struct vmbus_channel *ch, struct ring_pkt *pkt);
int vmbus_chan_recv_read(struct vmbus_channel *ch, const struct ring_pkt *pkt, uint32_t off,
			 void *dst, uint32_t len);
void vmbus_chan_recv_pop(struct vmbus_channel *ch, const struct ring_pkt *pkt);
void vmbus_chan_recv_commit(struct vmbus_channel *ch);

/* Send (host -> guest) ring; the guest is interrupted when needed. Return
 * 0, -EAGAIN (ring full: retry from notify), -EMSGSIZE, -ENOTCONN,
 * -EPROTO (broken). */
int vmbus_chan_send(struct vmbus_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
		    const void *data, uint32_t len);
int vmbus_chan_send_inband(struct vmbus_channel *ch, uint64_t trans_id, const void *data,
			   uint32_t len, bool completion_requested);
/* A completion (type 11) echoing the guest's trans_id. */
int vmbus_chan_send_completion(struct vmbus_channel *ch, uint64_t trans_id, const void *data,
			       uint32_t len);
/* A packet with its own header (e.g. transfer-page packets); see
 * ring_write(). */
int vmbus_chan_send_raw(struct vmbus_channel *ch, const void *hdr, uint32_t hdr_len,
			const struct ring_iov *iov, unsigned niov);
/* Interrupt the guest for this channel unconditionally. */
void vmbus_chan_signal(struct vmbus_channel *ch);
/* The device found a protocol violation: log it and mark the channel
 * broken (ring calls fail until the guest closes and reopens it). */
void vmbus_chan_fail(struct vmbus_channel *ch, const char *why);

/* ---- GPADLs (device buffers the guest described, e.g. netvsc) ---------- */

/* Take a reference to complete GPADL `id`; NULL if there is none or it is
 * being torn down. A referenced GPADL's teardown is answered only after the
 * last vmbus_gpadl_put(). Put every reference in close or reset. */
struct vmbus_gpadl *vmbus_gpadl_get(struct vmbus_channel *ch, uint32_t id);
void vmbus_gpadl_put(struct vmbus_gpadl *g);
/* Bytes described (sum of the ranges' byte counts). */
uint64_t vmbus_gpadl_len(const struct vmbus_gpadl *g);
/* Copy to/from the GPADL's bytes [off, off+len). 0, -EINVAL (out of range)
 * or -ENODEV (revoked by an unload/reset). */
int vmbus_gpadl_read(const struct vmbus_gpadl *g, uint64_t off, void *dst, size_t len);
int vmbus_gpadl_write(const struct vmbus_gpadl *g, uint64_t off, const void *src, size_t len);

#endif
