/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhu-blk: a vhost-user virtio-blk device backed by a raw image file or a
 * block device. Serves front-ends one after another until SIGINT or SIGTERM.
 *
 *   vhu-blk --socket-path=PATH --image=FILE [--read-only] [--queues=N]
 *           [--serial=ID] [--direct] [...]   (see --help)
 *
 * Threads: the control thread (in vhu_daemon_run, on main) speaks the
 * protocol; each queue is served by one worker thread; a signal thread waits
 * for SIGINT/SIGTERM (stop), SIGHUP (re-read the image size and tell the
 * front-end) and SIGUSR1 (print the counters).
 *
 * Every request is validated before any I/O: the 16-byte header must be
 * readable, the status byte is the last device-writable byte, sector ranges
 * are checked against the capacity without overflow, and the data buffers
 * handed to preadv/pwritev are exactly the chain's iovecs minus the header
 * and the status byte.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vhostuser/vhostuser.h>

/* ---- virtio-blk definitions (virtio 1.2, section 5.2) ----------------- */

#define VBLK_F_SIZE_MAX 1
#define VBLK_F_SEG_MAX 2
#define VBLK_F_RO 5
#define VBLK_F_BLK_SIZE 6
#define VBLK_F_FLUSH 9
#define VBLK_F_CONFIG_WCE 11
#define VBLK_F_MQ 12
#define VBLK_F_DISCARD 13
#define VBLK_F_WRITE_ZEROES 14

#define VBLK_T_IN 0
#define VBLK_T_OUT 1
#define VBLK_T_FLUSH 4
#define VBLK_T_GET_ID 8
#define VBLK_T_DISCARD 11
#define VBLK_T_WRITE_ZEROES 13

#define VBLK_S_OK 0
#define VBLK_S_IOERR 1
#define VBLK_S_UNSUPP 2

#define VBLK_WZ_FLAG_UNMAP 1u

#define VBLK_ID_BYTES 20
#define VBLK_HDR_BYTES 16 /* le32 type, le32 ioprio, le64 sector */
#define VBLK_SEG_BYTES 16 /* le64 sector, le32 num_sectors, le32 flags */

/* Byte offsets in struct virtio_blk_config. */
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12
#define CFG_BLK_SIZE 20
#define CFG_WRITEBACK 32
#define CFG_NUM_QUEUES 34
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGNMENT 44
#define CFG_MAX_WZ_SECTORS 48
#define CFG_MAX_WZ_SEG 52
#define CFG_WZ_MAY_UNMAP 56
#define CFG_BYTES 256

#define SECTOR_SHIFT 9
#define SECTOR_SIZE 512u

/* Limits this device advertises. */
#define MAX_DWZ_SEGS 32u            /* segments per discard/write-zeroes */
#define MAX_DWZ_SECTORS 0x400000u   /* 2 GiB per segment */
#define DEFAULT_SIZE_MAX (1u << 20) /* bytes per data segment */
#define BUF_ALIGN 4096u             /* buffer alignment for O_DIRECT */
#define BOUNCE_CHUNK (1u << 20)     /* bounce buffer payload per step */
#define ZERO_CHUNK (1u << 20)       /* zeroes written per step */
#define LOGGED_ERRORS_PER_QUEUE 10  /* then request errors go to debug */
#define NOTIFY_BATCH 32             /* completions between interrupts */

/* ---- State -------------------------------------------------------------- */

struct blk_stats {
  _Atomic uint64_t reads, read_bytes, writes, write_bytes, flushes, discards, write_zeroes, get_ids,
      unsupported, errors, bounced;
};

struct blk_dev;

/* Owned by the queue's worker thread, except the atomic counters. */
struct blk_queue {
  struct blk_dev* dev;
  uint16_t index;
  struct iovec* iov; /* scratch: the data part of the current chain */
  unsigned iov_cap;
  uint8_t* bounce; /* O_DIRECT bounce buffer, allocated on first use */
  unsigned logged_errors;
  struct blk_stats st;
};

struct blk_dev {
  const char* path;
  int fd;
  bool is_bdev;
  bool read_only;
  bool direct;
  uint32_t blk_size;  /* logical block size the guest is told */
  uint32_t dio_align; /* offset/length alignment O_DIRECT needs (direct only) */
  uint32_t seg_max;
  uint32_t size_max;
  uint16_t num_queues;
  char serial[VBLK_ID_BYTES];
  _Atomic uint64_t capacity; /* in 512-byte sectors; changed by SIGHUP */
  _Atomic uint8_t writeback; /* 0: write-through (sync after every write) */
  pthread_mutex_t rmw_lock;  /* serialises read-modify-write of partial blocks */
  uint8_t* zeroes;           /* ZERO_CHUNK aligned zero bytes */
  struct blk_queue* queues;
  vhu_daemon* daemon;
  int log_level;
  /* Control-thread state for the session log lines. */
  bool in_session;
  uint64_t session_features; /* the last features the front-end acked */
  uint64_t session_requests, session_errors;
};

/* ---- Logging -------------------------------------------------------------- */

static const char* const g_level_names[] = {"error", "warning", "info", "debug"};

static void blk_log(const struct blk_dev* dev, vhu_log_level level, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void blk_log(const struct blk_dev* dev, vhu_log_level level, const char* fmt, ...) {
  if ((int)level > dev->log_level) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "vhu-blk: %s: %s\n", g_level_names[level], line);
}

static void library_log(vhu_log_level level, const char* msg, void* ud) {
  (void)ud;
  fprintf(stderr, "vhu-blk: %s: %s\n", g_level_names[level], msg);
}

/* ---- Little-endian helpers ------------------------------------------------ */

