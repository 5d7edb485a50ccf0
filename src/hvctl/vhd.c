/* `hvctl vhd ...`: disk image tools (VHD, VHDX, raw) that work on files
 * directly, without a running VM: new, info, check, convert, resize,
 * merge, compact. Exit status: 0 success, 1 failure, 2 bad command line;
 * check: 0 clean, 1 the check could not complete, 2 corrupt, 3 leaks (or
 * a pending log) only, as qemu-img check. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "block/block.h"
#include "block/image.h"
#include "util/parse.h"

/* The command table's function type (hvctl.c); hvctl's own state is not
 * needed here. */
struct hvctl;
struct hvctl_command;

int hvctl_vhd_help(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv);
int hvctl_vhd_new(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv);
int hvctl_vhd_info(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv);
int hvctl_vhd_check(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv);
int hvctl_vhd_convert(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
		      char **argv);
int hvctl_vhd_resize(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv);
int hvctl_vhd_merge(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv);
int hvctl_vhd_compact(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
		      char **argv);

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
enum { CHECK_CLEAN = 0, CHECK_INCOMPLETE = 1, CHECK_CORRUPT = 2, CHECK_LEAKS = 3 };

static const char help_text[] =
	"usage: hvctl vhd COMMAND ...\n"
	"\n"
	"Disk images (VHDX, VHD, raw), worked on directly: no VM, no --api.\n"
	"\n"
	"  hvctl vhd new PATH --size SIZE [--fixed | --dynamic | --parent PARENT]\n"
	"                [--format vhd|vhdx] [--block-size SIZE] [--sector-size 512|4096]\n"
	"      Create an image. The format comes from the extension (.vhdx, .vhd)\n"
	"      unless --format says; dynamic unless --fixed or --parent (a\n"
	"      differencing disk, whose size is the parent's unless --size is larger).\n"
	"      Block size: 32 MiB for VHDX (2 MiB for a differencing one), 2 MiB for\n"
	"      VHD. VHD sizes are rounded up to a whole CHS geometry, as qemu-img does.\n"
	"  hvctl vhd info PATH [--json]\n"
	"      Format, type, virtual size, file size, block and sector sizes, parent,\n"
	"      allocated bytes.\n"
	"  hvctl vhd check PATH [--repair]\n"
	"      Check the image's structure: headers, checksums, the log, the BAT\n"
	"      (blocks inside the file, not overlapping), leaked space, the parent\n"
	"      chain. --repair replays a pending log, rewrites a damaged header or\n"
	"      region table copy and gives back leaked space.\n"
	"  hvctl vhd convert SRC DST [--format raw|vhd|vhdx] [--fixed] [--block-size SIZE]\n"
	"      Copy SRC (any format, read through its parents) into a new image DST,\n"
	"      whose format comes from its extension (.vhdx, .vhd, .raw, .img)\n"
	"      unless --format says. Zero blocks stay unallocated (raw: sparse).\n"
	"  hvctl vhd resize PATH --size SIZE\n"
	"      Grow any image. Raw and VHD images shrink only when nothing but\n"
	"      zeros is cut off; VHDX images only grow.\n"
	"  hvctl vhd merge CHILD\n"
	"      Write a differencing disk's data into its parent, then remove it.\n"
	"  hvctl vhd compact PATH\n"
	"      Give back all-zero blocks, move the rest down, shorten the file (raw:\n"
	"      punch holes).\n"
	"\n"
	"Sizes take K, M, G, T suffixes (binary). Long jobs show progress on a\n"
	"terminal.\n"
	"\n"
	"Exit status: 0 success; 1 failure; 2 bad command line. check: 0 clean;\n"
	"1 the check could not complete; 2 the image is corrupt; 3 only leaked\n"
	"space or a pending log (--repair fixes both).\n";

/* ---- messages ---- */

static int __attribute__((format(printf, 2, 3))) usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hvctl: vhd %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see hvctl vhd %s --help)\n", cmd);
	return EXIT_USAGE;
}

