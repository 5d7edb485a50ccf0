/* Block request queue: round trips, scatter lists, the flush barrier,
 * back-pressure, drain, errors, write-same, loop delivery, no-worker mode. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/image.h"
#include "block/queue.h"
#include "core/loop.h"

#include "test_scsi_memdisk.h"

#define DISK_SIZE (4u << 20)

static struct memdisk *md;
static struct blk_disk *disk;
static struct blkq *q;

struct done_rec {
	unsigned count;
	int last_result;
	struct blkq_req *order[256];
	unsigned norder;
};
static struct done_rec dr;

static void on_done(struct blkq_req *r)
{
	dr.count++;
	dr.last_result = r->result;
	if (dr.norder < 256)
		dr.order[dr.norder++] = r;
}

static int setup(void **state)
{
	memset(&dr, 0, sizeof(dr));
	md = md_new(DISK_SIZE, 512, 4096);
	disk = md_disk(md);
	q = NULL;
	return 0;
}

static int teardown(void **state)
{
	md_set_gate(md, false); /* a failed test may leave writes at the gate */
	blkq_free(q);
	q = NULL;
	blk_close(disk);
	md_free(md);
	return 0;
}

static void make_queue(unsigned threads, unsigned depth)
{
	struct blkq_config cfg;

	blkq_default_config(&cfg);
	cfg.threads = threads;
	cfg.depth = depth;
	cfg.bounce_size = 64 * 1024;
	cfg.write_behind = 0; /* writes wait for the disk (write-behind: its own tests) */
	assert_int_equal(blkq_new(&q, disk, NULL, &cfg), 0);
}

/* Deliver completions of `x` until `n` done callbacks ran (5 s limit). */
static void wait_count_on(struct blkq *x, unsigned n)
{
	for (int i = 0; i < 500 && dr.count < n; i++) {
		struct pollfd p = { .fd = blkq_event_fd(x), .events = POLLIN };

		poll(&p, 1, 10);
		blkq_poll(x);
	}
	assert_true(dr.count >= n);
}

static void wait_count(unsigned n)
{
	wait_count_on(q, n);
}

static void rw_req(struct blkq_req *r, enum blkq_op op, uint64_t off, struct blkq_iov *iov,
		   unsigned niov, uint64_t len)
{
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->off = off;
	r->len = len;
	r->iov = iov;
	r->niov = niov;
	r->done = on_done;
}

static void test_round_trip(void **state)
{
	uint8_t *wbuf = aligned_alloc(4096, 65536), *rbuf = aligned_alloc(4096, 65536);
	struct blkq_iov wi = { wbuf, 65536 }, ri = { rbuf, 65536 };
	struct blkq_req w, r;
	struct blkq_stats st;

	make_queue(4, 16);
	for (unsigned i = 0; i < 65536; i++)
		wbuf[i] = (uint8_t)(i * 7 + 3);
	rw_req(&w, BLKQ_OP_WRITE, 8192, &wi, 1, 65536);
	assert_int_equal(blkq_submit(q, &w), 0);
	assert_int_equal(dr.count, 0); /* never inside submit */
	wait_count(1);
	assert_int_equal(dr.last_result, 0);
	assert_memory_equal(md->data + 8192, wbuf, 65536);
	rw_req(&r, BLKQ_OP_READ, 8192, &ri, 1, 65536);
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(2);
	assert_memory_equal(rbuf, wbuf, 65536);
	blkq_get_stats(q, &st);
	assert_int_equal(st.reads, 1);
	assert_int_equal(st.writes, 1);
	assert_int_equal(st.bytes_read, 65536);
	assert_int_equal(st.bytes_written, 65536);
	assert_int_equal(st.errors, 0);
	assert_int_equal(blkq_inflight(q), 0);
	free(wbuf);
	free(rbuf);
}

/* Scattered, unaligned buffers go through the bounce buffer in chunks
 * (bounce 64 KiB, transfer 200 KiB); only the first len bytes are used. */
static void test_scatter(void **state)
{
	enum { SEGS = 50, SEG = 4096 };
	uint8_t *mem = malloc(SEGS * (SEG + 17) + 4096);
	struct blkq_iov iov[SEGS + 1];
	struct blkq_req w, r;
	uint64_t len = (uint64_t)SEGS * SEG;
	uint8_t *expect = malloc(len);

	make_queue(2, 16);
	for (unsigned i = 0; i < SEGS; i++) {
		iov[i].base = mem + 1 + i * (SEG + 17); /* unaligned, gaps */
		iov[i].len = SEG;
		for (unsigned j = 0; j < SEG; j++)
			((uint8_t *)iov[i].base)[j] = (uint8_t)(i ^ j);
		memcpy(expect + i * SEG, iov[i].base, SEG);
	}
	iov[SEGS].base = mem; /* extra, beyond len: unused */
	iov[SEGS].len = 4096;
	rw_req(&w, BLKQ_OP_WRITE, 4096, iov, SEGS + 1, len);
	assert_int_equal(blkq_submit(q, &w), 0);
	wait_count(1);
	assert_int_equal(dr.last_result, 0);
	assert_memory_equal(md->data + 4096, expect, len);
	for (unsigned i = 0; i < SEGS; i++)
		memset(iov[i].base, 0, SEG);
	rw_req(&r, BLKQ_OP_READ, 4096, iov, SEGS, len);
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(2);
	for (unsigned i = 0; i < SEGS; i++)
		assert_memory_equal(iov[i].base, expect + i * SEG, SEG);
	/* 200 KiB through a 64 KiB bounce: at least 4 device writes. */
	assert_true(md->nwrites >= 4);
	free(mem);
	free(expect);
}

/* A flush runs only after every write submitted before it finished. */
static void test_flush_waits_for_earlier_writes(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 8192);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w1, w2, f;

	make_queue(4, 16);
	memset(buf, 0xab, 8192);
	md_set_gate(md, true);
	rw_req(&w1, BLKQ_OP_WRITE, 0, &iov, 1, 4096);
	rw_req(&w2, BLKQ_OP_WRITE, 4096, &iov, 1, 4096);
	rw_req(&f, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &w1), 0);
	assert_int_equal(blkq_submit(q, &w2), 0);
	assert_int_equal(blkq_submit(q, &f), 0);
	md_wait_waiting(md, 2);
	usleep(20000);
	blkq_poll(q);
	assert_int_equal(dr.count, 0);
	assert_int_equal(md->nflushes, 0); /* the flush has not reached the disk */
	md_set_gate(md, false);
	wait_count(3);
	/* The flush completed last and started after both writes ended. */
	assert_ptr_equal(dr.order[2], &f);
	for (unsigned i = 0; i < md->nlog; i++) {
		if (md->log[i].op != MD_FLUSH)
			continue;
		for (unsigned j = 0; j < md->nlog; j++)
			if (md->log[j].op == MD_WRITE)
				assert_true(md->log[i].start > md->log[j].end);
	}
	assert_int_equal(md->nflushes, 1);
	free(buf);
}

