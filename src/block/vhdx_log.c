/* The VHDX metadata log (MS-VHDX §2.3): every change to the BAT, the
 * metadata region or the region table is first written as a log entry and
 * synced, then applied to its place and synced. A crash at any point
 * leaves either the old structures (entry incomplete: its checksum fails)
 * or a complete entry that the next open replays.
 *
 * Each entry written here is applied and synced before the next one is
 * written, so its Tail points at itself: the active sequence is always one
 * entry. Replay accepts any sequence other writers (Hyper-V) leave. */
#include "block/vhdx_internal.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool vhdx_test_stop_after_log;

#define SECTOR VHDX_LOG_SECTOR
#define MAX_TARGET (1ULL << 48) /* no log entry writes past 256 TiB */

/* ---- transactions ---- */

void vhdx_txn_init(struct vhdx_txn *t)
{
	memset(t, 0, sizeof(*t));
}

void vhdx_txn_free(struct vhdx_txn *t)
{
	free(t->off);
	free(t->data);
	free(t->bat_idx);
	free(t->bat_val);
	vhdx_txn_init(t);
}

size_t vhdx_txn_max_sectors(struct vhdx *v)
{
	/* One sector of header holds 126 descriptors; keep to that. */
	size_t sectors = v->log_len / SECTOR;

	return sectors > 2 ? MIN(sectors - 1, 126) : 0;
}

uint8_t *vhdx_txn_sector(struct vhdx *v, struct vhdx_txn *t, uint64_t off, int *ret)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->off[i] == off)
			return t->data + i * SECTOR;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		uint64_t *o = realloc(t->off, cap * sizeof(*o));
		uint8_t *d;

		if (!o) {
			*ret = -ENOMEM;
			return NULL;
		}
		t->off = o;
		d = realloc(t->data, cap * SECTOR);
		if (!d) {
			*ret = -ENOMEM;
			return NULL;
		}
		t->data = d;
		t->cap = cap;
	}
	*ret = vhdx_read_meta(v, t->data + t->n * SECTOR, SECTOR, off);
	if (*ret)
		return NULL;
	t->off[t->n] = off;
	return t->data + t->n++ * SECTOR;
}

