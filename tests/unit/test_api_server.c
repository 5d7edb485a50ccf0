/* End-to-end tests of the management API: a real api on a real loop in its
 * own thread, queried over its Unix socket with the blocking client and
 * with raw bytes. Handlers are fakes standing in for the VM. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "api/api.h"
#include "api/client.h"
#include "api/http.h"
#include "api/router.h"
#include "core/loop.h"
#include "util/log.h"

#define CLIENT_TIMEOUT_MS 2000

/* ---- the fake VM behind the handlers (touched from both threads) ---- */

struct fake_vm {
	int shutdown_connected;
	int stops;
	int last_force;
};

static int status_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	int ret = api_unpack(body, err, "{}");

	if (ret)
		return ret;
	*reply = json_pack("{s:s, s:f, s:i, s:I, s:s, s:[{s:s, s:b, s:s}]}", "state", "running",
			   "uptime_s", 12.5, "vcpus", 2, "memory_bytes", (json_int_t)512 << 20,
			   "vmbus_version", "5.3", "integration_services", "name", "heartbeat",
			   "enabled", 1, "status", "ok");
	return *reply ? 200 : -ENOMEM;
}

static int shutdown_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	struct fake_vm *vm = ctx;
	int ret = api_unpack(body, err, "{}");

	if (ret)
		return ret;
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
	return 204;
}

/* Sends back {"got": body}, to see what reached the handler. */
static int echo_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	*reply = json_pack("{s:O?}", "got", (json_t *)body);
	return 200;
}

/* A typed optional field and a nested object, strictly. */
static int nested_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	json_int_t size = 0;
	const char *name = NULL;
	int ret = api_unpack(body, err, "{s:s, s?I, s?{s:b}}", "name", &name, "size", &size,
			     "opts", "ro", &(int){ 0 });

	if (ret)
		return ret;
	*reply = json_pack("{s:s, s:I}", "name", name, "size", size);
	return 201;
}

static int failing_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	*reply = json_object(); /* must be released, not sent */
	return -EIO;
}

static int bad_status_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	return 42;
}

static int quiet_error_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	return 503;
}

/* ---- the server under test, its loop in a thread ---- */

struct server {
	char dir[64];
	char path[128];
	struct loop *loop;
	struct api *api;
	struct loop_source stop_src;
	pthread_t thread;
	bool running;
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

static void add_routes(struct server *s)
{
	assert_int_equal(api_route(s->api, "GET", "/v1/status", status_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/actions/shutdown", shutdown_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/actions/stop", stop_handler, &s->vm), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/echo", echo_handler, NULL), 0);
	assert_int_equal(api_route(s->api, "POST", "/v1/echo", echo_handler, NULL), 0);
	assert_int_equal(api_route(s->api, "PUT", "/v1/nested", nested_handler, NULL), 0);
	assert_int_equal(api_route(s->api, "GET", "/v1/fail", failing_handler, NULL), 0);
	assert_int_equal(api_route(s->api, "GET", "/v1/bad-status", bad_status_handler, NULL), 0);
	assert_int_equal(api_route(s->api, "GET", "/v1/quiet-error", quiet_error_handler, NULL), 0);
}

static struct server *server_new(void)
{
	struct server *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	strcpy(s->dir, "/tmp/hvmm-api-test.XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/api.sock", s->dir);
	s->loop = loop_new();
	assert_non_null(s->loop);
	return s;
}

static void server_start(struct server *s)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(loop_add(s->loop, &s->stop_src, fd, EPOLLIN, on_stop), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, loop_thread, s), 0);
	s->running = true;
}

static void server_free(struct server *s)
{
	if (s->running) {
		eventfd_write(s->stop_src.fd, 1);
		pthread_join(s->thread, NULL);
		loop_del(s->loop, &s->stop_src);
		close(s->stop_src.fd);
	}
	api_free(s->api);
	unlink(s->path);
	loop_free(s->loop);
	assert_int_equal(rmdir(s->dir), 0);
	free(s);
}

