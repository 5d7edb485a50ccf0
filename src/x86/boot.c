#include "x86/boot.h"

#include "x86/acpi.h"

#include <errno.h>
#include <string.h>

int bzimage_parse(const uint8_t *data, size_t size, struct bzimage *img, const char **why)
{
	struct setup_header h;
	size_t setup_sects;

	if (size < 0x1f1 + sizeof(h)) {
		*why = "file too small to be a bzImage";
		return -ENOEXEC;
	}
	memcpy(&h, data + 0x1f1, sizeof(h));
	if (h.boot_flag != BOOT_FLAG_MAGIC || h.header != BOOT_HDR_MAGIC) {
		*why = "not a bzImage (no boot sector or HdrS signature)";
		return -ENOEXEC;
	}
	if (h.version < BOOT_MIN_VERSION || !(h.xloadflags & XLF_KERNEL_64)) {
		*why = "kernel too old: boot protocol 2.12 with a 64-bit entry point is required";
		return -ENOEXEC;
	}
	if (!(h.loadflags & LOADFLAG_LOADED_HIGH)) {
		*why = "zImage kernels (loaded low) are not supported";
		return -ENOEXEC;
	}
	setup_sects = h.setup_sects ? h.setup_sects : 4;
	img->kernel_off = (setup_sects + 1) * 512;
	if (img->kernel_off >= size) {
		*why = "bzImage truncated: no protected-mode kernel after the setup code";
		return -ENOEXEC;
	}
	img->data = data;
	img->size = size;
	img->hdr = h;
	img->kernel_size = size - img->kernel_off;
	return 0;
}

static unsigned e820_add(struct e820_entry *e, unsigned n, unsigned max, uint64_t addr,
			 uint64_t size, uint32_t type)
{
	if (n < max && size)
		e[n++] = (struct e820_entry){ .addr = addr, .size = size, .type = type };
	return n;
}

unsigned boot_e820(const struct guest_mem *gm, struct e820_entry *e, unsigned max)
{
	uint64_t low_end = gm->range[0].size;
	unsigned n = 0;

	n = e820_add(e, n, max, 0, BOOT_EBDA_START, E820_RAM);
	n = e820_add(e, n, max, BOOT_EBDA_START, 0xa0000 - BOOT_EBDA_START, E820_RESERVED);
	n = e820_add(e, n, max, BOOT_BIOS_START, BOOT_HIGH_START - BOOT_BIOS_START, E820_RESERVED);
	if (low_end > BOOT_HIGH_START)
		n = e820_add(e, n, max, BOOT_HIGH_START, low_end - BOOT_HIGH_START, E820_RAM);
	for (unsigned i = 1; i < gm->nr_ranges; i++)
		n = e820_add(e, n, max, gm->range[i].gpa, gm->range[i].size, E820_RAM);
	return n;
}

/* Flat GDT: null, null, 64-bit code at BOOT_CS, data at BOOT_DS. */
static void write_gdt(struct guest_mem *gm)
{
	static const uint64_t gdt[4] = { 0, 0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL };

	guest_mem_write(gm, BOOT_GDT_ADDR, gdt, sizeof(gdt));
}

/* Identity map the first 4 GiB with 2 MiB pages: enough for the kernel's
 * 64-bit entry, which only needs the loaded image, zero page and command
 * line mapped. */
