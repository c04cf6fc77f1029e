// SPDX-License-Identifier: Apache-2.0
#include "vring/split.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace vhu {
namespace {

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

// One fetch of a 16-byte descriptor from shared memory (two 8-byte loads
// that the compiler cannot repeat).
Desc load_desc(const uint8_t* p) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t a = __atomic_load_n(&w[0], __ATOMIC_RELAXED);
  uint64_t b = __atomic_load_n(&w[1], __ATOMIC_RELAXED);
  return Desc{a, static_cast<uint32_t>(b), static_cast<uint16_t>(b >> 32),
              static_cast<uint16_t>(b >> 48)};
}

Desc decode_desc(const uint8_t* p) {
  Desc d;
  std::memcpy(&d.addr, p, 8);
  std::memcpy(&d.len, p + 8, 4);
  std::memcpy(&d.flags, p + 12, 2);
  std::memcpy(&d.next, p + 14, 2);
  return d;
}

uint16_t load16(const uint8_t* p, int order = __ATOMIC_RELAXED) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), order);
}
void store16(uint8_t* p, uint16_t v, int order = __ATOMIC_RELAXED) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, order);
}

// Maximum iovecs one chain may produce: each descriptor may straddle a few
// regions; anything beyond this is treated as hostile.
constexpr size_t kMaxIov = 4096;

}  // namespace

bool SplitQueue::attach(MemoryTablePtr mem, uint16_t num, uint64_t desc_uva, uint64_t avail_uva,
                        uint64_t used_uva, uint16_t next_avail, bool event_idx, bool indirect,
                        std::string& err) {
  detach();
  if (num == 0 || (num & (num - 1)) != 0) {
    err = strfmt("queue size %u is not a power of two", num);
    return false;
  }
  if ((desc_uva & 15) || (avail_uva & 1) || (used_uva & 3)) {
    err = "ring addresses are misaligned";
    return false;
  }
  mem_ = std::move(mem);
  num_ = num;
  desc_uva_ = desc_uva;
  avail_uva_ = avail_uva;
  used_uva_ = used_uva;
  event_idx_ = event_idx;
  indirect_ = indirect;
  if (!translate(err)) {
    detach();
    return false;
  }
  last_avail_ = next_avail;
  avail_seen_ = next_avail;
  used_idx_ = load16(used_ + 2, __ATOMIC_ACQUIRE);
  published_used_ = used_idx_;
  signalled_valid_ = false;
  kicks_enabled_ = true;
  store16(used_, 0);  // flags: notifications wanted
  if (pool_.size() < num_) {
    while (pool_.size() < num_) {
      pool_.push_back(std::make_unique<Chain>());
      pool_.back()->owner = this;
      free_.push_back(pool_.back().get());
    }
  }
  return true;
}

bool SplitQueue::translate(std::string& err) {
  if (!mem_) {
    desc_ = avail_ = used_ = nullptr;
    err = "no memory table";
    return false;
  }
  desc_ = mem_->uva_to_host(desc_uva_, SplitLayout::desc_bytes(num_));
  avail_ = mem_->uva_to_host(avail_uva_, SplitLayout::avail_bytes(num_));
  used_ = mem_->uva_to_host(used_uva_, SplitLayout::used_bytes(num_));
  if (!desc_ || !avail_ || !used_) {
    desc_ = avail_ = used_ = nullptr;
    err = strfmt(
        "ring addresses (desc 0x%llx avail 0x%llx used 0x%llx, size %u) "
        "are not inside guest memory",
        (unsigned long long)desc_uva_, (unsigned long long)avail_uva_,
        (unsigned long long)used_uva_, num_);
    return false;
  }
  // The front-end chooses both the ring addresses and the regions' user
  // addresses, so aligned UVAs can still land on unaligned host pointers.
  if ((reinterpret_cast<uintptr_t>(desc_) & 15) || (reinterpret_cast<uintptr_t>(avail_) & 1) ||
      (reinterpret_cast<uintptr_t>(used_) & 3)) {
    desc_ = avail_ = used_ = nullptr;
    err = "ring addresses map to misaligned host memory";
    return false;
  }
  return true;
}

bool SplitQueue::remap(MemoryTablePtr mem, std::string& err) {
  publish();  // through the old mapping, which is still valid here
  // Chains the device still holds point into the old table's mappings: keep
  // it alive until they are all pushed back.
  if (outstanding_ > 0 && mem_) retired_.push_back(std::move(mem_));
  mem_ = std::move(mem);
  if (!desc_) return true;
  return translate(err);
}

