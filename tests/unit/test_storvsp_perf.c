/* Storage VSP over the real block layer: disks opened from --disk strings
 * (storvsp_add_disk on raw files in /tmp), data through guest memory to
 * the file and back with worker threads; the add_disk errors.
 *
 * HVMM_BENCH=1: throughput of the whole path (fake guest's ring -> VSP ->
 * queue -> raw file -> completion in the guest's ring), 32 requests in
 * flight on one channel: 4 KiB random reads and writes, 128 KiB
 * sequential reads and writes. HVMM_BENCH_SECS sets the seconds per test
 * (default 3). */
#include <errno.h>
#include <fcntl.h>
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

#define SU_ASSERT(x) assert_true(x)
#include "test_storvsp_util.h"

static char path[64];
static uint32_t relid;

static void make_raw(uint64_t size)
{
	int fd;

	strcpy(path, "/tmp/hvmm-storvsp-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int setup(void **state)
{
	struct storvsp_config c;
	struct storvsp_disk_config dc;
	char arg[128], err[256];

	su_config_default(&c);
	c.inline_io = false;
	c.io_threads = 4;
	c.queue_depth = 64;
	su_setup(&c);
	make_raw(64u << 20);
	snprintf(arg, sizeof(arg), "%s,format=raw,lun=0", path);
	assert_int_equal(storvsp_parse_disk_arg(arg, &dc, err, sizeof(err)), 0);
	assert_int_equal(storvsp_add_disk(su.sv, &dc, err, sizeof(err)), 0);
	relid = su_bring_up(0);
	return 0;
}

static int teardown(void **state)
{
	su_teardown(false);
	unlink(path);
	return 0;
}

static void cdb10(uint8_t *c, uint8_t op, uint32_t lba, uint16_t n)
{
	memset(c, 0, 10);
	c[0] = op;
	scsi_put_be32(c + 2, lba);
	scsi_put_be16(c + 7, n);
}

static void test_real_file(void **state)
{
	uint8_t c[10];
	struct vstor_packet p;
	struct storvsp_lun_info li;
	uint8_t file[65536];
	int fd;

	for (unsigned i = 0; i < sizeof(file); i++)
		su_data(0)[i] = (uint8_t)(i * 3 + 1);
	cdb10(c, SCSI_WRITE_10, 1000, 128);
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_OUT, 0, 65536);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	memset(c, 0, 10);
	c[0] = SCSI_SYNCHRONIZE_CACHE_10;
	assert_int_equal(su_scsi(relid, 0, c, 10, VMSCSI_DATA_NONE, 0, 0).srb.srb_status,
			 SRB_STATUS_SUCCESS);
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, file, sizeof(file), 1000 * 512), (ssize_t)sizeof(file));
	close(fd);
	assert_memory_equal(file, su_data(0), sizeof(file));
	memset(su_data(50), 0, 65536);
	cdb10(c, SCSI_READ_10, 1000, 128);
	p = su_scsi(relid, 0, c, 10, VMSCSI_DATA_IN, 50, 65536);
	assert_int_equal(p.srb.srb_status, SRB_STATUS_SUCCESS);
	assert_memory_equal(su_data(50), su_data(0), 65536);
	/* Capacity and the listing. */
	memset(c, 0, 10);
	c[0] = SCSI_READ_CAPACITY_10;
	su_scsi(relid, 0, c, 10, VMSCSI_DATA_IN, 0, 8);
	assert_int_equal(scsi_get_be32(su_data(0)), (64u << 20) / 512 - 1);
	assert_int_equal(storvsp_list(su.sv, &li, 1), 1);
	assert_string_equal(li.label, path);
	assert_string_equal(li.format, "raw");
	assert_int_equal(li.size, 64u << 20);
	assert_false(li.read_only);
}

static void test_add_disk_errors(void **state)
{
	struct storvsp_disk_config dc;
	char err[256];
	char arg[128];

	/* The same image twice: the block layer locks it. */
	snprintf(arg, sizeof(arg), "%s,lun=1", path);
	assert_int_equal(storvsp_parse_disk_arg(arg, &dc, err, sizeof(err)), 0);
	assert_true(storvsp_add_disk(su.sv, &dc, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, path));
	/* A missing file. */
	assert_int_equal(storvsp_parse_disk_arg("/nonexistent/x.img", &dc, err, sizeof(err)), 0);
	assert_int_equal(storvsp_add_disk(su.sv, &dc, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "/nonexistent/x.img"));
	/* LUN in use. */
	snprintf(arg, sizeof(arg), "%s,lun=0", path);
	assert_int_equal(storvsp_parse_disk_arg(arg, &dc, err, sizeof(err)), 0);
	assert_int_equal(storvsp_add_disk(su.sv, &dc, err, sizeof(err)), -EEXIST);
	/* Out-of-range values that bypassed the parser. */
	dc.controller = 9;
	assert_int_equal(storvsp_add_disk(su.sv, &dc, err, sizeof(err)), -EINVAL);
	dc.controller = 0;
	dc.lun = 64;
	assert_int_equal(storvsp_add_disk(su.sv, &dc, err, sizeof(err)), -EINVAL);
}

