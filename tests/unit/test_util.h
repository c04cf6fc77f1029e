// SPDX-License-Identifier: Apache-2.0
// Small helpers shared by the cmocka unit tests.
#pragma once

// Include this header after every other one: cmocka defines function-like
// macros (fail, skip, ...) that clash with names in the standard library.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

// cmocka needs these before its header.
#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/error.h"

extern "C" {
#include <cmocka.h>
}

namespace vhu_test {

// Returns the code of the vhu::Error `f` throws, 0 when it does not throw
// and 1 for any other exception.
template <typename F>
int thrown_code(F&& f) {
  try {
    f();
  } catch (const vhu::Error& e) {
    return e.code();
  } catch (...) {
    return 1;
  }
  return 0;
}

// A memfd of `size` bytes (sparse); fails the current test on error.
inline int make_memfd(uint64_t size, const char* name = "vhu-unit") {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(::ftruncate(fd, static_cast<off_t>(size)), 0);
  return fd;
}

// Number of open file descriptors of this process.
inline int count_open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  ::closedir(d);
  return n - 1;  // the directory stream itself
}

// A connected AF_UNIX stream socket pair, closed on destruction.
struct SockPair {
  int a = -1;
  int b = -1;
  SockPair() {
    int sv[2];
    assert_int_equal(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a = sv[0];
    b = sv[1];
  }
  ~SockPair() {
    close_a();
    close_b();
  }
  SockPair(const SockPair&) = delete;
  SockPair& operator=(const SockPair&) = delete;
  void close_a() {
    if (a >= 0) ::close(a);
    a = -1;
  }
  void close_b() {
    if (b >= 0) ::close(b);
    b = -1;
  }
};

// Writes all of `buf` with plain write() calls; fails the test otherwise.
inline void write_all(int fd, const void* buf, size_t len) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    assert_true(n > 0);
    p += n;
    len -= static_cast<size_t>(n);
  }
}

// Sends `len` bytes and `nfds` fds in ONE sendmsg, bypassing send_message's
// own limits. Returns what sendmsg returned.
inline ssize_t raw_sendmsg(int sock, const void* buf, size_t len, const int* fds, size_t nfds) {
  iovec iov{const_cast<void*>(buf), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  size_t space = CMSG_SPACE(sizeof(int) * nfds);
  alignas(cmsghdr) static char cbuf[CMSG_SPACE(sizeof(int) * 253)];
  if (nfds > 0) {
    std::memset(cbuf, 0, space);
    msg.msg_control = cbuf;
    msg.msg_controllen = space;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL);
}

}  // namespace vhu_test
