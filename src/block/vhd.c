/* Legacy VHD: fixed (raw data + footer), dynamic (footer copy, dynamic
 * header, BAT, blocks of a sector bitmap and data, footer) and
 * differencing (dynamic with a parent, bitmap bit = sector present here).
 *
 * Crash safety without a journal, relying on single-sector writes being
 * atomic: a new block is placed where the footer was; the footer is first
 * rewritten past the block's end, then bitmap and data are written and
 * synced, and only then the 4-byte BAT entry, synced again. A crash leaves
 * at worst an unreferenced block (a leak `check --repair` gives back). The
 * disk size is the footer's current_size (Hyper-V's reading); images made
 * here round it up to a whole CHS geometry, so qemu-img reads the same. */
#include "block/block_internal.h"
#include "block/vhd_format.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VHD_MAX_BLOCK (256U << 20)
#define VHD_MIN_BLOCK (4U << 10)
#define VHD_MAX_LOCATOR (64U << 10)

struct vhd {
	int fd;
	char *path;
	bool ro, check;
	struct vhd_footer footer;  /* the one in use (end, else the copy at 0) */
	bool footer_end_ok;
	bool footer_copy_ok;       /* dynamic: the copy at 0 is valid and equal */
	uint32_t type;
	uint64_t size;
	uint64_t file_size;
	uint64_t footer_off;       /* where the footer at the end lives */

	/* dynamic and differencing */
	struct vhd_dyn_header dyn;
	uint64_t dyn_off;
	uint64_t bat_off;
	uint32_t bat_entries;      /* max_table_entries */
	uint32_t bat_cap;          /* entries the BAT's sectors hold */
	uint32_t *bat;             /* host order */
	uint32_t block_size, bitmap_size;
	uint64_t meta_end;         /* end of header, BAT and locator data */
	uint64_t data_end;         /* end of every structure: a new block goes here */

	/* differencing */
	struct blk_disk *parent;
	char *parent_path;

	bool broken;               /* a metadata write failed: no more writes */
	pthread_rwlock_t lock;     /* I/O (shared) against resize, discard (exclusive) */
	pthread_mutex_t meta;      /* allocation, bitmap updates */
};

static struct vhd *VHD(struct blk_image *img)
{
	return (struct vhd *)img;
}

/* ---- checksums, geometry ---- */

static uint32_t vhd_checksum(const void *buf, size_t len, size_t csum_off)
{
	const uint8_t *p = buf;
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += p[i];
	return ~sum;
}

static bool footer_valid(const struct vhd_footer *f)
{
	return !memcmp(f->cookie, VHD_COOKIE, 8) &&
	       be32toh(f->checksum) == vhd_checksum(f, sizeof(*f), offsetof(struct vhd_footer, checksum));
}

static void footer_seal(struct vhd_footer *f)
{
	f->checksum = 0;
	f->checksum = htobe32(vhd_checksum(f, sizeof(*f), offsetof(struct vhd_footer, checksum)));
}

static void dyn_seal(struct vhd_dyn_header *h)
{
	h->checksum = 0;
	h->checksum = htobe32(vhd_checksum(h, sizeof(*h), offsetof(struct vhd_dyn_header, checksum)));
}

/* The VHD specification's CHS algorithm. */
static void chs_of(uint64_t sectors, uint16_t *c, uint8_t *h, uint8_t *s)
{
	uint64_t cth, heads, spt;

	if (sectors > VHD_CHS_MAX_SECTORS)
		sectors = VHD_CHS_MAX_SECTORS;
	if (sectors >= 65535ULL * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = sectors / spt;
	} else {
		spt = 17;
		cth = sectors / spt;
		heads = (cth + 1023) / 1024;
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024 || heads > 16) {
			spt = 31;
			heads = 16;
			cth = sectors / spt;
		}
		if (cth >= heads * 1024) {
			spt = 63;
			heads = 16;
			cth = sectors / spt;
		}
	}
	*c = (uint16_t)(cth / heads);
	*h = (uint8_t)heads;
	*s = (uint8_t)spt;
}

/* The smallest size >= bytes that a CHS geometry describes exactly (or
 * bytes itself past the largest geometry), as qemu-img rounds. */
static uint64_t vhd_round_size(uint64_t bytes, uint16_t *c, uint8_t *h, uint8_t *s)
{
	uint64_t want = DIV_ROUND_UP(bytes, VHD_SECTOR), capped = MIN(want, VHD_CHS_MAX_SECTORS);
	uint64_t chs = 0;

	for (uint64_t i = 0; chs < capped; i++) {
		chs_of(capped + i, c, h, s);
		chs = (uint64_t)*c * *h * *s;
	}
	if (chs == VHD_CHS_MAX_SECTORS)
		return want * VHD_SECTOR;
	return chs * VHD_SECTOR;
}

/* ---- probing and opening ---- */

static bool vhd_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	/* The copy at 0 (dynamic) in the head; the end footer is checked at
	 * open. Fixed disks are recognised by their footer at open time only
	 * when asked; the probe reads the end itself. */
	return len >= 8 && !memcmp(head, VHD_COOKIE, 8);
}

bool vhd_probe_tail(int fd, uint64_t file_size)
{
	struct vhd_footer f;

	if (file_size < 512 || blk_pread(fd, &f, sizeof(f), file_size - 512))
		return false;
	return footer_valid(&f);
}

