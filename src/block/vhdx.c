/* VHDX: fixed, dynamic and differencing disks (MS-VHDX).
 *
 * Open validates everything it will rely on against the file (headers,
 * log, region table, metadata, every BAT entry) and replays a pending log
 * first. Payload writes go straight to their block; a write to a block not
 * yet in the file appends a new 1 MiB-aligned block at the end, writes and
 * syncs the data, and only then logs the BAT (and sector bitmap) change.
 * Every metadata change goes through the log (vhdx_log.c). */
#include "block/vhdx_internal.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct blk_guid guid_bat = VHDX_REGION_BAT;
static const struct blk_guid guid_metadata = VHDX_REGION_METADATA;
static const struct blk_guid guid_file_params = VHDX_META_FILE_PARAMETERS;
static const struct blk_guid guid_vsize = VHDX_META_VIRTUAL_DISK_SIZE;
static const struct blk_guid guid_page83 = VHDX_META_PAGE83;
static const struct blk_guid guid_lss = VHDX_META_LOGICAL_SECTOR;
static const struct blk_guid guid_pss = VHDX_META_PHYSICAL_SECTOR;
static const struct blk_guid guid_locator = VHDX_META_PARENT_LOCATOR;
static const struct blk_guid guid_locator_type = VHDX_LOCATOR_TYPE;

uint64_t vhdx_bat_entries_for(uint64_t vsize, uint32_t block_size, uint32_t lss, bool diff)
{
	uint64_t cr = VHDX_SECTORS_PER_BITMAP * lss / block_size;
	uint64_t pb = DIV_ROUND_UP(vsize, block_size);

	if (diff)
		return DIV_ROUND_UP(pb, cr) * (cr + 1);
	return pb ? pb + (pb - 1) / cr : 0;
}

/* ---- metadata reads, headers ---- */

int vhdx_read_meta(struct vhdx *v, void *buf, size_t len, uint64_t off)
{
	int ret = blk_pread(v->fd, buf, len, off);

	if (ret)
		return ret;
	for (size_t i = 0; i < v->ov_n; i++) {
		const struct vhdx_overlay *o = &v->ov[i];
		uint64_t s = MAX(off, o->off), e = MIN(off + len, o->off + o->len);

		if (s >= e)
			continue;
		if (o->data)
			memcpy((uint8_t *)buf + (s - off), o->data + (s - o->off), (size_t)(e - s));
		else
			memset((uint8_t *)buf + (s - off), 0, (size_t)(e - s));
	}
	return 0;
}

static uint32_t header_crc(const struct vhdx_header *h)
{
	struct vhdx_header c = *h;

	c.checksum = 0;
	return blk_crc32c(0, &c, sizeof(c));
}

static bool header_valid(const struct vhdx_header *h)
{
	return le32toh(h->signature) == VHDX_HEADER_SIG && le32toh(h->checksum) == header_crc(h) &&
	       le16toh(h->version) == VHDX_VERSION && le16toh(h->log_version) == VHDX_LOG_VERSION;
}

int vhdx_update_header(struct vhdx *v, const struct blk_guid *file_write,
		       const struct blk_guid *data_write, const struct blk_guid *log_guid)
{
	struct vhdx_header h = v->hdr;
	uint64_t off = v->hdr_slot ? VHDX_HEADER1_OFF : VHDX_HEADER2_OFF;
	int ret;

	if (le64toh(h.sequence) == UINT64_MAX)
		return -EOVERFLOW;
	h.sequence = htole64(le64toh(h.sequence) + 1);
	if (file_write)
		h.file_write_guid = *file_write;
	if (data_write)
		h.data_write_guid = *data_write;
	if (log_guid)
		h.log_guid = *log_guid;
	h.checksum = 0;
	h.checksum = htole32(header_crc(&h));
	ret = blk_pwrite(v->fd, &h, sizeof(h), off);
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret)
		return ret;
	v->hdr = h;
	v->hdr_slot ^= 1;
	v->hdr_other_ok = true;
	v->hdr_updated = true;
	return 0;
}

int vhdx_begin_write(struct vhdx *v, bool data)
{
	struct blk_guid fw, dw;
	bool nf = !v->file_guid_done, nd = data && !v->data_guid_done;
	int ret = 0;

	if (!nf && !nd)
		return 0;
	if (v->ro)
		return -EROFS;
	if ((nf && (ret = blk_guid_random(&fw))) || (nd && (ret = blk_guid_random(&dw))))
		return ret;
	ret = vhdx_update_header(v, nf ? &fw : NULL, nd ? &dw : NULL, NULL);
	if (ret)
		return ret;
	if (nf)
		v->file_guid_done = true;
	if (nd)
		__atomic_store_n(&v->data_guid_done, true, __ATOMIC_RELEASE);
	return 0;
}

/* ---- open: the structures, checked ---- */

static bool vhdx_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	uint64_t sig;

	if (len < 8)
		return false;
	memcpy(&sig, head, 8);
	return le64toh(sig) == VHDX_FILE_SIG;
}

#define FAIL(code, ...)                                                                     \
	do {                                                                                \
		blk_seterr(err, __VA_ARGS__);                                               \
		return (code);                                                              \
	} while (0)

static int read_headers(struct vhdx *v, struct blk_error *err)
{
	struct vhdx_header h[2];
	bool ok[2];
	int ret;

	if ((ret = blk_pread(v->fd, &h[0], sizeof(h[0]), VHDX_HEADER1_OFF)) ||
	    (ret = blk_pread(v->fd, &h[1], sizeof(h[1]), VHDX_HEADER2_OFF)))
		FAIL(ret, "%s: cannot read: %s", v->path, strerror(-ret));
	ok[0] = header_valid(&h[0]);
	ok[1] = header_valid(&h[1]);
	if (!ok[0] && !ok[1])
		FAIL(-EINVAL, "%s: corrupt VHDX: both headers are damaged (bad signature, checksum "
			      "or version)", v->path);
	if (ok[0] && ok[1]) {
		uint64_t s0 = le64toh(h[0].sequence), s1 = le64toh(h[1].sequence);

		if (s0 == s1 && memcmp(&h[0], &h[1], sizeof(h[0])))
			FAIL(-EINVAL, "%s: corrupt VHDX: both headers have sequence number %llu but "
				      "differ", v->path, (unsigned long long)s0);
		v->hdr_slot = s1 > s0;
	} else {
		v->hdr_slot = ok[1];
	}
	v->hdr = h[v->hdr_slot];
	v->hdr_other_ok = ok[0] && ok[1];

	v->log_off = le64toh(v->hdr.log_offset);
	v->log_len = le32toh(v->hdr.log_length);
	if (!v->log_len || v->log_len % MiB || v->log_len > VHDX_MAX_LOG)
		FAIL(-EINVAL, "%s: corrupt VHDX: log length %u is not a whole number of MiB up to "
			      "256 MiB", v->path, v->log_len);
	if (v->log_off % MiB || v->log_off < VHDX_HEADER_SECTION || v->log_off > v->file_size ||
	    v->log_len > v->file_size - v->log_off)
		FAIL(-EINVAL, "%s: corrupt VHDX: the log (offset %llu, %u bytes) lies outside the "
			      "file", v->path, (unsigned long long)v->log_off, v->log_len);
	return 0;
}

struct region {
	uint64_t start, end;
	int64_t what; /* >= 0: BAT index; < 0: a structure */
};

#define R_HEADERS -1
#define R_LOG -2
#define R_BAT -3
#define R_METADATA -4
#define R_OTHER -5

static const char *region_name(int64_t what)
{
	switch (what) {
	case R_HEADERS: return "the header section";
	case R_LOG: return "the log";
	case R_BAT: return "the BAT";
	case R_METADATA: return "the metadata region";
	default: return "a region";
	}
}

