#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct loop {
	int epfd;
	bool stop;
	struct loop_defer *defer_head, **defer_tail; /* FIFO */
};

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	l->defer_tail = &l->defer_head;
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l);
}

int loop_add(struct loop *l, struct loop_source *src, int fd, uint32_t events, loop_fn fn)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	src->fd = fd;
	src->fn = fn;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int loop_modify(struct loop *l, struct loop_source *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0)
		return -errno;
	return 0;
}

void loop_del(struct loop *l, struct loop_source *src)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, src->fd, NULL);
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}

void loop_defer(struct loop *l, struct loop_defer *d)
{
	if (d->queued)
		return;
	d->queued = true;
	d->next = NULL;
	*l->defer_tail = d;
	l->defer_tail = &d->next;
}

void loop_defer_cancel(struct loop *l, struct loop_defer *d)
{
	struct loop_defer **p = &l->defer_head;

	if (!d->queued)
		return;
	while (*p != d)
		p = &(*p)->next;
	*p = d->next;
	if (l->defer_tail == &d->next)
		l->defer_tail = p;
	d->queued = false;
}

/* Run the deferred calls, including those they queue. */
static void run_deferred(struct loop *l)
{
	while (l->defer_head && !l->stop) {
		struct loop_defer *d = l->defer_head;

		l->defer_head = d->next;
		if (!l->defer_head)
			l->defer_tail = &l->defer_head;
		d->queued = false;
		d->fn(d);
	}
}

int loop_run(struct loop *l)
{
	struct epoll_event ev[16];

	l->stop = false;
	run_deferred(l); /* queued before the loop ran */
	while (!l->stop) {
		int n = epoll_wait(l->epfd, ev, 16, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			struct loop_source *src = ev[i].data.ptr;
			src->fn(src, ev[i].events);
			run_deferred(l);
		}
	}
	return 0;
}

static void timer_ready(struct loop_source *src, uint32_t events)
{
	struct loop_timer *t = container_of(src, struct loop_timer, src);
	uint64_t expirations;

	if (read(src->fd, &expirations, sizeof(expirations)) == sizeof(expirations))
		t->fn(t);
}

int loop_timer_add(struct loop *l, struct loop_timer *t, void (*fn)(struct loop_timer *t))
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	t->fn = fn;
	ret = loop_add(l, &t->src, fd, EPOLLIN, timer_ready);
	if (ret < 0)
		close(fd);
	return ret;
}

int loop_timer_arm(struct loop_timer *t, uint64_t first_ms, uint64_t period_ms)
{
	struct itimerspec its = {
		.it_value = { .tv_sec = first_ms / 1000, .tv_nsec = (first_ms % 1000) * 1000000 },
		.it_interval = { .tv_sec = period_ms / 1000, .tv_nsec = (period_ms % 1000) * 1000000 },
	};

	/* A zero it_value disarms; the caller asked for "now". */
	if (!first_ms)
		its.it_value.tv_nsec = 1;
	if (timerfd_settime(t->src.fd, 0, &its, NULL) < 0)
		return -errno;
	return 0;
}

void loop_timer_disarm(struct loop_timer *t)
{
	struct itimerspec off = { 0 };

	timerfd_settime(t->src.fd, 0, &off, NULL);
}

void loop_timer_del(struct loop *l, struct loop_timer *t)
{
	loop_del(l, &t->src);
	close(t->src.fd);
}