void SplitQueue::detach() {
  publish();
  desc_ = avail_ = used_ = nullptr;
  mem_.reset();
  // Chains still held by the device are reclaimed: their buffers belong to a
  // ring that no longer exists.
  free_.clear();
  for (auto& c : pool_) {
    c->in_use = false;
    free_.push_back(c.get());
  }
  outstanding_ = 0;
  retired_.clear();
}

uint16_t SplitQueue::load_avail_idx() const { return load16(avail_ + 2, __ATOMIC_ACQUIRE); }

bool SplitQueue::pending() const {
  if (!desc_) return false;
  if (avail_seen_ != last_avail_) return true;
  avail_seen_ = load_avail_idx();
  return avail_seen_ != last_avail_;
}

SplitQueue::Pop SplitQueue::broken(std::string& err, std::string what, Chain* c) {
  err = std::move(what);
  if (c) {
    c->in_use = false;
    free_.push_back(c);
    outstanding_--;
    if (outstanding_ == 0 && !retired_.empty()) retired_.clear();
  }
  return Pop::kBroken;
}

bool SplitQueue::add_buffer(Chain* c, uint64_t addr, uint32_t len, bool writable) {
  if (!mem_->map_range(addr, len, c->iov, kMaxIov)) return false;
  if (writable)
    c->writable_len += len;
  else {
    c->readable_len += len;
    c->nreadable = static_cast<unsigned>(c->iov.size());
  }
  return true;
}

SplitQueue::Pop SplitQueue::pop(Chain*& out, std::string& err) {
  // The shared avail index is read again only once the chains it announced
  // are taken: every read of it is a cache miss while the driver writes.
  uint16_t avail_idx = avail_seen_;
  if (avail_idx == last_avail_) avail_idx = avail_seen_ = load_avail_idx();
  if (avail_idx == last_avail_) {
    if (!event_idx_ || !kicks_enabled_) return Pop::kEmpty;
    // Ask for a kick at the next index, then look once more: the driver may
    // have added a chain before it saw the new avail_event.
    store16(used_ + 4 + 8 * num_, last_avail_);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    avail_idx = avail_seen_ = load_avail_idx();
    if (avail_idx == last_avail_) return Pop::kEmpty;
  }
  uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
  if (pending > num_)
    return broken(
        err,
        strfmt("avail index ran away (idx %u, next %u, size %u)", avail_idx, last_avail_, num_),
        nullptr);
  if (free_.empty() || outstanding_ >= num_)
    return broken(err, "more chains outstanding than the queue size", nullptr);

  uint16_t head = load16(avail_ + 4 + 2 * (last_avail_ % num_));
  if (head >= num_)
    return broken(err, strfmt("head index %u out of range (size %u)", head, num_), nullptr);

  Chain* c = free_.back();
  free_.pop_back();
  outstanding_++;
  c->in_use = true;
  c->head = head;
  c->iov.clear();
  c->nreadable = 0;
  c->readable_len = 0;
  c->writable_len = 0;

  const uint8_t* table = desc_;
  uint32_t table_size = num_;
  bool in_indirect = false;
  bool seen_writable = false;
  uint64_t total = 0;
  uint32_t idx = head;
  uint32_t count = 0;

  for (;;) {
    if (++count > table_size)
      return broken(err,
                    strfmt("descriptor chain from head %u loops or exceeds %u "
                           "descriptors",
                           head, table_size),
                    c);
    Desc d = in_indirect ? decode_desc(table + 16ull * idx) : load_desc(table + 16ull * idx);
    if (d.flags & kDescFIndirect) {
      if (!indirect_)
        return broken(err, "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC", c);
      if (in_indirect) return broken(err, "nested indirect descriptor table", c);
      if (count != 1 || (d.flags & kDescFNext))
        return broken(err, "indirect descriptor is not the only one of its chain", c);
      if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > wire::kMaxQueueSize)
        return broken(err, strfmt("indirect table length %u is invalid", d.len), c);
      // Copy the table once into private memory: the guest cannot change it
      // under us, and a table that crosses regions is handled for free.
      indirect_buf_.resize(d.len);
      if (!mem_->read(d.addr, indirect_buf_.data(), d.len))
        return broken(err,
                      strfmt("indirect table at 0x%llx (%u bytes) is not mapped",
                             (unsigned long long)d.addr, d.len),
                      c);
      table = indirect_buf_.data();
      table_size = d.len / 16;
      in_indirect = true;
      idx = 0;
      count = 0;
      continue;
    }
    if (d.len == 0)
      return broken(err, strfmt("zero-length descriptor %u in chain %u", idx, head), c);
    total += d.len;
    if (total > UINT32_MAX) return broken(err, "descriptor chain longer than 4 GiB", c);
    bool writable = d.flags & kDescFWrite;
    if (!writable && seen_writable)
      return broken(err, "device-readable descriptor after a device-writable one", c);
    seen_writable |= writable;
    if (!add_buffer(c, d.addr, d.len, writable))
      return broken(err,
                    strfmt("descriptor buffer 0x%llx+%u is not inside guest memory",
                           (unsigned long long)d.addr, d.len),
                    c);
    if (!(d.flags & kDescFNext)) break;
    if (d.next >= table_size)
      return broken(err, strfmt("next index %u out of range (%u)", d.next, table_size), c);
    idx = d.next;
  }
  c->avail_pos = last_avail_++;
  out = c;
  return Pop::kChain;
}

