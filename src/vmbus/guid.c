#include "vmbus/vmbus_proto.h"

#include <stdio.h>

char *guid_to_str(const guid_t *g, char buf[GUID_STR_LEN])
{
	const uint8_t *b = g->b;

	snprintf(buf, GUID_STR_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6],
		 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return buf;
}