static void put_le16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t* p) {
  return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---- Image -------------------------------------------------------------- */

/* Size of the image in bytes, or a negative errno. */
static int64_t image_bytes(const struct blk_dev* dev) {
  if (dev->is_bdev) {
    uint64_t bytes;
    if (ioctl(dev->fd, BLKGETSIZE64, &bytes) < 0) return -errno;
    return bytes > INT64_MAX ? -EOVERFLOW : (int64_t)bytes;
  }
  struct stat st;
  if (fstat(dev->fd, &st) < 0) return -errno;
  return st.st_size;
}

/* Capacity in sectors for an image of `bytes` bytes: whole sectors only, and
 * whole O_DIRECT blocks in direct mode (the tail cannot be written there). */
static uint64_t capacity_for(const struct blk_dev* dev, uint64_t bytes) {
  if (dev->direct) bytes -= bytes % dev->dio_align;
  return bytes >> SECTOR_SHIFT;
}

static bool range_ok(const struct blk_dev* dev, uint64_t sector, uint64_t sectors) {
  uint64_t cap = atomic_load_explicit(&dev->capacity, memory_order_acquire);
  return sector <= cap && sectors <= cap - sector;
}

/* ---- iovec helpers ---------------------------------------------------------- */

/* Makes q->iov the part [skip, skip + len) of `src`. Returns the number of
 * entries, or -1 when `src` is shorter or memory runs out. */
static int slice_iov(struct blk_queue* q, const struct iovec* src, unsigned n, size_t skip,
                     size_t len) {
  if (q->iov_cap < n) {
    struct iovec* p = realloc(q->iov, (size_t)n * sizeof *p);
    if (!p) return -1;
    q->iov = p;
    q->iov_cap = n;
  }
  unsigned out = 0;
  for (unsigned i = 0; i < n && len > 0; i++) {
    size_t l = src[i].iov_len;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    size_t take = l - skip < len ? l - skip : len;
    q->iov[out].iov_base = (uint8_t*)src[i].iov_base + skip;
    q->iov[out].iov_len = take;
    out++;
    len -= take;
    skip = 0;
  }
  return len == 0 ? (int)out : -1;
}

/* Copies between a flat buffer and the bytes [skip, skip + len) of iovecs. */
static void iov_to_buf(const struct iovec* iov, unsigned n, size_t skip, uint8_t* buf, size_t len) {
  for (unsigned i = 0; i < n && len > 0; i++) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    size_t take = iov[i].iov_len - skip < len ? iov[i].iov_len - skip : len;
    memcpy(buf, (const uint8_t*)iov[i].iov_base + skip, take);
    buf += take;
    len -= take;
    skip = 0;
  }
}

static void buf_to_iov(const struct iovec* iov, unsigned n, size_t skip, const uint8_t* buf,
                       size_t len) {
  for (unsigned i = 0; i < n && len > 0; i++) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    size_t take = iov[i].iov_len - skip < len ? iov[i].iov_len - skip : len;
    memcpy((uint8_t*)iov[i].iov_base + skip, buf, take);
    buf += take;
    len -= take;
    skip = 0;
  }
}

/* ---- I/O ---------------------------------------------------------------- */

/* preadv/pwritev of exactly `len` bytes at `off`, looping on short
 * transfers. `iov` is consumed (modified) as bytes move; *moved (may be
 * NULL) tells how many did. Returns 0 or a negative errno; hitting the end of
 * the image is -EIO on reads and -ENOSPC on writes. */
static int rw_full(int fd, bool write, struct iovec* iov, unsigned n, uint64_t off, size_t len,
                   size_t* moved) {
  size_t total = 0;
  int rc = 0;
  while (total < len) {
    while (n > 0 && iov->iov_len == 0) {
      iov++;
      n--;
    }
    if (n == 0) {
      rc = -EIO;
      break;
    }
    int cnt = n > IOV_MAX ? IOV_MAX : (int)n;
    ssize_t r = write ? pwritev(fd, iov, cnt, (off_t)off) : preadv(fd, iov, cnt, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      rc = r < 0 ? -errno : write ? -ENOSPC : -EIO;
      break;
    }
    size_t done = (size_t)r;
    off += done;
    total += done;
    while (done > 0 && n > 0) {
      size_t take = done < iov->iov_len ? done : iov->iov_len;
      iov->iov_base = (uint8_t*)iov->iov_base + take;
      iov->iov_len -= take;
      done -= take;
      if (iov->iov_len == 0) {
        iov++;
        n--;
      }
    }
  }
  if (moved) *moved = total;
  return rc;
}

static int rw_flat(int fd, bool write, uint8_t* buf, size_t len, uint64_t off) {
  struct iovec v = {.iov_base = buf, .iov_len = len};
  return rw_full(fd, write, &v, 1, off, len, NULL);
}

/* Whether O_DIRECT can take these buffers and this range as they are. */
static bool direct_ok(const struct blk_dev* dev, const struct iovec* iov, unsigned n, uint64_t off,
                      size_t len) {
  uint32_t a = dev->dio_align;
  if (off % a || len % a) return false;
  for (unsigned i = 0; i < n; i++)
    if ((uintptr_t)iov[i].iov_base % BUF_ALIGN || iov[i].iov_len % a) return false;
  return true;
}

/* O_DIRECT through the queue's aligned bounce buffer: each step covers the
 * aligned blocks around up to BOUNCE_CHUNK bytes of the request; a write
 * that covers blocks only partly reads them first (under rmw_lock, so that
 * two queues updating neighbouring sectors of one block do not lose each
 * other's bytes). */
static int rw_bounce(struct blk_queue* q, bool write, const struct iovec* iov, unsigned n,
                     uint64_t off, size_t len) {
  struct blk_dev* dev = q->dev;
  const uint64_t a = dev->dio_align;
  if (!q->bounce) {
    void* p;
    if (posix_memalign(&p, BUF_ALIGN, BOUNCE_CHUNK + 2 * a) != 0) return -ENOMEM;
    q->bounce = p;
  }
  atomic_fetch_add_explicit(&q->st.bounced, 1, memory_order_relaxed);
  size_t pos = 0;
  while (pos < len) {
    size_t step = len - pos < BOUNCE_CHUNK ? len - pos : BOUNCE_CHUNK;
    uint64_t start = off + pos, end = start + step;
    uint64_t a0 = start - start % a;
    uint64_t a1 = end % a ? end + (a - end % a) : end;
    size_t blen = (size_t)(a1 - a0);
    uint8_t* b = q->bounce;
    int rc = 0;
    if (!write) {
      rc = rw_flat(dev->fd, false, b, blen, a0);
      if (rc == 0) buf_to_iov(iov, n, pos, b + (start - a0), step);
    } else if (start == a0 && end == a1) {
      iov_to_buf(iov, n, pos, b, step);
      rc = rw_flat(dev->fd, true, b, blen, a0);
    } else {
      pthread_mutex_lock(&dev->rmw_lock);
      if (start != a0) rc = rw_flat(dev->fd, false, b, (size_t)a, a0);
      if (rc == 0 && end != a1 && (a1 - a > a0 || start == a0))
        rc = rw_flat(dev->fd, false, b + blen - a, (size_t)a, a1 - a);
      if (rc == 0) {
        iov_to_buf(iov, n, pos, b + (start - a0), step);
        rc = rw_flat(dev->fd, true, b, blen, a0);
      }
      pthread_mutex_unlock(&dev->rmw_lock);
    }
    if (rc != 0) return rc;
    pos += step;
  }
  return 0;
}

