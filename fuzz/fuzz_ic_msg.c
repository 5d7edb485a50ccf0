/* libFuzzer target: arbitrary guest packets into every integration
 * service's receive path, through the real VMBus server. The input is a
 * script of guest and host actions on the three IC channels: correct
 * Linux-like answers, answers to the host's real requests with bytes and
 * lengths patched (so they pass the transaction checks and reach the
 * version negotiation and the services), raw packets, ticks of a fake
 * clock, shutdown requests, channel close/reopen, VMBus unload, ring
 * corruption. Checks that the host never crashes or reads out of bounds
 * (ASan/UBSan), that its status stays well-formed, and that it only ever
 * sends well-formed IC requests. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/ic_test_util.h"

#define NR_SVC 3

static const guid_t classes[NR_SVC] = { IC_CLASS_HEARTBEAT, IC_CLASS_SHUTDOWN, IC_CLASS_TIMESYNC };
static const uint16_t msgtypes[NR_SVC] = { IC_MSGTYPE_HEARTBEAT, IC_MSGTYPE_SHUTDOWN,
					   IC_MSGTYPE_TIMESYNC };

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

static uint32_t relids[NR_SVC];
static bool is_open[NR_SVC];
static struct tu_guest guests[NR_SVC];
static uint8_t buf[IC_MAX_MSG_LEN + 4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_threshold = LOG_ERR;
	return 0;
}

/* Every packet the host sends must be a well-formed IC request. */
static void check_host_packet(const struct tu_pkt *p)
{
	struct ic_hdr h;

	if (p->type != VMBUS_PKT_DATA_INBAND || p->len < IC_HDR_LEN || p->len > IC_MAX_MSG_LEN)
		abort();
	memcpy(&h, p->data, sizeof(h));
	if (h.pipe.flags != IC_PIPE_FLAG_DATA || h.pipe.msgsize + 8 > p->len ||
	    h.pipe.msgsize != 20u + h.ic.icmsgsize ||
	    h.ic.icflags != (IC_FLAG_TRANSACTION | IC_FLAG_REQUEST) || h.ic.status != 0)
		abort();
}

static void open_svc(unsigned k, bool negotiate)
{
	if (is_open[k]) {
		tu_close(relids[k]);
		is_open[k] = false;
	}
	guests[k] = tu_linux_guest(msgtypes[k]);
	relids[k] = tu_open(classes[k]);
	if (!relids[k])
		return;
	is_open[k] = true;
	if (negotiate)
		tu_guest_step(relids[k], &guests[k]);
}

static void check_status(void)
{
	struct ic_status st[IC_MAX_SERVICES];
	size_t n = ic_host_status(tu.ic, st, IC_MAX_SERVICES);

	if (n != NR_SVC)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!st[i].name || !st[i].status || !st[i].enabled)
			abort();
	for (unsigned k = 0; k < NR_SVC; k++)
		if (!is_open[k] && ic_host_connected(tu.ic, st[k].name))
			abort();
}

/* Take the host's next packet on service k and answer it with patches. */
static void mutated_answer(unsigned k, struct input *in)
{
	static struct tu_pkt req;
	struct ic_hdr h;
	uint32_t len;
	uint8_t npatch, lenop;

	if (!tu_recv(relids[k], &req))
		return;
	check_host_packet(&req);
	memcpy(buf, req.data, req.len);
	memcpy(&h, buf, sizeof(h));
	h.ic.icflags = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
	if (h.ic.icmsgtype == IC_MSGTYPE_HEARTBEAT && req.len >= IC_HDR_LEN + 8)
		buf[IC_HDR_LEN]++; /* mostly-right sequence answers */
	memcpy(buf, &h, sizeof(h));
	len = req.len;
	lenop = in_u8(in);
	if (lenop & 0x80) /* shorter or longer than the request */
		len = (uint32_t)in_u16(in) % (IC_MAX_MSG_LEN + 512);
	if (len > req.len)
		memset(buf + req.len, in_u8(in), len - req.len);
	npatch = in_u8(in) % 16;
	for (unsigned i = 0; i < npatch && len; i++) {
		uint16_t off = in_u16(in);

		buf[off % len] = in_u8(in);
	}
	tu_send(relids[k], req.trans_id + ((lenop & 0x40) ? in_u8(in) : 0), buf, len);
}

