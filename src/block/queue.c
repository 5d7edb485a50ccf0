/* Asynchronous block request queue: a FIFO of submitted requests, worker
 * threads that run them with the blk_* calls, and a done list handed back
 * to the loop thread through an eventfd. See queue.h. */
#include "block/queue.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/block_internal.h"
#include "core/loop.h"
#include "util/clock.h"
#include "util/log.h"

struct blkq {
	struct blk_disk *disk;
	struct loop *loop;
	struct loop_source src;
	bool src_added;
	struct loop_defer deliver; /* completions of requests run on the loop thread */
	int efd;
	unsigned nthreads, depth;
	size_t bounce_size;
	uint32_t sector;
	pthread_t *threads;
	unsigned nr_started;
	uint8_t *inline_bounce; /* no-worker mode */

	pthread_mutex_t lock;
	pthread_cond_t work_cv; /* workers: pending work or stop */
	pthread_cond_t idle_cv; /* a request finished (flush barrier, drain) */
	/* Under lock. */
	struct blkq_req *pend_head, *pend_tail; /* submitted, not started */
	struct blkq_req *act_head, *act_tail;   /* started writes, in submission order */
	struct blkq_req *done_head, *done_tail; /* finished, not delivered */
	unsigned unfinished;                    /* submitted and not finished */
	unsigned npend;                         /* on the pending list */
	unsigned idle_workers;                  /* waiting for work */
	bool stop_workers;
	/* Loop thread only. */
	uint64_t next_seq;
	unsigned inflight; /* submitted, done not yet run */
	bool delivering;
	bool stopped;
	struct blkq_stats stats;
	/* Write-behind (loop thread only): writes acknowledged, not yet written. */
	struct blkq_wb *wb_head;
	size_t wb_bytes, wb_max;
	int wb_error;                           /* first failure, for the next flush */
	struct blkq_req *held_head, *held_tail; /* accepted, waiting for wb_head to empty */
	struct blkq_wb *wb_spare;               /* finished write-behinds kept for reuse */
	size_t wb_spare_bytes;
	/* Splitting (loop thread only). */
	unsigned split_ns;
	uint64_t copy_ns_per_mib; /* moving average over large requests run here; 0: none yet */
	struct blkq_split *split; /* NULL until the first split */
};

/* A request in two parts, one copied on the loop thread and one by a
 * worker (see split_req). One at a time: only a request alone in flight is
 * split. */
struct blkq_split {
	struct blkq_req part[2]; /* flags BLKQ_PART, priv this */
	struct blkq_iov *iov;    /* both parts' scatter lists */
	unsigned iov_cap;
	struct blkq_req *parent; /* NULL: free */
	unsigned left;           /* parts not finished */
	int result;              /* the first part's error */
};

/* A write-behind: the queue's own write of a copy of a guest write that was
 * already reported done. */
struct blkq_wb {
	struct blkq_req req; /* op WRITE, flags BLKQ_WB */
	struct blkq_iov iov; /* the copy */
	size_t cap;          /* bytes at iov.base */
	struct blkq_wb *next, *prev;
};

#define BLKQ_WB 0x10000   /* req is a struct blkq_wb's (private to the queue) */
#define BLKQ_PART 0x20000 /* req is a part of a struct blkq_split */

void blkq_default_config(struct blkq_config *cfg)
{
	cfg->threads = BLKQ_DEFAULT_THREADS;
	cfg->depth = BLKQ_DEFAULT_DEPTH;
	cfg->bounce_size = BLKQ_DEFAULT_BOUNCE;
	cfg->write_behind = BLKQ_DEFAULT_WRITE_BEHIND;
	cfg->split_ns = BLKQ_DEFAULT_SPLIT_NS;
}

static bool modifies_data(const struct blkq_req *r)
{
	return r->op == BLKQ_OP_WRITE || r->op == BLKQ_OP_DISCARD || r->op == BLKQ_OP_WRITE_SAME;
}

/* ---- executing one request (worker, or poll without workers) ---- */

static bool direct_ok(const struct blkq_req *r)
{
	return r->niov >= 1 && r->iov[0].len >= r->len && ((uintptr_t)r->iov[0].base & 4095) == 0;
}

