/* The VHDX driver's state, shared by vhdx.c (open, I/O), vhdx_log.c (the
 * metadata log) and vhdx_ops.c (create, check, compact). */
#ifndef HVMM_VHDX_INTERNAL_H
#define HVMM_VHDX_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block_internal.h"
#include "block/vhdx_format.h"

/* Sanity limits for untrusted files. */
#define VHDX_MAX_LOG (256 * MiB)       /* replay reads the whole log */
#define VHDX_MAX_METADATA (256 * MiB)
#define VHDX_MAX_BAT_REGION (1 * GiB)  /* 2^27 entries, > what 64 TiB needs */
#define VHDX_MAX_LOCATOR (64 * KiB)

/* One change a read-only open replayed in memory: file bytes as the log
 * says they should be. data NULL: zeros. */
struct vhdx_overlay {
	uint64_t off, len;
	const uint8_t *data;
};

struct vhdx {
	int fd;
	char *path;
	bool ro;
	bool check;             /* opened for check: BAT damage is reported, not refused */
	uint64_t file_size;     /* the file's end as this driver knows it */

	/* headers */
	struct vhdx_header hdr; /* the current one */
	int hdr_slot;           /* 0: header 1 at 64 KiB is current; 1: header 2 */
	bool hdr_other_ok;      /* the other copy is valid too */
	bool hdr_updated;       /* headers written this session */

	/* log */
	uint64_t log_off;
	uint32_t log_len;
	uint32_t log_head;      /* where the next entry goes */
	uint64_t log_seq;       /* of the last entry written */
	bool log_replayed;      /* open found a log and replayed it */
	bool log_pending;       /* a log waits (check, read-only: replayed in memory only) */
	uint8_t *log_image;     /* read-only replay: the log, the overlay points into it */
	struct vhdx_overlay *ov;
	size_t ov_n;

	/* regions */
	uint8_t *rt;            /* the region table in use (64 KiB) */
	uint64_t bat_off, meta_off;
	uint32_t bat_len, meta_len;

	/* metadata */
	uint32_t block_size, lss, pss;
	uint64_t vsize;
	bool fixed;             /* LeaveBlocksAllocated */
	bool has_parent;
	struct blk_guid page83;
	uint64_t vsize_item;    /* file offset of the virtual disk size item */
	uint64_t locator_item;
	uint32_t locator_len;

	/* blocks */
	uint64_t chunk_ratio;   /* payload blocks per sector bitmap block */
	uint64_t payload_blocks;
	uint64_t bat_entries;
	uint64_t *bat;          /* host order; read with bat_get() */

	/* differencing */
	struct blk_disk *parent;
	char *parent_path;      /* as found (or the first candidate when not opened) */
	char *parent_linkage;   /* "{...}" the parent's DataWriteGuid must match */

	bool file_guid_done;    /* FileWriteGuid renewed this session */
	bool data_guid_done;    /* DataWriteGuid renewed this session */
	bool broken;            /* a metadata update failed halfway: no more writes */
	pthread_rwlock_t lock;  /* I/O (shared) against discard, resize (exclusive) */
	pthread_mutex_t meta;   /* allocation, the log, headers */
};

static inline struct vhdx *VHDX(struct blk_image *img)
{
	return (struct vhdx *)img;
}

static inline uint64_t vhdx_bat_get(struct vhdx *v, uint64_t idx)
{
	return __atomic_load_n(&v->bat[idx], __ATOMIC_ACQUIRE);
}

static inline uint64_t vhdx_payload_index(struct vhdx *v, uint64_t blk)
{
	return blk + blk / v->chunk_ratio;
}

static inline uint64_t vhdx_sb_index(struct vhdx *v, uint64_t chunk)
{
	return chunk * (v->chunk_ratio + 1) + v->chunk_ratio;
}

static inline uint64_t vhdx_entry_offset(uint64_t e)
{
	return e & VHDX_BAT_OFFSET_MASK;
}

/* Entries the BAT needs for a disk of `vsize` bytes. */
uint64_t vhdx_bat_entries_for(uint64_t vsize, uint32_t block_size, uint32_t lss, bool diff);

/* Check every BAT entry the disk uses; report each problem. Returns the
 * number of problems. */
typedef void vhdx_problem_fn(void *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
unsigned vhdx_validate_bat(struct vhdx *v, vhdx_problem_fn *problem, void *ctx);

/* Metadata reads: the file, plus what a read-only replay put in memory. */
int vhdx_read_meta(struct vhdx *v, void *buf, size_t len, uint64_t off);

/* Header update: the non-current copy gets the current one with the given
 * GUIDs (NULL: unchanged) and the next sequence number; synced. */
int vhdx_update_header(struct vhdx *v, const struct blk_guid *file_write,
		       const struct blk_guid *data_write, const struct blk_guid *log_guid);
/* Before the first write of a session: new FileWriteGuid (and
 * DataWriteGuid for changes the guest can see). Takes no lock. */
int vhdx_begin_write(struct vhdx *v, bool data);

/* ---- the log ---- */

/* A metadata update: 4 KiB sectors to write, applied atomically. */
struct vhdx_txn {
	size_t n, cap;
	uint64_t *off;
	uint8_t *data;          /* n × 4 KiB */
	size_t nbat, bat_cap;   /* BAT entries changed, to update in memory */
	uint64_t *bat_idx, *bat_val;
};

void vhdx_txn_init(struct vhdx_txn *t);
uint8_t *vhdx_txn_sector(struct vhdx *v, struct vhdx_txn *t, uint64_t off, int *ret);
void vhdx_txn_free(struct vhdx_txn *t);
/* Put len bytes at file offset off into the transaction (sectors start as
 * the file's contents). */
int vhdx_txn_write(struct vhdx *v, struct vhdx_txn *t, uint64_t off, const void *buf, size_t len);
int vhdx_txn_bat(struct vhdx *v, struct vhdx_txn *t, uint64_t idx, uint64_t val);
/* Sectors a transaction may hold in this file's log. */
size_t vhdx_txn_max_sectors(struct vhdx *v);

/* Log entry written and synced, then applied and synced; the in-memory
 * BAT follows. flushed_limit: at most this much of the file counts as
 * stable in the entry (before the file is cut); 0 for no limit. On a
 * failure after the entry is written the image is broken (no more
 * writes); reopening replays. */
int vhdx_log_commit(struct vhdx *v, struct vhdx_txn *t, uint64_t flushed_limit);

/* Open: replay a pending log (LogGuid set). Into the file when writable;
 * in memory (the overlay) when read-only. */
int vhdx_log_replay(struct vhdx *v, struct blk_error *err);

/* Tests: stop a commit after its entry is written and synced, before it is
 * applied, as a crash there would. */
extern bool vhdx_test_stop_after_log;

#endif
