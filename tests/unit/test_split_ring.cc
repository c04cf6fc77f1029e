// SPDX-License-Identifier: Apache-2.0
// The device side of a split virtqueue against a hand-written driver side
// (virtio 1.x split layout) in memfd-backed guest memory.
#include <sys/mman.h>
#include <sys/uio.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "memory/memory.h"
#include "vring/split.h"

// Last: cmocka defines macros (fail, skip) that clash with the standard library.
#include "test_util.h"

using vhu::Chain;
using vhu::MemoryTable;
using vhu::Region;
using vhu::SplitQueue;
using vhu::UniqueFd;
namespace wire = vhu::wire;
using vhu_test::make_memfd;

namespace {

using Pop = SplitQueue::Pop;

constexpr uint16_t kN = 8;
constexpr uint16_t F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;

// Guest physical layout:
//   region 0: gpa 0x00000..0x3ffff (memfd 0)
//   region 1: gpa 0x40000..0x4ffff (memfd 1; adjacent GPA, separate file)
//   nothing above 0x50000
constexpr uint64_t kR0 = 0, kR0Size = 0x40000;
constexpr uint64_t kR1 = 0x40000, kR1Size = 0x10000;
constexpr uint64_t kHole = 0x60000;
constexpr uint64_t kDesc = 0x1000, kAvail = 0x2000, kUsed = 0x3000;
constexpr uint64_t kIndirect = 0x8000;  // indirect tables
constexpr uint64_t kBuf = 0x10000;      // data buffers

// The driver: maps the same memfds as the device and fills the rings.
struct Guest {
  int fd[2] = {-1, -1};
  uint8_t* drv[2] = {nullptr, nullptr};
  const uint64_t base[2] = {kR0, kR1};
  const uint64_t size[2] = {kR0Size, kR1Size};
  vhu::MemoryTablePtr mem;
  SplitQueue q;
  uint16_t num = kN;
  uint16_t avail_idx = 0;  // the driver's next avail index

  Guest() {
    for (int i = 0; i < 2; i++) {
      fd[i] = make_memfd(size[i]);
      void* p = ::mmap(nullptr, size[i], PROT_READ | PROT_WRITE, MAP_SHARED, fd[i], 0);
      assert_true(p != MAP_FAILED);
      drv[i] = static_cast<uint8_t*>(p);
    }
    std::vector<std::shared_ptr<Region>> regs;
    for (int i = 0; i < 2; i++) {
      // The front-end's virtual address of a region is where the driver
      // side mapped it.
      wire::MemRegion d{base[i], size[i], reinterpret_cast<uint64_t>(drv[i]), 0};
      regs.push_back(std::make_shared<Region>(d, UniqueFd(::dup(fd[i]))));
    }
    mem = std::make_shared<const MemoryTable>(std::move(regs));
  }
  ~Guest() {
    q.detach();
    for (int i = 0; i < 2; i++) {
      ::munmap(drv[i], size[i]);
      ::close(fd[i]);
    }
  }
  Guest(const Guest&) = delete;
  Guest& operator=(const Guest&) = delete;

  uint8_t* at(uint64_t gpa) {
    for (int i = 0; i < 2; i++)
      if (gpa >= base[i] && gpa - base[i] < size[i]) return drv[i] + (gpa - base[i]);
    fail_msg("gpa 0x%llx is not guest memory", static_cast<unsigned long long>(gpa));
    return nullptr;
  }
  uint64_t uva(uint64_t gpa) { return reinterpret_cast<uint64_t>(at(gpa)); }

  template <typename T>
  void put(uint64_t gpa, T v) {
    std::memcpy(at(gpa), &v, sizeof v);
  }
  template <typename T>
  T get(uint64_t gpa) {
    T v;
    std::memcpy(&v, at(gpa), sizeof v);
    return v;
  }

  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0,
                uint64_t table = kDesc) {
    uint64_t d = table + 16ull * i;
    put<uint64_t>(d, addr);
    put<uint32_t>(d + 8, len);
    put<uint16_t>(d + 12, flags);
    put<uint16_t>(d + 14, next);
  }
  // avail ring: flags u16, idx u16, ring[num] u16, used_event u16
  void set_avail_flags(uint16_t f) { put<uint16_t>(kAvail, f); }
  void set_avail_idx(uint16_t idx) {
    avail_idx = idx;
    put<uint16_t>(kAvail + 2, idx);
  }
  void set_avail_slot(uint16_t slot, uint16_t head) { put<uint16_t>(kAvail + 4 + 2 * slot, head); }
  void make_avail(uint16_t head) {
    set_avail_slot(avail_idx % num, head);
    set_avail_idx(static_cast<uint16_t>(avail_idx + 1));
  }
  void set_used_event(uint16_t v) { put<uint16_t>(kAvail + 4 + 2 * num, v); }
  // used ring: flags u16, idx u16, ring[num] {u32 id, u32 len}, avail_event u16
  uint16_t used_flags() { return get<uint16_t>(kUsed); }
  uint16_t used_idx() { return get<uint16_t>(kUsed + 2); }
  uint32_t used_id(uint16_t slot) { return get<uint32_t>(kUsed + 4 + 8 * slot); }
  uint32_t used_len(uint16_t slot) { return get<uint32_t>(kUsed + 8 + 8 * slot); }
  uint16_t avail_event() { return get<uint16_t>(kUsed + 4 + 8 * num); }
  void set_avail_event(uint16_t v) { put<uint16_t>(kUsed + 4 + 8 * num, v); }

