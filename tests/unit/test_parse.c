/* Unit tests for util/parse: sizes and bounded integers from the command line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/parse.h"

static void size_units(void **state)
{
	uint64_t v;

	assert_int_equal(parse_size("512M", &v), 0);
	assert_int_equal(v, 512ULL << 20);
	assert_int_equal(parse_size("2G", &v), 0);
	assert_int_equal(v, 2ULL << 30);
	assert_int_equal(parse_size("1GiB", &v), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(parse_size("64mb", &v), 0);
	assert_int_equal(v, 64ULL << 20);
	assert_int_equal(parse_size("4k", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("1T", &v), 0);
	assert_int_equal(v, 1ULL << 40);
	assert_int_equal(parse_size("12345", &v), 0);
	assert_int_equal(v, 12345);
}

static void size_rejects(void **state)
{
	uint64_t v = 7;

	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("M", &v), -EINVAL);
	assert_int_equal(parse_size("12X", &v), -EINVAL);
	assert_int_equal(parse_size("1.5G", &v), -EINVAL);
	assert_int_equal(parse_size("-1G", &v), -EINVAL);
	assert_int_equal(parse_size("1Gx", &v), -EINVAL);
	assert_int_equal(parse_size(" 1G", &v), -EINVAL);
	assert_int_equal(parse_size(NULL, &v), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_size("16777216T", &v), -ERANGE); /* 2^64 */
	assert_int_equal(v, 7); /* untouched on error */
}

static void uint_bounds(void **state)
{
	uint64_t v;

	assert_int_equal(parse_uint("1", 1, 64, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(parse_uint("64", 1, 64, &v), 0);
	assert_int_equal(v, 64);
	assert_int_equal(parse_uint("0", 1, 64, &v), -ERANGE);
	assert_int_equal(parse_uint("65", 1, 64, &v), -ERANGE);
	assert_int_equal(parse_uint("4x", 1, 64, &v), -EINVAL);
	assert_int_equal(parse_uint("", 1, 64, &v), -EINVAL);
	assert_int_equal(parse_uint("-2", 1, 64, &v), -EINVAL);
}

static void utf8(void **state)
{
	assert_true(utf8_valid(""));
	assert_true(utf8_valid("plain/ascii.vhdx"));
	assert_true(utf8_valid("d\xc3\xa9j\xc3\xa0 \xe2\x82\xac \xf0\x9f\x98\x80"));
	assert_false(utf8_valid("\xff"));
	assert_false(utf8_valid("\xc3"));             /* truncated */
	assert_false(utf8_valid("\xc0\xaf"));         /* overlong */
	assert_false(utf8_valid("\xe0\x80\xaf"));     /* overlong */
	assert_false(utf8_valid("\xed\xa0\x80"));     /* surrogate */
	assert_false(utf8_valid("\xf4\x90\x80\x80")); /* past U+10FFFF */
	assert_false(utf8_valid("a\x80" "b"));           /* stray continuation */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(size_units),
		cmocka_unit_test(size_rejects),
		cmocka_unit_test(uint_bounds),
		cmocka_unit_test(utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
