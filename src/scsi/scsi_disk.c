/* SCSI disk emulation: CDB decoding, device data (INQUIRY, VPD, mode
 * pages, capacity), unit attentions and the mapping of data commands onto
 * the block queue. See scsi_disk.h. */
#include "scsi/scsi_disk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi_internal.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

struct scsi_disk {
	struct blk_disk *disk;
	struct blkq *q;
	uint16_t lun;
	bool ro;
	bool can_discard;
	uint32_t block;     /* logical block size */
	uint8_t phys_exp;   /* log2(physical / logical) */
	uint64_t blocks;    /* capacity */
	uint32_t max_xfer_blocks;
	uint32_t max_ws_blocks;
	uint8_t id[16];
	char serial[SCSI_SERIAL_MAX + 1];
	unsigned ua;
};

static const uint8_t vpd_pages[] = {
	SCSI_VPD_SUPPORTED_PAGES, SCSI_VPD_UNIT_SERIAL,		SCSI_VPD_DEVICE_ID,
	SCSI_VPD_BLOCK_LIMITS,	  SCSI_VPD_BLOCK_CHARACTERISTICS, SCSI_VPD_LB_PROVISIONING,
};

static void read_geometry(struct scsi_disk *d)
{
	struct blk_info info;

	blk_get_info(d->disk, &info);
	d->blocks = info.size / d->block;
	d->can_discard = info.can_discard;
}

