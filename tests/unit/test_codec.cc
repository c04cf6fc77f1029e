// SPDX-License-Identifier: Apache-2.0
// Wire rules table and message framing (send_message / Reader / recv_message).
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <set>
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
using vhu_test::SockPair;
using vhu_test::write_all;

namespace {

using Status = Reader::Status;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

// Header followed by payload, as it appears on the wire.
std::vector<uint8_t> frame(uint32_t request, uint32_t flags, const std::vector<uint8_t>& p) {
  wire::Header h{request, flags, static_cast<uint32_t>(p.size())};
  std::vector<uint8_t> out(sizeof h + p.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!p.empty()) std::memcpy(out.data() + sizeof h, p.data(), p.size());
  return out;
}

// ---- wire rules table ----

void wire_every_code_has_a_rule(void**) {
  std::set<std::string> names;
  for (uint32_t code = 1; code <= wire::REQUEST_MAX; code++) {
    const wire::RequestRule* r = wire::request_rule(code);
    assert_non_null(r);
    assert_non_null(r->name);
    assert_true(std::strlen(r->name) > 0);
    assert_string_equal(wire::request_name(code), r->name);
    assert_true(names.insert(r->name).second);  // no duplicates
    assert_true(r->min_fds <= r->max_fds);
    assert_true(r->max_fds <= wire::kMaxFdsPerMessage);
    if (r->size_rule == wire::SizeRule::kExact) assert_true(r->size <= wire::kMaxPayload);
    // What we do not implement must not be size-checked as if we did.
    if (!r->implemented) assert_int_equal(r->size_rule, wire::SizeRule::kAny);
  }
  assert_int_equal(names.size(), 44);
  assert_int_equal(wire::REQUEST_MAX, 44);
}

void wire_names_match_codes(void**) {
  struct {
    uint32_t code;
    const char* name;
  } const cases[] = {
      {wire::GET_FEATURES, "GET_FEATURES"},
      {wire::SET_MEM_TABLE, "SET_MEM_TABLE"},
      {wire::SET_VRING_ADDR, "SET_VRING_ADDR"},
      {wire::SET_VRING_ERR, "SET_VRING_ERR"},
      {wire::SET_BACKEND_REQ_FD, "SET_BACKEND_REQ_FD"},
      {wire::GET_CONFIG, "GET_CONFIG"},
      {wire::RESET_DEVICE, "RESET_DEVICE"},
      {wire::GET_MAX_MEM_SLOTS, "GET_MAX_MEM_SLOTS"},
      {wire::ADD_MEM_REG, "ADD_MEM_REG"},
      {wire::GET_STATUS, "GET_STATUS"},
      {wire::GET_SHMEM_CONFIG, "GET_SHMEM_CONFIG"},
  };
  for (const auto& c : cases) assert_string_equal(wire::request_name(c.code), c.name);
}

void wire_unknown_codes(void**) {
  const uint32_t bad[] = {0, wire::REQUEST_MAX + 1, 100, 0x10000, 0x80000001u, UINT32_MAX};
  for (uint32_t code : bad) {
    assert_null(wire::request_rule(code));
    assert_string_equal(wire::request_name(code), "UNKNOWN");
  }
}

void wire_payload_layouts(void**) {
  assert_int_equal(sizeof(wire::Header), 12);
  assert_int_equal(wire::kHeaderSize, sizeof(wire::Header));
  assert_int_equal(offsetof(wire::Header, flags), 4);
  assert_int_equal(offsetof(wire::Header, size), 8);
  assert_int_equal(sizeof(wire::VringState), 8);
  assert_int_equal(sizeof(wire::VringAddr), 40);
  assert_int_equal(offsetof(wire::VringAddr, desc_user_addr), 8);
  assert_int_equal(offsetof(wire::VringAddr, used_user_addr), 16);
  assert_int_equal(offsetof(wire::VringAddr, avail_user_addr), 24);
  assert_int_equal(offsetof(wire::VringAddr, log_guest_addr), 32);
  assert_int_equal(sizeof(wire::MemRegion), 32);
  assert_int_equal(offsetof(wire::MemRegion, memory_size), 8);
  assert_int_equal(offsetof(wire::MemRegion, user_addr), 16);
  assert_int_equal(offsetof(wire::MemRegion, mmap_offset), 24);
  assert_int_equal(sizeof(wire::MemTableHeader), 8);
  assert_int_equal(sizeof(wire::SingleMemRegion), 40);
  assert_int_equal(offsetof(wire::SingleMemRegion, region), 8);
  assert_int_equal(sizeof(wire::ConfigHeader), 12);
  assert_int_equal(sizeof(wire::Log), 16);
  // A full memory table fits in one message.
  assert_true(sizeof(wire::MemTableHeader) + wire::kMaxTableRegions * sizeof(wire::MemRegion) <=
              wire::kMaxPayload);
  assert_true(sizeof(wire::ConfigHeader) + wire::kMaxConfigSize <= wire::kMaxPayload);
  assert_int_equal(wire::kKnownFlags, 0xf);
}

void wire_rules_of_implemented_requests(void**) {
  auto exact = [](uint32_t code, uint32_t size, uint8_t min_fds, uint8_t max_fds,
                  wire::Reply reply) {
    const wire::RequestRule* r = wire::request_rule(code);
    assert_non_null(r);
    assert_true(r->implemented);
    assert_int_equal(r->size_rule, wire::SizeRule::kExact);
    assert_int_equal(r->size, size);
    assert_int_equal(r->min_fds, min_fds);
    assert_int_equal(r->max_fds, max_fds);
    assert_int_equal(r->reply, reply);
  };
  exact(wire::GET_FEATURES, 0, 0, 0, wire::Reply::kU64);
  exact(wire::SET_FEATURES, 8, 0, 0, wire::Reply::kNone);
  exact(wire::SET_VRING_NUM, 8, 0, 0, wire::Reply::kNone);
  exact(wire::SET_VRING_ADDR, 40, 0, 0, wire::Reply::kNone);
  exact(wire::GET_VRING_BASE, 8, 0, 0, wire::Reply::kState);
  exact(wire::SET_VRING_KICK, 8, 0, 1, wire::Reply::kNone);
  exact(wire::SET_VRING_CALL, 8, 0, 1, wire::Reply::kNone);
  exact(wire::SET_LOG_BASE, 16, 0, 1, wire::Reply::kNone);
  exact(wire::SET_BACKEND_REQ_FD, 0, 1, 1, wire::Reply::kNone);
  exact(wire::ADD_MEM_REG, 40, 1, 1, wire::Reply::kNone);
  exact(wire::REM_MEM_REG, 40, 0, 1, wire::Reply::kNone);
  exact(wire::SET_STATUS, 8, 0, 0, wire::Reply::kNone);

  const wire::RequestRule* mt = wire::request_rule(wire::SET_MEM_TABLE);
  assert_int_equal(mt->size_rule, wire::SizeRule::kMemTable);
  assert_int_equal(mt->min_fds, 1);
  assert_int_equal(mt->max_fds, wire::kMaxTableRegions);
  const wire::RequestRule* gc = wire::request_rule(wire::GET_CONFIG);
  assert_int_equal(gc->size_rule, wire::SizeRule::kConfig);
  assert_int_equal(gc->reply, wire::Reply::kConfig);
  assert_int_equal(gc->max_fds, 0);
}

// ---- framing ----

void message_get_set(void**) {
  Message m;
  wire::VringState s{3, 256};
  m.set(s);
  assert_int_equal(m.hdr.size, 8);
  assert_int_equal(m.payload.size(), 8);
  wire::VringState back{};
  assert_true(m.get(back));
  assert_int_equal(back.index, 3);
  assert_int_equal(back.num, 256);
  uint32_t small;
  assert_false(m.get(small));  // size mismatch
  wire::VringAddr big;
  assert_false(m.get(big));
}

void roundtrip_with_payload(void**) {
  SockPair sp;
  wire::VringAddr a{};
  a.index = 1;
  a.flags = 0;
  a.desc_user_addr = 0x7f0000001000;
  a.used_user_addr = 0x7f0000003000;
  a.avail_user_addr = 0x7f0000002000;
  a.log_guest_addr = 0x1234;
  wire::Header h{wire::SET_VRING_ADDR, wire::kVersion | wire::kFlagNeedReply, sizeof a};
  assert_int_equal(send_message(sp.a, h, &a, nullptr, 0), 0);

  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
  assert_false(r.partial());
  assert_int_equal(m.hdr.request, wire::SET_VRING_ADDR);
  assert_int_equal(m.hdr.flags, wire::kVersion | wire::kFlagNeedReply);
  assert_int_equal(m.hdr.size, sizeof a);
  assert_int_equal(m.payload.size(), sizeof a);
  assert_memory_equal(m.payload.data(), &a, sizeof a);
  assert_true(m.fds.empty());
  wire::VringAddr got{};
  assert_true(m.get(got));
  assert_int_equal(got.avail_user_addr, 0x7f0000002000);
  // Nothing else is queued.
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
  assert_false(r.partial());
}

void roundtrip_without_payload(void**) {
  SockPair sp;
  wire::Header h{wire::GET_FEATURES, wire::kVersion, 0};
  assert_int_equal(send_message(sp.a, h, nullptr, nullptr, 0), 0);
  Reader r;
  Message m;
  m.payload = {1, 2, 3};  // stale content must be replaced
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
  assert_int_equal(m.hdr.request, wire::GET_FEATURES);
  assert_int_equal(m.hdr.size, 0);
  assert_true(m.payload.empty());
}

void max_payload_is_accepted(void**) {
  SockPair sp;
  auto p = pattern(wire::kMaxPayload, 9);
  wire::Header h{wire::SET_CONFIG, wire::kVersion, static_cast<uint32_t>(p.size())};
  // Read concurrently: the message may exceed the socket buffer.
  int send_rc = -1;
  std::thread t([&] { send_rc = send_message(sp.a, h, p.data(), nullptr, 0); });
  Message m;
  std::string err;
  int rc = recv_message(sp.b, m, 2000, &err);
  t.join();
  assert_int_equal(send_rc, 0);
  assert_int_equal(rc, 0);
  assert_int_equal(m.payload.size(), wire::kMaxPayload);
  assert_memory_equal(m.payload.data(), p.data(), p.size());
}

void two_messages_in_one_write(void**) {
  SockPair sp;
  auto f1 = frame(wire::SET_FEATURES, wire::kVersion, pattern(8, 1));
  auto f2 = frame(wire::SET_VRING_NUM, wire::kVersion, pattern(8, 50));
  std::vector<uint8_t> both(f1);
  both.insert(both.end(), f2.begin(), f2.end());
  write_all(sp.a, both.data(), both.size());

  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
  assert_int_equal(m.hdr.request, wire::SET_FEATURES);
  assert_memory_equal(m.payload.data(), pattern(8, 1).data(), 8);
  assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
  assert_int_equal(m.hdr.request, wire::SET_VRING_NUM);
  assert_memory_equal(m.payload.data(), pattern(8, 50).data(), 8);
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
}

void message_split_across_writes(void**) {
  SockPair sp;
  auto payload = pattern(40, 3);
  auto f = frame(wire::SET_VRING_ADDR, wire::kVersion, payload);
  // Header in three pieces, payload in three pieces.
  const size_t cuts[] = {1, 5, 12, 13, 30, f.size()};
  Reader r;
  Message m;
  std::string err;
  size_t off = 0;
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    write_all(sp.a, f.data() + off, cuts[i] - off);
    off = cuts[i];
    Status st = r.read(sp.b, m, err);
    if (off < f.size()) {
      assert_int_equal(st, Status::kNeedMore);
      assert_true(r.partial());
    } else {
      assert_int_equal(st, Status::kComplete);
    }
  }
  assert_false(r.partial());
  assert_int_equal(m.hdr.request, wire::SET_VRING_ADDR);
  assert_int_equal(m.hdr.size, 40);
  assert_memory_equal(m.payload.data(), payload.data(), payload.size());
}

