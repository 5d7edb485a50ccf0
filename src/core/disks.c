#include "core/disks.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "block/block.h"

static bool lun_taken(const struct disk_set *s, size_t upto, unsigned ctrl, int lun)
{
	for (size_t i = 0; i < upto; i++)
		if (s->d[i].controller == ctrl && s->d[i].lun == lun)
			return true;
	return false;
}

static int assign_luns(struct disk_set *s, char *err, size_t errlen)
{
	/* Explicit LUNs first, so an automatic one never takes a LUN that a
	 * later --disk names. */
	for (size_t i = 0; i < s->n; i++) {
		struct storvsp_disk_config *dc = &s->d[i];

		if (dc->controller >= STORVSP_MAX_CONTROLLERS) {
			snprintf(err, errlen, "disk %s: controller %u: at most %u controllers",
				 dc->path, dc->controller, STORVSP_MAX_CONTROLLERS);
			return -EINVAL;
		}
		if (dc->lun >= 0 && lun_taken(s, i, dc->controller, dc->lun)) {
			snprintf(err, errlen, "disk %s: controller %u LUN %d is already in use",
				 dc->path, dc->controller, dc->lun);
			return -EEXIST;
		}
	}
	for (size_t i = 0; i < s->n; i++) {
		struct storvsp_disk_config *dc = &s->d[i];
		int lun = 0;

		if (dc->lun >= 0)
			continue;
		while (lun < (int)STORVSP_MAX_LUNS && lun_taken(s, s->n, dc->controller, lun))
			lun++;
		if (lun == (int)STORVSP_MAX_LUNS) {
			snprintf(err, errlen, "disk %s: controller %u is full (%u LUNs)", dc->path,
				 dc->controller, STORVSP_MAX_LUNS);
			return -ENOSPC;
		}
		dc->lun = lun;
	}
	return 0;
}

int disk_set_check(struct disk_set *s, char *err, size_t errlen)
{
	int ret = assign_luns(s, err, errlen);

	for (size_t i = 0; !ret && i < s->n; i++) {
		const struct storvsp_disk_config *dc = &s->d[i];
		struct blk_error berr = { { 0 } };
		struct blk_disk *disk;

		disk = blk_open(dc->path, dc->format, dc->read_only ? BLK_OPEN_RDONLY : 0, &berr);
		if (!disk) {
			if (berr.msg[0]) /* it starts with the path */
				snprintf(err, errlen, "disk %s", berr.msg);
			else
				snprintf(err, errlen, "disk %s: cannot open", dc->path);
			return -EIO;
		}
		blk_close(disk);
	}
	return ret;
}

int disk_set_add(struct disk_set *s, const struct storvsp_disk_config *dc)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 4;
		struct storvsp_disk_config *d = realloc(s->d, cap * sizeof(*d));

		if (!d)
			return -ENOMEM;
		s->d = d;
		s->cap = cap;
	}
	s->d[s->n++] = *dc;
	return 0;
}

void disk_set_remove(struct disk_set *s, unsigned controller, unsigned lun)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->d[i].controller == controller && s->d[i].lun == (int)lun) {
			s->d[i] = s->d[--s->n];
			return;
		}
	}
}

int disk_set_attach(const struct disk_set *s, struct storvsp *sv, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->n; i++) {
		int ret = storvsp_add_disk(sv, &s->d[i], err, errlen);

		if (ret < 0)
			return ret;
	}
	return 0;
}

void disk_set_free(struct disk_set *s)
{
	free(s->d);
	*s = (struct disk_set){ 0 };
}
