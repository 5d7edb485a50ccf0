/* A minimal, strict HTTP/1.1 message parser and writer for the management
 * API's Unix socket.
 *
 * The parser is incremental: feed it bytes as they arrive and it says
 * HTTP_MORE (keep feeding), HTTP_DONE (a complete message is available) or
 * HTTP_ERROR (the message is malformed or over a limit; error_status is the
 * HTTP status to answer with and error_reason a short explanation). It owns
 * a buffer that never grows past HTTP_MAX_HEAD + max_body bytes, so a
 * hostile peer cannot make it use more memory than that.
 *
 * Supported: request lines "METHOD /target HTTP/1.1" (or 1.0), status lines
 * "HTTP/1.1 200 OK", header lines "Name: value", bodies sized by
 * Content-Length. The headers Content-Length, Content-Type and Connection
 * are interpreted and the rest ignored, except Transfer-Encoding, which is
 * refused (501) rather than ignored: a body the parser cannot delimit must
 * not be mistaken for the next request. Line endings must be CRLF. */
#ifndef HVMM_API_HTTP_H
#define HVMM_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEAD 8192             /* start line + headers + blank line */
#define HTTP_MAX_HEADERS 64            /* header lines */
#define HTTP_MAX_TARGET 1024           /* request target ("/v1/status?...") */
#define HTTP_MAX_METHOD 16
#define HTTP_MAX_REQUEST_BODY 65536

enum http_kind { HTTP_REQUEST, HTTP_RESPONSE };

enum http_result { HTTP_MORE, HTTP_DONE, HTTP_ERROR };

/* A parsed message. Strings point into the parser's buffer and are valid
 * until the next http_parser_next() or http_parser_free(). */
struct http_message {
	/* Requests. */
	const char *method;       /* "GET" */
	const char *path;         /* "/v1/status": the target up to any '?' */
	const char *query;        /* after the '?', or NULL */
	/* Responses. */
	int status;               /* 100..599 */
	const char *reason;       /* "OK"; may be empty */
	/* Both. */
	int minor_version;        /* HTTP/1.<minor_version>: 0 or 1 */
	bool keep_alive;          /* from the version and Connection */
	const char *content_type; /* value of Content-Type, or NULL */
	bool has_content_length;
	size_t content_length;
	const char *body;         /* content_length bytes, not NUL-terminated */
	size_t body_len;
};

struct http_parser {
	enum http_kind kind;
	size_t max_body;
	char *buf;
	size_t len, cap;
	size_t scanned;           /* head bytes already searched for CRLFCRLF */
	size_t head_len;          /* 0 until the head is complete */
	enum http_result state;
	int error_status;         /* 400, 413, 414, 431, 501, 505, ... */
	const char *error_reason; /* static text, e.g. "bad Content-Length" */
	struct http_message msg;
};

/* max_body: the largest body accepted (413 above it); HTTP_MAX_REQUEST_BODY
 * for the server. Allocates nothing until the first byte arrives. */
void http_parser_init(struct http_parser *p, enum http_kind kind, size_t max_body);
void http_parser_free(struct http_parser *p);

/* How many more bytes the parser will take. Feeding more is an error. */
size_t http_parser_room(const struct http_parser *p);

/* Append n bytes and parse as far as possible. Bytes after a complete
 * message are kept for the next one (pipelining); once HTTP_DONE or
 * HTTP_ERROR, the state stays until http_parser_next(). */
enum http_result http_parser_feed(struct http_parser *p, const void *data, size_t n);

/* Discard the completed message and parse whatever followed it. Has no
 * effect unless the state is HTTP_DONE. */
enum http_result http_parser_next(struct http_parser *p);

/* True if bytes of an unfinished message are buffered. */
bool http_parser_has_partial(const struct http_parser *p);

/* An output buffer for responses and requests. */
struct http_buf {
	char *data;
	size_t len, cap;
};

int http_buf_append(struct http_buf *b, const void *data, size_t n);
int http_buf_printf(struct http_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (already sent). */
void http_buf_consume(struct http_buf *b, size_t n);
void http_buf_free(struct http_buf *b);

/* "OK", "Not Found", ...; "Unknown" for a status without a phrase here. */
const char *http_reason(int status);

/* A response with an optional JSON body. extra_headers, if not NULL, is a
 * block of complete "Name: value\r\n" lines. A 204 never carries a body.
 * Returns 0 or -ENOMEM. */
int http_write_response(struct http_buf *out, int status, const char *extra_headers,
			const char *json, size_t json_len, bool keep_alive);

/* A request with an optional JSON body (NULL for none), Connection: close. */
int http_write_request(struct http_buf *out, const char *method, const char *target,
		       const char *json, size_t json_len);

#endif
