// SPDX-License-Identifier: Apache-2.0
#include "tools/checks.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <set>
#include <utility>

#include "common/error.h"
#include "frontend/frontend.h"
#include "tools/check_context.h"
#include "tools/device_checks.h"

namespace vhu::check {
namespace {

using fe::Device;
using fe::DeviceOptions;
using fe::DriverRing;
using fe::Frontend;
using fe::GuestMemory;
using wire::bit;

constexpr uint32_t kBufLen = 4096;
constexpr int kShortWaitMs = 1000;  // for answers that may legitimately not come
constexpr uint32_t kUnknownRequest = 99;
constexpr int kReconnectCycles = 20;

// Protocol feature bit numbers as in the specification.
// clang-format off
const char* const kProtocolFeatureNames[] = {
    "MQ", "LOG_SHMFD", "RARP", "REPLY_ACK", "NET_MTU", "BACKEND_REQ", "CROSS_ENDIAN",
    "CRYPTO_SESSION", "PAGEFAULT", "CONFIG", "BACKEND_SEND_FD", "HOST_NOTIFIER", "INFLIGHT_SHMFD",
    "RESET_DEVICE", "INBAND_NOTIFICATIONS", "CONFIGURE_MEM_SLOTS", "STATUS", "XEN_MMAP",
    "SHARED_OBJECT", "DEVICE_STATE", "GET_VRING_BASE_INFLIGHT", "GPA_ADDRESSES", "SHMEM",
    "GET_VRING_BASE_SKIP_DRAIN",
};
// clang-format on

}  // namespace

std::string hex(uint64_t v) { return strfmt("0x%llx", static_cast<unsigned long long>(v)); }

std::string protocol_names(uint64_t pf) {
  std::string s;
  for (unsigned b = 0; b < 64; b++) {
    if (!(pf & bit(b))) continue;
    if (!s.empty()) s += ' ';
    s += b < std::size(kProtocolFeatureNames) ? kProtocolFeatureNames[b] : strfmt("bit%u", b);
  }
  return s.empty() ? "none" : s;
}

std::string status_text(int rc) {
  switch (rc) {
    case 0:
      return "ok";
    case -ETIMEDOUT:
      return "timed out";
    case -ECONNRESET:
      return "back-end closed the connection";
    case -EPROTO:
      return "malformed or unexpected reply";
    case -EIO:
      return "non-zero ack";
    default:
      return std::strerror(-rc);
  }
}

int ms_since(Clock::time_point t0) {
  return static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

std::vector<Used> collect_used(DriverRing& r, size_t n, int timeout_ms) {
  std::vector<Used> out;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    while (out.size() < n) {
      auto u = r.get_used();
      if (!u) break;
      out.push_back(*u);
    }
    if (out.size() >= n) break;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    r.wait_used(static_cast<int>(left));
  }
  return out;
}

// ---- Ctx ----

void Ctx::result(const std::string& name, Outcome o, const std::string& detail) {
  static const char* const kWords[] = {"PASS", "FAIL", "SKIP"};
  out_ << kWords[static_cast<int>(o)] << ' ' << name;
  if (!detail.empty()) out_ << " \u2014 " << detail;
  out_ << '\n';
  out_.flush();
  reported_.insert(name);
  if (o == Outcome::kPass) passed_++;
  if (o == Outcome::kFail) failed_++;
}

void Ctx::note(const std::string& text) {
  if (opts_.verbose) out_ << "    " << text << '\n';
}

Frontend Ctx::connect() {
  try {
    Frontend f = Frontend::connect(opts_.socket_path, opts_.timeout_ms);
    f.set_timeout(opts_.timeout_ms);
    return f;
  } catch (const Error& e) {
    unreachable_ = e.what();
    throw;
  }
}

DeviceOptions Ctx::device_options(uint64_t extra) const {
  DeviceOptions o;
  o.num_queues = rings();
  o.queue_num_unit = queue_num_unit();
  o.queue_size = opts_.queue_size;
  // Two regions, like a VMM's RAM below and above 4 GiB: the first holds
  // the rings, the second is there to exercise multi-region tables.
  size_t ring = (fe::RingLayout::compute(opts_.queue_size).total + 4095) & ~size_t{4095};
  uint64_t low =
      ((uint64_t{ring} * o.num_queues + (1u << 20) - 1) & ~uint64_t{(1u << 20) - 1}) + extra;
  o.memory = {{0, low}, {uint64_t{1} << 32, 4u << 20}};
  return o;
}

const Probe& Ctx::probe() {
  if (!probe_) {
    Frontend f = connect();
    Probe p;
    p.features = f.get_features();
    if (p.features & bit(wire::kFeatProtocolFeatures)) p.protocol = f.get_protocol_features();
    probe_ = p;
    note("offered features " + hex(p.features) + ", protocol features " + hex(p.protocol) + " (" +
         protocol_names(p.protocol) + ")");
  }
  return *probe_;
}

namespace {

// ---- Helpers ----

// Makes one device-writable buffer available on `r`.
int post_writable(Device& d, DriverRing& r, uint32_t len = kBufLen) {
  uint64_t gpa = d.mem().alloc(len, 64);
  d.mem().fill(gpa, 0xa5, len);
  return r.add_chain({{gpa, len, true}});
}

// Negotiates like a minimal front-end: features, protocol features (those in
// `want` that are offered), SET_OWNER.
void handshake(Frontend& f, uint64_t want_protocol) {
  uint64_t feats = f.get_features();
  if (feats & bit(wire::kFeatProtocolFeatures))
    f.set_protocol_features(f.get_protocol_features() & want_protocol);
  f.set_owner();
}

// Whether the call eventfd gets (or got) signalled within `timeout_ms`.
bool saw_call(DriverRing& r, int timeout_ms) {
  if (r.notifications() > 0) return true;
  pollfd p{r.call_fd(), POLLIN, 0};
  ::poll(&p, 1, timeout_ms);
  r.consume_call();
  return r.notifications() > 0;
}

// ---- Checks ----

void check_get_features_framing(Ctx& c) {
  const char* name = "get-features-framing";
  Frontend f = c.connect();
  f.send_raw(wire::GET_FEATURES, wire::kVersion, nullptr, 0);
  proto::Message m;
  int rc = f.recv_raw(m, c.opts().timeout_ms);
  if (rc != 0) return c.fail(name, "no reply to GET_FEATURES: " + status_text(rc));
  std::vector<std::string> bad;
  if (m.hdr.request != wire::GET_FEATURES)
    bad.push_back(strfmt("reply request code %u", m.hdr.request));
  if (m.hdr.flags != (wire::kVersion | wire::kFlagReply))
    bad.push_back(strfmt("reply flags 0x%x (expected 0x5)", m.hdr.flags));
  if (m.hdr.size != sizeof(uint64_t))
    bad.push_back(strfmt("reply size %u (expected 8)", m.hdr.size));
  if (!m.fds.empty()) bad.push_back(strfmt("%zu file descriptors attached", m.fds.size()));
  if (!bad.empty()) {
    std::string s;
    for (const auto& b : bad) s += (s.empty() ? "" : "; ") + b;
    return c.fail(name, s);
  }
  uint64_t v = 0;
  m.get(v);
  c.pass(name, "reply flags 0x5, size 8, features " + hex(v));
}

void check_protocol_features(Ctx& c) {
  const char* name = "protocol-features";
  Frontend f = c.connect();
  uint64_t feats = f.get_features();
  if (!(feats & bit(wire::kFeatProtocolFeatures)))
    return c.fail(name,
                  "VHOST_USER_F_PROTOCOL_FEATURES (bit 30) not offered; features " + hex(feats));
  uint64_t pf = f.get_protocol_features();
  c.pass(name, hex(pf) + " (" + protocol_names(pf) + ")");
}

void check_version_1(Ctx& c) {
  const char* name = "version-1-offered";
  uint64_t feats = c.probe().features;
  if (feats & bit(wire::kFeatVersion1)) return c.pass(name, "features " + hex(feats));
  c.fail(name, "VIRTIO_F_VERSION_1 (bit 32) not offered; features " + hex(feats));
}

void check_set_features_unoffered(Ctx& c) {
  const char* name = "set-features-unoffered-refused";
  Frontend f = c.connect();
  uint64_t feats = f.get_features();
  int b = 63;
  while (b >= 0 && (feats & bit(static_cast<unsigned>(b)))) b--;
  if (b < 0) return c.skip(name, "every feature bit is offered");
  if (feats & bit(wire::kFeatProtocolFeatures))
    f.set_protocol_features(f.get_protocol_features() & bit(wire::PF_REPLY_ACK));
  f.set_owner();
  uint64_t v = feats | bit(static_cast<unsigned>(b));
  c.note(strfmt("SET_FEATURES %s (bit %d is not offered)", hex(v).c_str(), b));
  if (f.reply_ack()) {
    uint64_t ack = 0;
    int rc = f.request_ack(wire::SET_FEATURES, &v, sizeof v, {}, &ack);
    if (rc == -EIO)
      return c.pass(
          name, strfmt("bit %d refused with ack %llu", b, static_cast<unsigned long long>(ack)));
    if (rc == -ECONNRESET) return c.pass(name, strfmt("closed the connection on bit %d", b));
    if (rc == 0) return c.fail(name, strfmt("accepted bit %d, which it does not offer (ack 0)", b));
    return c.fail(name, "no ack for SET_FEATURES: " + status_text(rc));
  }
  try {
    f.send_raw(wire::SET_FEATURES, wire::kVersion, &v, sizeof v);
    f.get_features();
  } catch (const Error& e) {
    if (e.code() == -ECONNRESET) return c.pass(name, strfmt("closed the connection on bit %d", b));
    throw;
  }
  c.fail(name, strfmt("accepted bit %d, which it does not offer (no REPLY_ACK to report an "
                      "error, and the connection stayed open)",
                      b));
}

void check_queue_num(Ctx& c) {
  const char* name = "get-queue-num";
  if (!c.offers_protocol(wire::PF_MQ)) return c.skip(name, "MQ not offered");
  Frontend f = c.connect();
  handshake(f, bit(wire::PF_MQ) | bit(wire::PF_REPLY_ACK));
  uint64_t n = f.get_queue_num();
  if (n == 0) return c.fail(name, "GET_QUEUE_NUM returned 0");
  if (n * c.queue_num_unit() < c.rings())
    return c.fail(name, strfmt("%llu queues, fewer than the %u needed for --queues=%u",
                               static_cast<unsigned long long>(n), c.rings(), c.opts().queues));
  c.pass(name, strfmt("%llu %s", static_cast<unsigned long long>(n),
                      c.queue_num_unit() == 2 ? "queue pair(s)" : "queue(s)"));
}

void check_max_mem_slots(Ctx& c) {
  const char* name = "get-max-mem-slots";
  if (!c.offers_protocol(wire::PF_CONFIGURE_MEM_SLOTS))
    return c.skip(name, "CONFIGURE_MEM_SLOTS not offered");
  Frontend f = c.connect();
  handshake(f, bit(wire::PF_CONFIGURE_MEM_SLOTS) | bit(wire::PF_REPLY_ACK));
  uint64_t n = f.get_max_mem_slots();
  if (n == 0) return c.fail(name, "GET_MAX_MEM_SLOTS returned 0");
  c.pass(name, strfmt("%llu slots", static_cast<unsigned long long>(n)));
}

void check_setup(Ctx& c) {
  const char* name = "memory-and-ring-setup";
  Device d = c.device();
  d.bring_up();
  d.fe().sync();
  c.note("acked features " + hex(d.features()) + ", protocol features " +
         hex(d.protocol_features()) + " (" + protocol_names(d.protocol_features()) + ")");
  c.pass(name, strfmt("%zu memory regions, %u queue(s) of %u%s", d.mem().num_regions(), c.rings(),
                      c.opts().queue_size,
                      d.fe().reply_ack() ? ", every request acked 0"
                                         : " (no REPLY_ACK: requests were not acknowledged)"));
}

void check_reply_ack(Ctx& c) {
  const char* name = "reply-ack";
  if (!c.offers_protocol(wire::PF_REPLY_ACK)) return c.skip(name, "REPLY_ACK not offered");
  const Probe p = c.probe();
  uint64_t queue_num = 0;
  auto open = [&] {
    Frontend f = c.connect();
    handshake(f, bit(wire::PF_REPLY_ACK) | bit(wire::PF_MQ));
    if (f.has_protocol_feature(wire::PF_MQ)) queue_num = f.get_queue_num();
    f.set_features(p.features & (bit(wire::kFeatVersion1) | bit(wire::kFeatProtocolFeatures)));
    return f;
  };
  Frontend f = open();
  std::vector<std::string> good, bad;
  auto probe_ack = [&](const char* what, uint32_t index, uint32_t num, bool valid) {
    wire::VringState s{index, num};
    uint64_t ack = 0;
    int rc = f.request_ack(wire::SET_VRING_NUM, &s, sizeof s, {}, &ack);
    std::string desc = strfmt("%s (SET_VRING_NUM queue %u size %u)", what, index, num);
    c.note(
        desc + ": " +
        (rc == -EIO ? strfmt("ack %llu", static_cast<unsigned long long>(ack)) : status_text(rc)));
    if (valid) {
      if (rc == 0) return good.push_back(desc + " \u2192 0");
      bad.push_back(desc + " answered " + status_text(rc));
    } else {
      if (rc == -EIO)
        return good.push_back(desc + strfmt(" \u2192 %llu", static_cast<unsigned long long>(ack)));
      if (rc == 0)
        bad.push_back(desc + " acked 0");
      else if (rc == -ECONNRESET)
        bad.push_back(desc + " closed the connection instead of acking failure");
      else
        bad.push_back(desc + " answered " + status_text(rc));
    }
    if (rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -EPROTO) f = open();
  };
  probe_ack("valid", 0, c.opts().queue_size, true);
  uint32_t bad_index = queue_num > 255 ? static_cast<uint32_t>(queue_num) : 255;
  probe_ack("bad index", bad_index, c.opts().queue_size, false);
  probe_ack("bad size", 0, 3, false);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : "; ") + x;
    return s;
  };
  if (!bad.empty()) return c.fail(name, join(bad));
  c.pass(name, join(good));
}

