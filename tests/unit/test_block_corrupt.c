/* Hostile and damaged images: every case is refused with a message that
 * says what is wrong (and check calls it corrupt), or, where the format
 * has a spare copy, opened from the good copy and repaired by check. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/block.h"
#include "block/block_internal.h"
#include "block/image.h"
#include "block/vhd_format.h"
#include "block/vhdx_format.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hvmm-corrupt-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *P(const char *name)
{
	static char bufs[8][256];
	static int i;
	char *b = bufs[i++ % 8];

	snprintf(b, 256, "%s/%s", dir, name);
	unlink(b);
	return b;
}

static void create(const char *path, enum blk_format f, enum blk_type type, uint64_t size,
		   uint32_t bs, const char *parent)
{
	struct blk_create_opts o = { .format = f, .type = type, .size = size, .block_size = bs,
				     .parent = parent };
	struct blk_error err = { "" };

	if (blk_create(path, &o, &err))
		fail_msg("create %s: %s", path, err.msg);
}

static void write_at(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT, 0644);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void read_at(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(blk_pread(fd, buf, len, off), 0);
	close(fd);
}

/* The image must not open; the message must say `why`; check: corrupt
 * (or, for what it cannot read at all, an error). */
static void refused(const char *path, const char *why)
{
	struct blk_error err = { "" };
	struct blk_check_result r;
	struct blk_disk *d = blk_open(path, BLK_FMT_AUTO, 0, &err);

	if (d)
		fail_msg("%s opened; expected a refusal (%s)", path, why);
	if (!strstr(err.msg, why))
		fail_msg("message '%s' does not say '%s'", err.msg, why);
	d = blk_open(path, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);
	assert_null(d);
	if (blk_check(path, BLK_FMT_AUTO, false, NULL, NULL, &r, &err) == 0)
		assert_true(r.corruptions > 0);
}

/* ---- VHDX: my layout (create): headers at 64/128 KiB, region tables at
 * 192/256 KiB, log at 1 MiB, metadata at 2 MiB (items at +64 KiB), BAT at
 * 3 MiB. ---- */

#define META (2 * MiB)
#define BAT (3 * MiB)

static void vhdx_base(const char *p)
{
	struct blk_disk *d;
	struct blk_error err;
	uint8_t buf[4096];

	unlink(p);
	create(p, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, NULL);
	d = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(d);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(blk_write(d, 0, buf, sizeof(buf), 0), 0);
	assert_int_equal(blk_write(d, 4 * MiB, buf, sizeof(buf), 0), 0);
	blk_close(d);
}

static void header_seal(struct vhdx_header *h)
{
	h->checksum = 0;
	h->checksum = htole32(blk_crc32c(0, h, sizeof(*h)));
}

static void edit_headers(const char *p, void (*fn)(struct vhdx_header *h, int slot))
{
	for (int slot = 0; slot < 2; slot++) {
		struct vhdx_header h;
		uint64_t off = slot ? VHDX_HEADER2_OFF : VHDX_HEADER1_OFF;

		read_at(p, off, &h, sizeof(h));
		fn(&h, slot);
		header_seal(&h);
		write_at(p, off, &h, sizeof(h));
	}
}

static void edit_regions(const char *p, void (*fn)(uint8_t *t))
{
	uint8_t *t = malloc(VHDX_REGION_SIZE);
	struct vhdx_region_header *h = (void *)t;

	for (int i = 0; i < 2; i++) {
		uint64_t off = i ? VHDX_REGION2_OFF : VHDX_REGION1_OFF;

		read_at(p, off, t, VHDX_REGION_SIZE);
		fn(t);
		h->checksum = 0;
		h->checksum = htole32(blk_crc32c(0, t, VHDX_REGION_SIZE));
		write_at(p, off, t, VHDX_REGION_SIZE);
	}
	free(t);
}

static void set_bat(const char *p, uint64_t idx, uint64_t val)
{
	uint64_t le = htole64(val);

	write_at(p, BAT + idx * 8, &le, 8);
}