static int setup_with_timeouts(void **state, unsigned idle_ms, unsigned request_ms)
{
	struct server *s = server_new();

	s->api = api_new(s->loop, s->path);
	assert_non_null(s->api);
	if (idle_ms || request_ms)
		api_set_timeouts(s->api, idle_ms, request_ms);
	add_routes(s);
	server_start(s);
	*state = s;
	return 0;
}

static int setup(void **state)
{
	return setup_with_timeouts(state, 0, 0);
}

static int setup_short_timeouts(void **state)
{
	return setup_with_timeouts(state, 150, 400);
}

static int teardown(void **state)
{
	server_free(*state);
	return 0;
}

/* ---- client helpers ---- */

/* A request through the client; returns the HTTP status. */
static int request(struct server *s, const char *method, const char *path, const json_t *body,
		   struct api_response *resp)
{
	struct api_error err;
	int ret = api_client_request(s->path, method, path, body, CLIENT_TIMEOUT_MS, resp, &err);

	if (ret)
		fail_msg("%s %s: %s", method, path, err.message);
	return resp->status;
}

static int request_text(struct server *s, const char *method, const char *path, const char *json,
			struct api_response *resp)
{
	json_error_t jerr;
	json_t *body = json_loads(json, JSON_DECODE_ANY, &jerr);
	int status;

	assert_non_null(body);
	status = request(s, method, path, body, resp);
	json_decref(body);
	return status;
}

static void expect_error(struct api_response *resp, int status, const char *message)
{
	const char *got = api_response_error(resp);

	assert_int_equal(resp->status, status);
	assert_non_null(got);
	if (!strstr(got, message))
		fail_msg("error \"%s\" does not contain \"%s\"", got, message);
	api_response_release(resp);
}

/* GET /v1/status answers 200 within a second. Connections closed by
 * clients count against the limit until the server has seen them go, so
 * right after many it may still answer 503. */
static void status_soon(struct server *s)
{
	struct api_response resp;
	int status = 0;

	for (int tries = 0; tries < 100 && status != 200; tries++) {
		status = request(s, "GET", "/v1/status", NULL, &resp);
		api_response_release(&resp);
		if (status == 503)
			usleep(10000);
	}
	assert_int_equal(status, 200);
}

/* ---- raw socket helpers ---- */

