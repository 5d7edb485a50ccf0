/* Hyper-V TLFS definitions the host needs for SynIC message and event
 * delivery and for answering HvPostMessage / HvSignalEvent. */
#ifndef HVMM_HV_PROTO_H
#define HVMM_HV_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* Hypercall status codes (result bits 15:0). */
#define HV_STATUS_SUCCESS 0x0000
#define HV_STATUS_INVALID_HYPERCALL_CODE 0x0002
#define HV_STATUS_INVALID_HYPERCALL_INPUT 0x0003
#define HV_STATUS_INVALID_ALIGNMENT 0x0004
#define HV_STATUS_INVALID_PARAMETER 0x0005
#define HV_STATUS_ACCESS_DENIED 0x0006
#define HV_STATUS_INSUFFICIENT_MEMORY 0x000b
#define HV_STATUS_INVALID_PORT_ID 0x0011
#define HV_STATUS_INVALID_CONNECTION_ID 0x0012
#define HV_STATUS_INSUFFICIENT_BUFFERS 0x0013

/* Hypercall codes that reach the VMM. */
#define HVCALL_POST_MESSAGE 0x005c
#define HVCALL_SIGNAL_EVENT 0x005d

/* SynIC MSRs (values the guest writes; bit 0 = enable). */
#define HV_MSR_SCONTROL 0x40000080
#define HV_MSR_SIEFP 0x40000082
#define HV_MSR_SIMP 0x40000083
#define HV_MSR_EOM 0x40000084
#define HV_SYNIC_ENABLE 0x1ull
#define HV_SYNIC_PAGE_MASK (~0xfffull)

#define HV_SYNIC_SINT_COUNT 16
#define HV_SYNIC_EVENT_FLAG_COUNT 2048 /* flags per SINT slot */

/* Message slot (one per SINT in the SIMP page). Naturally aligned, so not
 * packed: message_type and message_flags are accessed atomically. */
#define HV_MESSAGE_SIZE 256
#define HV_MESSAGE_PAYLOAD_MAX 240

#define HVMSG_NONE 0x00000000u
#define HVMSG_TIMER_EXPIRED 0x80000010u

#define HV_MESSAGE_FLAG_PENDING 0x01

struct hv_message_header {
	uint32_t message_type;
	uint8_t payload_size;
	uint8_t message_flags;
	uint16_t reserved;
	uint64_t sender; /* port / partition id; 0 */
};

struct hv_message {
	struct hv_message_header hdr;
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
};

_Static_assert(sizeof(struct hv_message_header) == 16, "hv_message_header size");
_Static_assert(offsetof(struct hv_message_header, payload_size) == 4, "payload_size offset");
_Static_assert(offsetof(struct hv_message_header, message_flags) == 5, "message_flags offset");
_Static_assert(offsetof(struct hv_message_header, sender) == 8, "sender offset");
_Static_assert(sizeof(struct hv_message) == HV_MESSAGE_SIZE, "hv_message size");
_Static_assert(offsetof(struct hv_message, payload) == 16, "payload offset");

/* HvPostMessage input block (256 bytes at the GPA in the hypercall). */
struct hv_post_message_input {
	uint32_t connection_id; /* bits 23:0 */
	uint32_t reserved;
	uint32_t message_type;  /* non-zero, bit 31 clear; VMBus uses 1 */
	uint32_t payload_size;  /* <= 240 */
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
};
_Static_assert(sizeof(struct hv_post_message_input) == 256, "post message input size");
_Static_assert(offsetof(struct hv_post_message_input, payload) == 16, "post message payload");

#define HV_CONNECTION_ID_MASK 0x00ffffffu

#endif
