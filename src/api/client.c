#include "api/client.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "util/clock.h"

#define CONNECT_RETRY_MS 10

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = mono_ms();

	if (now >= deadline)
		return 0;
	return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

/* Wait until fd is ready for `events`: 0, -ETIMEDOUT or another -errno. */
static int wait_for(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, remaining_ms(deadline));

		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* A Unix socket connect fails with EAGAIN while the server's backlog is
 * full; try again until the deadline. */
static int connect_socket(const char *path, uint64_t deadline, struct api_error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd, ret;

	if (!*path)
		return api_error_set(err, -EINVAL, "no socket path");
	if (strlen(path) >= sizeof(addr.sun_path))
		return api_error_set(err, -ENAMETOOLONG, "the socket path is too long");
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return api_error_set(err, -errno, "socket: %s", strerror(errno));
	for (;;) {
		struct timespec pause = { .tv_nsec = CONNECT_RETRY_MS * 1000000L };

		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || !remaining_ms(deadline))
			break;
		nanosleep(&pause, NULL);
	}
	if (errno == EAGAIN)
		ret = api_error_set(err, -ETIMEDOUT, "connect: the server is not accepting connections");
	else
		ret = api_error_set(err, -errno, "connect: %s", strerror(errno));
	close(fd);
	return ret;
}

static int send_all(int fd, const char *data, size_t len, uint64_t deadline, struct api_error *err)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		int ret;

		if (n >= 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return api_error_set(err, -errno, "send: %s", strerror(errno));
		ret = wait_for(fd, POLLOUT, deadline);
		if (ret < 0)
			return api_error_set(err, ret, "send: %s", strerror(-ret));
	}
	return 0;
}

static int read_response(int fd, struct http_parser *p, unsigned timeout_ms, uint64_t deadline,
			 struct api_error *err)
{
	for (;;) {
		char chunk[4096];
		size_t room = http_parser_room(p);
		ssize_t n;
		int ret = wait_for(fd, POLLIN, deadline);

		if (ret == -ETIMEDOUT)
			return api_error_set(err, ret, "no response within %u ms", timeout_ms);
		if (ret < 0)
			return api_error_set(err, ret, "poll: %s", strerror(-ret));
		n = recv(fd, chunk, room < sizeof(chunk) ? room : sizeof(chunk), 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0)
			return api_error_set(err, -errno, "receive: %s", strerror(errno));
		if (n == 0)
			return api_error_set(err, -EPROTO, "the server closed the connection "
							   "without a complete response");
		switch (http_parser_feed(p, chunk, (size_t)n)) {
		case HTTP_DONE:
			return 0;
		case HTTP_ERROR:
			return api_error_set(err, -EPROTO, "malformed response: %s",
					     p->error_reason);
		case HTTP_MORE:
			break;
		}
	}
}

static int decode_body(const struct http_message *msg, json_t **body, struct api_error *err)
{
	json_error_t jerr;

	*body = NULL;
	if (!msg->body_len)
		return 0;
	*body = json_loadb(msg->body, msg->body_len, JSON_DECODE_ANY, &jerr);
	if (!*body)
		return api_error_set(err, -EPROTO, "the response body is not JSON: %s", jerr.text);
	return 0;
}

/* Connect, send, receive; the request is already formatted. */
static int exchange(const char *socket_path, const struct http_buf *request, unsigned timeout_ms,
		    struct api_response *resp, struct api_error *err)
{
	uint64_t deadline = mono_ms() + timeout_ms;
	struct api_error send_err = { { 0 } };
	struct http_parser p;
	int fd, sent, ret;

	fd = connect_socket(socket_path, deadline, err);
	if (fd < 0)
		return fd;
	/* A server may answer early (say, 413) and hang up while the body is
	 * still going out: read its answer before reporting a failed send. */
	sent = send_all(fd, request->data, request->len, deadline, &send_err);
	if (sent < 0 && sent != -EPIPE && sent != -ECONNRESET) {
		*err = send_err;
		close(fd);
		return sent;
	}
	http_parser_init(&p, HTTP_RESPONSE, API_CLIENT_MAX_RESPONSE_BODY);
	ret = read_response(fd, &p, timeout_ms, deadline, err);
	if (ret < 0 && sent < 0)
		*err = send_err;
	if (!ret) {
		resp->status = p.msg.status;
		ret = decode_body(&p.msg, &resp->body, err);
	}
	http_parser_free(&p);
	close(fd);
	return ret < 0 && sent < 0 ? sent : ret;
}

int api_client_request(const char *socket_path, const char *method, const char *path,
		       const json_t *body, unsigned timeout_ms, struct api_response *resp,
		       struct api_error *err)
{
	struct http_buf request = { 0 };
	char *json = NULL;
	int ret;

	memset(resp, 0, sizeof(*resp));
	err->message[0] = '\0';
	if (body) {
		json = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!json)
			return api_error_set(err, -ENOMEM, "cannot encode the request body");
	}
	ret = http_write_request(&request, method, path, json, json ? strlen(json) : 0);
	free(json);
	if (ret < 0)
		return api_error_set(err, ret, "cannot format the request: %s", strerror(-ret));
	ret = exchange(socket_path, &request, timeout_ms, resp, err);
	http_buf_free(&request);
	return ret;
}

void api_response_release(struct api_response *resp)
{
	json_decref(resp->body);
	resp->body = NULL;
}

const char *api_response_error(const struct api_response *resp)
{
	json_t *error = json_object_get(resp->body, "error");

	return json_string_value(error);
}