static int raw_connect(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 2 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(addr.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static void raw_send(int fd, const void *data, size_t len)
{
	assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void raw_send_str(int fd, const char *s)
{
	raw_send(fd, s, strlen(s));
}

/* Everything up to the server's hang-up. Fails on a timeout. */
static char *raw_read_all(int fd)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	assert_non_null(buf);
	for (;;) {
		ssize_t n = recv(fd, buf + len, cap - len - 1, 0);

		if (n < 0 && errno == ECONNRESET)
			break;
		if (n < 0)
			fail_msg("recv: %s", strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	buf[len] = '\0';
	return buf;
}

/* One response off a kept-alive connection; returns its status. */
static int raw_read_response(int fd, struct http_parser *p)
{
	char chunk[512];
	enum http_result r = http_parser_next(p);

	while (r == HTTP_MORE) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

		if (n <= 0)
			fail_msg("recv: %s", n ? strerror(errno) : "end of file");
		r = http_parser_feed(p, chunk, (size_t)n);
	}
	assert_int_equal(r, HTTP_DONE);
	return p->msg.status;
}

/* Send raw bytes on a new connection and collect all the server says. */
static char *raw_exchange(const char *path, const void *data, size_t len)
{
	int fd = raw_connect(path);
	char *reply;

	raw_send(fd, data, len);
	reply = raw_read_all(fd);
	close(fd);
	return reply;
}

static int status_of(const char *raw)
{
	int status = 0;

	if (sscanf(raw, "HTTP/1.1 %d ", &status) != 1)
		fail_msg("not an HTTP response: \"%.60s\"", raw);
	return status;
}

static void expect_raw(struct server *s, const char *req, int status, const char *contains)
{
	char *reply = raw_exchange(s->path, req, strlen(req));

	assert_int_equal(status_of(reply), status);
	if (contains && !strstr(reply, contains))
		fail_msg("response to \"%.40s\" lacks \"%s\":\n%s", req, contains, reply);
	free(reply);
}

/* ---- requests and routing ---- */

static void status_ok(void **state)
{
	struct server *s = *state;
	struct api_response resp;
	json_t *svc;

	assert_int_equal(request(s, "GET", "/v1/status", NULL, &resp), 200);
	assert_string_equal(json_string_value(json_object_get(resp.body, "state")), "running");
	assert_int_equal(json_integer_value(json_object_get(resp.body, "vcpus")), 2);
	assert_int_equal(json_integer_value(json_object_get(resp.body, "memory_bytes")), 512 << 20);
	assert_string_equal(json_string_value(json_object_get(resp.body, "vmbus_version")), "5.3");
	svc = json_array_get(json_object_get(resp.body, "integration_services"), 0);
	assert_string_equal(json_string_value(json_object_get(svc, "name")), "heartbeat");
	assert_true(json_is_true(json_object_get(svc, "enabled")));
	api_response_release(&resp);

	/* curl's way: a query string is ignored, the reply ends in a newline. */
	expect_raw(s, "GET /v1/status?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n"
		      "Accept: */*\r\nConnection: close\r\n\r\n",
		   200, "\"state\":\"running\"");
	expect_raw(s, "GET /v1/status HTTP/1.0\r\n\r\n", 200, "}\n");
}

static void unknown_path_404(void **state)
{
	struct server *s = *state;
	struct api_response resp;

	request(s, "GET", "/v1/nope", NULL, &resp);
	expect_error(&resp, 404, "no such endpoint: /v1/nope");
	request(s, "GET", "/v1/status/", NULL, &resp);
	expect_error(&resp, 404, "no such endpoint");
	request(s, "GET", "/", NULL, &resp);
	expect_error(&resp, 404, "no such endpoint: /");
}

static void wrong_method_405(void **state)
{
	struct server *s = *state;
	struct api_response resp;

	request(s, "POST", "/v1/status", NULL, &resp);
	expect_error(&resp, 405, "POST is not allowed on /v1/status");
	request(s, "DELETE", "/v1/echo", NULL, &resp);
	expect_error(&resp, 405, "DELETE is not allowed");
	expect_raw(s, "PUT /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n", 405, "\r\nAllow: GET\r\n");
	expect_raw(s, "GET /v1/echo HTTP/1.1\r\nConnection: close\r\n\r\n", 405,
		   "\r\nAllow: PUT, POST\r\n");
	/* Methods are case-sensitive. */
	expect_raw(s, "get /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n", 405, NULL);
}

static void stop_with_strict_body(void **state)
{
	struct server *s = *state;
	struct api_response resp;

	assert_int_equal(request_text(s, "PUT", "/v1/actions/stop", "{\"force\": true}", &resp), 204);
	assert_null(resp.body);
	assert_int_equal(__atomic_load_n(&s->vm.last_force, __ATOMIC_SEQ_CST), 1);
	assert_int_equal(request_text(s, "PUT", "/v1/actions/stop", "{\"force\": false}", &resp), 204);
	assert_int_equal(__atomic_load_n(&s->vm.last_force, __ATOMIC_SEQ_CST), 0);

	request_text(s, "PUT", "/v1/actions/stop", "{\"force\": 1}", &resp);
	expect_error(&resp, 400, "force: expected true or false, got integer");
	request_text(s, "PUT", "/v1/actions/stop", "{\"force\": \"yes\"}", &resp);
	expect_error(&resp, 400, "force: expected true or false, got string");
	request_text(s, "PUT", "/v1/actions/stop", "{\"force\": null}", &resp);
	expect_error(&resp, 400, "force: expected true or false, got null");
	request_text(s, "PUT", "/v1/actions/stop", "{\"force\": true, \"forse\": true}", &resp);
	expect_error(&resp, 400, "unknown field(s) in the request body: forse");
	request_text(s, "PUT", "/v1/actions/stop", "{\"forse\": true}", &resp);
	expect_error(&resp, 400, "missing field in the request body: force");
	request_text(s, "PUT", "/v1/actions/stop", "{}", &resp);
	expect_error(&resp, 400, "missing field in the request body: force");
	request(s, "PUT", "/v1/actions/stop", NULL, &resp);
	expect_error(&resp, 400, "missing field in the request body: force");
	request_text(s, "PUT", "/v1/actions/stop", "[true]", &resp);
	expect_error(&resp, 400, "must be a JSON object");
	request_text(s, "PUT", "/v1/actions/stop", "true", &resp);
	expect_error(&resp, 400, "must be a JSON object");
	assert_int_equal(__atomic_load_n(&s->vm.stops, __ATOMIC_SEQ_CST), 2);
}

static void nested_strict_body(void **state)
{
	struct server *s = *state;
	struct api_response resp;

	assert_int_equal(request_text(s, "PUT", "/v1/nested", "{\"name\": \"d\", \"size\": 7}", &resp),
			 201);
	assert_int_equal(json_integer_value(json_object_get(resp.body, "size")), 7);
	api_response_release(&resp);
	assert_int_equal(request_text(s, "PUT", "/v1/nested",
				      "{\"name\": \"d\", \"opts\": {\"ro\": true}}", &resp),
			 201);
	api_response_release(&resp);
	request_text(s, "PUT", "/v1/nested", "{\"name\": \"d\", \"opts\": {\"ro\": true, \"rw\": 1}}",
		     &resp);
	expect_error(&resp, 400, "unknown field(s) in the request body: rw");
	request_text(s, "PUT", "/v1/nested", "{\"name\": \"d\", \"size\": 1.5}", &resp);
	expect_error(&resp, 400, "size: expected integer, got real");
	request_text(s, "PUT", "/v1/nested", "{\"name\": 5}", &resp);
	expect_error(&resp, 400, "name: expected string, got integer");
	/* Inside a nested object the field is not named, but it is refused. */
	request_text(s, "PUT", "/v1/nested", "{\"name\": \"d\", \"opts\": {\"ro\": 0}}", &resp);
	expect_error(&resp, 400, "invalid request body: Expected true or false, got integer");
}

static void body_decoding(void **state)
{
	struct server *s = *state;

	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
		      "{force: true}",
		   400, "not valid JSON");
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Length: 25\r\nConnection: close\r\n\r\n"
		      "{\"a\": true, \"a\": false}  ",
		   400, "duplicate object key");
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Length: 15\r\nConnection: close\r\n\r\n"
		      "{\"a\": \"\\u0000\"}",
		   400, "not valid JSON");
	expect_raw(s, "GET /v1/status HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
		   400, "a GET request takes no body");
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
		      "Connection: close\r\n\r\n{}",
		   415, "must be application/json, not text/plain");
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Type: Application/JSON; charset=utf-8\r\n"
		      "Content-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}",
		   200, "{\"got\":{\"a\":1}}");
	/* No body at all reaches the handler as NULL; an empty one too. */
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nConnection: close\r\n\r\n", 200, "{\"got\":null}");
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 200,
		   "{\"got\":null}");
	/* A client-chosen Content-Type is not echoed back unprintable. */
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Type: \x80\xff\r\nContent-Length: 2\r\n"
		      "Connection: close\r\n\r\n{}",
		   415, "not ??\"");
}

