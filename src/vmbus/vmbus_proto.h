/* VMBus wire formats: channel-management messages (carried in SynIC
 * messages), protocol versions, connection ids, ring-buffer control page,
 * packet descriptors and device class GUIDs.
 *
 * All integers are little-endian and every message struct is packed; the
 * offsets below include the 8-byte channel-message header. Facts are taken
 * from the public protocol description (Linux include/linux/hyperv.h,
 * OpenVMM vmbus_core protocol.rs); this file is written from scratch. */
#ifndef HVMM_VMBUS_PROTO_H
#define HVMM_VMBUS_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- GUIDs ------------------------------------------------------------ */

/* A GUID in its wire form: Data1 (u32), Data2 (u16), Data3 (u16) little-
 * endian, then Data4 as written ("mixed-endian", as Linux guid_t). */
#ifndef HVMM_GUID_T
#define HVMM_GUID_T
typedef struct {
	uint8_t b[16];
} guid_t;
#endif
_Static_assert(sizeof(guid_t) == 16, "guid_t size");

/* Brace initializer from the textual form aaaaaaaa-bbbb-cccc-dddd-dddddddddddd. */
#define GUID_INIT(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                          \
	{ { (uint8_t)(a), (uint8_t)((a) >> 8), (uint8_t)((a) >> 16), (uint8_t)((a) >> 24), \
	    (uint8_t)(b), (uint8_t)((b) >> 8), (uint8_t)(c), (uint8_t)((c) >> 8),          \
	    (d0), (d1), (d2), (d3), (d4), (d5), (d6), (d7) } }