  // Clears the rings and attaches the queue afresh.
  void attach(bool event_idx = false, bool indirect = false, uint16_t next_avail = 0,
              uint16_t n = kN) {
    num = n;
    std::memset(at(kDesc), 0, 16 * n);
    std::memset(at(kAvail), 0, 6 + 2 * n);
    std::memset(at(kUsed), 0, 6 + 8 * n);
    set_avail_idx(next_avail);
    put<uint16_t>(kUsed + 2, next_avail);
    std::string err;
    if (!q.attach(mem, n, uva(kDesc), uva(kAvail), uva(kUsed), next_avail, event_idx, indirect,
                  err))
      fail_msg("attach: %s", err.c_str());
  }

  Pop pop(Chain*& c, std::string* err_out = nullptr) {
    std::string err;
    c = nullptr;
    Pop r = q.pop(c, err);
    if (err_out) *err_out = err;
    return r;
  }
  Chain* pop_chain() {
    Chain* c = nullptr;
    std::string err;
    Pop r = q.pop(c, err);
    if (r != Pop::kChain) fail_msg("pop returned %d: %s", static_cast<int>(r), err.c_str());
    assert_non_null(c);
    return c;
  }
};

void fill(Guest& g, uint64_t gpa, size_t len, uint8_t seed) {
  for (size_t i = 0; i < len; i++) g.at(gpa + i)[0] = static_cast<uint8_t>(seed + i * 3);
}

bool iov_equals_guest(Guest& g, const iovec& v, uint64_t gpa) {
  return std::memcmp(v.iov_base, g.at(gpa), v.iov_len) == 0;
}

int setup_guest(void** state) {
  *state = new Guest;
  return 0;
}
int teardown_guest(void** state) {
  delete static_cast<Guest*>(*state);
  return 0;
}
Guest& G(void** state) { return *static_cast<Guest*>(*state); }

// Re-attaches, lets `build` write one chain at avail slot 0, and expects
// pop() to declare the ring broken without touching the used ring and
// without keeping a chain.
void expect_broken(Guest& g, const char* what, bool indirect,
                   const std::function<void(Guest&)>& build) {
  g.attach(false, indirect);
  build(g);
  Chain* c = nullptr;
  std::string err;
  Pop r = g.pop(c, &err);
  if (r != Pop::kBroken) fail_msg("%s: pop returned %d, not kBroken", what, static_cast<int>(r));
  if (err.empty()) fail_msg("%s: no error text", what);
  assert_int_equal(g.q.outstanding(), 0);
  assert_int_equal(g.q.next_avail(), 0);
  assert_int_equal(g.q.next_used(), 0);
  assert_int_equal(g.used_idx(), 0);
}

// ---- attach ----

void attach_refuses_bad_geometry(void** state) {
  Guest& g = G(state);
  std::string err;
  auto try_attach = [&](uint16_t n, uint64_t d, uint64_t a, uint64_t u) {
    err.clear();
    bool ok = g.q.attach(g.mem, n, d, a, u, 0, false, false, err);
    if (!ok) {
      assert_false(err.empty());
      assert_false(g.q.attached());
    }
    return ok;
  };
  const uint64_t d = g.uva(kDesc), a = g.uva(kAvail), u = g.uva(kUsed);
  // Sizes that are not powers of two.
  const uint16_t bad_sizes[] = {0, 3, 6, 12, 100, 0xffff};
  for (uint16_t n : bad_sizes) assert_false(try_attach(n, d, a, u));
  // Misaligned parts: desc 16, avail 2, used 4.
  assert_false(try_attach(kN, d + 8, a, u));
  assert_false(try_attach(kN, d + 1, a, u));
  assert_false(try_attach(kN, d, a + 1, u));
  assert_false(try_attach(kN, d, a, u + 2));
  assert_false(try_attach(kN, d, a, u + 1));
  // Not inside guest memory, or running off the end of a region.
  assert_false(try_attach(kN, 0x1000, a, u));
  assert_false(try_attach(kN, d, 0x2000, u));
  assert_false(try_attach(kN, d, a, 0x3000));
  assert_false(try_attach(kN, g.uva(kR0Size - 16 * kN + 16), a, u));
  assert_false(try_attach(kN, d, g.uva(kR0Size - 4), u));
  assert_false(try_attach(kN, d, a, g.uva(kR0Size - 8 * kN)));
  // A ring too large for the memory it sits in.
  assert_false(try_attach(32768, d, a, u));
  // Minimal alignments and the largest size that fits are fine.
  assert_true(try_attach(kN, d + 16, a + 2, u + 4));
  assert_true(g.q.attached());
  assert_true(try_attach(1, d, a, u));
  assert_true(try_attach(256, g.uva(0x20000), g.uva(0x21000), g.uva(0x22000)));
  assert_int_equal(g.q.num(), 256);
}

void attach_takes_used_idx_from_ring_and_enables_notifications(void** state) {
  Guest& g = G(state);
  g.put<uint16_t>(kUsed, 1);      // NO_NOTIFY left over
  g.put<uint16_t>(kUsed + 2, 5);  // used idx
  g.set_avail_idx(9);
  std::string err;
  assert_true(
      g.q.attach(g.mem, kN, g.uva(kDesc), g.uva(kAvail), g.uva(kUsed), 7, false, false, err));
  assert_int_equal(g.q.next_used(), 5);
  assert_int_equal(g.q.next_avail(), 7);
  assert_int_equal(g.used_flags(), 0);
  assert_true(g.q.pending());
  // The next used element lands in slot 5.
  g.set_desc(3, kBuf, 16, F_WRITE);
  g.set_avail_slot(7, 3);
  Chain* c = g.pop_chain();
  assert_int_equal(c->head, 3);
  assert_true(g.q.push(c, 4));
  assert_int_equal(g.used_idx(), 6);
  assert_int_equal(g.used_id(5), 3);
  assert_int_equal(g.used_len(5), 4);
}

