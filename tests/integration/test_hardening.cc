// SPDX-License-Identifier: Apache-2.0
// Hostile front-ends and guests, one table row per attack, grouped by the
// hardening classes (A framing, B fds, C integer arithmetic, D indices,
// E repeated messages, F address translation, G chain walking, H double
// fetch, J fatal-error discipline, K state isolation, M shared-memory fds).
//
// Every row runs against one long-lived daemon and then checks that the
// daemon still serves a new front-end and that the process has exactly the
// fds and mappings it had before the attack.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "common/error.h"
#include "harness.h"

// cmocka last: it defines macros (fail, ...) that clash with the C++ library.
// clang-format off
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
extern "C" {
#include <cmocka.h>
}
// clang-format on

using namespace vhu;
using namespace vhu::test;
using fe::Device;
using fe::DeviceOptions;

namespace {

TestDevice* g_dev;

enum class Outcome {
  kRejected,      // error reply / failed ack, session still usable
  kDisconnected,  // the daemon closed the connection
  kQueueBroken,   // the data path refused the ring; the session is usable
  kHandled,       // the attack is absorbed; the session is usable
};

struct Attack {
  const char* cls;
  const char* name;
  Outcome expect;
  std::function<void(Device&)> run;
};

Device fresh() {
  DeviceOptions o;
  o.num_queues = 2;
  return g_dev->connect(o);
}

vhu_vring* vring(uint16_t q) { return vhu_daemon_get_vring(g_dev->daemon(), q); }

// Sends a request with NEED_REPLY and requires a failed ack.
void expect_nack(Device& d, uint32_t req, const void* p, size_t len, std::vector<int> fds = {}) {
  assert_int_equal(d.fe().request_ack(req, p, len, fds), -EIO);
}

// Sends a request that has a reply body and requires an error (empty) reply.
void expect_error_reply(Device& d, uint32_t req, const void* p, size_t len) {
  d.fe().send_raw(req, wire::kVersion, p, len);
  proto::Message m;
  assert_int_equal(d.fe().recv_raw(m, 2000), 0);
  assert_int_equal(m.hdr.request, req);
  assert_int_equal(m.hdr.size, 0);
}

void send_header(Device& d, uint32_t req, uint32_t flags, uint32_t size) {
  wire::Header h{req, flags, size};
  assert_int_equal(::send(d.fe().fd(), &h, sizeof h, MSG_NOSIGNAL), sizeof h);
}

// Writes descriptor `i` of queue `q` and publishes `head` in the avail ring.
void post_raw(Device& d, uint16_t q, uint16_t head) {
  d.ring(q).put_avail(head);
  d.ring(q).force_kick();
}

void wait_broken(uint16_t q) {
  for (int i = 0; i < 2000 && !vhu_vring_is_broken(vring(q)); i++) usleep(1000);
  assert_true(vhu_vring_is_broken(vring(q)));
}

wire::MemRegion region_of(Device& d, size_t i) { return d.mem().region_msg(i); }

std::vector<uint8_t> mem_table(const std::vector<wire::MemRegion>& rs) {
  wire::MemTableHeader h{static_cast<uint32_t>(rs.size()), 0};
  std::vector<uint8_t> p(sizeof h + rs.size() * sizeof(wire::MemRegion));
  std::memcpy(p.data(), &h, sizeof h);
  std::memcpy(p.data() + sizeof h, rs.data(), rs.size() * sizeof(wire::MemRegion));
  return p;
}

const Attack kAttacks[] = {
    // ---- A: message framing ----
    {"A", "payload larger than the limit", Outcome::kDisconnected,
     [](Device& d) { send_header(d, wire::SET_FEATURES, wire::kVersion, 0x10000); }},
    {"A", "header cut short, then hang-up", Outcome::kDisconnected,
     [](Device& d) {
       uint8_t half[6] = {1, 0, 0, 0, 1, 0};
       assert_int_equal(::send(d.fe().fd(), half, sizeof half, MSG_NOSIGNAL), 6);
       ::shutdown(d.fe().fd(), SHUT_WR);
     }},
    {"A", "payload cut short, then hang-up", Outcome::kDisconnected,
     [](Device& d) {
       send_header(d, wire::SET_FEATURES, wire::kVersion, 8);
       uint32_t part = 1;
       assert_int_equal(::send(d.fe().fd(), &part, 4, MSG_NOSIGNAL), 4);
       ::shutdown(d.fe().fd(), SHUT_WR);
     }},
    {"A", "wrong payload size for the request", Outcome::kRejected,
     [](Device& d) {
       uint32_t four = 256;
       expect_nack(d, wire::SET_VRING_NUM, &four, sizeof four);
       expect_error_reply(d, wire::GET_VRING_BASE, &four, sizeof four);
     }},
    {"A", "bad version bits", Outcome::kDisconnected,
     [](Device& d) { send_header(d, wire::GET_FEATURES, 0x2, 0); }},
    {"A", "reserved flag bits", Outcome::kDisconnected,
     [](Device& d) { send_header(d, wire::GET_FEATURES, wire::kVersion | 0x100, 0); }},
    {"A", "reply flag on a request", Outcome::kDisconnected,
     [](Device& d) { send_header(d, wire::GET_FEATURES, wire::kVersion | wire::kFlagReply, 0); }},
    {"A", "front-end that never reads its replies", Outcome::kDisconnected,
     [](Device& d) {
       // Requests keep coming, replies pile up unread: the daemon must give
       // up on the front-end instead of blocking forever on a write.
       int fd = d.fe().fd();
       int fl = fcntl(fd, F_GETFL);
       fcntl(fd, F_SETFL, fl | O_NONBLOCK);
       wire::Header h{wire::GET_FEATURES, wire::kVersion, 0};
       for (int i = 0; i < 20000000; i++) {
         ssize_t n = ::send(fd, &h, sizeof h, MSG_NOSIGNAL);
         if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
         if (n < 0 && errno == EAGAIN) {
           pollfd p{fd, POLLOUT, 0};
           if (poll(&p, 1, 5000) == 0) break;  // the daemon stopped reading too
         }
       }
       fcntl(fd, F_SETFL, fl);
     }},
    {"A", "unknown request codes", Outcome::kRejected,
     [](Device& d) {
       for (uint32_t code : {0u, 45u, 1000u, 0xffffffffu}) expect_nack(d, code, "xxxxxxxx", 8);
     }},

    // ---- B: ancillary fds ----
    {"B", "fds on a request that takes none", Outcome::kRejected,
     [](Device& d) {
       wire::VringState s{0, 256};
       int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC);
       expect_nack(d, wire::SET_VRING_NUM, &s, sizeof s, {a, b});
       close(a);
       close(b);
     }},
    {"B", "more fds than one message may carry", Outcome::kDisconnected,
     [](Device& d) {
       std::vector<int> fds;
       for (int i = 0; i < 20; i++) fds.push_back(eventfd(0, EFD_CLOEXEC));
       // Raw sendmsg: the front-end library refuses to send so many.
       wire::Header h{wire::GET_FEATURES, wire::kVersion, 0};
       iovec iov{&h, sizeof h};
       alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 20)] = {};
       msghdr m{};
       m.msg_iov = &iov;
       m.msg_iovlen = 1;
       m.msg_control = cbuf;
       m.msg_controllen = sizeof cbuf;
       cmsghdr* c = CMSG_FIRSTHDR(&m);
       c->cmsg_level = SOL_SOCKET;
       c->cmsg_type = SCM_RIGHTS;
       c->cmsg_len = CMSG_LEN(sizeof(int) * 20);
       std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * 20);
       assert_true(sendmsg(d.fe().fd(), &m, MSG_NOSIGNAL) > 0);
       for (int fd : fds) close(fd);
     }},
    {"B", "memory table with fewer fds than regions", Outcome::kRejected,
     [](Device& d) {
       auto p = mem_table({region_of(d, 0), region_of(d, 0)});
       expect_nack(d, wire::SET_MEM_TABLE, p.data(), p.size(), {d.mem().fd(0)});
     }},
    {"B", "NOFD flag with an fd, and no fd without NOFD", Outcome::kRejected,
     [](Device& d) {
       uint64_t v = wire::kVringNoFd;
       int e = eventfd(0, EFD_CLOEXEC);
       expect_nack(d, wire::SET_VRING_CALL, &v, sizeof v, {e});
       close(e);
       v = 0;
       expect_nack(d, wire::SET_VRING_KICK, &v, sizeof v);
     }},

    // ---- C: integer arithmetic ----
    {"C", "mmap offset + size overflows", Outcome::kRejected,
     [](Device& d) {
       auto r = region_of(d, 0);
       r.mmap_offset = UINT64_MAX - 10;
       auto p = mem_table({r});
       expect_nack(d, wire::SET_MEM_TABLE, p.data(), p.size(), {d.mem().fd(0)});
     }},
    {"C", "guest address + size overflows", Outcome::kRejected,
     [](Device& d) {
       auto r = region_of(d, 0);
       r.guest_phys_addr = UINT64_MAX - 4095;
       auto p = mem_table({r});
       expect_nack(d, wire::SET_MEM_TABLE, p.data(), p.size(), {d.mem().fd(0)});
     }},
    {"C", "queue index that truncates to a valid u16/u8", Outcome::kRejected,
     [](Device& d) {
       wire::VringState s{0x10000, 256};  // low 16 bits = 0
       expect_nack(d, wire::SET_VRING_NUM, &s, sizeof s);
       uint64_t kick = 0x200;  // bits above index|NOFD
       int e = eventfd(0, EFD_CLOEXEC);
       expect_nack(d, wire::SET_VRING_CALL, &kick, sizeof kick, {e});
       close(e);
     }},
    {"C", "vring base larger than 16 bits", Outcome::kRejected,
     [](Device& d) {
       d.fe().get_vring_base(1);
       wire::VringState s{1, 0x10005};
       expect_nack(d, wire::SET_VRING_BASE, &s, sizeof s);
     }},

    // ---- D: index validation ----
    {"D", "queue index out of range in every vring request", Outcome::kRejected,
     [](Device& d) {
       wire::VringState s{2, 256};
       expect_nack(d, wire::SET_VRING_NUM, &s, sizeof s);
       expect_nack(d, wire::SET_VRING_BASE, &s, sizeof s);
       expect_nack(d, wire::SET_VRING_ENABLE, &s, sizeof s);
       expect_error_reply(d, wire::GET_VRING_BASE, &s, sizeof s);
       wire::VringAddr a = d.ring(0).addr_msg(200);
       expect_nack(d, wire::SET_VRING_ADDR, &a, sizeof a);
       uint64_t v = 0xff | wire::kVringNoFd;
       expect_nack(d, wire::SET_VRING_KICK, &v, sizeof v);
     }},
    {"D", "config offset/size beyond the config space", Outcome::kRejected,
     [](Device& d) {
       wire::ConfigHeader ch{0xfffffff0u, 32, 0};
       std::vector<uint8_t> p(sizeof ch + 32);
       std::memcpy(p.data(), &ch, sizeof ch);
       expect_error_reply(d, wire::GET_CONFIG, p.data(), p.size());
       expect_nack(d, wire::SET_CONFIG, p.data(), p.size());
       ch = {0, 300, 0};  // size past 256 with a matching payload
       std::vector<uint8_t> big(sizeof ch + 300);
       std::memcpy(big.data(), &ch, sizeof ch);
       expect_error_reply(d, wire::GET_CONFIG, big.data(), big.size());
     }},
    {"D", "removing a memory slot that does not exist", Outcome::kRejected,
     [](Device& d) {
       wire::SingleMemRegion sr{0, region_of(d, 0)};
       sr.region.guest_phys_addr += 4096;
       expect_nack(d, wire::REM_MEM_REG, &sr, sizeof sr);
     }},
    {"D", "enable value other than 0/1", Outcome::kRejected,
     [](Device& d) {
       wire::VringState s{0, 2};
       expect_nack(d, wire::SET_VRING_ENABLE, &s, sizeof s);
     }},

    // ---- E: repeated messages ----
    {"E", "replacing fds and tables many times", Outcome::kHandled,
     [](Device& d) {
       for (int i = 0; i < 300; i++) {
         int e = eventfd(0, EFD_CLOEXEC);
         uint64_t v = 1;
         d.fe().send_raw(wire::SET_VRING_ERR, wire::kVersion, &v, sizeof v, {e});
         d.fe().send_raw(wire::SET_LOG_FD, wire::kVersion, nullptr, 0, {e});
         close(e);
       }
       for (int i = 0; i < 50; i++) {
         d.fe().set_mem_table(d.mem());
         d.fe().set_backend_req_fd();
         d.fe().get_vring_base(1);
         d.fe().set_vring_num(1, 256);
       }
       d.fe().sync();
     }},

    // ---- F: guest address translation ----
    {"F", "descriptor outside guest memory", Outcome::kQueueBroken,
     [](Device& d) {
       d.ring(0).write_desc(0, 1ull << 40, 64, fe::kDescFWrite, 0);
       post_raw(d, 0, 0);
       wait_broken(0);
       // The other queue is unaffected.
       assert_int_equal(round_trip(d, 1, 64), 64);
       // The front-end hears about it through the err fd and the status.
       for (int i = 0; i < 1000 && !d.ring(0).consume_err(); i++) usleep(1000);
       assert_true(d.fe().get_status() & wire::kStatusNeedsReset);
     }},
    {"F", "descriptor crossing the end of guest memory", Outcome::kQueueBroken,
     [](Device& d) {
       uint64_t end = d.mem().region(0).gpa + d.mem().region(0).size;
       d.ring(0).write_desc(0, end - 16, 64, fe::kDescFWrite, 0);
       post_raw(d, 0, 0);
       wait_broken(0);
     }},
    {"F", "ring addresses outside guest memory", Outcome::kRejected,
     [](Device& d) {
       d.fe().get_vring_base(1);
       wire::VringAddr a = d.ring(1).addr_msg(1);
       a.used_user_addr = 0x10;
       expect_nack(d, wire::SET_VRING_ADDR, &a, sizeof a);
       a = d.ring(1).addr_msg(1);
       a.desc_user_addr += 1;  // misaligned
       d.fe().set_vring_addr(a);
       int k = eventfd(0, EFD_CLOEXEC);
       uint64_t v = 1;
       expect_nack(d, wire::SET_VRING_KICK, &v, sizeof v, {k});
       close(k);
     }},

    // ---- G: descriptor chain walking ----
    {"G", "descriptor loop", Outcome::kQueueBroken,
     [](Device& d) {
       uint64_t b = d.mem().alloc(64, 8);
       d.ring(0).write_desc(0, b, 8, fe::kDescFNext | fe::kDescFWrite, 1);
       d.ring(0).write_desc(1, b + 8, 8, fe::kDescFNext | fe::kDescFWrite, 0);
       post_raw(d, 0, 0);
       wait_broken(0);
     }},
    {"G", "next index beyond the table", Outcome::kQueueBroken,
     [](Device& d) {
       uint64_t b = d.mem().alloc(64, 8);
       d.ring(0).write_desc(0, b, 8, fe::kDescFNext, 9999);
       post_raw(d, 0, 0);
       wait_broken(0);
     }},
    {"G", "head index beyond the table", Outcome::kQueueBroken,
     [](Device& d) {
       post_raw(d, 0, 4000);
       wait_broken(0);
     }},
    {"G", "avail index runs away", Outcome::kQueueBroken,
     [](Device& d) {
       d.ring(0).set_avail_idx(static_cast<uint16_t>(d.ring(0).avail_idx() + 5000));
       d.ring(0).force_kick();
       wait_broken(0);
     }},
    {"G", "nested indirect table", Outcome::kQueueBroken,
     [](Device& d) {
       uint64_t table = d.mem().alloc(32, 16), inner = d.mem().alloc(16, 16);
       fe::VirtqDesc t[2] = {{inner, 16, fe::kDescFIndirect, 0}, {0, 0, 0, 0}};
       d.mem().write(table, t, sizeof t);
       d.ring(0).write_desc(0, table, 32, fe::kDescFIndirect, 0);
       post_raw(d, 0, 0);
       wait_broken(0);
     }},
    {"G", "indirect length not a multiple of 16", Outcome::kQueueBroken,
     [](Device& d) {
       uint64_t table = d.mem().alloc(64, 16);
       d.ring(0).write_desc(0, table, 40, fe::kDescFIndirect, 0);
       post_raw(d, 0, 0);
       wait_broken(0);
     }},
    {"G", "zero-length and readable-after-writable descriptors", Outcome::kQueueBroken,
     [](Device& d) {
       uint64_t b = d.mem().alloc(64, 8);
       d.ring(0).write_desc(0, b, 8, fe::kDescFNext | fe::kDescFWrite, 1);
       d.ring(0).write_desc(1, b + 8, 8, 0, 0);
       post_raw(d, 0, 0);
       wait_broken(0);
       d.ring(1).write_desc(0, b, 0, fe::kDescFWrite, 0);
       post_raw(d, 1, 0);
       wait_broken(1);
     }},

    // ---- H: double fetch ----
    {"H", "guest rewrites descriptors while the device works", Outcome::kHandled,
     [](Device& d) {
       // A second thread keeps rewriting the lengths of posted descriptors;
       // whatever the device reads, it may only write inside the buffers it
       // validated (ASan/UBSan builds check the rest).
       fe::DriverRing& r = d.ring(0);
       uint64_t pool = d.mem().alloc(64 * 4096, 4096);
       std::atomic<bool> done{false};
       std::thread scribbler([&] {
         uint32_t n = 1;
         while (!done) {
           auto* t = r.desc_table();
           for (uint32_t i = 0; i < r.size(); i++)
             __atomic_store_n(&t[i].len, (n++ % 8192) + 1, __ATOMIC_RELAXED);
         }
       });
       int used = 0;
       for (int i = 0; i < 500; i++) {
         if (r.free_descriptors() > 0) {
           r.add_chain({{pool + 4096 * (i % 64), 4096, true}});
           r.force_kick();
         }
         while (auto u = r.get_used()) {
           used++;
           assert_true(u->second <= 8192);
         }
         if (vhu_vring_is_broken(vring(0))) break;  // a length the guest zeroed
       }
       done = true;
       scribbler.join();
       for (int i = 0; i < 2000 && r.in_flight() > 0 && !vhu_vring_is_broken(vring(0)); i++) {
         while (auto u = r.get_used()) {
           used++;
           assert_true(u->second <= 8192);
         }
         usleep(1000);
       }
       assert_true(used > 0 || vhu_vring_is_broken(vring(0)));
     }},

    // ---- J: fatal-error discipline ----
    {"J", "a broken ring stays untouched until set up again", Outcome::kHandled,
     [](Device& d) {
       d.ring(0).write_desc(0, 1ull << 40, 64, fe::kDescFWrite, 0);
       post_raw(d, 0, 0);
       wait_broken(0);
       uint16_t used = d.ring(0).used_idx();
       uint64_t b = d.mem().alloc(64, 8);
       d.ring(0).write_desc(1, b, 64, fe::kDescFWrite, 0);
       post_raw(d, 0, 1);
       usleep(100000);
       assert_int_equal(d.ring(0).used_idx(), used);
       // A fresh start of the queue clears the state; the driver resets.
       d.fe().get_vring_base(0);
       d.fe().set_status(0);
       d.ring(0).reset();
       d.start_queue(0, 0);
       assert_false(vhu_vring_is_broken(vring(0)));
       assert_false(d.fe().get_status() & wire::kStatusNeedsReset);
       assert_int_equal(round_trip(d, 0, 64), 64);
     }},

    // ---- K: state isolation between front-ends ----
    {"K", "nothing survives a disconnect", Outcome::kHandled,
     [](Device& d) {
       assert_int_equal(round_trip(d, 0, 64), 64);
       d.fe().close();
       for (int i = 0; i < 2000 && vhu_daemon_is_connected(g_dev->daemon()); i++) usleep(1000);
       Device next = Device::connect(g_dev->socket_path(), DeviceOptions{});
       next.negotiate();
       assert_int_equal(next.fe().get_status(), 0);
       assert_int_equal(vhu_daemon_acked_features(g_dev->daemon()), 0);
       for (uint16_t q = 0; q < 2; q++) {
         assert_false(vhu_vring_is_started(vring(q)));
         assert_false(vhu_vring_is_enabled(vring(q)));
         assert_int_equal(vhu_vring_size(vring(q)), 0);
         vhu_vring_stats s{};
         s.struct_size = sizeof s;
         vhu_vring_get_stats(vring(q), &s);
         assert_int_equal(s.chains, 0);
       }
       char b;
       assert_int_equal(vhu_daemon_read_guest(g_dev->daemon(), 0, &b, 1), -ENOTCONN);
     }},

    // ---- M: shared-memory fds ----
    {"M", "region larger than its file", Outcome::kRejected,
     [](Device& d) {
       int fd = memfd_create("small", MFD_CLOEXEC);
       assert_int_equal(ftruncate(fd, 1 << 20), 0);
       wire::MemRegion r{0, 16u << 20, 0x7f0000000000ull, 0};
       auto p = mem_table({r});
       expect_nack(d, wire::SET_MEM_TABLE, p.data(), p.size(), {fd});
       close(fd);
     }},
    {"M", "region fd that cannot be mapped", Outcome::kRejected,
     [](Device& d) {
       int fd = eventfd(0, EFD_CLOEXEC);
       wire::SingleMemRegion sr{0, {64u << 20, 1u << 20, 0x7e0000000000ull, 0}};
       expect_nack(d, wire::ADD_MEM_REG, &sr, sizeof sr, {fd});
       close(fd);
     }},
};

