/* The block queue over the real raw driver on a file in /tmp.
 *
 * By default: a short integrity run (concurrent random writes with FUA and
 * flushes, then reads through contiguous and scattered buffers, checked
 * against a model and against the file itself).
 *
 * HVMM_BENCH=1: throughput of the queue (4 worker threads, 64 requests in
 * flight) on a 1 GiB raw file: 4 KiB random reads and writes, 128 KiB
 * sequential reads and writes (one contiguous buffer, and 32 scattered
 * pages through the bounce buffer), cold random reads (file evicted from
 * the page cache first), and a one-request-at-a-time baseline. Prints
 * IOPS and MB/s. HVMM_BENCH_FILE overrides the file, HVMM_BENCH_SECS the
 * seconds per test (default 3). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/block.h"
#include "block/queue.h"

#define PAGE 4096u

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_some(struct blkq *q)
{
	struct pollfd p = { .fd = blkq_event_fd(q), .events = POLLIN };

	poll(&p, 1, 1000);
	blkq_poll(q);
}

static char *make_file(const char *path, uint64_t size, bool fill)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	char *p = strdup(path);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (fill) {
		size_t chunk = 1 << 20;
		uint8_t *b = malloc(chunk);

		for (size_t i = 0; i < chunk; i++)
			b[i] = (uint8_t)rnd();
		for (uint64_t off = 0; off < size; off += chunk)
			assert_int_equal(pwrite(fd, b, chunk, (off_t)off), (ssize_t)chunk);
		fsync(fd);
		free(b);
	}
	close(fd);
	return p;
}

/* ---- integrity -------------------------------------------------------------------- */

#define ISIZE (16u << 20)
#define IBLOCKS (ISIZE / PAGE)
#define ISLOTS 32

struct islot {
	struct blkq_req r;
	struct blkq_iov iov[4];
	uint8_t *buf;
	uint32_t block;
	bool busy;
};

static struct islot slots[ISLOTS];
static unsigned idone;

static void islot_done(struct blkq_req *r)
{
	struct islot *s = r->priv;

	assert_int_equal(r->result, 0);
	s->busy = false;
	idone++;
}

