/* SCSI disk emulation: every supported command, its data and its errors
 * (sense data checked byte by byte), boundary LBAs, read-only disks, I/O
 * errors, unit attentions and back-pressure. The queue runs without
 * workers so every test is deterministic. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "block/queue.h"
#include "scsi/scsi_defs.h"
#include "scsi/scsi_disk.h"

#include "test_scsi_memdisk.h"

#define DISK_SIZE (8u << 20) /* 16384 sectors of 512 */
#define NBLK (DISK_SIZE / 512)

static struct memdisk *md;
static struct blk_disk *disk;
static struct blkq *q;
static struct scsi_disk *sd;
static uint8_t *buf; /* 1 MiB data buffer */
static struct blkq_iov iov;
static struct scsi_cmd cmd;
static unsigned dones;

static const uint8_t test_id[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
				     0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x0f };

static void on_done(struct scsi_cmd *c)
{
	dones++;
}

static void make_disk(uint64_t size, uint32_t lsec, uint32_t psec, bool ro, const char *serial,
		      unsigned depth)
{
	struct blkq_config qc;
	struct scsi_disk_params p;

	md = md_new(size, lsec, psec);
	disk = md_disk(md);
	blkq_default_config(&qc);
	qc.threads = 0;
	qc.depth = depth;
	assert_int_equal(blkq_new(&q, disk, NULL, &qc), 0);
	memset(&p, 0, sizeof(p));
	p.disk = disk;
	p.q = q;
	p.lun = 3;
	p.read_only = ro;
	memcpy(p.id, test_id, 16);
	p.serial = serial;
	p.max_xfer_bytes = 512 * 1024;
	assert_int_equal(scsi_disk_new(&sd, &p), 0);
}

static int setup(void **state)
{
	buf = aligned_alloc(4096, 1 << 20);
	memset(buf, 0, 1 << 20);
	dones = 0;
	make_disk(DISK_SIZE, 512, 4096, false, NULL, 16);
	return 0;
}

static int teardown(void **state)
{
	blkq_free(q);
	scsi_disk_free(sd);
	blk_close(disk);
	md_free(md);
	free(buf);
	return 0;
}

/* Run a command with `len` bytes of buffer; completes queued commands. */
static int run_len(const uint8_t *cdb, unsigned cdb_len, uint32_t len)
{
	int ret;

	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, cdb, cdb_len);
	cmd.cdb_len = (uint8_t)cdb_len;
	iov.base = buf;
	iov.len = len;
	cmd.buf.iov = &iov;
	cmd.buf.niov = 1;
	cmd.buf.len = len;
	cmd.done = on_done;
	ret = scsi_disk_exec(sd, &cmd);
	if (ret == SCSI_QUEUED) {
		unsigned before = dones;

		for (int i = 0; i < 100 && dones == before; i++)
			blkq_poll(q);
		assert_int_equal(dones, before + 1);
	}
	return ret;
}

#define RUN(len, ...)                                                     \
	({                                                                \
		const uint8_t c_[] = { __VA_ARGS__ };                     \
		run_len(c_, sizeof(c_), (len));                           \
	})

static void expect_good(uint32_t xfer)
{
	assert_int_equal(cmd.status, SCSI_STATUS_GOOD);
	assert_int_equal(cmd.sense_len, 0);
	assert_int_equal(cmd.xfer, xfer);
}

static void expect_sense(uint8_t key, uint8_t asc, uint8_t ascq)
{
	assert_int_equal(cmd.status, SCSI_STATUS_CHECK_CONDITION);
	assert_int_equal(cmd.sense_len, 18);
	assert_int_equal(cmd.sense[0], 0x70);
	assert_int_equal(cmd.sense[2], key);
	assert_int_equal(cmd.sense[7], 10);
	assert_int_equal(cmd.sense[12], asc);
	assert_int_equal(cmd.sense[13], ascq);
	assert_int_equal(cmd.xfer, 0);
}

static void rw10(uint8_t op, uint8_t flags, uint32_t lba, uint16_t n, uint32_t len)
{
	uint8_t c[10] = { op, flags };

	scsi_put_be32(c + 2, lba);
	scsi_put_be16(c + 7, n);
	run_len(c, 10, len);
}

static void rw16(uint8_t op, uint8_t flags, uint64_t lba, uint32_t n, uint32_t len)
{
	uint8_t c[16] = { op, flags };

	scsi_put_be64(c + 2, lba);
	scsi_put_be32(c + 10, n);
	run_len(c, 16, len);
}

/* ---- INQUIRY ---- */

