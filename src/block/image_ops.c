/* Whole-image operations over the block layer: create, info, check,
 * convert, resize, merge, compact. */
#include "block/block_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (4 * MiB)

const char *blk_type_name(enum blk_type t)
{
	switch (t) {
	case BLK_TYPE_FIXED: return "fixed";
	case BLK_TYPE_DIFF: return "differencing";
	default: return "dynamic";
	}
}

/* ---- create ---- */

static int raw_create(const char *path, const struct blk_create_opts *o, struct blk_error *err)
{
	int fd, ret;

	if (!o->size) {
		blk_seterr(err, "%s: the size must be more than 0", path);
		return -EINVAL;
	}
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		blk_seterr(err, "%s: cannot create: %s", path, strerror(errno));
		return ret;
	}
	ret = blk_truncate(fd, ROUND_UP(o->size, 512));
	if (!ret && o->type == BLK_TYPE_FIXED)
		ret = blk_allocate(fd, 0, ROUND_UP(o->size, 512));
	if (!ret)
		ret = blk_sync(fd);
	close(fd);
	if (ret) {
		blk_seterr(err, "%s: cannot write: %s", path, strerror(-ret));
		unlink(path);
	}
	return ret;
}

int blk_create(const char *path, const struct blk_create_opts *o, struct blk_error *err)
{
	if (err)
		err->msg[0] = 0;
	if (o->type == BLK_TYPE_DIFF && !o->parent) {
		blk_seterr(err, "%s: a differencing disk needs a parent", path);
		return -EINVAL;
	}
	if (o->type != BLK_TYPE_DIFF && o->parent) {
		blk_seterr(err, "%s: only a differencing disk has a parent", path);
		return -EINVAL;
	}
	switch (o->format) {
	case BLK_FMT_RAW:
		if (o->type == BLK_TYPE_DIFF) {
			blk_seterr(err, "%s: a raw image cannot have a parent", path);
			return -EINVAL;
		}
		return raw_create(path, o, err);
	case BLK_FMT_VHD:
		return vhd_create(path, o, err);
	case BLK_FMT_VHDX:
		return vhdx_create(path, o, err);
	default:
		blk_seterr(err, "%s: no format given", path);
		return -EINVAL;
	}
}

/* ---- info ---- */

int blk_details(const char *path, struct blk_details *d, struct blk_error *err)
{
	struct blk_disk *disk = blk_open(path, BLK_FMT_AUTO, BLK_OPEN_RDONLY | BLK_OPEN_NO_PARENT, err);
	struct stat st;
	const char *parent = NULL;

	memset(d, 0, sizeof(*d));
	if (!disk)
		return -EINVAL;
	d->format = disk->drv->format;
	switch (d->format) {
	case BLK_FMT_VHD:
		vhd_details(disk->img, d);
		parent = vhd_parent_path(disk->img);
		break;
	case BLK_FMT_VHDX:
		vhdx_details(disk->img, d);
		parent = vhdx_parent_path(disk->img);
		break;
	default:
		raw_details(disk->img, d);
	}
	if (parent && !d->parent[0])
		snprintf(d->parent, sizeof(d->parent), "%s", parent);
	if (stat(path, &st) == 0) {
		d->file_size = (uint64_t)st.st_size;
		d->disk_usage = (uint64_t)st.st_blocks * 512;
		if (S_ISBLK(st.st_mode)) /* a device is all there */
			d->file_size = d->disk_usage = d->size;
	}
	blk_close(disk);
	return 0;
}

/* ---- check ---- */

int blk_check(const char *path, enum blk_format fmt, bool repair, blk_report_fn *report, void *ctx,
	      struct blk_check_result *res, struct blk_error *err)
{
	unsigned flags = BLK_OPEN_CHECK | BLK_OPEN_NO_PARENT | (repair ? 0 : BLK_OPEN_RDONLY);
	struct blk_checker c = { res, report, ctx, repair };
	struct blk_chain chain = { 0 };
	struct blk_disk *d;
	bool diff = false;
	int ret = 0;

