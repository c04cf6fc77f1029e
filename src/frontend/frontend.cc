// SPDX-License-Identifier: Apache-2.0
#include "frontend/frontend.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/error.h"

namespace vhu::fe {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kFlagsRequest = wire::kVersion;
constexpr uint32_t kFlagsReply = wire::kVersion | wire::kFlagReply;

std::string name_of(uint32_t request) {
  if (wire::request_rule(request)) return wire::request_name(request);
  return strfmt("request %u", request);
}

int ms_left(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

}  // namespace

// ---- Connection ----

Frontend Frontend::connect(const std::string& path, int timeout_ms) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    throw Error(-EINVAL, strfmt("socket path '%s' is empty or too long", path.c_str()));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) throw_errno("socket");
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
      return Frontend(std::move(s));
    int err = errno;
    bool retry = err == ENOENT || err == ECONNREFUSED || err == EAGAIN || err == EINTR;
    if (!retry || Clock::now() >= deadline)
      throw Error(-err, strfmt("connect to %s: %s", path.c_str(), std::strerror(err)));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Frontend::Frontend(UniqueFd sock) : sock_(std::move(sock)) {
  if (!sock_) throw Error(-EBADF, "Frontend needs a connected socket");
}

void Frontend::close() {
  sock_.reset();
  backend_ch_.reset();
}

void Frontend::require_connected() const {
  if (!sock_) throw Error(-ENOTCONN, "front-end connection is closed");
}

// ---- Framing ----

void Frontend::send(uint32_t request, uint32_t flags, const void* payload, size_t len,
                    const std::vector<int>& fds) {
  require_connected();
  if (len > wire::kMaxPayload)
    throw Error(-EINVAL,
                strfmt("%s: payload of %zu bytes is too large", name_of(request).c_str(), len));
  wire::Header hdr{request, flags, static_cast<uint32_t>(len)};
  int rc = proto::send_message(sock_.get(), hdr, len ? payload : nullptr, fds.data(), fds.size());
  if (rc == -EPIPE || rc == -ECONNRESET)
    throw Error(-ECONNRESET,
                strfmt("sending %s: back-end closed the connection", name_of(request).c_str()));
  if (rc < 0)
    throw Error(rc, strfmt("sending %s: %s", name_of(request).c_str(), std::strerror(-rc)));
}

proto::Message Frontend::expect_reply(uint32_t request) {
  proto::Message m;
  std::string err;
  int rc = proto::recv_message(sock_.get(), m, timeout_ms_, &err);
  const std::string name = name_of(request);
  if (rc == -ETIMEDOUT)
    throw Error(rc, strfmt("%s: no reply within %d ms", name.c_str(), timeout_ms_));
  if (rc == -ECONNRESET)
    throw Error(rc, strfmt("%s: back-end closed the connection instead of replying", name.c_str()));
  if (rc < 0) throw Error(rc, strfmt("%s: receiving the reply: %s", name.c_str(), err.c_str()));
  if (m.hdr.request != request)
    throw Error(-EPROTO, strfmt("%s: reply carries request code %u", name.c_str(), m.hdr.request));
  if (m.hdr.flags != kFlagsReply)
    throw Error(-EPROTO, strfmt("%s: reply flags 0x%x (expected 0x%x)", name.c_str(), m.hdr.flags,
                                kFlagsReply));
  if (!m.fds.empty())
    throw Error(-EPROTO, strfmt("%s: reply carries %zu unexpected file descriptors", name.c_str(),
                                m.fds.size()));
  return m;
}

void Frontend::request_no_reply(uint32_t request, const void* payload, size_t len,
                                const std::vector<int>& fds) {
  bool ack = need_reply_ && reply_ack();
  send(request, kFlagsRequest | (ack ? wire::kFlagNeedReply : 0), payload, len, fds);
  if (!ack) return;
  proto::Message m = expect_reply(request);
  uint64_t v;
  if (!m.get(v))
    throw Error(-EPROTO,
                strfmt("%s: ack of %u bytes (expected 8)", name_of(request).c_str(), m.hdr.size));
  if (v != 0)
    throw Error(-EIO, strfmt("%s rejected by the back-end (ack %llu)", name_of(request).c_str(),
                             static_cast<unsigned long long>(v)));
}