static void shutdown_conflict_then_accepted(void **state)
{
	struct server *s = *state;
	struct api_response resp;

	request(s, "PUT", "/v1/actions/shutdown", NULL, &resp);
	expect_error(&resp, 409, "the guest's shutdown service is not connected");
	__atomic_store_n(&s->vm.shutdown_connected, 1, __ATOMIC_SEQ_CST);
	assert_int_equal(request(s, "PUT", "/v1/actions/shutdown", NULL, &resp), 202);
	assert_null(resp.body);
	request_text(s, "PUT", "/v1/actions/shutdown", "{\"now\": true}", &resp);
	expect_error(&resp, 400, "unknown field(s) in the request body: now");
}

static void handler_failures_500(void **state)
{
	struct server *s = *state;
	struct api_response resp;

	request(s, "GET", "/v1/fail", NULL, &resp);
	expect_error(&resp, 500, "internal error: Input/output error");
	request(s, "GET", "/v1/bad-status", NULL, &resp);
	expect_error(&resp, 500, "handler returned status 42");
	request(s, "GET", "/v1/quiet-error", NULL, &resp);
	expect_error(&resp, 503, "Service Unavailable");
}

/* ---- connections ---- */

static void keep_alive_and_pipelining(void **state)
{
	struct server *s = *state;
	struct http_parser p;
	int fd = raw_connect(s->path);
	char *rest;

	http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
	raw_send_str(fd, "GET /v1/status HTTP/1.1\r\n\r\n");
	assert_int_equal(raw_read_response(fd, &p), 200);
	assert_true(p.msg.keep_alive);
	raw_send_str(fd, "GET /v1/nope HTTP/1.1\r\n\r\n");
	assert_int_equal(raw_read_response(fd, &p), 404);
	assert_true(p.msg.keep_alive);

	/* Three at once; each answered in order; the last closes. */
	raw_send_str(fd, "PUT /v1/echo HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"n\":1}"
			 "PUT /v1/echo HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"n\":2}"
			 "GET /v1/status HTTP/1.1\r\nConnection: close\r\n\r\n"
			 "GET /v1/status HTTP/1.1\r\n\r\n");
	assert_int_equal(raw_read_response(fd, &p), 200);
	assert_memory_equal(p.msg.body, "{\"got\":{\"n\":1}}", 15);
	assert_int_equal(raw_read_response(fd, &p), 200);
	assert_memory_equal(p.msg.body, "{\"got\":{\"n\":2}}", 15);
	assert_int_equal(raw_read_response(fd, &p), 200);
	assert_false(p.msg.keep_alive);
	http_parser_next(&p);
	assert_false(http_parser_has_partial(&p));
	/* The request after the close is not answered. */
	rest = raw_read_all(fd);
	assert_string_equal(rest, "");
	free(rest);
	http_parser_free(&p);
	close(fd);
}

