/* hvctl, run in-process against a real API server on a real loop (in its
 * own thread) with fake handlers: output, messages and exit statuses. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

struct server {
	char dir[64];
	char path[128];
	struct loop *loop;
	struct api *api;
	struct loop_source stop_src;
	pthread_t thread;
	struct fake_vm vm;
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
	snprintf(s->path, sizeof(s->path), "%s/api.sock", s->dir);
	s->loop = loop_new();
	s->api = api_new(s->loop, s->path);
	assert_non_null(s->api);
	assert_int_equal(api_route(s->api, "GET", "/v1/status", status_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/actions/shutdown", shutdown_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/actions/stop", stop_handler, &s->vm), 0);
	assert_int_equal(loop_add(s->loop, &s->stop_src, fd, EPOLLIN, on_stop), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, loop_thread, s), 0);
	*state = s;
	return 0;
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
	assert_int_equal(rmdir(s->dir), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(help, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_command_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(status_pretty_printed, setup, teardown),
		cmocka_unit_test_setup_teardown(shutdown_needs_service, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_with_and_without_force, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
