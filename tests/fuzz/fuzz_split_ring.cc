// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the device side of a split virtqueue (vhu::SplitQueue) over
// guest memory the input fills in.
//
// Guest memory (built once): two regions adjacent in guest-physical space,
// backed by separate memfds and mapped at unrelated host addresses, so a
// buffer that crosses gpa 0x10000 must be split into two iovecs:
//   region 0: gpa 0x00000..0x0ffff, memfd A at offset 0
//   region 1: gpa 0x10000..0x1ffff, memfd B at offset 0x1000
// The "driver" writes through its own mapping of the memfds; its addresses
// are the regions' user addresses (UVA), as with a real front-end.
//
// Input layout (every field is optional; missing bytes read as zero):
//   u8  queue size: bit 7 set -> a raw u16 size follows (attach checks it);
//       else 1 << (low bits % 9), 1..256
//   u8  options (see kOpt*)
//   u16 next_avail (SET_VRING_BASE)
//   u8  avail idx: bit 7 set -> a raw u16 follows; else next_avail + (b % (num+1))
//   u16 used idx the ring starts with
//   u8  avail flags, u16 used_event
//   [kOptFuzzLayout] u16 desc, u16 avail, u16 used placement selectors
//   u8  number of descriptor records for the table, then the records (desc_rec)
//   u8  number of avail ring entries, then one u8 head selector each
//   u8  number of indirect tables (mod 4); each: u16 gpa selector, u8 count,
//       then `count` descriptor records
//   ops until the input ends (see run_ops), then a final drain.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_input.h"
#include "memory/memory.h"
#include "vring/split.h"

using vhu::Chain;
using vhu::MemoryTable;
using vhu::MemoryTablePtr;
using vhu::Region;
using vhu::SplitQueue;
using vhu::UniqueFd;
using vhu_fuzz::Input;
namespace wire = vhu::wire;

namespace {

using Pop = SplitQueue::Pop;

constexpr uint64_t kRegionSize = 0x10000;
constexpr uint64_t kMemEnd = 2 * kRegionSize;  // first gpa past guest memory
constexpr uint64_t kRegion1Offset = 0x1000;    // mmap_offset of region 1

// Default ring placement (inside region 0).
constexpr uint64_t kDescGpa = 0x0000, kAvailGpa = 0x1000, kUsedGpa = 0x2000;

constexpr uint8_t kOptEventIdx = 1 << 0;
constexpr uint8_t kOptIndirect = 1 << 1;
constexpr uint8_t kOptFreshTable = 1 << 2;  // attach to a table made for this input
constexpr uint8_t kOptFuzzLayout = 1 << 3;  // ring placement comes from the input
constexpr uint8_t kOptMisalign = 1 << 4;    // with kOptFuzzLayout: no alignment masks

constexpr size_t kMaxOps = 1024;
constexpr size_t kTouchBudget = 16u << 20;  // bytes copied in full per input

struct GuestMemory {
  int fd[2] = {-1, -1};
  uint8_t* view[2] = {nullptr, nullptr};  // the driver's view of each region
  MemoryTablePtr table;                   // shared by all inputs

  GuestMemory() {
    const uint64_t file_size[2] = {kRegionSize, kRegionSize + kRegion1Offset};
    const uint64_t offset[2] = {0, kRegion1Offset};
    for (int i = 0; i < 2; i++) {
      fd[i] = ::memfd_create("vhu-fuzz-guest", MFD_CLOEXEC);
      if (fd[i] < 0 || ::ftruncate(fd[i], static_cast<off_t>(file_size[i])) != 0) std::abort();
      void* p = ::mmap(nullptr, file_size[i], PROT_READ | PROT_WRITE, MAP_SHARED, fd[i], 0);
      if (p == MAP_FAILED) std::abort();
      view[i] = static_cast<uint8_t*>(p) + offset[i];
    }
    table = make_table(true);
  }

  wire::MemRegion region(int i) const {
    return wire::MemRegion{kRegionSize * i, kRegionSize, reinterpret_cast<uint64_t>(view[i]),
                           i == 0 ? 0 : kRegion1Offset};
  }

