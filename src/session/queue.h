// SPDX-License-Identifier: Apache-2.0
// One virtqueue of a device: what the front-end told us about it (size,
// addresses, base, kick/call/err fds), its started/enabled/broken state,
// and the split-ring engine over guest memory.
//
// Threading: every member is owned by the queue's loop thread (its worker).
// The control thread changes a queue only through EventLoop::run_sync() on
// that loop, so the data path needs no lock. The flags read by other
// threads (started/enabled/broken) and the counters are atomics.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/fd.h"
#include "common/log.h"
#include "loop/loop.h"
#include "protocol/wire.h"
#include "vhostuser/vhostuser.h"
#include "vring/split.h"

namespace vhu {
class Daemon;
}

struct vhu_vring {
  struct Stats {
    std::atomic<uint64_t> chains{0}, bytes_read{0}, bytes_written{0}, notifications{0},
        suppressed{0}, kicks{0}, errors{0};
    void clear();
  };

  vhu_vring(vhu::Daemon& daemon, uint16_t index, vhu::EventLoop& loop);
  ~vhu_vring();

  // ---- protocol state (owner loop thread) ----
  void set_num(uint16_t num) { num_ = num; }
  uint16_t num() const { return num_; }
  void set_addr(const vhu::wire::VringAddr& a) {
    addr_ = a;
    addr_set_ = true;
  }
  bool addr_set() const { return addr_set_; }
  const vhu::wire::VringAddr& addr() const { return addr_; }
  void set_base(uint16_t base) { base_ = base; }
  // A started ring signals the new call fd once: completions made before it
  // arrived (QEMU sends the kick fd first) must not lose their interrupt.
  void set_call(vhu::UniqueFd fd);
  void set_err(vhu::UniqueFd fd) { err_fd_ = std::move(fd); }

  // Installs the kick fd (or NOFD polling) and starts the queue. Throws
  // vhu::Error when the ring cannot be mapped.
  void set_kick_and_start(vhu::UniqueFd fd, bool nofd, vhu::MemoryTablePtr mem, uint64_t features);
  // Stops processing (GET_VRING_BASE); returns the next avail index.
  uint16_t stop();
  void set_enabled(bool enabled);
  // New guest memory; a started ring is re-translated (broken if it can't).
  void set_memory(vhu::MemoryTablePtr mem);
  // Back to the initial state: stopped, disabled, no fds, no memory.
  void reset();

  // ---- data path (owner loop thread) ----
  int pop(vhu_chain** out);
  int push(vhu_chain* chain, uint32_t written);
  int push_many(vhu_chain* const* chains, const uint32_t* written, unsigned n);
  int unpop(vhu_chain* chain);
  int notify();
  int set_kicks(bool enable);
  // Busy-poll step: calls the handler when chains are pending. Returns
  // whether the queue is started (worth polling).
  bool poll();
  bool pending() const { return started_ && !broken_ && sq_.pending(); }
  const vhu::MemoryTable* memory() const { return mem_.get(); }

  uint16_t index() const { return index_; }
  bool started() const { return started_.load(std::memory_order_relaxed); }
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  bool broken() const { return broken_.load(std::memory_order_relaxed); }
  vhu::Daemon& daemon() { return daemon_; }
  vhu::EventLoop& loop() { return loop_; }
  const Stats& stats() const { return stats_; }

 private:
  void on_kick();
  void run_handler();
  void schedule_handler();
  void mark_broken(const std::string& why);

  vhu::Daemon& daemon_;
  const uint16_t index_;
  vhu::EventLoop& loop_;

  uint16_t num_ = 0;
  vhu::wire::VringAddr addr_{};
  bool addr_set_ = false;
  uint16_t base_ = 0;
  vhu::UniqueFd kick_fd_, call_fd_, err_fd_;
  std::unique_ptr<vhu::Watch> kick_watch_;  // kick fd, or a poll timer
  std::unique_ptr<vhu::Watch> run_watch_;   // deferred handler call
  vhu::MemoryTablePtr mem_;
  vhu::SplitQueue sq_;

  std::atomic<bool> started_{false}, enabled_{false}, broken_{false};
  Stats stats_;
};