static void test_inquiry_standard(void **state)
{
	RUN(255, SCSI_INQUIRY, 0, 0, 0, 36, 0);
	expect_good(36);
	assert_int_equal(buf[0], 0x00); /* PQ 0, direct access */
	assert_int_equal(buf[1], 0x00);
	assert_int_equal(buf[2], 0x05); /* SPC-3 */
	assert_int_equal(buf[3] & 0x0f, 0x02);
	assert_int_equal(buf[4], 91); /* 96 - 5 */
	assert_int_equal(buf[7], 0x02); /* CmdQue */
	assert_memory_equal(buf + 8, "Msft    ", 8);
	assert_memory_equal(buf + 16, "Virtual Disk    ", 16);
	assert_memory_equal(buf + 32, "1.0 ", 4);
	RUN(255, SCSI_INQUIRY, 0, 0, 0, 255, 0);
	expect_good(96);
	RUN(255, SCSI_INQUIRY, 0, 0, 0, 0, 0);
	expect_good(0);
	/* A buffer smaller than the allocation length: short transfer. */
	RUN(20, SCSI_INQUIRY, 0, 0, 0, 255, 0);
	expect_good(20);
	/* CMDDT, or a page code without EVPD: ILLEGAL REQUEST. */
	RUN(255, SCSI_INQUIRY, 2, 0, 0, 36, 0);
	expect_sense(5, 0x24, 0);
	RUN(255, SCSI_INQUIRY, 0, 0x80, 0, 36, 0);
	expect_sense(5, 0x24, 0);
}

static void test_inquiry_vpd(void **state)
{
	static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
	uint8_t ascii_id[32];

	RUN(255, SCSI_INQUIRY, 1, 0x00, 0, 255, 0);
	expect_good(4 + sizeof(pages));
	assert_int_equal(buf[1], 0x00);
	assert_int_equal(scsi_get_be16(buf + 2), sizeof(pages));
	assert_memory_equal(buf + 4, pages, sizeof(pages));
	/* Serial: the id in hex by default. */
	RUN(255, SCSI_INQUIRY, 1, 0x80, 0, 255, 0);
	expect_good(4 + 32);
	assert_int_equal(buf[1], 0x80);
	assert_memory_equal(buf + 4, "11223344556677", 14);
	/* Device identification: NAA 6 with the Microsoft OUI, then T10. */
	RUN(255, SCSI_INQUIRY, 1, 0x83, 0, 255, 0);
	expect_good(4 + 20 + 44);
	assert_int_equal(scsi_get_be16(buf + 2), 64);
	assert_int_equal(buf[4], 0x01); /* binary */
	assert_int_equal(buf[5], 0x03); /* LU, NAA */
	assert_int_equal(buf[7], 16);
	assert_int_equal(buf[8], 0x60);
	assert_int_equal(buf[9], 0x02);
	assert_int_equal(buf[10], 0x24);
	assert_int_equal(buf[11] & 0xf0, 0x80);
	assert_int_equal(buf[24], 0x02); /* ASCII */
	assert_int_equal(buf[25], 0x01); /* LU, T10 vendor id */
	assert_int_equal(buf[27], 40);
	assert_memory_equal(buf + 28, "Msft    ", 8);
	memcpy(ascii_id, buf + 36, 32);
	assert_memory_equal(ascii_id, "112233445566778899AABBCCDDEEF00F", 32);
	/* Block limits. */
	RUN(255, SCSI_INQUIRY, 1, 0xb0, 0, 255, 0);
	expect_good(64);
	assert_int_equal(scsi_get_be16(buf + 2), 0x3c);
	assert_int_equal(buf[4] & 1, 1);                        /* WSNZ */
	assert_int_equal(scsi_get_be16(buf + 6), 8);            /* 4K physical */
	assert_int_equal(scsi_get_be32(buf + 8), 1024);         /* 512 KiB */
	assert_int_equal(scsi_get_be32(buf + 20), 0xffffffffu); /* max unmap LBAs */
	assert_int_equal(scsi_get_be32(buf + 24), SCSI_MAX_UNMAP_DESCRIPTORS);
	assert_int_equal(scsi_get_be32(buf + 28), 8);           /* granularity */
	assert_int_equal(scsi_get_be32(buf + 32), 0x80000000u); /* UGAVALID, 0 */
	assert_int_equal(scsi_get_be64(buf + 36), SCSI_MAX_WRITE_SAME_BYTES / 512);
	/* Characteristics: non-rotational. */
	RUN(255, SCSI_INQUIRY, 1, 0xb1, 0, 255, 0);
	expect_good(64);
	assert_int_equal(scsi_get_be16(buf + 4), 1);
	/* Provisioning. */
	RUN(255, SCSI_INQUIRY, 1, 0xb2, 0, 255, 0);
	expect_good(8);
	assert_int_equal(scsi_get_be16(buf + 2), 4);
	assert_int_equal(buf[5], 0x80 | 0x40 | 0x20 | 0x04);
	assert_int_equal(buf[6] & 7, 2);
	/* Unsupported page: error and no data (Linux reads "page absent"). */
	RUN(255, SCSI_INQUIRY, 1, 0x89, 0, 255, 0);
	expect_sense(5, 0x24, 0);
	/* Allocation length truncates. */
	RUN(255, SCSI_INQUIRY, 1, 0x83, 0, 10, 0);
	expect_good(10);
}