static void vhdx_not_vhdx(void **state)
{
	const char *p = P("junk.vhdx");
	struct blk_error err = { "" };

	write_at(p, 0, "not an image at all", 19);
	assert_null(blk_open(p, BLK_FMT_VHDX, 0, &err));
	assert_non_null(strstr(err.msg, "not a VHDX"));
}

static void vhdx_truncated(void **state)
{
	const char *p = P("short.vhdx");

	vhdx_base(p);
	assert_int_equal(truncate(p, MiB + 4096), 0);
	refused(p, "too small");
	vhdx_base(p);
	assert_int_equal(truncate(p, 3 * MiB), 0); /* BAT region gone */
	refused(p, "past the end of the file");
}

static void vhdx_headers(void **state)
{
	const char *p = P("hdr.vhdx");
	uint8_t junk[64];
	struct blk_disk *d;
	struct blk_error err = { "" };
	struct blk_check_result r;

	memset(junk, 0xee, sizeof(junk));
	/* One damaged header: the other serves, check repairs. */
	vhdx_base(p);
	write_at(p, VHDX_HEADER2_OFF + 100, junk, sizeof(junk));
	d = blk_open(p, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);
	assert_non_null(d);
	blk_close(d);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.corruptions, 0);
	assert_true(r.repairable > 0);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, true, NULL, NULL, &r, &err), 0);
	assert_true(r.fixed > 0);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.repairable + r.corruptions + r.leaks, 0);
	/* Both damaged. */
	write_at(p, VHDX_HEADER1_OFF + 100, junk, sizeof(junk));
	write_at(p, VHDX_HEADER2_OFF + 100, junk, sizeof(junk));
	refused(p, "both headers are damaged");
}

static void same_seq(struct vhdx_header *h, int slot)
{
	h->sequence = htole64(7);
	h->reserved[0] = (uint8_t)slot; /* and not identical */
}

static void log_outside(struct vhdx_header *h, int slot)
{
	h->log_offset = htole64(1ULL << 40);
}

static void log_huge(struct vhdx_header *h, int slot)
{
	h->log_length = htole32(0x80000000U);
}

static void log_unaligned(struct vhdx_header *h, int slot)
{
	h->log_offset = htole64(MiB + 4096);
}

static void vhdx_header_fields(void **state)
{
	const char *p = P("hf.vhdx");

	vhdx_base(p);
	edit_headers(p, same_seq);
	refused(p, "sequence number 7 but differ");
	vhdx_base(p);
	edit_headers(p, log_outside);
	refused(p, "outside the file");
	vhdx_base(p);
	edit_headers(p, log_huge);
	refused(p, "log length");
	vhdx_base(p);
	edit_headers(p, log_unaligned);
	refused(p, "outside the file");
}

static void regions_count(uint8_t *t)
{
	((struct vhdx_region_header *)(void *)t)->entry_count = htole32(100000);
}

static void regions_unknown_required(uint8_t *t)
{
	struct vhdx_region_header *h = (void *)t;
	struct vhdx_region_entry *e = (void *)(t + sizeof(*h));

	e[2] = e[1];
	e[2].guid.b[0] ^= 0x55;
	e[2].file_offset = htole64(20 * MiB);
	h->entry_count = htole32(3);
}

static void regions_overlap_log(uint8_t *t)
{
	struct vhdx_region_entry *e = (void *)(t + sizeof(struct vhdx_region_header));

	e[0].file_offset = htole64(MiB); /* the BAT onto the log */
}

static void regions_past_end(uint8_t *t)
{
	struct vhdx_region_entry *e = (void *)(t + sizeof(struct vhdx_region_header));

	e[1].file_offset = htole64(1ULL << 40);
}

static void regions_huge_bat(uint8_t *t)
{
	struct vhdx_region_entry *e = (void *)(t + sizeof(struct vhdx_region_header));

	e[0].length = htole32(0xfff00000U);
}