// ---- popping good chains ----

void empty_ring(void** state) {
  Guest& g = G(state);
  g.attach();
  Chain* c = nullptr;
  assert_false(g.q.pending());
  assert_int_equal(g.pop(c), Pop::kEmpty);
  assert_null(c);
  assert_int_equal(g.q.outstanding(), 0);
  assert_int_equal(g.q.next_avail(), 0);
}

void single_chain_readable_then_writable(void** state) {
  Guest& g = G(state);
  g.attach();
  fill(g, kBuf, 100, 1);
  g.set_desc(0, kBuf, 100, F_NEXT, 5);
  g.set_desc(5, kBuf + 0x1000, 200, F_NEXT | F_WRITE, 2);
  g.set_desc(2, kBuf + 0x2000, 50, F_WRITE);
  g.make_avail(0);
  assert_true(g.q.pending());
  Chain* c = g.pop_chain();
  assert_true(c->in_use);
  assert_int_equal(c->head, 0);
  assert_int_equal(c->iov.size(), 3);
  assert_int_equal(c->nreadable, 1);
  assert_int_equal(c->readable_len, 100);
  assert_int_equal(c->writable_len, 250);
  assert_int_equal(c->iov[0].iov_len, 100);
  assert_int_equal(c->iov[1].iov_len, 200);
  assert_int_equal(c->iov[2].iov_len, 50);
  assert_true(iov_equals_guest(g, c->iov[0], kBuf));
  // Writing through the writable iovecs reaches the driver's buffers.
  std::memset(c->iov[1].iov_base, 0xab, 200);
  std::memset(c->iov[2].iov_base, 0xcd, 50);
  assert_int_equal(g.at(kBuf + 0x1000 + 199)[0], 0xab);
  assert_int_equal(g.at(kBuf + 0x2000)[0], 0xcd);
  assert_int_equal(g.q.next_avail(), 1);
  assert_int_equal(g.q.outstanding(), 1);
  assert_false(g.q.pending());
  assert_int_equal(g.pop(c), Pop::kEmpty);
  // Nothing was written to the used ring yet.
  assert_int_equal(g.used_idx(), 0);
}

void push_many_publishes_once(void** state) {
  Guest& g = G(state);
  g.attach();
  g.set_desc(0, kBuf, 64, F_WRITE);
  g.set_desc(1, kBuf + 0x100, 64, F_WRITE);
  g.set_desc(2, kBuf + 0x200, 64, F_WRITE);
  for (uint16_t h : {0, 1, 2}) g.make_avail(h);
  Chain* a = g.pop_chain();
  Chain* b = g.pop_chain();
  Chain* c = g.pop_chain();
  // A repeated chain, or one not outstanding, refuses the whole batch.
  Chain* dup[] = {a, b, a};
  uint32_t w3[] = {1, 2, 3};
  assert_int_equal(g.q.push_many(dup, w3, 3), -1);
  assert_int_equal(g.q.outstanding(), 3);
  assert_true(a->in_use && b->in_use);
  assert_int_equal(g.used_idx(), 0);
  Chain* ab[] = {b, a};
  uint32_t w2[] = {10, 20};
  assert_int_equal(g.q.push_many(ab, w2, 2), 0);
  assert_int_equal(g.used_idx(), 2);
  assert_int_equal(g.used_id(0), 1);
  assert_int_equal(g.used_len(0), 10);
  assert_int_equal(g.used_id(1), 0);
  assert_int_equal(g.used_len(1), 20);
  Chain* stale[] = {c, a};  // a was pushed already
  assert_int_equal(g.q.push_many(stale, w2, 2), -1);
  assert_true(c->in_use);
  // Too long a written length is clamped and reported; the chain is used.
  Chain* last[] = {c};
  uint32_t big[] = {65};
  assert_int_equal(g.q.push_many(last, big, 1), 1);
  assert_int_equal(g.used_idx(), 3);
  assert_int_equal(g.used_len(2), 64);
  assert_int_equal(g.q.outstanding(), 0);
  assert_int_equal(g.q.push_many(nullptr, nullptr, 0), 0);
}

void push_fills_used_ring(void** state) {
  Guest& g = G(state);
  g.attach();
  g.set_desc(4, kBuf, 64, F_NEXT, 6);
  g.set_desc(6, kBuf + 0x100, 128, F_WRITE);
  g.set_desc(1, kBuf + 0x200, 32, 0);
  g.make_avail(4);
  g.make_avail(1);
  Chain* a = g.pop_chain();
  Chain* b = g.pop_chain();
  assert_true(a != b);
  assert_int_equal(g.q.outstanding(), 2);
  // Completion out of order.
  assert_true(g.q.push(b, 0));
  assert_true(g.q.push(a, 128));
  assert_int_equal(g.q.outstanding(), 0);
  assert_int_equal(g.q.next_used(), 2);
  assert_int_equal(g.used_idx(), 2);
  assert_int_equal(g.used_id(0), 1);
  assert_int_equal(g.used_len(0), 0);
  assert_int_equal(g.used_id(1), 4);
  assert_int_equal(g.used_len(1), 128);
}

