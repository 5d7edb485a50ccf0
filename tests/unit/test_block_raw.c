/* Raw disks and the block layer's front: probing, bounds, read-only,
 * locking, discard, resize; and the shared helpers (CRC-32C, GUIDs,
 * UTF-16, paths). */
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

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hvmm-raw-XXXXXX");
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

static void make_file(const char *p, uint64_t size, uint8_t fill)
{
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint8_t buf[4096];

	assert_true(fd >= 0);
	memset(buf, fill, sizeof(buf));
	for (uint64_t o = 0; o < size; o += sizeof(buf))
		assert_int_equal(pwrite(fd, buf, MIN(sizeof(buf), size - o), (off_t)o),
				 (ssize_t)MIN(sizeof(buf), size - o));
	close(fd);
}

static void raw_basics(void **state)
{
	const char *p = P("disk.raw");
	struct blk_error err = { "" };
	struct blk_disk *d;
	struct blk_info info;
	uint8_t buf[1024], back[1024];

	make_file(p, MiB, 0xab);
	d = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(d);
	blk_get_info(d, &info);
	assert_int_equal(info.format, BLK_FMT_RAW);
	assert_int_equal(info.size, MiB);
	assert_int_equal(info.logical_sector, 512);
	assert_false(info.read_only);
	assert_true(info.can_discard);
	assert_string_equal(d->drv->name, "raw");
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(blk_write(d, 512, buf, sizeof(buf), BLK_FUA), 0);
	assert_int_equal(blk_read(d, 512, back, sizeof(back)), 0);
	assert_memory_equal(buf, back, sizeof(buf));
	/* The caller's checks. */
	assert_int_equal(blk_read(d, 100, back, 512), -EINVAL);
	assert_int_equal(blk_read(d, 0, back, 100), -EINVAL);
	assert_int_equal(blk_read(d, MiB, back, 512), -ERANGE);
	assert_int_equal(blk_write(d, MiB - 512, buf, 1024, 0), -ERANGE);
	assert_int_equal(blk_read(d, 0, back, 0), 0);
	assert_int_equal(blk_flush(d), 0);
	/* Discard: zeros after. */
	assert_int_equal(blk_discard(d, 0, 64 * KiB), 0);
	assert_int_equal(blk_read(d, 512, back, sizeof(back)), 0);
	assert_true(blk_is_zero(back, sizeof(back)));
	blk_close(d);

	d = blk_open(p, BLK_FMT_RAW, BLK_OPEN_RDONLY, &err);
	assert_non_null(d);
	blk_get_info(d, &info);
	assert_true(info.read_only);
	assert_int_equal(blk_write(d, 0, buf, 512, 0), -EROFS);
	assert_int_equal(blk_discard(d, 0, 512), -EROFS);
	assert_int_equal(blk_resize(d, 2 * MiB), -EROFS);
	assert_int_equal(blk_flush(d), 0);
	blk_close(d);
}

static void raw_odd_size(void **state)
{
	const char *p = P("odd.raw");
	struct blk_error err = { "" };
	struct blk_disk *d;
	struct blk_info info;
	uint8_t back[512];

	make_file(p, 1000, 0xcd);
	d = blk_open(p, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);
	assert_non_null(d);
	blk_get_info(d, &info);
	assert_int_equal(info.size, 1024); /* rounded up, the tail reads zeros */
	assert_int_equal(blk_read(d, 512, back, 512), 0);
	assert_int_equal(back[0], 0xcd);
	assert_int_equal(back[1000 - 512 - 1], 0xcd);
	assert_int_equal(back[1000 - 512], 0);
	blk_close(d);
}

static void raw_resize(void **state)
{
	const char *p = P("rs.raw");
	struct blk_error err = { "" };
	struct blk_disk *d;
	struct blk_info info;
	uint8_t buf[512];

	make_file(p, MiB, 0);
	d = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(d);
	assert_int_equal(blk_resize(d, 4 * MiB), 0);
	blk_get_info(d, &info);
	assert_int_equal(info.size, 4 * MiB);
	memset(buf, 1, sizeof(buf));
	assert_int_equal(blk_write(d, 3 * MiB, buf, sizeof(buf), 0), 0);
	/* Shrinking would cut data off: refused. */
	assert_int_equal(blk_resize(d, 2 * MiB), -ENOTEMPTY);
	/* Only zeros beyond: fine. */
	assert_int_equal(blk_resize(d, 3 * MiB + 512), 0);
	assert_int_equal(blk_resize(d, 100 * 512), -ENOTEMPTY);
	blk_close(d);
	assert_int_equal(blk_image_resize(p, 2 * MiB, &err), -ENOTEMPTY);
	assert_non_null(strstr(err.msg, "would lose"));
}

