/* Crash consistency: every metadata update (allocation, bitmap update,
 * discard, resize, compact, header update) is cut short at every one of its
 * file operations, in three ways:
 *   prefix - the operation and all after it never happen;
 *   torn   - the operation writes half its bytes, then nothing more;
 *   lost   - as prefix, and every write since the last sync is lost too;
 *   reorder - as lost, but the last write before the crash did land (the
 *            disk wrote it before the earlier ones).
 * After each "crash" the image must open (read-only: replayed in memory;
 * read-write: replayed into the file), pass check without corruption, and
 * read back old or new data, sector by sector, never anything else. */
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
	/* Thousands of syncs: memory-backed when there is /dev/shm. */
	snprintf(dir, sizeof(dir), "%s/hvmm-crash-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, const char *sub, const char *name)
{
	snprintf(out, 256, "%s/%s/%s", dir, sub, name);
}

static void pattern(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
	uint64_t *w = (uint64_t *)(void *)buf; /* lengths here are whole sectors */

	if (!seed) {
		memset(buf, 0, len);
		return;
	}
	for (size_t i = 0; i < len / 8; i++)
		w[i] = (off + i * 8) * 0x9E3779B97F4A7C15ULL ^ seed;
}

/* ---- the fault hook ---- */

enum mode { PREFIX, TORN, LOST, REORDER };

struct undo {
	enum blk_io_op op;
	uint64_t off, len, old_size;
	uint8_t *old;
};

static struct {
	long at, count;
	enum mode mode;
	bool hit;
	int fd;                 /* the image being written */
	struct undo *undo;
	size_t nundo;
} F;

static void undo_clear(void)
{
	for (size_t i = 0; i < F.nundo; i++)
		free(F.undo[i].old);
	free(F.undo);
	F.undo = NULL;
	F.nundo = 0;
}

static void record(enum blk_io_op op, int fd, uint64_t off, uint64_t len)
{
	struct undo u = { op, off, len, 0, NULL };
	struct stat st;

	fstat(fd, &st);
	u.old_size = (uint64_t)st.st_size;
	if (op == BLK_IO_WRITE || op == BLK_IO_PUNCH || op == BLK_IO_ALLOC ||
	    (op == BLK_IO_TRUNCATE && off < u.old_size)) {
		uint64_t n = op == BLK_IO_TRUNCATE ? u.old_size - off : len;

		u.len = n;
		u.old = malloc(n ? n : 1);
		assert_int_equal(blk_pread(fd, u.old, n, off), 0);
	}
	F.undo = realloc(F.undo, (F.nundo + 1) * sizeof(*F.undo));
	F.undo[F.nundo++] = u;
}

static int hook(enum blk_io_op op, int fd, uint64_t off, uint64_t len)
{
	long n = F.count++;

	if (n < F.at) {
		if (op == BLK_IO_SYNC)
			undo_clear();
		else if (F.mode >= LOST)
			record(op, fd, off, len);
		return BLK_FAULT_NONE;
	}
	if (n == F.at) {
		F.hit = true;
		F.fd = fd;
		if (F.mode == TORN && op == BLK_IO_WRITE)
			return BLK_FAULT_TEAR;
	}
	return BLK_FAULT_FAIL;
}

/* Undo what the last sync did not make durable (all of it, or all but the
 * last write). */
static void lose_unsynced(const char *path, bool keep_last)
{
	int fd = open(path, O_RDWR);
	size_t last = F.nundo;

	assert_true(fd >= 0);
	if (keep_last)
		while (last > 0 && F.undo[last - 1].op != BLK_IO_WRITE)
			last--;
	for (size_t i = F.nundo; i-- > 0;) {
		if (keep_last && i + 1 == last)
			continue;
		struct undo *u = &F.undo[i];

		if (u->old)
			assert_int_equal(pwrite(fd, u->old, u->len, (off_t)u->off), (ssize_t)u->len);
		assert_int_equal(ftruncate(fd, (off_t)u->old_size), 0);
	}
	close(fd);
	undo_clear();
}

/* ---- files ---- */

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out;
	uint8_t *buf = malloc(64 * 1024);
	struct stat st;
	off_t off = 0;
	ssize_t n;

	if (in < 0) {
		free(buf);
		return;
	}
	unlink(to);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(out >= 0);
	fstat(in, &st);
	while ((n = pread(in, buf, 64 * 1024, off)) > 0) {
		if (!blk_is_zero(buf, (size_t)n))
			assert_int_equal(pwrite(out, buf, (size_t)n, off), n);
		off += n;
	}
	assert_int_equal(ftruncate(out, st.st_size), 0);
	close(in);
	close(out);
	free(buf);
}

