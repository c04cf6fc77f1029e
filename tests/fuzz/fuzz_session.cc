// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the stateful vhost-user message dispatcher, driven through
// the public C API as a hostile front-end would drive it.
//
// Per input: a socketpair; one end goes to a fresh daemon (2 queues, 0 or 1
// worker) with vhu_daemon_adopt_fd(VHU_FD_CONNECTED); the input is turned
// into a sequence of messages (header fields, payload, 0..3 fds) and guest
// actions; replies are drained without blocking. Then the harness shuts down
// its sending side and reads until the daemon closes the connection (so
// every message was handled), waits for the daemon and frees it. Afterwards
// the process must have exactly the fds and memfd mappings it had before the
// input; anything else is a leak and aborts.
//
// Guest memory: one 64 KiB memfd the harness keeps mapped ("the guest").
// fd kind 0 attaches a dup of it, so any SET_MEM_TABLE / ADD_MEM_REG the
// input builds can cover the memory that the guest actions write rings
// into. Queue q's rings sit at kQueueStride * q: desc +0, avail +0x4000,
// used +0x5000 (room for 1024 entries).
//
// Input layout:
//   u8 options (kOpt*); with a prefix, u8 log2 queue size (mod 11)
//   records until the input ends; each starts with u8 t:
//     t % 8 in 0..4: a message   (see send_record)
//     t % 8 == 5:    guest write (u16 offset, u8 length, bytes)
//     t % 8 == 6:    post a chain on a queue and maybe kick (see post_chain)
//     t % 8 == 7:    bit 3 clear: kick queue (t >> 4) & 1;
//                    bit 3 set: give the daemon 1 + ((t >> 4) & 3) ms
//                    (at most kPauseBudgetMs per input in all)
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "protocol/wire.h"
#include "vhostuser/vhostuser.h"

using vhu_fuzz::Input;
namespace wire = vhu::wire;

