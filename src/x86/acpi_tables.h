/* ACPI table layouts (ACPI 6.x spec, sections 5.2.5 to 5.2.12) that hvmm
 * generates: RSDP, XSDT, FADT (hardware-reduced), MADT. */
#ifndef HVMM_ACPI_TABLES_H
#define HVMM_ACPI_TABLES_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

struct acpi_rsdp {
	char signature[8]; /* "RSD PTR " */
	uint8_t checksum;  /* first 20 bytes */
	char oem_id[6];
	uint8_t revision; /* 2 */
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));
static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP size");

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
static_assert(sizeof(struct acpi_header) == 36, "SDT header size");

/* Generic Address Structure. */
struct acpi_gas {
	uint8_t space_id; /* 1 = system I/O */
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size; /* 1 = byte */
	uint64_t address;
} __attribute__((packed));
static_assert(sizeof(struct acpi_gas) == 12, "GAS size");

#define ACPI_GAS_IO 1

#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)
#define FADT_BOOT_VGA_NOT_PRESENT (1u << 2)
#define FADT_BOOT_CMOS_RTC_NOT_PRESENT (1u << 5)

struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} __attribute__((packed));
static_assert(sizeof(struct acpi_fadt) == 276, "FADT size");
static_assert(offsetof(struct acpi_fadt, reset_reg) == 116, "FADT reset_reg");
static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT x_dsdt");
static_assert(offsetof(struct acpi_fadt, sleep_control_reg) == 244, "FADT sleep_control");

struct acpi_madt {
	struct acpi_header h;
	uint32_t lapic_address;
	uint32_t flags;
} __attribute__((packed));
static_assert(sizeof(struct acpi_madt) == 44, "MADT size");

#define MADT_TYPE_LAPIC 0
#define MADT_TYPE_IOAPIC 1

struct madt_lapic {
	uint8_t type, length, processor_id, apic_id;
	uint32_t flags; /* bit 0: enabled */
} __attribute__((packed));
static_assert(sizeof(struct madt_lapic) == 8, "MADT LAPIC size");

struct madt_ioapic {
	uint8_t type, length, ioapic_id, reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));
static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC size");

#endif
