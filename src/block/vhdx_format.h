/* VHDX on-disk format, from Microsoft's [MS-VHDX] "Virtual Hard Disk v2
 * (VHDX) File Format". Every integer is little-endian; GUIDs are stored in
 * Microsoft's mixed-endian layout (struct blk_guid). */
#ifndef HVMM_VHDX_FORMAT_H
#define HVMM_VHDX_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "block/block_internal.h"

/* ---- file layout (§2.1): the first MiB ---- */

#define VHDX_FILE_ID_OFF (0)
#define VHDX_HEADER1_OFF (64 * KiB)
#define VHDX_HEADER2_OFF (128 * KiB)
#define VHDX_REGION1_OFF (192 * KiB)
#define VHDX_REGION2_OFF (256 * KiB)
#define VHDX_REGION_SIZE (64 * KiB)
#define VHDX_HEADER_SECTION (1 * MiB)
#define VHDX_ALIGN (1 * MiB) /* every region, log and block */

/* ---- file type identifier (§2.2.1) ---- */

#define VHDX_FILE_SIG 0x656C696678646876ULL /* "vhdxfile" */

struct vhdx_file_id {
	uint64_t signature;
	uint16_t creator[256]; /* UTF-16LE, informational */
} __attribute__((packed));

_Static_assert(sizeof(struct vhdx_file_id) == 520, "VHDX file identifier");

/* ---- headers (§2.2.2) ---- */

#define VHDX_HEADER_SIG 0x64616568U /* "head" */
#define VHDX_HEADER_SIZE (4 * KiB)  /* checksummed part of the 64 KiB slot */
#define VHDX_LOG_VERSION 0
#define VHDX_VERSION 1

struct vhdx_header {
	uint32_t signature;
	uint32_t checksum;      /* CRC-32C over 4 KiB, this field zero */
	uint64_t sequence;
	struct blk_guid file_write_guid;
	struct blk_guid data_write_guid;
	struct blk_guid log_guid; /* zero: the log is empty */
	uint16_t log_version;
	uint16_t version;
	uint32_t log_length;
	uint64_t log_offset;
	uint8_t reserved[4016];
} __attribute__((packed));

_Static_assert(sizeof(struct vhdx_header) == 4096, "VHDX header");
_Static_assert(offsetof(struct vhdx_header, sequence) == 8, "header sequence");
_Static_assert(offsetof(struct vhdx_header, file_write_guid) == 16, "header file write guid");
_Static_assert(offsetof(struct vhdx_header, data_write_guid) == 32, "header data write guid");
_Static_assert(offsetof(struct vhdx_header, log_guid) == 48, "header log guid");
_Static_assert(offsetof(struct vhdx_header, log_version) == 64, "header log version");
_Static_assert(offsetof(struct vhdx_header, log_length) == 68, "header log length");
_Static_assert(offsetof(struct vhdx_header, log_offset) == 72, "header log offset");

/* ---- region table (§2.2.3) ---- */

#define VHDX_REGION_SIG 0x69676572U /* "regi" */
#define VHDX_REGION_MAX_ENTRIES 2047
#define VHDX_REGION_REQUIRED 0x1

struct vhdx_region_header {
	uint32_t signature;
	uint32_t checksum;   /* CRC-32C over 64 KiB, this field zero */
	uint32_t entry_count;
	uint32_t reserved;
} __attribute__((packed));

struct vhdx_region_entry {
	struct blk_guid guid;
	uint64_t file_offset;
	uint32_t length;
	uint32_t flags;      /* bit 0: required */
} __attribute__((packed));

_Static_assert(sizeof(struct vhdx_region_header) == 16, "VHDX region table header");
_Static_assert(sizeof(struct vhdx_region_entry) == 32, "VHDX region table entry");
_Static_assert(offsetof(struct vhdx_region_entry, file_offset) == 16, "region offset");
_Static_assert(offsetof(struct vhdx_region_entry, length) == 24, "region length");

#define VHDX_REGION_BAT BLK_GUID(0x2dc27766, 0xf623, 0x4200, 0x9d64, 0x115e9bfd4a08ULL)
#define VHDX_REGION_METADATA BLK_GUID(0x8b7ca206, 0x4790, 0x4b9a, 0xb8fe, 0x575f050f886eULL)

/* ---- metadata region (§2.6) ---- */

#define VHDX_METADATA_SIG 0x617461646174656DULL /* "metadata" */
#define VHDX_METADATA_TABLE_SIZE (64 * KiB)
#define VHDX_METADATA_MAX_ENTRIES 2047
#define VHDX_METADATA_MAX_ITEM (1 * MiB)

#define VHDX_META_IS_USER 0x1
#define VHDX_META_IS_VIRTUAL_DISK 0x2
#define VHDX_META_IS_REQUIRED 0x4

struct vhdx_metadata_header {
	uint64_t signature;
	uint16_t reserved;
	uint16_t entry_count;
	uint32_t reserved2[5];
} __attribute__((packed));

struct vhdx_metadata_entry {
	struct blk_guid item_id;
	uint32_t offset;     /* from the region's start; >= 64 KiB */
	uint32_t length;
	uint32_t flags;
	uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct vhdx_metadata_header) == 32, "VHDX metadata table header");
_Static_assert(sizeof(struct vhdx_metadata_entry) == 32, "VHDX metadata table entry");
_Static_assert(offsetof(struct vhdx_metadata_entry, offset) == 16, "metadata item offset");
_Static_assert(offsetof(struct vhdx_metadata_entry, flags) == 24, "metadata item flags");

