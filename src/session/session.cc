// SPDX-License-Identifier: Apache-2.0
//
// Security model: the front-end is not trusted. Every field of every request
// is validated here before it reaches a queue or the memory layer; a request
// that fails validation gets an error reply (or a failed REPLY_ACK) and
// changes nothing. Only framing errors, after which the byte stream cannot
// be trusted, end the connection.
#include "session/session.h"

#include <fcntl.h>
#include <poll.h>

#include <cstring>

#include "common/error.h"
#include "daemon/daemon.h"

namespace vhu {

using namespace wire;

namespace {

constexpr uint64_t kEngineUnsupportedFeatures =
    bit(kFeatRingPacked) | bit(kFeatAccessPlatform) | bit(kFeatLogAll);

constexpr uint64_t kImplementedProtocol = bit(PF_MQ) | bit(PF_REPLY_ACK) | bit(PF_BACKEND_REQ) |
                                          bit(PF_CONFIG) | bit(PF_RESET_DEVICE) |
                                          bit(PF_CONFIGURE_MEM_SLOTS) | bit(PF_STATUS);

constexpr uint64_t kDefaultFeatures =
    bit(kFeatVersion1) | bit(kFeatRingIndirectDesc) | bit(kFeatRingEventIdx);

// Requests whose use depends on a negotiated protocol feature.
int required_protocol_feature(uint32_t request) {
  switch (request) {
    case SET_BACKEND_REQ_FD:
      return PF_BACKEND_REQ;
    case GET_CONFIG:
    case SET_CONFIG:
      return PF_CONFIG;
    case RESET_DEVICE:
      return PF_RESET_DEVICE;
    case GET_MAX_MEM_SLOTS:
    case ADD_MEM_REG:
    case REM_MEM_REG:
      return PF_CONFIGURE_MEM_SLOTS;
    case SET_STATUS:
    case GET_STATUS:
      return PF_STATUS;
    case SET_LOG_BASE:
      return PF_LOG_SHMFD;
    default:
      return -1;
  }
}

// The payload as T; its size was checked against the request's rule.
template <typename T>
T payload_as(const proto::Message& m) {
  T v{};
  if (!m.get(v)) throw Error(-EINVAL, "payload size does not match the request");
  return v;
}

}  // namespace

BackendChannel::BackendChannel(UniqueFd fd, bool reply_ack)
    : fd_(std::move(fd)), reply_ack_(reply_ack) {
  int fl = ::fcntl(fd_.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd_.get(), F_SETFL, fl | O_NONBLOCK) < 0)
    throw_errno("making the back-end channel non-blocking");
}

int BackendChannel::request(uint32_t code, const void* payload, uint32_t size, int timeout_ms) {
  std::lock_guard lk(mu_);
  if (!fd_) return -ENOTCONN;
  Header h{code, kVersion | (reply_ack_ ? kFlagNeedReply : 0), size};
  int rc = proto::send_message(fd_.get(), h, payload, nullptr, 0);
  if (rc < 0) return rc;
  if (!reply_ack_) return 0;
  proto::Message reply;
  rc = proto::recv_message(fd_.get(), reply, timeout_ms);
  if (rc < 0) return rc;
  uint64_t v;
  if (reply.hdr.request != code || !(reply.hdr.flags & kFlagReply) || !reply.get(v)) return -EPROTO;
  return v == 0 ? 0 : -EIO;
}

Session::Session(Daemon& d, UniqueFd conn) : d_(d), conn_(std::move(conn)) {
  // Replies are written with a bounded wait (send_message polls up to 1 s
  // on EAGAIN): a front-end that stops reading cannot wedge the control
  // thread.
  int fl = ::fcntl(conn_.get(), F_GETFL);
  if (fl < 0 || ::fcntl(conn_.get(), F_SETFL, fl | O_NONBLOCK) < 0)
    throw_errno("making the front-end socket non-blocking");
  const vhu_backend_ops& ops = d_.ops();
  uint64_t f = ops.get_features ? ops.get_features(d_.user_data()) : kDefaultFeatures;
  offered_features_ = (f & ~kEngineUnsupportedFeatures) | bit(kFeatProtocolFeatures);
  uint64_t want =
      ops.get_protocol_features ? ops.get_protocol_features(d_.user_data()) : kImplementedProtocol;
  offered_protocol_ = want & kImplementedProtocol;
  if (!ops.get_config) offered_protocol_ &= ~bit(PF_CONFIG);
  d_.log().log(VHU_LOG_INFO, "front-end connected (features 0x%llx, protocol 0x%llx)",
               (unsigned long long)offered_features_, (unsigned long long)offered_protocol_);
}