/* ...but not for writes submitted after it. */
static void test_flush_ignores_later_writes(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req f1, w, f2;

	make_queue(4, 16);
	md_set_gate(md, true);
	rw_req(&f1, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	rw_req(&w, BLKQ_OP_WRITE, 0, &iov, 1, 4096);
	rw_req(&f2, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &f1), 0);
	wait_count(1);
	assert_ptr_equal(dr.order[0], &f1);
	assert_int_equal(blkq_submit(q, &w), 0);
	md_wait_waiting(md, 1);
	assert_int_equal(blkq_submit(q, &f2), 0);
	usleep(20000);
	blkq_poll(q);
	assert_int_equal(dr.count, 1); /* f2 waits for w */
	md_set_gate(md, false);
	wait_count(3);
	assert_ptr_equal(dr.order[2], &f2);
	free(buf);
}

/* Depth reached: -EAGAIN and blkq_full(); a completion frees a slot before
 * the done callback runs. */
static struct blkq_req *resubmit_req;
static int resubmit_ret = 1;

static void on_done_resubmit(struct blkq_req *r)
{
	on_done(r);
	if (resubmit_req) {
		resubmit_ret = blkq_submit(q, resubmit_req);
		resubmit_req = NULL;
	}
}

static void test_back_pressure(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w[6];

	make_queue(2, 4);
	assert_int_equal(blkq_depth(q), 4);
	md_set_gate(md, true);
	for (unsigned i = 0; i < 4; i++) {
		rw_req(&w[i], BLKQ_OP_WRITE, i * 4096, &iov, 1, 4096);
		w[i].done = on_done_resubmit;
		assert_false(blkq_full(q));
		assert_int_equal(blkq_submit(q, &w[i]), 0);
	}
	assert_true(blkq_full(q));
	rw_req(&w[4], BLKQ_OP_WRITE, 4 * 4096, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &w[4]), -EAGAIN);
	assert_int_equal(blkq_inflight(q), 4);
	resubmit_req = &w[4];
	md_set_gate(md, false);
	wait_count(5);
	assert_int_equal(resubmit_ret, 0);
	assert_int_equal(blkq_inflight(q), 0);
	free(buf);
}

static unsigned chain_left;
static struct blkq_req chain_req;

static void on_chain(struct blkq_req *r)
{
	on_done(r);
	if (chain_left) {
		chain_left--;
		assert_int_equal(blkq_submit(q, r), 0);
	}
}

/* Drain waits for everything, including requests the callbacks submit. */
static void test_drain(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w[32];

	make_queue(4, 64);
	md->write_delay_us = 2000;
	for (unsigned i = 0; i < 32; i++) {
		rw_req(&w[i], BLKQ_OP_WRITE, i * 4096, &iov, 1, 4096);
		assert_int_equal(blkq_submit(q, &w[i]), 0);
	}
	chain_left = 5;
	rw_req(&chain_req, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	chain_req.done = on_chain;
	assert_int_equal(blkq_submit(q, &chain_req), 0);
	blkq_drain(q);
	assert_int_equal(dr.count, 32 + 6);
	assert_int_equal(blkq_inflight(q), 0);
	assert_int_equal(md->nwrites, 32);
	assert_int_equal(md->nflushes, 6);
	free(buf);
}

/* blkq_free() with requests in flight finishes them first. */
static void test_free_drains(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w[8];

	make_queue(2, 16);
	md->write_delay_us = 1000;
	for (unsigned i = 0; i < 8; i++) {
		rw_req(&w[i], BLKQ_OP_WRITE, i * 4096, &iov, 1, 4096);
		assert_int_equal(blkq_submit(q, &w[i]), 0);
	}
	blkq_free(q);
	q = NULL;
	assert_int_equal(dr.count, 8);
	free(buf);
}

static void test_errors(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 8192);
	struct blkq_iov iov = { buf, 4096 }, pat = { buf, 512 }, badpat = { buf, 1024 };
	struct blkq_req r;
	struct blkq_stats st;

	make_queue(1, 4);
	/* Malformed requests are refused at submit. */
	rw_req(&r, BLKQ_OP_READ, 100, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &r), -EINVAL); /* offset not a sector multiple */
	rw_req(&r, BLKQ_OP_READ, 0, &iov, 1, 1000);
	assert_int_equal(blkq_submit(q, &r), -EINVAL); /* length */
	rw_req(&r, BLKQ_OP_READ, 0, &iov, 1, 8192);
	assert_int_equal(blkq_submit(q, &r), -EINVAL); /* scatter list too short */
	rw_req(&r, BLKQ_OP_READ, 0, &iov, 0, 4096);
	assert_int_equal(blkq_submit(q, &r), -EINVAL);
	rw_req(&r, BLKQ_OP_READ, 0, &iov, 1, 0);
	assert_int_equal(blkq_submit(q, &r), -EINVAL);
	rw_req(&r, (enum blkq_op)77, 0, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &r), -EINVAL);
	rw_req(&r, BLKQ_OP_WRITE_SAME, 0, &badpat, 1, 4096);
	assert_int_equal(blkq_submit(q, &r), -EINVAL); /* pattern is not one sector */
	rw_req(&r, BLKQ_OP_DISCARD, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &r), -EINVAL);
	rw_req(&r, BLKQ_OP_READ, UINT64_MAX - 511, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &r), -EINVAL); /* wraps */
	(void)pat;
	assert_int_equal(blkq_inflight(q), 0);
	/* Device errors come back in result. */
	md->fail_read = -EIO;
	rw_req(&r, BLKQ_OP_READ, 0, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(1);
	assert_int_equal(dr.last_result, -EIO);
	md->fail_flush = -ENOSPC;
	rw_req(&r, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(2);
	assert_int_equal(dr.last_result, -ENOSPC);
	blkq_get_stats(q, &st);
	assert_int_equal(st.errors, 2);
	/* Stopped: refused. */
	blkq_stop(q);
	rw_req(&r, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &r), -ESHUTDOWN);
	free(buf);
}

static void test_write_same_and_discard(void **state)
{
	uint8_t pattern[512], zero[512] = { 0 };
	struct blkq_iov pat = { pattern, 512 }, zp = { zero, 512 };
	struct blkq_req r;

	make_queue(2, 4);
	for (unsigned i = 0; i < 512; i++)
		pattern[i] = (uint8_t)i;
	/* 300 KiB of pattern through a 64 KiB bounce. */
	rw_req(&r, BLKQ_OP_WRITE_SAME, 1024 * 1024, &pat, 1, 300 * 1024);
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(1);
	assert_int_equal(dr.last_result, 0);
	for (unsigned i = 0; i < 600; i++)
		assert_memory_equal(md->data + 1024 * 1024 + i * 512, pattern, 512);
	assert_int_equal(md->data[1024 * 1024 + 300 * 1024], 0);
	/* With UNMAP on a disk that can discard: one discard, zeros. */
	rw_req(&r, BLKQ_OP_WRITE_SAME, 1024 * 1024, &zp, 1, 4096);
	r.flags = BLKQ_UNMAP;
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(2);
	assert_int_equal(md->ndiscards, 1);
	assert_int_equal(md->data[1024 * 1024], 0);
	/* Without discard support the pattern is written instead. */
	md->can_discard = false;
	memset(md->data + 2 * 1024 * 1024, 0xee, 4096);
	rw_req(&r, BLKQ_OP_WRITE_SAME, 2 * 1024 * 1024, &zp, 1, 4096);
	r.flags = BLKQ_UNMAP;
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(3);
	assert_int_equal(dr.last_result, 0);
	assert_memory_equal(md->data + 2 * 1024 * 1024, zero, 512);
	assert_memory_equal(md->data + 2 * 1024 * 1024 + 3584, zero, 512);
	/* Plain discard: the driver's answer comes back. */
	rw_req(&r, BLKQ_OP_DISCARD, 0, NULL, 0, 4096);
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(4);
	assert_int_equal(dr.last_result, -EOPNOTSUPP);
}