static void test_vpd_read_only_no_discard(void **state)
{
	teardown(state);
	buf = aligned_alloc(4096, 1 << 20);
	make_disk(DISK_SIZE, 512, 512, true, "MY-SERIAL-1", 16);
	RUN(255, SCSI_INQUIRY, 1, 0x80, 0, 255, 0);
	expect_good(4 + 11);
	assert_memory_equal(buf + 4, "MY-SERIAL-1", 11);
	RUN(255, SCSI_INQUIRY, 1, 0xb0, 0, 255, 0);
	assert_int_equal(scsi_get_be32(buf + 20), 0);
	assert_int_equal(scsi_get_be32(buf + 24), 0);
	assert_int_equal(scsi_get_be16(buf + 6), 1);
	RUN(255, SCSI_INQUIRY, 1, 0xb2, 0, 255, 0);
	assert_int_equal(buf[5], 0);
}

static void test_new_errors(void **state)
{
	struct scsi_disk_params p;
	struct scsi_disk *x;
	char longs[SCSI_SERIAL_MAX + 2];

	memset(&p, 0, sizeof(p));
	assert_int_equal(scsi_disk_new(&x, &p), -EINVAL);
	p.disk = disk;
	p.q = q;
	p.serial = "bad\x01";
	assert_int_equal(scsi_disk_new(&x, &p), -EINVAL);
	memset(longs, 'a', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = 0;
	p.serial = longs;
	assert_int_equal(scsi_disk_new(&x, &p), -EINVAL);
	p.serial = "";
	assert_int_equal(scsi_disk_new(&x, &p), -EINVAL);
	p.serial = NULL;
	md->lsec = 1024;
	assert_int_equal(scsi_disk_new(&x, &p), -EINVAL);
	md->lsec = 512;
}

/* ---- capacity ---- */

static void test_read_capacity(void **state)
{
	RUN(255, SCSI_READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_good(8);
	assert_int_equal(scsi_get_be32(buf), NBLK - 1);
	assert_int_equal(scsi_get_be32(buf + 4), 512);
	/* LBA without PMI: invalid. */
	RUN(255, SCSI_READ_CAPACITY_10, 0, 0, 0, 0, 1, 0, 0, 0, 0);
	expect_sense(5, 0x24, 0);
	RUN(255, SCSI_SERVICE_ACTION_IN_16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
	expect_good(32);
	assert_int_equal(scsi_get_be64(buf), NBLK - 1);
	assert_int_equal(scsi_get_be32(buf + 8), 512);
	assert_int_equal(buf[13] & 0xf, 3); /* 8 logical per physical */
	assert_int_equal(buf[14] & 0xc0, 0xc0); /* LBPME, LBPRZ */
	RUN(255, SCSI_SERVICE_ACTION_IN_16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0);
	expect_good(12);
	/* Other service actions (GET LBA STATUS) are not supported. */
	RUN(255, SCSI_SERVICE_ACTION_IN_16, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
	expect_sense(5, 0x24, 0);
}

static void test_read_capacity_huge_and_4k(void **state)
{
	/* 3 TiB of 512-byte sectors: RC10 says "use RC16". */
	md->size = 3ull << 40;
	assert_true(scsi_disk_refresh(sd));
	RUN(255, SCSI_REQUEST_SENSE, 0, 0, 0, 18, 0); /* consume the unit attention */
	RUN(255, SCSI_READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_good(8);
	assert_int_equal(scsi_get_be32(buf), 0xffffffffu);
	RUN(255, SCSI_SERVICE_ACTION_IN_16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
	assert_int_equal(scsi_get_be64(buf), (3ull << 40) / 512 - 1);
	md->size = DISK_SIZE;
	/* A 4Kn disk. */
	teardown(state);
	buf = aligned_alloc(4096, 1 << 20);
	make_disk(DISK_SIZE, 4096, 4096, false, NULL, 16);
	RUN(255, SCSI_SERVICE_ACTION_IN_16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
	assert_int_equal(scsi_get_be64(buf), DISK_SIZE / 4096 - 1);
	assert_int_equal(scsi_get_be32(buf + 8), 4096);
	assert_int_equal(buf[13] & 0xf, 0);
	assert_int_equal(scsi_disk_block_size(sd), 4096);
}

/* ---- MODE SENSE ---- */

static void test_mode_sense6(void **state)
{
	/* All pages with a block descriptor. */
	RUN(255, SCSI_MODE_SENSE_6, 0, 0x3f, 0, 192, 0);
	expect_good(4 + 8 + 20 + 12);
	assert_int_equal(buf[0], 4 + 8 + 20 + 12 - 1);
	assert_int_equal(buf[2] & 0x80, 0);    /* not write protected */
	assert_int_equal(buf[2] & 0x10, 0x10); /* DPOFUA */
	assert_int_equal(buf[3], 8);
	assert_int_equal(scsi_get_be32(buf + 4), NBLK);
	assert_int_equal(scsi_get_be24(buf + 9), 512);
	assert_int_equal(buf[12], 0x08);
	assert_int_equal(buf[13], 0x12);
	assert_int_equal(buf[14] & 0x04, 0x04); /* WCE */
	assert_int_equal(buf[32], 0x0a);
	assert_int_equal(buf[33], 0x0a);
	/* Caching page only, no block descriptor. */
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0x08, 0, 255, 0);
	expect_good(4 + 20);
	assert_int_equal(buf[3], 0);
	assert_int_equal(buf[4], 0x08);
	assert_int_equal(buf[6] & 0x04, 0x04);
	/* Control page. */
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0x0a, 0, 255, 0);
	expect_good(4 + 12);
	assert_int_equal(buf[4], 0x0a);
	/* All pages and subpages. */
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0x3f, 0xff, 255, 0);
	expect_good(4 + 32);
	/* Changeable values: nothing is changeable. */
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0x48, 0, 255, 0);
	expect_good(4 + 20);
	assert_int_equal(buf[6], 0);
	/* Saved values: not supported. */
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0xc8, 0, 255, 0);
	expect_sense(5, 0x39, 0);
	/* Unknown page or subpage. */
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0x1c, 0, 255, 0);
	expect_sense(5, 0x24, 0);
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0x08, 1, 255, 0);
	expect_sense(5, 0x24, 0);
	/* Short allocation length: the header only (Linux's 4-byte retry). */
	RUN(255, SCSI_MODE_SENSE_6, 0, 0x3f, 0, 4, 0);
	expect_good(4);
	assert_int_equal(buf[0], 43);
}

