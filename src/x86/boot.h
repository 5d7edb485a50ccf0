/* Direct Linux boot: the 64-bit boot protocol. Parses a bzImage, places the
 * kernel, initrd, command line, zero page, e820 map, GDT and identity page
 * tables in guest RAM, and says where the boot CPU starts. */
#ifndef HVMM_BOOT_H
#define HVMM_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/guest_mem.h"
#include "x86/bootparam.h"

/* Fixed low-memory layout, all below the real-mode trampoline area Linux uses. */
#define BOOT_GDT_ADDR 0x500
#define BOOT_ZERO_PAGE 0x7000
#define BOOT_STACK_TOP 0x8ff0
#define BOOT_PML4_ADDR 0x9000 /* then PDPT at 0xa000 and 4 PDs at 0xb000.. */
#define BOOT_CMDLINE_ADDR 0x20000
#define BOOT_CMDLINE_MAX 4096
#define BOOT_EBDA_START 0x9fc00
#define BOOT_BIOS_START 0xe0000 /* ACPI tables live in 0xe0000-0xfffff */
#define BOOT_RESET_VECTOR 0xffff0
#define BOOT_HIGH_START 0x100000
#define BOOT_KERNEL_ADDR 0x100000 /* where the protected-mode kernel is loaded */

#define BOOT_CS 0x10
#define BOOT_DS 0x18

struct bzimage {
	const uint8_t *data;
	size_t size;
	struct setup_header hdr;
	size_t kernel_off;  /* file offset of the protected-mode kernel */
	size_t kernel_size;
};

/* Validate a bzImage held in memory. On error returns -EINVAL/-ENOEXEC and
 * points *why at a message for the user. */
int bzimage_parse(const uint8_t *data, size_t size, struct bzimage *img, const char **why);

struct boot_setup {
	const struct bzimage *kernel;
	const uint8_t *initrd;
	size_t initrd_size;
	const char *cmdline;
	uint64_t rsdp_addr;
};

struct boot_entry {
	uint64_t rip;
	uint64_t rsi; /* zero page */
	uint64_t rsp;
	uint64_t cr3;
};

/* Fill the e820 table for this memory layout; returns the entry count. */
unsigned boot_e820(const struct guest_mem *gm, struct e820_entry *e, unsigned max);

/* Place everything in guest RAM. -ENOMEM/-E2BIG with *why on failure. */
int boot_setup_linux(struct guest_mem *gm, const struct boot_setup *bs, struct boot_entry *entry,
		     const char **why);

#endif
