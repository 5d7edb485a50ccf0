/* Request routing for the management API, apart from the sockets: a table
 * of (method, path) → handler, and the translation of one parsed HTTP
 * request into one HTTP response. */
#ifndef HVMM_API_ROUTER_H
#define HVMM_API_ROUTER_H

#include <stdbool.h>

#include "api/api.h"
#include "api/http.h"

#define API_MAX_ROUTES 128

struct api_router;

struct api_router *api_router_new(void);
void api_router_free(struct api_router *r);

/* See api_route(). */
int api_router_add(struct api_router *r, const char *method, const char *path, api_handler fn,
		   void *ctx);

/* Answer one complete request: find its route, decode its JSON body, call
 * the handler and append the response to `out`. Returns the status sent,
 * or -ENOMEM if no response could be written (close the connection). */
int api_router_handle(struct api_router *r, const struct http_message *req, bool keep_alive,
		      struct http_buf *out);

/* Append a {"error": message} response. extra_headers may be NULL. */
int api_write_error(struct http_buf *out, int status, const char *message,
		    const char *extra_headers, bool keep_alive);

#endif
