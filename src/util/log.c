#include "util/clock.h"
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

enum log_level log_threshold = LOG_INFO;

static const char *const level_name[] = { "error", "warning", "info", "debug" };

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (lvl > log_threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line so lines from different threads never mix. */
	fprintf(stderr, "hvmm: %s: %s\n", level_name[lvl], line);
}

bool log_ratelimit_allow(struct log_ratelimit *rl)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	uint64_t now = mono_ms();
	unsigned dropped = 0;
	bool ok;

	pthread_mutex_lock(&lock);
	if (now - rl->window_start_ms >= 5000) {
		dropped = rl->suppressed;
		rl->window_start_ms = now;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	ok = rl->printed < 10;
	if (ok)
		rl->printed++;
	else
		rl->suppressed++;
	pthread_mutex_unlock(&lock);
	if (dropped)
		log_msg(LOG_WARN, "%u similar messages suppressed", dropped);
	return ok;
}
