// SPDX-License-Identifier: Apache-2.0
#include "memory/memory.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace vhu {
namespace {

bool add_overflows(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r);
}

}  // namespace

Region::Region(const wire::MemRegion& d, UniqueFd fd)
    : gpa_(d.guest_phys_addr),
      size_(d.memory_size),
      uva_(d.user_addr),
      mmap_offset_(d.mmap_offset),
      fd_(std::move(fd)) {
  if (!fd_) throw Error(-EINVAL, "memory region without a file descriptor");
  if (size_ == 0) throw Error(-EINVAL, "memory region of size 0");
  uint64_t end;
  if (__builtin_add_overflow(mmap_offset_, size_, &end) || end > SIZE_MAX ||
      add_overflows(gpa_, size_ - 1) || add_overflows(uva_, size_ - 1))
    throw Error(-EINVAL, strfmt("memory region geometry overflows (gpa 0x%llx size "
                                "0x%llx offset 0x%llx)",
                                (unsigned long long)gpa_, (unsigned long long)size_,
                                (unsigned long long)mmap_offset_));
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) throw_errno("fstat of memory region fd");
  // A regular file or memfd must really be that large, or touching the tail
  // would raise SIGBUS. Other kinds (hugetlbfs reports its size too; devices
  // report 0) are only checked when they report a size.
  if ((S_ISREG(st.st_mode) || st.st_size > 0) && static_cast<uint64_t>(st.st_size) < end)
    throw Error(-EINVAL, strfmt("memory region needs %llu bytes of its file but "
                                "the file has %lld",
                                (unsigned long long)end, (long long)st.st_size));
  map_len_ = static_cast<size_t>(end);
  void* p =
      ::mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd_.get(), 0);
  if (p == MAP_FAILED) throw_errno("mmap of guest memory region");
  map_base_ = p;
  host_ = static_cast<uint8_t*>(p) + mmap_offset_;
  // The mapping keeps the memory alive; the fd is no longer needed.
  fd_.reset();
}

Region::~Region() {
  if (map_base_) ::munmap(map_base_, map_len_);
}

MemoryTable::MemoryTable(std::vector<std::shared_ptr<Region>> regions)
    : by_gpa_(std::move(regions)) {
  std::sort(by_gpa_.begin(), by_gpa_.end(),
            [](const auto& a, const auto& b) { return a->gpa() < b->gpa(); });
}

void MemoryTable::check_new_region(const wire::MemRegion& r) const {
  if (r.memory_size == 0) throw Error(-EINVAL, "memory region of size 0");
  if (add_overflows(r.guest_phys_addr, r.memory_size - 1) ||
      add_overflows(r.user_addr, r.memory_size - 1) || add_overflows(r.mmap_offset, r.memory_size))
    throw Error(-EINVAL, "memory region address range overflows");
  uint64_t g0 = r.guest_phys_addr, g1 = r.guest_phys_addr + (r.memory_size - 1);
  uint64_t u0 = r.user_addr, u1 = r.user_addr + (r.memory_size - 1);
  for (const auto& o : by_gpa_) {
    uint64_t og1 = o->gpa() + (o->size() - 1), ou1 = o->uva() + (o->size() - 1);
    if (g0 <= og1 && o->gpa() <= g1)
      throw Error(-EINVAL, strfmt("memory region at gpa 0x%llx overlaps the one at 0x%llx",
                                  (unsigned long long)g0, (unsigned long long)o->gpa()));
    if (u0 <= ou1 && o->uva() <= u1)
      throw Error(-EINVAL, strfmt("memory region at uva 0x%llx overlaps the one at 0x%llx",
                                  (unsigned long long)u0, (unsigned long long)o->uva()));
  }
}

const Region* MemoryTable::find_gpa(uint64_t gpa) const {
  // Last region whose start is <= gpa.
  auto it = std::upper_bound(by_gpa_.begin(), by_gpa_.end(), gpa,
                             [](uint64_t g, const auto& r) { return g < r->gpa(); });
  if (it == by_gpa_.begin()) return nullptr;
  const Region* r = (it - 1)->get();
  if (gpa - r->gpa() >= r->size()) return nullptr;
  return r;
}

uint8_t* MemoryTable::gpa_span(uint64_t gpa, uint64_t* avail) const {
  const Region* r = find_gpa(gpa);
  if (!r) {
    *avail = 0;
    return nullptr;
  }
  uint64_t off = gpa - r->gpa();
  *avail = r->size() - off;
  return r->host() + off;
}

uint8_t* MemoryTable::gpa_to_host(uint64_t gpa, uint64_t len) const {
  uint64_t avail;
  uint8_t* p = gpa_span(gpa, &avail);
  if (!p || len > avail) return nullptr;
  return p;
}

uint8_t* MemoryTable::uva_to_host(uint64_t uva, uint64_t len) const {
  for (const auto& r : by_gpa_) {
    if (uva >= r->uva() && uva - r->uva() < r->size()) {
      uint64_t off = uva - r->uva();
      if (len > r->size() - off) return nullptr;
      return r->host() + off;
    }
  }
  return nullptr;
}

bool MemoryTable::map_range(uint64_t gpa, uint64_t len, std::vector<iovec>& out,
                            size_t max_iov) const {
  if (len == 0 || add_overflows(gpa, len - 1)) return false;
  size_t start = out.size();
  while (len > 0) {
    uint64_t avail;
    uint8_t* p = gpa_span(gpa, &avail);
    if (!p || out.size() >= max_iov) {
      out.resize(start);
      return false;
    }
    uint64_t n = std::min(avail, len);
    out.push_back(iovec{p, static_cast<size_t>(n)});
    gpa += n;
    len -= n;
  }
  return true;
}

bool MemoryTable::read(uint64_t gpa, void* buf, size_t len) const {
  auto* dst = static_cast<uint8_t*>(buf);
  if (len && add_overflows(gpa, len - 1)) return false;
  while (len > 0) {
    uint64_t avail;
    uint8_t* p = gpa_span(gpa, &avail);
    if (!p) return false;
    size_t n = static_cast<size_t>(std::min<uint64_t>(avail, len));
    std::memcpy(dst, p, n);
    dst += n;
    gpa += n;
    len -= n;
  }
  return true;
}

bool MemoryTable::write(uint64_t gpa, const void* buf, size_t len) const {
  auto* src = static_cast<const uint8_t*>(buf);
  if (len && add_overflows(gpa, len - 1)) return false;
  while (len > 0) {
    uint64_t avail;
    uint8_t* p = gpa_span(gpa, &avail);
    if (!p) return false;
    size_t n = static_cast<size_t>(std::min<uint64_t>(avail, len));
    std::memcpy(p, src, n);
    src += n;
    gpa += n;
    len -= n;
  }
  return true;
}

}  // namespace vhu
