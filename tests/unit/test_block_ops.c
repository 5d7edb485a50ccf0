/* Image operations (convert, info, check, resize, merge, compact) and
 * the `hvctl vhd` commands' exit statuses. */
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
#include "hvctl/hvctl.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hvmm-ops-XXXXXX");
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
	static char bufs[16][256];
	static int i;
	char *b = bufs[i++ % 16];

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

static void create(const char *path, enum blk_format f, enum blk_type type, uint64_t size,
		   uint32_t bs, uint32_t lss, const char *parent)
{
	struct blk_create_opts o = { .format = f, .type = type, .size = size, .block_size = bs,
				     .logical_sector = lss, .parent = parent };
	struct blk_error err = { "" };

	if (blk_create(path, &o, &err))
		fail_msg("create %s: %s", path, err.msg);
}

static void write_pat(const char *path, uint64_t off, size_t len, unsigned seed)
{
	struct blk_error err = { "" };
	struct blk_disk *d = blk_open(path, BLK_FMT_AUTO, 0, &err);
	uint8_t *buf = malloc(len);

	if (!d)
		fail_msg("%s", err.msg);
	pattern(buf, len, off, seed);
	assert_int_equal(blk_write(d, off, buf, len, 0), 0);
	blk_close(d);
	free(buf);
}

/* Both disks read the same over the first `len` bytes. */
static void same_data(const char *a, const char *b, uint64_t len)
{
	struct blk_error err = { "" };
	struct blk_disk *da = blk_open(a, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err), *db;
	uint8_t *x = malloc(MiB), *y = malloc(MiB);

	if (!da)
		fail_msg("%s", err.msg);
	db = blk_open(b, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);
	if (!db)
		fail_msg("%s", err.msg);
	for (uint64_t o = 0; o < len; o += MiB) {
		size_t n = (size_t)MIN(MiB, len - o);

		assert_int_equal(blk_read(da, o, x, n), 0);
		assert_int_equal(blk_read(db, o, y, n), 0);
		if (memcmp(x, y, n))
			fail_msg("%s and %s differ in the MiB at %llu", a, b, (unsigned long long)o);
	}
	blk_close(da);
	blk_close(db);
	free(x);
	free(y);
}