static void malformed_request_closes(void **state)
{
	struct server *s = *state;
	struct api_response resp;
	static const char nul[] = "GET /v1/status\0 HTTP/1.1\r\n\r\n";
	char *reply;

	expect_raw(s, "GARBAGE\r\n\r\n", 400, "Connection: close\r\n");
	expect_raw(s, "GET /v1/status HTTP/2.0\r\n\r\n", 505, "only HTTP/1.x is supported");
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, NULL);
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400,
		   "Content-Length is not a decimal number");
	reply = raw_exchange(s->path, nul, sizeof(nul) - 1);
	assert_int_equal(status_of(reply), 400);
	free(reply);
	/* None of that disturbed the server. */
	assert_int_equal(request(s, "GET", "/v1/status", NULL, &resp), 200);
	api_response_release(&resp);
}

static void oversized_requests(void **state)
{
	struct server *s = *state;
	struct api_response resp;
	struct api_error err;
	char *flood = malloc(HTTP_MAX_HEAD * 2);
	char *big = malloc(100001);
	json_t *body;

	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413, "body too large");
	expect_raw(s, "PUT /v1/echo HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413,
		   NULL);

	/* Headers without end: 431 once past the limit. */
	assert_non_null(flood);
	memset(flood, 'h', HTTP_MAX_HEAD * 2);
	memcpy(flood, "GET / HTTP/1.1\r\nX: ", 19);
	{
		int fd = raw_connect(s->path);
		char *reply;

		/* The server may hang up before taking it all. */
		(void)send(fd, flood, HTTP_MAX_HEAD * 2, MSG_NOSIGNAL);
		reply = raw_read_all(fd);
		assert_int_equal(status_of(reply), 431);
		free(reply);
		close(fd);
	}
	free(flood);

	/* The client gets the early 413 even though its send fails. */
	assert_non_null(big);
	memset(big, 'a', 100000);
	big[100000] = '\0';
	body = json_pack("{s:s}", "blob", big);
	assert_int_equal(api_client_request(s->path, "PUT", "/v1/echo", body, CLIENT_TIMEOUT_MS, &resp,
					    &err),
			 0);
	expect_error(&resp, 413, "body too large");
	json_decref(body);
	free(big);

	/* The largest body accepted goes through. */
	big = malloc(HTTP_MAX_REQUEST_BODY);
	assert_non_null(big);
	memset(big, 'b', HTTP_MAX_REQUEST_BODY - 20);
	big[HTTP_MAX_REQUEST_BODY - 20] = '\0';
	body = json_pack("{s:s}", "blob", big);
	assert_int_equal(request(s, "PUT", "/v1/echo", body, &resp), 200);
	assert_string_equal(json_string_value(json_object_get(json_object_get(resp.body, "got"), "blob")),
			    big);
	api_response_release(&resp);
	json_decref(body);
	free(big);
}

