/* --disk PATH[,ro][,format=raw|vhd|vhdx][,lun=N][,controller=N] */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "storvsp/storvsp.h"
#include "util/parse.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int format_from(const char *s, enum blk_format *f)
{
	if (!strcmp(s, "raw"))
		*f = BLK_FMT_RAW;
	else if (!strcmp(s, "vhd"))
		*f = BLK_FMT_VHD;
	else if (!strcmp(s, "vhdx"))
		*f = BLK_FMT_VHDX;
	else
		return -EINVAL;
	return 0;
}

int storvsp_parse_disk_arg(const char *arg, struct storvsp_disk_config *out, char *err,
			   size_t errlen)
{
	bool seen_ro = false, seen_fmt = false, seen_lun = false, seen_ctrl = false;
	const char *p = arg;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	out->lun = -1;
	out->format = BLK_FMT_AUTO;
	if (!arg)
		return fail(err, errlen, "missing disk argument");
	/* The path: up to the first single comma; ",," is a comma. */
	while (*p) {
		if (*p == ',') {
			if (p[1] != ',')
				break;
			p++;
		}
		if (n + 1 >= sizeof(out->path))
			return fail(err, errlen, "disk path too long");
		out->path[n++] = *p++;
	}
	out->path[n] = 0;
	if (!n)
		return fail(err, errlen, "disk: missing path in '%s'", arg);
	if (!utf8_valid(out->path))
		return fail(err, errlen, "disk: the path is not valid UTF-8 (the API reports "
				       "paths as JSON strings)");
	while (*p == ',') {
		char opt[64];
		const char *end, *val;
		size_t len;
		uint64_t v;

		p++;
		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		if (!len)
			return fail(err, errlen, "disk %s: empty option", out->path);
		if (len >= sizeof(opt))
			return fail(err, errlen, "disk %s: option too long", out->path);
		memcpy(opt, p, len);
		opt[len] = 0;
		p += len;
		val = strchr(opt, '=');
		if (!strcmp(opt, "ro")) {
			if (seen_ro)
				goto dup;
			seen_ro = true;
			out->read_only = true;
		} else if (!strncmp(opt, "format=", 7)) {
			if (seen_fmt)
				goto dup;
			seen_fmt = true;
			if (format_from(val + 1, &out->format))
				return fail(err, errlen, "disk %s: unknown format '%s' (raw, vhd, vhdx)",
					    out->path, val + 1);
		} else if (!strncmp(opt, "lun=", 4)) {
			if (seen_lun)
				goto dup;
			seen_lun = true;
			if (parse_uint(val + 1, 0, STORVSP_MAX_LUNS - 1, &v))
				return fail(err, errlen, "disk %s: lun must be 0..%u", out->path,
					    STORVSP_MAX_LUNS - 1);
			out->lun = (int)v;
		} else if (!strncmp(opt, "controller=", 11)) {
			if (seen_ctrl)
				goto dup;
			seen_ctrl = true;
			if (parse_uint(val + 1, 0, STORVSP_MAX_CONTROLLERS - 1, &v))
				return fail(err, errlen, "disk %s: controller must be 0..%u", out->path,
					    STORVSP_MAX_CONTROLLERS - 1);
			out->controller = (unsigned)v;
		} else {
			return fail(err, errlen,
				    "disk %s: unknown option '%s' (ro, format=, lun=, controller=)",
				    out->path, opt);
		}
		continue;
dup:
		return fail(err, errlen, "disk %s: option '%s' given twice", out->path, opt);
	}
	return 0;
}