void check_io_round_trip(Ctx& c) {
  const char* name = "io-round-trip";
  Device d = c.device();
  d.bring_up();
  DriverRing& r = d.ring(0);
  int head = post_writable(d, r);
  bool kicked = r.kick();
  c.note(strfmt("posted head %d (%u-byte device-writable buffer), %s", head, kBufLen,
                kicked ? "kicked" : "kick suppressed by the device"));
  auto t0 = Clock::now();
  auto used = collect_used(r, 1, c.opts().io_timeout_ms);
  if (used.empty()) {
    c.io = Io::kDoesNotComplete;
    return c.skip(name, strfmt("queue 0 did not use a %u-byte device-writable buffer within %d "
                               "ms (device-specific semantics)",
                               kBufLen, c.opts().io_timeout_ms));
  }
  c.io = Io::kCompletes;
  auto [id, len] = used[0];
  c.note(strfmt("used id %u len %u after %d ms", id, len, ms_since(t0)));
  if (id != static_cast<uint32_t>(head))
    return c.fail(name, strfmt("used id %u, but the only chain has head %d", id, head));
  if (len > kBufLen)
    return c.fail(name, strfmt("used len %u exceeds the %u-byte buffer", len, kBufLen));
  if (!saw_call(r, 500))
    return c.fail(name,
                  strfmt("buffer used (len %u) but the call eventfd was never signalled", len));
  c.pass(name, strfmt("buffer used with len %u, call eventfd signalled", len));
}