	memset(res, 0, sizeof(*res));
	d = blk_open_chain(path, fmt, flags, &chain, err);
	if (!d) {
		if (chain.error == -EINVAL) {
			/* Not an image it can read at all: that is the damage. */
			res->corruptions = 1;
			if (report)
				report(ctx, err->msg);
			return 0;
		}
		return chain.error ? chain.error : -EIO;
	}
	switch (d->drv->format) {
	case BLK_FMT_VHD:
		ret = vhd_check(d->img, &c);
		diff = vhd_parent_path(d->img) != NULL;
		break;
	case BLK_FMT_VHDX:
		ret = vhdx_check(d->img, &c);
		diff = vhdx_parent_path(d->img) != NULL;
		break;
	default:
		break;
	}
	if (!ret && repair)
		ret = blk_flush(d);
	blk_close(d);
	if (ret) {
		blk_seterr(err, "%s: the check stopped: %s", path, strerror(-ret));
		return ret;
	}
	if (diff && !res->corruptions) {
		/* The chain: every parent there and unchanged. */
		struct blk_error perr;

		d = blk_open(path, fmt, BLK_OPEN_RDONLY, &perr);
		if (!d) {
			blk_check_msg(&c, "ERROR: %s", perr.msg);
			res->corruptions++;
		} else {
			blk_close(d);
		}
	}
	return 0;
}

/* ---- convert ---- */

/* May [off, off+*len) be skipped as zeros without reading it? Shortens
 * *len to one run of the same answer. */
static bool skippable(struct blk_disk *d, bool has_parent, uint64_t off, uint64_t *len)
{
	enum blk_status st;
	uint64_t pnum;

	if (blk_block_status(d, off, *len, &pnum, &st) || !pnum)
		return false;
	*len = MIN(*len, pnum);
	return st == BLK_ST_ZERO || (st == BLK_ST_ABSENT && !has_parent);
}

/* Write what is not zeros, in pieces of ZERO_GRAIN: zero pieces are left
 * out, so a dynamic output allocates only blocks that hold data. */
#define ZERO_GRAIN (64 * KiB)

static int write_nonzero(struct blk_disk *d, uint64_t off, const uint8_t *buf, uint64_t len)
{
	uint64_t run = 0, start = 0;

	for (uint64_t o = 0; o < len; o += ZERO_GRAIN) {
		uint64_t n = MIN(ZERO_GRAIN, len - o);

		if (!blk_is_zero(buf + o, (size_t)n)) {
			if (!run)
				start = o;
			run += n;
			continue;
		}
		if (run) {
			int ret = blk_write(d, off + start, buf + start, (size_t)run, 0);

			if (ret)
				return ret;
			run = 0;
		}
	}
	return run ? blk_write(d, off + start, buf + start, (size_t)run, 0) : 0;
}

int blk_convert(const char *src, const char *dst, const struct blk_create_opts *o,
		struct blk_progress *p, struct blk_error *err)
{
	struct blk_create_opts co = *o;
	struct blk_disk *s = NULL, *d = NULL;
	struct blk_details sd;
	struct blk_info si, di;
	uint8_t *buf = NULL;
	bool created = false, has_parent;
	int ret;

	if (err)
		err->msg[0] = 0;
	if (co.type == BLK_TYPE_DIFF || co.parent) {
		blk_seterr(err, "%s: convert writes a whole disk; it makes no differencing disk", dst);
		return -EINVAL;
	}
	s = blk_open(src, BLK_FMT_AUTO, BLK_OPEN_RDONLY, err);
	if (!s)
		return -EINVAL;
	blk_get_info(s, &si);
	ret = blk_details(src, &sd, err);
	if (ret)
		goto out;
	has_parent = sd.type == BLK_TYPE_DIFF;
	co.size = si.size;
	if (co.format == BLK_FMT_VHDX && !co.logical_sector)
		co.logical_sector = si.logical_sector;
	if (co.format == BLK_FMT_VHDX && !co.physical_sector)
		co.physical_sector = si.physical_sector;
	if (co.format == BLK_FMT_VHD && co.size > BLK_VHD_MAX_SIZE) {
		blk_seterr(err, "%s: the disk (%llu bytes) is larger than a VHD holds (2040 GiB)", dst,
			   (unsigned long long)co.size);
		ret = -EFBIG;
		goto out;
	}
	ret = blk_create(dst, &co, err);
	if (ret)
		goto out;
	created = true;
	d = blk_open(dst, co.format, 0, err);
	if (!d) {
		ret = -EIO;
		goto out;
	}
	blk_get_info(d, &di);
	buf = malloc(CHUNK);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (p)
		p->total = si.size;
	for (uint64_t off = 0; off < si.size;) {
		uint64_t len = MIN(CHUNK, si.size - off), wlen;

		blk_progress_update(p, off);
		if (skippable(s, has_parent, off, &len)) {
			off += len;
			continue;
		}
		ret = blk_read(s, off, buf, (size_t)len);
		if (ret) {
			blk_seterr(err, "%s: read error at offset %llu: %s", src, (unsigned long long)off,
				   strerror(-ret));
			goto out;
		}
		/* Whole destination sectors (a 4 KiB-sector output of a
		 * 512-byte-sector source ends on a partial one). */
		wlen = MIN(ROUND_UP(len, di.logical_sector), di.size - off);
		memset(buf + len, 0, (size_t)(wlen - len));
		ret = write_nonzero(d, off, buf, wlen);
		if (ret) {
			blk_seterr(err, "%s: write error at offset %llu: %s", dst,
				   (unsigned long long)off, strerror(-ret));
			goto out;
		}
		off += len;
	}
	ret = blk_flush(d);
	if (ret)
		blk_seterr(err, "%s: cannot flush: %s", dst, strerror(-ret));
	blk_progress_update(p, si.size);
out:
	free(buf);
	if (d)
		blk_close(d);
	if (s)
		blk_close(s);
	if (ret && created)
		unlink(dst);
	return ret;
}