static void vhdx_regions(void **state)
{
	const char *p = P("rt.vhdx");
	uint8_t junk[64];

	memset(junk, 0xee, sizeof(junk));
	vhdx_base(p);
	write_at(p, VHDX_REGION1_OFF + 8, junk, sizeof(junk));
	write_at(p, VHDX_REGION2_OFF + 8, junk, sizeof(junk));
	refused(p, "both region tables are damaged");
	vhdx_base(p);
	edit_regions(p, regions_count);
	refused(p, "both region tables are damaged");
	vhdx_base(p);
	edit_regions(p, regions_unknown_required);
	{
		struct blk_error err = { "" };

		assert_null(blk_open(p, BLK_FMT_AUTO, 0, &err));
		assert_non_null(strstr(err.msg, "does not know"));
	}
	vhdx_base(p);
	edit_regions(p, regions_overlap_log);
	refused(p, "overlaps");
	vhdx_base(p);
	edit_regions(p, regions_past_end);
	refused(p, "past the end of the file");
	vhdx_base(p);
	edit_regions(p, regions_huge_bat);
	refused(p, "past the end of the file");
}

static void put_le32(const char *p, uint64_t off, uint32_t v)
{
	uint32_t le = htole32(v);

	write_at(p, off, &le, 4);
}

static void put_le64(const char *p, uint64_t off, uint64_t v)
{
	uint64_t le = htole64(v);

	write_at(p, off, &le, 8);
}

static void vhdx_metadata(void **state)
{
	const char *p = P("md.vhdx");
	struct blk_error err = { "" };
	uint16_t n;

	/* Table entries: file parameters first, then size, page 83, lss, pss. */
	vhdx_base(p);
	n = htole16(60000);
	write_at(p, META + 10, &n, 2);
	refused(p, "metadata entries");
	vhdx_base(p);
	put_le32(p, META + 0x10000, 3 * MiB);                  /* block size */
	refused(p, "block size");
	vhdx_base(p);
	put_le32(p, META + 0x10000, 0);
	refused(p, "block size");
	vhdx_base(p);
	put_le64(p, META + 0x10008, 1ULL << 62);               /* virtual size */
	refused(p, "virtual size");
	vhdx_base(p);
	put_le64(p, META + 0x10008, 0);
	refused(p, "virtual size");
	vhdx_base(p);
	put_le64(p, META + 0x10008, 1000);                     /* not whole sectors */
	refused(p, "virtual size");
	vhdx_base(p);
	put_le32(p, META + 0x10020, 1000);                     /* logical sector */
	refused(p, "logical sector size");
	vhdx_base(p);
	put_le32(p, META + 32 + 16, 0x200000);                 /* item past the region */
	refused(p, "outside the metadata region");
	vhdx_base(p);
	put_le32(p, META + 32 + 16, 100);                      /* item inside the table */
	refused(p, "outside the metadata region");
	vhdx_base(p);
	put_le32(p, META + 32 + 20, 9);                        /* file parameters length */
	refused(p, "length");
	vhdx_base(p);
	{
		uint8_t g = 0x42;                              /* unknown, required */

		write_at(p, META + 32 + 2 * 32, &g, 1);
		assert_null(blk_open(p, BLK_FMT_AUTO, 0, &err));
		assert_non_null(strstr(err.msg, "does not know"));
	}
	vhdx_base(p);
	{
		uint8_t e[32];

		read_at(p, META + 32, e, 32);                  /* file parameters twice */
		write_at(p, META + 32 + 32, e, 32);
		refused(p, "twice");
	}
	/* The BAT region must hold the entries the size needs. */
	vhdx_base(p);
	put_le64(p, META + 0x10008, 2 * TiB);
	refused(p, "too small");
}