static void test_mode_sense10_and_wp(void **state)
{
	RUN(255, SCSI_MODE_SENSE_10, 0, 0x3f, 0, 0, 0, 0, 0, 255, 0);
	expect_good(8 + 8 + 32);
	assert_int_equal(scsi_get_be16(buf), 8 + 8 + 32 - 2);
	assert_int_equal(buf[3] & 0x90, 0x10);
	assert_int_equal(scsi_get_be16(buf + 6), 8);
	/* LLBAA: the long block descriptor. */
	RUN(255, SCSI_MODE_SENSE_10, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0);
	expect_good(8 + 16 + 20);
	assert_int_equal(buf[4] & 1, 1);
	assert_int_equal(scsi_get_be16(buf + 6), 16);
	assert_int_equal(scsi_get_be64(buf + 8), NBLK);
	assert_int_equal(scsi_get_be32(buf + 20), 512);
	/* Read-only: WP set in both forms. */
	teardown(state);
	buf = aligned_alloc(4096, 1 << 20);
	make_disk(DISK_SIZE, 512, 512, true, NULL, 16);
	RUN(255, SCSI_MODE_SENSE_6, 0x08, 0x3f, 0, 255, 0);
	assert_int_equal(buf[2] & 0x80, 0x80);
	RUN(255, SCSI_MODE_SENSE_10, 0x08, 0x3f, 0, 0, 0, 0, 0, 255, 0);
	assert_int_equal(buf[3] & 0x80, 0x80);
}

/* ---- simple commands ---- */

static void test_simple_commands(void **state)
{
	RUN(0, SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0);
	expect_good(0);
	RUN(0, SCSI_START_STOP_UNIT, 0, 0, 0, 1, 0);
	expect_good(0);
	RUN(0, SCSI_START_STOP_UNIT, 1, 0, 0, 0, 0);
	expect_good(0);
	RUN(0, SCSI_PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0, 0);
	expect_good(0);
	RUN(0, SCSI_VERIFY_10, 0, 0, 0, 0, 0, 0, 0, 8, 0);
	expect_good(0);
	RUN(0, SCSI_VERIFY_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0);
	expect_good(0);
	/* VERIFY past the end. */
	RUN(0, SCSI_VERIFY_10, 0, 0, 0, 0x40, 0, 0, 0, 1, 0); /* LBA 16384 */
	expect_sense(5, 0x21, 0);
	/* REQUEST SENSE without a pending condition: NO SENSE. */
	RUN(255, SCSI_REQUEST_SENSE, 0, 0, 0, 252, 0);
	expect_good(18);
	assert_int_equal(buf[0], 0x70);
	assert_int_equal(buf[2], 0);
	assert_int_equal(buf[12], 0);
	RUN(255, SCSI_REQUEST_SENSE, 1, 0, 0, 252, 0); /* descriptor format */
	expect_sense(5, 0x24, 0);
	/* REPORT LUNS sent to the disk alone lists its own LUN. */
	RUN(255, SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0);
	expect_good(16);
	assert_int_equal(scsi_get_be32(buf), 8);
	assert_int_equal(buf[8], 0);
	assert_int_equal(buf[9], 3);
	RUN(255, SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0); /* alloc < 16 */
	expect_sense(5, 0x24, 0);
	RUN(255, SCSI_REPORT_LUNS, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0); /* well-known only */
	expect_good(8);
	assert_int_equal(scsi_get_be32(buf), 0);
	RUN(255, SCSI_REPORT_LUNS, 0, 0x55, 0, 0, 0, 0, 0, 1, 0, 0, 0);
	expect_sense(5, 0x24, 0);
}

