// SPDX-License-Identifier: Apache-2.0
// One front-end connection: reads requests, validates them, applies them to
// the device's queues and memory, and replies (including REPLY_ACK).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "common/fd.h"
#include "memory/memory.h"
#include "protocol/message.h"
#include "vhostuser/vhostuser.h"

namespace vhu {

class Daemon;

// The back-end -> front-end channel (SET_BACKEND_REQ_FD). Shared so that a
// thread sending on it keeps it alive while the session ends.
class BackendChannel {
 public:
  // Makes `fd` non-blocking: a front-end that stops reading the channel
  // makes requests time out instead of blocking the caller.
  BackendChannel(UniqueFd fd, bool reply_ack);
  // Sends a request without payload (or with `payload`) and waits for the
  // ack when REPLY_ACK was negotiated. Returns 0 or negative errno.
  int request(uint32_t code, const void* payload, uint32_t size, int timeout_ms);

 private:
  std::mutex mu_;
  UniqueFd fd_;
  bool reply_ack_;
};

class Session {
 public:
  Session(Daemon& daemon, UniqueFd conn);
  ~Session();  // stops every queue and resets device state
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int fd() const { return conn_.get(); }
  // Reads and handles whatever arrived. Returns false when the session is
  // over (the front-end hung up, or a framing error forced a disconnect).
  bool on_readable();

 private:
  bool dispatch(proto::Message& msg);
  int handle(proto::Message& msg, proto::Message& reply);
  void send_reply(const proto::Message& req, const proto::Message& reply);
  void send_ack(const proto::Message& req, int status);
  void send_error_reply(const proto::Message& req);

  bool has_protocol(unsigned bit) const;
  vhu_vring& queue_for(uint32_t index);
  void replace_memory(std::shared_ptr<const MemoryTable> mem);
  void reset_device();

  int do_set_features(uint64_t f);
  int do_set_mem_table(proto::Message& msg);
  int do_add_mem_reg(proto::Message& msg);
  int do_rem_mem_reg(proto::Message& msg);
  int do_vring_fd(proto::Message& msg, uint32_t request);
  int do_get_config(const proto::Message& msg, proto::Message& reply);
  int do_set_config(const proto::Message& msg);

  Daemon& d_;
  UniqueFd conn_;
  proto::Reader reader_;
  uint64_t offered_features_ = 0;
  uint64_t offered_protocol_ = 0;
  uint64_t acked_features_ = 0;
  bool features_set_ = false;
  uint64_t protocol_ = 0;
  bool owner_ = false;
  uint8_t status_ = 0;
  bool dead_ = false;  // a reply could not be delivered
  MemoryTablePtr mem_;
  UniqueFd log_fd_;
};

}  // namespace vhu
