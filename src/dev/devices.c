/* Every device of the machine, in initialisation order. Adding a device is
 * one file and one line here. */
#include "core/vm.h"

extern const struct vm_device acpi_pm_device;
extern const struct vm_device cmos_device;
extern const struct vm_device serial_device;

const struct vm_device *const vm_devices[] = {
	&acpi_pm_device,
	&cmos_device,
	&serial_device,
	NULL,
};
