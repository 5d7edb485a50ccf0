/* Storage VSP: VMBus SCSI controllers, the VSTOR init state machine,
 * EXECUTE_SRB over GPA-direct packets, completions, back-pressure, hot
 * plug and resize. See storvsp.h. */
#include "storvsp/storvsp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/queue.h"
#include "core/guest_mem.h"
#include "core/loop.h"
#include "scsi/scsi_disk.h"
#include "storvsp/storvsp_proto.h"
#include "util/log.h"
#include "vmbus/server.h"

#define SV_MAX_CHANNELS (1u + VMBUS_MAX_SUBCHANNELS)
#define SV_MAX_RANGES 16u         /* GPA ranges per packet (Linux sends 1) */
#define SV_MAX_OUTSTANDING 1024u  /* queued commands per channel */
#define SV_BUDGET 256u            /* packets per run before yielding to the loop */
#define SV_FREE_CACHE 256u        /* request structs kept for reuse */
#define SV_PAGE 4096u

enum ctrl_state {
	ST_IDLE,      /* channel closed or BEGIN_INITIALIZATION not seen */
	ST_BEGUN,     /* BEGIN_INITIALIZATION */
	ST_VERSIONED, /* a protocol version was accepted */
	ST_PROPS,     /* QUERY_PROPERTIES answered */
	ST_READY,     /* END_INITIALIZATION: SRBs flow */
};

struct sv_req;

struct sv_chan {
	struct sv_ctrl *ctrl;
	struct vmbus_channel *ch;
	unsigned idx;
	uint32_t gen;        /* bumped on open and close: stale completions are dropped */
	bool open;
	bool stalled;        /* stopped pulling: queue full, request limit or no memory */
	unsigned outstanding; /* commands in a disk queue */
	struct sv_req *backlog_head, *backlog_tail; /* completions waiting for ring space */
};

struct sv_lun {
	struct sv_ctrl *ctrl;
	unsigned lun;
	struct blk_disk *disk;
	struct blkq *q;
	struct scsi_disk *sd;
	char *label;
	bool ro;
	bool removed;
	unsigned inflight;
};

struct sv_ctrl {
	struct storvsp *sv; /* NULL once the VSP is freed (orphaned) */
	unsigned index;
	guid_t instance;
	struct vmbus_device *dev; /* NULL once the server released it */
	enum ctrl_state state;
	uint16_t version;
	bool enum_pending;
	struct sv_chan chans[SV_MAX_CHANNELS];
	struct sv_lun *luns[STORVSP_MAX_LUNS];
};

struct sv_req {
	struct sv_req *next;
	struct sv_chan *chan;
	struct sv_lun *lun; /* while queued in the disk */
	uint32_t gen;
	uint64_t trans_id;
	bool want_completion;
	uint32_t reply_len;
	struct vstor_packet pkt; /* the request, turned into the completion */
	struct scsi_cmd cmd;
	unsigned niov;
	struct blkq_iov iov[];
};

struct storvsp {
	struct vmbus_server *srv;
	struct loop *loop;
	struct storvsp_config cfg;
	unsigned max_segs;
	struct sv_ctrl *ctrls[STORVSP_MAX_CONTROLLERS];
	struct sv_req *free_reqs;
	unsigned nr_free;
	int kick_fd;
	struct loop_source kick_src;
	bool kick_added;
	bool kick_pending;
	bool any_stalled;
	bool stopping;
};

static const uint16_t versions[] = {
	VSTOR_VERSION_WIN10, VSTOR_VERSION_WIN8_1, VSTOR_VERSION_WIN8,
	VSTOR_VERSION_WIN7,  VSTOR_VERSION_WIN6,
};

void storvsp_default_config(struct storvsp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->nr_vcpus = 1;
	cfg->max_transfer_bytes = STORVSP_DEFAULT_MAX_TRANSFER;
	cfg->io_threads = BLKQ_DEFAULT_THREADS;
	cfg->queue_depth = BLKQ_DEFAULT_DEPTH;
	cfg->write_behind = BLKQ_DEFAULT_WRITE_BEHIND;
	cfg->max_version = VSTOR_VERSION_WIN10;
}

/* ---- small helpers ------------------------------------------------------------ */

static bool version_ok(const struct storvsp *sv, uint16_t v)
{
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		if (versions[i] == v)
			return v <= sv->cfg.max_version;
	return false;
}

static bool version_known(uint16_t v)
{
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		if (versions[i] == v)
			return true;
	return false;
}

/* Bytes of a packet the host sends at the negotiated version. */
static uint32_t reply_len(const struct sv_ctrl *ctrl)
{
	return ctrl->version && ctrl->version < VSTOR_VERSION_WIN8 ? VSTOR_PACKET_SIZE_WIN7
								   : VSTOR_PACKET_SIZE;
}

static uint8_t sense_max(const struct sv_ctrl *ctrl)
{
	return ctrl->version && ctrl->version < VSTOR_VERSION_WIN8 ? VMSCSI_SENSE_MAX_WIN7
								   : VMSCSI_SENSE_MAX;
}

static void schedule_kick(struct storvsp *sv)
{
	uint64_t one = 1;

	if (sv->kick_pending)
		return;
	sv->kick_pending = true;
	if (write(sv->kick_fd, &one, sizeof(one)) < 0)
		log_ratelimited(LOG_ERR, "storvsp: eventfd write: %s", strerror(errno));
}

static struct sv_req *req_alloc(struct storvsp *sv)
{
	struct sv_req *r = sv->free_reqs;

	if (r) {
		sv->free_reqs = r->next;
		sv->nr_free--;
	} else {
		r = malloc(sizeof(*r) + sv->max_segs * sizeof(struct blkq_iov));
		if (!r)
			return NULL;
	}
	memset(r, 0, sizeof(*r));
	return r;
}

static void req_free(struct storvsp *sv, struct sv_req *r)
{
	if (sv && sv->nr_free < SV_FREE_CACHE) {
		r->next = sv->free_reqs;
		sv->free_reqs = r;
		sv->nr_free++;
	} else {
		free(r);
	}
}

/* ---- sending ---------------------------------------------------------------------- */