void chain_across_two_regions(void** state) {
  Guest& g = G(state);
  g.attach();
  fill(g, kR1 - 0x10, 0x30, 7);
  g.set_desc(0, kR1 - 0x10, 0x30, 0);
  g.make_avail(0);
  Chain* c = g.pop_chain();
  assert_int_equal(c->iov.size(), 2);
  assert_int_equal(c->nreadable, 2);
  assert_int_equal(c->readable_len, 0x30);
  assert_int_equal(c->iov[0].iov_len, 0x10);
  assert_int_equal(c->iov[1].iov_len, 0x20);
  assert_true(iov_equals_guest(g, c->iov[0], kR1 - 0x10));
  assert_true(iov_equals_guest(g, c->iov[1], kR1));
}

void indirect_chain(void** state) {
  Guest& g = G(state);
  g.attach(false, true);
  fill(g, kBuf, 10, 1);
  fill(g, kBuf + 0x100, 20, 2);
  g.set_desc(0, kBuf, 10, F_NEXT, 2, kIndirect);
  g.set_desc(2, kBuf + 0x100, 20, F_NEXT, 1, kIndirect);
  g.set_desc(1, kBuf + 0x200, 30, F_WRITE, 0, kIndirect);
  g.set_desc(3, kIndirect, 3 * 16, F_INDIRECT);
  g.make_avail(3);
  Chain* c = g.pop_chain();
  assert_int_equal(c->head, 3);
  assert_int_equal(c->iov.size(), 3);
  assert_int_equal(c->nreadable, 2);
  assert_int_equal(c->readable_len, 30);
  assert_int_equal(c->writable_len, 30);
  assert_true(iov_equals_guest(g, c->iov[0], kBuf));
  assert_true(iov_equals_guest(g, c->iov[1], kBuf + 0x100));
  assert_ptr_equal(c->iov[2].iov_base, g.mem->gpa_to_host(kBuf + 0x200, 30));
  assert_true(g.q.push(c, 30));
  assert_int_equal(g.used_id(0), 3);
  assert_int_equal(g.used_len(0), 30);
}

void indirect_table_across_regions(void** state) {
  Guest& g = G(state);
  g.attach(false, true);
  const uint64_t table = kR1 - 32;  // 2 entries in region 0, 2 in region 1
  for (uint16_t i = 0; i < 4; i++)
    g.set_desc(i, kBuf + 0x100 * i, 8, static_cast<uint16_t>(i < 3 ? F_NEXT : 0),
               static_cast<uint16_t>(i + 1), table);
  g.set_desc(0, table, 64, F_INDIRECT);
  g.make_avail(0);
  Chain* c = g.pop_chain();
  assert_int_equal(c->iov.size(), 4);
  assert_int_equal(c->readable_len, 32);
  assert_ptr_equal(c->iov[3].iov_base, g.mem->gpa_to_host(kBuf + 0x300, 8));
}

void full_ring_then_empty(void** state) {
  Guest& g = G(state);
  g.attach();
  for (uint16_t i = 0; i < kN; i++) {
    g.set_desc(i, kBuf + 0x100 * i, 16, F_WRITE);
    g.make_avail(static_cast<uint16_t>(kN - 1 - i));
  }
  Chain* cs[kN];
  for (uint16_t i = 0; i < kN; i++) {
    cs[i] = g.pop_chain();
    assert_int_equal(cs[i]->head, kN - 1 - i);
  }
  Chain* c;
  assert_int_equal(g.pop(c), Pop::kEmpty);
  assert_int_equal(g.q.outstanding(), kN);
  for (uint16_t i = 0; i < kN; i++) assert_true(g.q.push(cs[i], 16));
  assert_int_equal(g.used_idx(), kN);
  assert_int_equal(g.q.outstanding(), 0);
}

void indices_wrap_around(void** state) {
  Guest& g = G(state);
  g.attach(false, false, 0xfffe);
  assert_int_equal(g.q.next_used(), 0xfffe);
  for (uint16_t i = 0; i < 3; i++) {
    g.set_desc(i, kBuf + 0x100 * i, 16, F_WRITE);
    g.make_avail(i);
  }
  assert_int_equal(g.avail_idx, 1);
  for (uint16_t i = 0; i < 3; i++) {
    Chain* c = g.pop_chain();
    assert_int_equal(c->head, i);
    assert_true(g.q.push(c, i));
  }
  assert_int_equal(g.q.next_avail(), 1);
  assert_int_equal(g.used_idx(), 1);
  // Slots 0xfffe % 8 = 6, 7, then 0.
  assert_int_equal(g.used_id(6), 0);
  assert_int_equal(g.used_id(7), 1);
  assert_int_equal(g.used_id(0), 2);
  assert_int_equal(g.used_len(0), 2);
}

// ---- rejected chains ----