void check_mem_slots(Ctx& c) {
  const char* name = "mem-slots-add-remove";
  if (!c.offers_protocol(wire::PF_CONFIGURE_MEM_SLOTS))
    return c.skip(name, "CONFIGURE_MEM_SLOTS not offered");
  DeviceOptions o = c.device_options();
  o.use_mem_slots = true;
  Device d(c.connect(), o);
  d.bring_up();
  uint64_t slots = d.fe().get_max_mem_slots();
  std::string detail = strfmt("%zu regions added with ADD_MEM_REG", d.mem().num_regions());
  if (slots > d.mem().num_regions()) {
    GuestMemory extra({{uint64_t{8} << 30, 1u << 20}});
    d.fe().add_mem_reg(extra, 0);
    d.fe().rem_mem_reg(extra, 0);
    detail += ", one more added and removed";
  }
  d.fe().sync();
  if (c.io != Io::kDoesNotComplete) {
    DriverRing& r = d.ring(0);
    int head = post_writable(d, r);
    r.kick();
    auto used = collect_used(r, 1, c.opts().io_timeout_ms);
    if (!used.empty() && used[0].first == static_cast<uint32_t>(head)) {
      detail += ", a buffer completed";
    } else if (c.io == Io::kCompletes) {
      return c.fail(name, detail + ", but queue 0 did not complete a buffer in that memory");
    }
  }
  c.pass(name, detail);
}