static int cmp_region(const void *a, const void *b)
{
	const struct region *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static bool region_table_valid(const uint8_t *t)
{
	const struct vhdx_region_header *h = (const void *)t;
	uint8_t c[4] = { 0 };
	uint32_t crc;

	if (le32toh(h->signature) != VHDX_REGION_SIG ||
	    le32toh(h->entry_count) > VHDX_REGION_MAX_ENTRIES)
		return false;
	crc = blk_crc32c(0, t, 4);
	crc = blk_crc32c(crc, c, 4);
	crc = blk_crc32c(crc, t + 8, VHDX_REGION_SIZE - 8);
	return crc == le32toh(h->checksum);
}

static int read_regions(struct vhdx *v, struct blk_error *err)
{
	const struct vhdx_region_header *h;
	const struct vhdx_region_entry *e;
	struct region r[VHDX_REGION_MAX_ENTRIES + 2];
	uint8_t *t2;
	size_t nr = 0;
	bool have_bat = false, have_meta = false;
	int ret;

	v->rt = malloc(VHDX_REGION_SIZE);
	t2 = malloc(VHDX_REGION_SIZE);
	if (!v->rt || !t2) {
		free(t2);
		FAIL(-ENOMEM, "%s: out of memory", v->path);
	}
	if ((ret = vhdx_read_meta(v, v->rt, VHDX_REGION_SIZE, VHDX_REGION1_OFF)) ||
	    (ret = vhdx_read_meta(v, t2, VHDX_REGION_SIZE, VHDX_REGION2_OFF))) {
		free(t2);
		FAIL(ret, "%s: cannot read: %s", v->path, strerror(-ret));
	}
	if (!region_table_valid(v->rt)) {
		if (!region_table_valid(t2)) {
			free(t2);
			FAIL(-EINVAL, "%s: corrupt VHDX: both region tables are damaged", v->path);
		}
		memcpy(v->rt, t2, VHDX_REGION_SIZE);
	}
	free(t2);
	h = (const void *)v->rt;
	e = (const void *)(v->rt + sizeof(*h));
	r[nr++] = (struct region){ 0, VHDX_HEADER_SECTION, R_HEADERS };
	r[nr++] = (struct region){ v->log_off, v->log_off + v->log_len, R_LOG };
	for (uint32_t i = 0; i < le32toh(h->entry_count); i++) {
		uint64_t off = le64toh(e[i].file_offset), len = le32toh(e[i].length);
		int64_t what = R_OTHER;

		for (uint32_t k = 0; k < i; k++)
			if (blk_guid_eq(&e[i].guid, &e[k].guid))
				FAIL(-EINVAL, "%s: corrupt VHDX: a region appears twice in the region table",
				     v->path);
		if (blk_guid_eq(&e[i].guid, &guid_bat)) {
			what = R_BAT;
			v->bat_off = off;
			v->bat_len = (uint32_t)len;
			have_bat = true;
		} else if (blk_guid_eq(&e[i].guid, &guid_metadata)) {
			what = R_METADATA;
			v->meta_off = off;
			v->meta_len = (uint32_t)len;
			have_meta = true;
		} else if (le32toh(e[i].flags) & VHDX_REGION_REQUIRED) {
			char g[BLK_GUID_STR];

			blk_guid_format(&e[i].guid, g);
			FAIL(-ENOTSUP, "%s: unsupported VHDX: it needs a region this reader does not "
				       "know (%s)", v->path, g);
		}
		if (off % MiB || off < VHDX_HEADER_SECTION || !len || len % MiB)
			FAIL(-EINVAL, "%s: corrupt VHDX: %s is not on whole MiB (offset %llu, length "
				      "%llu)", v->path, region_name(what), (unsigned long long)off,
			     (unsigned long long)len);
		if (off > v->file_size || len > v->file_size - off)
			FAIL(-EINVAL, "%s: corrupt VHDX: %s lies past the end of the file", v->path,
			     region_name(what));
		r[nr++] = (struct region){ off, off + len, what };
	}
	if (!have_bat || !have_meta)
		FAIL(-EINVAL, "%s: corrupt VHDX: the region table has no %s", v->path,
		     have_bat ? "metadata region" : "BAT");
	qsort(r, nr, sizeof(r[0]), cmp_region);
	for (size_t i = 1; i < nr; i++)
		if (r[i].start < r[i - 1].end)
			FAIL(-EINVAL, "%s: corrupt VHDX: %s overlaps %s", v->path, region_name(r[i - 1].what),
			     region_name(r[i].what));
	if (v->meta_len > VHDX_MAX_METADATA)
		FAIL(-EINVAL, "%s: corrupt VHDX: a metadata region of %u bytes", v->path, v->meta_len);
	if (v->bat_len > VHDX_MAX_BAT_REGION)
		FAIL(-EINVAL, "%s: corrupt VHDX: a BAT region of %u bytes", v->path, v->bat_len);
	return 0;
}

/* Parent locator keys. */
struct locator {
	char *linkage, *linkage2, *relative, *volume, *absolute;
};

static void locator_free(struct locator *l)
{
	free(l->linkage);
	free(l->linkage2);
	free(l->relative);
	free(l->volume);
	free(l->absolute);
}

static int parse_locator(struct vhdx *v, const uint8_t *b, uint32_t len, struct locator *l,
			 struct blk_error *err)
{
	const struct vhdx_locator_header *h = (const void *)b;
	uint16_t count;

	if (len < sizeof(*h))
		FAIL(-EINVAL, "%s: corrupt VHDX: the parent locator is too short", v->path);
	if (!blk_guid_eq(&h->locator_type, &guid_locator_type))
		FAIL(-ENOTSUP, "%s: unsupported VHDX: unknown parent locator type", v->path);
	count = le16toh(h->key_value_count);
	if (count > VHDX_LOCATOR_MAX_ENTRIES || sizeof(*h) + (size_t)count * 12 > len)
		FAIL(-EINVAL, "%s: corrupt VHDX: the parent locator's %u entries do not fit", v->path,
		     count);
	for (uint16_t i = 0; i < count; i++) {
		struct vhdx_locator_entry en;
		uint32_t ko, vo, kl, vl;
		char *key, *val, **slot = NULL;

		memcpy(&en, b + sizeof(*h) + 12 * (size_t)i, sizeof(en));
		ko = le32toh(en.key_offset);
		vo = le32toh(en.value_offset);
		kl = le16toh(en.key_length);
		vl = le16toh(en.value_length);
		if (!kl || !vl || ko > len || kl > len - ko || vo > len || vl > len - vo)
			FAIL(-EINVAL, "%s: corrupt VHDX: parent locator entry %u lies outside the item",
			     v->path, i);
		key = blk_utf16_to_utf8(b + ko, kl, false);
		val = blk_utf16_to_utf8(b + vo, vl, false);
		if (!key || !val) {
			free(key);
			free(val);
			FAIL(-EINVAL, "%s: corrupt VHDX: parent locator entry %u is not valid UTF-16",
			     v->path, i);
		}
		if (!strcmp(key, "parent_linkage"))
			slot = &l->linkage;
		else if (!strcmp(key, "parent_linkage2"))
			slot = &l->linkage2;
		else if (!strcmp(key, "relative_path"))
			slot = &l->relative;
		else if (!strcmp(key, "volume_path"))
			slot = &l->volume;
		else if (!strcmp(key, "absolute_win32_path"))
			slot = &l->absolute;
		free(key);
		if (slot && !*slot)
			*slot = val;
		else
			free(val);
	}
	if (!l->linkage)
		FAIL(-EINVAL, "%s: corrupt VHDX: the parent locator has no parent_linkage", v->path);
	return 0;
}

/* A system metadata item of a known, fixed length, once. */
static int item_read(struct vhdx *v, bool *have, uint16_t i, uint32_t len, uint32_t want,
		     uint64_t at, uint8_t *val, struct blk_error *err)
{
	int ret;

	if (*have) {
		blk_seterr(err, "%s: corrupt VHDX: a metadata item appears twice", v->path);
		return -EINVAL;
	}
	if (len != want) {
		blk_seterr(err, "%s: corrupt VHDX: metadata item %u has length %u, not %u", v->path, i,
			   len, want);
		return -EINVAL;
	}
	ret = vhdx_read_meta(v, val, want, at);
	if (ret) {
		blk_seterr(err, "%s: cannot read: %s", v->path, strerror(-ret));
		return ret;
	}
	*have = true;
	return 0;
}

static int read_metadata(struct vhdx *v, struct locator *loc, struct blk_error *err)
{
	struct vhdx_metadata_header mh;
	struct vhdx_metadata_entry *me = NULL;
	struct vhdx_file_parameters fp;
	bool have_fp = false, have_size = false, have_lss = false, have_pss = false, have_loc = false;
	bool have_page83 = false;
	uint16_t count;
	int ret;

	if ((ret = vhdx_read_meta(v, &mh, sizeof(mh), v->meta_off)))
		FAIL(ret, "%s: cannot read: %s", v->path, strerror(-ret));
	if (le64toh(mh.signature) != VHDX_METADATA_SIG)
		FAIL(-EINVAL, "%s: corrupt VHDX: no metadata table", v->path);
	count = le16toh(mh.entry_count);
	if (count > VHDX_METADATA_MAX_ENTRIES)
		FAIL(-EINVAL, "%s: corrupt VHDX: %u metadata entries (at most 2047)", v->path, count);
	me = malloc((size_t)count * sizeof(*me) + 1);
	if (!me)
		FAIL(-ENOMEM, "%s: out of memory", v->path);
	if ((ret = vhdx_read_meta(v, me, (size_t)count * sizeof(*me), v->meta_off + sizeof(mh)))) {
		free(me);
		FAIL(ret, "%s: cannot read: %s", v->path, strerror(-ret));
	}
#undef FAIL
#define FAIL(code, ...)                                                                     \
	do {                                                                                \
		blk_seterr(err, __VA_ARGS__);                                               \
		ret = (code);                                                               \
		goto out;                                                                   \
	} while (0)
	for (uint16_t i = 0; i < count; i++) {
		const struct blk_guid *id = &me[i].item_id;
		uint32_t off = le32toh(me[i].offset), len = le32toh(me[i].length);
		uint32_t flags = le32toh(me[i].flags);
		uint64_t at = v->meta_off + off;
		uint8_t val[16] = { 0 };

		for (uint16_t k = 0; k < i; k++)
			if (blk_guid_eq(id, &me[k].item_id) &&
			    (flags & VHDX_META_IS_USER) == (le32toh(me[k].flags) & VHDX_META_IS_USER))
				FAIL(-EINVAL, "%s: corrupt VHDX: a metadata item appears twice", v->path);
		if (len > VHDX_METADATA_MAX_ITEM || (len && (off < VHDX_METADATA_TABLE_SIZE ||
							       off > v->meta_len || len > v->meta_len - off)))
			FAIL(-EINVAL, "%s: corrupt VHDX: metadata item %u lies outside the metadata "
				      "region", v->path, i);
		if (flags & VHDX_META_IS_USER) {
			if (flags & VHDX_META_IS_REQUIRED)
				FAIL(-ENOTSUP, "%s: unsupported VHDX: it needs a user metadata item this "
					       "reader does not know", v->path);
			continue;
		}
		if (blk_guid_eq(id, &guid_file_params)) {
			ret = item_read(v, &have_fp, i, len, 8, at, val, err);
			memcpy(&fp, val, 8);
		} else if (blk_guid_eq(id, &guid_vsize)) {
			uint64_t sz;

			ret = item_read(v, &have_size, i, len, 8, at, val, err);
			memcpy(&sz, val, 8);
			v->vsize = le64toh(sz);
			v->vsize_item = at;
		} else if (blk_guid_eq(id, &guid_lss)) {
			uint32_t sz;

			ret = item_read(v, &have_lss, i, len, 4, at, val, err);
			memcpy(&sz, val, 4);
			v->lss = le32toh(sz);
		} else if (blk_guid_eq(id, &guid_pss)) {
			uint32_t sz;

			ret = item_read(v, &have_pss, i, len, 4, at, val, err);
			memcpy(&sz, val, 4);
			v->pss = le32toh(sz);
		} else if (blk_guid_eq(id, &guid_page83)) {
			ret = item_read(v, &have_page83, i, len, 16, at, val, err);
			memcpy(v->page83.b, val, 16);
		} else if (blk_guid_eq(id, &guid_locator)) {
			if (have_loc)
				FAIL(-EINVAL, "%s: corrupt VHDX: two parent locators", v->path);
			if (len > VHDX_MAX_LOCATOR)
				FAIL(-EINVAL, "%s: corrupt VHDX: a parent locator of %u bytes", v->path, len);
			v->locator_item = at;
			v->locator_len = len;
			have_loc = true;
		} else if (flags & VHDX_META_IS_REQUIRED) {
			char g[BLK_GUID_STR];

			blk_guid_format(id, g);
			FAIL(-ENOTSUP, "%s: unsupported VHDX: it needs a metadata item this reader does "
				       "not know (%s)", v->path, g);
		}
		if (ret)
			goto out;
	}
	if (!have_fp || !have_size || !have_lss)
		FAIL(-EINVAL, "%s: corrupt VHDX: the metadata lacks the %s", v->path,
		     !have_fp ? "file parameters" : !have_size ? "virtual disk size" :
		     "logical sector size");
	if (!have_pss)
		v->pss = v->lss;
	v->block_size = le32toh(fp.block_size);
	v->has_parent = le32toh(fp.flags) & VHDX_PARAM_HAS_PARENT;
	v->fixed = !v->has_parent && (le32toh(fp.flags) & VHDX_PARAM_LEAVE_BLOCKS_ALLOCATED);
	if (v->block_size < VHDX_MIN_BLOCK || v->block_size > VHDX_MAX_BLOCK ||
	    (v->block_size & (v->block_size - 1)))
		FAIL(-EINVAL, "%s: corrupt VHDX: block size %u is not a power of 2 from 1 to 256 MiB",
		     v->path, v->block_size);
	if (v->lss != 512 && v->lss != 4096)
		FAIL(-EINVAL, "%s: corrupt VHDX: logical sector size %u (512 or 4096 expected)",
		     v->path, v->lss);
	if (v->pss != 512 && v->pss != 4096)
		FAIL(-EINVAL, "%s: corrupt VHDX: physical sector size %u (512 or 4096 expected)",
		     v->path, v->pss);
	if (!v->vsize || v->vsize % v->lss || v->vsize > BLK_VHDX_MAX_SIZE)
		FAIL(-EINVAL, "%s: corrupt VHDX: a virtual size of %llu bytes (a multiple of the "
			      "sector size up to 64 TiB expected)", v->path,
		     (unsigned long long)v->vsize);
	if (v->has_parent) {
		uint8_t *buf;

		if (!have_loc)
			FAIL(-EINVAL, "%s: corrupt VHDX: a differencing disk without a parent locator",
			     v->path);
		buf = malloc(v->locator_len);
		if (!buf)
			FAIL(-ENOMEM, "%s: out of memory", v->path);
		ret = vhdx_read_meta(v, buf, v->locator_len, v->locator_item);
		if (!ret)
			ret = parse_locator(v, buf, v->locator_len, loc, err);
		else
			blk_seterr(err, "%s: cannot read: %s", v->path, strerror(-ret));
		free(buf);
		if (ret)
			goto out;
	}
	v->chunk_ratio = VHDX_SECTORS_PER_BITMAP * v->lss / v->block_size;
	v->payload_blocks = DIV_ROUND_UP(v->vsize, v->block_size);
	v->bat_entries = vhdx_bat_entries_for(v->vsize, v->block_size, v->lss, v->has_parent);
	if (v->bat_entries * 8 > v->bat_len)
		FAIL(-EINVAL, "%s: corrupt VHDX: the BAT region (%u bytes) is too small for %llu "
			      "entries", v->path, v->bat_len, (unsigned long long)v->bat_entries);
	ret = 0;
out:
	free(me);
	return ret;
}
#undef FAIL

/* The virtual bytes block `blk` holds (the last one may be short). */
static uint64_t block_used(struct vhdx *v, uint64_t blk)
{
	return MIN(v->block_size, v->vsize - blk * v->block_size);
}

/* Check every BAT entry the disk uses: known states, blocks inside the
 * file and clear of each other and of every structure. Reports each
 * problem (up to a limit); returns how many. */
unsigned vhdx_validate_bat(struct vhdx *v, vhdx_problem_fn *problem, void *ctx)
{
	const struct vhdx_region_header *rh = (const void *)v->rt;
	const struct vhdx_region_entry *re = (const void *)(v->rt + sizeof(*rh));
	size_t cap = 8 + le32toh(rh->entry_count), n = 0;
	struct region *r;
	unsigned bad = 0;
	uint64_t sb_count = v->has_parent ? DIV_ROUND_UP(v->payload_blocks, v->chunk_ratio) : 0;

#define PROBLEM(...)                                                                        \
	do {                                                                                \
		if (bad++ < 50)                                                             \
			problem(ctx, __VA_ARGS__);                                          \
	} while (0)

	for (uint64_t i = 0; i < v->bat_entries; i++) {
		uint64_t st = v->bat[i] & VHDX_BAT_STATE_MASK;

		cap += st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT;
	}
	r = malloc(cap * sizeof(*r));
	if (!r) {
		problem(ctx, "out of memory checking the BAT");
		return 1;
	}
	r[n++] = (struct region){ 0, VHDX_HEADER_SECTION, R_HEADERS };
	r[n++] = (struct region){ v->log_off, v->log_off + v->log_len, R_LOG };
	for (uint32_t i = 0; i < le32toh(rh->entry_count); i++) {
		int64_t what = blk_guid_eq(&re[i].guid, &guid_bat) ? R_BAT :
			       blk_guid_eq(&re[i].guid, &guid_metadata) ? R_METADATA : R_OTHER;

		r[n++] = (struct region){ le64toh(re[i].file_offset),
					  le64toh(re[i].file_offset) + le32toh(re[i].length), what };
	}
	for (uint64_t blk = 0; blk < v->payload_blocks; blk++) {
		uint64_t idx = vhdx_payload_index(v, blk), e = v->bat[idx];
		uint64_t st = e & VHDX_BAT_STATE_MASK, off = vhdx_entry_offset(e);
		uint64_t used = block_used(v, blk);

		switch (st) {
		case VHDX_PAYLOAD_NOT_PRESENT:
		case VHDX_PAYLOAD_UNDEFINED:
		case VHDX_PAYLOAD_ZERO:
		case VHDX_PAYLOAD_UNMAPPED:
		case VHDX_PAYLOAD_UNMAPPED_V095:
			continue;
		case VHDX_PAYLOAD_PARTIALLY_PRESENT:
			if (!v->has_parent) {
				PROBLEM("BAT entry for block %llu is partially present in a disk without "
					"a parent", (unsigned long long)blk);
				continue;
			}
			if ((v->bat[vhdx_sb_index(v, blk / v->chunk_ratio)] & VHDX_BAT_STATE_MASK) !=
			    VHDX_SB_PRESENT) {
				PROBLEM("block %llu is partially present but its sector bitmap is not",
					(unsigned long long)blk);
				continue;
			}
			/* fall through */
		case VHDX_PAYLOAD_FULLY_PRESENT:
			if (off < VHDX_HEADER_SECTION) {
				PROBLEM("BAT entry for block %llu points into the header section "
					"(offset %llu)", (unsigned long long)blk, (unsigned long long)off);
				continue;
			}
			if (off > v->file_size || used > v->file_size - off) {
				PROBLEM("BAT entry for block %llu points past the end of the file "
					"(offset %llu)", (unsigned long long)blk, (unsigned long long)off);
				continue;
			}
			r[n++] = (struct region){ off, off + ROUND_UP(used, MiB), (int64_t)idx };
			continue;
		default:
			PROBLEM("BAT entry for block %llu has the reserved state %llu",
				(unsigned long long)blk, (unsigned long long)st);
		}
	}
	for (uint64_t c = 0; c < DIV_ROUND_UP(v->payload_blocks, v->chunk_ratio); c++) {
		uint64_t idx = vhdx_sb_index(v, c), e, st, off;

		if (idx >= v->bat_entries)
			break;
		e = v->bat[idx];
		st = e & VHDX_BAT_STATE_MASK;
		off = vhdx_entry_offset(e);
		if (st == VHDX_SB_NOT_PRESENT)
			continue;
		if (st != VHDX_SB_PRESENT) {
			PROBLEM("sector bitmap entry %llu has the reserved state %llu",
				(unsigned long long)c, (unsigned long long)st);
			continue;
		}
		if (c >= sb_count) {
			PROBLEM("sector bitmap %llu is present in a disk without a parent",
				(unsigned long long)c);
			continue;
		}
		if (off < VHDX_HEADER_SECTION || off > v->file_size || MiB > v->file_size - off) {
			PROBLEM("sector bitmap %llu points past the end of the file",
				(unsigned long long)c);
			continue;
		}
		r[n++] = (struct region){ off, off + MiB, (int64_t)idx };
	}
	qsort(r, n, sizeof(*r), cmp_region);
	for (size_t i = 1; i < n; i++) {
		if (r[i].start >= r[i - 1].end)
			continue;
		if (r[i].what >= 0 && r[i - 1].what >= 0)
			PROBLEM("BAT entries %lld and %lld point at overlapping blocks",
				(long long)r[i - 1].what, (long long)r[i].what);
		else if (r[i].what >= 0 || r[i - 1].what >= 0)
			PROBLEM("BAT entry %lld points into %s",
				(long long)(r[i].what >= 0 ? r[i].what : r[i - 1].what),
				region_name(r[i].what >= 0 ? r[i - 1].what : r[i].what));
		/* Keep the farther end: a long region may overlap several. */
		if (r[i].end < r[i - 1].end)
			r[i] = r[i - 1];
	}
	free(r);
#undef PROBLEM
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
	blk_seterr(fp->err, "%s: corrupt VHDX: %s", fp->path, msg);
	fp->set = true;
}

static int read_bat(struct vhdx *v, struct blk_error *err)
{
	int ret;

	v->bat = malloc(v->bat_entries * 8 + 8);
	if (!v->bat) {
		blk_seterr(err, "%s: out of memory for the BAT", v->path);
		return -ENOMEM;
	}
	ret = vhdx_read_meta(v, v->bat, v->bat_entries * 8, v->bat_off);
	if (ret) {
		blk_seterr(err, "%s: cannot read the BAT: %s", v->path, strerror(-ret));
		return ret;
	}
	for (uint64_t i = 0; i < v->bat_entries; i++)
		v->bat[i] = le64toh(v->bat[i]);
	return 0;
}

/* Windows paths to POSIX: a path with a drive letter or a volume cannot be
 * opened here. */
static char *posix_path(const char *win)
{
	char *p, *s;

	if (!win || !*win || (win[0] && win[1] == ':') || !strncmp(win, "\\\\", 2))
		return NULL;
	s = strdup(win);
	for (p = s; p && *p; p++)
		if (*p == '\\')
			*p = '/';
	return s;
}

static int open_parent(struct vhdx *v, struct locator *loc, struct blk_chain *chain,
		       struct blk_error *err)
{
	char *cands[2] = { NULL, NULL };
	struct blk_error perr = { "" };
	char mismatch[300] = "";
	int ret = -ENOENT;

	if (loc->relative) {
		char *rel = posix_path(loc->relative);

		if (rel) {
			cands[0] = blk_path_join_dir(v->path, !strncmp(rel, "./", 2) ? rel + 2 : rel);
			free(rel);
		}
	}
	cands[1] = posix_path(loc->absolute);
	for (int i = 0; i < 2 && !v->parent; i++) {
		struct blk_disk *p;
		struct vhdx *pv;
		char g[BLK_GUID_STR];

		if (!cands[i])
			continue;
		if (!v->parent_path)
			v->parent_path = strdup(cands[i]);
		chain->depth++;
		p = blk_open_chain(cands[i], BLK_FMT_VHDX, BLK_OPEN_RDONLY, chain, &perr);
		chain->depth--;
		if (!p) {
			if (chain->error == -ELOOP) {
				blk_seterr(err, "%s", perr.msg);
				ret = -ELOOP;
				goto out;
			}
			continue;
		}
		pv = VHDX(p->img);
		blk_guid_format(&pv->hdr.data_write_guid, g);
		if (strcasecmp(g, v->parent_linkage) &&
		    (!loc->linkage2 || strcasecmp(g, loc->linkage2))) {
			snprintf(mismatch, sizeof(mismatch), "%s: the parent %s has changed since this "
				 "disk was made from it (its DataWriteGuid is %s, not %s)", v->path,
				 p->path, g, v->parent_linkage);
			blk_close(p);
			continue;
		}
		if (pv->lss != v->lss) {
			blk_seterr(err, "%s: the parent %s has %u-byte sectors, this disk %u", v->path,
				   cands[i], pv->lss, v->lss);
			blk_close(p);
			ret = -EINVAL;
			goto out;
		}
		v->parent = p;
		free(v->parent_path);
		v->parent_path = cands[i];
		cands[i] = NULL;
		ret = 0;
	}
	if (!v->parent) {
		if (mismatch[0])
			blk_seterr(err, "%s", mismatch);
		else if (perr.msg[0])
			blk_seterr(err, "%s: cannot open the parent: %s", v->path, perr.msg);
		else
			blk_seterr(err, "%s: the parent locator names no path that can be opened here",
				   v->path);
		ret = mismatch[0] ? -EINVAL : -ENOENT;
	}
out:
	free(cands[0]);
	free(cands[1]);
	return ret;
}

static void vhdx_free(struct vhdx *v)
{
	if (v->parent)
		blk_close(v->parent);
	free(v->parent_path);
	free(v->parent_linkage);
	free(v->bat);
	free(v->rt);
	free(v->ov);
	free(v->log_image);
	free(v->path);
	pthread_rwlock_destroy(&v->lock);
	pthread_mutex_destroy(&v->meta);
	free(v);
}

int vhdx_open_chain(struct blk_image **out, int fd, const char *path, unsigned flags,
		    struct blk_chain *chain, struct blk_error *err)
{
	struct vhdx *v = calloc(1, sizeof(*v));
	struct locator loc = { 0 };
	struct first_problem fp = { err, path, false };
	uint64_t sig = 0;
	int ret;

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
	ret = blk_file_size(fd, &v->file_size);
	if (!ret)
		ret = blk_pread(fd, &sig, 8, 0);
	if (ret) {
		blk_seterr(err, "%s: %s", path, strerror(-ret));
		goto fail;
	}
	ret = -EINVAL;
	if (le64toh(sig) != VHDX_FILE_SIG) {
		blk_seterr(err, "%s: not a VHDX file (no \"vhdxfile\" signature)", path);
		goto fail;
	}
	if (v->file_size < 2 * MiB) {
		blk_seterr(err, "%s: corrupt VHDX: the file is too small (%llu bytes) for its "
			   "headers and log", path, (unsigned long long)v->file_size);
		goto fail;
	}
	ret = read_headers(v, err);
	if (ret)
		goto fail;
	if (!blk_guid_is_zero(&v->hdr.log_guid)) {
		ret = vhdx_log_replay(v, err);
		if (ret)
			goto fail;
		if (v->log_replayed)
			v->file_guid_done = true; /* the replay renewed the header */
	}
	ret = read_regions(v, err);
	if (!ret)
		ret = read_metadata(v, &loc, err);
	if (!ret)
		ret = read_bat(v, err);
	if (ret)
		goto fail;
	if (!v->check && vhdx_validate_bat(v, first_problem, &fp)) {
		ret = -EINVAL;
		goto fail;
	}
	if (v->has_parent) {
		v->parent_linkage = loc.linkage;
		loc.linkage = NULL;
		if (!(flags & BLK_OPEN_NO_PARENT)) {
			ret = open_parent(v, &loc, chain, err);
			if (ret)
				goto fail;
		} else {
			char *rel = posix_path(loc.relative), *abs = posix_path(loc.absolute);

			if (rel)
				v->parent_path = blk_path_join_dir(path, !strncmp(rel, "./", 2) ? rel + 2 : rel);
			if (abs && (!v->parent_path || access(v->parent_path, F_OK))) {
				free(v->parent_path);
				v->parent_path = abs;
				abs = NULL;
			}
			free(rel);
			free(abs);
		}
	}
	locator_free(&loc);
	*out = (struct blk_image *)v;
	return 0;
fail:
	locator_free(&loc);
	vhdx_free(v);
	return ret;
}

static int vhdx_open(struct blk_image **out, int fd, const char *path, unsigned flags,
		     struct blk_error *err)
{
	struct blk_chain chain = { 0 };
	struct stat st;

	if (fstat(fd, &st) == 0) {
		chain.dev[0] = st.st_dev;
		chain.ino[0] = st.st_ino;
	}
	return vhdx_open_chain(out, fd, path, flags, &chain, err);
}

static void vhdx_close(struct blk_image *img)
{
	struct vhdx *v = VHDX(img);

	if (!v->ro && !v->broken) {
		/* A clean close: everything synced, the log empty. */
		if (blk_sync(v->fd) == 0 && !blk_guid_is_zero(&v->hdr.log_guid)) {
			struct blk_guid zero = { { 0 } };

			vhdx_update_header(v, NULL, NULL, &zero);
		}
	}
	close(v->fd);
	vhdx_free(v);
}

static void vhdx_info(struct blk_image *img, struct blk_info *info)
{
	struct vhdx *v = VHDX(img);

	info->format = BLK_FMT_VHDX;
	info->size = __atomic_load_n(&v->vsize, __ATOMIC_RELAXED);
	info->logical_sector = v->lss;
	info->physical_sector = v->pss;
	info->read_only = v->ro;
	info->can_discard = !v->ro;
}

/* ---- reading ---- */

static int parent_read(struct vhdx *v, uint64_t off, void *buf, size_t len)
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
	return bm[i / 8] & (1U << (i % 8));
}

