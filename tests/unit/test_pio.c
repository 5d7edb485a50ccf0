/* Unit tests for core/pio: claiming port ranges and dispatch. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/pio.h"

struct probe {
	uint16_t port;
	unsigned calls;
	bool last_write;
};

static void handler(void *opaque, uint16_t port, uint8_t *data, unsigned size, bool is_write)
{
	struct probe *p = opaque;

	p->port = port;
	p->calls++;
	p->last_write = is_write;
	if (!is_write)
		data[0] = 0x5a;
}

static void claim_and_dispatch(void **state)
{
	struct pio_bus bus = { 0 };
	struct probe a = { 0 }, b = { 0 };
	uint8_t d[4] = { 0 };

	assert_int_equal(pio_register(&bus, 0x3f8, 8, handler, &a), 0);
	assert_int_equal(pio_register(&bus, 0x600, 2, handler, &b), 0);
	assert_true(pio_dispatch(&bus, 0x3fd, d, 1, false));
	assert_int_equal(a.port, 0x3fd);
	assert_int_equal(d[0], 0x5a);
	assert_true(pio_dispatch(&bus, 0x601, d, 1, true));
	assert_int_equal(b.calls, 1);
	assert_true(b.last_write);
	assert_false(pio_dispatch(&bus, 0x400, d, 1, true));
	assert_int_equal(a.calls + b.calls, 2);
}

static void unclaimed_reads_all_ones(void **state)
{
	struct pio_bus bus = { 0 };
	uint8_t d[4] = { 0 };

	assert_false(pio_dispatch(&bus, 0xcfc, d, 4, false));
	assert_int_equal(d[0] & d[1] & d[2] & d[3], 0xff);
}

static void overlaps_refused(void **state)
{
	struct pio_bus bus = { 0 };
	struct probe a;

	assert_int_equal(pio_register(&bus, 0x3f8, 8, handler, &a), 0);
	assert_int_equal(pio_register(&bus, 0x3ff, 1, handler, &a), -EBUSY);
	assert_int_equal(pio_register(&bus, 0x3f0, 9, handler, &a), -EBUSY);
	assert_int_equal(pio_register(&bus, 0x3f0, 8, handler, &a), 0);
	assert_int_equal(pio_register(&bus, 0xffff, 2, handler, &a), -EINVAL);
	assert_int_equal(pio_register(&bus, 0x10, 0, handler, &a), -EINVAL);
}

static void bus_full(void **state)
{
	struct pio_bus bus = { 0 };
	struct probe a;

	for (unsigned i = 0; i < PIO_MAX_REGIONS; i++)
		assert_int_equal(pio_register(&bus, (uint16_t)(0x1000 + i), 1, handler, &a), 0);
	assert_int_equal(pio_register(&bus, 0x2000, 1, handler, &a), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(claim_and_dispatch),
		cmocka_unit_test(unclaimed_reads_all_ones),
		cmocka_unit_test(overlaps_refused),
		cmocka_unit_test(bus_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
