/* An in-memory disk for the block queue, SCSI and storage VSP tests and
 * fuzzers: a struct blk_driver over a calloc'd buffer, with an operation
 * log (for ordering checks), failure injection, a gate that holds writes
 * until released, and optional per-operation delays. The real blk_* calls
 * (src/block/block.c) check ranges and flags and dispatch to it. */
#ifndef HVMM_TEST_SCSI_MEMDISK_H
#define HVMM_TEST_SCSI_MEMDISK_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/block.h"

enum md_op { MD_READ, MD_WRITE, MD_FLUSH, MD_DISCARD, MD_RESIZE };

struct md_log {
	enum md_op op;
	uint64_t off, len;
	unsigned flags;
	uint64_t start, end; /* global event counter at entry and exit */
};

#ifndef MD_LOG_MAX
#define MD_LOG_MAX 4096
#endif

struct memdisk {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint8_t *data;
	uint64_t size;
	uint64_t cap; /* bytes allocated */
	uint32_t lsec, psec;
	bool ro, can_discard, can_resize;
	enum blk_format fmt;
	/* failure injection: errno to return (negative), 0 = none */
	int fail_read, fail_write, fail_flush, fail_discard, fail_resize;
	/* writes wait while gate is closed */
	bool gate_closed;
	/* writev_nowait takes writes (unless they would wait: gate closed,
	 * delay, failure injected); otherwise it always says -EAGAIN */
	bool nowait_writes;
	bool nowait_past_gate; /* ...even while the gate holds other writes */
	unsigned waiting; /* writes blocked at the gate */
	unsigned write_delay_us;
	atomic_ulong clock;
	struct md_log log[MD_LOG_MAX];
	unsigned nlog;
	unsigned nreads, nwrites, nflushes, ndiscards, fua_writes;
	unsigned nowait_done; /* writes taken by writev_nowait */
	unsigned closed;
};

static inline struct memdisk *md_of(struct blk_image *img)
{
	return (struct memdisk *)img;
}

static inline unsigned md_log_begin(struct memdisk *m, enum md_op op, uint64_t off, uint64_t len,
				    unsigned flags)
{
	unsigned i;

	pthread_mutex_lock(&m->lock);
	i = m->nlog < MD_LOG_MAX ? m->nlog++ : MD_LOG_MAX;
	if (i < MD_LOG_MAX)
		m->log[i] = (struct md_log){ op, off, len, flags, atomic_fetch_add(&m->clock, 1), 0 };
	pthread_mutex_unlock(&m->lock);
	return i;
}

static inline void md_log_end(struct memdisk *m, unsigned i)
{
	pthread_mutex_lock(&m->lock);
	if (i < MD_LOG_MAX)
		m->log[i].end = atomic_fetch_add(&m->clock, 1);
	pthread_mutex_unlock(&m->lock);
}

static void md_close(struct blk_image *img)
{
	md_of(img)->closed++;
}

static void md_info(struct blk_image *img, struct blk_info *info)
{
	struct memdisk *m = md_of(img);

	pthread_mutex_lock(&m->lock);
	info->format = m->fmt;
	info->size = m->size;
	info->logical_sector = m->lsec;
	info->physical_sector = m->psec;
	info->read_only = m->ro;
	info->can_discard = m->can_discard;
	pthread_mutex_unlock(&m->lock);
}

static int md_read(struct blk_image *img, uint64_t off, void *buf, size_t len)
{
	struct memdisk *m = md_of(img);
	unsigned i = md_log_begin(m, MD_READ, off, len, 0);
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	m->nreads++;
	if (m->fail_read)
		ret = m->fail_read;
	else if (off + len > m->size)
		ret = -ERANGE;
	else
		memcpy(buf, m->data + off, len);
	pthread_mutex_unlock(&m->lock);
	md_log_end(m, i);
	return ret;
}

static int md_write(struct blk_image *img, uint64_t off, const void *buf, size_t len,
		    unsigned flags)
{
	struct memdisk *m = md_of(img);
	unsigned i = md_log_begin(m, MD_WRITE, off, len, flags);
	int ret = 0;

	if (m->write_delay_us)
		usleep(m->write_delay_us);
	pthread_mutex_lock(&m->lock);
	m->waiting++;
	pthread_cond_broadcast(&m->cv);
	while (m->gate_closed)
		pthread_cond_wait(&m->cv, &m->lock);
	m->waiting--;
	m->nwrites++;
	if (flags & BLK_FUA)
		m->fua_writes++;
	if (m->fail_write)
		ret = m->fail_write;
	else if (off + len > m->size)
		ret = -ERANGE;
	else
		memcpy(m->data + off, buf, len);
	pthread_mutex_unlock(&m->lock);
	md_log_end(m, i);
	return ret;
}

