/* VHDX image operations: create, check (and repair), compact. */
#include "block/vhdx_internal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- create ---- */

#define C_LOG_OFF (1 * MiB)
#define C_LOG_LEN (1 * MiB)
#define C_META_OFF (2 * MiB)
#define C_META_LEN (1 * MiB)
#define C_BAT_OFF (3 * MiB)

#define ITEM_FP 0x10000
#define ITEM_SIZE 0x10008
#define ITEM_PAGE83 0x10010
#define ITEM_LSS 0x10020
#define ITEM_PSS 0x10024
#define ITEM_LOCATOR 0x11000

static void seal_region_table(uint8_t *t)
{
	struct vhdx_region_header *h = (void *)t;

	h->checksum = 0;
	h->checksum = htole32(blk_crc32c(0, t, VHDX_REGION_SIZE));
}

static void seal_header(struct vhdx_header *h)
{
	h->checksum = 0;
	h->checksum = htole32(blk_crc32c(0, h, sizeof(*h)));
}

/* Append key=value to a locator under construction. */
static int locator_add(uint8_t *buf, size_t cap, size_t *used, uint16_t *count, const char *key,
		       const char *value)
{
	size_t kl, vl;
	uint8_t *k = blk_utf8_to_utf16(key, false, &kl), *val = blk_utf8_to_utf16(value, false, &vl);
	struct vhdx_locator_entry e;
	int ret = -EINVAL;

	if (!k || !val || !kl || !vl || kl > 0xffff || vl > 0xffff || *used + kl + vl > cap)
		goto out;
	e.key_offset = htole32((uint32_t)*used);
	e.key_length = htole16((uint16_t)kl);
	memcpy(buf + *used, k, kl);
	*used += kl;
	e.value_offset = htole32((uint32_t)*used);
	e.value_length = htole16((uint16_t)vl);
	memcpy(buf + *used, val, vl);
	*used += vl;
	memcpy(buf + sizeof(struct vhdx_locator_header) + 12 * (size_t)*count, &e, sizeof(e));
	(*count)++;
	ret = 0;
out:
	free(k);
	free(val);
	return ret;
}

/* Windows form of a POSIX path: backslashes. */
static char *windows_path(const char *p)
{
	char *w = strdup(p);

	for (char *c = w; c && *c; c++)
		if (*c == '/')
			*c = '\\';
	return w;
}

static int build_locator(const char *child, const char *parent, const struct blk_guid *linkage,
			 uint8_t *buf, size_t cap, size_t *len, struct blk_error *err)
{
	struct vhdx_locator_header h = { .locator_type = VHDX_LOCATOR_TYPE };
	char link[BLK_GUID_STR], *rel = blk_relative_path(child, parent), *abs = blk_absolute_path(parent);
	char *wrel = NULL, *wabs = NULL, *rel2 = NULL;
	uint16_t count = 0;
	size_t used = sizeof(h) + 12 * 3;
	int ret = -EINVAL;

	if (!rel || !abs) {
		blk_seterr(err, "%s: cannot resolve the parent's path", parent);
		goto out;
	}
	if (asprintf(&rel2, "%s%s", strncmp(rel, "../", 3) ? "./" : "", rel) < 0) {
		rel2 = NULL;
		goto out;
	}
	wrel = windows_path(rel2);
	wabs = windows_path(abs);
	blk_guid_format(linkage, link);
	memset(buf, 0, cap);
	if (!wrel || !wabs || locator_add(buf, cap, &used, &count, "parent_linkage", link) ||
	    locator_add(buf, cap, &used, &count, "relative_path", wrel) ||
	    locator_add(buf, cap, &used, &count, "absolute_win32_path", wabs)) {
		blk_seterr(err, "%s: the parent's path is too long or not UTF-8", parent);
		goto out;
	}
	h.key_value_count = htole16(count);
	memcpy(buf, &h, sizeof(h));
	*len = used;
	ret = 0;
out:
	free(rel);
	free(abs);
	free(rel2);
	free(wrel);
	free(wabs);
	return ret;
}

