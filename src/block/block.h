/* The block layer: one interface over every disk image format.
 *
 * A format driver (raw, VHD, VHDX) maps a virtual disk onto its file with
 * pread/pwrite at explicit offsets (never a shared file offset). Its
 * read/write/flush/discard calls are synchronous and must be safe to call
 * from several threads at once on the same image: the asynchronous queue
 * (block/queue.h) runs them on worker threads, never on a vCPU thread.
 * Drivers that update metadata (allocating a block, resizing) serialize
 * those updates themselves; VHDX routes them through its log so that a
 * crash at any point leaves an image that opens and replays.
 *
 * Durability: blk_flush() returns only after every write that completed
 * before it was called is on stable storage (fdatasync of the file and of
 * any metadata the driver changed). A write with BLK_FUA is durable when it
 * completes. An acknowledged flush is never lost.
 *
 * Errors are negative errno values; for open and create a message for the
 * user is written to `err`. */
#ifndef HVMM_BLOCK_H
#define HVMM_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLK_ERR_MAX 256

struct blk_error {
	char msg[BLK_ERR_MAX];
};

enum blk_format { BLK_FMT_AUTO = 0, BLK_FMT_RAW, BLK_FMT_VHD, BLK_FMT_VHDX };

#define BLK_OPEN_RDONLY 0x1

#define BLK_FUA 0x1 /* write: durable on completion */

/* What a caller may ask of an open image. */
struct blk_info {
	enum blk_format format;
	uint64_t size;               /* virtual size in bytes */
	uint32_t logical_sector;     /* 512 or 4096 */
	uint32_t physical_sector;    /* 512 or 4096 */
	bool read_only;
	bool can_discard;            /* discard frees space in the file */
};

struct blk_image;

/* One format. Every image function is called only on an open image. */
struct blk_driver {
	const char *name; /* "raw", "vhd", "vhdx" */
	enum blk_format format;
	/* Does this file look like this format? `head` holds the first bytes
	 * (up to 64 KiB), `file_size` the whole size. Raw says yes to all. */
	bool (*probe)(const uint8_t *head, size_t len, uint64_t file_size);
	int (*open)(struct blk_image **out, int fd, const char *path, unsigned flags,
		    struct blk_error *err);
	void (*close)(struct blk_image *img);
	void (*info)(struct blk_image *img, struct blk_info *info);
	/* Whole bytes; off and len are multiples of the logical sector and
	 * inside the disk (the caller checks). Unallocated areas read as
	 * zeros (or from the parent of a differencing disk). */
	int (*read)(struct blk_image *img, uint64_t off, void *buf, size_t len);
	int (*write)(struct blk_image *img, uint64_t off, const void *buf, size_t len, unsigned flags);
	/* Optional, vectored: the first `len` bytes of iov (every element's
	 * length a multiple of the logical sector). */
	int (*readv)(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
		     size_t len);
	int (*writev)(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
		      size_t len, unsigned flags);
	/* Optional: readv only if it cannot block (data in the page cache, no
	 * lock held by a resize): 0, -EAGAIN (call readv or read on a worker),
	 * -EOPNOTSUPP (the file system cannot tell: blk_readv_nowait() stops
	 * asking) or another negative errno (the read failed). */
	int (*readv_nowait)(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
			    size_t len);
	/* Optional: writev (without FUA) only if it cannot block (the space
	 * is allocated and the file system takes the data into its page cache
	 * without waiting): 0, -EAGAIN, -EOPNOTSUPP or another negative errno,
	 * as above. */
	int (*writev_nowait)(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
			     size_t len);
	int (*flush)(struct blk_image *img);
	/* Give back [off, off+len): reads then return zeros. Optional. */
	int (*discard)(struct blk_image *img, uint64_t off, uint64_t len);
	/* Grow (or shrink where the format allows) the virtual disk. Optional. */
	int (*resize)(struct blk_image *img, uint64_t new_size);
};

/* An open disk: the driver and its image. */
struct blk_disk {
	const struct blk_driver *drv;
	struct blk_image *img;
	char *path;
	/* The driver said -EOPNOTSUPP to a readv_nowait, writev_nowait: the
	 * file system has no RWF_NOWAIT reads, buffered writes (ext4, tmpfs). */
	bool no_nowait_read, no_nowait_write;
};

/* Open `path` as `format` (BLK_FMT_AUTO: probe, raw last), for I/O through
 * the host's page cache. Returns NULL and fills err on failure. */
struct blk_disk *blk_open(const char *path, enum blk_format format, unsigned flags,
			  struct blk_error *err);
void blk_close(struct blk_disk *d);

void blk_get_info(struct blk_disk *d, struct blk_info *info);
int blk_read(struct blk_disk *d, uint64_t off, void *buf, size_t len);
int blk_write(struct blk_disk *d, uint64_t off, const void *buf, size_t len, unsigned flags);
/* Scattered buffers: the first len bytes of iov, each element a multiple of
 * the logical sector long. -EOPNOTSUPP if the format has no vectored I/O
 * (then copy through a flat buffer). */
int blk_readv(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov, size_t len);
int blk_writev(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov, size_t len,
	       unsigned flags);
/* blk_readv() without blocking, for an event loop: -EAGAIN when it would
 * block or the format cannot tell (then read on a worker). */
int blk_readv_nowait(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov,
		     size_t len);
/* blk_writev() without blocking and without FUA, the same way. */
int blk_writev_nowait(struct blk_disk *d, uint64_t off, const struct iovec *iov, int niov,
		      size_t len);
int blk_flush(struct blk_disk *d);
int blk_discard(struct blk_disk *d, uint64_t off, uint64_t len); /* -EOPNOTSUPP if none */
int blk_resize(struct blk_disk *d, uint64_t new_size);           /* -EOPNOTSUPP if none */

/* "raw", "vhd", "vhdx" <-> enum; NULL/BLK_FMT_AUTO when unknown. */
const char *blk_format_name(enum blk_format f);
enum blk_format blk_format_from_name(const char *name);

#endif
