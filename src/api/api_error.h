/* An error message for a management API client: what a handler reports in
 * the {"error": "..."} body, and what the blocking client reports to hvctl. */
#ifndef HVMM_API_ERROR_H
#define HVMM_API_ERROR_H

#define API_ERROR_MAX 256

struct api_error {
	char message[API_ERROR_MAX];
};

/* Set the message (truncated to fit); returns `status` so a handler can
 * write `return api_error_set(err, 409, "...")`. */
int api_error_set(struct api_error *err, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