void broken_indirect_chains(void** state) {
  Guest& g = G(state);
  auto one_entry_table = [](Guest& gg) { gg.set_desc(0, kBuf, 16, 0, 0, kIndirect); };
  expect_broken(g, "indirect without the feature", false, [&](Guest& gg) {
    one_entry_table(gg);
    gg.set_desc(0, kIndirect, 16, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "nested indirect", true, [&](Guest& gg) {
    gg.set_desc(0, kIndirect + 0x100, 16, F_INDIRECT, 0, kIndirect);
    gg.set_desc(0, kIndirect, 16, F_INDIRECT);
    gg.make_avail(0);
  });
  const uint32_t bad_lens[] = {0, 8, 24, 40, 17};
  for (uint32_t len : bad_lens) {
    expect_broken(g, "indirect length not a multiple of 16", true, [&](Guest& gg) {
      one_entry_table(gg);
      gg.set_desc(0, kIndirect, len, F_INDIRECT);
      gg.make_avail(0);
    });
  }
  expect_broken(g, "indirect with NEXT", true, [&](Guest& gg) {
    one_entry_table(gg);
    gg.set_desc(0, kIndirect, 16, F_INDIRECT | F_NEXT, 1);
    gg.set_desc(1, kBuf, 16, 0);
    gg.make_avail(0);
  });
  expect_broken(g, "indirect as the second descriptor", true, [&](Guest& gg) {
    one_entry_table(gg);
    gg.set_desc(0, kBuf, 16, F_NEXT, 1);
    gg.set_desc(1, kIndirect, 16, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "indirect table not mapped", true, [&](Guest& gg) {
    gg.set_desc(0, kHole, 32, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "indirect table running off guest memory", true, [&](Guest& gg) {
    gg.set_desc(0, kR1 + kR1Size - 16, 32, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "indirect table larger than the largest queue", true, [&](Guest& gg) {
    gg.set_desc(0, 0, (wire::kMaxQueueSize + 1) * 16, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "loop inside an indirect table", true, [&](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_NEXT, 1, kIndirect);
    gg.set_desc(1, kBuf, 16, F_NEXT, 0, kIndirect);
    gg.set_desc(0, kIndirect, 32, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "next beyond an indirect table", true, [&](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_NEXT, 2, kIndirect);
    gg.set_desc(1, kBuf, 16, 0, 0, kIndirect);
    gg.set_desc(0, kIndirect, 32, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "zero length inside an indirect table", true, [&](Guest& gg) {
    gg.set_desc(0, kBuf, 0, 0, 0, kIndirect);
    gg.set_desc(0, kIndirect, 16, F_INDIRECT);
    gg.make_avail(0);
  });
  expect_broken(g, "readable after writable inside an indirect table", true, [&](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_WRITE | F_NEXT, 1, kIndirect);
    gg.set_desc(1, kBuf, 16, 0, 0, kIndirect);
    gg.set_desc(0, kIndirect, 32, F_INDIRECT);
    gg.make_avail(0);
  });
}

void broken_direct_chains(void** state) {
  Guest& g = G(state);
  expect_broken(g, "descriptor pointing at itself", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_NEXT, 0);
    gg.make_avail(0);
  });
  expect_broken(g, "descriptor loop", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_NEXT, 1);
    gg.set_desc(1, kBuf, 16, F_NEXT, 2);
    gg.set_desc(2, kBuf, 16, F_NEXT, 0);
    gg.make_avail(0);
  });
  expect_broken(g, "next == queue size", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_NEXT, kN);
    gg.make_avail(0);
  });
  expect_broken(g, "next far out of range", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_NEXT, 0xffff);
    gg.make_avail(0);
  });
  expect_broken(g, "head == queue size", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, 0);
    gg.make_avail(kN);
  });
  expect_broken(g, "head far out of range", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, 0);
    gg.make_avail(0xffff);
  });
  expect_broken(g, "zero-length head", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 0, 0);
    gg.make_avail(0);
  });
  expect_broken(g, "zero-length second descriptor", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_NEXT, 1);
    gg.set_desc(1, kBuf, 0, F_WRITE);
    gg.make_avail(0);
  });
  expect_broken(g, "buffer in a hole", false, [](Guest& gg) {
    gg.set_desc(0, kHole, 16, 0);
    gg.make_avail(0);
  });
  expect_broken(g, "buffer running off guest memory", false, [](Guest& gg) {
    gg.set_desc(0, kR1 + kR1Size - 8, 16, F_WRITE);
    gg.make_avail(0);
  });
  expect_broken(g, "buffer address wrapping", false, [](Guest& gg) {
    gg.set_desc(0, UINT64_MAX - 8, 64, 0);
    gg.make_avail(0);
  });
  expect_broken(g, "readable after writable", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 16, F_WRITE | F_NEXT, 1);
    gg.set_desc(1, kBuf + 16, 16, 0);
    gg.make_avail(0);
  });
  expect_broken(g, "two 4 GiB descriptors", false, [](Guest& gg) {
    gg.set_desc(0, kBuf, 0xffffffffu, F_NEXT, 1);
    gg.set_desc(1, kBuf, 0xffffffffu, 0);
    gg.make_avail(0);
  });
}

void avail_index_runaway(void** state) {
  Guest& g = G(state);
  const uint16_t bad_idx[] = {kN + 1, 0x100, 0x8000, 0xffff};
  for (uint16_t idx : bad_idx) {
    expect_broken(g, "avail index more than the queue size ahead", false, [&](Guest& gg) {
      for (uint16_t i = 0; i < kN; i++) {
        gg.set_desc(i, kBuf, 16, 0);
        gg.set_avail_slot(i, i);
      }
      gg.set_avail_idx(idx);
    });
  }
}

