/* blkwrite: drive hvmm's block layer from the interop tests.
 *
 *   blkwrite IMAGE write OFFSET LENGTH SEED    a pattern, through blk_write
 *   blkwrite IMAGE discard OFFSET LENGTH
 *   blkwrite IMAGE crash OFFSET LENGTH SEED    a write whose metadata update
 *                                              stops after its log entry is
 *                                              durable (VHDX): a pending log
 *   blkwrite IMAGE size                        print the virtual size
 *
 * Offsets and lengths in bytes (K, M, G suffixes). Built by tests/interop/run
 * against build/libhvmm.a. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "util/parse.h"

extern bool vhdx_test_stop_after_log;

static void pattern(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = (off + i) * 0x9E3779B97F4A7C15ULL ^ seed;

		memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
	}
}

static uint64_t num(const char *s)
{
	uint64_t v;

	if (parse_size(s, &v)) {
		fprintf(stderr, "blkwrite: not a number: %s\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct blk_error err = { "" };
	struct blk_disk *d;
	struct blk_info info;
	uint64_t off, len;
	uint8_t *buf;
	int ret = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: blkwrite IMAGE write|discard|crash|size ...\n");
		return 2;
	}
	d = blk_open(argv[1], BLK_FMT_AUTO, strcmp(argv[2], "size") ? 0 : BLK_OPEN_RDONLY, &err);
	if (!d) {
		fprintf(stderr, "blkwrite: %s\n", err.msg);
		return 1;
	}
	if (!strcmp(argv[2], "size")) {
		blk_get_info(d, &info);
		printf("%" PRIu64 "\n", info.size);
		blk_close(d);
		return 0;
	}
	if (argc < 5) {
		fprintf(stderr, "blkwrite: %s needs OFFSET LENGTH\n", argv[2]);
		return 2;
	}
	off = num(argv[3]);
	len = num(argv[4]);
	if (!strcmp(argv[2], "discard")) {
		ret = blk_discard(d, off, len);
	} else {
		unsigned seed = argc > 5 ? (unsigned)num(argv[5]) : 1;
		bool crash = !strcmp(argv[2], "crash");

		buf = malloc(len);
		if (!buf)
			return 1;
		pattern(buf, len, off, seed);
		vhdx_test_stop_after_log = crash;
		ret = blk_write(d, off, buf, len, 0);
		vhdx_test_stop_after_log = false;
		if (crash)
			ret = ret == -EIO ? 0 : -EINVAL;
		free(buf);
	}
	if (ret)
		fprintf(stderr, "blkwrite: %s %s: %s\n", argv[1], argv[2], strerror(-ret));
	blk_close(d);
	return ret ? 1 : 0;
}
