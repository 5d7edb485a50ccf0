#include "core/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "api/api.h"
#include "core/disks.h"
#include "core/vm.h"
#include "hyperv/kvm_hv.h"
#include "ic/ic.h"
#include "util/clock.h"
#include "util/log.h"
#include "vmbus/server.h"

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

static json_t *disks_json(struct vm *vm);

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
	*reply = json_pack("{s:s, s:f, s:i, s:I, s:o, s:o, s:o}",
			   "state", atomic_load(&vm->stop) != VM_RUNNING ? "stopped"
				    : c->stopping ? "shutting-down" : "running",
			   "uptime_s", (double)(mono_ms() - c->boot_ms) / 1000.0,
			   "vcpus", (int)vm->cfg->nr_cpus,
			   "memory_bytes", (json_int_t)vm->cfg->mem_size,
			   "vmbus_version", vmbus_version,
			   "integration_services", services_json(vm),
			   "disks", disks_json(vm));
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

/* ---- disks ---------------------------------------------------------------- */

static json_t *disk_json(const struct storvsp_lun_info *d)
{
	return json_pack("{s:i, s:i, s:s, s:s, s:I, s:i, s:b, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
			 " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "controller", (int)d->controller, "lun", (int)d->lun, "path", d->label,
			 "format", d->format, "size_bytes", (json_int_t)d->size, "block_size",
			 (int)d->block_size, "read_only", d->read_only, "inflight", (int)d->inflight,
			 "reads", (json_int_t)d->reads, "writes", (json_int_t)d->writes, "flushes",
			 (json_int_t)d->flushes, "unmaps", (json_int_t)d->unmaps, "bytes_read",
			 (json_int_t)d->bytes_read, "bytes_written", (json_int_t)d->bytes_written,
			 "errors", (json_int_t)d->errors, "cached_reads", (json_int_t)d->cached_reads,
			 "cached_writes", (json_int_t)d->cached_writes, "write_behind",
			 (json_int_t)d->write_behind, "write_behind_errors",
			 (json_int_t)d->write_behind_errors, "parallel", (json_int_t)d->parallel,
			 "split", (json_int_t)d->split, "read_time_ns",
			 (json_int_t)d->read_ns, "write_time_ns", (json_int_t)d->write_ns);
}

static json_t *disks_json(struct vm *vm)
{
	size_t n = storvsp_list(vm->storvsp, NULL, 0);
	struct storvsp_lun_info *info = calloc(n ? n : 1, sizeof(*info));
	json_t *list = json_array();

	if (!info || !list) {
		free(info);
		json_decref(list);
		return NULL;
	}
	n = storvsp_list(vm->storvsp, info, n);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, disk_json(&info[i]));
	free(info);
	return list;
}

static json_t *controllers_json(struct vm *vm)
{
	struct storvsp_ctrl_info info[STORVSP_MAX_CONTROLLERS];
	size_t n = storvsp_list_controllers(vm->storvsp, info, STORVSP_MAX_CONTROLLERS);
	json_t *list = json_array();

	for (size_t i = 0; i < n && i < STORVSP_MAX_CONTROLLERS; i++)
		json_array_append_new(
			list, json_pack("{s:i, s:s, s:b, s:b, s:o, s:i, s:i, s:i}", "index",
					(int)info[i].index, "instance", info[i].instance, "open",
					info[i].open, "ready", info[i].ready, "vstor_version",
					info[i].version ? json_sprintf("%u.%u", info[i].version >> 8,
								       info[i].version & 0xff)
							: json_null(),
					"channels", (int)info[i].nr_channels, "open_channels",
					(int)info[i].open_channels, "luns", (int)info[i].nr_luns));
	return list;
}

static int get_disks(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct control *c = ctx;

	if (!c->vm)
		return api_error_set(err, 503, "the VM is restarting");
	*reply = json_pack("{s:o, s:o}", "controllers", controllers_json(c->vm), "disks",
			   disks_json(c->vm));
	return *reply ? 200 : -ENOMEM;
}

