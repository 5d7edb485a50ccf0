/* Unit tests for api/http: the incremental HTTP/1.1 parser (valid messages
 * split at every byte boundary, keep-alive and pipelining, one test per
 * kind of malformed or hostile input) and the message writers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "api/http.h"

/* Feed `len` bytes at once; return the parser's verdict. */
static enum http_result feed_all(struct http_parser *p, const char *data, size_t len)
{
	return http_parser_feed(p, data, len);
}

static enum http_result feed_str(struct http_parser *p, const char *s)
{
	return feed_all(p, s, strlen(s));
}

/* Parse `text` as one request and expect an error with `status`. */
static void expect_request_error(const char *text, size_t len, int status)
{
	struct http_parser p;

	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_all(&p, text, len), HTTP_ERROR);
	assert_int_equal(p.error_status, status);
	assert_non_null(p.error_reason);
	/* An error is final. */
	assert_int_equal(feed_str(&p, "GET / HTTP/1.1\r\n\r\n"), HTTP_ERROR);
	assert_int_equal(http_parser_next(&p), HTTP_ERROR);
	http_parser_free(&p);
}

static void expect_request_error_str(const char *text, int status)
{
	expect_request_error(text, strlen(text), status);
}

/* ---- valid requests ---- */

struct valid_request {
	const char *text;
	const char *method, *path, *query;
	int minor;
	bool keep_alive;
	const char *content_type;
	const char *body;
};

static const struct valid_request valid_requests[] = {
	{ "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
	  "GET", "/v1/status", NULL, 1, true, NULL, "" },
	{ "PUT /v1/actions/stop HTTP/1.1\r\nHost: localhost\r\n"
	  "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"force\": true}",
	  "PUT", "/v1/actions/stop", NULL, 1, true, "application/json", "{\"force\": true}" },
	{ "GET /v1/status?pretty=1 HTTP/1.0\r\n\r\n",
	  "GET", "/v1/status", "pretty=1", 0, false, NULL, "" },
	{ "GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n",
	  "GET", "/", NULL, 0, true, NULL, "" },
	{ "PUT /x HTTP/1.1\r\nCONNECTION: foo, close\r\ncontent-length:   2  \r\n"
	  "X-Other:\t anything \x80\xff goes\r\n\r\n{}",
	  "PUT", "/x", NULL, 1, false, NULL, "{}" },
	{ "DELETE /a/b HTTP/1.2\r\nContent-Length: 0\r\n\r\n",
	  "DELETE", "/a/b", NULL, 1, true, NULL, "" },
};

static void check_valid(const struct http_parser *p, const struct valid_request *v)
{
	const struct http_message *m = &p->msg;

	assert_string_equal(m->method, v->method);
	assert_string_equal(m->path, v->path);
	if (v->query)
		assert_string_equal(m->query, v->query);
	else
		assert_null(m->query);
	assert_int_equal(m->minor_version, v->minor);
	assert_int_equal(m->keep_alive, v->keep_alive);
	if (v->content_type)
		assert_string_equal(m->content_type, v->content_type);
	else
		assert_null(m->content_type);
	assert_int_equal(m->body_len, strlen(v->body));
	assert_memory_equal(m->body, v->body, m->body_len);
}

static void valid_whole(void **state)
{
	for (size_t i = 0; i < sizeof(valid_requests) / sizeof(valid_requests[0]); i++) {
		struct http_parser p;

		http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
		assert_int_equal(feed_str(&p, valid_requests[i].text), HTTP_DONE);
		check_valid(&p, &valid_requests[i]);
		assert_int_equal(http_parser_next(&p), HTTP_MORE);
		assert_false(http_parser_has_partial(&p));
		http_parser_free(&p);
	}
}

/* Every split into two pieces: MORE after the first, DONE after both. */
static void valid_split_everywhere(void **state)
{
	for (size_t i = 0; i < sizeof(valid_requests) / sizeof(valid_requests[0]); i++) {
		const char *text = valid_requests[i].text;
		size_t len = strlen(text);

		for (size_t cut = 0; cut < len; cut++) {
			struct http_parser p;

			http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
			assert_int_equal(feed_all(&p, text, cut), HTTP_MORE);
			assert_int_equal(feed_all(&p, text + cut, len - cut), HTTP_DONE);
			check_valid(&p, &valid_requests[i]);
			http_parser_free(&p);
		}
	}
}

