/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhu-net: a vhost-user virtio-net device. Serves front-ends (QEMU's
 * -netdev vhost-user, DPDK's net_virtio_user) one after another until SIGINT
 * or SIGTERM.
 *
 *   vhu-net --socket-path=PATH [--queues=N] [--workers=W] [--poll] [--verbose]
 *           (--tap=IFNAME | --loopback | --sink | --generate=BYTES) [--mac=MAC]
 *
 * Queue 2k receives (device -> driver) and queue 2k+1 transmits for queue
 * pair k; both queues of a pair live on the same worker thread, so a pair's
 * handlers never race with each other. The control queue is the VMM's
 * business and is not offered.
 *
 * Receive buffers are filled behind a 12-byte struct virtio_net_hdr_mrg_rxbuf
 * (10 bytes for a legacy driver without MRG_RXBUF). With MRG_RXBUF a packet
 * that does not fit one receive buffer is spread over several, each pushed
 * with its own written length and the first header carrying num_buffers.
 * Receive buffers taken from the ring but not yet filled are kept in a small
 * per-pair stash, so a packet that finds too little room consumes nothing
 * and waits for the driver's next kick on the receive queue.
 *
 * Counters per queue are printed to stderr on SIGUSR1 and at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include <vhostuser/vhostuser.h>

/* virtio-net feature bits (virtio 1.2, 5.1.3). */
#define NET_F_MRG_RXBUF (1ULL << 15)
#define NET_F_MQ (1ULL << 22)
#define F_IN_ORDER (1ULL << 35) /* VIRTIO_F_IN_ORDER */

#define MAX_PAIRS 128  /* 256 virtqueues */
#define MAX_WORKERS 64 /* the library's limit */
#define RX_STASH 128   /* receive buffers one packet may span */
#define BATCH 256      /* chains handled between two notifications */
#define TAP_BURST 64   /* tap reads per wake-up */
#define TAP_FRAME (65536 + 64)
#define MAX_HDR 12

enum mode { MODE_NONE, MODE_TAP, MODE_LOOPBACK, MODE_SINK, MODE_GENERATE };

static const char* const mode_names[] = {"none", "tap", "loopback", "sink", "generate"};

/* Written by the queue's worker only, read by the main thread. */
struct counter {
  _Atomic uint64_t packets;
  _Atomic uint64_t bytes;
  _Atomic uint64_t drops;
  _Atomic uint64_t buffers; /* rx: receive buffers used (more than packets with MRG_RXBUF) */
};

/* A receive buffer popped from the ring and not yet filled. */
struct rx_buf {
  vhu_chain* chain;
  const struct iovec* iov;
  unsigned niov;
  size_t room;
};

struct net;

struct pair {
  struct net* net;
  unsigned index;
  unsigned worker;
  vhu_vring* rx;
  vhu_vring* tx;
  /* Per session, set when a queue of the pair starts. */
  size_t hdr_len;
  int mrg;
  /* Receive buffers popped but not used yet, in pop order. */
  struct rx_buf stash[RX_STASH];
  unsigned nstash;
  size_t stash_room;
  /* --tap */
  int tap_fd;
  vhu_watch* tap_watch; /* NULL while reading from the tap is paused */
  uint8_t* frame;       /* one frame read from the tap (header included) */
  size_t pending;       /* bytes in `frame` waiting for receive buffers */
  struct counter rxc;
  struct counter txc;
};

struct net {
  enum mode mode;
  unsigned npairs;
  unsigned nworkers;
  int poll;
  vhu_daemon* daemon;
  _Atomic uint64_t acked;
  const char* tap_name;
  uint8_t mac[6];
  uint8_t* gen_frame; /* --generate */
  size_t gen_len;
  struct pair* pairs;
};

/* ---- counters ---------------------------------------------------------- */

static inline void bump(_Atomic uint64_t* a, uint64_t by) {
  /* Single writer: a relaxed load and store is enough and costs nothing. */
  atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + by,
                        memory_order_relaxed);
}

static inline uint64_t get(_Atomic uint64_t* a) {
  return atomic_load_explicit(a, memory_order_relaxed);
}

