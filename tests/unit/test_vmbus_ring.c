/* Ring buffer: round trips over non-contiguous pages, wrap-around,
 * interrupt suppression, pending_send_sz, and corrupt ring states. The
 * "guest" side is played by a second struct vmbus_ring with the opposite
 * role on the same pages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/guest_mem.h"
#include "util/log.h"
#include "vmbus/ring.h"

#define MEM_SIZE (1u << 20)
#define NPFN (MEM_SIZE / 4096)

static struct guest_mem gm;
static uint8_t *mem;

static int setup(void **state)
{
	mem = aligned_alloc(4096, MEM_SIZE);
	assert_non_null(mem);
	memset(mem, 0, MEM_SIZE);
	guest_mem_layout(&gm, mem, MEM_SIZE);
	return 0;
}

static int teardown(void **state)
{
	free(mem);
	return 0;
}

static struct vmbus_ring_ctrl *ctrl_of(uint64_t pfn)
{
	return (struct vmbus_ring_ctrl *)(mem + pfn * 4096);
}

/* Pages deliberately out of order: control 10, data 3, 7, 5. */
static const uint64_t scattered[] = { 10, 3, 7, 5 };

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 31 + i * 7);
}

static void test_init_errors(void **state)
{
	struct vmbus_ring r;
	uint64_t outside[] = { 1, NPFN + 5 };
	uint64_t huge[] = { 1, UINT64_MAX };
	uint64_t ok[] = { 1, 2 };

	assert_int_equal(ring_init(&r, &gm, ok, 1, RING_READER), -EINVAL);
	assert_int_equal(ring_init(&r, &gm, ok, RING_MAX_PAGES + 1, RING_READER), -EINVAL);
	assert_int_equal(ring_init(&r, &gm, outside, 2, RING_READER), -EFAULT);
	assert_int_equal(ring_init(&r, &gm, huge, 2, RING_WRITER), -EFAULT);

	ctrl_of(1)->read_index = 4096; /* == size: out of range */
	assert_int_equal(ring_init(&r, &gm, ok, 2, RING_READER), -EPROTO);
	ctrl_of(1)->read_index = 12; /* misaligned */
	assert_int_equal(ring_init(&r, &gm, ok, 2, RING_READER), -EPROTO);
	ctrl_of(1)->read_index = 0;
	ctrl_of(1)->write_index = 0x7fffffff;
	assert_int_equal(ring_init(&r, &gm, ok, 2, RING_WRITER), -EPROTO);
	ctrl_of(1)->write_index = 0;
	assert_int_equal(ring_init(&r, &gm, ok, 2, RING_WRITER), 0);
	assert_int_equal(ctrl_of(1)->feature_bits & VMBUS_RING_FEAT_PENDING_SEND_SZ, 1);
	ring_destroy(&r);
}

static void test_roundtrip_scattered(void **state)
{
	struct vmbus_ring w, rd;
	struct ring_pkt pkt;
	uint8_t out[1000], in[1000];
	bool sig;

	assert_int_equal(ring_init(&w, &gm, scattered, 4, RING_WRITER), 0);
	assert_int_equal(ring_init(&rd, &gm, scattered, 4, RING_READER), 0);
	assert_int_equal(ring_peek(&rd, &pkt), -EAGAIN);

	fill(out, sizeof(out), 1);
	assert_int_equal(ring_send(&w, VMBUS_PKT_DATA_INBAND, VMBUS_PKT_FLAG_COMPLETION_REQUESTED,
				   0x1234, out, sizeof(out), &sig),
			 0);
	assert_true(sig); /* empty before, mask clear */
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	assert_int_equal(pkt.desc.type, VMBUS_PKT_DATA_INBAND);
	assert_int_equal(pkt.desc.flags, VMBUS_PKT_FLAG_COMPLETION_REQUESTED);
	assert_int_equal(pkt.desc.trans_id, 0x1234);
	assert_int_equal(pkt.data_off, 16);
	assert_int_equal(pkt.len, (16 + 1000 + 7) / 8 * 8);
	assert_int_equal(pkt.data_len, pkt.len - 16);
	assert_int_equal(ring_pkt_read(&rd, &pkt, pkt.data_off, in, sizeof(in)), 0);
	assert_memory_equal(in, out, sizeof(out));
	/* The trailer holds the packet's start offset in its upper half. */
	{
		uint64_t trailer;

		memcpy(&trailer, mem + 3 * 4096 + pkt.len, 8);
		assert_true(trailer == 0);
	}
	ring_pop(&rd, &pkt);
	assert_false(ring_commit(&rd));
	assert_int_equal(ctrl_of(10)->read_index, pkt.len + 8);
	assert_int_equal(ring_peek(&rd, &pkt), -EAGAIN);
	ring_destroy(&w);
	ring_destroy(&rd);
}

