/* Unit tests for core/loop: fd sources, timers, stopping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/loop.h"

struct counter {
	struct loop_source src;
	struct loop *loop;
	int hits;
	int stop_after;
};

static void on_event(struct loop_source *src, uint32_t events)
{
	struct counter *c = container_of(src, struct counter, src);
	eventfd_t v;

	eventfd_read(src->fd, &v);
	c->hits += (int)v;
	if (c->hits >= c->stop_after)
		loop_stop(c->loop);
}

static void eventfd_source(void **state)
{
	struct loop *l = loop_new();
	struct counter c = { .loop = l, .stop_after = 3 };
	int fd = eventfd(0, EFD_NONBLOCK);

	assert_int_equal(loop_add(l, &c.src, fd, EPOLLIN, on_event), 0);
	eventfd_write(fd, 3);
	assert_int_equal(loop_run(l), 0);
	assert_int_equal(c.hits, 3);
	loop_del(l, &c.src);
	close(fd);
	loop_free(l);
}

struct ticker {
	struct loop_timer t;
	struct loop *loop;
	int ticks;
};

static void on_tick(struct loop_timer *t)
{
	struct ticker *k = container_of(t, struct ticker, t);

	if (++k->ticks == 3)
		loop_stop(k->loop);
}

static void periodic_timer(void **state)
{
	struct loop *l = loop_new();
	struct ticker k = { .loop = l };
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(loop_timer_add(l, &k.t, on_tick), 0);
	assert_int_equal(loop_timer_arm(&k.t, 10, 10), 0);
	assert_int_equal(loop_run(l), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_int_equal(k.ticks, 3);
	/* Three expiries, 10 ms apart, cannot take less than 30 ms. */
	assert_true((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) >= 30000000L);
	loop_timer_del(l, &k.t);
	loop_free(l);
}

static void add_bad_fd(void **state)
{
	struct loop *l = loop_new();
	struct counter c;

	assert_true(loop_add(l, &c.src, -1, EPOLLIN, on_event) < 0);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(eventfd_source),
		cmocka_unit_test(periodic_timer),
		cmocka_unit_test(add_bad_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
