/* Unit tests for x86/boot: bzImage validation and what the loader leaves in
 * guest RAM for the 64-bit entry point. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "x86/acpi.h"
#include "x86/boot.h"

#define IMG_SIZE (64 << 10)
#define RAM_SIZE (96ULL << 20)

static uint8_t *fake_bzimage(void)
{
	uint8_t *img = calloc(1, IMG_SIZE);
	struct setup_header h = { 0 };

	h.setup_sects = 3;
	h.boot_flag = BOOT_FLAG_MAGIC;
	h.header = BOOT_HDR_MAGIC;
	h.version = 0x020f;
	h.loadflags = LOADFLAG_LOADED_HIGH;
	h.xloadflags = XLF_KERNEL_64;
	h.initrd_addr_max = 0x7fffffff;
	h.cmdline_size = 2047;
	h.pref_address = 0x1000000;
	h.init_size = 0x2000000;
	memcpy(img + 0x1f1, &h, sizeof(h));
	memset(img + 4 * 512, 0xcc, IMG_SIZE - 4 * 512); /* the "kernel" */
	return img;
}

static void set_hdr(uint8_t *img, size_t off, const void *v, size_t len)
{
	memcpy(img + off, v, len);
}

static void parse_valid(void **state)
{
	uint8_t *img = fake_bzimage();
	struct bzimage k;
	const char *why = NULL;

	assert_int_equal(bzimage_parse(img, IMG_SIZE, &k, &why), 0);
	assert_int_equal(k.kernel_off, 4 * 512);
	assert_int_equal(k.kernel_size, IMG_SIZE - 4 * 512);
	assert_int_equal(k.hdr.pref_address, 0x1000000);
	free(img);
}

static void parse_rejects(void **state)
{
	uint8_t *img = fake_bzimage();
	struct bzimage k;
	const char *why;
	uint16_t old = 0x0206, no64 = 0;
	uint8_t huge_setup = 200;

	assert_int_equal(bzimage_parse(img, 0x200, &k, &why), -ENOEXEC);
	assert_non_null(strstr(why, "too small"));

	set_hdr(img, 0x1fe, "\x00\x00", 2);
	assert_int_equal(bzimage_parse(img, IMG_SIZE, &k, &why), -ENOEXEC);
	free(img);

	img = fake_bzimage();
	set_hdr(img, 0x206, &old, 2);
	assert_int_equal(bzimage_parse(img, IMG_SIZE, &k, &why), -ENOEXEC);
	assert_non_null(strstr(why, "2.12"));
	free(img);

	img = fake_bzimage();
	set_hdr(img, 0x236, &no64, 2);
	assert_int_equal(bzimage_parse(img, IMG_SIZE, &k, &why), -ENOEXEC);
	free(img);

	img = fake_bzimage();
	set_hdr(img, 0x1f1, &huge_setup, 1); /* setup code runs past the end */
	assert_int_equal(bzimage_parse(img, 0x9000, &k, &why), -ENOEXEC);
	assert_non_null(strstr(why, "truncated"));
	free(img);
}

struct fixture {
	uint8_t *img;
	uint8_t *ram;
	struct guest_mem gm;
	struct bzimage k;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *why;

	f->img = fake_bzimage();
	f->ram = calloc(1, RAM_SIZE);
	guest_mem_layout(&f->gm, f->ram, RAM_SIZE);
	if (bzimage_parse(f->img, IMG_SIZE, &f->k, &why))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->img);
	free(f->ram);
	free(f);
	return 0;
}