static int failed(const struct blk_error *err, int ret)
{
	fprintf(stderr, "hvctl: %s\n", err->msg[0] ? err->msg : strerror(-ret));
	return EXIT_FAILED;
}

static void human(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (!u)
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(buf, len, "%llu %s", (unsigned long long)v, units[u]);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void size_line(const char *label, uint64_t bytes)
{
	char h[64];

	human(h, sizeof(h), bytes);
	if (bytes < 1024)
		printf("%s: %s\n", label, h);
	else
		printf("%s: %s (%llu bytes)\n", label, h, (unsigned long long)bytes);
}

/* ---- arguments ---- */

struct args {
	const char *cmd;
	const char *pos[2];
	int npos, maxpos;
	const char *size, *parent, *format, *block_size, *sector_size;
	bool fixed, dynamic, json, repair;
};

/* Is `word` one of the space-separated words of `list`? */
static bool word_in(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return true;
	return false;
}

/* Options: the ones `allowed` names (space separated). */
static int parse_args(struct args *a, int argc, char **argv, const char *allowed)
{
	static const struct {
		const char *name;
		size_t value; /* offsetof the string, or 0 for a flag */
		size_t flag;
	} opts[] = {
		{ "--size", offsetof(struct args, size), 0 },
		{ "--parent", offsetof(struct args, parent), 0 },
		{ "--format", offsetof(struct args, format), 0 },
		{ "--block-size", offsetof(struct args, block_size), 0 },
		{ "--sector-size", offsetof(struct args, sector_size), 0 },
		{ "--fixed", 0, offsetof(struct args, fixed) },
		{ "--dynamic", 0, offsetof(struct args, dynamic) },
		{ "--json", 0, offsetof(struct args, json) },
		{ "--repair", 0, offsetof(struct args, repair) },
	};

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq;
		size_t k, nlen;

		if (strncmp(arg, "--", 2) || !strcmp(arg, "--")) {
			if (!strcmp(arg, "--") && i + 1 < argc)
				arg = argv[++i];
			if (a->npos == a->maxpos)
				return usage(a->cmd, "unexpected argument '%s'", arg);
			a->pos[a->npos++] = arg;
			continue;
		}
		eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, arg, nlen))
				break;
		if (k == sizeof(opts) / sizeof(opts[0]) || !word_in(allowed, opts[k].name + 2))
			return usage(a->cmd, "unknown option '%.*s'", (int)nlen, arg);
		if (opts[k].value) {
			const char **slot = (const char **)((char *)a + opts[k].value);

			if (eq) {
				*slot = eq + 1;
			} else if (i + 1 < argc) {
				*slot = argv[++i];
			} else {
				return usage(a->cmd, "%s needs a value", opts[k].name);
			}
		} else {
			if (eq)
				return usage(a->cmd, "%s takes no value", opts[k].name);
			*(bool *)((char *)a + opts[k].flag) = true;
		}
	}
	if (a->npos < a->maxpos)
		return usage(a->cmd, "missing %s", a->maxpos == 2 && a->npos == 1 ? "the destination" :
			     a->maxpos == 2 ? "the source and destination" : "the image path");
	return -1;
}

static enum blk_format format_of_name(const char *path, bool allow_raw)
{
	const char *dot = strrchr(path, '.');

	if (!dot || strchr(dot, '/'))
		return BLK_FMT_AUTO;
	if (!strcasecmp(dot, ".vhdx") || !strcasecmp(dot, ".avhdx"))
		return BLK_FMT_VHDX;
	if (!strcasecmp(dot, ".vhd") || !strcasecmp(dot, ".avhd") || !strcasecmp(dot, ".vpc"))
		return BLK_FMT_VHD;
	if (allow_raw && (!strcasecmp(dot, ".raw") || !strcasecmp(dot, ".img") ||
			  !strcasecmp(dot, ".bin") || !strcasecmp(dot, ".iso")))
		return BLK_FMT_RAW;
	return BLK_FMT_AUTO;
}

