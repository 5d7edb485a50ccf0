#include "core/control.h"

#include <errno.h>
#include <stdio.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "core/vm.h"
#include "hyperv/kvm_hv.h"
#include "ic/ic.h"
#include "util/log.h"
#include "vmbus/server.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void force_stop(struct control *c, const char *why)
{
	if (!c->vm)
		return;
	log_info("%s: powering the VM off", why);
	vm_request_stop(c->vm, VM_STOP_HOST);
}

/* Ask the guest to shut down; power off after the grace period. */
static void orderly_stop(struct control *c, const char *why)
{
	int ret;

	if (!c->vm)
		return;
	if (c->stopping) {
		force_stop(c, why);
		return;
	}
	ret = ic_request_shutdown(c->vm->ic, false);
	if (ret) {
		log_info("%s: the guest's shutdown service is %s", why,
			 ret == -ENOTCONN ? "not connected" : strerror(-ret));
		force_stop(c, why);
		return;
	}
	log_info("%s: asking the guest to shut down (power off in %d s if it does not)", why,
		 CONTROL_GRACE_MS / 1000);
	c->stopping = true;
	loop_timer_arm(&c->grace, CONTROL_GRACE_MS, 0);
}

static void grace_expired(struct loop_timer *t)
{
	struct control *c = container_of(t, struct control, grace);

	if (c->stopping)
		force_stop(c, "the guest did not shut down in time");
}

static void host_signal(struct loop_source *src, uint32_t events)
{
	struct control *c = container_of(src, struct control, signals);
	struct signalfd_siginfo si;
	char why[32];

	if (read(src->fd, &si, sizeof(si)) != sizeof(si))
		return;
	snprintf(why, sizeof(why), "signal %s", sigabbrev_np((int)si.ssi_signo));
	orderly_stop(c, why);
}

/* ---- API handlers ------------------------------------------------------- */

static json_t *services_json(struct vm *vm)
{
	struct ic_status st[IC_MAX_SERVICES];
	size_t n = ic_host_status(vm->ic, st, IC_MAX_SERVICES);
	json_t *list = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_pack("{s:s, s:b, s:s}", "name", st[i].name, "enabled",
						      st[i].enabled, "status", st[i].status));
	return list;
}

static int get_status(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct control *c = ctx;
	struct vm *vm = c->vm;
	uint32_t version;
	json_t *vmbus_version = json_null();

	if (!vm)
		return api_error_set(err, 503, "the VM is restarting");
	version = vmbus_server_version(hv_vmbus_server(vm->hv));
	if (version)
		vmbus_version = json_sprintf("%u.%u", version >> 16, version & 0xffff);
	*reply = json_pack("{s:s, s:f, s:i, s:I, s:o, s:o}",
			   "state", atomic_load(&vm->stop) != VM_RUNNING ? "stopped"
				    : c->stopping ? "shutting-down" : "running",
			   "uptime_s", (double)(now_ms() - c->boot_ms) / 1000.0,
			   "vcpus", (int)vm->cfg->nr_cpus,
			   "memory_bytes", (json_int_t)vm->cfg->mem_size,
			   "vmbus_version", vmbus_version,
			   "integration_services", services_json(vm));
	return *reply ? 200 : -ENOMEM;
}

static int put_shutdown(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct control *c = ctx;
	int ret = api_unpack(body, err, "{}");

	if (ret)
		return ret;
	if (!c->vm)
		return api_error_set(err, 409, "the VM is restarting");
	ret = ic_request_shutdown(c->vm->ic, false);
	if (ret == -ENOTCONN)
		return api_error_set(err, 409, "the guest's shutdown service is not connected");
	if (ret == -EBUSY)
		return api_error_set(err, 409, "an earlier shutdown request is still unanswered");
	if (ret)
		return api_error_set(err, 500, "sending the shutdown request: %s", strerror(-ret));
	return 202;
}

static int put_stop(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct control *c = ctx;
	int force = 0;
	int ret = api_unpack(body, err, "{s:b}", "force", &force);

	if (ret)
		return ret;
	if (force)
		force_stop(c, "API stop --force");
	else
		orderly_stop(c, "API stop");
	return 202;
}

/* ---- lifetime ----------------------------------------------------------- */

static int serve_api(struct control *c, const char *path)
{
	c->api = api_new(c->loop, path);
	if (!c->api)
		return -errno;
	if (api_route(c->api, "GET", "/v1/status", get_status, c) ||
	    api_route(c->api, "PUT", "/v1/actions/shutdown", put_shutdown, c) ||
	    api_route(c->api, "PUT", "/v1/actions/stop", put_stop, c))
		return -ENOMEM;
	return 0;
}

int control_init(struct control *c, struct loop *loop, const char *api_path)
{
	sigset_t set;
	int fd, ret;

	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->signals.fd = -1;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	ret = loop_add(loop, &c->signals, fd, EPOLLIN, host_signal);
	if (!ret)
		ret = loop_timer_add(loop, &c->grace, grace_expired);
	if (!ret && api_path)
		ret = serve_api(c, api_path);
	return ret;
}

void control_attach(struct control *c, struct vm *vm)
{
	c->vm = vm;
	c->boot_ms = now_ms();
	c->stopping = false;
	loop_timer_disarm(&c->grace);
}

void control_fini(struct control *c)
{
	if (c->api)
		api_free(c->api);
	if (c->signals.fd >= 0) {
		loop_del(c->loop, &c->signals);
		close(c->signals.fd);
	}
	if (c->grace.src.fd > 0)
		loop_timer_del(c->loop, &c->grace);
}
