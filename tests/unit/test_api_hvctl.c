/* hvctl, run in-process against a real API server on a real loop (in its
 * own thread) with fake handlers: output, messages and exit statuses. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "api/api.h"
#include "core/loop.h"
#include "hvctl/hvctl.h"
#include "util/log.h"

/* ---- a fake VM behind the API ---- */

struct fake_vm {
	int shutdown_connected;
	int stops;
	int last_force;
	/* The disk requests: what the last one was, and how many came. */
	pthread_mutex_t lock;
	int disk_calls;
	char last_request[64]; /* "PUT /v1/disks/add" */
	char *last_body;       /* sorted compact JSON, or NULL for no body */
	int disk_error;        /* if set, the disk handlers fail with it */
};

static int status_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	*reply = json_pack("{s:s, s:i, s:n}", "state", "running", "vcpus", 2, "vmbus_version");
	return 200;
}

static int shutdown_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct fake_vm *vm = ctx;

	if (!__atomic_load_n(&vm->shutdown_connected, __ATOMIC_SEQ_CST))
		return api_error_set(err, 409, "the guest's shutdown service is not connected");
	return 202;
}

static int stop_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct fake_vm *vm = ctx;
	int force = 0;
	int ret = api_unpack(body, err, "{s:b}", "force", &force);

	if (ret)
		return ret;
	__atomic_store_n(&vm->last_force, force, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&vm->stops, 1, __ATOMIC_SEQ_CST);
	*reply = json_pack("{s:s}", "state", "stopping");
	return 202;
}

/* Remember a disk request; returns the status the handler should fail
 * with, or 0. */
static int record_disk_request(struct fake_vm *vm, const char *request, const json_t *body)
{
	int fail;

	pthread_mutex_lock(&vm->lock);
	vm->disk_calls++;
	snprintf(vm->last_request, sizeof(vm->last_request), "%s", request);
	free(vm->last_body);
	vm->last_body = body ? json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	fail = vm->disk_error;
	pthread_mutex_unlock(&vm->lock);
	return fail;
}

static int disks_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	if (record_disk_request(ctx, "GET /v1/disks", body))
		return api_error_set(err, 503, "the VM is restarting");
	*reply = json_pack("{s:[{s:i, s:b, s:n, s:i}], s:[{s:i, s:i, s:s, s:s, s:I}]}",
			   "controllers", "index", 0, "ready", 1, "vstor_version", "luns", 1,
			   "disks", "controller", 0, "lun", 0, "path", "/images/root.vhdx", "format",
			   "vhdx", "size_bytes", (json_int_t)1 << 30);
	return 200;
}

static int disk_add_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	int fail = record_disk_request(ctx, "PUT /v1/disks/add", body);

	if (fail)
		return api_error_set(err, fail, "controller 0 LUN 3 is already in use");
	*reply = json_pack("{s:i, s:i}", "controller", 1, "lun", 3);
	return 200;
}

static int disk_remove_handler(void *ctx, const json_t *body, json_t **reply,
			       struct api_error *err)
{
	int fail = record_disk_request(ctx, "PUT /v1/disks/remove", body);

	if (fail)
		return api_error_set(err, fail, "no disk at controller 2 LUN 5");
	return 204;
}

static int disk_resize_handler(void *ctx, const json_t *body, json_t **reply,
			       struct api_error *err)
{
	int fail = record_disk_request(ctx, "PUT /v1/disks/resize", body);

	if (fail)
		return api_error_set(err, fail, "controller 0 LUN 0 is read-only");
	*reply = json_pack("{s:i, s:i, s:I}", "controller", 0, "lun", 0, "size_bytes",
			   (json_int_t)2 << 30);
	return 200;
}

struct server {
	char dir[64];
	char path[128];
	struct loop *loop;
	struct api *api;
	struct loop_source stop_src;
	pthread_t thread;
	struct fake_vm vm;
	char cwd[PATH_MAX]; /* restored by teardown (tests may chdir) */
};

static void on_stop(struct loop_source *src, uint32_t events)
{
	struct server *s = container_of(src, struct server, stop_src);
	eventfd_t v;

	eventfd_read(src->fd, &v);
	loop_stop(s->loop);
}