/* Send completions held back by a full guest ring; true when none is left. */
static bool flush_backlog(struct sv_chan *c)
{
	struct storvsp *sv = c->ctrl->sv;

	while (c->backlog_head) {
		struct sv_req *r = c->backlog_head;
		int ret = vmbus_chan_send_completion(c->ch, r->trans_id, &r->pkt, r->reply_len);

		if (ret == -EAGAIN)
			return false;
		c->backlog_head = r->next;
		if (!c->backlog_head)
			c->backlog_tail = NULL;
		req_free(sv, r);
	}
	return true;
}

static void drop_backlog(struct sv_chan *c)
{
	while (c->backlog_head) {
		struct sv_req *r = c->backlog_head;

		c->backlog_head = r->next;
		req_free(c->ctrl->sv, r);
	}
	c->backlog_tail = NULL;
}

/* The request is finished: send its completion (or keep it until the guest
 * makes room) and release it. */
static void req_complete(struct sv_req *r)
{
	struct sv_chan *c = r->chan;
	struct storvsp *sv = c->ctrl->sv;
	int ret;

	if (!r->want_completion || r->gen != c->gen || !c->open) {
		req_free(sv, r);
		return;
	}
	r->pkt.operation = VSTOR_OP_COMPLETE_IO;
	r->pkt.flags = 0;
	if (!c->backlog_head) {
		ret = vmbus_chan_send_completion(c->ch, r->trans_id, &r->pkt, r->reply_len);
		if (ret != -EAGAIN) {
			req_free(sv, r);
			return;
		}
	}
	r->next = NULL;
	if (c->backlog_tail)
		c->backlog_tail->next = r;
	else
		c->backlog_head = r;
	c->backlog_tail = r;
}

/* ENUMERATE_BUS (unsolicited, id 0): Linux rescans the controller. */
static void send_enum(struct sv_ctrl *ctrl)
{
	struct sv_chan *c = &ctrl->chans[0];
	struct vstor_packet p;
	int ret;

	if (!ctrl->enum_pending)
		return;
	if (!c->open || ctrl->state != ST_READY) {
		ctrl->enum_pending = false; /* the guest scans when it initializes */
		return;
	}
	memset(&p, 0, sizeof(p));
	p.operation = VSTOR_OP_ENUMERATE_BUS;
	ret = vmbus_chan_send_inband(c->ch, 0, &p, reply_len(ctrl), false);
	if (ret != -EAGAIN)
		ctrl->enum_pending = false;
}

static void request_rescan(struct sv_ctrl *ctrl)
{
	ctrl->enum_pending = true;
	send_enum(ctrl);
}

/* ---- SRB results ------------------------------------------------------------------------ */

static uint32_t ntstatus_for(uint8_t srb)
{
	switch (srb & 0x3f) {
	case SRB_STATUS_SUCCESS:
	case SRB_STATUS_ERROR: /* a SCSI status with sense: the transport worked */
		return VSTOR_STATUS_SUCCESS;
	case SRB_STATUS_INVALID_LUN:
	case SRB_STATUS_NO_DEVICE:
		return VSTOR_STATUS_DEVICE_DOES_NOT_EXIST;
	case SRB_STATUS_INVALID_REQUEST:
		return VSTOR_STATUS_INVALID_PARAMETER;
	default:
		return VSTOR_STATUS_IO_DEVICE_ERROR;
	}
}

/* Fill the completion from a transport-level result (no SCSI status). */
static void srb_set_status(struct sv_req *r, uint8_t srb_status, uint8_t scsi_status)
{
	struct vmscsi_request *s = &r->pkt.srb;

	s->srb_status = srb_status;
	s->scsi_status = scsi_status;
	s->sense_info_length = 0;
	s->data_transfer_length = 0;
	memset(s->sense_data, 0, sizeof(s->sense_data));
	r->pkt.status = ntstatus_for(srb_status);
}

/* Fill the completion from the SCSI command's result. */
static void srb_set_scsi(struct sv_req *r)
{
	struct vmscsi_request *s = &r->pkt.srb;
	const struct scsi_cmd *c = &r->cmd;
	uint8_t room = s->sense_info_length;
	uint8_t max = sense_max(r->chan->ctrl);

	memset(s->sense_data, 0, sizeof(s->sense_data));
	s->scsi_status = c->status;
	if (c->status == SCSI_STATUS_GOOD) {
		s->srb_status = SRB_STATUS_SUCCESS;
		s->data_transfer_length = c->xfer;
		s->sense_info_length = 0;
	} else {
		uint8_t n = c->sense_len;

		if (n > room)
			n = room;
		if (n > max)
			n = max;
		memcpy(s->sense_data, c->sense, n);
		s->sense_info_length = n;
		s->srb_status = SRB_STATUS_ERROR | (n ? SRB_STATUS_AUTOSENSE_VALID : 0);
		s->data_transfer_length = 0;
	}
	r->pkt.status = ntstatus_for(s->srb_status);
}

/* ---- command completion from the disk queue ---------------------------------------------- */

static void cmd_done(struct scsi_cmd *cmd)
{
	struct sv_req *r = cmd->priv;
	struct sv_chan *c = r->chan;
	struct sv_lun *l = r->lun;
	struct storvsp *sv = c->ctrl->sv;

	r->lun = NULL;
	c->outstanding--;
	if (l) {
		l->inflight--;
		if (l->removed)
			srb_set_status(r, SRB_STATUS_INVALID_LUN, SCSI_STATUS_CHECK_CONDITION);
		else
			srb_set_scsi(r);
	}
	req_complete(r);
	if (sv && sv->any_stalled)
		schedule_kick(sv);
}

/* ---- the guest's data buffer ----------------------------------------------------------- */

/* Map the GPA-direct ranges of `pkt` onto host pointers, covering the first
 * `dtl` bytes. Returns NULL or why the request is malformed. */
static const char *map_buffer(struct sv_chan *c, const struct ring_pkt *pkt, uint32_t dtl,
			      struct sv_req *r)
{
	struct storvsp *sv = c->ctrl->sv;
	uint64_t pfns[STORVSP_MAX_MAX_TRANSFER / SV_PAGE + SV_MAX_RANGES];
	struct vmbus_pkt_gpa_direct hdr;
	uint64_t total = 0, left = dtl;
	uint32_t off = sizeof(hdr);
	unsigned npfns_total = 0;

