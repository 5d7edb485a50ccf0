/* SynIC message slots (free, busy, msg_pending, EOM retry, FIFO, queue
 * limits, disabled pages) and event flags. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/guest_mem.h"
#include "hyperv/synic.h"
#include "util/log.h"

#define MEM_SIZE (1u << 20)
#define SIMP0 0x10000ull
#define SIEFP0 0x11000ull
#define SIMP1 0x12000ull
#define SIEFP1 0x13000ull

static struct guest_mem gm;
static uint8_t *mem;
static struct synic *syn;

struct assert_rec {
	uint32_t vp, sint;
};
static struct assert_rec asserts[64];
static unsigned nr_asserts;

static int fake_assert(void *ctx, uint32_t vp, uint32_t sint)
{
	if (nr_asserts < 64)
		asserts[nr_asserts] = (struct assert_rec){ vp, sint };
	nr_asserts++;
	return 0;
}

static const struct synic_ops ops = { .assert_sint = fake_assert };

static int setup(void **state)
{
	mem = aligned_alloc(4096, MEM_SIZE);
	assert_non_null(mem);
	memset(mem, 0, MEM_SIZE);
	guest_mem_layout(&gm, mem, MEM_SIZE);
	syn = synic_new(&gm, 2, 4, &ops, NULL);
	assert_non_null(syn);
	nr_asserts = 0;
	assert_int_equal(synic_set_regs(syn, 0, 1, SIMP0 | 1, SIEFP0 | 1), 0);
	assert_int_equal(synic_set_regs(syn, 1, 1, SIMP1 | 1, SIEFP1 | 1), 0);
	return 0;
}

static int teardown(void **state)
{
	synic_free(syn);
	free(mem);
	return 0;
}

static struct hv_message *slot(uint64_t simp, unsigned sint)
{
	return (struct hv_message *)(mem + simp + sint * 256);
}

static void test_bad_args(void **state)
{
	uint8_t p[241] = { 0 };

	assert_int_equal(synic_post_message(syn, 2, 2, 1, p, 8), -EINVAL);
	assert_int_equal(synic_post_message(syn, 0, 16, 1, p, 8), -EINVAL);
	assert_int_equal(synic_post_message(syn, 0, 2, 0, p, 8), -EINVAL);
	assert_int_equal(synic_post_message(syn, 0, 2, 1, p, 241), -EINVAL);
	assert_int_equal(synic_post_message(syn, 0, 2, 1, NULL, 8), -EINVAL);
	assert_int_equal(synic_set_event(syn, 0, 2, 2048), -EINVAL);
	assert_int_equal(synic_set_event(syn, 5, 2, 1), -EINVAL);
	assert_int_equal(synic_set_regs(syn, 2, 0, 0, 0), -EINVAL);
	assert_int_equal(synic_eom(syn, 0, 16), -EINVAL);
	assert_int_equal(synic_ack(syn, 9), -EINVAL);
	assert_null(synic_new(&gm, 0, 0, &ops, NULL));
	assert_int_equal(nr_asserts, 0);
}

static void test_free_slot(void **state)
{
	uint8_t p[16] = "0123456789abcde";
	struct hv_message *s = slot(SIMP0, 2);

	assert_int_equal(synic_post_message(syn, 0, 2, 1, p, sizeof(p)), 0);
	assert_int_equal(s->hdr.message_type, 1);
	assert_int_equal(s->hdr.payload_size, 16);
	assert_int_equal(s->hdr.message_flags, 0);
	assert_memory_equal(s->payload, p, sizeof(p));
	assert_int_equal(nr_asserts, 1);
	assert_int_equal(asserts[0].vp, 0);
	assert_int_equal(asserts[0].sint, 2);
	/* Other SINTs' slots are untouched. */
	assert_int_equal(slot(SIMP0, 1)->hdr.message_type, 0);
	assert_int_equal(slot(SIMP0, 3)->hdr.message_type, 0);
}

static void test_busy_slot_and_eom(void **state)
{
	struct hv_message *s = slot(SIMP1, 2);
	uint32_t a = 0xaaaa, b = 0xbbbb, c = 0xcccc;

	assert_int_equal(synic_post_message(syn, 1, 2, 1, &a, 4), 0);
	assert_int_equal(nr_asserts, 1);
	/* Guest has not consumed: b and c wait, msg_pending asks for an EOM. */
	assert_int_equal(synic_post_message(syn, 1, 2, 1, &b, 4), 0);
	assert_int_equal(synic_post_message(syn, 1, 2, 1, &c, 4), 0);
	assert_int_equal(synic_queued(syn, 1, 2), 2);
	assert_int_equal(s->hdr.message_flags & HV_MESSAGE_FLAG_PENDING, 1);
	assert_int_equal(nr_asserts, 1);
	/* EOM without freeing the slot delivers nothing. */
	assert_int_equal(synic_eom(syn, 1, 2), 0);
	/* Guest frees the slot and EOMs: b arrives, flagged pending (c waits). */
	s->hdr.message_type = 0;
	assert_int_equal(synic_eom(syn, 1, 2), 1);
	assert_int_equal(s->hdr.message_type, 1);
	assert_memory_equal(s->payload, &b, 4);
	assert_int_equal(s->hdr.message_flags, HV_MESSAGE_FLAG_PENDING);
	assert_int_equal(nr_asserts, 2);
	s->hdr.message_type = 0;
	assert_int_equal(synic_ack(syn, 1), 1);
	assert_memory_equal(s->payload, &c, 4);
	assert_int_equal(s->hdr.message_flags, 0);
	assert_int_equal(synic_queued(syn, 1, 2), 0);
	assert_int_equal(nr_asserts, 3);
}

