/* libFuzzer: hostile bytes through the management API's HTTP parser and
 * request dispatcher, the way the server drives them (arbitrary chunking,
 * pipelining, never more than the parser's room), with fake handlers that
 * unpack bodies strictly. Every response the server writes must parse back
 * as a response with the same status; the parser's buffer must stay within
 * its limit.
 *
 * The first input byte picks a mode, the second seeds the chunk sizes:
 *   0  the rest is a raw request stream;
 *   1  the rest is a JSON body, sent with a valid head to one of the routes
 *      (if the seed is odd, the rest describes a JSON object to generate,
 *      with the keys the handlers know, so that strict unpacking is
 *      exercised beyond "not JSON");
 *   2  the rest is a raw response, through the client's response parser;
 *   3  the rest follows a valid request line (headers and beyond). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/router.h"
#include "util/log.h"

static int status_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	int ret = api_unpack(body, err, "{}");

	if (ret)
		return ret;
	*reply = json_pack("{s:s, s:f, s:[{s:s, s:b}]}", "state", "running", "uptime_s", 1.5,
			   "integration_services", "name", "heartbeat", "enabled", 1);
	return 200;
}

static int stop_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	int force = 0;
	int ret = api_unpack(body, err, "{s:b}", "force", &force);

	return ret ? ret : force ? 204 : 202;
}

static int nested_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	const char *name = NULL;
	json_int_t size = 0;
	double ratio = 0;
	int ro = 0;
	size_t name_len = 0;
	int ret = api_unpack(body, err, "{s:s%, s?I, s?F, s?{s:b}}", "name", &name, &name_len, "size",
			     &size, "ratio", &ratio, "opts", "ro", &ro);

	if (ret)
		return ret;
	*reply = json_pack("{s:s%, s:I}", "name", name, name_len, "size", size);
	return *reply ? 201 : -ENOMEM;
}

static int echo_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	*reply = json_deep_copy(body);
	return 200;
}

static int failing_handler(void *ctx, const json_t *body, json_t **reply, struct api_error *err)
{
	*reply = json_object();
	return body ? -EIO : 42;
}

static const char *const routes[][2] = {
	{ "GET", "/v1/status" },      { "PUT", "/v1/actions/stop" }, { "PUT", "/v1/nested" },
	{ "PUT", "/v1/echo" },        { "POST", "/v1/echo" },        { "PUT", "/v1/fail" },
};

static struct api_router *router(void)
{
	static struct api_router *r;
	static const api_handler fns[] = { status_handler, stop_handler, nested_handler,
					   echo_handler, echo_handler, failing_handler };

	if (r)
		return r;
	log_threshold = LOG_ERR;
	r = api_router_new();
	if (!r)
		abort();
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (api_router_add(r, routes[i][0], routes[i][1], fns[i], NULL))
			abort();
	return r;
}

/* A response the server wrote must read back with the same status. */
static void check_response(const struct http_buf *out, int status)
{
	struct http_parser p;
	json_t *body = NULL;

	http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
	if (http_parser_feed(&p, out->data, out->len) != HTTP_DONE || p.msg.status != status ||
	    p.head_len + p.msg.body_len != out->len)
		abort();
	if (p.msg.body_len) {
		body = json_loadb(p.msg.body, p.msg.body_len, JSON_DECODE_ANY, NULL);
		if (!body)
			abort();
		json_decref(body);
	}
	http_parser_free(&p);
}

/* A small deterministic generator of chunk sizes. */
static size_t next_chunk(uint32_t *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	switch ((*seed >> 16) & 3) {
	case 0:
		return 1;
	case 1:
		return 1 + ((*seed >> 8) & 15);
	case 2:
		return 1 + ((*seed >> 4) & 511);
	default:
		return 4096;
	}
}

static void answer(struct http_parser *p)
{
	struct http_buf out = { 0 };
	int status = api_router_handle(router(), &p->msg, p->msg.keep_alive, &out);

	if (status < 0)
		abort();
	check_response(&out, status);
	http_buf_free(&out);
}

static void reject(const struct http_parser *p)
{
	struct http_buf out = { 0 };

	if (api_write_error(&out, p->error_status, p->error_reason, NULL, false))
		abort();
	check_response(&out, p->error_status);
	http_buf_free(&out);
}

