// SPDX-License-Identifier: Apache-2.0
// The device side of a split virtqueue over untrusted guest memory.
//
// Every value read from the rings is read once into a local and validated:
// avail index runaway, head and next indices, descriptor loops, nested or
// misplaced indirect tables, zero lengths, unmapped buffers, readable after
// writable, totals over 4 GiB. Any violation marks the ring broken; a broken
// ring is never touched again.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memory/memory.h"

// The public vhu_chain handle is this struct.
struct vhu_chain {
  const void* owner = nullptr;  // the SplitQueue whose pool holds it
  uint16_t head = 0;
  uint16_t avail_pos = 0;  // the avail-ring position it was popped from
  bool in_use = false;
  unsigned nreadable = 0;  // iov[0..nreadable) readable, the rest writable
  size_t readable_len = 0;
  size_t writable_len = 0;
  std::vector<iovec> iov;
};

namespace vhu {

using Chain = vhu_chain;

using wire::kAvailFNoInterrupt;
using wire::kDescFIndirect;
using wire::kDescFNext;
using wire::kDescFWrite;
using wire::kUsedFNoNotify;

struct SplitLayout {
  // Bytes each part needs for a queue of `num` entries (with the event
  // fields, which are always reserved).
  static uint64_t desc_bytes(uint32_t num) { return 16ull * num; }
  static uint64_t avail_bytes(uint32_t num) { return 6ull + 2ull * num; }
  static uint64_t used_bytes(uint32_t num) { return 6ull + 8ull * num; }
};

class SplitQueue {
 public:
  enum class Pop { kChain, kEmpty, kBroken };

  SplitQueue() = default;
  // Chains point back at their queue: it stays where it was made.
  SplitQueue(const SplitQueue&) = delete;
  SplitQueue& operator=(const SplitQueue&) = delete;

  // Maps the ring parts (front-end virtual addresses) through `mem`.
  // `next_avail` is the base set by SET_VRING_BASE; the used index is taken
  // from the ring. Returns false with `err` set when the addresses are not
  // mapped or misaligned.
  bool attach(MemoryTablePtr mem, uint16_t num, uint64_t desc_uva, uint64_t avail_uva,
              uint64_t used_uva, uint16_t next_avail, bool event_idx, bool indirect,
              std::string& err);
  // Re-translates the ring after a memory-table change.
  bool remap(MemoryTablePtr mem, std::string& err);
  void detach();
  bool attached() const { return desc_ != nullptr; }

  const MemoryTable* memory() const { return mem_.get(); }

  Pop pop(Chain*& out, std::string& err);
  // Returns false when `written` exceeded the chain's writable length (it is
  // clamped).
  // With publish false the used element is written but the used index the
  // driver reads is only moved by a later publish() (or a publishing push,
  // push_many or need_notify).
  bool push(Chain* chain, uint32_t written, bool publish = true);
  // Moves the driver-visible used index to everything pushed so far.
  void publish();
  // Chains pushed but not yet visible to the driver.
  uint16_t unpublished() const { return static_cast<uint16_t>(used_idx_ - published_used_); }
  // Pushes n chains and then moves the used index once. Returns -1 (and
  // pushes nothing) when a chain is not outstanding here or appears twice,
  // 1 when some `written` was clamped, else 0.
  int push_many(Chain* const* chains, const uint32_t* written, size_t n);
  // Reverses the most recent pop that is still outstanding; repeated calls
  // undo several pops in reverse order (false for any other chain).
  bool unpop(Chain* chain);
  // True when the driver wants a notification for what was pushed.
  // `pushed` tells whether anything was pushed since the last signal.
  bool need_notify(bool* pushed);
  void set_kicks(bool enable);
  bool pending() const;
  // Whether `c` was popped from this queue and is still outstanding.
  bool owns(const Chain* c) const { return c && c->owner == this && c->in_use; }

  uint16_t next_avail() const { return last_avail_; }
  uint16_t next_used() const { return used_idx_; }
  uint16_t num() const { return num_; }
  size_t outstanding() const { return outstanding_; }

 private:
  bool translate(std::string& err);
  Pop broken(std::string& err, std::string what, Chain* c);
  bool put_used(Chain* c, uint32_t written);
  bool add_buffer(Chain* c, uint64_t addr, uint32_t len, bool writable);
  uint16_t load_avail_idx() const;

  MemoryTablePtr mem_;
  uint16_t num_ = 0;
  uint64_t desc_uva_ = 0, avail_uva_ = 0, used_uva_ = 0;
  uint8_t* desc_ = nullptr;   // 16-byte descriptors
  uint8_t* avail_ = nullptr;  // flags, idx, ring[num], used_event
  uint8_t* used_ = nullptr;   // flags, idx, ring[num]{id,len}, avail_event
  bool event_idx_ = false, indirect_ = false;
  bool kicks_enabled_ = true;
  uint16_t last_avail_ = 0;
  mutable uint16_t avail_seen_ = 0;  // the avail index as last read
  uint16_t used_idx_ = 0;
  uint16_t published_used_ = 0;  // the used index as the driver sees it
  uint16_t signalled_used_ = 0;
  bool signalled_valid_ = false;

  std::vector<std::unique_ptr<Chain>> pool_;
  std::vector<Chain*> free_;
  size_t outstanding_ = 0;
  std::vector<uint8_t> indirect_buf_;
  // Tables replaced while chains were outstanding (their buffers stay
  // mapped until the last of those chains is pushed).
  std::vector<MemoryTablePtr> retired_;
};

}  // namespace vhu