static void probe_order(void **state)
{
	const char *v = P("p.vhdx"), *h = P("p.vhd"), *f = P("pf.vhd"), *r = P("p.img");
	struct blk_create_opts o = { .size = 4 * MiB };
	struct blk_error err = { "" };
	struct blk_disk *d;

	o.format = BLK_FMT_VHDX;
	assert_int_equal(blk_create(v, &o, &err), 0);
	o.format = BLK_FMT_VHD;
	assert_int_equal(blk_create(h, &o, &err), 0);
	o.type = BLK_TYPE_FIXED;
	assert_int_equal(blk_create(f, &o, &err), 0);
	make_file(r, MiB, 0x42);
	static const struct {
		const char *path;
		enum blk_format fmt;
	} want[] = { { NULL, BLK_FMT_VHDX }, { NULL, BLK_FMT_VHD }, { NULL, BLK_FMT_VHD },
		     { NULL, BLK_FMT_RAW } };
	const char *paths[] = { v, h, f, r };

	for (int i = 0; i < 4; i++) {
		struct blk_info info;

		d = blk_open(paths[i], BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);
		if (!d)
			fail_msg("%s: %s", paths[i], err.msg);
		blk_get_info(d, &info);
		assert_int_equal(info.format, want[i].fmt);
		blk_close(d);
	}
	/* An explicit format is obeyed: a VHDX read as raw. */
	d = blk_open(v, BLK_FMT_RAW, BLK_OPEN_RDONLY, &err);
	assert_non_null(d);
	blk_close(d);
	assert_null(blk_open(r, BLK_FMT_VHD, BLK_OPEN_RDONLY, &err));
	assert_non_null(strstr(err.msg, "not a VHD"));
	assert_null(blk_open(P("missing.raw"), BLK_FMT_AUTO, 0, &err));
	assert_non_null(strstr(err.msg, "No such file"));
}

static void names(void **state)
{
	assert_string_equal(blk_format_name(BLK_FMT_RAW), "raw");
	assert_string_equal(blk_format_name(BLK_FMT_VHD), "vhd");
	assert_string_equal(blk_format_name(BLK_FMT_VHDX), "vhdx");
	assert_null(blk_format_name(BLK_FMT_AUTO));
	assert_int_equal(blk_format_from_name("vhdx"), BLK_FMT_VHDX);
	assert_int_equal(blk_format_from_name("vhd"), BLK_FMT_VHD);
	assert_int_equal(blk_format_from_name("raw"), BLK_FMT_RAW);
	assert_int_equal(blk_format_from_name("qcow2"), BLK_FMT_AUTO);
	assert_int_equal(blk_format_from_name(NULL), BLK_FMT_AUTO);
}

static void not_a_file(void **state)
{
	const char *fifo = P("fifo");
	struct blk_error err = { "" };

	assert_int_equal(mkfifo(fifo, 0600), 0);
	/* Never blocks on a FIFO; refused. */
	assert_null(blk_open(fifo, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err));
	assert_non_null(strstr(err.msg, "not a regular file"));
	assert_null(blk_open(dir, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err));
}

static void locking(void **state)
{
	const char *p = P("lock.raw");
	struct blk_error err = { "" };
	struct blk_disk *a, *b;

	make_file(p, MiB, 0);
	a = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(a);
	b = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_null(b);
	assert_non_null(strstr(err.msg, "in use"));
	blk_close(a);
	b = blk_open(p, BLK_FMT_AUTO, 0, &err);
	assert_non_null(b);
	blk_close(b);
}

/* ---- helpers ---- */

static void crc32c_vectors(void **state)
{
	uint8_t zeros[32] = { 0 }, ones[32];

	memset(ones, 0xff, sizeof(ones));
	/* RFC 3720 B.4 and the classic check value. */
	assert_int_equal(blk_crc32c(0, "123456789", 9), 0xE3069283);
	assert_int_equal(blk_crc32c(0, zeros, 32), 0x8A9136AA);
	assert_int_equal(blk_crc32c(0, ones, 32), 0x62A8AB43);
	/* Chaining equals one pass. */
	assert_int_equal(blk_crc32c(blk_crc32c(0, "12345", 5), "6789", 4), 0xE3069283);
}

