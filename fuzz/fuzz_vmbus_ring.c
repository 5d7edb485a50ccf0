/* libFuzzer target: the ring reader (and writer) over an arbitrary control
 * page and data area. Checks that every packet the reader accepts lies
 * inside the data the guest published, that reads stay inside the packet,
 * and that the writer never corrupts its own invariants. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/guest_mem.h"
#include "util/log.h"
#include "vmbus/ring.h"

#define MEM_PAGES 16u
#define MEM_SIZE (MEM_PAGES * 4096u)

static struct guest_mem gm;
static uint8_t *mem;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mem = aligned_alloc(4096, MEM_SIZE);
	if (!mem)
		abort();
	guest_mem_layout(&gm, mem, MEM_SIZE);
	log_threshold = LOG_ERR;
	return 0;
}

static uint32_t distance(uint32_t size, uint32_t from, uint32_t to)
{
	return to >= from ? to - from : size - (from - to);
}

static void run_reader(const uint64_t *pfns, uint32_t n, const uint8_t *ops, size_t nops)
{
	struct vmbus_ring r;
	struct ring_pkt pkt;
	uint8_t buf[4096];
	size_t op = 0;

	if (ring_init(&r, &gm, pfns, n, RING_READER))
		return;
	for (unsigned i = 0; i < 256; i++) {
		struct vmbus_ring_ctrl *c = r.ctrl;
		uint32_t w = c->write_index;
		int ret = ring_peek(&r, &pkt);
		uint8_t o = op < nops ? ops[op++] : 0;

		if (ret == -EAGAIN || ret == -EPROTO)
			break;
		if (ret)
			abort();
		/* Accepted: inside what the guest published (w read before peek
		 * can only be equal here since nothing else writes). */
		if (pkt.len < 16 || pkt.data_off < 16 || pkt.data_off > pkt.len ||
		    pkt.start != r.rd || pkt.len + 8 > distance(r.size, r.rd, w))
			abort();
		if (ring_pkt_read(&r, &pkt, pkt.data_off, buf,
				  pkt.data_len < sizeof(buf) ? pkt.data_len : sizeof(buf)))
			abort();
		/* A read running past the packet end must be refused. */
		if (ring_pkt_read(&r, &pkt, pkt.len - 1 - (o % 15), buf, 16) == 0)
			abort();
		ring_pop(&r, &pkt);
		if (o & 1)
			ring_commit(&r);
		if (o & 2)
			ring_mask(&r);
		if (o & 4)
			ring_unmask(&r);
		if (o & 8) /* the guest moves the write index under us */
			c->write_index = (uint32_t)o * 8 * 37;
	}
	ring_commit(&r);
	ring_bytes_to_read(&r);
	ring_destroy(&r);
}

static void run_writer(const uint64_t *pfns, uint32_t n, const uint8_t *ops, size_t nops)
{
	struct vmbus_ring r;
	uint8_t payload[256 * 16 + 256];

	memset(payload, 0x5a, sizeof(payload));
	if (ring_init(&r, &gm, pfns, n, RING_WRITER))
		return;
	for (size_t i = 0; i + 1 < nops && i < 64; i += 2) {
		uint32_t len = (uint32_t)ops[i] * 16 + ops[i + 1];
		uint32_t before = r.wr, fb = ring_bytes_free(&r);
		bool sig;
		int ret = ring_send(&r, 6, 0, i, payload, len, &sig);

		if (r.wr >= r.size || (r.wr & 7))
			abort();
		if (ret == 0 && fb && (((16 + len + 7) & ~7u) + 8) >= fb)
			abort(); /* wrote without strictly enough room */
		if (ret && r.wr != before)
			abort();
		if (ops[i] & 0x80) /* guest consumes everything */
			r.ctrl->read_index = r.wr;
	}
	ring_destroy(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t pfns[MEM_PAGES];
	uint32_t n;
	size_t fill;

	if (size < 2)
		return 0;
	/* Byte 0: ring pages (2..8), byte 1: page order shuffle seed. */
	n = 2 + data[0] % 7;
	/* An odd stride modulo a power of two: distinct, scattered pages. */
	for (uint32_t i = 0; i < n; i++)
		pfns[i] = (data[1] + i * (2 * (data[1] % 4) + 1)) % MEM_PAGES;
	data += 2;
	size -= 2;
	memset(mem, 0, MEM_SIZE);
	/* Next 16 bytes: the control page's indices, mask, pending size. */
	memcpy(mem + pfns[0] * 4096, data, size < 16 ? size : 16);
	/* The rest: the data pages, in ring order; remaining input drives ops. */
	fill = 16;
	for (uint32_t i = 1; i < n && fill < size; i++) {
		size_t k = size - fill < 4096 ? size - fill : 4096;

		memcpy(mem + pfns[i] * 4096, data + fill, k);
		fill += k;
	}
	if (fill > size)
		fill = size;
	run_reader(pfns, n, data + fill, size - fill);
	run_writer(pfns, n, data, size < 64 ? size : 64);
	return 0;
}