bool SplitQueue::unpop(Chain* c) {
  // Only the pop at the very end of what was taken can be reversed: every
  // later pop must have been reversed first.
  if (!owns(c) || c->avail_pos != static_cast<uint16_t>(last_avail_ - 1)) return false;
  last_avail_--;
  c->in_use = false;
  free_.push_back(c);
  outstanding_--;
  if (outstanding_ == 0 && !retired_.empty()) retired_.clear();
  return true;
}

bool SplitQueue::put_used(Chain* c, uint32_t written) {
  bool ok = written <= c->writable_len;
  if (!ok) written = static_cast<uint32_t>(c->writable_len);
  uint8_t* elem = used_ + 4 + 8ull * (used_idx_ % num_);
  uint32_t id = c->head;
  __atomic_store_n(reinterpret_cast<uint32_t*>(elem), id, __ATOMIC_RELAXED);
  __atomic_store_n(reinterpret_cast<uint32_t*>(elem + 4), written, __ATOMIC_RELAXED);
  used_idx_++;
  c->in_use = false;
  free_.push_back(c);
  outstanding_--;
  return ok;
}

bool SplitQueue::push(Chain* c, uint32_t written, bool publish_now) {
  bool ok = put_used(c, written);
  if (publish_now) publish();
  if (outstanding_ == 0 && !retired_.empty()) retired_.clear();
  return ok;
}

void SplitQueue::publish() {
  if (!used_ || published_used_ == used_idx_) return;
  store16(used_ + 2, used_idx_, __ATOMIC_RELEASE);
  published_used_ = used_idx_;
}

int SplitQueue::push_many(Chain* const* cs, const uint32_t* written, size_t n) {
  // All or nothing: every chain must be outstanding here, each once. A
  // chain is marked (in_use cleared) as it is checked, so a repeat fails.
  size_t checked = 0;
  for (; checked < n; checked++) {
    if (!owns(cs[checked])) break;
    cs[checked]->in_use = false;
  }
  for (size_t i = 0; i < checked; i++) cs[i]->in_use = true;
  if (checked < n) return -1;
  bool ok = true;
  for (size_t i = 0; i < n; i++) ok &= put_used(cs[i], written[i]);
  // One index update: the driver sees all n entries or none of them.
  publish();
  if (outstanding_ == 0 && !retired_.empty()) retired_.clear();
  return ok ? 0 : 1;
}

bool SplitQueue::need_notify(bool* pushed) {
  publish();
  *pushed = !signalled_valid_ || used_idx_ != signalled_used_;
  if (!*pushed) return false;
  // Order the used-index store before reading the driver's suppression state.
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  bool need;
  if (event_idx_) {
    uint16_t used_event = load16(avail_ + 4 + 2 * num_);
    uint16_t old = signalled_used_;
    need = !signalled_valid_ || static_cast<uint16_t>(used_idx_ - used_event - 1) <
                                    static_cast<uint16_t>(used_idx_ - old);
  } else {
    need = !(load16(avail_) & kAvailFNoInterrupt);
  }
  signalled_used_ = used_idx_;
  signalled_valid_ = true;
  return need;
}

void SplitQueue::set_kicks(bool enable) {
  kicks_enabled_ = enable;
  if (!desc_) return;
  if (event_idx_) {
    if (enable) store16(used_ + 4 + 8 * num_, last_avail_);
  } else {
    store16(used_, enable ? 0 : kUsedFNoNotify);
  }
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

}  // namespace vhu