static void convert_everything(void **state)
{
	const char *raw = P("src.raw"), *vx = P("a.vhdx"), *vh = P("b.vhd"), *back = P("c.raw");
	const char *fx = P("f.vhdx");
	struct blk_create_opts o = { 0 };
	struct blk_error err = { "" };
	struct blk_details det;
	struct stat st;

	/* A sparse raw disk with data in three places. */
	create(raw, BLK_FMT_RAW, BLK_TYPE_DYNAMIC, 100 * MiB, 0, 0, NULL);
	write_pat(raw, 0, MiB, 1);
	write_pat(raw, 50 * MiB + 512, 4096, 2);
	write_pat(raw, 100 * MiB - 4096, 4096, 3);

	o.format = BLK_FMT_VHDX;
	o.block_size = MiB;
	assert_int_equal(blk_convert(raw, vx, &o, NULL, &err), 0);
	assert_int_equal(blk_details(vx, &det, &err), 0);
	assert_int_equal(det.size, 100 * MiB);
	assert_int_equal(det.allocated, 3 * MiB); /* zeros stay unallocated */
	same_data(raw, vx, 100 * MiB);

	o.format = BLK_FMT_VHD;
	o.block_size = 0;
	assert_int_equal(blk_convert(vx, vh, &o, NULL, &err), 0);
	assert_int_equal(blk_details(vh, &det, &err), 0);
	assert_true(det.size >= 100 * MiB);
	assert_int_equal(det.allocated, 3 * 2 * MiB);
	same_data(raw, vh, 100 * MiB);

	o.format = BLK_FMT_RAW;
	assert_int_equal(blk_convert(vh, back, &o, NULL, &err), 0);
	same_data(raw, back, 100 * MiB);
	assert_int_equal(stat(back, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < 8 * MiB); /* sparse */

	o.format = BLK_FMT_VHDX;
	o.type = BLK_TYPE_FIXED;
	assert_int_equal(blk_convert(raw, fx, &o, NULL, &err), 0);
	assert_int_equal(blk_details(fx, &det, &err), 0);
	assert_int_equal(det.type, BLK_TYPE_FIXED);
	same_data(raw, fx, 100 * MiB);

	/* Never over an existing file; nothing from a missing one. */
	o.type = BLK_TYPE_DYNAMIC;
	assert_int_not_equal(blk_convert(raw, vx, &o, NULL, &err), 0);
	assert_non_null(strstr(err.msg, "exists"));
	assert_int_not_equal(blk_convert(P("nothing.raw"), P("x.vhdx"), &o, NULL, &err), 0);
	assert_int_equal(access(P("x.vhdx"), F_OK), -1);
}

static void convert_chain_and_4k(void **state)
{
	const char *base = P("cb.vhdx"), *child = P("cc.vhdx"), *flat = P("flat.raw");
	const char *k4 = P("k4.vhdx"), *k4raw = P("k4.raw"), *k4back = P("k4b.vhdx");
	struct blk_create_opts o = { .format = BLK_FMT_RAW };
	struct blk_error err = { "" };
	struct blk_details det;

	create(base, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, 0, NULL);
	write_pat(base, 0, 4 * MiB, 5);
	create(child, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, 0, base);
	write_pat(child, MiB + 512, 512, 6);
	assert_int_equal(blk_convert(child, flat, &o, NULL, &err), 0);
	same_data(child, flat, 16 * MiB);

	create(k4, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, 4096, NULL);
	write_pat(k4, 4096, 8192, 7);
	assert_int_equal(blk_convert(k4, k4raw, &o, NULL, &err), 0);
	same_data(k4, k4raw, 8 * MiB);
	o.format = BLK_FMT_VHDX;
	assert_int_equal(blk_convert(k4, k4back, &o, NULL, &err), 0);
	assert_int_equal(blk_details(k4back, &det, &err), 0);
	assert_int_equal(det.logical_sector, 4096); /* kept from the source */
	same_data(k4, k4back, 8 * MiB);
}

static void details(void **state)
{
	const char *r = P("i.raw"), *h = P("i.vhd"), *x = P("i.vhdx"), *c = P("ic.vhdx");
	struct blk_details d;
	struct blk_error err = { "" };

	create(r, BLK_FMT_RAW, BLK_TYPE_DYNAMIC, 3 * MiB, 0, 0, NULL);
	create(h, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 3 * MiB, 512 * KiB, 0, NULL);
	create(x, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 3 * MiB, 0, 4096, NULL);
	create(c, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, 0, 0, x);
	assert_int_equal(blk_details(r, &d, &err), 0);
	assert_int_equal(d.format, BLK_FMT_RAW);
	assert_int_equal(d.size, 3 * MiB);
	assert_int_equal(blk_details(h, &d, &err), 0);
	assert_int_equal(d.format, BLK_FMT_VHD);
	assert_int_equal(d.type, BLK_TYPE_DYNAMIC);
	assert_int_equal(d.block_size, 512 * KiB);
	assert_int_equal(blk_details(x, &d, &err), 0);
	assert_int_equal(d.block_size, 32 * MiB);
	assert_int_equal(d.logical_sector, 4096);
	assert_int_equal(d.physical_sector, 4096);
	assert_int_equal(d.file_size, 4 * MiB);
	assert_int_equal(d.allocated, 0);
	assert_int_equal(blk_details(c, &d, &err), 0);
	assert_int_equal(d.type, BLK_TYPE_DIFF);
	assert_int_equal(d.block_size, 2 * MiB);
	assert_non_null(strstr(d.parent, "i.vhdx"));
	/* Info still works when the parent is gone. */
	unlink(x);
	assert_int_equal(blk_details(c, &d, &err), 0);
	assert_non_null(strstr(d.parent, "i.vhdx"));
	assert_string_equal(blk_type_name(BLK_TYPE_FIXED), "fixed");
}

static void merge_vhd(void **state)
{
	const char *base = P("mb.vhd"), *child = P("mc.vhd");
	const char *copy = P("mcopy.raw");
	struct blk_create_opts o = { .format = BLK_FMT_RAW };
	struct blk_error err = { "" };
	char parent[4096];

	create(base, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 16 * MiB, 0, 0, NULL);
	write_pat(base, 0, 6 * MiB, 8);
	create(child, BLK_FMT_VHD, BLK_TYPE_DIFF, 0, 0, 0, base);
	write_pat(child, 3 * MiB + 1024, 1024, 9);
	write_pat(child, 12 * MiB, MiB, 9);
	assert_int_equal(blk_convert(child, copy, &o, NULL, &err), 0);
	assert_int_equal(blk_merge(child, parent, NULL, &err), 0);
	assert_int_equal(access(child, F_OK), -1);
	same_data(copy, base, 16 * MiB);
	/* A disk that is not a child. */
	assert_int_not_equal(blk_merge(base, NULL, NULL, &err), 0);
	assert_non_null(strstr(err.msg, "not a differencing disk"));
}

static void compact_raw(void **state)
{
	const char *r = P("cr.raw");
	struct blk_error err = { "" };
	struct stat st;
	uint64_t freed;
	int fd;
	uint8_t *z = calloc(1, 8 * MiB);

	fd = open(r, O_RDWR | O_CREAT, 0644);
	assert_int_equal(pwrite(fd, z, 8 * MiB, 0), 8 * MiB);
	close(fd);
	write_pat(r, 0, 4096, 1);
	assert_int_equal(blk_compact(r, NULL, &freed, &err), 0);
	assert_int_equal(stat(r, &st), 0);
	assert_int_equal(st.st_size, 8 * MiB);
	assert_true((uint64_t)st.st_blocks * 512 <= 2 * MiB);
	assert_true(freed >= 6 * MiB);
	free(z);
}

static void check_statuses(void **state)
{
	const char *r = P("chk.raw"), *j = P("junk.vhdx");
	struct blk_check_result res;
	struct blk_error err = { "" };
	int fd;

	create(r, BLK_FMT_RAW, BLK_TYPE_DYNAMIC, MiB, 0, 0, NULL);
	assert_int_equal(blk_check(r, BLK_FMT_AUTO, false, NULL, NULL, &res, &err), 0);
	assert_int_equal(res.corruptions + res.leaks, 0);
	fd = open(j, O_RDWR | O_CREAT, 0644);
	assert_int_equal(pwrite(fd, "vhdxfile", 8, 0), 8);
	assert_int_equal(ftruncate(fd, 4 * MiB), 0);
	close(fd);
	assert_int_equal(blk_check(j, BLK_FMT_AUTO, false, NULL, NULL, &res, &err), 0);
	assert_int_equal(res.corruptions, 1);
	assert_int_not_equal(blk_check(P("none.vhdx"), BLK_FMT_AUTO, false, NULL, NULL, &res, &err), 0);
}

/* ---- hvctl vhd ---- */

static int hvctl(const char *fmt, ...)
{
	char line[1024], *argv[32];
	int argc = 0;
	va_list ap;
	FILE *devnull = fopen("/dev/null", "w");
	int ret;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	argv[argc++] = "hvctl";
	for (char *t = strtok(line, " "); t && argc < 31; t = strtok(NULL, " "))
		argv[argc++] = t;
	argv[argc] = NULL;
	/* vhd commands print to the process's stdout and stderr: quiet them. */
	fflush(stdout);
	fflush(stderr);
	int out = dup(1), err = dup(2);

	dup2(fileno(devnull), 1);
	dup2(fileno(devnull), 2);
	ret = hvctl_main(argc, argv, devnull, devnull);
	fflush(stdout);
	fflush(stderr);
	dup2(out, 1);
	dup2(err, 2);
	close(out);
	close(err);
	fclose(devnull);
	return ret;
}

static void hvctl_commands(void **state)
{
	const char *a = P("h.vhdx"), *b = P("h2.vhdx"), *c = P("h.vhd"), *r = P("h.raw");
	const char *x = P("h.qcow2");
	int fd;

	/* Usage errors: 2. */
	assert_int_equal(hvctl("vhd new %s", a), 2);
	assert_int_equal(hvctl("vhd new %s --size 1X", a), 2);
	assert_int_equal(hvctl("vhd new %s --size 1M --fixed --parent %s", a, b), 2);
	assert_int_equal(hvctl("vhd new %s --size 1M", x), 2);
	assert_int_equal(hvctl("vhd new %s --size 1M --format qcow2", a), 2);
	assert_int_equal(hvctl("vhd new %s --size 1M --sector-size 1024", a), 2);
	assert_int_equal(hvctl("vhd new %s --size 1M --block-size 3M", a), 2);
	assert_int_equal(hvctl("vhd new %s --size 1M --bogus", a), 2);
	assert_int_equal(hvctl("vhd info"), 2);
	assert_int_equal(hvctl("vhd convert %s", a), 2);
	assert_int_equal(hvctl("vhd resize %s", a), 2);
	assert_int_equal(hvctl("vhd frobnicate"), 2);
	assert_int_equal(hvctl("vhd"), 0);

	/* The work. */
	assert_int_equal(hvctl("vhd new %s --size 64M", a), 0);
	assert_int_equal(hvctl("vhd new %s --size 64M", a), 1); /* exists */
	assert_int_equal(hvctl("vhd new %s --parent %s", b, a), 0);
	assert_int_equal(hvctl("vhd info %s", b), 0);
	assert_int_equal(hvctl("vhd info %s --json", b), 0);
	assert_int_equal(hvctl("vhd check %s", b), 0);
	assert_int_equal(hvctl("vhd convert %s %s", b, c), 0);
	assert_int_equal(hvctl("vhd convert %s %s --format raw", c, r), 0);
	assert_int_equal(hvctl("vhd merge %s", b), 0);
	assert_int_equal(hvctl("vhd resize %s --size 128M", a), 0);
	assert_int_equal(hvctl("vhd resize %s --size 32M", a), 1); /* VHDX only grows */
	assert_int_equal(hvctl("vhd compact %s", a), 0);
	assert_int_equal(hvctl("vhd info %s", P("missing.vhdx")), 1);

	/* check: 3 for leaks only, 2 for corruption. */
	c = P("leaky.vhd");
	assert_int_equal(hvctl("vhd new %s --size 16M", c), 0);
	{
		struct stat st;
		uint8_t junk[4096], foot[512];

		assert_int_equal(stat(c, &st), 0);
		fd = open(c, O_RDWR);
		assert_int_equal(pread(fd, foot, 512, st.st_size - 512), 512);
		memset(junk, 0x5a, sizeof(junk));
		assert_int_equal(pwrite(fd, junk, sizeof(junk), st.st_size - 512), 4096);
		assert_int_equal(pwrite(fd, foot, 512, st.st_size - 512 + 4096), 512);
		close(fd);
	}
	assert_int_equal(hvctl("vhd check %s", c), 3);
	assert_int_equal(hvctl("vhd check %s --repair", c), 0);
	assert_int_equal(hvctl("vhd check %s", c), 0);
	fd = open(c, O_RDWR);
	assert_int_equal(pwrite(fd, "XXXX", 4, 512 + 16), 4); /* the BAT offset */
	close(fd);
	assert_int_equal(hvctl("vhd check %s", c), 2);
	assert_int_equal(hvctl("vhd check %s", P("gone.vhd")), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(convert_everything),
		cmocka_unit_test(convert_chain_and_4k),
		cmocka_unit_test(details),
		cmocka_unit_test(merge_vhd),
		cmocka_unit_test(compact_raw),
		cmocka_unit_test(check_statuses),
		cmocka_unit_test(hvctl_commands),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