static void print_stats(struct net* n, const char* when) {
  uint64_t t[6] = {0};
  for (unsigned i = 0; i < n->npairs; i++) {
    struct pair* p = &n->pairs[i];
    struct counter* c[2] = {&p->rxc, &p->txc};
    for (unsigned d = 0; d < 2; d++) {
      uint64_t pk = get(&c[d]->packets), by = get(&c[d]->bytes), dr = get(&c[d]->drops);
      fprintf(stderr,
              "vhu-net: stats (%s): queue %u (%s of pair %u): packets=%" PRIu64 " bytes=%" PRIu64
              " drops=%" PRIu64,
              when, 2 * i + d, d ? "tx" : "rx", i, pk, by, dr);
      if (d == 0) fprintf(stderr, " buffers=%" PRIu64, get(&c[d]->buffers));
      fputc('\n', stderr);
      t[3 * d] += pk;
      t[3 * d + 1] += by;
      t[3 * d + 2] += dr;
    }
  }
  fprintf(stderr,
          "vhu-net: stats (%s): total rx_packets=%" PRIu64 " rx_bytes=%" PRIu64 " rx_drops=%" PRIu64
          " tx_packets=%" PRIu64 " tx_bytes=%" PRIu64 " tx_drops=%" PRIu64 "\n",
          when, t[0], t[1], t[2], t[3], t[4], t[5]);
  fflush(stderr);
}

/* ---- receive side: filling the driver's buffers -------------------------- */

static inline struct pair* pair_of(struct net* n, vhu_vring* vr) {
  return &n->pairs[vhu_vring_index(vr) / 2];
}

static inline int rx_ready(struct pair* p) {
  return vhu_vring_is_started(p->rx) && vhu_vring_is_enabled(p->rx) && !vhu_vring_is_broken(p->rx);
}

/* Pops receive buffers into the stash until `need` bytes fit. Returns 1 when
 * they do, 0 when the ring ran dry (the stash is kept for later), -1 when
 * the packet can never fit or the ring failed. */
static int stash_fill(struct pair* p, size_t need) {
  const unsigned limit = p->mrg ? RX_STASH : 1;
  while (p->stash_room < need) {
    if (p->nstash >= limit || p->nstash >= vhu_vring_size(p->rx)) return -1;
    vhu_chain* c;
    int rc = vhu_vring_pop(p->rx, &c);
    if (rc == -EAGAIN) return 0;
    if (rc != 0) return -1;
    unsigned niov;
    const struct iovec* iov = vhu_chain_writable(c, &niov);
    size_t room = vhu_chain_writable_len(c);
    if (room == 0) {
      /* Nothing the device could write into: hand it straight back. */
      vhu_vring_push(p->rx, c, 0);
      continue;
    }
    p->stash[p->nstash++] = (struct rx_buf){c, iov, niov, room};
    p->stash_room += room;
  }
  return 1;
}

/* Gives every stashed buffer back: unpopped in reverse pop order while the
 * ring allows it, otherwise returned to the driver empty. */
static void stash_release(struct pair* p) {
  while (p->nstash > 0 && vhu_vring_unpop(p->rx, p->stash[p->nstash - 1].chain) == 0) p->nstash--;
  for (unsigned i = 0; i < p->nstash; i++) vhu_vring_push(p->rx, p->stash[i].chain, 0);
  if (p->nstash) vhu_vring_notify(p->rx);
  p->nstash = 0;
  p->stash_room = 0;
}

/* Cursor over the writable iovecs of consecutive stashed buffers. */
struct wcur {
  struct rx_buf* b;
  unsigned nb;
  unsigned bi, ii;
  size_t off;
  uint32_t written[RX_STASH];
};

static void wput(struct wcur* w, const uint8_t* s, size_t n) {
  while (n > 0 && w->bi < w->nb) {
    const struct iovec* v = &w->b[w->bi].iov[w->ii];
    if (w->off == v->iov_len) {
      w->off = 0;
      if (++w->ii == w->b[w->bi].niov) {
        w->ii = 0;
        w->bi++;
      }
      continue;
    }
    size_t m = v->iov_len - w->off;
    if (m > n) m = n;
    memcpy((uint8_t*)v->iov_base + w->off, s, m);
    w->off += m;
    w->written[w->bi] += (uint32_t)m;
    s += m;
    n -= m;
  }
}

/* Returns the first k stashed buffers to the driver as one packet. The
 * driver must see all of them at once: a driver that finds the header's
 * num_buffers larger than what the used ring holds takes the packet as
 * broken (Linux and DPDK both do), so with more than one buffer the used
 * index must move once, after every element is written. */
static void push_packet(struct pair* p, unsigned k, const uint32_t* written) {
  vhu_chain* chains[RX_STASH];
  for (unsigned i = 0; i < k; i++) chains[i] = p->stash[i].chain;
  vhu_vring_push_many(p->rx, chains, written, k);
}

/* Copies a packet of `len` bytes, found in `src` after `skip` bytes, into
 * the receive queue behind a fresh virtio-net header. Returns 1 when it was
 * delivered (not yet notified), 0 when the receive queue has no room for it
 * (nothing consumed), -1 when it was dropped (counted). */
