/* VHDX: create, open, read, write, allocate, flush, reopen; differencing
 * chains; 4 KiB sectors; discard; resize; the log (replay of an entry a
 * "crash" left between writing and applying it); threads. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include "block/vhdx_internal.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hvmm-vhdx-XXXXXX");
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

static void create(const char *path, enum blk_type type, uint64_t size, uint32_t bs, uint32_t lss,
		   const char *parent)
{
	struct blk_create_opts o = { .format = BLK_FMT_VHDX, .type = type, .size = size,
				     .block_size = bs, .logical_sector = lss, .parent = parent };
	struct blk_error err = { "" };
	int ret = blk_create(path, &o, &err);

	if (ret)
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
		fail_msg("data differs in [%llu, +%zu) (seed %u)", (unsigned long long)off, len, seed);
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

static void assert_check_clean(const char *path)
{
	struct blk_check_result r;
	struct blk_error err = { "" };

	assert_int_equal(blk_check(path, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	if (r.corruptions || r.leaks || r.repairable)
		fail_msg("%s: %u corruptions, %u leaks, %u repairable", path, r.corruptions, r.leaks,
			 r.repairable);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* ---- basic ---- */

static void dynamic_roundtrip(void **state)
{
	const char *p = P("dyn.vhdx");
	struct blk_disk *d;
	struct blk_info info;

	create(p, BLK_TYPE_DYNAMIC, 100 * MiB, 0, 0, NULL);
	assert_check_clean(p);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	assert_int_equal(info.format, BLK_FMT_VHDX);
	assert_int_equal(info.size, 100 * MiB);
	assert_int_equal(info.logical_sector, 512);
	check_zero(d, 0, MiB);
	write_pat(d, 0, 4096, 1);
	write_pat(d, 33 * MiB - 512, 1024, 2);     /* across two blocks */
	write_pat(d, 100 * MiB - 512, 512, 3);     /* the last sector */
	assert_int_equal(blk_flush(d), 0);
	check_pat(d, 0, 4096, 1);
	blk_close(d);

	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, 0, 4096, 1);
	check_pat(d, 33 * MiB - 512, 1024, 2);
	check_pat(d, 100 * MiB - 512, 512, 3);
	check_zero(d, 4096, MiB);
	check_zero(d, 64 * MiB, MiB);
	assert_int_equal(blk_write(d, 0, "x", 512, 0), -EROFS);
	blk_close(d);
	assert_check_clean(p);
	/* New blocks are 1 MiB aligned at the end; 3 blocks of 32 MiB. */
	assert_int_equal(file_size(p) % MiB, 0);
}

static void fixed_roundtrip(void **state)
{
	const char *p = P("fixed.vhdx");
	struct blk_disk *d;
	struct blk_details det;
	struct blk_error err;
	uint64_t size_before;

	create(p, BLK_TYPE_FIXED, 10 * MiB, 1 * MiB, 0, NULL);
	size_before = file_size(p);
	assert_true(size_before >= 10 * MiB);
	assert_int_equal(blk_details(p, &det, &err), 0);
	assert_int_equal(det.type, BLK_TYPE_FIXED);
	assert_int_equal(det.allocated, 10 * MiB);
	d = open_disk(p, 0);
	write_pat(d, 3 * MiB + 512, 8192, 4);
	blk_close(d);
	assert_int_equal(file_size(p), size_before); /* nothing allocated */
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, 3 * MiB + 512, 8192, 4);
	blk_close(d);
	assert_check_clean(p);
}

