// SPDX-License-Identifier: Apache-2.0
// The driver side of a split virtqueue (virtio 1.x, 2.7) living in
// GuestMemory: what a guest's virtio driver does, for tests and vhu-check.
// Besides the well-behaved API (add_chain / kick / get_used) it offers raw
// access to the ring so tests can hand a back-end hostile rings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "frontend/guest_memory.h"
#include "protocol/wire.h"

namespace vhu::fe {

// A descriptor as laid out in guest memory (little-endian hosts only).
struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
using virtq_desc = VirtqDesc;
static_assert(sizeof(VirtqDesc) == 16);

using wire::kAvailFNoInterrupt;
using wire::kDescFIndirect;
using wire::kDescFNext;
using wire::kDescFWrite;
using wire::kUsedFNoNotify;
inline constexpr uint32_t kMaxRingSize = 32768;

// Offsets of the three parts of a split ring inside one block of guest
// memory: descriptor table at 0 (16-byte aligned), driver area (avail,
// including used_event) right after it, device area (used, including
// avail_event) at the next 4-byte boundary.
struct RingLayout {
  uint32_t size = 0;
  size_t desc_off = 0;
  size_t avail_off = 0;
  size_t used_off = 0;
  size_t total = 0;  // bytes of the whole block

  static RingLayout compute(uint32_t size);
  size_t avail_ring_off(uint32_t i) const { return avail_off + 4 + 2 * size_t{i}; }
  size_t used_event_off() const { return avail_ring_off(size); }
  size_t used_elem_off(uint32_t i) const { return used_off + 4 + 8 * size_t{i}; }
  size_t avail_event_off() const { return used_elem_off(size); }
};

class DriverRing {
 public:
  struct Options {
    uint32_t size = 256;         // power of two, 1..32768
    bool use_event_idx = false;  // VIRTIO_F_RING_EVENT_IDX negotiated
    // Put every chain of more than one buffer into an indirect table.
    bool use_indirect = false;
  };
  struct Buf {
    uint64_t gpa;
    uint32_t len;
    bool writable;
  };

  // Allocates the ring from `mem`, which must outlive the ring. Creates the
  // kick, call and err eventfds. Throws vhu::Error.
  DriverRing(GuestMemory& mem, Options opts);
  DriverRing(DriverRing&&) noexcept = default;
  DriverRing& operator=(DriverRing&&) noexcept = default;
  DriverRing(const DriverRing&) = delete;
  DriverRing& operator=(const DriverRing&) = delete;

  uint32_t size() const { return layout_.size; }
  const Options& options() const { return opts_; }
  const RingLayout& layout() const { return layout_; }
  GuestMemory& memory() const { return *mem_; }
  uint64_t desc_gpa() const { return gpa_ + layout_.desc_off; }
  uint64_t avail_gpa() const { return gpa_ + layout_.avail_off; }
  uint64_t used_gpa() const { return gpa_ + layout_.used_off; }

  // SET_VRING_ADDR payload with front-end virtual addresses.
  wire::VringAddr addr_msg(uint32_t index) const;

  int kick_fd() const { return kick_.get(); }
  int call_fd() const { return call_.get(); }
  int err_fd() const { return err_.get(); }

  // Makes a chain of `bufs` available and returns its head. With `indirect`
  // (or the use_indirect option and more than one buffer) the buffers go
  // into an indirect table and the chain takes one ring descriptor.
  // Throws vhu::Error(-ENOSPC) when not enough descriptors are free.
  int add_chain(const std::vector<Buf>& bufs, bool indirect = false);
  // Signals the kick eventfd unless the device suppressed notifications
  // (avail_event with EVENT_IDX, used->flags NO_NOTIFY otherwise). Returns
  // whether it kicked.
  bool kick();
  // Signals the kick eventfd unconditionally.
  void force_kick();

  // The next used element {id, len}, if the device published one. Frees the
  // chain's descriptors when `id` is the head of a chain in flight.
  std::optional<std::pair<uint32_t, uint32_t>> get_used();
  bool has_used() const;
  // Waits on the call eventfd until a used element is available. Returns
  // false on timeout with nothing used. With EVENT_IDX it first sets
  // used_event to ask for an interrupt at the next used element (only here:
  // a driver that does not wait leaves used_event alone).
  bool wait_used(int timeout_ms);
  // Reads the call / err eventfd; returns whether it had been signalled.
  bool consume_call();
  bool consume_err();
  // Call-eventfd signals seen so far by wait_used() / consume_call().
  uint64_t notifications() const { return notifications_; }

  size_t free_descriptors() const { return free_.size(); }
  // Chains made available with add_chain() and not yet used.
  size_t in_flight() const { return in_flight_; }

  // ---- Raw access (no validation, for hostile tests) ----
  VirtqDesc* desc_table();
  void write_desc(uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
  // The driver's avail index (what it last published).
  uint16_t avail_idx() const { return avail_idx_; }
  // Publishes `idx` as avail->idx (release store).
  void set_avail_idx(uint16_t idx);
  // Puts `head` in the next avail slot and publishes it.
  void put_avail(uint16_t head);
  void set_avail_flags(uint16_t flags);
  void set_used_event(uint16_t v);
  // Device-written fields (acquire loads).
  uint16_t used_idx() const;
  uint16_t used_flags() const;
  uint16_t avail_event() const;
  // Index of the next used element get_used() will read.
  uint16_t last_used_idx() const { return last_used_; }

  // Zeroes the ring and forgets every chain, for reuse after the back-end
  // was reset. Drains the eventfds.
  void reset();

 private:
  uint16_t* u16_at(size_t off) const;
  void publish_avail(uint16_t idx);
  void init_free_list();

  GuestMemory* mem_;
  Options opts_;
  RingLayout layout_;
  uint64_t gpa_ = 0;         // start of the ring block
  uint8_t* base_ = nullptr;  // host address of the ring block
  UniqueFd kick_, call_, err_;

  uint16_t avail_idx_ = 0;
  uint16_t kicked_avail_ = 0;  // avail index at the last kick()
  uint16_t last_used_ = 0;
  std::vector<uint16_t> free_;  // free descriptor ids (a stack)
  // Per head: the ring descriptors its chain occupies (empty: not in flight).
  std::vector<std::vector<uint16_t>> chains_;
  // Per head: a reusable indirect table {gpa, capacity in entries}.
  std::vector<std::pair<uint64_t, uint32_t>> indirect_;
  size_t in_flight_ = 0;
  uint64_t notifications_ = 0;
};

}  // namespace vhu::fe