static inline int guid_equal(const guid_t *a, const guid_t *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* Formats as "aaaaaaaa-bbbb-cccc-dddd-dddddddddddd"; buf needs 37 bytes. */
#define GUID_STR_LEN 37
char *guid_to_str(const guid_t *g, char buf[GUID_STR_LEN]);

/* Device classes (offer if_type), from Linux vmbus_devs[]. */
#define VMBUS_CLASS_NIC GUID_INIT(0xf8615163, 0xdf3e, 0x46c5, 0x91, 0x3f, 0xf2, 0xd2, 0xf9, 0x65, 0xed, 0x0e)
#define VMBUS_CLASS_SCSI GUID_INIT(0xba6163d9, 0x04a1, 0x4d29, 0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f)
#define VMBUS_CLASS_IDE GUID_INIT(0x32412632, 0x86cb, 0x44a2, 0x9b, 0x5c, 0x50, 0xd1, 0x41, 0x73, 0x54, 0xf5)
#define VMBUS_CLASS_SYNTHFC GUID_INIT(0x2f9bcc4a, 0x0069, 0x4af3, 0xb7, 0x6b, 0x6f, 0xd0, 0xbe, 0x52, 0x8c, 0xda)
#define VMBUS_CLASS_SHUTDOWN GUID_INIT(0x0e0b6031, 0x5213, 0x4934, 0x81, 0x8b, 0x38, 0xd9, 0x0c, 0xed, 0x39, 0xdb)
#define VMBUS_CLASS_TIMESYNC GUID_INIT(0x9527e630, 0xd0ae, 0x497b, 0xad, 0xce, 0xe8, 0x0a, 0xb0, 0x17, 0x5c, 0xaf)
#define VMBUS_CLASS_HEARTBEAT GUID_INIT(0x57164f39, 0x9115, 0x4e78, 0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d)
#define VMBUS_CLASS_KVP GUID_INIT(0xa9a0f4e7, 0x5a45, 0x4d96, 0xb8, 0x27, 0x8a, 0x84, 0x1e, 0x8c, 0x03, 0xe6)
#define VMBUS_CLASS_VSS GUID_INIT(0x35fa2e29, 0xea23, 0x4236, 0x96, 0xae, 0x3a, 0x6e, 0xba, 0xcb, 0xa4, 0x40)
#define VMBUS_CLASS_FCOPY GUID_INIT(0x34d14be3, 0xdee4, 0x41c8, 0x9a, 0xe7, 0x6b, 0x17, 0x49, 0x77, 0xc1, 0x92)
#define VMBUS_CLASS_BALLOON GUID_INIT(0x525074dc, 0x8985, 0x46e2, 0x80, 0x57, 0xa3, 0x07, 0xdc, 0x18, 0xa5, 0x02)
#define VMBUS_CLASS_SYNTHVID GUID_INIT(0xda0a7802, 0xe377, 0x4aac, 0x8e, 0x77, 0x05, 0x58, 0xeb, 0x10, 0x73, 0xf8)
#define VMBUS_CLASS_KBD GUID_INIT(0xf912ad6d, 0x2b17, 0x48ea, 0xbd, 0x65, 0xf9, 0x27, 0xa6, 0x1c, 0x76, 0x84)
#define VMBUS_CLASS_MOUSE GUID_INIT(0xcfa8b69e, 0x5b4a, 0x4cc0, 0xb9, 0x8b, 0x8b, 0xa1, 0xa1, 0xf3, 0xf9, 0x5a)
#define VMBUS_CLASS_PCIE GUID_INIT(0x44c4f61d, 0x4444, 0x4400, 0x9d, 0x52, 0x80, 0x2e, 0x27, 0xed, 0xe1, 0x9f)
#define VMBUS_CLASS_ND GUID_INIT(0x8c2eaf3d, 0x32a7, 0x4b09, 0xab, 0x99, 0xbd, 0x1f, 0x1c, 0x86, 0xb5, 0x01)
#define VMBUS_CLASS_AVMA1 GUID_INIT(0xf8e65716, 0x3cb3, 0x4a06, 0x9a, 0x60, 0x18, 0x89, 0xc5, 0xcc, 0xca, 0xb5)
#define VMBUS_CLASS_AVMA2 GUID_INIT(0x3375baf4, 0x9e15, 0x4b30, 0xb7, 0x65, 0x67, 0xac, 0xb1, 0x0d, 0x60, 0x7b)
#define VMBUS_CLASS_RDV GUID_INIT(0x276aacf4, 0xac15, 0x426c, 0x98, 0xdd, 0x75, 0x21, 0xad, 0x3f, 0x01, 0xfe)
#define VMBUS_CLASS_IMC GUID_INIT(0xc376c1c3, 0xd276, 0x48d2, 0x90, 0xa9, 0xc0, 0x47, 0x48, 0x07, 0x2c, 0x60)

/* Instance GUIDs Hyper-V uses for some devices (any unique GUID works for
 * Linux, except fcopy on Linux >= 6.10 whose daemon hard-codes its own). */
#define VMBUS_INSTANCE_KVP GUID_INIT(0x242ff919, 0x07db, 0x4180, 0x9c, 0x2e, 0xb8, 0x6c, 0xb6, 0x8c, 0x8c, 0x55)
#define VMBUS_INSTANCE_SHUTDOWN GUID_INIT(0xb6650ff7, 0x33bc, 0x4840, 0x80, 0x48, 0xe0, 0x67, 0x67, 0x86, 0xf3, 0x93)
#define VMBUS_INSTANCE_TIMESYNC GUID_INIT(0x2dd1ce17, 0x079e, 0x403c, 0xb3, 0x52, 0xa1, 0x92, 0x1e, 0xe2, 0x07, 0xee)
#define VMBUS_INSTANCE_FCOPY GUID_INIT(0xeb765408, 0x105f, 0x49b6, 0xb4, 0xaa, 0xc1, 0x23, 0xb6, 0x4d, 0x17, 0xd4)
#define VMBUS_INSTANCE_KBD GUID_INIT(0xd34b2567, 0xb9b6, 0x42b9, 0x87, 0x78, 0x0a, 0x4e, 0xc0, 0xb9, 0x55, 0xbf)
#define VMBUS_INSTANCE_MOUSE GUID_INIT(0x58f75a6d, 0xd949, 0x4320, 0x99, 0xe1, 0xa2, 0xa2, 0x57, 0x6d, 0x58, 0x1c)
#define VMBUS_INSTANCE_SYNTHVID GUID_INIT(0x5620e0c7, 0x8062, 0x4dce, 0xae, 0xb7, 0x52, 0x0c, 0x7e, 0xf7, 0x61, 0x71)

/* ---- Versions and connection ids ------------------------------------- */

#define VMBUS_VERSION(major, minor) (((uint32_t)(major) << 16) | (uint32_t)(minor))
#define VMBUS_VERSION_MAJOR(v) ((v) >> 16)
#define VMBUS_VERSION_MINOR(v) ((v) & 0xffff)

#define VMBUS_VERSION_WS2008 VMBUS_VERSION(0, 13)
#define VMBUS_VERSION_WIN7 VMBUS_VERSION(1, 1)
#define VMBUS_VERSION_WIN8 VMBUS_VERSION(2, 4)       /* event flags, sub-channels */
#define VMBUS_VERSION_WIN8_1 VMBUS_VERSION(3, 0)     /* target_vcpu honoured, UNLOAD */
#define VMBUS_VERSION_WIN10 VMBUS_VERSION(4, 0)      /* hv_sock */
#define VMBUS_VERSION_WIN10_V4_1 VMBUS_VERSION(4, 1) /* MODIFYCHANNEL */
#define VMBUS_VERSION_WIN10_V5 VMBUS_VERSION(5, 0)   /* msg_sint, conn id 4 */
#define VMBUS_VERSION_WIN10_V5_1 VMBUS_VERSION(5, 1)
#define VMBUS_VERSION_WIN10_V5_2 VMBUS_VERSION(5, 2)
#define VMBUS_VERSION_WIN10_V5_3 VMBUS_VERSION(5, 3) /* MODIFYCHANNEL_RESPONSE */
#define VMBUS_VERSION_WIN10_V6_0 VMBUS_VERSION(6, 0) /* feature flags (not supported here) */

/* HvPostMessage connection ids (guest -> host). */
#define VMBUS_MESSAGE_CONNECTION_ID 1
#define VMBUS_EVENT_CONNECTION_ID 2   /* pre-Win7 only */
#define VMBUS_MONITOR_CONNECTION_ID 3 /* legacy */
#define VMBUS_MESSAGE_CONNECTION_ID_4 4 /* INITIATE_CONTACT for >= 5.0 */
/* HvSignalEvent connection ids must fit in 24 bits (KVM_HYPERV_EVENTFD). */
#define VMBUS_CONNECTION_ID_MASK 0x00ffffffu

/* SynIC message type VMBus messages are posted and delivered with. */
#define VMBUS_HV_MESSAGE_TYPE 1
/* SINT Linux uses for channel messages and channel events. */
#define VMBUS_MESSAGE_SINT 2

/* Channel relids are 1..VMBUS_MAX_RELID (Linux MAX_CHANNEL_RELIDS = 2048). */
#define VMBUS_MAX_RELID 2047

/* Largest channel message (SynIC payload limit). */
#define VMBUS_MSG_MAX 240

/* ---- Channel-management messages -------------------------------------- */

enum vmbus_msgtype {
	VMBUS_MSG_INVALID = 0,
	VMBUS_MSG_OFFERCHANNEL = 1,
	VMBUS_MSG_RESCIND_CHANNELOFFER = 2,
	VMBUS_MSG_REQUESTOFFERS = 3,
	VMBUS_MSG_ALLOFFERS_DELIVERED = 4,
	VMBUS_MSG_OPENCHANNEL = 5,
	VMBUS_MSG_OPENCHANNEL_RESULT = 6,
	VMBUS_MSG_CLOSECHANNEL = 7,
	VMBUS_MSG_GPADL_HEADER = 8,
	VMBUS_MSG_GPADL_BODY = 9,
	VMBUS_MSG_GPADL_CREATED = 10,
	VMBUS_MSG_GPADL_TEARDOWN = 11,
	VMBUS_MSG_GPADL_TORNDOWN = 12,
	VMBUS_MSG_RELID_RELEASED = 13,
	VMBUS_MSG_INITIATE_CONTACT = 14,
	VMBUS_MSG_VERSION_RESPONSE = 15,
	VMBUS_MSG_UNLOAD = 16,
	VMBUS_MSG_UNLOAD_RESPONSE = 17,
	VMBUS_MSG_OPEN_RESERVED_CHANNEL = 18,
	VMBUS_MSG_CLOSE_RESERVED_CHANNEL = 19,
	VMBUS_MSG_CLOSE_RESERVED_RESPONSE = 20,
	VMBUS_MSG_TL_CONNECT_REQUEST = 21,
	VMBUS_MSG_MODIFYCHANNEL = 22,
	VMBUS_MSG_TL_CONNECT_RESULT = 23,
	VMBUS_MSG_MODIFYCHANNEL_RESPONSE = 24,
	VMBUS_MSG_COUNT
};

/* Status values in OPENCHANNEL_RESULT / GPADL_CREATED / MODIFYCHANNEL_RESPONSE:
 * 0 is success, Linux treats anything else as failure. */
#define VMBUS_STATUS_SUCCESS 0u
#define VMBUS_STATUS_UNSUCCESSFUL 0xc0000001u
/* NTSTATUS STATUS_CONNECTION_REFUSED, for TL_CONNECT_RESULT. */
#define VMBUS_STATUS_CONNECTION_REFUSED 0xc0000236u

#define VMBUS_PACKED __attribute__((packed))

#define VMBUS_CHECK(type, size) _Static_assert(sizeof(type) == (size), #type " size")
#define VMBUS_CHECK_OFF(type, field, off) \
	_Static_assert(offsetof(type, field) == (off), #type "." #field " offset")

struct vmbus_msg_hdr {
	uint32_t msgtype;
	uint32_t padding;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_hdr, 8);

/* Offer flags (chn_flags). */
#define VMBUS_OFFER_ENUMERATE_DEVICE_INTERFACE 0x0001
#define VMBUS_OFFER_NAMED_PIPE_MODE 0x0010
#define VMBUS_OFFER_TLNPI_PROVIDER 0x2000
/* Pipe modes (first u32 of the user-defined area in pipe mode). */
#define VMBUS_PIPE_TYPE_BYTE 0
#define VMBUS_PIPE_TYPE_MESSAGE 4

#define VMBUS_OFFER_USER_DEF_LEN 120

/* OFFERCHANNEL (1), host -> guest. */
struct vmbus_msg_offer_channel {
	struct vmbus_msg_hdr hdr;
	guid_t if_type;
	guid_t if_instance;
	uint64_t reserved1;
	uint64_t reserved2;
	uint16_t chn_flags;
	uint16_t mmio_megabytes;
	uint8_t user_def[VMBUS_OFFER_USER_DEF_LEN];
	uint16_t sub_channel_index;
	uint16_t reserved3;
	uint32_t child_relid;
	uint8_t monitorid;
	uint8_t monitor_flags;   /* bit 0 monitor_allocated */
	uint16_t interrupt_flags; /* bit 0 is_dedicated_interrupt */
	uint32_t connection_id;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_offer_channel, 196);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, if_type, 8);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, if_instance, 24);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, chn_flags, 56);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, user_def, 60);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, sub_channel_index, 180);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, child_relid, 184);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, monitorid, 188);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, interrupt_flags, 190);
