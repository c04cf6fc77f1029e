// SPDX-License-Identifier: Apache-2.0
// The project's own vhost-user front-end (the VMM side of the protocol), for
// integration tests and the vhu-check conformance tool. One Frontend is one
// connection to a back-end; Device adds QEMU-like bring-up of guest memory
// and queues on top of it.
//
// Typed requests throw vhu::Error on failure: -ETIMEDOUT (no reply in time),
// -ECONNRESET (the back-end hung up), -EPROTO (malformed reply), -EIO (the
// back-end acknowledged the request with a non-zero value). The raw API
// (send_raw / recv_raw / request_ack / peer_closed) reports status codes
// instead, for tests that feed a back-end bad input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"
#include "frontend/driver_ring.h"
#include "frontend/guest_memory.h"
#include "protocol/message.h"
#include "protocol/wire.h"

namespace vhu::fe {

class Frontend {
 public:
  static constexpr int kDefaultTimeoutMs = 5000;

  // Connects to a back-end listening at `path`, retrying while the socket
  // does not exist or refuses connections, for up to `timeout_ms`.
  static Frontend connect(const std::string& path, int timeout_ms = kDefaultTimeoutMs);
  // Adopts a connected unix stream socket.
  explicit Frontend(UniqueFd sock);
  Frontend(Frontend&&) noexcept = default;
  Frontend& operator=(Frontend&&) noexcept = default;

  int fd() const { return sock_.get(); }
  bool connected() const { return sock_.valid(); }
  void close();

  // Reply timeout for the typed requests.
  void set_timeout(int timeout_ms) { timeout_ms_ = timeout_ms; }
  int timeout() const { return timeout_ms_; }
  // When true (the default) and REPLY_ACK was negotiated, requests without a
  // reply body carry NEED_REPLY and wait for the back-end's ack.
  void set_need_reply(bool on) { need_reply_ = on; }
  bool need_reply() const { return need_reply_; }
  // Protocol features as sent in the last SET_PROTOCOL_FEATURES.
  uint64_t protocol_features() const { return protocol_features_; }
  bool has_protocol_feature(unsigned bit) const {
    return (protocol_features_ & wire::bit(bit)) != 0;
  }
  bool reply_ack() const { return has_protocol_feature(wire::PF_REPLY_ACK); }

  // ---- Typed requests ----
  uint64_t get_features();
  void set_features(uint64_t features);
  void set_owner();
  void reset_owner();
  uint64_t get_protocol_features();
  void set_protocol_features(uint64_t features);
  uint64_t get_queue_num();
  uint64_t get_max_mem_slots();
  void set_mem_table(const GuestMemory& mem);
  void add_mem_reg(const GuestMemory& mem, size_t region);
  void rem_mem_reg(const GuestMemory& mem, size_t region);
  void set_vring_num(uint32_t index, uint32_t num);
  void set_vring_addr(uint32_t index, const DriverRing& ring);
  void set_vring_addr(const wire::VringAddr& addr);
  void set_vring_base(uint32_t index, uint32_t base);
  // Stops the ring; returns the back-end's next avail index.
  uint32_t get_vring_base(uint32_t index);
  // `fd` < 0 sends NOFD.
  void set_vring_kick(uint32_t index, int fd);
  void set_vring_call(uint32_t index, int fd);
  void set_vring_err(uint32_t index, int fd);
  void set_vring_enable(uint32_t index, bool enable);
  std::vector<uint8_t> get_config(uint32_t offset, uint32_t size, uint32_t flags = 0);
  void set_config(uint32_t offset, const std::vector<uint8_t>& data, uint32_t flags = 0);
  void set_status(uint8_t status);
  uint8_t get_status();
  void reset_device();
  // Creates a socketpair, sends one end and keeps the other as the back-end
  // channel served by serve_backend_channel().
  void set_backend_req_fd();
  // A round trip (GET_FEATURES) that proves every earlier request was read.
  void sync();

  // ---- Raw access ----
  // Sends one message as given (flags and size unchecked). With `payload`
  // null and `len` > 0 only the header goes out, announcing `len` bytes.
  // Throws vhu::Error when sending fails.
  void send_raw(uint32_t request, uint32_t flags, const void* payload, size_t len,
                const std::vector<int>& fds = {});
  // Receives one message: 0, -ETIMEDOUT, -ECONNRESET or -EPROTO.
  int recv_raw(proto::Message& out, int timeout_ms);
  // Sends `request` with NEED_REPLY (whatever was negotiated) and waits for
  // a u64 ack. Returns 0 for ack 0, -EIO for a non-zero ack (its value in
  // *ack), -ETIMEDOUT, -ECONNRESET, or -EPROTO (the reply was not an ack for
  // `request`). Send failures are returned as -errno.
  int request_ack(uint32_t request, const void* payload, size_t len,
                  const std::vector<int>& fds = {}, uint64_t* ack = nullptr, int timeout_ms = -1);
  // Whether the back-end closes the connection within `timeout_ms`.
  // Messages that arrive meanwhile are discarded.
  bool peer_closed(int timeout_ms);

