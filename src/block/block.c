/* The block layer's front: open (probing VHDX, VHD, then raw), the calls
 * every format answers, and format names. */
#include "block/block_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

static const struct blk_driver *const probe_order[] = {
	&blk_vhdx_driver,
	&blk_vhd_driver,
	&blk_raw_driver,
};

static const struct blk_driver *driver_for(enum blk_format f)
{
	for (size_t i = 0; i < sizeof(probe_order) / sizeof(probe_order[0]); i++)
		if (probe_order[i]->format == f)
			return probe_order[i];
	return NULL;
}

const char *blk_format_name(enum blk_format f)
{
	const struct blk_driver *drv = driver_for(f);

	return drv ? drv->name : NULL;
}

enum blk_format blk_format_from_name(const char *name)
{
	if (!name)
		return BLK_FMT_AUTO;
	for (size_t i = 0; i < sizeof(probe_order) / sizeof(probe_order[0]); i++)
		if (!strcmp(probe_order[i]->name, name))
			return probe_order[i]->format;
	return BLK_FMT_AUTO;
}

/* Open the file itself: never blocks on a FIFO, refuses what is neither a
 * regular file nor a block device, and locks it (shared for readers,
 * exclusive for a writer) so that two programs never write one image. */
static int open_file(const char *path, bool rdonly, struct blk_chain *chain,
		     struct blk_error *err)
{
	int fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	struct stat st;
	int ret;