void oversized_payload_is_an_error(void**) {
  SockPair sp;
  wire::Header h{wire::SET_CONFIG, wire::kVersion, static_cast<uint32_t>(wire::kMaxPayload + 1)};
  write_all(sp.a, &h, sizeof h);
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_false(err.empty());
  assert_false(r.partial());

  // A size that would be negative as an int is refused just the same.
  SockPair sp2;
  wire::Header h2{wire::SET_CONFIG, wire::kVersion, 0xffffffffu};
  write_all(sp2.a, &h2, sizeof h2);
  Reader r2;
  assert_int_equal(r2.read(sp2.b, m, err), Status::kError);
}

void send_message_refuses_bad_arguments(void**) {
  SockPair sp;
  std::vector<uint8_t> big(wire::kMaxPayload + 1);
  wire::Header h{wire::SET_CONFIG, wire::kVersion, static_cast<uint32_t>(big.size())};
  assert_int_equal(send_message(sp.a, h, big.data(), nullptr, 0), -EINVAL);
  int fds[wire::kMaxFdsPerMessage + 1];
  for (auto& fd : fds) fd = sp.a;
  wire::Header h2{wire::SET_OWNER, wire::kVersion, 0};
  assert_int_equal(send_message(sp.a, h2, nullptr, fds, wire::kMaxFdsPerMessage + 1), -EINVAL);
  // Nothing reached the peer.
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
  assert_false(r.partial());
}