proto::Message Frontend::request_reply(uint32_t request, const void* payload, size_t len,
                                       size_t reply_size) {
  send(request, kFlagsRequest, payload, len, {});
  proto::Message m = expect_reply(request);
  if (m.payload.size() != reply_size)
    throw Error(-EPROTO, strfmt("%s: reply of %zu bytes (expected %zu)", name_of(request).c_str(),
                                m.payload.size(), reply_size));
  return m;
}

uint64_t Frontend::request_u64(uint32_t request) {
  proto::Message m = request_reply(request, nullptr, 0, sizeof(uint64_t));
  uint64_t v = 0;
  m.get(v);
  return v;
}

// ---- Typed requests ----

uint64_t Frontend::get_features() { return request_u64(wire::GET_FEATURES); }

void Frontend::set_features(uint64_t features) {
  request_no_reply(wire::SET_FEATURES, &features, sizeof features);
}

void Frontend::set_owner() { request_no_reply(wire::SET_OWNER, nullptr, 0); }

void Frontend::reset_owner() { request_no_reply(wire::RESET_OWNER, nullptr, 0); }

uint64_t Frontend::get_protocol_features() { return request_u64(wire::GET_PROTOCOL_FEATURES); }

void Frontend::set_protocol_features(uint64_t features) {
  // REPLY_ACK takes effect after this request, so it never asks for an ack.
  send(wire::SET_PROTOCOL_FEATURES, kFlagsRequest, &features, sizeof features, {});
  protocol_features_ = features;
}

uint64_t Frontend::get_queue_num() { return request_u64(wire::GET_QUEUE_NUM); }

uint64_t Frontend::get_max_mem_slots() { return request_u64(wire::GET_MAX_MEM_SLOTS); }

void Frontend::set_mem_table(const GuestMemory& mem) {
  size_t n = mem.num_regions();
  if (n > wire::kMaxTableRegions)
    throw Error(-EINVAL,
                strfmt("SET_MEM_TABLE: %zu regions (at most %u)", n, wire::kMaxTableRegions));
  std::vector<uint8_t> buf(sizeof(wire::MemTableHeader) + n * sizeof(wire::MemRegion));
  wire::MemTableHeader h{static_cast<uint32_t>(n), 0};
  std::memcpy(buf.data(), &h, sizeof h);
  std::vector<int> fds;
  for (size_t i = 0; i < n; i++) {
    wire::MemRegion r = mem.region_msg(i);
    std::memcpy(buf.data() + sizeof h + i * sizeof r, &r, sizeof r);
    fds.push_back(mem.fd(i));
  }
  request_no_reply(wire::SET_MEM_TABLE, buf.data(), buf.size(), fds);
}

void Frontend::add_mem_reg(const GuestMemory& mem, size_t region) {
  wire::SingleMemRegion r{0, mem.region_msg(region)};
  request_no_reply(wire::ADD_MEM_REG, &r, sizeof r, {mem.fd(region)});
}

void Frontend::rem_mem_reg(const GuestMemory& mem, size_t region) {
  wire::SingleMemRegion r{0, mem.region_msg(region)};
  request_no_reply(wire::REM_MEM_REG, &r, sizeof r);
}

void Frontend::set_vring_num(uint32_t index, uint32_t num) {
  wire::VringState s{index, num};
  request_no_reply(wire::SET_VRING_NUM, &s, sizeof s);
}

void Frontend::set_vring_addr(uint32_t index, const DriverRing& ring) {
  set_vring_addr(ring.addr_msg(index));
}

void Frontend::set_vring_addr(const wire::VringAddr& addr) {
  request_no_reply(wire::SET_VRING_ADDR, &addr, sizeof addr);
}

