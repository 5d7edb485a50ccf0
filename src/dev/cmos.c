/* The CMOS at ports 0x70-0x71, without a running clock. The FADT says no
 * RTC is present, but Linux on x86 still reads the CMOS clock at boot and,
 * with nothing there (all ones, "update in progress" forever), retries for
 * seconds. So the clock reads as a stopped, valid 1970-01-01 00:00:00 and
 * the guest takes its time from the Hyper-V time-sync service instead, as
 * on a host with no RTC time of its own. Writes are ignored. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"

#define CMOS_INDEX_PORT 0x70
#define CMOS_DATA_PORT 0x71

struct cmos {
	uint8_t index;
};

static uint8_t cmos_register(uint8_t reg)
{
	switch (reg) {
	case 0x07: /* day of month, BCD */
	case 0x08: /* month */
		return 0x01;
	case 0x09: /* year */
		return 0x70;
	case 0x0a: /* status A: divider set, no update in progress */
		return 0x26;
	case 0x0b: /* status B: 24-hour, BCD, no interrupts */
		return 0x02;
	case 0x0d: /* status D: contents valid */
		return 0x80;
	case 0x32: /* century, BCD */
		return 0x19;
	default: /* seconds, minutes, hours, weekday, alarms, NVRAM */
		return 0x00;
	}
}

static void cmos_pio(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	struct cmos *c = opaque;

	if (port == CMOS_INDEX_PORT) {
		if (is_write)
			c->index = data[0] & 0x7f; /* bit 7 is the NMI mask */
		else
			memset(data, 0xff, size);
	} else if (!is_write) {
		memset(data, 0, size);
		data[0] = cmos_register(c->index);
	}
}

static int cmos_init(struct vm *vm, void **state)
{
	struct cmos *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	*state = c;
	return pio_register(&vm->pio, CMOS_INDEX_PORT, 2, cmos_pio, c);
}

static void cmos_exit(struct vm *vm, void *state)
{
	free(state);
}

const struct vm_device cmos_device = {
	.name = "cmos",
	.init = cmos_init,
	.exit = cmos_exit,
};