static void *loop_thread(void *arg)
{
	struct server *s = arg;

	loop_run(s->loop);
	return NULL;
}

static int setup(void **state)
{
	struct server *s = calloc(1, sizeof(*s));
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	assert_non_null(s);
	strcpy(s->dir, "/tmp/hvmm-hvctl-test.XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	assert_non_null(getcwd(s->cwd, sizeof(s->cwd)));
	assert_int_equal(pthread_mutex_init(&s->vm.lock, NULL), 0);
	snprintf(s->path, sizeof(s->path), "%s/api.sock", s->dir);
	s->loop = loop_new();
	s->api = api_new(s->loop, s->path);
	assert_non_null(s->api);
	assert_int_equal(api_route(s->api, "GET", "/v1/status", status_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/actions/shutdown", shutdown_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/actions/stop", stop_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "GET", "/v1/disks", disks_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/disks/add", disk_add_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/disks/remove", disk_remove_handler, &s->vm),
			 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/disks/resize", disk_resize_handler, &s->vm),
			 0);
	assert_int_equal(loop_add(s->loop, &s->stop_src, fd, EPOLLIN, on_stop), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, loop_thread, s), 0);
	*state = s;
	return 0;
}

/* Files the disk tests create in s->dir. */
static const char *const test_files[] = { "disk.raw", "a,b.vhdx", "sub" };