static void sector_4k(void **state)
{
	const char *p = P("4k.vhdx"), *c = P("4k-child.vhdx");
	struct blk_disk *d;
	struct blk_info info;
	uint8_t buf[4096];

	create(p, BLK_TYPE_DYNAMIC, 64 * MiB, 1 * MiB, 4096, NULL);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	assert_int_equal(info.logical_sector, 4096);
	assert_int_equal(info.physical_sector, 4096);
	/* Whole logical sectors only. */
	assert_int_equal(blk_write(d, 512, buf, 512, 0), -EINVAL);
	assert_int_equal(blk_read(d, 0, buf, 512), -EINVAL);
	write_pat(d, 8192, 3 * 4096, 5);
	blk_close(d);
	/* A child of a 4 KiB disk: bitmaps count 4 KiB sectors. */
	create(c, BLK_TYPE_DIFF, 0, 0, 0, p);
	d = open_disk(c, 0);
	blk_get_info(d, &info);
	assert_int_equal(info.logical_sector, 4096);
	write_pat(d, 12288, 4096, 6); /* overwrites the parent's third sector */
	blk_close(d);
	d = open_disk(c, BLK_OPEN_RDONLY);
	check_pat(d, 8192, 4096, 5);
	check_pat(d, 12288, 4096, 6);
	check_pat(d, 16384, 4096, 5);
	blk_close(d);
	assert_check_clean(p);
	assert_check_clean(c);
}

static void block_sizes(void **state)
{
	static const uint32_t sizes[] = { 1 * MiB, 8 * MiB, 256 * MiB };

	for (size_t i = 0; i < 3; i++) {
		const char *p = P("bs.vhdx");
		struct blk_disk *d;
		struct blk_details det;
		struct blk_error err;

		create(p, BLK_TYPE_DYNAMIC, 600 * MiB, sizes[i], 0, NULL);
		d = open_disk(p, 0);
		write_pat(d, 300 * MiB - 4096, 8192, 7);
		blk_close(d);
		d = open_disk(p, BLK_OPEN_RDONLY);
		check_pat(d, 300 * MiB - 4096, 8192, 7);
		check_zero(d, 0, 4096);
		blk_close(d);
		assert_int_equal(blk_details(p, &det, &err), 0);
		assert_int_equal(det.block_size, sizes[i]);
		assert_check_clean(p);
	}
}

static void bad_create_options(void **state)
{
	struct blk_create_opts o = { .format = BLK_FMT_VHDX, .size = MiB };
	struct blk_error err = { "" };

	o.block_size = 3 * MiB;
	assert_int_not_equal(blk_create(P("bad.vhdx"), &o, &err), 0);
	assert_non_null(strstr(err.msg, "block size"));
	o.block_size = 512 * MiB;
	assert_int_not_equal(blk_create(P("bad.vhdx"), &o, &err), 0);
	o.block_size = 0;
	o.logical_sector = 1024;
	assert_int_not_equal(blk_create(P("bad.vhdx"), &o, &err), 0);
	o.logical_sector = 0;
	o.size = 65 * TiB;
	assert_int_not_equal(blk_create(P("bad.vhdx"), &o, &err), 0);
	assert_non_null(strstr(err.msg, "64 TiB"));
	/* Never over an existing file. */
	o.size = MiB;
	assert_int_equal(blk_create(P("exists.vhdx"), &o, &err), 0);
	assert_int_equal(blk_create(P("exists.vhdx") /* unlinks */, &o, &err), 0);
	{
		char path[256];

		snprintf(path, sizeof(path), "%s/exists.vhdx", dir);
		assert_int_equal(blk_create(path, &o, &err), -EEXIST);
		assert_non_null(strstr(err.msg, "exists"));
	}
}

/* ---- differencing ---- */