// A chain longer than 4 GiB in total, all of it mapped: a sparse 4 GiB
// region and a descriptor of 0xffffffff bytes followed by one more.
void chain_longer_than_4gib(void**) {
  const uint64_t kBig = 0x100000000ull, kRing = 0x100000;
  int ring_fd = make_memfd(kRing);
  int big_fd = make_memfd(kBig + 0x1000);
  auto* ring =
      static_cast<uint8_t*>(::mmap(nullptr, kRing, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0));
  assert_true(ring != MAP_FAILED);
  std::vector<std::shared_ptr<Region>> regs;
  regs.push_back(std::make_shared<Region>(
      wire::MemRegion{0, kRing, reinterpret_cast<uint64_t>(ring), 0}, UniqueFd(ring_fd)));
  regs.push_back(std::make_shared<Region>(wire::MemRegion{kBig, kBig + 0x1000, 0x10000000000, 0},
                                          UniqueFd(big_fd)));
  auto mem = std::make_shared<const MemoryTable>(std::move(regs));
  auto put_desc = [&](uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* d = ring + kDesc + 16 * i;
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
  };
  const uint16_t one = 1, zero = 0;
  put_desc(0, kBig, 0xffffffffu, F_NEXT, 1);
  put_desc(1, kBig + 0xffffffffull, 2, 0, 0);
  std::memcpy(ring + kAvail + 4, &zero, 2);
  std::memcpy(ring + kAvail + 2, &one, 2);

  SplitQueue q;
  std::string err;
  const auto base = reinterpret_cast<uint64_t>(ring);
  assert_true(q.attach(mem, kN, base + kDesc, base + kAvail, base + kUsed, 0, false, false, err));
  // The first descriptor alone (4 GiB - 1) is acceptable.
  put_desc(0, kBig, 0xffffffffu, 0, 0);
  Chain* c = nullptr;
  assert_int_equal(q.pop(c, err), Pop::kChain);
  assert_int_equal(c->readable_len, 0xffffffffull);
  assert_true(q.unpop(c));
  // With one more descriptor the total exceeds what a used element can say.
  put_desc(0, kBig, 0xffffffffu, F_NEXT, 1);
  assert_int_equal(q.pop(c, err), Pop::kBroken);
  assert_non_null(std::strstr(err.c_str(), "4 GiB"));
  assert_int_equal(q.outstanding(), 0);
  q.detach();
  ::munmap(ring, kRing);
}

// ---- unpop / push limits ----

void unpop_returns_the_same_chain(void** state) {
  Guest& g = G(state);
  g.attach();
  g.set_desc(2, kBuf, 32, F_NEXT, 3);
  g.set_desc(3, kBuf + 0x100, 64, F_WRITE);
  g.set_desc(5, kBuf + 0x200, 16, 0);
  g.make_avail(2);
  g.make_avail(5);
  Chain* c = g.pop_chain();
  std::vector<iovec> first = c->iov;
  assert_int_equal(g.q.next_avail(), 1);
  assert_true(g.q.unpop(c));
  assert_false(c->in_use);
  assert_int_equal(g.q.next_avail(), 0);
  assert_int_equal(g.q.outstanding(), 0);
  assert_false(g.q.unpop(c));  // only once
  Chain* again = g.pop_chain();
  assert_int_equal(again->head, 2);
  assert_int_equal(again->iov.size(), first.size());
  for (size_t i = 0; i < first.size(); i++) {
    assert_ptr_equal(again->iov[i].iov_base, first[i].iov_base);
    assert_int_equal(again->iov[i].iov_len, first[i].iov_len);
  }
  // Pops are reversed last-first: the older chain only after the newer.
  Chain* second = g.pop_chain();
  assert_int_equal(second->head, 5);
  assert_false(g.q.unpop(again));
  assert_true(g.q.unpop(second));
  assert_true(g.q.unpop(again));
  assert_int_equal(g.q.next_avail(), 0);
  assert_int_equal(g.q.outstanding(), 0);
  again = g.pop_chain();
  second = g.pop_chain();
  assert_int_equal(again->head, 2);
  assert_int_equal(second->head, 5);
  assert_true(g.q.unpop(second));
  // A pushed chain cannot be reversed; nor can nothing.
  assert_true(g.q.push(again, 0));
  assert_false(g.q.unpop(again));
  assert_false(g.q.unpop(nullptr));
  assert_int_equal(g.used_idx(), 1);
}

void push_clamps_written_length(void** state) {
  Guest& g = G(state);
  g.attach();
  g.set_desc(0, kBuf, 32, F_NEXT, 1);
  g.set_desc(1, kBuf + 0x100, 64, F_WRITE);
  g.set_desc(2, kBuf + 0x200, 64, 0);
  g.make_avail(0);
  g.make_avail(2);
  Chain* c = g.pop_chain();
  assert_true(g.q.push(c, 64));  // exactly the writable length
  c = g.pop_chain();
  assert_false(g.q.push(c, 1));  // nothing is writable
  g.make_avail(0);
  c = g.pop_chain();
  assert_false(g.q.push(c, 65));
  g.make_avail(0);
  c = g.pop_chain();
  assert_false(g.q.push(c, UINT32_MAX));
  // Each was still completed, with the length clamped.
  assert_int_equal(g.used_idx(), 4);
  assert_int_equal(g.used_len(0), 64);
  assert_int_equal(g.used_id(1), 2);
  assert_int_equal(g.used_len(1), 0);
  assert_int_equal(g.used_len(2), 64);
  assert_int_equal(g.used_len(3), 64);
  assert_int_equal(g.q.outstanding(), 0);
}

void outstanding_chains_are_limited(void** state) {
  Guest& g = G(state);
  g.attach();
  for (uint16_t i = 0; i < kN; i++) {
    g.set_desc(i, kBuf, 16, 0);
    g.make_avail(i);
  }
  for (uint16_t i = 0; i < kN; i++) g.pop_chain();
  assert_int_equal(g.q.outstanding(), kN);
  // The driver offers a ninth chain while the device holds all eight.
  g.make_avail(0);
  Chain* c;
  std::string err;
  assert_int_equal(g.pop(c, &err), Pop::kBroken);
  assert_false(err.empty());
  assert_int_equal(g.q.outstanding(), kN);
}