struct range {
	uint64_t start, end;
	int64_t what; /* >= 0: BAT index; negative: a structure */
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static const char *structure_name(int64_t what)
{
	switch (what) {
	case -1: return "the footer copy";
	case -2: return "the dynamic header";
	case -3: return "the BAT";
	case -4: return "parent locator data";
	default: return "the footer";
	}
}

typedef void vhd_problem_fn(void *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The structures of a dynamic disk as ranges; blocks with BAT index. */
static int collect_ranges(struct vhd *v, struct range **out, size_t *count)
{
	size_t n = 0, cap = 12 + (size_t)v->bat_entries;
	struct range *r = malloc(cap * sizeof(*r));

	if (!r)
		return -ENOMEM;
	r[n++] = (struct range){ 0, 512, -1 };
	r[n++] = (struct range){ v->dyn_off, v->dyn_off + 1024, -2 };
	r[n++] = (struct range){ v->bat_off, v->bat_off + ROUND_UP((uint64_t)v->bat_entries * 4, 512), -3 };
	if (v->type == VHD_TYPE_DIFF) {
		for (int i = 0; i < 8; i++) {
			const struct vhd_parent_locator *l = &v->dyn.locators[i];
			uint32_t code = be32toh(l->platform_code), dlen = be32toh(l->data_length);

			if (code == VHD_PLAT_NONE || !dlen)
				continue;
			r[n++] = (struct range){ be64toh(l->data_offset),
						 be64toh(l->data_offset) + ROUND_UP(dlen, 512), -4 };
		}
	}
	for (uint32_t i = 0; i < v->bat_entries; i++) {
		uint32_t e = v->bat[i];

		if (e == VHD_BAT_UNUSED)
			continue;
		uint64_t off = (uint64_t)e * VHD_SECTOR;
		r[n++] = (struct range){ off, off + v->bitmap_size + v->block_size, (int64_t)i };
	}
	qsort(r, n, sizeof(*r), cmp_range);
	*out = r;
	*count = n;
	return 0;
}

/* Every BAT entry inside the file and clear of every other structure.
 * Returns the number of problems (each reported). */
static unsigned validate_layout(struct vhd *v, vhd_problem_fn *problem, void *ctx)
{
	struct range *r;
	size_t n;
	unsigned bad = 0;
	uint64_t limit = v->footer_end_ok ? v->footer_off : v->file_size;

	if (collect_ranges(v, &r, &n)) {
		problem(ctx, "out of memory");
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (r[i].end > limit || r[i].end < r[i].start) {
			if (r[i].what >= 0)
				problem(ctx, "BAT entry %lld points past the end of the file",
					(long long)r[i].what);
			else
				problem(ctx, "%s lies past the end of the file", structure_name(r[i].what));
			bad++;
		}
		if (i && r[i].start < r[i - 1].end) {
			if (r[i].what >= 0 && r[i - 1].what >= 0)
				problem(ctx, "blocks %lld and %lld overlap", (long long)r[i - 1].what,
					(long long)r[i].what);
			else if (r[i].what >= 0 || r[i - 1].what >= 0)
				problem(ctx, "block %lld overlaps %s",
					(long long)(r[i].what >= 0 ? r[i].what : r[i - 1].what),
					structure_name(r[i].what >= 0 ? r[i - 1].what : r[i].what));
			else
				problem(ctx, "%s overlaps %s", structure_name(r[i - 1].what),
					structure_name(r[i].what));
			bad++;
		}
		if (bad >= 100)
			break;
	}
	free(r);
	return bad;
}

struct first_problem {
	struct blk_error *err;
	const char *path;
	bool set;
};

static void __attribute__((format(printf, 2, 3))) first_problem(void *ctx, const char *fmt, ...)
{
	struct first_problem *fp = ctx;
	char msg[200];
	va_list ap;

	if (fp->set)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	blk_seterr(fp->err, "%s: corrupt VHD: %s", fp->path, msg);
	fp->set = true;
}

static void compute_data_end(struct vhd *v)
{
	uint64_t end = v->meta_end;

	for (uint32_t i = 0; i < v->bat_entries; i++)
		if (v->bat[i] != VHD_BAT_UNUSED)
			end = MAX(end, (uint64_t)v->bat[i] * VHD_SECTOR + v->bitmap_size + v->block_size);
	v->data_end = ROUND_UP(end, VHD_SECTOR);
}

static char *locator_path(struct vhd *v, const struct vhd_parent_locator *l)
{
	uint32_t len = be32toh(l->data_length);
	uint64_t off = be64toh(l->data_offset);
	uint8_t *buf;
	char *s = NULL, *p;

	if (!len || len > VHD_MAX_LOCATOR || off > v->file_size || len > v->file_size - off)
		return NULL;
	buf = malloc(len);
	if (!buf || blk_pread(v->fd, buf, len, off)) {
		free(buf);
		return NULL;
	}
	/* Some writers NUL-terminate: stop at the first NUL unit. */
	for (uint32_t i = 0; i + 1 < len; i += 2)
		if (!buf[i] && !buf[i + 1]) {
			len = i;
			break;
		}
	s = len ? blk_utf16_to_utf8(buf, len & ~1U, false) : NULL;
	free(buf);
	if (!s)
		return NULL;
	for (p = s; *p; p++)
		if (*p == '\\')
			*p = '/';
	return s;
}

static int open_parent(struct vhd *v, struct blk_chain *chain, struct blk_error *err)
{
	/* Relative first, then absolute. */
	static const uint32_t order[] = { VHD_PLAT_W2RU, VHD_PLAT_W2KU };
	struct blk_error perr = { "" };
	char tried[200] = "";

	for (size_t o = 0; o < 2 && !v->parent; o++) {
		for (int i = 0; i < 8 && !v->parent; i++) {
			const struct vhd_parent_locator *l = &v->dyn.locators[i];
			char *rel, *full;
			struct blk_disk *p;

			if (be32toh(l->platform_code) != order[o])
				continue;
			rel = locator_path(v, l);
			if (!rel)
				continue;
			/* A Windows drive path cannot be opened here. */
			if (rel[0] && rel[1] == ':' && rel[2] == '/') {
				free(rel);
				continue;
			}
			if (order[o] == VHD_PLAT_W2RU && !strncmp(rel, "./", 2))
				memmove(rel, rel + 2, strlen(rel + 2) + 1);
			full = blk_path_join_dir(v->path, rel);
			free(rel);
			if (!full)
				return -ENOMEM;
			if (!tried[0])
				snprintf(tried, sizeof(tried), "%s", full);
			chain->depth++;
			p = blk_open_chain(full, BLK_FMT_VHD, BLK_OPEN_RDONLY, chain, &perr);
			chain->depth--;
			if (!p) {
				free(full);
				if (chain->error == -ELOOP) {
					blk_seterr(err, "%s", perr.msg);
					return -ELOOP;
				}
				continue;
			}
			if (memcmp(VHD(p->img)->footer.unique_id, v->dyn.parent_unique_id, 16)) {
				blk_seterr(err, "%s: the parent %s is not the disk this one was made from "
					   "(its unique id differs)", v->path, full);
				blk_close(p);
				free(full);
				return -EINVAL;
			}
			v->parent = p;
			v->parent_path = full;
		}
	}
	if (!v->parent) {
		if (perr.msg[0])
			blk_seterr(err, "%s: cannot open the parent: %s", v->path, perr.msg);
		else if (tried[0])
			blk_seterr(err, "%s: cannot open the parent %s", v->path, tried);
		else
			blk_seterr(err, "%s: differencing disk without a usable parent locator", v->path);
		return -ENOENT;
	}
	return 0;
}

static void vhd_free(struct vhd *v)
{
	if (v->parent)
		blk_close(v->parent);
	free(v->parent_path);
	free(v->bat);
	free(v->path);
	pthread_rwlock_destroy(&v->lock);
	pthread_mutex_destroy(&v->meta);
	free(v);
}

int vhd_open_chain(struct blk_image **out, int fd, const char *path, unsigned flags,
		   struct blk_chain *chain, struct blk_error *err)
{
	struct vhd *v = calloc(1, sizeof(*v));
	struct vhd_footer copy;
	struct first_problem fp = { err, path, false };
	uint64_t fs;
	int ret = -EINVAL;

	if (!v || !(v->path = strdup(path))) {
		free(v);
		blk_seterr(err, "%s: out of memory", path);
		return -ENOMEM;
	}
	blk_rwlock_init(&v->lock);
	pthread_mutex_init(&v->meta, NULL);
	v->fd = fd;
	v->ro = flags & BLK_OPEN_RDONLY;
	v->check = flags & BLK_OPEN_CHECK;
	ret = blk_file_size(fd, &fs);
	if (ret) {
		blk_seterr(err, "%s: %s", path, strerror(-ret));
		goto fail;
	}
	ret = -EINVAL;
	v->file_size = fs;
	if (fs < 512) {
		blk_seterr(err, "%s: not a VHD: too small for a footer", path);
		goto fail;
	}
	v->footer_off = fs - 512;
	if ((ret = blk_pread(fd, &v->footer, 512, fs - 512)) || (ret = blk_pread(fd, &copy, 512, 0))) {
		blk_seterr(err, "%s: cannot read: %s", path, strerror(-ret));
		goto fail;
	}
	ret = -EINVAL;
	v->footer_end_ok = footer_valid(&v->footer);
	if (!v->footer_end_ok) {
		if (!footer_valid(&copy)) {
			if (!memcmp(v->footer.cookie, VHD_COOKIE, 8) || !memcmp(copy.cookie, VHD_COOKIE, 8))
				blk_seterr(err, "%s: corrupt VHD: the footer's checksum is wrong", path);
			else
				blk_seterr(err, "%s: not a VHD: no footer", path);
			goto fail;
		}
		/* A torn footer at the end: a dynamic disk's copy at 0 stands in. */
		v->footer = copy;
		v->footer_off = fs;
	}
	v->type = be32toh(v->footer.disk_type);
	if (v->type != VHD_TYPE_FIXED && v->type != VHD_TYPE_DYNAMIC && v->type != VHD_TYPE_DIFF) {
		blk_seterr(err, "%s: unsupported VHD disk type %u", path, v->type);
		ret = -ENOTSUP;
		goto fail;
	}
	if (be32toh(v->footer.version) >> 16 != 1) {
		blk_seterr(err, "%s: unsupported VHD version %#x", path, be32toh(v->footer.version));
		ret = -ENOTSUP;
		goto fail;
	}
	if (!v->footer_end_ok && v->type == VHD_TYPE_FIXED) {
		blk_seterr(err, "%s: corrupt VHD: the footer's checksum is wrong", path);
		goto fail;
	}
	v->size = ROUND_DOWN(be64toh(v->footer.current_size), VHD_SECTOR);
	if (!v->size) {
		blk_seterr(err, "%s: corrupt VHD: the disk size is 0", path);
		goto fail;
	}
	if (v->type == VHD_TYPE_FIXED) {
		if (v->size > v->footer_off) {
			blk_seterr(err, "%s: corrupt VHD: the disk (%llu bytes) is larger than the file",
				   path, (unsigned long long)v->size);
			goto fail;
		}
		*out = (struct blk_image *)v;
		return 0;
	}
	if (v->size > BLK_VHD_MAX_SIZE) {
		blk_seterr(err, "%s: corrupt VHD: a disk size of %llu bytes is beyond the format's 2040 GiB",
			   path, (unsigned long long)v->size);
		goto fail;
	}
	v->footer_copy_ok = footer_valid(&copy) && !memcmp(&copy, &v->footer, 512);

	/* The dynamic header. */
	v->dyn_off = be64toh(v->footer.data_offset);
	if (v->dyn_off < 512 || v->dyn_off % VHD_SECTOR || v->dyn_off > fs || fs - v->dyn_off < 1024 + 512) {
		blk_seterr(err, "%s: corrupt VHD: the dynamic header offset %llu is outside the file",
			   path, (unsigned long long)v->dyn_off);
		goto fail;
	}
	if ((ret = blk_pread(fd, &v->dyn, sizeof(v->dyn), v->dyn_off))) {
		blk_seterr(err, "%s: cannot read: %s", path, strerror(-ret));
		goto fail;
	}
	ret = -EINVAL;
	if (memcmp(v->dyn.cookie, VHD_DYN_COOKIE, 8)) {
		blk_seterr(err, "%s: corrupt VHD: no dynamic disk header", path);
		goto fail;
	}
	if (be32toh(v->dyn.checksum) != vhd_checksum(&v->dyn, sizeof(v->dyn), offsetof(struct vhd_dyn_header, checksum))) {
		blk_seterr(err, "%s: corrupt VHD: the dynamic header's checksum is wrong", path);
		goto fail;
	}
	v->block_size = be32toh(v->dyn.block_size);
	if (v->block_size < VHD_MIN_BLOCK || v->block_size > VHD_MAX_BLOCK ||
	    (v->block_size & (v->block_size - 1))) {
		blk_seterr(err, "%s: corrupt VHD: unsupported block size %u", path, v->block_size);
		goto fail;
	}
	v->bitmap_size = (uint32_t)ROUND_UP(v->block_size / VHD_SECTOR / 8, VHD_SECTOR);
	v->bat_entries = be32toh(v->dyn.max_table_entries);
	v->bat_off = be64toh(v->dyn.table_offset);
	if ((uint64_t)v->bat_entries * v->block_size < v->size) {
		blk_seterr(err, "%s: corrupt VHD: the BAT (%u entries) does not cover the disk", path,
			   v->bat_entries);
		goto fail;
	}
	if (v->bat_off % VHD_SECTOR || v->bat_off > fs || (uint64_t)v->bat_entries * 4 > fs - v->bat_off) {
		blk_seterr(err, "%s: corrupt VHD: the BAT lies outside the file", path);
		goto fail;
	}
	v->bat_cap = (uint32_t)MIN(ROUND_UP((uint64_t)v->bat_entries * 4, 512) / 4, UINT32_MAX);
	v->bat = malloc((size_t)v->bat_entries * 4 + 4);
	if (!v->bat) {
		blk_seterr(err, "%s: out of memory for the BAT", path);
		ret = -ENOMEM;
		goto fail;
	}
	if ((ret = blk_pread(fd, v->bat, (size_t)v->bat_entries * 4, v->bat_off))) {
		blk_seterr(err, "%s: cannot read: %s", path, strerror(-ret));
		goto fail;
	}
	ret = -EINVAL;
	for (uint32_t i = 0; i < v->bat_entries; i++)
		v->bat[i] = be32toh(v->bat[i]);
	v->meta_end = MAX(v->dyn_off + 1024, v->bat_off + ROUND_UP((uint64_t)v->bat_entries * 4, 512));
	if (v->type == VHD_TYPE_DIFF) {
		for (int i = 0; i < 8; i++) {
			const struct vhd_parent_locator *l = &v->dyn.locators[i];
			uint64_t off = be64toh(l->data_offset);
			uint32_t len = be32toh(l->data_length);

			if (be32toh(l->platform_code) == VHD_PLAT_NONE || !len)
				continue;
			if (len > VHD_MAX_LOCATOR || off > fs || len > fs - off) {
				blk_seterr(err, "%s: corrupt VHD: parent locator %d lies outside the file",
					   path, i);
				goto fail;
			}
			v->meta_end = MAX(v->meta_end, off + ROUND_UP(len, 512));
		}
	}
	if (!v->check && validate_layout(v, first_problem, &fp))
		goto fail;
	compute_data_end(v);
	if (v->type == VHD_TYPE_DIFF && !(flags & BLK_OPEN_NO_PARENT)) {
		ret = open_parent(v, chain, err);
		if (ret)
			goto fail;
	}
	*out = (struct blk_image *)v;
	return 0;
fail:
	v->fd = -1;
	vhd_free(v);
	return ret;
}

static int vhd_open(struct blk_image **out, int fd, const char *path, unsigned flags,
		    struct blk_error *err)
{
	struct blk_chain chain = { 0 };
	struct stat st;

	if (fstat(fd, &st) == 0) {
		chain.dev[0] = st.st_dev;
		chain.ino[0] = st.st_ino;
	}
	return vhd_open_chain(out, fd, path, flags, &chain, err);
}

static void vhd_close(struct blk_image *img)
{
	struct vhd *v = VHD(img);

	if (!v->ro && !v->broken)
		blk_sync(v->fd);
	close(v->fd);
	vhd_free(v);
}

static void vhd_info(struct blk_image *img, struct blk_info *info)
{
	struct vhd *v = VHD(img);

	info->format = BLK_FMT_VHD;
	info->size = __atomic_load_n(&v->size, __ATOMIC_RELAXED);
	info->logical_sector = 512;
	info->physical_sector = 512;
	info->read_only = v->ro;
	info->can_discard = !v->ro;
}

/* ---- reading ---- */

static uint32_t bat_get(struct vhd *v, uint64_t blk)
{
	return __atomic_load_n(&v->bat[blk], __ATOMIC_ACQUIRE);
}

static int parent_read(struct vhd *v, uint64_t off, void *buf, size_t len)
{
	struct blk_info pi;
	size_t n = len;

	if (!v->parent) {
		memset(buf, 0, len);
		return 0;
	}
	blk_get_info(v->parent, &pi);
	if (off >= pi.size) {
		memset(buf, 0, len);
		return 0;
	}
	if (len > pi.size - off) {
		n = (size_t)(pi.size - off);
		memset((uint8_t *)buf + n, 0, len - n);
	}
	return blk_read(v->parent, off, buf, n);
}

static bool bit_set(const uint8_t *bm, uint64_t i)
{
	return bm[i / 8] & (0x80 >> (i % 8));
}

/* Read the bitmap bytes covering sectors [first, first+count) of a block. */
static int read_bitmap(struct vhd *v, uint64_t block_off, uint64_t first, uint64_t count,
		       uint8_t **out)
{
	uint64_t b0 = first / 8, b1 = (first + count - 1) / 8;
	uint8_t *bm = malloc((size_t)(b1 + 1));
	int ret;

	if (!bm)
		return -ENOMEM;
	ret = blk_pread(v->fd, bm + b0, (size_t)(b1 - b0 + 1), block_off + b0);
	if (ret) {
		free(bm);
		return ret;
	}
	*out = bm;
	return 0;
}

static int read_in_block(struct vhd *v, uint64_t blk, uint64_t in, uint8_t *buf, size_t n)
{
	uint32_t e = bat_get(v, blk);
	uint64_t voff = blk * v->block_size + in, boff;
	uint64_t first = in / VHD_SECTOR, count = n / VHD_SECTOR;
	uint8_t *bm;
	int ret;

	if (e == VHD_BAT_UNUSED)
		return v->type == VHD_TYPE_DIFF ? parent_read(v, voff, buf, n) : (memset(buf, 0, n), 0);
	boff = (uint64_t)e * VHD_SECTOR;
	if (v->type != VHD_TYPE_DIFF)
		return blk_pread(v->fd, buf, n, boff + v->bitmap_size + in);
	ret = read_bitmap(v, boff, first, count, &bm);
	if (ret)
		return ret;
	for (uint64_t s = 0; s < count && !ret;) {
		bool here = bit_set(bm, first + s);
		uint64_t run = 1;

		while (s + run < count && bit_set(bm, first + s + run) == here)
			run++;
		if (here)
			ret = blk_pread(v->fd, buf + s * VHD_SECTOR, run * VHD_SECTOR,
					boff + v->bitmap_size + (first + s) * VHD_SECTOR);
		else
			ret = parent_read(v, voff + s * VHD_SECTOR, buf + s * VHD_SECTOR, run * VHD_SECTOR);
		s += run;
	}
	free(bm);
	return ret;
}

/* With v->lock held (either way). */
static int read_locked(struct vhd *v, uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;
	int ret = 0;

	if (v->type == VHD_TYPE_FIXED)
		return blk_pread(v->fd, buf, len, off);
	while (len && !ret) {
		uint64_t blk = off / v->block_size, in = off % v->block_size;
		size_t n = (size_t)MIN(len, v->block_size - in);

		ret = read_in_block(v, blk, in, p, n);
		p += n;
		off += n;
		len -= n;
	}
	return ret;
}

static int vhd_read(struct blk_image *img, uint64_t off, void *buf, size_t len)
{
	struct vhd *v = VHD(img);
	int ret;

	pthread_rwlock_rdlock(&v->lock);
	ret = read_locked(v, off, buf, len);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

/* ---- writing ---- */

static int write_zeros(int fd, uint64_t off, uint64_t len)
{
	uint8_t *z = calloc(1, 64 * KiB);
	int ret = z ? 0 : -ENOMEM;

	while (!ret && len) {
		size_t n = (size_t)MIN(len, 64 * KiB);

		ret = blk_pwrite(fd, z, n, off);
		off += n;
		len -= n;
	}
	free(z);
	return ret;
}

static int zero_range_file(int fd, uint64_t off, uint64_t len)
{
	int ret = blk_punch(fd, off, len);

	return ret == -EOPNOTSUPP ? write_zeros(fd, off, len) : ret;
}


/* Write the footer (with the current size and geometry) at `off`. */
static int write_footer_at(struct vhd *v, uint64_t off)
{
	footer_seal(&v->footer);
	return blk_pwrite(v->fd, &v->footer, sizeof(v->footer), off);
}

static int set_bat_entry(struct vhd *v, uint64_t blk, uint32_t val)
{
	uint32_t be = htobe32(val);
	int ret = blk_pwrite(v->fd, &be, 4, v->bat_off + blk * 4);

	if (!ret)
		ret = blk_sync(v->fd);
	if (!ret)
		__atomic_store_n(&v->bat[blk], val, __ATOMIC_RELEASE);
	return ret;
}

/* A new block for `blk` at the end of the data, holding buf at `in`. */
static int allocate_block(struct vhd *v, uint64_t blk, uint64_t in, const uint8_t *buf, size_t n)
{
	uint64_t start = v->data_end, block_end = start + v->bitmap_size + v->block_size;
	uint64_t old_size = v->file_size; /* what lies below may be stale */
	uint8_t *bm = NULL;
	int ret;

	if (start / VHD_SECTOR > UINT32_MAX - 1 || block_end / VHD_SECTOR >= UINT32_MAX)
		return -EFBIG;
	/* 1. The footer moves past the block (unless leaked space beyond
	 * already holds the end footer further on). */
	if (block_end > v->footer_off || !v->footer_end_ok) {
		ret = write_footer_at(v, block_end);
		if (ret)
			return ret;
		v->footer_off = block_end;
		v->footer_end_ok = true;
		v->file_size = MAX(v->file_size, block_end + 512);
	}
	/* 2. Bitmap and data, synced. */
	bm = calloc(1, v->bitmap_size);
	if (!bm)
		return -ENOMEM;
	if (v->type == VHD_TYPE_DIFF) {
		for (uint64_t s = in / VHD_SECTOR; s < (in + n) / VHD_SECTOR; s++)
			bm[s / 8] |= (uint8_t)(0x80 >> (s % 8));
	} else {
		memset(bm, 0xff, v->block_size / VHD_SECTOR / 8);
	}
	ret = blk_pwrite(v->fd, bm, v->bitmap_size, start);
	free(bm);
	/* Stale bytes (an old footer, a leak) around the data: zeros. */
	if (!ret && in > 0 && start + v->bitmap_size < old_size)
		ret = zero_range_file(v->fd, start + v->bitmap_size,
				      MIN(in, old_size - (start + v->bitmap_size)));
	if (!ret && start + v->bitmap_size + in + n < MIN(old_size, block_end)) {
		uint64_t zoff = start + v->bitmap_size + in + n;

		ret = zero_range_file(v->fd, zoff, MIN(old_size, block_end) - zoff);
	}
	if (!ret)
		ret = blk_pwrite(v->fd, buf, n, start + v->bitmap_size + in);
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret)
		return ret;
	/* 3. The BAT entry. */
	v->data_end = block_end;
	ret = set_bat_entry(v, blk, (uint32_t)(start / VHD_SECTOR));
	if (ret)
		v->broken = true;
	return ret;
}

/* Differencing: mark sectors [first, first+count) of an allocated block
 * present, after their data is synced. */
static int mark_present(struct vhd *v, uint64_t boff, uint64_t first, uint64_t count)
{
	uint64_t b0 = first / 8, b1 = (first + count - 1) / 8;
	uint8_t *bm;
	bool all = true;
	int ret = read_bitmap(v, boff, first, count, &bm);

	if (ret)
		return ret;
	for (uint64_t s = first; s < first + count; s++) {
		if (!bit_set(bm, s)) {
			all = false;
			bm[s / 8] |= (uint8_t)(0x80 >> (s % 8));
		}
	}
	if (!all) {
		ret = blk_sync(v->fd);
		if (!ret)
			ret = blk_pwrite(v->fd, bm + b0, (size_t)(b1 - b0 + 1), boff + b0);
		if (!ret)
			ret = blk_sync(v->fd);
	}
	free(bm);
	return ret;
}

static int write_in_block(struct vhd *v, uint64_t blk, uint64_t in, const uint8_t *buf, size_t n)
{
	uint32_t e = bat_get(v, blk);
	int ret;

	if (e == VHD_BAT_UNUSED) {
		pthread_mutex_lock(&v->meta);
		e = bat_get(v, blk);
		if (e == VHD_BAT_UNUSED) {
			ret = v->broken ? -EIO : allocate_block(v, blk, in, buf, n);
			pthread_mutex_unlock(&v->meta);
			return ret;
		}
		pthread_mutex_unlock(&v->meta);
	}
	ret = blk_pwrite(v->fd, buf, n, (uint64_t)e * VHD_SECTOR + v->bitmap_size + in);
	if (ret || v->type != VHD_TYPE_DIFF)
		return ret;
	pthread_mutex_lock(&v->meta);
	ret = v->broken ? -EIO : mark_present(v, (uint64_t)e * VHD_SECTOR, in / VHD_SECTOR, n / VHD_SECTOR);
	pthread_mutex_unlock(&v->meta);
	return ret;
}

static int vhd_write(struct blk_image *img, uint64_t off, const void *buf, size_t len, unsigned flags)
{
	struct vhd *v = VHD(img);
	const uint8_t *p = buf;
	int ret = 0;

	if (__atomic_load_n(&v->broken, __ATOMIC_RELAXED))
		return -EIO;
	pthread_rwlock_rdlock(&v->lock);
	if (v->type == VHD_TYPE_FIXED) {
		ret = blk_pwrite(v->fd, buf, len, off);
	} else {
		while (len && !ret) {
			uint64_t blk = off / v->block_size, in = off % v->block_size;
			size_t n = (size_t)MIN(len, v->block_size - in);

			ret = write_in_block(v, blk, in, p, n);
			p += n;
			off += n;
			len -= n;
		}
	}
	if (!ret && (flags & BLK_FUA))
		ret = blk_sync(v->fd);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

static int vhd_flush(struct blk_image *img)
{
	struct vhd *v = VHD(img);

	return v->broken ? -EIO : blk_sync(v->fd);
}

static int vhd_discard(struct blk_image *img, uint64_t off, uint64_t len)
{
	struct vhd *v = VHD(img);
	int ret = 0;

	if (v->broken)
		return -EIO;
	if (v->type == VHD_TYPE_DIFF) {
		/* Zeros must hide the parent: write them. */
		uint8_t *z = calloc(1, (size_t)MIN(len, v->block_size));

		if (!z)
			return -ENOMEM;
		while (len && !ret) {
			size_t n = (size_t)MIN(len, v->block_size);

			ret = vhd_write(img, off, z, n, 0);
			off += n;
			len -= n;
		}
		free(z);
		return ret;
	}
	pthread_rwlock_wrlock(&v->lock);
	if (v->type == VHD_TYPE_FIXED) {
		ret = zero_range_file(v->fd, off, len);
		goto out;
	}
	while (len && !ret) {
		uint64_t blk = off / v->block_size, in = off % v->block_size;
		uint64_t n = MIN(len, v->block_size - in);
		uint32_t e = v->bat[blk];

		if (e != VHD_BAT_UNUSED && n == v->block_size) {
			pthread_mutex_lock(&v->meta);
			ret = set_bat_entry(v, blk, VHD_BAT_UNUSED);
			if (ret)
				v->broken = true;
			pthread_mutex_unlock(&v->meta);
			if (!ret)
				zero_range_file(v->fd, (uint64_t)e * VHD_SECTOR,
						v->bitmap_size + v->block_size);
		} else if (e != VHD_BAT_UNUSED) {
			ret = zero_range_file(v->fd, (uint64_t)e * VHD_SECTOR + v->bitmap_size + in, n);
		}
		off += n;
		len -= n;
	}
out:
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

/* ---- resizing ---- */

static void set_size(struct vhd *v, uint64_t size)
{
	uint16_t c;
	uint8_t h, s;

	chs_of(size / VHD_SECTOR, &c, &h, &s);
	v->footer.current_size = htobe64(size);
	v->footer.cylinders = htobe16(c);
	v->footer.heads = h;
	v->footer.sectors_per_track = s;
	footer_seal(&v->footer);
}

/* Is [off, off+len) of the virtual disk all zeros? (v->lock held.) */
static int range_is_zero(struct vhd *v, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(MiB);
	int ret = 1;

	if (!buf)
		return -ENOMEM;
	while (len && ret == 1) {
		size_t n = (size_t)MIN(len, MiB);
		int r = read_locked(v, off, buf, n);

		if (r)
			ret = r;
		else if (!blk_is_zero(buf, n))
			ret = 0;
		off += n;
		len -= n;
	}
	free(buf);
	return ret;
}

static int resize_fixed(struct vhd *v, uint64_t new_size)
{
	uint64_t old = v->size;
	int ret;

	if (new_size < old) {
		ret = range_is_zero(v, new_size, old - new_size);
		if (ret <= 0)
			return ret ? ret : -ENOTEMPTY;
	}
	set_size(v, new_size);
	ret = blk_sync(v->fd);
	if (!ret)
		ret = write_footer_at(v, new_size);
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret)
		goto broken;
	v->footer_off = new_size;
	if (new_size > old) {
		/* The old footer is now disk data: zeros. (A crash just before
		 * this leaves its bytes in the grown part of the disk.) */
		ret = zero_range_file(v->fd, old, MIN(512, new_size - old));
	} else {
		ret = blk_truncate(v->fd, new_size + 512);
	}
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret)
		goto broken;
	v->file_size = new_size + 512;
	__atomic_store_n(&v->size, new_size, __ATOMIC_RELAXED);
	return 0;
broken:
	v->broken = true;
	return ret;
}

/* Make room for `entries` in the BAT: in place where its last sector has
 * spare entries, else a new copy at the end of the data. */
static int grow_bat(struct vhd *v, uint32_t entries)
{
	uint32_t *nb;
	uint32_t *disk;
	uint64_t bytes = ROUND_UP((uint64_t)entries * 4, 512), new_off;
	struct vhd_dyn_header dyn = v->dyn;
	int ret;

	nb = realloc(v->bat, (size_t)entries * 4 + 4);
	if (!nb)
		return -ENOMEM;
	v->bat = nb;
	for (uint32_t i = v->bat_entries; i < entries; i++)
		nb[i] = VHD_BAT_UNUSED;
	disk = malloc(bytes);
	if (!disk)
		return -ENOMEM;
	memset(disk, 0xff, bytes);
	for (uint32_t i = 0; i < v->bat_entries; i++)
		disk[i] = htobe32(nb[i]);
	if (entries <= v->bat_cap) {
		new_off = v->bat_off;
		ret = blk_pwrite(v->fd, disk + v->bat_entries, (size_t)(entries - v->bat_entries) * 4,
				 v->bat_off + (uint64_t)v->bat_entries * 4);
	} else {
		new_off = v->data_end;
		if (new_off + bytes > v->footer_off || !v->footer_end_ok) {
			ret = write_footer_at(v, new_off + bytes);
			if (ret)
				goto out;
			v->footer_off = new_off + bytes;
			v->footer_end_ok = true;
			v->file_size = MAX(v->file_size, new_off + bytes + 512);
		}
		ret = blk_pwrite(v->fd, disk, bytes, new_off);
	}
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret)
		goto out;
	/* One sector of the header changes: table offset, entries, checksum. */
	dyn.table_offset = htobe64(new_off);
	dyn.max_table_entries = htobe32(entries);
	dyn_seal(&dyn);
	ret = blk_pwrite(v->fd, &dyn, 512, v->dyn_off);
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret) {
		v->broken = true;
		goto out;
	}
	v->dyn = dyn;
	if (new_off != v->bat_off) {
		/* The old table is free space now. */
		zero_range_file(v->fd, v->bat_off, ROUND_UP((uint64_t)v->bat_entries * 4, 512));
		v->data_end = new_off + bytes;
		v->meta_end = MAX(v->meta_end, v->data_end);
	}
	v->bat_off = new_off;
	v->bat_entries = entries;
	v->bat_cap = (uint32_t)(bytes / 4);
out:
	free(disk);
	return ret;
}

