#include "core/guest_mem.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* mmap aligns to 4 KiB only (before Linux 6.7 even for large anonymous
 * mappings): a mapping that starts inside a 2 MiB page puts every
 * transparent huge page across two 2 MiB guest frames, so KVM maps the
 * whole guest with 4 KiB entries. Over-allocate by the alignment and trim. */
uint8_t *guest_mem_map(uint64_t size)
{
	uint64_t len = size + GUEST_MEM_ALIGN;
	uint8_t *raw;

	if (size == 0 || len < size) {
		errno = EINVAL;
		return NULL;
	}
	raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uintptr_t start = ((uintptr_t)raw + GUEST_MEM_ALIGN - 1) & ~(uintptr_t)(GUEST_MEM_ALIGN - 1);
	size_t head = start - (uintptr_t)raw, tail = len - head - size;

	if (head)
		munmap(raw, head);
	if (tail)
		munmap((uint8_t *)start + size, tail);
	madvise((void *)start, size, MADV_HUGEPAGE);
	madvise((void *)start, size, MADV_DONTFORK);
	return (uint8_t *)start;
}

void guest_mem_layout(struct guest_mem *gm, uint8_t *base, uint64_t size)
{
	uint64_t low = size < GUEST_MEM_LOW_END ? size : GUEST_MEM_LOW_END;

	memset(gm, 0, sizeof(*gm));
	gm->base = base;
	gm->total = size;
	gm->range[0] = (struct guest_mem_range){ .gpa = 0, .size = low, .hva = base };
	gm->nr_ranges = 1;
	if (size > low) {
		gm->range[1] = (struct guest_mem_range){
			.gpa = GUEST_MEM_HIGH_START, .size = size - low, .hva = base + low };
		gm->nr_ranges = 2;
	}
}

void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < gm->nr_ranges; i++) {
		const struct guest_mem_range *r = &gm->range[i];
		/* Written so that no addition can overflow. */
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int guest_mem_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len)
{
	const void *p = guest_mem_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int guest_mem_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len)
{
	void *p = guest_mem_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}