static void loads_everything(void **state)
{
	struct fixture *f = *state;
	static const uint8_t initrd[10000] = { [0] = 0x1f, [9999] = 0x8b };
	struct boot_setup bs = { .kernel = &f->k, .initrd = initrd, .initrd_size = sizeof(initrd),
				 .cmdline = "console=ttyS0 quiet", .rsdp_addr = 0xe0000 };
	struct boot_entry e;
	const char *why;
	struct boot_params *bp = (struct boot_params *)(f->ram + BOOT_ZERO_PAGE);
	uint64_t *pml4 = (uint64_t *)(f->ram + BOOT_PML4_ADDR);
	uint64_t *pd = (uint64_t *)(f->ram + BOOT_PML4_ADDR + 0x2000);

	assert_int_equal(boot_setup_linux(&f->gm, &bs, &e, &why), 0);
	assert_int_equal(e.rip, BOOT_KERNEL_ADDR + 0x200);
	assert_int_equal(e.rsi, BOOT_ZERO_PAGE);
	assert_int_equal(e.cr3, BOOT_PML4_ADDR);
	assert_int_equal(f->ram[BOOT_KERNEL_ADDR], 0xcc);
	assert_string_equal((char *)f->ram + BOOT_CMDLINE_ADDR, "console=ttyS0 quiet");
	assert_int_equal(bp->hdr.cmd_line_ptr, BOOT_CMDLINE_ADDR);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_int_equal(bp->acpi_rsdp_addr, 0xe0000);
	/* The initrd sits page-aligned at the top of RAM, intact. */
	assert_int_equal(bp->hdr.ramdisk_size, sizeof(initrd));
	assert_int_equal(bp->hdr.ramdisk_image & 0xfff, 0);
	assert_true(bp->hdr.ramdisk_image + sizeof(initrd) <= RAM_SIZE);
	assert_true(bp->hdr.ramdisk_image >= 0x1000000 + 0x2000000);
	assert_memory_equal(f->ram + bp->hdr.ramdisk_image, initrd, sizeof(initrd));
	/* Identity map: PML4 -> PDPT -> 2 MiB pages. */
	assert_int_equal(pml4[0], (BOOT_PML4_ADDR + 0x1000) | 3);
	assert_int_equal(pd[5], (5ULL << 21) | 0x83);
	/* The real-mode reset vector writes the ACPI reset register. */
	assert_int_equal(f->ram[BOOT_RESET_VECTOR], 0xb0);
	assert_int_equal(f->ram[BOOT_RESET_VECTOR + 1], ACPI_RESET_VALUE);
	assert_int_equal(f->ram[BOOT_RESET_VECTOR + 5], 0xee);
}

static void e820_map(void **state)
{
	struct fixture *f = *state;
	struct e820_entry e[8];
	struct guest_mem big;
	unsigned n = boot_e820(&f->gm, e, 8);

	assert_int_equal(n, 4);
	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].type, E820_RAM);
	assert_int_equal(e[2].addr, BOOT_BIOS_START); /* ACPI and reset vector: reserved */
	assert_int_equal(e[2].type, E820_RESERVED);
	assert_int_equal(e[3].addr, BOOT_HIGH_START);
	assert_int_equal(e[3].addr + e[3].size, RAM_SIZE);

	guest_mem_layout(&big, f->ram, 6ULL << 30); /* layout only, no access */
	n = boot_e820(&big, e, 8);
	assert_int_equal(n, 5);
	assert_int_equal(e[3].addr + e[3].size, GUEST_MEM_LOW_END);
	assert_int_equal(e[4].addr, GUEST_MEM_HIGH_START);
	assert_int_equal(e[4].size, (6ULL << 30) - GUEST_MEM_LOW_END);
}

static void refuses_what_does_not_fit(void **state)
{
	struct fixture *f = *state;
	struct boot_setup bs = { .kernel = &f->k, .cmdline = "" };
	struct boot_entry e;
	const char *why;
	char *long_cmdline = malloc(3000);
	struct guest_mem tiny;

	memset(long_cmdline, 'a', 2999);
	long_cmdline[2999] = 0;
	bs.cmdline = long_cmdline;
	assert_int_equal(boot_setup_linux(&f->gm, &bs, &e, &why), -E2BIG);
	bs.cmdline = "";

	bs.initrd = f->ram;
	bs.initrd_size = RAM_SIZE - 0x2000000; /* would overlap the decompressed kernel */
	assert_int_equal(boot_setup_linux(&f->gm, &bs, &e, &why), -ENOMEM);
	assert_non_null(strstr(why, "initrd"));

	bs.initrd_size = 0;
	guest_mem_layout(&tiny, f->ram, 32 << 20); /* below pref_address + init_size */
	assert_int_equal(boot_setup_linux(&tiny, &bs, &e, &why), -ENOMEM);
	assert_non_null(strstr(why, "decompress"));
	free(long_cmdline);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_valid),
		cmocka_unit_test(parse_rejects),
		cmocka_unit_test_setup_teardown(loads_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(e820_map, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_what_does_not_fit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
