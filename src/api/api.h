/* The management API server: HTTP/1.1 with JSON bodies on a Unix stream
 * socket, in the style of Firecracker's and Cloud Hypervisor's. It runs on
 * the VM's event loop; handlers run on the loop thread, so they may touch VM
 * state that only the loop thread touches.
 *
 * A misbehaving client only ever gets an error response or a closed
 * connection: at most API_MAX_CONNECTIONS at once, requests of at most
 * HTTP_MAX_HEAD + HTTP_MAX_REQUEST_BODY bytes, idle connections closed. */
#ifndef HVMM_API_API_H
#define HVMM_API_API_H

#include <jansson.h>

#include "api/api_error.h"
#include "core/loop.h"

#define API_MAX_CONNECTIONS 16
#define API_IDLE_TIMEOUT_MS 30000    /* no request in progress */
#define API_REQUEST_TIMEOUT_MS 10000 /* first byte of a request to its last */

/* Answer one request.
 *
 * body: the request's JSON object, or NULL if the request had none (a
 *       body that is not a JSON object was already refused with 400).
 *       Borrowed. Read it with api_unpack(), which refuses unknown fields.
 * reply: set it to a new JSON value (the API takes the reference) to send
 *       it as the response body; leave it NULL for an empty body.
 * err:  for an error status, the message sent as {"error": "..."}; use
 *       api_error_set(), which returns the status.
 *
 * Returns the HTTP status: 2xx for success, 4xx/5xx for failure (the reply
 * is then discarded and the error object sent instead), or a negative errno
 * for an internal failure, answered with 500. */
typedef int (*api_handler)(void *ctx, const json_t *body, json_t **reply, struct api_error *err);

struct api;

/* Listen on socket_path (mode 0600). A stale socket file nobody listens on
 * is replaced; a live one (-EADDRINUSE) or a file that is not a socket
 * (-EEXIST) is left alone. Returns NULL with errno set, after logging why. */
struct api *api_new(struct loop *loop, const char *socket_path);

/* Route requests for `method` ("GET", "PUT", ...) on `path` (exact match,
 * any query string ignored) to fn(ctx, ...). Returns 0, -EINVAL (malformed
 * method or path), -EEXIST (already routed), -ENOSPC or -ENOMEM. A path
 * with routes answers other methods with 405, an unknown path with 404. */
int api_route(struct api *api, const char *method, const char *path, api_handler fn, void *ctx);

/* Override API_IDLE_TIMEOUT_MS and API_REQUEST_TIMEOUT_MS (0 keeps one). */
void api_set_timeouts(struct api *api, unsigned idle_ms, unsigned request_ms);

/* Close every connection and the socket and remove the socket file (if it
 * is still ours). Call it from outside loop_run(), or from a callback after
 * loop_stop(). */
void api_free(struct api *api);

/* Unpack a request body with json_unpack() format `fmt` in strict mode:
 * every member of the body must be named in fmt (use "s?" for optional
 * ones), with the right type. A NULL body unpacks as {}. Returns 0, or 400
 * with err saying what is wrong ("unknown field(s): forse", "force: expected
 * true or false, got integer", ...). */
int api_unpack(const json_t *body, struct api_error *err, const char *fmt, ...);

#endif
