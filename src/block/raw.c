/* Raw disks: a regular file or a block device holding the disk byte for
 * byte. Files get sparse discards (punched holes) and can grow; devices
 * report their own size and sector sizes. */
#include "block/block_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

struct raw_image {
	int fd;
	bool blockdev;
	bool ro;
	uint64_t size;     /* the disk's size: the file's, rounded up to a sector */
	uint32_t lss, pss;
	pthread_rwlock_t lock; /* resize against I/O */
};

static struct raw_image *RAW(struct blk_image *img)
{
	return (struct raw_image *)img;
}

static bool raw_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	return true;
}

static int raw_open(struct blk_image **out, int fd, const char *path, unsigned flags,
		    struct blk_error *err)
{
	struct raw_image *r = calloc(1, sizeof(*r));
	struct stat st;

	if (!r) {
		blk_seterr(err, "%s: out of memory", path);
		return -ENOMEM;
	}
	r->fd = fd;
	r->ro = flags & BLK_OPEN_RDONLY;
	r->lss = r->pss = 512;
	if (fstat(fd, &st) < 0) {
		int ret = -errno;

		blk_seterr(err, "%s: %s", path, strerror(errno));
		free(r);
		return ret;
	}
	if (S_ISBLK(st.st_mode)) {
		int lss = 512;
		unsigned pss = 512;

		r->blockdev = true;
		if (ioctl(fd, BLKGETSIZE64, &r->size) < 0) {
			int ret = -errno;

			blk_seterr(err, "%s: cannot read the device's size: %s", path,
				   strerror(errno));
			free(r);
			return ret;
		}
		if (ioctl(fd, BLKSSZGET, &lss) == 0 && (lss == 512 || lss == 4096))
			r->lss = (uint32_t)lss;
		if (ioctl(fd, BLKPBSZGET, &pss) == 0 && (pss == 512 || pss == 4096))
			r->pss = pss;
		if (r->pss < r->lss)
			r->pss = r->lss;
		r->size = ROUND_DOWN(r->size, r->lss);
	} else {
		r->size = ROUND_UP((uint64_t)st.st_size, 512);
	}
	blk_rwlock_init(&r->lock);
	*out = (struct blk_image *)r;
	return 0;
}

