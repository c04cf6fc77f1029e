// SPDX-License-Identifier: Apache-2.0
#include "frontend/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace vhu::fe {

GuestMemory::GuestMemory(const std::vector<Range>& ranges) {
  if (ranges.empty()) throw Error(-EINVAL, "guest memory needs at least one region");
  std::vector<Range> sorted = ranges;
  std::sort(sorted.begin(), sorted.end(),
            [](const Range& a, const Range& b) { return a.gpa < b.gpa; });
  for (size_t i = 0; i < sorted.size(); i++) {
    const Range& r = sorted[i];
    if (r.size == 0) throw Error(-EINVAL, "guest memory region of size 0");
    if (r.gpa + r.size < r.gpa)
      throw Error(-EINVAL, strfmt("guest memory region at 0x%llx wraps around",
                                  static_cast<unsigned long long>(r.gpa)));
    if (i > 0 && sorted[i - 1].gpa + sorted[i - 1].size > r.gpa)
      throw Error(-EINVAL, strfmt("guest memory regions at 0x%llx and 0x%llx overlap",
                                  static_cast<unsigned long long>(sorted[i - 1].gpa),
                                  static_cast<unsigned long long>(r.gpa)));
  }

  regions_.reserve(ranges.size());
  try {
    // Keep the caller's order: region i on the wire is ranges[i].
    for (const Range& r : ranges) {
      Region reg;
      reg.gpa = r.gpa;
      reg.size = r.size;
      reg.fd.reset(::memfd_create("vhu-guest-ram", MFD_CLOEXEC));
      if (!reg.fd) throw_errno("memfd_create");
      if (::ftruncate(reg.fd.get(), static_cast<off_t>(r.size)) != 0)
        throw_errno(strfmt("ftruncate guest region to %llu bytes",
                           static_cast<unsigned long long>(r.size)));
      void* p = ::mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, reg.fd.get(), 0);
      if (p == MAP_FAILED) throw_errno("mmap guest region");
      reg.host = static_cast<uint8_t*>(p);
      regions_.push_back(std::move(reg));
    }
  } catch (...) {
    for (Region& reg : regions_) ::munmap(reg.host, reg.size);
    throw;
  }
}

GuestMemory::~GuestMemory() {
  for (Region& reg : regions_) ::munmap(reg.host, reg.size);
}

const GuestMemory::Region& GuestMemory::region(size_t i) const {
  if (i >= regions_.size())
    throw Error(-EINVAL, strfmt("no guest memory region %zu (have %zu)", i, regions_.size()));
  return regions_[i];
}

wire::MemRegion GuestMemory::region_msg(size_t i) const {
  const Region& r = region(i);
  wire::MemRegion m{};
  m.guest_phys_addr = r.gpa;
  m.memory_size = r.size;
  m.user_addr = reinterpret_cast<uintptr_t>(r.host);
  m.mmap_offset = 0;
  return m;
}

const GuestMemory::Region* GuestMemory::find(uint64_t gpa, size_t len) const {
  for (const Region& r : regions_) {
    if (gpa < r.gpa) continue;
    uint64_t off = gpa - r.gpa;
    if (off < r.size && len <= r.size - off) return &r;
  }
  return nullptr;
}

bool GuestMemory::contains(uint64_t gpa, size_t len) const { return find(gpa, len) != nullptr; }

uint8_t* GuestMemory::host(uint64_t gpa, size_t len) const {
  const Region* r = find(gpa, len);
  if (!r)
    throw Error(-EFAULT, strfmt("guest range [0x%llx, +%zu) is not inside one region",
                                static_cast<unsigned long long>(gpa), len));
  return r->host + (gpa - r->gpa);
}

uint64_t GuestMemory::uva(uint64_t gpa) const { return reinterpret_cast<uintptr_t>(host(gpa, 1)); }

uint64_t GuestMemory::alloc(size_t len, size_t align) {
  if (align == 0 || (align & (align - 1)) != 0)
    throw Error(-EINVAL, strfmt("alignment %zu is not a power of two", align));
  if (len == 0) len = 1;
  for (; alloc_region_ < regions_.size(); alloc_region_++, alloc_off_ = 0) {
    const Region& r = regions_[alloc_region_];
    uint64_t start = (r.gpa + alloc_off_ + align - 1) & ~(uint64_t{align} - 1);
    uint64_t off = start - r.gpa;
    if (off <= r.size && len <= r.size - off) {
      alloc_off_ = off + len;
      std::memset(r.host + off, 0, len);
      return start;
    }
  }
  throw Error(-ENOMEM, strfmt("guest memory exhausted allocating %zu bytes", len));
}

void GuestMemory::reset_allocator() {
  alloc_region_ = 0;
  alloc_off_ = 0;
}

template <typename Fn>
void GuestMemory::for_each_piece(uint64_t gpa, size_t len, Fn&& fn) const {
  size_t done = 0;
  while (done < len) {
    uint64_t at = gpa + done;
    const Region* r = find(at, 1);
    if (!r || at < gpa)
      throw Error(-EFAULT, strfmt("guest range [0x%llx, +%zu) is not mapped at 0x%llx",
                                  static_cast<unsigned long long>(gpa), len,
                                  static_cast<unsigned long long>(at)));
    uint64_t off = at - r->gpa;
    size_t n = static_cast<size_t>(std::min<uint64_t>(r->size - off, len - done));
    fn(r->host + off, done, n);
    done += n;
  }
}

void GuestMemory::read(uint64_t gpa, void* out, size_t len) const {
  auto* dst = static_cast<uint8_t*>(out);
  for_each_piece(gpa, len, [&](uint8_t* p, size_t at, size_t n) { std::memcpy(dst + at, p, n); });
}

void GuestMemory::write(uint64_t gpa, const void* data, size_t len) {
  auto* src = static_cast<const uint8_t*>(data);
  for_each_piece(gpa, len, [&](uint8_t* p, size_t at, size_t n) { std::memcpy(p, src + at, n); });
}

void GuestMemory::fill(uint64_t gpa, uint8_t byte, size_t len) {
  for_each_piece(gpa, len, [&](uint8_t* p, size_t, size_t n) { std::memset(p, byte, n); });
}

}  // namespace vhu::fe