  // ---- Back-end channel ----
  // Reads one back-end -> front-end message, answers NEED_REPLY with ack 0
  // and counts BACKEND_CONFIG_CHANGE_MSG. Returns the request code (> 0),
  // or -ENOTCONN (no channel), -ETIMEDOUT, -ECONNRESET, -EPROTO.
  int serve_backend_channel(int timeout_ms);
  int backend_channel_fd() const { return backend_ch_.get(); }
  uint64_t config_changes() const { return config_changes_; }

 private:
  // Sends a request whose reply is only the optional ack, and waits for the
  // ack when need_reply() applies.
  void request_no_reply(uint32_t request, const void* payload, size_t len,
                        const std::vector<int>& fds = {});
  // Sends a request with a reply body and returns the validated reply.
  proto::Message request_reply(uint32_t request, const void* payload, size_t len,
                               size_t reply_size);
  uint64_t request_u64(uint32_t request);
  void send(uint32_t request, uint32_t flags, const void* payload, size_t len,
            const std::vector<int>& fds);
  proto::Message expect_reply(uint32_t request);
  void set_vring_fd(uint32_t request, uint32_t index, int fd);
  void require_connected() const;

  UniqueFd sock_;
  UniqueFd backend_ch_;
  int timeout_ms_ = kDefaultTimeoutMs;
  bool need_reply_ = true;
  uint64_t protocol_features_ = 0;
  uint64_t config_changes_ = 0;
};

// Virtio status bits.
inline constexpr uint8_t kStatusAcknowledge = 0x01;
inline constexpr uint8_t kStatusDriver = 0x02;
inline constexpr uint8_t kStatusDriverOk = 0x04;
inline constexpr uint8_t kStatusFeaturesOk = 0x08;

struct DeviceOptions {
  // Virtio features the driver wants; SET_FEATURES sends these ∩ offered.
  uint64_t features = wire::bit(wire::kFeatVersion1) | wire::bit(wire::kFeatProtocolFeatures) |
                      wire::bit(wire::kFeatRingEventIdx) | wire::bit(wire::kFeatRingIndirectDesc);
  // Protocol features wanted; SET_PROTOCOL_FEATURES sends these ∩ offered.
  uint64_t protocol_features = wire::bit(wire::PF_MQ) | wire::bit(wire::PF_REPLY_ACK) |
                               wire::bit(wire::PF_CONFIG) | wire::bit(wire::PF_RESET_DEVICE) |
                               wire::bit(wire::PF_CONFIGURE_MEM_SLOTS) |
                               wire::bit(wire::PF_STATUS) | wire::bit(wire::PF_BACKEND_REQ);
  uint32_t num_queues = 1;
  // GET_QUEUE_NUM counts queues in units of this many virtqueues: 2 for
  // virtio-net, whose front-ends read the answer as queue pairs.
  uint32_t queue_num_unit = 1;
  uint32_t queue_size = 256;
  std::vector<GuestMemory::Range> memory = {{0, 16u << 20}};
  // Send the memory with ADD_MEM_REG per region (when CONFIGURE_MEM_SLOTS
  // was negotiated) instead of SET_MEM_TABLE.
  bool use_mem_slots = false;
  // SET_VRING_ENABLE 1 after starting each queue (when PROTOCOL_FEATURES was
  // negotiated).
  bool enable_queues = true;
  // Drive the virtio status with SET_STATUS when STATUS was negotiated.
  bool drive_status = true;
  // Use indirect tables for multi-buffer chains when INDIRECT_DESC was
  // negotiated.
  bool use_indirect = false;
};

// One device as a QEMU-like VMM brings it up. Owns the connection, guest
// memory and one DriverRing per queue.
class Device {
 public:
  explicit Device(Frontend fe, DeviceOptions opts = {});
  static Device connect(const std::string& path, DeviceOptions opts = {},
                        int timeout_ms = Frontend::kDefaultTimeoutMs);

  Frontend& fe() { return fe_; }
  GuestMemory& mem() { return *mem_; }
  DriverRing& ring(size_t i);
  size_t num_rings() const { return rings_.size(); }
  const DeviceOptions& options() const { return opts_; }
  uint64_t offered_features() const { return offered_features_; }
  uint64_t features() const { return features_; }
  uint64_t offered_protocol_features() const { return offered_protocol_; }
  uint64_t protocol_features() const { return fe_.protocol_features(); }
  uint64_t queue_num() const { return queue_num_; }

  // negotiate() + configure() + setup_queues().
  void bring_up();
  // GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM
  // (MQ), SET_BACKEND_REQ_FD (BACKEND_REQ), SET_OWNER.
  void negotiate();
  // SET_FEATURES, SET_STATUS (STATUS), SET_MEM_TABLE or ADD_MEM_REG.
  void configure();
  // Resets (or creates) every ring and starts each queue at base 0.
  void setup_queues();
  // SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK,
  // SET_VRING_CALL, SET_VRING_ENABLE 1 for one queue.
  void start_queue(uint32_t index, uint32_t base);
  // GET_VRING_BASE on each queue; returns the bases.
  std::vector<uint32_t> stop_queues();

 private:
  Frontend fe_;
  DeviceOptions opts_;
  std::unique_ptr<GuestMemory> mem_;
  std::vector<DriverRing> rings_;
  uint64_t offered_features_ = 0;
  uint64_t features_ = 0;
  uint64_t offered_protocol_ = 0;
  uint64_t queue_num_ = 0;
};

}  // namespace vhu::fe
