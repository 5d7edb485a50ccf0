#include "api/http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_BUF_MIN 1024
/* Far above any sensible body, far below anything that could overflow. */
#define HTTP_MAX_BODY_LIMIT (1u << 30)

void http_parser_init(struct http_parser *p, enum http_kind kind, size_t max_body)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->max_body = max_body < HTTP_MAX_BODY_LIMIT ? max_body : HTTP_MAX_BODY_LIMIT;
	p->state = HTTP_MORE;
}

void http_parser_free(struct http_parser *p)
{
	free(p->buf);
	http_parser_init(p, p->kind, p->max_body);
}

static size_t parser_capacity(const struct http_parser *p)
{
	return HTTP_MAX_HEAD + p->max_body;
}

size_t http_parser_room(const struct http_parser *p)
{
	size_t cap = parser_capacity(p);

	return p->len < cap ? cap - p->len : 0;
}

bool http_parser_has_partial(const struct http_parser *p)
{
	return p->state == HTTP_MORE && p->len > 0;
}

static enum http_result parse_fail(struct http_parser *p, int status, const char *reason)
{
	p->state = HTTP_ERROR;
	p->error_status = status;
	p->error_reason = reason;
	return HTTP_ERROR;
}

/* Grow the buffer to hold `need` bytes, keeping the message's pointers into
 * it valid across the move. */
