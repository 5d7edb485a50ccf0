/* --disk argument parsing: PATH[,ro][,format=raw|vhd|vhdx][,lun=N][,controller=N]. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "storvsp/storvsp.h"

static struct storvsp_disk_config dc;
static char err[256];

static int parse(const char *arg)
{
	err[0] = 0;
	return storvsp_parse_disk_arg(arg, &dc, err, sizeof(err));
}

static void test_path_only(void **state)
{
	assert_int_equal(parse("/var/lib/vm/disk.img"), 0);
	assert_string_equal(dc.path, "/var/lib/vm/disk.img");
	assert_false(dc.read_only);
	assert_int_equal(dc.format, BLK_FMT_AUTO);
	assert_int_equal(dc.lun, -1);
	assert_int_equal(dc.controller, 0);
}

static void test_all_options(void **state)
{
	assert_int_equal(parse("d.vhdx,ro,format=vhdx,lun=63,controller=3"), 0);
	assert_string_equal(dc.path, "d.vhdx");
	assert_true(dc.read_only);
	assert_int_equal(dc.format, BLK_FMT_VHDX);
	assert_int_equal(dc.lun, 63);
	assert_int_equal(dc.controller, 3);
	assert_int_equal(parse("x,controller=1,format=raw,lun=0"), 0);
	assert_int_equal(dc.format, BLK_FMT_RAW);
	assert_int_equal(dc.lun, 0);
	assert_int_equal(dc.controller, 1);
	assert_int_equal(parse("x,format=vhd"), 0);
	assert_int_equal(dc.format, BLK_FMT_VHD);
}

static void test_comma_in_path(void **state)
{
	assert_int_equal(parse("a,,b,,c.img,ro"), 0);
	assert_string_equal(dc.path, "a,b,c.img");
	assert_true(dc.read_only);
	assert_int_equal(parse("trailing,,"), 0);
	assert_string_equal(dc.path, "trailing,");
}

static void test_errors(void **state)
{
	static const char *const bad[] = {
		"",
		",ro",
		"x,",
		"x,rw",
		"x,ro,ro",
		"x,format=qcow2",
		"x,format=",
		"x,lun=64",
		"x,lun=-1",
		"x,lun=abc",
		"x,lun=",
		"x,controller=4",
		"x,controller=1x",
		"x,lun=1,lun=2",
		"x,,,",
		"x,ro,,",
		"/tmp/\xff.raw",       /* not UTF-8 */
		"/tmp/\xc0\xaf.raw",   /* overlong '/' */
	};

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i]), -EINVAL);
		assert_true(err[0] != 0);
	}
	assert_int_equal(parse("/tmp/d\xc3\xa9j\xc3\xa0-vu.vhdx"), 0); /* UTF-8 is fine */
	assert_int_equal(storvsp_parse_disk_arg(NULL, &dc, err, sizeof(err)), -EINVAL);
	/* No error buffer is fine. */
	assert_int_equal(storvsp_parse_disk_arg("x,bogus", &dc, NULL, 0), -EINVAL);
}

static void test_long_path(void **state)
{
	static char arg[STORVSP_PATH_MAX + 16];

	memset(arg, 'p', STORVSP_PATH_MAX - 1);
	arg[STORVSP_PATH_MAX - 1] = 0;
	assert_int_equal(parse(arg), 0);
	memset(arg, 'p', STORVSP_PATH_MAX);
	arg[STORVSP_PATH_MAX] = 0;
	assert_int_equal(parse(arg), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_only),
		cmocka_unit_test(test_all_options),
		cmocka_unit_test(test_comma_in_path),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_long_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