static int pick_format(struct args *a, const char *path, bool allow_raw, enum blk_format *f)
{
	if (a->format) {
		*f = blk_format_from_name(a->format);
		if (*f == BLK_FMT_AUTO || (*f == BLK_FMT_RAW && !allow_raw))
			return usage(a->cmd, "--format: '%s' is not one of %s", a->format,
				     allow_raw ? "raw, vhd, vhdx" : "vhd, vhdx");
		return -1;
	}
	*f = format_of_name(path, allow_raw);
	if (*f == BLK_FMT_AUTO)
		return usage(a->cmd, "cannot tell the format from '%s': name it .vhdx or .vhd%s, or "
			     "give --format", path, allow_raw ? " (or .raw, .img)" : "");
	return -1;
}

static int parse_size_opt(struct args *a, const char *opt, const char *val, uint64_t *out)
{
	if (parse_size(val, out) || !*out)
		return usage(a->cmd, "%s: not a size: '%s' (e.g. 512M, 20G)", opt, val);
	return -1;
}

static int parse_block_size(struct args *a, uint32_t *out)
{
	uint64_t bs;
	int ret;

	*out = 0;
	if (!a->block_size)
		return -1;
	ret = parse_size_opt(a, "--block-size", a->block_size, &bs);
	if (ret >= 0)
		return ret;
	if (bs > (256U << 20) || (bs & (bs - 1)))
		return usage(a->cmd, "--block-size: a power of 2 up to 256M, not '%s'", a->block_size);
	*out = (uint32_t)bs;
	return -1;
}

/* ---- progress ---- */

struct bar {
	bool tty;
	int last_pct;
	uint64_t last_ms;
};

static uint64_t now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void bar_update(void *ctx, uint64_t done, uint64_t total)
{
	struct bar *b = ctx;
	int pct = total ? (int)(done * 100 / total) : 100, fill = pct / 4;
	uint64_t t = now_ms();

	if (!b->tty || pct == b->last_pct || (pct < 100 && t - b->last_ms < 100))
		return;
	b->last_pct = pct;
	b->last_ms = t;
	fprintf(stderr, "\r[%.*s%*s] %3d%%", fill, "#########################", 25 - fill, "", pct);
	if (pct == 100)
		fputc('\n', stderr);
	fflush(stderr);
}

static void bar_init(struct bar *b, struct blk_progress *p)
{
	b->tty = isatty(STDERR_FILENO);
	b->last_pct = -1;
	b->last_ms = 0;
	p->fn = bar_update;
	p->ctx = b;
	p->total = 0;
}

static void bar_end(struct bar *b)
{
	if (b->tty && b->last_pct >= 0 && b->last_pct < 100)
		fputc('\n', stderr);
}

/* ---- commands ---- */

int hvctl_vhd_help(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "help")) {
		fprintf(stderr, "hvctl: vhd: unknown command '%s' (see hvctl vhd)\n", argv[1]);
		return EXIT_USAGE;
	}
	fputs(help_text, stdout);
	return EXIT_OK;
}