static void valid_byte_by_byte(void **state)
{
	for (size_t i = 0; i < sizeof(valid_requests) / sizeof(valid_requests[0]); i++) {
		const char *text = valid_requests[i].text;
		size_t len = strlen(text);
		struct http_parser p;

		http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
		for (size_t k = 0; k + 1 < len; k++)
			assert_int_equal(feed_all(&p, text + k, 1), HTTP_MORE);
		assert_int_equal(feed_all(&p, text + len - 1, 1), HTTP_DONE);
		check_valid(&p, &valid_requests[i]);
		http_parser_free(&p);
	}
}

/* The largest body accepted, arriving in pieces that make the buffer grow
 * (and move) after the head was parsed. */
static void max_body_grows_buffer(void **state)
{
	static char body[HTTP_MAX_REQUEST_BODY];
	char head[128];
	struct http_parser p;

	memset(body, 'x', sizeof(body));
	snprintf(head, sizeof(head), "PUT /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", sizeof(body));
	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_str(&p, head), HTTP_MORE);
	for (size_t off = 0; off < sizeof(body) - 1000; off += 1000)
		assert_int_equal(feed_all(&p, body + off, 1000), HTTP_MORE);
	assert_int_equal(feed_all(&p, body + sizeof(body) / 1000 * 1000, sizeof(body) % 1000),
			 HTTP_DONE);
	assert_string_equal(p.msg.method, "PUT");
	assert_string_equal(p.msg.path, "/big");
	assert_int_equal(p.msg.body_len, sizeof(body));
	assert_memory_equal(p.msg.body, body, sizeof(body));
	assert_true(p.cap <= HTTP_MAX_HEAD + HTTP_MAX_REQUEST_BODY);
	http_parser_free(&p);
}

/* ---- keep-alive and pipelining ---- */

static void pipelined_requests(void **state)
{
	const char *two = "PUT /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
			  "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
			  "GET /c HT";
	struct http_parser p;

	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_str(&p, two), HTTP_DONE);
	assert_string_equal(p.msg.path, "/a");
	assert_true(p.msg.keep_alive);
	assert_memory_equal(p.msg.body, "abc", 3);
	/* More bytes while a request waits are kept for later. */
	assert_int_equal(feed_str(&p, "TP/1.1\r\n"), HTTP_DONE);
	assert_string_equal(p.msg.path, "/a");

	assert_int_equal(http_parser_next(&p), HTTP_DONE);
	assert_string_equal(p.msg.path, "/b");
	assert_false(p.msg.keep_alive);
	assert_int_equal(p.msg.body_len, 0);

	assert_int_equal(http_parser_next(&p), HTTP_MORE);
	assert_true(http_parser_has_partial(&p));
	assert_int_equal(feed_str(&p, "\r\n"), HTTP_DONE);
	assert_string_equal(p.msg.path, "/c");
	assert_int_equal(http_parser_next(&p), HTTP_MORE);
	assert_false(http_parser_has_partial(&p));
	http_parser_free(&p);
}

