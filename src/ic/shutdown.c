/* Shutdown IC: host-initiated power off or restart. The guest answers
 * S_OK before it starts shutting down (Linux: orderly_poweroff() /
 * orderly_reboot()), or E_FAIL for a request it cannot honour. */
#include <errno.h>
#include <string.h>

#include "ic/ic_service.h"
#include "util/log.h"

enum sd_phase { SD_IDLE, SD_PENDING, SD_ACCEPTED, SD_REFUSED, SD_NO_REPLY };

struct sd_state {
	enum sd_phase phase;
	bool reboot;
	uint32_t guest_status;
};

static const struct ic_version sd_versions[] = {
	IC_SD_VERSION_1, IC_SD_VERSION_3, IC_SD_VERSION_3_1, IC_SD_VERSION_3_2,
};

/* Decode one UTF-8 sequence at s[*i]; U+FFFD for anything malformed. */
static uint32_t utf8_next(const unsigned char *s, size_t *i)
{
	unsigned char b = s[*i];
	uint32_t cp, min;
	int extra;

	(*i)++;
	if (b < 0x80)
		return b;
	if ((b & 0xe0) == 0xc0) {
		cp = b & 0x1f;
		extra = 1;
		min = 0x80;
	} else if ((b & 0xf0) == 0xe0) {
		cp = b & 0x0f;
		extra = 2;
		min = 0x800;
	} else if ((b & 0xf8) == 0xf0) {
		cp = b & 0x07;
		extra = 3;
		min = 0x10000;
	} else {
		return 0xfffd;
	}
	for (int k = 0; k < extra; k++) {
		if ((s[*i] & 0xc0) != 0x80)
			return 0xfffd; /* stops before a NUL or the next lead byte */
		cp = cp << 6 | (s[*i] & 0x3f);
		(*i)++;
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0xfffd;
	return cp;
}

/* UTF-8 to NUL-terminated UTF-16LE in out[0..len); never splits a pair. */
static void utf8_to_utf16le(const char *in, uint8_t *out, size_t len)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t units = len / 2, n = 0, i = 0;

	memset(out, 0, len);
	if (!s)
		return;
	while (s[i]) {
		uint32_t cp = utf8_next(s, &i);
		uint16_t u[2];
		size_t k = 1;

		if (cp >= 0x10000) {
			cp -= 0x10000;
			u[0] = (uint16_t)(0xd800 | cp >> 10);
			u[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
			k = 2;
		} else {
			u[0] = (uint16_t)cp;
		}
		if (n + k > units - 1)
			break;
		for (size_t j = 0; j < k; j++, n++) {
			out[2 * n] = (uint8_t)u[j];
			out[2 * n + 1] = (uint8_t)(u[j] >> 8);
		}
	}
}

int ic_request_shutdown_msg(struct ic_host *h, bool reboot, bool force, const char *message)
{
	struct ic_chan *c = h ? ic_host_chan(h, &ic_shutdown) : NULL;
	struct sd_state *s;
	struct ic_shutdown m;
	struct ic_version v;
	int ret;

	if (!c || !ic_chan_ready(c))
		return -ENOTCONN;
	s = ic_chan_state(c);
	v = ic_chan_version(c);
	if (reboot && ic_version_u32(v) < ic_version_u32((struct ic_version)IC_SD_VERSION_3_1))
		return -EOPNOTSUPP;
	if (ic_chan_busy(c))
		return -EBUSY;
	memset(&m, 0, sizeof(m));
	m.reason_code = IC_SHUTDOWN_REASON_PLANNED;
	m.timeout_seconds = 0;
	m.flags = (reboot ? IC_SHUTDOWN_FLAG_RESTART : 0) | (force ? IC_SHUTDOWN_FLAG_FORCE : 0);
	utf8_to_utf16le(message, m.display_message, sizeof(m.display_message));
	ret = ic_chan_request(c, IC_MSGTYPE_SHUTDOWN, &m, sizeof(m), IC_SHUTDOWN_TIMEOUT_MS);
	if (ret < 0)
		return ret;
	s->phase = SD_PENDING;
	s->reboot = reboot;
	log_info("ic shutdown: %s requested", reboot ? "reboot" : "power off");
	return 0;
}

int ic_request_shutdown(struct ic_host *h, bool reboot)
{
	return ic_request_shutdown_msg(h, reboot, false, NULL);
}

static void sd_response(struct ic_chan *c, const struct ic_reply *r)
{
	struct sd_state *s = ic_chan_state(c);

	if (s->phase != SD_PENDING)
		return;
	if (r->err) {
		s->phase = SD_NO_REPLY;
		log_ratelimited(LOG_WARN, "ic shutdown: the guest did not answer");
		ic_emit(c, IC_EVENT_SHUTDOWN_FAILED, r->err);
		return;
	}
	s->guest_status = r->status;
	if (r->status == IC_S_OK) {
		s->phase = SD_ACCEPTED;
		log_ratelimited(LOG_INFO, "ic shutdown: the guest accepted the %s",
				s->reboot ? "reboot" : "power off");
		ic_emit(c, IC_EVENT_SHUTDOWN_ACCEPTED, 0);
	} else {
		s->phase = SD_REFUSED;
		log_ratelimited(LOG_WARN, "ic shutdown: the guest refused (status %#x)", r->status);
		ic_emit(c, IC_EVENT_SHUTDOWN_FAILED, -EIO);
	}
}

static void sd_negotiated(struct ic_chan *c)
{
	struct sd_state *s = ic_chan_state(c);

	memset(s, 0, sizeof(*s));
}

static void sd_close(struct ic_chan *c)
{
	struct sd_state *s = ic_chan_state(c);

	memset(s, 0, sizeof(*s));
}

static const char *sd_status(struct ic_chan *c, uint64_t now)
{
	struct sd_state *s = ic_chan_state(c);

	switch (s->phase) {
	case SD_IDLE:
		return "connected";
	case SD_PENDING:
		return s->reboot ? "reboot requested" : "shutdown requested";
	case SD_ACCEPTED:
		return s->reboot ? "reboot accepted" : "shutdown accepted";
	case SD_REFUSED:
		return "refused";
	case SD_NO_REPLY:
		return "no reply";
	}
	return NULL;
}

const struct ic_service ic_shutdown = {
	.name = "shutdown",
	.class_guid = IC_CLASS_SHUTDOWN,
	.instance_guid = IC_INSTANCE_SHUTDOWN,
	.versions = sd_versions,
	.nr_versions = sizeof(sd_versions) / sizeof(sd_versions[0]),
	.state_size = sizeof(struct sd_state),
	.on_negotiated = sd_negotiated,
	.on_response = sd_response,
	.on_close = sd_close,
	.status = sd_status,
};