static void vhdx_bat(void **state)
{
	const char *p = P("bat.vhdx");

	vhdx_base(p);
	set_bat(p, 2, (100 * GiB) | 6);
	refused(p, "past the end of the file");
	vhdx_base(p);
	set_bat(p, 2, META | 6);
	refused(p, "metadata region");
	vhdx_base(p);
	set_bat(p, 2, BAT | 6);
	refused(p, "into the BAT");
	vhdx_base(p);
	set_bat(p, 2, 0 | 6);
	refused(p, "header section");
	vhdx_base(p);
	set_bat(p, 2, MiB | 6);
	refused(p, "into the log");
	vhdx_base(p);
	{
		uint64_t e0;

		read_at(p, BAT, &e0, 8);
		set_bat(p, 7, le64toh(e0)); /* two blocks, one place */
		refused(p, "overlapping");
	}
	vhdx_base(p);
	set_bat(p, 3, 4);
	refused(p, "reserved state");
	vhdx_base(p);
	{
		uint64_t e0;

		read_at(p, BAT, &e0, 8);
		set_bat(p, 0, (le64toh(e0) & ~7ULL) | 7); /* partially present, no parent */
		refused(p, "without a parent");
	}
}

static void vhdx_parent_loops(void **state)
{
	const char *x = P("x.vhdx"), *a = P("a.vhdx"), *b = P("b.vhdx");
	char name[64];
	char *prev;

	/* a -> x; b -> a; then x is made b (a hard link): b -> a -> b. */
	create(x, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, NULL);
	create(a, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, x);
	create(b, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, a);
	assert_int_equal(unlink(x), 0);
	assert_int_equal(link(b, x), 0);
	refused(b, "loops");
	/* A disk its own parent. */
	assert_int_equal(unlink(x), 0);
	assert_int_equal(link(a, x), 0);
	refused(a, "loops");

	/* 16 parents deep opens; 17 does not. */
	prev = strdup(P("d0.vhdx"));
	create(prev, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, NULL);
	for (int i = 1; i <= 17; i++) {
		char *cur;

		snprintf(name, sizeof(name), "d%d.vhdx", i);
		cur = strdup(P(name));
		create(cur, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, prev);
		if (i == 16) {
			struct blk_error err;
			struct blk_disk *d = blk_open(cur, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);

			if (!d)
				fail_msg("16 deep: %s", err.msg);
			blk_close(d);
		}
		if (i == 17)
			refused(cur, "deeper than 16");
		free(prev);
		prev = cur;
	}
	free(prev);
}

static void vhdx_locator(void **state)
{
	const char *base = P("lb.vhdx"), *c = P("lc.vhdx");
	uint8_t loc[64];
	uint16_t n;

	create(base, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, NULL);
	create(c, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, base);
	n = htole16(5000);
	write_at(c, META + 0x11000 + 18, &n, 2);
	refused(c, "do not fit");
	unlink(c);
	create(c, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, base);
	/* The first entry's key ("parent_linkage") renamed. */
	read_at(c, META + 0x11000, loc, sizeof(loc));
	{
		struct vhdx_locator_entry e;
		uint16_t x = htole16('X');

		memcpy(&e, loc + 20, sizeof(e));
		write_at(c, META + 0x11000 + le32toh(e.key_offset), &x, 2);
	}
	refused(c, "parent_linkage");
	unlink(c);
	create(c, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, base);
	{
		struct vhdx_locator_entry e;

		memcpy(&e, loc + 20, sizeof(e));
		e.value_offset = htole32(0xfffff000U);
		write_at(c, META + 0x11000 + 20, &e, sizeof(e));
	}
	refused(c, "outside the item");
}

static void vhdx_log_damage(void **state)
{
	const char *p = P("lg.vhdx");
	extern bool vhdx_test_stop_after_log;
	struct blk_disk *d;
	struct blk_error err = { "" };
	uint8_t buf[4096], junk[16];

	/* A pending log whose file was cut short afterwards. */
	vhdx_base(p);
	d = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(d);
	memset(buf, 0x77, sizeof(buf));
	vhdx_test_stop_after_log = true;
	assert_int_equal(blk_write(d, 9 * MiB, buf, sizeof(buf), 0), -EIO);
	vhdx_test_stop_after_log = false;
	blk_close(d);
	assert_int_equal(truncate(p, 4 * MiB), 0);
	refused(p, "truncated");

	/* A damaged entry is no entry: the old state opens. */
	vhdx_base(p);
	d = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(d);
	vhdx_test_stop_after_log = true;
	assert_int_equal(blk_write(d, 9 * MiB, buf, sizeof(buf), 0), -EIO);
	vhdx_test_stop_after_log = false;
	blk_close(d);
	memset(junk, 0xee, sizeof(junk));
	write_at(p, MiB + 4096 + 100, junk, sizeof(junk)); /* its data sector */
	d = blk_open(p, BLK_FMT_AUTO, 0, &err);
	if (!d)
		fail_msg("%s", err.msg);
	assert_int_equal(blk_read(d, 9 * MiB, buf, sizeof(buf)), 0);
	assert_true(blk_is_zero(buf, sizeof(buf)));
	blk_close(d);
}

