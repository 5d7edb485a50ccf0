/* libFuzzer: a hostile kernel file through the bzImage parser and loader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "x86/boot.h"

#define RAM (64ULL << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	struct guest_mem gm;
	struct bzimage k;
	struct boot_setup bs = { .kernel = &k, .cmdline = "console=ttyS0" };
	struct boot_entry e;
	const char *why;

	static uint8_t img[1 << 16];

	if (!ram)
		ram = calloc(1, RAM);
	if (size > sizeof(img))
		size = sizeof(img);
	memcpy(img, data, size);
	/* An odd first byte gets valid signatures patched in, so the fuzzer
	 * reaches the loader instead of stopping at the magic numbers. */
	if (size >= 0x26c && (img[0] & 1)) {
		memcpy(img + 0x1fe, "\x55\xaa" "\xeb\x66" "HdrS", 8);
		img[0x207] = 0x02;
		img[0x211] |= LOADFLAG_LOADED_HIGH;
		img[0x236] |= XLF_KERNEL_64;
	}
	data = img;
	if (bzimage_parse(data, size, &k, &why))
		return 0;
	guest_mem_layout(&gm, ram, RAM);
	/* The tail of the input doubles as an initrd. */
	bs.initrd = data;
	bs.initrd_size = size / 2;
	boot_setup_linux(&gm, &bs, &e, &why);
	return 0;
}