void Frontend::set_vring_base(uint32_t index, uint32_t base) {
  wire::VringState s{index, base};
  request_no_reply(wire::SET_VRING_BASE, &s, sizeof s);
}

uint32_t Frontend::get_vring_base(uint32_t index) {
  wire::VringState s{index, 0};
  proto::Message m = request_reply(wire::GET_VRING_BASE, &s, sizeof s, sizeof s);
  wire::VringState r{};
  m.get(r);
  if (r.index != index)
    throw Error(-EPROTO,
                strfmt("GET_VRING_BASE: reply for queue %u (asked for %u)", r.index, index));
  return r.num;
}

void Frontend::set_vring_fd(uint32_t request, uint32_t index, int fd) {
  uint64_t v = (index & wire::kVringIndexMask) | (fd < 0 ? wire::kVringNoFd : 0);
  std::vector<int> fds;
  if (fd >= 0) fds.push_back(fd);
  request_no_reply(request, &v, sizeof v, fds);
}

void Frontend::set_vring_kick(uint32_t index, int fd) {
  set_vring_fd(wire::SET_VRING_KICK, index, fd);
}

void Frontend::set_vring_call(uint32_t index, int fd) {
  set_vring_fd(wire::SET_VRING_CALL, index, fd);
}

void Frontend::set_vring_err(uint32_t index, int fd) {
  set_vring_fd(wire::SET_VRING_ERR, index, fd);
}

void Frontend::set_vring_enable(uint32_t index, bool enable) {
  wire::VringState s{index, enable ? 1u : 0u};
  request_no_reply(wire::SET_VRING_ENABLE, &s, sizeof s);
}

std::vector<uint8_t> Frontend::get_config(uint32_t offset, uint32_t size, uint32_t flags) {
  if (size > wire::kMaxConfigSize)
    throw Error(-EINVAL, strfmt("GET_CONFIG: size %u exceeds %u", size, wire::kMaxConfigSize));
  wire::ConfigHeader h{offset, size, flags};
  std::vector<uint8_t> buf(sizeof h + size);
  std::memcpy(buf.data(), &h, sizeof h);
  send(wire::GET_CONFIG, kFlagsRequest, buf.data(), buf.size(), {});
  proto::Message m = expect_reply(wire::GET_CONFIG);
  // Back-ends answer a config request they refuse with an empty body or a
  // config header of size 0.
  if (m.payload.empty()) throw Error(-EIO, "GET_CONFIG rejected by the back-end (empty reply)");
  if (m.payload.size() < sizeof h)
    throw Error(-EPROTO, strfmt("GET_CONFIG: reply of %zu bytes", m.payload.size()));
  wire::ConfigHeader rh;
  std::memcpy(&rh, m.payload.data(), sizeof rh);
  if (rh.size == 0 && size != 0) throw Error(-EIO, "GET_CONFIG rejected by the back-end");
  if (m.payload.size() != sizeof h + size || rh.size != size || rh.offset != offset)
    throw Error(-EPROTO, strfmt("GET_CONFIG: reply for offset %u size %u in %zu bytes "
                                "(asked for offset %u size %u)",
                                rh.offset, rh.size, m.payload.size(), offset, size));
  return std::vector<uint8_t>(m.payload.begin() + sizeof h, m.payload.end());
}

void Frontend::set_config(uint32_t offset, const std::vector<uint8_t>& data, uint32_t flags) {
  if (data.size() > wire::kMaxConfigSize)
    throw Error(-EINVAL,
                strfmt("SET_CONFIG: size %zu exceeds %u", data.size(), wire::kMaxConfigSize));
  wire::ConfigHeader h{offset, static_cast<uint32_t>(data.size()), flags};
  std::vector<uint8_t> buf(sizeof h + data.size());
  std::memcpy(buf.data(), &h, sizeof h);
  if (!data.empty()) std::memcpy(buf.data() + sizeof h, data.data(), data.size());
  request_no_reply(wire::SET_CONFIG, buf.data(), buf.size());
}