int hvctl_vhd_new(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv)
{
	struct args a = { .cmd = "new", .maxpos = 1 };
	struct blk_create_opts o = { 0 };
	struct blk_error err = { "" };
	char hs[64];
	uint64_t n;
	int ret = parse_args(&a, argc, argv, "size parent format block-size sector-size fixed dynamic");

	if (ret >= 0)
		return ret;
	if ((a.fixed + a.dynamic + !!a.parent) > 1)
		return usage(a.cmd, "--fixed, --dynamic and --parent exclude each other");
	if (!a.size && !a.parent)
		return usage(a.cmd, "--size is required");
	if (a.size && (ret = parse_size_opt(&a, "--size", a.size, &o.size)) >= 0)
		return ret;
	if ((ret = pick_format(&a, a.pos[0], false, &o.format)) >= 0)
		return ret;
	if ((ret = parse_block_size(&a, &o.block_size)) >= 0)
		return ret;
	if (a.sector_size) {
		if (parse_uint(a.sector_size, 512, 4096, &n) || (n != 512 && n != 4096))
			return usage(a.cmd, "--sector-size: 512 or 4096, not '%s'", a.sector_size);
		if (o.format == BLK_FMT_VHD && n != 512)
			return usage(a.cmd, "--sector-size: VHD has 512-byte sectors only");
		o.logical_sector = (uint32_t)n;
	}
	o.type = a.fixed ? BLK_TYPE_FIXED : a.parent ? BLK_TYPE_DIFF : BLK_TYPE_DYNAMIC;
	o.parent = a.parent;
	ret = blk_create(a.pos[0], &o, &err);
	if (ret)
		return failed(&err, ret);
	{
		struct blk_details d;

		if (blk_details(a.pos[0], &d, &err) == 0) {
			human(hs, sizeof(hs), d.size);
			printf("Created %s: %s %s, %s (%llu bytes)\n", a.pos[0], blk_type_name(d.type),
			       blk_format_name(d.format), hs, (unsigned long long)d.size);
		}
	}
	return EXIT_OK;
}

int hvctl_vhd_info(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv)
{
	struct args a = { .cmd = "info", .maxpos = 1 };
	struct blk_details d;
	struct blk_error err = { "" };
	char b1[64];
	int ret = parse_args(&a, argc, argv, "json");

	if (ret >= 0)
		return ret;
	ret = blk_details(a.pos[0], &d, &err);
	if (ret)
		return failed(&err, ret);
	if (a.json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i, s:b}", "path",
				      a.pos[0], "format", blk_format_name(d.format), "type",
				      blk_type_name(d.type), "virtual_size", (json_int_t)d.size,
				      "file_size", (json_int_t)d.file_size, "disk_usage",
				      (json_int_t)d.disk_usage, "allocated", (json_int_t)d.allocated,
				      "logical_sector_size", (int)d.logical_sector,
				      "physical_sector_size", (int)d.physical_sector, "log_pending",
				      d.log_pending);

		if (!o)
			return failed(&err, -ENOMEM);
		if (d.block_size)
			json_object_set_new(o, "block_size", json_integer(d.block_size));
		if (d.parent[0])
			json_object_set_new(o, "parent", json_string(d.parent));
		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(o);
		return EXIT_OK;
	}
	printf("image: %s\n", a.pos[0]);
	printf("format: %s\n", blk_format_name(d.format));
	printf("type: %s\n", blk_type_name(d.type));
	size_line("virtual size", d.size);
	size_line("file size", d.file_size);
	size_line("disk usage", d.disk_usage);
	size_line("allocated", d.allocated);
	if (d.block_size) {
		human(b1, sizeof(b1), d.block_size);
		printf("block size: %s\n", b1);
	}
	printf("sector size: %u logical, %u physical\n", d.logical_sector, d.physical_sector);
	if (d.parent[0])
		printf("parent: %s\n", d.parent);
	if (d.log_pending)
		printf("log: updates pending (replayed on the next read-write open)\n");
	return EXIT_OK;
}

static void print_msg(void *ctx, const char *msg)
{
	puts(msg);
}

int hvctl_vhd_check(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv)
{
	struct args a = { .cmd = "check", .maxpos = 1 };
	struct blk_check_result r;
	struct blk_error err = { "" };
	char b1[64];
	int ret = parse_args(&a, argc, argv, "repair");

	if (ret >= 0)
		return ret;
	ret = blk_check(a.pos[0], BLK_FMT_AUTO, a.repair, print_msg, NULL, &r, &err);
	if (ret) {
		fprintf(stderr, "hvctl: %s\n", err.msg[0] ? err.msg : strerror(-ret));
		return CHECK_INCOMPLETE;
	}
	if (r.fixed)
		printf("%u problem%s repaired.\n", r.fixed, r.fixed == 1 ? "" : "s");
	if (r.corruptions) {
		printf("%u error%s found: the image is corrupt.\n", r.corruptions,
		       r.corruptions == 1 ? " was" : "s were");
		return CHECK_CORRUPT;
	}
	if (!a.repair && (r.leaks || r.repairable)) {
		if (r.leaks) {
			human(b1, sizeof(b1), r.leaked_bytes);
			printf("%u leak%s (%s) found; --repair gives the space back.\n", r.leaks,
			       r.leaks == 1 ? "" : "s", b1);
		}
		if (r.repairable)
			printf("%u repairable problem%s found; --repair fixes %s.\n", r.repairable,
			       r.repairable == 1 ? "" : "s", r.repairable == 1 ? "it" : "them");
		return CHECK_LEAKS;
	}
	printf("No errors were found on the image.\n");
	return CHECK_CLEAN;
}

