/* Legacy VHD: CHS sizes, fixed, dynamic and differencing disks, discard,
 * resize (both ways), compact, leaks. */
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

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hvmm-vhd-XXXXXX");
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

static void pattern(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = (off + i) * 0x9E3779B97F4A7C15ULL ^ seed;

		memcpy(buf + i, &v, MIN(8, len - i));
	}
}

static void create(const char *path, enum blk_type type, uint64_t size, uint32_t bs,
		   const char *parent)
{
	struct blk_create_opts o = { .format = BLK_FMT_VHD, .type = type, .size = size,
				     .block_size = bs, .parent = parent };
	struct blk_error err = { "" };

	if (blk_create(path, &o, &err))
		fail_msg("create %s: %s", path, err.msg);
}

static struct blk_disk *open_disk(const char *path, unsigned flags)
{
	struct blk_error err = { "" };
	struct blk_disk *d = blk_open(path, BLK_FMT_AUTO, flags, &err);

	if (!d)
		fail_msg("open %s: %s", path, err.msg);
	return d;
}

static void write_pat(struct blk_disk *d, uint64_t off, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len);

	pattern(buf, len, off, seed);
	assert_int_equal(blk_write(d, off, buf, len, 0), 0);
	free(buf);
}

static void check_pat(struct blk_disk *d, uint64_t off, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len), *want = malloc(len);

	pattern(want, len, off, seed);
	assert_int_equal(blk_read(d, off, buf, len), 0);
	if (memcmp(buf, want, len))
		fail_msg("data differs in [%llu, +%zu)", (unsigned long long)off, len);
	free(buf);
	free(want);
}

static void check_zero(struct blk_disk *d, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);

	assert_int_equal(blk_read(d, off, buf, len), 0);
	assert_true(blk_is_zero(buf, len));
	free(buf);
}

static void assert_clean(const char *path)
{
	struct blk_check_result r;
	struct blk_error err = { "" };

	assert_int_equal(blk_check(path, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	if (r.corruptions || r.leaks || r.repairable)
		fail_msg("%s: %u corruptions, %u leaks, %u repairable", path, r.corruptions, r.leaks,
			 r.repairable);
}

static uint64_t fsize(const char *p)
{
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	return (uint64_t)st.st_size;
}

static void chs_sizes(void **state)
{
	static const struct {
		uint64_t asked, got;
	} cases[] = {
		{ 64 * MiB, 67125248 },        /* what qemu-img create -f vpc 64M makes */
		{ GiB, 1073995776 },
		{ 10 * MiB, 10485760 + 0 },    /* filled in below */
		{ 200 * GiB, 200 * GiB },      /* past the largest geometry: exact */
	};

	for (size_t i = 0; i < 4; i++) {
		const char *p = P("chs.vhd");
		struct blk_disk *d;
		struct blk_info info;
		struct vhd_footer f;
		int fd;

		create(p, BLK_TYPE_DYNAMIC, cases[i].asked, 0, NULL);
		d = open_disk(p, BLK_OPEN_RDONLY);
		blk_get_info(d, &info);
		blk_close(d);
		assert_true(info.size >= cases[i].asked);
		if (i != 2)
			assert_int_equal(info.size, cases[i].got);
		/* The footer's geometry describes the size exactly (below the max). */
		fd = open(p, O_RDONLY);
		assert_int_equal(blk_pread(fd, &f, 512, fsize(p) - 512), 0);
		close(fd);
		if (info.size < 65535ULL * 16 * 255 * 512)
			assert_int_equal((uint64_t)be16toh(f.cylinders) * f.heads * f.sectors_per_track * 512,
					 info.size);
		else
			assert_int_equal(be16toh(f.cylinders), 65535);
	}
}

static void dynamic_roundtrip(void **state)
{
	const char *p = P("dyn.vhd");
	struct blk_disk *d;
	struct blk_info info;
	struct vhd_footer a, b;
	int fd;

	create(p, BLK_TYPE_DYNAMIC, 32 * MiB, 0, NULL);
	assert_clean(p);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	assert_int_equal(info.format, BLK_FMT_VHD);
	write_pat(d, 0, 4096, 1);
	write_pat(d, 2 * MiB - 512, 1024, 2); /* across blocks */
	write_pat(d, info.size - 512, 512, 3);
	check_zero(d, 8 * MiB, MiB);
	blk_close(d);
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, 0, 4096, 1);
	check_pat(d, 2 * MiB - 512, 1024, 2);
	check_pat(d, info.size - 512, 512, 3);
	check_zero(d, 4096, MiB);
	blk_close(d);
	assert_clean(p);
	/* Both footers alike. */
	fd = open(p, O_RDONLY);
	assert_int_equal(blk_pread(fd, &a, 512, 0), 0);
	assert_int_equal(blk_pread(fd, &b, 512, fsize(p) - 512), 0);
	close(fd);
	assert_memory_equal(&a, &b, 512);
}

static void fixed_roundtrip(void **state)
{
	const char *p = P("fixed.vhd");
	struct blk_disk *d;
	struct blk_info info;

	create(p, BLK_TYPE_FIXED, 4 * MiB, 0, NULL);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	assert_int_equal(fsize(p), info.size + 512);
	write_pat(d, MiB, 8192, 4);
	blk_close(d);
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, MiB, 8192, 4);
	blk_close(d);
	assert_int_equal(fsize(p), info.size + 512);
	assert_clean(p);
}