static void differencing_chain(void **state)
{
	const char *base = P("base.vhdx"), *mid = P("mid.vhdx"), *top = P("top.vhdx");
	struct blk_disk *d;
	struct blk_details det;
	struct blk_error err;

	create(base, BLK_TYPE_DYNAMIC, 64 * MiB, 4 * MiB, 0, NULL);
	d = open_disk(base, 0);
	write_pat(d, 0, 2 * MiB, 10);
	write_pat(d, 20 * MiB, MiB, 11);
	blk_close(d);

	create(mid, BLK_TYPE_DIFF, 0, 0, 0, base);
	d = open_disk(mid, 0);
	write_pat(d, 512, 1024, 12);           /* partial: bitmap sectors 1-2 */
	write_pat(d, 10 * MiB, 2 * MiB, 13);   /* a whole 2 MiB block: fully present */
	assert_int_equal(blk_discard(d, 20 * MiB, 2 * MiB), 0); /* zeros hide the parent */
	blk_close(d);

	create(top, BLK_TYPE_DIFF, 0, 0, 0, mid);
	d = open_disk(top, 0);
	write_pat(d, 4096, 512, 14);
	blk_close(d);

	d = open_disk(top, BLK_OPEN_RDONLY);
	check_pat(d, 0, 512, 10);
	check_pat(d, 512, 1024, 12);
	check_pat(d, 1536, 2560, 10);
	check_pat(d, 4096, 512, 14);
	check_pat(d, 4608, 2 * MiB - 4608, 10);
	check_pat(d, 10 * MiB, 2 * MiB, 13);
	check_zero(d, 20 * MiB, MiB);
	check_zero(d, 30 * MiB, MiB);
	blk_close(d);

	/* The base is untouched. */
	d = open_disk(base, BLK_OPEN_RDONLY);
	check_pat(d, 0, 2 * MiB, 10);
	check_pat(d, 20 * MiB, MiB, 11);
	blk_close(d);

	assert_int_equal(blk_details(top, &det, &err), 0);
	assert_int_equal(det.type, BLK_TYPE_DIFF);
	assert_non_null(strstr(det.parent, "mid.vhdx"));
	assert_int_equal(det.allocated, 512);
	assert_check_clean(base);
	assert_check_clean(mid);
	assert_check_clean(top);
}