namespace {

constexpr uint64_t kGuestSize = 0x10000;
constexpr uint64_t kGuestUva = 0x7f0000000000ull;  // the front-end's address of the guest
constexpr uint64_t kQueueStride = 0x8000;
constexpr uint64_t kDescOff = 0x0, kAvailOff = 0x4000, kUsedOff = 0x5000;
constexpr uint16_t kNumQueues = 2;

constexpr uint8_t kOptOneWorker = 1 << 0;
// bits 1-2: prefix level: 0 none, 1 handshake + memory table,
//           2 + queue 0 set up and started, 3 + both queues
constexpr uint8_t kOptReplyAck = 1 << 3;    // negotiate REPLY_ACK in the prefix
constexpr uint8_t kOptEventIdx = 1 << 4;    // ... RING_EVENT_IDX
constexpr uint8_t kOptIndirect = 1 << 5;    // ... RING_INDIRECT_DESC
constexpr uint8_t kOptNoProtocol = 1 << 6;  // ... without F_PROTOCOL_FEATURES
constexpr uint8_t kOptNoFdKick = 1 << 7;    // prefix kicks with NOFD (polling)

constexpr size_t kMaxRecords = 256;
constexpr int kFinishTimeoutMs = 5000;
constexpr int kPauseBudgetMs = 4;  // total pause time per input
constexpr size_t kHandlerTouchBudget = 1u << 20;

// ---- the device ----

void touch_iov(const iovec* v, unsigned n, size_t& budget, bool write) {
  static thread_local std::vector<uint8_t> scratch;
  for (unsigned i = 0; i < n; i++) {
    auto* p = static_cast<uint8_t*>(v[i].iov_base);
    size_t len = v[i].iov_len;
    if (len == 0) vhu_fuzz::invariant_failed(__FILE__, __LINE__, "empty iovec in a chain");
    if (len <= budget) {
      budget -= len;
      scratch.resize(len);
      std::memcpy(scratch.data(), p, len);
      if (write) std::memcpy(p, scratch.data(), len);
    } else {
      volatile uint8_t* vp = p;
      uint8_t a = vp[0], b = vp[len - 1];
      if (write) {
        vp[0] = a;
        vp[len - 1] = b;
      }
    }
  }
}

void handle_queue(vhu_vring* vr, void*) {
  size_t budget = kHandlerTouchBudget;
  // Like a polling device: no kicks while draining, then re-enable and look
  // once more.
  vhu_vring_set_kicks(vr, 0);
  bool kicks_on = false;
  for (int i = 0; i < 1024; i++) {
    vhu_chain* c = nullptr;
    if (vhu_vring_pop(vr, &c) != 0) {
      if (kicks_on) break;
      vhu_vring_set_kicks(vr, 1);
      kicks_on = true;
      if (!vhu_vring_pending(vr)) break;
      continue;
    }
    unsigned nr = 0, nw = 0;
    const iovec* r = vhu_chain_readable(c, &nr);
    const iovec* w = vhu_chain_writable(c, &nw);
    touch_iov(r, nr, budget, false);
    touch_iov(w, nw, budget, true);
    uint8_t hdr[16];
    size_t got = vhu_chain_read(c, 0, hdr, sizeof hdr);
    if (got > vhu_chain_readable_len(c))
      vhu_fuzz::invariant_failed(__FILE__, __LINE__, "read too much");
    size_t put = vhu_chain_write(c, 0, hdr, got);
    if (put > vhu_chain_writable_len(c))
      vhu_fuzz::invariant_failed(__FILE__, __LINE__, "wrote too much");
    // Every other chain is put back once and taken again.
    if ((i & 1) && vhu_vring_unpop(vr, c) == 0) continue;
    vhu_vring_push(vr, c, static_cast<uint32_t>(vhu_chain_writable_len(c)));
  }
  vhu_vring_notify(vr);
}

// Like most devices: VERSION_1 is required.
int features_acked(uint64_t features, void*) {
  return (features & wire::bit(wire::kFeatVersion1)) ? 0 : -EINVAL;
}

int get_config(uint32_t offset, void* buf, uint32_t size, void*) {
  auto* b = static_cast<uint8_t*>(buf);
  for (uint32_t i = 0; i < size; i++) b[i] = static_cast<uint8_t>(offset + i);
  return 0;
}

int set_config(uint32_t, const void*, uint32_t, uint32_t flags, void*) {
  return flags == 0 ? 0 : -EINVAL;
}

void quiet_log(vhu_log_level level, const char* msg, void*) {
  // Format every message (DEBUG included) and read it; print only when
  // tracing.
  volatile size_t n = std::strlen(msg);
  (void)n;
  FUZZ_TRACE("  daemon[%d]: %s\n", static_cast<int>(level), msg);
}

// ---- fds ----

int count_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) std::abort();
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') n++;
  ::closedir(d);
  return n - 1;  // the directory stream
}

void list_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char path[300], target[512];
    std::snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t n = ::readlink(path, target, sizeof target - 1);
    target[n > 0 ? n : 0] = 0;
    std::fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
  }
  ::closedir(d);
}

// Mappings of memfds this harness created (guest memory the daemon mapped
// and did not unmap shows up here, even after its fd was closed).
int count_memfd_mappings() {
  int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) std::abort();
  static const char kTag[] = "memfd:vhu-fuzz";
  std::string all;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  ::close(fd);
  int count = 0;
  for (size_t at = all.find(kTag); at != std::string::npos; at = all.find(kTag, at + 1)) count++;
  return count;
}

struct Guest {
  int fd = -1;
  uint8_t* mem = nullptr;
  Guest() {
    fd = ::memfd_create("vhu-fuzz-guest", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, kGuestSize) != 0) std::abort();
    void* p = ::mmap(nullptr, kGuestSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) std::abort();
    mem = static_cast<uint8_t*>(p);
  }
};

Guest& guest() {
  static Guest* g = new Guest;
  return *g;
}