int vhdx_create(const char *path, const struct blk_create_opts *o, struct blk_error *err)
{
	uint32_t lss = o->logical_sector ? o->logical_sector : 512;
	uint32_t pss = o->physical_sector ? o->physical_sector : 4096;
	bool diff = o->type == BLK_TYPE_DIFF, fixed = o->type == BLK_TYPE_FIXED;
	uint32_t bs = o->block_size ? o->block_size :
		      diff ? BLK_VHDX_DEFAULT_DIFF_BLOCK : BLK_VHDX_DEFAULT_BLOCK;
	uint64_t size = o->size, entries, bat_len, data_off, pb, end;
	struct blk_guid linkage = { { 0 } };
	struct blk_disk *parent = NULL;
	uint8_t *buf = NULL, locator[4096];
	size_t locator_len = 0;
	int fd = -1, ret;

	if (lss != 512 && lss != 4096) {
		blk_seterr(err, "%s: the sector size must be 512 or 4096", path);
		return -EINVAL;
	}
	if (pss != 512 && pss != 4096)
		pss = 4096;
	if (pss < lss)
		pss = lss;
	if (bs < VHDX_MIN_BLOCK || bs > VHDX_MAX_BLOCK || (bs & (bs - 1))) {
		blk_seterr(err, "%s: the block size must be a power of 2 from 1 MiB to 256 MiB", path);
		return -EINVAL;
	}
	if (diff) {
		struct vhdx *pv;

		parent = blk_open(o->parent, BLK_FMT_VHDX, BLK_OPEN_RDONLY, err);
		if (!parent)
			return -EINVAL;
		pv = VHDX(parent->img);
		if (o->logical_sector && o->logical_sector != pv->lss) {
			blk_seterr(err, "%s: the parent has %u-byte sectors; a child has the same", path,
				   pv->lss);
			ret = -EINVAL;
			goto out;
		}
		lss = pv->lss;
		if (!o->physical_sector)
			pss = pv->pss;
		if (size && size < pv->vsize) {
			blk_seterr(err, "%s: a differencing disk cannot be smaller than its parent "
				   "(%llu bytes)", path, (unsigned long long)pv->vsize);
			ret = -EINVAL;
			goto out;
		}
		if (!size)
			size = pv->vsize;
		linkage = pv->hdr.data_write_guid;
		ret = build_locator(path, o->parent, &linkage, locator, sizeof(locator), &locator_len,
				    err);
		if (ret)
			goto out;
	}
	if (!size) {
		blk_seterr(err, "%s: the size must be more than 0", path);
		ret = -EINVAL;
		goto out;
	}
	size = ROUND_UP(size, lss);
	if (size > BLK_VHDX_MAX_SIZE) {
		blk_seterr(err, "%s: a VHDX holds at most 64 TiB", path);
		ret = -EFBIG;
		goto out;
	}
	entries = vhdx_bat_entries_for(size, bs, lss, diff);
	bat_len = ROUND_UP(entries * 8, MiB);
	data_off = C_BAT_OFF + bat_len;
	pb = DIV_ROUND_UP(size, bs);
	end = fixed ? data_off + pb * bs : data_off;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		blk_seterr(err, "%s: cannot create: %s", path, strerror(errno));
		goto out;
	}
	buf = calloc(1, MAX(VHDX_REGION_SIZE, 64 * KiB));
	if (!buf) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = blk_truncate(fd, end);
	if (ret)
		goto fail;

	/* File identifier. */
	{
		struct vhdx_file_id id = { .signature = htole64(VHDX_FILE_SIG) };
		static const char creator[] = "hvmm";

		for (size_t i = 0; i < sizeof(creator) - 1; i++)
			id.creator[i] = htole16((uint16_t)creator[i]);
		ret = blk_pwrite(fd, &id, sizeof(id), VHDX_FILE_ID_OFF);
		if (ret)
			goto fail;
	}
	/* Headers: both valid, the second current. */
	{
		struct vhdx_header h;

		memset(&h, 0, sizeof(h));
		h.signature = htole32(VHDX_HEADER_SIG);
		h.version = htole16(VHDX_VERSION);
		h.log_version = htole16(VHDX_LOG_VERSION);
		h.log_length = htole32(C_LOG_LEN);
		h.log_offset = htole64(C_LOG_OFF);
		if ((ret = blk_guid_random(&h.file_write_guid)) ||
		    (ret = blk_guid_random(&h.data_write_guid)))
			goto fail;
		h.sequence = htole64(1);
		seal_header(&h);
		ret = blk_pwrite(fd, &h, sizeof(h), VHDX_HEADER1_OFF);
		h.sequence = htole64(2);
		seal_header(&h);
		if (!ret)
			ret = blk_pwrite(fd, &h, sizeof(h), VHDX_HEADER2_OFF);
		if (ret)
			goto fail;
	}
	/* Region tables. */
	{
		struct vhdx_region_header *rh = (void *)buf;
		struct vhdx_region_entry *re = (void *)(buf + sizeof(*rh));

		memset(buf, 0, VHDX_REGION_SIZE);
		rh->signature = htole32(VHDX_REGION_SIG);
		rh->entry_count = htole32(2);
		re[0] = (struct vhdx_region_entry){ VHDX_REGION_BAT, htole64(C_BAT_OFF),
						    htole32((uint32_t)bat_len), htole32(VHDX_REGION_REQUIRED) };
		re[1] = (struct vhdx_region_entry){ VHDX_REGION_METADATA, htole64(C_META_OFF),
						    htole32(C_META_LEN), htole32(VHDX_REGION_REQUIRED) };
		seal_region_table(buf);
		ret = blk_pwrite(fd, buf, VHDX_REGION_SIZE, VHDX_REGION1_OFF);
		if (!ret)
			ret = blk_pwrite(fd, buf, VHDX_REGION_SIZE, VHDX_REGION2_OFF);
		if (ret)
			goto fail;
	}
	/* Metadata: the table, then the items. */
	{
		struct vhdx_metadata_header *mh = (void *)buf;
		struct vhdx_metadata_entry *me = (void *)(buf + sizeof(*mh));
		struct vhdx_file_parameters fp = {
			htole32(bs), htole32(diff ? VHDX_PARAM_HAS_PARENT :
					     fixed ? VHDX_PARAM_LEAVE_BLOCKS_ALLOCATED : 0)
		};
		uint64_t le_size = htole64(size);
		uint32_t le_lss = htole32(lss), le_pss = htole32(pss);
		struct blk_guid page83;
		uint16_t n = 0;
		const uint32_t req = VHDX_META_IS_REQUIRED, vd = VHDX_META_IS_VIRTUAL_DISK;

		memset(buf, 0, 64 * KiB);
		if ((ret = blk_guid_random(&page83)))
			goto fail;
		mh->signature = htole64(VHDX_METADATA_SIG);
		me[n++] = (struct vhdx_metadata_entry){ VHDX_META_FILE_PARAMETERS, htole32(ITEM_FP),
							htole32(8), htole32(req), 0 };
		me[n++] = (struct vhdx_metadata_entry){ VHDX_META_VIRTUAL_DISK_SIZE, htole32(ITEM_SIZE),
							htole32(8), htole32(req | vd), 0 };
		me[n++] = (struct vhdx_metadata_entry){ VHDX_META_PAGE83, htole32(ITEM_PAGE83),
							htole32(16), htole32(req | vd), 0 };
		me[n++] = (struct vhdx_metadata_entry){ VHDX_META_LOGICAL_SECTOR, htole32(ITEM_LSS),
							htole32(4), htole32(req | vd), 0 };
		me[n++] = (struct vhdx_metadata_entry){ VHDX_META_PHYSICAL_SECTOR, htole32(ITEM_PSS),
							htole32(4), htole32(req | vd), 0 };
		if (diff)
			me[n++] = (struct vhdx_metadata_entry){ VHDX_META_PARENT_LOCATOR,
								htole32(ITEM_LOCATOR),
								htole32((uint32_t)locator_len),
								htole32(req), 0 };
		mh->entry_count = htole16(n);
		ret = blk_pwrite(fd, buf, 64 * KiB, C_META_OFF);
		if (!ret)
			ret = blk_pwrite(fd, &fp, 8, C_META_OFF + ITEM_FP);
		if (!ret)
			ret = blk_pwrite(fd, &le_size, 8, C_META_OFF + ITEM_SIZE);
		if (!ret)
			ret = blk_pwrite(fd, page83.b, 16, C_META_OFF + ITEM_PAGE83);
		if (!ret)
			ret = blk_pwrite(fd, &le_lss, 4, C_META_OFF + ITEM_LSS);
		if (!ret)
			ret = blk_pwrite(fd, &le_pss, 4, C_META_OFF + ITEM_PSS);
		if (!ret && diff)
			ret = blk_pwrite(fd, locator, locator_len, C_META_OFF + ITEM_LOCATOR);
		if (ret)
			goto fail;
	}
	/* BAT: fixed disks have every block, in a row after it. */
	if (fixed) {
		uint64_t cr = VHDX_SECTORS_PER_BITMAP * lss / bs;

		ret = blk_allocate(fd, data_off, pb * bs);
		for (uint64_t b = 0; b < pb && !ret;) {
			/* One 64 KiB piece of the BAT at a time. */
			uint64_t first = b + b / cr, idx;
			uint64_t piece = ROUND_DOWN(first * 8, 64 * KiB);

			memset(buf, 0, 64 * KiB);
			for (; b < pb && (idx = b + b / cr) * 8 < piece + 64 * KiB; b++)
				((uint64_t *)(void *)buf)[idx - piece / 8] =
					htole64((data_off + b * bs) | VHDX_PAYLOAD_FULLY_PRESENT);
			ret = blk_pwrite(fd, buf, 64 * KiB, C_BAT_OFF + piece);
		}
		if (ret)
			goto fail;
	}
	ret = blk_sync(fd);
	if (ret)
		goto fail;
	close(fd);
	fd = -1;
	goto out;
