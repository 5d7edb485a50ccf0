/* Legacy VHD (Virtual PC / Hyper-V generation 1) on-disk format, from
 * Microsoft's "Virtual Hard Disk Image Format Specification" 1.0. Every
 * integer is big-endian. */
#ifndef HVMM_VHD_FORMAT_H
#define HVMM_VHD_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define VHD_SECTOR 512

/* ---- footer: the last 512 bytes; dynamic disks keep a copy at 0 ---- */

#define VHD_COOKIE "conectix"
#define VHD_FEATURES_RESERVED 0x00000002
#define VHD_VERSION 0x00010000
#define VHD_FIXED_DATA_OFFSET 0xFFFFFFFFFFFFFFFFULL
#define VHD_TIME_EPOCH 946684800 /* 2000-01-01 00:00:00 UTC in Unix time */
#define VHD_HOST_OS_WINDOWS 0x5769326B /* "Wi2k" */

enum vhd_disk_type {
	VHD_TYPE_NONE = 0,
	VHD_TYPE_FIXED = 2,
	VHD_TYPE_DYNAMIC = 3,
	VHD_TYPE_DIFF = 4,
};

struct vhd_footer {
	char cookie[8];
	uint32_t features;
	uint32_t version;
	uint64_t data_offset;   /* the dynamic header; all ones when fixed */
	uint32_t timestamp;     /* seconds since 2000-01-01 UTC */
	char creator_app[4];
	uint32_t creator_version;
	uint32_t creator_os;
	uint64_t original_size;
	uint64_t current_size;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors_per_track;
	uint32_t disk_type;
	uint32_t checksum;      /* one's complement of the byte sum, this field zero */
	uint8_t unique_id[16];
	uint8_t saved_state;
	uint8_t reserved[427];
} __attribute__((packed));

_Static_assert(sizeof(struct vhd_footer) == 512, "VHD footer");
_Static_assert(offsetof(struct vhd_footer, data_offset) == 16, "footer data offset");
_Static_assert(offsetof(struct vhd_footer, current_size) == 48, "footer current size");
_Static_assert(offsetof(struct vhd_footer, cylinders) == 56, "footer geometry");
_Static_assert(offsetof(struct vhd_footer, disk_type) == 60, "footer disk type");
_Static_assert(offsetof(struct vhd_footer, checksum) == 64, "footer checksum");
_Static_assert(offsetof(struct vhd_footer, unique_id) == 68, "footer unique id");
_Static_assert(offsetof(struct vhd_footer, saved_state) == 84, "footer saved state");

/* ---- dynamic disk header (1024 bytes at footer.data_offset) ---- */

#define VHD_DYN_COOKIE "cxsparse"
#define VHD_DYN_VERSION 0x00010000
#define VHD_BAT_UNUSED 0xFFFFFFFFU

/* Parent locator platform codes. */
#define VHD_PLAT_NONE 0
#define VHD_PLAT_W2RU 0x57327275 /* "W2ru": relative path, UTF-16LE */
#define VHD_PLAT_W2KU 0x57326B75 /* "W2ku": absolute path, UTF-16LE */

struct vhd_parent_locator {
	uint32_t platform_code;
	uint32_t data_space;  /* sectors reserved (some writers store bytes) */
	uint32_t data_length; /* bytes */
	uint32_t reserved;
	uint64_t data_offset; /* absolute file offset */
} __attribute__((packed));

_Static_assert(sizeof(struct vhd_parent_locator) == 24, "VHD parent locator");

struct vhd_dyn_header {
	char cookie[8];
	uint64_t data_offset;   /* unused: all ones */
	uint64_t table_offset;  /* the BAT */
	uint32_t header_version;
	uint32_t max_table_entries;
	uint32_t block_size;
	uint32_t checksum;
	uint8_t parent_unique_id[16];
	uint32_t parent_timestamp;
	uint32_t reserved1;
	uint8_t parent_name[512]; /* UTF-16BE */
	struct vhd_parent_locator locators[8];
	uint8_t reserved2[256];
} __attribute__((packed));

_Static_assert(sizeof(struct vhd_dyn_header) == 1024, "VHD dynamic header");
_Static_assert(offsetof(struct vhd_dyn_header, table_offset) == 16, "dyn table offset");
_Static_assert(offsetof(struct vhd_dyn_header, max_table_entries) == 28, "dyn max entries");
_Static_assert(offsetof(struct vhd_dyn_header, block_size) == 32, "dyn block size");
_Static_assert(offsetof(struct vhd_dyn_header, checksum) == 36, "dyn checksum");
_Static_assert(offsetof(struct vhd_dyn_header, parent_unique_id) == 40, "dyn parent id");
_Static_assert(offsetof(struct vhd_dyn_header, parent_name) == 64, "dyn parent name");
_Static_assert(offsetof(struct vhd_dyn_header, locators) == 576, "dyn locators");

/* ---- geometry ---- */

#define VHD_CHS_MAX_C 65535
#define VHD_CHS_MAX_H 16
#define VHD_CHS_MAX_S 255
#define VHD_CHS_MAX_SECTORS (65535ULL * 16 * 255)

#endif