class Harness {
 public:
  Harness(const uint8_t* data, size_t size) : in_(data, size), g_(guest()) {}
  ~Harness() {
    for (int fd : keep_) ::close(fd);
  }

  void run() {
    std::memset(g_.mem, 0, kGuestSize);
    uint8_t opt = in_.u8();
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
    sock_ = sv[0];

    vhu_backend_ops ops{};
    ops.struct_size = sizeof ops;
    ops.num_queues = kNumQueues;
    ops.get_config = get_config;
    ops.features_acked = features_acked;
    ops.set_config = set_config;
    ops.handle_queue = handle_queue;
    vhu_daemon* d = nullptr;
    if (vhu_daemon_new(&ops, nullptr, nullptr, &d, nullptr) != 0) std::abort();
    vhu_daemon_set_log(d, quiet_log, VHU_LOG_DEBUG, nullptr);
    if (vhu_daemon_set_workers(d, (opt & kOptOneWorker) ? 1 : 0) != 0) std::abort();
    if (vhu_daemon_adopt_fd(d, sv[1], VHU_FD_CONNECTED, nullptr) != 0) std::abort();
    if (vhu_daemon_start(d, nullptr) != 0) std::abort();

    int level = (opt >> 1) & 3;
    if (level > 0) {
      qsize_ = static_cast<uint16_t>(1u << (in_.u8() % 11));
      prefix(opt, level);
    }
    for (size_t n = 0; n < kMaxRecords && !in_.empty(); n++) record();

    finish();
    vhu_daemon_wait(d, nullptr);
    vhu_daemon_free(d);
  }

 private:
  // ---- sending ----

