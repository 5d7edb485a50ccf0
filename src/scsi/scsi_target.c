/* Command results, buffer copies and the answers a SCSI target gives
 * without a logical unit: REPORT LUNS and INQUIRY for an absent LUN. */
#include <errno.h>
#include <string.h>

#include "scsi/scsi_disk.h"
#include "scsi/scsi_internal.h"

static size_t sg_copy(const struct scsi_sg *sg, void *flat, size_t len, bool put)
{
	uint8_t *p = flat;
	size_t done = 0;

	if (len > sg->len)
		len = (size_t)sg->len;
	for (unsigned i = 0; i < sg->niov && done < len; i++) {
		size_t n = sg->iov[i].len;

		if (n > len - done)
			n = len - done;
		if (!n)
			continue;
		if (put)
			memcpy(sg->iov[i].base, p + done, n);
		else
			memcpy(p + done, sg->iov[i].base, n);
		done += n;
	}
	return done;
}

size_t scsi_sg_put(const struct scsi_sg *sg, const void *src, size_t len)
{
	return sg_copy(sg, (void *)src, len, true);
}

size_t scsi_sg_get(const struct scsi_sg *sg, void *dst, size_t len)
{
	return sg_copy(sg, dst, len, false);
}

void scsi_build_sense(uint8_t *sense, uint8_t key, uint16_t asc)
{
	struct scsi_sense_fixed s;

	memset(&s, 0, sizeof(s));
	s.response_code = SCSI_SENSE_CURRENT_FIXED;
	s.key = key & 0xf;
	s.additional_len = SCSI_SENSE_LEN - 8;
	s.asc = (uint8_t)(asc >> 8);
	s.ascq = (uint8_t)asc;
	memcpy(sense, &s, sizeof(s));
}

void scsi_cmd_check(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
	c->status = SCSI_STATUS_CHECK_CONDITION;
	scsi_build_sense(c->sense, key, asc);
	c->sense_len = SCSI_SENSE_LEN;
	c->xfer = 0;
}

void scsi_cmd_good(struct scsi_cmd *c, uint32_t xfer)
{
	c->status = SCSI_STATUS_GOOD;
	c->sense_len = 0;
	c->xfer = xfer;
}

void scsi_cmd_data_in(struct scsi_cmd *c, const void *data, size_t len, size_t alloc)
{
	if (len > alloc)
		len = alloc;
	scsi_cmd_good(c, (uint32_t)scsi_sg_put(&c->buf, data, len));
}

bool scsi_cdb_ok(struct scsi_cmd *c)
{
	unsigned need = scsi_cdb_group_len(c->cdb[0]);

	if (!need || c->cdb_len < need) {
		scsi_cmd_check(c, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return false;
	}
	if (c->cdb[need - 1] & SCSI_CONTROL_NACA) {
		scsi_cmd_check(c, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return false;
	}
	return true;
}

void scsi_report_luns(struct scsi_cmd *c, const uint16_t *luns, unsigned n)
{
	uint8_t data[sizeof(struct scsi_report_luns_header) + 8 * SCSI_REPORT_LUNS_MAX];
	struct scsi_cdb_report_luns cdb;
	uint32_t alloc;

	if (!scsi_cdb_ok(c))
		return;
	memcpy(&cdb, c->cdb, sizeof(cdb));
	alloc = scsi_get_be32(cdb.alloc_len);
	/* SPC: an allocation length below 16 is an error. */
	if (alloc < 16) {
		scsi_cmd_check(c, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	switch (cdb.select_report) {
	case 0x00: /* logical units (no well-known LUs exist) */
	case 0x02: /* all */
		break;
	case 0x01: /* well-known LUs only: none */
		n = 0;
		break;
	default:
		scsi_cmd_check(c, SCSI_SK_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	if (n > SCSI_REPORT_LUNS_MAX)
		n = SCSI_REPORT_LUNS_MAX;
	memset(data, 0, sizeof(data));
	scsi_put_be32(data, n * 8u);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = data + 8 + 8 * i;

		if (luns[i] < 256) {
			e[1] = (uint8_t)luns[i]; /* peripheral device addressing */
		} else {
			e[0] = (uint8_t)(0x40 | ((luns[i] >> 8) & 0x3f)); /* flat space */
			e[1] = (uint8_t)luns[i];
		}
	}
	scsi_cmd_data_in(c, data, 8 + 8 * (size_t)n, alloc);
}

void scsi_fill_std_inquiry(struct scsi_inquiry_std *inq, uint8_t peripheral)
{
	memset(inq, 0, sizeof(*inq));
	inq->peripheral = peripheral;
	inq->version = SCSI_VERSION_SPC3;
	inq->response_format = SCSI_INQ_RESPONSE_FORMAT | SCSI_INQ_HISUP;
	inq->additional_len = sizeof(*inq) - 5;
	inq->flags7 = SCSI_INQ_CMDQUE;
	/* Linux applies its Hyper-V quirks (WRITE SAME, SPC-3) to "Msft". */
	memcpy(inq->vendor, "Msft    ", 8);
	memcpy(inq->product, "Virtual Disk    ", 16);
	memcpy(inq->revision, "1.0 ", 4);
	/* Version descriptors: SAM-4, SPC-3, SBC-3. */
	scsi_put_be16(inq->version_desc[0], 0x0080);
	scsi_put_be16(inq->version_desc[1], 0x0300);
	scsi_put_be16(inq->version_desc[2], 0x04c0);
}

void scsi_inquiry_no_lun(struct scsi_cmd *c)
{
	struct scsi_cdb_inquiry cdb;
	struct scsi_inquiry_std inq;

	if (!scsi_cdb_ok(c))
		return;
	memcpy(&cdb, c->cdb, sizeof(cdb));
	if ((cdb.flags & (SCSI_INQ_EVPD | SCSI_INQ_CMDDT)) || cdb.page) {
		scsi_cmd_check(c, SCSI_SK_ILLEGAL_REQUEST,
			       (cdb.flags & SCSI_INQ_EVPD) ? SCSI_ASC_LU_NOT_SUPPORTED
							   : SCSI_ASC_INVALID_FIELD_IN_CDB);
		return;
	}
	scsi_fill_std_inquiry(&inq, SCSI_TYPE_NO_LUN);
	scsi_cmd_data_in(c, &inq, sizeof(inq), scsi_get_be16(cdb.alloc_len));
}