static struct blk_disk *open_disk(const char *path, unsigned flags)
{
	struct blk_error err = { "" };
	struct blk_disk *d = blk_open(path, BLK_FMT_AUTO, flags, &err);

	if (!d)
		fail_msg("open %s: %s", path, err.msg);
	return d;
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

static void write_pat(struct blk_disk *d, uint64_t off, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len);

	pattern(buf, len, off, seed);
	assert_int_equal(blk_write(d, off, buf, len, 0), 0);
	free(buf);
}

/* Each 512-byte sector of [off, off+len) holds the old or the new
 * pattern (seed 0: zeros). */
static void expect_old_or_new(struct blk_disk *d, uint64_t off, size_t len, unsigned old_seed,
			      unsigned new_seed, const char *what)
{
	static uint8_t *buf;
	uint8_t o[512], n[512];

	if (!buf)
		buf = malloc(4 * MiB); /* kept: the verifications run thousands of times */
	assert_true(len <= 4 * MiB);
	assert_int_equal(blk_read(d, off, buf, len), 0);
	for (size_t s = 0; s < len; s += 512) {
		pattern(o, 512, off + s, old_seed);
		if (!memcmp(buf + s, o, 512))
			continue;
		pattern(n, 512, off + s, new_seed);
		if (memcmp(buf + s, n, 512))
			fail_msg("%s: sector at %llu is neither old nor new data", what,
				 (unsigned long long)(off + s));
	}
}

static void expect(struct blk_disk *d, uint64_t off, size_t len, unsigned seed, const char *what)
{
	expect_old_or_new(d, off, len, seed, seed, what);
}

/* ---- scenarios ---- */

struct scenario {
	const char *name;
	const char *image;  /* the file written; its parent (if any) is "parent" */
	void (*make)(const char *image, const char *parent);
	void (*op)(const char *image); /* image opened by op itself when it needs a path */
	void (*verify)(struct blk_disk *d, const char *what);
};

static const char *g_image;

/* VHDX: a write into a block not yet allocated. */
static void vx_alloc_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(p, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, 8192, 1);
	blk_close(d);
}

static void vx_alloc_op(const char *p)
{
	struct blk_disk *d = open_disk(p, 0);
	uint8_t buf[8192];

	pattern(buf, sizeof(buf), 5 * MiB + 4096, 2);
	if (!blk_write(d, 5 * MiB + 4096, buf, sizeof(buf), 0)) {
		pattern(buf, sizeof(buf), 7 * MiB, 2);
		blk_write(d, 7 * MiB, buf, sizeof(buf), 0);
	}
	blk_close(d);
}

static void vx_alloc_verify(struct blk_disk *d, const char *what)
{
	expect(d, 0, 8192, 1, what);
	expect_old_or_new(d, 5 * MiB + 4096, 8192, 0, 2, what);
	expect(d, 5 * MiB, 4096, 0, what);
	expect(d, 5 * MiB + 12288, 4096, 0, what);
	expect_old_or_new(d, 7 * MiB, 8192, 0, 2, what);
}

/* VHDX differencing: a partial write into an absent block (a bitmap
 * block and bits), then more bits in a present one. */
static void vx_diff_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(parent, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, NULL);
	d = open_disk(parent, 0);
	write_pat(d, 0, 8 * MiB, 3);
	blk_close(d);
	create(p, BLK_FMT_VHDX, BLK_TYPE_DIFF, 0, MiB, parent);
}

static void vx_diff_op(const char *p)
{
	struct blk_disk *d = open_disk(p, 0);
	uint8_t buf[1024];

	/* A new block (and bitmap), more bits in it, a second new block. */
	pattern(buf, sizeof(buf), 3 * MiB + 512, 4);
	if (!blk_write(d, 3 * MiB + 512, buf, sizeof(buf), 0)) {
		pattern(buf, sizeof(buf), 3 * MiB + 8192, 4);
		if (!blk_write(d, 3 * MiB + 8192, buf, sizeof(buf), 0)) {
			pattern(buf, sizeof(buf), 5 * MiB + 4096, 4);
			blk_write(d, 5 * MiB + 4096, buf, sizeof(buf), 0);
		}
	}
	blk_close(d);
}

