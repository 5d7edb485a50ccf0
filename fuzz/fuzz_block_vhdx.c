/* libFuzzer: hostile VHDX files. The input patches one of a few valid
 * images (dynamic with data, fixed, 4 KiB sectors, a pending log, a
 * differencing child of a real parent file): bytes anywhere in the
 * headers, region tables, log, metadata, BAT or data, with the checksums
 * optionally recomputed so that the deeper checks are reached. The result
 * is opened from a memfd, read, written, discarded, grown, closed, and
 * checked (and repaired). Nothing may crash, hang or allocate without
 * bound. */
#include <errno.h>
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
#include "block/vhdx_format.h"

extern bool vhdx_test_stop_after_log;

#define PAGE 4096

struct base {
	uint64_t size;
	size_t npages;
	uint64_t *page_off;
	uint8_t *pages;
};

static struct base bases[5];
static char tmpdir[64];

static void pattern(uint8_t *buf, size_t len, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((off + i) * 31 + (off + i) / 4096);
}

static void must(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_block_vhdx: setup failed: %s\n", what);
		abort();
	}
}

/* The non-zero pages of a file, to rebuild it quickly. */
static void load(struct base *b, const char *path)
{
	int fd = open(path, O_RDONLY);
	uint8_t page[PAGE];

	must(fd >= 0, path);
	must(blk_file_size(fd, &b->size) == 0, "size");
	for (uint64_t off = 0; off < b->size; off += PAGE) {
		must(blk_pread(fd, page, PAGE, off) == 0, "read");
		if (blk_is_zero(page, PAGE))
			continue;
		if ((b->npages & (b->npages - 1)) == 0) { /* grow at powers of two */
			size_t cap = b->npages ? b->npages * 2 : 1;

			b->page_off = realloc(b->page_off, cap * sizeof(uint64_t));
			b->pages = realloc(b->pages, cap * PAGE);
			must(b->page_off && b->pages, "memory");
		}
		b->page_off[b->npages] = off;
		memcpy(b->pages + b->npages * PAGE, page, PAGE);
		b->npages++;
	}
	close(fd);
}

static void make(const char *name, enum blk_type type, uint32_t lss, const char *parent,
		 bool writes, bool crash, struct base *b)
{
	struct blk_create_opts o = { .format = BLK_FMT_VHDX, .type = type, .size = 8 * MiB,
				     .block_size = MiB, .logical_sector = lss, .parent = parent };
	struct blk_error err;
	char path[128];
	uint8_t *buf = malloc(3 * MiB);

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	must(blk_create(path, &o, &err) == 0, err.msg);
	if (writes) {
		struct blk_disk *d = blk_open(path, BLK_FMT_VHDX, 0, &err);

		must(d != NULL, err.msg);
		pattern(buf, 3 * MiB, 0);
		must(blk_write(d, MiB - 32 * KiB, buf, 64 * KiB, 0) == 0, "write"); /* two blocks */
		must(blk_write(d, 6 * MiB + 8192, buf, 8192, 0) == 0, "write");
		if (crash) {
			vhdx_test_stop_after_log = true;
			blk_write(d, 4 * MiB, buf, 8192, 0);
			vhdx_test_stop_after_log = false;
		}
		blk_close(d);
	}
	load(b, path);
	free(buf);
}

static void cleanup(void)
{
	static const char *const names[] = { "dyn.vhdx", "fixed.vhdx", "4k.vhdx", "log.vhdx",
					     "child.vhdx" };
	char path[128];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	rmdir(tmpdir);
}

static void init(void)
{
	char parent[128];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/fuzz-vhdx-XXXXXX");
	must(mkdtemp(tmpdir) != NULL, "mkdtemp");
	atexit(cleanup);
	make("dyn.vhdx", BLK_TYPE_DYNAMIC, 512, NULL, true, false, &bases[0]);
	make("fixed.vhdx", BLK_TYPE_FIXED, 512, NULL, true, false, &bases[1]);
	make("4k.vhdx", BLK_TYPE_DYNAMIC, 4096, NULL, true, false, &bases[2]);
	make("log.vhdx", BLK_TYPE_DYNAMIC, 512, NULL, true, true, &bases[3]);
	/* The parent stays a real file; the child finds it by its absolute
	 * path (its relative one points next to the memfd, nowhere). */
	snprintf(parent, sizeof(parent), "%s/dyn.vhdx", tmpdir);
	make("child.vhdx", BLK_TYPE_DIFF, 512, parent, true, false, &bases[4]);
}