Session::~Session() {
  try {
    reset_device();
    replace_memory(nullptr);
  } catch (const std::exception& e) {
    d_.log().log(VHU_LOG_ERROR, "session teardown: %s", e.what());
  }
  d_.publish_backend_channel(nullptr);
  d_.set_acked_features(0);
  d_.set_protocol_features(0);
}

bool Session::has_protocol(unsigned b) const { return protocol_ & bit(b); }

vhu_vring& Session::queue_for(uint32_t index) {
  if (index >= d_.num_queues())
    throw Error(-EINVAL,
                strfmt("queue index %u out of range (device has %u)", index, d_.num_queues()));
  return *d_.vring(static_cast<uint16_t>(index));
}

bool Session::on_readable() {
  // A bounded batch per wake-up: a front-end that floods requests must not
  // keep the control loop from its other events (stop, for one). The watch
  // is level-triggered, so what is left is read on the next iteration.
  for (int batch = 0; batch < 64; batch++) {
    proto::Message msg;
    std::string err;
    switch (reader_.read(conn_.get(), msg, err)) {
      case proto::Reader::Status::kNeedMore:
        return true;
      case proto::Reader::Status::kClosed:
        d_.log().log(VHU_LOG_INFO, "front-end disconnected");
        return false;
      case proto::Reader::Status::kError:
        d_.log().log(VHU_LOG_ERROR, "dropping front-end: %s", err.c_str());
        return false;
      case proto::Reader::Status::kComplete:
        if (!dispatch(msg) || dead_) return false;
        break;
    }
  }
  return true;
}

void Session::send_reply(const proto::Message& req, const proto::Message& reply) {
  Header h{req.hdr.request, kVersion | kFlagReply, static_cast<uint32_t>(reply.payload.size())};
  int rc = proto::send_message(conn_.get(), h, reply.payload.data(), nullptr, 0);
  if (rc < 0 && !dead_) {
    d_.log().log(VHU_LOG_ERROR, "dropping front-end: reply to %s failed: %s",
                 request_name(req.hdr.request), std::strerror(-rc));
    dead_ = true;
  }
}

void Session::send_ack(const proto::Message& req, int status) {
  proto::Message ack;
  ack.set<uint64_t>(status == 0 ? 0 : 1);
  send_reply(req, ack);
}

void Session::send_error_reply(const proto::Message& req) {
  proto::Message reply;
  const RequestRule* rule = request_rule(req.hdr.request);
  if (rule && !rule->implemented && rule->reply == Reply::kU64) {
    // These replies report success as 0; SET_DEVICE_STATE_FD also says
    // that no fd comes back (bit 8).
    uint64_t v = req.hdr.request == SET_DEVICE_STATE_FD ? 0x101 : 1;
    reply.set(v);
  }
  // Everything else: an empty body, which no front-end takes for success.
  send_reply(req, reply);
}