static void parent_modified_refused(void **state)
{
	const char *base = P("pm-base.vhdx"), *child = P("pm-child.vhdx");
	struct blk_disk *d;
	struct blk_error err = { "" };
	struct blk_check_result r;

	create(base, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, 0, NULL);
	create(child, BLK_TYPE_DIFF, 0, 0, 0, base);
	d = open_disk(base, 0);
	write_pat(d, 0, 4096, 1); /* a new DataWriteGuid */
	blk_close(d);
	assert_null(blk_open(child, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err));
	assert_non_null(strstr(err.msg, "has changed"));
	assert_int_equal(blk_check(child, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.corruptions, 1);
}

static void parent_missing_refused(void **state)
{
	const char *base = P("miss-base.vhdx"), *child = P("miss-child.vhdx");
	struct blk_error err = { "" };

	create(base, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, 0, NULL);
	create(child, BLK_TYPE_DIFF, 0, 0, 0, base);
	unlink(base);
	assert_null(blk_open(child, BLK_FMT_AUTO, 0, &err));
	assert_non_null(strstr(err.msg, "parent"));
}

static void parent_relative_after_move(void **state)
{
	/* The relative path is tried first: a moved pair still opens. */
	char sub[256], b2[300], c2[300];
	const char *base = P("mv-base.vhdx"), *child = P("mv-child.vhdx");
	struct blk_disk *d;

	create(base, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, 0, NULL);
	d = open_disk(base, 0);
	write_pat(d, 0, 4096, 3);
	blk_close(d);
	create(child, BLK_TYPE_DIFF, 0, 0, 0, base);
	snprintf(sub, sizeof(sub), "%s/moved", dir);
	mkdir(sub, 0755);
	snprintf(b2, sizeof(b2), "%s/mv-base.vhdx", sub);
	snprintf(c2, sizeof(c2), "%s/mv-child.vhdx", sub);
	assert_int_equal(rename(base, b2), 0);
	assert_int_equal(rename(child, c2), 0);
	d = open_disk(c2, BLK_OPEN_RDONLY);
	check_pat(d, 0, 4096, 3);
	blk_close(d);
}

/* ---- discard, resize ---- */

static void discard_dynamic(void **state)
{
	const char *p = P("trim.vhdx");
	struct blk_disk *d;
	struct blk_details det;
	struct blk_error err;
	struct blk_info info;

	create(p, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, 0, NULL);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	assert_true(info.can_discard);
	write_pat(d, 0, 4 * MiB, 20);
	assert_int_equal(blk_discard(d, MiB, 2 * MiB), 0);      /* two whole blocks */
	assert_int_equal(blk_discard(d, 3 * MiB + 4096, 4096), 0); /* part of one */
	check_pat(d, 0, MiB, 20);
	check_zero(d, MiB, 2 * MiB);
	check_pat(d, 3 * MiB, 4096, 20);
	check_zero(d, 3 * MiB + 4096, 4096);
	check_pat(d, 3 * MiB + 8192, MiB - 8192, 20);
	blk_close(d);
	assert_int_equal(blk_details(p, &det, &err), 0);
	assert_int_equal(det.allocated, 2 * MiB);
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_zero(d, MiB, 2 * MiB);
	blk_close(d);
	assert_check_clean(p);
	/* Writing there again allocates a fresh block. */
	d = open_disk(p, 0);
	write_pat(d, MiB + 512, 512, 21);
	check_zero(d, MiB, 512);
	check_pat(d, MiB + 512, 512, 21);
	blk_close(d);
	assert_check_clean(p);
}

static void resize_grow(void **state)
{
	const char *p = P("grow.vhdx"), *f = P("grow-fixed.vhdx");
	struct blk_disk *d;
	struct blk_info info;

	/* In place: the BAT region has room. */
	create(p, BLK_TYPE_DYNAMIC, 10 * MiB, MiB, 0, NULL);
	d = open_disk(p, 0);
	write_pat(d, 9 * MiB, MiB, 30);
	assert_int_equal(blk_resize(d, 20 * MiB), 0);
	blk_get_info(d, &info);
	assert_int_equal(info.size, 20 * MiB);
	write_pat(d, 19 * MiB, MiB, 31);
	assert_int_equal(blk_resize(d, 5 * MiB), -EOPNOTSUPP); /* never shrinks */
	blk_close(d);
	assert_check_clean(p);
	/* Far past what the BAT region holds: it moves. 1 MiB blocks, 1 MiB
	 * of BAT = 128 Ki entries -> 200 GiB needs more. */
	d = open_disk(p, 0);
	assert_int_equal(blk_resize(d, 200 * GiB), 0);
	write_pat(d, 200 * GiB - MiB, MiB, 32);
	blk_close(d);
	d = open_disk(p, BLK_OPEN_RDONLY);
	blk_get_info(d, &info);
	assert_int_equal(info.size, 200 * GiB);
	check_pat(d, 9 * MiB, MiB, 30);
	check_pat(d, 19 * MiB, MiB, 31);
	check_pat(d, 200 * GiB - MiB, MiB, 32);
	check_zero(d, 100 * GiB, MiB);
	blk_close(d);
	assert_check_clean(p);

	/* Fixed disks get their new blocks allocated. */
	create(f, BLK_TYPE_FIXED, 3 * MiB, MiB, 0, NULL);
	d = open_disk(f, 0);
	write_pat(d, 0, 3 * MiB, 33);
	assert_int_equal(blk_resize(d, 6 * MiB), 0);
	write_pat(d, 5 * MiB, MiB, 34);
	blk_close(d);
	d = open_disk(f, BLK_OPEN_RDONLY);
	check_pat(d, 0, 3 * MiB, 33);
	check_zero(d, 3 * MiB, 2 * MiB);
	check_pat(d, 5 * MiB, MiB, 34);
	blk_close(d);
	assert_check_clean(f);
}

/* ---- the log ---- */

static uint32_t file_crc(const char *path)
{
	int fd = open(path, O_RDONLY);
	uint8_t *buf = malloc(MiB);
	uint32_t crc = 0;
	ssize_t n;

	assert_true(fd >= 0);
	while ((n = read(fd, buf, MiB)) > 0)
		crc = blk_crc32c(crc, buf, (size_t)n);
	close(fd);
	free(buf);
	return crc;
}

static void log_replay(void **state)
{
	const char *p = P("log.vhdx");
	struct blk_disk *d;
	struct blk_details det;
	struct blk_error err = { "" };
	struct blk_check_result r;
	uint32_t crc;

	create(p, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, 0, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, 4096, 40);
	/* The next allocation "crashes" after its log entry is durable and
	 * before the BAT is written. */
	vhdx_test_stop_after_log = true;
	{
		uint8_t *buf = malloc(8192);

		pattern(buf, 8192, 5 * MiB, 41);
		assert_int_equal(blk_write(d, 5 * MiB, buf, 8192, 0), -EIO);
		free(buf);
	}
	vhdx_test_stop_after_log = false;
	assert_int_equal(blk_write(d, 0, "x", 512, 0), -EIO); /* no more writes */
	blk_close(d);

	/* The BAT in the file does not have the block yet; the log does. */
	assert_int_equal(blk_details(p, &det, &err), 0);
	assert_true(det.log_pending);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.corruptions, 0);
	assert_true(r.repairable >= 1);

	/* Read-only: replayed in memory, the file left alone. */
	crc = file_crc(p);
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, 0, 4096, 40);
	check_pat(d, 5 * MiB, 8192, 41);
	blk_close(d);
	assert_int_equal(file_crc(p), crc);

	/* Read-write: replayed into the file. */
	d = open_disk(p, 0);
	check_pat(d, 5 * MiB, 8192, 41);
	blk_close(d);
	assert_int_equal(blk_details(p, &det, &err), 0);
	assert_false(det.log_pending);
	assert_check_clean(p);
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, 0, 4096, 40);
	check_pat(d, 5 * MiB, 8192, 41);
	blk_close(d);
}