static void connection_limit(void **state)
{
	struct server *s = *state;
	struct http_parser p;
	int fds[API_MAX_CONNECTIONS];
	char *reply;
	int extra;

	/* Fill every slot, each proven accepted by an answer. */
	for (int i = 0; i < API_MAX_CONNECTIONS; i++) {
		fds[i] = raw_connect(s->path);
		http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
		raw_send_str(fds[i], "GET /v1/status HTTP/1.1\r\n\r\n");
		assert_int_equal(raw_read_response(fds[i], &p), 200);
		http_parser_free(&p);
	}
	extra = raw_connect(s->path);
	reply = raw_read_all(extra);
	assert_int_equal(status_of(reply), 503);
	assert_non_null(strstr(reply, "too many API connections"));
	free(reply);
	close(extra);

	/* A slot freed is a slot available again (once the server sees it). */
	close(fds[0]);
	status_soon(s);
	for (int i = 1; i < API_MAX_CONNECTIONS; i++)
		close(fds[i]);
}

/* Client gone mid-request or mid-response: nothing else notices. */
static void client_vanishes(void **state)
{
	struct server *s = *state;

	for (int i = 0; i < 50; i++) {
		int fd = raw_connect(s->path);

		raw_send_str(fd, i % 2 ? "GET /v1/status HTTP/1.1\r\n\r\n" : "PUT /v1/echo HTTP/1.1\r\nConte");
		close(fd);
	}
	status_soon(s);
}

static void idle_connection_closed(void **state)
{
	struct server *s = *state;
	int fd = raw_connect(s->path);
	char *reply = raw_read_all(fd); /* returns at the server's hang-up */

	assert_string_equal(reply, "");
	free(reply);
	close(fd);
}

static void slow_request_timed_out(void **state)
{
	struct server *s = *state;
	const char *req = "GET /v1/status HTTP/1.1\r\nX-Slow: ";
	int fd = raw_connect(s->path);
	char *reply;

	raw_send_str(fd, req);
	/* A byte every 50 ms is not idle, but the request takes too long. */
	for (int i = 0; i < 12; i++) {
		usleep(50000);
		if (send(fd, "z", 1, MSG_NOSIGNAL) != 1)
			break;
	}
	reply = raw_read_all(fd);
	assert_int_equal(status_of(reply), 408);
	assert_non_null(strstr(reply, "request not completed in time"));
	free(reply);
	close(fd);
}

