/* Storage VSP: synthetic SCSI controllers for the Linux hv_storvsc driver.
 *
 * Each controller is one VMBus device of the SCSI class
 * (ba6163d9-04a1-4d29-b605-72e2ffb1dc7f) with a stable instance GUID per
 * controller index, a primary channel and up to one sub-channel per vCPU
 * (created when the guest asks). A controller holds up to
 * STORVSP_MAX_LUNS disks at target 0, LUN 0..63; every disk is a SCSI
 * direct-access device (scsi/scsi_disk.h) with its own asynchronous I/O
 * queue (block/queue.h), so reads and writes go straight between guest
 * memory and the image on worker threads.
 *
 * Protocol: VSTOR 2.0 (WIN6), 4.2 (WIN7), 5.1 (WIN8), 6.0 (WIN8.1) and 6.2
 * (WIN10); Linux 5.10 .. 6.12 negotiate 6.2 (the only one at which they
 * send WRITE SAME). Multi-channel is offered at 5.1 and later.
 *
 * Hot plug: storvsp_add_lun()/storvsp_remove_lun() on a running
 * controller raise REPORTED LUNS DATA HAS CHANGED on the other LUNs and
 * send ENUMERATE_BUS, which makes Linux rescan the controller;
 * storvsp_resize_lun() resizes the image, raises CAPACITY DATA HAS CHANGED
 * on the LUN and sends ENUMERATE_BUS so that Linux re-reads the capacity
 * at once (its TEST UNIT READY gets the unit attention).
 *
 * Threading: everything runs on the VM's event-loop thread (VMBus device
 * callbacks, queue completions, the API). Nothing here is thread-safe.
 * Calls that remove a disk or stop the VSP wait (on the loop thread) for
 * the disk's I/O in flight to finish; that is bounded by the queue depth.
 *
 * VM glue:
 *
 *	struct storvsp_config sc;
 *	storvsp_default_config(&sc);
 *	sc.gm = &vm->mem;
 *	sc.nr_vcpus = cfg->nr_cpus;
 *	vm->storvsp = storvsp_new(hv_vmbus_server(vm->hv), vm->loop, &sc);
 *	for (each --disk argument) {
 *		struct storvsp_disk_config dc;
 *		char err[256];
 *		if (storvsp_parse_disk_arg(arg, &dc, err, sizeof(err)) < 0 ||
 *		    storvsp_add_disk(vm->storvsp, &dc, err, sizeof(err)) < 0)
 *			fail with err;
 *	}
 *	...   // API: storvsp_add_disk / storvsp_remove_lun / storvsp_resize_lun /
 *	      //      storvsp_list / storvsp_list_controllers
 *	storvsp_drain(vm->storvsp);   // VM shutdown: finish I/O, flush images
 *	storvsp_free(vm->storvsp);    // before or after vmbus_server_free()
 */
#ifndef HVMM_STORVSP_H
#define HVMM_STORVSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"

struct storvsp;
struct vmbus_server;
struct loop;
struct guest_mem;

#define STORVSP_MAX_CONTROLLERS 4u
#define STORVSP_MAX_LUNS 64u
#define STORVSP_DEFAULT_MAX_TRANSFER (512u << 10)
#define STORVSP_MIN_MAX_TRANSFER (64u << 10)
#define STORVSP_MAX_MAX_TRANSFER (2u << 20)
#define STORVSP_PATH_MAX 4096u

struct storvsp_config {
	const struct guest_mem *gm;  /* guest RAM (GPA-direct buffers) */
	uint32_t nr_vcpus;           /* sub-channels: up to this many */
	uint32_t max_transfer_bytes; /* per command, multiple of 4096 */
	unsigned io_threads;         /* worker threads per disk */
	unsigned queue_depth;        /* requests in flight per disk */
	size_t write_behind;         /* bytes per disk (blkq_config); 0: none */
	bool inline_io;              /* no workers: I/O runs in storvsp_poll()
				      * (tests and fuzzers) */
	uint16_t max_version;        /* highest VSTOR version accepted */
};

void storvsp_default_config(struct storvsp_config *cfg);

/* NULL on a bad config or allocation failure (logged). With loop = NULL
 * the owner calls storvsp_poll(). */
struct storvsp *storvsp_new(struct vmbus_server *srv, struct loop *loop,
			    const struct storvsp_config *cfg);

/* Drain, remove every disk (closing its image) and let go of the VMBus
 * devices (they stay registered with the server, refuse opens and drop
 * packets until the server frees them). NULL is ignored. */
void storvsp_free(struct storvsp *sv);

/* VM shutdown: stop taking new requests from the guest, wait for every
 * request in flight and flush every writable image. */