static void keep_alive_rules(void **state)
{
	static const struct {
		const char *text;
		bool keep_alive;
	} cases[] = {
		{ "GET / HTTP/1.1\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: Close\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_parser p;

		http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
		assert_int_equal(feed_str(&p, cases[i].text), HTTP_DONE);
		assert_int_equal(p.msg.keep_alive, cases[i].keep_alive);
		http_parser_free(&p);
	}
}

/* ---- malformed and hostile requests ---- */

static void bad_version(void **state)
{
	expect_request_error_str("GET / HTTP/2.0\r\n\r\n", 505);
	expect_request_error_str("GET / HTTP/0.9\r\n\r\n", 505);
	expect_request_error_str("GET / http/1.1\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.10\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1 \r\n\r\n", 400);
	expect_request_error_str("GET /\r\n\r\n", 400);
}

static void bad_request_line(void **state)
{
	char target[HTTP_MAX_TARGET + 64];
	struct http_parser p;

	expect_request_error_str("\r\n\r\n", 400);
	expect_request_error_str("\r\nGET / HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("GET\r\n\r\n", 400);
	expect_request_error_str("GET  / HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("GET v1/status HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("GET http://localhost/ HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("GE(T / HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("AVERYVERYLONGMETHOD / HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("GET /\x80 HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("GET /\x7f HTTP/1.1\r\n\r\n", 400);
	expect_request_error_str("GET /a\tb HTTP/1.1\r\n\r\n", 400);

	/* "GET /aaa...a HTTP/1.1", the target one byte over the limit. */
	memset(target, 'a', sizeof(target));
	memcpy(target, "GET /", 5);
	snprintf(target + 4 + HTTP_MAX_TARGET + 1, 64, " HTTP/1.1\r\n\r\n");
	expect_request_error_str(target, 414);
	/* At the limit it is fine. */
	snprintf(target + 4 + HTTP_MAX_TARGET, 64, " HTTP/1.1\r\n\r\n");
	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_str(&p, target), HTTP_DONE);
	assert_int_equal(strlen(p.msg.path), HTTP_MAX_TARGET);
	http_parser_free(&p);
}

static void bad_line_endings(void **state)
{
	expect_request_error_str("GET / HTTP/1.1\nHost: x\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nHost: x\n\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\rHost: x\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400);
}

static void embedded_nul(void **state)
{
	static const char in_line[] = "GET /\0 HTTP/1.1\r\n\r\n";
	static const char in_header[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	static const char early[] = "GE\0";
	struct http_parser p;

	expect_request_error(in_line, sizeof(in_line) - 1, 400);
	expect_request_error(in_header, sizeof(in_header) - 1, 400);
	/* Rejected as soon as it arrives, not when the head is complete. */
	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_all(&p, early, sizeof(early) - 1), HTTP_ERROR);
	assert_int_equal(p.error_status, 400);
	http_parser_free(&p);
}

static void bad_headers(void **state)
{
	expect_request_error_str("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\n: empty-name\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\n\tA: b\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nA(b): c\r\n\r\n", 400);
	expect_request_error_str("GET / HTTP/1.1\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n", 400);
}

static void bad_content_length(void **state)
{
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: 1.0\r\n\r\n", 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
				 400);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413);
	expect_request_error_str("PUT / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", 413);
	expect_request_error_str(
		"PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999999999999999999999\r\n\r\n",
		413);
}

static void transfer_encoding_refused(void **state)
{
	expect_request_error_str("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501);
	expect_request_error_str(
		"PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		501);
}

/* Headers that never end: refused once past the limit, without the buffer
 * growing past it. */
static void endless_header(void **state)
{
	char chunk[1000];
	struct http_parser p;
	enum http_result r = HTTP_MORE;
	size_t fed = 0;

	memset(chunk, 'a', sizeof(chunk));
	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_str(&p, "GET / HTTP/1.1\r\nX-Long: "), HTTP_MORE);
	while (r == HTTP_MORE && fed < 100000) {
		r = feed_all(&p, chunk, sizeof(chunk));
		fed += sizeof(chunk);
	}
	assert_int_equal(r, HTTP_ERROR);
	assert_int_equal(p.error_status, 431);
	assert_true(fed < HTTP_MAX_HEAD + sizeof(chunk));
	assert_true(p.cap <= HTTP_MAX_HEAD + HTTP_MAX_REQUEST_BODY);
	http_parser_free(&p);
}

static void too_many_headers(void **state)
{
	char text[HTTP_MAX_HEAD];
	size_t len = (size_t)sprintf(text, "GET / HTTP/1.1\r\n");

	for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
		len += (size_t)sprintf(text + len, "X%d: y\r\n", i);
	sprintf(text + len, "\r\n");
	expect_request_error_str(text, 431);
}

/* A head of exactly HTTP_MAX_HEAD bytes passes; one more byte does not. */
static void head_size_limit(void **state)
{
	static char text[HTTP_MAX_HEAD + 2];
	const char *start = "GET / HTTP/1.1\r\nX: ";
	size_t fill = HTTP_MAX_HEAD - strlen(start) - 4;
	struct http_parser p;

	strcpy(text, start);
	memset(text + strlen(start), 'v', fill);
	strcpy(text + strlen(start) + fill, "\r\n\r\n");
	assert_int_equal(strlen(text), HTTP_MAX_HEAD);
	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_str(&p, text), HTTP_DONE);
	http_parser_free(&p);

	strcpy(text + strlen(start) + fill, "v\r\n\r\n");
	expect_request_error_str(text, 431);
}

/* More bytes than the parser has room for are an error, not a realloc. */
static void feed_beyond_room(void **state)
{
	static char big[HTTP_MAX_HEAD + HTTP_MAX_REQUEST_BODY + 1];
	struct http_parser p;

	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(http_parser_room(&p), sizeof(big) - 1);
	assert_int_equal(feed_all(&p, big, sizeof(big)), HTTP_ERROR);
	assert_int_equal(p.error_status, 431);
	assert_null(p.buf);
	http_parser_free(&p);

	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_str(&p, "PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"), HTTP_MORE);
	assert_int_equal(feed_all(&p, big, http_parser_room(&p) + 1), HTTP_ERROR);
	assert_int_equal(p.error_status, 413);
	http_parser_free(&p);
}

/* A smaller body limit, as a caller may choose. */
static void custom_body_limit(void **state)
{
	struct http_parser p;

	http_parser_init(&p, HTTP_REQUEST, 4);
	assert_int_equal(feed_str(&p, "PUT / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"), HTTP_DONE);
	http_parser_free(&p);
	http_parser_init(&p, HTTP_REQUEST, 4);
	assert_int_equal(feed_str(&p, "PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), HTTP_ERROR);
	assert_int_equal(p.error_status, 413);
	http_parser_free(&p);
}

static void next_without_message(void **state)
{
	struct http_parser p;

	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(http_parser_next(&p), HTTP_MORE);
	assert_int_equal(feed_str(&p, "GET / HT"), HTTP_MORE);
	assert_int_equal(http_parser_next(&p), HTTP_MORE);
	assert_int_equal(feed_str(&p, "TP/1.1\r\n\r\n"), HTTP_DONE);
	assert_string_equal(p.msg.path, "/");
	http_parser_free(&p);
}

/* ---- responses ---- */

static void response_parse(void **state)
{
	const char *text = "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n"
			   "Content-Length: 17\r\n\r\n{\"error\": \"busy\"}";
	size_t len = strlen(text);

	for (size_t cut = 0; cut < len; cut++) {
		struct http_parser p;

		http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
		assert_int_equal(feed_all(&p, text, cut), HTTP_MORE);
		assert_int_equal(feed_all(&p, text + cut, len - cut), HTTP_DONE);
		assert_int_equal(p.msg.status, 409);
		assert_string_equal(p.msg.reason, "Conflict");
		assert_string_equal(p.msg.content_type, "application/json");
		assert_int_equal(p.msg.body_len, 17);
		assert_memory_equal(p.msg.body, "{\"error\": \"busy\"}", 17);
		http_parser_free(&p);
	}
}

static void response_variants(void **state)
{
	struct http_parser p;

	http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
	assert_int_equal(feed_str(&p, "HTTP/1.1 204 No Content\r\n\r\n"), HTTP_DONE);
	assert_int_equal(p.msg.status, 204);
	assert_int_equal(p.msg.body_len, 0);
	http_parser_free(&p);

	http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
	assert_int_equal(feed_str(&p, "HTTP/1.0 200\r\nContent-Length: 0\r\n\r\n"), HTTP_DONE);
	assert_string_equal(p.msg.reason, "");
	http_parser_free(&p);

	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\n\r\n",              /* no Content-Length */
		"HTTP/1.1 99 Low\r\n\r\n",
		"HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 20x OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1\r\n\r\n",
		"HTTP/3 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
		assert_int_equal(feed_str(&p, bad[i]), HTTP_ERROR);
		http_parser_free(&p);
	}
}

/* ---- writers ---- */

static void write_response_text(void **state)
{
	struct http_buf out = { 0 };

	assert_int_equal(http_write_response(&out, 200, NULL, "{}\n", 3, true), 0);
	assert_int_equal(http_write_response(&out, 405, "Allow: GET\r\n", "{}", 2, false), 0);
	assert_int_equal(http_write_response(&out, 204, NULL, "ignored", 7, true), 0);
	assert_int_equal(http_buf_append(&out, "", 1), 0);
	assert_string_equal(out.data,
			    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: application/json\r\n"
			    "\r\n{}\n"
			    "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 2\r\n"
			    "Content-Type: application/json\r\nAllow: GET\r\nConnection: close\r\n"
			    "\r\n{}"
			    "HTTP/1.1 204 No Content\r\n\r\n");
	http_buf_consume(&out, strlen("HTTP/1.1 "));
	assert_memory_equal(out.data, "200 OK", 6);
	http_buf_consume(&out, out.len + 5);
	assert_int_equal(out.len, 0);
	http_buf_free(&out);
	assert_null(out.data);
	assert_string_equal(http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(http_reason(299), "Unknown");
}

/* What the writers produce, the parser reads back. */
static void write_then_parse(void **state)
{
	struct http_buf out = { 0 };
	struct http_parser p;

	assert_int_equal(http_write_request(&out, "PUT", "/v1/actions/stop", "{\"force\":true}", 14), 0);
	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_all(&p, out.data, out.len), HTTP_DONE);
	assert_string_equal(p.msg.method, "PUT");
	assert_string_equal(p.msg.path, "/v1/actions/stop");
	assert_string_equal(p.msg.content_type, "application/json");
	assert_false(p.msg.keep_alive);
	assert_int_equal(p.msg.body_len, 14);
	http_parser_free(&p);
	out.len = 0;

	assert_int_equal(http_write_request(&out, "GET", "/v1/status", NULL, 0), 0);
	http_parser_init(&p, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	assert_int_equal(feed_all(&p, out.data, out.len), HTTP_DONE);
	assert_false(p.msg.has_content_length);
	http_parser_free(&p);
	out.len = 0;

	assert_int_equal(http_write_response(&out, 202, NULL, "{\"a\":1}", 7, false), 0);
	http_parser_init(&p, HTTP_RESPONSE, 1 << 20);
	assert_int_equal(feed_all(&p, out.data, out.len), HTTP_DONE);
	assert_int_equal(p.msg.status, 202);
	assert_string_equal(p.msg.reason, "Accepted");
	assert_false(p.msg.keep_alive);
	assert_memory_equal(p.msg.body, "{\"a\":1}", 7);
	http_parser_free(&p);
	http_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_whole),
		cmocka_unit_test(valid_split_everywhere),
		cmocka_unit_test(valid_byte_by_byte),
		cmocka_unit_test(max_body_grows_buffer),
		cmocka_unit_test(pipelined_requests),
		cmocka_unit_test(keep_alive_rules),
		cmocka_unit_test(bad_version),
		cmocka_unit_test(bad_request_line),
		cmocka_unit_test(bad_line_endings),
		cmocka_unit_test(embedded_nul),
		cmocka_unit_test(bad_headers),
		cmocka_unit_test(bad_content_length),
		cmocka_unit_test(transfer_encoding_refused),
		cmocka_unit_test(endless_header),
		cmocka_unit_test(too_many_headers),
		cmocka_unit_test(head_size_limit),
		cmocka_unit_test(feed_beyond_room),
		cmocka_unit_test(custom_body_limit),
		cmocka_unit_test(next_without_message),
		cmocka_unit_test(response_parse),
		cmocka_unit_test(response_variants),
		cmocka_unit_test(write_response_text),
		cmocka_unit_test(write_then_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