VMBUS_CHECK_OFF(struct vmbus_msg_offer_channel, connection_id, 192);

#define VMBUS_OFFER_MONITOR_ALLOCATED 0x1
#define VMBUS_OFFER_DEDICATED_INTERRUPT 0x1

/* RESCIND_CHANNELOFFER (2), CLOSECHANNEL (7), RELID_RELEASED (13). */
struct vmbus_msg_relid {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_relid, 12);

/* OPENCHANNEL (5), guest -> host. (6.0 adds 8 bytes we do not negotiate.) */
struct vmbus_msg_open_channel {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t openid;
	uint32_t ringbuffer_gpadl;
	uint32_t target_vp;
	uint32_t downstream_page_offset;
	uint8_t user_data[VMBUS_OFFER_USER_DEF_LEN];
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_open_channel, 148);
VMBUS_CHECK_OFF(struct vmbus_msg_open_channel, ringbuffer_gpadl, 16);
VMBUS_CHECK_OFF(struct vmbus_msg_open_channel, downstream_page_offset, 24);
VMBUS_CHECK_OFF(struct vmbus_msg_open_channel, user_data, 28);

/* OPENCHANNEL_RESULT (6), host -> guest. */
struct vmbus_msg_open_result {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t openid;
	uint32_t status;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_open_result, 20);

