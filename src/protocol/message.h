// SPDX-License-Identifier: Apache-2.0
// Framing of vhost-user messages over a unix stream socket, with fds passed
// as SCM_RIGHTS. Used by the back-end session, the back-end channel and the
// project's own front-end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "protocol/wire.h"

namespace vhu::proto {

struct Message {
  wire::Header hdr{};
  std::vector<uint8_t> payload;
  std::vector<UniqueFd> fds;

  // Copies the payload into `out` when it is exactly sizeof(T).
  template <typename T>
  bool get(T& out) const {
    if (payload.size() != sizeof(T)) return false;
    __builtin_memcpy(&out, payload.data(), sizeof(T));
    return true;
  }
  template <typename T>
  void set(const T& v) {
    payload.resize(sizeof(T));
    __builtin_memcpy(payload.data(), &v, sizeof(T));
    hdr.size = sizeof(T);
  }
  void clear() {
    hdr = {};
    payload.clear();
    fds.clear();
  }
};

// Sends one message (header + payload + fds) in one sendmsg, retrying on
// EINTR and completing partial writes. Returns 0 or -errno (-EPIPE when the
// peer is gone).
int send_message(int sock, const wire::Header& hdr, const void* payload, const int* fds,
                 size_t nfds);

// Incremental, non-blocking reader for one connection. Feed it whenever the
// socket is readable; it returns kComplete with a whole message in `out`.
class Reader {
 public:
  enum class Status { kComplete, kNeedMore, kClosed, kError };

  Status read(int sock, Message& out, std::string& error);
  // Whether part of a message has been received.
  bool partial() const { return got_ > 0; }
  void reset();

 private:
  Status reject(std::string& error, std::string what);
  uint8_t hdr_buf_[wire::kHeaderSize];
  size_t got_ = 0;  // bytes of header + payload received so far
  Message cur_;
};

// Blocking receive of one whole message with a timeout (for the front-end
// and for replies on the back-end channel). Returns 0, -ETIMEDOUT,
// -ECONNRESET (peer closed), -EPROTO (malformed) or -errno.
int recv_message(int sock, Message& out, int timeout_ms, std::string* error = nullptr);

}  // namespace vhu::proto
