/* The VM's disks as configured: the --disk arguments plus the API's hot adds
 * and removes. It outlives each VM so that a guest reboot finds the same
 * disks on the same LUNs; vm_create() attaches them to a new storvsp. */
#ifndef HVMM_CORE_DISKS_H
#define HVMM_CORE_DISKS_H

#include <stddef.h>

#include "storvsp/storvsp.h"

struct disk_set {
	struct storvsp_disk_config *d;
	size_t n, cap;
};

/* Give every disk without a LUN the lowest free one on its controller, refuse
 * two disks on one LUN, and open and close each image (so that a missing,
 * locked or corrupt image is reported before the VM starts). 0 or -errno
 * with a message in err. */
int disk_set_check(struct disk_set *s, char *err, size_t errlen);

/* Append a copy of dc (its LUN must be set). 0 or -ENOMEM. */
int disk_set_add(struct disk_set *s, const struct storvsp_disk_config *dc);

/* Forget the disk at (controller, lun), if there is one. */
void disk_set_remove(struct disk_set *s, unsigned controller, unsigned lun);

/* Attach every disk to sv. 0 or -errno with a message in err. */
int disk_set_attach(const struct disk_set *s, struct storvsp *sv, char *err, size_t errlen);

void disk_set_free(struct disk_set *s);

#endif