static int deliver(struct pair* p, const struct iovec* src, unsigned nsrc, size_t skip,
                   size_t len) {
  const size_t hl = p->hdr_len;
  const size_t need = hl + len;
  int rc = stash_fill(p, need);
  if (rc <= 0) {
    if (rc < 0) bump(&p->rxc.drops, 1);
    return rc;
  }
  unsigned k = 0;
  size_t room = 0;
  while (room < need) room += p->stash[k++].room;

  uint8_t hdr[MAX_HDR] = {0};
  if (hl == 12) {
    hdr[10] = (uint8_t)(k & 0xff); /* num_buffers, little endian */
    hdr[11] = (uint8_t)(k >> 8);
  }
  struct rx_buf* b = p->stash;
  if (k == 1 && nsrc == 1 && b[0].iov[0].iov_len >= need && src[0].iov_len - skip >= len) {
    uint8_t* d = b[0].iov[0].iov_base;
    memcpy(d, hdr, hl);
    memcpy(d + hl, (const uint8_t*)src[0].iov_base + skip, len);
    vhu_vring_push(p->rx, b[0].chain, (uint32_t)need);
  } else {
    struct wcur w;
    w.b = b;
    w.nb = k;
    w.bi = w.ii = 0;
    w.off = 0;
    memset(w.written, 0, k * sizeof w.written[0]);
    wput(&w, hdr, hl);
    size_t left = len;
    for (unsigned i = 0; i < nsrc && left > 0; i++) {
      size_t l = src[i].iov_len;
      const uint8_t* s = src[i].iov_base;
      if (skip >= l) {
        skip -= l;
        continue;
      }
      s += skip;
      l -= skip;
      skip = 0;
      if (l > left) l = left;
      wput(&w, s, l);
      left -= l;
    }
    push_packet(p, k, w.written);
  }
  p->nstash -= k;
  p->stash_room -= room;
  if (p->nstash) memmove(b, b + k, p->nstash * sizeof *b);
  bump(&p->rxc.packets, 1);
  bump(&p->rxc.bytes, len);
  bump(&p->rxc.buffers, k);
  return 1;
}

/* ---- transmit side ------------------------------------------------------- */

/* --sink, --generate and --tap: count and complete what the pair
 * transmits; with a tap device every packet, header included, is one
 * writev to it first (a failed write counts as a drop). */
static void drain_tx(struct pair* p) {
  const size_t hl = p->hdr_len;
  uint64_t pk = 0, by = 0, dr = 0;
  unsigned batch = 0;
  vhu_chain* c;
  while (vhu_vring_pop(p->tx, &c) == 0) {
    size_t l = vhu_chain_readable_len(c);
    int ok = l >= hl;
    if (p->tap_fd >= 0) {
      unsigned n;
      const struct iovec* iov = vhu_chain_readable(c, &n);
      ssize_t w = -1;
      if (l > hl) {
        do {
          w = writev(p->tap_fd, iov, (int)n);
        } while (w < 0 && errno == EINTR);
      }
      ok = w >= 0;
    }
    if (ok) {
      pk++;
      by += l - hl;
    } else {
      dr++;
    }
    vhu_vring_push(p->tx, c, 0);
    if (++batch == BATCH) {
      vhu_vring_notify(p->tx);
      batch = 0;
    }
  }
  vhu_vring_notify(p->tx);
  bump(&p->txc.packets, pk);
  bump(&p->txc.bytes, by);
  bump(&p->txc.drops, dr);
}

/* --loopback: what the pair transmits comes back on its receive queue. A
 * packet that finds no receive buffer is put back on the transmit ring and
 * retried when the driver kicks the receive queue. */
static void loopback(struct pair* p) {
  const size_t hl = p->hdr_len;
  unsigned batch = 0;
  vhu_chain* c;
  while (vhu_vring_pop(p->tx, &c) == 0) {
    size_t l = vhu_chain_readable_len(c);
    if (l < hl || !rx_ready(p)) {
      bump(&p->txc.drops, 1);
    } else {
      unsigned n;
      const struct iovec* iov = vhu_chain_readable(c, &n);
      int r = deliver(p, iov, n, hl, l - hl);
      if (r == 0 && vhu_vring_unpop(p->tx, c) == 0) break;
      if (r == 0) bump(&p->rxc.drops, 1); /* could not keep it */
      bump(&p->txc.packets, 1);
      bump(&p->txc.bytes, l - hl);
    }
    vhu_vring_push(p->tx, c, 0);
    if (++batch == BATCH) {
      vhu_vring_notify(p->rx);
      vhu_vring_notify(p->tx);
      batch = 0;
    }
  }
  vhu_vring_notify(p->rx);
  vhu_vring_notify(p->tx);
}