static void test_fua(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req r;

	make_queue(1, 4);
	rw_req(&r, BLKQ_OP_WRITE, 0, &iov, 1, 4096);
	r.flags = BLK_FUA;
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(1);
	assert_int_equal(md->fua_writes, 1);
	assert_int_equal(md->log[0].flags & BLK_FUA, BLK_FUA);
	free(buf);
}

/* A write the disk takes without waiting completes without a worker (but
 * its done callback runs later, never inside submit); a FUA write, and a
 * write the disk would make wait, go to a worker. */
static void test_nowait_writes(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 8192);
	struct blkq_iov iov[2] = { { buf, 4096 }, { buf + 4096, 4096 } };
	struct blkq_req w, fua, held;
	struct blkq_stats st;

	make_queue(1, 4);
	md->nowait_writes = true;
	memset(buf, 0x3c, 4096);
	memset(buf + 4096, 0xc3, 4096);
	rw_req(&w, BLKQ_OP_WRITE, 16384, iov, 2, 8192);
	assert_int_equal(blkq_submit(q, &w), 0);
	assert_int_equal(dr.count, 0);
	assert_int_equal(md->nowait_done, 1); /* already in the disk */
	assert_int_equal(md->data[16384], 0x3c);
	assert_int_equal(md->data[16384 + 4096], 0xc3);
	wait_count(1);
	assert_int_equal(dr.last_result, 0);

	rw_req(&fua, BLKQ_OP_WRITE, 0, iov, 1, 4096);
	fua.flags = BLK_FUA;
	assert_int_equal(blkq_submit(q, &fua), 0);
	wait_count(2);
	assert_int_equal(md->fua_writes, 1);
	assert_int_equal(md->nowait_done, 1);

	md_set_gate(md, true);
	rw_req(&held, BLKQ_OP_WRITE, 8192, iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &held), 0);
	md_wait_waiting(md, 1); /* on a worker, at the gate */
	md_set_gate(md, false);
	wait_count(3);
	assert_int_equal(md->nowait_done, 1);
	assert_int_equal(md->data[8192], 0x3c);

	blkq_get_stats(q, &st);
	assert_int_equal(st.writes, 3);
	assert_int_equal(st.cached_writes, 1);
	assert_int_equal(st.bytes_written, 8192 + 4096 + 4096);
	free(buf);
}

/* A write done without a worker, while a worker's write is still running,
 * leaves the flush barrier alone: a flush after both still waits for the
 * worker's write. */
static void test_nowait_write_keeps_flush_barrier(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req held, fast, f;

	make_queue(2, 8);
	memset(buf, 0x5a, 4096);
	md->nowait_writes = true;
	md->nowait_past_gate = true;
	md_set_gate(md, true);
	rw_req(&held, BLKQ_OP_WRITE, 0, &iov, 1, 4096);
	held.flags = BLK_FUA; /* never tried without a worker */
	rw_req(&fast, BLKQ_OP_WRITE, 8192, &iov, 1, 4096);
	rw_req(&f, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &held), 0);
	md_wait_waiting(md, 1);
	assert_int_equal(blkq_submit(q, &fast), 0);
	assert_int_equal(md->nowait_done, 1);
	wait_count(1);
	assert_ptr_equal(dr.order[0], &fast);
	assert_int_equal(blkq_submit(q, &f), 0);
	usleep(20000);
	blkq_poll(q);
	assert_int_equal(dr.count, 1);
	assert_int_equal(md->nflushes, 0);
	md_set_gate(md, false);
	wait_count(3);
	assert_ptr_equal(dr.order[2], &f);
	assert_int_equal(md->nflushes, 1);
	free(buf);
}

/* ---- write-behind ---- */

static void make_wb_queue(size_t write_behind)
{
	struct blkq_config cfg;

	blkq_default_config(&cfg);
	cfg.threads = 2;
	cfg.depth = 16;
	cfg.bounce_size = 64 * 1024;
	cfg.write_behind = write_behind;
	assert_int_equal(blkq_new(&q, disk, NULL, &cfg), 0);
}

/* Deliver for `ms` and check that exactly `n` done callbacks ran. */
static void settle(unsigned ms, unsigned n)
{
	usleep(ms * 1000);
	blkq_poll(q);
	assert_int_equal(dr.count, n);
}

/* A write the disk would make wait is done at once, and written later; a
 * flush after it waits until it is written. */
static void test_write_behind_then_flush(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 8192);
	struct blkq_iov iov[2] = { { buf, 4096 }, { buf + 4096, 4096 } };
	struct blkq_req w, f;
	struct blkq_stats st;

	make_wb_queue(BLKQ_DEFAULT_WRITE_BEHIND);
	md_set_gate(md, true);
	memset(buf, 0x6b, 8192);
	rw_req(&w, BLKQ_OP_WRITE, 40960, iov, 2, 8192);
	assert_int_equal(blkq_submit(q, &w), 0);
	assert_int_equal(dr.count, 0); /* never inside submit */
	memset(buf, 0, 8192);          /* the guest may reuse its buffer at once */
	wait_count(1);
	assert_ptr_equal(dr.order[0], &w);
	assert_int_equal(w.result, 0);
	md_wait_waiting(md, 1); /* the copy, on a worker at the gate */
	assert_int_equal(md->data[40960], 0);
	rw_req(&f, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &f), 0);
	settle(20, 1);
	assert_int_equal(md->nflushes, 0);
	md_set_gate(md, false);
	wait_count(2);
	assert_int_equal(f.result, 0);
	assert_int_equal(md->data[40960], 0x6b);
	assert_int_equal(md->data[40960 + 8191], 0x6b);
	blkq_get_stats(q, &st);
	assert_int_equal(st.writes, 1);
	assert_int_equal(st.write_behind, 1);
	assert_int_equal(st.write_behind_errors, 0);
	assert_int_equal(st.flushes, 1);
	assert_int_equal(blkq_inflight(q), 0);
	free(buf);
}

/* Requests that overlap a write-behind in flight, and everything after
 * them, wait for it; one that does not overlap, submitted before, does not.
 * FUA writes never go behind. */
