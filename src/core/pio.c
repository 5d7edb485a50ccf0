#include "core/pio.h"

#include <errno.h>
#include <string.h>

int pio_register(struct pio_bus *bus, uint16_t base, uint16_t len, pio_fn fn, void *opaque)
{
	uint32_t end = (uint32_t)base + len;

	if (!len || end > 0x10000)
		return -EINVAL;
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct pio_region *r = &bus->r[i];
		if (base < (uint32_t)r->base + r->len && r->base < end)
			return -EBUSY;
	}
	if (bus->nr == PIO_MAX_REGIONS)
		return -ENOSPC;
	bus->r[bus->nr++] = (struct pio_region){ .base = base, .len = len, .fn = fn, .opaque = opaque };
	return 0;
}

bool pio_dispatch(const struct pio_bus *bus, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct pio_region *r = &bus->r[i];
		if (port >= r->base && port - r->base < r->len) {
			r->fn(r->opaque, port, data, size, is_write);
			return true;
		}
	}
	if (!is_write)
		memset(data, 0xff, size);
	return false;
}