void check_vring_base(Ctx& c) {
  const char* stop = "vring-base-stop";
  const char* restart = "ring-restart";
  Device d = c.device();
  d.bring_up();
  DriverRing& r = d.ring(0);
  const size_t posted = std::min<size_t>(2, r.size());
  for (size_t i = 0; i < posted; i++) post_writable(d, r);
  r.kick();
  auto used = collect_used(r, posted, c.opts().io_timeout_ms);
  uint32_t base = d.fe().get_vring_base(0);
  // Completions the back-end made while stopping count as consumed.
  for (auto& u : collect_used(r, posted, 0)) used.push_back(u);
  size_t n = used.size();
  c.note(strfmt("%zu chains posted, %zu used, GET_VRING_BASE returned %u", posted, n, base));

  size_t pending = 0;  // chains made available while the ring is stopped
  if (base != n) {
    c.fail(stop, strfmt("GET_VRING_BASE returned %u but the back-end used %zu of %zu chains "
                        "(in-flight chains must complete before the ring stops)",
                        base, n, posted));
  } else if (n == posted) {
    post_writable(d, r);
    pending = 1;
    r.force_kick();
    auto late = collect_used(r, 1, 300);
    if (!late.empty())
      c.fail(stop, "the ring processed a chain made available after GET_VRING_BASE");
    else
      c.pass(stop, strfmt("returned %u after %zu chains were used; a chain posted afterwards "
                          "stayed unused",
                          base, n));
  } else {
    c.pass(stop, strfmt("returned %u, the number of chains used (the device completed %zu of "
                        "%zu)",
                        base, n, posted));
  }

  if (n == 0) return c.skip(restart, "the device does not complete buffers (device-specific)");
  d.start_queue(0, base);
  if (r.free_descriptors() > 0) {
    post_writable(d, r);
    pending++;
  }
  r.force_kick();
  auto after = collect_used(r, pending, c.opts().io_timeout_ms);
  c.note(strfmt("restarted at base %u, %zu of %zu chains used", base, after.size(), pending));
  if (after.size() != pending)
    return c.fail(restart, strfmt("after SET_VRING_BASE %u and a new kick only %zu of %zu "
                                  "chains were used within %d ms",
                                  base, after.size(), pending, c.opts().io_timeout_ms));
  c.pass(restart, strfmt("restarted at base %u and used %zu more chain(s)", base, pending));
}