/* ---- VHD: footer copy at 0, dynamic header at 512, BAT at 1536. ---- */

static void vhd_footer_seal(struct vhd_footer *f)
{
	uint32_t sum = 0;
	const uint8_t *b = (const void *)f;

	f->checksum = 0;
	for (size_t i = 0; i < sizeof(*f); i++)
		sum += b[i];
	f->checksum = htobe32(~sum);
}

static void vhd_dyn_seal(struct vhd_dyn_header *h)
{
	uint32_t sum = 0;
	const uint8_t *b = (const void *)h;

	h->checksum = 0;
	for (size_t i = 0; i < sizeof(*h); i++)
		sum += b[i];
	h->checksum = htobe32(~sum);
}

static uint64_t fsize(const char *p)
{
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	return (uint64_t)st.st_size;
}

static void vhd_base(const char *p)
{
	struct blk_disk *d;
	struct blk_error err;
	uint8_t buf[4096];

	unlink(p);
	create(p, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 16 * MiB, 0, NULL);
	d = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(d);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(blk_write(d, 0, buf, sizeof(buf), 0), 0);
	assert_int_equal(blk_write(d, 4 * MiB, buf, sizeof(buf), 0), 0);
	blk_close(d);
}

static void edit_footers(const char *p, void (*fn)(struct vhd_footer *f))
{
	struct vhd_footer f;
	uint64_t end = fsize(p) - 512;

	read_at(p, end, &f, sizeof(f));
	fn(&f);
	vhd_footer_seal(&f);
	write_at(p, end, &f, sizeof(f));
	write_at(p, 0, &f, sizeof(f));
}

static void edit_dyn(const char *p, void (*fn)(struct vhd_dyn_header *h))
{
	struct vhd_dyn_header h;

	read_at(p, 512, &h, sizeof(h));
	fn(&h);
	vhd_dyn_seal(&h);
	write_at(p, 512, &h, sizeof(h));
}

static void f_huge(struct vhd_footer *f) { f->current_size = htobe64(1ULL << 50); }
static void f_type(struct vhd_footer *f) { f->disk_type = htobe32(5); }
static void f_data_off(struct vhd_footer *f) { f->data_offset = htobe64(1ULL << 40); }
static void d_block(struct vhd_dyn_header *h) { h->block_size = htobe32(3 * MiB); }
static void d_block_huge(struct vhd_dyn_header *h) { h->block_size = htobe32(1U << 31); }
static void d_entries(struct vhd_dyn_header *h) { h->max_table_entries = htobe32(0x40000000); }
static void d_few(struct vhd_dyn_header *h) { h->max_table_entries = htobe32(2); }
static void d_table(struct vhd_dyn_header *h) { h->table_offset = htobe64(1ULL << 40); }

