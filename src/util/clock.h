/* CLOCK_MONOTONIC in nanoseconds and milliseconds: for timeouts, rate
 * limits and elapsed-time counters. */
#ifndef HVMM_CLOCK_H
#define HVMM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t mono_ms(void)
{
	return mono_ns() / 1000000u;
}

#endif
