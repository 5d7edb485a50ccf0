/* Asynchronous request queue over one open disk (struct blk_disk).
 *
 * Device models submit read, write (optionally FUA), flush, discard and
 * write-same requests whose data lives in host buffers (usually guest
 * memory) described by a scatter list. A small pool of worker threads runs
 * them with the synchronous, thread-safe blk_* calls, so no disk I/O that
 * can block happens on a vCPU thread or on the event-loop thread. Finished
 * requests are handed back to the loop thread through an eventfd: their
 * `done` callback runs there, in the order the workers finished them.
 *
 * Ordering: requests run concurrently and may finish in any order, except
 * that a flush calls blk_flush() only after every write, discard and
 * write-same submitted before it has finished; so a flush completes only
 * when everything written before it was submitted is durable. Later writes
 * are not held back by a flush.
 *
 * Write-behind (cfg.write_behind bytes at most, with workers): a write
 * without FUA that would have to wait for a worker is copied and reported
 * done at once, then written by a worker, like a disk's volatile write
 * cache; not one of 32 KiB or more while other requests are in flight
 * (its copy is most of its cost, and the guest is not waiting on it alone). A flush still waits for it, and fails if it failed. A request
 * that overlaps a write-behind in flight waits for it (see queue.c).
 *
 * Back-pressure: at most `depth` requests are in flight (submitted, done
 * callback not yet run). blkq_submit() then fails with -EAGAIN and
 * blkq_full() says so; a device stops pulling requests from its guest until
 * a completion frees a slot (the slot is free again before the done
 * callback runs, so the callback may submit).
 *
 * Through the page cache without waiting: a read is first tried on the
 * calling thread with blk_readv_nowait(), a write without FUA with
 * blk_writev_nowait(); if it can be done without blocking (data cached;
 * a file system that takes buffered writes without waiting, such as XFS
 * or btrfs, and space already allocated) it costs one copy and no thread
 * switch; its done callback still runs later, never inside blkq_submit():
 * with a loop as a deferred call (struct loop_defer) once the loop callback
 * that submitted it returns, without a loop from blkq_poll(). Otherwise a
 * worker runs it.
 *
 * Buffers: a read or write whose data is one 4 KiB-aligned buffer goes
 * straight to blk_read()/blk_write(); a scatter list of whole sectors to
 * blk_readv()/blk_writev() (one preadv/pwritev, no copy) where the format
 * has them. Other data goes through a per-worker bounce buffer in chunks
 * (one large pread instead of a system call per guest page).
 *
 * Threading: every function here is for the loop thread (the thread that
 * owns the queue); the workers only touch request fields and the disk.
 * With `threads` = 0 there are no workers: requests run inside
 * blkq_poll() on the calling thread (deterministic; for tests and fuzzers).
 *
 * Usage:
 *
 *	struct blkq *q;
 *	if (blkq_new(&q, disk, loop, NULL) < 0) ...
 *	req->op = BLKQ_OP_READ; req->off = lba * 512; req->len = n;
 *	req->iov = iov; req->niov = niov; req->done = my_done; req->priv = me;
 *	if (blkq_submit(q, req) == -EAGAIN) ... try again after a completion
 *	...
 *	blkq_free(q);   // waits for everything in flight, then stops
 */
#ifndef HVMM_BLOCK_QUEUE_H
#define HVMM_BLOCK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"

struct loop;
struct blkq;

#define BLKQ_DEFAULT_THREADS 4u
#define BLKQ_MAX_THREADS 64u
#define BLKQ_DEFAULT_DEPTH 256u
#define BLKQ_MAX_DEPTH 65536u
#define BLKQ_DEFAULT_BOUNCE (1u << 20) /* bytes per worker */
#define BLKQ_DEFAULT_WRITE_BEHIND (4u << 20) /* bytes */
#define BLKQ_MAX_WRITE_BEHIND (256u << 20)
#define BLKQ_DEFAULT_SPLIT_NS 100000u /* ns */

enum blkq_op {
	BLKQ_OP_READ,
	BLKQ_OP_WRITE,      /* flags: BLK_FUA */
	BLKQ_OP_FLUSH,
	BLKQ_OP_DISCARD,    /* [off, off+len): blk_discard() */
	BLKQ_OP_WRITE_SAME, /* iov[0] is one logical block, written over [off, off+len) */
};

/* Request flags beyond the BLK_* ones. */
#define BLKQ_UNMAP 0x100 /* write-same: try blk_discard() first (the pattern
			  * must be zeros); write the pattern if unsupported */