/* One GPA range inside a GPADL: followed by
 * ceil((byte_offset + byte_count) / 4096) u64 page frame numbers. */
struct vmbus_gpa_range {
	uint32_t byte_count;
	uint32_t byte_offset;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_gpa_range, 8);

/* GPADL_HEADER (8), guest -> host; followed by range_buflen bytes of
 * ranges (possibly continued in GPADL_BODY messages). */
struct vmbus_msg_gpadl_header {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t gpadl;
	uint16_t range_buflen;
	uint16_t rangecount;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_gpadl_header, 20);

/* GPADL_BODY (9), guest -> host; followed by more PFNs. */
struct vmbus_msg_gpadl_body {
	struct vmbus_msg_hdr hdr;
	uint32_t msgnumber;
	uint32_t gpadl;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_gpadl_body, 16);

/* PFNs that fit in one header (with one range) / one body message. */
#define VMBUS_GPADL_HEADER_MAX_PFNS \
	((VMBUS_MSG_MAX - sizeof(struct vmbus_msg_gpadl_header) - sizeof(struct vmbus_gpa_range)) / 8)
#define VMBUS_GPADL_BODY_MAX_PFNS ((VMBUS_MSG_MAX - sizeof(struct vmbus_msg_gpadl_body)) / 8)

/* GPADL_CREATED (10), host -> guest. */
struct vmbus_msg_gpadl_created {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t gpadl;
	uint32_t creation_status;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_gpadl_created, 20);