/* A scatter list is handed to the drivers as it is (no bounce copy). */
_Static_assert(sizeof(struct blkq_iov) == sizeof(struct iovec) &&
		       offsetof(struct blkq_iov, base) == offsetof(struct iovec, iov_base) &&
		       offsetof(struct blkq_iov, len) == offsetof(struct iovec, iov_len),
	       "struct blkq_iov is laid out as struct iovec");

static const struct iovec *as_iovec(const struct blkq_req *r)
{
	return (const struct iovec *)r->iov;
}

/* Vectored I/O needs every element to hold whole sectors. */
static bool vector_ok(const struct blkq *q, const struct blkq_req *r)
{
	uint64_t total = 0;

	if (r->niov > IOV_MAX)
		return false;
	for (unsigned i = 0; i < r->niov && total < r->len; i++) {
		if (r->iov[i].len % q->sector)
			return false;
		total += r->iov[i].len;
	}
	return true;
}

static bool needs_bounce(const struct blkq_req *r)
{
	if (r->op == BLKQ_OP_WRITE_SAME)
		return true;
	return (r->op == BLKQ_OP_READ || r->op == BLKQ_OP_WRITE) && !direct_ok(r);
}

static int exec_rw(struct blkq *q, struct blkq_req *r, uint8_t *bounce)
{
	bool wr = r->op == BLKQ_OP_WRITE;
	uint64_t done = 0;
	int ret = 0;

	if (direct_ok(r))
		return wr ? blk_write(q->disk, r->off, r->iov[0].base, r->len, r->flags & BLK_FUA)
			  : blk_read(q->disk, r->off, r->iov[0].base, r->len);
	if (vector_ok(q, r)) {
		ret = wr ? blk_writev(q->disk, r->off, as_iovec(r), (int)r->niov, r->len,
				      r->flags & BLK_FUA)
			 : blk_readv(q->disk, r->off, as_iovec(r), (int)r->niov, r->len);
		if (ret != -EOPNOTSUPP)
			return ret;
		ret = 0; /* the format has no vectored I/O: bounce */
	}
	while (done < r->len && !ret) {
		size_t n = r->len - done < q->bounce_size ? (size_t)(r->len - done) : q->bounce_size;

		if (wr) {
			blk_iov_copy(as_iovec(r), (int)r->niov, done, bounce, n, false);
			ret = blk_write(q->disk, r->off + done, bounce, n, r->flags & BLK_FUA);
		} else {
			ret = blk_read(q->disk, r->off + done, bounce, n);
			if (!ret)
				blk_iov_copy(as_iovec(r), (int)r->niov, done, bounce, n, true);
		}
		done += n;
	}
	return ret;
}

static int exec_write_same(struct blkq *q, struct blkq_req *r, uint8_t *bounce)
{
	size_t plen = r->iov[0].len;
	size_t fill = q->bounce_size / plen * plen;
	uint64_t done = 0;
	int ret;

	if (r->flags & BLKQ_UNMAP) {
		ret = blk_discard(q->disk, r->off, r->len);
		if (ret != -EOPNOTSUPP)
			return ret;
	}
	if (fill > r->len)
		fill = (size_t)r->len;
	for (size_t o = 0; o < fill; o += plen)
		memcpy(bounce + o, r->iov[0].base, plen);
	ret = 0;
	while (done < r->len && !ret) {
		size_t n = r->len - done < fill ? (size_t)(r->len - done) : fill;

		ret = blk_write(q->disk, r->off + done, bounce, n, r->flags & BLK_FUA);
		done += n;
	}
	return ret;
}

static int exec_req(struct blkq *q, struct blkq_req *r, uint8_t *bounce)
{
	switch (r->op) {
	case BLKQ_OP_READ:
	case BLKQ_OP_WRITE:
		return exec_rw(q, r, bounce);
	case BLKQ_OP_FLUSH:
		return blk_flush(q->disk);
	case BLKQ_OP_DISCARD:
		return blk_discard(q->disk, r->off, r->len);
	case BLKQ_OP_WRITE_SAME:
		return exec_write_same(q, r, bounce);
	}
	return -EINVAL;
}

/* ---- lists (under lock) ---- */