static void differencing(void **state)
{
	const char *base = P("base.vhd"), *mid = P("mid.vhd"), *top = P("top.vhd");
	struct blk_disk *d;
	struct blk_details det;
	struct blk_error err;
	struct blk_create_opts o = { .format = BLK_FMT_VHD, .type = BLK_TYPE_DIFF, .size = 8 * MiB,
				     .parent = NULL };

	create(base, BLK_TYPE_DYNAMIC, 16 * MiB, 0, NULL);
	d = open_disk(base, 0);
	write_pat(d, 0, 4 * MiB, 10);
	blk_close(d);
	create(mid, BLK_TYPE_DIFF, 0, 0, base);
	d = open_disk(mid, 0);
	write_pat(d, 512, 1024, 11);
	write_pat(d, 3 * MiB, MiB, 12);
	assert_int_equal(blk_discard(d, MiB, 4096), 0); /* zeros over the parent */
	blk_close(d);
	create(top, BLK_TYPE_DIFF, 0, 0, mid);
	d = open_disk(top, 0);
	write_pat(d, 2048, 512, 13);
	blk_close(d);
	d = open_disk(top, BLK_OPEN_RDONLY);
	check_pat(d, 0, 512, 10);
	check_pat(d, 512, 1024, 11);
	check_pat(d, 1536, 512, 10);
	check_pat(d, 2048, 512, 13);
	check_pat(d, 2560, MiB - 2560, 10);
	check_zero(d, MiB, 4096);
	check_pat(d, MiB + 4096, 2 * MiB - 4096, 10);
	check_pat(d, 3 * MiB, MiB, 12);
	check_zero(d, 8 * MiB, MiB);
	blk_close(d);
	assert_int_equal(blk_details(top, &det, &err), 0);
	assert_int_equal(det.type, BLK_TYPE_DIFF);
	assert_non_null(strstr(det.parent, "mid.vhd"));
	assert_clean(base);
	assert_clean(mid);
	assert_clean(top);
	/* A child has its parent's size. */
	o.parent = base;
	assert_int_not_equal(blk_create(P("bad.vhd"), &o, &err), 0);
	assert_non_null(strstr(err.msg, "parent's size"));
}

static void discard(void **state)
{
	const char *p = P("trim.vhd");
	struct blk_disk *d;
	struct blk_details det;
	struct blk_error err;

	create(p, BLK_TYPE_DYNAMIC, 16 * MiB, 0, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, 8 * MiB, 20);
	assert_int_equal(blk_discard(d, 2 * MiB, 4 * MiB), 0);
	assert_int_equal(blk_discard(d, 512, 1024), 0);
	check_pat(d, 0, 512, 20);
	check_zero(d, 512, 1024);
	check_pat(d, 1536, 2 * MiB - 1536, 20);
	check_zero(d, 2 * MiB, 4 * MiB);
	check_pat(d, 6 * MiB, 2 * MiB, 20);
	blk_close(d);
	assert_int_equal(blk_details(p, &det, &err), 0);
	assert_int_equal(det.allocated, 4 * MiB);
	assert_clean(p);
}