/* Bits [first, first+count) of chunk c's sector bitmap, into a buffer
 * indexed from bit 0 of the chunk's bitmap byte first/8. */
static int read_bits(struct vhdx *v, uint64_t c, uint64_t first, uint64_t count, uint8_t **out,
		     uint64_t *base)
{
	uint64_t e = vhdx_bat_get(v, vhdx_sb_index(v, c));
	uint64_t b0 = first / 8, b1 = (first + count - 1) / 8;
	uint8_t *bm = malloc((size_t)(b1 - b0 + 1));
	int ret;

	if (!bm)
		return -ENOMEM;
	if ((e & VHDX_BAT_STATE_MASK) != VHDX_SB_PRESENT) {
		memset(bm, 0, (size_t)(b1 - b0 + 1));
		ret = 0;
	} else {
		ret = vhdx_read_meta(v, bm, (size_t)(b1 - b0 + 1), vhdx_entry_offset(e) + b0);
	}
	if (ret) {
		free(bm);
		return ret;
	}
	*out = bm;
	*base = b0 * 8;
	return 0;
}

/* The chunk-relative sector number of virtual offset off. */
static uint64_t chunk_sector(struct vhdx *v, uint64_t off)
{
	return (off / v->lss) % VHDX_SECTORS_PER_BITMAP;
}