fail:
	if (err && !err->msg[0])
		blk_seterr(err, "%s: cannot write: %s", path, strerror(-ret));
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
out:
	free(buf);
	if (parent)
		blk_close(parent);
	return ret;
}

/* ---- check ---- */

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

struct span {
	uint64_t start, end;
	uint64_t idx; /* BAT index of a block; UINT64_MAX for a structure */
	uint64_t state;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Every structure and block in the file, sorted. Blocks count whole. */
static int collect_spans(struct vhdx *v, struct span **out, size_t *count)
{
	const struct vhdx_region_header *rh = (const void *)v->rt;
	const struct vhdx_region_entry *re = (const void *)(v->rt + sizeof(*rh));
	size_t n = 0, cap = 4 + le32toh(rh->entry_count);
	struct span *s;

	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t st = v->bat[i] & VHDX_BAT_STATE_MASK;

		cap += st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT;
	}
	s = malloc(cap * sizeof(*s));
	if (!s)
		return -ENOMEM;
	s[n++] = (struct span){ 0, VHDX_HEADER_SECTION, UINT64_MAX, 0 };
	s[n++] = (struct span){ v->log_off, v->log_off + v->log_len, UINT64_MAX, 0 };
	for (uint32_t i = 0; i < le32toh(rh->entry_count); i++)
		s[n++] = (struct span){ le64toh(re[i].file_offset),
					le64toh(re[i].file_offset) + le32toh(re[i].length), UINT64_MAX, 0 };
	for (uint64_t b = 0; b < v->payload_blocks; b++) {
		uint64_t idx = vhdx_payload_index(v, b), e = v->bat[idx];
		uint64_t st = e & VHDX_BAT_STATE_MASK;

		if (st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT)
			s[n++] = (struct span){ vhdx_entry_offset(e), vhdx_entry_offset(e) + v->block_size,
						idx, st };
	}
	if (v->has_parent) {
		for (uint64_t c = 0; c < DIV_ROUND_UP(v->payload_blocks, v->chunk_ratio); c++) {
			uint64_t idx = vhdx_sb_index(v, c), e;

			if (idx >= v->bat_entries)
				break;
			e = v->bat[idx];
			if ((e & VHDX_BAT_STATE_MASK) == VHDX_SB_PRESENT && n < cap)
				s[n++] = (struct span){ vhdx_entry_offset(e), vhdx_entry_offset(e) + MiB,
							idx, VHDX_SB_PRESENT };
		}
	}
	qsort(s, n, sizeof(*s), cmp_span);
	*out = s;
	*count = n;
	return 0;
}

