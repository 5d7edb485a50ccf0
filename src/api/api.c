/* The management API server: a listening Unix socket and its connections,
 * all driven by the VM's event loop.
 *
 * A connection is freed only from its own loop callback (or by api_free()):
 * loop_run() delivers a batch of events, and freeing a connection from
 * another callback could leave an event for it later in the same batch.
 * The idle-timeout timer therefore shuts a connection's socket down, and
 * the hang-up that follows frees it. */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "api/router.h"
#include "util/clock.h"
#include "util/log.h"

#define API_LISTEN_BACKLOG 16
#define API_ACCEPT_BATCH 16
#define API_READ_CHUNK 4096

struct api_conn {
	struct loop_source src;
	struct api *api;
	struct api_conn *prev, *next;
	struct http_parser in;
	struct http_buf out;
	uint64_t last_activity_ms;  /* last byte received or sent */
	uint64_t request_start_ms;  /* first byte of a partial request; 0 if none */
	uint32_t events;            /* what the loop waits for */
	bool close_after_write;
	bool timed_out;             /* shut down by the timer; freed on its next event */
};

struct api {
	struct loop *loop;
	struct loop_source listener;
	bool listening;
	bool accept_paused;         /* out of file descriptors: retried on the tick */
	struct loop_timer tick;
	bool tick_added, tick_armed;
	char *socket_path;
	dev_t socket_dev;
	ino_t socket_ino;
	struct api_router *router;
	struct api_conn *conns;
	unsigned nr_conns;
	unsigned idle_timeout_ms, request_timeout_ms;
};

/* ---- the timer: idle connections, paused accepts ---- */

static unsigned tick_period_ms(const struct api *api)
{
	unsigned shortest = api->idle_timeout_ms;
	unsigned period;

	if (api->request_timeout_ms < shortest)
		shortest = api->request_timeout_ms;
	period = shortest / 4;

	return period < 10 ? 10 : period > 1000 ? 1000 : period;
}

static void tick_start(struct api *api)
{
	unsigned period = tick_period_ms(api);
	int ret;

	if (api->tick_armed)
		return;
	ret = loop_timer_arm(&api->tick, period, period);
	if (ret < 0) {
		log_ratelimited(LOG_WARN, "api: cannot arm the idle timer: %s", strerror(-ret));
		return;
	}
	api->tick_armed = true;
}

static void tick_stop(struct api *api)
{
	struct itimerspec off = { { 0, 0 }, { 0, 0 } };

	if (api->tick_armed && timerfd_settime(api->tick.src.fd, 0, &off, NULL) == 0)
		api->tick_armed = false;
}

/* ---- connections ---- */

static void conn_free(struct api_conn *conn)
{
	struct api *api = conn->api;

	loop_del(api->loop, &conn->src);
	close(conn->src.fd);
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		api->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	api->nr_conns--;
	http_parser_free(&conn->in);
	http_buf_free(&conn->out);
	free(conn);
}

