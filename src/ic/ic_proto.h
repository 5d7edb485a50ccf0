/* Hyper-V Integration Components (IC): wire formats of the util services
 * (heartbeat, shutdown, time sync) carried in VMBus inband packets on
 * "named pipe, message mode" channels.
 *
 * Every IC message is: pipe header (8) + IC header (20) + body. The host
 * sends requests (icflags TRANSACTION|REQUEST); the guest answers each one
 * by rewriting the same buffer in place and sending it back as an inband
 * packet with the same VMBus trans_id and length (TRANSACTION|RESPONSE).
 *
 * All integers are little-endian and every struct is packed. Facts come
 * from the public protocol description (Linux include/linux/hyperv.h and
 * drivers/hv/hv_util.c, OpenVMM hyperv_ic_protocol); written from scratch. */
#ifndef HVMM_IC_PROTO_H
#define HVMM_IC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "vmbus/vmbus_proto.h"

#define IC_PACKED __attribute__((packed))
#define IC_CHECK(type, size) _Static_assert(sizeof(type) == (size), #type " size")
#define IC_CHECK_OFF(type, field, off) \
	_Static_assert(offsetof(type, field) == (off), #type "." #field " offset")

/* ---- class and instance GUIDs ------------------------------------------ */

#define IC_CLASS_HEARTBEAT VMBUS_CLASS_HEARTBEAT /* 57164f39-9115-4e78-ab55-382f3bd5422d */
#define IC_CLASS_SHUTDOWN VMBUS_CLASS_SHUTDOWN   /* 0e0b6031-5213-4934-818b-38d90ced39db */
#define IC_CLASS_TIMESYNC VMBUS_CLASS_TIMESYNC   /* 9527e630-d0ae-497b-adce-e80ab0175caf */

/* The instance GUIDs Hyper-V offers these services with (stable across
 * boots, so guest-side udev rules and sysfs paths stay valid). */
#define IC_INSTANCE_HEARTBEAT \
	GUID_INIT(0xfd149e91, 0x82e0, 0x4a7d, 0xaf, 0xa6, 0x2a, 0x41, 0x66, 0xcb, 0xd7, 0xc0)
#define IC_INSTANCE_SHUTDOWN VMBUS_INSTANCE_SHUTDOWN /* b6650ff7-33bc-4840-8048-e0676786f393 */
#define IC_INSTANCE_TIMESYNC VMBUS_INSTANCE_TIMESYNC /* 2dd1ce17-079e-403c-b352-a1921ee207ee */

/* ---- framing ------------------------------------------------------------ */

/* Pipe header in front of every message (message-mode pipe). */
#define IC_PIPE_FLAG_DATA 1u

struct ic_pipe_hdr {
	uint32_t flags;   /* IC_PIPE_FLAG_DATA */
	uint32_t msgsize; /* bytes after this header */
} IC_PACKED;
IC_CHECK(struct ic_pipe_hdr, 8);

struct ic_version {
	uint16_t major;
	uint16_t minor;
} IC_PACKED;
IC_CHECK(struct ic_version, 4);

#define IC_VERSION_INIT(maj, min) { .major = (maj), .minor = (min) }

/* icmsgtype */
#define IC_MSGTYPE_NEGOTIATE 0
#define IC_MSGTYPE_HEARTBEAT 1
#define IC_MSGTYPE_KVPEXCHANGE 2
#define IC_MSGTYPE_SHUTDOWN 3
#define IC_MSGTYPE_TIMESYNC 4
#define IC_MSGTYPE_VSS 5
#define IC_MSGTYPE_RDV 6
#define IC_MSGTYPE_FCOPY 7
#define IC_MSGTYPE_VM_SESSION 8

/* icflags */
#define IC_FLAG_TRANSACTION 0x1u
#define IC_FLAG_REQUEST 0x2u
#define IC_FLAG_RESPONSE 0x4u

/* status (HRESULT, set by the responder) */
#define IC_S_OK 0x00000000u
#define IC_E_FAIL 0x80004005u
#define IC_S_CONT 0x80070103u /* ERROR_NO_MORE_ITEMS (KVP) */
#define IC_E_NOT_SUPPORTED 0x80070032u
#define IC_E_INVALIDARG 0x80070057u
#define IC_E_DEVICE_NOT_CONNECTED 0x8007048fu
#define IC_E_MACHINE_LOCKED 0x800704f7u
#define IC_E_GUID_NOTFOUND 0x80041002u
#define IC_E_ALREADY_EXISTS 0x80070050u
#define IC_E_DISK_FULL 0x80070070u

struct ic_msg_hdr {
	struct ic_version icverframe; /* framework version */
	uint16_t icmsgtype;
	struct ic_version icvermsg;   /* service (message) version */
	uint16_t icmsgsize;           /* body bytes after this header */
	uint32_t status;
	uint8_t ictransaction_id;
	uint8_t icflags;
	uint8_t reserved[2];
} IC_PACKED;
IC_CHECK(struct ic_msg_hdr, 20);
IC_CHECK_OFF(struct ic_msg_hdr, icmsgtype, 4);
IC_CHECK_OFF(struct ic_msg_hdr, icvermsg, 6);
IC_CHECK_OFF(struct ic_msg_hdr, icmsgsize, 10);
IC_CHECK_OFF(struct ic_msg_hdr, status, 12);
IC_CHECK_OFF(struct ic_msg_hdr, ictransaction_id, 16);
IC_CHECK_OFF(struct ic_msg_hdr, icflags, 17);

/* Both headers: the offset of every message body (Linux ICMSG_HDR). */
struct ic_hdr {
	struct ic_pipe_hdr pipe;
	struct ic_msg_hdr ic;
} IC_PACKED;
IC_CHECK(struct ic_hdr, 28);
IC_CHECK_OFF(struct ic_hdr, ic, 8);
#define IC_HDR_LEN ((uint32_t)sizeof(struct ic_hdr))

/* Keep every message within what Linux reads: hv_utils reads heartbeat,
 * shutdown and timesync messages into a 4 KiB buffer (KVP 16 KiB). */
#define IC_MAX_MSG_LEN 4096u

/* ---- version negotiation (type 0) ----------------------------------------- */

/* Body: counts, then icframe_vercnt framework versions followed by
 * icmsg_vercnt service versions. The guest answers in place with 1/1 and
 * its choice (icmsgsize 16), or 0/0 when nothing matched. */
struct ic_negotiate {
	uint16_t icframe_vercnt;
	uint16_t icmsg_vercnt;
	uint32_t reserved;
	struct ic_version icversion_data[];
} IC_PACKED;
IC_CHECK(struct ic_negotiate, 8);
IC_CHECK_OFF(struct ic_negotiate, icversion_data, 8);

/* Linux refuses more versions than this in either list. */
#define IC_NEGOTIATE_MAX_VERSIONS 100u

/* Framework versions. */
#define IC_FW_VERSION_1 IC_VERSION_INIT(1, 0) /* WS2008 */
#define IC_FW_VERSION_3 IC_VERSION_INIT(3, 0)

/* ---- heartbeat (type 1) ----------------------------------------------------- */

/* The guest answers with seq_num + 1. Windows guests report their health
 * in app_state (0 unknown, 1 healthy, 2 critical, 3 stopped); Linux leaves
 * it as sent. */
struct ic_heartbeat {
	uint64_t seq_num;
	uint32_t app_state;
	uint32_t reserved[7];
} IC_PACKED;
IC_CHECK(struct ic_heartbeat, 40);

#define IC_HB_VERSION_1 IC_VERSION_INIT(1, 0)
#define IC_HB_VERSION_3 IC_VERSION_INIT(3, 0)

/* ---- shutdown (type 3) ------------------------------------------------------ */

/* Linux switches on the whole flags value: 0/1 power off, 2/3 reboot (>=
 * 3.1), 4/5 hibernate (>= 3.2), anything else E_FAIL. It ignores the
 * other fields and answers before acting. */
#define IC_SHUTDOWN_FLAG_FORCE 0x1u
#define IC_SHUTDOWN_FLAG_RESTART 0x2u
#define IC_SHUTDOWN_FLAG_HIBERNATE 0x4u

/* SHTDN_REASON_FLAG_PLANNED */
#define IC_SHUTDOWN_REASON_PLANNED 0x80000000u

#define IC_SHUTDOWN_MSG_LEN 2048u /* bytes: UTF-16LE, NUL-terminated */

struct ic_shutdown {
	uint32_t reason_code;
	uint32_t timeout_seconds;
	uint32_t flags;
	uint8_t display_message[IC_SHUTDOWN_MSG_LEN];
} IC_PACKED;
IC_CHECK(struct ic_shutdown, 2060);
IC_CHECK_OFF(struct ic_shutdown, flags, 8);
IC_CHECK_OFF(struct ic_shutdown, display_message, 12);

#define IC_SD_VERSION_1 IC_VERSION_INIT(1, 0)
#define IC_SD_VERSION_3 IC_VERSION_INIT(3, 0)
#define IC_SD_VERSION_3_1 IC_VERSION_INIT(3, 1) /* restart */
#define IC_SD_VERSION_3_2 IC_VERSION_INIT(3, 2) /* hibernate */

/* ---- time sync (type 4) ----------------------------------------------------- */

/* Times are Windows FILETIME: 100 ns units since 1601-01-01 00:00 UTC. */
#define IC_FILETIME_UNIX_EPOCH 116444736000000000ull /* 1970-01-01 */

#define IC_TIMESYNC_FLAG_PROBE 0x0u
#define IC_TIMESYNC_FLAG_SYNC 0x1u   /* step the clock (boot, resume) */
#define IC_TIMESYNC_FLAG_SAMPLE 0x2u /* a sample to discipline the clock */

/* Service versions 1.0 and 3.0. */
struct ic_timesync {
	uint64_t parenttime;    /* host UTC */
	uint64_t childtime;     /* unused */
	uint64_t roundtriptime; /* unused */
	uint8_t flags;
} IC_PACKED;
IC_CHECK(struct ic_timesync, 25);
IC_CHECK_OFF(struct ic_timesync, flags, 24);

/* Service version 4.0: with the guest's reference time (Hyper-V reference
 * counter, 100 ns units) at the instant parenttime was sampled. */
struct ic_timesync_ref {
	uint64_t parenttime;
	uint64_t vmreferencetime;
	uint8_t flags;
	uint8_t leapflags; /* NTP leap indicator */
	uint8_t stratum;
	uint8_t reserved[3];
} IC_PACKED;
IC_CHECK(struct ic_timesync_ref, 22);
IC_CHECK_OFF(struct ic_timesync_ref, flags, 16);
IC_CHECK_OFF(struct ic_timesync_ref, stratum, 18);

#define IC_TS_VERSION_1 IC_VERSION_INIT(1, 0)
#define IC_TS_VERSION_3 IC_VERSION_INIT(3, 0)
#define IC_TS_VERSION_4 IC_VERSION_INIT(4, 0) /* ictimesync_ref_data */

#endif