static void test_wraparound(void **state)
{
	static const uint64_t pfns[] = { 20, 40, 30 }; /* 8 KiB of data */
	struct vmbus_ring w, rd;
	struct ring_pkt pkt;
	uint8_t out[1500], in[1500];
	bool sig;
	unsigned wrapped = 0;

	assert_int_equal(ring_init(&w, &gm, pfns, 3, RING_WRITER), 0);
	assert_int_equal(ring_init(&rd, &gm, pfns, 3, RING_READER), 0);
	for (unsigned i = 0; i < 40; i++) {
		uint32_t before = w.wr;
		size_t n = 200 + (i * 97) % 1300;

		fill(out, n, i);
		assert_int_equal(ring_send(&w, VMBUS_PKT_DATA_INBAND, 0, i, out, (uint32_t)n, &sig), 0);
		if (w.wr < before)
			wrapped++;
		assert_int_equal(ring_peek(&rd, &pkt), 0);
		assert_int_equal(pkt.start, before);
		assert_int_equal(pkt.desc.trans_id, i);
		assert_int_equal(ring_pkt_read(&rd, &pkt, 16, in, (uint32_t)n), 0);
		assert_memory_equal(in, out, n);
		ring_pop(&rd, &pkt);
		ring_commit(&rd);
	}
	assert_true(wrapped >= 2);
	ring_destroy(&w);
	ring_destroy(&rd);
}

static void test_interrupt_suppression(void **state)
{
	static const uint64_t pfns[] = { 50, 51, 52 };
	struct vmbus_ring w, rd;
	struct ring_pkt pkt;
	uint8_t b[64] = { 0 };
	bool sig;

	assert_int_equal(ring_init(&w, &gm, pfns, 3, RING_WRITER), 0);
	assert_int_equal(ring_init(&rd, &gm, pfns, 3, RING_READER), 0);
	assert_int_equal(ring_send(&w, 6, 0, 1, b, sizeof(b), &sig), 0);
	assert_true(sig);
	/* Not empty any more: the reader is busy and will see it. */
	assert_int_equal(ring_send(&w, 6, 0, 2, b, sizeof(b), &sig), 0);
	assert_false(sig);
	/* Drain with interrupts masked; a write then does not signal. */
	ring_mask(&rd);
	while (ring_peek(&rd, &pkt) == 0)
		ring_pop(&rd, &pkt);
	ring_commit(&rd);
	assert_int_equal(ring_send(&w, 6, 0, 3, b, sizeof(b), &sig), 0);
	assert_false(sig);
	/* Unmasking reports the packet that arrived meanwhile. */
	assert_true(ring_unmask(&rd));
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	ring_pop(&rd, &pkt);
	ring_commit(&rd);
	assert_false(ring_unmask(&rd));
	assert_int_equal(ring_send(&w, 6, 0, 4, b, sizeof(b), &sig), 0);
	assert_true(sig);
	ring_destroy(&w);
	ring_destroy(&rd);
}

static void test_full_and_pending_send(void **state)
{
	static const uint64_t pfns[] = { 60, 61 }; /* 4 KiB of data */
	struct vmbus_ring w, rd;
	struct ring_pkt pkt;
	uint8_t b[1000] = { 0 };
	unsigned sent = 0;
	bool sig;
	int ret;

	assert_int_equal(ring_init(&w, &gm, pfns, 2, RING_WRITER), 0);
	assert_int_equal(ring_init(&rd, &gm, pfns, 2, RING_READER), 0);
	/* Each packet takes 1016 + 8 = 1024 bytes: 3 fit (4096 would be full). */
	while ((ret = ring_send(&w, 6, 0, sent, b, sizeof(b), &sig)) == 0)
		sent++;
	assert_int_equal(ret, -EAGAIN);
	assert_int_equal(sent, 3);
	assert_int_equal(ctrl_of(60)->pending_send_sz, 1024);
	assert_int_equal(ring_bytes_free(&w), 1024);
	/* The guest (reader) frees one packet: free goes 1024 -> 2048 and
	 * crosses pending_send_sz, so it must signal us. */
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	ring_pop(&rd, &pkt);
	assert_true(ring_commit(&rd));
	/* A second commit without crossing does not signal. */
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	ring_pop(&rd, &pkt);
	assert_false(ring_commit(&rd));
	assert_int_equal(ring_send(&w, 6, 0, 99, b, sizeof(b), &sig), 0);
	assert_int_equal(ctrl_of(60)->pending_send_sz, 0);
	/* Too big ever to fit. */
	{
		static uint8_t big[5000];

		assert_int_equal(ring_send(&w, 6, 0, 1, big, sizeof(big), &sig), -EMSGSIZE);
	}
	ring_destroy(&w);
	ring_destroy(&rd);
}

