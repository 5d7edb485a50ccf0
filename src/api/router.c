#include "api/router.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

struct api_route {
	char *method;
	char *path;
	api_handler fn;
	void *ctx;
};

struct api_router {
	struct api_route *routes;
	size_t nr_routes;
};

struct api_router *api_router_new(void)
{
	return calloc(1, sizeof(struct api_router));
}

void api_router_free(struct api_router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nr_routes; i++) {
		free(r->routes[i].method);
		free(r->routes[i].path);
	}
	free(r->routes);
	free(r);
}

static bool valid_method(const char *method)
{
	size_t len = strlen(method);

	if (!len || len > HTTP_MAX_METHOD)
		return false;
	return strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == len;
}

static bool valid_path(const char *path)
{
	size_t len = strlen(path);

	if (path[0] != '/' || len > HTTP_MAX_TARGET)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)path[i];

		if (c <= 0x20 || c >= 0x7f || c == '?')
			return false;
	}
	return true;
}

static const struct api_route *find_route(const struct api_router *r, const char *method,
					  const char *path, bool *path_known)
{
	*path_known = false;
	for (size_t i = 0; i < r->nr_routes; i++) {
		if (strcmp(r->routes[i].path, path))
			continue;
		*path_known = true;
		if (!strcmp(r->routes[i].method, method))
			return &r->routes[i];
	}
	return NULL;
}

int api_router_add(struct api_router *r, const char *method, const char *path, api_handler fn,
		   void *ctx)
{
	struct api_route *routes, route = { .fn = fn, .ctx = ctx };
	bool path_known;

	if (!method || !path || !fn || !valid_method(method) || !valid_path(path))
		return -EINVAL;
	if (find_route(r, method, path, &path_known))
		return -EEXIST;
	if (r->nr_routes >= API_MAX_ROUTES)
		return -ENOSPC;
	route.method = strdup(method);
	route.path = strdup(path);
	routes = realloc(r->routes, (r->nr_routes + 1) * sizeof(*routes));
	if (!route.method || !route.path || !routes) {
		free(route.method);
		free(route.path);
		if (routes)
			r->routes = routes;
		return -ENOMEM;
	}
	routes[r->nr_routes++] = route;
	r->routes = routes;
	return 0;
}

/* ---- responses ---- */

/* Client-supplied text can reach error messages; JSON strings must be UTF-8
 * and logs should be printable, so keep printable ASCII only. */
static void make_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

/* The JSON text of a reply, newline-terminated for curl users. */
static char *reply_text(const json_t *reply, size_t *len)
{
	char *json = json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY);
	char *text;

	if (!json)
		return NULL;
	*len = strlen(json);
	text = realloc(json, *len + 2);
	if (!text) {
		free(json);
		return NULL;
	}
	text[(*len)++] = '\n';
	text[*len] = '\0';
	return text;
}

int api_write_error(struct http_buf *out, int status, const char *message,
		    const char *extra_headers, bool keep_alive)
{
	char text[API_ERROR_MAX];
	json_t *obj;
	char *json = NULL;
	size_t len;
	int ret;

	snprintf(text, sizeof(text), "%s", message && *message ? message : http_reason(status));
	make_printable(text);
	obj = json_pack("{s:s}", "error", text);
	if (obj)
		json = reply_text(obj, &len);
	json_decref(obj);
	if (!json)
		return -ENOMEM;
	ret = http_write_response(out, status, extra_headers, json, len, keep_alive);
	free(json);
	return ret;
}

static int write_reply(struct http_buf *out, int status, const json_t *reply, bool keep_alive)
{
	size_t len = 0;
	char *text;
	int ret;

	if (!reply)
		return http_write_response(out, status, NULL, NULL, 0, keep_alive);
	text = reply_text(reply, &len);
	if (!text)
		return api_write_error(out, 500, "internal error: the reply could not be encoded",
				       NULL, keep_alive);
	ret = http_write_response(out, status, NULL, text, len, keep_alive);
	free(text);
	return ret;
}

/* ---- requests ---- */

/* Room for "Allow: " and every method a path can have, comma-separated. */
#define ALLOW_HEADER_MAX (sizeof("Allow: \r\n") + API_MAX_ROUTES * (HTTP_MAX_METHOD + 2))

/* "Allow: GET, PUT\r\n" for a 405 on a known path. */
static void allow_header(const struct api_router *r, const char *path, char buf[ALLOW_HEADER_MAX])
{
	size_t len = (size_t)sprintf(buf, "Allow: ");
	bool first = true;

	for (size_t i = 0; i < r->nr_routes; i++) {
		if (strcmp(r->routes[i].path, path))
			continue;
		len += (size_t)sprintf(buf + len, "%s%s", first ? "" : ", ", r->routes[i].method);
		first = false;
	}
	strcpy(buf + len, "\r\n");
}

static bool is_json_media_type(const char *type)
{
	size_t n = strlen("application/json");

	return !strncasecmp(type, "application/json", n) &&
	       (type[n] == '\0' || type[n] == ';' || type[n] == ' ' || type[n] == '\t');
}

