/* What the format drivers and the image operations share: file I/O at
 * explicit offsets (with a fault-injection hook for the crash tests),
 * CRC-32C, GUIDs, UTF-16 and error messages. Not for users of the block
 * layer: they use block.h and image.h. */
#ifndef HVMM_BLOCK_INTERNAL_H
#define HVMM_BLOCK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "block/block.h"
#include "block/image.h"

#define KiB (1024ULL)
#define MiB (1024ULL * 1024)
#define GiB (1024ULL * 1024 * 1024)
#define TiB (1024ULL * 1024 * 1024 * 1024)

#define ROUND_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define ROUND_DOWN(x, a) ((x) / (a) * (a))
#define DIV_ROUND_UP(x, a) (((x) + (a) - 1) / (a))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Internal open flags, beside BLK_OPEN_RDONLY. */
#define BLK_OPEN_NO_PARENT 0x100 /* a differencing disk alone: absent sectors read as zeros */
#define BLK_OPEN_CHECK 0x200     /* for check: keep going past BAT damage, keep the log */

/* Open files that make up a differencing chain, to refuse loops. */
#define BLK_MAX_CHAIN 16
struct blk_chain {
	int depth; /* 0: the disk being opened */
	int error; /* blk_open_chain's failure, a negative errno */
	dev_t dev[BLK_MAX_CHAIN + 2];
	ino_t ino[BLK_MAX_CHAIN + 2];
};

/* blk_open with a chain: drivers open parents through this. */
struct blk_disk *blk_open_chain(const char *path, enum blk_format format, unsigned flags,
				struct blk_chain *chain, struct blk_error *err);

/* Driver entry points that need the chain (the struct blk_driver open has
 * no room for it). */
int vhd_open_chain(struct blk_image **out, int fd, const char *path, unsigned flags,
		   struct blk_chain *chain, struct blk_error *err);
int vhdx_open_chain(struct blk_image **out, int fd, const char *path, unsigned flags,
		    struct blk_chain *chain, struct blk_error *err);

/* VHD helpers: fixed disks are found by their footer at the end. */
bool vhd_probe_tail(int fd, uint64_t file_size);
const uint8_t *vhd_unique_id(struct blk_image *img);
uint64_t vhd_rounded_size(uint64_t bytes);

extern const struct blk_driver blk_raw_driver, blk_vhd_driver, blk_vhdx_driver;

/* A driver's I/O lock: shared for I/O, exclusive for resize and discard;
 * a waiting writer is not starved by a stream of readers. */
void blk_rwlock_init(pthread_rwlock_t *lock);