static int resize_dynamic(struct vhd *v, uint64_t new_size)
{
	uint64_t need = DIV_ROUND_UP(new_size, v->block_size);
	int ret;

	if (new_size > BLK_VHD_MAX_SIZE)
		return -EFBIG;
	if (new_size < v->size) {
		/* Nothing but zeros may be cut off. */
		ret = range_is_zero(v, new_size, v->size - new_size);
		if (ret <= 0)
			return ret ? ret : -ENOTEMPTY;
	}
	if (need > v->bat_entries) {
		ret = grow_bat(v, (uint32_t)need);
		if (ret)
			return ret;
	}
	set_size(v, new_size);
	/* The copy at 0 first: the end footer decides until it is written. */
	ret = blk_pwrite(v->fd, &v->footer, 512, 0);
	if (!ret)
		ret = blk_sync(v->fd);
	if (!ret)
		ret = write_footer_at(v, v->footer_off);
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret) {
		v->broken = true;
		return ret;
	}
	v->footer_copy_ok = true;
	__atomic_store_n(&v->size, new_size, __ATOMIC_RELAXED);
	return 0;
}

static int vhd_resize(struct blk_image *img, uint64_t new_size)
{
	struct vhd *v = VHD(img);
	int ret;

	if (v->broken)
		return -EIO;
	if (!new_size || new_size % VHD_SECTOR)
		return -EINVAL;
	pthread_rwlock_wrlock(&v->lock);
	pthread_mutex_lock(&v->meta);
	ret = v->type == VHD_TYPE_FIXED ? resize_fixed(v, new_size) : resize_dynamic(v, new_size);
	pthread_mutex_unlock(&v->meta);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

/* ---- for image operations ---- */

int vhd_block_status(struct blk_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
		     enum blk_status *st)
{
	struct vhd *v = VHD(img);
	uint64_t blk, in, n;
	uint32_t e;
	uint8_t *bm;
	int ret;

	*pnum = len;
	*st = BLK_ST_DATA;
	if (v->type == VHD_TYPE_FIXED)
		return 0;
	blk = off / v->block_size;
	in = off % v->block_size;
	n = MIN(len, v->block_size - in);
	e = bat_get(v, blk);
	*pnum = n;
	if (e == VHD_BAT_UNUSED) {
		*st = BLK_ST_ABSENT;
	} else if (v->type == VHD_TYPE_DIFF && n >= VHD_SECTOR) {
		uint64_t first = in / VHD_SECTOR, count = n / VHD_SECTOR, run = 1;
		bool here;

		ret = read_bitmap(v, (uint64_t)e * VHD_SECTOR, first, count, &bm);
		if (ret)
			return ret;
		here = bit_set(bm, first);
		while (run < count && bit_set(bm, first + run) == here)
			run++;
		free(bm);
		*pnum = run * VHD_SECTOR;
		*st = here ? BLK_ST_DATA : BLK_ST_ABSENT;
	}
	/* Extend over following blocks in the same state (dynamic only). */
	if (v->type == VHD_TYPE_DYNAMIC) {
		while (*pnum < len) {
			uint64_t b = (off + *pnum) / v->block_size;
			bool absent = bat_get(v, b) == VHD_BAT_UNUSED;

			if (absent != (*st == BLK_ST_ABSENT))
				break;
			*pnum = MIN(len, *pnum + v->block_size);
		}
	}
	return 0;
}

void vhd_details(struct blk_image *img, struct blk_details *d)
{
	struct vhd *v = VHD(img);

	d->type = v->type == VHD_TYPE_FIXED ? BLK_TYPE_FIXED :
		  v->type == VHD_TYPE_DIFF  ? BLK_TYPE_DIFF : BLK_TYPE_DYNAMIC;
	d->size = v->size;
	d->logical_sector = d->physical_sector = 512;
	d->block_size = v->type == VHD_TYPE_FIXED ? 0 : v->block_size;
	if (v->type == VHD_TYPE_FIXED) {
		d->allocated = v->size;
		return;
	}
	for (uint32_t i = 0; i < v->bat_entries; i++)
		if (v->bat[i] != VHD_BAT_UNUSED)
			d->allocated += v->block_size;
	d->allocated = MIN(d->allocated, v->size);
	if (v->parent_path)
		snprintf(d->parent, sizeof(d->parent), "%s", v->parent_path);
}

const char *vhd_parent_path(struct blk_image *img)
{
	struct vhd *v = VHD(img);
	static const uint32_t order[] = { VHD_PLAT_W2RU, VHD_PLAT_W2KU };

	if (v->type != VHD_TYPE_DIFF)
		return NULL;
	if (v->parent_path)
		return v->parent_path;
	for (size_t o = 0; o < 2; o++) {
		for (int i = 0; i < 8; i++) {
			char *rel, *full;

			if (be32toh(v->dyn.locators[i].platform_code) != order[o])
				continue;
			rel = locator_path(v, &v->dyn.locators[i]);
			if (!rel)
				continue;
			full = blk_path_join_dir(v->path, rel);
			free(rel);
			if (!full)
				continue;
			if (access(full, F_OK) == 0 || !v->parent_path) {
				free(v->parent_path);
				v->parent_path = full;
				if (access(full, F_OK) == 0)
					return v->parent_path;
			} else {
				free(full);
			}
		}
	}
	return v->parent_path;
}

const uint8_t *vhd_unique_id(struct blk_image *img)
{
	return VHD(img)->footer.unique_id;
}

/* ---- check ---- */

struct check_ctx {
	struct blk_checker *c;
};

static void __attribute__((format(printf, 2, 3))) check_problem(void *ctx, const char *fmt, ...)
{
	struct blk_checker *c = ctx;
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	blk_check_msg(c, "ERROR: %s", msg);
	c->res->corruptions++;
}

/* Unreferenced space holding data between the structures: leaks. */
static int find_leaks(struct vhd *v, struct blk_checker *c)
{
	struct range *r;
	size_t n;
	uint64_t pos = 0;
	uint8_t *buf = NULL;
	int ret = collect_ranges(v, &r, &n);

	if (ret)
		return ret;
	buf = malloc(MiB);
	if (!buf) {
		free(r);
		return -ENOMEM;
	}
	for (size_t i = 0; i <= n; i++) {
		uint64_t gap_end = i < n ? r[i].start : v->footer_end_ok ? v->footer_off : v->file_size;

		for (uint64_t g = pos; g < gap_end;) {
			uint64_t len = MIN(gap_end - g, MiB);
			off_t data = lseek(v->fd, (off_t)g, SEEK_DATA);

			if (data >= 0 && (uint64_t)data > g) {
				g = MIN(gap_end, (uint64_t)data);
				continue;
			}
			if (data < 0 && errno == ENXIO)
				break;
			ret = blk_pread(v->fd, buf, (size_t)len, g);
			if (ret)
				goto out;
			if (!blk_is_zero(buf, (size_t)len)) {
				c->res->leaks++;
				c->res->leaked_bytes += len;
				blk_check_msg(c, "Leaked: %llu bytes at offset %llu hold data no BAT entry "
					      "refers to", (unsigned long long)len, (unsigned long long)g);
				if (c->repair && !zero_range_file(v->fd, g, len))
					c->res->fixed++;
			}
			g += len;
		}
		if (i < n)
			pos = MAX(pos, r[i].end);
	}
out:
	free(buf);
	free(r);
	return ret;
}

int vhd_check(struct blk_image *img, struct blk_checker *c)
{
	struct vhd *v = VHD(img);
	int ret;

	if (!v->footer_end_ok) {
		blk_check_msg(c, "The footer at the end of the file is damaged (the copy at the start "
			      "is used)%s", c->repair ? "" : "; --repair rewrites it");
		c->res->repairable++;
	}
	if (v->type == VHD_TYPE_FIXED) {
		if (v->footer_off > v->size) {
			uint64_t extra = v->footer_off - v->size;

			blk_check_msg(c, "Leaked: %llu bytes between the disk data and the footer",
				      (unsigned long long)extra);
			c->res->leaks++;
			c->res->leaked_bytes += extra;
			if (c->repair) {
				ret = write_footer_at(v, v->size);
				if (!ret)
					ret = blk_truncate(v->fd, v->size + 512);
				if (!ret)
					ret = blk_sync(v->fd);
				if (ret)
					return ret;
				c->res->fixed++;
			}
		}
		return 0;
	}
	if (!v->footer_copy_ok) {
		blk_check_msg(c, "The footer copy at the start of the file differs from the footer");
		c->res->repairable++;
	}
	validate_layout(v, check_problem, c);
	if (c->res->corruptions)
		return 0;
	ret = find_leaks(v, c);
	if (ret)
		return ret;
	if (!c->repair)
		return 0;
	/* Footer at the end of the data, copy at 0, file cut after it. */
	if (!v->footer_end_ok || v->footer_off != v->data_end || !v->footer_copy_ok ||
	    v->file_size != v->data_end + 512) {
		footer_seal(&v->footer);
		ret = blk_pwrite(v->fd, &v->footer, 512, 0);
		if (!ret)
			ret = blk_sync(v->fd);
		if (!ret)
			ret = write_footer_at(v, v->data_end);
		if (!ret)
			ret = blk_truncate(v->fd, v->data_end + 512);
		if (!ret)
			ret = blk_sync(v->fd);
		if (ret)
			return ret;
		if (!v->footer_end_ok)
			c->res->fixed++;
		if (!v->footer_copy_ok)
			c->res->fixed++;
		v->footer_off = v->data_end;
		v->file_size = v->data_end + 512;
		v->footer_end_ok = v->footer_copy_ok = true;
	}
	return 0;
}

/* ---- compact ---- */

static int move_block(struct vhd *v, uint32_t blk, uint64_t to, uint8_t *buf)
{
	uint64_t from = (uint64_t)v->bat[blk] * VHD_SECTOR, len = v->bitmap_size + v->block_size;
	int ret = blk_pread(v->fd, buf, (size_t)len, from);

	if (!ret)
		ret = blk_pwrite(v->fd, buf, (size_t)len, to);
	if (!ret)
		ret = blk_sync(v->fd);
	if (!ret)
		ret = set_bat_entry(v, blk, (uint32_t)(to / VHD_SECTOR));
	return ret;
}

int vhd_compact(struct blk_image *img, struct blk_progress *p, uint64_t *freed)
{
	struct vhd *v = VHD(img);
	uint64_t L, before = v->file_size, pos;
	struct range *r = NULL;
	size_t n, nb = 0, i, j;
	uint8_t *buf;
	int ret = 0;

	*freed = 0;
	if (v->type == VHD_TYPE_FIXED)
		return -EOPNOTSUPP;
	if (v->broken)
		return -EIO;
	L = v->bitmap_size + v->block_size;
	buf = malloc(L);
	if (!buf)
		return -ENOMEM;
	pthread_rwlock_wrlock(&v->lock);
	pthread_mutex_lock(&v->meta);
	if (p)
		p->total = (uint64_t)v->bat_entries * 2;
	/* 1. Blocks with nothing in them go. */
	for (uint32_t b = 0; b < v->bat_entries && !ret; b++) {
		uint64_t off = (uint64_t)v->bat[b] * VHD_SECTOR;
		bool empty;

		blk_progress_update(p, b);
		if (v->bat[b] == VHD_BAT_UNUSED)
			continue;
		if (v->type == VHD_TYPE_DIFF) {
			ret = blk_pread(v->fd, buf, v->bitmap_size, off);
			empty = !ret && blk_is_zero(buf, v->bitmap_size);
		} else {
			ret = blk_pread(v->fd, buf, v->block_size, off + v->bitmap_size);
			empty = !ret && blk_is_zero(buf, v->block_size);
		}
		if (!ret && empty) {
			ret = set_bat_entry(v, b, VHD_BAT_UNUSED);
			if (!ret)
				zero_range_file(v->fd, off, L);
		}
	}
	if (ret)
		goto out;
	/* 2. The highest blocks move down into holes that fit them. */
	ret = collect_ranges(v, &r, &n);
	if (ret)
		goto out;
	/* Structures stay where they are; blocks from the top move into the
	 * lowest hole below them that fits. */
	pos = 0;
	for (i = 0; i < n; i++)
		nb += r[i].what >= 0;
	for (i = 0, j = n; i < j && !ret;) {
		size_t top = j;

		while (top > i && r[top - 1].what < 0)
			top--;
		if (top == i)
			break;
		if (r[i].start >= pos + L && r[top - 1].start > pos) {
			ret = move_block(v, (uint32_t)r[top - 1].what, pos, buf);
			pos += L;
			j = top - 1;
		} else {
			pos = MAX(pos, r[i].end);
			i++;
		}
		blk_progress_update(p, v->bat_entries + (uint64_t)v->bat_entries * (i + n - j) / (n ? n : 1));
	}
	if (ret)
		goto out;
	compute_data_end(v);
	/* 3. The footer after the last block, the file cut there. */
	if (v->data_end < v->footer_off || !v->footer_end_ok) {
		ret = write_footer_at(v, v->data_end);
		if (!ret)
			ret = blk_truncate(v->fd, v->data_end + 512);
		if (!ret)
			ret = blk_sync(v->fd);
		if (ret)
			goto out;
		v->footer_off = v->data_end;
		v->file_size = v->data_end + 512;
		v->footer_end_ok = true;
	}
	blk_progress_update(p, p ? p->total : 0);
	*freed = before > v->file_size ? before - v->file_size : 0;
out:
	if (ret)
		v->broken = true;
	pthread_mutex_unlock(&v->meta);
	pthread_rwlock_unlock(&v->lock);
	free(r);
	free(buf);
	return ret;
}

/* ---- create ---- */

static void footer_init(struct vhd_footer *f, uint32_t type, uint64_t size, uint64_t data_offset)
{
	uint16_t c;
	uint8_t h, s;
	struct blk_guid id;

	memset(f, 0, sizeof(*f));
	memcpy(f->cookie, VHD_COOKIE, 8);
	f->features = htobe32(VHD_FEATURES_RESERVED);
	f->version = htobe32(VHD_VERSION);
	f->data_offset = htobe64(data_offset);
	f->timestamp = htobe32((uint32_t)(time(NULL) - VHD_TIME_EPOCH));
	memcpy(f->creator_app, "hvmm", 4);
	f->creator_version = htobe32(0x00010000);
	f->creator_os = htobe32(VHD_HOST_OS_WINDOWS);
	f->original_size = htobe64(size);
	f->current_size = htobe64(size);
	chs_of(size / VHD_SECTOR, &c, &h, &s);
	f->cylinders = htobe16(c);
	f->heads = h;
	f->sectors_per_track = s;
	f->disk_type = htobe32(type);
	blk_guid_random(&id);
	memcpy(f->unique_id, id.b, 16);
	footer_seal(f);
}

/* A Windows path from a POSIX one: slashes become backslashes. */
static uint8_t *windows_utf16le(const char *path, size_t *bytes)
{
	char *w = strdup(path), *p;
	uint8_t *out;

	if (!w)
		return NULL;
	for (p = w; *p; p++)
		if (*p == '/')
			*p = '\\';
	out = blk_utf8_to_utf16(w, false, bytes);
	free(w);
	return out;
}

int vhd_create(const char *path, const struct blk_create_opts *o, struct blk_error *err)
{
	uint32_t type = o->type == BLK_TYPE_FIXED ? VHD_TYPE_FIXED :
			o->type == BLK_TYPE_DIFF  ? VHD_TYPE_DIFF : VHD_TYPE_DYNAMIC;
	uint32_t bs = o->block_size ? o->block_size : BLK_VHD_DEFAULT_BLOCK;
	struct vhd_footer f;
	struct vhd_dyn_header dyn;
	struct blk_disk *parent = NULL;
	uint8_t *loc[2] = { NULL, NULL }, *bat = NULL;
	size_t loc_len[2] = { 0, 0 };
	char *abs_parent = NULL, *rel_parent = NULL;
	uint64_t size = o->size, pos;
	uint16_t c;
	uint8_t h, s;
	int fd, ret;

	if (o->logical_sector && o->logical_sector != 512) {
		blk_seterr(err, "%s: VHD has 512-byte sectors only", path);
		return -EINVAL;
	}
	if (o->physical_sector && o->physical_sector != 512) {
		blk_seterr(err, "%s: VHD has 512-byte sectors only", path);
		return -EINVAL;
	}
	if (type != VHD_TYPE_FIXED && (bs < VHD_MIN_BLOCK || bs > VHD_MAX_BLOCK || (bs & (bs - 1)))) {
		blk_seterr(err, "%s: the block size must be a power of 2 from 4 KiB to 256 MiB", path);
		return -EINVAL;
	}
	if (type == VHD_TYPE_DIFF) {
		struct blk_info pi;

		parent = blk_open(o->parent, BLK_FMT_VHD, BLK_OPEN_RDONLY, err);
		if (!parent)
			return -EINVAL;
		blk_get_info(parent, &pi);
		if (size && size != pi.size) {
			blk_seterr(err, "%s: a differencing VHD has its parent's size (%llu bytes)", path,
				   (unsigned long long)pi.size);
			blk_close(parent);
			return -EINVAL;
		}
		size = pi.size;
		abs_parent = blk_absolute_path(o->parent);
		rel_parent = blk_relative_path(path, o->parent);
		if (!abs_parent || !rel_parent) {
			blk_seterr(err, "%s: cannot resolve the parent's path", o->parent);
			ret = -EINVAL;
			goto out_parent;
		}
	} else {
		if (!size) {
			blk_seterr(err, "%s: the size must be more than 0", path);
			return -EINVAL;
		}
		if (size > BLK_VHD_MAX_SIZE) {
			blk_seterr(err, "%s: a VHD holds at most 2040 GiB", path);
			return -EFBIG;
		}
		size = vhd_round_size(size, &c, &h, &s);
		if (size > BLK_VHD_MAX_SIZE) {
			blk_seterr(err, "%s: a VHD holds at most 2040 GiB", path);
			return -EFBIG;
		}
	}

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		blk_seterr(err, "%s: cannot create: %s", path, strerror(errno));
		goto out_parent;
	}
	if (type == VHD_TYPE_FIXED) {
		footer_init(&f, type, size, VHD_FIXED_DATA_OFFSET);
		ret = blk_allocate(fd, 0, size);
		if (!ret)
			ret = blk_pwrite(fd, &f, 512, size);
		goto done;
	}

	footer_init(&f, type, size, 512);
	memset(&dyn, 0, sizeof(dyn));
	memcpy(dyn.cookie, VHD_DYN_COOKIE, 8);
	dyn.data_offset = htobe64(0xFFFFFFFFFFFFFFFFULL);
	dyn.header_version = htobe32(VHD_DYN_VERSION);
	dyn.block_size = htobe32(bs);
	uint32_t entries = (uint32_t)DIV_ROUND_UP(size, bs);
	dyn.max_table_entries = htobe32(entries);
	pos = 512 + 1024;
	if (type == VHD_TYPE_DIFF) {
		struct stat st;
		size_t nlen;
		uint8_t *name;
		char *rel = NULL;

		memcpy(dyn.parent_unique_id, vhd_unique_id(parent->img), 16);
		if (stat(o->parent, &st) == 0)
			dyn.parent_timestamp = htobe32((uint32_t)(st.st_mtime - VHD_TIME_EPOCH));
		/* The spec's "file name of the parent". */
		name = blk_utf8_to_utf16(strrchr(abs_parent, '/') ? strrchr(abs_parent, '/') + 1 :
					 abs_parent, true, &nlen);
		if (name)
			memcpy(dyn.parent_name, name, MIN(nlen, sizeof(dyn.parent_name)));
		free(name);
		if (asprintf(&rel, "%s%s", strncmp(rel_parent, "../", 3) ? "./" : "", rel_parent) < 0)
			rel = NULL;
		loc[0] = rel ? windows_utf16le(rel, &loc_len[0]) : NULL;
		free(rel);
		loc[1] = windows_utf16le(abs_parent, &loc_len[1]);
		if (!loc[0] || !loc[1]) {
			blk_seterr(err, "%s: the parent's path is not valid UTF-8", o->parent);
			ret = -EINVAL;
			goto done;
		}
		static const uint32_t codes[2] = { VHD_PLAT_W2RU, VHD_PLAT_W2KU };
		for (int i = 0; i < 2; i++) {
			uint64_t space = ROUND_UP(loc_len[i], 512);

			dyn.locators[i].platform_code = htobe32(codes[i]);
			dyn.locators[i].data_space = htobe32((uint32_t)(space / 512));
			dyn.locators[i].data_length = htobe32((uint32_t)loc_len[i]);
			dyn.locators[i].data_offset = htobe64(pos);
			ret = blk_pwrite(fd, loc[i], loc_len[i], pos);
			if (ret)
				goto done;
			pos += space;
		}
	}
	dyn.table_offset = htobe64(pos);
	dyn_seal(&dyn);
	uint64_t bat_bytes = ROUND_UP((uint64_t)entries * 4, 512);
	bat = malloc(bat_bytes);
	if (!bat) {
		ret = -ENOMEM;
		goto done;
	}
	memset(bat, 0xff, bat_bytes);
	ret = blk_pwrite(fd, &f, 512, 0);
	if (!ret)
		ret = blk_pwrite(fd, &dyn, sizeof(dyn), 512);
	if (!ret)
		ret = blk_pwrite(fd, bat, bat_bytes, pos);
	if (!ret)
		ret = blk_pwrite(fd, &f, 512, pos + bat_bytes);
done:
	if (!ret)
		ret = blk_sync(fd);
	close(fd);
	if (ret) {
		if (err && !err->msg[0])
			blk_seterr(err, "%s: cannot write: %s", path, strerror(-ret));
		unlink(path);
	}
out_parent:
	free(bat);
	free(loc[0]);
	free(loc[1]);
	free(abs_parent);
	free(rel_parent);
	if (parent)
		blk_close(parent);
	return ret;
}

uint64_t vhd_rounded_size(uint64_t bytes)
{
	uint16_t c;
	uint8_t h, s;

	return vhd_round_size(bytes, &c, &h, &s);
}

static bool vhd_probe_head(const uint8_t *head, size_t len, uint64_t file_size)
{
	return vhd_probe(head, len, file_size);
}

const struct blk_driver blk_vhd_driver = {
	.name = "vhd",
	.format = BLK_FMT_VHD,
	.probe = vhd_probe_head,
	.open = vhd_open,
	.close = vhd_close,
	.info = vhd_info,
	.read = vhd_read,
	.write = vhd_write,
	.flush = vhd_flush,
	.discard = vhd_discard,
	.resize = vhd_resize,
};
