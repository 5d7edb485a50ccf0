/* Guest physical memory: one host mapping, split into RAM ranges around the
 * 32-bit MMIO hole. Every access a guest value steers goes through
 * guest_mem_ptr(), which refuses a range that is not entirely RAM. */
#ifndef HVMM_GUEST_MEM_H
#define HVMM_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_RANGES 2

struct guest_mem_range {
	uint64_t gpa;  /* guest physical start */
	uint64_t size; /* bytes */
	uint8_t *hva;  /* host address of gpa */
};

struct guest_mem {
	uint8_t *base;      /* the single host mapping */
	uint64_t total;     /* bytes of RAM */
	unsigned nr_ranges;
	struct guest_mem_range range[GUEST_MEM_MAX_RANGES];
};

/* Start of the MMIO hole below 4 GiB: RAM beyond this goes above 4 GiB. */
#define GUEST_MEM_LOW_END 0xC0000000ULL
#define GUEST_MEM_HIGH_START 0x100000000ULL

/* KVM maps guest memory with 2 MiB nested page table entries only where
 * the host address and the guest physical address agree modulo 2 MiB. */
#define GUEST_MEM_ALIGN (2ULL << 20)

/* `size` bytes of zeroed anonymous memory for guest RAM, starting at a
 * multiple of GUEST_MEM_ALIGN, advised for transparent huge pages and kept
 * out of forked children; NULL with errno set on failure. munmap(p, size)
 * releases it. */
uint8_t *guest_mem_map(uint64_t size);

/* Lay out `size` bytes of RAM at `base` (which must be `size` bytes long). */
void guest_mem_layout(struct guest_mem *gm, uint8_t *base, uint64_t size);

/* Host pointer for [gpa, gpa+len) or NULL if any byte of it is not RAM. */
void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Copy to/from guest RAM; return 0 or -EFAULT when the range is not RAM. */
int guest_mem_read(const struct guest_mem *gm, uint64_t gpa, void *dst, size_t len);
int guest_mem_write(const struct guest_mem *gm, uint64_t gpa, const void *src, size_t len);

#endif