	r->niov = 0;
	r->cmd.buf.iov = r->iov;
	r->cmd.buf.niov = 0;
	r->cmd.buf.len = 0;
	if (pkt->desc.type != VMBUS_PKT_DATA_USING_GPA_DIRECT)
		return dtl ? "data transfer length without a buffer" : NULL;
	if (pkt->data_off < sizeof(hdr) ||
	    vmbus_chan_recv_read(c->ch, pkt, 0, &hdr, sizeof(hdr)))
		return "GPA-direct header does not fit";
	if (!hdr.range_cnt || hdr.range_cnt > SV_MAX_RANGES)
		return "bad GPA range count";
	for (uint32_t i = 0; i < hdr.range_cnt; i++) {
		struct vmbus_gpa_range rg;
		uint64_t npfn, rleft;

		if (off + sizeof(rg) > pkt->data_off ||
		    vmbus_chan_recv_read(c->ch, pkt, off, &rg, sizeof(rg)))
			return "GPA range header beyond the packet header";
		off += sizeof(rg);
		if (!rg.byte_count || rg.byte_offset >= SV_PAGE)
			return "bad GPA range length or offset";
		npfn = ((uint64_t)rg.byte_offset + rg.byte_count + SV_PAGE - 1) / SV_PAGE;
		if (npfn > sv->max_segs - npfns_total)
			return "too many pages";
		if (off + npfn * 8 > pkt->data_off ||
		    vmbus_chan_recv_read(c->ch, pkt, off, pfns, (uint32_t)npfn * 8))
			return "PFN list beyond the packet header";
		off += (uint32_t)npfn * 8;
		npfns_total += (unsigned)npfn;
		total += rg.byte_count;
		rleft = rg.byte_count;
		for (uint64_t p = 0; p < npfn && left; p++) {
			uint32_t poff = p ? 0 : rg.byte_offset;
			uint64_t seg = SV_PAGE - poff;
			struct blkq_iov *prev = r->niov ? &r->iov[r->niov - 1] : NULL;
			uint8_t *host;

			if (seg > rleft)
				seg = rleft;
			if (seg > left)
				seg = left;
			if (pfns[p] >= (1ull << 52))
				return "PFN out of range";
			host = guest_mem_ptr(sv->cfg.gm, pfns[p] * SV_PAGE + poff, seg);
			if (!host)
				return "page is not guest RAM";
			if (prev && (uint8_t *)prev->base + prev->len == host) {
				prev->len += seg;
			} else {
				if (r->niov >= sv->max_segs)
					return "too many segments";
				r->iov[r->niov].base = host;
				r->iov[r->niov].len = seg;
				r->niov++;
			}
			rleft -= seg;
			left -= seg;
		}
	}
	if (dtl > total)
		return "data transfer length beyond the PFN list";
	r->cmd.buf.niov = r->niov;
	r->cmd.buf.len = dtl;
	return NULL;
}

/* ---- EXECUTE_SRB --------------------------------------------------------------------- */

enum pkt_result { PKT_DONE, PKT_STALL };

static void log_bad(struct sv_chan *c, const char *what, const char *why)
{
	log_ratelimited(LOG_WARN, "storvsp: controller %u channel %u: %s: %s", c->ctrl->index,
			c->idx, what, why);
}

static void report_luns(struct sv_ctrl *ctrl, struct sv_req *r, bool here)
{
	uint16_t luns[STORVSP_MAX_LUNS];
	unsigned n = 0;

	for (unsigned i = 0; here && i < STORVSP_MAX_LUNS; i++)
		if (ctrl->luns[i])
			luns[n++] = (uint16_t)i;
	scsi_report_luns(&r->cmd, luns, n);
	if (here && r->cmd.status == SCSI_STATUS_GOOD)
		for (unsigned i = 0; i < STORVSP_MAX_LUNS; i++)
			if (ctrl->luns[i])
				scsi_disk_clear_ua(ctrl->luns[i]->sd, SCSI_UA_LUNS_CHANGED);
}

static enum pkt_result execute_srb(struct sv_chan *c, const struct ring_pkt *pkt,
				   struct sv_req *r)
{
	struct sv_ctrl *ctrl = c->ctrl;
	struct vmscsi_request *s = &r->pkt.srb;
	bool here = s->path_id == 0 && s->target_id == 0;
	struct sv_lun *l = here && s->lun < STORVSP_MAX_LUNS ? ctrl->luns[s->lun] : NULL;
	const char *why;
	uint8_t op;
	int ret;

	if (ctrl->state != ST_READY) {
		log_bad(c, "EXECUTE_SRB", "before END_INITIALIZATION");
		srb_set_status(r, SRB_STATUS_ERROR, 0);
		r->pkt.status = VSTOR_STATUS_INVALID_DEVICE_STATE;
		return PKT_DONE;
	}
	if (!s->cdb_length || s->cdb_length > VMSCSI_CDB_MAX) {
		log_bad(c, "EXECUTE_SRB", "bad CDB length");
		srb_set_status(r, SRB_STATUS_INVALID_REQUEST, 0);
		return PKT_DONE;
	}
	if (s->data_transfer_length > ctrl->sv->cfg.max_transfer_bytes) {
		log_bad(c, "EXECUTE_SRB", "transfer longer than max_transfer_bytes");
		srb_set_status(r, SRB_STATUS_INVALID_REQUEST, 0);
		return PKT_DONE;
	}
	why = map_buffer(c, pkt, s->data_transfer_length, r);
	if (why) {
		log_bad(c, "EXECUTE_SRB", why);
		srb_set_status(r, SRB_STATUS_INVALID_REQUEST, 0);
		return PKT_DONE;
	}
	memset(r->cmd.cdb, 0, sizeof(r->cmd.cdb));
	memcpy(r->cmd.cdb, s->cdb, s->cdb_length);
	r->cmd.cdb_len = s->cdb_length;
	r->cmd.done = cmd_done;
	r->cmd.priv = r;
	op = r->cmd.cdb[0];
	if (op == SCSI_REPORT_LUNS) {
		report_luns(ctrl, r, here);
		srb_set_scsi(r);
		return PKT_DONE;
	}
	if (!l) {
		if (op == SCSI_INQUIRY) {
			scsi_inquiry_no_lun(&r->cmd);
			srb_set_scsi(r);
		} else {
			srb_set_status(r, SRB_STATUS_INVALID_LUN, SCSI_STATUS_CHECK_CONDITION);
		}
		return PKT_DONE;
	}
	ret = scsi_disk_exec(l->sd, &r->cmd);
	if (ret == -EAGAIN)
		return PKT_STALL;
	if (ret == SCSI_QUEUED) {
		r->lun = l;
		l->inflight++;
		c->outstanding++;
		return PKT_DONE;
	}
	srb_set_scsi(r);
	return PKT_DONE;
}