  // A new table over the same memfds (new host mappings of the same pages).
  MemoryTablePtr make_table(bool both) const {
    std::vector<std::shared_ptr<Region>> regs;
    for (int i = 0; i < (both ? 2 : 1); i++) {
      int d = ::fcntl(fd[i], F_DUPFD_CLOEXEC, 0);
      if (d < 0) std::abort();
      regs.push_back(std::make_shared<Region>(region(i), UniqueFd(d)));
    }
    return std::make_shared<const MemoryTable>(std::move(regs));
  }

  uint8_t* at(uint64_t gpa) const { return view[gpa / kRegionSize] + gpa % kRegionSize; }
  uint64_t uva(uint64_t gpa) const { return reinterpret_cast<uint64_t>(at(gpa)); }

  void clear() {
    for (auto* v : view) std::memset(v, 0, kRegionSize);
  }
  // Byte-exact write that may cross the region boundary; bytes past the end
  // of guest memory are dropped.
  void write(uint64_t gpa, const void* src, size_t len) const {
    const auto* s = static_cast<const uint8_t*>(src);
    for (size_t i = 0; i < len && gpa + i < kMemEnd; i++) *at(gpa + i) = s[i];
  }
  template <typename T>
  void put(uint64_t gpa, T v) const {
    write(gpa, &v, sizeof v);
  }
  uint16_t get16(uint64_t gpa) const {
    uint16_t v = 0;
    for (size_t i = 0; i < 2 && gpa + i < kMemEnd; i++)
      v |= static_cast<uint16_t>(*at(gpa + i) << (8 * i));
    return v;
  }
  uint32_t get32(uint64_t gpa) const {
    return get16(gpa) | (static_cast<uint32_t>(get16(gpa + 2)) << 16);
  }
};

GuestMemory& guest() {
  static GuestMemory* g = new GuestMemory;
  return *g;
}

// One 16-byte descriptor from a record:
//   u8 f: bits 0-2 NEXT/WRITE/INDIRECT, bits 3-4 address mode,
//         bits 5-6 length mode, bit 7 next out of range
//   u16 a (address selector), u16 l (length selector), u8 n (next selector): 6 bytes;
//   address mode 3 reads a raw u64 address after the record.
struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

Desc desc_rec(Input& in, uint32_t table_size) {
  uint8_t f = in.u8();
  uint16_t a = in.u16();
  uint16_t l = in.u16();
  uint8_t n = in.u8();
  Desc d{};
  d.flags = f & (wire::kDescFNext | wire::kDescFWrite | wire::kDescFIndirect);
  switch ((f >> 3) & 3) {
    case 0:  // anywhere in guest memory
      d.addr = uint64_t{a} << 1;
      break;
    case 1:  // straddling the region boundary
      d.addr = kRegionSize - 0x800 + (a & 0xfff);
      break;
    case 2:  // straddling the end of guest memory
      d.addr = kMemEnd - 0x800 + (a & 0xfff);
      break;
    default:  // anything
      d.addr = in.u64();
      break;
  }
  switch ((f >> 5) & 3) {
    case 0:
      // Indirect tables want a multiple of 16.
      d.len = (d.flags & wire::kDescFIndirect) ? (l & 0x3f) * 16u : l;
      break;
    case 1:
      d.len = l & 0xff;
      break;
    case 2:
      d.len = (uint32_t{l} << 16) | l;
      break;
    default:
      d.len = UINT32_MAX - l;
      break;
  }
  if (table_size == 0) table_size = 1;
  d.next =
      (f & 0x80) ? static_cast<uint16_t>(table_size + n) : static_cast<uint16_t>(n % table_size);
  return d;
}

void write_desc(const GuestMemory& g, uint64_t gpa, const Desc& d) {
  uint8_t b[16];
  std::memcpy(b, &d.addr, 8);
  std::memcpy(b + 8, &d.len, 4);
  std::memcpy(b + 12, &d.flags, 2);
  std::memcpy(b + 14, &d.next, 2);
  g.write(gpa, b, sizeof b);
}

uint16_t head_sel(uint8_t b, uint16_t num) {
  // Mostly in range; the top values are out of range on purpose.
  if (b >= 0xfc) return b == 0xff ? 0xffff : static_cast<uint16_t>(num + (b & 3));
  return static_cast<uint16_t>(b % num);
}

struct Outstanding {
  Chain* chain;
  std::weak_ptr<const MemoryTable> table;  // the table current when popped
  uint16_t avail_pos;                      // the device's avail index it was popped at
};

struct Fuzz {
  GuestMemory& g = guest();
  Input in;
  SplitQueue q;
  uint16_t num = 1;
  bool event_idx = false, fixed_layout = true;
  uint64_t desc_gpa = kDescGpa, avail_gpa = kAvailGpa, used_gpa = kUsedGpa;
  uint16_t driver_avail = 0;     // the driver's avail idx
  MemoryTablePtr current;        // the table the queue uses (our reference)
  std::vector<Outstanding> out;  // chains the device holds
  size_t touched = 0;
  std::vector<uint8_t> scratch;