void check_reset_device(Ctx& c) {
  const char* name = "reset-device";
  if (!c.offers_protocol(wire::PF_RESET_DEVICE)) return c.skip(name, "RESET_DEVICE not offered");
  Device d = c.device();
  d.bring_up();
  d.fe().reset_device();
  d.configure();
  d.setup_queues();
  d.fe().sync();
  std::string detail = "RESET_DEVICE accepted and the device was set up again";
  if (c.io != Io::kDoesNotComplete) {
    DriverRing& r = d.ring(0);
    int head = post_writable(d, r);
    r.kick();
    auto used = collect_used(r, 1, c.opts().io_timeout_ms);
    if (!used.empty() && used[0].first == static_cast<uint32_t>(head))
      detail += "; it completed a buffer";
    else if (c.io == Io::kCompletes)
      return c.fail(name, detail + ", but then queue 0 did not complete a buffer");
  }
  c.pass(name, detail);
}

void check_status(Ctx& c) {
  const char* name = "status-round-trip";
  if (!c.offers_protocol(wire::PF_STATUS)) return c.skip(name, "STATUS not offered");
  Device d = c.device();
  d.negotiate();
  d.fe().set_features(d.offered_features() & d.options().features);
  for (uint8_t s : {uint8_t{0x03}, uint8_t{0x0b}, uint8_t{0x00}}) {
    d.fe().set_status(s);
    uint8_t got = d.fe().get_status();
    c.note(strfmt("SET_STATUS 0x%02x, GET_STATUS 0x%02x", s, got));
    if (got != s) return c.fail(name, strfmt("SET_STATUS 0x%02x read back as 0x%02x", s, got));
  }
  c.pass(name, "0x03, 0x0b and 0x00 read back");
}

