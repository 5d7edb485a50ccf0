/* SCSI direct-access block device (an SBC-3 disk) over an open disk image
 * and its asynchronous queue (block/queue.h).
 *
 * A transport (the storage VSP) fills a struct scsi_cmd with the CDB and
 * the data buffer (a scatter list of host pointers, normally guest memory)
 * and calls scsi_disk_exec(). Commands answered from device state
 * (INQUIRY, READ CAPACITY, MODE SENSE, REPORT LUNS, TEST UNIT READY, ...)
 * finish inside the call; data commands (READ, WRITE, SYNCHRONIZE CACHE,
 * UNMAP, WRITE SAME) go to the queue and finish later through the
 * command's done callback, on the loop thread. A command that would need a
 * full queue is refused with -EAGAIN before anything happened, so the
 * transport can retry it after a completion.
 *
 * Results follow SAM: GOOD, or CHECK CONDITION with fixed-format sense
 * data (ILLEGAL REQUEST for a bad CDB or parameter list, DATA PROTECT on a
 * read-only disk, MEDIUM ERROR for an I/O error, UNIT ATTENTION after a
 * capacity or LUN inventory change). `xfer` is the number of data bytes
 * moved; data-in commands move min(allocation length, data length, buffer
 * length) bytes and succeed ("short transfer").
 *
 * Every CDB field and every byte of a parameter list is guest-controlled
 * and checked; nothing here trusts lengths, LBAs or counts.
 *
 * Threading: the loop thread only (the queue's workers never see these
 * structures except through struct blkq_req). */
#ifndef HVMM_SCSI_DISK_H
#define HVMM_SCSI_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"
#include "block/queue.h"
#include "scsi/scsi_defs.h"

struct scsi_disk;

/* Pending unit attention conditions (reported once each, in this order). */
#define SCSI_UA_CAPACITY_CHANGED 0x1 /* 2A/09 */
#define SCSI_UA_LUNS_CHANGED 0x2     /* 3F/0E */

/* Limits the disk reports (VPD page 0xB0). */
#define SCSI_MAX_UNMAP_DESCRIPTORS 16u
#define SCSI_MAX_WRITE_SAME_BYTES (64u << 20)
#define SCSI_SERIAL_MAX 64u

/* A data buffer: the first `len` bytes of the scatter list. */
struct scsi_sg {
	const struct blkq_iov *iov;
	unsigned niov;
	uint64_t len;
};

/* Copy `len` bytes into / out of the start of the buffer; returns how many
 * fit (min(len, sg->len)). */
size_t scsi_sg_put(const struct scsi_sg *sg, const void *src, size_t len);
size_t scsi_sg_get(const struct scsi_sg *sg, void *dst, size_t len);

struct scsi_unmap_range {
	uint64_t lba;
	uint32_t count;
};

struct scsi_cmd {
	/* In. */
	uint8_t cdb[16];   /* bytes beyond cdb_len must be zero */
	uint8_t cdb_len;   /* 1..16 */
	struct scsi_sg buf;
	void (*done)(struct scsi_cmd *c); /* for commands that return SCSI_QUEUED */
	void *priv;
	/* Out. */
	uint8_t status;    /* SCSI_STATUS_* */
	uint8_t sense_len; /* valid bytes in sense (CHECK CONDITION) */
	uint8_t sense[SCSI_SENSE_LEN];
	uint32_t xfer;     /* data bytes moved */
	/* Private to the disk. */
	struct scsi_disk *disk;
	struct blkq_req io;
	struct blkq_iov io_iov;
	uint8_t *pattern;
	uint32_t io_bytes;
	uint8_t nr_ranges, cur_range;
	struct scsi_unmap_range ranges[SCSI_MAX_UNMAP_DESCRIPTORS];
};

/* scsi_disk_exec() results. */
#define SCSI_DONE 0   /* finished: results are in the command; done is not called */
#define SCSI_QUEUED 1 /* done(c) runs later on the loop thread */

struct scsi_disk_params {
	struct blk_disk *disk;   /* geometry and flags (blk_get_info) */
	struct blkq *q;          /* data commands */
	uint16_t lun;            /* what REPORT LUNS sent to this disk alone lists */
	bool read_only;          /* in addition to the image's own flag */
	uint8_t id[16];          /* unique disk id: NAA and T10 designators (VPD 0x83) */
	const char *serial;      /* VPD 0x80 (printable ASCII); NULL: hex of id */
	uint32_t max_xfer_bytes; /* largest READ/WRITE the transport carries (VPD 0xB0) */
};

/* 0, -EINVAL (no disk/queue, unsupported sector size, bad serial) or
 * -ENOMEM. */
int scsi_disk_new(struct scsi_disk **out, const struct scsi_disk_params *p);
/* The caller must have drained the queue first (no command in flight). */
void scsi_disk_free(struct scsi_disk *d);

/* Execute a command: SCSI_DONE, SCSI_QUEUED, or -EAGAIN (the queue is full;
 * nothing was done, retry later). */
int scsi_disk_exec(struct scsi_disk *d, struct scsi_cmd *c);

/* Would a data command be refused with -EAGAIN now? */
bool scsi_disk_busy(const struct scsi_disk *d);

/* Raise unit attention conditions (SCSI_UA_*). */
void scsi_disk_set_ua(struct scsi_disk *d, unsigned ua);
unsigned scsi_disk_pending_ua(const struct scsi_disk *d);
/* REPORT LUNS was answered: drop a pending REPORTED LUNS DATA HAS CHANGED. */
void scsi_disk_clear_ua(struct scsi_disk *d, unsigned ua);

/* Re-read the image's size (after blk_resize()); raises CAPACITY DATA HAS
 * CHANGED when it differs. Returns true if it changed. */
bool scsi_disk_refresh(struct scsi_disk *d);

uint64_t scsi_disk_blocks(const struct scsi_disk *d);
uint32_t scsi_disk_block_size(const struct scsi_disk *d);
bool scsi_disk_read_only(const struct scsi_disk *d);

/* ---- target-level answers (no disk involved) -------------------------------- */

/* CHECK CONDITION with fixed-format sense (asc as SCSI_ASC(asc, ascq)). */
void scsi_cmd_check(struct scsi_cmd *c, uint8_t key, uint16_t asc);
/* GOOD with `xfer` bytes moved. */
void scsi_cmd_good(struct scsi_cmd *c, uint32_t xfer);

/* REPORT LUNS listing `luns` (ascending; at most SCSI_REPORT_LUNS_MAX). */
#define SCSI_REPORT_LUNS_MAX 256u
void scsi_report_luns(struct scsi_cmd *c, const uint16_t *luns, unsigned n);

/* INQUIRY for a LUN without a device: standard data with peripheral
 * qualifier 3 (SCSI_TYPE_NO_LUN); VPD pages give ILLEGAL REQUEST. */
void scsi_inquiry_no_lun(struct scsi_cmd *c);

#endif