/* GPADL_TEARDOWN (11), guest -> host. */
struct vmbus_msg_gpadl_teardown {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t gpadl;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_gpadl_teardown, 16);

/* GPADL_TORNDOWN (12), host -> guest. */
struct vmbus_msg_gpadl_torndown {
	struct vmbus_msg_hdr hdr;
	uint32_t gpadl;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_gpadl_torndown, 12);

/* INITIATE_CONTACT (14), guest -> host. Bytes 16..23 are the interrupt page
 * GPA below 5.0 and {msg_sint, msg_vtl, reserved[2], feature_flags} from 5.0. */
struct vmbus_msg_initiate_contact {
	struct vmbus_msg_hdr hdr;
	uint32_t version_requested;
	uint32_t target_vcpu;
	union {
		uint64_t interrupt_page;
		struct {
			uint8_t msg_sint;
			uint8_t msg_vtl;
			uint8_t reserved[2];
			uint32_t feature_flags;
		} VMBUS_PACKED;
	} VMBUS_PACKED;
	uint64_t monitor_page1;
	uint64_t monitor_page2;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_initiate_contact, 40);
VMBUS_CHECK_OFF(struct vmbus_msg_initiate_contact, target_vcpu, 12);
VMBUS_CHECK_OFF(struct vmbus_msg_initiate_contact, interrupt_page, 16);
VMBUS_CHECK_OFF(struct vmbus_msg_initiate_contact, msg_sint, 16);
VMBUS_CHECK_OFF(struct vmbus_msg_initiate_contact, monitor_page1, 24);
VMBUS_CHECK_OFF(struct vmbus_msg_initiate_contact, monitor_page2, 32);

/* VERSION_RESPONSE (15), host -> guest. */
struct vmbus_msg_version_response {
	struct vmbus_msg_hdr hdr;
	uint8_t version_supported;
	uint8_t connection_state;
	uint16_t padding;
	uint32_t msg_conn_id;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_version_response, 16);

#define VMBUS_CONNECTION_STATE_OK 0
#define VMBUS_CONNECTION_STATE_FAILED 2

/* TL_CONNECT_REQUEST (21), guest -> host (hv_sock connect). */
struct vmbus_msg_tl_connect_request {
	struct vmbus_msg_hdr hdr;
	guid_t guest_endpoint_id;
	guid_t host_service_id;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_tl_connect_request, 40);

/* MODIFYCHANNEL (22), guest -> host. */
struct vmbus_msg_modify_channel {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t target_vp;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_modify_channel, 16);

/* TL_CONNECT_RESULT (23), host -> guest. */
struct vmbus_msg_tl_connect_result {
	struct vmbus_msg_hdr hdr;
	guid_t endpoint_id;
	guid_t service_id;
	uint32_t status;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_tl_connect_result, 44);