static void test_write_behind_ordering(void **state)
{
	uint8_t *b1 = aligned_alloc(4096, 4096), *b2 = aligned_alloc(4096, 4096);
	uint8_t *r1 = aligned_alloc(4096, 4096), *r2 = aligned_alloc(4096, 4096);
	struct blkq_iov i1 = { b1, 4096 }, i2 = { b2, 4096 }, ir1 = { r1, 4096 }, ir2 = { r2, 4096 };
	struct blkq_req w1, far, w2, rd, fua;
	struct blkq_stats st;

	make_wb_queue(BLKQ_DEFAULT_WRITE_BEHIND);
	memset(md->data + 65536, 0x99, 4096);
	md_set_gate(md, true);
	memset(b1, 0x11, 4096);
	memset(b2, 0x22, 4096);
	rw_req(&w1, BLKQ_OP_WRITE, 0, &i1, 1, 4096);
	rw_req(&far, BLKQ_OP_READ, 65536, &ir2, 1, 4096);
	rw_req(&w2, BLKQ_OP_WRITE, 0, &i2, 1, 4096);
	rw_req(&rd, BLKQ_OP_READ, 0, &ir1, 1, 4096);
	assert_int_equal(blkq_submit(q, &w1), 0);
	assert_int_equal(blkq_submit(q, &far), 0);
	wait_count(2); /* w1 behind; the far read does not wait for it */
	assert_int_equal(r2[0], 0x99);
	assert_int_equal(blkq_submit(q, &w2), 0); /* overlaps w1: held */
	assert_int_equal(blkq_submit(q, &rd), 0); /* behind w2: held */
	settle(20, 2);
	assert_int_equal(blkq_inflight(q), 2);
	md_set_gate(md, false);
	wait_count(4);
	assert_ptr_equal(dr.order[2], &w2);
	assert_ptr_equal(dr.order[3], &rd);
	assert_int_equal(r1[0], 0x22); /* the read sees the later write */
	blkq_drain(q);
	assert_int_equal(md->data[0], 0x22);
	assert_int_equal(md->data[4095], 0x22);

	md_set_gate(md, true);
	rw_req(&fua, BLKQ_OP_WRITE, 8192, &i1, 1, 4096);
	fua.flags = BLK_FUA;
	assert_int_equal(blkq_submit(q, &fua), 0);
	settle(20, 4);
	md_set_gate(md, false);
	wait_count(5);
	assert_int_equal(md->fua_writes, 1);
	blkq_get_stats(q, &st);
	assert_int_equal(st.write_behind, 2);
	free(b1);
	free(b2);
	free(r1);
	free(r2);
}

/* A write-behind that fails fails the next flush (once). */
static void test_write_behind_error(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w, f1, f2;
	struct blkq_stats st;

	make_wb_queue(BLKQ_DEFAULT_WRITE_BEHIND);
	md->fail_write = -ENOSPC;
	rw_req(&w, BLKQ_OP_WRITE, 0, &iov, 1, 4096);
	rw_req(&f1, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	rw_req(&f2, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	assert_int_equal(blkq_submit(q, &w), 0);
	assert_int_equal(blkq_submit(q, &f1), 0);
	wait_count(2);
	assert_int_equal(w.result, 0);
	assert_int_equal(f1.result, -ENOSPC);
	assert_int_equal(blkq_submit(q, &f2), 0);
	wait_count(3);
	assert_int_equal(f2.result, 0);
	blkq_get_stats(q, &st);
	assert_int_equal(st.write_behind_errors, 1);
	free(buf);
}

/* No more than cfg.write_behind bytes go behind; the rest waits for the
 * disk. Drain waits for write-behinds too. */
static void test_write_behind_limit(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w[3];
	struct blkq_stats st;

	make_wb_queue(8192);
	memset(buf, 0x5e, 4096);
	md_set_gate(md, true);
	for (unsigned i = 0; i < 3; i++) {
		rw_req(&w[i], BLKQ_OP_WRITE, 16384 * i, &iov, 1, 4096);
		assert_int_equal(blkq_submit(q, &w[i]), 0);
	}
	wait_count(2);
	settle(20, 2); /* the third waits for the disk */
	assert_ptr_equal(dr.order[0], &w[0]);
	assert_ptr_equal(dr.order[1], &w[1]);
	md_set_gate(md, false);
	blkq_drain(q);
	assert_int_equal(dr.count, 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(md->data[16384 * i], 0x5e);
	blkq_get_stats(q, &st);
	assert_int_equal(st.write_behind, 2);
	free(buf);
}

/* blkq_free() with write-behinds in flight writes them first. */
static void test_write_behind_free(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w;

	make_wb_queue(BLKQ_DEFAULT_WRITE_BEHIND);
	md->write_delay_us = 20000;
	memset(buf, 0x4d, 4096);
	rw_req(&w, BLKQ_OP_WRITE, 12288, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &w), 0);
	wait_count(1);
	assert_int_equal(md->data[12288], 0);
	blkq_free(q);
	q = NULL;
	assert_int_equal(md->data[12288], 0x4d);
	free(buf);
}

/* A finished write-behind's buffer serves a later one that fits in it
 * (only its own bytes are written); one that does not fit gets a new
 * buffer. Spares are kept up to a quarter of the write-behind limit. */
static void test_write_behind_reuse(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 12288);
	struct blkq_iov iov = { buf, 12288 };
	struct blkq_req w;
	struct blkq_stats st;

	make_wb_queue(BLKQ_DEFAULT_WRITE_BEHIND);
	memset(buf, 0x11, 12288);
	rw_req(&w, BLKQ_OP_WRITE, 0, &iov, 1, 8192);
	assert_int_equal(blkq_submit(q, &w), 0);
	blkq_drain(q);
	memset(buf, 0x22, 12288);
	rw_req(&w, BLKQ_OP_WRITE, 65536, &iov, 1, 4096); /* into the 8 KiB spare */
	assert_int_equal(blkq_submit(q, &w), 0);
	blkq_drain(q);
	assert_int_equal(md->data[65536], 0x22);
	assert_int_equal(md->data[65536 + 4095], 0x22);
	assert_int_equal(md->data[65536 + 4096], 0); /* not the spare's old bytes */
	rw_req(&w, BLKQ_OP_WRITE, 131072, &iov, 1, 12288); /* fits no spare */
	assert_int_equal(blkq_submit(q, &w), 0);
	blkq_drain(q);
	assert_int_equal(md->data[131072 + 12287], 0x22);
	blkq_get_stats(q, &st);
	assert_int_equal(st.write_behind, 3);
	assert_int_equal(st.write_behind_reused, 1);
	blkq_free(q);
	q = NULL;

	/* A limit of 8 KiB keeps no 4 KiB spare (a quarter is 2 KiB). */
	make_wb_queue(8192);
	for (unsigned i = 0; i < 2; i++) {
		rw_req(&w, BLKQ_OP_WRITE, 4096 * i, &iov, 1, 4096);
		assert_int_equal(blkq_submit(q, &w), 0);
		blkq_drain(q);
	}
	blkq_get_stats(q, &st);
	assert_int_equal(st.write_behind, 2);
	assert_int_equal(st.write_behind_reused, 0);
	free(buf);
}

/* A large write goes behind when it is alone in flight, not while other
 * requests are (its second copy would cost more than its early completion
 * gains); a small one still does. */
static void test_write_behind_large_concurrent(void **state)
{
	const uint64_t big = 64 * 1024;
	uint8_t *buf = aligned_alloc(4096, big);
	struct blkq_iov iov = { buf, big };
	struct blkq_req w[4];
	struct blkq_stats st;

	make_wb_queue(BLKQ_DEFAULT_WRITE_BEHIND);
	memset(buf, 0x3c, big);
	md_set_gate(md, true);
	/* Alone in flight: behind, and its write holds one worker at the gate. */
	rw_req(&w[0], BLKQ_OP_WRITE, 0, &iov, 1, big);
	assert_int_equal(blkq_submit(q, &w[0]), 0);
	wait_count(1);
	/* Alone again: behind; the second worker is held too. */
	rw_req(&w[1], BLKQ_OP_WRITE, big, &iov, 1, big);
	assert_int_equal(blkq_submit(q, &w[1]), 0);
	md_wait_waiting(md, 2);
	/* w[1] is still in flight (not delivered): w[2] waits for a worker. */
	rw_req(&w[2], BLKQ_OP_WRITE, 2 * big, &iov, 1, big);
	assert_int_equal(blkq_submit(q, &w[2]), 0);
	rw_req(&w[3], BLKQ_OP_WRITE, 3 * big, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &w[3]), 0);
	settle(20, 3);
	assert_ptr_equal(dr.order[1], &w[1]);
	assert_ptr_equal(dr.order[2], &w[3]);
	blkq_get_stats(q, &st);
	assert_int_equal(st.write_behind, 3);
	md_set_gate(md, false);
	wait_count(4);
	assert_ptr_equal(dr.order[3], &w[2]);
	blkq_drain(q);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(md->data[i * big + big - 1], 0x3c);
	assert_int_equal(md->data[3 * big + 4095], 0x3c);
	free(buf);
}