  Fuzz(const uint8_t* data, size_t size) : in(data, size) {}

  void check_chain(const Chain* c) {
    FUZZ_CHECK(c != nullptr);
    FUZZ_CHECK(c->head < num);
    FUZZ_CHECK(!c->iov.empty());
    FUZZ_CHECK(c->nreadable <= c->iov.size());
    uint64_t rd = 0, wr = 0;
    for (size_t i = 0; i < c->iov.size(); i++) {
      FUZZ_CHECK(c->iov[i].iov_len > 0);
      (i < c->nreadable ? rd : wr) += c->iov[i].iov_len;
    }
    FUZZ_CHECK(rd == c->readable_len);
    FUZZ_CHECK(wr == c->writable_len);
    FUZZ_CHECK(rd + wr <= UINT32_MAX);
  }

  // Every byte of every iovec must lie inside one mapping of the table the
  // chain came from, and that table must still be alive.
  void touch(const Outstanding& o) {
    MemoryTablePtr t = o.table.lock();
    if (!t) vhu_fuzz::invariant_failed(__FILE__, __LINE__, "a chain outlived its memory table");
    for (const iovec& v : o.chain->iov) {
      auto* p = static_cast<uint8_t*>(v.iov_base);
      bool inside = false;
      for (const auto& r : t->regions()) {
        uint8_t* h = r->host();
        if (p >= h && v.iov_len <= r->size() &&
            p - h <= static_cast<ptrdiff_t>(r->size() - v.iov_len)) {
          inside = true;
          break;
        }
      }
      if (!inside) vhu_fuzz::invariant_failed(__FILE__, __LINE__, "iovec outside guest memory");
      if (touched < kTouchBudget) {
        scratch.resize(v.iov_len);
        std::memcpy(scratch.data(), p, v.iov_len);
        std::memcpy(p, scratch.data(), v.iov_len);
        touched += v.iov_len;
      } else {
        volatile uint8_t* vp = p;
        vp[0] = vp[0];
        vp[v.iov_len - 1] = vp[v.iov_len - 1];
      }
    }
  }

  void drop(size_t i) { out.erase(out.begin() + static_cast<ptrdiff_t>(i)); }

  // Returns false when the ring broke (it is not touched again).
  bool do_pop() {
    Chain* c = nullptr;
    std::string err;
    uint16_t before = q.next_avail();
    Pop r = q.pop(c, err);
    switch (r) {
      case Pop::kChain:
        FUZZ_TRACE("pop: chain head %u, %zu iovecs, %zu readable + %zu writable bytes\n", c->head,
                   c->iov.size(), c->readable_len, c->writable_len);
        check_chain(c);
        FUZZ_CHECK(q.next_avail() == static_cast<uint16_t>(before + 1));
        for (const auto& o : out) FUZZ_CHECK(o.chain != c);
        out.push_back({c, current, before});
        FUZZ_CHECK(q.outstanding() == out.size());
        touch(out.back());
        return true;
      case Pop::kEmpty:
        FUZZ_TRACE("pop: empty\n");
        FUZZ_CHECK(q.next_avail() == before);
        // With the rings where nothing else writes, "empty" means exactly
        // that the driver's index was reached.
        if (fixed_layout) FUZZ_CHECK(g.get16(avail_gpa + 2) == before);
        return true;
      case Pop::kBroken:
        FUZZ_TRACE("pop: broken: %s\n", err.c_str());
        FUZZ_CHECK(!err.empty());
        FUZZ_CHECK(q.next_avail() == before);
        FUZZ_CHECK(q.outstanding() == out.size());
        return false;
    }
    return false;
  }