/* ---- resize ---- */

int blk_image_resize(const char *path, uint64_t size, struct blk_error *err)
{
	struct blk_disk *d;
	struct blk_info info;
	int ret;

	if (err)
		err->msg[0] = 0;
	d = blk_open(path, BLK_FMT_AUTO, 0, err);
	if (!d)
		return -EINVAL;
	blk_get_info(d, &info);
	if (info.format == BLK_FMT_VHD) {
		if (size > BLK_VHD_MAX_SIZE) {
			blk_seterr(err, "%s: a VHD holds at most 2040 GiB", path);
			blk_close(d);
			return -EFBIG;
		}
		size = vhd_rounded_size(size);
	} else {
		size = ROUND_UP(size, info.logical_sector);
	}
	if (!size) {
		blk_seterr(err, "%s: the size must be more than 0", path);
		blk_close(d);
		return -EINVAL;
	}
	ret = blk_resize(d, size);
	switch (ret) {
	case 0:
		ret = blk_flush(d);
		break;
	case -ENOTEMPTY:
		blk_seterr(err, "%s: data lies beyond %llu bytes: shrinking would lose it", path,
			   (unsigned long long)size);
		break;
	case -EOPNOTSUPP:
		if (info.format == BLK_FMT_VHDX && size < info.size)
			blk_seterr(err, "%s: a VHDX image can only grow (it is %llu bytes)", path,
				   (unsigned long long)info.size);
		else
			blk_seterr(err, "%s: this image cannot be resized", path);
		break;
	case -EFBIG:
		blk_seterr(err, "%s: %llu bytes is more than the format holds", path,
			   (unsigned long long)size);
		break;
	default:
		blk_seterr(err, "%s: resize failed: %s", path, strerror(-ret));
	}
	blk_close(d);
	return ret;
}

/* ---- merge ---- */

static int write_zeros(struct blk_disk *d, uint64_t off, uint64_t len, uint8_t *zeros)
{
	int ret = blk_discard(d, off, len);

	if (ret != -EOPNOTSUPP)
		return ret;
	for (uint64_t o = 0; o < len && !ret; o += CHUNK)
		ret = blk_write(d, off + o, zeros, (size_t)MIN(CHUNK, len - o), 0);
	return ret;
}