void Frontend::set_status(uint8_t status) {
  uint64_t v = status;
  request_no_reply(wire::SET_STATUS, &v, sizeof v);
}

uint8_t Frontend::get_status() {
  uint64_t v = request_u64(wire::GET_STATUS);
  if (v > 0xff)
    throw Error(-EPROTO, strfmt("GET_STATUS: 0x%llx is not a status byte",
                                static_cast<unsigned long long>(v)));
  return static_cast<uint8_t>(v);
}

void Frontend::reset_device() { request_no_reply(wire::RESET_DEVICE, nullptr, 0); }

void Frontend::set_backend_req_fd() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw_errno("socketpair for the back-end channel");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  request_no_reply(wire::SET_BACKEND_REQ_FD, nullptr, 0, {theirs.get()});
  backend_ch_ = std::move(ours);
}

void Frontend::sync() { get_features(); }

// ---- Raw access ----

void Frontend::send_raw(uint32_t request, uint32_t flags, const void* payload, size_t len,
                        const std::vector<int>& fds) {
  send(request, flags, payload, len, fds);
}

int Frontend::recv_raw(proto::Message& out, int timeout_ms) {
  if (!sock_) return -ENOTCONN;
  return proto::recv_message(sock_.get(), out, timeout_ms);
}

int Frontend::request_ack(uint32_t request, const void* payload, size_t len,
                          const std::vector<int>& fds, uint64_t* ack, int timeout_ms) {
  if (!sock_) return -ENOTCONN;
  if (len > wire::kMaxPayload) return -EINVAL;
  wire::Header hdr{request, kFlagsRequest | wire::kFlagNeedReply, static_cast<uint32_t>(len)};
  int rc = proto::send_message(sock_.get(), hdr, len ? payload : nullptr, fds.data(), fds.size());
  if (rc == -EPIPE) return -ECONNRESET;
  if (rc < 0) return rc;
  proto::Message m;
  rc = proto::recv_message(sock_.get(), m, timeout_ms < 0 ? timeout_ms_ : timeout_ms);
  if (rc < 0) return rc;
  uint64_t v;
  if (m.hdr.request != request || m.hdr.flags != kFlagsReply || !m.get(v)) return -EPROTO;
  if (ack) *ack = v;
  return v == 0 ? 0 : -EIO;
}

bool Frontend::peer_closed(int timeout_ms) {
  if (!sock_) return true;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    char c;
    ssize_t n = ::recv(sock_.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && (errno == ECONNRESET || errno == EPIPE)) return true;
    if (n > 0) {
      // Discard whatever the back-end still sent (and any fds with it).
      proto::Message m;
      int rc = proto::recv_message(sock_.get(), m, std::max(ms_left(deadline), 1));
      if (rc == -ECONNRESET) return true;
      if (rc == -EPROTO) return true;  // closed in the middle of a message
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    int left = ms_left(deadline);
    if (left <= 0) return false;
    pollfd p{sock_.get(), POLLIN, 0};
    ::poll(&p, 1, left);
  }
}

// ---- Back-end channel ----

int Frontend::serve_backend_channel(int timeout_ms) {
  if (!backend_ch_) return -ENOTCONN;
  proto::Message m;
  int rc = proto::recv_message(backend_ch_.get(), m, timeout_ms);
  if (rc < 0) return rc;
  if (m.hdr.request == wire::BACKEND_CONFIG_CHANGE_MSG) config_changes_++;
  if (m.hdr.flags & wire::kFlagNeedReply) {
    uint64_t zero = 0;
    wire::Header h{m.hdr.request, kFlagsReply, sizeof zero};
    rc = proto::send_message(backend_ch_.get(), h, &zero, nullptr, 0);
    if (rc < 0) return rc == -EPIPE ? -ECONNRESET : rc;
  }
  return static_cast<int>(m.hdr.request);
}

// ---- Device ----

Device::Device(Frontend fe, DeviceOptions opts)
    : fe_(std::move(fe)),
      opts_(std::move(opts)),
      mem_(std::make_unique<GuestMemory>(opts_.memory)) {
  if (opts_.num_queues == 0 || opts_.num_queues > 256)
    throw Error(-EINVAL, strfmt("%u queues requested (1..256)", opts_.num_queues));
}