bool Session::dispatch(proto::Message& msg) {
  const Header& h = msg.hdr;
  if (h.flags & ~kKnownFlags) {
    d_.log().log(VHU_LOG_ERROR, "dropping front-end: request %u has reserved flag bits 0x%x",
                 h.request, h.flags);
    return false;
  }
  if ((h.flags & kVersionMask) != kVersion || (h.flags & kFlagReply)) {
    d_.log().log(VHU_LOG_ERROR, "dropping front-end: request %u has bad flags 0x%x", h.request,
                 h.flags);
    return false;
  }
  const bool need_ack = (h.flags & kFlagNeedReply) && has_protocol(PF_REPLY_ACK);
  const RequestRule* rule = request_rule(h.request);
  if (!rule) {
    d_.log().log(VHU_LOG_WARNING, "unknown request %u ignored", h.request);
    if (need_ack) send_ack(msg, -ENOTSUP);
    return true;
  }

  proto::Message reply;
  int status;
  try {
    status = handle(msg, reply);
  } catch (const Error& e) {
    status = e.code();
    d_.log().log(VHU_LOG_ERROR, "%s failed: %s", rule->name, e.what());
  } catch (const std::bad_alloc&) {
    status = -ENOMEM;
    d_.log().log(VHU_LOG_ERROR, "%s failed: out of memory", rule->name);
  } catch (const std::exception& e) {
    status = -EIO;
    d_.log().log(VHU_LOG_ERROR, "%s failed: %s", rule->name, e.what());
  }
  if (status == 0 && rule->implemented) d_.log().log(VHU_LOG_DEBUG, "%s ok", rule->name);

  if (rule->reply == Reply::kNone) {
    if (need_ack) send_ack(msg, status);
  } else if (status == 0) {
    send_reply(msg, reply);
  } else {
    send_error_reply(msg);
  }
  return true;
}