static void test_invalid_commands(void **state)
{
	/* Unsupported operation codes. */
	RUN(255, SCSI_MAINTENANCE_IN, 0x0c, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0);
	expect_sense(5, 0x20, 0);
	RUN(255, SCSI_MODE_SELECT_6, 0x10, 0, 0, 0, 0);
	expect_sense(5, 0x20, 0);
	RUN(255, 0xff, 0, 0, 0, 0, 0);
	expect_sense(5, 0x20, 0);
	RUN(255, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_sense(5, 0x20, 0);
	RUN(255, SCSI_ATA_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_sense(5, 0x20, 0);
	/* A CDB shorter than its operation code needs. */
	RUN(4096, SCSI_READ_10, 0, 0, 0, 0, 0);
	expect_sense(5, 0x24, 0);
	/* NACA set. */
	RUN(0, SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0x04);
	expect_sense(5, 0x24, 0);
	/* CDB length 0 or > 16. */
	memset(&cmd, 0, sizeof(cmd));
	assert_int_equal(scsi_disk_exec(sd, &cmd), SCSI_DONE);
	expect_sense(5, 0x24, 0);
	cmd.cdb_len = 17;
	assert_int_equal(scsi_disk_exec(sd, &cmd), SCSI_DONE);
	expect_sense(5, 0x24, 0);
}

/* ---- READ / WRITE ---- */

static void test_read_write(void **state)
{
	for (unsigned i = 0; i < 8192; i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	rw10(SCSI_WRITE_10, 0, 100, 16, 8192);
	expect_good(8192);
	assert_memory_equal(md->data + 100 * 512, buf, 8192);
	memset(buf, 0, 8192);
	rw10(SCSI_READ_10, 0, 100, 16, 8192);
	expect_good(8192);
	assert_memory_equal(buf, md->data + 100 * 512, 8192);
	/* 16-byte forms. */
	memset(buf, 0x77, 1024);
	rw16(SCSI_WRITE_16, 0, NBLK - 2, 2, 1024);
	expect_good(1024);
	assert_int_equal(md->data[DISK_SIZE - 1], 0x77);
	memset(buf, 0, 1024);
	rw16(SCSI_READ_16, 0, NBLK - 2, 2, 1024);
	expect_good(1024);
	assert_int_equal(buf[1023], 0x77);
	/* 12-byte forms. */
	{
		uint8_t c[12] = { SCSI_READ_12 };

		scsi_put_be32(c + 2, NBLK - 2);
		scsi_put_be32(c + 6, 2);
		run_len(c, 12, 1024);
		expect_good(1024);
		c[0] = SCSI_WRITE_12;
		run_len(c, 12, 1024);
		expect_good(1024);
	}
	/* 6-byte forms; length 0 means 256 blocks. */
	memset(md->data + 512 * 10, 0x42, 256 * 512);
	RUN(256 * 512, SCSI_READ_6, 0, 0, 10, 0, 0);
	expect_good(256 * 512);
	assert_int_equal(buf[256 * 512 - 1], 0x42);
	RUN(512, SCSI_WRITE_6, 0x1f, 0xff, 0xff, 1, 0); /* LBA 2^21-1: beyond the disk */
	expect_sense(5, 0x21, 0);
	RUN(512, SCSI_WRITE_6, 0, 0, 5, 1, 0);
	expect_good(512);
	/* A larger buffer than the transfer: short transfer. */
	rw10(SCSI_READ_10, 0, 0, 1, 4096);
	expect_good(512);
	/* A buffer too small for the transfer. */
	rw10(SCSI_READ_10, 0, 0, 8, 4095);
	expect_sense(5, 0x24, 0);
	/* Zero blocks: nothing to do. */
	rw10(SCSI_READ_10, 0, 0, 0, 0);
	expect_good(0);
	rw10(SCSI_WRITE_10, 0, NBLK, 0, 0); /* LBA == capacity, 0 blocks: fine */
	expect_good(0);
	/* Protection fields. */
	rw10(SCSI_READ_10, 0x20, 0, 1, 512);
	expect_sense(5, 0x24, 0);
}

static void test_lba_boundaries(void **state)
{
	/* The last block is fine, one past it is not. */
	rw10(SCSI_READ_10, 0, NBLK - 1, 1, 512);
	expect_good(512);
	rw10(SCSI_READ_10, 0, NBLK, 1, 512);
	expect_sense(5, 0x21, 0);
	rw10(SCSI_WRITE_10, 0, NBLK - 1, 2, 1024);
	expect_sense(5, 0x21, 0);
	rw10(SCSI_READ_10, 0, 0xffffffffu, 1, 512);
	expect_sense(5, 0x21, 0);
	/* 64-bit wrap-around. */
	rw16(SCSI_READ_16, 0, UINT64_MAX, 2, 1024);
	expect_sense(5, 0x21, 0);
	rw16(SCSI_READ_16, 0, 1, 0xffffffffu, 4096);
	expect_sense(5, 0x21, 0);
	rw10(SCSI_WRITE_10, 0, NBLK + 1, 0, 0); /* even with 0 blocks */
	expect_sense(5, 0x21, 0);
	assert_int_equal(md->nreads + md->nwrites, 1);
}

static void test_fua_and_sync(void **state)
{
	rw10(SCSI_WRITE_10, 0x08, 0, 1, 512);
	expect_good(512);
	assert_int_equal(md->fua_writes, 1);
	rw16(SCSI_WRITE_16, 0x08, 0, 1, 512);
	assert_int_equal(md->fua_writes, 2);
	rw10(SCSI_WRITE_10, 0, 0, 1, 512);
	assert_int_equal(md->fua_writes, 2);
	RUN(0, SCSI_SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_good(0);
	assert_int_equal(md->nflushes, 1);
	RUN(0, SCSI_SYNCHRONIZE_CACHE_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_good(0);
	assert_int_equal(md->nflushes, 2);
	RUN(0, SCSI_SYNCHRONIZE_CACHE_10, 0, 0, 0, 0x40, 0, 0, 0, 1, 0); /* past the end */
	expect_sense(5, 0x21, 0);
	assert_int_equal(md->nflushes, 2);
}

static void test_read_only(void **state)
{
	teardown(state);
	buf = aligned_alloc(4096, 1 << 20);
	make_disk(DISK_SIZE, 512, 512, true, NULL, 16);
	rw10(SCSI_WRITE_10, 0, 0, 1, 512);
	expect_sense(7, 0x27, 0);
	rw16(SCSI_WRITE_16, 0, 0, 1, 512);
	expect_sense(7, 0x27, 0);
	RUN(512, SCSI_WRITE_6, 0, 0, 0, 1, 0);
	expect_sense(7, 0x27, 0);
	RUN(512, SCSI_WRITE_SAME_16, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0);
	expect_sense(7, 0x27, 0);
	RUN(24, SCSI_UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0);
	expect_sense(7, 0x27, 0);
	assert_int_equal(md->nwrites + md->ndiscards, 0);
	/* Reads and cache flushes still work (nothing to flush). */
	rw10(SCSI_READ_10, 0, 0, 1, 512);
	expect_good(512);
	RUN(0, SCSI_SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_good(0);
	assert_int_equal(md->nflushes, 0);
	assert_true(scsi_disk_read_only(sd));
}

/* The image itself is read-only (not the option). */
static void test_image_read_only(void **state)
{
	teardown(state);
	buf = aligned_alloc(4096, 1 << 20);
	md = NULL;
	{
		struct blkq_config qc;
		struct scsi_disk_params p;

		md = md_new(DISK_SIZE, 512, 512);
		md->ro = true;
		disk = md_disk(md);
		blkq_default_config(&qc);
		qc.threads = 0;
		assert_int_equal(blkq_new(&q, disk, NULL, &qc), 0);
		memset(&p, 0, sizeof(p));
		p.disk = disk;
		p.q = q;
		p.max_xfer_bytes = 65536;
		assert_int_equal(scsi_disk_new(&sd, &p), 0);
	}
	rw10(SCSI_WRITE_10, 0, 0, 1, 512);
	expect_sense(7, 0x27, 0);
}

static void test_io_errors(void **state)
{
	md->fail_read = -EIO;
	rw10(SCSI_READ_10, 0, 0, 1, 512);
	expect_sense(3, 0x11, 0);
	md->fail_read = 0;
	md->fail_write = -EIO;
	rw10(SCSI_WRITE_10, 0, 0, 1, 512);
	expect_sense(3, 0x0c, 0);
	md->fail_write = -ENOSPC;
	rw10(SCSI_WRITE_10, 0, 0, 1, 512);
	expect_sense(7, 0x27, 0x07);
	md->fail_write = 0;
	md->fail_flush = -EIO;
	RUN(0, SCSI_SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_sense(3, 0x0c, 0);
	md->fail_flush = 0;
	/* Back to normal. */
	rw10(SCSI_READ_10, 0, 0, 1, 512);
	expect_good(512);
}

/* ---- UNMAP / WRITE SAME ---- */

static void unmap_list(uint16_t plen, uint16_t bdl, unsigned n, const uint64_t *lba,
		       const uint32_t *cnt)
{
	memset(buf, 0, 4096);
	scsi_put_be16(buf, (uint16_t)(6 + 16 * n));
	scsi_put_be16(buf + 2, bdl);
	for (unsigned i = 0; i < n; i++) {
		scsi_put_be64(buf + 8 + 16 * i, lba[i]);
		scsi_put_be32(buf + 16 + 16 * i, cnt[i]);
	}
	{
		uint8_t c[10] = { SCSI_UNMAP };

		scsi_put_be16(c + 7, plen);
		run_len(c, 10, plen);
	}
}

static void test_unmap(void **state)
{
	uint64_t lba[3] = { 10, 100, 1000 };
	uint32_t cnt[3] = { 2, 0, 8 };

	memset(md->data, 0xff, DISK_SIZE);
	unmap_list(24, 16, 1, lba, cnt);
	expect_good(0);
	assert_int_equal(md->ndiscards, 1);
	assert_int_equal(md->data[10 * 512], 0);
	assert_int_equal(md->data[12 * 512], 0xff);
	/* Several descriptors, one of them empty: two discards, in order. */
	unmap_list(56, 48, 3, lba, cnt);
	expect_good(0);
	assert_int_equal(md->ndiscards, 3);
	assert_int_equal(md->data[1000 * 512], 0);
	assert_int_equal(md->data[1008 * 512], 0xff);
	/* A descriptor past the end: nothing is done. */
	lba[0] = NBLK - 1;
	cnt[0] = 2;
	unmap_list(24, 16, 1, lba, cnt);
	expect_sense(5, 0x21, 0);
	assert_int_equal(md->ndiscards, 3);
	/* Parameter list too short for its header or its descriptors. */
	unmap_list(6, 16, 1, lba, cnt);
	expect_sense(5, 0x1a, 0);
	unmap_list(16, 16, 1, lba, cnt);
	expect_sense(5, 0x1a, 0);
	/* Too many descriptors. */
	unmap_list(8 + 16 * 17, 16 * 17, 0, lba, cnt);
	expect_sense(5, 0x26, 0);
	/* No parameter list: nothing to do. */
	unmap_list(0, 0, 0, lba, cnt);
	expect_good(0);
	/* ANCHOR is not supported. */
	RUN(24, SCSI_UNMAP, 1, 0, 0, 0, 0, 0, 0, 24, 0);
	expect_sense(5, 0x24, 0);
	/* A format that cannot deallocate: success, data kept. */
	md->can_discard = false;
	lba[0] = 20;
	cnt[0] = 1;
	memset(md->data + 20 * 512, 0xee, 512);
	unmap_list(24, 16, 1, lba, cnt);
	expect_good(0);
	assert_int_equal(md->data[20 * 512], 0xee);
}

static void test_write_same(void **state)
{
	memset(md->data, 0xff, DISK_SIZE);
	/* WRITE SAME(10) without UNMAP: the pattern is written. */
	for (unsigned i = 0; i < 512; i++)
		buf[i] = (uint8_t)(i + 1);
	RUN(512, SCSI_WRITE_SAME_10, 0, 0, 0, 0, 50, 0, 0, 4, 0);
	expect_good(0);
	for (unsigned b = 50; b < 54; b++)
		assert_memory_equal(md->data + b * 512, buf, 512);
	assert_int_equal(md->data[54 * 512], 0xff);
	assert_int_equal(md->ndiscards, 0);
	/* WRITE SAME(16) with UNMAP and zeros: deallocated. */
	memset(buf, 0, 512);
	RUN(512, SCSI_WRITE_SAME_16, 0x08, 0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 0, 4, 0, 0);
	expect_good(0);
	assert_int_equal(md->ndiscards, 1);
	assert_int_equal(md->data[50 * 512], 0);
	/* UNMAP with a non-zero pattern writes it (it would not read back). */
	buf[0] = 9;
	RUN(512, SCSI_WRITE_SAME_16, 0x08, 0, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0, 1, 0, 0);
	expect_good(0);
	assert_int_equal(md->ndiscards, 1);
	assert_int_equal(md->data[60 * 512], 9);
	/* Zero blocks (WSNZ), too many, out of range, NDOB, ANCHOR, no buffer. */
	RUN(512, SCSI_WRITE_SAME_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	expect_sense(5, 0x24, 0);
	RUN(512, SCSI_WRITE_SAME_16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0);
	expect_sense(5, 0x24, 0);
	RUN(512, SCSI_WRITE_SAME_10, 0, 0, 0, 0x3f, 0xff, 0, 0, 2, 0);
	expect_sense(5, 0x21, 0);
	RUN(512, SCSI_WRITE_SAME_16, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0);
	expect_sense(5, 0x24, 0);
	RUN(512, SCSI_WRITE_SAME_10, 0x10, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(5, 0x24, 0);
	RUN(100, SCSI_WRITE_SAME_10, 0, 0, 0, 0, 0, 0, 0, 1, 0);
	expect_sense(5, 0x24, 0);
}

/* ---- unit attentions ---- */

static void test_unit_attention(void **state)
{
	assert_int_equal(scsi_disk_pending_ua(sd), 0);
	assert_int_equal(blk_resize(disk, DISK_SIZE * 2), 0);
	assert_true(scsi_disk_refresh(sd));
	assert_false(scsi_disk_refresh(sd)); /* no further change */
	scsi_disk_set_ua(sd, SCSI_UA_LUNS_CHANGED);
	/* INQUIRY is exempt and leaves the condition pending. */
	RUN(255, SCSI_INQUIRY, 0, 0, 0, 36, 0);
	expect_good(36);
	/* The next command reports capacity first, then the LUN change. */
	RUN(0, SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0);
	expect_sense(6, 0x2a, 0x09);
	rw10(SCSI_READ_10, 0, 0, 1, 512);
	expect_sense(6, 0x3f, 0x0e);
	assert_int_equal(md->nreads, 0);
	RUN(0, SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0);
	expect_good(0);
	/* The new capacity. */
	RUN(255, SCSI_SERVICE_ACTION_IN_16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0);
	assert_int_equal(scsi_get_be64(buf), 2 * NBLK - 1);
	rw10(SCSI_READ_10, 0, 2 * NBLK - 1, 1, 512);
	expect_good(512);
	/* REQUEST SENSE returns a pending condition as data and clears it. */
	scsi_disk_set_ua(sd, SCSI_UA_CAPACITY_CHANGED);
	RUN(255, SCSI_REQUEST_SENSE, 0, 0, 0, 18, 0);
	expect_good(18);
	assert_int_equal(buf[2], 6);
	assert_int_equal(buf[12], 0x2a);
	assert_int_equal(buf[13], 0x09);
	RUN(0, SCSI_TEST_UNIT_READY, 0, 0, 0, 0, 0);
	expect_good(0);
	/* REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED. */
	scsi_disk_set_ua(sd, SCSI_UA_LUNS_CHANGED);
	RUN(255, SCSI_REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0);
	expect_good(16);
	assert_int_equal(scsi_disk_pending_ua(sd), 0);
	scsi_disk_set_ua(sd, SCSI_UA_LUNS_CHANGED);
	scsi_disk_clear_ua(sd, SCSI_UA_LUNS_CHANGED);
	assert_int_equal(scsi_disk_pending_ua(sd), 0);
}

/* ---- back-pressure ---- */

static void test_busy(void **state)
{
	struct scsi_cmd first;
	uint8_t c[10] = { SCSI_READ_10 };
	int ret;

	teardown(state);
	buf = aligned_alloc(4096, 1 << 20);
	make_disk(DISK_SIZE, 512, 512, false, NULL, 1);
	scsi_put_be16(c + 7, 1);
	memset(&first, 0, sizeof(first));
	memcpy(first.cdb, c, 10);
	first.cdb_len = 10;
	iov = (struct blkq_iov){ buf, 512 };
	first.buf = (struct scsi_sg){ &iov, 1, 512 };
	first.done = on_done;
	assert_int_equal(scsi_disk_exec(sd, &first), SCSI_QUEUED);
	assert_true(scsi_disk_busy(sd));
	/* A second data command is refused untouched... */
	memset(&cmd, 0, sizeof(cmd));
	memcpy(cmd.cdb, c, 10);
	cmd.cdb_len = 10;
	cmd.buf = first.buf;
	cmd.done = on_done;
	assert_int_equal(scsi_disk_exec(sd, &cmd), -EAGAIN);
	/* ...but commands answered from state still work. */
	RUN(255, SCSI_INQUIRY, 0, 0, 0, 36, 0);
	expect_good(36);
	/* Free the slot, then the retry goes through. */
	blkq_poll(q);
	assert_int_equal(dones, 1);
	assert_false(scsi_disk_busy(sd));
	ret = run_len(c, 10, 512);
	assert_int_equal(ret, SCSI_QUEUED);
	expect_good(512);
}

/* ---- target-level answers ---- */

static void test_no_lun_and_report_luns(void **state)
{
	uint16_t luns[3] = { 0, 5, 300 };

	memset(&cmd, 0, sizeof(cmd));
	cmd.cdb[0] = SCSI_INQUIRY;
	cmd.cdb[4] = 96;
	cmd.cdb_len = 6;
	iov = (struct blkq_iov){ buf, 255 };
	cmd.buf = (struct scsi_sg){ &iov, 1, 255 };
	scsi_inquiry_no_lun(&cmd);
	expect_good(96);
	assert_int_equal(buf[0], 0x7f);
	cmd.cdb[1] = 1;
	scsi_inquiry_no_lun(&cmd);
	expect_sense(5, 0x25, 0);
	/* REPORT LUNS over a scattered buffer (entries straddle segments). */
	{
		struct blkq_iov two[3] = { { buf, 11 }, { buf + 100, 5 }, { buf + 200, 100 } };

		memset(&cmd, 0, sizeof(cmd));
		cmd.cdb[0] = SCSI_REPORT_LUNS;
		scsi_put_be32(cmd.cdb + 6, 4096);
		cmd.cdb_len = 12;
		cmd.buf = (struct scsi_sg){ two, 3, 116 };
		scsi_report_luns(&cmd, luns, 3);
		expect_good(32);
		assert_int_equal(scsi_get_be32(buf), 24);
		/* Bytes 0..10 in the first segment, 11..15 in the second,
		 * 16.. in the third: entry 1 (LUN 5) starts the third. */
		assert_int_equal(buf[200 + 1], 5);
		assert_int_equal(buf[208], 0x41); /* LUN 300: flat space addressing */
		assert_int_equal(buf[209], 300 & 0xff);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inquiry_standard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inquiry_vpd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vpd_read_only_no_discard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_capacity_huge_and_4k, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_sense6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode_sense10_and_wp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_simple_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lba_boundaries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fua_and_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_same, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unit_attention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_lun_and_report_luns, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
