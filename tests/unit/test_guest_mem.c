/* Unit tests for core/guest_mem: layout around the MMIO hole and range checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/mman.h>

#include "core/guest_mem.h"

/* An inaccessible reservation: only addresses are compared, never touched. */
static uint8_t *fake;

static int reserve(void **state)
{
	fake = mmap(NULL, 5ULL << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return fake == MAP_FAILED ? -1 : 0;
}

static void small_layout(void **state)
{
	struct guest_mem gm;

	guest_mem_layout(&gm, fake, 256 << 20);
	assert_int_equal(gm.nr_ranges, 1);
	assert_ptr_equal(guest_mem_ptr(&gm, 0, 256 << 20), fake);
	assert_ptr_equal(guest_mem_ptr(&gm, 4096, 1), fake + 4096);
	assert_null(guest_mem_ptr(&gm, (256 << 20) - 1, 2));
	assert_null(guest_mem_ptr(&gm, 256 << 20, 1));
	assert_non_null(guest_mem_ptr(&gm, 256 << 20, 0)); /* empty range at the end */
}

static void split_layout(void **state)
{
	struct guest_mem gm;
	uint64_t size = 4ULL << 30;

	guest_mem_layout(&gm, fake, size);
	assert_int_equal(gm.nr_ranges, 2);
	assert_int_equal(gm.range[0].size, GUEST_MEM_LOW_END);
	assert_int_equal(gm.range[1].gpa, GUEST_MEM_HIGH_START);
	assert_int_equal(gm.range[1].size, size - GUEST_MEM_LOW_END);
	/* The hole is not RAM, and a range may not straddle it. */
	assert_null(guest_mem_ptr(&gm, GUEST_MEM_LOW_END, 1));
	assert_null(guest_mem_ptr(&gm, 0xfee00000, 4));
	assert_null(guest_mem_ptr(&gm, GUEST_MEM_LOW_END - 4, 8));
	assert_ptr_equal(guest_mem_ptr(&gm, GUEST_MEM_HIGH_START, 8), fake + GUEST_MEM_LOW_END);
}

static void overflow_is_refused(void **state)
{
	struct guest_mem gm;

	guest_mem_layout(&gm, fake, 64 << 20);
	assert_null(guest_mem_ptr(&gm, UINT64_MAX, 2));
	assert_null(guest_mem_ptr(&gm, 4096, UINT64_MAX));
	assert_null(guest_mem_ptr(&gm, UINT64_MAX - 10, 20));
}

static void copies(void **state)
{
	static uint8_t ram[8192];
	struct guest_mem gm;
	uint8_t buf[4] = { 1, 2, 3, 4 }, out[4];

	guest_mem_layout(&gm, ram, sizeof(ram));
	assert_int_equal(guest_mem_write(&gm, 100, buf, 4), 0);
	assert_int_equal(guest_mem_read(&gm, 100, out, 4), 0);
	assert_memory_equal(buf, out, 4);
	assert_int_equal(guest_mem_write(&gm, 8190, buf, 4), -EFAULT);
	assert_int_equal(guest_mem_read(&gm, 8192, out, 1), -EFAULT);
}

/* Guest RAM starts at a 2 MiB boundary, is exactly `size` bytes (nothing of
 * the over-allocation stays mapped after it), zeroed and writable. */
static void map_is_aligned_and_exact(void **state)
{
	const uint64_t sizes[] = { 4096, (6ULL << 20) + 4096, 64ULL << 20 };

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t size = sizes[i];
		uint8_t *p = guest_mem_map(size);

		assert_non_null(p);
		assert_int_equal((uintptr_t)p % GUEST_MEM_ALIGN, 0);
		assert_int_equal(p[0] | p[size - 1], 0);
		p[0] = p[size - 1] = 0xa5;
		assert_int_equal(p[0] & p[size - 1], 0xa5);
		errno = 0;
		assert_int_equal(msync(p + ((size + 4095) & ~4095ULL), 4096, MS_ASYNC), -1);
		assert_int_equal(errno, ENOMEM);
		assert_int_equal(munmap(p, size), 0);
	}
	errno = 0;
	assert_null(guest_mem_map(0));
	assert_int_equal(errno, EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(small_layout),
		cmocka_unit_test(split_layout),
		cmocka_unit_test(overflow_is_refused),
		cmocka_unit_test(copies),
		cmocka_unit_test(map_is_aligned_and_exact),
	};
	return cmocka_run_group_tests(tests, reserve, NULL);
}
