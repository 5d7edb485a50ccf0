/* SCSI wire formats for a direct-access block device: operation codes,
 * status, sense keys and additional sense codes, the CDBs the disk
 * decodes, fixed-format sense data, INQUIRY data and VPD pages, mode pages,
 * READ CAPACITY and REPORT LUNS data and the UNMAP parameter list.
 *
 * SCSI is big-endian: every multi-byte field is a byte array, read and
 * written with the scsi_get_be / scsi_put_be helpers. Layouts follow SPC-4
 * and SBC-3; this file is written from those descriptions. */
#ifndef HVMM_SCSI_DEFS_H
#define HVMM_SCSI_DEFS_H

#include <stddef.h>
#include <stdint.h>

#define SCSI_PACKED __attribute__((packed))
#define SCSI_CHECK(type, size) _Static_assert(sizeof(type) == (size), #type " size")
#define SCSI_CHECK_OFF(type, field, off) \
	_Static_assert(offsetof(type, field) == (off), #type "." #field " offset")

/* ---- big-endian helpers ---------------------------------------------------- */

static inline uint16_t scsi_get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t scsi_get_be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static inline uint32_t scsi_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t scsi_get_be64(const uint8_t *p)
{
	return (uint64_t)scsi_get_be32(p) << 32 | scsi_get_be32(p + 4);
}

static inline void scsi_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void scsi_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void scsi_put_be64(uint8_t *p, uint64_t v)
{
	scsi_put_be32(p, (uint32_t)(v >> 32));
	scsi_put_be32(p + 4, (uint32_t)v);
}

/* ---- operation codes ------------------------------------------------------- */

enum scsi_opcode {
	SCSI_TEST_UNIT_READY = 0x00,
	SCSI_REQUEST_SENSE = 0x03,
	SCSI_FORMAT_UNIT = 0x04,
	SCSI_READ_6 = 0x08,
	SCSI_WRITE_6 = 0x0a,
	SCSI_INQUIRY = 0x12,
	SCSI_MODE_SELECT_6 = 0x15,
	SCSI_RESERVE_6 = 0x16,
	SCSI_RELEASE_6 = 0x17,
	SCSI_MODE_SENSE_6 = 0x1a,
	SCSI_START_STOP_UNIT = 0x1b,
	SCSI_SEND_DIAGNOSTIC = 0x1d,
	SCSI_PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1e,
	SCSI_READ_CAPACITY_10 = 0x25,
	SCSI_READ_10 = 0x28,
	SCSI_WRITE_10 = 0x2a,
	SCSI_WRITE_AND_VERIFY_10 = 0x2e,
	SCSI_VERIFY_10 = 0x2f,
	SCSI_SYNCHRONIZE_CACHE_10 = 0x35,
	SCSI_WRITE_SAME_10 = 0x41,
	SCSI_UNMAP = 0x42,
	SCSI_MODE_SELECT_10 = 0x55,
	SCSI_RESERVE_10 = 0x56,
	SCSI_RELEASE_10 = 0x57,
	SCSI_MODE_SENSE_10 = 0x5a,
	SCSI_PERSISTENT_RESERVE_IN = 0x5e,
	SCSI_PERSISTENT_RESERVE_OUT = 0x5f,
	SCSI_ATA_16 = 0x85,
	SCSI_READ_16 = 0x88,
	SCSI_WRITE_16 = 0x8a,
	SCSI_VERIFY_16 = 0x8f,
	SCSI_SYNCHRONIZE_CACHE_16 = 0x91,
	SCSI_WRITE_SAME_16 = 0x93,
	SCSI_SERVICE_ACTION_IN_16 = 0x9e,
	SCSI_REPORT_LUNS = 0xa0,
	SCSI_ATA_12 = 0xa1,
	SCSI_MAINTENANCE_IN = 0xa3,
	SCSI_READ_12 = 0xa8,
	SCSI_WRITE_12 = 0xaa,
	SCSI_VERIFY_12 = 0xaf,
};

/* SERVICE ACTION IN(16) service actions (CDB byte 1, bits 4..0). */
#define SCSI_SAI_READ_CAPACITY_16 0x10
#define SCSI_SAI_GET_LBA_STATUS 0x12

/* Length of a CDB by its operation code group (bits 7..5); 0 when the
 * group has no fixed length (variable-length and vendor-specific). */
static inline unsigned scsi_cdb_group_len(uint8_t opcode)
{
	switch (opcode >> 5) {
	case 0:
		return 6;
	case 1:
	case 2:
		return 10;
	case 4:
		return 16;
	case 5:
		return 12;
	default:
		return 0;
	}
}

/* ---- status, sense keys, additional sense codes ---------------------------- */

enum scsi_status {
	SCSI_STATUS_GOOD = 0x00,
	SCSI_STATUS_CHECK_CONDITION = 0x02,
	SCSI_STATUS_BUSY = 0x08,
	SCSI_STATUS_RESERVATION_CONFLICT = 0x18,
	SCSI_STATUS_TASK_SET_FULL = 0x28,
};

enum scsi_sense_key {
	SCSI_SK_NO_SENSE = 0x0,
	SCSI_SK_RECOVERED_ERROR = 0x1,
	SCSI_SK_NOT_READY = 0x2,
	SCSI_SK_MEDIUM_ERROR = 0x3,
	SCSI_SK_HARDWARE_ERROR = 0x4,
	SCSI_SK_ILLEGAL_REQUEST = 0x5,
	SCSI_SK_UNIT_ATTENTION = 0x6,
	SCSI_SK_DATA_PROTECT = 0x7,
	SCSI_SK_ABORTED_COMMAND = 0xb,
};

/* Additional sense code and qualifier, as (asc << 8 | ascq). */
#define SCSI_ASC(asc, ascq) ((uint16_t)((asc) << 8 | (ascq)))
#define SCSI_ASC_NO_ADDITIONAL_SENSE SCSI_ASC(0x00, 0x00)
#define SCSI_ASC_WRITE_ERROR SCSI_ASC(0x0c, 0x00)
#define SCSI_ASC_UNRECOVERED_READ_ERROR SCSI_ASC(0x11, 0x00)
#define SCSI_ASC_PARAMETER_LIST_LENGTH_ERROR SCSI_ASC(0x1a, 0x00)
#define SCSI_ASC_INVALID_COMMAND_OPCODE SCSI_ASC(0x20, 0x00)
#define SCSI_ASC_LBA_OUT_OF_RANGE SCSI_ASC(0x21, 0x00)
#define SCSI_ASC_INVALID_FIELD_IN_CDB SCSI_ASC(0x24, 0x00)
#define SCSI_ASC_LU_NOT_SUPPORTED SCSI_ASC(0x25, 0x00)
#define SCSI_ASC_INVALID_FIELD_IN_PARAM_LIST SCSI_ASC(0x26, 0x00)
#define SCSI_ASC_WRITE_PROTECTED SCSI_ASC(0x27, 0x00)
#define SCSI_ASC_SPACE_ALLOC_FAILED_WRITE_PROTECT SCSI_ASC(0x27, 0x07)
#define SCSI_ASC_POWER_ON_RESET SCSI_ASC(0x29, 0x00)
#define SCSI_ASC_CAPACITY_DATA_CHANGED SCSI_ASC(0x2a, 0x09)
#define SCSI_ASC_SAVING_PARAMS_NOT_SUPPORTED SCSI_ASC(0x39, 0x00)
#define SCSI_ASC_REPORTED_LUNS_DATA_CHANGED SCSI_ASC(0x3f, 0x0e)
#define SCSI_ASC_INTERNAL_TARGET_FAILURE SCSI_ASC(0x44, 0x00)

/* ---- fixed-format sense data (SPC-4 4.5.3) --------------------------------- */

#define SCSI_SENSE_CURRENT_FIXED 0x70
#define SCSI_SENSE_DESCRIPTOR_CURRENT 0x72

struct scsi_sense_fixed {
	uint8_t response_code; /* bit7 VALID, 6..0 0x70 current / 0x71 deferred */
	uint8_t obsolete;
	uint8_t key;           /* bits 3..0 sense key; bit5 ILI, bit6 EOM, bit7 FILEMARK */
	uint8_t information[4];
	uint8_t additional_len; /* bytes after this one: 10 */
	uint8_t cmd_specific[4];
	uint8_t asc;
	uint8_t ascq;
	uint8_t fru_code;
	uint8_t sense_key_specific[3]; /* bit7 of [0] SKSV */
} SCSI_PACKED;
SCSI_CHECK(struct scsi_sense_fixed, 18);
SCSI_CHECK_OFF(struct scsi_sense_fixed, additional_len, 7);
SCSI_CHECK_OFF(struct scsi_sense_fixed, asc, 12);
SCSI_CHECK_OFF(struct scsi_sense_fixed, ascq, 13);

#define SCSI_SENSE_LEN 18u

/* ---- CDBs ------------------------------------------------------------------ */

/* Byte 1 flags of READ/WRITE(10/12/16). */
#define SCSI_RW_FUA 0x08
#define SCSI_RW_DPO 0x10
#define SCSI_RW_PROTECT_MASK 0xe0 /* RDPROTECT / WRPROTECT */

struct scsi_cdb_rw6 {
	uint8_t opcode;
	uint8_t lba[3]; /* bits 4..0 of lba[0] are the top LBA bits */
	uint8_t length; /* 0 = 256 blocks */
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_rw6, 6);

struct scsi_cdb_rw10 {
	uint8_t opcode;
	uint8_t flags;
	uint8_t lba[4];
	uint8_t group;
	uint8_t length[2];
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_rw10, 10);
SCSI_CHECK_OFF(struct scsi_cdb_rw10, length, 7);

struct scsi_cdb_rw12 {
	uint8_t opcode;
	uint8_t flags;
	uint8_t lba[4];
	uint8_t length[4];
	uint8_t group;
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_rw12, 12);

struct scsi_cdb_rw16 {
	uint8_t opcode;
	uint8_t flags;
	uint8_t lba[8];
	uint8_t length[4];
	uint8_t group;
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_rw16, 16);
SCSI_CHECK_OFF(struct scsi_cdb_rw16, length, 10);

/* WRITE SAME(10/16) byte 1. */
#define SCSI_WS_UNMAP 0x08
#define SCSI_WS_ANCHOR 0x10
#define SCSI_WS_NDOB 0x01

/* VERIFY byte 1: BYTCHK bits 2..1. */
#define SCSI_VERIFY_BYTCHK_MASK 0x06

struct scsi_cdb_inquiry {
	uint8_t opcode;
	uint8_t flags; /* bit0 EVPD, bit1 CMDDT (obsolete) */
	uint8_t page;
	uint8_t alloc_len[2];
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_inquiry, 6);
#define SCSI_INQ_EVPD 0x01
#define SCSI_INQ_CMDDT 0x02

struct scsi_cdb_mode_sense6 {
	uint8_t opcode;
	uint8_t flags;   /* bit3 DBD */
	uint8_t page;    /* bits 7..6 PC, 5..0 page code */
	uint8_t subpage;
	uint8_t alloc_len;
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_mode_sense6, 6);

struct scsi_cdb_mode_sense10 {
	uint8_t opcode;
	uint8_t flags;   /* bit3 DBD, bit4 LLBAA */
	uint8_t page;
	uint8_t subpage;
	uint8_t reserved[3];
	uint8_t alloc_len[2];
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_mode_sense10, 10);
#define SCSI_MS_DBD 0x08
#define SCSI_MS_LLBAA 0x10
#define SCSI_MS_PC_CURRENT 0
#define SCSI_MS_PC_CHANGEABLE 1
#define SCSI_MS_PC_DEFAULT 2
#define SCSI_MS_PC_SAVED 3

struct scsi_cdb_read_capacity10 {
	uint8_t opcode;
	uint8_t reserved1;
	uint8_t lba[4];
	uint8_t reserved2[2];
	uint8_t pmi; /* bit0 PMI */
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_read_capacity10, 10);

struct scsi_cdb_service_action_in16 {
	uint8_t opcode;
	uint8_t service_action; /* bits 4..0 */
	uint8_t lba[8];
	uint8_t alloc_len[4];
	uint8_t pmi;
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_service_action_in16, 16);

struct scsi_cdb_report_luns {
	uint8_t opcode;
	uint8_t reserved1;
	uint8_t select_report;
	uint8_t reserved2[3];
	uint8_t alloc_len[4];
	uint8_t reserved3;
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_report_luns, 12);

struct scsi_cdb_sync_cache10 {
	uint8_t opcode;
	uint8_t flags; /* bit1 IMMED */
	uint8_t lba[4];
	uint8_t group;
	uint8_t length[2];
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_sync_cache10, 10);

struct scsi_cdb_unmap {
	uint8_t opcode;
	uint8_t flags; /* bit0 ANCHOR */
	uint8_t reserved[4];
	uint8_t group;
	uint8_t param_len[2];
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_unmap, 10);

struct scsi_cdb_request_sense {
	uint8_t opcode;
	uint8_t flags; /* bit0 DESC */
	uint8_t reserved[2];
	uint8_t alloc_len;
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_request_sense, 6);

struct scsi_cdb_start_stop {
	uint8_t opcode;
	uint8_t immed;
	uint8_t reserved;
	uint8_t power_cond_modifier;
	uint8_t flags; /* bits 7..4 power condition, bit1 LOEJ, bit0 START */
	uint8_t control;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_cdb_start_stop, 6);

/* Control byte: bit2 NACA (not supported: ILLEGAL REQUEST). */
#define SCSI_CONTROL_NACA 0x04

/* ---- UNMAP parameter list (SBC-3 5.28.2) ------------------------------------ */

struct scsi_unmap_header {
	uint8_t data_len[2];       /* bytes after this field */
	uint8_t block_desc_len[2]; /* bytes of descriptors */
	uint8_t reserved[4];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_unmap_header, 8);

struct scsi_unmap_desc {
	uint8_t lba[8];
	uint8_t count[4];
	uint8_t reserved[4];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_unmap_desc, 16);

/* ---- INQUIRY data ------------------------------------------------------------ */

#define SCSI_TYPE_DISK 0x00
#define SCSI_TYPE_NO_LUN 0x7f /* peripheral qualifier 3, type 0x1f */
#define SCSI_VERSION_SPC3 0x05

struct scsi_inquiry_std {
	uint8_t peripheral;     /* qualifier (7..5) and device type (4..0) */
	uint8_t rmb;            /* bit7 removable */
	uint8_t version;
	uint8_t response_format; /* bits 3..0 = 2; bit4 HISUP */
	uint8_t additional_len; /* bytes after this one */
	uint8_t flags5;         /* SCCS ACC TPGS 3PC PROTECT */
	uint8_t flags6;         /* ENCSERV MULTIP ... */
	uint8_t flags7;         /* bit1 CMDQUE */
	char vendor[8];
	char product[16];
	char revision[4];
	uint8_t vendor_specific[20];
	uint8_t flags56;
	uint8_t reserved57;
	uint8_t version_desc[8][2];
	uint8_t reserved74[22];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_inquiry_std, 96);
SCSI_CHECK_OFF(struct scsi_inquiry_std, vendor, 8);
SCSI_CHECK_OFF(struct scsi_inquiry_std, product, 16);
SCSI_CHECK_OFF(struct scsi_inquiry_std, revision, 32);
SCSI_CHECK_OFF(struct scsi_inquiry_std, version_desc, 58);
#define SCSI_INQ_RESPONSE_FORMAT 0x02
#define SCSI_INQ_HISUP 0x10
#define SCSI_INQ_CMDQUE 0x02

/* VPD pages. */
#define SCSI_VPD_SUPPORTED_PAGES 0x00
#define SCSI_VPD_UNIT_SERIAL 0x80
#define SCSI_VPD_DEVICE_ID 0x83
#define SCSI_VPD_BLOCK_LIMITS 0xb0
#define SCSI_VPD_BLOCK_CHARACTERISTICS 0xb1
#define SCSI_VPD_LB_PROVISIONING 0xb2

struct scsi_vpd_header {
	uint8_t peripheral;
	uint8_t page;
	uint8_t page_len[2]; /* bytes after the header */
} SCSI_PACKED;
SCSI_CHECK(struct scsi_vpd_header, 4);

/* Device identification descriptor header (page 0x83). */
struct scsi_vpd_desig {
	uint8_t code_set;   /* bits 7..4 protocol id, 3..0 code set */
	uint8_t type;       /* bit7 PIV, 5..4 association, 3..0 designator type */
	uint8_t reserved;
	uint8_t length;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_vpd_desig, 4);
#define SCSI_DESIG_CODESET_BINARY 0x1
#define SCSI_DESIG_CODESET_ASCII 0x2
#define SCSI_DESIG_ASSOC_LU 0x00
#define SCSI_DESIG_TYPE_T10 0x1
#define SCSI_DESIG_TYPE_NAA 0x3

/* Block limits (0xB0), page length 0x3c. */
struct scsi_vpd_block_limits {
	struct scsi_vpd_header h;
	uint8_t flags4;                 /* bit0 WSNZ */
	uint8_t max_caw_len;
	uint8_t opt_xfer_granularity[2];
	uint8_t max_xfer_len[4];
	uint8_t opt_xfer_len[4];
	uint8_t max_prefetch_len[4];
	uint8_t max_unmap_lba_count[4];
	uint8_t max_unmap_desc_count[4];
	uint8_t opt_unmap_granularity[4];
	uint8_t unmap_alignment[4];     /* bit31 UGAVALID */
	uint8_t max_write_same_len[8];
	uint8_t max_atomic_xfer_len[4];
	uint8_t atomic_alignment[4];
	uint8_t atomic_granularity[4];
	uint8_t max_atomic_boundary_xfer[4];
	uint8_t max_atomic_boundary_size[4];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_vpd_block_limits, 64);
SCSI_CHECK_OFF(struct scsi_vpd_block_limits, max_xfer_len, 8);
SCSI_CHECK_OFF(struct scsi_vpd_block_limits, max_unmap_lba_count, 20);
SCSI_CHECK_OFF(struct scsi_vpd_block_limits, opt_unmap_granularity, 28);
SCSI_CHECK_OFF(struct scsi_vpd_block_limits, max_write_same_len, 36);
#define SCSI_BL_WSNZ 0x01
#define SCSI_BL_UGAVALID 0x80000000u

/* Block device characteristics (0xB1), page length 0x3c. */
struct scsi_vpd_block_char {
	struct scsi_vpd_header h;
	uint8_t rotation_rate[2]; /* 1 = non-rotating medium */
	uint8_t product_type;
	uint8_t form_factor;      /* bits 3..0 nominal form factor */
	uint8_t flags8;
	uint8_t reserved[55];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_vpd_block_char, 64);
SCSI_CHECK_OFF(struct scsi_vpd_block_char, rotation_rate, 4);
#define SCSI_ROTATION_NONE 0x0001

/* Logical block provisioning (0xB2), page length 4. */
struct scsi_vpd_lbp {
	struct scsi_vpd_header h;
	uint8_t threshold_exponent;
	uint8_t flags5;    /* LBPU 0x80, LBPWS 0x40, LBPWS10 0x20, LBPRZ 0x04, ANC_SUP 0x02, DP 0x01 */
	uint8_t prov_type; /* bits 2..0 */
	uint8_t reserved;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_vpd_lbp, 8);
#define SCSI_LBP_LBPU 0x80
#define SCSI_LBP_LBPWS 0x40
#define SCSI_LBP_LBPWS10 0x20
#define SCSI_LBP_LBPRZ 0x04
#define SCSI_LBP_ANC_SUP 0x02
#define SCSI_PROV_THIN 0x2

/* ---- READ CAPACITY data ------------------------------------------------------- */

struct scsi_read_capacity10_data {
	uint8_t last_lba[4];
	uint8_t block_len[4];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_read_capacity10_data, 8);

struct scsi_read_capacity16_data {
	uint8_t last_lba[8];
	uint8_t block_len[4];
	uint8_t prot;              /* P_TYPE, PROT_EN */
	uint8_t exponents;         /* bits 3..0 logical blocks per physical block exponent */
	uint8_t lowest_aligned[2]; /* [0] bit7 LBPME, bit6 LBPRZ, bits 5..0 high bits */
	uint8_t reserved[16];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_read_capacity16_data, 32);
SCSI_CHECK_OFF(struct scsi_read_capacity16_data, exponents, 13);
#define SCSI_RC16_LBPME 0x80
#define SCSI_RC16_LBPRZ 0x40

/* ---- REPORT LUNS data ------------------------------------------------------------- */

struct scsi_report_luns_header {
	uint8_t list_len[4]; /* bytes of LUN entries */
	uint8_t reserved[4];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_report_luns_header, 8);

/* One entry: peripheral device addressing (method 0) for LUN < 256 puts
 * the LUN in byte 1; flat addressing (method 1) for larger LUNs. */
struct scsi_lun_entry {
	uint8_t b[8];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_lun_entry, 8);

/* ---- mode parameters ---------------------------------------------------------------- */

struct scsi_mode_header6 {
	uint8_t data_len;       /* bytes after this one */
	uint8_t medium_type;
	uint8_t dev_specific;   /* bit7 WP, bit4 DPOFUA */
	uint8_t block_desc_len;
} SCSI_PACKED;
SCSI_CHECK(struct scsi_mode_header6, 4);

struct scsi_mode_header10 {
	uint8_t data_len[2];    /* bytes after this field */
	uint8_t medium_type;
	uint8_t dev_specific;
	uint8_t flags;          /* bit0 LONGLBA */
	uint8_t reserved;
	uint8_t block_desc_len[2];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_mode_header10, 8);
#define SCSI_MODE_WP 0x80
#define SCSI_MODE_DPOFUA 0x10
#define SCSI_MODE_LONGLBA 0x01

/* Short (mode sense 6/10) block descriptor. */
struct scsi_mode_block_desc {
	uint8_t nr_blocks[4]; /* 0xffffffff when larger */
	uint8_t reserved;
	uint8_t block_len[3];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_mode_block_desc, 8);

/* Long LBA block descriptor (LLBAA). */
struct scsi_mode_block_desc_long {
	uint8_t nr_blocks[8];
	uint8_t reserved[4];
	uint8_t block_len[4];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_mode_block_desc_long, 16);

#define SCSI_MODE_PAGE_CACHING 0x08
#define SCSI_MODE_PAGE_CONTROL 0x0a
#define SCSI_MODE_PAGE_ALL 0x3f
#define SCSI_MODE_SUBPAGE_ALL 0xff

struct scsi_mode_caching {
	uint8_t page_code; /* 0x08 (bit7 PS) */
	uint8_t page_len;  /* 0x12 */
	uint8_t flags2;    /* bit2 WCE, bit0 RCD */
	uint8_t retention;
	uint8_t disable_prefetch_len[2];
	uint8_t min_prefetch[2];
	uint8_t max_prefetch[2];
	uint8_t max_prefetch_ceiling[2];
	uint8_t flags12;   /* bit5 DRA */
	uint8_t nr_cache_segments;
	uint8_t cache_segment_size[2];
	uint8_t reserved16;
	uint8_t obsolete[3];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_mode_caching, 20);
#define SCSI_CACHING_WCE 0x04
#define SCSI_CACHING_RCD 0x01

struct scsi_mode_control {
	uint8_t page_code; /* 0x0a */
	uint8_t page_len;  /* 0x0a */
	uint8_t flags2;    /* TST, TMF_ONLY, D_SENSE, GLTSD, RLEC */
	uint8_t flags3;    /* bits 7..4 queue algorithm modifier, 2..1 QERR */
	uint8_t flags4;
	uint8_t flags5;    /* ATO, TAS, ... */
	uint8_t obsolete[2];
	uint8_t busy_timeout[2];
	uint8_t ext_selftest_time[2];
} SCSI_PACKED;
SCSI_CHECK(struct scsi_mode_control, 12);
#define SCSI_CONTROL_QAM_UNRESTRICTED 0x10

#endif