void blk_seterr(struct blk_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- file I/O: whole buffers at explicit offsets, EINTR retried ---- */

/* Reads len bytes; what lies past the end of the file reads as zeros. */
int blk_pread(int fd, void *buf, size_t len, uint64_t off);
int blk_pwrite(int fd, const void *buf, size_t len, uint64_t off);
/* Vectored: all of the first len bytes of iov at off (past the end of the
 * file reads as zeros). With RWF_NOWAIT in flags, only if it cannot block
 * (reads from the page cache, writes into it without waiting): -EAGAIN if
 * it would block (part of it may be done), -EOPNOTSUPP if the file system
 * cannot tell. */
int blk_preadv(int fd, const struct iovec *iov, int niov, size_t len, uint64_t off, int flags);
int blk_pwritev(int fd, const struct iovec *iov, int niov, size_t len, uint64_t off, int flags);
/* The elements covering bytes [skip, skip+len) of iov, in out (room for
 * max); returns how many, or -1 if more than max are needed. */
int blk_iov_slice(const struct iovec *iov, int niov, size_t skip, size_t len, struct iovec *out,
		  int max);
/* Zero bytes [skip, skip+len) of iov. */
void blk_iov_zero(const struct iovec *iov, int niov, size_t skip, size_t len);
/* Copy bytes [skip, skip+len) of iov to flat (or, to_iov, from it). */
void blk_iov_copy(const struct iovec *iov, int niov, size_t skip, uint8_t *flat, size_t len,
		  bool to_iov);
int blk_sync(int fd);
int blk_truncate(int fd, uint64_t size);
/* Make [off, off+len) read as zeros and free its space. -EOPNOTSUPP if the
 * file system cannot. */
int blk_punch(int fd, uint64_t off, uint64_t len);
/* Allocate [off, off+len) (fallocate, or zeros written where unsupported). */
int blk_allocate(int fd, uint64_t off, uint64_t len);
int blk_file_size(int fd, uint64_t *size);
bool blk_is_zero(const void *buf, size_t len);

/* Crash tests: when set, every write, sync, truncate, punch and allocate
 * asks the hook first. BLK_FAULT_FAIL: the operation does nothing and
 * fails with -EIO; BLK_FAULT_TEAR (writes only): the first half (rounded
 * down to 512 bytes) is written, then -EIO. */
enum blk_io_op { BLK_IO_WRITE, BLK_IO_SYNC, BLK_IO_TRUNCATE, BLK_IO_PUNCH, BLK_IO_ALLOC };
enum { BLK_FAULT_NONE = 0, BLK_FAULT_FAIL = 1, BLK_FAULT_TEAR = 2 };
typedef int blk_fault_fn(enum blk_io_op op, int fd, uint64_t off, uint64_t len);
extern blk_fault_fn *blk_fault_hook;

/* ---- checksums, GUIDs, text ---- */

uint32_t blk_crc32c(uint32_t crc, const void *buf, size_t len); /* start with 0 */

struct blk_guid {
	uint8_t b[16];
};
/* A GUID as Microsoft stores it: data1..3 little-endian, data4 as written. */
#define BLK_GUID(d1, d2, d3, d4, d5)                                                        \
	{ { (d1) & 0xff, ((d1) >> 8) & 0xff, ((d1) >> 16) & 0xff, ((d1) >> 24) & 0xff,     \
	    (d2) & 0xff, ((d2) >> 8) & 0xff, (d3) & 0xff, ((d3) >> 8) & 0xff,               \
	    ((d4) >> 8) & 0xff, (d4) & 0xff, ((d5) >> 40) & 0xff, ((d5) >> 32) & 0xff,      \
	    ((d5) >> 24) & 0xff, ((d5) >> 16) & 0xff, ((d5) >> 8) & 0xff, (d5) & 0xff } }
#define BLK_GUID_STR 39 /* "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" + NUL */

bool blk_guid_is_zero(const struct blk_guid *g);
bool blk_guid_eq(const struct blk_guid *a, const struct blk_guid *b);
int blk_guid_random(struct blk_guid *g);
void blk_guid_format(const struct blk_guid *g, char out[BLK_GUID_STR]); /* braced, upper case */
int blk_guid_parse(const char *s, struct blk_guid *g);                  /* braces optional */

/* UTF-16 (little- or big-endian) <-> UTF-8. Return a malloc'd string /
 * buffer, or NULL on bad input. */
char *blk_utf16_to_utf8(const uint8_t *in, size_t bytes, bool big_endian);
uint8_t *blk_utf8_to_utf16(const char *in, bool big_endian, size_t *bytes);

/* The directory part of a path ("." if none); malloc'd. */
char *blk_dirname(const char *path);
/* `rel` relative to the directory of `base` (or as is if absolute). */
char *blk_path_join_dir(const char *base, const char *rel);
/* `target` relative to the directory of `from` ("../x/p.vhdx"); malloc'd. */
char *blk_relative_path(const char *from, const char *target);
char *blk_absolute_path(const char *path);

/* ---- what image operations ask of the formats ---- */

/* How [off, off+len) of one layer looks: *pnum bytes from off share it. */
enum blk_status {
	BLK_ST_DATA,   /* stored in this file */
	BLK_ST_ZERO,   /* reads zeros, whatever the parent holds */
	BLK_ST_ABSENT, /* not in this file: the parent's, or zeros without one */
};
int blk_block_status(struct blk_disk *d, uint64_t off, uint64_t len, uint64_t *pnum,
		     enum blk_status *st);
int raw_block_status(struct blk_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
		     enum blk_status *st);
int vhd_block_status(struct blk_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
		     enum blk_status *st);
int vhdx_block_status(struct blk_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
		      enum blk_status *st);

int vhd_create(const char *path, const struct blk_create_opts *o, struct blk_error *err);
int vhdx_create(const char *path, const struct blk_create_opts *o, struct blk_error *err);

void raw_details(struct blk_image *img, struct blk_details *d);
void vhd_details(struct blk_image *img, struct blk_details *d);
void vhdx_details(struct blk_image *img, struct blk_details *d);

/* Check one open image (opened with BLK_OPEN_CHECK, read-write when
 * repairing). */
struct blk_checker {
	struct blk_check_result *res;
	blk_report_fn *report;
	void *ctx;
	bool repair;
};
void blk_check_msg(struct blk_checker *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int vhd_check(struct blk_image *img, struct blk_checker *c);
int vhdx_check(struct blk_image *img, struct blk_checker *c);

/* Give back all-zero blocks and move blocks down into the holes, then
 * shorten the file. */
int vhd_compact(struct blk_image *img, struct blk_progress *p, uint64_t *freed);
int vhdx_compact(struct blk_image *img, struct blk_progress *p, uint64_t *freed);

/* The parent path a differencing disk names (opened with NO_PARENT), or
 * NULL. Not a copy. */
const char *vhd_parent_path(struct blk_image *img);
const char *vhdx_parent_path(struct blk_image *img);

void blk_progress_update(struct blk_progress *p, uint64_t done);

#endif