void peer_closes_mid_header(void**) {
  SockPair sp;
  auto f = frame(wire::SET_FEATURES, wire::kVersion, pattern(8, 1));
  write_all(sp.a, f.data(), 6);
  sp.close_a();
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_false(err.empty());
  assert_false(r.partial());
}

void peer_closes_mid_payload(void**) {
  SockPair sp;
  auto f = frame(wire::SET_VRING_ADDR, wire::kVersion, pattern(40, 1));
  write_all(sp.a, f.data(), 12 + 20);
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kNeedMore);
  assert_true(r.partial());
  sp.close_a();
  assert_int_equal(r.read(sp.b, m, err), Status::kError);
  assert_false(err.empty());
  assert_false(r.partial());
}

void clean_close(void**) {
  SockPair sp;
  auto f = frame(wire::SET_OWNER, wire::kVersion, {});
  write_all(sp.a, f.data(), f.size());
  sp.close_a();
  Reader r;
  Message m;
  std::string err;
  assert_int_equal(r.read(sp.b, m, err), Status::kComplete);
  assert_int_equal(m.hdr.request, wire::SET_OWNER);
  assert_int_equal(r.read(sp.b, m, err), Status::kClosed);
  assert_int_equal(r.read(sp.b, m, err), Status::kClosed);
}