static int parser_reserve(struct http_parser *p, size_t need)
{
	const char **fields[] = { &p->msg.method, &p->msg.path, &p->msg.query, &p->msg.reason,
				  &p->msg.content_type, &p->msg.body };
	ptrdiff_t offsets[sizeof(fields) / sizeof(fields[0])];
	size_t cap = p->cap ? p->cap : HTTP_BUF_MIN;
	char *buf;

	if (need <= p->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (cap > parser_capacity(p))
		cap = parser_capacity(p);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		offsets[i] = *fields[i] ? *fields[i] - p->buf : -1;
	buf = realloc(p->buf, cap);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		*fields[i] = offsets[i] < 0 ? NULL : buf + offsets[i];
	p->buf = buf;
	p->cap = cap;
	return 0;
}

/* ---- lexical pieces ---- */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

static bool is_token(const char *s, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return true;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* The line at *pos, NUL-terminated in place, *pos moved past its CRLF.
 * The head always ends in CRLFCRLF, so every line is terminated. NULL if
 * the line holds a bare CR or LF or another control character. */
static char *take_line(char *buf, size_t *pos)
{
	char *line = buf + *pos;
	size_t i = *pos;

	for (;; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\r')
			break;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return NULL;
	}
	if (buf[i + 1] != '\n')
		return NULL;
	buf[i] = '\0';
	*pos = i + 2;
	return line;
}

/* "HTTP/1.1" → 1. Returns the minor version, or a negative HTTP status. */
static int parse_version(const char *v)
{
	if (strncmp(v, "HTTP/", 5) || strlen(v) != 8 || v[6] != '.' ||
	    v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
		return -400;
	if (v[5] != '1')
		return -505;
	/* A later 1.x speaks at least 1.1. */
	return v[7] == '0' ? 0 : 1;
}

/* ---- start lines ---- */

static enum http_result parse_request_line(struct http_parser *p, char *line)
{
	char *target, *version, *query;
	size_t target_len;
	int minor;

	target = strchr(line, ' ');
	if (!target)
		return parse_fail(p, 400, "malformed request line");
	*target++ = '\0';
	version = strchr(target, ' ');
	if (!version)
		return parse_fail(p, 400, "malformed request line");
	*version++ = '\0';
	if (!is_token(line, strlen(line)) || strlen(line) > HTTP_MAX_METHOD)
		return parse_fail(p, 400, "malformed method");
	minor = parse_version(version);
	if (minor < 0)
		return parse_fail(p, -minor, minor == -505 ? "only HTTP/1.x is supported"
							   : "malformed HTTP version");
	if (target[0] != '/')
		return parse_fail(p, 400, "request target must be an absolute path");
	target_len = strlen(target);
	if (target_len > HTTP_MAX_TARGET)
		return parse_fail(p, 414, "request target too long");
	for (size_t i = 0; i < target_len; i++)
		if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f)
			return parse_fail(p, 400, "invalid character in request target");
	query = strchr(target, '?');
	if (query)
		*query++ = '\0';
	p->msg.method = line;
	p->msg.path = target;
	p->msg.query = query;
	p->msg.minor_version = minor;
	return HTTP_MORE;
}

static enum http_result parse_status_line(struct http_parser *p, char *line)
{
	char *code = strchr(line, ' ');
	int minor, status = 0;

	if (!code)
		return parse_fail(p, 400, "malformed status line");
	*code++ = '\0';
	minor = parse_version(line);
	if (minor < 0)
		return parse_fail(p, -minor, "unsupported HTTP version in status line");
	for (int i = 0; i < 3; i++) {
		if (code[i] < '0' || code[i] > '9')
			return parse_fail(p, 400, "malformed status code");
		status = status * 10 + (code[i] - '0');
	}
	if (status < 100 || status > 599 || (code[3] != ' ' && code[3] != '\0'))
		return parse_fail(p, 400, "malformed status code");
	p->msg.status = status;
	p->msg.reason = code[3] ? code + 4 : code + 3;
	p->msg.minor_version = minor;
	return HTTP_MORE;
}

/* ---- headers ---- */

struct head_flags {
	bool conn_close, conn_keep_alive;
};

static bool name_is(const char *name, size_t len, const char *want)
{
	return len == strlen(want) && !strncasecmp(name, want, len);
}

static enum http_result parse_content_length(struct http_parser *p, const char *value)
{
	size_t v = 0;
	bool too_big = false;

	if (p->msg.has_content_length)
		return parse_fail(p, 400, "duplicate Content-Length");
	if (!*value)
		return parse_fail(p, 400, "empty Content-Length");
	for (const char *c = value; *c; c++) {
		if (*c < '0' || *c > '9')
			return parse_fail(p, 400, "Content-Length is not a decimal number");
		if (v > (SIZE_MAX - 9) / 10)
			too_big = true;
		else
			v = v * 10 + (size_t)(*c - '0');
	}
	if (too_big || v > p->max_body)
		return parse_fail(p, 413, "body too large");
	p->msg.has_content_length = true;
	p->msg.content_length = v;
	return HTTP_MORE;
}

/* A comma-separated list of tokens: "close", "keep-alive", others ignored. */
static void parse_connection(const char *value, struct head_flags *f)
{
	while (*value) {
		size_t len;

		while (*value == ',' || is_ows(*value))
			value++;
		len = strcspn(value, ", \t");
		if (name_is(value, len, "close"))
			f->conn_close = true;
		else if (name_is(value, len, "keep-alive"))
			f->conn_keep_alive = true;
		value += len;
	}
}

static enum http_result parse_header(struct http_parser *p, char *line, struct head_flags *f)
{
	char *colon, *value, *end;
	size_t name_len;

	if (is_ows(line[0]))
		return parse_fail(p, 400, "obsolete header line folding");
	colon = strchr(line, ':');
	if (!colon)
		return parse_fail(p, 400, "malformed header line");
	name_len = (size_t)(colon - line);
	if (!is_token(line, name_len))
		return parse_fail(p, 400, "malformed header name");
	value = colon + 1;
	while (is_ows(*value))
		value++;
	end = value + strlen(value);
	while (end > value && is_ows(end[-1]))
		end--;
	*end = '\0';

	if (name_is(line, name_len, "Content-Length"))
		return parse_content_length(p, value);
	if (name_is(line, name_len, "Transfer-Encoding"))
		return parse_fail(p, 501, "Transfer-Encoding is not supported");
	if (name_is(line, name_len, "Content-Type")) {
		if (p->msg.content_type)
			return parse_fail(p, 400, "duplicate Content-Type");
		p->msg.content_type = value;
	} else if (name_is(line, name_len, "Connection")) {
		parse_connection(value, f);
	}
	return HTTP_MORE;
}

/* Bodies that a response has regardless of Content-Length. */
static bool response_has_no_body(int status)
{
	return status < 200 || status == 204 || status == 304;
}

static enum http_result finish_head(struct http_parser *p, const struct head_flags *f)
{
	if (p->msg.minor_version == 0)
		p->msg.keep_alive = f->conn_keep_alive && !f->conn_close;
	else
		p->msg.keep_alive = !f->conn_close;
	if (p->kind == HTTP_RESPONSE) {
		if (response_has_no_body(p->msg.status))
			p->msg.content_length = 0;
		else if (!p->msg.has_content_length)
			return parse_fail(p, 400, "response without Content-Length");
	}
	return HTTP_MORE;
}

/* The head, buf[0, head_len), ends in CRLFCRLF and holds no NUL. */
static enum http_result parse_head(struct http_parser *p)
{
	struct head_flags flags = { 0 };
	size_t pos = 0;
	unsigned nr_headers = 0;
	char *line = take_line(p->buf, &pos);
	enum http_result r;

	if (!line)
		return parse_fail(p, 400, "control character or bare CR/LF in start line");
	r = p->kind == HTTP_REQUEST ? parse_request_line(p, line) : parse_status_line(p, line);
	if (r == HTTP_ERROR)
		return r;
	while (pos < p->head_len) {
		line = take_line(p->buf, &pos);
		if (!line)
			return parse_fail(p, 400, "control character or bare CR/LF in header");
		if (!*line)
			break; /* the blank line that ends the head */
		if (++nr_headers > HTTP_MAX_HEADERS)
			return parse_fail(p, 431, "too many header lines");
		if (parse_header(p, line, &flags) == HTTP_ERROR)
			return HTTP_ERROR;
	}
	return finish_head(p, &flags);
}

/* Look for the end of the head in the bytes not yet searched. */
static enum http_result find_head(struct http_parser *p)
{
	size_t from = p->scanned >= 3 ? p->scanned - 3 : 0;
	char *end = memmem(p->buf + from, p->len - from, "\r\n\r\n", 4);
	size_t head_end = end ? (size_t)(end - p->buf) + 4 : p->len;

	if (head_end > HTTP_MAX_HEAD)
		return parse_fail(p, 431, "request header too large");
	if (memchr(p->buf + p->scanned, '\0', head_end - p->scanned))
		return parse_fail(p, 400, "NUL byte in header");
	p->scanned = head_end;
	if (!end) {
		if (p->len >= HTTP_MAX_HEAD)
			return parse_fail(p, 431, "request header too large");
		return HTTP_MORE;
	}
	p->head_len = head_end;
	return parse_head(p);
}

static enum http_result parse(struct http_parser *p)
{
	if (!p->head_len && find_head(p) == HTTP_ERROR)
		return HTTP_ERROR;
	if (!p->head_len || p->len - p->head_len < p->msg.content_length)
		return HTTP_MORE;
	p->msg.body = p->buf + p->head_len;
	p->msg.body_len = p->msg.content_length;
	p->state = HTTP_DONE;
	return HTTP_DONE;
}

enum http_result http_parser_feed(struct http_parser *p, const void *data, size_t n)
{
	if (p->state == HTTP_ERROR)
		return HTTP_ERROR;
	if (n > http_parser_room(p))
		return p->head_len ? parse_fail(p, 413, "body too large")
				   : parse_fail(p, 431, "request header too large");
	if (!n)
		return p->state;
	if (parser_reserve(p, p->len + n))
		return parse_fail(p, 503, "out of memory");
	memcpy(p->buf + p->len, data, n);
	p->len += n;
	if (p->state == HTTP_DONE)
		return HTTP_DONE;
	return parse(p);
}

enum http_result http_parser_next(struct http_parser *p)
{
	size_t used;

	if (p->state != HTTP_DONE)
		return p->state;
	used = p->head_len + p->msg.body_len;
	memmove(p->buf, p->buf + used, p->len - used);
	p->len -= used;
	p->scanned = 0;
	p->head_len = 0;
	memset(&p->msg, 0, sizeof(p->msg));
	p->state = HTTP_MORE;
	if (!p->len) {
		/* An idle keep-alive connection holds no buffer. */
		free(p->buf);
		p->buf = NULL;
		p->cap = 0;
		return HTTP_MORE;
	}
	return parse(p);
}

/* ---- output ---- */

static int buf_reserve(struct http_buf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : HTTP_BUF_MIN;
	char *data;

	if (extra > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	if (b->len + extra <= b->cap)
		return 0;
	while (cap < b->len + extra)
		cap *= 2;
	data = realloc(b->data, cap);
	if (!data)
		return -ENOMEM;
	b->data = data;
	b->cap = cap;
	return 0;
}

int http_buf_append(struct http_buf *b, const void *data, size_t n)
{
	if (!n)
		return 0;
	if (buf_reserve(b, n))
		return -ENOMEM;
	memcpy(b->data + b->len, data, n);
	b->len += n;
	return 0;
}

int http_buf_printf(struct http_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if (buf_reserve(b, (size_t)n + 1))
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void http_buf_consume(struct http_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void http_buf_free(struct http_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

const char *http_reason(int status)
{
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
		{ 100, "Continue" },
		{ 200, "OK" },
		{ 201, "Created" },
		{ 202, "Accepted" },
		{ 204, "No Content" },
		{ 400, "Bad Request" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 408, "Request Timeout" },
		{ 409, "Conflict" },
		{ 411, "Length Required" },
		{ 413, "Content Too Large" },
		{ 414, "URI Too Long" },
		{ 415, "Unsupported Media Type" },
		{ 422, "Unprocessable Content" },
		{ 431, "Request Header Fields Too Large" },
		{ 500, "Internal Server Error" },
		{ 501, "Not Implemented" },
		{ 503, "Service Unavailable" },
		{ 505, "HTTP Version Not Supported" },
	};

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "Unknown";
}

int http_write_response(struct http_buf *out, int status, const char *extra_headers,
			const char *json, size_t json_len, bool keep_alive)
{
	size_t start = out->len;
	bool no_body = status < 200 || status == 204;
	int ret;

	if (no_body)
		json_len = 0;
	ret = http_buf_printf(out, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
	if (!ret && !no_body)
		ret = http_buf_printf(out, "Content-Length: %zu\r\n", json_len);
	if (!ret && json_len)
		ret = http_buf_printf(out, "Content-Type: application/json\r\n");
	if (!ret && extra_headers)
		ret = http_buf_printf(out, "%s", extra_headers);
	if (!ret && !keep_alive)
		ret = http_buf_printf(out, "Connection: close\r\n");
	if (!ret)
		ret = http_buf_append(out, "\r\n", 2);
	if (!ret)
		ret = http_buf_append(out, json, json_len);
	if (ret)
		out->len = start;
	return ret;
}

int http_write_request(struct http_buf *out, const char *method, const char *target,
		       const char *json, size_t json_len)
{
	size_t start = out->len;
	int ret;

	ret = http_buf_printf(out,
			      "%s %s HTTP/1.1\r\n"
			      "Host: localhost\r\n"
			      "Accept: application/json\r\n"
			      "Connection: close\r\n",
			      method, target);
	if (!ret && json)
		ret = http_buf_printf(out,
				      "Content-Type: application/json\r\n"
				      "Content-Length: %zu\r\n",
				      json_len);
	if (!ret)
		ret = http_buf_append(out, "\r\n", 2);
	if (!ret && json)
		ret = http_buf_append(out, json, json_len);
	if (ret)
		out->len = start;
	return ret;
}