/* The next piece of the stream, never more than the parser has room for. */
static void feed_chunk(struct http_parser *p, const uint8_t *stream, size_t len, size_t *pos,
		       uint32_t *seed)
{
	size_t n = next_chunk(seed), room = http_parser_room(p);

	/* Room runs out only once a request is complete, or on an error. */
	if (!room || p->cap > HTTP_MAX_HEAD + p->max_body)
		abort();
	if (n > room)
		n = room;
	if (n > len - *pos)
		n = len - *pos;
	http_parser_feed(p, stream + *pos, n);
	*pos += n;
}

/* Drive a parser over `stream` as a connection would. */
static void run_stream(enum http_kind kind, const uint8_t *stream, size_t len, uint32_t seed)
{
	struct http_parser p;
	size_t pos = 0;

	http_parser_init(&p, kind, kind == HTTP_REQUEST ? HTTP_MAX_REQUEST_BODY : 1 << 20);
	for (;;) {
		if (p.state == HTTP_DONE) {
			if (kind == HTTP_REQUEST)
				answer(&p);
			http_parser_next(&p);
			continue;
		}
		if (p.state == HTTP_ERROR) {
			if (kind == HTTP_REQUEST)
				reject(&p);
			break;
		}
		if (pos == len)
			break;
		feed_chunk(&p, stream, len, &pos, &seed);
	}
	http_parser_free(&p);
}
/* A valid head for one of the routes, the input as its body. */
static void run_body(const uint8_t *data, size_t size, uint32_t seed)
{
	const char *const *route = routes[seed % (sizeof(routes) / sizeof(routes[0]))];
	char head[256];
	int head_len = snprintf(head, sizeof(head),
				"%s %s HTTP/1.1\r\nContent-Type: application/json\r\n"
				"Content-Length: %zu\r\n\r\n",
				route[0], route[1], size);
	uint8_t *stream = malloc((size_t)head_len + size);

	if (!stream)
		return;
	memcpy(stream, head, (size_t)head_len);
	memcpy(stream + head_len, data, size);
	run_stream(HTTP_REQUEST, stream, (size_t)head_len + size, seed);
	free(stream);
}

static void run_after_request_line(const uint8_t *data, size_t size, uint32_t seed)
{
	const char *const *route = routes[seed % (sizeof(routes) / sizeof(routes[0]))];
	char line[64];
	int line_len = snprintf(line, sizeof(line), "%s %s HTTP/1.1\r\n", route[0], route[1]);
	uint8_t *stream = malloc((size_t)line_len + size);

	if (!stream)
		return;
	memcpy(stream, line, (size_t)line_len);
	memcpy(stream + line_len, data, size);
	run_stream(HTTP_REQUEST, stream, (size_t)line_len + size, seed);
	free(stream);
}

/* A JSON object from bytes: each byte picks a key and a kind of value. */
static size_t generate_object(const uint8_t *data, size_t size, char *out, size_t cap)
{
	static const char *const keys[] = { "name", "size", "ratio", "opts", "ro", "force", "x", "" };
	static const char *const values[] = { "true", "false", "null", "7", "-1.5", "\"s\"",
					      "{\"ro\": true}", "{\"ro\": 1, \"rw\": 0}" };
	size_t len = 0;

	len += (size_t)snprintf(out, cap, "{");
	for (size_t i = 0; i < size && len < cap; i++)
		len += (size_t)snprintf(out + len, cap - len, "%s\"%s\": %s", i ? ", " : "",
					keys[data[i] & 7], values[(data[i] >> 3) & 7]);
	if (len < cap)
		len += (size_t)snprintf(out + len, cap - len, "}");
	return len < cap ? len : cap - 1;
}

static void run_generated_body(const uint8_t *data, size_t size, uint32_t seed)
{
	char json[2048];

	if (size > 32)
		size = 32;
	run_body((const uint8_t *)json, generate_object(data, size, json, sizeof(json)), seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t seed;

	if (size < 2 || size > 4 * (HTTP_MAX_HEAD + HTTP_MAX_REQUEST_BODY))
		return 0;
	seed = data[1];
	switch (data[0] & 3) {
	case 0:
		run_stream(HTTP_REQUEST, data + 2, size - 2, seed);
		break;
	case 1:
		if (seed & 1)
			run_generated_body(data + 2, size - 2, seed >> 1);
		else
			run_body(data + 2, size - 2, seed);
		break;
	case 2:
		run_stream(HTTP_RESPONSE, data + 2, size - 2, seed);
		break;
	default:
		run_after_request_line(data + 2, size - 2, seed);
		break;
	}
	return 0;
}