static void log_replay_by_repair(void **state)
{
	const char *p = P("logrep.vhdx");
	struct blk_disk *d;
	struct blk_error err = { "" };
	struct blk_check_result r;
	uint8_t buf[4096];

	create(p, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, 0, NULL);
	d = open_disk(p, 0);
	vhdx_test_stop_after_log = true;
	pattern(buf, sizeof(buf), 2 * MiB, 42);
	assert_int_equal(blk_write(d, 2 * MiB, buf, sizeof(buf), 0), -EIO);
	vhdx_test_stop_after_log = false;
	blk_close(d);
	assert_int_equal(blk_check(p, BLK_FMT_AUTO, true, NULL, NULL, &r, &err), 0);
	assert_int_equal(r.corruptions, 0);
	assert_true(r.fixed >= 1);
	assert_check_clean(p);
	d = open_disk(p, BLK_OPEN_RDONLY);
	check_pat(d, 2 * MiB, 4096, 42);
	blk_close(d);
}

/* ---- threads ---- */

struct job {
	struct blk_disk *d;
	int id;
	int errors;
};

static void *writer(void *arg)
{
	struct job *j = arg;
	uint8_t buf[4096];

	/* Every thread writes sectors in every block: allocations race. */
	for (int round = 0; round < 4; round++) {
		for (int blk = 0; blk < 16; blk++) {
			uint64_t off = (uint64_t)blk * MiB + (uint64_t)(j->id * 4 + round) * 4096;

			pattern(buf, sizeof(buf), off, 50);
			if (blk_write(j->d, off, buf, sizeof(buf), 0))
				j->errors++;
		}
	}
	return NULL;
}

static void concurrent_writes(void **state)
{
	const char *base = P("thr-base.vhdx"), *p = P("thr.vhdx");
	struct blk_disk *d;
	pthread_t t[8];
	struct job jobs[8];

	create(base, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, 0, NULL);
	for (int pass = 0; pass < 2; pass++) {
		const char *target = pass ? p : base;

		if (pass)
			create(p, BLK_TYPE_DIFF, 0, 0, 0, base);
		d = open_disk(target, 0);
		for (int i = 0; i < 8; i++) {
			jobs[i] = (struct job){ d, i, 0 };
			pthread_create(&t[i], NULL, writer, &jobs[i]);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(t[i], NULL);
			assert_int_equal(jobs[i].errors, 0);
		}
		blk_close(d);
		d = open_disk(target, BLK_OPEN_RDONLY);
		for (int blk = 0; blk < 16; blk++) {
			check_pat(d, (uint64_t)blk * MiB, 32 * 4096, 50);
			check_zero(d, (uint64_t)blk * MiB + 32 * 4096, MiB - 32 * 4096);
		}
		blk_close(d);
		assert_check_clean(target);
		if (!pass) { /* the child starts from an empty base */
			unlink(base);
			create(base, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, 0, NULL);
		}
	}
}

static void locked_against_second_writer(void **state)
{
	const char *p = P("lock.vhdx");
	struct blk_disk *d, *d2;
	struct blk_error err = { "" };

	create(p, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, 0, NULL);
	d = open_disk(p, 0);
	d2 = blk_open(p, BLK_FMT_AUTO, BLK_OPEN_RDONLY, &err);
	assert_null(d2);
	assert_non_null(strstr(err.msg, "in use"));
	blk_close(d);
	d = open_disk(p, BLK_OPEN_RDONLY);
	d2 = open_disk(p, BLK_OPEN_RDONLY); /* readers share */
	blk_close(d2);
	blk_close(d);
}

