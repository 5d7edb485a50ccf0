/* The VM's event loop: one epoll set, run by one thread. Sources are file
 * descriptors (eventfds, timerfds, sockets, signalfds); a source's callback
 * runs on the loop thread only. */
#ifndef HVMM_LOOP_H
#define HVMM_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct loop_source;

typedef void (*loop_fn)(struct loop_source *src, uint32_t events);

/* Embed in the owner's struct; container_of() gets back to it. */
struct loop_source {
	int fd;
	loop_fn fn;
};

struct loop *loop_new(void);
void loop_free(struct loop *l);

int loop_add(struct loop *l, struct loop_source *src, int fd, uint32_t events, loop_fn fn);
int loop_modify(struct loop *l, struct loop_source *src, uint32_t events);
void loop_del(struct loop *l, struct loop_source *src);

/* Run callbacks until loop_stop(); returns 0 or a negative errno. */
int loop_run(struct loop *l);
/* Make loop_run() return after the current callback (loop thread only). */
void loop_stop(struct loop *l);

/* A deferred call: runs once on the loop thread after the callback that
 * queued it returns, before the loop waits again. Cheaper than an eventfd
 * (no system call) for work the loop thread hands to itself, such as
 * completions of requests it finished while handling another event.
 * Embed in the owner's struct; queueing one that is queued already does
 * nothing; cancel it before freeing the owner. */
struct loop_defer {
	struct loop_defer *next;
	bool queued;
	void (*fn)(struct loop_defer *d);
};
void loop_defer(struct loop *l, struct loop_defer *d);
void loop_defer_cancel(struct loop *l, struct loop_defer *d);

/* A one-shot or periodic timer on a timerfd. */
struct loop_timer {
	struct loop_source src;
	void (*fn)(struct loop_timer *t);
};
int loop_timer_add(struct loop *l, struct loop_timer *t, void (*fn)(struct loop_timer *t));
/* Arm: first expiry after `first_ms`, then every `period_ms` (0 = once). */
int loop_timer_arm(struct loop_timer *t, uint64_t first_ms, uint64_t period_ms);
void loop_timer_disarm(struct loop_timer *t);
void loop_timer_del(struct loop *l, struct loop_timer *t);

#ifndef container_of
#include <stddef.h>
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#endif
