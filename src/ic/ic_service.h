/* The IC framework as seen by a service (src/ic/<service>.c).
 *
 * The framework owns the VMBus device and channel of each service, sends
 * the version negotiation when the guest opens the channel, validates
 * every packet the guest sends (pipe and IC headers, lengths, flags,
 * transaction id, message type) and matches it to the service's one
 * outstanding request. A service only builds request bodies and interprets
 * reply bodies.
 *
 * Adding a service: one file defining a `const struct ic_service`, one
 * line in src/ic/services.c. */
#ifndef HVMM_IC_SERVICE_H
#define HVMM_IC_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ic/ic.h"
#include "ic/ic_proto.h"

struct ic_chan;

/* The answer to a request (or its absence). */
struct ic_reply {
	int err;             /* 0: the guest answered; -ETIMEDOUT: no answer in time */
	uint16_t type;       /* the request's icmsgtype */
	uint32_t status;     /* the guest's HRESULT (when err == 0) */
	const uint8_t *body; /* icmsgsize bytes, all inside the packet */
	uint32_t body_len;
};

struct ic_service {
	const char *name;
	guid_t class_guid;
	guid_t instance_guid; /* fixed per service */
	/* Service versions the host can speak, in any order; all of them that
	 * pass version_ok are offered. */
	const struct ic_version *versions;
	unsigned nr_versions;
	size_t state_size; /* zeroed service state, ic_chan_state() */

	/* Optional: may version v be offered now? */
	bool (*version_ok)(struct ic_chan *c, struct ic_version v);
	/* Versions are negotiated; requests may be sent. */
	void (*on_negotiated)(struct ic_chan *c);
	/* The outstanding request was answered or timed out. */
	void (*on_response)(struct ic_chan *c, const struct ic_reply *r);
	/* Every tick while negotiated. */
	void (*on_timer)(struct ic_chan *c, uint64_t now_ms);
	/* The channel closed (or the bus reset): forget transient state. */
	void (*on_close)(struct ic_chan *c);
	/* Status string while negotiated; NULL or absent: "connected". */
	const char *(*status)(struct ic_chan *c, uint64_t now_ms);
};

/* The table (src/ic/services.c), NULL-terminated. */
extern const struct ic_service *const ic_services[];

extern const struct ic_service ic_heartbeat;
extern const struct ic_service ic_shutdown;
extern const struct ic_service ic_timesync;

/* ---- for services ---------------------------------------------------------- */

void *ic_chan_state(struct ic_chan *c);
struct ic_host *ic_chan_host(struct ic_chan *c);
const char *ic_chan_name(const struct ic_chan *c);
/* Negotiated framework and service versions (valid when ready). */
struct ic_version ic_chan_fw_version(const struct ic_chan *c);
struct ic_version ic_chan_version(const struct ic_chan *c);
bool ic_chan_ready(const struct ic_chan *c);
/* A request is outstanding. */
bool ic_chan_busy(const struct ic_chan *c);

/* Send a request (TRANSACTION|REQUEST, negotiated versions) with `len`
 * body bytes. It is answered through on_response, or with -ETIMEDOUT after
 * timeout_ms (0: never). Returns 0, -ENOTCONN (not negotiated), -EBUSY (a
 * request is outstanding), -EMSGSIZE, or the send error (-EAGAIN: ring
 * full, retry later). */
int ic_chan_request(struct ic_chan *c, uint16_t type, const void *body, uint32_t len,
		    uint32_t timeout_ms);
/* Forget the outstanding request; its answer, if it ever comes, is dropped
 * as stale. */
void ic_chan_abandon(struct ic_chan *c);

/* Report an event to the host's callback, if any. */
void ic_emit(struct ic_chan *c, enum ic_event ev, int err);

/* The channel of a service of `h`, or NULL. */
struct ic_chan *ic_host_chan(struct ic_host *h, const struct ic_service *svc);

/* The host's clock. */
uint64_t ic_now_ms(struct ic_host *h);
int ic_utc_now(struct ic_host *h, uint64_t *filetime, uint64_t *reftime);
bool ic_has_reftime(struct ic_host *h);

static inline bool ic_version_eq(struct ic_version a, struct ic_version b)
{
	return a.major == b.major && a.minor == b.minor;
}

static inline uint32_t ic_version_u32(struct ic_version v)
{
	return (uint32_t)v.major << 16 | v.minor;
}

#endif