/* No workers: requests run inside blkq_poll(), in order. */
static void test_inline_mode(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w, f, r;

	make_queue(0, 8);
	memset(buf, 0x5a, 4096);
	rw_req(&w, BLKQ_OP_WRITE, 0, &iov, 1, 4096);
	rw_req(&f, BLKQ_OP_FLUSH, 0, NULL, 0, 0);
	rw_req(&r, BLKQ_OP_READ, 4096, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &w), 0);
	assert_int_equal(blkq_submit(q, &f), 0);
	assert_int_equal(blkq_submit(q, &r), 0);
	assert_int_equal(md->nwrites, 0);
	assert_int_equal(blkq_poll(q), 3);
	assert_ptr_equal(dr.order[0], &w);
	assert_ptr_equal(dr.order[1], &f);
	assert_ptr_equal(dr.order[2], &r);
	assert_int_equal(md->data[0], 0x5a);
	assert_int_equal(buf[0], 0); /* read back the zeros at 4096 */
	free(buf);
}

/* With a loop, completions arrive through the loop's source. */
static struct loop *test_loop;

static void on_done_stop(struct blkq_req *r)
{
	on_done(r);
	loop_stop(test_loop);
}

static void test_loop_delivery(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_config cfg;
	struct blkq_req r;

	test_loop = loop_new();
	assert_non_null(test_loop);
	blkq_default_config(&cfg);
	assert_int_equal(blkq_new(&q, disk, test_loop, &cfg), 0);
	rw_req(&r, BLKQ_OP_READ, 0, &iov, 1, 4096);
	r.done = on_done_stop;
	assert_int_equal(blkq_submit(q, &r), 0);
	assert_int_equal(loop_run(test_loop), 0);
	assert_int_equal(dr.count, 1);
	blkq_free(q);
	q = NULL;
	loop_free(test_loop);
	free(buf);
}

/* With a loop, a request done at submit (a write the disk took without
 * waiting) is delivered by a deferred call once the submitting callback
 * returns: its eventfd is never kicked. */
struct submitter {
	struct loop_source src;
	struct blkq_req r;
	bool efd_kicked;
};

static void submit_from_loop(struct loop_source *src, uint32_t events)
{
	struct submitter *s = container_of(src, struct submitter, src);
	struct pollfd p = { .fd = blkq_event_fd(q), .events = POLLIN };
	uint64_t v;

	assert_int_equal(read(src->fd, &v, sizeof(v)), sizeof(v));
	assert_int_equal(blkq_submit(q, &s->r), 0);
	assert_int_equal(md->nowait_done, 1); /* done at submit */
	assert_int_equal(dr.count, 0);        /* but not delivered inside it */
	s->efd_kicked = poll(&p, 1, 0) == 1;
}

static void test_loop_deferred_delivery(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_config cfg;
	struct submitter s = { 0 };
	int fd = eventfd(0, EFD_NONBLOCK);

	test_loop = loop_new();
	assert_non_null(test_loop);
	blkq_default_config(&cfg);
	assert_int_equal(blkq_new(&q, disk, test_loop, &cfg), 0);
	md->nowait_writes = true;
	memset(buf, 0x77, 4096);
	rw_req(&s.r, BLKQ_OP_WRITE, 4096, &iov, 1, 4096);
	s.r.done = on_done_stop;
	assert_int_equal(loop_add(test_loop, &s.src, fd, EPOLLIN, submit_from_loop), 0);
	assert_int_equal(eventfd_write(fd, 1), 0);
	assert_int_equal(loop_run(test_loop), 0);
	assert_int_equal(dr.count, 1);
	assert_int_equal(dr.last_result, 0);
	assert_false(s.efd_kicked);
	assert_int_equal(md->data[4096], 0x77);
	loop_del(test_loop, &s.src);
	close(fd);
	blkq_free(q);
	q = NULL;
	loop_free(test_loop);
	free(buf);
}

/* The stats sum each read's and write's time from submission to
 * completion: a write the disk holds 30 ms counts at least that long. */
static void test_time_stats(void **state)
{
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_req w, r;
	struct blkq_stats st;

	make_queue(1, 4);
	md->write_delay_us = 30000;
	rw_req(&w, BLKQ_OP_WRITE, 0, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &w), 0);
	wait_count(1);
	blkq_get_stats(q, &st);
	assert_true(st.write_ns >= 30000000u);
	assert_true(st.write_ns < 5000000000u);
	assert_int_equal(st.read_ns, 0);
	rw_req(&r, BLKQ_OP_READ, 0, &iov, 1, 4096);
	assert_int_equal(blkq_submit(q, &r), 0);
	wait_count(2);
	blkq_get_stats(q, &st);
	assert_true(st.read_ns > 0);
	assert_true(st.read_ns < st.write_ns);
	free(buf);
}

static void test_bad_config(void **state)
{
	struct blkq_config cfg;
	struct blkq *x;

	blkq_default_config(&cfg);
	cfg.depth = 0;
	assert_int_equal(blkq_new(&x, disk, NULL, &cfg), -EINVAL);
	blkq_default_config(&cfg);
	cfg.threads = BLKQ_MAX_THREADS + 1;
	assert_int_equal(blkq_new(&x, disk, NULL, &cfg), -EINVAL);
	blkq_default_config(&cfg);
	cfg.bounce_size = 1000;
	assert_int_equal(blkq_new(&x, disk, NULL, &cfg), -EINVAL);
	assert_int_equal(blkq_new(&x, NULL, NULL, NULL), -EINVAL);
	blkq_free(NULL);
}