void check_session_isolation(Ctx& c) {
  const char* name = "session-isolation";
  {
    Device a = c.device();
    a.bring_up();
    if (c.io != Io::kDoesNotComplete) {
      // Leave a chain available when the connection drops.
      post_writable(a, a.ring(0));
      a.ring(0).kick();
    }
  }
  Device b = c.device();
  b.bring_up();
  b.fe().sync();
  std::string detail = "a new session after an abrupt disconnect came up";
  if (c.io != Io::kDoesNotComplete) {
    DriverRing& r = b.ring(0);
    int head = post_writable(b, r);
    r.kick();
    auto used = collect_used(r, 1, c.opts().io_timeout_ms);
    if (!used.empty() && used[0].first == static_cast<uint32_t>(head)) {
      detail += " and completed a buffer from its own ring";
    } else if (!used.empty()) {
      return c.fail(
          name, strfmt("the new session's ring returned id %u (expected %d)", used[0].first, head));
    } else if (c.io == Io::kCompletes) {
      return c.fail(name, "the new session's queue 0 did not complete a buffer");
    }
  }
  c.pass(name, detail);
}

void check_unknown_request(Ctx& c) {
  const char* name = "unknown-request";
  Frontend f = c.connect();
  handshake(f, bit(wire::PF_REPLY_ACK));
  f.send_raw(kUnknownRequest, wire::kVersion | wire::kFlagNeedReply, nullptr, 0);
  proto::Message m;
  int rc = f.recv_raw(m, kShortWaitMs);
  std::string how;
  uint64_t v = 0;
  if (rc == 0) {
    if (m.hdr.request != kUnknownRequest || m.hdr.flags != (wire::kVersion | wire::kFlagReply) ||
        !m.get(v))
      return c.fail(name, strfmt("unexpected answer: request %u flags 0x%x size %u", m.hdr.request,
                                 m.hdr.flags, m.hdr.size));
    if (v == 0)
      return c.fail(name, strfmt("request %u acknowledged as success (ack 0)", kUnknownRequest));
    how = strfmt("answered with ack %llu", static_cast<unsigned long long>(v));
  } else if (rc == -ETIMEDOUT) {
    how = "ignored (no answer)";
  } else if (rc == -ECONNRESET) {
    return c.fail(name, strfmt("closed the connection on request %u", kUnknownRequest));
  } else {
    return c.fail(name, "answer: " + status_text(rc));
  }
  try {
    f.get_features();
  } catch (const Error& e) {
    return c.fail(name, how + ", then the session was unusable: " + e.what());
  }
  c.pass(name, strfmt("request %u ", kUnknownRequest) + how + "; GET_FEATURES still answered");
}