static int zero_file(int fd, uint64_t off, uint64_t len)
{
	int ret = blk_punch(fd, off, len);

	if (ret == -EOPNOTSUPP) {
		uint8_t *z = calloc(1, 64 * KiB);

		ret = z ? 0 : -ENOMEM;
		for (uint64_t o = 0; o < len && !ret; o += 64 * KiB)
			ret = blk_pwrite(fd, z, (size_t)MIN(64 * KiB, len - o), off + o);
		free(z);
	}
	return ret;
}

/* Shorten the file to `end`, first logging that only that much is stable
 * (replay refuses a file shorter than its log's FlushedFileOffset). */
static int cut_file(struct vhdx *v, uint64_t end)
{
	struct vhdx_txn t;
	int ret;

	vhdx_txn_init(&t);
	ret = vhdx_log_commit(v, &t, end);
	vhdx_txn_free(&t);
	if (!ret)
		ret = blk_truncate(v->fd, end);
	if (!ret)
		ret = blk_sync(v->fd);
	if (!ret)
		v->file_size = end;
	return ret;
}

static void report_leak(struct blk_checker *c, uint64_t start, uint64_t len)
{
	if (!len)
		return;
	c->res->leaks++;
	c->res->leaked_bytes += len;
	blk_check_msg(c, "Leaked: %llu bytes at offset %llu hold data nothing refers to%s",
		      (unsigned long long)len, (unsigned long long)start,
		      c->repair ? " (freed)" : "");
	if (c->repair)
		c->res->fixed++;
}