static void raw_close(struct blk_image *img)
{
	struct raw_image *r = RAW(img);

	close(r->fd);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

static void raw_info(struct blk_image *img, struct blk_info *info)
{
	struct raw_image *r = RAW(img);

	info->format = BLK_FMT_RAW;
	info->size = __atomic_load_n(&r->size, __ATOMIC_RELAXED);
	info->logical_sector = r->lss;
	info->physical_sector = r->pss;
	info->read_only = r->ro;
	info->can_discard = !r->ro;
}

static int raw_readv(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
		     size_t len)
{
	struct raw_image *r = RAW(img);
	int ret;

	pthread_rwlock_rdlock(&r->lock);
	ret = blk_preadv(r->fd, iov, niov, len, off, 0);
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

static int raw_readv_nowait(struct blk_image *img, uint64_t off, const struct iovec *iov,
			    int niov, size_t len)
{
	struct raw_image *r = RAW(img);
	int ret;

	if (pthread_rwlock_tryrdlock(&r->lock))
		return -EAGAIN;
	ret = blk_preadv(r->fd, iov, niov, len, off, RWF_NOWAIT);
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

static int raw_writev_nowait(struct blk_image *img, uint64_t off, const struct iovec *iov,
			     int niov, size_t len)
{
	struct raw_image *r = RAW(img);
	int ret;

	if (pthread_rwlock_tryrdlock(&r->lock))
		return -EAGAIN;
	ret = blk_pwritev(r->fd, iov, niov, len, off, RWF_NOWAIT);
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

static int raw_writev(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
		      size_t len, unsigned flags)
{
	struct raw_image *r = RAW(img);
	int ret;

	pthread_rwlock_rdlock(&r->lock);
	ret = blk_pwritev(r->fd, iov, niov, len, off, 0);
	if (!ret && (flags & BLK_FUA))
		ret = blk_sync(r->fd);
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

static int raw_read(struct blk_image *img, uint64_t off, void *buf, size_t len)
{
	struct iovec iov = { buf, len };

	return raw_readv(img, off, &iov, 1, len);
}

static int raw_write(struct blk_image *img, uint64_t off, const void *buf, size_t len,
		     unsigned flags)
{
	struct iovec iov = { (void *)buf, len };

	return raw_writev(img, off, &iov, 1, len, flags);
}

static int raw_flush(struct blk_image *img)
{
	return blk_sync(RAW(img)->fd);
}

static int zero_with_writes(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];

	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		int ret = blk_pwrite(fd, zeros, n, off);

		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

static int raw_discard(struct blk_image *img, uint64_t off, uint64_t len)
{
	struct raw_image *r = RAW(img);
	int ret;

	pthread_rwlock_rdlock(&r->lock);
	if (r->blockdev) {
		/* A punched hole on a device is a zeroing discard: reads return
		 * zeros afterwards, which BLKDISCARD alone does not promise. */
		ret = blk_punch(r->fd, off, len);
		if (ret == -EOPNOTSUPP) {
			/* Plain BLKDISCARD only where the device says discarded
			 * blocks read back as zeros. */
			uint64_t range[2] = { off, len };
			unsigned zeroes = 0;

			if (ioctl(r->fd, BLKDISCARDZEROES, &zeroes) == 0 && zeroes &&
			    ioctl(r->fd, BLKDISCARD, range) == 0)
				ret = 0;
		}
	} else {
		ret = blk_punch(r->fd, off, len);
		if (ret == -EOPNOTSUPP)
			ret = zero_with_writes(r->fd, off, len); /* reads must return zeros */
	}
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

/* Is [from, to) of the file all zeros? Holes are skipped without reading. */
static int tail_is_zero(int fd, uint64_t from, uint64_t to)
{
	uint8_t *buf = malloc(MiB);
	int ret = 1;

	if (!buf)
		return -ENOMEM;
	while (from < to) {
		off_t data = lseek(fd, (off_t)from, SEEK_DATA);
		uint64_t n;

		if (data < 0 || (uint64_t)data >= to)
			break; /* no data left (ENXIO), or unsupported: read below */
		from = (uint64_t)data;
		n = MIN(to - from, MiB);
		ret = blk_pread(fd, buf, (size_t)n, from);
		if (ret) {
			free(buf);
			return ret;
		}
		if (!blk_is_zero(buf, (size_t)n)) {
			free(buf);
			return 0;
		}
		from += n;
		ret = 1;
	}
	free(buf);
	return 1;
}

static int raw_resize(struct blk_image *img, uint64_t new_size)
{
	struct raw_image *r = RAW(img);
	uint64_t file_size;
	int ret;

	if (r->blockdev)
		return -EOPNOTSUPP;
	pthread_rwlock_wrlock(&r->lock);
	ret = blk_file_size(r->fd, &file_size);
	if (!ret && new_size < file_size) {
		ret = tail_is_zero(r->fd, new_size, file_size);
		if (ret == 0)
			ret = -ENOTEMPTY; /* data would be cut off */
		else if (ret > 0)
			ret = 0;
	}
	if (!ret)
		ret = blk_truncate(r->fd, new_size);
	if (!ret)
		ret = blk_sync(r->fd);
	if (!ret)
		__atomic_store_n(&r->size, new_size, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

int raw_block_status(struct blk_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
		     enum blk_status *st)
{
	struct raw_image *r = RAW(img);
	off_t data, hole;

	*st = BLK_ST_DATA;
	*pnum = len;
	if (r->blockdev)
		return 0;
	data = lseek(r->fd, (off_t)off, SEEK_DATA);
	if (data < 0) {
		if (errno == ENXIO) /* past the last data */
			*st = BLK_ST_ZERO;
		return 0;
	}
	if ((uint64_t)data > off) {
		*st = BLK_ST_ZERO;
		*pnum = MIN(len, (uint64_t)data - off);
		return 0;
	}
	hole = lseek(r->fd, (off_t)off, SEEK_HOLE);
	if (hole > (off_t)off)
		*pnum = MIN(len, (uint64_t)hole - off);
	return 0;
}

void raw_details(struct blk_image *img, struct blk_details *d)
{
	struct raw_image *r = RAW(img);
	struct stat st;

	d->type = BLK_TYPE_FIXED;
	d->size = r->size;
	d->logical_sector = r->lss;
	d->physical_sector = r->pss;
	d->allocated = r->size;
	if (fstat(r->fd, &st) == 0 && !r->blockdev) {
		uint64_t used = (uint64_t)st.st_blocks * 512;

		d->allocated = MIN(used, r->size);
	}
}

const struct blk_driver blk_raw_driver = {
	.name = "raw",
	.format = BLK_FMT_RAW,
	.probe = raw_probe,
	.open = raw_open,
	.close = raw_close,
	.info = raw_info,
	.read = raw_read,
	.readv = raw_readv,
	.writev = raw_writev,
	.readv_nowait = raw_readv_nowait,
	.writev_nowait = raw_writev_nowait,
	.write = raw_write,
	.flush = raw_flush,
	.discard = raw_discard,
	.resize = raw_resize,
};
