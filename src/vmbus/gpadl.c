/* GPADLs: assembly from GPADL_HEADER/BODY messages with strict validation,
 * teardown (deferred while referenced), revocation, and device access. */
#include "vmbus/server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct vmbus_gpadl *gpadl_find(struct vmbus_server *srv, uint32_t id)
{
	for (struct vmbus_gpadl *g = srv->gpadls; g; g = g->next)
		if (g->id == id)
			return g;
	return NULL;
}

static void gpadl_free(struct vmbus_gpadl *g)
{
	free(g->rangebuf);
	free(g->ranges);
	free(g->pfns);
	free(g);
}

/* Remove from the server's list and accounting (g->srv stays set). */
static void gpadl_unlink(struct vmbus_server *srv, struct vmbus_gpadl *g)
{
	for (struct vmbus_gpadl **pp = &srv->gpadls; *pp; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	g->next = NULL;
	srv->nr_gpadls--;
	if (g->state == GPADL_COLLECTING)
		srv->nr_pending_gpadls--;
	srv->gpadl_pages -= g->reserved_pages;
	g->reserved_pages = 0;
}

static void send_created(struct vmbus_server *srv, uint32_t relid, uint32_t id, uint32_t status)
{
	struct vmbus_msg_gpadl_created m;

	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_GPADL_CREATED;
	m.child_relid = relid;
	m.gpadl = id;
	m.creation_status = status;
	srv_send(srv, &m, sizeof(m));
}

static void send_torndown(struct vmbus_server *srv, uint32_t id)
{
	struct vmbus_msg_gpadl_torndown m;

	memset(&m, 0, sizeof(m));
	m.hdr.msgtype = VMBUS_MSG_GPADL_TORNDOWN;
	m.gpadl = id;
	srv_send(srv, &m, sizeof(m));
}

/* Refuse a GPADL being collected: tell the guest and forget it. */
static void gpadl_fail(struct vmbus_server *srv, struct vmbus_gpadl *g)
{
	send_created(srv, g->relid, g->id, VMBUS_STATUS_UNSUCCESSFUL);
	gpadl_unlink(srv, g);
	gpadl_free(g);
}

/* Walk the collected range buffer: count PFNs (pfns == NULL) or fill
 * ranges[] and pfns[]. Returns the PFN count or -EPROTO. */
static int64_t parse_ranges(const struct vmbus_gpadl *g, struct gpadl_range *ranges,
			    uint64_t *pfns)
{
	uint32_t off = 0;
	uint64_t total = 0;

	for (uint32_t i = 0; i < g->rangecount; i++) {
		struct vmbus_gpa_range r;
		uint64_t npfn;

		if (g->range_buflen - off < sizeof(r))
			return -EPROTO;
		memcpy(&r, g->rangebuf + off, sizeof(r));
		off += sizeof(r);
		if (r.byte_count == 0 || r.byte_offset >= VMBUS_PAGE_SIZE)
			return -EPROTO;
		npfn = ((uint64_t)r.byte_offset + r.byte_count + VMBUS_PAGE_SIZE - 1) >> VMBUS_PAGE_SHIFT;
		if (npfn > (g->range_buflen - off) / 8)
			return -EPROTO;
		if (ranges) {
			ranges[i] = (struct gpadl_range){ .byte_count = r.byte_count,
							  .byte_offset = r.byte_offset,
							  .first_pfn = (uint32_t)total,
							  .nr_pfns = (uint32_t)npfn };
			memcpy(pfns + total, g->rangebuf + off, npfn * 8);
		}
		off += (uint32_t)npfn * 8;
		total += npfn;
	}
	if (off != g->range_buflen)
		return -EPROTO;
	return (int64_t)total;
}

/* Every PFN must be a page of guest RAM. */
static bool pfns_in_ram(const struct vmbus_server *srv, const uint64_t *pfns, uint32_t n,
			uint64_t *bad)
{
	for (uint32_t i = 0; i < n; i++) {
		if (pfns[i] > (UINT64_MAX >> VMBUS_PAGE_SHIFT) ||
		    !guest_mem_ptr(srv->gm, pfns[i] << VMBUS_PAGE_SHIFT, VMBUS_PAGE_SIZE)) {
			*bad = pfns[i];
			return false;
		}
	}
	return true;
}

static void gpadl_complete(struct vmbus_server *srv, struct vmbus_gpadl *g)
{
	int64_t n = parse_ranges(g, NULL, NULL);
	uint64_t bad = 0;

	if (n <= 0) {
		log_ratelimited(LOG_WARN,
				"vmbus: relid %u: GPADL %#x refused: ranges do not match range_buflen %u",
				g->relid, g->id, g->range_buflen);
		gpadl_fail(srv, g);
		return;
	}
	g->ranges = calloc(g->rangecount, sizeof(*g->ranges));
	g->pfns = calloc((size_t)n, sizeof(*g->pfns));
	if (!g->ranges || !g->pfns) {
		log_ratelimited(LOG_ERR, "vmbus: relid %u: GPADL %#x: out of memory", g->relid, g->id);
		gpadl_fail(srv, g);
		return;
	}
	parse_ranges(g, g->ranges, g->pfns);
	g->nr_ranges = g->rangecount;
	g->nr_pfns = (uint32_t)n;
	if (!pfns_in_ram(srv, g->pfns, g->nr_pfns, &bad)) {
		log_ratelimited(LOG_WARN, "vmbus: relid %u: GPADL %#x refused: PFN %#llx is not guest RAM",
				g->relid, g->id, (unsigned long long)bad);
		gpadl_fail(srv, g);
		return;
	}
	g->len = 0;
	for (uint32_t i = 0; i < g->nr_ranges; i++)
		g->len += g->ranges[i].byte_count;
	free(g->rangebuf);
	g->rangebuf = NULL;
	g->state = GPADL_READY;
	srv->nr_pending_gpadls--;
	srv->gpadl_pages -= g->reserved_pages - g->nr_pfns;
	g->reserved_pages = g->nr_pfns;
	send_created(srv, g->relid, g->id, VMBUS_STATUS_SUCCESS);
}

/* Check a GPADL_HEADER before allocating anything; returns false (after
 * logging) if it must be refused. */
static bool header_ok(struct vmbus_server *srv, const struct vmbus_msg_gpadl_header *h,
		      size_t dlen)
{
	struct vmbus_channel *ch = chan_by_relid(srv, h->child_relid);
	const char *why = NULL;

	if (h->gpadl == 0)
		why = "handle 0";
	else if (!ch || ch->rescinded)
		why = "no such channel";
	else if (h->rangecount == 0 || h->rangecount > VMBUS_GPADL_MAX_RANGES)
		why = "bad range count";
	else if (h->range_buflen % 8 || h->range_buflen < 16u * h->rangecount)
		why = "bad range_buflen";
	else if (dlen == 0 || dlen % 8 || dlen > h->range_buflen)
		why = "bad message length";
	else if (srv->nr_gpadls >= VMBUS_MAX_GPADLS || srv->nr_pending_gpadls >= VMBUS_MAX_PENDING_GPADLS)
		why = "too many GPADLs";
	else if (srv->gpadl_pages + h->range_buflen / 8 > VMBUS_GPADL_MAX_TOTAL_PAGES)
		why = "too many pages in GPADLs";
	if (!why)
		return true;
	log_ratelimited(LOG_WARN,
			"vmbus: relid %u: GPADL %#x refused: %s (rangecount %u, range_buflen %u, %zu bytes)",
			h->child_relid, h->gpadl, why, h->rangecount, h->range_buflen, dlen);
	return false;
}

void gpadl_handle_header(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_gpadl_header *h = msg;
	size_t dlen = len - sizeof(*h);
	struct vmbus_gpadl *g;

	if (gpadl_find(srv, h->gpadl)) {
		/* Not answered: a reply would be taken for the existing one's. */
		log_ratelimited(LOG_WARN, "vmbus: relid %u: duplicate GPADL handle %#x ignored",
				h->child_relid, h->gpadl);
		return;
	}
	if (!header_ok(srv, h, dlen)) {
		send_created(srv, h->child_relid, h->gpadl, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	g = calloc(1, sizeof(*g));
	if (g)
		g->rangebuf = malloc(h->range_buflen);
	if (!g || !g->rangebuf) {
		free(g);
		log_ratelimited(LOG_ERR, "vmbus: GPADL %#x: out of memory", h->gpadl);
		send_created(srv, h->child_relid, h->gpadl, VMBUS_STATUS_UNSUCCESSFUL);
		return;
	}
	g->srv = srv;
	g->id = h->gpadl;
	g->relid = h->child_relid;
	g->state = GPADL_COLLECTING;
	g->range_buflen = h->range_buflen;
	g->rangecount = h->rangecount;
	g->reserved_pages = h->range_buflen / 8;
	memcpy(g->rangebuf, (const uint8_t *)msg + sizeof(*h), dlen);
	g->filled = (uint32_t)dlen;
	g->next = srv->gpadls;
	srv->gpadls = g;
	srv->nr_gpadls++;
	srv->nr_pending_gpadls++;
	srv->gpadl_pages += g->reserved_pages;
	if (g->filled == g->range_buflen)
		gpadl_complete(srv, g);
}

void gpadl_handle_body(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_gpadl_body *b = msg;
	size_t dlen = len - sizeof(*b);
	struct vmbus_gpadl *g = gpadl_find(srv, b->gpadl);

	if (!g || g->state != GPADL_COLLECTING) {
		log_ratelimited(LOG_WARN, "vmbus: GPADL_BODY for GPADL %#x without a pending GPADL_HEADER",
				b->gpadl);
		return;
	}
	if (dlen == 0 || dlen % 8 || dlen > g->range_buflen - g->filled) {
		log_ratelimited(LOG_WARN,
				"vmbus: relid %u: GPADL %#x refused: body of %zu bytes with %u of %u expected",
				g->relid, g->id, dlen, g->range_buflen - g->filled, g->range_buflen);
		gpadl_fail(srv, g);
		return;
	}
	memcpy(g->rangebuf + g->filled, (const uint8_t *)msg + sizeof(*b), dlen);
	g->filled += (uint32_t)dlen;
	if (g->filled == g->range_buflen)
		gpadl_complete(srv, g);
}

void gpadl_handle_teardown(struct vmbus_server *srv, const void *msg, size_t len)
{
	const struct vmbus_msg_gpadl_teardown *m = msg;
	struct vmbus_gpadl *g = gpadl_find(srv, m->gpadl);

	if (!g) {
		log_ratelimited(LOG_WARN, "vmbus: relid %u: teardown of unknown GPADL %#x",
				m->child_relid, m->gpadl);
		return;
	}
	if (g->relid != m->child_relid) {
		log_ratelimited(LOG_WARN, "vmbus: teardown of GPADL %#x names relid %u, created for %u",
				m->gpadl, m->child_relid, g->relid);
		return;
	}
	if (g->state == GPADL_TEARDOWN) {
		log_ratelimited(LOG_WARN, "vmbus: relid %u: GPADL %#x is already being torn down",
				g->relid, g->id);
		return;
	}
	if (g->state == GPADL_READY && g->users) {
		/* Still mapped (e.g. the ring of an open channel): answer once the
		 * last user lets go. */
		log_ratelimited(LOG_INFO, "vmbus: relid %u: GPADL %#x torn down while in use; deferred",
				g->relid, g->id);
		g->state = GPADL_TEARDOWN;
		return;
	}
	gpadl_unlink(srv, g);
	gpadl_free(g);
	send_torndown(srv, m->gpadl);
}

void gpadl_use(struct vmbus_gpadl *g)
{
	g->users++;
}

void gpadl_unuse(struct vmbus_gpadl *g)
{
	struct vmbus_server *srv = g->srv;
	uint32_t id = g->id;

	if (--g->users)
		return;
	if (!srv) { /* revoked while referenced */
		gpadl_free(g);
		return;
	}
	if (g->state == GPADL_TEARDOWN) {
		gpadl_unlink(srv, g);
		gpadl_free(g);
		send_torndown(srv, id);
	}
}

void gpadl_revoke_all(struct vmbus_server *srv)
{
	while (srv->gpadls) {
		struct vmbus_gpadl *g = srv->gpadls;

		gpadl_unlink(srv, g);
		g->srv = NULL;
		if (!g->users)
			gpadl_free(g);
	}
}

/* ---- device access ---- */

struct vmbus_gpadl *vmbus_gpadl_get(struct vmbus_channel *ch, uint32_t id)
{
	struct vmbus_gpadl *g = gpadl_find(ch->srv, id);

	if (!g || g->state != GPADL_READY)
		return NULL;
	gpadl_use(g);
	return g;
}

void vmbus_gpadl_put(struct vmbus_gpadl *g)
{
	if (g)
		gpadl_unuse(g);
}

uint64_t vmbus_gpadl_len(const struct vmbus_gpadl *g)
{
	return g->len;
}

/* Host pointer and length of the longest run at GPADL byte `off` (< len)
 * that stays in one page, at most `want` bytes. */
static uint8_t *gpadl_chunk(const struct vmbus_gpadl *g, uint64_t off, uint64_t want,
			    uint32_t *n)
{
	for (uint32_t i = 0; i < g->nr_ranges; i++) {
		const struct gpadl_range *r = &g->ranges[i];
		uint64_t pos, in_page, avail;

		if (off >= r->byte_count) {
			off -= r->byte_count;
			continue;
		}
		pos = r->byte_offset + off;
		in_page = pos & (VMBUS_PAGE_SIZE - 1);
		avail = VMBUS_PAGE_SIZE - in_page;
		if (avail > r->byte_count - off)
			avail = r->byte_count - off;
		if (avail > want)
			avail = want;
		*n = (uint32_t)avail;
		return guest_mem_ptr(g->srv->gm,
				     (g->pfns[r->first_pfn + (pos >> VMBUS_PAGE_SHIFT)] << VMBUS_PAGE_SHIFT) +
					     in_page,
				     avail);
	}
	return NULL;
}

static int gpadl_copy(const struct vmbus_gpadl *g, uint64_t off, void *buf, size_t len,
		      bool to_guest)
{
	uint8_t *b = buf;

	if (!g->srv)
		return -ENODEV;
	if (off > g->len || len > g->len - off)
		return -EINVAL;
	while (len) {
		uint32_t n = 0;
		uint8_t *p = gpadl_chunk(g, off, len, &n);

		if (!p || !n)
			return -EFAULT;
		if (to_guest)
			memcpy(p, b, n);
		else
			memcpy(b, p, n);
		b += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vmbus_gpadl_read(const struct vmbus_gpadl *g, uint64_t off, void *dst, size_t len)
{
	return gpadl_copy(g, off, dst, len, false);
}

int vmbus_gpadl_write(const struct vmbus_gpadl *g, uint64_t off, const void *src, size_t len)
{
	return gpadl_copy(g, off, (void *)src, len, true);
}