static void test_slot_freed_without_eom(void **state)
{
	struct hv_message *s = slot(SIMP0, 2);
	uint32_t a = 1, b = 2, c = 3;

	assert_int_equal(synic_post_message(syn, 0, 2, 1, &a, 4), 0);
	assert_int_equal(synic_post_message(syn, 0, 2, 1, &b, 4), 0);
	/* The guest freed the slot but its EOM was not reported yet: the next
	 * post delivers the oldest queued message first (FIFO). */
	s->hdr.message_type = 0;
	assert_int_equal(synic_post_message(syn, 0, 2, 1, &c, 4), 0);
	assert_memory_equal(s->payload, &b, 4);
	assert_int_equal(synic_queued(syn, 0, 2), 1);
}

static void test_queue_full(void **state)
{
	uint32_t v = 0;

	assert_int_equal(synic_post_message(syn, 0, 2, 1, &v, 4), 0); /* in the slot */
	for (int i = 0; i < 4; i++)
		assert_int_equal(synic_post_message(syn, 0, 2, 1, &v, 4), 0);
	assert_int_equal(synic_post_message(syn, 0, 2, 1, &v, 4), -ENOBUFS);
	assert_int_equal(synic_queued(syn, 0, 2), 4);
	/* Another SINT has its own queue. */
	assert_int_equal(synic_post_message(syn, 0, 3, 1, &v, 4), 0);
}

static void test_disabled_pages(void **state)
{
	uint32_t v = 7;

	/* SIMP disabled: queued until enabled. */
	assert_int_equal(synic_set_regs(syn, 0, 1, SIMP0, SIEFP0 | 1), 0);
	assert_int_equal(synic_post_message(syn, 0, 2, 1, &v, 4), 0);
	assert_int_equal(synic_queued(syn, 0, 2), 1);
	assert_int_equal(nr_asserts, 0);
	/* SCONTROL disabled: still queued. */
	assert_int_equal(synic_set_regs(syn, 0, 0, SIMP0 | 1, SIEFP0 | 1), 0);
	assert_int_equal(synic_queued(syn, 0, 2), 1);
	assert_int_equal(synic_set_event(syn, 0, 2, 5), -ENXIO);
	/* SIMP pointing outside guest RAM: nothing written, still queued. */
	assert_int_equal(synic_set_regs(syn, 0, 1, 0x7fff0000ull | 1, SIEFP0 | 1), 0);
	assert_int_equal(synic_queued(syn, 0, 2), 1);
	assert_int_equal(synic_set_regs(syn, 0, 1, SIMP0 | 1, SIEFP0 | 1), 0);
	assert_int_equal(synic_queued(syn, 0, 2), 0);
	assert_int_equal(slot(SIMP0, 2)->hdr.message_type, 1);
	assert_int_equal(nr_asserts, 1);
}

static void test_event_flags(void **state)
{
	uint64_t *w = (uint64_t *)(mem + SIEFP1 + 2 * 256);

	assert_int_equal(synic_set_event(syn, 1, 2, 5), 1);
	assert_int_equal(w[0], 1ull << 5);
	assert_int_equal(nr_asserts, 1);
	assert_int_equal(asserts[0].vp, 1);
	assert_int_equal(asserts[0].sint, 2);
	/* Already pending: no new interrupt. */
	assert_int_equal(synic_set_event(syn, 1, 2, 5), 0);
	assert_int_equal(nr_asserts, 1);
	/* The guest consumed it: next one interrupts again. */
	w[0] = 0;
	assert_int_equal(synic_set_event(syn, 1, 2, 5), 1);
	assert_int_equal(synic_set_event(syn, 1, 2, 2047), 1);
	assert_int_equal(w[31], 1ull << 63);
	assert_int_equal(nr_asserts, 3);
	/* VP 0's page and other SINTs are untouched. */
	assert_int_equal(*(uint64_t *)(mem + SIEFP0 + 2 * 256), 0);
	assert_int_equal(*(uint64_t *)(mem + SIEFP1 + 3 * 256), 0);
	/* raise: the flag is already set, the SINT is asserted anyway (the
	 * guest may have lost the first interrupt). */
	assert_int_equal(synic_raise_event(syn, 1, 2, 5), 0);
	assert_int_equal(nr_asserts, 4);
	assert_int_equal(w[0], 1ull << 5);
	w[0] = 0;
	assert_int_equal(synic_raise_event(syn, 1, 2, 6), 0);
	assert_int_equal(w[0], 1ull << 6);
	assert_int_equal(nr_asserts, 5);
	assert_int_equal(synic_raise_event(syn, 1, 2, 2048), -EINVAL);
}

static void test_reset(void **state)
{
	uint32_t v = 1;

	assert_int_equal(synic_post_message(syn, 0, 2, 1, &v, 4), 0);
	assert_int_equal(synic_post_message(syn, 0, 2, 1, &v, 4), 0);
	assert_int_equal(synic_queued(syn, 0, 2), 1);
	synic_reset(syn);
	assert_int_equal(synic_queued(syn, 0, 2), 0);
	/* Registers forgotten: messages wait for the guest to enable again. */
	slot(SIMP0, 2)->hdr.message_type = 0;
	assert_int_equal(synic_post_message(syn, 0, 2, 1, &v, 4), 0);
	assert_int_equal(synic_queued(syn, 0, 2), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_slot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_slot_and_eom, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_freed_without_eom, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disabled_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
	};

	log_threshold = LOG_ERR;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