  // Sends a header (with `size` claimed) and `len` payload bytes; fds are
  // closed by the caller. Returns false once the daemon hung up.
  bool send_raw(uint32_t request, uint32_t flags, uint32_t size, const void* payload, size_t len,
                const int* fds, size_t nfds) {
    if (dead_) return false;
    FUZZ_TRACE("send %s (%u) flags 0x%x size %u, %zu payload bytes, %zu fds\n",
               wire::request_name(request), request, flags, size, len, nfds);
    wire::Header h{request, flags, size};
    iovec iov[2] = {{&h, sizeof h}, {const_cast<void*>(payload), len}};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = len ? 2 : 1;
    if (nfds) {
      std::memset(cbuf, 0, sizeof cbuf);
      m.msg_control = cbuf;
      m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    size_t total = sizeof h + len, sent = 0;
    while (sent < total) {
      ssize_t n = ::sendmsg(sock_, &m, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        dead_ = true;  // EPIPE/ECONNRESET: the daemon dropped us
        FUZZ_TRACE("send failed: %s\n", std::strerror(errno));
        return false;
      }
      sent += static_cast<size_t>(n);
      // Continue a partial write without the fds.
      m.msg_control = nullptr;
      m.msg_controllen = 0;
      size_t skip = static_cast<size_t>(n);
      while (skip && m.msg_iovlen) {
        size_t take = skip < m.msg_iov[0].iov_len ? skip : m.msg_iov[0].iov_len;
        m.msg_iov[0].iov_base = static_cast<uint8_t*>(m.msg_iov[0].iov_base) + take;
        m.msg_iov[0].iov_len -= take;
        skip -= take;
        if (m.msg_iov[0].iov_len == 0) {
          m.msg_iov++;
          m.msg_iovlen--;
        }
      }
    }
    drain();
    return true;
  }

  bool send_msg(uint32_t request, const void* payload, uint32_t len, const int* fds = nullptr,
                size_t nfds = 0, bool need_reply = false) {
    return send_raw(request, wire::kVersion | (need_reply ? wire::kFlagNeedReply : 0), len, payload,
                    len, fds, nfds);
  }
  template <typename T>
  bool send_val(uint32_t request, const T& v, int fd = -1) {
    return send_msg(request, &v, sizeof v, fd >= 0 ? &fd : nullptr, fd >= 0 ? 1 : 0);
  }

  // One non-blocking read of reply bytes; closes any fds that came along.
  ssize_t recv_some() {
    uint8_t buf[4096];
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{buf, sizeof buf};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t n = ::recvmsg(sock_, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n >= 0) close_received_fds(m);
    if (n > 0) FUZZ_TRACE("  received %zd reply bytes\n", n);
    return n;
  }

  // Reads whatever replies have arrived, without waiting.
  void drain(int timeout_ms = 0) {
    if (sock_ < 0) return;
    for (;;) {
      if (timeout_ms > 0) {
        pollfd p{sock_, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return;
        timeout_ms = 0;
      }
      ssize_t n = recv_some();
      if (n <= 0) return;
      received_ += static_cast<size_t>(n);
    }
  }

  // Gives the daemon's threads `ms` milliseconds, draining replies.
  void pause(int ms) {
    timespec end;
    ::clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_nsec += ms * 1000000L;
    end.tv_sec += end.tv_nsec / 1000000000L;
    end.tv_nsec %= 1000000000L;
    for (;;) {
      timespec now;
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      long left_ns = (end.tv_sec - now.tv_sec) * 1000000000L + (end.tv_nsec - now.tv_nsec);
      if (left_ns <= 0) return;
      long left_ms = (left_ns + 999999) / 1000000;
      if (sock_ < 0 || dead_) {
        ::poll(nullptr, 0, static_cast<int>(left_ms));
        return;
      }
      drain(static_cast<int>(left_ms));
    }
  }

  // Half-closes the connection and reads replies until the daemon closes
  // its end: by then it has handled (or refused) every message sent.
  void finish() {
    ::shutdown(sock_, SHUT_WR);
    for (;;) {
      pollfd p{sock_, POLLIN, 0};
      int rc = ::poll(&p, 1, kFinishTimeoutMs);
      if (rc < 0 && errno == EINTR) continue;
      if (rc == 0) {
        std::fprintf(stderr,
                     "the daemon kept the session open %d ms after the front-end shut down\n",
                     kFinishTimeoutMs);
        std::abort();
      }
      ssize_t n = recv_some();
      if (n > 0) continue;
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;  // end of stream, or the daemon reset the connection
    }
    ::close(sock_);
    sock_ = -1;
  }

  static void close_received_fds(msghdr& m) {
    if (m.msg_controllen == 0) return;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < cnt; i++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        ::close(fd);
      }
    }
  }

  // ---- fds attached to messages ----

  // Kinds: 0 the guest memfd, 1 an eventfd, 2 a fresh memfd of fuzzed size,
  // 3 one end of a socketpair (the other end is kept until the input ends).
  int make_fd(uint8_t sel) {
    static constexpr uint64_t kSizes[8] = {0,       1,       0x1000,   0x3000,
                                           0x10000, 0x11000, 0x100000, 0x1001};
    int fd = -1;
    switch (sel & 3) {
      case 0:
        fd = ::fcntl(g_.fd, F_DUPFD_CLOEXEC, 0);
        break;
      case 1:
        fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        break;
      case 2:
        fd = ::memfd_create("vhu-fuzz-fd", MFD_CLOEXEC);
        if (fd >= 0 && ::ftruncate(fd, static_cast<off_t>(kSizes[(sel >> 2) & 7])) != 0)
          std::abort();
        break;
      default: {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
        keep_.push_back(sv[1]);
        fd = sv[0];
        break;
      }
    }
    if (fd < 0) std::abort();
    return fd;
  }

  // ---- the well-formed prefix ----

  wire::MemRegion guest_region() const { return {0, kGuestSize, kGuestUva, 0}; }