struct blkq_iov {
	void *base;
	size_t len;
};

struct blkq_req;
typedef void (*blkq_done_fn)(struct blkq_req *req);

struct blkq_req {
	/* Set by the submitter; not changed by the queue. */
	enum blkq_op op;
	unsigned flags;
	uint64_t off;                /* bytes; a multiple of the logical sector */
	uint64_t len;                /* bytes; ditto (read/write: the first len bytes of iov) */
	const struct blkq_iov *iov;  /* read/write/write-same buffers */
	unsigned niov;
	blkq_done_fn done;           /* loop thread; may free or resubmit the request */
	void *priv;
	/* Set before done runs: 0 or a negative errno. */
	int result;
	/* Private to the queue. */
	struct blkq_req *next, *prev;
	uint64_t seq;
	uint64_t submitted_ns; /* CLOCK_MONOTONIC */
};

struct blkq_config {
	unsigned threads;   /* 0: run in blkq_poll() (no workers) */
	unsigned depth;     /* 1..BLKQ_MAX_DEPTH */
	size_t bounce_size; /* multiple of 4096, >= 4096 */
	size_t write_behind; /* bytes of write-behind in flight at most; 0: none */
	/* A read or write alone in flight whose copy would take at least this
	 * long (as measured on earlier ones) is split between the loop thread
	 * and a worker; 0: never. */
	unsigned split_ns;
};

/* Defaults: BLKQ_DEFAULT_THREADS workers, BLKQ_DEFAULT_DEPTH, 1 MiB bounce,
 * BLKQ_DEFAULT_WRITE_BEHIND, BLKQ_DEFAULT_SPLIT_NS. */
void blkq_default_config(struct blkq_config *cfg);

/* Create a queue for `disk` (not owned: the caller closes it after
 * blkq_free()). With a loop, completions are delivered by a loop source;
 * with loop = NULL the owner calls blkq_poll() (blkq_event_fd() becomes
 * readable when there is something to deliver). cfg NULL: defaults.
 * Returns 0, -EINVAL (bad config) or -errno. */
int blkq_new(struct blkq **out, struct blk_disk *disk, struct loop *loop,
	     const struct blkq_config *cfg);

/* Wait for every request in flight (running their done callbacks), stop
 * the workers and free the queue. NULL is ignored. */
void blkq_free(struct blkq *q);

/* Queue a request. Returns 0 (done will run later, never from inside this
 * call), -EAGAIN (depth reached), -EINVAL (malformed: unknown op, length
 * or offset not a multiple of the logical sector, scatter list shorter than
 * len, write-same pattern not exactly one sector), -ESHUTDOWN (stopped). */
int blkq_submit(struct blkq *q, struct blkq_req *req);

bool blkq_full(const struct blkq *q);
unsigned blkq_inflight(const struct blkq *q);
unsigned blkq_depth(const struct blkq *q);

/* Deliver finished requests (and, without workers, run the queued ones
 * first). Returns how many done callbacks ran. Not re-entrant: a call from
 * inside a done callback returns 0. */
unsigned blkq_poll(struct blkq *q);

/* The eventfd behind blkq_poll() (readable when something is finished). */
int blkq_event_fd(const struct blkq *q);

/* Block until every submitted request has finished and its done callback
 * ran, including requests the callbacks submit meanwhile. For device
 * removal and VM shutdown. Must not be called from a done callback. */
void blkq_drain(struct blkq *q);

/* Refuse further submissions (-ESHUTDOWN); requests in flight continue. */
void blkq_stop(struct blkq *q);

struct blkq_stats {
	uint64_t reads, writes, flushes, discards, write_sames;
	uint64_t bytes_read, bytes_written;
	uint64_t errors;
	uint64_t cached_reads;  /* of reads: served from the page cache without a worker */
	uint64_t cached_writes; /* of writes: into the page cache without a worker */
	uint64_t write_behind;  /* of writes: done once copied, written by a worker after */
	uint64_t write_behind_errors; /* such writes that failed (each fails the next flush) */
	uint64_t write_behind_reused; /* such writes whose copy reused an earlier one's buffer */
	uint64_t parallel; /* reads and writes given to an idle worker as others were in flight */
	uint64_t split; /* reads and writes alone in flight copied half here, half by a worker */
	/* Summed time from submission to completion (before the done callback). */
	uint64_t read_ns, write_ns;
	unsigned idle_workers; /* now: workers waiting for work */
};

/* Counters of delivered requests, and the workers idle now. */
void blkq_get_stats(struct blkq *q, struct blkq_stats *st);

#endif