static void remove_test_files(const struct server *s)
{
	char path[256];

	for (size_t i = 0; i < sizeof(test_files) / sizeof(test_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", s->dir, test_files[i]);
		if (unlink(path) && errno == EISDIR) /* Linux's answer for a directory */
			rmdir(path);
	}
}

static int teardown(void **state)
{
	struct server *s = *state;

	eventfd_write(s->stop_src.fd, 1);
	pthread_join(s->thread, NULL);
	loop_del(s->loop, &s->stop_src);
	close(s->stop_src.fd);
	api_free(s->api);
	loop_free(s->loop);
	assert_int_equal(chdir(s->cwd), 0);
	remove_test_files(s);
	assert_int_equal(rmdir(s->dir), 0);
	free(s->vm.last_body);
	pthread_mutex_destroy(&s->vm.lock);
	free(s);
	return 0;
}

/* ---- running hvctl ---- */

struct run {
	int status;
	char *out, *err;
};

/* hvctl with the NULL-terminated arguments after argv[0]; "@" stands for
 * the server's socket path. */
static struct run hvctl(const struct server *s, ...)
{
	char *argv[16] = { "hvctl" };
	int argc = 1;
	size_t out_len, err_len;
	struct run r;
	FILE *out, *err;
	va_list ap;

	va_start(ap, s);
	for (char *arg; (arg = va_arg(ap, char *));) {
		assert_true(argc < 15);
		argv[argc++] = strcmp(arg, "@") ? arg : (char *)s->path;
	}
	va_end(ap);
	out = open_memstream(&r.out, &out_len);
	err = open_memstream(&r.err, &err_len);
	assert_non_null(out);
	assert_non_null(err);
	r.status = hvctl_main(argc, argv, out, err);
	fclose(out);
	fclose(err);
	return r;
}

static void expect(struct run r, int status, const char *out, const char *err)
{
	if (r.status != status)
		fail_msg("exit %d, wanted %d; stdout \"%s\", stderr \"%s\"", r.status, status, r.out, r.err);
	if (out ? !strstr(r.out, out) : *r.out != '\0')
		fail_msg("stdout \"%s\" does not have \"%s\"", r.out, out ? out : "(nothing)");
	if (err ? !strstr(r.err, err) : *r.err != '\0')
		fail_msg("stderr \"%s\" does not have \"%s\"", r.err, err ? err : "(nothing)");
	free(r.out);
	free(r.err);
}

/* ---- tests ---- */

static void help(void **state)
{
	struct server *s = *state;
	struct run r = hvctl(s, "--help", NULL);

	assert_non_null(strstr(r.out, "  status "));
	assert_non_null(strstr(r.out, "  shutdown "));
	assert_non_null(strstr(r.out, "  stop [--force] "));
	expect(r, 0, "Exit status: 0 success; 1 the API returned an error or could not be\n"
		     "reached; 2 bad command line.",
	       NULL);
	expect(hvctl(s, "-h", NULL), 0, "usage: hvctl [--api SOCKET]", NULL);
	expect(hvctl(s, "stop", "--help", NULL), 0, "usage: hvctl --api SOCKET stop [--force]", NULL);
	expect(hvctl(s, "--api", "@", "status", "-h", NULL), 0, "usage: hvctl --api SOCKET status",
	       NULL);
}

static void bad_command_lines(void **state)
{
	struct server *s = *state;

	expect(hvctl(s, NULL), 2, NULL, "hvctl: no command given (see hvctl --help)");
	expect(hvctl(s, "reboot", NULL), 2, NULL, "unknown command 'reboot'");
	expect(hvctl(s, "disk", NULL), 2, NULL,
	       "hvctl: 'disk' needs one of: list, add, remove, resize (see hvctl --help)");
	expect(hvctl(s, "disk", "frob", NULL), 2, NULL, "'disk' needs one of: list, add, remove");
	expect(hvctl(s, "--frobnicate", "status", NULL), 2, NULL, "unknown option '--frobnicate'");
	expect(hvctl(s, "--api", NULL), 2, NULL, "--api needs a value");
	expect(hvctl(s, "status", NULL), 2, NULL, "status needs --api SOCKET");
	expect(hvctl(s, "--api", "@", "status", "now", NULL), 2, NULL,
	       "status: unexpected argument 'now'");
	expect(hvctl(s, "--api", "@", "stop", "--forse", NULL), 2, NULL,
	       "stop: unexpected argument '--forse'");
	expect(hvctl(s, "--timeout", "soon", "--api", "@", "status", NULL), 2, NULL,
	       "--timeout: not a number of seconds");
	expect(hvctl(s, "--timeout", "0", "--api", "@", "status", NULL), 2, NULL, "--timeout");
	/* Options go before the command. */
	expect(hvctl(s, "status", "--api", "@", NULL), 2, NULL, "status needs --api SOCKET");
}

static void unreachable(void **state)
{
	struct server *s = *state;

	expect(hvctl(s, "--api", "/nonexistent-dir-for-hvmm-tests/vm.sock", "status", NULL), 1, NULL,
	       "hvctl: /nonexistent-dir-for-hvmm-tests/vm.sock: GET /v1/status: connect: "
	       "No such file or directory\n");
}

static void status_pretty_printed(void **state)
{
	struct server *s = *state;
	struct run r = hvctl(s, "--api", "@", "--timeout", "3", "status", NULL);
	json_t *parsed = json_loads(r.out, 0, NULL);

	assert_non_null(parsed);
	assert_int_equal(json_integer_value(json_object_get(parsed, "vcpus")), 2);
	assert_true(json_is_null(json_object_get(parsed, "vmbus_version")));
	json_decref(parsed);
	expect(r, 0, "{\n  \"state\": \"running\",\n  \"vcpus\": 2,\n  \"vmbus_version\": null\n}\n",
	       NULL);
}

static void shutdown_needs_service(void **state)
{
	struct server *s = *state;
	char want[256];

	snprintf(want, sizeof(want),
		 "hvctl: %s: PUT /v1/actions/shutdown: 409 Conflict: the guest's shutdown "
		 "service is not connected\n",
		 s->path);
	expect(hvctl(s, "--api", "@", "shutdown", NULL), 1, NULL, want);
	__atomic_store_n(&s->vm.shutdown_connected, 1, __ATOMIC_SEQ_CST);
	expect(hvctl(s, "--api", "@", "shutdown", NULL), 0, NULL, NULL);
}

static void stop_with_and_without_force(void **state)
{
	struct server *s = *state;

	expect(hvctl(s, "--api", "@", "stop", NULL), 0, "\"state\": \"stopping\"", NULL);
	assert_int_equal(__atomic_load_n(&s->vm.last_force, __ATOMIC_SEQ_CST), 0);
	expect(hvctl(s, "--api", "@", "stop", "--force", NULL), 0, "stopping", NULL);
	assert_int_equal(__atomic_load_n(&s->vm.last_force, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(__atomic_load_n(&s->vm.stops, __ATOMIC_SEQ_CST), 2);
}

/* ---- disks ---- */

/* Create an empty file s->dir/name; its canonical absolute path goes in abs. */
static void make_file(const struct server *s, const char *name, char *abs, size_t len)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", s->dir, name);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_non_null(realpath(path, abs));
	assert_true(strlen(abs) < len);
}

static void set_disk_error(struct server *s, int status)
{
	pthread_mutex_lock(&s->vm.lock);
	s->vm.disk_error = status;
	pthread_mutex_unlock(&s->vm.lock);
}

static int disk_calls(struct server *s)
{
	int n;

	pthread_mutex_lock(&s->vm.lock);
	n = s->vm.disk_calls;
	pthread_mutex_unlock(&s->vm.lock);
	return n;
}

/* The server has had `calls` disk requests, the last `request` with `body`
 * (sorted, compact JSON; NULL: no body). */
static void expect_request(struct server *s, int calls, const char *request, const char *body)
{
	pthread_mutex_lock(&s->vm.lock);
	if (s->vm.disk_calls != calls)
		fail_msg("%d disk requests, wanted %d", s->vm.disk_calls, calls);
	if (strcmp(s->vm.last_request, request))
		fail_msg("last request \"%s\", wanted \"%s\"", s->vm.last_request, request);
	if (body ? !s->vm.last_body || strcmp(s->vm.last_body, body) : s->vm.last_body != NULL)
		fail_msg("%s sent %s, wanted %s", request,
			 s->vm.last_body ? s->vm.last_body : "no body", body ? body : "no body");
	pthread_mutex_unlock(&s->vm.lock);
}

static void disk_help(void **state)
{
	struct server *s = *state;
	struct run r = hvctl(s, "--help", NULL);

	assert_non_null(strstr(r.out, "  disk list "));
	assert_non_null(strstr(r.out, "  disk add PATH[,ro][,format=F][,lun=N][,controller=N]\n"));
	assert_non_null(strstr(r.out, "  disk remove LUN [--controller N]\n"));
	expect(r, 0, "  disk resize LUN --size SIZE [--controller N]\n", NULL);
	expect(hvctl(s, "disk", "remove", "--help", NULL), 0,
	       "usage: hvctl --api SOCKET disk remove LUN [--controller N]\n", NULL);
	expect(hvctl(s, "--api", "@", "disk", "add", "x,lun=3", "-h", NULL), 0,
	       "usage: hvctl --api SOCKET disk add PATH[,ro][,format=F][,lun=N][,controller=N]\n",
	       NULL);
	/* "disk" alone is no command. */
	expect(hvctl(s, "--api", "@", "disk", NULL), 2, NULL, "'disk'");
	expect(hvctl(s, "disk", "list", NULL), 2, NULL, "disk list needs --api SOCKET");
	assert_int_equal(disk_calls(s), 0);
}

static void disk_list(void **state)
{
	struct server *s = *state;
	char want[256];

	expect(hvctl(s, "--api", "@", "disk", "list", NULL), 0,
	       "\"path\": \"/images/root.vhdx\"", NULL);
	expect_request(s, 1, "GET /v1/disks", NULL);
	expect(hvctl(s, "--api", "@", "disk", "list", "--all", NULL), 2, NULL,
	       "disk list: unexpected argument '--all'");
	assert_int_equal(disk_calls(s), 1);

	set_disk_error(s, 503);
	snprintf(want, sizeof(want),
		 "hvctl: %s: GET /v1/disks: 503 Service Unavailable: the VM is restarting\n",
		 s->path);
	expect(hvctl(s, "--api", "@", "disk", "list", NULL), 1, NULL, want);
	assert_int_equal(disk_calls(s), 2);
}

static void disk_add_relative_path(void **state)
{
	struct server *s = *state;
	char abs[PATH_MAX], body[PATH_MAX + 128];

	make_file(s, "disk.raw", abs, sizeof(abs));
	assert_int_equal(chdir(s->dir), 0);
	expect(hvctl(s, "--api", "@", "disk", "add", "disk.raw", NULL), 0, "\"lun\": 3", NULL);
	/* Absolute, and neither lun nor format when the spec has none. */
	snprintf(body, sizeof(body), "{\"controller\":0,\"path\":\"%s\",\"read_only\":false}", abs);
	expect_request(s, 1, "PUT /v1/disks/add", body);

	/* Resolved from the current directory, ".." and all; ",," is a comma
	 * in the path; lun=0 is sent. */
	make_file(s, "a,b.vhdx", abs, sizeof(abs));
	assert_int_equal(mkdir("sub", 0700), 0);
	assert_int_equal(chdir("sub"), 0);
	expect(hvctl(s, "--api", "@", "disk", "add", "./../a,,b.vhdx,lun=0", NULL), 0, "\"lun\"",
	       NULL);
	snprintf(body, sizeof(body),
		 "{\"controller\":0,\"lun\":0,\"path\":\"%s\",\"read_only\":false}", abs);
	expect_request(s, 2, "PUT /v1/disks/add", body);
}

static void disk_add_options(void **state)
{
	struct server *s = *state;
	char abs[PATH_MAX], spec[PATH_MAX + 64], body[PATH_MAX + 128];

	make_file(s, "disk.raw", abs, sizeof(abs));
	snprintf(spec, sizeof(spec), "%s,ro,format=vhdx,lun=3,controller=1", abs);
	expect(hvctl(s, "--api", "@", "disk", "add", spec, NULL), 0,
	       "{\n  \"controller\": 1,\n  \"lun\": 3\n}\n", NULL);
	snprintf(body, sizeof(body),
		 "{\"controller\":1,\"format\":\"vhdx\",\"lun\":3,\"path\":\"%s\",\"read_only\":true}",
		 abs);
	expect_request(s, 1, "PUT /v1/disks/add", body);

	/* Any order; each option alone. */
	snprintf(spec, sizeof(spec), "%s,controller=2,format=raw", abs);
	expect(hvctl(s, "--api", "@", "disk", "add", spec, NULL), 0, "\"lun\"", NULL);
	snprintf(body, sizeof(body),
		 "{\"controller\":2,\"format\":\"raw\",\"path\":\"%s\",\"read_only\":false}", abs);
	expect_request(s, 2, "PUT /v1/disks/add", body);

	snprintf(spec, sizeof(spec), "%s,format=vhd,ro", abs);
	expect(hvctl(s, "--api", "@", "disk", "add", spec, NULL), 0, "\"lun\"", NULL);
	snprintf(body, sizeof(body),
		 "{\"controller\":0,\"format\":\"vhd\",\"path\":\"%s\",\"read_only\":true}", abs);
	expect_request(s, 3, "PUT /v1/disks/add", body);

	snprintf(spec, sizeof(spec), "%s,lun=63", abs);
	expect(hvctl(s, "--api", "@", "disk", "add", spec, NULL), 0, "\"lun\"", NULL);
	snprintf(body, sizeof(body),
		 "{\"controller\":0,\"lun\":63,\"path\":\"%s\",\"read_only\":false}", abs);
	expect_request(s, 4, "PUT /v1/disks/add", body);
}

static void disk_add_missing_file(void **state)
{
	struct server *s = *state;
	char spec[128], want[192];

	snprintf(spec, sizeof(spec), "%s/nope.vhdx,ro,lun=2", s->dir);
	snprintf(want, sizeof(want), "hvctl: %s/nope.vhdx: No such file or directory\n", s->dir);
	expect(hvctl(s, "--api", "@", "disk", "add", spec, NULL), 1, NULL, want);
	assert_int_equal(chdir(s->dir), 0);
	expect(hvctl(s, "--api", "@", "disk", "add", "nope.raw", NULL), 1, NULL,
	       "hvctl: nope.raw: No such file or directory\n");
	/* A directory on the way that is not there. */
	expect(hvctl(s, "--api", "@", "disk", "add", "sub/disk.raw", NULL), 1, NULL,
	       "hvctl: sub/disk.raw: No such file or directory\n");
	assert_int_equal(disk_calls(s), 0);
}

static void disk_add_bad_specs(void **state)
{
	struct server *s = *state;
	char abs[PATH_MAX], spec[PATH_MAX + 16];

	expect(hvctl(s, "--api", "@", "disk", "add", "x,lun=99", NULL), 2, NULL,
	       "disk add: disk x: lun must be 0..63 (see hvctl --help)\n");
	expect(hvctl(s, "--api", "@", "disk", "add", "x,format=qcow2", NULL), 2, NULL,
	       "disk add: disk x: unknown format 'qcow2'");
	expect(hvctl(s, "--api", "@", "disk", "add", NULL), 2, NULL, "disk add: expected one disk");
	expect(hvctl(s, "--api", "@", "disk", "add", "x", "y", NULL), 2, NULL,
	       "disk add: expected one disk");
	expect(hvctl(s, "--api", "@", "disk", "add", "x,controller=4", NULL), 2, NULL,
	       "disk x: controller must be 0..3");
	expect(hvctl(s, "--api", "@", "disk", "add", "x,rw", NULL), 2, NULL,
	       "disk x: unknown option 'rw'");
	expect(hvctl(s, "--api", "@", "disk", "add", "x,ro,ro", NULL), 2, NULL,
	       "disk x: option 'ro' given twice");
	expect(hvctl(s, "--api", "@", "disk", "add", ",ro", NULL), 2, NULL, "missing path");
	expect(hvctl(s, "disk", "add", "x", NULL), 2, NULL, "disk add needs --api SOCKET");
	/* The spec is checked even when the file is there. */
	make_file(s, "disk.raw", abs, sizeof(abs));
	snprintf(spec, sizeof(spec), "%s,lun=64", abs);
	expect(hvctl(s, "--api", "@", "disk", "add", spec, NULL), 2, NULL, "lun must be 0..63");
	assert_int_equal(disk_calls(s), 0);
}

static void disk_remove(void **state)
{
	struct server *s = *state;

	/* 204: nothing on stdout. */
	expect(hvctl(s, "--api", "@", "disk", "remove", "5", "--controller", "2", NULL), 0, NULL,
	       NULL);
	expect_request(s, 1, "PUT /v1/disks/remove", "{\"controller\":2,\"lun\":5}");
	expect(hvctl(s, "--api", "@", "disk", "remove", "--controller", "3", "63", NULL), 0, NULL,
	       NULL);
	expect_request(s, 2, "PUT /v1/disks/remove", "{\"controller\":3,\"lun\":63}");
	expect(hvctl(s, "--api", "@", "disk", "remove", "0", NULL), 0, NULL, NULL);
	expect_request(s, 3, "PUT /v1/disks/remove", "{\"controller\":0,\"lun\":0}");

	expect(hvctl(s, "--api", "@", "disk", "remove", NULL), 2, NULL, "disk remove: which LUN?");
	expect(hvctl(s, "--api", "@", "disk", "remove", "--controller", "1", NULL), 2, NULL,
	       "disk remove: which LUN?");
	expect(hvctl(s, "--api", "@", "disk", "remove", "abc", NULL), 2, NULL,
	       "disk remove: LUN 'abc' must be 0..63");
	expect(hvctl(s, "--api", "@", "disk", "remove", "64", NULL), 2, NULL,
	       "disk remove: LUN '64' must be 0..63");
	expect(hvctl(s, "--api", "@", "disk", "remove", "-1", NULL), 2, NULL,
	       "disk remove: unexpected argument '-1'");
	expect(hvctl(s, "--api", "@", "disk", "remove", "5", "--controller", "4", NULL), 2, NULL,
	       "disk remove: --controller must be 0..3");
	expect(hvctl(s, "--api", "@", "disk", "remove", "5", "--controller", NULL), 2, NULL,
	       "disk remove: --controller needs a value");
	expect(hvctl(s, "--api", "@", "disk", "remove", "5", "6", NULL), 2, NULL,
	       "disk remove: unexpected argument '6'");
	expect(hvctl(s, "--api", "@", "disk", "remove", "5", "--size", "1G", NULL), 2, NULL,
	       "disk remove: unexpected argument '--size'");
	assert_int_equal(disk_calls(s), 3);
}

static void disk_resize(void **state)
{
	struct server *s = *state;

	expect(hvctl(s, "--api", "@", "disk", "resize", "0", "--size", "2G", NULL), 0,
	       "\"size_bytes\": 2147483648", NULL);
	expect_request(s, 1, "PUT /v1/disks/resize",
		       "{\"controller\":0,\"lun\":0,\"size_bytes\":2147483648}");
	expect(hvctl(s, "--api", "@", "disk", "resize", "--size", "1536M", "7", "--controller", "1",
		     NULL),
	       0, "size_bytes", NULL);
	expect_request(s, 2, "PUT /v1/disks/resize",
		       "{\"controller\":1,\"lun\":7,\"size_bytes\":1610612736}");
	expect(hvctl(s, "--api", "@", "disk", "resize", "63", "--size", "4096", NULL), 0,
	       "size_bytes", NULL);
	expect_request(s, 3, "PUT /v1/disks/resize",
		       "{\"controller\":0,\"lun\":63,\"size_bytes\":4096}");

	expect(hvctl(s, "--api", "@", "disk", "resize", "0", NULL), 2, NULL,
	       "disk resize: --size is required");
	expect(hvctl(s, "--api", "@", "disk", "resize", "0", "--controller", "1", NULL), 2, NULL,
	       "disk resize: --size is required");
	expect(hvctl(s, "--api", "@", "disk", "resize", "--size", "2G", NULL), 2, NULL,
	       "disk resize: which LUN?");
	expect(hvctl(s, "--api", "@", "disk", "resize", "0", "--size", NULL), 2, NULL,
	       "disk resize: --size needs a value");
	expect(hvctl(s, "--api", "@", "disk", "resize", "0", "--size", "0", NULL), 2, NULL,
	       "disk resize: --size '0' is not a size");
	expect(hvctl(s, "--api", "@", "disk", "resize", "0", "--size", "big", NULL), 2, NULL,
	       "disk resize: --size 'big' is not a size");
	/* 2^63 bytes does not fit the API's signed 64-bit size_bytes. */
	expect(hvctl(s, "--api", "@", "disk", "resize", "0", "--size", "8388608T", NULL), 2, NULL,
	       "disk resize: --size is too large");
	expect(hvctl(s, "--api", "@", "disk", "resize", "64", "--size", "2G", NULL), 2, NULL,
	       "disk resize: LUN '64' must be 0..63");
	assert_int_equal(disk_calls(s), 3);
}

static void disk_server_errors(void **state)
{
	struct server *s = *state;
	char abs[PATH_MAX], want[256];

	make_file(s, "disk.raw", abs, sizeof(abs));
	set_disk_error(s, 409);
	snprintf(want, sizeof(want),
		 "hvctl: %s: PUT /v1/disks/add: 409 Conflict: controller 0 LUN 3 is already in use\n",
		 s->path);
	expect(hvctl(s, "--api", "@", "disk", "add", abs, NULL), 1, NULL, want);
	assert_int_equal(disk_calls(s), 1);
	snprintf(want, sizeof(want),
		 "hvctl: %s: PUT /v1/disks/resize: 409 Conflict: controller 0 LUN 0 is read-only\n",
		 s->path);
	expect(hvctl(s, "--api", "@", "disk", "resize", "0", "--size", "2G", NULL), 1, NULL, want);
	assert_int_equal(disk_calls(s), 2);
	set_disk_error(s, 404);
	snprintf(want, sizeof(want),
		 "hvctl: %s: PUT /v1/disks/remove: 404 Not Found: no disk at controller 2 LUN 5\n",
		 s->path);
	expect(hvctl(s, "--api", "@", "disk", "remove", "5", "--controller", "2", NULL), 1, NULL,
	       want);
	assert_int_equal(disk_calls(s), 3);
	/* No server at all. */
	expect(hvctl(s, "--api", "/nonexistent-dir-for-hvmm-tests/vm.sock", "disk", "remove", "1",
		     NULL),
	       1, NULL,
	       "hvctl: /nonexistent-dir-for-hvmm-tests/vm.sock: PUT /v1/disks/remove: connect: "
	       "No such file or directory\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(help, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_command_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(status_pretty_printed, setup, teardown),
		cmocka_unit_test_setup_teardown(shutdown_needs_service, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_with_and_without_force, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_help, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_list, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_add_relative_path, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_add_options, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_add_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_add_bad_specs, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_resize, setup, teardown),
		cmocka_unit_test_setup_teardown(disk_server_errors, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