  void setup_queue(uint16_t q, uint8_t opt) {
    wire::VringState num{q, qsize_};
    send_val(wire::SET_VRING_NUM, num);
    uint64_t base = kQueueStride * q;
    wire::VringAddr a{q,
                      0,
                      kGuestUva + base + kDescOff,
                      kGuestUva + base + kUsedOff,
                      kGuestUva + base + kAvailOff,
                      0};
    send_val(wire::SET_VRING_ADDR, a);
    wire::VringState b{q, 0};
    send_val(wire::SET_VRING_BASE, b);
    int call = make_fd(1);
    send_val(wire::SET_VRING_CALL, uint64_t{q}, call);
    ::close(call);
    int err = make_fd(1);
    send_val(wire::SET_VRING_ERR, uint64_t{q}, err);
    ::close(err);
    if (opt & kOptNoFdKick) {
      send_val(wire::SET_VRING_KICK, uint64_t{q} | wire::kVringNoFd);
    } else {
      int kick = make_fd(1);
      send_val(wire::SET_VRING_KICK, uint64_t{q}, kick);
      remember_kick(q, kick);
    }
    if (!(opt & kOptNoProtocol)) send_val(wire::SET_VRING_ENABLE, wire::VringState{q, 1});
  }

  void prefix(uint8_t opt, int level) {
    send_msg(wire::GET_FEATURES, nullptr, 0);
    send_msg(wire::GET_PROTOCOL_FEATURES, nullptr, 0);
    uint64_t f = wire::bit(wire::kFeatVersion1);
    if (!(opt & kOptNoProtocol)) f |= wire::bit(wire::kFeatProtocolFeatures);
    if (opt & kOptEventIdx) f |= wire::bit(wire::kFeatRingEventIdx);
    if (opt & kOptIndirect) f |= wire::bit(wire::kFeatRingIndirectDesc);
    if (!(opt & kOptNoProtocol)) {
      uint64_t pf = wire::bit(wire::PF_MQ) | wire::bit(wire::PF_CONFIG) |
                    wire::bit(wire::PF_RESET_DEVICE) | wire::bit(wire::PF_CONFIGURE_MEM_SLOTS) |
                    wire::bit(wire::PF_STATUS) | wire::bit(wire::PF_BACKEND_REQ);
      if (opt & kOptReplyAck) pf |= wire::bit(wire::PF_REPLY_ACK);
      send_val(wire::SET_PROTOCOL_FEATURES, pf);
    }
    send_msg(wire::SET_OWNER, nullptr, 0);
    send_val(wire::SET_FEATURES, f);
    struct {
      wire::MemTableHeader h;
      wire::MemRegion r;
    } __attribute__((packed)) mt{{1, 0}, guest_region()};
    int mfd = make_fd(0);
    send_msg(wire::SET_MEM_TABLE, &mt, sizeof mt, &mfd, 1);
    ::close(mfd);
    if (level >= 2) setup_queue(0, opt);
    if (level >= 3) setup_queue(1, opt);
    // Wait until the daemon has applied all of it: GET_FEATURES,
    // GET_PROTOCOL_FEATURES and this GET_QUEUE_NUM are the only replies.
    send_msg(wire::GET_QUEUE_NUM, nullptr, 0);
    constexpr size_t kReplies = 3 * (sizeof(wire::Header) + sizeof(uint64_t));
    for (int i = 0; i < kFinishTimeoutMs && !dead_ && received_ < kReplies; i++) drain(1);
  }

  void remember_kick(uint16_t q, int fd) {
    keep_.push_back(fd);
    kick_[q & 1] = fd;
  }