/* Many concurrent random requests: every one completes exactly once and the
 * data is right. */
static void test_stress(void **state)
{
	enum { N = 200 };
	static struct blkq_req reqs[N];
	static struct blkq_iov iovs[N];
	uint8_t *bufs = aligned_alloc(4096, (size_t)N * 4096);

	make_queue(4, 32);
	for (unsigned i = 0; i < N; i++) {
		memset(bufs + i * 4096, (int)(i & 0xff), 4096);
		iovs[i] = (struct blkq_iov){ bufs + i * 4096, 4096 };
	}
	for (unsigned sent = 0; sent < N;) {
		int ret;

		rw_req(&reqs[sent], sent % 10 == 9 ? BLKQ_OP_FLUSH : BLKQ_OP_WRITE,
		       (uint64_t)sent * 4096, &iovs[sent], 1, 4096);
		ret = blkq_submit(q, &reqs[sent]);
		if (ret == -EAGAIN) {
			wait_count(dr.count + 1);
			continue;
		}
		assert_int_equal(ret, 0);
		sent++;
	}
	blkq_drain(q);
	assert_int_equal(dr.count, N);
	for (unsigned i = 0; i < N; i++)
		if (i % 10 != 9)
			assert_int_equal(md->data[i * 4096 + 100], i & 0xff);
	free(bufs);
}

/* Does this file system serve RWF_NOWAIT reads (ext4, xfs: yes; tmpfs
 * before Linux 6.6: no)? */
static bool nowait_reads_work(const char *path)
{
	int fd = open(path, O_RDONLY);
	char b[512];
	struct iovec iov = { b, sizeof(b) };
	bool ok;

	assert_true(fd >= 0);
	ok = preadv2(fd, &iov, 1, 0, RWF_NOWAIT) == (ssize_t)sizeof(b);
	close(fd);
	return ok;
}

/* One request on `d` through a fresh queue with workers: it succeeds, and
 * its done callback runs only after submit returned. Returns the queue's
 * counters. */
static struct blkq_stats run_one(struct blk_disk *d, enum blkq_op op, uint64_t off,
				 struct blkq_iov *iov, unsigned niov, uint64_t len)
{
	struct blkq_stats st;
	struct blkq *oq;
	struct blkq_req r;

	assert_int_equal(blkq_new(&oq, d, NULL, NULL), 0);
	rw_req(&r, op, off, iov, niov, len);
	memset(&dr, 0, sizeof(dr));
	assert_int_equal(blkq_submit(oq, &r), 0);
	assert_int_equal(dr.count, 0); /* never inside submit, even from the cache */
	wait_count_on(oq, 1);
	assert_int_equal(dr.count, 1);
	assert_int_equal(dr.last_result, 0);
	blkq_get_stats(oq, &st);
	blkq_free(oq);
	return st;
}

/* A 4 KiB read at `off` of `d`: the data, and whether it came from the
 * page cache. */
static void cached_read(struct blk_disk *d, uint64_t off, uint8_t *buf, bool *cached)
{
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_stats st = run_one(d, BLKQ_OP_READ, off, &iov, 1, 4096);

	assert_int_equal(st.reads, 1);
	*cached = st.cached_reads == 1;
}

/* A fresh directory for the real-file tests, the paths of a raw file (made,
 * 1 MiB, sparse) and of a VHDX (not made) in it. */
struct test_files {
	char dir[32], raw[64], vhdx[64];
};