static void write_page_tables(struct guest_mem *gm)
{
	uint64_t *pml4 = guest_mem_ptr(gm, BOOT_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(gm, BOOT_PML4_ADDR + 0x1000, 4096);
	uint64_t *pd = guest_mem_ptr(gm, BOOT_PML4_ADDR + 0x2000, 4 * 4096);

	memset(pml4, 0, 6 * 4096);
	pml4[0] = (BOOT_PML4_ADDR + 0x1000) | 0x3; /* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PML4_ADDR + 0x2000 + i * 0x1000) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
}

/* There is no firmware, but Linux may still "reboot through the BIOS": on
 * a hardware-reduced ACPI machine it picks the EFI method, finds no EFI and
 * falls back to jumping to the real-mode reset vector F000:FFF0. Put there
 * what firmware would do: write the ACPI reset register. */
static void write_reset_vector(struct guest_mem *gm)
{
	static const uint8_t stub[] = {
		0xb0, ACPI_RESET_VALUE,                         /* mov al, value */
		0xba, ACPI_RESET_PORT & 0xff, ACPI_RESET_PORT >> 8, /* mov dx, port */
		0xee,                                           /* out dx, al */
		0xf4,                                           /* hlt */
		0xeb, 0xfd,                                     /* jmp back to hlt */
	};

	guest_mem_write(gm, BOOT_RESET_VECTOR, stub, sizeof(stub));
}

int boot_setup_linux(struct guest_mem *gm, const struct boot_setup *bs, struct boot_entry *entry,
		     const char **why)
{
	const struct bzimage *k = bs->kernel;
	struct boot_params *bp;
	uint64_t low_end = gm->range[0].size, initrd_addr = 0, kernel_end, max_cmdline;
	size_t cmdline_len = strlen(bs->cmdline);

	/* The decompressor relocates itself to pref_address and needs
	 * init_size bytes there; refuse a memory size it cannot fit in. */
	kernel_end = (k->hdr.pref_address > BOOT_KERNEL_ADDR ? k->hdr.pref_address : BOOT_KERNEL_ADDR) +
		     (k->hdr.init_size > k->kernel_size ? k->hdr.init_size : k->kernel_size);
	if (kernel_end > low_end) {
		*why = "not enough memory to decompress this kernel";
		return -ENOMEM;
	}
	max_cmdline = k->hdr.cmdline_size ? k->hdr.cmdline_size : 255;
	if (max_cmdline > BOOT_CMDLINE_MAX - 1)
		max_cmdline = BOOT_CMDLINE_MAX - 1;
	if (cmdline_len > max_cmdline) {
		*why = "kernel command line longer than the kernel accepts";
		return -E2BIG;
	}
	if (bs->initrd_size) {
		uint64_t top = low_end;

		if (k->hdr.initrd_addr_max && top > (uint64_t)k->hdr.initrd_addr_max + 1)
			top = (uint64_t)k->hdr.initrd_addr_max + 1;
		if (bs->initrd_size > top || ((top - bs->initrd_size) & ~0xfffULL) < kernel_end) {
			*why = "not enough memory below the kernel's initrd limit for the initrd";
			return -ENOMEM;
		}
		initrd_addr = (top - bs->initrd_size) & ~0xfffULL;
		guest_mem_write(gm, initrd_addr, bs->initrd, bs->initrd_size);
	}

	guest_mem_write(gm, BOOT_KERNEL_ADDR, k->data + k->kernel_off, k->kernel_size);
	guest_mem_write(gm, BOOT_CMDLINE_ADDR, bs->cmdline, cmdline_len + 1);
	write_gdt(gm);
	write_page_tables(gm);
	write_reset_vector(gm);

	bp = guest_mem_ptr(gm, BOOT_ZERO_PAGE, sizeof(*bp));
	memset(bp, 0, sizeof(*bp));
	bp->hdr = k->hdr;
	bp->hdr.type_of_loader = 0xff; /* "undefined" boot loader */
	bp->hdr.loadflags |= LOADFLAG_CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.vid_mode = 0xffff; /* "normal" */
	bp->hdr.cmd_line_ptr = BOOT_CMDLINE_ADDR;
	bp->hdr.ramdisk_image = (uint32_t)initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)bs->initrd_size;
	bp->hdr.code32_start = BOOT_KERNEL_ADDR;
	bp->acpi_rsdp_addr = bs->rsdp_addr;
	bp->e820_entries = (uint8_t)boot_e820(gm, bp->e820_table, E820_MAX_ENTRIES);

	entry->rip = BOOT_KERNEL_ADDR + 0x200; /* the 64-bit entry point */
	entry->rsi = BOOT_ZERO_PAGE;
	entry->rsp = BOOT_STACK_TOP;
	entry->cr3 = BOOT_PML4_ADDR;
	return 0;
}
