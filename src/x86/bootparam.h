/* The Linux x86 boot protocol (Documentation/arch/x86/boot.rst and
 * zero-page.rst): the setup header in a bzImage and the boot_params "zero
 * page" a loader fills in. Only the fields hvmm reads or writes are named. */
#ifndef HVMM_BOOTPARAM_H
#define HVMM_BOOTPARAM_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define BOOT_HDR_MAGIC 0x53726448 /* "HdrS" */
#define BOOT_FLAG_MAGIC 0xAA55
#define BOOT_MIN_VERSION 0x020c    /* 2.12: xloadflags and the 64-bit entry */

#define LOADFLAG_LOADED_HIGH 0x01
#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x0001

struct setup_header {
	uint8_t setup_sects;
	uint16_t root_flags;
	uint32_t syssize;
	uint16_t ram_size;
	uint16_t vid_mode;
	uint16_t root_dev;
	uint16_t boot_flag;
	uint16_t jump;
	uint32_t header;
	uint16_t version;
	uint32_t realmode_swtch;
	uint16_t start_sys_seg;
	uint16_t kernel_version;
	uint8_t type_of_loader;
	uint8_t loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start;
	uint32_t ramdisk_image;
	uint32_t ramdisk_size;
	uint32_t bootsect_kludge;
	uint16_t heap_end_ptr;
	uint8_t ext_loader_ver;
	uint8_t ext_loader_type;
	uint32_t cmd_line_ptr;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable_kernel;
	uint8_t min_alignment;
	uint16_t xloadflags;
	uint32_t cmdline_size;
	uint32_t hardware_subarch;
	uint64_t hardware_subarch_data;
	uint32_t payload_offset;
	uint32_t payload_length;
	uint64_t setup_data;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t handover_offset;
	uint32_t kernel_info_offset;
} __attribute__((packed));
static_assert(sizeof(struct setup_header) == 0x26c - 0x1f1, "setup_header size");
static_assert(offsetof(struct setup_header, header) == 0x202 - 0x1f1, "header offset");
static_assert(offsetof(struct setup_header, pref_address) == 0x258 - 0x1f1, "pref_address");

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_MAX_ENTRIES 128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
static_assert(sizeof(struct e820_entry) == 20, "e820_entry size");

struct boot_params {
	uint8_t _pad0[0x070];
	uint64_t acpi_rsdp_addr; /* 0x070, boot protocol 2.14 */
	uint8_t _pad1[0x1e8 - 0x078];
	uint8_t e820_entries; /* 0x1e8 */
	uint8_t _pad2[0x1f1 - 0x1e9];
	struct setup_header hdr; /* 0x1f1 */
	uint8_t _pad3[0x2d0 - 0x26c];
	struct e820_entry e820_table[E820_MAX_ENTRIES]; /* 0x2d0 */
	uint8_t _pad4[0x1000 - 0xcd0];
} __attribute__((packed));
static_assert(sizeof(struct boot_params) == 4096, "boot_params size");
static_assert(offsetof(struct boot_params, hdr) == 0x1f1, "hdr offset");
static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820 offset");

#endif