/* Members are unpacked as 64-bit integers ("I"): jansson's "i" would
 * truncate 4294967299 to 3 and let it through the range checks. */
static int check_address(struct api_error *err, json_int_t ctrl, json_int_t lun)
{
	if (ctrl < 0 || ctrl >= (json_int_t)STORVSP_MAX_CONTROLLERS)
		return api_error_set(err, 400, "controller: must be 0..%u",
				     STORVSP_MAX_CONTROLLERS - 1);
	if (lun < 0 || lun >= (json_int_t)STORVSP_MAX_LUNS)
		return api_error_set(err, 400, "lun: must be 0..%u", STORVSP_MAX_LUNS - 1);
	return 0;
}

/* Unpack {controller?, lun[, size_bytes]} and check the address. */
static int unpack_lun(const json_t *body, struct api_error *err, int *ctrl, int *lun,
		      json_int_t *size)
{
	json_int_t c = 0, l = -1;
	int ret = size ? api_unpack(body, err, "{s?:I, s:I, s:I}", "controller", &c, "lun", &l,
				    "size_bytes", size)
		       : api_unpack(body, err, "{s?:I, s:I}", "controller", &c, "lun", &l);

	if (!ret)
		ret = check_address(err, c, l);
	*ctrl = (int)c;
	*lun = (int)l;
	return ret;
}

static int put_disk_add(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct control *c = ctx;
	struct storvsp_disk_config dc = { .lun = -1, .format = BLK_FMT_AUTO };
	const char *path = NULL, *format = NULL;
	json_int_t ctrl = 0, lun = 0;
	int read_only = 0, ret;
	char msg[512];

	ret = api_unpack(body, err, "{s:s, s?:b, s?:s, s?:I, s?:I}", "path", &path, "read_only",
			 &read_only, "format", &format, "controller", &ctrl, "lun", &lun);
	if (ret)
		return ret;
	/* No lun member: the lowest free LUN. */
	ret = check_address(err, ctrl, lun);
	if (ret)
		return ret;
	if (!json_object_get(body, "lun"))
		lun = -1;
	if (path[0] != '/')
		return api_error_set(err, 400, "path: must be absolute, got '%s'", path);
	if (strlen(path) >= sizeof(dc.path))
		return api_error_set(err, 400, "path: longer than %zu bytes", sizeof(dc.path) - 1);
	if (format && (dc.format = blk_format_from_name(format)) == BLK_FMT_AUTO)
		return api_error_set(err, 400, "format: must be raw, vhd or vhdx, got '%s'", format);
	if (!c->vm)
		return api_error_set(err, 409, "the VM is restarting");
	strcpy(dc.path, path);
	dc.read_only = read_only;
	dc.controller = (unsigned)ctrl;
	dc.lun = (int)lun;
	ret = storvsp_add_disk(c->vm->storvsp, &dc, msg, sizeof(msg));
	if (ret == -EEXIST || ret == -ENOSPC)
		return api_error_set(err, 409, "%s", msg);
	if (ret == -ENOMEM)
		return ret;
	if (ret < 0)
		return api_error_set(err, 400, "%s", msg);
	dc.lun = ret;
	if (disk_set_add(c->disks, &dc)) {
		storvsp_remove_lun(c->vm->storvsp, dc.controller, (unsigned)dc.lun);
		return -ENOMEM;
	}
	log_info("API: added %s as controller %u LUN %d", dc.path, dc.controller, dc.lun);
	*reply = json_pack("{s:i, s:i}", "controller", (int)ctrl, "lun", dc.lun);
	return *reply ? 200 : -ENOMEM;
}

static int put_disk_remove(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct control *c = ctx;
	int ctrl = 0, lun = -1;
	int ret = unpack_lun(body, err, &ctrl, &lun, NULL);

	if (ret)
		return ret;
	if (!c->vm)
		return api_error_set(err, 409, "the VM is restarting");
	ret = storvsp_remove_lun(c->vm->storvsp, (unsigned)ctrl, (unsigned)lun);
	if (ret == -ENODEV)
		return api_error_set(err, 404, "no disk at controller %d LUN %d", ctrl, lun);
	if (ret)
		return api_error_set(err, 500, "removing controller %d LUN %d: %s", ctrl, lun,
				     strerror(-ret));
	disk_set_remove(c->disks, (unsigned)ctrl, (unsigned)lun);
	log_info("API: removed controller %d LUN %d", ctrl, lun);
	return 204;
}

