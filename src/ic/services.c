/* The integration services the host offers, in status order. Adding one
 * (KVP, VSS, fcopy) is a new file and a line here. */
#include <stddef.h>

#include "ic/ic_service.h"

const struct ic_service *const ic_services[] = {
	&ic_heartbeat,
	&ic_shutdown,
	&ic_timesync,
	NULL,
};