void run_attack(const Attack& a) {
  int fds_before = count_open_fds(), maps_before = count_mappings();
  {
    Device d = fresh();
    a.run(d);
    switch (a.expect) {
      case Outcome::kDisconnected:
        assert_true(d.fe().peer_closed(3000));
        break;
      case Outcome::kRejected:
      case Outcome::kHandled:
        if (d.fe().connected()) d.fe().sync();  // the session still answers
        break;
      case Outcome::kQueueBroken:
        d.fe().sync();
        break;
    }
  }
  for (int i = 0; i < 3000 && vhu_daemon_is_connected(g_dev->daemon()); i++) usleep(1000);
  // The daemon serves the next front-end normally.
  {
    Device d = fresh();
    assert_int_equal(round_trip(d, 0, 128), 128);
    assert_int_equal(round_trip(d, 1, 128), 128);
  }
  for (int i = 0; i < 3000 && vhu_daemon_is_connected(g_dev->daemon()); i++) usleep(1000);
  assert_int_equal(count_open_fds(), fds_before);
  assert_int_equal(count_mappings(), maps_before);
}

void test_attack(void** state) { run_attack(*static_cast<const Attack*>(*state)); }

int group_setup(void**) {
  TestDevice::Options o;
  o.num_queues = 2;
  g_dev = new TestDevice(o);
  // Warm-up session so that lazily created state exists before counting.
  {
    Device d = fresh();
    round_trip(d, 0, 64);
  }
  for (int i = 0; i < 3000 && vhu_daemon_is_connected(g_dev->daemon()); i++) usleep(1000);
  return 0;
}

int group_teardown(void**) {
  delete g_dev;
  return 0;
}

}  // namespace

int main() {
  if (const char* f = getenv("VHU_TEST_FILTER")) cmocka_set_test_filter(f);
  constexpr size_t n = sizeof kAttacks / sizeof kAttacks[0];
  static std::string names[n];
  static CMUnitTest tests[n];
  for (size_t i = 0; i < n; i++) {
    names[i] = std::string(kAttacks[i].cls) + ": " + kAttacks[i].name;
    tests[i] = CMUnitTest{names[i].c_str(), test_attack, nullptr, nullptr,
                          const_cast<Attack*>(&kAttacks[i])};
  }
  return _cmocka_run_group_tests("integration_hardening", tests, n, group_setup, group_teardown);
}