void storvsp_drain(struct storvsp *sv);

/* Register controller `ctrl` (0..STORVSP_MAX_CONTROLLERS-1) as a VMBus
 * device. 0, -EEXIST, -EINVAL, -ENOMEM. storvsp_add_disk() does this on
 * demand. */
int storvsp_add_controller(struct storvsp *sv, unsigned ctrl);

struct storvsp_lun_opts {
	bool read_only;     /* also read-only when the image is */
	const char *serial; /* VPD 0x80; NULL: derived from the id */
	const uint8_t *id;  /* 16 bytes for VPD 0x83; NULL: derived from the label */
	const char *label;  /* shown by storvsp_list() (the path); may be NULL */
};

/* Attach an open disk as `lun` of `ctrl` (the controller must exist). On
 * success the VSP owns the disk and closes it on removal. Hot add when the
 * guest is running. 0, -EINVAL (bad ctrl/lun, unusable disk), -ENODEV (no
 * such controller), -EEXIST (LUN taken), -ENOMEM, -errno. */
int storvsp_add_lun(struct storvsp *sv, unsigned ctrl, unsigned lun, struct blk_disk *disk,
		    const struct storvsp_lun_opts *opts);

/* A --disk argument: PATH[,ro][,format=raw|vhd|vhdx][,lun=N][,controller=N].
 * A comma inside PATH is written ",,". */
struct storvsp_disk_config {
	char path[STORVSP_PATH_MAX];
	bool read_only;
	enum blk_format format; /* BLK_FMT_AUTO unless given */
	int lun;                /* -1: the lowest free LUN */
	unsigned controller;    /* default 0 */
};

/* 0 or -EINVAL with a message in err. */
int storvsp_parse_disk_arg(const char *arg, struct storvsp_disk_config *out, char *err,
			   size_t errlen);

/* Open the image (blk_open), create the controller if needed, attach.
 * Returns the LUN (>= 0) or -errno with a message in err. */
int storvsp_add_disk(struct storvsp *sv, const struct storvsp_disk_config *dc, char *err,
		     size_t errlen);

/* Hot remove: the LUN disappears at once (commands to it get INVALID_LUN),
 * its I/O in flight is waited for, the image is flushed and closed and the
 * guest is told to rescan. 0 or -ENODEV. */
int storvsp_remove_lun(struct storvsp *sv, unsigned ctrl, unsigned lun);

/* Online resize to `new_size` bytes (a multiple of the logical sector):
 * blk_resize(), then CAPACITY DATA HAS CHANGED and a rescan request.
 * 0, -ENODEV, -EINVAL, -EROFS (read-only LUN), or the driver's error
 * (-EOPNOTSUPP when the format cannot resize). */
int storvsp_resize_lun(struct storvsp *sv, unsigned ctrl, unsigned lun, uint64_t new_size);

struct storvsp_lun_info {
	unsigned controller, lun;
	char label[STORVSP_PATH_MAX];
	const char *format;       /* "raw", "vhd", "vhdx" */
	uint64_t size;            /* bytes */
	uint32_t block_size;
	bool read_only;
	unsigned inflight;
	uint64_t reads, writes, flushes, unmaps;
	uint64_t bytes_read, bytes_written, errors;
	uint64_t cached_reads, cached_writes; /* done on the event loop, no worker */
	uint64_t write_behind, write_behind_errors; /* done once copied; see queue.c */
	uint64_t parallel; /* large ones given to an idle worker as others were in flight */
	uint64_t split;    /* ones alone in flight copied half by the loop, half by a worker */
	uint64_t read_ns, write_ns; /* summed host time, submission to completion */
};

/* Fill up to `max` entries (ordered by controller, LUN); returns how many
 * LUNs exist. */
size_t storvsp_list(struct storvsp *sv, struct storvsp_lun_info *out, size_t max);

struct storvsp_ctrl_info {
	unsigned index;
	char instance[37];    /* instance GUID */
	bool open;            /* the guest opened the primary channel */
	bool ready;           /* END_INITIALIZATION done */
	uint16_t version;     /* negotiated VSTOR version, 0 if none */
	unsigned nr_channels; /* primary + sub-channels offered */
	unsigned open_channels;
	unsigned nr_luns;
};

size_t storvsp_list_controllers(struct storvsp *sv, struct storvsp_ctrl_info *out, size_t max);

/* Without a loop: wait up to timeout_ms (0: do not wait, -1: forever) for
 * I/O completions, deliver them and retry stalled channels. Returns the
 * number of completions delivered. */
unsigned storvsp_poll(struct storvsp *sv, int timeout_ms);

#endif