/* Reads or writes `len` bytes at byte offset `off` with the iovecs `iov`
 * (modified). Returns 0 or a negative errno. */
static int image_rw(struct blk_queue* q, bool write, struct iovec* iov, unsigned n, uint64_t off,
                    size_t len) {
  struct blk_dev* dev = q->dev;
  if (dev->direct && !direct_ok(dev, iov, n, off, len))
    return rw_bounce(q, write, iov, n, off, len);
  size_t moved;
  int rc = rw_full(dev->fd, write, iov, n, off, len, &moved);
  /* A file system may want more alignment than it reported; nothing moved,
   * so the iovecs are intact. */
  if (rc == -EINVAL && dev->direct && moved == 0) return rw_bounce(q, write, iov, n, off, len);
  return rc;
}

static int write_zero_bytes(struct blk_queue* q, uint64_t off, uint64_t len) {
  while (len > 0) {
    size_t step = len < ZERO_CHUNK ? (size_t)len : ZERO_CHUNK;
    struct iovec v = {.iov_base = q->dev->zeroes, .iov_len = step};
    int rc = image_rw(q, true, &v, 1, off, step);
    if (rc != 0) return rc;
    off += step;
    len -= step;
  }
  return 0;
}

static int sync_image(const struct blk_dev* dev) { return fdatasync(dev->fd) < 0 ? -errno : 0; }

static bool not_supported(int err) {
  return err == EOPNOTSUPP || err == ENOTTY || err == ENOSYS || err == ENODEV;
}

/* Discard is a hint: a back-end that cannot deallocate still succeeds. */
static int discard_range(struct blk_dev* dev, uint64_t off, uint64_t len) {
  int r;
  if (dev->is_bdev) {
    uint64_t range[2] = {off, len};
    r = ioctl(dev->fd, BLKDISCARD, range);
  } else {
    r = fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
  }
  /* EINVAL: a range the device cannot discard (alignment) is left as is. */
  if (r == 0 || not_supported(errno) || errno == EINVAL) return 0;
  return -errno;
}