/* MODIFYCHANNEL_RESPONSE (24), host -> guest (>= 5.3). */
struct vmbus_msg_modify_channel_response {
	struct vmbus_msg_hdr hdr;
	uint32_t child_relid;
	uint32_t status;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_msg_modify_channel_response, 16);

/* ---- Ring buffers ------------------------------------------------------ */

#define VMBUS_PAGE_SIZE 4096u
#define VMBUS_PAGE_SHIFT 12

/* The first 4 KiB page of each ring. Every field is naturally aligned, so
 * the struct is not packed: the indices are accessed atomically. */
struct vmbus_ring_ctrl {
	uint32_t write_index;     /* byte offset into data; written by the writer */
	uint32_t read_index;      /* byte offset into data; written by the reader */
	uint32_t interrupt_mask;  /* reader: "do not signal me" */
	uint32_t pending_send_sz; /* writer: "signal me when this much is free" */
	uint32_t reserved1[12];
	uint32_t feature_bits;    /* bit 0: feat_pending_send_sz */
	uint8_t reserved2[4028];
};
VMBUS_CHECK(struct vmbus_ring_ctrl, VMBUS_PAGE_SIZE);
VMBUS_CHECK_OFF(struct vmbus_ring_ctrl, read_index, 4);
VMBUS_CHECK_OFF(struct vmbus_ring_ctrl, interrupt_mask, 8);
VMBUS_CHECK_OFF(struct vmbus_ring_ctrl, pending_send_sz, 12);
VMBUS_CHECK_OFF(struct vmbus_ring_ctrl, feature_bits, 64);

#define VMBUS_RING_FEAT_PENDING_SEND_SZ 0x1u

/* Every packet is followed by this 8-byte trailer: the packet's start
 * offset in the upper 32 bits. */
#define VMBUS_RING_TRAILER_LEN 8u

/* ---- Packets ----------------------------------------------------------- */

enum vmbus_pkt_type {
	VMBUS_PKT_INVALID = 0x0,
	VMBUS_PKT_SYNCH = 0x1,
	VMBUS_PKT_ADD_XFER_PAGESET = 0x2,
	VMBUS_PKT_RM_XFER_PAGESET = 0x3,
	VMBUS_PKT_ESTABLISH_GPADL = 0x4,
	VMBUS_PKT_TEARDOWN_GPADL = 0x5,
	VMBUS_PKT_DATA_INBAND = 0x6,
	VMBUS_PKT_DATA_USING_XFER_PAGES = 0x7,
	VMBUS_PKT_DATA_USING_GPADL = 0x8,
	VMBUS_PKT_DATA_USING_GPA_DIRECT = 0x9,
	VMBUS_PKT_CANCEL_REQUEST = 0xa,
	VMBUS_PKT_COMP = 0xb,
	VMBUS_PKT_DATA_USING_ADDITIONAL_PKT = 0xc,
	VMBUS_PKT_ADDITIONAL_DATA = 0xd,
};

#define VMBUS_PKT_FLAG_COMPLETION_REQUESTED 0x1

struct vmbus_pkt_desc {
	uint16_t type;
	uint16_t offset8; /* payload offset from packet start, 8-byte units */
	uint16_t len8;    /* packet length (excluding trailer), 8-byte units */
	uint16_t flags;
	uint64_t trans_id;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_pkt_desc, 16);

struct vmbus_xfer_range {
	uint32_t byte_count;
	uint32_t byte_offset;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_xfer_range, 8);

/* VM_PKT_DATA_USING_XFER_PAGES (7) header; range_cnt ranges follow. */
struct vmbus_pkt_xfer_pages {
	struct vmbus_pkt_desc d;
	uint16_t xfer_pageset_id;
	uint8_t sender_owns_set;
	uint8_t reserved;
	uint32_t range_cnt;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_pkt_xfer_pages, 24);

/* VM_PKT_DATA_USING_GPA_DIRECT (9) header; range_cnt ranges follow, each a
 * struct vmbus_gpa_range and its PFNs. */
struct vmbus_pkt_gpa_direct {
	struct vmbus_pkt_desc d;
	uint32_t reserved;
	uint32_t range_cnt;
} VMBUS_PACKED;
VMBUS_CHECK(struct vmbus_pkt_gpa_direct, 24);

#endif