  // ---- fuzzed messages ----
  //   u8 request selector: 0xff -> raw u32 follows; else % 48 (0 and
  //      45..47 are unknown codes)
  //   u8 flags selector: bit 0 NEED_REPLY, bit 1 REPLY (invalid),
  //      bits 2-3 nfds (0..3), bit 4 raw u32 flags follow,
  //      bit 5 version 0 instead of 1, bit 6 header size lies (u16 follows)
  //   u16 length selector: bit 15 set -> structured payload for the
  //      request (see structured()); else raw length (& 0x1fff), bytes follow
  //   then one u8 kind selector per fd (see make_fd)
  void send_record() {
    uint8_t rs = in_.u8();
    uint32_t request = rs == 0xff ? in_.u32() : rs % 48u;
    uint8_t fs = in_.u8();
    uint32_t flags = (fs & 0x20) ? 0 : wire::kVersion;
    if (fs & 1) flags |= wire::kFlagNeedReply;
    if (fs & 2) flags |= wire::kFlagReply;
    if (fs & 0x10) flags = in_.u32();
    size_t nfds = (fs >> 2) & 3;
    uint16_t ls = in_.u16();
    std::vector<uint8_t> payload;
    if (ls & 0x8000) {
      structured(request, ls, nfds, payload);
    } else {
      size_t len = ls & 0x1fff;
      payload.resize(len > wire::kMaxPayload ? 0 : len);
      in_.bytes(payload.data(), payload.size());
      if (len > wire::kMaxPayload) {
        // A header announcing too much: the daemon must drop us.
        send_raw(request, flags, static_cast<uint32_t>(len), nullptr, 0, nullptr, 0);
        return;
      }
    }
    uint32_t size = static_cast<uint32_t>(payload.size());
    if (fs & 0x40) size = in_.u16();
    // A lie about the size makes the daemon read further bytes as payload
    // (or wait for them), which is the point.
    int fds[3];
    uint8_t kinds[3];
    for (size_t i = 0; i < nfds; i++) {
      kinds[i] = in_.u8();
      fds[i] = make_fd(kinds[i]);
    }
    send_raw(request, flags, size, payload.data(), payload.size(), fds, nfds);
    for (size_t i = 0; i < nfds; i++) {
      // Keep a kick eventfd so that later records can kick that queue.
      if (request == wire::SET_VRING_KICK && i == 0 && (kinds[i] & 3) == 1 && payload.size() == 8)
        remember_kick(payload[0] & 1, fds[i]);
      else
        ::close(fds[i]);
    }
  }

  uint32_t queue_index() {
    uint8_t b = in_.u8();
    return (b & 0x80) ? in_.u32() : b & 1;
  }

  // A compact region: u8 gpa (64 KiB units), u8 size selector, u8 uva
  // selector, u8 mmap_offset (4 KiB units); selector values with the top
  // bit set read raw u64s instead.
  wire::MemRegion region_sel() {
    wire::MemRegion r{};
    uint8_t g = in_.u8(), s = in_.u8(), u = in_.u8(), o = in_.u8();
    r.guest_phys_addr = (g & 0x80) ? in_.u64() : uint64_t{g} << 16;
    static constexpr uint64_t kSizes[8] = {kGuestSize, 0x1000,  0x8000, 0x100000,
                                           0,          0x10001, 0xf000, UINT64_MAX};
    r.memory_size = (s & 0x80) ? in_.u64() : kSizes[s & 7];
    r.user_addr = (u & 0x80) ? in_.u64() : kGuestUva + (uint64_t{u} << 16);
    r.mmap_offset = (o & 0x80) ? in_.u64() : uint64_t{o} << 12;
    return r;
  }

  template <typename T>
  static void put(std::vector<uint8_t>& p, const T& v) {
    const auto* b = reinterpret_cast<const uint8_t*>(&v);
    p.insert(p.end(), b, b + sizeof v);
  }