/* ---- control operations ------------------------------------------------------------- */

static uint32_t create_sub_channels(struct sv_chan *c, uint16_t count)
{
	struct sv_ctrl *ctrl = c->ctrl;
	unsigned have, max = ctrl->sv->cfg.nr_vcpus;
	int ret;

	if (max > VMBUS_MAX_SUBCHANNELS)
		max = VMBUS_MAX_SUBCHANNELS;
	if (ctrl->version < VSTOR_VERSION_WIN8 || (ctrl->state != ST_PROPS && ctrl->state != ST_READY))
		return VSTOR_STATUS_INVALID_DEVICE_STATE;
	if (count > max)
		return VSTOR_STATUS_INVALID_PARAMETER;
	have = vmbus_device_nr_channels(ctrl->dev) - 1;
	if (count <= have)
		return VSTOR_STATUS_SUCCESS;
	ret = vmbus_device_add_subchannels(ctrl->dev, count - have);
	if (ret) {
		log_ratelimited(LOG_ERR, "storvsp: controller %u: cannot add %u sub-channels: %s",
				ctrl->index, count - have, strerror(-ret));
		return VSTOR_STATUS_UNSUCCESSFUL;
	}
	return VSTOR_STATUS_SUCCESS;
}

static void control_op(struct sv_chan *c, struct sv_req *r)
{
	struct sv_ctrl *ctrl = c->ctrl;
	struct storvsp *sv = ctrl->sv;
	struct vstor_packet *p = &r->pkt;
	struct vstor_protocol_version ver = p->version;
	uint16_t sub_count = p->sub_channel_count;
	uint32_t st = VSTOR_STATUS_SUCCESS;

	/* The reply carries only what the host fills in. */
	memset(p->raw, 0, sizeof(p->raw));
	/* Initialization happens on the primary channel only. */
	if (c->idx && p->operation >= VSTOR_OP_BEGIN_INITIALIZATION &&
	    p->operation != VSTOR_OP_ENUMERATE_BUS) {
		p->status = VSTOR_STATUS_INVALID_DEVICE_STATE;
		log_bad(c, "initialization operation", "on a sub-channel");
		return;
	}
	switch (p->operation) {
	case VSTOR_OP_BEGIN_INITIALIZATION:
		ctrl->state = ST_BEGUN;
		ctrl->version = 0;
		break;
	case VSTOR_OP_QUERY_PROTOCOL_VERSION:
		p->version = ver;
		if (ctrl->state != ST_BEGUN && ctrl->state != ST_VERSIONED) {
			st = VSTOR_STATUS_INVALID_DEVICE_STATE;
		} else if (!version_ok(sv, ver.major_minor)) {
			st = VSTOR_STATUS_REVISION_MISMATCH;
		} else {
			ctrl->version = ver.major_minor;
			ctrl->state = ST_VERSIONED;
			log_ratelimited(LOG_DEBUG, "storvsp: controller %u: protocol %u.%u",
					ctrl->index, ctrl->version >> 8, ctrl->version & 0xff);
		}
		r->reply_len = reply_len(ctrl);
		break;
	case VSTOR_OP_QUERY_PROPERTIES:
		if (ctrl->state != ST_VERSIONED && ctrl->state != ST_PROPS) {
			st = VSTOR_STATUS_INVALID_DEVICE_STATE;
			break;
		}
		if (ctrl->version >= VSTOR_VERSION_WIN8) {
			unsigned max = sv->cfg.nr_vcpus;

			if (max > VMBUS_MAX_SUBCHANNELS)
				max = VMBUS_MAX_SUBCHANNELS;
			p->props.max_channel_cnt = (uint16_t)max;
			p->props.flags = VSTOR_PROP_MULTI_CHANNEL;
		}
		p->props.max_transfer_bytes = sv->cfg.max_transfer_bytes;
		ctrl->state = ST_PROPS;
		break;
	case VSTOR_OP_END_INITIALIZATION:
		if (ctrl->state != ST_PROPS) {
			st = VSTOR_STATUS_INVALID_DEVICE_STATE;
			break;
		}
		ctrl->state = ST_READY;
		break;
	case VSTOR_OP_CREATE_SUB_CHANNELS:
		st = create_sub_channels(c, sub_count);
		p->sub_channel_count = sub_count;
		break;
	case VSTOR_OP_RESET_LUN:
	case VSTOR_OP_RESET_ADAPTER:
	case VSTOR_OP_RESET_BUS:
		break; /* nothing is ever lost or stuck: success */
	default:
		st = VSTOR_STATUS_INVALID_DEVICE_REQUEST;
		break;
	}
	if (st != VSTOR_STATUS_SUCCESS && st != VSTOR_STATUS_REVISION_MISMATCH)
		log_ratelimited(LOG_WARN, "storvsp: controller %u: operation %u refused: %#x",
				ctrl->index, p->operation, st);
	p->status = st;
}

/* ---- receive path ----------------------------------------------------------------------- */

static enum pkt_result handle_packet(struct sv_chan *c, const struct ring_pkt *pkt)
{
	struct sv_ctrl *ctrl = c->ctrl;
	struct storvsp *sv = ctrl->sv;
	uint8_t raw[VSTOR_PACKET_SIZE];
	uint32_t n = pkt->data_len < sizeof(raw) ? pkt->data_len : sizeof(raw);
	bool want = pkt->desc.flags & VMBUS_PKT_FLAG_COMPLETION_REQUESTED;
	struct sv_req *r;
	enum pkt_result res = PKT_DONE;