static void list_append(struct blkq_req **head, struct blkq_req **tail, struct blkq_req *r)
{
	r->next = NULL;
	r->prev = *tail;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

static void list_unlink(struct blkq_req **head, struct blkq_req **tail, struct blkq_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		*head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		*tail = r->prev;
	r->next = r->prev = NULL;
}

static struct blkq_req *pend_pop(struct blkq *q)
{
	struct blkq_req *r = q->pend_head;

	if (r) {
		list_unlink(&q->pend_head, &q->pend_tail, r);
		q->npend--;
	}
	return r;
}

/* A flush may run once no write submitted before it is still running. */
static bool flush_ready(const struct blkq *q, const struct blkq_req *flush)
{
	return !q->act_head || q->act_head->seq > flush->seq;
}

static void kick_eventfd(struct blkq *q)
{
	uint64_t one = 1;

	/* A full counter (never in practice) still leaves the fd readable. */
	if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_ratelimited(LOG_ERR, "blkq: eventfd write: %s", strerror(errno));
}

/* Put a finished request on the done list (lock held); returns true if the
 * list was empty, i.e. the loop must be woken. */
static bool done_locked(struct blkq *q, struct blkq_req *r, int ret)
{
	bool was_empty = !q->done_head;

	r->result = ret;
	list_append(&q->done_head, &q->done_tail, r);
	return was_empty;
}

/* Record the end of a request a worker (or run_inline) started (lock held):
 * it leaves the started-writes list, which only such requests are on. */
static bool finish_locked(struct blkq *q, struct blkq_req *r, int ret)
{
	if (modifies_data(r))
		list_unlink(&q->act_head, &q->act_tail, r);
	q->unfinished--;
	pthread_cond_broadcast(&q->idle_cv);
	return done_locked(q, r, ret);
}

static void *worker(void *arg)
{
	struct blkq *q = arg;
	uint8_t *bounce = aligned_alloc(4096, q->bounce_size);

	pthread_mutex_lock(&q->lock);
	for (;;) {
		struct blkq_req *r;
		bool wake;
		int ret;

		while (!q->pend_head && !q->stop_workers) {
			q->idle_workers++;
			pthread_cond_wait(&q->work_cv, &q->lock);
			q->idle_workers--;
		}
		r = pend_pop(q);
		if (!r)
			break; /* stopping and nothing left */
		if (modifies_data(r))
			list_append(&q->act_head, &q->act_tail, r);
		if (r->op == BLKQ_OP_FLUSH)
			while (!flush_ready(q, r))
				pthread_cond_wait(&q->idle_cv, &q->lock);
		pthread_mutex_unlock(&q->lock);
		if (!bounce && needs_bounce(r))
			ret = -ENOMEM;
		else
			ret = exec_req(q, r, bounce);
		pthread_mutex_lock(&q->lock);
		wake = finish_locked(q, r, ret);
		if (wake) { /* kick without the lock the loop thread is about to take */
			pthread_mutex_unlock(&q->lock);
			kick_eventfd(q);
			pthread_mutex_lock(&q->lock);
		}
	}
	pthread_mutex_unlock(&q->lock);
	free(bounce);
	return NULL;
}

/* ---- loop side ---- */

static void on_event(struct loop_source *src, uint32_t events)
{
	blkq_poll(container_of(src, struct blkq, src));
}

static unsigned deliver(struct blkq *q);

static void on_deliver(struct loop_defer *d)
{
	deliver(container_of(d, struct blkq, deliver));
}

int blkq_new(struct blkq **out, struct blk_disk *disk, struct loop *loop,
	     const struct blkq_config *cfg)
{
	struct blkq_config def;
	struct blk_info info;
	struct blkq *q;
	int ret;

	*out = NULL;
	if (!cfg) {
		blkq_default_config(&def);
		cfg = &def;
	}
	if (!disk || cfg->threads > BLKQ_MAX_THREADS || !cfg->depth || cfg->depth > BLKQ_MAX_DEPTH ||
	    cfg->bounce_size < 4096 || cfg->bounce_size % 4096 || cfg->bounce_size > (64u << 20) ||
	    cfg->write_behind > BLKQ_MAX_WRITE_BEHIND)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	blk_get_info(disk, &info);
	q->disk = disk;
	q->loop = loop;
	q->nthreads = cfg->threads;
	q->depth = cfg->depth;
	q->bounce_size = cfg->bounce_size;
	q->wb_max = cfg->write_behind;
	q->split_ns = cfg->split_ns;
	q->sector = info.logical_sector == 4096 ? 4096 : 512;
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->deliver.fn = on_deliver;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->work_cv, NULL);
	pthread_cond_init(&q->idle_cv, NULL);
	if (q->efd < 0) {
		ret = -errno;
		goto fail;
	}
	if (loop) {
		ret = loop_add(loop, &q->src, q->efd, EPOLLIN, on_event);
		if (ret)
			goto fail;
		q->src_added = true;
	}
	if (!q->nthreads) {
		q->inline_bounce = aligned_alloc(4096, q->bounce_size);
		if (!q->inline_bounce) {
			ret = -ENOMEM;
			goto fail;
		}
	} else {
		q->threads = calloc(q->nthreads, sizeof(*q->threads));
		if (!q->threads) {
			ret = -ENOMEM;
			goto fail;
		}
		for (unsigned i = 0; i < q->nthreads; i++) {
			ret = -pthread_create(&q->threads[i], NULL, worker, q);
			if (ret)
				goto fail;
			q->nr_started++;
		}
	}
	*out = q;
	return 0;
fail:
	blkq_free(q);
	return ret;
}