// After a re-attach with a smaller size, the limit is the new size.
void outstanding_limit_follows_a_smaller_size(void** state) {
  Guest& g = G(state);
  g.attach(false, false, 0, 16);
  g.attach(false, false, 0, 4);
  for (uint16_t i = 0; i < 4; i++) {
    g.set_desc(i, kBuf, 16, 0);
    g.make_avail(i);
  }
  for (uint16_t i = 0; i < 4; i++) g.pop_chain();
  g.make_avail(0);
  Chain* c;
  assert_int_equal(g.pop(c), Pop::kBroken);
  assert_int_equal(g.q.outstanding(), 4);
}

// ---- double fetch ----

void popped_chain_is_immune_to_later_guest_writes(void** state) {
  Guest& g = G(state);
  g.attach(false, true);
  g.set_desc(0, kBuf, 16, F_NEXT, 1);
  g.set_desc(1, kBuf + 0x100, 32, F_WRITE);
  g.set_desc(0, kBuf + 0x200, 48, 0, 0, kIndirect);
  g.set_desc(2, kIndirect, 16, F_INDIRECT);
  g.make_avail(0);
  g.make_avail(2);
  Chain* a = g.pop_chain();
  Chain* b = g.pop_chain();
  const std::vector<iovec> ia = a->iov, ib = b->iov;
  // The driver rewrites everything after the pops.
  g.set_desc(0, kHole, 0xffff, F_NEXT | F_INDIRECT, 7);
  g.set_desc(1, kR1, 1, 0);
  g.set_desc(0, kHole, 0, F_INDIRECT, 0, kIndirect);
  g.set_desc(2, kHole, 3, F_NEXT, 2);
  for (auto [c, saved] : {std::pair{a, &ia}, std::pair{b, &ib}}) {
    assert_int_equal(c->iov.size(), saved->size());
    for (size_t i = 0; i < saved->size(); i++) {
      assert_ptr_equal(c->iov[i].iov_base, (*saved)[i].iov_base);
      assert_int_equal(c->iov[i].iov_len, (*saved)[i].iov_len);
    }
  }
  assert_int_equal(a->readable_len, 16);
  assert_int_equal(a->writable_len, 32);
  assert_int_equal(b->readable_len, 48);
  // The used ring carries the head that was popped.
  assert_true(g.q.push(b, 0));
  assert_true(g.q.push(a, 32));
  assert_int_equal(g.used_id(0), 2);
  assert_int_equal(g.used_id(1), 0);
  assert_int_equal(g.used_len(1), 32);
}

// ---- notifications ----

void event_idx_need_notify_honours_used_event(void** state) {
  Guest& g = G(state);
  g.attach(true, false);
  for (uint16_t i = 0; i < kN; i++) g.set_desc(i, kBuf, 16, F_WRITE);
  bool pushed = false;
  auto push_one = [&](uint16_t head) {
    g.make_avail(head);
    Chain* c = g.pop_chain();
    assert_true(g.q.push(c, 1));
  };
  // The first check after attach always signals.
  g.set_used_event(100);
  push_one(0);
  assert_true(g.q.need_notify(&pushed));
  assert_true(pushed);
  // Nothing new: no signal, nothing pushed.
  assert_false(g.q.need_notify(&pushed));
  assert_false(pushed);
  // used idx 1 -> 2. The driver asked to hear after entry 0 only: entry 1
  // (used_event 0) needs no signal.
  g.set_used_event(0);
  push_one(1);
  assert_false(g.q.need_notify(&pushed));
  assert_true(pushed);
  // used idx 2 -> 3, used_event 2: the entry at index 2 was asked for.
  g.set_used_event(2);
  push_one(2);
  assert_true(g.q.need_notify(&pushed));
  assert_true(pushed);
  // Several pushes (3 -> 6) in one batch; the event index 4 lies inside.
  g.set_used_event(4);
  push_one(3);
  push_one(4);
  push_one(5);
  assert_true(g.q.need_notify(&pushed));
  // 6 -> 7 with used_event still 4 (behind): no.
  push_one(6);
  assert_false(g.q.need_notify(&pushed));
  assert_true(pushed);
  // The NO_INTERRUPT flag means nothing with EVENT_IDX.
  g.set_avail_flags(1);
  g.set_used_event(7);
  push_one(7);
  assert_true(g.q.need_notify(&pushed));
}

void event_idx_empty_pop_publishes_avail_event(void** state) {
  Guest& g = G(state);
  g.attach(true, false);
  g.set_avail_event(0xabcd);
  Chain* c;
  assert_int_equal(g.pop(c), Pop::kEmpty);
  assert_int_equal(g.avail_event(), 0);
  g.set_desc(0, kBuf, 16, F_WRITE);
  g.make_avail(0);
  g.make_avail(0);
  c = g.pop_chain();
  assert_true(g.q.push(c, 0));
  c = g.pop_chain();
  assert_true(g.q.push(c, 0));
  assert_int_equal(g.avail_event(), 0);  // popping chains does not move it
  assert_int_equal(g.pop(c), Pop::kEmpty);
  assert_int_equal(g.avail_event(), 2);
  // With kicks disabled, an empty pop leaves it alone.
  g.q.set_kicks(false);
  g.set_avail_event(0x1234);
  assert_int_equal(g.pop(c), Pop::kEmpty);
  assert_int_equal(g.avail_event(), 0x1234);
  assert_int_equal(g.used_flags(), 0);  // EVENT_IDX does not use the flag
  // Enabling them publishes the position again.
  g.q.set_kicks(true);
  assert_int_equal(g.avail_event(), 2);
}