static int find_leaks(struct vhdx *v, struct blk_checker *c)
{
	struct span *s;
	size_t n;
	uint64_t pos = 0, last_end = 0, run_start = 0, run_len = 0;
	uint8_t *buf = malloc(MiB);
	int ret = buf ? collect_spans(v, &s, &n) : -ENOMEM;

	if (ret) {
		free(buf);
		return ret;
	}
	for (size_t i = 0; i < n; i++)
		last_end = MAX(last_end, s[i].end);
	last_end = ROUND_UP(last_end, MiB);
	/* Unreferenced MiBs between the structures that hold data. */
	for (size_t i = 0; i <= n && !ret; i++) {
		uint64_t gap_end = i < n ? s[i].start : v->file_size;

		for (uint64_t g = ROUND_UP(pos, MiB); g < gap_end && !ret;) {
			uint64_t len = MIN(gap_end - g, MiB);
			off_t data = lseek(v->fd, (off_t)g, SEEK_DATA);

			if (data < 0 && errno == ENXIO)
				break;
			if (data >= 0 && (uint64_t)data >= g + len) {
				if ((uint64_t)data >= gap_end)
					break;
				g = ROUND_DOWN((uint64_t)data, MiB);
				continue;
			}
			ret = blk_pread(v->fd, buf, (size_t)len, g);
			if (ret)
				break;
			if (!blk_is_zero(buf, (size_t)len)) {
				if (run_len && run_start + run_len != g) {
					report_leak(c, run_start, run_len);
					run_len = 0;
				}
				if (!run_len)
					run_start = g;
				run_len += len;
				if (c->repair)
					ret = zero_file(v->fd, g, len);
			}
			g += len;
		}
		if (i < n)
			pos = MAX(pos, s[i].end);
	}
	report_leak(c, run_start, run_len);
	/* Space past the last structure: cut off when repairing (it holds
	 * nothing now). */
	if (!ret && c->repair && v->file_size > last_end)
		ret = cut_file(v, last_end);
	free(s);
	free(buf);
	return ret;
}