static void test_integrity(void **state)
{
	char path[] = "/tmp/hvmm-blkq-test-XXXXXX";
	int tfd = mkstemp(path);
	uint8_t *model = calloc(1, ISIZE);
	struct blk_error err;
	struct blk_disk *d;
	struct blkq *q;
	struct blkq_config qc;
	unsigned submitted = 0;
	char *file;

	assert_true(tfd >= 0);
	close(tfd);
	file = make_file(path, ISIZE, false);
	d = blk_open(file, BLK_FMT_RAW, 0, &err);
	assert_non_null(d);
	blkq_default_config(&qc);
	qc.depth = ISLOTS;
	assert_int_equal(blkq_new(&q, d, NULL, &qc), 0);
	for (unsigned i = 0; i < ISLOTS; i++)
		slots[i].buf = aligned_alloc(PAGE, 4 * PAGE);
	/* Writes of one page to distinct blocks per round (no overlap in
	 * flight), every 8th with FUA, a flush every 50. */
	for (unsigned round = 0; round < 40; round++) {
		for (unsigned i = 0; i < ISLOTS; i++) {
			struct islot *s = &slots[i];

			s->block = (uint32_t)((round * 7919u + i * (IBLOCKS / ISLOTS)) % IBLOCKS);
			for (unsigned k = 0; k < PAGE; k++)
				s->buf[k] = (uint8_t)rnd();
			memcpy(model + (size_t)s->block * PAGE, s->buf, PAGE);
			memset(&s->r, 0, sizeof(s->r));
			s->iov[0] = (struct blkq_iov){ s->buf, PAGE };
			s->r.op = BLKQ_OP_WRITE;
			s->r.flags = i % 8 == 0 ? BLK_FUA : 0;
			s->r.off = (uint64_t)s->block * PAGE;
			s->r.len = PAGE;
			s->r.iov = s->iov;
			s->r.niov = 1;
			s->r.done = islot_done;
			s->r.priv = s;
			s->busy = true;
			assert_int_equal(blkq_submit(q, &s->r), 0);
			submitted++;
		}
		while (idone < submitted)
			wait_some(q);
		if (round % 10 == 9) {
			struct blkq_req f = { .op = BLKQ_OP_FLUSH, .done = islot_done, .priv = &slots[0] };

			assert_int_equal(blkq_submit(q, &f), 0);
			submitted++;
			while (idone < submitted)
				wait_some(q);
		}
	}
	/* Read everything back: contiguous 16 KiB, and scattered into 4
	 * separate pages at odd offsets (the bounce path). */
	for (uint32_t blk = 0; blk < IBLOCKS; blk += 4 * ISLOTS) {
		for (unsigned i = 0; i < ISLOTS; i++) {
			struct islot *s = &slots[i];

			memset(&s->r, 0, sizeof(s->r));
			s->block = blk + 4 * i;
			s->r.op = BLKQ_OP_READ;
			s->r.off = (uint64_t)s->block * PAGE;
			s->r.len = 4 * PAGE;
			s->r.done = islot_done;
			s->r.priv = s;
			if (i & 1) {
				s->iov[0] = (struct blkq_iov){ s->buf, 4 * PAGE };
				s->r.niov = 1;
			} else {
				for (unsigned k = 0; k < 4; k++)
					s->iov[k] = (struct blkq_iov){ s->buf + (3 - k) * PAGE, PAGE };
				s->r.niov = 4;
			}
			s->r.iov = s->iov;
			assert_int_equal(blkq_submit(q, &s->r), 0);
			submitted++;
		}
		while (idone < submitted)
			wait_some(q);
		for (unsigned i = 0; i < ISLOTS; i++) {
			struct islot *s = &slots[i];

			for (unsigned k = 0; k < 4; k++) {
				/* block k landed in page k (contiguous) or 3-k. */
				const uint8_t *got = s->buf + (i & 1 ? k : 3 - k) * PAGE;

				assert_int_equal(memcmp(got, model + ((size_t)s->block + k) * PAGE,
							PAGE),
						 0);
			}
		}
	}
	blkq_free(q);
	blk_close(d);
	/* The file itself holds the data. */
	{
		int fd = open(file, O_RDONLY);
		uint8_t *b = malloc(ISIZE);

		assert_int_equal(pread(fd, b, ISIZE, 0), ISIZE);
		assert_int_equal(memcmp(b, model, ISIZE), 0);
		close(fd);
		free(b);
	}
	for (unsigned i = 0; i < ISLOTS; i++)
		free(slots[i].buf);
	unlink(file);
	free(file);
	free(model);
}

/* ---- benchmark ------------------------------------------------------------------------ */

#define BSIZE (1ull << 30)
#define BDEPTH 64

struct bslot {
	struct blkq_req r;
	struct blkq_iov iov[32];
	uint8_t *buf;
};

static struct {
	struct blkq *q;
	struct bslot slots[BDEPTH];
	enum blkq_op op;
	uint32_t size;
	bool seq, scattered;
	uint64_t next_off;
	bool stop;
	uint64_t ios, bytes;
	unsigned inflight;
} bench;

static void bench_fill(struct bslot *s)
{
	memset(&s->r, 0, sizeof(s->r));
	s->r.op = bench.op;
	s->r.len = bench.size;
	if (bench.seq) {
		s->r.off = bench.next_off;
		bench.next_off = (bench.next_off + bench.size) % BSIZE;
	} else {
		s->r.off = rnd() % (BSIZE / bench.size) * bench.size;
	}
	if (bench.scattered) {
		/* Guest-like: 4 KiB pages that are not adjacent. */
		for (unsigned i = 0; i < bench.size / PAGE; i++)
			s->iov[i] = (struct blkq_iov){ s->buf + (size_t)((i * 5) % 32) * 2 * PAGE, PAGE };
		s->r.niov = bench.size / PAGE;
	} else {
		s->iov[0] = (struct blkq_iov){ s->buf, bench.size };
		s->r.niov = 1;
	}
	s->r.iov = s->iov;
	s->r.priv = s;
}

static void bench_done(struct blkq_req *r)
{
	struct bslot *s = r->priv;

	assert_int_equal(r->result, 0);
	bench.ios++;
	bench.bytes += r->len;
	bench.inflight--;
	if (bench.stop)
		return;
	bench_fill(s);
	s->r.done = bench_done;
	assert_int_equal(blkq_submit(bench.q, &s->r), 0);
	bench.inflight++;
}