void no_event_idx_honours_no_interrupt(void** state) {
  Guest& g = G(state);
  g.attach(false, false);
  g.set_desc(0, kBuf, 16, F_WRITE);
  bool pushed = false;
  g.set_avail_flags(1);  // VRING_AVAIL_F_NO_INTERRUPT
  g.make_avail(0);
  Chain* c = g.pop_chain();
  assert_true(g.q.push(c, 0));
  assert_false(g.q.need_notify(&pushed));
  assert_true(pushed);
  assert_false(g.q.need_notify(&pushed));
  assert_false(pushed);
  g.set_avail_flags(0);
  g.make_avail(0);
  c = g.pop_chain();
  assert_true(g.q.push(c, 0));
  assert_true(g.q.need_notify(&pushed));
  assert_true(pushed);
  // used_event is ignored without EVENT_IDX.
  g.set_used_event(0x7777);
  g.make_avail(0);
  c = g.pop_chain();
  assert_true(g.q.push(c, 0));
  assert_true(g.q.need_notify(&pushed));
}

void set_kicks_toggles_no_notify(void** state) {
  Guest& g = G(state);
  g.attach(false, false);
  assert_int_equal(g.used_flags(), 0);
  g.set_avail_event(0x55);
  g.q.set_kicks(false);
  assert_int_equal(g.used_flags(), 1);  // VRING_USED_F_NO_NOTIFY
  g.q.set_kicks(true);
  assert_int_equal(g.used_flags(), 0);
  // Without EVENT_IDX, avail_event is never written.
  Chain* c;
  assert_int_equal(g.pop(c), Pop::kEmpty);
  assert_int_equal(g.avail_event(), 0x55);
  // A re-attach turns notifications back on.
  g.q.set_kicks(false);
  g.attach(false, false);
  assert_int_equal(g.used_flags(), 0);
}

// ---- life cycle ----

void detach_reclaims_chains(void** state) {
  Guest& g = G(state);
  g.attach();
  g.set_desc(0, kBuf, 16, 0);
  g.make_avail(0);
  Chain* c = g.pop_chain();
  assert_int_equal(g.q.outstanding(), 1);
  g.q.detach();
  assert_false(g.q.attached());
  assert_false(g.q.pending());
  assert_false(c->in_use);
  assert_int_equal(g.q.outstanding(), 0);
  assert_false(g.q.unpop(c));
}

void remap_follows_a_new_table(void** state) {
  Guest& g = G(state);
  g.attach();
  std::string err;
  // The same regions in a new table: still attached, rings still work.
  auto same = std::make_shared<const MemoryTable>(g.mem->regions());
  assert_true(g.q.remap(same, err));
  assert_true(g.q.attached());
  assert_ptr_equal(g.q.memory(), same.get());
  g.set_desc(0, kBuf, 16, 0);
  g.make_avail(0);
  Chain* c = g.pop_chain();
  assert_true(g.q.push(c, 0));
  // A table without the ring's region: the queue lets go of the rings.
  auto only_r1 = std::make_shared<const MemoryTable>(
      std::vector<std::shared_ptr<Region>>{g.mem->regions()[1]});
  assert_false(g.q.remap(only_r1, err));
  assert_false(err.empty());
  assert_false(g.q.attached());
  assert_false(g.q.pending());
}

void remap_to_no_table_detaches_the_rings(void** state) {
  Guest& g = G(state);
  g.attach();
  std::string err;
  assert_false(g.q.remap(nullptr, err));
  assert_false(err.empty());
  // No pointer into a mapping the queue no longer holds may survive.
  assert_false(g.q.attached());
  assert_false(g.q.pending());
}

}  // namespace

#define GUEST_TEST(f) cmocka_unit_test_setup_teardown(f, setup_guest, teardown_guest)

int main() {
  const CMUnitTest tests[] = {
      GUEST_TEST(attach_refuses_bad_geometry),
      GUEST_TEST(attach_takes_used_idx_from_ring_and_enables_notifications),
      GUEST_TEST(empty_ring),
      GUEST_TEST(single_chain_readable_then_writable),
      GUEST_TEST(push_fills_used_ring),
      GUEST_TEST(push_many_publishes_once),
      GUEST_TEST(chain_across_two_regions),
      GUEST_TEST(indirect_chain),
      GUEST_TEST(indirect_table_across_regions),
      GUEST_TEST(full_ring_then_empty),
      GUEST_TEST(indices_wrap_around),
      GUEST_TEST(broken_indirect_chains),
      GUEST_TEST(broken_direct_chains),
      GUEST_TEST(avail_index_runaway),
      cmocka_unit_test(chain_longer_than_4gib),
      GUEST_TEST(unpop_returns_the_same_chain),
      GUEST_TEST(push_clamps_written_length),
      GUEST_TEST(outstanding_chains_are_limited),
      GUEST_TEST(outstanding_limit_follows_a_smaller_size),
      GUEST_TEST(popped_chain_is_immune_to_later_guest_writes),
      GUEST_TEST(event_idx_need_notify_honours_used_event),
      GUEST_TEST(event_idx_empty_pop_publishes_avail_event),
      GUEST_TEST(no_event_idx_honours_no_interrupt),
      GUEST_TEST(set_kicks_toggles_no_notify),
      GUEST_TEST(detach_reclaims_chains),
      GUEST_TEST(remap_follows_a_new_table),
      GUEST_TEST(remap_to_no_table_detaches_the_rings),
  };
  return cmocka_run_group_tests_name("split_ring", tests, nullptr, nullptr);
}