static void compact_and_merge(void **state)
{
	const char *base = P("cm-base.vhdx"), *child = P("cm-child.vhdx");
	struct blk_disk *d;
	struct blk_error err = { "" };
	uint64_t freed, before;
	char parent[4096];

	create(base, BLK_TYPE_DYNAMIC, 32 * MiB, MiB, 0, NULL);
	d = open_disk(base, 0);
	write_pat(d, 0, 8 * MiB, 60);
	{
		uint8_t *z = calloc(1, 4 * MiB);

		assert_int_equal(blk_write(d, 2 * MiB, z, 4 * MiB, 0), 0); /* zeros, allocated */
		free(z);
	}
	write_pat(d, 30 * MiB, MiB, 61);
	blk_close(d);
	before = file_size(base);
	assert_int_equal(blk_compact(base, NULL, &freed, &err), 0);
	assert_true(file_size(base) <= before - 4 * MiB);
	assert_check_clean(base);
	d = open_disk(base, BLK_OPEN_RDONLY);
	check_pat(d, 0, 2 * MiB, 60);
	check_zero(d, 2 * MiB, 4 * MiB);
	check_pat(d, 6 * MiB, 2 * MiB, 60);
	check_pat(d, 30 * MiB, MiB, 61);
	blk_close(d);

	create(child, BLK_TYPE_DIFF, 0, MiB, 0, base);
	d = open_disk(child, 0);
	write_pat(d, MiB + 512, 512, 62);
	write_pat(d, 20 * MiB, 2 * MiB, 63);
	assert_int_equal(blk_discard(d, 30 * MiB, MiB), 0);
	blk_close(d);
	assert_int_equal(blk_merge(child, parent, NULL, &err), 0);
	assert_non_null(strstr(parent, "cm-base.vhdx"));
	assert_int_equal(access(child, F_OK), -1);
	d = open_disk(base, BLK_OPEN_RDONLY);
	check_pat(d, 0, MiB + 512, 60);
	check_pat(d, MiB + 512, 512, 62);
	check_pat(d, MiB + 1024, MiB - 1024, 60);
	check_pat(d, 20 * MiB, 2 * MiB, 63);
	check_zero(d, 30 * MiB, MiB);
	blk_close(d);
	assert_check_clean(base);
}


/* A log as another writer may leave it: two entries in one sequence, the
 * first wrapping around the end of the log, the second with a zero
 * descriptor; and an older, stale entry that must not be applied. */
struct entry_spec {
	uint64_t seq;
	uint32_t off, tail;
	int ndesc;
	struct {
		bool zero;
		uint64_t target;
		const uint8_t *data; /* 4 KiB */
	} d[3];
};

static void put_entry(uint8_t *log, uint32_t log_len, const struct blk_guid *g,
		      const struct entry_spec *e, uint64_t file_size)
{
	int ndata = 0;
	uint32_t len;
	uint8_t *buf;
	struct vhdx_log_entry_header *h;

	for (int i = 0; i < e->ndesc; i++)
		ndata += !e->d[i].zero;
	len = (1 + ndata) * 4096;
	buf = calloc(1, len);
	h = (void *)buf;
	h->signature = VHDX_LOG_ENTRY_SIG;
	h->entry_length = len;
	h->tail = e->tail;
	h->sequence = e->seq;
	h->descriptor_count = (uint32_t)e->ndesc;
	h->log_guid = *g;
	h->flushed_file_offset = file_size;
	h->last_file_offset = file_size;
	for (int i = 0, k = 0; i < e->ndesc; i++) {
		struct vhdx_log_descriptor *d = (void *)(buf + 64 + 32 * i);

		d->file_offset = e->d[i].target;
		d->sequence = e->seq;
		if (e->d[i].zero) {
			d->signature = VHDX_LOG_ZERO_SIG;
			d->leading_bytes = 4096;
			continue;
		}
		struct vhdx_log_data_sector *ds = (void *)(buf + 4096 * (1 + k++));

		d->signature = VHDX_LOG_DESC_SIG;
		memcpy(&d->leading_bytes, e->d[i].data, 8);
		memcpy(&d->trailing_bytes, e->d[i].data + 4092, 4);
		ds->signature = VHDX_LOG_DATA_SIG;
		ds->sequence_high = (uint32_t)(e->seq >> 32);
		ds->sequence_low = (uint32_t)e->seq;
		memcpy(ds->data, e->d[i].data + 8, sizeof(ds->data));
	}
	h->checksum = blk_crc32c(0, buf, len);
	for (uint32_t i = 0; i < len; i++)
		log[(e->off + i) % log_len] = buf[i];
	free(buf);
}