/* Send what can be sent without blocking. */
static int conn_flush(struct api_conn *conn)
{
	while (conn->out.len) {
		ssize_t n = send(conn->src.fd, conn->out.data, conn->out.len,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		http_buf_consume(&conn->out, (size_t)n);
		conn->last_activity_ms = mono_ms();
	}
	return 0;
}

/* Read once; the loop calls again while more is waiting. Returns 0, or a
 * negative errno when the connection is over (-ECONNRESET at end of file). */
static int conn_read(struct api_conn *conn)
{
	char chunk[API_READ_CHUNK];
	size_t room = http_parser_room(&conn->in);
	ssize_t n;

	if (room > sizeof(chunk))
		room = sizeof(chunk);
	if (!room)
		return 0; /* a complete request is waiting for its turn */
	n = recv(conn->src.fd, chunk, room, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	conn->last_activity_ms = mono_ms();
	if (!conn->request_start_ms)
		conn->request_start_ms = conn->last_activity_ms;
	http_parser_feed(&conn->in, chunk, (size_t)n);
	return 0;
}

/* A request that cannot be parsed: answer and hang up. */
static int conn_reject(struct api_conn *conn)
{
	log_ratelimited(LOG_WARN, "api: %s: bad request: %d %s", conn->api->socket_path,
			conn->in.error_status, conn->in.error_reason);
	conn->close_after_write = true;
	return api_write_error(&conn->out, conn->in.error_status, conn->in.error_reason, NULL,
			       false);
}

static int conn_answer(struct api_conn *conn)
{
	bool keep_alive = conn->in.msg.keep_alive;
	int ret = api_router_handle(conn->api->router, &conn->in.msg, keep_alive, &conn->out);

	if (ret < 0)
		return ret;
	if (!keep_alive)
		conn->close_after_write = true;
	http_parser_next(&conn->in);
	conn->request_start_ms = http_parser_has_partial(&conn->in) ? mono_ms() : 0;
	return 0;
}

/* Send pending output, then answer buffered requests one at a time (a
 * pipelined request waits until the previous response is out). Returns a
 * negative errno when the connection should be closed. */
static int conn_progress(struct api_conn *conn)
{
	for (;;) {
		int ret = conn_flush(conn);

		if (ret < 0)
			return ret;
		if (conn->out.len)
			return 0;
		if (conn->close_after_write)
			return -ECONNRESET;
		if (conn->in.state == HTTP_ERROR)
			ret = conn_reject(conn);
		else if (conn->in.state == HTTP_DONE)
			ret = conn_answer(conn);
		else
			return 0;
		if (ret < 0)
			return ret;
	}
}

/* Wait for output room while a response is pending, for input otherwise. */
static int conn_update_events(struct api_conn *conn)
{
	uint32_t want = conn->out.len ? EPOLLOUT : EPOLLIN;
	int ret;

	if (want == conn->events)
		return 0;
	ret = loop_modify(conn->api->loop, &conn->src, want);
	if (!ret)
		conn->events = want;
	return ret;
}

static void on_conn_event(struct loop_source *src, uint32_t events)
{
	struct api_conn *conn = container_of(src, struct api_conn, src);
	int ret = 0;

	if (conn->timed_out || (events & EPOLLERR)) {
		conn_free(conn);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP))
		ret = conn_read(conn);
	if (!ret)
		ret = conn_progress(conn);
	if (!ret)
		ret = conn_update_events(conn);
	if (ret < 0)
		conn_free(conn);
}

static int conn_new(struct api *api, int fd)
{
	struct api_conn *conn = calloc(1, sizeof(*conn));
	int ret;

	if (!conn)
		return -ENOMEM;
	conn->api = api;
	conn->events = EPOLLIN;
	conn->last_activity_ms = mono_ms();
	http_parser_init(&conn->in, HTTP_REQUEST, HTTP_MAX_REQUEST_BODY);
	ret = loop_add(api->loop, &conn->src, fd, EPOLLIN, on_conn_event);
	if (ret < 0) {
		free(conn);
		return ret;
	}
	conn->next = api->conns;
	if (api->conns)
		api->conns->prev = conn;
	api->conns = conn;
	api->nr_conns++;
	tick_start(api);
	return 0;
}

/* Past its deadline: a request begun too long ago, or nothing for too long. */
static bool conn_expired(const struct api_conn *conn, uint64_t now)
{
	const struct api *api = conn->api;

	if (conn->request_start_ms && now - conn->request_start_ms >= api->request_timeout_ms)
		return true;
	return now - conn->last_activity_ms >= api->idle_timeout_ms;
}

/* Tell a client mid-request why, then hang up; the hang-up frees it. */
static void conn_time_out(struct api_conn *conn)
{
	struct http_buf msg = { 0 };

	if (conn->request_start_ms && !conn->out.len &&
	    !api_write_error(&msg, 408, "request not completed in time", NULL, false))
		(void)send(conn->src.fd, msg.data, msg.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	http_buf_free(&msg);
	shutdown(conn->src.fd, SHUT_RDWR);
	conn->timed_out = true;
}

/* ---- accepting ---- */

static void accept_pause(struct api *api)
{
	if (api->accept_paused || loop_modify(api->loop, &api->listener, 0) < 0)
		return;
	api->accept_paused = true;
	tick_start(api);
}

static void accept_resume(struct api *api)
{
	if (api->accept_paused && loop_modify(api->loop, &api->listener, EPOLLIN) == 0)
		api->accept_paused = false;
}

/* Over the connection limit: say so, best effort, and hang up. */
static void refuse_connection(int fd)
{
	struct http_buf msg = { 0 };

	if (!api_write_error(&msg, 503, "too many API connections", NULL, false))
		(void)send(fd, msg.data, msg.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	http_buf_free(&msg);
	close(fd);
}

static void on_listener_event(struct loop_source *src, uint32_t events)
{
	struct api *api = container_of(src, struct api, listener);

	for (int i = 0; i < API_ACCEPT_BATCH; i++) {
		int fd = accept4(src->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			log_ratelimited(LOG_WARN, "api: %s: accept: %s", api->socket_path,
					strerror(errno));
			/* Out of descriptors or memory: the listener stays
			 * readable, so stop polling it for a while. */
			accept_pause(api);
			return;
		}
		if (api->nr_conns >= API_MAX_CONNECTIONS) {
			log_ratelimited(LOG_WARN, "api: %s: over %d connections, refusing one",
					api->socket_path, API_MAX_CONNECTIONS);
			refuse_connection(fd);
		} else if (conn_new(api, fd) < 0) {
			log_ratelimited(LOG_WARN, "api: %s: cannot set up a connection",
					api->socket_path);
			close(fd);
		}
	}
}

static void on_tick(struct loop_timer *t)
{
	struct api *api = container_of(t, struct api, tick);
	uint64_t now = mono_ms();

	accept_resume(api);
	for (struct api_conn *conn = api->conns; conn; conn = conn->next)
		if (!conn->timed_out && conn_expired(conn, now))
			conn_time_out(conn);
	if (!api->nr_conns && !api->accept_paused)
		tick_stop(api);
}

/* ---- the socket file ---- */

static int socket_address(const char *path, struct sockaddr_un *addr)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (!*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(addr->sun_path))
		return -ENAMETOOLONG;
	strcpy(addr->sun_path, path);
	return 0;
}

/* Is a server accepting connections on the socket file at addr? */
static int socket_is_live(const struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int ret;

	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	ret = ret == 0 || errno == EAGAIN ? 1 : errno == ECONNREFUSED ? 0 : -errno;
	close(fd);
	return ret;
}

/* Make way for our socket: remove a stale socket file, nothing else. */
static int remove_stale_socket(const char *path, const struct sockaddr_un *addr)
{
	struct stat st;
	int live;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_err("api: %s exists and is not a socket; not replacing it", path);
		return -EEXIST;
	}
	live = socket_is_live(addr);
	if (live < 0) {
		log_err("api: cannot probe the existing socket %s: %s", path, strerror(-live));
		return live;
	}
	if (live) {
		log_err("api: %s is in use by another server", path);
		return -EADDRINUSE;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	log_info("api: removed the stale socket %s", path);
	return 0;
}

/* Bind, restrict to the owner, then listen: nobody can connect before the
 * mode is set. */
static int open_listener(struct api *api)
{
	struct sockaddr_un addr;
	struct stat st;
	int fd, ret;

	ret = socket_address(api->socket_path, &addr);
	if (!ret)
		ret = remove_stale_socket(api->socket_path, &addr);
	if (ret < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (chmod(api->socket_path, 0600) < 0 || stat(api->socket_path, &st) < 0 ||
	    listen(fd, API_LISTEN_BACKLOG) < 0) {
		ret = -errno;
		unlink(api->socket_path);
		close(fd);
		return ret;
	}
	api->socket_dev = st.st_dev;
	api->socket_ino = st.st_ino;
	ret = loop_add(api->loop, &api->listener, fd, EPOLLIN, on_listener_event);
	if (ret < 0) {
		unlink(api->socket_path);
		close(fd);
		return ret;
	}
	api->listening = true;
	return 0;
}

/* Remove the socket file unless someone has replaced it since. */
static void remove_own_socket(const struct api *api)
{
	struct stat st;

	if (stat(api->socket_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == api->socket_dev && st.st_ino == api->socket_ino)
		unlink(api->socket_path);
}

/* ---- the API ---- */

struct api *api_new(struct loop *loop, const char *socket_path)
{
	struct api *api = calloc(1, sizeof(*api));
	int ret = -ENOMEM;

	if (!api)
		goto fail;
	api->loop = loop;
	api->idle_timeout_ms = API_IDLE_TIMEOUT_MS;
	api->request_timeout_ms = API_REQUEST_TIMEOUT_MS;
	api->router = api_router_new();
	api->socket_path = strdup(socket_path);
	if (!api->router || !api->socket_path)
		goto fail;
	ret = loop_timer_add(loop, &api->tick, on_tick);
	if (ret < 0)
		goto fail;
	api->tick_added = true;
	ret = open_listener(api);
	if (ret < 0)
		goto fail;
	return api;
fail:
	log_err("api: cannot listen on %s: %s", socket_path, strerror(-ret));
	api_free(api);
	errno = -ret;
	return NULL;
}

int api_route(struct api *api, const char *method, const char *path, api_handler fn, void *ctx)
{
	return api_router_add(api->router, method, path, fn, ctx);
}

void api_set_timeouts(struct api *api, unsigned idle_ms, unsigned request_ms)
{
	if (idle_ms)
		api->idle_timeout_ms = idle_ms;
	if (request_ms)
		api->request_timeout_ms = request_ms;
	if (api->tick_armed) {
		tick_stop(api);
		tick_start(api);
	}
}

void api_free(struct api *api)
{
	if (!api)
		return;
	while (api->conns) {
		(void)conn_flush(api->conns); /* a last answer, e.g. to "stop" */
		conn_free(api->conns);
	}
	if (api->listening) {
		loop_del(api->loop, &api->listener);
		close(api->listener.fd);
		remove_own_socket(api);
	}
	if (api->tick_added)
		loop_timer_del(api->loop, &api->tick);
	api_router_free(api->router);
	free(api->socket_path);
	free(api);
}