#define VHDX_META_FILE_PARAMETERS BLK_GUID(0xcaa16737, 0xfa36, 0x4d43, 0xb3b6, 0x33f0aa44e76bULL)
#define VHDX_META_VIRTUAL_DISK_SIZE BLK_GUID(0x2fa54224, 0xcd1b, 0x4876, 0xb211, 0x5dbed83bf4b8ULL)
#define VHDX_META_PAGE83 BLK_GUID(0xbeca12ab, 0xb2e6, 0x4523, 0x93ef, 0xc309e000c746ULL)
#define VHDX_META_LOGICAL_SECTOR BLK_GUID(0x8141bf1d, 0xa96f, 0x4709, 0xba47, 0xf233a8faab5fULL)
#define VHDX_META_PHYSICAL_SECTOR BLK_GUID(0xcda348c7, 0x445d, 0x4471, 0x9cc9, 0xe9885251c556ULL)
#define VHDX_META_PARENT_LOCATOR BLK_GUID(0xa8d35f2d, 0xb30b, 0x454d, 0xabf7, 0xd3d84834ab0cULL)

struct vhdx_file_parameters {
	uint32_t block_size;
	uint32_t flags;
} __attribute__((packed));

_Static_assert(sizeof(struct vhdx_file_parameters) == 8, "VHDX file parameters");

#define VHDX_PARAM_LEAVE_BLOCKS_ALLOCATED 0x1
#define VHDX_PARAM_HAS_PARENT 0x2

#define VHDX_MIN_BLOCK (1U << 20)
#define VHDX_MAX_BLOCK (256U << 20)

/* ---- parent locator (§2.6.2.6) ---- */

#define VHDX_LOCATOR_TYPE BLK_GUID(0xb04aefb7, 0xd19e, 0x4a81, 0xb789, 0x25b8e9445913ULL)
#define VHDX_LOCATOR_MAX_ENTRIES 256

struct vhdx_locator_header {
	struct blk_guid locator_type;
	uint16_t reserved;
	uint16_t key_value_count;
} __attribute__((packed));

struct vhdx_locator_entry {
	uint32_t key_offset;   /* from the item's start */
	uint32_t value_offset;
	uint16_t key_length;   /* bytes of UTF-16LE, no NUL */
	uint16_t value_length;
} __attribute__((packed));

_Static_assert(sizeof(struct vhdx_locator_header) == 20, "VHDX parent locator header");
_Static_assert(sizeof(struct vhdx_locator_entry) == 12, "VHDX parent locator entry");

/* ---- log (§2.3) ---- */

#define VHDX_LOG_SECTOR (4 * KiB)
#define VHDX_LOG_ENTRY_SIG 0x65676F6CU /* "loge" */
#define VHDX_LOG_DESC_SIG 0x63736564U  /* "desc" */
#define VHDX_LOG_ZERO_SIG 0x6F72657AU  /* "zero" */
#define VHDX_LOG_DATA_SIG 0x61746164U  /* "data" */

struct vhdx_log_entry_header {
	uint32_t signature;
	uint32_t checksum;       /* CRC-32C over the whole entry, this field zero */
	uint32_t entry_length;
	uint32_t tail;
	uint64_t sequence;
	uint32_t descriptor_count;
	uint32_t reserved;
	struct blk_guid log_guid;
	uint64_t flushed_file_offset;
	uint64_t last_file_offset;
} __attribute__((packed));

/* Data and zero descriptors share one layout. */
struct vhdx_log_descriptor {
	uint32_t signature;
	uint32_t trailing_bytes;  /* data: last 4 bytes of the sector; zero: reserved */
	uint64_t leading_bytes;   /* data: first 8 bytes; zero: the zero length */
	uint64_t file_offset;
	uint64_t sequence;
} __attribute__((packed));

struct vhdx_log_data_sector {
	uint32_t signature;
	uint32_t sequence_high;
	uint8_t data[4084];
	uint32_t sequence_low;
} __attribute__((packed));

_Static_assert(sizeof(struct vhdx_log_entry_header) == 64, "VHDX log entry header");
_Static_assert(offsetof(struct vhdx_log_entry_header, tail) == 12, "log entry tail");
_Static_assert(offsetof(struct vhdx_log_entry_header, log_guid) == 32, "log entry guid");
_Static_assert(offsetof(struct vhdx_log_entry_header, last_file_offset) == 56, "log entry last offset");
_Static_assert(sizeof(struct vhdx_log_descriptor) == 32, "VHDX log descriptor");
_Static_assert(offsetof(struct vhdx_log_descriptor, file_offset) == 16, "descriptor offset");
_Static_assert(sizeof(struct vhdx_log_data_sector) == 4096, "VHDX log data sector");

/* ---- BAT (§2.5) ---- */

#define VHDX_BAT_STATE_MASK 0x7ULL
#define VHDX_BAT_OFFSET_SHIFT 20
#define VHDX_BAT_OFFSET_MASK (~0ULL << VHDX_BAT_OFFSET_SHIFT)

enum vhdx_payload_state {
	VHDX_PAYLOAD_NOT_PRESENT = 0,
	VHDX_PAYLOAD_UNDEFINED = 1,
	VHDX_PAYLOAD_ZERO = 2,
	VHDX_PAYLOAD_UNMAPPED = 3,
	VHDX_PAYLOAD_UNMAPPED_V095 = 5, /* the 0.95 draft's value, still read */
	VHDX_PAYLOAD_FULLY_PRESENT = 6,
	VHDX_PAYLOAD_PARTIALLY_PRESENT = 7,
};

enum vhdx_sb_state {
	VHDX_SB_NOT_PRESENT = 0,
	VHDX_SB_PRESENT = 6,
};

#define VHDX_SECTORS_PER_BITMAP (1ULL << 23) /* sectors one 1 MiB bitmap block covers */
#define VHDX_BITMAP_BLOCK (1 * MiB)

#endif