// Ends a check whose first step was `how`: the back-end must still accept a
// fresh connection and answer GET_FEATURES on it.
void pass_if_new_connection_works(Ctx& c, const char* name, const std::string& how) {
  try {
    Frontend g = c.connect();
    g.get_features();
  } catch (const std::exception& e) {
    return c.fail(name, how + "; then a new connection failed: " + e.what());
  }
  c.pass(name, how + "; a new connection works");
}

void check_malformed(Ctx& c) {
  const char* name = "malformed-message";
  // Probe first: the back-end may serve one connection at a time.
  uint64_t feats = c.probe().features;
  Frontend f = c.connect();
  handshake(f, bit(wire::PF_REPLY_ACK));
  f.set_features(feats & (bit(wire::kFeatVersion1) | bit(wire::kFeatProtocolFeatures)));
  bool ack = f.reply_ack();
  uint32_t four = 0;
  f.send_raw(wire::SET_VRING_NUM, wire::kVersion | (ack ? wire::kFlagNeedReply : 0), &four,
             sizeof four);
  proto::Message m;
  int rc = f.recv_raw(m, kShortWaitMs);
  std::string how;
  uint64_t v = 0;
  if (rc == 0) {
    if (m.hdr.request != wire::SET_VRING_NUM ||
        m.hdr.flags != (wire::kVersion | wire::kFlagReply) || !m.get(v))
      return c.fail(name, strfmt("unexpected answer: request %u flags 0x%x size %u", m.hdr.request,
                                 m.hdr.flags, m.hdr.size));
    if (v == 0) return c.fail(name, "a 4-byte SET_VRING_NUM was acknowledged as success");
    how = strfmt("error reply (ack %llu)", static_cast<unsigned long long>(v));
  } else if (rc == -ECONNRESET) {
    how = "closed the connection";
  } else if (rc == -ETIMEDOUT) {
    if (ack) return c.fail(name, "no answer to a 4-byte SET_VRING_NUM sent with NEED_REPLY");
    f.get_features();
    how = "ignored (REPLY_ACK not negotiated)";
  } else {
    return c.fail(name, "answer: " + status_text(rc));
  }
  f.close();
  pass_if_new_connection_works(c, name, "4-byte SET_VRING_NUM: " + how);
}

void check_oversized(Ctx& c) {
  const char* name = "oversized-message";
  Frontend f = c.connect();
  f.get_features();
  // Only the header: a back-end must not wait for (or allocate) 1 MiB.
  wire::Header h{wire::SET_MEM_TABLE, wire::kVersion, 1u << 20};
  if (::send(f.fd(), &h, sizeof h, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof h))
    throw Error(-errno, "sending an oversized header failed");
  if (!f.peer_closed(c.opts().io_timeout_ms))
    return c.fail(name, strfmt("connection still open %d ms after a header announcing a "
                               "1 MiB payload",
                               c.opts().io_timeout_ms));
  f.close();
  pass_if_new_connection_works(c, name, "header announcing a 1 MiB payload: connection closed");
}

void check_reconnect(Ctx& c) {
  const char* name = "reconnect-cycles";
  auto t0 = Clock::now();
  for (int i = 0; i < kReconnectCycles; i++) {
    try {
      Frontend f = c.connect();
      handshake(f, bit(wire::PF_REPLY_ACK));
      f.get_features();
    } catch (const std::exception& e) {
      return c.fail(name, strfmt("cycle %d: %s", i + 1, e.what()));
    }
  }
  c.pass(name,
         strfmt("%d connect/handshake/disconnect cycles in %d ms", kReconnectCycles, ms_since(t0)));
}