static void raw_packet(unsigned k, struct input *in)
{
	static const uint16_t types[] = { VMBUS_PKT_DATA_INBAND, VMBUS_PKT_DATA_INBAND,
					  VMBUS_PKT_COMP, VMBUS_PKT_DATA_USING_GPA_DIRECT };
	uint8_t t = in_u8(in);
	uint16_t len = in_u16(in) % (IC_MAX_MSG_LEN + 256);
	uint64_t id = in_u8(in);
	size_t got;

	memset(buf, 0, len);
	got = in_bytes(in, buf, len);
	/* Help it along: a plausible pipe header on a short input. */
	if (got < 8 && len >= 8) {
		uint32_t ph[2] = { IC_PIPE_FLAG_DATA, len - 8u };

		memcpy(buf, ph, 8);
	}
	tu_send_raw(relids[k], types[t % 4], t >> 4 & 1, id, buf, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t cfg = in_u8(&in);
	unsigned ops = 0;

	tu_setup(NULL);
	tu_set_clock(cfg & 1);
	tu_connect();
	memset(is_open, 0, sizeof(is_open));
	for (unsigned k = 0; k < NR_SVC; k++)
		if (cfg & (2 << k))
			open_svc(k, !(cfg & 0x10));

	while (in.n && ops++ < 256) {
		uint8_t op = in_u8(&in);
		unsigned k = (op >> 4) % NR_SVC;
		struct tu_pkt p;

		switch (op & 0xf) {
		case 0:
		case 1:
			if (is_open[k])
				tu_guest_step(relids[k], &guests[k]);
			break;
		case 2:
		case 3:
			if (is_open[k])
				mutated_answer(k, &in);
			break;
		case 4:
			if (is_open[k])
				raw_packet(k, &in);
			break;
		case 5:
			tu_tick((uint64_t)in_u8(&in) * 100);
			break;
		case 6: {
			char msg[64];
			uint8_t f = in_u8(&in);
			size_t n = in_bytes(&in, msg, f % sizeof(msg));

			msg[n < sizeof(msg) ? n : sizeof(msg) - 1] = 0;
			ic_request_shutdown_msg(tu.ic, f & 1, f & 2, (f & 4) ? msg : NULL);
			break;
		}
		case 7:
			if (is_open[k]) {
				tu_close(relids[k]);
				is_open[k] = false;
			}
			break;
		case 8:
			open_svc(k, op & 0x80);
			break;
		case 9:
			if (in_u8(&in) == 0x5a) {
				tu_unload();
				memset(is_open, 0, sizeof(is_open));
				tu_connect();
			}
			break;
		case 10:
			/* The guest drains what the host sent, checking it. */
			if (is_open[k])
				while (tu_recv(relids[k], &p))
					check_host_packet(&p);
			break;
		case 11:
			if (is_open[k] && in_u8(&in) == 0xa5) {
				/* Corrupt one ring index (the channel breaks). */
				struct tu_chan *c = &tu.chans[relids[k]];

				if (op & 0x80)
					c->tx.ctrl->write_index = in_u16(&in);
				else
					c->rx.ctrl->read_index = in_u16(&in);
				vmbus_server_signal(tu.srv, c->conn_id);
			}
			break;
		case 12:
			tu.utc_err = (op & 0x80) ? -EIO : 0;
			break;
		default:
			check_status();
			break;
		}
	}
	check_status();
	/* Whatever the host still has queued is well-formed. */
	for (unsigned k = 0; k < NR_SVC; k++) {
		struct tu_pkt p;

		if (is_open[k])
			while (tu_recv(relids[k], &p))
				check_host_packet(&p);
	}
	tu_teardown(cfg & 0x20);
	return 0;
}