static int read_partial(struct vhdx *v, uint64_t blk, uint64_t e, uint64_t in, uint8_t *buf,
			size_t n)
{
	uint64_t voff = blk * v->block_size + in, first = chunk_sector(v, voff);
	uint64_t count = n / v->lss, base;
	uint8_t *bm;
	int ret = read_bits(v, blk / v->chunk_ratio, first, count, &bm, &base);

	if (ret)
		return ret;
	for (uint64_t s = 0; s < count && !ret;) {
		bool here = bit_set(bm, first + s - base);
		uint64_t run = 1;

		while (s + run < count && bit_set(bm, first + s + run - base) == here)
			run++;
		if (here)
			ret = blk_pread(v->fd, buf + s * v->lss, run * v->lss,
					vhdx_entry_offset(e) + in + s * v->lss);
		else
			ret = parent_read(v, voff + s * v->lss, buf + s * v->lss, run * v->lss);
		s += run;
	}
	free(bm);
	return ret;
}

static int read_in_block(struct vhdx *v, uint64_t blk, uint64_t in, uint8_t *buf, size_t n)
{
	uint64_t e = vhdx_bat_get(v, vhdx_payload_index(v, blk));

	switch (e & VHDX_BAT_STATE_MASK) {
	case VHDX_PAYLOAD_FULLY_PRESENT:
		return blk_pread(v->fd, buf, n, vhdx_entry_offset(e) + in);
	case VHDX_PAYLOAD_PARTIALLY_PRESENT:
		return read_partial(v, blk, e, in, buf, n);
	case VHDX_PAYLOAD_NOT_PRESENT:
		if (v->has_parent)
			return parent_read(v, blk * v->block_size + in, buf, n);
		/* fall through */
	default: /* zero, unmapped, undefined: zeros, never the parent */
		memset(buf, 0, n);
		return 0;
	}
}