  // The payload a front-end would send for `request`, with fields chosen
  // from compact selectors so that most of them are plausible.
  void structured(uint32_t request, uint16_t ls, size_t nfds, std::vector<uint8_t>& p) {
    switch (request) {
      case wire::SET_MEM_TABLE: {
        uint32_t n = (ls & 0x4000) ? (ls & 0xf) : static_cast<uint32_t>(nfds);
        put(p, wire::MemTableHeader{n, 0});
        for (uint32_t i = 0; i < n && i < wire::kMaxTableRegions + 1; i++) put(p, region_sel());
        return;
      }
      case wire::ADD_MEM_REG:
      case wire::REM_MEM_REG:
        put(p, wire::SingleMemRegion{0, region_sel()});
        return;
      case wire::SET_VRING_ADDR: {
        wire::VringAddr a{};
        a.index = queue_index();
        a.flags = (ls & 0x4000) ? in_.u32() : 0;
        uint64_t base = (ls & 0x2000) ? 0 : kQueueStride * (a.index & 1);
        a.desc_user_addr = kGuestUva + base + kDescOff + (uint64_t{in_.u8()} << 1);
        a.avail_user_addr = kGuestUva + base + kAvailOff + (uint64_t{in_.u8()} << 1);
        a.used_user_addr = kGuestUva + base + kUsedOff + (uint64_t{in_.u8()} << 1);
        if (ls & 0x2000) {
          // Anywhere (probably not mapped).
          a.desc_user_addr = in_.u64();
          a.avail_user_addr = in_.u64();
          a.used_user_addr = in_.u64();
        }
        a.log_guest_addr = 0;
        put(p, a);
        return;
      }
      case wire::SET_VRING_NUM:
      case wire::SET_VRING_BASE:
      case wire::GET_VRING_BASE:
      case wire::SET_VRING_ENABLE: {
        wire::VringState s{};
        s.index = queue_index();
        s.num =
            (ls & 0x4000) ? in_.u32() : (request == wire::SET_VRING_NUM ? 1u << (ls & 15) : ls & 3);
        put(p, s);
        return;
      }
      case wire::SET_VRING_KICK:
      case wire::SET_VRING_CALL:
      case wire::SET_VRING_ERR: {
        uint64_t v =
            (ls & 0x4000) ? in_.u64() : (queue_index() | (nfds == 0 ? wire::kVringNoFd : 0));
        put(p, v);
        return;
      }
      case wire::SET_CONFIG:
      case wire::GET_CONFIG: {
        wire::ConfigHeader ch{in_.u8(), in_.u8(), static_cast<uint32_t>(ls & 3)};
        if (ls & 0x4000) ch.size = in_.u16();
        put(p, ch);
        size_t extra =
            ch.size > wire::kMaxPayload - sizeof ch ? wire::kMaxPayload - sizeof ch : ch.size;
        size_t at = p.size();
        p.resize(at + extra);
        in_.bytes(p.data() + at, extra);
        return;
      }
      case wire::SET_FEATURES:
      case wire::SET_PROTOCOL_FEATURES:
      case wire::SET_STATUS: {
        // Bits 0..7 of ls pick a few interesting bits; raw otherwise.
        uint64_t v = (ls & 0x4000) ? in_.u64() : 0;
        if (!(ls & 0x4000)) {
          if (request == wire::SET_FEATURES)
            v = wire::bit(wire::kFeatVersion1) |
                ((ls & 1) ? wire::bit(wire::kFeatProtocolFeatures) : 0) |
                ((ls & 2) ? wire::bit(wire::kFeatRingEventIdx) : 0) |
                ((ls & 4) ? wire::bit(wire::kFeatRingIndirectDesc) : 0) |
                ((ls & 8) ? wire::bit(wire::kFeatRingPacked) : 0);
          else if (request == wire::SET_PROTOCOL_FEATURES)
            v = (ls & 0xff) * 0x10101ull & ((1u << 17) - 1);
          else
            v = ls & 0xff;
        }
        put(p, v);
        return;
      }
      default: {
        // The exact size the request wants, raw bytes.
        const wire::RequestRule* r = wire::request_rule(request);
        size_t len = r && r->size_rule == wire::SizeRule::kExact ? r->size : (ls & 0x3f);
        p.resize(len);
        in_.bytes(p.data(), len);
        return;
      }
    }
  }

  // ---- guest actions ----