/* ---- --tap receive side ---------------------------------------------------- */

static void tap_readable(int fd, uint32_t events, void* ud);

static void tap_pause(struct pair* p) {
  if (p->tap_watch) {
    vhu_watch_free(p->tap_watch);
    p->tap_watch = NULL;
  }
}

static void tap_resume(struct pair* p) {
  if (p->tap_watch) return;
  int rc = vhu_daemon_add_watch(p->net->daemon, p->worker, p->tap_fd, VHU_WATCH_READ, tap_readable,
                                p, &p->tap_watch);
  if (rc != 0) {
    p->tap_watch = NULL;
    fprintf(stderr, "vhu-net: cannot watch the tap of pair %u: %s\n", p->index, vhu_strerror(rc));
  }
}

/* Delivers the frame waiting in p->frame. 1 when it is gone (delivered or
 * dropped), 0 when it still waits for receive buffers. */
static int tap_flush_pending(struct pair* p) {
  if (!p->pending) return 1;
  const size_t hl = p->hdr_len;
  if (p->pending <= hl) {
    bump(&p->rxc.drops, 1);
  } else {
    struct iovec v = {p->frame, p->pending};
    if (deliver(p, &v, 1, hl, p->pending - hl) == 0) return 0;
  }
  p->pending = 0;
  return 1;
}

/* Reads frames from the tap into the receive queue until the tap is empty,
 * a burst is done, or the queue runs out of buffers (then reading pauses
 * until the driver kicks the receive queue). */
static void tap_readable(int fd, uint32_t events, void* ud) {
  struct pair* p = ud;
  (void)events;
  if (!rx_ready(p)) {
    tap_pause(p);
    return;
  }
  for (unsigned i = 0; i < TAP_BURST; i++) {
    ssize_t n = read(fd, p->frame, TAP_FRAME);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        fprintf(stderr, "vhu-net: reading the tap of pair %u: %s\n", p->index, strerror(errno));
        tap_pause(p);
      }
      break;
    }
    p->pending = (size_t)n;
    if (!tap_flush_pending(p)) {
      tap_pause(p);
      break;
    }
  }
  vhu_vring_notify(p->rx);
}

/* ---- device callbacks -------------------------------------------------------- */

static uint64_t get_features(void* ud) {
  struct net* n = ud;
  uint64_t f = VHU_F_VERSION_1 | VHU_F_RING_INDIRECT_DESC | VHU_F_RING_EVENT_IDX | NET_F_MRG_RXBUF;
  if (n->npairs > 1) f |= NET_F_MQ;
  /* --sink and --generate complete every chain in the order it was made
   * available, which lets drivers use their cheaper in-order paths. */
  if (n->mode == MODE_SINK || n->mode == MODE_GENERATE) f |= F_IN_ORDER;
  return f;
}

static uint64_t get_protocol_features(void* ud) {
  (void)ud;
  /* With MQ the front-end asks GET_QUEUE_NUM, answered with ops.queue_num:
   * the number of queue pairs, as virtio-net front-ends count. */
  return VHU_PROTOCOL_F_REPLY_ACK | VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS | VHU_PROTOCOL_F_STATUS |
         VHU_PROTOCOL_F_RESET_DEVICE | VHU_PROTOCOL_F_MQ;
}

static size_t header_len(uint64_t features) {
  return (features & (VHU_F_VERSION_1 | NET_F_MRG_RXBUF)) ? 12 : 10;
}

static int features_acked(uint64_t features, void* ud) {
  struct net* n = ud;
  atomic_store(&n->acked, features);
  if (n->mode == MODE_TAP) {
    int sz = (int)header_len(features);
    for (unsigned i = 0; i < n->npairs; i++)
      if (ioctl(n->pairs[i].tap_fd, TUNSETVNETHDRSZ, &sz) < 0) return -errno;
  }
  return 0;
}

static void queue_started(vhu_vring* vr, void* ud) {
  struct net* n = ud;
  struct pair* p = pair_of(n, vr);
  uint64_t f = atomic_load(&n->acked);
  p->hdr_len = header_len(f);
  p->mrg = (f & NET_F_MRG_RXBUF) != 0;
}