int blk_merge(const char *child, char *parent_out, struct blk_progress *p, struct blk_error *err)
{
	struct blk_details cd;
	struct blk_disk *c = NULL, *pd = NULL;
	struct blk_info ci, pi;
	char parent[4096];
	uint8_t *buf = NULL;
	int ret;

	if (err)
		err->msg[0] = 0;
	/* The chain must open as it is: the parent present and unchanged. */
	c = blk_open(child, BLK_FMT_AUTO, BLK_OPEN_RDONLY, err);
	if (!c)
		return -EINVAL;
	blk_close(c);
	c = NULL;
	ret = blk_details(child, &cd, err);
	if (ret)
		return ret;
	if (cd.type != BLK_TYPE_DIFF || !cd.parent[0]) {
		blk_seterr(err, "%s: not a differencing disk: nothing to merge", child);
		return -EINVAL;
	}
	snprintf(parent, sizeof(parent), "%s", cd.parent);
	if (parent_out)
		snprintf(parent_out, 4096, "%s", parent);
	pd = blk_open(parent, cd.format, 0, err);
	if (!pd)
		return -EINVAL;
	c = blk_open(child, cd.format, BLK_OPEN_RDONLY | BLK_OPEN_NO_PARENT, err);
	if (!c) {
		ret = -EINVAL;
		goto out;
	}
	blk_get_info(c, &ci);
	blk_get_info(pd, &pi);
	if (ci.size > pi.size) {
		ret = blk_resize(pd, ci.size);
		if (ret) {
			blk_seterr(err, "%s: cannot grow the parent to the child's size: %s", parent,
				   strerror(-ret));
			goto out;
		}
	}
	buf = calloc(1, CHUNK);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (p)
		p->total = ci.size;
	for (uint64_t off = 0; off < ci.size;) {
		uint64_t len = MIN(CHUNK, ci.size - off), pnum;
		enum blk_status st;

		blk_progress_update(p, off);
		ret = blk_block_status(c, off, len, &pnum, &st);
		if (ret)
			break;
		len = MIN(len, pnum);
		if (st == BLK_ST_DATA) {
			ret = blk_read(c, off, buf, (size_t)len);
			if (!ret)
				ret = blk_write(pd, off, buf, (size_t)len, 0);
		} else if (st == BLK_ST_ZERO) {
			memset(buf, 0, CHUNK);
			ret = write_zeros(pd, off, len, buf);
		}
		if (ret)
			break;
		off += len;
	}
	if (!ret)
		ret = blk_flush(pd);
	if (ret) {
		blk_seterr(err, "%s: merging into %s failed: %s (the parent is partly updated and "
			   "no longer matches the child)", child, parent, strerror(-ret));
		goto out;
	}
	blk_progress_update(p, ci.size);
	blk_close(c);
	c = NULL;
	if (unlink(child) < 0) {
		ret = -errno;
		blk_seterr(err, "%s: merged, but cannot remove the child: %s", child, strerror(errno));
	}
out:
	free(buf);
	if (c)
		blk_close(c);
	if (pd)
		blk_close(pd);
	return ret;
}

/* ---- compact ---- */

static int raw_compact(struct blk_disk *d, struct blk_progress *p)
{
	struct blk_info info;
	uint8_t *buf = malloc(MiB);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	blk_get_info(d, &info);
	if (p)
		p->total = info.size;
	for (uint64_t off = 0; off < info.size && !ret;) {
		uint64_t len = MIN(MiB, info.size - off);

		blk_progress_update(p, off);
		if (!skippable(d, false, off, &len)) {
			len = MIN(MiB, info.size - off);
			ret = blk_read(d, off, buf, (size_t)len);
			if (!ret && blk_is_zero(buf, (size_t)len))
				ret = blk_discard(d, off, len);
		}
		off += len;
	}
	if (!ret)
		ret = blk_flush(d);
	free(buf);
	return ret;
}

int blk_compact(const char *path, struct blk_progress *p, uint64_t *freed, struct blk_error *err)
{
	struct blk_disk *d;
	struct stat before, after;
	uint64_t file_freed = 0;
	int ret;

	if (err)
		err->msg[0] = 0;
	*freed = 0;
	if (stat(path, &before) < 0) {
		ret = -errno;
		blk_seterr(err, "%s: %s", path, strerror(errno));
		return ret;
	}
	d = blk_open(path, BLK_FMT_AUTO, BLK_OPEN_NO_PARENT, err);
	if (!d)
		return -EINVAL;
	switch (d->drv->format) {
	case BLK_FMT_VHD:
		ret = vhd_compact(d->img, p, &file_freed);
		break;
	case BLK_FMT_VHDX:
		ret = vhdx_compact(d->img, p, &file_freed);
		break;
	default:
		ret = raw_compact(d, p);
	}
	blk_close(d);
	if (ret == -EOPNOTSUPP)
		blk_seterr(err, "%s: a fixed image keeps every block: there is nothing to compact",
			   path);
	else if (ret)
		blk_seterr(err, "%s: compact failed: %s", path, strerror(-ret));
	else if (stat(path, &after) == 0 && before.st_blocks > after.st_blocks)
		*freed = (uint64_t)(before.st_blocks - after.st_blocks) * 512;
	return ret;
}