/* Offsets of the areas an input patches, and their sizes. */
static const struct {
	uint64_t off, len;
} areas[] = {
	{ 0, 64 * KiB },                 /* file identifier */
	{ VHDX_HEADER1_OFF, 4 * KiB },
	{ VHDX_HEADER2_OFF, 4 * KiB },
	{ VHDX_REGION1_OFF, 4 * KiB },
	{ VHDX_REGION2_OFF, 4 * KiB },
	{ 1 * MiB, 1 * MiB },            /* log */
	{ 2 * MiB, 64 * KiB },           /* metadata table */
	{ 2 * MiB + 64 * KiB, 8 * KiB }, /* metadata items (and the locator) */
	{ 3 * MiB, 64 * KiB },           /* BAT */
	{ 4 * MiB, 4 * MiB },            /* payload, bitmaps */
};

static void reseal(int fd)
{
	struct vhdx_header h;
	uint8_t *t = malloc(VHDX_REGION_SIZE);
	struct vhdx_log_entry_header le;

	for (int i = 0; i < 2; i++) {
		uint64_t off = i ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF;

		blk_pread(fd, &h, sizeof(h), off);
		h.checksum = 0;
		h.checksum = blk_crc32c(0, &h, sizeof(h));
		pwrite(fd, &h, sizeof(h), (off_t)off);
	}
	for (int i = 0; i < 2; i++) {
		uint64_t off = i ? VHDX_REGION2_OFF : VHDX_REGION1_OFF;
		struct vhdx_region_header *rh = (void *)t;

		blk_pread(fd, t, VHDX_REGION_SIZE, off);
		rh->checksum = 0;
		rh->checksum = blk_crc32c(0, t, VHDX_REGION_SIZE);
		pwrite(fd, t, VHDX_REGION_SIZE, (off_t)off);
	}
	/* The first log entry, if its length is sane. */
	blk_pread(fd, &le, sizeof(le), MiB);
	if (le.signature == VHDX_LOG_ENTRY_SIG && le.entry_length && le.entry_length <= MiB &&
	    le.entry_length % 4096 == 0) {
		uint8_t *e = malloc(le.entry_length);

		blk_pread(fd, e, le.entry_length, MiB);
		((struct vhdx_log_entry_header *)(void *)e)->checksum = 0;
		((struct vhdx_log_entry_header *)(void *)e)->checksum =
			blk_crc32c(0, e, le.entry_length);
		pwrite(fd, e, le.entry_length, MiB);
		free(e);
	}
	free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	const struct base *b;
	struct blk_error err;
	struct blk_check_result res;
	char path[64];
	uint8_t flags, buf[16384];
	size_t i;
	int fd;

	if (!ready) {
		init();
		ready = true;
	}
	if (size < 2)
		return 0;
	b = &bases[data[0] % 5];
	flags = data[1];
	fd = memfd_create("fuzz-vhdx", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (ftruncate(fd, (off_t)b->size) < 0)
		goto out;
	for (size_t p = 0; p < b->npages; p++)
		pwrite(fd, b->pages + p * PAGE, PAGE, (off_t)b->page_off[p]);
	/* Patches: area, 3-byte offset, length, bytes. */
	for (i = 2; i + 5 <= size;) {
		unsigned area = data[i] % (sizeof(areas) / sizeof(areas[0]));
		uint64_t off = ((uint64_t)data[i + 1] << 16 | (uint64_t)data[i + 2] << 8 | data[i + 3]) %
			       areas[area].len;
		size_t len = data[i + 4];

		i += 5;
		if (len > size - i)
			len = size - i;
		pwrite(fd, data + i, len, (off_t)(areas[area].off + off));
		i += len;
	}
	if (flags & 1)
		reseal(fd);
	if (flags & 0x80) /* a cut file */
		ftruncate(fd, (off_t)(b->size * (flags & 0x70) / 0x80));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	struct blk_disk *d = blk_open(path, BLK_FMT_AUTO, flags & 2 ? 0 : BLK_OPEN_RDONLY, &err);
	if (d) {
		struct blk_info info;

		blk_get_info(d, &info);
		for (uint64_t off = 0; off < info.size; off += info.size / 7 + info.logical_sector) {
			uint64_t o = off / info.logical_sector * info.logical_sector;
			size_t n = (size_t)MIN(sizeof(buf), info.size - o);

			n = n / info.logical_sector * info.logical_sector;
			if (n)
				blk_read(d, o, buf, n);
		}
		if (flags & 2) {
			memset(buf, 0xa5, sizeof(buf));
			blk_write(d, 0, buf, 2 * info.logical_sector, 0);
			blk_write(d, (info.size / 2) / info.logical_sector * info.logical_sector, buf,
				  info.logical_sector, 0);
			if (flags & 8)
				blk_discard(d, 0, MIN(info.size, 2 * MiB) / info.logical_sector *
						      info.logical_sector);
			if (flags & 16)
				blk_resize(d, info.size + MiB);
			blk_flush(d);
			blk_read(d, 0, buf, info.logical_sector);
		}
		blk_close(d);
	}
	if (flags & 4)
		blk_check(path, BLK_FMT_AUTO, flags & 8, NULL, NULL, &res, &err);
out:
	close(fd);
	return 0;
}