  uint32_t written_sel(const Chain* c) {
    switch (in.u8() & 3) {
      case 0:
        return static_cast<uint32_t>(c->writable_len);
      case 1:
        return 0;
      case 2:
        return static_cast<uint32_t>(c->writable_len + 1);  // one too many
      default:
        return in.u32();
    }
  }

  void do_push(size_t i, uint32_t written) {
    Chain* c = out[i].chain;
    uint16_t slot = static_cast<uint16_t>(q.next_used() % num);
    uint16_t used_before = q.next_used();
    size_t wl = c->writable_len;
    uint16_t head = c->head;
    bool ok = q.push(c, written);
    FUZZ_TRACE("push head %u written %u (writable %zu): %s\n", head, written, wl,
               ok ? "ok" : "clamped");
    FUZZ_CHECK(ok == (written <= wl));
    FUZZ_CHECK(q.next_used() == static_cast<uint16_t>(used_before + 1));
    uint64_t elem = used_gpa + 4 + 8ull * slot;
    if (elem + 8 <= kMemEnd) {
      FUZZ_CHECK(g.get32(elem) == head);
      FUZZ_CHECK(g.get32(elem + 4) == std::min<uint64_t>(written, wl));
    }
    drop(i);
    FUZZ_CHECK(q.outstanding() == out.size());
  }

  bool do_unpop(size_t i) {
    Chain* c = out[i].chain;
    // Pops are undone newest first: only the chain taken at the position
    // just before the device's avail index can go back.
    uint16_t before = q.next_avail();
    bool expect = out[i].avail_pos == static_cast<uint16_t>(before - 1);
    bool ok = q.unpop(c);
    FUZZ_TRACE("unpop head %u: %s\n", c->head, ok ? "ok" : "refused");
    FUZZ_CHECK(ok == expect);
    if (ok) {
      FUZZ_CHECK(q.next_avail() == static_cast<uint16_t>(before - 1));
      drop(i);
    }
    FUZZ_CHECK(q.outstanding() == out.size());
    return ok;
  }

  void driver_add(unsigned count) {
    for (unsigned k = 0; k < count; k++) {
      g.put<uint16_t>(avail_gpa + 4 + 2ull * (driver_avail % num), head_sel(in.u8(), num));
      driver_avail++;
    }
    g.put<uint16_t>(avail_gpa + 2, driver_avail);
  }

  // Returns false when the ring is broken.
  bool do_remap() {
    MemoryTablePtr next;
    switch (in.u8() % 3) {
      case 0:
        next = current;
        break;
      case 1:
        next = g.make_table(true);
        break;
      default:
        next = g.make_table(false);
        break;
    }
    std::string err;
    bool ok = q.remap(next, err);
    FUZZ_TRACE("remap (%zu regions): %s\n", next->size(), ok ? "ok" : err.c_str());
    // Only the queue keeps the old table now.
    current = std::move(next);
    if (!ok) {
      FUZZ_CHECK(!err.empty());
      return false;
    }
    return true;
  }

  bool run_ops() {
    for (size_t n = 0; n < kMaxOps && !in.empty(); n++) {
      // Low nibble: the operation (mod 12); high bits: its variant.
      uint8_t op = in.u8();
      switch ((op & 0x0f) % 12) {
        case 0:
        case 1:
        case 2:
        case 3:
          if (!do_pop()) return false;
          break;
        case 4:
        case 5:
          if (!out.empty()) {
            size_t i = in.u8() % out.size();
            do_push(i, written_sel(out[i].chain));
          }
          break;
        case 6:
          if (!out.empty()) {
            // Usually the most recent chain; sometimes another (refused).
            size_t i = (op & 0x80) ? in.u8() % out.size() : out.size() - 1;
            do_unpop(i);
          }
          break;
        case 7: {
          bool pushed = false;
          q.need_notify(&pushed);
          break;
        }
        case 8:
          q.set_kicks(op & 0x10);
          break;
        case 9:
          if (op & 0x10) {
            driver_add(in.u8() % 4 + 1);
          } else {
            uint16_t i = in.u8() % num;
            write_desc(g, desc_gpa + 16ull * i, desc_rec(in, num));
          }
          break;
        case 10:
          if (!do_remap()) return false;
          break;
        default:
          (void)q.pending();
          for (const auto& o : out) touch(o);
          break;
      }
    }
    return true;
  }

