/* A small blocking client for the management API, used by hvctl: one
 * request per connection, bounded by a timeout. */
#ifndef HVMM_API_CLIENT_H
#define HVMM_API_CLIENT_H

#include <jansson.h>

#include "api/api_error.h"

#define API_CLIENT_MAX_RESPONSE_BODY (1u << 20)

struct api_response {
	int status;   /* the HTTP status */
	json_t *body; /* the decoded JSON body; NULL if the body was empty */
};

/* Send `method path` with an optional JSON body (NULL for none) to the API
 * listening on socket_path and wait for the response, all of it within
 * timeout_ms. Returns 0 whatever the HTTP status (see resp->status), or a
 * negative errno if no response arrived, with err saying what went wrong
 * ("connect: No such file or directory", "no response within 5000 ms",
 * "malformed response: ..."). Release resp with api_response_release(). */
int api_client_request(const char *socket_path, const char *method, const char *path,
		       const json_t *body, unsigned timeout_ms, struct api_response *resp,
		       struct api_error *err);

void api_response_release(struct api_response *resp);

/* The "error" text of an error response, or NULL if it has none. */
const char *api_response_error(const struct api_response *resp);

#endif