static void vx_diff_verify(struct blk_disk *d, const char *what)
{
	expect(d, 3 * MiB, 512, 3, what);
	expect_old_or_new(d, 3 * MiB + 512, 1024, 3, 4, what);
	expect(d, 3 * MiB + 1536, 8192 - 1536, 3, what);
	expect_old_or_new(d, 3 * MiB + 8192, 1024, 3, 4, what);
	expect(d, 3 * MiB + 9216, MiB - 9216, 3, what);
	expect(d, 5 * MiB, 4096, 3, what);
	expect_old_or_new(d, 5 * MiB + 4096, 1024, 3, 4, what);
	expect(d, 5 * MiB + 5120, MiB - 5120, 3, what);
	expect(d, 0, MiB, 3, what);
}

/* VHDX: discard of whole blocks and of part of one. */
static void vx_trim_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(p, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, 4 * MiB, 5);
	blk_close(d);
}

static void vx_trim_op(const char *p)
{
	struct blk_disk *d = open_disk(p, 0);

	blk_discard(d, MiB, 2 * MiB + 4096);
	blk_close(d);
}

static void vx_trim_verify(struct blk_disk *d, const char *what)
{
	expect(d, 0, MiB, 5, what);
	expect_old_or_new(d, MiB, 2 * MiB + 4096, 5, 0, what);
	expect(d, 3 * MiB + 4096, MiB - 4096, 5, what);
}

/* Resizes: the size is old or new; the data stays; new space is zeros. */
static uint64_t g_old_size, g_new_size;

static void resize_op(const char *p)
{
	struct blk_disk *d = open_disk(p, 0);

	blk_resize(d, g_new_size);
	blk_close(d);
}

static void resize_verify(struct blk_disk *d, const char *what)
{
	struct blk_info info;

	blk_get_info(d, &info);
	if (info.size != g_old_size && info.size != g_new_size)
		fail_msg("%s: size %llu is neither old nor new", what, (unsigned long long)info.size);
	expect(d, 0, MiB, 6, what);
	expect(d, g_old_size - MiB, MiB, 6, what);
	if (info.size == g_new_size)
		expect(d, g_new_size - MiB, MiB, 0, what);
}

static void vx_grow_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	g_old_size = 10 * MiB;
	g_new_size = 20 * MiB;
	create(p, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, g_old_size, MiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, MiB, 6);
	write_pat(d, g_old_size - MiB, MiB, 6);
	blk_close(d);
}

static void vx_relocate_make(const char *p, const char *parent)
{
	vx_grow_make(p, parent);
	g_new_size = 200 * GiB; /* the BAT moves to the end */
}

static void vx_fixed_grow_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	g_old_size = 3 * MiB;
	g_new_size = 6 * MiB;
	create(p, BLK_FMT_VHDX, BLK_TYPE_FIXED, g_old_size, MiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, MiB, 6);
	write_pat(d, g_old_size - MiB, MiB, 6);
	blk_close(d);
}

/* Compact: zero blocks dropped, the rest moved down, the file cut. */
static void vx_compact_make(const char *p, const char *parent)
{
	struct blk_disk *d;
	uint8_t *z = calloc(1, 3 * MiB);

	create(p, BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, MiB, 7);
	assert_int_equal(blk_write(d, MiB, z, 3 * MiB, 0), 0);
	write_pat(d, 10 * MiB, MiB, 7);
	write_pat(d, 15 * MiB, MiB, 7);
	blk_close(d);
	free(z);
}

static void compact_op(const char *p)
{
	struct blk_error err;
	uint64_t freed;

	blk_compact(p, NULL, &freed, &err);
}

static void vx_compact_verify(struct blk_disk *d, const char *what)
{
	expect(d, 0, MiB, 7, what);
	expect(d, MiB, 3 * MiB, 0, what);
	expect(d, 10 * MiB, MiB, 7, what);
	expect(d, 15 * MiB, MiB, 7, what);
	expect(d, 5 * MiB, MiB, 0, what);
}