	if (pkt->desc.type != VMBUS_PKT_DATA_INBAND &&
	    pkt->desc.type != VMBUS_PKT_DATA_USING_GPA_DIRECT) {
		log_bad(c, "packet dropped", "unexpected VMBus packet type");
		return PKT_DONE;
	}
	if (c->outstanding >= SV_MAX_OUTSTANDING)
		return PKT_STALL;
	r = req_alloc(sv);
	if (!r)
		return PKT_STALL;
	memset(raw, 0, sizeof(raw));
	if (vmbus_chan_recv_read(c->ch, pkt, pkt->data_off, raw, n))
		n = 0;
	memcpy(&r->pkt, raw, sizeof(r->pkt));
	r->chan = c;
	r->gen = c->gen;
	r->trans_id = pkt->desc.trans_id;
	r->want_completion = want;
	r->reply_len = reply_len(ctrl);
	if (n < VSTOR_PACKET_SIZE_WIN7) {
		log_bad(c, "packet", "shorter than a vstor packet");
		memset(&r->pkt, 0, sizeof(r->pkt));
		r->pkt.status = VSTOR_STATUS_INVALID_PARAMETER;
	} else if (r->pkt.operation == VSTOR_OP_EXECUTE_SRB) {
		/* Back-pressure: leave the packet in the ring while its disk's
		 * queue is full. */
		const struct vmscsi_request *s = &r->pkt.srb;
		struct sv_lun *l = !s->path_id && !s->target_id && s->lun < STORVSP_MAX_LUNS
					   ? ctrl->luns[s->lun]
					   : NULL;

		if (ctrl->state == ST_READY && l && scsi_disk_busy(l->sd)) {
			req_free(sv, r);
			return PKT_STALL;
		}
		res = execute_srb(c, pkt, r);
		if (res == PKT_STALL) {
			req_free(sv, r);
			return PKT_STALL;
		}
		if (r->lun)
			return PKT_DONE; /* queued: cmd_done completes it */
	} else {
		control_op(c, r);
	}
	req_complete(r);
	return res;
}

/* Pull and handle the guest's packets until the ring is empty, a limit is
 * hit or the guest's receive ring is full. */
static void chan_run(struct sv_chan *c)
{
	struct sv_ctrl *ctrl = c->ctrl;
	struct storvsp *sv = ctrl->sv;
	struct ring_pkt pkt;
	unsigned budget = SV_BUDGET;
	bool pulled = false;

	if (!c->open)
		return;
	if (!sv) { /* orphaned: drop everything */
		while (vmbus_chan_recv_peek(c->ch, &pkt) == 0)
			vmbus_chan_recv_pop(c->ch, &pkt);
		vmbus_chan_recv_commit(c->ch);
		return;
	}
	c->stalled = false;
	if (!flush_backlog(c))
		return; /* the guest signals when it has read completions */
	if (c->idx == 0)
		send_enum(ctrl);
	while (!sv->stopping) {
		if (!budget--) {
			schedule_kick(sv);
			break;
		}
		if (vmbus_chan_recv_peek(c->ch, &pkt))
			break;
		if (handle_packet(c, &pkt) == PKT_STALL) {
			c->stalled = true;
			sv->any_stalled = true;
			break;
		}
		/* A stale pkt is never used after handle_packet: completions
		 * copy what they need. */
		vmbus_chan_recv_pop(c->ch, &pkt);
		pulled = true;
		if (c->backlog_head || !c->open)
			break;
	}
	if (pulled && c->open)
		vmbus_chan_recv_commit(c->ch);
}

static void run_stalled(struct storvsp *sv)
{
	sv->any_stalled = false;
	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++) {
		struct sv_ctrl *ctrl = sv->ctrls[i];

		if (!ctrl)
			continue;
		for (unsigned j = 0; j < SV_MAX_CHANNELS; j++)
			if (ctrl->chans[j].open)
				chan_run(&ctrl->chans[j]);
	}
}