static void foreign_log(void **state)
{
	const char *p = P("foreign.vhdx");
	const uint64_t bat = 3 * MiB, log_off = MiB;
	const uint32_t log_len = MiB;
	struct blk_guid g;
	uint8_t *log = calloc(1, log_len), sec_a[4096] = { 0 }, sec_b[4096] = { 0 }, stale[4096] = { 0 };
	uint64_t fsz, x, *e;
	struct blk_disk *d;
	int fd;

	create(p, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, 0, NULL);
	/* Two blocks' data appended by "the writer" before it logged them. */
	fd = open(p, O_RDWR);
	assert_int_equal(blk_file_size(fd, &fsz), 0);
	x = fsz;
	{
		uint8_t *buf = malloc(2 * MiB);

		pattern(buf, MiB, 5 * MiB, 70);
		pattern(buf + MiB, MiB, 6 * MiB, 71);
		assert_int_equal(pwrite(fd, buf, 2 * MiB, (off_t)x), (ssize_t)(2 * MiB));
		free(buf);
	}
	fsz = x + 2 * MiB;
	/* Entry A (seq 10, wraps): BAT entries for blocks 5 and 7. Entry B
	 * (seq 11): zero the sector, then blocks 5 and 6 only. Stale entry
	 * (seq 9, same GUID, not in the sequence): block 8. */
	e = (uint64_t *)(void *)sec_a;
	e[5] = x | 6;
	e[7] = (x + MiB) | 6;
	e = (uint64_t *)(void *)sec_b;
	e[5] = x | 6;
	e[6] = (x + MiB) | 6;
	e = (uint64_t *)(void *)stale;
	e[8] = x | 6;
	assert_int_equal(blk_guid_random(&g), 0);
	{
		struct entry_spec a = { 10, log_len - 4096, log_len - 4096, 1, { { false, bat, sec_a } } };
		struct entry_spec b = { 11, 4096, log_len - 4096, 2,
					{ { true, bat, NULL }, { false, bat, sec_b } } };
		struct entry_spec st = { 9, 64 * 1024, 64 * 1024, 1, { { false, bat, stale } } };

		put_entry(log, log_len, &g, &st, fsz);
		put_entry(log, log_len, &g, &a, fsz);
		put_entry(log, log_len, &g, &b, fsz);
	}
	assert_int_equal(pwrite(fd, log, log_len, (off_t)log_off), (ssize_t)log_len);
	/* Both headers name the log. */
	for (int i = 0; i < 2; i++) {
		struct vhdx_header h;
		off_t off = i ? 128 * 1024 : 64 * 1024;

		assert_int_equal(pread(fd, &h, sizeof(h), off), (ssize_t)sizeof(h));
		h.log_guid = g;
		h.sequence += 10;
		h.checksum = 0;
		h.checksum = blk_crc32c(0, &h, sizeof(h));
		assert_int_equal(pwrite(fd, &h, sizeof(h), off), (ssize_t)sizeof(h));
	}
	close(fd);
	free(log);

	for (int pass = 0; pass < 2; pass++) {
		d = open_disk(p, pass ? 0 : BLK_OPEN_RDONLY);
		check_pat(d, 5 * MiB, MiB, 70);
		check_pat(d, 6 * MiB, MiB, 71);
		check_zero(d, 7 * MiB, MiB); /* entry B rewrote the sector without it */
		check_zero(d, 8 * MiB, MiB); /* the stale entry stays out */
		blk_close(d);
	}
	assert_check_clean(p);
}