static void queue_stopped(vhu_vring* vr, void* ud) {
  struct net* n = ud;
  struct pair* p = pair_of(n, vr);
  if (vr == p->rx) {
    tap_pause(p);
    if (p->pending) {
      bump(&p->rxc.drops, 1);
      p->pending = 0;
    }
    stash_release(p);
    return;
  }
  /* Complete what the driver queued before it stopped us, so that the
   * counters cover every packet it transmitted. */
  switch (n->mode) {
    case MODE_SINK:
    case MODE_GENERATE:
      drain_tx(p);
      break;
    case MODE_TAP:
      drain_tx(p);
      break;
    default:
      break;
  }
}

static void generate_rx(struct pair* p) {
  struct net* n = p->net;
  struct iovec f = {n->gen_frame, n->gen_len};
  unsigned batch = 0;
  for (;;) {
    int r = deliver(p, &f, 1, 0, n->gen_len);
    if (r == 0) break;
    if (r < 0) {
      /* Buffers too small for the frame (or a failed ring): give them back
       * empty and wait for the next kick rather than spin. */
      for (unsigned i = 0; i < p->nstash; i++) vhu_vring_push(p->rx, p->stash[i].chain, 0);
      p->nstash = 0;
      p->stash_room = 0;
      break;
    }
    if (++batch == BATCH) {
      vhu_vring_notify(p->rx);
      batch = 0;
    }
  }
  vhu_vring_notify(p->rx);
}

static void handle_queue(vhu_vring* vr, void* ud) {
  struct net* n = ud;
  struct pair* p = pair_of(n, vr);
  const int is_rx = vr == p->rx;
  switch (n->mode) {
    case MODE_SINK:
      /* Receive buffers stay posted: nothing is ever received. */
      if (!is_rx) drain_tx(p);
      break;
    case MODE_GENERATE:
      if (is_rx)
        generate_rx(p);
      else
        drain_tx(p);
      break;
    case MODE_LOOPBACK:
      loopback(p);
      break;
    case MODE_TAP:
      if (is_rx) {
        if (tap_flush_pending(p)) tap_resume(p);
        vhu_vring_notify(p->rx);
      } else {
        drain_tx(p);
      }
      break;
    case MODE_NONE:
      break;
  }
}

/* ---- setup ------------------------------------------------------------------- */

static int tap_open(const char* name, int multi_queue) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "vhu-net: cannot open /dev/net/tun: %s\n", strerror(errno));
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0);
  memcpy(ifr.ifr_name, name, strlen(name));
  int sz = 12;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    fprintf(stderr, "vhu-net: cannot attach tap %s: %s\n", name, strerror(errno));
  } else if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
    fprintf(stderr, "vhu-net: tap %s: TUNSETVNETHDRSZ: %s\n", name, strerror(errno));
  } else if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
    /* No offloads were negotiated: the tap must hand us plain frames. */
    fprintf(stderr, "vhu-net: tap %s: TUNSETOFFLOAD: %s\n", name, strerror(errno));
  } else {
    return fd;
  }
  close(fd);
  return -1;
}

static uint16_t csum16(const uint8_t* d, size_t n) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(d[i] << 8 | d[i + 1]);
  if (n & 1) s += (uint32_t)d[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

/* An Ethernet/IPv4/UDP frame of `len` bytes (198.18.0.1:9 -> 198.18.0.2:9,
 * broadcast destination, payload bytes 0, 1, 2, ...). */
static uint8_t* make_frame(const uint8_t mac[6], size_t len) {
  uint8_t* f = malloc(len);
  if (!f) return NULL;
  for (size_t i = 0; i < len; i++) f[i] = (uint8_t)i;
  memset(f, 0xff, 6);
  memcpy(f + 6, mac, 6);
  f[12] = 0x08; /* IPv4 */
  f[13] = 0x00;
  uint8_t* ip = f + 14;
  size_t ip_len = len - 14, udp_len = ip_len - 20;
  static const uint8_t ip_hdr[20] = {0x45, 0, 0,   0,  0, 0, 0x40, 0,  64, 17,
                                     0,    0, 198, 18, 0, 1, 198,  18, 0,  2};
  memcpy(ip, ip_hdr, sizeof ip_hdr);
  ip[2] = (uint8_t)(ip_len >> 8);
  ip[3] = (uint8_t)ip_len;
  uint16_t c = csum16(ip, 20);
  ip[10] = (uint8_t)(c >> 8);
  ip[11] = (uint8_t)c;
  uint8_t* udp = ip + 20;
  udp[0] = 0;
  udp[1] = 9;
  udp[2] = 0;
  udp[3] = 9;
  udp[4] = (uint8_t)(udp_len >> 8);
  udp[5] = (uint8_t)udp_len;
  udp[6] = udp[7] = 0; /* no UDP checksum */
  return f;
}

static int parse_mac(const char* s, uint8_t mac[6]) {
  unsigned v[6];
  char extra;
  if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6)
    return -1;
  for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
  return 0;
}

