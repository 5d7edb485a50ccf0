/* Power and reset: the hardware-reduced ACPI sleep control register (S5 =
 * power off), the FADT reset register, the keyboard controller's reset
 * pulse, and the POST port that Linux writes for I/O delays. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "util/log.h"
#include "x86/acpi.h"

#define KBC_STATUS_PORT 0x64
#define KBC_PULSE_RESET 0xfe
#define POST_PORT 0x80

static void sleep_ctl(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	struct vm *vm = opaque;
	unsigned slp_typ = (data[0] >> 2) & 7;

	if (!is_write) {
		memset(data, 0, size);
		return;
	}
	if (port != ACPI_SLEEP_CONTROL_PORT || !(data[0] & ACPI_SLP_EN))
		return;
	if (slp_typ == ACPI_SLP_TYP_S5)
		vm_request_stop(vm, VM_STOP_POWEROFF);
	else
		log_ratelimited(LOG_WARN, "guest asked for unsupported sleep type %u", slp_typ);
}

static void reset_reg(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	if (!is_write)
		memset(data, 0, size);
	else if (data[0] == ACPI_RESET_VALUE) {
		log_ratelimited(LOG_INFO, "the guest wrote the ACPI reset register");
		vm_request_stop(opaque, VM_STOP_REBOOT);
	}
}

/* Reads as "input buffer empty" so Linux's keyboard-reset path proceeds. */
static void kbc(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	if (!is_write)
		memset(data, 0, size);
	else if (data[0] == KBC_PULSE_RESET) {
		log_ratelimited(LOG_INFO, "the guest pulsed the keyboard controller's reset line");
		vm_request_stop(opaque, VM_STOP_REBOOT);
	}
}

static void post(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	if (!is_write)
		memset(data, 0xff, size);
}

static int acpi_pm_init(struct vm *vm, void **state)
{
	int ret = pio_register(&vm->pio, ACPI_SLEEP_CONTROL_PORT, 2, sleep_ctl, vm);

	if (!ret)
		ret = pio_register(&vm->pio, ACPI_RESET_PORT, 1, reset_reg, vm);
	if (!ret)
		ret = pio_register(&vm->pio, KBC_STATUS_PORT, 1, kbc, vm);
	if (!ret)
		ret = pio_register(&vm->pio, POST_PORT, 1, post, vm);
	*state = NULL;
	return ret;
}

static void acpi_pm_exit(struct vm *vm, void *state)
{
}

const struct vm_device acpi_pm_device = {
	.name = "acpi-pm",
	.init = acpi_pm_init,
	.exit = acpi_pm_exit,
};