/* A block's share of a read that read_in_block must assemble (partially
 * present, or from the parent): straight into a lone buffer, otherwise
 * through a flat copy. */
static int read_share(struct vhdx *v, uint64_t blk, uint64_t in, const struct iovec *part, int cnt,
		      const struct iovec *iov, int niov, size_t skip, size_t n)
{
	uint8_t *buf;
	int ret;

	if (cnt == 1)
		return read_in_block(v, blk, in, part[0].iov_base, n);
	buf = malloc(n);
	if (!buf)
		return -ENOMEM;
	ret = read_in_block(v, blk, in, buf, n);
	if (!ret)
		blk_iov_copy(iov, niov, skip, buf, n, true);
	free(buf);
	return ret;
}

/* Read [off, off+len) into iov a block at a time (lock held): fully present
 * blocks straight from the file, unallocated ones as zeros, the rest
 * through read_share. nowait: from the page cache only, and -EAGAIN for
 * anything that needs more than that. */
static int read_blocks(struct vhdx *v, uint64_t off, const struct iovec *iov, int niov,
		       size_t len, bool nowait)
{
	struct iovec part[64];
	size_t done = 0;
	int ret = 0;

	while (done < len && !ret) {
		uint64_t pos = off + done, blk = pos / v->block_size, in = pos % v->block_size;
		size_t n = (size_t)MIN(len - done, v->block_size - in);
		uint64_t e = vhdx_bat_get(v, vhdx_payload_index(v, blk)), st = e & VHDX_BAT_STATE_MASK;
		int cnt = blk_iov_slice(iov, niov, done, n, part, 64);

		if (st == VHDX_PAYLOAD_FULLY_PRESENT && cnt > 0)
			ret = blk_preadv(v->fd, part, cnt, n, vhdx_entry_offset(e) + in,
					 nowait ? RWF_NOWAIT : 0);
		else if (st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT ||
			 (st == VHDX_PAYLOAD_NOT_PRESENT && v->has_parent))
			ret = nowait ? -EAGAIN : read_share(v, blk, in, part, cnt, iov, niov, done, n);
		else /* zero, unmapped, undefined: zeros, never the parent */
			blk_iov_zero(iov, niov, done, n);
		done += n;
	}
	return ret;
}