/* The first write of a session renews the header's GUIDs. */
static void vx_first_write_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(p, BLK_FMT_VHDX, BLK_TYPE_FIXED, 4 * MiB, MiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, 4 * MiB, 8);
	blk_close(d);
}

static void vx_first_write_op(const char *p)
{
	struct blk_disk *d = open_disk(p, 0);
	uint8_t buf[4096];

	pattern(buf, sizeof(buf), MiB, 9);
	blk_write(d, MiB, buf, sizeof(buf), BLK_FUA);
	blk_close(d);
}

static void vx_first_write_verify(struct blk_disk *d, const char *what)
{
	expect(d, 0, MiB, 8, what);
	expect_old_or_new(d, MiB, 4096, 8, 9, what);
	expect(d, MiB + 4096, 3 * MiB - 4096, 8, what);
}

/* VHD: allocation, differencing bits, discard, growth past the BAT,
 * compact. */
static void vhd_alloc_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(p, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 16 * MiB, 0, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, 8192, 1);
	blk_close(d);
}

static void vhd_diff_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(parent, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 16 * MiB, 0, NULL);
	d = open_disk(parent, 0);
	write_pat(d, 0, 8 * MiB, 3);
	blk_close(d);
	create(p, BLK_FMT_VHD, BLK_TYPE_DIFF, 0, 0, parent);
}

static void vhd_trim_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(p, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 16 * MiB, 512 * KiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, 4 * MiB, 5);
	blk_close(d);
}

static void vhd_trim_op(const char *p)
{
	struct blk_disk *d = open_disk(p, 0);

	blk_discard(d, MiB, 2 * MiB + 4096);
	blk_close(d);
}

static void vhd_grow_make(const char *p, const char *parent)
{
	struct blk_disk *d;
	struct blk_info info;

	/* 4 KiB blocks: 10 MiB needs 2560 entries, 10 KiB of BAT; 20 MiB
	 * needs more than fits: the BAT moves. */
	create(p, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 10 * MiB, 4096, NULL);
	d = open_disk(p, 0);
	blk_get_info(d, &info);
	g_old_size = info.size;
	g_new_size = 20 * MiB;
	write_pat(d, 0, MiB, 6);
	write_pat(d, g_old_size - MiB, MiB, 6);
	blk_close(d);
}

static void vhd_compact_make(const char *p, const char *parent)
{
	struct blk_disk *d;
	uint8_t *z = calloc(1, 3 * MiB);

	create(p, BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 16 * MiB, MiB, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, MiB, 7);
	assert_int_equal(blk_write(d, MiB, z, 3 * MiB, 0), 0);
	write_pat(d, 10 * MiB, MiB, 7);
	write_pat(d, 15 * MiB, MiB, 7);
	blk_close(d);
	free(z);
}

static void vhd_shrink_make(const char *p, const char *parent)
{
	struct blk_disk *d;

	create(p, BLK_FMT_VHD, BLK_TYPE_FIXED, 8 * MiB, 0, NULL);
	d = open_disk(p, 0);
	write_pat(d, 0, MiB, 6);
	blk_close(d);
	g_old_size = 0;
}

static void vhd_shrink_op(const char *p)
{
	struct blk_disk *d = open_disk(p, 0);
	struct blk_info info;

	blk_get_info(d, &info);
	blk_resize(d, info.size - 2 * MiB);
	blk_close(d);
}

static void vhd_shrink_verify(struct blk_disk *d, const char *what)
{
	expect(d, 0, MiB, 6, what);
	expect(d, MiB, MiB, 0, what);
}

