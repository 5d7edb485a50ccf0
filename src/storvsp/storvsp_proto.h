/* VMBus storage protocol (VSTOR) wire formats: the 64-byte vstor_packet
 * that every storvsc message carries, the vmscsi_request (SRB) inside it,
 * channel properties, protocol versions, operation codes, NTSTATUS and SRB
 * status values.
 *
 * Little-endian, packed. Facts from the public protocol description
 * (Linux drivers/scsi/storvsc_drv.c, OpenVMM storvsp_protocol); this file
 * is written from scratch. The VMBus packet framing around it
 * (descriptor, GPA-direct ranges) is in vmbus/vmbus_proto.h. */
#ifndef HVMM_STORVSP_PROTO_H
#define HVMM_STORVSP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "vmbus/vmbus_proto.h"

#define VSTOR_PACKED __attribute__((packed))
#define VSTOR_CHECK(type, size) _Static_assert(sizeof(type) == (size), #type " size")
#define VSTOR_CHECK_OFF(type, field, off) \
	_Static_assert(offsetof(type, field) == (off), #type "." #field " offset")

/* ---- versions: (major << 8) | minor ------------------------------------------ */

#define VSTOR_VERSION(maj, min) ((uint16_t)((maj) << 8 | (min)))
#define VSTOR_VERSION_WIN6 VSTOR_VERSION(2, 0)
#define VSTOR_VERSION_WIN7 VSTOR_VERSION(4, 2)
#define VSTOR_VERSION_WIN8 VSTOR_VERSION(5, 1)
#define VSTOR_VERSION_WIN8_1 VSTOR_VERSION(6, 0)
#define VSTOR_VERSION_WIN10 VSTOR_VERSION(6, 2)

/* ---- operations ---------------------------------------------------------------- */

enum vstor_op {
	VSTOR_OP_COMPLETE_IO = 1,
	VSTOR_OP_REMOVE_DEVICE = 2,
	VSTOR_OP_EXECUTE_SRB = 3,
	VSTOR_OP_RESET_LUN = 4,
	VSTOR_OP_RESET_ADAPTER = 5,
	VSTOR_OP_RESET_BUS = 6,
	VSTOR_OP_BEGIN_INITIALIZATION = 7,
	VSTOR_OP_END_INITIALIZATION = 8,
	VSTOR_OP_QUERY_PROTOCOL_VERSION = 9,
	VSTOR_OP_QUERY_PROPERTIES = 10,
	VSTOR_OP_ENUMERATE_BUS = 11,
	VSTOR_OP_FCHBA_DATA = 12,
	VSTOR_OP_CREATE_SUB_CHANNELS = 13,
};

/* vstor_packet.flags */
#define VSTOR_FLAG_REQUEST_COMPLETION 0x1

/* ---- NTSTATUS (vstor_packet.status) --------------------------------------------- */

#define VSTOR_STATUS_SUCCESS 0x00000000u
#define VSTOR_STATUS_BUFFER_OVERFLOW 0x80000005u
#define VSTOR_STATUS_DEVICE_BUSY 0x80000011u
#define VSTOR_STATUS_UNSUCCESSFUL 0xc0000001u
#define VSTOR_STATUS_INVALID_PARAMETER 0xc000000du
#define VSTOR_STATUS_INVALID_DEVICE_REQUEST 0xc0000010u
#define VSTOR_STATUS_REVISION_MISMATCH 0xc0000059u
#define VSTOR_STATUS_DEVICE_NOT_CONNECTED 0xc000009du
#define VSTOR_STATUS_DEVICE_DOES_NOT_EXIST 0xc00000c0u
#define VSTOR_STATUS_INVALID_DEVICE_STATE 0xc0000184u
#define VSTOR_STATUS_IO_DEVICE_ERROR 0xc0000185u

/* ---- SRB status (vmscsi_request.srb_status) ---------------------------------------- */

#define SRB_STATUS_PENDING 0x00
#define SRB_STATUS_SUCCESS 0x01
#define SRB_STATUS_ABORTED 0x02
#define SRB_STATUS_ERROR 0x04
#define SRB_STATUS_BUSY 0x05
#define SRB_STATUS_INVALID_REQUEST 0x06
#define SRB_STATUS_INVALID_PATH_ID 0x07
#define SRB_STATUS_NO_DEVICE 0x08
#define SRB_STATUS_TIMEOUT 0x09
#define SRB_STATUS_SELECTION_TIMEOUT 0x0a
#define SRB_STATUS_BUS_RESET 0x0e
#define SRB_STATUS_DATA_OVERRUN 0x12
#define SRB_STATUS_INVALID_LUN 0x20
#define SRB_STATUS_INVALID_TARGET_ID 0x21
#define SRB_STATUS_BAD_FUNCTION 0x22
#define SRB_STATUS_INTERNAL_ERROR 0x30
#define SRB_STATUS_QUEUE_FROZEN 0x40
#define SRB_STATUS_AUTOSENSE_VALID 0x80

/* vmscsi_request.data_in */
#define VMSCSI_DATA_OUT 0 /* write: guest -> device */
#define VMSCSI_DATA_IN 1  /* read: device -> guest */
#define VMSCSI_DATA_NONE 2

/* vmscsi_request.srb_flags (the host ignores all but the direction). */
#define SRB_FLAGS_DATA_IN 0x00000040u
#define SRB_FLAGS_DATA_OUT 0x00000080u

/* ---- vmscsi_request --------------------------------------------------------------- */

#define VMSCSI_CDB_MAX 16u
#define VMSCSI_SENSE_MAX 0x14u      /* WIN8 and later */
#define VMSCSI_SENSE_MAX_WIN7 0x12u /* WIN6, WIN7 */

struct vmscsi_request {
	uint16_t length;
	uint8_t srb_status;
	uint8_t scsi_status;
	uint8_t port_number;
	uint8_t path_id;
	uint8_t target_id;
	uint8_t lun;
	uint8_t cdb_length;
	uint8_t sense_info_length;
	uint8_t data_in;
	uint8_t reserved;
	uint32_t data_transfer_length;
	union {
		uint8_t cdb[VMSCSI_CDB_MAX];
		uint8_t sense_data[VMSCSI_SENSE_MAX];
	};
	/* WIN8 extension. */
	uint16_t reserve;
	uint8_t queue_tag;
	uint8_t queue_action;
	uint32_t srb_flags;
	uint32_t time_out_value;
	uint32_t queue_sort_key;
} VSTOR_PACKED;
VSTOR_CHECK(struct vmscsi_request, 0x34);
VSTOR_CHECK_OFF(struct vmscsi_request, data_transfer_length, 12);
VSTOR_CHECK_OFF(struct vmscsi_request, cdb, 16);
VSTOR_CHECK_OFF(struct vmscsi_request, reserve, 36);
VSTOR_CHECK_OFF(struct vmscsi_request, srb_flags, 40);

/* The request without the WIN8 extension (WIN6, WIN7). */
#define VMSCSI_REQUEST_SIZE_WIN7 0x24u

/* ---- other union members ------------------------------------------------------------ */

#define VSTOR_PROP_MULTI_CHANNEL 0x1

struct vstor_channel_properties {
	uint32_t reserved;
	uint16_t max_channel_cnt; /* sub-channels the host will create */
	uint16_t reserved1;
	uint32_t flags;
	uint32_t max_transfer_bytes;
	uint64_t reserved2;
} VSTOR_PACKED;
VSTOR_CHECK(struct vstor_channel_properties, 24);
VSTOR_CHECK_OFF(struct vstor_channel_properties, max_channel_cnt, 4);
VSTOR_CHECK_OFF(struct vstor_channel_properties, flags, 8);
VSTOR_CHECK_OFF(struct vstor_channel_properties, max_transfer_bytes, 12);

struct vstor_protocol_version {
	uint16_t major_minor;
	uint16_t revision; /* Windows only; Linux sends 0 */
} VSTOR_PACKED;
VSTOR_CHECK(struct vstor_protocol_version, 4);

/* ---- vstor_packet ----------------------------------------------------------------------- */

struct vstor_packet {
	uint32_t operation;
	uint32_t flags;
	uint32_t status;
	union {
		struct vmscsi_request srb;
		struct vstor_channel_properties props;
		struct vstor_protocol_version version;
		uint16_t sub_channel_count;
		uint8_t raw[0x34];
	};
} VSTOR_PACKED;
VSTOR_CHECK(struct vstor_packet, 64);
VSTOR_CHECK_OFF(struct vstor_packet, srb, 12);

#define VSTOR_PACKET_HDR_LEN 12u
/* Packet sizes: WIN8 and later (and before negotiation), WIN6/WIN7. Old
 * Linux (before 5.16) sends the short form until a WIN8+ version is
 * negotiated. */
#define VSTOR_PACKET_SIZE 64u
#define VSTOR_PACKET_SIZE_WIN7 (VSTOR_PACKET_HDR_LEN + VMSCSI_REQUEST_SIZE_WIN7)

/* Guest request ids Linux uses for init and reset (completions echo them). */
#define VSTOR_RQST_INIT 0xfffffffffffffffdull
#define VSTOR_RQST_RESET 0xfffffffffffffffcull

#endif