/* Scatter lists (blk_readv/blk_writev): a write that allocates a block and
 * one into an allocated block, across a block boundary; reads back through
 * both interfaces; a differencing child reads its parent's data and its own
 * through a scatter list. */
static void vectored_io(void **state)
{
	const char *p = P("v.vhdx"), *c = P("vc.vhdx");
	uint8_t *want = malloc(64 * 1024), *got = malloc(64 * 1024), *flat = malloc(64 * 1024);
	struct iovec iov[16];
	struct blk_disk *d;
	uint64_t off = MiB - 32 * 1024; /* 32 KiB in block 0, 32 KiB in block 1 */

	for (unsigned i = 0; i < 16; i++) /* 16 pieces of 4 KiB, in reverse memory order */
		iov[i] = (struct iovec){ got + (15 - i) * 4096, 4096 };
	create(p, BLK_TYPE_DYNAMIC, 8 * MiB, MiB, 0, NULL);
	d = open_disk(p, 0);
	pattern(want, 64 * 1024, off, 1);
	for (unsigned i = 0; i < 16; i++)
		memcpy(iov[i].iov_base, want + i * 4096, 4096);
	assert_int_equal(blk_writev(d, off, iov, 16, 64 * 1024, 0), 0); /* allocates both */
	assert_int_equal(blk_read(d, off, flat, 64 * 1024), 0);
	assert_memory_equal(flat, want, 64 * 1024);
	pattern(want, 64 * 1024, off, 2);
	for (unsigned i = 0; i < 16; i++)
		memcpy(iov[i].iov_base, want + i * 4096, 4096);
	assert_int_equal(blk_writev(d, off, iov, 16, 64 * 1024, BLK_FUA), 0); /* in place */
	memset(got, 0, 64 * 1024);
	assert_int_equal(blk_readv(d, off, iov, 16, 64 * 1024), 0);
	for (unsigned i = 0; i < 16; i++)
		assert_memory_equal(iov[i].iov_base, want + i * 4096, 4096);
	/* Unallocated space reads as zeros. */
	memset(got, 0xee, 64 * 1024);
	assert_int_equal(blk_readv(d, 4 * MiB, iov, 16, 64 * 1024), 0);
	memset(flat, 0, 64 * 1024);
	assert_memory_equal(got, flat, 64 * 1024);
	/* Pieces that are not whole sectors are refused. */
	iov[0].iov_len = 100;
	assert_int_equal(blk_readv(d, 0, iov, 16, 4096), -EINVAL);
	iov[0].iov_len = 4096;
	blk_close(d);
	assert_check_clean(p);

	/* A child: its first 4 KiB new, the rest from the parent. */
	create(c, BLK_TYPE_DIFF, 0, 0, 0, p);
	d = open_disk(c, 0);
	pattern(flat, 4096, off, 3);
	assert_int_equal(blk_write(d, off, flat, 4096, 0), 0);
	memcpy(want, flat, 4096);
	memset(got, 0, 64 * 1024);
	assert_int_equal(blk_readv(d, off, iov, 16, 64 * 1024), 0);
	for (unsigned i = 0; i < 16; i++)
		assert_memory_equal(iov[i].iov_base, want + i * 4096, 4096);
	blk_close(d);
	assert_check_clean(c);
	free(want);
	free(got);
	free(flat);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dynamic_roundtrip),
		cmocka_unit_test(fixed_roundtrip),
		cmocka_unit_test(sector_4k),
		cmocka_unit_test(block_sizes),
		cmocka_unit_test(bad_create_options),
		cmocka_unit_test(differencing_chain),
		cmocka_unit_test(parent_modified_refused),
		cmocka_unit_test(parent_missing_refused),
		cmocka_unit_test(parent_relative_after_move),
		cmocka_unit_test(discard_dynamic),
		cmocka_unit_test(resize_grow),
		cmocka_unit_test(log_replay),
		cmocka_unit_test(log_replay_by_repair),
		cmocka_unit_test(foreign_log),
		cmocka_unit_test(concurrent_writes),
		cmocka_unit_test(locked_against_second_writer),
		cmocka_unit_test(compact_and_merge),
		cmocka_unit_test(vectored_io),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
