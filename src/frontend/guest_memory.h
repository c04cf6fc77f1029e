// SPDX-License-Identifier: Apache-2.0
// Guest RAM for the project's own front-end: a set of regions, each backed by
// its own memfd and mapped shared in this process, so that a back-end can map
// the same pages from the fds sent with SET_MEM_TABLE / ADD_MEM_REG.
//
// Like QEMU, the front-end's "user address" of a region is the address the
// region is mapped at in this process, and every region starts at offset 0 of
// its fd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/fd.h"
#include "protocol/wire.h"

namespace vhu::fe {

class GuestMemory {
 public:
  // Where a region sits in guest-physical space.
  struct Range {
    uint64_t gpa;
    uint64_t size;
  };

  struct Region {
    uint64_t gpa = 0;
    uint64_t size = 0;
    UniqueFd fd;
    uint8_t* host = nullptr;
  };

  // Creates one memfd-backed region per range. Ranges must be non-empty and
  // must not overlap. Throws vhu::Error.
  explicit GuestMemory(const std::vector<Range>& ranges);
  ~GuestMemory();

  // Rings and buffers keep pointers into the regions; the object stays put.
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  size_t num_regions() const { return regions_.size(); }
  const Region& region(size_t i) const;
  int fd(size_t i) const { return region(i).fd.get(); }

  // The region's description as sent on the wire (user_addr = host mapping,
  // mmap_offset = 0).
  wire::MemRegion region_msg(size_t i) const;

  // Host pointer to [gpa, gpa + len), which must lie inside one region.
  // Throws vhu::Error(-EFAULT) otherwise.
  uint8_t* host(uint64_t gpa, size_t len) const;
  // Front-end virtual address of `gpa` (what SET_VRING_ADDR carries).
  uint64_t uva(uint64_t gpa) const;
  // Whether [gpa, gpa + len) lies inside one region.
  bool contains(uint64_t gpa, size_t len) const;

  // Hands out `len` bytes of guest memory aligned to `align` (a power of
  // two), zero-filled, moving on to the next region when the current one is
  // full. Nothing is ever given back, except by reset_allocator().
  // Throws vhu::Error(-ENOMEM) when no region has room.
  uint64_t alloc(size_t len, size_t align = 8);
  void reset_allocator();

  // Copy by guest-physical address; the range may span regions that are
  // adjacent in guest-physical space. Throws vhu::Error(-EFAULT) on a hole.
  void read(uint64_t gpa, void* out, size_t len) const;
  void write(uint64_t gpa, const void* data, size_t len);
  void fill(uint64_t gpa, uint8_t byte, size_t len);

 private:
  const Region* find(uint64_t gpa, size_t len) const;
  // Calls fn(host, offset_in_range, n) for each single-region piece.
  template <typename Fn>
  void for_each_piece(uint64_t gpa, size_t len, Fn&& fn) const;

  std::vector<Region> regions_;
  size_t alloc_region_ = 0;  // region the bump allocator works in
  uint64_t alloc_off_ = 0;   // next free offset in that region
};

}  // namespace vhu::fe