/* Write a raw descriptor at the reader's position and publish it. */
static void forge(uint64_t ctrl_pfn, uint64_t data_pfn, uint16_t off8, uint16_t len8,
		  uint32_t write_index)
{
	struct vmbus_pkt_desc d = { .type = 6, .offset8 = off8, .len8 = len8, .trans_id = 7 };

	memcpy(mem + data_pfn * 4096, &d, sizeof(d));
	ctrl_of(ctrl_pfn)->write_index = write_index;
}

static void test_corrupt_reader(void **state)
{
	static const uint64_t pfns[] = { 70, 71 };
	struct vmbus_ring rd;
	struct ring_pkt pkt;

	assert_int_equal(ring_init(&rd, &gm, pfns, 2, RING_READER), 0);
	forge(70, 71, 2, 4, 4096); /* write index == size */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 2, 4, 0xfffffff8);
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 2, 4, 36); /* misaligned */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 2, 4, 16); /* less than descriptor + trailer */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 2, 1, 64); /* len8 below the descriptor */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 1, 4, 64); /* offset8 inside the descriptor */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 5, 4, 64); /* offset8 beyond len8 */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 2, 8, 64); /* 64 + 8 trailer > 64 written */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 2, 0xffff, 4088); /* length overflowing the ring */
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	forge(70, 71, 0xffff, 0xffff, 4088);
	assert_int_equal(ring_peek(&rd, &pkt), -EPROTO);
	/* And a valid one still parses. */
	forge(70, 71, 2, 7, 64);
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	assert_int_equal(pkt.len, 56);
	/* Reads beyond the packet are refused, including overflowing ones. */
	{
		uint8_t b[16];

		assert_int_equal(ring_pkt_read(&rd, &pkt, 50, b, 8), -EINVAL);
		assert_int_equal(ring_pkt_read(&rd, &pkt, 0xfffffff8u, b, 16), -EINVAL);
		assert_int_equal(ring_pkt_read(&rd, &pkt, 48, b, 8), 0);
	}
	ring_destroy(&rd);
}

static void test_corrupt_writer(void **state)
{
	static const uint64_t pfns[] = { 80, 81 };
	struct vmbus_ring w;
	uint8_t b[8] = { 0 };
	bool sig;

	assert_int_equal(ring_init(&w, &gm, pfns, 2, RING_WRITER), 0);
	ctrl_of(80)->read_index = 5000;
	assert_int_equal(ring_send(&w, 6, 0, 1, b, sizeof(b), &sig), -EPROTO);
	ctrl_of(80)->read_index = 4;
	assert_int_equal(ring_send(&w, 6, 0, 1, b, sizeof(b), &sig), -EPROTO);
	assert_int_equal(ring_bytes_free(&w), 0);
	ctrl_of(80)->read_index = 0;
	assert_int_equal(ring_send(&w, 6, 0, 1, b, sizeof(b), &sig), 0);
	/* Header lengths must be descriptor-sized multiples of 8. */
	assert_int_equal(ring_write(&w, b, 8, NULL, 0, &sig), -EINVAL);
	{
		uint8_t hdr[20] = { 0 };

		assert_int_equal(ring_write(&w, hdr, 20, NULL, 0, &sig), -EINVAL);
	}
	ring_destroy(&w);
}