/* Report a request done without a worker: its done callback runs once the
 * loop callback that submitted it returns (with no loop: at the owner's
 * next blkq_poll), never inside blkq_submit(). */
static void complete_now(struct blkq *q, struct blkq_req *r, int ret)
{
	bool wake;

	pthread_mutex_lock(&q->lock);
	wake = done_locked(q, r, ret); /* never on the started-writes list */
	pthread_mutex_unlock(&q->lock);
	if (wake && q->loop)
		loop_defer(q->loop, &q->deliver);
	else if (wake)
		kick_eventfd(q);
}

/* A read or write this large costs mostly its copy: worth a thread switch
 * to run it beside others (better_on_worker), and timed when run on the
 * loop thread, for the page cache's copy speed (split_req). */
#define BLKQ_COPY_BOUND (32u << 10)

static void note_copy_time(struct blkq *q, uint64_t len, uint64_t ns)
{
	uint64_t per_mib = (ns << 20) / len;

	q->copy_ns_per_mib = q->copy_ns_per_mib ? (q->copy_ns_per_mib * 7 + per_mib) / 8 : per_mib;
}

/* The read or write r without waiting; -EAGAIN if it would block (never
 * tried for FUA writes, which wait for the disk). Large ones are timed. */
static int rw_nowait(struct blkq *q, const struct blkq_req *r)
{
	const struct iovec *iov = as_iovec(r);
	bool timed = r->len >= BLKQ_COPY_BOUND;
	uint64_t t0 = timed ? mono_ns() : 0, t1;
	int ret = -EAGAIN;

	if (r->op == BLKQ_OP_READ)
		ret = blk_readv_nowait(q->disk, r->off, iov, (int)r->niov, r->len);
	else if (r->op == BLKQ_OP_WRITE && !(r->flags & BLK_FUA))
		ret = blk_writev_nowait(q->disk, r->off, iov, (int)r->niov, r->len);
	if (timed && !ret && (t1 = mono_ns()) > t0)
		note_copy_time(q, r->len, t1 - t0);
	return ret;
}

/* A read whose data is in the page cache, or a write the file system takes
 * into its page cache without waiting, costs one copy: do it here rather
 * than wake a worker (two thread switches) for it. False if it would block. */
static bool run_nowait(struct blkq *q, struct blkq_req *r)
{
	int ret;

	if (!q->nthreads || !vector_ok(q, r))
		return false;
	ret = rw_nowait(q, r);
	if (ret == -EAGAIN)
		return false;
	if (r->op == BLKQ_OP_READ)
		q->stats.cached_reads++;
	else
		q->stats.cached_writes++;
	complete_now(q, r, ret);
	return true;
}