	if (fd < 0) {
		ret = -errno;
		blk_seterr(err, "%s: cannot open%s: %s", path, rdonly ? "" : " for writing",
			   strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		blk_seterr(err, "%s: not a regular file or block device", path);
		close(fd);
		return -EINVAL;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	for (int i = 0; i < chain->depth; i++) {
		if (chain->dev[i] == st.st_dev && chain->ino[i] == st.st_ino) {
			blk_seterr(err, "%s: the chain of parents loops back to this file", path);
			close(fd);
			return -ELOOP;
		}
	}
	if (chain->depth > BLK_MAX_CHAIN) {
		blk_seterr(err, "%s: the chain of parents is deeper than %d", path, BLK_MAX_CHAIN);
		close(fd);
		return -ELOOP;
	}
	chain->dev[chain->depth] = st.st_dev;
	chain->ino[chain->depth] = st.st_ino;
	if (flock(fd, (rdonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		ret = -errno;
		if (errno == EWOULDBLOCK)
			blk_seterr(err, "%s: in use by another program (or another open in this one)",
				   path);
		else
			blk_seterr(err, "%s: cannot lock: %s", path, strerror(errno));
		close(fd);
		return ret == -EWOULDBLOCK ? -EBUSY : ret;
	}
	return fd;
}

static uint64_t fd_size(int fd)
{
	struct stat st;
	uint64_t size = 0;

	if (fstat(fd, &st) < 0)
		return 0;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			return 0;
		return size;
	}
	return (uint64_t)st.st_size;
}

static int driver_open(const struct blk_driver *drv, struct blk_image **img, int fd,
		       const char *path, unsigned flags, struct blk_chain *chain,
		       struct blk_error *err)
{
	switch (drv->format) {
	case BLK_FMT_VHD:
		return vhd_open_chain(img, fd, path, flags, chain, err);
	case BLK_FMT_VHDX:
		return vhdx_open_chain(img, fd, path, flags, chain, err);
	default:
		return drv->open(img, fd, path, flags, err);
	}
}

struct blk_disk *blk_open_chain(const char *path, enum blk_format format, unsigned flags,
				struct blk_chain *chain, struct blk_error *err)
{
	const struct blk_driver *drv = NULL;
	struct blk_image *img = NULL;
	struct blk_disk *d;
	uint8_t *head;
	size_t len;
	uint64_t size;
	int fd, ret;

	if (err)
		err->msg[0] = 0;
	chain->error = 0;
	if (format != BLK_FMT_AUTO && !(drv = driver_for(format))) {
		blk_seterr(err, "%s: unknown format", path);
		chain->error = -EINVAL;
		return NULL;
	}
	fd = open_file(path, flags & BLK_OPEN_RDONLY, chain, err);
	if (fd < 0) {
		chain->error = fd;
		return NULL;
	}
	if (!drv) {
		head = calloc(1, 64 * KiB);
		if (!head) {
			blk_seterr(err, "%s: out of memory", path);
			close(fd);
			chain->error = -ENOMEM;
			return NULL;
		}
		size = fd_size(fd);
		len = size < 64 * KiB ? (size_t)size : 64 * KiB;
		ret = blk_pread(fd, head, len, 0);
		if (ret) {
			blk_seterr(err, "%s: cannot read: %s", path, strerror(-ret));
			free(head);
			close(fd);
			chain->error = ret;
			return NULL;
		}
		for (size_t i = 0; i < sizeof(probe_order) / sizeof(probe_order[0]); i++) {
			/* Fixed VHDs carry their only footer at the end. */
			if (probe_order[i]->probe(head, len, size) ||
			    (probe_order[i]->format == BLK_FMT_VHD && vhd_probe_tail(fd, size))) {
				drv = probe_order[i];
				break;
			}
		}
		free(head);
	}
	ret = driver_open(drv, &img, fd, path, flags, chain, err);
	if (ret < 0) {
		if (err && !err->msg[0])
			blk_seterr(err, "%s: cannot open as %s: %s", path, drv->name, strerror(-ret));
		close(fd);
		chain->error = ret;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(path))) {
		free(d);
		drv->close(img); /* closes fd */
		blk_seterr(err, "%s: out of memory", path);
		chain->error = -ENOMEM;
		return NULL;
	}
	d->drv = drv;
	d->img = img;
	return d;
}

struct blk_disk *blk_open(const char *path, enum blk_format format, unsigned flags,
			  struct blk_error *err)
{
	struct blk_chain chain = { 0 };

	return blk_open_chain(path, format, flags, &chain, err);
}

void blk_close(struct blk_disk *d)
{
	if (!d)
		return;
	d->drv->close(d->img);
	free(d->path);
	free(d);
}

void blk_get_info(struct blk_disk *d, struct blk_info *info)
{
	memset(info, 0, sizeof(*info));
	d->drv->info(d->img, info);
}

/* The caller's checks: whole logical sectors inside the disk. */
static int check_range(struct blk_disk *d, uint64_t off, uint64_t len, struct blk_info *info)
{
	d->drv->info(d->img, info);
	if (off % info->logical_sector || len % info->logical_sector)
		return -EINVAL;
	if (off > info->size || len > info->size - off)
		return -ERANGE;
	return 0;
}

int blk_read(struct blk_disk *d, uint64_t off, void *buf, size_t len)
{
	struct blk_info info;
	int ret = check_range(d, off, len, &info);

	if (ret || !len)
		return ret;
	return d->drv->read(d->img, off, buf, len);
}

/* check_range, and each element of iov a whole number of sectors,
 * together at least len bytes. */
static int check_vector(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov,
			size_t len, struct blk_info *info)
{
	size_t total = 0;
	int ret = check_range(d, off, len, info);

	if (ret)
		return ret;
	for (int i = 0; i < niov && total < len; i++) {
		if (iov[i].iov_len % info->logical_sector)
			return -EINVAL;
		total += iov[i].iov_len;
	}
	return total < len ? -EINVAL : 0;
}

int blk_readv(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov, size_t len)
{
	struct blk_info info;
	int ret;

	if (!d->drv->readv)
		return -EOPNOTSUPP;
	ret = check_vector(d, off, iov, niov, len, &info);
	if (ret || !len)
		return ret;
	return d->drv->readv(d->img, off, iov, niov, len);
}

int blk_writev(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov, size_t len,
	       unsigned flags)
{
	struct blk_info info;
	int ret;

	if (!d->drv->writev)
		return -EOPNOTSUPP;
	ret = check_vector(d, off, iov, niov, len, &info);
	if (ret)
		return ret;
	if (info.read_only)
		return -EROFS;
	if (!len)
		return flags & BLK_FUA ? d->drv->flush(d->img) : 0;
	return d->drv->writev(d->img, off, iov, niov, len, flags);
}

/* A driver's readv_nowait or writev_nowait, unless it said the file system
 * cannot do it (then -EAGAIN at once, ever after). */
static int nowait_io(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov,
		     size_t len, bool wr)
{
	bool *unsupported = wr ? &d->no_nowait_write : &d->no_nowait_read;
	struct blk_info info;
	int ret;

	if (!(wr ? d->drv->writev_nowait : d->drv->readv_nowait) ||
	    __atomic_load_n(unsupported, __ATOMIC_RELAXED))
		return -EAGAIN;
	ret = check_vector(d, off, iov, niov, len, &info);
	if (ret || !len)
		return ret;
	if (wr && info.read_only)
		return -EROFS;
	ret = wr ? d->drv->writev_nowait(d->img, off, iov, niov, len)
		 : d->drv->readv_nowait(d->img, off, iov, niov, len);
	if (ret != -EOPNOTSUPP)
		return ret;
	__atomic_store_n(unsupported, true, __ATOMIC_RELAXED);
	return -EAGAIN;
}

int blk_readv_nowait(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov,
		     size_t len)
{
	return nowait_io(d, off, iov, niov, len, false);
}

int blk_writev_nowait(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov,
		      size_t len)
{
	return nowait_io(d, off, iov, niov, len, true);
}

int blk_write(struct blk_disk *d, uint64_t off, const void *buf, size_t len, unsigned flags)
{
	struct blk_info info;
	int ret = check_range(d, off, len, &info);

	if (ret)
		return ret;
	if (info.read_only)
		return -EROFS;
	if (!len)
		return flags & BLK_FUA ? d->drv->flush(d->img) : 0;
	return d->drv->write(d->img, off, buf, len, flags);
}

int blk_flush(struct blk_disk *d)
{
	struct blk_info info;

	d->drv->info(d->img, &info);
	if (info.read_only)
		return 0;
	return d->drv->flush(d->img);
}

int blk_discard(struct blk_disk *d, uint64_t off, uint64_t len)
{
	struct blk_info info;
	int ret;

	if (!d->drv->discard)
		return -EOPNOTSUPP;
	ret = check_range(d, off, len, &info);
	if (ret)
		return ret;
	if (info.read_only)
		return -EROFS;
	return len ? d->drv->discard(d->img, off, len) : 0;
}

int blk_resize(struct blk_disk *d, uint64_t new_size)
{
	struct blk_info info;

	if (!d->drv->resize)
		return -EOPNOTSUPP;
	d->drv->info(d->img, &info);
	if (info.read_only)
		return -EROFS;
	if (new_size % info.logical_sector)
		return -EINVAL;
	if (new_size == info.size)
		return 0;
	return d->drv->resize(d->img, new_size);
}

int blk_block_status(struct blk_disk *d, uint64_t off, uint64_t len, uint64_t *pnum,
		     enum blk_status *st)
{
	switch (d->drv->format) {
	case BLK_FMT_VHD:
		return vhd_block_status(d->img, off, len, pnum, st);
	case BLK_FMT_VHDX:
		return vhdx_block_status(d->img, off, len, pnum, st);
	default:
		return raw_block_status(d->img, off, len, pnum, st);
	}
}
