/* libFuzzer: --disk / `hvctl disk add` specs. A parse either fails with a
 * message or yields a path that is non-empty, UTF-8, NUL-terminated inside
 * its buffer, and in-range options. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "storvsp/storvsp.h"
#include "util/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct storvsp_disk_config dc;
	char err[256];
	char *arg = malloc(size + 1);
	int ret;

	if (!arg)
		return 0;
	memcpy(arg, data, size);
	arg[size] = 0;
	err[0] = 0;
	ret = storvsp_parse_disk_arg(arg, &dc, err, sizeof(err));
	if (ret == 0) {
		size_t n = strnlen(dc.path, sizeof(dc.path));

		if (n == 0 || n == sizeof(dc.path) || !utf8_valid(dc.path) ||
		    dc.lun >= (int)STORVSP_MAX_LUNS || dc.lun < -1 ||
		    dc.controller >= STORVSP_MAX_CONTROLLERS || dc.format > BLK_FMT_VHDX)
			abort();
	} else if (ret != -EINVAL || !err[0] || !memchr(err, 0, sizeof(err))) {
		abort();
	}
	free(arg);
	return 0;
}