static void queue_for_worker(struct blkq *q, struct blkq_req *r)
{
	pthread_mutex_lock(&q->lock);
	list_append(&q->pend_head, &q->pend_tail, r);
	q->npend++;
	q->unfinished++;
	pthread_mutex_unlock(&q->lock);
	/* After unlocking: a worker woken under the lock would only block on it. */
	if (q->nthreads)
		pthread_cond_signal(&q->work_cv);
	else
		kick_eventfd(q);
}

/* Write-behind. A plain write that would have to wait for a worker (the
 * file system must update the file's times, allocate, or cannot take
 * writes without waiting at all) is copied, reported done at once, and
 * written by a worker afterwards: the disk reports a volatile write cache
 * (WCE), so the guest flushes what must last, and a flush waits for every
 * write-behind before it (they are writes queued before it). A write-behind
 * that fails is logged and fails the next flush, as Linux reports writeback
 * errors at fsync. Until the write-behinds in flight have all finished, a
 * request that overlaps one of them, and everything after it, is held back,
 * so nothing overtakes the data the guest was told is written. */
static bool overlaps_write_behind(const struct blkq *q, const struct blkq_req *r)
{
	if (r->op == BLKQ_OP_FLUSH)
		return false;
	for (const struct blkq_wb *w = q->wb_head; w; w = w->next)
		if (r->off < w->req.off + w->req.len && w->req.off < r->off + r->len)
			return true;
	return false;
}

/* A write-behind with room for len bytes: a spare one if it fits, else a new
 * one. Reusing them matters: a buffer of 128 KiB or more is mmap()ed and
 * munmap()ed by malloc on every write, page faults and TLB shootdowns
 * included. */
static struct blkq_wb *wb_get(struct blkq *q, size_t len)
{
	struct blkq_wb **p, *w;

	for (p = &q->wb_spare; *p; p = &(*p)->next) {
		if ((*p)->cap >= len) {
			w = *p;
			*p = w->next;
			q->wb_spare_bytes -= w->cap;
			q->stats.write_behind_reused++;
			return w;
		}
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->cap = (len + 4095) & ~(size_t)4095;
	w->iov.base = aligned_alloc(4096, w->cap);
	if (!w->iov.base) {
		free(w);
		return NULL;
	}
	return w;
}

static void wb_free(struct blkq_wb *w)
{
	free(w->iov.base);
	free(w);
}

/* Keep a finished write-behind for the next one, up to a quarter of the
 * write-behind limit in all; free the rest. */
static void wb_put(struct blkq *q, struct blkq_wb *w)
{
	if (q->wb_spare_bytes + w->cap <= q->wb_max / 4) {
		w->next = q->wb_spare;
		q->wb_spare = w;
		q->wb_spare_bytes += w->cap;
		return;
	}
	wb_free(w);
}

static bool write_behind(struct blkq *q, struct blkq_req *r)
{
	struct blkq_wb *w;

	if (r->op != BLKQ_OP_WRITE || (r->flags & BLK_FUA) || !q->nthreads ||
	    r->len > q->wb_max - q->wb_bytes)
		return false;
	/* A large write's copy is most of its cost. With other requests in
	 * flight the guest is not waiting on this one alone, so reporting it
	 * early gains little, and copying it twice (here, then into the file)
	 * takes CPU time from the others: it waits for a worker instead. */
	if (r->len >= BLKQ_COPY_BOUND && q->inflight >= 2)
		return false;
	w = wb_get(q, r->len);
	if (!w)
		return false; /* the worker takes it as it is */
	blk_iov_copy(as_iovec(r), (int)r->niov, 0, w->iov.base, r->len, false);
	w->iov.len = r->len;
	w->req = (struct blkq_req){
		.op = BLKQ_OP_WRITE, .flags = BLKQ_WB, .off = r->off, .len = r->len,
		.iov = &w->iov, .niov = 1, .priv = w, .seq = q->next_seq++,
	};
	w->prev = NULL;
	w->next = q->wb_head;
	if (q->wb_head)
		q->wb_head->prev = w;
	q->wb_head = w;
	q->wb_bytes += r->len;
	q->stats.write_behind++;
	queue_for_worker(q, &w->req);
	complete_now(q, r, 0);
	return true;
}

/* Whether a worker is waiting with nothing queued for it. */
static bool worker_idle(struct blkq *q)
{
	bool idle;

	pthread_mutex_lock(&q->lock);
	idle = q->idle_workers > q->npend;
	pthread_mutex_unlock(&q->lock);
	return idle;
}

/* A large read or write submitted while others are in flight goes to an
 * idle worker instead of being copied on the loop thread: when the guest
 * keeps several requests outstanding, their copies (the bulk of their cost)
 * then run on several CPUs, as the loop thread goes on to the next one. A
 * request alone in flight (queue depth 1) stays on the loop thread, where it
 * costs no thread switch; so do small ones, whose copy is cheaper than the
 * switch. */
static bool better_on_worker(struct blkq *q, const struct blkq_req *r)
{
	return (r->op == BLKQ_OP_READ || r->op == BLKQ_OP_WRITE) && r->len >= BLKQ_COPY_BOUND &&
	       q->inflight >= 2 && q->nthreads && worker_idle(q);
}

/* Point `out` (room for r->niov + 1) at bytes [from, from + len) of r's
 * scatter list; returns the element count. */
static unsigned iov_slice(const struct blkq_req *r, uint64_t from, uint64_t len,
			  struct blkq_iov *out)
{
	unsigned n = 0;