/* ---- the socket file ---- */

static void socket_file_rules(void **state)
{
	struct server *s = server_new();
	struct api *api, *second;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	char long_path[200];
	int fd, file;

	api = api_new(s->loop, s->path);
	assert_non_null(api);
	assert_int_equal(stat(s->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	/* A live socket is not taken over. */
	second = api_new(s->loop, s->path);
	assert_null(second);
	assert_int_equal(errno, EADDRINUSE);
	assert_int_equal(stat(s->path, &st), 0);

	/* Freeing removes it. */
	api_free(api);
	assert_int_equal(stat(s->path, &st), -1);

	/* A stale socket, bound but nobody listening, is replaced. */
	strcpy(addr.sun_path, s->path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	api = api_new(s->loop, s->path);
	assert_non_null(api);

	/* A socket file replaced by someone else is left to them. */
	assert_int_equal(unlink(s->path), 0);
	file = open(s->path, O_CREAT | O_WRONLY | O_EXCL, 0644);
	assert_true(file >= 0);
	assert_int_equal(write(file, "keep", 4), 4);
	close(file);
	api_free(api);

	/* A file that is not a socket is never clobbered. */
	api = api_new(s->loop, s->path);
	assert_null(api);
	assert_int_equal(errno, EEXIST);
	assert_int_equal(stat(s->path, &st), 0);
	assert_int_equal(st.st_size, 4);
	unlink(s->path);

	memset(long_path, 'x', sizeof(long_path));
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	assert_null(api_new(s->loop, long_path));
	assert_int_equal(errno, ENAMETOOLONG);
	assert_null(api_new(s->loop, "/nonexistent-dir-for-hvmm-tests/api.sock"));
	assert_int_equal(errno, ENOENT);

	server_free(s);
}

static void route_registration(void **state)
{
	struct server *s = server_new();

	s->api = api_new(s->loop, s->path);
	assert_non_null(s->api);
	assert_int_equal(api_route(s->api, "GET", "/v1/status", status_handler, NULL), 0);
	assert_int_equal(api_route(s->api, "GET", "/v1/status", status_handler, NULL), -EEXIST);
	assert_int_equal(api_route(s->api, "PUT", "/v1/status", status_handler, NULL), 0);
	assert_int_equal(api_route(s->api, "get", "/v1/x", status_handler, NULL), -EINVAL);
	assert_int_equal(api_route(s->api, "", "/v1/x", status_handler, NULL), -EINVAL);
	assert_int_equal(api_route(s->api, "GET", "v1/x", status_handler, NULL), -EINVAL);
	assert_int_equal(api_route(s->api, "GET", "/v1/a b", status_handler, NULL), -EINVAL);
	assert_int_equal(api_route(s->api, "GET", "/v1/x?y", status_handler, NULL), -EINVAL);
	assert_int_equal(api_route(s->api, "GET", "/v1/x", NULL, NULL), -EINVAL);
	for (int i = 2; i < API_MAX_ROUTES; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/r/%d", i);
		assert_int_equal(api_route(s->api, "GET", path, status_handler, NULL), 0);
	}
	assert_int_equal(api_route(s->api, "GET", "/one/too/many", status_handler, NULL), -ENOSPC);
	server_free(s);
}

/* ---- the client's failures ---- */

static void client_cannot_connect(void **state)
{
	struct api_response resp;
	struct api_error err;

	assert_int_equal(api_client_request("/nonexistent-dir-for-hvmm-tests/api.sock", "GET", "/v1/status",
					    NULL, 500, &resp, &err),
			 -ENOENT);
	assert_string_equal(err.message, "connect: No such file or directory");
	assert_int_equal(api_client_request("", "GET", "/", NULL, 500, &resp, &err), -EINVAL);
}

/* A server that accepts (into its backlog) but never answers. */
static void client_times_out(void **state)
{
	struct server *s = server_new();
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct api_response resp;
	struct api_error err;
	struct timespec a, b;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	long elapsed_ms;

	strcpy(addr.sun_path, s->path);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(fd, 4), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(api_client_request(s->path, "GET", "/v1/status", NULL, 200, &resp, &err),
			 -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	elapsed_ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	assert_true(elapsed_ms >= 190 && elapsed_ms < 1500);
	assert_string_equal(err.message, "no response within 200 ms");
	close(fd);
	server_free(s);
}

struct fake_server {
	int listen_fd;
	const char *reply;
};

static void *fake_server_thread(void *arg)
{
	struct fake_server *f = arg;
	char buf[4096];
	int fd = accept(f->listen_fd, NULL, NULL);

	if (fd >= 0) {
		(void)!recv(fd, buf, sizeof(buf), 0);
		(void)!send(fd, f->reply, strlen(f->reply), MSG_NOSIGNAL);
		close(fd);
	}
	return NULL;
}

/* Answer one client request with `reply`; return the client's result. */
static int client_against(const char *reply, struct api_response *resp, struct api_error *err)
{
	struct server *s = server_new();
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct fake_server f = { .reply = reply };
	pthread_t thread;
	int ret;

	f.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(addr.sun_path, s->path);
	assert_int_equal(bind(f.listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(f.listen_fd, 4), 0);
	assert_int_equal(pthread_create(&thread, NULL, fake_server_thread, &f), 0);
	ret = api_client_request(s->path, "GET", "/v1/status", NULL, CLIENT_TIMEOUT_MS, resp, err);
	pthread_join(thread, NULL);
	close(f.listen_fd);
	server_free(s);
	return ret;
}

static void client_bad_responses(void **state)
{
	struct api_response resp;
	struct api_error err;

	assert_int_equal(client_against("garbage\r\n\r\n", &resp, &err), -EPROTO);
	assert_string_equal(err.message, "malformed response: malformed status line");
	assert_int_equal(client_against("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", &resp, &err),
			 -EPROTO);
	assert_string_equal(err.message, "the server closed the connection without a complete response");
	assert_int_equal(client_against("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", &resp, &err),
			 -EPROTO);
	assert_non_null(strstr(err.message, "the response body is not JSON"));
	assert_int_equal(client_against("", &resp, &err), -EPROTO);
	assert_int_equal(client_against("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n7", &resp, &err), 0);
	assert_int_equal(json_integer_value(resp.body), 7);
	assert_null(api_response_error(&resp));
	api_response_release(&resp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(status_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_path_404, setup, teardown),
		cmocka_unit_test_setup_teardown(wrong_method_405, setup, teardown),
		cmocka_unit_test_setup_teardown(stop_with_strict_body, setup, teardown),
		cmocka_unit_test_setup_teardown(nested_strict_body, setup, teardown),
		cmocka_unit_test_setup_teardown(body_decoding, setup, teardown),
		cmocka_unit_test_setup_teardown(shutdown_conflict_then_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(handler_failures_500, setup, teardown),
		cmocka_unit_test_setup_teardown(keep_alive_and_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(malformed_request_closes, setup, teardown),
		cmocka_unit_test_setup_teardown(oversized_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(connection_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(client_vanishes, setup, teardown),
		cmocka_unit_test_setup_teardown(idle_connection_closed, setup_short_timeouts, teardown),
		cmocka_unit_test_setup_teardown(slow_request_timed_out, setup_short_timeouts, teardown),
		cmocka_unit_test(socket_file_rules),
		cmocka_unit_test(route_registration),
		cmocka_unit_test(client_cannot_connect),
		cmocka_unit_test(client_times_out),
		cmocka_unit_test(client_bad_responses),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
