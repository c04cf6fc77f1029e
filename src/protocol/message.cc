// SPDX-License-Identifier: Apache-2.0
#include "protocol/message.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/error.h"

namespace vhu::proto {

int send_message(int sock, const wire::Header& hdr, const void* payload, const int* fds,
                 size_t nfds) {
  if (nfds > wire::kMaxFdsPerMessage || hdr.size > wire::kMaxPayload || (hdr.size > 0 && !payload))
    return -EINVAL;
  iovec iov[2];
  iov[0].iov_base = const_cast<wire::Header*>(&hdr);
  iov[0].iov_len = sizeof hdr;
  iov[1].iov_base = const_cast<void*>(payload);
  iov[1].iov_len = hdr.size;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * wire::kMaxFdsPerMessage)];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = iov[1].iov_len ? 2 : 1;
  if (nfds > 0) {
    std::memset(cbuf, 0, sizeof cbuf);
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  // A stream socket may take part of the message; the rest follows without
  // the fds, which travel with the first byte.
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{sock, POLLOUT, 0};
        if (::poll(&p, 1, 1000) <= 0) return -ETIMEDOUT;
        continue;
      }
      return -errno;
    }
    msg.msg_control = nullptr;
    msg.msg_controllen = 0;
    size_t done = static_cast<size_t>(n);
    while (msg.msg_iovlen > 0 && done >= msg.msg_iov->iov_len) {
      done -= msg.msg_iov->iov_len;
      msg.msg_iov++;
      msg.msg_iovlen--;
    }
    if (msg.msg_iovlen == 0) break;
    msg.msg_iov->iov_base = static_cast<uint8_t*>(msg.msg_iov->iov_base) + done;
    msg.msg_iov->iov_len -= done;
  }
  return 0;
}

void Reader::reset() {
  got_ = 0;
  cur_.clear();
}

Reader::Status Reader::reject(std::string& error, std::string what) {
  error = std::move(what);
  reset();  // closes any fds received with the bad message
  return Status::kError;
}

Reader::Status Reader::read(int sock, Message& out, std::string& error) {
  for (;;) {
    size_t want;
    uint8_t* dst;
    if (got_ < wire::kHeaderSize) {
      want = wire::kHeaderSize - got_;
      dst = hdr_buf_ + got_;
    } else {
      size_t off = got_ - wire::kHeaderSize;
      want = cur_.hdr.size - off;
      dst = cur_.payload.data() + off;
    }
    if (want == 0) break;

    iovec iov{dst, want};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * wire::kMaxFdsReceived)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::kNeedMore;
      if (errno == ECONNRESET && !partial()) {
        reset();
        return Status::kClosed;
      }
      return reject(error, strfmt("recvmsg: %s", std::strerror(errno)));
    }
    // Take ownership of every fd first so that no path can leak one.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < cnt; i++) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          cur_.fds.emplace_back(fd);
        }
      }
    }
    if (msg.msg_flags & MSG_CTRUNC)
      return reject(error, "message carried more file descriptors than allowed");
    if (n == 0) {
      bool mid = got_ > 0;
      reset();
      if (mid) {
        error = "peer closed the connection in the middle of a message";
        return Status::kError;
      }
      return Status::kClosed;
    }
    got_ += static_cast<size_t>(n);
    if (got_ == wire::kHeaderSize) {
      std::memcpy(&cur_.hdr, hdr_buf_, sizeof cur_.hdr);
      if (cur_.hdr.size > wire::kMaxPayload)
        return reject(error, strfmt("payload of %u bytes exceeds the %zu-byte limit", cur_.hdr.size,
                                    wire::kMaxPayload));
      cur_.payload.resize(cur_.hdr.size);
    }
    if (cur_.fds.size() > wire::kMaxFdsPerMessage)
      return reject(error, strfmt("message carried %zu file descriptors (at most %zu)",
                                  cur_.fds.size(), wire::kMaxFdsPerMessage));
  }
  out = std::move(cur_);
  cur_ = Message{};
  got_ = 0;
  return Status::kComplete;
}

int recv_message(int sock, Message& out, int timeout_ms, std::string* error) {
  Reader r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string err;
  for (;;) {
    auto st = r.read(sock, out, err);
    switch (st) {
      case Reader::Status::kComplete:
        return 0;
      case Reader::Status::kClosed:
        if (error) *error = "peer closed the connection";
        return -ECONNRESET;
      case Reader::Status::kError:
        if (error) *error = err;
        return -EPROTO;
      case Reader::Status::kNeedMore:
        break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      if (error) *error = "timed out waiting for a message";
      return -ETIMEDOUT;
    }
    pollfd p{sock, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno != EINTR) return -errno;
  }
}

}  // namespace vhu::proto