static int parse_uint(const char* s, unsigned long min, unsigned long max, unsigned long* out) {
  char* end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max) return -1;
  *out = v;
  return 0;
}

static void log_cb(vhu_log_level level, const char* msg, void* ud) {
  static const char* names[] = {"error", "warning", "info", "debug"};
  (void)ud;
  fprintf(stderr, "vhu-net: %s: %s\n", names[level], msg);
}

static void usage(FILE* f) {
  fprintf(f,
          "usage: vhu-net --socket-path=PATH [--queues=N] [--workers=W] [--poll] [--verbose]\n"
          "               (--tap=IFNAME | --loopback | --sink | --generate=BYTES) [--mac=MAC]\n"
          "\n"
          "A vhost-user virtio-net back-end. Serves front-ends one after another until\n"
          "SIGINT or SIGTERM, e.g. QEMU (-chardev socket,id=c0,path=PATH -netdev\n"
          "vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0) or DPDK\n"
          "(--vdev net_virtio_user0,path=PATH,queues=N).\n"
          "\n"
          "  --socket-path=PATH  unix socket to listen on for the front-end\n"
          "  --queues=N          queue pairs (1..%d, default 1); queue 2k receives and\n"
          "                      2k+1 transmits for pair k; N > 1 offers VIRTIO_NET_F_MQ\n"
          "  --workers=W         worker threads (1..%d, default N); pair k runs on worker\n"
          "                      k %% W, both of its queues on the same thread\n"
          "  --poll              busy-poll the queues instead of waiting for kicks (each\n"
          "                      worker then keeps a CPU busy)\n"
          "  --verbose           log protocol events to stderr (twice: debug)\n"
          "  --help              show this text\n"
          "\n"
          "What happens to the packets (exactly one):\n"
          "  --tap=IFNAME        bridge to a tap device (created if missing, an existing\n"
          "                      one is attached; one tap queue per pair when N > 1);\n"
          "                      needs CAP_NET_ADMIN\n"
          "  --loopback          every packet a pair transmits is received back on the\n"
          "                      same pair; a packet that finds no receive buffer waits\n"
          "                      on the transmit ring until the driver posts more\n"
          "  --sink              transmitted packets are counted and discarded\n"
          "  --generate=BYTES    every receive buffer the driver posts is filled with a\n"
          "                      BYTES-byte Ethernet/IPv4/UDP frame (42..65535, broadcast\n"
          "                      destination); transmitted packets are counted and\n"
          "                      discarded as with --sink\n"
          "  --mac=MAC           source address of generated frames (default\n"
          "                      02:00:00:00:00:01)\n"
          "\n"
          "Per-queue packet, byte and drop counters (bytes exclude the virtio-net header;\n"
          "rx queues also count the receive buffers used) are printed to stderr on\n"
          "SIGUSR1 and at exit, one line per queue and a line\n"
          "  vhu-net: stats (WHEN): total rx_packets=.. rx_bytes=.. rx_drops=.. tx_packets=..\n"
          "  tx_bytes=.. tx_drops=..\n"
          "where rx is device -> driver and tx is driver -> device; counters cover the\n"
          "whole life of the process.\n",
          MAX_PAIRS, MAX_WORKERS);
}

/* ---- main: the daemon runs in the background; this thread takes signals. ---- */

static _Atomic int g_ended;

static void on_blocked_signal(int sig) { (void)sig; }
static int g_run_rc;
static char g_run_err[512];

static void* waiter(void* arg) {
  vhu_daemon* d = arg;
  vhu_error* err = NULL;
  g_run_rc = vhu_daemon_wait(d, &err);
  if (g_run_rc != 0) snprintf(g_run_err, sizeof g_run_err, "%s", vhu_error_message(err));
  vhu_error_free(err);
  atomic_store(&g_ended, 1);
  kill(getpid(), SIGUSR2);
  return NULL;
}

static void free_net(struct net* n) {
  if (!n) return;
  if (n->pairs) {
    for (unsigned i = 0; i < n->npairs; i++) {
      if (n->pairs[i].tap_fd >= 0) close(n->pairs[i].tap_fd);
      free(n->pairs[i].frame);
    }
  }
  free(n->pairs);
  free(n->gen_frame);
}