/* A read-only second disk on another controller, auto LUN. */
static void test_read_only_second_controller(void **state)
{
	struct storvsp_disk_config dc;
	struct storvsp_lun_info li[2];
	char arg[128], err[256], p2[64];
	int fd;

	strcpy(p2, "/tmp/hvmm-storvsp-ro-XXXXXX");
	fd = mkstemp(p2);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(arg, sizeof(arg), "%s,ro,controller=1", p2);
	assert_int_equal(storvsp_parse_disk_arg(arg, &dc, err, sizeof(err)), 0);
	assert_int_equal(storvsp_add_disk(su.sv, &dc, err, sizeof(err)), 0);
	/* Readers share the image: a second read-only LUN of it is fine. */
	assert_int_equal(storvsp_add_disk(su.sv, &dc, err, sizeof(err)), 1);
	assert_int_equal(storvsp_list(su.sv, li, 2), 3);
	assert_int_equal(li[1].controller, 1);
	assert_int_equal(li[1].lun, 0);
	assert_true(li[1].read_only);
	{
		struct storvsp_ctrl_info ci[4];

		assert_int_equal(storvsp_list_controllers(su.sv, ci, 4), 2);
		assert_int_equal(ci[1].index, 1);
		assert_int_equal(ci[1].nr_luns, 2);
	}
	unlink(p2);
}

/* ---- benchmark ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void send_one(unsigned slot, bool write, uint32_t pages, bool seq, uint64_t *next)
{
	uint8_t c[10];
	uint64_t pfns[32];
	uint32_t blocks = pages * 8, nblk = (64u << 20) / 512;
	uint32_t lba;
	struct vstor_packet req;

	if (seq) {
		lba = (uint32_t)(*next % nblk);
		*next += blocks;
	} else {
		lba = (uint32_t)(rnd() % (nblk / blocks)) * blocks;
	}
	cdb10(c, write ? SCSI_WRITE_10 : SCSI_READ_10, lba, (uint16_t)blocks);
	req = su_srb(0, c, 10, write ? VMSCSI_DATA_OUT : VMSCSI_DATA_IN, pages * 4096);
	for (unsigned i = 0; i < pages; i++)
		pfns[i] = SU_DATA_PFN + slot * 32 + i;
	assert_int_equal(su_send_gpa(relid, 1 + slot, &req, 64, 0, pages * 4096, pfns, pages), 0);
}

static void bench(const char *name, bool write, uint32_t pages, bool seq, double secs)
{
	enum { DEPTH = 32 };
	uint64_t ios = 0, next = 0;
	double t0 = now_s(), t;
	unsigned inflight = 0;

	for (unsigned i = 0; i < DEPTH; i++, inflight++)
		send_one(i, write, pages, seq, &next);
	while (inflight) {
		struct su_pkt r;
		bool more = (t = now_s()) - t0 < secs;

		if (!su_recv(relid, &r)) {
			su_poll(10);
			continue;
		}
		assert_int_equal(r.type, VMBUS_PKT_COMP);
		assert_int_equal(su_vstor(&r).srb.srb_status, SRB_STATUS_SUCCESS);
		ios++;
		inflight--;
		if (more) {
			send_one((unsigned)r.trans_id - 1, write, pages, seq, &next);
			inflight++;
		}
	}
	t = now_s() - t0;
	printf("  %-40s %9.0f IOPS %9.1f MB/s\n", name, (double)ios / t,
	       (double)ios * pages * 4096 / t / 1e6);
	fflush(stdout);
}

static void test_bench(void **state)
{
	const char *secs_s = getenv("HVMM_BENCH_SECS");
	double secs = secs_s ? atof(secs_s) : 3.0;

	/* Not a skip: cmocka reports skips as "not ok". */
	if (!getenv("HVMM_BENCH"))
		return;
	su.ring_pages = 13; /* about 48 KiB each way */
	su_close(relid);
	assert_true(su_open(relid));
	assert_true(su_storvsc_init(relid, su_linux_versions, 3, false).ok);
	printf("storvsp end to end (fake guest, 1 channel, 32 in flight, 4 I/O threads, raw file"
	       " in /tmp, page cache warm)\n");
	bench("4 KiB random write", true, 1, false, secs);
	bench("4 KiB random read", false, 1, false, secs);
	bench("128 KiB sequential write", true, 32, true, secs);
	bench("128 KiB sequential read", false, 32, true, secs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_real_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_disk_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_second_controller, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bench, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
