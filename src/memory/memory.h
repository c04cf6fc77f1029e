// SPDX-License-Identifier: Apache-2.0
// Guest memory: regions mapped from the front-end's fds, and translation of
// guest-physical (GPA) and front-end virtual (UVA) addresses to pointers in
// this process, always with bounds checks.
//
// A MemoryTable is immutable once built; changes produce a new table that
// shares the unchanged regions. Queues hold a shared_ptr to the table they
// use, so a mapping stays valid while any worker may still touch it.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/fd.h"
#include "protocol/wire.h"

namespace vhu {

class Region {
 public:
  // Maps `size` bytes at `mmap_offset` of `fd` (checked against the file's
  // size). Throws vhu::Error on invalid geometry or mmap failure.
  Region(const wire::MemRegion& desc, UniqueFd fd);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  uint64_t gpa() const { return gpa_; }
  uint64_t size() const { return size_; }
  uint64_t uva() const { return uva_; }
  uint64_t mmap_offset() const { return mmap_offset_; }
  uint8_t* host() const { return host_; }

 private:
  uint64_t gpa_, size_, uva_, mmap_offset_;
  void* map_base_ = nullptr;
  size_t map_len_ = 0;
  uint8_t* host_ = nullptr;
  UniqueFd fd_;
};

class MemoryTable {
 public:
  MemoryTable() = default;
  explicit MemoryTable(std::vector<std::shared_ptr<Region>> regions);

  size_t size() const { return by_gpa_.size(); }
  const std::vector<std::shared_ptr<Region>>& regions() const { return by_gpa_; }

  // Host pointer for [gpa, gpa+len) if it lies inside ONE region, else null.
  uint8_t* gpa_to_host(uint64_t gpa, uint64_t len) const;
  // Host pointer for [uva, uva+len) inside one region (ring addresses).
  uint8_t* uva_to_host(uint64_t uva, uint64_t len) const;
  // Pointer at `gpa` and the contiguous bytes available from there (0 when
  // unmapped).
  uint8_t* gpa_span(uint64_t gpa, uint64_t* avail) const;

  // Appends iovecs covering [gpa, gpa+len), splitting at region boundaries.
  // Returns false (nothing appended) when any byte is unmapped, len is 0,
  // the range wraps, or more than `max_iov` iovecs would be needed in total.
  bool map_range(uint64_t gpa, uint64_t len, std::vector<iovec>& out, size_t max_iov) const;

  // Copies guest memory; false if any byte is unmapped. A copy that fails
  // part-way has already copied the bytes before the unmapped gap.
  bool read(uint64_t gpa, void* buf, size_t len) const;
  bool write(uint64_t gpa, const void* buf, size_t len) const;

  // Validates that `r` may join this table: non-empty, no address overflow,
  // no GPA or UVA overlap. Throws vhu::Error(-EINVAL) otherwise.
  void check_new_region(const wire::MemRegion& r) const;

 private:
  const Region* find_gpa(uint64_t gpa) const;
  std::vector<std::shared_ptr<Region>> by_gpa_;  // sorted by gpa
};

using MemoryTablePtr = std::shared_ptr<const MemoryTable>;

}  // namespace vhu
