/* Several threads on one image at once, as the block queue's workers use
 * it: writers on their own regions (allocating), readers everywhere, a
 * discarding thread, a growing thread. Every region ends as its owner
 * left it. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "block/block.h"
#include "block/block_internal.h"
#include "block/image.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/hvmm-threads-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#define WRITERS 6
#define REGION (4 * MiB)
#define ROUNDS 40

static void pattern(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = (off + i) * 0x9E3779B97F4A7C15ULL ^ seed;

		memcpy(buf + i, &v, MIN(8, len - i));
	}
}

struct ctx {
	struct blk_disk *d;
	int id;
	int errors;
	unsigned seed;
	bool *stop;
};

/* Writer i owns region i: it writes chunks and reads each back. */
static void *writer(void *arg)
{
	struct ctx *c = arg;
	uint8_t *buf = malloc(64 * KiB), *back = malloc(64 * KiB);
	unsigned r = c->seed;

	for (int n = 0; n < ROUNDS; n++) {
		uint64_t off = (uint64_t)c->id * REGION + (uint64_t)(rand_r(&r) % (REGION / 4096 - 16)) * 4096;
		size_t len = (size_t)(rand_r(&r) % 16 + 1) * 4096;

		pattern(buf, len, off, 1);
		if (blk_write(c->d, off, buf, len, n % 7 ? 0 : BLK_FUA) ||
		    blk_read(c->d, off, back, len) || memcmp(buf, back, len))
			c->errors++;
		if (n % 10 == 0 && blk_flush(c->d))
			c->errors++;
	}
	free(buf);
	free(back);
	return NULL;
}

static void *reader(void *arg)
{
	struct ctx *c = arg;
	uint8_t *buf = malloc(256 * KiB);
	unsigned r = c->seed;

	while (!__atomic_load_n(c->stop, __ATOMIC_ACQUIRE)) {
		struct blk_info info;
		uint64_t off;

		blk_get_info(c->d, &info);
		off = (uint64_t)(rand_r(&r) % (unsigned)(info.size / 4096 - 64)) * 4096;
		if (blk_read(c->d, off, buf, 256 * KiB))
			c->errors++;
	}
	free(buf);
	return NULL;
}

/* The discarder owns the region after the writers'. */
static void *discarder(void *arg)
{
	struct ctx *c = arg;
	uint64_t base = (uint64_t)WRITERS * REGION;
	uint8_t *buf = malloc(MiB);

	for (int n = 0; n < ROUNDS / 4; n++) {
		pattern(buf, MiB, base, 2);
		if (blk_write(c->d, base, buf, MiB, 0) || blk_discard(c->d, base, MiB) ||
		    blk_read(c->d, base, buf, MiB) || !blk_is_zero(buf, MiB))
			c->errors++;
	}
	free(buf);
	return NULL;
}

static void *grower(void *arg)
{
	struct ctx *c = arg;

	for (int n = 1; n <= 3; n++) {
		struct blk_info info;

		blk_get_info(c->d, &info);
		if (blk_resize(c->d, info.size + 8 * MiB))
			c->errors++;
		usleep(1000);
	}
	return NULL;
}

static void stress(const char *name, enum blk_format fmt, enum blk_type type, uint32_t bs,
		   bool diff)
{
	char path[256], parent[256];
	struct blk_create_opts o = { .format = fmt, .type = type, .size = (WRITERS + 2) * REGION,
				     .block_size = bs };
	struct blk_error err = { "" };
	pthread_t t[WRITERS + 3];
	struct ctx c[WRITERS + 3];
	bool stop = false;
	struct blk_disk *d;
	uint8_t *buf = malloc(REGION), *want = malloc(REGION);

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(parent, sizeof(parent), "%s/parent-%s", dir, name);
	if (diff) {
		o.type = BLK_TYPE_DYNAMIC;
		assert_int_equal(blk_create(parent, &o, &err), 0);
		o.type = BLK_TYPE_DIFF;
		o.parent = parent;
		o.size = 0;
	}
	if (blk_create(path, &o, &err))
		fail_msg("%s", err.msg);
	d = blk_open(path, fmt, 0, &err);
	assert_non_null(d);
	for (int i = 0; i < WRITERS + 3; i++) {
		c[i] = (struct ctx){ d, i, 0, 1234u + (unsigned)i, &stop };
		pthread_create(&t[i], NULL,
			       i < WRITERS ? writer : i == WRITERS ? reader :
			       i == WRITERS + 1 ? discarder : grower, &c[i]);
	}
	for (int i = 0; i < WRITERS + 3; i++)
		if (i != WRITERS)
			pthread_join(t[i], NULL);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	pthread_join(t[WRITERS], NULL);
	for (int i = 0; i < WRITERS + 3; i++)
		if (c[i].errors)
			fail_msg("%s: thread %d had %d errors", name, i, c[i].errors);
	blk_close(d);

	/* Replay every writer's sequence: the last write of each 4 KiB wins,
	 * and all of them wrote the same pattern, so the region is either the
	 * pattern or zeros, per 4 KiB. */
	d = blk_open(path, fmt, BLK_OPEN_RDONLY, &err);
	assert_non_null(d);
	for (int i = 0; i < WRITERS; i++) {
		uint64_t base = (uint64_t)i * REGION;

		assert_int_equal(blk_read(d, base, buf, REGION), 0);
		pattern(want, REGION, base, 1);
		for (size_t s = 0; s < REGION; s += 4096)
			if (memcmp(buf + s, want + s, 4096) && !blk_is_zero(buf + s, 4096))
				fail_msg("%s: region %d holds garbage at %zu", name, i, s);
	}
	assert_int_equal(blk_read(d, (uint64_t)WRITERS * REGION, buf, MiB), 0);
	assert_true(blk_is_zero(buf, MiB));
	blk_close(d);
	{
		struct blk_check_result r;

		assert_int_equal(blk_check(path, fmt, false, NULL, NULL, &r, &err), 0);
		if (r.corruptions || r.leaks)
			fail_msg("%s: %u corruptions, %u leaks", name, r.corruptions, r.leaks);
	}
	free(buf);
	free(want);
}

static void vhdx_dynamic(void **state) { stress("t.vhdx", BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, MiB, false); }
static void vhdx_diff(void **state) { stress("td.vhdx", BLK_FMT_VHDX, BLK_TYPE_DYNAMIC, MiB, true); }
static void vhdx_fixed(void **state) { stress("tf.vhdx", BLK_FMT_VHDX, BLK_TYPE_FIXED, MiB, false); }
static void vhd_dynamic(void **state) { stress("t.vhd", BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 512 * KiB, false); }
static void vhd_diff(void **state) { stress("td.vhd", BLK_FMT_VHD, BLK_TYPE_DYNAMIC, 512 * KiB, true); }
static void raw_file(void **state) { stress("t.raw", BLK_FMT_RAW, BLK_TYPE_DYNAMIC, 0, false); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vhdx_dynamic),
		cmocka_unit_test(vhdx_diff),
		cmocka_unit_test(vhdx_fixed),
		cmocka_unit_test(vhd_dynamic),
		cmocka_unit_test(vhd_diff),
		cmocka_unit_test(raw_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