int Session::handle(proto::Message& msg, proto::Message& reply) {
  const Header& h = msg.hdr;
  const RequestRule& rule = *request_rule(h.request);
  const char* name = rule.name;

  if (!rule.implemented) {
    d_.log().log(VHU_LOG_WARNING, "%s is not supported", name);
    return -ENOTSUP;
  }
  // Payload size.
  switch (rule.size_rule) {
    case SizeRule::kExact:
      if (h.size != rule.size)
        throw Error(-EINVAL, strfmt("payload is %u bytes, expected %u", h.size, rule.size));
      break;
    case SizeRule::kMemTable: {
      MemTableHeader mt;
      if (h.size < sizeof mt) throw Error(-EINVAL, "memory table payload too short");
      std::memcpy(&mt, msg.payload.data(), sizeof mt);
      if (mt.nregions == 0 || mt.nregions > kMaxTableRegions)
        throw Error(-EINVAL, strfmt("memory table has %u regions (1..%u allowed)", mt.nregions,
                                    kMaxTableRegions));
      if (h.size != sizeof mt + mt.nregions * sizeof(MemRegion))
        throw Error(-EINVAL,
                    strfmt("memory table payload is %u bytes for %u regions", h.size, mt.nregions));
      break;
    }
    case SizeRule::kConfig: {
      ConfigHeader ch;
      if (h.size < sizeof ch) throw Error(-EINVAL, "config payload too short");
      std::memcpy(&ch, msg.payload.data(), sizeof ch);
      if (ch.size > kMaxConfigSize || h.size != sizeof ch + ch.size)
        throw Error(-EINVAL,
                    strfmt("config payload is %u bytes for a size of %u", h.size, ch.size));
      break;
    }
    case SizeRule::kAny:
      break;
  }
  // Attached fds (all of them are closed with the message on any failure).
  if (msg.fds.size() < rule.min_fds || msg.fds.size() > rule.max_fds)
    throw Error(-EINVAL, strfmt("carries %zu file descriptors (expected %u..%u)", msg.fds.size(),
                                rule.min_fds, rule.max_fds));
  int pf = required_protocol_feature(h.request);
  if (pf >= 0 && !has_protocol(static_cast<unsigned>(pf)))
    throw Error(-ENOTSUP, "its protocol feature was not negotiated");

  switch (h.request) {
    case GET_FEATURES:
      reply.set(offered_features_);
      return 0;
    case SET_FEATURES: {
      const auto f = payload_as<uint64_t>(msg);
      return do_set_features(f);
    }
    case SET_OWNER:
      owner_ = true;
      return 0;
    case RESET_OWNER:
      reset_device();
      owner_ = false;
      return 0;
    case SET_MEM_TABLE:
      return do_set_mem_table(msg);
    case SET_LOG_BASE:  // gated on LOG_SHMFD above, which is never offered
      return -ENOTSUP;
    case SET_LOG_FD:
      // Dirty logging is not offered; keep the fd only to replace it (and
      // close the previous one) if it is sent again.
      log_fd_ = msg.fds.empty() ? UniqueFd() : std::move(msg.fds[0]);
      return 0;
    case SET_VRING_NUM: {
      const auto s = payload_as<VringState>(msg);
      vhu_vring& q = queue_for(s.index);
      uint32_t max = d_.ops().max_queue_size;
      if (s.num == 0 || s.num > max || (s.num & (s.num - 1)))
        throw Error(-EINVAL, strfmt("queue size %u invalid (power of two up to %u)", s.num, max));
      q.loop().run_sync([&] {
        if (q.started()) throw Error(-EBUSY, "queue is running");
        q.set_num(static_cast<uint16_t>(s.num));
      });
      return 0;
    }
    case SET_VRING_ADDR: {
      const auto a = payload_as<VringAddr>(msg);
      vhu_vring& q = queue_for(a.index);
      if (a.flags & ~1u) throw Error(-EINVAL, strfmt("unknown vring flags 0x%x", a.flags));
      if (a.flags & 1u) throw Error(-ENOTSUP, "dirty logging of the used ring is not offered");
      q.loop().run_sync([&] {
        if (q.started()) throw Error(-EBUSY, "queue is running");
        uint32_t num = q.num();
        if (num && mem_ &&
            (!mem_->uva_to_host(a.desc_user_addr, SplitLayout::desc_bytes(num)) ||
             !mem_->uva_to_host(a.avail_user_addr, SplitLayout::avail_bytes(num)) ||
             !mem_->uva_to_host(a.used_user_addr, SplitLayout::used_bytes(num))))
          throw Error(-EFAULT, "ring addresses are not inside guest memory");
        q.set_addr(a);
      });
      return 0;
    }
    case SET_VRING_BASE: {
      const auto s = payload_as<VringState>(msg);
      vhu_vring& q = queue_for(s.index);
      if (s.num > 0xffff)
        throw Error(-EINVAL, strfmt("vring base 0x%x does not fit a split ring", s.num));
      q.loop().run_sync([&] {
        if (q.started()) throw Error(-EBUSY, "queue is running");
        q.set_base(static_cast<uint16_t>(s.num));
      });
      return 0;
    }
    case GET_VRING_BASE: {
      const auto s = payload_as<VringState>(msg);
      vhu_vring& q = queue_for(s.index);
      uint16_t base = 0;
      q.loop().run_sync([&] { base = q.stop(); });
      reply.set(VringState{s.index, base});
      return 0;
    }
    case SET_VRING_KICK:
    case SET_VRING_CALL:
    case SET_VRING_ERR:
      return do_vring_fd(msg, h.request);
    case GET_PROTOCOL_FEATURES:
      reply.set(offered_protocol_);
      return 0;
    case SET_PROTOCOL_FEATURES: {
      const auto f = payload_as<uint64_t>(msg);
      if (f & ~offered_protocol_)
        throw Error(-EINVAL, strfmt("protocol features 0x%llx were not offered",
                                    (unsigned long long)(f & ~offered_protocol_)));
      protocol_ = f;
      d_.set_protocol_features(f);
      return 0;
    }
    case GET_QUEUE_NUM:
      reply.set<uint64_t>(d_.ops().queue_num ? d_.ops().queue_num : d_.num_queues());
      return 0;
    case SET_VRING_ENABLE: {
      const auto s = payload_as<VringState>(msg);
      if (!(acked_features_ & bit(kFeatProtocolFeatures)) && protocol_ == 0)
        throw Error(-EINVAL, "SET_VRING_ENABLE needs VHOST_USER_F_PROTOCOL_FEATURES");
      vhu_vring& q = queue_for(s.index);
      if (s.num > 1) throw Error(-EINVAL, strfmt("enable value %u is not 0 or 1", s.num));
      q.loop().run_sync([&] { q.set_enabled(s.num == 1); });
      return 0;
    }
    case SET_BACKEND_REQ_FD:
      d_.publish_backend_channel(
          std::make_shared<BackendChannel>(std::move(msg.fds[0]), has_protocol(PF_REPLY_ACK)));
      return 0;
    case GET_CONFIG:
      return do_get_config(msg, reply);
    case SET_CONFIG:
      return do_set_config(msg);
    case RESET_DEVICE:
      reset_device();
      return 0;
    case GET_MAX_MEM_SLOTS:
      reply.set<uint64_t>(kMaxMemSlots);
      return 0;
    case ADD_MEM_REG:
      return do_add_mem_reg(msg);
    case REM_MEM_REG:
      return do_rem_mem_reg(msg);
    case SET_STATUS: {
      const auto v = payload_as<uint64_t>(msg);
      if (v > 0xff)
        throw Error(-EINVAL, strfmt("status 0x%llx is not a u8", (unsigned long long)v));
      status_ = static_cast<uint8_t>(v);
      // The driver resetting the device acknowledges a NEEDS_RESET report.
      if (v == 0) d_.clear_needs_reset();
      return 0;
    }
    case GET_STATUS: {
      uint64_t v = status_;
      if (d_.needs_reset()) v |= kStatusNeedsReset;
      reply.set(v);
      return 0;
    }
    default:
      return -ENOTSUP;
  }
}

