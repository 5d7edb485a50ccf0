/* Host-side control of the running VM, for the life of the process: the
 * management API (GET /v1/status, PUT /v1/actions/shutdown and
 * /v1/actions/stop, GET /v1/disks, PUT /v1/disks/add|remove|resize) and the
 * signals that stop the VM. A guest reboot replaces the VM; the controller,
 * its API socket and the disk list (hot adds and removes included) stay.
 *
 * Stopping, from gentle to hard: a shutdown request goes to the guest's
 * shutdown integration service; an orderly stop (SIGTERM, SIGINT, SIGHUP,
 * or stop without force) sends that request and powers the VM off if the
 * guest has not finished within a grace period, or at once if the guest has
 * no shutdown service; a forced stop (stop with force, or a second signal)
 * powers it off at once. Everything runs on the loop thread. */
#ifndef HVMM_CONTROL_H
#define HVMM_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"

struct vm;
struct api;
struct disk_set;

#define CONTROL_GRACE_MS 60000 /* an orderly stop waits this long for the guest */

struct control {
	struct loop *loop;
	struct vm *vm;     /* the running VM, or NULL between boots */
	struct api *api;   /* NULL without --api */
	struct disk_set *disks; /* the configured disks (hot add/remove) */
	uint64_t boot_ms;  /* when the current VM started (monotonic) */
	bool stopping;     /* an orderly stop is under way */
	struct loop_source signals;
	struct loop_timer grace;
};

/* Start handling signals and, if api_path is set, serve the API there.
 * Returns 0 or a negative errno (logged). */
int control_init(struct control *c, struct loop *loop, const char *api_path,
		 struct disk_set *disks);
void control_fini(struct control *c);

/* The VM that runs from now on (NULL: none). */
void control_attach(struct control *c, struct vm *vm);

#endif
