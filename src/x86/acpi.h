/* ACPI tables generated at boot: RSDP, XSDT, a hardware-reduced FADT whose
 * sleep and reset registers land in dev/acpi_pm.c, the MADT, and the DSDT
 * compiled from x86/dsdt.asl. */
#ifndef HVMM_ACPI_H
#define HVMM_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "core/guest_mem.h"

#define ACPI_TABLES_GPA 0xe0000
#define ACPI_TABLES_MAX 0x1f000 /* the last page holds the reset vector */

/* Fixed I/O ports of the hardware-reduced ACPI registers. */
#define ACPI_SLEEP_CONTROL_PORT 0x600
#define ACPI_SLEEP_STATUS_PORT 0x601
#define ACPI_RESET_PORT 0xcf9
#define ACPI_RESET_VALUE 0x06
#define ACPI_SLP_TYP_S5 5 /* must match _S5 in dsdt.asl */
#define ACPI_SLP_EN 0x20

#define LAPIC_BASE 0xfee00000u
#define IOAPIC_BASE 0xfec00000u

/* Build all tables into buf (placed at guest address `gpa`), RSDP first.
 * Returns bytes used, or a negative errno if cap is too small. */
long acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned nr_cpus);

/* Build the tables into guest RAM at ACPI_TABLES_GPA; *rsdp gets its GPA. */
int acpi_install(struct guest_mem *gm, unsigned nr_cpus, uint64_t *rsdp);

uint8_t acpi_checksum(const void *p, size_t len);

#endif