int main(int argc, char** argv) {
  const char* sock = NULL;
  unsigned long queues = 1, workers = 0, gen_bytes = 0;
  int verbose = 0, modes = 0;
  struct net n = {.mode = MODE_NONE, .mac = {0x02, 0, 0, 0, 0, 0x01}};
  enum { OPT_TAP = 256, OPT_LOOPBACK, OPT_SINK, OPT_GENERATE, OPT_MAC, OPT_POLL, OPT_WORKERS };
  static const struct option opts[] = {{"socket-path", required_argument, 0, 's'},
                                       {"queues", required_argument, 0, 'q'},
                                       {"workers", required_argument, 0, OPT_WORKERS},
                                       {"tap", required_argument, 0, OPT_TAP},
                                       {"loopback", no_argument, 0, OPT_LOOPBACK},
                                       {"sink", no_argument, 0, OPT_SINK},
                                       {"generate", required_argument, 0, OPT_GENERATE},
                                       {"mac", required_argument, 0, OPT_MAC},
                                       {"poll", no_argument, 0, OPT_POLL},
                                       {"verbose", no_argument, 0, 'v'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "s:q:vh", opts, NULL)) != -1) {
    switch (c) {
      case 's':
        sock = optarg;
        break;
      case 'q':
        if (parse_uint(optarg, 1, MAX_PAIRS, &queues) != 0) {
          fprintf(stderr, "vhu-net: --queues must be 1..%d\n", MAX_PAIRS);
          return 2;
        }
        break;
      case OPT_WORKERS:
        if (parse_uint(optarg, 1, MAX_WORKERS, &workers) != 0) {
          fprintf(stderr, "vhu-net: --workers must be 1..%d\n", MAX_WORKERS);
          return 2;
        }
        break;
      case OPT_TAP:
        if (strlen(optarg) == 0 || strlen(optarg) >= IFNAMSIZ || strchr(optarg, '/')) {
          fprintf(stderr, "vhu-net: bad interface name '%s'\n", optarg);
          return 2;
        }
        n.mode = MODE_TAP;
        n.tap_name = optarg;
        modes++;
        break;
      case OPT_LOOPBACK:
        n.mode = MODE_LOOPBACK;
        modes++;
        break;
      case OPT_SINK:
        n.mode = MODE_SINK;
        modes++;
        break;
      case OPT_GENERATE:
        if (parse_uint(optarg, 42, 65535, &gen_bytes) != 0) {
          fprintf(stderr, "vhu-net: --generate takes a frame size of 42..65535 bytes\n");
          return 2;
        }
        n.mode = MODE_GENERATE;
        modes++;
        break;
      case OPT_MAC:
        if (parse_mac(optarg, n.mac) != 0) {
          fprintf(stderr, "vhu-net: bad MAC address '%s' (want xx:xx:xx:xx:xx:xx)\n", optarg);
          return 2;
        }
        break;
      case OPT_POLL:
        n.poll = 1;
        break;
      case 'v':
        verbose++;
        break;
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (!sock || optind != argc || modes != 1) {
    if (sock && optind == argc)
      fprintf(stderr, "vhu-net: give exactly one of --tap, --loopback, --sink, --generate\n");
    usage(stderr);
    return 2;
  }
#ifndef VHU_HAVE_SET_POLL
  if (n.poll) {
    fprintf(stderr,
            "vhu-net: --poll needs vhu_daemon_set_poll(), which this libvhostuser-cxx "
            "does not have\n");
    return 2;
  }
#endif
  n.npairs = (unsigned)queues;
  n.nworkers = workers ? (unsigned)workers : (n.npairs < MAX_WORKERS ? n.npairs : MAX_WORKERS);
  if (n.nworkers > n.npairs) n.nworkers = n.npairs;

  n.pairs = calloc(n.npairs, sizeof *n.pairs);
  if (!n.pairs) {
    fprintf(stderr, "vhu-net: out of memory\n");
    return 1;
  }
  for (unsigned i = 0; i < n.npairs; i++) {
    struct pair* p = &n.pairs[i];
    p->net = &n;
    p->index = i;
    p->worker = i % n.nworkers;
    p->hdr_len = 12;
    p->tap_fd = -1;
  }
  if (n.mode == MODE_GENERATE) {
    n.gen_len = gen_bytes;
    n.gen_frame = make_frame(n.mac, gen_bytes);
    if (!n.gen_frame) {
      fprintf(stderr, "vhu-net: out of memory\n");
      free_net(&n);
      return 1;
    }
  }
  if (n.mode == MODE_TAP) {
    for (unsigned i = 0; i < n.npairs; i++) {
      struct pair* p = &n.pairs[i];
      p->frame = malloc(TAP_FRAME);
      if (!p->frame) {
        fprintf(stderr, "vhu-net: out of memory\n");
        free_net(&n);
        return 1;
      }
      p->tap_fd = tap_open(n.tap_name, n.npairs > 1);
      if (p->tap_fd < 0) {
        free_net(&n);
        return 1;
      }
    }
  }

  vhu_backend_ops ops = {
      .struct_size = sizeof ops,
      .num_queues = (uint16_t)(2 * n.npairs),
      .max_queue_size = 1024,
      .get_features = get_features,
      .get_protocol_features = get_protocol_features,
      .features_acked = features_acked,
      .handle_queue = handle_queue,
      .queue_started = queue_started,
      .queue_stopped = queue_stopped,
      .queue_num = (uint16_t)n.npairs,
  };
  vhu_error* err = NULL;
  if (vhu_daemon_new(&ops, &n, NULL, &n.daemon, &err) != 0) {
    fprintf(stderr, "vhu-net: %s\n", vhu_error_message(err));
    vhu_error_free(err);
    free_net(&n);
    return 1;
  }
  vhu_daemon* d = n.daemon;
  vhu_daemon_set_log(d, log_cb,
                     verbose > 1 ? VHU_LOG_DEBUG
                     : verbose   ? VHU_LOG_INFO
                                 : VHU_LOG_WARNING,
                     NULL);
  int rc = vhu_daemon_set_workers(d, n.nworkers);
  for (unsigned i = 0; rc == 0 && i < n.npairs; i++) {
    rc = vhu_daemon_assign_queue(d, (uint16_t)(2 * i), n.pairs[i].worker);
    if (rc == 0) rc = vhu_daemon_assign_queue(d, (uint16_t)(2 * i + 1), n.pairs[i].worker);
  }
#ifdef VHU_HAVE_SET_POLL
  if (rc == 0 && n.poll) rc = vhu_daemon_set_poll(d, 1);
#endif
  if (rc != 0) {
    fprintf(stderr, "vhu-net: configuring the daemon: %s\n", vhu_strerror(rc));
    vhu_daemon_free(d);
    free_net(&n);
    return 1;
  }
  for (unsigned i = 0; i < n.npairs; i++) {
    n.pairs[i].rx = vhu_daemon_get_vring(d, (uint16_t)(2 * i));
    n.pairs[i].tx = vhu_daemon_get_vring(d, (uint16_t)(2 * i + 1));
  }
  if (vhu_daemon_listen(d, sock, &err) != 0) {
    fprintf(stderr, "vhu-net: %s\n", vhu_error_message(err));
    vhu_error_free(err);
    vhu_daemon_free(d);
    free_net(&n);
    return 1;
  }

  /* Every thread the daemon creates inherits this mask; only this thread
   * takes the signals, synchronously. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  /* A shell starts background jobs with SIGINT ignored, and an ignored
   * signal is discarded even while blocked: give each a handler first (it
   * never runs, the signals stay blocked). */
  struct sigaction sa = {.sa_handler = on_blocked_signal};
  sigemptyset(&sa.sa_mask);
  for (int s = 1; s < NSIG; s++)
    if (sigismember(&set, s) == 1) sigaction(s, &sa, NULL);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (vhu_daemon_start(d, &err) != 0) {
    fprintf(stderr, "vhu-net: %s\n", vhu_error_message(err));
    vhu_error_free(err);
    vhu_daemon_free(d);
    free_net(&n);
    return 1;
  }
  if (verbose)
    fprintf(stderr, "vhu-net: %s mode, %u queue pair(s) on %u worker(s), listening on %s\n",
            mode_names[n.mode], n.npairs, n.nworkers, sock);
  pthread_t wt;
  int have_waiter = pthread_create(&wt, NULL, waiter, d) == 0;
  if (!have_waiter) {
    fprintf(stderr, "vhu-net: cannot create a thread\n");
    vhu_daemon_stop(d);
  }
  while (have_waiter) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig == SIGUSR1) {
      print_stats(&n, "SIGUSR1");
    } else if (sig == SIGUSR2) {
      if (atomic_load(&g_ended)) break;
    } else {
      vhu_daemon_stop(d);
      break;
    }
  }
  if (have_waiter)
    pthread_join(wt, NULL);
  else
    g_run_rc = vhu_daemon_wait(d, NULL);
  if (g_run_rc != 0) fprintf(stderr, "vhu-net: %s\n", g_run_err);

  /* The daemon no longer runs: its loops are idle and watches can go. */
  for (unsigned i = 0; i < n.npairs; i++) tap_pause(&n.pairs[i]);
  print_stats(&n, "exit");
  vhu_daemon_free(d);
  free_net(&n);
  return g_run_rc == 0 ? 0 : 1;
}