static void kick_ready(struct loop_source *src, uint32_t events)
{
	struct storvsp *sv = container_of(src, struct storvsp, kick_src);
	uint64_t cnt;

	if (read(sv->kick_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		log_ratelimited(LOG_ERR, "storvsp: eventfd read: %s", strerror(errno));
	sv->kick_pending = false;
	run_stalled(sv);
}

/* ---- VMBus device class ----------------------------------------------------------------- */

static void drain_ctrl(struct sv_ctrl *ctrl)
{
	for (unsigned i = 0; i < STORVSP_MAX_LUNS; i++)
		if (ctrl->luns[i] && ctrl->luns[i]->inflight)
			blkq_drain(ctrl->luns[i]->q);
}

static int sv_open(struct vmbus_channel *ch)
{
	struct sv_ctrl *ctrl = vmbus_device_priv(vmbus_chan_device(ch));
	unsigned idx = vmbus_chan_subindex(ch);
	struct sv_chan *c;

	if (!ctrl->sv || idx >= SV_MAX_CHANNELS)
		return -ENODEV;
	c = &ctrl->chans[idx];
	c->ch = ch;
	c->open = true;
	c->gen++;
	c->stalled = false;
	vmbus_chan_set_priv(ch, c);
	if (idx == 0) {
		ctrl->state = ST_IDLE;
		ctrl->version = 0;
		ctrl->enum_pending = false;
	}
	return 0;
}

static void sv_close(struct vmbus_channel *ch)
{
	struct sv_chan *c = vmbus_chan_priv(ch);

	if (!c)
		return;
	c->open = false;
	c->gen++;
	drop_backlog(c);
	/* The guest may reuse its buffers once the channel is closed: let the
	 * disk I/O into them finish first (their completions are dropped). */
	if (c->outstanding)
		drain_ctrl(c->ctrl);
	c->stalled = false;
	if (c->idx == 0) {
		c->ctrl->state = ST_IDLE;
		c->ctrl->version = 0;
		c->ctrl->enum_pending = false;
	}
	vmbus_chan_set_priv(ch, NULL);
}

static void sv_notify(struct vmbus_channel *ch)
{
	struct sv_chan *c = vmbus_chan_priv(ch);

	if (c)
		chan_run(c);
}

static void sv_reset(struct vmbus_device *dev)
{
	struct sv_ctrl *ctrl = vmbus_device_priv(dev);

	ctrl->state = ST_IDLE;
	ctrl->version = 0;
	ctrl->enum_pending = false;
}

static void sv_release(struct vmbus_device *dev)
{
	struct sv_ctrl *ctrl = vmbus_device_priv(dev);

	ctrl->dev = NULL;
	if (!ctrl->sv)
		free(ctrl);
}

static const struct vmbus_device_class storvsp_class = {
	.name = "storvsp",
	.class_guid = VMBUS_CLASS_SCSI,
	.open = sv_open,
	.close = sv_close,
	.notify = sv_notify,
	.reset = sv_reset,
	.release = sv_release,
};

/* ---- lifecycle ------------------------------------------------------------------------- */

struct storvsp *storvsp_new(struct vmbus_server *srv, struct loop *loop,
			    const struct storvsp_config *cfg)
{
	struct storvsp *sv;

	if (!srv || !cfg || !cfg->gm || !cfg->nr_vcpus ||
	    cfg->max_transfer_bytes < STORVSP_MIN_MAX_TRANSFER ||
	    cfg->max_transfer_bytes > STORVSP_MAX_MAX_TRANSFER || cfg->max_transfer_bytes % SV_PAGE ||
	    (!cfg->inline_io && (!cfg->io_threads || cfg->io_threads > BLKQ_MAX_THREADS)) ||
	    !cfg->queue_depth || cfg->queue_depth > BLKQ_MAX_DEPTH ||
	    cfg->write_behind > BLKQ_MAX_WRITE_BEHIND || !version_known(cfg->max_version)) {
		log_err("storvsp: invalid configuration");
		return NULL;
	}
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return NULL;
	sv->srv = srv;
	sv->loop = loop;
	sv->cfg = *cfg;
	sv->max_segs = cfg->max_transfer_bytes / SV_PAGE + SV_MAX_RANGES;
	sv->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sv->kick_fd < 0) {
		log_err("storvsp: eventfd: %s", strerror(errno));
		free(sv);
		return NULL;
	}
	if (loop) {
		if (loop_add(loop, &sv->kick_src, sv->kick_fd, EPOLLIN, kick_ready)) {
			close(sv->kick_fd);
			free(sv);
			return NULL;
		}
		sv->kick_added = true;
	}
	return sv;
}

static void ctrl_instance(unsigned idx, guid_t *g)
{
	/* A fixed base with the controller index in the last byte: stable
	 * across boots, different per controller. */
	static const guid_t base = GUID_INIT(0x4d1e3c2a, 0x9b8f, 0x4a6e, 0x8c, 0x5d, 0x7f, 0x2b,
					     0x1a, 0x0e, 0x9d, 0x00);

	*g = base;
	g->b[15] = (uint8_t)idx;
}

int storvsp_add_controller(struct storvsp *sv, unsigned idx)
{
	struct vmbus_device_params p;
	struct sv_ctrl *ctrl;

	if (idx >= STORVSP_MAX_CONTROLLERS)
		return -EINVAL;
	if (sv->ctrls[idx])
		return -EEXIST;
	ctrl = calloc(1, sizeof(*ctrl));
	if (!ctrl)
		return -ENOMEM;
	ctrl->sv = sv;
	ctrl->index = idx;
	ctrl_instance(idx, &ctrl->instance);
	for (unsigned i = 0; i < SV_MAX_CHANNELS; i++) {
		ctrl->chans[i].ctrl = ctrl;
		ctrl->chans[i].idx = i;
	}
	memset(&p, 0, sizeof(p));
	p.instance = ctrl->instance;
	p.priv = ctrl;
	ctrl->dev = vmbus_device_add(sv->srv, &storvsp_class, &p);
	if (!ctrl->dev) {
		free(ctrl);
		return -ENOMEM;
	}
	sv->ctrls[idx] = ctrl;
	return 0;
}

static struct sv_ctrl *get_ctrl(struct storvsp *sv, unsigned idx)
{
	return idx < STORVSP_MAX_CONTROLLERS ? sv->ctrls[idx] : NULL;
}

/* 16 bytes from the label and the slot (FNV-1a, two seeds): stable for a
 * given configuration. */
static void derive_id(const char *label, unsigned ctrl, unsigned lun, uint8_t id[16])
{
	char slot[32];
	uint64_t h[2] = { 0xcbf29ce484222325ull, 0x84222325cbf29ce4ull };

	snprintf(slot, sizeof(slot), "/%u/%u", ctrl, lun);
	for (unsigned k = 0; k < 2; k++) {
		for (const char *s = label ? label : ""; *s; s++)
			h[k] = (h[k] ^ (uint8_t)*s) * 0x100000001b3ull;
		for (const char *s = slot; *s; s++)
			h[k] = (h[k] ^ (uint8_t)*s) * 0x100000001b3ull;
	}
	for (unsigned i = 0; i < 8; i++) {
		id[i] = (uint8_t)(h[0] >> (56 - 8 * i));
		id[8 + i] = (uint8_t)(h[1] >> (56 - 8 * i));
	}
}

/* Tell the guest that the LUN inventory changed (when it is running). */
static void luns_changed(struct sv_ctrl *ctrl, unsigned except)
{
	if (ctrl->state != ST_READY)
		return;
	for (unsigned i = 0; i < STORVSP_MAX_LUNS; i++)
		if (ctrl->luns[i] && i != except)
			scsi_disk_set_ua(ctrl->luns[i]->sd, SCSI_UA_LUNS_CHANGED);
	request_rescan(ctrl);
}

int storvsp_add_lun(struct storvsp *sv, unsigned idx, unsigned lun, struct blk_disk *disk,
		    const struct storvsp_lun_opts *opts)
{
	struct storvsp_lun_opts none = { 0 };
	struct sv_ctrl *ctrl = get_ctrl(sv, idx);
	struct scsi_disk_params sp;
	struct blkq_config qc;
	struct blk_info info;
	struct sv_lun *l;
	int ret;

	if (!opts)
		opts = &none;
	if (idx >= STORVSP_MAX_CONTROLLERS || lun >= STORVSP_MAX_LUNS || !disk)
		return -EINVAL;
	if (!ctrl)
		return -ENODEV;
	if (ctrl->luns[lun])
		return -EEXIST;
	blk_get_info(disk, &info);
	if (info.logical_sector != 512 && info.logical_sector != 4096)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->ctrl = ctrl;
	l->lun = lun;
	l->disk = disk;
	l->ro = opts->read_only || info.read_only;
	if (opts->label && !(l->label = strdup(opts->label))) {
		ret = -ENOMEM;
		goto fail;
	}
	blkq_default_config(&qc);
	qc.threads = sv->cfg.inline_io ? 0 : sv->cfg.io_threads;
	qc.depth = sv->cfg.queue_depth;
	qc.write_behind = sv->cfg.write_behind;
	/* Every request fits in one bounce chunk. */
	qc.bounce_size = sv->cfg.max_transfer_bytes;
	ret = blkq_new(&l->q, disk, sv->loop, &qc);
	if (ret)
		goto fail;
	memset(&sp, 0, sizeof(sp));
	sp.disk = disk;
	sp.q = l->q;
	sp.lun = (uint16_t)lun;
	sp.read_only = l->ro;
	if (opts->id)
		memcpy(sp.id, opts->id, sizeof(sp.id));
	else
		derive_id(opts->label, idx, lun, sp.id);
	sp.serial = opts->serial;
	sp.max_xfer_bytes = sv->cfg.max_transfer_bytes;
	ret = scsi_disk_new(&l->sd, &sp);
	if (ret)
		goto fail;
	ctrl->luns[lun] = l;
	luns_changed(ctrl, lun);
	return 0;
fail:
	blkq_free(l->q);
	free(l->label);
	free(l);
	return ret;
}

/* Detach and free a LUN (its I/O finishes first); closes the disk. */
static void lun_destroy(struct sv_lun *l)
{
	l->removed = true;
	blkq_stop(l->q);
	blkq_drain(l->q);
	blkq_free(l->q);
	scsi_disk_free(l->sd);
	if (!l->ro) {
		int ret = blk_flush(l->disk);

		if (ret)
			log_err("storvsp: flushing %s: %s", l->label ? l->label : "disk",
				strerror(-ret));
	}
	blk_close(l->disk);
	free(l->label);
	free(l);
}

int storvsp_remove_lun(struct storvsp *sv, unsigned idx, unsigned lun)
{
	struct sv_ctrl *ctrl = get_ctrl(sv, idx);
	struct sv_lun *l;

	if (!ctrl || lun >= STORVSP_MAX_LUNS || !ctrl->luns[lun])
		return -ENODEV;
	l = ctrl->luns[lun];
	ctrl->luns[lun] = NULL;
	lun_destroy(l);
	luns_changed(ctrl, STORVSP_MAX_LUNS);
	return 0;
}

int storvsp_resize_lun(struct storvsp *sv, unsigned idx, unsigned lun, uint64_t new_size)
{
	struct sv_ctrl *ctrl = get_ctrl(sv, idx);
	struct blk_info info;
	struct sv_lun *l;
	int ret;

	if (!ctrl || lun >= STORVSP_MAX_LUNS || !ctrl->luns[lun])
		return -ENODEV;
	l = ctrl->luns[lun];
	if (l->ro)
		return -EROFS;
	blk_get_info(l->disk, &info);
	if (!new_size || new_size % info.logical_sector)
		return -EINVAL;
	ret = blk_resize(l->disk, new_size);
	if (ret)
		return ret;
	if (scsi_disk_refresh(l->sd) && ctrl->state == ST_READY)
		request_rescan(ctrl);
	return 0;
}

void storvsp_drain(struct storvsp *sv)
{
	if (!sv)
		return;
	sv->stopping = true;
	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++) {
		struct sv_ctrl *ctrl = sv->ctrls[i];

		if (!ctrl)
			continue;
		for (unsigned j = 0; j < STORVSP_MAX_LUNS; j++) {
			struct sv_lun *l = ctrl->luns[j];
			int ret;

			if (!l)
				continue;
			blkq_drain(l->q);
			if (!l->ro && (ret = blk_flush(l->disk)))
				log_err("storvsp: flushing %s: %s", l->label ? l->label : "disk",
					strerror(-ret));
		}
	}
}