const std::vector<Check>& all_checks() {
  static const std::vector<Check> kChecks = {
      {{"get-features-framing"}, check_get_features_framing},
      {{"protocol-features"}, check_protocol_features},
      {{"version-1-offered"}, check_version_1},
      {{"set-features-unoffered-refused"}, check_set_features_unoffered},
      {{"get-queue-num"}, check_queue_num},
      {{"get-max-mem-slots"}, check_max_mem_slots},
      {{"memory-and-ring-setup"}, check_setup},
      {{"reply-ack"}, check_reply_ack},
      {{"io-round-trip"}, check_io_round_trip},
      {{"mem-slots-add-remove"}, check_mem_slots},
      {{"vring-base-stop", "ring-restart"}, check_vring_base},
      {{"reset-device"}, check_reset_device},
      {{"status-round-trip"}, check_status},
      {{"session-isolation"}, check_session_isolation},
      {{"unknown-request"}, check_unknown_request},
      {{"malformed-message"}, check_malformed},
      {{"oversized-message"}, check_oversized},
      {{"reconnect-cycles"}, check_reconnect},
  };
  return kChecks;
}

bool selected(const CheckOptions& opts, const Check& chk) {
  if (opts.only.empty()) return true;
  for (const char* n : chk.names)
    if (std::find(opts.only.begin(), opts.only.end(), n) != opts.only.end()) return true;
  return false;
}

// The generic checks, then the probes for opts.device.
std::vector<Check> checks_for(const std::string& device) {
  std::vector<Check> out = all_checks();
  for (const Check& chk : device_checks(device)) out.push_back(chk);
  return out;
}

std::string validate(const CheckOptions& opts) {
  if (opts.socket_path.empty()) return "no socket path given";
  if (!known_device(opts.device))
    return "unknown device '" + opts.device + "' (expected blk or net)";
  uint32_t max_queues = opts.device == "net" ? 128 : 256;
  if (opts.queues < 1 || opts.queues > max_queues)
    return strfmt("--queues=%u is outside 1..%u", opts.queues, max_queues);
  uint32_t qs = opts.queue_size;
  if (qs < 1 || qs > fe::kMaxRingSize || (qs & (qs - 1)) != 0)
    return strfmt("--queue-size=%u is not a power of two in 1..%u", qs, fe::kMaxRingSize);
  if (!opts.device.empty() && qs < kMinDeviceQueueSize)
    return strfmt("--device=%s needs --queue-size of at least %u", opts.device.c_str(),
                  kMinDeviceQueueSize);
  if (!opts.image.empty() && opts.device != "blk") return "--image needs --device=blk";
  for (const auto& n : opts.only) {
    auto names = check_names(opts.device);
    if (std::find(names.begin(), names.end(), n) == names.end()) return "unknown check '" + n + "'";
  }
  return {};
}

}  // namespace

std::vector<std::string> check_names(const std::string& device) {
  std::vector<std::string> out;
  for (const Check& chk : checks_for(device))
    for (const char* n : chk.names) out.emplace_back(n);
  return out;
}

int run_checks(const CheckOptions& opts, std::ostream& report) {
  Ctx c(opts, report);
  std::string bad = validate(opts);
  if (!bad.empty()) {
    c.fail("options", bad);
  } else {
    bool reachable = true;
    try {
      c.connect();
    } catch (const std::exception& e) {
      c.fail("connect", e.what());
      reachable = false;
    }
    for (const Check& chk : checks_for(opts.device)) {
      if (!reachable) break;
      if (!selected(opts, chk)) continue;
      if (!c.unreachable().empty()) {
        // The back-end stopped accepting connections during an earlier check.
        for (const char* n : chk.names)
          c.fail(n, "not run: back-end unreachable (" + c.unreachable() + ")");
        continue;
      }
      auto t0 = Clock::now();
      try {
        chk.run(c);
      } catch (const std::exception& e) {
        bool first = true;
        for (const char* n : chk.names) {
          if (c.reported(n)) continue;
          if (first)
            c.fail(n, e.what());
          else
            c.skip(n, std::string("not reached: ") + e.what());
          first = false;
        }
      }
      c.note(strfmt("(%d ms)", ms_since(t0)));
    }
  }
  report << c.passed() << " passed, " << c.failed() << " failed\n";
  report.flush();
  return c.failed();
}

}  // namespace vhu::check