static int md_writev_nowait(struct blk_image *img, uint64_t off, const struct iovec *iov,
			    int niov, size_t len)
{
	struct memdisk *m = md_of(img);
	int ret = -EAGAIN;

	pthread_mutex_lock(&m->lock);
	if (m->nowait_writes && (!m->gate_closed || m->nowait_past_gate) && !m->write_delay_us &&
	    !m->fail_write &&
	    off + len <= m->size) {
		for (int i = 0; i < niov && len; i++) {
			size_t n = iov[i].iov_len < len ? iov[i].iov_len : len;

			memcpy(m->data + off, iov[i].iov_base, n);
			off += n;
			len -= n;
		}
		m->nwrites++;
		m->nowait_done++;
		ret = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

static int md_flush(struct blk_image *img)
{
	struct memdisk *m = md_of(img);
	unsigned i = md_log_begin(m, MD_FLUSH, 0, 0, 0);
	int ret;

	pthread_mutex_lock(&m->lock);
	m->nflushes++;
	ret = m->fail_flush;
	pthread_mutex_unlock(&m->lock);
	md_log_end(m, i);
	return ret;
}

static int md_discard(struct blk_image *img, uint64_t off, uint64_t len)
{
	struct memdisk *m = md_of(img);
	unsigned i = md_log_begin(m, MD_DISCARD, off, len, 0);
	int ret = 0;

	pthread_mutex_lock(&m->lock);
	m->ndiscards++;
	if (!m->can_discard)
		ret = -EOPNOTSUPP;
	else if (m->fail_discard)
		ret = m->fail_discard;
	else if (off + len > m->size)
		ret = -ERANGE;
	else
		memset(m->data + off, 0, len);
	pthread_mutex_unlock(&m->lock);
	md_log_end(m, i);
	return ret;
}

static int md_resize(struct blk_image *img, uint64_t new_size)
{
	struct memdisk *m = md_of(img);
	uint8_t *p;
	int ret = 0;

	md_log_end(m, md_log_begin(m, MD_RESIZE, new_size, 0, 0));
	pthread_mutex_lock(&m->lock);
	if (!m->can_resize) {
		ret = -EOPNOTSUPP;
	} else if (m->fail_resize) {
		ret = m->fail_resize;
	} else if (new_size <= m->cap) {
		if (new_size > m->size)
			memset(m->data + m->size, 0, new_size - m->size);
		m->size = new_size;
	} else if (!(p = realloc(m->data, new_size))) {
		ret = -ENOMEM;
	} else {
		memset(p + m->size, 0, new_size - m->size);
		m->data = p;
		m->size = new_size;
		m->cap = new_size;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

static bool md_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	return false;
}

static const struct blk_driver memdisk_driver = {
	.name = "raw",
	.format = BLK_FMT_RAW,
	.probe = md_probe,
	.close = md_close,
	.info = md_info,
	.read = md_read,
	.write = md_write,
	.writev_nowait = md_writev_nowait,
	.flush = md_flush,
	.discard = md_discard,
	.resize = md_resize,
};

/* A disk of `size` bytes; the blk_disk is heap-allocated like blk_open()'s
 * so that blk_close() frees it. The memdisk itself stays until md_free(). */
static inline struct memdisk *md_new(uint64_t size, uint32_t lsec, uint32_t psec)
{
	struct memdisk *m = calloc(1, sizeof(*m));

	if (!m)
		abort();
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cv, NULL);
	m->data = calloc(1, size ? size : 1);
	if (!m->data)
		abort();
	m->size = size;
	m->cap = size;
	m->lsec = lsec;
	m->psec = psec;
	m->can_discard = true;
	m->can_resize = true;
	m->fmt = BLK_FMT_RAW;
	return m;
}

static inline struct blk_disk *md_disk(struct memdisk *m)
{
	struct blk_disk *d = calloc(1, sizeof(*d));

	if (!d)
		abort();
	d->drv = &memdisk_driver;
	d->img = (struct blk_image *)m;
	d->path = strdup("memdisk");
	return d;
}

static inline void md_free(struct memdisk *m)
{
	if (!m)
		return;
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->lock);
	free(m->data);
	free(m);
}

static inline void md_set_gate(struct memdisk *m, bool closed)
{
	pthread_mutex_lock(&m->lock);
	m->gate_closed = closed;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->lock);
}

/* Wait until `n` writes are blocked at the closed gate. */
static inline void md_wait_waiting(struct memdisk *m, unsigned n)
{
	pthread_mutex_lock(&m->lock);
	while (m->waiting < n)
		pthread_cond_wait(&m->cv, &m->lock);
	pthread_mutex_unlock(&m->lock);
}

#endif