void storvsp_free(struct storvsp *sv)
{
	if (!sv)
		return;
	storvsp_drain(sv);
	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++) {
		struct sv_ctrl *ctrl = sv->ctrls[i];

		if (!ctrl)
			continue;
		for (unsigned j = 0; j < STORVSP_MAX_LUNS; j++) {
			struct sv_lun *l = ctrl->luns[j];

			if (l) {
				ctrl->luns[j] = NULL;
				lun_destroy(l);
			}
		}
		for (unsigned j = 0; j < SV_MAX_CHANNELS; j++)
			drop_backlog(&ctrl->chans[j]);
		ctrl->sv = NULL;
		if (!ctrl->dev)
			free(ctrl); /* the server already released it */
	}
	while (sv->free_reqs) {
		struct sv_req *r = sv->free_reqs;

		sv->free_reqs = r->next;
		free(r);
	}
	if (sv->kick_added)
		loop_del(sv->loop, &sv->kick_src);
	close(sv->kick_fd);
	free(sv);
}

unsigned storvsp_poll(struct storvsp *sv, int timeout_ms)
{
	struct pollfd fds[1 + STORVSP_MAX_CONTROLLERS * STORVSP_MAX_LUNS];
	unsigned nfds = 0, n = 0;

	fds[nfds++] = (struct pollfd){ .fd = sv->kick_fd, .events = POLLIN };
	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++)
		for (unsigned j = 0; sv->ctrls[i] && j < STORVSP_MAX_LUNS; j++)
			if (sv->ctrls[i]->luns[j])
				fds[nfds++] = (struct pollfd){
					.fd = blkq_event_fd(sv->ctrls[i]->luns[j]->q),
					.events = POLLIN,
				};
	if (timeout_ms && poll(fds, nfds, timeout_ms) < 0 && errno != EINTR)
		return 0;
	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++)
		for (unsigned j = 0; sv->ctrls[i] && j < STORVSP_MAX_LUNS; j++)
			if (sv->ctrls[i]->luns[j])
				n += blkq_poll(sv->ctrls[i]->luns[j]->q);
	if (sv->kick_pending)
		kick_ready(&sv->kick_src, EPOLLIN);
	return n;
}