/* After this returns 0 the range reads as zeroes. */
static int zero_range(struct blk_queue* q, uint64_t off, uint64_t len, bool unmap) {
  struct blk_dev* dev = q->dev;
  if (unmap &&
      fallocate(dev->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
    return 0;
  if (fallocate(dev->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
    return 0;
  if (dev->is_bdev) {
    uint64_t range[2] = {off, len};
    if (ioctl(dev->fd, BLKZEROOUT, range) == 0) return 0;
  }
  if (errno != EOPNOTSUPP && errno != EINVAL && !not_supported(errno)) return -errno;
  return write_zero_bytes(q, off, len);
}

/* ---- Requests ------------------------------------------------------------- */

/* Counts a failed request in `counter` and logs it: the first few per queue
 * as warnings, the rest at debug level (a guest must not flood the log). */
static void request_failed(struct blk_queue* q, _Atomic uint64_t* counter, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void request_failed(struct blk_queue* q, _Atomic uint64_t* counter, const char* fmt, ...) {
  atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
  unsigned k = q->logged_errors;
  if (k < UINT_MAX) q->logged_errors++;
  vhu_log_level level = k < LOGGED_ERRORS_PER_QUEUE ? VHU_LOG_WARNING : VHU_LOG_DEBUG;
  if ((int)level > q->dev->log_level) return;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  blk_log(q->dev, level, "queue %u: %s%s", q->index, msg,
          k == LOGGED_ERRORS_PER_QUEUE - 1 ? " (further request errors only with -vv)" : "");
}

#define request_error(q, ...) request_failed(q, &(q)->st.errors, __VA_ARGS__)

static uint8_t do_read(struct blk_queue* q, vhu_chain* c, uint64_t sector, size_t len,
                       uint32_t* data_written) {
  if (len % SECTOR_SIZE) {
    request_error(q, "read of %zu bytes is not whole sectors", len);
    return VBLK_S_IOERR;
  }
  if (!range_ok(q->dev, sector, len >> SECTOR_SHIFT)) {
    request_error(q, "read of sectors %" PRIu64 "+%zu is past the end", sector,
                  len >> SECTOR_SHIFT);
    return VBLK_S_IOERR;
  }
  unsigned n;
  const struct iovec* w = vhu_chain_writable(c, &n);
  int cnt = slice_iov(q, w, n, 0, len);
  if (cnt < 0) return VBLK_S_IOERR;
  int rc = image_rw(q, false, q->iov, (unsigned)cnt, sector << SECTOR_SHIFT, len);
  if (rc != 0) {
    request_error(q, "read at sector %" PRIu64 ": %s", sector, strerror(-rc));
    return VBLK_S_IOERR;
  }
  atomic_fetch_add_explicit(&q->st.reads, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&q->st.read_bytes, len, memory_order_relaxed);
  *data_written = (uint32_t)len;
  return VBLK_S_OK;
}

static uint8_t do_write(struct blk_queue* q, vhu_chain* c, uint64_t sector, size_t len) {
  struct blk_dev* dev = q->dev;
  if (dev->read_only) {
    request_error(q, "write to a read-only image");
    return VBLK_S_IOERR;
  }
  if (len % SECTOR_SIZE) {
    request_error(q, "write of %zu bytes is not whole sectors", len);
    return VBLK_S_IOERR;
  }
  if (!range_ok(dev, sector, len >> SECTOR_SHIFT)) {
    request_error(q, "write of sectors %" PRIu64 "+%zu is past the end", sector,
                  len >> SECTOR_SHIFT);
    return VBLK_S_IOERR;
  }
  unsigned n;
  const struct iovec* r = vhu_chain_readable(c, &n);
  int cnt = slice_iov(q, r, n, VBLK_HDR_BYTES, len);
  if (cnt < 0) return VBLK_S_IOERR;
  int rc = image_rw(q, true, q->iov, (unsigned)cnt, sector << SECTOR_SHIFT, len);
  if (rc == 0 && !atomic_load_explicit(&dev->writeback, memory_order_relaxed)) rc = sync_image(dev);
  if (rc != 0) {
    request_error(q, "write at sector %" PRIu64 ": %s", sector, strerror(-rc));
    return VBLK_S_IOERR;
  }
  atomic_fetch_add_explicit(&q->st.writes, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&q->st.write_bytes, len, memory_order_relaxed);
  return VBLK_S_OK;
}

static uint8_t do_flush(struct blk_queue* q) {
  int rc = sync_image(q->dev);
  if (rc != 0) {
    request_error(q, "flush: %s", strerror(-rc));
    return VBLK_S_IOERR;
  }
  atomic_fetch_add_explicit(&q->st.flushes, 1, memory_order_relaxed);
  return VBLK_S_OK;
}

static uint8_t do_get_id(struct blk_queue* q, vhu_chain* c, size_t len, uint32_t* data_written) {
  size_t n = len < VBLK_ID_BYTES ? len : VBLK_ID_BYTES;
  *data_written = (uint32_t)vhu_chain_write(c, 0, q->dev->serial, n);
  atomic_fetch_add_explicit(&q->st.get_ids, 1, memory_order_relaxed);
  return VBLK_S_OK;
}

/* DISCARD and WRITE_ZEROES: `len` readable bytes of segments follow the
 * header. Everything is validated before anything is changed. */
static uint8_t do_discard_zeroes(struct blk_queue* q, vhu_chain* c, uint32_t type, size_t len) {
  struct blk_dev* dev = q->dev;
  const bool discard = type == VBLK_T_DISCARD;
  const char* what = discard ? "discard" : "write-zeroes";
  if (dev->read_only) {
    request_error(q, "%s on a read-only image", what);
    return VBLK_S_IOERR;
  }
  if (len == 0 || len % VBLK_SEG_BYTES || len / VBLK_SEG_BYTES > MAX_DWZ_SEGS) {
    request_error(q, "%s with %zu bytes of segments", what, len);
    return VBLK_S_IOERR;
  }
  uint8_t segs[MAX_DWZ_SEGS * VBLK_SEG_BYTES];
  if (vhu_chain_read(c, VBLK_HDR_BYTES, segs, len) != len) return VBLK_S_IOERR;
  const size_t count = len / VBLK_SEG_BYTES;
  for (size_t i = 0; i < count; i++) {
    const uint8_t* s = segs + i * VBLK_SEG_BYTES;
    uint64_t sector = get_le64(s);
    uint32_t num = get_le32(s + 8), flags = get_le32(s + 12);
    if (flags & ~VBLK_WZ_FLAG_UNMAP || (discard && flags)) {
      request_failed(q, &q->st.unsupported, "%s with flags 0x%x", what, flags);
      return VBLK_S_UNSUPP;
    }
    if (num > MAX_DWZ_SECTORS || !range_ok(dev, sector, num)) {
      request_error(q, "%s of sectors %" PRIu64 "+%u is out of range", what, sector, num);
      return VBLK_S_IOERR;
    }
  }
  for (size_t i = 0; i < count; i++) {
    const uint8_t* s = segs + i * VBLK_SEG_BYTES;
    uint64_t off = get_le64(s) << SECTOR_SHIFT;
    uint64_t bytes = (uint64_t)get_le32(s + 8) << SECTOR_SHIFT;
    if (bytes == 0) continue;
    int rc = discard ? discard_range(dev, off, bytes)
                     : zero_range(q, off, bytes, get_le32(s + 12) & VBLK_WZ_FLAG_UNMAP);
    if (rc == 0 && !discard && !atomic_load_explicit(&dev->writeback, memory_order_relaxed))
      rc = sync_image(dev);
    if (rc != 0) {
      request_error(q, "%s at byte %" PRIu64 ": %s", what, off, strerror(-rc));
      return VBLK_S_IOERR;
    }
  }
  atomic_fetch_add_explicit(discard ? &q->st.discards : &q->st.write_zeroes, 1,
                            memory_order_relaxed);
  return VBLK_S_OK;
}

/* Serves one chain; returns the used length to report. */
static uint32_t serve_chain(struct blk_queue* q, vhu_chain* c) {
  const size_t rlen = vhu_chain_readable_len(c), wlen = vhu_chain_writable_len(c);
  if (wlen == 0) {
    /* Nowhere to put a status: complete it empty so the ring moves on. */
    request_error(q, "request without a writable status byte");
    return 0;
  }
  uint8_t hdr[VBLK_HDR_BYTES];
  uint8_t status;
  uint32_t data = 0;
  if (rlen < VBLK_HDR_BYTES || vhu_chain_read(c, 0, hdr, sizeof hdr) != sizeof hdr) {
    request_error(q, "request with %zu readable bytes (header needs %d)", rlen, VBLK_HDR_BYTES);
    status = VBLK_S_IOERR;
  } else {
    const uint32_t type = get_le32(hdr);
    const uint64_t sector = get_le64(hdr + 8);
    switch (type) {
      case VBLK_T_IN:
        status = do_read(q, c, sector, wlen - 1, &data);
        break;
      case VBLK_T_OUT:
        status = do_write(q, c, sector, rlen - VBLK_HDR_BYTES);
        break;
      case VBLK_T_FLUSH:
        status = do_flush(q);
        break;
      case VBLK_T_GET_ID:
        status = do_get_id(q, c, wlen - 1, &data);
        break;
      case VBLK_T_DISCARD:
      case VBLK_T_WRITE_ZEROES:
        status = do_discard_zeroes(q, c, type, rlen - VBLK_HDR_BYTES);
        break;
      default:
        atomic_fetch_add_explicit(&q->st.unsupported, 1, memory_order_relaxed);
        blk_log(q->dev, VHU_LOG_DEBUG, "queue %u: unsupported request type %u", q->index, type);
        status = VBLK_S_UNSUPP;
        break;
    }
  }
  vhu_chain_write(c, wlen - 1, &status, 1);
  return data + 1;
}

static void handle_queue(vhu_vring* vr, void* ud) {
  struct blk_dev* dev = ud;
  struct blk_queue* q = &dev->queues[vhu_vring_index(vr)];
  vhu_chain* c;
  int rc, done = 0;
  while ((rc = vhu_vring_pop(vr, &c)) == 0) {
    vhu_vring_push(vr, c, serve_chain(q, c));
    if (++done % NOTIFY_BATCH == 0) vhu_vring_notify(vr);
  }
  vhu_vring_notify(vr);
  if (rc == -EIO)
    blk_log(dev, VHU_LOG_WARNING, "queue %u is broken; waiting for the front-end to reset it",
            q->index);
}

/* ---- Device callbacks (control thread) ------------------------------------ */

static uint64_t get_features(void* ud) {
  const struct blk_dev* dev = ud;
  uint64_t f = VHU_F_VERSION_1 | VHU_F_RING_INDIRECT_DESC | VHU_F_RING_EVENT_IDX |
               1ULL << VBLK_F_SIZE_MAX | 1ULL << VBLK_F_SEG_MAX | 1ULL << VBLK_F_BLK_SIZE |
               1ULL << VBLK_F_FLUSH | 1ULL << VBLK_F_CONFIG_WCE;
  if (dev->read_only)
    f |= 1ULL << VBLK_F_RO;
  else
    f |= 1ULL << VBLK_F_DISCARD | 1ULL << VBLK_F_WRITE_ZEROES;
  if (dev->num_queues > 1) f |= 1ULL << VBLK_F_MQ;
  return f;
}

static uint64_t session_total(const struct blk_dev* dev, bool errors) {
  uint64_t sum = 0;
  for (unsigned i = 0; i < dev->num_queues; i++) {
    const struct blk_stats* s = &dev->queues[i].st;
    if (errors) {
      sum += atomic_load(&s->errors) + atomic_load(&s->unsupported);
    } else {
      sum += atomic_load(&s->reads) + atomic_load(&s->writes) + atomic_load(&s->flushes) +
             atomic_load(&s->discards) + atomic_load(&s->write_zeroes) + atomic_load(&s->get_ids) +
             atomic_load(&s->unsupported) + atomic_load(&s->errors);
    }
  }
  return sum;
}

/* A front-end may acknowledge features more than once per session (QEMU
 * does at start-up and again when the driver starts the device): the
 * session line at the end names the last set. */
static int features_acked(uint64_t features, void* ud) {
  struct blk_dev* dev = ud;
  dev->session_features = features;
  blk_log(dev, VHU_LOG_DEBUG, "features acked: 0x%" PRIx64, features);
  if (!dev->in_session) {
    dev->in_session = true;
    dev->session_requests = session_total(dev, false);
    dev->session_errors = session_total(dev, true);
    blk_log(dev, VHU_LOG_INFO, "session started: %" PRIu64 " sectors, %u queue(s)%s",
            atomic_load(&dev->capacity), dev->num_queues, dev->read_only ? ", read-only" : "");
  }
  return 0;
}

static void device_reset(void* ud) {
  struct blk_dev* dev = ud;
  if (!dev->in_session) return;
  dev->in_session = false;
  blk_log(dev, VHU_LOG_INFO,
          "session ended: features 0x%" PRIx64 ", %" PRIu64 " requests, %" PRIu64 " failed",
          dev->session_features, session_total(dev, false) - dev->session_requests,
          session_total(dev, true) - dev->session_errors);
}

static int get_config(uint32_t offset, void* buf, uint32_t size, void* ud) {
  const struct blk_dev* dev = ud;
  uint8_t cfg[CFG_BYTES] = {0};
  if ((uint64_t)offset + size > sizeof cfg) return -EINVAL;
  put_le64(cfg + CFG_CAPACITY, atomic_load_explicit(&dev->capacity, memory_order_acquire));
  put_le32(cfg + CFG_SIZE_MAX, dev->size_max);
  put_le32(cfg + CFG_SEG_MAX, dev->seg_max);
  put_le32(cfg + CFG_BLK_SIZE, dev->blk_size);
  cfg[CFG_WRITEBACK] = atomic_load(&dev->writeback);
  put_le16(cfg + CFG_NUM_QUEUES, dev->num_queues);
  if (!dev->read_only) {
    const uint32_t align = dev->blk_size >> SECTOR_SHIFT;
    put_le32(cfg + CFG_MAX_DISCARD_SECTORS, MAX_DWZ_SECTORS);
    put_le32(cfg + CFG_MAX_DISCARD_SEG, MAX_DWZ_SEGS);
    put_le32(cfg + CFG_DISCARD_ALIGNMENT, align ? align : 1);
    put_le32(cfg + CFG_MAX_WZ_SECTORS, MAX_DWZ_SECTORS);
    put_le32(cfg + CFG_MAX_WZ_SEG, MAX_DWZ_SEGS);
    cfg[CFG_WZ_MAY_UNMAP] = 1;
  }
  memcpy(buf, cfg + offset, size);
  return 0;
}

/* Only the cache mode byte is writable. */
static int set_config(uint32_t offset, const void* buf, uint32_t size, uint32_t flags, void* ud) {
  struct blk_dev* dev = ud;
  (void)flags;
  if (offset != CFG_WRITEBACK || size != 1) return -ENOTSUP;
  uint8_t v = *(const uint8_t*)buf;
  if (v > 1) return -EINVAL;
  atomic_store(&dev->writeback, v);
  blk_log(dev, VHU_LOG_INFO, "cache mode set to %s", v ? "write-back" : "write-through");
  return 0;
}

/* ---- Signals, resize, counters -------------------------------------------- */

static void resize(struct blk_dev* dev) {
  int64_t bytes = image_bytes(dev);
  if (bytes < 0) {
    blk_log(dev, VHU_LOG_ERROR, "resize: cannot read the size of %s: %s", dev->path,
            strerror((int)-bytes));
    return;
  }
  uint64_t cap = capacity_for(dev, (uint64_t)bytes);
  uint64_t old = atomic_exchange(&dev->capacity, cap);
  if (cap == old) {
    blk_log(dev, VHU_LOG_INFO, "resize: %s still has %" PRIu64 " sectors", dev->path, cap);
    return;
  }
  blk_log(dev, cap < old ? VHU_LOG_WARNING : VHU_LOG_INFO,
          "resize: capacity %" PRIu64 " -> %" PRIu64 " sectors", old, cap);
  int rc = vhu_daemon_config_changed(dev->daemon);
  if (rc == -ENOTCONN)
    blk_log(dev, VHU_LOG_INFO, "resize: no front-end connected; the next one sees the new size");
  else if (rc != 0)
    blk_log(dev, VHU_LOG_WARNING, "resize: could not tell the front-end: %s", vhu_strerror(rc));
  else
    blk_log(dev, VHU_LOG_INFO, "resize: front-end notified");
}

static void print_stats(const struct blk_dev* dev) {
  for (unsigned i = 0; i < dev->num_queues; i++) {
    const struct blk_stats* s = &dev->queues[i].st;
    fprintf(stderr,
            "vhu-blk: stats: queue=%u reads=%" PRIu64 " read_bytes=%" PRIu64 " writes=%" PRIu64
            " write_bytes=%" PRIu64 " flushes=%" PRIu64 " discards=%" PRIu64
            " write_zeroes=%" PRIu64 " get_id=%" PRIu64 " unsupported=%" PRIu64 " errors=%" PRIu64
            " bounced=%" PRIu64 "\n",
            i, atomic_load(&s->reads), atomic_load(&s->read_bytes), atomic_load(&s->writes),
            atomic_load(&s->write_bytes), atomic_load(&s->flushes), atomic_load(&s->discards),
            atomic_load(&s->write_zeroes), atomic_load(&s->get_ids), atomic_load(&s->unsupported),
            atomic_load(&s->errors), atomic_load(&s->bounced));
  }
}

struct signal_thread {
  struct blk_dev* dev;
  sigset_t set;
};

/* SIGUSR2 only ends this thread (sent by main when the daemon returned). */
static void* signal_main(void* arg) {
  struct signal_thread* st = arg;
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&st->set, &si);
    if (sig < 0) continue;
    switch (sig) {
      case SIGHUP:
        resize(st->dev);
        break;
      case SIGUSR1:
        print_stats(st->dev);
        break;
      case SIGINT:
      case SIGTERM:
        blk_log(st->dev, VHU_LOG_INFO, "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        vhu_daemon_stop(st->dev->daemon);
        return NULL;
      default:
        return NULL;
    }
  }
}

/* ---- Setup -------------------------------------------------------------- */

static void usage(FILE* f) {
  fprintf(f,
          "usage: vhu-blk --socket-path=PATH --image=FILE [options]\n"
          "A vhost-user virtio-blk back-end for a raw image file or a block device.\n"
          "QEMU: -chardev socket,id=c0,path=PATH -device vhost-user-blk-pci,chardev=c0\n"
          "\n"
          "  --socket-path=PATH  unix socket to listen on for the front-end\n"
          "  --image=FILE        raw image file or block device to serve\n"
          "  --read-only         open the image read-only and offer the RO feature;\n"
          "                      writes, discards and write-zeroes fail with IOERR\n"
          "  --queues=N          request queues, 1..256 (default 1; MQ when > 1)\n"
          "  --workers=N         worker threads, 0..64 (default: one per queue, at\n"
          "                      most 64); queue i runs on worker i %% N, and 0\n"
          "                      serves every queue on the control thread\n"
          "  --queue-size=N      largest queue size accepted, power of two up to\n"
          "                      32768 (default 1024)\n"
          "  --seg-max=N         data segments per request the guest may use\n"
          "                      (default: queue size - 2, at most 126, which fits\n"
          "                      QEMU's default queue size of 128)\n"
          "  --serial=ID         device ID the guest reads (GET_ID; at most 20 bytes;\n"
          "                      default: the image's file name)\n"
          "  --block-size=N      logical block size told to the guest, a power of two\n"
          "                      from 512 to 65536 (default: 512 for files, the\n"
          "                      logical block size of a block device, the O_DIRECT\n"
          "                      alignment with --direct; at most 4096)\n"
          "  --direct            bypass the host page cache (O_DIRECT); requests\n"
          "                      whose buffers or range are not aligned go through\n"
          "                      an aligned bounce buffer\n"
          "  --direct-align=N    O_DIRECT offset/length alignment to assume instead\n"
          "                      of the detected one (a multiple of it)\n"
          "  --write-through     start with the write cache off: every write is\n"
          "                      followed by fdatasync (the guest may change it)\n"
          "  --no-lock           do not take the advisory lock on the image (flock:\n"
          "                      exclusive, shared with --read-only)\n"
          "  --verbose           log protocol events (twice: debug, incl. every\n"
          "                      rejected request)\n"
          "  --quiet             log only warnings and errors\n"
          "  --version           print the version and exit\n"
          "  --help              this text\n"
          "\n"
          "Signals: SIGINT/SIGTERM stop (exit 0); SIGHUP re-reads the image size and\n"
          "tells the front-end when it changed (grow the file first); SIGUSR1 prints\n"
          "the per-queue counters, which are also printed at exit.\n");
}

static bool parse_uint(const char* s, unsigned long lo, unsigned long hi, unsigned long* out) {
  char* end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static bool is_pow2(unsigned long v) { return v && !(v & (v - 1)); }

/* Logical block size of a block device (512 for files). */
static uint32_t logical_block_size(const struct blk_dev* dev) {
  int lbs;
  if (dev->is_bdev && ioctl(dev->fd, BLKSSZGET, &lbs) == 0 && lbs >= (int)SECTOR_SIZE &&
      is_pow2((unsigned long)lbs))
    return (uint32_t)lbs;
  return SECTOR_SIZE;
}

/* O_DIRECT offset alignment for the open image. */
static uint32_t detect_dio_align(const struct blk_dev* dev) {
  if (dev->is_bdev) return logical_block_size(dev);
#ifdef STATX_DIOALIGN
  struct statx sx;
  if (statx(dev->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
      (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align >= 1 &&
      is_pow2(sx.stx_dio_offset_align))
    return sx.stx_dio_offset_align < SECTOR_SIZE ? SECTOR_SIZE : sx.stx_dio_offset_align;
#endif
  return BUF_ALIGN; /* unknown: the largest common requirement */
}

int main(int argc, char** argv) {
  const char *sock = NULL, *image = NULL, *serial = NULL;
  unsigned long queues = 1, workers = ULONG_MAX, queue_size = 1024, seg_max = 0, block_size = 0,
                direct_align = 0;
  bool read_only = false, direct = false, write_through = false, lock = true;
  int verbose = 0, quiet = 0;
  enum {
    OPT_QUEUE_SIZE = 256,
    OPT_SEG_MAX,
    OPT_BLOCK_SIZE,
    OPT_DIRECT_ALIGN,
    OPT_WRITE_THROUGH,
    OPT_NO_LOCK,
    OPT_VERSION
  };
  static const struct option opts[] = {{"socket-path", required_argument, 0, 's'},
                                       {"image", required_argument, 0, 'i'},
                                       {"read-only", no_argument, 0, 'r'},
                                       {"queues", required_argument, 0, 'q'},
                                       {"workers", required_argument, 0, 'w'},
                                       {"queue-size", required_argument, 0, OPT_QUEUE_SIZE},
                                       {"seg-max", required_argument, 0, OPT_SEG_MAX},
                                       {"serial", required_argument, 0, 'S'},
                                       {"block-size", required_argument, 0, OPT_BLOCK_SIZE},
                                       {"direct", no_argument, 0, 'd'},
                                       {"direct-align", required_argument, 0, OPT_DIRECT_ALIGN},
                                       {"write-through", no_argument, 0, OPT_WRITE_THROUGH},
                                       {"no-lock", no_argument, 0, OPT_NO_LOCK},
                                       {"verbose", no_argument, 0, 'v'},
                                       {"quiet", no_argument, 0, 'Q'},
                                       {"version", no_argument, 0, OPT_VERSION},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "s:i:rq:w:S:dvQh", opts, NULL)) != -1) {
    bool ok = true;
    switch (c) {
      case 's':
        sock = optarg;
        break;
      case 'i':
        image = optarg;
        break;
      case 'r':
        read_only = true;
        break;
      case 'q':
        ok = parse_uint(optarg, 1, 256, &queues);
        break;
      case 'w':
        ok = parse_uint(optarg, 0, 64, &workers);
        break;
      case OPT_QUEUE_SIZE:
        ok = parse_uint(optarg, 4, 32768, &queue_size) && is_pow2(queue_size);
        break;
      case OPT_SEG_MAX:
        ok = parse_uint(optarg, 1, 32766, &seg_max);
        break;
      case 'S':
        serial = optarg;
        ok = strlen(serial) <= VBLK_ID_BYTES;
        break;
      case OPT_BLOCK_SIZE:
        ok = parse_uint(optarg, 512, 65536, &block_size) && is_pow2(block_size);
        break;
      case 'd':
        direct = true;
        break;
      case OPT_DIRECT_ALIGN:
        ok = parse_uint(optarg, 512, 65536, &direct_align) && is_pow2(direct_align);
        break;
      case OPT_WRITE_THROUGH:
        write_through = true;
        break;
      case OPT_NO_LOCK:
        lock = false;
        break;
      case 'v':
        verbose++;
        break;
      case 'Q':
        quiet = 1;
        break;
      case OPT_VERSION: {
        int ma, mi, pa;
        vhu_version(&ma, &mi, &pa);
        printf("vhu-blk (libvhostuser-cxx %d.%d.%d)\n", ma, mi, pa);
        return 0;
      }
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
    if (!ok) {
      const char* name = "?";
      for (const struct option* o = opts; o->name; o++)
        if (o->val == c) name = o->name;
      fprintf(stderr, "vhu-blk: invalid value for --%s: '%s' (see --help)\n", name, optarg);
      return 2;
    }
  }
  if (!sock || !image || optind != argc) {
    usage(stderr);
    return 2;
  }
  if (seg_max > queue_size - 2) {
    fprintf(stderr, "vhu-blk: --seg-max must be at most the queue size minus 2 (%lu)\n",
            queue_size - 2);
    return 2;
  }

  struct blk_dev dev = {.path = image, .read_only = read_only, .direct = direct};
  dev.log_level = quiet ? VHU_LOG_WARNING : verbose > 1 ? VHU_LOG_DEBUG : VHU_LOG_INFO;
  dev.num_queues = (uint16_t)queues;
  dev.fd = open(image, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0));
  if (dev.fd < 0) {
    fprintf(stderr, "vhu-blk: cannot open %s: %s%s\n", image, strerror(errno),
            direct && errno == EINVAL ? " (the file system may not support O_DIRECT)" : "");
    return 1;
  }
  struct stat st;
  if (fstat(dev.fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
    fprintf(stderr, "vhu-blk: %s is not a regular file or a block device\n", image);
    return 1;
  }
  dev.is_bdev = S_ISBLK(st.st_mode);
  if (lock && flock(dev.fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
    if (errno == EWOULDBLOCK)
      fprintf(stderr, "vhu-blk: %s is locked by another process (see --no-lock)\n", image);
    else
      fprintf(stderr, "vhu-blk: cannot lock %s: %s\n", image, strerror(errno));
    return 1;
  }
  if (direct) {
    uint32_t detected = detect_dio_align(&dev);
    dev.dio_align = detected;
    if (direct_align) {
      if (direct_align % detected) {
        fprintf(stderr, "vhu-blk: --direct-align=%lu is not a multiple of %u\n", direct_align,
                detected);
        return 2;
      }
      dev.dio_align = (uint32_t)direct_align;
    }
  }
  /* Default block size: what O_DIRECT or the block device needs, so that a
   * Linux guest never sends partial blocks (at most 4096, the page size). */
  uint32_t natural = direct ? dev.dio_align : logical_block_size(&dev);
  dev.blk_size = block_size ? (uint32_t)block_size : natural > 4096 ? 4096 : natural;
  dev.seg_max =
      seg_max ? (uint32_t)seg_max : (uint32_t)(queue_size - 2 < 126 ? queue_size - 2 : 126);
  dev.size_max = DEFAULT_SIZE_MAX;
  atomic_init(&dev.writeback, write_through ? 0 : 1);

  int64_t bytes = image_bytes(&dev);
  if (bytes < 0) {
    fprintf(stderr, "vhu-blk: cannot read the size of %s: %s\n", image, strerror((int)-bytes));
    return 1;
  }
  atomic_init(&dev.capacity, capacity_for(&dev, (uint64_t)bytes));
  if (((uint64_t)atomic_load(&dev.capacity) << SECTOR_SHIFT) != (uint64_t)bytes)
    fprintf(stderr, "vhu-blk: warning: the last %" PRIu64 " bytes of %s are not served\n",
            (uint64_t)bytes - (atomic_load(&dev.capacity) << SECTOR_SHIFT), image);

  /* Default serial: the file name, cut to the 20 bytes the protocol has. */
  if (!serial) {
    const char* slash = strrchr(image, '/');
    serial = slash && slash[1] ? slash + 1 : image;
  }
  /* Zero-padded; a 20-byte ID has no terminating NUL, as the spec allows. */
  memcpy(dev.serial, serial, strnlen(serial, sizeof dev.serial));

  void* z;
  if (posix_memalign(&z, BUF_ALIGN, ZERO_CHUNK) != 0) {
    fprintf(stderr, "vhu-blk: out of memory\n");
    return 1;
  }
  dev.zeroes = memset(z, 0, ZERO_CHUNK);
  dev.queues = calloc(queues, sizeof *dev.queues);
  if (!dev.queues) {
    fprintf(stderr, "vhu-blk: out of memory\n");
    return 1;
  }
  for (unsigned i = 0; i < queues; i++) {
    dev.queues[i].dev = &dev;
    dev.queues[i].index = (uint16_t)i;
  }
  pthread_mutex_init(&dev.rmw_lock, NULL);

  vhu_backend_ops ops = {
      .struct_size = sizeof ops,
      .num_queues = (uint16_t)queues,
      .max_queue_size = (uint16_t)queue_size,
      .get_features = get_features,
      .features_acked = features_acked,
      .get_config = get_config,
      .set_config = set_config,
      .handle_queue = handle_queue,
      .device_reset = device_reset,
  };
  vhu_error* err = NULL;
  if (vhu_daemon_new(&ops, &dev, NULL, &dev.daemon, &err) != 0) {
    fprintf(stderr, "vhu-blk: %s\n", vhu_error_message(err));
    vhu_error_free(err);
    return 1;
  }
  vhu_daemon_set_log(dev.daemon, library_log,
                     verbose > 1 ? VHU_LOG_DEBUG
                     : verbose   ? VHU_LOG_INFO
                                 : VHU_LOG_WARNING,
                     NULL);
  if (workers == ULONG_MAX) workers = queues < 64 ? queues : 64;
  int rc = vhu_daemon_set_workers(dev.daemon, (unsigned)workers);
  for (unsigned i = 0; rc == 0 && workers > 0 && i < queues; i++)
    rc = vhu_daemon_assign_queue(dev.daemon, (uint16_t)i, (unsigned)(i % workers));
  if (rc != 0) {
    fprintf(stderr, "vhu-blk: cannot set up workers: %s\n", vhu_strerror(rc));
    vhu_daemon_free(dev.daemon);
    return 1;
  }
  if (vhu_daemon_listen(dev.daemon, sock, &err) != 0) {
    fprintf(stderr, "vhu-blk: %s\n", vhu_error_message(err));
    vhu_error_free(err);
    vhu_daemon_free(dev.daemon);
    return 1;
  }

  /* Every thread created from here on inherits the blocked signals; only
   * the signal thread takes them, with sigwaitinfo. */
  struct signal_thread sigt = {.dev = &dev};
  sigemptyset(&sigt.set);
  sigaddset(&sigt.set, SIGINT);
  sigaddset(&sigt.set, SIGTERM);
  sigaddset(&sigt.set, SIGHUP);
  sigaddset(&sigt.set, SIGUSR1);
  sigaddset(&sigt.set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &sigt.set, NULL);
  signal(SIGPIPE, SIG_IGN);
  pthread_t sig_thread;
  if (pthread_create(&sig_thread, NULL, signal_main, &sigt) != 0) {
    fprintf(stderr, "vhu-blk: cannot create the signal thread\n");
    vhu_daemon_free(dev.daemon);
    return 1;
  }

  blk_log(&dev, VHU_LOG_INFO,
          "serving %s (%s%s%s, %" PRIu64
          " sectors, block size %u, %lu queue(s), %lu worker(s))"
          " on %s",
          image, dev.is_bdev ? "block device" : "file", read_only ? ", read-only" : "",
          direct ? ", O_DIRECT" : "", atomic_load(&dev.capacity), dev.blk_size, queues, workers,
          sock);
  rc = vhu_daemon_run(dev.daemon, &err);
  if (rc != 0) fprintf(stderr, "vhu-blk: %s\n", vhu_error_message(err));
  vhu_error_free(err);

  pthread_kill(sig_thread, SIGUSR2); /* no-op if it already returned on a stop signal */
  pthread_join(sig_thread, NULL);
  vhu_daemon_free(dev.daemon);
  if (!quiet) print_stats(&dev);
  for (unsigned i = 0; i < queues; i++) {
    free(dev.queues[i].iov);
    free(dev.queues[i].bounce);
  }
  free(dev.queues);
  free(dev.zeroes);
  pthread_mutex_destroy(&dev.rmw_lock);
  close(dev.fd);
  return rc == 0 ? 0 : 1;
}