static void vhd_footers(void **state)
{
	const char *p = P("ft.vhd"), *f = P("fixed.vhd");
	uint8_t junk[16];
	struct blk_disk *d;
	struct blk_error err = { "" };
	struct blk_check_result r;

	memset(junk, 0xee, sizeof(junk));
	/* A damaged end footer: the copy at 0 serves; check repairs. */
	vhd_base(p);
	write_at(p, fsize(p) - 512 + 100, junk, sizeof(junk));
	d = blk_open(p, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);
	if (!d)
		fail_msg("%s", err.msg);
	blk_close(d);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.corruptions, 0);
	assert_true(r.repairable > 0);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, true, NULL, NULL, &r, &err), 0);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.repairable + r.corruptions + r.leaks, 0);
	/* Both damaged. */
	write_at(p, fsize(p) - 512 + 100, junk, sizeof(junk));
	write_at(p, 100, junk, sizeof(junk));
	refused(p, "checksum");
	/* A fixed disk has one footer. */
	create(f, BLK_FMT_VHD, BLK_TYPE_FIXED, MiB, 0, NULL);
	write_at(f, fsize(f) - 512 + 100, junk, sizeof(junk));
	assert_null(blk_open(f, BLK_FMT_VHD, 0, &err));
	assert_non_null(strstr(err.msg, "checksum"));

	vhd_base(p);
	edit_footers(p, f_huge);
	refused(p, "2040 GiB");
	vhd_base(p);
	edit_footers(p, f_type);
	assert_null(blk_open(p, BLK_FMT_AUTO, 0, &err));
	assert_non_null(strstr(err.msg, "disk type"));
	vhd_base(p);
	edit_footers(p, f_data_off);
	refused(p, "outside the file");
}

static void vhd_dynamic_header(void **state)
{
	const char *p = P("dh.vhd");
	uint8_t junk[16];

	memset(junk, 0xee, sizeof(junk));
	vhd_base(p);
	write_at(p, 512 + 600, junk, sizeof(junk));
	refused(p, "dynamic header's checksum");
	vhd_base(p);
	edit_dyn(p, d_block);
	refused(p, "block size");
	vhd_base(p);
	edit_dyn(p, d_block_huge);
	refused(p, "block size");
	vhd_base(p);
	edit_dyn(p, d_entries);
	refused(p, "outside the file");
	vhd_base(p);
	edit_dyn(p, d_few);
	refused(p, "does not cover");
	vhd_base(p);
	edit_dyn(p, d_table);
	refused(p, "outside the file");
}

static void vhd_bat(void **state)
{
	const char *p = P("vb.vhd");
	uint32_t e;

	vhd_base(p);
	e = htobe32(0x7fffffff);
	write_at(p, 1536 + 4, &e, 4);
	refused(p, "past the end of the file");
	vhd_base(p);
	e = htobe32(1); /* sector 1: the dynamic header */
	write_at(p, 1536 + 4, &e, 4);
	refused(p, "overlaps");
	vhd_base(p);
	read_at(p, 1536, &e, 4); /* block 0's place for block 5 */
	write_at(p, 1536 + 5 * 4, &e, 4);
	refused(p, "overlap");
}

static void vhd_parent(void **state)
{
	const char *base = P("vp.vhd"), *c = P("vc.vhd"), *other = P("vo.vhd");
	struct blk_error err = { "" };

	create(base, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 8 * MiB, 0, NULL);
	create(other, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 8 * MiB, 0, NULL);
	create(c, BLK_FMT_VHD, BLK_TYPE_DIFF, 0, 0, base);
	/* Another disk where the parent was. */
	assert_int_equal(rename(other, base), 0);
	assert_null(blk_open(c, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err));
	assert_non_null(strstr(err.msg, "unique id"));
	/* A loop. */
	unlink(base);
	assert_int_equal(link(c, base), 0);
	refused(c, "loops");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vhdx_not_vhdx),
		cmocka_unit_test(vhdx_truncated),
		cmocka_unit_test(vhdx_headers),
		cmocka_unit_test(vhdx_header_fields),
		cmocka_unit_test(vhdx_regions),
		cmocka_unit_test(vhdx_metadata),
		cmocka_unit_test(vhdx_bat),
		cmocka_unit_test(vhdx_parent_loops),
		cmocka_unit_test(vhdx_locator),
		cmocka_unit_test(vhdx_log_damage),
		cmocka_unit_test(vhd_footers),
		cmocka_unit_test(vhd_dynamic_header),
		cmocka_unit_test(vhd_bat),
		cmocka_unit_test(vhd_parent),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