void send_to_closed_peer(void**) {
  SockPair sp;
  sp.close_b();
  wire::Header h{wire::SET_OWNER, wire::kVersion, 0};
  // MSG_NOSIGNAL: an error, not SIGPIPE.
  assert_int_equal(send_message(sp.a, h, nullptr, nullptr, 0), -EPIPE);
}

void recv_message_timeout(void**) {
  SockPair sp;
  Message m;
  std::string err;
  auto t0 = std::chrono::steady_clock::now();
  assert_int_equal(recv_message(sp.b, m, 60, &err), -ETIMEDOUT);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  assert_true(ms >= 50);
  assert_true(ms < 2000);
  assert_false(err.empty());

  // A partial message does not complete either.
  auto f = frame(wire::SET_FEATURES, wire::kVersion, pattern(8, 1));
  write_all(sp.a, f.data(), 10);
  assert_int_equal(recv_message(sp.b, m, 30, &err), -ETIMEDOUT);
}

void recv_message_results(void**) {
  Message m;
  std::string err;
  {
    SockPair sp;
    wire::Header h{wire::GET_FEATURES, wire::kVersion | wire::kFlagReply, 8};
    uint64_t v = 0x1122334455667788ull;
    assert_int_equal(send_message(sp.a, h, &v, nullptr, 0), 0);
    assert_int_equal(recv_message(sp.b, m, 1000, &err), 0);
    uint64_t got = 0;
    assert_true(m.get(got));
    assert_int_equal(got, v);
  }
  {
    SockPair sp;
    sp.close_a();
    assert_int_equal(recv_message(sp.b, m, 1000, &err), -ECONNRESET);
  }
  {
    SockPair sp;
    wire::Header h{wire::SET_CONFIG, wire::kVersion, 0x100000};
    write_all(sp.a, &h, sizeof h);
    err.clear();
    assert_int_equal(recv_message(sp.b, m, 1000, &err), -EPROTO);
    assert_false(err.empty());
  }
  {
    // A reply that arrives while recv_message waits.
    SockPair sp;
    std::thread t([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      wire::Header h{wire::GET_STATUS, wire::kVersion | wire::kFlagReply, 8};
      uint64_t v = 0xf;
      send_message(sp.a, h, &v, nullptr, 0);
    });
    int rc = recv_message(sp.b, m, 2000, &err);
    t.join();
    assert_int_equal(rc, 0);
    assert_int_equal(m.hdr.request, wire::GET_STATUS);
  }
}