	for (unsigned i = 0; i < r->niov && len; i++) {
		uint64_t l = r->iov[i].len;

		if (from >= l) {
			from -= l;
			continue;
		}
		l -= from;
		if (l > len)
			l = len;
		out[n++] = (struct blkq_iov){ (uint8_t *)r->iov[i].base + from, (size_t)l };
		len -= l;
		from = 0;
	}
	return n;
}

/* A part of a split request finished: its parent, once both have (with the
 * first error), else NULL. Loop thread. */
static struct blkq_req *part_finished(struct blkq_req *part, int ret)
{
	struct blkq_split *sp = part->priv;
	struct blkq_req *parent = sp->parent;

	if (ret && !sp->result)
		sp->result = ret;
	if (--sp->left)
		return NULL;
	parent->result = sp->result;
	sp->parent = NULL;
	return parent;
}

/* Split a read or write alone in flight whose copy would take at least
 * split_ns: a worker copies its second half while this thread copies the
 * first, so at queue depth 1 the request takes about half as long where the
 * copy dominates (a slow CPU, a large request). A part that cannot be done
 * here without waiting goes to a worker too. False if r is not split. */
static bool split_req(struct blkq *q, struct blkq_req *r)
{
	struct blkq_split *sp = q->split;
	uint64_t half;
	unsigned n0;
	int ret;

	if ((r->op != BLKQ_OP_READ && r->op != BLKQ_OP_WRITE) || (r->flags & BLK_FUA) ||
	    !q->split_ns || !q->copy_ns_per_mib || r->len < 2 * (uint64_t)q->sector ||
	    q->inflight != 1 || !q->nthreads || !vector_ok(q, r) ||
	    ((q->copy_ns_per_mib * r->len) >> 20) < q->split_ns || (sp && sp->parent) ||
	    !worker_idle(q))
		return false;
	if (!sp) {
		sp = q->split = calloc(1, sizeof(*sp));
		if (!sp)
			return false;
	}
	if (sp->iov_cap < r->niov + 1) {
		struct blkq_iov *iov = realloc(sp->iov, (r->niov + 1) * sizeof(*iov));

		if (!iov)
			return false;
		sp->iov = iov;
		sp->iov_cap = r->niov + 1;
	}
	half = r->len / 2 / q->sector * q->sector;
	n0 = iov_slice(r, 0, half, sp->iov);
	sp->part[0] = (struct blkq_req){ .op = r->op, .flags = BLKQ_PART, .off = r->off,
					 .len = half, .iov = sp->iov, .niov = n0, .priv = sp,
					 .seq = r->seq };
	sp->part[1] = sp->part[0];
	sp->part[1].off = r->off + half;
	sp->part[1].len = r->len - half;
	sp->part[1].iov = sp->iov + n0;
	sp->part[1].niov = iov_slice(r, half, r->len - half, sp->iov + n0);
	sp->parent = r;
	sp->left = 2;
	sp->result = 0;
	q->stats.split++;
	queue_for_worker(q, &sp->part[1]);
	ret = rw_nowait(q, &sp->part[0]);
	if (ret == -EAGAIN)
		queue_for_worker(q, &sp->part[0]);
	else if (part_finished(&sp->part[0], ret))
		complete_now(q, r, sp->result); /* not reached: the worker's part is delivered later */
	return true;
}

/* Start an accepted request. */
static void start_req(struct blkq *q, struct blkq_req *r)
{
	if (q->held_head || (q->wb_head && overlaps_write_behind(q, r))) {
		list_append(&q->held_head, &q->held_tail, r);
		return;
	}
	if (better_on_worker(q, r)) {
		q->stats.parallel++;
		queue_for_worker(q, r);
		return;
	}
	if (split_req(q, r) || run_nowait(q, r) || write_behind(q, r))
		return;
	queue_for_worker(q, r);
}

/* A write-behind's write finished (its "done", on the loop thread). */
static void write_behind_done(struct blkq *q, struct blkq_req *r)
{
	struct blkq_wb *w = r->priv;

	if (r->result) {
		log_ratelimited(LOG_ERR,
				"blkq: writing %llu bytes at offset %llu after the guest was told "
				"they were written: %s; the next flush fails",
				(unsigned long long)r->len, (unsigned long long)r->off,
				strerror(-r->result));
		if (!q->wb_error)
			q->wb_error = r->result;
		q->stats.write_behind_errors++;
	}
	if (w->prev)
		w->prev->next = w->next;
	else
		q->wb_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	q->wb_bytes -= r->len;
	wb_put(q, w);
	/* Everything held back goes on, in order, once none is in flight (a
	 * held request may become a write-behind itself and hold the rest). */
	while (!q->wb_head && q->held_head) {
		struct blkq_req *h = q->held_head;

		list_unlink(&q->held_head, &q->held_tail, h);
		if (run_nowait(q, h) || write_behind(q, h))
			continue;
		queue_for_worker(q, h);
	}
}

int blkq_submit(struct blkq *q, struct blkq_req *r)
{
	uint64_t mask = q->sector - 1;

	if (q->stopped)
		return -ESHUTDOWN;
	if (q->inflight >= q->depth)
		return -EAGAIN;
	if ((r->off & mask) || (r->len & mask) || r->off + r->len < r->off)
		return -EINVAL;
	switch (r->op) {
	case BLKQ_OP_READ:
	case BLKQ_OP_WRITE: {
		uint64_t total = 0;

		if (!r->len || !r->iov || !r->niov)
			return -EINVAL;
		for (unsigned i = 0; i < r->niov && total < r->len; i++) {
			if (!r->iov[i].base && r->iov[i].len)
				return -EINVAL;
			total += r->iov[i].len;
		}
		if (total < r->len)
			return -EINVAL;
		break;
	}
	case BLKQ_OP_FLUSH:
		break;
	case BLKQ_OP_DISCARD:
		if (!r->len)
			return -EINVAL;
		break;
	case BLKQ_OP_WRITE_SAME:
		if (!r->len || !r->iov || r->niov != 1 || r->iov[0].len != q->sector ||
		    !r->iov[0].base)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	r->result = 0;
	r->seq = q->next_seq++;
	r->submitted_ns = mono_ns();
	q->inflight++;
	start_req(q, r);
	return 0;
}

bool blkq_full(const struct blkq *q)
{
	return q->inflight >= q->depth;
}

unsigned blkq_inflight(const struct blkq *q)
{
	return q->inflight;
}

unsigned blkq_depth(const struct blkq *q)
{
	return q->depth;
}

int blkq_event_fd(const struct blkq *q)
{
	return q->efd;
}

/* Without workers: run everything queued, in order. */
static void run_inline(struct blkq *q)
{
	for (;;) {
		struct blkq_req *r;
		int ret;

		pthread_mutex_lock(&q->lock);
		r = pend_pop(q);
		if (r && modifies_data(r))
			list_append(&q->act_head, &q->act_tail, r);
		pthread_mutex_unlock(&q->lock);
		if (!r)
			return;
		ret = exec_req(q, r, q->inline_bounce);
		pthread_mutex_lock(&q->lock);
		finish_locked(q, r, ret);
		pthread_mutex_unlock(&q->lock);
	}
}

static void account(struct blkq *q, const struct blkq_req *r, uint64_t now)
{
	struct blkq_stats *s = &q->stats;
	/* CLOCK_MONOTONIC read on two CPUs whose clocks disagree (seen under
	 * nested emulation) can step back: count such a request as 0 ns. */
	uint64_t took = now > r->submitted_ns ? now - r->submitted_ns : 0;

	if (r->result)
		s->errors++;
	switch (r->op) {
	case BLKQ_OP_READ:
		s->reads++;
		s->read_ns += took;
		if (!r->result)
			s->bytes_read += r->len;
		break;
	case BLKQ_OP_WRITE:
		s->writes++;
		s->write_ns += took;
		if (!r->result)
			s->bytes_written += r->len;
		break;
	case BLKQ_OP_FLUSH:
		s->flushes++;
		break;
	case BLKQ_OP_DISCARD:
		s->discards++;
		break;
	case BLKQ_OP_WRITE_SAME:
		s->write_sames++;
		break;
	}
}

/* Run the done callbacks of everything finished. */
static unsigned deliver(struct blkq *q)
{
	struct blkq_req *list;
	unsigned n = 0;
	uint64_t now;

	if (q->delivering)
		return 0;
	pthread_mutex_lock(&q->lock);
	list = q->done_head;
	q->done_head = q->done_tail = NULL;
	pthread_mutex_unlock(&q->lock);
	if (!list)
		return 0;
	now = mono_ns();
	q->delivering = true;
	while (list) {
		struct blkq_req *r = list;

		list = r->next;
		r->next = r->prev = NULL;
		if (r->flags & BLKQ_WB) {
			write_behind_done(q, r);
			continue;
		}
		if ((r->flags & BLKQ_PART) && !(r = part_finished(r, r->result)))
			continue;
		if (r->op == BLKQ_OP_FLUSH && !r->result && q->wb_error) {
			r->result = q->wb_error;
			q->wb_error = 0;
		}
		q->inflight--;
		account(q, r, now);
		r->done(r); /* may free r or submit */
		n++;
	}
	q->delivering = false;
	return n;
}

unsigned blkq_poll(struct blkq *q)
{
	uint64_t cnt;

	if (q->delivering)
		return 0;
	if (read(q->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		log_ratelimited(LOG_ERR, "blkq: eventfd read: %s", strerror(errno));
	if (!q->nthreads)
		run_inline(q);
	return deliver(q);
}

void blkq_drain(struct blkq *q)
{
	while (q->inflight || q->wb_head) {
		if (q->nthreads) {
			pthread_mutex_lock(&q->lock);
			while (q->unfinished)
				pthread_cond_wait(&q->idle_cv, &q->lock);
			pthread_mutex_unlock(&q->lock);
		}
		if (!blkq_poll(q) && q->delivering)
			break; /* called from a done callback: cannot make progress */
	}
}

void blkq_stop(struct blkq *q)
{
	q->stopped = true;
}

void blkq_get_stats(struct blkq *q, struct blkq_stats *st)
{
	*st = q->stats;
	pthread_mutex_lock(&q->lock);
	st->idle_workers = q->idle_workers;
	pthread_mutex_unlock(&q->lock);
}

void blkq_free(struct blkq *q)
{
	if (!q)
		return;
	q->stopped = true;
	if (q->nr_started || !q->nthreads)
		blkq_drain(q);
	pthread_mutex_lock(&q->lock);
	q->stop_workers = true;
	pthread_cond_broadcast(&q->work_cv);
	pthread_mutex_unlock(&q->lock);
	for (unsigned i = 0; i < q->nr_started; i++)
		pthread_join(q->threads[i], NULL);
	if (q->loop)
		loop_defer_cancel(q->loop, &q->deliver);
	if (q->src_added)
		loop_del(q->loop, &q->src);
	if (q->efd >= 0)
		close(q->efd);
	pthread_cond_destroy(&q->work_cv);
	pthread_cond_destroy(&q->idle_cv);
	pthread_mutex_destroy(&q->lock);
	while (q->wb_spare) {
		struct blkq_wb *w = q->wb_spare;

		q->wb_spare = w->next;
		wb_free(w);
	}
	if (q->split)
		free(q->split->iov);
	free(q->split);
	free(q->threads);
	free(q->inline_bounce);
	free(q);
}
