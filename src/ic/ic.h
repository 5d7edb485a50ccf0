/* Hyper-V integration services (host side): heartbeat, shutdown and time
 * sync, as VMBus devices for the guest's hv_utils driver.
 *
 * The VM creates one struct ic_host after its VMBus server; every service
 * in the table (src/ic/services.c) is registered as a VMBus device at once
 * and is offered at the guest's next REQUESTOFFERS. When the guest opens a
 * service's channel the host negotiates versions, then runs the service:
 * a heartbeat request every second, a time SYNC followed by a SAMPLE every
 * 5 s, and shutdown requests on demand (ic_request_shutdown()).
 *
 * Threading: everything runs on the VM's event-loop thread (the VMBus
 * device callbacks and the host's one-second timer); nothing is
 * thread-safe. Callbacks registered here must not free the host.
 *
 * VM glue:
 *
 *	vm->ic = ic_host_new(hv_vmbus_server(vm->hv), vm->loop);
 *	if (!vm->ic)
 *		goto fail;
 *	ic_host_set_event_cb(vm->ic, on_ic_event, vm);  // optional
 *	...
 *	// SIGTERM: ask the guest; fall back to ACPI/hard stop on error
 *	if (ic_request_shutdown(vm->ic, false) < 0)
 *		...;
 *	...
 *	ic_host_free(vm->ic);   // before or after vmbus_server_free()
 */
#ifndef HVMM_IC_H
#define HVMM_IC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ic_host;
struct vmbus_server;
struct loop;

/* The host's timer period; every deadline below is checked on it. */
#define IC_TICK_MS 1000u
/* Upper bound on the number of services (for ic_host_status() arrays). */
#define IC_MAX_SERVICES 8u

/* Register every service with `srv` and start the timer on `loop` (NULL:
 * no timer, the caller calls ic_host_tick(); for tests). NULL on failure
 * (logged). */
struct ic_host *ic_host_new(struct vmbus_server *srv, struct loop *loop);

/* Stop the services. The VMBus devices stay registered (quiet: they refuse
 * opens and drop packets) until the server frees them, so this may be
 * called before or after vmbus_server_free(). NULL is ignored. */
void ic_host_free(struct ic_host *h);

/* ---- notifications ------------------------------------------------------ */

enum ic_event {
	IC_EVENT_CONNECTED,        /* versions negotiated: the service works */
	IC_EVENT_DISCONNECTED,     /* the guest closed the channel (or VMBus reset) */
	IC_EVENT_UNSUPPORTED,      /* no common version, or a bogus negotiation reply */
	IC_EVENT_HEARTBEAT_OK,     /* first good heartbeat, or again after "lost" */
	IC_EVENT_HEARTBEAT_LOST,   /* no good heartbeat reply for IC_HEARTBEAT_LOST_MS */
	IC_EVENT_SHUTDOWN_ACCEPTED, /* the guest answered S_OK and is shutting down */
	IC_EVENT_SHUTDOWN_FAILED,  /* err: -EIO (refused) or -ETIMEDOUT (no answer) */
};

/* `service` is the service's name ("heartbeat", "shutdown", "timesync");
 * `err` is 0 except for IC_EVENT_SHUTDOWN_FAILED. Called on the loop
 * thread, possibly from inside a VMBus callback: it may call
 * ic_request_shutdown() and ic_host_status(), not ic_host_free(). */
typedef void (*ic_event_fn)(void *ctx, const char *service, enum ic_event ev, int err);

void ic_host_set_event_cb(struct ic_host *h, ic_event_fn fn, void *ctx);

/* ---- clock ---------------------------------------------------------------- */

/* Where the services take time from. The default uses CLOCK_MONOTONIC and
 * CLOCK_REALTIME and has no reference time, so time sync offers the guest
 * versions 1.0 and 3.0 only (the guest then timestamps samples on
 * arrival). A VMM that can read the guest's Hyper-V reference counter at
 * the instant it reads UTC (KVM: KVM_GET_CLOCK with KVM_CLOCK_REALTIME;
 * reference time = kvmclock ns / 100) sets has_reftime and gets 4.0. */
struct ic_clock {
	/* Monotonic milliseconds (heartbeat loss, timeouts, periods). */
	uint64_t (*monotonic_ms)(void *ctx);
	/* Host UTC as FILETIME (100 ns units since 1601-01-01) and, when
	 * has_reftime, the guest's reference counter (100 ns units) at the
	 * same instant. 0 or -errno (the sample is then not sent). */
	int (*utc_now)(void *ctx, uint64_t *filetime, uint64_t *reftime);
	bool has_reftime;
	void *ctx;
};

/* Replace the clock (NULL: the default). Versions are chosen when a channel
 * opens, so set this right after ic_host_new(). */
void ic_host_set_clock(struct ic_host *h, const struct ic_clock *clk);

/* FILETIME of a CLOCK_REALTIME-style timespec (seconds, nanoseconds). */
uint64_t ic_filetime_from_unix(int64_t sec, long nsec);

/* ---- shutdown ------------------------------------------------------------- */

/* Ask the guest to power off (reboot = false) or restart. Returns 0 when
 * the request was sent (the guest's answer arrives as an event and in the
 * status), -ENOTCONN if the guest's shutdown service is not negotiated,
 * -EBUSY while an earlier request is unanswered, -EOPNOTSUPP for a reboot
 * on a service version below 3.1, or the send error (-EAGAIN: ring full). */
int ic_request_shutdown(struct ic_host *h, bool reboot);

/* The same with the force flag and a message for the guest (UTF-8,
 * converted to UTF-16LE and truncated to 1023 units; NULL: none). Linux
 * ignores both; Windows shows the message. */
int ic_request_shutdown_msg(struct ic_host *h, bool reboot, bool force, const char *message);

/* ---- status --------------------------------------------------------------- */

struct ic_status {
	const char *name;   /* "heartbeat", "shutdown", "timesync" */
	bool enabled;       /* offered to the guest */
	const char *status; /* static string, see below */
};

/* Fill up to `max` entries, in table order; returns the number filled.
 * Statuses: every service: "not connected" (channel closed),
 * "negotiating", "unsupported" (no common version / bogus reply);
 * heartbeat: "unknown" (no reply yet), "ok", "lost";
 * shutdown: "connected", "shutdown requested", "reboot requested",
 * "shutdown accepted", "reboot accepted", "refused", "no reply";
 * timesync: "connected" (no sample answered yet), "ok", "no reply". */
size_t ic_host_status(struct ic_host *h, struct ic_status *out, size_t max);

/* True when the named service is negotiated. */
bool ic_host_connected(struct ic_host *h, const char *name);

/* The timer's work: timeouts, periodic requests, retries. Called every
 * IC_TICK_MS by the host's timer; tests call it directly. */
void ic_host_tick(struct ic_host *h);

/* Heartbeat policy. */
#define IC_HEARTBEAT_PERIOD_MS 1000u
#define IC_HEARTBEAT_TIMEOUT_MS 3000u /* a request unanswered this long is dropped */
#define IC_HEARTBEAT_LOST_MS 5000u    /* no good reply this long: "lost" */
/* Time sync: one SYNC after negotiation, then a SAMPLE every period. */
#define IC_TIMESYNC_PERIOD_MS 5000u
/* Shutdown: how long the guest has to answer a request. */
#define IC_SHUTDOWN_TIMEOUT_MS 10000u

#endif