int Session::do_set_features(uint64_t f) {
  if (f & ~offered_features_)
    throw Error(-EINVAL, strfmt("features 0x%llx were not offered",
                                (unsigned long long)(f & ~offered_features_)));
  const vhu_backend_ops& ops = d_.ops();
  if (ops.features_acked) {
    int rc = ops.features_acked(f, d_.user_data());
    if (rc != 0) throw Error(rc < 0 ? rc : -EINVAL, "the device refused these features");
  }
  acked_features_ = f;
  features_set_ = true;
  d_.set_acked_features(f);
  // Without F_PROTOCOL_FEATURES there is no SET_VRING_ENABLE: every ring is
  // enabled at once.
  if (!(f & bit(kFeatProtocolFeatures))) {
    for (uint16_t i = 0; i < d_.num_queues(); i++) {
      vhu_vring& q = *d_.vring(i);
      q.loop().run_sync([&] { q.set_enabled(true); });
    }
  }
  return 0;
}

void Session::replace_memory(std::shared_ptr<const MemoryTable> mem) {
  mem_ = mem;
  // Every worker switches to the new table before the old one can go away.
  for (uint16_t i = 0; i < d_.num_queues(); i++) {
    vhu_vring& q = *d_.vring(i);
    q.loop().run_sync([&] { q.set_memory(mem); });
  }
  d_.publish_memory(mem);
}

int Session::do_set_mem_table(proto::Message& msg) {
  MemTableHeader mt;
  std::memcpy(&mt, msg.payload.data(), sizeof mt);
  if (msg.fds.size() != mt.nregions)
    throw Error(-EINVAL,
                strfmt("memory table has %u regions but %zu fds", mt.nregions, msg.fds.size()));
  std::vector<std::shared_ptr<Region>> regions;
  MemoryTable building;
  for (uint32_t i = 0; i < mt.nregions; i++) {
    MemRegion r;
    std::memcpy(&r, msg.payload.data() + sizeof mt + i * sizeof r, sizeof r);
    building.check_new_region(r);
    regions.push_back(std::make_shared<Region>(r, std::move(msg.fds[i])));
    building = MemoryTable(regions);
  }
  replace_memory(std::make_shared<const MemoryTable>(std::move(regions)));
  if (d_.ops().memory_changed) d_.ops().memory_changed(d_.user_data());
  return 0;
}

int Session::do_add_mem_reg(proto::Message& msg) {
  const auto sr = payload_as<SingleMemRegion>(msg);
  std::vector<std::shared_ptr<Region>> regions;
  if (mem_) {
    if (mem_->size() >= kMaxMemSlots)
      throw Error(-ENOSPC, strfmt("all %u memory slots are in use", kMaxMemSlots));
    mem_->check_new_region(sr.region);
    regions = mem_->regions();
  }
  regions.push_back(std::make_shared<Region>(sr.region, std::move(msg.fds[0])));
  replace_memory(std::make_shared<const MemoryTable>(std::move(regions)));
  if (d_.ops().memory_changed) d_.ops().memory_changed(d_.user_data());
  return 0;
}

