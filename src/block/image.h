/* Whole-image operations (what `hvctl vhd` does): create, info, check,
 * convert, resize, merge, compact. Each works on paths, opens what it
 * needs through the block layer, and reports failures in a blk_error. */
#ifndef HVMM_BLOCK_IMAGE_H
#define HVMM_BLOCK_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

enum blk_type { BLK_TYPE_DYNAMIC = 0, BLK_TYPE_FIXED, BLK_TYPE_DIFF };

/* Limits and defaults. */
#define BLK_VHDX_MAX_SIZE (64ULL << 40)        /* 64 TiB */
#define BLK_VHD_MAX_SIZE (2040ULL << 30)       /* 2040 GiB */
#define BLK_VHDX_DEFAULT_BLOCK (32U << 20)     /* dynamic and fixed */
#define BLK_VHDX_DEFAULT_DIFF_BLOCK (2U << 20) /* differencing, as Hyper-V */
#define BLK_VHD_DEFAULT_BLOCK (2U << 20)

struct blk_create_opts {
	enum blk_format format;   /* RAW, VHD or VHDX */
	enum blk_type type;
	uint64_t size;            /* bytes; 0 with a parent: the parent's */
	uint32_t block_size;      /* 0: the default */
	uint32_t logical_sector;  /* 0: 512 (VHDX: 512 or 4096; VHD: 512 only) */
	uint32_t physical_sector; /* 0: the logical size (VHDX only) */
	const char *parent;       /* BLK_TYPE_DIFF */
};

/* Create a new image; an existing file is never overwritten. VHD sizes are
 * rounded up to a whole CHS geometry (as qemu-img does, so that both agree
 * on the size). */
int blk_create(const char *path, const struct blk_create_opts *o, struct blk_error *err);

struct blk_details {
	enum blk_format format;
	enum blk_type type;
	uint64_t size;            /* virtual */
	uint64_t file_size;
	uint64_t disk_usage;      /* bytes the file system holds for the file */
	uint64_t allocated;       /* virtual bytes stored in this file */
	uint32_t block_size;      /* 0 for raw and fixed VHD */
	uint32_t logical_sector, physical_sector;
	char parent[4096];        /* differencing: the parent's path, as resolved */
	bool log_pending;         /* VHDX: a log waits to be replayed */
};
int blk_details(const char *path, struct blk_details *d, struct blk_error *err);
const char *blk_type_name(enum blk_type t);

/* Progress of a long job: called now and then with done <= total. */
typedef void blk_progress_fn(void *ctx, uint64_t done, uint64_t total);
struct blk_progress {
	blk_progress_fn *fn;
	void *ctx;
	uint64_t total;
};

/* Check: one message per problem found (and per repair made). */
typedef void blk_report_fn(void *ctx, const char *msg);
struct blk_check_result {
	unsigned corruptions; /* damage that cannot be repaired here */
	unsigned leaks;       /* space held by nothing */
	uint64_t leaked_bytes;
	unsigned repairable;  /* a pending log, a damaged header copy, ... */
	unsigned fixed;       /* repairs made (with repair) */
};
/* 0 if the check ran (see res), or a negative errno if it could not
 * (err says why). A file that is not a valid image at all counts as
 * corrupt (res->corruptions = 1, message in err), not as an error. */
int blk_check(const char *path, enum blk_format fmt, bool repair, blk_report_fn *report, void *ctx,
	      struct blk_check_result *res, struct blk_error *err);

/* Copy src (any format, read through its chain) into a new image dst.
 * Zero areas are not written: dynamic outputs keep them unallocated and
 * raw outputs sparse. o->size is ignored (the source's). */
int blk_convert(const char *src, const char *dst, const struct blk_create_opts *o,
		struct blk_progress *p, struct blk_error *err);

/* Change the virtual size: grow any format; shrink raw and VHD only when
 * nothing but zeros is cut off. */
int blk_image_resize(const char *path, uint64_t size, struct blk_error *err);

/* Write everything a differencing child holds into its parent, then remove
 * the child (as Hyper-V's Merge-VHD). The parent's path goes to
 * parent_out (if not NULL, size 4096). */
int blk_merge(const char *child, char *parent_out, struct blk_progress *p, struct blk_error *err);

/* Give back space: all-zero blocks are unallocated, the rest moved down,
 * the file shortened. Raw files become sparse. *freed: bytes of file
 * given back. */
int blk_compact(const char *path, struct blk_progress *p, uint64_t *freed, struct blk_error *err);

#endif
