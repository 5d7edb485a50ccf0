/* libFuzzer target: arbitrary CDBs (any length 0..16, any bytes) with
 * arbitrary data buffers (any length, split into up to four segments,
 * exactly sized so ASan sees any overrun) into the SCSI disk emulation,
 * over an in-memory disk whose sector size, read-only flag, discard
 * support and size the input chooses; unit attentions and resizes in
 * between. The queue has no workers, so every command finishes inside the
 * input. Checks the results are well-formed: GOOD or CHECK CONDITION with
 * 18 bytes of fixed-format sense, never more data than the buffer, every
 * queued command completed exactly once. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block/queue.h"
#include "scsi/scsi_defs.h"
#include "scsi/scsi_disk.h"
#include "util/log.h"

#include "../tests/unit/test_scsi_memdisk.h"

#define BASE_SIZE (1u << 20)

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t in_u8(struct input *in)
{
	uint8_t v = 0;

	if (in->n) {
		v = *in->p++;
		in->n--;
	}
	return v;
}

static uint16_t in_u16(struct input *in)
{
	return (uint16_t)(in_u8(in) | in_u8(in) << 8);
}

static size_t in_bytes(struct input *in, void *dst, size_t want)
{
	size_t n = want < in->n ? want : in->n;

	memcpy(dst, in->p, n);
	in->p += n;
	in->n -= n;
	return n;
}

static unsigned dones;

static void on_done(struct scsi_cmd *c)
{
	dones++;
}

static void check(const struct scsi_cmd *c)
{
	if (c->status == SCSI_STATUS_GOOD) {
		if (c->sense_len || c->xfer > c->buf.len)
			abort();
	} else if (c->status == SCSI_STATUS_CHECK_CONDITION) {
		uint8_t key = c->sense[2] & 0xf;

		if (c->sense_len != SCSI_SENSE_LEN || c->sense[0] != 0x70 || c->sense[7] != 10 ||
		    c->xfer)
			abort();
		if (key != SCSI_SK_ILLEGAL_REQUEST && key != SCSI_SK_UNIT_ATTENTION &&
		    key != SCSI_SK_DATA_PROTECT && key != SCSI_SK_MEDIUM_ERROR &&
		    key != SCSI_SK_HARDWARE_ERROR)
			abort();
	} else {
		abort();
	}
}

/* One disk for every input (allocating it each time dominated the run
 * time); each input resets it. */
static struct memdisk *md;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_threshold = LOG_ERR;
	md = md_new(4u << 20, 512, 512); /* room for every resize */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t cfg = in_u8(&in);
	struct blk_disk *disk;
	struct blkq_config qc;
	struct scsi_disk_params p;
	struct scsi_disk *sd;
	struct blkq *q;
	static struct scsi_cmd cmd;

	md->can_resize = true;
	md->ro = false;
	if (md->size != BASE_SIZE && md_resize((struct blk_image *)md, BASE_SIZE))
		abort();
	md->lsec = cfg & 1 ? 4096 : 512;
	md->psec = cfg & 2 ? 4096 : md->lsec;
	md->nlog = 0;
	md->ro = cfg & 4;
	md->can_discard = !(cfg & 8);
	md->can_resize = true;
	disk = md_disk(md);
	blkq_default_config(&qc);
	qc.threads = 0;
	qc.depth = 1 + (cfg >> 4); /* 1..16 */
	qc.bounce_size = 64 * 1024;
	if (blkq_new(&q, disk, NULL, &qc))
		abort();
	memset(&p, 0, sizeof(p));
	p.disk = disk;
	p.q = q;
	p.lun = 1;
	p.read_only = cfg & 0x10;
	p.max_xfer_bytes = 256 * 1024;
	if (scsi_disk_new(&sd, &p))
		abort();
	dones = 0;
	for (unsigned n = 0; in.n && n < 64; n++) {
		uint8_t act = in_u8(&in);
		uint32_t len, segs, off = 0;
		struct blkq_iov iov[4];
		uint8_t *bufs[4] = { 0 };
		unsigned expect;
		int ret;

		if (act == 0xff) { /* resize */
			uint64_t sz = (uint64_t)(in_u16(&in) % 64 + 1) * 65536;

			if (blk_resize(disk, sz) == 0)
				scsi_disk_refresh(sd);
			continue;
		}
		if (act == 0xfe) {
			scsi_disk_set_ua(sd, in_u8(&in) & 3);
			continue;
		}
		memset(&cmd, 0, sizeof(cmd));
		cmd.cdb_len = (uint8_t)(act % 18); /* 0..17: out-of-range lengths too */
		in_bytes(&in, cmd.cdb, cmd.cdb_len > 16 ? 16 : cmd.cdb_len);
		len = in_u16(&in) % (72 * 1024);
		segs = 1 + (act >> 5) % 4;
		for (unsigned i = 0; i < segs; i++) {
			uint32_t n_i = i + 1 == segs ? len - off : (len - off) / (segs - i);

			bufs[i] = malloc(n_i ? n_i : 1);
			iov[i].base = bufs[i];
			iov[i].len = n_i;
			memset(bufs[i], 0xa5, n_i);
			if (n_i)
				in_bytes(&in, bufs[i], n_i < 64 ? n_i : 64);
			off += n_i;
		}
		cmd.buf.iov = iov;
		cmd.buf.niov = segs;
		cmd.buf.len = len;
		cmd.done = on_done;
		expect = dones;
		ret = scsi_disk_exec(sd, &cmd);
		if (ret == SCSI_QUEUED) {
			for (int k = 0; k < 100 && dones == expect; k++)
				blkq_poll(q);
			if (dones != expect + 1)
				abort();
			check(&cmd);
		} else if (ret == SCSI_DONE) {
			if (dones != expect)
				abort();
			check(&cmd);
		} else if (ret == -EAGAIN) {
			if (!scsi_disk_busy(sd))
				abort();
		} else {
			abort();
		}
		/* Nothing stays in flight between commands. */
		blkq_poll(q);
		if (blkq_inflight(q))
			abort();
		for (unsigned i = 0; i < segs; i++)
			free(bufs[i]);
	}
	blkq_free(q);
	scsi_disk_free(sd);
	blk_close(disk);
	return 0;
}