Device Device::connect(const std::string& path, DeviceOptions opts, int timeout_ms) {
  return Device(Frontend::connect(path, timeout_ms), std::move(opts));
}

DriverRing& Device::ring(size_t i) {
  if (i >= rings_.size()) throw Error(-EINVAL, strfmt("no ring %zu (have %zu)", i, rings_.size()));
  return rings_[i];
}

void Device::bring_up() {
  negotiate();
  configure();
  setup_queues();
}

void Device::negotiate() {
  offered_features_ = fe_.get_features();
  if (offered_features_ & wire::bit(wire::kFeatProtocolFeatures)) {
    offered_protocol_ = fe_.get_protocol_features();
    fe_.set_protocol_features(offered_protocol_ & opts_.protocol_features);
    if (fe_.has_protocol_feature(wire::PF_MQ)) {
      queue_num_ = fe_.get_queue_num();
      if (queue_num_ * opts_.queue_num_unit < opts_.num_queues)
        throw Error(-EINVAL, strfmt("back-end has %llu queues (of %u virtqueues), %u wanted",
                                    static_cast<unsigned long long>(queue_num_),
                                    opts_.queue_num_unit, opts_.num_queues));
    }
    if (fe_.has_protocol_feature(wire::PF_BACKEND_REQ)) fe_.set_backend_req_fd();
  }
  fe_.set_owner();
}

void Device::configure() {
  features_ = offered_features_ & opts_.features;
  fe_.set_features(features_);
  if (opts_.drive_status && fe_.has_protocol_feature(wire::PF_STATUS))
    fe_.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  if (opts_.use_mem_slots && fe_.has_protocol_feature(wire::PF_CONFIGURE_MEM_SLOTS)) {
    for (size_t i = 0; i < mem_->num_regions(); i++) fe_.add_mem_reg(*mem_, i);
  } else {
    fe_.set_mem_table(*mem_);
  }
}

void Device::setup_queues() {
  DriverRing::Options ro;
  ro.size = opts_.queue_size;
  ro.use_event_idx = (features_ & wire::bit(wire::kFeatRingEventIdx)) != 0;
  ro.use_indirect = opts_.use_indirect && (features_ & wire::bit(wire::kFeatRingIndirectDesc)) != 0;
  bool reuse = rings_.size() == opts_.num_queues;
  for (const DriverRing& r : rings_) {
    const auto& o = r.options();
    reuse = reuse && o.size == ro.size && o.use_event_idx == ro.use_event_idx &&
            o.use_indirect == ro.use_indirect;
  }
  if (reuse) {
    for (DriverRing& r : rings_) r.reset();
  } else {
    rings_.clear();
    for (uint32_t i = 0; i < opts_.num_queues; i++) rings_.emplace_back(*mem_, ro);
  }
  for (uint32_t i = 0; i < opts_.num_queues; i++) start_queue(i, 0);
  if (opts_.drive_status && fe_.has_protocol_feature(wire::PF_STATUS))
    fe_.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
}

void Device::start_queue(uint32_t index, uint32_t base) {
  DriverRing& r = ring(index);
  fe_.set_vring_num(index, r.size());
  fe_.set_vring_base(index, base);
  fe_.set_vring_addr(index, r);
  fe_.set_vring_err(index, r.err_fd());
  fe_.set_vring_kick(index, r.kick_fd());
  fe_.set_vring_call(index, r.call_fd());
  if (opts_.enable_queues && (features_ & wire::bit(wire::kFeatProtocolFeatures)))
    fe_.set_vring_enable(index, true);
}

std::vector<uint32_t> Device::stop_queues() {
  std::vector<uint32_t> bases;
  for (uint32_t i = 0; i < rings_.size(); i++) bases.push_back(fe_.get_vring_base(i));
  return bases;
}

}  // namespace vhu::fe