int vhdx_check(struct blk_image *img, struct blk_checker *c)
{
	struct vhdx *v = VHDX(img);
	uint8_t *other;
	int ret;

	if (v->log_replayed) {
		blk_check_msg(c, "The log held updates a crash left unwritten: replayed");
		c->res->repairable++;
		c->res->fixed++;
	} else if (v->log_pending) {
		blk_check_msg(c, "The log holds updates a crash left unwritten%s",
			      c->repair ? "" : " (--repair replays it)");
		c->res->repairable++;
	} else if (!blk_guid_is_zero(&v->hdr.log_guid)) {
		blk_check_msg(c, "The header marks the log in use but it holds nothing to replay");
		c->res->repairable++;
	}
	if (!v->hdr_other_ok) {
		blk_check_msg(c, "One of the two headers is damaged%s",
			      c->repair ? "" : " (--repair rewrites it)");
		c->res->repairable++;
		if (c->repair) {
			ret = vhdx_update_header(v, NULL, NULL, NULL);
			if (ret)
				return ret;
			c->res->fixed++;
		}
	}
	other = malloc(VHDX_REGION_SIZE * 2);
	if (!other)
		return -ENOMEM;
	ret = vhdx_read_meta(v, other, VHDX_REGION_SIZE, VHDX_REGION1_OFF);
	if (!ret)
		ret = vhdx_read_meta(v, other + VHDX_REGION_SIZE, VHDX_REGION_SIZE, VHDX_REGION2_OFF);
	if (!ret && (memcmp(other, v->rt, VHDX_REGION_SIZE) ||
		     memcmp(other + VHDX_REGION_SIZE, v->rt, VHDX_REGION_SIZE))) {
		blk_check_msg(c, "The two region tables differ (one is damaged)%s",
			      c->repair ? "" : " (--repair rewrites it)");
		c->res->repairable++;
		if (c->repair) {
			struct vhdx_txn t;

			vhdx_txn_init(&t);
			ret = vhdx_txn_write(v, &t, VHDX_REGION1_OFF, v->rt, VHDX_REGION_SIZE);
			if (!ret)
				ret = vhdx_txn_write(v, &t, VHDX_REGION2_OFF, v->rt, VHDX_REGION_SIZE);
			if (!ret)
				ret = vhdx_log_commit(v, &t, 0);
			vhdx_txn_free(&t);
			if (!ret)
				c->res->fixed++;
		}
	}
	free(other);
	if (ret)
		return ret;
	if (vhdx_validate_bat(v, check_problem, c))
		return 0; /* damaged: leaks would be guesses */
	if (!blk_guid_is_zero(&v->hdr.log_guid) && c->repair && !v->log_pending) {
		struct blk_guid zero = { { 0 } };

		ret = vhdx_update_header(v, NULL, NULL, &zero);
		if (ret)
			return ret;
		if (!v->log_replayed)
			c->res->fixed++;
	}
	return find_leaks(v, c);
}

/* ---- compact ---- */

static int block_is_zero(struct vhdx *v, uint64_t off, uint8_t *buf, bool *zero)
{
	*zero = true;
	for (uint64_t o = 0; o < v->block_size && *zero; o += MiB) {
		off_t data = lseek(v->fd, (off_t)(off + o), SEEK_DATA);
		int ret;

		if (data < 0 && errno == ENXIO)
			break; /* holes to the end */
		if (data >= 0 && (uint64_t)data >= off + o + MiB)
			continue;
		ret = blk_pread(v->fd, buf, MiB, off + o);
		if (ret)
			return ret;
		*zero = blk_is_zero(buf, MiB);
	}
	return 0;
}

static int move_block(struct vhdx *v, const struct span *s, uint64_t to, uint8_t *buf)
{
	uint64_t len = s->end - s->start;
	struct vhdx_txn t;
	int ret = 0;

	for (uint64_t o = 0; o < len && !ret; o += MiB) {
		ret = blk_pread(v->fd, buf, MiB, s->start + o);
		if (!ret)
			ret = blk_pwrite(v->fd, buf, MiB, to + o);
	}
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret)
		return ret;
	vhdx_txn_init(&t);
	ret = vhdx_txn_bat(v, &t, s->idx, to | s->state);
	if (!ret)
		ret = vhdx_log_commit(v, &t, 0);
	vhdx_txn_free(&t);
	return ret;
}