static const struct scenario scenarios[] = {
	{ "vhdx allocate", "img.vhdx", vx_alloc_make, vx_alloc_op, vx_alloc_verify },
	{ "vhdx differencing", "img.vhdx", vx_diff_make, vx_diff_op, vx_diff_verify },
	{ "vhdx discard", "img.vhdx", vx_trim_make, vx_trim_op, vx_trim_verify },
	{ "vhdx grow", "img.vhdx", vx_grow_make, resize_op, resize_verify },
	{ "vhdx grow, BAT moved", "img.vhdx", vx_relocate_make, resize_op, resize_verify },
	{ "vhdx fixed grow", "img.vhdx", vx_fixed_grow_make, resize_op, resize_verify },
	{ "vhdx compact", "img.vhdx", vx_compact_make, compact_op, vx_compact_verify },
	{ "vhdx first write", "img.vhdx", vx_first_write_make, vx_first_write_op, vx_first_write_verify },
	{ "vhd allocate", "img.vhd", vhd_alloc_make, vx_alloc_op, vx_alloc_verify },
	{ "vhd differencing", "img.vhd", vhd_diff_make, vx_diff_op, vx_diff_verify },
	{ "vhd discard", "img.vhd", vhd_trim_make, vhd_trim_op, vx_trim_verify },
	{ "vhd grow, BAT moved", "img.vhd", vhd_grow_make, resize_op, resize_verify },
	{ "vhd compact", "img.vhd", vhd_compact_make, compact_op, vx_compact_verify },
	{ "vhd fixed shrink", "img.vhd", vhd_shrink_make, vhd_shrink_op, vhd_shrink_verify },
};

static void run_scenario(const struct scenario *s)
{
	char base_img[256], base_par[256], img[256], par[256], sub[256];
	const char *ext = strrchr(s->image, '.');
	char parent_name[32];
	long points = 0;

	snprintf(parent_name, sizeof(parent_name), "parent%s", ext);
	snprintf(sub, sizeof(sub), "%s/base", dir);
	mkdir(sub, 0755);
	snprintf(sub, sizeof(sub), "%s/work", dir);
	mkdir(sub, 0755);
	path_of(base_img, "base", s->image);
	path_of(base_par, "base", parent_name);
	path_of(img, "work", s->image);
	path_of(par, "work", parent_name);
	unlink(base_img);
	unlink(base_par);
	s->make(base_img, base_par);
	g_image = img;

	for (int mode = PREFIX; mode <= REORDER; mode++) {
		for (long at = 0;; at++) {
			char what[160];
			struct blk_disk *d;
			struct blk_check_result r;
			struct blk_error err = { "" };

			copy_file(base_img, img);
			copy_file(base_par, par);
			memset(&F, 0, sizeof(F));
			F.at = at;
			F.mode = (enum mode)mode;
			blk_fault_hook = hook;
			s->op(img);
			blk_fault_hook = NULL;
			if (F.mode >= LOST && F.hit)
				lose_unsynced(img, F.mode == REORDER);
			undo_clear();
			snprintf(what, sizeof(what), "%s, %s crash at operation %ld", s->name,
				 mode == PREFIX ? "prefix" : mode == TORN ? "torn" :
				 mode == LOST ? "lost" : "reordered", at);
			/* Read-only first (in-memory replay), then read-write. */
			d = open_disk(img, BLK_OPEN_RDONLY);
			s->verify(d, what);
			blk_close(d);
			d = open_disk(img, 0);
			s->verify(d, what);
			blk_close(d);
			assert_int_equal(blk_check(img, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
			if (r.corruptions)
				fail_msg("%s: check finds %u corruptions", what, r.corruptions);
			points++;
			if (!F.hit)
				break; /* the operation ran to its end */
		}
	}
	print_message("%s: %ld crash points\n", s->name, points);
}

static void crash_all(void **state)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		run_scenario(&scenarios[i]);
}

/* After the op completes: the new state, and check is clean (no leaks). */
static void completed_ops_are_clean(void **state)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		const struct scenario *s = &scenarios[i];
		char img[256], par[256], sub[256];
		const char *ext = strrchr(s->image, '.');
		char parent_name[32];
		struct blk_check_result r;
		struct blk_error err = { "" };

		snprintf(parent_name, sizeof(parent_name), "parent%s", ext);
		snprintf(sub, sizeof(sub), "%s/clean", dir);
		mkdir(sub, 0755);
		path_of(img, "clean", s->image);
		path_of(par, "clean", parent_name);
		unlink(img);
		unlink(par);
		s->make(img, par);
		s->op(img);
		assert_int_equal(blk_check(img, BLK_FMT_AUTO, false, NULL, NULL, &r, &err), 0);
		if (r.corruptions || r.leaks || r.repairable)
			fail_msg("%s: %u corruptions, %u leaks, %u repairable after a clean run", s->name,
				 r.corruptions, r.leaks, r.repairable);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(completed_ops_are_clean),
		cmocka_unit_test(crash_all),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