static void bench_run(const char *name, struct blk_disk *d, unsigned threads, unsigned depth,
		       enum blkq_op op, uint32_t size, bool seq, bool scattered, double secs)
{
	struct blkq_config qc;
	double t0, t;

	blkq_default_config(&qc);
	qc.threads = threads;
	qc.depth = depth;
	assert_int_equal(blkq_new(&bench.q, d, NULL, &qc), 0);
	bench.op = op;
	bench.size = size;
	bench.seq = seq;
	bench.scattered = scattered;
	bench.stop = false;
	bench.ios = bench.bytes = 0;
	bench.next_off = 0;
	t0 = now_s();
	for (unsigned i = 0; i < depth; i++) {
		bench_fill(&bench.slots[i]);
		bench.slots[i].r.done = bench_done;
		assert_int_equal(blkq_submit(bench.q, &bench.slots[i].r), 0);
		bench.inflight++;
	}
	while ((t = now_s()) - t0 < secs)
		wait_some(bench.q);
	bench.stop = true;
	blkq_drain(bench.q);
	t = now_s() - t0;
	printf("  %-44s %9.0f IOPS %9.1f MB/s\n", name, (double)bench.ios / t,
	       (double)bench.bytes / t / 1e6);
	fflush(stdout);
	blkq_free(bench.q);
}

static void test_bench(void **state)
{
	const char *path = getenv("HVMM_BENCH_FILE");
	const char *secs_s = getenv("HVMM_BENCH_SECS");
	double secs = secs_s ? atof(secs_s) : 3.0;
	struct blk_error err;
	struct blk_disk *d;
	char *file;
	int fd;

	/* Not a skip: cmocka reports skips as "not ok", which tests/run-all
	 * counts as a failure. */
	if (!getenv("HVMM_BENCH"))
		return;
	file = make_file(path ? path : "/tmp/hvmm-blkq-bench.raw", BSIZE, true);
	d = blk_open(file, BLK_FMT_RAW, 0, &err);
	assert_non_null(d);
	for (unsigned i = 0; i < BDEPTH; i++)
		bench.slots[i].buf = aligned_alloc(PAGE, 64 * PAGE);
	printf("queue over raw file %s (1 GiB, page cache warm unless noted), %ld CPUs\n", file,
	       sysconf(_SC_NPROCESSORS_ONLN));
	bench_run("4 KiB random read, 1 thread, depth 1", d, 1, 1, BLKQ_OP_READ, PAGE, false,
		  false, secs);
	bench_run("4 KiB random read, 4 threads, depth 64", d, 4, 64, BLKQ_OP_READ, PAGE, false,
		  false, secs);
	bench_run("4 KiB random write, 4 threads, depth 64", d, 4, 64, BLKQ_OP_WRITE, PAGE, false,
		  false, secs);
	bench_run("128 KiB sequential read, contiguous", d, 4, 32, BLKQ_OP_READ, 32 * PAGE, true,
		  false, secs);
	bench_run("128 KiB sequential read, 32 scattered pages", d, 4, 32, BLKQ_OP_READ, 32 * PAGE,
		  true, true, secs);
	bench_run("128 KiB sequential write, contiguous", d, 4, 32, BLKQ_OP_WRITE, 32 * PAGE, true,
		  false, secs);
	bench_run("128 KiB sequential write, 32 scattered pages", d, 4, 32, BLKQ_OP_WRITE, 32 * PAGE,
		  true, true, secs);
	{
		double t0 = now_s();

		assert_int_equal(blk_flush(d), 0);
		printf("  %-44s %9.2f s\n", "flush after the writes", now_s() - t0);
	}
	/* Cold: evict the file from the page cache. */
	fd = open(file, O_RDONLY);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	bench_run("4 KiB random read, cold, 4 threads, depth 64", d, 4, 64, BLKQ_OP_READ, PAGE,
		  false, false, secs);
	fd = open(file, O_RDONLY);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	bench_run("128 KiB sequential read, cold", d, 4, 32, BLKQ_OP_READ, 32 * PAGE, true, false,
		  secs);
	blk_close(d);
	for (unsigned i = 0; i < BDEPTH; i++)
		free(bench.slots[i].buf);
	if (!path)
		unlink(file);
	free(file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integrity),
		cmocka_unit_test(test_bench),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
