// SPDX-License-Identifier: Apache-2.0
#include "frontend/driver_ring.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/error.h"

namespace vhu::fe {
namespace {

UniqueFd make_eventfd(const char* what) {
  UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd) throw_errno(strfmt("eventfd (%s)", what));
  return fd;
}

// Reads an eventfd; returns whether its counter was non-zero.
bool drain_eventfd(int fd) {
  uint64_t v;
  for (;;) {
    ssize_t n = ::read(fd, &v, sizeof v);
    if (n == static_cast<ssize_t>(sizeof v)) return v != 0;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

// virtio 1.x vring_need_event(): whether moving an index from `old_idx` to
// `new_idx` crossed `event`.
bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

}  // namespace

RingLayout RingLayout::compute(uint32_t size) {
  if (size == 0 || size > kMaxRingSize || (size & (size - 1)) != 0)
    throw Error(-EINVAL,
                strfmt("queue size %u is not a power of two in 1..%u", size, kMaxRingSize));
  RingLayout l;
  l.size = size;
  l.desc_off = 0;
  l.avail_off = l.desc_off + sizeof(VirtqDesc) * size_t{size};
  // flags, idx, ring[size], used_event
  size_t avail_end = l.avail_off + 4 + 2 * size_t{size} + 2;
  l.used_off = align_up(avail_end, 4);
  // flags, idx, ring[size] of {id, len}, avail_event
  l.total = l.used_off + 4 + 8 * size_t{size} + 2;
  return l;
}

DriverRing::DriverRing(GuestMemory& mem, Options opts)
    : mem_(&mem), opts_(opts), layout_(RingLayout::compute(opts.size)) {
  gpa_ = mem.alloc(layout_.total, 4096);
  base_ = mem.host(gpa_, layout_.total);
  kick_ = make_eventfd("kick");
  call_ = make_eventfd("call");
  err_ = make_eventfd("err");
  chains_.resize(layout_.size);
  indirect_.assign(layout_.size, {0, 0});
  init_free_list();
}

void DriverRing::init_free_list() {
  free_.clear();
  free_.reserve(layout_.size);
  // Popped from the back, so descriptor 0 is handed out first.
  for (uint32_t i = layout_.size; i > 0; i--) free_.push_back(static_cast<uint16_t>(i - 1));
  for (auto& c : chains_) c.clear();
  in_flight_ = 0;
}

uint16_t* DriverRing::u16_at(size_t off) const { return reinterpret_cast<uint16_t*>(base_ + off); }

wire::VringAddr DriverRing::addr_msg(uint32_t index) const {
  wire::VringAddr a{};
  a.index = index;
  a.flags = 0;
  a.desc_user_addr = mem_->uva(desc_gpa());
  a.used_user_addr = mem_->uva(used_gpa());
  a.avail_user_addr = mem_->uva(avail_gpa());
  a.log_guest_addr = 0;
  return a;
}

VirtqDesc* DriverRing::desc_table() {
  return reinterpret_cast<VirtqDesc*>(base_ + layout_.desc_off);
}

void DriverRing::write_desc(uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
                            uint16_t next) {
  if (i >= layout_.size)
    throw Error(-EINVAL, strfmt("descriptor %u outside a table of %u", i, layout_.size));
  VirtqDesc d{addr, len, flags, next};
  std::memcpy(desc_table() + i, &d, sizeof d);
}

void DriverRing::publish_avail(uint16_t idx) {
  avail_idx_ = idx;
  // Descriptors and ring entries must be visible before the index.
  std::atomic_ref<uint16_t>(*u16_at(layout_.avail_off + 2)).store(idx, std::memory_order_release);
}

void DriverRing::set_avail_idx(uint16_t idx) { publish_avail(idx); }

void DriverRing::put_avail(uint16_t head) {
  uint32_t slot = avail_idx_ & (layout_.size - 1);
  std::atomic_ref<uint16_t>(*u16_at(layout_.avail_ring_off(slot)))
      .store(head, std::memory_order_relaxed);
  publish_avail(static_cast<uint16_t>(avail_idx_ + 1));
}

void DriverRing::set_avail_flags(uint16_t flags) {
  std::atomic_ref<uint16_t>(*u16_at(layout_.avail_off)).store(flags, std::memory_order_release);
}

void DriverRing::set_used_event(uint16_t v) {
  std::atomic_ref<uint16_t>(*u16_at(layout_.used_event_off())).store(v, std::memory_order_release);
}

uint16_t DriverRing::used_idx() const {
  return std::atomic_ref<uint16_t>(*u16_at(layout_.used_off + 2)).load(std::memory_order_acquire);
}

uint16_t DriverRing::used_flags() const {
  return std::atomic_ref<uint16_t>(*u16_at(layout_.used_off)).load(std::memory_order_acquire);
}

uint16_t DriverRing::avail_event() const {
  return std::atomic_ref<uint16_t>(*u16_at(layout_.avail_event_off()))
      .load(std::memory_order_acquire);
}

int DriverRing::add_chain(const std::vector<Buf>& bufs, bool indirect) {
  if (bufs.empty()) throw Error(-EINVAL, "add_chain: a chain needs at least one buffer");
  bool use_table = indirect || (opts_.use_indirect && bufs.size() > 1);
  size_t ring_descs = use_table ? 1 : bufs.size();
  if (ring_descs > free_.size())
    throw Error(-ENOSPC,
                strfmt("add_chain: %zu descriptors needed, %zu free", ring_descs, free_.size()));
  if (use_table && bufs.size() > kMaxRingSize)
    throw Error(-EINVAL, "add_chain: indirect table too long");

  std::vector<uint16_t> ids(ring_descs);
  for (size_t i = 0; i < ring_descs; i++) {
    ids[i] = free_.back();
    free_.pop_back();
  }
  uint16_t head = ids[0];

  auto flags_of = [](const Buf& b, bool has_next) -> uint16_t {
    return static_cast<uint16_t>((b.writable ? kDescFWrite : 0) | (has_next ? kDescFNext : 0));
  };
  if (use_table) {
    uint32_t n = static_cast<uint32_t>(bufs.size());
    auto& [tgpa, cap] = indirect_[head];
    if (cap < n) {
      tgpa = mem_->alloc(sizeof(VirtqDesc) * size_t{n}, 16);
      cap = n;
    }
    auto* table = reinterpret_cast<VirtqDesc*>(mem_->host(tgpa, sizeof(VirtqDesc) * size_t{n}));
    for (uint32_t i = 0; i < n; i++) {
      bool more = i + 1 < n;
      VirtqDesc d{bufs[i].gpa, bufs[i].len, flags_of(bufs[i], more),
                  static_cast<uint16_t>(more ? i + 1 : 0)};
      std::memcpy(table + i, &d, sizeof d);
    }
    write_desc(head, tgpa, static_cast<uint32_t>(sizeof(VirtqDesc) * n), kDescFIndirect, 0);
  } else {
    for (size_t i = 0; i < ids.size(); i++) {
      bool more = i + 1 < ids.size();
      write_desc(ids[i], bufs[i].gpa, bufs[i].len, flags_of(bufs[i], more), more ? ids[i + 1] : 0);
    }
  }
  chains_[head] = std::move(ids);
  in_flight_++;
  put_avail(head);
  return head;
}

bool DriverRing::kick() {
  // The avail index store must be ordered before reading the device's
  // suppression state.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool need;
  if (opts_.use_event_idx) {
    need = need_event(avail_event(), avail_idx_, kicked_avail_);
  } else {
    need = (used_flags() & kUsedFNoNotify) == 0;
  }
  kicked_avail_ = avail_idx_;
  if (need) force_kick();
  return need;
}

void DriverRing::force_kick() {
  uint64_t one = 1;
  for (;;) {
    ssize_t n = ::write(kick_.get(), &one, sizeof one);
    if (n == static_cast<ssize_t>(sizeof one)) return;
    if (n < 0 && errno == EINTR) continue;
    // EAGAIN: the counter is saturated, so the device has a kick pending.
    if (n < 0 && errno == EAGAIN) return;
    throw_errno("write kick eventfd");
  }
}

bool DriverRing::has_used() const { return used_idx() != last_used_; }

std::optional<std::pair<uint32_t, uint32_t>> DriverRing::get_used() {
  if (used_idx() == last_used_) return std::nullopt;  // acquire pairs with the device
  uint32_t slot = last_used_ & (layout_.size - 1);
  uint32_t elem[2];
  std::memcpy(elem, base_ + layout_.used_elem_off(slot), sizeof elem);
  last_used_++;
  uint32_t id = elem[0], len = elem[1];
  if (id < layout_.size && !chains_[id].empty()) {
    for (uint16_t d : chains_[id]) free_.push_back(d);
    chains_[id].clear();
    in_flight_--;
  }
  return std::make_pair(id, len);
}

bool DriverRing::consume_call() {
  bool got = drain_eventfd(call_.get());
  if (got) notifications_++;
  return got;
}

bool DriverRing::consume_err() { return drain_eventfd(err_.get()); }

bool DriverRing::wait_used(int timeout_ms) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (opts_.use_event_idx) set_used_event(last_used_);
  for (;;) {
    // used_event must be visible before the used index is checked again.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (has_used()) {
      consume_call();  // count a signal that came with it
      return true;
    }
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{call_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno != EINTR) throw_errno("poll call eventfd");
    if (rc > 0) consume_call();
  }
}

void DriverRing::reset() {
  std::memset(base_, 0, layout_.total);
  avail_idx_ = 0;
  kicked_avail_ = 0;
  last_used_ = 0;
  init_free_list();
  drain_eventfd(kick_.get());
  drain_eventfd(call_.get());
  drain_eventfd(err_.get());
}

}  // namespace vhu::fe
