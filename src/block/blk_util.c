/* Shared helpers of the block layer: I/O at explicit offsets, CRC-32C,
 * GUIDs, UTF-16 and paths. */
#include "block/block_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

blk_fault_fn *blk_fault_hook;

void blk_rwlock_init(pthread_rwlock_t *lock)
{
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(lock, &attr);
	pthread_rwlockattr_destroy(&attr);
}

void blk_seterr(struct blk_error *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

/* ---- I/O ---- */

static int fault(enum blk_io_op op, int fd, uint64_t off, uint64_t len)
{
	return blk_fault_hook ? blk_fault_hook(op, fd, off, len) : BLK_FAULT_NONE;
}

int blk_pread(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	if (off > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) { /* end of file: the rest reads as zeros */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int blk_iov_slice(const struct iovec *iov, int niov, size_t skip, size_t len, struct iovec *out,
		  int max)
{
	int n = 0;

	for (int i = 0; i < niov && len; i++) {
		size_t seg = iov[i].iov_len, take;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		if (n == max)
			return -1;
		take = seg - skip < len ? seg - skip : len;
		out[n++] = (struct iovec){ (uint8_t *)iov[i].iov_base + skip, take };
		len -= take;
		skip = 0;
	}
	return n;
}

/* Bytes [skip, skip+len) of iov: zeroed (flat NULL), or copied to or from
 * flat. */
static void iov_walk(const struct iovec *iov, int niov, size_t skip, uint8_t *flat, size_t len,
		     bool to_iov)
{
	for (int i = 0; i < niov && len; i++) {
		size_t seg = iov[i].iov_len, n;
		uint8_t *base = (uint8_t *)iov[i].iov_base + skip;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		n = seg - skip < len ? seg - skip : len;
		if (!flat)
			memset(base, 0, n);
		else if (to_iov)
			memcpy(base, flat, n);
		else
			memcpy(flat, base, n);
		if (flat)
			flat += n;
		len -= n;
		skip = 0;
	}
}

void blk_iov_zero(const struct iovec *iov, int niov, size_t skip, size_t len)
{
	iov_walk(iov, niov, skip, NULL, len, true);
}

void blk_iov_copy(const struct iovec *iov, int niov, size_t skip, uint8_t *flat, size_t len,
		  bool to_iov)
{
	iov_walk(iov, niov, skip, flat, len, to_iov);
}

#define IOV_STACK 64

/* preadv2/pwritev2 until all of [0, len) of iov moved; a short transfer
 * continues from where it stopped. */
static int rw_iov(int fd, const struct iovec *iov, int niov, size_t len, uint64_t off, int flags,
		  bool wr)
{
	struct iovec stack[IOV_STACK], *part = niov <= IOV_STACK ? stack : malloc(niov * sizeof(*part));
	size_t done = 0;
	int ret = 0;

	if (!part)
		return -ENOMEM;
	if (off > (uint64_t)INT64_MAX - len)
		ret = -EINVAL;
	while (!ret && done < len) {
		int n = blk_iov_slice(iov, niov, done, len - done, part, niov);
		ssize_t got;

		if (n <= 0) {
			ret = -EINVAL; /* iov shorter than len: the callers check */
			break;
		}
		got = wr ? pwritev2(fd, part, n, (off_t)(off + done), flags)
			 : preadv2(fd, part, n, (off_t)(off + done), flags);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			ret = (flags & RWF_NOWAIT) && (errno == EINVAL || errno == EOPNOTSUPP)
				      ? -EOPNOTSUPP
				      : -errno;
		} else if (got == 0) {
			if (wr)
				ret = -EIO;
			else
				blk_iov_zero(iov, niov, done, len - done); /* past the end */
			break;
		} else {
			done += (size_t)got;
		}
	}
	if (part != stack)
		free(part);
	return ret;
}

int blk_preadv(int fd, const struct iovec *iov, int niov, size_t len, uint64_t off, int flags)
{
	return rw_iov(fd, iov, niov, len, off, flags, false);
}

int blk_pwritev(int fd, const struct iovec *iov, int niov, size_t len, uint64_t off, int flags)
{
	int f;

	if (off > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	f = fault(BLK_IO_WRITE, fd, off, len);
	if (f == BLK_FAULT_FAIL)
		return -EIO;
	if (f == BLK_FAULT_TEAR) {
		size_t half = len / 2 / 512 * 512;

		if (half)
			rw_iov(fd, iov, niov, half, off, 0, true);
		return -EIO;
	}
	return rw_iov(fd, iov, niov, len, off, flags, true);
}

int blk_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { (void *)buf, len };

	return blk_pwritev(fd, &iov, 1, len, off, 0);
}

int blk_sync(int fd)
{
	if (fault(BLK_IO_SYNC, fd, 0, 0))
		return -EIO;
	while (fdatasync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int blk_truncate(int fd, uint64_t size)
{
	if (size > INT64_MAX)
		return -EFBIG;
	if (fault(BLK_IO_TRUNCATE, fd, size, 0))
		return -EIO;
	while (ftruncate(fd, (off_t)size) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int blk_punch(int fd, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	if (fault(BLK_IO_PUNCH, fd, off, len))
		return -EIO;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
		return errno == ENOSYS ? -EOPNOTSUPP : -errno;
	return 0;
}

int blk_allocate(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];

	if (!len)
		return 0;
	if (fault(BLK_IO_ALLOC, fd, off, len))
		return -EIO;
	if (fallocate(fd, 0, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		struct iovec iov = { (void *)zeros, n };
		int ret = rw_iov(fd, &iov, 1, n, off, 0, true);

		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

int blk_file_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

bool blk_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	static const uint8_t zeros[256];

	/* Word by word for the bulk, then compare against a zero page. */
	while (len && ((uintptr_t)p & 7)) {
		if (*p)
			return false;
		p++;
		len--;
	}
	while (len >= 64) {
		const uint64_t *w = (const uint64_t *)(const void *)p;

		if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
			return false;
		p += 64;
		len -= 64;
	}
	return !len || !memcmp(p, zeros, len);
}

/* ---- CRC-32C (Castagnoli, reflected 0x82F63B78) ---- */

static uint32_t crc_table[8][256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w ^= c;
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8(c, *p++);
		len--;
	}
	c64 = c;
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c64 = _mm_crc32_u64(c64, w);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}
#endif

uint32_t blk_crc32c(uint32_t crc, const void *buf, size_t len)
{
	static int mode; /* 0 unknown, 1 software, 2 hardware */
	int m = __atomic_load_n(&mode, __ATOMIC_ACQUIRE);
	uint32_t c = ~crc;

	if (!m) {
		crc_init();
		m = 1;
#if defined(__x86_64__)
		if (__builtin_cpu_supports("sse4.2"))
			m = 2;
#endif
		__atomic_store_n(&mode, m, __ATOMIC_RELEASE);
	}
#if defined(__x86_64__)
	if (m == 2)
		return ~crc_hw(c, buf, len);
#endif
	return ~crc_sw(c, buf, len);
}

/* ---- GUIDs ---- */

bool blk_guid_is_zero(const struct blk_guid *g)
{
	return blk_is_zero(g->b, sizeof(g->b));
}

bool blk_guid_eq(const struct blk_guid *a, const struct blk_guid *b)
{
	return !memcmp(a->b, b->b, sizeof(a->b));
}

int blk_guid_random(struct blk_guid *g)
{
	size_t got = 0;

	while (got < sizeof(g->b)) {
		ssize_t n = getrandom(g->b + got, sizeof(g->b) - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	g->b[7] = (g->b[7] & 0x0f) | 0x40; /* version 4 (data3 is little-endian) */
	g->b[8] = (g->b[8] & 0x3f) | 0x80; /* variant */
	return 0;
}

void blk_guid_format(const struct blk_guid *g, char out[BLK_GUID_STR])
{
	const uint8_t *b = g->b;

	snprintf(out, BLK_GUID_STR,
		 "{%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X}", b[3],
		 b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int blk_guid_parse(const char *s, struct blk_guid *g)
{
	/* Byte order of the text's hex pairs in the stored GUID. */
	static const int order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
	bool braced = *s == '{';
	int pair = 0;

	if (braced)
		s++;
	for (int i = 0; i < 36; i++, s++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (*s != '-')
				return -EINVAL;
			continue;
		}
		int hi = hexval(s[0]), lo;

		if (hi < 0 || (lo = hexval(s[1])) < 0)
			return -EINVAL;
		g->b[order[pair++]] = (uint8_t)(hi << 4 | lo);
		s++;
		i++;
	}
	if (braced && *s++ != '}')
		return -EINVAL;
	return *s ? -EINVAL : 0;
}

/* ---- UTF-16 ---- */

static unsigned get16(const uint8_t *p, bool be)
{
	return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

char *blk_utf16_to_utf8(const uint8_t *in, size_t bytes, bool big_endian)
{
	size_t n = bytes / 2, o = 0;
	char *out;

	if (bytes % 2 || n > 65536)
		return NULL;
	out = malloc(n * 3 + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t c = get16(in + 2 * i, big_endian);

		if (c >= 0xd800 && c < 0xdc00) {
			uint32_t lo;

			if (i + 1 >= n)
				goto bad;
			lo = get16(in + 2 * (i + 1), big_endian);
			if (lo < 0xdc00 || lo >= 0xe000)
				goto bad;
			c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
			i++;
		} else if (c >= 0xdc00 && c < 0xe000) {
			goto bad;
		}
		if (c == 0)
			goto bad;
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xc0 | c >> 6);
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xe0 | c >> 12);
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		} else {
			out[o++] = (char)(0xf0 | c >> 18);
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (c & 0x3f));
		}
	}
	out[o] = 0;
	return out;
bad:
	free(out);
	return NULL;
}

uint8_t *blk_utf8_to_utf16(const char *in, bool big_endian, size_t *bytes)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t len = strlen(in), o = 0;
	uint8_t *out = malloc(len * 4 + 2);

	if (!out)
		return NULL;
	while (*s) {
		uint32_t c;
		int extra;

		if (*s < 0x80) {
			c = *s;
			extra = 0;
		} else if ((*s & 0xe0) == 0xc0) {
			c = *s & 0x1f;
			extra = 1;
		} else if ((*s & 0xf0) == 0xe0) {
			c = *s & 0x0f;
			extra = 2;
		} else if ((*s & 0xf8) == 0xf0) {
			c = *s & 0x07;
			extra = 3;
		} else {
			goto bad;
		}
		s++;
		for (int k = 0; k < extra; k++, s++) {
			if ((*s & 0xc0) != 0x80)
				goto bad;
			c = c << 6 | (*s & 0x3f);
		}
		if (c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
			goto bad;
		uint32_t units[2];
		int nu = 1;

		if (c >= 0x10000) {
			c -= 0x10000;
			units[0] = 0xd800 + (c >> 10);
			units[1] = 0xdc00 + (c & 0x3ff);
			nu = 2;
		} else {
			units[0] = c;
		}
		for (int k = 0; k < nu; k++) {
			out[o++] = (uint8_t)(big_endian ? units[k] >> 8 : units[k] & 0xff);
			out[o++] = (uint8_t)(big_endian ? units[k] & 0xff : units[k] >> 8);
		}
	}
	*bytes = o;
	return out;
bad:
	free(out);
	return NULL;
}

/* ---- paths ---- */

char *blk_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

char *blk_path_join_dir(const char *base, const char *rel)
{
	char *dir, *out;

	if (rel[0] == '/')
		return strdup(rel);
	dir = blk_dirname(base);
	if (!dir)
		return NULL;
	if (asprintf(&out, "%s/%s", dir, rel) < 0)
		out = NULL;
	free(dir);
	return out;
}

char *blk_absolute_path(const char *path)
{
	char *dir, *real, *out;
	const char *base;

	/* The directory resolved, the file name kept (it may be a link). */
	dir = blk_dirname(path);
	if (!dir)
		return NULL;
	real = realpath(dir, NULL);
	free(dir);
	if (!real)
		return NULL;
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (asprintf(&out, "%s/%s", strcmp(real, "/") ? real : "", base) < 0)
		out = NULL;
	free(real);
	return out;
}

char *blk_relative_path(const char *from, const char *target)
{
	char *af = blk_absolute_path(from), *at = blk_absolute_path(target), *out = NULL;
	size_t common = 0, ups = 0, cap;
	const char *p;

	if (!af || !at)
		goto done;
	/* Longest common directory prefix. */
	for (size_t i = 0; af[i] && af[i] == at[i]; i++)
		if (af[i] == '/')
			common = i + 1;
	for (p = af + common; *p; p++)
		if (*p == '/')
			ups++;
	cap = ups * 3 + strlen(at + common) + 1;
	out = malloc(cap);
	if (!out)
		goto done;
	out[0] = 0;
	for (size_t i = 0; i < ups; i++)
		strcat(out, "../");
	strcat(out, at + common);
done:
	free(af);
	free(at);
	return out;
}

/* ---- image operations ---- */

void blk_check_msg(struct blk_checker *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->report)
		c->report(c->ctx, msg);
}

void blk_progress_update(struct blk_progress *p, uint64_t done)
{
	if (p && p->fn)
		p->fn(p->ctx, done > p->total ? p->total : done, p->total);
}