int vhdx_compact(struct blk_image *img, struct blk_progress *p, uint64_t *freed)
{
	struct vhdx *v = VHDX(img);
	uint64_t before = v->file_size, new_end = 0;
	struct span *s = NULL;
	size_t n = 0, i, j;
	struct vhdx_txn t;
	uint8_t *buf = malloc(MiB);
	uint64_t *punch = NULL;
	size_t npunch = 0;
	int ret = 0;

	*freed = 0;
	if (!buf)
		return -ENOMEM;
	if (v->fixed) {
		free(buf);
		return -EOPNOTSUPP;
	}
	pthread_rwlock_wrlock(&v->lock);
	pthread_mutex_lock(&v->meta);
	if (v->broken) {
		ret = -EIO;
		goto out;
	}
	ret = vhdx_begin_write(v, false);
	if (ret)
		goto out;
	punch = malloc(vhdx_txn_max_sectors(v) * sizeof(*punch) + sizeof(*punch));
	if (!punch) {
		ret = -ENOMEM;
		goto out;
	}
	if (p)
		p->total = v->payload_blocks * 2;
	/* 1. Blocks of zeros are given back. */
	vhdx_txn_init(&t);
	for (uint64_t b = 0; b < v->payload_blocks && !ret; b++) {
		uint64_t idx = vhdx_payload_index(v, b), e = v->bat[idx];
		bool zero;

		blk_progress_update(p, b);
		if ((e & VHDX_BAT_STATE_MASK) != VHDX_PAYLOAD_FULLY_PRESENT)
			continue;
		ret = block_is_zero(v, vhdx_entry_offset(e), buf, &zero);
		if (ret || !zero)
			continue;
		ret = vhdx_txn_bat(v, &t, idx, v->has_parent ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_UNMAPPED);
		punch[npunch++] = vhdx_entry_offset(e);
		if (!ret && (t.n + 2 >= vhdx_txn_max_sectors(v) || npunch >= vhdx_txn_max_sectors(v))) {
			ret = vhdx_log_commit(v, &t, 0);
			vhdx_txn_free(&t);
			for (size_t k = 0; k < npunch && !ret; k++)
				zero_file(v->fd, punch[k], v->block_size);
			npunch = 0;
		}
	}
	if (!ret && t.n)
		ret = vhdx_log_commit(v, &t, 0);
	vhdx_txn_free(&t);
	for (size_t k = 0; k < npunch && !ret; k++)
		zero_file(v->fd, punch[k], v->block_size);
	if (ret)
		goto out;
	/* 2. Blocks from the top move down into holes that fit them. */
	ret = collect_spans(v, &s, &n);
	if (ret)
		goto out;
	uint64_t pos = 0;
	for (i = 0, j = n; i < j && !ret;) {
		size_t top = j;

		while (top > i && s[top - 1].idx == UINT64_MAX)
			top--;
		if (top == i)
			break;
		uint64_t len = s[top - 1].end - s[top - 1].start;

		if (s[i].start >= pos + len && s[top - 1].start > pos) {
			ret = move_block(v, &s[top - 1], pos, buf);
			if (!ret)
				zero_file(v->fd, s[top - 1].start, len);
			s[top - 1].end = pos + len;
			s[top - 1].start = pos;
			pos += len;
			j = top - 1;
		} else {
			pos = MAX(pos, s[i].end);
			i++;
		}
		blk_progress_update(p, v->payload_blocks + v->payload_blocks * (i + n - j) / (n ? n : 1));
	}
	if (ret)
		goto out;
	/* 3. The file ends after the last structure. */
	for (i = 0; i < n; i++)
		new_end = MAX(new_end, s[i].end);
	new_end = ROUND_UP(new_end, MiB);
	if (new_end < v->file_size)
		ret = cut_file(v, new_end);
	blk_progress_update(p, p ? p->total : 0);
	if (!ret && before > v->file_size)
		*freed = before - v->file_size;
out:
	if (ret && ret != -ENOMEM)
		v->broken = true;
	pthread_mutex_unlock(&v->meta);
	pthread_rwlock_unlock(&v->lock);
	free(s);
	free(punch);
	free(buf);
	return ret;
}