static bool find_lun(struct vm *vm, unsigned ctrl, unsigned lun, struct storvsp_lun_info *out)
{
	size_t n = storvsp_list(vm->storvsp, NULL, 0);
	struct storvsp_lun_info *info = calloc(n ? n : 1, sizeof(*info));
	bool found = false;

	if (!info)
		return false;
	n = storvsp_list(vm->storvsp, info, n);
	for (size_t i = 0; i < n && !found; i++) {
		if (info[i].controller == ctrl && info[i].lun == lun) {
			*out = info[i];
			found = true;
		}
	}
	free(info);
	return found;
}

static int put_disk_resize(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct control *c = ctx;
	struct storvsp_lun_info info;
	int ctrl = 0, lun = -1;
	json_int_t size = 0;
	int ret = unpack_lun(body, err, &ctrl, &lun, &size);

	if (ret)
		return ret;
	if (!c->vm)
		return api_error_set(err, 409, "the VM is restarting");
	if (!find_lun(c->vm, (unsigned)ctrl, (unsigned)lun, &info))
		return api_error_set(err, 404, "no disk at controller %d LUN %d", ctrl, lun);
	if (size <= 0 || (uint64_t)size % info.block_size)
		return api_error_set(err, 400, "size_bytes: must be a positive multiple of %u",
				     info.block_size);
	if ((uint64_t)size < info.size)
		return api_error_set(err, 400, "size_bytes: %lld is smaller than the disk (%llu); "
				     "a disk in use only grows", (long long)size,
				     (unsigned long long)info.size);
	ret = storvsp_resize_lun(c->vm->storvsp, (unsigned)ctrl, (unsigned)lun, (uint64_t)size);
	if (ret == -EROFS)
		return api_error_set(err, 409, "controller %d LUN %d is read-only", ctrl, lun);
	if (ret == -EOPNOTSUPP)
		return api_error_set(err, 409, "%s cannot be resized (a block device, or a format "
				     "without resize)", info.label);
	if (ret == -EINVAL || ret == -EFBIG)
		return api_error_set(err, 400, "size_bytes: %lld: %s", (long long)size,
				     strerror(-ret));
	if (ret)
		return api_error_set(err, 500, "resizing controller %d LUN %d: %s", ctrl, lun,
				     strerror(-ret));
	log_info("API: resized controller %d LUN %d to %lld bytes", ctrl, lun, (long long)size);
	*reply = json_pack("{s:i, s:i, s:I}", "controller", ctrl, "lun", lun, "size_bytes", size);
	return *reply ? 200 : -ENOMEM;
}

/* ---- lifetime ----------------------------------------------------------- */

static int serve_api(struct control *c, const char *path)
{
	c->api = api_new(c->loop, path);
	if (!c->api)
		return -errno;
	if (api_route(c->api, "GET", "/v1/status", get_status, c) ||
	    api_route(c->api, "PUT", "/v1/actions/shutdown", put_shutdown, c) ||
	    api_route(c->api, "PUT", "/v1/actions/stop", put_stop, c) ||
	    api_route(c->api, "GET", "/v1/disks", get_disks, c) ||
	    api_route(c->api, "PUT", "/v1/disks/add", put_disk_add, c) ||
	    api_route(c->api, "PUT", "/v1/disks/remove", put_disk_remove, c) ||
	    api_route(c->api, "PUT", "/v1/disks/resize", put_disk_resize, c))
		return -ENOMEM;
	return 0;
}

int control_init(struct control *c, struct loop *loop, const char *api_path,
		 struct disk_set *disks)
{
	sigset_t set;
	int fd, ret;

	memset(c, 0, sizeof(*c));
	c->loop = loop;
	c->disks = disks;
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
	c->boot_ms = mono_ms();
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
