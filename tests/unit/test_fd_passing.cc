// SPDX-License-Identifier: Apache-2.0
// File descriptors passed with messages (SCM_RIGHTS): delivery, limits and
// the absence of leaks on every rejection path.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "protocol/message.h"
#include "protocol/wire.h"

// Last: cmocka defines macros (fail, skip) that clash with the standard library.
#include "test_util.h"

using vhu::proto::Message;
using vhu::proto::Reader;
using vhu::proto::recv_message;
using vhu::proto::send_message;
namespace wire = vhu::wire;
using vhu_test::count_open_fds;
using vhu_test::make_memfd;
using vhu_test::raw_sendmsg;
using vhu_test::SockPair;
using vhu_test::write_all;

namespace {

using Status = Reader::Status;

// `n` fresh memfds, closed on destruction.
struct FdSet {
  std::vector<int> fds;
  explicit FdSet(size_t n) {
    for (size_t i = 0; i < n; i++) fds.push_back(make_memfd(4096 * (i + 1)));
  }
  ~FdSet() {
    for (int fd : fds) ::close(fd);
  }
  FdSet(const FdSet&) = delete;
  FdSet& operator=(const FdSet&) = delete;
};

bool same_file(int a, int b) {
  struct stat sa, sb;
  if (::fstat(a, &sa) != 0 || ::fstat(b, &sb) != 0) return false;
  return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

// Header (+ zero payload) carrying `nfds` fds in one raw sendmsg.
void send_header_with_fds(int sock, uint32_t request, uint32_t size, const int* fds, size_t nfds) {
  wire::Header h{request, wire::kVersion, size};
  assert_int_equal(raw_sendmsg(sock, &h, sizeof h, fds, nfds), sizeof h);
}

void fds_arrive_and_refer_to_the_same_files(void**) {
  SockPair sp;
  FdSet set(3);
  uint64_t payload = 0;  // SET_VRING_KICK-like body
  wire::Header h{wire::SET_MEM_TABLE, wire::kVersion, sizeof payload};
  assert_int_equal(send_message(sp.a, h, &payload, set.fds.data(), set.fds.size()), 0);

  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
  assert_int_equal(m.fds.size(), 3);
  for (size_t i = 0; i < 3; i++) {
    int got = m.fds[i].get();
    assert_true(got >= 0);
    assert_true(got != set.fds[i]);           // a new descriptor ...
    assert_true(same_file(got, set.fds[i]));  // ... for the same file, in order
    assert_true(::fcntl(got, F_GETFD) & FD_CLOEXEC);
  }
  // Writing through the received fd is visible through the original.
  const char msg[] = "shared";
  assert_int_equal(::pwrite(m.fds[1].get(), msg, sizeof msg, 100), sizeof msg);
  char back[sizeof msg] = {};
  assert_int_equal(::pread(set.fds[1], back, sizeof back, 100), sizeof back);
  assert_memory_equal(back, msg, sizeof msg);
}

void max_fds_per_message_is_accepted(void**) {
  SockPair sp;
  FdSet set(wire::kMaxFdsPerMessage);
  int before = count_open_fds();
  {
    wire::Header h{wire::SET_MEM_TABLE, wire::kVersion, 0};
    assert_int_equal(send_message(sp.a, h, nullptr, set.fds.data(), set.fds.size()), 0);
    Reader r;
    Message m;
    std::string err;
    assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
    assert_int_equal(m.fds.size(), wire::kMaxFdsPerMessage);
    for (size_t i = 0; i < set.fds.size(); i++) assert_true(same_file(m.fds[i].get(), set.fds[i]));
    assert_int_equal(count_open_fds(), before + static_cast<int>(wire::kMaxFdsPerMessage));
  }
  // The message owned them.
  assert_int_equal(count_open_fds(), before);
}

void fds_with_a_later_piece_are_collected(void**) {
  SockPair sp;
  FdSet set(2);
  uint64_t v = 7;
  wire::Header h{wire::SET_VRING_CALL, wire::kVersion, sizeof v};
  write_all(sp.a, &h, sizeof h);
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
  assert_int_equal(raw_sendmsg(sp.a, &v, sizeof v, set.fds.data(), 2), sizeof v);
  assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
  assert_int_equal(m.fds.size(), 2);
  assert_true(same_file(m.fds[0].get(), set.fds[0]));
  assert_true(same_file(m.fds[1].get(), set.fds[1]));
}

void too_many_fds_are_refused_without_leak(void**) {
  SockPair sp;
  FdSet set(12);
  int before = count_open_fds();
  send_header_with_fds(sp.a, wire::SET_MEM_TABLE, 0, set.fds.data(), set.fds.size());
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_false(err.empty());
  assert_false(r.partial());
  assert_true(m.fds.empty());
  assert_int_equal(count_open_fds(), before);
}

void too_many_fds_over_two_pieces_without_leak(void**) {
  SockPair sp;
  FdSet set(10);
  int before = count_open_fds();
  uint64_t v = 0;
  wire::Header h{wire::SET_VRING_KICK, wire::kVersion, sizeof v};
  // 5 fds with the header, 5 more with the payload: 10 for one message.
  assert_int_equal(raw_sendmsg(sp.a, &h, sizeof h, set.fds.data(), 5), sizeof h);
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
  assert_int_equal(raw_sendmsg(sp.a, &v, sizeof v, set.fds.data() + 5, 5), sizeof v);
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_int_equal(count_open_fds(), before);
}

void control_truncation_is_refused_without_leak(void**) {
  SockPair sp;
  // More than the receiver's control buffer holds: the kernel truncates.
  constexpr size_t kMany = 40;
  static_assert(kMany > wire::kMaxFdsReceived);
  FdSet set(kMany);
  int before = count_open_fds();
  send_header_with_fds(sp.a, wire::SET_MEM_TABLE, 0, set.fds.data(), set.fds.size());
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_false(err.empty());
  assert_int_equal(count_open_fds(), before);

  // The same through recv_message.
  send_header_with_fds(sp.a, wire::SET_MEM_TABLE, 0, set.fds.data(), set.fds.size());
  assert_int_equal(recv_message(sp.b, m, 1000, &err), -EPROTO);
  assert_int_equal(count_open_fds(), before);
}

void fds_of_an_oversized_message_are_closed(void**) {
  SockPair sp;
  FdSet set(3);
  int before = count_open_fds();
  send_header_with_fds(sp.a, wire::SET_CONFIG, static_cast<uint32_t>(wire::kMaxPayload + 1),
                       set.fds.data(), set.fds.size());
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_int_equal(count_open_fds(), before);
}

void fds_of_a_truncated_message_are_closed(void**) {
  SockPair sp;
  FdSet set(4);
  int before = count_open_fds();
  // Header announces 40 payload bytes; only 10 come before the peer closes.
  send_header_with_fds(sp.a, wire::SET_VRING_ADDR, 40, set.fds.data(), set.fds.size());
  uint8_t part[10] = {};
  write_all(sp.a, part, sizeof part);
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
  assert_int_equal(count_open_fds(), before + 4);  // held by the partial message
  sp.close_a();
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_int_equal(count_open_fds(), before - 1);  // all 4, and our end of the socket
}

void reset_closes_fds_of_a_partial_message(void**) {
  SockPair sp;
  FdSet set(2);
  int before = count_open_fds();
  send_header_with_fds(sp.a, wire::SET_VRING_ADDR, 40, set.fds.data(), set.fds.size());
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
  assert_true(r.partial());
  assert_int_equal(count_open_fds(), before + 2);
  r.reset();
  assert_false(r.partial());
  assert_int_equal(count_open_fds(), before);
}

void repeated_rejections_do_not_accumulate(void**) {
  FdSet set(12);
  int before = count_open_fds();
  for (int i = 0; i < 50; i++) {
    SockPair sp;
    send_header_with_fds(sp.a, wire::SET_MEM_TABLE, 0, set.fds.data(), set.fds.size());
    Message m;
    std::string err;
    assert_int_equal(recv_message(sp.b, m, 1000, &err), -EPROTO);
  }
  assert_int_equal(count_open_fds(), before);
}

// With a tiny send buffer, a message is written in several parts; its fds
// go with the first part only and arrive exactly once.
void fds_survive_partial_writes(void**) {
  SockPair sp;
  int small = 1;
  assert_int_equal(::setsockopt(sp.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  assert_int_equal(::fcntl(sp.a, F_SETFL, ::fcntl(sp.a, F_GETFL) | O_NONBLOCK), 0);
  constexpr int kCount = 12;
  FdSet set(kCount);
  int before = count_open_fds();
  int send_errors = 0;
  std::thread t([&] {
    std::vector<uint8_t> p(wire::kMaxPayload, 0x11);
    for (int i = 0; i < kCount; i++) {
      // Short and long messages: a long one after a short one does not fit.
      uint32_t size = i % 2 ? static_cast<uint32_t>(p.size()) : 1000;
      wire::Header h{wire::SET_CONFIG, wire::kVersion, size};
      if (send_message(sp.a, h, p.data(), &set.fds[i], 1) != 0) send_errors++;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  bool ok = true;
  for (int i = 0; i < kCount && ok; i++) {
    Message m;
    std::string err;
    ok = recv_message(sp.b, m, 3000, &err) == 0 && m.fds.size() == 1 &&
         same_file(m.fds[0].get(), set.fds[i]) &&
         m.payload.size() == (i % 2 ? wire::kMaxPayload : 1000);
  }
  t.join();
  assert_true(ok);
  assert_int_equal(send_errors, 0);
  assert_int_equal(count_open_fds(), before);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(fds_arrive_and_refer_to_the_same_files),
      cmocka_unit_test(max_fds_per_message_is_accepted),
      cmocka_unit_test(fds_with_a_later_piece_are_collected),
      cmocka_unit_test(too_many_fds_are_refused_without_leak),
      cmocka_unit_test(too_many_fds_over_two_pieces_without_leak),
      cmocka_unit_test(control_truncation_is_refused_without_leak),
      cmocka_unit_test(fds_of_an_oversized_message_are_closed),
      cmocka_unit_test(fds_of_a_truncated_message_are_closed),
      cmocka_unit_test(reset_closes_fds_of_a_partial_message),
      cmocka_unit_test(repeated_rejections_do_not_accumulate),
      cmocka_unit_test(fds_survive_partial_writes),
  };
  return cmocka_run_group_tests_name("fd_passing", tests, nullptr, nullptr);
}