static void guids(void **state)
{
	static const struct blk_guid bat = BLK_GUID(0x2dc27766, 0xf623, 0x4200, 0x9d64,
						    0x115e9bfd4a08ULL);
	struct blk_guid g, r1, r2;
	char s[BLK_GUID_STR];

	blk_guid_format(&bat, s);
	assert_string_equal(s, "{2DC27766-F623-4200-9D64-115E9BFD4A08}");
	/* Microsoft's byte order: data1..3 little-endian. */
	assert_int_equal(bat.b[0], 0x66);
	assert_int_equal(bat.b[3], 0x2d);
	assert_int_equal(bat.b[8], 0x9d);
	assert_int_equal(blk_guid_parse("{2dc27766-f623-4200-9d64-115e9bfd4a08}", &g), 0);
	assert_true(blk_guid_eq(&g, &bat));
	assert_int_equal(blk_guid_parse("2dc27766-f623-4200-9d64-115e9bfd4a08", &g), 0);
	assert_true(blk_guid_eq(&g, &bat));
	assert_int_equal(blk_guid_parse("{2dc27766-f623-4200-9d64-115e9bfd4a0}", &g), -EINVAL);
	assert_int_equal(blk_guid_parse("{2dc27766-f623-4200-9d64-115e9bfd4a08", &g), -EINVAL);
	assert_int_equal(blk_guid_parse("2dc27766xf623-4200-9d64-115e9bfd4a08", &g), -EINVAL);
	assert_int_equal(blk_guid_parse("", &g), -EINVAL);
	assert_int_equal(blk_guid_random(&r1), 0);
	assert_int_equal(blk_guid_random(&r2), 0);
	assert_false(blk_guid_eq(&r1, &r2));
	assert_false(blk_guid_is_zero(&r1));
}

static void utf16(void **state)
{
	size_t n;
	uint8_t *u = blk_utf8_to_utf16("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", false, &n);
	char *back;

	assert_non_null(u);
	assert_int_equal(n, 2 * 5); /* a, é, €, and a surrogate pair */
	back = blk_utf16_to_utf8(u, n, false);
	assert_string_equal(back, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	free(back);
	free(u);
	/* Big-endian. */
	u = blk_utf8_to_utf16("AB", true, &n);
	assert_int_equal(u[0], 0);
	assert_int_equal(u[1], 'A');
	free(u);
	/* Lone surrogates, NULs, odd lengths: refused. */
	assert_null(blk_utf16_to_utf8((const uint8_t *)"\x00\xd8", 2, false));
	assert_null(blk_utf16_to_utf8((const uint8_t *)"\x00\xdc" "a\0", 4, false));
	assert_null(blk_utf16_to_utf8((const uint8_t *)"a\0\0\0", 4, false));
	assert_null(blk_utf16_to_utf8((const uint8_t *)"a", 1, false));
	assert_null(blk_utf8_to_utf16("\xff", false, &n));
}

static void paths(void **state)
{
	char a[300], b[300], *r;

	snprintf(a, sizeof(a), "%s/x", dir);
	mkdir(a, 0755);
	snprintf(a, sizeof(a), "%s/x/child.vhdx", dir);
	snprintf(b, sizeof(b), "%s/y", dir);
	mkdir(b, 0755);
	snprintf(b, sizeof(b), "%s/y/parent.vhdx", dir);
	r = blk_relative_path(a, b);
	assert_string_equal(r, "../y/parent.vhdx");
	free(r);
	snprintf(b, sizeof(b), "%s/x/parent.vhdx", dir);
	r = blk_relative_path(a, b);
	assert_string_equal(r, "parent.vhdx");
	free(r);
	r = blk_dirname("file");
	assert_string_equal(r, ".");
	free(r);
	r = blk_dirname("/file");
	assert_string_equal(r, "/");
	free(r);
	r = blk_path_join_dir("/a/b/c.vhdx", "../d.vhdx");
	assert_string_equal(r, "/a/b/../d.vhdx");
	free(r);
	r = blk_path_join_dir("/a/b/c.vhdx", "/abs.vhdx");
	assert_string_equal(r, "/abs.vhdx");
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(raw_basics),
		cmocka_unit_test(raw_odd_size),
		cmocka_unit_test(raw_resize),
		cmocka_unit_test(probe_order),
		cmocka_unit_test(names),
		cmocka_unit_test(not_a_file),
		cmocka_unit_test(locking),
		cmocka_unit_test(crc32c_vectors),
		cmocka_unit_test(guids),
		cmocka_unit_test(utf16),
		cmocka_unit_test(paths),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