static int vhdx_readv(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
		      size_t len)
{
	struct vhdx *v = VHDX(img);
	int ret;

	pthread_rwlock_rdlock(&v->lock);
	ret = read_blocks(v, off, iov, niov, len, false);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

static int vhdx_read(struct blk_image *img, uint64_t off, void *buf, size_t len)
{
	struct iovec iov = { buf, len };

	return vhdx_readv(img, off, &iov, 1, len);
}

static int vhdx_readv_nowait(struct blk_image *img, uint64_t off, const struct iovec *iov,
			     int niov, size_t len)
{
	struct vhdx *v = VHDX(img);
	int ret;

	if (pthread_rwlock_tryrdlock(&v->lock))
		return -EAGAIN;
	ret = read_blocks(v, off, iov, niov, len, true);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

/* ---- writing ---- */

/* Set bits [first, first+count) of the bitmap block at sb_off, in t. */
static int txn_set_bits(struct vhdx *v, struct vhdx_txn *t, uint64_t sb_off, uint64_t first,
			uint64_t count)
{
	uint64_t b0 = first / 8, b1 = (first + count - 1) / 8;
	uint8_t *bytes = malloc((size_t)(b1 - b0 + 1));
	int ret;

	if (!bytes)
		return -ENOMEM;
	ret = vhdx_read_meta(v, bytes, (size_t)(b1 - b0 + 1), sb_off + b0);
	if (!ret) {
		for (uint64_t s = first; s < first + count; s++)
			bytes[s / 8 - b0] |= (uint8_t)(1U << (s % 8));
		ret = vhdx_txn_write(v, t, sb_off + b0, bytes, (size_t)(b1 - b0 + 1));
	}
	free(bytes);
	return ret;
}

/* A new block for `blk` (state `st`) at the end of the file, holding buf
 * at `in`. Called with v->meta held. */
static int allocate(struct vhdx *v, uint64_t blk, uint64_t st, uint64_t in, const uint8_t *buf,
		    size_t n)
{
	uint64_t idx = vhdx_payload_index(v, blk), chunk = blk / v->chunk_ratio;
	uint64_t sb_idx = vhdx_sb_index(v, chunk), sb_off = 0;
	bool partial = v->has_parent && st == VHDX_PAYLOAD_NOT_PRESENT &&
		       !(in == 0 && n >= block_used(v, blk));
	bool new_sb = false;
	uint64_t off = ROUND_UP(v->file_size, MiB), end = off + v->block_size;
	struct vhdx_txn t;
	int ret;

	if (partial) {
		uint64_t sbe = vhdx_bat_get(v, sb_idx);

		if ((sbe & VHDX_BAT_STATE_MASK) == VHDX_SB_PRESENT) {
			sb_off = vhdx_entry_offset(sbe);
		} else {
			sb_off = end;
			end += MiB;
			new_sb = true;
		}
	}
	if (end > BLK_VHDX_MAX_SIZE * 2)
		return -EFBIG;
	/* 1. Room, then the data, durable. Fresh space reads as zeros. */
	ret = blk_truncate(v->fd, end);
	if (!ret)
		ret = blk_pwrite(v->fd, buf, n, off + in);
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret)
		return ret;
	v->file_size = MAX(v->file_size, end);
	/* 2. The BAT (and bitmap) through the log. */
	vhdx_txn_init(&t);
	ret = vhdx_txn_bat(v, &t, idx, off | (partial ? VHDX_PAYLOAD_PARTIALLY_PRESENT :
						  VHDX_PAYLOAD_FULLY_PRESENT));
	if (!ret && new_sb)
		ret = vhdx_txn_bat(v, &t, sb_idx, sb_off | VHDX_SB_PRESENT);
	if (!ret && partial)
		ret = txn_set_bits(v, &t, sb_off, chunk_sector(v, blk * v->block_size + in), n / v->lss);
	if (!ret)
		ret = vhdx_log_commit(v, &t, 0);
	vhdx_txn_free(&t);
	return ret;
}

/* Mark sectors of a partially present block present once their data is
 * durable. */
static int mark_present(struct vhdx *v, uint64_t blk, uint64_t in, size_t n)
{
	uint64_t first = chunk_sector(v, blk * v->block_size + in), count = n / v->lss, base;
	uint64_t sbe;
	uint8_t *bm;
	bool all = true;
	struct vhdx_txn t;
	int ret = read_bits(v, blk / v->chunk_ratio, first, count, &bm, &base);

	if (ret)
		return ret;
	for (uint64_t s = 0; s < count && all; s++)
		all = bit_set(bm, first + s - base);
	free(bm);
	if (all)
		return 0;
	pthread_mutex_lock(&v->meta);
	sbe = vhdx_bat_get(v, vhdx_sb_index(v, blk / v->chunk_ratio));
	ret = v->broken ? -EIO : blk_sync(v->fd);
	if (!ret) {
		vhdx_txn_init(&t);
		ret = txn_set_bits(v, &t, vhdx_entry_offset(sbe), first, count);
		if (!ret)
			ret = vhdx_log_commit(v, &t, 0);
		vhdx_txn_free(&t);
	}
	pthread_mutex_unlock(&v->meta);
	return ret;
}

static int write_in_block(struct vhdx *v, uint64_t blk, uint64_t in, const uint8_t *buf, size_t n)
{
	uint64_t idx = vhdx_payload_index(v, blk), e, st;
	int ret;

	for (;;) {
		e = vhdx_bat_get(v, idx);
		st = e & VHDX_BAT_STATE_MASK;
		if (st == VHDX_PAYLOAD_FULLY_PRESENT)
			return blk_pwrite(v->fd, buf, n, vhdx_entry_offset(e) + in);
		if (st == VHDX_PAYLOAD_PARTIALLY_PRESENT) {
			ret = blk_pwrite(v->fd, buf, n, vhdx_entry_offset(e) + in);
			return ret ? ret : mark_present(v, blk, in, n);
		}
		pthread_mutex_lock(&v->meta);
		if (vhdx_bat_get(v, idx) != e) { /* allocated meanwhile */
			pthread_mutex_unlock(&v->meta);
			continue;
		}
		ret = v->broken ? -EIO : allocate(v, blk, st, in, buf, n);
		pthread_mutex_unlock(&v->meta);
		return ret;
	}
}

/* A block's share of a write that write_in_block must handle (allocating,
 * or marking sectors present): straight from a lone buffer, otherwise
 * through a flat copy. */
static int write_share(struct vhdx *v, uint64_t blk, uint64_t in, const struct iovec *part,
		       int cnt, const struct iovec *iov, int niov, size_t skip, size_t n)
{
	uint8_t *buf;
	int ret;

	if (cnt == 1)
		return write_in_block(v, blk, in, part[0].iov_base, n);
	buf = malloc(n);
	if (!buf)
		return -ENOMEM;
	blk_iov_copy(iov, niov, skip, buf, n, false);
	ret = write_in_block(v, blk, in, buf, n);
	free(buf);
	return ret;
}

/* Write iov to [off, off+len) a block at a time (lock held): into fully
 * present blocks straight from the scatter list, the rest through
 * write_share. nowait: into the page cache without waiting, and -EAGAIN for
 * anything that needs more (allocating, marking sectors present). */
static int write_blocks(struct vhdx *v, uint64_t off, const struct iovec *iov, int niov,
			size_t len, bool nowait)
{
	struct iovec part[64];
	size_t done = 0;
	int ret = 0;

	while (done < len && !ret) {
		uint64_t pos = off + done, blk = pos / v->block_size, in = pos % v->block_size;
		size_t n = (size_t)MIN(len - done, v->block_size - in);
		uint64_t e = vhdx_bat_get(v, vhdx_payload_index(v, blk));
		int cnt = blk_iov_slice(iov, niov, done, n, part, 64);

		if ((e & VHDX_BAT_STATE_MASK) == VHDX_PAYLOAD_FULLY_PRESENT && cnt > 0)
			ret = blk_pwritev(v->fd, part, cnt, n, vhdx_entry_offset(e) + in,
					  nowait ? RWF_NOWAIT : 0);
		else
			ret = nowait ? -EAGAIN
				     : write_share(v, blk, in, part, cnt, iov, niov, done, n);
		done += n;
	}
	return ret;
}

static int write_locked(struct vhdx *v, uint64_t off, const uint8_t *p, size_t len)
{
	struct iovec iov = { (void *)p, len };

	return write_blocks(v, off, &iov, 1, len, false);
}

static int data_write_begin(struct vhdx *v)
{
	int ret = 0;

	if (__atomic_load_n(&v->data_guid_done, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&v->meta);
	ret = v->broken ? -EIO : vhdx_begin_write(v, true);
	pthread_mutex_unlock(&v->meta);
	return ret;
}

static int vhdx_writev(struct blk_image *img, uint64_t off, const struct iovec *iov, int niov,
		       size_t len, unsigned flags)
{
	struct vhdx *v = VHDX(img);
	int ret;

	if (__atomic_load_n(&v->broken, __ATOMIC_RELAXED))
		return -EIO;
	ret = data_write_begin(v);
	if (ret)
		return ret;
	pthread_rwlock_rdlock(&v->lock);
	ret = write_blocks(v, off, iov, niov, len, false);
	if (!ret && (flags & BLK_FUA))
		ret = blk_sync(v->fd);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

static int vhdx_write(struct blk_image *img, uint64_t off, const void *buf, size_t len,
		      unsigned flags)
{
	struct iovec iov = { (void *)buf, len };

	return vhdx_writev(img, off, &iov, 1, len, flags);
}

/* Only into allocated blocks of an image already marked as being written
 * (its data write GUID changed, which needs a log write). */
static int vhdx_writev_nowait(struct blk_image *img, uint64_t off, const struct iovec *iov,
			      int niov, size_t len)
{
	struct vhdx *v = VHDX(img);
	int ret;

	if (__atomic_load_n(&v->broken, __ATOMIC_RELAXED))
		return -EIO;
	if (!__atomic_load_n(&v->data_guid_done, __ATOMIC_ACQUIRE) ||
	    pthread_rwlock_tryrdlock(&v->lock))
		return -EAGAIN;
	ret = write_blocks(v, off, iov, niov, len, true);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

static int vhdx_flush(struct blk_image *img)
{
	struct vhdx *v = VHDX(img);

	return v->broken ? -EIO : blk_sync(v->fd);
}

/* ---- discard ---- */

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

struct punch_list {
	size_t n, cap;
	uint64_t *off;
};

static int punch_add(struct punch_list *p, uint64_t off)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		uint64_t *o = realloc(p->off, cap * sizeof(*o));

		if (!o)
			return -ENOMEM;
		p->off = o;
		p->cap = cap;
	}
	p->off[p->n++] = off;
	return 0;
}

/* Commit t, then free the blocks it unmapped. */
static int commit_and_punch(struct vhdx *v, struct vhdx_txn *t, struct punch_list *p)
{
	int ret = 0;

	if (t->n) {
		pthread_mutex_lock(&v->meta);
		ret = vhdx_log_commit(v, t, 0);
		pthread_mutex_unlock(&v->meta);
	}
	for (size_t i = 0; i < p->n && !ret; i++)
		zero_file(v->fd, p->off[i], v->block_size);
	vhdx_txn_free(t);
	p->n = 0;
	return ret;
}

static int vhdx_discard(struct blk_image *img, uint64_t off, uint64_t len)
{
	struct vhdx *v = VHDX(img);
	struct vhdx_txn t;
	struct punch_list punch = { 0 };
	uint8_t *zeros = NULL;
	int ret;

	if (v->broken)
		return -EIO;
	ret = data_write_begin(v);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&v->lock);
	vhdx_txn_init(&t);
	while (len && !ret) {
		uint64_t blk = off / v->block_size, in = off % v->block_size;
		uint64_t n = MIN(len, v->block_size - in), idx = vhdx_payload_index(v, blk);
		uint64_t e = v->bat[idx], st = e & VHDX_BAT_STATE_MASK;
		bool present = st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT;

		if (in == 0 && n >= block_used(v, blk) && !v->fixed) {
			/* The whole block: unmapped (zero in a child, to hide the parent). */
			uint64_t ns = v->has_parent ? VHDX_PAYLOAD_ZERO : VHDX_PAYLOAD_UNMAPPED;

			if (e != ns) {
				ret = vhdx_txn_bat(v, &t, idx, ns);
				if (!ret && present)
					ret = punch_add(&punch, vhdx_entry_offset(e));
			}
			if (!ret && t.n + 2 >= vhdx_txn_max_sectors(v))
				ret = commit_and_punch(v, &t, &punch);
		} else if (st == VHDX_PAYLOAD_FULLY_PRESENT) {
			ret = zero_file(v->fd, vhdx_entry_offset(e) + in, n);
		} else if (v->has_parent && (st == VHDX_PAYLOAD_NOT_PRESENT ||
					     st == VHDX_PAYLOAD_PARTIALLY_PRESENT)) {
			/* Part of a block: zeros written over the parent's data. */
			if (!zeros)
				zeros = calloc(1, v->block_size);
			ret = zeros ? write_locked(v, off, zeros, (size_t)n) : -ENOMEM;
		}
		off += n;
		len -= n;
	}
	if (!ret)
		ret = commit_and_punch(v, &t, &punch);
	vhdx_txn_free(&t);
	free(punch.off);
	free(zeros);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

/* ---- resize (grow) ---- */

/* Write `len` bytes at `off` into t, only the sectors that change. */
static int txn_write_changed(struct vhdx *v, struct vhdx_txn *t, uint64_t off, const uint8_t *buf,
			     size_t len)
{
	uint8_t cur[VHDX_LOG_SECTOR];
	int ret = 0;

	for (size_t o = 0; o < len && !ret; o += VHDX_LOG_SECTOR) {
		size_t n = MIN(len - o, VHDX_LOG_SECTOR);

		ret = vhdx_read_meta(v, cur, n, off + o);
		if (!ret && memcmp(cur, buf + o, n))
			ret = vhdx_txn_write(v, t, off + o, buf + o, n);
	}
	return ret;
}

static void region_table_seal(uint8_t *t)
{
	struct vhdx_region_header *h = (void *)t;

	h->checksum = 0;
	h->checksum = htole32(blk_crc32c(0, t, VHDX_REGION_SIZE));
}

static int commit_if_full(struct vhdx *v, struct vhdx_txn *t)
{
	int ret = 0;

	if (t->n + 4 >= vhdx_txn_max_sectors(v)) {
		ret = vhdx_log_commit(v, t, 0);
		vhdx_txn_free(t);
	}
	return ret;
}

static int resize_grow(struct vhdx *v, uint64_t new_size)
{
	uint64_t old_pb = v->payload_blocks, new_pb = DIV_ROUND_UP(new_size, v->block_size);
	uint64_t new_entries = vhdx_bat_entries_for(new_size, v->block_size, v->lss, v->has_parent);
	uint64_t data_off = 0, *nb, le;
	struct vhdx_txn t;
	int ret;

	if (new_entries * 8 > VHDX_MAX_BAT_REGION)
		return -EFBIG;
	ret = vhdx_begin_write(v, true);
	if (ret)
		return ret;
	nb = realloc(v->bat, new_entries * 8 + 8);
	if (!nb)
		return -ENOMEM;
	v->bat = nb;
	for (uint64_t i = v->bat_entries; i < new_entries; i++)
		nb[i] = 0;

	/* The last block of the old size gets a full block's worth of file. */
	if (old_pb) {
		uint64_t e = nb[vhdx_payload_index(v, old_pb - 1)];
		uint64_t st = e & VHDX_BAT_STATE_MASK;

		if ((st == VHDX_PAYLOAD_FULLY_PRESENT || st == VHDX_PAYLOAD_PARTIALLY_PRESENT) &&
		    vhdx_entry_offset(e) + v->block_size > v->file_size) {
			ret = blk_truncate(v->fd, vhdx_entry_offset(e) + v->block_size);
			if (ret)
				return ret;
			v->file_size = vhdx_entry_offset(e) + v->block_size;
		}
	}
	/* Fixed disks: the new blocks, allocated, in a row at the end. */
	if (v->fixed && new_pb > old_pb) {
		data_off = ROUND_UP(v->file_size, MiB);
		ret = blk_allocate(v->fd, data_off, (new_pb - old_pb) * v->block_size);
		if (ret)
			return ret;
		v->file_size = data_off + (new_pb - old_pb) * v->block_size;
		for (uint64_t b = old_pb; b < new_pb; b++)
			nb[vhdx_payload_index(v, b)] = (data_off + (b - old_pb) * v->block_size) |
						       VHDX_PAYLOAD_FULLY_PRESENT;
	}
	vhdx_txn_init(&t);
	if (new_entries * 8 > v->bat_len) {
		/* A bigger BAT at the end of the file, written before the region
		 * table points at it. */
		uint64_t bat_len = ROUND_UP(new_entries * 8, MiB), bat_off = ROUND_UP(v->file_size, MiB);
		uint64_t *disk = calloc(1, bat_len);
		uint8_t *rt = malloc(VHDX_REGION_SIZE);
		struct vhdx_region_header *rh = (void *)rt;
		struct vhdx_region_entry *re = (void *)(rt + sizeof(*rh));

		if (!disk || !rt) {
			free(disk);
			free(rt);
			return -ENOMEM;
		}
		for (uint64_t i = 0; i < new_entries; i++)
			disk[i] = htole64(nb[i]);
		ret = blk_pwrite(v->fd, disk, bat_len, bat_off);
		free(disk);
		if (!ret)
			ret = blk_sync(v->fd);
		if (ret) {
			free(rt);
			return ret;
		}
		v->file_size = bat_off + bat_len;
		memcpy(rt, v->rt, VHDX_REGION_SIZE);
		for (uint32_t i = 0; i < le32toh(rh->entry_count); i++) {
			if (blk_guid_eq(&re[i].guid, &guid_bat)) {
				re[i].file_offset = htole64(bat_off);
				re[i].length = htole32((uint32_t)bat_len);
			}
		}
		region_table_seal(rt);
		ret = txn_write_changed(v, &t, VHDX_REGION1_OFF, rt, VHDX_REGION_SIZE);
		if (!ret)
			ret = txn_write_changed(v, &t, VHDX_REGION2_OFF, rt, VHDX_REGION_SIZE);
		le = htole64(new_size);
		if (!ret)
			ret = vhdx_txn_write(v, &t, v->vsize_item, &le, 8);
		if (!ret)
			ret = vhdx_log_commit(v, &t, 0);
		vhdx_txn_free(&t);
		if (ret) {
			free(rt);
			return ret;
		}
		/* The old table is free space now. */
		zero_file(v->fd, v->bat_off, v->bat_len);
		free(v->rt);
		v->rt = rt;
		v->bat_off = bat_off;
		v->bat_len = (uint32_t)bat_len;
	} else {
		/* In place: the new entries (zeros, or the fixed blocks), then
		 * the size, each transaction within the log. */
		uint64_t from = v->bat_off + v->bat_entries * 8, to = v->bat_off + new_entries * 8;
		uint64_t sec = ROUND_DOWN(from, VHDX_LOG_SECTOR);

		for (; sec < to && !ret; sec += VHDX_LOG_SECTOR) {
			uint64_t s = MAX(sec, from), e = MIN(sec + VHDX_LOG_SECTOR, to);
			uint64_t first = (s - v->bat_off) / 8, cnt = (e - s) / 8;
			uint64_t buf[VHDX_LOG_SECTOR / 8];

			for (uint64_t i = 0; i < cnt; i++)
				buf[i] = htole64(nb[first + i]);
			ret = txn_write_changed(v, &t, s, (const uint8_t *)buf, (size_t)(e - s));
			if (!ret)
				ret = commit_if_full(v, &t);
		}
		le = htole64(new_size);
		if (!ret)
			ret = vhdx_txn_write(v, &t, v->vsize_item, &le, 8);
		if (!ret)
			ret = vhdx_log_commit(v, &t, 0);
		vhdx_txn_free(&t);
		if (ret)
			return ret;
	}
	v->bat_entries = new_entries;
	v->payload_blocks = new_pb;
	__atomic_store_n(&v->vsize, new_size, __ATOMIC_RELAXED);
	return 0;
}

static int vhdx_resize(struct blk_image *img, uint64_t new_size)
{
	struct vhdx *v = VHDX(img);
	int ret;

	if (v->broken)
		return -EIO;
	if (new_size < v->vsize)
		return -EOPNOTSUPP; /* VHDX is never shrunk here */
	if (new_size % v->lss)
		return -EINVAL;
	if (new_size > BLK_VHDX_MAX_SIZE)
		return -EFBIG;
	pthread_rwlock_wrlock(&v->lock);
	pthread_mutex_lock(&v->meta);
	ret = resize_grow(v, new_size);
	if (ret && ret != -EFBIG && ret != -ENOMEM && ret != -ENOSPC)
		v->broken = v->broken || ret == -EIO;
	pthread_mutex_unlock(&v->meta);
	pthread_rwlock_unlock(&v->lock);
	return ret;
}

/* ---- for image operations ---- */

int vhdx_block_status(struct blk_image *img, uint64_t off, uint64_t len, uint64_t *pnum,
		      enum blk_status *st)
{
	struct vhdx *v = VHDX(img);
	uint64_t blk = off / v->block_size, in = off % v->block_size;
	uint64_t n = MIN(len, v->block_size - in);
	uint64_t e = vhdx_bat_get(v, vhdx_payload_index(v, blk)), s = e & VHDX_BAT_STATE_MASK;

	*pnum = n;
	switch (s) {
	case VHDX_PAYLOAD_FULLY_PRESENT:
		*st = BLK_ST_DATA;
		break;
	case VHDX_PAYLOAD_NOT_PRESENT:
		*st = BLK_ST_ABSENT;
		break;
	case VHDX_PAYLOAD_PARTIALLY_PRESENT: {
		uint64_t first = chunk_sector(v, off), count = n / v->lss, base, run = 1;
		uint8_t *bm;
		bool here;
		int ret;

		if (!count) {
			*st = BLK_ST_DATA;
			return 0;
		}
		ret = read_bits(v, blk / v->chunk_ratio, first, count, &bm, &base);
		if (ret)
			return ret;
		here = bit_set(bm, first - base);
		while (run < count && bit_set(bm, first + run - base) == here)
			run++;
		free(bm);
		*pnum = run * v->lss;
		*st = here ? BLK_ST_DATA : BLK_ST_ABSENT;
		return 0;
	}
	default:
		*st = BLK_ST_ZERO;
	}
	/* Whole blocks in the same state after it. */
	while (*pnum < len) {
		uint64_t b = (off + *pnum) / v->block_size;
		uint64_t s2 = vhdx_bat_get(v, vhdx_payload_index(v, b)) & VHDX_BAT_STATE_MASK;
		enum blk_status st2 = s2 == VHDX_PAYLOAD_FULLY_PRESENT ? BLK_ST_DATA :
				      s2 == VHDX_PAYLOAD_NOT_PRESENT ? BLK_ST_ABSENT :
				      s2 == VHDX_PAYLOAD_PARTIALLY_PRESENT ? (enum blk_status)-1 :
				      BLK_ST_ZERO;

		if (st2 != *st)
			break;
		*pnum = MIN(len, *pnum + v->block_size);
	}
	return 0;
}

const char *vhdx_parent_path(struct blk_image *img)
{
	return VHDX(img)->parent_path;
}

static int popcount_bits(struct vhdx *v, uint64_t blk, uint64_t *count)
{
	uint64_t first = chunk_sector(v, blk * v->block_size), n = block_used(v, blk) / v->lss, base;
	uint8_t *bm;
	int ret = read_bits(v, blk / v->chunk_ratio, first, n, &bm, &base);

	if (ret)
		return ret;
	*count = 0;
	for (uint64_t s = 0; s < n; s++)
		*count += bit_set(bm, first + s - base);
	free(bm);
	return 0;
}

void vhdx_details(struct blk_image *img, struct blk_details *d)
{
	struct vhdx *v = VHDX(img);

	d->type = v->has_parent ? BLK_TYPE_DIFF : v->fixed ? BLK_TYPE_FIXED : BLK_TYPE_DYNAMIC;
	d->size = v->vsize;
	d->block_size = v->block_size;
	d->logical_sector = v->lss;
	d->physical_sector = v->pss;
	d->log_pending = v->log_pending;
	for (uint64_t b = 0; b < v->payload_blocks; b++) {
		uint64_t s = v->bat[vhdx_payload_index(v, b)] & VHDX_BAT_STATE_MASK, c;

		if (s == VHDX_PAYLOAD_FULLY_PRESENT)
			d->allocated += block_used(v, b);
		else if (s == VHDX_PAYLOAD_PARTIALLY_PRESENT && !popcount_bits(v, b, &c))
			d->allocated += c * v->lss;
	}
	if (v->parent_path)
		snprintf(d->parent, sizeof(d->parent), "%s", v->parent_path);
}

const struct blk_driver blk_vhdx_driver = {
	.name = "vhdx",
	.format = BLK_FMT_VHDX,
	.probe = vhdx_probe,
	.open = vhdx_open,
	.close = vhdx_close,
	.info = vhdx_info,
	.read = vhdx_read,
	.readv = vhdx_readv,
	.writev = vhdx_writev,
	.readv_nowait = vhdx_readv_nowait,
	.writev_nowait = vhdx_writev_nowait,
	.write = vhdx_write,
	.flush = vhdx_flush,
	.discard = vhdx_discard,
	.resize = vhdx_resize,
};