static void resize(void **state)
{
	const char *p = P("rs.vhd"), *f = P("rsf.vhd");
	struct blk_disk *d;
	struct blk_info info;
	struct blk_error err = { "" };
	uint64_t s0;

	/* 4 KiB blocks: the BAT must move to hold 4x the entries. */
	create(p, BLK_TYPE_DYNAMIC, 4 * MiB, 4096, NULL);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	s0 = info.size;
	write_pat(d, 0, 8192, 30);
	write_pat(d, s0 - 8192, 8192, 31);
	assert_int_equal(blk_resize(d, 16 * MiB), 0);
	write_pat(d, 16 * MiB - 4096, 4096, 32);
	/* Shrinking over data: refused; over zeros: fine. */
	assert_int_equal(blk_resize(d, 8 * MiB), -ENOTEMPTY);
	blk_close(d);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	assert_int_equal(info.size, 16 * MiB);
	check_pat(d, 0, 8192, 30);
	check_pat(d, s0 - 8192, 8192, 31);
	check_zero(d, s0, 4096);
	check_pat(d, 16 * MiB - 4096, 4096, 32);
	assert_int_equal(blk_discard(d, 8 * MiB, 8 * MiB), 0);
	assert_int_equal(blk_resize(d, 8 * MiB), 0);
	blk_close(d);
	assert_clean(p);

	/* Fixed: grow and shrink move the footer. */
	create(f, BLK_TYPE_FIXED, 2 * MiB, 0, NULL);
	assert_int_equal(blk_image_resize(f, 6 * MiB, &err), 0);
	d = open_disk(f, 0);
	blk_get_info(d, &info);
	assert_true(info.size >= 6 * MiB);
	check_zero(d, 0, info.size);
	write_pat(d, MiB, 4096, 33);
	blk_close(d);
	assert_int_equal(fsize(f), info.size + 512);
	assert_int_equal(blk_image_resize(f, 3 * MiB, &err), 0);
	d = open_disk(f, BLK_OPEN_RDONLY);
	check_pat(d, MiB, 4096, 33);
	blk_close(d);
	assert_int_equal(blk_image_resize(f, 512 * KiB, &err), -ENOTEMPTY);
	assert_clean(f);
}

static void leaks_and_repair(void **state)
{
	const char *p = P("leak.vhd");
	struct blk_disk *d;
	struct blk_check_result r;
	struct blk_error err = { "" };
	struct vhd_footer f;
	uint8_t junk[4096];
	uint64_t end;
	int fd;

	create(p, BLK_TYPE_DYNAMIC, 16 * MiB, 0, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, MiB, 40);
	blk_close(d);
	/* A block nobody refers to before the footer, as a crash leaves. */
	end = fsize(p) - 512;
	fd = open(p, O_RDWR);
	assert_int_equal(blk_pread(fd, &f, 512, end), 0);
	memset(junk, 0x99, sizeof(junk));
	for (uint64_t o = 0; o < 2 * MiB + 512; o += sizeof(junk))
		assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)(end + o)), (ssize_t)sizeof(junk));
	assert_int_equal(pwrite(fd, &f, 512, (off_t)(end + 2 * MiB + 512)), 512);
	assert_int_equal(ftruncate(fd, (off_t)(end + 2 * MiB + 1024)), 0);
	close(fd);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.corruptions, 0);
	assert_true(r.leaks > 0);
	assert_true(r.leaked_bytes >= 2 * MiB);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, true, NULL, NULL, &r, &err), 0);
	assert_true(r.fixed > 0);
	assert_clean(p);
	assert_int_equal(fsize(p), end + 512);
	d = open_disk(p, 0);
	check_pat(d, 0, MiB, 40);
	write_pat(d, 10 * MiB, 4096, 41);
	blk_close(d);
	assert_clean(p);
}

static void compact(void **state)
{
	const char *p = P("cmp.vhd");
	struct blk_disk *d;
	struct blk_error err = { "" };
	uint64_t freed, before;
	uint8_t *z = calloc(1, 4 * MiB);

	create(p, BLK_TYPE_DYNAMIC, 32 * MiB, 0, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, MiB, 50);
	assert_int_equal(blk_write(d, 2 * MiB, z, 4 * MiB, 0), 0);
	write_pat(d, 30 * MiB, MiB, 51);
	blk_close(d);
	before = fsize(p);
	assert_int_equal(blk_compact(p, NULL, &freed, &err), 0);
	assert_int_equal(fsize(p), before - 4 * MiB - 2 * 512);
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, 0, MiB, 50);
	check_zero(d, MiB, 28 * MiB);
	check_pat(d, 30 * MiB, MiB, 51);
	blk_close(d);
	assert_clean(p);
	free(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(chs_sizes),
		cmocka_unit_test(dynamic_roundtrip),
		cmocka_unit_test(fixed_roundtrip),
		cmocka_unit_test(differencing),
		cmocka_unit_test(discard),
		cmocka_unit_test(resize),
		cmocka_unit_test(leaks_and_repair),
		cmocka_unit_test(compact),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
