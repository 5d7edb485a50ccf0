/* libFuzzer: hostile VHD files. Either the input itself is the file
 * (small files, footers found anywhere the probe looks), or it patches one
 * of a few valid images (dynamic with data, small blocks, fixed, a
 * differencing child of a real parent file): bytes in the footers, the
 * dynamic header, the BAT, locator data or blocks, with the checksums
 * optionally recomputed. The result is opened from a memfd, read, written,
 * discarded, resized, closed, checked (and repaired). */
#include <endian.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/block.h"
#include "block/block_internal.h"
#include "block/image.h"
#include "block/vhd_format.h"

static uint8_t *bases[4];
static uint64_t base_size[4];
static char tmpdir[64];

static void must(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_block_vhd: setup failed: %s\n", what);
		abort();
	}
}

static void make(int i, const char *name, enum blk_type type, uint64_t size, uint32_t bs,
		 const char *parent)
{
	struct blk_create_opts o = { .format = BLK_FMT_VHD, .type = type, .size = size,
				     .block_size = bs, .parent = parent };
	struct blk_error err;
	struct blk_disk *d;
	char path[128];
	uint8_t buf[16384];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	must(blk_create(path, &o, &err) == 0, err.msg);
	d = blk_open(path, BLK_FMT_VHD, 0, &err);
	must(d != NULL, err.msg);
	for (size_t k = 0; k < sizeof(buf); k++)
		buf[k] = (uint8_t)(k * 13 + 1);
	must(blk_write(d, 4096, buf, sizeof(buf), 0) == 0, "write");
	must(blk_write(d, 300 * 1024, buf, 1024, 0) == 0, "write");
	blk_close(d);
	fd = open(path, O_RDONLY);
	must(fd >= 0 && blk_file_size(fd, &base_size[i]) == 0, "size");
	must(base_size[i] <= 8 * MiB, "base too large");
	bases[i] = malloc(base_size[i]);
	must(blk_pread(fd, bases[i], base_size[i], 0) == 0, "read");
	close(fd);
}

static void cleanup(void)
{
	static const char *const names[] = { "dyn.vhd", "small.vhd", "fixed.vhd", "child.vhd" };
	char path[128];

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
}

static void init(void)
{
	char parent[128];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/fuzz-vhd-XXXXXX");
	must(mkdtemp(tmpdir) != NULL, "mkdtemp");
	atexit(cleanup);
	make(0, "dyn.vhd", BLK_TYPE_DYNAMIC, 2 * MiB, 512 * KiB, NULL);
	make(1, "small.vhd", BLK_TYPE_DYNAMIC, 1 * MiB, 4096, NULL);
	make(2, "fixed.vhd", BLK_TYPE_FIXED, 1 * MiB, 0, NULL);
	snprintf(parent, sizeof(parent), "%s/dyn.vhd", tmpdir);
	make(3, "child.vhd", BLK_TYPE_DIFF, 0, 64 * KiB, parent);
}

static uint32_t sum(const uint8_t *p, size_t len, size_t skip)
{
	uint32_t s = 0;

	for (size_t i = 0; i < len; i++)
		if (i < skip || i >= skip + 4)
			s += p[i];
	return ~s;
}

static void reseal(uint8_t *img, uint64_t size)
{
	uint32_t c;
	uint64_t dyn;

	if (size < 512)
		return;
	c = htobe32(sum(img + size - 512, 512, 64));
	memcpy(img + size - 512 + 64, &c, 4);
	c = htobe32(sum(img, 512, 64));
	memcpy(img + 64, &c, 4);
	memcpy(&dyn, img + 16, 8);
	dyn = be64toh(dyn);
	if (dyn < size && size - dyn >= 1024) {
		c = htobe32(sum(img + dyn, 1024, 36));
		memcpy(img + dyn + 36, &c, 4);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct blk_check_result res;
	struct blk_error err;
	struct blk_disk *d;
	uint8_t *img, flags, buf[8192];
	uint64_t isize;
	char path[64];
	int fd;

	if (!ready) {
		init();
		ready = true;
	}
	if (size < 2)
		return 0;
	flags = data[1];
	if (data[0] >= 0xf0) {
		/* The input is the file. */
		isize = size - 2;
		img = malloc(isize + 1);
		memcpy(img, data + 2, isize);
	} else {
		int b = data[0] % 4;

		isize = base_size[b];
		img = malloc(isize);
		memcpy(img, bases[b], isize);
		/* Patches: where (from the start, or from the end), length, bytes. */
		for (size_t i = 2; i + 4 <= size;) {
			uint32_t where = (uint32_t)data[i] << 8 | data[i + 1];
			bool from_end = data[i + 2] & 0x80;
			size_t len = data[i + 3];
			uint64_t off;

			i += 4;
			if (len > size - i)
				len = size - i;
			where %= 4096;
			off = from_end ? isize - MIN(isize, 512 + (uint64_t)where) : (uint64_t)where * 2;
			if (off < isize)
				memcpy(img + off, data + i, (size_t)MIN(len, isize - off));
			i += len;
		}
		if (flags & 1)
			reseal(img, isize);
	}
	if (flags & 0x80)
		isize = isize * (flags & 0x70) / 0x80;
	fd = memfd_create("fuzz-vhd", MFD_CLOEXEC);
	if (fd < 0 || pwrite(fd, img, isize, 0) != (ssize_t)isize) {
		if (fd >= 0)
			close(fd);
		free(img);
		return 0;
	}
	free(img);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	d = blk_open(path, flags & 8 ? BLK_FMT_VHD : BLK_FMT_AUTO, flags & 2 ? 0 : BLK_OPEN_RDONLY,
		     &err);
	if (d) {
		struct blk_info info;

		blk_get_info(d, &info);
		for (uint64_t off = 0; off < info.size; off += info.size / 5 + 512) {
			uint64_t o = off / 512 * 512;
			size_t n = (size_t)MIN(sizeof(buf), info.size - o);

			blk_read(d, o, buf, n / 512 * 512);
		}
		if (flags & 2) {
			memset(buf, 0x3c, sizeof(buf));
			blk_write(d, 0, buf, 1024, 0);
			blk_write(d, info.size / 2 / 512 * 512, buf, 512, 0);
			if (flags & 16)
				blk_discard(d, 0, MIN(info.size, 64 * KiB));
			if (flags & 32)
				blk_resize(d, flags & 64 ? info.size + 64 * KiB : MAX(512, info.size / 2 / 512 * 512));
			blk_flush(d);
		}
		blk_close(d);
	}
	if (flags & 4)
		blk_check(path, BLK_FMT_AUTO, flags & 16, NULL, NULL, &res, &err);
	close(fd);
	return 0;
}