  void finish(bool healthy) {
    if (healthy) {
      // Drain what the driver made available, then complete everything.
      for (unsigned n = 0; n < 2u * num + 4; n++) {
        size_t had = out.size();
        if (!do_pop()) {
          healthy = false;
          break;
        }
        if (out.size() == had) break;  // empty
      }
    }
    if (healthy) {
      while (!out.empty())
        do_push(out.size() - 1, static_cast<uint32_t>(out.back().chain->writable_len));
      bool pushed = false;
      q.need_notify(&pushed);
    }
    q.detach();
    FUZZ_CHECK(q.outstanding() == 0);
  }

  void run() {
    uint8_t lg = in.u8();
    num = (lg & 0x80) ? in.u16() : static_cast<uint16_t>(1u << ((lg & 0x7f) % 9));
    // The rings are laid out for at least one entry even when the size is
    // one attach must refuse (0).
    const uint16_t layout_num = num ? num : 1;
    uint8_t opt = in.u8();
    event_idx = opt & kOptEventIdx;
    bool indirect = opt & kOptIndirect;
    uint16_t next_avail = in.u16();
    uint8_t ai = in.u8();
    driver_avail = (ai & 0x80) ? in.u16() : static_cast<uint16_t>(next_avail + ai % (num + 1));
    uint16_t used_idx = in.u16();
    uint8_t avail_flags = in.u8();
    uint16_t used_event = in.u16();

    if (opt & kOptFuzzLayout) {
      fixed_layout = false;
      bool exact = opt & kOptMisalign;
      desc_gpa = (uint64_t{in.u16()} << 1) & (exact ? 0x1ffff : 0x1fff0);
      avail_gpa = (uint64_t{in.u16()} << 1) & (exact ? 0x1ffff : 0x1fffe);
      used_gpa = (uint64_t{in.u16()} << 1) & (exact ? 0x1ffff : 0x1fffc);
    }

    g.clear();
    // Descriptor table.
    unsigned ndesc = in.u8() % (num + 1u);
    for (unsigned i = 0; i < ndesc; i++) write_desc(g, desc_gpa + 16ull * i, desc_rec(in, num));
    // Avail ring.
    g.put<uint16_t>(avail_gpa, avail_flags);
    g.put<uint16_t>(avail_gpa + 2, driver_avail);
    unsigned nheads = in.u8() % (num + 1u);
    for (unsigned i = 0; i < nheads; i++)
      g.put<uint16_t>(avail_gpa + 4 + 2ull * ((next_avail + i) % layout_num),
                      head_sel(in.u8(), layout_num));
    g.put<uint16_t>(avail_gpa + 4 + 2ull * num, used_event);
    // Used ring.
    g.put<uint16_t>(used_gpa + 2, used_idx);
    // Indirect tables.
    unsigned ntables = in.u8() % 4;
    for (unsigned t = 0; t < ntables; t++) {
      uint64_t at = (uint64_t{in.u16()} << 1) % kMemEnd;
      unsigned count = in.u8();
      for (unsigned i = 0; i < count; i++) write_desc(g, at + 16ull * i, desc_rec(in, count));
    }

    current = (opt & kOptFreshTable) ? g.make_table(true) : g.table;
    // Rings and tables may overlap: what the device reads is what is there now.
    const uint16_t ring_used_idx = g.get16(used_gpa + 2);
    std::string err;
    if (!q.attach(current, num, g.uva(desc_gpa), g.uva(avail_gpa), g.uva(used_gpa), next_avail,
                  event_idx, indirect, err)) {
      FUZZ_TRACE("attach (size %u): %s\n", num, err.c_str());
      FUZZ_CHECK(!err.empty());
      FUZZ_CHECK(!q.attached());
      return;
    }
    FUZZ_TRACE(
        "attached: size %u, next_avail %u, avail idx %u, used idx %u, event_idx %d, indirect %d\n",
        num, next_avail, driver_avail, ring_used_idx, event_idx, indirect);
    FUZZ_CHECK(q.attached());
    FUZZ_CHECK(q.next_avail() == next_avail);
    FUZZ_CHECK(q.next_used() == ring_used_idx);
    finish(run_ops());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fuzz f(data, size);
  f.run();
  return 0;
}
