/* Unit tests for core/loop: fd sources, timers, deferred calls, stopping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* Deferred calls: run once each, in order, after the callback that queued
 * them and before the loop waits again; one queued by a deferred call runs
 * too; a cancelled one never runs. */
struct deferrer {
	struct loop_source src;
	struct loop *loop;
	struct loop_defer a, b, c, gone;
	char order[8];
	int n;
};

static void note(struct deferrer *t, char what)
{
	if (t->n < (int)sizeof(t->order) - 1)
		t->order[t->n++] = what;
}

static void on_a(struct loop_defer *d)
{
	struct deferrer *t = container_of(d, struct deferrer, a);

	note(t, 'a');
	loop_defer(t->loop, &t->c); /* queued from a deferred call */
}

static void on_b(struct loop_defer *d)
{
	note(container_of(d, struct deferrer, b), 'b');
}

static void on_c(struct loop_defer *d)
{
	struct deferrer *t = container_of(d, struct deferrer, c);

	note(t, 'c');
	loop_stop(t->loop);
}

static void on_gone(struct loop_defer *d)
{
	note(container_of(d, struct deferrer, gone), 'x');
}

static void on_kick(struct loop_source *src, uint32_t events)
{
	struct deferrer *t = container_of(src, struct deferrer, src);
	eventfd_t v;

	eventfd_read(src->fd, &v);
	note(t, 'k');
	loop_defer(t->loop, &t->a);
	loop_defer(t->loop, &t->gone);
	loop_defer(t->loop, &t->b);
	loop_defer(t->loop, &t->a); /* already queued: once */
	loop_defer_cancel(t->loop, &t->gone);
	assert_int_equal(t->n, 1); /* nothing runs inside the callback */
}

static void deferred_calls(void **state)
{
	struct loop *l = loop_new();
	struct deferrer t = { .loop = l };
	int fd = eventfd(0, EFD_NONBLOCK);

	t.a.fn = on_a;
	t.b.fn = on_b;
	t.c.fn = on_c;
	t.gone.fn = on_gone;
	assert_int_equal(loop_add(l, &t.src, fd, EPOLLIN, on_kick), 0);
	eventfd_write(fd, 1);
	/* Nothing else wakes the loop: it returns only if the deferred calls
	 * ran before it waited again (c stops it). */
	assert_int_equal(loop_run(l), 0);
	assert_string_equal(t.order, "kabc");
	loop_del(l, &t.src);
	close(fd);
	loop_free(l);
}

/* Cancelling the last of several queued calls keeps the queue usable. */
static void defer_cancel_tail(void **state)
{
	struct loop *l = loop_new();
	struct deferrer t = { .loop = l };

	t.b.fn = on_b;
	t.c.fn = on_c;
	t.gone.fn = on_gone;
	loop_defer(l, &t.b);
	loop_defer(l, &t.gone);
	loop_defer_cancel(l, &t.gone);
	loop_defer(l, &t.c); /* appended after b, where gone was */
	assert_int_equal(loop_run(l), 0);
	assert_string_equal(t.order, "bc");
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(eventfd_source),
		cmocka_unit_test(periodic_timer),
		cmocka_unit_test(add_bad_fd),
		cmocka_unit_test(deferred_calls),
		cmocka_unit_test(defer_cancel_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