static void files_new(struct test_files *f)
{
	int fd;

	snprintf(f->dir, sizeof(f->dir), "/tmp/hvmm-blkq-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->raw, sizeof(f->raw), "%s/disk.raw", f->dir);
	snprintf(f->vhdx, sizeof(f->vhdx), "%s/disk.vhdx", f->dir);
	fd = open(f->raw, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static void files_remove(const struct test_files *f)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
}

/* Reads whose data is in the page cache complete without a worker, on raw
 * files and on a dynamic VHDX (allocated and unallocated blocks), with the
 * right data; a disk without read_nowait always uses a worker. */
static void test_cached_reads(void **state)
{
	struct test_files f;
	struct blk_create_opts o = { .format = BLK_FMT_VHDX, .size = 64u << 20 };
	struct blk_error err = { "" };
	uint8_t *buf = aligned_alloc(4096, 4096), want[4096];
	struct blk_disk *d;
	bool cached, nowait;
	int fd;

	files_new(&f);
	for (unsigned i = 0; i < sizeof(want); i++)
		want[i] = (uint8_t)(i * 13 + 1);
	fd = open(f.raw, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, want, sizeof(want), 65536), (ssize_t)sizeof(want));
	close(fd);
	nowait = nowait_reads_work(f.raw);

	d = blk_open(f.raw, BLK_FMT_RAW, 0, &err);
	assert_non_null(d);
	cached_read(d, 65536, buf, &cached);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(cached, nowait);
	blk_close(d);

	assert_int_equal(blk_create(f.vhdx, &o, &err), 0);
	d = blk_open(f.vhdx, BLK_FMT_VHDX, 0, &err);
	assert_non_null(d);
	assert_int_equal(blk_write(d, 40u << 20, want, sizeof(want), 0), 0);
	cached_read(d, 40u << 20, buf, &cached); /* an allocated block */
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(cached, nowait);
	memset(buf, 0xee, 4096);
	cached_read(d, 4096, buf, &cached); /* never written: zeros, no file read */
	memset(want, 0, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_true(cached);
	blk_close(d);

	cached_read(disk, 0, buf, &cached); /* the memory disk has no read_nowait */
	assert_false(cached);
	free(buf);
	files_remove(&f);
}

/* Does this file system take RWF_NOWAIT buffered writes over written data
 * (xfs, btrfs: yes; ext4, tmpfs: no)? (Into a hole it may still say
 * -EAGAIN.) Writes zeros at `off`. */
static bool nowait_writes_work(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	char b[4096] = { 0 };
	struct iovec iov = { b, sizeof(b) };
	bool ok = false;

	assert_true(fd >= 0);
	for (int i = 0; i < 3 && !ok; i++) { /* see cached_overwrite() */
		assert_int_equal(pwrite(fd, b, sizeof(b), (off_t)off), (ssize_t)sizeof(b));
		ok = pwritev2(fd, &iov, 1, (off_t)off, RWF_NOWAIT) == (ssize_t)sizeof(b);
	}
	close(fd);
	return ok;
}

/* Write iov (4 KiB) at `off` of `d` through the queue until one write went
 * without a worker, at most 8 times (a file system says -EAGAIN when the
 * file's modification time must change, once per clock tick). Whether one
 * did. */
static bool cached_overwrite(struct blk_disk *d, uint64_t off, struct blkq_iov *iov)
{
	for (int i = 0; i < 8; i++)
		if (run_one(d, BLKQ_OP_WRITE, off, iov, 1, 4096).cached_writes)
			return true;
	return false;
}

/* Writes through the queue to real files: over written data of a raw file
 * and of an allocated VHDX block without a worker where the file system
 * allows it; a write that must allocate a VHDX block always on a worker;
 * the data lands either way. */
static void test_nowait_file_writes(void **state)
{
	struct test_files f;
	struct blk_create_opts o = { .format = BLK_FMT_VHDX, .size = 8u << 20,
				     .block_size = 1u << 20 };
	struct blk_error err = { "" };
	uint8_t *buf = aligned_alloc(4096, 4096), got[4096];
	struct blkq_iov iov = { buf, 4096 };
	struct blkq_stats st;
	struct blk_disk *d;
	bool nowait;

	files_new(&f);
	nowait = nowait_writes_work(f.raw, 12288);
	for (unsigned i = 0; i < 4096; i++)
		buf[i] = (uint8_t)(i * 11 + 5);

	d = blk_open(f.raw, BLK_FMT_RAW, 0, &err);
	assert_non_null(d);
	assert_int_equal(cached_overwrite(d, 12288, &iov), nowait);
	assert_int_equal(blk_read(d, 12288, got, 4096), 0);
	assert_memory_equal(got, buf, 4096);
	blk_close(d);

	assert_int_equal(blk_create(f.vhdx, &o, &err), 0);
	d = blk_open(f.vhdx, BLK_FMT_VHDX, 0, &err);
	assert_non_null(d);
	st = run_one(d, BLKQ_OP_WRITE, 8192, &iov, 1, 4096); /* allocates block 0 */
	assert_int_equal(st.cached_writes, 0);
	buf[0] ^= 0xff;
	assert_int_equal(cached_overwrite(d, 8192, &iov), nowait); /* over it */
	assert_int_equal(blk_read(d, 8192, got, 4096), 0);
	assert_memory_equal(got, buf, 4096);
	st = run_one(d, BLKQ_OP_WRITE, 3u << 20, &iov, 1, 4096); /* allocates block 3 */
	assert_int_equal(st.cached_writes, 0);
	assert_int_equal(blk_read(d, 3u << 20, got, 4096), 0);
	assert_memory_equal(got, buf, 4096);
	blk_close(d);

	free(buf);
	files_remove(&f);
}

/* Scattered buffers: a write goes out as one scatter list and reads back;
 * a scattered read is served from the page cache too, on raw files and
 * across a VHDX block boundary into an unallocated block (zeros). */
static void test_scattered_io(void **state)
{
	struct test_files f;
	struct blk_create_opts o = { .format = BLK_FMT_VHDX, .size = 8u << 20,
				     .block_size = 1u << 20 };
	struct blk_error err = { "" };
	uint8_t *b[3], want[3 * 4096], got[3 * 4096];
	struct blkq_iov iov[3];
	struct blkq_stats st;
	struct blk_disk *d;
	bool nowait;
	int fd;

	files_new(&f);
	for (unsigned i = 0; i < 3; i++) {
		b[i] = aligned_alloc(4096, 4096);
		iov[i] = (struct blkq_iov){ b[i], 4096 };
	}
	for (unsigned i = 0; i < sizeof(want); i++)
		want[i] = (uint8_t)(i * 31 + 7);
	nowait = nowait_reads_work(f.raw);

	/* Write from three buffers, then check the file. */
	d = blk_open(f.raw, BLK_FMT_RAW, 0, &err);
	assert_non_null(d);
	for (unsigned i = 0; i < 3; i++)
		memcpy(b[i], want + i * 4096, 4096);
	st = run_one(d, BLKQ_OP_WRITE, 8192, iov, 3, sizeof(want));
	assert_int_equal(st.writes, 1);
	fd = open(f.raw, O_RDONLY);
	assert_int_equal(pread(fd, got, sizeof(got), 8192), (ssize_t)sizeof(got));
	close(fd);
	assert_memory_equal(got, want, sizeof(want));

	/* Read it back into three buffers. */
	for (unsigned i = 0; i < 3; i++)
		memset(b[i], 0, 4096);
	st = run_one(d, BLKQ_OP_READ, 8192, iov, 3, sizeof(want));
	assert_int_equal(st.cached_reads, nowait ? 1 : 0);
	for (unsigned i = 0; i < 3; i++)
		assert_memory_equal(b[i], want + i * 4096, 4096);
	blk_close(d);

	/* VHDX: the last 4 KiB of block 0 written, block 1 never. */
	assert_int_equal(blk_create(f.vhdx, &o, &err), 0);
	d = blk_open(f.vhdx, BLK_FMT_VHDX, 0, &err);
	assert_non_null(d);
	assert_int_equal(blk_write(d, (1u << 20) - 4096, want, 4096, 0), 0);
	for (unsigned i = 0; i < 3; i++)
		memset(b[i], 0xee, 4096);
	st = run_one(d, BLKQ_OP_READ, (1u << 20) - 4096, iov, 3, sizeof(want));
	assert_int_equal(st.cached_reads, nowait ? 1 : 0);
	assert_memory_equal(b[0], want, 4096);
	memset(got, 0, sizeof(got));
	assert_memory_equal(b[1], got, 4096);
	assert_memory_equal(b[2], got, 4096);
	blk_close(d);

	for (unsigned i = 0; i < 3; i++)
		free(b[i]);
	files_remove(&f);
}

/* A raw test file holding `len` bytes of a pattern (also left in `want`),
 * open as a disk; its fd in *fd, and whether nowait reads work there. */
static struct blk_disk *patterned_raw(struct test_files *f, uint8_t *want, size_t len, int *fd,
				      bool *nowait)
{
	struct blk_error err = { "" };
	struct blk_disk *d;

	assert_non_null(want);
	files_new(f);
	for (size_t i = 0; i < len; i++)
		want[i] = (uint8_t)(i * 7 + i / 512);
	*fd = open(f->raw, O_RDWR);
	assert_true(*fd >= 0);
	assert_int_equal(pwrite(*fd, want, len, 0), (ssize_t)len);
	*nowait = nowait_reads_work(f->raw);
	d = blk_open(f->raw, BLK_FMT_RAW, 0, &err);
	assert_non_null(d);
	return d;
}

/* Wait until all `n` workers of `x` wait for work. */
static void wait_workers_idle(struct blkq *x, unsigned n)
{
	struct blkq_stats st;

	for (int i = 0; i < 5000; i++) {
		blkq_get_stats(x, &st);
		if (st.idle_workers == n)
			return;
		usleep(1000);
	}
	fail_msg("%u of %u workers idle after 5 s", st.idle_workers, n);
}

/* Large reads and writes submitted while others are in flight go to idle
 * workers (their copies run in parallel); one alone in flight, and small
 * ones, stay on the submitting thread when the page cache allows. The data
 * are right either way. */
static void test_parallel_copies(void **state)
{
	enum { BIG = 128 << 10, SMALL = 4096 };
	struct blkq_config cfg;
	struct test_files f;
	struct blkq_iov iov[4];
	struct blkq_req r[4];
	struct blkq_stats st;
	struct blk_disk *d;
	struct blkq *oq;
	uint8_t *want = malloc(3 * BIG), *got = malloc(3 * BIG), *b[4];
	bool nowait;
	int fd;

	assert_non_null(got);
	d = patterned_raw(&f, want, 3 * BIG, &fd, &nowait);
	blkq_default_config(&cfg);
	cfg.write_behind = 0; /* a write that cannot go to the page cache at once waits */
	cfg.split_ns = 0;
	assert_int_equal(blkq_new(&oq, d, NULL, &cfg), 0);
	for (unsigned i = 0; i < 4; i++) {
		b[i] = aligned_alloc(4096, BIG);
		assert_non_null(b[i]);
		memset(b[i], 0, BIG);
		iov[i] = (struct blkq_iov){ b[i], i < 3 ? BIG : SMALL };
	}

	/* Three large reads and a small one at once: the first is alone. */
	wait_workers_idle(oq, cfg.threads);
	memset(&dr, 0, sizeof(dr));
	for (unsigned i = 0; i < 4; i++) {
		rw_req(&r[i], BLKQ_OP_READ, i < 3 ? i * (uint64_t)BIG : 8192, &iov[i], 1,
		       iov[i].len);
		assert_int_equal(blkq_submit(oq, &r[i]), 0);
	}
	wait_count_on(oq, 4);
	assert_int_equal(dr.last_result, 0);
	for (unsigned i = 0; i < 3; i++)
		assert_memory_equal(b[i], want + i * BIG, BIG);
	assert_memory_equal(b[3], want + 8192, SMALL);
	blkq_get_stats(oq, &st);
	assert_int_equal(st.parallel, 2);
	assert_int_equal(st.cached_reads, nowait ? 2 : 0);

	/* A large read alone in flight stays where it is. */
	wait_workers_idle(oq, cfg.threads);
	assert_int_equal(blkq_submit(oq, &r[0]), 0);
	wait_count_on(oq, 5);
	blkq_get_stats(oq, &st);
	assert_int_equal(st.parallel, 2);

	/* Two large writes at once: the second goes to a worker; both land. */
	wait_workers_idle(oq, cfg.threads);
	for (unsigned i = 0; i < 2; i++) {
		memset(b[i], 0xa0 + i, BIG);
		rw_req(&r[i], BLKQ_OP_WRITE, (i + 1) * (uint64_t)BIG, &iov[i], 1, BIG);
		assert_int_equal(blkq_submit(oq, &r[i]), 0);
	}
	wait_count_on(oq, 7);
	assert_int_equal(dr.last_result, 0);
	blkq_get_stats(oq, &st);
	assert_int_equal(st.parallel, 3);
	assert_int_equal(pread(fd, got, 2 * BIG, BIG), 2 * BIG);
	assert_memory_equal(got, b[0], BIG);
	assert_memory_equal(got + BIG, b[1], BIG);

	blkq_free(oq);
	blk_close(d);
	close(fd);
	for (unsigned i = 0; i < 4; i++)
		free(b[i]);
	free(want);
	free(got);
	files_remove(&f);
	(void)state;
}

/* A read or write alone in flight whose copy takes long enough (here: any,
 * once a large request has been timed) is split between the submitting
 * thread and a worker, across scatter-list elements, with the right data;
 * never before a copy was timed, nor a FUA write. */
static void test_split_copies(void **state)
{
	enum { BIG = 128 << 10 };
	struct blkq_config cfg;
	struct test_files f;
	struct blkq_iov iov[3];
	struct blkq_req r;
	struct blkq_stats st;
	struct blk_disk *d;
	struct blkq *oq;
	uint8_t *want = malloc(2 * BIG), *got = malloc(BIG), *b = aligned_alloc(4096, BIG);
	bool nowait;
	int fd;

	assert_non_null(got);
	assert_non_null(b);
	d = patterned_raw(&f, want, 2 * BIG, &fd, &nowait);
	blkq_default_config(&cfg);
	cfg.write_behind = 0;
	cfg.split_ns = 1;
	assert_int_equal(blkq_new(&oq, d, NULL, &cfg), 0);
	memset(&dr, 0, sizeof(dr));

	/* The first large read is timed, not split. */
	wait_workers_idle(oq, cfg.threads);
	iov[0] = (struct blkq_iov){ b, BIG };
	rw_req(&r, BLKQ_OP_READ, 0, iov, 1, BIG);
	assert_int_equal(blkq_submit(oq, &r), 0);
	wait_count_on(oq, 1);
	assert_memory_equal(b, want, BIG);
	blkq_get_stats(oq, &st);
	assert_int_equal(st.split, 0);

	/* Then one over three elements is split in the middle one. */
	memset(b, 0, BIG);
	iov[0] = (struct blkq_iov){ b, 40 << 10 };
	iov[1] = (struct blkq_iov){ b + (40 << 10), 48 << 10 };
	iov[2] = (struct blkq_iov){ b + (88 << 10), 40 << 10 };
	wait_workers_idle(oq, cfg.threads);
	rw_req(&r, BLKQ_OP_READ, BIG, iov, 3, BIG);
	assert_int_equal(blkq_submit(oq, &r), 0);
	wait_count_on(oq, 2);
	assert_int_equal(dr.last_result, 0);
	assert_memory_equal(b, want + BIG, BIG);
	blkq_get_stats(oq, &st);
	assert_int_equal(st.split, nowait ? 1 : 0);
	assert_int_equal(st.reads, 2);

	/* A write over the same elements: split, and all of it lands. */
	for (unsigned i = 0; i < BIG; i++)
		b[i] = (uint8_t)(i * 5 + 3);
	wait_workers_idle(oq, cfg.threads);
	rw_req(&r, BLKQ_OP_WRITE, 4096, iov, 3, BIG);
	assert_int_equal(blkq_submit(oq, &r), 0);
	wait_count_on(oq, 3);
	assert_int_equal(dr.last_result, 0);
	blkq_get_stats(oq, &st);
	assert_int_equal(st.split, nowait ? 2 : 0);
	assert_int_equal(pread(fd, got, BIG, 4096), BIG);
	assert_memory_equal(got, b, BIG);

	/* A FUA write is not split. */
	wait_workers_idle(oq, cfg.threads);
	rw_req(&r, BLKQ_OP_WRITE, 0, iov, 3, BIG);
	r.flags = BLK_FUA;
	assert_int_equal(blkq_submit(oq, &r), 0);
	wait_count_on(oq, 4);
	assert_int_equal(dr.last_result, 0);
	blkq_get_stats(oq, &st);
	assert_int_equal(st.split, nowait ? 2 : 0);
	assert_int_equal(st.writes, 2);
	assert_int_equal(st.errors, 0);

	blkq_free(oq);
	blk_close(d);
	close(fd);
	free(b);
	free(want);
	free(got);
	files_remove(&f);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scatter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_waits_for_earlier_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_ignores_later_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_back_pressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_drains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_same_and_discard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fua, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nowait_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nowait_write_keeps_flush_barrier, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind_then_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind_ordering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_behind_large_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inline_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop_deferred_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cached_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel_copies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_split_copies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scattered_io, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nowait_file_writes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
