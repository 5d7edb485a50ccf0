/* Logging to stderr. Anything a guest can trigger must use log_ratelimited(). */
#ifndef HVMM_LOG_H
#define HVMM_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Per-call-site token bucket: a burst of 10, then one message per second. */
struct log_ratelimit {
	uint64_t window_start_ms;
	unsigned printed;
	unsigned suppressed;
};
bool log_ratelimit_allow(struct log_ratelimit *rl);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#define log_ratelimited(lvl, ...)                                   \
	do {                                                        \
		static struct log_ratelimit rl_;                    \
		if ((lvl) <= log_threshold && log_ratelimit_allow(&rl_)) \
			log_msg((lvl), __VA_ARGS__);                \
	} while (0)

#endif