  // u8 q (bit 0 queue, bit 1 kick afterwards, bits 2-3 descriptors - 1),
  // then per descriptor u16 offset, u16 length, u8 flags (bit 0 WRITE,
  // bit 1 INDIRECT, bit 2 raw next).
  void post_chain() {
    uint8_t qs = in_.u8();
    uint16_t q = qs & 1;
    unsigned nd = ((qs >> 2) & 3) + 1;
    uint16_t num = qsize_;
    uint8_t* base = g_.mem + kQueueStride * q;
    uint16_t head = static_cast<uint16_t>(next_desc_[q] % num);
    for (unsigned k = 0; k < nd; k++) {
      uint16_t slot = static_cast<uint16_t>((head + k) % num);
      uint64_t addr = in_.u16();
      uint32_t len = in_.u16();
      uint8_t f = in_.u8();
      uint16_t flags = 0;
      if (f & 1) flags |= wire::kDescFWrite;
      if (f & 2) flags |= wire::kDescFIndirect;
      if (k + 1 < nd) flags |= wire::kDescFNext;
      uint16_t next = (f & 4) ? in_.u16() : static_cast<uint16_t>((slot + 1) % num);
      uint8_t* d = base + kDescOff + 16ull * slot;
      std::memcpy(d, &addr, 8);
      std::memcpy(d + 8, &len, 4);
      std::memcpy(d + 12, &flags, 2);
      std::memcpy(d + 14, &next, 2);
    }
    next_desc_[q] = static_cast<uint16_t>(next_desc_[q] + nd);
    uint16_t idx = avail_[q];
    uint8_t* ring = base + kAvailOff;
    std::memcpy(ring + 4 + 2 * (idx % num), &head, 2);
    idx++;
    __atomic_store_n(reinterpret_cast<uint16_t*>(ring + 2), idx, __ATOMIC_RELEASE);
    avail_[q] = idx;
    FUZZ_TRACE("guest: chain of %u on queue %u at head %u, avail idx %u\n", nd, q, head, idx);
    if (qs & 2) kick(q);
  }

  void kick(uint16_t q) {
    if (kick_[q] < 0) return;
    uint64_t one = 1;
    (void)!::write(kick_[q], &one, sizeof one);
  }

  void guest_write() {
    uint16_t off = in_.u16();
    uint8_t len = in_.u8();
    uint8_t buf[256];
    in_.bytes(buf, len);
    size_t n = len;
    if (off + n > kGuestSize) n = kGuestSize - off;
    std::memcpy(g_.mem + off, buf, n);
  }

  void record() {
    uint8_t t = in_.u8();
    switch (t % 8) {
      case 5:
        guest_write();
        break;
      case 6:
        post_chain();
        break;
      case 7:
        if (t & 8) {
          int ms = 1 + ((t >> 4) & 3);
          if (ms > pause_budget_ms_) ms = pause_budget_ms_;
          pause_budget_ms_ -= ms;
          if (ms > 0) pause(ms);
        } else
          kick((t >> 4) & 1);
        break;
      default:
        send_record();
        break;
    }
  }

  Input in_;
  Guest& g_;
  int sock_ = -1;
  bool dead_ = false;
  size_t received_ = 0;  // reply bytes drained so far
  int pause_budget_ms_ = kPauseBudgetMs;
  uint16_t qsize_ = 8;
  uint16_t avail_[2] = {0, 0};
  uint16_t next_desc_[2] = {0, 0};
  int kick_[2] = {-1, -1};
  std::vector<int> keep_;  // closed when the input is done
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  guest();
  int before = count_fds();
  int maps_before = count_memfd_mappings();
  {
    Harness h(data, size);
    h.run();
  }
  int after = count_fds();
  if (after != before) {
    std::fprintf(stderr, "fd leak: %d open fds before the input, %d after\n", before, after);
    list_fds();
    std::abort();
  }
  int maps_after = count_memfd_mappings();
  if (maps_after != maps_before) {
    std::fprintf(stderr, "mapping leak: %d guest memory mappings before the input, %d after\n",
                 maps_before, maps_after);
    std::abort();
  }
  return 0;
}