/* ---- status ------------------------------------------------------------------------- */

static const char *format_name(enum blk_format f)
{
	switch (f) {
	case BLK_FMT_RAW:
		return "raw";
	case BLK_FMT_VHD:
		return "vhd";
	case BLK_FMT_VHDX:
		return "vhdx";
	default:
		return "auto";
	}
}

size_t storvsp_list(struct storvsp *sv, struct storvsp_lun_info *out, size_t max)
{
	size_t n = 0;

	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++) {
		for (unsigned j = 0; sv->ctrls[i] && j < STORVSP_MAX_LUNS; j++) {
			struct sv_lun *l = sv->ctrls[i]->luns[j];
			struct storvsp_lun_info *o;
			struct blkq_stats st;
			struct blk_info info;

			if (!l)
				continue;
			if (n >= max) {
				n++;
				continue;
			}
			o = &out[n++];
			memset(o, 0, sizeof(*o));
			blk_get_info(l->disk, &info);
			blkq_get_stats(l->q, &st);
			o->controller = i;
			o->lun = j;
			if (l->label)
				snprintf(o->label, sizeof(o->label), "%s", l->label);
			o->format = format_name(info.format);
			o->size = scsi_disk_blocks(l->sd) * scsi_disk_block_size(l->sd);
			o->block_size = scsi_disk_block_size(l->sd);
			o->read_only = l->ro;
			o->inflight = l->inflight;
			o->reads = st.reads;
			o->writes = st.writes;
			o->flushes = st.flushes;
			o->unmaps = st.discards + st.write_sames;
			o->bytes_read = st.bytes_read;
			o->bytes_written = st.bytes_written;
			o->errors = st.errors;
			o->cached_reads = st.cached_reads;
			o->cached_writes = st.cached_writes;
			o->write_behind = st.write_behind;
			o->write_behind_errors = st.write_behind_errors;
			o->parallel = st.parallel;
			o->split = st.split;
			o->read_ns = st.read_ns;
			o->write_ns = st.write_ns;
		}
	}
	return n;
}

size_t storvsp_list_controllers(struct storvsp *sv, struct storvsp_ctrl_info *out, size_t max)
{
	size_t n = 0;

	for (unsigned i = 0; i < STORVSP_MAX_CONTROLLERS; i++) {
		struct sv_ctrl *ctrl = sv->ctrls[i];
		struct storvsp_ctrl_info *o;

		if (!ctrl)
			continue;
		if (n >= max) {
			n++;
			continue;
		}
		o = &out[n++];
		memset(o, 0, sizeof(*o));
		o->index = i;
		guid_to_str(&ctrl->instance, o->instance);
		o->open = ctrl->chans[0].open;
		o->ready = ctrl->state == ST_READY;
		o->version = ctrl->state >= ST_VERSIONED ? ctrl->version : 0;
		o->nr_channels = ctrl->dev ? vmbus_device_nr_channels(ctrl->dev) : 0;
		for (unsigned j = 0; j < SV_MAX_CHANNELS; j++)
			o->open_channels += ctrl->chans[j].open;
		for (unsigned j = 0; j < STORVSP_MAX_LUNS; j++)
			o->nr_luns += ctrl->luns[j] != NULL;
	}
	return n;
}

/* ---- disks from the command line and the API ------------------------------------------------ */

int storvsp_add_disk(struct storvsp *sv, const struct storvsp_disk_config *dc, char *err,
		     size_t errlen)
{
	struct storvsp_lun_opts opts = { 0 };
	struct blk_error berr = { { 0 } };
	struct sv_ctrl *ctrl;
	struct blk_disk *disk;
	int lun = dc->lun, ret;

	if (dc->controller >= STORVSP_MAX_CONTROLLERS) {
		snprintf(err, errlen, "controller %u: at most %u controllers", dc->controller,
			 STORVSP_MAX_CONTROLLERS);
		return -EINVAL;
	}
	if (lun >= (int)STORVSP_MAX_LUNS) {
		snprintf(err, errlen, "lun %d: at most %u LUNs per controller", lun,
			 STORVSP_MAX_LUNS);
		return -EINVAL;
	}
	ctrl = get_ctrl(sv, dc->controller);
	if (!ctrl) {
		ret = storvsp_add_controller(sv, dc->controller);
		if (ret) {
			snprintf(err, errlen, "controller %u: %s", dc->controller, strerror(-ret));
			return ret;
		}
		ctrl = get_ctrl(sv, dc->controller);
	}
	if (lun < 0) {
		for (lun = 0; lun < (int)STORVSP_MAX_LUNS && ctrl->luns[lun]; lun++)
			;
		if (lun == (int)STORVSP_MAX_LUNS) {
			snprintf(err, errlen, "controller %u is full (%u LUNs)", dc->controller,
				 STORVSP_MAX_LUNS);
			return -ENOSPC;
		}
	} else if (ctrl->luns[lun]) {
		snprintf(err, errlen, "controller %u LUN %d is already in use", dc->controller, lun);
		return -EEXIST;
	}
	disk = blk_open(dc->path, dc->format, dc->read_only ? BLK_OPEN_RDONLY : 0, &berr);
	if (!disk) {
		/* The block layer's messages start with the path. */
		if (berr.msg[0])
			snprintf(err, errlen, "%s", berr.msg);
		else
			snprintf(err, errlen, "%s: cannot open", dc->path);
		return -EIO;
	}
	opts.read_only = dc->read_only;
	opts.label = dc->path;
	ret = storvsp_add_lun(sv, dc->controller, (unsigned)lun, disk, &opts);
	if (ret) {
		blk_close(disk);
		snprintf(err, errlen, "%s: %s", dc->path,
			 ret == -EINVAL ? "unsupported logical sector size" : strerror(-ret));
		return ret;
	}
	return lun;
}