int hvctl_vhd_convert(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
		      char **argv)
{
	struct args a = { .cmd = "convert", .maxpos = 2 };
	struct blk_create_opts o = { 0 };
	struct blk_error err = { "" };
	struct blk_progress p;
	struct bar b;
	int ret = parse_args(&a, argc, argv, "format fixed block-size");

	if (ret >= 0)
		return ret;
	if ((ret = pick_format(&a, a.pos[1], true, &o.format)) >= 0)
		return ret;
	if ((ret = parse_block_size(&a, &o.block_size)) >= 0)
		return ret;
	o.type = a.fixed ? BLK_TYPE_FIXED : BLK_TYPE_DYNAMIC;
	if (!strcmp(a.pos[0], a.pos[1]))
		return usage(a.cmd, "the source and destination are the same file");
	bar_init(&b, &p);
	ret = blk_convert(a.pos[0], a.pos[1], &o, &p, &err);
	bar_end(&b);
	if (ret)
		return failed(&err, ret);
	return EXIT_OK;
}

int hvctl_vhd_resize(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv)
{
	struct args a = { .cmd = "resize", .maxpos = 1 };
	struct blk_error err = { "" };
	struct blk_details d;
	uint64_t size;
	char hs[64];
	int ret = parse_args(&a, argc, argv, "size");

	if (ret >= 0)
		return ret;
	if (!a.size)
		return usage(a.cmd, "--size is required");
	if ((ret = parse_size_opt(&a, "--size", a.size, &size)) >= 0)
		return ret;
	ret = blk_image_resize(a.pos[0], size, &err);
	if (ret)
		return failed(&err, ret);
	if (blk_details(a.pos[0], &d, &err) == 0) {
		human(hs, sizeof(hs), d.size);
		printf("%s: virtual size now %s (%llu bytes)\n", a.pos[0], hs, (unsigned long long)d.size);
	}
	return EXIT_OK;
}

int hvctl_vhd_merge(const struct hvctl *h, const struct hvctl_command *cmd, int argc, char **argv)
{
	struct args a = { .cmd = "merge", .maxpos = 1 };
	struct blk_error err = { "" };
	struct blk_progress p;
	struct bar b;
	char parent[4096] = "";
	int ret = parse_args(&a, argc, argv, "");

	if (ret >= 0)
		return ret;
	bar_init(&b, &p);
	ret = blk_merge(a.pos[0], parent, &p, &err);
	bar_end(&b);
	if (ret)
		return failed(&err, ret);
	printf("Merged %s into %s (and removed it).\n", a.pos[0], parent);
	return EXIT_OK;
}

int hvctl_vhd_compact(const struct hvctl *h, const struct hvctl_command *cmd, int argc,
		      char **argv)
{
	struct args a = { .cmd = "compact", .maxpos = 1 };
	struct blk_error err = { "" };
	struct blk_progress p;
	struct bar b;
	uint64_t freed;
	char hs[64];
	int ret = parse_args(&a, argc, argv, "");

	if (ret >= 0)
		return ret;
	bar_init(&b, &p);
	ret = blk_compact(a.pos[0], &p, &freed, &err);
	bar_end(&b);
	if (ret)
		return failed(&err, ret);
	human(hs, sizeof(hs), freed);
	printf("%s: %s given back.\n", a.pos[0], hs);
	return EXIT_OK;
}
