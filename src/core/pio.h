/* The port I/O bus: devices claim port ranges before the vCPUs start; a vCPU
 * thread dispatches KVM_EXIT_IO to the owner. Handlers run on vCPU threads
 * and must only update device state and hand slow work to the event loop. */
#ifndef HVMM_PIO_H
#define HVMM_PIO_H

#include <stdbool.h>
#include <stdint.h>

#define PIO_MAX_REGIONS 32

/* data holds `size` bytes (1, 2 or 4); for reads the handler fills it. */
typedef void (*pio_fn)(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write);

struct pio_region {
	uint16_t base;
	uint16_t len;
	pio_fn fn;
	void *opaque;
};

struct pio_bus {
	unsigned nr;
	struct pio_region r[PIO_MAX_REGIONS];
};

/* -EBUSY if the range overlaps a claimed one, -ENOSPC if the bus is full. */
int pio_register(struct pio_bus *bus, uint16_t base, uint16_t len, pio_fn fn, void *opaque);

/* Returns false if no device claims the port (reads then return all ones). */
bool pio_dispatch(const struct pio_bus *bus, uint16_t port, uint8_t *data, unsigned size, bool is_write);

#endif
