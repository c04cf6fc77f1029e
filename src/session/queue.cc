// SPDX-License-Identifier: Apache-2.0
#include "session/queue.h"

#include <sys/eventfd.h>
#include <unistd.h>
#include <cstring>

#include "common/error.h"
#include "daemon/daemon.h"

using vhu::Error;

namespace {

template <typename T>
void bump(std::atomic<T>& a, T by = 1) {
  // Single writer (the owner thread): no atomic read-modify-write needed.
  a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// Chains pushed before the used index is moved even without a notify.
constexpr uint16_t kPublishBatch = 32;

// Period of the poll timer for a queue whose kick was given as NOFD.
constexpr uint64_t kNoFdPollUs = 1000;

}  // namespace

void vhu_vring::Stats::clear() {
  for (auto* a :
       {&chains, &bytes_read, &bytes_written, &notifications, &suppressed, &kicks, &errors})
    a->store(0, std::memory_order_relaxed);
}

vhu_vring::vhu_vring(vhu::Daemon& daemon, uint16_t index, vhu::EventLoop& loop)
    : daemon_(daemon), index_(index), loop_(loop) {}

vhu_vring::~vhu_vring() {
  kick_watch_.reset();
  run_watch_.reset();
}

void vhu_vring::set_kick_and_start(vhu::UniqueFd fd, bool nofd, vhu::MemoryTablePtr mem,
                                   uint64_t features) {
  if (started_) stop();
  kick_watch_.reset();
  kick_fd_ = std::move(fd);
  if (num_ == 0) throw Error(-EINVAL, vhu::strfmt("queue %u: kick before SET_VRING_NUM", index_));
  if (!addr_set_) throw Error(-EINVAL, vhu::strfmt("queue %u: kick before SET_VRING_ADDR", index_));
  if (!mem) throw Error(-EINVAL, vhu::strfmt("queue %u: kick before any memory table", index_));
  std::string err;
  mem_ = std::move(mem);
  if (!sq_.attach(mem_, num_, addr_.desc_user_addr, addr_.avail_user_addr, addr_.used_user_addr,
                  base_, features & vhu::wire::bit(vhu::wire::kFeatRingEventIdx),
                  features & vhu::wire::bit(vhu::wire::kFeatRingIndirectDesc), err))
    throw Error(-EINVAL, vhu::strfmt("queue %u: %s", index_, err.c_str()));
  if (!run_watch_)
    run_watch_ = std::make_unique<vhu::Watch>(loop_, -1, 0, [this](short) { run_handler(); });
  if (nofd) {
    kick_watch_ = std::make_unique<vhu::Watch>(
        loop_, -1, 0, [this](short) { run_handler(); }, kNoFdPollUs);
  } else {
    kick_watch_ =
        std::make_unique<vhu::Watch>(loop_, kick_fd_.get(), EV_READ, [this](short) { on_kick(); });
  }
  broken_ = false;
  started_ = true;
  // A polled queue needs no kicks: ask the driver not to send them.
  if (daemon_.polling()) sq_.set_kicks(false);
  daemon_.log().log(VHU_LOG_DEBUG, "queue %u started (size %u, base %u)", index_, num_, base_);
  const auto& ops = daemon_.ops();
  if (ops.queue_started) ops.queue_started(this, daemon_.user_data());
  // The driver may have made buffers available before the kick fd arrived.
  schedule_handler();
}

uint16_t vhu_vring::stop() {
  if (started_) {
    const auto& ops = daemon_.ops();
    if (ops.queue_stopped) ops.queue_stopped(this, daemon_.user_data());
    base_ = sq_.next_avail();
    kick_watch_.reset();
    kick_fd_.reset();
    sq_.detach();
    started_ = false;
    auto ld = [](const std::atomic<uint64_t>& a) {
      return static_cast<unsigned long long>(a.load(std::memory_order_relaxed));
    };
    daemon_.log().log(VHU_LOG_INFO,
                      "queue %u stopped at avail index %u: %llu chains, %llu bytes read, %llu "
                      "written, %llu notifications (%llu suppressed), %llu kicks",
                      index_, base_, ld(stats_.chains), ld(stats_.bytes_read),
                      ld(stats_.bytes_written), ld(stats_.notifications), ld(stats_.suppressed),
                      ld(stats_.kicks));
  }
  return base_;
}

void vhu_vring::set_call(vhu::UniqueFd fd) {
  call_fd_ = std::move(fd);
  if (call_fd_ && started_) {
    uint64_t one = 1;
    (void)!::write(call_fd_.get(), &one, sizeof one);
  }
}

void vhu_vring::set_enabled(bool enabled) {
  enabled_ = enabled;
  if (enabled) schedule_handler();
}

void vhu_vring::set_memory(vhu::MemoryTablePtr mem) {
  mem_ = mem;
  if (!started_) {
    sq_.detach();
    return;
  }
  std::string err;
  if (!sq_.remap(std::move(mem), err)) mark_broken(err);
}

void vhu_vring::reset() {
  stop();
  kick_watch_.reset();
  run_watch_.reset();
  kick_fd_.reset();
  call_fd_.reset();
  err_fd_.reset();
  mem_.reset();
  sq_.detach();
  num_ = 0;
  addr_ = {};
  addr_set_ = false;
  base_ = 0;
  enabled_ = false;
  broken_ = false;
  stats_.clear();
}

void vhu_vring::schedule_handler() {
  if (started_ && enabled_ && !broken_ && run_watch_) run_watch_->trigger();
}

void vhu_vring::on_kick() {
  uint64_t v;
  ssize_t n;
  do {
    n = ::read(kick_fd_.get(), &v, sizeof v);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) {
    // A kick fd that cannot be read would spin the loop; stop watching it.
    daemon_.log().log(VHU_LOG_ERROR, "queue %u: reading the kick fd failed: %s", index_,
                      strerror(errno));
    kick_watch_.reset();
    return;
  }
  bump(stats_.kicks);
  run_handler();
}

void vhu_vring::run_handler() {
  // Kicks that arrive while the queue is disabled are remembered by the
  // ring itself: enabling schedules a handler call.
  if (!started_ || !enabled_ || broken_) return;
  daemon_.ops().handle_queue(this, daemon_.user_data());
  if (started_ && !broken_) sq_.publish();
}

void vhu_vring::mark_broken(const std::string& why) {
  if (broken_) return;
  broken_ = true;
  bump(stats_.errors);
  daemon_.log().log(VHU_LOG_ERROR, "queue %u is broken: %s", index_, why.c_str());
  if (err_fd_) {
    uint64_t one = 1;
    (void)!::write(err_fd_.get(), &one, sizeof one);
  }
  daemon_.note_queue_broken();
}

int vhu_vring::pop(vhu_chain** out) {
  if (broken_) return -EIO;
  if (!started_) return -ENOTCONN;
  std::string err;
  switch (sq_.pop(*out, err)) {
    case vhu::SplitQueue::Pop::kChain:
      return 0;
    case vhu::SplitQueue::Pop::kEmpty:
      return -EAGAIN;
    case vhu::SplitQueue::Pop::kBroken:
      mark_broken(err);
      return -EIO;
  }
  return -EIO;
}

int vhu_vring::push(vhu_chain* c, uint32_t written) {
  if (!c) return -EINVAL;
  // A stopped ring reclaimed its chains; a broken one must not be touched.
  if (!started_) return -ENOTCONN;
  if (broken_) return -EIO;
  // Not popped from this queue, or pushed already.
  if (!sq_.owns(c)) return -EINVAL;
  size_t rd = c->readable_len;
  uint64_t wr = written < c->writable_len ? written : c->writable_len;
  // The used index moves in batches: at notify, when the handler returns,
  // or every kPublishBatch chains, sparing the driver a cache miss per
  // chain. Chains of one push_many are published together.
  bool ok = sq_.push(c, written, false);
  if (sq_.unpublished() >= kPublishBatch) sq_.publish();
  bump(stats_.chains);
  bump<uint64_t>(stats_.bytes_read, rd);
  bump<uint64_t>(stats_.bytes_written, wr);
  return ok ? 0 : -EINVAL;
}

int vhu_vring::push_many(vhu_chain* const* cs, const uint32_t* written, unsigned n) {
  if ((n && (!cs || !written)) || n > num_) return -EINVAL;
  if (!started_) return -ENOTCONN;
  if (broken_) return -EIO;
  uint64_t rd = 0, wr = 0;
  for (unsigned i = 0; i < n; i++) {
    if (!cs[i]) return -EINVAL;
    rd += cs[i]->readable_len;
    wr += written[i] < cs[i]->writable_len ? written[i] : cs[i]->writable_len;
  }
  int r = sq_.push_many(cs, written, n);
  if (r < 0) return -EINVAL;
  bump<uint64_t>(stats_.chains, n);
  bump<uint64_t>(stats_.bytes_read, rd);
  bump<uint64_t>(stats_.bytes_written, wr);
  return r == 0 ? 0 : -EINVAL;
}

int vhu_vring::unpop(vhu_chain* c) {
  if (!started_ || broken_ || !sq_.owns(c)) return -EINVAL;
  return sq_.unpop(c) ? 0 : -EINVAL;
}

int vhu_vring::notify() {
  if (!started_) return -ENOTCONN;
  if (broken_) return -EIO;
  sq_.publish();  // what was pushed becomes visible even with no call fd
  if (!call_fd_) {
    bump(stats_.suppressed);
    return 0;
  }
  bool pushed;
  bool need = sq_.need_notify(&pushed);
  if (!pushed) return 0;
  if (!need) {
    bump(stats_.suppressed);
    return 0;
  }
  uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(call_fd_.get(), &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) return -errno;
  bump(stats_.notifications);
  return 1;
}

bool vhu_vring::poll() {
  if (!started_.load(std::memory_order_relaxed)) return false;
  // A broken ring is not read again, not even its avail index.
  if (enabled_.load(std::memory_order_relaxed) && !broken_.load(std::memory_order_relaxed) &&
      sq_.pending())
    run_handler();
  return true;
}

int vhu_vring::set_kicks(bool enable) {
  if (!started_) return -ENOTCONN;
  if (broken_) return -EIO;
  sq_.set_kicks(enable);
  return 0;
}