int scsi_disk_new(struct scsi_disk **out, const struct scsi_disk_params *p)
{
	struct blk_info info;
	struct scsi_disk *d;
	uint32_t phys;

	*out = NULL;
	if (!p->disk || !p->q)
		return -EINVAL;
	blk_get_info(p->disk, &info);
	if (info.logical_sector != 512 && info.logical_sector != 4096)
		return -EINVAL;
	if (p->serial) {
		size_t n = strlen(p->serial);

		if (!n || n > SCSI_SERIAL_MAX)
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			if (p->serial[i] < 0x20 || p->serial[i] > 0x7e)
				return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->disk = p->disk;
	d->q = p->q;
	d->lun = p->lun;
	d->block = info.logical_sector;
	d->ro = p->read_only || info.read_only;
	phys = info.physical_sector > d->block ? info.physical_sector : d->block;
	while ((d->block << d->phys_exp) < phys && d->phys_exp < 15)
		d->phys_exp++;
	read_geometry(d);
	d->max_xfer_blocks = p->max_xfer_bytes / d->block;
	if (!d->max_xfer_blocks)
		d->max_xfer_blocks = 1;
	d->max_ws_blocks = SCSI_MAX_WRITE_SAME_BYTES / d->block;
	memcpy(d->id, p->id, sizeof(d->id));
	if (p->serial) {
		strcpy(d->serial, p->serial);
	} else {
		for (unsigned i = 0; i < 16; i++)
			snprintf(d->serial + 2 * i, 3, "%02X", d->id[i]);
	}
	*out = d;
	return 0;
}

void scsi_disk_free(struct scsi_disk *d)
{
	free(d);
}

bool scsi_disk_busy(const struct scsi_disk *d)
{
	return blkq_full(d->q);
}

void scsi_disk_set_ua(struct scsi_disk *d, unsigned ua)
{
	d->ua |= ua;
}

void scsi_disk_clear_ua(struct scsi_disk *d, unsigned ua)
{
	d->ua &= ~ua;
}

unsigned scsi_disk_pending_ua(const struct scsi_disk *d)
{
	return d->ua;
}

bool scsi_disk_refresh(struct scsi_disk *d)
{
	uint64_t old = d->blocks;

	read_geometry(d);
	if (d->blocks == old)
		return false;
	d->ua |= SCSI_UA_CAPACITY_CHANGED;
	return true;
}

uint64_t scsi_disk_blocks(const struct scsi_disk *d)
{
	return d->blocks;
}

uint32_t scsi_disk_block_size(const struct scsi_disk *d)
{
	return d->block;
}

bool scsi_disk_read_only(const struct scsi_disk *d)
{
	return d->ro;
}

static void illegal(struct scsi_cmd *c, uint16_t asc)
{
	scsi_cmd_check(c, SCSI_SK_ILLEGAL_REQUEST, asc);
}

/* The highest-priority pending unit attention, consumed; 0 if none. */
static uint16_t take_ua(struct scsi_disk *d)
{
	if (d->ua & SCSI_UA_CAPACITY_CHANGED) {
		d->ua &= ~SCSI_UA_CAPACITY_CHANGED;
		return SCSI_ASC_CAPACITY_DATA_CHANGED;
	}
	if (d->ua & SCSI_UA_LUNS_CHANGED) {
		d->ua &= ~SCSI_UA_LUNS_CHANGED;
		return SCSI_ASC_REPORTED_LUNS_DATA_CHANGED;
	}
	return 0;
}

/* ---- INQUIRY --------------------------------------------------------------- */

static size_t vpd_device_id(const struct scsi_disk *d, uint8_t *p)
{
	struct scsi_vpd_desig h;
	size_t n = 0;

	/* NAA 6 (IEEE registered extended), Microsoft OUI 00-22-48, then 100
	 * bits of the disk id. */
	memset(&h, 0, sizeof(h));
	h.code_set = SCSI_DESIG_CODESET_BINARY;
	h.type = SCSI_DESIG_ASSOC_LU | SCSI_DESIG_TYPE_NAA;
	h.length = 16;
	memcpy(p + n, &h, sizeof(h));
	n += sizeof(h);
	p[n + 0] = 0x60;
	p[n + 1] = 0x02;
	p[n + 2] = 0x24;
	p[n + 3] = (uint8_t)(0x80 | (d->id[0] & 0x0f));
	memcpy(p + n + 4, d->id + 1, 12);
	n += 16;
	/* T10 vendor id: "Msft    " and the id in hex. */
	h.code_set = SCSI_DESIG_CODESET_ASCII;
	h.type = SCSI_DESIG_ASSOC_LU | SCSI_DESIG_TYPE_T10;
	h.length = 8 + 32;
	memcpy(p + n, &h, sizeof(h));
	n += sizeof(h);
	memcpy(p + n, "Msft    ", 8);
	for (unsigned i = 0; i < 16; i++) {
		static const char hex[] = "0123456789ABCDEF";

		p[n + 8 + 2 * i] = (uint8_t)hex[d->id[i] >> 4];
		p[n + 9 + 2 * i] = (uint8_t)hex[d->id[i] & 15];
	}
	n += 40;
	return n;
}

static void inquiry_vpd(struct scsi_disk *d, struct scsi_cmd *c, uint8_t page, uint16_t alloc)
{
	uint8_t buf[256];
	struct scsi_vpd_header h;
	size_t len = 0;

	memset(buf, 0, sizeof(buf));
	switch (page) {
	case SCSI_VPD_SUPPORTED_PAGES:
		memcpy(buf + 4, vpd_pages, sizeof(vpd_pages));
		len = sizeof(vpd_pages);
		break;
	case SCSI_VPD_UNIT_SERIAL:
		len = strlen(d->serial);
		memcpy(buf + 4, d->serial, len);
		break;
	case SCSI_VPD_DEVICE_ID:
		len = vpd_device_id(d, buf + 4);
		break;
	case SCSI_VPD_BLOCK_LIMITS: {
		struct scsi_vpd_block_limits bl;
		uint32_t gran = 1u << d->phys_exp;

		memset(&bl, 0, sizeof(bl));
		bl.flags4 = SCSI_BL_WSNZ;
		scsi_put_be16(bl.opt_xfer_granularity, (uint16_t)gran);
		scsi_put_be32(bl.max_xfer_len, d->max_xfer_blocks);
		if (d->can_discard && !d->ro) {
			scsi_put_be32(bl.max_unmap_lba_count, 0xffffffffu);
			scsi_put_be32(bl.max_unmap_desc_count, SCSI_MAX_UNMAP_DESCRIPTORS);
			scsi_put_be32(bl.opt_unmap_granularity, gran);
			scsi_put_be32(bl.unmap_alignment, SCSI_BL_UGAVALID);
		}
		scsi_put_be64(bl.max_write_same_len, d->max_ws_blocks);
		memcpy(buf, &bl, sizeof(bl));
		len = sizeof(bl) - 4;
		break;
	}
	case SCSI_VPD_BLOCK_CHARACTERISTICS: {
		struct scsi_vpd_block_char bc;

		memset(&bc, 0, sizeof(bc));
		scsi_put_be16(bc.rotation_rate, SCSI_ROTATION_NONE);
		memcpy(buf, &bc, sizeof(bc));
		len = sizeof(bc) - 4;
		break;
	}
	case SCSI_VPD_LB_PROVISIONING: {
		struct scsi_vpd_lbp lbp;

		memset(&lbp, 0, sizeof(lbp));
		if (d->can_discard && !d->ro) {
			lbp.flags5 = SCSI_LBP_LBPU | SCSI_LBP_LBPWS | SCSI_LBP_LBPWS10 | SCSI_LBP_LBPRZ;
			lbp.prov_type = SCSI_PROV_THIN;
		}
		memcpy(buf, &lbp, sizeof(lbp));
		len = sizeof(lbp) - 4;
		break;
	}
	default:
		/* Linux turns INQUIRY errors into success: 0 bytes means "no
		 * such page". */
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	h.peripheral = SCSI_TYPE_DISK;
	h.page = page;
	scsi_put_be16(h.page_len, (uint16_t)len);
	memcpy(buf, &h, sizeof(h));
	scsi_cmd_data_in(c, buf, len + 4, alloc);
}

static void cmd_inquiry(struct scsi_disk *d, struct scsi_cmd *c)
{
	struct scsi_cdb_inquiry cdb;
	struct scsi_inquiry_std inq;
	uint16_t alloc;

	memcpy(&cdb, c->cdb, sizeof(cdb));
	alloc = scsi_get_be16(cdb.alloc_len);
	if (cdb.flags & SCSI_INQ_CMDDT) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	if (cdb.flags & SCSI_INQ_EVPD) {
		inquiry_vpd(d, c, cdb.page, alloc);
		return;
	}
	if (cdb.page) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	scsi_fill_std_inquiry(&inq, SCSI_TYPE_DISK);
	scsi_cmd_data_in(c, &inq, sizeof(inq), alloc);
}

/* ---- capacity ------------------------------------------------------------------ */

static void cmd_read_capacity10(struct scsi_disk *d, struct scsi_cmd *c)
{
	struct scsi_cdb_read_capacity10 cdb;
	struct scsi_read_capacity10_data rc;
	uint64_t last = d->blocks ? d->blocks - 1 : 0;

	memcpy(&cdb, c->cdb, sizeof(cdb));
	if (!(cdb.pmi & 1) && scsi_get_be32(cdb.lba)) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	/* 0xffffffff tells the initiator to use READ CAPACITY(16). */
	scsi_put_be32(rc.last_lba, last > 0xffffffffu ? 0xffffffffu : (uint32_t)last);
	scsi_put_be32(rc.block_len, d->block);
	scsi_cmd_data_in(c, &rc, sizeof(rc), sizeof(rc));
}

static void cmd_read_capacity16(struct scsi_disk *d, struct scsi_cmd *c)
{
	struct scsi_cdb_service_action_in16 cdb;
	struct scsi_read_capacity16_data rc;

	memcpy(&cdb, c->cdb, sizeof(cdb));
	if (!(cdb.pmi & 1) && scsi_get_be64(cdb.lba)) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	memset(&rc, 0, sizeof(rc));
	scsi_put_be64(rc.last_lba, d->blocks ? d->blocks - 1 : 0);
	scsi_put_be32(rc.block_len, d->block);
	rc.exponents = d->phys_exp & 0xf;
	if (d->can_discard && !d->ro)
		rc.lowest_aligned[0] = SCSI_RC16_LBPME | SCSI_RC16_LBPRZ;
	scsi_cmd_data_in(c, &rc, sizeof(rc), scsi_get_be32(cdb.alloc_len));
}

/* ---- MODE SENSE ------------------------------------------------------------------ */

/* Append the mode pages asked for; returns the length, or -1 if the page
 * or subpage is not supported. */
static int mode_pages(uint8_t page, uint8_t subpage, uint8_t pc, uint8_t *out)
{
	bool all = page == SCSI_MODE_PAGE_ALL;
	int len = 0;

	if (all ? (subpage != 0 && subpage != SCSI_MODE_SUBPAGE_ALL) : subpage != 0)
		return -1;
	if (!all && page != SCSI_MODE_PAGE_CACHING && page != SCSI_MODE_PAGE_CONTROL)
		return -1;
	if (all || page == SCSI_MODE_PAGE_CACHING) {
		struct scsi_mode_caching m;

		memset(&m, 0, sizeof(m));
		m.page_code = SCSI_MODE_PAGE_CACHING;
		m.page_len = sizeof(m) - 2;
		/* Nothing is changeable (no MODE SELECT). */
		if (pc != SCSI_MS_PC_CHANGEABLE)
			m.flags2 = SCSI_CACHING_WCE;
		memcpy(out + len, &m, sizeof(m));
		len += (int)sizeof(m);
	}
	if (all || page == SCSI_MODE_PAGE_CONTROL) {
		struct scsi_mode_control m;

		memset(&m, 0, sizeof(m));
		m.page_code = SCSI_MODE_PAGE_CONTROL;
		m.page_len = sizeof(m) - 2;
		if (pc != SCSI_MS_PC_CHANGEABLE) {
			m.flags3 = SCSI_CONTROL_QAM_UNRESTRICTED;
			scsi_put_be16(m.busy_timeout, 0xffff);
		}
		memcpy(out + len, &m, sizeof(m));
		len += (int)sizeof(m);
	}
	return len;
}

static void cmd_mode_sense(struct scsi_disk *d, struct scsi_cmd *c, bool ten)
{
	uint8_t buf[8 + 16 + 64];
	uint8_t flags = c->cdb[1], page = c->cdb[2] & 0x3f, pc = c->cdb[2] >> 6;
	uint8_t subpage = c->cdb[3];
	uint8_t devspec = SCSI_MODE_DPOFUA | (d->ro ? SCSI_MODE_WP : 0);
	bool dbd = flags & SCSI_MS_DBD, longlba = ten && (flags & SCSI_MS_LLBAA);
	size_t hlen = ten ? sizeof(struct scsi_mode_header10) : sizeof(struct scsi_mode_header6);
	size_t blen = dbd ? 0 : longlba ? sizeof(struct scsi_mode_block_desc_long)
					: sizeof(struct scsi_mode_block_desc);
	uint32_t alloc = ten ? scsi_get_be16(c->cdb + 7) : c->cdb[4];
	size_t total;
	int plen;

	if (pc == SCSI_MS_PC_SAVED) {
		illegal(c, SCSI_ASC_SAVING_PARAMS_NOT_SUPPORTED);
		return;
	}
	memset(buf, 0, sizeof(buf));
	plen = mode_pages(page, subpage, pc, buf + hlen + blen);
	if (plen < 0) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	if (blen == sizeof(struct scsi_mode_block_desc)) {
		struct scsi_mode_block_desc bd;

		memset(&bd, 0, sizeof(bd));
		scsi_put_be32(bd.nr_blocks, d->blocks > 0xffffffffu ? 0xffffffffu : (uint32_t)d->blocks);
		bd.block_len[0] = (uint8_t)(d->block >> 16);
		bd.block_len[1] = (uint8_t)(d->block >> 8);
		bd.block_len[2] = (uint8_t)d->block;
		memcpy(buf + hlen, &bd, sizeof(bd));
	} else if (blen) {
		struct scsi_mode_block_desc_long bd;

		memset(&bd, 0, sizeof(bd));
		scsi_put_be64(bd.nr_blocks, d->blocks);
		scsi_put_be32(bd.block_len, d->block);
		memcpy(buf + hlen, &bd, sizeof(bd));
	}
	total = hlen + blen + (size_t)plen;
	if (ten) {
		struct scsi_mode_header10 h;

		memset(&h, 0, sizeof(h));
		scsi_put_be16(h.data_len, (uint16_t)(total - 2));
		h.dev_specific = devspec;
		h.flags = longlba && blen ? SCSI_MODE_LONGLBA : 0;
		scsi_put_be16(h.block_desc_len, (uint16_t)blen);
		memcpy(buf, &h, sizeof(h));
	} else {
		struct scsi_mode_header6 h;

		memset(&h, 0, sizeof(h));
		h.data_len = (uint8_t)(total - 1);
		h.dev_specific = devspec;
		h.block_desc_len = (uint8_t)blen;
		memcpy(buf, &h, sizeof(h));
	}
	scsi_cmd_data_in(c, buf, total, alloc);
}

/* ---- REQUEST SENSE ------------------------------------------------------------- */

static void cmd_request_sense(struct scsi_disk *d, struct scsi_cmd *c)
{
	struct scsi_cdb_request_sense cdb;
	uint8_t sense[SCSI_SENSE_LEN];
	uint16_t ua;

	memcpy(&cdb, c->cdb, sizeof(cdb));
	if (cdb.flags & 1) { /* DESC: descriptor format is not supported */
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	ua = take_ua(d);
	scsi_build_sense(sense, ua ? SCSI_SK_UNIT_ATTENTION : SCSI_SK_NO_SENSE,
			 ua ? ua : SCSI_ASC_NO_ADDITIONAL_SENSE);
	scsi_cmd_data_in(c, sense, sizeof(sense), cdb.alloc_len);
}

/* ---- data commands ----------------------------------------------------------------- */

static uint16_t io_error_asc(const struct scsi_cmd *c, int err, uint8_t *key)
{
	uint8_t op = c->cdb[0];
	bool read = op == SCSI_READ_6 || op == SCSI_READ_10 || op == SCSI_READ_12 ||
		    op == SCSI_READ_16;

	*key = SCSI_SK_MEDIUM_ERROR;
	if (read)
		return SCSI_ASC_UNRECOVERED_READ_ERROR;
	if (err == -ENOSPC || err == -EDQUOT) {
		*key = SCSI_SK_DATA_PROTECT;
		return SCSI_ASC_SPACE_ALLOC_FAILED_WRITE_PROTECT;
	}
	if (err == -EROFS || err == -EPERM || err == -EACCES) {
		*key = SCSI_SK_DATA_PROTECT;
		return SCSI_ASC_WRITE_PROTECTED;
	}
	if (err == -EINVAL || err == -ENOMEM) {
		*key = SCSI_SK_HARDWARE_ERROR;
		return SCSI_ASC_INTERNAL_TARGET_FAILURE;
	}
	return SCSI_ASC_WRITE_ERROR;
}

static int submit_range(struct scsi_cmd *c);

static void io_done(struct blkq_req *r)
{
	struct scsi_cmd *c = container_of(r, struct scsi_cmd, io);
	int err = r->result;

	if (c->cdb[0] == SCSI_UNMAP) {
		/* Deallocation is advisory: a format without it just keeps
		 * the data. */
		if (err == -EOPNOTSUPP)
			err = 0;
		if (!err && ++c->cur_range < c->nr_ranges) {
			err = submit_range(c);
			if (!err)
				return; /* next descriptor queued */
		}
	}
	free(c->pattern);
	c->pattern = NULL;
	if (err) {
		uint8_t key;
		uint16_t asc = io_error_asc(c, err, &key);

		scsi_cmd_check(c, key, asc);
	} else {
		scsi_cmd_good(c, c->io_bytes);
	}
	c->done(c);
}

static int submit(struct scsi_disk *d, struct scsi_cmd *c)
{
	int ret;

	c->io.done = io_done;
	c->io.priv = c;
	ret = blkq_submit(d->q, &c->io);
	if (ret == -EAGAIN)
		return -EAGAIN;
	if (ret) {
		free(c->pattern);
		c->pattern = NULL;
		scsi_cmd_check(c, SCSI_SK_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
		return SCSI_DONE;
	}
	return SCSI_QUEUED;
}

static int submit_range(struct scsi_cmd *c)
{
	struct scsi_disk *d = c->disk;
	const struct scsi_unmap_range *rg = &c->ranges[c->cur_range];

	memset(&c->io, 0, sizeof(c->io));
	c->io.op = BLKQ_OP_DISCARD;
	c->io.off = rg->lba * d->block;
	c->io.len = (uint64_t)rg->count * d->block;
	c->io.done = io_done;
	c->io.priv = c;
	return blkq_submit(d->q, &c->io);
}

/* Range check shared by the data commands. */
static bool lba_ok(const struct scsi_disk *d, struct scsi_cmd *c, uint64_t lba, uint64_t n)
{
	if (lba > d->blocks || n > d->blocks - lba) {
		illegal(c, SCSI_ASC_LBA_OUT_OF_RANGE);
		return false;
	}
	return true;
}

static bool writable(const struct scsi_disk *d, struct scsi_cmd *c)
{
	if (d->ro) {
		scsi_cmd_check(c, SCSI_SK_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
		return false;
	}
	return true;
}

static int cmd_rw(struct scsi_disk *d, struct scsi_cmd *c)
{
	uint8_t op = c->cdb[0];
	bool write = op == SCSI_WRITE_6 || op == SCSI_WRITE_10 || op == SCSI_WRITE_12 ||
		     op == SCSI_WRITE_16;
	uint8_t flags = 0;
	uint64_t lba, bytes;
	uint32_t n;

	switch (op) {
	case SCSI_READ_6:
	case SCSI_WRITE_6:
		lba = scsi_get_be24(c->cdb + 1) & 0x1fffff;
		n = c->cdb[4] ? c->cdb[4] : 256;
		break;
	case SCSI_READ_10:
	case SCSI_WRITE_10:
		flags = c->cdb[1];
		lba = scsi_get_be32(c->cdb + 2);
		n = scsi_get_be16(c->cdb + 7);
		break;
	case SCSI_READ_12:
	case SCSI_WRITE_12:
		flags = c->cdb[1];
		lba = scsi_get_be32(c->cdb + 2);
		n = scsi_get_be32(c->cdb + 6);
		break;
	default: /* 16 */
		flags = c->cdb[1];
		lba = scsi_get_be64(c->cdb + 2);
		n = scsi_get_be32(c->cdb + 10);
		break;
	}
	/* No protection information: RDPROTECT/WRPROTECT must be 0. */
	if (flags & SCSI_RW_PROTECT_MASK) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	if (write && !writable(d, c))
		return SCSI_DONE;
	if (!lba_ok(d, c, lba, n))
		return SCSI_DONE;
	if (!n) {
		scsi_cmd_good(c, 0);
		return SCSI_DONE;
	}
	bytes = (uint64_t)n * d->block;
	/* The buffer must hold the whole transfer. */
	if (bytes > c->buf.len) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	memset(&c->io, 0, sizeof(c->io));
	c->io.op = write ? BLKQ_OP_WRITE : BLKQ_OP_READ;
	c->io.flags = write && (flags & SCSI_RW_FUA) ? BLK_FUA : 0;
	c->io.off = lba * d->block;
	c->io.len = bytes;
	c->io.iov = c->buf.iov;
	c->io.niov = c->buf.niov;
	c->io_bytes = (uint32_t)bytes;
	return submit(d, c);
}

static int cmd_sync_cache(struct scsi_disk *d, struct scsi_cmd *c)
{
	uint64_t lba, n;

	if (c->cdb[0] == SCSI_SYNCHRONIZE_CACHE_10) {
		lba = scsi_get_be32(c->cdb + 2);
		n = scsi_get_be16(c->cdb + 7);
	} else {
		lba = scsi_get_be64(c->cdb + 2);
		n = scsi_get_be32(c->cdb + 10);
	}
	/* 0 blocks = "to the end of the medium". */
	if (!lba_ok(d, c, lba, n))
		return SCSI_DONE;
	if (d->ro) { /* nothing can be dirty */
		scsi_cmd_good(c, 0);
		return SCSI_DONE;
	}
	memset(&c->io, 0, sizeof(c->io));
	c->io.op = BLKQ_OP_FLUSH;
	c->io_bytes = 0;
	return submit(d, c);
}

static int cmd_verify(struct scsi_disk *d, struct scsi_cmd *c)
{
	uint64_t lba, n;

	if (c->cdb[0] == SCSI_VERIFY_10) {
		lba = scsi_get_be32(c->cdb + 2);
		n = scsi_get_be16(c->cdb + 7);
	} else if (c->cdb[0] == SCSI_VERIFY_12) {
		lba = scsi_get_be32(c->cdb + 2);
		n = scsi_get_be32(c->cdb + 6);
	} else {
		lba = scsi_get_be64(c->cdb + 2);
		n = scsi_get_be32(c->cdb + 10);
	}
	if (c->cdb[1] & SCSI_RW_PROTECT_MASK) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	if (lba_ok(d, c, lba, n))
		scsi_cmd_good(c, 0); /* the medium cannot have errors to find */
	return SCSI_DONE;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static int cmd_write_same(struct scsi_disk *d, struct scsi_cmd *c)
{
	bool sixteen = c->cdb[0] == SCSI_WRITE_SAME_16;
	uint8_t flags = c->cdb[1];
	uint64_t lba = sixteen ? scsi_get_be64(c->cdb + 2) : scsi_get_be32(c->cdb + 2);
	uint32_t n = sixteen ? scsi_get_be32(c->cdb + 10) : scsi_get_be16(c->cdb + 7);
	bool unmap = flags & SCSI_WS_UNMAP;

	/* No protection information, anchoring or "no data-out buffer". */
	if ((flags & (SCSI_RW_PROTECT_MASK | SCSI_WS_ANCHOR)) ||
	    (sixteen && (flags & SCSI_WS_NDOB))) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	if (!writable(d, c))
		return SCSI_DONE;
	/* WSNZ: 0 blocks is not allowed; nor is more than we advertise. */
	if (!n || n > d->max_ws_blocks) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	if (!lba_ok(d, c, lba, n))
		return SCSI_DONE;
	if (c->buf.len < d->block) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	if (blkq_full(d->q))
		return -EAGAIN;
	c->pattern = malloc(d->block);
	if (!c->pattern) {
		scsi_cmd_check(c, SCSI_SK_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
		return SCSI_DONE;
	}
	scsi_sg_get(&c->buf, c->pattern, d->block);
	memset(&c->io, 0, sizeof(c->io));
	c->io.op = BLKQ_OP_WRITE_SAME;
	/* Deallocate only where that reads back as the pattern (LBPRZ). */
	if (unmap && d->can_discard && all_zero(c->pattern, d->block))
		c->io.flags = BLKQ_UNMAP;
	c->io.off = lba * d->block;
	c->io.len = (uint64_t)n * d->block;
	c->io_iov.base = c->pattern;
	c->io_iov.len = d->block;
	c->io.iov = &c->io_iov;
	c->io.niov = 1;
	c->io_bytes = 0;
	return submit(d, c);
}

static int cmd_unmap(struct scsi_disk *d, struct scsi_cmd *c)
{
	uint8_t list[sizeof(struct scsi_unmap_header) +
		     SCSI_MAX_UNMAP_DESCRIPTORS * sizeof(struct scsi_unmap_desc)];
	struct scsi_unmap_header h;
	uint16_t plen = scsi_get_be16(c->cdb + 7);
	size_t got, ndesc;
	uint16_t bdl;

	if (c->cdb[1] & 0x01) { /* ANCHOR */
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	if (!writable(d, c))
		return SCSI_DONE;
	if (!plen) {
		scsi_cmd_good(c, 0);
		return SCSI_DONE;
	}
	if (plen < sizeof(h) || c->buf.len < sizeof(h)) {
		illegal(c, SCSI_ASC_PARAMETER_LIST_LENGTH_ERROR);
		return SCSI_DONE;
	}
	got = scsi_sg_get(&c->buf, list, plen < sizeof(list) ? plen : sizeof(list));
	memcpy(&h, list, sizeof(h));
	bdl = scsi_get_be16(h.block_desc_len);
	ndesc = bdl / sizeof(struct scsi_unmap_desc); /* a partial descriptor is ignored */
	if (ndesc > SCSI_MAX_UNMAP_DESCRIPTORS) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_PARAM_LIST);
		return SCSI_DONE;
	}
	if (sizeof(h) + ndesc * sizeof(struct scsi_unmap_desc) > got) {
		illegal(c, SCSI_ASC_PARAMETER_LIST_LENGTH_ERROR);
		return SCSI_DONE;
	}
	c->nr_ranges = 0;
	for (size_t i = 0; i < ndesc; i++) {
		struct scsi_unmap_desc ud;
		uint64_t lba;
		uint32_t n;

		memcpy(&ud, list + sizeof(h) + i * sizeof(ud), sizeof(ud));
		lba = scsi_get_be64(ud.lba);
		n = scsi_get_be32(ud.count);
		if (!lba_ok(d, c, lba, n))
			return SCSI_DONE;
		if (n)
			c->ranges[c->nr_ranges++] = (struct scsi_unmap_range){ lba, n };
	}
	if (!c->nr_ranges || !d->can_discard) {
		scsi_cmd_good(c, 0);
		return SCSI_DONE;
	}
	c->cur_range = 0;
	c->io_bytes = 0;
	switch (submit_range(c)) {
	case 0:
		return SCSI_QUEUED;
	case -EAGAIN:
		return -EAGAIN;
	default:
		scsi_cmd_check(c, SCSI_SK_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
		return SCSI_DONE;
	}
}

/* ---- dispatch ---------------------------------------------------------------------- */

static bool needs_queue(uint8_t op)
{
	switch (op) {
	case SCSI_READ_6:
	case SCSI_READ_10:
	case SCSI_READ_12:
	case SCSI_READ_16:
	case SCSI_WRITE_6:
	case SCSI_WRITE_10:
	case SCSI_WRITE_12:
	case SCSI_WRITE_16:
	case SCSI_SYNCHRONIZE_CACHE_10:
	case SCSI_SYNCHRONIZE_CACHE_16:
	case SCSI_WRITE_SAME_10:
	case SCSI_WRITE_SAME_16:
	case SCSI_UNMAP:
		return true;
	default:
		return false;
	}
}

int scsi_disk_exec(struct scsi_disk *d, struct scsi_cmd *c)
{
	uint8_t op = c->cdb[0];
	uint16_t ua;

	c->disk = d;
	c->status = SCSI_STATUS_GOOD;
	c->sense_len = 0;
	c->xfer = 0;
	c->pattern = NULL;
	if (c->cdb_len == 0 || c->cdb_len > 16) {
		illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	}
	/* Before anything with side effects: a full queue refuses. */
	if (needs_queue(op) && blkq_full(d->q) && !d->ua)
		return -EAGAIN;
	/* A pending unit attention fails the next command, except the three
	 * that SPC exempts (REQUEST SENSE returns it as its data). */
	if (op != SCSI_INQUIRY && op != SCSI_REPORT_LUNS && op != SCSI_REQUEST_SENSE) {
		ua = take_ua(d);
		if (ua) {
			scsi_cmd_check(c, SCSI_SK_UNIT_ATTENTION, ua);
			return SCSI_DONE;
		}
	}
	if (!scsi_cdb_group_len(op)) {
		illegal(c, SCSI_ASC_INVALID_COMMAND_OPCODE);
		return SCSI_DONE;
	}
	if (!scsi_cdb_ok(c))
		return SCSI_DONE;
	switch (op) {
	case SCSI_TEST_UNIT_READY:
	case SCSI_START_STOP_UNIT:
	case SCSI_PREVENT_ALLOW_MEDIUM_REMOVAL:
	case SCSI_RESERVE_6:
	case SCSI_RELEASE_6:
	case SCSI_RESERVE_10:
	case SCSI_RELEASE_10:
		scsi_cmd_good(c, 0);
		return SCSI_DONE;
	case SCSI_REQUEST_SENSE:
		cmd_request_sense(d, c);
		return SCSI_DONE;
	case SCSI_INQUIRY:
		cmd_inquiry(d, c);
		return SCSI_DONE;
	case SCSI_REPORT_LUNS:
		scsi_report_luns(c, &d->lun, 1);
		if (c->status == SCSI_STATUS_GOOD)
			d->ua &= ~SCSI_UA_LUNS_CHANGED;
		return SCSI_DONE;
	case SCSI_READ_CAPACITY_10:
		cmd_read_capacity10(d, c);
		return SCSI_DONE;
	case SCSI_SERVICE_ACTION_IN_16:
		if ((c->cdb[1] & 0x1f) == SCSI_SAI_READ_CAPACITY_16)
			cmd_read_capacity16(d, c);
		else
			illegal(c, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return SCSI_DONE;
	case SCSI_MODE_SENSE_6:
		cmd_mode_sense(d, c, false);
		return SCSI_DONE;
	case SCSI_MODE_SENSE_10:
		cmd_mode_sense(d, c, true);
		return SCSI_DONE;
	case SCSI_READ_6:
	case SCSI_READ_10:
	case SCSI_READ_12:
	case SCSI_READ_16:
	case SCSI_WRITE_6:
	case SCSI_WRITE_10:
	case SCSI_WRITE_12:
	case SCSI_WRITE_16:
		return cmd_rw(d, c);
	case SCSI_SYNCHRONIZE_CACHE_10:
	case SCSI_SYNCHRONIZE_CACHE_16:
		return cmd_sync_cache(d, c);
	case SCSI_VERIFY_10:
	case SCSI_VERIFY_12:
	case SCSI_VERIFY_16:
		return cmd_verify(d, c);
	case SCSI_WRITE_SAME_10:
	case SCSI_WRITE_SAME_16:
		return cmd_write_same(d, c);
	case SCSI_UNMAP:
		return cmd_unmap(d, c);
	default:
		illegal(c, SCSI_ASC_INVALID_COMMAND_OPCODE);
		return SCSI_DONE;
	}
}