int vhdx_txn_write(struct vhdx *v, struct vhdx_txn *t, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int ret = 0;

	while (len) {
		uint64_t sec = ROUND_DOWN(off, SECTOR), in = off - sec;
		size_t n = (size_t)MIN(len, SECTOR - in);
		uint8_t *s = vhdx_txn_sector(v, t, sec, &ret);

		if (!s)
			return ret;
		memcpy(s + in, p, n);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vhdx_txn_bat(struct vhdx *v, struct vhdx_txn *t, uint64_t idx, uint64_t val)
{
	uint64_t le = htole64(val);
	int ret;

	if (t->nbat == t->bat_cap) {
		size_t cap = t->bat_cap ? t->bat_cap * 2 : 8;
		uint64_t *i = realloc(t->bat_idx, cap * sizeof(*i)), *vv;

		if (!i)
			return -ENOMEM;
		t->bat_idx = i;
		vv = realloc(t->bat_val, cap * sizeof(*vv));
		if (!vv)
			return -ENOMEM;
		t->bat_val = vv;
		t->bat_cap = cap;
	}
	ret = vhdx_txn_write(v, t, v->bat_off + idx * 8, &le, 8);
	if (ret)
		return ret;
	t->bat_idx[t->nbat] = idx;
	t->bat_val[t->nbat++] = val;
	return 0;
}

/* ---- writing entries ---- */

static int ensure_log_guid(struct vhdx *v)
{
	struct blk_guid g;
	int ret;

	if (!blk_guid_is_zero(&v->hdr.log_guid))
		return 0;
	ret = blk_guid_random(&g);
	if (!ret)
		ret = vhdx_update_header(v, NULL, NULL, &g);
	if (!ret) {
		v->log_head = 0;
		v->log_seq = 0;
	}
	return ret;
}

int vhdx_log_commit(struct vhdx *v, struct vhdx_txn *t, uint64_t flushed_limit)
{
	struct vhdx_log_entry_header *h;
	uint64_t desc_sectors = DIV_ROUND_UP(64 + 32 * (uint64_t)t->n, SECTOR);
	uint64_t len = (desc_sectors + t->n) * SECTOR, flushed, seq;
	uint8_t *e;
	int ret;

	if (v->broken)
		return -EIO;
	if (t->n > vhdx_txn_max_sectors(v) || len > v->log_len)
		return -E2BIG;
	ret = vhdx_begin_write(v, false);
	if (!ret)
		ret = ensure_log_guid(v);
	if (ret)
		return ret;
	e = calloc(1, len);
	if (!e)
		return -ENOMEM;
	if (v->log_head + len > v->log_len)
		v->log_head = 0;
	seq = v->log_seq + 1;
	flushed = ROUND_DOWN(v->file_size, MiB);
	if (flushed_limit && flushed > flushed_limit)
		flushed = ROUND_DOWN(flushed_limit, MiB);
	h = (struct vhdx_log_entry_header *)e;
	h->signature = htole32(VHDX_LOG_ENTRY_SIG);
	h->entry_length = htole32((uint32_t)len);
	h->tail = htole32(v->log_head);
	h->sequence = htole64(seq);
	h->descriptor_count = htole32((uint32_t)t->n);
	h->log_guid = v->hdr.log_guid;
	h->flushed_file_offset = htole64(flushed);
	h->last_file_offset = htole64(ROUND_UP(flushed_limit ? MIN(v->file_size, flushed_limit) :
					       v->file_size, MiB));
	for (size_t i = 0; i < t->n; i++) {
		struct vhdx_log_descriptor *d = (void *)(e + 64 + 32 * i);
		struct vhdx_log_data_sector *s = (void *)(e + (desc_sectors + i) * SECTOR);
		const uint8_t *src = t->data + i * SECTOR;

		d->signature = htole32(VHDX_LOG_DESC_SIG);
		memcpy(&d->leading_bytes, src, 8);
		memcpy(&d->trailing_bytes, src + SECTOR - 4, 4);
		d->file_offset = htole64(t->off[i]);
		d->sequence = htole64(seq);
		s->signature = htole32(VHDX_LOG_DATA_SIG);
		s->sequence_high = htole32((uint32_t)(seq >> 32));
		memcpy(s->data, src + 8, sizeof(s->data));
		s->sequence_low = htole32((uint32_t)seq);
	}
	h->checksum = htole32(blk_crc32c(0, e, len));

	/* 1. The entry, durable. */
	ret = blk_pwrite(v->fd, e, len, v->log_off + v->log_head);
	if (!ret)
		ret = blk_sync(v->fd);
	free(e);
	if (ret) {
		v->broken = true; /* the entry may or may not be there */
		return ret;
	}
	v->log_seq = seq;
	v->log_head = (uint32_t)((v->log_head + len) % v->log_len);
	if (vhdx_test_stop_after_log) {
		v->broken = true;
		return -EIO;
	}
	/* 2. Applied, durable. */
	for (size_t i = 0; i < t->n && !ret; i++)
		ret = blk_pwrite(v->fd, t->data + i * SECTOR, SECTOR, t->off[i]);
	if (!ret)
		ret = blk_sync(v->fd);
	if (ret) {
		v->broken = true;
		return ret;
	}
	for (size_t i = 0; i < t->nbat; i++)
		__atomic_store_n(&v->bat[t->bat_idx[i]], t->bat_val[i], __ATOMIC_RELEASE);
	return 0;
}

/* ---- replay ---- */

struct entry {
	uint32_t off, len, tail;
	uint32_t desc_sectors, data_count;
	uint64_t seq;
	uint64_t flushed, last;
	uint32_t count; /* descriptors */
};

/* Copy [off, off+len) of the circular log. */
static void log_copy(const uint8_t *log, uint32_t log_len, uint64_t off, void *dst, size_t len)
{
	uint8_t *d = dst;

	off %= log_len;
	while (len) {
		size_t n = (size_t)MIN(len, log_len - off);

		memcpy(d, log + off, n);
		d += n;
		len -= n;
		off = 0;
	}
}

static uint32_t log_crc(const uint8_t *log, uint32_t log_len, uint64_t off, uint64_t len)
{
	uint8_t first[64];
	uint32_t crc;

	log_copy(log, log_len, off, first, sizeof(first));
	memset(first + 4, 0, 4);
	crc = blk_crc32c(0, first, sizeof(first));
	off = (off + 64) % log_len;
	len -= 64;
	while (len) {
		uint64_t n = MIN(len, log_len - off);

		crc = blk_crc32c(crc, log + off, (size_t)n);
		len -= n;
		off = 0;
	}
	return crc;
}

/* Is there a whole, valid entry at `off`? */
static bool parse_entry(struct vhdx *v, const uint8_t *log, uint32_t off, struct entry *out)
{
	const struct vhdx_log_entry_header *h = (const void *)(log + off);
	uint32_t log_len = v->log_len, len, count, data = 0;
	uint64_t seq, desc_sectors;

	if (le32toh(h->signature) != VHDX_LOG_ENTRY_SIG)
		return false;
	len = le32toh(h->entry_length);
	count = le32toh(h->descriptor_count);
	seq = le64toh(h->sequence);
	if (!len || len % SECTOR || len > log_len || le32toh(h->tail) % SECTOR ||
	    le32toh(h->tail) >= log_len || !seq || !blk_guid_eq(&h->log_guid, &v->hdr.log_guid))
		return false;
	desc_sectors = DIV_ROUND_UP(64 + 32 * (uint64_t)count, SECTOR);
	if (desc_sectors > len / SECTOR)
		return false;
	if (le64toh(h->flushed_file_offset) > MAX_TARGET || le64toh(h->last_file_offset) > MAX_TARGET)
		return false;
	if (log_crc(log, log_len, off, len) != le32toh(h->checksum))
		return false;
	for (uint32_t i = 0; i < count; i++) {
		struct vhdx_log_descriptor d;
		uint64_t target, tlen;

		log_copy(log, log_len, (uint64_t)off + 64 + 32 * (uint64_t)i, &d, sizeof(d));
		if (le64toh(d.sequence) != seq)
			return false;
		target = le64toh(d.file_offset);
		if (le32toh(d.signature) == VHDX_LOG_DESC_SIG) {
			struct vhdx_log_data_sector s;

			tlen = SECTOR;
			if (desc_sectors + data + 1 > len / SECTOR)
				return false;
			log_copy(log, log_len, off + (desc_sectors + data) * SECTOR, &s, sizeof(s));
			if (le32toh(s.signature) != VHDX_LOG_DATA_SIG ||
			    le32toh(s.sequence_high) != (uint32_t)(seq >> 32) ||
			    le32toh(s.sequence_low) != (uint32_t)seq)
				return false;
			data++;
		} else if (le32toh(d.signature) == VHDX_LOG_ZERO_SIG) {
			tlen = le64toh(d.leading_bytes);
			if (!tlen || tlen % SECTOR)
				return false;
		} else {
			return false;
		}
		/* Only the region tables and what follows the header section
		 * are written through the log; never the log itself. */
		if (target % SECTOR || target < VHDX_REGION1_OFF || target > MAX_TARGET ||
		    tlen > MAX_TARGET - target)
			return false;
		if (target < v->log_off + v->log_len && target + tlen > v->log_off)
			return false;
	}
	out->off = off;
	out->len = len;
	out->tail = le32toh(h->tail);
	out->seq = seq;
	out->count = count;
	out->desc_sectors = (uint32_t)desc_sectors;
	out->data_count = data;
	out->flushed = le64toh(h->flushed_file_offset);
	out->last = le64toh(h->last_file_offset);
	return true;
}

static int by_seq_desc(const void *a, const void *b)
{
	const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;

	return x->seq > y->seq ? -1 : x->seq < y->seq;
}

static int add_overlay(struct vhdx *v, uint64_t off, uint64_t len, const uint8_t *data)
{
	struct vhdx_overlay *o = realloc(v->ov, (v->ov_n + 1) * sizeof(*o));

	if (!o)
		return -ENOMEM;
	v->ov = o;
	o[v->ov_n++] = (struct vhdx_overlay){ off, len, data };
	return 0;
}

static int zero_file_range(int fd, uint64_t off, uint64_t len, uint64_t file_size)
{
	static const uint8_t zeros[SECTOR];
	int ret;

	/* Past the end of the file is zeros already. */
	if (off >= file_size)
		return 0;
	len = MIN(len, file_size - off);
	ret = blk_punch(fd, off, len);
	if (ret != -EOPNOTSUPP)
		return ret;
	for (uint64_t o = 0; o < len && !ret; o += SECTOR)
		ret = blk_pwrite(fd, zeros, SECTOR, off + o);
	return ret;
}

/* Apply one entry: to the file, or into the overlay (sectors rebuilt into
 * `rebuilt`, which must hold data_count sectors). */
static int apply_entry(struct vhdx *v, const uint8_t *log, const struct entry *en, uint8_t *rebuilt)
{
	uint32_t data = 0;
	uint8_t sector[SECTOR];
	int ret = 0;

	for (uint32_t i = 0; i < en->count && !ret; i++) {
		struct vhdx_log_descriptor d;
		uint64_t target;

		log_copy(log, v->log_len, (uint64_t)en->off + 64 + 32 * (uint64_t)i, &d, sizeof(d));
		target = le64toh(d.file_offset);
		if (le32toh(d.signature) == VHDX_LOG_ZERO_SIG) {
			uint64_t zlen = le64toh(d.leading_bytes);

			if (rebuilt)
				ret = add_overlay(v, target, zlen, NULL);
			else
				ret = zero_file_range(v->fd, target, zlen, v->file_size);
			continue;
		}
		struct vhdx_log_data_sector s;
		uint8_t *out = rebuilt ? rebuilt + (size_t)data * SECTOR : sector;

		log_copy(log, v->log_len, en->off + (uint64_t)(en->desc_sectors + data) * SECTOR, &s,
			 sizeof(s));
		memcpy(out, &d.leading_bytes, 8);
		memcpy(out + 8, s.data, sizeof(s.data));
		memcpy(out + SECTOR - 4, &d.trailing_bytes, 4);
		data++;
		if (rebuilt)
			ret = add_overlay(v, target, SECTOR, out);
		else
			ret = blk_pwrite(v->fd, out, SECTOR, target);
	}
	return ret;
}

int vhdx_log_replay(struct vhdx *v, struct blk_error *err)
{
	uint32_t nsec = v->log_len / SECTOR;
	struct entry *ents = NULL, *head = NULL, *tail = NULL, **order = NULL;
	int32_t *at = NULL; /* sector -> index in ents, or -1 */
	size_t n = 0, total_data = 0;
	uint64_t budget = 16ULL * nsec + 1024;
	uint8_t *log = malloc(v->log_len), *rebuilt = NULL;
	int ret = -ENOMEM;

	ents = calloc(nsec, sizeof(*ents));
	at = malloc(nsec * sizeof(*at));
	if (!log || !ents || !at) {
		blk_seterr(err, "%s: out of memory for the log", v->path);
		goto out;
	}
	ret = blk_pread(v->fd, log, v->log_len, v->log_off);
	if (ret) {
		blk_seterr(err, "%s: cannot read the log: %s", v->path, strerror(-ret));
		goto out;
	}
	for (uint32_t i = 0; i < nsec; i++) {
		at[i] = -1;
		if (parse_entry(v, log, i * SECTOR, &ents[n]))
			at[i] = (int32_t)n++;
	}
	/* The active sequence: the highest head whose Tail reaches it through
	 * entries that follow each other with consecutive numbers. */
	order = malloc(MAX(n, 1) * sizeof(*order));
	if (!order) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = &ents[i];
	qsort(order, n, sizeof(*order), by_seq_desc);
	for (size_t k = 0; k < n; k++) {
		struct entry *best = order[k];
		int32_t ti = at[best->tail / SECTOR];
		if (ti >= 0 && ents[ti].seq <= best->seq && best->seq - ents[ti].seq < nsec) {
			struct entry *cur = &ents[ti];
			bool ok = true;

			while (cur != best) {
				uint64_t next = ((uint64_t)cur->off + cur->len) % v->log_len;
				int32_t ni = at[next / SECTOR];

				if (!budget--) {
					blk_seterr(err, "%s: corrupt VHDX: the log is too tangled to replay",
						   v->path);
					ret = -EINVAL;
					goto out;
				}
				if (ni < 0 || ents[ni].seq != cur->seq + 1) {
					ok = false;
					break;
				}
				cur = &ents[ni];
			}
			if (ok) {
				head = best;
				tail = &ents[ti];
				break;
			}
		}
	}
	ret = 0;
	if (!head) /* LogGuid set but nothing valid: an empty log */
		goto clear;
	if (v->file_size < head->flushed) {
		blk_seterr(err, "%s: corrupt VHDX: the file is shorter (%llu bytes) than its log says "
			   "it was (%llu): it was truncated", v->path, (unsigned long long)v->file_size,
			   (unsigned long long)head->flushed);
		ret = -EINVAL;
		goto out;
	}
	if (v->ro) {
		/* In memory only: the file stays as it is. */
		for (struct entry *e = tail;; e = &ents[at[((uint64_t)e->off + e->len) % v->log_len / SECTOR]]) {
			total_data += e->data_count;
			if (e == head)
				break;
		}
		rebuilt = malloc(MAX(total_data, 1) * SECTOR);
		if (!rebuilt) {
			ret = -ENOMEM;
			blk_seterr(err, "%s: out of memory replaying the log", v->path);
			goto out;
		}
		size_t used = 0;
		for (struct entry *e = tail;; e = &ents[at[((uint64_t)e->off + e->len) % v->log_len / SECTOR]]) {
			ret = apply_entry(v, log, e, rebuilt + used * SECTOR);
			if (ret)
				goto out;
			used += e->data_count;
			if (e == head)
				break;
		}
		v->log_image = rebuilt;
		rebuilt = NULL;
		v->log_pending = true;
		v->file_size = MAX(v->file_size, head->last);
		goto out;
	}
	for (struct entry *e = tail;; e = &ents[at[((uint64_t)e->off + e->len) % v->log_len / SECTOR]]) {
		ret = apply_entry(v, log, e, NULL);
		if (ret)
			goto fail_apply;
		if (e == head)
			break;
	}
	if (v->file_size < head->last) {
		ret = blk_truncate(v->fd, head->last);
		if (ret)
			goto fail_apply;
		v->file_size = head->last;
	}
	ret = blk_sync(v->fd);
	if (ret)
		goto fail_apply;
	v->log_replayed = true;
clear:
	if (v->ro) {
		/* Nothing to replay; a read-only open leaves the header be. */
		v->log_pending = !blk_guid_is_zero(&v->hdr.log_guid);
		goto out;
	}
	{
		/* The log emptied, and (a write happened) a new FileWriteGuid. */
		struct blk_guid zero = { { 0 } }, fw;

		ret = blk_guid_random(&fw);
		if (!ret)
			ret = vhdx_update_header(v, &fw, NULL, &zero);
		if (ret)
			blk_seterr(err, "%s: cannot clear the replayed log: %s", v->path, strerror(-ret));
	}
	goto out;
fail_apply:
	blk_seterr(err, "%s: cannot replay the log: %s", v->path, strerror(-ret));
out:
	free(order);
	free(rebuilt);
	free(log);
	free(ents);
	free(at);
	return ret;
}