/* Decode the body, if any, into a JSON object. */
static int read_body(const struct http_message *req, json_t **body, struct api_error *err)
{
	json_error_t jerr;

	*body = NULL;
	if (!req->body_len)
		return 0;
	if (!strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"))
		return api_error_set(err, 400, "a %s request takes no body", req->method);
	if (req->content_type && !is_json_media_type(req->content_type))
		return api_error_set(err, 415, "the request body must be application/json, not %s",
				     req->content_type);
	*body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
			   &jerr);
	if (!*body)
		return api_error_set(err, 400,
				     "the request body is not valid JSON: %s (line %d, column %d)",
				     jerr.text, jerr.line, jerr.column);
	if (!json_is_object(*body)) {
		json_decref(*body);
		*body = NULL;
		return api_error_set(err, 400, "the request body must be a JSON object");
	}
	return 0;
}

/* Run the handler and turn what it returns into a valid status. */
static int call_handler(const struct api_route *route, const json_t *body, json_t **reply,
			struct api_error *err)
{
	int status = route->fn(route->ctx, body, reply, err);

	if (status < 0) {
		if (!err->message[0])
			api_error_set(err, 500, "internal error: %s", strerror(-status));
		log_ratelimited(LOG_ERR, "api: %s %s failed: %s", route->method, route->path,
				err->message);
		return 500;
	}
	if (status < 200 || status > 599) {
		log_ratelimited(LOG_ERR, "api: %s %s: handler returned status %d", route->method,
				route->path, status);
		return api_error_set(err, 500, "internal error: handler returned status %d",
				     status);
	}
	return status;
}

int api_router_handle(struct api_router *r, const struct http_message *req, bool keep_alive,
		      struct http_buf *out)
{
	struct api_error err = { { 0 } };
	const struct api_route *route;
	json_t *body = NULL, *reply = NULL;
	char allow[ALLOW_HEADER_MAX];
	bool path_known;
	int status, ret;

	route = find_route(r, req->method, req->path, &path_known);
	if (!route && !path_known) {
		api_error_set(&err, 404, "no such endpoint: %s", req->path);
		ret = api_write_error(out, 404, err.message, NULL, keep_alive);
		return ret < 0 ? ret : 404;
	}
	if (!route) {
		allow_header(r, req->path, allow);
		api_error_set(&err, 405, "%s is not allowed on %s", req->method, req->path);
		ret = api_write_error(out, 405, err.message, allow, keep_alive);
		return ret < 0 ? ret : 405;
	}
	status = read_body(req, &body, &err);
	if (!status)
		status = call_handler(route, body, &reply, &err);
	json_decref(body);
	if (status >= 300) {
		json_decref(reply);
		ret = api_write_error(out, status, err.message, NULL, keep_alive);
	} else {
		ret = write_reply(out, status, reply, keep_alive);
		json_decref(reply);
	}
	log_ratelimited(LOG_DEBUG, "api: %s %s: %d", req->method, req->path, status);
	return ret < 0 ? ret : status;
}

/* ---- strict unpacking ---- */

/* The value specifiers of json_unpack() and how many pointers each takes. */
static int unpack_spec_args(const char *spec)
{
	switch (*spec) {
	case 'n':
		return 0;
	case 's':
		return spec[1] == '%' ? 2 : 1;
	case 'b': case 'i': case 'I': case 'f': case 'F': case 'o': case 'O':
		return 1;
	default:
		return -1;
	}
}

/* The key of the value whose specifier is at fmt[pos - 1] (jansson counts
 * from 1), for a flat object format such as "{s:b, s?i}"; NULL for any
 * other format. `ap` holds the arguments given with fmt. */
static const char *key_at(const char *fmt, int pos, va_list ap)
{
	const char *key = NULL;
	bool want_key = true;

	if (pos < 2 || fmt[0] != '{' || (size_t)pos > strlen(fmt))
		return NULL;
	for (int i = 1; i < pos - 1; i++) {
		int nr_args;

		if (strchr(" \t,:?%!*", fmt[i]))
			continue;
		if (want_key) {
			if (fmt[i] != 's')
				return NULL;
			key = va_arg(ap, const char *);
			want_key = false;
			continue;
		}
		nr_args = unpack_spec_args(fmt + i);
		if (nr_args < 0)
			return NULL;
		while (nr_args--)
			(void)va_arg(ap, void *);
		want_key = true;
	}
	return want_key ? NULL : key;
}

/* jansson's text after `prefix`, or NULL. */
static const char *after(const char *text, const char *prefix)
{
	const char *s = strstr(text, prefix);

	return s ? s + strlen(prefix) : NULL;
}

int api_unpack(const json_t *body, struct api_error *err, const char *fmt, ...)
{
	json_t *empty = NULL, *root = (json_t *)body;
	json_error_t jerr;
	const char *detail, *key;
	va_list ap, keys;
	int ret;

	if (!root)
		root = empty = json_object();
	va_start(ap, fmt);
	va_copy(keys, ap);
	ret = json_vunpack_ex(root, &jerr, JSON_STRICT, fmt, ap);
	va_end(ap);
	json_decref(empty);
	if (!ret) {
		va_end(keys);
		return 0;
	}
	if ((detail = after(jerr.text, "left unpacked: ")))
		api_error_set(err, 400, "unknown field(s) in the request body: %s", detail);
	else if ((detail = after(jerr.text, "Object item not found: ")))
		api_error_set(err, 400, "missing field in the request body: %s", detail);
	else if (json_error_code(&jerr) == json_error_wrong_type &&
		 (key = key_at(fmt, jerr.position, keys)))
		api_error_set(err, 400, "%s: %c%s", key, tolower((unsigned char)jerr.text[0]),
			      jerr.text + 1);
	else
		api_error_set(err, 400, "invalid request body: %s", jerr.text);
	va_end(keys);
	return 400;
}