int Session::do_rem_mem_reg(proto::Message& msg) {
  const auto sr = payload_as<SingleMemRegion>(msg);
  // An fd may be attached by some front-ends; it is closed with the message.
  if (!mem_) throw Error(-ENOENT, "no memory regions");
  std::vector<std::shared_ptr<Region>> regions;
  bool found = false;
  for (const auto& r : mem_->regions()) {
    if (!found && r->gpa() == sr.region.guest_phys_addr && r->size() == sr.region.memory_size &&
        r->uva() == sr.region.user_addr) {
      found = true;
      continue;
    }
    regions.push_back(r);
  }
  if (!found)
    throw Error(-ENOENT, strfmt("no memory region at gpa 0x%llx size 0x%llx",
                                (unsigned long long)sr.region.guest_phys_addr,
                                (unsigned long long)sr.region.memory_size));
  replace_memory(regions.empty() ? nullptr
                                 : std::make_shared<const MemoryTable>(std::move(regions)));
  if (d_.ops().memory_changed) d_.ops().memory_changed(d_.user_data());
  return 0;
}

int Session::do_vring_fd(proto::Message& msg, uint32_t request) {
  const auto v = payload_as<uint64_t>(msg);
  if (v & ~(kVringIndexMask | kVringNoFd))
    throw Error(-EINVAL, strfmt("reserved bits set in 0x%llx", (unsigned long long)v));
  bool nofd = v & kVringNoFd;
  if (nofd != msg.fds.empty())
    throw Error(-EINVAL, nofd ? "NOFD set but an fd is attached" : "no fd attached");
  vhu_vring& q = queue_for(static_cast<uint32_t>(v & kVringIndexMask));
  UniqueFd fd = nofd ? UniqueFd() : std::move(msg.fds[0]);
  q.loop().run_sync([&] {
    switch (request) {
      case SET_VRING_KICK:
        q.set_kick_and_start(std::move(fd), nofd, mem_, acked_features_);
        break;
      case SET_VRING_CALL:
        q.set_call(std::move(fd));
        break;
      default:
        q.set_err(std::move(fd));
        break;
    }
  });
  return 0;
}

int Session::do_get_config(const proto::Message& msg, proto::Message& reply) {
  ConfigHeader ch;
  std::memcpy(&ch, msg.payload.data(), sizeof ch);
  if (uint64_t{ch.offset} + ch.size > kMaxConfigSize)
    throw Error(-EINVAL,
                strfmt("config range %u+%u exceeds %u bytes", ch.offset, ch.size, kMaxConfigSize));
  reply.payload.assign(sizeof ch + ch.size, 0);
  std::memcpy(reply.payload.data(), &ch, sizeof ch);
  int rc =
      d_.ops().get_config(ch.offset, reply.payload.data() + sizeof ch, ch.size, d_.user_data());
  if (rc != 0) throw Error(rc < 0 ? rc : -EIO, "the device's get_config failed");
  reply.hdr.size = static_cast<uint32_t>(reply.payload.size());
  return 0;
}

int Session::do_set_config(const proto::Message& msg) {
  ConfigHeader ch;
  std::memcpy(&ch, msg.payload.data(), sizeof ch);
  if (uint64_t{ch.offset} + ch.size > kMaxConfigSize)
    throw Error(-EINVAL,
                strfmt("config range %u+%u exceeds %u bytes", ch.offset, ch.size, kMaxConfigSize));
  if (ch.flags > 1) throw Error(-EINVAL, strfmt("unknown config flags %u", ch.flags));
  if (!d_.ops().set_config) throw Error(-ENOTSUP, "the device has no writable config");
  int rc = d_.ops().set_config(ch.offset, msg.payload.data() + sizeof ch, ch.size, ch.flags,
                               d_.user_data());
  if (rc != 0) throw Error(rc < 0 ? rc : -EIO, "the device's set_config failed");
  return 0;
}

void Session::reset_device() {
  for (uint16_t i = 0; i < d_.num_queues(); i++) {
    vhu_vring& q = *d_.vring(i);
    q.loop().run_sync([&] { q.reset(); });
  }
  acked_features_ = 0;
  features_set_ = false;
  status_ = 0;
  d_.set_acked_features(0);
  d_.clear_needs_reset();
  if (d_.ops().device_reset) d_.ops().device_reset(d_.user_data());
}

}  // namespace vhu
