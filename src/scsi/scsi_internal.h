/* Helpers shared by scsi_disk.c and scsi_target.c. Not for transports. */
#ifndef HVMM_SCSI_INTERNAL_H
#define HVMM_SCSI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scsi/scsi_defs.h"
#include "scsi/scsi_disk.h"

/* Fixed-format sense (18 bytes) into `sense`. */
void scsi_build_sense(uint8_t *sense, uint8_t key, uint16_t asc);

/* GOOD with min(len, alloc, buffer) bytes of `data` copied in. */
void scsi_cmd_data_in(struct scsi_cmd *c, const void *data, size_t len, size_t alloc);

/* The CDB is long enough for its operation code and NACA is clear;
 * otherwise the command is finished with ILLEGAL REQUEST. */
bool scsi_cdb_ok(struct scsi_cmd *c);

/* Standard INQUIRY data ("Msft", "Virtual Disk", SPC-3). */
void scsi_fill_std_inquiry(struct scsi_inquiry_std *inq, uint8_t peripheral);

#endif