// Size of the payload of message `i` in partial_writes_are_completed.
size_t partial_size(int i) {
  return i % 3 == 0 ? 1000 : wire::kMaxPayload - static_cast<size_t>(i);
}

// Messages through a tiny non-blocking send buffer that nobody reads at
// first: sendmsg writes part of a message and then hits EAGAIN, so
// send_message must finish it with further writes after polling. Every
// message must still arrive intact and in order.
void partial_writes_are_completed(void**) {
  SockPair sp;
  int small = 1;  // the kernel rounds up to its minimum
  assert_int_equal(::setsockopt(sp.a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  assert_int_equal(::fcntl(sp.a, F_SETFL, ::fcntl(sp.a, F_GETFL) | O_NONBLOCK), 0);
  constexpr int kCount = 24;
  int send_errors = 0;
  std::thread t([&] {
    for (int i = 0; i < kCount; i++) {
      auto p = pattern(partial_size(i), static_cast<uint8_t>(i));
      wire::Header h{wire::SET_CONFIG, wire::kVersion, static_cast<uint32_t>(p.size())};
      if (send_message(sp.a, h, p.data(), nullptr, 0) != 0) send_errors++;
    }
  });
  // Let the sender fill the buffer before reading anything.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i = 0; i < kCount; i++) {
    Message m;
    std::string err;
    int rc = recv_message(sp.b, m, 3000, &err);
    if (rc != 0) {
      t.join();
      fail_msg("message %d: %d (%s)", i, rc, err.c_str());
    }
    auto p = pattern(partial_size(i), static_cast<uint8_t>(i));
    assert_int_equal(m.hdr.request, wire::SET_CONFIG);
    assert_int_equal(m.payload.size(), p.size());
    assert_memory_equal(m.payload.data(), p.data(), p.size());
  }
  t.join();
  assert_int_equal(send_errors, 0);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(wire_every_code_has_a_rule),
      cmocka_unit_test(wire_names_match_codes),
      cmocka_unit_test(wire_unknown_codes),
      cmocka_unit_test(wire_payload_layouts),
      cmocka_unit_test(wire_rules_of_implemented_requests),
      cmocka_unit_test(message_get_set),
      cmocka_unit_test(roundtrip_with_payload),
      cmocka_unit_test(roundtrip_without_payload),
      cmocka_unit_test(max_payload_is_accepted),
      cmocka_unit_test(two_messages_in_one_write),
      cmocka_unit_test(message_split_across_writes),
      cmocka_unit_test(oversized_payload_is_an_error),
      cmocka_unit_test(send_message_refuses_bad_arguments),
      cmocka_unit_test(peer_closes_mid_header),
      cmocka_unit_test(peer_closes_mid_payload),
      cmocka_unit_test(clean_close),
      cmocka_unit_test(send_to_closed_peer),
      cmocka_unit_test(recv_message_timeout),
      cmocka_unit_test(recv_message_results),
      cmocka_unit_test(partial_writes_are_completed),
  };
  return cmocka_run_group_tests_name("codec", tests, nullptr, nullptr);
}