static void test_raw_header_and_iov(void **state)
{
	static const uint64_t pfns[] = { 90, 91, 92 };
	struct vmbus_ring w, rd;
	struct ring_pkt pkt;
	struct vmbus_pkt_xfer_pages hdr = { .d.type = VMBUS_PKT_DATA_USING_XFER_PAGES,
					    .xfer_pageset_id = 0xcafe, .range_cnt = 1 };
	struct vmbus_xfer_range range = { .byte_count = 100, .byte_offset = 4096 };
	uint8_t hdrbuf[32];
	struct ring_iov iov[2] = { { "abc", 3 }, { "defgh", 5 } };
	uint8_t got[8];
	bool sig;

	memcpy(hdrbuf, &hdr, sizeof(hdr));
	memcpy(hdrbuf + sizeof(hdr), &range, sizeof(range));
	assert_int_equal(ring_init(&w, &gm, pfns, 3, RING_WRITER), 0);
	assert_int_equal(ring_init(&rd, &gm, pfns, 3, RING_READER), 0);
	assert_int_equal(ring_write(&w, hdrbuf, sizeof(hdrbuf), iov, 2, &sig), 0);
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	assert_int_equal(pkt.desc.type, VMBUS_PKT_DATA_USING_XFER_PAGES);
	assert_int_equal(pkt.data_off, 32);
	assert_int_equal(pkt.len, 40);
	assert_int_equal(ring_pkt_read(&rd, &pkt, 32, got, 8), 0);
	assert_memory_equal(got, "abcdefgh", 8);
	ring_destroy(&w);
	ring_destroy(&rd);
}

static void test_commit_crossing_rule(void **state)
{
	static const uint64_t pfns[] = { 100, 101 };
	struct vmbus_ring w, rd;
	struct ring_pkt pkt;
	uint8_t b[100] = { 0 };
	bool sig;

	assert_int_equal(ring_init(&w, &gm, pfns, 2, RING_WRITER), 0);
	assert_int_equal(ring_init(&rd, &gm, pfns, 2, RING_READER), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(ring_send(&w, 6, 0, i, b, sizeof(b), &sig), 0);
	/* 10 packets of 128 bytes: free = 4096 - 1280 = 2816. The guest wants
	 * 3000: freeing one (2944) is not enough, two (3072) crosses. */
	ctrl_of(100)->pending_send_sz = 3000;
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	ring_pop(&rd, &pkt);
	assert_false(ring_commit(&rd));
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	ring_pop(&rd, &pkt);
	assert_true(ring_commit(&rd));
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	ring_pop(&rd, &pkt);
	assert_false(ring_commit(&rd)); /* already above */
	/* pop of a packet that is not the head is ignored */
	pkt.start += 8;
	ring_pop(&rd, &pkt);
	assert_int_equal(ring_bytes_to_read(&rd), 7 * 128);
	ring_destroy(&w);
	ring_destroy(&rd);
}

/* The host finds the ring empty only after publishing its read index, so a
 * guest write right after sees an empty ring and signals (the guest signals
 * only on its own empty -> non-empty transition). */
static void test_empty_peek_publishes_read_index(void **state)
{
	static const uint64_t pfns[] = { 110, 111 };
	struct vmbus_ring w, rd;
	struct ring_pkt pkt;
	uint8_t b[100] = { 0 };
	bool sig;

	assert_int_equal(ring_init(&w, &gm, pfns, 2, RING_WRITER), 0);
	assert_int_equal(ring_init(&rd, &gm, pfns, 2, RING_READER), 0);
	assert_int_equal(ring_send(&w, 6, 0, 1, b, sizeof(b), &sig), 0);
	assert_true(sig);
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	ring_pop(&rd, &pkt);
	assert_int_equal(ctrl_of(110)->read_index, 0); /* not yet published */
	assert_int_equal(ring_peek(&rd, &pkt), -EAGAIN);
	assert_int_equal(ctrl_of(110)->read_index, 128);
	assert_int_equal(ring_send(&w, 6, 0, 2, b, sizeof(b), &sig), 0);
	assert_true(sig);
	assert_int_equal(ring_peek(&rd, &pkt), 0);
	assert_int_equal(pkt.desc.trans_id, 2);
	ring_pop(&rd, &pkt);
	assert_false(ring_commit(&rd));
	assert_int_equal(ctrl_of(110)->read_index, 256);
	ring_destroy(&w);
	ring_destroy(&rd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip_scattered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_suppression, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_and_pending_send, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_header_and_iov, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_crossing_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_peek_publishes_read_index, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
